// SPDX-License-Identifier: Apache-2.0
/* test_waypoint.c - the L7 proxy's HTTP/1.1 mechanics with real sockets: a
 * client socket handed to waypoint_accept(), upstreams served by backend
 * threads speaking HTTP/1.1 as scripted. Routing itself is route.c's (see
 * test_route.c); here the waypoint forwards to the Service it was given, or
 * to what a route table built from YAML decides. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "lib/test.h"
#include "loop.h"
#include "model.h"
#include "route.h"
#include "waypoint.h"
#include "waypoint_int.h"	/* buffer sizes and spare sets, for the idle test */

enum backend_mode {
	BE_OK,			/* answer 200 with a body naming what it saw */
	BE_CLOSE_DELIMITED,	/* 200 without length, body, close */
	BE_CONTINUE,		/* 100 Continue first */
	BE_UPGRADE,		/* 101, then echo bytes */
	BE_STALL,		/* read, answer nothing */
	BE_RESET,		/* close at once */
	BE_HEAD_LEN,		/* Content-Length: 5 and no body (HEAD) */
	BE_FAIL_FIRST,		/* the first upstream answers 500, the second resets, then 200 */
	BE_RAW,			/* no HTTP: echo bytes; at EOF say "bye\n" and close */
	BE_BIG,			/* 200 KB chunked, with a trailer */
	BE_RESET_FIRST,		/* the first upstream closes at once (before the
				 * request's body), then as BE_OK */
};

static struct {
	struct loop *loop;
	struct waypoint *wp;
	pthread_t thr;
	int call_fd;
	struct loop_io call_io;
	void (*call_fn)(void *);
	void *call_arg;
	volatile int call_done;
	bool running;
	enum backend_mode mode;
	pthread_mutex_t mu;
	char seen[65536];		/* every request the backends read, raw */
	size_t seen_len;
	int upstreams;			/* opened */
	int h2_requests;		/* the HTTP/2 backends answered (BE_FAIL_FIRST counts them) */
	int h2_closed;			/* HTTP/2 backend connections that ended */
	int fail_upstream;		/* nonzero: ops->upstream returns it */
	struct route_table *routes;
	struct sl_model *model;
	char route_backend_seen[128];
	char gw_seen[128];		/* the Gateway ops->upstream was asked for */
	enum waypoint_proto proto;	/* what ops->upstream says the port speaks */
	size_t last_req_len;		/* the last request a backend read, in bytes */
	bool h2_connect;		/* the HTTP/2 backends take extended CONNECT */
} W;

/* ---- backend threads ---- */

static bool send_all(int fd, const char *s, size_t len);

/* Read one request (head and body) from fd into buf; its length, 0 on EOF. */
static size_t read_request(int fd, char *buf, size_t size)
{
	size_t len = 0;
	char *end = NULL;

	while (!end) {
		ssize_t n = read(fd, buf + len, size - 1 - len);

		if (n <= 0)
			return 0;
		len += (size_t)n;
		buf[len] = 0;
		end = strstr(buf, "\r\n\r\n");
	}
	{
		size_t head = (size_t)(end + 4 - buf);
		const char *cl = strcasestr(buf, "content-length:");
		bool chunked = strcasestr(buf, "transfer-encoding: chunked") != NULL;
		size_t want = cl && cl < end ? (size_t)strtoul(cl + 15, NULL, 10) : 0;

		if (strcasestr(buf, "expect: 100-continue") && W.mode == BE_CONTINUE &&
		    write(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 25)
			return 0;
		while (chunked ? !strstr(buf + head, "0\r\n\r\n") : len < head + want) {
			ssize_t n = read(fd, buf + len, size - 1 - len);

			if (n <= 0)
				return 0;
			len += (size_t)n;
			buf[len] = 0;
		}
	}
	return len;
}

static void *backend_main(void *arg)
{
	int fd = (int)(long)arg;
	char *req = W.mode == BE_RESET_FIRST && W.upstreams == 1 ? NULL : malloc(1 << 20);
	size_t len;

	while (req && (len = read_request(fd, req, 1 << 20))) {
		char resp[512];
		int n;

		pthread_mutex_lock(&W.mu);
		W.last_req_len = len;
		if (W.seen_len + len < sizeof(W.seen)) {
			memcpy(W.seen + W.seen_len, req, len);
			W.seen_len += len;
			W.seen[W.seen_len] = 0;
		}
		pthread_mutex_unlock(&W.mu);
		switch (W.mode) {
		case BE_FAIL_FIRST:
			if (W.upstreams == 1) {
				n = snprintf(resp, sizeof(resp), "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
				if (write(fd, resp, (size_t)n) != n)
					goto out;
				break;
			}
			if (W.upstreams == 2)
				goto out;	/* closed before any response */
			n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
			if (write(fd, resp, (size_t)n) != n)
				goto out;
			break;
		case BE_STALL:
			sleep(2);
			goto out;
		case BE_RESET:
		case BE_RAW:	/* served by raw_backend_main */
			goto out;
		case BE_CLOSE_DELIMITED:
			n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close");
			if (write(fd, resp, (size_t)n) != n)
				goto out;
			goto out;
		case BE_UPGRADE:
			n = snprintf(resp, sizeof(resp),
				     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n");
			if (write(fd, resp, (size_t)n) != n)
				goto out;
			for (;;) {
				char b[256];
				ssize_t r = read(fd, b, sizeof(b));

				if (r <= 0 || write(fd, b, (size_t)r) != r)
					goto out;
			}
		case BE_BIG: {
			static char chunk[4000 + 16];

			n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
			if (write(fd, resp, (size_t)n) != n)
				goto out;
			n = snprintf(chunk, sizeof(chunk), "fa0\r\n");
			memset(chunk + n, 'b', 4000);
			memcpy(chunk + n + 4000, "\r\n", 2);
			for (int i = 0; i < 50; i++)
				if (!send_all(fd, chunk, (size_t)n + 4002))
					goto out;
			if (!send_all(fd, "0\r\nX-Trl: yes\r\n\r\n", 17))
				goto out;
			break;
		}
		case BE_HEAD_LEN:
			n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
			if (write(fd, resp, (size_t)n) != n)
				goto out;
			break;
		case BE_OK:
		case BE_RESET_FIRST:
		case BE_CONTINUE: {
			char line[128];

			snprintf(line, sizeof(line), "%.*s", (int)strcspn(req, "\r\n"), req);
			n = snprintf(resp, sizeof(resp),
				     "HTTP/1.1 200 OK\r\nX-Backend: yes\r\nContent-Length: %zu\r\n\r\n%s",
				     strlen(line), line);
			if (write(fd, resp, (size_t)n) != n)
				goto out;
			break;
		}
		}
	}
out:
	free(req);
	close(fd);
	return NULL;
}

/* BE_RAW: what a TCPRoute backend might do, half-close included. */
static void *raw_backend_main(void *arg)
{
	int fd = (int)(long)arg;
	char b[4096];
	ssize_t n;

	while ((n = read(fd, b, sizeof(b))) > 0)
		if (write(fd, b, (size_t)n) != n)
			break;
	if (!n && write(fd, "bye\n", 4) != 4)
		n = -1;
	close(fd);
	return NULL;
}

/* ---- ops ---- */

static const struct route_set *op_routes(void *arg, const struct tunnel_client *cl,
					 const struct tunnel_addr *vip, const char *host,
					 struct route_backend *svc, bool *https)
{
	(void)arg, (void)vip, (void)https;
	if (!cl->ns[0]) {	/* a Gateway's client: its listener by Host, as gateways_routes */
		memset(svc, 0, sizeof(*svc));
		if (!host || !W.routes)
			return NULL;
		return route_for_listener(W.routes, "default", host[0] == 'a' ? "edge-a" : "edge-b", "http");
	}
	svc->ns = "default";
	svc->name = "web";
	svc->port = 80;
	return W.routes ? route_for_service(W.routes, cl->ns, "default", "web", 80) : NULL;
}

static int op_upstream(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
		       const struct route_backend *be, struct waypoint_dst *dst)
{
	pthread_t t;
	int sv[2];

	(void)arg, (void)vip;
	W.upstreams++;
	snprintf(W.route_backend_seen, sizeof(W.route_backend_seen), "%s/%s:%u", be->ns, be->name, be->port);
	snprintf(W.gw_seen, sizeof(W.gw_seen), "%s/%s", cl->gw_ns ? cl->gw_ns : "", cl->gw_name ? cl->gw_name : "");
	if (W.fail_upstream)
		return W.fail_upstream;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -errno;
	if (pthread_create(&t, NULL, W.mode == BE_RAW ? raw_backend_main : backend_main, (void *)(long)sv[1])) {
		close(sv[0]);
		close(sv[1]);
		return -EAGAIN;
	}
	pthread_detach(t);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	snprintf(dst->ns, sizeof(dst->ns), "default");
	snprintf(dst->pod, sizeof(dst->pod), "backend-0");
	snprintf(dst->workload, sizeof(dst->workload), "backend");
	dst->proto = W.proto;
	return sv[0];
}

static const struct waypoint_ops ops = { .routes = op_routes, .upstream = op_upstream };

/* ---- the loop thread ---- */

static void call_cb(struct loop_io *io, uint32_t ev)
{
	uint64_t v;

	(void)io, (void)ev;
	if (read(W.call_fd, &v, sizeof(v)) != sizeof(v))
		return;
	W.call_fn(W.call_arg);
	W.call_done = 1;
}

static void wcall(void (*fn)(void *), void *arg)
{
	uint64_t one = 1;

	W.call_fn = fn;
	W.call_arg = arg;
	W.call_done = 0;
	if (write(W.call_fd, &one, sizeof(one)) != sizeof(one))
		return;
	while (!W.call_done)
		usleep(500);
}

static void *loop_main(void *arg)
{
	(void)arg;
	loop_run(W.loop);
	return NULL;
}

static void stop_fn(void *arg)
{
	(void)arg;
	loop_stop(W.loop);
}

static bool setup_opts(const struct waypoint_opts *o);

static bool setup(unsigned int upstream_timeout_ms)
{
	struct waypoint_opts o = { .upstream_timeout_ms = upstream_timeout_ms, .header_timeout_ms = 3000 };

	return setup_opts(&o);
}

static bool setup_opts(const struct waypoint_opts *o)
{
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_init(&W.mu, NULL);
	if (!ASSERT_OK(loop_new(&W.loop), "loop_new") ||
	    !ASSERT_OK(waypoint_new(&W.wp, W.loop, &ops, NULL, o), "waypoint_new"))
		return false;
	W.call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!ASSERT_OK(loop_add(W.loop, &W.call_io, W.call_fd, EPOLLIN, call_cb, NULL), "loop_add"))
		return false;
	if (!ASSERT_OK(pthread_create(&W.thr, NULL, loop_main, NULL), "loop thread"))
		return false;
	W.running = true;
	return true;
}

static void teardown(void)
{
	if (W.running) {
		wcall(stop_fn, NULL);
		pthread_join(W.thr, NULL);
	}
	waypoint_free(W.wp);
	route_table_free(W.routes);
	model_free(W.model);
	if (W.loop) {
		loop_del(W.loop, &W.call_io);
		loop_free(W.loop);
	}
	if (W.call_fd > 0)
		close(W.call_fd);
}

static void accept_fn(void *arg)
{
	static const struct sl_ip ip = { .family = SL_AF_INET, .addr.octets = { 10, 0, 0, 1 } };
	struct tunnel_client cl = { .ns = "default", .name = "client-0", .service_account = "client",
				    .identity = "spiffe://cluster.local/ns/default/sa/client", .ips = &ip,
				    .n_ips = 1, .port = 40000 };
	struct tunnel_addr vip = { .ip = { .family = SL_AF_INET, .addr.octets = { 10, 96, 0, 1 } },
				   .port = 80 };

	waypoint_accept(W.wp, (int)(long)arg, &cl, &vip);
}

/* A client connection into the waypoint: our end, blocking. */
static int client(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	wcall(accept_fn, (void *)(long)sv[1]);
	return sv[0];
}

static bool send_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);

		if (n <= 0)
			return false;
		s += n;
		len -= (size_t)n;
	}
	return true;
}

static bool send_str(int fd, const char *s)
{
	return send_all(fd, s, strlen(s));
}

/* Read until want appears (or EOF / timeout); returns what was read. */
static char *read_until(int fd, const char *want, int timeout_ms)
{
	static char buf[1 << 16];
	size_t len = 0;

	buf[0] = 0;
	while (!want || !strstr(buf, want)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, timeout_ms) <= 0 || len + 1 >= sizeof(buf))
			break;
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = 0;
	}
	return buf;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

