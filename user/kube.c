// SPDX-License-Identifier: Apache-2.0
/* kube.c - the Kubernetes API as a configuration source (kube.h).
 *
 * Per kind: LIST (paged with limit/continue) into a fresh store, swap it in,
 * then WATCH from the list's resourceVersion with bookmarks. A watch that the
 * server ends is resumed from the last resourceVersion; 410 Gone (status or
 * ERROR event) lists again; errors and drops reconnect after an exponential
 * backoff with jitter. A group/version the server does not serve (404) is
 * noted once and asked again every few minutes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <yaml.h>

#include "config.h"
#include "kube.h"
#include "log.h"
#include "loop.h"

#define KUBE_FILE_MAX		(1u << 20)	/* kubeconfig, token, CA files */
#define KUBE_LINE_MAX		(64u << 20)	/* one watch event */
#define KUBE_BODY_MAX		(512u << 20)	/* one LIST page */
#define KUBE_CONNECT_MS		10000
#define KUBE_LIST_MS		60000
#define KUBE_REQ_MS		10000		/* one write (GET, PUT, PATCH, POST) */
#define KUBE_WATCH_S		300		/* timeoutSeconds asked of the server */
#define KUBE_WATCH_IDLE_MS	((KUBE_WATCH_S + 30) * 1000)
#define KUBE_RECHECK_MS		(5 * 60 * 1000)	/* a kind not served: ask again */
#define KUBE_SETTLE_MAX_MS	1000		/* changes that never stop still apply */
#define KUBE_ADDRS_MAX		4

/* ---- small helpers ---- */

static int read_small_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	*out = NULL;
	if (!f)
		return -errno;
	buf = malloc(KUBE_FILE_MAX + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, KUBE_FILE_MAX + 1, f);
	fclose(f);
	if (n > KUBE_FILE_MAX) {
		free(buf);
		return -EFBIG;
	}
	buf[n] = 0;
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

/* Standard base64 without line breaks (kubeconfig *-data fields). */
static char *base64_decode(const char *s, size_t *out_len)
{
	size_t n = strlen(s), pad = 0;
	unsigned char *out;
	int r;

	if (!n || n % 4 || n > INT32_MAX)
		return NULL;
	if (s[n - 1] == '=')
		pad++;
	if (s[n - 2] == '=')
		pad++;
	out = malloc(n / 4 * 3 + 1);
	if (!out)
		return NULL;
	r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (r < 0 || (size_t)r < pad) {
		free(out);
		return NULL;
	}
	*out_len = (size_t)r - pad;
	out[*out_len] = 0;
	return (char *)out;
}

/* ---- kubeconfig ---- */

struct kcfg_doc {
	yaml_document_t doc;
	const char *name;		/* for messages */
	const char *base_dir;
	struct diags *errs;
};

static yaml_node_t *y_get(struct kcfg_doc *d, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(&d->doc, p->key);

		if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
			return yaml_document_get_node(&d->doc, p->value);
	}
	return NULL;
}

static int y_line(const yaml_node_t *n)
{
	return n ? (int)n->start_mark.line + 1 : 0;
}

/* A scalar's text; reports (and returns NULL) when n is there but no scalar. */
static const char *y_str(struct kcfg_doc *d, yaml_node_t *n, const char *what)
{
	if (!n)
		return NULL;
	if (n->type != YAML_SCALAR_NODE) {
		diags_add(d->errs, d->name, y_line(n), "%s: expected a string", what);
		return NULL;
	}
	return (const char *)n->data.scalar.value;
}

/* The entry of list `section` (clusters, contexts, users) named name; its
 * `field` mapping (cluster, context, user). */
static yaml_node_t *y_named(struct kcfg_doc *d, yaml_node_t *root, const char *section, const char *field,
			    const char *name)
{
	yaml_node_t *seq = y_get(d, root, section);

	if (!seq || seq->type != YAML_SEQUENCE_NODE) {
		diags_add(d->errs, d->name, y_line(seq ? seq : root), "%s: expected a list", section);
		return NULL;
	}
	for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top; i++) {
		yaml_node_t *e = yaml_document_get_node(&d->doc, *i);
		yaml_node_t *n = y_get(d, e, "name");
		yaml_node_t *f;

		if (!n || n->type != YAML_SCALAR_NODE || strcmp((const char *)n->data.scalar.value, name))
			continue;
		f = y_get(d, e, field);
		if (!f || f->type != YAML_MAPPING_NODE) {
			diags_add(d->errs, d->name, y_line(e), "%s '%s': no %s mapping", section, name, field);
			return NULL;
		}
		return f;
	}
	diags_add(d->errs, d->name, y_line(seq), "%s: no entry named '%s'", section, name);
	return NULL;
}

/* A PEM (or token) given inline as base64 (`<key>-data`) or as a file
 * (`<key>`). *out NULL and 0 when neither is set. */
static int y_data_or_file(struct kcfg_doc *d, yaml_node_t *map, const char *key, char **out)
{
	char data_key[64];
	yaml_node_t *dn, *fn;
	const char *s;
	size_t len;
	char path[4096];
	int err;

	*out = NULL;
	snprintf(data_key, sizeof(data_key), "%s-data", key);
	dn = y_get(d, map, data_key);
	fn = y_get(d, map, key);
	if (dn) {
		if (!(s = y_str(d, dn, data_key)))
			return -EINVAL;
		*out = base64_decode(s, &len);
		if (!*out || strlen(*out) != len) {
			free(*out);
			*out = NULL;
			diags_add(d->errs, d->name, y_line(dn), "%s: not valid base64", data_key);
			return -EINVAL;
		}
		return 0;
	}
	if (!fn)
		return 0;
	if (!(s = y_str(d, fn, key)))
		return -EINVAL;
	if (!d->base_dir && s[0] != '/') {
		diags_add(d->errs, d->name, y_line(fn), "%s: a relative path needs the kubeconfig's directory", key);
		return -EINVAL;
	}
	if (!d->base_dir) {	/* parsing a buffer (tests, fuzzing): files are not read */
		diags_add(d->errs, d->name, y_line(fn), "%s: file references are not read here", key);
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "%s%s%s", s[0] == '/' ? "" : d->base_dir, s[0] == '/' ? "" : "/", s);
	err = read_small_file(path, out, NULL);
	if (err) {
		diags_add(d->errs, d->name, y_line(fn), "%s: cannot read %s: %s", key, path, strerror(-err));
		return err;
	}
	return 0;
}

static int kcfg_cluster(struct kcfg_doc *d, struct kube_cfg *c, yaml_node_t *cl)
{
	yaml_node_t *sn = y_get(d, cl, "server"), *in = y_get(d, cl, "insecure-skip-tls-verify");
	const char *s = y_str(d, sn, "server");

	if (!s) {
		if (!sn)
			diags_add(d->errs, d->name, y_line(cl), "cluster: missing server");
		return -EINVAL;
	}
	if (strncmp(s, "https://", 8)) {
		diags_add(d->errs, d->name, y_line(sn), "server: '%s': only https:// is supported", s);
		return -EINVAL;
	}
	c->server = strdup(s);
	if (in && in->type == YAML_SCALAR_NODE && !strcmp((const char *)in->data.scalar.value, "true"))
		c->insecure = true;
	if (!c->server)
		return -ENOMEM;
	return y_data_or_file(d, cl, "certificate-authority", &c->ca_pem);
}

