// SPDX-License-Identifier: Apache-2.0
/* waypoint_up2.c - an HTTP/1.1 client's requests on an HTTP/2 upstream, for
 * a backend Service port whose appProtocol says HTTP/2 (kubernetes.io/h2c,
 * http2, grpc): h2c with prior knowledge, one stream per request, on the
 * client connection's upstream (s[U], reused by its next requests to the
 * same backend, as an HTTP/1.1 upstream is).
 *
 *   HTTP/1.1 client            waypoint.c / here                HTTP/2 backend
 *   "POST /p HTTP/1.1"  --> route_request -> wp_up2_request --> HEADERS :method :path
 *   "Host: a" ...            (Host -> :authority, hop-by-hop      :authority a ...
 *                             fields out, names lower-cased)
 *   body (chunked or    --> http-parser on_body -> reqb     --> DATA (END_STREAM at the end)
 *   content-length)
 *   "HTTP/1.1 200 OK"   <-- write_head (chunked when no      <-- HEADERS :status ...
 *   body                     content-length)                 <-- DATA -> respb
 *   "0\r\ntrailers\r\n" <-- finish                           <-- HEADERS (trailers)
 *
 * An Upgrade: websocket goes as an extended CONNECT (RFC 8441; once the
 * backend's SETTINGS allow it, else 503): its 2xx becomes the client's 101
 * (write_upgraded), then wp_up2_relay moves the client's bytes as DATA and
 * back (W_TUNNEL_H2 in waypoint.c), END_STREAM <-> FIN.
 *
 * A retry (HTTPRoute retry, or Istio's default) sends the request again as
 * a new stream of a new connection: wp_up2_request keeps its fields in
 * c->retry_head (an nv_block), waypoint.c the decoded body after them, and
 * wp_up2_resend submits them again. A status the route retries is held
 * back from the client (WP_UP2_RETRY).
 *
 * Flow control is end to end as on the HTTP/2 client side: the upstream's
 * window reopens (nghttp2_session_consume) only as the response bytes go
 * into the client's buffer, and the request body is read from the client
 * only as far as reqb has room, which the stream's window empties.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "waypoint_int.h"

struct wp_up2 {
	struct wconn *c;
	nghttp2_session *ng;
	int32_t sid;			/* the request in flight's stream (0: none) */
	struct buf reqb, respb;		/* decoded bodies: at most a window each */
	bool head;			/* the final response head went to the client */
	bool chunked;			/* ... with Transfer-Encoding: chunked */
	bool resp_eof, closed, reset;	/* the stream: response ended, closed, reset */
	bool http11;			/* the client speaks HTTP/1.1 (not 1.0: no chunked) */
	bool trl;			/* l holds trailers (after the head) */
	bool too_big;
	/* an Upgrade: websocket as an extended CONNECT (RFC 8441): ws_held
	 * holds its fields while a new connection's SETTINGS have not come;
	 * tunnel once its 2xx went to the client as 101; ws_eof: the client's
	 * end of stream */
	bool ws, settings_in, tunnel, ws_eof;
	char *ws_held;			/* its fields (nv_block) */
	bool retry;			/* its answer's status is one the route retries */
	char accept[WP_WS_ACCEPT_LEN + 1];
	unsigned int status;
	/* the head (or the trailers) being received: fields into text */
	struct hlist l;
	char text[WAYPOINT_HEAD_MAX];
	size_t text_len;
};

/* ---- the session's callbacks ---- */

