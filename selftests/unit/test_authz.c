// SPDX-License-Identifier: Apache-2.0
/* test_authz.c - AuthorizationPolicy and PeerAuthentication at L4: Istio's
 * evaluation order, every source and operation field, wildcards, scopes
 * (namespace, root namespace, selector, targetRefs), L7 rules judged
 * conservatively, CUSTOM, mTLS modes by level, and bad input. Then the
 * waypoint's per-request decision for policies that target a Service
 * (authz_decide_request): methods, paths (wildcards, templates,
 * normalization), hosts, headers, requestPrincipals, the mix with L4
 * fields, AUDIT, and the L7 fields' bad input. */
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

/* ---- L7: authz_decide_request ---- */

#define WEB_TARGET "  targetRefs: [{kind: Service, group: \"\", name: websvc}]\n"
#define DBSVC "apiVersion: v1\nkind: Service\nmetadata: {name: dbsvc, namespace: shop}\n" \
	      "spec: {clusterIP: 10.96.0.2, selector: {app: db}, ports: [{port: 5432}]}\n---\n"

struct rq {
	const char *method, *path, *host;
	const char *principal;		/* NULL: plaintext */
	const char *hdr[4];		/* up to two name, value pairs */
	bool want;
	uint16_t port;			/* 0: 80 */
	int audit;			/* -1: either */
	const char *svc;		/* NULL: websvc */
};

static const struct sl_service *find_svc(const struct sl_model *m, const char *name)
{
	for (size_t i = 0; i < m->res->n_services; i++)
		if (!strcmp(m->res->services[i].ns, "shop") && !strcmp(m->res->services[i].name, name))
			return &m->res->services[i];
	return NULL;
}

static void decide_rq(const struct sl_model *m, const struct rq *q, struct authz_decision *d)
{
	struct sl_ip src;
	struct authz_peer p = { .ip = &src };
	struct authz_header h[2];
	struct authz_request req = { .method = q->method, .path = q->path, .host = q->host, .headers = h };
	char nsbuf[64] = "";

	for (size_t i = 0; i < 2 && q->hdr[2 * i]; i++)
		h[req.n_headers++] = (struct authz_header){ q->hdr[2 * i], q->hdr[2 * i + 1] };
	sl_ip_parse("10.1.0.1", &src);
	if (q->principal) {
		const char *x = strstr(q->principal, "/ns/");

		p.principal = q->principal;
		if (x)
			snprintf(nsbuf, sizeof(nsbuf), "%.*s", (int)strcspn(x + 4, "/"), x + 4);
		p.ns = nsbuf;
	}
	authz_decide_request(m, NULL, find_svc(m, q->svc ? q->svc : "websvc"), q->port ? q->port : 80, &p, &req, d);
}

static void run_rq(const char *desc, const char *policies, const struct rq *q, size_t n)
{
	struct sl_model *m = build(policies);
	char msg[768];

	if (!ASSERT_OK_PTR(m, desc))
		return;
	for (size_t i = 0; i < n; i++) {
		struct authz_decision d;

		if (!ASSERT_OK_PTR(find_svc(m, q[i].svc ? q[i].svc : "websvc"), "service"))
			break;
		decide_rq(m, &q[i], &d);
		snprintf(msg, sizeof(msg), "%s: %s %s host %s to %s:%u from %s%s%s%s%s: %s", desc,
			 q[i].method ? q[i].method : "-", q[i].path ? q[i].path : "-", q[i].host ? q[i].host : "-",
			 q[i].svc ? q[i].svc : "websvc", q[i].port ? q[i].port : 80,
			 q[i].principal ? q[i].principal : "plaintext", q[i].hdr[0] ? " with " : "",
			 q[i].hdr[0] ? q[i].hdr[0] : "", q[i].hdr[0] ? ": " : "", q[i].hdr[1] ? q[i].hdr[1] : "",
			 d.reason);
		ASSERT_EQ(d.allow, q[i].want, msg);
		if (q[i].audit >= 0)
			ASSERT_EQ(d.audit, (bool)q[i].audit, msg);
	}
	model_free(m);
}