static int kcfg_user(struct kcfg_doc *d, struct kube_cfg *c, yaml_node_t *u)
{
	yaml_node_t *tn = y_get(d, u, "token"), *tf = y_get(d, u, "tokenFile");
	const char *s;
	int err;

	if (tn) {
		if (!(s = y_str(d, tn, "token")))
			return -EINVAL;
		if (!(c->token = strdup(s)))
			return -ENOMEM;
	} else if (tf) {
		char *path = NULL;

		err = y_data_or_file(d, u, "tokenFile", &path);
		if (err)
			return err;
		c->token = path;
		if (c->token)
			c->token[strcspn(c->token, "\r\n")] = 0;
		s = y_str(d, tf, "tokenFile");
		if (s && s[0] == '/' && !(c->token_file = strdup(s)))
			return -ENOMEM;
	}
	err = y_data_or_file(d, u, "client-certificate", &c->cert_pem);
	if (!err)
		err = y_data_or_file(d, u, "client-key", &c->key_pem);
	if (err)
		return err;
	if (!!c->cert_pem != !!c->key_pem) {
		diags_add(d->errs, d->name, y_line(u), "user: client-certificate and client-key go together");
		return -EINVAL;
	}
	if (y_get(d, u, "exec") || y_get(d, u, "auth-provider")) {
		if (!c->token && !c->cert_pem) {
			diags_add(d->errs, d->name, y_line(u),
				  "user: exec and auth-provider credentials are not supported; use a token or a client certificate");
			return -EINVAL;
		}
	}
	return 0;
}

static int kcfg_walk(struct kcfg_doc *d, struct kube_cfg *c)
{
	yaml_node_t *root = yaml_document_get_root_node(&d->doc), *ctx, *cl, *u;
	const char *cur, *cl_name, *u_name;

	if (!root || root->type != YAML_MAPPING_NODE) {
		diags_add(d->errs, d->name, y_line(root), "expected a kubeconfig (a mapping)");
		return -EINVAL;
	}
	cur = y_str(d, y_get(d, root, "current-context"), "current-context");
	if (!cur || !cur[0]) {
		if (!d->errs->n)
			diags_add(d->errs, d->name, y_line(root), "no current-context");
		return -EINVAL;
	}
	if (!(ctx = y_named(d, root, "contexts", "context", cur)))
		return -EINVAL;
	cl_name = y_str(d, y_get(d, ctx, "cluster"), "context.cluster");
	u_name = y_str(d, y_get(d, ctx, "user"), "context.user");
	if (!cl_name) {
		diags_add(d->errs, d->name, y_line(ctx), "context '%s': no cluster", cur);
		return -EINVAL;
	}
	if (!(cl = y_named(d, root, "clusters", "cluster", cl_name)))
		return -EINVAL;
	if (kcfg_cluster(d, c, cl))
		return -EINVAL;
	if (!u_name)	/* anonymous */
		return 0;
	if (!(u = y_named(d, root, "users", "user", u_name)))
		return -EINVAL;
	return kcfg_user(d, c, u) ? -EINVAL : 0;
}

int kube_cfg_parse(struct kube_cfg *c, const char *name, const char *buf, size_t len,
		   const char *base_dir, struct diags *errs)
{
	struct kcfg_doc d = { .name = name ? name : "kubeconfig", .base_dir = base_dir, .errs = errs };
	yaml_parser_t p;
	int err;

	memset(c, 0, sizeof(*c));
	if (!yaml_parser_initialize(&p))
		return -ENOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&p, &d.doc)) {
		diags_add(errs, d.name, (int)p.problem_mark.line + 1, "not valid YAML: %s",
			  p.problem ? p.problem : "?");
		yaml_parser_delete(&p);
		return -EINVAL;
	}
	err = kcfg_walk(&d, c);
	yaml_document_delete(&d.doc);
	yaml_parser_delete(&p);
	if (err)
		kube_cfg_clear(c);
	return err;
}

int kube_cfg_load(struct kube_cfg *c, const char *path, struct diags *errs)
{
	char *buf, *dir;
	size_t len = 0;
	int err = read_small_file(path, &buf, &len);

	memset(c, 0, sizeof(*c));
	if (err) {
		diags_add(errs, path, 0, "cannot read: %s", strerror(-err));
		return err;
	}
	dir = strdup(path);
	if (!dir) {
		free(buf);
		return -ENOMEM;
	}
	if (strrchr(dir, '/'))
		*strrchr(dir, '/') = 0;
	else
		strcpy(dir, ".");
	err = kube_cfg_parse(c, path, buf, len, dir[0] ? dir : "/", errs);
	free(dir);
	free(buf);
	return err;
}

int kube_cfg_in_cluster(struct kube_cfg *c, const char *sa_dir, struct diags *errs)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
	char path[4096];
	int err;

	memset(c, 0, sizeof(*c));
	if (!host || !host[0]) {
		diags_add(errs, NULL, 0, "in-cluster: KUBERNETES_SERVICE_HOST is not set (not in a pod?)");
		return -EINVAL;
	}
	if (asprintf(&c->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		     port && port[0] ? port : "443") < 0) {
		c->server = NULL;
		return -ENOMEM;
	}
	snprintf(path, sizeof(path), "%s/token", sa_dir);
	c->token_file = strdup(path);
	err = c->token_file ? read_small_file(path, &c->token, NULL) : -ENOMEM;
	if (!err && c->token) {
		c->token[strcspn(c->token, "\r\n")] = 0;
		snprintf(path, sizeof(path), "%s/ca.crt", sa_dir);
		err = read_small_file(path, &c->ca_pem, NULL);
	}
	if (err) {
		diags_add(errs, path, 0, "in-cluster: cannot read: %s", strerror(-err));
		kube_cfg_clear(c);
	}
	return err;
}

void kube_cfg_clear(struct kube_cfg *c)
{
	free(c->server);
	free(c->ca_pem);
	if (c->token)
		OPENSSL_cleanse(c->token, strlen(c->token));
	free(c->token);
	free(c->token_file);
	free(c->cert_pem);
	if (c->key_pem)
		OPENSSL_cleanse(c->key_pem, strlen(c->key_pem));
	free(c->key_pem);
	memset(c, 0, sizeof(*c));
}

/* ---- the watch stream: one JSON event per line ---- */

static int line_event(const char *p, size_t n, kube_event_cb cb, void *arg)
{
	json_t *ev, *obj;
	const char *type = NULL;
	int ret;

	while (n && (p[n - 1] == '\r' || p[n - 1] == ' '))
		n--;
	if (!n)
		return 0;
	ev = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
	obj = json_is_object(ev) ? json_object_get(ev, "object") : NULL;
	if (json_is_object(ev))
		type = json_string_value(json_object_get(ev, "type"));
	if (!type || !json_is_object(obj))
		ret = cb(arg, NULL, NULL);
	else
		ret = cb(arg, type, obj);
	json_decref(ev);
	return ret;
}

int kube_lines_feed(struct kube_lines *lb, const char *p, size_t n, kube_event_cb cb, void *arg)
{
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		int ret;

		if (lb->len + take > KUBE_LINE_MAX)
			return -E2BIG;
		if (!nl || lb->len) {	/* a line in pieces: gather it */
			if (lb->len + take + 1 > lb->cap) {
				size_t cap = (lb->len + take + 1) * 2;
				char *b = realloc(lb->buf, cap);

				if (!b)
					return -ENOMEM;
				lb->buf = b;
				lb->cap = cap;
			}
			memcpy(lb->buf + lb->len, p, take);
			lb->len += take;
		}
		if (!nl)
			return 0;
		if (lb->len) {
			ret = line_event(lb->buf, lb->len, cb, arg);
			lb->len = 0;
		} else {
			ret = line_event(p, take, cb, arg);
		}
		if (ret)
			return ret;
		p += take + 1;
		n -= take + 1;
	}
	return 0;
}

void kube_lines_clear(struct kube_lines *lb)
{
	free(lb->buf);
	memset(lb, 0, sizeof(*lb));
}

/* ---- kinds ---- */

struct kind_def {
	const char *kind, *group, *version, *resource;
	bool required;			/* the model is not built before it is listed */
	const char *field_selector;	/* NULL: none */
};

/* Every Pod, not only this node's: the model resolves workload identity and
 * endpoints by pod IP across nodes (and NetworkPolicy selects remote pods).
 * TLS Secrets only, for Gateway listeners. */
