// SPDX-License-Identifier: Apache-2.0
/* test_model.c - resolution of Services, EndpointSlices and Pods into
 * frontends, and the cross-object checks, from YAML as users write it. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lib/test.h"
#include "model.h"

static struct sl_model *build(const char *yaml, const char *node, struct diags *errs)
{
	struct sl_resources *r = config_resources_new();
	struct sl_model *m = NULL;

	if (!ASSERT_OK_PTR(r, "resources") ||
	    !ASSERT_OK(config_decode_buf(r, "t.yaml", yaml, strlen(yaml), errs), "decode")) {
		resources_free(r);
		return NULL;
	}
	model_build(r, node, &m, errs);
	return m;
}

static const struct sl_frontend *fe(const struct sl_model *m, const char *vip, uint16_t port, uint8_t proto)
{
	struct sl_svc_key k = { 0 };

	if (inet_pton(AF_INET, vip, &k.vip.v4) == 1) {
		k.family = SL_AF_INET;
	} else {
		inet_pton(AF_INET6, vip, &k.vip.v6);
		k.family = SL_AF_INET6;
	}
	k.port = htons(port);
	k.proto = proto;
	return model_find_frontend(m, &k);
}

static bool has_slot(const struct sl_frontend *f, const char *ip, uint16_t port)
{
	struct sl_ip want;

	sl_ip_parse(ip, &want);
	for (size_t i = 0; i < f->n_slots; i++)
		if (!memcmp(&f->slots[i].addr, &want.addr, sizeof(want.addr)) && f->slots[i].port == htons(port))
			return true;
	return false;
}

static const char svc_with_slices[] =
	"apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
	"spec:\n  clusterIP: 10.96.0.10\n  ports:\n"
	"  - {name: http, port: 80, targetPort: http-alt}\n"
	"  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}\n"
	"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	"metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\n"
	"addressType: IPv4\nports:\n- {name: http, port: 8080}\n- {name: dns, port: 5353, protocol: UDP}\n"
	"endpoints:\n"
	"- {addresses: [10.244.1.5], nodeName: node-1, conditions: {ready: true}}\n"
	"- {addresses: [10.244.2.6], nodeName: node-2}\n"
	"- {addresses: [10.244.2.7], nodeName: node-2, conditions: {ready: false}}\n"
	"- {addresses: [10.244.2.8], nodeName: node-2, conditions: {ready: false, serving: true, terminating: true}}\n"
	"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
	"metadata: {name: web-2, namespace: shop, labels: {kubernetes.io/service-name: web}}\n"
	"addressType: IPv4\nports:\n- {name: http, port: 8080}\n"
	"endpoints:\n- {addresses: [10.244.1.5], nodeName: node-1}\n";

void test_model_slices_ports_and_readiness(void)
{
	struct diags errs = { 0 };
	struct sl_model *m = build(svc_with_slices, "node-1", &errs);
	const struct sl_frontend *http, *dns;

	if (!ASSERT_OK_PTR(m, "model"))
		goto out;
	ASSERT_EQ(m->n_frontends, 2, "one frontend per port");
	http = fe(m, "10.96.0.10", 80, SL_IPPROTO_TCP);
	dns = fe(m, "10.96.0.10", 53, SL_IPPROTO_UDP);
	if (!ASSERT_OK_PTR(http, "http frontend") || !ASSERT_OK_PTR(dns, "dns frontend"))
		goto out;
	ASSERT_EQ(http->n_backends, 4, "every endpoint known, the duplicate once");
	ASSERT_EQ(http->n_slots, 2, "only ready, not terminating");
	ASSERT_TRUE(has_slot(http, "10.244.1.5", 8080), "targetPort from the slice port named http");
	ASSERT_TRUE(has_slot(http, "10.244.2.6", 8080), "absent conditions mean ready");
	ASSERT_FALSE(has_slot(http, "10.244.2.7", 8080), "not ready is not chosen");
	ASSERT_FALSE(has_slot(http, "10.244.2.8", 8080), "terminating is not chosen");
	ASSERT_EQ(dns->n_slots, 2, "UDP port only from web-1");
	ASSERT_TRUE(has_slot(dns, "10.244.2.6", 5353), "dns target");
	ASSERT_EQ(m->n_backends_total, 4, "total slots");
out:
	model_free(m);
	diags_clear(&errs);
}

static const char svc_selector[] =
	"apiVersion: v1\nkind: Service\nmetadata: {name: api}\n"
	"spec:\n  clusterIP: 10.96.0.20\n  selector: {app: api}\n  ports:\n"
	"  - {name: web, port: 80, targetPort: web}\n  - {name: raw, port: 9000}\n"
	"---\napiVersion: v1\nkind: Pod\nmetadata: {name: api-1, labels: {app: api}}\n"
	"spec: {nodeName: node-1, containers: [{name: c, ports: [{name: web, containerPort: 8081}]}]}\n"
	"status: {podIP: 10.244.1.10}\n"
	"---\napiVersion: v1\nkind: Pod\nmetadata: {name: api-2, labels: {app: api}}\n"
	"spec: {nodeName: node-2, containers: [{name: c, ports: [{name: web, containerPort: 8082}]}]}\n"
	"status: {podIP: 10.244.2.10, conditions: [{type: Ready, status: 'False'}]}\n"
	"---\napiVersion: v1\nkind: Pod\nmetadata: {name: api-3, labels: {app: api}}\n"
	"spec: {nodeName: node-2, containers: [{name: c, ports: [{name: web, containerPort: 8083}]}]}\n"
	"status: {podIP: 10.244.2.11}\n"
	"---\napiVersion: v1\nkind: Pod\nmetadata: {name: other, labels: {app: db}}\n"
	"spec: {nodeName: node-2, containers: [{name: c, ports: [{name: web, containerPort: 1}]}]}\n"
	"status: {podIP: 10.244.2.12}\n";

/* No EndpointSlice: endpoints come from the selector, named ports per Pod. */
void test_model_selector_named_ports(void)
{
	struct diags errs = { 0 };
	struct sl_model *m = build(svc_selector, "node-1", &errs);
	const struct sl_frontend *web, *raw;

	if (!ASSERT_OK_PTR(m, "model"))
		goto out;
	web = fe(m, "10.96.0.20", 80, SL_IPPROTO_TCP);
	raw = fe(m, "10.96.0.20", 9000, SL_IPPROTO_TCP);
	if (!ASSERT_OK_PTR(web, "web") || !ASSERT_OK_PTR(raw, "raw"))
		goto out;
	ASSERT_EQ(web->n_slots, 2, "two ready pods");
	ASSERT_TRUE(has_slot(web, "10.244.1.10", 8081), "named port on api-1");
	ASSERT_TRUE(has_slot(web, "10.244.2.11", 8083), "named port on api-3");
	ASSERT_EQ(web->n_backends, 3, "the not-ready pod is known");
	ASSERT_TRUE(has_slot(raw, "10.244.1.10", 9000), "targetPort defaults to port");
out:
	model_free(m);
	diags_clear(&errs);
}

