// SPDX-License-Identifier: Apache-2.0
/* sl-echo - the lab pods' test server and client (libc only).
 *
 *   sl-echo serve --pod NAME --namespace NS [--tcp PORT]... [--udp PORT]...
 *                 [--ready-file PATH]
 *   sl-echo probe tcp|udp HOST PORT [--count N] [--timeout-ms MS] [--connected]
 *                 [--line TEXT]
 *   sl-echo stream tcp HOST PORT --duration-ms MS [--interval-ms MS] [--timeout-ms MS]
 *
 * serve: one epoll loop (level-triggered, non-blocking), dual-stack listeners
 * (AF_INET6 with IPV6_V6ONLY=0; AF_INET when the pod has no IPv6). A TCP
 * connection whose first line looks like an HTTP/1.x request line speaks
 * HTTP/1.1 and answers with a JSON echo in the shape of the Gateway API
 * conformance echo server; any other TCP connection is in line mode:
 *
 *   client: <line>\n          server: <pod> <peer-ip>:<peer-port> <line>\n
 *
 * UDP: every datagram is answered with "<pod> <peer-ip>:<peer-port> <payload>",
 * sent from the address the datagram was sent to (IP_PKTINFO).
 * Peers are printed as a.b.c.d:port or [v6]:port; the server prints IPv4
 * peers of its dual-stack sockets as plain IPv4 (not ::ffff:a.b.c.d), since
 * the mapping is an artefact of its own socket, not of the client.
 *
 * probe prints one line per attempt,
 *   ok pod=<pod> peer=<addr as getpeername/recvfrom saw it> server_saw=<peer>
 *   err <ERRNO_NAME> <strerror>
 * and then "summary ok=N err=N pods=a:N,b:N" (sorted by pod). A reply that
 * does not echo the line is EPROTO; EOF before a reply is ECONNABORTED; no
 * reply within the timeout is ETIMEDOUT. Exit 0 iff every attempt was ok.
 *
 * stream keeps one TCP connection and, every interval, sends a line on it and
 * opens one new short connection; it ends with
 *   stream sent=N replies=N long_errors=N new_ok=N new_err=N first_err=<ERRNO|->
 * A broken long connection counts one long error and is reopened at the next
 * tick. Exit 0 iff there were no errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SL_ECHO_IBUF		16384	/* per-connection input; also the max HTTP header block */
#define SL_ECHO_OBUF_INIT	4096	/* per-connection output, grown on demand, kept on reuse */
#define SL_ECHO_OBUF_HIGH	(256 * 1024)	/* stop reading while this much output is queued */
#define SL_ECHO_MAX_HDRS	128
#define SL_ECHO_MAX_LISTEN	64
#define SL_ECHO_ACCEPT_BATCH	64
#define SL_ECHO_ADDRSTR		(INET6_ADDRSTRLEN + 8)
#define SL_ECHO_LINGER_MS	2000	/* how long a closing connection drains input */
#define SL_ECHO_LINGER_BYTES	(1024 * 1024)

/* ---------------------------------------------------------------- common */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("sl-echo: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

#define SL_ERRNOS(X)                                                                               \
	X(EPERM) X(ENOENT) X(EINTR) X(EIO) X(EBADF) X(EAGAIN) X(ENOMEM) X(EACCES) X(EFAULT)      \
	X(EBUSY) X(EEXIST) X(EINVAL) X(ENFILE) X(EMFILE) X(ENOSPC) X(EPIPE) X(ENODATA) X(EPROTO) \
	X(EMSGSIZE) X(ENOTSOCK) X(EDESTADDRREQ) X(EPROTOTYPE) X(ENOPROTOOPT)                     \
	X(EPROTONOSUPPORT) X(EOPNOTSUPP) X(EAFNOSUPPORT) X(EADDRINUSE) X(EADDRNOTAVAIL)           \
	X(ENETDOWN) X(ENETUNREACH) X(ENETRESET) X(ECONNABORTED) X(ECONNRESET) X(ENOBUFS)         \
	X(EISCONN) X(ENOTCONN) X(ESHUTDOWN) X(ETIMEDOUT) X(ECONNREFUSED) X(EHOSTDOWN)            \
	X(EHOSTUNREACH) X(EALREADY) X(EINPROGRESS) X(ENONET) X(ENOSR)

static const char *errno_name(int e)
{
	static char buf[16];

	switch (e) {
#define X(n) case n: return #n;
		SL_ERRNOS(X)
#undef X
	default:
		snprintf(buf, sizeof(buf), "E%d", e);
		return buf;
	}
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Format a socket address as a.b.c.d:port or [v6]:port. With unmap, an
 * IPv4-mapped IPv6 address prints as IPv4. Returns the length. */
static int fmt_addr(const struct sockaddr_storage *ss, bool unmap, char *out, size_t n)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		return snprintf(out, n, "%s:%u", ip, ntohs(s4->sin_port));
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		if (unmap && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip));
			return snprintf(out, n, "%s:%u", ip, ntohs(s6->sin6_port));
		}
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		return snprintf(out, n, "[%s]:%u", ip, ntohs(s6->sin6_port));
	}
	return snprintf(out, n, "?:0");
}

static long parse_num(const char *s, long min, long max, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die("bad %s '%s' (expected %ld..%ld)", what, s, min, max);
	return v;
}

/* Growable byte buffer. All-zero is empty. Grows by doubling and is kept, so
 * steady state does no allocation. */
struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_reserve(struct sbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->len + more <= b->cap)
		return;
	cap = b->cap ? b->cap : SL_ECHO_OBUF_INIT;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		die("out of memory");
	b->p = p;
	b->cap = cap;
}

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static void sb_putu(struct sbuf *b, unsigned long v)
{
	char tmp[24];
	int i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sb_putn(b, tmp + i, sizeof(tmp) - i);
}

/* Append s[0..n) as a JSON string (with quotes). */
static void sb_json_str(struct sbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;

	sb_reserve(b, n + 2);
	b->p[b->len++] = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
			continue;
		sb_putn(b, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"': sb_putn(b, "\\\"", 2); break;
		case '\\': sb_putn(b, "\\\\", 2); break;
		case '\n': sb_putn(b, "\\n", 2); break;
		case '\r': sb_putn(b, "\\r", 2); break;
		case '\t': sb_putn(b, "\\t", 2); break;
		default: {
			char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

			sb_putn(b, u, 6);
		}
		}
	}
	sb_putn(b, s + run, n - run);
	sb_putn(b, "\"", 1);
}

/* ---------------------------------------------------------------- serve */

enum item_kind { ITEM_TCP_LISTEN, ITEM_UDP, ITEM_CONN };

