// SPDX-License-Identifier: Apache-2.0
/* test_authz.c - AuthorizationPolicy and PeerAuthentication at L4: Istio's
 * evaluation order, every source and operation field, wildcards, scopes
 * (namespace, root namespace, selector, targetRefs), L7 rules judged
 * conservatively, CUSTOM, mTLS modes by level, and bad input. */
#include <stdlib.h>
#include <string.h>

#include "authz.h"
#include "config.h"
#include "lib/test.h"
#include "model.h"

static const char base[] =
	"apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n"
	"spec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {podIPs: [{ip: 10.0.0.1}]}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\n"
	"spec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {podIPs: [{ip: 10.0.0.2}]}\n---\n"
	"apiVersion: v1\nkind: Pod\nmetadata: {name: other, namespace: misc, labels: {app: web}}\n"
	"spec: {nodeName: node-1, containers: [{name: c}]}\nstatus: {podIPs: [{ip: 10.0.0.3}]}\n---\n"
	"apiVersion: v1\nkind: Service\nmetadata: {name: websvc, namespace: shop}\n"
	"spec: {clusterIP: 10.96.0.1, selector: {app: web}, ports: [{port: 80}]}\n---\n";

static struct sl_model *build(const char *policies)
{
	size_t n = strlen(base) + strlen(policies) + 1;
	char *yaml = malloc(n);
	struct sl_resources *r = config_resources_new();
	struct sl_model *m = NULL;
	struct diags errs = { 0 };

	if (!yaml || !r)
		goto out;
	snprintf(yaml, n, "%s%s", base, policies);
	if (!ASSERT_OK(config_decode_buf(r, "t.yaml", yaml, strlen(yaml), &errs), "decode")) {
		char b[512];

		for (size_t i = 0; i < errs.n; i++)
			printf("  %s\n", diag_str(&errs.v[i], b, sizeof(b)));
		resources_free(r);
		goto out;
	}
	ASSERT_OK(model_build(r, "node-1", &m, &errs), "model");
out:
	free(yaml);
	diags_clear(&errs);
	return m;
}

/* Allowed? pod "ns/name", from ip with principal (NULL: plaintext), to port. */
static bool allowed(const struct sl_model *m, const char *ns, const char *name, const char *src_ip,
		    const char *principal, uint16_t port, char *why, size_t len)
{
	struct authz_decision d;
	struct sl_ip src, dst;
	struct authz_peer p = { .ip = &src };
	char nsbuf[64] = "";
	const struct sl_pod *pod = NULL;

	for (size_t i = 0; i < m->res->n_pods; i++)
		if (!strcmp(m->res->pods[i].ns, ns) && !strcmp(m->res->pods[i].name, name))
			pod = &m->res->pods[i];
	if (!pod)
		return false;
	dst = pod->ips[0];
	sl_ip_parse(src_ip, &src);
	if (principal) {
		const char *x = strstr(principal, "/ns/");

		p.principal = principal;
		if (x)
			snprintf(nsbuf, sizeof(nsbuf), "%.*s", (int)strcspn(x + 4, "/"), x + 4);
		p.ns = nsbuf;
	}
	authz_decide(m, NULL, pod, &dst, port, &p, &d);
	snprintf(why, len, "%s", d.reason);
	return d.allow;
}

#define CLI "cluster.local/ns/front/sa/cli"
#define EVIL "cluster.local/ns/evil/sa/x"

struct probe {
	const char *pod;	/* "ns/name" */
	const char *src_ip, *principal;
	uint16_t port;
	bool want;
};

