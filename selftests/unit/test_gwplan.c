// SPDX-License-Identifier: Apache-2.0
/* test_gwplan.c - which Gateway listeners are served and their conditions
 * (gwplan.c), from YAML as users write it: listener conflicts on one
 * Gateway and across Gateways that share an address, protocols and TLS
 * modes, certificateRefs and ReferenceGrants, allowedRoutes.kinds,
 * attachedRoutes, Gateway conditions, and pool addresses running out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "gwplan.h"
#include "lib/test.h"
#include "model.h"
#include "route.h"

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
	memset(f, 0, sizeof(*f));
}

static const char class_yaml[] =
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: sluice}\n"
	"spec: {controllerName: sluice.io/gateway-controller}\n---\n"
	"apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: other}\n"
	"spec: {controllerName: example.com/other}\n---\n";

/* Decode class_yaml + yaml, build the model, the routes and the plan. */
static bool plan_build(struct plan_fx *f, const char *yaml, const struct sl_cidr *pools, size_t n_pools)
{
	struct sl_resources *r = config_resources_new();
	char *all = malloc(strlen(class_yaml) + strlen(yaml) + 1);
	bool ok = false;

	memset(f, 0, sizeof(*f));
	if (!ASSERT_OK_PTR(r, "resources") || !ASSERT_OK_PTR(all, "alloc"))
		goto out;
	strcpy(all, class_yaml);
	strcat(all, yaml);
	if (!ASSERT_OK(config_decode_buf(r, "t.yaml", all, strlen(all), &f->errs), "decode")) {
		for (size_t i = 0; i < f->errs.n; i++) {
			char buf[512];

			printf("  %s\n", diag_str(&f->errs.v[i], buf, sizeof(buf)));
		}
		resources_free(r);
		goto out;
	}
	if (!ASSERT_OK(model_build(r, "node-1", &f->m, &f->errs), "model") ||
	    !ASSERT_OK(route_table_build(f->m, &f->rt, &f->errs), "routes") ||
	    !ASSERT_OK(gwplan_build(f->m, f->rt, pools, n_pools, &f->p), "plan"))
		goto out;
	ok = true;
out:
	free(all);
	return ok;
}

static const struct gwplan_gateway *pgw(const struct plan_fx *f, const char *name)
{
	for (size_t i = 0; f->p && i < f->p->n_gws; i++)
		if (!strcmp(f->p->gws[i].gw->name, name))
			return &f->p->gws[i];
	return NULL;
}

/* Listener gw/name of the plan; a zeroed one when missing (the test fails on it). */
static const struct gwplan_listener *pl(const struct plan_fx *f, const char *gw, const char *name)
{
	static struct gwplan_listener none;
	const struct gwplan_gateway *g = pgw(f, gw);

	for (size_t i = 0; g && i < g->n_ls; i++)
		if (!strcmp(g->ls[i].l->name, name))
			return &g->ls[i];
	ASSERT_TRUE(false, name);
	return &none;
}

#define GW(name, addr) \
	"apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: " name ", namespace: infra}\n" \
	"spec:\n  gatewayClassName: sluice\n" addr "  listeners:\n"
#define ADDR(ip) "  addresses: [{type: IPAddress, value: '" ip "'}]\n"
#define L(name, port, proto, extra) "  - {name: " name ", port: " #port ", protocol: " proto extra "}\n"
#define TLS_PASS ", tls: {mode: Passthrough}"
#define CERT(ref) ", tls: {certificateRefs: [" ref "]}"

static const char secret_yaml[] =
	"apiVersion: v1\nkind: Secret\nmetadata: {name: cert, namespace: infra}\ntype: kubernetes.io/tls\n"
	"stringData: {tls.crt: crt, tls.key: key}\n---\n"
	"apiVersion: v1\nkind: Secret\nmetadata: {name: cert, namespace: certs}\ntype: kubernetes.io/tls\n"
	"stringData: {tls.crt: crt, tls.key: key}\n---\n"
	"apiVersion: v1\nkind: Secret\nmetadata: {name: nokey, namespace: infra}\ntype: Opaque\n"
	"stringData: {tls.crt: crt}\n---\n";