struct item {
	enum item_kind kind;
	int fd;
};

enum conn_mode { MODE_UNKNOWN, MODE_LINE, MODE_HTTP };

/* HTTP request body framing still to be consumed (read and discarded). */
enum body_state { BODY_NONE, BODY_LENGTH, BODY_CHUNK_SIZE, BODY_CHUNK_DATA, BODY_CHUNK_CRLF,
		  BODY_CHUNK_TRAILER };

struct conn {
	struct item it;			/* first: epoll data points here */
	enum conn_mode mode;
	enum body_state body;
	uint64_t body_left;		/* BODY_LENGTH / BODY_CHUNK_DATA */
	uint32_t events;		/* current epoll interest */
	bool rd_closed;			/* peer sent FIN */
	bool want_close;		/* close once output is flushed and the body consumed */
	bool linger;			/* input was dropped: shut down writes and drain first */
	bool draining;			/* in the linger list, discarding input until EOF */
	int64_t linger_until;		/* CLOCK_MONOTONIC ms */
	struct conn *lprev, *lnext;	/* linger list, oldest first */
	size_t in_off, in_len;		/* unconsumed input is in[in_off..in_len) */
	struct sbuf out;		/* queued output */
	size_t out_off;			/* out.p[out_off..out.len) not yet written */
	uint8_t peer_len;
	char peer[SL_ECHO_ADDRSTR];
	struct conn *next_free;
	char in[SL_ECHO_IBUF];
};

struct server {
	const char *pod, *ns;
	size_t pod_len;
	int ep;
	int spare_fd;			/* closed to accept-and-drop at EMFILE */
	struct conn *free_conns;
	struct conn *linger_head, *linger_tail;
	struct sbuf scratch;		/* JSON body under construction */
	char udp_buf[65536 + 512];
};

static struct server srv;

static struct conn *conn_get(void)
{
	struct conn *c = srv.free_conns;

	if (c) {
		srv.free_conns = c->next_free;
	} else {
		c = calloc(1, sizeof(*c));
		if (!c)
			return NULL;
	}
	c->it.kind = ITEM_CONN;
	c->it.fd = -1;
	c->mode = MODE_UNKNOWN;
	c->body = BODY_NONE;
	c->body_left = 0;
	c->events = 0;
	c->rd_closed = c->want_close = c->linger = c->draining = false;
	c->lprev = c->lnext = NULL;
	c->in_off = c->in_len = 0;
	c->out.len = 0;
	c->out_off = 0;
	c->next_free = NULL;
	return c;
}

/* Terminal: closes the socket and returns c to the free list. */
static void conn_close(struct conn *c)
{
	if (c->draining) {
		if (c->lprev)
			c->lprev->lnext = c->lnext;
		else
			srv.linger_head = c->lnext;
		if (c->lnext)
			c->lnext->lprev = c->lprev;
		else
			srv.linger_tail = c->lprev;
		c->draining = false;
	}
	close(c->it.fd);	/* also removes it from the epoll set */
	c->it.fd = -1;
	c->next_free = srv.free_conns;
	srv.free_conns = c;
}

/* Set the epoll interest; a connection with no interest yet is not in the
 * epoll set. Returns false when the connection was closed. */
static bool conn_set_events(struct conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (ev == c->events)
		return true;
	if (epoll_ctl(srv.ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->it.fd, &e) < 0) {
		conn_close(c);
		return false;
	}
	c->events = ev;
	return true;
}

static void out_put_reply_prefix(struct conn *c)
{
	sb_reserve(&c->out, srv.pod_len + c->peer_len + 2);
	memcpy(c->out.p + c->out.len, srv.pod, srv.pod_len);
	c->out.len += srv.pod_len;
	c->out.p[c->out.len++] = ' ';
	memcpy(c->out.p + c->out.len, c->peer, c->peer_len);
	c->out.len += c->peer_len;
	c->out.p[c->out.len++] = ' ';
}

/* Line mode: answer every complete line; at EOF (or a full buffer) also the rest. */
static void line_process(struct conn *c)
{
	for (;;) {
		char *s = c->in + c->in_off;
		size_t n = c->in_len - c->in_off, len;
		char *nl = memchr(s, '\n', n);

		if (nl) {
			len = (size_t)(nl - s);
			c->in_off += len + 1;
		} else if (n && (c->rd_closed || c->in_len == sizeof(c->in))) {
			len = n;
			c->in_off += n;
		} else {
			return;
		}
		if (len && s[len - 1] == '\r')
			len--;
		out_put_reply_prefix(c);
		sb_putn(&c->out, s, len);
		sb_putn(&c->out, "\n", 1);
	}
}

static bool is_upper(char ch)
{
	return ch >= 'A' && ch <= 'Z';
}

/* Does s[0..n) (one line, without \n) look like "METHOD SP target SP HTTP/1.x"? */
static bool looks_like_request_line(const char *s, size_t n)
{
	size_t i = 0, sp2;

	if (n && s[n - 1] == '\r')
		n--;
	while (i < n && is_upper(s[i]))
		i++;
	if (i == 0 || i > 16 || i >= n || s[i] != ' ')
		return false;
	if (n < 9 || memcmp(s + n - 8, "HTTP/1.", 7) || (s[n - 1] != '0' && s[n - 1] != '1'))
		return false;
	sp2 = n - 9;
	return s[sp2] == ' ' && sp2 > i + 1;
}

/* Might s[0..n) still become a request line? (Decide early for clients that
 * send a partial first line and wait.) */
static bool may_be_http(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && is_upper(s[i]))
		i++;
	return i == n ? i <= 16 : (i > 0 && s[i] == ' ');
}

static bool ieq(const char *a, size_t an, const char *b)
{
	size_t bn = strlen(b);

	return an == bn && strncasecmp(a, b, an) == 0;
}

/* Does the comma-separated header value contain token tok (case-insensitive)? */
static bool has_token(const char *v, size_t n, const char *tok)
{
	size_t i = 0;

	while (i < n) {
		size_t s, e;

		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s && ieq(v + s, e - s, tok))
			return true;
	}
	return false;
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Status";
	}
}

struct hdr {
	const char *name, *value;
	size_t name_len, value_len;
};

/* Canonical header name, like Go's CanonicalMIMEHeaderKey: upper-case the
 * first letter and every letter after '-', lower-case the rest. */
