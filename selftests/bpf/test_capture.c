// SPDX-License-Identifier: Apache-2.0
/* test_capture.c - sock_lb + sockops capture of an enrolled netns, with real
 * sockets: the connect goes to the agent's 15001 in the same netns, the agent
 * finds the original destination in sl_origdst_v1 from what it can see of the
 * accepted socket (SO_NETNS_COOKIE, the client port), and the application's
 * getpeername() shows what it dialled. */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
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

struct cap {
	struct fixture fx;
	struct loader *ld;
	int l4, l6;		/* the agent's 15001 listeners */
	uint64_t cookie;
};

static uint64_t netns_cookie_of(int fd)
{
	uint64_t c = 0;
	socklen_t len = sizeof(c);

	getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &c, &len);
	return c;
}

static bool cap_up(struct cap *c, bool enrol, bool listeners)
{
	struct sl_netns_val v = { .pod_id = 1, .flags = SL_NETNS_F_ENROLLED };

	memset(c, 0, sizeof(*c));
	c->l4 = c->l6 = -1;
	if (!fixture_setup(&c->fx))
		return false;
	log_set_level(LOG_WARN);
	log_route_libbpf();
	if (!ASSERT_OK(loader_open(&c->ld, &(struct loader_opts){ .bpffs_root = c->fx.bpffs,
							      .cgroup = c->fx.cgroup }), "loader_open"))
		return false;
	/* This netns plays the pod: 10.244.1.10 is "its own" address. */
	fx_sh("ip addr add 10.244.1.10/32 dev lo && ip -6 addr add fd00:244::10/128 dev lo nodad");
	fx_wait_local6("fd00:244::10");
	inet_pton(AF_INET, "10.244.1.10", &v.ip4.v4);
	inet_pton(AF_INET6, "fd00:244::10", &v.ip6.v6);
	if (listeners) {
		c->l4 = fx_listen(SOCK_STREAM, "127.0.0.1", SL_PORT_OUTBOUND);
		c->l6 = fx_listen(SOCK_STREAM, "::1", SL_PORT_OUTBOUND);
		if (!ASSERT_GE(c->l4, 0, "listen 15001 v4") || !ASSERT_GE(c->l6, 0, "listen 15001 v6"))
			return false;
	}
	{
		int s = socket(AF_INET, SOCK_DGRAM, 0);

		c->cookie = netns_cookie_of(s);
		close(s);
	}
	if (enrol && !ASSERT_OK(loader_netns_set(c->ld, c->cookie, &v), "enrol netns"))
		return false;
	return true;
}

static void cap_down(struct cap *c)
{
	if (c->l4 >= 0)
		close(c->l4);
	if (c->l6 >= 0)
		close(c->l6);
	loader_free(c->ld);
	if (c->fx.bpffs[0])
		loader_uninstall(&(struct loader_opts){ .bpffs_root = c->fx.bpffs });
	fixture_teardown(&c->fx);
}

/* Accept on the 15001 listener of family lfam; look up the original destination
 * as the agent does. Returns the accepted fd (or -1) and fills *o. */
