// SPDX-License-Identifier: Apache-2.0
/* sl-soak - many TCP connections against sl-echo's line mode, counted (libc only).
 *
 *   sl-soak hold HOST PORT --conns N --seconds S [--interval-ms MS]
 *                [--open-rate R] [--timeout-ms MS]
 *   sl-soak short HOST PORT --total N [--concurrency C] [--seconds LIMIT]
 *                [--timeout-ms MS]
 *
 * hold opens N connections (R per second, default 2000) and keeps them all
 * for S seconds after the last one opened; each sends a line every interval
 * (default 1000 ms, phases spread at random, each connection on its own
 * schedule: the client sleeps until the next line is due) and must get
 * sl-echo's answer, "<pod> <peer> <line>", within the timeout (default
 * 5000 ms). At the end every connection sends one more line and must
 * answer it: a connection the path dropped silently counts too. Prints one
 * line:
 *
 *   hold conns=N opened=N connect_err=N sent=N replies=N errors=N
 *        p50_ms=X p99_ms=X max_ms=X seconds=S first_err=<ERRNO|-> p50_us=X p99_us=X
 *        send_turns=N burst_max=N
 *
 * send_turns: loop turns that sent lines (sent / send_turns is the mean burst
 * the server side sees at once), burst_max the most lines one turn sent;
 * both leave out the final round (every connection at once).
 *
 * short makes N connections, C at a time (default 100): connect, one line,
 * its answer, close. Stops early after LIMIT seconds (default 600); those not
 * made count as errors. Prints:
 *
 *   short total=N ok=N err=N seconds=S rate=R p99_ms=X first_err=<ERRNO|->
 *
 * The _ms percentiles come from 1 ms buckets (0 means under a millisecond);
 * hold's _us ones from 10 us buckets below 100 ms, the ms buckets above.
 *
 * Exit 0 iff there was no error, 1 otherwise, 2 on bad usage. HOST is a
 * numeric IPv4 or IPv6 address. RLIMIT_NOFILE is raised to what N needs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_LEN	64
#define HIST_MS		60000	/* latency histogram: 1 ms buckets up to a minute */
#define HIST_FINE	10000	/* and 10 us buckets up to 100 ms */

enum cstate { C_FREE, C_CONNECTING, C_IDLE, C_WAITING, C_DEAD };

struct conn {
	int fd;
	enum cstate st;
	uint32_t seq;
	uint64_t sent_at, next_at;
	uint64_t sent_us;	/* sent_at in microseconds, for the fine histogram */
	char want[LINE_MAX_LEN];
	char rbuf[256];
	size_t rlen;
};

static struct sockaddr_storage dst;
static socklen_t dst_len;
static unsigned int timeout_ms = 5000;
static uint32_t hist[HIST_MS + 1];
static uint32_t hist_fine[HIST_FINE];
static uint64_t n_lat;
static int first_err;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void die(const char *msg)
{
	fprintf(stderr, "sl-soak: %s\n", msg);
	exit(2);
}

static void note_err(int err)
{
	if (!first_err)
		first_err = err ? err : EPROTO;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* One latency, from the microsecond clock of its send. */
static void lat_add(uint64_t sent_us)
{
	uint64_t us = now_us() - sent_us, ms = us / 1000;

	hist[ms > HIST_MS ? HIST_MS : ms]++;
	if (us / 10 < HIST_FINE)
		hist_fine[us / 10]++;
	n_lat++;
}

/* Percentile in microseconds: the fine buckets' upper edge below 100 ms, else
 * the millisecond bucket's. */
static unsigned long lat_pct_us(double p)
{
	uint64_t want = (uint64_t)((double)n_lat * p), seen = 0;

	if (!n_lat)
		return 0;
	for (unsigned int i = 0; i < HIST_FINE; i++) {
		seen += hist_fine[i];
		if (seen > want || seen == n_lat)
			return (i + 1) * 10UL;
	}
	seen = 0;
	for (unsigned int i = 0; i <= HIST_MS; i++) {
		seen += hist[i];
		if (seen > want || seen == n_lat)
			return i * 1000UL;
	}
	return HIST_MS * 1000UL;
}

static unsigned int lat_pct(double p)
{
	uint64_t want = (uint64_t)((double)n_lat * p), seen = 0;

	if (!n_lat)
		return 0;
	for (unsigned int i = 0; i <= HIST_MS; i++) {
		seen += hist[i];
		if (seen > want || (seen == n_lat))
			return i;
	}
	return HIST_MS;
}

static unsigned int lat_max(void)
{
	for (unsigned int i = HIST_MS + 1; i-- > 0;)
		if (hist[i])
			return i;
	return 0;
}

static const char *errno_name(int e)
{
	switch (e) {
	case 0: return "-";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNRESET: return "ECONNRESET";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EPROTO: return "EPROTO";
	case ECONNABORTED: return "ECONNABORTED";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case EPIPE: return "EPIPE";
	case EMFILE: return "EMFILE";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case EPERM: return "EPERM";
	default: return "OTHER";
	}
}

static void raise_nofile(unsigned long need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur >= need + 64)
		return;
	if (rl.rlim_max < need + 64)
		rl.rlim_max = need + 64;	/* root may raise the hard limit */
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		fprintf(stderr, "sl-soak: setrlimit(NOFILE, %lu): %s\n", (unsigned long)rl.rlim_cur, strerror(errno));
}

