// SPDX-License-Identifier: Apache-2.0
/* sl-rr - TCP request/response transactions for the same-node benchmark
 * (scripts/bench sockmap; libc only).
 *
 *   sl-rr serve --port P
 *   sl-rr client HOST PORT --size N --duration-ms MS [--warmup-ms MS] [--timeout-ms MS]
 *
 * What netperf's TCP_RR measures, without netperf: one connection, one message
 * in flight, so every transaction pays the whole path twice (client -> server
 * -> client) and nothing hides latency. That is the cost the sockops/sk_msg
 * short-circuit removes, which bulk throughput tools do not show.
 *
 * Protocol. The client opens with an 8-byte header: the message size N (u32,
 * network order, 1 .. 16 MiB) and a u32 reserved (0). Then, back to back: the
 * client writes N bytes, the server reads N bytes fully and writes the same N
 * bytes back, the client reads N bytes fully: one transaction. The client
 * stamps each message with a sequence number (its first and last 8 bytes) and
 * checks them in the echo, so a lost, extra or reordered message, or bytes out
 * of frame, are an error, not a fast transaction. TCP_NODELAY on both ends.
 *
 * serve: a dual-stack listener (AF_INET6 with IPV6_V6ONLY=0; AF_INET when the
 * host has no IPv6), one thread per connection with blocking I/O (the fewest
 * system calls per transaction). Prints "listening port=P" once, then runs
 * until killed.
 *
 * client: runs transactions for --warmup-ms (not recorded: caches, the
 * connection's cwnd and the agent's state warm up), then for --duration-ms,
 * recording each one's latency (CLOCK_MONOTONIC, send to last byte back; at
 * most 20 M samples, later ones counted but not recorded) and prints
 *
 *   tps=<transactions/s> p50_us=<median> p99_us=<99th percentile> n=<transactions>
 *
 * tps is n over the time from the start of the measured phase to the end of
 * its last transaction. Percentiles are nearest-rank over the sorted samples.
 * Bounded in time: connecting, and every send and receive, give up after
 * --timeout-ms (default 1000; SO_SNDTIMEO/SO_RCVTIMEO on a blocking socket:
 * a poll() per transaction would add a system call to every round trip and
 * dilute the differences measured), and no transaction starts after the
 * deadline, so the client ends within warmup + duration + timeout (+ the
 * connect timeout). Exit 0 on success; 1 with a message on stderr when the
 * connection fails, is closed or reset, a reply is short or wrong, or the peer
 * stalls for the timeout; 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tools/tool.h"

#define RR_HDR_LEN	8
#define RR_MAX_SIZE	(16u * 1024 * 1024)
#define RR_MAX_SAMPLES	(20u * 1000 * 1000)

/* "sl-rr: <message>" on stderr. */
static void say(const char *fmt, va_list ap)
{
	fputs("sl-rr: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/* A runtime failure: exit 1. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(fmt, ap);
	va_end(ap);
	exit(1);
}

static void usage(void)
{
	fputs("usage: sl-rr serve --port P\n"
	      "       sl-rr client HOST PORT --size N --duration-ms MS [--warmup-ms MS]\n"
	      "                    [--timeout-ms MS]\n",
	      stderr);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Read exactly n bytes (blocking socket). 0; ECONNABORTED on EOF before
 * them (with *got set); EAGAIN when SO_RCVTIMEO expired; or an errno. */
static int read_full(int fd, char *buf, size_t n, size_t *got)
{
	size_t off = 0;

	while (off < n) {
		ssize_t r = recv(fd, buf + off, n - off, MSG_WAITALL);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			*got = off;
			return errno == EWOULDBLOCK ? EAGAIN : errno;
		}
		if (r == 0) {
			*got = off;
			return ECONNABORTED;
		}
		off += (size_t)r;
	}
	*got = off;
	return 0;
}

/* Write exactly n bytes (blocking socket): 0, EAGAIN on SO_SNDTIMEO, errno. */
static int write_full(int fd, const char *buf, size_t n)
{
	while (n) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EWOULDBLOCK ? EAGAIN : errno;
		}
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---------------------------------------------------------------- serve */

static void *serve_conn(void *arg)
{
	int fd = *(int *)arg, err;
	unsigned char hdr[RR_HDR_LEN];
	uint32_t size;
	size_t got;
	char *buf;

	free(arg);
	set_nodelay(fd);
	err = read_full(fd, (char *)hdr, sizeof(hdr), &got);
	if (err) {
		if (got)
			fprintf(stderr, "sl-rr: header: %s\n", strerror(err));
		goto out;
	}
	memcpy(&size, hdr, sizeof(size));
	size = ntohl(size);
	if (size < 1 || size > RR_MAX_SIZE) {
		fprintf(stderr, "sl-rr: bad message size %u\n", size);
		goto out;
	}
	buf = malloc(size);
	if (!buf) {
		fprintf(stderr, "sl-rr: out of memory\n");
		goto out;
	}
	for (;;) {
		err = read_full(fd, buf, size, &got);
		if (err) {
			/* EOF between messages is the client's normal end */
			if (err != ECONNABORTED || got)
				fprintf(stderr, "sl-rr: read: %s (%zu of %u bytes)\n",
					strerror(err), got, size);
			break;
		}
		err = write_full(fd, buf, size);
		if (err) {
			fprintf(stderr, "sl-rr: write: %s\n", strerror(err));
			break;
		}
	}
	free(buf);
out:
	close(fd);
	return NULL;
}

static int listen_on(long port)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
				   .sin6_addr = IN6ADDR_ANY_INIT };
	struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_ANY) };
	int fd, one = 1, zero = 0;

	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) == 0 &&
		    bind(fd, (struct sockaddr *)&s6, sizeof(s6)) == 0)
			goto listen;
		close(fd);
	}
	/* no IPv6 in this netns (or disabled): IPv4 only */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&s4, sizeof(s4)) < 0)
		fail("bind port %ld: %s", port, strerror(errno));
