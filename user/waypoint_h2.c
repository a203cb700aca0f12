// SPDX-License-Identifier: Apache-2.0
/* waypoint_h2.c - HTTP/2 on the waypoint's client connections (h2c prior
 * knowledge, or h2 after TLS), with nghttp2 on both sides.
 *
 * Each client stream is one request: routed like an HTTP/1.1 one
 * (wp_decide), then sent as a stream of an HTTP/2 connection to an
 * endpoint of the chosen backend, picked per request (struct h2up: one per
 * client pod, backend and endpoint, shared by that pod's connections to the
 * waypoint), or, when the backend's
 * port says HTTP/1.1 (appProtocol http; or says nothing to a client that
 * got h2 by ALPN), translated into an HTTP/1.1 request on a pooled
 * connection (struct h1up). gRPC rides on HTTP/2 as it is: trailers pass
 * through, and an answer the waypoint makes itself to a gRPC request is a
 * trailers-only gRPC status. A WebSocket (RFC 8441 extended CONNECT: the
 * session says ENABLE_CONNECT_PROTOCOL) is routed as a GET and goes on as
 * an extended CONNECT to an HTTP/2 backend that takes one, or as a GET with
 * Upgrade to an HTTP/1.1 one, whose bytes after the 101 are the stream's
 * DATA both ways (h1_tunnel_step).
 *
 * Bodies move through one bounded buffer per stream and direction; a side's
 * flow-control window reopens (nghttp2_session_consume) only as the other
 * side takes the bytes, so a slow reader slows its writer, not the agent's
 * memory.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "log.h"
#include "waypoint_int.h"

#define BODY_BUF	65536		/* = the initial stream window: never overflows */
#define MAX_STREAMS	100
#define MAX_HDRS	WAYPOINT_HEADERS_MAX
#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define KEEP_SPARES	0	/* ASan finds a use after free only in freed memory */
#else
#define KEEP_SPARES	1
#endif

struct h2hdr {
	char *name, *value;
	size_t nlen, vlen;
};

/* A header list. Its strings live in blocks that never move (pointers to
 * them stay valid): the one inline here, which holds a usual request's or
 * response's, then blocks from malloc; not two mallocs per field. */
struct hblk {
	struct hblk *next;
	char data[];
};

struct hvec {
	struct h2hdr v[MAX_HDRS];
	size_t n;
	size_t bytes;
	char *room;			/* the free part of the current block */
	size_t room_len;
	struct hblk *blocks;		/* from malloc */
	char first[1024];
};

struct h2up;
struct h1up;

/* One request: a client stream, and its stream upstream (or its HTTP/1.1
 * exchange on h1). */
struct h2st {
	struct h2st *next, *prev;
	struct wp_h2 *h;
	int32_t cid, uid;		/* client / upstream stream ids (uid 0: none) */
	struct h2up *up;
	struct h2st *unext, *uprev;	/* on up's list of streams */
	struct h1up *h1;		/* while an HTTP/1.1 upstream carries it */
	struct hvec *req, *resp, *trl;
	struct buf reqb, respb;
	bool req_eof, resp_eof, resp_submitted, up_closed, client_closed, trl_pending, counted;
	bool grpc, local, too_big;
	bool routed;			/* its head is all here (till then the timer is the
					 * header timeout, then the route's request timeout) */
	unsigned int status;
	uint64_t start_ms;
	struct loop_timer timer;	/* the route's request timeout */
	char method[16], path[256];
	struct waypoint_dst dst;
	char svc_name[320];
	size_t edits_len;
	const char *local_body;
	size_t local_len, local_off;
	/* retries (on an HTTP/2 upstream): the policy, the request's fields as
	 * sent, and its body as it came while that fits WP_RETRY_BODY_MAX
	 * (past it: rbody_over, no retry; the body streams as it would) */
	struct wp_retry retry;
	struct hvec *sent;
	char *rbody;
	size_t rbody_len, rbody_cap;
	size_t resend, resend_off;	/* a retry sends rbody's first resend bytes
					 * (what went before) again, then reqb's */
	bool rbody_over;
	/* WebSocket over HTTP/2 (RFC 8441 extended CONNECT): ws from the
	 * request on; ws_wait while its HTTP/2 upstream's SETTINGS have not
	 * said whether it takes extended CONNECT (the fields wait in sent);
	 * ws_open once the backend accepted (2xx, or 101 over HTTP/1.1): then
	 * timer is the idle timeout, from moved_ms */
	bool ws, ws_wait, ws_open;
	uint64_t moved_ms;
	struct loop_timer rtimer;	/* the backoff */
	char key[320];			/* its upstream's pool key */
	/* last: a new stream clears what comes before (cl_on_begin_headers) */
	char edits[4096];		/* response header edits, packed "op\0name\0value\0" */
};

/* An HTTP/2 connection to one endpoint of a backend Service, on behalf of
 * one client pod (or Gateway), whose identity it carries into the mesh.
 * The pod's connections to the waypoint share it: their streams multiplex
 * on it (as haproxy's http-reuse and Envoy's connection pools do), so what
 * several of them sent in one batch of events reaches the backend in one
 * write, and its answers come back in one read. */
struct h2up {
	struct h2up *next;		/* in its pool bucket */
	struct waypoint *w;
	int fd;
	struct loop_io io;
	nghttp2_session *ng;
	struct h2st *streams;		/* the streams it carries */
	size_t n_streams;
	struct loop_timer idle;		/* no stream for the idle timeout: it closes */
	struct h2up *qnext;		/* on the pool's list to write */
	bool queued;
	bool dead;
	bool rd;			/* may have bytes (as struct wside's rd) */
	bool settings_in;		/* the backend's SETTINGS came */
	struct buf out;
	struct waypoint_dst dst;	/* its endpoint (dst.addr: as picked; port 0: not) */
	char key[640];			/* backend and client (up_key) */
	char out_area[32768];
};

#define POOL_BUCKETS	256

/* The waypoint's HTTP/2 upstreams by key, and the sessions (both sides)
 * with something to write once the current batch of events is done: one
 * write each for all the batch gave them. */
struct h2pool {
	struct h2up *bucket[POOL_BUCKETS];
	struct h2up *up_q;
	struct wp_h2 *h_q;
	struct loop *loop;
	struct loop_timer flush;	/* 0 ms: runs after the batch */
};

/* An HTTP/1.1 connection to one endpoint of a backend Service whose port
 * says appProtocol http: one stream's request at a time (translated), kept
 * for the next stream to the same backend when its response left it
 * reusable.
 *
 *   client stream               h1up                       backend
 *   HEADERS  --(stream_route)-> "GET /p HTTP/1.1\r\n
 *                               host: <:authority>..."  -->
 *   DATA     --(reqb)---------> body, chunked when no content-length -->
 *   HEADERS  <-(respond_upstream) http-parser head       <--
 *   DATA     <-(respb, resp_read) decoded body           <--
 *   trailers <-(st->trl)          chunked trailers       <--
 */
struct h1up {
	struct h1up *next;
	struct wp_h2 *h;
	struct h2st *st;		/* the stream it carries; NULL: idle (pooled) or dead */
	int fd;
	struct loop_io io;
	http_parser p;
	struct buf in, out;
	char key[320];
	struct waypoint_dst dst;
	/* the response field being parsed (http-parser may hand it over in parts) */
	char fname[256], fval[8192];
	size_t fname_len, fval_len;
	bool in_value, field_bad;
	bool head_method;		/* the request is HEAD: its response has no body */
	bool chunked;			/* the request body goes chunked */
	bool req_sent;			/* the request's last byte is in out */
	bool head_done, resp_done, keepalive;
	bool rd, eof, dead;
	bool tunnel;			/* a WebSocket after 101: raw bytes both ways */
	bool shut;			/* tunnel: the client's END_STREAM passed on (FIN) */
	bool err;			/* the socket failed (not a clean end) */
	char in_area[16384];
	char out_area[WAYPOINT_HEAD_MAX + 8192];	/* a request head, then body chunks */
};

struct wp_h2 {
	struct wconn *c;
	nghttp2_session *ng;
	struct h2st *streams;
	struct h1up *h1s;
	struct wp_h2 *qnext;		/* on the pool's list to write */
	bool queued;
	bool alpn_h2;			/* HTTP/2 by TLS ALPN, not by prior knowledge */
	bool goaway;			/* an idle or header timeout's GOAWAY is on its way:
					 * the connection closes once it is out */
};

/* ---- small helpers ---- */

static struct hvec *hvec_new(struct waypoint *w)
{
	/* fields past n are written before read */
	struct hvec *v = w->n_spare_hv ? w->spare_hv[--w->n_spare_hv] : malloc(sizeof(*v));

	if (!v)
		return NULL;
	v->n = 0;
	v->bytes = 0;
	v->room = v->first;
	v->room_len = sizeof(v->first);
	v->blocks = NULL;
	return v;
}

static void hvec_free(struct waypoint *w, struct hvec *v)
{
	if (!v)
		return;
	while (v->blocks) {
		struct hblk *b = v->blocks;

		v->blocks = b->next;
		free(b);
	}
	if (KEEP_SPARES && w->n_spare_hv < WP_SPARE_HVECS)
		w->spare_hv[w->n_spare_hv++] = v;
	else
		free(v);
}

/* n bytes of the list's storage, or NULL. */
static char *hvec_store(struct hvec *v, size_t n)
{
	char *p;

	if (n > v->room_len) {
		size_t size = n > 4096 ? n : 4096;
		struct hblk *b = malloc(sizeof(*b) + size);

		if (!b)
			return NULL;
		b->next = v->blocks;
		v->blocks = b;
		v->room = b->data;
		v->room_len = size;
	}
	p = v->room;
	v->room += n;
	v->room_len -= n;
	return p;
}

/* false when the list is full or too large (the stream is then refused) */
static bool hvec_add(struct hvec *v, const uint8_t *n, size_t nl, const uint8_t *val, size_t vl)
{
	struct h2hdr *e;

	if (v->n == MAX_HDRS || v->bytes + nl + vl > WAYPOINT_HEAD_MAX)
		return false;
	e = &v->v[v->n];
	e->name = hvec_store(v, nl + 1 + vl + 1);
	if (!e->name)
		return false;
	e->value = e->name + nl + 1;
	memcpy(e->name, n, nl);
	e->name[nl] = 0;
	memcpy(e->value, val, vl);
	e->value[vl] = 0;
	e->nlen = nl;
	e->vlen = vl;
	v->bytes += nl + vl;
	v->n++;
	return true;
}

/* A body buffer: from the waypoint's few spare ones when it has one
 * (malloc and free of 64 KiB per stream cost, free with a consolidation of
 * the heap's small chunks). */
bool wp_body_alloc(struct waypoint *w, struct buf *b)
{
	if (b->area)
		return true;
	b->area = w->n_bodies ? w->bodies[--w->n_bodies] : malloc(BODY_BUF);
	b->size = b->area ? BODY_BUF : 0;
	b->head = b->data = 0;
	return b->area != NULL;
}

