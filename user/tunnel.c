// SPDX-License-Identifier: Apache-2.0
/* tunnel.c - see tunnel.h.
 *
 * Objects
 *   tpod     an enrolled pod: its names, IPs and listeners (struct tlisten).
 *   tconn    one proxied connection: two ends and a pipe per direction.
 *            end[0] is the client side (the app's socket on 15001/15006, or
 *            the HBONE stream on 15008), end[1] the server side (a stream on a
 *            pooled HBONE connection, or a socket we connected). p[0] carries
 *            client -> server bytes, p[1] server -> client.
 *   h2s      one TLS + HTTP/2 connection, client (pooled) or server.
 *
 * A tconn end is an fd (edge-triggered; readable/writable remembered until a
 * read or write says EAGAIN) or an HTTP/2 stream. Pipes:
 *   fd -> fd   splice() through a kernel pipe of opts.buf_size (or read/write
 *              through a struct buf when splice is off or no pipe could be made);
 *   fd -> h2   a struct buf of opts.buf_size; the stream's data provider takes
 *              from it (NGHTTP2_ERR_DEFERRED when empty, resumed on new bytes);
 *   h2 -> fd   written straight to the fd from the DATA callback when the fd
 *              takes it, else kept in a struct buf that grows as needed. DATA is
 *              consumed (the window reopened) only as it reaches the fd, so the
 *              stream window (4 MiB) bounds it, and the connection window
 *              (16 MiB) bounds all streams of a connection together.
 * A full pipe stops reading its source; that is the backpressure, both ways.
 * Buffers come from a per-tunnel free list when bytes arrive and go back when
 * the pipe drains, so idle connections hold no buffer; spares that stayed
 * unused for a period of the agent's memory timer are freed (tunnel_mem_trim).
 *
 * Connection states (enum conn_st):
 *   outbound HBONE     POOL_WAIT -> REQUEST -> RELAY
 *   direct, passthrough, inbound plaintext      CONNECTING -> RELAY
 *   inbound HBONE      REQUEST -> CONNECTING -> RELAY
 * and CLOSED, reached only through conn_close(), which every error path and
 * the normal end (both directions finished) share.
 *
 * Freeing. The loop may hold events for an object's second fd in the current
 * batch, and nghttp2 may hold a stream's user data until it reports the
 * stream closed. So closed objects go to a graveyard freed by a zero-delay
 * timer (after the batch), and a closed tconn whose stream nghttp2 still knows
 * stays (a "zombie", no fd, no buffer) until on_stream_close or the
 * connection's end. Work that must not run inside nghttp2 callbacks or inside
 * another object's callback (flushing a session, pumping a connection woken
 * by the other side) is queued on run queues served by the same timer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <sluice/abi.h>

#include "buf.h"
#include "hbone_hdr.h"
#include "heap.h"
#include "log.h"
#include "loop.h"
#include "ip.h"
#include "tunnel.h"
#include "xprt.h"

#define TUNNEL_BUF_DEFAULT	(128 * 1024)
#define TUNNEL_POOL_MAX		256		/* free relay buffers kept for reuse */
#define TUNNEL_POOL_KEEP	8		/* ... of which tunnel_mem_trim leaves at least */
#define PUMP_BUDGET		(1024 * 1024)	/* bytes one connection moves per turn */
#define ACCEPT_BUDGET		64		/* accepts per listener event */
#define ACCEPT_PAUSE_MS		100		/* after EMFILE/ENFILE/ENOBUFS/ENOMEM */
#define HBONE_REFUSED_RETRIES	3		/* a stream refused (GOAWAY race) goes again */

#define H2_STREAM_WINDOW	(4 << 20)	/* HBONE.md */
#define H2_CONN_WINDOW		(16 << 20)
#define H2_MAX_FRAME		(1 << 20)
#define H2_CLIENT_MAX_HDRS	(16 * 1024)
#define H2_SERVER_MAX_HDRS	(64 * 1024)
#define H2_SERVER_MAX_STREAMS	200
#define H2_DATA_FRAME		(64 * 1024)	/* DATA payload we send, if allowed */
#define H2_RX_SIZE		(64 * 1024)
#define H2_RX_BUDGET		(1024 * 1024)	/* bytes read per session per turn */
#define H2_OUT_HIGH		(128 * 1024)	/* stop serializing frames above this */
#define H2_OUT_MIN		(16 * 1024)	/* an output area's first size: PINGs, SETTINGS, a few frames */
/* h2 -> fd buffer cap: the stream window, plus a frame of slack. */
#define H2_DOWN_MAX		(H2_STREAM_WINDOW + H2_MAX_FRAME)

#define SERIES_BUCKETS		256

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- intrusive lists ---- */

struct tl {
	struct tl *next, *prev;
};

static inline void tl_init(struct tl *h)
{
	h->next = h;
	h->prev = h;
}

static inline bool tl_empty(const struct tl *h)
{
	return h->next == h;
}

static inline void tl_add_tail(struct tl *h, struct tl *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void tl_del(struct tl *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	tl_init(n);
}

/* ---- objects ---- */

struct tpod;
struct h2s;

struct tlisten {
	struct loop_io io;
	struct loop_timer pause;	/* accept paused after running out of fds */
	struct tpod *pod;
	enum tunnel_role role;
	int fd;
};

struct tpod {
	struct tl node;			/* tunnel.pods */
	struct tunnel *t;
	uint64_t id;
	char *ns, *name, *sa, *workload, *identity, *baggage;
	struct sl_ip ips[2];
	size_t n_ips;
	struct tlisten lis[TUNNEL_POD_LISTENERS];
	size_t n_lis;
	bool virt;			/* a virtual client (tunnel_vclient_add): no netns of its own */
};

/* One side's workload as reported: NULL members are unknown. */
struct tpeer {
	char *ns, *name, *workload, *identity;
};

struct series {
	struct series *next;		/* hash chain */
	uint32_t hash;
	bool dst_reporter;		/* reporter="destination" */
	bool mtls;
	char *lbl[7];			/* see series_labels */
	uint64_t opened, closed, sent, received;
};

enum end_kind { END_NONE, END_FD, END_H2 };

struct tend {
	struct tconn *c;		/* the connection this end belongs to */
	enum end_kind kind;
	/* END_FD */
	struct loop_io io;
	int fd;
	bool readable, writable;	/* edge-triggered readiness not yet used up */
	bool connecting;		/* non-blocking connect in progress */
	bool err;			/* EPOLLERR seen: check SO_ERROR */
	/* END_H2 */
	struct h2s *s;			/* NULL once detached */
	struct tl snode;		/* h2s.streams */
	int32_t sid;			/* 0 before the stream exists */
	bool deferred;			/* our data provider said DEFERRED */
	bool stream_closed;		/* nghttp2 reported the stream closed */
	bool rst_sent;
};

/* Bytes from end[d] to end[!d]. */
struct tpipe {
	struct buf b;
	int pfd[2];			/* splice pipe, -1 when none */
	size_t in_pipe, pipe_cap;
	bool nopipe;			/* splice pipe unavailable: use b */
	bool eof;			/* the source ended (FIN, END_STREAM) */
	bool done;			/* ... and that end was passed on */
	uint64_t bytes;			/* delivered to end[!d] */
};

enum conn_st {
	CONN_ST_CONNECTING,		/* TCP connect to the destination */
	CONN_ST_POOL_WAIT,		/* HBONE: the pooled connection is being set up */
	CONN_ST_REQUEST,		/* HBONE: CONNECT sent / received, no answer yet */
	CONN_ST_RELAY,			/* bytes flow */
	CONN_ST_CLOSED,
	CONN_ST_COUNT,
};

static const char *const conn_st_names[CONN_ST_COUNT] = {
	[CONN_ST_CONNECTING] = "connecting",
	[CONN_ST_POOL_WAIT] = "pool-wait",
	[CONN_ST_REQUEST] = "request",
	[CONN_ST_RELAY] = "relay",
	[CONN_ST_CLOSED] = "closed",
};

static const char *conn_st_str(enum conn_st st)
{
	return st < CONN_ST_COUNT ? conn_st_names[st] : "?";
}

/* Request headers the server keeps while a CONNECT is being received. */
struct hreq {
	char method[16];
	char authority[128];
	char forwarded[512];
	bool has_scheme, has_path, has_protocol;
	size_t size;
};

struct tconn {
	struct tl node;			/* tunnel.conns */
	struct tl wake;			/* tunnel.runq_c */
	struct tconn *dead_next;	/* tunnel.dead_c */
	struct tunnel *t;
	uint64_t id;
	enum conn_st st;
	enum tunnel_dir dir;
	enum tunnel_path path;
	struct tend end[2];
	struct tpipe p[2];
	int h2i;			/* index of the HTTP/2 end, -1 if none */
	struct loop_timer timer;	/* state deadline, pod drain */
	uint64_t drain_due;		/* loop ms; 0: not draining */
	uint64_t start_ms;		/* wall clock */
	uint64_t pod_ids[2];		/* local pods at either end, 0 none */
	struct tunnel_addr src, dst;
	struct tpeer peer[2];		/* source, destination */
	char *service;			/* destination service, if known */
	struct series *ser[2];		/* reporter source, destination */
	struct hreq *req;		/* server: while in REQUEST */
	uint32_t rst_code;		/* RST_STREAM code on abort */
	int status;			/* HTTP status received (client) or sent (server) */
	void *shortcut;			/* ops.shortcut_open's handle, or NULL */
	bool sc_off[2];			/* shortcut_relayed said no, per direction */
	bool zombie;			/* closed, waiting for nghttp2 to drop the stream */
	uint8_t retries;		/* REFUSED_STREAM retries used */
	bool need_retry;
	bool src_virt;			/* the source is a virtual client: its sockets are the agent's */
	bool exported;			/* handed to a successor agent: not closed, not counted */
};

enum h2s_st {
	H2S_ST_CONNECTING,		/* TCP connect (client) */
	H2S_ST_HANDSHAKE,		/* TLS */
	H2S_ST_READY,			/* HTTP/2 */
	H2S_ST_CLOSED,
	H2S_ST_COUNT,
};

static const char *const h2s_st_names[H2S_ST_COUNT] = {
	[H2S_ST_CONNECTING] = "connecting",
	[H2S_ST_HANDSHAKE] = "handshake",
	[H2S_ST_READY] = "ready",
	[H2S_ST_CLOSED] = "closed",
};

static const char *h2s_st_str(enum h2s_st st)
{
	return st < H2S_ST_COUNT ? h2s_st_names[st] : "?";
}

struct h2s {
	struct tl node;			/* tunnel.sessions */
	struct tl wake;			/* tunnel.runq_s */
	struct h2s *dead_next;		/* tunnel.dead_s */
	struct tunnel *t;
	uint64_t id;
	enum h2s_st st;
	bool server;
	bool goaway;			/* no new streams */
	bool dead;			/* fatal error inside nghttp2: close at top level */
	bool in_ng;			/* inside an nghttp2 call */
	struct xprt x;
	struct loop_io io;
	uint32_t rd_want, wr_want;	/* epoll events reads / writes wait for */
	struct loop_timer timer;	/* setup deadline, then idle close (client) */
	struct loop_timer ping;		/* keepalive */
	uint64_t drain_due;
	nghttp2_session *ng;
	struct buf out;			/* serialized frames not yet written */
	struct tl streams;		/* tend.snode */
	unsigned int n_streams;		/* live (not closed) streams */
	unsigned int n_total;		/* streams ever assigned */
	uint64_t last_rx_ms, ping_sent_ms;
	bool ping_out;
	/* client: the pool key */
	char *src_id, *dst_id;
	struct sl_ip src_ip, dst_ip;
	uint64_t pod_id;		/* the pod it serves */
	struct tpod *pod;		/* server: the pod (NULL once removed) */
	struct tunnel_addr local, remote;
	char peer_id[TUNNEL_ID_MAX];
};

struct tunnel {
	struct loop *loop;
	struct tunnel_ops ops;
	void *arg;
	struct tunnel_opts o;
	char *trust_domain, *cluster;
	struct tl pods, conns, sessions;
	struct tl runq_c, runq_s;
	struct tconn *dead_c;		/* closed, freed after the batch */
	struct h2s *dead_s;
	struct loop_timer tasks;
	uint64_t next_id;
	char **pool;
	size_t n_pool;
	size_t pool_low;		/* fewest free since the last tunnel_mem_trim */
	unsigned char *rx;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *ngopt;
	struct series *series[SERIES_BUCKETS];
	uint32_t deliver_port_next;	/* cursor in the plaintext delivery port range */
	struct tunnel_stats st;
	uint64_t peer_limit_logged_ms;	/* the last "over the per-peer limit" line */
	uint64_t drain_due;		/* tunnel_drain's deadline (loop ms); 0: serving */
};

static void conn_close(struct tconn *c, int err);
static void conn_pump(struct tconn *c);
static void h2s_close(struct h2s *s, int err);
static void h2s_process(struct h2s *s, uint32_t ev);
static int hbone_start(struct tconn *c);

/* ---- small helpers ---- */

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int ip_family(const struct sl_ip *ip)
{
	return ip->family == SL_AF_INET6 ? AF_INET6 : AF_INET;
}

static socklen_t addr_to_sa(const struct sl_ip *ip, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ip->family == SL_AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		memcpy(&s6->sin6_addr, ip->addr.octets, 16);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	s4->sin_addr.s_addr = ip->addr.v4;
	return sizeof(*s4);
}

static int sa_to_addr(const struct sockaddr_storage *ss, struct tunnel_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		a->ip.family = SL_AF_INET6;
		memcpy(a->ip.addr.octets, &s6->sin6_addr, 16);
		a->port = ntohs(s6->sin6_port);
	} else if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		a->ip.family = SL_AF_INET;
		a->ip.addr.v4 = s4->sin_addr.s_addr;
		a->port = ntohs(s4->sin_port);
	} else {
		return -EAFNOSUPPORT;
	}
	sl_ip_unmap(&a->ip);
	return 0;
}

