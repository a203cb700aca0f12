// SPDX-License-Identifier: Apache-2.0
/* sluicectl.c - ask a running sluice-agent what it is doing, over its status
 * socket (user/status.h): one HTTP/1.1 GET per run, printed as a table or as
 * JSON.
 *
 *   sluicectl [--socket PATH] [--json] [--timeout SEC] COMMAND
 *
 * Exit status: 0 on success, 1 on any error. Errors go to stderr as
 * "sluicectl: what failed: why". Tables tolerate missing and extra fields in
 * the agent's JSON, so a CLI and an agent of different versions still talk.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "status.h"

#ifndef SL_VERSION
#define SL_VERSION "unknown"
#endif

#define CTL_TIMEOUT_S	5.0
#define CTL_MAX_HDR	(64 * 1024)	/* response status line + headers */
#define CTL_MAX_BODY	(256u << 20)	/* a sanity bound, far above real dumps */

struct ctl_opts {
	const char *sock;
	bool json;
	double timeout_s;
};

struct ctl_resp {
	int code;
	char reason[64];
	char *body;			/* NUL-terminated */
	size_t body_len;
};

static void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ctl_err(const char *fmt, ...)
{
	va_list ap;

	fputs("sluicectl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void ctl_usage(FILE *f)
{
	fprintf(f,
		"usage: sluicectl [--socket PATH] [--json] [--timeout SEC] COMMAND\n"
		"\n"
		"commands:\n"
		"  status        agent, configuration, datapath and sync state\n"
		"  ready         exit 0 once a configuration is in the maps, else 1 (a\n"
		"                readiness probe)\n"
		"  services      services with their VIPs and chosen backends\n"
		"  workloads     pods known to the agent\n"
		"  connections   live mesh connections: workloads, identities, bytes, age\n"
		"  certs         workload certificates in use and when they rotate\n"
		"  maps          BPF maps and datapath counters\n"
		"  sockmap       same-node acceleration: state and the sockets of sl_socks_v1\n"
		"  policies      NetworkPolicies in force, their counters, the pods they isolate\n"
		"  policy check --from NS/POD|IP --to NS/POD:PORT|IP:PORT|[IPv6]:PORT [--udp]\n"
		"                would policy allow it, and which policy and rule decide\n"
		"  routes        Gateway API routes, what they attach to, accepted or why not\n"
		"  gateways      Gateways of class sluice on this node: addresses, listeners,\n"
		"                their conditions (conflicts, why not served) and attached routes\n"
		"  route-check NS/SERVICE[:PORT] METHOD PATH [-H NAME:VALUE]... [--from NS] [--host H]\n"
		"                which rule and backend a request would take\n"
		"  get PATH      the JSON the agent serves at PATH (e.g. /status)\n"
		"\n"
		"options:\n"
		"  -s, --socket PATH   agent socket (default $SLUICE_SOCKET or %s)\n"
		"  -j, --json          print the agent's JSON, indented, instead of a table\n"
		"  -t, --timeout SEC   give up after SEC seconds (default %g)\n"
		"  -h, --help          this text\n",
		SL_STATUS_SOCK, CTL_TIMEOUT_S);
}

/* ---- transport ---- */

static double ctl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Milliseconds left before deadline (absolute, ctl_now() seconds); 0 if past. */
static int ctl_left_ms(double deadline)
{
	double left = (deadline - ctl_now()) * 1000.0;

	return left <= 0 ? 0 : left > 1e9 ? 1000000000 : (int)left + 1;
}

/* Wait until fd has events or deadline passes. Returns 0 or -ETIMEDOUT/-errno. */
static int ctl_wait(int fd, short events, double deadline)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int n;

	do {
		n = poll(&pfd, 1, ctl_left_ms(deadline));
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -errno;
	return n ? 0 : -ETIMEDOUT;
}

/* Connect to the agent. Returns a non-blocking fd, or -errno (-ETIMEDOUT when
 * the agent's backlog stayed full until the deadline). */
static int ctl_connect(const char *path, double deadline)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int left = ctl_left_ms(deadline), fd, ret;
	struct timeval tv = { .tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000 };

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	/* A unix connect() waits only when the listener's backlog is full; the
	 * send timeout bounds that wait (a non-blocking one would just fail). */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) == -1) {
		ret = errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
		close(fd);
		return ret;
	}
	return fd;
}

static int ctl_send_all(int fd, const char *buf, size_t len, double deadline)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		int ret;

		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			ret = ctl_wait(fd, POLLOUT, deadline);
			if (ret)
				return ret;
			continue;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read into *buf (grown as needed, up to max bytes). Returns bytes read,
 * 0 on EOF, or -errno. */
static ssize_t ctl_recv(int fd, char **buf, size_t *len, size_t *cap, size_t max, double deadline)
{
	for (;;) {
		ssize_t n;
		int ret;

		if (*len + 1 >= *cap) {
			size_t ncap = *cap ? *cap * 2 : 16384;
			char *nb;

			if (*len >= max)
				return -EFBIG;
			nb = realloc(*buf, ncap);
			if (!nb)
				return -ENOMEM;
			*buf = nb;
			*cap = ncap;
		}
		n = recv(fd, *buf + *len, *cap - *len - 1, 0);
		if (n >= 0) {
			*len += (size_t)n;
			(*buf)[*len] = '\0';
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		ret = ctl_wait(fd, POLLIN, deadline);
		if (ret)
			return ret;
	}
}

/* Parse the status line and headers in buf[0..hlen). Returns 0 or -EPROTO. */
static int ctl_parse_head(char *buf, size_t hlen, struct ctl_resp *r, long long *clen)
{
	char *line = buf, *end = buf + hlen, *eol;
	int minor, off = 0;

	*clen = -1;
	eol = memchr(line, '\n', (size_t)(end - line));
	if (!eol)
		return -EPROTO;
	*eol = '\0';
	if (sscanf(line, "HTTP/1.%d %3d %n", &minor, &r->code, &off) < 2 || !off ||
	    r->code < 100 || r->code > 599)
		return -EPROTO;
	snprintf(r->reason, sizeof(r->reason), "%.*s", (int)strcspn(line + off, "\r"), line + off);
	for (line = eol + 1; line < end; line = eol + 1) {
		eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			break;
		*eol = '\0';
		if (!strncasecmp(line, "Content-Length:", 15)) {
			char *p = line + 15, *q;

			errno = 0;
			*clen = strtoll(p, &q, 10);
			if (errno || q == p || *clen < 0)
				return -EPROTO;
		}
	}
	return 0;
}

/* Send GET path and read the whole response into r. Returns 0 or -errno,
 * with the error already reported; unless last, a connection the agent
 * closed before any byte of a response is -EAGAIN, unreported (try again). */
static int ctl_get_once(const struct ctl_opts *o, const char *path, struct ctl_resp *r, double deadline,
			bool last)
{
	char *buf = NULL, *req = NULL, *hend = NULL;
	size_t len = 0, cap = 0, hlen = 0;
	long long clen = -1;
	int fd, ret;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	fd = ctl_connect(o->sock, deadline);
	if (fd < 0) {
		ret = fd;
		if (ret == -ENOENT || ret == -ECONNREFUSED)
			ctl_err("cannot connect to %s: %s (is sluice-agent running?)", o->sock,
				strerror(-ret));
		else if (ret == -EACCES)
			ctl_err("cannot connect to %s: %s (the socket is 0600: run as root?)",
				o->sock, strerror(-ret));
		else if (ret == -ETIMEDOUT)
			ctl_err("cannot connect to %s: no answer within %gs (agent busy?)",
				o->sock, o->timeout_s);
		else
			ctl_err("cannot connect to %s: %s", o->sock, strerror(-ret));
		return ret;
	}
	if (asprintf(&req,
		     "GET %s HTTP/1.1\r\n"
		     "Host: sluice-agent\r\n"
		     "User-Agent: sluicectl/" SL_VERSION "\r\n"
		     "Accept: application/json\r\n"
		     "Connection: close\r\n"
		     "\r\n",
		     path) == -1) {
		req = NULL;
		ret = -ENOMEM;
		goto err;
	}
	ret = ctl_send_all(fd, req, strlen(req), deadline);
	if (ret)
		goto err;

	/* Status line and headers. */
	while (!hend) {
		n = ctl_recv(fd, &buf, &len, &cap, CTL_MAX_HDR, deadline);
		if (n < 0) {
			ret = n == -EFBIG ? -EPROTO : (int)n;
			goto err;
		}
		hend = memmem(buf, len, "\r\n\r\n", 4);
		if (!hend && n == 0) {
			ret = -EPIPE;
			goto err;
		}
	}
	hlen = (size_t)(hend - buf) + 4;
	ret = ctl_parse_head(buf, hlen, r, &clen);
	if (ret)
		goto err;
	if (clen > (long long)CTL_MAX_BODY) {
		ret = -EFBIG;
		goto err;
	}

	/* Body: Content-Length bytes, or up to EOF when the agent gave none. */
	while (clen < 0 || len - hlen < (size_t)clen) {
		n = ctl_recv(fd, &buf, &len, &cap, hlen + CTL_MAX_BODY, deadline);
		if (n < 0) {
			ret = (int)n;
			goto err;
		}
		if (n == 0) {
			if (clen < 0)
				break;
			ret = -EPIPE;
			goto err;
		}
	}
	if (clen >= 0)
		len = hlen + (size_t)clen;
	r->body_len = len - hlen;
	r->body = malloc(r->body_len + 1);
	if (!r->body) {
		ret = -ENOMEM;
		goto err;
	}
	memcpy(r->body, buf + hlen, r->body_len);
	r->body[r->body_len] = '\0';
	ret = 0;
	goto out;
err:
	if (!last && !len && (ret == -EPIPE || ret == -ECONNRESET)) {
		ret = -EAGAIN;
		goto out;
	}
	if (ret == -ETIMEDOUT)
		ctl_err("%s: GET %s: no response within %gs", o->sock, path, o->timeout_s);
	else if (ret == -EPIPE || ret == -ECONNRESET)
		ctl_err("%s: GET %s: the agent closed the connection before a full response",
			o->sock, path);
	else if (ret == -EPROTO)
		ctl_err("%s: GET %s: malformed HTTP response", o->sock, path);
	else if (ret == -EFBIG)
		ctl_err("%s: GET %s: response larger than %u bytes", o->sock, path, CTL_MAX_BODY);
	else
		ctl_err("%s: GET %s: %s", o->sock, path, strerror(-ret));
out:
	free(req);
	free(buf);
	close(fd);
	return ret;
}

/* ctl_get_once, again when the agent closed the connection before answering
 * (at most three times within the timeout): under a flood of its status
 * socket the agent closes its oldest connections to keep serving, and an
 * operator's request that was slow to arrive may be one of them. */
static int ctl_get(const struct ctl_opts *o, const char *path, struct ctl_resp *r)
{
	double deadline = ctl_now() + o->timeout_s;
	int ret = -EAGAIN;

	for (int i = 0; i < 3 && ret == -EAGAIN; i++) {
		if (i)
			usleep(20000);
		ret = ctl_get_once(o, path, r, deadline, i == 2 || ctl_now() + 0.05 >= deadline);
	}
	return ret;
}

/* ---- JSON field access: absent or mistyped fields read as "-" ---- */

static const char *js(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? v : "-";
}

/* Format any scalar: strings as-is, numbers without needless decimals. */
static const char *jfmt(const json_t *v, char *buf, size_t len)
{
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, len, "%.2f", json_real_value(v));
	else if (json_is_boolean(v))
		snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
	else
		snprintf(buf, len, "-");
	return buf;
}

