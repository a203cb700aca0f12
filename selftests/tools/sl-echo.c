// SPDX-License-Identifier: Apache-2.0
/* sl-echo - the lab pods' test server and client (libc, libnghttp2, and
 * libcrypto for the WebSocket handshake's SHA-1).
 *
 *   sl-echo serve --pod NAME --namespace NS [--service NAME] [--tcp PORT]...
 *                 [--udp PORT]... [--ready-file PATH] [--only http1|h2c]
 *   sl-echo probe tcp|udp HOST PORT [--count N] [--timeout-ms MS] [--connected]
 *                 [--line TEXT]
 *   sl-echo stream tcp HOST PORT --duration-ms MS [--interval-ms MS] [--timeout-ms MS]
 *
 * serve: one epoll loop (level-triggered, non-blocking), dual-stack listeners
 * (AF_INET6 with IPV6_V6ONLY=0; AF_INET when the pod has no IPv6). A TCP
 * connection whose first line looks like an HTTP/1.x request line speaks
 * HTTP/1.1 and answers with a JSON echo in the shape of the Gateway API
 * conformance echo server (echo-basic): fields path (the request target, query
 * included), host, method, proto, headers (canonical name -> values; Host is
 * not among them), namespace, service (--service, or ""), pod, and remote
 * (the peer). Like echo-basic it also
 *   - sets response headers from X-Echo-Set-Header: comma-separated k:v pairs
 *     (every such header; a name given twice gets the values joined by ",";
 *     names that would change the framing are ignored);
 *   - waits first when the query has delay=<Go duration> (1s, 500ms, 1m30s;
 *     at most 1 h): a timer of the epoll loop holds that connection's answer,
 *     other connections go on; a malformed delay is a 500;
 *   - answers /status/NNN with status NNN.
 * A request with Upgrade: websocket and a Sec-WebSocket-Key (RFC 6455) gets
 * 101 Switching Protocols (Sec-WebSocket-Accept; Sec-WebSocket-Protocol: the
 * first one the client offers), then a WebSocket echo: every client frame
 * comes back unmasked with its opcode and FIN, a close frame too, and then
 * the connection closes. Over HTTP/2 (below) an extended CONNECT (RFC 8441:
 * :method CONNECT, :protocol websocket; the SETTINGS say
 * ENABLE_CONNECT_PROTOCOL) gets 200 and the same echo on its stream's DATA,
 * its END_STREAM after the client's (or after a close frame).
 * Frames are taken whole, up to 16 KiB each (a larger one closes the
 * connection or resets the stream).
 * A TCP connection that starts with the HTTP/2 client preface ("PRI *
 * HTTP/2.0\r\n\r\nSM\r\n\r\n", h2c with prior knowledge) speaks HTTP/2
 * (nghttp2, in the same epoll loop): every request gets the same JSON echo
 * (proto "HTTP/2.0", host from :authority, else Host), answered when the
 * request ends; ?delay= holds only that stream. A request with content-type
 * application/grpc is a gRPC call answered as echo-basic's gRPC server does
 * (conformance/echo-basic/grpcecho.proto): service
 * gateway_api_conformance.echo_basic.grpcecho.GrpcEcho, methods Echo and
 * EchoTwo answer an EchoResponse (assertions: fully_qualified_method, the
 * request's metadata as headers, authority, context {namespace, service_name,
 * pod}) with grpc-status 0 in the trailers; EchoThree, any other method or
 * service get grpc-status 12 (UNIMPLEMENTED), trailers only.
 * --only http1 closes a TCP connection that starts with the HTTP/2 preface at
 * once; --only h2c closes any other (HTTP/1.x, line mode): a backend that
 * speaks one version of HTTP only, for the waypoint's translation tests.
 * Every HTTP request (HTTP/1.x, HTTP/2, gRPC) is logged to stdout (the lab's
 * server.log), one line
 *   http <method> <target> host=<host> peer=<peer>
 * and, once a request body (HTTP/1.x or HTTP/2 DATA) has ended,
 *   body len=<bytes> fnv=<FNV-1a 32 of its bytes, 8 hex digits>
 * (bytes outside printable ASCII as '?'), written once per loop iteration.
 * Any other TCP connection is in line mode:
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

#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "tools/tool.h"

#define SL_ECHO_IBUF		16384	/* per-connection input; also the max HTTP header block */
#define SL_ECHO_OBUF_INIT	4096	/* per-connection output, grown on demand, kept on reuse */
#define SL_ECHO_OBUF_HIGH	(256 * 1024)	/* stop reading while this much output is queued */
#define SL_ECHO_MAX_HDRS	128
#define SL_ECHO_MAX_LISTEN	64
#define SL_ECHO_ACCEPT_BATCH	64
#define SL_ECHO_ADDRSTR		(INET6_ADDRSTRLEN + 8)
#define SL_ECHO_LINGER_MS	2000	/* how long a closing connection drains input */
#define SL_ECHO_LINGER_BYTES	(1024 * 1024)
#define SL_ECHO_H2_PREFACE	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define SL_ECHO_H2_PREFACE_LEN	24
#define SL_ECHO_H2_STREAMS	256	/* SETTINGS_MAX_CONCURRENT_STREAMS */
#define SL_ECHO_H2_HDR_BYTES	65536	/* a request's header fields, at most (else 431) */
#define SL_ECHO_GRPC_SERVICE	"gateway_api_conformance.echo_basic.grpcecho.GrpcEcho"

/* ---------------------------------------------------------------- common */

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
	if (!n)
		return;	/* s and b->p may be NULL */
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

/* A header field as a record of a field list: u32 name length, u32 value
 * length, name, value (HTTP/2 requests and responses). */
static void sb_put_field(struct sbuf *b, const char *n, size_t nl, const char *v, size_t vl)
{
	uint32_t l[2] = { (uint32_t)nl, (uint32_t)vl };

	sb_putn(b, (const char *)l, sizeof(l));
	sb_putn(b, n, nl);
	sb_putn(b, v, vl);
}

/* The field at *off of a field list, advancing *off; false at the end. */
static bool sb_get_field(const struct sbuf *b, size_t *off, const char **n, size_t *nl,
			 const char **v, size_t *vl)
{
	uint32_t l[2];

	if (*off + sizeof(l) > b->len)
		return false;
	memcpy(l, b->p + *off, sizeof(l));
	*n = b->p + *off + sizeof(l);
	*nl = l[0];
	*v = *n + l[0];
	*vl = l[1];
	*off += sizeof(l) + l[0] + l[1];
	return true;
}

/* ---------------------------------------------------------------- serve */

enum item_kind { ITEM_TCP_LISTEN, ITEM_UDP, ITEM_CONN };

struct item {
	enum item_kind kind;
	int fd;
};

