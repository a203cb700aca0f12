// SPDX-License-Identifier: Apache-2.0
/* fuzz_waypoint.c - libFuzzer target: the waypoint's L7 request path
 * (user/waypoint.c HTTP/1.1, user/waypoint_h2.c HTTP/2, and the translation
 * between them: waypoint_h2.c's HTTP/1.1 upstreams, user/waypoint_up2.c)
 * over real sockets.
 *
 * Each input is one client connection and what every upstream answers:
 *
 *   bytes 0-1   n, little-endian: the client stream is the next n bytes
 *               (clamped to what there is)
 *   byte 2      flags (below)
 *   byte 3      bits 0-5 pace: 0 every peer sends its stream as fast as it
 *               can; k > 0 at most k bytes per loop batch (heads and frames
 *               split across reads; client and upstream events in one batch)
 *               bits 6-7 what the upstreams' port speaks (appProtocol): 0 and
 *               3 not said, 1 HTTP/1.1 (an HTTP/2 client is translated), 2
 *               h2c (an HTTP/1.1 client is translated)
 *   then        the client stream, then the upstream stream (the rest)
 *
 * The client stream goes into one end of a socketpair whose other end is
 * handed to waypoint_accept(); the client's write side is then shut, at once
 * (F_EARLY_EOF) or once the waypoint has nothing left to do (so that HTTP/2
 * responses, which an EOF would cut short, come back first). Every
 * connection ops->upstream opens (backends, mirrors, HTTP/2 upstreams) is a
 * socketpair whose far end sends the whole upstream stream once the waypoint
 * has written its first bytes (F_EAGER: at once) and then shuts (F_CLOSE:
 * closes) its write side; what the waypoint sends to either peer is read and
 * dropped. The routes are those of a fixed table built once from YAML
 * (matches, header modifiers both ways, redirects, a rewrite, a mirror, CORS,
 * a missing backend, a short request timeout, retries, a Gateway listener);
 * ops->authorize refuses /deny... (403) and requests with x-deny (401).
 *
 * flags:
 *   bits 0-1    routes: 0 the Service's HTTPRoutes, 1 the Gateway listener's
 *               (client ns ""; bit 7 says https), 2 no routes (the Service as
 *               it is), 3 no routes and no Service (503 / 404)
 *   bit 2       F_EAGER    the upstream stream is sent before any request
 *   bit 3       F_CLOSE    upstreams close, not half-close, when done
 *   bit 4       F_SHORT    waypoint timeouts of a few ms (header, idle,
 *                          upstream)
 *   bits 5-6    upstreams: 0 as above, 1 ops->upstream fails -ENOENT,
 *                          2 every second call fails -ECONNREFUSED, 3 they
 *                          stall (send nothing, never close)
 *   bit 7       F_EARLY_EOF the client shuts its write side at once
 *                          (listener routes: https instead)
 *
 * The loop (loop.h has no run-once) is run one epoll batch at a time: a 0 ms
 * timer bounds the wait, and epoll_wait is wrapped (-Wl,--wrap) to count the
 * events of a batch and to stop the loop at its next wait. An input ends when
 * the waypoint has no connection or mirror left, when a batch had no event,
 * no peer has bytes to send, the client's EOF is out and no waypoint timer is
 * due within SOON_MS (the wrapper sees the loop's epoll timeout: when it is
 * the harness's own tick, nothing is), or after MAX_ITERS batches or
 * WALL_MS. Beyond ASan/UBSan (and LeakSanitizer), it aborts when:
 *   - SPIN_ITERS batches in a row have events while no peer sent anything (an
 *     fd that stays ready and is never served: the agent would spin);
 *   - an HTTP/1.1 peer gets byte 0xbe, ASan's fill of new heap blocks, which
 *     neither stream has: uninitialized memory went out (max_malloc_fill_size
 *     is raised to cover the waypoint's buffers);
 *   - an fd the input's socketpairs made is still open after waypoint_free()
 *     and the harness closed its own ends.
 * FUZZ_WP_IGNORE=spin,fill,fds turns these checks off (to fuzz on past a
 * known finding); "batch" hands the loop one event per epoll_wait, so that no
 * callback can free what a later event of its batch points to.
 * The metrics are written (to /dev/null) before waypoint_free(). Everything
 * is freed per input (waypoint, loop, fds); nothing is kept but the route
 * table. FUZZ_WP_DEBUG=1 prints what each input did, =2 also the bytes the
 * client and the upstreams got.
 *
 * fuzz-srcs: user/waypoint.c user/waypoint_h2.c user/waypoint_up2.c user/waypoint_ws.c user/route.c user/model.c user/config.c user/lib/xprt.c user/lib/loop.c user/lib/log.c user/lib/diag.c
 * fuzz-libs: -lnghttp2 -lhttp_parser -lyaml -lssl -lcrypto -lpthread -Wl,--wrap=epoll_wait
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "route.h"
#include "waypoint.h"
#include "waypoint_int.h"	/* w->conns, w->mirrors: is anything left? */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int __real_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout);
int __wrap_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout);

