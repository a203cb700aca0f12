/* SPDX-License-Identifier: Apache-2.0 */
/* tunnel.h - the agent's per-pod data plane: everything that happens on the
 * listeners an enrolled pod gets inside its network namespace.
 *
 *   15001 outbound  accept; original destination from the directory; then
 *                   - enrolled pod on another node: HBONE (HTTP/2 CONNECT over
 *                     mTLS, HBONE.md) from the pod's IP to dst-ip:15008, pooled;
 *                   - enrolled pod on this node: delivered directly, no TLS;
 *                   - anything else: passthrough, plain TCP from the pod's IP.
 *   15006 inbound   plaintext, transparently steered: delivered to the
 *                   accepted socket's local address from the client's IP.
 *   15008 HBONE     TLS server with the pod's identity, HTTP/2 server; each
 *                   CONNECT stream is checked, authorized and delivered to the
 *                   pod from the client's IP.
 *
 * Virtual clients (a Gateway's proxy: an identity without a pod) make
 * outbound connections as a pod would, from an address of the node.
 *
 * One struct tunnel serves every pod of the node from the agent's loop;
 * sockets keep their netns, so nothing here enters a namespace: sockets in a
 * pod's netns come from ops->pod_socket. Single-threaded: call everything from
 * the loop's thread.
 *
 * Relaying keeps bounded buffers per direction and backpressure both ways
 * (HTTP/2 DATA is consumed, and the window reopened, only as it is written to
 * the socket); FIN <-> END_STREAM (half-close) and RST <-> RST_STREAM.
 *
 * Ports are host byte order; addresses are struct sl_ip (network order).
 */
#ifndef SL_TUNNEL_H
#define SL_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/uio.h>

#include "resources.h"

struct loop;
struct tunnel;
struct ssl_st;				/* OpenSSL's SSL */
struct ssl_ctx_st;			/* OpenSSL's SSL_CTX */

#define TUNNEL_NAME_MAX	254		/* a Kubernetes name (DNS-1123 subdomain) + NUL */
#define TUNNEL_ID_MAX	512		/* spiffe://<trust domain>/ns/<ns>/sa/<sa> + NUL */

struct tunnel_addr {
	struct sl_ip ip;
	uint16_t port;			/* host byte order */
};

/* A workload as the directory knows it (ops->lookup fills it). Empty strings
 * mean unknown. */
struct tunnel_workload {
	char ns[64];
	char name[TUNNEL_NAME_MAX];		/* the pod */
	char workload[TUNNEL_NAME_MAX];		/* canonical (a Deployment...); "": name */
	char service_account[TUNNEL_NAME_MAX];
	char service[TUNNEL_NAME_MAX];		/* service FQDN when the directory knows it */
	bool enrolled;				/* in the mesh */
	bool local;				/* on this node */
};

/* What a listener fd is for. */
enum tunnel_role {
	TUNNEL_LISTEN_OUTBOUND,			/* 15001, loopback */
	TUNNEL_LISTEN_INBOUND,			/* 15006, transparent */
	TUNNEL_LISTEN_HBONE,			/* 15008 */
	TUNNEL_LISTEN_ROLE_COUNT,
};

struct tunnel_listen {
	enum tunnel_role role;
	int fd;				/* listening, in the pod's netns; borrowed */
};

#define TUNNEL_POD_LISTENERS 8

/* An enrolled pod of this node. Everything is copied by tunnel_pod_add. */
struct tunnel_pod {
	const char *ns, *name, *service_account;
	const char *workload;		/* canonical workload name; NULL: name */
	const char *workload_kind;	/* "deployment", ...; NULL: "pod" (for baggage) */
	/* Canonical service and revision; NULL: the workload, "latest". */
	const char *app, *version;
	const struct sl_ip *ips;	/* at most one per family */
	size_t n_ips;
	struct tunnel_listen listeners[TUNNEL_POD_LISTENERS];
	size_t n_listeners;
};

enum tunnel_dir {
	TUNNEL_DIR_OUTBOUND,		/* accepted on a pod's 15001 */
	TUNNEL_DIR_INBOUND,		/* accepted on a pod's 15006 or 15008 */
	TUNNEL_DIR_COUNT,
};