static int conn_open(int ep, struct conn *c, uint32_t idx)
{
	int one = 1, fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = idx };

	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&dst, dst_len) && errno != EINPROGRESS) {
		int err = -errno;

		close(fd);
		return err;
	}
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
		int err = -errno;

		close(fd);
		return err;
	}
	*c = (struct conn){ .fd = fd, .st = C_CONNECTING, .sent_at = now_ms(), .sent_us = now_us() };
	return 0;
}

static void conn_close(int ep, struct conn *c, enum cstate st)
{
	if (c->fd >= 0) {
		epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->st = st;
}

/* Send the connection's next line; false when the socket refused it. */
static bool conn_send(int ep, struct conn *c, uint32_t idx)
{
	char line[LINE_MAX_LEN];
	int n = snprintf(line, sizeof(line), "s%u-%u\n", idx, ++c->seq);
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = idx };

	if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		note_err(errno ? errno : EPIPE);
		return false;
	}
	snprintf(c->want, sizeof(c->want), " %.*s", n, line);
	c->sent_at = now_ms();
	c->sent_us = now_us();
	c->rlen = 0;
	c->st = C_WAITING;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	return true;
}

/* Read what came; 1 when the awaited answer is complete, 0 when not yet,
 * -errno when the connection failed. */
static int conn_read(struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - 1 - c->rlen, 0);
		char *nl;

		if (n == 0)
			return -ECONNABORTED;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		c->rlen += (size_t)n;
		c->rbuf[c->rlen] = 0;
		nl = memchr(c->rbuf, '\n', c->rlen);
		if (nl) {
			size_t wl = strlen(c->want);

			/* "<pod> <peer> <line>\n": the line ends the answer */
			if ((size_t)(nl + 1 - c->rbuf) < wl || memcmp(nl + 1 - wl, c->want, wl))
				return -EPROTO;
			return 1;
		}
		if (c->rlen >= sizeof(c->rbuf) - 1)
			return -EPROTO;
	}
}

static int sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len))
		return errno;
	return err;
}

/* A connecting socket's event: true when it connected, else the error noted. */
static bool connect_done(const struct epoll_event *ev, const struct conn *c)
{
	int err = sock_error(c->fd);

	if (!err && (ev->events & EPOLLOUT))
		return true;
	note_err(err ? err : ECONNABORTED);
	return false;
}

static unsigned long num_arg(const char *v, unsigned long min, unsigned long max, const char *what)
{
	char *end;
	unsigned long n = strtoul(v, &end, 10);

	if (*end || n < min || n > max) {
		fprintf(stderr, "sl-soak: %s: %lu to %lu\n", what, min, max);
		exit(2);
	}
	return n;
}

static void parse_dst(const char *host, const char *port)
{
	uint16_t p = (uint16_t)num_arg(port, 1, 65535, "PORT");
	struct sockaddr_in *s4 = (struct sockaddr_in *)&dst;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&dst;

	memset(&dst, 0, sizeof(dst));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(p);
		dst_len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(p);
		dst_len = sizeof(*s6);
	} else {
		die("HOST: a numeric IPv4 or IPv6 address");
	}
}

/* ---- hold ---- */