#define GET(path, want) { "GET", path, "websvc.shop", CLI, { NULL }, want, 0, -1, NULL }
#define REQ(method, path, want) { method, path, "websvc.shop", CLI, { NULL }, want, 0, -1, NULL }
#define HDR(n1, v1, n2, v2, want) { "GET", "/", "websvc.shop", CLI, { n1, v1, n2, v2 }, want, 0, -1, NULL }

void test_authz_request_methods_paths(void)
{
	static const struct rq allow[] = {
		GET("/api/v1/items", true),		/* the prefix "/api/" */
		GET("/api/", true),
		GET("/api", false),			/* the prefix has the slash */
		GET("/static/site.css", true),		/* suffix "*.css" */
		GET("/exact", true),
		GET("/exact/", false),			/* exact is exact */
		GET("/Exact", false),			/* paths are case-sensitive */
		REQ("POST", "/api/v1", false),		/* methods */
		REQ("get", "/api/v1", false),		/* methods are case-sensitive */
		GET("/other", false),
		GET("/api/../admin", false),		/* normalized to /admin */
		GET("/%61pi/x", true),			/* %61 is 'a': /api/x */
		GET("/admin/%2e%2E/api/x", true),	/* %2e is '.': /api/x */
		GET("/admin/..%2e/api/x", false),	/* "..." is a name */
		{ "GET", "/exact", "websvc.shop", CLI, { "X-Never", "" }, false, 0, -1, NULL },	/* when notValues */
		REQ("HEAD", "/exact", true),
		GET("/api\\x", true),			/* '\' is '/' */
	};
	static const struct rq templates[] = {
		GET("/users/alice/profile", true),	/* {*}: one segment */
		GET("/users/a/b/profile", false),
		GET("/users//profile", false),		/* {*} needs one character */
		GET("/files/", true),			/* {**}: any number of segments */
		GET("/files/a/b/c.txt", true),
		GET("/files", false),
		GET("/any", true),			/* "*": any non-empty path */
	};
	static const struct rq any[] = {
		GET("/whatever", true),
		{ "GET", NULL, "websvc.shop", CLI, { NULL }, false, 0, -1, NULL },	/* no path */
		REQ("PATCH", "/x", true),		/* methods "*" */
	};
	static const struct rq deny_path[] = {
		GET("/public", true),			/* no ALLOW policy */
		GET("/admin", false),
		GET("/admin/users", false),
		GET("/./admin", false),			/* normalized before matching */
		GET("/public/../admin/x", false),
		GET("/%61dmin", false),
		GET("/Admin", true),			/* case-sensitive */
		GET("/admin?x=1", false),		/* a query is cut */
		GET("/x%00y", false),			/* %00 refused (Istio's 400) */
		REQ("DELETE", "/public", false),	/* second rule: methods */
	};
	static const struct rq not_forms[] = {
		GET("/x", true),
		REQ("DELETE", "/x", false),		/* notMethods */
		REQ("PUT", "/x", false),
		GET("/internal/x", false),		/* notPaths */
		GET("/internal", true),			/* the prefix has the slash */
	};

	run_rq("ALLOW by method and path",
	       AP("shop", WEB_TARGET "  rules:\n  - to: [{operation: {methods: [GET, HEAD], paths: [\"/api/*\", \"*.css\", /exact]}}]\n"
				     "    when: [{key: \"request.headers[x-never]\", notValues: [\"*\"]}]\n"),
	       allow, N(allow));
	run_rq("path templates",
	       AP("shop", WEB_TARGET "  rules:\n  - to: [{operation: {paths: [\"/users/{*}/profile\", \"/files/{**}\"]}}]\n"
				     "  - to: [{operation: {paths: [\"*\"], methods: [PUT]}}]\n"
				     "  - to: [{operation: {paths: [/any]}}]\n"),
	       templates, N(templates));
	run_rq("wildcards any", AP("shop", WEB_TARGET "  rules: [{to: [{operation: {paths: [\"*\"], methods: [\"*\"]}}]}]\n"),
	       any, N(any));
	run_rq("DENY by path",
	       AP("shop", WEB_TARGET "  action: DENY\n  rules:\n  - to: [{operation: {paths: [/admin, \"/admin/*\"]}}]\n"
				     "  - to: [{operation: {methods: [DELETE]}}]\n"),
	       deny_path, N(deny_path));
	run_rq("notMethods and notPaths",
	       AP("shop", WEB_TARGET "  rules: [{to: [{operation: {notMethods: [DELETE, PUT], notPaths: [\"/internal/*\"]}}]}]\n"),
	       not_forms, N(not_forms));
}