void wp_body_release(struct waypoint *w, struct buf *b)
{
	if (b->area && w->n_bodies < WP_SPARE_BODIES)
		w->bodies[w->n_bodies++] = b->area;
	else
		free(b->area);
	*b = BUF_NULL;
}

/* Headers that belong to one hop only (RFC 9113 8.2.2), and Host, which
 * travels as :authority. */
bool wp_hop_header(const char *n, size_t len)
{
	switch (len) {	/* by length first: this runs for every field forwarded */
	case 4: return !strncasecmp(n, "host", 4);
	case 7: return !strncasecmp(n, "upgrade", 7);
	case 10: return !strncasecmp(n, "connection", 10) || !strncasecmp(n, "keep-alive", 10);
	case 16: return !strncasecmp(n, "proxy-connection", 16);
	case 17: return !strncasecmp(n, "transfer-encoding", 17);
	default: return false;
	}
}

/* Does a Connection field of l name field n? Those are of this hop only
 * too (RFC 9110 7.6.1). */
bool wp_conn_named(const struct hlist *l, const char *n, size_t nl)
{
	for (size_t i = 0; i < l->n; i++) {
		const char *v = l->value[i], *end = v + l->value_len[i];

		if (l->name_len[i] != 10 || strncasecmp(l->name[i], "connection", 10))
			continue;
		while (v < end) {
			const char *t;

			while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
				v++;
			t = v;
			while (v < end && *v != ',' && *v != ' ' && *v != '\t')
				v++;
			if ((size_t)(v - t) == nl && nl && !strncasecmp(t, n, nl))
				return true;
		}
	}
	return false;
}

/* Has l a Connection field at all (then wp_conn_named is worth asking)? */
bool wp_has_conn(const struct hlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->name_len[i] == 10 && !strncasecmp(l->name[i], "connection", 10))
			return true;
	return false;
}

/* An nghttp2_nv list being built: names lower-cased into scratch when
 * they are not already. */
struct nvlist {
	nghttp2_nv v[MAX_HDRS + 2 * ROUTE_MAX_EDITS + 8];
	size_t n;
	char lower[MAX_HDRS + 2 * ROUTE_MAX_EDITS + 8][128];
};

/* The one list being built (one loop thread; each use fills it and submits
 * it, which copies it, before the next): not 38 KB of calloc per head. */
static struct nvlist nv_scratch;

static struct nvlist *nv_begin(void)
{
	nv_scratch.n = 0;
	return &nv_scratch;
}

/* A field for nghttp2 (which copies it on submit): names lower-cased into
 * the list's scratch (by pointer when lower-case already), values by
 * pointer. */
static void nv_add_n(struct nvlist *l, const char *name, size_t nl, const char *value, size_t vl)
{
	size_t i = 0;

	if (l->n == sizeof(l->v) / sizeof(l->v[0]) || nl >= sizeof(l->lower[0]))
		return;
	/* names from nghttp2 are lower-case already (it refuses others): only
	 * route edits' and literals' may need the copy */
	while (i < nl && !(name[i] >= 'A' && name[i] <= 'Z'))
		i++;
	if (i < nl) {
		for (i = 0; i < nl; i++)
			l->lower[l->n][i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
		l->lower[l->n][nl] = 0;
		name = l->lower[l->n];
	}
	/* nghttp2 takes const bytes through a non-const pointer (and does not
	 * write to them: NO_COPY is not set) */
	memcpy(&l->v[l->n].name, &name, sizeof(name));
	memcpy(&l->v[l->n].value, &value, sizeof(value));
	l->v[l->n].namelen = nl;
	l->v[l->n].valuelen = vl;
	l->v[l->n].flags = NGHTTP2_NV_FLAG_NONE;
	l->n++;
}

static void nv_add(struct nvlist *l, const char *name, const char *value)
{
	nv_add_n(l, name, strlen(name), value, strlen(value));
}

static void edits_pack(struct h2st *st, const struct route_hdr_edit *e, size_t n)
{
	st->edits_len = wp_edits_pack(st->edits, sizeof(st->edits), e, n);
}

/* TE, which HTTP/2 allows with the value "trailers" only (RFC 9113 8.2.2):
 * an HTTP/1.1 client's other values go. */
bool wp_te_other(const char *n, size_t nl, const char *v, size_t vl)
{
	return nl == 2 && !strncasecmp(n, "te", 2) && !(vl == 8 && !strncasecmp(v, "trailers", 8));
}

/* The list's fields as nghttp2 name/value pairs, without the hop-by-hop ones. */
static void nv_add_list(struct nvlist *nv, const struct hlist *l)
{
	bool conn = wp_has_conn(l);	/* an HTTP/1.1 backend's response may have one */

	for (size_t i = 0; i < l->n; i++) {
		if (wp_hop_header(l->name[i], l->name_len[i]) ||
		    wp_te_other(l->name[i], l->name_len[i], l->value[i], l->value_len[i]) ||
		    (conn && wp_conn_named(l, l->name[i], l->name_len[i])))
			continue;
		nv_add_n(nv, l->name[i], l->name_len[i], l->value[i], l->value_len[i]);
	}
}

/* The stream's fields as it sends them, kept (nghttp2 copies nv away) for
 * a retry or for a WebSocket that waits for its connection's SETTINGS;
 * false: none kept, or not all (too many). */
static bool sent_keep(struct h2st *st, const struct nvlist *nv)
{
	st->sent = hvec_new(st->h->c->w);
	for (size_t i = 0; st->sent && i < nv->n; i++)
		if (!hvec_add(st->sent, nv->v[i].name, nv->v[i].namelen, nv->v[i].value, nv->v[i].valuelen))
			return false;
	return st->sent != NULL;
}

/* The kept fields as a list for nghttp2 again. */
static struct nvlist *sent_nv(const struct h2st *st)
{
	struct nvlist *nv = nv_begin();

	for (size_t i = 0; i < st->sent->n; i++)
		nv_add_n(nv, st->sent->v[i].name, st->sent->v[i].nlen, st->sent->v[i].value, st->sent->v[i].vlen);
	return nv;
}

/* HTTP status to gRPC code, as gRPC's "HTTP to gRPC Status Code Mapping". */
static int grpc_code_of(unsigned int status)
{
	switch (status) {
	case 400: return 13;
	case 401: return 16;
	case 403: return 7;
	case 404: return 12;
	case 429: case 502: case 503: return 14;
	case 504: return 4;
	default: return 2;
	}
}

/* ---- streams ---- */

static void h1_kill(struct h1up *u);
static void up_detach(struct h2st *st);
static void up_queue(struct h2up *up);

static void stream_count(struct h2st *st)
{
	if (st->counted || !st->routed)	/* (a head that never ended is no request) */
		return;
	st->counted = true;
	wp_count(st->h->c, &st->dst, st->svc_name, st->method, st->path, st->status, st->start_ms);
}

static void stream_free(struct h2st *st)
{
	struct wp_h2 *h = st->h;

	stream_count(st);
	loop_timer_cancel(h->c->w->loop, &st->timer);
	loop_timer_cancel(h->c->w->loop, &st->rtimer);
	free(st->rbody);
	hvec_free(h->c->w, st->sent);
	if (st->prev)
		st->prev->next = st->next;
	else
		h->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	if (st->up && st->uid && !st->up_closed && st->up->ng)
		nghttp2_session_set_stream_user_data(st->up->ng, st->uid, NULL);
	if (st->h1)
		h1_kill(st->h1);	/* its exchange cannot be cut short and the connection kept */
	/* bytes taken in but never passed on still count in the windows */
	if (st->up && !st->up->dead && st->respb.data) {
		nghttp2_session_consume_connection(st->up->ng, st->respb.data);
		up_queue(st->up);
	}
	up_detach(st);
	if (st->reqb.data && h->ng)
		nghttp2_session_consume_connection(h->ng, st->reqb.data);
	hvec_free(h->c->w, st->req);
	hvec_free(h->c->w, st->resp);
	hvec_free(h->c->w, st->trl);
	wp_body_release(h->c->w, &st->reqb);
	wp_body_release(h->c->w, &st->respb);
	if (KEEP_SPARES && h->c->w->n_spare_st < WP_SPARE_STREAMS)
		h->c->w->spare_st[h->c->w->n_spare_st++] = st;
	else
		free(st);
}

static void stream_maybe_free(struct h2st *st)
{
	if (st->client_closed && !st->h1 && (!st->uid || st->up_closed))
		stream_free(st);
}

static ssize_t local_read(nghttp2_session *ng, int32_t sid, uint8_t *out, size_t len, uint32_t *flags,
			  nghttp2_data_source *src, void *ud)
{
	struct h2st *st = src->ptr;
	size_t n = st->local_len - st->local_off;

	(void)ng, (void)sid, (void)ud;
	if (n > len)
		n = len;
	memcpy(out, st->local_body + st->local_off, n);
	st->local_off += n;
	if (st->local_off == st->local_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* The waypoint answers the stream itself (redirects, 404, 5xx; gRPC: a
 * trailers-only status). */
static void respond_local(struct h2st *st, unsigned int status, const char *location)
{
	struct wp_h2 *h = st->h;
	struct nvlist *nv;
	static struct hlist el;		/* large; one loop thread */
	char sbuf[12], gbuf[12];
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = local_read };

	if (st->resp_submitted)
		return;
	nv = nv_begin();
	st->status = status;
	st->local = true;
	st->resp_submitted = true;
	el.n = 0;
	nv_add(nv, ":status", wp_utoa(sbuf, st->grpc ? 200 : status));
	if (st->grpc) {
		wp_utoa(gbuf, (unsigned int)grpc_code_of(status));
		wp_hlist_add(&el, "content-type", "application/grpc");
		wp_hlist_add(&el, "grpc-status", gbuf);
		wp_hlist_add(&el, "grpc-message", wp_reason_of(status));
	} else {
		st->local_body = status == 404 ? "no route matched\n" : status >= 500 ? "no healthy upstream\n" : "";
		st->local_len = strlen(st->local_body);
		if (location)
			wp_hlist_add(&el, "location", location);
		if (st->local_len)
			wp_hlist_add(&el, "content-type", "text/plain");
	}
	wp_hlist_edits_packed(&el, st->edits, st->edits_len);
	nv_add_list(nv, &el);
	nghttp2_submit_response(h->ng, st->cid, nv->v, nv->n, st->local_len ? &prd : NULL);
}

/* No retry for the stream from now (an answer went to the client, or its
 * body is past the retry buffer): its copy goes, once a retry in progress
 * has sent what it needs of it. */
static void retry_drop(struct h2st *st)
{
	st->retry.left = 0;
	st->rbody_over = true;
	if (st->resend_off < st->resend)
		return;
	free(st->rbody);
	st->rbody = NULL;
	st->rbody_len = st->rbody_cap = 0;
}

static ssize_t resp_read(nghttp2_session *ng, int32_t sid, uint8_t *out, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	struct h2st *st = src->ptr;
	size_t n = st->respb.data < len ? st->respb.data : len;

	(void)sid, (void)ud;
	if (n) {
		memcpy(out, buf_head(&st->respb), n);
		buf_del(&st->respb, n);
		/* the upstream's window reopens as the client takes the bytes; a
		 * stream already closed there (a short answer ends with its last
		 * DATA) still owes them to the connection's window */
		if (st->up && st->uid && !st->up->dead) {
			if (!st->up_closed)
				nghttp2_session_consume(st->up->ng, st->uid, n);
			else
				nghttp2_session_consume_connection(st->up->ng, n);
		}
	}
	if (!st->respb.data && st->resp_eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->trl_pending && st->trl && st->trl->n) {
			struct nvlist *nv = nv_begin();

			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			for (size_t i = 0; i < st->trl->n; i++)
				nv_add(nv, st->trl->v[i].name, st->trl->v[i].value);
			nghttp2_submit_trailer(ng, st->cid, nv->v, nv->n);
		}
		return (ssize_t)n;
	}
	return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

/* The backend's response head, rewritten, to the client. */
static void respond_upstream(struct h2st *st, bool end_stream)
{
	struct wp_h2 *h = st->h;
	struct nvlist *nv = nv_begin();
	static struct hlist el;		/* large; one loop thread */
	char sbuf[12];
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = resp_read };

	st->resp_submitted = true;
	retry_drop(st);
	/* an HTTP/1.1 backend's 101 is extended CONNECT's 200 (RFC 8441 5),
	 * and counted as the client got it */
	if (st->ws && st->status == 101)
		st->status = 200;
	nv_add(nv, ":status", wp_utoa(sbuf, st->status));
	el.n = 0;
	for (size_t i = 0; st->resp && i < st->resp->n; i++)
		wp_hlist_add(&el, st->resp->v[i].name, st->resp->v[i].value);
	if (st->ws)
		wp_hlist_remove(&el, "sec-websocket-accept");	/* HTTP/1.1's handshake only */
	wp_hlist_edits_packed(&el, st->edits, st->edits_len);
	nv_add_list(nv, &el);
	if (end_stream)
		st->resp_eof = true;
	nghttp2_submit_response(h->ng, st->cid, nv->v, nv->n, end_stream ? NULL : &prd);
}

/* ---- upstream connections ---- */

static void up_io(struct loop_io *io, uint32_t ev);
static void h2_pump(struct wp_h2 *h);
static bool stream_retry(struct h2st *st);
static bool stream_may_retry(const struct h2st *st);
static void pool_flush(struct loop_timer *t);

static struct h2pool *pool_of(struct waypoint *w)
{
	if (!w->h2pool && (w->h2pool = calloc(1, sizeof(*w->h2pool)))) {
		w->h2pool->loop = w->loop;
		loop_timer_init(&w->h2pool->flush, pool_flush, w->h2pool);
	}
	return w->h2pool;
}

static void pool_soon(struct h2pool *p)
{
	if (!loop_timer_armed(&p->flush))
		loop_timer_arm(p->loop, &p->flush, 0);
}

/* up's session may have bytes to write: written after this batch of events. */
static void up_queue(struct h2up *up)
{
	struct h2pool *p = up->w->h2pool;

	if (up->queued)
		return;
	up->queued = true;
	up->qnext = p->up_q;
	p->up_q = up;
	pool_soon(p);
}

/* h's session has news from an upstream: pumped after this batch. */
static void h_queue(struct wp_h2 *h)
{
	struct h2pool *p = h->c->w->h2pool;

	if (h->queued)
		return;
	h->queued = true;
	h->qnext = p->h_q;
	p->h_q = h;
	pool_soon(p);
}

static void h_unqueue(struct wp_h2 *h)
{
	struct h2pool *p = h->c->w->h2pool;

	if (!h->queued)
		return;
	for (struct wp_h2 **pp = &p->h_q; *pp; pp = &(*pp)->qnext)
		if (*pp == h) {
			*pp = h->qnext;
			break;
		}
	h->queued = false;
}

static bool same_addr(const struct tunnel_addr *a, const struct tunnel_addr *b)
{
	return a->port == b->port && a->ip.family == b->ip.family && !memcmp(&a->ip.addr, &b->ip.addr, sizeof(a->ip.addr));
}

static size_t up_bucket(const char *key, const struct tunnel_addr *ep)
{
	uint32_t x = 2166136261u;	/* FNV-1a, over the key and the endpoint */

	for (; *key; key++)
		x = (x ^ (uint8_t)*key) * 16777619u;
	for (size_t i = 0; i < sizeof(ep->ip.addr.octets); i++)
		x = (x ^ ep->ip.addr.octets[i]) * 16777619u;
	x = (x ^ ep->port) * 16777619u;
	return x % POOL_BUCKETS;
}

/* The pool key, with the endpoint (compared apart, as it is: no formatting
 * per request): the backend (key: Service, port, Gateway) and the client
 * whose identity the connection carries (a mesh client's pod; a Gateway
 * client's is key's Gateway). */
static void up_key(char *out, size_t size, const char *key, const struct wconn *c)
{
	const char *kp[] = { key, "#", c->ns, "/", c->name };

	wp_cat(out, size, kp, 5);
}

static void up_attach(struct h2up *up, struct h2st *st)
{
	st->up = up;
	st->uprev = NULL;
	st->unext = up->streams;
	if (up->streams)
		up->streams->uprev = st;
	up->streams = st;
	up->n_streams++;
	loop_timer_cancel(up->w->loop, &up->idle);
}

/* The stream leaves its upstream; an upstream left with none waits the idle
 * timeout for the next, or goes (dead, or the waypoint draining). */
static void up_detach(struct h2st *st)
{
	struct h2up *up = st->up;

	if (!up)
		return;
	if (st->uprev)
		st->uprev->unext = st->unext;
	else
		up->streams = st->unext;
	if (st->unext)
		st->unext->uprev = st->uprev;
	st->unext = st->uprev = NULL;
	st->up = NULL;
	if (--up->n_streams)
		return;
	if (up->dead || up->w->draining)
		up_queue(up);
	else
		loop_timer_arm(up->w->loop, &up->idle, wp_idle_ms(up->w));
}

static ssize_t up_send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct h2up *up = ud;
	size_t n = buf_put(&up->out, data, len);

	(void)ng, (void)flags;
	return n ? (ssize_t)n : NGHTTP2_ERR_WOULDBLOCK;
}