static const char *ip_fmt(const struct sl_ip *ip, char *buf, size_t len)
{
	if (!inet_ntop(ip_family(ip), ip->addr.octets, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* "10.0.0.1:80" or "[fd00::1]:80" (authority and log form); "?" for an
 * address not set. */
static const char *addr_fmt(const struct tunnel_addr *a, char *buf, size_t len)
{
	if (hbone_authority_fmt(a, buf, len) < 0)
		snprintf(buf, len, "?");
	return buf;
}

static int sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return -errno;
	return -err;
}

static char *xstrdup(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

static char *spiffe_uri_of(const struct tunnel *t, const char *ns, const char *sa)
{
	char *id = NULL;

	if (!ns || !*ns || !sa || !*sa)
		return NULL;
	if (asprintf(&id, "spiffe://%s/ns/%s/sa/%s", t->trust_domain, ns, sa) < 0)
		return NULL;
	return id;
}

static bool port_is_agent(uint16_t port)
{
	return port == SL_PORT_OUTBOUND || port == SL_PORT_INBOUND || port == SL_PORT_HBONE;
}

/* ---- relay buffers ---- */

static int pool_take(struct tunnel *t, struct buf *b)
{
	if (b->area)
		return 0;
	if (t->n_pool) {
		b->area = t->pool[--t->n_pool];
		if (t->n_pool < t->pool_low)
			t->pool_low = t->n_pool;
	} else {
		b->area = malloc(t->o.buf_size);
		if (!b->area)
			return -ENOMEM;
	}
	b->size = t->o.buf_size;
	b->head = 0;
	b->data = 0;
	return 0;
}

static void pool_give(struct tunnel *t, struct buf *b)
{
	if (!b->area)
		return;
	if (b->size == t->o.buf_size && t->n_pool < TUNNEL_POOL_MAX)
		t->pool[t->n_pool++] = b->area;
	else
		free(b->area);
	*b = BUF_NULL;
}

/* Make room for n more bytes in an h2 -> fd buffer, growing past the pool
 * size when the fd is slower than the peer (bounded by the stream window). */
static int buf_reserve(struct tunnel *t, struct buf *b, size_t n)
{
	size_t want, size;
	char *p;

	if (pool_take(t, b))
		return -ENOMEM;
	if (buf_room(b) >= n)
		return 0;
	if (b->head) {
		memmove(b->area, b->area + b->head, b->data);
		b->head = 0;
		if (b->size - b->data >= n)
			return 0;
	}
	want = b->data + n;
	if (want > H2_DOWN_MAX)
		return -ENOBUFS;
	for (size = b->size; size < want; size *= 2)
		;
	p = realloc(b->area, size);
	if (!p)
		return -ENOMEM;
	b->area = p;
	b->size = size;
	return 0;
}

/* ---- run queues and the graveyard ---- */

static void tasks_arm(struct tunnel *t)
{
	if (!loop_timer_armed(&t->tasks) && loop_timer_arm(t->loop, &t->tasks, 0))
		pr_err("tunnel: cannot arm the task timer: out of memory");
}

static void conn_wake(struct tconn *c)
{
	if (c->st == CONN_ST_CLOSED || !tl_empty(&c->wake))
		return;
	tl_add_tail(&c->t->runq_c, &c->wake);
	tasks_arm(c->t);
}

static void h2s_kick(struct h2s *s)
{
	if (!s || s->st == H2S_ST_CLOSED || !tl_empty(&s->wake))
		return;
	tl_add_tail(&s->t->runq_s, &s->wake);
	tasks_arm(s->t);
}

static void peer_clear(struct tpeer *p)
{
	free(p->ns);
	free(p->name);
	free(p->workload);
	free(p->identity);
	memset(p, 0, sizeof(*p));
}

static void conn_free(struct tconn *c)
{
	peer_clear(&c->peer[0]);
	peer_clear(&c->peer[1]);
	free(c->service);
	free(c->req);
	free(c);
}

static void h2s_free(struct h2s *s)
{
	if (s->ng)
		nghttp2_session_del(s->ng);
	free(s->src_id);
	free(s->dst_id);
	free(s->out.area);
	free(s);
}

static void graveyard_empty(struct tunnel *t)
{
	while (t->dead_c) {
		struct tconn *c = t->dead_c;

		t->dead_c = c->dead_next;
		conn_free(c);
	}
	while (t->dead_s) {
		struct h2s *s = t->dead_s;

		t->dead_s = s->dead_next;
		h2s_free(s);
	}
}

static void tasks_run(struct loop_timer *tm)
{
	struct tunnel *t = tm->arg;
	struct tl q;

	/* Take the queues as they are now: what gets queued meanwhile runs on
	 * the next turn, so one busy object cannot starve the loop. */
	tl_init(&q);
	if (!tl_empty(&t->runq_s)) {
		q.next = t->runq_s.next;
		q.prev = t->runq_s.prev;
		q.next->prev = &q;
		q.prev->next = &q;
		tl_init(&t->runq_s);
	}
	while (!tl_empty(&q)) {
		struct h2s *s = container_of(q.next, struct h2s, wake);

		tl_del(&s->wake);
		h2s_process(s, 0);
	}
	if (!tl_empty(&t->runq_c)) {
		q.next = t->runq_c.next;
		q.prev = t->runq_c.prev;
		q.next->prev = &q;
		q.prev->next = &q;
		tl_init(&t->runq_c);
	}
	while (!tl_empty(&q)) {
		struct tconn *c = container_of(q.next, struct tconn, wake);

		tl_del(&c->wake);
		conn_pump(c);
	}
	graveyard_empty(t);
}

/* ---- metrics series ---- */

enum {
	L_SRC_WL, L_SRC_NS, L_SRC_PRINCIPAL, L_DST_WL, L_DST_NS, L_DST_PRINCIPAL, L_DST_SVC,
	L_COUNT,
};

static const char *const series_label_names[L_COUNT] = {
	"source_workload", "source_workload_namespace", "source_principal",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_service",
};

static const char *or_unknown(const char *s)
{
	return s && *s ? s : "unknown";
}

static void conn_labels(const struct tconn *c, const char *l[L_COUNT])
{
	const struct tpeer *s = &c->peer[0], *d = &c->peer[1];

	l[L_SRC_WL] = or_unknown(s->workload ? s->workload : s->name);
	l[L_SRC_NS] = or_unknown(s->ns);
	l[L_SRC_PRINCIPAL] = or_unknown(s->identity);
	l[L_DST_WL] = or_unknown(d->workload ? d->workload : d->name);
	l[L_DST_NS] = or_unknown(d->ns);
	l[L_DST_PRINCIPAL] = or_unknown(d->identity);
	l[L_DST_SVC] = or_unknown(c->service);
}

static uint32_t fnv1a(uint32_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return (h ^ 0xff) * 16777619u;
}

/* The series of c for a reporter, created on first use. NULL only on ENOMEM
 * (the connection then goes uncounted, never refused). */
static struct series *series_get(struct tunnel *t, const struct tconn *c, bool dst_reporter,
				 bool mtls)
{
	const char *l[L_COUNT];
	struct series *s;
	uint32_t h = 2166136261u;

	conn_labels(c, l);
	for (int i = 0; i < L_COUNT; i++)
		h = fnv1a(h, l[i]);
	h = (h ^ (dst_reporter ? 1u : 0u) ^ (mtls ? 2u : 0u)) * 16777619u;
	for (s = t->series[h % SERIES_BUCKETS]; s; s = s->next) {
		int i;

		if (s->hash != h || s->dst_reporter != dst_reporter || s->mtls != mtls)
			continue;
		for (i = 0; i < L_COUNT && !strcmp(s->lbl[i], l[i]); i++)
			;
		if (i == L_COUNT)
			return s;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	for (int i = 0; i < L_COUNT; i++) {
		s->lbl[i] = strdup(l[i]);
		if (!s->lbl[i]) {
			for (int j = 0; j < i; j++)
				free(s->lbl[j]);
			free(s);
			return NULL;
		}
	}
	s->hash = h;
	s->dst_reporter = dst_reporter;
	s->mtls = mtls;
	s->next = t->series[h % SERIES_BUCKETS];
	t->series[h % SERIES_BUCKETS] = s;
	return s;
}

/* Count c as opened under its reporters. Call once its peers are known. */
static void conn_count_open(struct tconn *c, bool src_reporter, bool dst_reporter, bool mtls)
{
	if (src_reporter)
		c->ser[0] = series_get(c->t, c, false, mtls);
	if (dst_reporter)
		c->ser[1] = series_get(c->t, c, true, mtls);
	for (int i = 0; i < 2; i++)
		if (c->ser[i])
			c->ser[i]->opened++;
}

/* n bytes of direction d reached their destination. */
static void pipe_account(struct tconn *c, int d, size_t n)
{
	c->p[d].bytes += n;
	for (int i = 0; i < 2; i++) {
		if (!c->ser[i])
			continue;
		if (d == 0)
			c->ser[i]->received += n;	/* Istio: received = during request */
		else
			c->ser[i]->sent += n;		/* sent = during response */
	}
}

static void peer_set(struct tpeer *p, const char *ns, const char *name, const char *workload,
		     const char *identity)
{
	peer_clear(p);
	p->ns = xstrdup(ns);
	p->name = xstrdup(name);
	p->workload = xstrdup(workload);
	p->identity = xstrdup(identity);
}

static void peer_from_pod(struct tpeer *p, const struct tpod *pod)
{
	peer_set(p, pod->ns, pod->name, pod->workload, pod->identity);
}

static void peer_from_wl(struct tunnel *t, struct tpeer *p, const struct tunnel_workload *wl,
			 bool with_identity)
{
	char *id = with_identity ? spiffe_uri_of(t, wl->ns, wl->service_account) : NULL;

	peer_set(p, wl->ns, wl->name, wl->workload[0] ? wl->workload : NULL, NULL);
	p->identity = id;
}

/* ---- connections ---- */

static void conn_timer_cb(struct loop_timer *tm);

static struct tconn *conn_new(struct tunnel *t, enum tunnel_dir dir, enum tunnel_path path)
{
	struct tconn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->t = t;
	c->id = ++t->next_id;
	c->dir = dir;
	c->path = path;
	c->h2i = -1;
	c->start_ms = wall_ms();
	c->rst_code = NGHTTP2_CONNECT_ERROR;
	tl_init(&c->wake);
	for (int i = 0; i < 2; i++) {
		c->end[i].c = c;
		c->end[i].fd = -1;
		c->end[i].io.fd = -1;
		tl_init(&c->end[i].snode);
		c->p[i].pfd[0] = -1;
		c->p[i].pfd[1] = -1;
	}
	loop_timer_init(&c->timer, conn_timer_cb, c);
	tl_add_tail(&t->conns, &c->node);
	t->st.conns_open++;
	t->st.conns_total++;
	return c;
}

static void conn_arm(struct tconn *c, unsigned int ms)
{
	uint64_t now = loop_now_ms();

	if (c->drain_due && c->drain_due < now + ms)
		ms = c->drain_due > now ? (unsigned int)(c->drain_due - now) : 0;
	if (loop_timer_arm(c->t->loop, &c->timer, ms))
		pr_err("tunnel: conn %llu: cannot arm a timer", (unsigned long long)c->id);
}

static void conn_io_cb(struct loop_io *io, uint32_t ev)
{
	struct tend *e = container_of(io, struct tend, io);
	struct tconn *c = io->arg;

	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		e->readable = true;
	if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
		e->writable = true;
	if (ev & EPOLLERR)
		e->err = true;
	conn_pump(c);
}

/* Make end i an fd end and watch it (edge-triggered, for its whole life). */
static int end_set_fd(struct tconn *c, int i, int fd, bool connecting)
{
	struct tend *e = &c->end[i];
	int r;

	e->kind = END_FD;
	e->fd = fd;
	e->connecting = connecting;
	e->readable = !connecting;
	e->writable = !connecting;
	r = loop_add(c->t->loop, &e->io, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, conn_io_cb,
		     c);
	if (r)
		e->io.fd = -1;
	return r;
}

static void h2s_arm_idle(struct h2s *s);

/* Let go of the HTTP/2 end of c (c is being closed, or its session is). */
static void end_release_h2(struct tconn *c, struct tend *e, int err)
{
	struct h2s *s = e->s;
	struct tpipe *p = &c->p[c->h2i];

	if (!s)
		return;
	if (s->st == H2S_ST_READY && s->ng) {
		/* Give back the window of bytes received but never written. */
		if (p->b.data) {
			if (e->stream_closed)
				nghttp2_session_consume_connection(s->ng, p->b.data);
			else if (e->sid > 0)
				nghttp2_session_consume(s->ng, e->sid, p->b.data);
		}
		if (e->sid > 0 && !e->stream_closed) {
			if (err && !e->rst_sent) {
				nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, e->sid,
							  c->rst_code);
				e->rst_sent = true;
			}
			/* nghttp2 still hands us c (as the stream's user data, even
			 * for a request not sent yet) until it reports the stream
			 * closed: keep c, closed, until then. */
			c->zombie = true;
			c->t->st.conns_closing++;
		}
		h2s_kick(s);
	}
	s->n_streams--;
	c->t->st.streams_open--;
	if (!c->zombie) {
		tl_del(&e->snode);
		e->s = NULL;
	}
	if (!s->server && !s->n_streams)
		h2s_arm_idle(s);
}

/* The one way a connection ends. err 0: both directions finished; else the
 * reason, and every end still open is reset (RST on fds, RST_STREAM on
 * streams). Terminal: c may be freed after the current loop batch. */
static void conn_close(struct tconn *c, int err)
{
	struct tunnel *t = c->t;
	char a[64], b[64];

	if (c->st == CONN_ST_CLOSED)
		return;
	pr_debug("tunnel: conn %llu %s %s %s -> %s closed in %s: %s (%llu/%llu bytes)",
		 (unsigned long long)c->id, tunnel_dir_str(c->dir), tunnel_path_str(c->path),
		 addr_fmt(&c->src, a, sizeof(a)), addr_fmt(&c->dst, b, sizeof(b)),
		 conn_st_str(c->st), err ? strerror(-err) : "done",
		 (unsigned long long)c->p[0].bytes, (unsigned long long)c->p[1].bytes);
	if (err)
		t->st.conns_failed++;
	c->st = CONN_ST_CLOSED;
	if (c->shortcut) {
		uint64_t direct[2] = { 0, 0 };

		t->ops.shortcut_close(t->arg, c->shortcut, direct);
		c->shortcut = NULL;
		pipe_account(c, 0, direct[0]);
		pipe_account(c, 1, direct[1]);
	}
	loop_timer_cancel(t->loop, &c->timer);
	tl_del(&c->wake);
	for (int i = 0; i < 2; i++) {
		struct tend *e = &c->end[i];

		if (e->kind == END_FD) {
			loop_del(t->loop, &e->io);
			if (err)
				xprt_close_rst(e->fd);
			else if (e->fd >= 0)
				close(e->fd);
			e->fd = -1;
		} else if (e->kind == END_H2) {
			end_release_h2(c, e, err);
		}
	}
	for (int i = 0; i < 2; i++) {
		struct tpipe *p = &c->p[i];

		pool_give(t, &p->b);
		if (p->pfd[0] >= 0) {
			close(p->pfd[0]);
			close(p->pfd[1]);
			p->pfd[0] = p->pfd[1] = -1;
		}
	}
	for (int i = 0; i < 2 && !c->exported; i++)
		if (c->ser[i])
			c->ser[i]->closed++;
	tl_del(&c->node);
	t->st.conns_open--;
	if (!c->zombie) {
		c->dead_next = t->dead_c;
		t->dead_c = c;
		tasks_arm(t);
	}
}

/* A zombie's stream is gone: free it after the batch. */
static void conn_bury(struct tconn *c, struct tend *e)
{
	tl_del(&e->snode);
	e->s = NULL;
	c->zombie = false;
	c->t->st.conns_closing--;
	c->dead_next = c->t->dead_c;
	c->t->dead_c = c;
	tasks_arm(c->t);
}

/* ---- sockets ---- */

/* Source ports of plaintext deliveries. Such a delivery spoofs the client's
 * IP inside the destination pod's netns, where the client's own connections
 * arrive too (steered to 15006). Had the kernel picked the port, it would come
 * from the range the client picks from as well (the same sequence even, on a
 * node with the same kernel): a later connection of that client on that port
 * then meets the app's socket of the delivery in the pod's netns, still open or
 * in TIME_WAIT, and its SYN is dropped (a 1 s stall, or a reset). So these
 * ports come from above Linux's default ephemeral range (32768-60999), which
 * no Linux client picks from. */
#define DELIVER_PORT_LO		61000
#define DELIVER_PORT_HI		65535
#define DELIVER_PORT_TRIES	64	/* then the kernel picks, as before */

/* A new socket in the netns of the local pod holding netns_ip (NULL: the
 * agent's own, for a virtual client), marked, non-blocking; transparent when
 * its source is not local there. */
static int sock_new(struct tunnel *t, const struct sl_ip *netns_ip, int fam, uint32_t mark, bool transparent)
{
	int one = 1, fd, r;

	if (netns_ip) {
		fd = t->ops.pod_socket(t->arg, netns_ip, fam);
	} else {
		fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd == -1)
			fd = -errno;
	}
	if (fd < 0)
		return fd;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) == -1)
		goto fail;
	if (transparent) {
		if (fam == AF_INET6)
			r = setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one));
		else
			r = setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
		if (r == -1)
			goto fail;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
