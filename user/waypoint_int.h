/* SPDX-License-Identifier: Apache-2.0 */
/* waypoint_int.h - what waypoint.c (HTTP/1.1), waypoint_h2.c (HTTP/2) and
 * waypoint_up2.c (HTTP/1.1 clients on HTTP/2 upstreams) share: the
 * connection and the waypoint, and the steps all take for a request
 * (decide, open an upstream, count). Not for other modules. */
#ifndef SL_WAYPOINT_INT_H
#define SL_WAYPOINT_INT_H

#include <http_parser.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "loop.h"
#include "route.h"
#include "waypoint.h"
#include "xprt.h"

struct wp_h2;
struct wp_up2;

#define IN_SIZE		WAYPOINT_HEAD_MAX	/* client / upstream input buffers */
#define OUT_SIZE	(2 * WAYPOINT_HEAD_MAX + 16384)	/* room for one rewritten head and more */
#define REASON_MAX	64
#define N_BUCKETS	14
#define WP_SPARE_BODIES	16
#define WP_SPARE_STREAMS	16
#define WP_SPARE_HVECS	32
#define WP_SPARE_BUFS	16	/* idle connections' buffer sets kept for the next */

/* A request's bytes kept to send again: its body up to this (Envoy's retry
 * buffer limit; past it the request goes once, its body streamed, not held) */
#define WP_RETRY_BODY_MAX	65536

/* A request's retry policy (HTTPRoute retry, else Istio's default) and the
 * backend it goes to again (a newly picked endpoint of it). */
struct wp_retry {
	unsigned int left, backoff_ms;	/* left 0: no retry */
	bool by_route;			/* the route's policy, not the default */
	uint16_t codes[16];
	size_t n_codes;
	char ns[64], name[254];
	uint16_t port;
};

struct hfield {
	uint32_t name, name_len, value, value_len;	/* offsets into the head's text */
};

/* A parsed head: request line parts or status, and its fields. */
struct head {
	char text[WAYPOINT_HEAD_MAX];
	size_t len;
	struct hfield f[WAYPOINT_HEADERS_MAX];
	size_t n;
	uint32_t url, url_len;
	char reason[REASON_MAX];
	bool in_value;			/* the last callback was a value */
	bool overflow;			/* too big or too many fields */
};

struct series {
	struct series *next;
	char *src_ns, *src_wl, *dst_svc, *dst_ns, *dst_wl;
	unsigned int code;
	uint64_t count;
	uint64_t buckets[N_BUCKETS];
	double sum_ms;
};

enum wstate {
	W_HEAD,				/* reading a request head */
	W_REQUEST,			/* request routed, its body (if any) moving */
	W_TUNNEL,			/* after 101: bytes both ways */
	W_TUNNEL_H2,			/* after 101 to an HTTP/2 upstream's extended
					 * CONNECT: bytes <-> its stream (waypoint_up2.c) */
	W_CLOSING,			/* flushing, then close */
	W_H2,				/* HTTP/2: waypoint_h2.c has it */
};

enum wend { C = 0, U = 1 };

struct wside {
	int fd;
	struct loop_io io;
	struct xprt x;			/* the client side: plain or TLS (owns fd) */
	bool use_x;
	uint32_t x_want;		/* what the transport waits for after -EAGAIN */
	struct buf in, out;		/* in: read from this side; out: to write to it */
	bool eof;			/* read side closed */
	bool rd;			/* may have bytes: epoll said so, or the last read
					 * stopped for want of room (epoll is level-triggered:
					 * a side not flagged is not read, no EAGAIN to learn) */
	bool hup;			/* epoll said HUP/ERR: it would say so forever, so unwatched */
	bool shut;			/* we sent FIN */
};

