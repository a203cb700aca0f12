/* SPDX-License-Identifier: Apache-2.0 */
/* gateway.h - north-south: the listeners of Gateways of class `sluice` on
 * this node. HTTP and HTTPS listeners are served by the waypoint's HTTP
 * proxy; TCP listeners send each connection to their TCPRoute's backend,
 * TLS Passthrough listeners to the TLSRoute the ClientHello's server name
 * picks, both as an untouched byte relay (waypoint_relay); TLS Terminate
 * listeners finish the handshake here (the server name picks certificate
 * and TLSRoute, else the listener's TCPRoute) and relay the decrypted
 * bytes (waypoint_relay_xprt).
 *
 * What is served, and every Gateway and listener condition, comes from
 * gwplan.c. A Gateway's addresses are its spec.addresses, else one address
 * per family from the pools given with --gateway-addresses (the Gateways of
 * class sluice in namespace/name order take the pool's .1, .2, ...; every
 * agent computes the same), else every address of the node. Pool and spec
 * addresses are put on the node's loopback, as a LoadBalancer address
 * announced by the node, and removed when no Gateway uses them. One
 * listening socket per address and port; a connection's Host (HTTP) or SNI
 * (HTTPS, TLS) picks the listener, the listener's routes (route.c) pick the
 * backend, and the request or connection goes to a ready endpoint from the
 * node's own address: in plain TCP (gateways_connect) unless the endpoint
 * is an enrolled pod, which the agent's wiring (mesh.c) reaches through the
 * tunnel with the Gateway's identity (gateways_source gives the address).
 *
 * Single-threaded: on the loop's thread.
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "resources.h"
#include "route.h"
#include "tunnel.h"

struct loop;
struct waypoint;
struct sl_model;
struct gateways;

#define GATEWAY_POOLS_MAX 2
#define GATEWAY_RETRY_MS 3000

struct gateway_opts {
	struct sl_cidr pools[GATEWAY_POOLS_MAX];	/* at most one per family */
	size_t n_pools;
	const char *address_dev;	/* where pool addresses go; NULL: "lo" */
	/* A listener's node-local state changed without a gateways_apply (a
	 * port that was in use could be listened on at last); NULL: none. */
	void (*changed)(void *arg);
	void *changed_arg;
};

int gateways_new(struct gateways **out, struct loop *l, struct waypoint *wp, const struct gateway_opts *o);
/* Closes the listeners and removes the addresses it added. NULL-safe. */
void gateways_free(struct gateways *g);
/* Stop accepting on every listener; the sockets stay open (handed over to a
 * successor agent, which accepts on them now). */
void gateways_stop_accepting(struct gateways *g);

/* Make the listeners those of m's Gateways (class controllerName
 * ROUTE_CONTROLLER_NAME), routed by rt (built from m; both stay in force
 * until the next call). Problems (a port in use, an address that cannot be
 * added) are logged and shown by gateways_json; the rest goes on. A socket
 * that cannot listen is tried again every GATEWAY_RETRY_MS until it does
 * (the port freed heals without a configuration change). */
void gateways_apply(struct gateways *g, const struct sl_model *m, const struct route_table *rt);

/* A non-blocking TCP connection (connecting) from the node to dst, a
 * backend endpoint, from the node's own address: the source the node's
 * routes give toward dst, unless that is one of the Gateway addresses put
 * on the node (as for a pod on this node whose route names no source; a
 * backend would see the Gateway's address as its client), then the first
 * global address of the node's first up, non-loopback interface (as
 * kube-proxy and Istio gateways show backends the node's IP). g NULL: the
 * kernel's choice. An fd, or -errno. */
int gateways_connect(struct gateways *g, const struct tunnel_addr *dst);

/* The source gateways_connect binds toward dst (the node's address), for an
 * upstream the tunnel opens instead (a Gateway's identity into the mesh).
 * false when it would leave the choice to the kernel (or g is NULL). */
bool gateways_source(struct gateways *g, const struct tunnel_addr *dst, struct sl_ip *src);

/* For the waypoint: the listener a request on local (the accepted socket's
 * address) with Host host (port ignored; NULL: none) belongs to, and its
 * routes. NULL when no listener of that address and port takes host.
 * *https says whether it is a TLS listener. */
const struct route_set *gateways_routes(const struct gateways *g, const struct route_table *rt,
					const struct tunnel_addr *local, const char *host, bool *https);

/* The Gateway (namespace, name) whose HTTP or HTTPS listener a request to
 * local with Host host belongs to; false when none takes it. */
bool gateways_gateway_of(const struct gateways *g, const struct tunnel_addr *local, const char *host,
			 const char **ns, const char **name);

/* This node's failing listeners, as a node report carries them (kreport.h):
 * {"ns/name": {"listener": {"reason": "PortUnavailable" or
 * "InvalidCertificateRef", "message"}}}, only listeners the plan serves
 * that have no listening socket here, or no certificate that loads. New
 * reference ({} when g is NULL or all is well). */
json_t *gateways_node_failures(const struct gateways *g);

/* {"gateways": [...]}: each Gateway's addresses and conditions (Accepted,
 * Programmed), each listener's conditions (Accepted, ResolvedRefs,
 * Conflicted, Programmed with reasons), attachedRoutes, supported kinds,
 * sockets, and "problem": why it is not served ("" when it is). */
json_t *gateways_json(const struct gateways *g);

#endif