#define F_ROUTES	0x03
#define F_EAGER		0x04
#define F_CLOSE		0x08
#define F_SHORT		0x10
#define F_FAIL_SHIFT	5
#define F_EARLY_EOF	0x80

#define MAX_UP		32	/* upstream connections per input */
#define MAX_ITERS	20000	/* epoll batches per input */
#define SPIN_ITERS	200	/* busy batches in a row with nothing sent */
#define SOON_MS		20	/* an idle input waits for timers due within */
#define WALL_MS		50	/* per input */
#define FILL_BYTE	0xbe	/* ASan's malloc_fill_byte */

/* ASan fills new heap blocks with FILL_BYTE: make that the whole block, so
 * that uninitialized bytes sent to a peer are seen (ASAN_OPTIONS overrides). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "max_malloc_fill_size=262144";
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
	"  - name: v2\n"
	"    matches: [{path: {type: PathPrefix, value: /v2}}]\n"
	"    filters:\n"
	"    - type: RequestHeaderModifier\n"
	"      requestHeaderModifier: {set: [{name: x-set, value: one}], add: [{name: x-add, value: two}], "
	"remove: [x-gone]}\n"
	"    - type: ResponseHeaderModifier\n"
	"      responseHeaderModifier: {add: [{name: x-resp, value: added}], set: [{name: server, value: sluice}], "
	"remove: [x-backend]}\n"
	"    - type: URLRewrite\n"
	"      urlRewrite: {hostname: rewritten.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}\n"
	"    backendRefs: [{name: v2, port: 80}]\n"
	"  - name: canary\n"
	"    matches: [{headers: [{name: x-canary, value: 'yes'}, {name: x-user, type: RegularExpression, "
	"value: '[a-z]+'}]}]\n"
	"    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-canary, value: seen}]}}]\n"
	"    backendRefs: [{name: v2, port: 80}]\n"
	"  - name: old\n"
	"    matches: [{path: {type: Exact, value: /old}}]\n"
	"    filters:\n"
	"    - type: RequestRedirect\n"
	"      requestRedirect: {hostname: new.example, statusCode: 301}\n"
	"  - name: secure\n"
	"    matches: [{path: {type: PathPrefix, value: /secure}, method: GET}]\n"
	"    filters:\n"
	"    - type: RequestRedirect\n"
	"      requestRedirect: {scheme: https, port: 8443, path: {type: ReplaceFullPath, replaceFullPath: /login}}\n"
	"  - name: mirror\n"
	"    matches: [{path: {type: PathPrefix, value: /m}, queryParams: [{name: q, value: '1'}]}, "
	"{path: {type: PathPrefix, value: /m}, method: POST}]\n"
	"    filters:\n"
	"    - {type: RequestMirror, requestMirror: {backendRef: {name: v2, port: 80}, percent: 100}}\n"
	"    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-mirrored, value: 'yes'}]}}\n"
	"    backendRefs: [{name: web, port: 80}]\n"
	"  - name: cors\n"
	"    matches: [{path: {type: PathPrefix, value: /cors}}]\n"
	"    filters:\n"
	"    - type: CORS\n"
	"      cors: {allowOrigins: ['https://*.example.com'], allowMethods: [GET, POST], allowHeaders: [x-a], "
	"exposeHeaders: [x-e], allowCredentials: true, maxAge: 60}\n"
	"    backendRefs: [{name: web, port: 80}]\n"
	"  - name: gone\n"
	"    matches: [{path: {type: PathPrefix, value: /gone}}]\n"
	"    backendRefs: [{name: nothere, port: 80}]\n"
	"  - name: slow\n"
	"    matches: [{path: {type: PathPrefix, value: /slow}}]\n"
	"    timeouts: {request: 5ms}\n"
	"    backendRefs: [{name: web, port: 80}]\n"
	"  - name: retry\n"
	"    matches: [{path: {type: PathPrefix, value: /retry}}]\n"
	"    retry: {codes: [500, 502, 503], attempts: 2, backoff: 1ms}\n"
	"    backendRefs: [{name: web, port: 80}]\n"
	"  - name: web\n"
	"    matches: [{path: {type: PathPrefix, value: /w}}, {path: {type: Exact, value: /}}]\n"
	"    backendRefs: [{name: web, port: 80}]\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: sluice}\n"
	"spec: {controllerName: sluice.io/gateway-controller}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n"
	"spec:\n  gatewayClassName: sluice\n  listeners:\n"
	"  - {name: http, protocol: HTTP, port: 80, hostname: '*.example.com', "
	"allowedRoutes: {namespaces: {from: All}}}\n"
	"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
	"metadata: {name: gw, namespace: default}\n"
	"spec:\n  parentRefs: [{name: gw, namespace: infra}]\n  hostnames: [app.example.com]\n"
	"  rules:\n"
	"  - matches: [{path: {type: PathPrefix, value: /r}}]\n"
	"    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 302}}]\n"
	"  - backendRefs: [{name: web, port: 80}]\n"
	"    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-gw, value: '1'}]}}]\n";

static struct sl_model *model;
static struct route_table *table;
static int debug;
static bool ignore_spin, ignore_fill, ignore_fds, one_event;
static FILE *devnull;		/* waypoint_metrics_write() writes there */

