// SPDX-License-Identifier: Apache-2.0
/* waypoint.c - HTTP/1.1 L7 proxy for Services with routes; see waypoint.h.
 *
 * One struct wconn per client connection, one request at a time: the client's
 * bytes are parsed by http-parser up to the end of a request head (the parser
 * is paused there), the head is routed and rewritten, then the body's bytes
 * go to the upstream as they were received (chunked stays chunked), parsed
 * only to find where the request ends. The response is handled the same way
 * the other direction. Pipelined requests wait in the client buffer until the
 * response before them is complete. After a 101 the connection is a plain
 * byte relay both ways. A backend whose port says HTTP/2 (appProtocol
 * kubernetes.io/h2c) gets each request as a stream instead: waypoint_up2.c
 * (an Upgrade: websocket as an extended CONNECT, whose 2xx is the client's
 * 101; then W_TUNNEL_H2 relays bytes and the stream's DATA).
 */
#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "heap.h"
#include "log.h"
#include "loop.h"
#include "waypoint.h"
#include "waypoint_int.h"
#include "xprt.h"

#define DEFAULT_RETRIES		2
#define DEFAULT_RETRY_BACKOFF_MS	25

static const double bucket_ms[N_BUCKETS] = { 0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500,
					     5000, 10000, 30000 };

static http_parser_settings req_settings, resp_settings;

const char *const waypoint_features[] = {
	/* north-south: Gateway listeners (HTTP, HTTPS) */
	"Gateway",
	"GRPCRoute",
	"GRPCRouteNamedRouteRule",
	"HTTPRoute",
	"HTTPRouteBackendProtocolH2C",
	"ReferenceGrant",
	"HTTPRouteBackendRequestHeaderModification",
	"HTTPRouteCORS",
	"HTTPRouteNamedRouteRule",
	"HTTPRouteParentRefPort",
	"HTTPRoutePathRedirect",
	"HTTPRoutePathRewrite",
	"HTTPRoutePortRedirect",
	"HTTPRouteQueryParamMatching",
	"HTTPRouteRequestMirror",
	"HTTPRouteRequestTimeout",
	"HTTPRouteResponseHeaderModification",
	"HTTPRouteRetry",
	"HTTPRouteSchemeRedirect",
	/* east-west: GAMMA */
	"Mesh",
	"MeshHTTPRouteBackendRequestHeaderModification",
	"MeshHTTPRouteNamedRouteRule",
	"MeshHTTPRouteQueryParamMatching",
	"MeshHTTPRouteRedirectPath",
	"MeshHTTPRouteRedirectPort",
	"MeshHTTPRouteRewritePath",
	"MeshHTTPRouteSchemeRedirect",
	NULL,
};

enum waypoint_proto waypoint_proto_of(const char *ap)
{
	/* Kubernetes' standard values and the names Istio gives protocols
	 * (case-insensitive, as Istio reads them) */
	static const struct {
		const char *name;
		enum waypoint_proto proto;
	} names[] = {
		{ "http", WAYPOINT_PROTO_HTTP1 },	{ "kubernetes.io/ws", WAYPOINT_PROTO_HTTP1 },
		{ "http2", WAYPOINT_PROTO_H2C },	{ "kubernetes.io/h2c", WAYPOINT_PROTO_H2C },
		{ "grpc", WAYPOINT_PROTO_H2C },		{ "grpc-web", WAYPOINT_PROTO_H2C },
	};

	for (size_t i = 0; ap && i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(ap, names[i].name))
			return names[i].proto;
	return WAYPOINT_PROTO_UNSET;
}