void test_gwplan_conflicts(void)
{
	static char yaml[8192];
	struct plan_fx f;

	snprintf(yaml, sizeof(yaml), "%s%s", secret_yaml,
		 GW("a", ADDR("10.99.0.1"))
		 L("http", 80, "HTTP", "") L("tcp80", 80, "TCP", "")
		 L("h1", 8080, "HTTP", ", hostname: x.example") L("h2", 8080, "HTTP", ", hostname: x.example")
		 L("h3", 8080, "HTTP", ", hostname: y.example") L("h4", 8080, "HTTP", "")
		 L("t1", 9000, "TCP", "") L("t2", 9000, "TCP", "")
		 L("s1", 443, "HTTPS", CERT("{name: cert}")) L("p1", 443, "TLS", TLS_PASS)
		 L("s2", 8443, "HTTPS", ", hostname: a.example" CERT("{name: cert}"))
		 L("s3", 8443, "HTTPS", ", hostname: b.example" CERT("{name: cert}"))
		 L("p2", 8443, "TLS", ", hostname: c.example" TLS_PASS)
		 L("udp", 80, "UDP", "")
		 "---\n"
		 GW("b", ADDR("10.99.0.1")) L("tcp", 7000, "TCP", "") L("http", 8080, "HTTP", ", hostname: z.example")
		 "---\n"
		 GW("c", ADDR("10.99.0.2")) L("tcp", 7000, "TCP", "")
		 "---\n"
		 GW("d", "") L("tcp", 7001, "TCP", "")
		 "---\n"
		 GW("e", ADDR("10.99.0.3")) L("tcp", 7001, "TCP", "")
		 "---\n"
		 GW("f", ADDR("10.99.0.3")) L("http", 80, "HTTP", "") L("tcp", 80, "TCP", "")
		 "---\n"
		 "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: theirs, namespace: infra}\n"
		 "spec:\n  gatewayClassName: other\n  listeners: [{name: tcp, port: 7000, protocol: TCP}]\n");
	if (!plan_build(&f, yaml, NULL, 0))
		goto out;
	ASSERT_EQ(f.p->n_gws, 6, "class sluice only");
	ASSERT_STREQ(pl(&f, "a", "http")->conflict_reason, "ProtocolConflict", "HTTP and TCP on 80");
	ASSERT_STREQ(pl(&f, "a", "tcp80")->conflict_reason, "ProtocolConflict", "both of them");
	ASSERT_HAS(pl(&f, "a", "tcp80")->message, "port 80 is also HTTP", "message names the other");
	ASSERT_FALSE(pl(&f, "a", "http")->serve || pl(&f, "a", "tcp80")->serve, "neither served: none wins");
	ASSERT_STREQ(pl(&f, "a", "h1")->conflict_reason, "HostnameConflict", "same hostname");
	ASSERT_STREQ(pl(&f, "a", "h2")->conflict_reason, "HostnameConflict", "both of them");
	ASSERT_FALSE(pl(&f, "a", "h3")->conflicted, "another hostname: distinct");
	ASSERT_TRUE(pl(&f, "a", "h3")->serve, "served");
	ASSERT_FALSE(pl(&f, "a", "h4")->conflicted, "no hostname: distinct from the named ones");
	ASSERT_STREQ(pl(&f, "a", "t1")->conflict_reason, "HostnameConflict", "two TCP listeners on one port");
	/* HTTPS and TLS listeners are distinct by hostname (the spec's
	 * listener rules); two without a hostname are not */
	ASSERT_STREQ(pl(&f, "a", "s1")->conflict_reason, "HostnameConflict", "HTTPS and TLS, no hostname, one port");
	ASSERT_STREQ(pl(&f, "a", "p1")->conflict_reason, "HostnameConflict", "both of them");
	ASSERT_TRUE(pl(&f, "a", "s2")->serve && pl(&f, "a", "s3")->serve, "HTTPS by hostname: distinct");
	ASSERT_TRUE(pl(&f, "a", "p2")->serve && !pl(&f, "a", "p2")->conflicted, "TLS beside them by hostname: distinct");
	ASSERT_FALSE(pl(&f, "a", "udp")->conflicted, "not accepted: in no conflict");
	ASSERT_STREQ(pl(&f, "a", "udp")->accepted_reason, "UnsupportedProtocol", "UDP");
	ASSERT_TRUE(pgw(&f, "a")->accepted, "a: some listeners valid");
	ASSERT_STREQ(pgw(&f, "a")->accepted_reason, "ListenersNotValid", "a: reason");
	/* across Gateways */
	ASSERT_FALSE(pl(&f, "b", "http")->conflicted, "b's HTTP on 8080 has its own hostname");
	ASSERT_FALSE(pl(&f, "b", "tcp")->conflicted, "b and c: TCP 7000 on two addresses");
	ASSERT_FALSE(pl(&f, "c", "tcp")->conflicted, "c");
	ASSERT_STREQ(pgw(&f, "b")->accepted_reason, "Accepted", "b: every listener valid");
	ASSERT_STREQ(pl(&f, "d", "tcp")->conflict_reason, "HostnameConflict", "every address meets e's");
	ASSERT_STREQ(pl(&f, "e", "tcp")->conflict_reason, "HostnameConflict", "e");
	ASSERT_FALSE(pgw(&f, "d")->accepted, "d: no valid listener");
	ASSERT_STREQ(pl(&f, "f", "http")->conflict_reason, "ProtocolConflict", "f: HTTP and TCP on 80");
	ASSERT_FALSE(pl(&f, "a", "h3")->conflicted, "f's port 80 is on another address than a's 8080");
out:
	plan_free(&f);
}

