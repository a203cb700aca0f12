// SPDX-License-Identifier: Apache-2.0
/* status.c - see status.h. A small HTTP/1.1 server on a unix stream socket,
 * driven by the agent's epoll loop.
 *
 * Each connection is a state machine over one bounded input buffer and at most
 * one queued response:
 *
 *   accept -> READ --request parsed--> WRITE --all sent--> READ (keep-alive)
 *                \                        \--all sent, close--> (closed)
 *                 \--timeout, EOF, error------------------------> (closed)
 *
 * Requests are parsed by http-parser as bytes arrive; the parser is paused at
 * the end of each request so pipelined requests are answered one at a time,
 * and no further input is parsed while a response is still queued. That bounds
 * a connection's memory to its input buffer plus one response, whatever the
 * client sends. Each phase (waiting for a request, writing a response) has one
 * deadline that bytes trickling in do not extend, so slow clients cannot hold
 * a connection slot forever.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <http_parser.h>
#include <jansson.h>

#include "handover.h"
#include "log.h"
#include "loop.h"
#include "status.h"

#define SL_STATUS_MAX_CONNS	64		/* more close the oldest (status_evict_oldest) */
#define SL_STATUS_TIMEOUT_MS	5000		/* per request, and per response */
#define SL_STATUS_MAX_HDR	(16 * 1024)	/* request line + headers; 431 above */
#define SL_STATUS_MAX_URL	4096		/* request target; 414 above */
#define SL_STATUS_IN_BUF	4096		/* unparsed input held per connection */
#define SL_STATUS_BACKLOG	64
#define SL_STATUS_TRIM_REPLY	(64 * 1024)	/* malloc_trim after a larger answer (out_free) */
#define SL_STATUS_ACCEPT_PAUSE_MS 100		/* after EMFILE/ENFILE/ENOMEM */

#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct route {
	char *path;
	size_t len;
	status_handler fn;		/* JSON body, or */
	status_text_handler text_fn;	/* a text body of content_type */
	const char *content_type;
	void *arg;
};

struct status {
	struct loop *loop;
	struct loop_io lio;
	struct loop_timer accept_timer;	/* re-enables accept after EMFILE */
	int fd;
	char *path;
	dev_t dev;			/* the socket file we bound, so status_free */
	ino_t ino;			/* never unlinks a successor's socket */
	struct route *routes;
	size_t n_routes, cap_routes;
	struct sconn *conns;		/* all open connections, for status_free */
	unsigned int n_conns;
	unsigned int max_conns;
	unsigned long n_evicted;	/* connections closed to make room */
	struct sconn *reap;		/* those, freed after the loop's batch */
	struct loop_timer reap_timer;
	unsigned int timeout_ms;
};

enum conn_st {
	CONN_ST_READ,			/* waiting for (the rest of) a request */
	CONN_ST_WRITE,			/* a response is queued */
	CONN_ST_COUNT,
};

static const char *const conn_st_names[CONN_ST_COUNT] = {
	[CONN_ST_READ] = "read",
	[CONN_ST_WRITE] = "write",
};

static const char *conn_st_str(enum conn_st st)
{
	return st < CONN_ST_COUNT ? conn_st_names[st] : "?";
}

struct sconn {
	struct loop_io io;
	struct loop_timer timer;	/* deadline of the current phase */
	struct status *s;
	struct sconn *prev, *next;
	enum conn_st st;
	bool rd_eof;			/* peer shut down its side */
	bool close_after;		/* close once the queued response is sent */

	http_parser parser;
	/* Per request; reset by conn_req_reset(). */
	bool hdr_done;			/* on_headers_complete seen */
	bool msg_done;			/* on_message_complete seen (parser paused) */
	bool keep_alive;
	bool url_overflow;
	int reject;			/* status decided at headers time, 0 if none */
	size_t hdr_bytes;		/* bytes of request line + headers so far */
	size_t url_len;
	char url[SL_STATUS_MAX_URL];

