// SPDX-License-Identifier: Apache-2.0
/* test_kube_status.c - kstatus.c without I/O: the Lease state machine (acquire,
 * renew, lost to another holder, take over after expiry by our own clock,
 * 409 -> read again, a leader that cannot renew stops writing), and the
 * status documents (Gateway and listener conditions from a plan, route
 * parents, lastTransitionTime kept while a status stays, observedGeneration,
 * other controllers' entries kept, equal-but-for-times means no write).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "gwplan.h"
#include "kstatus.h"
#include "lib/kcond.h"
#include "lib/test.h"
#include "model.h"
#include "route.h"

#define T0 1000000ull	/* a monotonic clock far from 0 */

static json_t *lease(const char *holder, const char *renew, const char *rv, int dur)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:i, s:s, s:i}}", "apiVersion",
			 "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", "sluice-status", "namespace",
			 "sluice-system", "resourceVersion", rv, "spec", "holderIdentity", holder, "renewTime", renew,
			 "leaseDurationSeconds", dur, "acquireTime", "2026-01-01T00:00:00.000000Z", "leaseTransitions",
			 2);
}

static const char *spec_str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(json_object_get(o, "spec"), key));
}

void test_kube_status_lease_acquire_renew(void)
{
	struct klease l;
	json_t *body, *got;

	klease_init(&l, "node-1", 15);
	ASSERT_EQ(klease_tick(&l, T0), KLEASE_GET, "first tick reads");
	ASSERT_EQ(klease_answer(&l, KLEASE_GET, 404, NULL, T0), KLEASE_CREATE, "no Lease: create");
	body = klease_body(&l, KLEASE_CREATE, "sluice-system", "sluice-status", "2026-11-27T15:00:00.000000Z");
	ASSERT_STREQ(spec_str(body, "holderIdentity"), "node-1", "create: holder");
	ASSERT_EQ(json_integer_value(json_object_get(json_object_get(body, "spec"), "leaseDurationSeconds")), 15,
		  "create: duration");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(body, "metadata"), "namespace")),
		     "sluice-system", "create: namespace");
	json_decref(body);
	got = lease("node-1", "2026-11-27T15:00:00.000000Z", "7", 15);
	ASSERT_EQ(klease_answer(&l, KLEASE_CREATE, 201, got, T0), KLEASE_WAIT, "created: wait");
	json_decref(got);
	ASSERT_TRUE(l.leader, "created: leader");
	ASSERT_EQ(l.transitions, 1, "one transition");

	/* renew on the record written, with its resourceVersion */
	ASSERT_EQ(klease_tick(&l, T0 + 5000), KLEASE_UPDATE, "leader renews without reading");
	body = klease_body(&l, KLEASE_UPDATE, "sluice-system", "sluice-status", "2026-11-27T15:00:05.000000Z");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(body, "metadata"), "resourceVersion")), "7",
		     "renew: precondition resourceVersion");
	ASSERT_STREQ(spec_str(body, "renewTime"), "2026-11-27T15:00:05.000000Z", "renew: renewTime");
	ASSERT_STREQ(spec_str(body, "acquireTime"), "2026-01-01T00:00:00.000000Z", "renew: acquireTime kept");
	ASSERT_EQ(json_integer_value(json_object_get(json_object_get(body, "spec"), "leaseTransitions")), 2,
		  "renew: transitions kept");
	json_decref(body);
	got = lease("node-1", "2026-11-27T15:00:05.000000Z", "8", 15);
	ASSERT_EQ(klease_answer(&l, KLEASE_UPDATE, 200, got, T0 + 5000), KLEASE_WAIT, "renewed");
	json_decref(got);
	ASSERT_TRUE(l.leader, "still leader");
	ASSERT_EQ(l.transitions, 1, "renewal is no transition");

	/* renewals fail (no answer): leading stops before the Lease can expire */
	ASSERT_EQ(klease_answer(&l, KLEASE_UPDATE, 0, NULL, T0 + 10000), KLEASE_WAIT, "no answer: wait");
	ASSERT_TRUE(l.leader, "one missed renewal: still leader");
	klease_tick(&l, T0 + 5000 + 10001);
	ASSERT_FALSE(l.leader, "no renewal for 2/3 of the duration: not leader");
	klease_clear(&l);
}