static const char *jf(const json_t *o, const char *key, char *buf, size_t len)
{
	return jfmt(json_object_get(o, key), buf, len);
}

static const char *jyesno(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	return json_is_boolean(v) ? (json_is_true(v) ? "yes" : "no") : "-";
}

/* ---- tables: cells are added left to right, widths computed at print ---- */

struct table {
	size_t ncols;
	char **cells;
	size_t n, cap;
	bool oom;
};

static void table_cell(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void table_cell(struct table *t, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (t->oom)
		return;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **c = realloc(t->cells, cap * sizeof(*c));

		if (!c) {
			t->oom = true;
			return;
		}
		t->cells = c;
		t->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) == -1) {
		t->oom = true;
		s = NULL;
	}
	va_end(ap);
	if (s)
		t->cells[t->n++] = s;
}

static void table_header(struct table *t, const char *const *names)
{
	for (t->ncols = 0; names[t->ncols]; t->ncols++)
		table_cell(t, "%s", names[t->ncols]);
}

/* Print with two spaces between columns and no trailing blanks; frees t.
 * Returns 0 or -ENOMEM. */
static int table_print(struct table *t, int indent)
{
	size_t w[16] = { 0 };
	int ret = t->oom ? -ENOMEM : 0;

	if (ret || t->ncols > sizeof(w) / sizeof(w[0]))
		goto out;
	for (size_t i = 0; i < t->n; i++) {
		size_t l = strlen(t->cells[i]);

		if (l > w[i % t->ncols])
			w[i % t->ncols] = l;
	}
	for (size_t i = 0; i < t->n; i++) {
		size_t col = i % t->ncols;

		if (!col)
			printf("%*s", indent, "");
		if (col + 1 == t->ncols || i + 1 == t->n)
			printf("%s\n", t->cells[i]);
		else
			printf("%-*s  ", (int)w[col], t->cells[i]);
	}
out:
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
	return ret;
}

/* ---- commands ---- */

