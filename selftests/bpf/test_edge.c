// SPDX-License-Identifier: Apache-2.0
/* test_edge.c - edge (XDP on the node uplink): ingress NetworkPolicy drops
 * before an skb exists.
 *
 * Crafted frames through BPF_PROG_TEST_RUN with the scenario of
 * selftests/lib/polmap.h (IPv4 and its IPv6 twin): XDP_DROP for what
 * pod_ingress would drop, XDP_PASS for the rest, and a pass moves no counter
 * at all (pod_ingress counts it when it reaches the pod). pod_egress shares
 * the maps, so a request it lets out makes the reply pass edge.
 * Real traffic: two throwaway network namespaces joined by a veth, edge
 * attached natively on the receiving end, UDP datagrams and TCP connects to
 * an allowed and a denied port.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sluice/abi.h>
#include <sluice/counters.h>

#include "edge.skel.h"
#include "lib/fixture.h"
#include "lib/pkt.h"
#include "lib/polmap.h"
#include "lib/test.h"
#include "pod_egress.skel.h"

#define XDP_DROP_ 1
#define XDP_PASS_ 2

enum want { PASS, DROP, EG_OK /* a pod_egress row: the request that opens a flow */ };

struct ecase {
	const char *desc;
	enum want want;
	struct pkt_opts pkt;
	uint32_t slot;		/* DROP: the deny slot */
};

#define TCP(s, sp, d, dp, fl) .src = s, .dst = d, .sport = sp, .dport = dp, .flags = fl
#define UDP(s, sp, d, dp) .src = s, .dst = d, .sport = sp, .dport = dp, .proto = PKT_UDP
#define SYN PKT_SYN
#define S PM_S
#define E PM_E
#define O PM_O
#define C PM_C
#define D PM_D
#define W PM_W
#define N PM_N