	size_t in_len;			/* unparsed bytes at in[0] */
	char in[SL_STATUS_IN_BUF];

	char *out;			/* the queued response, NULL if none */
	size_t out_len, out_off;
};

/* Test hooks, not part of status.h: selftests/unit/test_status.c shrinks the
 * limits so timeouts and the connection cap are exercised in milliseconds. */
void status_set_limits(struct status *s, unsigned int timeout_ms, unsigned int max_conns);

void status_set_limits(struct status *s, unsigned int timeout_ms, unsigned int max_conns)
{
	if (timeout_ms)
		s->timeout_ms = timeout_ms;
	if (max_conns)
		s->max_conns = max_conns;
}

/* ---- responses ---- */

static const char *status_reason(int code)
{
	const char *r = http_status_str((enum http_status)code);

	return r && r[0] != '<' ? r : "Unknown";
}

/* True if query holds a "pretty" parameter that is not "0" or "false". */
static bool query_pretty(const char *query)
{
	const char *p = query;

	while (p && *p) {
		size_t n = strcspn(p, "&;");

		if (n >= 6 && !strncmp(p, "pretty", 6) && (n == 6 || p[6] == '=')) {
			const char *v = p + 6 + (n > 6);
			size_t vn = n > 6 ? n - 7 : 0;

			return !(vn == 1 && v[0] == '0') && !(vn == 5 && !strncmp(v, "false", 5));
		}
		p += n;
		if (*p)
			p++;
	}
	return false;
}

/* Queue one response on c, taking ownership of text (malloc'ed, len bytes).
 * head: leave the body out but keep its Content-Length. Returns 0 or -errno. */
static int conn_reply_raw(struct sconn *c, int code, char *text, size_t text_len,
			  const char *content_type, bool head, const char *extra_hdrs)
{
	char hdr[512];
	int hlen, ret = 0;

	hlen = snprintf(hdr, sizeof(hdr),
			"HTTP/1.1 %d %s\r\n"
			"Content-Type: %s\r\n"
			"Content-Length: %zu\r\n"
			"Cache-Control: no-store\r\n"
			"%s"
			"Connection: %s\r\n"
			"\r\n",
			code, status_reason(code), content_type, text_len, extra_hdrs ? extra_hdrs : "",
			c->close_after ? "close" : "keep-alive");
	if (hlen < 0 || (size_t)hlen >= sizeof(hdr)) {
		ret = -EOVERFLOW;
		goto out;
	}
	c->out_len = (size_t)hlen + (head ? 0 : text_len);
	c->out = malloc(c->out_len);
	if (!c->out) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(c->out, hdr, (size_t)hlen);
	if (!head)
		memcpy(c->out + hlen, text, text_len);
	c->out_off = 0;
out:
	free(text);
	return ret;
}

/* Drop a sent response. After a large one (`sluicectl connections` of
 * 10,000 connections is ~10 MB of JSON, built from a tree several times
 * that) give the freed heap back: glibc keeps it otherwise, and the agent's
 * RSS would stay at the high-water mark of the largest answer (+60 MiB seen
 * in scripts/soak). The bound is on the text, but the tree is what costs:
 * jansson's objects take 10-20x the compact text (2,000 connections: a
 * 0.95 MB answer from a tree that left 12 MiB resident), hence 64 KiB. */
static void out_free(struct sconn *c)
{
	bool large = c->out_len > SL_STATUS_TRIM_REPLY;

	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	if (large)
		malloc_trim(0);
}