#define HOST(host, want) { "GET", "/", host, CLI, { NULL }, want, 0, -1, NULL }

void test_authz_request_hosts(void)
{
	static const struct rq hosts[] = {
		HOST("websvc.shop.svc.cluster.local", true),
		HOST("websvc.shop.svc.cluster.local:80", true),	/* without the port */
		HOST("WEBSVC.Shop.svc.cluster.local", true),		/* case-insensitive */
		HOST("api.Example.COM:8080", true),			/* suffix "*.example.com" */
		HOST("example.com", false),
		HOST("web:80", true),					/* "web:80": with the port */
		HOST("web", false),					/* the pattern has a port */
		HOST("[fd00::1]:80", true),				/* "[fd00::1]" */
		HOST("evil.com", false),
		HOST(NULL, false),					/* no Host */
	};
	static const struct rq not_hosts[] = {
		HOST("websvc.shop", true),
		HOST("admin.shop", false),
		HOST("ADMIN.shop:80", false),
		HOST("admin.shop.evil", true),
		HOST(NULL, true),					/* notHosts: none is not one */
	};

	run_rq("hosts",
	       AP("shop", WEB_TARGET "  rules: [{to: [{operation: {hosts: [websvc.shop.svc.cluster.local, \"*.example.com\", "
				     "\"web:80\", \"[fd00::1]\"]}}]}]\n"),
	       hosts, N(hosts));
	run_rq("notHosts", AP("shop", WEB_TARGET "  rules: [{to: [{operation: {notHosts: [admin.shop]}}]}]\n"), not_hosts,
	       N(not_hosts));
}


void test_authz_request_headers(void)
{
	static const struct rq allow[] = {
		HDR("x-token", "secret-1", NULL, NULL, true),
		HDR("X-TOKEN", "secret-2", NULL, NULL, true),		/* names are case-insensitive */
		HDR("x-token", "Secret-1", NULL, NULL, false),		/* values are not */
		HDR("x-token", "nope", NULL, NULL, false),
		HDR(NULL, NULL, NULL, NULL, false),			/* absent */
		HDR("x-token", "secret-1", "x-env", "prod", false),	/* notValues */
		HDR("x-token", "secret-1", "x-env", "dev", true),
		HDR("x-token", "nope", "x-token", "secret-3", false),	/* joined: "nope,secret-3" */
		HDR("x-token", "secret-3", "x-token", "x", true),	/* joined: "secret-3,x" */
	};
	static const struct rq deny[] = {
		HDR("user-agent", "curl/8.0", NULL, NULL, false),
		HDR("user-agent", "Mozilla/5.0", NULL, NULL, true),
		HDR(NULL, NULL, NULL, NULL, true),
		HDR("x-debug", "", NULL, NULL, false),			/* "*": present, even empty */
		HDR("x-debug", "1", NULL, NULL, false),
	};
	static const struct rq pseudo[] = {
		{ "GET", "/", "websvc.shop:80", CLI, { NULL }, true, 0, -1, NULL },	/* request.headers[host] */
		{ "GET", "/", "other", CLI, { NULL }, false, 0, -1, NULL },
	};

	run_rq("header values",
	       AP("shop", WEB_TARGET "  rules:\n  - when:\n    - {key: \"request.headers[X-Token]\", values: [\"secret*\"]}\n"
				     "    - {key: \"request.headers[x-env]\", notValues: [prod]}\n"),
	       allow, N(allow));
	run_rq("header DENY",
	       AP("shop", WEB_TARGET "  action: DENY\n  rules:\n  - when: [{key: \"request.headers[User-Agent]\", values: [\"curl/*\"]}]\n"
				     "  - when: [{key: \"request.headers[x-debug]\", values: [\"*\"]}]\n"),
	       deny, N(deny));
	run_rq("host header", AP("shop", WEB_TARGET "  rules: [{when: [{key: \"request.headers[host]\", values: [\"websvc.*\"]}]}]\n"),
	       pseudo, N(pseudo));
}

