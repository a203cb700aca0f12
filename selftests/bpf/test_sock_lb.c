// SPDX-License-Identifier: Apache-2.0
/* test_sock_lb.c - sock_lb with real sockets: this test's own netns and cgroup,
 * the programs loaded and attached by the agent's loader, map entries written
 * as sync writes them, backends listening on loopback addresses. */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
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

#define VIP4 "10.96.0.10"
#define VIP6 "fd00:96::10"
#define N_BE 3

struct world {
	struct fixture fx;
	struct loader *ld;
	int svc_fd, be_fd, aff_fd;
	int lfd[N_BE];			/* TCP listeners of the backends */
};

static const char *const be_ip4[N_BE] = { "127.0.0.11", "127.0.0.12", "127.0.0.13" };
static const char *const be_ip6[N_BE] = { "fd00::11", "fd00::12", "fd00::13" };

static struct sl_svc_key svc_key(const char *vip, uint16_t port, uint8_t proto)
{
	struct sl_svc_key k = { 0 };

	if (inet_pton(AF_INET, vip, &k.vip.v4) == 1) {
		k.family = SL_AF_INET;
	} else {
		inet_pton(AF_INET6, vip, &k.vip.v6);
		k.family = SL_AF_INET6;
	}
	k.port = htons(port);
	k.proto = proto;
	return k;
}

static struct sl_be_val be_val(const char *ip, uint16_t port)
{
	struct sl_be_val v = { 0 };

	if (inet_pton(AF_INET, ip, &v.addr.v4) == 1) {
		v.family = SL_AF_INET;
	} else {
		inet_pton(AF_INET6, ip, &v.addr.v6);
		v.family = SL_AF_INET6;
	}
	v.port = htons(port);
	return v;
}

/* A frontend with the given backends in slots 0..n-1 (slots first, as sync does). */
static bool put_service(struct world *w, const char *vip, uint16_t port, uint8_t proto, uint32_t id,
			const char *const *ips, const uint16_t *ports, int n, uint16_t flags, uint32_t tmo)
{
	struct sl_svc_key k = svc_key(vip, port, proto);
	struct sl_svc_val v = { .svc_id = id, .count = (uint16_t)n, .flags = flags, .aff_timeout = tmo };

	for (int i = 0; i < n; i++) {
		struct sl_be_key bk = { .svc_id = id, .slot = (uint32_t)i };
		struct sl_be_val bv = be_val(ips[i], ports[i]);

		if (!ASSERT_OK(bpf_map_update_elem(w->be_fd, &bk, &bv, BPF_ANY), "be update"))
			return false;
	}
	return ASSERT_OK(bpf_map_update_elem(w->svc_fd, &k, &v, BPF_ANY), "svc update");
}

static bool world_up(struct world *w, bool v6)
{
	struct loader_opts o;

	memset(w, 0, sizeof(*w));
	for (int i = 0; i < N_BE; i++)
		w->lfd[i] = -1;
	if (!fixture_setup(&w->fx))
		return false;
	log_set_level(LOG_WARN);
	log_route_libbpf();
	o = (struct loader_opts){ .bpffs_root = w->fx.bpffs, .cgroup = w->fx.cgroup };
	if (!ASSERT_OK(loader_open(&w->ld, &o), "loader_open"))
		return false;
	w->svc_fd = loader_map_fd(w->ld, SL_MAP_SVC);
	w->be_fd = loader_map_fd(w->ld, SL_MAP_BE);
	w->aff_fd = loader_map_fd(w->ld, SL_MAP_AFF);
	if (v6) {
		for (int i = 0; i < N_BE; i++)
			if (!ASSERT_OK(fx_sh("ip -6 addr add %s/128 dev lo nodad", be_ip6[i]), "add v6 addr") ||
			    !ASSERT_OK(fx_wait_local6(be_ip6[i]), "its local route"))
				return false;
	}
	for (int i = 0; i < N_BE; i++) {
		w->lfd[i] = fx_listen(SOCK_STREAM, v6 ? be_ip6[i] : be_ip4[i], (uint16_t)(8080 + i));
		if (!ASSERT_GE(w->lfd[i], 0, "listen"))
			return false;
	}
	return true;
}

