// SPDX-License-Identifier: Apache-2.0
/* test_sockmap.c - same-node acceleration (sockops records, sk_msg redirects)
 * with real sockets in a throwaway netns and cgroup: the captured hop (app ->
 * its pod's 15001, both ends on loopback) and the delivery hop (the agent's
 * SL_MARK_DELIVER socket -> the app's accepted end), IPv4 and IPv6. Bytes must
 * arrive intact and in order whatever the write pattern; half-close, resets
 * and a peer closing mid-transfer behave as over TCP; a missing peer falls
 * back to TCP for good; and the counters and TCP_INFO show which path the
 * bytes took (tcpi_bytes_sent stays 0 on an accelerated socket). */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h>	/* tcp_info with tcpi_bytes_sent (glibc's lacks it) */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sluice/abi.h>
#include <sluice/counters.h>
#include <sluice/pin.h>

#include "lib/fixture.h"
#include "lib/test.h"
#include "loader.h"
#include "log.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

#define POD_IP4 "10.244.1.10"
#define POD_IP6 "fd00:244::10"

struct sm {
	struct fixture fx;
	struct loader *ld;
	int l4, l6;		/* the agent's 15001 listeners */
	int s4, s6;		/* the app's server on POD_IP:8080 */
	int socks, accel;	/* map fds */
};

static uint64_t netns_cookie(void)
{
	uint64_t c = 0;
	socklen_t len = sizeof(c);
	int s = socket(AF_INET, SOCK_DGRAM, 0);

	getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &c, &len);
	close(s);
	return c;
}

static bool sm_up(struct sm *m, bool enrol, bool no_sockmap)
{
	struct sl_netns_val v = { .pod_id = 1, .flags = SL_NETNS_F_ENROLLED };

	memset(m, 0, sizeof(*m));
	m->l4 = m->l6 = m->s4 = m->s6 = -1;
	if (!fixture_setup(&m->fx))
		return false;
	log_set_level(LOG_WARN);
	log_route_libbpf();
	if (!ASSERT_OK(loader_open(&m->ld, &(struct loader_opts){ .bpffs_root = m->fx.bpffs,
							      .cgroup = m->fx.cgroup,
							      .no_sockmap = no_sockmap }),
		       "loader_open"))
		return false;
	/* This netns plays the pod; replies to the delivery mark keep it (as the
	 * agent sets up in every enrolled pod). */
	fx_sh("ip addr add " POD_IP4 "/32 dev lo && ip -6 addr add " POD_IP6 "/128 dev lo nodad && "
	      "sysctl -qw net.ipv4.tcp_fwmark_accept=1");
	fx_wait_local6(POD_IP6);
	inet_pton(AF_INET, POD_IP4, &v.ip4.v4);
	inet_pton(AF_INET6, POD_IP6, &v.ip6.v6);
	m->l4 = fx_listen(SOCK_STREAM, "127.0.0.1", SL_PORT_OUTBOUND);
	m->l6 = fx_listen(SOCK_STREAM, "::1", SL_PORT_OUTBOUND);
	m->s4 = fx_listen(SOCK_STREAM, POD_IP4, 8080);
	m->s6 = fx_listen(SOCK_STREAM, POD_IP6, 8080);
	if (!ASSERT_GE(m->l4, 0, "listen 15001 v4") || !ASSERT_GE(m->l6, 0, "listen 15001 v6") ||
	    !ASSERT_GE(m->s4, 0, "listen 8080 v4") || !ASSERT_GE(m->s6, 0, "listen 8080 v6"))
		return false;
	m->socks = loader_map_fd(m->ld, SL_MAP_SOCKS);
	m->accel = loader_map_fd(m->ld, SL_MAP_SK_ACCEL);
	if (!ASSERT_GE(m->socks, 0, "sl_socks_v1") || !ASSERT_GE(m->accel, 0, "sl_sk_accel_v1"))
		return false;
	if (enrol && !ASSERT_OK(loader_netns_set(m->ld, netns_cookie(), &v), "enrol netns"))
		return false;
	return true;
}

static void sm_down(struct sm *m)
{
	int fds[] = { m->l4, m->l6, m->s4, m->s6 };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	loader_free(m->ld);
	if (m->fx.bpffs[0])
		loader_uninstall(&(struct loader_opts){ .bpffs_root = m->fx.bpffs });
	fixture_teardown(&m->fx);
}