static void fmt_duration(double s, char *buf, size_t len)
{
	unsigned long long t;

	if (!isfinite(s) || s < 0) {
		snprintf(buf, len, "-");
		return;
	}
	if (s < 60) {
		snprintf(buf, len, "%.1fs", s);
		return;
	}
	t = (unsigned long long)s;
	if (t < 3600)
		snprintf(buf, len, "%llum%02llus", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, len, "%lluh%02llum%02llus", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%llud%02lluh%02llum", t / 86400, t / 3600 % 24, t / 60 % 60);
}

#define KV(label, ...)                                     \
	do {                                               \
		printf("%-14s", label);                    \
		printf(__VA_ARGS__);                       \
		putchar('\n');                             \
	} while (0)

static void print_status_config(const json_t *cfg)
{
	const json_t *objs = json_object_get(cfg, "objects");
	const json_t *errs = json_object_get(cfg, "errors");
	const json_t *v;
	const char *key;
	char b[64];
	size_t i;

	if (!json_is_object(cfg)) {
		KV("Config:", "-");
		return;
	}
	if (json_object_get(cfg, "generation"))
		KV("Config:", "%s (generation %s)", js(cfg, "state"),
		   jf(cfg, "generation", b, sizeof(b)));
	else
		KV("Config:", "%s", js(cfg, "state"));
	if (json_object_get(cfg, "source"))
		KV("  Source:", "%s", js(cfg, "source"));
	if (json_is_object(objs)) {
		printf("%-14s", "  Objects:");
		i = 0;
		json_object_foreach((json_t *)objs, key, v)
			printf("%s%s %s", i++ ? ", " : "", jfmt(v, b, sizeof(b)), key);
		putchar('\n');
	}
	if (json_object_get(cfg, "last_good_at"))
		KV("  Last good:", "%s", json_is_null(json_object_get(cfg, "last_good_at")) ?
		   "never" : js(cfg, "last_good_at"));
	if (json_is_string(json_object_get(cfg, "last_error")))
		KV("  Last error:", "%s", js(cfg, "last_error"));
	if (json_is_array(errs) && json_array_size(errs)) {
		KV("  Errors:", "%zu", json_array_size(errs));
		json_array_foreach(errs, i, v)
			printf("    %s\n", jfmt(v, b, sizeof(b)));
	}
}

/* This node's report (its failing Gateway listeners), and on the status
 * writer, the nodes' reports it merges. */
static void print_node_reports(const json_t *w)
{
	const json_t *nr = json_object_get(w, "node_report"), *all = json_object_get(w, "node_reports");
	json_t *ls = json_object_get(nr, "listeners"), *gw, *l, *v;
	const char *gk, *lk;
	char b1[32], b2[32], b3[32], b4[32];
	size_t i, n = 0;

	if (json_is_object(nr)) {
		json_object_foreach(ls, gk, gw)
			n += json_object_size(gw);
		KV("  Report:", "Lease %s: %s, %s writes; %zu failing listener%s here", js(nr, "lease"),
		   json_is_true(json_object_get(nr, "published")) ? "published" : "not published",
		   jf(nr, "writes", b1, sizeof(b1)), n, n == 1 ? "" : "s");
		json_object_foreach(ls, gk, gw)
			json_object_foreach(gw, lk, l)
				printf("    %s %s: %s %s\n", gk, lk, js(l, "reason"), js(l, "message"));
		if (json_is_string(json_object_get(nr, "last_error")))
			KV("  Report err:", "%s", js(nr, "last_error"));
	}
	if (!json_is_object(all))
		return;
	KV("  Reports:", "%s seen, %s live, %s refused, %s deleted (nodes gone)", jf(all, "seen", b1, sizeof(b1)),
	   jf(all, "live", b2, sizeof(b2)), jf(all, "bad", b3, sizeof(b3)), jf(all, "deleted", b4, sizeof(b4)));
	json_array_foreach(json_object_get(all, "stale"), i, v)
		printf("    stale: %s\n", json_string_value(v));
	json_object_foreach(json_object_get(all, "failing"), gk, gw)
		printf("    failing on %s: %zu Gateway%s\n", gk, json_object_size(gw), json_object_size(gw) == 1 ? "" : "s");
	if (json_is_string(json_object_get(all, "last_error")))
		KV("  Reports err:", "%s", js(all, "last_error"));
	if (json_is_string(json_object_get(all, "list_error")))
		KV("  Reports err:", "%s", js(all, "list_error"));
}

/* Gateway API status write-back: the Lease, and this agent's writes. */
static void print_status_writer(const json_t *w)
{
	char b1[32], b2[32], b3[32];

	if (!json_is_object(w))
		return;
	if (json_is_true(json_object_get(w, "leader")))
		KV("  Status:", "holding Lease %s as %s: %s writes, %s conflicts, %s errors, last at %s", js(w, "lease"),
		   js(w, "identity"), jf(w, "writes", b1, sizeof(b1)), jf(w, "conflicts", b2, sizeof(b2)),
		   jf(w, "write_errors", b3, sizeof(b3)), js(w, "last_write_at"));
	else
		KV("  Status:", "not holding Lease %s (holder: %s); %s writes before", js(w, "lease"),
		   js(w, "holder")[0] ? js(w, "holder") : "none seen", jf(w, "writes", b1, sizeof(b1)));
	if (json_is_string(json_object_get(w, "last_error")))
		KV("  Status error:", "%s", js(w, "last_error"));
	print_node_reports(w);
}

/* Kubernetes mode: the API server, and per kind its watch. */
static int print_status_kube(const json_t *k)
{
	static const char *const cols[] = { "KIND", "STATE", "RESOURCEVERSION", "OBJECTS", "LAST ERROR", NULL };
	const json_t *kinds = json_object_get(k, "kinds"), *bad = json_object_get(k, "bad_objects"), *v;
	struct table t = { 0 };
	char b[64];
	size_t i;

	if (!json_is_object(k))
		return 0;
	KV("Kubernetes:", "%s (%s)", js(k, "server"),
	   json_is_true(json_object_get(k, "ready")) ? "ready" : "waiting for the first lists");
	print_status_writer(json_object_get(k, "status_writer"));
	if (json_is_array(bad) && json_array_size(bad)) {
		KV("  Skipped:", "%zu bad object%s", json_array_size(bad), json_array_size(bad) == 1 ? "" : "s");
		json_array_foreach(bad, i, v)
			printf("    %s\n", jfmt(v, b, sizeof(b)));
	}
	if (!json_is_array(kinds))
		return 0;
	table_header(&t, cols);
	json_array_foreach(kinds, i, v) {
		table_cell(&t, "%s", js(v, "kind"));
		table_cell(&t, "%s", js(v, "state"));
		table_cell(&t, "%s", js(v, "resource_version"));
		table_cell(&t, "%s", jf(v, "objects", b, sizeof(b)));
		table_cell(&t, "%s", js(v, "last_error"));
	}
	return table_print(&t, 4);
}

static int print_status_datapath(const json_t *dp)
{
	const json_t *progs = json_object_get(dp, "programs"), *p, *reused;
	struct table t = { 0 };
	size_t i;

	if (!json_is_object(dp)) {
		KV("Datapath:", "-");
		return 0;
	}
	reused = json_object_get(dp, "reused_pins");
	KV("Datapath:", "%s%s", js(dp, "bpffs_root"),
	   json_is_true(reused) ? " (pins reused)" : json_is_false(reused) ? " (fresh pins)" : "");
	if (json_object_get(dp, "cgroup"))
		KV("  Cgroup:", "%s", js(dp, "cgroup"));
	if (!json_is_array(progs))
		return 0;
	KV("  Programs:", "%zu", json_array_size(progs));
	json_array_foreach(progs, i, p) {
		t.ncols = 3;
		table_cell(&t, "%s", js(p, "name"));
		table_cell(&t, "%s", js(p, "attach"));
		table_cell(&t, "%s", js(p, "pinned_link"));
	}
	return table_print(&t, 4);
}

static void print_status_sync(const json_t *sy)
{
	char b1[64], b2[64], b3[64];

	if (!json_is_object(sy)) {
		KV("Sync:", "-");
		return;
	}
	KV("Sync:", "generation %s, %s frontends, %s backends",
	   jf(sy, "generation", b1, sizeof(b1)), jf(sy, "frontends", b2, sizeof(b2)),
	   jf(sy, "backends", b3, sizeof(b3)));
	if (json_object_get(sy, "frontends_max") && json_object_get(sy, "backends_max"))
		KV("  Capacity:", "%s frontends, %s backend slots (--max-services)",
		   jf(sy, "frontends_max", b1, sizeof(b1)), jf(sy, "backends_max", b2, sizeof(b2)));
	if (json_object_get(sy, "last_sync_ms") || json_object_get(sy, "last_sync_at"))
		KV("  Last sync:", "%s ms at %s", jf(sy, "last_sync_ms", b1, sizeof(b1)),
		   js(sy, "last_sync_at"));
	if (json_object_get(sy, "updates") || json_object_get(sy, "deletes") ||
	    json_object_get(sy, "errors"))
		KV("  Changes:", "%s updates, %s deletes, %s errors",
		   jf(sy, "updates", b1, sizeof(b1)), jf(sy, "deletes", b2, sizeof(b2)),
		   jf(sy, "errors", b3, sizeof(b3)));
}

static void print_status_mesh(const json_t *m)
{
	char b1[32], b2[32], b3[32], b4[32], b5[32];

	if (!json_is_object(m))
		return;
	if (strcmp(js(m, "state"), "on")) {
		KV("Mesh:", "off (%s)", js(m, "reason"));
		return;
	}
	KV("Mesh:", "on, trust domain %s, %s of %s enrolled pods captured", js(m, "trust_domain"),
	   jf(m, "pods_captured", b1, sizeof(b1)), jf(m, "pods_enrolled", b2, sizeof(b2)));
	KV("  Open:", "%s connections; HBONE connections %s out, %s in",
	   jf(m, "connections_open", b3, sizeof(b3)), jf(m, "hbone_out", b4, sizeof(b4)),
	   jf(m, "hbone_in", b5, sizeof(b5)));
}

static void print_status_policy(const json_t *p)
{
	char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];

	if (!json_is_object(p))
		return;
	KV("Policy:", "scope %s, %s NetworkPolicies (%s select pods here), %s; %s pods pending",
	   js(p, "scope"), jf(p, "policies", b1, sizeof(b1)), jf(p, "selecting_local_pods", b2, sizeof(b2)),
	   json_is_true(json_object_get(p, "in_force")) ? "in force" : "NOT in force",
	   jf(p, "pods_pending", b3, sizeof(b3)));
	KV("  Kernel:", "%s identities, %s endpoints, %s rule entries",
	   jf(p, "map_identities", b4, sizeof(b4)), jf(p, "map_endpoints", b5, sizeof(b5)),
	   jf(p, "map_rules", b6, sizeof(b6)));
}

static double json_mb(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (double)json_integer_value(v) / 1e6 : 0.0;
}

