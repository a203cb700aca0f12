// SPDX-License-Identifier: Apache-2.0
/* sl-h2c - one HTTP/2 request with prior knowledge, for the lab's tests
 * (libc, libnghttp2, OpenSSL).
 *
 *   sl-h2c [--timeout-ms N] [--method M] [--header k:v]... [--authority A]
 *          [--data TEXT] [--grpc SERVICE/METHOD] [--websocket TEXT] [--cacert FILE]
 *          [--sni NAME] URL
 *
 * URL is http://host[:port][/path?query] (h2c: the client preface right after
 * the TCP handshake) or https://... (TLS offering ALPN h2; without --cacert
 * the server's certificate is not verified; with it, the chain must verify
 * against FILE and the certificate must be for the SNI name, else the URL's
 * host). --sni NAME sends that SNI (default: the URL's host unless it is an
 * address; --sni '' sends none). Host [v6] addresses are fine.
 *
 * The request: :method (--method, default GET, POST with --grpc or --data),
 * :scheme, :authority (--authority, else a Host given with --header, else the
 * URL's host[:port]), :path (the URL's, or /SERVICE/METHOD with --grpc), then
 * every --header in order, names lower-cased (Host becomes :authority;
 * connection-specific fields are left out; "k:" sends an empty value). --grpc
 * sends content-type application/grpc, te: trailers and one empty EchoRequest
 * (a 5-byte gRPC message). --websocket TEXT opens a WebSocket over HTTP/2
 * (RFC 8441): it waits for the server's SETTINGS, and unless they say
 * ENABLE_CONNECT_PROTOCOL=1 it fails (exit 1) without a request; else it
 * sends an extended CONNECT (:method CONNECT, :protocol websocket,
 * sec-websocket-version: 13) and, once a 2xx came, one masked text frame
 * with TEXT, a close frame (1000) and END_STREAM. The whole exchange is
 * bounded by --timeout-ms (default 5000).
 *
 * Prints one JSON object on stdout:
 *   {"status": 200, "headers": {"name": ["value", ...]}, "trailers": {...},
 *    "body": "<text>", "body_len": N, "body_truncated": false}
 * header names as received (lower case); body bytes that are not UTF-8 are
 * U+FFFD; bodies are kept up to 4 MiB; with --websocket the body is the
 * frames that came back, not printed (see body_len), decoded into
 *   "ws_text": "<the text frames' payloads>", "ws_close": true|false
 * (a close frame came); the body of a gRPC answer
 * (content-type application/grpc) is not printed ("", see body_len), its
 * message is decoded into grpc_response. With --grpc also
 *   "grpc_status": N, "grpc_status_name": "OK", "grpc_message": "...",
 *   "grpc_status_from": "trailers"|"headers"|"http"|"missing",
 *   "grpc_response": {"assertions": {"fully_qualified_method": "...",
 *       "headers": [{"key": k, "value": v}, ...], "authority": "...",
 *       "context": {"namespace", "ingress", "service_name", "pod"},
 *       "tls_assertions": null | {"version", "negotiated_protocol",
 *                                 "server_name", "cipher_suite",
 *                                 "peer_certificates": [...]}},
 *     "request": null | {}} | null,
 *   "grpc_response_error": null | "..."
 * grpc_status is what a gRPC-Go client reports: grpc-status from the trailers
 * (or a trailers-only answer); with no gRPC answer (HTTP status not 200, or a
 * content-type that is not application/grpc) the HTTP status mapped as gRPC-Go
 * maps it (404 -> 12 UNIMPLEMENTED, 429/502/503/504 -> 14, 400 -> 13,
 * 401 -> 16, 403 -> 7, else 2); 13 when a gRPC answer has no grpc-status.
 * grpc_response decodes the first response message as the conformance echo
 * server's EchoResponse (conformance/echo-basic/grpcecho.proto).
 *
 * Exit 0 when a complete answer came back (whatever its status), 1 on a
 * connection, TLS or protocol error, a reset stream or a timeout (a message on
 * stderr), 2 on a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define H2C_MAX_HEADERS	128
#define H2C_MAX_BODY	(4 * 1024 * 1024)
#define H2C_MAX_PB_HDRS	512
#define H2C_MAX_PB_CERTS	16

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fputs("sl-h2c: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage(FILE *f)
{
	fputs("usage: sl-h2c [--timeout-ms N] [--method M] [--header k:v]... [--authority A]\n"
	      "              [--data TEXT] [--grpc SERVICE/METHOD] [--websocket TEXT] [--cacert FILE]\n"
	      "              [--sni NAME] URL\n",
	      f);
}

static void usage_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("sl-h2c: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	exit(2);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Growable byte buffer; all-zero is empty. */
struct buf {
	char *p;
	size_t len, cap;
};