static ssize_t send_cb(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct wp_up2 *u = ud;
	size_t n = buf_put(&u->c->s[U].out, data, len);

	(void)ng, (void)flags;
	return n ? (ssize_t)n : NGHTTP2_ERR_WOULDBLOCK;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct wp_up2 *u = ud;

	(void)ng;
	if (f->hd.stream_id == u->sid) {
		u->trl = u->head;
		u->l.n = 0;
		u->text_len = 0;
		u->too_big = false;
	}
	return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct wp_up2 *u = ud;
	char *t;

	(void)ng, (void)flags;
	if (f->hd.stream_id != u->sid)
		return 0;
	if (nl == 7 && !memcmp(name, ":status", 7)) {
		u->status = 0;
		/* nghttp2 has checked it is three digits */
		for (size_t i = 0; i < vl && i < 3; i++)
			u->status = u->status * 10 + (unsigned int)(value[i] - '0');
		return 0;
	}
	if (nl && name[0] == ':')
		return 0;
	if (u->l.n == HLIST_MAX || u->text_len + nl + vl > sizeof(u->text)) {
		u->too_big = true;
		return 0;
	}
	t = u->text + u->text_len;
	memcpy(t, name, nl);
	memcpy(t + nl, value, vl);
	u->text_len += nl + vl;
	u->l.name[u->l.n] = t;
	u->l.name_len[u->l.n] = nl;
	u->l.value[u->l.n] = t + nl;
	u->l.value_len[u->l.n] = vl;
	u->l.n++;
	return 0;
}

static bool has_field(const struct hlist *l, const char *name, size_t len)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->name_len[i] == len && !strncasecmp(l->name[i], name, len))
			return true;
	return false;
}

/* The final response head to the client in HTTP/1.1, with the route's
 * edits. A body without content-length goes chunked (to an HTTP/1.0
 * client: delimited by the end of the connection). false: it does not fit. */
static bool write_head(struct wp_up2 *u)
{
	struct wconn *c = u->c;
	struct buf *o = &c->s[C].out;
	static struct hlist out;	/* large; one loop thread */
	bool no_body = c->head_method || u->status == 204 || u->status == 304;
	char num[12];
	const char *reason = wp_reason_of(u->status);

	out.n = 0;
	for (size_t i = 0; i < u->l.n; i++) {
		if (wp_hop_header(u->l.name[i], u->l.name_len[i]) || out.n == HLIST_MAX)
			continue;
		out.name[out.n] = u->l.name[i];
		out.name_len[out.n] = u->l.name_len[i];
		out.value[out.n] = u->l.value[i];
		out.value_len[out.n] = u->l.value_len[i];
		out.n++;
	}
	wp_hlist_edits_packed(&out, c->resp_edits, c->resp_edits_len);
	if (!no_body && !has_field(&out, "content-length", 14)) {
		if (u->http11)
			u->chunked = true;
		else
			c->req_keepalive = false;	/* the end of the connection ends it */
	}
	if (u->chunked)
		wp_hlist_add(&out, "transfer-encoding", "chunked");
	/* draining (an upgrade), or a client that said close: this is the last */
	if (c->w->draining || !c->req_keepalive)
		wp_hlist_set(&out, "connection", "close");
	if (buf_put(o, "HTTP/1.1 ", 9) != 9 || buf_put(o, wp_utoa(num, u->status), 3) != 3 ||
	    buf_put(o, " ", 1) != 1 || buf_put(o, reason, strlen(reason)) != strlen(reason) ||
	    buf_put(o, "\r\n", 2) != 2 || !wp_hlist_write(o, &out))
		return false;
	u->head = true;
	c->resp_started = true;
	c->status = (uint16_t)u->status;
	c->resp_keepalive = true;	/* the HTTP/2 connection says nothing of the client's */
	return true;
}

/* The extended CONNECT's 2xx as the 101 the HTTP/1.1 client waits for
 * (RFC 8441 5), with the Accept for its key; the backend's fields (its
 * Sec-WebSocket-Protocol, -Extensions) and the route's edits with it.
 * false: it does not fit. */