uint32_t wp_rand(struct waypoint *w)
{
	/* xorshift64*: route choices need spread, not secrecy */
	w->rnd ^= w->rnd >> 12;
	w->rnd ^= w->rnd << 25;
	w->rnd ^= w->rnd >> 27;
	return (uint32_t)((w->rnd * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Copy, truncating to len - 1 bytes. */
void wp_copy(char *dst, size_t len, const char *src)
{
	size_t n = src ? strnlen(src, len - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = 0;
}

/* Copy n bytes of src (no NUL needed), truncating to len - 1; as
 * snprintf(dst, len, "%.*s", n, src) without the format parsing (heads
 * have no NUL bytes: http-parser refuses them). */
void wp_copy_n(char *dst, size_t len, const char *src, size_t n)
{
	if (n > len - 1)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = 0;
}

/* Concatenate the NUL-terminated parts (NULL as ""), truncating to len - 1. */
void wp_cat(char *dst, size_t len, const char *const *parts, size_t n)
{
	size_t off = 0;

	for (size_t i = 0; i < n; i++) {
		size_t l = parts[i] ? strlen(parts[i]) : 0;

		if (l > len - 1 - off)
			l = len - 1 - off;
		if (l)
			memcpy(dst + off, parts[i], l);
		off += l;
	}
	dst[off] = 0;
}

/* "%llu" of v into b (21 bytes); returns b. */
static char *u64toa(char *b, uint64_t v)
{
	char t[20];
	size_t n = 0, i = 0;

	do
		t[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		b[i++] = t[--n];
	b[i] = 0;
	return b;
}

/* "%u" of v into b (at least 11 bytes); returns b. */
char *wp_utoa(char *b, unsigned int v)
{
	return u64toa(b, v);
}

/* "name.ns.svc.cluster.local", the destination_service of metrics */
static void svc_fqdn(char *dst, size_t len, const char *name, const char *ns)
{
	const char *p[] = { name, ".", ns, ".svc.cluster.local" };

	wp_cat(dst, len, p, 4);
}

/* ---- heads ---- */

static int head_append(struct head *h, uint32_t *off, uint32_t *len, const char *p, size_t n)
{
	if (h->len + n + 1 > sizeof(h->text)) {
		h->overflow = true;
		return -1;
	}
	if (!*len)
		*off = (uint32_t)h->len;
	memcpy(h->text + h->len, p, n);
	h->len += n;
	*len += (uint32_t)n;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct wconn *c = p->data;

	return head_append(c->h, &c->h->url, &c->h->url_len, at, n) ? 0 : 0;
}

static int on_field(http_parser *p, const char *at, size_t n)
{
	struct head *h = ((struct wconn *)p->data)->h;

	if (h->in_value || !h->n) {
		if (h->n == WAYPOINT_HEADERS_MAX) {
			h->overflow = true;
			return 0;
		}
		memset(&h->f[h->n++], 0, sizeof(h->f[0]));
		h->in_value = false;
	}
	head_append(h, &h->f[h->n - 1].name, &h->f[h->n - 1].name_len, at, n);
	return 0;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
	struct head *h = ((struct wconn *)p->data)->h;

	if (!h->n || h->overflow)
		return 0;
	h->in_value = true;
	head_append(h, &h->f[h->n - 1].value, &h->f[h->n - 1].value_len, at, n);
	return 0;
}

static int on_status(http_parser *p, const char *at, size_t n)
{
	struct head *h = ((struct wconn *)p->data)->h;
	size_t have = strlen(h->reason);

	if (have + n >= sizeof(h->reason))
		n = sizeof(h->reason) - 1 - have;
	memcpy(h->reason + have, at, n);
	h->reason[have + n] = 0;
	return 0;
}

static void head_reset(struct head *h)
{
	h->len = 0;
	h->n = 0;
	h->url = h->url_len = 0;
	h->reason[0] = 0;
	h->in_value = false;
	h->overflow = false;
}

/* Stop at the end of a head: the caller handles it, then resumes. */
static int on_headers_complete(http_parser *p)
{
	struct wconn *c = p->data;

	http_parser_pause(p, 1);
	/* A response to HEAD has no body, whatever its Content-Length says. */
	if (p->type == HTTP_RESPONSE && c->head_method)
		return 1;
	return 0;
}

/* A request body's bytes, decoded: for an HTTP/2 upstream (its DATA);
 * other upstreams take the body as it came (client_parse). */
static void retry_keep(struct wconn *c, const char *p, size_t n);

static int on_req_body(http_parser *p, const char *at, size_t n)
{
	struct wconn *c = p->data;

	if (c->up2 && !c->local_answer) {
		wp_up2_body(c, at, n);
		retry_keep(c, at, n);
	}
	return 0;
}

static int on_req_complete(http_parser *p)
{
	struct wconn *c = p->data;

	c->req_done = true;
	http_parser_pause(p, 1);	/* the next pipelined request waits */
	return 0;
}

static int on_resp_complete(http_parser *p)
{
	struct wconn *c = p->data;

	/* 1xx (not 101) are interim: the final response follows. */
	if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
		return 0;
	c->resp_done = true;
	http_parser_pause(p, 1);
	return 0;
}

/* One header edit list, as the connection keeps it: "op\0name\0value\0"... */
size_t wp_edits_pack(char *buf, size_t size, const struct route_hdr_edit *e, size_t n)
{
	size_t off = 0;

	for (size_t i = 0; i < n; i++) {
		const char *v = e[i].value ? e[i].value : "";
		size_t nl = strlen(e[i].name), vl = strlen(v);

		if (off + 1 + nl + 1 + vl + 1 > size)
			break;
		buf[off++] = (char)('0' + e[i].op);
		memcpy(buf + off, e[i].name, nl + 1);
		off += nl + 1;
		memcpy(buf + off, v, vl + 1);
		off += vl + 1;
	}
	return off;
}

static void edits_copy(struct wconn *c, const struct route_hdr_edit *e, size_t n)
{
	c->resp_edits_len = wp_edits_pack(c->resp_edits, sizeof(c->resp_edits), e, n);
}


static void hlist_from_head(struct hlist *l, const struct head *h)
{
	l->n = 0;
	for (size_t i = 0; i < h->n && l->n < HLIST_MAX; i++, l->n++) {
		l->name[l->n] = h->text + h->f[i].name;
		l->name_len[l->n] = h->f[i].name_len;
		l->value[l->n] = h->text + h->f[i].value;
		l->value_len[l->n] = h->f[i].value_len;
	}
}

static bool name_is(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && !strncasecmp(a, b, alen);
}

void wp_hlist_remove(struct hlist *l, const char *name)
{
	size_t j = 0;

	for (size_t i = 0; i < l->n; i++) {
		if (name_is(l->name[i], l->name_len[i], name))
			continue;
		l->name[j] = l->name[i];
		l->name_len[j] = l->name_len[i];
		l->value[j] = l->value[i];
		l->value_len[j] = l->value_len[i];
		j++;
	}
	l->n = j;
}

void wp_hlist_add(struct hlist *l, const char *name, const char *value)
{
	if (l->n == HLIST_MAX)
		return;
	l->name[l->n] = name;
	l->name_len[l->n] = strlen(name);
	l->value[l->n] = value;
	l->value_len[l->n] = strlen(value);
	l->n++;
}

void wp_hlist_set(struct hlist *l, const char *name, const char *value)
{
	for (size_t i = 0; i < l->n; i++)
		if (name_is(l->name[i], l->name_len[i], name)) {
			/* the first keeps its place, the others go */
			l->value[i] = value;
			l->value_len[i] = strlen(value);
			for (size_t k = i + 1; k < l->n; k++)
				if (name_is(l->name[k], l->name_len[k], name)) {
					l->name_len[k] = 0;
					l->name[k] = "";
				}
			size_t j = 0;
			for (size_t k = 0; k < l->n; k++) {
				if (!l->name_len[k])
					continue;
				l->name[j] = l->name[k];
				l->name_len[j] = l->name_len[k];
				l->value[j] = l->value[k];
				l->value_len[j] = l->value_len[k];
				j++;
			}
			l->n = j;
			return;
		}
	wp_hlist_add(l, name, value);
}

void wp_hlist_edit(struct hlist *l, enum route_hdr_op op, const char *name, const char *value)
{
	switch (op) {
	case ROUTE_HDR_SET:
		wp_hlist_set(l, name, value);
		break;
	case ROUTE_HDR_ADD:
		wp_hlist_add(l, name, value);
		break;
	case ROUTE_HDR_REMOVE:
		wp_hlist_remove(l, name);
		break;
	}
}

void wp_hlist_edits_packed(struct hlist *l, const char *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		enum route_hdr_op op = (enum route_hdr_op)(p[off++] - '0');
		const char *name = p + off;
		const char *value;

		off += strlen(name) + 1;
		value = p + off;
		off += strlen(value) + 1;
		wp_hlist_edit(l, op, name, value);
	}
}

/* One room check and two copies a field, not four buf_puts. */
bool wp_put_field(struct buf *b, const char *n, size_t nl, const char *v, size_t vl)
{
	char *t;

	if (buf_room(b) < nl + vl + 4)
		return false;
	t = buf_tail(b);
	if (nl)
		memcpy(t, n, nl);
	t[nl] = ':';
	t[nl + 1] = ' ';
	if (vl)
		memcpy(t + nl + 2, v, vl);
	t[nl + 2 + vl] = '\r';
	t[nl + 3 + vl] = '\n';
	buf_add(b, nl + vl + 4);
	return true;
}

/* Append "name: value\r\n"... and the final CRLF. false: no room. */
bool wp_hlist_write(struct buf *b, const struct hlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (!wp_put_field(b, l->name[i], l->name_len[i], l->value[i], l->value_len[i]))
			return false;
	return buf_put(b, "\r\n", 2) == 2;
}

static bool buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool buf_printf(struct buf *b, const char *fmt, ...)
{
	size_t room = buf_room(b);
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf_tail(b), room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room)
		return false;
	buf_add(b, (size_t)n);
	return true;
}

/* Append the parts (one line, say); false, with nothing appended, when
 * they do not fit (as buf_printf). */
static bool buf_cat(struct buf *b, const char *const *parts, size_t n)
{
	size_t len[8], total = 0;

	if (n > 8)
		return false;
	for (size_t i = 0; i < n; i++)
		total += len[i] = strlen(parts[i]);
	if (total >= buf_room(b))
		return false;
	for (size_t i = 0; i < n; i++)
		buf_put(b, parts[i], len[i]);
	return true;
}

/* ---- metrics ---- */

static struct series *series_get(struct waypoint *w, const struct wconn *c, const struct waypoint_dst *dst,
				  const char *svc_name, unsigned int code)
{
	struct series *s = w->series_hit;

#define SERIES_IS(s) ((s)->code == code && !strcmp((s)->src_ns, c->ns) && !strcmp((s)->src_wl, c->name) && \
		      !strcmp((s)->dst_svc, svc_name) && !strcmp((s)->dst_ns, dst->ns) && \
		      !strcmp((s)->dst_wl, dst->workload))
	if (s && SERIES_IS(s))
		return s;
	for (s = w->series; s; s = s->next)
		if (SERIES_IS(s))
			return w->series_hit = s;
#undef SERIES_IS
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->src_ns = strdup(c->ns);
	s->src_wl = strdup(c->name);
	s->dst_svc = strdup(svc_name);
	s->dst_ns = strdup(dst->ns);
	s->dst_wl = strdup(dst->workload);
	if (!s->src_ns || !s->src_wl || !s->dst_svc || !s->dst_ns || !s->dst_wl) {
		free(s->src_ns);
		free(s->src_wl);
		free(s->dst_svc);
		free(s->dst_ns);
		free(s->dst_wl);
		free(s);
		return NULL;
	}
	s->code = code;
	s->next = w->series;
	w->series = s;
	return w->series_hit = s;
}

#define ALOG_SIZE		65536
#define ALOG_LINE_MAX		2200	/* room kept for one line */
#define ALOG_FLUSH_MS		1000

static void alog_flush(struct waypoint *w)
{
	size_t off = 0;

	while (off < w->alog_len) {
		ssize_t n = write(STDERR_FILENO, w->alog + off, w->alog_len - off);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		break;		/* stderr gone or full: the lines are lost, as a log line's would be */
	}
	w->alog_len = 0;
	loop_timer_cancel(w->loop, &w->alog_timer);
}

static void alog_timer_cb(struct loop_timer *t)
{
	alog_flush(t->arg);
}

/* One line, as pr_info("access: %s/%s %s %s -> %s %s/%s %u %llums") would
 * write it, put together without printf (it is per request). */
static void alog_line(struct waypoint *w, const struct wconn *c, const struct waypoint_dst *dst,
		      const char *svc_name, const char *method, const char *path, unsigned int status,
		      uint64_t ms)
{
	char num[12], dur[21];
	const char *parts[] = {
		"access: ", c->ns, "/", c->name, " ", method, " ", path, " -> ", svc_name[0] ? svc_name : "-",
		" ", dst->ns[0] ? dst->ns : "-", "/", dst->pod[0] ? dst->pod : "-", " ", wp_utoa(num, status),
		" ", u64toa(dur, ms), "ms\n",
	};
	size_t n;

	if (ALOG_SIZE - w->alog_len < ALOG_LINE_MAX)
		alog_flush(w);
	n = log_prefix(w->alog + w->alog_len, ALOG_SIZE - w->alog_len, LOG_INFO);
	if (!n)
		return;
	/* at most about 1,300 bytes (the fields' sizes): it fits in ALOG_LINE_MAX */
	wp_cat(w->alog + w->alog_len + n, ALOG_LINE_MAX - n, parts, sizeof(parts) / sizeof(parts[0]));
	n += strlen(w->alog + w->alog_len + n);
	if (!w->alog_len)
		loop_timer_arm(w->loop, &w->alog_timer, ALOG_FLUSH_MS);
	w->alog_len += n;
}

void wp_count(struct wconn *c, const struct waypoint_dst *dst, const char *svc_name, const char *method,
	      const char *path, unsigned int status, uint64_t start_ms)
{
	struct waypoint *w = c->w;
	uint64_t ms = loop_now_ms() - start_ms;
	struct series *s;

	w->st.responses_by_class[status / 100 < 6 ? status / 100 : 0]++;
	s = series_get(w, c, dst, svc_name, status);
	if (s) {
		s->count++;
		s->sum_ms += (double)ms;
		for (int i = 0; i < N_BUCKETS; i++)
			if ((double)ms <= bucket_ms[i])
				s->buckets[i]++;
	}
	if (w->alog)
		alog_line(w, c, dst, svc_name, method, path, status, ms);
}

static void request_done(struct wconn *c)
{
	wp_count(c, &c->dst, c->svc_name, c->method, c->path, c->status, c->req_start_ms);
}

/* ---- mirrors ---- */

#define MIRROR_TIMEOUT_MS 10000

static void mirror_free(struct mirror *m)
{
	struct waypoint *w = m->w;

	loop_del(w->loop, &m->io);
	close(m->fd);
	loop_timer_cancel(w->loop, &m->timer);
	if (m->prev)
		m->prev->next = m->next;
	else
		w->mirrors = m->next;
	if (m->next)
		m->next->prev = m->prev;
	free(m->out);
	wp_bury(w, m, NULL);
}

static void mirror_io(struct loop_io *io, uint32_t ev)
{
	struct mirror *m = io->arg;
	char sink[4096];

	(void)ev;
	while (m->off < m->len) {
		ssize_t n = send(m->fd, m->out + m->off, m->len - m->off, MSG_NOSIGNAL);

		if (n > 0) {
			m->off += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		mirror_free(m);
		return;
	}
	if (m->io.events & EPOLLOUT)
		loop_mod(m->w->loop, &m->io, EPOLLIN | EPOLLRDHUP);
	for (;;) {
		ssize_t n = read(m->fd, sink, sizeof(sink));

		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		mirror_free(m);	/* the answer is over (or broken): nobody waits for it */
		return;
	}
}

static void mirror_timeout(struct loop_timer *t)
{
	mirror_free(t->arg);
}

/* Send a copy of a request (head text, no body) to be; the answer is dropped. */
static void mirror_send(struct waypoint *w, const struct tunnel_client *cl, const struct tunnel_addr *vip,
			const struct route_backend *be, const char *head, size_t len)
{
	struct waypoint_dst dst = { 0 };
	struct mirror *m = calloc(1, sizeof(*m));
	int fd;

	if (!m || !(m->out = malloc(len))) {
		free(m);
		return;
	}
	fd = w->ops.upstream(w->arg, cl, vip, be, &dst);
	if (fd < 0) {
		free(m->out);
		free(m);
		return;
	}
	memcpy(m->out, head, len);
	m->len = len;
	m->w = w;
	m->fd = fd;
	loop_timer_init(&m->timer, mirror_timeout, m);
	if (loop_add(w->loop, &m->io, fd, EPOLLOUT | EPOLLIN | EPOLLRDHUP, mirror_io, m)) {
		close(fd);
		free(m->out);
		free(m);
		return;
	}
	m->next = w->mirrors;
	if (w->mirrors)
		w->mirrors->prev = m;
	w->mirrors = m;
	loop_timer_arm(w->loop, &m->timer, MIRROR_TIMEOUT_MS);
}

/* ---- connections ---- */

static void conn_io_cb(struct loop_io *io, uint32_t ev);
static void conn_timer_cb(struct loop_timer *t);
static void conn_step(struct wconn *c);

static void side_close(struct wconn *c, enum wend e, bool rst)
{
	struct wside *s = &c->s[e];

	if (s->fd < 0)
		return;
	if (e == U)
		wp_up2_free(c);	/* its HTTP/2 session, if it had one */
	loop_del(c->w->loop, &s->io);
	if (s->use_x)
		s->x.ops->close(&s->x, rst);
	else if (rst)
		xprt_close_rst(s->fd);
	else
		close(s->fd);
	s->fd = -1;
	s->eof = false;
	s->shut = false;
	s->hup = false;
	s->rd = false;
	s->in.data = s->in.head = 0;
	s->out.data = s->out.head = 0;
}

static void conn_release(void *p)
{
	struct wconn *c = p;

	for (int i = 0; i < 2; i++) {
		free(c->s[i].in.area);
		free(c->s[i].out.area);
	}
	free(c->h);
	free(c);
}

static void reap(struct loop_timer *t)
{
	struct waypoint *w = t->arg;

	/* a release never buries more: the list is stable while it runs */
	for (size_t i = 0; i < w->n_graves; i++)
		w->graves[i].release(w->graves[i].p);
	w->n_graves = 0;
}

void wp_bury(struct waypoint *w, void *p, void (*release)(void *p))
{
	if (!release)
		release = free;
	if (w->n_graves == w->cap_graves) {
		size_t cap = w->cap_graves ? 2 * w->cap_graves : 64;
		struct grave *v = realloc(w->graves, cap * sizeof(*v));

		if (!v) {	/* no room to wait: the lesser risk is to free now */
			release(p);
			return;
		}
		w->graves = v;
		w->cap_graves = cap;
	}
	w->graves[w->n_graves++] = (struct grave){ p, release };
	if (!loop_timer_armed(&w->reaper))
		loop_timer_arm(w->loop, &w->reaper, 0);
}

void wp_conn_free(struct wconn *c, bool rst)
{
	struct waypoint *w = c->w;

	wp_h2_free(c);
	free(c->retry_head);
	loop_timer_cancel(w->loop, &c->retry_timer);
	side_close(c, U, rst);
	side_close(c, C, rst);
	loop_timer_cancel(w->loop, &c->timer);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->st.conns_open--;
	wp_bury(w, c, conn_release);
}

static int side_open(struct wconn *c, enum wend e, int fd)
{
	struct wside *s = &c->s[e];
	int r;

	s->fd = fd;
	s->eof = s->shut = s->hup = false;
	/* a client may have spoken already; an upstream has nothing to say yet */
	s->rd = e == C;
	r = loop_add(c->w->loop, &s->io, fd, EPOLLIN | EPOLLRDHUP, conn_io_cb, c);
	if (r) {
		s->fd = -1;
		return r;
	}
	return 0;
}

/* Answer the request in flight ourselves (no upstream), then go on as the
 * request says (keep-alive or close). */
static void answer(struct wconn *c, unsigned int status, const char *reason, const char *location,
		   const char *body)
{
	struct buf *o = &c->s[C].out;
	struct hlist l;
	char clen[24];
	size_t blen = body ? strlen(body) : 0;

	l.n = 0;
	snprintf(clen, sizeof(clen), "%zu", blen);
	wp_hlist_add(&l, "content-length", clen);
	if (blen)
		wp_hlist_add(&l, "content-type", "text/plain");
	if (location)
		wp_hlist_add(&l, "location", location);
	if (!c->req_keepalive || c->w->draining)
		wp_hlist_add(&l, "connection", "close");
	wp_hlist_edits_packed(&l, c->resp_edits, c->resp_edits_len);
	if (!buf_printf(o, "HTTP/1.1 %u %s\r\n", status, reason) || !wp_hlist_write(o, &l) ||
	    buf_put(o, body ? body : "", blen) != blen) {
		c->st = W_CLOSING;
		return;
	}
	c->status = (uint16_t)status;
	c->local_answer = true;
	c->resp_started = c->resp_done = true;
	c->resp_keepalive = c->req_keepalive;
}

const char *wp_reason_of(unsigned int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

/* A failure before any response byte went to the client: answer it; after:
 * nothing to say, close. Either way the request ends here: counted and
 * logged (with the status the client got). */
static void fail(struct wconn *c, unsigned int status, const char *body)
{
	c->req_keepalive = false;	/* the request's remains are unknown */
	c->st = W_CLOSING;
	if (!c->resp_started) {
		side_close(c, U, true);
		answer(c, status, wp_reason_of(status), NULL, body);
	}
	request_done(c);
}

static void retry_clear(struct wconn *c)
{
	c->retry_len = 0;
	c->retry.left = 0;
	loop_timer_cancel(c->w->loop, &c->retry_timer);
}

void wp_retry_set(struct wp_retry *r, const struct route_decision *d)
{
	bool def = !d->retry_attempts;

	r->by_route = !def;
	r->left = def ? DEFAULT_RETRIES : d->retry_attempts;
	r->backoff_ms = def ? DEFAULT_RETRY_BACKOFF_MS : d->retry_backoff_ms;
	r->n_codes = def ? 0 : d->n_retry_codes < 16 ? d->n_retry_codes : 16;
	for (size_t i = 0; i < r->n_codes; i++)
		r->codes[i] = d->retry_codes[i];
	wp_copy(r->ns, sizeof(r->ns), d->backend.ns);
	wp_copy(r->name, sizeof(r->name), d->backend.name);
	r->port = d->backend.port;
}

bool wp_retry_code(const struct wp_retry *r, unsigned int code)
{
	for (size_t i = 0; i < r->n_codes; i++)
		if (r->codes[i] == code)
			return true;
	return false;
}

/* Room for n bytes of request to send again; false when none. It grows by
 * doubling: a body comes in many pieces. */
bool wp_retry_reserve(struct wconn *c, size_t n)
{
	size_t cap = c->retry_cap < 1024 ? 1024 : c->retry_cap;
	char *p;

	if (n <= c->retry_cap)
		return true;
	while (cap < n)
		cap *= 2;
	p = realloc(c->retry_head, cap);
	if (!p)
		return false;
	c->retry_head = p;
	c->retry_cap = cap;
	return true;
}

unsigned int wp_idle_ms(const struct waypoint *w)
{
	return w->o.idle_timeout_ms ? w->o.idle_timeout_ms : 60000;
}

unsigned int wp_header_ms(const struct waypoint *w)
{
	return w->o.header_timeout_ms ? w->o.header_timeout_ms : 10000;
}

/* Body bytes as they go upstream (as sent: chunked framing too; decoded to
 * an HTTP/2 upstream), kept for a retry while they fit WP_RETRY_BODY_MAX
 * (and the buffer where a retry puts them at once: the HTTP/1.1
 * upstream's, an HTTP/2 stream's body buffer of the same size); past that
 * the copy goes and the request is not retried: its body streams, not
 * held. */
static void retry_keep(struct wconn *c, const char *p, size_t n)
{
	if (!c->retry_len || !n)
		return;
	if (c->retry_len - c->retry_hlen + n > WP_RETRY_BODY_MAX ||
	    (!c->retry_h2 && c->retry_len + n > c->s[U].out.size) ||
	    !wp_retry_reserve(c, c->retry_len + n)) {
		retry_clear(c);
		return;
	}
	memcpy(c->retry_head + c->retry_len, p, n);
	c->retry_len += n;
}

/* The connection's deadline (a head, idle, the request) is now + ms. The
 * timer moves only when that is earlier than where it is armed: set per
 * request, a later one costs no heap update; a firing before due_ms
 * re-arms for the rest. */
void wp_conn_deadline(struct wconn *c, uint64_t now, unsigned int ms)
{
	c->due_ms = now + ms;
	if (!loop_timer_armed(&c->timer) || c->timer.due_ms > c->due_ms)
		loop_timer_arm(c->w->loop, &c->timer, ms);
}

static void request_reset(struct wconn *c)
{
	retry_clear(c);
	if (c->retry_cap > WAYPOINT_HEAD_MAX + 8192) {	/* a body's copy is not kept for the next */
		free(c->retry_head);
		c->retry_head = NULL;
		c->retry_cap = 0;
	}
	c->req_done = c->resp_started = c->resp_done = c->local_answer = false;
	c->status = 0;
	c->resp_edits_len = 0;
	c->head_method = false;
	c->dst = (struct waypoint_dst){ 0 };
	c->svc_name[0] = 0;
	http_parser_init(&c->rp, HTTP_REQUEST);
	c->rp.data = c;
	head_reset(c->h);
	c->st = W_HEAD;
	c->deadline_ms = 0;
	c->head_timed = false;
	wp_conn_deadline(c, loop_now_ms(), wp_idle_ms(c->w));
}

/* Split the request target into path and query (into buffers of the head). */
static void target_split(const char *url, size_t len, char *path, size_t plen, char *query, size_t qlen,
			 bool *has_query)
{
	const char *end = url + len, *q, *p = url;

	/* absolute-form (http://host/path?q): the path starts at the first
	 * '/' after the authority (none: "/") */
	if (len > 7 && !strncasecmp(url, "http://", 7)) {
		const char *auth_end = url + 7;

		while (auth_end < end && *auth_end != '/' && *auth_end != '?')
			auth_end++;
		p = auth_end;
	}
	q = memchr(p, '?', (size_t)(end - p));
	{
		size_t pl = (size_t)((q ? q : end) - p);

		if (pl)
			wp_copy_n(path, plen, p, pl);
		else
			wp_copy_n(path, plen, "/", 1);
	}
	*has_query = q != NULL;
	if (q)
		wp_copy_n(query, qlen, q + 1, (size_t)(end - q - 1));
	else
		query[0] = 0;
}

static const char *head_get(const struct head *h, const char *name, size_t *len)
{
	for (size_t i = 0; i < h->n; i++)
		if (name_is(h->text + h->f[i].name, h->f[i].name_len, name)) {
			*len = h->f[i].value_len;
			return h->text + h->f[i].value;
		}
	return NULL;
}

void wp_client_of(const struct wconn *c, struct tunnel_client *cl)
{
	*cl = (struct tunnel_client){
		.ns = c->ns, .name = c->name, .service_account = c->sa, .identity = c->identity,
		.ips = c->ips, .n_ips = c->n_ips, .port = c->cport, .gw_ns = c->gw_ns, .gw_name = c->gw_name,
	};
}

void wp_decide(struct wconn *c, const char *method, const char *path, const char *query, const char *host,
	       const struct route_header *h, size_t n, struct route_decision *d)
{
	struct waypoint *w = c->w;
	struct route_backend svc = { 0 };
	const struct route_set *set;
	struct tunnel_client cl;
	bool https = false;

	wp_client_of(c, &cl);
	set = w->ops.routes(w->arg, &cl, &c->vip, host, &svc, &https);
	if (!cl.ns[0]) {
		/* the listener that took the request names the Gateway, whose
		 * identity the upstream carries into the mesh */
		const char *gns = "", *gname = "";

		route_set_gateway(set, &gns, &gname);
		wp_copy(c->gw_ns, sizeof(c->gw_ns), gns);
		wp_copy(c->gw_name, sizeof(c->gw_name), gname);
	}
	route_decision_reset(d);
	c->svc_name[0] = 0;
	if (w->ops.authorize && (cl.ns[0] ? svc.name != NULL : true)) {
		/* AuthorizationPolicy targeting the Service or the Gateway: before any routing */
		int st = w->ops.authorize(w->arg, &cl, &c->vip, &svc, method, path, host, h, n);

		if (st) {
			if (svc.name)
				svc_fqdn(c->svc_name, sizeof(c->svc_name), svc.name, svc.ns);
			d->action = ROUTE_RESPOND;
			d->status = (uint16_t)st;
			w->st.denied++;
			return;
		}
	}
	if (set) {
		struct route_request rq = {
			.method = method, .path = path, .query = query, .host = host,
			.scheme = https ? "https" : "http", .port = c->vip.port, .headers = h, .n_headers = n,
		};

		route_decide(set, &rq, route_pick_next(&w->pick_seq), d);
	} else if (svc.name) {
		int len = snprintf(d->path, sizeof(d->path), "%.*s%s%.*s", (int)(sizeof(d->path) / 2), path,
				   query ? "?" : "", (int)(sizeof(d->path) / 2 - 2), query ? query : "");

		(void)len;
		d->action = ROUTE_FORWARD;
		d->backend = svc;
	} else {
		/* a Gateway with no listener for this Host: nothing routes it;
		 * a Service VIP the model no longer knows: unavailable */
		d->action = ROUTE_RESPOND;
		d->status = cl.ns[0] ? 503 : 404;
	}
	if (d->action == ROUTE_FORWARD)
		svc_fqdn(c->svc_name, sizeof(c->svc_name), d->backend.name, d->backend.ns);
	else if (svc.name)
		svc_fqdn(c->svc_name, sizeof(c->svc_name), svc.name, svc.ns);
}

/* May the request go again? As the route says (else as Istio's default,
 * twice when the upstream fails before a response starts); its head is
 * kept, its body as it goes (retry_keep); one whose content-length says it
 * will not fit is not. The default sends no body twice: a reset after it
 * went may come after the backend acted on it (a POST done twice). */
static bool retry_wanted(const struct wconn *c, const struct route_decision *d)
{
	bool chunked = c->rp.flags & F_CHUNKED, no_len = c->rp.content_length == ULLONG_MAX;
	bool body = chunked || (!no_len && c->rp.content_length);
	bool fits = chunked || no_len || c->rp.content_length <= WP_RETRY_BODY_MAX;

	return (!body || d->retry_attempts) && fits;
}

/* The request, routed and rewritten (l), as a stream of the HTTP/2
 * upstream. Host becomes :authority. Retried as over HTTP/1.1 (its fields
 * and decoded body kept), not mirrored (as requests over HTTP/2 from a
 * client are not). An Expect: 100-continue is answered here: the body then
 * streams as the upstream's window allows. */
static void route_request_h2(struct wconn *c, const struct route_decision *d, const char *method,
			     const char *path, const struct hlist *l)
{
	bool body = (c->rp.flags & F_CHUNKED) || (c->rp.content_length > 0 && c->rp.content_length != ULLONG_MAX);
	const char *auth = "", *up, *key;
	char host[256];
	size_t len, key_len = 0;

	retry_clear(c);
	for (size_t i = 0; i < l->n; i++)
		if (name_is(l->name[i], l->name_len[i], "host")) {
			wp_copy_n(host, sizeof(host), l->value[i], l->value_len[i]);
			auth = host;
			break;
		}
	if (c->rp.upgrade && (up = head_get(c->h, "upgrade", &len)) && wp_is_websocket(up, len)) {
		/* a WebSocket: an extended CONNECT stream (RFC 8441), whose 2xx
		 * the client gets as its 101 (then W_TUNNEL_H2) */
		key = head_get(c->h, "sec-websocket-key", &key_len);
		if (wp_up2_connect(c, path, auth, l, key ? key : "", key ? key_len : 0)) {
			c->w->st.upstream_errors++;
			fail(c, 502, NULL);
			return;
		}
		c->st = W_REQUEST;
		return;
	}
	if (body && head_get(c->h, "expect", &len) && len == 12 &&
	    !strncasecmp(head_get(c->h, "expect", &len), "100-continue", 12))
		buf_put(&c->s[C].out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	c->retry_h2 = true;
	if (wp_up2_request(c, method, path, auth, l, body, retry_wanted(c, d))) {
		c->w->st.upstream_errors++;
		fail(c, 502, NULL);
		return;
	}
	if (c->retry_len)
		wp_retry_set(&c->retry, d);
	c->st = W_REQUEST;
}

/* Route the head in c->h; write the rewritten head to the upstream. */
static void route_request(struct wconn *c)
{
	struct waypoint *w = c->w;
	struct head *h = c->h;
	struct route_header hdrs[WAYPOINT_HEADERS_MAX];
	static struct route_decision d;	/* large; one loop thread */
	struct tunnel_client cl;
	char path[2048], query[2048], host[256] = "";
	const char *method = http_method_str((enum http_method)c->rp.method);
	bool has_query;
	size_t hl = 0;
	const char *hv = head_get(h, "host", &hl);
	struct buf *o;
	struct hlist l;
	char key[320];
	bool up_h2;

	w->st.requests_total++;
	c->any_request = true;
	c->req_start_ms = loop_now_ms();
	c->req_keepalive = http_should_keep_alive(&c->rp);
	c->head_method = c->rp.method == HTTP_HEAD;
	wp_copy(c->method, sizeof(c->method), method);
	target_split(h->text + h->url, h->url_len, path, sizeof(path), query, sizeof(query), &has_query);
	wp_copy(c->path, sizeof(c->path), path);
	if (hv)
		wp_copy_n(host, sizeof(host), hv, hl);
	for (size_t i = 0; i < h->n; i++)
		hdrs[i] = (struct route_header){ h->text + h->f[i].name, h->f[i].name_len,
						 h->text + h->f[i].value, h->f[i].value_len };
	wp_client_of(c, &cl);
	wp_decide(c, method, path, has_query ? query : NULL, hv ? host : NULL, hdrs, h->n, &d);
	edits_copy(c, d.resp_edits, d.n_resp_edits);
	if (d.action == ROUTE_REDIRECT) {
		answer(c, d.status, wp_reason_of(d.status), d.location, NULL);
		return;
	}
	if (d.action == ROUTE_RESPOND) {
		answer(c, d.status, wp_reason_of(d.status), NULL,
		       d.status == 404 ? "no route matched\n" : d.status >= 500 ? "no healthy upstream\n" : NULL);
		return;
	}
	/* timeouts: the route's request timeout bounds the whole exchange */
	{
		unsigned int t = d.request_timeout_ms ? d.request_timeout_ms : d.backend_timeout_ms;

		if (!t)
			t = w->o.upstream_timeout_ms ? w->o.upstream_timeout_ms : 300000;
		c->deadline_ms = c->req_start_ms + t;
		wp_conn_deadline(c, c->req_start_ms, t);
	}
	{
		char port[12];
		const char *p[] = { d.backend.ns, "/", d.backend.name, ":", wp_utoa(port, d.backend.port),
				    "@", c->gw_ns, "/", c->gw_name };

		wp_cat(key, sizeof(key), p, 9);
	}
	if (c->s[U].fd >= 0 && (!c->up_reusable || strcmp(key, c->up_key)))
		side_close(c, U, false);
	up_h2 = c->s[U].fd >= 0 && c->up2;
	if (c->s[U].fd < 0) {
		struct waypoint_dst dst = { 0 };
		int fd = w->ops.upstream(w->arg, &cl, &c->vip, &d.backend, &dst);

		if (fd < 0) {
			w->st.upstream_errors++;
			answer(c, fd == -ENOENT ? 503 : 502, wp_reason_of(fd == -ENOENT ? 503 : 502), NULL,
			       "no healthy upstream\n");
			return;
		}
		if (side_open(c, U, fd)) {
			close(fd);
			answer(c, 502, wp_reason_of(502), NULL, NULL);
			return;
		}
		c->dst = dst;
		wp_copy(c->up_key, sizeof(c->up_key), key);
		/* the port says HTTP/2: the request is translated (not said:
		 * HTTP/1.1, as the client speaks) */
		up_h2 = dst.proto == WAYPOINT_PROTO_H2C;
	}
	c->up_reusable = false;
	http_parser_init(&c->sp, HTTP_RESPONSE);
	c->sp.data = c;
	/* the request as it leaves */
	hlist_from_head(&l, h);
	if (d.host[0])
		wp_hlist_set(&l, "host", d.host);
	for (size_t i = 0; i < d.n_req_edits; i++)
		wp_hlist_edit(&l, d.req_edits[i].op, d.req_edits[i].name,
			   d.req_edits[i].value ? d.req_edits[i].value : "");
	if (up_h2) {
		route_request_h2(c, &d, method, d.path[0] ? d.path : "/", &l);
		return;
	}
	o = &c->s[U].out;
	{
		const char *rl[] = { method, " ", d.path[0] ? d.path : "/", " HTTP/1.1\r\n" };

		if (!buf_cat(o, rl, 4) || !wp_hlist_write(o, &l)) {
			answer(c, 431, wp_reason_of(431), NULL, NULL);
			c->req_keepalive = false;
			c->st = W_CLOSING;
			return;
		}
		/* its head is kept to send again, its body as it goes */
		retry_clear(c);
		c->retry_h2 = false;
		if (retry_wanted(c, &d) && wp_retry_reserve(c, o->data)) {
			memcpy(c->retry_head, buf_head(o), o->data);
			c->retry_len = o->data;
			c->retry_hlen = o->data;
			wp_retry_set(&c->retry, &d);
		}
		/* mirrors get the same head; a request with a body is not
		 * mirrored (its bytes stream once, to the backend) */
		if (d.n_mirrors && !(c->rp.flags & F_CHUNKED) &&
		    (c->rp.content_length == 0 || c->rp.content_length == ULLONG_MAX)) {
			struct hlist ml = l;

			wp_hlist_set(&ml, "connection", "close");
			for (size_t i = 0; i < d.n_mirrors; i++) {
				char mh[WAYPOINT_HEAD_MAX + 4096];
				struct buf mb = { .area = mh, .size = sizeof(mh) };

				if (buf_printf(&mb, "%s %s HTTP/1.1\r\n", method, d.path[0] ? d.path : "/") &&
				    wp_hlist_write(&mb, &ml))
					mirror_send(w, &cl, &c->vip, &d.mirrors[i], mh, mb.data);
			}
		}
	}
	c->st = W_REQUEST;
}

/* After a pause at the end of a head, the parser has not consumed the head's
 * final LF yet: consume it here, so that it is not taken for a body byte.
 * This may end the message (no body). 0, or -1 on a parser error. */
static int head_finish(http_parser *p, const http_parser_settings *st, struct buf *in)
{
	size_t n;
	enum http_errno e;

	http_parser_pause(p, 0);
	if (!in->data)
		return 0;
	n = http_parser_execute(p, st, buf_head(in), 1);
	buf_del(in, n);
	e = HTTP_PARSER_ERRNO(p);
	if (e == HPE_PAUSED)
		http_parser_pause(p, 0);
	else if (e != HPE_OK)
		return -1;
	return 0;
}

/* Feed client bytes to the request parser; body bytes go to the upstream. */
static void client_parse(struct wconn *c)
{
	struct wside *cs = &c->s[C], *us = &c->s[U];

	/* a new request waits until what went before has left */
	while (c->st == W_HEAD && cs->in.data && !cs->out.data && !(us->fd >= 0 && us->out.data)) {
		if (!c->head_timed) {
			/* a keep-alive head that has begun gets the header deadline,
			 * not what is left of the idle one: a client dripping it byte
			 * by byte is cut off as on a new connection */
			uint64_t now = loop_now_ms();
			unsigned int ht = wp_header_ms(c->w);

			c->head_timed = true;
			if (!c->due_ms || now + ht < c->due_ms)
				wp_conn_deadline(c, now, ht);
		}
		size_t n = http_parser_execute(&c->rp, &req_settings, buf_head(&cs->in), cs->in.data);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->rp);

		buf_del(&cs->in, n);
		if (c->h->overflow) {
			c->w->st.bad_requests++;
			c->req_keepalive = false;
			answer(c, 431, wp_reason_of(431), NULL, NULL);
			c->st = W_CLOSING;
			return;
		}
		if (e == HPE_PAUSED) {
			c->due_ms = 0;	/* no deadline while routing (the timer may stay: it checks) */
			route_request(c);
			if (c->st == W_CLOSING)
				return;
			c->st = W_REQUEST;	/* answered locally too: the body is read and dropped */
			head_reset(c->h);
			if (head_finish(&c->rp, &req_settings, &cs->in)) {
				fail(c, 400, NULL);
				return;
			}
			break;
		}
		if (e != HPE_OK) {
			c->w->st.bad_requests++;
			c->req_keepalive = false;
			answer(c, 400, wp_reason_of(400), NULL, NULL);
			c->st = W_CLOSING;
			return;
		}
	}
	if (c->st == W_HEAD && cs->eof && !cs->in.data) {
		c->st = W_CLOSING;
		return;
	}
	/* the body: raw bytes as they came, bounded by the upstream's room
	 * (none while a retry waits for its backoff: they follow what it
	 * sends again) */
	while (c->st == W_REQUEST && !c->req_done && !c->rp.upgrade && cs->in.data &&
	       (c->local_answer || us->fd >= 0)) {
		size_t room = c->local_answer ? cs->in.data : c->up2 ? wp_up2_body_room(c) : buf_room(&us->out);
		size_t take = cs->in.data < room ? cs->in.data : room;
		size_t n;
		enum http_errno e;

		if (!take)
			break;
		n = http_parser_execute(&c->rp, &req_settings, buf_head(&cs->in), take);
		e = HTTP_PARSER_ERRNO(&c->rp);
		if (!c->local_answer && !c->up2) {	/* (an HTTP/2 upstream's: on_req_body) */
			buf_put(&us->out, buf_head(&cs->in), n);
			retry_keep(c, buf_head(&cs->in), n);
		}
		buf_del(&cs->in, n);
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->rp, 0);
			break;
		}
		if (e != HPE_OK) {
			fail(c, 400, NULL);
			return;
		}
	}
	if (c->st == W_REQUEST && !c->req_done && !c->rp.upgrade && cs->eof && !cs->in.data)
		fail(c, 400, NULL);	/* body cut short */
}

static void retry_fire(struct loop_timer *t)
{
	struct wconn *c = t->arg;
	struct waypoint *w = c->w;
	struct route_backend be = { .ns = c->retry.ns, .name = c->retry.name, .port = c->retry.port };
	struct waypoint_dst dst = { .avoid = c->dst.addr };
	struct tunnel_client cl;
	int fd;

	if (!c->retry_len || c->st != W_REQUEST || c->resp_started)
		return;
	wp_client_of(c, &cl);
	fd = w->ops.upstream(w->arg, &cl, &c->vip, &be, &dst);
	if (fd < 0 || side_open(c, U, fd)) {
		if (fd >= 0)
			close(fd);
		w->st.upstream_errors++;
		fail(c, 503, "no healthy upstream\n");
		conn_step(c);
		return;
	}
	c->dst = dst;
	c->up_reusable = false;
	http_parser_init(&c->sp, HTTP_RESPONSE);
	c->sp.data = c;
	head_reset(c->h);
	/* as it went the first time: an endpoint of the same Service port
	 * speaks the same protocol */
	if (c->retry_h2 != (dst.proto == WAYPOINT_PROTO_H2C) || (c->retry_h2 && wp_up2_resend(c))) {
		w->st.upstream_errors++;
		fail(c, 502, NULL);
	} else if (!c->retry_h2) {
		buf_put(&c->s[U].out, c->retry_head, c->retry_len);
	}
	conn_step(c);
}

/* The upstream failed before the response started (or answered a status the
 * route retries): send the request again, to another endpoint, after the
 * backoff (the client's further body bytes wait: client_parse). false when
 * no retry is left, or the request was not kept. */
bool wp_retry_can(const struct wconn *c)
{
	/* its body need not be all here: what came is kept (else retry_len
	 * is 0), the rest follows on the new attempt as it comes */
	return c->retry_len && c->retry.left && !c->resp_started;
}

static bool retry_start(struct wconn *c)
{
	if (!wp_retry_can(c))
		return false;
	c->retry.left--;
	side_close(c, U, true);
	loop_timer_arm(c->w->loop, &c->retry_timer, c->retry.backoff_ms);
	return true;
}

/* After a 101 (st: W_TUNNEL, or W_TUNNEL_H2 when it was an HTTP/2
 * upstream's 2xx to an extended CONNECT): the request is counted (101); no
 * request deadline now (Envoy's route timeout stops at the upgrade too),
 * the idle timeout instead, which bytes moving push back. */
static void tunnel_begin(struct wconn *c, enum wstate st)
{
	uint64_t now = loop_now_ms();

	request_done(c);
	c->st = st;
	c->ws = true;
	c->moved_ms = now;
	c->deadline_ms = 0;
	wp_conn_deadline(c, now, wp_idle_ms(c->w));
}

/* Feed upstream bytes to the response parser; they go to the client, the
 * head rewritten. */
static void upstream_parse(struct wconn *c)
{
	struct wside *cs = &c->s[C], *us = &c->s[U];

	while (!c->resp_done && us->in.data) {
		size_t n;
		enum http_errno e;

		if (!c->resp_started) {
			/* a head (or an interim 1xx one) */
			if (buf_room(&cs->out) < WAYPOINT_HEAD_MAX + sizeof(c->resp_edits) + 64)
				break;
			n = http_parser_execute(&c->sp, &resp_settings, buf_head(&us->in), us->in.data);
			e = HTTP_PARSER_ERRNO(&c->sp);
			buf_del(&us->in, n);
			if (c->h->overflow) {
				fail(c, 502, NULL);
				return;
			}
			if (e == HPE_PAUSED) {
				struct hlist l;
				unsigned int code = c->sp.status_code;
				char num[12];
				const char *sl[] = { "HTTP/1.1 ", wp_utoa(num, code), " ", c->h->reason, "\r\n" };

				if (code >= 200 && wp_retry_code(&c->retry, code) && retry_start(c))
					return;
				hlist_from_head(&l, c->h);
				wp_hlist_edits_packed(&l, c->resp_edits, c->resp_edits_len);
				/* draining (an upgrade): the client must not send another */
				if (c->w->draining && code >= 200)
					wp_hlist_set(&l, "connection", "close");
				if (!buf_cat(&cs->out, sl, 5) || !wp_hlist_write(&cs->out, &l)) {
					fail(c, 502, NULL);
					return;
				}
				head_reset(c->h);
				if (code >= 200 || code == 101) {
					c->resp_started = true;
					c->status = (uint16_t)code;
					c->resp_keepalive = http_should_keep_alive(&c->sp);
				}
				if (head_finish(&c->sp, &resp_settings, &us->in)) {
					fail(c, 502, NULL);
					return;
				}
				if (code == 101 && c->resp_done) {
					if (!c->rp.upgrade) {	/* not asked for: not a tunnel */
						c->w->st.upstream_errors++;
						c->st = W_CLOSING;
						c->req_keepalive = false;
						return;
					}
					tunnel_begin(c, W_TUNNEL);
				}
				continue;
			}
			if (e != HPE_OK) {
				c->w->st.upstream_errors++;
				fail(c, 502, NULL);
				return;
			}
			continue;
		}
		{
			size_t room = buf_room(&cs->out);
			size_t take = us->in.data < room ? us->in.data : room;

			if (!take)
				break;
			n = http_parser_execute(&c->sp, &resp_settings, buf_head(&us->in), take);
			buf_put(&cs->out, buf_head(&us->in), n);
			buf_del(&us->in, n);
		}
		e = HTTP_PARSER_ERRNO(&c->sp);
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->sp, 0);
			break;
		}
		if (e != HPE_OK) {
			c->w->st.upstream_errors++;
			fail(c, 502, NULL);
			return;
		}
	}
	if (!c->resp_done && us->eof && !us->in.data && us->fd >= 0) {
		/* a body delimited by the end of the connection ends here */
		if (c->resp_started) {
			http_parser_execute(&c->sp, &resp_settings, NULL, 0);
			if (!c->resp_done) {
				c->st = W_CLOSING;
				c->req_keepalive = false;
			}
			c->resp_keepalive = false;
		} else {
			c->w->st.upstream_errors++;
			if (!retry_start(c))
				fail(c, 503, "upstream connect error or disconnect/reset before headers\n");
		}
	}
}