static void sb_canon_name(struct sbuf *b, const char *s, size_t n)
{
	bool up = true;
	size_t i;

	sb_reserve(b, n);
	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (up && ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		else if (!up && ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		up = ch == '-';
		b->p[b->len++] = ch;
	}
}

static void http_simple_response(struct conn *c, int status)
{
	const char *msg = reason_phrase(status);

	sb_puts(&c->out, "HTTP/1.1 ");
	sb_putu(&c->out, (unsigned long)status);
	sb_putn(&c->out, " ", 1);
	sb_puts(&c->out, msg);
	sb_puts(&c->out, "\r\nContent-Type: text/plain\r\nContent-Length: ");
	sb_putu(&c->out, strlen(msg) + 1);
	sb_puts(&c->out, "\r\nConnection: close\r\n\r\n");
	sb_puts(&c->out, msg);
	sb_putn(&c->out, "\n", 1);
	c->want_close = true;
	c->linger = true;
}

/* Parse one request head in h[0..n) (ending with the blank line) and queue the
 * response. Sets up body consumption. Returns false on a malformed request
 * (a 400 is queued and the connection will close). */
static bool http_handle(struct conn *c, const char *h, size_t n)
{
	static struct hdr hdrs[SL_ECHO_MAX_HDRS];
	const char *line = h, *end = h + n, *eol;
	const char *method, *target, *proto, *host = "";
	size_t method_len, target_len, proto_len, host_len = 0, nh = 0, i, j;
	bool keep_alive, head, chunked = false, has_len = false, v10;
	bool conn_close_tok = false, conn_keep_tok = false, expect_continue = false;
	uint64_t clen = 0;
	int status = 200;
	struct sbuf *body = &srv.scratch;

	/* request line */
	eol = memchr(line, '\n', (size_t)(end - line));
	{
		size_t ll = (size_t)(eol - line);
		const char *sp1, *sp2;

		if (ll && line[ll - 1] == '\r')
			ll--;
		sp1 = memchr(line, ' ', ll);
		if (!sp1)
			goto bad;
		sp2 = line + ll - 9;	/* " HTTP/1.x", checked by looks_like_request_line */
		if (!looks_like_request_line(line, ll) || sp2 <= sp1)
			goto bad;
		method = line;
		method_len = (size_t)(sp1 - line);
		target = sp1 + 1;
		target_len = (size_t)(sp2 - target);
		proto = sp2 + 1;
		proto_len = 8;
	}
	v10 = proto[7] == '0';
	head = ieq(method, method_len, "HEAD");
	line = eol + 1;

	/* header fields */
	while (line < end) {
		const char *colon, *v, *ve;
		size_t ll;

		eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			eol = end;
		ll = (size_t)(eol - line);
		if (ll && line[ll - 1] == '\r')
			ll--;
		if (ll == 0)
			break;
		if (line[0] == ' ' || line[0] == '\t')
			goto bad;	/* obsolete line folding */
		colon = memchr(line, ':', ll);
		if (!colon || colon == line || colon[-1] == ' ' || colon[-1] == '\t')
			goto bad;
		v = colon + 1;
		ve = line + ll;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (nh == SL_ECHO_MAX_HDRS) {
			http_simple_response(c, 431);
			return false;
		}
		hdrs[nh] = (struct hdr){ line, v, (size_t)(colon - line), (size_t)(ve - v) };
		{
			const struct hdr *x = &hdrs[nh];

			if (ieq(x->name, x->name_len, "host")) {
				host = x->value;
				host_len = x->value_len;
			} else if (ieq(x->name, x->name_len, "content-length")) {
				char tmp[24];
				char *e;

				if (x->value_len == 0 || x->value_len >= sizeof(tmp))
					goto bad;
				memcpy(tmp, x->value, x->value_len);
				tmp[x->value_len] = 0;
				if (tmp[0] < '0' || tmp[0] > '9')
					goto bad;
				errno = 0;
				clen = strtoull(tmp, &e, 10);
				if (errno || *e)
					goto bad;
				has_len = true;
			} else if (ieq(x->name, x->name_len, "transfer-encoding")) {
				if (!has_token(x->value, x->value_len, "chunked")) {
					http_simple_response(c, 501);
					return false;
				}
				chunked = true;
			} else if (ieq(x->name, x->name_len, "connection")) {
				conn_close_tok |= has_token(x->value, x->value_len, "close");
				conn_keep_tok |= has_token(x->value, x->value_len, "keep-alive");
			} else if (ieq(x->name, x->name_len, "expect")) {
				expect_continue = has_token(x->value, x->value_len, "100-continue");
			}
		}
		nh++;
		line = eol + 1;
	}
	keep_alive = v10 ? conn_keep_tok && !conn_close_tok : !conn_close_tok;

	/* /status/NNN */
	if (target_len >= 11 && memcmp(target, "/status/", 8) == 0) {
		const char *d = target + 8;
		size_t k = 0;
		int v = 0;

		while (k < 3 && k < target_len - 8 && d[k] >= '0' && d[k] <= '9')
			v = v * 10 + (d[k++] - '0');
		if (k == 3 && (target_len == 11 || d[3] == '?' || d[3] == '/'))
			status = (v >= 200 && v <= 599) ? v : 400;
	}

	/* JSON body, in the shape of the Gateway API conformance echo server. Host
	 * is not among the headers (Go's net/http moves it to Request.Host). */
	body->len = 0;
	sb_puts(body, "{\"path\": ");
	sb_json_str(body, target, target_len);
	sb_puts(body, ", \"host\": ");
	sb_json_str(body, host, host_len);
	sb_puts(body, ", \"method\": ");
	sb_json_str(body, method, method_len);
	sb_puts(body, ", \"proto\": ");
	sb_json_str(body, proto, proto_len);
	sb_puts(body, ", \"headers\": {");
	{
		bool first = true;

		for (i = 0; i < nh; i++) {
			bool seen = false;

			if (ieq(hdrs[i].name, hdrs[i].name_len, "host"))
				continue;
			for (j = 0; j < i && !seen; j++)
				seen = hdrs[j].name_len == hdrs[i].name_len &&
				       strncasecmp(hdrs[j].name, hdrs[i].name, hdrs[i].name_len) == 0;
			if (seen)
				continue;
			if (!first)
				sb_puts(body, ", ");
			first = false;
			sb_putn(body, "\"", 1);
			sb_canon_name(body, hdrs[i].name, hdrs[i].name_len);
			sb_puts(body, "\": [");
			sb_json_str(body, hdrs[i].value, hdrs[i].value_len);
			for (j = i + 1; j < nh; j++)
				if (hdrs[j].name_len == hdrs[i].name_len &&
				    strncasecmp(hdrs[j].name, hdrs[i].name, hdrs[i].name_len) == 0) {
					sb_puts(body, ", ");
					sb_json_str(body, hdrs[j].value, hdrs[j].value_len);
				}
			sb_putn(body, "]", 1);
		}
	}
	sb_puts(body, "}, \"namespace\": ");
	sb_json_str(body, srv.ns, strlen(srv.ns));
	sb_puts(body, ", \"pod\": ");
	sb_json_str(body, srv.pod, srv.pod_len);
	sb_puts(body, ", \"remote\": ");
	sb_json_str(body, c->peer, c->peer_len);
	sb_puts(body, "}\n");

	/* body framing of the request */
	if (chunked) {
		c->body = BODY_CHUNK_SIZE;
	} else if (has_len && clen > 0) {
		c->body = BODY_LENGTH;
		c->body_left = clen;
	}
	if (expect_continue && c->body != BODY_NONE && !v10)
		sb_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");

	sb_puts(&c->out, "HTTP/1.1 ");
	sb_putu(&c->out, (unsigned long)status);
	sb_putn(&c->out, " ", 1);
	sb_puts(&c->out, reason_phrase(status));
	if (status == 204 || status == 304) {
		sb_puts(&c->out, "\r\n");
	} else {
		sb_puts(&c->out, "\r\nContent-Type: application/json\r\nContent-Length: ");
		sb_putu(&c->out, body->len);
		sb_puts(&c->out, "\r\n");
	}
	if (!keep_alive)
		sb_puts(&c->out, "Connection: close\r\n");
	else if (v10)
		sb_puts(&c->out, "Connection: keep-alive\r\n");
	sb_puts(&c->out, "\r\n");
	if (!head && status != 204 && status != 304)
		sb_putn(&c->out, body->p, body->len);
	if (!keep_alive)
		c->want_close = true;
	return true;
bad:
	http_simple_response(c, 400);
	return false;
}

/* Consume request body bytes from the input. Returns true when the body is
 * done (more requests may follow), false when more input is needed. */
static bool http_consume_body(struct conn *c)
{
	while (c->body != BODY_NONE) {
		char *s = c->in + c->in_off;
		size_t n = c->in_len - c->in_off, ll;
		char *nl;

		if (c->body == BODY_LENGTH || c->body == BODY_CHUNK_DATA) {
			size_t k = n < c->body_left ? n : (size_t)c->body_left;

			c->in_off += k;
			c->body_left -= k;
			if (c->body_left)
				return false;
			c->body = c->body == BODY_LENGTH ? BODY_NONE : BODY_CHUNK_CRLF;
			continue;
		}
		nl = memchr(s, '\n', n);
		if (!nl) {
			if (c->in_off == 0 && c->in_len == sizeof(c->in))
				goto bad;	/* absurd chunk line */
			return false;
		}
		ll = (size_t)(nl - s);
		c->in_off += ll + 1;
		if (ll && s[ll - 1] == '\r')
			ll--;
		switch (c->body) {
		case BODY_CHUNK_SIZE: {
			uint64_t v = 0;
			size_t k = 0;

			for (; k < ll && k < 16; k++) {
				char ch = s[k];
				int d = ch >= '0' && ch <= '9' ? ch - '0' :
					ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
					ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;

				if (d < 0)
					break;
				v = v * 16 + (uint64_t)d;
			}
			if (k == 0)
				goto bad;
			if (v == 0) {
				c->body = BODY_CHUNK_TRAILER;
			} else {
				c->body = BODY_CHUNK_DATA;
				c->body_left = v;
			}
			break;
		}
		case BODY_CHUNK_CRLF:
			if (ll)
				goto bad;
			c->body = BODY_CHUNK_SIZE;
			break;
		case BODY_CHUNK_TRAILER:
			if (ll == 0)
				c->body = BODY_NONE;
			break;
		default:
			break;
		}
	}
	return true;
bad:
	c->body = BODY_NONE;
	c->want_close = true;
	c->linger = true;
	c->in_off = c->in_len;
	return false;
}

static void http_process(struct conn *c)
{
	while (!c->want_close && c->out.len - c->out_off < SL_ECHO_OBUF_HIGH) {
		char *s, *p;
		size_t n, hlen;

		if (!http_consume_body(c))
			return;
		s = c->in + c->in_off;
		n = c->in_len - c->in_off;
		if (n == 0)
			return;
		/* end of the head: an empty line ("\r\n\r\n" or "\n\n") */
		hlen = 0;
		for (p = s; (p = memchr(p, '\n', n - (size_t)(p - s))) != NULL; p++) {
			size_t at = (size_t)(p - s) + 1;

			if (at < n && s[at] == '\n') {
				hlen = at + 1;
				break;
			}
			if (at + 1 < n && s[at] == '\r' && s[at + 1] == '\n') {
				hlen = at + 2;
				break;
			}
		}
		/* a bare "\r\n" or "\n" before a request is ignored (RFC 9112 2.2) */
		if (s[0] == '\n' || (n >= 2 && s[0] == '\r' && s[1] == '\n')) {
			c->in_off += s[0] == '\n' ? 1 : 2;
			continue;
		}
		if (!hlen) {
			if (c->in_off == 0 && c->in_len == sizeof(c->in))
				http_simple_response(c, 431);
			else if (c->rd_closed)
				c->in_off = c->in_len;	/* truncated request: drop */
			return;
		}
		c->in_off += hlen;
		if (!http_handle(c, s, hlen))
			return;
	}
}

static void conn_process(struct conn *c)
{
	if (c->mode == MODE_UNKNOWN) {
		const char *s = c->in + c->in_off;
		size_t n = c->in_len - c->in_off;
		const char *nl = memchr(s, '\n', n);

		if (nl)
			c->mode = looks_like_request_line(s, (size_t)(nl - s)) ? MODE_HTTP : MODE_LINE;
		else if (c->rd_closed || c->in_len == sizeof(c->in) || !may_be_http(s, n))
			c->mode = MODE_LINE;
		else
			return;
	}
	if (c->mode == MODE_HTTP)
		http_process(c);
	else
		line_process(c);
}

/* Write queued output. Returns false when the connection was closed. */
static bool conn_flush(struct conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t w = write(c->it.fd, c->out.p + c->out_off, c->out.len - c->out_off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_close(c);
			return false;
		}
		c->out_off += (size_t)w;
	}
	if (c->out_off == c->out.len)
		c->out_off = c->out.len = 0;
	return true;
}