listen:
	if (listen(fd, 128) < 0)
		fail("listen port %ld: %s", port, strerror(errno));
	return fd;
}

static int cmd_serve(int argc, char **argv)
{
	long port = -1;
	pthread_attr_t attr;
	int lfd;

	for (int a = 0; a < argc; a++) {
		if (!strcmp(argv[a], "--port") && a + 1 < argc)
			port = num(argv[++a], "port", 1, 65535);
		else
			die("serve: unknown argument %s", argv[a]);
	}
	if (port < 0) {
		usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	lfd = listen_on(port);
	printf("listening port=%ld\n", port);
	fflush(stdout);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), err;
		pthread_t t;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				usleep(10000);
				continue;
			}
			fail("accept: %s", strerror(errno));
		}
		int *arg = malloc(sizeof(*arg));

		if (!arg) {
			close(fd);
			continue;
		}
		*arg = fd;
		err = pthread_create(&t, &attr, serve_conn, arg);
		if (err) {
			fprintf(stderr, "sl-rr: pthread_create: %s\n", strerror(err));
			free(arg);
			close(fd);
		}
	}
}

/* ---------------------------------------------------------------- client */

/* Connect to host:port within timeout_ms; returns a blocking socket. */
static int tcp_connect(const char *host, const char *port, int timeout_ms)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST }, *res;
	char h[256];
	size_t n = strlen(host);
	int fd, rc, err = 0;
	socklen_t el = sizeof(err);

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n >= sizeof(h))
		die("host too long");
	memcpy(h, host, n);
	h[n] = 0;
	num(port, "port", 1, 65535);
	rc = getaddrinfo(h, port, &hints, &res);
	if (rc == EAI_NONAME) {
		hints.ai_flags &= ~AI_NUMERICHOST;
		rc = getaddrinfo(h, port, &hints, &res);
	}
	if (rc)
		fail("%s: %s", h, gai_strerror(rc));

	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail("socket: %s", strerror(errno));
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		if (errno != EINPROGRESS)
			fail("connect %s:%s: %s", h, port, strerror(errno));
		do
			rc = poll(&p, 1, timeout_ms);	/* EINTR: only from a signal we ignore */
		while (rc < 0 && errno == EINTR);
		if (rc == 0)
			fail("connect %s:%s: timed out after %d ms", h, port, timeout_ms);
		if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
			err = errno;
		if (err)
			fail("connect %s:%s: %s", h, port, strerror(err));
	}
	freeaddrinfo(res);
	if (fcntl(fd, F_SETFL, 0) < 0)
		fail("fcntl: %s", strerror(errno));
	return fd;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least p of them at or below it. */
static double pct_us(const uint64_t *s, size_t n, double p)
{
	size_t k = (size_t)(p * (double)n + 0.999999);

	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return (double)s[k - 1] / 1000.0;
}

/* Stamp seq into the message's first and last (up to) 8 bytes. */
static void stamp(char *buf, size_t size, uint64_t seq)
{
	size_t k = size < 8 ? size : 8;

	memcpy(buf, &seq, k);
	memcpy(buf + size - k, &seq, k);
}