static const struct kind_def kind_defs[] = {
	{ "Namespace", "", "v1", "namespaces", true, NULL },
	{ "Pod", "", "v1", "pods", true, NULL },
	{ "Service", "", "v1", "services", true, NULL },
	{ "EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", true, NULL },
	{ "NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", false, NULL },
	{ "GatewayClass", "gateway.networking.k8s.io", "v1", "gatewayclasses", false, NULL },
	{ "Gateway", "gateway.networking.k8s.io", "v1", "gateways", false, NULL },
	{ "HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes", false, NULL },
	{ "GRPCRoute", "gateway.networking.k8s.io", "v1", "grpcroutes", false, NULL },
	{ "ReferenceGrant", "gateway.networking.k8s.io", "v1beta1", "referencegrants", false, NULL },
	{ "TCPRoute", "gateway.networking.k8s.io", "v1alpha2", "tcproutes", false, NULL },
	{ "TLSRoute", "gateway.networking.k8s.io", "v1alpha2", "tlsroutes", false, NULL },
	{ "AuthorizationPolicy", "security.istio.io", "v1", "authorizationpolicies", false, NULL },
	{ "PeerAuthentication", "security.istio.io", "v1", "peerauthentications", false, NULL },
	{ "Secret", "", "v1", "secrets", false, "type=kubernetes.io/tls" },
};
#define N_KINDS (sizeof(kind_defs) / sizeof(kind_defs[0]))

enum conn_st { CONN_NONE = 0, CONN_CONNECTING, CONN_HANDSHAKE, CONN_OPEN };
enum kw_phase { PHASE_LIST = 0, PHASE_WATCH, PHASE_REQ };
enum kw_state { KW_STARTING = 0, KW_LISTING, KW_WATCHING, KW_BACKOFF, KW_NOT_SERVED };
static const char *const kw_state_names[] = { "starting", "listing", "watching", "backoff", "not-served" };

/* A request of kube_request(), queued on the requests connection. */
struct kube_req {
	struct kube_req *next;
	char *method, *path, *ctype, *body;
	kube_req_cb cb;			/* NULL: cancelled */
	void *arg;
	unsigned int tries;
};

/* What the parser's callbacks ask for once http_parser_execute returns. */
enum kw_after { AFTER_NONE = 0, AFTER_RELIST, AFTER_RETRY };

struct kube;

/* One kind: its connection, its request in flight and its objects. */
struct kw {
	struct kube *k;
	const struct kind_def *def;
	/* connection */
	enum conn_st cst;
	int fd;
	SSL *ssl;
	struct loop_io io;
	bool io_added;
	size_t addr_idx;
	struct loop_timer timer;	/* connect/list deadline, watch idle, backoff, recheck */
	/* request and response */
	enum kw_phase phase;
	enum kw_state state;
	char *out;
	size_t out_len, out_off;
	bool in_flight;			/* request sent, response not complete */
	http_parser parser;
	int status;			/* HTTP status of the response */
	bool msg_done;
	enum kw_after after;
	char *body;			/* LIST (or error) body */
	size_t body_len, body_cap;
	struct kube_lines lines;	/* WATCH body */
	/* objects */
	json_t *store;			/* "ns/name" -> object */
	json_t *pending;		/* a LIST in progress */
	char *rv;			/* resourceVersion to watch from */
	char *cont;			/* LIST continue token */
	/* state for status and readiness */
	bool listed, tried;
	bool unserved;			/* 404 seen (logged once) and no list since */
	json_t *valid;			/* "ns/name" -> resourceVersion that decoded well alone */
	unsigned int backoff_ms;
	uint64_t relists, reconnects, events;
	char last_error[256];
};

struct kube {
	struct loop *loop;
	char *host;			/* without brackets */
	char *port;
	char *prefix;			/* path before /api, "" mostly */
	bool host_is_ip;
	struct sockaddr_storage addrs[KUBE_ADDRS_MAX];
	socklen_t addr_lens[KUBE_ADDRS_MAX];
	size_t n_addrs;
	char *token;
	char *token_file;		/* NULL: the token never changes */
	uint64_t token_read_ms;
	SSL_CTX *ctx;
	struct kube_opts o;
	void (*changed)(void *arg);
	void *arg;
	struct loop_timer settle;
	uint64_t first_change_ms;
	bool was_ready;
	struct diags bad;		/* the last build's skipped objects */
	json_t *skipped;		/* the same: "Kind/ns/name" -> why (kube_skipped) */
	struct kw kinds[N_KINDS];
	/* kube_request(): one connection of its own, one request at a time */
	struct kw reqw;
	struct kube_req *reqs, **reqs_tail;
	void (*status_changed)(void *arg);
	void *status_arg;
};

/* The requests connection is a struct kw like the watches, so it shares
 * their connect, TLS and HTTP code; it only lists nothing. */
static const struct kind_def req_def = { "requests", "", "", "", false, NULL };

static http_parser_settings parser_settings;

static void kw_start_list(struct kw *w);
static void kw_send(struct kw *w);
static void kube_check_ready(struct kube *k);

static void req_failed(struct kube *k);
static void req_next(struct kube *k);
static void req_answered(struct kw *w, bool keep);

static const char *kw_phase_str(const struct kw *w)
{
	return w->phase == PHASE_LIST ? "LIST" : w->phase == PHASE_REQ ? "request" : "WATCH";
}

static unsigned int kw_deadline_ms(const struct kw *w)
{
	return w->phase == PHASE_LIST ? KUBE_LIST_MS : w->phase == PHASE_REQ ? KUBE_REQ_MS : KUBE_WATCH_IDLE_MS;
}