static int accept_on(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	if (poll(&p, 1, 1000) != 1)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

/* A hop: *app and *agent connected to each other. captured: the app dials a
 * remote address and lands on 15001; else the agent's delivery socket
 * (SL_MARK_DELIVER) dials the app's server on the pod's IP. */
static bool hop_open(struct sm *m, int fam, bool captured, int *app, int *agent)
{
	*app = *agent = -1;
	if (captured) {
		*app = fx_connect(fam, SOCK_STREAM, fam == AF_INET ? "10.9.8.7" : "fd00:99::7", 8080);
		if (!ASSERT_GE(*app, 0, "captured connect"))
			return false;
		*agent = accept_on(fam == AF_INET ? m->l4 : m->l6);
		return ASSERT_GE(*agent, 0, "the agent accepted");
	}
	{
		struct sockaddr_storage ss;
		socklen_t len;
		int mark = SL_MARK_DELIVER, fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);

		fx_sockaddr(fam == AF_INET ? POD_IP4 : POD_IP6, 8080, &ss, &len);
		setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
		if (!ASSERT_OK(connect(fd, (struct sockaddr *)&ss, len) ? -errno : 0, "delivery connect")) {
			close(fd);
			return false;
		}
		fcntl(fd, F_SETFL, O_NONBLOCK);
		*agent = fd;
		*app = accept_on(fam == AF_INET ? m->s4 : m->s6);
		return ASSERT_GE(*app, 0, "the app accepted");
	}
}

static void hop_close(int a, int b)
{
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
}

static bool accel_of(struct sm *m, int fd, struct sl_sk_accel *out)
{
	memset(out, 0, sizeof(*out));
	return !bpf_map_lookup_elem(m->accel, &fd, out);
}

static uint32_t socks_count(struct sm *m)
{
	struct sl_hop_key k, next;
	uint32_t n = 0;
	void *prev = NULL;

	while (!bpf_map_get_next_key(m->socks, prev, &next) && n < 1000) {
		k = next;
		prev = &k;
		n++;
	}
	return n;
}

/* fd's key in sl_socks_v1, as sockops computes it (this netns). */
static int own_key(int fd, struct sl_hop_key *k)
{
	struct sockaddr_storage a, b;
	socklen_t la = sizeof(a), lb = sizeof(b);

	memset(k, 0, sizeof(*k));
	if (getsockname(fd, (struct sockaddr *)&a, &la) || getpeername(fd, (struct sockaddr *)&b, &lb))
		return -errno;
	k->netns_cookie = netns_cookie();
	k->family = (uint8_t)a.ss_family;
	if (a.ss_family == AF_INET) {
		k->local.v4 = ((struct sockaddr_in *)&a)->sin_addr.s_addr;
		k->remote.v4 = ((struct sockaddr_in *)&b)->sin_addr.s_addr;
		k->lport = ((struct sockaddr_in *)&a)->sin_port;
		k->rport = ((struct sockaddr_in *)&b)->sin_port;
	} else {
		memcpy(k->local.octets, &((struct sockaddr_in6 *)&a)->sin6_addr, 16);
		memcpy(k->remote.octets, &((struct sockaddr_in6 *)&b)->sin6_addr, 16);
		k->lport = ((struct sockaddr_in6 *)&a)->sin6_port;
		k->rport = ((struct sockaddr_in6 *)&b)->sin6_port;
	}
	return 0;
}

static uint64_t bytes_sent_tcp(int fd)
{
	struct tcp_info ti = { 0 };
	socklen_t len = sizeof(ti);

	getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
	return ti.tcpi_bytes_sent;
}

static uint64_t counter(struct sm *m, enum sl_counter c)
{
	uint64_t cnt[SL_CNT_MAX];

	return loader_counters(m->ld, cnt) ? 0 : cnt[c];
}

/* Read exactly n bytes within ms; returns bytes read. */
static size_t read_full(int fd, void *buf, size_t n, int ms)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, ms) != 1)
			break;
		r = recv(fd, (char *)buf + got, n - got, 0);
		if (r <= 0 && !(r < 0 && errno == EAGAIN))
			break;
		if (r > 0)
			got += (size_t)r;
	}
	return got;
}