void test_waypoint_keepalive_and_pipelining(void)
{
	const char *two = "GET /a HTTP/1.1\r\nHost: web\r\n\r\nGET /b?x=1 HTTP/1.1\r\nHost: web\r\n\r\n";
	char *out;
	int fd;

	if (!setup(0))
		goto out;
	fd = client();
	if (!ASSERT_GE(fd, 0, "client"))
		goto out;
	ASSERT_TRUE(send_all(fd, two, strlen(two)), "send two pipelined");
	out = read_until(fd, "GET /b?x=1 HTTP/1.1", 3000);
	ASSERT_EQ(count(out, "HTTP/1.1 200 OK"), 2, "two responses");
	ASSERT_TRUE(strstr(out, "GET /a HTTP/1.1") < strstr(out, "GET /b?x=1 HTTP/1.1"), "in order");
	ASSERT_HAS(out, "X-Backend: yes", "response headers kept");
	ASSERT_EQ(W.upstreams, 1, "one upstream connection, reused");
	ASSERT_HAS(W.seen, "Host: web", "Host forwarded");
	/* a third request on the same connection */
	ASSERT_TRUE(send_str(fd, "GET /c HTTP/1.1\r\nHost: web\r\n\r\n"), "send third");
	out = read_until(fd, "GET /c HTTP/1.1", 3000);
	ASSERT_HAS(out, "GET /c HTTP/1.1", "third answered");
	close(fd);
out:
	teardown();
}

static struct waypoint_mem wp_mem;

static void mem_fn(void *arg)
{
	(void)arg;
	waypoint_mem_get(W.wp, &wp_mem);
}

/* An HTTP/1.1 connection idle between requests holds no buffers (about
 * 260 KiB of allocation each: 1,000 idle keep-alive connections kept 34 MiB
 * resident); they go to a few spare sets and come back with the next
 * request. */