static void kw_error(struct kw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logged as a warning once; the same error again (each retry) at debug. */
static void kw_error(struct kw *w, const char *fmt, ...)
{
	char msg[sizeof(w->last_error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_msg(strcmp(msg, w->last_error) ? LOG_WARN : LOG_DEBUG, "kube: %s: %s", w->def->kind, msg);
	memcpy(w->last_error, msg, sizeof(msg));
}

static char *gvr_path(const struct kw *w, char *buf, size_t len)
{
	if (w->def->group[0])
		snprintf(buf, len, "%s/apis/%s/%s/%s", w->k->prefix, w->def->group, w->def->version,
			 w->def->resource);
	else
		snprintf(buf, len, "%s/api/%s/%s", w->k->prefix, w->def->version, w->def->resource);
	return buf;
}

/* Query values (continue tokens, selectors) percent-encoded. */
static void url_escape(const char *s, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *s && o + 4 < len; s++) {
		unsigned char ch = (unsigned char)*s;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    strchr("-._~", ch)) {
			out[o++] = (char)ch;
		} else {
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = 0;
}

/* ---- the object store ---- */

static char *obj_key(json_t *obj, char *buf, size_t len)
{
	json_t *md = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));

	if (!name)
		return NULL;
	snprintf(buf, len, "%s/%s", ns ? ns : "", name);
	return buf;
}

/* List items come without kind and apiVersion; managedFields is bulk the
 * decoder never reads. */
static void obj_prepare(const struct kw *w, json_t *obj)
{
	char api[128];

	snprintf(api, sizeof(api), "%s%s%s", w->def->group, w->def->group[0] ? "/" : "", w->def->version);
	json_object_set_new(obj, "kind", json_string(w->def->kind));
	json_object_set_new(obj, "apiVersion", json_string(api));
	json_object_del(json_object_get(obj, "metadata"), "managedFields");
}

static void kw_set_rv(struct kw *w, const char *rv)
{
	char *c;

	if (!rv || !rv[0] || !(c = strdup(rv)))
		return;
	free(w->rv);
	w->rv = c;
}

static void kube_changed(struct kube *k);

/* ---- connection ---- */

static void kw_close(struct kw *w)
{
	if (w->io_added)
		loop_del(w->k->loop, &w->io);
	w->io_added = false;
	if (w->ssl)
		SSL_free(w->ssl);
	w->ssl = NULL;
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	w->cst = CONN_NONE;
	w->in_flight = false;
	free(w->out);
	w->out = NULL;
	w->out_len = w->out_off = 0;
	w->lines.len = 0;
	w->body_len = 0;
}

static unsigned int kw_jitter(unsigned int ms)
{
	return ms / 2 + (unsigned int)(random() % (ms / 2 + 1));
}

/* Drop the connection and try again after the backoff (doubling, capped,
 * with jitter so that many agents do not come back in step). */
static void kw_retry(struct kw *w)
{
	unsigned int d;

	kw_close(w);
	if (w->phase == PHASE_REQ) {	/* no backoff: the callers try again on their own clock */
		loop_timer_cancel(w->k->loop, &w->timer);
		w->reconnects++;
		req_failed(w->k);
		return;
	}
	w->tried = true;
	w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : w->k->o.backoff_min_ms;
	if (w->backoff_ms > w->k->o.backoff_max_ms)
		w->backoff_ms = w->k->o.backoff_max_ms;
	d = kw_jitter(w->backoff_ms);
	w->state = KW_BACKOFF;
	w->reconnects++;
	pr_debug("kube: %s: retrying in %u ms", w->def->kind, d);
	loop_timer_arm(w->k->loop, &w->timer, d);
	kube_check_ready(w->k);	/* an optional kind that fails does not hold the others back */
}

/* Projected service account tokens rotate (the kubelet rewrites the file):
 * read it again at most once a minute, a small read from tmpfs. */
static void kube_token_refresh(struct kube *k)
{
	uint64_t now = loop_now_ms();
	char *t;

	if (!k->token_file || now - k->token_read_ms < 60000)
		return;
	k->token_read_ms = now;
	if (read_small_file(k->token_file, &t, NULL) || !t) {
		pr_warn("kube: cannot read %s again; keeping the token read before", k->token_file);
		return;
	}
	t[strcspn(t, "\r\n")] = 0;
	if (k->token)
		OPENSSL_cleanse(k->token, strlen(k->token));
	free(k->token);
	k->token = t;
}

static int kw_token_header(struct kw *w, char *buf, size_t len)
{
	kube_token_refresh(w->k);
	if (!w->k->token)
		return snprintf(buf, len, "%s", "");
	return snprintf(buf, len, "Authorization: Bearer %s\r\n", w->k->token);
}

/* w->out = the request line and headers (Host, User-Agent, Accept, the
 * bearer token), then body when there is one (with its type and length).
 * target: the path with the API prefix and query. 0 or -ENOMEM. */
static int kw_format(struct kw *w, const char *method, const char *target, const char *ctype,
		     const char *body)
{
	char auth[8192], host[300], hbody[256] = "";
	int n;

	kw_token_header(w, auth, sizeof(auth));
	snprintf(host, sizeof(host), strchr(w->k->host, ':') ? "[%s]:%s" : "%s:%s", w->k->host, w->k->port);
	if (body)
		snprintf(hbody, sizeof(hbody), "Content-Type: %s\r\nContent-Length: %zu\r\n",
			 ctype ? ctype : "application/json", strlen(body));
	else if (strcmp(method, "GET"))
		snprintf(hbody, sizeof(hbody), "Content-Length: 0\r\n");	/* PUT and POST need one */
	free(w->out);
	n = asprintf(&w->out,
		     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice-agent/%s\r\n"
		     "Accept: application/json\r\n%s%s\r\n%s",
		     method, target, host, SL_VERSION, auth, hbody, body ? body : "");
	if (n < 0) {
		w->out = NULL;
		return -ENOMEM;
	}
	w->out_len = (size_t)n;
	w->out_off = 0;
	return 0;
}

/* The request at the head of the queue, with its body. */
static int req_build(struct kw *w)
{
	const struct kube_req *r = w->k->reqs;
	char target[1024];

	snprintf(target, sizeof(target), "%s%s", w->k->prefix, r->path);
	return kw_format(w, r->method, target, r->ctype, r->body);
}

static int kw_build_request(struct kw *w)
{
	char path[512], q[2048], esc[1024], target[2600];
	int n;

	if (w->phase == PHASE_REQ)
		return req_build(w);
	gvr_path(w, path, sizeof(path));
	if (w->phase == PHASE_LIST) {
		n = snprintf(q, sizeof(q), "limit=%u", w->k->o.page_limit);
		if (w->cont) {
			url_escape(w->cont, esc, sizeof(esc));
			n += snprintf(q + n, sizeof(q) - (size_t)n, "&continue=%s", esc);
		}
	} else {
		url_escape(w->rv ? w->rv : "", esc, sizeof(esc));
		n = snprintf(q, sizeof(q), "watch=1&allowWatchBookmarks=true&timeoutSeconds=%d&resourceVersion=%s",
			     KUBE_WATCH_S, esc);
	}
	if (w->def->field_selector) {
		url_escape(w->def->field_selector, esc, sizeof(esc));
		snprintf(q + n, sizeof(q) - (size_t)n, "&fieldSelector=%s", esc);
	}
	snprintf(target, sizeof(target), "%s?%s", path, q);
	return kw_format(w, "GET", target, NULL, NULL);
}

static SSL *kw_ssl_new(struct kw *w)
{
	SSL *ssl = SSL_new(w->k->ctx);

	if (!ssl)
		return NULL;
	if (!SSL_set_fd(ssl, w->fd))
		goto err;
	if (w->k->host_is_ip) {
		if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), w->k->host))
			goto err;
	} else if (!SSL_set_tlsext_host_name(ssl, w->k->host) || !SSL_set1_host(ssl, w->k->host)) {
		goto err;
	}
	SSL_set_connect_state(ssl);
	return ssl;
err:
	SSL_free(ssl);
	return NULL;
}

static void kw_io_cb(struct loop_io *io, uint32_t events);

static int kw_watch_fd(struct kw *w, uint32_t events)
{
	if (w->io_added)
		return loop_mod(w->k->loop, &w->io, events);
	w->io_added = !loop_add(w->k->loop, &w->io, w->fd, events, kw_io_cb, w);
	return w->io_added ? 0 : -EIO;
}

static void kw_connect(struct kw *w)
{
	const struct sockaddr *sa;
	int fd;

	w->addr_idx %= w->k->n_addrs;
	sa = (const struct sockaddr *)&w->k->addrs[w->addr_idx];
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		kw_error(w, "socket: %s", strerror(errno));
		kw_retry(w);
		return;
	}
	w->fd = fd;
	if (connect(fd, sa, w->k->addr_lens[w->addr_idx]) && errno != EINPROGRESS) {
		kw_error(w, "connect %s:%s: %s", w->k->host, w->k->port, strerror(errno));
		w->addr_idx++;
		kw_retry(w);
		return;
	}
	w->cst = CONN_CONNECTING;
	loop_timer_arm(w->k->loop, &w->timer, KUBE_CONNECT_MS);
	if (kw_watch_fd(w, EPOLLOUT)) {
		kw_error(w, "cannot watch the socket");
		kw_retry(w);
	}
}

/* Send the request for the current phase: on the open connection when there
 * is one (keep-alive), else on a new one. */
static void kw_send(struct kw *w)
{
	if (w->cst != CONN_OPEN)
		kw_close(w);
	if (kw_build_request(w)) {
		kw_error(w, "out of memory");
		kw_retry(w);
		return;
	}
	w->state = w->phase == PHASE_WATCH ? KW_WATCHING : KW_LISTING;
	http_parser_init(&w->parser, HTTP_RESPONSE);
	w->parser.data = w;
	w->msg_done = false;
	w->after = AFTER_NONE;
	w->status = 0;
	w->body_len = 0;
	w->lines.len = 0;
	w->in_flight = true;
	if (w->cst != CONN_OPEN) {
		kw_connect(w);
		return;
	}
	loop_timer_arm(w->k->loop, &w->timer, kw_deadline_ms(w));
	kw_watch_fd(w, EPOLLIN | EPOLLOUT);
}

/* ---- responses ---- */

static int on_headers_complete(http_parser *p)
{
	struct kw *w = p->data;

	w->status = p->status_code;
	return 0;
}