void test_kube_status_lease_other_holder(void)
{
	struct klease l;
	json_t *a1, *a2, *body, *mine;

	klease_init(&l, "node-2", 15);
	a1 = lease("node-1", "2026-11-27T15:00:00.000000Z", "10", 15);
	a2 = lease("node-1", "2026-11-27T15:00:05.000000Z", "11", 15);
	ASSERT_EQ(klease_tick(&l, T0), KLEASE_GET, "reads");
	ASSERT_EQ(klease_answer(&l, KLEASE_GET, 200, a1, T0), KLEASE_WAIT, "held by node-1: wait");
	ASSERT_FALSE(l.leader, "not leader");
	ASSERT_STREQ(l.holder, "node-1", "holder seen");
	/* node-1 renews: the clock starts again */
	ASSERT_EQ(klease_answer(&l, KLEASE_GET, 200, a2, T0 + 10000), KLEASE_WAIT, "renewed by node-1: wait");
	ASSERT_EQ(klease_answer(&l, KLEASE_GET, 200, a2, T0 + 24000), KLEASE_WAIT,
		  "14 s since the last change: wait");
	/* node-1 stops renewing: take over after the duration, by our clock */
	ASSERT_EQ(klease_answer(&l, KLEASE_GET, 200, a2, T0 + 25000), KLEASE_UPDATE, "expired: take over");
	body = klease_body(&l, KLEASE_UPDATE, "sluice-system", "sluice-status", "2026-11-27T15:01:00.000000Z");
	ASSERT_STREQ(spec_str(body, "holderIdentity"), "node-2", "take-over: holder");
	ASSERT_STREQ(spec_str(body, "acquireTime"), "2026-11-27T15:01:00.000000Z", "take-over: acquireTime now");
	ASSERT_EQ(json_integer_value(json_object_get(json_object_get(body, "spec"), "leaseTransitions")), 3,
		  "take-over: transitions + 1");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(body, "metadata"), "resourceVersion")),
		     "11", "take-over: precondition resourceVersion");
	json_decref(body);
	/* another agent was quicker: 409, read again, and it holds it */
	ASSERT_EQ(klease_answer(&l, KLEASE_UPDATE, 409, NULL, T0 + 25010), KLEASE_GET, "409: read again");
	ASSERT_FALSE(l.leader, "409: not leader");
	json_decref(a1);
	a1 = lease("node-3", "2026-11-27T15:01:00.000000Z", "12", 15);
	ASSERT_EQ(klease_answer(&l, KLEASE_GET, 200, a1, T0 + 25020), KLEASE_WAIT, "node-3 holds it: wait");
	ASSERT_STREQ(l.holder, "node-3", "new holder seen");
	/* node-3 goes quiet; we take it */
	ASSERT_EQ(klease_answer(&l, KLEASE_GET, 200, a1, T0 + 40020), KLEASE_UPDATE, "expired again: take over");
	mine = lease("node-2", "2026-11-27T15:01:15.000000Z", "13", 15);
	ASSERT_EQ(klease_answer(&l, KLEASE_UPDATE, 200, mine, T0 + 40030), KLEASE_WAIT, "taken");
	ASSERT_TRUE(l.leader, "leader");
	/* a renewal that meets 409 (someone wrote the Lease) reads, and yields */
	ASSERT_EQ(klease_answer(&l, KLEASE_UPDATE, 409, NULL, T0 + 45000), KLEASE_GET, "renew 409: read");
	ASSERT_EQ(klease_answer(&l, KLEASE_GET, 200, a2, T0 + 45010), KLEASE_WAIT, "node-1 took it back: wait");
	ASSERT_FALSE(l.leader, "lost to another holder");
	/* an empty holder (released) is taken at once */
	json_decref(a1);
	a1 = lease("", "2026-11-27T15:02:00.000000Z", "20", 15);
	ASSERT_EQ(klease_answer(&l, KLEASE_GET, 200, a1, T0 + 46000), KLEASE_UPDATE, "released: take");
	json_decref(a1);
	json_decref(a2);
	json_decref(mine);
	klease_clear(&l);
}