static const struct ecase cases[] = {
	{ .desc = "allowed SYN passes", PASS, { TCP(C, 40000, S, 80, SYN) } },
	{ .desc = "denied SYN (port) is dropped", DROP, { TCP(C, 40000, S, 81, SYN) }, 100 },
	{ .desc = "denied SYN (peer) is dropped", DROP, { TCP(W, 40000, S, 80, SYN) }, 100 },
	{ .desc = "ACK to a denied port passes", PASS, { TCP(C, 40000, S, 81, PKT_ACK) } },
	{ .desc = "SYN-ACK to a denied port passes", PASS, { TCP(C, 40000, S, 81, SYN | PKT_ACK) } 
	  },
	{ .desc = "RST to a denied port passes", PASS, { TCP(C, 40000, S, 81, PKT_RST) } },
	{ .desc = "any-peer rule", PASS, { TCP(W, 40000, S, 8443, SYN) } },
	{ .desc = "port prefix: first port", PASS, { TCP(C, 40000, S, 4096, SYN) } },
	{ .desc = "port prefix: last port", PASS, { TCP(C, 40000, S, 4111, SYN) } },
	{ .desc = "port prefix: one below", DROP, { TCP(C, 40000, S, 4095, SYN) }, 100 },
	{ .desc = "port prefix: one past", DROP, { TCP(C, 40000, S, 4112, SYN) }, 100 },
	{ .desc = "ipBlock: inside", PASS, { TCP("192.168.50.5", 40000, S, 443, SYN) } },
	{ .desc = "ipBlock: first of the except",
	  DROP, { TCP("192.168.50.16", 40000, S, 443, SYN) }, 100 },
	{ .desc = "ipBlock: last of the except", DROP, { TCP("192.168.50.31", 40000, S, 443, SYN) },
	  100 },
	{ .desc = "ipBlock: one past the except",
	  PASS, { TCP("192.168.50.32", 40000, S, 443, SYN) } },
	{ .desc = "ipBlock: outside", DROP, { TCP("192.168.51.1", 40000, S, 443, SYN) }, 100 },
	{ .desc = "UDP allowed", PASS, { UDP(C, 40000, S, 53) } },
	{ .desc = "UDP denied", DROP, { UDP(C, 40000, S, 54) }, 100 },
	{ .desc = "UDP every-port rule", PASS, { UDP(D, 40000, S, 9999) } },
	{ .desc = "every UDP port is not every TCP port", DROP, { TCP(D, 40000, S, 9999, SYN) },
	  100 },
	{ .desc = "SYN behind IP options, allowed",
	  PASS, { TCP(C, 40000, S, 80, SYN), .ip4_options = 8 } },
	{ .desc = "SYN behind 40 bytes of IP options, denied",
	  DROP, { TCP(C, 40000, S, 81, SYN), .ip4_options = 40 }, 100 },
	{ .desc = "first fragment, denied", DROP, { UDP(C, 40000, S, 54), .more_frags = 1 }, 100 },
	{ .desc = "first fragment, allowed", PASS, { UDP(C, 40000, S, 53), .more_frags = 1 } },
	{ .desc = "later fragment passes",
	  PASS, { UDP(C, 40000, S, 54), .ip4_frag_off = 100, .more_frags = 1 } },
	{ .desc = "last fragment passes", PASS, { TCP(C, 40000, S, 81, SYN), .ip4_frag_off = 3 } },
	{ .desc = "TCP header cut passes", PASS, { TCP(C, 40000, S, 81, SYN), .truncate = 8 } },
	{ .desc = "UDP header cut passes", PASS, { UDP(C, 40000, S, 54), .truncate = 4 } },
	{ .desc = "IP options cut pass",
	  PASS, { TCP(C, 40000, S, 81, SYN), .ip4_options = 40, .truncate = 40 } },
	{ .desc = "ICMP passes", PASS, { .src = W, .dst = S, .proto = 1 } },
	{ .desc = "HBONE to an enrolled isolated pod passes",
	  PASS, { TCP(W, 40000, E, 15008, SYN) } },
	{ .desc = "other ports of the enrolled pod are dropped",
	  DROP, { TCP(W, 40000, E, 80, SYN) }, 300 },
	{ .desc = "UDP to 15008 of the enrolled pod is dropped", DROP, { UDP(W, 40000, E, 15008) },
	  300 },
	{ .desc = "15008 of a pod not enrolled is dropped", DROP, { TCP(W, 40000, S, 15008, SYN) },
	  100 },
	{ .desc = "pod not isolated for ingress", PASS, { TCP(W, 40000, O, 80, SYN) } },
	{ .desc = "address under no policy", PASS, { TCP(W, 40000, PM_NOPOL, 80, SYN) } },
	{ .desc = "C's request out (pod_egress)", EG_OK, { UDP(C, 40000, N, 53) } },
	{ .desc = "its reply passes", PASS, { UDP(N, 53, C, 40000) } },
	{ .desc = "a reply to another port is dropped", DROP, { UDP(N, 53, C, 40001) }, 200 },
	{ .desc = "a reply from another port is dropped", DROP, { UDP(N, 54, C, 40000) }, 200 },
	{ .desc = "a reply from another host is dropped", DROP, { UDP(W, 53, C, 40000) }, 200 },
	{ .desc = "ingress UDP allowed by C's rule", PASS, { UDP(D, 6000, C, 5000) } },
};

struct world {
	struct edge *edge;
	struct pod_egress *eg;
	struct pm_fds m;
};

static void world_close(struct world *w)
{
	pod_egress__destroy(w->eg);
	edge__destroy(w->edge);
	memset(w, 0, sizeof(*w));
}