void test_waypoint_idle_parks_buffers(void)
{
	enum { N = 24 };
	int fd[N];
	char *out;

	for (int i = 0; i < N; i++)
		fd[i] = -1;
	if (!setup(0))
		goto out;
	for (int i = 0; i < N; i++) {
		fd[i] = client();
		if (!ASSERT_GE(fd[i], 0, "client"))
			goto out;
		ASSERT_TRUE(send_str(fd[i], "GET /a HTTP/1.1\r\nHost: web\r\n\r\n"), "send");
		out = read_until(fd[i], "GET /a HTTP/1.1", 3000);
		ASSERT_HAS(out, "HTTP/1.1 200 OK", "first request answered");
	}
	wcall(mem_fn, NULL);
	ASSERT_EQ(wp_mem.conns, N, "all connections open");
	ASSERT_EQ(wp_mem.buf_bytes, 0, "idle keep-alive connections hold no buffers");
	ASSERT_LE(wp_mem.spare_bytes, WP_SPARE_BUFS * (2 * (IN_SIZE + OUT_SIZE) + sizeof(struct head) + 4096),
		  "spare sets bounded");
	ASSERT_GE(wp_mem.spare_bytes, 2 * (IN_SIZE + OUT_SIZE), "a spare set kept for the next request");
	/* the struct and a small kept copy of the request, not 34 KiB of head scratch */
	ASSERT_LE(wp_mem.conn_bytes, N * (sizeof(struct wconn) + 4096 + 64), "no head scratch while idle");
	/* the next request takes a set back, and is answered as before */
	for (int i = 0; i < N; i++) {
		ASSERT_TRUE(send_str(fd[i], "GET /b HTTP/1.1\r\nHost: web\r\n\r\n"), "send second");
		out = read_until(fd[i], "GET /b HTTP/1.1", 3000);
		ASSERT_HAS(out, "HTTP/1.1 200 OK", "second request on the parked connection answered");
	}
	/* a request in pieces: the connection keeps its buffers until it is whole */
	ASSERT_TRUE(send_str(fd[0], "GET /c HTTP/1.1\r\nHo"), "send part of a head");
	usleep(50000);
	wcall(mem_fn, NULL);
	ASSERT_GE(wp_mem.buf_bytes, 2 * (IN_SIZE + OUT_SIZE), "a connection in the middle of a head keeps its buffers");
	ASSERT_TRUE(send_str(fd[0], "st: web\r\n\r\n"), "send the rest");
	out = read_until(fd[0], "GET /c HTTP/1.1", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK", "the split head answered");
out:
	for (int i = 0; i < N; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	teardown();
}

static void drain_fn(void *arg)
{
	(void)arg;
	waypoint_drain(W.wp);
}

/* An upgrade (waypoint_drain): a connection between requests closes at once;
 * one in the middle of a request gets its response, saying Connection: close,
 * and then closes. */
void test_waypoint_drain(void)
{
	char *out;
	int idle = -1, busy = -1;

	if (!setup(0))
		goto out;
	idle = client();
	busy = client();
	if (!ASSERT_GE(idle, 0, "client") || !ASSERT_GE(busy, 0, "client"))
		goto out;
	ASSERT_TRUE(send_str(idle, "GET /a HTTP/1.1\r\nHost: web\r\n\r\n"), "idle: a request");
	out = read_until(idle, "GET /a HTTP/1.1", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK", "idle: answered");
	ASSERT_FALSE(strstr(out, "onnection: close"), "idle: kept alive before the drain");
	/* half a request on the other one */
	ASSERT_TRUE(send_str(busy, "GET /b HTTP/1.1\r\nHost: web\r\n"), "busy: half a head");
	usleep(50 * 1000);
	wcall(drain_fn, NULL);
	out = read_until(idle, NULL, 3000);	/* to EOF */
	ASSERT_STREQ(out, "", "idle: closed at once, nothing more sent");
	ASSERT_TRUE(send_str(busy, "\r\n"), "busy: the rest of the head");
	out = read_until(busy, NULL, 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK", "busy: answered");
	ASSERT_HAS(out, "onnection: close", "busy: told to close");
out:
	if (idle >= 0)
		close(idle);
	if (busy >= 0)
		close(busy);
	teardown();
}

void test_waypoint_chunked_body(void)
{
	const char *req = "POST /up HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
	char *out;
	int fd;

	if (!setup(0))
		goto out;
	fd = client();
	ASSERT_TRUE(send_all(fd, req, strlen(req)), "send");
	out = read_until(fd, "POST /up HTTP/1.1", 3000);
	ASSERT_HAS(out, "200 OK", "answered");
	ASSERT_HAS(W.seen, "\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "chunked body forwarded as sent");
	ASSERT_FALSE(strstr(W.seen, "\r\n\r\n\n"), "no stray byte after the head");
	close(fd);
out:
	teardown();
}

void test_waypoint_content_length_body_split(void)
{
	char *out;
	int fd;

	if (!setup(0))
		goto out;
	fd = client();
	/* the head and the body in several writes */
	ASSERT_TRUE(send_str(fd, "PUT /p HTTP/1.1\r\nHo"), "part 1");
	usleep(20000);
	ASSERT_TRUE(send_str(fd, "st: web\r\nContent-Length: 10\r\n\r\n01234"), "part 2");
	usleep(20000);
	ASSERT_TRUE(send_str(fd, "56789"), "part 3");
	out = read_until(fd, "PUT /p HTTP/1.1", 3000);
	ASSERT_HAS(out, "200 OK", "answered");
	ASSERT_HAS(W.seen, "Content-Length: 10\r\n\r\n0123456789", "body intact");
	close(fd);
out:
	teardown();
}

void test_waypoint_close_delimited_response(void)
{
	char *out;
	int fd;

	if (!setup(0))
		goto out;
	W.mode = BE_CLOSE_DELIMITED;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"), "send");
	out = read_until(fd, NULL, 3000);
	ASSERT_HAS(out, "200 OK", "status");
	ASSERT_HAS(out, "\r\n\r\nuntil-close", "body until the upstream closed");
	close(fd);
out:
	teardown();
}

void test_waypoint_expect_continue(void)
{
	char *out;
	int fd;

	if (!setup(0))
		goto out;
	W.mode = BE_CONTINUE;
	fd = client();
	ASSERT_TRUE(send_str(fd, "POST /c HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"), "head");
	out = read_until(fd, "100 Continue\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 100 Continue", "interim response passed on");
	ASSERT_TRUE(send_str(fd, "data"), "body");
	out = read_until(fd, "POST /c HTTP/1.1", 3000);
	ASSERT_HAS(out, "200 OK", "final response");
	close(fd);
out:
	teardown();
}

void test_waypoint_head_response(void)
{
	char *out;
	int fd;

	if (!setup(0))
		goto out;
	W.mode = BE_HEAD_LEN;
	fd = client();
	ASSERT_TRUE(send_str(fd, "HEAD /h HTTP/1.1\r\nHost: web\r\n\r\n"), "HEAD");
	out = read_until(fd, "Content-Length: 5\r\n\r\n", 3000);
	ASSERT_HAS(out, "200 OK", "HEAD answered");
	W.mode = BE_OK;
	ASSERT_TRUE(send_str(fd, "GET /after HTTP/1.1\r\nHost: web\r\n\r\n"), "GET after HEAD");
	out = read_until(fd, "GET /after", 3000);
	ASSERT_HAS(out, "GET /after", "the connection goes on after a bodiless HEAD response");
	close(fd);
out:
	teardown();
}

void test_waypoint_upgrade(void)
{
	char *out;
	int fd;

	if (!setup(0))
		goto out;
	W.mode = BE_UPGRADE;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n"), "upgrade");
	out = read_until(fd, "\r\n\r\n", 3000);
	ASSERT_HAS(out, "101 Switching Protocols", "101 passed on");
	ASSERT_TRUE(send_str(fd, "raw bytes\n"), "raw");
	out = read_until(fd, "raw bytes\n", 3000);
	ASSERT_HAS(out, "raw bytes", "bytes both ways after 101");
	close(fd);
out:
	teardown();
}

void test_waypoint_bad_requests(void)
{
	char big[WAYPOINT_HEAD_MAX + 100];
	char *out;
	int fd;

	if (!setup(0))
		goto out;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GARBAGE\r\n\r\n"), "garbage");
	out = read_until(fd, NULL, 3000);
	ASSERT_HAS(out, "HTTP/1.1 400 Bad Request", "400");
	close(fd);
	fd = client();
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX-Big: ", 23);
	send_all(fd, big, sizeof(big));
	out = read_until(fd, NULL, 3000);
	ASSERT_HAS(out, "HTTP/1.1 431", "431 for an oversized head");
	close(fd);
	fd = client();
	{
		char many[8192];
		size_t n = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\n");

		for (int i = 0; i < WAYPOINT_HEADERS_MAX + 5; i++)
			n += (size_t)snprintf(many + n, sizeof(many) - n, "h%d: v\r\n", i);
		n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
		send_all(fd, many, n);
	}
	out = read_until(fd, NULL, 3000);
	ASSERT_HAS(out, "HTTP/1.1 431", "431 for too many fields");
	ASSERT_EQ(W.upstreams, 0, "nothing went upstream");
	close(fd);
out:
	teardown();
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Drip a head's fields every 50 ms until the waypoint closes the connection
 * (or limit_ms pass); how long it took, in ms. */
static uint64_t drip_until_closed(int fd, uint64_t limit_ms)
{
	uint64_t t0 = mono_ms();

	while (mono_ms() - t0 < limit_ms) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char b[4096];

		if (poll(&p, 1, 50) > 0 && read(fd, b, sizeof(b)) <= 0)
			break;
		if (send(fd, "X-Slow: y\r\n", 11, MSG_NOSIGNAL) < 0)
			break;
	}
	return mono_ms() - t0;
}

/* Slowloris: a head dripped byte by byte is cut off at the header deadline,
 * on a new connection and on a keep-alive one after its first request (whose
 * idle deadline is far longer); a client that sends whole requests is
 * served all along. */
void test_waypoint_slow_heads(void)
{
	struct waypoint_opts o = { .header_timeout_ms = 300, .idle_timeout_ms = 60000 };
	char *out;
	int slow, ka, good;

	if (!setup_opts(&o))
		goto out;
	slow = client();
	ASSERT_TRUE(send_str(slow, "GET / HTTP/1.1\r\nHost: web\r\n"), "slow head begins");
	ASSERT_LE(drip_until_closed(slow, 5000), 2000, "a dripped head is cut off near 300 ms");
	good = client();
	ASSERT_TRUE(send_str(good, "GET /g HTTP/1.1\r\nHost: web\r\n\r\n"), "whole request");
	out = read_until(good, "GET /g HTTP/1.1", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK", "a whole request is answered meanwhile");
	close(slow);

	ka = client();
	ASSERT_TRUE(send_str(ka, "GET /1 HTTP/1.1\r\nHost: web\r\n\r\n"), "first request");
	out = read_until(ka, "GET /1 HTTP/1.1", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK", "first request answered");
	usleep(100 * 1000);
	ASSERT_TRUE(send_str(ka, "GET /2 HTTP/1.1\r\n"), "second head begins");
	ASSERT_LE(drip_until_closed(ka, 5000), 2000, "a dripped keep-alive head is cut off too, not after 60 s");
	close(ka);
	ASSERT_TRUE(send_str(good, "GET /h HTTP/1.1\r\nHost: web\r\n\r\n"), "whole request again");
	out = read_until(good, "GET /h HTTP/1.1", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK", "the well-behaved connection is still served");
	close(good);
out:
	teardown();
}

void test_waypoint_upstream_failures(void)
{
	char *out;
	int fd;

	if (!setup(300))
		goto out;
	W.fail_upstream = -ENOENT;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"), "send");
	out = read_until(fd, "\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 503", "no endpoint: 503");
	close(fd);
	W.fail_upstream = 0;
	W.mode = BE_RESET;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"), "send");
	out = read_until(fd, "\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 503", "upstream closed before a response: 503");
	close(fd);
	W.mode = BE_STALL;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET / HTTP/1.1\r\nHost: web\r\n\r\n"), "send");
	out = read_until(fd, "\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 504", "no response in time: 504");
	close(fd);
out:
	teardown();
}

static void relay_fn(void *arg)
{
	static const struct tunnel_client gw = { .ns = "", .name = "sluice-gateway", .service_account = "",
						 .identity = "", .gw_ns = "gw-ns", .gw_name = "l4" };
	struct tunnel_addr local = { .ip = { .family = SL_AF_INET, .addr.octets = { 10, 99, 0, 1 } }, .port = 9000 };
	struct route_backend be = { "default", "db", 5432 };

	waypoint_relay(W.wp, (int)(long)arg, &gw, &local, &be);
}

/* A Gateway TCP listener's connection relayed to a backend: bytes both ways,
 * the client's half-close passed on, the backend's answer to it and its own
 * end back; no backend: the connection closed at once. */
void test_waypoint_relay(void)
{
	struct waypoint_stats st;
	uint64_t t0;
	char *out;
	int sv[2], fd;

	if (!setup(0))
		goto out;
	W.mode = BE_RAW;
	if (!ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), "socketpair"))
		goto out;
	fd = sv[0];
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	wcall(relay_fn, (void *)(long)sv[1]);
	ASSERT_STREQ(W.route_backend_seen, "default/db:5432", "the route's backend asked for");
	ASSERT_STREQ(W.gw_seen, "gw-ns/l4", "the Gateway (its identity) passed to the upstream");
	ASSERT_TRUE(send_str(fd, "GET / HTTP/1.1\r\n\r\nnot parsed\n"), "send");
	out = read_until(fd, "not parsed\n", 3000);
	ASSERT_STREQ(out, "GET / HTTP/1.1\r\n\r\nnot parsed\n", "echoed untouched (no HTTP parsing)");
	ASSERT_OK(shutdown(fd, SHUT_WR), "half-close");
	t0 = loop_now_ms();
	out = read_until(fd, NULL, 3000);
	ASSERT_LE(loop_now_ms() - t0, 1000, "the end passed on at once (not after a timeout)");
	ASSERT_STREQ(out, "bye\n", "the backend saw the end, answered, and its end came back");
	close(fd);
	waypoint_stats_get(W.wp, &st);
	ASSERT_EQ(st.requests_total, 0, "no requests counted");
	W.fail_upstream = -ENOENT;
	if (!ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), "socketpair"))
		goto out;
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	wcall(relay_fn, (void *)(long)sv[1]);
	t0 = loop_now_ms();
	out = read_until(sv[0], NULL, 3000);
	ASSERT_STREQ(out, "", "no endpoint: closed at once, nothing said");
	ASSERT_LE(loop_now_ms() - t0, 1000, "at once");
	close(sv[0]);
out:
	W.fail_upstream = 0;
	teardown();
}

static const char routes_yaml[] =
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
	"spec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 80, targetPort: 8080}]}\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: v2, namespace: default}\n"
	"spec: {clusterIP: 10.96.0.2, ports: [{name: http, port: 80, targetPort: 8080}]}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
	"metadata: {name: r, namespace: default}\n"
	"spec:\n"
	"  parentRefs: [{group: \"\", kind: Service, name: web, port: 80}]\n"
	"  rules:\n"
	"  - matches: [{path: {type: PathPrefix, value: /v2}}]\n"
	"    filters:\n"
	"    - type: RequestHeaderModifier\n"
	"      requestHeaderModifier: {set: [{name: x-set, value: one}], remove: [x-gone]}\n"
	"    - type: ResponseHeaderModifier\n"
	"      responseHeaderModifier: {add: [{name: x-resp, value: added}], remove: [x-backend]}\n"
	"    - type: URLRewrite\n"
	"      urlRewrite: {hostname: rewritten.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}\n"
	"    backendRefs: [{name: v2, port: 80}]\n"
	"  - matches: [{path: {type: PathPrefix, value: /retry}}]\n"
	"    retry: {codes: [500], attempts: 2, backoff: 10ms}\n"
	"    backendRefs: [{name: v2, port: 80}]\n"
	"  - matches: [{path: {type: PathPrefix, value: /slowretry}}]\n"
	"    retry: {attempts: 1, backoff: 300ms}\n"
	"    backendRefs: [{name: v2, port: 80}]\n"
	"  - matches: [{path: {type: PathPrefix, value: /wsget}, method: GET}]\n"
	"    backendRefs: [{name: v2, port: 80}]\n"
	"  - matches: [{path: {type: Exact, value: /old}}]\n"
	"    filters:\n"
	"    - type: RequestRedirect\n"
	"      requestRedirect: {hostname: new.example, statusCode: 301}\n";

void test_waypoint_routed(void)
{
	struct sl_resources *res = config_resources_new();
	struct diags errs = { 0 };
	char *out;
	int fd;

	if (!ASSERT_OK_PTR(res, "resources") ||
	    !ASSERT_OK(config_decode_buf(res, "routes.yaml", routes_yaml, strlen(routes_yaml), &errs), "decode") ||
	    !ASSERT_OK(model_build(res, "node-1", &W.model, &errs), "model") ||
	    !ASSERT_OK(route_table_build(W.model, &W.routes, &errs), "routes"))
		goto out;
	if (!setup(0))
		goto out;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET /v2/x?q=1 HTTP/1.1\r\nHost: web\r\nX-Gone: a\r\nX-Set: zero\r\n\r\n"),
		    "send");
	out = read_until(fd, "GET /x?q=1", 3000);
	ASSERT_HAS(out, "x-resp: added", "response header added");
	ASSERT_FALSE(strcasestr(out, "x-backend"), "response header removed");
	ASSERT_HAS(W.seen, "GET /x?q=1 HTTP/1.1", "prefix rewritten, query kept");
	ASSERT_HAS(W.seen, "rewritten.example", "host rewritten");
	ASSERT_TRUE(strcasestr(W.seen, "x-set: one"), "header set");
	ASSERT_FALSE(strstr(W.seen, "X-Set: zero"), "old value replaced");
	ASSERT_FALSE(strcasestr(W.seen, "x-gone"), "header removed");
	ASSERT_STREQ(W.route_backend_seen, "default/v2:80", "backend from the route");
	ASSERT_TRUE(send_str(fd, "GET /old HTTP/1.1\r\nHost: web\r\n\r\n"), "redirect");
	out = read_until(fd, "\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 301", "redirect status");
	ASSERT_HAS(out, "location: http://new.example/old", "Location");
	ASSERT_TRUE(send_str(fd, "GET /nothing HTTP/1.1\r\nHost: web\r\n\r\n"), "no match");
	out = read_until(fd, "\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 404", "no rule matched: 404");
	close(fd);
out:
	diags_clear(&errs);
	teardown();
}

static const char gateways_yaml[] =
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n"
	"---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
	"spec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 80, targetPort: 8080}]}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: sluice}\n"
	"spec: {controllerName: sluice.io/gateway-controller}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge-a, namespace: default}\n"
	"spec: {gatewayClassName: sluice, listeners: [{name: http, port: 80, protocol: HTTP, hostname: a.example}]}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge-b, namespace: default}\n"
	"spec: {gatewayClassName: sluice, listeners: [{name: http, port: 80, protocol: HTTP, hostname: b.example}]}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: ra, namespace: default}\n"
	"spec: {parentRefs: [{name: edge-a}], rules: [{backendRefs: [{name: web, port: 80}]}]}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: rb, namespace: default}\n"
	"spec: {parentRefs: [{name: edge-b}], rules: [{backendRefs: [{name: web, port: 80}]}]}\n";

static void accept_gw_fn(void *arg)
{
	static const struct tunnel_client cl = { .ns = "", .name = "sluice-gateway", .service_account = "",
						 .identity = "" };
	struct tunnel_addr local = { .ip = { .family = SL_AF_INET, .addr.octets = { 10, 99, 0, 1 } }, .port = 80 };

	waypoint_accept(W.wp, (int)(long)arg, &cl, &local);
}

/* Two Gateways on one socket (Host picks the listener): each request's
 * upstream is asked for with the Gateway whose listener took it (its
 * identity into the mesh), and a kept-alive upstream opened for one Gateway
 * is not reused for the other's request, even to the same backend. */
void test_waypoint_gateway_identity(void)
{
	struct sl_resources *res = config_resources_new();
	struct diags errs = { 0 };
	int sv[2], fd = -1;
	char *out;

	if (!ASSERT_OK_PTR(res, "resources") ||
	    !ASSERT_OK(config_decode_buf(res, "gw.yaml", gateways_yaml, strlen(gateways_yaml), &errs), "decode") ||
	    !ASSERT_OK(model_build(res, "node-1", &W.model, &errs), "model") ||
	    !ASSERT_OK(route_table_build(W.model, &W.routes, &errs), "routes") ||
	    !ASSERT_OK_PTR(route_for_listener(W.routes, "default", "edge-b", "http"), "edge-b's routes"))
		goto out;
	if (!setup(0) || !ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), "socketpair"))
		goto out;
	fd = sv[0];
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	wcall(accept_gw_fn, (void *)(long)sv[1]);
	ASSERT_TRUE(send_str(fd, "GET /1 HTTP/1.1\r\nHost: a.example\r\n\r\n"), "send a");
	out = read_until(fd, "GET /1 HTTP/1.1", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200", "a.example: routed");
	ASSERT_STREQ(W.gw_seen, "default/edge-a", "a.example: upstream for edge-a");
	ASSERT_TRUE(send_str(fd, "GET /2 HTTP/1.1\r\nHost: a.example\r\n\r\n"), "send a again");
	out = read_until(fd, "GET /2 HTTP/1.1", 3000);
	ASSERT_EQ(W.upstreams, 1, "same Gateway, same backend: the upstream kept alive");
	ASSERT_TRUE(send_str(fd, "GET /3 HTTP/1.1\r\nHost: b.example\r\n\r\n"), "send b");
	out = read_until(fd, "GET /3 HTTP/1.1", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200", "b.example: routed");
	ASSERT_STREQ(W.gw_seen, "default/edge-b", "b.example: upstream for edge-b");
	ASSERT_EQ(W.upstreams, 2, "another Gateway: its own upstream");
out:
	if (fd >= 0)
		close(fd);
	diags_clear(&errs);
	teardown();
}

/* ---- HTTP/2 ---- */

#include <nghttp2/nghttp2.h>

/* A blocking HTTP/2 peer over fd: the test's client, or a backend thread. */
struct h2peer {
	int fd;
	nghttp2_session *ng;
	bool server;
	/* server: what it saw; client: what came back */
	char seen_path[256], seen_auth[256], seen_hdrs[2048], body[4096];
	size_t body_len, total_len;	/* kept, and all */
	int status, done;
	char trailers[512];
	int32_t sid;
	int goaway;			/* a GOAWAY came: its error code + 1 */
	/* server: a WebSocket (extended CONNECT) stream, echoed */
	int32_t ws_sid;
	bool ws_end;
	size_t echo_off;
};

static ssize_t h2p_send(nghttp2_session *ng, const uint8_t *d, size_t len, int flags, void *ud)
{
	struct h2peer *p = ud;

	(void)ng, (void)flags;
	return send_all(p->fd, (const char *)d, len) ? (ssize_t)len : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int h2p_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *n, size_t nl, const uint8_t *v,
		      size_t vl, uint8_t flags, void *ud)
{
	struct h2peer *p = ud;
	size_t l = strlen(p->seen_hdrs);

	(void)ng, (void)flags;
	if (nl == 5 && !memcmp(n, ":path", 5))
		snprintf(p->seen_path, sizeof(p->seen_path), "%.*s", (int)vl, (const char *)v);
	else if (nl == 10 && !memcmp(n, ":authority", 10))
		snprintf(p->seen_auth, sizeof(p->seen_auth), "%.*s", (int)vl, (const char *)v);
	else if (nl == 7 && !memcmp(n, ":status", 7))
		p->status = atoi((const char *)v);
	else if (f->headers.cat == NGHTTP2_HCAT_HEADERS && !p->server)
		snprintf(p->trailers + strlen(p->trailers), sizeof(p->trailers) - strlen(p->trailers), "%.*s=%.*s;",
			 (int)nl, (const char *)n, (int)vl, (const char *)v);
	else
		snprintf(p->seen_hdrs + l, sizeof(p->seen_hdrs) - l, "%.*s=%.*s;", (int)nl, (const char *)n, (int)vl,
			 (const char *)v);
	return 0;
}

static int h2p_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *d, size_t len, void *ud)
{
	struct h2peer *p = ud;

	(void)ng, (void)flags, (void)sid;
	p->total_len += len;
	if (p->body_len + len < sizeof(p->body)) {
		memcpy(p->body + p->body_len, d, len);
		p->body_len += len;
	}
	return 0;
}

static ssize_t h2p_body(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *ud)
{
	const char *text = src->ptr;
	size_t n = strlen(text);

	(void)ng, (void)sid, (void)ud;
	if (n > len)
		n = len;
	memcpy(buf, text, n);
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	if (strstr(text, "grpc")) {	/* a gRPC-like answer: trailers after the body */
		static const nghttp2_nv trl[] = { { (uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0 } };

		*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		nghttp2_submit_trailer(ng, sid, trl, 1);
	}
	return (ssize_t)n;
}

#define HUGE_BODY	(256 * 1024)	/* past a client's window and the waypoint's buffer */

/* /huge's body, HUGE_BODY bytes of 'h' (src->ptr: what went, malloc'ed) */
static ssize_t h2p_huge(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *ud)
{
	size_t *sent = src->ptr, n = HUGE_BODY - *sent < len ? HUGE_BODY - *sent : len;

	(void)ng, (void)sid, (void)ud;
	memset(buf, 'h', n);
	*sent += n;
	if (*sent == HUGE_BODY) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		free(sent);
	}
	return (ssize_t)n;
}

/* The WebSocket stream's DATA back as they came; its end after theirs. */
static ssize_t h2p_echo(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *ud)
{
	struct h2peer *p = ud;
	size_t n = p->body_len - p->echo_off < len ? p->body_len - p->echo_off : len;

	(void)ng, (void)sid, (void)src;
	memcpy(buf, p->body + p->echo_off, n);
	p->echo_off += n;
	if (p->echo_off == p->body_len && p->ws_end)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	else if (!n)
		return NGHTTP2_ERR_DEFERRED;
	return (ssize_t)n;
}

/* A server's extended CONNECT (:protocol websocket): 200, then an echo. */
static bool h2p_websocket(struct h2peer *p, nghttp2_session *ng, const nghttp2_frame *f)
{
	nghttp2_data_provider prd = { .read_callback = h2p_echo };
	nghttp2_nv nv[] = { { (uint8_t *)":status", (uint8_t *)"200", 7, 3, 0 } };

	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST &&
	    strstr(p->seen_hdrs, ":protocol=websocket")) {
		pthread_mutex_lock(&W.mu);
		snprintf(W.seen + W.seen_len, sizeof(W.seen) - W.seen_len, "path=%s auth=%s hdrs=%s\n",
			 p->seen_path, p->seen_auth, p->seen_hdrs);
		W.seen_len = strlen(W.seen);
		pthread_mutex_unlock(&W.mu);
		p->seen_hdrs[0] = 0;
		p->ws_sid = f->hd.stream_id;
		p->ws_end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
		nghttp2_submit_response(ng, p->ws_sid, nv, 1, &prd);
		return true;
	}
	if (!p->ws_sid || f->hd.stream_id != p->ws_sid)
		return false;
	if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
		p->ws_end = true;
	nghttp2_session_resume_data(ng, p->ws_sid);
	return true;
}

static int h2p_frame(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct h2peer *p = ud;

	if (p->server && h2p_websocket(p, ng, f))
		return 0;

	if (p->server && (f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		static char body[] = "hello from h2 grpc";
		static char big[4097];
		nghttp2_data_provider prd = { .source.ptr = body, .read_callback = h2p_body };

		if (strstr(p->seen_path, "/big")) {
			memset(big, 'b', sizeof(big) - 1);
			prd.source.ptr = big;
		} else if (strstr(p->seen_path, "/huge")) {
			prd.source.ptr = calloc(1, sizeof(size_t));
			prd.read_callback = h2p_huge;
		}
		nghttp2_nv nv[] = { { (uint8_t *)":status", (uint8_t *)"200", 7, 3, 0 },
				    { (uint8_t *)"x-backend", (uint8_t *)"h2", 9, 2, 0 } };

		int nth;

		pthread_mutex_lock(&W.mu);
		snprintf(W.seen + W.seen_len, sizeof(W.seen) - W.seen_len, "path=%s auth=%s hdrs=%s body=%.*s\n",
			 p->seen_path, p->seen_auth, p->seen_hdrs, (int)p->body_len, p->body);
		W.seen_len = strlen(W.seen);
		nth = ++W.h2_requests;
		pthread_mutex_unlock(&W.mu);
		p->body_len = 0;
		p->seen_hdrs[0] = 0;
		if (W.mode == BE_FAIL_FIRST && nth == 1) {	/* as backend_main's: 500, */
			nv[0].value = (uint8_t *)"500";
			prd.source.ptr = (void *)"";
		} else if (W.mode == BE_FAIL_FIRST && nth == 2) {	/* then a reset */
			nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_INTERNAL_ERROR);
			return 0;
		}
		nghttp2_submit_response(ng, f->hd.stream_id, nv, 2, &prd);
	}
	if (!p->server && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && f->hd.stream_id == p->sid)
		p->done = 1;
	if (f->hd.type == NGHTTP2_GOAWAY)
		p->goaway = (int)f->goaway.error_code + 1;
	return 0;
}

static int h2p_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
	struct h2peer *p = ud;

	(void)ng, (void)code;
	if (!p->server && sid == p->sid)
		p->done = 1;
	return 0;
}