/* ---- documents ---- */

struct plan_fx {
	struct sl_model *m;
	struct route_table *rt;
	struct gwplan *p;
	struct diags errs;
};

static void plan_free(struct plan_fx *f)
{
	gwplan_free(f->p);
	route_table_free(f->rt);
	model_free(f->m);
	diags_clear(&f->errs);
}

static bool plan_build(struct plan_fx *f, const char *yaml)
{
	struct sl_resources *r = config_resources_new();

	memset(f, 0, sizeof(*f));
	if (!ASSERT_OK_PTR(r, "resources"))
		return false;
	if (!ASSERT_OK(config_decode_buf(r, "t.yaml", yaml, strlen(yaml), &f->errs), "decode")) {
		resources_free(r);
		return false;
	}
	return ASSERT_OK(model_build(r, "node-1", &f->m, &f->errs), "model") &&
	       ASSERT_OK(route_table_build(f->m, &f->rt, &f->errs), "routes") &&
	       ASSERT_OK(gwplan_build(f->m, f->rt, NULL, 0, &f->p), "plan");
}

static const char gw_yaml[] =
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: sluice}\n"
	"spec: {controllerName: sluice.io/gateway-controller}\n---\n"
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
	"spec:\n  gatewayClassName: sluice\n  addresses: [{type: IPAddress, value: 10.99.0.1}]\n  listeners:\n"
	"  - {name: web, port: 80, protocol: HTTP}\n"
	"  - {name: a, port: 9000, protocol: TCP}\n  - {name: b, port: 9000, protocol: TCP}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: infra}\n";

static const char *cs(json_t *conds, const char *type, const char *field)
{
	return json_string_value(json_object_get(kcond_of(conds, type), field));
}

static json_t *listener_of(json_t *st, const char *name)
{
	size_t i;
	json_t *l;

	json_array_foreach(json_object_get(st, "listeners"), i, l)
		if (!strcmp(json_string_value(json_object_get(l, "name")), name))
			return l;
	return NULL;
}

/* The agent exits: the Lease is given up (no holder, 1 s), also when the
 * renewal on its way when the exit came makes us the holder again. */