enum conn_mode { MODE_UNKNOWN, MODE_LINE, MODE_HTTP, MODE_H2, MODE_WS };

struct h2_stream;

/* HTTP request body framing still to be consumed (read and discarded). */
enum body_state { BODY_NONE, BODY_LENGTH, BODY_CHUNK_SIZE, BODY_CHUNK_DATA, BODY_CHUNK_CRLF,
		  BODY_CHUNK_TRAILER };

struct conn {
	struct item it;			/* first: epoll data points here */
	enum conn_mode mode;
	enum body_state body;
	uint64_t body_left;		/* BODY_LENGTH / BODY_CHUNK_DATA */
	uint64_t body_len;		/* the body's bytes so far, and their FNV-1a */
	uint32_t body_fnv;
	uint32_t events;		/* current epoll interest */
	bool rd_closed;			/* peer sent FIN */
	bool want_close;		/* close once output is flushed and the body consumed */
	bool linger;			/* input was dropped: shut down writes and drain first */
	bool draining;			/* in the linger list, discarding input until EOF */
	int64_t linger_until;		/* CLOCK_MONOTONIC ms */
	struct conn *lprev, *lnext;	/* linger list, oldest first */
	bool held;			/* answer held back until hold_until (?delay=); HTTP/2:
					 * the timer of its earliest delayed stream */
	int64_t hold_until;		/* CLOCK_MONOTONIC ms */
	struct conn *hprev, *hnext;	/* held list (unordered) */
	nghttp2_session *h2;		/* MODE_H2 */
	struct h2_stream *streams;	/* MODE_H2: the open streams */
	size_t in_off, in_len;		/* unconsumed input is in[in_off..in_len) */
	struct sbuf out;		/* queued output */
	size_t out_off;			/* out.p[out_off..out.len) not yet written */
	uint8_t peer_len;
	char peer[SL_ECHO_ADDRSTR];
	struct conn *next_free;
	char in[SL_ECHO_IBUF];
};

struct server {
	const char *pod, *ns, *svc;
	int only;			/* 0: any; 1: HTTP/1.x only; 2: h2c only (--only) */
	size_t pod_len;
	struct conn *held_head;
	struct sbuf log;		/* request log lines not yet written to stdout */
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
	c->held = false;
	c->hprev = c->hnext = NULL;
	c->h2 = NULL;
	c->streams = NULL;
	c->in_off = c->in_len = 0;
	c->out.len = 0;
	c->out_off = 0;
	c->next_free = NULL;
	return c;
}

static void conn_unhold(struct conn *c)
{
	if (!c->held)
		return;
	if (c->hprev)
		c->hprev->hnext = c->hnext;
	else
		srv.held_head = c->hnext;
	if (c->hnext)
		c->hnext->hprev = c->hprev;
	c->hprev = c->hnext = NULL;
	c->held = false;
}

static void conn_hold(struct conn *c, int64_t until)
{
	if (c->held) {
		if (until > c->hold_until)
			c->hold_until = until;
		return;
	}
	c->held = true;
	c->hold_until = until;
	c->hprev = NULL;
	c->hnext = srv.held_head;
	if (srv.held_head)
		srv.held_head->hprev = c;
	srv.held_head = c;
}

static void h2_end(struct conn *c);

/* Terminal: closes the socket and returns c to the free list. */
static void conn_close(struct conn *c)
{
	conn_unhold(c);
	h2_end(c);
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

/* tchar of RFC 9110 (header field names). */
static bool is_tchar(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int hexval(char ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' :
	       ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
	       ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* The first value of query parameter key in target[0..n) ("...?a=1&key=v"),
 * percent-decoded into buf. Returns its length, or -1 when absent or too long. */
static int query_get(const char *target, size_t n, const char *key, char *buf, size_t cap)
{
	const char *q = memchr(target, '?', n), *end = target + n;
	size_t kl = strlen(key);

	if (!q)
		return -1;
	for (q++; q < end;) {
		const char *amp = memchr(q, '&', (size_t)(end - q)), *pe = amp ? amp : end;
		const char *eq = memchr(q, '=', (size_t)(pe - q));
		const char *ke = eq ? eq : pe;

		if ((size_t)(ke - q) == kl && !memcmp(q, key, kl)) {
			const char *v = eq ? eq + 1 : pe;
			size_t o = 0;

			for (; v < pe; v++) {
				char ch = *v;

				if (o + 1 >= cap)
					return -1;
				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%' && pe - v >= 3 && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
					ch = (char)(hexval(v[1]) * 16 + hexval(v[2]));
					v += 2;
				}
				buf[o++] = ch;
			}
			buf[o] = 0;
			return (int)o;
		}
		q = pe + 1;
	}
	return -1;
}

/* A Go duration (time.ParseDuration: "0", or [-+]?(<decimal><unit>)+ with
 * units ns, us, µs, μs, ms, s, m, h) in milliseconds, rounded up; a negative
 * one is 0. False when malformed or longer than max_ms. */
static bool parse_go_duration(const char *s, int64_t max_ms, int64_t *out)
{
	static const struct { const char *u; double ns; } units[] = {
		{ "ns", 1 }, { "us", 1e3 }, { "\xc2\xb5s", 1e3 }, { "\xce\xbcs", 1e3 },
		{ "ms", 1e6 }, { "s", 1e9 }, { "m", 60e9 }, { "h", 3600e9 },
	};
	bool neg = false;
	double ns = 0;

	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (!strcmp(s, "0")) {
		*out = 0;
		return true;
	}
	if (!*s)
		return false;
	while (*s) {
		double v = 0, scale = 1, unit = 0;
		bool digits = false;
		size_t i, ul, best_len = 0;

		for (; *s >= '0' && *s <= '9'; s++, digits = true)
			v = v * 10 + (*s - '0');
		if (*s == '.')
			for (s++; *s >= '0' && *s <= '9'; s++, digits = true)
				v += (*s - '0') * (scale /= 10);
		if (!digits)
			return false;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {	/* the longest unit */
			ul = strlen(units[i].u);
			if (ul > best_len && !strncmp(s, units[i].u, ul)) {
				best_len = ul;
				unit = units[i].ns;
			}
		}
		if (!best_len)
			return false;
		s += best_len;
		ns += v * unit;
		if (ns > (double)max_ms * 1e6)
			return false;
	}
	*out = neg ? 0 : (int64_t)((ns + 999999) / 1e6);
	return true;
}

static void log_flush(void);

#define FNV_START 2166136261u

static uint32_t fnv1a(uint32_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

/* "body len=N fnv=XXXXXXXX": a request body has ended. */
static void log_body(uint64_t len, uint32_t fnv)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "body len=%llu fnv=%08x\n", (unsigned long long)len, fnv);

	sb_putn(&srv.log, line, (size_t)n);
}

/* The log line of a request: "http <method> <target> host=<host> peer=<peer>". */
static void log_request(const struct conn *c, const char *method, size_t ml, const char *target,
			size_t tl, const char *host, size_t hl)
{
	const struct { const char *p; size_t n; const char *pre; } f[] = {
		{ method, ml, "http " }, { target, tl, " " }, { host, hl, " host=" },
		{ c->peer, c->peer_len, " peer=" },
	};
	size_t i, j;

	for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		sb_puts(&srv.log, f[i].pre);
		sb_reserve(&srv.log, f[i].n);
		for (j = 0; j < f[i].n; j++) {
			unsigned char ch = (unsigned char)f[i].p[j];

			srv.log.p[srv.log.len++] = ch > 0x20 && ch < 0x7f ? (char)ch : '?';
		}
	}
	sb_putn(&srv.log, "\n", 1);
	if (srv.log.len >= 65536)
		log_flush();
}

