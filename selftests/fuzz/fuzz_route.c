// SPDX-License-Identifier: Apache-2.0
/* fuzz_route.c - libFuzzer target: route_decide() on hostile requests.
 *
 * A fixed route table (mesh producer and consumer routes, a GRPCRoute and a
 * Gateway listener, with every match type and filter) is built once; each
 * input becomes one request:
 *
 *   byte 0      which route set (mesh port / client namespace / listener,
 *               HTTP, TLS Passthrough or TCP)
 *   bytes 1-4   rnd (weights, mirrors)
 *   bytes 5-6   the port the client sent to
 *   the rest    lines: method, path[?query], host, scheme, then "name: value"
 *               header lines (NUL bytes and all; lengths are explicit)
 *
 * The decision must hold the contract (bounded buffers NUL-terminated, counts
 * within their arrays, only the statuses route.c gives, edits with names) and
 * be the same when made twice; so must the TCPRoute and TLSRoute decision
 * on the same set (the Host taken as the SNI). A violation aborts.
 *
 * fuzz-srcs: user/config.c user/model.c user/route.c user/lib/diag.c user/lib/log.c user/lib/loop.c
 * fuzz-libs: -lyaml -lpthread
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "model.h"
#include "route.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HDRS	32
#define MAX_FIELD	8192

static const char routes_yaml[] =
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: team, labels: {gw: 'yes'}}\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
	"spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}, {name: grpc, port: 9000}]}\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: v2, namespace: shop}\n"
	"spec: {clusterIP: 10.96.0.11, ports: [{port: 80}]}\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: store, namespace: db}\n"
	"spec: {clusterIP: 10.96.0.12, ports: [{port: 5432}]}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
	"metadata: {name: web, namespace: shop, creationTimestamp: '2024-01-01T00:00:00Z'}\n"
	"spec:\n"
	"  parentRefs: [{group: '', kind: Service, name: web, port: 80}]\n"
	"  rules:\n"
	"  - name: exact\n"
	"    matches: [{path: {type: Exact, value: /exact}, method: GET}]\n"
	"    filters:\n"
	"    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: '1'}], "
	"add: [{name: x-b, value: '2'}], remove: [x-c]}}\n"
	"    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-r, value: '1'}]}}\n"
	"    backendRefs: [{name: web, port: 80, weight: 3}, {name: v2, port: 80, weight: 1}, "
	"{name: gone, port: 80, weight: 1}, {name: v2, port: 80, weight: 0}]\n"
	"  - name: regex\n"
	"    matches:\n"
	"    - path: {type: RegularExpression, value: '/v[0-9]+/(a|b)*'}\n"
	"      headers: [{name: x-user, type: RegularExpression, value: '[a-z]+[0-9]?'}, {name: X-Env, value: prod}]\n"
	"      queryParams: [{name: q, value: 'x y'}, {name: n, type: RegularExpression, value: '[0-9]{1,3}'}]\n"
	"    backendRefs:\n"
	"    - name: v2\n"
	"      port: 80\n"
	"      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-v2, value: 'y'}]}}]\n"
	"  - name: rewrite\n"
	"    matches: [{path: {type: PathPrefix, value: /api/}}]\n"
	"    filters:\n"
	"    - {type: URLRewrite, urlRewrite: {hostname: internal.example, "
	"path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}\n"
	"    - {type: RequestMirror, requestMirror: {backendRef: {name: v2, port: 80}, percent: 30}}\n"
	"    - {type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}, "
	"fraction: {numerator: 1, denominator: 3}}}\n"
	"    backendRefs: [{name: web, port: 80}]\n"
	"  - name: redirect\n"
	"    matches: [{path: {type: PathPrefix, value: /old}}]\n"
	"    filters:\n"
	"    - {type: RequestRedirect, requestRedirect: {scheme: https, hostname: new.example, "
	"path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 308}}\n"
	"  - name: redirect2\n"
	"    matches: [{path: {type: PathPrefix, value: /r2}}]\n"
	"    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /x}}}]\n"
	"  - name: cors\n"
	"    matches: [{path: {type: PathPrefix, value: /cors}}]\n"
	"    filters:\n"
	"    - type: CORS\n"
	"      cors: {allowOrigins: ['https://www.foo.com', 'https://*.bar.com', 'http://[::1]:8080'], "
	"allowMethods: [GET, '*'], allowHeaders: ['*'], exposeHeaders: [x-e], allowCredentials: true, maxAge: 60}\n"
	"    backendRefs: [{name: web, port: 80}]\n"
	"  - name: db\n"
	"    matches: [{path: {type: PathPrefix, value: /db}}]\n"
	"    backendRefs: [{name: store, namespace: db, port: 5432}]\n"
	"  - name: ext\n"
	"    matches: [{path: {type: PathPrefix, value: /ext}}]\n"
	"    filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Auth, name: a}}]\n"
	"    backendRefs: [{name: web, port: 80}]\n"
	"  - name: nobackends\n"
	"    matches: [{path: {type: PathPrefix, value: /none}}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
	"metadata: {name: consumer, namespace: client, creationTimestamp: '2023-01-01T00:00:00Z'}\n"
	"spec:\n"
	"  parentRefs: [{group: '', kind: Service, name: web, namespace: shop}]\n"
	"  rules:\n"
	"  - {matches: [{path: {value: /}}], backendRefs: [{name: web, namespace: shop, port: 80}]}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n"
	"metadata: {name: grpc, namespace: shop}\n"
	"spec:\n"
	"  parentRefs: [{group: '', kind: Service, name: web, port: 9000}]\n"
	"  rules:\n"
	"  - matches: [{method: {service: shop.Cart, method: Add}}, "
	"{method: {type: RegularExpression, service: 'shop\\.v[0-9]+\\..*'}, headers: [{name: x-t, value: a}]}]\n"
	"    backendRefs: [{name: web, port: 9000}]\n"
	"  - backendRefs: [{name: v2, port: 80}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\n"
	"metadata: {name: shop, namespace: db}\n"
	"spec: {from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}], "
	"to: [{group: '', kind: Service}]}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: sluice}\n"
	"spec: {controllerName: sluice.io/gateway-controller}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
	"spec:\n  gatewayClassName: sluice\n  listeners:\n"
	"  - {name: http, protocol: HTTP, port: 80, hostname: '*.example.com', "
	"allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {gw: 'yes'}}}}}\n"
	"  - {name: tls, protocol: TLS, port: 443, hostname: '*.example.com', tls: {mode: Passthrough}, "
	"allowedRoutes: {namespaces: {from: All}}}\n"
	"  - {name: tcp, protocol: TCP, port: 5432, allowedRoutes: {namespaces: {from: All}}}\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: team}\n"
	"spec: {clusterIP: 10.96.0.20, ports: [{port: 8080}]}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
	"metadata: {name: exact, namespace: team, creationTimestamp: '2024-05-01T00:00:00Z'}\n"
	"spec:\n  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [app.example.com, other.example.net]\n"
	"  rules: [{backendRefs: [{name: app, port: 8080}]}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
	"metadata: {name: wild, namespace: team}\n"
	"spec:\n  parentRefs: [{name: gw, namespace: infra, sectionName: http}]\n  hostnames: ['*.example.com']\n"
	"  rules: [{matches: [{path: {type: Exact, value: /w}}], backendRefs: [{name: app, port: 8080}]}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\n"
	"metadata: {name: tls-exact, namespace: team, creationTimestamp: '2024-05-01T00:00:00Z'}\n"
	"spec:\n  parentRefs: [{name: gw, namespace: infra, sectionName: tls}]\n  hostnames: [app.example.com]\n"
	"  rules: [{backendRefs: [{name: app, port: 8080, weight: 3}, {name: gone, port: 8080}]}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\n"
	"metadata: {name: tls-wild, namespace: team}\n"
	"spec:\n  parentRefs: [{name: gw, namespace: infra, port: 443}]\n  hostnames: ['*.example.com', '*.b.example.com']\n"
	"  rules: [{backendRefs: [{name: app, port: 8080}]}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n"
	"metadata: {name: tcp, namespace: team}\n"
	"spec:\n  parentRefs: [{name: gw, namespace: infra, sectionName: tcp}]\n"
	"  rules: [{backendRefs: [{name: app, port: 8080}, {name: store, namespace: db, port: 5432, weight: 2}]}]\n";

static struct sl_model *model;
static struct route_table *table;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sl_resources *r = config_resources_new();
	struct diags errs = { 0 };

	(void)argc;
	(void)argv;
	if (!r || config_decode_buf(r, "routes.yaml", routes_yaml, sizeof(routes_yaml) - 1, &errs) ||
	    model_build(r, "node-1", &model, &errs) || route_table_build(model, &table, &errs)) {
		for (size_t i = 0; i < errs.n; i++) {
			char buf[512];

			fprintf(stderr, "fuzz_route: %s\n", diag_str(&errs.v[i], buf, sizeof(buf)));
		}
		abort();		/* the fixed set must build: a broken harness */
	}
	diags_clear(&errs);
	return 0;
}