void test_authz_request_principals(void)
{
	static const struct rq allow[] = {
		GET("/private", false),		/* requestPrincipals never match: no JWT */
		GET("/public/x", true),		/* another rule */
		GET("/claims", false),		/* request.auth.claims never match */
	};
	static const struct rq deny_all[] = {
		GET("/", false),		/* DENY with requestPrincipals matches everything */
		GET("/public", false),
		{ "GET", "/", "websvc.shop", NULL, { NULL }, false, 0, -1, NULL },
	};
	static const struct rq deny_scoped[] = {
		GET("/admin/x", false),		/* the unknown part counts as matching... */
		GET("/public", true),		/* ...but the rule's paths still count */
	};
	static const struct rq not_rp[] = {
		GET("/", false),		/* notRequestPrincipals: cannot be checked either */
	};
	struct sl_model *m;

	run_rq("ALLOW with requestPrincipals",
	       AP("shop", WEB_TARGET "  rules:\n  - from: [{source: {requestPrincipals: [\"*\"]}}]\n"
				     "  - to: [{operation: {paths: [\"/public/*\"]}}]\n"
				     "  - when: [{key: \"request.auth.claims[iss]\", values: [\"https://idp\"]}]\n"),
	       allow, N(allow));
	run_rq("DENY with requestPrincipals",
	       AP("shop", WEB_TARGET "  action: DENY\n  rules: [{from: [{source: {requestPrincipals: [\"idp/*\"]}}]}]\n"),
	       deny_all, N(deny_all));
	run_rq("DENY with requestPrincipals and paths",
	       AP("shop", WEB_TARGET "  action: DENY\n  rules:\n  - from: [{source: {requestPrincipals: [\"idp/admin\"]}}]\n"
				     "    to: [{operation: {paths: [\"/admin/*\"]}}]\n"),
	       deny_scoped, N(deny_scoped));
	run_rq("ALLOW with notRequestPrincipals",
	       AP("shop", WEB_TARGET "  rules: [{from: [{source: {notRequestPrincipals: [\"idp/banned\"]}}]}]\n"), not_rp,
	       N(not_rp));

	/* Kept as decoded, with the l7 flags the L4 path uses. */
	m = build(AP("shop", WEB_TARGET "  rules:\n  - from: [{source: {requestPrincipals: [\"a/b\"], notRequestPrincipals: [\"c/d\"]}}]\n"
					"    to: [{operation: {hosts: [h], notHosts: [nh], methods: [GET], notMethods: [PUT], "
					"paths: [/p], notPaths: [/np]}}]\n"
					"    when: [{key: \"request.headers[X-A]\", values: [v], notValues: [nv]}]\n"));
	if (ASSERT_OK_PTR(m, "model") && ASSERT_EQ(m->res->n_authzs, 1, "one policy")) {
		const struct sl_authz_rule *r = &m->res->authzs[0].rules[0];

		ASSERT_TRUE(r->l7 && r->from[0].l7 && r->to[0].l7, "l7 flags");
		ASSERT_STREQ(r->from[0].request_principals.v[0], "a/b", "requestPrincipals");
		ASSERT_STREQ(r->from[0].not_request_principals.v[0], "c/d", "notRequestPrincipals");
		ASSERT_STREQ(r->to[0].hosts.v[0], "h", "hosts");
		ASSERT_STREQ(r->to[0].not_hosts.v[0], "nh", "notHosts");
		ASSERT_STREQ(r->to[0].methods.v[0], "GET", "methods");
		ASSERT_STREQ(r->to[0].not_methods.v[0], "PUT", "notMethods");
		ASSERT_STREQ(r->to[0].paths.v[0], "/p", "paths");
		ASSERT_STREQ(r->to[0].not_paths.v[0], "/np", "notPaths");
		ASSERT_STREQ(r->when[0].key, "request.headers[X-A]", "when key");
		ASSERT_STREQ(r->when[0].header, "X-A", "header name");
		ASSERT_STREQ(r->when[0].values.v[0], "v", "values");
		ASSERT_STREQ(r->when[0].not_values.v[0], "nv", "notValues");
	}
	model_free(m);
}