static void log_flush(void)
{
	size_t off = 0;

	while (off < srv.log.len) {
		ssize_t w = write(STDOUT_FILENO, srv.log.p + off, srv.log.len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;	/* nowhere to log: drop it */
		off += (size_t)w;
	}
	srv.log.len = 0;
}

/* Response headers asked for by X-Echo-Set-Header ("k:v,k2:v2"; every such
 * header), each name once (values of a repeated name joined by ","). Names
 * that are not tokens, or that would change the framing, are ignored. Sets
 * *ct when one of them is Content-Type. HTTP/1: "Name: value\r\n" lines;
 * h2: field records (sb_put_field) with lower-case names, connection-specific
 * fields left out. */
static void put_echo_set_headers(struct sbuf *o, const struct hdr *hdrs, size_t nh, bool *ct,
				 bool h2)
{
	static struct hdr kv[SL_ECHO_MAX_HDRS];
	static struct sbuf f;
	size_t n = 0, i, j, k;

	*ct = false;
	for (i = 0; i < nh; i++) {
		const char *v = hdrs[i].value, *end = v + hdrs[i].value_len;

		if (!ieq(hdrs[i].name, hdrs[i].name_len, "x-echo-set-header"))
			continue;
		while (v < end && n < SL_ECHO_MAX_HDRS) {
			const char *comma = memchr(v, ',', (size_t)(end - v)), *pe = comma ? comma : end;
			const char *colon = memchr(v, ':', (size_t)(pe - v));
			const char *ns = v, *ne = colon ? colon : pe, *vs = colon ? colon + 1 : pe, *ve = pe;
			bool ok;

			v = comma ? comma + 1 : end;
			while (ns < ne && (*ns == ' ' || *ns == '\t'))
				ns++;
			while (ne > ns && (ne[-1] == ' ' || ne[-1] == '\t'))
				ne--;
			while (vs < ve && (*vs == ' ' || *vs == '\t'))
				vs++;
			while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			ok = ns < ne;
			for (k = 0; ok && ns + k < ne; k++)
				ok = is_tchar(ns[k]);
			for (k = 0; ok && vs + k < ve; k++)
				ok = (unsigned char)vs[k] >= 0x20 || vs[k] == '\t';
			if (!ok || ieq(ns, (size_t)(ne - ns), "content-length") ||
			    ieq(ns, (size_t)(ne - ns), "transfer-encoding") ||
			    ieq(ns, (size_t)(ne - ns), "connection"))
				continue;
			if (h2 && (ieq(ns, (size_t)(ne - ns), "keep-alive") ||
				   ieq(ns, (size_t)(ne - ns), "proxy-connection") ||
				   ieq(ns, (size_t)(ne - ns), "upgrade") || ieq(ns, (size_t)(ne - ns), "te")))
				continue;
			kv[n++] = (struct hdr){ ns, vs, (size_t)(ne - ns), (size_t)(ve - vs) };
		}
	}
	for (i = 0; i < n; i++) {
		bool seen = false;

		for (j = 0; j < i && !seen; j++)
			seen = kv[j].name_len == kv[i].name_len &&
			       !strncasecmp(kv[j].name, kv[i].name, kv[i].name_len);
		if (seen)
			continue;
		*ct |= ieq(kv[i].name, kv[i].name_len, "content-type");
		f.len = 0;
		sb_putn(&f, kv[i].name, kv[i].name_len);
		if (h2)
			for (k = 0; k < f.len; k++)
				if (f.p[k] >= 'A' && f.p[k] <= 'Z')
					f.p[k] = (char)(f.p[k] - 'A' + 'a');
		if (!h2)
			sb_puts(&f, ": ");
		sb_putn(&f, kv[i].value, kv[i].value_len);
		for (j = i + 1; j < n; j++)
			if (kv[j].name_len == kv[i].name_len &&
			    !strncasecmp(kv[j].name, kv[i].name, kv[i].name_len)) {
				sb_putn(&f, ",", 1);
				sb_putn(&f, kv[j].value, kv[j].value_len);
			}
		if (h2) {
			sb_put_field(o, f.p, kv[i].name_len, f.p + kv[i].name_len,
				     f.len - kv[i].name_len);
		} else {
			sb_putn(o, f.p, f.len);
			sb_puts(o, "\r\n");
		}
	}
}

/* The status of the echo answer to target[0..n) and its ?delay= (0 if none):
 * 200; /status/NNN answers NNN; a malformed delay is a 500. */
static int echo_status(const char *target, size_t target_len, int64_t *delay_ms)
{
	int status = 200;
	char qv[64];

	*delay_ms = 0;
	if (query_get(target, target_len, "delay", qv, sizeof(qv)) > 0 &&
	    !parse_go_duration(qv, 3600 * 1000, delay_ms))
		status = 500;
	if (target_len >= 11 && memcmp(target, "/status/", 8) == 0) {
		const char *d = target + 8;
		size_t k = 0;
		int v = 0;

		while (k < 3 && k < target_len - 8 && d[k] >= '0' && d[k] <= '9')
			v = v * 10 + (d[k++] - '0');
		if (k == 3 && (target_len == 11 || d[3] == '?' || d[3] == '/'))
			status = (v >= 200 && v <= 599) ? v : 400;
	}
	return status;
}

/* The JSON echo, in the shape of the Gateway API conformance echo server. Host
 * is not among the headers (Go's net/http moves it to Request.Host). */
static void echo_body(struct sbuf *body, const struct conn *c, const char *method, size_t method_len,
		      const char *target, size_t target_len, const char *host, size_t host_len,
		      const char *proto, const struct hdr *hdrs, size_t nh)
{
	bool first = true;
	size_t i, j;

	body->len = 0;
	sb_puts(body, "{\"path\": ");
	sb_json_str(body, target, target_len);
	sb_puts(body, ", \"host\": ");
	sb_json_str(body, host, host_len);
	sb_puts(body, ", \"method\": ");
	sb_json_str(body, method, method_len);
	sb_puts(body, ", \"proto\": ");
	sb_json_str(body, proto, strlen(proto));
	sb_puts(body, ", \"headers\": {");
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
	sb_puts(body, "}, \"namespace\": ");
	sb_json_str(body, srv.ns, strlen(srv.ns));
	sb_puts(body, ", \"service\": ");
	sb_json_str(body, srv.svc, strlen(srv.svc));
	sb_puts(body, ", \"pod\": ");
	sb_json_str(body, srv.pod, srv.pod_len);
	sb_puts(body, ", \"remote\": ");
	sb_json_str(body, c->peer, c->peer_len);
	sb_puts(body, "}\n");
}

/* Parse one request head in h[0..n) (ending with the blank line) and queue the
 * response. Sets up body consumption. Returns false on a malformed request
 * (a 400 is queued and the connection will close). */
/* ---------------------------------------------------------------- WebSocket */

#define SL_ECHO_WS_FRAME	16384	/* a frame's most bytes (head included) */

/* Sec-WebSocket-Accept for a key (RFC 6455 4.2.2), 28 characters. */
static void ws_accept(const char *key, size_t kl, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char md[SHA_DIGEST_LENGTH];
	char in[256];

	if (kl > sizeof(in) - sizeof(guid))
		kl = sizeof(in) - sizeof(guid);
	memcpy(in, key, kl);
	memcpy(in + kl, guid, sizeof(guid) - 1);
	out[0] = 0;
	if (EVP_Digest(in, kl + sizeof(guid) - 1, md, NULL, EVP_sha1(), NULL))
		EVP_EncodeBlock((unsigned char *)out, md, sizeof(md));
}

/* Echo the whole client frames of in[0..n) to out as server frames (not
 * masked; opcode and FIN as they came). Returns the bytes taken; *closed
 * once a close frame went back, -1 for a frame over SL_ECHO_WS_FRAME. */
static long ws_echo(const char *in, size_t n, struct sbuf *out, bool *closed)
{
	size_t off = 0;

	while (!*closed && n - off >= 2) {
		const unsigned char *p = (const unsigned char *)in + off;
		size_t avail = n - off, hl = 2, len = p[1] & 0x7f, i;
		bool masked = p[1] & 0x80;
		unsigned char hdr[4] = { p[0], 0, 0, 0 };

		if (len == 126) {
			if (avail < 4)
				break;
			len = (size_t)p[2] << 8 | p[3];
			hl = 4;
		} else if (len == 127) {
			return -1;	/* 64-bit lengths are over the limit anyway */
		}
		hl += masked ? 4 : 0;
		if (hl + len > SL_ECHO_WS_FRAME)
			return -1;
		if (avail < hl + len)
			break;
		if (len < 126) {
			hdr[1] = (unsigned char)len;
			sb_putn(out, (const char *)hdr, 2);
		} else {
			hdr[1] = 126;
			hdr[2] = (unsigned char)(len >> 8);
			hdr[3] = (unsigned char)len;
			sb_putn(out, (const char *)hdr, 4);
		}
		sb_reserve(out, len);
		for (i = 0; i < len; i++)
			out->p[out->len + i] = (char)(p[hl + i] ^ (masked ? p[hl - 4 + (i & 3)] : 0));
		out->len += len;
		off += hl + len;
		if ((p[0] & 0x0f) == 8)
			*closed = true;
	}
	return (long)off;
}

/* MODE_WS: echo what came; close after a close frame, the client's FIN or
 * a frame too large. */
static void ws_process(struct conn *c)
{
	bool closed = false;
	long n = ws_echo(c->in + c->in_off, c->in_len - c->in_off, &c->out, &closed);

	if (n < 0 || closed || c->rd_closed) {
		c->in_off = c->in_len;
		c->want_close = true;
		return;
	}
	c->in_off += (size_t)n;
}

/* The 101 for an Upgrade: websocket (key: Sec-WebSocket-Key; proto: the
 * offered subprotocols, the first taken). */
static void ws_upgrade(struct conn *c, const char *key, size_t kl, const char *proto, size_t pl)
{
	char acc[29];

	ws_accept(key, kl, acc);
	sb_puts(&c->out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Accept: ");
	sb_puts(&c->out, acc);
	sb_puts(&c->out, "\r\n");
	if (proto) {
		sb_puts(&c->out, "Sec-WebSocket-Protocol: ");
		sb_putn(&c->out, proto, strcspn(proto, ", \t\r") < pl ? strcspn(proto, ", \t\r") : pl);
		sb_puts(&c->out, "\r\n");
	}
	sb_puts(&c->out, "\r\n");
	c->mode = MODE_WS;
}

static bool http_handle(struct conn *c, const char *h, size_t n)
{
	static struct hdr hdrs[SL_ECHO_MAX_HDRS];
	const char *line = h, *end = h + n, *eol;
	const char *method, *target, *proto, *host = "";
	size_t method_len, target_len, host_len = 0, nh = 0;
	bool keep_alive, head, chunked = false, has_len = false, v10;
	bool conn_close_tok = false, conn_keep_tok = false, expect_continue = false, ct_set;
	bool upgrade_ws = false;
	const char *ws_key = NULL, *ws_proto = NULL;
	size_t ws_key_len = 0, ws_proto_len = 0;
	uint64_t clen = 0;
	int status;
	int64_t delay_ms;
	char proto_buf[9];
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
			} else if (ieq(x->name, x->name_len, "upgrade")) {
				upgrade_ws = has_token(x->value, x->value_len, "websocket");
			} else if (ieq(x->name, x->name_len, "sec-websocket-key")) {
				ws_key = x->value;
				ws_key_len = x->value_len;
			} else if (ieq(x->name, x->name_len, "sec-websocket-protocol")) {
				ws_proto = x->value;
				ws_proto_len = x->value_len;
			}
		}
		nh++;
		line = eol + 1;
	}
	keep_alive = v10 ? conn_keep_tok && !conn_close_tok : !conn_close_tok;
	log_request(c, method, method_len, target, target_len, host, host_len);
	if (upgrade_ws && ws_key) {
		ws_upgrade(c, ws_key, ws_key_len, ws_proto, ws_proto_len);
		return false;	/* no more HTTP on it */
	}
	status = echo_status(target, target_len, &delay_ms);
	memcpy(proto_buf, proto, 8);
	proto_buf[8] = 0;
	echo_body(body, c, method, method_len, target, target_len, host, host_len, proto_buf, hdrs, nh);

	/* body framing of the request */
	c->body_len = 0;
	c->body_fnv = FNV_START;
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
	sb_puts(&c->out, "\r\n");
	put_echo_set_headers(&c->out, hdrs, nh, &ct_set, false);
	if (status != 204 && status != 304) {
		if (!ct_set)
			sb_puts(&c->out, "Content-Type: application/json\r\n");
		sb_puts(&c->out, "Content-Length: ");
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
	if (delay_ms > 0)
		conn_hold(c, now_ms() + delay_ms);
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

			c->body_fnv = fnv1a(c->body_fnv, s, k);
			c->body_len += k;
			c->in_off += k;
			c->body_left -= k;
			if (c->body_left)
				return false;
			if (c->body == BODY_LENGTH)
				log_body(c->body_len, c->body_fnv);
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
			if (ll == 0) {
				c->body = BODY_NONE;
				log_body(c->body_len, c->body_fnv);
			}
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
	while (!c->want_close && !c->held && c->out.len - c->out_off < SL_ECHO_OBUF_HIGH) {
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

/* ---------------------------------------------------------------- HTTP/2 */

/* One request stream of an HTTP/2 connection. Freed when nghttp2 closes the
 * stream, or with the connection. */
struct h2_stream {
	int32_t id;
	uint64_t body_len;		/* request DATA so far, and its FNV-1a */
	uint32_t body_fnv;
	bool too_big;			/* header fields over the limits: answered with 431 */
	bool answered;			/* the response is submitted (or waits: delayed) */
	bool delayed;			/* submitted at due (?delay=) */
	bool grpc_trailers;		/* the body ends with the gRPC trailers */
	bool ws, ws_end;		/* an extended CONNECT's echo; the client's end came */
	struct sbuf wsin;		/* ws: frames not yet whole */
	int64_t due;			/* CLOCK_MONOTONIC ms */
	size_t nfields;
	struct sbuf req;		/* request fields (sb_put_field records) */
	struct sbuf rsp;		/* response fields */
	struct sbuf trailers;		/* gRPC trailers */
	struct sbuf body;		/* response body */
	size_t body_off;		/* body.p[body_off..len) not yet handed to nghttp2 */
	struct h2_stream *prev, *next;	/* the connection's streams */
};

static void h2_stream_destroy(struct h2_stream *st)
{
	free(st->req.p);
	free(st->rsp.p);
	free(st->trailers.p);
	free(st->body.p);
	free(st->wsin.p);
	free(st);
}

/* Unlink st from its connection and free it. */
static void h2_stream_free(struct conn *c, struct h2_stream *st)
{
	if (st->prev)
		st->prev->next = st->next;
	else
		c->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	h2_stream_destroy(st);
}

/* With the connection: the session and every stream. */
static void h2_end(struct conn *c)
{
	struct h2_stream *st, *next;

	if (c->h2) {
		nghttp2_session_del(c->h2);
		c->h2 = NULL;
	}
	for (st = c->streams; st; st = next) {
		next = st->next;
		h2_stream_destroy(st);
	}
	c->streams = NULL;
}

/* Queue what nghttp2 has to send, up to the output high-water mark. */
static void h2_send(struct conn *c)
{
	while (c->out.len - c->out_off < SL_ECHO_OBUF_HIGH) {
		const uint8_t *d;
		ssize_t n = nghttp2_session_mem_send(c->h2, &d);

		if (n < 0) {
			c->want_close = true;
			c->linger = true;
		}
		if (n <= 0)
			return;
		sb_putn(&c->out, (const char *)d, (size_t)n);
	}
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
			    uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct h2_stream *st = src->ptr;
	size_t n = st->body.len - st->body_off;

	if (n > len)
		n = len;
	memcpy(buf, st->body.p + st->body_off, n);
	st->body_off += n;
	if (st->body_off == st->body.len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->grpc_trailers) {
			static nghttp2_nv nv[SL_ECHO_MAX_HDRS];
			const char *fn, *fv;
			size_t off = 0, nl, vl, k = 0;

			while (k < SL_ECHO_MAX_HDRS && sb_get_field(&st->trailers, &off, &fn, &nl, &fv, &vl))
				nv[k++] = (nghttp2_nv){ (uint8_t *)fn, (uint8_t *)fv, nl, vl, NGHTTP2_NV_FLAG_NONE };
			if (nghttp2_submit_trailer(s, id, nv, k) == 0)
				*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		}
	}
	return (ssize_t)n;
}

/* Hand the prepared response of st to nghttp2 (it copies the fields). */
static void h2_submit(struct conn *c, struct h2_stream *st)
{
	static nghttp2_nv nv[SL_ECHO_MAX_HDRS + 8];
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = h2_read_body };
	const char *fn, *fv;
	size_t off = 0, nl, vl, k = 0;

	st->delayed = false;
	while (k < SL_ECHO_MAX_HDRS + 8 && sb_get_field(&st->rsp, &off, &fn, &nl, &fv, &vl))
		nv[k++] = (nghttp2_nv){ (uint8_t *)fn, (uint8_t *)fv, nl, vl, NGHTTP2_NV_FLAG_NONE };
	nghttp2_submit_response(c->h2, st->id, nv, k,
				st->body.len || st->grpc_trailers ? &prd : NULL);
}