void test_kube_status_lease_release(void)
{
	struct klease l, idle;
	json_t *got, *body;

	klease_init(&l, "node-1", 15);
	got = lease("node-1", "2026-11-27T15:00:00.000000Z", "7", 15);
	ASSERT_EQ(klease_answer(&l, KLEASE_CREATE, 201, got, T0), KLEASE_WAIT, "created");
	json_decref(got);
	ASSERT_EQ(klease_release(&l), KLEASE_RELEASE, "holder: release");
	ASSERT_FALSE(l.leader, "released: not leading (no status write)");
	body = klease_body(&l, KLEASE_RELEASE, "sluice-system", "sluice-status", "2026-11-27T15:00:03.000000Z");
	ASSERT_STREQ(spec_str(body, "holderIdentity"), "", "release: no holder");
	ASSERT_EQ(json_integer_value(json_object_get(json_object_get(body, "spec"), "leaseDurationSeconds")), 1,
		  "release: 1 s");
	ASSERT_STREQ(spec_str(body, "renewTime"), "2026-11-27T15:00:03.000000Z", "release: renewTime now");
	ASSERT_STREQ(spec_str(body, "acquireTime"), "2026-01-01T00:00:00.000000Z", "release: acquireTime kept");
	ASSERT_EQ(json_integer_value(json_object_get(json_object_get(body, "spec"), "leaseTransitions")), 2,
		  "release: transitions kept");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(body, "metadata"), "resourceVersion")), "7",
		     "release: precondition resourceVersion");
	json_decref(body);
	got = lease("", "2026-11-27T15:00:03.000000Z", "8", 1);
	ASSERT_EQ(klease_answer(&l, KLEASE_RELEASE, 200, got, T0 + 3000), KLEASE_WAIT, "released: done");
	json_decref(got);
	ASSERT_EQ(klease_tick(&l, T0 + 60000), KLEASE_WAIT, "released: no more reads or writes");
	ASSERT_EQ(klease_release(&l), KLEASE_WAIT, "twice: nothing");

	/* a renewal on its way: its answer makes us holder, so release that */
	klease_clear(&l);
	klease_init(&l, "node-1", 15);
	got = lease("node-1", "2026-11-27T15:00:00.000000Z", "7", 15);
	klease_answer(&l, KLEASE_CREATE, 201, got, T0);
	json_decref(got);
	ASSERT_EQ(klease_release(&l), KLEASE_RELEASE, "release asked while renewing");
	got = lease("node-1", "2026-11-27T15:00:05.000000Z", "9", 15);
	ASSERT_EQ(klease_answer(&l, KLEASE_UPDATE, 200, got, T0 + 5000), KLEASE_RELEASE,
		  "the renewal landed: release it");
	json_decref(got);
	ASSERT_FALSE(l.leader, "still not leading");
	body = klease_body(&l, KLEASE_RELEASE, "sluice-system", "sluice-status", "2026-11-27T15:00:05.000000Z");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(body, "metadata"), "resourceVersion")), "9",
		     "release on the renewed record");
	json_decref(body);
	ASSERT_EQ(klease_answer(&l, KLEASE_RELEASE, 409, NULL, T0 + 5010), KLEASE_WAIT,
		  "409 (taken meanwhile): over");
	klease_clear(&l);

	/* not the holder: nothing to give up, and never taken later */
	klease_init(&idle, "node-2", 15);
	got = lease("node-1", "2026-11-27T15:00:00.000000Z", "7", 15);
	klease_answer(&idle, KLEASE_GET, 200, got, T0);
	ASSERT_EQ(klease_release(&idle), KLEASE_WAIT, "not holder: nothing to release");
	ASSERT_EQ(klease_answer(&idle, KLEASE_GET, 200, got, T0 + 60000), KLEASE_WAIT,
		  "released: an expired Lease is not taken");
	json_decref(got);
	klease_clear(&idle);
}