static const struct route_set *pick_set(uint8_t sel)
{
	switch (sel % 8) {
	case 6:
		return route_for_listener(table, "infra", "gw", "tls");
	case 7:
		return route_for_listener(table, "infra", "gw", "tcp");
	case 0:
		return route_for_service(table, "shop", "shop", "web", 80);
	case 1:
		return route_for_service(table, "client", "shop", "web", 80);
	case 2:
		return route_for_service(table, "other", "shop", "web", 9000);
	case 3:
		return route_for_listener(table, "infra", "gw", "http");
	case 4:
		return route_for_service(table, "client", "shop", "web", 9000);	/* NULL: consumer-only */
	default:
		return NULL;
	}
}

/* Is s NUL-terminated within n bytes? */
static void terminated(const char *s, size_t n, const char *what)
{
	if (!memchr(s, '\0', n)) {
		fprintf(stderr, "fuzz_route: %s not NUL-terminated\n", what);
		abort();
	}
}

static void check(const struct route_request *req, const struct route_decision *d)
{
	const struct route_hdr_edit *v[2] = { d->req_edits, d->resp_edits };
	size_t n[2] = { d->n_req_edits, d->n_resp_edits };

	terminated(d->path, sizeof(d->path), "path");
	terminated(d->host, sizeof(d->host), "host");
	terminated(d->location, sizeof(d->location), "location");
	terminated(d->why, sizeof(d->why), "why");
	if (n[0] > ROUTE_MAX_EDITS || n[1] > ROUTE_MAX_EDITS || d->n_mirrors > ROUTE_MAX_MIRRORS ||
	    d->strbuf_used > sizeof(d->strbuf) || !d->reason)
		abort();
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < n[k]; i++) {
			if (!v[k][i].name || (v[k][i].op != ROUTE_HDR_REMOVE && !v[k][i].value))
				abort();
			for (const char *c = v[k][i].value; c && *c; c++)
				if ((unsigned char)*c < 0x20 || *c == 0x7f)
					abort();	/* would inject into the message */
		}
	for (size_t i = 0; i < d->n_mirrors; i++)
		if (!d->mirrors[i].ns || !d->mirrors[i].name || !d->mirrors[i].port)
			abort();
	switch (d->action) {
	case ROUTE_FORWARD:
		/* A path is passed on as it came ("*", say) unless rewritten; a
		 * rewrite never makes an absolute path relative. */
		if (!d->route || !d->backend.ns || !d->backend.name || !d->backend.port ||
		    (req->path[0] == '/' && d->path[0] != '/'))
			abort();
		break;
	case ROUTE_REDIRECT:
		if (!d->route || (d->status != 301 && d->status != 302 && d->status != 303 && d->status != 307 &&
				  d->status != 308) ||
		    (strncmp(d->location, "http://", 7) && strncmp(d->location, "https://", 8)))
			abort();
		for (const char *c = d->location; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				abort();	/* would inject into the response */
		break;
	case ROUTE_RESPOND:
		if (d->status != 200 && d->status != 400 && d->status != 404 && d->status != 500)
			abort();
		if ((d->status == 404) != !d->route)
			abort();
		break;
	default:
		abort();
	}
}

