/* SPDX-License-Identifier: Apache-2.0 */
/* route.h - Gateway API routing: which routes attach where, whether they are
 * accepted, and what one request does under them.
 *
 * route_table_build() resolves every HTTPRoute, GRPCRoute, TCPRoute and
 * TLSRoute of a model against its Services (mesh routes, GAMMA: parentRef
 * kind Service; HTTPRoute and GRPCRoute only) and Gateways (north-south), checks them (filters, regexes, backendRefs and
 * ReferenceGrants) and records per parentRef the conditions the spec names
 * (Accepted, ResolvedRefs with their reasons). The table is immutable and
 * pure: no I/O, so the agent and the unit tests use it the same way.
 *
 * route_decide() takes one request and a route set and returns what to do:
 * the rule that matched (the spec's precedence between rules and routes),
 * the backend picked by weight, and the request as it must leave (path, host
 * and headers after the filters), or a redirect, or a direct answer (404 no
 * match, 500 for a missing backend's share, CORS preflight).
 */
#ifndef SL_ROUTE_H
#define SL_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "resources.h"

struct sl_model;
struct route_table;
struct route_set;

/* The GatewayClass spec.controllerName whose Gateways sluice serves; routes
 * attached to Gateways of other classes are not ours (NoMatchingParent). */
#define ROUTE_CONTROLLER_NAME	"sluice.io/gateway-controller"

/* ---- building ---- */

/* Build from m (borrowed: the table points into m->res and must be freed
 * before m). Problems of single routes (bad regex, unknown filter, missing
 * backend) do not fail the build: they are that route's conditions. Returns 0,
 * or -ENOMEM. Notes for the log go to errs (may be NULL). */
int route_table_build(const struct sl_model *m, struct route_table **out, struct diags *errs);
void route_table_free(struct route_table *t);		/* NULL-safe */

/* The routes that apply to traffic for Service svc_ns/svc_name port `port`
 * (the Service port, not the target port) sent by a client in namespace
 * client_ns: the consumer routes of client_ns when it has any for that
 * Service, else the producer routes (in the Service's namespace). NULL when
 * none: the Service stays plain L4. */
const struct route_set *route_for_service(const struct route_table *t, const char *client_ns,
					  const char *svc_ns, const char *svc_name, uint16_t port);

/* True when some accepted route attaches to the Service at all (any port, any
 * client namespace): its VIP must reach the agent untranslated. */
bool route_service_has_l7(const struct route_table *t, const char *svc_ns, const char *svc_name);

/* The routes attached to a Gateway listener (gateway ns/name, listener
 * name), for requests whose Host matched the listener. NULL when none. */
const struct route_set *route_for_listener(const struct route_table *t, const char *gw_ns,
					   const char *gw_name, const char *listener);
/* The Gateway (ns, name) of a listener's set; false for a Service's (or s NULL). */
bool route_set_gateway(const struct route_set *s, const char **gw_ns, const char **gw_name);

/* ---- listeners ---- */

#define ROUTE_KIND_BIT(k)	(1u << (unsigned)(k))

/* "HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute". */
const char *route_kind_str(enum sl_route_kind k);

/* The route kinds (ROUTE_KIND_BIT) listener l takes: its allowedRoutes.kinds
 * that its protocol can carry, or without kinds the protocol's defaults
 * (HTTP, HTTPS: HTTPRoute and GRPCRoute; TLS: TLSRoute, and TCPRoute too in
 * mode Terminate; TCP: TCPRoute;
 * anything else none). *invalid: some kind listed is unknown or one the
 * protocol cannot carry (the listener's ResolvedRefs InvalidRouteKinds). */
unsigned route_listener_kinds(const struct sl_listener *l, bool *invalid);

/* attachedRoutes: how many routes are attached to the listener and accepted there. */
size_t route_listener_attached(const struct route_table *t, const char *gw_ns, const char *gw_name,
			       const char *listener);

/* ---- status ---- */

/* One parentRef of one route, with the spec's conditions. */
struct route_parent_status {
	const struct sl_route *route;
	size_t parent;			/* index into route->parents */
	bool accepted;
	const char *accepted_reason;	/* "Accepted", "NotAllowedByListeners", "NoMatchingParent",
					 * "NoMatchingListenerHostname", "UnsupportedValue" (also: a
					 * TLSRoute on a listener not TLS, a TCPRoute or
					 * TLSRoute with a Service parent), "IncompatibleFilters"
					 * (every rule invalid) */
	bool partially_invalid;		/* condition PartiallyInvalid: some rules were dropped */
	bool resolved_refs;
	const char *refs_reason;	/* "ResolvedRefs", "RefNotPermitted", "InvalidKind",
					 * "BackendNotFound", "UnsupportedProtocol" */
	char message[256];		/* human words for the first problem; "" when none */
};

/* Every route's parentRefs, in route order then parent order. */
size_t route_status_count(const struct route_table *t);
const struct route_parent_status *route_status_at(const struct route_table *t, size_t i);

/* ---- deciding ---- */

struct route_header {
	const char *name;		/* as received; matched case-insensitively */
	size_t name_len;
	const char *value;
	size_t value_len;
};