/* edge and pod_egress, unpinned, one set of maps (edge's), with the scenario. */
static bool world_open(struct world *w)
{
	memset(w, 0, sizeof(*w));
	if (!test_need_root())
		return false;
	w->edge = edge__open();
	w->eg = pod_egress__open();
	if (!ASSERT_OK_PTR(w->edge, "open edge") || !ASSERT_OK_PTR(w->eg, "open pod_egress"))
		return false;
	pm_unpin(w->edge->obj);
	pm_unpin(w->eg->obj);
	return ASSERT_OK(edge__load(w->edge), "load edge") &&
	       ASSERT_OK(pm_share(w->edge->obj, w->eg->obj), "share maps") &&
	       ASSERT_OK(pod_egress__load(w->eg), "load pod_egress") &&
	       ASSERT_OK(pm_fds_get(w->edge->obj, &w->m), "map fds") &&
	       ASSERT_OK(pm_scenario(&w->m, false), "scenario v4") &&
	       ASSERT_OK(pm_scenario(&w->m, true), "scenario v6");
}

static int run_frame(int prog, const void *data, size_t len, int *retval)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = data, .data_size_in = (uint32_t)len,
		    .repeat = 1);
	int err = bpf_prog_test_run_opts(prog, &o);

	*retval = (int)o.retval;
	return err;
}

static bool same_addr(const struct sl_addr *a, const char *ip)
{
	struct sl_addr b;

	return pm_addr(ip, &b) >= 0 && !memcmp(a, &b, sizeof(b));
}

/* Runs one frame through edge; checks the verdict, that a pass moves no
 * counter and no slot, and that a drop moves exactly the deny ones and
 * writes one event. */
static void check_frame(struct world *w, struct pm_events *ev, const void *data, size_t len,
			enum want want, uint32_t slot, const struct pkt_opts *o, const char *desc)
{
	uint64_t before[SL_CNT_MAX], after[SL_CNT_MAX], total0, slot0;
	int prog = bpf_program__fd(w->edge->progs.edge_xdp), ret;

	pm_events_drain(ev);
	pm_metrics(&w->m, before, SL_CNT_MAX);
	total0 = pm_stat_total(&w->m);
	slot0 = slot ? pm_stat(&w->m, slot) : 0;
	if (!ASSERT_OK(run_frame(prog, data, len, &ret), desc))
		return;
	pm_metrics(&w->m, after, SL_CNT_MAX);
	ASSERT_EQ(ret, want == DROP ? XDP_DROP_ : XDP_PASS_, desc);
	for (unsigned int k = 0; k < SL_CNT_MAX; k++) {
		char what[200];

		snprintf(what, sizeof(what), "%s: counter %u", desc, k);
		ASSERT_EQ(after[k] - before[k], want == DROP && k == SL_CNT_POL_DENY ? 1 : 0, what);
	}
	ASSERT_EQ(pm_stat_total(&w->m) - total0, want == DROP ? 1 : 0, desc);
	if (slot)
		ASSERT_EQ(pm_stat(&w->m, slot) - slot0, 1, desc);
	if (!ASSERT_EQ(pm_events_drain(ev), want == DROP ? 1 : 0, desc) || want != DROP || !o)
		return;
	ASSERT_TRUE(same_addr(&ev->ev[0].saddr, o->src), desc);
	ASSERT_TRUE(same_addr(&ev->ev[0].daddr, o->dst), desc);
	ASSERT_EQ(ntohs(ev->ev[0].sport), o->sport, desc);
	ASSERT_EQ(ntohs(ev->ev[0].dport), o->dport, desc);
	ASSERT_EQ(ev->ev[0].proto, o->proto ? o->proto : PKT_TCP, desc);
	ASSERT_EQ(ev->ev[0].family, strchr(o->src, ':') ? SL_AF_INET6 : SL_AF_INET, desc);
	ASSERT_EQ(ev->ev[0].dir, SL_DIR_INGRESS, desc);
	ASSERT_EQ(ev->ev[0].hook, SL_HOOK_XDP, desc);
	ASSERT_EQ(ev->ev[0].slot, slot, desc);
}