struct wconn {
	struct wconn *next, *prev;
	struct waypoint *w;
	struct wside s[2];		/* C: client, U: upstream (fd -1 when none) */
	enum wstate st;
	struct loop_timer timer;
	uint64_t due_ms;		/* the deadline timer is for (0: none); the timer
					 * may be armed earlier (see conn_deadline) */
	/* the client */
	char ns[64], name[TUNNEL_NAME_MAX], sa[TUNNEL_NAME_MAX], identity[TUNNEL_ID_MAX];
	struct sl_ip ips[2];
	size_t n_ips;
	uint16_t cport;
	struct tunnel_addr vip;
	/* a Gateway's client: the Gateway of its current request ("": not
	 * known), whose identity its upstreams into the mesh carry */
	char gw_ns[64], gw_name[TUNNEL_NAME_MAX];
	/* the request in flight */
	http_parser rp, sp;
	struct head *h;			/* scratch for the head being parsed */
	bool req_done, resp_started, resp_done, local_answer;
	bool hs_done;			/* TLS handshake (plain: at once) */
	bool https;
	bool req_keepalive, resp_keepalive, head_method;
	bool up_reusable;
	uint16_t status;
	uint64_t req_start_ms, deadline_ms;
	char up_key[320];		/* "ns/name:port@gw-ns/gw-name" of the upstream fd */
	struct waypoint_dst dst;
	char svc_name[320];		/* destination service FQDN, for metrics */
	char method[16], path[256];
	/* response header edits of the route in force, copied (the table may go) */
	char resp_edits[4096];
	size_t resp_edits_len;
	/* retries (HTTPRoute retry): a request whose body (if any) is all
	 * here and fits WP_RETRY_BODY_MAX is sent again on a connect failure
	 * or a listed status, to a new endpoint */
	char *retry_head;		/* the request as sent upstream, head and body
					 * (a small one kept allocated from request to
					 * request: no malloc per request) */
	size_t retry_len;		/* 0: no retry */
	size_t retry_hlen;		/* of which the head */
	size_t retry_cap;
	bool retry_h2;			/* retry_head is fields for waypoint_up2.c (its
					 * body decoded), not HTTP/1.1 bytes */
	struct wp_retry retry;
	struct loop_timer retry_timer;
	struct wp_h2 *h2;		/* W_H2 */
	struct wp_up2 *up2;		/* s[U] speaks HTTP/2 (appProtocol h2c): the
					 * HTTP/1.1 requests are translated */
	bool any_request;		/* an HTTP/1.1 request came: no HTTP/2 preface now */
	bool parked;			/* idle between requests: no buffers, no head
					 * scratch (conn_park); conn_step takes them again */
	bool head_timed;		/* this head's bytes started: its header deadline is set */
	bool ws;			/* a tunnel after an HTTP Upgrade (not a TCP
					 * relay): the idle timeout runs while no byte moves */
	uint64_t moved_ms;		/* ws: when bytes last moved */
};

/* An HTTP/1.1 connection's buffers and head scratch (about 260 KiB of
 * allocation), parked while it idles between requests. */
struct wp_bufs {
	char *in[2], *out[2];
	struct head *h;
};

/* A mirrored request: sent, its answer read and dropped. */
struct mirror {
	struct mirror *next, *prev;
	struct waypoint *w;
	int fd;
	struct loop_io io;
	struct loop_timer timer;
	char *out;
	size_t len, off;
};

/* Something freed while the loop's current batch of events may still name
 * its loop_io: freed once the batch is over (loop.h's rule). */
struct grave {
	void *p;
	void (*release)(void *p);
};

struct waypoint {
	struct loop *loop;
	struct grave *graves;
	size_t n_graves, cap_graves;
	struct loop_timer reaper;
	struct mirror *mirrors;
	struct waypoint_ops ops;
	void *arg;
	struct waypoint_opts o;
	struct wconn *conns;
	struct waypoint_stats st;
	bool draining;			/* waypoint_drain: no keep-alive from now on */
	struct series *series;
	struct series *series_hit;	/* the last one counted: the next request's, mostly */
	uint64_t rnd;
	uint32_t pick_seq;		/* route_pick_next()'s, for route_decide */
	/* access log lines, written together when the buffer fills, a second
	 * after the first line in it, and at waypoint_free (not a write(2) per
	 * request); NULL when the log is off */
	char *alog;
	size_t alog_len;
	struct loop_timer alog_timer;
	/* HTTP/2 body buffers (WP_BODY_BUF bytes) of finished streams, for the
	 * next ones */
	void *bodies[WP_SPARE_BODIES];
	size_t n_bodies;
	/* HTTP/2 streams and header lists of finished streams, for the next
	 * ones (4-5 KiB each: too big for malloc's per-thread cache, so each
	 * malloc and free went through glibc's bins, three a request) */
	void *spare_st[WP_SPARE_STREAMS];
	size_t n_spare_st;
	void *spare_hv[WP_SPARE_HVECS];
	size_t n_spare_hv;
	/* HTTP/2 upstream connections, shared by the client connections of one
	 * client (waypoint_h2.c); NULL until the first */
	struct h2pool *h2pool;
	/* buffer sets of HTTP/1.1 connections that went idle, for the next
	 * connection that needs one (no malloc per keep-alive request) */
	struct wp_bufs spare_bufs[WP_SPARE_BUFS];
	size_t n_spare_bufs;
};