/* Decide what to do after input was processed and output flushed: close,
 * or set the epoll interest. */
static void conn_settle(struct conn *c)
{
	bool pending = c->out.len > c->out_off;
	uint32_t ev = 0;

	if (!pending && (c->rd_closed || (c->want_close && c->body == BODY_NONE))) {
		/* Closing with unread input would send an RST, which can destroy
		 * the response in the client's receive queue: half-close and drain
		 * until the client closes (bounded in time and bytes). */
		if (c->linger && !c->rd_closed && shutdown(c->it.fd, SHUT_WR) == 0) {
			c->draining = true;
			c->linger_until = now_ms() + SL_ECHO_LINGER_MS;
			c->lprev = srv.linger_tail;
			c->lnext = NULL;
			if (srv.linger_tail)
				srv.linger_tail->lnext = c;
			else
				srv.linger_head = c;
			srv.linger_tail = c;
			c->body_left = SL_ECHO_LINGER_BYTES;
			conn_set_events(c, EPOLLIN | EPOLLRDHUP);
			return;
		}
		conn_close(c);
		return;
	}
	if (pending)
		ev |= EPOLLOUT;
	/* Read while there is room and the output is not backed up; while closing,
	 * keep reading only to discard the rest of a request body. */
	if (!c->rd_closed && c->out.len - c->out_off < SL_ECHO_OBUF_HIGH &&
	    (!c->want_close || c->body != BODY_NONE))
		ev |= EPOLLIN | EPOLLRDHUP;
	if (!ev) {
		conn_close(c);	/* nothing can make progress */
		return;
	}
	conn_set_events(c, ev);
}