void test_gwplan_listener_conditions(void)
{
	static char yaml[8192];
	struct plan_fx f;
	const struct gwplan_listener *x;

	snprintf(yaml, sizeof(yaml), "%s%s", secret_yaml,
		 GW("gw", ADDR("10.99.0.1"))
		 L("udp", 53, "UDP", "") L("custom", 54, "example.com/proto", "")
		 L("tls-term", 443, "TLS", ", tls: {mode: Terminate}")
		 L("tls-nomode", 444, "TLS", "")
		 L("tls", 445, "TLS", TLS_PASS)
		 L("https-pass", 446, "HTTPS", TLS_PASS)
		 L("https-nocert", 447, "HTTPS", "")
		 L("https-ok", 448, "HTTPS", CERT("{name: cert}"))
		 L("https-cross", 449, "HTTPS", CERT("{name: cert, namespace: certs}"))
		 L("https-missing", 450, "HTTPS", CERT("{name: gone}"))
		 L("https-kind", 451, "HTTPS", CERT("{name: cert, kind: ConfigMap}"))
		 L("https-nokey", 452, "HTTPS", CERT("{name: nokey}"))
		 L("https-second", 453, "HTTPS", CERT("{name: gone}, {name: cert}"))
		 "  - name: kinds\n    port: 81\n    protocol: HTTP\n"
		 "    allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: TCPRoute}]}\n"
		 "  - name: kinds-group\n    port: 82\n    protocol: HTTP\n"
		 "    allowedRoutes: {kinds: [{group: example.com, kind: HTTPRoute}]}\n"
		 L("tcp", 9000, "TCP", ", allowedRoutes: {namespaces: {from: All}}")
		 "---\n"
		 GW("none-valid", ADDR("10.99.0.2")) L("udp", 53, "UDP", "")
		 "---\n"
		 "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: team}\n"
		 "spec: {clusterIP: 10.96.0.5, ports: [{port: 5432}]}\n---\n"
		 "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: db, namespace: team}\n"
		 "spec:\n  parentRefs: [{name: gw, namespace: infra, sectionName: tcp}, {name: gw, namespace: infra, port: 9000}]\n"
		 "  rules: [{backendRefs: [{name: db, port: 5432}]}]\n");
	if (!plan_build(&f, yaml, NULL, 0))
		goto out;
	ASSERT_STREQ(pl(&f, "gw", "udp")->accepted_reason, "UnsupportedProtocol", "UDP");
	ASSERT_STREQ(pl(&f, "gw", "custom")->accepted_reason, "UnsupportedProtocol", "a custom protocol");
	x = pl(&f, "gw", "tls-term");
	ASSERT_TRUE(x->accepted && x->proto == GW_PROTO_TLS_TERMINATE, "TLS Terminate accepted");
	ASSERT_STREQ(x->refs_reason, "InvalidCertificateRef", "TLS Terminate without certificateRefs");
	ASSERT_STREQ(pl(&f, "gw", "tls-nomode")->accepted_reason, "UnsupportedValue", "TLS without a mode");
	x = pl(&f, "gw", "tls");
	ASSERT_TRUE(x->accepted && x->serve && x->proto == GW_PROTO_TLS, "TLS Passthrough served");
	ASSERT_EQ(x->kinds, ROUTE_KIND_BIT(SL_ROUTE_TLS), "TLS takes TLSRoute");
	ASSERT_STREQ(pl(&f, "gw", "https-pass")->accepted_reason, "UnsupportedValue", "HTTPS Passthrough");
	ASSERT_STREQ(pl(&f, "gw", "https-nocert")->refs_reason, "InvalidCertificateRef", "no certificateRefs");
	x = pl(&f, "gw", "https-ok");
	ASSERT_TRUE(x->resolved_refs && x->cert, "a Secret in the Gateway's namespace");
	x = pl(&f, "gw", "https-cross");
	ASSERT_STREQ(x->refs_reason, "RefNotPermitted", "another namespace, no ReferenceGrant");
	ASSERT_TRUE(!x->cert, "its certificate not used");
	ASSERT_TRUE(x->accepted && x->serve, "still accepted (only not programmed)");
	ASSERT_STREQ(pl(&f, "gw", "https-missing")->refs_reason, "InvalidCertificateRef", "Secret not found");
	ASSERT_STREQ(pl(&f, "gw", "https-kind")->refs_reason, "InvalidCertificateRef", "not a Secret");
	ASSERT_STREQ(pl(&f, "gw", "https-nokey")->refs_reason, "InvalidCertificateRef", "no tls.key");
	x = pl(&f, "gw", "https-second");
	ASSERT_STREQ(x->refs_reason, "InvalidCertificateRef", "one of two refs bad");
	ASSERT_TRUE(x->cert != NULL, "the good one serves");
	x = pl(&f, "gw", "kinds");
	ASSERT_STREQ(x->refs_reason, "InvalidRouteKinds", "TCPRoute on HTTP");
	ASSERT_EQ(x->kinds, ROUTE_KIND_BIT(SL_ROUTE_HTTP), "the valid kind stays");
	ASSERT_TRUE(x->serve, "still served");
	ASSERT_STREQ(pl(&f, "gw", "kinds-group")->refs_reason, "InvalidRouteKinds", "a foreign group");
	ASSERT_EQ(pl(&f, "gw", "tcp")->attached, 1, "attachedRoutes: one route through two parentRefs");
	ASSERT_EQ(pl(&f, "gw", "tls")->attached, 0, "nothing on tls");
	ASSERT_STREQ(pgw(&f, "gw")->accepted_reason, "ListenersNotValid", "gw: some invalid");
	ASSERT_FALSE(pgw(&f, "none-valid")->accepted, "none valid: not accepted");
	plan_free(&f);
	/* a ReferenceGrant from Gateways of infra to Secrets in certs */
	snprintf(yaml, sizeof(yaml), "%s%s", secret_yaml,
		 GW("gw", ADDR("10.99.0.1")) L("https-cross", 449, "HTTPS", CERT("{name: cert, namespace: certs}"))
		 "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n"
		 "metadata: {name: certs, namespace: certs}\n"
		 "spec:\n  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]\n"
		 "  to: [{group: '', kind: Secret, name: cert}]\n");
	if (!plan_build(&f, yaml, NULL, 0))
		goto out;
	x = pl(&f, "gw", "https-cross");
	ASSERT_TRUE(x->resolved_refs && x->cert, "granted");
out:
	plan_free(&f);
}