/* Arm the connection's timer for its earliest delayed stream. */
static void h2_rearm(struct conn *c)
{
	int64_t first = INT64_MAX;
	const struct h2_stream *st;

	for (st = c->streams; st; st = st->next)
		if (st->delayed && st->due < first)
			first = st->due;
	conn_unhold(c);
	if (first != INT64_MAX)
		conn_hold(c, first);
}

static void h2_status_field(struct sbuf *b, int status)
{
	char v[4] = { (char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
		      (char)('0' + status % 10), 0 };

	sb_put_field(b, ":status", 7, v, 3);
}

/* Protocol buffers, just what EchoResponse needs: varints and
 * length-delimited fields. */
static void pb_varint(struct sbuf *b, uint64_t v)
{
	char tmp[10];
	size_t n = 0;

	do {
		tmp[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	sb_putn(b, tmp, n);
}

/* A length-delimited field (a string, bytes or an embedded message). */
static void pb_bytes(struct sbuf *b, unsigned field, const char *s, size_t n)
{
	pb_varint(b, (uint64_t)field << 3 | 2);
	pb_varint(b, n);
	sb_putn(b, s, n);
}

/* A proto3 string field: left out when empty. */
static void pb_str(struct sbuf *b, unsigned field, const char *s, size_t n)
{
	if (n)
		pb_bytes(b, field, s, n);
}

/* grpc-message: percent-encoded outside printable ASCII, and '%' itself. */
static void grpc_message(struct sbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch <= 0x7e && ch != '%') {
			sb_putn(b, s + i, 1);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };

			sb_putn(b, e, 3);
		}
	}
}