bool wp_side_read(struct wconn *c, enum wend e)
{
	struct wside *s = &c->s[e];
	bool any = false;

	/* not flagged: nothing came since it last read dry (an unwatched,
	 * hung-up side is read at every step: no event will flag it) */
	if (s->fd < 0 || s->eof || (!s->rd && !s->hup))
		return false;
	for (;;) {
		size_t room = buf_room(&s->in);
		ssize_t n;

		if (!room)
			return any;	/* still flagged: read again once there is room */
		if (s->use_x) {
			n = s->x.ops->rcv(&s->x, buf_tail(&s->in), room);
			if (n == -EAGAIN) {
				s->x_want |= s->x.want;
				s->rd = false;
				return any;
			}
			if (n < 0) {
				s->eof = true;
				return true;
			}
			/* plain TCP: as below; TLS may hold decrypted bytes */
			if (n > 0 && (size_t)n < room && s->x.ops == &xprt_plain_ops && !s->hup) {
				buf_add(&s->in, (size_t)n);
				s->rd = false;
				return true;
			}
		} else {
			n = recv(s->fd, buf_tail(&s->in), room, 0);
			/* a short read emptied the socket: no extra read to learn
			 * EAGAIN (level-triggered epoll says when more comes; not
			 * once HUP took the side off epoll: then read to the end) */
			if (n > 0 && (size_t)n < room && !s->hup) {
				buf_add(&s->in, (size_t)n);
				s->rd = false;
				return true;
			}
		}
		if (n > 0) {
			buf_add(&s->in, (size_t)n);
			any = true;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			s->eof = true;	/* a reset too: what was read stays */
			return true;
		}
		if (errno == EAGAIN)
			s->rd = false;
		return any;
	}
}