enum tunnel_path {
	TUNNEL_PATH_HBONE,		/* mTLS + HTTP/2 CONNECT */
	TUNNEL_PATH_DIRECT,		/* both pods on this node, no TLS */
	TUNNEL_PATH_PASSTHROUGH,	/* destination outside the mesh */
	TUNNEL_PATH_PLAINTEXT,		/* inbound on 15006 */
	TUNNEL_PATH_COUNT,
};

/* The pod a connection on 15001 came from (for ops->l7_accept). */
struct tunnel_client {
	const char *ns, *name, *service_account;
	const char *identity;		/* its SPIFFE ID */
	const struct sl_ip *ips;	/* at most one per family */
	size_t n_ips;
	uint16_t port;			/* the client's TCP port */
	/* A Gateway listener's client (ns ""): the Gateway whose listener took
	 * the connection (for HTTP, the current request's); NULL: not known. */
	const char *gw_ns, *gw_name;
};

/* What ops->authorize decides on: a connection about to be delivered to a
 * pod of this node (HBONE inbound, direct, plaintext inbound). */
struct tunnel_authz {
	enum tunnel_path path;
	const char *src_identity;	/* verified SPIFFE ID; NULL for plaintext */
	const struct tunnel_addr *src;	/* client IP (and port when known, else 0) */
	const struct tunnel_addr *dst;	/* the destination pod's IP and port */
	const char *dst_ns, *dst_name, *dst_service_account;
};

/* The directory and identity, as callbacks; arg is tunnel_new's arg. Required
 * unless marked optional. Strings passed in are valid during the call only. */
struct tunnel_ops {
	/* The original destination of a connection accepted on 15001: 0 or
	 * -errno. When the application asked for a Service VIP, *vip is that
	 * VIP:port (vip->ip.family stays 0 otherwise). */
	int (*orig_dst)(void *arg, int fd, struct tunnel_addr *dst, struct tunnel_addr *vip);
	/* The workload holding ip: 0 and *wl filled, or -ENOENT. */
	int (*lookup)(void *arg, const struct sl_ip *ip, struct tunnel_workload *wl);
	/* A non-blocking TCP socket of family (AF_INET/AF_INET6) in the netns of
	 * the local pod holding ip: an fd, or -errno. The tunnel sets marks,
	 * transparency and binds it. */
	int (*pod_socket)(void *arg, const struct sl_ip *ip, int family);
	/* TLS contexts for a pod's identity (cert, key, roots, HBONE.md's TLS
	 * rules), asked for every new connection (so rotation is seen): a new
	 * reference, which the tunnel releases with SSL_CTX_free() once the
	 * connection's SSL holds its own (as identity_*_ctx() give). NULL when
	 * the identity has no certificate yet. */
	struct ssl_ctx_st *(*client_ctx)(void *arg, const char *ns, const char *sa);
	struct ssl_ctx_st *(*server_ctx)(void *arg, const char *ns, const char *sa);
	/* After a handshake: the peer's SPIFFE ID into out (out_len bytes), and
	 * when expected is not NULL, that it is expected. 0, or -EACCES when the
	 * peer is not acceptable. */
	int (*peer_check)(void *arg, struct ssl_st *ssl, const char *expected, char *out,
			  size_t out_len);
	/* Optional: 0 to allow, or the HTTP status to deny with (401, 403); for
	 * plaintext and direct paths a deny is a TCP RST. NULL: allow all. */
	int (*authorize)(void *arg, const struct tunnel_authz *a);
	/* Optional, all four or none: a direct connection (both apps on this
	 * node, nothing left to do but relay) may be short-circuited in the
	 * kernel, so that its bytes go app to app. shortcut_open: a handle, or
	 * NULL to keep relaying; relayed[d] is what the tunnel delivered so far
	 * in direction d (0: client -> server). shortcut_relayed: it delivered
	 * more (a total); nonzero: that direction stays with the tunnel.
	 * shortcut_bytes: bytes that went app to app so far, each way.
	 * shortcut_close: the last count; the handle is gone. */
	void *(*shortcut_open)(void *arg, int client_fd, int server_fd, const uint64_t relayed[2]);
	int (*shortcut_relayed)(void *arg, void *sc, int client_fd, int server_fd, int d, uint64_t relayed);
	void (*shortcut_bytes)(void *arg, void *sc, uint64_t direct[2]);
	void (*shortcut_close)(void *arg, void *sc, uint64_t direct[2]);
	/* Optional: a connection to a Service VIP, accepted on 15001. Return
	 * true to take fd over (the waypoint, for Services with L7 routes);
	 * false leaves it to the tunnel, bound for dst as usual. */
	bool (*l7_accept)(void *arg, int fd, const struct tunnel_client *cl, const struct tunnel_addr *vip);
};