/* Metadata the gRPC-Go server does not pass to the application. */
static bool grpc_hidden_field(const char *n, size_t nl)
{
	static const char *const hidden[] = { "host", "te", "connection", "grpc-timeout",
					      "grpc-encoding", "grpc-message-type", "grpc-message",
					      "grpc-status" };
	size_t i;

	for (i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
		if (ieq(n, nl, hidden[i]))
			return true;
	return false;
}

/* A gRPC call, answered as echo-basic's GrpcEcho server does. */
static void h2_grpc(struct h2_stream *st, const char *path, size_t path_len, const char *auth,
		    size_t auth_len, const struct hdr *hdrs, size_t nh)
{
	static const char svc[] = SL_ECHO_GRPC_SERVICE;
	static struct sbuf ctx, asrt, one, msg;
	const char *slash = NULL, *m = "";
	size_t ml = 0, i;
	int code = 12;

	msg.len = 0;
	if (path_len > 1 && path[0] == '/')
		slash = memrchr(path + 1, '/', path_len - 1);
	if (slash) {
		m = slash + 1;
		ml = (size_t)(path + path_len - m);
	}
	if (!slash || slash == path + 1) {
		sb_puts(&msg, "malformed method name: \"");
		sb_putn(&msg, path, path_len);
		sb_puts(&msg, "\"");
	} else if ((size_t)(slash - path - 1) != sizeof(svc) - 1 ||
		   memcmp(path + 1, svc, sizeof(svc) - 1)) {
		sb_puts(&msg, "unknown service ");
		sb_putn(&msg, path + 1, (size_t)(slash - path - 1));
	} else if ((ml == 4 && !memcmp(m, "Echo", 4)) || (ml == 7 && !memcmp(m, "EchoTwo", 7))) {
		code = 0;
	} else if (ml == 9 && !memcmp(m, "EchoThree", 9)) {
		sb_puts(&msg, "method EchoThree not implemented");
	} else {
		sb_puts(&msg, "unknown method ");
		sb_putn(&msg, m, ml);
		sb_puts(&msg, " for service " SL_ECHO_GRPC_SERVICE);
	}

	h2_status_field(&st->rsp, 200);
	sb_put_field(&st->rsp, "content-type", 12, "application/grpc", 16);
	if (code) {
		/* trailers only */
		sb_put_field(&st->rsp, "grpc-status", 11, "12", 2);
		one.len = 0;
		grpc_message(&one, msg.p, msg.len);
		sb_put_field(&st->rsp, "grpc-message", 12, one.p, one.len);
		return;
	}

	/* EchoResponse { Assertions assertions = 1 { string fully_qualified_method = 1;
	 * repeated Header headers = 2 { key = 1; value = 2 }; string authority = 3;
	 * Context context = 4 { namespace = 1; ingress = 2; service_name = 3; pod = 4 } } } */
	ctx.len = asrt.len = 0;
	pb_str(&ctx, 1, srv.ns, strlen(srv.ns));
	pb_str(&ctx, 3, srv.svc, strlen(srv.svc));
	pb_str(&ctx, 4, srv.pod, srv.pod_len);
	pb_str(&asrt, 1, path, path_len);
	if (auth_len) {
		one.len = 0;
		pb_str(&one, 1, ":authority", 10);
		pb_str(&one, 2, auth, auth_len);
		pb_bytes(&asrt, 2, one.p, one.len);
	}
	for (i = 0; i < nh; i++) {
		if (grpc_hidden_field(hdrs[i].name, hdrs[i].name_len))
			continue;
		one.len = 0;
		pb_str(&one, 1, hdrs[i].name, hdrs[i].name_len);
		pb_str(&one, 2, hdrs[i].value, hdrs[i].value_len);
		pb_bytes(&asrt, 2, one.p, one.len);
	}
	pb_str(&asrt, 3, auth, auth_len);
	pb_bytes(&asrt, 4, ctx.p, ctx.len);
	one.len = 0;
	pb_bytes(&one, 1, asrt.p, asrt.len);
	/* the message, length-prefixed: not compressed, u32 length (big-endian) */
	st->body.len = 0;
	sb_reserve(&st->body, 5 + one.len);
	st->body.p[0] = 0;
	st->body.p[1] = (char)(one.len >> 24);
	st->body.p[2] = (char)(one.len >> 16);
	st->body.p[3] = (char)(one.len >> 8);
	st->body.p[4] = (char)one.len;
	st->body.len = 5;
	sb_putn(&st->body, one.p, one.len);
	sb_put_field(&st->trailers, "grpc-status", 11, "0", 1);
	st->grpc_trailers = true;
}

/* Is this content-type gRPC's (application/grpc, application/grpc+proto, ...)? */
static bool is_grpc_type(const char *v, size_t n)
{
	return n >= 16 && !strncasecmp(v, "application/grpc", 16) &&
	       (n == 16 || v[16] == '+' || v[16] == ';');
}

/* The request on st is complete: prepare its answer and submit it, now or
 * when its delay is over. */
static void h2_answer(struct conn *c, struct h2_stream *st)
{
	static struct hdr hdrs[SL_ECHO_MAX_HDRS];
	const char *method = "", *path = "", *auth = NULL, *host = "", *fn, *fv;
	size_t method_len = 0, path_len = 0, auth_len = 0, host_len = 0, nh = 0, off = 0, nl, vl;
	bool grpc = false, ct_set;
	int64_t delay_ms;
	int status;

	st->answered = true;
	while (sb_get_field(&st->req, &off, &fn, &nl, &fv, &vl)) {
		if (nl && fn[0] == ':') {
			if (ieq(fn, nl, ":method")) {
				method = fv;
				method_len = vl;
			} else if (ieq(fn, nl, ":path")) {
				path = fv;
				path_len = vl;
			} else if (ieq(fn, nl, ":authority")) {
				auth = fv;
				auth_len = vl;
			}
			continue;
		}
		if (nh == SL_ECHO_MAX_HDRS)
			break;
		hdrs[nh++] = (struct hdr){ fn, fv, nl, vl };
		if (ieq(fn, nl, "host")) {
			host = fv;
			host_len = vl;
		} else if (ieq(fn, nl, "content-type")) {
			grpc = is_grpc_type(fv, vl);
		}
	}
	if (!auth) {
		auth = host;
		auth_len = host_len;
	}
	log_request(c, method, method_len, path, path_len, auth, auth_len);

	if (st->too_big) {
		h2_status_field(&st->rsp, 431);
		h2_submit(c, st);
		return;
	}
	if (grpc) {
		h2_grpc(st, path, path_len, auth, auth_len, hdrs, nh);
		h2_submit(c, st);
		return;
	}
	status = echo_status(path, path_len, &delay_ms);
	echo_body(&st->body, c, method, method_len, path, path_len, auth, auth_len, "HTTP/2.0",
		  hdrs, nh);
	h2_status_field(&st->rsp, status);
	put_echo_set_headers(&st->rsp, hdrs, nh, &ct_set, true);
	if (status == 204 || status == 304) {
		st->body.len = 0;
	} else {
		char cl[24];
		int n = snprintf(cl, sizeof(cl), "%zu", st->body.len);

		if (!ct_set)
			sb_put_field(&st->rsp, "content-type", 12, "application/json", 16);
		sb_put_field(&st->rsp, "content-length", 14, cl, (size_t)n);
		if (ieq(method, method_len, "HEAD"))
			st->body.len = 0;
	}
	if (delay_ms > 0) {
		st->delayed = true;
		st->due = now_ms() + delay_ms;
		h2_rearm(c);
		return;
	}
	h2_submit(c, st);
}

static int h2_on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct conn *c = ud;
	struct h2_stream *st;

	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	st->id = f->hd.stream_id;
	st->next = c->streams;
	if (c->streams)
		c->streams->prev = st;
	c->streams = st;
	nghttp2_session_set_stream_user_data(s, st->id, st);
	return 0;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
			size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct h2_stream *st;

	/* request trailers are not echoed */
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (!st || st->too_big)
		return 0;
	if (st->nfields == SL_ECHO_MAX_HDRS || st->req.len + nl + vl > SL_ECHO_H2_HDR_BYTES) {
		st->too_big = true;
		return 0;
	}
	sb_put_field(&st->req, (const char *)name, nl, (const char *)value, vl);
	st->nfields++;
	return 0;
}