void test_authz_request_scope(void)
{
	static const struct rq other[] = {
		GET("/", true),						/* websvc: not targeted */
		{ "GET", "/", "dbsvc.shop", CLI, { NULL }, false, 5432, -1, "dbsvc" },
	};
	static const struct rq not_targets[] = {
		GET("/", true),		/* selector, namespace-wide, another group: not the waypoint's */
	};
	static const struct rq custom[] = {
		GET("/", false),
	};
	static const struct rq none[] = {
		GET("/x%00", true),	/* no policy: nothing to judge, not even the path */
	};
	struct sl_model *m;

	run_rq("policy for another Service",
	       DBSVC AP("shop", "  targetRefs: [{kind: Service, name: dbsvc}]\n  action: DENY\n  rules: [{}]\n"), other,
	       N(other));
	run_rq("policies that do not target the Service",
	       AP("shop", "  selector: {matchLabels: {app: web}}\n  action: DENY\n  rules: [{}]\n")
	       "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: grp, namespace: shop}\n"
	       "spec: {targetRefs: [{kind: Service, group: x.io, name: websvc}], action: DENY, rules: [{}]}\n---\n"
	       "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: gw, namespace: shop}\n"
	       "spec: {targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: websvc}], rules: []}\n---\n"
	       "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ns, namespace: misc}\n"
	       "spec: {targetRefs: [{kind: Service, name: websvc}], action: DENY, rules: [{}]}\n---\n",
	       not_targets, N(not_targets));
	run_rq("CUSTOM", AP("shop", WEB_TARGET "  action: CUSTOM\n  rules: [{}]\n"), custom, N(custom));
	run_rq("no policy", "", none, N(none));

	m = build(DBSVC AP("shop", "  targetRefs: [{kind: Service, name: dbsvc}, {kind: Service, group: \"\", name: websvc}]\n"));
	if (ASSERT_OK_PTR(m, "model")) {
		ASSERT_TRUE(authz_targets_service(&m->res->authzs[0], find_svc(m, "websvc")), "websvc");
		ASSERT_TRUE(authz_targets_service(&m->res->authzs[0], find_svc(m, "dbsvc")), "dbsvc");
	}
	model_free(m);
}

void test_authz_request_l4_fields(void)
{
	static const struct rq mix[] = {
		GET("/api/x", true),
		{ "GET", "/api/x", "websvc.shop", EVIL, { NULL }, false, 0, -1, NULL },	/* principals */
		{ "GET", "/api/x", "websvc.shop", NULL, { NULL }, false, 0, -1, NULL },	/* plaintext */
		GET("/other", false),							/* paths */
		{ "GET", "/api/x", "websvc.shop", CLI, { NULL }, false, 8080, -1, NULL },	/* notPorts */
	};
	static const struct rq when[] = {
		GET("/", true),
		{ "GET", "/", "websvc.shop", EVIL, { NULL }, false, 0, -1, NULL },	/* source.namespace */
		{ "GET", "/", "websvc.shop", CLI, { NULL }, false, 81, -1, NULL },	/* destination.port */
	};
	static const struct rq deny_mix[] = {
		{ "POST", "/", "websvc.shop", EVIL, { NULL }, false, 0, -1, NULL },
		{ "GET", "/", "websvc.shop", EVIL, { NULL }, true, 0, -1, NULL },
		REQ("POST", "/", true),
	};

	run_rq("principals and paths",
	       AP("shop", WEB_TARGET "  rules:\n  - from: [{source: {principals: [\"" CLI "\"], ipBlocks: [10.0.0.0/8]}}]\n"
				     "    to: [{operation: {paths: [\"/api/*\"], notPorts: [\"8080\"]}}]\n"),
	       mix, N(mix));
	run_rq("L4 when keys",
	       AP("shop", WEB_TARGET "  rules:\n  - when:\n    - {key: source.namespace, values: [front]}\n"
				     "    - {key: destination.port, values: [\"80\"]}\n"
				     "    - {key: destination.ip, values: [10.96.0.0/16]}\n"
				     "    - {key: source.ip, notValues: [10.9.0.0/16]}\n"),
	       when, N(when));
	run_rq("DENY namespaces and methods",
	       AP("shop", WEB_TARGET "  action: DENY\n  rules:\n  - from: [{source: {namespaces: [evil]}}]\n"
				     "    to: [{operation: {methods: [POST]}}]\n"),
	       deny_mix, N(deny_mix));
}