struct tunnel_opts {
	const char *trust_domain;	/* NULL: "cluster.local" */
	const char *cluster;		/* baggage k8s.cluster.name; NULL: "Kubernetes" */
	uint16_t hbone_port;		/* port of peers' HBONE listeners; 0: 15008 */
	unsigned int connect_timeout_ms;	/* TCP+TLS setup, delivery connects; 0: 10000 */
	unsigned int response_timeout_ms;	/* CONNECT sent until its status; 0: 30000 */
	unsigned int pool_idle_ms;		/* idle HBONE connection closed; 0: 300000 */
	unsigned int max_streams_per_conn;	/* streams one HBONE connection carries; 0: 100 */
	unsigned int keepalive_ms;		/* PING after this much silence; 0: 10000 */
	unsigned int keepalive_timeout_ms;	/* no PING answer this long: dead; 0: 20000 */
	unsigned int drain_ms;		/* tunnel_pod_remove: grace for open ones; 0: 5000 */
	/* HBONE connections accepted from one address (a peer pod or node):
	 * those still in their TLS handshake (each costs a signature, so an
	 * unauthenticated flood from one address is cut here; 0: 64), and all
	 * (a peer needs one per 100 streams; 0: 1024). Over either, the new
	 * one is reset at once. */
	unsigned int max_handshakes_per_peer;
	unsigned int max_hbone_per_peer;
	size_t buf_size;		/* relay buffer per direction; 0: 128 KiB */
	bool no_splice;			/* fd <-> fd relays: read/write, not splice */
};

int tunnel_new(struct tunnel **out, struct loop *loop, const struct tunnel_ops *ops, void *arg,
	       const struct tunnel_opts *opts);
/* Resets every connection, stops every listener; call it before
 * loop_free(). NULL-safe. */
void tunnel_free(struct tunnel *t);

/* Start serving a pod: accept on its listeners. The listener fds stay the
 * caller's (the pods module's): the tunnel never closes them, and stops using
 * them in tunnel_pod_remove, which must come before they are closed.
 * 0, -EEXIST (same ns/name), -EINVAL, -ENOMEM, or -errno from epoll. */
int tunnel_pod_add(struct tunnel *t, const struct tunnel_pod *pod);
/* Stop serving a pod: its listeners stop at once. Its open connections
 * (either end in the pod) and HBONE connections (GOAWAY) may finish within
 * opts.drain_ms; what is left then is reset. 0 or -ENOENT. */
int tunnel_pod_remove(struct tunnel *t, const char *ns, const char *name);
/* An agent handing over to its successor (handover.h): stop accepting on every
 * pod's listeners (they stay open: the successor accepts on them), GOAWAY
 * every HBONE connection (the peers' next streams go to new connections, so
 * to the successor) and give what is open ms to end; the rest is reset then. */
void tunnel_drain(struct tunnel *t, unsigned int ms);
/* No connection and no HBONE session left (closed ones may still be freed). */
bool tunnel_idle(const struct tunnel *t);
/* What keeps it from idle, for a draining agent's log: connections by state
 * and sessions by side and state ("2 relay, 1 request; sessions: 1 client
 * ready (3 streams)"). Truncated to size. */
void tunnel_describe_open(const struct tunnel *t, char *buf, size_t size);

/* Upgrades: a plaintext relay (both ends sockets: direct, passthrough,
 * inbound plaintext) goes to the successor as its two sockets, the bytes it
 * holds each way and a description (meta, JSON). */