static const nghttp2_settings_entry ws_on = { NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 };

static bool h2p_init(struct h2peer *p, int fd, bool server)
{
	nghttp2_session_callbacks *cb;
	int r;

	memset(p, 0, sizeof(*p));
	p->fd = fd;
	p->server = server;
	if (nghttp2_session_callbacks_new(&cb))
		return false;
	nghttp2_session_callbacks_set_send_callback(cb, h2p_send);
	nghttp2_session_callbacks_set_on_header_callback(cb, h2p_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2p_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2p_frame);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2p_close);
	r = server ? nghttp2_session_server_new(&p->ng, cb, p) : nghttp2_session_client_new(&p->ng, cb, p);
	nghttp2_session_callbacks_del(cb);
	return !r && !nghttp2_submit_settings(p->ng, NGHTTP2_FLAG_NONE, &ws_on, server && W.h2_connect) &&
	       !nghttp2_session_send(p->ng);
}

/* Run the session until done (client) or EOF (server), or timeout. */
static void h2p_run(struct h2peer *p, int timeout_ms)
{
	char in[16384];

	while (!p->done) {
		struct pollfd pf = { .fd = p->fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pf, 1, timeout_ms) <= 0)
			break;
		n = read(p->fd, in, sizeof(in));
		if (n <= 0 || nghttp2_session_mem_recv(p->ng, (const uint8_t *)in, (size_t)n) < 0 ||
		    nghttp2_session_send(p->ng))
			break;
	}
}

static void *h2_backend_main(void *arg)
{
	struct h2peer p = { 0 };

	/* BE_RESET (BE_RESET_FIRST: the first): closed before a byte, as
	 * backend_main's */
	if (W.mode != BE_RESET && !(W.mode == BE_RESET_FIRST && W.upstreams == 1) &&
	    h2p_init(&p, (int)(long)arg, true))
		h2p_run(&p, 3000);
	nghttp2_session_del(p.ng);
	close((int)(long)arg);
	__atomic_add_fetch(&W.h2_closed, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static int op_upstream_h2(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
			  const struct route_backend *be, struct waypoint_dst *dst)
{
	pthread_t t;
	int sv[2];

	(void)arg, (void)cl, (void)vip;
	dst->proto = W.proto;
	W.upstreams++;
	snprintf(W.route_backend_seen, sizeof(W.route_backend_seen), "%s/%s:%u", be->ns, be->name, be->port);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) ||
	    pthread_create(&t, NULL, h2_backend_main, (void *)(long)sv[1]))
		return -EAGAIN;
	pthread_detach(t);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	return sv[0];
}

/* routes_yaml's table, and the waypoint with ops (NULL: the HTTP/1.1
 * backends' ops), its loop running. */
static bool setup_routed(const struct waypoint_ops *o, struct diags *errs)
{
	struct sl_resources *res = config_resources_new();

	if (!ASSERT_OK(config_decode_buf(res, "routes.yaml", routes_yaml, strlen(routes_yaml), errs), "decode") ||
	    !ASSERT_OK(model_build(res, "node-1", &W.model, errs), "model") ||
	    !ASSERT_OK(route_table_build(W.model, &W.routes, errs), "routes") || !setup(0))
		return false;
	if (!o)
		return true;
	waypoint_free(W.wp);	/* again, with these ops */
	return ASSERT_OK(waypoint_new(&W.wp, W.loop, o, NULL, NULL), "waypoint_new");
}

static size_t h2p_req_off;	/* how much of the body went */
static size_t h2p_req_hold;	/* not 0: the body stops there until set to 0 */

static ssize_t h2p_req_body(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
			    nghttp2_data_source *src, void *ud)
{
	const char *text = src->ptr;
	size_t n = (h2p_req_hold ? h2p_req_hold : strlen(text)) - h2p_req_off;

	(void)ng, (void)sid, (void)ud;
	if (!n)
		return NGHTTP2_ERR_DEFERRED;
	if (n > len)
		n = len;
	memcpy(buf, text + h2p_req_off, n);
	h2p_req_off += n;
	if (!text[h2p_req_off])
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* One request from a fresh HTTP/2 client connection (POST; body: none when NULL). */
static bool h2_request_body(struct h2peer *p, const char *path, const char *ctype, const char *body)
{
	int fd = client();
	nghttp2_data_provider prd = { .source.ptr = (void *)body, .read_callback = h2p_req_body };
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"web", 10, 3, 0 },
		{ (uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0 },
		{ (uint8_t *)"content-type", (uint8_t *)ctype, 12, strlen(ctype), 0 },
		{ (uint8_t *)"x-gone", (uint8_t *)"1", 6, 1, 0 },
		{ (uint8_t *)"cookie", (uint8_t *)"a=1", 6, 3, 0 },
		{ (uint8_t *)"cookie", (uint8_t *)"b=2", 6, 3, 0 },
	};

	/* nghttp2's client session sends the preface itself */
	if (fd < 0 || !h2p_init(p, fd, false))
		return false;
	h2p_req_off = 0;
	p->sid = nghttp2_submit_request(p->ng, NULL, nv, 8, body ? &prd : NULL, NULL);
	if (p->sid < 0 || nghttp2_session_send(p->ng))
		return false;
	h2p_run(p, 3000);
	nghttp2_session_del(p->ng);
	close(fd);
	return p->done;
}

static bool h2_request(struct h2peer *p, const char *path, const char *ctype)
{
	return h2_request_body(p, path, ctype, NULL);
}

/* Many streams of 4 KiB answers on one connection: more than the 64 KiB
 * windows, so the waypoint must give the bytes back on both sessions. */
static int h2_many(int n)
{
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"web", 10, 3, 0 },
		{ (uint8_t *)":path", (uint8_t *)"/v2/big", 5, 7, 0 },
	};
	struct h2peer p;
	int fd = client(), done = 0;

	if (fd < 0 || !h2p_init(&p, fd, false))
		return -1;
	for (int i = 0; i < n; i++) {
		p.done = 0;
		p.body_len = 0;
		p.sid = nghttp2_submit_request(p.ng, NULL, nv, 4, NULL, NULL);
		if (p.sid < 0 || nghttp2_session_send(p.ng))
			break;
		h2p_run(&p, 3000);
		if (!p.done)
			break;
		done++;
	}
	nghttp2_session_del(p.ng);
	close(fd);
	return done;
}