void test_edge_packets(void)
{
	struct pm_events ev = { 0 };
	struct world w;

	if (!world_open(&w) ||
	    !ASSERT_OK(pm_events_open(&ev, &w.m), "ring buffer"))
		goto out;
	for (int v6 = 0; v6 < 2; v6++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			const struct ecase *c = &cases[i];
			struct pkt_opts o = c->pkt;
			char desc[160];
			struct pkt p;
			int ret;

			if (v6)
				pm_to_v6(&c->pkt, &o);
			snprintf(desc, sizeof(desc), "%s: %s", v6 ? "v6" : "v4", c->desc);
			if (!ASSERT_OK(pkt_build(&p, &o), desc))
				continue;
			if (c->want == EG_OK) {
				int eg = bpf_program__fd(w.eg->progs.pod_egress_tc);

				if (ASSERT_OK(run_frame(eg, p.data, p.len, &ret), desc))
					ASSERT_EQ(ret, 0 /* TC_ACT_OK */, desc);
				continue;
			}
			check_frame(&w, &ev, p.data, p.len, c->want, c->slot, &o, desc);
		}
	}
	printf("%zu cases, IPv4 and IPv6\n", sizeof(cases) / sizeof(cases[0]));
out:
	pm_events_close(&ev);
	world_close(&w);
}

/* Frames XDP takes that the TC test runner refuses: cut inside the
 * Ethernet, IPv4 or IPv6 header; and frames that are not IP. All pass. */
void test_edge_short_and_other_frames(void)
{
	static const struct pkt_opts full[] = {
		{ TCP(C, 40000, S, 81, SYN) },
		{ TCP("fd00:20::5", 40000, "fd00:10::10", 81, SYN) },
	};
	struct pm_events ev = { 0 };
	int refused = 0, run = 0;
	struct world w;

	if (!world_open(&w) ||
	    !ASSERT_OK(pm_events_open(&ev, &w.m), "ring buffer"))
		goto out;
	for (size_t i = 0; i < 2; i++) {
		size_t iplen = i ? 40 : 20;
		struct pkt p;

		if (!ASSERT_OK(pkt_build(&p, &full[i]), "build"))
			continue;
		for (size_t len = 0; len < 14 + iplen; len++) {
			int prog = bpf_program__fd(w.edge->progs.edge_xdp), ret, err;
			char desc[96];

			snprintf(desc, sizeof(desc), "%s frame of %zu bytes", i ? "IPv6" : "IPv4",
				 len);
			err = run_frame(prog, p.data, len, &ret);
			if (err == -EINVAL) { /* the runner wants an Ethernet header, at least */
				ASSERT_LE(len, 13, desc);
				refused++;
				continue;
			}
			run++;
			check_frame(&w, &ev, p.data, len, PASS, 0, NULL, desc);
		}
		/* The same denied SYN as ARP, as 802.1Q, as an unknown ethertype. */
		static const uint8_t types[][2] = { { 0x08, 0x06 }, { 0x81, 0x00 }, { 0x88, 0xb5 } };

		for (size_t t = 0; t < 3; t++) {
			struct pkt q = p;
			char desc[96];

			q.data[12] = types[t][0];
			q.data[13] = types[t][1];
			snprintf(desc, sizeof(desc), "%s denied SYN as ethertype %02x%02x",
				 i ? "IPv6" : "IPv4", types[t][0], types[t][1]);
			check_frame(&w, &ev, q.data, q.len, PASS, 0, NULL, desc);
		}
	}
	printf("short frames: %d run (all passed), %d refused by BPF_PROG_TEST_RUN\n", run,
	       refused);
out:
	pm_events_close(&ev);
	world_close(&w);
}

/* ---- real traffic over a veth between two throwaway network namespaces ---- */

#define VETH_A "sl-edge-a"	/* the sender's end, in the test's own netns */
#define VETH_B "sl-edge-b"	/* the receiver's end: edge is attached here */
#define MAC_A "02:51:00:00:00:01"
#define MAC_B "02:51:00:00:00:02"
#define IP4_A "10.251.0.1"
#define IP4_B "10.251.0.2"
#define IP6_A "fd00:251::1"
#define IP6_B "fd00:251::2"
#define PORT_UDP_OK 7001
#define PORT_UDP_DENY 7002
#define PORT_TCP_OK 7101
#define PORT_TCP_DENY 7102