/* Write what is pending to side e; false on a write error. */
bool wp_side_flush(struct wconn *c, enum wend e)
{
	struct wside *s = &c->s[e];

	while (s->fd >= 0 && s->out.data) {
		ssize_t n;

		if (s->use_x) {
			n = s->x.ops->snd(&s->x, buf_head(&s->out), s->out.data);
			if (n == -EAGAIN) {
				s->x_want |= s->x.want;
				return true;
			}
			if (n > 0) {
				buf_del(&s->out, (size_t)n);
				continue;
			}
			return false;
		}
		n = send(s->fd, buf_head(&s->out), s->out.data, MSG_NOSIGNAL);
		if (n > 0) {
			buf_del(&s->out, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		return false;
	}
	return true;
}

void wp_side_interest(struct wconn *c, enum wend e, bool want_read)
{
	struct wside *s = &c->s[e];
	uint32_t ev = 0;

	if (s->fd < 0)
		return;
	if (s->hup) {
		/* level-triggered HUP comes back whatever we ask for: stop
		 * watching; each step still reads what is left, and the other
		 * side's events or the deadline drive the rest */
		if (s->io.fd >= 0)
			loop_del(c->w->loop, &s->io);
		return;
	}
	if (want_read && !s->eof && buf_room(&s->in))
		ev |= EPOLLIN | EPOLLRDHUP;
	if (s->out.data)
		ev |= EPOLLOUT;
	ev |= s->x_want;
	if (ev != s->io.events)
		loop_mod(c->w->loop, &s->io, ev);
}

static bool conn_unpark(struct wconn *c);
static void conn_park(struct wconn *c);

/* Move what can move; decide what comes next. */
static void conn_step(struct wconn *c)
{
	struct wside *cs = &c->s[C], *us = &c->s[U];

	if (!conn_unpark(c)) {
		wp_conn_free(c, true);
		return;
	}
	cs->x_want = 0;
	if (!c->hs_done) {
		int r = cs->x.ops->handshake(&cs->x);

		if (r == -EAGAIN) {
			cs->x_want = cs->x.want;
			wp_side_interest(c, C, false);
			return;
		}
		if (r) {
			pr_debug("waypoint: %s: TLS handshake: %s", c->ns[0] ? c->ns : "gateway", cs->x.err);
			wp_conn_free(c, true);
			return;
		}
		c->hs_done = true;
	}
	if (c->st == W_H2) {
		wp_h2_step(c);
		return;
	}

	for (int guard = 0; guard < 64; guard++) {
		enum wstate before = c->st;
		size_t cin = cs->in.data, uin = us->in.data, cout = cs->out.data, uout = us->out.data;
		size_t moved = 0;	/* relayed bytes: the buffers may look as before */

		wp_side_read(c, C);
		wp_side_read(c, U);
		/* a pooled upstream that closed (or spoke) between requests is
		 * done: reading it no more, and epoll would report its HUP forever */
		if (c->st == W_HEAD && us->fd >= 0 && (c->up2 ? !wp_up2_idle(c) : us->eof || us->in.data))
			side_close(c, U, true);
		/* it answered in full and hung up before the request's body was
		 * all there: nowhere to send the rest; done once the answer left */
		if (c->st == W_REQUEST && us->fd >= 0 && us->eof && c->resp_done && !c->req_done) {
			side_close(c, U, true);
			request_done(c);
			c->req_keepalive = false;
			c->st = W_CLOSING;
		}
		if (c->st == W_HEAD && !c->any_request && cs->in.data) {
			/* HTTP/2 with prior knowledge: the preface says so */
			static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
			size_t n = cs->in.data < sizeof(preface) - 1 ? cs->in.data : sizeof(preface) - 1;

			if (!memcmp(buf_head(&cs->in), preface, n)) {
				if (n == sizeof(preface) - 1) {
					if (wp_h2_start(c))
						wp_conn_free(c, true);
					return;	/* c may be gone */
				}
				if (!cs->eof) {
					wp_side_interest(c, C, true);
					return;
				}
			}
		}
		if (c->st == W_TUNNEL_H2) {
			int r = wp_up2_relay(c, &moved);

			if (r) {
				wp_conn_free(c, r < 0);
				return;
			}
		} else if (c->st == W_TUNNEL) {
			/* bytes both ways, as they are */
			size_t n = buf_put(&us->out, buf_head(&cs->in), cs->in.data);

			buf_del(&cs->in, n);
			moved = n;
			n = buf_put(&cs->out, buf_head(&us->in), us->in.data);
			buf_del(&us->in, n);
			moved += n;
			if (moved && c->ws)
				c->moved_ms = loop_now_ms();
			if (cs->eof && !cs->in.data && us->fd >= 0 && !us->out.data && !us->shut) {
				shutdown(us->fd, SHUT_WR);
				us->shut = true;
			}
			if (us->eof && !us->in.data && !cs->out.data && !cs->shut) {
				cs->x.ops->shut(&cs->x);
				cs->shut = true;
			}
			if (cs->shut && us->shut) {
				wp_conn_free(c, false);
				return;
			}
		} else {
			if (c->st == W_HEAD || c->st == W_REQUEST)
				client_parse(c);
			if (c->st == W_REQUEST && us->fd >= 0 && c->up2) {
				unsigned int st = wp_up2_step(c);

				if (st == WP_UP2_RETRY) {
					retry_start(c);	/* (wp_retry_can said it can) */
				} else if (st) {
					c->w->st.upstream_errors++;
					if (!retry_start(c)) {
						fail(c, st, "upstream connect error or disconnect/reset before headers\n");
					}
				} else if (wp_up2_upgraded(c)) {
					tunnel_begin(c, W_TUNNEL_H2);
				}
			} else if (c->st == W_REQUEST && us->fd >= 0) {
				upstream_parse(c);
			}
			if (c->st == W_REQUEST && c->req_done && c->resp_done) {
				request_done(c);
				c->up_reusable = (c->up2 ? wp_up2_reusable(c) : c->resp_keepalive) && !c->local_answer;
				if (!c->up_reusable && !c->local_answer)
					side_close(c, U, false);
				if (c->req_keepalive && c->resp_keepalive && !c->w->draining)
					request_reset(c);
				else
					c->st = W_CLOSING;
			} else if (c->st == W_REQUEST && c->rp.upgrade && c->resp_done && c->status != 101) {
				/* an Upgrade refused: the connection cannot go on reliably */
				request_done(c);
				c->st = W_CLOSING;
			}
		}
		if (!wp_side_flush(c, C)) {
			wp_conn_free(c, true);
			return;
		}
		if (!wp_side_flush(c, U)) {
			if (c->st == W_TUNNEL || c->st == W_TUNNEL_H2) {
				wp_conn_free(c, true);
				return;
			}
			us->eof = true;
		}
		if (c->st == W_CLOSING && !cs->out.data) {
			wp_conn_free(c, false);
			return;
		}
		if (c->st == before && !moved && cs->in.data == cin && us->in.data == uin && cs->out.data == cout &&
		    us->out.data == uout)
			break;
	}
	/* a pooled upstream stays watched between requests (no epoll_ctl per
	 * request): if it speaks or hangs up meanwhile, it is closed above */
	wp_side_interest(c, C, c->st != W_CLOSING);
	wp_side_interest(c, U, c->st == W_HEAD || c->st == W_REQUEST || c->st == W_TUNNEL || c->st == W_TUNNEL_H2);
	conn_park(c);
}

static void conn_io_cb(struct loop_io *io, uint32_t ev)
{
	struct wconn *c = io->arg;
	struct wside *s = &c->s[io == &c->s[U].io ? U : C];

	if (ev & (EPOLLHUP | EPOLLERR))
		s->hup = true;
	/* TLS may read to write and write to read: any event may let it read */
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) || (s->use_x && s->x.ops != &xprt_plain_ops))
		s->rd = true;
	conn_step(c);
}