void test_waypoint_h2(void)
{
	static const struct waypoint_ops ops_h2 = { .routes = op_routes, .upstream = op_upstream_h2 };
	struct diags errs = { 0 };
	struct h2peer p;

	if (!setup_routed(&ops_h2, &errs))
		goto out;
	/* routed, rewritten, header edits both ways, trailers passed on */
	ASSERT_TRUE(h2_request(&p, "/v2/call?x=1", "application/grpc"), "h2 request answered");
	ASSERT_EQ(p.status, 200, "status");
	ASSERT_HAS(W.seen, "path=/call?x=1", "prefix rewritten upstream");
	ASSERT_HAS(W.seen, "auth=rewritten.example", "authority rewritten");
	ASSERT_HAS(W.seen, "x-set=one", "request header set");
	ASSERT_FALSE(strstr(W.seen, "x-gone"), "request header removed");
	ASSERT_STREQ(W.route_backend_seen, "default/v2:80", "backend from the route");
	ASSERT_HAS(p.seen_hdrs, "x-resp=added", "response header added");
	ASSERT_FALSE(strstr(p.seen_hdrs, "x-backend"), "response header removed");
	ASSERT_TRUE(p.body_len && strstr(p.body, "hello from h2"), "body");
	ASSERT_HAS(p.trailers, "grpc-status=0", "trailers passed on");
	/* no route: gRPC gets a trailers-only UNIMPLEMENTED (12) */
	ASSERT_TRUE(h2_request(&p, "/nothing", "application/grpc"), "no route answered");
	ASSERT_EQ(p.status, 200, "gRPC status rides on 200");
	ASSERT_HAS(p.seen_hdrs, "grpc-status=12", "no route: UNIMPLEMENTED");
	/* plain HTTP/2: 404, and a redirect */
	ASSERT_TRUE(h2_request(&p, "/nothing", "text/plain"), "404 answered");
	ASSERT_EQ(p.status, 404, "no route: 404");
	ASSERT_TRUE(h2_request(&p, "/old", "text/plain"), "redirect answered");
	ASSERT_EQ(p.status, 301, "redirect status");
	ASSERT_HAS(p.seen_hdrs, "location=http://new.example/old", "Location");
	ASSERT_EQ(h2_many(100), 100, "100 streams of 4 KiB on one connection (past the 64 KiB windows)");
out:
	diags_clear(&errs);
	teardown();
}

void test_waypoint_retry(void)
{
	struct diags errs = { 0 };
	char *out;
	int fd;

	if (!setup_routed(NULL, &errs))
		goto out;
	W.mode = BE_FAIL_FIRST;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET /retry HTTP/1.1\r\nHost: web\r\n\r\n"), "send");
	out = read_until(fd, "\r\n\r\nok", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK", "a 500 and a reset retried: the third answer goes back");
	ASSERT_FALSE(strstr(out, "500"), "the retried 500 is not seen");
	ASSERT_EQ(W.upstreams, 3, "three upstream connections");
	ASSERT_EQ(count(W.seen, "GET /retry HTTP/1.1"), 3, "the request went three times");
	close(fd);
out:
	diags_clear(&errs);
	teardown();
}

/* An HTTP/2 client to a backend whose port says appProtocol http: each
 * stream becomes an HTTP/1.1 request on a pooled connection, and the answer
 * comes back as HTTP/2. */
void test_waypoint_h2_to_h1(void)
{
	struct diags errs = { 0 };
	struct h2peer p;

	if (!setup_routed(NULL, &errs))
		goto out;
	W.mode = BE_OK;
	W.proto = WAYPOINT_PROTO_HTTP1;
	ASSERT_TRUE(h2_request(&p, "/v2/call?x=1", "text/plain"), "h2 request answered");
	ASSERT_EQ(p.status, 200, "status");
	ASSERT_HAS(W.seen, "POST /call?x=1 HTTP/1.1\r\n", "an HTTP/1.1 request line, path rewritten");
	ASSERT_HAS(W.seen, "host: rewritten.example\r\n", ":authority (rewritten) as Host");
	ASSERT_HAS(W.seen, "x-set: one\r\n", "request header set");
	ASSERT_FALSE(strstr(W.seen, "x-gone"), "request header removed");
	ASSERT_FALSE(strstr(W.seen, "transfer-encoding"), "no body: not chunked");
	ASSERT_HAS(W.seen, "cookie: a=1; b=2\r\n", "HTTP/2's cookie fields joined into one");
	ASSERT_HAS(p.body, "POST /call?x=1 HTTP/1.1", "the backend's body as DATA");
	ASSERT_HAS(p.seen_hdrs, "x-resp=added", "response header added");
	ASSERT_HAS(p.seen_hdrs, "content-length=", "content-length kept");
	ASSERT_FALSE(strstr(p.seen_hdrs, "x-backend"), "response header removed");
	/* a body without content-length goes chunked */
	W.seen_len = 0;
	W.seen[0] = 0;
	ASSERT_TRUE(h2_request_body(&p, "/v2/post", "text/plain", "hello body"), "POST answered");
	ASSERT_EQ(p.status, 200, "POST status");
	ASSERT_HAS(W.seen, "transfer-encoding: chunked\r\n", "chunked upstream");
	ASSERT_HAS(W.seen, "\r\n\r\na\r\nhello body\r\n0\r\n\r\n", "the body in one chunk, then the last");
	/* a body larger than the windows, chunked */
	{
		static char big[300001];

		memset(big, 'y', sizeof(big) - 1);
		ASSERT_TRUE(h2_request_body(&p, "/v2/bigpost", "text/plain", big), "big POST answered");
		ASSERT_EQ(p.status, 200, "big POST status");
		ASSERT_TRUE(W.last_req_len > 300000, "the backend read the whole body");
	}
	/* streams one after another on one connection share one upstream */
	W.upstreams = 0;
	ASSERT_EQ(h2_many(5), 5, "five streams");
	ASSERT_EQ(W.upstreams, 1, "one pooled HTTP/1.1 upstream for them");
	/* a large chunked answer (more than the 64 KiB windows) with a trailer */
	W.mode = BE_BIG;
	ASSERT_TRUE(h2_request(&p, "/v2/big", "text/plain"), "big answer");
	ASSERT_EQ(p.status, 200, "big status");
	ASSERT_EQ(p.total_len, 200000, "every body byte, decoded");
	ASSERT_HAS(p.trailers, "x-trl=yes", "the chunked trailer as HTTP/2 trailers");
	ASSERT_FALSE(strstr(p.seen_hdrs, "transfer-encoding"), "no transfer-encoding in HTTP/2");
	/* an upstream that resets before answering: 503 */
	W.mode = BE_RESET;
	ASSERT_TRUE(h2_request(&p, "/v2/reset", "text/plain"), "reset answered");
	ASSERT_EQ(p.status, 503, "reset before a response: 503");
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	W.mode = BE_OK;
	diags_clear(&errs);
	teardown();
}

/* An HTTP/1.1 client to a backend whose port says appProtocol
 * kubernetes.io/h2c: each request is a stream of one pooled HTTP/2
 * connection; the answer comes back in HTTP/1.1, chunked when it has no
 * content-length, its trailers in the last chunk. */
void test_waypoint_h1_to_h2(void)
{
	static const struct waypoint_ops ops_h2 = { .routes = op_routes, .upstream = op_upstream_h2 };
	struct diags errs = { 0 };
	char *out;
	int fd;

	if (!setup_routed(&ops_h2, &errs))
		goto out;
	W.proto = WAYPOINT_PROTO_H2C;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET /v2/call?x=1 HTTP/1.1\r\nHost: web\r\nX-Gone: a\r\nTE: gzip\r\n"
				 "Keep-Alive: timeout=5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n"),
		    "send");
	out = read_until(fd, "\r\n0\r\ngrpc-status: 0\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK\r\n", "an HTTP/1.1 status line");
	ASSERT_HAS(out, "transfer-encoding: chunked\r\n", "no content-length: chunked");
	ASSERT_HAS(out, "x-resp: added\r\n", "response header added");
	ASSERT_FALSE(strstr(out, "x-backend"), "response header removed");
	ASSERT_HAS(out, "\r\n\r\n12\r\nhello from h2 grpc\r\n", "the DATA as a chunk");
	ASSERT_HAS(out, "\r\n0\r\ngrpc-status: 0\r\n\r\n", "the trailers in the last chunk");
	ASSERT_HAS(W.seen, "path=/call?x=1 auth=rewritten.example", "path rewritten, Host as :authority");
	ASSERT_HAS(W.seen, "x-set=one", "request header set");
	ASSERT_FALSE(strstr(W.seen, "x-gone"), "request header removed");
	ASSERT_FALSE(strstr(W.seen, "te="), "TE other than trailers left out");
	ASSERT_FALSE(strstr(W.seen, "keep-alive"), "Keep-Alive left out");
	ASSERT_FALSE(strstr(W.seen, "x-hop"), "a field Connection names left out");
	ASSERT_FALSE(strstr(W.seen, "connection"), "Connection left out");
	ASSERT_FALSE(strstr(W.seen, "host="), "no Host field in HTTP/2");
	/* the same connection: a body by content-length, then a chunked one */
	ASSERT_TRUE(send_str(fd, "POST /v2/post HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello"),
		    "send POST");
	out = read_until(fd, "\r\n0\r\ngrpc-status: 0\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK", "POST answered");
	ASSERT_HAS(W.seen, "hdrs=:method=POST;:scheme=http;content-length=5;", "content-length passed on");
	ASSERT_HAS(W.seen, "body=hello\n", "the body as DATA");
	ASSERT_TRUE(send_str(fd, "POST /v2/chunked HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n"
				 "Expect: 100-continue\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
		    "send chunked");
	out = read_until(fd, "\r\n0\r\ngrpc-status: 0\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK", "100 Continue, then the answer");
	ASSERT_HAS(W.seen, "body=hello world\n", "a chunked body decoded into DATA");
	ASSERT_FALSE(strstr(W.seen, "transfer-encoding"), "no transfer-encoding in HTTP/2");
	ASSERT_FALSE(strstr(W.seen, "expect"), "Expect answered here");
	ASSERT_EQ(W.upstreams, 1, "three requests, one HTTP/2 upstream");
	close(fd);
	/* HTTP/1.0: no chunked; the end of the connection ends the body */
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET /v2/ten HTTP/1.0\r\nHost: web\r\n\r\n"), "send 1.0");
	out = read_until(fd, NULL, 3000);
	ASSERT_HAS(out, "HTTP/1.1 200 OK", "1.0 answered");
	ASSERT_FALSE(strstr(out, "chunked"), "not chunked to HTTP/1.0");
	ASSERT_HAS(out, "\r\n\r\nhello from h2 grpc", "the body as it is, to the end");
	close(fd);
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	W.mode = BE_OK;
	diags_clear(&errs);
	teardown();
}

/* appProtocol values: Kubernetes' standard ones and Istio's names. */
void test_waypoint_proto_of(void)
{
	static const struct {
		const char *ap;
		enum waypoint_proto want;
	} cases[] = {
		{ NULL, WAYPOINT_PROTO_UNSET },
		{ "", WAYPOINT_PROTO_UNSET },
		{ "kubernetes.io/h2c", WAYPOINT_PROTO_H2C },
		{ "http2", WAYPOINT_PROTO_H2C },
		{ "HTTP2", WAYPOINT_PROTO_H2C },
		{ "grpc", WAYPOINT_PROTO_H2C },
		{ "grpc-web", WAYPOINT_PROTO_H2C },
		{ "http", WAYPOINT_PROTO_HTTP1 },
		{ "kubernetes.io/ws", WAYPOINT_PROTO_HTTP1 },
		{ "https", WAYPOINT_PROTO_UNSET },
		{ "kubernetes.io/wss", WAYPOINT_PROTO_UNSET },
		{ "tcp", WAYPOINT_PROTO_UNSET },
		{ "example.com/h2c", WAYPOINT_PROTO_UNSET },
		{ "http2x", WAYPOINT_PROTO_UNSET },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ASSERT_EQ(waypoint_proto_of(cases[i].ap), cases[i].want, cases[i].ap ? cases[i].ap : "(none)");
}

/* An HTTP/2 backend that hangs up before answering: the HTTP/1.1 client
 * gets a 503, as from an HTTP/1.1 backend. */
void test_waypoint_h1_to_h2_reset(void)
{
	char *out;
	int fd;

	if (!setup(0))
		goto out;
	W.mode = BE_RESET;
	W.proto = WAYPOINT_PROTO_H2C;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET /x HTTP/1.1\r\nHost: web\r\n\r\n"), "send");
	out = read_until(fd, "\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 503", "reset before a response: 503");
	close(fd);
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	W.mode = BE_OK;
	teardown();
}

/* Read what an HTTP/2 peer says until EOF (or timeout_ms without a byte):
 * was there a GOAWAY with NO_ERROR, then EOF? *eof_ms: when EOF came. */
static bool h2_goaway_then_eof(struct h2peer *p, int timeout_ms, uint64_t *eof_ms)
{
	char in[16384];

	for (;;) {
		struct pollfd pf = { .fd = p->fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pf, 1, timeout_ms) <= 0)
			return false;
		n = read(p->fd, in, sizeof(in));
		if (n <= 0)
			break;
		nghttp2_session_mem_recv(p->ng, (const uint8_t *)in, (size_t)n);
	}
	*eof_ms = mono_ms();
	return p->goaway == 1;
}