static void run(const char *desc, const char *policies, const struct probe *p, size_t n)
{
	struct sl_model *m = build(policies);
	char why[256], ns[64], msg[512];

	if (!ASSERT_OK_PTR(m, desc))
		return;
	for (size_t i = 0; i < n; i++) {
		const char *slash = strchr(p[i].pod, '/');
		bool got;

		snprintf(ns, sizeof(ns), "%.*s", (int)(slash - p[i].pod), p[i].pod);
		got = allowed(m, ns, slash + 1, p[i].src_ip, p[i].principal, p[i].port, why, sizeof(why));
		snprintf(msg, sizeof(msg), "%s: %s from %s (%s) port %u: %s", desc, p[i].pod, p[i].src_ip,
			 p[i].principal ? p[i].principal : "plaintext", p[i].port, why);
		ASSERT_EQ(got, p[i].want, msg);
	}
	model_free(m);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define AP(ns, spec) "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p-" ns ", namespace: " ns "}\nspec:\n" spec "---\n"

void test_authz_order_and_fields(void)
{
	static const struct probe none[] = {
		{ "shop/web", "10.1.0.1", NULL, 80, true },
		{ "shop/web", "10.1.0.1", CLI, 80, true },
	};
	static const struct probe allow_principal[] = {
		{ "shop/web", "10.1.0.1", CLI, 8080, true },
		{ "shop/web", "10.1.0.1", CLI, 9000, false },		/* to.ports */
		{ "shop/web", "10.1.0.1", EVIL, 8080, false },		/* principals */
		{ "shop/web", "10.1.0.1", NULL, 8080, false },		/* plaintext has no principal */
		{ "shop/db", "10.1.0.1", EVIL, 8080, true },		/* selector: web only */
		{ "misc/other", "10.1.0.1", EVIL, 8080, true },		/* another namespace */
	};
	static const struct probe deny_ns[] = {
		{ "shop/web", "10.1.0.1", EVIL, 80, false },
		{ "shop/web", "10.1.0.1", CLI, 80, true },		/* no ALLOW policy */
		{ "shop/web", "10.1.0.1", NULL, 80, true },		/* namespaces need mTLS */
	};
	static const struct probe empty_rule[] = {
		{ "shop/web", "10.1.0.1", NULL, 80, true },		/* rules: [{}] allows all */
		{ "shop/db", "10.1.0.1", CLI, 80, false },		/* no rules: allow nothing */
	};
	static const struct probe l7[] = {
		{ "shop/web", "10.1.0.1", CLI, 80, false },		/* ALLOW with paths: cannot match */
		{ "shop/db", "10.1.0.1", CLI, 80, false },		/* DENY with methods: denies */
	};
	static const struct probe wild[] = {
		{ "shop/web", "10.1.0.1", CLI, 80, true },		/* "*" any authenticated */
		{ "shop/web", "10.1.0.1", NULL, 80, false },
		{ "shop/db", "10.1.0.1", CLI, 80, true },		/* prefix match */
		{ "shop/db", "10.1.0.1", EVIL, 80, false },
	};
	static const struct probe nots[] = {
		{ "shop/web", "10.1.0.1", CLI, 80, true },
		{ "shop/web", "10.1.0.1", EVIL, 80, false },		/* notNamespaces */
		{ "shop/web", "192.168.0.1", CLI, 80, false },		/* ipBlocks */
		{ "shop/web", "10.9.0.1", CLI, 80, false },		/* notIpBlocks */
		{ "shop/web", "10.1.0.1", CLI, 22, false },		/* notPorts */
	};
	static const struct probe when[] = {
		{ "shop/web", "10.1.0.1", CLI, 80, true },
		{ "shop/web", "10.2.0.1", CLI, 80, false },		/* source.ip */
		{ "shop/web", "10.1.0.1", CLI, 81, false },		/* destination.port */
	};

	run("no policy", "", none, N(none));
	run("ALLOW principal and port",
	    AP("shop", "  selector: {matchLabels: {app: web}}\n  action: ALLOW\n  rules:\n"
		       "  - from: [{source: {principals: [\"" CLI "\"]}}]\n    to: [{operation: {ports: [\"8080\"]}}]\n"),
	    allow_principal, N(allow_principal));
	run("DENY namespace", AP("shop", "  action: DENY\n  rules: [{from: [{source: {namespaces: [evil]}}]}]\n"),
	    deny_ns, N(deny_ns));
	run("empty rule vs no rules",
	    AP("shop", "  selector: {matchLabels: {app: web}}\n  rules: [{}]\n")
	    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: nothing, namespace: shop}\n"
	    "spec: {selector: {matchLabels: {app: db}}}\n---\n",
	    empty_rule, N(empty_rule));
	run("L7 fields at L4",
	    AP("shop", "  selector: {matchLabels: {app: web}}\n  rules: [{to: [{operation: {paths: [/admin]}}]}]\n")
	    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: l7deny, namespace: shop}\n"
	    "spec: {selector: {matchLabels: {app: db}}, action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}\n---\n",
	    l7, N(l7));
	run("wildcards",
	    AP("shop", "  selector: {matchLabels: {app: web}}\n  rules: [{from: [{source: {principals: ['*']}}]}]\n")
	    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: pfx, namespace: shop}\n"
	    "spec: {selector: {matchLabels: {app: db}}, rules: [{from: [{source: {principals: ['cluster.local/ns/front/*']}}]}]}\n---\n",
	    wild, N(wild));
	run("not- forms and ipBlocks",
	    AP("shop", "  selector: {matchLabels: {app: web}}\n  rules:\n"
		       "  - from: [{source: {notNamespaces: [evil], ipBlocks: [10.0.0.0/8], notIpBlocks: [10.9.0.0/16]}}]\n"
		       "    to: [{operation: {notPorts: [\"22\"]}}]\n"),
	    nots, N(nots));
	run("when conditions",
	    AP("shop", "  selector: {matchLabels: {app: web}}\n  rules:\n"
		       "  - when: [{key: source.ip, values: [10.1.0.0/16]}, {key: destination.port, values: [\"80\"]}]\n"),
	    when, N(when));
}