static size_t write_full(int fd, const void *buf, size_t n, int ms)
{
	size_t put = 0;

	while (put < n) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		ssize_t w;

		if (poll(&p, 1, ms) != 1)
			break;
		w = send(fd, (const char *)buf + put, n - put, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN)
			break;
		if (w > 0)
			put += (size_t)w;
	}
	return put;
}

/* One request and one reply each way; the bytes must not touch TCP. */
static void check_roundtrip(struct sm *m, int app, int agent, uint32_t app_role, uint32_t agent_role,
			    const char *what)
{
	char buf[64], name[128];
	struct sl_sk_accel a, b;
	uint64_t before = counter(m, SL_CNT_SOCK_REDIRECT);

	snprintf(name, sizeof(name), "%s: request arrives", what);
	ASSERT_EQ(write_full(app, "ping", 4, 1000), 4, name);
	ASSERT_EQ(read_full(agent, buf, 4, 1000), 4, name);
	ASSERT_TRUE(!memcmp(buf, "ping", 4), name);
	snprintf(name, sizeof(name), "%s: reply arrives", what);
	ASSERT_EQ(write_full(agent, "pong!", 5, 1000), 5, name);
	ASSERT_EQ(read_full(app, buf, 5, 1000), 5, name);
	ASSERT_TRUE(!memcmp(buf, "pong!", 5), name);
	snprintf(name, sizeof(name), "%s: both ends recorded with their roles", what);
	if (ASSERT_TRUE(accel_of(m, app, &a) && accel_of(m, agent, &b), name)) {
		ASSERT_EQ(a.role, app_role, name);
		ASSERT_EQ(b.role, agent_role, name);
		snprintf(name, sizeof(name), "%s: bytes went socket to socket", what);
		ASSERT_EQ(a.redirected_bytes, 4, name);
		ASSERT_EQ(b.redirected_bytes, 5, name);
		ASSERT_EQ(a.stack_bytes + b.stack_bytes, 0, name);
	}
	snprintf(name, sizeof(name), "%s: no byte through TCP", what);
	ASSERT_EQ(bytes_sent_tcp(app) + bytes_sent_tcp(agent), 0, name);
	snprintf(name, sizeof(name), "%s: counted", what);
	ASSERT_GE(counter(m, SL_CNT_SOCK_REDIRECT) - before, 2, name);
}

void test_sockmap_hops(void)
{
	static const int fams[] = { AF_INET, AF_INET6 };
	struct sm m;
	int app, agent;

	if (!sm_up(&m, true, false))
		goto out;
	for (size_t i = 0; i < 2; i++) {
		const char *v = fams[i] == AF_INET ? "IPv4" : "IPv6";
		char what[64];

		snprintf(what, sizeof(what), "captured hop %s", v);
		if (hop_open(&m, fams[i], true, &app, &agent))
			check_roundtrip(&m, app, agent, SL_ACCEL_ROLE_APP_OUT, SL_ACCEL_ROLE_AGENT_OUT, what);
		ASSERT_EQ(socks_count(&m), 2, "two sockets per hop in sl_socks_v1");
		hop_close(app, agent);
		snprintf(what, sizeof(what), "delivery hop %s", v);
		if (hop_open(&m, fams[i], false, &app, &agent))
			check_roundtrip(&m, app, agent, SL_ACCEL_ROLE_APP_IN, SL_ACCEL_ROLE_DELIVER, what);
		hop_close(app, agent);
	}
	/* An IPv6 socket dialling IPv4 lands on the IPv4 listener: one key form. */
	app = fx_connect(AF_INET6, SOCK_STREAM, "10.9.8.7", 8080);
	agent = accept_on(m.l4);
	if (ASSERT_GE(app, 0, "v4-mapped connect") && ASSERT_GE(agent, 0, "accepted"))
		check_roundtrip(&m, app, agent, SL_ACCEL_ROLE_APP_OUT, SL_ACCEL_ROLE_AGENT_OUT,
				"captured hop, IPv4-mapped app socket");
	hop_close(app, agent);
	usleep(10000);
	ASSERT_EQ(socks_count(&m), 0, "closed sockets leave the map by themselves");
	ASSERT_EQ(counter(&m, SL_CNT_SOCK_FALLBACK), 0, "no fallback");
out:
	sm_down(&m);
}

