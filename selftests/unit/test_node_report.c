// SPDX-License-Identifier: Apache-2.0
/* test_node_report.c - kreport.c without I/O: node reports (the Lease
 * sluice-node-<node> with this node's failing Gateway listeners) as the
 * status writer lists them, and their merge into the Gateway conditions it
 * writes: none failing, some nodes failing, every node failing, a
 * certificate that loads nowhere, a dead node's report aging out by our own
 * clock, bad annotations refused and counted (once), the Lease's name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "gwplan.h"
#include "kreport.h"
#include "kstatus.h"
#include "lib/kcond.h"
#include "lib/test.h"
#include "log.h"
#include "model.h"
#include "route.h"

#define T0 1000000ull	/* a monotonic clock far from 0 */

static const char gw_yaml[] =
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: sluice}\n"
	"spec: {controllerName: sluice.io/gateway-controller}\n---\n"
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
	"spec:\n  gatewayClassName: sluice\n  addresses: [{type: IPAddress, value: 10.99.0.1}]\n  listeners:\n"
	"  - {name: web, port: 80, protocol: HTTP}\n  - {name: api, port: 8080, protocol: HTTP}\n---\n"
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: infra}\n";

/* The plan's intent for infra/gw: both listeners Programmed. New reference. */
static json_t *gw_intent(void)
{
	struct sl_resources *r = config_resources_new();
	struct diags errs = { 0 };
	struct sl_model *m = NULL;
	struct route_table *rt = NULL;
	struct gwplan *p = NULL;
	json_t *intent = NULL;

	if (r && !config_decode_buf(r, "t.yaml", gw_yaml, strlen(gw_yaml), &errs) &&
	    !model_build(r, "node-1", &m, &errs) && !route_table_build(m, &rt, &errs) &&
	    !gwplan_build(m, rt, NULL, 0, &p) && p->n_gws == 1)
		intent = kstatus_gateway_intent(&p->gws[0]);
	else if (!m)
		resources_free(r);
	gwplan_free(p);
	route_table_free(rt);
	model_free(m);
	diags_clear(&errs);
	return intent;
}

static const char *cs(json_t *conds, const char *type, const char *field)
{
	const char *v = json_string_value(json_object_get(kcond_of(conds, type), field));

	return v ? v : "(none)";
}

static json_t *lconds(json_t *st, const char *name)
{
	size_t i;
	json_t *l;

	json_array_foreach(json_object_get(st, "listeners"), i, l)
		if (!strcmp(json_string_value(json_object_get(l, "name")), name))
			return json_object_get(l, "conditions");
	return NULL;
}

/* A report Lease as a LIST item (no kind); ann NULL: no annotation. */
static json_t *report_item(const char *node, const char *renew, int dur, const char *ann)
{
	char name[KREPORT_NAME_MAX];
	json_t *o;

	kreport_lease_name(node, name);
	o = json_pack("{s:{s:s, s:s, s:s, s:{s:s}, s:{s:s}}, s:{s:s, s:s, s:i}}", "metadata", "name", name,
		      "namespace", "sluice-system", "resourceVersion", "5", "labels", KREPORT_LABEL, "true",
		      "annotations", KREPORT_NODE_ANNOTATION, node, "spec", "holderIdentity", node, "renewTime",
		      renew, "leaseDurationSeconds", dur);
	if (ann)
		json_object_set_new(json_object_get(json_object_get(o, "metadata"), "annotations"),
				    KREPORT_ANNOTATION, json_string(ann));
	return o;
}

static json_t *list_of(json_t *a, json_t *b)
{
	json_t *items = json_array();

	if (a)
		json_array_append_new(items, a);
	if (b)
		json_array_append_new(items, b);
	return json_pack("{s:s, s:o}", "kind", "LeaseList", "items", items);
}

#define WEB_IN_USE "{\"infra/gw\":{\"web\":{\"reason\":\"PortUnavailable\"," \
		   "\"message\":\"10.99.0.1:80: cannot listen: Address already in use\"}}}"