static bool write_upgraded(struct wp_up2 *u)
{
	struct wconn *c = u->c;
	struct buf *o = &c->s[C].out;
	static struct hlist out;	/* large; one loop thread */

	out.n = 0;
	for (size_t i = 0; i < u->l.n && out.n < HLIST_MAX; i++) {
		if (wp_hop_header(u->l.name[i], u->l.name_len[i]))
			continue;
		out.name[out.n] = u->l.name[i];
		out.name_len[out.n] = u->l.name_len[i];
		out.value[out.n] = u->l.value[i];
		out.value_len[out.n] = u->l.value_len[i];
		out.n++;
	}
	wp_hlist_edits_packed(&out, c->resp_edits, c->resp_edits_len);
	wp_hlist_set(&out, "upgrade", "websocket");
	wp_hlist_set(&out, "connection", "Upgrade");
	wp_hlist_set(&out, "sec-websocket-accept", u->accept);
	if (buf_put(o, "HTTP/1.1 101 Switching Protocols\r\n", 34) != 34 || !wp_hlist_write(o, &out))
		return false;
	u->head = u->tunnel = true;
	c->resp_started = true;
	c->status = 101;
	return true;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct wp_up2 *u = ud;
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	(void)ng;
	if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK))
		u->settings_in = true;
	if (!u->sid || f->hd.stream_id != u->sid)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && !u->head) {
		if (u->status >= 100 && u->status < 200 && !end)
			return 0;	/* interim (100 Continue): dropped */
		/* a status the route retries: not the client's, the stream goes again */
		if (!u->ws && u->status >= 200 && wp_retry_code(&u->c->retry, u->status) && wp_retry_can(u->c)) {
			u->retry = true;
			return 0;
		}
		if (u->ws && u->status >= 200 && u->status < 300 && !end && !u->too_big) {
			if (!write_upgraded(u))
				u->reset = true;
			return 0;
		}
		if (u->too_big || !write_head(u)) {
			u->reset = true;	/* 502: a head the client cannot be given */
			return 0;
		}
	}
	/* the end: with the last DATA, or trailers (kept in l for finish) */
	if (end && (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA))
		u->resp_eof = true;
	return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
	struct wp_up2 *u = ud;

	(void)flags;
	if (sid != u->sid || u->reset) {
		nghttp2_session_consume(ng, sid, len);	/* nobody takes them */
		return 0;
	}
	if (!wp_body_alloc(u->c->w, &u->respb) || buf_put(&u->respb, data, len) != len)
		return NGHTTP2_ERR_CALLBACK_FAILURE;	/* cannot happen within the window */
	return 0;
}

static int on_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
	struct wp_up2 *u = ud;

	(void)ng, (void)code;
	if (sid != u->sid)
		return 0;
	u->closed = true;
	if (!u->resp_eof)
		u->reset = true;
	return 0;
}

/* The request body for the stream: what reqb has, the end once the client's
 * request is complete; a WebSocket's bytes (ws_submit's stream) the same
 * way, the end once the client's side ended. */
static ssize_t req_read(nghttp2_session *ng, int32_t sid, uint8_t *out, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *ud)
{
	struct wp_up2 *u = src->ptr;
	size_t n = u->reqb.data < len ? u->reqb.data : len;

	(void)ng, (void)sid, (void)ud;
	if (n) {
		memcpy(out, buf_head(&u->reqb), n);
		buf_del(&u->reqb, n);
	}
	if (!u->reqb.data && (u->ws ? u->ws_eof : u->c->req_done)) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return (ssize_t)n;
	}
	return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
}

/* ---- the connection ---- */

static struct wp_up2 *up2_new(struct wconn *c)
{
	struct wp_up2 *u = calloc(1, sizeof(*u));
	nghttp2_session_callbacks *cb = NULL;
	nghttp2_option *opt = NULL;