static int kw_on_event(void *arg, const char *type, json_t *obj);

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct kw *w = p->data;
	int ret;

	if (w->status == 200 && w->phase == PHASE_WATCH) {
		ret = kube_lines_feed(&w->lines, at, len, kw_on_event, w);
		if (ret < 0) {
			kw_error(w, "watch: %s", ret == -E2BIG ? "an event over 64 MiB" : strerror(-ret));
			w->after = AFTER_RETRY;
		}
		return ret ? 1 : 0;
	}
	if (w->body_len + len > KUBE_BODY_MAX) {
		kw_error(w, "a response over %u MiB", KUBE_BODY_MAX >> 20);
		w->after = AFTER_RETRY;
		return 1;
	}
	if (w->body_len + len + 1 > w->body_cap) {
		size_t cap = (w->body_len + len + 1) * 2;
		char *b = realloc(w->body, cap);

		if (!b) {
			w->after = AFTER_RETRY;
			return 1;
		}
		w->body = b;
		w->body_cap = cap;
	}
	memcpy(w->body + w->body_len, at, len);
	w->body_len += len;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct kw *w = p->data;

	w->msg_done = true;
	http_parser_pause(p, 1);	/* handled once execute returns */
	return 0;
}

/* A copy without what a status write changes. */
static json_t *sans_status(json_t *obj)
{
	json_t *c = json_deep_copy(obj);

	json_object_del(c, "status");
	json_object_del(json_object_get(c, "metadata"), "resourceVersion");
	return c;
}

/* Did only the status of a Gateway API object change? The model reads none
 * of it; a Pod's status (IPs, readiness), it does. */
static bool status_only(const struct kw *w, json_t *old, json_t *obj)
{
	json_t *a, *b;
	bool same;

	if (!old || strcmp(w->def->group, "gateway.networking.k8s.io"))
		return false;
	a = sans_status(old);
	b = sans_status(obj);
	same = a && b && json_equal(a, b);
	json_decref(a);
	json_decref(b);
	return same;
}

static int kw_on_event(void *arg, const char *type, json_t *obj)
{
	struct kw *w = arg;
	json_t *md;
	char key[512];

	if (!type) {
		kw_error(w, "watch: a line that is no watch event");
		w->after = AFTER_RETRY;
		return 1;
	}
	w->events++;
	if (!strcmp(type, "ERROR")) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		const char *msg = json_string_value(json_object_get(obj, "message"));

		if (code == 410) {
			pr_info("kube: %s: watch expired (410 Gone: %s); listing again", w->def->kind,
				msg ? msg : "");
			w->after = AFTER_RELIST;
		} else {
			kw_error(w, "watch: ERROR event %lld: %s", (long long)code, msg ? msg : "");
			w->after = AFTER_RETRY;
		}
		return 1;
	}
	md = json_object_get(obj, "metadata");
	kw_set_rv(w, json_string_value(json_object_get(md, "resourceVersion")));
	if (!strcmp(type, "BOOKMARK"))
		return 0;
	if (!obj_key(obj, key, sizeof(key))) {
		pr_debug("kube: %s: %s event without metadata.name", w->def->kind, type);
		return 0;
	}
	if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED")) {
		bool st_only;

		obj_prepare(w, obj);
		st_only = !strcmp(type, "MODIFIED") && status_only(w, json_object_get(w->store, key), obj);
		json_object_set(w->store, key, obj);
		if (st_only) {	/* a status write (ours, mostly): nothing to rebuild */
			if (w->k->status_changed)
				w->k->status_changed(w->k->status_arg);
			return 0;
		}
	} else if (!strcmp(type, "DELETED")) {
		json_object_del(w->store, key);
	} else {
		pr_debug("kube: %s: unknown watch event type %s", w->def->kind, type);
		return 0;
	}
	kube_changed(w->k);
	return 0;
}

/* One LIST page into pending; *more when a continue token came with it. */
static int kw_list_page(struct kw *w, bool *more)
{
	json_error_t jerr;
	json_t *root = json_loadb(w->body ? w->body : "", w->body_len, 0, &jerr), *items, *it, *md;
	const char *cont;
	char key[512];
	size_t i;

	*more = false;
	items = json_object_get(root, "items");
	if (!json_is_array(items) && !json_is_null(items)) {
		kw_error(w, "LIST: not a List (%s)", root ? "no items" : jerr.text);
		json_decref(root);
		return -EINVAL;
	}
	json_array_foreach(items, i, it) {
		if (!json_is_object(it) || !obj_key(it, key, sizeof(key)))
			continue;
		obj_prepare(w, it);
		json_object_set(w->pending, key, it);
	}
	md = json_object_get(root, "metadata");
	cont = json_string_value(json_object_get(md, "continue"));
	free(w->cont);
	w->cont = cont && cont[0] ? strdup(cont) : NULL;
	*more = w->cont != NULL;
	if (!*more) {
		kw_set_rv(w, json_string_value(json_object_get(md, "resourceVersion")));
		json_decref(w->store);
		w->store = w->pending;
		w->pending = NULL;
		w->listed = w->tried = true;
		w->unserved = false;
		w->last_error[0] = 0;
		pr_debug("kube: %s: listed %zu objects at resourceVersion %s", w->def->kind,
			 json_object_size(w->store), w->rv ? w->rv : "?");
	}
	json_decref(root);
	return 0;
}

static void kw_not_served(struct kw *w)
{
	if (!w->unserved)
		pr_info("kube: %s: %s%s%s is not served by this API server; skipped, asked again every %d s",
			w->def->kind, w->def->group, w->def->group[0] ? "/" : "", w->def->version,
			KUBE_RECHECK_MS / 1000);
	kw_close(w);
	w->state = KW_NOT_SERVED;
	w->unserved = w->tried = true;
	w->backoff_ms = 0;
	if (json_object_size(w->store)) {	/* its CRD went away with its objects */
		json_object_clear(w->store);
		kube_changed(w->k);
	}
	loop_timer_arm(w->k->loop, &w->timer, KUBE_RECHECK_MS);
	kube_check_ready(w->k);
}

static void kw_start_list(struct kw *w)
{
	w->phase = PHASE_LIST;
	free(w->cont);
	w->cont = NULL;
	json_decref(w->pending);
	w->pending = json_object();
	kw_send(w);
}

/* The Status message of an error body, for the log. */
static void kw_http_error(struct kw *w)
{
	json_t *st = json_loadb(w->body ? w->body : "", w->body_len, 0, NULL);
	const char *msg = json_string_value(json_object_get(st, "message"));

	kw_error(w, "%s: HTTP %d%s%s", w->phase == PHASE_LIST ? "LIST" : "WATCH", w->status, msg ? ": " : "",
		 msg ? msg : "");
	json_decref(st);
}

static void kw_on_response(struct kw *w)
{
	bool keep = http_should_keep_alive(&w->parser), more = false;

	w->in_flight = false;
	if (w->phase == PHASE_REQ) {
		req_answered(w, keep);
		return;
	}
	if (w->status == 200 && w->phase == PHASE_LIST) {
		if (kw_list_page(w, &more)) {
			kw_retry(w);
			return;
		}
		w->backoff_ms = 0;
		if (w->body_cap > (1u << 20)) {	/* a big first list: do not keep its buffer */
			free(w->body);
			w->body = NULL;
			w->body_len = w->body_cap = 0;
		}
		if (!keep)
			kw_close(w);
		if (!more) {
			w->phase = PHASE_WATCH;
			kube_changed(w->k);
		}
		kw_send(w);
		return;
	}
	if (w->status == 200) {	/* the server ended the watch (timeoutSeconds): go on */
		w->backoff_ms = 0;
		if (!keep)
			kw_close(w);
		kw_send(w);
		return;
	}
	if (w->status == 410) {	/* continue token or resourceVersion too old */
		pr_info("kube: %s: %s: 410 Gone; listing again", w->def->kind,
			w->phase == PHASE_LIST ? "LIST" : "WATCH");
		w->relists++;
		if (!keep)
			kw_close(w);
		kw_start_list(w);
		return;
	}
	if (w->status == 404) {
		kw_not_served(w);
		return;
	}
	kw_http_error(w);
	kw_retry(w);
}