/* The receiver's netns is held by a child process that lives until the
 * pipe to it closes, so it goes away with this test however it ends (the
 * runner kills the test's process group; the child also dies with it). */
struct peer_ns {
	pid_t pid;
	int hold;		/* write end: closing it ends the child */
	int ns_b;		/* the receiver's netns */
	int ns_a;		/* the test's own */
};

static bool peer_ns_open(struct peer_ns *p)
{
	int hold[2], ready[2];
	char c, path[64];

	memset(p, 0, sizeof(*p));
	p->pid = -1;
	p->hold = p->ns_a = p->ns_b = -1;
	if (!ASSERT_OK(pipe2(hold, O_CLOEXEC) || pipe2(ready, O_CLOEXEC) ? -errno : 0, "pipes"))
		return false;
	p->pid = fork();
	if (p->pid == 0) {
		close(hold[1]);
		close(ready[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		c = unshare(CLONE_NEWNET) ? 'e' : 'k';
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		while (read(hold[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(hold[0]);
	close(ready[1]);
	p->hold = hold[1];
	if (p->pid < 0 || read(ready[0], &c, 1) != 1 || c != 'k') {
		close(ready[0]);
		ASSERT_TRUE(false, "receiver netns");
		return false;
	}
	close(ready[0]);
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)p->pid);
	p->ns_b = open(path, O_RDONLY | O_CLOEXEC);
	p->ns_a = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	return ASSERT_GE(p->ns_b, 0, "open netns B") && ASSERT_GE(p->ns_a, 0, "open netns A");
}

static void peer_ns_close(struct peer_ns *p)
{
	if (p->ns_a >= 0)
		setns(p->ns_a, CLONE_NEWNET);
	if (p->ns_b >= 0)
		close(p->ns_b);
	if (p->ns_a >= 0)
		close(p->ns_a);
	if (p->hold >= 0)
		close(p->hold);
	if (p->pid > 0)
		waitpid(p->pid, NULL, 0);
}

static bool in_ns(int fd, const char *what)
{
	return ASSERT_OK(setns(fd, CLONE_NEWNET) ? -errno : 0, what);
}

/* Datagrams that arrive on fd within ms (stops early at want). */
static int udp_count(int fd, int want, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char buf[64];
	int n = 0;

	while (n < want && poll(&pfd, 1, ms) == 1)
		while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
			n++;
	return n;
}

static int udp_send(const char *ip, uint16_t port, int count)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = fx_sockaddr(ip, port, &ss, &len), fd, sent = 0;

	if (fam < 0)
		return fam;
	fd = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	for (int i = 0; i < count; i++)
		sent += sendto(fd, "sluice", 6, 0, (struct sockaddr *)&ss, len) == 6;
	close(fd);
	return sent;
}

static void traffic(struct world *w, struct peer_ns *ns, bool v6)
{
	const char *dst = v6 ? IP6_B : IP4_B, *fam = v6 ? "v6" : "v4";
	int u_ok = -1, u_deny = -1, t_ok = -1, t_deny = -1, fd;
	uint64_t deny0 = pm_metric(&w->m, SL_CNT_POL_DENY), slot0 = pm_stat(&w->m, 100);
	uint64_t total0 = pm_stat_total(&w->m);
	struct pm_events ev;
	char desc[96];
	const int count = 20;

	if (!ASSERT_OK(pm_events_open(&ev, &w->m), "ring buffer"))
		return;
	pm_events_drain(&ev);
	if (!in_ns(ns->ns_b, "enter B"))
		goto out;
	u_ok = fx_listen(SOCK_DGRAM, dst, PORT_UDP_OK);
	u_deny = fx_listen(SOCK_DGRAM, dst, PORT_UDP_DENY);
	t_ok = fx_listen(SOCK_STREAM, dst, PORT_TCP_OK);
	t_deny = fx_listen(SOCK_STREAM, dst, PORT_TCP_DENY);
	if (!in_ns(ns->ns_a, "back to A"))
		goto out;
	if (!ASSERT_GE(u_ok, 0, "udp listener") || !ASSERT_GE(u_deny, 0, "udp listener") ||
	    !ASSERT_GE(t_ok, 0, "tcp listener") || !ASSERT_GE(t_deny, 0, "tcp listener"))
		goto out;

	/* UDP: the denied ones first, so that when the allowed ones are in,
	 * the denied ones would have been too. */
	snprintf(desc, sizeof(desc), "%s: UDP sent", fam);
	ASSERT_EQ(udp_send(dst, PORT_UDP_DENY, count), count, desc);
	ASSERT_EQ(udp_send(dst, PORT_UDP_OK, count), count, desc);
	snprintf(desc, sizeof(desc), "%s: UDP to the allowed port arrives", fam);
	ASSERT_EQ(udp_count(u_ok, count, 2000), count, desc);
	snprintf(desc, sizeof(desc), "%s: UDP to the denied port does not", fam);
	ASSERT_EQ(udp_count(u_deny, 1, 200), 0, desc);
	snprintf(desc, sizeof(desc), "%s: UDP drops counted", fam);
	ASSERT_EQ(pm_metric(&w->m, SL_CNT_POL_DENY) - deny0, count, desc);
	ASSERT_EQ(pm_stat(&w->m, 100) - slot0, count, desc);
	ASSERT_EQ(pm_stat_total(&w->m) - total0, count, desc);
	snprintf(desc, sizeof(desc), "%s: UDP deny events", fam);
	if (ASSERT_EQ(pm_events_drain(&ev), count, desc))
		ASSERT_EQ(ev.ev[0].hook, SL_HOOK_XDP, desc);

	/* TCP: the allowed connect completes; the denied one times out (1 s)
	 * with its SYNs dropped, and nothing reaches the listener. */
	deny0 = pm_metric(&w->m, SL_CNT_POL_DENY);
	fd = fx_connect(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, dst, PORT_TCP_OK);
	snprintf(desc, sizeof(desc), "%s: TCP connect to the allowed port", fam);
	if (ASSERT_GE(fd, 0, desc))
		close(fd);
	ASSERT_EQ(fx_accept_any(&t_ok, 1, 1000), 0, desc);
	fd = fx_connect(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, dst, PORT_TCP_DENY);
	snprintf(desc, sizeof(desc), "%s: TCP connect to the denied port times out", fam);
	if (!ASSERT_EQ(fd, -ETIMEDOUT, desc) && fd >= 0)
		close(fd);
	ASSERT_EQ(fx_accept_any(&t_deny, 1, 100), -1, desc);
	snprintf(desc, sizeof(desc), "%s: TCP SYN drops counted", fam);
	ASSERT_GE(pm_metric(&w->m, SL_CNT_POL_DENY) - deny0, 1, desc);
	snprintf(desc, sizeof(desc), "%s: allowed traffic moved no rule slot", fam);
	ASSERT_EQ(pm_stat(&w->m, 1) + pm_stat(&w->m, 2), 0, desc);
	printf("%s: %d UDP datagrams and %llu SYNs dropped in XDP\n", fam, count,
	       (unsigned long long)(pm_metric(&w->m, SL_CNT_POL_DENY) - deny0));
out:
	in_ns(ns->ns_a, "back to A");
	if (u_ok >= 0)
		close(u_ok);
	if (u_deny >= 0)
		close(u_deny);
	if (t_ok >= 0)
		close(t_ok);
	if (t_deny >= 0)
		close(t_deny);
	pm_events_close(&ev);
}

void test_edge_veth(void)
{
	struct peer_ns ns = { .pid = -1, .hold = -1, .ns_a = -1, .ns_b = -1 };
	struct edge *skel = NULL;
	bool attached = false, veth = false;
	int ifindex = 0, err = 0;
	struct world w = { 0 };

	if (!test_need_root())
		return;
	/* The sender: this test process in a fresh netns of its own. */
	if (!ASSERT_OK(unshare(CLONE_NEWNET) ? -errno : 0, "unshare net") || !peer_ns_open(&ns))
		goto out;
	veth = !fx_sh("ip link add " VETH_A " address " MAC_A " type veth peer name " VETH_B
		      " address " MAC_B " netns %d",
		      (int)ns.pid);
	if (!ASSERT_TRUE(veth, "veth pair"))
		goto out;
	err |= fx_sh("ip link set lo up && ip link set " VETH_A " up && ip addr add " IP4_A
		     "/24 dev " VETH_A " && ip -6 addr add " IP6_A "/64 dev " VETH_A " nodad"
		     " && ip neigh replace " IP4_B " lladdr " MAC_B " dev " VETH_A " nud permanent"
		     " && ip -6 neigh replace " IP6_B " lladdr " MAC_B " dev " VETH_A
		     " nud permanent");
	if (!in_ns(ns.ns_b, "enter B"))
		goto out;
	err |= fx_sh("ip link set lo up && ip link set " VETH_B " up && ip addr add " IP4_B
		     "/24 dev " VETH_B " && ip -6 addr add " IP6_B "/64 dev " VETH_B " nodad"
		     " && ip neigh replace " IP4_A " lladdr " MAC_A " dev " VETH_B " nud permanent"
		     " && ip -6 neigh replace " IP6_A " lladdr " MAC_A " dev " VETH_B
		     " nud permanent");
	ifindex = (int)if_nametoindex(VETH_B);
	if (!in_ns(ns.ns_a, "back to A") || !ASSERT_OK(err, "addresses") ||
	    !ASSERT_GE(ifindex, 1, "veth ifindex"))
		goto out;

	skel = edge__open();
	if (!ASSERT_OK_PTR(skel, "open edge"))
		goto out;
	pm_unpin(skel->obj);
	w.edge = skel;
	if (!ASSERT_OK(edge__load(skel), "load edge") ||
	    !ASSERT_OK(pm_fds_get(skel->obj, &w.m), "map fds"))
		goto out;
	/* The receiver is a pod isolated for ingress: UDP 7001 and TCP 7101 allowed from anyone. */
	err = pm_put_ep(&w.m, IP4_B, 1, SL_EP_F_ISO_IN | SL_EP_F_NO_STEER, 100, 101);
	err = err ?: pm_put_ep(&w.m, IP6_B, 1, SL_EP_F_ISO_IN | SL_EP_F_NO_STEER, 100, 101);
	err = err ?: pm_put_rule(&w.m, 1, SL_POLID_ANY, SL_DIR_INGRESS, PKT_UDP, PORT_UDP_OK, 16,
				 1);
	err = err ?: pm_put_rule(&w.m, 1, SL_POLID_ANY, SL_DIR_INGRESS, PKT_TCP, PORT_TCP_OK, 16,
				 2);
	if (!ASSERT_OK(err, "fill maps"))
		goto out;

	if (!in_ns(ns.ns_b, "enter B"))
		goto out;
	err = bpf_xdp_attach(ifindex, bpf_program__fd(skel->progs.edge_xdp), XDP_FLAGS_DRV_MODE,
			     NULL);
	attached = !err;
	if (attached) {
		LIBBPF_OPTS(bpf_xdp_query_opts, q);

		err = bpf_xdp_query(ifindex, 0, &q);
		ASSERT_OK(err, "xdp query");
		ASSERT_EQ(q.attach_mode, XDP_ATTACHED_DRV, "attached in native (driver) mode");
	}
	if (!in_ns(ns.ns_a, "back to A") || !ASSERT_TRUE(attached, "attach edge_xdp (native)"))
		goto out;

	traffic(&w, &ns, false);
	traffic(&w, &ns, true);
out:
	if (attached && in_ns(ns.ns_b, "enter B")) {
		ASSERT_OK(bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, NULL), "detach");
		in_ns(ns.ns_a, "back to A");
	}
	if (veth)
		fx_sh("ip link del " VETH_A " 2>/dev/null");
	peer_ns_close(&ns);
	edge__destroy(skel);
}

/* ns/packet from BPF_PROG_TEST_RUN, drained between batches (see test_policy_tc). */

void test_edge_rule_scale(void)
{
	/* Rule entries and peer identities (each of IPv4 and IPv6). */
	static const struct {
		unsigned int rules, ids;
	} sizes[] = { { 10, 10 }, { 10000, 10 }, { 10000, 10000 } };
	/* half of policy_tc's: an XDP test run costs milliseconds to set up,
	 * and this test times four paths */
	const int total = 100000;
	struct pm_events ev = { 0 };
	struct world w;
	int prog;

	if (!world_open(&w) ||
	    !ASSERT_OK(pm_events_open(&ev, &w.m), "ring buffer"))
		goto out;
	prog = bpf_program__fd(w.edge->progs.edge_xdp);
	printf("edge_xdp ns/packet (BPF_PROG_TEST_RUN, %d runs in batches of 2000)\n", total);
	printf("%-7s %-7s %-6s %12s %12s %12s\n", "rules", "ids", "family", "allowed SYN", "denied SYN",
	       "denied UDP");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		/* The scenario has PM_SCENARIO_RULES rule entries; fillers make up the rest. */
		if (!ASSERT_OK(pm_fill_rules(&w.m, 0, sizes[s].rules - PM_SCENARIO_RULES),
			       "fill rules") ||
		    !ASSERT_OK(pm_fill_ids(&w.m, 0, sizes[s].ids), "fill identities"))
			goto out;
		for (int v6 = 0; v6 < 2; v6++) {
			const struct pkt_opts a4 = { TCP(C, 40000, S, 80, SYN) },
					      d4 = { TCP(C, 40000, S, 81, SYN) },
					      u4 = { UDP(C, 40000, S, 9000) };
			struct pkt_opts ao = a4, dq = d4, uo = u4;
			struct pkt a, d, u;
			double na, nd, nu;

			if (v6) {
				pm_to_v6(&a4, &ao);
				pm_to_v6(&d4, &dq);
				pm_to_v6(&u4, &uo);
			}
			if (!ASSERT_OK(pkt_build(&a, &ao), "build") ||
			    !ASSERT_OK(pkt_build(&d, &dq), "build") ||
			    !ASSERT_OK(pkt_build(&u, &uo), "build"))
				goto out;
			for (size_t k = 0; k < PM_PATHS; k++) {
				if (!ASSERT_OK(pm_put_ep(&w.m, v6 ? pm_v6(S) : S, 1,
							 SL_EP_F_ISO_IN | SL_EP_F_NO_STEER | pm_paths[k].flags, 100, 101),
					       "endpoint flags"))
					goto out;
				na = pm_ns_per_packet(prog, &a, &ev, XDP_PASS_, total);
				nd = pm_ns_per_packet(prog, &d, &ev, XDP_DROP_, total);
				nu = pm_ns_per_packet(prog, &u, &ev, XDP_DROP_, total);
				printf("%-7u %-7u %-6s %12.1f %12.1f %12.1f  (%s)\n", sizes[s].rules,
				       sizes[s].ids, v6 ? "IPv6" : "IPv4", na, nd, nu, pm_paths[k].name);
			}
		}
	}
	ASSERT_EQ(pm_stat(&w.m, 1), 0, "allowed SYNs are not counted by edge");
	ASSERT_EQ(pm_stat(&w.m, 100), 2 * 6ULL * PM_PATHS * total, "denied SYNs and datagrams counted");
out:
	pm_events_close(&ev);
	world_close(&w);
}