void test_model_internal_traffic_local(void)
{
	static const char y[] =
		"apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
		"spec: {clusterIP: 10.96.0.10, internalTrafficPolicy: Local, ports: [{name: http, port: 80}]}\n"
		"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		"metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\n"
		"addressType: IPv4\nports: [{name: http, port: 8080}]\n"
		"endpoints:\n- {addresses: [10.244.1.5], nodeName: node-1}\n"
		"- {addresses: [10.244.2.6], nodeName: node-2}\n";
	struct diags errs = { 0 };
	struct sl_model *m1 = build(y, "node-1", &errs), *m3 = build(y, "node-3", &errs);
	const struct sl_frontend *f;

	if (!ASSERT_OK_PTR(m1, "model node-1") || !ASSERT_OK_PTR(m3, "model node-3"))
		goto out;
	f = fe(m1, "10.96.0.10", 80, SL_IPPROTO_TCP);
	if (ASSERT_OK_PTR(f, "frontend")) {
		ASSERT_EQ(f->n_slots, 1, "only the local endpoint");
		ASSERT_TRUE(has_slot(f, "10.244.1.5", 8080), "node-1's");
		ASSERT_TRUE(f->flags & SL_SVC_F_LOCAL, "flag");
	}
	f = fe(m3, "10.96.0.10", 80, SL_IPPROTO_TCP);
	if (ASSERT_OK_PTR(f, "frontend on node-3"))
		ASSERT_EQ(f->n_slots, 0, "no local endpoint: refuse, no fallback");
out:
	model_free(m1);
	model_free(m3);
	diags_clear(&errs);
}