/* Feed bytes to the parser. Returns true while the connection goes on. */
static bool kw_parse(struct kw *w, const char *p, size_t n)
{
	enum http_errno e;

	http_parser_execute(&w->parser, &parser_settings, p, n);
	e = HTTP_PARSER_ERRNO(&w->parser);
	if (w->after == AFTER_RELIST) {
		w->relists++;
		kw_close(w);
		kw_start_list(w);
		return false;
	}
	if (w->after == AFTER_RETRY) {
		kw_retry(w);
		return false;
	}
	if (w->msg_done) {
		kw_on_response(w);
		return false;
	}
	if (e != HPE_OK) {
		kw_error(w, "bad HTTP response: %s", http_errno_description(e));
		kw_retry(w);
		return false;
	}
	return true;
}

/* ---- I/O ---- */

static const char *ssl_error_text(struct kw *w, char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	long vr = w->ssl ? SSL_get_verify_result(w->ssl) : X509_V_OK;

	if (vr != X509_V_OK)
		snprintf(buf, len, "server certificate: %s", X509_verify_cert_error_string(vr));
	else if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "%s", errno ? strerror(errno) : "connection closed");
	ERR_clear_error();
	return buf;
}

/* Returns true when SSL is waiting for the socket (interest updated). */
static bool kw_ssl_wait(struct kw *w, int r)
{
	int e = SSL_get_error(w->ssl, r);

	if (e == SSL_ERROR_WANT_READ)
		kw_watch_fd(w, EPOLLIN | (w->out_off < w->out_len ? EPOLLOUT : 0));
	else if (e == SSL_ERROR_WANT_WRITE)
		kw_watch_fd(w, EPOLLIN | EPOLLOUT);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

static void kw_handshake(struct kw *w)
{
	char err[256];
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(w->ssl);
	if (r == 1) {
		w->cst = CONN_OPEN;
		loop_timer_arm(w->k->loop, &w->timer, kw_deadline_ms(w));
		kw_watch_fd(w, EPOLLIN | EPOLLOUT);
		return;
	}
	if (kw_ssl_wait(w, r))
		return;
	kw_error(w, "TLS handshake with %s: %s", w->k->host, ssl_error_text(w, err, sizeof(err)));
	kw_retry(w);
}

static bool kw_flush(struct kw *w)
{
	char err[256];

	while (w->out_off < w->out_len) {
		int r;

		ERR_clear_error();
		errno = 0;
		r = SSL_write(w->ssl, w->out + w->out_off, (int)(w->out_len - w->out_off));
		if (r > 0) {
			w->out_off += (size_t)r;
			continue;
		}
		if (kw_ssl_wait(w, r))
			return true;
		kw_error(w, "send: %s", ssl_error_text(w, err, sizeof(err)));
		kw_retry(w);
		return false;
	}
	kw_watch_fd(w, EPOLLIN);
	return true;
}

static void kw_read(struct kw *w)
{
	char buf[16384], err[256];

	for (int rounds = 0; rounds < 64; rounds++) {	/* fairness among kinds */
		int r;

		ERR_clear_error();
		errno = 0;
		r = SSL_read(w->ssl, buf, sizeof(buf));
		if (r > 0) {
			if (w->phase == PHASE_WATCH)
				loop_timer_arm(w->k->loop, &w->timer, KUBE_WATCH_IDLE_MS);
			if (!kw_parse(w, buf, (size_t)r))
				return;
			continue;
		}
		if (kw_ssl_wait(w, r))
			return;
		if (SSL_get_error(w->ssl, r) == SSL_ERROR_ZERO_RETURN ||
		    (SSL_get_error(w->ssl, r) == SSL_ERROR_SYSCALL && !errno)) {
			/* the end of a body that runs to the close */
			if (w->in_flight && kw_parse(w, NULL, 0) && w->in_flight) {
				kw_error(w, "%s: connection closed by the server", kw_phase_str(w));
				kw_retry(w);
			} else if (!w->in_flight) {
				kw_close(w);
			}
			return;
		}
		kw_error(w, "receive: %s", ssl_error_text(w, err, sizeof(err)));
		kw_retry(w);
		return;
	}
}

static void kw_io_cb(struct loop_io *io, uint32_t events)
{
	struct kw *w = io->arg;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	switch (w->cst) {
	case CONN_CONNECTING:
		if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
			kw_error(w, "connect %s:%s: %s", w->k->host, w->k->port, strerror(soerr ? soerr : errno));
			w->addr_idx++;
			kw_retry(w);
			return;
		}
		w->ssl = kw_ssl_new(w);
		if (!w->ssl) {
			kw_error(w, "TLS: cannot set up the connection");
			kw_retry(w);
			return;
		}
		w->cst = CONN_HANDSHAKE;
		/* fall through */
	case CONN_HANDSHAKE:
		kw_handshake(w);
		if (w->cst != CONN_OPEN)
			return;
		/* fall through */
	case CONN_OPEN:
		if (w->out_off < w->out_len && !kw_flush(w))
			return;
		if (w->cst == CONN_OPEN)
			kw_read(w);
		return;
	case CONN_NONE:
		return;
	}
	(void)events;
}

static void kw_timer_cb(struct loop_timer *t)
{
	struct kw *w = t->arg;

	if (w->phase == PHASE_REQ && !w->in_flight) {	/* kube_request's kick */
		req_next(w->k);
		return;
	}
	if (w->cst != CONN_NONE) {	/* a deadline */
		kw_error(w, "%s: no answer in time", w->cst != CONN_OPEN ? "connect" : kw_phase_str(w));
		kw_retry(w);
		return;
	}
	/* the end of a backoff or of a not-served pause */
	if (w->phase == PHASE_LIST || w->state == KW_NOT_SERVED)
		kw_start_list(w);
	else
		kw_send(w);
}

/* ---- requests (kube_request) ---- */

static void req_free(struct kube_req *r)
{
	free(r->method);
	free(r->path);
	free(r->ctype);
	free(r->body);
	free(r);
}

/* Pop the head; its callback gets status (0: no answer) and the body. */
static void req_finish(struct kube *k, int status, json_t *body)
{
	struct kube_req *r = k->reqs;

	k->reqs = r->next;
	if (!k->reqs)
		k->reqs_tail = &k->reqs;
	if (r->cb)
		r->cb(r->arg, status, body);
	req_free(r);
}

static void req_next(struct kube *k)
{
	if (k->reqs && !k->reqw.in_flight) {
		k->reqs->tries++;
		kw_send(&k->reqw);
	}
}

/* The connection failed. A request tried once goes again on a new
 * connection (a kept-alive one the server had closed); the rest fail. */
static void req_failed(struct kube *k)
{
	size_t n = 0;

	if (!k->reqs)
		return;
	if (k->reqs->tries < 2) {
		req_next(k);
		return;
	}
	/* callbacks may queue more: fail only those queued now, then go on */
	for (struct kube_req *r = k->reqs; r; r = r->next)
		n++;
	while (n-- && k->reqs)
		req_finish(k, 0, NULL);
	req_next(k);
}

static void req_answered(struct kw *w, bool keep)
{
	struct kube *k = w->k;
	json_t *body = json_loadb(w->body ? w->body : "", w->body_len, 0, NULL);

	loop_timer_cancel(k->loop, &w->timer);	/* no deadline while idle */
	if (!keep)
		kw_close(w);
	else if (w->cst == CONN_OPEN)
		kw_watch_fd(w, EPOLLIN);	/* see the server close an idle connection */
	req_finish(k, w->status, body);
	json_decref(body);
	req_next(k);
}

int kube_request(struct kube *k, const char *method, const char *path, const char *ctype, const char *body,
		 kube_req_cb cb, void *arg)
{
	struct kube_req *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->method = strdup(method);
	r->path = strdup(path);
	r->ctype = ctype ? strdup(ctype) : NULL;
	r->body = body ? strdup(body) : NULL;
	r->cb = cb;
	r->arg = arg;
	if (!r->method || !r->path || (ctype && !r->ctype) || (body && !r->body)) {
		req_free(r);
		return -ENOMEM;
	}
	*k->reqs_tail = r;
	k->reqs_tail = &r->next;
	if (!k->reqw.in_flight && !loop_timer_armed(&k->reqw.timer))
		loop_timer_arm(k->loop, &k->reqw.timer, 0);	/* sent from the loop */
	return 0;
}