/* The WebSocket stream's echo, as it is made; its end after the client's. */
static ssize_t h2_ws_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			  nghttp2_data_source *src, void *ud)
{
	struct h2_stream *st = src->ptr;
	size_t n = st->body.len - st->body_off;

	if (n > len)
		n = len;
	memcpy(buf, st->body.p + st->body_off, n);
	st->body_off += n;
	if (st->body_off == st->body.len) {
		st->body.len = st->body_off = 0;
		if (st->ws_end)
			*flags |= NGHTTP2_DATA_FLAG_EOF;
		else if (!n)
			return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

/* Is st an extended CONNECT for a WebSocket (RFC 8441)? */
static bool h2_is_ws(const struct h2_stream *st)
{
	const char *fn, *fv;
	size_t off = 0, nl, vl;
	bool connect = false, ws = false;

	while (sb_get_field(&st->req, &off, &fn, &nl, &fv, &vl)) {
		connect |= ieq(fn, nl, ":method") && ieq(fv, vl, "CONNECT");
		ws |= ieq(fn, nl, ":protocol") && ieq(fv, vl, "websocket");
	}
	return connect && ws;
}

/* Its 200, then the echo (h2_on_data feeds it). */
static void h2_ws_open(struct conn *c, struct h2_stream *st)
{
	nghttp2_nv nv[] = { { (uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE },
			    { (uint8_t *)"sec-websocket-protocol", NULL, 22, 0, NGHTTP2_NV_FLAG_NONE } };
	nghttp2_data_provider prd = { .source.ptr = st, .read_callback = h2_ws_read };
	const char *fn, *fv, *path = "", *auth = "";
	size_t off = 0, nl, vl, path_len = 0, auth_len = 0;

	while (sb_get_field(&st->req, &off, &fn, &nl, &fv, &vl)) {
		if (ieq(fn, nl, "sec-websocket-protocol")) {
			/* the first one offered (fv lives as long as st->req) */
			size_t k = 0;

			while (k < vl && fv[k] != ',' && fv[k] != ' ' && fv[k] != '\t')
				k++;
			memcpy(&nv[1].value, &fv, sizeof(fv));
			nv[1].valuelen = k;
		} else if (ieq(fn, nl, ":path")) {
			path = fv;
			path_len = vl;
		} else if (ieq(fn, nl, ":authority")) {
			auth = fv;
			auth_len = vl;
		}
	}
	log_request(c, "CONNECT", 7, path, path_len, auth, auth_len);
	st->ws = st->answered = true;
	nghttp2_submit_response(c->h2, st->id, nv, nv[1].value ? 2 : 1, &prd);
}

/* A WebSocket stream's DATA: echoed frame by frame. */
static void h2_ws_data(struct conn *c, struct h2_stream *st, const uint8_t *data, size_t len)
{
	bool closed = false;
	long n;

	sb_putn(&st->wsin, (const char *)data, len);
	n = ws_echo(st->wsin.p, st->wsin.len, &st->body, &closed);
	if (n < 0) {
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
		return;
	}
	memmove(st->wsin.p, st->wsin.p + n, st->wsin.len - (size_t)n);
	st->wsin.len -= (size_t)n;
	st->ws_end |= closed;
	nghttp2_session_resume_data(c->h2, st->id);
}

static int h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2_stream *st;

	st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (st && !st->answered && f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST &&
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) && h2_is_ws(st))
		h2_ws_open(ud, st);
	if (st && st->ws) {
		if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
			st->ws_end = true;
			nghttp2_session_resume_data(s, st->id);
		}
		return 0;
	}
	if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (st && st->body_len)
		log_body(st->body_len, st->body_fnv);
	if (st && !st->answered)
		h2_answer(ud, st);
	return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

	(void)flags;
	if (st && st->ws) {
		h2_ws_data(ud, st, data, len);
		return 0;
	}
	if (st) {
		if (!st->body_len)
			st->body_fnv = FNV_START;
		st->body_fnv = fnv1a(st->body_fnv, (const char *)data, len);
		st->body_len += len;
	}
	return 0;
}