void test_model_dual_stack_affinity_headless(void)
{
	static const char y[] =
		"apiVersion: v1\nkind: Service\nmetadata: {name: ds}\n"
		"spec:\n  clusterIPs: [10.96.0.30, 'fd00:96::30']\n  ipFamilyPolicy: RequireDualStack\n"
		"  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n"
		"  selector: {app: ds}\n  ports: [{port: 80, targetPort: 8080}]\n"
		"---\napiVersion: v1\nkind: Service\nmetadata: {name: headless}\n"
		"spec: {clusterIP: None, selector: {app: ds}, ports: [{port: 80}]}\n"
		"---\napiVersion: v1\nkind: Pod\nmetadata: {name: ds-1, labels: {app: ds}}\n"
		"spec: {nodeName: node-1, containers: [{name: c}]}\n"
		"status: {podIPs: [{ip: 10.244.1.30}, {ip: 'fd00:244:1::30'}]}\n";
	struct diags errs = { 0 };
	struct sl_model *m = build(y, "node-1", &errs);
	const struct sl_frontend *f4, *f6;

	if (!ASSERT_OK_PTR(m, "model"))
		goto out;
	ASSERT_EQ(m->n_frontends, 2, "one per family, none for headless");
	ASSERT_EQ(m->n_headless, 1, "headless left alone");
	f4 = fe(m, "10.96.0.30", 80, SL_IPPROTO_TCP);
	f6 = fe(m, "fd00:96::30", 80, SL_IPPROTO_TCP);
	if (!ASSERT_OK_PTR(f4, "v4") || !ASSERT_OK_PTR(f6, "v6"))
		goto out;
	ASSERT_TRUE(has_slot(f4, "10.244.1.30", 8080), "v4 backend");
	ASSERT_TRUE(has_slot(f6, "fd00:244:1::30", 8080), "v6 backend");
	ASSERT_TRUE(f6->flags & SL_SVC_F_AFFINITY, "affinity flag");
	ASSERT_EQ(f6->aff_timeout, 60, "affinity timeout");
	/* By name, as the waypoint finds a backendRef's frontend. */
	{
		const struct sl_service *ds = model_find_service(m, "default", "ds");

		ASSERT_OK_PTR(ds, "Service default/ds by name");
		ASSERT_OK_PTR(model_find_service(m, "default", "headless"), "a headless one too");
		ASSERT_TRUE(!model_find_service(m, "default", "nope") && !model_find_service(m, "other", "ds"),
			    "no such Service");
		ASSERT_TRUE(model_service_frontend(m, ds, 80, SL_AF_INET) == f4, "its v4 frontend");
		ASSERT_TRUE(model_service_frontend(m, ds, 80, SL_AF_INET6) == f6, "its v6 frontend");
		ASSERT_TRUE(!model_service_frontend(m, ds, 8080, SL_AF_INET), "not a Service port");
		ASSERT_TRUE(!model_service_frontend(m, model_find_service(m, "default", "headless"), 80, SL_AF_INET),
			    "headless: no frontend");
	}
out:
	model_free(m);
	diags_clear(&errs);
}

void test_model_conflicts_rejected(void)
{
	static const char y[] =
		"apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
		"spec: {clusterIP: 10.96.0.40, ports: [{port: 80}]}\n"
		"---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n"
		"spec: {clusterIP: 10.96.0.40, ports: [{port: 80}]}\n"
		"---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
		"spec: {clusterIP: 10.96.0.41, ports: [{port: 81}]}\n"
		"---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n"
		"status: {podIP: 10.96.0.41}\n";
	struct diags errs = { 0 };
	struct sl_model *m = build(y, "node-1", &errs);
	char all[4096] = "", buf[512];

	ASSERT_TRUE(m == NULL, "rejected");
	for (size_t i = 0; i < errs.n; i++) {
		strncat(all, diag_str(&errs.v[i], buf, sizeof(buf)), sizeof(all) - strlen(all) - 2);
		strcat(all, "\n");
	}
	ASSERT_HAS(all, "Service default/a: defined twice (also at t.yaml:1)", "duplicate name, both places");
	ASSERT_HAS(all, "IP 10.96.0.40 is already claimed by Service default/a", "one VIP, two Services");
	ASSERT_HAS(all, "10.96.0.41 is already claimed", "pod IP = service VIP");
	ASSERT_HAS(all, "t.yaml:", "file named");
	model_free(m);
	diags_clear(&errs);
}