/* Queue a JSON response, taking ownership of body (NULL sends a fixed 500). */
static int conn_reply(struct sconn *c, int code, json_t *body, bool pretty, bool head,
		      const char *extra_hdrs)
{
	char *text = NULL, *t;
	size_t len;

	if (body)
		text = json_dumps(body, JSON_ENCODE_ANY | (pretty ? JSON_INDENT(2) : JSON_COMPACT));
	json_decref(body);
	if (!text) {
		/* The handler failed, or jansson ran out of memory: still answer. */
		code = 500;
		extra_hdrs = NULL;
		text = strdup("{\"error\":\"internal error\"}");
		if (!text)
			return -ENOMEM;
	}
	/* A trailing newline keeps `curl` output tidy; it is part of the body. */
	len = strlen(text);
	t = realloc(text, len + 2);
	if (!t) {
		free(text);
		return -ENOMEM;
	}
	t[len] = '\n';
	t[len + 1] = '\0';
	return conn_reply_raw(c, code, t, len + 1, "application/json", head, extra_hdrs);
}

/* Queue {"error": msg} with code; for 404 the known paths are listed too. */
static int conn_reply_error(struct sconn *c, int code, bool head, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int conn_reply_error(struct sconn *c, int code, bool head, const char *fmt, ...)
{
	json_t *body = json_object(), *paths;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (body)
		json_object_set_new(body, "error", json_string(msg));
	if (body && code == 404 && (paths = json_array())) {
		for (size_t i = 0; i < c->s->n_routes; i++)
			json_array_append_new(paths, json_string(c->s->routes[i].path));
		json_object_set_new(body, "paths", paths);
	}
	return conn_reply(c, code, body, false, head,
			  code == 405 ? "Allow: GET, HEAD\r\n" : NULL);
}

/* Answer the request parsed into c->url. Returns 0 or -ENOMEM. */
static int conn_dispatch(struct sconn *c)
{
	bool head = c->parser.method == HTTP_HEAD;
	struct http_parser_url u;
	const struct route *r = NULL;
	const char *path;
	char *query = NULL;
	size_t plen;
	json_t *body;
	int code = 200, ret;

	if (c->url_overflow)
		return conn_reply_error(c, 414, head, "request target longer than %d bytes",
					SL_STATUS_MAX_URL);
	http_parser_url_init(&u);
	if (http_parser_parse_url(c->url, c->url_len, 0, &u) || !(u.field_set & (1 << UF_PATH)))
		return conn_reply_error(c, 400, head, "bad request target");
	path = c->url + u.field_data[UF_PATH].off;
	plen = u.field_data[UF_PATH].len;
	if (u.field_set & (1 << UF_QUERY)) {
		query = strndup(c->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
		if (!query)
			return -ENOMEM;
	}
	for (size_t i = 0; i < c->s->n_routes; i++) {
		const struct route *cand = &c->s->routes[i];

		if (cand->len == plen && !memcmp(cand->path, path, plen)) {
			r = cand;
			break;
		}
	}
	if (!r) {
		ret = conn_reply_error(c, 404, head, "no such path: %.*s",
				       (int)(plen > 128 ? 128 : plen), path);
		goto out;
	}
	if (r->text_fn) {
		size_t len = 0;
		char *text = r->text_fn(r->arg, query, &code, &len);

		if (!text || code < 200 || code > 599) {
			pr_warn("status: handler for %s failed", r->path);
			free(text);
			ret = conn_reply_error(c, 500, head, "internal error serving %s", r->path);
		} else {
			ret = conn_reply_raw(c, code, text, len, r->content_type, head, NULL);
		}
		goto out;
	}
	body = r->fn(r->arg, query, &code);
	if (!body) {
		pr_warn("status: handler for %s failed", r->path);
		ret = conn_reply_error(c, 500, head, "internal error serving %s", r->path);
		goto out;
	}
	if (code < 200 || code > 599) {
		pr_warn("status: handler for %s returned status %d", r->path, code);
		json_decref(body);
		ret = conn_reply_error(c, 500, head, "internal error serving %s", r->path);
		goto out;
	}
	ret = conn_reply(c, code, body, query_pretty(query), head, NULL);
out:
	free(query);
	return ret;
}

/* ---- parser callbacks ---- */

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct sconn *c = p->data;

	if (len > sizeof(c->url) - c->url_len) {
		c->url_overflow = true;
		return 0;
	}
	memcpy(c->url + c->url_len, at, len);
	c->url_len += len;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct sconn *c = p->data;

	c->hdr_done = true;
	c->keep_alive = http_should_keep_alive(p);
	if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
		/* Answer now rather than read a body we would not use. */
		c->reject = 405;
		http_parser_pause(p, 1);
	}
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct sconn *c = p->data;

	c->msg_done = true;
	http_parser_pause(p, 1);	/* one request at a time: see the top */
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_url = on_url,
	.on_headers_complete = on_headers_complete,
	.on_message_complete = on_message_complete,
};