static void buf_put(struct buf *b, const void *s, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *p;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			fail("out of memory");
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* A header field as a record: u32 name length, u32 value length, name, value. */
static void field_put(struct buf *b, const char *n, size_t nl, const char *v, size_t vl)
{
	uint32_t l[2] = { (uint32_t)nl, (uint32_t)vl };

	buf_put(b, l, sizeof(l));
	buf_put(b, n, nl);
	buf_put(b, v, vl);
}

static bool field_get(const struct buf *b, size_t *off, const char **n, size_t *nl, const char **v,
		      size_t *vl)
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

/* The value of the last field called name, or NULL. */
static const char *field_find(const struct buf *b, const char *name, size_t *vl_out)
{
	const char *n, *v, *found = NULL;
	size_t off = 0, nl, vl;

	while (field_get(b, &off, &n, &nl, &v, &vl))
		if (nl == strlen(name) && !strncasecmp(n, name, nl)) {
			found = v;
			*vl_out = vl;
		}
	return found;
}

/* ---------------------------------------------------------------- JSON */

/* s[0..n) as a JSON string: UTF-8 kept, invalid bytes as U+FFFD. */
static void json_str(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;

	putchar('"');
	while (p < end) {
		unsigned char c = *p;
		size_t len = 0, i;
		uint32_t cp = 0;

		if (c < 0x80) {
			if (c == '"' || c == '\\')
				printf("\\%c", c);
			else if (c == '\n')
				fputs("\\n", stdout);
			else if (c == '\r')
				fputs("\\r", stdout);
			else if (c == '\t')
				fputs("\\t", stdout);
			else if (c < 0x20 || c == 0x7f)
				printf("\\u%04x", c);
			else
				putchar(c);
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		}
		for (i = 1; len && i < len; i++) {
			if (p + i >= end || (p[i] & 0xc0) != 0x80) {
				len = 0;
				break;
			}
			cp = cp << 6 | (p[i] & 0x3f);
		}
		/* overlong, surrogate or out of range */
		if (len && ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
			    (cp >= 0xd800 && cp <= 0xdfff)))
			len = 0;
		if (!len) {
			fputs("\\ufffd", stdout);
			p++;
			continue;
		}
		fwrite(p, 1, len, stdout);
		p += len;
	}
	putchar('"');
}

static void json_cstr(const char *s)
{
	json_str(s, strlen(s));
}

/* Fields as {"name": ["value", ...]}, names in order of first appearance. */
static void json_fields(const struct buf *b)
{
	const char *n, *v, *n2, *v2;
	size_t off = 0, nl, vl, nl2, vl2;
	bool first = true;

	putchar('{');
	for (;;) {
		size_t o2 = 0, here = off;
		bool seen = false, f2 = true;

		if (!field_get(b, &off, &n, &nl, &v, &vl))
			break;

		if (nl && n[0] == ':')
			continue;
		while (o2 < here && field_get(b, &o2, &n2, &nl2, &v2, &vl2))
			if (nl2 == nl && !strncasecmp(n2, n, nl))
				seen = true;
		if (seen)
			continue;
		if (!first)
			fputs(", ", stdout);
		first = false;
		json_str(n, nl);
		fputs(": [", stdout);
		o2 = here;
		while (field_get(b, &o2, &n2, &nl2, &v2, &vl2)) {
			if (nl2 != nl || strncasecmp(n2, n, nl))
				continue;
			if (!f2)
				fputs(", ", stdout);
			f2 = false;
			json_str(v2, vl2);
		}
		putchar(']');
	}
	putchar('}');
}

/* ---------------------------------------------------------------- gRPC */

static const char *grpc_code_name(int code)
{
	static const char *const names[] = {
		"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
		"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
		"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
		"Unauthenticated",
	};

	return code >= 0 && code < (int)(sizeof(names) / sizeof(names[0])) ? names[code] : "Code";
}

/* gRPC-Go's HTTPStatusConvTab. */
static int grpc_code_of_http(int status)
{
	switch (status) {
	case 400: return 13;
	case 401: return 16;
	case 403: return 7;
	case 404: return 12;
	case 429: case 502: case 503: case 504: return 14;
	default: return 2;
	}
}

static bool is_grpc_type(const char *v, size_t n)
{
	return v && n >= 16 && !strncasecmp(v, "application/grpc", 16) &&
	       (n == 16 || v[16] == '+' || v[16] == ';');
}

static int hexval(char ch)
{
	return ch >= '0' && ch <= '9' ? ch - '0' :
	       ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 :
	       ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* grpc-message, percent-decoded. */
static void grpc_message_decode(struct buf *o, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char ch = s[i];

		if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
			ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		}
		buf_put(o, &ch, 1);
	}
}

/* A protobuf reader: enough to walk fields and take strings and messages. */
struct pbr {
	const unsigned char *p, *end;
};

static bool pb_varint(struct pbr *r, uint64_t *v)
{
	unsigned shift = 0;

	*v = 0;
	while (r->p < r->end && shift < 64) {
		unsigned char b = *r->p++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
		shift += 7;
	}
	return false;
}

/* The next field: its number and, when length-delimited, its bytes (*len is
 * SIZE_MAX for the other wire types, which are skipped). 1 ok, 0 at the end,
 * -1 malformed. */