void test_kube_status_gateway_document(void)
{
	struct plan_fx f;
	json_t *intent, *obj, *st, *st2, *web, *a;

	if (!plan_build(&f, gw_yaml) || !ASSERT_EQ(f.p->n_gws, 1, "one Gateway of ours"))
		goto out;
	intent = kstatus_gateway_intent(&f.p->gws[0]);
	obj = json_pack("{s:{s:s, s:s, s:i, s:s}}", "metadata", "name", "gw", "namespace", "infra", "generation", 3,
			"resourceVersion", "40");
	st = kstatus_gateway_status(intent, obj, "2026-11-27T15:00:00Z");
	ASSERT_STREQ(cs(json_object_get(st, "conditions"), "Accepted", "status"), "True", "Gateway Accepted");
	ASSERT_STREQ(cs(json_object_get(st, "conditions"), "Accepted", "reason"), "ListenersNotValid",
		     "Gateway Accepted reason: some listeners conflict");
	ASSERT_STREQ(cs(json_object_get(st, "conditions"), "Programmed", "reason"), "Programmed",
		     "Gateway Programmed");
	ASSERT_EQ(json_integer_value(json_object_get(kcond_of(json_object_get(st, "conditions"), "Accepted"),
						     "observedGeneration")),
		  3, "observedGeneration from metadata.generation");
	ASSERT_STREQ(json_string_value(json_object_get(json_array_get(json_object_get(st, "addresses"), 0), "value")),
		     "10.99.0.1", "status.addresses");
	web = listener_of(st, "web");
	a = listener_of(st, "a");
	if (!ASSERT_OK_PTR(web, "listener web") || !ASSERT_OK_PTR(a, "listener a"))
		goto out2;
	ASSERT_STREQ(cs(json_object_get(a, "conditions"), "Conflicted", "status"), "True", "a: Conflicted");
	ASSERT_STREQ(cs(json_object_get(a, "conditions"), "Conflicted", "reason"), "HostnameConflict",
		     "a: reason HostnameConflict (two TCP listeners on one port)");
	ASSERT_STREQ(cs(json_object_get(a, "conditions"), "Programmed", "status"), "False", "a: not Programmed");
	ASSERT_STREQ(cs(json_object_get(web, "conditions"), "Conflicted", "reason"), "NoConflicts", "web: NoConflicts");
	ASSERT_STREQ(cs(json_object_get(web, "conditions"), "Programmed", "status"), "True", "web: Programmed");
	ASSERT_STREQ(json_string_value(json_object_get(json_array_get(json_object_get(web, "supportedKinds"), 0),
						       "kind")),
		     "HTTPRoute", "web: supportedKinds");
	ASSERT_EQ(json_integer_value(json_object_get(web, "attachedRoutes")), 0, "web: attachedRoutes");

	/* the object now holds st: the same again is no write, times kept */
	json_object_set(obj, "status", st);
	st2 = kstatus_gateway_status(intent, obj, "2026-11-27T16:00:00Z");
	ASSERT_TRUE(kstatus_same(json_object_get(obj, "status"), st2), "same status: no write");
	ASSERT_STREQ(cs(json_object_get(st2, "conditions"), "Accepted", "lastTransitionTime"), "2026-11-27T15:00:00Z",
		     "lastTransitionTime kept while the status stays");
	json_decref(st2);
	/* a new generation is a difference (observedGeneration) */
	json_object_set_new(json_object_get(obj, "metadata"), "generation", json_integer(4));
	st2 = kstatus_gateway_status(intent, obj, "2026-11-27T16:00:00Z");
	ASSERT_FALSE(kstatus_same(json_object_get(obj, "status"), st2), "new generation: write");
	json_decref(st2);
	/* a condition whose status flips gets a new lastTransitionTime */
	json_object_set_new(kcond_of(json_object_get(listener_of(json_object_get(obj, "status"), "web"), "conditions"),
				    "Programmed"),
			    "status", json_string("False"));
	st2 = kstatus_gateway_status(intent, obj, "2026-11-27T16:00:00Z");
	ASSERT_STREQ(cs(json_object_get(listener_of(st2, "web"), "conditions"), "Programmed", "lastTransitionTime"),
		     "2026-11-27T16:00:00Z", "flipped: lastTransitionTime now");
	ASSERT_STREQ(cs(json_object_get(listener_of(st2, "web"), "conditions"), "Accepted", "lastTransitionTime"),
		     "2026-11-27T15:00:00Z", "unflipped: kept");
	json_decref(st2);
out2:
	json_decref(st);
	json_decref(obj);
	json_decref(intent);
out:
	plan_free(&f);
}

void test_kube_status_same(void)
{
	json_t *a = json_loads("{\"conditions\":[{\"type\":\"A\",\"status\":\"True\",\"lastTransitionTime\":\"x\"}],"
			       "\"extra\":1}", 0, NULL);
	json_t *b = json_loads("{\"conditions\":[{\"type\":\"A\",\"status\":\"True\",\"lastTransitionTime\":\"y\"}],"
			       "\"addresses\":null}", 0, NULL);
	json_t *c = json_loads("{\"conditions\":[{\"type\":\"A\",\"status\":\"False\"}]}", 0, NULL);

	if (!ASSERT_OK_PTR(a, "json") || !ASSERT_OK_PTR(b, "json") || !ASSERT_OK_PTR(c, "json"))
		goto out;
	ASSERT_TRUE(kstatus_same(a, b), "times, keys we do not write and null = absent are equal");
	ASSERT_FALSE(kstatus_same(a, c), "another status differs");
	ASSERT_FALSE(kstatus_same(NULL, c), "no status differs");
	json_object_set_new(a, "addresses", json_array());
	ASSERT_FALSE(kstatus_same(a, b), "addresses to remove differ");
out:
	json_decref(a);
	json_decref(b);
	json_decref(c);
}

