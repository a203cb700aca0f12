/* SPDX-License-Identifier: Apache-2.0 */
/* kube.h - the Kubernetes API as a configuration source: LIST then WATCH each
 * kind the agent understands, keep the objects, and hand a struct
 * sl_resources to the agent once changes settle.
 *
 * Everything runs on the agent's loop: connect, TLS handshake, requests and
 * the watch streams are non-blocking (the server name is resolved once, in
 * kube_new). Each kind has its own connection. Unlike the directory source,
 * a bad object is reported and skipped; the others still apply.
 */
#ifndef SL_KUBE_H
#define SL_KUBE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "diag.h"
#include "resources.h"

#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* Where the API server is and how to prove who we are. PEM texts, not paths. */
struct kube_cfg {
	char *server;			/* "https://host:port[/prefix]" */
	char *ca_pem;			/* NULL: the system's roots */
	char *token;			/* bearer token, or NULL */
	char *token_file;		/* where token came from: read again each minute (rotation) */
	char *cert_pem, *key_pem;	/* client certificate, or NULL */
	bool insecure;			/* insecure-skip-tls-verify: true */
};

/* Parse a kubeconfig (its current-context). Relative file paths are read from
 * base_dir. Returns 0, or -EINVAL with "name:line: reason" problems in errs. */
int kube_cfg_parse(struct kube_cfg *c, const char *name, const char *buf, size_t len,
		   const char *base_dir, struct diags *errs);
int kube_cfg_load(struct kube_cfg *c, const char *path, struct diags *errs);
/* In-cluster: sa_dir's token and ca.crt, KUBERNETES_SERVICE_HOST and _PORT. */
int kube_cfg_in_cluster(struct kube_cfg *c, const char *sa_dir, struct diags *errs);
void kube_cfg_clear(struct kube_cfg *c);

struct kube_opts {
	/* Test knobs: backoff and the debounce of changed(). 0: the defaults. */
	unsigned int backoff_min_ms, backoff_max_ms, settle_ms;
	unsigned int page_limit;	/* LIST ?limit= (default 500) */
};

struct loop;
struct kube;

/* Start listing and watching. changed(arg) is called from the loop once every
 * required kind (Namespace, Pod, Service, EndpointSlice) has been listed and,
 * after that, ~100 ms after the last change. */
int kube_new(struct kube **out, struct loop *l, const struct kube_cfg *cfg, const struct kube_opts *o,
	     void (*changed)(void *arg), void *arg);
void kube_free(struct kube *k);				/* NULL-safe */

/* Decode every stored object into a new set. Objects that fail are skipped
 * and reported in bad ("Kind ns/name:line: reason"); kube_status_json shows
 * the last such list. Returns 0 or -ENOMEM. */
int kube_resources(struct kube *k, struct sl_resources **out, struct diags *bad);
bool kube_ready(const struct kube *k);
/* The objects the last kube_resources() skipped: "Kind/ns/name" ("Kind//name"
 * when cluster-scoped) -> why, a string (their problems, "; "-joined, without
 * "file:line: "). Borrowed, until the next kube_resources(); NULL before the
 * first. */
json_t *kube_skipped(const struct kube *k);
/* {"server", "ready", "kinds": [...], "bad_objects": [...]} */
json_t *kube_status_json(const struct kube *k);

/* ---- writes (status, the Lease) ---- */

/* The answer to a kube_request: status 0 when none came (connection failed
 * twice, or timed out); body the decoded JSON answer, or NULL; borrowed. */
typedef void (*kube_req_cb)(void *arg, int status, json_t *body);

/* Queue method path ("/apis/..." below the server's prefix) with body (NULL:
 * none) of content type ctype (NULL: application/json). Requests go one at a
 * time, in order, on a connection of their own, non-blocking on the loop.
 * cb is called from the loop, never from within kube_request. 0 or -ENOMEM. */
int kube_request(struct kube *k, const char *method, const char *path, const char *ctype, const char *body,
		 kube_req_cb cb, void *arg);
/* Queued requests of arg will not call back (their owner goes away). */
void kube_requests_cancel(struct kube *k, void *arg);

/* The stored objects of kind ("Gateway", "HTTPRoute", ...): "ns/name" ->
 * object as the watch last delivered it (status included). Borrowed; NULL
 * for a kind not watched. */
json_t *kube_objects(const struct kube *k, const char *kind);

/* A Gateway API object changed in its status only (a status write coming
 * back): it is stored, changed() is not called (the model reads no status),
 * cb(arg) is, at once. NULL: nothing is called. */
void kube_on_status(struct kube *k, void (*cb)(void *arg), void *arg);

/* ---- the watch stream, apart for tests and fuzzing ---- */

/* Splits a body into lines and decodes each as a watch event. */
struct kube_lines {
	char *buf;
	size_t len, cap;
};

/* Called per complete line with the decoded event; a line that is no JSON
 * object gets type NULL, obj NULL. Return nonzero to stop. */
typedef int (*kube_event_cb)(void *arg, const char *type, json_t *obj);

/* Feed body bytes; calls cb for each complete line. Returns 0, cb's nonzero,
 * or -E2BIG when one line exceeds 64 MiB. */
int kube_lines_feed(struct kube_lines *lb, const char *p, size_t n, kube_event_cb cb, void *arg);
void kube_lines_clear(struct kube_lines *lb);

#endif