static int pb_next(struct pbr *r, unsigned *field, const char **data, size_t *len)
{
	uint64_t key, v;

	if (r->p == r->end)
		return 0;
	if (!pb_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
		return -1;
	*field = (unsigned)(key >> 3);
	*len = SIZE_MAX;
	switch (key & 7) {
	case 0:
		return pb_varint(r, &v) ? 1 : -1;
	case 1:
		if (r->end - r->p < 8)
			return -1;
		r->p += 8;
		return 1;
	case 5:
		if (r->end - r->p < 4)
			return -1;
		r->p += 4;
		return 1;
	case 2:
		if (!pb_varint(r, &v) || v > (uint64_t)(r->end - r->p))
			return -1;
		*data = (const char *)r->p;
		*len = (size_t)v;
		r->p += v;
		return 1;
	default:
		return -1;
	}
}

struct str {
	const char *p;
	size_t n;
};

struct echo_response {
	bool has_assertions, has_request, has_tls;
	struct str fqm, authority;
	struct str hkey[H2C_MAX_PB_HDRS], hval[H2C_MAX_PB_HDRS];
	size_t nh;
	struct str ctx[4];		/* namespace, ingress, service_name, pod */
	struct str tls[4];		/* version, negotiated_protocol, server_name, cipher_suite */
	struct str certs[H2C_MAX_PB_CERTS];
	size_t ncerts;
};

/* The string fields 1..nf of a message into out[0..nf). */
static bool pb_strings(const char *d, size_t n, struct str *out, unsigned nf)
{
	struct pbr r = { (const unsigned char *)d, (const unsigned char *)d + n };
	unsigned f;
	const char *x = NULL;
	size_t l;
	int rc;

	while ((rc = pb_next(&r, &f, &x, &l)) > 0)
		if (f >= 1 && f <= nf && l != SIZE_MAX)
			out[f - 1] = (struct str){ x, l };
	return rc == 0;
}

static bool decode_assertions(const char *d, size_t n, struct echo_response *er)
{
	struct pbr r = { (const unsigned char *)d, (const unsigned char *)d + n };
	unsigned f;
	const char *x = NULL;
	size_t l;
	int rc;

	while ((rc = pb_next(&r, &f, &x, &l)) > 0) {
		if (l == SIZE_MAX)
			continue;
		switch (f) {
		case 1:
			er->fqm = (struct str){ x, l };
			break;
		case 2: {
			struct str kv[2] = { { "", 0 }, { "", 0 } };

			if (!pb_strings(x, l, kv, 2))
				return false;
			if (er->nh < H2C_MAX_PB_HDRS) {
				er->hkey[er->nh] = kv[0];
				er->hval[er->nh++] = kv[1];
			}
			break;
		}
		case 3:
			er->authority = (struct str){ x, l };
			break;
		case 4:
			if (!pb_strings(x, l, er->ctx, 4))
				return false;
			break;
		case 5: {
			struct pbr t = { (const unsigned char *)x, (const unsigned char *)x + l };
			const char *y = NULL;
			unsigned g;
			size_t m;
			int rc2;

			er->has_tls = true;
			while ((rc2 = pb_next(&t, &g, &y, &m)) > 0) {
				if (m == SIZE_MAX)
					continue;
				if (g >= 1 && g <= 4)
					er->tls[g - 1] = (struct str){ y, m };
				else if (g == 5 && er->ncerts < H2C_MAX_PB_CERTS)
					er->certs[er->ncerts++] = (struct str){ y, m };
			}
			if (rc2 < 0)
				return false;
			break;
		}
		default:
			break;
		}
	}
	return rc == 0;
}

static bool decode_echo_response(const char *d, size_t n, struct echo_response *er)
{
	struct pbr r = { (const unsigned char *)d, (const unsigned char *)d + n };
	unsigned f;
	const char *x = NULL;
	size_t l, i;
	int rc;

	memset(er, 0, sizeof(*er));
	er->fqm = er->authority = (struct str){ "", 0 };
	for (i = 0; i < 4; i++)
		er->ctx[i] = er->tls[i] = (struct str){ "", 0 };
	while ((rc = pb_next(&r, &f, &x, &l)) > 0) {
		if (l == SIZE_MAX)
			continue;
		if (f == 1) {
			er->has_assertions = true;
			if (!decode_assertions(x, l, er))
				return false;
		} else if (f == 2) {
			er->has_request = true;
		}
	}
	return rc == 0;
}

static void json_echo_response(const struct echo_response *er)
{
	static const char *const ctx_names[] = { "namespace", "ingress", "service_name", "pod" };
	static const char *const tls_names[] = { "version", "negotiated_protocol", "server_name",
						 "cipher_suite" };
	size_t i;

	fputs("{\"assertions\": ", stdout);
	if (!er->has_assertions) {
		fputs("null", stdout);
	} else {
		fputs("{\"fully_qualified_method\": ", stdout);
		json_str(er->fqm.p, er->fqm.n);
		fputs(", \"headers\": [", stdout);
		for (i = 0; i < er->nh; i++) {
			fputs(i ? ", {\"key\": " : "{\"key\": ", stdout);
			json_str(er->hkey[i].p, er->hkey[i].n);
			fputs(", \"value\": ", stdout);
			json_str(er->hval[i].p, er->hval[i].n);
			putchar('}');
		}
		fputs("], \"authority\": ", stdout);
		json_str(er->authority.p, er->authority.n);
		fputs(", \"context\": {", stdout);
		for (i = 0; i < 4; i++) {
			printf("%s\"%s\": ", i ? ", " : "", ctx_names[i]);
			json_str(er->ctx[i].p, er->ctx[i].n);
		}
		fputs("}, \"tls_assertions\": ", stdout);
		if (!er->has_tls) {
			fputs("null", stdout);
		} else {
			putchar('{');
			for (i = 0; i < 4; i++) {
				printf("%s\"%s\": ", i ? ", " : "", tls_names[i]);
				json_str(er->tls[i].p, er->tls[i].n);
			}
			fputs(", \"peer_certificates\": [", stdout);
			for (i = 0; i < er->ncerts; i++) {
				if (i)
					fputs(", ", stdout);
				json_str(er->certs[i].p, er->certs[i].n);
			}
			fputs("]}", stdout);
		}
		putchar('}');
	}
	fputs(er->has_request ? ", \"request\": {}}" : ", \"request\": null}", stdout);
}

/* ---------------------------------------------------------------- I/O */

struct io {
	int fd;
	SSL *ssl;
	int64_t deadline;
	int timeout_ms;
};

/* Wait for ev on the socket until the deadline. */
static void io_wait(const struct io *io, short ev)
{
	for (;;) {
		struct pollfd p = { .fd = io->fd, .events = ev };
		int64_t left = io->deadline - now_ms();
		int r;

		if (left <= 0)
			fail("timed out after %d ms", io->timeout_ms);
		r = poll(&p, 1, (int)left);
		if (r > 0)
			return;
		if (r < 0 && errno != EINTR)
			fail("poll: %s", strerror(errno));
	}
}

static const char *ssl_error_text(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();

	if (!e)
		return "unexpected end of the connection";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

/* Handle a non-blocking SSL call's result: true to retry (after waiting). */
static bool ssl_retry(const struct io *io, int rc, const char *what)
{
	switch (SSL_get_error(io->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		io_wait(io, POLLIN);
		return true;
	case SSL_ERROR_WANT_WRITE:
		io_wait(io, POLLOUT);
		return true;
	case SSL_ERROR_SYSCALL:
		if (errno == EINTR)
			return true;
		fail("%s: %s", what, errno ? strerror(errno) : ssl_error_text());
	default:
		fail("%s: %s", what, ssl_error_text());
	}
}

static void io_write_all(const struct io *io, const void *p, size_t n)
{
	const char *s = p;

	while (n) {
		ssize_t w;

		if (io->ssl) {
			int rc;

			errno = 0;
			rc = SSL_write(io->ssl, s, n > INT32_MAX ? INT32_MAX : (int)n);

			if (rc <= 0) {
				ssl_retry(io, rc, "TLS write");
				continue;
			}
			w = rc;
		} else {
			w = send(io->fd, s, n, MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN)
					fail("send: %s", strerror(errno));
				io_wait(io, POLLOUT);
				continue;
			}
		}
		s += w;
		n -= (size_t)w;
	}
}

/* Read what is there (waiting for something): the byte count, 0 at EOF. */
static size_t io_read(const struct io *io, void *p, size_t n)
{
	for (;;) {
		ssize_t r;

		if (io->ssl) {
			int rc;

			errno = 0;
			rc = SSL_read(io->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);

			if (rc > 0)
				return (size_t)rc;
			if (SSL_get_error(io->ssl, rc) == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (SSL_get_error(io->ssl, rc) == SSL_ERROR_SYSCALL && errno == 0)
				return 0;	/* EOF without close_notify */
			ssl_retry(io, rc, "TLS read");
			continue;
		}
		r = recv(io->fd, p, n, 0);
		if (r >= 0)
			return (size_t)r;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			fail("recv: %s", strerror(errno));
		io_wait(io, POLLIN);
	}
}

static void tcp_connect(struct io *io, const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res, *ai;
	int rc, err = 0, one = 1;

	rc = getaddrinfo(host, port, &hints, &res);
	if (rc)
		fail("%s: %s", host, gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		socklen_t el = sizeof(err);

		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			if (errno != EINPROGRESS) {
				err = errno;
				close(fd);
				continue;
			}
			io->fd = fd;
			io_wait(io, POLLOUT);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
				err = errno;
			if (err) {
				close(fd);
				io->fd = -1;
				continue;
			}
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		io->fd = fd;
		freeaddrinfo(res);
		return;
	}
	freeaddrinfo(res);
	fail("connect to %s port %s: %s", host, port, strerror(err ? err : ECONNREFUSED));
}

static bool is_address(const char *s)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1;
}

static void tls_start(struct io *io, const char *host, const char *sni, const char *cacert)
{
	static const unsigned char alpn[] = { 2, 'h', '2' };
	const unsigned char *sel = NULL;
	unsigned sel_len = 0;
	const char *name;
	SSL_CTX *ctx;
	int rc;

	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		fail("TLS: %s", ssl_error_text());
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)))
		fail("TLS: cannot offer ALPN h2");
	if (cacert) {
		if (SSL_CTX_load_verify_locations(ctx, cacert, NULL) != 1)
			fail("%s: %s", cacert, ssl_error_text());
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	io->ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);	/* the SSL holds a reference */
	if (!io->ssl || SSL_set_fd(io->ssl, io->fd) != 1)
		fail("TLS: %s", ssl_error_text());
	if (!sni)
		sni = is_address(host) ? "" : host;
	if (*sni && SSL_set_tlsext_host_name(io->ssl, sni) != 1)
		fail("TLS: bad SNI %s", sni);
	if (cacert) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(io->ssl);

		name = *sni ? sni : host;
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (is_address(name) ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1
				     : X509_VERIFY_PARAM_set1_host(vp, name, 0) != 1)
			fail("TLS: cannot verify the name %s", name);
	}
	for (;;) {
		errno = 0;
		rc = SSL_connect(io->ssl);
		if (rc == 1)
			break;
		if (SSL_get_error(io->ssl, rc) == SSL_ERROR_SSL &&
		    SSL_get_verify_result(io->ssl) != X509_V_OK)
			fail("TLS handshake: certificate verify failed: %s",
			     X509_verify_cert_error_string(SSL_get_verify_result(io->ssl)));
		ssl_retry(io, rc, "TLS handshake");
	}
	SSL_get0_alpn_selected(io->ssl, &sel, &sel_len);
	if (sel_len && (sel_len != 2 || memcmp(sel, "h2", 2)))
		fail("TLS: the server chose ALPN %.*s, not h2", (int)sel_len, (const char *)sel);
}