	if (!u)
		return NULL;
	u->c = c;
	if (nghttp2_session_callbacks_new(&cb) || nghttp2_option_new(&opt))
		goto fail;
	nghttp2_session_callbacks_set_send_callback(cb, send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	/* windows reopen as the client takes the bytes (consume), not on receipt */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	if (nghttp2_session_client_new2(&u->ng, cb, u, opt) ||
	    nghttp2_submit_settings(u->ng, NGHTTP2_FLAG_NONE, NULL, 0))
		goto fail;
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	return u;
fail:
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	nghttp2_session_del(u->ng);
	free(u);
	return NULL;
}

void wp_up2_free(struct wconn *c)
{
	struct wp_up2 *u = c->up2;

	if (!u)
		return;
	c->up2 = NULL;
	nghttp2_session_del(u->ng);
	free(u->ws_held);
	wp_body_release(c->w, &u->reqb);
	wp_body_release(c->w, &u->respb);
	free(u);
}

/* A field for nghttp2, which takes const bytes through non-const pointers
 * (and copies them on submit, not writing to them: NO_COPY is not set). */
static void nv_set(nghttp2_nv *v, const char *name, size_t nl, const char *value, size_t vl)
{
	memcpy(&v->name, &name, sizeof(name));
	memcpy(&v->value, &value, sizeof(value));
	v->namelen = nl;
	v->valuelen = vl;
	v->flags = NGHTTP2_NV_FLAG_NONE;
}

/* The request's fields for nghttp2 into nv (one loop thread's static
 * arrays: nghttp2 copies them on submit): pseudo-fields (protocol: an
 * extended CONNECT's :protocol, or NULL), then l less what is of this hop
 * only, names lower-cased. Their number. */
static size_t request_nv(struct wconn *c, nghttp2_nv **out, const char *method, const char *protocol,
			 const char *path, const char *authority, const struct hlist *l)
{
	static nghttp2_nv nv[HLIST_MAX + 5];
	static char lower[WAYPOINT_HEAD_MAX + 8192];
	const char *scheme = c->https ? "https" : "http";
	size_t n = 0, off = 0;
	bool conn = wp_has_conn(l);

	nv_set(&nv[n++], ":method", 7, method, strlen(method));
	if (protocol)
		nv_set(&nv[n++], ":protocol", 9, protocol, strlen(protocol));
	nv_set(&nv[n++], ":scheme", 7, scheme, strlen(scheme));
	nv_set(&nv[n++], ":authority", 10, authority, strlen(authority));
	nv_set(&nv[n++], ":path", 5, path, strlen(path));
	for (size_t i = 0; i < l->n && n < sizeof(nv) / sizeof(nv[0]); i++) {
		size_t nl = l->name_len[i];

		/* connection-specific fields stay on this hop (RFC 9113 8.2.2);
		 * Expect was answered here (100 Continue); an Upgrade's key is
		 * HTTP/1.1's handshake (RFC 8441 5: none over HTTP/2) */
		if (wp_hop_header(l->name[i], nl) || wp_te_other(l->name[i], nl, l->value[i], l->value_len[i]) ||
		    (conn && wp_conn_named(l, l->name[i], nl)) || (nl == 6 && !strncasecmp(l->name[i], "expect", 6)) ||
		    (protocol && nl == 17 && !strncasecmp(l->name[i], "sec-websocket-key", 17)) ||
		    off + nl > sizeof(lower))
			continue;
		/* HTTP/2 field names are lower case (8.2.1) */
		for (size_t k = 0; k < nl; k++)
			lower[off + k] = (char)((l->name[i][k] >= 'A' && l->name[i][k] <= 'Z') ? l->name[i][k] + 32
										 : l->name[i][k]);
		nv_set(&nv[n++], lower + off, nl, l->value[i], l->value_len[i]);
		off += nl;
	}
	*out = nv;
	return n;
}

/* Fields as one block that may move (realloc) and still be read: a
 * header, n entries (offsets from the block's start), then the bytes. For
 * a CONNECT held until the backend's SETTINGS, and a request kept to send
 * again (c->retry_head). */
struct nv_block {
	size_t n;
	bool body;			/* a request body follows (a retry's) */
};

struct nv_ent {
	size_t name, namelen, value, valuelen;
};

static size_t nv_block_size(const nghttp2_nv *nv, size_t n)
{
	size_t bytes = sizeof(struct nv_block) + n * sizeof(struct nv_ent);

	for (size_t i = 0; i < n; i++)
		bytes += nv[i].namelen + nv[i].valuelen;
	return bytes;
}

/* p: nv_block_size(nv, n) bytes */
static void nv_block_fill(char *p, const nghttp2_nv *nv, size_t n, bool body)
{
	struct nv_block h = { .n = n, .body = body };
	size_t at = sizeof(h), off = sizeof(h) + n * sizeof(struct nv_ent);

	memcpy(p, &h, sizeof(h));
	for (size_t i = 0; i < n; i++, at += sizeof(struct nv_ent)) {
		struct nv_ent e = { off, nv[i].namelen, off + nv[i].namelen, nv[i].valuelen };

		memcpy(p + off, nv[i].name, nv[i].namelen);
		memcpy(p + off + nv[i].namelen, nv[i].value, nv[i].valuelen);
		memcpy(p + at, &e, sizeof(e));
		off += nv[i].namelen + nv[i].valuelen;
	}
}

/* The block's fields, pointing into it where it is now (one loop thread's
 * static array: nghttp2 copies them on submit). */
static const nghttp2_nv *nv_block_read(const char *p, struct nv_block *h)
{
	static nghttp2_nv nv[HLIST_MAX + 5];

	memcpy(h, p, sizeof(*h));
	if (h->n > sizeof(nv) / sizeof(nv[0]))
		h->n = 0;	/* cannot be: request_nv's bound */
	for (size_t i = 0; i < h->n; i++) {
		struct nv_ent e;

		memcpy(&e, p + sizeof(*h) + i * sizeof(e), sizeof(e));
		nv_set(&nv[i], p + e.name, e.namelen, p + e.value, e.valuelen);
	}
	return nv;
}

/* A new request: the last one's state goes. */
static struct wp_up2 *up2_begin(struct wconn *c)
{
	struct wp_up2 *u = c->up2;

