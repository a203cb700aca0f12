/* SPDX-License-Identifier: Apache-2.0 */
/* waypoint.h - the agent's L7 proxy for Services with Gateway API routes.
 *
 * The tunnel hands over connections an enrolled pod made to such a Service's
 * VIP (tunnel_ops.l7_accept). The waypoint reads the HTTP/1.1 requests on
 * them (http-parser: keep-alive, pipelining, chunked bodies, Expect:
 * 100-continue, Upgrade passed through), asks route.c what each request does,
 * and sends it on to the backend it names through a connection the pod would
 * have made itself (ops->upstream: HBONE, direct or passthrough with the
 * pod's identity and policy), or answers it (redirects, 404, 500, CORS).
 * Responses stream back with the route's response header edits. HTTP/2
 * clients (h2c prior knowledge, or h2 by ALPN on a TLS listener) are served
 * too; between HTTP/1.1 and HTTP/2 the waypoint translates, as the backend
 * port's appProtocol says (struct waypoint_dst's proto). A Gateway's
 * TCP, TLS Passthrough and TLS Terminate connections are only relayed
 * (waypoint_relay, waypoint_relay_xprt): the same connection object, in the
 * state an HTTP Upgrade ends in.
 *
 * Limits: a request or response head larger than WAYPOINT_HEAD_MAX, or with
 * more than WAYPOINT_HEADERS_MAX fields, is refused (431 / 502); a client
 * that sends no complete head within opts.header_timeout_ms, or stays idle
 * between requests longer than opts.idle_timeout_ms, is closed (HTTP/2: an
 * unfinished header block, or no stream, for as long: GOAWAY, then closed).
 *
 * Single-threaded: everything runs on the loop's thread.
 */
#ifndef SL_WAYPOINT_H
#define SL_WAYPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "route.h"
#include "tunnel.h"

struct loop;
struct waypoint;
struct xprt;

#define WAYPOINT_HEAD_MAX	32768	/* bytes of one request or response head */
#define WAYPOINT_HEADERS_MAX	100	/* header fields of one head */

/* What a backend Service port speaks, as its appProtocol says
 * (waypoint_proto_of). The waypoint translates a request to it when the
 * client speaks the other version of HTTP. */
enum waypoint_proto {
	WAYPOINT_PROTO_UNSET = 0,	/* not said: the client's own protocol (an
					 * HTTP/2 client by TLS ALPN: HTTP/1.1) */
	WAYPOINT_PROTO_HTTP1,		/* http, kubernetes.io/ws: HTTP/1.1 */
	WAYPOINT_PROTO_H2C,		/* kubernetes.io/h2c, http2, grpc, grpc-web:
					 * HTTP/2 with prior knowledge */
};

/* The protocol an appProtocol value (NULL: none) names; values the waypoint
 * has no use for (https, tcp, example.com/x) are UNSET. */
enum waypoint_proto waypoint_proto_of(const char *app_protocol);

/* The workload that answered, as ops->upstream found it. */
struct waypoint_dst {
	struct tunnel_addr addr;	/* the endpoint (port 0: not picked yet) */
	/* on entry to pick (or upstream picking): the endpoint a retry's last
	 * attempt failed on, picked only when no other is ready (as Istio's
	 * previous_hosts retry predicate); port 0: none */
	struct tunnel_addr avoid;
	char ns[64];
	char workload[TUNNEL_NAME_MAX];
	char pod[TUNNEL_NAME_MAX];
	enum waypoint_proto proto;	/* the Service port's appProtocol */
};

struct waypoint_ops {
	/* The routes for a request (Host host, NULL when none) of client cl
	 * to vip, and the Service the VIP belongs to (*svc, strings valid
	 * until the next configuration). For a Gateway listener's connection
	 * (cl->ns ""), vip is the listener's local address and port, and
	 * *https tells whether it is a TLS listener.
	 * NULL: no routes (any more); requests then go to *svc as they are,
	 * or get 503 when svc->name is NULL. Asked again for every request, so
	 * that a new configuration applies to open connections. */
	const struct route_set *(*routes)(void *arg, const struct tunnel_client *cl,
					  const struct tunnel_addr *vip, const char *host,
					  struct route_backend *svc, bool *https);
	/* A connection from client cl's pod to an endpoint of Service be: a
	 * non-blocking stream fd, or -errno (-ENOENT: no ready endpoint, 503).
	 * For a Gateway's client, cl->gw_ns/gw_name name the Gateway whose
	 * listener took the request ("" when none did).
	 * vip is what the client connected to (its family is preferred).
	 * *dst says which workload it reaches, and what the port speaks; when
	 * dst->addr.port is set on entry (by pick), it connects to that
	 * endpoint. */
	int (*upstream)(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
			const struct route_backend *be, struct waypoint_dst *dst);
	/* Optional: the endpoint of Service be a request of cl goes to, as
	 * upstream would pick it, without connecting (*dst as upstream fills
	 * it, and dst->addr). 0, or -ENOENT. With it, HTTP/2 requests are
	 * balanced per request over the endpoints, on connections pooled per
	 * client and endpoint; without, per connection. */
	int (*pick)(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
		    const struct route_backend *be, struct waypoint_dst *dst);
	/* Optional: may client cl make this request, to Service svc (the one a
	 * mesh client addressed), or through the Gateway listening on vip (a
	 * Gateway's client: cl->ns "", svc->name NULL)? 0, or the status to
	 * refuse it with (403). Asked before routing. path without the query. */
	int (*authorize)(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
			 const struct route_backend *svc, const char *method, const char *path, const char *host,
			 const struct route_header *h, size_t n);
};