/* ---------------------------------------------------------------- HTTP/2 */

struct exchange {
	int32_t sid;
	int status;			/* the final response's :status, 0 before it */
	bool end_stream;		/* the answer is complete */
	bool closed;			/* nghttp2 closed the stream */
	uint32_t close_error;
	bool in_final;			/* the final response's header block started */
	struct buf headers, trailers, body;
	bool truncated;
	const char *req_body;
	size_t req_body_len, req_body_off;
	bool ws;			/* --websocket: the body goes after a 2xx */
	bool settings;			/* the server's SETTINGS came */
};

static struct exchange ex;

static ssize_t send_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	size_t n = ex.req_body_len - ex.req_body_off;

	if (ex.ws && (ex.status < 200 || ex.status > 299))
		return NGHTTP2_ERR_DEFERRED;	/* the WebSocket is not open yet */
	if (n > len)
		n = len;
	memcpy(buf, ex.req_body + ex.req_body_off, n);
	ex.req_body_off += n;
	if (ex.req_body_off == ex.req_body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* Is this HEADERS frame (a part of) a response header block, not trailers?
 * (After a 1xx answer the final one follows.) */
static bool response_block(const nghttp2_frame *f)
{
	return f->hd.stream_id == ex.sid && f->hd.type == NGHTTP2_HEADERS &&
	       (f->headers.cat == NGHTTP2_HCAT_RESPONSE ||
		(f->headers.cat == NGHTTP2_HCAT_HEADERS && ex.status < 200));
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	if (response_block(f)) {
		ex.headers.len = 0;	/* a final response after 1xx ones */
		ex.status = 0;
	}
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	if (f->hd.stream_id != ex.sid || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (response_block(f)) {
		if (nl == 7 && !memcmp(name, ":status", 7)) {
			int st = 0;
			size_t i;

			for (i = 0; i < vl && i < 3 && value[i] >= '0' && value[i] <= '9'; i++)
				st = st * 10 + (value[i] - '0');
			ex.status = st;
		}
		field_put(&ex.headers, (const char *)name, nl, (const char *)value, vl);
	} else {
		field_put(&ex.trailers, (const char *)name, nl, (const char *)value, vl);
	}
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *ud)
{
	if (id != ex.sid)
		return 0;
	if (ex.body.len + len > H2C_MAX_BODY) {
		len = H2C_MAX_BODY - ex.body.len;
		ex.truncated = true;
	}
	buf_put(&ex.body, data, len);
	return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK))
		ex.settings = true;
	if (ex.ws && f->hd.stream_id == ex.sid && f->hd.type == NGHTTP2_HEADERS && ex.status >= 200)
		nghttp2_session_resume_data(s, ex.sid);
	if (f->hd.stream_id == ex.sid && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && ex.status >= 200)
		ex.end_stream = true;
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
	if (id == ex.sid) {
		ex.closed = true;
		ex.close_error = err;
	}
	return 0;
}

