/* SPDX-License-Identifier: Apache-2.0 */
/* authz.h - Istio's security.istio.io AuthorizationPolicy and
 * PeerAuthentication at L4, decided by the agent on a connection it is about
 * to deliver to a pod of its node, with the peer's verified identity.
 *
 * Order as Istio's: CUSTOM (no external authorizer here: denies), then DENY
 * (any matching rule denies), then ALLOW (with none applying, allowed; else a
 * rule must match; an empty rule matches everything, a policy without rules
 * matches nothing). A rule with L7 fields (methods, paths, hosts, request
 * principals, L7 `when` keys) cannot be judged at L4: it never matches in an
 * ALLOW policy and always matches in a DENY policy, as ztunnel does, so what
 * cannot be enforced denies.
 *
 * Which workloads a policy applies to: selector (its namespace, or every
 * namespace for the root namespace), none (the whole namespace, or the mesh
 * for the root namespace), or targetRefs of kind Service (the Service's pods).
 *
 * The waypoint judges policies that target a Service on each HTTP request,
 * L7 fields included: authz_decide_request below.
 */
#ifndef SL_AUTHZ_H
#define SL_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define AUTHZ_ROOT_NS "istio-system"	/* Istio's default root namespace */

/* Who is connecting. */
struct authz_peer {
	const struct sl_ip *ip;		/* the connection's source address */
	const char *principal;		/* "cluster.local/ns/x/sa/y"; NULL for plaintext */
	const char *ns;			/* the principal's namespace; NULL for plaintext */
};

struct authz_decision {
	bool allow;
	bool audit;			/* an AUDIT policy matched (log it) */
	const struct sl_authz *by;	/* the deciding policy, or NULL */
	int rule;			/* its rule index, -1 when none */
	char reason[256];
};

void authz_decide(const struct sl_model *m, const char *root_ns, const struct sl_pod *dst, const struct sl_ip *dst_ip,
		  uint16_t port, const struct authz_peer *peer, struct authz_decision *out);

/* The mTLS mode PeerAuthentication sets for dst's port (workload, port,
 * namespace, mesh; first match in config order wins at a level), and which
 * policy set it (NULL: the default, PERMISSIVE). */
enum sl_mtls_mode authz_mtls_mode(const struct sl_model *m, const char *root_ns, const struct sl_pod *dst,
				  uint16_t port, const struct sl_peerauthn **by);

/* "spiffe://td/ns/x/sa/y" -> principal "td/ns/x/sa/y" and namespace "x" into
 * the buffers. false when it is not such an ID. */
bool authz_principal(const char *spiffe_id, char *principal, size_t plen, char *ns, size_t nslen);

const char *authz_action_str(enum sl_authz_action a);

/* Does the policy apply to pod? (for status) */
bool authz_applies(const struct sl_model *m, const char *root_ns, const struct sl_authz *a, const struct sl_pod *pod);

/* ---- L7: the waypoint, per HTTP request to a Service ----
 *
 * As in Istio ambient, a policy whose targetRefs name a Service (kind
 * Service, group "" or absent, the policy's namespace) is enforced by the
 * waypoint on each request to that Service. Selector and namespace-wide
 * policies stay with the destination's L4 check (authz_decide). */

struct authz_header {
	const char *name, *value;
};

struct authz_request {
	const char *method;
	const char *path;		/* as sent, without the query (a '?' ends it anyway) */
	const char *host;		/* Host / :authority as sent, port included; NULL: none */
	const struct authz_header *headers;
	size_t n_headers;
};

/* The policies that target Service svc decided for one HTTP request through
 * the waypoint, in authz_decide's order (CUSTOM denies, then DENY, then
 * ALLOW; AUDIT marks). L4 fields as there: from.source principals,
 * namespaces, ipBlocks and remoteIpBlocks on peer; to.operation ports on
 * port, the Service port; when keys source.*, remote.ip, destination.port,
 * destination.ip (the Service's cluster IPs).
 *
 * L7 fields on req, with Istio's string forms ("abc", "abc*" prefix, "*abc"
 * suffix, "*" any):
 * - methods: case-sensitive ("*": any);
 * - paths: on the path normalized as Istio's default (BASE) does
 *   (authz_normalize_path), case-sensitive ("*": any non-empty); a path
 *   with {*} (one segment) or {**} (any number of segments) is a template;
 * - hosts: case-insensitive, on Host as sent and on Host without its port,
 *   so "web.shop" and "web.shop:80" both match "web.shop:80";
 * - when request.headers[name]: the header (name case-insensitive; repeated
 *   headers joined with ","), absent matches no value ("*": present).
 * What the waypoint cannot check, requestPrincipals/notRequestPrincipals
 * (sluice has no JWT authentication) and other when keys (request.auth.*,
 * connection.sni, ...), counts as matching in a DENY policy and as not
 * matching in ALLOW and AUDIT ones, as ztunnel does at L4: a DENY rule that
 * names them denies whatever its other fields select, an ALLOW rule never
 * allows through them. A path that cannot be normalized (%00) is denied
 * when a policy targets svc. svc, peer (with its ip) and req are required;
 * req->path is the raw path: it is normalized here, once. */
void authz_decide_request(const struct sl_model *m, const char *root_ns, const struct sl_service *svc, uint16_t port,
			  const struct authz_peer *peer, const struct authz_request *req, struct authz_decision *out);

/* Does a targetRefs policy name Service svc? */
bool authz_targets_service(const struct sl_authz *a, const struct sl_service *svc);

/* The same for a request through a Gateway of class sluice: the policies
 * whose targetRefs name the Gateway (kind Gateway, group
 * gateway.networking.k8s.io, the policy's namespace), as Istio applies them
 * at its gateways. addr and port: where the request arrived (destination.ip,
 * destination.port, to.operation ports); peer: the client's address (no
 * principal: Gateway clients come from outside the mesh). */
void authz_decide_gateway_request(const struct sl_model *m, const char *gw_ns, const char *gw_name,
				  const struct sl_ip *addr, uint16_t port, const struct authz_peer *peer,
				  const struct authz_request *req, struct authz_decision *out);

/* Does a targetRefs policy name Gateway ns/name? */
bool authz_targets_gateway(const struct sl_authz *a, const char *ns, const char *name);

/* Istio's default path normalization (BASE), the form policies are matched
 * on and the one Istio forwards: the query cut; %XX of an unreserved
 * character decoded (once); '\' made '/'; "." and ".." segments resolved
 * (RFC 3986). false when the path holds %00 (Istio answers 400) or out (at
 * least strlen(path) + 1 bytes are always enough) is too small. */
bool authz_normalize_path(const char *path, char *out, size_t outlen);

#endif