static int cmd_client(int argc, char **argv)
{
	const char *pos[2];
	long size = -1, duration = -1, warmup = 0, timeout_ms = 1000;
	int npos = 0, fd, err;
	uint64_t *samples, seq = 0, t_start, t_end, t_measure = 0, t_last, n = 0;
	size_t nrec = 0, got, k;
	bool measuring = false;
	unsigned char hdr[RR_HDR_LEN] = { 0 };
	uint32_t nsize;
	struct timeval tv;
	char *out, *in;

	for (int a = 0; a < argc; a++) {
		const char *o = argv[a];

		if (o[0] == '-' && o[1] == '-') {
			if (a + 1 >= argc)
				die("client: option %s needs a value", o);
			if (!strcmp(o, "--size"))
				size = num(argv[++a], "size", 1, RR_MAX_SIZE);
			else if (!strcmp(o, "--duration-ms"))
				duration = num(argv[++a], "duration", 1, 3600000);
			else if (!strcmp(o, "--warmup-ms"))
				warmup = num(argv[++a], "warmup", 0, 3600000);
			else if (!strcmp(o, "--timeout-ms"))
				timeout_ms = num(argv[++a], "timeout", 1, 600000);
			else
				die("client: unknown option %s", o);
		} else if (npos < 2) {
			pos[npos++] = o;
		} else {
			die("client: too many arguments");
		}
	}
	if (npos != 2 || size < 0 || duration < 0) {
		usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	out = malloc((size_t)size);
	in = malloc((size_t)size);
	/* Untouched pages cost nothing: a short run uses a few of these. */
	samples = malloc(RR_MAX_SAMPLES * sizeof(*samples));
	if (!out || !in || !samples)
		fail("out of memory");
	memset(out, 'r', (size_t)size);
	k = size < 8 ? (size_t)size : 8;	/* the stamped bytes at each end */

	fd = tcp_connect(pos[0], pos[1], (int)timeout_ms);
	set_nodelay(fd);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		fail("setsockopt: %s", strerror(errno));
	nsize = htonl((uint32_t)size);
	memcpy(hdr, &nsize, sizeof(nsize));
	err = write_full(fd, (const char *)hdr, sizeof(hdr));
	if (err)
		fail("send header: %s", err == EAGAIN ? "timed out" : strerror(err));

	t_start = now_ns();
	t_end = t_start + (uint64_t)(warmup + duration) * 1000000u;
	if (!warmup) {
		measuring = true;
		t_measure = t_start;
	}
	t_last = t_start;
	while (t_last < t_end) {
		uint64_t t0 = t_last;

		if (!measuring && t0 >= t_start + (uint64_t)warmup * 1000000u) {
			measuring = true;
			t_measure = t0;
		}
		stamp(out, (size_t)size, ++seq);
		err = write_full(fd, out, (size_t)size);
		if (err)
			fail("send: %s (transaction %llu)",
			     err == EAGAIN ? "timed out" : strerror(err), (unsigned long long)seq);
		err = read_full(fd, in, (size_t)size, &got);
		if (err == EAGAIN)
			fail("no reply within %ld ms (%zu of %ld bytes, transaction %llu)", timeout_ms,
			     got, size, (unsigned long long)seq);
		if (err == ECONNABORTED)
			fail("connection closed by the server (%zu of %ld bytes, transaction %llu)",
			     got, size, (unsigned long long)seq);
		if (err)
			fail("recv: %s (transaction %llu)", strerror(err), (unsigned long long)seq);
		t_last = now_ns();
		if (memcmp(in, out, k) || memcmp(in + size - k, out + size - k, k))
			fail("reply does not echo the request (transaction %llu)",
			     (unsigned long long)seq);
		if (measuring) {
			n++;
			if (nrec < RR_MAX_SAMPLES)
				samples[nrec++] = t_last - t0;
		}
	}
	close(fd);
	if (!n)
		fail("no transaction completed in the measured %ld ms", duration);
	qsort(samples, nrec, sizeof(*samples), cmp_u64);
	printf("tps=%.0f p50_us=%.1f p99_us=%.1f n=%llu\n",
	       (double)n * 1e9 / (double)(t_last - t_measure), pct_us(samples, nrec, 0.50),
	       pct_us(samples, nrec, 0.99), (unsigned long long)n);
	free(samples);
	free(in);
	free(out);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage();
		return 2;
	}
	if (!strcmp(argv[1], "serve"))
		return cmd_serve(argc - 2, argv + 2);
	if (!strcmp(argv[1], "client"))
		return cmd_client(argc - 2, argv + 2);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage();
		return 0;
	}
	usage();
	return 2;
}