static bool skip_request_field(const char *n)
{
	static const char *const skip[] = { "connection", "keep-alive", "proxy-connection",
					    "transfer-encoding", "upgrade" };
	size_t i;

	for (i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		if (!strcasecmp(n, skip[i]))
			return true;
	return false;
}

/* Run the exchange on an open connection until the stream is closed. */
static void run(struct io *io, nghttp2_nv *nv, size_t nnv, bool with_body)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_data_provider prd = { .read_callback = send_body };
	nghttp2_session *s;
	static uint8_t in[65536];

	if (nghttp2_session_callbacks_new(&cbs))
		fail("out of memory");
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	if (nghttp2_session_client_new(&s, cbs, NULL))
		fail("out of memory");
	nghttp2_session_callbacks_del(cbs);
	{
		nghttp2_settings_entry set[] = { { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 } };

		nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, set, 1);
	}
	/* an extended CONNECT waits for the SETTINGS that allow it (RFC 8441 3) */
	ex.sid = -1;
	for (;;) {
		const uint8_t *d;
		ssize_t n;
		size_t r;

		if (ex.sid < 0 && (!ex.ws || ex.settings)) {
			if (ex.ws && nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) != 1)
				fail("the server does not take extended CONNECT (no SETTINGS_ENABLE_CONNECT_PROTOCOL)");
			ex.sid = nghttp2_submit_request(s, NULL, nv, nnv, with_body ? &prd : NULL, NULL);
			if (ex.sid < 0)
				fail("cannot submit the request: %s", nghttp2_strerror(ex.sid));
		}

		while ((n = nghttp2_session_mem_send(s, &d)) > 0)
			io_write_all(io, d, (size_t)n);
		if (n < 0)
			fail("HTTP/2: %s", nghttp2_strerror((int)n));
		if (ex.closed)
			break;
		if (!nghttp2_session_want_read(s) && !nghttp2_session_want_write(s))
			fail("HTTP/2: the connection ended before the answer");
		r = io_read(io, in, sizeof(in));
		if (r == 0)
			fail("connection closed by the server before %s",
			     ex.status >= 200 ? "the end of the answer" : "an answer");
		n = nghttp2_session_mem_recv(s, in, r);
		if (n < 0)
			fail("HTTP/2 protocol error: %s", nghttp2_strerror((int)n));
	}
	/* say goodbye (best effort) */
	if (nghttp2_session_terminate_session(s, NGHTTP2_NO_ERROR) == 0) {
		const uint8_t *d;
		ssize_t n;

		while ((n = nghttp2_session_mem_send(s, &d)) > 0)
			io_write_all(io, d, (size_t)n);
	}
	nghttp2_session_del(s);
	if (!ex.end_stream)
		fail("stream reset by the server (%s) before %s", nghttp2_http2_strerror(ex.close_error),
		     ex.status >= 200 ? "the end of the answer" : "an answer");
}