static int h2_on_stream_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
	struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);

	if (st) {
		bool was_delayed = st->delayed;

		nghttp2_session_set_stream_user_data(s, id, NULL);
		h2_stream_free(ud, st);
		if (was_delayed)
			h2_rearm(ud);
	}
	return 0;
}

/* The connection starts with the client preface: speak HTTP/2. */
static bool h2_start(struct conn *c)
{
	static nghttp2_session_callbacks *cbs;
	static const nghttp2_settings_entry settings[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, SL_ECHO_H2_STREAMS },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, SL_ECHO_H2_HDR_BYTES * 2 },
		{ NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 },	/* WebSocket (RFC 8441) */
	};

	if (!cbs) {
		if (nghttp2_session_callbacks_new(&cbs))
			return false;
		nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, h2_on_begin_headers);
		nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_on_frame_recv);
		nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data);
		nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_stream_close);
	}
	if (nghttp2_session_server_new(&c->h2, cbs, c))
		return false;
	c->mode = MODE_H2;
	nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, settings,
				sizeof(settings) / sizeof(settings[0]));
	return true;
}

/* Feed the input to nghttp2 and queue its output. */
static void h2_process(struct conn *c)
{
	if (c->in_off < c->in_len && !c->want_close) {
		ssize_t r = nghttp2_session_mem_recv(c->h2, (const uint8_t *)c->in + c->in_off,
						     c->in_len - c->in_off);

		c->in_off = c->in_len;
		if (r < 0) {
			/* a connection error: GOAWAY (if nghttp2 has not sent one) and close */
			nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR);
			h2_send(c);
			c->want_close = true;
			c->linger = true;
			return;
		}
	}
	h2_send(c);
	if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
		c->want_close = true;
}