static void conn_req_reset(struct sconn *c)
{
	c->hdr_done = false;
	c->msg_done = false;
	c->keep_alive = false;
	c->url_overflow = false;
	c->reject = 0;
	c->hdr_bytes = 0;
	c->url_len = 0;
}

/* Feed buffered input to the parser until a response is queued or the input
 * runs out. Returns 0 or -ENOMEM (terminal for the connection). */
static int conn_parse(struct sconn *c)
{
	size_t off = 0;
	int ret = 0;

	while (off < c->in_len && !c->out) {
		size_t n = c->in_len - off, done;
		bool in_hdr = !c->hdr_done;
		enum http_errno herr;

		/* Feed at most one byte past the header limit, so the limit is
		 * exact whatever the read sizes were. */
		if (in_hdr && n > SL_STATUS_MAX_HDR + 1 - c->hdr_bytes)
			n = SL_STATUS_MAX_HDR + 1 - c->hdr_bytes;
		done = http_parser_execute(&c->parser, &parser_settings, c->in + off, n);
		off += done;
		if (in_hdr && !c->hdr_done)
			c->hdr_bytes += done;
		herr = HTTP_PARSER_ERRNO(&c->parser);
		if (c->reject) {
			c->close_after = true;
			ret = conn_reply_error(c, c->reject, false, "method %s not allowed",
					       http_method_str((enum http_method)c->parser.method));
		} else if (c->msg_done) {
			http_parser_pause(&c->parser, 0);
			/* After an Upgrade request the parser stops; so do we. */
			if (!c->keep_alive || c->parser.upgrade)
				c->close_after = true;
			ret = conn_dispatch(c);
			conn_req_reset(c);
		} else if (herr == HPE_HEADER_OVERFLOW || c->hdr_bytes > SL_STATUS_MAX_HDR) {
			c->close_after = true;
			ret = conn_reply_error(c, 431, false,
					       "request headers longer than %d bytes",
					       SL_STATUS_MAX_HDR);
		} else if (herr != HPE_OK) {
			c->close_after = true;
			ret = conn_reply_error(c, 400, false, "bad request: %s",
					       http_errno_description(herr));
		} else if (done < n) {
			/* Not paused and no error, yet input left: cannot happen
			 * with the callbacks above; do not spin on it. */
			c->close_after = true;
			ret = conn_reply_error(c, 400, false, "bad request");
		}
		if (ret)
			break;
	}
	c->in_len -= off;
	memmove(c->in, c->in + off, c->in_len);
	return ret;
}

/* ---- connections ---- */

/* Close c's socket and forget it, without freeing c. */
static void conn_detach(struct sconn *c)
{
	struct status *s = c->s;

	pr_debug("status: closing connection fd %d in state %s", c->io.fd, conn_st_str(c->st));
	loop_timer_cancel(s->loop, &c->timer);
	if (c->io.fd >= 0) {
		int fd = c->io.fd;

		loop_del(s->loop, &c->io);
		close(fd);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	out_free(c);
}

/* Terminal: only from c's own callbacks (loop.h: an object is freed by its
 * own callback; another's may still have an event queued in this batch). */
static void conn_close(struct sconn *c)
{
	conn_detach(c);
	free(c);
}

static void status_reap_cb(struct loop_timer *t)
{
	struct status *s = t->arg;

	while (s->reap) {
		struct sconn *c = s->reap;

		s->reap = c->next;
		free(c);
	}
}

/* Write as much of the queued response as the socket takes.
 * Returns 0 (done or would block) or -errno. */
static int conn_flush(struct sconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->io.fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		c->out_off += (size_t)n;
	}
	return 0;
}