/* ---------------------------------------------------------------- WebSocket */

/* A client frame (FIN, masked: RFC 6455 5.3) of op with payload p. */
static void ws_frame(struct buf *b, unsigned char op, const char *p, size_t n)
{
	unsigned char h[8] = { (unsigned char)(0x80 | op) }, mask[4];
	size_t hl = 2;

	if (n > 65535)
		usage_fail("--websocket text too long");
	if (n < 126) {
		h[1] = (unsigned char)(0x80 | n);
	} else {
		h[1] = 0x80 | 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	}
	for (size_t i = 0; i < 4; i++)
		mask[i] = (unsigned char)(rand() & 0xff);
	buf_put(b, h, hl);
	buf_put(b, mask, 4);
	for (size_t i = 0; i < n; i++) {
		char x = (char)(p[i] ^ mask[i & 3]);

		buf_put(b, &x, 1);
	}
}

/* The server's frames (not masked): "ws_text" (the text and continuation
 * payloads) and "ws_close" (a close frame came). */
static void json_ws(const struct buf *b)
{
	struct buf text = { 0 };
	bool closed = false;
	size_t off = 0;

	while (b->p && b->len - off >= 2) {
		const unsigned char *p = (const unsigned char *)b->p + off;
		size_t hl = 2, n = p[1] & 0x7f;

		if (n == 126) {
			if (b->len - off < 4)
				break;
			n = (size_t)p[2] << 8 | p[3];
			hl = 4;
		} else if (n == 127 || (p[1] & 0x80)) {
			break;	/* not a frame this client asked for */
		}
		if (b->len - off < hl + n)
			break;
		if ((p[0] & 0x0f) == 0x1 || (p[0] & 0x0f) == 0x0)
			buf_put(&text, p + hl, n);
		closed |= (p[0] & 0x0f) == 0x8;
		off += hl + n;
	}
	fputs(", \"ws_text\": ", stdout);
	json_str(text.p ? text.p : "", text.len);
	printf(", \"ws_close\": %s", closed ? "true" : "false");
	free(text.p);
}

/* ---------------------------------------------------------------- main */

struct url {
	bool tls;
	char host[256];			/* without brackets */
	char port[8];
	char authority[300];		/* host[:port] as written */
	const char *path;
};

