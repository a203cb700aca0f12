// SPDX-License-Identifier: Apache-2.0
/* kstatus.c - Gateway API status write-back by the Lease holder; see kstatus.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "gwplan.h"
#include "kreport.h"
#include "kstatus.h"
#include "kube.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "route.h"

#define GW_GROUP		"gateway.networking.k8s.io"
#define KSTATUS_CONFLICT_MS	1000	/* a 409 on a write: the watch brings the newer object */
#define KSTATUS_RETRY_MS	5000	/* a write that failed otherwise */
#define KSTATUS_ECHO_MS		200	/* a status changed: compare again, once per burst */
#define KLEASE_CHAIN_MAX	4	/* lease requests in a row, then wait for the tick */
#define KST_KEY			700	/* "Kind/ns/name": 253-byte names, and room */

/* ---- time ---- */

static void now_rfc3339(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A MicroTime, as Lease acquireTime and renewTime are. */
static void now_micro(char *buf, size_t len)
{
	struct timeval tv;
	struct tm tm;
	char s[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", s, (long)tv.tv_usec);
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* ---- the Lease ---- */

void klease_init(struct klease *l, const char *identity, unsigned int duration_s)
{
	memset(l, 0, sizeof(*l));
	snprintf(l->identity, sizeof(l->identity), "%s", identity);
	l->duration_s = duration_s ? duration_s : KSTATUS_LEASE_S;
}

void klease_clear(struct klease *l)
{
	json_decref(l->record);
	l->record = NULL;
}

static uint64_t renew_deadline_ms(const struct klease *l)
{
	return (uint64_t)l->duration_s * 2000 / 3;
}

enum klease_op klease_tick(struct klease *l, uint64_t now_ms)
{
	if (l->leader && now_ms - l->renewed_ms > renew_deadline_ms(l)) {
		pr_warn("kstatus: no %s renewal for %llu ms: no longer %s", l->report ? "node report" : "Lease",
			(unsigned long long)(now_ms - l->renewed_ms),
			l->report ? "counted as reporting" : "writing status");
		l->leader = false;
	}
	if (l->released)
		return KLEASE_WAIT;
	/* the holder renews on the record it wrote; 409 sends it to read */
	return l->leader && l->record ? KLEASE_UPDATE : KLEASE_GET;
}

/* Note the record; its (holder, renewTime) changing restarts the clock. */
static void klease_observe(struct klease *l, json_t *lease, uint64_t now_ms)
{
	json_t *spec = json_object_get(lease, "spec");
	const char *holder = jstr(spec, "holderIdentity"), *renew = jstr(spec, "renewTime");
	char seen[sizeof(l->seen)];

	snprintf(seen, sizeof(seen), "%s|%s", holder ? holder : "", renew ? renew : "");
	if (strcmp(seen, l->seen) || !l->seen_ms) {
		memcpy(l->seen, seen, sizeof(seen));
		l->seen_ms = now_ms;
	}
	snprintf(l->holder, sizeof(l->holder), "%s", holder ? holder : "");
	json_decref(l->record);
	l->record = json_incref(lease);
}

static enum klease_op klease_read(struct klease *l, json_t *lease, uint64_t now_ms)
{
	json_int_t dur = json_integer_value(json_object_get(json_object_get(lease, "spec"), "leaseDurationSeconds"));

	klease_observe(l, lease, now_ms);
	if (!l->holder[0] || !strcmp(l->holder, l->identity))
		return KLEASE_UPDATE;
	if (dur <= 0)
		dur = l->duration_s;
	if (now_ms - l->seen_ms >= (uint64_t)dur * 1000)
		return KLEASE_UPDATE;	/* expired: take over */
	if (l->leader)
		pr_warn("kstatus: the %s is held by %s: no longer %s", l->report ? "node report's Lease" : "Lease",
			l->holder, l->report ? "reporting" : "writing status");
	l->leader = false;
	return KLEASE_WAIT;
}

enum klease_op klease_release(struct klease *l)
{
	bool held = l->leader && l->record;

	l->released = true;
	l->leader = false;
	return held ? KLEASE_RELEASE : KLEASE_WAIT;
}

/* Released: the answer to a write still on its way may make us the holder
 * again; then release it (on the record it brought). */
static enum klease_op klease_answer_released(struct klease *l, enum klease_op op, int status, json_t *body,
					     uint64_t now_ms)
{
	if (json_is_object(body) && (status == 200 || status == 201))
		klease_observe(l, body, now_ms);
	else if (status == 409 || status == 404)
		klease_clear(l);
	l->leader = false;
	if (op == KLEASE_RELEASE)
		return KLEASE_WAIT;
	return l->record && !strcmp(l->holder, l->identity) ? KLEASE_RELEASE : KLEASE_WAIT;
}

enum klease_op klease_answer(struct klease *l, enum klease_op op, int status, json_t *body, uint64_t now_ms)
{
	if (l->released)
		return klease_answer_released(l, op, status, body, now_ms);
	if (op == KLEASE_GET && status == 200 && json_is_object(body))
		return klease_read(l, body, now_ms);
	if (op == KLEASE_GET && status == 404) {
		klease_clear(l);
		return KLEASE_CREATE;
	}
	if ((op == KLEASE_CREATE || op == KLEASE_UPDATE) && (status == 200 || status == 201) &&
	    json_is_object(body)) {
		klease_observe(l, body, now_ms);
		if (!l->leader) {
			l->transitions++;
			if (l->report)
				pr_info("kstatus: reporting this node's listeners as %s", l->identity);
			else
				pr_info("kstatus: holding the Lease as %s: writing status", l->identity);
		}
		l->leader = true;
		l->renewed_ms = now_ms;
		return KLEASE_WAIT;
	}
	if ((op == KLEASE_CREATE || op == KLEASE_UPDATE) && (status == 409 || status == 404)) {
		klease_clear(l);	/* someone else wrote it (or it went): read again */
		return KLEASE_GET;
	}
	return KLEASE_WAIT;	/* no answer or an error: the next tick tries again */
}

json_t *klease_body(const struct klease *l, enum klease_op op, const char *ns, const char *name,
		    const char *now)
{
	bool release = op == KLEASE_RELEASE;
	json_t *o, *spec;

	if (op == KLEASE_CREATE || !l->record) {
		return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:i, s:s, s:s, s:i}}", "apiVersion",
				 "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", name, "namespace", ns,
				 "spec", "holderIdentity", l->identity, "leaseDurationSeconds", (int)l->duration_s,
				 "acquireTime", now, "renewTime", now, "leaseTransitions", 0);
	}
	o = json_deep_copy(l->record);	/* metadata.resourceVersion: the precondition */
	spec = json_object_get(o, "spec");
	if (!json_is_object(spec)) {
		spec = json_object();
		json_object_set_new(o, "spec", spec);
	}
	if (!release && strcmp(l->holder, l->identity)) {	/* taking it */
		json_object_set_new(spec, "acquireTime", json_string(now));
		json_object_set_new(spec, "leaseTransitions",
				    json_integer(json_integer_value(json_object_get(spec, "leaseTransitions")) +
						 (l->holder[0] ? 1 : 0)));
	}
	/* a release is client-go's: no holder, a 1 s duration */
	json_object_set_new(spec, "holderIdentity", json_string(release ? "" : l->identity));
	json_object_set_new(spec, "leaseDurationSeconds", json_integer(release ? 1 : l->duration_s));
	json_object_set_new(spec, "renewTime", json_string(now));
	return o;
}