static int up_on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
			const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct h2st *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

	(void)flags, (void)ud;
	if (!st || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
		if (nl == 7 && !memcmp(name, ":status", 7)) {
			unsigned int code = 0;

			/* nghttp2 has checked it is three digits */
			for (size_t i = 0; i < vl && i < 7 && value[i] >= '0' && value[i] <= '9'; i++)
				code = code * 10 + (unsigned int)(value[i] - '0');
			st->status = code;
			return 0;
		}
		if (!st->resp)
			st->resp = hvec_new(st->h->c->w);
		if (st->resp && !hvec_add(st->resp, name, nl, value, vl))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	} else if (f->headers.cat == NGHTTP2_HCAT_HEADERS) {
		if (!st->trl)
			st->trl = hvec_new(st->h->c->w);
		if (st->trl && !hvec_add(st->trl, name, nl, value, vl))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

/* ---- WebSocket over HTTP/2 (RFC 8441) ---- */

static bool stream_submit(struct h2st *st, const struct nvlist *nv);

/* The backend took the WebSocket: the route's request timeout is over (as
 * Envoy's stops at the upgrade); the idle timeout runs while no byte moves. */
static void ws_open(struct h2st *st)
{
	struct waypoint *w = st->h->c->w;

	st->ws_open = true;
	st->moved_ms = loop_now_ms();
	loop_timer_arm(w->loop, &st->timer, wp_idle_ms(w));
}

/* An extended CONNECT goes only to a backend whose SETTINGS take one
 * (RFC 8441 3); else 503, as Envoy answers when its upstream cannot. */
static void ws_submit(struct h2st *st, const struct nvlist *nv)
{
	if (nghttp2_session_get_remote_settings(st->up->ng, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) != 1 ||
	    !stream_submit(st, nv)) {
		st->h->c->w->st.upstream_errors++;
		respond_local(st, 503, NULL);
	}
	h_queue(st->h);
	up_queue(st->up);
}

/* The stream's fields, as they will go, wait in st->sent for the SETTINGS
 * of a new connection; false: too many to keep. */
static bool ws_wait(struct h2st *st, const struct nvlist *nv)
{
	st->ws_wait = sent_keep(st, nv);
	return st->ws_wait;
}

/* The backend's SETTINGS came: the WebSockets that waited for them go (or
 * get their 503). */
static void up_settings_in(struct h2up *up)
{
	up->settings_in = true;
	for (struct h2st *st = up->streams; st; st = st->unext) {
		if (!st->ws_wait)
			continue;
		st->ws_wait = false;
		if (!st->client_closed)
			ws_submit(st, sent_nv(st));
	}
}

static int up_on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct h2st *st = f->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, f->hd.stream_id) : NULL;
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK))
		up_settings_in(ud);
	if (!st)
		return 0;
	h_queue(st->h);
	if (f->hd.type == NGHTTP2_HEADERS) {
		if (f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
			if (st->status >= 100 && st->status < 200) {	/* interim: dropped */
				hvec_free(st->h->c->w, st->resp);
				st->resp = NULL;
				return 0;
			}
			if (wp_retry_code(&st->retry, st->status) && stream_retry(st))
				return 0;	/* that answer is dropped */
			if (!st->client_closed && !st->resp_submitted)
				respond_upstream(st, end);
			if (st->ws && st->status >= 200 && st->status < 300 && !end)
				ws_open(st);
		} else if (end) {
			st->trl_pending = true;
			st->resp_eof = true;
			if (!st->client_closed)
				nghttp2_session_resume_data(st->h->ng, st->cid);
		}
	} else if (f->hd.type == NGHTTP2_DATA && end) {
		st->resp_eof = true;
		if (!st->client_closed)
			nghttp2_session_resume_data(st->h->ng, st->cid);
	}
	return 0;
}

static int up_on_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
	struct h2st *st = nghttp2_session_get_stream_user_data(ng, sid);
	struct h2up *up = ud;

	(void)flags;
	if (!st || st->client_closed) {
		nghttp2_session_consume(ng, sid, len);
		return 0;
	}
	if (!wp_body_alloc(up->w, &st->respb) || buf_put(&st->respb, data, len) != len)
		return NGHTTP2_ERR_CALLBACK_FAILURE;	/* cannot happen within the window */
	if (st->ws_open)
		st->moved_ms = loop_now_ms();
	h_queue(st->h);
	nghttp2_session_resume_data(st->h->ng, st->cid);
	return 0;
}

static int up_on_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
	struct h2st *st = nghttp2_session_get_stream_user_data(ng, sid);

	(void)ud;
	if (!st)
		return 0;
	st->up_closed = true;
	h_queue(st->h);
	/* a local answer (504) stands */
	if (!st->client_closed && !st->local && !stream_retry(st)) {
		if (!st->resp_submitted) {
			respond_local(st, 503, NULL);
		} else if (!st->resp_eof) {
			/* cut short: the client's stream ends the same way */
			nghttp2_submit_rst_stream(st->h->ng, NGHTTP2_FLAG_NONE, st->cid,
						  code ? code : NGHTTP2_INTERNAL_ERROR);
		}
	}
	stream_maybe_free(st);
	return 0;
}