static void conn_readable(struct conn *c)
{
	for (;;) {
		ssize_t r;
		size_t room;

		if (c->in_off == c->in_len) {
			c->in_off = c->in_len = 0;
		} else if (c->in_off && c->in_len == sizeof(c->in)) {
			memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
			c->in_len -= c->in_off;
			c->in_off = 0;
		}
		room = sizeof(c->in) - c->in_len;
		if (room == 0)
			break;	/* processing left a full buffer: output is backed up */
		r = read(c->it.fd, c->in + c->in_len, room);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			conn_close(c);
			return;
		}
		if (r == 0)
			c->rd_closed = true;
		c->in_len += (size_t)r;
		conn_process(c);
		if (c->want_close && c->body == BODY_NONE && c->in_off < c->in_len) {
			c->in_off = c->in_len;	/* nothing more will be answered */
			c->linger = true;
		}
		/* Level-triggered: one read per wakeup unless it filled the buffer. */
		if (r == 0 || (size_t)r < room || c->want_close ||
		    c->out.len - c->out_off >= SL_ECHO_OBUF_HIGH)
			break;
	}
	if (!conn_flush(c))
		return;
	conn_settle(c);
}

/* Discard input of a lingering connection; close at EOF, error or the byte cap. */
static void conn_drain(struct conn *c)
{
	ssize_t r = read(c->it.fd, c->in, sizeof(c->in));

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0 || (uint64_t)r >= c->body_left) {
		conn_close(c);
		return;
	}
	c->body_left -= (uint64_t)r;
}

static void conn_event(struct conn *c, uint32_t ev)
{
	if (c->draining) {
		conn_drain(c);
		return;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		if ((ev & EPOLLERR) && !(ev & EPOLLIN)) {
			conn_close(c);
			return;
		}
		conn_readable(c);
		return;
	}
	if (ev & EPOLLOUT) {
		if (!conn_flush(c))
			return;
		/* output drained: continue with input that was held back */
		if (c->out.len == 0 && c->in_off < c->in_len && !c->want_close) {
			conn_process(c);
			if (!conn_flush(c))
				return;
		}
		conn_settle(c);
	}
}

static void tcp_accept(struct item *l)
{
	int i;

	for (i = 0; i < SL_ECHO_ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct conn *c;
		int fd;

		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && srv.spare_fd >= 0) {
				/* accept and drop, so a full table does not spin the loop */
				close(srv.spare_fd);
				fd = accept(l->fd, NULL, NULL);
				if (fd >= 0)
					close(fd);
				srv.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			}
			return;
		}
		c = conn_get();
		if (!c) {
			close(fd);
			continue;
		}
		c->it.fd = fd;
		c->peer_len = (uint8_t)fmt_addr(&ss, true, c->peer, sizeof(c->peer));
		/* The request has usually arrived by now: read at once, and join
		 * the epoll set only if the connection has to wait. */
		conn_readable(c);
	}
}

static void udp_readable(struct item *u)
{
	int i;

	for (i = 0; i < SL_ECHO_ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss = { 0 };	/* filled by recvmsg; zeroed for cppcheck */
		char peer[SL_ECHO_ADDRSTR];
		union {
			char buf[CMSG_SPACE(sizeof(struct in6_pktinfo)) +
				 CMSG_SPACE(sizeof(struct in_pktinfo))];
			struct cmsghdr align;
		} cin, cout;
		size_t hdr = srv.pod_len + 1 + SL_ECHO_ADDRSTR + 1;
		struct iovec iov = { srv.udp_buf + hdr, sizeof(srv.udp_buf) - hdr };
		struct msghdr m = { .msg_name = &ss, .msg_namelen = sizeof(ss), .msg_iov = &iov,
				    .msg_iovlen = 1, .msg_control = cin.buf,
				    .msg_controllen = sizeof(cin.buf) };
		struct msghdr o;
		struct cmsghdr *cm;
		ssize_t r;
		size_t pl;
		char *start;

		r = recvmsg(u->fd, &m, MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return;	/* EAGAIN, or an ICMP error queued on the socket */
		}
		pl = (size_t)fmt_addr(&ss, true, peer, sizeof(peer));
		/* build "<pod> <peer> " right in front of the payload */
		start = srv.udp_buf + hdr - (srv.pod_len + 1 + pl + 1);
		memcpy(start, srv.pod, srv.pod_len);
		start[srv.pod_len] = ' ';
		memcpy(start + srv.pod_len + 1, peer, pl);
		start[srv.pod_len + 1 + pl] = ' ';
		iov.iov_base = start;
		iov.iov_len = srv.pod_len + 1 + pl + 1 + (size_t)r;

		/* reply from the address the datagram was sent to */
		memset(&cout, 0, sizeof(cout));
		o = (struct msghdr){ .msg_name = &ss, .msg_namelen = m.msg_namelen, .msg_iov = &iov,
				     .msg_iovlen = 1, .msg_control = cout.buf };
		for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
			struct cmsghdr *oc = (struct cmsghdr *)(cout.buf + o.msg_controllen);

			if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
				struct in_pktinfo pi;

				memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
				pi.ipi_spec_dst = pi.ipi_addr;
				pi.ipi_ifindex = 0;
				pi.ipi_addr.s_addr = 0;
				oc->cmsg_level = IPPROTO_IP;
				oc->cmsg_type = IP_PKTINFO;
				oc->cmsg_len = CMSG_LEN(sizeof(pi));
				memcpy(CMSG_DATA(oc), &pi, sizeof(pi));
				o.msg_controllen += CMSG_SPACE(sizeof(pi));
				break;
			}
			if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
				struct in6_pktinfo pi;

				memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
				pi.ipi6_ifindex = 0;
				oc->cmsg_level = IPPROTO_IPV6;
				oc->cmsg_type = IPV6_PKTINFO;
				oc->cmsg_len = CMSG_LEN(sizeof(pi));
				memcpy(CMSG_DATA(oc), &pi, sizeof(pi));
				o.msg_controllen += CMSG_SPACE(sizeof(pi));
				break;
			}
		}
		if (!o.msg_controllen)
			o.msg_control = NULL;
		if (sendmsg(u->fd, &o, MSG_DONTWAIT) < 0 && errno == EINVAL && o.msg_control) {
			o.msg_control = NULL;
			o.msg_controllen = 0;
			sendmsg(u->fd, &o, MSG_DONTWAIT);
		}
	}
}