/* ---- status documents ---- */

static json_t *cond(const char *type, bool status, const char *reason, const char *message)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "type", type, "status", status ? "True" : "False", "reason",
			 reason ? reason : type, "message", message ? message : "");
}

static json_t *kinds_json(unsigned kinds)
{
	json_t *a = json_array();

	for (unsigned k = SL_ROUTE_HTTP; k <= SL_ROUTE_TLS; k++)
		if (kinds & ROUTE_KIND_BIT(k))
			json_array_append_new(a, json_pack("{s:s, s:s}", "group", GW_GROUP, "kind",
							   route_kind_str((enum sl_route_kind)k)));
	return a;
}

static json_t *listener_intent(const struct gwplan_listener *pl)
{
	json_t *c = json_array();
	const char *msg = pl->message;

	json_array_append_new(c, cond("Accepted", pl->accepted, pl->accepted_reason, pl->accepted ? "" : msg));
	json_array_append_new(c, cond("ResolvedRefs", pl->resolved_refs, pl->refs_reason,
				      pl->resolved_refs ? "" : msg));
	json_array_append_new(c, cond("Conflicted", pl->conflicted, pl->conflict_reason, pl->conflicted ? msg : ""));
	json_array_append_new(c, cond("Programmed", pl->serve, pl->serve ? "Programmed" : "Invalid",
				      pl->serve ? "" : msg[0] ? msg : "its Gateway has no address"));
	return json_pack("{s:s, s:o, s:i, s:o}", "name", pl->l->name ? pl->l->name : "", "supportedKinds",
			 kinds_json(pl->kinds), "attachedRoutes", (int)pl->attached, "conditions", c);
}

json_t *kstatus_gateway_intent(const struct gwplan_gateway *pg)
{
	json_t *c = json_array(), *ls = json_array(), *addrs = json_null();
	const char *prog = "Invalid";
	bool any = false;

	for (size_t i = 0; i < pg->n_ls; i++) {
		json_array_append_new(ls, listener_intent(&pg->ls[i]));
		any |= pg->ls[i].serve;
	}
	if (any)
		prog = "Programmed";
	else if (!pg->n_ips && pg->address_missing)
		prog = "AddressNotAssigned";
	if (pg->n_ips) {	/* else every address of each node: none to name */
		addrs = json_array();
		for (size_t i = 0; i < pg->n_ips; i++) {
			char b[SL_IP_STRLEN];

			json_array_append_new(addrs, json_pack("{s:s, s:s}", "type", "IPAddress", "value",
							       sl_ip_str(&pg->ips[i], b)));
		}
	}
	json_array_append_new(c, cond("Accepted", pg->accepted, pg->accepted_reason, pg->message));
	json_array_append_new(c, cond("Programmed", any, prog, any ? "" : pg->message));
	return json_pack("{s:o, s:o, s:o}", "conditions", c, "listeners", ls, "addresses", addrs);
}

json_t *kstatus_gatewayclass_intent(void)
{
	json_t *c = json_array();

	json_array_append_new(c, cond("Accepted", true, "Accepted", "served by sluice"));
	return json_pack("{s:o}", "conditions", c);
}

json_t *kstatus_parent_intent(json_t *parent_ref, bool accepted, const char *acc_reason, bool refs,
			      const char *refs_reason, bool partially_invalid, const char *message)
{
	json_t *c = json_array();

	json_array_append_new(c, cond("Accepted", accepted, acc_reason, accepted ? "" : message));
	json_array_append_new(c, cond("ResolvedRefs", refs, refs_reason, refs ? "" : message));
	if (partially_invalid)
		json_array_append_new(c, cond("PartiallyInvalid", true, "UnsupportedValue", message));
	return json_pack("{s:O, s:s, s:o}", "parentRef", parent_ref, "controllerName", ROUTE_CONTROLLER_NAME,
			 "conditions", c);
}

/* Skipped as invalid: the Gateway API v1 reasons for an invalid spec
 * (GatewayReasonInvalid for both conditions; routes have no such reason
 * and RouteReasonUnsupportedValue is the nearest). No listeners, no
 * addresses: nothing of it is served. */
json_t *kstatus_invalid_gateway_intent(const char *message)
{
	json_t *c = json_array();

	json_array_append_new(c, cond("Accepted", false, "Invalid", message));
	json_array_append_new(c, cond("Programmed", false, "Invalid", message));
	return json_pack("{s:o, s:n, s:n}", "conditions", c, "listeners", "addresses");
}

/* A parentRef as the object has it: ours as parent_ours() says, with the
 * spec's defaults (group gateway.networking.k8s.io, kind Gateway, the
 * route's namespace). */