static ssize_t req_read(nghttp2_session *ng, int32_t sid, uint8_t *out, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *ud)
{
	struct h2st *st = src->ptr;
	size_t n = st->reqb.data < len ? st->reqb.data : len;

	(void)ng, (void)sid, (void)ud;
	if (st->resend_off < st->resend) {
		/* a retry: what the failed attempt sent, again (those bytes left
		 * the client's window then) */
		n = st->resend - st->resend_off < len ? st->resend - st->resend_off : len;
		memcpy(out, st->rbody + st->resend_off, n);
		st->resend_off += n;
		if (st->resend_off == st->resend && !st->reqb.data && st->req_eof)
			*flags |= NGHTTP2_DATA_FLAG_EOF;
		return (ssize_t)n;
	}
	if (n) {
		memcpy(out, buf_head(&st->reqb), n);
		buf_del(&st->reqb, n);
		if (!st->client_closed)
			nghttp2_session_consume(st->h->ng, st->cid, n);
		else
			nghttp2_session_consume_connection(st->h->ng, n);
		h_queue(st->h);	/* the client's WINDOW_UPDATE */
	}
	if (!st->reqb.data && st->req_eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return (ssize_t)n;
	}
	return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

/* The connection failed or went: its streams are answered 503 (or retried
 * elsewhere), or cut short; it goes once the last has left it. */
static void up_kill(struct h2up *up)
{
	if (up->dead)
		return;
	up->dead = true;
	loop_timer_cancel(up->w->loop, &up->idle);
	for (struct h2st *st = up->streams, *next; st; st = next) {
		next = st->unext;
		if (st->up_closed)
			continue;
		st->up_closed = true;
		h_queue(st->h);
		if (!st->client_closed && !st->local && !stream_retry(st)) {
			if (!st->resp_submitted)
				respond_local(st, 503, NULL);
			else if (!st->resp_eof)
				nghttp2_submit_rst_stream(st->h->ng, NGHTTP2_FLAG_NONE, st->cid, NGHTTP2_INTERNAL_ERROR);
		}
		stream_maybe_free(st);
	}
	if (up->fd >= 0) {
		loop_del(up->w->loop, &up->io);
		close(up->fd);
		up->fd = -1;
	}
	up_queue(up);
}

/* A dead upstream without streams leaves the pool (p's flush has taken it
 * off the write list). */
static void up_release(struct h2pool *p, struct h2up *up)
{
	for (struct h2up **pp = &p->bucket[up_bucket(up->key, &up->dst.addr)]; *pp; pp = &(*pp)->next)
		if (*pp == up) {
			*pp = up->next;
			break;
		}
	loop_timer_cancel(up->w->loop, &up->idle);
	nghttp2_session_del(up->ng);
	up->ng = NULL;
	wp_bury(up->w, up, NULL);	/* its io may be in this batch */
}

static void up_idle_fire(struct loop_timer *t)
{
	struct h2up *up = t->arg;

	if (!up->n_streams)
		up_kill(up);
}

/* A pooled HTTP/2 connection of key to endpoint ep (port 0: not picked)
 * with room for a stream, or NULL. */
static struct h2up *pool_get(struct waypoint *w, const char *key, const struct tunnel_addr *ep)
{
	if (!w->h2pool)
		return NULL;
	for (struct h2up *up = w->h2pool->bucket[up_bucket(key, ep)]; up; up = up->next)
		if (!up->dead && up->n_streams < MAX_STREAMS && same_addr(&up->dst.addr, ep) &&
		    !strcmp(up->key, key) && nghttp2_session_check_request_allowed(up->ng))
			return up;
	return NULL;
}

/* A new HTTP/2 connection on fd (to endpoint dst), pooled under key and
 * ep (dst->addr as picked, before ops.upstream filled it; port 0: not);
 * fd is taken in every case (closed on failure). */
static struct h2up *up_new(struct waypoint *w, int fd, const struct waypoint_dst *dst, const char *key,
			   const struct tunnel_addr *ep)
{
	struct h2pool *p = pool_of(w);
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;
	struct h2up *up = p ? calloc(1, sizeof(*up)) : NULL;

	if (!up) {
		close(fd);
		return NULL;
	}
	up->w = w;
	up->out.area = up->out_area;
	up->out.size = sizeof(up->out_area);
	up->dst = *dst;
	up->dst.addr = *ep;
	wp_copy(up->key, sizeof(up->key), key);
	up->fd = fd;
	loop_timer_init(&up->idle, up_idle_fire, up);
	if (nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt))
		goto fail;
	nghttp2_session_callbacks_set_send_callback(cb, up_send_cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, up_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, up_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, up_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, up_on_close);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	if (nghttp2_session_client_new2(&up->ng, cb, up, opt))
		goto fail;
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	cb = NULL;
	opt = NULL;
	/* the connection's window holds every stream's whole window: a client
	 * that does not read holds up its own streams (their bytes wait in
	 * respb), never another client's on this shared connection */
	if (nghttp2_submit_settings(up->ng, NGHTTP2_FLAG_NONE, NULL, 0) ||
	    nghttp2_session_set_local_window_size(up->ng, NGHTTP2_FLAG_NONE, 0, MAX_STREAMS * BODY_BUF) ||
	    loop_add(w->loop, &up->io, fd, EPOLLIN | EPOLLRDHUP, up_io, up))
		goto fail;
	up->next = p->bucket[up_bucket(up->key, ep)];
	p->bucket[up_bucket(up->key, ep)] = up;
	up_queue(up);	/* its SETTINGS */
	return up;
fail:
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (up->ng)
		nghttp2_session_del(up->ng);
	if (up->fd >= 0)
		close(up->fd);
	free(up);
	return NULL;
}