#define API_IN_USE "{\"infra/gw\":{\"api\":{\"reason\":\"PortUnavailable\"," \
		   "\"message\":\"10.99.0.1:8080: cannot listen: Address already in use\"}}}"

#define BOTH_IN_USE "{\"infra/gw\":{\"web\":{\"reason\":\"PortUnavailable\",\"message\":\"x\"}," \
		    "\"api\":{\"reason\":\"PortUnavailable\",\"message\":\"y\"}}}"

/* node-1 is us (self); others come from a LIST observed at T0. */
static void reports_with(struct kreports *r, const char *self_json, json_t *list)
{
	char self[KREPORT_NAME_MAX];
	json_t *mine = json_loads(self_json, 0, NULL);

	memset(r, 0, sizeof(*r));
	kreport_lease_name("node-1", self);
	kreports_set_self(r, self, "node-1", mine);
	json_decref(mine);
	if (list)
		kreports_observe(r, list, self, T0, 15);
	json_decref(list);
}

/* A LIST (new reference, consumed) observed at now. */
static void observe(struct kreports *r, json_t *list, const char *self, uint64_t now, unsigned int dflt)
{
	kreports_observe(r, list, self, now, dflt);
	json_decref(list);
}

void test_node_report_none_failing(void)
{
	json_t *intent = gw_intent(), *got;
	struct kreports r;

	if (!ASSERT_OK_PTR(intent, "intent"))
		return;
	reports_with(&r, "{}", list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 15, "{}"), NULL));
	got = kreports_merge(intent, "infra/gw", &r, T0 + 1000);
	ASSERT_TRUE(json_equal(got, intent), "all well: the plan's conditions");
	json_decref(got);
	kreports_clear(&r);
	/* no report at all, not even ours: the same */
	memset(&r, 0, sizeof(r));
	got = kreports_merge(intent, "infra/gw", &r, T0);
	ASSERT_TRUE(json_equal(got, intent), "no reports: the plan's conditions");
	json_decref(got);
	json_decref(intent);
}

void test_node_report_some_nodes_failing(void)
{
	json_t *intent = gw_intent(), *got, *web;
	struct kreports r;

	if (!ASSERT_OK_PTR(intent, "intent"))
		return;
	reports_with(&r, "{}",
		     list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 15, WEB_IN_USE), NULL));
	got = kreports_merge(intent, "infra/gw", &r, T0 + 1000);
	web = lconds(got, "web");
	ASSERT_STREQ(cs(web, "Programmed", "status"), "False", "web: not Programmed");
	ASSERT_STREQ(cs(web, "Programmed", "reason"), "Invalid", "web: Programmed reason");
	ASSERT_STREQ(cs(web, "Programmed", "message"),
		     "not listening on node-2 (10.99.0.1:80: cannot listen: Address already in use); "
		     "listening on 1 of 2 nodes",
		     "web: message names the node, the error, the count");
	ASSERT_STREQ(cs(web, "Accepted", "status"), "True", "web: Accepted as the plan says");
	ASSERT_STREQ(cs(lconds(got, "api"), "Programmed", "status"), "True", "api: untouched");
	ASSERT_STREQ(cs(json_object_get(got, "conditions"), "Accepted", "reason"), "ListenersNotValid",
		     "Gateway: Accepted ListenersNotValid");
	ASSERT_STREQ(cs(json_object_get(got, "conditions"), "Accepted", "status"), "True",
		     "Gateway: still Accepted");
	ASSERT_TRUE(strstr(cs(json_object_get(got, "conditions"), "Accepted", "message"), "node-2") != NULL,
		    "Gateway: Accepted message names the node");
	ASSERT_STREQ(cs(json_object_get(got, "conditions"), "Programmed", "status"), "True",
		     "Gateway: Programmed as the plan says");
	json_decref(got);
	/* the intent itself is left as it was */
	ASSERT_STREQ(cs(lconds(intent, "web"), "Programmed", "status"), "True", "intent unchanged");
	kreports_clear(&r);
	json_decref(intent);
}