/* A TCP or UDP listener on [::]:port (dual-stack), or 0.0.0.0:port when the
 * netns has no IPv6. Exits on failure. */
static int open_listener(int type, unsigned port)
{
	static const int families[] = { AF_INET6, AF_INET };
	int one = 1, zero = 0, err = 0;
	size_t i;

	for (i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		int fam = families[i], fd;
		struct sockaddr_storage ss = { 0 };
		socklen_t sl;

		fd = socket(fam, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (fam == AF_INET6) {
			struct sockaddr_in6 *s6 = (void *)&ss;

			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)port);
			sl = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (void *)&ss;

			s4->sin_family = AF_INET;
			s4->sin_port = htons((uint16_t)port);
			sl = sizeof(*s4);
		}
		if (type == SOCK_STREAM) {
			/* inherited by accepted sockets: replies go out at once */
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		} else {
			setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
			if (fam == AF_INET6)
				setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
		}
		if (bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
		    (type == SOCK_STREAM && listen(fd, 4096) < 0)) {
			err = errno;
			close(fd);
			if (err == EADDRINUSE)
				break;	/* the other family will not help */
			continue;
		}
		return fd;
	}
	die("%s port %u: %s", type == SOCK_STREAM ? "tcp" : "udp", port, strerror(err));
}

static void write_ready_file(const char *path)
{
	char tmp[PATH_MAX];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		die("ready file path too long");
	f = fopen(tmp, "w");
	if (!f)
		die("%s: %s", tmp, strerror(errno));
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		die("%s: %s", path, strerror(errno));
}

static int cmd_serve(int argc, char **argv)
{
	unsigned tcp[SL_ECHO_MAX_LISTEN], udp[SL_ECHO_MAX_LISTEN];
	size_t ntcp = 0, nudp = 0, i;
	const char *ready = NULL;
	struct item *items;
	struct rlimit rl;
	int a;

	srv.pod = "pod";
	srv.ns = "default";
	for (a = 0; a < argc; a++) {
		const char *o = argv[a];

		if (a + 1 >= argc)
			die("serve: option %s needs a value", o);
		if (!strcmp(o, "--pod"))
			srv.pod = argv[++a];
		else if (!strcmp(o, "--namespace"))
			srv.ns = argv[++a];
		else if (!strcmp(o, "--tcp") && ntcp < SL_ECHO_MAX_LISTEN)
			tcp[ntcp++] = (unsigned)parse_num(argv[++a], 1, 65535, "tcp port");
		else if (!strcmp(o, "--udp") && nudp < SL_ECHO_MAX_LISTEN)
			udp[nudp++] = (unsigned)parse_num(argv[++a], 1, 65535, "udp port");
		else if (!strcmp(o, "--ready-file"))
			ready = argv[++a];
		else
			die("serve: unknown option %s", o);
	}
	if (!ntcp && !nudp)
		tcp[ntcp++] = 8080;
	srv.pod_len = strlen(srv.pod);
	if (srv.pod_len > 253 || memchr(srv.pod, ' ', srv.pod_len) || memchr(srv.pod, '\n', srv.pod_len))
		die("serve: bad pod name");

	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	srv.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	srv.ep = epoll_create1(EPOLL_CLOEXEC);
	if (srv.ep < 0)
		die("epoll_create1: %s", strerror(errno));
	items = calloc(ntcp + nudp, sizeof(*items));
	if (!items)
		die("out of memory");
	for (i = 0; i < ntcp + nudp; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = &items[i] };
		bool is_tcp = i < ntcp;

		items[i].kind = is_tcp ? ITEM_TCP_LISTEN : ITEM_UDP;
		items[i].fd = open_listener(is_tcp ? SOCK_STREAM : SOCK_DGRAM,
					    is_tcp ? tcp[i] : udp[i - ntcp]);
		if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, items[i].fd, &e) < 0)
			die("epoll_ctl: %s", strerror(errno));
	}
	if (ready)
		write_ready_file(ready);

	for (;;) {
		struct epoll_event evs[256];
		int n = epoll_wait(srv.ep, evs, 256, srv.linger_head ? 500 : -1), k;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		for (k = 0; k < n; k++) {
			struct item *it = evs[k].data.ptr;

			switch (it->kind) {
			case ITEM_TCP_LISTEN:
				tcp_accept(it);
				break;
			case ITEM_UDP:
				udp_readable(it);
				break;
			case ITEM_CONN:
				conn_event((struct conn *)it, evs[k].events);
				break;
			}
		}
		if (srv.linger_head) {
			int64_t now = now_ms();

			while (srv.linger_head && srv.linger_head->linger_until <= now)
				conn_close(srv.linger_head);
		}
	}
}

/* ---------------------------------------------------------------- clients */

struct target {
	struct sockaddr_storage ss;
	socklen_t len;
};

static void resolve(const char *host, const char *port, int socktype, struct target *t)
{
	struct addrinfo hints = { .ai_socktype = socktype, .ai_flags = AI_NUMERICSERV }, *res;
	char h[256];
	size_t n = strlen(host);
	int rc;

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n >= sizeof(h))
		die("host too long");
	memcpy(h, host, n);
	h[n] = 0;
	parse_num(port, 1, 65535, "port");
	hints.ai_flags |= AI_NUMERICHOST;
	rc = getaddrinfo(h, port, &hints, &res);
	if (rc == EAI_NONAME) {
		hints.ai_flags &= ~AI_NUMERICHOST;
		rc = getaddrinfo(h, port, &hints, &res);
	}
	if (rc)
		die("%s: %s", h, gai_strerror(rc));
	memcpy(&t->ss, res->ai_addr, res->ai_addrlen);
	t->len = res->ai_addrlen;
	freeaddrinfo(res);
}