struct waypoint_opts {
	unsigned int header_timeout_ms;	/* a request head must arrive within; 0: 10000 */
	unsigned int idle_timeout_ms;	/* keep-alive idle; 0: 60000 */
	unsigned int upstream_timeout_ms;	/* no response head within, and no route timeout: 0: 300000 */
	bool access_log;		/* one info line per request, written to stderr in
					 * batches: up to a second late (as Envoy's flush
					 * interval), at the latest at waypoint_free */
};

/* The Gateway API SupportedFeatures this waypoint passes the conformance
 * cases of (NULL-terminated). */
extern const char *const waypoint_features[];

int waypoint_new(struct waypoint **out, struct loop *loop, const struct waypoint_ops *ops, void *arg,
		 const struct waypoint_opts *opts);
/* Closes every connection. NULL-safe. */
void waypoint_free(struct waypoint *w);

/* Take over fd, a connection of client cl to the Service at vip (tunnel
 * l7_accept). Returns true; on failure fd is reset and closed and it still
 * returns true (it was taken). */
bool waypoint_accept(struct waypoint *w, int fd, const struct tunnel_client *cl,
		     const struct tunnel_addr *vip);

/* The same for a TLS listener: the waypoint terminates TLS with tls (a
 * server context; SSL_new takes its own reference). */
bool waypoint_accept_tls(struct waypoint *w, int fd, const struct tunnel_client *cl,
			 const struct tunnel_addr *vip, struct ssl_ctx_st *tls);

/* A connection of a Gateway's TCP or TLS Passthrough listener (cl, local:
 * as for waypoint_accept): its bytes go untouched to an endpoint of be
 * (ops->upstream) and back, each side's end of stream passed on to the
 * other (half-close), until both have ended. No deadline. fd is taken in
 * every case; false when there was no upstream (fd reset and closed). */
bool waypoint_relay(struct waypoint *w, int fd, const struct tunnel_client *cl, const struct tunnel_addr *local,
		    const struct route_backend *be);

/* The same over a client transport already set up: a TLS Terminate
 * listener's connection after its handshake (gateway.c), whose decrypted
 * bytes go to the backend and the backend's back encrypted; our end of
 * stream is a close_notify. x (the struct, its fd and SSL) is taken in
 * every case: moved into the connection, or closed with a reset (false). */
bool waypoint_relay_xprt(struct waypoint *w, struct xprt *x, const struct tunnel_client *cl,
			 const struct tunnel_addr *local, const struct route_backend *be);

struct waypoint_stats {
	uint64_t conns_open, conns_total;
	uint64_t requests_total;
	uint64_t responses_by_class[6];	/* index status / 100 (0: none sent) */
	uint64_t upstream_errors;	/* connect failures, resets before a response */
	uint64_t timeouts;		/* 504s and header/idle timeouts */
	uint64_t bad_requests;		/* 400s and 431s */
	uint64_t denied;		/* refused by AuthorizationPolicy (403) */
};
void waypoint_stats_get(const struct waypoint *w, struct waypoint_stats *st);
/* What the waypoint's connections hold in the agent's heap now, counted on
 * request (a walk over them). Bytes are allocation sizes, not pages touched. */
struct waypoint_mem {
	uint64_t conns;			/* client connections, HTTP/1.1 and HTTP/2 */
	uint64_t conns_h2;		/* ... of which HTTP/2 */
	uint64_t conn_bytes;		/* their structs, head scratch and retry copies */
	uint64_t buf_bytes;		/* client and upstream input and output buffers */
	uint64_t spare_bytes;		/* HTTP/2 bodies, streams and header lists kept for reuse */
	uint64_t h2_upstreams;		/* pooled HTTP/2 upstream connections (shared) */
	uint64_t h2_upstream_streams;	/* ... the streams they carry now */
	uint64_t h2_upstream_bytes;	/* ... their structs and output areas */
};
void waypoint_mem_get(const struct waypoint *w, struct waypoint_mem *m);
/* Handing over (handover.h): HTTP/1.1 connections between requests close now,
 * the others after their current response. */
void waypoint_drain(struct waypoint *w);
/* Write the access log lines held back (before an exit without _free). */
void waypoint_flush_log(struct waypoint *w);

/* Prometheus text: istio_requests_total and
 * istio_request_duration_milliseconds (histogram), reporter "waypoint", one
 * series per source workload, destination service, destination workload and
 * response code. 0 or -EIO. */
int waypoint_metrics_write(struct waypoint *w, FILE *f);

#endif