void kube_requests_cancel(struct kube *k, void *arg)
{
	for (struct kube_req *r = k ? k->reqs : NULL; r; r = r->next)
		if (r->arg == arg)
			r->cb = NULL;
}

void kube_on_status(struct kube *k, void (*cb)(void *arg), void *arg)
{
	k->status_changed = cb;
	k->status_arg = arg;
}

json_t *kube_objects(const struct kube *k, const char *kind)
{
	for (size_t i = 0; i < N_KINDS; i++)
		if (!strcmp(k->kinds[i].def->kind, kind))
			return k->kinds[i].store;
	return NULL;
}

json_t *kube_skipped(const struct kube *k)
{
	return k->skipped;
}

/* ---- the source ---- */

bool kube_ready(const struct kube *k)
{
	for (size_t i = 0; i < N_KINDS; i++) {
		const struct kw *w = &k->kinds[i];

		if (w->def->required ? !w->listed : !(w->listed || w->tried))
			return false;
	}
	return true;
}

static void settle_cb(struct loop_timer *t)
{
	struct kube *k = t->arg;

	k->changed(k->arg);
}

/* Objects changed: tell the agent once things settle, and only once every
 * required kind is listed (a model without Pods would drop traffic). */
static void kube_changed(struct kube *k)
{
	uint64_t now = loop_now_ms();

	if (!kube_ready(k))
		return;
	if (!k->was_ready) {
		k->was_ready = true;
		pr_info("kube: every kind listed (or skipped); building the configuration");
	}
	if (!loop_timer_armed(&k->settle))
		k->first_change_ms = now;
	else if (now - k->first_change_ms >= KUBE_SETTLE_MAX_MS)
		return;
	loop_timer_arm(k->loop, &k->settle, k->o.settle_ms);
}

static void kube_check_ready(struct kube *k)
{
	if (!k->was_ready && kube_ready(k))
		kube_changed(k);
}

/* "https://host[:port][/prefix]" */
static int kube_parse_server(struct kube *k, const char *url)
{
	const char *h = url + 8, *end, *pe;
	struct in6_addr a6;
	struct in_addr a4;

	if (strncmp(url, "https://", 8))
		return -EINVAL;
	if (*h == '[') {
		end = strchr(h, ']');
		if (!end)
			return -EINVAL;
		k->host = strndup(h + 1, (size_t)(end - h - 1));
		end++;
	} else {
		end = h + strcspn(h, ":/");
		k->host = strndup(h, (size_t)(end - h));
	}
	if (!k->host || !k->host[0])
		return -EINVAL;
	if (*end == ':') {
		pe = end + 1 + strcspn(end + 1, "/");
		k->port = strndup(end + 1, (size_t)(pe - end - 1));
		end = pe;
	} else {
		k->port = strdup("443");
	}
	k->prefix = strdup(*end == '/' ? end : "");
	if (!k->port || !k->prefix)
		return -ENOMEM;
	if (k->prefix[0] && k->prefix[strlen(k->prefix) - 1] == '/')
		k->prefix[strlen(k->prefix) - 1] = 0;
	k->host_is_ip = inet_pton(AF_INET, k->host, &a4) == 1 || inet_pton(AF_INET6, k->host, &a6) == 1;
	return 0;
}

/* Resolved once, at start-up: the one blocking call. */
static int kube_resolve(struct kube *k)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG }, *res, *ai;
	int r;

	if (k->host_is_ip)
		hints.ai_flags = AI_NUMERICHOST;
	r = getaddrinfo(k->host, k->port, &hints, &res);
	if (r) {
		pr_err("kube: cannot resolve %s: %s", k->host, gai_strerror(r));
		return -EHOSTUNREACH;
	}
	for (ai = res; ai && k->n_addrs < KUBE_ADDRS_MAX; ai = ai->ai_next) {
		memcpy(&k->addrs[k->n_addrs], ai->ai_addr, ai->ai_addrlen);
		k->addr_lens[k->n_addrs++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	return k->n_addrs ? 0 : -EHOSTUNREACH;
}

static int pem_add_certs(X509_STORE *st, const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x;
	int n = 0;

	if (!b)
		return -ENOMEM;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		if (X509_STORE_add_cert(st, x))
			n++;
		X509_free(x);
	}
	ERR_clear_error();
	BIO_free(b);
	return n ? 0 : -EINVAL;
}