void test_node_report_all_nodes_failing(void)
{
	json_t *intent = gw_intent(), *got, *web;
	struct kreports r;

	if (!ASSERT_OK_PTR(intent, "intent"))
		return;
	reports_with(&r, WEB_IN_USE,
		     list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 15, WEB_IN_USE), NULL));
	got = kreports_merge(intent, "infra/gw", &r, T0 + 1000);
	web = lconds(got, "web");
	ASSERT_STREQ(cs(web, "Accepted", "status"), "False", "web: not Accepted");
	ASSERT_STREQ(cs(web, "Accepted", "reason"), "PortUnavailable", "web: PortUnavailable");
	ASSERT_STREQ(cs(web, "Programmed", "reason"), "Invalid", "web: Programmed Invalid");
	ASSERT_TRUE(strstr(cs(web, "Programmed", "message"), "listening on 0 of 2 nodes") != NULL,
		    "web: 0 of 2");
	ASSERT_TRUE(strstr(cs(web, "Accepted", "message"), "node-1 (") && strstr(cs(web, "Accepted", "message"), "node-2 ("),
		    "web: both nodes named");
	ASSERT_STREQ(cs(json_object_get(got, "conditions"), "Programmed", "status"), "True",
		     "Gateway: Programmed (api listens)");
	json_decref(got);
	kreports_clear(&r);

	/* both listeners fail everywhere: the Gateway is served nowhere */
	reports_with(&r, BOTH_IN_USE, list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 15, BOTH_IN_USE), NULL));
	got = kreports_merge(intent, "infra/gw", &r, T0 + 1000);
	ASSERT_STREQ(cs(json_object_get(got, "conditions"), "Programmed", "status"), "False",
		     "Gateway: not Programmed when no listener listens anywhere");
	ASSERT_STREQ(cs(json_object_get(got, "conditions"), "Accepted", "status"), "False",
		     "Gateway: not Accepted when no listener is");
	json_decref(got);
	kreports_clear(&r);
	json_decref(intent);
}

void test_node_report_stale_ignored(void)
{
	json_t *intent = gw_intent(), *got, *st;
	struct kreports r;

	if (!ASSERT_OK_PTR(intent, "intent"))
		return;
	reports_with(&r, "{}", list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 3, WEB_IN_USE), NULL));
	ASSERT_TRUE(kreports_changed(&r, T0), "first look: changed");
	ASSERT_FALSE(kreports_changed(&r, T0 + 1000), "nothing new: unchanged");
	got = kreports_merge(intent, "infra/gw", &r, T0 + 2999);
	ASSERT_STREQ(cs(lconds(got, "web"), "Programmed", "status"), "False", "live (2.999 s of 3): counted");
	json_decref(got);
	/* listed again with the same renewTime: its clock does not restart */
	observe(&r, list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 3, WEB_IN_USE), NULL),
			 r.v[0].lease, T0 + 2000, 15);
	got = kreports_merge(intent, "infra/gw", &r, T0 + 3000);
	ASSERT_TRUE(json_equal(got, intent), "unchanged for its leaseDurationSeconds: ignored");
	json_decref(got);
	ASSERT_TRUE(kreports_changed(&r, T0 + 3000), "aging out is a change");
	st = kreports_json(&r, T0 + 3000);
	ASSERT_EQ(json_integer_value(json_object_get(st, "live")), 1, "json: live (ours)");
	ASSERT_STREQ(json_string_value(json_array_get(json_object_get(st, "stale"), 0)), "node-2",
		     "json: node-2 stale");
	json_decref(st);
	/* renewed (the node is back): counted again */
	observe(&r, list_of(report_item("node-2", "2026-11-27T15:00:05.000000Z", 3, WEB_IN_USE), NULL),
			 r.v[0].lease, T0 + 5000, 15);
	got = kreports_merge(intent, "infra/gw", &r, T0 + 5000);
	ASSERT_STREQ(cs(lconds(got, "web"), "Programmed", "status"), "False", "renewed: counted again");
	json_decref(got);
	/* no longer listed (deleted): gone */
	observe(&r, list_of(NULL, NULL), r.v[0].lease, T0 + 6000, 15);
	ASSERT_EQ(r.n, 1, "a deleted report is dropped, ours stays");
	kreports_clear(&r);
	json_decref(intent);
}