static int agent_accept(struct cap *c, int lfam, struct sl_orig *o, int *lookup_err)
{
	struct pollfd p = { .fd = lfam == AF_INET ? c->l4 : c->l6, .events = POLLIN };
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	struct sl_origdst_key k = { 0 };
	int a;

	if (poll(&p, 1, 1000) != 1)
		return -1;
	a = accept4(p.fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
	if (a < 0)
		return -1;
	k.netns_cookie = netns_cookie_of(a);
	k.sport = peer.ss_family == AF_INET ? ((struct sockaddr_in *)&peer)->sin_port
					    : ((struct sockaddr_in6 *)&peer)->sin6_port;
	k.family = (uint8_t)lfam;
	*lookup_err = loader_origdst_take(c->ld, &k, o);
	return a;
}

static const char *orig_str(const struct sl_orig *o, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	inet_ntop(o->family == SL_AF_INET ? AF_INET : AF_INET6, &o->addr, ip, sizeof(ip));
	snprintf(buf, len, o->family == SL_AF_INET ? "%s:%u" : "[%s]:%u", ip, ntohs(o->port));
	return buf;
}

/* connect() from a socket of family fam to ip:port; the kernel must send it
 * to 15001 (listener family lfam) and record want as the original. */
static void expect_captured(struct cap *c, int fam, const char *ip, uint16_t port, int lfam, const char *want,
			    const char *want_peer)
{
	struct sl_orig o = { 0 };
	char buf[80], peer[80];
	int fd, a, err = -1;

	fd = fx_connect(fam, SOCK_STREAM, ip, port);
	if (!ASSERT_GE(fd, 0, "captured connect succeeds (the agent's listener took it)"))
		return;
	a = agent_accept(c, lfam, &o, &err);
	if (ASSERT_GE(a, 0, "accepted on the 15001 listener") && ASSERT_OK(err, "origdst found")) {
		ASSERT_STREQ(orig_str(&o, buf, sizeof(buf)), want, "original destination");
		ASSERT_STREQ(fx_peer(fd, peer, sizeof(peer)), want_peer, "getpeername shows what was dialled");
		ASSERT_OK(loader_origdst_take(c->ld, &(struct sl_origdst_key){ 0 }, &o) == -ENOENT ? 0 : -1,
			  "nothing else pending");
	}
	if (a >= 0)
		close(a);
	close(fd);
}

void test_capture_tcp4_to_15001(void)
{
	struct cap c;

	if (!cap_up(&c, true, true))
		goto out;
	expect_captured(&c, AF_INET, "10.9.8.7", 8080, AF_INET, "10.9.8.7:8080", "10.9.8.7:8080");
	expect_captured(&c, AF_INET6, "fd00:99::7", 443, AF_INET6, "[fd00:99::7]:443", "[fd00:99::7]:443");
	/* An IPv6 socket dialling an IPv4 address lands on the IPv4 listener. */
	expect_captured(&c, AF_INET6, "10.9.8.7", 8080, AF_INET, "10.9.8.7:8080", "[::ffff:10.9.8.7]:8080");
out:
	cap_down(&c);
}

/* A Service VIP is balanced first; the agent learns both the backend and the VIP. */
void test_capture_service_vip(void)
{
	struct cap c;
	struct sl_svc_key k = { .port = htons(80), .proto = SL_IPPROTO_TCP, .family = SL_AF_INET };
	struct sl_svc_val v = { .svc_id = 5, .count = 1 };
	struct sl_be_key bk = { 5, 0 };
	struct sl_be_val bv = { .port = htons(8080), .family = SL_AF_INET };
	struct sl_orig o = { 0 };
	char buf[80], peer[80];
	int fd, a, err = -1;

	if (!cap_up(&c, true, true))
		goto out;
	inet_pton(AF_INET, "10.96.0.10", &k.vip.v4);
	inet_pton(AF_INET, "10.244.2.20", &bv.addr.v4);
	bpf_map_update_elem(loader_map_fd(c.ld, SL_MAP_BE), &bk, &bv, BPF_ANY);
	bpf_map_update_elem(loader_map_fd(c.ld, SL_MAP_SVC), &k, &v, BPF_ANY);
	fd = fx_connect(AF_INET, SOCK_STREAM, "10.96.0.10", 80);
	if (!ASSERT_GE(fd, 0, "connect to VIP"))
		goto out;
	a = agent_accept(&c, AF_INET, &o, &err);
	if (ASSERT_GE(a, 0, "accepted") && ASSERT_OK(err, "origdst")) {
		ASSERT_STREQ(orig_str(&o, buf, sizeof(buf)), "10.244.2.20:8080", "the chosen backend");
		ASSERT_TRUE(o.flags & SL_ORIG_F_SERVICE, "marked as a Service connection");
		ASSERT_EQ(o.vip.v4, k.vip.v4, "the VIP");
		ASSERT_EQ(o.vip_port, htons(80), "the VIP port");
		ASSERT_STREQ(fx_peer(fd, peer, sizeof(peer)), "10.96.0.10:80", "getpeername shows the VIP");
		close(a);
	}
	close(fd);
out:
	cap_down(&c);
}

/* What is never captured: not enrolled, no listener (agent away), the agent's
 * own marked sockets, DNS, loopback, the pod's own address, UDP. */
void test_capture_exclusions(void)
{
	struct cap c;
	uint64_t cnt[SL_CNT_MAX];
	int fd, mark = SL_MARK_AGENT, s;
	struct sockaddr_storage ss;
	socklen_t len;

	if (!cap_up(&c, false, true))
		goto out;
	fd = fx_connect(AF_INET, SOCK_STREAM, "10.9.8.7", 8080);
	ASSERT_EQ(fd, -ENETUNREACH, "not enrolled: the connect goes where it was going");
	if (fd >= 0)
		close(fd);
	cap_down(&c);

	if (!cap_up(&c, true, false))
		goto out;
	fd = fx_connect(AF_INET, SOCK_STREAM, "10.9.8.7", 8080);
	ASSERT_EQ(fd, -ENETUNREACH, "no 15001 listener: fail open");
	if (fd >= 0)
		close(fd);
	loader_counters(c.ld, cnt);
	ASSERT_GE(cnt[SL_CNT_CAP_NO_LISTENER], 1, "counted");
	cap_down(&c);

	if (!cap_up(&c, true, true))
		goto out;
	s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(s, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
	fx_sockaddr("10.9.8.7", 8080, &ss, &len);
	ASSERT_EQ(connect(s, (struct sockaddr *)&ss, len) ? -errno : 0, -ENETUNREACH, "agent-marked socket");
	close(s);
	fd = fx_connect(AF_INET, SOCK_STREAM, "10.9.8.7", 53);
	ASSERT_EQ(fd, -ENETUNREACH, "DNS over TCP is not captured");
	if (fd >= 0)
		close(fd);
	fd = fx_connect(AF_INET, SOCK_STREAM, "127.0.0.1", 9);
	ASSERT_EQ(fd, -ECONNREFUSED, "loopback is not captured");
	if (fd >= 0)
		close(fd);
	fd = fx_connect(AF_INET, SOCK_STREAM, "10.244.1.10", 9);
	ASSERT_EQ(fd, -ECONNREFUSED, "the pod's own IPv4 is not captured");
	if (fd >= 0)
		close(fd);
	fd = fx_connect(AF_INET6, SOCK_STREAM, "fd00:244::10", 9);
	ASSERT_EQ(fd, -ECONNREFUSED, "the pod's own IPv6 is not captured");
	if (fd >= 0)
		close(fd);
	fd = fx_connect(AF_INET, SOCK_DGRAM, "10.9.8.7", 8080);
	ASSERT_EQ(fd, -ENETUNREACH, "UDP is not captured");
	if (fd >= 0)
		close(fd);
	loader_counters(c.ld, cnt);
	ASSERT_EQ(cnt[SL_CNT_CAP_REDIRECT], 0, "nothing was redirected");
out:
	cap_down(&c);
}