/* Wait until fd is ready for ev or the deadline passes: 0 or ETIMEDOUT. */
static int wait_fd(int fd, short ev, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = ev };
		int64_t left = deadline - now_ms();
		int r;

		if (left <= 0)
			return ETIMEDOUT;
		r = poll(&p, 1, (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return errno;
	}
}

/* Connect a new non-blocking TCP socket: 0 with *fd set, or an errno. */
static int tcp_open(const struct target *t, int64_t deadline, int *fd)
{
	int s, err = 0;
	socklen_t el = sizeof(err);

	s = socket(t->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0)
		return errno;
	if (connect(s, (const struct sockaddr *)&t->ss, t->len) < 0) {
		if (errno != EINPROGRESS) {
			err = errno;
			goto fail;
		}
		err = wait_fd(s, POLLOUT, deadline);
		if (err)
			goto fail;
		if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err)
			goto fail;
	}
	*fd = s;
	return 0;
fail:
	close(s);
	return err;
}

static int send_all(int fd, const char *buf, size_t n, int64_t deadline)
{
	while (n) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		int err;

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return errno;
			err = wait_fd(fd, POLLOUT, deadline);
			if (err)
				return err;
			continue;
		}
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read up to and including '\n' into buf (NUL-terminated, without '\n').
 * 0, or ECONNABORTED on EOF first, ETIMEDOUT, EPROTO when too long, errno. */
static int read_line(int fd, char *buf, size_t cap, int64_t deadline)
{
	size_t len = 0;

	for (;;) {
		ssize_t r = recv(fd, buf + len, cap - 1 - len, MSG_DONTWAIT);
		char *nl;
		int err;

		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return errno;
			err = wait_fd(fd, POLLIN, deadline);
			if (err)
				return err;
			continue;
		}
		if (r == 0)
			return ECONNABORTED;
		len += (size_t)r;
		buf[len] = 0;
		nl = memchr(buf, '\n', len);
		if (nl) {
			*nl = 0;
			return 0;
		}
		if (len == cap - 1)
			return EPROTO;
	}
}

/* Check "<pod> <peer> <line>" and extract pod and peer: 0 or EPROTO. */
static int parse_reply(char *reply, const char *line, char *pod, size_t podcap, char *saw,
		       size_t sawcap)
{
	char *sp1 = strchr(reply, ' '), *sp2;
	size_t n = strlen(reply);

	if (n && reply[n - 1] == '\r')
		reply[--n] = 0;
	if (!sp1 || sp1 == reply)
		return EPROTO;
	sp2 = strchr(sp1 + 1, ' ');
	if (!sp2 || strcmp(sp2 + 1, line) != 0)
		return EPROTO;
	if ((size_t)(sp1 - reply) >= podcap || (size_t)(sp2 - sp1 - 1) >= sawcap)
		return EPROTO;
	memcpy(pod, reply, (size_t)(sp1 - reply));
	pod[sp1 - reply] = 0;
	memcpy(saw, sp1 + 1, (size_t)(sp2 - sp1 - 1));
	saw[sp2 - sp1 - 1] = 0;
	return 0;
}

struct probe_result {
	char pod[256];
	char peer[SL_ECHO_ADDRSTR];
	char saw[SL_ECHO_ADDRSTR];
};

/* One TCP exchange on an open connection. */
static int tcp_exchange(int fd, const char *line, int64_t deadline, struct probe_result *r)
{
	char out[1024], in[2048];
	int n = snprintf(out, sizeof(out), "%s\n", line), err;

	err = send_all(fd, out, (size_t)n, deadline);
	if (!err)
		err = read_line(fd, in, sizeof(in), deadline);
	if (!err)
		err = parse_reply(in, line, r->pod, sizeof(r->pod), r->saw, sizeof(r->saw));
	return err;
}

static int tcp_once(const struct target *t, const char *line, int timeout_ms, struct probe_result *r)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, err;

	err = tcp_open(t, deadline, &fd);
	if (err)
		return err;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		fmt_addr(&ss, false, r->peer, sizeof(r->peer));
	err = tcp_exchange(fd, line, deadline, r);
	close(fd);
	return err;
}

static int udp_once(const struct target *t, bool connected, const char *line, int timeout_ms,
		    struct probe_result *r)
{
	int64_t deadline = now_ms() + timeout_ms;
	char out[1024], in[2048];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int n = snprintf(out, sizeof(out), "%s\n", line), fd, err = 0;
	ssize_t got;

	fd = socket(t->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	if (connected) {
		if (connect(fd, (const struct sockaddr *)&t->ss, t->len) < 0 ||
		    send(fd, out, (size_t)n, 0) < 0) {
			err = errno;
			goto out;
		}
		if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
			fmt_addr(&ss, false, r->peer, sizeof(r->peer));
	} else if (sendto(fd, out, (size_t)n, 0, (const struct sockaddr *)&t->ss, t->len) < 0) {
		err = errno;
		goto out;
	}
	for (;;) {
		sl = sizeof(ss);
		got = recvfrom(fd, in, sizeof(in) - 1, 0, (struct sockaddr *)&ss, &sl);
		if (got >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			err = errno;
			goto out;
		}
		err = wait_fd(fd, POLLIN, deadline);
		if (err)
			goto out;
	}
	if (!connected)
		fmt_addr(&ss, false, r->peer, sizeof(r->peer));
	in[got] = 0;
	if (got && in[got - 1] == '\n')
		in[got - 1] = 0;
	err = parse_reply(in, line, r->pod, sizeof(r->pod), r->saw, sizeof(r->saw));
out:
	close(fd);
	return err;
}

struct pod_count {
	char name[256];
	unsigned long n;
};

static int pod_count_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pod_count *)a)->name, ((const struct pod_count *)b)->name);
}