static void world_down(struct world *w)
{
	for (int i = 0; i < N_BE; i++)
		if (w->lfd[i] >= 0)
			close(w->lfd[i]);
	loader_free(w->ld);
	if (w->fx.bpffs[0])
		loader_uninstall(&(struct loader_opts){ .bpffs_root = w->fx.bpffs });
	fixture_teardown(&w->fx);
}

static const uint16_t be_ports[N_BE] = { 8080, 8081, 8082 };

/* n connects to vip:port; hits[i] counts backend i. Each must show the VIP as peer. */
static bool connect_many(struct world *w, int family, const char *vip, uint16_t port, int n, int *hits,
			 const char *want_peer)
{
	char peer[80];

	for (int i = 0; i < n; i++) {
		int fd = fx_connect(family, SOCK_STREAM, vip, port), b;

		if (!ASSERT_GE(fd, 0, "connect to VIP"))
			return false;
		b = fx_accept_any(w->lfd, N_BE, 1000);
		if (!ASSERT_GE(b, 0, "a backend accepted")) {
			close(fd);
			return false;
		}
		hits[b]++;
		if (!ASSERT_STREQ(fx_peer(fd, peer, sizeof(peer)), want_peer, "getpeername shows the VIP")) {
			close(fd);
			return false;
		}
		close(fd);
	}
	return true;
}

static uint64_t counter(struct world *w, enum sl_counter c)
{
	uint64_t v[SL_CNT_MAX];

	return loader_counters(w->ld, v) ? 0 : v[c];
}

void test_sock_lb_tcp4_spread(void)
{
	struct world w;
	int hits[N_BE] = { 0 };

	if (!world_up(&w, false))
		goto out;
	if (!put_service(&w, VIP4, 80, SL_IPPROTO_TCP, 7, be_ip4, be_ports, N_BE, 0, 0))
		goto out;
	if (!connect_many(&w, AF_INET, VIP4, 80, 150, hits, VIP4 ":80"))
		goto out;
	for (int i = 0; i < N_BE; i++)
		ASSERT_GE(hits[i], 20, "every backend gets a share of 150 connects");
	ASSERT_GE(counter(&w, SL_CNT_LB_XLATE), 150, "lb_translated counted");
	ASSERT_GE(counter(&w, SL_CNT_LB_REVNAT), 150, "lb_revnat counted");
out:
	world_down(&w);
}

void test_sock_lb_not_a_vip_untouched(void)
{
	struct world w;
	char peer[80];
	int fd, b;

	if (!world_up(&w, false))
		goto out;
	if (!put_service(&w, VIP4, 80, SL_IPPROTO_TCP, 7, be_ip4, be_ports, N_BE, 0, 0))
		goto out;
	/* Same VIP, other port; and a backend directly. */
	fd = fx_connect(AF_INET, SOCK_STREAM, VIP4, 81);
	ASSERT_LE(fd, -1, "VIP on another port is not translated (no route)");
	if (fd >= 0)
		close(fd);
	fd = fx_connect(AF_INET, SOCK_STREAM, be_ip4[1], 8081);
	if (!ASSERT_GE(fd, 0, "direct connect"))
		goto out;
	b = fx_accept_any(w.lfd, N_BE, 1000);
	ASSERT_EQ(b, 1, "the backend asked for");
	ASSERT_STREQ(fx_peer(fd, peer, sizeof(peer)), "127.0.0.12:8081", "peer is the real one");
	close(fd);
out:
	world_down(&w);
}