/* Take what the connection has; false when it is over. */
static bool up_read(struct h2up *up)
{
	uint8_t in[16384];

	/* only when epoll said so (level-triggered: it says again while bytes
	 * wait); a short read emptied the socket */
	while (up->rd && !up->dead) {
		ssize_t n = recv(up->fd, in, sizeof(in), 0);

		if (n > 0) {
			if (nghttp2_session_mem_recv(up->ng, in, (size_t)n) < 0)
				return false;
			if ((size_t)n < sizeof(in))
				up->rd = false;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			return false;
		if (errno == EAGAIN)
			up->rd = false;
	}
	return true;
}

/* Write what the session has; false when the connection is over. */
static bool up_write(struct h2up *up)
{
	for (;;) {
		int r = nghttp2_session_send(up->ng);

		if (r)
			return false;
		while (up->out.data) {
			ssize_t n = send(up->fd, buf_head(&up->out), up->out.data, MSG_NOSIGNAL);

			if (n > 0) {
				buf_del(&up->out, (size_t)n);
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			return false;
		}
		if (up->out.data || !nghttp2_session_want_write(up->ng))
			break;
	}
	loop_mod(up->w->loop, &up->io, EPOLLIN | EPOLLRDHUP | (up->out.data ? EPOLLOUT : 0));
	return nghttp2_session_want_read(up->ng) || nghttp2_session_want_write(up->ng) || up->n_streams;
}

static void up_io(struct loop_io *io, uint32_t ev)
{
	struct h2up *up = io->arg;

	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		up->rd = true;
	if (!up_read(up))
		up_kill(up);
	up_queue(up);	/* what it answers (acks, windows), and what waited for EPOLLOUT */
}

/* After a batch of events: the upstreams write what the client sessions
 * gave them, the client sessions what the upstreams gave them, and again
 * while one side's writing gave the other something (window updates). */
static void pool_flush(struct loop_timer *t)
{
	struct h2pool *p = t->arg;

	for (int round = 0; round < 8 && (p->up_q || p->h_q); round++) {
		while (p->up_q) {
			struct h2up *up = p->up_q;

			p->up_q = up->qnext;
			up->queued = false;
			if (!up->dead && !up->n_streams && up->w->draining)
				up_kill(up);
			if (!up->dead && !up_write(up))
				up_kill(up);
			if (up->dead && !up->n_streams && !up->queued)
				up_release(p, up);
		}
		while (p->h_q) {
			struct wp_h2 *h = p->h_q;

			p->h_q = h->qnext;
			h->queued = false;
			h2_pump(h);
		}
	}
	if (p->up_q || p->h_q)
		pool_soon(p);	/* the rest after the next batch */
}

void wp_h2_pool_drain(struct waypoint *w)
{
	struct h2pool *p = w->h2pool;

	for (size_t i = 0; p && i < POOL_BUCKETS; i++)
		for (struct h2up *up = p->bucket[i]; up; up = up->next)
			if (!up->n_streams)
				up_kill(up);	/* released by the flush */
}

void wp_h2_pool_mem(const struct waypoint *w, struct waypoint_mem *m)
{
	const struct h2pool *p = w->h2pool;

	for (size_t i = 0; p && i < POOL_BUCKETS; i++)
		for (const struct h2up *up = p->bucket[i]; up; up = up->next) {
			m->h2_upstreams++;
			m->h2_upstream_streams += up->n_streams;
			m->h2_upstream_bytes += sizeof(*up);
		}
}

void wp_h2_pool_free(struct waypoint *w)
{
	struct h2pool *p = w->h2pool;

	if (!p)
		return;
	loop_timer_cancel(w->loop, &p->flush);
	/* the connections went first: no stream is left on any */
	for (size_t i = 0; i < POOL_BUCKETS; i++)
		while (p->bucket[i]) {
			struct h2up *up = p->bucket[i];

			p->bucket[i] = up->next;
			loop_timer_cancel(w->loop, &up->idle);
			if (up->fd >= 0) {
				loop_del(w->loop, &up->io);
				close(up->fd);
			}
			nghttp2_session_del(up->ng);
			free(up);
		}
	free(p);
	w->h2pool = NULL;
}

/* ---- HTTP/1.1 upstreams: a stream translated (appProtocol http) ---- */

static http_parser_settings h1_settings;

/* The field parsed so far goes to the response head or, after it, to the
 * trailers; names lower-cased (HTTP/2 wants them so). */
static void h1_field_commit(struct h1up *u)
{
	struct h2st *st = u->st;
	struct hvec **to;

	if (!u->fname_len || !st)
		goto out;
	to = u->head_done ? &st->trl : &st->resp;
	for (size_t i = 0; i < u->fname_len; i++)
		if (u->fname[i] >= 'A' && u->fname[i] <= 'Z')
			u->fname[i] = (char)(u->fname[i] + 32);
	if (!*to)
		*to = hvec_new(u->h->c->w);
	if (!*to || !hvec_add(*to, (const uint8_t *)u->fname, u->fname_len, (const uint8_t *)u->fval, u->fval_len))
		u->field_bad = true;
out:
	u->fname_len = u->fval_len = 0;
	u->in_value = false;
}

static void h1_append(char *dst, size_t size, size_t *len, const char *at, size_t n, bool *bad)
{
	if (*len + n > size) {
		*bad = true;
		return;
	}
	memcpy(dst + *len, at, n);
	*len += n;
}

static int h1_on_field(http_parser *p, const char *at, size_t n)
{
	struct h1up *u = p->data;

	if (u->in_value)
		h1_field_commit(u);
	h1_append(u->fname, sizeof(u->fname), &u->fname_len, at, n, &u->field_bad);
	return 0;
}

static int h1_on_value(http_parser *p, const char *at, size_t n)
{
	struct h1up *u = p->data;

	u->in_value = true;
	h1_append(u->fval, sizeof(u->fval), &u->fval_len, at, n, &u->field_bad);
	return 0;
}

static int h1_on_headers_complete(http_parser *p)
{
	struct h1up *u = p->data;

	h1_field_commit(u);
	if (p->status_code == 101 && u->st && u->st->ws) {
		/* the WebSocket taken: raw bytes from here (h1_tunnel_step) */
		u->head_done = u->tunnel = true;
		u->st->status = 101;
		http_parser_pause(p, 1);
		return 0;
	}
	if (p->status_code >= 100 && p->status_code < 200) {
		/* interim (100 Continue): dropped; the final head follows */
		if (u->st) {
			hvec_free(u->h->c->w, u->st->resp);
			u->st->resp = NULL;
		}
		u->field_bad = false;
		return 0;
	}
	u->head_done = true;
	if (u->st)
		u->st->status = p->status_code;
	http_parser_pause(p, 1);	/* the caller answers the client's stream */
	return u->head_method ? 1 : 0;	/* a response to HEAD has no body */
}

static int h1_on_body(http_parser *p, const char *at, size_t n)
{
	struct h1up *u = p->data;

	/* h1_parse fed no more than respb has room for (decoded <= raw) */
	if (u->st && !u->st->client_closed)
		buf_put(&u->st->respb, at, n);
	return 0;
}

static int h1_on_message_complete(http_parser *p)
{
	struct h1up *u = p->data;

	if (!u->head_done)
		return 0;	/* the end of an interim response */
	h1_field_commit(u);	/* the last trailer */
	u->resp_done = true;
	u->keepalive = http_should_keep_alive(p);
	http_parser_pause(p, 1);
	return 0;
}

/* Close the connection (its fd; the object goes in h2_pump or
 * wp_h2_free). Its stream, if any, is the caller's to finish. */
static void h1_kill(struct h1up *u)
{
	if (u->st)
		u->st->h1 = NULL;
	u->st = NULL;
	if (u->dead)
		return;
	u->dead = true;
	if (u->fd >= 0) {
		loop_del(u->h->c->w->loop, &u->io);
		close(u->fd);
		u->fd = -1;
	}
}

/* The upstream broke (or sent what is not HTTP): the stream gets a 503, or
 * is reset when its response had begun. st may be freed. */
static void h1_fail(struct h1up *u)
{
	struct h2st *st = u->st;
	struct wp_h2 *h = u->h;

	h1_kill(u);
	if (!st || stream_retry(st))
		return;
	h->c->w->st.upstream_errors++;
	st->up_closed = true;
	if (!st->client_closed && !st->local && !st->resp_eof) {
		if (!st->resp_submitted) {
			respond_local(st, 503, NULL);
		} else {
			nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->cid, NGHTTP2_INTERNAL_ERROR);
		}
	}
	stream_maybe_free(st);
}

/* The response is over: the client's stream ends with it. The request's
 * body may still be going (a backend may answer first and read on, as
 * HTTP/1.1 allows): the connection stays with the stream until it has. */
static void h1_done(struct h1up *u)
{
	struct h2st *st = u->st;

	st->resp_eof = true;
	st->trl_pending = st->trl && st->trl->n;
	if (st->ws)
		u->req_sent = true;	/* a WebSocket refused: its request was its head */
	if (!st->client_closed)
		nghttp2_session_resume_data(u->h->ng, st->cid);
}

/* Both messages are over: the connection goes back to the pool when it may
 * be kept, and the stream is free of it. */
static void h1_release(struct h1up *u)
{
	struct h2st *st = u->st;

	st->up_closed = true;
	if (u->keepalive && !u->h->c->w->draining) {
		st->h1 = NULL;
		u->st = NULL;	/* idle: the next stream to the same backend takes it */
	} else {
		h1_kill(u);
	}
	stream_maybe_free(st);
}

/* ---- a WebSocket on an HTTP/1.1 upstream, after its 101 ---- */

/* What out has, to the socket as it takes it; false: the socket failed. */
static bool h1_send(struct h1up *u)
{
	while (u->out.data) {
		ssize_t n = send(u->fd, buf_head(&u->out), u->out.data, MSG_NOSIGNAL);

		if (n > 0) {
			buf_del(&u->out, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		return false;
	}
	return true;
}

/* The backend's bytes as the stream's DATA, as respb has room. */
static void h1_tunnel_in(struct h1up *u)
{
	struct h2st *st = u->st;
	size_t n;

	if (st->client_closed) {
		buf_del(&u->in, u->in.data);	/* nobody takes them */
		return;
	}
	if (!wp_body_alloc(u->h->c->w, &st->respb))
		return;
	n = buf_put(&st->respb, buf_head(&u->in), u->in.data);
	buf_del(&u->in, n);
	if (n) {
		st->moved_ms = loop_now_ms();
		nghttp2_session_resume_data(u->h->ng, st->cid);
	}
}

/* The client's DATA to the backend as they are; its window reopens as
 * they go. */
static void h1_tunnel_out(struct h1up *u)
{
	struct h2st *st = u->st;

	while (st->reqb.data && buf_room(&u->out)) {
		size_t n = buf_put(&u->out, buf_head(&st->reqb), st->reqb.data);

		buf_del(&st->reqb, n);
		if (!st->client_closed)
			nghttp2_session_consume(u->h->ng, st->cid, n);
		else
			nghttp2_session_consume_connection(u->h->ng, n);
		st->moved_ms = loop_now_ms();
	}
}

/* Both ways after the 101: END_STREAM becomes a FIN and a FIN END_STREAM;
 * a failed socket resets the stream. Once both ends passed, the connection
 * goes (never pooled) and the stream ends as its client's side does. */
static void h1_tunnel_step(struct h1up *u)
{
	struct h2st *st = u->st;

	h1_tunnel_out(u);
	if (u->in.data)
		h1_tunnel_in(u);
	if (u->err) {
		h1_fail(u);
		return;
	}
	if (u->eof && !u->in.data && !st->resp_eof) {
		st->resp_eof = true;
		if (!st->client_closed)
			nghttp2_session_resume_data(u->h->ng, st->cid);
	}
	if (!h1_send(u)) {
		h1_fail(u);
		return;
	}
	if (st->req_eof && !st->reqb.data && !u->out.data && !u->shut) {
		shutdown(u->fd, SHUT_WR);
		u->shut = u->req_sent = true;
	}
	if (u->shut && u->eof && !u->in.data) {
		st->up_closed = true;
		h1_kill(u);
		stream_maybe_free(st);
		return;
	}
	if (u->eof && !u->out.data) {
		/* epoll would say HUP forever: h1_pump moves the rest */
		if (u->io.fd >= 0)
			loop_del(u->h->c->w->loop, &u->io);
		return;
	}
	if (u->io.fd >= 0)
		loop_mod(u->h->c->w->loop, &u->io,
			 (buf_room(&u->in) && !u->eof ? EPOLLIN | EPOLLRDHUP : 0) | (u->out.data ? EPOLLOUT : 0));
}

/* Feed the backend's bytes to the parser: the head becomes the stream's
 * HEADERS, the body goes to respb as it has room (the rest waits in in,
 * and the socket is not read while in is full). false: u failed (and the
 * stream may be gone). */
static bool h1_parse(struct h1up *u)
{
	while (u->st && u->in.data && !u->resp_done) {
		struct h2st *st = u->st;
		size_t take = u->in.data, n;
		enum http_errno e;
		bool bad;

		if (u->tunnel) {
			h1_tunnel_in(u);
			break;
		}
		if (u->head_done) {
			size_t room;

			if (!wp_body_alloc(u->h->c->w, &st->respb))
				goto fail;
			room = buf_room(&st->respb);
			if (!room)
				break;
			take = take < room ? take : room;
		}
		n = http_parser_execute(&u->p, &h1_settings, buf_head(&u->in), take);
		buf_del(&u->in, n);
		e = HTTP_PARSER_ERRNO(&u->p);
		/* not HTTP, or a head too large for HTTP/2's list */
		bad = (e != HPE_OK && e != HPE_PAUSED) || (u->field_bad && !u->head_done);
		if (bad)
			goto fail;
		if (e == HPE_PAUSED)
			http_parser_pause(&u->p, 0);
		/* (the parser stopped before the head's last LF: not a tunnel byte) */
		if (u->tunnel && e == HPE_PAUSED && u->in.data && *buf_head(&u->in) == '\n')
			buf_del(&u->in, 1);
		if (u->head_done && !st->resp_submitted && !st->client_closed && !st->local) {
			if (!st->ws && wp_retry_code(&st->retry, st->status) && stream_may_retry(st)) {
				h1_kill(u);	/* the rest of that answer is not read */
				stream_retry(st);
				return false;
			}
			respond_upstream(st, false);
		}
		if (u->tunnel && !st->ws_open)
			ws_open(st);
		if (st->respb.data && !st->client_closed)
			nghttp2_session_resume_data(u->h->ng, st->cid);
	}
	return true;
fail:
	h1_fail(u);
	return false;
}

/* n body bytes to the socket's buffer (which has room for them and 32
 * more), framed as a chunk when the request is chunked. */
static void h1_chunk(struct h1up *u, const char *p, size_t n)
{
	char hex[20];

	if (u->chunked) {
		int l = snprintf(hex, sizeof(hex), "%zx\r\n", n);

		buf_put(&u->out, hex, (size_t)l);
	}
	buf_put(&u->out, p, n);
	if (u->chunked)
		buf_put(&u->out, "\r\n", 2);
}

/* The request body from reqb to the socket's buffer (after what a retry
 * sends again); the client's window reopens as it goes. */
static void h1_body(struct h1up *u)
{
	struct h2st *st = u->st;
	struct wp_h2 *h = u->h;

	if (st && st->ws) {
		/* a WebSocket's bytes go only once the backend took it */
		if (u->tunnel)
			h1_tunnel_out(u);
		return;
	}
	/* a retry: what the failed attempt had taken of the body, again */
	while (st && !u->req_sent && st->resend_off < st->resend) {
		size_t room = buf_room(&u->out), n = st->resend - st->resend_off;

		if (room <= 32)
			return;
		if (n > room - 32)
			n = room - 32;
		h1_chunk(u, st->rbody + st->resend_off, n);
		st->resend_off += n;
	}
	while (st && !u->req_sent && st->reqb.data) {
		size_t room = buf_room(&u->out), n = st->reqb.data;

		if (room <= 32)
			return;
		if (n > room - 32)
			n = room - 32;
		h1_chunk(u, buf_head(&st->reqb), n);
		buf_del(&st->reqb, n);
		if (!st->client_closed)
			nghttp2_session_consume(h->ng, st->cid, n);
		else
			nghttp2_session_consume_connection(h->ng, n);
	}
	if (st && !u->req_sent && st->req_eof && !st->reqb.data && st->resend_off >= st->resend) {
		/* request trailers are not sent (the HTTP/2 side drops them too) */
		if (u->chunked && buf_put(&u->out, "0\r\n\r\n", 5) != 5)
			return;
		u->req_sent = true;
	}
}

/* Move an HTTP/1.1 upstream's bytes both ways. */
static void h1_step(struct h1up *u)
{
	if (u->dead)
		return;
	h1_body(u);
	while (!u->eof && u->rd && buf_room(&u->in)) {
		ssize_t n = recv(u->fd, buf_tail(&u->in), buf_room(&u->in), 0);

		if (n > 0) {
			buf_add(&u->in, (size_t)n);
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			u->eof = true;	/* not read again (nor watched for reading) */
			u->err = n < 0;
			break;
		}
		if (errno == EAGAIN)
			u->rd = false;
	}
	if (!u->st) {
		/* idle: a pooled connection that speaks or hangs up is done */
		if (u->eof || u->in.data)
			h1_kill(u);
		return;
	}
	if (!u->resp_done && !u->tunnel) {
		if (!h1_parse(u))
			return;
		/* a body delimited by the end of the connection ends there */
		if (u->eof && !u->in.data && u->head_done && !u->resp_done)
			http_parser_execute(&u->p, &h1_settings, NULL, 0);
		if (u->resp_done)
			h1_done(u);
	}
	if (u->tunnel) {
		h1_tunnel_step(u);
		return;
	}
	/* the end of the connection, once what came before it is parsed */
	if (u->eof && (!u->in.data || u->resp_done)) {
		if (!u->resp_done || !u->req_sent) {
			h1_fail(u);	/* cut short (a response: the rest of a request dropped) */
			return;
		}
		u->keepalive = false;
	}
	if (!h1_send(u)) {
		h1_fail(u);
		return;
	}
	if (u->resp_done && u->req_sent && !u->out.data) {
		h1_release(u);
		return;
	}
	/* after the end of the connection, epoll would say HUP forever: not
	 * watched; h1_pump parses the rest as respb drains */
	if (u->eof && !u->out.data) {
		loop_del(u->h->c->w->loop, &u->io);
		return;
	}
	/* not read while in is full: http-parser takes it as respb drains */
	if (u->io.fd >= 0)
		loop_mod(u->h->c->w->loop, &u->io,
			 (buf_room(&u->in) && !u->eof ? EPOLLIN | EPOLLRDHUP : 0) | (u->out.data ? EPOLLOUT : 0));
}

static void h1_io(struct loop_io *io, uint32_t ev)
{
	struct h1up *u = io->arg;
	struct wp_h2 *h = u->h;

	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		u->rd = true;
	h1_step(u);
	h2_pump(h);
}

/* An idle pooled connection to the backend of key, or NULL. */
static struct h1up *h1_idle(struct wp_h2 *h, const char *key)
{
	for (struct h1up *u = h->h1s; u; u = u->next)
		if (!u->dead && !u->st && !strcmp(u->key, key))
			return u;
	return NULL;
}

/* A new one on fd (taken in every case: closed on failure). */
static struct h1up *h1_new(struct wp_h2 *h, int fd, const struct waypoint_dst *dst, const char *key)
{
	struct h1up *u = calloc(1, sizeof(*u));

	if (!u || loop_add(h->c->w->loop, &u->io, fd, EPOLLIN | EPOLLRDHUP, h1_io, u)) {
		close(fd);
		free(u);
		return NULL;
	}
	u->h = h;
	u->fd = fd;
	u->dst = *dst;
	wp_copy(u->key, sizeof(u->key), key);
	u->in.area = u->in_area;
	u->in.size = sizeof(u->in_area);
	u->out.area = u->out_area;
	u->out.size = sizeof(u->out_area);
	u->next = h->h1s;
	h->h1s = u;
	return u;
}

/* HTTP/2 may split Cookie into one field per pair; HTTP/1.1 has one field,
 * the pairs joined by "; " (RFC 9113 8.2.3). false when it does not fit. */
static bool h1_put_cookies(struct buf *b, const struct hlist *l)
{
	bool first = true;

	if (buf_put(b, "cookie: ", 8) != 8)
		return false;
	for (size_t i = 0; i < l->n; i++) {
		if (l->name_len[i] != 6 || strncasecmp(l->name[i], "cookie", 6))
			continue;
		if ((!first && buf_put(b, "; ", 2) != 2) ||
		    buf_put(b, l->value[i], l->value_len[i]) != l->value_len[i])
			return false;
		first = false;
	}
	return buf_put(b, "\r\n", 2) == 2;
}

/* An extended CONNECT as the HTTP/1.1 Upgrade it stands for (RFC 8441 5):
 * an HTTP/2 client sends no Sec-WebSocket-Key, so one is made up (the 101's
 * Accept is for this hop only); Version, Protocol and Extensions pass. */
static bool h1_ws_fields(struct h2st *st, struct buf *o, const struct hlist *l)
{
	char key[WP_WS_KEY_LEN + 1];
	bool has_key = false, has_version = false;

	for (size_t i = 0; i < l->n; i++) {
		has_key |= l->name_len[i] == 17 && !strncasecmp(l->name[i], "sec-websocket-key", 17);
		has_version |= l->name_len[i] == 21 && !strncasecmp(l->name[i], "sec-websocket-version", 21);
	}
	if (!has_key)
		wp_ws_key(st->h->c->w, key);
	return wp_put_field(o, "connection", 10, "Upgrade", 7) && wp_put_field(o, "upgrade", 7, "websocket", 9) &&
	       (has_key || wp_put_field(o, "sec-websocket-key", 17, key, WP_WS_KEY_LEN)) &&
	       (has_version || wp_put_field(o, "sec-websocket-version", 21, "13", 2));
}

/* The stream's request as an HTTP/1.1 head on u (RFC 9113 8.3.1 read
 * backwards): :authority becomes Host, connection-specific fields and TE
 * stay out, a body without content-length goes chunked (HTTP/2 frames
 * delimit it; HTTP/1.1 needs one or the other). false: it does not fit. */
static bool h1_request(struct h2st *st, struct h1up *u, const char *method, const char *path,
		       const char *authority, const struct hlist *l)
{
	struct buf *o = &u->out;
	bool has_len = false, cookie_done = false;

	u->st = st;
	st->h1 = u;
	u->head_method = !strcmp(method, "HEAD");
	u->head_done = u->resp_done = u->keepalive = u->field_bad = u->in_value = false;
	u->tunnel = u->shut = false;
	u->fname_len = u->fval_len = 0;
	http_parser_init(&u->p, HTTP_RESPONSE);
	u->p.data = u;
	if (buf_put(o, method, strlen(method)) == 0 || buf_put(o, " ", 1) != 1 ||
	    buf_put(o, path, strlen(path)) != strlen(path) || buf_put(o, " HTTP/1.1\r\n", 11) != 11)
		return false;
	if (!wp_put_field(o, "host", 4, authority, strlen(authority)))
		return false;
	for (size_t i = 0; i < l->n; i++) {
		if (wp_hop_header(l->name[i], l->name_len[i]) || (l->name_len[i] == 2 && !strncasecmp(l->name[i], "te", 2)))
			continue;
		if (l->name_len[i] == 14 && !strncasecmp(l->name[i], "content-length", 14))
			has_len = true;
		if (l->name_len[i] == 6 && !strncasecmp(l->name[i], "cookie", 6)) {
			if (!cookie_done && !h1_put_cookies(o, l))
				return false;
			cookie_done = true;
			continue;
		}
		if (!wp_put_field(o, l->name[i], l->name_len[i], l->value[i], l->value_len[i]))
			return false;
	}
	if (st->ws && !h1_ws_fields(st, o, l))
		return false;
	/* (a WebSocket's bytes after the head are no HTTP body) */
	u->chunked = !st->ws && (!st->req_eof || st->reqb.data || st->resend_off < st->resend) && !has_len;
	if (u->chunked && !wp_put_field(o, "transfer-encoding", 17, "chunked", 7))
		return false;
	if (buf_put(o, "\r\n", 2) != 2)
		return false;
	u->req_sent = !st->ws && st->req_eof && !st->reqb.data && st->resend_off >= st->resend;
	return true;
}

/* ---- routing a client stream ---- */

/* Tell the client we are done (GOAWAY, NO_ERROR, the last stream we took)
 * and close once that is out; the idle timeout later bounds a GOAWAY that
 * does not leave (a client that reads nothing). */
static void h2_goaway(struct wp_h2 *h)
{
	struct wconn *c = h->c;

	c->w->st.timeouts++;
	h->goaway = true;
	nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
	wp_conn_deadline(c, loop_now_ms(), wp_idle_ms(c->w));
	h2_pump(h);	/* after the GOAWAY the session wants nothing: closed there */
}

void wp_h2_idle_timeout(struct wconn *c)
{
	struct wp_h2 *h = c->h2;

	if (h->goaway) {
		wp_conn_free(c, true);
		return;
	}
	if (!h->streams)	/* (one that came since re-arms it in h2_pump) */
		h2_goaway(h);
}

/* No stream (streams end when both sides are done with them): the idle
 * timeout runs from now, as HTTP/1.1's between requests; a stream stops it
 * (the timer stays armed: conn_timer_cb checks due_ms). */
static void h2_idle_arm(struct wp_h2 *h)
{
	struct wconn *c = h->c;

	if (h->goaway)
		return;
	if (h->streams)
		c->due_ms = 0;
	else if (!c->due_ms)
		wp_conn_deadline(c, loop_now_ms(), wp_idle_ms(c->w));
}

static void stream_timeout(struct loop_timer *t)
{
	struct h2st *st = t->arg;
	struct wp_h2 *h = st->h;

	if (!st->routed) {
		/* its HEADERS (and CONTINUATIONs) did not end in time: nothing
		 * else may come on the connection meanwhile (RFC 9113 6.10) */
		h2_goaway(h);
		return;
	}
	if (st->ws_open) {
		/* an open WebSocket ends only when idle that long (bytes moved
		 * since the timer was armed: it waits the rest) */
		uint64_t now = loop_now_ms(), due = st->moved_ms + wp_idle_ms(h->c->w);

		if (now < due) {
			loop_timer_arm(h->c->w->loop, &st->timer, due - now);
			return;
		}
	}
	st->h->c->w->st.timeouts++;
	loop_timer_cancel(h->c->w->loop, &st->rtimer);	/* it bounds the retries too */
	if (st->up && st->uid && !st->up_closed)
		nghttp2_submit_rst_stream(st->up->ng, NGHTTP2_FLAG_NONE, st->uid, NGHTTP2_CANCEL);
	if (st->h1)
		h1_kill(st->h1);
	if (!st->resp_submitted)
		respond_local(st, 504, NULL);
	else
		nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->cid, NGHTTP2_CANCEL);
	h2_pump(h);
}

static void stream_arm_timeout(struct h2st *st, const struct route_decision *d)
{
	unsigned int t = d->request_timeout_ms ? d->request_timeout_ms : d->backend_timeout_ms;

	if (t)
		loop_timer_arm(st->h->c->w->loop, &st->timer, t);
}

/* The stream's upstream, in the backend's protocol: the endpoint picked for
 * this request (when the agent offers ops.pick), and a pooled connection of
 * this client to it, else a new one (st->up HTTP/2, or st->h1 HTTP/1.1, as
 * the Service port's appProtocol says; not said: the client's own, except
 * that a client which got HTTP/2 by ALPN from the waypoint says nothing of
 * the backend, so it gets HTTP/1.1, as before h2 was offered). fresh: a new
 * connection (a retry's). false: none. */
static bool stream_upstream(struct h2st *st, const struct route_backend *be, const char *key, bool fresh)
{
	struct wp_h2 *h = st->h;
	struct wconn *c = h->c;
	struct waypoint *w = c->w;
	struct waypoint_dst dst = { 0 };
	struct tunnel_client cl;
	struct tunnel_addr ep;
	enum waypoint_proto proto;
	struct h2up *up;
	char pkey[sizeof(up->key)];
	int fd;

	wp_client_of(c, &cl);
	if (fresh)
		dst.avoid = st->dst.addr;	/* where the last attempt failed */
	if (w->ops.pick && w->ops.pick(w->arg, &cl, &c->vip, be, &dst))
		return false;
	ep = dst.addr;
	up_key(pkey, sizeof(pkey), key, c);
	if (!fresh) {
		up = pool_get(w, pkey, &ep);
		if (up) {
			up_attach(up, st);
			return true;
		}
		st->h1 = h1_idle(h, key);
		if (st->h1)
			return true;
	}
	fd = w->ops.upstream(w->arg, &cl, &c->vip, be, &dst);
	if (fd < 0)
		return false;
	proto = dst.proto;
	if (proto == WAYPOINT_PROTO_UNSET)
		proto = h->alpn_h2 ? WAYPOINT_PROTO_HTTP1 : WAYPOINT_PROTO_H2C;
	if (proto == WAYPOINT_PROTO_HTTP1) {
		st->h1 = h1_new(h, fd, &dst, key);
		return st->h1 != NULL;
	}
	up = up_new(w, fd, &dst, pkey, &ep);
	if (up)
		up_attach(up, st);
	return up != NULL;
}

/* The request as a stream of st->up, with the fields of nv; false: refused. */
static bool stream_submit(struct h2st *st, const struct nvlist *nv)
{
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = req_read };
	bool body = !st->req_eof || st->reqb.data || st->resend;

	st->dst = st->up->dst;
	st->uid = nghttp2_submit_request(st->up->ng, NULL, nv->v, nv->n, body ? &prd : NULL, st);
	if (st->uid < 0) {
		st->uid = 0;
		return false;
	}
	return true;
}

/* The stream may go again (its upstream HTTP/2, as a retry's will be): its
 * policy, backend and fields kept (nghttp2 copied nv's away). */
static void retry_prepare(struct h2st *st, const struct route_decision *d, const char *key,
			  const struct nvlist *nv)
{
	if (!sent_keep(st, nv))
		return;	/* too many to keep: not retried */
	wp_retry_set(&st->retry, d);
	wp_copy(st->key, sizeof(st->key), key);
}

/* Its body as it comes, kept for a retry while it fits WP_RETRY_BODY_MAX;
 * past that the copy goes (the body streams as ever, held nowhere). */
static void retry_keep(struct h2st *st, const uint8_t *data, size_t len)
{
	size_t need = st->rbody_len + len, cap = st->rbody_cap ? st->rbody_cap : 1024;
	char *p;

	if (!st->retry.left || st->rbody_over || !len)
		return;
	if (!st->retry.by_route) {	/* the default sends no body twice (waypoint.c) */
		retry_drop(st);
		return;
	}
	while (cap < need)
		cap *= 2;
	p = need > WP_RETRY_BODY_MAX ? NULL : cap == st->rbody_cap ? st->rbody : realloc(st->rbody, cap);
	if (!p) {
		retry_drop(st);
		return;
	}
	st->rbody = p;
	st->rbody_cap = cap;
	memcpy(st->rbody + st->rbody_len, data, len);
	st->rbody_len = need;
}

/* May the stream go again: a retry left, its request kept (retry_prepare:
 * its body so far too), nothing answered yet? */
static bool stream_may_retry(const struct h2st *st)
{
	return st->sent && st->retry.left && !st->rbody_over && !st->resp_submitted && !st->client_closed &&
	       !st->local;
}

/* Its upstream failed it before a response (reset it, went, or answered a
 * status the route retries; that answer is dropped): it goes again after
 * the backoff, on a new connection to a newly picked endpoint, its body
 * from the copy, then (when the body is not all here yet) the rest from
 * reqb as it comes. Over HTTP/2 (st->up) or HTTP/1.1 (translated; the
 * caller has killed the connection). false: it may not go again (then it
 * fails as it would). */
static bool stream_retry(struct h2st *st)
{
	struct h2up *up = st->up;
	struct waypoint *w = st->h->c->w;

	if (!stream_may_retry(st) || st->h1)
		return false;
	st->retry.left--;
	if (up && st->uid && !st->up_closed) {
		nghttp2_submit_rst_stream(up->ng, NGHTTP2_FLAG_NONE, st->uid, NGHTTP2_CANCEL);
		nghttp2_session_set_stream_user_data(up->ng, st->uid, NULL);
		up_queue(up);
	}
	up_detach(st);
	st->respb.head = st->respb.data = 0;
	st->uid = 0;
	st->up_closed = false;
	st->status = 0;
	hvec_free(w, st->resp);
	hvec_free(w, st->trl);
	st->resp = st->trl = NULL;
	st->resend = st->rbody_len - st->reqb.data;
	st->resend_off = 0;
	loop_timer_arm(w->loop, &st->rtimer, st->retry.backoff_ms);
	return true;
}

/* The kept request again: as an HTTP/2 stream of st->up, or translated
 * for st->h1. false: it could not go. */
static bool stream_resend(struct h2st *st)
{
	static struct hlist el;		/* large; one loop thread */
	const char *method = "", *path = "", *auth = "";

	if (st->up)
		return stream_submit(st, sent_nv(st));
	if (!st->h1)
		return false;
	el.n = 0;
	for (size_t i = 0; i < st->sent->n; i++) {
		const struct h2hdr *e = &st->sent->v[i];

		if (e->name[0] != ':')
			wp_hlist_add(&el, e->name, e->value);
		else if (!strcmp(e->name, ":method"))
			method = e->value;
		else if (!strcmp(e->name, ":path"))
			path = e->value;
		else if (!strcmp(e->name, ":authority"))
			auth = e->value;
	}
	st->dst = st->h1->dst;
	if (h1_request(st, st->h1, method, path, auth, &el))
		return true;
	h1_kill(st->h1);
	return false;
}

static void retry_fire(struct loop_timer *t)
{
	struct h2st *st = t->arg;
	struct wp_h2 *h = st->h;
	struct route_backend be = { .ns = st->retry.ns, .name = st->retry.name, .port = st->retry.port };

	if (!stream_upstream(st, &be, st->key, true) || !stream_resend(st)) {
		if (st->h1)
			h1_kill(st->h1);
		h->c->w->st.upstream_errors++;
		respond_local(st, 503, NULL);
	}
	h2_pump(h);
}

static void stream_route(struct h2st *st)
{
	struct wp_h2 *h = st->h;
	struct wconn *c = h->c;
	struct waypoint *w = c->w;
	static struct route_decision d;	/* large; one loop thread */
	struct route_header rh[MAX_HDRS];
	struct nvlist *nv;
	static struct hlist el;		/* large; one loop thread */
	char path[2048], key[320];
	const char *method = NULL, *p = NULL, *auth = NULL, *scheme = NULL, *host = NULL, *ct = NULL, *q;
	const char *proto = NULL;
	size_t n = 0;

	/* the fields routing needs, in one pass (the first of each name) */
	for (size_t i = 0; i < st->req->n; i++) {
		const struct h2hdr *e = &st->req->v[i];
		const char **to = NULL;

		switch (e->nlen) {
		case 4: to = !strcasecmp(e->name, "host") ? &host : NULL; break;
		case 5: to = !strcasecmp(e->name, ":path") ? &p : NULL; break;
		case 7: to = !strcasecmp(e->name, ":method") ? &method : !strcasecmp(e->name, ":scheme") ? &scheme : NULL; break;
		case 9: to = !strcasecmp(e->name, ":protocol") ? &proto : NULL; break;
		case 10: to = !strcasecmp(e->name, ":authority") ? &auth : NULL; break;
		case 12: to = !strcasecmp(e->name, "content-type") ? &ct : NULL; break;
		default: break;
		}
		if (to && !*to)
			*to = e->value;
	}
	w->st.requests_total++;
	st->routed = true;
	loop_timer_cancel(w->loop, &st->timer);	/* the header timeout */
	st->start_ms = loop_now_ms();
	if (!auth)
		auth = host;
	st->grpc = ct && !strncasecmp(ct, "application/grpc", 16);
	if (proto && method && !strcmp(method, "CONNECT")) {
		/* an extended CONNECT (RFC 8441) is routed as the GET with
		 * Upgrade it stands for, as Envoy routes it */
		st->ws = wp_is_websocket(proto, strlen(proto));
		method = "GET";
	}
	wp_copy(st->method, sizeof(st->method), method ? method : "");
	if (!method || !p || st->too_big) {
		w->st.bad_requests++;
		respond_local(st, st->too_big ? 431 : 400, NULL);
		return;
	}
	if (proto && !st->ws) {
		respond_local(st, 501, NULL);	/* a protocol other than WebSocket */
		return;
	}
	q = strchr(p, '?');
	wp_copy_n(path, sizeof(path), p, q ? (size_t)(q - p) : strlen(p));
	wp_copy(st->path, sizeof(st->path), path);
	for (size_t i = 0; i < st->req->n; i++)
		if (st->req->v[i].name[0] != ':')
			rh[n++] = (struct route_header){ st->req->v[i].name, st->req->v[i].nlen,
							 st->req->v[i].value, st->req->v[i].vlen };
	wp_decide(c, method, path, q ? q + 1 : NULL, auth, rh, n, &d);
	wp_copy(st->svc_name, sizeof(st->svc_name), c->svc_name);
	edits_pack(st, d.resp_edits, d.n_resp_edits);
	if (d.action == ROUTE_REDIRECT) {
		respond_local(st, d.status, d.location);
		return;
	}
	if (d.action == ROUTE_RESPOND) {
		respond_local(st, d.status, NULL);
		return;
	}
	{
		char port[12];
		const char *kp[] = { d.backend.ns, "/", d.backend.name, ":", wp_utoa(port, d.backend.port),
				     "@", c->gw_ns, "/", c->gw_name };

		wp_cat(key, sizeof(key), kp, 9);
	}
	if (!stream_upstream(st, &d.backend, key, false)) {
		w->st.upstream_errors++;
		respond_local(st, 503, NULL);
		return;
	}
	el.n = 0;
	for (size_t i = 0; i < st->req->n; i++)
		if (st->req->v[i].name[0] != ':')
			wp_hlist_add(&el, st->req->v[i].name, st->req->v[i].value);
	for (size_t i = 0; i < d.n_req_edits; i++)
		wp_hlist_edit(&el, d.req_edits[i].op, d.req_edits[i].name,
			      d.req_edits[i].value ? d.req_edits[i].value : "");
	nv = nv_begin();
	nv_add(nv, ":method", st->ws ? "CONNECT" : method);
	if (st->ws)
		nv_add(nv, ":protocol", "websocket");
	nv_add(nv, ":scheme", scheme ? scheme : "http");
	nv_add(nv, ":authority", d.host[0] ? d.host : auth ? auth : "");
	nv_add(nv, ":path", d.path[0] ? d.path : p);
	nv_add_list(nv, &el);
	/* either way (a retry may go to either); a WebSocket is not retried
	 * (its bytes are not kept) */
	if (!st->ws)
		retry_prepare(st, &d, key, nv);
	if (st->h1) {
		/* an HTTP/1.1 backend: the stream translated */
		st->dst = st->h1->dst;
		if (!h1_request(st, st->h1, method, d.path[0] ? d.path : p, d.host[0] ? d.host : auth ? auth : "",
				&el)) {
			h1_kill(st->h1);
			respond_local(st, 431, NULL);
			return;
		}
		stream_arm_timeout(st, &d);
		return;
	}
	if (st->ws) {
		/* a new connection's SETTINGS say first whether it takes
		 * extended CONNECT */
		st->dst = st->up->dst;
		if (st->up->settings_in)
			ws_submit(st, nv);
		else if (!ws_wait(st, nv))
			respond_local(st, 431, NULL);
		stream_arm_timeout(st, &d);
		return;
	}
	if (!stream_submit(st, nv)) {
		respond_local(st, 503, NULL);
		return;
	}
	stream_arm_timeout(st, &d);
}

/* ---- the client's session ---- */

static ssize_t cl_send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct wp_h2 *h = ud;
	size_t n = buf_put(&h->c->s[C].out, data, len);

	(void)ng, (void)flags;
	return n ? (ssize_t)n : NGHTTP2_ERR_WOULDBLOCK;
}