void test_authz_request_audit(void)
{
	static const struct rq q[] = {
		{ "GET", "/audit/x", "websvc.shop", CLI, { NULL }, true, 0, 1, NULL },
		{ "GET", "/x", "websvc.shop", CLI, { NULL }, true, 0, 0, NULL },
		{ "DELETE", "/audit/x", "websvc.shop", CLI, { NULL }, false, 0, 1, NULL },	/* audited, denied */
		{ "GET", "/rp", "websvc.shop", CLI, { NULL }, true, 0, 0, NULL },	/* unknown: not audited */
	};

	run_rq("AUDIT",
	       AP("shop", WEB_TARGET "  action: AUDIT\n  rules:\n  - to: [{operation: {paths: [\"/audit/*\"]}}]\n"
				     "  - from: [{source: {requestPrincipals: [\"*\"]}}]\n    to: [{operation: {paths: [/rp]}}]\n")
	       "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: nodel, namespace: shop}\n"
	       "spec: {targetRefs: [{kind: Service, name: websvc}], action: DENY, "
	       "rules: [{to: [{operation: {methods: [DELETE]}}]}]}\n---\n",
	       q, N(q));
}

void test_authz_request_normalize(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "/", "/" },
		{ "/a/b", "/a/b" },
		{ "/public/./data/abc/../xyz", "/public/data/xyz" },
		{ "/a/b/..", "/a/" },
		{ "/a/b/.", "/a/b/" },
		{ "/../../a", "/a" },
		{ "/a/%2e%2E/b", "/b" },
		{ "/some%2fdata/%61%62%63", "/some%2fdata/abc" },	/* %2f stays (BASE) */
		{ "/a%5cb\\c", "/a%5cb/c" },				/* %5c stays, '\' is '/' */
		{ "/%7e%5F%2d%41%3a", "/~_-A%3a" },
		{ "/a//b", "/a//b" },					/* slashes are not merged */
		{ "/x?a=/../y", "/x" },
		{ "/bad%zz%4", "/bad%zz%4" },
		{ "", "" },
	};
	char out[64];

	for (size_t i = 0; i < N(cases); i++) {
		ASSERT_TRUE(authz_normalize_path(cases[i].in, out, sizeof(out)), cases[i].in);
		ASSERT_STREQ(out, cases[i].want, cases[i].in);
	}
	ASSERT_FALSE(authz_normalize_path("/a%00b", out, sizeof(out)), "%00");
	ASSERT_FALSE(authz_normalize_path("/abcdef", out, 4), "too small");
	ASSERT_TRUE(authz_normalize_path("/abc", out, 5), "just fits");
}