void test_sock_lb_no_endpoints_refused(void)
{
	struct world w;
	int fd;

	if (!world_up(&w, false))
		goto out;
	if (!put_service(&w, VIP4, 80, SL_IPPROTO_TCP, 7, be_ip4, be_ports, 0, 0, 0))
		goto out;
	fd = fx_connect(AF_INET, SOCK_STREAM, VIP4, 80);
	ASSERT_EQ(fd, -ECONNREFUSED, "TCP connect refused at once");
	if (fd >= 0)
		close(fd);
	if (!put_service(&w, VIP4, 53, SL_IPPROTO_UDP, 8, be_ip4, be_ports, 0, 0, 0))
		goto out;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (ASSERT_GE(fd, 0, "udp socket")) {
		struct sockaddr_storage ss;
		socklen_t len;

		fx_sockaddr(VIP4, 53, &ss, &len);
		ASSERT_EQ(sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, len) < 0 ? -errno : 0, -ECONNREFUSED,
			  "UDP sendto refused");
		close(fd);
	}
	ASSERT_GE(counter(&w, SL_CNT_LB_NO_BACKEND), 2, "lb_no_backend counted");
out:
	world_down(&w);
}

void test_sock_lb_affinity(void)
{
	struct world w;
	int hits[N_BE] = { 0 }, first = -1;
	struct sl_aff_key ak, next;
	struct sl_sticky_val st;

	if (!world_up(&w, false))
		goto out;
	if (!put_service(&w, VIP4, 80, SL_IPPROTO_TCP, 9, be_ip4, be_ports, N_BE, SL_SVC_F_AFFINITY, 60))
		goto out;
	if (!connect_many(&w, AF_INET, VIP4, 80, 30, hits, VIP4 ":80"))
		goto out;
	for (int i = 0; i < N_BE; i++)
		if (hits[i])
			first = first < 0 ? i : 99;
	if (!ASSERT_TRUE(first >= 0 && first < N_BE, "all 30 connects went to one backend"))
		goto out;
	ASSERT_EQ(hits[first], 30, "sticky");

	/* sync moved the backend to another slot: the client stays with it. */
	{
		struct sl_be_key k0 = { 9, 0 }, kf = { 9, (uint32_t)first };
		struct sl_be_val v0, vf;

		bpf_map_lookup_elem(w.be_fd, &k0, &v0);
		bpf_map_lookup_elem(w.be_fd, &kf, &vf);
		bpf_map_update_elem(w.be_fd, &k0, &vf, BPF_ANY);
		bpf_map_update_elem(w.be_fd, &kf, &v0, BPF_ANY);
		memset(hits, 0, sizeof(hits));
		if (!connect_many(&w, AF_INET, VIP4, 80, 10, hits, VIP4 ":80"))
			goto out;
		ASSERT_EQ(hits[first], 10, "still the same backend after a slot move");
	}

	/* The entry expires: make it old instead of waiting. */
	if (!ASSERT_OK(bpf_map_get_next_key(w.aff_fd, NULL, &next), "affinity entry exists"))
		goto out;
	ak = next;
	ASSERT_EQ(ak.svc_id, 9, "keyed by service");
	bpf_map_lookup_elem(w.aff_fd, &ak, &st);
	st.last_used_ns = 1;
	bpf_map_update_elem(w.aff_fd, &ak, &st, BPF_ANY);
	memset(hits, 0, sizeof(hits));
	for (int round = 0; round < 20; round++) {
		int h[N_BE] = { 0 };

		if (!connect_many(&w, AF_INET, VIP4, 80, 1, h, VIP4 ":80"))
			goto out;
		for (int i = 0; i < N_BE; i++)
			hits[i] += h[i];
		bpf_map_lookup_elem(w.aff_fd, &ak, &st);
		st.last_used_ns = 1;
		bpf_map_update_elem(w.aff_fd, &ak, &st, BPF_ANY);
	}
	ASSERT_LE(hits[first], 19, "an expired affinity chooses anew");
	ASSERT_GE(counter(&w, SL_CNT_LB_AFF_HIT), 39, "affinity hits counted");
out:
	world_down(&w);
}

/* Unconnected UDP: sendto the VIP reaches a backend, the reply comes from the
 * VIP, and one socket keeps its backend. */