/* A harness end of a socketpair: writes its stream, reads and drops. */
struct peer {
	int fd;
	struct loop_io io;
	bool in_loop;
	const uint8_t *data;
	size_t len, off;
	size_t chunk, budget;	/* pace: bytes per batch (0: no limit), left in this one */
	bool started;		/* sending (upstreams: once the waypoint wrote) */
	bool shut_ok;		/* may shut its write side when all is sent */
	bool full_close;	/* close instead of shutdown */
	bool wr_done, rd_eof;
	size_t got;		/* bytes the waypoint sent */
	bool saw_fill;		/* ASan's malloc fill byte among them */
	char seen[2048];	/* their start, for reports */
};

static struct {
	struct loop *loop;
	struct waypoint *wp;
	struct loop_timer tick;
	bool in_run;
	int calls, events;
	int soon;		/* run_soon(): the tick's delay; 0: off */
	bool nothing_due;	/* run_soon(): no waypoint timer within it */
	uint8_t flags, pace;
	enum waypoint_proto proto;	/* what ops->upstream says the port speaks */
	const uint8_t *up_data;
	size_t up_len;
	struct peer client;
	struct peer up[MAX_UP];
	int n_up, n_up_calls;
	int fds[2 * MAX_UP + 2];	/* every fd this input created */
	int n_fds;
} F;

int __wrap_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	int n;

	/* one batch per loop_run(): the second wait ends it */
	if (F.in_run && F.calls++ > 0) {
		loop_stop(F.loop);
		return 0;
	}
	/* the loop waits for its earliest timer: is it ours (nothing due)? */
	if (F.in_run && F.soon && timeout >= F.soon - 1) {
		F.nothing_due = true;
		loop_stop(F.loop);
		return 0;
	}
	n = __real_epoll_wait(epfd, ev, one_event ? 1 : max, timeout);
	if (n > 0)
		F.events += n;
	return n;
}

static void note_fd(int fd)
{
	if (F.n_fds < (int)(sizeof(F.fds) / sizeof(F.fds[0])))
		F.fds[F.n_fds++] = fd;
}

/* ---- peers ---- */

