/* SPDX-License-Identifier: Apache-2.0 */
/* gwplan.h - which listeners of the Gateways of class `sluice` a node
 * serves, and the conditions the Gateway API gives Gateways and listeners,
 * worked out from the model and the route table alone: no sockets, no
 * addresses added (gateway.c does that from the plan, and adds what only it
 * can tell: a port in use, a certificate that does not load).
 *
 * A Gateway's addresses: its spec.addresses (type IPAddress), else the i-th
 * address of each pool (the Gateways of class sluice in namespace/name order
 * take .1, .2, ...; every agent computes the same; a pool with no address
 * left: AddressNotAssigned), else none: every address of the node.
 *
 * A listener is served when it is Accepted and not Conflicted:
 *   Accepted      False UnsupportedProtocol (not HTTP, HTTPS, TLS or TCP),
 *                 UnsupportedValue (TLS without tls.mode, HTTPS not in
 *                 mode Terminate)
 *   ResolvedRefs  False InvalidRouteKinds (allowedRoutes.kinds names a kind
 *                 the protocol cannot carry), InvalidCertificateRef (HTTPS
 *                 and TLS Terminate: none, not a Secret, not found, no
 *                 tls.crt/tls.key),
 *                 RefNotPermitted (a Secret in another namespace that no
 *                 ReferenceGrant lets the Gateway use)
 *   Conflicted    True ProtocolConflict (another protocol on the same port),
 *                 HostnameConflict (same port and protocol, and the same
 *                 hostname; TCP listeners have none, so any two conflict):
 *                 among the listeners of one Gateway, and of Gateways whose
 *                 addresses meet (one on every address meets all). Every
 *                 listener of a conflict is left out, none wins.
 * HTTPS, TLS Passthrough and TLS Terminate listeners on one port conflict
 * too (ProtocolConflict): the spec lets an implementation call that
 * incompatible (GEP-2643 asks it of TLS modes mixed on a port when
 * TLSRouteModeMixed is not supported), and one socket would have to both
 * terminate and pass TLS through, or both speak HTTP and relay bytes.
 *
 * The plan points into the model (and is freed before it).
 */
#ifndef SL_GWPLAN_H
#define SL_GWPLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "resources.h"

struct sl_model;
struct route_table;

enum gw_proto {
	GW_PROTO_NONE = 0,		/* not served: protocol or mode unsupported */
	GW_PROTO_HTTP,
	GW_PROTO_HTTPS,			/* TLS terminated, then HTTP */
	GW_PROTO_TLS,			/* TLS Passthrough: TLSRoutes by SNI */
	GW_PROTO_TCP,			/* TCPRoute */
	GW_PROTO_TLS_TERMINATE,		/* TLS terminated, then TLSRoutes by SNI or
					 * the TCPRoute: the decrypted bytes relayed */
};

#define GWPLAN_IPS 4
#define GWPLAN_MSG 200

struct gwplan_listener {
	const struct sl_listener *l;
	enum gw_proto proto;
	bool accepted;
	const char *accepted_reason;	/* "Accepted", "UnsupportedProtocol", "UnsupportedValue" */
	bool resolved_refs;
	const char *refs_reason;	/* "ResolvedRefs", "InvalidRouteKinds", "InvalidCertificateRef",
					 * "RefNotPermitted" */
	bool conflicted;
	const char *conflict_reason;	/* "NoConflicts", "ProtocolConflict", "HostnameConflict" */
	bool serve;			/* accepted, not conflicted, its Gateway has addresses */
	const struct sl_secret *cert;	/* HTTPS, TLS Terminate: the first certificateRef that
					 * resolves; NULL: none */
	unsigned kinds;			/* ROUTE_KIND_BIT()s it takes (supportedKinds) */
	size_t attached;		/* attachedRoutes */
	char message[GWPLAN_MSG];	/* the first problem; "" when none */
};

struct gwplan_gateway {
	const struct sl_gateway *gw;
	struct sl_ip ips[GWPLAN_IPS];
	size_t n_ips;			/* 0 and !address_missing: every address of the node */
	bool address_missing;		/* a pool had no address left for it (AddressNotAssigned) */
	bool accepted;
	const char *accepted_reason;	/* "Accepted", "ListenersNotValid" */
	char message[GWPLAN_MSG];
	struct gwplan_listener *ls;	/* in spec order */
	size_t n_ls;
};

struct gwplan {
	struct gwplan_gateway *gws;	/* class sluice, by namespace/name */
	size_t n_gws;
};

/* Does the listener terminate TLS (HTTPS, TLS Terminate): certificates. */
bool gw_proto_terminates_tls(enum gw_proto p);
/* Does it speak TLS to the client (HTTPS, TLS in either mode)? Such
 * listeners share a port when their hostnames differ: the server name
 * picks (the spec's distinct listeners). */
bool gw_proto_tls(enum gw_proto p);

/* Plan for m's Gateways, with rt's attachments (may be NULL: none) and the
 * address pools (at most one per family). 0, or -ENOMEM. */
int gwplan_build(const struct sl_model *m, const struct route_table *rt, const struct sl_cidr *pools,
		 size_t n_pools, struct gwplan **out);
void gwplan_free(struct gwplan *p);	/* NULL-safe; reads nothing of the model */

const char *gw_proto_str(enum gw_proto p);

/* The i-th address a pool gives (.1 first), or false when it has none left
 * (IPv4 keeps its broadcast address out). */
bool gwplan_pool_addr(const struct sl_cidr *c, size_t i, struct sl_ip *out);

#endif