void test_kube_status_route_document(void)
{
	json_t *ref = json_pack("{s:s, s:s, s:s, s:s}", "group", "gateway.networking.k8s.io", "kind", "Gateway",
				"namespace", "infra", "name", "gw");
	json_t *svc = json_pack("{s:s, s:s, s:s}", "group", "", "kind", "Service", "name", "echo");
	json_t *ours = json_array(), *obj, *st, *st2, *p0, *p1, *p2;

	json_array_append_new(ours, kstatus_parent_intent(ref, true, "Accepted", false, "BackendNotFound", false,
							  "backendRef demo/missing: Service not found"));
	json_array_append_new(ours, kstatus_parent_intent(svc, true, "Accepted", true, "ResolvedRefs", false, ""));
	/* the object: one entry of another controller, one stale of ours */
	obj = json_pack("{s:{s:s, s:s, s:i}, s:{s:[{s:{s:s}, s:s, s:[]}, {s:{s:s}, s:s, s:[]}]}}", "metadata",
			"name", "r", "namespace", "demo", "generation", 2, "status", "parents", "parentRef", "name",
			"theirs", "controllerName", "example.com/other", "conditions", "parentRef", "name", "gone",
			"controllerName", ROUTE_CONTROLLER_NAME, "conditions");
	st = kstatus_route_status(ours, obj, "2026-11-27T15:00:00Z");
	ASSERT_EQ(json_array_size(json_object_get(st, "parents")), 3, "theirs + two of ours; the stale one gone");
	p0 = json_array_get(json_object_get(st, "parents"), 0);
	p1 = json_array_get(json_object_get(st, "parents"), 1);
	p2 = json_array_get(json_object_get(st, "parents"), 2);
	ASSERT_STREQ(json_string_value(json_object_get(p0, "controllerName")), "example.com/other",
		     "other controller's entry kept");
	ASSERT_STREQ(json_string_value(json_object_get(p1, "controllerName")), ROUTE_CONTROLLER_NAME,
		     "our controllerName");
	ASSERT_TRUE(json_equal(json_object_get(p1, "parentRef"), ref), "parentRef as in the spec");
	ASSERT_STREQ(cs(json_object_get(p1, "conditions"), "ResolvedRefs", "status"), "False", "ResolvedRefs False");
	ASSERT_STREQ(cs(json_object_get(p1, "conditions"), "ResolvedRefs", "reason"), "BackendNotFound",
		     "reason BackendNotFound");
	ASSERT_STREQ(cs(json_object_get(p1, "conditions"), "Accepted", "status"), "True", "Accepted True");
	ASSERT_EQ(json_integer_value(json_object_get(kcond_of(json_object_get(p2, "conditions"), "Accepted"),
						     "observedGeneration")),
		  2, "observedGeneration");
	ASSERT_FALSE(kstatus_same(json_object_get(obj, "status"), st), "differs: write");
	json_object_set(obj, "status", st);
	st2 = kstatus_route_status(ours, obj, "2026-11-27T16:00:00Z");
	ASSERT_TRUE(kstatus_same(json_object_get(obj, "status"), st2), "written back: no second write");
	ASSERT_STREQ(cs(json_object_get(json_array_get(json_object_get(st2, "parents"), 1), "conditions"), "Accepted",
			"lastTransitionTime"),
		     "2026-11-27T15:00:00Z", "time kept");
	json_decref(st2);
	json_decref(st);
	json_decref(obj);
	json_decref(ours);
	json_decref(ref);
	json_decref(svc);
}

/* The first problem config_decode_buf finds in yaml (what kube.c skips an
 * object for), into msg. */
static bool decode_problem(const char *yaml, char *msg, size_t len)
{
	struct sl_resources *r = config_resources_new();
	struct diags errs = { 0 };
	bool ok;

	if (!ASSERT_OK_PTR(r, "resources"))
		return false;
	ok = ASSERT_ERR(config_decode_buf(r, "obj", yaml, strlen(yaml), &errs), "the object is invalid") &&
	     ASSERT_GE(errs.n, 1, "a problem reported");
	if (ok)
		snprintf(msg, len, "%s", errs.v[0].msg);
	diags_clear(&errs);
	resources_free(r);
	return ok;
}

