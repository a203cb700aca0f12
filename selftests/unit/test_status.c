// SPDX-License-Identifier: Apache-2.0
/* test_status.c - the status socket (user/status.c) driven by a real loop in a
 * thread and talked to with real unix-socket clients; then sluicectl's tables
 * and errors against a server serving the agent's JSON shapes.
 *
 * Every client socket has 5 s send/receive timeouts, so a server bug fails a
 * test instead of hanging it. Timeouts are shrunk through status.c's test
 * hook, and waits are for events (EOF, POLLRDHUP), never sleeps.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "../lib/test.h"
#include "log.h"
#include "loop.h"
#include "status.h"

/* status.c's test hook (not in status.h). */
void status_set_limits(struct status *s, unsigned int timeout_ms, unsigned int max_conns);

extern char **environ;

/* ---- server fixture: a loop in its own thread ---- */

struct srv {
	struct loop *loop;
	struct status *st;
	struct loop_io stop_io;
	int stop_fd;
	pthread_t thr;
	char path[PATH_MAX];
};

static json_t *h_echo(void *arg, const char *query, int *code)
{
	return json_pack("{s:s, s:s?}", "route", (const char *)arg, "query", query);
}

static json_t *h_null(void *arg, const char *query, int *code)
{
	return NULL;
}

static json_t *h_unavailable(void *arg, const char *query, int *code)
{
	*code = 503;
	return json_pack("{s:s}", "error", "not ready yet");
}

/* A body far larger than a unix socket's buffer, to exercise EPOLLOUT. */
static json_t *h_big(void *arg, const char *query, int *code)
{
	json_t *a = json_array();

	for (int i = 0; a && i < 40000; i++)
		json_array_append_new(a, json_string("0123456789abcdef0123456789abcdef"));
	return a;
}

/* Holds the server's loop for 200 ms, so that a test can queue events. */
static json_t *h_slow(void *arg, const char *query, int *code)
{
	usleep(200 * 1000);
	return json_pack("{s:s}", "route", "slow");
}

/* Serves a fixed JSON document (arg); for sluicectl. */
static json_t *h_doc(void *arg, const char *query, int *code)
{
	return json_loads(arg, 0, NULL);
}

static void srv_stop_cb(struct loop_io *io, uint32_t events)
{
	struct srv *s = io->arg;
	uint64_t v;

	if (read(io->fd, &v, sizeof(v)) < 0)
		return;
	loop_stop(s->loop);
}

static void *srv_thread(void *arg)
{
	struct srv *s = arg;

	loop_run(s->loop);
	return NULL;
}

struct route_def {
	const char *path;
	status_handler fn;
	void *arg;
};

static const struct route_def http_routes[] = {
	{ "/status", h_echo, "status" },
	{ "/services", h_echo, "services" },
	{ "/null", h_null, NULL },
	{ "/unavailable", h_unavailable, NULL },
	{ "/big", h_big, NULL },
	{ "/slow", h_slow, NULL },
	{ NULL, NULL, NULL },
};

/* Listen on <tmpdir>/<name> with the given limits (0: defaults) and routes;
 * the loop does not run yet. */
static bool srv_init(struct srv *s, const char *name, unsigned int timeout_ms,
		     unsigned int max_conns, const struct route_def *routes)
{
	memset(s, 0, sizeof(*s));
	s->stop_fd = -1;
	snprintf(s->path, sizeof(s->path), "%s/%s", test_tmpdir(), name);
	if (!ASSERT_OK(loop_new(&s->loop), "loop_new"))
		return false;
	if (!ASSERT_OK(status_new(&s->st, s->loop, s->path), "status_new"))
		return false;
	status_set_limits(s->st, timeout_ms, max_conns);
	for (; routes->path; routes++)
		if (!ASSERT_OK(status_route(s->st, routes->path, routes->fn, routes->arg),
			       routes->path))
			return false;
	return true;
}

static bool srv_run(struct srv *s)
{
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!ASSERT_GE(s->stop_fd, 0, "eventfd"))
		return false;
	if (!ASSERT_OK(loop_add(s->loop, &s->stop_io, s->stop_fd, EPOLLIN, srv_stop_cb, s),
		       "loop_add stop"))
		return false;
	return ASSERT_OK(pthread_create(&s->thr, NULL, srv_thread, s), "pthread_create");
}

static bool srv_start(struct srv *s, const char *name, unsigned int timeout_ms,
		      unsigned int max_conns)
{
	return srv_init(s, name, timeout_ms, max_conns, http_routes) && srv_run(s);
}

static void srv_stop(struct srv *s)
{
	uint64_t one = 1;

	if (s->stop_fd >= 0) {
		if (write(s->stop_fd, &one, sizeof(one)) == sizeof(one))
			pthread_join(s->thr, NULL);
		loop_del(s->loop, &s->stop_io);
		close(s->stop_fd);
	}
	status_free(s->st);
	loop_free(s->loop);
}

/* ---- client ---- */

static void set_sun_path(struct sockaddr_un *sa, const char *path)
{
	size_t n = strlen(path);

	if (n >= sizeof(sa->sun_path))
		n = sizeof(sa->sun_path) - 1;	/* tmpdir paths are short */
	memcpy(sa->sun_path, path, n);
	sa->sun_path[n] = '\0';
}