struct tunnel_relay {
	char *meta;
	int fd[2];			/* end 0 (the client's side), end 1 */
	struct iovec data[2];		/* held bytes of direction d: end d -> end !d */
};
/* send() each relay that can go: one moving bytes both ways, not a virtual
 * client's. A relay send took (0) is let go without a reset (the successor
 * holds its sockets); one it failed is reset; the rest drain here. Returns
 * how many went. */
size_t tunnel_export(struct tunnel *t, int (*send)(void *arg, const struct tunnel_relay *r), void *arg);
/* Carry on a relay tunnel_export sent: 0, or -errno. Either way the fds are
 * the tunnel's (reset on failure). */
int tunnel_adopt(struct tunnel *t, const char *meta, const int fd[2], const struct iovec data[2]);

/* A connection from the local pod ns/name to dst, as if the pod had
 * connected there itself (HBONE, direct or passthrough, with its identity and
 * policy): the caller's end of a non-blocking socketpair, or -errno (-ENOENT:
 * no such pod). For the waypoint's requests to their backends. */
int tunnel_outbound_open(struct tunnel *t, const char *ns, const char *name,
			 const struct tunnel_addr *dst);

/* A connection for the waypoint that needs no relay: for an enrolled pod of
 * this node, the delivery socket itself (in that pod's netns from the
 * client pod's address, policy checked as for the direct path); for a
 * destination outside the mesh, the passthrough socket (from the client
 * pod's netns). Non-blocking, connecting. -EXDEV when dst is an enrolled pod
 * of another node (HBONE: use tunnel_outbound_open), -EACCES when policy
 * refuses, or -errno. */
int tunnel_direct_open(struct tunnel *t, const char *ns, const char *name, const struct tunnel_addr *dst);

/* ---- virtual clients ----
 *
 * A mesh client of this node that is not a pod: a Gateway's proxy, which the
 * agent runs in its own netns. It has an identity (ns, service_account) and
 * a certificate (ops->client_ctx), but no listeners and no address of its
 * own: each connection names its source (an address of the node). Its
 * connections to enrolled pods are the mesh's, as a pod's would be (HBONE
 * pooled per identity and addresses, policy with its identity); the rest is
 * the caller's. Names are their own: a virtual client and a pod may share
 * ns/name. */
struct tunnel_vclient {
	const char *ns, *name, *service_account;
	const char *workload, *workload_kind;	/* baggage and reports; NULL: name, "pod" */
};

/* 0, -EEXIST, -EINVAL or -ENOMEM. Everything is copied. */
int tunnel_vclient_add(struct tunnel *t, const struct tunnel_vclient *v);
/* Its HBONE connections (GOAWAY) and open connections may finish within
 * opts.drain_ms, as a pod's. 0 or -ENOENT. */
int tunnel_vclient_remove(struct tunnel *t, const char *ns, const char *name);
/* cb for each virtual client (it may remove that one); stops at the first
 * nonzero return and returns it. */
int tunnel_vclient_names(struct tunnel *t, int (*cb)(void *arg, const char *ns, const char *name), void *arg);

/* A connection of virtual client ns/name from src (an address of the node,
 * dst's family) to dst:
 *   - an enrolled pod of another node: HBONE from src (a socket of the
 *     agent's netns) with the client's identity; returns the caller's end of
 *     a non-blocking socketpair, as tunnel_outbound_open;
 *   - an enrolled pod of this node: policy checked with the client's identity
 *     as for the direct path (-EACCES when refused), then the delivery
 *     socket itself, as tunnel_direct_open (non-blocking, connecting);
 *   - anything else: -ESRCH, nothing of the mesh's: the caller connects on
 *     its own (plain TCP).
 * -ENOENT: no such virtual client; -EAFNOSUPPORT: src and dst families differ. */
int tunnel_vclient_open(struct tunnel *t, const char *ns, const char *name, const struct sl_ip *src,
			const struct tunnel_addr *dst);

/* ---- observability ---- */

/* One proxied connection, for `sluicectl connections`. Strings are "" when
 * unknown and valid during the callback only. */