void test_kube_status_invalid_gateway_document(void)
{
	static const char bad[] =
		"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
		"spec:\n  gatewayClassName: sluice\n  listeners:\n  - {name: web, port: 0, protocol: HTTP}\n";
	json_t *intent = NULL, *obj, *st = NULL, *st2, *conds;
	char msg[1024];

	/* it was valid and had our status: listeners, addresses */
	obj = json_pack("{s:{s:s, s:s, s:i, s:s}, s:{s:[{s:s, s:s, s:s, s:s, s:s}], s:[{s:s}], s:[{s:s, s:s}]}}",
			"metadata", "name", "gw", "namespace", "infra", "generation", 5, "resourceVersion", "41",
			"status", "conditions", "type", "Accepted", "status", "True", "reason", "Accepted", "message",
			"", "lastTransitionTime", "2026-11-27T14:00:00Z", "listeners", "name", "web", "addresses",
			"type", "IPAddress", "value", "10.99.0.1");
	if (!ASSERT_OK_PTR(obj, "object") || !decode_problem(bad, msg, sizeof(msg)))
		goto out;
	ASSERT_HAS(msg, "listeners[0].port", "the problem names the field");
	intent = kstatus_invalid_gateway_intent(msg);
	st = kstatus_gateway_status(intent, obj, "2026-11-27T15:00:00Z");
	conds = json_object_get(st, "conditions");
	ASSERT_STREQ(cs(conds, "Accepted", "status"), "False", "Accepted False");
	ASSERT_STREQ(cs(conds, "Accepted", "reason"), "Invalid", "Accepted reason Invalid (GatewayReasonInvalid)");
	ASSERT_STREQ(cs(conds, "Accepted", "message"), msg, "Accepted message: the validation problem");
	ASSERT_STREQ(cs(conds, "Accepted", "lastTransitionTime"), "2026-11-27T15:00:00Z", "flipped: time now");
	ASSERT_EQ(json_integer_value(json_object_get(kcond_of(conds, "Accepted"), "observedGeneration")), 5,
		  "observedGeneration");
	ASSERT_STREQ(cs(conds, "Programmed", "status"), "False", "Programmed False");
	ASSERT_STREQ(cs(conds, "Programmed", "reason"), "Invalid", "Programmed reason Invalid");
	ASSERT_STREQ(cs(conds, "Programmed", "message"), msg, "Programmed message");
	ASSERT_TRUE(json_is_null(json_object_get(st, "listeners")), "listeners removed");
	ASSERT_TRUE(json_is_null(json_object_get(st, "addresses")), "addresses removed");
	ASSERT_FALSE(kstatus_same(json_object_get(obj, "status"), st), "differs: write");
	/* written and back (a merge patch's null removes the key): no second write */
	json_object_set_new(obj, "status", json_pack("{s:O}", "conditions", conds));
	st2 = kstatus_gateway_status(intent, obj, "2026-11-27T16:00:00Z");
	ASSERT_TRUE(kstatus_same(json_object_get(obj, "status"), st2), "written back: no second write");
	json_decref(st2);
out:
	json_decref(st);
	json_decref(intent);
	json_decref(obj);
}