static bool ref_ours(json_t *ref, const char *route_ns, json_t *gateways)
{
	const char *group = jstr(ref, "group"), *kind = jstr(ref, "kind"), *ns = jstr(ref, "namespace");
	const char *name = jstr(ref, "name");
	char key[600];

	if (!name || (json_object_get(ref, "kind") && !kind) || (json_object_get(ref, "group") && !group))
		return false;
	if (kind && !strcmp(kind, "Service"))
		return group && (!*group || !strcmp(group, "core"));
	if ((kind && strcmp(kind, "Gateway")) || (group && strcmp(group, GW_GROUP)))
		return false;
	snprintf(key, sizeof(key), "%s/%s", ns ? ns : route_ns, name);
	return json_object_get(gateways, key) != NULL;
}

json_t *kstatus_invalid_route_intent(json_t *obj, json_t *gateways, const char *message)
{
	json_t *refs = json_object_get(json_object_get(obj, "spec"), "parentRefs"), *out = json_array(), *ref;
	const char *ns = jstr(json_object_get(obj, "metadata"), "namespace");
	size_t i;

	if (!out || !ns)
		return out;
	json_array_foreach(refs, i, ref) {
		if (json_is_object(ref) && ref_ours(ref, ns, gateways) &&
		    json_array_append_new(out, json_pack("{s:O, s:s, s:[o]}", "parentRef", ref, "controllerName",
							 ROUTE_CONTROLLER_NAME, "conditions",
							 cond("Accepted", false, "UnsupportedValue", message)))) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

static json_t *cond_find(json_t *conds, const char *type)
{
	size_t i;
	json_t *c;

	json_array_foreach(conds, i, c)
		if (jstr(c, "type") && !strcmp(jstr(c, "type"), type))
			return c;
	return NULL;
}

/* observedGeneration, and lastTransitionTime: the old one while the
 * condition's status stays, else now. */
static void stamp(json_t *conds, json_t *old_conds, json_t *gen, const char *now)
{
	size_t i;
	json_t *c;

	json_array_foreach(conds, i, c) {
		json_t *o = cond_find(old_conds, jstr(c, "type"));
		json_t *t = json_object_get(o, "lastTransitionTime");

		if (json_is_integer(gen))
			json_object_set(c, "observedGeneration", gen);
		if (o && json_is_string(t) && jstr(o, "status") && !strcmp(jstr(o, "status"), jstr(c, "status")))
			json_object_set(c, "lastTransitionTime", t);
		else
			json_object_set_new(c, "lastTransitionTime", json_string(now));
	}
}

static json_t *obj_generation(json_t *obj)
{
	return json_object_get(json_object_get(obj, "metadata"), "generation");
}

json_t *kstatus_gateway_status(json_t *intent, json_t *obj, const char *now)
{
	json_t *st = json_deep_copy(intent), *old = json_object_get(obj, "status"), *gen = obj_generation(obj);
	json_t *l, *ol;
	size_t i, j;

	stamp(json_object_get(st, "conditions"), json_object_get(old, "conditions"), gen, now);
	json_array_foreach(json_object_get(st, "listeners"), i, l) {
		json_t *match = NULL;

		json_array_foreach(json_object_get(old, "listeners"), j, ol)
			if (json_equal(json_object_get(ol, "name"), json_object_get(l, "name")))
				match = ol;
		stamp(json_object_get(l, "conditions"), json_object_get(match, "conditions"), gen, now);
	}
	return st;
}

static bool entry_ours(json_t *e)
{
	const char *c = jstr(e, "controllerName");

	return c && !strcmp(c, ROUTE_CONTROLLER_NAME);
}

json_t *kstatus_route_status(json_t *ours, json_t *obj, const char *now)
{
	json_t *old = json_object_get(json_object_get(obj, "status"), "parents"), *parents = json_array();
	json_t *e, *o, *gen = obj_generation(obj);
	size_t i, j;

	json_array_foreach(old, i, e)	/* other controllers' entries stay, first */
		if (!entry_ours(e))
			json_array_append(parents, e);
	json_array_foreach(ours, i, e) {
		json_t *n = json_deep_copy(e), *match = NULL;

		json_array_foreach(old, j, o)
			if (entry_ours(o) && json_equal(json_object_get(o, "parentRef"), json_object_get(e, "parentRef")))
				match = o;
		stamp(json_object_get(n, "conditions"), json_object_get(match, "conditions"), gen, now);
		json_array_append_new(parents, n);
	}
	return json_pack("{s:o}", "parents", parents);
}

static void strip_times(json_t *v)
{
	const char *key;
	json_t *x;
	size_t i;

	if (json_is_object(v)) {
		json_object_del(v, "lastTransitionTime");
		json_object_foreach(v, key, x)
			strip_times(x);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			strip_times(x);
	}
}

static bool same_value(json_t *a, json_t *b)
{
	json_t *ca = json_deep_copy(a), *cb = json_deep_copy(b);
	bool eq;

	strip_times(ca);
	strip_times(cb);
	eq = json_equal(ca, cb);
	json_decref(ca);
	json_decref(cb);
	return eq;
}

/* Per key of b (what we write): a merge patch leaves the others alone, and
 * null deletes (so equals a key that is not there). */
bool kstatus_same(json_t *a, json_t *b)
{
	const char *key;
	json_t *v;

	json_object_foreach(b, key, v) {
		json_t *o = json_object_get(a, key);

		if (json_is_null(v) ? o && !json_is_null(o) : !o || !same_value(o, v))
			return false;
	}
	return true;
}

/* ---- the writer ---- */

/* What each write-back kind is, for paths; conds: its status is conditions
 * of its own (kstatus_gateway_status), else route parents entries;
 * cluster: not namespaced. */
struct kst_kind {
	const char *kind, *version, *resource;
	bool conds, cluster;
};

static const struct kst_kind kst_kinds[] = {
	{ "Gateway", "v1", "gateways", true, false },
	{ "HTTPRoute", "v1", "httproutes", false, false },
	{ "GRPCRoute", "v1", "grpcroutes", false, false },
	{ "TCPRoute", "v1alpha2", "tcproutes", false, false },
	{ "TLSRoute", "v1alpha2", "tlsroutes", false, false },
	{ "GatewayClass", "v1", "gatewayclasses", true, true },
};
#define N_KST_KINDS (sizeof(kst_kinds) / sizeof(kst_kinds[0]))

/* A write in flight: which object, so its answer can be told apart. */
struct kst_write {
	struct kst_write *next;
	struct kstatus *s;
	char key[KST_KEY];		/* "Kind/ns/name" */
};

/* A Lease the agent keeps: the election's, or this node's report. */
struct krun {
	struct kstatus *s;
	struct klease l;
	char name[KREPORT_NAME_MAX];
	bool busy;
	enum klease_op op;
	unsigned int chain;		/* requests since the tick */
	uint64_t n_writes;		/* creates and updates that succeeded */
	char last_error[400];		/* the report's (the election's: kstatus.last_error) */
};

struct kstatus {
	struct loop *loop;
	struct kube *kube;
	char ns[254], lease_name[254];
	char node[KREPORT_NAME_MAX];
	struct sl_cidr pools[2];
	size_t n_pools;
	struct krun elect, report;
	struct loop_timer tick, flush;
	json_t *(*node_failures)(void *arg);
	void *node_arg;
	json_t *local;			/* this node's failing listeners (gateways_node_failures) */
	char *local_text;		/* the same, as the report's annotation */
	void (*released)(void *arg);	/* kstatus_release's: pending while releasing */
	void *released_arg;
	struct kreports reports;	/* the holder's view of every node's */
	bool listing, flush_after_list;
	uint64_t n_lists, n_deleted;
	char list_error[200];
	json_t *intents;		/* "Kind/ns/name" -> Gateway status or route parents (ours) */
	json_t *pending;		/* "Kind/ns/name" -> {"rv", "status"}: written, not seen back yet */
	struct kst_write *writes;	/* in flight */
	uint64_t n_writes, n_conflicts, n_errors, n_updates;
	time_t last_write_at;
	char last_error[KST_KEY + 32];
};

static bool kst_leading(const struct kstatus *s)
{
	return s->elect.l.leader && loop_now_ms() - s->elect.l.renewed_ms <= renew_deadline_ms(&s->elect.l);
}

static void lease_do(struct krun *r, enum klease_op op);
static void list_do(struct kstatus *s);

/* Logged as a warning when it is new, at debug when it repeats (each tick). */
static void lease_error(struct krun *r, int status, json_t *body)
{
	static const char *const ops[] = { "", "GET", "POST", "PUT", "PUT (release)" };
	struct kstatus *s = r->s;
	const char *msg = jstr(body, "message");
	char *last = r->l.report ? r->last_error : s->last_error;
	char e[sizeof(r->last_error)];

	if (status)
		snprintf(e, sizeof(e), "Lease %.60s/%.120s: %s: HTTP %d%s%.200s", s->ns, r->name, ops[r->op], status,
			 msg ? ": " : "", msg ? msg : "");
	else
		snprintf(e, sizeof(e), "Lease %.60s/%.120s: %s: no answer", s->ns, r->name, ops[r->op]);
	log_msg(strcmp(e, last) ? LOG_WARN : LOG_DEBUG, "kstatus: %s", e);
	snprintf(last, r->l.report ? sizeof(r->last_error) : sizeof(s->last_error), "%s", e);
}

static const char *report_text_of(json_t *lease)
{
	return jstr(json_object_get(json_object_get(lease, "metadata"), "annotations"), KREPORT_ANNOTATION);
}

/* Releasing: send the release when next says so, else it is over. */
static void release_step(struct kstatus *s, enum klease_op op, int status, json_t *body, enum klease_op next)
{
	void (*done)(void *arg) = s->released;

	if (op == KLEASE_RELEASE) {
		if (status == 200)
			pr_info("kstatus: released the Lease %s/%s: another agent takes it at its next read", s->ns,
				s->elect.name);
		else
			lease_error(&s->elect, status, body);
	}
	if (next == KLEASE_RELEASE) {
		lease_do(&s->elect, next);
		if (s->elect.busy)
			return;
	}
	s->released = NULL;
	if (done)
		done(s->released_arg);
}

static void lease_cb(void *arg, int status, json_t *body)
{
	struct krun *r = arg;
	struct kstatus *s = r->s;
	bool was = r->l.leader;
	enum klease_op next;
	const char *text;

	r->busy = false;
	next = klease_answer(&r->l, r->op, status, body, loop_now_ms());
	if (r->l.released && !r->l.report) {
		release_step(s, r->op, status, body, next);
		return;
	}
	if ((r->op == KLEASE_CREATE || r->op == KLEASE_UPDATE) && (status == 200 || status == 201)) {
		r->n_writes++;
		if (r->l.report)
			r->last_error[0] = '\0';
	}
	if (status != 200 && status != 201 && !(r->op == KLEASE_GET && status == 404) && status != 409)
		lease_error(r, status, body);
	if (r == &s->elect && !was && r->l.leader) {
		s->flush_after_list = true;	/* write what the agent has now, with the nodes' reports */
		list_do(s);
	}
	/* the node's state changed while the last write was on its way */
	text = report_text_of(r->l.record);
	if (r->l.report && next == KLEASE_WAIT && r->l.leader && (!text || strcmp(text, s->local_text)))
		next = KLEASE_UPDATE;
	lease_do(r, next);
}

/* The report's Lease: labelled, so that the holder lists only these, and
 * annotated with this node's failing listeners. */
static void report_dress(struct kstatus *s, json_t *o)
{
	json_t *md = json_object_get(o, "metadata"), *labels, *ann;

	if (!json_is_object(md))
		return;
	if (!json_is_object(labels = json_object_get(md, "labels")))
		json_object_set_new(md, "labels", labels = json_object());
	if (!json_is_object(ann = json_object_get(md, "annotations")))
		json_object_set_new(md, "annotations", ann = json_object());
	json_object_set_new(labels, KREPORT_LABEL, json_string("true"));
	json_object_set_new(ann, KREPORT_ANNOTATION, json_string(s->local_text));
	json_object_set_new(ann, KREPORT_NODE_ANNOTATION, json_string(s->node));
}

static void lease_do(struct krun *r, enum klease_op op)
{
	struct kstatus *s = r->s;
	char path[700], now[40], *body = NULL;
	json_t *o;
	int err;

	if (op == KLEASE_WAIT || r->busy || r->chain >= KLEASE_CHAIN_MAX)
		return;
	r->chain++;
	snprintf(path, sizeof(path), "/apis/coordination.k8s.io/v1/namespaces/%s/leases%s%s", s->ns,
		 op == KLEASE_CREATE ? "" : "/", op == KLEASE_CREATE ? "" : r->name);
	if (op != KLEASE_GET) {
		now_micro(now, sizeof(now));
		o = klease_body(&r->l, op, s->ns, r->name, now);
		if (o && r->l.report)
			report_dress(s, o);
		body = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (!body)
			return;
	}
	err = kube_request(s->kube, op == KLEASE_GET ? "GET" : op == KLEASE_CREATE ? "POST" : "PUT", path, NULL,
			   body, lease_cb, r);
	free(body);
	if (!err) {
		r->busy = true;
		r->op = op;
	}
}

/* ---- the nodes' reports ---- */

/* The holder: whether the merge has something new to write. */
static void reports_settle(struct kstatus *s)
{
	bool changed = kreports_changed(&s->reports, loop_now_ms());

	if (kst_leading(s) && (changed || s->flush_after_list))
		loop_timer_arm(s->loop, &s->flush, 0);
	s->flush_after_list = false;
}

static void delete_cb(void *arg, int status, json_t *body)
{
	struct kstatus *s = arg;

	(void)body;
	if (status == 200 || status == 202) {
		s->n_deleted++;
		return;
	}
	/* 409: renewed after all (the precondition); 404: gone already; else
	 * the next list may try again */
	log_msg(LOG_DEBUG, "kstatus: deleting a stale node report: %s%d", status ? "HTTP " : "no answer ", status);
	for (size_t i = 0; i < s->reports.n; i++)
		s->reports.v[i].deleting = false;
}

/* The holder deletes the reports of nodes gone for good, with their
 * resourceVersion as a precondition: one renewed meanwhile stays. */
static void reports_gc(struct kstatus *s)
{
	uint64_t now = loop_now_ms();

	for (size_t i = 0; i < s->reports.n; i++) {
		struct kreport *p = &s->reports.v[i];
		char path[700], *body;
		json_t *o;

		if (!kreports_gc_due(&s->reports, i, now))
			continue;
		snprintf(path, sizeof(path), "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", s->ns, p->lease);
		o = json_pack("{s:s, s:s, s:{s:s}}", "kind", "DeleteOptions", "apiVersion", "v1", "preconditions",
			      "resourceVersion", p->rv);
		body = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
		if (body && !kube_request(s->kube, "DELETE", path, NULL, body, delete_cb, s)) {
			p->deleting = true;
			log_msg(LOG_INFO, "kstatus: node report %s (node %s) stale for %llu s: deleting it", p->lease,
				p->node, (unsigned long long)((now - p->seen_ms) / 1000));
		}
		free(body);
	}
}

static void list_cb(void *arg, int status, json_t *body)
{
	struct kstatus *s = arg;

	s->listing = false;
	if (status == 200 && json_is_object(body)) {
		kreports_observe(&s->reports, body, s->report.name, loop_now_ms(), s->elect.l.duration_s);
		s->n_lists++;
		s->list_error[0] = '\0';
		reports_gc(s);
	} else {
		char e[sizeof(s->list_error)];

		/* status is still written, from what is known (a missing RBAC
		 * verb costs the merge, not the status) */
		snprintf(e, sizeof(e), "listing node reports: %s%d", status ? "HTTP " : "no answer ", status);
		log_msg(strcmp(e, s->list_error) ? LOG_WARN : LOG_DEBUG, "kstatus: %s", e);
		memcpy(s->list_error, e, sizeof(e));
	}
	reports_settle(s);
}

/* LIST the report Leases (the API server's cache: resourceVersion=0); the
 * holder does it each renewal, so a report ages by the same clock. */
static void list_do(struct kstatus *s)
{
	char path[700];

	if (s->listing)
		return;
	snprintf(path, sizeof(path),
		 "/apis/coordination.k8s.io/v1/namespaces/%s/leases?labelSelector=%s%%3Dtrue&resourceVersion=0",
		 s->ns, "sluice.io%2Fnode-report");
	if (kube_request(s->kube, "GET", path, NULL, NULL, list_cb, s)) {
		reports_settle(s);
		return;
	}
	s->listing = true;
}

/* This node's failing listeners, read again: the report and the holder's
 * merge follow when they changed. */
static void local_refresh(struct kstatus *s)
{
	json_t *now = s->node_failures ? s->node_failures(s->node_arg) : json_object();
	char *text;

	if (!now || (s->local && json_equal(now, s->local))) {
		json_decref(now);
		return;
	}
	text = json_dumps(now, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text) {
		json_decref(now);
		return;
	}
	json_decref(s->local);
	s->local = now;
	free(s->local_text);
	s->local_text = text;
	kreports_set_self(&s->reports, s->report.name, s->node, s->local);
	reports_settle(s);
	if (s->report.l.leader && s->report.l.record)
		lease_do(&s->report, KLEASE_UPDATE);	/* busy: lease_cb sends it after */
}

void kstatus_node_changed(struct kstatus *s)
{
	if (s)
		local_refresh(s);
}

int kstatus_release(struct kstatus *s, void (*done)(void *arg), void *arg)
{
	enum klease_op op;

	if (!s || s->elect.l.released)
		return 0;
	op = klease_release(&s->elect.l);	/* no status write from here on */
	if (op != KLEASE_RELEASE && !s->elect.busy)
		return 0;
	s->released = done;
	s->released_arg = arg;
	if (s->elect.busy)
		return 1;	/* lease_cb goes on from the answer */
	s->elect.chain = 0;
	lease_do(&s->elect, op);
	if (s->elect.busy)
		return 1;
	s->released = NULL;
	return 0;
}

static void tick_cb(struct loop_timer *t)
{
	struct kstatus *s = t->arg;
	uint64_t now = loop_now_ms();

	s->elect.chain = s->report.chain = 0;
	local_refresh(s);
	lease_do(&s->elect, klease_tick(&s->elect.l, now));
	lease_do(&s->report, klease_tick(&s->report.l, now));
	if (kst_leading(s))
		list_do(s);
	loop_timer_arm(s->loop, &s->tick, s->elect.l.duration_s * 1000 / 3);
}

static const struct kst_kind *kst_kind_of(const char *key)
{
	for (size_t i = 0; i < N_KST_KINDS; i++) {
		size_t n = strlen(kst_kinds[i].kind);

		if (!strncmp(key, kst_kinds[i].kind, n) && key[n] == '/')
			return &kst_kinds[i];
	}
	return NULL;
}

static void write_cb(void *arg, int status, json_t *body)
{
	struct kst_write *w = arg, **pp;
	struct kstatus *s = w->s;

	(void)body;
	for (pp = &s->writes; *pp && *pp != w; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = w->next;
	if (status == 200 || status == 201) {
		s->n_writes++;
		s->last_write_at = time(NULL);
	} else {
		/* A refusal (403, 422: RBAC, validation) is not retried until the
		 * object or its status changes: it stays pending. The rest are. */
		if (status == 0 || status == 409 || status == 429 || status >= 500)
			json_object_del(s->pending, w->key);
		if (status == 409) {
			s->n_conflicts++;
			loop_timer_arm(s->loop, &s->flush, KSTATUS_CONFLICT_MS);
		} else {
			s->n_errors++;
			if (status)
				snprintf(s->last_error, sizeof(s->last_error), "%s: HTTP %d", w->key, status);
			else
				snprintf(s->last_error, sizeof(s->last_error), "%s: no answer", w->key);
			pr_warn("kstatus: writing status: %s", s->last_error);
			if (!json_object_get(s->pending, w->key) && !loop_timer_armed(&s->flush))
				loop_timer_arm(s->loop, &s->flush, KSTATUS_RETRY_MS);
		}
	}
	free(w);
}

/* PATCH obj's /status to st, with obj's resourceVersion as the precondition. */
static void kst_write(struct kstatus *s, const char *key, json_t *obj, json_t *st)
{
	const struct kst_kind *kk = kst_kind_of(key);
	json_t *md = json_object_get(obj, "metadata"), *rv = json_object_get(md, "resourceVersion");
	const char *ns = jstr(md, "namespace"), *name = jstr(md, "name");
	json_t *patch = json_pack("{s:{s:O}, s:O}", "metadata", "resourceVersion", rv ? rv : json_null(), "status", st);
	char path[800], *body = patch ? json_dumps(patch, JSON_COMPACT) : NULL;
	struct kst_write *w = calloc(1, sizeof(*w));

	json_decref(patch);
	if (!kk || !name || (!ns && !kk->cluster) || !body || !w) {
		free(body);
		free(w);
		return;
	}
	if (kk->cluster)
		snprintf(path, sizeof(path), "/apis/%s/%s/%s/%s/status", GW_GROUP, kk->version, kk->resource, name);
	else
		snprintf(path, sizeof(path), "/apis/%s/%s/namespaces/%s/%s/%s/status", GW_GROUP, kk->version, ns,
			 kk->resource, name);
	w->s = s;
	snprintf(w->key, sizeof(w->key), "%s", key);
	if (kube_request(s->kube, "PATCH", path, "application/merge-patch+json", body, write_cb, w)) {
		free(w);
	} else {
		w->next = s->writes;
		s->writes = w;
		json_object_set_new(s->pending, key, json_pack("{s:O, s:O}", "rv", rv ? rv : json_null(), "status", st));
		pr_debug("kstatus: writing the status of %s", key);
	}
	free(body);
}

static bool has_our_entry(json_t *obj)
{
	json_t *e;
	size_t i;

	json_array_foreach(json_object_get(json_object_get(obj, "status"), "parents"), i, e)
		if (entry_ours(e))
			return true;
	return false;
}

/* One object: write when what it should say differs from what it says, and
 * no write of that very status is already on its way. */
static void kst_flush_one(struct kstatus *s, const char *key, bool gateway, json_t *obj, const char *now)
{
	json_t *intent = json_object_get(s->intents, key), *st, *p, *none = NULL;
	json_t *rv = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");

	if (gateway && !intent)
		return;		/* not of class sluice (or not our class): not ours */
	if (!gateway && !json_array_size(intent) && !has_our_entry(obj))
		return;		/* no parent of ours, nothing of ours to take away */
	if (!gateway && !intent)
		intent = none = json_array();
	else if (gateway && !strncmp(key, "Gateway/", 8))	/* what the nodes say of its listeners */
		intent = none = kreports_merge(intent, key + 8, &s->reports, loop_now_ms());
	if (!intent)
		return;
	st = gateway ? kstatus_gateway_status(intent, obj, now) : kstatus_route_status(intent, obj, now);
	json_decref(none);
	p = json_object_get(s->pending, key);
	if (kstatus_same(json_object_get(obj, "status"), st))
		json_object_del(s->pending, key);
	else if (!(p && json_equal(json_object_get(p, "rv"), rv) && kstatus_same(json_object_get(p, "status"), st)))
		kst_write(s, key, obj, st);
	json_decref(st);
}

static void flush_cb(struct loop_timer *t)
{
	struct kstatus *s = t->arg;
	char now[40], key[KST_KEY];
	const char *okey;
	json_t *obj;

	if (!kst_leading(s) || !s->n_updates)
		return;		/* before the first configuration, every route would lose our entries */
	now_rfc3339(now, sizeof(now));
	for (size_t i = 0; i < N_KST_KINDS; i++) {
		json_object_foreach(kube_objects(s->kube, kst_kinds[i].kind), okey, obj) {
			snprintf(key, sizeof(key), "%s/%s", kst_kinds[i].kind, okey);
			kst_flush_one(s, key, kst_kinds[i].conds, obj, now);
		}
	}
}

/* ---- intents from the model ---- */

static const struct gwplan_gateway *plan_find(const struct gwplan *p, const char *ns, const char *name)
{
	for (size_t i = 0; i < p->n_gws; i++)
		if (!strcmp(p->gws[i].gw->ns, ns) && !strcmp(p->gws[i].gw->name, name))
			return &p->gws[i];
	return NULL;
}

/* A parentRef is ours when it names a Gateway of class sluice, or a Service. */
static bool parent_ours(const struct gwplan *p, const struct sl_route *r, const struct sl_parent_ref *pr)
{
	bool svc = pr->kind && !strcmp(pr->kind, "Service") && pr->group && (!*pr->group || !strcmp(pr->group, "core"));
	bool gw = (!pr->kind || !strcmp(pr->kind, "Gateway")) && (!pr->group || !strcmp(pr->group, GW_GROUP));

	return svc || (gw && pr->name && plan_find(p, pr->ns ? pr->ns : r->ns, pr->name));
}

/* The spec's parentRef as the object has it (so it compares equal), else one
 * built from the decoded fields. New reference. */
static json_t *parent_ref_json(struct kstatus *s, const struct sl_route *r, size_t i)
{
	const struct sl_parent_ref *pr = &r->parents[i];
	char key[600];
	json_t *obj, *refs, *o;

	snprintf(key, sizeof(key), "%s/%s", r->ns, r->name);
	obj = json_object_get(kube_objects(s->kube, route_kind_str(r->kind)), key);
	refs = json_object_get(json_object_get(obj, "spec"), "parentRefs");
	if (json_is_object(json_array_get(refs, i)))
		return json_deep_copy(json_array_get(refs, i));
	o = json_pack("{s:s}", "name", pr->name ? pr->name : "");
	if (pr->group)
		json_object_set_new(o, "group", json_string(pr->group));
	if (pr->kind)
		json_object_set_new(o, "kind", json_string(pr->kind));
	if (pr->ns)
		json_object_set_new(o, "namespace", json_string(pr->ns));
	if (pr->section_name)
		json_object_set_new(o, "sectionName", json_string(pr->section_name));
	if (pr->port)
		json_object_set_new(o, "port", json_integer(pr->port));
	return o;
}

static int intents_routes(struct kstatus *s, const struct gwplan *p, const struct route_table *rt, json_t *out)
{
	size_t n = route_status_count(rt);
	char key[KST_KEY];

	for (size_t i = 0; i < n; i++) {
		const struct route_parent_status *st = route_status_at(rt, i);
		const struct sl_route *r = st->route;
		json_t *arr, *ref;

		if (!parent_ours(p, r, &r->parents[st->parent]))
			continue;
		snprintf(key, sizeof(key), "%s/%s/%s", route_kind_str(r->kind), r->ns, r->name);
		if (!(arr = json_object_get(out, key))) {
			arr = json_array();
			if (json_object_set_new(out, key, arr))
				return -ENOMEM;
		}
		ref = parent_ref_json(s, r, st->parent);
		if (!ref || json_array_append_new(arr, kstatus_parent_intent(ref, st->accepted, st->accepted_reason,
									     st->resolved_refs, st->refs_reason,
									     st->partially_invalid, st->message))) {
			json_decref(ref);
			return -ENOMEM;
		}
		json_decref(ref);
	}
	return 0;
}

static bool class_ours(const struct sl_resources *res, const char *name)
{
	for (size_t i = 0; name && i < res->n_gateway_classes; i++)
		if (res->gateway_classes[i].name && !strcmp(res->gateway_classes[i].name, name))
			return res->gateway_classes[i].controller &&
			       !strcmp(res->gateway_classes[i].controller, ROUTE_CONTROLLER_NAME);
	return false;
}

/* The Gateway API objects the source skipped as invalid (kube_skipped): a
 * Gateway of a class of ours, and route parentRefs to the plan's Gateways
 * or to Services, get why in their conditions. */
static int intents_skipped(struct kstatus *s, const struct sl_model *m, const struct gwplan *p, json_t *out)
{
	json_t *skipped = kube_skipped(s->kube), *gws = json_object(), *why, *obj, *v;
	char key[600];
	const char *okey;
	int err = 0;

	for (size_t i = 0; gws && i < p->n_gws; i++) {
		snprintf(key, sizeof(key), "%s/%s", p->gws[i].gw->ns, p->gws[i].gw->name);
		if (json_object_set_new(gws, key, json_true()))
			err = -ENOMEM;
	}
	if (!gws)
		err = -ENOMEM;
	json_object_foreach(skipped, okey, why) {
		const struct kst_kind *kk = kst_kind_of(okey);

		if (err || !kk || kk->cluster)
			continue;	/* a GatewayClass: whose it is cannot be told */
		obj = json_object_get(kube_objects(s->kube, kk->kind), okey + strlen(kk->kind) + 1);
		if (!obj)
			continue;
		if (kk == &kst_kinds[0] &&
		    !class_ours(m->res, jstr(json_object_get(obj, "spec"), "gatewayClassName")))
			continue;	/* not ours */
		v = kk == &kst_kinds[0] ? kstatus_invalid_gateway_intent(json_string_value(why))
					: kstatus_invalid_route_intent(obj, gws, json_string_value(why));
		if (json_object_set_new(out, okey, v))
			err = -ENOMEM;
	}
	json_decref(gws);
	return err;
}

int kstatus_update(struct kstatus *s, const struct sl_model *m, const struct route_table *rt)
{
	struct gwplan *p = NULL;
	json_t *out = json_object();
	char key[600];
	int err;

	if (!out)
		return -ENOMEM;
	err = gwplan_build(m, rt, s->pools, s->n_pools, &p);
	for (size_t i = 0; !err && i < m->res->n_gateway_classes; i++) {
		const struct sl_gateway_class *gc = &m->res->gateway_classes[i];

		if (!gc->name || !gc->controller || strcmp(gc->controller, ROUTE_CONTROLLER_NAME))
			continue;
		snprintf(key, sizeof(key), "GatewayClass//%s", gc->name);
		if (json_object_set_new(out, key, kstatus_gatewayclass_intent()))
			err = -ENOMEM;
	}
	for (size_t i = 0; !err && i < p->n_gws; i++) {
		snprintf(key, sizeof(key), "Gateway/%s/%s", p->gws[i].gw->ns, p->gws[i].gw->name);
		if (json_object_set_new(out, key, kstatus_gateway_intent(&p->gws[i])))
			err = -ENOMEM;
	}
	if (!err)
		err = intents_routes(s, p, rt, out);
	if (!err)
		err = intents_skipped(s, m, p, out);
	gwplan_free(p);
	if (err) {
		json_decref(out);
		return err;
	}
	json_decref(s->intents);
	s->intents = out;
	s->n_updates++;
	local_refresh(s);	/* the listeners were just (re)opened */
	if (kst_leading(s))
		loop_timer_arm(s->loop, &s->flush, 0);
	return 0;
}

/* A status changed (our write coming back, or someone else's): compare
 * again soon, in one pass for a burst. */
static void on_status(void *arg)
{
	struct kstatus *s = arg;

	if (kst_leading(s) && !loop_timer_armed(&s->flush))
		loop_timer_arm(s->loop, &s->flush, KSTATUS_ECHO_MS);
}

/* ---- lifecycle ---- */

int kstatus_new(struct kstatus **out, struct loop *l, struct kube *k, const struct kstatus_opts *o)
{
	struct kstatus *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->loop = l;
	s->kube = k;
	snprintf(s->ns, sizeof(s->ns), "%s", o->ns ? o->ns : KSTATUS_LEASE_NS);
	snprintf(s->lease_name, sizeof(s->lease_name), "%s", o->lease_name ? o->lease_name : KSTATUS_LEASE_NAME);
	snprintf(s->node, sizeof(s->node), "%s", o->node ? o->node : o->identity ? o->identity : "");
	for (size_t i = 0; i < o->n_pools && i < 2; i++)
		s->pools[s->n_pools++] = o->pools[i];
	s->elect.s = s->report.s = s;
	klease_init(&s->elect.l, o->identity ? o->identity : "", o->lease_s);
	snprintf(s->elect.name, sizeof(s->elect.name), "%s", s->lease_name);
	klease_init(&s->report.l, o->identity ? o->identity : "", o->lease_s);
	s->report.l.report = true;
	kreport_lease_name(s->node, s->report.name);
	s->node_failures = o->node_failures;
	s->node_arg = o->node_arg;
	s->intents = json_object();
	s->pending = json_object();
	s->local = json_object();
	s->local_text = strdup("{}");
	if (!s->intents || !s->pending || !s->local || !s->local_text) {
		kstatus_free(s);
		return -ENOMEM;
	}
	kreports_set_self(&s->reports, s->report.name, s->node, s->local);
	loop_timer_init(&s->tick, tick_cb, s);
	loop_timer_init(&s->flush, flush_cb, s);
	loop_timer_arm(l, &s->tick, 0);
	kube_on_status(k, on_status, s);
	pr_info("kstatus: status write-back by the holder of Lease %s/%s (as %s, %u s); this node's report: "
		"Lease %s", s->ns, s->lease_name, s->elect.l.identity, s->elect.l.duration_s, s->report.name);
	*out = s;
	return 0;
}

void kstatus_free(struct kstatus *s)
{
	if (!s)
		return;
	kube_requests_cancel(s->kube, &s->elect);
	kube_requests_cancel(s->kube, &s->report);
	kube_requests_cancel(s->kube, s);
	if (s->kube)
		kube_on_status(s->kube, NULL, NULL);
	while (s->writes) {
		struct kst_write *w = s->writes;

		s->writes = w->next;
		kube_requests_cancel(s->kube, w);
		free(w);
	}
	if (s->loop) {
		loop_timer_cancel(s->loop, &s->tick);
		loop_timer_cancel(s->loop, &s->flush);
	}
	klease_clear(&s->elect.l);
	klease_clear(&s->report.l);
	kreports_clear(&s->reports);
	json_decref(s->local);
	free(s->local_text);
	json_decref(s->intents);
	json_decref(s->pending);
	free(s);
}

json_t *kstatus_json(const struct kstatus *s)
{
	char at[40] = "", lease[520], report[520];
	json_t *nr, *reports = NULL;
	struct tm tm;

	if (!s)
		return json_null();
	snprintf(lease, sizeof(lease), "%s/%s", s->ns, s->lease_name);
	if (s->last_write_at) {
		gmtime_r(&s->last_write_at, &tm);
		strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	snprintf(report, sizeof(report), "%s/%s", s->ns, s->report.name);
	nr = json_pack("{s:s, s:s, s:b, s:s, s:I, s:O, s:s?}", "lease", report, "node", s->node, "published",
		       s->report.l.leader, "holder", s->report.l.holder, "writes", (json_int_t)s->report.n_writes,
		       "listeners", s->local, "last_error", s->report.last_error[0] ? s->report.last_error : NULL);
	if (kst_leading(s)) {
		reports = kreports_json(&s->reports, loop_now_ms());
		json_object_set_new(reports, "lists", json_integer((json_int_t)s->n_lists));
		json_object_set_new(reports, "deleted", json_integer((json_int_t)s->n_deleted));
		if (s->list_error[0])
			json_object_set_new(reports, "list_error", json_string(s->list_error));
	}
	return json_pack("{s:s, s:s, s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:s?, s:s?, s:o, s:o?}", "identity",
			 s->elect.l.identity, "lease", lease, "leader", kst_leading(s), "holder", s->elect.l.holder,
			 "transitions", (json_int_t)s->elect.l.transitions, "writes", (json_int_t)s->n_writes,
			 "conflicts", (json_int_t)s->n_conflicts, "write_errors", (json_int_t)s->n_errors, "pending",
			 (json_int_t)json_object_size(s->pending), "last_write_at", at[0] ? at : NULL, "last_error",
			 s->last_error[0] ? s->last_error : NULL, "node_report", nr, "node_reports", reports);
}