/* What is never recorded: a pod that is not enrolled, --no-sockmap, and
 * connections that are not a same-node mesh hop. */
void test_sockmap_exclusions(void)
{
	struct sm m;
	int app, agent, c, s;

	if (!sm_up(&m, false, false))
		goto out;
	/* Not enrolled: nothing captures, so dial 15001 by hand. */
	c = fx_connect(AF_INET, SOCK_STREAM, "127.0.0.1", SL_PORT_OUTBOUND);
	s = accept_on(m.l4);
	ASSERT_EQ(socks_count(&m), 0, "a netns that is not enrolled is not accelerated");
	hop_close(c, s);
	sm_down(&m);

	if (!sm_up(&m, true, true))
		goto out;
	if (hop_open(&m, AF_INET, true, &app, &agent)) {
		ASSERT_EQ(socks_count(&m), 0, "--no-sockmap: nothing recorded");
		ASSERT_EQ(write_full(app, "x", 1, 1000), 1, "bytes flow");
		ASSERT_EQ(bytes_sent_tcp(app), 1, "through TCP");
	}
	hop_close(app, agent);
	sm_down(&m);

	if (!sm_up(&m, true, false))
		goto out;
	c = fx_connect(AF_INET, SOCK_STREAM, POD_IP4, 8080);	/* unmarked, the pod's own IP */
	s = accept_on(m.s4);
	ASSERT_EQ(socks_count(&m), 0, "an app's connection to its own address is not a mesh hop");
	hop_close(c, s);
	{
		int l = fx_listen(SOCK_STREAM, "127.0.0.1", 9090);

		c = fx_connect(AF_INET, SOCK_STREAM, "127.0.0.1", 9090);
		s = accept_on(l);
		ASSERT_GE(s, 0, "a loopback connection to another port is made");
		ASSERT_EQ(socks_count(&m), 0, "but is not a mesh hop");
		hop_close(c, s);
		if (l >= 0)
			close(l);
	}
out:
	sm_down(&m);
}

/* Deterministic content: byte i of a stream is a function of i. */
static uint8_t pat(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

struct pump {
	int fd;
	size_t total;
	bool small;		/* writes of 1..7 bytes */
	size_t done;
	bool ok;
};

static void *pump_write(void *arg)
{
	struct pump *p = arg;
	uint8_t buf[1 << 16];
	unsigned int seed = 7;
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (p->done < p->total) {
		size_t n = p->small ? 1 + (size_t)rand_r(&seed) % 7 : 1 + (size_t)rand_r(&seed) % sizeof(buf);
		struct pollfd pf = { .fd = p->fd, .events = POLLOUT };
		ssize_t w;

		if (n > p->total - p->done)
			n = p->total - p->done;
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(p->done + i);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 20 || poll(&pf, 1, 2000) != 1)
			return NULL;
		w = send(p->fd, buf, n, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN)
			return NULL;
		if (w > 0)
			p->done += (size_t)w;
	}
	p->ok = true;
	return NULL;
}

static void *pump_read(void *arg)
{
	struct pump *p = arg;
	uint8_t buf[1 << 16];
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (p->done < p->total) {
		struct pollfd pf = { .fd = p->fd, .events = POLLIN };
		ssize_t r;

		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 20 || poll(&pf, 1, 2000) != 1)
			return NULL;
		r = recv(p->fd, buf, sizeof(buf), 0);
		if (r == 0 || (r < 0 && errno != EAGAIN))
			return NULL;
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pat(p->done + (size_t)i))
				return NULL;	/* wrong byte: out of order or lost */
		if (r > 0)
			p->done += (size_t)r;
	}
	p->ok = true;
	return NULL;
}

/* Both directions at once, between a and b. */
static void transfer(int a, int b, size_t total, bool small, const char *what)
{
	struct pump w1 = { .fd = a, .total = total, .small = small }, r1 = { .fd = b, .total = total };
	struct pump w2 = { .fd = b, .total = total, .small = small }, r2 = { .fd = a, .total = total };
	pthread_t t[4];
	char name[128];

	pthread_create(&t[0], NULL, pump_write, &w1);
	pthread_create(&t[1], NULL, pump_read, &r1);
	pthread_create(&t[2], NULL, pump_write, &w2);
	pthread_create(&t[3], NULL, pump_read, &r2);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	snprintf(name, sizeof(name), "%s: all written", what);
	ASSERT_TRUE(w1.ok && w2.ok, name);
	snprintf(name, sizeof(name), "%s: all read, intact and in order", what);
	ASSERT_TRUE(r1.ok && r2.ok, name);
	ASSERT_EQ(r1.done + r2.done, 2 * total, name);
}