static int run_hold(unsigned long n, unsigned long seconds, unsigned long interval, unsigned long rate)
{
	struct conn *cs = calloc(n, sizeof(*cs));
	struct epoll_event evs[512];
	uint64_t t0 = now_ms(), all_open_at = 0, end_at = 0, sent = 0, replies = 0;
	unsigned long opened = 0, connect_err = 0, errors = 0, started = 0, finals = 0;
	unsigned long turns = 0, burst_max = 0;
	bool final = false;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (!cs || ep < 0)
		die("out of memory");
	raise_nofile(n);
	for (;;) {
		uint64_t now = now_ms();

		/* open at the rate asked */
		while (started < n && started < (now - t0) * rate / 1000 + 1) {
			int err = conn_open(ep, &cs[started], (uint32_t)started);

			if (err) {
				note_err(-err);
				connect_err++;
				cs[started].fd = -1;
				cs[started].st = C_DEAD;
			}
			started++;
		}
		if (started == n && !all_open_at && opened + connect_err == n) {
			all_open_at = now;
			end_at = now + seconds * 1000;
		}
		if (end_at && now >= end_at && !final) {
			final = true;	/* one last line on every connection */
			for (unsigned long i = 0; i < n; i++)
				if (cs[i].st == C_IDLE)
					cs[i].next_at = now;
		}
		/* due lines, and answers overdue; wake for the next due line */
		uint64_t sent0 = sent, wake = now + 10;

		for (unsigned long i = 0; i < n; i++) {
			struct conn *c = &cs[i];

			if (c->st == C_IDLE && now >= c->next_at) {
				if (final && c->seq && c->next_at == UINT64_MAX)
					continue;
				if (!conn_send(ep, c, (uint32_t)i)) {
					errors++;
					conn_close(ep, c, C_DEAD);
					continue;
				}
				sent++;
			} else if (c->st == C_IDLE && c->next_at < wake) {
				wake = c->next_at;
			} else if ((c->st == C_WAITING || c->st == C_CONNECTING) && now > c->sent_at + timeout_ms) {
				note_err(ETIMEDOUT);
				if (c->st == C_CONNECTING)
					connect_err++;
				else
					errors++;
				conn_close(ep, c, C_DEAD);
			}
		}
		if (final) {
			bool busy = false;

			for (unsigned long i = 0; i < n && !busy; i++)
				busy = cs[i].st == C_WAITING || (cs[i].st == C_IDLE && cs[i].next_at != UINT64_MAX);
			if (!busy)
				break;
		}
		if (sent > sent0 && !final) {	/* lines sent in one go: the client's bursts */
			turns++;
			if (sent - sent0 > burst_max)
				burst_max = sent - sent0;
		}
		/* Sleep only until the next line is due: with a fixed 10 ms sleep,
		 * lines due meanwhile waited for the next answer or timeout and went
		 * out together, and since each next line was timed from its send the
		 * connections fell into step (at 10 connections, all 10 at once). */
		uint64_t t = now_ms();
		int k = epoll_wait(ep, evs, 512, wake > t ? (int)(wake - t) : 0);

		for (int j = 0; j < k; j++) {
			uint32_t i = evs[j].data.u32;
			struct conn *c = &cs[i];
			int r;

			if (c->st == C_CONNECTING) {
				if (!connect_done(&evs[j], c)) {
					connect_err++;
					conn_close(ep, c, C_DEAD);
					continue;
				}
				opened++;
				c->st = C_IDLE;
				/* phases spread over the interval */
				c->next_at = now_ms() + (uint64_t)random() % interval;
				{
					struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };

					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
				continue;
			}
			if (c->st != C_WAITING) {	/* bytes or EOF nobody asked for */
				if (c->st == C_IDLE) {
					note_err(ECONNABORTED);
					errors++;
					conn_close(ep, c, C_DEAD);
				}
				continue;
			}
			r = conn_read(c);
			if (r == 0)
				continue;
			if (r < 0) {
				note_err(-r);
				errors++;
				conn_close(ep, c, C_DEAD);
				continue;
			}
			replies++;
			lat_add(c->sent_us);
			c->st = C_IDLE;
			if (final) {
				c->next_at = UINT64_MAX;	/* done */
				finals++;
			} else {
				/* On the connection's own schedule, not timed from
				 * its send (late sends drifted the phases into
				 * step). Slots missed while waiting are skipped, so
				 * a slow answer never makes a catch-up burst. */
				uint64_t at = now_ms();

				c->next_at += interval;
				if (c->next_at < at)
					c->next_at += (at - c->next_at + interval - 1) / interval * interval;
			}
		}
	}
	for (unsigned long i = 0; i < n; i++)
		if (cs[i].fd >= 0)
			close(cs[i].fd);
	printf("hold conns=%lu opened=%lu connect_err=%lu sent=%llu replies=%llu errors=%lu final_ok=%lu "
	       "p50_ms=%u p99_ms=%u max_ms=%u seconds=%.1f first_err=%s p50_us=%lu p99_us=%lu "
	       "send_turns=%lu burst_max=%lu\n",
	       n, opened, connect_err, (unsigned long long)sent, (unsigned long long)replies, errors, finals,
	       lat_pct(0.50), lat_pct(0.99), lat_max(), (double)(now_ms() - t0) / 1000, errno_name(first_err),
	       lat_pct_us(0.50), lat_pct_us(0.99), turns, burst_max);
	free(cs);
	close(ep);
	return connect_err || errors || finals != n ? 1 : 0;
}