static int cl_on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct wp_h2 *h = ud;
	struct waypoint *w = h->c->w;
	struct h2st *st;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	/* the small fields zeroed; edits (4 KiB, last) are written before read */
	st = w->n_spare_st ? w->spare_st[--w->n_spare_st] : malloc(sizeof(*st));
	if (st)
		memset(st, 0, offsetof(struct h2st, edits));
	if (!st || !(st->req = hvec_new(w))) {
		free(st);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	st->h = h;
	st->cid = f->hd.stream_id;
	loop_timer_init(&st->timer, stream_timeout, st);
	loop_timer_init(&st->rtimer, retry_fire, st);
	loop_timer_arm(w->loop, &st->timer, wp_header_ms(w));
	st->next = h->streams;
	if (h->streams)
		h->streams->prev = st;
	h->streams = st;
	nghttp2_session_set_stream_user_data(ng, st->cid, st);
	return 0;
}

static int cl_on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
			const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct h2st *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

	(void)flags, (void)ud;
	if (!st || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;	/* request trailers: dropped */
	if (!hvec_add(st->req, name, nl, value, vl))
		st->too_big = true;
	return 0;
}

static int cl_on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct h2st *st = f->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, f->hd.stream_id) : NULL;

	(void)ud;
	if (!st)
		return 0;
	if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
		st->req_eof = true;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
		stream_route(st);
	else if (st->req_eof && st->up && st->uid && !st->up_closed)
		nghttp2_session_resume_data(st->up->ng, st->uid);
	return 0;
}