void test_sockmap_integrity(void)
{
	struct sm m;
	int app, agent;
	struct sl_sk_accel st;

	if (!sm_up(&m, true, false))
		goto out;
	if (hop_open(&m, AF_INET, true, &app, &agent)) {
		transfer(app, agent, 64u << 20, false, "64 MiB each way, writes up to 64 KiB");
		transfer(app, agent, 256u << 10, true, "256 KiB each way in writes of 1-7 bytes");
		ASSERT_EQ(bytes_sent_tcp(app) + bytes_sent_tcp(agent), 0, "none of it through TCP");
		ASSERT_TRUE(accel_of(&m, app, &st) && st.redirected_bytes == (64u << 20) + (256u << 10),
			    "every byte counted on the app's socket");
	}
	hop_close(app, agent);
	if (hop_open(&m, AF_INET6, false, &app, &agent))
		transfer(agent, app, 16u << 20, false, "delivery hop IPv6, 16 MiB each way");
	hop_close(app, agent);
out:
	sm_down(&m);
}

/* Corked writes and MSG_MORE arrive whole; a non-blocking writer's partial
 * sends add up. */
void test_sockmap_cork_partial(void)
{
	struct sm m;
	int app, agent, on = 1, off = 0;
	static char big[8u << 20], got[8u << 20];
	size_t put = 0;

	if (!sm_up(&m, true, false))
		goto out;
	if (!hop_open(&m, AF_INET, true, &app, &agent))
		goto out;
	setsockopt(app, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
	ASSERT_EQ(send(app, "ab", 2, 0), 2, "corked write 1");
	ASSERT_EQ(send(app, "cd", 2, 0), 2, "corked write 2");
	setsockopt(app, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
	ASSERT_EQ(send(app, "ef", 2, MSG_MORE), 2, "MSG_MORE write");
	ASSERT_EQ(send(app, "gh", 2, 0), 2, "last write");
	ASSERT_EQ(read_full(agent, got, 8, 1000), 8, "all 8 bytes arrive");
	ASSERT_TRUE(!memcmp(got, "abcdefgh", 8), "in order");
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)pat(i);
	/* One large non-blocking send may take less than asked; the rest follows. */
	while (put < sizeof(big)) {
		ssize_t w = send(agent, big + put, sizeof(big) - put, MSG_NOSIGNAL);
		size_t r;

		if (w > 0)
			put += (size_t)w;
		else if (!(w < 0 && errno == EAGAIN))
			break;
		r = read_full(app, got + (put - (size_t)(w > 0 ? w : 0)), w > 0 ? (size_t)w : 0, 2000);
		if (w > 0 && r != (size_t)w)
			break;
	}
	ASSERT_EQ(put, sizeof(big), "partial sends add up to everything");
	ASSERT_TRUE(!memcmp(big, got, sizeof(big)), "intact");
	ASSERT_EQ(bytes_sent_tcp(agent), 0, "socket to socket");
	hop_close(app, agent);
out:
	sm_down(&m);
}
/* Half-close: the writer's FIN still travels by TCP, after its bytes; the
 * other direction stays open. A reset reaches the peer. */
void test_sockmap_shutdown_reset(void)
{
	struct sm m;
	int app, agent;
	char buf[16];
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	ssize_t r;

	if (!sm_up(&m, true, false))
		goto out;
	if (!hop_open(&m, AF_INET, true, &app, &agent))
		goto out;
	ASSERT_EQ(write_full(app, "last", 4, 1000), 4, "write");
	ASSERT_OK(shutdown(app, SHUT_WR), "app half-closes");
	ASSERT_EQ(read_full(agent, buf, 4, 1000), 4, "bytes before the FIN arrive");
	{
		struct pollfd p = { .fd = agent, .events = POLLIN };

		poll(&p, 1, 1000);
		ASSERT_EQ(recv(agent, buf, sizeof(buf), 0), 0, "then EOF");
	}
	ASSERT_EQ(write_full(agent, "still", 5, 1000), 5, "the other way stays open");
	ASSERT_EQ(read_full(app, buf, 5, 1000), 5, "and delivers");
	ASSERT_TRUE(!memcmp(buf, "still", 5), "intact");
	ASSERT_EQ(bytes_sent_tcp(app) + bytes_sent_tcp(agent), 0, "data socket to socket, FIN by TCP");
	hop_close(app, agent);

	if (!hop_open(&m, AF_INET6, false, &app, &agent))
		goto out;
	setsockopt(agent, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(agent);
	{
		struct pollfd p = { .fd = app, .events = POLLIN };

		poll(&p, 1, 1000);
		r = recv(app, buf, sizeof(buf), 0);
		ASSERT_EQ(r < 0 ? -errno : r, -ECONNRESET, "a reset reaches the peer");
	}
	close(app);
out:
	sm_down(&m);
}

/* The peer closes while the writer is busy: the writer sees the end as over
 * TCP (EPIPE or ECONNRESET), never EACCES from a failed redirect, and no hang. */
void test_sockmap_peer_closes(void)
{
	struct sm m;
	int app, agent, err = 0;
	static char buf[1 << 16];
	struct timespec t0, t;

	if (!sm_up(&m, true, false))
		goto out;
	if (!hop_open(&m, AF_INET, true, &app, &agent))
		goto out;
	ASSERT_EQ(write_full(app, buf, sizeof(buf), 1000), sizeof(buf), "first write");
	close(agent);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p = { .fd = app, .events = POLLOUT };
		ssize_t w;

		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 3)
			break;
		poll(&p, 1, 200);
		w = send(app, buf, sizeof(buf), MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN) {
			err = errno;
			break;
		}
	}
	ASSERT_TRUE(err == EPIPE || err == ECONNRESET, "the writer sees EPIPE or ECONNRESET");
	ASSERT_NEQ(err, EACCES, "not EACCES");
	ASSERT_GE(counter(&m, SL_CNT_SOCK_FALLBACK), 1, "the gone peer was counted as a fallback");
	close(app);
out:
	sm_down(&m);
}