/* A header list being rewritten: names and values by pointer and length
 * (into a head, an HTTP/2 header block, or route edits). */
#define HLIST_MAX (WAYPOINT_HEADERS_MAX + 2 * ROUTE_MAX_EDITS)

struct hlist {
	const char *name[HLIST_MAX];
	size_t name_len[HLIST_MAX];
	const char *value[HLIST_MAX];
	size_t value_len[HLIST_MAX];
	size_t n;
};

void wp_hlist_add(struct hlist *l, const char *name, const char *value);
void wp_hlist_set(struct hlist *l, const char *name, const char *value);
void wp_hlist_remove(struct hlist *l, const char *name);
/* One route edit, as route.h's route_hdr_op says. */
void wp_hlist_edit(struct hlist *l, enum route_hdr_op op, const char *name, const char *value);
/* Edits kept by a connection or stream (the route table may go meanwhile):
 * packed as "op\0name\0value\0"...; what fits in size. */
size_t wp_edits_pack(char *buf, size_t size, const struct route_hdr_edit *e, size_t n);
void wp_hlist_edits_packed(struct hlist *l, const char *p, size_t len);
/* Append "name: value\r\n"; false: no room (nothing written). */
bool wp_put_field(struct buf *b, const char *n, size_t nl, const char *v, size_t vl);
/* Append "name: value\r\n"... and the final CRLF. false: no room. */
bool wp_hlist_write(struct buf *b, const struct hlist *l);
/* Fields of one hop only (RFC 9113 8.2.2: Connection, Keep-Alive,
 * Proxy-Connection, Transfer-Encoding, Upgrade), and Host (:authority in
 * HTTP/2); TE with another value than "trailers", which HTTP/2 refuses. */
bool wp_hop_header(const char *n, size_t len);
bool wp_te_other(const char *n, size_t nl, const char *v, size_t vl);
/* Does a Connection field of l name field n (then it is of this hop only
 * too, RFC 9110 7.6.1)? wp_has_conn: has l a Connection field at all. */
bool wp_conn_named(const struct hlist *l, const char *n, size_t nl);
bool wp_has_conn(const struct hlist *l);
/* A body buffer of the size of an HTTP/2 window (kept spare by w). */
bool wp_body_alloc(struct waypoint *w, struct buf *b);
void wp_body_release(struct waypoint *w, struct buf *b);

/* ---- shared steps ---- */

uint32_t wp_rand(struct waypoint *w);
void wp_copy(char *dst, size_t len, const char *src);
/* Per-request strings without printf: n bytes of src (no NUL needed)
 * truncated to len - 1; the parts (NULL as "") concatenated, truncated; "%u"
 * of v into b (12 bytes), returning b. */
void wp_copy_n(char *dst, size_t len, const char *src, size_t n);
void wp_cat(char *dst, size_t len, const char *const *parts, size_t n);
char *wp_utoa(char *b, unsigned int v);
const char *wp_reason_of(unsigned int status);
void wp_client_of(const struct wconn *c, struct tunnel_client *cl);
/* What to do with one request: the route's decision (or the Service as it is
 * when it has no routes); sets c->svc_name. path without the query. */
void wp_decide(struct wconn *c, const char *method, const char *path, const char *query, const char *host,
	       const struct route_header *h, size_t n, struct route_decision *d);
/* One request finished: metrics and the access log. */
void wp_count(struct wconn *c, const struct waypoint_dst *dst, const char *svc_name, const char *method,
	      const char *path, unsigned int status, uint64_t start_ms);
void wp_conn_free(struct wconn *c, bool rst);
/* The decision's retry policy (or the default, Istio's: twice, 25 ms
 * apart, when the upstream fails before a response) into r. */
void wp_retry_set(struct wp_retry *r, const struct route_decision *d);
/* Is code one that r retries? */
bool wp_retry_code(const struct wp_retry *r, unsigned int code);
/* c's request may go again now: it was kept, all of it is here, a retry is
 * left and no response has started. */
bool wp_retry_can(const struct wconn *c);
/* Room for n bytes in c->retry_head; false when there is none. */
bool wp_retry_reserve(struct wconn *c, size_t n);
/* The connection's deadline is now + ms (c->due_ms; its timer then calls
 * conn_timer_cb, which hands a W_H2 connection to wp_h2_idle_timeout). */
void wp_conn_deadline(struct wconn *c, uint64_t now, unsigned int ms);
/* --http-idle-timeout and --http-header-timeout, defaults applied. */
unsigned int wp_idle_ms(const struct waypoint *w);
unsigned int wp_header_ms(const struct waypoint *w);
/* Free p with release (free when NULL) after the current batch of events:
 * for objects whose loop_io may still be in it. Their fds are closed and
 * their ios deleted already. */