/* The connection's timer: submit the answers whose delay is over. */
static void h2_timer(struct conn *c)
{
	int64_t now = now_ms();
	struct h2_stream *st;

	for (st = c->streams; st; st = st->next)
		if (st->delayed && st->due <= now)
			h2_submit(c, st);
	h2_rearm(c);
	h2_send(c);
}

static void conn_process(struct conn *c)
{
	if (c->mode == MODE_UNKNOWN) {
		const char *s = c->in + c->in_off;
		size_t n = c->in_len - c->in_off;
		const char *nl = memchr(s, '\n', n);

		if (n && !memcmp(s, SL_ECHO_H2_PREFACE,
				 n < SL_ECHO_H2_PREFACE_LEN ? n : SL_ECHO_H2_PREFACE_LEN)) {
			/* (a prefix of) the HTTP/2 client preface */
			if (n >= SL_ECHO_H2_PREFACE_LEN && srv.only == 1) {
				c->want_close = true;	/* --only http1 */
				c->in_off = c->in_len;
				return;
			}
			if (n >= SL_ECHO_H2_PREFACE_LEN) {
				if (!h2_start(c)) {
					c->want_close = true;
					c->in_off = c->in_len;
					return;
				}
			} else if (!c->rd_closed) {
				return;
			} else {
				c->mode = MODE_LINE;
			}
		} else if (n && srv.only == 2) {
			c->want_close = true;	/* --only h2c */
			c->in_off = c->in_len;
			return;
		} else if (nl) {
			c->mode = looks_like_request_line(s, (size_t)(nl - s)) ? MODE_HTTP : MODE_LINE;
		} else if (c->rd_closed || c->in_len == sizeof(c->in) || !may_be_http(s, n)) {
			c->mode = MODE_LINE;
		} else {
			return;
		}
	}
	if (c->mode == MODE_H2)
		h2_process(c);
	else if (c->mode == MODE_HTTP)
		http_process(c);
	else if (c->mode != MODE_WS)
		line_process(c);
	if (c->mode == MODE_WS)	/* (also right after the 101: what came with it) */
		ws_process(c);
}

/* Write queued output. Returns false when the connection was closed. */
static bool conn_flush(struct conn *c)
{
	if (c->held && c->mode != MODE_H2)
		return true;	/* an answer waits for its delay */
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

	if ((c->held && c->mode != MODE_H2) || (c->held && c->rd_closed && !pending)) {
		/* Out of the epoll set until the timer releases it (input waits
		 * in the socket; a level-triggered interest would spin). An
		 * HTTP/2 connection with delayed streams stays in it, unless
		 * the client has stopped sending. */
		if (c->events && epoll_ctl(srv.ep, EPOLL_CTL_DEL, c->it.fd, NULL) < 0) {
			conn_close(c);
			return;
		}
		c->events = 0;
		return;
	}
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
		if (r == 0 || (size_t)r < room || c->want_close || (c->held && c->mode != MODE_H2) ||
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

/* A held answer's delay is over: send it, go on with what the client sent since. */
static void conn_release(struct conn *c)
{
	if (c->mode == MODE_H2) {
		h2_timer(c);
		if (conn_flush(c))
			conn_settle(c);
		return;
	}
	conn_unhold(c);
	if (!conn_flush(c))
		return;
	if (c->in_off < c->in_len && !c->want_close) {
		conn_process(c);
		if (!conn_flush(c))
			return;
	}
	conn_settle(c);
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
		/* output drained: continue with input that was held back (HTTP/2:
		 * and with what nghttp2 has still to send) */
		if (c->out.len == 0 && (c->in_off < c->in_len || c->mode == MODE_H2) &&
		    !c->want_close) {
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
	srv.svc = "";
	for (a = 0; a < argc; a++) {
		const char *o = argv[a];

		if (a + 1 >= argc)
			die("serve: option %s needs a value", o);
		if (!strcmp(o, "--pod"))
			srv.pod = argv[++a];
		else if (!strcmp(o, "--namespace"))
			srv.ns = argv[++a];
		else if (!strcmp(o, "--service"))
			srv.svc = argv[++a];
		else if (!strcmp(o, "--tcp") && ntcp < SL_ECHO_MAX_LISTEN)
			tcp[ntcp++] = (unsigned)num(argv[++a], "tcp port", 1, 65535);
		else if (!strcmp(o, "--udp") && nudp < SL_ECHO_MAX_LISTEN)
			udp[nudp++] = (unsigned)num(argv[++a], "udp port", 1, 65535);
		else if (!strcmp(o, "--ready-file"))
			ready = argv[++a];
		else if (!strcmp(o, "--only") && !strcmp(argv[a + 1], "http1"))
			srv.only = 1, a++;
		else if (!strcmp(o, "--only") && !strcmp(argv[a + 1], "h2c"))
			srv.only = 2, a++;
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
		int timeout = srv.linger_head ? 500 : -1, n, k;
		struct conn *c, *next;

		if (srv.held_head) {
			int64_t now = now_ms(), first = INT64_MAX;

			for (c = srv.held_head; c; c = c->hnext)
				if (c->hold_until < first)
					first = c->hold_until;
			first = first > now ? first - now : 0;
			if (timeout < 0 || first < timeout)
				timeout = (int)first;
		}
		n = epoll_wait(srv.ep, evs, 256, timeout);
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
		if (srv.held_head) {
			int64_t now = now_ms();

			for (c = srv.held_head; c; c = next) {
				next = c->hnext;
				if (c->hold_until <= now)
					conn_release(c);
			}
		}
		if (srv.linger_head) {
			int64_t now = now_ms();

			while (srv.linger_head && srv.linger_head->linger_until <= now)
				conn_close(srv.linger_head);
		}
		if (srv.log.len)
			log_flush();
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
	num(port, "port", 1, 65535);
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
				count = num(argv[++a], "count", 1, 10000000);
			else if (!strcmp(o, "--timeout-ms"))
				timeout_ms = (int)num(argv[++a], "timeout", 1, 3600000);
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
				duration = num(argv[++a], "duration", 1, 24L * 3600 * 1000);
			else if (!strcmp(o, "--interval-ms"))
				interval = num(argv[++a], "interval", 1, 3600000);
			else if (!strcmp(o, "--timeout-ms"))
				timeout_ms = (int)num(argv[++a], "timeout", 1, 3600000);
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
	fputs("usage: sl-echo serve --pod NAME --namespace NS [--service NAME] [--tcp PORT]...\n"
	      "                     [--udp PORT]... [--ready-file PATH] [--only http1|h2c]\n"
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