/* A peer missing from the map (here: taken out by hand) sends the bytes by
 * TCP, and the socket stays there: later bytes never overtake them. */
void test_sockmap_missing_peer(void)
{
	struct sm m;
	int app, agent;
	struct sl_hop_key k;
	struct sl_sk_accel st;
	char buf[8];

	if (!sm_up(&m, true, false))
		goto out;
	if (!hop_open(&m, AF_INET, true, &app, &agent))
		goto out;
	own_key(agent, &k);
	ASSERT_OK(bpf_map_delete_elem(m.socks, &k), "the agent's end is in the map under its key");
	ASSERT_EQ(write_full(app, "1234", 4, 1000), 4, "write with the peer gone from the map");
	ASSERT_EQ(read_full(agent, buf, 4, 1000), 4, "arrives by TCP");
	ASSERT_EQ(bytes_sent_tcp(app), 4, "through TCP");
	ASSERT_TRUE(accel_of(&m, app, &st) && (st.flags & SL_ACCEL_F_STACK), "the socket stays on TCP");
	ASSERT_EQ(write_full(app, "5678", 4, 1000), 4, "a later write");
	ASSERT_EQ(read_full(agent, buf + 4, 4, 1000), 4, "arrives");
	ASSERT_TRUE(!memcmp(buf, "12345678", 8), "in order");
	ASSERT_EQ(bytes_sent_tcp(app), 8, "also through TCP");
	ASSERT_EQ(counter(&m, SL_CNT_SOCK_FALLBACK), 1, "one fallback");
	ASSERT_GE(counter(&m, SL_CNT_SOCK_STACK), 1, "then sends on TCP");
	/* The other direction still has its peer. */
	ASSERT_EQ(write_full(agent, "back", 4, 1000), 4, "reply");
	ASSERT_EQ(read_full(app, buf, 4, 1000), 4, "arrives");
	ASSERT_EQ(bytes_sent_tcp(agent), 4, "out of the map, the agent's end sends by TCP");
	hop_close(app, agent);
out:
	sm_down(&m);
}