static int cli_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	set_sun_path(&sa, path);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int cli_send(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int cli_sends(int fd, const char *s)
{
	return cli_send(fd, s, strlen(s));
}

/* Bytes received but not yet consumed, so pipelined responses split cleanly. */
struct rbuf {
	char *data;
	size_t len, cap;
};

struct resp {
	int code;
	char head[8192];		/* status line and headers, NUL-terminated */
	char *body;			/* NUL-terminated; NULL for HEAD */
	size_t body_len;
	json_t *json;			/* body parsed, or NULL */
};

static void resp_clear(struct resp *r)
{
	free(r->body);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

/* Receive more into rb. Returns bytes, 0 at EOF, -errno (EAGAIN on timeout). */
static ssize_t rbuf_fill(int fd, struct rbuf *rb)
{
	ssize_t n;

	if (rb->cap - rb->len < 65536) {
		rb->cap = rb->cap ? rb->cap * 2 : 65536 * 2;
		rb->data = realloc(rb->data, rb->cap);
	}
	n = recv(fd, rb->data + rb->len, rb->cap - rb->len - 1, 0);
	if (n < 0)
		return -errno;
	rb->len += (size_t)n;
	rb->data[rb->len] = '\0';
	return n;
}

static void rbuf_consume(struct rbuf *rb, size_t n)
{
	memmove(rb->data, rb->data + n, rb->len - n + 1);	/* with the NUL */
	rb->len -= n;
}

/* The value of header name in r (case-insensitive), copied into buf. */
static const char *resp_hdr(const struct resp *r, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);

	for (const char *l = strstr(r->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
		const char *p = l + 2;

		if (!strncasecmp(p, name, nl) && p[nl] == ':') {
			p += nl + 1;
			p += strspn(p, " ");
			snprintf(buf, len, "%.*s", (int)strcspn(p, "\r"), p);
			return buf;
		}
	}
	return NULL;
}

/* Read one response. head: the request was HEAD, so no body follows.
 * Returns 0, or -1 when the connection ended (or timed out) first. */
static int read_resp(int fd, struct rbuf *rb, struct resp *r, bool head)
{
	char *end, b[64];
	size_t hlen, clen;

	memset(r, 0, sizeof(*r));
	while (!rb->data || !(end = strstr(rb->data, "\r\n\r\n")))
		if (rbuf_fill(fd, rb) <= 0)
			return -1;
	hlen = (size_t)(end - rb->data) + 4;
	snprintf(r->head, sizeof(r->head), "%.*s", (int)hlen, rb->data);
	if (sscanf(r->head, "HTTP/1.1 %d ", &r->code) != 1)
		return -1;
	rbuf_consume(rb, hlen);
	if (!resp_hdr(r, "Content-Length", b, sizeof(b)))
		return -1;
	clen = strtoul(b, NULL, 10);
	if (head)
		return 0;
	while (rb->len < clen)
		if (rbuf_fill(fd, rb) <= 0)
			return -1;
	r->body = strndup(rb->data, clen);
	r->body_len = clen;
	r->json = json_loadb(r->body, clen, 0, NULL);
	rbuf_consume(rb, clen);
	return 0;
}

/* True if the server closed the connection (after anything still buffered).
 * ECONNRESET counts: a unix socket closed with unread input reports it once
 * the data queued before the close has been read. */
static bool at_eof(int fd, struct rbuf *rb)
{
	ssize_t n;

	if (rb->len)
		return false;
	n = rbuf_fill(fd, rb);
	return n == 0 || n == -ECONNRESET;
}

static const char *jstr(const json_t *j, const char *key)
{
	return json_string_value(json_object_get(j, key));
}

/* One request on a fresh connection; returns the connection for more checks. */
static int get_once(const char *path, const char *req, struct rbuf *rb, struct resp *r)
{
	int fd = cli_connect(path);

	if (!ASSERT_GE(fd, 0, "connect"))
		return -1;
	if (!ASSERT_OK(cli_sends(fd, req), "send") ||
	    !ASSERT_OK(read_resp(fd, rb, r, false), "read")) {
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- HTTP tests ---- */

void test_status_routes(void)
{
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	char b[128];
	int fd = -1;

	if (!srv_start(&s, "agent.sock", 0, 0))
		goto out;
	fd = get_once(s.path, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n", &rb, &r);
	if (fd < 0)
		goto out;
	ASSERT_EQ(r.code, 200, "code");
	ASSERT_STREQ(resp_hdr(&r, "Content-Type", b, sizeof(b)), "application/json", "type");
	ASSERT_STREQ(resp_hdr(&r, "Connection", b, sizeof(b)), "keep-alive", "connection");
	if (ASSERT_OK_PTR(r.json, "json")) {
		ASSERT_STREQ(jstr(r.json, "route"), "status", "route");
		ASSERT_TRUE(json_is_null(json_object_get(r.json, "query")), "no query");
	}
	ASSERT_FALSE(strstr(r.body, "\n  "), "compact");
	resp_clear(&r);

	/* The query reaches the handler; "pretty" indents. */
	cli_sends(fd, "GET /services?pretty&x=1 HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "read pretty")) {
		ASSERT_EQ(r.code, 200, "code pretty");
		ASSERT_STREQ(jstr(r.json, "route"), "services", "route services");
		ASSERT_STREQ(jstr(r.json, "query"), "pretty&x=1", "query");
		ASSERT_HAS(r.body, "\n  \"route\": \"services\"", "indented");
	}
	resp_clear(&r);
	cli_sends(fd, "GET /status?pretty=0 HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "read pretty=0"))
		ASSERT_FALSE(strstr(r.body, "\n  "), "pretty=0 is compact");
	resp_clear(&r);

	/* HEAD: the GET's headers, no body; the next response must parse. */
	cli_sends(fd, "HEAD /status HTTP/1.1\r\n\r\nGET /status?after-head HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, true), "read head")) {
		ASSERT_EQ(r.code, 200, "head code");
		ASSERT_GE(strtol(resp_hdr(&r, "Content-Length", b, sizeof(b)) ?: "0", NULL, 10), 10,
			  "head length");
	}
	resp_clear(&r);
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "read after head"))
		ASSERT_STREQ(jstr(r.json, "query"), "after-head", "after head");
	resp_clear(&r);

	/* Absolute-form request targets route by their path. */
	cli_sends(fd, "GET http://sluice/status?abs HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "read absolute"))
		ASSERT_STREQ(jstr(r.json, "query"), "abs", "absolute form");
out:
	resp_clear(&r);
	free(rb.data);
	if (fd >= 0)
		close(fd);
	srv_stop(&s);
}

void test_status_not_found(void)
{
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	const json_t *paths;
	int fd = -1;

	if (!srv_start(&s, "agent.sock", 0, 0))
		goto out;
	fd = get_once(s.path, "GET /nope HTTP/1.1\r\n\r\n", &rb, &r);
	if (fd < 0)
		goto out;
	ASSERT_EQ(r.code, 404, "code");
	ASSERT_HAS(jstr(r.json, "error"), "/nope", "error names the path");
	paths = json_object_get(r.json, "paths");
	ASSERT_EQ(json_array_size(paths), 6, "paths listed");
	ASSERT_STREQ(json_string_value(json_array_get(paths, 0)), "/status", "first path");
	resp_clear(&r);

	/* Routes are exact: no trailing slash or prefix matching. */
	cli_sends(fd, "GET /status/ HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "read /status/"))
		ASSERT_EQ(r.code, 404, "trailing slash");
	resp_clear(&r);
	cli_sends(fd, "GET /statusx HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "read /statusx"))
		ASSERT_EQ(r.code, 404, "prefix");
	resp_clear(&r);
	/* A 404 keeps the connection. */
	cli_sends(fd, "GET /status HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "read after 404"))
		ASSERT_EQ(r.code, 200, "after 404");
out:
	resp_clear(&r);
	free(rb.data);
	if (fd >= 0)
		close(fd);
	srv_stop(&s);
}

void test_status_method(void)
{
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	char b[64];
	int fd = -1;

	if (!srv_start(&s, "agent.sock", 0, 0))
		goto out;
	fd = get_once(s.path,
		      "POST /status HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n{\"not\": \"read\"}",
		      &rb, &r);
	if (fd < 0)
		goto out;
	ASSERT_EQ(r.code, 405, "code");
	ASSERT_STREQ(resp_hdr(&r, "Allow", b, sizeof(b)), "GET, HEAD", "allow");
	ASSERT_STREQ(resp_hdr(&r, "Connection", b, sizeof(b)), "close", "connection");
	ASSERT_HAS(jstr(r.json, "error"), "POST", "error");
	ASSERT_TRUE(at_eof(fd, &rb), "closed after 405");
	resp_clear(&r);
	close(fd);

	fd = get_once(s.path, "DELETE /nope HTTP/1.1\r\n\r\n", &rb, &r);
	if (fd >= 0)
		ASSERT_EQ(r.code, 405, "405 before 404");
out:
	resp_clear(&r);
	free(rb.data);
	if (fd >= 0)
		close(fd);
	srv_stop(&s);
}

void test_status_bad_request(void)
{
	static const char *const bad[] = {
		"\x01\x02\x03 garbage\r\n\r\n",
		"GET /status HTTP/1.1\r\nno colon here\r\n\r\n",
		"GET /status HTTP/9.9x\r\n\r\n",
		"GET /a b c HTTP/1.1\r\n\r\n",
		"GET /status HTTP/1.1\r\nContent-Length: x\r\n\r\n",
	};
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	char b[64];
	int fd;

	if (!srv_start(&s, "agent.sock", 0, 0))
		goto out;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd = get_once(s.path, bad[i], &rb, &r);
		if (fd < 0)
			continue;
		ASSERT_EQ(r.code, 400, bad[i]);
		ASSERT_HAS(jstr(r.json, "error"), "bad request", bad[i]);
		ASSERT_STREQ(resp_hdr(&r, "Connection", b, sizeof(b)), "close", bad[i]);
		ASSERT_TRUE(at_eof(fd, &rb), bad[i]);
		resp_clear(&r);
		rb.len = 0;
		close(fd);
	}
out:
	resp_clear(&r);
	free(rb.data);
	srv_stop(&s);
}

/* A GET whose request line and headers total len bytes (give or take 20). */
static char *big_request(size_t len)
{
	char *req = malloc(len + 2048);
	size_t n = (size_t)sprintf(req, "GET /status HTTP/1.1\r\n");

	for (int i = 0; len - n > 2 + 20; i++) {
		size_t line = len - n - 2 > 1000 ? 1000 : len - n - 2;

		n += (size_t)sprintf(req + n, "X-F%04d: ", i);
		memset(req + n, 'a', line - 11);
		n += line - 11;
		n += (size_t)sprintf(req + n, "\r\n");
	}
	strcpy(req + n, "\r\n");
	return req;
}

void test_status_header_limit(void)
{
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	char *req = NULL, b[64];
	int fd = -1;

	if (!srv_start(&s, "agent.sock", 0, 0))
		goto out;
	/* Just under 16 KiB is served. */
	req = big_request(16 * 1024 - 16);
	fd = get_once(s.path, req, &rb, &r);
	if (fd >= 0)
		ASSERT_EQ(r.code, 200, "under limit");
	resp_clear(&r);
	free(req);
	if (fd >= 0)
		close(fd);

	/* Over it is 431 and a close, without waiting for the rest. */
	req = big_request(20 * 1024);
	fd = get_once(s.path, req, &rb, &r);
	if (fd >= 0) {
		ASSERT_EQ(r.code, 431, "over limit");
		ASSERT_STREQ(resp_hdr(&r, "Connection", b, sizeof(b)), "close", "connection");
		ASSERT_TRUE(at_eof(fd, &rb), "closed after 431");
		close(fd);
	}
	resp_clear(&r);
	rb.len = 0;

	/* Endless headers: cut at the limit even though the end never comes. */
	fd = cli_connect(s.path);
	if (ASSERT_GE(fd, 0, "connect endless")) {
		cli_sends(fd, "GET /status HTTP/1.1\r\n");
		memset(req, 'a', 17 * 1024);
		memcpy(req, "X-Endless: ", 11);
		cli_send(fd, req, 17 * 1024);
		if (ASSERT_OK(read_resp(fd, &rb, &r, false), "read endless"))
			ASSERT_EQ(r.code, 431, "endless");
		close(fd);
	}
out:
	free(req);
	resp_clear(&r);
	free(rb.data);
	srv_stop(&s);
}

void test_status_keepalive(void)
{
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	char b[64];
	int fd = -1;

	if (!srv_start(&s, "agent.sock", 0, 0))
		goto out;
	fd = get_once(s.path, "GET /status?one HTTP/1.1\r\n\r\n", &rb, &r);
	if (fd < 0)
		goto out;
	ASSERT_STREQ(jstr(r.json, "query"), "one", "first");
	resp_clear(&r);
	cli_sends(fd, "GET /status?two HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "second on same connection"))
		ASSERT_STREQ(jstr(r.json, "query"), "two", "second");
	resp_clear(&r);
	/* Connection: close is honoured, and said back. */
	cli_sends(fd, "GET /status?three HTTP/1.1\r\nConnection: close\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "third")) {
		ASSERT_STREQ(jstr(r.json, "query"), "three", "third");
		ASSERT_STREQ(resp_hdr(&r, "Connection", b, sizeof(b)), "close", "close said");
		ASSERT_TRUE(at_eof(fd, &rb), "closed after Connection: close");
	}
	resp_clear(&r);
	close(fd);

	/* HTTP/1.0 closes unless asked to keep alive. */
	fd = get_once(s.path, "GET /status HTTP/1.0\r\n\r\n", &rb, &r);
	if (fd >= 0) {
		ASSERT_EQ(r.code, 200, "1.0");
		ASSERT_TRUE(at_eof(fd, &rb), "1.0 closes");
		resp_clear(&r);
		close(fd);
	}
	fd = get_once(s.path, "GET /status HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &rb, &r);
	if (fd >= 0) {
		ASSERT_STREQ(resp_hdr(&r, "Connection", b, sizeof(b)), "keep-alive",
			     "1.0 keep-alive");
		resp_clear(&r);
		cli_sends(fd, "GET /status HTTP/1.0\r\n\r\n");
		if (ASSERT_OK(read_resp(fd, &rb, &r, false), "1.0 second"))
			ASSERT_EQ(r.code, 200, "1.0 second");
	}
out:
	resp_clear(&r);
	free(rb.data);
	if (fd >= 0)
		close(fd);
	srv_stop(&s);
}

void test_status_pipeline(void)
{
	static const char *const want[] = { "a", NULL, "c", "d" };
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	int fd = -1;

	if (!srv_start(&s, "agent.sock", 0, 0))
		goto out;
	fd = cli_connect(s.path);
	if (!ASSERT_GE(fd, 0, "connect"))
		goto out;
	/* Four requests in one write, one of them a 404, the last one closing;
	 * answered in order, one at a time. */
	cli_sends(fd, "GET /status?a HTTP/1.1\r\n\r\n"
		      "GET /missing HTTP/1.1\r\n\r\n"
		      "GET /services?c HTTP/1.1\r\n\r\n"
		      "GET /status?d HTTP/1.1\r\nConnection: close\r\n\r\n"
		      "GET /status?never HTTP/1.1\r\n\r\n");
	for (int i = 0; i < 4; i++) {
		if (!ASSERT_OK(read_resp(fd, &rb, &r, false), "read"))
			break;
		if (want[i])
			ASSERT_STREQ(jstr(r.json, "query"), want[i], "in order");
		else
			ASSERT_EQ(r.code, 404, "404 in the middle");
		resp_clear(&r);
	}
	ASSERT_TRUE(at_eof(fd, &rb), "nothing after the closing request");

	/* Split mid-request across writes works too. */
	close(fd);
	fd = cli_connect(s.path);
	if (!ASSERT_GE(fd, 0, "connect"))
		goto out;
	cli_sends(fd, "GET /sta");
	cli_sends(fd, "tus?split HTTP/1.1\r\nHo");
	cli_sends(fd, "st: x\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "split"))
		ASSERT_STREQ(jstr(r.json, "query"), "split", "split request");
out:
	resp_clear(&r);
	free(rb.data);
	if (fd >= 0)
		close(fd);
	srv_stop(&s);
}

void test_status_handler_error(void)
{
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	int fd = -1;

	if (!srv_start(&s, "agent.sock", 0, 0))
		goto out;
	fd = get_once(s.path, "GET /null HTTP/1.1\r\n\r\n", &rb, &r);
	if (fd < 0)
		goto out;
	ASSERT_EQ(r.code, 500, "NULL is 500");
	ASSERT_HAS(jstr(r.json, "error"), "/null", "error");
	resp_clear(&r);
	/* The handler's own status and body. */
	cli_sends(fd, "GET /unavailable HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "read 503")) {
		ASSERT_EQ(r.code, 503, "handler code");
		ASSERT_HAS(r.head, "503 Service Unavailable", "reason");
		ASSERT_STREQ(jstr(r.json, "error"), "not ready yet", "handler body");
	}
out:
	resp_clear(&r);
	free(rb.data);
	if (fd >= 0)
		close(fd);
	srv_stop(&s);
}

void test_status_large_response(void)
{
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	int fd = -1;

	if (!srv_start(&s, "agent.sock", 0, 0))
		goto out;
	/* ~1.4 MB, pipelined with a small one: backpressure must not lose it. */
	fd = get_once(s.path, "GET /big HTTP/1.1\r\n\r\nGET /status?after HTTP/1.1\r\n\r\n", &rb,
		      &r);
	if (fd < 0)
		goto out;
	ASSERT_EQ(r.code, 200, "big");
	ASSERT_EQ(json_array_size(r.json), 40000, "all of it");
	resp_clear(&r);
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "after big"))
		ASSERT_STREQ(jstr(r.json, "query"), "after", "after big");
out:
	resp_clear(&r);
	free(rb.data);
	if (fd >= 0)
		close(fd);
	srv_stop(&s);
}

/* Wait (up to 5 s) for the server to close fd; returns ms waited or -1. */
static long wait_closed(int fd, const char *trickle)
{
	uint64_t t0 = loop_now_ms();
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	for (;;) {
		int n = poll(&p, 1, trickle ? 40 : 5000);

		if (n > 0)
			return (long)(loop_now_ms() - t0);
		if (n < 0 || loop_now_ms() - t0 > 5000)
			return -1;
		/* Still open: feed one more byte, which must not extend the
		 * deadline. Failing to send means the server just closed. */
		if (trickle && cli_send(fd, trickle, 1))
			return (long)(loop_now_ms() - t0);
	}
}

void test_status_slow_client(void)
{
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	struct srv s;
	long ms;
	int fd = -1;

	if (!srv_start(&s, "agent.sock", 200, 0))
		goto out;

	/* A request trickling in byte by byte is cut off by its deadline, told 408. */
	fd = cli_connect(s.path);
	if (!ASSERT_GE(fd, 0, "connect trickle"))
		goto out;
	cli_sends(fd, "GET /status HTTP/1.1\r\nX-Slow: ");
	ms = wait_closed(fd, "a");
	ASSERT_GE(ms, 100, "not before the deadline");
	ASSERT_LE(ms, 2500, "cut off");
	if (ASSERT_OK(read_resp(fd, &rb, &r, false), "408"))
		ASSERT_EQ(r.code, 408, "timeout code");
	resp_clear(&r);
	close(fd);
	rb.len = 0;

	/* An idle connection is closed without a word. */
	fd = cli_connect(s.path);
	if (!ASSERT_GE(fd, 0, "connect idle"))
		goto out;
	ms = wait_closed(fd, NULL);
	ASSERT_GE(ms, 100, "idle deadline");
	ASSERT_LE(ms, 2500, "idle closed");
	ASSERT_TRUE(at_eof(fd, &rb), "idle: nothing sent");
	close(fd);

	/* Keep-alive: the idle deadline restarts after each response. */
	fd = get_once(s.path, "GET /status HTTP/1.1\r\n\r\n", &rb, &r);
	if (fd < 0)
		goto out;
	resp_clear(&r);
	ms = wait_closed(fd, NULL);
	ASSERT_GE(ms, 100, "keep-alive idle deadline");
	ASSERT_LE(ms, 2500, "keep-alive idle closed");
	close(fd);

	/* A client that never reads its (large) response is dropped too; the
	 * deadline starts once the response is built, which is slow under ASan. */
	fd = cli_connect(s.path);
	if (!ASSERT_GE(fd, 0, "connect reader"))
		goto out;
	cli_sends(fd, "GET /big HTTP/1.1\r\n\r\n");
	ms = wait_closed(fd, NULL);
	ASSERT_GE(ms, 100, "writer deadline");
	ASSERT_GE(ms, 0, "non-reader dropped");
out:
	resp_clear(&r);
	free(rb.data);
	if (fd >= 0)
		close(fd);
	srv_stop(&s);
}

void test_status_max_conns(void)
{
	struct rbuf rb[3] = { 0 };
	struct resp r = { 0 };
	int fds[3] = { -1, -1, -1 };
	struct srv s;

	if (!srv_start(&s, "agent.sock", 0, 2))
		goto out;
	/* Two served connections (a response proves they were accepted)... */
	for (int i = 0; i < 2; i++) {
		fds[i] = get_once(s.path, "GET /status HTTP/1.1\r\n\r\n", &rb[i], &r);
		if (fds[i] < 0)
			goto out;
		resp_clear(&r);
	}
	/* ...so the third closes the oldest waiting one, and is served: a
	 * client holding every slot cannot lock the operator out. */
	fds[2] = cli_connect(s.path);
	if (ASSERT_GE(fds[2], 0, "connect third")) {
		cli_sends(fds[2], "GET /status HTTP/1.1\r\n\r\n");
		if (ASSERT_OK(read_resp(fds[2], &rb[2], &r, false), "third served"))
			ASSERT_EQ(r.code, 200, "served over the cap");
	}
	resp_clear(&r);
	ASSERT_TRUE(at_eof(fds[0], &rb[0]), "the oldest was closed");
	/* The second still works. */
	cli_sends(fds[1], "GET /status HTTP/1.1\r\n\r\n");
	if (ASSERT_OK(read_resp(fds[1], &rb[1], &r, false), "still served"))
		ASSERT_EQ(r.code, 200, "still served");
out:
	resp_clear(&r);
	for (int i = 0; i < 3; i++) {
		free(rb[i].data);
		if (fds[i] >= 0)
			close(fds[i]);
	}
	srv_stop(&s);
}

/* Over the cap, the accept of a new connection closes the oldest one, and
 * that one may have an event queued in the same epoll batch: it must not be
 * freed before the batch is over (it was: a use-after-free that killed the
 * agent in test_faults.sh; ASan builds see it here). The loop is held in a
 * slow handler while a new client connects and then an old one sends, so
 * the batch holds the listener's event before the old connection's. */
void test_status_evict_in_batch(void)
{
	struct rbuf rb[4] = { 0 };
	struct resp r = { 0 };
	int fds[4] = { -1, -1, -1, -1 };
	struct srv s;

	if (!srv_start(&s, "agent.sock", 0, 3))
		goto out;
	for (int i = 0; i < 2; i++) {	/* two idle keep-alive connections */
		fds[i] = get_once(s.path, "GET /status HTTP/1.1\r\n\r\n", &rb[i], &r);
		if (fds[i] < 0)
			goto out;
		resp_clear(&r);
	}
	fds[2] = cli_connect(s.path);
	if (!ASSERT_GE(fds[2], 0, "connect slow") || !ASSERT_OK(cli_sends(fds[2], "GET /slow HTTP/1.1\r\n\r\n"), "send slow"))
		goto out;
	usleep(50 * 1000);		/* the loop is in h_slow now */
	fds[3] = cli_connect(s.path);	/* the listener's event first, */
	ASSERT_GE(fds[3], 0, "connect over the cap");
	send(fds[0], "G", 1, MSG_NOSIGNAL);	/* then one for the oldest */
	if (ASSERT_OK(read_resp(fds[2], &rb[2], &r, false), "slow answered"))
		ASSERT_EQ(r.code, 200, "slow");
	resp_clear(&r);
	ASSERT_TRUE(at_eof(fds[0], &rb[0]), "the oldest was closed for the new one");
	if (fds[3] >= 0 && ASSERT_OK(cli_sends(fds[3], "GET /status HTTP/1.1\r\n\r\n"), "send new") &&
	    ASSERT_OK(read_resp(fds[3], &rb[3], &r, false), "new one served"))
		ASSERT_EQ(r.code, 200, "new one served");
out:
	resp_clear(&r);
	for (int i = 0; i < 4; i++) {
		free(rb[i].data);
		if (fds[i] >= 0)
			close(fds[i]);
	}
	srv_stop(&s);
}

void test_status_socket_mode(void)
{
	struct loop *l = NULL;
	struct status *st = NULL;
	char dir[256], path[PATH_MAX];
	struct stat sb;

	/* A permissive umask must not widen the socket; missing dirs get 0755. */
	umask(0);
	snprintf(dir, sizeof(dir), "%s/run/sluice", test_tmpdir());
	snprintf(path, sizeof(path), "%s/agent.sock", dir);
	if (!ASSERT_OK(loop_new(&l), "loop_new") ||
	    !ASSERT_OK(status_new(&st, l, path), "status_new"))
		goto out;
	if (ASSERT_OK(stat(path, &sb), "stat socket")) {
		ASSERT_TRUE(S_ISSOCK(sb.st_mode), "is a socket");
		ASSERT_EQ(sb.st_mode & 07777, 0600, "socket mode");
	}
	if (ASSERT_OK(stat(dir, &sb), "stat dir"))
		ASSERT_EQ(sb.st_mode & 07777, 0755, "dir mode");
	/* status_free removes its socket... */
	status_free(st);
	st = NULL;
	ASSERT_ERR(stat(path, &sb), "unlinked");

	/* ...but not a successor's that replaced it. */
	if (!ASSERT_OK(status_new(&st, l, path), "status_new again"))
		goto out;
	unlink(path);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);

		set_sun_path(&sa, path);
		ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), "successor bind");
		status_free(st);
		st = NULL;
		ASSERT_OK(stat(path, &sb), "successor's socket kept");
		close(fd);
	}
out:
	status_free(st);
	loop_free(l);
}

void test_status_live_socket(void)
{
	struct status *st = NULL, *st2 = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct loop *l = NULL;
	char path[PATH_MAX], file[PATH_MAX];
	struct stat sb, sb2;
	int fd = -1;

	snprintf(path, sizeof(path), "%s/agent.sock", test_tmpdir());
	if (!ASSERT_OK(loop_new(&l), "loop_new"))
		goto out;

	/* A stale socket (nobody listening) is replaced. */
	set_sun_path(&sa, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (!ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), "stale bind"))
		goto out;
	close(fd);
	fd = -1;
	if (!ASSERT_OK(status_new(&st, l, path), "replaces stale socket"))
		goto out;

	/* A live one is refused and left alone, even though our loop is not
	 * running: the kernel completes connects into the backlog. */
	stat(path, &sb);
	ASSERT_EQ(status_new(&st2, l, path), -EADDRINUSE, "refuses live socket");
	if (ASSERT_OK(stat(path, &sb2), "live socket kept"))
		ASSERT_EQ(sb2.st_ino, sb.st_ino, "same socket");

	/* A file that is not a socket is never deleted. */
	snprintf(file, sizeof(file), "%s/not-a-socket", test_tmpdir());
	fd = open(file, O_CREAT | O_WRONLY, 0644);
	close(fd);
	fd = -1;
	ASSERT_EQ(status_new(&st2, l, file), -EEXIST, "refuses regular file");
	ASSERT_OK(stat(file, &sb), "file kept");

	/* Paths that do not fit sun_path are an error, not a truncation. */
	memset(file, 'a', sizeof(sa.sun_path) + 10);
	file[0] = '/';
	file[sizeof(sa.sun_path) + 10] = '\0';
	ASSERT_EQ(status_new(&st2, l, file), -ENAMETOOLONG, "long path");
	ASSERT_EQ(status_route(st, "/status", h_null, NULL), 0, "route");
	ASSERT_EQ(status_route(st, "/status", h_null, NULL), -EEXIST, "duplicate route");
	ASSERT_EQ(status_route(st, "status", h_null, NULL), -EINVAL, "relative route");
out:
	if (fd >= 0)
		close(fd);
	status_free(st2);
	status_free(st);
	loop_free(l);
}

/* ---- sluicectl ---- */

static const char doc_status[] =
	"{\"version\": \"1.2.3\", \"node\": \"node-1\", \"pid\": 123, \"uptime_s\": 3725.5,"
	" \"extra\": {\"ignored\": true},"
	" \"config\": {\"source\": \"/etc/sluice/config\", \"generation\": 3, \"state\": \"error\","
	"   \"last_good_at\": \"2026-11-26T15:30:00Z\","
	"   \"objects\": {\"namespaces\": 1, \"pods\": 4, \"services\": 2, \"endpointslices\": 2,"
	"                 \"ignored\": 0},"
	"   \"errors\": [\"svc.yaml:12: Service default/web: port 'x': expected a number\","
	"                \"pod.yaml:3: Pod default/a: missing name\"],"
	"   \"last_error\": \"2 errors in /etc/sluice/config\"},"
	" \"datapath\": {\"bpffs_root\": \"/sys/fs/bpf/sluice\","
	"   \"cgroup\": \"/sys/fs/cgroup/unified\","
	"   \"programs\": [{\"name\": \"sock_lb_connect4\", \"attach\": \"cgroup/connect4\","
	"     \"pinned_link\": \"/sys/fs/bpf/sluice/links/sock_lb_connect4\"}],"
	"   \"reused_pins\": true},"
	" \"sync\": {\"generation\": 3, \"frontends\": 4, \"backends\": 10, \"frontends_max\": 131072,"
	" \"backends_max\": 2097152, \"last_sync_ms\": 1.25,"
	"   \"last_sync_at\": \"2026-11-26T15:30:01Z\","
	"   \"updates\": 12, \"deletes\": 0, \"errors\": 0},"
	" \"mesh\": {\"state\": \"on\", \"trust_domain\": \"cluster.local\", \"pods_enrolled\": 2,"
	"   \"pods_captured\": 1, \"connections_open\": 5, \"hbone_out\": 2, \"hbone_in\": 1}}";

static const char doc_connections[] =
	"{\"connections\": ["
	" {\"id\": 7, \"direction\": \"outbound\", \"path\": \"hbone\", \"state\": \"relay\","
	"  \"src\": {\"ip\": \"10.244.1.10\", \"port\": 40000},"
	"  \"dst\": {\"ip\": \"fd00::7\", \"port\": 8080},"
	"  \"source\": {\"namespace\": \"demo\", \"name\": \"client\","
	"    \"identity\": \"spiffe://td/ns/demo/sa/client\"},"
	"  \"destination\": {\"namespace\": null, \"name\": null, \"identity\": null},"
	"  \"bytes_sent\": 2048, \"bytes_received\": 3145728, \"age_s\": 75.5}],"
	" \"stats\": {\"open\": 1, \"total\": 9, \"failed\": 2, \"hbone_clients\": 1,"
	"   \"hbone_servers\": 0}}";

static const char doc_certs[] =
	"{\"certs\": [{\"identity\": \"spiffe://td/ns/demo/sa/client\", \"mode\": \"mesh-ca\","
	"  \"serial\": \"0123456789ABCDEF0123\", \"not_before\": \"2026-11-26T00:00:00Z\","
	"  \"not_after\": \"2026-11-27T00:00:00Z\", \"next_renewal\": \"2026-11-26T12:00:00Z\","
	"  \"source\": \"minted\", \"error\": null}], \"mesh\": \"on\"}";

static const char doc_services[] =
	"{\"services\": ["
	" {\"namespace\": \"default\", \"name\": \"echo\", \"vip\": \"10.96.0.10\", \"port\": 80,"
	"  \"protocol\": \"TCP\", \"svc_id\": 3, \"affinity\": \"None\","
	"  \"affinity_timeout\": 10800,"
	"  \"traffic_policy\": \"Cluster\", \"backends\": ["
	"   {\"ip\": \"10.244.1.5\", \"port\": 8080, \"pod\": \"echo-1\", \"node\": \"node-2\","
	"    \"ready\": true, \"serving\": true, \"terminating\": false, \"chosen\": true},"
	"   {\"ip\": \"10.244.2.7\", \"port\": 8080, \"ready\": true, \"chosen\": true},"
	"   {\"ip\": \"10.244.2.8\", \"port\": 8080, \"ready\": false, \"chosen\": false}]},"
	" {\"namespace\": \"kube-system\", \"name\": \"dns6\", \"vip\": \"fd00:10:96::a\","
	"  \"port\": 53,"
	"  \"protocol\": \"UDP\", \"affinity\": \"ClientIP\", \"affinity_timeout\": 60,"
	"  \"traffic_policy\": \"Local\", \"future_field\": [1, 2],"
	"  \"backends\": [{\"ip\": \"fd00::5\", \"port\": 5353, \"chosen\": true}]},"
	" {\"name\": \"bare\"}]}";

static const char doc_workloads[] =
	"{\"workloads\": ["
	" {\"namespace\": \"default\", \"name\": \"echo-1\", \"node\": \"node-1\","
	"  \"ips\": [\"10.244.1.5\", \"fd00::5\"], \"service_account\": \"default\","
	"  \"identity\": \"spiffe://cluster.local/ns/default/sa/default\", \"enrolled\": true,"
	"  \"mesh\": \"captured\","
	"  \"local\": true, \"ready\": true, \"labels\": {\"app\": \"echo\"}},"
	" {\"namespace\": \"default\", \"name\": \"echo-2\", \"node\": \"node-2\","
	"  \"ips\": [], \"local\": false, \"ready\": false}]}";

static const char doc_maps[] =
	"{\"maps\": ["
	" {\"name\": \"sl_svc_v1\", \"type\": \"hash\", \"entries\": 4, \"max_entries\": 65536,"
	"  \"key_size\": 20, \"value_size\": 16, \"pinned\": \"/sys/fs/bpf/sluice/sl_svc_v1\"},"
	" {\"name\": \"sl_be_v1\", \"type\": \"hash\", \"entries\": 32768, \"max_entries\": 65536,"
	"  \"pinned\": null}],"
	" \"counters\": {\"lb_translated\": 120, \"lb_no_backend\": 3}}";

struct ctl_out {
	int rc;
	char *out, *err;
};

static const char *ctl_path(void)
{
	static char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
	char *slash;

	if (n <= 0)
		return NULL;
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (!slash)
		return NULL;
	strcpy(slash + 1, "sluicectl");	/* build/test_progs sits beside build/sluicectl */
	return access(path, X_OK) ? NULL : path;
}

static void ctl_out_free(struct ctl_out *o)
{
	free(o->out);
	free(o->err);
	memset(o, 0, sizeof(*o));
}

/* Run sluicectl with args (NULL-terminated) and env_sock as $SLUICE_SOCKET
 * (NULL: unset); collect stdout, stderr and the exit code. */
static bool ctl_run(struct ctl_out *o, const char *env_sock, const char *const *args)
{
	const char *argv[16] = { "sluicectl" };
	char *envp[64], envbuf[PATH_MAX + 16];
	int po[2], pe[2], n = 1, ne = 0, status;
	posix_spawn_file_actions_t fa;
	size_t olen = 0, elen = 0;
	FILE *fo, *fe;
	pid_t pid;

	memset(o, 0, sizeof(*o));
	while (*args && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;
	for (char **e = environ; *e && ne < 62; e++)
		if (strncmp(*e, "SLUICE_SOCKET=", 14))
			envp[ne++] = *e;
	if (env_sock) {
		snprintf(envbuf, sizeof(envbuf), "SLUICE_SOCKET=%s", env_sock);
		envp[ne++] = envbuf;
	}
	envp[ne] = NULL;
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC))
		return false;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, po[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
	if (!ASSERT_OK(posix_spawn(&pid, ctl_path(), &fa, NULL, (char *const *)argv, envp),
		       "spawn sluicectl"))
		return false;
	posix_spawn_file_actions_destroy(&fa);
	close(po[1]);
	close(pe[1]);
	fo = open_memstream(&o->out, &olen);
	fe = open_memstream(&o->err, &elen);
	/* Drain both pipes until EOF; the server answers from its own thread. */
	for (int open = 2; open;) {
		struct pollfd p[2] = { { .fd = po[0], .events = POLLIN },
				       { .fd = pe[0], .events = POLLIN } };
		char buf[4096];

		if (poll(p, 2, 10000) <= 0)
			break;
		for (int i = 0; i < 2; i++) {
			ssize_t r;

			if (!p[i].revents || p[i].fd < 0)
				continue;
			r = read(p[i].fd, buf, sizeof(buf));
			if (r > 0) {
				fwrite(buf, 1, (size_t)r, i ? fe : fo);
			} else {
				close(i ? pe[0] : po[0]);
				if (i)
					pe[0] = -1;
				else
					po[0] = -1;
				open--;
			}
		}
	}
	fclose(fo);
	fclose(fe);
	waitpid(pid, &status, 0);
	o->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (o->rc)
		printf("sluicectl %s: rc %d\nstdout:\n%s\nstderr:\n%s\n", argv[1], o->rc, o->out,
		       o->err);
	return true;
}

/* True if text holds line as a whole line; HAS_LINE asserts it. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; p && (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return true;
	printf("missing line: '%s' in:\n%s\n", line, text ? text : "(null)");
	return false;
}

#define HAS_LINE(text, line) ASSERT_TRUE(has_line(text, line), "has line")

static const struct route_def ctl_routes[] = {
	{ "/status", h_doc, (void *)doc_status },
	{ "/services", h_doc, (void *)doc_services },
	{ "/workloads", h_doc, (void *)doc_workloads },
	{ "/maps", h_doc, (void *)doc_maps },
	{ "/connections", h_doc, (void *)doc_connections },
	{ "/certs", h_doc, (void *)doc_certs },
	{ "/echo", h_echo, "echo" },
	{ "/null", h_null, NULL },
	{ NULL, NULL, NULL },
};

/* A server with the agent's JSON shapes; skips when sluicectl is not built. */
static bool ctl_srv_start(struct srv *s)
{
	memset(s, 0, sizeof(*s));
	s->stop_fd = -1;
	if (!ctl_path()) {
		test_skip("sluicectl not built beside test_progs (make build/sluicectl)");
		return false;
	}
	return srv_init(s, "agent.sock", 0, 0, ctl_routes) && srv_run(s);
}

void test_status_cli_tables(void)
{
	struct ctl_out o = { 0 };
	struct srv s;

	if (!ctl_srv_start(&s))
		goto out;

	if (ctl_run(&o, NULL, (const char *[]){ "--socket", s.path, "status", NULL }) &&
	    ASSERT_EQ(o.rc, 0, "status rc")) {
		HAS_LINE(o.out, "Version:      1.2.3");
		HAS_LINE(o.out, "Node:         node-1");
		HAS_LINE(o.out, "PID:          123");
		HAS_LINE(o.out, "Uptime:       1h02m05s");
		HAS_LINE(o.out, "Config:       error (generation 3)");
		HAS_LINE(o.out, "  Source:     /etc/sluice/config");
		HAS_LINE(o.out, "  Objects:    1 namespaces, 4 pods, 2 services, "
			 "2 endpointslices, 0 ignored");
		HAS_LINE(o.out, "  Last good:  2026-11-26T15:30:00Z");
		HAS_LINE(o.out, "  Last error: 2 errors in /etc/sluice/config");
		HAS_LINE(o.out, "  Errors:     2");
		HAS_LINE(o.out, "    svc.yaml:12: Service default/web: port 'x': "
			 "expected a number");
		HAS_LINE(o.out, "    pod.yaml:3: Pod default/a: missing name");
		HAS_LINE(o.out, "Datapath:     /sys/fs/bpf/sluice (pins reused)");
		HAS_LINE(o.out, "    sock_lb_connect4  cgroup/connect4  "
			 "/sys/fs/bpf/sluice/links/sock_lb_connect4");
		HAS_LINE(o.out, "Sync:         generation 3, 4 frontends, 10 backends");
		HAS_LINE(o.out, "Mesh:         on, trust domain cluster.local, 1 of 2 enrolled pods captured");
		HAS_LINE(o.out, "  Open:       5 connections; HBONE connections 2 out, 1 in");
		HAS_LINE(o.out, "  Capacity:   131072 frontends, 2097152 backend slots (--max-services)");
		HAS_LINE(o.out, "  Last sync:  1.25 ms at 2026-11-26T15:30:01Z");
		HAS_LINE(o.out, "  Changes:    12 updates, 0 deletes, 0 errors");
		ASSERT_STREQ(o.err, "", "status stderr");
	}
	ctl_out_free(&o);

	if (ctl_run(&o, NULL, (const char *[]){ "-s", s.path, "services", NULL }) &&
	    ASSERT_EQ(o.rc, 0, "services rc")) {
		HAS_LINE(o.out, "NAMESPACE    NAME  VIP            PORT  PROTO  READY  "
			 "AFFINITY      POLICY   BACKENDS");
		HAS_LINE(o.out, "default      echo  10.96.0.10     80    TCP    2/3    "
			 "None          Cluster  10.244.1.5:8080,10.244.2.7:8080");
		HAS_LINE(o.out, "kube-system  dns6  fd00:10:96::a  53    UDP    1/1    "
			 "ClientIP/60s  Local    [fd00::5]:5353");
		HAS_LINE(o.out, "-            bare  -              -     -      0/0    "
			 "-             -        -");
	}
	ctl_out_free(&o);

	if (ctl_run(&o, s.path, (const char *[]){ "workloads", NULL }) &&
	    ASSERT_EQ(o.rc, 0, "workloads rc")) {
		HAS_LINE(o.out, "NAMESPACE  NAME    NODE    IPS                 "
			 "IDENTITY                                      LOCAL  READY  ENROLLED  MESH");
		HAS_LINE(o.out, "default    echo-1  node-1  10.244.1.5,fd00::5  "
			 "spiffe://cluster.local/ns/default/sa/default  yes    yes    yes       captured");
		HAS_LINE(o.out, "default    echo-2  node-2  -                   "
			 "-                                             no     no     -         -");
	}
	ctl_out_free(&o);

	if (ctl_run(&o, s.path, (const char *[]){ "connections", NULL }) &&
	    ASSERT_EQ(o.rc, 0, "connections rc")) {
		HAS_LINE(o.out, "DIR       PATH   SOURCE       DESTINATION     DST-ADDR        "
			 "SRC-IDENTITY                   DST-IDENTITY  SENT   RECV   AGE    STATE");
		HAS_LINE(o.out, "outbound  hbone  demo/client  [fd00::7]:8080  [fd00::7]:8080  "
			 "spiffe://td/ns/demo/sa/client  -             2.0Ki  3.0Mi  1m15s  relay");
		HAS_LINE(o.out, "1 open, 9 since start (2 failed); HBONE connections: 1 out, 0 in");
	}
	ctl_out_free(&o);

	if (ctl_run(&o, s.path, (const char *[]){ "certs", NULL }) &&
	    ASSERT_EQ(o.rc, 0, "certs rc")) {
		HAS_LINE(o.out, "IDENTITY                       MODE     SERIAL               "
			 "NOT-AFTER             ROTATES               ERROR");
		HAS_LINE(o.out, "spiffe://td/ns/demo/sa/client  mesh-ca  0123456789ABCDEF...  "
			 "2026-11-27T00:00:00Z  2026-11-26T12:00:00Z  -");
	}
	ctl_out_free(&o);

	if (ctl_run(&o, s.path, (const char *[]){ "maps", NULL }) &&
	    ASSERT_EQ(o.rc, 0, "maps rc")) {
		HAS_LINE(o.out, "NAME       TYPE  ENTRIES  MAX    USE%   PINNED");
		HAS_LINE(o.out, "sl_svc_v1  hash  4        65536  0.0%   "
			 "/sys/fs/bpf/sluice/sl_svc_v1");
		HAS_LINE(o.out, "sl_be_v1   hash  32768    65536  50.0%  -");
		HAS_LINE(o.out, "COUNTER        VALUE");
		HAS_LINE(o.out, "lb_translated  120");
		HAS_LINE(o.out, "lb_no_backend  3");
	}
out:
	ctl_out_free(&o);
	srv_stop(&s);
}

void test_status_cli_json(void)
{
	struct ctl_out o = { 0 };
	json_t *got = NULL, *want = NULL;
	struct srv s;

	if (!ctl_srv_start(&s))
		goto out;
	/* --json: the agent's document, indented, whatever the command. */
	if (ctl_run(&o, NULL, (const char *[]){ "--json", "--socket", s.path, "maps", NULL }) &&
	    ASSERT_EQ(o.rc, 0, "maps --json rc")) {
		got = json_loads(o.out, 0, NULL);
		want = json_loads(doc_maps, 0, NULL);
		ASSERT_TRUE(got && json_equal(got, want), "same document");
		ASSERT_HAS(o.out, "\n  \"maps\": [", "indented");
	}
	ctl_out_free(&o);
	json_decref(got);
	json_decref(want);

	/* get: any path, raw; a leading slash is optional; queries pass through. */
	if (ctl_run(&o, s.path, (const char *[]){ "get", "services", NULL }) &&
	    ASSERT_EQ(o.rc, 0, "get rc")) {
		got = json_loads(o.out, 0, NULL);
		want = json_loads(doc_services, 0, NULL);
		ASSERT_TRUE(got && json_equal(got, want), "get document");
		ASSERT_FALSE(strstr(o.out, "\n  "), "raw (compact)");
	}
	ctl_out_free(&o);
	json_decref(got);
	json_decref(want);
	if (ctl_run(&o, s.path, (const char *[]){ "get", "/echo?x=1", NULL }) &&
	    ASSERT_EQ(o.rc, 0, "get query rc"))
		ASSERT_HAS(o.out, "\"query\":\"x=1\"", "query passed");
out:
	ctl_out_free(&o);
	srv_stop(&s);
}

void test_status_cli_errors(void)
{
	struct ctl_out o = { 0 };
	char missing[PATH_MAX], want[PATH_MAX + 128];
	struct srv s;

	if (!ctl_srv_start(&s))
		goto out;

	/* No agent. */
	snprintf(missing, sizeof(missing), "%s/none.sock", test_tmpdir());
	snprintf(want, sizeof(want),
		 "sluicectl: cannot connect to %s: No such file or directory (is sluice-agent "
		 "running?)\n", missing);
	if (ctl_run(&o, missing, (const char *[]){ "status", NULL })) {
		ASSERT_EQ(o.rc, 1, "no agent rc");
		ASSERT_STREQ(o.err, want, "no agent message");
		ASSERT_STREQ(o.out, "", "no agent stdout");
	}
	ctl_out_free(&o);

	/* --socket beats $SLUICE_SOCKET. */
	if (ctl_run(&o, missing, (const char *[]){ "--socket", s.path, "maps", NULL }))
		ASSERT_EQ(o.rc, 0, "--socket wins");
	ctl_out_free(&o);

	/* Non-2xx: the agent's "error" (and for 404, the known paths). */
	if (ctl_run(&o, s.path, (const char *[]){ "get", "/nope", NULL })) {
		ASSERT_EQ(o.rc, 1, "404 rc");
		ASSERT_HAS(o.err, "sluicectl: GET /nope: 404 Not Found: no such path: /nope",
			   "404");
		ASSERT_HAS(o.err, "known paths: /status, /services", "known paths");
	}
	ctl_out_free(&o);
	if (ctl_run(&o, s.path, (const char *[]){ "get", "/null", NULL })) {
		ASSERT_EQ(o.rc, 1, "500 rc");
		ASSERT_HAS(o.err, "500 Internal Server Error: internal error serving /null", "500");
	}
	ctl_out_free(&o);

	/* Usage errors. */
	if (ctl_run(&o, s.path, (const char *[]){ "frobnicate", NULL })) {
		ASSERT_EQ(o.rc, 1, "unknown command rc");
		ASSERT_HAS(o.err, "unknown command 'frobnicate'", "unknown command");
	}
	ctl_out_free(&o);
	if (ctl_run(&o, s.path, (const char *[]){ "--timeout", "0", "status", NULL })) {
		ASSERT_EQ(o.rc, 1, "bad timeout rc");
		ASSERT_HAS(o.err, "--timeout", "bad timeout");
	}
	ctl_out_free(&o);
	if (ctl_run(&o, s.path, (const char *[]){ "get", NULL }))
		ASSERT_EQ(o.rc, 1, "get without path");
out:
	ctl_out_free(&o);
	srv_stop(&s);
}

/* ready: the readiness probe. Exit 0 once sync.generation >= 1, else 1. */
static const char doc_status_unsynced[] =
	"{\"version\": \"1.2.3\", \"config\": {\"source\": \"kubernetes\", \"generation\": 0,"
	" \"state\": \"empty\"}, \"sync\": {\"generation\": 0}, \"kubernetes\": {\"ready\": false}}";

static const struct route_def ctl_routes_unsynced[] = {
	{ "/status", h_doc, (void *)doc_status_unsynced },
	{ NULL, NULL, NULL },
};

/* Synced, but another container's agent (a surge pod before the takeover):
 * pid namespace inode 1 is nobody's. */
static const char doc_status_other_pidns[] =
	"{\"version\": \"1.2.3\", \"pid\": 1, \"pid_ns\": 1, \"config\": {\"source\": \"/etc/x\","
	" \"generation\": 2, \"state\": \"ok\"}, \"sync\": {\"generation\": 2}}";

static const struct route_def ctl_routes_other_pidns[] = {
	{ "/status", h_doc, (void *)doc_status_other_pidns },
	{ NULL, NULL, NULL },
};

void test_status_cli_ready(void)
{
	struct ctl_out o = { 0 };
	struct srv s, u = { .stop_fd = -1 }, p = { .stop_fd = -1 };

	if (!ctl_srv_start(&s))
		goto out;
	if (ctl_run(&o, s.path, (const char *[]){ "ready", NULL })) {
		ASSERT_EQ(o.rc, 0, "synced: rc");
		HAS_LINE(o.out, "ready: configuration generation 3 is in the maps");
	}
	ctl_out_free(&o);
	/* --json changes nothing: the probe's answer is its exit code. */
	if (ctl_run(&o, s.path, (const char *[]){ "--json", "ready", NULL }))
		ASSERT_EQ(o.rc, 0, "synced --json: rc");
	ctl_out_free(&o);
	if (!srv_init(&u, "unsynced.sock", 0, 0, ctl_routes_unsynced) || !srv_run(&u))
		goto out;
	if (ctl_run(&o, u.path, (const char *[]){ "ready", NULL })) {
		ASSERT_EQ(o.rc, 1, "not synced: rc");
		ASSERT_STREQ(o.out, "", "not synced: stdout");
		ASSERT_HAS(o.err, "sluicectl: not ready: no configuration in the maps yet (source kubernetes, "
			   "config empty, the Kubernetes API not fully listed)", "not synced: why");
	}
	ctl_out_free(&o);
	/* No agent at all: not ready either. */
	if (ctl_run(&o, NULL, (const char *[]){ "--socket", "/nonexistent/agent.sock", "ready", NULL }))
		ASSERT_EQ(o.rc, 1, "no agent: rc");
	ctl_out_free(&o);
	/* The old agent of another container answered: not this one's readiness. */
	if (!srv_init(&p, "otherns.sock", 0, 0, ctl_routes_other_pidns) || !srv_run(&p))
		goto out;
	if (ctl_run(&o, p.path, (const char *[]){ "ready", NULL })) {
		ASSERT_EQ(o.rc, 1, "another pid namespace: rc");
		ASSERT_HAS(o.err, "not ready: the agent answering (pid 1 of another pid namespace) is not this "
			   "one: the takeover is not done", "another pid namespace: why");
	}
out:
	ctl_out_free(&o);
	srv_stop(&p);
	srv_stop(&u);
	srv_stop(&s);
}

/* A server that accepts but never answers: sluicectl gives up at --timeout. */
void test_status_cli_timeout(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctl_out o = { 0 };
	uint64_t t0;
	int fd;

	if (!ctl_path()) {
		test_skip("sluicectl not built beside test_progs (make build/sluicectl)");
		return;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/mute.sock", test_tmpdir());
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (!ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), "bind") ||
	    !ASSERT_OK(listen(fd, 4), "listen"))
		goto out;
	t0 = loop_now_ms();
	if (ctl_run(&o, NULL, (const char *[]){ "--timeout", "0.3", "-s", sa.sun_path, "status",
						NULL })) {
		ASSERT_EQ(o.rc, 1, "timeout rc");
		ASSERT_HAS(o.err, "no response within 0.3s", "timeout message");
		ASSERT_GE(loop_now_ms() - t0, 250, "waited");
		ASSERT_LE(loop_now_ms() - t0, 3000, "gave up");
	}
out:
	ctl_out_free(&o);
	close(fd);
}

/* ---- TCP listener with a text route (the metrics port) ---- */

static char *h_metrics(void *arg, const char *query, int *code, size_t *len)
{
	char *t = strdup("# TYPE x_total counter\nx_total 3\n");

	*len = t ? strlen(t) : 0;
	return t;
}

void test_status_tcp_text(void)
{
	struct srv s = { .stop_fd = -1 };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(15020) };
	struct rbuf rb = { 0 };
	struct resp r = { 0 };
	char b[128];
	int fd = -1;

	/* A private netns: the port is ours alone. */
	if (geteuid() != 0) {
		test_skip("needs root for a private netns");
		return;
	}
	if (!ASSERT_OK(unshare(CLONE_NEWNET), "unshare") || !ASSERT_OK(system("ip link set lo up"), "lo up"))
		return;
	if (!ASSERT_OK(loop_new(&s.loop), "loop_new") ||
	    !ASSERT_OK(status_new_tcp(&s.st, s.loop, "127.0.0.1", 15020), "status_new_tcp") ||
	    !ASSERT_OK(status_route_text(s.st, "/metrics", h_metrics, "text/plain; version=0.0.4", NULL),
		       "route") ||
	    !srv_run(&s))
		goto out;
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!ASSERT_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), "connect") ||
	    !ASSERT_OK(cli_sends(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), "send") ||
	    !ASSERT_OK(read_resp(fd, &rb, &r, false), "read"))
		goto out;
	ASSERT_EQ(r.code, 200, "200");
	ASSERT_STREQ(resp_hdr(&r, "Content-Type", b, sizeof(b)), "text/plain; version=0.0.4", "content type");
	ASSERT_STREQ(r.body, "# TYPE x_total counter\nx_total 3\n", "body as the handler wrote it");
out:
	if (fd >= 0)
		close(fd);
	resp_clear(&r);
	free(rb.data);
	srv_stop(&s);
}