/* Enrolment by namespace or pod label (Istio's label too); a pod's "none"
 * opts out; workloads are found by any of their IPs. */
void test_model_enrolment_and_lookup(void)
{
	static const char y[] =
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: mesh, labels: {sluice.io/dataplane-mode: ambient}}\n"
		"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n"
		"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: istio, labels: {istio.io/dataplane-mode: ambient}}\n"
		"---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: mesh}\n"
		"spec: {nodeName: node-1, serviceAccountName: sa-a, containers: [{name: c}]}\n"
		"status: {podIPs: [{ip: 10.244.1.1}, {ip: 'fd00::1'}]}\n"
		"---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: mesh, labels: {sluice.io/dataplane-mode: none}}\n"
		"spec: {nodeName: node-2, containers: [{name: c}]}\nstatus: {podIP: 10.244.2.1}\n"
		"---\napiVersion: v1\nkind: Pod\nmetadata: {name: c, namespace: plain, labels: {sluice.io/dataplane-mode: ambient}}\n"
		"spec: {nodeName: node-2, containers: [{name: c}]}\nstatus: {podIP: 10.244.2.2}\n"
		"---\napiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: plain}\n"
		"spec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {podIP: 10.244.1.3}\n"
		"---\napiVersion: v1\nkind: Pod\nmetadata: {name: e, namespace: istio}\n"
		"spec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {podIP: 10.244.1.4}\n"
		"---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: mesh}\n"
		"spec: {clusterIP: 10.96.0.50, selector: {app: a}, ports: [{port: 80}]}\n"
		"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
		"metadata: {name: web-1, namespace: mesh, labels: {kubernetes.io/service-name: web}}\n"
		"addressType: IPv4\nports: [{port: 8080}]\nendpoints: [{addresses: [10.244.1.1]}]\n";
	struct diags errs = { 0 };
	struct sl_model *m = build(y, "node-1", &errs);
	const struct sl_workload *w;
	struct sl_ip ip;

	if (!ASSERT_OK_PTR(m, "model"))
		goto out;
	sl_ip_parse("fd00::1", &ip);
	w = model_workload_by_ip(m, &ip);
	if (ASSERT_OK_PTR(w, "a by its IPv6")) {
		ASSERT_STREQ(w->pod->name, "a", "a");
		ASSERT_TRUE(w->enrolled, "namespace label enrols");
		ASSERT_TRUE(w->local, "a is on node-1");
		ASSERT_STREQ(w->pod->service_account, "sa-a", "service account");
		ASSERT_TRUE(w->service && !strcmp(w->service->name, "web"), "its Service (metrics)");
	}
	sl_ip_parse("10.244.2.1", &ip);
	w = model_workload_by_ip(m, &ip);
	ASSERT_TRUE(w && !w->enrolled && !w->local && !w->service, "b opted out, remote, no Service");
	sl_ip_parse("10.244.2.2", &ip);
	w = model_workload_by_ip(m, &ip);
	ASSERT_TRUE(w && w->enrolled, "pod label enrols in a plain namespace");
	sl_ip_parse("10.244.1.3", &ip);
	w = model_workload_by_ip(m, &ip);
	ASSERT_TRUE(w && !w->enrolled, "no label: not enrolled");
	sl_ip_parse("10.244.1.4", &ip);
	w = model_workload_by_ip(m, &ip);
	ASSERT_TRUE(w && w->enrolled, "istio.io/dataplane-mode is accepted");
	sl_ip_parse("10.244.9.9", &ip);
	ASSERT_TRUE(model_workload_by_ip(m, &ip) == NULL, "unknown IP");
out:
	model_free(m);
	diags_clear(&errs);
}