/* A direct connection, the way the agent drives it: the client's captured
 * hop (app -> agent) and the delivery hop (agent -> server app) paired, so
 * that bytes go app to app once the agent has delivered what it took. */
struct direct {
	int app, a_in;		/* the client app's socket, the agent's accepted end */
	int a_out, srv;		/* the agent's delivery socket, the server app's end */
	struct loader_shortcut sc;
};

static bool direct_open(struct sm *m, int fam, struct direct *d)
{
	memset(d, 0, sizeof(*d));
	d->app = d->a_in = d->a_out = d->srv = -1;
	return hop_open(m, fam, true, &d->app, &d->a_in) && hop_open(m, fam, false, &d->srv, &d->a_out);
}

static void direct_close(struct direct *d)
{
	hop_close(d->app, d->a_in);
	hop_close(d->a_out, d->srv);
}

void test_sockmap_direct(void)
{
	static const int fams[] = { AF_INET, AF_INET6 };
	struct sm m;
	struct direct d;
	uint64_t direct[2];
	char buf[16];

	if (!sm_up(&m, true, false))
		goto out;
	for (size_t i = 0; i < 2; i++) {
		uint64_t relayed[2] = { 0, 0 };
		const char *v = fams[i] == AF_INET ? "IPv4" : "IPv6";
		char name[96];

		if (!direct_open(&m, fams[i], &d))
			break;
		/* The client speaks first, before the agent paired anything. */
		ASSERT_EQ(write_full(d.app, "x", 1, 1000), 1, "a first byte, to the agent");
		usleep(1000);
		snprintf(name, sizeof(name), "%s: paired", v);
		if (!ASSERT_OK(loader_shortcut_open(m.ld, d.a_in, d.a_out, relayed, &d.sc), name))
			break;
		/* The agent has not delivered "x" yet: "y" must not overtake it. */
		ASSERT_EQ(write_full(d.app, "y", 1, 1000), 1, "a second byte");
		ASSERT_EQ(read_full(d.a_in, buf, 2, 1000), 2, "both wait at the agent");
		ASSERT_EQ(write_full(d.a_out, buf, 2, 1000), 2, "the agent delivers them");
		ASSERT_OK(loader_shortcut_relayed(m.ld, &d.sc, d.a_in, d.a_out, 0, 2), "and says so");
		ASSERT_EQ(write_full(d.app, "z", 1, 1000), 1, "a third byte: app to app");
		snprintf(name, sizeof(name), "%s: the server reads them in order", v);
		ASSERT_EQ(read_full(d.srv, buf, 3, 1000), 3, name);
		ASSERT_TRUE(!memcmp(buf, "xyz", 3), name);
		/* The reply direction has nothing pending: straight back. */
		ASSERT_EQ(write_full(d.srv, "pong", 4, 1000), 4, "reply");
		ASSERT_EQ(read_full(d.app, buf, 4, 1000), 4, "arrives at the client app");
		ASSERT_TRUE(!memcmp(buf, "pong", 4), "intact");
		ASSERT_EQ(recv(d.a_out, buf, sizeof(buf), MSG_DONTWAIT), -1, "the agent saw none of the reply");
		transfer(d.app, d.srv, 8u << 20, false, "8 MiB each way, app to app");
		loader_shortcut_bytes(m.ld, &d.sc, direct);
		snprintf(name, sizeof(name), "%s: app-to-app bytes counted per direction", v);
		ASSERT_EQ(direct[0], 1 + (8u << 20), name);
		ASSERT_EQ(direct[1], 4 + (8u << 20), name);
		ASSERT_EQ(bytes_sent_tcp(d.app) + bytes_sent_tcp(d.srv), 0, "none through TCP");
		/* Half-close: the client's FIN reaches the agent by TCP; the agent
		 * passes it on, after every byte. */
		ASSERT_EQ(write_full(d.app, "end", 3, 1000), 3, "last bytes");
		ASSERT_OK(shutdown(d.app, SHUT_WR), "the client half-closes");
		{
			struct pollfd p = { .fd = d.a_in, .events = POLLIN };

			ASSERT_EQ(poll(&p, 1, 1000), 1, "the agent sees it");
			ASSERT_EQ(recv(d.a_in, buf, sizeof(buf), MSG_DONTWAIT), 0, "as EOF, with no byte");
		}
		ASSERT_OK(shutdown(d.a_out, SHUT_WR), "the agent passes the FIN on");
		ASSERT_EQ(read_full(d.srv, buf, 3, 1000), 3, "the server reads the last bytes");
		{
			struct pollfd p = { .fd = d.srv, .events = POLLIN };

			poll(&p, 1, 1000);
			ASSERT_EQ(recv(d.srv, buf, sizeof(buf), MSG_DONTWAIT), 0, "then EOF");
		}
		ASSERT_EQ(write_full(d.srv, "bye", 3, 1000), 3, "the server still answers");
		ASSERT_EQ(read_full(d.app, buf, 3, 1000), 3, "the half-closed client reads it");
		loader_shortcut_close(m.ld, &d.sc, direct);
		direct_close(&d);
	}
	ASSERT_GE(counter(&m, SL_CNT_SOCK_DIRECT), 4, "sockmap_direct counted");
out:
	sm_down(&m);
}