static void print_status_sockmap(const json_t *s)
{
	char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];

	if (!json_is_object(s))
		return;
	if (!json_is_true(json_object_get(s, "enabled"))) {
		KV("Sockmap:", "off (--no-sockmap): same-node hops go through TCP/IP");
		return;
	}
	KV("Sockmap:", "on, %s sockets in sl_socks_v1, %s same-node hops with both ends, %s directions app to app",
	   jf(s, "sockets", b1, sizeof(b1)), jf(s, "hops", b2, sizeof(b2)),
	   jf(s, "app_to_app_directions", b3, sizeof(b3)));
	KV("  Moved:", "%s sends (%.1f MB) socket to socket, %s (%.1f MB) app to app past the agent; "
	   "%s fallbacks to TCP",
	   jf(s, "redirected", b4, sizeof(b4)), json_mb(s, "redirected_bytes"), jf(s, "direct", b5, sizeof(b5)),
	   json_mb(s, "direct_bytes"), jf(s, "fallbacks", b6, sizeof(b6)));
}

/* "ip:port", with IPv6 addresses bracketed. */
static void fmt_hostport(const json_t *b, char *buf, size_t len);

/* Bytes of key in o as "12.3 MiB" (binary units, as /proc and smaps count). */
static const char *jmib(const json_t *o, const char *key, char *buf, size_t len)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.1f MiB", (double)json_integer_value(v) / (1024.0 * 1024.0));
	return buf;
}

static void print_status_memory(const json_t *m)
{
	const json_t *h = json_object_get(m, "heap"), *r = json_object_get(m, "relay"),
		     *s = json_object_get(m, "hbone"), *w = json_object_get(m, "waypoint");
	char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];

	if (!json_is_object(m))
		return;
	KV("Memory:", "RSS %s (anon %s); heap %s from the system: %s in use, %s free (%s at the top)",
	   jmib(m, "rss_bytes", b1, sizeof(b1)), jmib(m, "anon_bytes", b2, sizeof(b2)),
	   jmib(h, "from_system_bytes", b3, sizeof(b3)), jmib(h, "in_use_bytes", b4, sizeof(b4)),
	   jmib(h, "free_bytes", b5, sizeof(b5)), jmib(h, "releasable_bytes", b6, sizeof(b6)));
	if (json_is_object(r))
		KV("  Relay:", "%s connections (%s); buffers %s in use (%s), %s spare (%s)",
		   jf(r, "connections", b1, sizeof(b1)), jmib(r, "connection_bytes", b2, sizeof(b2)),
		   jf(r, "buffers_in_use", b3, sizeof(b3)), jmib(r, "buffers_in_use_bytes", b4, sizeof(b4)),
		   jf(r, "buffers_spare", b5, sizeof(b5)), jmib(r, "buffers_spare_bytes", b6, sizeof(b6)));
	if (json_is_object(s))
		KV("  HBONE:", "%s sessions (%s, of which output buffers %s)", jf(s, "sessions", b1, sizeof(b1)),
		   jmib(s, "session_bytes", b2, sizeof(b2)), jmib(s, "output_buffer_bytes", b3, sizeof(b3)));
	if (json_is_object(w)) {
		KV("  Waypoint:", "%s connections (%s HTTP/2): %s, buffers %s, spare %s",
		   jf(w, "connections", b1, sizeof(b1)), jf(w, "http2_connections", b2, sizeof(b2)),
		   jmib(w, "connection_bytes", b3, sizeof(b3)), jmib(w, "buffer_bytes", b4, sizeof(b4)),
		   jmib(w, "spare_bytes", b5, sizeof(b5)));
		KV("  HTTP/2 upstreams:", "%s pooled connections, %s streams (%s)", jf(w, "http2_upstreams", b1, sizeof(b1)),
		   jf(w, "http2_upstream_streams", b2, sizeof(b2)), jmib(w, "http2_upstream_bytes", b3, sizeof(b3)));
	}
}

static int print_sockmap(const json_t *root)
{
	static const char *const hdr[] = { "NETNS", "LOCAL", "REMOTE", "SOCKET-COOKIE", "PEER", NULL };
	const json_t *socks = json_object_get(root, "sockets"), *s;
	struct table t = { 0 };
	char b1[80], b2[80], b3[32], b4[32];
	size_t i;

	print_status_sockmap(json_object_get(root, "sockmap"));
	if (!json_array_size(socks))
		return 0;
	putchar('\n');
	table_header(&t, hdr);
	json_array_foreach(socks, i, s) {
		fmt_hostport(json_object_get(s, "local"), b1, sizeof(b1));
		fmt_hostport(json_object_get(s, "remote"), b2, sizeof(b2));
		table_cell(&t, "%s", jf(s, "netns_cookie", b3, sizeof(b3)));
		table_cell(&t, "%s", b1);
		table_cell(&t, "%s", b2);
		table_cell(&t, "%s", jf(s, "socket_cookie", b4, sizeof(b4)));
		table_cell(&t, "%s", json_is_true(json_object_get(s, "peer")) ? "yes" : "no");
	}
	return table_print(&t, 0);
}

static int print_status(const json_t *root)
{
	const json_t *up = json_object_get(root, "uptime_s");
	char b[64];
	int ret;

	KV("Version:", "%s", js(root, "version"));
	KV("Node:", "%s", js(root, "node"));
	KV("PID:", "%s", jf(root, "pid", b, sizeof(b)));
	if (json_is_number(up))
		fmt_duration(json_number_value(up), b, sizeof(b));
	else
		snprintf(b, sizeof(b), "-");
	KV("Uptime:", "%s", b);
	/* only while an upgrade is under way (docs/reliability.md) */
	if (json_is_object(json_object_get(root, "handover")) &&
	    strcmp(js(json_object_get(root, "handover"), "state"), "serving"))
		KV("Handover:", "%s", js(json_object_get(root, "handover"), "state"));
	print_status_config(json_object_get(root, "config"));
	print_status_kube(json_object_get(root, "kubernetes"));
	ret = print_status_datapath(json_object_get(root, "datapath"));
	print_status_sync(json_object_get(root, "sync"));
	print_status_mesh(json_object_get(root, "mesh"));
	print_status_policy(json_object_get(root, "policy"));
	print_status_sockmap(json_object_get(root, "sockmap"));
	print_status_memory(json_object_get(root, "memory"));
	return ret;
}

/* "ip:port", with IPv6 addresses bracketed. */
static void fmt_hostport(const json_t *b, char *buf, size_t len)
{
	const char *ip = js(b, "ip");
	char pb[32];
	const json_t *port = json_object_get(b, "port");

	if (!port)
		snprintf(buf, len, "%s", ip);
	else if (strchr(ip, ':'))
		snprintf(buf, len, "[%s]:%s", ip, jfmt(port, pb, sizeof(pb)));
	else
		snprintf(buf, len, "%s:%s", ip, jfmt(port, pb, sizeof(pb)));
}

static int print_services(const json_t *root)
{
	static const char *const hdr[] = { "NAMESPACE", "NAME", "VIP", "PORT", "PROTO", "READY",
					   "AFFINITY", "POLICY", "BACKENDS", NULL };
	const json_t *svcs = json_object_get(root, "services"), *svc, *be;
	struct table t = { 0 };
	size_t i, j;

	table_header(&t, hdr);
	json_array_foreach(svcs, i, svc) {
		const json_t *bes = json_object_get(svc, "backends");
		const char *aff = js(svc, "affinity");
		size_t chosen = 0, blen = 0;
		char *list = NULL, b[64];
		FILE *f = open_memstream(&list, &blen);

		if (!f)
			return -ENOMEM;
		json_array_foreach(bes, j, be) {
			char hp[128];

			if (!json_is_true(json_object_get(be, "chosen")))
				continue;
			fmt_hostport(be, hp, sizeof(hp));
			fprintf(f, "%s%s", chosen++ ? "," : "", hp);
		}
		fclose(f);
		table_cell(&t, "%s", js(svc, "namespace"));
		table_cell(&t, "%s", js(svc, "name"));
		table_cell(&t, "%s", js(svc, "vip"));
		table_cell(&t, "%s", jf(svc, "port", b, sizeof(b)));
		table_cell(&t, "%s", js(svc, "protocol"));
		table_cell(&t, "%zu/%zu", chosen, json_array_size(bes));
		if (!strcmp(aff, "ClientIP") && json_object_get(svc, "affinity_timeout"))
			table_cell(&t, "ClientIP/%ss", jf(svc, "affinity_timeout", b, sizeof(b)));
		else
			table_cell(&t, "%s", aff);
		table_cell(&t, "%s", js(svc, "traffic_policy"));
		table_cell(&t, "%s", list && list[0] ? list : "-");
		free(list);
	}
	return table_print(&t, 0);
}