	if (!u && !(u = c->up2 = up2_new(c)))
		return NULL;
	u->head = u->chunked = u->resp_eof = u->closed = u->reset = u->too_big = u->trl = false;
	u->ws = u->tunnel = u->ws_eof = u->retry = false;
	u->status = 0;
	u->http11 = c->rp.http_major == 1 && c->rp.http_minor >= 1;
	u->reqb.head = u->reqb.data = 0;
	u->respb.head = u->respb.data = 0;
	return u;
}

/* The stream, its body (if any) from reqb as it comes. */
static int submit(struct wp_up2 *u, const nghttp2_nv *nv, size_t n, bool body)
{
	nghttp2_data_provider prd = { .source.ptr = u, .read_callback = req_read };

	u->sid = nghttp2_submit_request(u->ng, NULL, nv, n, body ? &prd : NULL, NULL);
	if (u->sid < 0) {
		u->sid = 0;
		return -EIO;
	}
	return nghttp2_session_send(u->ng) ? -EIO : 0;
}

int wp_up2_request(struct wconn *c, const char *method, const char *path, const char *authority,
		   const struct hlist *l, bool body, bool keep)
{
	struct wp_up2 *u = up2_begin(c);
	nghttp2_nv *nv;
	size_t n;

	if (!u)
		return -ENOMEM;
	n = request_nv(c, &nv, method, NULL, path, authority, l);
	if (keep) {
		size_t bytes = nv_block_size(nv, n);

		if (wp_retry_reserve(c, bytes)) {
			nv_block_fill(c->retry_head, nv, n, body);
			c->retry_len = c->retry_hlen = bytes;
		}
	}
	return submit(u, nv, n, body);
}

int wp_up2_resend(struct wconn *c)
{
	struct wp_up2 *u = up2_begin(c);
	size_t blen = c->retry_len - c->retry_hlen;
	struct nv_block h;
	const nghttp2_nv *nv;

	if (!u)
		return -ENOMEM;
	nv = nv_block_read(c->retry_head, &h);
	/* the whole body at once: retry_keep bounds it by reqb's size */
	if (blen && (!wp_body_alloc(c->w, &u->reqb) || buf_put(&u->reqb, c->retry_head + c->retry_hlen, blen) != blen))
		return -ENOMEM;
	return submit(u, nv, h.n, h.body);
}

/* The extended CONNECT, to a backend whose SETTINGS take it (RFC 8441 3);
 * refused here otherwise (the client gets 503, as from Envoy). */
static void ws_submit(struct wp_up2 *u, const nghttp2_nv *nv, size_t n)
{
	nghttp2_data_provider prd = { .source.ptr = u, .read_callback = req_read };

	u->sid = 0;
	if (nghttp2_session_get_remote_settings(u->ng, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) == 1)
		u->sid = nghttp2_submit_request(u->ng, NULL, nv, n, &prd, NULL);
	if (u->sid <= 0) {
		u->sid = 0;
		u->reset = true;
	}
}

/* Its fields kept until the backend's SETTINGS come. */
static bool ws_hold(struct wp_up2 *u, const nghttp2_nv *nv, size_t n)
{
	free(u->ws_held);
	u->ws_held = malloc(nv_block_size(nv, n));
	if (!u->ws_held)
		return false;
	nv_block_fill(u->ws_held, nv, n, false);
	return true;
}

int wp_up2_connect(struct wconn *c, const char *path, const char *authority, const struct hlist *l,
		   const char *key, size_t key_len)
{
	struct wp_up2 *u = up2_begin(c);
	nghttp2_nv *nv;
	size_t n;

	if (!u)
		return -ENOMEM;
	u->ws = true;
	wp_ws_accept(key, key_len, u->accept);
	n = request_nv(c, &nv, "CONNECT", "websocket", path, authority, l);
	if (!u->settings_in) {
		if (!ws_hold(u, nv, n))
			return -ENOMEM;
	} else {
		ws_submit(u, nv, n);
	}
	return nghttp2_session_send(u->ng) ? -EIO : 0;	/* (a new connection's preface) */
}

/* The backend's SETTINGS came: the held CONNECT goes (or is refused). */
static void ws_release(struct wp_up2 *u)
{
	struct nv_block h;
	const nghttp2_nv *nv;

	if (!u->ws_held || !u->settings_in)
		return;
	nv = nv_block_read(u->ws_held, &h);
	ws_submit(u, nv, h.n);
	free(u->ws_held);
	u->ws_held = NULL;
}

bool wp_up2_upgraded(const struct wconn *c)
{
	return c->up2 && c->up2->tunnel;
}

size_t wp_up2_body_room(struct wconn *c)
{
	struct wp_up2 *u = c->up2;

	/* the stream is over (an early answer, a reset): the rest is dropped */
	if (u->closed || u->reset)
		return c->s[C].in.data;
	if (!wp_body_alloc(c->w, &u->reqb))
		return 0;
	return buf_room(&u->reqb);
}

void wp_up2_body(struct wconn *c, const char *p, size_t n)
{
	struct wp_up2 *u = c->up2;

	if (u->closed || u->reset)
		return;
	buf_put(&u->reqb, p, n);	/* within wp_up2_body_room */
}

/* The response body (and its end) from respb to the client, as chunks when
 * chunked; the upstream's windows reopen by what went. */
static void resp_pump(struct wp_up2 *u)
{
	struct wconn *c = u->c;
	struct buf *o = &c->s[C].out;

	if (u->tunnel)
		return;	/* wp_up2_relay's */
	while (u->head && u->respb.data) {
		size_t room = buf_room(o), n = u->respb.data;
		char hex[20];

		if (room <= 32)
			return;
		if (n > room - 32)
			n = room - 32;
		if (c->head_method) {
			/* no body to a HEAD, whatever came */
		} else if (u->chunked) {
			int l = snprintf(hex, sizeof(hex), "%zx\r\n", n);

			buf_put(o, hex, (size_t)l);
			buf_put(o, buf_head(&u->respb), n);
			buf_put(o, "\r\n", 2);
		} else {
			buf_put(o, buf_head(&u->respb), n);
		}
		buf_del(&u->respb, n);
		if (!u->closed)
			nghttp2_session_consume(u->ng, u->sid, n);
		else
			nghttp2_session_consume_connection(u->ng, n);
	}
	if (u->head && u->resp_eof && !u->respb.data && !c->resp_done) {
		if (u->chunked) {
			/* the last chunk, with the trailers if any came (HTTP/1.1
			 * has them only in a chunked body: otherwise they go) */
			size_t nt = u->trl && !u->too_big ? u->l.n : 0;

			if (buf_room(o) < u->text_len + 4 * nt + 8)
				return;
			buf_put(o, "0\r\n", 3);
			for (size_t i = 0; i < nt; i++)
				wp_put_field(o, u->l.name[i], u->l.name_len[i], u->l.value[i], u->l.value_len[i]);
			buf_put(o, "\r\n", 2);
		}
		c->resp_done = true;
	}
}

unsigned int wp_up2_step(struct wconn *c)
{
	struct wp_up2 *u = c->up2;
	struct wside *us = &c->s[U];

	if (us->in.data) {
		ssize_t n = nghttp2_session_mem_recv(u->ng, (const uint8_t *)buf_head(&us->in), us->in.data);

		if (n < 0) {
			us->eof = true;	/* a protocol error: the connection is of no more use */
			us->in.data = us->in.head = 0;
		} else {
			buf_del(&us->in, (size_t)n);
		}
	}
	ws_release(u);
	if (u->sid && !u->closed && (u->reqb.data || c->req_done))
		nghttp2_session_resume_data(u->ng, u->sid);
	resp_pump(u);
	if (nghttp2_session_send(u->ng))
		us->eof = true;
	if (u->retry)
		return WP_UP2_RETRY;
	if (c->resp_done)
		return 0;
	if (u->reset || (us->eof && !us->in.data)) {
		if (!c->resp_started)
			return u->too_big ? 502 : 503;
		/* cut short after the head: the client's connection ends too */
		c->st = W_CLOSING;
		c->req_keepalive = false;
	}
	return 0;
}

bool wp_up2_idle(struct wconn *c)
{
	struct wp_up2 *u = c->up2;
	struct wside *us = &c->s[U];

	if (us->in.data) {
		ssize_t n = nghttp2_session_mem_recv(u->ng, (const uint8_t *)buf_head(&us->in), us->in.data);

		if (n < 0)
			return false;
		buf_del(&us->in, (size_t)n);
	}
	if (nghttp2_session_send(u->ng))
		return false;
	return !us->eof && wp_up2_reusable(c);
}

bool wp_up2_reusable(const struct wconn *c)
{
	return c->up2 && !c->s[U].eof && nghttp2_session_want_read(c->up2->ng) &&
	       nghttp2_session_check_request_allowed(c->up2->ng);
}

/* The client's bytes to reqb (the stream's window bounds them), its end
 * as END_STREAM; the stream's DATA to the client, END_STREAM as a FIN. */
int wp_up2_relay(struct wconn *c, size_t *moved)
{
	struct wp_up2 *u = c->up2;
	struct wside *cs = &c->s[C], *us = &c->s[U];
	size_t n;

	if (u->closed)
		buf_del(&cs->in, cs->in.data);	/* nobody takes them */
	else if (cs->in.data && wp_body_alloc(c->w, &u->reqb) && (n = buf_put(&u->reqb, buf_head(&cs->in), cs->in.data))) {
		buf_del(&cs->in, n);
		c->moved_ms = loop_now_ms();
		*moved += n;
	}
	if (cs->eof && !cs->in.data)
		u->ws_eof = true;
	if (us->in.data) {
		ssize_t r = nghttp2_session_mem_recv(u->ng, (const uint8_t *)buf_head(&us->in), us->in.data);

		if (r < 0)
			return -1;
		buf_del(&us->in, (size_t)r);
	}
	if (u->sid && !u->closed && (u->reqb.data || u->ws_eof))
		nghttp2_session_resume_data(u->ng, u->sid);
	if (u->respb.data && (n = buf_put(&cs->out, buf_head(&u->respb), u->respb.data))) {
		buf_del(&u->respb, n);
		if (!u->closed)
			nghttp2_session_consume(u->ng, u->sid, n);
		else
			nghttp2_session_consume_connection(u->ng, n);
		c->moved_ms = loop_now_ms();
		*moved += n;
	}
	if (nghttp2_session_send(u->ng) || u->reset)
		return -1;
	if (u->resp_eof && !u->respb.data && !cs->out.data && !cs->shut) {
		cs->x.ops->shut(&cs->x);
		cs->shut = true;
	}
	if (cs->shut && u->closed && !us->out.data)
		return 1;
	if (us->eof && !us->in.data && !u->closed)
		return -1;	/* the connection went under the stream */
	return 0;
}