fail:
	r = -errno;
	close(fd);
	return r;
}

/* bind from:port and connect to `to`: 0, or -errno (fd left to the caller). */
static int sock_bind_connect(int fd, const struct sl_ip *from, uint16_t port, const struct tunnel_addr *to)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len = addr_to_sa(from, port, &ss);

	if (bind(fd, (struct sockaddr *)&ss, len) == -1)
		return -errno;
	len = addr_to_sa(&to->ip, to->port, &ss);
	if (connect(fd, (struct sockaddr *)&ss, len) == -1 && errno != EINPROGRESS)
		return -errno;
	return 0;
}

/* A socket in the netns of the local pod holding netns_ip, marked, bound to
 * from (transparent when from is not local there), connecting to to; its port
 * from the delivery range when own_port, else the kernel's. Returns the fd
 * (connect in progress) or -errno. */
static int sock_connect(struct tunnel *t, const struct sl_ip *netns_ip, const struct sl_ip *from,
			const struct tunnel_addr *to, uint32_t mark, bool transparent, bool own_port)
{
	int fam = ip_family(&to->ip), one = 1, fd, r;

	if (from->family != to->ip.family)
		return -EAFNOSUPPORT;
	for (int i = 0; own_port && i < DELIVER_PORT_TRIES; i++) {
		uint16_t port = (uint16_t)(DELIVER_PORT_LO +
					   t->deliver_port_next++ % (DELIVER_PORT_HI - DELIVER_PORT_LO + 1));

		fd = sock_new(t, netns_ip, fam, mark, transparent);
		if (fd < 0)
			return fd;
		/* The port may serve other destinations at once: the 4-tuple is
		 * what must be free, and connect says when it is not. */
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		r = sock_bind_connect(fd, from, port, to);
		if (!r)
			return fd;
		close(fd);
		if (r != -EADDRINUSE && r != -EADDRNOTAVAIL)
			return r;
	}
	fd = sock_new(t, netns_ip, fam, mark, transparent);
	if (fd < 0)
		return fd;
	/* Pick the port at connect time: many clients share few source IPs. */
	setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	r = sock_bind_connect(fd, from, 0, to);
	if (r) {
		close(fd);
		return r;
	}
	return fd;
}

/* Connect end 1 of c to c->dst: a delivery (transparent, from the client's
 * IP, in the destination pod's netns) or a passthrough (from the pod's IP). */
static int conn_connect(struct tconn *c, bool deliver)
{
	struct tunnel *t = c->t;
	int fd, r;

	/* a virtual client's source is the node's address, which the node's
	 * own connections into the pod use too: deliver from the delivery port
	 * range, as for plaintext */
	if (deliver)
		fd = sock_connect(t, &c->dst.ip, &c->src.ip, &c->dst, SL_MARK_DELIVER, true,
				  c->path == TUNNEL_PATH_PLAINTEXT || c->src_virt);
	else
		fd = sock_connect(t, c->src_virt ? NULL : &c->src.ip, &c->src.ip, &c->dst, SL_MARK_AGENT,
				  false, false);
	if (fd < 0)
		return fd;
	r = end_set_fd(c, 1, fd, true);
	if (r) {
		close(fd);
		c->end[1].kind = END_NONE;
		c->end[1].fd = -1;
		return r;
	}
	c->st = CONN_ST_CONNECTING;
	conn_arm(c, t->o.connect_timeout_ms);
	return 0;
}

/* ---- the pump ---- */

static bool pipe_pending(const struct tpipe *p)
{
	return p->b.data || p->in_pipe;
}

static int pipe_make(struct tunnel *t, struct tpipe *p)
{
	int sz;

	if (pipe2(p->pfd, O_NONBLOCK | O_CLOEXEC) == -1) {
		p->pfd[0] = p->pfd[1] = -1;
		return -errno;
	}
	sz = fcntl(p->pfd[1], F_SETPIPE_SZ, (int)t->o.buf_size);
	if (sz <= 0)
		sz = fcntl(p->pfd[1], F_GETPIPE_SZ);
	p->pipe_cap = sz > 0 ? (size_t)sz : 65536;
	return 0;
}

/* Read from the fd end[d] into p[d]: > 0 bytes, 0 EOF, -EAGAIN, -errno. */
static ssize_t pipe_fill(struct tconn *c, int d)
{
	struct tunnel *t = c->t;
	struct tend *src = &c->end[d], *dst = &c->end[!d];
	struct tpipe *p = &c->p[d];
	ssize_t n;

	if (dst->kind == END_FD && !t->o.no_splice && p->pfd[0] < 0 && !p->nopipe &&
	    pipe_make(t, p))
		p->nopipe = true;	/* no pipe: read/write through a buffer */
	if (p->pfd[0] >= 0) {
		if (p->in_pipe >= p->pipe_cap)
			return -ENOSPC;
		n = splice(src->fd, NULL, p->pfd[1], NULL, p->pipe_cap - p->in_pipe,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0)
			p->in_pipe += (size_t)n;
		else if (n == -1 && errno == EAGAIN && p->in_pipe)
			return -ENOSPC;	/* the pipe's slots are full, not the socket empty */
	} else {
		size_t room;

		if (pool_take(t, &p->b))
			return -ENOMEM;
		room = buf_room(&p->b);
		if (!room)
			return -ENOSPC;
		n = read(src->fd, buf_tail(&p->b), room);
		if (n > 0)
			buf_add(&p->b, (size_t)n);
		else if (!p->b.data)
			pool_give(t, &p->b);
	}
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EINTR)
		return -EAGAIN;
	return -errno;
}

/* Write p[d] to the fd end[!d]: > 0 bytes, -EAGAIN, -errno. */
static ssize_t pipe_flush(struct tconn *c, int d)
{
	struct tend *dst = &c->end[!d];
	struct tpipe *p = &c->p[d];
	ssize_t n;

	if (p->in_pipe) {
		n = splice(p->pfd[0], NULL, dst->fd, NULL, p->in_pipe,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0)
			p->in_pipe -= (size_t)n;
	} else {
		n = send(dst->fd, buf_head(&p->b), p->b.data, MSG_NOSIGNAL);
		if (n > 0) {
			buf_del(&p->b, (size_t)n);
			if (!p->b.data)
				pool_give(c->t, &p->b);
		}
	}
	if (n > 0) {
		struct tend *src = &c->end[d];

		pipe_account(c, d, (size_t)n);
		if (c->shortcut && !c->sc_off[d] &&
		    c->t->ops.shortcut_relayed(c->t->arg, c->shortcut, c->end[0].fd, c->end[1].fd, d,
					       c->p[d].bytes))
			c->sc_off[d] = true;
		if (src->kind == END_H2 && src->s && src->s->ng) {
			if (src->stream_closed)
				nghttp2_session_consume_connection(src->s->ng, (size_t)n);
			else
				nghttp2_session_consume(src->s->ng, src->sid, (size_t)n);
			h2s_kick(src->s);
		}
		return n;
	}
	if (n == 0)
		return -EAGAIN;
	if (errno == EAGAIN || errno == EINTR)
		return -EAGAIN;
	return -errno;
}

/* Let the stream's data provider run again (new bytes, or the end). */
static void h2_resume(struct tend *e)
{
	if (!e->deferred || !e->s || !e->s->ng || e->stream_closed)
		return;
	e->deferred = false;
	nghttp2_session_resume_data(e->s->ng, e->sid);
	h2s_kick(e->s);
}

/* Move bytes of direction d as far as they go now. Returns 0, or -errno to
 * abort the connection; sets *moved when anything happened. */
static int pipe_move(struct tconn *c, int d, size_t *budget, bool *moved)
{
	struct tend *src = &c->end[d], *dst = &c->end[!d];
	struct tpipe *p = &c->p[d];
	ssize_t n;

	if (src->kind == END_FD && src->readable && !p->eof) {
		n = pipe_fill(c, d);
		if (n > 0) {
			*moved = true;
			*budget -= MIN(*budget, (size_t)n);
		} else if (n == 0) {
			p->eof = true;
			*moved = true;
		} else if (n == -EAGAIN) {
			src->readable = false;
		} else if (n != -ENOSPC) {
			return (int)n;
		}
	}
	if (pipe_pending(p)) {
		if (dst->kind == END_FD && dst->writable) {
			n = pipe_flush(c, d);
			if (n > 0)
				*moved = true;
			else if (n == -EAGAIN)
				dst->writable = false;
			else
				return (int)n;
		} else if (dst->kind == END_H2) {
			h2_resume(dst);
		}
	}
	if (p->eof && !pipe_pending(p) && !p->done) {
		if (dst->kind == END_FD) {
			if (shutdown(dst->fd, SHUT_WR) == -1 && errno != ENOTCONN)
				return -errno;
			p->done = true;
			*moved = true;
		} else if (dst->kind == END_H2) {
			h2_resume(dst);		/* the provider returns EOF, sets done */
		}
	}
	return 0;
}

static void conn_connected(struct tconn *c);
static void conn_connect_failed(struct tconn *c, int err);
static int client_submit(struct tconn *c);

/* Everything a connection does on its own: finish connects, move bytes,
 * notice the end. Called from its fd events and from the run queue. */
static void conn_pump(struct tconn *c)
{
	size_t budget = PUMP_BUDGET;
	bool moved;
	int r;

	if (c->st == CONN_ST_CLOSED)
		return;
	if (c->need_retry) {
		c->need_retry = false;
		r = hbone_start(c);
		if (r)
			conn_close(c, r);
		return;
	}
	for (int i = 0; i < 2; i++) {
		struct tend *e = &c->end[i];

		if (e->kind != END_FD)
			continue;
		if (e->err || (e->connecting && e->writable)) {
			e->err = false;
			r = sock_error(e->fd);
			if (r) {
				if (e->connecting)
					conn_connect_failed(c, r);
				else
					conn_close(c, r);
				return;
			}
		}
		if (e->connecting && e->writable) {
			e->connecting = false;
			conn_connected(c);
			if (c->st == CONN_ST_CLOSED)
				return;
		}
	}
	if (c->st == CONN_ST_POOL_WAIT && c->end[1].s && c->end[1].s->st == H2S_ST_READY) {
		r = client_submit(c);
		if (r)
			conn_close(c, r);
		return;
	}
	if (c->st != CONN_ST_RELAY)
		return;
	do {
		moved = false;
		for (int d = 0; d < 2; d++) {
			r = pipe_move(c, d, &budget, &moved);
			if (r) {
				conn_close(c, r);
				return;
			}
		}
	} while (moved && budget);
	if (c->p[0].done && c->p[1].done) {
		conn_close(c, 0);
		return;
	}
	if (!budget)
		conn_wake(c);		/* more to do: yield to others first */
}

/* ---- HTTP/2 sessions ---- */

static void h2s_interest(struct h2s *s)
{
	uint32_t ev = 0;

	if (s->st == H2S_ST_CONNECTING) {
		ev = EPOLLOUT;
	} else if (s->st == H2S_ST_HANDSHAKE) {
		ev = s->x.want ? s->x.want : EPOLLIN;
	} else {
		if (nghttp2_session_want_read(s->ng))
			ev |= s->rd_want;
		if (s->out.data)
			ev |= s->wr_want;
	}
	if (loop_mod(s->t->loop, &s->io, ev))
		pr_warn("tunnel: session %llu: epoll_ctl failed", (unsigned long long)s->id);
}

/* Serialize frames and write them. 0, or -errno when the session is broken. */
static int h2s_flush(struct h2s *s)
{
	for (;;) {
		ssize_t n;

		while (s->out.data < H2_OUT_HIGH) {
			const uint8_t *p;

			s->in_ng = true;
			n = nghttp2_session_mem_send(s->ng, &p);
			s->in_ng = false;
			if (n < 0) {
				pr_warn("tunnel: session %llu: %s", (unsigned long long)s->id,
					nghttp2_strerror((int)n));
				return -EPROTO;
			}
			if (s->dead)
				return -EPROTO;
			if (!n)
				break;
			if (buf_room(&s->out) < (size_t)n) {
				size_t need = s->out.head + s->out.data + (size_t)n;
				size_t size = s->out.size ? s->out.size : H2_OUT_MIN;
				char *a;

				/* taken small when there is something to send, doubled
				 * as bursts need (tunnel_mem_trim drops an idle one) */
				while (size < need)
					size *= 2;
				a = realloc(s->out.area, size);
				if (!a)
					return -ENOMEM;
				s->out.area = a;
				s->out.size = size;
			}
			buf_put(&s->out, p, (size_t)n);
		}
		if (!s->out.data)
			return 0;
		n = s->x.ops->snd(&s->x, buf_head(&s->out), s->out.data);
		if (n == -EAGAIN) {
			s->wr_want = s->x.want;
			return 0;
		}
		if (n < 0)
			return (int)n;
		s->wr_want = EPOLLOUT;
		buf_del(&s->out, (size_t)n);
	}
}

/* Read, process, write. 0 (more later), 1 (finished cleanly), -errno. */
static int h2s_io(struct h2s *s)
{
	struct tunnel *t = s->t;
	size_t budget = H2_RX_BUDGET;
	bool eof = false, again = true;
	ssize_t n;
	int r = 0;

	while (again && budget && nghttp2_session_want_read(s->ng)) {
		size_t got = 0;

		/* Fill rx from several TLS records, so a DATA frame reaches
		 * nghttp2 (and the app's socket) in one piece, not per record. */
		while (got < H2_RX_SIZE) {
			n = s->x.ops->rcv(&s->x, t->rx + got, H2_RX_SIZE - got);
			if (n > 0) {
				got += (size_t)n;
				s->rd_want = EPOLLIN;
				continue;
			}
			again = false;
			if (n == -EAGAIN)
				s->rd_want = s->x.want;
			else if (n == 0)
				eof = true;
			else
				r = (int)n;
			break;
		}
		if (got) {
			s->last_rx_ms = loop_now_ms();
			s->in_ng = true;
			n = nghttp2_session_mem_recv(s->ng, t->rx, got);
			s->in_ng = false;
			if (n < 0) {
				pr_warn("tunnel: session %llu: %s", (unsigned long long)s->id,
					nghttp2_strerror((int)n));
				h2s_flush(s);		/* try to say GOAWAY */
				return -EPROTO;
			}
			if (s->dead)
				return -EPROTO;
			budget -= MIN(budget, got);
		}
	}
	if (r)
		return r;
	if (eof) {
		/* The peer closed: fine if no stream was cut short by it. */
		for (struct tl *l = s->streams.next; l != &s->streams; l = l->next) {
			const struct tend *e = container_of(l, struct tend, snode);

			if (!e->stream_closed && e->c->st != CONN_ST_CLOSED)
				return -ECONNRESET;
		}
		return 1;
	}
	if (!budget)
		h2s_kick(s);		/* TLS may hold decrypted bytes epoll cannot see */
	r = h2s_flush(s);
	if (r)
		return r;
	if (!nghttp2_session_want_read(s->ng) && !nghttp2_session_want_write(s->ng) &&
	    !s->out.data)
		return 1;
	h2s_interest(s);
	return 0;
}

static int h2s_established(struct h2s *s);