static void conn_timer_cb(struct loop_timer *t)
{
	struct wconn *c = t->arg;
	uint64_t now = loop_now_ms();

	if (!c->due_ms)		/* none now: armed for one that went */
		return;
	if (now < c->due_ms) {	/* armed for an earlier one that went */
		loop_timer_arm(c->w->loop, &c->timer, c->due_ms - now);
		return;
	}
	c->due_ms = 0;
	if (c->st == W_TUNNEL || c->st == W_TUNNEL_H2) {
		/* a TCP relay has no deadline; after an Upgrade the idle
		 * timeout runs from the last byte that moved */
		if (c->ws && now < c->moved_ms + wp_idle_ms(c->w)) {
			wp_conn_deadline(c, now, (unsigned int)(c->moved_ms + wp_idle_ms(c->w) - now));
			return;
		}
		if (c->ws) {
			c->w->st.timeouts++;
			wp_conn_free(c, true);
		}
		return;
	}
	if (c->st == W_H2) {
		wp_h2_idle_timeout(c);
		return;
	}
	if (c->st == W_REQUEST && c->deadline_ms) {
		c->w->st.timeouts++;
		if (!c->resp_started) {
			fail(c, 504, "upstream request timeout\n");
			conn_step(c);
			return;
		}
	} else {
		c->w->st.timeouts++;
	}
	wp_conn_free(c, c->st != W_HEAD);
}