void test_authz_request_bad_input(void)
{
	static const struct {
		const char *yaml, *want;
	} bad[] = {
		{ AP("shop", "  rules: [{to: [{operation: {paths: /admin}}]}]\n"), "paths: expected a list" },
		{ AP("shop", "  rules: [{to: [{operation: {paths: [{a: b}]}}]}]\n"), "paths[0]: expected a string" },
		{ AP("shop", "  rules: [{to: [{operation: {hosts: [80]}}]}]\n"), "hosts[0]: expected a string, got the number 80" },
		{ AP("shop", "  rules: [{to: [{operation: {notHosts: {a: b}}}]}]\n"), "notHosts: expected a list" },
		{ AP("shop", "  rules: [{to: [{operation: {methods: [\"\"]}}]}]\n"), "methods[0]: must not be empty" },
		{ AP("shop", "  rules: [{to: [{operation: {notPaths: [\"/foo/{*}.txt\"]}}]}]\n"), "not a valid path template" },
		{ AP("shop", "  rules: [{to: [{operation: {paths: [\"/{**}/foo/{*}\"]}}]}]\n"), "not a valid path template" },
		{ AP("shop", "  rules: [{to: [{operation: {paths: [\"/*/baz/{*}\"]}}]}]\n"), "not a valid path template" },
		{ AP("shop", "  rules: [{from: [{source: {requestPrincipals: a/b}}]}]\n"), "requestPrincipals: expected a list" },
		{ AP("shop", "  rules: [{when: [{key: \"request.headers[]\", values: [x]}]}]\n"),
		  "expected request.headers[<header name>]" },
		{ AP("shop", "  rules: [{when: [{key: \"request.headers[a]b\", values: [x]}]}]\n"),
		  "expected request.headers[<header name>]" },
		{ AP("shop", "  rules: [{when: [{key: request.headers, values: [x]}]}]\n"),
		  "expected request.headers[<header name>]" },
		{ AP("shop", "  targetRefs: [{kind: Service, group: 1, name: x}]\n"), "group: expected a string" },
	};

	for (size_t i = 0; i < N(bad); i++) {
		struct sl_resources *r = config_resources_new();
		struct diags errs = { 0 };
		char b[512] = "";

		ASSERT_ERR(config_decode_buf(r, "t.yaml", bad[i].yaml, strlen(bad[i].yaml), &errs), bad[i].want);
		if (errs.n)
			diag_str(&errs.v[0], b, sizeof(b));
		ASSERT_HAS(b, bad[i].want, bad[i].want);
		ASSERT_EQ(r->n_authzs, 0, "nothing kept");
		diags_clear(&errs);
		resources_free(r);
	}
	/* Valid templates are kept. */
	{
		static const char ok[] = AP("shop", "  rules: [{to: [{operation: {paths: [\"/foo/{*}/bar/{**}\", \"/{**}\", "
						    "\"/a/{b}\", \"/x*\"]}}]}]\n");
		struct sl_resources *r = config_resources_new();
		struct diags errs = { 0 };

		ASSERT_OK(config_decode_buf(r, "t.yaml", ok, strlen(ok), &errs), "valid templates");
		ASSERT_EQ(r->n_authzs, 1, "kept");
		diags_clear(&errs);
		resources_free(r);
	}
}

static void strs1(struct sl_strs *l, const char *v)
{
	l->v = calloc(1, sizeof(char *));
	if (l->v && (l->v[0] = strdup(v)))
		l->n = 1;
}

/* A set built by hand (priv NULL) owns every string and array: resources_free
 * releases the L7 fields one by one (ASan sees a leak or a double free). */