struct route_request {
	const char *method;		/* "GET", ... */
	const char *path;		/* the path only, without the query; not NULL */
	const char *query;		/* after '?', without it; NULL when none */
	const char *host;		/* Host or :authority, port included as sent; may be NULL */
	const char *scheme;		/* "http" or "https" (for redirects) */
	uint16_t port;			/* the port the client sent to (for redirects) */
	const struct route_header *headers;
	size_t n_headers;
};

enum route_action {
	ROUTE_FORWARD = 0,		/* send out.path/out.host/out headers to backend */
	ROUTE_REDIRECT,			/* answer status with Location: redirect_location */
	ROUTE_RESPOND,			/* answer status with no backend: 404 no match, 500 (a bad
					 * backend's share, ...), 200 CORS preflight, 400 a
					 * redirect the request's Host or path would corrupt */
};

#define ROUTE_MAX_MIRRORS 8

/* A header edit, in order: REMOVE drops every field of that name, SET
 * replaces (or adds) one field, ADD appends a field (the existing ones stay). */
enum route_hdr_op { ROUTE_HDR_SET = 0, ROUTE_HDR_ADD, ROUTE_HDR_REMOVE };

struct route_hdr_edit {
	enum route_hdr_op op;
	const char *name, *value;	/* value NULL for REMOVE; point into the table
					 * or the decision's strbuf */
};

#define ROUTE_MAX_EDITS 64

struct route_backend {
	const char *ns, *name;		/* the Service */
	uint16_t port;			/* the Service port */
};

struct route_decision {
	/* Small fields first: route_decision_reset() clears these and only the
	 * first byte of each string below (the decision is ~8 KiB, made per
	 * request). Arrays are valid up to their counts only. */
	enum route_action action;
	uint16_t status;		/* REDIRECT / RESPOND */
	const struct sl_route *route;	/* the matched route, NULL when none */
	size_t rule;			/* index into route->rules */
	/* FORWARD */
	struct route_backend backend;
	size_t n_req_edits;
	size_t n_resp_edits;
	size_t n_mirrors;
	uint32_t request_timeout_ms, backend_timeout_ms;	/* 0: none */
	uint32_t retry_attempts;	/* 0: no retry */
	uint32_t retry_backoff_ms;
	const uint16_t *retry_codes;
	size_t n_retry_codes;
	/* Why a RESPOND (static text: "no matching rule", "invalid backendRef",
	 * "CORS preflight", ...); "" otherwise. */
	const char *reason;
	size_t strbuf_used;
	char path[2048];		/* path after URLRewrite, with "?query" when there was one */
	char host[256];			/* Host after URLRewrite ("" keeps the request's) */
	struct route_hdr_edit req_edits[ROUTE_MAX_EDITS];
	struct route_hdr_edit resp_edits[ROUTE_MAX_EDITS];	/* also for REDIRECT/RESPOND */
	struct route_backend mirrors[ROUTE_MAX_MIRRORS];
	/* REDIRECT */
	char location[2560];
	/* Which rule, for logs and sluicectl route-check: "ns/name rule N" */
	char why[320];
	/* Storage for edit values made per request (an echoed Origin); edits may
	 * point here, so use them only while this decision lives. */
	char strbuf[2048];
};

/* An empty decision (FORWARD, nothing set), as route_decide starts from. */
void route_decision_reset(struct route_decision *d);

/* Decide for req under set. rnd is a 32-bit number spread evenly over its
 * range (weights and mirror percentages use it; tests pass fixed ones): a
 * route_pick_next() sequence, or random. Always fills out; returns
 * out->action. */
enum route_action route_decide(const struct route_set *set, const struct route_request *req,
			       uint32_t rnd, struct route_decision *out);

/* The next rnd for route_decide() or route_decide_l4() from *seq: steps of
 * 2^32/phi (a Weyl sequence) cover [0, 2^32) evenly in any run of draws, so
 * weighted backends get their shares within a few requests, where random
 * draws stray by about sqrt(n) (70/30 of 500: +-10, a 5% check failed 1 run
 * in 200). Start *seq anywhere. */
static inline uint32_t route_pick_next(uint32_t *seq)
{
	*seq += 0x9E3779B9u;
	return *seq;
}

/* TCPRoute / TLSRoute: where one connection goes. */
struct route_l4_decision {
	bool forward;
	struct route_backend backend;	/* forward: the Service picked by weight */
	const struct sl_route *route;	/* the route that took it, NULL when none */
	const char *reason;		/* not forward: static text ("no route", "invalid backendRef", ...) */
	char why[320];			/* "ns/name rule N", or "no route" */
};

/* Decide for a connection to a listener of set: kind SL_ROUTE_TCP (the
 * listener's TCPRoute) or SL_ROUTE_TLS (the TLSRoute whose hostnames take
 * sni best: exact, then the longest wildcard, then none; NULL sni: only
 * routes without hostnames). The backend by weight, where an unresolved
 * backend's share is refused, as the spec says. Returns out->forward. */
bool route_decide_l4(const struct route_set *set, enum sl_route_kind kind, const char *sni, uint32_t rnd,
		     struct route_l4_decision *out);

#endif