bool waypoint_accept(struct waypoint *w, int fd, const struct tunnel_client *cl,
		     const struct tunnel_addr *vip)
{
	return waypoint_accept_tls(w, fd, cl, vip, NULL);
}

static void bufs_free(struct wp_bufs *b)
{
	for (int i = 0; i < 2; i++) {
		free(b->in[i]);
		free(b->out[i]);
	}
	free(b->h);
}

/* Give c its buffers and head scratch back (a spare set, else new ones),
 * as request_reset leaves them. false when out of memory (c unchanged). */
static bool conn_unpark(struct wconn *c)
{
	struct waypoint *w = c->w;
	struct wp_bufs b = { 0 };

	if (!c->parked)
		return true;
	if (w->n_spare_bufs) {
		b = w->spare_bufs[--w->n_spare_bufs];
	} else {
		b.h = malloc(sizeof(*b.h));
		for (int i = 0; i < 2; i++) {
			b.in[i] = malloc(IN_SIZE);
			b.out[i] = malloc(OUT_SIZE);
		}
		if (!b.h || !b.in[0] || !b.in[1] || !b.out[0] || !b.out[1]) {
			bufs_free(&b);
			return false;
		}
	}
	for (int i = 0; i < 2; i++) {
		c->s[i].in = (struct buf){ .area = b.in[i], .size = IN_SIZE };
		c->s[i].out = (struct buf){ .area = b.out[i], .size = OUT_SIZE };
	}
	c->h = b.h;
	head_reset(c->h);
	c->parked = false;
	return true;
}

