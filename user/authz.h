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

#endif