void test_authz_free_hand_built(void)
{
	struct sl_resources *r = calloc(1, sizeof(*r));
	struct sl_authz *a;
	struct sl_authz_rule *rule;

	if (!ASSERT_OK_PTR(r, "set"))
		return;
	a = r->authzs = calloc(1, sizeof(*a));
	if (!ASSERT_OK_PTR(a, "authzs")) {
		resources_free(r);
		return;
	}
	r->n_authzs = 1;
	a->ns = strdup("shop");
	a->name = strdup("p");
	a->targets = calloc(1, sizeof(*a->targets));
	if (a->targets) {
		a->n_targets = 1;
		a->targets[0].kind = strdup("Service");
		a->targets[0].name = strdup("websvc");
		a->targets[0].group = strdup("");
	}
	rule = a->rules = calloc(1, sizeof(*rule));
	if (!ASSERT_OK_PTR(rule, "rules")) {
		resources_free(r);
		return;
	}
	a->n_rules = 1;
	rule->from = calloc(1, sizeof(*rule->from));
	rule->to = calloc(1, sizeof(*rule->to));
	rule->when = calloc(1, sizeof(*rule->when));
	if (rule->from) {
		rule->n_from = 1;
		strs1(&rule->from[0].principals, CLI);
		strs1(&rule->from[0].request_principals, "iss/sub");
		strs1(&rule->from[0].not_request_principals, "iss/x");
	}
	if (rule->to) {
		rule->n_to = 1;
		strs1(&rule->to[0].hosts, "h");
		strs1(&rule->to[0].not_hosts, "nh");
		strs1(&rule->to[0].methods, "GET");
		strs1(&rule->to[0].not_methods, "PUT");
		strs1(&rule->to[0].paths, "/p");
		strs1(&rule->to[0].not_paths, "/np");
	}
	if (rule->when) {
		rule->n_when = 1;
		rule->when[0].key = strdup("request.headers[x]");
		rule->when[0].header = strdup("x");
		strs1(&rule->when[0].values, "v");
		strs1(&rule->when[0].not_values, "nv");
	}
	resources_free(r);
}

/* Policies whose targetRefs name a Gateway: judged on requests through it,
 * by the client's address (no principal: clients come from outside the
 * mesh), and never on a Service or at L4. */
void test_authz_request_gateway(void)
{
	struct sl_model *m = build(
		AP("shop", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: edge}]\n"
			   "  action: DENY\n  rules:\n  - to: [{operation: {paths: [\"/admin*\"]}}]\n")
		"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: office, namespace: shop}\n"
		"spec:\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: edge}]\n"
		"  rules:\n  - from: [{source: {remoteIpBlocks: [192.0.2.0/24]}}]\n"
		"    when: [{key: destination.ip, values: [10.99.0.1]}]\n---\n");
	struct sl_ip office, home, addr, other_addr;
	struct authz_peer from_office = { .ip = &office }, from_home = { .ip = &home };
	struct authz_request get = { .method = "GET", .path = "/shop", .host = "shop.example.com" };
	struct authz_request admin = { .method = "GET", .path = "/admin/x", .host = "shop.example.com" };
	struct authz_decision d;

	if (!ASSERT_OK_PTR(m, "model"))
		return;
	sl_ip_parse("192.0.2.7", &office);
	sl_ip_parse("198.51.100.7", &home);
	sl_ip_parse("10.99.0.1", &addr);
	sl_ip_parse("10.99.0.2", &other_addr);
	ASSERT_TRUE(authz_targets_gateway(&m->res->authzs[0], "shop", "edge"), "targets shop/edge");
	ASSERT_FALSE(authz_targets_gateway(&m->res->authzs[0], "misc", "edge"), "not another namespace's");
	ASSERT_FALSE(authz_targets_service(&m->res->authzs[0], find_svc(m, "websvc")), "not a Service");

	authz_decide_gateway_request(m, "shop", "edge", &addr, 80, &from_office, &get, &d);
	ASSERT_TRUE(d.allow, d.reason);
	authz_decide_gateway_request(m, "shop", "edge", &addr, 80, &from_home, &get, &d);
	ASSERT_FALSE(d.allow, "not from the office: no ALLOW rule matches");
	ASSERT_HAS(d.reason, "no rule of 1 ALLOW policy matched", "reason");
	authz_decide_gateway_request(m, "shop", "edge", &addr, 80, &from_office, &admin, &d);
	ASSERT_FALSE(d.allow, "DENY /admin* first");
	ASSERT_HAS(d.reason, "denied by shop/p-shop rules[0]", "the DENY policy decides");
	authz_decide_gateway_request(m, "shop", "edge", &other_addr, 80, &from_office, &get, &d);
	ASSERT_FALSE(d.allow, "destination.ip: another address of the Gateway");
	authz_decide_gateway_request(m, "shop", "other", &addr, 80, &from_home, &admin, &d);
	ASSERT_TRUE(d.allow, "another Gateway: no policy");
	ASSERT_HAS(d.reason, "no policy targets Gateway shop/other", "reason names the Gateway");
	model_free(m);
}