static void parse_url(const char *u, struct url *out)
{
	const char *a, *end, *hs, *he, *colon;
	size_t n;

	if (!strncmp(u, "http://", 7)) {
		a = u + 7;
	} else if (!strncmp(u, "https://", 8)) {
		a = u + 8;
		out->tls = true;
	} else {
		usage_fail("URL must be http://... or https://...: %s", u);
	}
	end = a + strcspn(a, "/?#");
	n = (size_t)(end - a);
	if (n == 0 || n >= sizeof(out->authority) || memchr(a, '@', n))
		usage_fail("bad host in URL %s", u);
	memcpy(out->authority, a, n);
	out->authority[n] = 0;
	if (a[0] == '[') {
		hs = a + 1;
		he = memchr(a, ']', n);
		if (!he)
			usage_fail("bad host in URL %s", u);
		colon = he + 1 < end && he[1] == ':' ? he + 1 : NULL;
		if (he + 1 < end && !colon)
			usage_fail("bad host in URL %s", u);
	} else {
		hs = a;
		colon = memchr(a, ':', n);
		he = colon ? colon : end;
	}
	if (he == hs || (size_t)(he - hs) >= sizeof(out->host))
		usage_fail("bad host in URL %s", u);
	memcpy(out->host, hs, (size_t)(he - hs));
	out->host[he - hs] = 0;
	if (colon) {
		size_t pl = (size_t)(end - colon - 1);
		char *e;
		long p;

		if (pl == 0 || pl >= sizeof(out->port))
			usage_fail("bad port in URL %s", u);
		memcpy(out->port, colon + 1, pl);
		out->port[pl] = 0;
		p = strtol(out->port, &e, 10);
		if (*e || p < 1 || p > 65535)
			usage_fail("bad port in URL %s", u);
	} else {
		strcpy(out->port, out->tls ? "443" : "80");
	}
	out->path = *end == '/' || *end == '?' ? end : "/";
	if (*end == '?') {
		/* "?q" without a path: "/?q" */
		static char pathbuf[8192];

		if (snprintf(pathbuf, sizeof(pathbuf), "/%s", end) >= (int)sizeof(pathbuf))
			usage_fail("URL too long");
		out->path = pathbuf;
	}
	if (strchr(out->path, '#'))
		usage_fail("no fragment in the URL, please: %s", u);
}

int main(int argc, char **argv)
{
	static char hname[H2C_MAX_HEADERS][256];
	static nghttp2_nv nv[H2C_MAX_HEADERS + 8];
	static const uint8_t empty_echo_request[5] = { 0, 0, 0, 0, 0 };
	const char *method = NULL, *authority = NULL, *host_hdr = NULL, *grpc = NULL, *cacert = NULL;
	const char *sni = NULL, *data = NULL, *url_arg = NULL, *hval[H2C_MAX_HEADERS], *ws = NULL;
	struct buf frames = { 0 };
	char grpc_path[1024];
	size_t nh = 0, nnv = 0, i;
	struct url url = { 0 };
	struct io io = { .fd = -1, .timeout_ms = 5000 };
	int a;

	for (a = 1; a < argc; a++) {
		const char *o = argv[a];

		if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strncmp(o, "--", 2)) {
			const char *v;

			if (a + 1 >= argc)
				usage_fail("option %s needs a value", o);
			v = argv[++a];
			if (!strcmp(o, "--timeout-ms")) {
				char *e;
				long t = strtol(v, &e, 10);

				if (*e || t < 1 || t > 3600000)
					usage_fail("bad --timeout-ms %s", v);
				io.timeout_ms = (int)t;
			} else if (!strcmp(o, "--method")) {
				method = v;
			} else if (!strcmp(o, "--header")) {
				const char *colon = strchr(v, ':');
				size_t k, nl;

				if (!colon || colon == v || (size_t)(colon - v) >= sizeof(hname[0]))
					usage_fail("bad --header %s (k:v)", v);
				if (nh == H2C_MAX_HEADERS)
					usage_fail("too many --header");
				nl = (size_t)(colon - v);
				for (k = 0; k < nl; k++)
					hname[nh][k] = (char)(v[k] >= 'A' && v[k] <= 'Z' ? v[k] - 'A' + 'a' : v[k]);
				hname[nh][nl] = 0;
				v = colon + 1;
				while (*v == ' ' || *v == '\t')
					v++;
				if (!strcmp(hname[nh], "host")) {
					host_hdr = v;
					continue;
				}
				if (skip_request_field(hname[nh]))
					continue;
				hval[nh++] = v;
			} else if (!strcmp(o, "--authority")) {
				authority = v;
			} else if (!strcmp(o, "--data")) {
				data = v;
			} else if (!strcmp(o, "--grpc")) {
				grpc = v;
			} else if (!strcmp(o, "--websocket")) {
				ws = v;
			} else if (!strcmp(o, "--cacert")) {
				cacert = v;
			} else if (!strcmp(o, "--sni")) {
				sni = v;
			} else {
				usage_fail("unknown option %s", o);
			}
		} else if (!url_arg) {
			url_arg = o;
		} else {
			usage_fail("one URL only");
		}
	}
	if (!url_arg)
		usage_fail("no URL");
	parse_url(url_arg, &url);
	if (grpc) {
		const char *sl = strchr(grpc, '/');

		if (!sl || sl == grpc || !sl[1] || strchr(sl + 1, '/'))
			usage_fail("--grpc wants SERVICE/METHOD, not %s", grpc);
		if (snprintf(grpc_path, sizeof(grpc_path), "/%s", grpc) >= (int)sizeof(grpc_path))
			usage_fail("--grpc too long");
		if (data)
			usage_fail("--data and --grpc do not go together");
	}
	if (ws && (grpc || data))
		usage_fail("--websocket goes with neither --data nor --grpc");
	if (ws)
		method = "CONNECT";
	if (!method)
		method = grpc || data ? "POST" : "GET";
	if (!authority)
		authority = host_hdr ? host_hdr : url.authority;