/* An HTTP/1.1 connection idle between requests (nothing of the next one
 * read, nothing to write either way, no HTTP/2 upstream that may speak
 * meanwhile) holds no buffers: they go to the spare sets (or are freed), so
 * a thousand idle keep-alive connections do not keep a thousand sets
 * resident. Its epoll interest stays as conn_step left it. */
static void conn_park(struct wconn *c)
{
	struct waypoint *w = c->w;
	struct wp_bufs b;

	if (c->parked || c->st != W_HEAD || c->head_timed || c->h2 || c->up2 || !c->hs_done || c->retry_len)
		return;
	for (int i = 0; i < 2; i++)
		if (c->s[i].in.data || c->s[i].out.data)
			return;
	b.h = c->h;
	for (int i = 0; i < 2; i++) {
		b.in[i] = c->s[i].in.area;
		b.out[i] = c->s[i].out.area;
		c->s[i].in = BUF_NULL;
		c->s[i].out = BUF_NULL;
	}
	c->h = NULL;
	if (w->n_spare_bufs < WP_SPARE_BUFS)
		w->spare_bufs[w->n_spare_bufs++] = b;
	else
		bufs_free(&b);
	/* a large kept copy of the last request (up to 40 KiB) goes too; a
	 * page or less stays, so a busy connection mallocs no copy per request */
	if (c->retry_cap > 4096) {
		free(c->retry_head);
		c->retry_head = NULL;
		c->retry_cap = 0;
	}
	c->parked = true;
}

/* A connection for the client transport x (taken: moved in, or closed
 * with a reset), linked in; NULL when it cannot be had. handshake: x is TLS
 * whose handshake is still to come. */