void wp_bury(struct waypoint *w, void *p, void (*release)(void *p));
void wp_side_interest(struct wconn *c, enum wend e, bool want_read);
/* Read what fits into the side's input (sets eof); true when anything changed. */
bool wp_side_read(struct wconn *c, enum wend e);
/* Write the side's output; false on a write error. */
bool wp_side_flush(struct wconn *c, enum wend e);

/* waypoint_h2.c: the client's bytes in c->s[C].in start with the HTTP/2
 * preface: take the connection over. 0, or -errno (then close it). */
int wp_h2_start(struct wconn *c);
/* Its io: read, process, write. */
void wp_h2_step(struct wconn *c);
void wp_h2_free(struct wconn *c);
/* The shared HTTP/2 upstreams: draining, the idle ones close now and the
 * others with their last stream; at waypoint_free (after the connections),
 * all go. */
void wp_h2_pool_drain(struct waypoint *w);
void wp_h2_pool_free(struct waypoint *w);
/* The pool's share of waypoint_mem (its h2_upstream_* fields). */
void wp_h2_pool_mem(const struct waypoint *w, struct waypoint_mem *m);
/* The connection's deadline went by (it had no stream that long): GOAWAY
 * and close once it is out; the second time (the GOAWAY stuck), close. */
void wp_h2_idle_timeout(struct wconn *c);

/* waypoint_up2.c: the HTTP/1.1 request in c->h, sent as a stream on the
 * HTTP/2 connection s[U] (set up on its first request): method, path,
 * :authority and the fields of l (hop-by-hop ones left out); body: one
 * follows (wp_up2_body). 0 or -errno (then nothing was sent). */
int wp_up2_request(struct wconn *c, const char *method, const char *path, const char *authority,
		   const struct hlist *l, bool body, bool keep);
/* keep: the request's fields go to c->retry_head too (retry_len =
 * retry_hlen = their size; 0 when there is no room), its body after them
 * as it comes; wp_up2_resend sends that again as a stream of a new
 * connection (s[U], just opened). 0 or -errno. */
int wp_up2_resend(struct wconn *c);
/* Room for decoded request body bytes, and some of them (the request
 * parser's on_body). */
size_t wp_up2_body_room(struct wconn *c);
void wp_up2_body(struct wconn *c, const char *p, size_t n);
/* W_REQUEST: frames in from s[U].in, out to s[U].out; the response to
 * s[C].out in HTTP/1.1. 0, or a status to fail the request with (the
 * upstream broke before a response head), or WP_UP2_RETRY: the answer's
 * status is one the route retries, and a retry can start (wp_retry_can). */
#define WP_UP2_RETRY	1
unsigned int wp_up2_step(struct wconn *c);
/* Between requests: what the upstream says (SETTINGS, PING, GOAWAY); false
 * when it is no longer of use. */
bool wp_up2_idle(struct wconn *c);
/* May the next request to the same backend use it? */
bool wp_up2_reusable(const struct wconn *c);
void wp_up2_free(struct wconn *c);	/* NULL-safe (c->up2 NULL) */
/* An HTTP/1.1 Upgrade: websocket as an extended CONNECT stream (RFC 8441)
 * on s[U]: :protocol websocket, path, :authority and the fields of l;
 * key: the client's Sec-WebSocket-Key (for the 101's Accept). Sent once the
 * backend's SETTINGS allow it (else the answer is 503). 0 or -errno. */
int wp_up2_connect(struct wconn *c, const char *path, const char *authority, const struct hlist *l,
		   const char *key, size_t key_len);
/* The stream answered 2xx and its 101 went to the client: bytes both ways
 * now (W_TUNNEL_H2). */
bool wp_up2_upgraded(const struct wconn *c);
/* W_TUNNEL_H2: the client's bytes as DATA, the stream's DATA to the client,
 * ends of stream both ways; *moved grows by the bytes that moved. 0: on;
 * 1: both ends done (close); -1: reset. */
int wp_up2_relay(struct wconn *c, size_t *moved);

/* waypoint_ws.c: WebSocket handshake fields */
#define WP_WS_KEY_LEN		24
#define WP_WS_ACCEPT_LEN	28
bool wp_is_websocket(const char *v, size_t len);
void wp_ws_key(struct waypoint *w, char out[WP_WS_KEY_LEN + 1]);
void wp_ws_accept(const char *key, size_t len, char out[WP_WS_ACCEPT_LEN + 1]);

#endif