#define NV(n, v) (nghttp2_nv){ (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE }
	nv[nnv++] = NV(":method", method);
	if (ws)
		nv[nnv++] = NV(":protocol", "websocket");
	nv[nnv++] = NV(":scheme", url.tls ? "https" : "http");
	nv[nnv++] = NV(":authority", authority);
	nv[nnv++] = NV(":path", grpc ? grpc_path : url.path);
	if (grpc) {
		nv[nnv++] = NV("content-type", "application/grpc");
		nv[nnv++] = NV("te", "trailers");
	}
	if (ws)
		nv[nnv++] = NV("sec-websocket-version", "13");
	for (i = 0; i < nh; i++)
		if (strcmp(hname[i], "te") || !strcasecmp(hval[i], "trailers"))
			nv[nnv++] = NV(hname[i], hval[i]);
#undef NV
	if (grpc) {
		ex.req_body = (const char *)empty_echo_request;
		ex.req_body_len = sizeof(empty_echo_request);
	} else if (data) {
		ex.req_body = data;
		ex.req_body_len = strlen(data);
	} else if (ws) {
		ws_frame(&frames, 0x1, ws, strlen(ws));
		ws_frame(&frames, 0x8, "\x03\xe8", 2);	/* close, 1000 */
		ex.req_body = frames.p;
		ex.req_body_len = frames.len;
		ex.ws = true;
	}

	signal(SIGPIPE, SIG_IGN);
	io.deadline = now_ms() + io.timeout_ms;
	tcp_connect(&io, url.host, url.port);
	if (url.tls)
		tls_start(&io, url.host, sni, cacert);
	run(&io, nv, nnv, grpc || data || ws);
	if (io.ssl) {
		SSL_shutdown(io.ssl);
		SSL_free(io.ssl);
	}
	close(io.fd);

	printf("{\"status\": %d, \"headers\": ", ex.status);
	json_fields(&ex.headers);
	fputs(", \"trailers\": ", stdout);
	json_fields(&ex.trailers);
	fputs(", \"body\": ", stdout);
	{
		size_t ctl = 0;
		const char *ct = field_find(&ex.headers, "content-type", &ctl);

		if (is_grpc_type(ct, ctl) || !ex.body.p || ws)
			json_str("", 0);
		else
			json_str(ex.body.p, ex.body.len);
	}
	printf(", \"body_len\": %zu, \"body_truncated\": %s", ex.body.len,
	       ex.truncated ? "true" : "false");
	if (ws)
		json_ws(&ex.body);
	if (grpc) {
		static struct echo_response er;
		size_t ctl = 0, gsl = 0, gml = 0;
		const char *ct = field_find(&ex.headers, "content-type", &ctl);
		const char *gs = field_find(&ex.trailers, "grpc-status", &gsl), *from = "trailers";
		const char *gm = NULL, *rerr = NULL;
		struct buf msg = { 0 };
		int code = 0;

		if (ex.status != 200 || !is_grpc_type(ct, ctl)) {
			code = grpc_code_of_http(ex.status);
			from = "http";
		} else {
			if (gs) {
				gm = field_find(&ex.trailers, "grpc-message", &gml);
			} else {
				gs = field_find(&ex.headers, "grpc-status", &gsl);
				gm = field_find(&ex.headers, "grpc-message", &gml);
				from = "headers";
			}
			if (!gs) {
				code = 13;
				from = "missing";
			}
			for (i = 0; gs && i < gsl && i < 9; i++) {
				if (gs[i] < '0' || gs[i] > '9') {
					code = 2;	/* gRPC-Go: a malformed grpc-status is Unknown */
					break;
				}
				code = code * 10 + (gs[i] - '0');
			}
		}
		if (gm)
			grpc_message_decode(&msg, gm, gml);
		printf(", \"grpc_status\": %d, \"grpc_status_name\": ", code);
		json_cstr(grpc_code_name(code));
		fputs(", \"grpc_message\": ", stdout);
		json_str(msg.p ? msg.p : "", msg.len);
		fputs(", \"grpc_status_from\": ", stdout);
		json_cstr(from);
		fputs(", \"grpc_response\": ", stdout);
		if (!strcmp(from, "http")) {
			rerr = "not a gRPC answer";
		} else if (ex.body.len == 0) {
			rerr = "no response message";
		} else if (ex.body.len < 5) {
			rerr = "truncated message prefix";
		} else {
			const unsigned char *b = (const unsigned char *)ex.body.p;
			uint32_t ml = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];

			if (b[0] != 0)
				rerr = "compressed message";
			else if (ml > ex.body.len - 5)
				rerr = "truncated message";
			else if (!decode_echo_response(ex.body.p + 5, ml, &er))
				rerr = "malformed EchoResponse";
		}
		if (rerr) {
			fputs("null, \"grpc_response_error\": ", stdout);
			json_cstr(rerr);
		} else {
			json_echo_response(&er);
			fputs(", \"grpc_response_error\": null", stdout);
		}
		free(msg.p);
	}
	fputs("}\n", stdout);
	if (fflush(stdout) != 0)
		fail("stdout: %s", strerror(errno));
	return 0;
}