static struct wconn *conn_new(struct waypoint *w, struct xprt *x, const struct tunnel_client *cl,
			      const struct tunnel_addr *vip, bool handshake)
{
	struct wconn *c = calloc(1, sizeof(*c));
	int fd = x->fd;

	if (c) {
		c->w = w;
		c->parked = true;
		c->s[C].fd = c->s[U].fd = -1;
	}
	if (!c || !conn_unpark(c)) {
		free(c);
		x->ops->close(x, true);
		return NULL;
	}
	wp_copy(c->ns, sizeof(c->ns), cl->ns);
	wp_copy(c->name, sizeof(c->name), cl->name);
	wp_copy(c->sa, sizeof(c->sa), cl->service_account);
	wp_copy(c->identity, sizeof(c->identity), cl->identity);
	wp_copy(c->gw_ns, sizeof(c->gw_ns), cl->gw_ns);
	wp_copy(c->gw_name, sizeof(c->gw_name), cl->gw_name);
	for (size_t i = 0; i < cl->n_ips && i < 2; i++)
		c->ips[c->n_ips++] = cl->ips[i];
	c->cport = cl->port;
	c->vip = *vip;
	loop_timer_init(&c->timer, conn_timer_cb, c);
	loop_timer_init(&c->retry_timer, retry_fire, c);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->st.conns_open++;
	w->st.conns_total++;
	c->s[C].x = *x;
	c->s[C].use_x = true;
	c->https = x->ops != &xprt_plain_ops;
	c->hs_done = !handshake;
	if (side_open(c, C, fd)) {
		c->s[C].x.ops->close(&c->s[C].x, true);
		c->s[C].fd = -1;
		wp_conn_free(c, true);
		return NULL;
	}
	return c;
}

bool waypoint_accept_tls(struct waypoint *w, int fd, const struct tunnel_client *cl,
			 const struct tunnel_addr *vip, SSL_CTX *tls)
{
	struct xprt x;
	struct wconn *c;

	if (!tls)
		xprt_init_plain(&x, fd);
	else if (xprt_init_tls(&x, fd, tls, true)) {
		xprt_close_rst(fd);
		return true;
	}
	c = conn_new(w, &x, cl, vip, tls != NULL);
	if (!c)
		return true;
	request_reset(c);
	/* a header deadline for the first request, not the idle one */
	wp_conn_deadline(c, loop_now_ms(), wp_header_ms(w));
	conn_step(c);
	return true;
}

bool waypoint_relay(struct waypoint *w, int fd, const struct tunnel_client *cl, const struct tunnel_addr *local,
		    const struct route_backend *be)
{
	struct xprt x;

	xprt_init_plain(&x, fd);
	return waypoint_relay_xprt(w, &x, cl, local, be);
}

bool waypoint_relay_xprt(struct waypoint *w, struct xprt *x, const struct tunnel_client *cl,
			 const struct tunnel_addr *local, const struct route_backend *be)
{
	struct waypoint_dst dst = { .ns = "" };
	int up = w->ops.upstream(w->arg, cl, local, be, &dst);
	struct wconn *c;

	if (up < 0) {
		w->st.upstream_errors++;
		x->ops->close(x, true);
		return false;
	}
	c = conn_new(w, x, cl, local, false);
	if (!c) {
		close(up);
		return false;
	}
	if (side_open(c, U, up)) {
		close(up);
		wp_conn_free(c, true);
		return false;
	}
	c->dst = dst;
	/* W_TUNNEL: bytes as they are, half-closes passed on, no deadline */
	c->st = W_TUNNEL;
	conn_step(c);
	return true;
}

int waypoint_new(struct waypoint **out, struct loop *loop, const struct waypoint_ops *ops, void *arg,
		 const struct waypoint_opts *opts)
{
	struct waypoint *w;

	if (!ops || !ops->routes || !ops->upstream)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->loop = loop;
	loop_timer_init(&w->reaper, reap, w);
	loop_timer_init(&w->alog_timer, alog_timer_cb, w);
	w->ops = *ops;
	w->arg = arg;
	if (opts)
		w->o = *opts;
	if (w->o.access_log && !(w->alog = malloc(ALOG_SIZE))) {
		free(w);
		return -ENOMEM;
	}
	w->rnd = loop_now_ms() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
	if (!w->rnd)
		w->rnd = 1;
	w->pick_seq = wp_rand(w);
	req_settings = (http_parser_settings){
		.on_url = on_url, .on_header_field = on_field, .on_header_value = on_value,
		.on_headers_complete = on_headers_complete, .on_body = on_req_body,
		.on_message_complete = on_req_complete,
	};
	resp_settings = (http_parser_settings){
		.on_status = on_status, .on_header_field = on_field, .on_header_value = on_value,
		.on_headers_complete = on_headers_complete, .on_message_complete = on_resp_complete,
	};
	*out = w;
	return 0;
}

void waypoint_free(struct waypoint *w)
{
	if (!w)
		return;
	while (w->conns)
		wp_conn_free(w->conns, true); /* NOLINT(clang-analyzer-unix.Malloc): it unlinks it */
	while (w->mirrors)
		mirror_free(w->mirrors); /* NOLINT(clang-analyzer-unix.Malloc): it unlinks it */
	wp_h2_pool_free(w);
	loop_timer_cancel(w->loop, &w->reaper);
	reap(&w->reaper);
	free(w->graves);
	if (w->alog)
		alog_flush(w);
	free(w->alog);
	while (w->n_bodies)
		free(w->bodies[--w->n_bodies]);
	while (w->n_spare_st)
		free(w->spare_st[--w->n_spare_st]);
	while (w->n_spare_hv)
		free(w->spare_hv[--w->n_spare_hv]);
	while (w->n_spare_bufs)
		bufs_free(&w->spare_bufs[--w->n_spare_bufs]);
	while (w->series) {
		struct series *s = w->series;

		w->series = s->next;
		free(s->src_ns);
		free(s->src_wl);
		free(s->dst_svc);
		free(s->dst_ns);
		free(s->dst_wl);
		free(s);
	}
	free(w);
}

void waypoint_flush_log(struct waypoint *w)
{
	alog_flush(w);
}

void waypoint_drain(struct waypoint *w)
{
	struct wconn *c, *next;

	w->draining = true;
	wp_h2_pool_drain(w);
	for (c = w->conns; c; c = next) {
		next = c->next;
		/* between requests (one served), nothing of the next one read */
		if (c->st == W_HEAD && c->any_request && !c->head_timed && !c->s[C].in.data)
			wp_conn_free(c, false);
	}
}

void waypoint_stats_get(const struct waypoint *w, struct waypoint_stats *st)
{
	*st = w->st;
}

void waypoint_mem_get(const struct waypoint *w, struct waypoint_mem *m)
{
	memset(m, 0, sizeof(*m));
	for (const struct wconn *c = w->conns; c; c = c->next) {
		m->conns++;
		m->conns_h2 += c->h2 != NULL;
		m->conn_bytes += sizeof(*c) + heap_size(c->h) + heap_size(c->retry_head);
		for (int i = 0; i < 2; i++)
			m->buf_bytes += heap_size(c->s[i].in.area) + heap_size(c->s[i].out.area);
	}
	for (size_t i = 0; i < w->n_bodies; i++)
		m->spare_bytes += heap_size(w->bodies[i]);
	for (size_t i = 0; i < w->n_spare_st; i++)
		m->spare_bytes += heap_size(w->spare_st[i]);
	for (size_t i = 0; i < w->n_spare_hv; i++)
		m->spare_bytes += heap_size(w->spare_hv[i]);
	for (size_t i = 0; i < w->n_spare_bufs; i++) {
		const struct wp_bufs *b = &w->spare_bufs[i];

		m->spare_bytes += heap_size(b->h);
		for (int j = 0; j < 2; j++)
			m->spare_bytes += heap_size(b->in[j]) + heap_size(b->out[j]);
	}
	wp_h2_pool_mem(w, m);
}

static void prom_labels(FILE *f, const struct series *s)
{
	fprintf(f,
		"reporter=\"waypoint\",source_workload=\"%s\",source_workload_namespace=\"%s\","
		"destination_service=\"%s\",destination_workload=\"%s\","
		"destination_workload_namespace=\"%s\",response_code=\"%u\",request_protocol=\"http\"",
		s->src_wl, s->src_ns, s->dst_svc[0] ? s->dst_svc : "unknown",
		s->dst_wl[0] ? s->dst_wl : "unknown", s->dst_ns[0] ? s->dst_ns : "unknown", s->code);
}

int waypoint_metrics_write(struct waypoint *w, FILE *f)
{
	fprintf(f, "# HELP istio_requests_total Requests the waypoint answered.\n"
		   "# TYPE istio_requests_total counter\n");
	for (const struct series *s = w->series; s; s = s->next) {
		fprintf(f, "istio_requests_total{");
		prom_labels(f, s);
		fprintf(f, "} %llu\n", (unsigned long long)s->count);
	}
	fprintf(f, "# HELP istio_request_duration_milliseconds Request duration.\n"
		   "# TYPE istio_request_duration_milliseconds histogram\n");
	for (const struct series *s = w->series; s; s = s->next) {
		for (int i = 0; i < N_BUCKETS; i++) {
			fprintf(f, "istio_request_duration_milliseconds_bucket{");
			prom_labels(f, s);
			fprintf(f, ",le=\"%g\"} %llu\n", bucket_ms[i], (unsigned long long)s->buckets[i]);
		}
		fprintf(f, "istio_request_duration_milliseconds_bucket{");
		prom_labels(f, s);
		fprintf(f, ",le=\"+Inf\"} %llu\n", (unsigned long long)s->count);
		fprintf(f, "istio_request_duration_milliseconds_sum{");
		prom_labels(f, s);
		fprintf(f, "} %g\n", s->sum_ms);
		fprintf(f, "istio_request_duration_milliseconds_count{");
		prom_labels(f, s);
		fprintf(f, "} %llu\n", (unsigned long long)s->count);
	}
	return ferror(f) ? -EIO : 0;
}
