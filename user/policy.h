/* SPDX-License-Identifier: Apache-2.0 */
/* policy.h - Kubernetes NetworkPolicy: decided per the spec (policy_decide,
 * for `sluicectl policy check`), and compiled into the kernel's tables for the
 * local pods of one node (policy_compile -> sl_polid/polep/polrule_v1).
 *
 * Compilation: every address a policy peer can name (pod IPs, ipBlock CIDRs
 * and their excepts) is put in a class with every other address that all
 * peers treat alike (for egress named ports, the port number the pod gives
 * the name is part of the class); a class is an identity. An isolated local
 * pod's rules become entries {endpoint, direction, protocol, identity, port
 * prefix}. The kernel then decides with two LPM lookups whatever the number
 * of rules, and policy_lookup() decides the same from the same tables (the
 * agent uses it for traffic that reaches it through the tunnel).
 *
 * Identities, endpoint ids and counter slots come from a registry that lives
 * as long as the agent, so a recompile changes only what changed.
 */
#ifndef SL_POLICY_H
#define SL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/abi.h>

#include "diag.h"
#include "model.h"

struct policy_registry;

/* Which local pods the kernel polices. */
enum policy_scope {
	POLICY_SCOPE_ENROLLED = 0,	/* pods in the mesh (default) */
	POLICY_SCOPE_ALL,		/* every pod of the node */
	POLICY_SCOPE_NONE,		/* nothing: --policy-scope none */
};

/* The compiled tables, each sorted by key (memcmp), ready for sync. */
struct policy_tables {
	struct sl_polid_key *id_keys;
	struct sl_polid_val *id_vals;
	size_t n_ids;
	struct sl_polep_key *ep_keys;
	struct sl_polep_val *ep_vals;
	size_t n_eps;
	struct sl_polrule_key *rule_keys;
	struct sl_polrule_val *rule_vals;
	size_t n_rules;
	/* The single-port and every-port entries again, for sl_polport_v1. */
	struct sl_polport_key *port_keys;
	struct sl_polrule_val *port_vals;
	size_t n_ports;
	/* The port-range blocks again, by endpoint, peer, direction and
	 * protocol, for sl_polrange_v1 (endpoints with SL_EP_F_RANGE_LIST). */
	struct sl_polrange_key *range_keys;
	struct sl_polrange_val *range_vals;
	size_t n_ranges;
};

/* A counter slot's meaning, for /policies and /metrics. */
struct policy_slot {
	uint32_t slot;
	char *name;			/* "ns/pol ingress[0]" or "isolated by ns/pol (egress)" */
	const char *ns, *policy;	/* into the registry: policy's namespace and name */
	int dir;			/* SL_DIR_* */
	int rule;			/* rule index, -1 for a default deny */
};

/* A local pod under policy, for /policies. */
struct policy_ep {
	const struct sl_pod *pod;
	uint32_t ep_id;
	uint32_t flags;			/* SL_EP_F_* */
	const struct sl_netpol *isolated_by[2];	/* first selecting policy by SL_DIR_*, or NULL */
	size_t n_selecting;
};

struct policy {
	const struct sl_model *model;	/* not owned; must outlive the policy */
	enum policy_scope scope;
	struct policy_tables t;
	struct policy_ep *eps;
	size_t n_eps;
	size_t n_identities;		/* classes, WORLD included */
	size_t n_policies;		/* NetworkPolicies in the model */
	size_t n_local_policies;	/* of them, selecting a local pod */
};

int policy_registry_new(struct policy_registry **out);
void policy_registry_free(struct policy_registry *r);	/* NULL-safe */
/* A slot's meaning; NULL when unknown. */
const struct policy_slot *policy_registry_slot(const struct policy_registry *r, uint32_t slot);
/* Every slot known, in slot order. */
size_t policy_registry_slots(const struct policy_registry *r, const struct policy_slot **out);

/* Compile m's NetworkPolicies for the pods of node (NULL: every pod counts as
 * local, for tests) in scope. 0 or -ENOMEM / -E2BIG (with a problem in errs). */
int policy_compile(const struct sl_model *m, const char *node, enum policy_scope scope,
		   struct policy_registry *reg, struct policy **out, struct diags *errs);
void policy_free(struct policy *p);		/* NULL-safe */

/* What the kernel would decide for a new connection or datagram of proto to
 * port, in dir as seen from local (a local pod's address): 1 allow, 0 deny,
 * -ENOENT when local is not policed here. *slot gets the deciding slot (0 when
 * not isolated). */
int policy_lookup(const struct policy *p, int dir, const struct sl_ip *local, const struct sl_ip *peer,
		  uint16_t port, uint8_t proto, uint32_t *slot);

/* A decision by the spec (not the compiled tables), with the reason Kubernetes
 * users would give: "not isolated", "isolated by ns/pol", "ns/pol ingress[1]",
 * "source is not a pod", "destination is not a pod", "loopback". */
struct policy_decision {
	bool allow;
	bool ingress_allow, egress_allow;
	char ingress[160], egress[160];
	const struct sl_pod *src_pod, *dst_pod;	/* NULL for addresses outside the cluster */
};

void policy_decide(const struct sl_model *m, const struct sl_ip *src, const struct sl_ip *dst, uint16_t port,
		   uint8_t proto, struct policy_decision *out);

/* "ns/pod" or an IP into *ip (the pod's address of family, or its first). */
int policy_resolve(const struct sl_model *m, const char *what, int family, struct sl_ip *ip);

#endif