/* --http-idle-timeout over HTTP/2: a connection without a stream gets GOAWAY
 * and is closed; one with a stream open is not cut, however slow the stream. */
void test_waypoint_h2_idle(void)
{
	struct waypoint_opts o = { .idle_timeout_ms = 300, .header_timeout_ms = 3000 };
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"web", 10, 3, 0 },
		{ (uint8_t *)":path", (uint8_t *)"/slow", 5, 5, 0 },
	};
	nghttp2_data_provider prd = { .source.ptr = (void *)"late body", .read_callback = h2p_req_body };
	struct h2peer p = { 0 };
	uint64_t t0, t1;
	int fd;

	if (!setup_opts(&o))
		goto out;
	W.mode = BE_OK;
	W.proto = WAYPOINT_PROTO_HTTP1;	/* the stream goes on as HTTP/1.1 */
	fd = client();
	t0 = mono_ms();
	if (!ASSERT_TRUE(fd >= 0 && h2p_init(&p, fd, false), "h2 client"))
		goto out;
	ASSERT_TRUE(h2_goaway_then_eof(&p, 5000, &t1), "idle: GOAWAY (NO_ERROR), then EOF");
	ASSERT_GE(t1 - t0, 250, "not before the idle timeout");
	nghttp2_session_del(p.ng);
	close(fd);

	/* a stream open (its body not sent) for three idle timeouts */
	fd = client();
	if (!ASSERT_TRUE(fd >= 0 && h2p_init(&p, fd, false), "h2 client 2"))
		goto out;
	h2p_req_off = 0;
	p.sid = nghttp2_submit_headers(p.ng, NGHTTP2_FLAG_NONE, -1, NULL, nv, 4, NULL);
	ASSERT_TRUE(p.sid > 0 && !nghttp2_session_send(p.ng), "headers sent");
	h2p_run(&p, 900);
	ASSERT_FALSE(p.done || p.goaway, "a connection with a stream open is not cut");
	ASSERT_OK(nghttp2_submit_data(p.ng, NGHTTP2_FLAG_END_STREAM, p.sid, &prd), "data");
	ASSERT_OK(nghttp2_session_send(p.ng), "data sent");
	h2p_run(&p, 3000);
	ASSERT_EQ(p.status, 200, "the slow stream answered");
	ASSERT_HAS(W.seen, "late body", "its body went on");
	/* and once it is done, the idle timeout runs again */
	ASSERT_TRUE(h2_goaway_then_eof(&p, 5000, &t1), "idle after the stream: GOAWAY, then EOF");
	nghttp2_session_del(p.ng);
	close(fd);
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	teardown();
}

/* --http-header-timeout over HTTP/2: a HEADERS frame whose block never ends
 * (no CONTINUATION comes) does not hold the connection. */