static void peer_close(struct peer *p)
{
	if (p->in_loop)
		loop_del(F.loop, &p->io);
	p->in_loop = false;
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

static void peer_io(struct loop_io *io, uint32_t ev);

/* Read what the waypoint sent; sets rd_eof. */
static void peer_read(struct peer *p)
{
	char sink[16384];

	while (p->fd >= 0 && !p->rd_eof) {
		ssize_t n = read(p->fd, sink, sizeof(sink));

		if (n > 0) {
			if (memchr(sink, FILL_BYTE, (size_t)n))
				p->saw_fill = true;
			if (p->got < sizeof(p->seen))
				memcpy(p->seen + p->got, sink,
				       (size_t)n < sizeof(p->seen) - p->got ? (size_t)n : sizeof(p->seen) - p->got);
			p->got += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		p->rd_eof = true;	/* EOF, or reset */
	}
}

static void peer_step(struct peer *p)
{
	uint32_t ev = 0;

	peer_read(p);
	if (!p->started && p->got)
		p->started = true;	/* an upstream answers once asked */
	while (p->started && p->off < p->len && (!p->chunk || p->budget)) {
		size_t want = p->len - p->off;
		ssize_t n;

		if (p->chunk && want > p->budget)
			want = p->budget;
		n = send(p->fd, p->data + p->off, want, MSG_NOSIGNAL);
		if (n > 0) {
			p->off += (size_t)n;
			if (p->chunk)
				p->budget -= (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		p->off = p->len;	/* the waypoint is gone: nothing more to say */
		p->rd_eof = true;
	}
	if (p->started && p->off == p->len && p->shut_ok && !p->wr_done) {
		p->wr_done = true;
		if (p->full_close) {
			peer_close(p);
			return;
		}
		shutdown(p->fd, SHUT_WR);
	}
	if (!p->rd_eof)
		ev |= EPOLLIN | EPOLLRDHUP;
	if (p->started && p->off < p->len && (!p->chunk || p->budget))
		ev |= EPOLLOUT;
	if (!ev) {
		if (p->in_loop)
			loop_del(F.loop, &p->io);
		p->in_loop = false;
		return;
	}
	if (p->in_loop)
		loop_mod(F.loop, &p->io, ev);
	else if (!loop_add(F.loop, &p->io, p->fd, ev, peer_io, p))
		p->in_loop = true;
}

/* A new batch: paced peers may send their next chunk. true if any did. */
static bool peer_pace(struct peer *p)
{
	size_t off = p->off;

	if (p->fd < 0 || !p->chunk || !p->started || p->off == p->len)
		return false;
	p->budget = p->chunk;
	peer_step(p);
	return p->off != off;
}

static void peer_io(struct loop_io *io, uint32_t ev)
{
	(void)ev;
	peer_step(io->arg);
}

static bool pace_all(void)
{
	bool any = peer_pace(&F.client);

	for (int i = 0; i < F.n_up; i++)
		any |= peer_pace(&F.up[i]);
	return any;
}

static int peer_open(struct peer *p, int fd, const uint8_t *data, size_t len, bool started, bool shut_ok,
		     bool full_close)
{
	*p = (struct peer){ .fd = fd, .data = data, .len = len, .started = started, .shut_ok = shut_ok,
			    .full_close = full_close, .chunk = F.pace, .budget = F.pace };
	if (loop_add(F.loop, &p->io, fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT, peer_io, p))
		return -1;
	p->in_loop = true;
	peer_step(p);
	return 0;
}

static void dump(const char *what, const struct peer *p)
{
	size_t n = p->got < sizeof(p->seen) ? p->got : sizeof(p->seen);

	fprintf(stderr, "fuzz_waypoint: %s %zu bytes:\n", what, p->got);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p->seen[i];

		if (ch == '\n' || (ch >= 0x20 && ch < 0x7f))
			fputc(ch, stderr);
		else if (ch != '\r')
			fprintf(stderr, "\\x%02x", ch);
	}
	fputc('\n', stderr);
}

/* ---- ops ---- */

static const struct route_set *op_routes(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
					 const char *host, struct route_backend *svc, bool *https)
{
	(void)arg, (void)vip, (void)host;
	switch (F.flags & F_ROUTES) {
	case 0:
		svc->ns = "default";
		svc->name = "web";
		svc->port = 80;
		return route_for_service(table, cl->ns, "default", "web", 80);
	case 1:
		*https = F.flags & F_EARLY_EOF;
		return route_for_listener(table, "infra", "gw", "http");
	case 2:
		svc->ns = "default";
		svc->name = "web";
		svc->port = 80;
		return NULL;
	default:
		return NULL;
	}
}

static int op_upstream(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
		       const struct route_backend *be, struct waypoint_dst *dst)
{
	int fail = (F.flags >> F_FAIL_SHIFT) & 3, sv[2];

	(void)arg, (void)cl, (void)vip;
	if (!be || !be->name)
		abort();	/* the waypoint must name what it connects to */
	F.n_up_calls++;
	if (fail == 1)
		return -ENOENT;
	if (fail == 2 && !(F.n_up_calls & 1))
		return -ECONNREFUSED;
	if (F.n_up == MAX_UP)
		return -EMFILE;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		return -errno;
	note_fd(sv[0]);
	note_fd(sv[1]);
	if (peer_open(&F.up[F.n_up], sv[1], F.up_data, fail == 3 ? 0 : F.up_len, F.flags & F_EAGER, fail != 3,
		      F.flags & F_CLOSE)) {
		close(sv[0]);
		close(sv[1]);
		return -EIO;
	}
	F.n_up++;
	snprintf(dst->ns, sizeof(dst->ns), "%s", be->ns ? be->ns : "default");
	snprintf(dst->workload, sizeof(dst->workload), "%s", be->name);
	snprintf(dst->pod, sizeof(dst->pod), "%s-0", be->name);
	dst->proto = F.proto;
	return sv[0];
}

/* Mesh clients may not ask for /deny... (403), nor send x-deny (401). */
static int op_authorize(void *arg, const struct tunnel_client *cl, const struct tunnel_addr *vip,
			const struct route_backend *svc, const char *method, const char *path, const char *host,
			const struct route_header *h, size_t n)
{
	(void)arg, (void)host;
	if (!cl || !vip || !svc || (cl->ns[0] && !svc->name) || !method || !path)
		abort();	/* the waypoint must say what it asks about */
	if (!strncmp(path, "/deny", 5))
		return 403;
	for (size_t i = 0; i < n; i++)
		if (h[i].name_len == 6 && !strncasecmp(h[i].name, "x-deny", 6))
			return 401;
	return 0;
}

static const struct waypoint_ops ops = { .routes = op_routes, .upstream = op_upstream, .authorize = op_authorize };

/* ---- the loop, one batch at a time ---- */

static void tick_cb(struct loop_timer *t)
{
	(void)t;
	loop_stop(F.loop);
}

/* One epoll batch (waiting up to timeout_ms) and the timers then due; the
 * number of fd events it had. */
static int run_once(uint64_t timeout_ms)
{
	F.soon = 0;
	F.calls = 0;
	F.events = 0;
	F.in_run = true;
	loop_timer_arm(F.loop, &F.tick, timeout_ms);
	loop_run(F.loop);
	loop_timer_cancel(F.loop, &F.tick);
	F.in_run = false;
	return F.events;
}

/* Nothing is ready: wait for the waypoint's next timer if it is due within
 * ms (route timeouts, retry backoffs, F_SHORT's timeouts), and run what it
 * does. false when none is. */
static bool run_soon(int ms)
{
	F.nothing_due = false;
	F.calls = 0;
	F.events = 0;
	F.soon = ms;
	F.in_run = true;
	loop_timer_arm(F.loop, &F.tick, (uint64_t)ms);
	loop_run(F.loop);
	loop_timer_cancel(F.loop, &F.tick);
	F.in_run = false;
	F.soon = 0;
	return !F.nothing_due;
}

static bool waypoint_busy(void)
{
	return F.wp->conns || F.wp->mirrors;
}

/* ---- setup ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sl_resources *r = config_resources_new();
	struct diags errs = { 0 };
	const char *e;

	(void)argc, (void)argv;
	signal(SIGPIPE, SIG_IGN);	/* as the agent (main.c) */
	debug = (e = getenv("FUZZ_WP_DEBUG")) ? atoi(e) : 0;
	if ((e = getenv("FUZZ_WP_IGNORE"))) {
		ignore_spin = strstr(e, "spin");
		ignore_fill = strstr(e, "fill");
		ignore_fds = strstr(e, "fds");
		one_event = strstr(e, "batch");
	}
	log_set_level(debug ? LOG_DEBUG : LOG_ERR);
	devnull = fopen("/dev/null", "w");
	if (!devnull)
		abort();
	if (!r || config_decode_buf(r, "routes.yaml", routes_yaml, sizeof(routes_yaml) - 1, &errs) ||
	    model_build(r, "node-1", &model, &errs) || route_table_build(model, &table, &errs) ||
	    !route_for_service(table, "default", "default", "web", 80) ||
	    !route_for_listener(table, "infra", "gw", "http")) {
		for (size_t i = 0; i < errs.n; i++) {
			char buf[512];

			fprintf(stderr, "fuzz_waypoint: %s\n", diag_str(&errs.v[i], buf, sizeof(buf)));
		}
		fprintf(stderr, "fuzz_waypoint: the fixed route table does not build\n");
		abort();	/* a broken harness */
	}
	for (size_t i = 0; i < route_status_count(table); i++) {
		const struct route_parent_status *s = route_status_at(table, i);

		if (debug)
			fprintf(stderr, "fuzz_waypoint: route %zu: %s %s%s %s\n", i, s->accepted_reason, s->refs_reason,
				s->partially_invalid ? " PartiallyInvalid" : "", s->message);
		if (!s->accepted || s->partially_invalid ||
		    (!s->resolved_refs && strcmp(s->refs_reason, "BackendNotFound"))) {
			fprintf(stderr, "fuzz_waypoint: route not accepted as it is: %s %s %s\n", s->accepted_reason,
				s->refs_reason, s->message);
			abort();
		}
	}
	diags_clear(&errs);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct sl_ip ip = { .family = SL_AF_INET, .addr.octets = { 10, 0, 0, 1 } };
	struct tunnel_addr vip = { .ip = { .family = SL_AF_INET, .addr.octets = { 10, 96, 0, 1 } }, .port = 80 };
	struct tunnel_client cl = { .ns = "default", .name = "client-0", .service_account = "client",
				    .identity = "spiffe://cluster.local/ns/default/sa/client", .ips = &ip,
				    .n_ips = 1, .port = 40000 };
	struct waypoint_opts o = { .access_log = debug };
	const uint8_t *client;
	size_t clen;
	uint64_t deadline;
	int sv[2], iters = 0, idle = 0, busy = 0;
	bool shut_sent, spun = false;
	struct waypoint_stats st;

	if (size < 4)
		return 0;
	clen = (size_t)data[0] | (size_t)data[1] << 8;
	F.flags = data[2];
	F.pace = data[3] & 0x3f;
	F.proto = (data[3] >> 6) == 1 ? WAYPOINT_PROTO_HTTP1 : (data[3] >> 6) == 2 ? WAYPOINT_PROTO_H2C
										     : WAYPOINT_PROTO_UNSET;
	data += 4;
	size -= 4;
	if (clen > size)
		clen = size;
	client = data;
	F.up_data = data + clen;
	F.up_len = size - clen;
	F.n_up = F.n_up_calls = 0;
	if ((F.flags & F_ROUTES) == 1)
		cl.ns = "";	/* a Gateway listener's connection */
	if (F.flags & F_SHORT) {
		o.header_timeout_ms = 3;
		o.idle_timeout_ms = 3;
		o.upstream_timeout_ms = 4;
	}

	F.n_fds = 0;
	if (loop_new(&F.loop))
		abort();
	loop_timer_init(&F.tick, tick_cb, NULL);
	if (waypoint_new(&F.wp, F.loop, &ops, NULL, &o))
		abort();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		abort();
	note_fd(sv[0]);
	note_fd(sv[1]);
	shut_sent = F.flags & F_EARLY_EOF && (F.flags & F_ROUTES) != 1;
	if (peer_open(&F.client, sv[0], client, clen, true, shut_sent, false))
		abort();
	waypoint_accept(F.wp, sv[1], &cl, &vip);

	deadline = loop_now_ms() + WALL_MS;
	for (;;) {
		uint64_t now = loop_now_ms();
		bool sent;

		if (!waypoint_busy() || iters++ >= MAX_ITERS || now >= deadline)
			break;
		sent = pace_all();
		if (run_once(0)) {
			/* events, and nothing new from the peers: for how long? */
			busy = sent ? 0 : busy + 1;
			if (busy >= SPIN_ITERS) {
				spun = true;
				break;
			}
			continue;
		}
		busy = 0;
		if (sent)
			continue;
		idle++;
		/* nothing moves: a timer due soon, else the client's EOF, else
		 * the end (only long timers are left) */
		if (run_soon(deadline - now < SOON_MS ? (int)(deadline - now) + 1 : SOON_MS))
			continue;
		if (!shut_sent) {
			shut_sent = true;
			F.client.shut_ok = true;
			if (F.client.fd >= 0)
				peer_step(&F.client);
			continue;
		}
		break;
	}
	/* what the last batches wrote, unread yet */
	peer_read(&F.client);
	for (int i = 0; i < F.n_up; i++)
		peer_read(&F.up[i]);
	waypoint_stats_get(F.wp, &st);
	if (debug)
		fprintf(stderr,
			"fuzz_waypoint: flags %#x pace %u client %zu/%zu bytes, upstream %zu bytes, %d upstream calls, "
			"%d batches (%d idle), conns left %llu, requests %llu, responses 1xx %llu 2xx %llu 3xx %llu "
			"4xx %llu 5xx %llu none %llu, timeouts %llu, client got %zu bytes%s\n",
			F.flags, F.pace, F.client.off, clen, F.up_len, F.n_up_calls, iters, idle,
			(unsigned long long)st.conns_open, (unsigned long long)st.requests_total,
			(unsigned long long)st.responses_by_class[1], (unsigned long long)st.responses_by_class[2],
			(unsigned long long)st.responses_by_class[3], (unsigned long long)st.responses_by_class[4],
			(unsigned long long)st.responses_by_class[5], (unsigned long long)st.responses_by_class[0],
			(unsigned long long)st.timeouts, F.client.got, spun ? " SPIN" : "");
	if (debug > 1) {
		dump("client got", &F.client);
		for (int i = 0; i < F.n_up; i++)
			dump("upstream got", &F.up[i]);
	}
	{
		/* HTTP/1.1 only: HPACK makes 0xbe of its own (indexed field 62) */
		bool fill = F.client.saw_fill && !(clen >= 4 && !memcmp(client, "PRI ", 4));

		for (int i = 0; i < F.n_up; i++)
			fill |= F.up[i].saw_fill && !(F.up[i].got >= 4 && !memcmp(F.up[i].seen, "PRI ", 4));
		if (fill && !ignore_fill && !memchr(client, FILL_BYTE, clen) && !memchr(F.up_data, FILL_BYTE, F.up_len)) {
			fprintf(stderr, "fuzz_waypoint: a peer got byte %#x, which neither stream has: "
					"uninitialized heap memory sent (ASan's malloc fill)\n", FILL_BYTE);
			if (debug < 2) {
				dump("client got", &F.client);
				for (int i = 0; i < F.n_up; i++)
					dump("upstream got", &F.up[i]);
			}
			abort();
		}
	}
	if (spun && !ignore_spin) {
		fprintf(stderr, "fuzz_waypoint: %d loop batches in a row had events while no peer sent "
				"anything (%llu connection(s) open): an fd stays ready and nothing serves it\n",
			SPIN_ITERS, (unsigned long long)st.conns_open);
		abort();
	}

	if (waypoint_metrics_write(F.wp, devnull))
		abort();
	waypoint_free(F.wp);
	F.wp = NULL;
	peer_close(&F.client);
	for (int i = 0; i < F.n_up; i++)
		peer_close(&F.up[i]);
	loop_free(F.loop);
	F.loop = NULL;
	/* nothing else opens fds meanwhile: whatever number was ours is closed */
	for (int i = 0; i < F.n_fds; i++) {
		int fd = F.fds[i];

		if (!ignore_fds && fcntl(fd, F_GETFD) != -1) {
			char path[64], what[256] = "?";
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			n = readlink(path, what, sizeof(what) - 1);
			what[n > 0 ? n : 0] = 0;
			fprintf(stderr, "fuzz_waypoint: fd %d (%s) still open after waypoint_free()\n", fd, what);
			abort();
		}
	}
	return 0;
}