/* ---- short ---- */

static int run_short(unsigned long total, unsigned long conc, unsigned long limit_s)
{
	struct conn *cs = calloc(conc, sizeof(*cs));
	struct epoll_event evs[512];
	uint64_t t0 = now_ms();
	unsigned long started = 0, ok = 0, err = 0, active = 0;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (!cs || ep < 0)
		die("out of memory");
	raise_nofile(conc);
	for (unsigned long i = 0; i < conc; i++)
		cs[i].fd = -1;
	for (;;) {
		uint64_t now = now_ms();
		bool late = now - t0 > limit_s * 1000;

		for (unsigned long i = 0; i < conc && !late; i++) {
			if (cs[i].st != C_FREE || started >= total)
				continue;
			started++;
			int e = conn_open(ep, &cs[i], (uint32_t)i);

			if (e) {
				note_err(-e);
				err++;
				cs[i].fd = -1;
				continue;
			}
			active++;
		}
		for (unsigned long i = 0; i < conc; i++) {
			struct conn *c = &cs[i];

			if ((c->st == C_CONNECTING || c->st == C_WAITING) && (now > c->sent_at + timeout_ms || late)) {
				note_err(ETIMEDOUT);
				err++;
				active--;
				conn_close(ep, c, C_FREE);
			}
		}
		if (!active && (started >= total || late))
			break;
		int k = epoll_wait(ep, evs, 512, 10);

		for (int j = 0; j < k; j++) {
			struct conn *c = &cs[evs[j].data.u32];
			int r;

			if (c->st == C_CONNECTING) {
				if (!connect_done(&evs[j], c)) {
					err++;
					active--;
					conn_close(ep, c, C_FREE);
					continue;
				}
				uint64_t began = c->sent_at, began_us = c->sent_us;

				if (!conn_send(ep, c, evs[j].data.u32)) {
					err++;
					active--;
					conn_close(ep, c, C_FREE);
					continue;
				}
				c->sent_at = began;	/* latency: connect to answer */
				c->sent_us = began_us;
				continue;
			}
			if (c->st != C_WAITING)
				continue;
			r = conn_read(c);
			if (r == 0)
				continue;
			if (r < 0) {
				note_err(-r);
				err++;
			} else {
				ok++;
				lat_add(c->sent_us);
			}
			active--;
			conn_close(ep, c, C_FREE);
		}
	}
	double secs = (double)(now_ms() - t0) / 1000;

	err += total - started;	/* not made before the limit */
	printf("short total=%lu ok=%lu err=%lu seconds=%.1f rate=%.0f p99_ms=%u max_ms=%u first_err=%s\n", total, ok,
	       err, secs, secs > 0 ? (double)ok / secs : 0, lat_pct(0.99), lat_max(), errno_name(first_err));
	free(cs);
	close(ep);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	unsigned long conns = 0, seconds = 10, interval = 1000, rate = 2000, total = 0, conc = 100, limit = 600;
	bool hold;

	if (argc < 4)
		die("usage: sl-soak hold|short HOST PORT [options] (see the source's head)");
	if (!strcmp(argv[1], "hold"))
		hold = true;
	else if (!strcmp(argv[1], "short"))
		hold = false;
	else
		die("the first argument is hold or short");
	parse_dst(argv[2], argv[3]);
	for (int i = 4; i < argc; i += 2) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			die("an option without its value");
		if (!strcmp(o, "--conns"))
			conns = num_arg(v, 1, 1000000, "--conns");
		else if (!strcmp(o, "--seconds"))
			seconds = limit = num_arg(v, 1, 3600, "--seconds");
		else if (!strcmp(o, "--interval-ms"))
			interval = num_arg(v, 10, 600000, "--interval-ms");
		else if (!strcmp(o, "--open-rate"))
			rate = num_arg(v, 1, 1000000, "--open-rate");
		else if (!strcmp(o, "--timeout-ms"))
			timeout_ms = (unsigned int)num_arg(v, 10, 600000, "--timeout-ms");
		else if (!strcmp(o, "--total"))
			total = num_arg(v, 1, 100000000, "--total");
		else if (!strcmp(o, "--concurrency"))
			conc = num_arg(v, 1, 100000, "--concurrency");
		else
			die("unknown option");
	}
	srandom((unsigned int)now_ms());
	if (hold) {
		if (!conns)
			die("hold needs --conns");
		return run_hold(conns, seconds, interval, rate);
	}
	if (!total)
		die("short needs --total");
	return run_short(total, conc, limit);
}