void test_waypoint_h2_header_timeout(void)
{
	struct waypoint_opts o = { .idle_timeout_ms = 60000, .header_timeout_ms = 300 };
	/* preface, empty SETTINGS, HEADERS on stream 1 without END_HEADERS
	 * (":method: GET", HPACK index 2) */
	static const char raw[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
				  "\0\0\0\x04\0\0\0\0\0"
				  "\0\0\x01\x01\0\0\0\0\x01\x82";
	struct h2peer p = { 0 };
	uint64_t t0, t1;
	int fd, nul;

	if (!setup_opts(&o))
		goto out;
	fd = client();
	t0 = mono_ms();
	if (!ASSERT_TRUE(fd >= 0 && send_all(fd, raw, sizeof(raw) - 1), "send"))
		goto out;
	/* an nghttp2 client reads what comes back (its own preface goes to
	 * /dev/null: the raw one above is the test's) */
	nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (!ASSERT_TRUE(nul >= 0 && h2p_init(&p, nul, false), "reader"))
		goto out;
	close(nul);
	p.fd = fd;
	ASSERT_TRUE(h2_goaway_then_eof(&p, 5000, &t1), "half a head: GOAWAY, then EOF");
	ASSERT_GE(t1 - t0, 250, "not before the header timeout");
	nghttp2_session_del(p.ng);
	close(fd);
out:
	teardown();
}

/* The waypoint's 5xx answers so far (every answer is counted, the ones it
 * made itself too) */
static uint64_t answered_5xx(void)
{
	struct waypoint_stats st;

	waypoint_stats_get(W.wp, &st);
	return st.responses_by_class[5];
}

/* A request with a body is retried as a bodiless one when its body fits the
 * retry buffer (content-length or chunked): to an HTTP/1.1 backend as it
 * came, to an h2c one as a new stream, its fields kept and its body
 * decoded into DATA. Past the buffer, it goes once. The default policy
 * retries a bodiless request, and sends a body once. Every error answer is
 * counted. */
void test_waypoint_retry_body(void)
{
	static const struct waypoint_ops ops_h2 = { .routes = op_routes, .upstream = op_upstream_h2 };
	static char big[80000];
	struct diags errs = { 0 };
	char *out, head[256];
	uint64_t n5;
	int fd, n;

	for (int h2 = 0; h2 < 2; h2++) {
		/* an answer's end: the h2c backend's is chunked, with trailers */
		const char *end = h2 ? "\r\n0\r\ngrpc-status: 0\r\n\r\n" : "\r\n\r\nok";

		if (h2) {	/* the last one's */
			diags_clear(&errs);
			teardown();
		}
		if (!setup_routed(h2 ? &ops_h2 : NULL, &errs))
			goto out;
		W.proto = h2 ? WAYPOINT_PROTO_H2C : WAYPOINT_PROTO_UNSET;
		W.mode = BE_FAIL_FIRST;
		W.upstreams = 0;
		W.h2_requests = 0;
		W.seen_len = 0;
		W.seen[0] = 0;
		fd = client();
		ASSERT_TRUE(send_str(fd, "POST /retry HTTP/1.1\r\nHost: web\r\nX-Kept: yes\r\nContent-Length: 10\r\n\r\n"
					 "0123456789"), "send");
		out = read_until(fd, end, 3000);
		ASSERT_HAS(out, "HTTP/1.1 200 OK", "content-length body: a 500 and a reset retried");
		ASSERT_FALSE(strstr(out, " 500 "), "the 500 was not the client's");
		ASSERT_EQ(W.upstreams, 3, "three upstream connections");
		if (h2) {
			ASSERT_EQ(W.h2_requests, 3, "h2: the stream went three times");
			ASSERT_EQ(count(W.seen, "path=/retry auth=web"), 3, "h2: its :path and :authority each time");
			ASSERT_EQ(count(W.seen, "x-kept=yes"), 3, "h2: its fields each time");
			ASSERT_EQ(count(W.seen, "body=0123456789\n"), 3, "h2: its body intact each time");
		} else {
			ASSERT_EQ(count(W.seen, "X-Kept: yes\r\nContent-Length: 10\r\n\r\n0123456789"), 3,
				  "the body went three times, intact");
		}
		close(fd);

		W.upstreams = 0;
		W.h2_requests = 0;
		W.seen_len = 0;
		W.seen[0] = 0;
		fd = client();
		ASSERT_TRUE(send_str(fd, "POST /retry HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
					 "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "send chunked");
		out = read_until(fd, end, 3000);
		ASSERT_HAS(out, "HTTP/1.1 200 OK", "chunked body: retried");
		ASSERT_EQ(W.upstreams, 3, "chunked: three upstream connections");
		if (h2)
			ASSERT_EQ(count(W.seen, "body=hello world\n"), 3, "h2: the decoded body each time");
		else
			ASSERT_EQ(count(W.seen, "\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), 3, "chunks went three times");
		close(fd);

		/* above the bound: the first answer (500) is the client's */
		W.upstreams = 0;
		W.h2_requests = 0;
		memset(big, 'x', sizeof(big));
		n = snprintf(head, sizeof(head), "POST /retry HTTP/1.1\r\nHost: web\r\nContent-Length: %zu\r\n\r\n",
			     sizeof(big));
		fd = client();
		ASSERT_TRUE(send_all(fd, head, (size_t)n) && send_all(fd, big, sizeof(big)), "send big");
		out = read_until(fd, "\r\n\r\n", 3000);
		ASSERT_HAS(out, "HTTP/1.1 500", "a body over the retry buffer: not retried");
		ASSERT_EQ(W.upstreams, 1, "one upstream connection");
		close(fd);
		/* chunked, which says nothing of its size up front: the copy is
		 * dropped as it grows past the bound */
		W.upstreams = 0;
		W.h2_requests = 0;
		n = snprintf(head, sizeof(head),
			     "POST /retry HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n", sizeof(big));
		fd = client();
		ASSERT_TRUE(send_all(fd, head, (size_t)n) && send_all(fd, big, sizeof(big)) &&
			    send_str(fd, "\r\n0\r\n\r\n"), "send big chunked");
		out = read_until(fd, "\r\n\r\n", 3000);
		ASSERT_HAS(out, "HTTP/1.1 500", "a chunked body over the retry buffer: not retried");
		ASSERT_EQ(W.upstreams, 1, "one upstream connection (chunked)");
		close(fd);

		/* /v2: no retry policy on the rule: the default retries a reset
		 * request without a body, and sends a body only once (the
		 * backend may have acted on it before the reset) */
		W.mode = BE_RESET;
		W.upstreams = 0;
		usleep(100 * 1000);	/* the big requests cut short are counted (500) */
		n5 = answered_5xx();
		fd = client();
		ASSERT_TRUE(send_str(fd, "GET /v2/plain HTTP/1.1\r\nHost: web\r\n\r\n"), "send GET");
		out = read_until(fd, "\r\n\r\n", 3000);
		ASSERT_HAS(out, "HTTP/1.1 50", "every attempt reset: an error");
		ASSERT_EQ(W.upstreams, 3, "the default: a bodiless request tried three times");
		close(fd);
		W.upstreams = 0;
		fd = client();
		ASSERT_TRUE(send_str(fd, "POST /v2/plain HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\nabc"),
			    "send POST");
		out = read_until(fd, "\r\n\r\n", 3000);
		ASSERT_HAS(out, "HTTP/1.1 50", "reset: an error");
		ASSERT_EQ(W.upstreams, 1, "the default: a body goes once");
		ASSERT_EQ(answered_5xx() - n5, 2, "both errors counted (and logged), once each");
		close(fd);
	}
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	W.mode = BE_OK;
	diags_clear(&errs);
	teardown();
}

static void waypoint_renew(void *with)
{
	waypoint_free(W.wp);
	W.wp = NULL;
	if (waypoint_new(&W.wp, W.loop, with, NULL, NULL))
		W.wp = NULL;
}

/* A translated stream (HTTP/2 client, HTTP/1.1 backend) is retried as the
 * others are: a 500 and a connection closed before an answer, then the
 * third answer, the body sent whole each time; a body over the retry
 * buffer goes once. */
void test_waypoint_h2_to_h1_retry(void)
{
	static char big[70001];
	struct diags errs = { 0 };
	struct h2peer p;

	if (!setup_routed(NULL, &errs))
		goto out;
	W.proto = WAYPOINT_PROTO_HTTP1;
	W.mode = BE_FAIL_FIRST;
	W.upstreams = 0;
	W.seen_len = 0;
	W.seen[0] = 0;
	ASSERT_TRUE(h2_request_body(&p, "/retry", "text/plain", "the request body"), "answered");
	ASSERT_EQ(p.status, 200, "a 500 and a close retried: the third answer goes back");
	ASSERT_TRUE(p.body_len == 2 && !memcmp(p.body, "ok", 2), "its body");
	ASSERT_EQ(W.upstreams, 3, "three upstream connections");
	ASSERT_EQ(count(W.seen, "POST /retry HTTP/1.1\r\n"), 3, "the request went three times, as HTTP/1.1");
	ASSERT_EQ(count(W.seen, "the request body"), 3, "its body whole each time");
	/* past the retry buffer: the first answer (500) is the client's */
	W.upstreams = 0;
	memset(big, 'x', sizeof(big) - 1);
	ASSERT_TRUE(h2_request_body(&p, "/retry", "text/plain", big), "big answered");
	ASSERT_EQ(p.status, 500, "a body over the retry buffer: not retried");
	ASSERT_EQ(W.upstreams, 1, "one upstream connection");
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	W.mode = BE_OK;
	diags_clear(&errs);
	teardown();
}

/* The upstream fails while the request's body is still coming: the retry
 * sends what came, then the rest as it comes; the backend gets the body
 * whole, once. To an HTTP/1.1 backend and to an h2c one. */
void test_waypoint_retry_body_streaming(void)
{
	static const struct waypoint_ops ops_h2 = { .routes = op_routes, .upstream = op_upstream_h2 };
	const struct waypoint_ops *with[] = { NULL, &ops_h2 };
	struct diags errs = { 0 };
	char *out;
	int fd;

	for (int h2 = 0; h2 < 2; h2++) {
		if (h2) {	/* the last one's */
			diags_clear(&errs);
			teardown();
		}
		if (!setup_routed(with[h2], &errs))
			goto out;
		W.proto = h2 ? WAYPOINT_PROTO_H2C : WAYPOINT_PROTO_UNSET;
		W.mode = BE_RESET_FIRST;
		W.upstreams = 0;
		W.seen_len = 0;
		W.seen[0] = 0;
		fd = client();
		ASSERT_TRUE(send_str(fd, "POST /retry HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\n01234"),
			    "send the head and half the body");
		/* the first upstream closes; the retry (10 ms backoff) goes */
		for (int i = 0; i < 100 && W.upstreams < 2; i++)
			usleep(10 * 1000);
		usleep(50 * 1000);
		ASSERT_EQ(W.upstreams, 2, h2 ? "h2: retried before the body was all there" : "retried before the body was all there");
		ASSERT_TRUE(send_str(fd, "56789"), "the rest of the body");
		out = read_until(fd, h2 ? "grpc-status: 0\r\n\r\n" : "\r\n\r\nPOST", 3000);
		ASSERT_HAS(out, "HTTP/1.1 200 OK", h2 ? "h2: answered" : "answered");
		if (h2)
			ASSERT_EQ(count(W.seen, "body=0123456789\n"), 1, "h2: the body whole, once");
		else
			ASSERT_EQ(count(W.seen, "Content-Length: 10\r\n\r\n0123456789"), 1, "the body whole, once");
		close(fd);
		/* the rest comes during the backoff (300 ms): it waits, then
		 * follows what the retry sends */
		W.upstreams = 0;
		W.seen_len = 0;
		W.seen[0] = 0;
		fd = client();
		ASSERT_TRUE(send_str(fd, "POST /slowretry HTTP/1.1\r\nHost: web\r\nContent-Length: 10\r\n\r\nabcde"),
			    "send the head and half the body (slow retry)");
		usleep(100 * 1000);
		ASSERT_EQ(W.upstreams, 1, "the retry waits for its backoff");
		ASSERT_TRUE(send_str(fd, "fghij"), "the rest of the body, during the backoff");
		out = read_until(fd, h2 ? "grpc-status: 0\r\n\r\n" : "\r\n\r\nPOST", 3000);
		ASSERT_HAS(out, "HTTP/1.1 200 OK", h2 ? "h2: answered (slow retry)" : "answered (slow retry)");
		ASSERT_EQ(W.upstreams, 2, "one retry");
		if (h2)
			ASSERT_EQ(count(W.seen, "body=abcdefghij\n"), 1, "h2: the body whole, once (slow retry)");
		else
			ASSERT_EQ(count(W.seen, "Content-Length: 10\r\n\r\nabcdefghij"), 1, "the body whole, once (slow retry)");
		close(fd);
	}
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	W.mode = BE_OK;
	diags_clear(&errs);
	teardown();
}

/* The same from an HTTP/2 client: the upstream fails while the stream's
 * body is still coming (its rest sent after the retry went, or during the
 * backoff); the backend gets it whole, once, over HTTP/2 and translated to
 * HTTP/1.1. */
void test_waypoint_h2_retry_body_streaming(void)
{
	static const struct waypoint_ops ops_h2 = { .routes = op_routes, .upstream = op_upstream_h2 };
	static const char body[] = "0123456789";
	nghttp2_data_provider prd = { .source.ptr = (void *)body, .read_callback = h2p_req_body };
	struct diags errs = { 0 };

	for (int v = 0; v < 4; v++) {
		bool h1 = v & 1, slow = v & 2;
		const char *path = slow ? "/slowretry" : "/retry";
		nghttp2_nv nv[] = {
			{ (uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0 },
			{ (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
			{ (uint8_t *)":authority", (uint8_t *)"web", 10, 3, 0 },
			{ (uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0 },
		};
		char what[64];
		struct h2peer p;
		int fd;

		snprintf(what, sizeof(what), "%s backend, %s", h1 ? "HTTP/1.1" : "HTTP/2",
			 slow ? "the rest during the backoff" : "the rest after the retry");
		if (v) {	/* the last one's */
			diags_clear(&errs);
			teardown();
		}
		if (!setup_routed(h1 ? NULL : &ops_h2, &errs))
			goto out;
		W.proto = h1 ? WAYPOINT_PROTO_HTTP1 : WAYPOINT_PROTO_UNSET;
		W.mode = BE_RESET_FIRST;
		W.upstreams = 0;
		W.seen_len = 0;
		W.seen[0] = 0;
		fd = client();
		if (!ASSERT_TRUE(fd >= 0 && h2p_init(&p, fd, false), what))
			goto out;
		h2p_req_off = 0;
		h2p_req_hold = 5;
		p.sid = nghttp2_submit_request(p.ng, NULL, nv, 4, &prd, NULL);
		ASSERT_TRUE(p.sid > 0 && !nghttp2_session_send(p.ng), what);
		/* half the body went; the first upstream closes */
		h2p_run(&p, slow ? 100 : 200);
		ASSERT_EQ(W.upstreams, slow ? 1 : 2, what);
		h2p_req_hold = 0;
		nghttp2_session_resume_data(p.ng, p.sid);
		ASSERT_TRUE(!nghttp2_session_send(p.ng), what);
		h2p_run(&p, 3000);
		ASSERT_TRUE(p.done, what);
		ASSERT_EQ(p.status, 200, what);
		ASSERT_EQ(W.upstreams, 2, what);
		if (h1)
			ASSERT_TRUE(count(W.seen, "POST ") == 1 && count(W.seen, "01234") == 1 &&
				    count(W.seen, "56789") == 1, what);
		else
			ASSERT_EQ(count(W.seen, "body=0123456789\n"), 1, what);
		nghttp2_session_del(p.ng);
		close(fd);
	}
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	W.mode = BE_OK;
	h2p_req_hold = 0;
	diags_clear(&errs);
	teardown();
}

/* ops.pick: endpoints 10.0.0.1 and 10.0.0.2 by turns, counted */
static int picks[2];

static int op_pick(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
		   const struct route_backend *be, struct waypoint_dst *dst)
{
	static unsigned int turn;
	unsigned int i = turn++ % 2;

	(void)arg, (void)cl, (void)vip, (void)be;
	dst->addr.ip.family = SL_AF_INET;
	dst->addr.ip.addr.octets[0] = 10;
	dst->addr.ip.addr.octets[3] = (uint8_t)(1 + i);
	dst->addr.port = 80;
	dst->proto = W.proto;
	picks[i]++;
	return 0;
}

/* HTTP/2 upstream connections are the client's, not its connection's: a
 * second connection's streams go on the first one's upstream; a client that
 * does not read its answer holds up none of another connection's on that
 * shared upstream; with ops.pick, the streams of one connection are
 * balanced over the endpoints, one upstream connection to each. */
void test_waypoint_h2_pool(void)
{
	static const struct waypoint_ops ops_h2 = { .routes = op_routes, .upstream = op_upstream_h2 };
	static const struct waypoint_ops ops_pick = { .routes = op_routes, .upstream = op_upstream_h2,
						      .pick = op_pick };
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"web", 10, 3, 0 },
		{ (uint8_t *)":path", (uint8_t *)"/v2/huge", 5, 8, 0 },
	};
	struct diags errs = { 0 };
	struct h2peer p, slow;
	int fd = -1;

	if (!setup_routed(&ops_h2, &errs))
		goto out;
	W.mode = BE_OK;
	W.upstreams = 0;
	ASSERT_TRUE(h2_request(&p, "/v2/call", "text/plain"), "first connection answered");
	ASSERT_TRUE(h2_request(&p, "/v2/call", "text/plain"), "second connection answered");
	ASSERT_EQ(p.status, 200, "status");
	ASSERT_EQ(W.upstreams, 1, "both connections' streams on one upstream connection");
	wcall(mem_fn, NULL);
	ASSERT_EQ(wp_mem.h2_upstreams, 1, "the status sees one pooled upstream");
	ASSERT_EQ(wp_mem.h2_upstream_streams, 0, "carrying no stream now");
	/* a client asks for 256 KiB and reads none of it: its window (64 KiB)
	 * and the waypoint's buffer for the stream fill, the rest waits at
	 * the backend; another connection's stream on the same upstream
	 * connection is answered meanwhile */
	fd = client();
	if (!ASSERT_TRUE(fd >= 0 && h2p_init(&slow, fd, false), "slow client"))
		goto out;
	slow.sid = nghttp2_submit_request(slow.ng, NULL, nv, 4, NULL, NULL);
	ASSERT_TRUE(slow.sid > 0 && !nghttp2_session_send(slow.ng), "slow client's request sent");
	usleep(300 * 1000);	/* (the waypoint fills what it may meanwhile) */
	ASSERT_TRUE(h2_request(&p, "/v2/call", "text/plain"), "another client answered meanwhile");
	ASSERT_EQ(p.status, 200, "its status");
	ASSERT_EQ(W.upstreams, 1, "on the same upstream connection");
	/* the slow client reads at last: all of it */
	h2p_run(&slow, 3000);
	ASSERT_TRUE(slow.done, "the slow client's answer ended");
	ASSERT_EQ(slow.total_len, HUGE_BODY, "every byte of it");
	nghttp2_session_del(slow.ng);
	close(fd);
	/* picked per request: one connection's streams over both endpoints
	 * (a new waypoint, on the loop's thread: the old one's pooled
	 * upstreams and their timers go with it) */
	wcall(waypoint_renew, (void *)&ops_pick);
	if (!ASSERT_TRUE(W.wp != NULL, "waypoint with pick"))
		goto out;
	W.upstreams = 0;
	picks[0] = picks[1] = 0;
	ASSERT_EQ(h2_many(4), 4, "four streams on one connection");
	ASSERT_EQ(picks[0], 2, "two to the first endpoint");
	ASSERT_EQ(picks[1], 2, "two to the second");
	ASSERT_EQ(W.upstreams, 2, "one upstream connection to each endpoint");
	/* draining (an upgrade): idle pooled upstreams close at once (the
	 * backends here would end theirs after 3 s idle) */
	{
		int closed = __atomic_load_n(&W.h2_closed, __ATOMIC_SEQ_CST);

		wcall(drain_fn, NULL);
		for (int i = 0; i < 100 && __atomic_load_n(&W.h2_closed, __ATOMIC_SEQ_CST) < closed + 2; i++)
			usleep(10 * 1000);
		ASSERT_EQ(__atomic_load_n(&W.h2_closed, __ATOMIC_SEQ_CST), closed + 2,
			  "draining: both idle upstream connections closed within 1 s");
	}
out:
	diags_clear(&errs);
	teardown();
}

/* HTTP/2 streams are retried as HTTP/1.1 requests are, their bodies intact,
 * on new upstream connections; a body over the retry buffer is not. The
 * connections stay pooled for the client's next streams, from any of its
 * connections. */
void test_waypoint_h2_retry(void)
{
	static const struct waypoint_ops ops_h2 = { .routes = op_routes, .upstream = op_upstream_h2 };
	static char big[70001];
	struct diags errs = { 0 };
	struct h2peer p;

	if (!setup_routed(&ops_h2, &errs))
		goto out;
	W.mode = BE_FAIL_FIRST;
	W.upstreams = 0;
	W.h2_requests = 0;
	W.seen_len = 0;
	W.seen[0] = 0;
	ASSERT_TRUE(h2_request_body(&p, "/retry", "text/plain", "the request body"), "answered");
	ASSERT_EQ(p.status, 200, "a 500 and a reset retried: the third answer goes back");
	ASSERT_TRUE(strstr(p.body, "hello from h2"), "its body");
	ASSERT_EQ(W.upstreams, 3, "three upstream connections");
	ASSERT_EQ(count(W.seen, "path=/retry"), 3, "the stream went three times");
	ASSERT_EQ(count(W.seen, "body=the request body\n"), 3, "its body intact each time");
	/* a body past the retry buffer: the first answer is the client's; it
	 * goes on a connection the last one left in the pool */
	W.upstreams = 0;
	W.h2_requests = 0;
	memset(big, 'x', sizeof(big) - 1);
	ASSERT_TRUE(h2_request_body(&p, "/retry", "text/plain", big), "big answered");
	ASSERT_EQ(p.status, 500, "a body over the retry buffer: not retried");
	ASSERT_EQ(W.h2_requests, 1, "it went once");
	ASSERT_EQ(W.upstreams, 0, "on a pooled upstream connection");
out:
	diags_clear(&errs);
	teardown();
}

/* ---- WebSocket over HTTP/2 (RFC 8441 extended CONNECT) ---- */

/* Read what the peer sends until its SETTINGS allow extended CONNECT. */
static bool h2p_wait_connect(struct h2peer *p, int timeout_ms)
{
	char in[16384];

	while (nghttp2_session_get_remote_settings(p->ng, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) != 1) {
		struct pollfd pf = { .fd = p->fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pf, 1, timeout_ms) <= 0)
			return false;
		n = read(p->fd, in, sizeof(in));
		if (n <= 0 || nghttp2_session_mem_recv(p->ng, (const uint8_t *)in, (size_t)n) < 0 ||
		    nghttp2_session_send(p->ng))
			return false;
	}
	return true;
}

/* An extended CONNECT of :protocol proto from a fresh HTTP/2 client to
 * path, msg as DATA with END_STREAM (as soon as sent: the waypoint holds
 * them until the backend took the WebSocket); run until the stream ends. */
static bool h2_connect_proto(struct h2peer *p, const char *path, const char *proto, const char *msg)
{
	int fd = client();
	nghttp2_data_provider prd = { .source.ptr = (void *)msg, .read_callback = h2p_req_body };
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, 0 },
		{ (uint8_t *)":protocol", (uint8_t *)proto, 9, strlen(proto), 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"web", 10, 3, 0 },
		{ (uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0 },
		{ (uint8_t *)"sec-websocket-version", (uint8_t *)"13", 21, 2, 0 },
		{ (uint8_t *)"sec-websocket-protocol", (uint8_t *)"chat", 22, 4, 0 },
	};
	bool ok = false;

	memset(p, 0, sizeof(*p));
	if (fd < 0 || !h2p_init(p, fd, false))
		return false;
	p->sid = -1;	/* (a SETTINGS ACK's flag is END_STREAM's bit) */
	if (!h2p_wait_connect(p, 3000))
		goto out;
	p->done = 0;
	h2p_req_off = 0;
	p->sid = nghttp2_submit_request(p->ng, NULL, nv, 7, &prd, NULL);
	if (p->sid < 0 || nghttp2_session_send(p->ng))
		goto out;
	h2p_run(p, 3000);
	ok = p->done;
out:
	nghttp2_session_del(p->ng);
	close(fd);
	return ok;
}

static bool h2_websocket(struct h2peer *p, const char *path, const char *msg)
{
	return h2_connect_proto(p, path, "websocket", msg);
}

/* An HTTP/2 client's WebSocket to a backend whose port says HTTP/1.1: a
 * GET with Upgrade (a key made up), the 101 as 200, then bytes both ways
 * and the client's END_STREAM as a FIN (the backend's end comes back as
 * END_STREAM). Routed as a GET. */
void test_waypoint_ws_h2_to_h1(void)
{
	struct diags errs = { 0 };
	struct h2peer p;

	if (!setup_routed(NULL, &errs))
		goto out;
	W.mode = BE_UPGRADE;
	W.proto = WAYPOINT_PROTO_HTTP1;
	ASSERT_TRUE(h2_websocket(&p, "/v2/ws", "hello ws"), "WebSocket stream ended");
	ASSERT_EQ(p.status, 200, "101 as 200");
	ASSERT_EQ(p.body_len, 8, "echo length");
	ASSERT_HAS(p.body, "hello ws", "bytes there and back");
	ASSERT_HAS(W.seen, "GET /ws HTTP/1.1\r\n", "a GET, path rewritten");
	ASSERT_HAS(W.seen, "connection: Upgrade\r\nupgrade: websocket\r\n", "Upgrade asked for");
	ASSERT_HAS(W.seen, "sec-websocket-key: ", "a key made up");
	ASSERT_HAS(W.seen, "sec-websocket-version: 13\r\n", "version passed on");
	ASSERT_HAS(W.seen, "sec-websocket-protocol: chat\r\n", "subprotocol passed on");
	ASSERT_HAS(W.seen, "x-set: one\r\n", "request header edits");
	ASSERT_FALSE(strstr(W.seen, "transfer-encoding"), "no body framing");
	ASSERT_FALSE(strstr(p.seen_hdrs, "upgrade="), "no Upgrade in HTTP/2");
	ASSERT_HAS(p.seen_hdrs, "x-resp=added", "response header edits");
	/* a route that matches GET only takes it */
	ASSERT_TRUE(h2_websocket(&p, "/wsget/x", "again"), "method GET route");
	ASSERT_EQ(p.status, 200, "routed as GET");
	ASSERT_HAS(p.body, "again", "echo");
	/* a backend that fails it: 503, as for a request */
	W.mode = BE_RESET;
	ASSERT_TRUE(h2_websocket(&p, "/v2/ws", "x"), "reset answered");
	ASSERT_EQ(p.status, 503, "reset before a response: 503");
	/* one that answers without switching: its answer as it is */
	W.mode = BE_OK;
	ASSERT_TRUE(h2_websocket(&p, "/v2/ws", "x"), "refusal answered");
	ASSERT_HAS(p.body, "GET /ws HTTP/1.1", "the backend's own answer");
	/* another protocol over extended CONNECT: not ours to carry */
	W.seen_len = 0;
	W.seen[0] = 0;
	ASSERT_TRUE(h2_connect_proto(&p, "/v2/ws", "connect-udp", "x"), "other :protocol answered");
	ASSERT_EQ(p.status, 501, "other :protocol: 501");
	ASSERT_STREQ(W.seen, "", "nothing sent to the backend");
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	W.mode = BE_OK;
	diags_clear(&errs);
	teardown();
}

/* An HTTP/2 client's WebSocket to an HTTP/2 backend: an extended CONNECT
 * on, when the backend's SETTINGS allow it; else 503. */
void test_waypoint_ws_h2_to_h2(void)
{
	static const struct waypoint_ops ops_h2 = { .routes = op_routes, .upstream = op_upstream_h2 };
	struct diags errs = { 0 };
	struct h2peer p;

	if (!setup_routed(&ops_h2, &errs))
		goto out;
	W.h2_connect = true;
	ASSERT_TRUE(h2_websocket(&p, "/v2/ws", "hello h2 ws"), "WebSocket stream ended");
	ASSERT_EQ(p.status, 200, "200");
	ASSERT_HAS(p.body, "hello h2 ws", "DATA there and back");
	ASSERT_HAS(W.seen, "path=/ws auth=rewritten.example hdrs=:method=CONNECT;:protocol=websocket;",
		   "an extended CONNECT upstream");
	ASSERT_HAS(W.seen, "sec-websocket-protocol=chat;", "subprotocol passed on");
	ASSERT_HAS(p.seen_hdrs, "x-resp=added", "response header edits");
	/* a new waypoint: not the pooled connection to the last backend */
	diags_clear(&errs);
	teardown();
	memset(&W, 0, sizeof(W));
	if (!setup_routed(&ops_h2, &errs))
		goto out;
	ASSERT_TRUE(h2_websocket(&p, "/v2/ws", "x"), "refused stream ended");
	ASSERT_EQ(p.status, 503, "a backend without extended CONNECT: 503");
	ASSERT_FALSE(strstr(W.seen, "CONNECT"), "nothing sent to it");
out:
	W.h2_connect = false;
	diags_clear(&errs);
	teardown();
}

/* An HTTP/1.1 client's Upgrade: websocket to a backend whose port says
 * HTTP/2: an extended CONNECT; its 200 as 101 with the Accept for the
 * client's key; then bytes both ways, half-closes passed on. */
void test_waypoint_ws_h1_to_h2(void)
{
	static const struct waypoint_ops ops_h2 = { .routes = op_routes, .upstream = op_upstream_h2 };
	static const char up[] = "GET /v2/ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
				 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
	struct diags errs = { 0 };
	char *out;
	int fd;

	if (!setup_routed(&ops_h2, &errs))
		goto out;
	W.proto = WAYPOINT_PROTO_H2C;
	W.h2_connect = true;
	fd = client();
	ASSERT_TRUE(send_str(fd, up), "upgrade");
	out = read_until(fd, "\r\n\r\n", 3000);
	ASSERT_HAS(out, "HTTP/1.1 101 Switching Protocols\r\n", "101");
	/* RFC 6455 1.3's example key and its Accept */
	ASSERT_HAS(out, "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "Accept from the key");
	ASSERT_HAS(out, "upgrade: websocket\r\n", "Upgrade");
	ASSERT_HAS(out, "x-resp: added\r\n", "response header edits");
	ASSERT_TRUE(send_str(fd, "raw bytes\n"), "raw");
	out = read_until(fd, "raw bytes\n", 3000);
	ASSERT_HAS(out, "raw bytes\n", "bytes both ways");
	ASSERT_OK(shutdown(fd, SHUT_WR), "half-close");
	out = read_until(fd, NULL, 3000);
	ASSERT_STREQ(out, "", "the backend's end of stream as the end of the connection");
	ASSERT_HAS(W.seen, "path=/ws auth=rewritten.example hdrs=:method=CONNECT;:protocol=websocket;",
		   "an extended CONNECT upstream");
	ASSERT_FALSE(strstr(W.seen, "sec-websocket-key"), "no key in HTTP/2");
	ASSERT_FALSE(strstr(W.seen, "upgrade"), "no Upgrade in HTTP/2");
	close(fd);
	/* a backend without extended CONNECT: 503, and the connection closes */
	W.h2_connect = false;
	fd = client();
	ASSERT_TRUE(send_str(fd, up), "upgrade again");
	out = read_until(fd, NULL, 3000);
	ASSERT_HAS(out, "HTTP/1.1 503", "503");
	close(fd);
out:
	W.h2_connect = false;
	W.proto = WAYPOINT_PROTO_UNSET;
	diags_clear(&errs);
	teardown();
}

static ssize_t h2p_never(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	(void)ng, (void)sid, (void)buf, (void)len, (void)flags, (void)src, (void)ud;
	return NGHTTP2_ERR_DEFERRED;
}

/* An HTTP/2 client's WebSocket that sends nothing after the 200: true when
 * the waypoint reset it; *ms: how long after the 200. */
static bool h2_websocket_idle(uint64_t *ms)
{
	struct h2peer p;
	int fd = client();
	nghttp2_data_provider prd = { .read_callback = h2p_never };
	nghttp2_nv nv[] = {
		{ (uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, 0 },
		{ (uint8_t *)":protocol", (uint8_t *)"websocket", 9, 9, 0 },
		{ (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
		{ (uint8_t *)":authority", (uint8_t *)"web", 10, 3, 0 },
		{ (uint8_t *)":path", (uint8_t *)"/idle", 5, 5, 0 },
	};
	bool ok = false;

	memset(&p, 0, sizeof(p));
	*ms = 0;
	if (fd < 0 || !h2p_init(&p, fd, false))
		return false;
	p.sid = -1;
	if (!h2p_wait_connect(&p, 3000))
		goto out;
	p.done = 0;
	{
		uint64_t t0 = mono_ms();

		p.sid = nghttp2_submit_request(p.ng, NULL, nv, 5, &prd, NULL);
		if (p.sid < 0 || nghttp2_session_send(p.ng))
			goto out;
		h2p_run(&p, 3000);	/* the 200 at once, then nothing till the reset */
		*ms = mono_ms() - t0;
	}
	ok = p.status == 200 && p.done;
out:
	nghttp2_session_del(p.ng);
	close(fd);
	return ok;
}

/* An open WebSocket outlives the request timeout; the idle timeout ends it
 * only when no byte moved that long (HTTP/1.1 and HTTP/2 clients). */
void test_waypoint_ws_idle(void)
{
	struct waypoint_opts o = { .upstream_timeout_ms = 200, .idle_timeout_ms = 400, .header_timeout_ms = 3000 };
	uint64_t t0;
	char *out;
	int fd;

	if (!setup_opts(&o))
		goto out;
	W.mode = BE_UPGRADE;
	fd = client();
	ASSERT_TRUE(send_str(fd, "GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
		    "upgrade");
	out = read_until(fd, "\r\n\r\n", 3000);
	ASSERT_HAS(out, "101 Switching Protocols", "101");
	for (int i = 0; i < 6; i++) {	/* 900 ms: past both timeouts, never idle 400 */
		usleep(150 * 1000);
		ASSERT_TRUE(send_str(fd, "tick\n"), "tick");
		out = read_until(fd, "tick\n", 1000);
		ASSERT_HAS(out, "tick", "bytes move: still open");
	}
	t0 = mono_ms();
	(void)read_until(fd, NULL, 3000);	/* until the waypoint closes it */
	ASSERT_TRUE(mono_ms() - t0 >= 300 && mono_ms() - t0 < 2000, "closed once idle 400 ms");
	close(fd);
	/* an HTTP/2 client's WebSocket stream: reset once idle */
	W.proto = WAYPOINT_PROTO_HTTP1;
	ASSERT_TRUE(h2_websocket_idle(&t0), "idle stream reset");
	ASSERT_TRUE(t0 >= 300 && t0 < 2000, "reset once idle 400 ms, not at the request timeout");
out:
	W.proto = WAYPOINT_PROTO_UNSET;
	W.mode = BE_OK;
	teardown();
}