static int print_workloads(const json_t *root)
{
	static const char *const hdr[] = { "NAMESPACE", "NAME", "NODE", "IPS", "IDENTITY",
					   "LOCAL", "READY", "ENROLLED", "MESH", NULL };
	const json_t *wls = json_object_get(root, "workloads"), *wl, *ip;
	struct table t = { 0 };
	size_t i, j;

	table_header(&t, hdr);
	json_array_foreach(wls, i, wl) {
		const json_t *ips = json_object_get(wl, "ips");
		char *list = NULL, b[64];
		size_t blen = 0;
		FILE *f = open_memstream(&list, &blen);

		if (!f)
			return -ENOMEM;
		json_array_foreach(ips, j, ip)
			fprintf(f, "%s%s", j ? "," : "", jfmt(ip, b, sizeof(b)));
		fclose(f);
		table_cell(&t, "%s", js(wl, "namespace"));
		table_cell(&t, "%s", js(wl, "name"));
		table_cell(&t, "%s", js(wl, "node"));
		table_cell(&t, "%s", list && list[0] ? list : "-");
		table_cell(&t, "%s", js(wl, "identity"));
		table_cell(&t, "%s", jyesno(wl, "local"));
		table_cell(&t, "%s", jyesno(wl, "ready"));
		table_cell(&t, "%s", jyesno(wl, "enrolled"));
		table_cell(&t, "%s", js(wl, "mesh"));
		free(list);
	}
	return table_print(&t, 0);
}

static int print_maps(const json_t *root)
{
	static const char *const hdr[] = { "NAME", "TYPE", "ENTRIES", "MAX", "USE%", "PINNED",
					   NULL };
	static const char *const chdr[] = { "COUNTER", "VALUE", NULL };
	const json_t *maps = json_object_get(root, "maps"), *m, *v;
	const json_t *counters = json_object_get(root, "counters");
	struct table t = { 0 };
	const char *key;
	char b[64];
	size_t i;
	int ret;

	table_header(&t, hdr);
	json_array_foreach(maps, i, m) {
		const json_t *ent = json_object_get(m, "entries");
		const json_t *max = json_object_get(m, "max_entries");
		const json_t *pin = json_object_get(m, "pinned");

		table_cell(&t, "%s", js(m, "name"));
		table_cell(&t, "%s", js(m, "type"));
		table_cell(&t, "%s", jfmt(ent, b, sizeof(b)));
		table_cell(&t, "%s", jfmt(max, b, sizeof(b)));
		if (json_is_number(ent) && json_is_number(max) && json_number_value(max) > 0)
			table_cell(&t, "%.1f%%",
				   100.0 * json_number_value(ent) / json_number_value(max));
		else
			table_cell(&t, "-");
		table_cell(&t, "%s", json_is_string(pin) ? json_string_value(pin) : "-");
	}
	ret = table_print(&t, 0);
	if (ret || !json_is_object(counters) || !json_object_size(counters))
		return ret;
	putchar('\n');
	table_header(&t, chdr);
	json_object_foreach((json_t *)counters, key, v) {
		table_cell(&t, "%s", key);
		table_cell(&t, "%s", jfmt(v, b, sizeof(b)));
	}
	return table_print(&t, 0);
}

/* "ns/name" of a connection end, or its address when it is no workload. */
static void fmt_end(const json_t *who, const json_t *addr, char *buf, size_t len)
{
	const char *ns = json_string_value(json_object_get(who, "namespace"));
	const char *name = json_string_value(json_object_get(who, "name"));

	if (ns && name)
		snprintf(buf, len, "%s/%s", ns, name);
	else
		fmt_hostport(addr, buf, len);
}

static void fmt_bytes(const json_t *v, char *buf, size_t len)
{
	double b = json_is_number(v) ? json_number_value(v) : -1;

	if (b < 0)
		snprintf(buf, len, "-");
	else if (b < 1024)
		snprintf(buf, len, "%.0f", b);
	else if (b < 1024 * 1024)
		snprintf(buf, len, "%.1fKi", b / 1024);
	else if (b < 1024.0 * 1024 * 1024)
		snprintf(buf, len, "%.1fMi", b / 1024 / 1024);
	else
		snprintf(buf, len, "%.2fGi", b / 1024 / 1024 / 1024);
}

static int print_connections(const json_t *root)
{
	static const char *const hdr[] = { "DIR", "PATH", "SOURCE", "DESTINATION", "DST-ADDR",
					   "SRC-IDENTITY", "DST-IDENTITY", "SENT", "RECV", "AGE",
					   "STATE", NULL };
	const json_t *conns = json_object_get(root, "connections"), *c;
	const json_t *st = json_object_get(root, "stats");
	struct table t = { 0 };
	char b1[64], b2[64], b3[64], b4[64], b5[64];
	size_t i;
	int ret;

	table_header(&t, hdr);
	json_array_foreach(conns, i, c) {
		const json_t *src = json_object_get(c, "source"), *dst = json_object_get(c, "destination");
		const json_t *age = json_object_get(c, "age_s");

		table_cell(&t, "%s", js(c, "direction"));
		/* "direct+": the kernel carries it app to app (sockmap) */
		table_cell(&t, "%s%s", js(c, "path"), json_is_true(json_object_get(c, "app_to_app")) ? "+" : "");
		fmt_end(src, json_object_get(c, "src"), b1, sizeof(b1));
		table_cell(&t, "%s", b1);
		fmt_end(dst, json_object_get(c, "dst"), b1, sizeof(b1));
		table_cell(&t, "%s", b1);
		fmt_hostport(json_object_get(c, "dst"), b1, sizeof(b1));
		table_cell(&t, "%s", b1);
		table_cell(&t, "%s", js(src, "identity"));
		table_cell(&t, "%s", js(dst, "identity"));
		fmt_bytes(json_object_get(c, "bytes_sent"), b1, sizeof(b1));
		table_cell(&t, "%s", b1);
		fmt_bytes(json_object_get(c, "bytes_received"), b1, sizeof(b1));
		table_cell(&t, "%s", b1);
		fmt_duration(json_is_number(age) ? json_number_value(age) : -1, b1, sizeof(b1));
		table_cell(&t, "%s", b1);
		table_cell(&t, "%s", js(c, "state"));
	}
	ret = table_print(&t, 0);
	if (!ret && json_is_object(st))
		printf("\n%s open, %s since start (%s failed); HBONE connections: %s out, %s in\n",
		       jf(st, "open", b1, sizeof(b1)), jf(st, "total", b2, sizeof(b2)),
		       jf(st, "failed", b3, sizeof(b3)), jf(st, "hbone_clients", b4, sizeof(b4)),
		       jf(st, "hbone_servers", b5, sizeof(b5)));
	return ret;
}

static int print_certs(const json_t *root)
{
	static const char *const hdr[] = { "IDENTITY", "MODE", "SERIAL", "NOT-AFTER", "ROTATES",
					   "ERROR", NULL };
	const json_t *certs = json_object_get(root, "certs"), *c;
	struct table t = { 0 };
	size_t i;

	if (!json_array_size(certs))
		printf("mesh %s; no certificates in use yet (they are made when a pod is enrolled)\n",
		       js(root, "mesh"));
	table_header(&t, hdr);
	json_array_foreach(certs, i, c) {
		const char *serial = js(c, "serial");

		table_cell(&t, "%s", js(c, "identity"));
		table_cell(&t, "%s", js(c, "mode"));
		table_cell(&t, "%.16s%s", serial, strlen(serial) > 16 ? "..." : "");
		table_cell(&t, "%s", js(c, "not_after"));
		table_cell(&t, "%s", js(c, "next_renewal"));
		table_cell(&t, "%s", js(c, "error"));
	}
	return table_print(&t, 0);
}