/* When not to pair, and what happens when the other app goes away. */
void test_sockmap_direct_limits(void)
{
	struct sm m;
	struct direct d;
	struct loader_shortcut sc;
	uint64_t relayed[2] = { 0, 0 }, direct[2];
	char buf[8];
	struct sl_hop_key k;

	if (!sm_up(&m, true, false))
		goto out;
	/* The server app went away: the client's bytes go to the agent again. */
	if (direct_open(&m, AF_INET, &d) && ASSERT_OK(loader_shortcut_open(m.ld, d.a_in, d.a_out, relayed, &d.sc),
						       "paired")) {
		close(d.srv);
		d.srv = -1;
		usleep(10000);
		ASSERT_EQ(write_full(d.app, "lost?", 5, 1000), 5, "the client writes after the server closed");
		ASSERT_EQ(read_full(d.a_in, buf, 5, 1000), 5, "the agent gets it (and would reset)");
		loader_shortcut_close(m.ld, &d.sc, direct);
		ASSERT_EQ(direct[0], 0, "nothing went app to app");
	}
	direct_close(&d);
	/* The agent's delivery socket fell back to TCP: no pairing (its bytes
	 * could still sit in the server's TCP queue). */
	if (direct_open(&m, AF_INET, &d)) {
		ASSERT_OK(own_key(d.srv, &k), "key of the server app");
		ASSERT_OK(bpf_map_delete_elem(m.socks, &k), "the server app out of the map");
		ASSERT_EQ(write_full(d.a_out, "t", 1, 1000), 1, "the agent delivers by TCP");
		ASSERT_EQ(loader_shortcut_open(m.ld, d.a_in, d.a_out, relayed, &sc), -ENOENT,
			  "an end out of the map: not paired");
	}
	direct_close(&d);
	if (direct_open(&m, AF_INET, &d)) {
		uint64_t fd = (uint64_t)d.app;

		struct sl_hop_key in;

		/* The app's getpeername() shows what it dialled: take its key
		 * from the agent's end, swapped. */
		ASSERT_OK(own_key(d.a_in, &in), "key of the agent's accepted end");
		k = in;
		k.local = in.remote;
		k.remote = in.local;
		k.lport = in.rport;
		k.rport = in.lport;
		ASSERT_OK(bpf_map_delete_elem(m.socks, &k), "out of the map");
		ASSERT_EQ(write_full(d.a_in, "u", 1, 1000), 1, "the agent's accepted end falls back to TCP");
		ASSERT_EQ(read_full(d.app, buf, 1, 1000), 1, "delivered");
		ASSERT_OK(bpf_map_update_elem(m.socks, &k, &fd, BPF_ANY), "the client app back in the map");
		ASSERT_EQ(loader_shortcut_open(m.ld, d.a_in, d.a_out, relayed, &sc), -EPIPE,
			  "an agent end that fell back to TCP: not paired");
	}
	direct_close(&d);
	sm_down(&m);

	if (!sm_up(&m, true, true))
		goto out;
	if (direct_open(&m, AF_INET, &d))
		ASSERT_EQ(loader_shortcut_open(m.ld, d.a_in, d.a_out, relayed, &sc), -EOPNOTSUPP,
			  "--no-sockmap: never paired");
	direct_close(&d);
out:
	sm_down(&m);
}