void test_gwplan_addresses(void)
{
	struct sl_cidr pools[2] = { 0 };
	struct sl_ip ip;
	struct plan_fx f;
	char b[SL_IP_STRLEN];

	ASSERT_OK(sl_ip_parse("10.99.0.0", &pools[0].ip), "v4");
	pools[0].len = 30;			/* .1 and .2 */
	ASSERT_OK(sl_ip_parse("fd00:99::", &pools[1].ip), "v6");
	pools[1].len = 126;			/* ::1, ::2, ::3 */
	if (!plan_build(&f, GW("g0", "") L("http", 80, "HTTP", "") "---\n" GW("g1", "") L("http", 80, "HTTP", "")
			"---\n" GW("g2", "") L("http", 80, "HTTP", "") "---\n" GW("g3", "") L("http", 80, "HTTP", "")
			"---\n" GW("g4", ADDR("192.0.2.7")) L("http", 80, "HTTP", ""),
			pools, 2))
		goto out;
	ASSERT_EQ(pgw(&f, "g0")->n_ips, 2, "g0: one per pool");
	ASSERT_STREQ(sl_ip_str(&pgw(&f, "g0")->ips[0], b), "10.99.0.1", "g0: .1");
	ASSERT_STREQ(sl_ip_str(&pgw(&f, "g1")->ips[1], b), "fd00:99::2", "g1: ::2");
	ASSERT_EQ(pgw(&f, "g2")->n_ips, 1, "g2: the IPv4 pool is out (.3 is broadcast)");
	ASSERT_TRUE(pgw(&f, "g2")->address_missing, "g2: AddressNotAssigned");
	ASSERT_TRUE(pl(&f, "g2", "http")->serve, "g2 still served on its IPv6 address");
	ASSERT_EQ(pgw(&f, "g3")->n_ips, 0, "g3: both out");
	ASSERT_FALSE(pl(&f, "g3", "http")->serve, "g3: nowhere to listen");
	if (ASSERT_OK_PTR(pgw(&f, "g3"), "g3"))
		ASSERT_HAS(pgw(&f, "g3")->message, "no address left", "message");
	ASSERT_STREQ(sl_ip_str(&pgw(&f, "g4")->ips[0], b), "192.0.2.7", "spec.addresses");
	ASSERT_EQ(pgw(&f, "g4")->n_ips, 1, "spec.addresses only");
	ASSERT_FALSE(pl(&f, "g4", "http")->conflicted, "its own address");
	pools[0].len = 24;
	ASSERT_TRUE(gwplan_pool_addr(&pools[0], 253, &ip), "/24: .254");
	ASSERT_STREQ(sl_ip_str(&ip, b), "10.99.0.254", "the last");
	ASSERT_FALSE(gwplan_pool_addr(&pools[0], 254, &ip), "/24: no .255");
	pools[0].len = 32;
	ASSERT_FALSE(gwplan_pool_addr(&pools[0], 0, &ip), "/32: none");
	pools[1].len = 64;
	ASSERT_TRUE(gwplan_pool_addr(&pools[1], 65535, &ip), "/64: many");
	ASSERT_STREQ(sl_ip_str(&ip, b), "fd00:99::1:0", "carry into the next byte");
out:
	plan_free(&f);
}