/* A JSON array of strings as "a,b,c" (or "-"). */
static void join_strs(const json_t *arr, char *out, size_t len)
{
	const json_t *v;
	size_t k, o = 0;

	out[0] = '\0';
	json_array_foreach(arr, k, v)
		o += (size_t)snprintf(out + o, o < len ? len - o : 0, "%s%s", k ? "," : "", json_string_value(v));
	if (!out[0])
		snprintf(out, len, "-");
}

static int print_istio_policies(const json_t *root)
{
	static const char *const ah[] = { "AUTHORIZATIONPOLICY", "ACTION", "RULES", "L7-RULES", "LOCAL-PODS", "ALLOWED",
					  "DENIED", NULL };
	static const char *const ph[] = { "PEERAUTHENTICATION", "MODE", "LOCAL-PODS", "PLAINTEXT-REFUSED", NULL };
	const json_t *az = json_object_get(root, "authorization"), *pa = json_object_get(root, "peer_authentication");
	const json_t *p;
	struct table t = { 0 }, u = { 0 };
	char b[64], b2[64], pods[256];
	size_t i;
	int ret = 0;

	if (json_array_size(az)) {
		printf("\n");
		table_header(&t, ah);
		json_array_foreach(az, i, p) {
			join_strs(json_object_get(p, "local_pods"), pods, sizeof(pods));
			table_cell(&t, "%s/%s", js(p, "namespace"), js(p, "name"));
			table_cell(&t, "%s", js(p, "action"));
			table_cell(&t, "%s", jf(p, "rules", b, sizeof(b)));
			table_cell(&t, "%s", jf(p, "l7_rules", b2, sizeof(b2)));
			table_cell(&t, "%s", pods);
			table_cell(&t, "%s", jf(p, "allowed", b, sizeof(b)));
			table_cell(&t, "%s", jf(p, "denied", b2, sizeof(b2)));
		}
		ret = table_print(&t, 0);
	}
	if (!ret && json_array_size(pa)) {
		printf("\n");
		table_header(&u, ph);
		json_array_foreach(pa, i, p) {
			join_strs(json_object_get(p, "local_pods"), pods, sizeof(pods));
			table_cell(&u, "%s/%s", js(p, "namespace"), js(p, "name"));
			table_cell(&u, "%s", js(p, "mode"));
			table_cell(&u, "%s", pods);
			table_cell(&u, "%s", jf(p, "plaintext_refused", b, sizeof(b)));
		}
		ret = table_print(&u, 0);
	}
	return ret;
}

static int print_policies(const json_t *root)
{
	static const char *const hdr[] = { "POLICY", "TYPES", "RULE", "PEERS", "PORTS", "ALLOWED", NULL };
	static const char *const ehdr[] = { "POD", "IPS", "INGRESS", "EGRESS", "ENROLLED", NULL };
	const json_t *pols = json_object_get(root, "policies"), *eps = json_object_get(root, "endpoints");
	const json_t *pi = json_object_get(root, "policy"), *p, *r, *v;
	struct table t = { 0 }, e = { 0 };
	size_t i, j, k;
	char b[64], b2[64], b3[32], b4[32], b5[32];
	int ret;

	table_header(&t, hdr);
	json_array_foreach(pols, i, p) {
		const json_t *den = json_object_get(p, "denied_as_isolating");
		char types[32] = "";

		json_array_foreach(json_object_get(p, "policyTypes"), k, v)
			snprintf(types + strlen(types), sizeof(types) - strlen(types), "%s%s", k ? "," : "",
				 json_string_value(v));
		json_array_foreach(json_object_get(p, "rules"), j, r) {
			table_cell(&t, "%s/%s", js(p, "namespace"), js(p, "name"));
			table_cell(&t, "%s", types);
			table_cell(&t, "%s", js(r, "rule"));
			table_cell(&t, "%s", jf(r, "peers", b, sizeof(b)));
			table_cell(&t, "%s", jf(r, "ports", b2, sizeof(b2)));
			table_cell(&t, "%s", jf(r, "allowed", b, sizeof(b)));
		}
		table_cell(&t, "%s/%s", js(p, "namespace"), js(p, "name"));
		table_cell(&t, "%s", types);
		table_cell(&t, "(default deny)");
		table_cell(&t, "-");
		table_cell(&t, "-");
		table_cell(&t, "denied %s in, %s out", jf(den, "ingress", b, sizeof(b)), jf(den, "egress", b2, sizeof(b2)));
	}
	ret = table_print(&t, 0);
	if (ret)
		return ret;
	printf("\n");
	table_header(&e, ehdr);
	json_array_foreach(eps, i, p) {
		char ips[96] = "";

		json_array_foreach(json_object_get(p, "ips"), k, v)
			snprintf(ips + strlen(ips), sizeof(ips) - strlen(ips), "%s%s", k ? "," : "", json_string_value(v));
		table_cell(&e, "%s/%s", js(p, "namespace"), js(p, "name"));
		table_cell(&e, "%s", ips);
		table_cell(&e, "%s", json_is_true(json_object_get(p, "isolated_ingress")) ? js(p, "ingress_isolated_by") : "open");
		table_cell(&e, "%s", json_is_true(json_object_get(p, "isolated_egress")) ? js(p, "egress_isolated_by") : "open");
		table_cell(&e, "%s", json_is_true(json_object_get(p, "enrolled")) ? "yes" : "no");
	}
	ret = table_print(&e, 0);
	if (!ret)
		ret = print_istio_policies(root);
	if (!ret)
		printf("\nscope %s; %s policies, %s select pods here; kernel: %s identities, %s endpoints, %s rule entries\n",
		       js(pi, "scope"), jf(pi, "policies", b, sizeof(b)), jf(pi, "selecting_local_pods", b2, sizeof(b2)),
		       jf(pi, "map_identities", b3, sizeof(b3)), jf(pi, "map_endpoints", b4, sizeof(b4)),
		       jf(pi, "map_rules", b5, sizeof(b5)));
	return ret;
}

static int print_policy_check(const json_t *root)
{
	const json_t *in = json_object_get(root, "ingress"), *eg = json_object_get(root, "egress");
	char b[32];

	printf("%s: %s %s (%s) -> %s (%s) port %s\n", js(root, "verdict"), js(root, "protocol"), js(root, "from"),
	       js(root, "src_ip"), js(root, "to"), js(root, "dst_ip"), jf(root, "port", b, sizeof(b)));
	printf("  egress:  %-5s %s", json_is_true(json_object_get(eg, "allow")) ? "allow" : "deny", js(eg, "reason"));
	printf("  [this node: %s%s%s]\n", js(eg, "this_node"), json_is_string(json_object_get(eg, "this_node_rule")) ? ", " : "",
	       json_is_string(json_object_get(eg, "this_node_rule")) ? js(eg, "this_node_rule") : "");
	printf("  ingress: %-5s %s", json_is_true(json_object_get(in, "allow")) ? "allow" : "deny", js(in, "reason"));
	printf("  [this node: %s%s%s]\n", js(in, "this_node"), json_is_string(json_object_get(in, "this_node_rule")) ? ", " : "",
	       json_is_string(json_object_get(in, "this_node_rule")) ? js(in, "this_node_rule") : "");
	return 0;
}

/* "x" percent-encoded into a query value. */
static void url_encode(char *out, size_t len, const char *in)
{
	size_t o = 0;

	for (; *in && o + 4 < len; in++) {
		unsigned char c = (unsigned char)*in;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '/' || c == ':')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", c);
	}
	out[o] = '\0';
}

static int print_routes(const json_t *root)
{
	const json_t *routes = json_object_get(root, "routes"), *r, *p;
	size_t i, j;
	char b[32];

	printf("%-10s %-40s %-40s %-9s %-9s %s\n", "KIND", "ROUTE", "PARENT", "ACCEPTED", "RESOLVED",
	       "REASON");
	json_array_foreach(routes, i, r) {
		char name[300];

		snprintf(name, sizeof(name), "%s/%s", js(r, "namespace"), js(r, "name"));
		json_array_foreach(json_object_get(r, "parents"), j, p) {
			char parent[400];
			const char *sect = json_string_value(json_object_get(p, "section"));
			long port = (long)json_integer_value(json_object_get(p, "port"));
			bool acc = json_is_true(json_object_get(p, "accepted"));
			bool res = json_is_true(json_object_get(p, "resolved_refs"));
			const char *msg = js(p, "message");

			snprintf(parent, sizeof(parent), "%s %s/%s%s%s%s%s", js(p, "kind"), js(p, "namespace"),
				 js(p, "name"), sect ? "#" : "", sect ? sect : "", port ? ":" : "",
				 port ? jf(p, "port", b, sizeof(b)) : "");
			printf("%-10s %-40s %-40s %-9s %-9s %s%s%s\n", j ? "" : js(r, "kind"), j ? "" : name,
			       parent, acc ? "True" : "False", res ? "True" : "False",
			       !acc ? js(p, "accepted_reason") : js(p, "refs_reason"), msg[0] ? ": " : "", msg);
		}
	}
	if (!json_array_size(routes))
		printf("(no routes)\n");
	return 0;
}