void test_authz_scopes(void)
{
	static const struct probe root[] = {
		{ "shop/web", "10.1.0.1", CLI, 80, false },		/* root ns, no selector: mesh-wide */
		{ "misc/other", "10.1.0.1", CLI, 80, false },
		{ "shop/web", "10.1.0.1", EVIL, 80, true },
	};
	static const struct probe root_sel[] = {
		{ "shop/web", "10.1.0.1", CLI, 80, false },		/* root ns selector: app=web anywhere */
		{ "misc/other", "10.1.0.1", CLI, 80, false },
		{ "shop/db", "10.1.0.1", CLI, 80, true },
	};
	static const struct probe target[] = {
		{ "shop/web", "10.1.0.1", CLI, 80, false },		/* targetRefs: the Service's pods */
		{ "shop/db", "10.1.0.1", CLI, 80, true },
		{ "misc/other", "10.1.0.1", CLI, 80, true },
	};
	static const struct probe custom[] = {
		{ "shop/web", "10.1.0.1", CLI, 80, false },
		{ "shop/db", "10.1.0.1", CLI, 80, true },
	};

	run("root namespace", AP("istio-system", "  action: DENY\n  rules: [{from: [{source: {namespaces: [front]}}]}]\n"),
	    root, N(root));
	run("root namespace with selector",
	    AP("istio-system", "  selector: {matchLabels: {app: web}}\n  action: DENY\n  rules: [{}]\n"), root_sel,
	    N(root_sel));
	run("targetRefs Service",
	    AP("shop", "  targetRefs: [{kind: Service, group: \"\", name: websvc}]\n  action: DENY\n  rules: [{}]\n"),
	    target, N(target));
	run("CUSTOM", AP("shop", "  selector: {matchLabels: {app: web}}\n  action: CUSTOM\n  rules: [{}]\n"), custom,
	    N(custom));
}

#define PA(name, ns, spec) "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: " name ", namespace: " ns "}\nspec: " spec "\n---\n"