static int kube_tls_ctx(struct kube *k, const struct kube_cfg *c)
{
	BIO *b;
	X509 *x;
	EVP_PKEY *key;

	k->ctx = SSL_CTX_new(TLS_client_method());
	if (!k->ctx)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(k->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(k->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* a close without close_notify reads as the end of the stream: a body
	 * cut short is still caught, by http-parser (length or chunks missing) */
	SSL_CTX_set_options(k->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	SSL_CTX_set_verify(k->ctx, c->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
	if (c->insecure)
		pr_warn("kube: insecure-skip-tls-verify: the API server is not authenticated");
	if (c->ca_pem) {
		if (pem_add_certs(SSL_CTX_get_cert_store(k->ctx), c->ca_pem)) {
			pr_err("kube: the certificate authority holds no PEM certificate");
			return -EINVAL;
		}
	} else if (!SSL_CTX_set_default_verify_paths(k->ctx)) {
		return -EINVAL;
	}
	if (!c->cert_pem)
		return 0;
	b = BIO_new_mem_buf(c->cert_pem, -1);
	x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	b = BIO_new_mem_buf(c->key_pem, -1);
	key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!x || !key || !SSL_CTX_use_certificate(k->ctx, x) || !SSL_CTX_use_PrivateKey(k->ctx, key) ||
	    !SSL_CTX_check_private_key(k->ctx)) {
		pr_err("kube: the client certificate or key is not valid PEM, or they do not match");
		X509_free(x);
		EVP_PKEY_free(key);
		ERR_clear_error();
		return -EINVAL;
	}
	X509_free(x);
	EVP_PKEY_free(key);
	return 0;
}

int kube_new(struct kube **out, struct loop *l, const struct kube_cfg *cfg, const struct kube_opts *o,
	     void (*changed)(void *arg), void *arg)
{
	struct kube *k = calloc(1, sizeof(*k));
	int err;

	*out = NULL;
	if (!k)
		return -ENOMEM;
	parser_settings.on_headers_complete = on_headers_complete;
	parser_settings.on_body = on_body;
	parser_settings.on_message_complete = on_message_complete;
	k->loop = l;
	k->changed = changed;
	k->arg = arg;
	k->o = *o;
	if (!k->o.backoff_min_ms)
		k->o.backoff_min_ms = 500;
	if (!k->o.backoff_max_ms)
		k->o.backoff_max_ms = 30000;
	if (!k->o.settle_ms)
		k->o.settle_ms = 100;
	if (!k->o.page_limit)
		k->o.page_limit = 500;
	loop_timer_init(&k->settle, settle_cb, k);
	k->reqs_tail = &k->reqs;
	k->reqw.k = k;
	k->reqw.def = &req_def;
	k->reqw.fd = -1;
	k->reqw.phase = PHASE_REQ;
	loop_timer_init(&k->reqw.timer, kw_timer_cb, &k->reqw);
	for (size_t i = 0; i < N_KINDS; i++) {
		struct kw *w = &k->kinds[i];

		w->k = k;
		w->def = &kind_defs[i];
		w->fd = -1;
		w->store = json_object();
		w->valid = json_object();
		loop_timer_init(&w->timer, kw_timer_cb, w);
		if (!w->store || !w->valid) {
			kube_free(k);
			return -ENOMEM;
		}
	}
	err = kube_parse_server(k, cfg->server ? cfg->server : "");
	if (err) {
		pr_err("kube: server '%s': expected https://host[:port]", cfg->server ? cfg->server : "");
		goto err;
	}
	if ((cfg->token && !(k->token = strdup(cfg->token))) ||
	    (cfg->token_file && !(k->token_file = strdup(cfg->token_file)))) {
		err = -ENOMEM;
		goto err;
	}
	k->token_read_ms = loop_now_ms();
	err = kube_resolve(k);
	if (!err)
		err = kube_tls_ctx(k, cfg);
	if (err)
		goto err;
	pr_info("kube: watching %zu kinds on %s", N_KINDS, cfg->server);
	for (size_t i = 0; i < N_KINDS; i++)
		kw_start_list(&k->kinds[i]);
	*out = k;
	return 0;
err:
	kube_free(k);
	return err;
}

void kube_free(struct kube *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < N_KINDS; i++) {
		struct kw *w = &k->kinds[i];

		if (!w->def)
			continue;
		kw_close(w);
		loop_timer_cancel(k->loop, &w->timer);
		json_decref(w->store);
		json_decref(w->valid);
		json_decref(w->pending);
		free(w->rv);
		free(w->cont);
		free(w->body);
		kube_lines_clear(&w->lines);
	}
	loop_timer_cancel(k->loop, &k->settle);
	if (k->reqw.def) {
		kw_close(&k->reqw);
		loop_timer_cancel(k->loop, &k->reqw.timer);
		free(k->reqw.body);
	}
	while (k->reqs) {
		struct kube_req *r = k->reqs;

		k->reqs = r->next;
		req_free(r);
	}
	SSL_CTX_free(k->ctx);
	if (k->token)
		OPENSSL_cleanse(k->token, strlen(k->token));
	free(k->token);
	free(k->token_file);
	free(k->host);
	free(k->port);
	free(k->prefix);
	diags_clear(&k->bad);
	json_decref(k->skipped);
	free(k);
}

/* ---- stored objects -> resources ---- */

/* Forget the versions of objects that are gone. */
static void prune_valid(const struct kw *w)
{
	const char *key;
	json_t *v;
	void *tmp;

	json_object_foreach_safe(w->valid, tmp, key, v) {
		if (!json_object_get(w->store, key))
			json_object_del(w->valid, key);
	}
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Did this version of the object decode well alone before? */
static bool known_valid(const struct kw *w, const char *key, json_t *obj)
{
	const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	const char *ok = json_string_value(json_object_get(w->valid, key));

	return rv && ok && !strcmp(rv, ok);
}

static int decode_alone(const struct kw *w, const char *key, json_t *obj, const char *name, const char *text,
			struct diags *errs)
{
	struct sl_resources *alone;
	json_t *rv;
	int err;

	if (known_valid(w, key, obj))
		return 0;
	alone = config_resources_new();
	if (!alone)
		return -ENOMEM;
	err = config_decode_buf(alone, name, text, strlen(text), errs);
	resources_free(alone);
	rv = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");
	if (!err && json_is_string(rv))
		json_object_set(w->valid, key, rv);
	return err;
}

static bool utf8_ok(const char *s)
{
	json_t *j = json_string(s);

	json_decref(j);
	return j != NULL;
}

/* Note a skipped object as "Kind/ns/name" -> its problems, "; "-joined (a
 * status condition's message: kept short). */
static int note_skipped(json_t *skipped, const struct kw *w, const char *key, const struct diags *errs)
{
	char k[600], msg[1024] = "";
	size_t len = 0;

	for (size_t i = 0; i < errs->n && len < sizeof(msg) - 1; i++) {
		int n = snprintf(msg + len, sizeof(msg) - len, "%s%s", i ? "; " : "", errs->v[i].msg);

		len = n < 0 ? len : len + (size_t)n;
	}
	/* cut short inside a UTF-8 sequence: drop what there is of it */
	for (len = strlen(msg); len && len + 3 >= sizeof(msg) - 1 && !utf8_ok(msg);)
		msg[--len] = '\0';
	snprintf(k, sizeof(k), "%s/%s", w->def->kind, key);
	return json_object_set_new(skipped, k, json_string(utf8_ok(msg) ? msg : "not valid")) ? -ENOMEM : 0;
}

/* One object: checked alone first (once per resourceVersion) so that a bad
 * one leaves nothing behind in the set (config_decode_buf keeps what decoded
 * well). */
static int decode_one(struct sl_resources *res, const struct kw *w, const char *key, json_t *obj,
		      struct diags *bad, json_t *skipped)
{
	char name[600], *text = json_dumps(obj, JSON_COMPACT);
	struct diags errs = { 0 };
	int err;

	if (!text)
		return -ENOMEM;
	snprintf(name, sizeof(name), "%s %s", w->def->kind, key[0] == '/' ? key + 1 : key);
	err = decode_alone(w, key, obj, name, text, &errs);
	if (!err)
		err = config_decode_buf(res, name, text, strlen(text), &errs);
	if (err && err != -ENOMEM) {
		char buf[1024];

		for (size_t i = 0; i < errs.n; i++)
			pr_warn("kube: skipped: %s", diag_str(&errs.v[i], buf, sizeof(buf)));
		err = note_skipped(skipped, w, key, &errs);
		diags_move(bad, &errs);
	}
	diags_clear(&errs);
	free(text);
	return err;
}

int kube_resources(struct kube *k, struct sl_resources **out, struct diags *bad)
{
	struct sl_resources *res = config_resources_new();
	json_t *skipped = json_object();
	int err = 0;

	*out = NULL;
	if (!res || !skipped) {
		resources_free(res);
		json_decref(skipped);
		return -ENOMEM;
	}
	diags_clear(&k->bad);
	for (size_t i = 0; i < N_KINDS && !err; i++) {
		const struct kw *w = &k->kinds[i];
		size_t n = json_object_size(w->store), j = 0;
		const char **keys = calloc(n ? n : 1, sizeof(*keys));
		const char *key;
		json_t *v;

		if (!keys) {
			err = -ENOMEM;
			break;
		}
		json_object_foreach(w->store, key, v)
			keys[j++] = key;
		prune_valid(w);
		/* a stable order, as a directory's file names give */
		qsort(keys, n, sizeof(*keys), key_cmp);
		for (j = 0; j < n && !err; j++)
			err = decode_one(res, w, keys[j], json_object_get(w->store, keys[j]), &k->bad, skipped);
		free(keys);
	}
	if (err) {
		resources_free(res);
		json_decref(skipped);
		return err;
	}
	json_decref(k->skipped);
	k->skipped = skipped;
	for (size_t i = 0; bad && i < k->bad.n; i++)
		diags_add(bad, k->bad.v[i].file, k->bad.v[i].line, "%s", k->bad.v[i].msg);
	*out = res;
	return 0;
}

json_t *kube_status_json(const struct kube *k)
{
	json_t *kinds = json_array(), *bad = json_array();
	char buf[1024], url[512];

	if (!k)
		return json_null();
	for (size_t i = 0; i < N_KINDS; i++) {
		const struct kw *w = &k->kinds[i];

		json_array_append_new(
			kinds, json_pack("{s:s, s:s, s:s, s:b, s:b, s:s?, s:I, s:I, s:I, s:I, s:s?}", "kind",
					 w->def->kind, "api", w->def->group[0] ? w->def->group : "core", "state",
					 kw_state_names[w->state], "listed", w->listed, "watching",
					 w->state == KW_WATCHING && w->phase == PHASE_WATCH, "resource_version", w->rv,
					 "objects", (json_int_t)json_object_size(w->store), "relists",
					 (json_int_t)w->relists, "reconnects", (json_int_t)w->reconnects, "events",
					 (json_int_t)w->events, "last_error", w->last_error[0] ? w->last_error : NULL));
	}
	for (size_t i = 0; i < k->bad.n; i++)
		json_array_append_new(bad, json_string(diag_str(&k->bad.v[i], buf, sizeof(buf))));
	snprintf(url, sizeof(url), strchr(k->host, ':') ? "https://[%s]:%s%s" : "https://%s:%s%s", k->host, k->port,
		 k->prefix);
	return json_pack("{s:s, s:b, s:o, s:o}", "server", url, "ready", kube_ready(k), "kinds", kinds,
			 "bad_objects", bad);
}