/* "True (Reason)" / "False (Reason)" of a condition given as key and key_reason. */
static const char *cond(const json_t *o, const char *key, const char *reason, char *buf, size_t len)
{
	snprintf(buf, len, "%s (%s)", json_is_true(json_object_get(o, key)) ? "True" : "False", js(o, reason));
	return buf;
}

/* A listener's protocol as shown: a TLS listener's with its mode, which
 * says what it does (TLS/pass, TLS/term). */
static const char *listener_proto(const json_t *l, char *buf, size_t len)
{
	const char *mode = json_string_value(json_object_get(l, "tls_mode"));

	if (!mode)
		return js(l, "protocol");
	snprintf(buf, len, "%s/%.20s", js(l, "protocol"),
		 !strcmp(mode, "Terminate") ? "term" : !strcmp(mode, "Passthrough") ? "pass" : mode);
	return buf;
}

static int print_gateways(const json_t *root)
{
	const json_t *gws = json_object_get(root, "gateways"), *g, *l, *a;
	size_t i, j;
	char b[32], c1[96], c2[96];

	json_array_foreach(gws, i, g) {
		const char *msg = js(g, "message");

		printf("Gateway %s/%s (class %s), addresses:", js(g, "namespace"), js(g, "name"), js(g, "class"));
		json_array_foreach(json_object_get(g, "addresses"), j, a)
			printf(" %s", json_string_value(a));
		if (!json_array_size(json_object_get(g, "addresses")))
			printf(" every address of the node");
		printf("\n  Accepted %s, Programmed %s%s%s\n", cond(g, "accepted", "accepted_reason", c1, sizeof(c1)),
		       cond(g, "programmed", "programmed_reason", c2, sizeof(c2)), msg[0] && strcmp(msg, "-") ? ": " : "",
		       msg[0] && strcmp(msg, "-") ? msg : "");
		printf("  %-20s %-6s %-9s %-30s %-7s %s\n", "LISTENER", "PORT", "PROTOCOL", "HOSTNAME", "ROUTES",
		       "STATE");
		json_array_foreach(json_object_get(g, "listeners"), j, l) {
			const char *problem = js(l, "problem");
			char proto[48];

			printf("  %-20s %-6s %-9s %-30s %-7s %s\n", js(l, "name"), jf(l, "port", b, sizeof(b)),
			       listener_proto(l, proto, sizeof(proto)),
			       json_is_string(json_object_get(l, "hostname")) ? js(l, "hostname") : "*",
			       jf(l, "attached_routes", c1, sizeof(c1)),
			       problem[0] && strcmp(problem, "-") ? problem : "listening");
		}
	}
	if (!json_array_size(gws))
		printf("(no Gateways of class sluice)\n");
	return 0;
}

static int print_route_check(const json_t *root)
{
	const json_t *e;
	size_t i;
	char b[32];

	printf("%s/%s:%s from namespace %s: ", js(root, "service"), js(root, "name"),
	       jf(root, "port", b, sizeof(b)), js(root, "from"));
	if (strcmp(js(root, "result"), "routed")) {
		printf("%s\n", js(root, "result"));
		return 0;
	}
	if (!strcmp(js(root, "action"), "forward"))
		printf("forward to %s/%s:%s path %s\n", js(root, "backend_namespace"), js(root, "backend"),
		       jf(root, "backend_port", b, sizeof(b)), js(root, "path"));
	else if (!strcmp(js(root, "action"), "redirect"))
		printf("redirect %s to %s\n", jf(root, "status", b, sizeof(b)), js(root, "location"));
	else
		printf("answer %s\n", jf(root, "status", b, sizeof(b)));
	printf("  rule: %s\n", js(root, "rule")[0] ? js(root, "rule") : "(none matched)");
	json_array_foreach(json_object_get(root, "request_edits"), i, e)
		printf("  request header %s %s%s%s\n", js(e, "op"), js(e, "name"),
		       json_is_string(json_object_get(e, "value")) ? ": " : "",
		       json_is_string(json_object_get(e, "value")) ? js(e, "value") : "");
	json_array_foreach(json_object_get(root, "response_edits"), i, e)
		printf("  response header %s %s%s%s\n", js(e, "op"), js(e, "name"),
		       json_is_string(json_object_get(e, "value")) ? ": " : "",
		       json_is_string(json_object_get(e, "value")) ? js(e, "value") : "");
	return 0;
}

/* route-check NS/SVC[:PORT] METHOD PATH [-H k:v]... [--from NS] [--host H]: the path into *path. */
static int route_check_path(int argc, char **argv, char **path)
{
	char svc[300], port[8] = "80", e[3][2048], hq[1200];
	char *colon;
	FILE *f;
	size_t len = 0;
	int nh = 0;

	if (argc < 3 || !strchr(argv[0], '/'))
		return -EINVAL;
	snprintf(svc, sizeof(svc), "%s", argv[0]);
	colon = strchr(svc, ':');
	if (colon) {
		*colon = 0;
		snprintf(port, sizeof(port), "%s", colon + 1);
		if (!port[0] || strspn(port, "0123456789") != strlen(port))
			return -EINVAL;
	}
	url_encode(e[0], sizeof(e[0]), svc);
	url_encode(e[1], sizeof(e[1]), argv[1]);
	url_encode(e[2], sizeof(e[2]), argv[2]);
	f = open_memstream(path, &len);
	if (!f)
		return -ENOMEM;
	fprintf(f, "/route-check?service=%s&port=%s&method=%s&path=%s", e[0], port, e[1], e[2]);
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "-H") && i + 1 < argc && strchr(argv[i + 1], ':') && nh < 16) {
			url_encode(hq, sizeof(hq), argv[++i]);
			fprintf(f, "&h%d=%s", nh++, hq);
		} else if ((!strcmp(argv[i], "--from") || !strcmp(argv[i], "--host")) && i + 1 < argc) {
			url_encode(hq, sizeof(hq), argv[i + 1]);
			fprintf(f, "&%s=%s", argv[i] + 2, hq);
			i++;
		} else {
			fclose(f);
			free(*path);
			*path = NULL;
			return -EINVAL;
		}
	}
	return fclose(f) ? -ENOMEM : 0;
}

/* policy check --from X --to Y:PORT [--udp]: the request path into *path. */
static int policy_check_path(int argc, char **argv, char **path)
{
	const char *from = NULL, *to = NULL, *proto = "TCP";
	char host[300], port[8], ef[900], et[900];
	const char *colon;

	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--from") && i + 1 < argc)
			from = argv[++i];
		else if (!strcmp(argv[i], "--to") && i + 1 < argc)
			to = argv[++i];
		else if (!strcmp(argv[i], "--udp"))
			proto = "UDP";
		else if (!strcmp(argv[i], "--protocol") && i + 1 < argc)
			proto = argv[++i];
		else
			return -EINVAL;
	}
	if (!from || !to)
		return -EINVAL;
	if (to[0] == '[') {
		const char *rb = strchr(to, ']');

		if (!rb || rb[1] != ':')
			return -EINVAL;
		snprintf(host, sizeof(host), "%.*s", (int)(rb - to - 1), to + 1);
		colon = rb + 1;
	} else {
		colon = strrchr(to, ':');
		if (!colon || strchr(to, ':') != colon)
			return -EINVAL;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - to), to);
	}
	snprintf(port, sizeof(port), "%s", colon + 1);
	if (!port[0] || strspn(port, "0123456789") != strlen(port))
		return -EINVAL;
	url_encode(ef, sizeof(ef), from);
	url_encode(et, sizeof(et), host);
	return asprintf(path, "/policy-check?from=%s&to=%s&port=%s&protocol=%s", ef, et, port, proto) < 0 ? -ENOMEM : 0;
}