static int cl_on_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
	struct h2st *st = nghttp2_session_get_stream_user_data(ng, sid);

	(void)flags, (void)ud;
	if (st && st->h1 && !st->h1->req_sent) {
		/* to the HTTP/1.1 upstream: h1_body takes them (a WebSocket's
		 * only after the 101: till then they wait here) */
		if (!wp_body_alloc(st->h->c->w, &st->reqb) || buf_put(&st->reqb, data, len) != len)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		if (st->ws_open)
			st->moved_ms = loop_now_ms();
		retry_keep(st, data, len);
		return 0;
	}
	if (st && st->ws_wait) {
		/* the WebSocket waits for its upstream's SETTINGS: so do they */
		if (!wp_body_alloc(st->h->c->w, &st->reqb) || buf_put(&st->reqb, data, len) != len)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		return 0;
	}
	if (st && loop_timer_armed(&st->rtimer)) {
		/* a retry waits for its backoff: they follow what it sends again */
		if (!wp_body_alloc(st->h->c->w, &st->reqb) || buf_put(&st->reqb, data, len) != len)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		retry_keep(st, data, len);
		return 0;
	}
	if (!st || !st->up || !st->uid || st->up_closed) {
		nghttp2_session_consume(ng, sid, len);	/* nobody takes them */
		return 0;
	}
	if (!wp_body_alloc(st->h->c->w, &st->reqb) || buf_put(&st->reqb, data, len) != len)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (st->ws_open)
		st->moved_ms = loop_now_ms();
	retry_keep(st, data, len);
	nghttp2_session_resume_data(st->up->ng, st->uid);
	return 0;
}