/* TCPRoute and TLSRoute decisions on the same set, with the Host as SNI:
 * a backend when forwarded, a reason when not, the same twice. */
static void check_l4(const struct route_set *set, const char *sni, uint32_t rnd)
{
	static struct route_l4_decision e1, e2;

	for (int kind = SL_ROUTE_TCP; kind <= SL_ROUTE_TLS; kind++) {
		bool f1 = route_decide_l4(set, (enum sl_route_kind)kind, sni, rnd, &e1);
		bool f2 = route_decide_l4(set, (enum sl_route_kind)kind, sni, rnd, &e2);

		terminated(e1.why, sizeof(e1.why), "l4 why");
		if (f1 != e1.forward || f1 != f2 || e1.route != e2.route || !e1.reason ||
		    (f1 && (!e1.route || !e1.backend.ns || !e1.backend.name || !e1.backend.port || e1.reason[0])) ||
		    (!f1 && !e1.reason[0]))
			abort();
	}
}

/* The next '\n'-terminated field of [*p, end), copied NUL-terminated. */
static size_t field(const uint8_t **p, const uint8_t *end, char *buf, size_t cap)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = (size_t)((nl ? nl : end) - *p);

	if (n >= cap)
		n = cap - 1;
	memcpy(buf, *p, n);
	buf[n] = '\0';
	*p = nl ? nl + 1 : end;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct route_decision d1, d2;
	static char method[64], path[MAX_FIELD], host[512], scheme[16], lines[MAX_HDRS][MAX_FIELD];
	struct route_header hdrs[MAX_HDRS];
	struct route_request req = { 0 };
	const uint8_t *p = data, *end = data + size;
	const struct route_set *set;
	enum route_action a1, a2;
	uint32_t rnd;
	char *q;

	if (size < 7)
		return 0;
	set = pick_set(data[0]);
	rnd = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
	req.port = (uint16_t)(data[5] | data[6] << 8);
	p += 7;
	field(&p, end, method, sizeof(method));
	field(&p, end, path, sizeof(path));
	field(&p, end, host, sizeof(host));
	field(&p, end, scheme, sizeof(scheme));
	req.method = method;
	req.path = path;
	if ((q = strchr(path, '?'))) {
		*q = '\0';
		req.query = q + 1;
	}
	req.host = host[0] ? host : NULL;
	req.scheme = scheme;
	req.headers = hdrs;
	while (p < end && req.n_headers < MAX_HDRS) {
		char *line = lines[req.n_headers];
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		char *colon;

		/* Headers keep their NUL bytes: the lengths say where they end. */
		if (n >= MAX_FIELD)
			n = MAX_FIELD - 1;
		memcpy(line, p, n);
		p = nl ? nl + 1 : end;
		colon = memchr(line, ':', n);
		hdrs[req.n_headers++] = colon ? (struct route_header){ line, (size_t)(colon - line), colon + 1,
								      n - (size_t)(colon - line) - 1 }
					      : (struct route_header){ line, n, NULL, 0 };
	}
	a1 = route_decide(set, &req, rnd, &d1);
	check(&req, &d1);
	check_l4(set, req.host, rnd);
	a2 = route_decide(set, &req, rnd, &d2);
	if (a1 != a2 || d1.status != d2.status || d1.route != d2.route || d1.rule != d2.rule ||
	    strcmp(d1.path, d2.path) || strcmp(d1.location, d2.location) || d1.n_req_edits != d2.n_req_edits ||
	    d1.n_resp_edits != d2.n_resp_edits || d1.n_mirrors != d2.n_mirrors) {
		fprintf(stderr, "fuzz_route: two decisions differ\n");
		abort();
	}
	return 0;
}