static void h2s_process(struct h2s *s, uint32_t ev)
{
	int r;

	switch (s->st) {
	case H2S_ST_CONNECTING:
		if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		r = sock_error(s->x.fd);
		if (r)
			goto fail;
		s->st = H2S_ST_HANDSHAKE;
		/* fallthrough */
	case H2S_ST_HANDSHAKE:
		r = s->x.ops->handshake(&s->x);
		if (r == -EAGAIN) {
			h2s_interest(s);
			return;
		}
		if (r)
			goto fail;
		r = h2s_established(s);
		if (r)
			goto fail;
		/* fallthrough */
	case H2S_ST_READY:
		r = s->dead ? -EPROTO : h2s_io(s);
		if (r < 0)
			goto fail;
		if (r > 0)
			h2s_close(s, 0);
		return;
	case H2S_ST_CLOSED:
	case H2S_ST_COUNT:
		return;
	}
	return;
fail:
	h2s_close(s, r);
}

static void h2s_io_cb(struct loop_io *io, uint32_t ev)
{
	h2s_process(io->arg, ev);
}

static void h2s_timer_cb(struct loop_timer *tm)
{
	struct h2s *s = tm->arg;
	struct tunnel *t = s->t;
	char a[64], b[INET6_ADDRSTRLEN];

	bool drained = s->drain_due && loop_now_ms() >= s->drain_due;

	if (s->st != H2S_ST_READY) {
		if (drained)
			;
		else if (!s->server)
			pr_warn("tunnel: HBONE connect from %s to %s timed out after %u ms "
				"(TCP+TLS): is a NetworkPolicy blocking port %u?\n",
				ip_fmt(&s->src_ip, b, sizeof(b)),
				addr_fmt(&s->remote, a, sizeof(a)), t->o.connect_timeout_ms,
				t->o.hbone_port);
		else
			pr_warn("tunnel: HBONE handshake from %s timed out after %u ms",
				addr_fmt(&s->remote, a, sizeof(a)), t->o.connect_timeout_ms);
		h2s_close(s, -ETIMEDOUT);
		return;
	}
	/* Idle: say goodbye, and close once GOAWAY is out. */
	if (!s->n_streams && tl_empty(&s->streams)) {
		s->goaway = true;
		nghttp2_session_terminate_session(s->ng, NGHTTP2_NO_ERROR);
		h2s_process(s, 0);
	} else if (drained) {
		h2s_close(s, -ECONNABORTED);
	}
}

static void h2s_arm_idle(struct h2s *s)
{
	if (s->st == H2S_ST_READY &&
	    loop_timer_arm(s->t->loop, &s->timer, s->drain_due ? 0 : s->t->o.pool_idle_ms))
		pr_err("tunnel: session %llu: cannot arm a timer", (unsigned long long)s->id);
}

static void h2s_ping_cb(struct loop_timer *tm)
{
	struct h2s *s = tm->arg;
	struct tunnel *t = s->t;
	uint64_t now = loop_now_ms();

	if (s->st != H2S_ST_READY)
		return;
	if (s->ping_out && now - s->ping_sent_ms >= t->o.keepalive_timeout_ms) {
		char a[64];

		pr_warn("tunnel: HBONE peer %s did not answer PING in %u ms: closing",
			addr_fmt(&s->remote, a, sizeof(a)), t->o.keepalive_timeout_ms);
		h2s_close(s, -ETIMEDOUT);
		return;
	}
	if (!s->ping_out && now - s->last_rx_ms >= t->o.keepalive_ms) {
		if (!nghttp2_submit_ping(s->ng, NGHTTP2_FLAG_NONE, NULL)) {
			s->ping_out = true;
			s->ping_sent_ms = now;
			h2s_kick(s);
		}
	}
	loop_timer_arm(t->loop, &s->ping, s->ping_out ? t->o.keepalive_timeout_ms / 4 + 1 :
							  t->o.keepalive_ms);
}

/* c's stream e on client session s goes again, on another session: s takes
 * no new streams from now on. */
static void stream_retry(struct tconn *c, struct tend *e, struct h2s *s)
{
	s->goaway = true;
	c->retries++;
	c->need_retry = true;
	tl_del(&e->snode);
	e->s = NULL;
	e->kind = END_NONE;
	s->n_streams--;
	s->t->st.streams_open--;
	c->h2i = -1;
	conn_wake(c);
}

/* Tear a session down. err 0: orderly (after GOAWAY); else its open streams
 * are aborted. Never called inside nghttp2 callbacks. Terminal. */
static void h2s_close(struct h2s *s, int err)
{
	struct tunnel *t = s->t;
	bool was_ready = s->st == H2S_ST_READY;
	char a[64];

	if (s->st == H2S_ST_CLOSED)
		return;
	if (s->in_ng) {
		/* nghttp2 is on the stack: finish at top level (h2s_io sees dead). */
		s->dead = true;
		h2s_kick(s);
		return;
	}
	if (err && s->st != H2S_ST_READY) {
		t->st.hbone_setup_failed++;
		pr_info("tunnel: HBONE %s %s failed in %s: %s%s%s",
			s->server ? "from" : "to", addr_fmt(&s->remote, a, sizeof(a)),
			h2s_st_str(s->st), strerror(-err), s->x.err[0] ? ": " : "", s->x.err);
	} else {
		pr_debug("tunnel: HBONE %s %s closed: %s", s->server ? "from" : "to",
			 addr_fmt(&s->remote, a, sizeof(a)), err ? strerror(-err) : "done");
	}
	if (s->server)
		t->st.hbone_servers--;
	else
		t->st.hbone_clients--;
	s->st = H2S_ST_CLOSED;
	s->goaway = true;
	loop_timer_cancel(t->loop, &s->timer);
	loop_timer_cancel(t->loop, &s->ping);
	while (!tl_empty(&s->streams)) {
		struct tend *e = container_of(s->streams.next, struct tend, snode);
		struct tconn *c = e->c;

		if (c->st == CONN_ST_CLOSED) {
			conn_bury(c, e);		/* a zombie */
		} else if (e->stream_closed) {
			/* Stream ended cleanly; its last bytes still go to the fd. */
			tl_del(&e->snode);
			e->s = NULL;
			s->n_streams--;
			t->st.streams_open--;
		} else if (!s->server && err && was_ready && c->st == CONN_ST_REQUEST && !c->p[0].bytes &&
			   c->retries < HBONE_REFUSED_RETRIES) {
			/* A working session lost: no answer yet and none of
			 * the app's bytes sent, so the server took nothing the
			 * app would miss. A draining peer that closes with our
			 * new streams unread resets the connection, and its
			 * GOAWAY may never be read: as a refused stream, again
			 * on another session. (A session that never came up
			 * fails its streams: the next would fail alike.) */
			stream_retry(c, e, s);
		} else {
			conn_close(c, -ECONNRESET);	/* detaches e */
		}
	}
	loop_del(t->loop, &s->io);
	if (s->x.ops)
		s->x.ops->close(&s->x, err != 0);
	tl_del(&s->node);
	tl_del(&s->wake);
	s->dead_next = t->dead_s;
	t->dead_s = s;
	tasks_arm(t);
}

static int h2s_established(struct h2s *s)
{
	struct tunnel *t = s->t;
	const unsigned char *alpn;
	unsigned int alpn_len;
	nghttp2_settings_entry iv[5];
	size_t niv = 0;
	int r;

	s->x.ops->alpn(&s->x, &alpn, &alpn_len);
	if (alpn_len != 2 || memcmp(alpn, "h2", 2)) {
		snprintf(s->x.err, sizeof(s->x.err), "peer did not negotiate ALPN h2");
		return -EPROTO;
	}
	r = t->ops.peer_check(t->arg, s->x.ssl, s->server ? NULL : s->dst_id, s->peer_id,
			      sizeof(s->peer_id));
	if (r) {
		snprintf(s->x.err, sizeof(s->x.err), "peer identity %.70s%s%.70s refused",
			 s->peer_id[0] ? s->peer_id : "(none)", s->server ? "" : ", expected ",
			 s->server ? "" : s->dst_id);
		return r < 0 ? r : -EACCES;
	}
	if (s->server)
		r = nghttp2_session_server_new2(&s->ng, t->cbs, s, t->ngopt);
	else
		r = nghttp2_session_client_new2(&s->ng, t->cbs, s, t->ngopt);
	if (r)
		return -ENOMEM;
	if (s->server)
		iv[niv++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
						      H2_SERVER_MAX_STREAMS };
	else
		iv[niv++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 };
	iv[niv++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
					      H2_STREAM_WINDOW };
	iv[niv++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_FRAME_SIZE, H2_MAX_FRAME };
	iv[niv++] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
					      s->server ? H2_SERVER_MAX_HDRS : H2_CLIENT_MAX_HDRS };
	if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, niv) ||
	    nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW))
		return -ENOMEM;
	s->st = H2S_ST_READY;
	s->last_rx_ms = loop_now_ms();
	loop_timer_cancel(t->loop, &s->timer);
	loop_timer_arm(t->loop, &s->ping, t->o.keepalive_ms);
	pr_debug("tunnel: HBONE %s %s up, peer %s", s->server ? "from" : "to",
		 addr_fmt(&s->remote, (char[64]){ 0 }, 64), s->peer_id);
	if (s->server && s->goaway) {
		/* Drained during its handshake (an upgrade): say so before the
		 * client sends streams we would only refuse, and close once the
		 * GOAWAY is out. */
		nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
		h2s_arm_idle(s);
	}
	if (!s->server) {
		struct tl *n, *next;
		int submitted = 0;

		/* Streams that waited for the connection go now. */
		for (n = s->streams.next; n != &s->streams; n = next) {
			struct tconn *c = container_of(n, struct tend, snode)->c;

			next = n->next;
			if (c->st == CONN_ST_POOL_WAIT)
				conn_wake(c);	/* submits from the run queue */
			submitted++;
		}
		if (!submitted)
			h2s_arm_idle(s);
	}
	return 0;
}

static struct h2s *h2s_alloc(struct tunnel *t, bool server)
{
	struct h2s *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->t = t;
	s->id = ++t->next_id;
	s->server = server;
	s->io.fd = -1;
	s->x.fd = -1;
	s->rd_want = EPOLLIN;
	s->wr_want = EPOLLOUT;
	tl_init(&s->streams);
	tl_init(&s->wake);
	loop_timer_init(&s->timer, h2s_timer_cb, s);
	loop_timer_init(&s->ping, h2s_ping_cb, s);
	tl_add_tail(&t->sessions, &s->node);
	if (t->drain_due) {
		/* Opened while handing over (a retry, a connection set up
		 * late): serves its streams, takes no others, closes with them. */
		s->goaway = true;
		s->drain_due = t->drain_due;
	}
	if (server) {
		t->st.hbone_servers++;
		t->st.hbone_servers_total++;
	} else {
		t->st.hbone_clients++;
		t->st.hbone_clients_total++;
	}
	return s;
}

/* Undo h2s_alloc for a session that never got going (no fd watched). */
static void h2s_discard(struct h2s *s)
{
	struct tunnel *t = s->t;

	if (s->server)
		t->st.hbone_servers--;
	else
		t->st.hbone_clients--;
	tl_del(&s->node);
	h2s_free(s);
}

/* A pooled client connection for c's key, or a new one being set up. */
static struct h2s *pool_get(struct tconn *c, const struct tpod *pod, int *err)
{
	struct tunnel *t = c->t;
	struct tunnel_addr to = { .ip = c->dst.ip, .port = t->o.hbone_port };
	struct ssl_ctx_st *ctx;
	struct tl *n;
	struct h2s *s;
	int fd, r;

	for (n = t->sessions.next; n != &t->sessions; n = n->next) {
		s = container_of(n, struct h2s, node);
		if (s->server || s->goaway || s->dead || s->n_total >= t->o.max_streams_per_conn)
			continue;
		if (!sl_ip_eq(&s->src_ip, &c->src.ip) || !sl_ip_eq(&s->dst_ip, &c->dst.ip) ||
		    strcmp(s->src_id, c->peer[0].identity) ||
		    strcmp(s->dst_id, c->peer[1].identity))
			continue;
		if (s->st == H2S_ST_READY &&
		    nghttp2_session_get_remote_settings(
			    s->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) <= s->n_streams)
			continue;
		return s;
	}
	ctx = t->ops.client_ctx(t->arg, pod->ns, pod->sa);
	if (!ctx) {
		*err = -ENOKEY;
		return NULL;
	}
	s = h2s_alloc(t, false);
	if (!s) {
		SSL_CTX_free(ctx);
		*err = -ENOMEM;
		return NULL;
	}
	s->src_id = strdup(c->peer[0].identity);
	s->dst_id = strdup(c->peer[1].identity);
	s->src_ip = c->src.ip;
	s->dst_ip = c->dst.ip;
	s->remote = to;
	s->pod_id = pod->id;
	if (!s->src_id || !s->dst_id) {
		SSL_CTX_free(ctx);
		h2s_discard(s);
		*err = -ENOMEM;
		return NULL;
	}
	fd = sock_connect(t, pod->virt ? NULL : &c->src.ip, &c->src.ip, &to, SL_MARK_AGENT, false, false);
	if (fd < 0) {
		SSL_CTX_free(ctx);
		h2s_discard(s);
		*err = fd;
		return NULL;
	}
	r = xprt_init_tls(&s->x, fd, ctx, false);
	SSL_CTX_free(ctx);		/* the SSL holds its own reference */
	if (!r)
		r = loop_add(t->loop, &s->io, fd, EPOLLOUT, h2s_io_cb, s);
	if (r) {
		if (s->x.ops)
			s->x.ops->close(&s->x, true);
		else
			close(fd);
		h2s_discard(s);
		*err = r;
		return NULL;
	}
	s->st = H2S_ST_CONNECTING;
	loop_timer_arm(t->loop, &s->timer, t->o.connect_timeout_ms);
	return s;
}

static ssize_t h2_read_data(nghttp2_session *ng, int32_t sid, uint8_t *out, size_t len,
			    uint32_t *flags, nghttp2_data_source *source, void *ud);

#define NV(n, v, vl) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE }

/* Send c's CONNECT on its (ready) session. */
static int client_submit(struct tconn *c)
{
	struct tunnel *t = c->t;
	struct tend *e = &c->end[1];
	struct h2s *s = e->s;
	static const char hex[] = "0123456789abcdef";
	char authority[64], fwd[128 + TUNNEL_NAME_MAX], ip[INET6_ADDRSTRLEN], tp[64], *q;
	unsigned char rnd[24];
	const struct tpod *pod = NULL;
	nghttp2_data_provider prd = { .source.ptr = c, .read_callback = h2_read_data };
	struct tl *n;
	int32_t sid;
	size_t nv = 4;

	for (n = t->pods.next; n != &t->pods; n = n->next) {
		const struct tpod *p = container_of(n, struct tpod, node);

		if (p->id == c->pod_ids[0])
			pod = p;
	}
	addr_fmt(&c->dst, authority, sizeof(authority));
	ip_fmt(&c->src.ip, ip, sizeof(ip));
	if (c->src.ip.family == SL_AF_INET6)
		snprintf(fwd, sizeof(fwd), "for=\"[%s]:%u\"", ip, c->src.port);
	else
		snprintf(fwd, sizeof(fwd), "for=\"%s:%u\"", ip, c->src.port);
	if (c->service) {
		size_t l = strlen(fwd);

		snprintf(fwd + l, sizeof(fwd) - l, ";host=%s", c->service);
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return -EIO;
	/* 00-<trace id, 16 bytes>-<parent id, 8 bytes>-00 */
	q = tp;
	memcpy(q, "00-", 3);
	q += 3;
	for (int i = 0; i < 24; i++) {
		if (i == 16)
			*q++ = '-';
		*q++ = hex[rnd[i] >> 4];
		*q++ = hex[rnd[i] & 15];
	}
	memcpy(q, "-00", 4);

	nghttp2_nv nva[5] = {
		NV(":method", "CONNECT", 7),
		NV(":authority", authority, strlen(authority)),
		NV("forwarded", fwd, strlen(fwd)),
		NV("traceparent", tp, strlen(tp)),
	};
	if (pod && pod->baggage)
		nva[nv++] = (nghttp2_nv)NV("baggage", pod->baggage, strlen(pod->baggage));
	sid = nghttp2_submit_request(s->ng, NULL, nva, nv, &prd, c);
	if (sid < 0)
		return -EIO;
	e->sid = sid;
	c->st = CONN_ST_REQUEST;
	conn_arm(c, t->o.response_timeout_ms);
	h2s_kick(s);
	return 0;
}

/* Outbound HBONE: attach c to a pooled connection and send CONNECT when it
 * is ready. */
static int hbone_start(struct tconn *c)
{
	struct tunnel *t = c->t;
	struct tend *e = &c->end[1];
	const struct tpod *pod = NULL;
	struct h2s *s;
	struct tl *n;
	int err = 0;

	for (n = t->pods.next; n != &t->pods; n = n->next) {
		const struct tpod *p = container_of(n, struct tpod, node);

		if (p->id == c->pod_ids[0])
			pod = p;
	}
	if (!pod)
		return -ENOENT;		/* the pod left meanwhile */
	s = pool_get(c, pod, &err);
	if (!s)
		return err;
	e->kind = END_H2;
	e->s = s;
	e->sid = 0;
	e->stream_closed = false;
	e->deferred = false;
	e->rst_sent = false;
	c->h2i = 1;
	tl_add_tail(&s->streams, &e->snode);
	s->n_streams++;
	s->n_total++;
	t->st.streams_open++;
	if (s->st == H2S_ST_READY) {
		loop_timer_cancel(t->loop, &s->timer);	/* idle timer */
		return client_submit(c);
	}
	c->st = CONN_ST_POOL_WAIT;
	return 0;
}

/* ---- nghttp2 callbacks ---- */

static struct tconn *stream_conn(nghttp2_session *ng, int32_t sid)
{
	return nghttp2_session_get_stream_user_data(ng, sid);
}

/* The data provider of the stream end of c: bytes of the direction whose
 * destination is the stream. */
static ssize_t h2_read_data(nghttp2_session *ng, int32_t sid, uint8_t *out, size_t len,
			    uint32_t *flags, nghttp2_data_source *source, void *ud)
{
	struct tconn *c = source->ptr;
	struct tend *e;
	struct tpipe *p;
	size_t n;
	int d;

	(void)ng;
	(void)sid;
	(void)ud;
	if (c->st == CONN_ST_CLOSED)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	e = &c->end[c->h2i];
	d = !c->h2i;
	p = &c->p[d];
	n = MIN(len, p->b.data);
	if (n) {
		memcpy(out, buf_head(&p->b), n);
		buf_del(&p->b, n);
		pipe_account(c, d, n);
		if (!p->b.data)
			pool_give(c->t, &p->b);
		conn_wake(c);		/* room again: read more */
	}
	if (!p->b.data && p->eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		p->done = true;
		conn_wake(c);
		return (ssize_t)n;
	}
	if (!n) {
		e->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

static ssize_t h2_read_length(nghttp2_session *ng, uint8_t type, int32_t sid, int32_t swin,
			      int32_t stwin, uint32_t max_frame, void *ud)
{
	(void)ng;
	(void)type;
	(void)sid;
	(void)swin;
	(void)stwin;
	(void)ud;
	return MIN(max_frame, H2_DATA_FRAME);
}

/* The stream's peer ended its side (END_STREAM). */
static void h2_src_eof(struct tconn *c)
{
	if (c->st == CONN_ST_CLOSED || c->h2i < 0)
		return;
	c->p[c->h2i].eof = true;
	conn_wake(c);
}

static void server_request(struct tconn *c);

static void client_response(struct tconn *c)
{
	char a[64];

	if (c->st != CONN_ST_REQUEST)
		return;
	if (c->status >= 100 && c->status < 200)
		return;			/* informational: wait for the final one */
	if (c->status == 200) {
		loop_timer_cancel(c->t->loop, &c->timer);
		c->st = CONN_ST_RELAY;
		conn_wake(c);
		return;
	}
	pr_info("tunnel: HBONE CONNECT %s answered %d: resetting the client",
		addr_fmt(&c->dst, a, sizeof(a)), c->status);
	c->rst_code = NGHTTP2_CANCEL;
	conn_close(c, -ECONNREFUSED);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud);

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct h2s *s = ud;
	struct tconn *c;

	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		c = stream_conn(ng, f->hd.stream_id);
		if (!c || c->st == CONN_ST_CLOSED)
			return 0;
		if (s->server && f->headers.cat == NGHTTP2_HCAT_REQUEST)
			server_request(c);
		else if (!s->server && (f->headers.cat == NGHTTP2_HCAT_RESPONSE ||
					f->headers.cat == NGHTTP2_HCAT_HEADERS) &&
			 c->st == CONN_ST_REQUEST)
			client_response(c);
		if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
			h2_src_eof(c);
		break;
	case NGHTTP2_DATA:
		c = stream_conn(ng, f->hd.stream_id);
		if (c && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
			h2_src_eof(c);
		break;
	case NGHTTP2_PING:
		if (f->hd.flags & NGHTTP2_FLAG_ACK)
			s->ping_out = false;
		break;
	case NGHTTP2_GOAWAY:
		s->goaway = true;
		break;
	default:
		break;
	}
	return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct h2s *s = ud;

	/* A response that ended our side while the client's is still open:
	 * only error answers do that (a 200 ends with DATA). */
	if (s->server && f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    nghttp2_session_get_stream_remote_close(ng, f->hd.stream_id) == 0)
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *ng, uint8_t flags, int32_t sid,
			      const uint8_t *data, size_t len, void *ud)
{
	struct h2s *s = ud;
	struct tconn *c = stream_conn(ng, sid);
	struct tpipe *p;
	struct tend *dst;
	size_t w = 0;
	int r;

	(void)flags;
	if (!c || c->st == CONN_ST_CLOSED) {
		nghttp2_session_consume(ng, sid, len);
		return 0;
	}
	p = &c->p[c->h2i];
	dst = &c->end[!c->h2i];
	if (c->st == CONN_ST_RELAY && !p->b.data && dst->kind == END_FD && dst->writable) {
		ssize_t n = send(dst->fd, data, len, MSG_NOSIGNAL);

		if (n >= 0) {
			w = (size_t)n;
			if (w) {
				pipe_account(c, c->h2i, w);
				nghttp2_session_consume(ng, sid, w);
			}
			if (w < len)
				dst->writable = false;
		} else if (errno == EAGAIN || errno == EINTR) {
			dst->writable = false;
		} else {
			r = -errno;
			nghttp2_session_consume(ng, sid, len);
			conn_close(c, r);
			return 0;
		}
	}
	if (w < len) {
		r = buf_reserve(s->t, &p->b, len - w);
		if (r) {
			nghttp2_session_consume(ng, sid, len - w);
			conn_close(c, r);
			return 0;
		}
		buf_put(&p->b, data + w, len - w);
	}
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
	struct h2s *s = ud;
	struct tconn *c = stream_conn(ng, sid);
	struct tend *e;

	if (!c)
		return 0;
	e = &c->end[c->h2i];
	e->stream_closed = true;
	if (c->st == CONN_ST_CLOSED) {
		if (c->zombie)
			conn_bury(c, e);
		return 0;
	}
	if (!s->server && c->st == CONN_ST_REQUEST && code == NGHTTP2_REFUSED_STREAM &&
	    c->retries < HBONE_REFUSED_RETRIES) {
		/* Not processed by the server (GOAWAY race): again, elsewhere.
		 * Our servers refuse only when going away, so no new stream goes
		 * on this session, even before its GOAWAY arrives; each retry
		 * is on another session, so a few cover several peers
		 * draining at once (an upgrade). */
		stream_retry(c, e, s);
		if (!s->n_streams)
			h2s_arm_idle(s);
		return 0;
	}
	if (code != NGHTTP2_NO_ERROR || !c->p[c->h2i].eof || !c->p[!c->h2i].done) {
		if (c->st == CONN_ST_REQUEST)
			pr_info("tunnel: HBONE CONNECT %s%s: stream reset by peer (%s): resetting the client",
				addr_fmt(&c->dst, (char[64]){ 0 }, 64), c->retries ? " (retried)" : "",
				nghttp2_http2_strerror(code));
		else
			pr_debug("tunnel: conn %llu: stream %d reset by peer (%s)",
				 (unsigned long long)c->id, sid, nghttp2_http2_strerror(code));
		e->rst_sent = true;
		conn_close(c, -ECONNRESET);
		return 0;
	}
	conn_wake(c);		/* finish writing what is buffered */
	return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
		     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	struct h2s *s = ud;
	struct tconn *c;
	struct hreq *rq;

	(void)flags;
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	c = stream_conn(ng, f->hd.stream_id);
	if (!c || c->st == CONN_ST_CLOSED)
		return 0;
	if (!s->server) {
		if (nlen == 7 && !memcmp(name, ":status", 7)) {
			c->status = 0;
			for (size_t i = 0; i < vlen && i < 3; i++)
				c->status = c->status * 10 + (value[i] - '0');
		}
		return 0;
	}
	rq = c->req;
	if (!rq || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;	/* trailers: ignored */
	rq->size += nlen + vlen + 32;
	if (rq->size > H2_SERVER_MAX_HDRS)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
#define HDR_IS(lit) (nlen == sizeof(lit) - 1 && !memcmp(name, lit, nlen))
#define HDR_COPY(dst)                                                      \
	do {                                                               \
		size_t l_ = MIN(vlen, sizeof(dst) - 1);                    \
		memcpy(dst, value, l_);                                    \
		dst[l_] = '\0';                                            \
		/* too long, or a NUL hiding the rest (nghttp2 refuses     \
		 * those already): treated as missing */                   \
		if (vlen >= sizeof(dst) || memchr(value, 0, vlen))         \
			dst[0] = '\0';                                     \
	} while (0)
	if (HDR_IS(":method"))
		HDR_COPY(rq->method);
	else if (HDR_IS(":authority"))
		HDR_COPY(rq->authority);
	else if (HDR_IS(":scheme"))
		rq->has_scheme = true;
	else if (HDR_IS(":path"))
		rq->has_path = true;
	else if (HDR_IS(":protocol"))
		rq->has_protocol = true;
	else if (HDR_IS("forwarded") && !rq->forwarded[0])
		HDR_COPY(rq->forwarded);
#undef HDR_IS
#undef HDR_COPY
	return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct h2s *s = ud;
	struct tunnel *t = s->t;
	struct tconn *c;
	struct tend *e;

	if (!s->server || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (s->goaway || !s->pod) {
		nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	c = conn_new(t, TUNNEL_DIR_INBOUND, TUNNEL_PATH_HBONE);
	if (!c)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	c->req = calloc(1, sizeof(*c->req));
	if (!c->req) {
		conn_close(c, -ENOMEM);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	e = &c->end[0];
	e->kind = END_H2;
	e->s = s;
	e->sid = f->hd.stream_id;
	c->h2i = 0;
	c->st = CONN_ST_REQUEST;
	c->pod_ids[1] = s->pod->id;
	c->src = s->remote;
	c->src.port = 0;
	tl_add_tail(&s->streams, &e->snode);
	s->n_streams++;
	t->st.streams_open++;
	nghttp2_session_set_stream_user_data(ng, e->sid, c);
	return 0;
}

/* Server: answer a CONNECT with an error status and end the stream. */
static void server_fail(struct tconn *c, int status, const char *why)
{
	struct tend *e = &c->end[0];
	char st[8], a[64];

	pr_info("tunnel: HBONE CONNECT %s from %s (%s): %d %s", c->req ? c->req->authority : "",
		addr_fmt(&c->src, a, sizeof(a)), c->peer[0].identity ? c->peer[0].identity : "?",
		status, why);
	c->status = status;
	if (e->s && e->s->ng && !e->stream_closed) {
		snprintf(st, sizeof(st), "%d", status);
		nghttp2_nv nv[] = { NV(":status", st, strlen(st)) };

		/* The complete response; on_frame_send then resets the stream
		 * with NO_ERROR so the client stops sending (RFC 9113 8.1). */
		nghttp2_submit_response(e->s->ng, e->sid, nv, 1, NULL);
		e->rst_sent = true;
		h2s_kick(e->s);
	}
	conn_close(c, -ECONNREFUSED);
}

static const struct tpod *pod_by_ip(const struct tunnel *t, const struct sl_ip *ip)
{
	for (struct tl *n = t->pods.next; n != &t->pods; n = n->next) {
		const struct tpod *p = container_of(n, struct tpod, node);

		for (size_t i = 0; i < p->n_ips; i++)
			if (sl_ip_eq(&p->ips[i], ip))
				return p;
	}
	return NULL;
}

static bool pod_has_ip(const struct tpod *p, const struct sl_ip *ip)
{
	for (size_t i = 0; i < p->n_ips; i++)
		if (sl_ip_eq(&p->ips[i], ip))
			return true;
	return false;
}

/* forwarded: for="ip:port"[;host=svc] -> the client's port (when ip is the
 * connection's source) and the service. */
static void forwarded_parse(struct tconn *c, const char *fwd)
{
	char svc[TUNNEL_NAME_MAX];
	uint16_t port;
	int found = hbone_forwarded_parse(fwd, &c->src.ip, &port, svc, sizeof(svc));

	if (found < 0)
		return;
	if (found & HBONE_FWD_PORT)
		c->src.port = port;
	if ((found & HBONE_FWD_SERVICE) && !c->service)
		c->service = strdup(svc);
}

/* Server: a complete CONNECT request arrived on c's stream. */
static void server_request(struct tconn *c)
{
	struct tunnel *t = c->t;
	struct h2s *s = c->end[0].s;
	struct hreq *rq = c->req;
	const struct tpod *pod = s->pod;
	struct tunnel_workload wl;
	struct tunnel_authz az;
	int r;

	if (c->st != CONN_ST_REQUEST || !rq)
		return;
	if (!pod) {
		server_fail(c, 503, "pod is gone");
		return;
	}
	peer_set(&c->peer[1], pod->ns, pod->name, pod->workload, pod->identity);
	memset(&wl, 0, sizeof(wl));
	if (!t->ops.lookup(t->arg, &c->src.ip, &wl))
		peer_set(&c->peer[0], wl.ns, wl.name, wl.workload[0] ? wl.workload : NULL,
			 s->peer_id);
	else
		peer_set(&c->peer[0], NULL, NULL, NULL, s->peer_id);
	if (rq->forwarded[0])
		forwarded_parse(c, rq->forwarded);
	if (strcmp(rq->method, "CONNECT")) {
		server_fail(c, 400, "not CONNECT");
		return;
	}
	if (rq->has_scheme || rq->has_path || rq->has_protocol) {
		server_fail(c, 400, "not a classic CONNECT");
		return;
	}
	if (hbone_authority_parse(rq->authority, &c->dst)) {
		server_fail(c, 400, "bad authority");
		return;
	}
	if (!pod_has_ip(pod, &c->dst.ip)) {
		server_fail(c, 400, "destination is not this pod");
		return;
	}
	if (port_is_agent(c->dst.port)) {
		server_fail(c, 400, "destination is a mesh port");
		return;
	}
	if (c->src.ip.family != c->dst.ip.family) {
		server_fail(c, 400, "client and destination families differ");
		return;
	}
	if (t->ops.authorize) {
		az = (struct tunnel_authz){
			.path = TUNNEL_PATH_HBONE, .src_identity = s->peer_id, .src = &c->src,
			.dst = &c->dst, .dst_ns = pod->ns, .dst_name = pod->name,
			.dst_service_account = pod->sa,
		};
		r = t->ops.authorize(t->arg, &az);
		if (r) {
			server_fail(c, r >= 400 && r <= 599 ? r : 401, "denied by policy");
			return;
		}
	}
	conn_count_open(c, false, true, true);
	free(c->req);
	c->req = NULL;
	r = conn_connect(c, true);
	if (r) {
		char why[80];

		snprintf(why, sizeof(why), "delivery failed: %s", strerror(-r));
		server_fail(c, 503, why);
	}
}

/* end[1]'s connect finished. */
static void conn_connected(struct tconn *c)
{
	loop_timer_cancel(c->t->loop, &c->timer);
	if (c->dir == TUNNEL_DIR_INBOUND && c->path == TUNNEL_PATH_HBONE) {
		struct tend *e = &c->end[0];
		nghttp2_nv nv[] = { NV(":status", "200", 3) };
		nghttp2_data_provider prd = { .source.ptr = c, .read_callback = h2_read_data };

		if (!e->s || !e->s->ng || e->stream_closed ||
		    nghttp2_submit_response(e->s->ng, e->sid, nv, 1, &prd)) {
			conn_close(c, -ECONNRESET);
			return;
		}
		c->status = 200;
		h2s_kick(e->s);
	}
	c->st = CONN_ST_RELAY;
	if (c->path == TUNNEL_PATH_DIRECT && c->t->ops.shortcut_open && c->end[0].kind == END_FD &&
	    c->end[1].kind == END_FD) {
		const uint64_t relayed[2] = { c->p[0].bytes, c->p[1].bytes };

		c->shortcut = c->t->ops.shortcut_open(c->t->arg, c->end[0].fd, c->end[1].fd, relayed);
	}
}

static void conn_timer_cb(struct loop_timer *tm)
{
	struct tconn *c = tm->arg;
	char a[64];

	if (c->drain_due && loop_now_ms() >= c->drain_due) {
		conn_close(c, -ECONNABORTED);
		return;
	}
	switch (c->st) {
	case CONN_ST_CONNECTING:
		pr_info("tunnel: connect to %s timed out", addr_fmt(&c->dst, a, sizeof(a)));
		if (c->dir == TUNNEL_DIR_INBOUND && c->path == TUNNEL_PATH_HBONE)
			server_fail(c, 503, "delivery timed out");
		else
			conn_close(c, -ETIMEDOUT);
		break;
	case CONN_ST_REQUEST:
		pr_info("tunnel: HBONE CONNECT %s: no answer", addr_fmt(&c->dst, a, sizeof(a)));
		c->rst_code = NGHTTP2_CANCEL;
		conn_close(c, -ETIMEDOUT);
		break;
	default:
		break;
	}
}

static void conn_connect_failed(struct tconn *c, int err)
{
	char why[80], a[64];

	if (c->dir == TUNNEL_DIR_INBOUND && c->path == TUNNEL_PATH_HBONE) {
		snprintf(why, sizeof(why), "delivery failed: %s", strerror(-err));
		server_fail(c, 503, why);
		return;
	}
	pr_debug("tunnel: connect to %s: %s", addr_fmt(&c->dst, a, sizeof(a)), strerror(-err));
	conn_close(c, err);
}

/* ---- accepting ---- */

/* An outbound connection of pod, from its port src_port (0: not a TCP
 * client, as the waypoint's), to dst: through HBONE, direct or passthrough.
 * from: the source address (a virtual client's); NULL: the pod's own of dst's
 * family. Takes fd (closes it on failure). */
static void outbound_start(struct tpod *pod, int fd, const struct sl_ip *from, uint16_t src_port,
			   const struct tunnel_addr *dst)
{
	struct tunnel *t = pod->t;
	struct tunnel_workload wl;
	struct tconn *c;
	const struct sl_ip *src = NULL;
	bool found;
	int r;

	c = conn_new(t, TUNNEL_DIR_OUTBOUND, TUNNEL_PATH_PASSTHROUGH);
	if (!c) {
		xprt_close_rst(fd);
		return;
	}
	c->pod_ids[0] = pod->id;
	c->src_virt = pod->virt;
	r = end_set_fd(c, 0, fd, false);
	if (r) {
		c->end[0].kind = END_NONE;
		xprt_close_rst(fd);
		conn_close(c, r);
		return;
	}
	peer_from_pod(&c->peer[0], pod);
	c->dst = *dst;
	sl_ip_unmap(&c->dst.ip);
	for (size_t i = 0; !from && i < pod->n_ips; i++)
		if (pod->ips[i].family == c->dst.ip.family)
			src = &pod->ips[i];
	if (from && from->family == c->dst.ip.family)
		src = from;
	if (!src) {
		r = -EAFNOSUPPORT;
		goto fail;
	}
	c->src.ip = *src;
	c->src.port = src_port;
	memset(&wl, 0, sizeof(wl));
	found = !t->ops.lookup(t->arg, &c->dst.ip, &wl);
	if (found && wl.service[0])
		c->service = strdup(wl.service);
	if (found && wl.enrolled && !wl.local) {
		c->path = TUNNEL_PATH_HBONE;
		peer_from_wl(t, &c->peer[1], &wl, true);
		if (!c->peer[0].identity || !c->peer[1].identity) {
			r = -ENOKEY;
			goto fail;
		}
		conn_count_open(c, true, false, true);
		r = hbone_start(c);
	} else if (found && wl.enrolled && wl.local) {
		const struct tpod *dpod = pod_by_ip(t, &c->dst.ip);

		c->path = TUNNEL_PATH_DIRECT;
		peer_from_wl(t, &c->peer[1], &wl, true);
		if (dpod)
			c->pod_ids[1] = dpod->id;
		if (t->ops.authorize) {
			struct tunnel_authz az = {
				.path = TUNNEL_PATH_DIRECT, .src_identity = pod->identity,
				.src = &c->src, .dst = &c->dst, .dst_ns = wl.ns,
				.dst_name = wl.name,
				.dst_service_account = wl.service_account,
			};

			if (t->ops.authorize(t->arg, &az)) {
				r = -EACCES;
				goto fail;
			}
		}
		/* Identities are the agent's own knowledge here, and the bytes never
		 * leave the node: reported as mutual_tls, as ztunnel would. */
		conn_count_open(c, true, true, true);
		r = conn_connect(c, true);
	} else {
		if (found)
			peer_from_wl(t, &c->peer[1], &wl, false);
		conn_count_open(c, true, false, false);
		r = conn_connect(c, false);
	}
	if (!r)
		return;
fail:
	conn_close(c, r);
}

static struct tpod *pod_find(struct tunnel *t, const char *ns, const char *name, bool virt);

static void accept_outbound(struct tlisten *l, int fd, const struct tunnel_addr *peer)
{
	struct tpod *pod = l->pod;
	struct tunnel *t = pod->t;
	struct tunnel_addr dst, vip;
	int r;

	memset(&vip, 0, sizeof(vip));
	r = t->ops.orig_dst(t->arg, fd, &dst, &vip);
	if (r) {
		pr_info("tunnel: %s/%s: no original destination for a connection on %u: %s",
			pod->ns, pod->name, peer->port, strerror(-r));
		t->st.conns_total++;
		t->st.conns_failed++;
		xprt_close_rst(fd);
		return;
	}
	sl_ip_unmap(&dst.ip);
	/* A Service with L7 routes: the waypoint reads the requests and comes
	 * back through tunnel_outbound_open() for each backend. */
	if (vip.ip.family && t->ops.l7_accept) {
		struct tunnel_client cl = {
			.ns = pod->ns, .name = pod->name, .service_account = pod->sa,
			.identity = pod->identity, .ips = pod->ips, .n_ips = pod->n_ips,
			.port = peer->port,
		};

		sl_ip_unmap(&vip.ip);
		if (t->ops.l7_accept(t->arg, fd, &cl, &vip))
			return;
	}
	outbound_start(pod, fd, NULL, peer->port, &dst);
}

int tunnel_outbound_open(struct tunnel *t, const char *ns, const char *name,
			 const struct tunnel_addr *dst)
{
	struct tpod *pod = pod_find(t, ns, name, false);
	int sv[2];

	if (!pod)
		return -ENOENT;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		return -errno;
	outbound_start(pod, sv[1], NULL, 0, dst);
	return sv[0];
}

int tunnel_direct_open(struct tunnel *t, const char *ns, const char *name, const struct tunnel_addr *dst)
{
	struct tpod *pod = pod_find(t, ns, name, false);
	struct tunnel_workload wl;
	struct tunnel_addr d = *dst, src = { .port = 0 };
	const struct sl_ip *ip = NULL;

	if (!pod)
		return -ENOENT;
	bool found;

	sl_ip_unmap(&d.ip);
	memset(&wl, 0, sizeof(wl));
	found = !t->ops.lookup(t->arg, &d.ip, &wl);
	if (found && wl.enrolled && !wl.local)
		return -EXDEV;	/* HBONE: the tunnel's */
	for (size_t i = 0; i < pod->n_ips; i++)
		if (pod->ips[i].family == d.ip.family)
			ip = &pod->ips[i];
	if (!ip)
		return -EAFNOSUPPORT;
	src.ip = *ip;
	if (!found || !wl.enrolled)	/* passthrough: plain TCP from the pod */
		return sock_connect(t, &src.ip, &src.ip, &d, SL_MARK_AGENT, false, false);
	if (t->ops.authorize) {
		struct tunnel_authz az = {
			.path = TUNNEL_PATH_DIRECT, .src_identity = pod->identity, .src = &src, .dst = &d,
			.dst_ns = wl.ns, .dst_name = wl.name, .dst_service_account = wl.service_account,
		};

		if (t->ops.authorize(t->arg, &az))
			return -EACCES;
	}
	/* as the direct path's delivery socket: in the destination pod's
	 * netns, from the client pod's address */
	return sock_connect(t, &d.ip, &src.ip, &d, SL_MARK_DELIVER, true, false);
}

int tunnel_vclient_open(struct tunnel *t, const char *ns, const char *name, const struct sl_ip *src,
			const struct tunnel_addr *dst)
{
	struct tpod *v = pod_find(t, ns, name, true);
	struct tunnel_workload wl;
	struct tunnel_addr d = *dst, from = { .ip = *src, .port = 0 };
	int sv[2];

	if (!v)
		return -ENOENT;
	sl_ip_unmap(&d.ip);
	sl_ip_unmap(&from.ip);
	if (from.ip.family != d.ip.family)
		return -EAFNOSUPPORT;
	memset(&wl, 0, sizeof(wl));
	if (t->ops.lookup(t->arg, &d.ip, &wl) || !wl.enrolled)
		return -ESRCH;	/* not the mesh's: the caller's plain connection */
	if (wl.local) {
		if (t->ops.authorize) {
			struct tunnel_authz az = {
				.path = TUNNEL_PATH_DIRECT, .src_identity = v->identity, .src = &from, .dst = &d,
				.dst_ns = wl.ns, .dst_name = wl.name, .dst_service_account = wl.service_account,
			};

			if (t->ops.authorize(t->arg, &az))
				return -EACCES;
		}
		/* as tunnel_direct_open: the delivery socket itself, in the
		 * destination pod's netns, from the client's address; ports from
		 * the delivery range (conn_connect says why) */
		return sock_connect(t, &d.ip, &from.ip, &d, SL_MARK_DELIVER, true, true);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		return -errno;
	outbound_start(v, sv[1], &from.ip, 0, &d);
	return sv[0];
}

static void accept_inbound(struct tlisten *l, int fd, const struct tunnel_addr *peer)
{
	struct tpod *pod = l->pod;
	struct tunnel *t = pod->t;
	struct sockaddr_storage ss = { 0 };
	socklen_t len = sizeof(ss);
	struct tunnel_workload wl;
	struct tconn *c;
	int r;

	c = conn_new(t, TUNNEL_DIR_INBOUND, TUNNEL_PATH_PLAINTEXT);
	if (!c) {
		xprt_close_rst(fd);
		return;
	}
	c->pod_ids[1] = pod->id;
	r = end_set_fd(c, 0, fd, false);
	if (r) {
		c->end[0].kind = END_NONE;
		xprt_close_rst(fd);
		conn_close(c, r);
		return;
	}
	c->src = *peer;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1) {
		r = -errno;
		goto fail;
	}
	r = sa_to_addr(&ss, &c->dst);
	if (r)
		goto fail;
	peer_from_pod(&c->peer[1], pod);
	memset(&wl, 0, sizeof(wl));
	if (!t->ops.lookup(t->arg, &c->src.ip, &wl))
		peer_from_wl(t, &c->peer[0], &wl, false);
	if (port_is_agent(c->dst.port)) {
		r = -ELOOP;
		goto fail;
	}
	if (t->ops.authorize) {
		struct tunnel_authz az = {
			.path = TUNNEL_PATH_PLAINTEXT, .src = &c->src, .dst = &c->dst,
			.dst_ns = pod->ns, .dst_name = pod->name, .dst_service_account = pod->sa,
		};

		if (t->ops.authorize(t->arg, &az)) {
			r = -EACCES;
			goto fail;
		}
	}
	conn_count_open(c, false, true, false);
	r = conn_connect(c, true);
	if (!r)
		return;
fail:
	conn_close(c, r);
}

/* Is an HBONE connection from peer over a per-peer limit? (A walk over the
 * sessions: a node has a few hundred; new HBONE connections are rare, as
 * streams share them.) */
static bool hbone_peer_over(struct tunnel *t, const struct tunnel_addr *peer)
{
	unsigned int all = 0, shaking = 0;

	for (struct tl *n = t->sessions.next; n != &t->sessions; n = n->next) {
		const struct h2s *s = container_of(n, struct h2s, node);

		if (!s->server || s->st == H2S_ST_CLOSED || !sl_ip_eq(&s->remote.ip, &peer->ip))
			continue;
		all++;
		if (s->st != H2S_ST_READY)
			shaking++;
	}
	return shaking >= t->o.max_handshakes_per_peer || all >= t->o.max_hbone_per_peer;
}

static void accept_hbone(struct tlisten *l, int fd, const struct tunnel_addr *peer)
{
	struct tpod *pod = l->pod;
	struct tunnel *t = pod->t;
	struct sockaddr_storage ss = { 0 };
	socklen_t len = sizeof(ss);
	struct ssl_ctx_st *ctx;
	struct h2s *s;
	int r;

	if (hbone_peer_over(t, peer)) {
		char a[INET6_ADDRSTRLEN];

		/* one line per second at most: this is what a flood looks like */
		if (loop_now_ms() - t->peer_limit_logged_ms >= 1000) {
			t->peer_limit_logged_ms = loop_now_ms();
			pr_warn("tunnel: %s/%s: HBONE from %s over the per-peer limit (%u in handshake, "
				"%u in all): reset", pod->ns, pod->name, ip_fmt(&peer->ip, a, sizeof(a)),
				t->o.max_handshakes_per_peer, t->o.max_hbone_per_peer);
		}
		t->st.hbone_peer_limited++;
		xprt_close_rst(fd);
		return;
	}
	ctx = t->ops.server_ctx(t->arg, pod->ns, pod->sa);
	if (!ctx) {
		pr_warn("tunnel: %s/%s: no certificate for HBONE yet", pod->ns, pod->name);
		xprt_close_rst(fd);
		return;
	}
	s = h2s_alloc(t, true);
	if (!s) {
		SSL_CTX_free(ctx);
		xprt_close_rst(fd);
		return;
	}
	s->pod = pod;
	s->pod_id = pod->id;
	s->remote = *peer;
	if (!getsockname(fd, (struct sockaddr *)&ss, &len))
		sa_to_addr(&ss, &s->local);
	r = xprt_init_tls(&s->x, fd, ctx, true);
	SSL_CTX_free(ctx);		/* the SSL holds its own reference */
	if (!r)
		r = loop_add(t->loop, &s->io, fd, EPOLLIN, h2s_io_cb, s);
	if (r) {
		if (s->x.ops)
			s->x.ops->close(&s->x, true);
		else
			xprt_close_rst(fd);
		h2s_discard(s);
		return;
	}
	s->st = H2S_ST_HANDSHAKE;
	loop_timer_arm(t->loop, &s->timer, t->o.connect_timeout_ms);
}

static void listen_resume_cb(struct loop_timer *tm)
{
	struct tlisten *l = tm->arg;

	loop_mod(l->pod->t->loop, &l->io, EPOLLIN);
}

static void listen_cb(struct loop_io *io, uint32_t ev)
{
	struct tlisten *l = io->arg;
	struct tunnel *t = l->pod->t;

	(void)ev;
	for (int i = 0; i < ACCEPT_BUDGET; i++) {
		struct sockaddr_storage ss = { 0 };
		socklen_t len = sizeof(ss);
		struct tunnel_addr peer;
		int fd, one = 1;

		fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			t->st.accept_errors++;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				pr_warn("tunnel: %s/%s: accept: %s; pausing %d ms", l->pod->ns,
					l->pod->name, strerror(errno), ACCEPT_PAUSE_MS);
				loop_mod(t->loop, io, 0);
				loop_timer_arm(t->loop, &l->pause, ACCEPT_PAUSE_MS);
			}
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (sa_to_addr(&ss, &peer)) {
			close(fd);
			continue;
		}
		switch (l->role) {
		case TUNNEL_LISTEN_OUTBOUND:
			accept_outbound(l, fd, &peer);
			break;
		case TUNNEL_LISTEN_INBOUND:
			accept_inbound(l, fd, &peer);
			break;
		case TUNNEL_LISTEN_HBONE:
			accept_hbone(l, fd, &peer);
			break;
		case TUNNEL_LISTEN_ROLE_COUNT:
			close(fd);
			break;
		}
	}
}

/* ---- pods ---- */

/* Pods and virtual clients have names of their own (a Gateway may be named
 * as a pod of its namespace). */
static struct tpod *pod_find(struct tunnel *t, const char *ns, const char *name, bool virt)
{
	for (struct tl *n = t->pods.next; n != &t->pods; n = n->next) {
		struct tpod *p = container_of(n, struct tpod, node);

		if (p->virt == virt && !strcmp(p->ns, ns) && !strcmp(p->name, name))
			return p;
	}
	return NULL;
}

static void pod_free(struct tpod *p)
{
	if (!p)
		return;
	free(p->ns);
	free(p->name);
	free(p->sa);
	free(p->workload);
	free(p->identity);
	free(p->baggage);
	free(p);
}

static void pod_stop(struct tunnel *t, struct tpod *p)
{
	for (size_t i = 0; i < p->n_lis; i++) {
		loop_del(t->loop, &p->lis[i].io);
		loop_timer_cancel(t->loop, &p->lis[i].pause);
	}
}

/* tunnel_pod_add, and tunnel_vclient_add (virt: no listeners, no IPs). */
static int pod_add(struct tunnel *t, const struct tunnel_pod *pod, bool virt)
{
	const char *wl, *kind, *app, *ver;
	struct tpod *p;
	int r = -ENOMEM;

	if (!pod->ns || !pod->name || !pod->service_account || pod->n_ips > 2 ||
	    pod->n_listeners > TUNNEL_POD_LISTENERS)
		return -EINVAL;
	for (size_t i = 0; i < pod->n_listeners; i++)
		if (pod->listeners[i].fd < 0 || pod->listeners[i].role >= TUNNEL_LISTEN_ROLE_COUNT)
			return -EINVAL;
	if (pod_find(t, pod->ns, pod->name, virt))
		return -EEXIST;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->t = t;
	p->virt = virt;
	p->id = ++t->next_id;
	wl = pod->workload ? pod->workload : pod->name;
	kind = pod->workload_kind ? pod->workload_kind : "pod";
	app = pod->app ? pod->app : wl;
	ver = pod->version ? pod->version : "latest";
	p->ns = strdup(pod->ns);
	p->name = strdup(pod->name);
	p->sa = strdup(pod->service_account);
	p->workload = strdup(wl);
	p->identity = spiffe_uri_of(t, pod->ns, pod->service_account);
	if (asprintf(&p->baggage,
		     "k8s.cluster.name=%s,k8s.namespace.name=%s,k8s.%s.name=%s,service.name=%s,"
		     "service.version=%s",
		     t->cluster, pod->ns, kind, wl, app, ver) < 0)
		p->baggage = NULL;
	if (!p->ns || !p->name || !p->sa || !p->workload || !p->identity || !p->baggage)
		goto fail;
	for (size_t i = 0; i < pod->n_ips; i++) {
		p->ips[i] = pod->ips[i];
		sl_ip_unmap(&p->ips[i]);
	}
	p->n_ips = pod->n_ips;
	for (size_t i = 0; i < pod->n_listeners; i++) {
		struct tlisten *l = &p->lis[i];
		int fd = pod->listeners[i].fd;

		l->pod = p;
		l->role = pod->listeners[i].role;
		l->fd = fd;
		l->io.fd = -1;
		loop_timer_init(&l->pause, listen_resume_cb, l);
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1) {
			r = -errno;
			goto fail;
		}
		r = loop_add(t->loop, &l->io, fd, EPOLLIN, listen_cb, l);
		if (r) {
			l->io.fd = -1;
			goto fail;
		}
		p->n_lis = i + 1;
	}
	tl_add_tail(&t->pods, &p->node);
	pr_debug("tunnel: serving %s %s/%s (%zu listeners)", virt ? "virtual client" : "pod", p->ns, p->name,
		 p->n_lis);
	return 0;
fail:
	pod_stop(t, p);
	pod_free(p);
	return r;
}

int tunnel_pod_add(struct tunnel *t, const struct tunnel_pod *pod)
{
	return pod_add(t, pod, false);
}

int tunnel_vclient_add(struct tunnel *t, const struct tunnel_vclient *v)
{
	const struct tunnel_pod pod = {
		.ns = v->ns, .name = v->name, .service_account = v->service_account,
		.workload = v->workload, .workload_kind = v->workload_kind,
	};

	return pod_add(t, &pod, true);
}

/* GOAWAY to the sessions of pod id (0: all) and a deadline ms from now for
 * them and its connections (0 ms: those close now). pod_gone: the pod's
 * struct goes away. */
static void drain_some(struct tunnel *t, uint64_t pod_id, unsigned int ms, bool pod_gone)
{
	uint64_t due = loop_now_ms() + ms;
	struct tl *n, *next;

	for (n = t->sessions.next; n != &t->sessions; n = next) {
		struct h2s *s = container_of(n, struct h2s, node);
		bool idle = !s->n_streams && tl_empty(&s->streams);

		next = n->next;
		if (pod_id && s->pod_id != pod_id)
			continue;
		if (pod_gone)
			s->pod = NULL;
		s->goaway = true;
		/* A server's GOAWAY sends the peer's next streams elsewhere. A
		 * client takes no new streams from its pool, but may still open
		 * those already waiting on it, which a peer would refuse after
		 * our GOAWAY: it says goodbye once idle (h2s_timer_cb). */
		if (s->st == H2S_ST_READY && s->server) {
			nghttp2_submit_goaway(s->ng, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(s->ng),
					      NGHTTP2_NO_ERROR, NULL, 0);
			h2s_kick(s);
		}
		s->drain_due = due;
		loop_timer_arm(t->loop, &s->timer, idle && s->st == H2S_ST_READY ? 0 : ms);
	}
	for (n = t->conns.next; n != &t->conns; n = next) {
		struct tconn *c = container_of(n, struct tconn, node);

		next = n->next;
		if (pod_id && c->pod_ids[0] != pod_id && c->pod_ids[1] != pod_id)
			continue;
		if (!ms) {
			conn_close(c, -ECONNABORTED);
			continue;
		}
		c->drain_due = due;
		if (!loop_timer_armed(&c->timer) || c->timer.due_ms > due)
			conn_arm(c, ms);
	}
}

/* tunnel_pod_remove and tunnel_vclient_remove. */
static int pod_remove(struct tunnel *t, const char *ns, const char *name, bool virt)
{
	struct tpod *p = pod_find(t, ns, name, virt);

	if (!p)
		return -ENOENT;
	pod_stop(t, p);
	drain_some(t, p->id, t->o.drain_ms, true);
	tl_del(&p->node);
	pr_debug("tunnel: stopped serving %s %s/%s", virt ? "virtual client" : "pod", p->ns, p->name);
	pod_free(p);
	return 0;
}

void tunnel_drain(struct tunnel *t, unsigned int ms)
{
	for (struct tl *n = t->pods.next; n != &t->pods; n = n->next)
		pod_stop(t, container_of(n, struct tpod, node));
	t->drain_due = loop_now_ms() + ms;
	drain_some(t, 0, ms, false);
}

/* ---- relays handed over to a successor agent ---- */

#define RELAY_META_VERSION	1

static json_t *peer_json(const struct tpeer *p)
{
	return json_pack("{s:s?, s:s?, s:s?, s:s?}", "ns", p->ns, "name", p->name, "workload", p->workload,
			 "identity", p->identity);
}

static const struct tpod *pod_by_id(const struct tunnel *t, uint64_t id)
{
	for (const struct tl *n = t->pods.next; id && n != &t->pods; n = n->next) {
		const struct tpod *p = container_of(n, struct tpod, node);

		if (p->id == id)
			return p;
	}
	return NULL;
}

/* What a successor needs to carry c on: JSON text (malloc'ed) or NULL. */
static char *relay_meta(const struct tconn *c)
{
	char a[64], b[64];
	json_t *pods = json_array(), *o;
	char *text;

	for (int i = 0; i < 2 && pods; i++) {
		const struct tpod *p = pod_by_id(c->t, c->pod_ids[i]);

		json_array_append_new(pods, p ? json_pack("[s, s]", p->ns, p->name) : json_null());
	}
	o = json_pack("{s:i, s:i, s:i, s:s, s:s, s:o, s:[o, o], s:s?, s:I, s:[I, I], s:[b, b], s:b}",
		      "v", RELAY_META_VERSION, "dir", (int)c->dir, "path", (int)c->path,
		      "src", addr_fmt(&c->src, a, sizeof(a)), "dst", addr_fmt(&c->dst, b, sizeof(b)),
		      "pods", pods, "peers", peer_json(&c->peer[0]), peer_json(&c->peer[1]),
		      "service", c->service, "start_ms", (json_int_t)c->start_ms,
		      "bytes", (json_int_t)c->p[0].bytes, (json_int_t)c->p[1].bytes,
		      "reporters", c->ser[0] != NULL, c->ser[1] != NULL,
		      "mtls", (c->ser[0] && c->ser[0]->mtls) || (c->ser[1] && c->ser[1]->mtls));
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

/* A relay both of whose ends are sockets, moving bytes both ways. */
static bool relay_exportable(const struct tconn *c)
{
	if (c->st != CONN_ST_RELAY || c->src_virt || c->zombie)
		return false;
	for (int i = 0; i < 2; i++)
		if (c->end[i].kind != END_FD || c->end[i].connecting || c->end[i].err || c->p[i].eof)
			return false;
	return true;
}

/* Take what p holds (pipe first: it is flushed first) into *out. */
static int pipe_take(struct tpipe *p, struct iovec *out)
{
	size_t len = p->in_pipe + p->b.data, off = 0;
	char *m;

	out->iov_base = NULL;
	out->iov_len = 0;
	if (!len)
		return 0;
	m = malloc(len);
	if (!m)
		return -ENOMEM;
	while (off < p->in_pipe) {
		ssize_t n = read(p->pfd[0], m + off, p->in_pipe - off);

		if (n <= 0) {
			free(m);
			return n ? -errno : -EIO;
		}
		off += (size_t)n;
	}
	memcpy(m + off, buf_head(&p->b), p->b.data);
	out->iov_base = m;
	out->iov_len = len;
	return 0;
}

size_t tunnel_export(struct tunnel *t, int (*send)(void *arg, const struct tunnel_relay *r), void *arg)
{
	struct tl *n, *next;
	size_t sent = 0;

	for (n = t->conns.next; n != &t->conns; n = next) {
		struct tconn *c = container_of(n, struct tconn, node);
		struct tunnel_relay r = { .fd = { c->end[0].fd, c->end[1].fd } };
		int err;

		next = n->next;
		if (!relay_exportable(c))
			continue;
		/* From here on the bytes are the successor's or nobody's. */
		for (int i = 0; i < 2; i++)
			loop_del(t->loop, &c->end[i].io);
		r.meta = relay_meta(c);
		err = r.meta ? pipe_take(&c->p[0], &r.data[0]) : -ENOMEM;
		if (!err)
			err = pipe_take(&c->p[1], &r.data[1]);
		if (!err)
			err = send(arg, &r);
		free(r.meta);
		free(r.data[0].iov_base);
		free(r.data[1].iov_base);
		if (err) {
			/* what was taken out of the pipes is lost: reset, as a drain would */
			conn_close(c, err);
			continue;
		}
		c->exported = true;
		conn_close(c, 0);	/* our copies of the fds: no FIN, the successor holds them */
		sent++;
	}
	return sent;
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v && *v ? v : NULL;
}

static void peer_of_json(struct tpeer *p, const json_t *o)
{
	peer_set(p, jstr(o, "ns"), jstr(o, "name"), jstr(o, "workload"), jstr(o, "identity"));
}

int tunnel_adopt(struct tunnel *t, const char *meta, const int fd[2], const struct iovec data[2])
{
	json_t *o = json_loads(meta, 0, NULL), *pods, *rep, *bytes;
	struct tunnel_addr src, dst;
	struct tconn *c;
	int dir, path, err = 0;

	pods = json_object_get(o, "pods");
	rep = json_object_get(o, "reporters");
	bytes = json_object_get(o, "bytes");
	dir = (int)json_integer_value(json_object_get(o, "dir"));
	path = (int)json_integer_value(json_object_get(o, "path"));
	if (!o || json_integer_value(json_object_get(o, "v")) != RELAY_META_VERSION ||
	    json_array_size(pods) != 2 || json_array_size(rep) != 2 || json_array_size(bytes) != 2 ||
	    json_array_size(json_object_get(o, "peers")) != 2 || dir < 0 || dir >= TUNNEL_DIR_COUNT ||
	    path < 0 || path >= TUNNEL_PATH_COUNT || !jstr(o, "src") || !jstr(o, "dst") ||
	    hbone_authority_parse(jstr(o, "src"), &src) || hbone_authority_parse(jstr(o, "dst"), &dst)) {
		json_decref(o);
		xprt_close_rst(fd[0]);
		xprt_close_rst(fd[1]);
		return -EINVAL;
	}
	c = conn_new(t, (enum tunnel_dir)dir, (enum tunnel_path)path);
	if (!c) {
		json_decref(o);
		xprt_close_rst(fd[0]);
		xprt_close_rst(fd[1]);
		return -ENOMEM;
	}
	c->src = src;
	c->dst = dst;
	c->start_ms = (uint64_t)json_integer_value(json_object_get(o, "start_ms"));
	c->service = xstrdup(jstr(o, "service"));
	for (int i = 0; i < 2; i++) {
		const json_t *pod = json_array_get(pods, i);
		const char *ns = json_string_value(json_array_get(pod, 0));
		const char *name = json_string_value(json_array_get(pod, 1));
		const struct tpod *p = ns && name ? pod_find(t, ns, name, false) : NULL;

		c->pod_ids[i] = p ? p->id : 0;
		peer_of_json(&c->peer[i], json_array_get(json_object_get(o, "peers"), i));
		c->p[i].bytes = (uint64_t)json_integer_value(json_array_get(bytes, i));
		if (data[i].iov_len) {
			/* bytes held first: a splice pipe would overtake them */
			c->p[i].nopipe = true;
			err = buf_reserve(t, &c->p[i].b, data[i].iov_len);
			if (!err)
				buf_put(&c->p[i].b, data[i].iov_base, data[i].iov_len);
		}
	}
	conn_count_open(c, json_is_true(json_array_get(rep, 0)), json_is_true(json_array_get(rep, 1)),
			json_is_true(json_object_get(o, "mtls")));
	json_decref(o);
	c->st = CONN_ST_RELAY;
	/* both ends owned before either is watched: a failure below resets both */
	for (int i = 0; i < 2; i++) {
		c->end[i].kind = END_FD;
		c->end[i].fd = fd[i];
	}
	for (int i = 0; i < 2 && !err; i++)
		err = end_set_fd(c, i, fd[i], false);
	if (err) {
		conn_close(c, err);
		return err;
	}
	if (c->path == TUNNEL_PATH_DIRECT && t->ops.shortcut_open) {
		const uint64_t relayed[2] = { c->p[0].bytes, c->p[1].bytes };

		c->shortcut = t->ops.shortcut_open(t->arg, fd[0], fd[1], relayed);
	}
	conn_wake(c);
	return 0;
}

bool tunnel_idle(const struct tunnel *t)
{
	return tl_empty(&t->conns) && tl_empty(&t->sessions);
}

/* Append to buf (size > 0) at *len; stops at the end, always terminated. */
static void __attribute__((format(printf, 4, 5)))
snprintf_add(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*len >= size - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *len, size - *len, fmt, ap);
	va_end(ap);
	if (n > 0)
		*len = *len + (size_t)n < size - 1 ? *len + (size_t)n : size - 1;
}

void tunnel_describe_open(const struct tunnel *t, char *buf, size_t size)
{
	unsigned int conns[CONN_ST_COUNT] = { 0 }, sess[2][H2S_ST_COUNT] = { 0 }, streams = 0;
	size_t len = 0;
	const struct tl *n;

	for (n = t->conns.next; n != &t->conns; n = n->next)
		conns[container_of(n, struct tconn, node)->st]++;
	for (n = t->sessions.next; n != &t->sessions; n = n->next) {
		const struct h2s *s = container_of(n, struct h2s, node);

		sess[s->server][s->st]++;
		streams += s->n_streams;
	}
	buf[0] = 0;
	for (int i = 0; i < CONN_ST_COUNT; i++)
		if (conns[i])
			snprintf_add(buf, size, &len, "%s%u %s", len ? ", " : "", conns[i], conn_st_str(i));
	snprintf_add(buf, size, &len, "%ssessions:", len ? "; " : "");
	for (int side = 0; side < 2; side++)
		for (int i = 0; i < H2S_ST_COUNT; i++)
			if (sess[side][i])
				snprintf_add(buf, size, &len, " %u %s %s", sess[side][i],
					     side ? "server" : "client", h2s_st_str(i));
	snprintf_add(buf, size, &len, " (%u streams)", streams);
}

int tunnel_pod_remove(struct tunnel *t, const char *ns, const char *name)
{
	return pod_remove(t, ns, name, false);
}

int tunnel_vclient_remove(struct tunnel *t, const char *ns, const char *name)
{
	return pod_remove(t, ns, name, true);
}

int tunnel_vclient_names(struct tunnel *t, int (*cb)(void *arg, const char *ns, const char *name), void *arg)
{
	struct tl *n, *next;
	int r;

	for (n = t->pods.next; n != &t->pods; n = next) {
		const struct tpod *p = container_of(n, struct tpod, node);

		next = n->next;	/* cb may remove this one */
		if (p->virt && (r = cb(arg, p->ns, p->name)))
			return r;
	}
	return 0;
}

/* ---- setup ---- */

int tunnel_new(struct tunnel **out, struct loop *loop, const struct tunnel_ops *ops, void *arg,
	       const struct tunnel_opts *opts)
{
	static const struct tunnel_opts none;
	struct tunnel *t;

	if (!ops->orig_dst || !ops->lookup || !ops->pod_socket || !ops->client_ctx ||
	    !ops->server_ctx || !ops->peer_check)
		return -EINVAL;
	if (!opts)
		opts = &none;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->loop = loop;
	t->ops = *ops;
	t->arg = arg;
	t->o = *opts;
	if (!t->o.hbone_port)
		t->o.hbone_port = SL_PORT_HBONE;
	if (!t->o.connect_timeout_ms)
		t->o.connect_timeout_ms = 10000;
	if (!t->o.response_timeout_ms)
		t->o.response_timeout_ms = 30000;
	if (!t->o.pool_idle_ms)
		t->o.pool_idle_ms = 300000;
	if (!t->o.max_streams_per_conn)
		t->o.max_streams_per_conn = 100;
	if (!t->o.keepalive_ms)
		t->o.keepalive_ms = 10000;
	if (!t->o.keepalive_timeout_ms)
		t->o.keepalive_timeout_ms = 20000;
	if (!t->o.drain_ms)
		t->o.drain_ms = 5000;
	if (!t->o.max_handshakes_per_peer)
		t->o.max_handshakes_per_peer = 64;
	if (!t->o.max_hbone_per_peer)
		t->o.max_hbone_per_peer = 1024;
	if (!t->o.buf_size)
		t->o.buf_size = TUNNEL_BUF_DEFAULT;
	if (t->o.buf_size < 4096)
		t->o.buf_size = 4096;
	t->trust_domain = strdup(opts->trust_domain ? opts->trust_domain : "cluster.local");
	t->cluster = strdup(opts->cluster ? opts->cluster : "Kubernetes");
	t->o.trust_domain = NULL;
	t->o.cluster = NULL;
	tl_init(&t->pods);
	tl_init(&t->conns);
	tl_init(&t->sessions);
	tl_init(&t->runq_c);
	tl_init(&t->runq_s);
	loop_timer_init(&t->tasks, tasks_run, t);
	t->pool = calloc(TUNNEL_POOL_MAX, sizeof(*t->pool));
	t->rx = malloc(H2_RX_SIZE);
	if (!t->trust_domain || !t->cluster || !t->pool || !t->rx ||
	    nghttp2_session_callbacks_new(&t->cbs) || nghttp2_option_new(&t->ngopt)) {
		tunnel_free(t);
		return -ENOMEM;
	}
	nghttp2_session_callbacks_set_on_frame_recv_callback(t->cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(t->cbs, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(t->cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(t->cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_header_callback(t->cbs, on_header);
	nghttp2_session_callbacks_set_on_begin_headers_callback(t->cbs, on_begin_headers);
	nghttp2_session_callbacks_set_data_source_read_length_callback(t->cbs, h2_read_length);
	nghttp2_option_set_no_auto_window_update(t->ngopt, 1);
	*out = t;
	return 0;
}

void tunnel_free(struct tunnel *t)
{
	if (!t)
		return;
	for (struct tl *n = t->pods.next; n != &t->pods; n = n->next)
		pod_stop(t, container_of(n, struct tpod, node));
	while (!tl_empty(&t->conns))
		conn_close(container_of(t->conns.next, struct tconn, node), -ECONNABORTED);
	while (!tl_empty(&t->sessions)) {
		struct h2s *s = container_of(t->sessions.next, struct h2s, node);

		h2s_close(s, -ECONNABORTED);
	}
	/* Zombies and the dead: nothing references them any more. */
	graveyard_empty(t);
	while (!tl_empty(&t->pods)) {
		struct tpod *p = container_of(t->pods.next, struct tpod, node);

		tl_del(&p->node);
		pod_free(p);
	}
	loop_timer_cancel(t->loop, &t->tasks);
	for (int i = 0; i < SERIES_BUCKETS; i++) {
		while (t->series[i]) {
			struct series *s = t->series[i];

			t->series[i] = s->next;
			for (int j = 0; j < L_COUNT; j++)
				free(s->lbl[j]);
			free(s);
		}
	}
	for (size_t i = 0; i < t->n_pool; i++)
		free(t->pool[i]);
	free(t->pool);
	free(t->rx);
	if (t->cbs)
		nghttp2_session_callbacks_del(t->cbs);
	if (t->ngopt)
		nghttp2_option_del(t->ngopt);
	free(t->trust_domain);
	free(t->cluster);
	free(t);
}

/* ---- observability ---- */

const char *tunnel_dir_str(enum tunnel_dir d)
{
	return d == TUNNEL_DIR_INBOUND ? "inbound" : "outbound";
}

const char *tunnel_path_str(enum tunnel_path p)
{
	switch (p) {
	case TUNNEL_PATH_HBONE:
		return "hbone";
	case TUNNEL_PATH_DIRECT:
		return "direct";
	case TUNNEL_PATH_PASSTHROUGH:
		return "passthrough";
	case TUNNEL_PATH_PLAINTEXT:
		return "plaintext";
	case TUNNEL_PATH_COUNT:
		break;
	}
	return "?";
}

static const char *s_or_empty(const char *s)
{
	return s ? s : "";
}

int tunnel_conn_foreach(struct tunnel *t,
			int (*cb)(void *arg, const struct tunnel_conn_info *c), void *arg)
{
	for (struct tl *n = t->conns.next; n != &t->conns; n = n->next) {
		const struct tconn *c = container_of(n, struct tconn, node);
		uint64_t direct[2] = { 0, 0 };
		struct tunnel_conn_info ci;

		if (c->shortcut)
			t->ops.shortcut_bytes(t->arg, c->shortcut, direct);
		ci = (struct tunnel_conn_info){
			.id = c->id,
			.dir = c->dir,
			.path = c->path,
			.state = c->st == CONN_ST_RELAY && (c->p[0].done || c->p[1].done) ?
					 "half-closed" : conn_st_str(c->st),
			.src = c->src,
			.dst = c->dst,
			.src_ns = s_or_empty(c->peer[0].ns),
			.src_name = s_or_empty(c->peer[0].name),
			.src_workload = s_or_empty(c->peer[0].workload),
			.src_identity = s_or_empty(c->peer[0].identity),
			.dst_ns = s_or_empty(c->peer[1].ns),
			.dst_name = s_or_empty(c->peer[1].name),
			.dst_workload = s_or_empty(c->peer[1].workload),
			.dst_identity = s_or_empty(c->peer[1].identity),
			.dst_service = s_or_empty(c->service),
			.bytes_to_dst = c->p[0].bytes + direct[0],
			.bytes_to_src = c->p[1].bytes + direct[1],
			.shortcut = c->shortcut != NULL,
			.buffered = c->p[0].b.data + c->p[0].in_pipe + c->p[1].b.data +
				    c->p[1].in_pipe,
			.start_ms = c->start_ms,
		};
		int r = cb(arg, &ci);

		if (r)
			return r;
	}
	return 0;
}

void tunnel_stats_get(const struct tunnel *t, struct tunnel_stats *st)
{
	*st = t->st;
}

size_t tunnel_mem_trim(struct tunnel *t)
{
	size_t freed = 0;
	struct tl *n;

	/* spares no connection needed all period long: the level it never went
	 * under, above a few kept for the next burst */
	while (t->n_pool > TUNNEL_POOL_KEEP && t->pool_low > TUNNEL_POOL_KEEP) {
		free(t->pool[--t->n_pool]);
		t->pool_low--;
		freed += t->o.buf_size;
	}
	t->pool_low = t->n_pool;
	/* an HBONE session's output area is touched as deep as its largest
	 * burst of frames went; an empty one is taken again at the next send */
	for (n = t->sessions.next; n != &t->sessions; n = n->next) {
		struct h2s *s = container_of(n, struct h2s, node);

		if (s->out.area && !s->out.data && !s->in_ng) {
			freed += s->out.size;
			free(s->out.area);
			s->out = BUF_NULL;
		}
	}
	return freed;
}

void tunnel_mem_get(const struct tunnel *t, struct tunnel_mem *m)
{
	const struct tl *n;

	memset(m, 0, sizeof(*m));
	for (n = t->conns.next; n != &t->conns; n = n->next) {
		const struct tconn *c = container_of(n, struct tconn, node);

		m->conns++;
		m->conn_bytes += sizeof(*c) + heap_size(c->req) + heap_size(c->service);
		for (int i = 0; i < 2; i++) {
			m->conn_bytes += heap_size(c->peer[i].ns) + heap_size(c->peer[i].name) +
					 heap_size(c->peer[i].workload) + heap_size(c->peer[i].identity);
			if (c->p[i].b.area) {
				m->relay_bufs++;
				m->relay_buf_bytes += c->p[i].b.size;
			}
			if (c->p[i].pfd[0] >= 0) {
				m->pipes++;
				m->pipe_bytes += c->p[i].pipe_cap;
			}
		}
	}
	m->spare_bufs = t->n_pool;
	m->spare_buf_bytes = (uint64_t)t->n_pool * t->o.buf_size;
	m->spare_max = TUNNEL_POOL_MAX;
	for (n = t->sessions.next; n != &t->sessions; n = n->next) {
		const struct h2s *s = container_of(n, struct h2s, node);

		m->sessions++;
		m->session_out_bytes += s->out.size;
		m->session_bytes += sizeof(*s) + s->out.size + heap_size(s->src_id) + heap_size(s->dst_id);
	}
}

static void prom_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

int tunnel_metrics_write(struct tunnel *t, FILE *f)
{
	static const struct {
		const char *name, *help;
	} m[4] = {
		{ "istio_tcp_connections_opened_total",
		  "The total number of TCP connections opened" },
		{ "istio_tcp_connections_closed_total",
		  "The total number of TCP connections closed" },
		{ "istio_tcp_sent_bytes_total",
		  "The size of total bytes sent during response in case of a TCP connection" },
		{ "istio_tcp_received_bytes_total",
		  "The size of total bytes received during request in case of a TCP connection" },
	};

	for (int k = 0; k < 4; k++) {
		fprintf(f, "# HELP %s %s\n# TYPE %s counter\n", m[k].name, m[k].help, m[k].name);
		for (int b = 0; b < SERIES_BUCKETS; b++) {
			for (const struct series *s = t->series[b]; s; s = s->next) {
				uint64_t v = k == 0 ? s->opened : k == 1 ? s->closed :
					     k == 2 ? s->sent : s->received;

				fprintf(f, "%s{reporter=\"%s\"", m[k].name,
					s->dst_reporter ? "destination" : "source");
				for (int i = 0; i < L_COUNT; i++) {
					fprintf(f, ",%s=\"", series_label_names[i]);
					prom_escape(f, s->lbl[i]);
					fputc('"', f);
				}
				fprintf(f, ",connection_security_policy=\"%s\","
					"request_protocol=\"tcp\"} %llu\n",
					s->mtls ? "mutual_tls" : "none", (unsigned long long)v);
			}
		}
	}
	return ferror(f) ? -EIO : 0;
}