struct ctl_cmd {
	const char *name;
	const char *path;
	int (*print)(const json_t *root);
};

/* ready: exit 0 once the agent has put a configuration into the maps (its
 * /status sync.generation is 1 or more), else 1 with why on stderr. Until
 * then the pinned maps hold what a previous agent left, or nothing: the
 * DaemonSet's readiness probe. Not a table: --json does not change it. */
static int print_ready(const json_t *root)
{
	const json_t *sync = json_object_get(root, "sync"), *cfg = json_object_get(root, "config");
	const json_t *kube = json_object_get(root, "kubernetes");
	const json_t *gen = json_object_get(sync, "generation");
	const json_t *pid_ns = json_object_get(root, "pid_ns");
	struct stat ns;

	/* A surge pod's probe reaches the old agent until the takeover: ready
	 * only when the agent that answers is this container's. */
	if (json_is_integer(pid_ns) && !stat("/proc/self/ns/pid", &ns) &&
	    (json_int_t)ns.st_ino != json_integer_value(pid_ns)) {
		ctl_err("not ready: the agent answering (pid %lld of another pid namespace) is not this "
			"one: the takeover is not done", (long long)json_integer_value(json_object_get(root, "pid")));
		return -EAGAIN;
	}
	if (json_is_integer(gen) && json_integer_value(gen) >= 1) {
		printf("ready: configuration generation %lld is in the maps\n",
		       (long long)json_integer_value(gen));
		return 0;
	}
	ctl_err("not ready: no configuration in the maps yet (source %s, config %s%s)", js(cfg, "source"),
		js(cfg, "state"),
		json_is_object(kube) && !json_is_true(json_object_get(kube, "ready")) ?
			", the Kubernetes API not fully listed" : "");
	return -EAGAIN;
}

static const struct ctl_cmd ctl_cmds[] = {
	{ "status", "/status", print_status },
	{ "ready", "/status", print_ready },
	{ "services", "/services", print_services },
	{ "workloads", "/workloads", print_workloads },
	{ "maps", "/maps", print_maps },
	{ "sockmap", "/sockmap", print_sockmap },
	{ "connections", "/connections", print_connections },
	{ "certs", "/certs", print_certs },
	{ "policies", "/policies", print_policies },
	{ "policy", "", print_policy_check },
	{ "routes", "/routes", print_routes },
	{ "gateways", "/gateways", print_gateways },
	{ "route-check", "", print_route_check },
	{ "get", NULL, NULL },
};

/* A non-2xx answer: show the agent's "error" (and the known paths for 404). */
static void ctl_report_status(const char *path, const struct ctl_resp *r)
{
	json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
	const char *msg = json_string_value(json_object_get(root, "error"));
	const json_t *paths = json_object_get(root, "paths"), *p;
	char *known = NULL;
	size_t klen = 0, i;
	FILE *f;

	if (json_is_array(paths) && (f = open_memstream(&known, &klen))) {
		json_array_foreach(paths, i, p)
			fprintf(f, "%s%s", i ? ", " : "",
				json_is_string(p) ? json_string_value(p) : "?");
		fclose(f);
	}
	if (msg)
		ctl_err("GET %s: %d %s: %s%s%s%s", path, r->code, r->reason, msg,
			known ? " (known paths: " : "", known ? known : "", known ? ")" : "");
	else
		ctl_err("GET %s: %d %s%s%.*s", path, r->code, r->reason, r->body_len ? ": " : "",
			(int)strcspn(r->body, "\r\n"), r->body);
	free(known);
	json_decref(root);
}

static int ctl_run(const struct ctl_opts *o, const struct ctl_cmd *cmd, const char *path)
{
	struct ctl_resp r;
	json_error_t jerr;
	json_t *root = NULL;
	int ret;

	ret = ctl_get(o, path, &r);
	if (ret)
		return ret;
	if (r.code < 200 || r.code > 299) {
		ctl_report_status(path, &r);
		ret = -EPROTO;
		goto out;
	}
	if (!cmd->print && !o->json) {
		/* get: the body as the agent sent it. */
		fwrite(r.body, 1, r.body_len, stdout);
		if (r.body_len && r.body[r.body_len - 1] != '\n')
			putchar('\n');
		goto out;
	}
	root = json_loadb(r.body, r.body_len, 0, &jerr);
	if (!root) {
		ctl_err("GET %s: the agent sent invalid JSON: line %d: %s", path, jerr.line,
			jerr.text);
		ret = -EPROTO;
		goto out;
	}
	if (o->json && cmd->print != print_ready) {
		ret = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY) ? -EIO : 0;
		putchar('\n');
	} else if (!json_is_object(root)) {
		ctl_err("GET %s: expected a JSON object from the agent", path);
		ret = -EPROTO;
	} else {
		ret = cmd->print(root);
	}
	if (ret == -ENOMEM)
		ctl_err("out of memory");
out:
	json_decref(root);
	free(r.body);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl_opts o = { .timeout_s = CTL_TIMEOUT_S };
	const struct ctl_cmd *cmd = NULL;
	const char *path;
	char *end, *owned = NULL;
	int opt, ret;

	o.sock = getenv("SLUICE_SOCKET");
	if (!o.sock || !o.sock[0])
		o.sock = SL_STATUS_SOCK;
	while ((opt = getopt_long(argc, argv, "+s:jt:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			o.sock = optarg;
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			errno = 0;
			o.timeout_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(o.timeout_s) ||
			    o.timeout_s <= 0 || o.timeout_s > 86400) {
				ctl_err("--timeout: expected seconds > 0, got '%s'", optarg);
				return 1;
			}
			break;
		case 'h':
			ctl_usage(stdout);
			return 0;
		default:
			ctl_usage(stderr);
			return 1;
		}
	}
	if (optind >= argc) {
		ctl_err("no command given");
		ctl_usage(stderr);
		return 1;
	}
	for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++)
		if (!strcmp(argv[optind], ctl_cmds[i].name))
			cmd = &ctl_cmds[i];
	if (!cmd) {
		ctl_err("unknown command '%s'", argv[optind]);
		ctl_usage(stderr);
		return 1;
	}
	if (cmd->path && !cmd->path[0] && cmd->print == print_route_check) {
		if (route_check_path(argc - optind - 1, argv + optind + 1, &owned)) {
			ctl_err("usage: sluicectl route-check NS/SERVICE[:PORT] METHOD PATH [-H NAME:VALUE]... [--from NS] [--host H]");
			return 1;
		}
		ret = ctl_run(&o, cmd, owned);
		free(owned);
		return ret ? 1 : 0;
	}
	if (cmd->path && !cmd->path[0]) {
		/* policy check ... */
		if (argc - optind < 2 || strcmp(argv[optind + 1], "check") ||
		    policy_check_path(argc - optind - 2, argv + optind + 2, &owned)) {
			ctl_err("usage: sluicectl policy check --from NS/POD|IP --to NS/POD:PORT|IP:PORT|[IPv6]:PORT [--udp]");
			return 1;
		}
		ret = ctl_run(&o, cmd, owned);
		free(owned);
		return ret ? 1 : 0;
	}
	if (argc - optind != (cmd->path ? 1 : 2)) {
		if (cmd->path)
			ctl_err("%s takes no arguments", cmd->name);
		else
			ctl_err("usage: sluicectl %s PATH", cmd->name);
		return 1;
	}
	path = cmd->path;
	if (!path) {
		path = argv[optind + 1];
		/* The path goes on the request line verbatim. */
		if (!path[0] || strpbrk(path, " \t\r\n")) {
			ctl_err("get: invalid path '%s'", path);
			return 1;
		}
		if (path[0] != '/') {
			if (asprintf(&owned, "/%s", path) == -1) {
				ctl_err("out of memory");
				return 1;
			}
			path = owned;
		}
	}
	ret = ctl_run(&o, cmd, path);
	free(owned);
	if (fflush(stdout) == EOF) {
		ctl_err("writing output: %s", strerror(errno));
		return 1;
	}
	return ret ? 1 : 0;
}