/* The route's status for its parentRef on Gateway gw, listener section. */
static const struct route_parent_status *rstatus(const struct plan_fx *f, const char *route, const char *section)
{
	for (size_t i = 0; i < route_status_count(f->rt); i++) {
		const struct route_parent_status *st = route_status_at(f->rt, i);
		const struct sl_parent_ref *p = &st->route->parents[st->parent];

		if (!strcmp(st->route->name, route) && p->section_name && !strcmp(p->section_name, section))
			return st;
	}
	ASSERT_TRUE(false, route);
	return NULL;
}

#define TLS_TERM(refs) ", tls: {mode: Terminate, certificateRefs: [" refs "]}"

void test_gwplan_tls_terminate(void)
{
	static char yaml[12288];
	struct plan_fx f;
	const struct gwplan_listener *x;
	const struct route_parent_status *st;

	snprintf(yaml, sizeof(yaml), "%s%s", secret_yaml,
		 GW("gw", ADDR("10.99.0.1"))
		 L("term", 8443, "TLS", ", hostname: '*.shop.example'" TLS_TERM("{name: cert}"))
		 L("term-b", 8443, "TLS", ", hostname: b.example" TLS_TERM("{name: cert}"))
		 L("term-missing", 8444, "TLS", TLS_TERM("{name: gone}"))
		 L("term-cross", 8445, "TLS", TLS_TERM("{name: cert, namespace: certs}"))
		 L("term-kind", 8446, "TLS", TLS_TERM("{name: cert, kind: ConfigMap}"))
		 L("term-nokey", 8447, "TLS", TLS_TERM("{name: nokey}"))
		 L("mixed-pass", 9443, "TLS", ", hostname: p.example" TLS_PASS)
		 L("mixed-term", 9443, "TLS", ", hostname: t.example" TLS_TERM("{name: cert}"))
		 L("https", 9444, "HTTPS", ", hostname: h.example" CERT("{name: cert}"))
		 L("term-https", 9444, "TLS", ", hostname: t.example" TLS_TERM("{name: cert}"))
		 L("dup-a", 9445, "TLS", ", hostname: d.example" TLS_TERM("{name: cert}"))
		 L("dup-b", 9445, "TLS", ", hostname: d.example" TLS_TERM("{name: cert}"))
		 "  - name: term-http-kind\n    port: 9446\n    protocol: TLS\n"
		 "    tls: {mode: Terminate, certificateRefs: [{name: cert}]}\n"
		 "    allowedRoutes: {kinds: [{kind: TLSRoute}, {kind: HTTPRoute}]}\n"
		 L("pass", 9447, "TLS", TLS_PASS)
		 "---\n"
		 "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: infra}\n"
		 "spec: {clusterIP: 10.96.0.5, ports: [{port: 5432}]}\n---\n"
		 "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: api, namespace: infra}\n"
		 "spec:\n  parentRefs: [{name: gw, sectionName: term}]\n  hostnames: [api.shop.example]\n"
		 "  rules: [{backendRefs: [{name: db, port: 5432}]}]\n---\n"
		 "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: elsewhere, namespace: infra}\n"
		 "spec:\n  parentRefs: [{name: gw, sectionName: term}]\n  hostnames: [api.other.example]\n"
		 "  rules: [{backendRefs: [{name: db, port: 5432}]}]\n---\n"
		 "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: db, namespace: infra}\n"
		 "spec:\n  parentRefs: [{name: gw, sectionName: term}]\n"
		 "  rules: [{backendRefs: [{name: db, port: 5432}]}]\n---\n"
		 "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: db-pass, namespace: infra}\n"
		 "spec:\n  parentRefs: [{name: gw, sectionName: pass}]\n"
		 "  rules: [{backendRefs: [{name: db, port: 5432}]}]\n");
	if (!plan_build(&f, yaml, NULL, 0))
		goto out;
	x = pl(&f, "gw", "term");
	ASSERT_TRUE(x->accepted && x->resolved_refs && x->serve, "TLS Terminate with a Secret: served");
	ASSERT_EQ(x->proto, GW_PROTO_TLS_TERMINATE, "served as TLS Terminate");
	ASSERT_TRUE(x->cert != NULL, "its certificate");
	ASSERT_EQ(x->kinds, ROUTE_KIND_BIT(SL_ROUTE_TLS) | ROUTE_KIND_BIT(SL_ROUTE_TCP), "TLSRoute and TCPRoute");
	ASSERT_EQ(x->attached, 2, "attachedRoutes: the TLSRoute and the TCPRoute");
	ASSERT_FALSE(pl(&f, "gw", "term-b")->conflicted, "another hostname on the port: distinct");
	x = pl(&f, "gw", "term-missing");
	ASSERT_STREQ(x->refs_reason, "InvalidCertificateRef", "Secret not found");
	ASSERT_HAS(x->message, "gone", "message names the Secret");
	ASSERT_TRUE(x->accepted && !x->cert, "accepted, no certificate");
	x = pl(&f, "gw", "term-cross");
	ASSERT_STREQ(x->refs_reason, "RefNotPermitted", "another namespace, no ReferenceGrant");
	ASSERT_STREQ(pl(&f, "gw", "term-kind")->refs_reason, "InvalidCertificateRef", "not a Secret");
	ASSERT_STREQ(pl(&f, "gw", "term-nokey")->refs_reason, "InvalidCertificateRef", "no tls.key");
	ASSERT_TRUE(pl(&f, "gw", "mixed-pass")->serve && pl(&f, "gw", "mixed-term")->serve,
		    "modes mixed on a port, hostnames distinct: both served");
	ASSERT_TRUE(pl(&f, "gw", "term-https")->serve && pl(&f, "gw", "https")->serve,
		    "HTTPS and TLS Terminate, hostnames distinct: both served");
	ASSERT_STREQ(pl(&f, "gw", "dup-a")->conflict_reason, "HostnameConflict", "same hostname");
	x = pl(&f, "gw", "term-http-kind");
	ASSERT_STREQ(x->refs_reason, "InvalidRouteKinds", "HTTPRoute on TLS Terminate");
	ASSERT_EQ(x->kinds, ROUTE_KIND_BIT(SL_ROUTE_TLS), "the valid kind stays");
	ASSERT_EQ(pl(&f, "gw", "pass")->kinds, ROUTE_KIND_BIT(SL_ROUTE_TLS), "Passthrough: TLSRoute only");
	st = rstatus(&f, "api", "term");
	if (ASSERT_OK_PTR(st, "api"))
		ASSERT_TRUE(st->accepted && st->resolved_refs, "TLSRoute on TLS Terminate: accepted");
	st = rstatus(&f, "elsewhere", "term");
	if (ASSERT_OK_PTR(st, "elsewhere"))
		ASSERT_STREQ(st->accepted_reason, "NoMatchingListenerHostname", "hostnames outside the listener's");
	st = rstatus(&f, "db", "term");
	if (ASSERT_OK_PTR(st, "db"))
		ASSERT_TRUE(st->accepted, "TCPRoute on TLS Terminate: accepted");
	st = rstatus(&f, "db-pass", "pass");
	if (ASSERT_OK_PTR(st, "db-pass"))
		ASSERT_STREQ(st->accepted_reason, "NotAllowedByListeners", "TCPRoute on TLS Passthrough");
	plan_free(&f);
	/* granted by a ReferenceGrant from Gateways of infra */
	snprintf(yaml, sizeof(yaml), "%s%s", secret_yaml,
		 GW("gw", ADDR("10.99.0.1")) L("term-cross", 8445, "TLS", TLS_TERM("{name: cert, namespace: certs}"))
		 "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n"
		 "metadata: {name: certs, namespace: certs}\n"
		 "spec:\n  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]\n"
		 "  to: [{group: '', kind: Secret}]\n");
	if (!plan_build(&f, yaml, NULL, 0))
		goto out;
	x = pl(&f, "gw", "term-cross");
	ASSERT_TRUE(x->resolved_refs && x->cert && x->serve, "granted");
out:
	plan_free(&f);
}