void test_kube_status_invalid_route_document(void)
{
	static const char bad[] =
		"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: demo}\n"
		"spec:\n  parentRefs: [{name: gw, namespace: infra}]\n"
		"  rules:\n  - matches: [{path: {type: PathPrefix, value: api}}]\n"
		"    backendRefs: [{name: echo, port: 80}]\n";
	json_t *gws = json_pack("{s:b}", "infra/gw", 1), *obj, *ours = NULL, *st = NULL, *st2, *p, *none;
	const char *GW = "gateway.networking.k8s.io";
	char msg[1024];

	/* parentRefs: ours with defaults, ours in full, another class's Gateway,
	 * a Service (GAMMA), a Service of no core group, a sectionName of ours */
	obj = json_pack("{s:{s:s, s:s, s:i}, s:{s:[{s:s, s:s}, {s:s, s:s, s:s, s:s}, {s:s, s:s}, {s:s, s:s, s:s},"
			" {s:s, s:s}, {s:s, s:s, s:s}]},"
			" s:{s:[{s:{s:s}, s:s, s:[]}, {s:{s:s}, s:s, s:[]}]}}",
			"metadata", "name", "r", "namespace", "demo", "generation", 3, "spec", "parentRefs", "name",
			"gw", "namespace", "infra", "group", GW, "kind", "Gateway", "namespace", "infra", "name", "gw",
			"name", "theirs", "namespace", "infra", "group", "", "kind", "Service", "name", "echo", "kind",
			"Service", "name", "echo", "name", "gw", "namespace", "infra", "sectionName", "web", "status",
			"parents", "parentRef", "name", "x", "controllerName", "example.com/other", "conditions",
			"parentRef", "name", "gw", "controllerName", ROUTE_CONTROLLER_NAME, "conditions");
	if (!ASSERT_OK_PTR(gws, "gateways") || !ASSERT_OK_PTR(obj, "object") || !decode_problem(bad, msg, sizeof(msg)))
		goto out;
	ASSERT_HAS(msg, "must start with '/'", "the problem: a path not starting with /");
	ours = kstatus_invalid_route_intent(obj, gws, msg);
	if (!ASSERT_EQ(json_array_size(ours), 4, "entries for the parentRefs that are ours"))
		goto out;
	for (size_t i = 0; i < 4; i++) {
		static const size_t spec_i[] = { 0, 1, 3, 5 };

		p = json_array_get(ours, i);
		ASSERT_TRUE(json_equal(json_object_get(p, "parentRef"),
				       json_array_get(json_object_get(json_object_get(obj, "spec"), "parentRefs"),
						      spec_i[i])),
			    "parentRef as in the spec");
		ASSERT_STREQ(json_string_value(json_object_get(p, "controllerName")), ROUTE_CONTROLLER_NAME,
			     "our controllerName");
	}
	st = kstatus_route_status(ours, obj, "2026-11-27T15:00:00Z");
	ASSERT_EQ(json_array_size(json_object_get(st, "parents")), 5, "theirs kept + four of ours");
	ASSERT_STREQ(json_string_value(json_object_get(json_array_get(json_object_get(st, "parents"), 0),
						       "controllerName")),
		     "example.com/other", "other controller's entry kept");
	p = json_array_get(json_object_get(st, "parents"), 1);
	ASSERT_STREQ(cs(json_object_get(p, "conditions"), "Accepted", "status"), "False", "Accepted False");
	ASSERT_STREQ(cs(json_object_get(p, "conditions"), "Accepted", "reason"), "UnsupportedValue",
		     "reason UnsupportedValue (RouteReasonUnsupportedValue)");
	ASSERT_STREQ(cs(json_object_get(p, "conditions"), "Accepted", "message"), msg, "message: the problem");
	ASSERT_EQ(json_integer_value(json_object_get(kcond_of(json_object_get(p, "conditions"), "Accepted"),
						     "observedGeneration")),
		  3, "observedGeneration");
	json_object_set(obj, "status", st);
	st2 = kstatus_route_status(ours, obj, "2026-11-27T16:00:00Z");
	ASSERT_TRUE(kstatus_same(json_object_get(obj, "status"), st2), "written back: no second write");
	json_decref(st2);

	/* no parentRef of ours (the Gateway not among ours): nothing of ours */
	json_object_del(gws, "infra/gw");
	json_array_remove(json_object_get(json_object_get(obj, "spec"), "parentRefs"), 3);
	json_array_remove(json_object_get(json_object_get(obj, "spec"), "parentRefs"), 3);
	none = kstatus_invalid_route_intent(obj, gws, msg);
	ASSERT_EQ(json_array_size(none), 0, "no entries when no parentRef is ours");
	st2 = kstatus_route_status(none, obj, "2026-11-27T16:00:00Z");
	ASSERT_EQ(json_array_size(json_object_get(st2, "parents")), 1, "ours taken away, theirs kept");
	json_decref(st2);
	json_decref(none);
out:
	json_decref(st);
	json_decref(ours);
	json_decref(obj);
	json_decref(gws);
}
