/* SPDX-License-Identifier: Apache-2.0 */
/* kreport.h - node reports: the Gateway listeners that fail on one node
 * only (a port in use there, a certificate that does not load there), as
 * each agent publishes them and the status writer merges them. No I/O.
 *
 * Each agent in Kubernetes mode keeps a Lease of its own, KREPORT_PREFIX +
 * its node's name (kreport_lease_name), labelled KREPORT_LABEL=true, in the
 * namespace of the status Lease, renewed as that one is; its annotation
 * KREPORT_ANNOTATION holds this node's failing listeners, compact JSON:
 *
 *   {"infra/gw": {"http": {"reason": "PortUnavailable",
 *                          "message": "10.99.0.1:80: cannot listen: Address already in use"}}}
 *
 * ("{}" when every listener works; reasons PortUnavailable and
 * InvalidCertificateRef). The holder of the status Lease lists these Leases,
 * ignores those whose (holderIdentity, renewTime) has not changed for their
 * leaseDurationSeconds by its own clock (a dead node's report ages out as a
 * Lease holder does), and merges the rest into each Gateway's conditions
 * (kreports_merge).
 */
#ifndef SL_KREPORT_H
#define SL_KREPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KREPORT_PREFIX		"sluice-node-"
#define KREPORT_LABEL		"sluice.io/node-report"
#define KREPORT_ANNOTATION	"sluice.io/listeners"
#define KREPORT_NODE_ANNOTATION	"sluice.io/node"	/* the node's name, for messages */
#define KREPORT_NAME_MAX	254			/* a DNS-1123 subdomain, and its NUL */
#define KREPORT_TEXT_MAX	65536			/* a bigger annotation is refused */
/* A report stale for this many of its durations is deleted by the holder
 * (a node gone for good leaves no Lease behind; one that comes back makes
 * its report again) */
#define KREPORT_GC_DURATIONS	5

/* The Lease name of node's report: KREPORT_PREFIX + node, lowercased, other
 * characters than [a-z0-9.-] made '-', and when longer than 253 cut with a
 * hash of the whole name appended (two long names stay apart). */
void kreport_lease_name(const char *node, char out[KREPORT_NAME_MAX]);

/* Parse and check an annotation: 0 and *out (new reference), else -EINVAL
 * and why in err. Gateway keys ("ns/name") map to objects, listener names
 * to objects with a string "reason" and an optional string "message". */
int kreport_parse(const char *text, json_t **out, char *err, size_t errlen);

/* One node's report, as the holder last saw it. */
struct kreport {
	char lease[KREPORT_NAME_MAX];
	char node[KREPORT_NAME_MAX];	/* the annotation's, else the holder's */
	char seen[300];			/* holderIdentity|renewTime */
	char rv[64];			/* its resourceVersion, for a DELETE's precondition */
	bool deleting;			/* the holder asked to delete it */
	uint64_t seen_ms;		/* when it last changed, by our clock */
	unsigned int duration_s;
	char *text;			/* the annotation as read; NULL: none */
	json_t *listeners;		/* parsed; NULL: bad or none (not counted) */
	bool self;			/* this node's own: always current */
};

struct kreports {
	struct kreport *v;
	size_t n;
	uint64_t n_bad;			/* reports refused (their text, once each) */
	char last_error[300];
	json_t *digest;			/* what the merge last had: lease -> listeners */
};

/* A LIST of report Leases (body, borrowed) at now_ms: reports are added,
 * updated, and dropped when no longer listed (but the own one, self_lease).
 * default_s: the duration of a report that gives none. */
void kreports_observe(struct kreports *r, json_t *list, const char *self_lease, uint64_t now_ms,
		      unsigned int default_s);
/* This node's own report, which needs no Lease to be current (listeners:
 * borrowed, NULL: none). */
void kreports_set_self(struct kreports *r, const char *lease, const char *node, json_t *listeners);
/* Whether what the merge would use at now_ms (the live reports and their
 * listeners) differs from the last call's. */
bool kreports_changed(struct kreports *r, uint64_t now_ms);
/* Is report i live at now_ms: its own, or seen changing within its duration. */
bool kreports_live(const struct kreports *r, size_t i, uint64_t now_ms);
/* Is report i due for deletion: another node's, stale for
 * KREPORT_GC_DURATIONS of its durations, not asked for yet, with a
 * resourceVersion for the precondition. */
bool kreports_gc_due(const struct kreports *r, size_t i, uint64_t now_ms);
void kreports_clear(struct kreports *r);

/* A Gateway's intent (kstatus_gateway_intent's shape; borrowed) with the
 * live reports merged for Gateway gw_key ("ns/name"). A listener the plan
 * programs that fails on some of the live nodes: Programmed False Invalid,
 * naming the nodes and errors; on every live node also Accepted False
 * PortUnavailable (a port) or ResolvedRefs False InvalidCertificateRef (a
 * certificate). The Gateway's Accepted reason is then ListenersNotValid, and
 * its Programmed False only when no listener is served on any node. New
 * reference (a copy when nothing fails). */
json_t *kreports_merge(json_t *intent, const char *gw_key, const struct kreports *r, uint64_t now_ms);

/* {"seen", "live", "stale": [nodes], "failing": {node: listeners}, "bad", "last_error"?} */
json_t *kreports_json(const struct kreports *r, uint64_t now_ms);

#endif