void test_sock_lb_udp4_unconnected(void)
{
	struct world w;
	int ufd[N_BE], c = -1, got = -1;
	struct sockaddr_storage vip, from;
	socklen_t vlen, flen;
	char buf[64], addr[80];

	for (int i = 0; i < N_BE; i++)
		ufd[i] = -1;
	if (!world_up(&w, false))
		goto out;
	for (int i = 0; i < N_BE; i++)
		ufd[i] = fx_listen(SOCK_DGRAM, be_ip4[i], 5353);
	if (!put_service(&w, VIP4, 53, SL_IPPROTO_UDP, 11, be_ip4, (uint16_t[]){ 5353, 5353, 5353 }, N_BE, 0, 0))
		goto out;
	c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	fx_sockaddr(VIP4, 53, &vip, &vlen);
	for (int round = 0; round < 10; round++) {
		struct pollfd pfd[N_BE];
		int b = -1;

		if (!ASSERT_EQ(sendto(c, "ping", 4, 0, (struct sockaddr *)&vip, vlen), 4, "sendto VIP"))
			goto out;
		for (int i = 0; i < N_BE; i++)
			pfd[i] = (struct pollfd){ .fd = ufd[i], .events = POLLIN };
		if (!ASSERT_GE(poll(pfd, N_BE, 1000), 1, "a backend got the datagram"))
			goto out;
		for (int i = 0; i < N_BE; i++)
			if (pfd[i].revents & POLLIN)
				b = i;
		if (got < 0)
			got = b;
		ASSERT_EQ(b, got, "one socket keeps its backend");
		flen = sizeof(from);
		recvfrom(ufd[b], buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
		/* The backend answers the client's real address. */
		sendto(ufd[b], "pong", 4, 0, (struct sockaddr *)&from, flen);
		flen = sizeof(from);
		struct pollfd cp = { .fd = c, .events = POLLIN };
		if (!ASSERT_EQ(poll(&cp, 1, 1000), 1, "reply arrives"))
			goto out;
		ASSERT_EQ(recvfrom(c, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen), 4, "recvfrom");
		ASSERT_STREQ(fx_addr_str(&from, addr, sizeof(addr)), VIP4 ":53", "the reply shows the VIP");
	}
	ASSERT_GE(counter(&w, SL_CNT_LB_UDP_REUSE), 9, "flow reuse counted");
out:
	if (c >= 0)
		close(c);
	for (int i = 0; i < N_BE; i++)
		if (ufd[i] >= 0)
			close(ufd[i]);
	world_down(&w);
}

void test_sock_lb_udp4_connected(void)
{
	struct world w;
	int u = -1, c = -1;
	char peer[80], buf[16];

	if (!world_up(&w, false))
		goto out;
	u = fx_listen(SOCK_DGRAM, be_ip4[0], 5353);
	if (!put_service(&w, VIP4, 53, SL_IPPROTO_UDP, 12, be_ip4, (uint16_t[]){ 5353 }, 1, 0, 0))
		goto out;
	c = fx_connect(AF_INET, SOCK_DGRAM, VIP4, 53);
	if (!ASSERT_GE(c, 0, "connect UDP to VIP"))
		goto out;
	ASSERT_STREQ(fx_peer(c, peer, sizeof(peer)), VIP4 ":53", "getpeername shows the VIP");
	ASSERT_EQ(send(c, "hi", 2, 0), 2, "send");
	struct pollfd p = { .fd = u, .events = POLLIN };
	ASSERT_EQ(poll(&p, 1, 1000), 1, "backend got it");
	ASSERT_EQ(recv(u, buf, sizeof(buf), 0), 2, "recv at backend");
out:
	if (u >= 0)
		close(u);
	if (c >= 0)
		close(c);
	world_down(&w);
}

void test_sock_lb_tcp6_spread(void)
{
	struct world w;
	int hits[N_BE] = { 0 };

	if (!world_up(&w, true))
		goto out;
	if (!put_service(&w, VIP6, 80, SL_IPPROTO_TCP, 21, be_ip6, be_ports, N_BE, 0, 0))
		goto out;
	if (!connect_many(&w, AF_INET6, VIP6, 80, 90, hits, "[" VIP6 "]:80"))
		goto out;
	for (int i = 0; i < N_BE; i++)
		ASSERT_GE(hits[i], 10, "every IPv6 backend gets a share");
out:
	world_down(&w);
}

/* An IPv6 socket connecting to ::ffff:<IPv4 VIP> is served by the IPv4 Service. */
void test_sock_lb_v4mapped(void)
{
	struct world w;
	int hits[N_BE] = { 0 };

	if (!world_up(&w, false))
		goto out;
	/* Backends listen on IPv4; a dual-stack socket reaches them v4-mapped. */
	if (!put_service(&w, VIP4, 80, SL_IPPROTO_TCP, 7, be_ip4, be_ports, N_BE, 0, 0))
		goto out;
	if (!connect_many(&w, AF_INET6, VIP4, 80, 30, hits, "[::ffff:" VIP4 "]:80"))
		goto out;
	ASSERT_GE(counter(&w, SL_CNT_LB_V4MAPPED), 30, "v4-mapped counted");
out:
	world_down(&w);
}

/* The agent goes away and comes back: pinned links keep translating while it is
 * gone, and the new loader reuses the maps with their content. */
void test_sock_lb_restart_keeps_datapath(void)
{
	struct world w;
	struct loader_opts o;
	int hits[N_BE] = { 0 };
	const struct loader_prog_info *pi;

	if (!world_up(&w, false))
		goto out;
	if (!put_service(&w, VIP4, 80, SL_IPPROTO_TCP, 7, be_ip4, be_ports, N_BE, 0, 0))
		goto out;
	ASSERT_FALSE(loader_reused_pins(w.ld), "first start pins fresh maps");
	loader_free(w.ld);
	w.ld = NULL;
	if (!connect_many(&w, AF_INET, VIP4, 80, 10, hits, VIP4 ":80"))
		goto out;
	o = (struct loader_opts){ .bpffs_root = w.fx.bpffs, .cgroup = w.fx.cgroup };
	if (!ASSERT_OK(loader_open(&w.ld, &o), "loader_open again"))
		goto out;
	ASSERT_TRUE(loader_reused_pins(w.ld), "second start reuses the pins");
	ASSERT_EQ(loader_programs(w.ld, &pi), 10, "10 programs attached (sock_lb's 8, sockops, sockmap_msg)");
	w.svc_fd = loader_map_fd(w.ld, SL_MAP_SVC);
	if (!connect_many(&w, AF_INET, VIP4, 80, 10, hits, VIP4 ":80"))
		goto out;
	ASSERT_EQ(fx_sh("test $(ls %s/%s | wc -l) -eq 10", w.fx.bpffs, SL_LINKS_DIR), 0,
		  "10 pinned links, not 20 (the sk_msg link too is reused)");
	/* Only one program per hook is attached at the cgroup. */
	ASSERT_EQ(fx_sh("test $(bpftool cgroup show %s | grep -c sock_lb_connec) -eq 2", w.fx.cgroup), 0,
		  "one connect4 and one connect6 attached");
out:
	world_down(&w);
}

void test_sock_lb_uninstall_detaches(void)
{
	struct world w;
	int fd;

	if (!world_up(&w, false))
		goto out;
	if (!put_service(&w, VIP4, 80, SL_IPPROTO_TCP, 7, be_ip4, be_ports, N_BE, 0, 0))
		goto out;
	loader_free(w.ld);
	w.ld = NULL;
	ASSERT_OK(loader_uninstall(&(struct loader_opts){ .bpffs_root = w.fx.bpffs }), "uninstall");
	ASSERT_EQ(fx_sh("test -e %s", w.fx.bpffs), 1, "no pins left");
	ASSERT_EQ(fx_sh("bpftool cgroup show %s | grep -q sock_lb", w.fx.cgroup), 1, "nothing attached");
	fd = fx_connect(AF_INET, SOCK_STREAM, VIP4, 80);
	ASSERT_LE(fd, -1, "VIP no longer translated");
	if (fd >= 0)
		close(fd);
out:
	world_down(&w);
}