static int cmd_probe(int argc, char **argv)
{
	const char *pos[3], *line = "ping";
	int npos = 0, a, timeout_ms = 2000;
	long count = 1, i, ok = 0, nerr = 0;
	bool connected = false, udp;
	struct pod_count *pods;
	size_t npods = 0, k;
	struct target t;

	for (a = 0; a < argc; a++) {
		const char *o = argv[a];

		if (!strcmp(o, "--connected")) {
			connected = true;
		} else if (o[0] == '-' && o[1] == '-') {
			if (a + 1 >= argc)
				die("probe: option %s needs a value", o);
			if (!strcmp(o, "--count"))
				count = parse_num(argv[++a], 1, 10000000, "count");
			else if (!strcmp(o, "--timeout-ms"))
				timeout_ms = (int)parse_num(argv[++a], 1, 3600000, "timeout");
			else if (!strcmp(o, "--line"))
				line = argv[++a];
			else
				die("probe: unknown option %s", o);
		} else if (npos < 3) {
			pos[npos++] = o;
		} else {
			die("probe: too many arguments");
		}
	}
	if (npos != 3 || (strcmp(pos[0], "tcp") && strcmp(pos[0], "udp")))
		die("usage: sl-echo probe tcp|udp HOST PORT [--count N] [--timeout-ms MS] "
		    "[--connected] [--line TEXT]");
	if (strlen(line) > 900 || strchr(line, '\n'))
		die("probe: --line must be one line of at most 900 bytes");
	udp = !strcmp(pos[0], "udp");
	resolve(pos[1], pos[2], udp ? SOCK_DGRAM : SOCK_STREAM, &t);
	signal(SIGPIPE, SIG_IGN);
	pods = calloc((size_t)(count < 1024 ? count : 1024), sizeof(*pods));
	if (!pods)
		die("out of memory");

	for (i = 0; i < count; i++) {
		struct probe_result r = { .peer = "-", .saw = "-" };
		int err = udp ? udp_once(&t, connected, line, timeout_ms, &r)
			      : tcp_once(&t, line, timeout_ms, &r);

		if (err) {
			printf("err %s %s\n", errno_name(err), strerror(err));
			nerr++;
		} else {
			printf("ok pod=%s peer=%s server_saw=%s\n", r.pod, r.peer, r.saw);
			ok++;
			for (k = 0; k < npods && strcmp(pods[k].name, r.pod); k++)
				;
			if (k == npods && npods < 1024) {
				snprintf(pods[k].name, sizeof(pods[k].name), "%s", r.pod);
				npods++;
			}
			if (k < npods)
				pods[k].n++;
		}
		fflush(stdout);
	}
	qsort(pods, npods, sizeof(*pods), pod_count_cmp);
	printf("summary ok=%ld err=%ld pods=", ok, nerr);
	for (k = 0; k < npods; k++)
		printf("%s%s:%lu", k ? "," : "", pods[k].name, pods[k].n);
	printf("\n");
	free(pods);
	return nerr ? 1 : 0;
}

static void sleep_until(int64_t t)
{
	int64_t left;

	while ((left = t - now_ms()) > 0) {
		struct timespec ts = { left / 1000, (left % 1000) * 1000000 };

		nanosleep(&ts, NULL);
	}
}

static int cmd_stream(int argc, char **argv)
{
	const char *pos[3];
	int npos = 0, a, timeout_ms = 1000, fd = -1, first_err = 0;
	long duration = -1, interval = 100;
	unsigned long sent = 0, replies = 0, long_errors = 0, new_ok = 0, new_err = 0, seq = 0;
	int64_t start, end, next;
	struct target t;

	for (a = 0; a < argc; a++) {
		const char *o = argv[a];

		if (o[0] == '-' && o[1] == '-') {
			if (a + 1 >= argc)
				die("stream: option %s needs a value", o);
			if (!strcmp(o, "--duration-ms"))
				duration = parse_num(argv[++a], 1, 24L * 3600 * 1000, "duration");
			else if (!strcmp(o, "--interval-ms"))
				interval = parse_num(argv[++a], 1, 3600000, "interval");
			else if (!strcmp(o, "--timeout-ms"))
				timeout_ms = (int)parse_num(argv[++a], 1, 3600000, "timeout");
			else
				die("stream: unknown option %s", o);
		} else if (npos < 3) {
			pos[npos++] = o;
		} else {
			die("stream: too many arguments");
		}
	}
	if (npos != 3 || strcmp(pos[0], "tcp") || duration < 0)
		die("usage: sl-echo stream tcp HOST PORT --duration-ms MS [--interval-ms MS] "
		    "[--timeout-ms MS]");
	resolve(pos[1], pos[2], SOCK_STREAM, &t);
	signal(SIGPIPE, SIG_IGN);

	start = now_ms();
	end = start + duration;
	for (next = start; next < end; ) {
		struct probe_result r;
		char line[64];
		int err;

		sleep_until(next);
		snprintf(line, sizeof(line), "stream %lu", ++seq);
		/* the long-lived connection (reopened at the next tick after a failure) */
		err = 0;
		if (fd < 0)
			err = tcp_open(&t, now_ms() + timeout_ms, &fd);
		if (!err) {
			sent++;
			err = tcp_exchange(fd, line, now_ms() + timeout_ms, &r);
			if (!err)
				replies++;
		}
		if (err) {
			long_errors++;
			if (!first_err)
				first_err = err;
			printf("err t=%lld long %s %s\n", (long long)(now_ms() - start),
			       errno_name(err), strerror(err));
			if (fd >= 0)
				close(fd);
			fd = -1;
		}
		/* a new short connection */
		err = tcp_once(&t, line, timeout_ms, &r);
		if (err) {
			new_err++;
			if (!first_err)
				first_err = err;
			printf("err t=%lld new %s %s\n", (long long)(now_ms() - start),
			       errno_name(err), strerror(err));
		} else {
			new_ok++;
		}
		fflush(stdout);
		next += interval;
		if (next < now_ms())
			next = now_ms();	/* an operation overran: do not burst */
	}
	if (fd >= 0)
		close(fd);
	printf("stream sent=%lu replies=%lu long_errors=%lu new_ok=%lu new_err=%lu first_err=%s\n",
	       sent, replies, long_errors, new_ok, new_err, first_err ? errno_name(first_err) : "-");
	return long_errors || new_err || replies != sent ? 1 : 0;
}

static void usage(void)
{
	fputs("usage: sl-echo serve --pod NAME --namespace NS [--tcp PORT]... [--udp PORT]...\n"
	      "                     [--ready-file PATH]\n"
	      "       sl-echo probe tcp|udp HOST PORT [--count N] [--timeout-ms MS] [--connected]\n"
	      "                     [--line TEXT]\n"
	      "       sl-echo stream tcp HOST PORT --duration-ms MS [--interval-ms MS]\n"
	      "                     [--timeout-ms MS]\n",
	      stderr);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage();
		return 2;
	}
	if (!strcmp(argv[1], "serve"))
		return cmd_serve(argc - 2, argv + 2);
	if (!strcmp(argv[1], "probe"))
		return cmd_probe(argc - 2, argv + 2);
	if (!strcmp(argv[1], "stream"))
		return cmd_stream(argc - 2, argv + 2);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage();
		return 0;
	}
	usage();
	return 2;
}