/* Read once into free input space. Returns bytes read, 0 on EOF, or -errno
 * (-EAGAIN when nothing is there). */
static ssize_t conn_read(struct sconn *c)
{
	ssize_t n;

	do {
		n = recv(c->io.fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	c->in_len += (size_t)n;
	return n;
}

static void conn_enter(struct sconn *c, enum conn_st st)
{
	c->st = st;
	/* One deadline per phase; failing to arm leaves the previous one. */
	if (loop_timer_arm(c->s->loop, &c->timer, c->s->timeout_ms))
		pr_warn("status: cannot arm connection timer: out of memory");
}

/* Make all the progress possible without blocking: send, parse, read, in a
 * loop. Terminal: may close and free c. */
static void conn_run(struct sconn *c)
{
	uint32_t want;
	ssize_t n;
	int ret;

	for (;;) {
		if (c->out) {
			ret = conn_flush(c);
			if (ret) {
				pr_debug("status: write failed: %s", strerror(-ret));
				goto close;
			}
			if (c->out_off < c->out_len)
				break;
			out_free(c);
			if (c->close_after)
				goto close;
			conn_enter(c, CONN_ST_READ);
		}
		if (c->in_len) {
			ret = conn_parse(c);
			if (ret) {
				pr_warn("status: cannot build response: %s", strerror(-ret));
				goto close;
			}
			if (c->out) {
				conn_enter(c, CONN_ST_WRITE);
				continue;
			}
		}
		/* Input is exhausted; a peer that shut down cannot finish a request. */
		if (c->rd_eof)
			goto close;
		if (c->in_len == sizeof(c->in))
			break;		/* cannot happen: parsing drains input */
		n = conn_read(c);
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			pr_debug("status: read failed: %s", strerror((int)-n));
			goto close;
		}
		if (n == 0)
			c->rd_eof = true;
	}
	want = c->out ? EPOLLOUT : EPOLLIN;
	ret = loop_mod(c->s->loop, &c->io, want);
	if (ret) {
		pr_warn("status: epoll: %s", strerror(-ret));
		goto close;
	}
	return;
close:
	conn_close(c);
}

static void conn_io_cb(struct loop_io *io, uint32_t events)
{
	struct sconn *c = container_of(io, struct sconn, io);

	if (events & EPOLLERR) {
		conn_close(c);
		return;
	}
	conn_run(c);
}

/* The current phase ran out of time: a slow or stuck client. Terminal. */
static void conn_timer_cb(struct loop_timer *t)
{
	struct sconn *c = container_of(t, struct sconn, timer);
	static const char resp_408[] = "HTTP/1.1 408 Request Timeout\r\n"
				       "Content-Type: application/json\r\n"
				       "Content-Length: 30\r\n"
				       "Connection: close\r\n"
				       "\r\n"
				       "{\"error\":\"request timed out\"}\n";

	pr_debug("status: connection timed out in state %s", conn_st_str(c->st));
	/* A client part-way through a request is told why; best effort, as the
	 * socket may be full. An idle keep-alive connection just closes. */
	if (!c->out && (c->in_len || c->hdr_bytes || c->hdr_done))
		send(c->io.fd, resp_408, sizeof(resp_408) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	conn_close(c);
}

/* Too many connections: say so if the socket takes it, then close. */
static void status_refuse(int fd)
{
	static const char resp_503[] = "HTTP/1.1 503 Service Unavailable\r\n"
				       "Content-Type: application/json\r\n"
				       "Content-Length: 33\r\n"
				       "Connection: close\r\n"
				       "\r\n"
				       "{\"error\":\"too many connections\"}\n";

	send(fd, resp_503, sizeof(resp_503) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

/* At the cap, make room for a new connection by closing the oldest one: a
 * flood of clients that connect and hold (or trickle bytes) would otherwise
 * keep every slot, and an operator's `sluicectl status` would get 503 for as
 * long as it lasts. The newcomer is served at once (status_add_conn), so it
 * is never the one closed by the connections accepted after it. The oldest
 * connection that is still waiting for a request goes first; one whose
 * response is queued only when there is none. Returns false when no slot can
 * be freed (max_conns 0). */
static bool status_evict_oldest(struct status *s)
{
	struct sconn *oldest = NULL, *oldest_read = NULL;

	/* conn_close unlinks before it frees: no freed one is on the list */
	/* NOLINTBEGIN(clang-analyzer-unix.Malloc) */
	for (struct sconn *c = s->conns; c; c = c->next) {	/* newest first */
		oldest = c;
		if (c->st == CONN_ST_READ && !c->out)
			oldest_read = c;
	}
	/* NOLINTEND(clang-analyzer-unix.Malloc) */
	if (oldest_read)
		oldest = oldest_read;
	if (!oldest)
		return false;
	/* Once, then every 10000th: a flood must not flood the log too. */
	if (s->n_evicted++ % 10000 == 0)
		pr_warn("status: %u connections open (the most): closing the oldest for each new one "
			"(%lu so far; a client holding connections open?)", s->n_conns, s->n_evicted);
	/* Its fd may have an event queued in this epoll batch: close it now
	 * (loop_del makes the loop skip that event), free it after the batch. */
	conn_detach(oldest);
	oldest->next = s->reap;
	s->reap = oldest;
	if (loop_timer_arm(s->loop, &s->reap_timer, 0))
		pr_warn("status: cannot arm a timer: out of memory");	/* freed at status_free */
	return true;
}

static int status_add_conn(struct status *s, int fd)
{
	struct sconn *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return -ENOMEM;
	c->s = s;
	c->io.fd = -1;
	loop_timer_init(&c->timer, conn_timer_cb, c);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	ret = loop_add(s->loop, &c->io, fd, EPOLLIN, conn_io_cb, c);
	if (ret) {
		free(c);
		return ret;
	}
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	conn_enter(c, CONN_ST_READ);
	/* A client that wrote its request before we accepted (sluicectl does)
	 * is answered now, before the next accept could close it again. */
	conn_run(c);
	return 0;
}

static void status_accept_timer_cb(struct loop_timer *t)
{
	struct status *s = t->arg;

	if (loop_mod(s->loop, &s->lio, EPOLLIN))
		pr_warn("status: cannot resume accepting connections");
}

static void status_accept_cb(struct loop_io *io, uint32_t events)
{
	struct status *s = container_of(io, struct status, lio);
	int fd, ret;

	/* At most a backlog's worth per event (the listener is level-triggered):
	 * under a flood the queue refills as fast as it drains, and the loop's
	 * other fds (the mesh's relays) must get their turn. */
	for (int i = 0; i < SL_STATUS_BACKLOG; i++) {
		fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			int err = errno;

			if (err == EINTR || err == ECONNABORTED)
				continue;
			if (err == EAGAIN || err == EWOULDBLOCK)
				return;
			/* Out of fds or memory: the listener stays readable, so
			 * stop watching it for a moment instead of spinning. */
			pr_warn("status: accept: %s", strerror(err));
			if (!loop_mod(s->loop, &s->lio, 0) &&
			    loop_timer_arm(s->loop, &s->accept_timer, SL_STATUS_ACCEPT_PAUSE_MS))
				loop_mod(s->loop, &s->lio, EPOLLIN);
			return;
		}
		if (s->n_conns >= s->max_conns && !status_evict_oldest(s)) {
			pr_debug("status: %u connections open, refusing another", s->n_conns);
			status_refuse(fd);
			continue;
		}
		ret = status_add_conn(s, fd);
		if (ret) {
			pr_warn("status: cannot add connection: %s", strerror(-ret));
			close(fd);
		}
	}
}

/* ---- listening socket ---- */

/* mkdir -p the directory part of path; directories we create get 0755
 * whatever the umask. Returns 0 or -errno. */
static int status_mkdirs(const char *path)
{
	char *dir = strdup(path), *slash;
	int ret = 0;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		goto out;
	*slash = '\0';
	for (char *p = dir + 1;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) == 0) {
			if (chmod(dir, 0755) == -1) {
				ret = -errno;
				goto out;
			}
		} else if (errno != EEXIST) {
			ret = -errno;
			goto out;
		}
		if (last)
			break;
		*p = '/';
	}
out:
	free(dir);
	return ret;
}

/* Clear the way for bind(): remove a stale socket at path, but refuse when a
 * live agent accepts on it or the file is not a socket. Returns 0 or -errno. */
static int status_clear_path(const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, ret = 0;

	if (lstat(sa->sun_path, &st) == -1)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		pr_err("status: %s exists and is not a socket; not replacing it", sa->sun_path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN) {
		/* EAGAIN: its backlog is full, but someone is listening. */
		pr_err("status: %s: another sluice-agent is accepting on it", sa->sun_path);
		ret = -EADDRINUSE;
	} else if (errno == ECONNREFUSED) {
		pr_info("status: replacing stale socket %s", sa->sun_path);
		if (unlink(sa->sun_path) == -1 && errno != ENOENT)
			ret = -errno;
	} else if (errno != ENOENT) {
		ret = -errno;
		pr_err("status: %s: cannot probe existing socket: %s", sa->sun_path,
		       strerror(-ret));
	}
	close(fd);
	return ret;
}

int status_new(struct status **out, struct loop *l, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct status *s;
	struct stat st;
	int ret;

	if (!path || !path[0])
		return -EINVAL;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		pr_err("status: socket path too long (max %zu bytes): %s", sizeof(sa.sun_path) - 1,
		       path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = l;
	s->fd = -1;
	s->lio.fd = -1;
	s->max_conns = SL_STATUS_MAX_CONNS;
	s->timeout_ms = SL_STATUS_TIMEOUT_MS;
	loop_timer_init(&s->accept_timer, status_accept_timer_cb, s);
	loop_timer_init(&s->reap_timer, status_reap_cb, s);
	s->path = strdup(path);
	if (!s->path) {
		ret = -ENOMEM;
		goto err;
	}
	ret = status_mkdirs(path);
	if (ret) {
		pr_err("status: cannot create directory for %s: %s", path, strerror(-ret));
		goto err;
	}
	s->fd = handover_takef("status %s", path);	/* a takeover: the old agent's */
	if (s->fd >= 0 && stat(path, &st) == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
		goto listening;
	}
	ret = status_clear_path(&sa);
	if (ret)
		goto err;
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd == -1) {
		ret = -errno;
		goto err_log;
	}
	/* bind() creates the file with the socket inode's mode minus the umask:
	 * set 0600 first, so the file is never wider, without touching the
	 * process-wide umask other threads may rely on. */
	if (fchmod(s->fd, 0600) == -1 ||
	    bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    stat(path, &st) == -1) {
		ret = -errno;
		goto err_log;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	if (listen(s->fd, SL_STATUS_BACKLOG) == -1) {
		ret = -errno;
		goto err_unlink;
	}
listening:
	ret = loop_add(l, &s->lio, s->fd, EPOLLIN, status_accept_cb, s);
	if (ret)
		goto err_unlink;
	handover_offerf(s->fd, "status %s", path);
	pr_info("status: listening on %s", path);
	*out = s;
	return 0;

err_unlink:
	unlink(path);
err_log:
	pr_err("status: cannot listen on %s: %s", path, strerror(-ret));
err:
	if (s->fd >= 0)
		close(s->fd);
	free(s->path);
	free(s);
	return ret;
}

static int route_add(struct status *s, const char *path, status_handler fn,
		     status_text_handler text_fn, const char *content_type, void *arg)
{
	struct route *r;

	if (!path || path[0] != '/' || (!fn && !text_fn))
		return -EINVAL;
	for (size_t i = 0; i < s->n_routes; i++)
		if (!strcmp(s->routes[i].path, path))
			return -EEXIST;
	if (s->n_routes == s->cap_routes) {
		size_t cap = s->cap_routes ? s->cap_routes * 2 : 8;

		r = realloc(s->routes, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		s->routes = r;
		s->cap_routes = cap;
	}
	r = &s->routes[s->n_routes];
	r->path = strdup(path);
	if (!r->path)
		return -ENOMEM;
	r->len = strlen(path);
	r->fn = fn;
	r->text_fn = text_fn;
	r->content_type = content_type;
	r->arg = arg;
	s->n_routes++;
	return 0;
}

int status_new_tcp(struct status **out, struct loop *l, const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	struct status *s;
	int ret, one = 1;

	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		len = sizeof(*s6);
	} else {
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = l;
	s->lio.fd = -1;
	s->max_conns = SL_STATUS_MAX_CONNS;
	s->timeout_ms = SL_STATUS_TIMEOUT_MS;
	loop_timer_init(&s->accept_timer, status_accept_timer_cb, s);
	loop_timer_init(&s->reap_timer, status_reap_cb, s);
	s->fd = handover_takef("metrics %s:%u", ip, port);	/* a takeover: the old agent's */
	if (s->fd < 0)
		s->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	else
		goto listening;
	if (s->fd == -1 || setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(s->fd, (struct sockaddr *)&ss, len) == -1 || listen(s->fd, SL_STATUS_BACKLOG) == -1) {
		ret = -errno;
		goto err;
	}
listening:
	ret = loop_add(l, &s->lio, s->fd, EPOLLIN, status_accept_cb, s);
	if (ret)
		goto err;
	handover_offerf(s->fd, "metrics %s:%u", ip, port);
	pr_info("status: listening on %s:%u", ip, port);
	*out = s;
	return 0;
err:
	pr_err("status: cannot listen on %s:%u: %s", ip, port, strerror(-ret));
	if (s->fd >= 0)
		close(s->fd);
	free(s);
	return ret;
}

int status_route(struct status *s, const char *path, status_handler fn, void *arg)
{
	return route_add(s, path, fn, NULL, NULL, arg);
}

int status_route_text(struct status *s, const char *path, status_text_handler fn,
		      const char *content_type, void *arg)
{
	return route_add(s, path, NULL, fn, content_type, arg);
}

void status_stop_accepting(struct status *s)
{
	if (!s)
		return;
	loop_timer_cancel(s->loop, &s->accept_timer);
	loop_del(s->loop, &s->lio);
}

/* Frees every connection too, so call it from outside the loop's callbacks
 * (loop.h: never free another object's io mid-batch), e.g. after loop_run(). */
void status_free(struct status *s)
{
	struct stat st;

	if (!s)
		return;
	while (s->conns)
		conn_close(s->conns); /* NOLINT(clang-analyzer-unix.Malloc): conn_close unlinks it */
	loop_timer_cancel(s->loop, &s->accept_timer);
	loop_timer_cancel(s->loop, &s->reap_timer);
	status_reap_cb(&s->reap_timer);
	if (s->fd >= 0) {
		loop_del(s->loop, &s->lio);
		handover_withdraw(s->fd);
		close(s->fd);
		/* Leave a successor agent's socket alone (TCP listeners have no path). */
		if (s->path && stat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
			unlink(s->path);
	}
	for (size_t i = 0; i < s->n_routes; i++)
		free(s->routes[i].path);
	free(s->routes);
	free(s->path);
	free(s);
}