/* A report stale for KREPORT_GC_DURATIONS of its durations is due for
 * deletion, once, with its resourceVersion; a renewal makes it live (and
 * not due) again; ours never is. */
void test_node_report_gc(void)
{
	struct kreports r;
	size_t other;

	reports_with(&r, "{}", list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 3, WEB_IN_USE), NULL));
	other = r.v[0].self ? 1 : 0;
	ASSERT_STREQ(r.v[other].rv, "5", "its resourceVersion, for the precondition");
	ASSERT_FALSE(kreports_gc_due(&r, other, T0 + 3000), "just stale: kept");
	ASSERT_FALSE(kreports_gc_due(&r, other, T0 + 14999), "stale for under 5 durations: kept");
	ASSERT_TRUE(kreports_gc_due(&r, other, T0 + 15000), "stale for 5 durations: due");
	r.v[other].rv[0] = '\0';
	ASSERT_FALSE(kreports_gc_due(&r, other, T0 + 15000), "no resourceVersion: not deleted blind");
	snprintf(r.v[other].rv, sizeof(r.v[other].rv), "5");
	ASSERT_FALSE(kreports_gc_due(&r, 1 - other, T0 + 1000000), "ours: never");
	r.v[other].deleting = true;
	ASSERT_FALSE(kreports_gc_due(&r, other, T0 + 20000), "asked for already: not again");
	/* renewed after all (the node came back): alive, not due */
	observe(&r, list_of(report_item("node-2", "2026-11-27T15:00:20.000000Z", 3, WEB_IN_USE), NULL),
		r.v[1 - other].lease, T0 + 20000, 15);
	ASSERT_FALSE(r.v[other].deleting, "a renewal clears the deletion");
	ASSERT_TRUE(kreports_live(&r, other, T0 + 20000), "live again");
	ASSERT_FALSE(kreports_gc_due(&r, other, T0 + 20000), "not due");
	kreports_clear(&r);
}

void test_node_report_certificate(void)
{
	json_t *intent = gw_intent(), *got, *web;
	struct kreports r;
	const char *cert = "{\"infra/gw\":{\"web\":{\"reason\":\"InvalidCertificateRef\","
			   "\"message\":\"infra/cert: tls.key does not match\"}}}";

	if (!ASSERT_OK_PTR(intent, "intent"))
		return;
	reports_with(&r, cert, list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 15, cert), NULL));
	got = kreports_merge(intent, "infra/gw", &r, T0);
	web = lconds(got, "web");
	ASSERT_STREQ(cs(web, "ResolvedRefs", "status"), "False", "every node: ResolvedRefs False");
	ASSERT_STREQ(cs(web, "ResolvedRefs", "reason"), "InvalidCertificateRef", "InvalidCertificateRef");
	ASSERT_STREQ(cs(web, "Accepted", "status"), "True", "a certificate: still Accepted");
	ASSERT_STREQ(cs(web, "Programmed", "status"), "False", "not Programmed");
	ASSERT_TRUE(strstr(cs(web, "Programmed", "message"), "not serving on node-1 (infra/cert") != NULL,
		    "message: not serving on, with the error");
	json_decref(got);
	kreports_clear(&r);
	/* on one node of two: Programmed False only */
	reports_with(&r, "{}", list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 15, cert), NULL));
	got = kreports_merge(intent, "infra/gw", &r, T0);
	web = lconds(got, "web");
	ASSERT_STREQ(cs(web, "ResolvedRefs", "status"), "True", "one node: ResolvedRefs as planned");
	ASSERT_STREQ(cs(web, "Programmed", "status"), "False", "one node: not Programmed");
	json_decref(got);
	kreports_clear(&r);
	json_decref(intent);
}