static int cl_on_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
	struct h2st *st = nghttp2_session_get_stream_user_data(ng, sid);

	(void)code, (void)ud;
	if (!st)
		return 0;
	st->client_closed = true;
	if (st->up && st->uid && !st->up_closed)
		nghttp2_submit_rst_stream(st->up->ng, NGHTTP2_FLAG_NONE, st->uid, NGHTTP2_CANCEL);
	/* reset before its response ended: the exchange cannot be finished;
	 * after (the stream closed as it ended): the body's rest still goes */
	if (st->h1 && !(st->h1->resp_done && st->req_eof))
		h1_kill(st->h1);
	stream_maybe_free(st);
	return 0;
}

/* Step the HTTP/1.1 upstreams that have bytes to parse or send; free the
 * dead ones. true when a stream got response bytes. */
static bool h1_pump(struct wp_h2 *h)
{
	bool any = false;

	for (struct h1up **pp = &h->h1s; *pp;) {
		struct h1up *u = *pp;

		if (!u->dead && u->st && (u->in.data || u->out.data || u->rd || u->st->reqb.data ||
					  (u->st->req_eof && !u->req_sent))) {
			size_t before = u->st->respb.data;
			struct h2st *st = u->st;

			h1_step(u);
			any |= u->st == st && st->respb.data != before;
			any |= u->st != st;	/* done or failed: the stream has news */
		}
		if (u->dead) {
			*pp = u->next;
			wp_bury(h->c->w, u, NULL);	/* its io may be in this batch */
			continue;
		}
		pp = &u->next;
	}
	return any;
}

/* Write what both sides' sessions have; drop finished upstreams. */
static void h2_pump(struct wp_h2 *h)
{
	struct wconn *c = h->c;

	h1_pump(h);
	/* what its streams gave their upstreams (requests, bodies, resets,
	 * window updates) is written after the batch, with other clients' */
	for (struct h2st *st = h->streams; st; st = st->next)
		if (st->up)
			up_queue(st->up);
	nghttp2_session_send(h->ng);
	/* resp_read made room in HTTP/1.1 streams' respb: more of their
	 * upstreams' bytes can be parsed, and sent */
	if (h1_pump(h))
		nghttp2_session_send(h->ng);
	if (!wp_side_flush(c, C)) {
		wp_conn_free(c, true);
		return;
	}
	/* the session may have more once the buffer drained */
	if (!c->s[C].out.data && nghttp2_session_want_write(h->ng)) {
		nghttp2_session_send(h->ng);
		if (!wp_side_flush(c, C)) {
			wp_conn_free(c, true);
			return;
		}
	}
	if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng) && !c->s[C].out.data) {
		wp_conn_free(c, false);
		return;
	}
	h2_idle_arm(h);
	wp_side_interest(c, C, true);
}

void wp_h2_step(struct wconn *c)
{
	struct wp_h2 *h = c->h2;
	struct wside *cs = &c->s[C];

	wp_side_read(c, C);
	if (cs->in.data) {
		ssize_t n = nghttp2_session_mem_recv(h->ng, (const uint8_t *)buf_head(&cs->in), cs->in.data);

		if (n < 0) {
			c->w->st.bad_requests++;
			wp_conn_free(c, true);
			return;
		}
		buf_del(&cs->in, (size_t)n);
	}
	if (cs->eof && !cs->in.data) {
		wp_conn_free(c, false);	/* the client is gone: its streams with it */
		return;
	}
	/* written after the batch, with what the batch's other events (its
	 * upstreams' answers) give it */
	if (pool_of(c->w))
		h_queue(h);
	else
		h2_pump(h);
}

int wp_h2_start(struct wconn *c)
{
	struct wp_h2 *h = calloc(1, sizeof(*h));
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_STREAMS },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, WAYPOINT_HEAD_MAX },
		{ NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },	/* WebSocket (RFC 8441) */
	};
	int r = -ENOMEM;

	if (!h)
		return -ENOMEM;
	h->c = c;
	{
		const unsigned char *p = NULL;
		unsigned int n = 0;

		c->s[C].x.ops->alpn(&c->s[C].x, &p, &n);
		h->alpn_h2 = n == 2 && !memcmp(p, "h2", 2);
	}
	h1_settings = (http_parser_settings){
		.on_header_field = h1_on_field, .on_header_value = h1_on_value, .on_body = h1_on_body,
		.on_headers_complete = h1_on_headers_complete, .on_message_complete = h1_on_message_complete,
	};
	if (nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt))
		goto fail;
	nghttp2_session_callbacks_set_send_callback(cb, cl_send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, cl_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, cl_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cl_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cl_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, cl_on_close);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	if (nghttp2_session_server_new2(&h->ng, cb, h, opt))
		goto fail;
	if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])))
		goto fail;
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	c->h2 = h;
	c->st = W_H2;
	c->due_ms = 0;
	loop_timer_cancel(c->w->loop, &c->timer);
	wp_h2_step(c);
	return 0;
fail:
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (h->ng)
		nghttp2_session_del(h->ng);
	free(h);
	return r;
}

void wp_h2_free(struct wconn *c)
{
	struct wp_h2 *h = c->h2;

	if (!h)
		return;
	c->h2 = NULL;
	/* streams first (they point at their upstreams), counted as they go */
	while (h->streams) {
		struct h2st *st = h->streams;

		/* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): stream_free unlinks st */
		if (st->up && st->uid && !st->up_closed && st->up->ng && !st->up->dead) {
			nghttp2_submit_rst_stream(st->up->ng, NGHTTP2_FLAG_NONE, st->uid, NGHTTP2_CANCEL);
			up_queue(st->up);
		}
		stream_free(st);	/* it leaves its upstream, which stays pooled */
	}
	while (h->h1s) {
		struct h1up *u = h->h1s;

		h->h1s = u->next;
		h1_kill(u);
		wp_bury(c->w, u, NULL);
	}
	if (c->w->h2pool)
		h_unqueue(h);
	nghttp2_session_del(h->ng);
	free(h);
}