void test_authz_mtls_modes(void)
{
	struct sl_model *m = build(PA("mesh", "istio-system", "{mtls: {mode: STRICT}}")
				   PA("misc-ns", "misc", "{mtls: {mode: PERMISSIVE}}")
				   PA("db", "shop", "{selector: {matchLabels: {app: db}}, mtls: {mode: PERMISSIVE}, "
						    "portLevelMtls: {\"5432\": {mode: STRICT}}}")
				   PA("unset", "shop", "{selector: {matchLabels: {app: web}}}"));
	const struct sl_peerauthn *by = NULL;

	if (!ASSERT_OK_PTR(m, "model"))
		return;
	/* web: the workload policy leaves the mode unset: the mesh's STRICT. */
	ASSERT_EQ(authz_mtls_mode(m, NULL, &m->res->pods[0], 80, &by), SL_MTLS_STRICT, "web: mesh STRICT");
	ASSERT_STREQ(by ? by->name : NULL, "mesh", "web: by the mesh policy");
	ASSERT_EQ(authz_mtls_mode(m, NULL, &m->res->pods[1], 80, &by), SL_MTLS_PERMISSIVE, "db: workload");
	ASSERT_EQ(authz_mtls_mode(m, NULL, &m->res->pods[1], 5432, &by), SL_MTLS_STRICT, "db: port level");
	ASSERT_EQ(authz_mtls_mode(m, NULL, &m->res->pods[2], 80, &by), SL_MTLS_PERMISSIVE, "misc: namespace");
	ASSERT_STREQ(by ? by->name : NULL, "misc-ns", "misc: by its namespace's policy");
	model_free(m);
	m = build("");
	if (ASSERT_OK_PTR(m, "model")) {
		ASSERT_EQ(authz_mtls_mode(m, NULL, &m->res->pods[0], 80, &by), SL_MTLS_PERMISSIVE, "default");
		ASSERT_TRUE(by == NULL, "default: no policy");
	}
	model_free(m);
}

void test_authz_bad_input(void)
{
	static const struct {
		const char *yaml, *want;
	} bad[] = {
		{ AP("shop", "  action: MAYBE\n"), "expected ALLOW, DENY, AUDIT or CUSTOM" },
		{ AP("shop", "  rules: [{to: [{operation: {ports: [http]}}]}]\n"), "not a port" },
		{ AP("shop", "  rules: [{from: [{source: {ipBlocks: [10.0.0.0/40]}}]}]\n"), "not a CIDR" },
		{ AP("shop", "  rules: [{from: [{}]}]\n"), "source: missing" },
		{ AP("shop", "  rules: [{when: [{key: source.ip}]}]\n"), "needs values or notValues" },
		{ AP("shop", "  selector: {matchLabels: {a: b}}\n  targetRefs: [{kind: Service, name: x}]\n"),
		  "cannot both be set" },
		{ PA("x", "shop", "{mtls: {mode: SOMETIMES}}"), "expected UNSET, PERMISSIVE, STRICT or DISABLE" },
		{ PA("x", "shop", "{portLevelMtls: {\"80\": {mode: STRICT}}}"), "needs a selector" },
	};

	for (size_t i = 0; i < N(bad); i++) {
		struct sl_resources *r = config_resources_new();
		struct diags errs = { 0 };
		char b[512] = "";

		ASSERT_ERR(config_decode_buf(r, "t.yaml", bad[i].yaml, strlen(bad[i].yaml), &errs), bad[i].want);
		if (errs.n)
			diag_str(&errs.v[0], b, sizeof(b));
		ASSERT_HAS(b, bad[i].want, bad[i].want);
		ASSERT_EQ(r->n_authzs + r->n_peerauthns, 0, "nothing kept");
		diags_clear(&errs);
		resources_free(r);
	}
}

void test_authz_principal(void)
{
	char p[128], ns[64];

	ASSERT_TRUE(authz_principal("spiffe://cluster.local/ns/shop/sa/web", p, sizeof(p), ns, sizeof(ns)), "parse");
	ASSERT_STREQ(p, "cluster.local/ns/shop/sa/web", "principal");
	ASSERT_STREQ(ns, "shop", "namespace");
	ASSERT_FALSE(authz_principal("https://x/ns/a", p, sizeof(p), ns, sizeof(ns)), "not spiffe");
	ASSERT_FALSE(authz_principal(NULL, p, sizeof(p), ns, sizeof(ns)), "none");
}