void test_node_report_bad_annotation(void)
{
	static const char *const bad[] = {
		"{not json", "[]", "{\"infra/gw\": 5}", "{\"nogateway\": {}}",
		"{\"infra/gw\": {\"web\": {\"reason\": 5}}}", "{\"infra/gw\": {\"web\": {\"reason\": \"x\", \"message\": []}}}",
		"{\"a/b\": {}, \"a/b\": {}}", "",
	};
	json_t *intent = gw_intent(), *got, *st;
	struct kreports r;
	size_t i;

	if (!ASSERT_OK_PTR(intent, "intent"))
		return;
	log_set_level(LOG_ERR);	/* each refusal is a warning */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char name[40];

		snprintf(name, sizeof(name), "bad annotation %zu", i);
		reports_with(&r, "{}",
			     list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 15, bad[i]),
				     report_item("node-3", "2026-11-27T15:00:00.000000Z", 15, WEB_IN_USE)));
		ASSERT_EQ(r.n_bad, 1, name);
		ASSERT_TRUE(r.last_error[0] != '\0', name);
		got = kreports_merge(intent, "infra/gw", &r, T0);
		/* node-2 is not counted: node-3 fails on 1 of 2 (ours and node-3) */
		ASSERT_TRUE(strstr(cs(lconds(got, "web"), "Programmed", "message"), "listening on 1 of 2 nodes") != NULL,
			    name);
		json_decref(got);
		/* listed again unchanged: counted once */
		observe(&r, list_of(report_item("node-2", "2026-11-27T15:00:01.000000Z", 15, bad[i]), NULL),
				 r.v[0].lease, T0 + 1000, 15);
		ASSERT_EQ(r.n_bad, 1, "the same bad text is counted once");
		kreports_clear(&r);
	}
	reports_with(&r, "{}", list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 15, NULL), NULL));
	ASSERT_EQ(r.n_bad, 1, "no annotation: refused");
	ASSERT_TRUE(strstr(r.last_error, "no sluice.io/listeners") != NULL, "no annotation: why");
	st = kreports_json(&r, T0);
	ASSERT_EQ(json_integer_value(json_object_get(st, "bad")), 1, "json: bad counted");
	json_decref(st);
	kreports_clear(&r);
	reports_with(&r, "{}", list_of(report_item("node-2", "2026-11-27T15:00:00.000000Z", 15, "{\"a"), NULL));
	ASSERT_TRUE(strstr(r.last_error, "not JSON") != NULL, "garbage: says not JSON");
	kreports_clear(&r);
	log_set_level(LOG_INFO);
	json_decref(intent);
}

void test_node_report_lease_name(void)
{
	char name[KREPORT_NAME_MAX], other[KREPORT_NAME_MAX], longname[400];

	kreport_lease_name("node-2", name);
	ASSERT_STREQ(name, "sluice-node-node-2", "plain");
	kreport_lease_name("Worker_1.Example.COM", name);
	ASSERT_STREQ(name, "sluice-node-worker-1.example.com", "lowercased, '_' made '-'");
	kreport_lease_name("a..b.-c.", name);
	ASSERT_STREQ(name, "sluice-node-a--b--c", "dots only between alphanumerics, none at the end");
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	kreport_lease_name(longname, name);
	ASSERT_EQ(strlen(name), 253, "long: cut to 253");
	longname[300] = 'b';
	kreport_lease_name(longname, other);
	ASSERT_EQ(strlen(other), 253, "long: cut to 253");
	ASSERT_TRUE(strcmp(name, other) != 0, "two long names differing late stay apart");
	kreport_lease_name("", name);
	ASSERT_EQ(strlen(name), strlen(KREPORT_PREFIX) + 8, "empty: a hash");
}