struct tunnel_conn_info {
	uint64_t id;
	enum tunnel_dir dir;
	enum tunnel_path path;
	const char *state;		/* "connecting", "relay", ... */
	struct tunnel_addr src;		/* client (the source pod's IP for outbound) */
	struct tunnel_addr dst;		/* original destination */
	const char *src_ns, *src_name, *src_workload, *src_identity;
	const char *dst_ns, *dst_name, *dst_workload, *dst_identity, *dst_service;
	uint64_t bytes_to_dst;		/* client -> server, delivered (also app to app) */
	uint64_t bytes_to_src;		/* server -> client, delivered (also app to app) */
	bool shortcut;			/* the kernel carries it app to app */
	uint64_t buffered;		/* bytes held by the tunnel for it, both ways */
	uint64_t start_ms;		/* wall clock, ms since the epoch */
};

/* Calls cb for each open connection, oldest first; stops at the first
 * nonzero return and returns it (0 when all were seen). cb must not call
 * back into the tunnel. */
int tunnel_conn_foreach(struct tunnel *t,
			int (*cb)(void *arg, const struct tunnel_conn_info *c), void *arg);

struct tunnel_stats {
	uint64_t conns_open;		/* proxied connections now */
	uint64_t conns_total;		/* since start */
	uint64_t conns_failed;		/* closed by an error or a refusal */
	uint64_t conns_closing;		/* closed, their HTTP/2 stream still ending */
	uint64_t hbone_clients;		/* HBONE connections we opened, now */
	uint64_t hbone_clients_total;
	uint64_t hbone_servers;		/* HBONE connections we accepted, now */
	uint64_t hbone_servers_total;
	uint64_t hbone_setup_failed;	/* TCP, TLS, identity or timeout failures */
	uint64_t streams_open;		/* streams on HBONE connections, now */
	uint64_t accept_errors;
	uint64_t hbone_peer_limited;	/* HBONE connections reset: over a per-peer limit */
};
void tunnel_stats_get(const struct tunnel *t, struct tunnel_stats *st);

/* What the tunnel's objects hold in the agent's heap now, counted on request
 * (a walk over connections and sessions). Bytes are allocation sizes, not
 * pages touched: an allocated buffer whose tail was never written costs less
 * resident memory than it says. */
struct tunnel_mem {
	uint64_t conns;			/* proxied connections (closing ones included) */
	uint64_t conn_bytes;		/* their structs, request scratch and names */
	uint64_t relay_bufs;		/* relay buffers held by connections */
	uint64_t relay_buf_bytes;	/* ... their sizes (h2 -> fd ones may have grown) */
	uint64_t spare_bufs;		/* relay buffers kept for reuse */
	uint64_t spare_buf_bytes;
	uint64_t spare_max;		/* the most kept */
	uint64_t pipes;			/* splice pipes: kernel memory, not the agent's heap */
	uint64_t pipe_bytes;		/* ... their capacity */
	uint64_t sessions;		/* HBONE (TLS + HTTP/2) connections, both roles */
	uint64_t session_bytes;		/* their structs and output buffers */
	uint64_t session_out_bytes;	/* ... of which output buffers */
};
void tunnel_mem_get(const struct tunnel *t, struct tunnel_mem *m);
/* Free what idle time shows is not needed: spare relay buffers that stayed
 * unused since the last call (a few are kept), and the output areas of
 * HBONE sessions with nothing to send. For a periodic timer; returns the
 * bytes freed (the caller may then give the heap back: malloc_trim). */
size_t tunnel_mem_trim(struct tunnel *t);

/* Prometheus text: Istio's istio_tcp_connections_opened_total,
 * istio_tcp_connections_closed_total, istio_tcp_sent_bytes_total and
 * istio_tcp_received_bytes_total, one series per (reporter, source and
 * destination workload/namespace/principal, destination service, security
 * policy). Bytes count live, as they move. 0 or -EIO. */
int tunnel_metrics_write(struct tunnel *t, FILE *f);

const char *tunnel_dir_str(enum tunnel_dir d);
const char *tunnel_path_str(enum tunnel_path p);

#endif
