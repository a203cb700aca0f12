// SPDX-License-Identifier: Apache-2.0
/* test_policy_tc.c - NetworkPolicy in pod_ingress and pod_egress on crafted
 * packets (BPF_PROG_TEST_RUN), with the policy maps filled by hand.
 *
 * Both objects are loaded without pins and share one set of maps, so an
 * egress request recorded by pod_egress lets its reply through pod_ingress
 * as on a real pod. Every case runs once with IPv4 and once with the same
 * scenario in IPv6 (addresses mapped, IPv4 options become a hop-by-hop
 * header, an IPv4 fragment offset an IPv6 fragment header), and checks the
 * verdict, which policy counter moved, which sl_polstat_v1 slot moved, and
 * the deny event.
 *
 * The scenario: selftests/lib/polmap.h.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <sluice/abi.h>
#include <sluice/counters.h>

#include "lib/pkt.h"
#include "lib/polmap.h"
#include "lib/test.h"
#include "loader.h"
#include "pod_egress.skel.h"
#include "pod_ingress.skel.h"

#define TC_OK 0
#define TC_SHOT 2

enum hook { IN, EG };

/* The one policy counter a case moves (or none); the others must not move. */
enum cnt { C_NONE, C_ALLOW, C_DENY, C_DROP, C_REPLY, C_HBONE, C_FRAG, C_BAD_IN, C_BAD_EG, C__N };
static const struct {
	unsigned int index;
	const char *name;
} cnt_of[C__N] = {
	[C_ALLOW] = { SL_CNT_POL_ALLOW, "policy_allowed" },
	[C_DENY] = { SL_CNT_POL_DENY, "policy_denied" },
	[C_DROP] = { SL_CNT_POL_DENY, "policy_denied (no rule, no event)" },
	[C_REPLY] = { SL_CNT_POL_REPLY, "policy_reply" },
	[C_HBONE] = { SL_CNT_POL_HBONE, "policy_hbone_passed" },
	[C_FRAG] = { SL_CNT_POL_FRAGMENT, "policy_fragment" },
	[C_BAD_IN] = { SL_CNT_IN_BAD_PACKET, "ingress_bad_packet" },
	[C_BAD_EG] = { SL_CNT_EG_BAD_PACKET, "egress_bad_packet" },
};

struct pcase {
	const char *desc;
	enum hook hook;
	struct pkt_opts pkt;
	enum cnt cnt;
	uint32_t slot;		/* the sl_polstat_v1 slot that moves by one, 0: none */
	uint32_t mark;		/* skb->mark (ctx_in) */
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
#define NOPOL PM_NOPOL

static const struct pcase cases[] = {
	/* ingress: rules by identity, any peer, port prefix, ipBlock */
	{ .desc = "allowed SYN passes and counts its rule", IN, { TCP(C, 40000, S, 80, SYN) },
	  C_ALLOW, 1 },
	{ .desc = "denied SYN (other port) is dropped", IN, { TCP(C, 40000, S, 81, SYN) },
	  C_DENY, 100 },
	{ .desc = "denied SYN (peer without a rule) is dropped", IN, { TCP(W, 40000, S, 80, SYN) },
	  C_DENY, 100 },
	{ .desc = "ACK to a denied port passes", IN, { TCP(C, 40000, S, 81, PKT_ACK) }, C_NONE, 0 },
	{ .desc = "SYN-ACK to a denied port passes", IN, { TCP(C, 40000, S, 81, SYN | PKT_ACK) },
	  C_NONE, 0 },
	{ .desc = "RST to a denied port passes", IN, { TCP(C, 40000, S, 81, PKT_RST) }, C_NONE, 0 },
	{ .desc = "any-peer rule: world peer", IN, { TCP(W, 40000, S, 8443, SYN) }, C_ALLOW, 2 },
	{ .desc = "any-peer rule: peer with an identity", IN, { TCP(C, 40000, S, 8443, SYN) },
	  C_ALLOW, 2 },
	{ .desc = "port prefix: first port", IN, { TCP(C, 40000, S, 4096, SYN) }, C_ALLOW, 3 },
	{ .desc = "port prefix: last port", IN, { TCP(C, 40000, S, 4111, SYN) }, C_ALLOW, 3 },
	{ .desc = "port prefix: one below", IN, { TCP(C, 40000, S, 4095, SYN) }, C_DENY, 100 },
	{ .desc = "port prefix: one past", IN, { TCP(C, 40000, S, 4112, SYN) }, C_DENY, 100 },
	{ .desc = "port prefix: other peer", IN, { TCP(D, 40000, S, 4100, SYN) }, C_DENY, 100 },
	{ .desc = "ipBlock: inside the block", IN, { TCP("192.168.50.5", 40000, S, 443, SYN) },
	  C_ALLOW, 4 },
	{ .desc = "ipBlock: first of the except", IN, { TCP("192.168.50.16", 40000, S, 443, SYN) },
	  C_DENY, 100 },
	{ .desc = "ipBlock: last of the except", IN, { TCP("192.168.50.31", 40000, S, 443, SYN) },
	  C_DENY, 100 },
	{ .desc = "ipBlock: one past the except", IN, { TCP("192.168.50.32", 40000, S, 443, SYN) },
	  C_ALLOW, 4 },
	{ .desc = "ipBlock: outside the block", IN, { TCP("192.168.51.1", 40000, S, 443, SYN) },
	  C_DENY, 100 },
	/* ingress UDP */
	{ .desc = "UDP allowed", IN, { UDP(C, 40000, S, 53) }, C_ALLOW, 5 },
	{ .desc = "UDP denied (port)", IN, { UDP(C, 40000, S, 54) }, C_DENY, 100 },
	{ .desc = "UDP denied (peer)", IN, { UDP(W, 40000, S, 53) }, C_DENY, 100 },
	{ .desc = "UDP every-port rule", IN, { UDP(D, 40000, S, 9999) }, C_ALLOW, 6 },
	{ .desc = "every UDP port is not every TCP port", IN, { TCP(D, 40000, S, 9999, SYN) },
	  C_DENY, 100 },
	/* headers: IP options (v6: hop-by-hop), fragments, truncation */
	{ .desc = "SYN behind IP options, allowed",
	  IN, { TCP(C, 40000, S, 80, SYN), .ip4_options = 8 }, C_ALLOW, 1 },
	{ .desc = "SYN behind 40 bytes of IP options, denied",
	  IN, { TCP(C, 40000, S, 81, SYN), .ip4_options = 40 },
	  C_DENY, 100 },
	{ .desc = "first fragment is policed (denied)",
	  IN, { UDP(C, 40000, S, 54), .more_frags = 1 }, C_DENY, 100 },
	{ .desc = "first fragment is policed (allowed)",
	  IN, { UDP(C, 40000, S, 53), .more_frags = 1 }, C_ALLOW, 5 },
	{ .desc = "first fragment of an allowed SYN is policed",
	  IN, { TCP(C, 40000, S, 80, SYN), .more_frags = 1 }, C_ALLOW, 1 },
	{ .desc = "later UDP fragment passes", IN, { UDP(C, 40000, S, 54), .ip4_frag_off = 100 },
	  C_FRAG, 0 },
	{ .desc = "last TCP fragment passes", IN, { TCP(C, 40000, S, 81, SYN), .ip4_frag_off = 3 },
	  C_FRAG, 0 },
	{ .desc = "TCP header cut passes as bad", IN, { TCP(C, 40000, S, 81, SYN), .truncate = 8 },
	  C_BAD_IN, 0 },
	{ .desc = "UDP header cut passes as bad", IN, { UDP(C, 40000, S, 54), .truncate = 4 },
	  C_BAD_IN, 0 },
	{ .desc = "IP options cut pass as bad",
	  IN, { TCP(C, 40000, S, 81, SYN), .ip4_options = 40, .truncate = 40 },
	  C_BAD_IN, 0 },
	{ .desc = "tiny first fragment (TCP header cut) is dropped",
	  IN, { TCP(C, 40000, S, 81, SYN), .more_frags = 1, .truncate = 12 }, C_DROP, 0 },
	{ .desc = "fragmented SYN to a steered pod is dropped",
	  IN, { TCP(W, 40000, NOPOL, 80, SYN), .more_frags = 1 }, C_DROP, 0 },
	{ .desc = "egress tiny first fragment is dropped",
	  EG, { TCP(C, 40000, W, 80, SYN), .more_frags = 1, .truncate = 12 }, C_DROP, 0 },
	/* HBONE */
	{ .desc = "HBONE to an enrolled isolated pod passes", IN, { TCP(W, 40000, E, 15008, SYN) },
	  C_HBONE, 0 },
	{ .desc = "other ports of the enrolled pod are policed", IN, { TCP(W, 40000, E, 80, SYN) },
	  C_DENY, 300 },
	{ .desc = "UDP to 15008 of the enrolled pod is policed", IN, { UDP(W, 40000, E, 15008) },
	  C_DENY, 300 },
	{ .desc = "15008 of a pod not enrolled is policed", IN, { TCP(W, 40000, S, 15008, SYN) },
	  C_DENY, 100 },
	/* not isolated for ingress, not under policy */
	{ .desc = "pod isolated for egress only: ingress passes", IN, { TCP(W, 40000, O, 80, SYN) },
	  C_NONE, 0 },
	{ .desc = "pod isolated for egress only: UDP in passes", IN, { UDP(W, 40000, O, 53) },
	  C_NONE, 0 },
	{ .desc = "address under no policy passes", IN, { TCP(W, 40000, NOPOL, 80, SYN) },
	  C_NONE, 0 },
	/* egress, and replies both ways */
	{ .desc = "egress UDP allowed (any peer)", EG, { UDP(C, 40000, N, 53) }, C_ALLOW, 7 },
	{ .desc = "its reply passes the isolated ingress", IN, { UDP(N, 53, C, 40000) },
	  C_REPLY, 0 },
	{ .desc = "its reply again (the flow stays)", IN, { UDP(N, 53, C, 40000) }, C_REPLY, 0 },
	{ .desc = "a reply to another port is denied", IN, { UDP(N, 53, C, 40001) }, C_DENY, 200 },
	{ .desc = "a reply from another port is denied", IN, { UDP(N, 54, C, 40000) },
	  C_DENY, 200 },
	{ .desc = "a reply from another host is denied", IN, { UDP(W, 53, C, 40000) },
	  C_DENY, 200 },
	{ .desc = "ingress UDP allowed to C", IN, { UDP(D, 6000, C, 5000) }, C_ALLOW, 10 },
	{ .desc = "its reply passes the isolated egress", EG, { UDP(C, 5000, D, 6000) },
	  C_REPLY, 0 },
	{ .desc = "C's datagram to another port of D is denied", EG, { UDP(C, 5000, D, 6001) },
	  C_DENY, 201 },
	{ .desc = "egress SYN allowed (identity)", EG, { TCP(C, 40000, S, 80, SYN) }, C_ALLOW, 8 },
	{ .desc = "egress SYN denied (port)", EG, { TCP(C, 40000, S, 81, SYN) }, C_DENY, 201 },
	{ .desc = "egress SYN denied (peer)", EG, { TCP(C, 40000, W, 80, SYN) }, C_DENY, 201 },
	{ .desc = "egress ACK passes", EG, { TCP(C, 40000, S, 81, PKT_ACK) }, C_NONE, 0 },
	{ .desc = "egress UDP denied", EG, { UDP(C, 40000, N, 54) }, C_DENY, 201 },
	{ .desc = "egress every-TCP-port rule", EG, { TCP(O, 40000, W, 12345, SYN) }, C_ALLOW, 9 },
	{ .desc = "egress UDP of that pod is denied", EG, { UDP(O, 40000, W, 53) }, C_DENY, 401 },
	{ .desc = "egress of a pod isolated for ingress only passes",
	  EG, { TCP(S, 40000, W, 80, SYN) }, C_NONE, 0 },
	/* the agent's marks */
	{ .desc = "egress with the agent's mark is not policed", EG, { TCP(C, 40000, S, 81, SYN) },
	  C_NONE, 0,
	  SL_MARK_AGENT },
	{ .desc = "egress with the delivery mark is not policed", EG, { TCP(C, 40000, W, 80, SYN) },
	  C_NONE, 0,
	  SL_MARK_DELIVER },
	{ .desc = "the agent's mark under other bits is not policed", EG, { UDP(C, 40000, N, 54) },
	  C_NONE, 0,
	  0x70000 | SL_MARK_AGENT },
	{ .desc = "another mark is policed", EG, { TCP(C, 40000, S, 81, SYN) },
	  C_DENY, 201, 0x53b },
	{ .desc = "egress TCP header cut passes as bad",
	  EG, { TCP(C, 40000, S, 81, SYN), .truncate = 12 }, C_BAD_EG, 0 },
	{ .desc = "egress UDP header cut passes as bad",
	  EG, { UDP(C, 40000, N, 54), .truncate = 1 }, C_BAD_EG, 0 },
	{ .desc = "egress later fragment passes", EG, { UDP(C, 40000, N, 54), .ip4_frag_off = 185 },
	  C_FRAG, 0 },
};

struct world {
	struct pod_ingress *in;
	struct pod_egress *eg;
	struct pm_fds m;
};

static void world_close(struct world *w)
{
	pod_egress__destroy(w->eg);
	pod_ingress__destroy(w->in);
	memset(w, 0, sizeof(*w));
}

/* Both programs, unpinned, one set of maps. In a fresh netns: pod_ingress
 * looks up listeners (steering) in the caller's netns. */
static bool world_open(struct world *w)
{
	memset(w, 0, sizeof(*w));
	if (!test_need_root())
		return false;
	if (!ASSERT_OK(unshare(CLONE_NEWNET) ? -errno : 0, "unshare net"))
		return false;
	w->in = pod_ingress__open();
	w->eg = pod_egress__open();
	if (!ASSERT_OK_PTR(w->in, "open pod_ingress") || !ASSERT_OK_PTR(w->eg, "open pod_egress"))
		return false;
	pm_unpin(w->in->obj);
	pm_unpin(w->eg->obj);
	if (!ASSERT_OK(pod_ingress__load(w->in), "load pod_ingress") ||
	    !ASSERT_OK(pm_share(w->in->obj, w->eg->obj), "share maps") ||
	    !ASSERT_OK(pod_egress__load(w->eg), "load pod_egress") ||
	    !ASSERT_OK(pm_fds_get(w->in->obj, &w->m), "map fds"))
		return false;
	return true;
}

static bool same_addr(const struct sl_addr *a, const char *ip)
{
	struct sl_addr b;

	return pm_addr(ip, &b) >= 0 && !memcmp(a, &b, sizeof(b));
}

static bool scenario(const struct pm_fds *m)
{
	return ASSERT_OK(pm_scenario(m, false), "scenario v4") &&
		ASSERT_OK(pm_scenario(m, true), "scenario v6");
}

static void check_event(const struct sl_polev *ev, const struct pcase *c, const struct pkt_opts *o,
			const char *desc)
{
	ASSERT_TRUE(same_addr(&ev->saddr, o->src), desc);
	ASSERT_TRUE(same_addr(&ev->daddr, o->dst), desc);
	ASSERT_EQ(ntohs(ev->sport), o->sport, desc);
	ASSERT_EQ(ntohs(ev->dport), o->dport, desc);
	ASSERT_EQ(ev->family, strchr(o->src, ':') ? SL_AF_INET6 : SL_AF_INET, desc);
	ASSERT_EQ(ev->proto, o->proto ? o->proto : PKT_TCP, desc);
	ASSERT_EQ(ev->dir, c->hook == IN ? SL_DIR_INGRESS : SL_DIR_EGRESS, desc);
	ASSERT_EQ(ev->hook, c->hook == IN ? SL_HOOK_TC_INGRESS : SL_HOOK_TC_EGRESS, desc);
	ASSERT_EQ(ev->slot, c->slot, desc);
}

static int run_pkt(int prog, const struct pkt *p, uint32_t mark, int *retval)
{
	struct __sk_buff skb = { .mark = mark };
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = p->data, .data_size_in = (uint32_t)p->len,
		    .repeat = 1, .ctx_in = &skb, .ctx_size_in = sizeof(skb));
	int err = bpf_prog_test_run_opts(prog, &o);

	*retval = (int)o.retval;
	return err;
}

static void run_cases(struct world *w, struct pm_events *ev, bool v6)
{
	int prog_in = bpf_program__fd(w->in->progs.pod_ingress_tc);
	int prog_eg = bpf_program__fd(w->eg->progs.pod_egress_tc);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pcase *c = &cases[i];
		uint64_t before[SL_CNT_MAX], after[SL_CNT_MAX], slot0 = 0, total0;
		struct pkt_opts o = c->pkt;
		char desc[160];
		struct pkt p;
		int ret;

		if (v6)
			pm_to_v6(&c->pkt, &o);
		snprintf(desc, sizeof(desc), "%s: %s", v6 ? "v6" : "v4", c->desc);
		if (!ASSERT_OK(pkt_build(&p, &o), desc))
			continue;
		pm_events_drain(ev);
		pm_metrics(&w->m, before, SL_CNT_MAX);
		total0 = pm_stat_total(&w->m);
		if (c->slot)
			slot0 = pm_stat(&w->m, c->slot);
		if (!ASSERT_OK(run_pkt(c->hook == IN ? prog_in : prog_eg, &p, c->mark, &ret), desc))
			continue;
		pm_metrics(&w->m, after, SL_CNT_MAX);
		ASSERT_EQ(ret, c->cnt == C_DENY || c->cnt == C_DROP ? TC_SHOT : TC_OK, desc);
		for (int k = C_ALLOW; k < C__N; k++) {
			char what[200];

			if (k == C_DROP)
				continue;
			snprintf(what, sizeof(what), "%s: %s", desc, cnt_of[k].name);
			ASSERT_EQ(after[cnt_of[k].index] - before[cnt_of[k].index],
				  k == (int)c->cnt || (k == C_DENY && c->cnt == C_DROP) ? 1 : 0, what);
		}
		ASSERT_EQ(pm_stat_total(&w->m) - total0, c->slot ? 1 : 0, desc);
		if (c->slot)
			ASSERT_EQ(pm_stat(&w->m, c->slot) - slot0, 1, desc);
		if (ASSERT_EQ(pm_events_drain(ev), c->cnt == C_DENY ? 1 : 0, desc) &&
		    c->cnt == C_DENY)
			check_event(&ev->ev[0], c, &o, desc);
	}
}

void test_policy_tc_packets(void)
{
	struct pm_events ev = { 0 };
	struct world w;

	if (!world_open(&w))
		goto out;
	if (!scenario(&w.m))
		goto out;
	if (!ASSERT_OK(pm_events_open(&ev, &w.m), "ring buffer"))
		goto out;
	run_cases(&w, &ev, false);
	run_cases(&w, &ev, true);
	/* again with S's port range decided by its list, not the trie */
	if (!ASSERT_OK(pm_put_ep(&w.m, S, 1, SL_EP_F_ISO_IN | SL_EP_F_NO_STEER | SL_EP_F_RANGE_LIST, 100, 101),
		       "S: range list") ||
	    !ASSERT_OK(pm_put_ep(&w.m, pm_v6(S), 1, SL_EP_F_ISO_IN | SL_EP_F_NO_STEER | SL_EP_F_RANGE_LIST, 100,
				 101), "S v6: range list"))
		goto out;
	run_cases(&w, &ev, false);
	run_cases(&w, &ev, true);
	printf("%zu cases, IPv4 and IPv6, S by the LPM trie and by its range list\n", sizeof(cases) / sizeof(cases[0]));
out:
	pm_events_close(&ev);
	world_close(&w);
}

/* Malformed IP and TCP headers (to a denied port, so a parse that went on
 * would drop them): pass, counted bad, nothing policed. */
void test_policy_tc_malformed(void)
{
	static const struct {
		const char *desc;
		struct pkt_opts pkt;
		size_t at;		/* the byte to overwrite */
		uint8_t val;
	} bad[] = {
		{ "IPv4 ihl 4", { TCP(C, 40000, S, 81, SYN) }, 14, 0x44 },
		{ "IPv4 ihl 0", { TCP(C, 40000, S, 81, SYN) }, 14, 0x40 },
		{ "IPv4 version 6 in an IPv4 frame", { TCP(C, 40000, S, 81, SYN) }, 14, 0x65 },
		{ "IPv4 ihl 15 in a 20-byte header", { TCP(C, 40000, S, 81, SYN), .truncate = 20 }, 14, 0x4f },
		{ "IPv4 TCP doff 4", { TCP(C, 40000, S, 81, SYN) }, 14 + 20 + 12, 0x40 },
		{ "IPv6 version 4 in an IPv6 frame", { TCP("fd00:20::5", 40000, "fd00:10::10", 81, SYN) }, 14, 0x40 },
		{ "IPv6 TCP doff 0", { TCP("fd00:20::5", 40000, "fd00:10::10", 81, SYN) }, 14 + 40 + 12, 0x00 },
		{ "IPv6 hop-by-hop header cut", { TCP("fd00:20::5", 40000, "fd00:10::10", 81, SYN), .ip6_hopopts = 1,
						  .truncate = 27 }, 0, 0 },
		{ "IPv6 fragment header cut", { UDP("fd00:20::5", 40000, "fd00:10::10", 54), .ip6_frag = 1,
						.more_frags = 1, .truncate = 12 }, 0, 0 },
	};
	struct world w;

	if (!world_open(&w))
		goto out;
	if (!scenario(&w.m))
		goto out;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int prog[2] = { bpf_program__fd(w.in->progs.pod_ingress_tc),
				bpf_program__fd(w.eg->progs.pod_egress_tc) };
		unsigned int cnt[2] = { SL_CNT_IN_BAD_PACKET, SL_CNT_EG_BAD_PACKET };
		struct pkt p;

		if (!ASSERT_OK(pkt_build(&p, &bad[i].pkt), bad[i].desc))
			continue;
		if (bad[i].at)
			p.data[bad[i].at] = bad[i].val;
		for (int h = 0; h < 2; h++) {
			uint64_t b0 = pm_metric(&w.m, cnt[h]),
				 d0 = pm_metric(&w.m, SL_CNT_POL_DENY);
			char desc[128];
			int ret;

			snprintf(desc, sizeof(desc), "%s: %s", h ? "egress" : "ingress",
				 bad[i].desc);
			if (!ASSERT_OK(run_pkt(prog[h], &p, 0, &ret), desc))
				continue;
			ASSERT_EQ(ret, TC_OK, desc);
			ASSERT_EQ(pm_metric(&w.m, cnt[h]) - b0, 1, desc);
			ASSERT_EQ(pm_metric(&w.m, SL_CNT_POL_DENY) - d0, 0, desc);
		}
	}
out:
	world_close(&w);
}

/* Frames that end inside the IPv4 or IPv6 header. BPF_PROG_TEST_RUN for TC
 * refuses them (EINVAL: it wants the network header it parses for the skb),
 * so the programs' own first bound check is covered by test_edge (XDP takes
 * any frame) and by the options and extension header cases here. Whatever
 * the kernel does accept must pass as bad. */
void test_policy_tc_short_frames(void)
{
	static const struct pkt_opts full[] = {
		{ TCP(C, 40000, S, 81, SYN) },
		{ TCP("fd00:20::5", 40000, "fd00:10::10", 81, SYN) },
	};
	int refused = 0, accepted = 0;
	struct world w;

	if (!world_open(&w))
		goto out;
	if (!scenario(&w.m))
		goto out;
	for (size_t i = 0; i < 2; i++) {
		int prog[2] = { bpf_program__fd(w.in->progs.pod_ingress_tc),
				bpf_program__fd(w.eg->progs.pod_egress_tc) };
		unsigned int bad[2] = { SL_CNT_IN_BAD_PACKET, SL_CNT_EG_BAD_PACKET };
		size_t iplen = i ? 40 : 20;
		struct pkt p;

		if (!ASSERT_OK(pkt_build(&p, &full[i]), "build"))
			continue;
		for (size_t keep = 0; keep < iplen; keep++) {
			for (int h = 0; h < 2; h++) {
				uint64_t b0 = pm_metric(&w.m, bad[h]);
				struct pkt q = p;
				char desc[96];
				int ret, err;

				q.len = 14 + keep;
				snprintf(desc, sizeof(desc), "%s: %s header cut to %zu bytes",
					 h ? "egress" : "ingress", i ? "IPv6" : "IPv4", keep);
				err = run_pkt(prog[h], &q, 0, &ret);
				if (err == -EINVAL) {
					refused++;
					continue;
				}
				accepted++;
				if (!ASSERT_OK(err, desc))
					continue;
				ASSERT_EQ(ret, TC_OK, desc);
				ASSERT_EQ(pm_metric(&w.m, bad[h]) - b0, 1, desc);
			}
		}
	}
	printf("frames cut inside the IP header: %d refused by BPF_PROG_TEST_RUN, %d run (passed "
	       "as bad)\n",
	       refused, accepted);
out:
	world_close(&w);
}

/* ns/packet from BPF_PROG_TEST_RUN; batches drained between them so that a
 * denied packet's event is written, not lost to a full ring. */

void test_policy_tc_rule_scale(void)
{
	/* Rule entries and peer identities (each of IPv4 and IPv6). */
	static const struct {
		unsigned int rules, ids;
	} sizes[] = { { 10, 10 }, { 10000, 10 }, { 10000, 10000 } };
	const int total = 200000;
	struct pm_events ev = { 0 };
	struct world w;
	int prog;

	if (!world_open(&w) || !scenario(&w.m) ||
	    !ASSERT_OK(pm_events_open(&ev, &w.m), "ring buffer"))
		goto out;
	prog = bpf_program__fd(w.in->progs.pod_ingress_tc);
	printf("pod_ingress ns/packet (BPF_PROG_TEST_RUN, %d runs in batches of 2000)\n", total);
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
				na = pm_ns_per_packet(prog, &a, &ev, TC_OK, total);
				nd = pm_ns_per_packet(prog, &d, &ev, TC_SHOT, total);
				nu = pm_ns_per_packet(prog, &u, &ev, TC_SHOT, total);
				printf("%-7u %-7u %-6s %12.1f %12.1f %12.1f  (%s)\n", sizes[s].rules,
				       sizes[s].ids, v6 ? "IPv6" : "IPv4", na, nd, nu, pm_paths[k].name);
			}
		}
	}
	ASSERT_EQ(pm_stat(&w.m, 1), 6ULL * PM_PATHS * total, "allowed SYNs counted");
	ASSERT_EQ(pm_stat(&w.m, 100), 2 * 6ULL * PM_PATHS * total, "denied SYNs and datagrams counted");
out:
	pm_events_close(&ev);
	world_close(&w);
}

/* A flood of denied SYNs: every one dropped and counted, but at most a
 * burst of deny events reaches the ring (the agent would spend its CPU
 * reading them otherwise), the rest counted as limited. */
void test_policy_tc_event_budget(void)
{
	const struct pkt_opts d4 = { TCP(C, 40000, S, 81, SYN) };
	struct pm_events ev = { 0 };
	uint64_t lim0, deny0;
	struct world w;
	struct pkt d;
	int prog;

	if (!world_open(&w) || !scenario(&w.m) || !ASSERT_OK(pm_events_open(&ev, &w.m), "ring buffer") ||
	    !ASSERT_OK(pkt_build(&d, &d4), "build"))
		goto out;
	prog = bpf_program__fd(w.in->progs.pod_ingress_tc);
	pm_events_drain(&ev);	/* a full budget */
	lim0 = pm_metric(&w.m, SL_CNT_POL_EV_LIMITED);
	deny0 = pm_stat(&w.m, 100);
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = d.data, .data_size_in = (uint32_t)d.len, .repeat = 1000);
	if (!ASSERT_OK(bpf_prog_test_run_opts(prog, &o), "1,000 denied SYNs") ||
	    !ASSERT_EQ(o.retval, TC_SHOT, "dropped"))
		goto out;
	ASSERT_EQ(pm_stat(&w.m, 100) - deny0, 1000, "every one counted against the deny slot");
	ev.budget_fd = -1;	/* look at what the ring got, without a refill */
	ASSERT_LE(pm_events_drain(&ev), SL_POLEV_BURST + 1, "events: at most a burst");
	ASSERT_GE(pm_metric(&w.m, SL_CNT_POL_EV_LIMITED) - lim0, 1000 - SL_POLEV_BURST - 1, "the rest limited");
out:
	pm_events_close(&ev);
	world_close(&w);
}

/* The endpoint flags that let a decision skip lookups: with NO_ANY_PEER the
 * rules for every peer are not looked up, with NO_ALL_PORTS (hash path) the
 * every-port entries are not. The agent sets them only where no such entry
 * exists (test_policy_skip_flags); here entries exist, so setting the flag
 * shows the lookup is skipped, and clearing it that it is made. */
void test_policy_tc_skip_flags(void)
{
	const uint32_t base = SL_EP_F_ISO_IN | SL_EP_F_NO_STEER | SL_EP_F_NO_RANGES;
	const struct {
		const char *desc;
		struct pkt_opts pkt;
		uint32_t flag;
	} skips[] = {
		/* S allows TCP 8443 from every peer (slot 2) */
		{ "rule for every peer", { TCP(C, 40000, S, 8443, SYN) }, SL_EP_F_NO_ANY_PEER },
		/* S allows every UDP port from D (slot 6) */
		{ "every-port entry", { UDP(D, 40000, S, 9999) }, SL_EP_F_NO_ALL_PORTS },
		/* the same: no rule naming the protocol skips the identity and every rule */
		{ "UDP rule", { UDP(D, 40000, S, 9999) }, SL_EP_F_NO_UDP },
		{ "TCP rule", { TCP(C, 40000, S, 80, SYN) }, SL_EP_F_NO_TCP },
	};
	struct pm_events ev = { 0 };
	struct world w;
	int prog;

	if (!world_open(&w) || !scenario(&w.m) || !ASSERT_OK(pm_events_open(&ev, &w.m), "ring buffer"))
		goto out;
	prog = bpf_program__fd(w.in->progs.pod_ingress_tc);
	for (size_t i = 0; i < sizeof(skips) / sizeof(skips[0]); i++) {
		for (int v6 = 0; v6 < 2; v6++) {
			struct pkt_opts o = skips[i].pkt;
			char desc[128];
			struct pkt p;
			int ret;

			if (v6)
				pm_to_v6(&skips[i].pkt, &o);
			if (!ASSERT_OK(pkt_build(&p, &o), "build"))
				goto out;
			snprintf(desc, sizeof(desc), "%s, %s: looked up", skips[i].desc, v6 ? "IPv6" : "IPv4");
			if (!ASSERT_OK(pm_put_ep(&w.m, v6 ? pm_v6(S) : S, 1, base, 100, 101), "ep") ||
			    !ASSERT_OK(run_pkt(prog, &p, 0, &ret), "run"))
				goto out;
			ASSERT_EQ(ret, TC_OK, desc);
			snprintf(desc, sizeof(desc), "%s, %s: skipped by the flag", skips[i].desc, v6 ? "IPv6" : "IPv4");
			if (!ASSERT_OK(pm_put_ep(&w.m, v6 ? pm_v6(S) : S, 1,
						 base | SL_EP_F_DIR(skips[i].flag, SL_DIR_INGRESS), 100, 101), "ep") ||
			    !ASSERT_OK(run_pkt(prog, &p, 0, &ret), "run"))
				goto out;
			ASSERT_EQ(ret, TC_SHOT, desc);
			/* the egress flag does not touch ingress decisions */
			snprintf(desc, sizeof(desc), "%s, %s: the egress flag", skips[i].desc, v6 ? "IPv6" : "IPv4");
			if (!ASSERT_OK(pm_put_ep(&w.m, v6 ? pm_v6(S) : S, 1,
						 base | SL_EP_F_DIR(skips[i].flag, SL_DIR_EGRESS), 100, 101), "ep") ||
			    !ASSERT_OK(run_pkt(prog, &p, 0, &ret), "run"))
				goto out;
			ASSERT_EQ(ret, TC_OK, desc);
			pm_events_drain(&ev);
		}
	}
out:
	pm_events_close(&ev);
	world_close(&w);
}

/* Is port's bit set in side's word of sl_polctport_v1? -1: lookup failed. */
static int port_bit(const struct pm_fds *m, uint32_t side, uint16_t port)
{
	static struct sl_polct_ports v;
	uint16_t p = htons(port);

	if (bpf_map_lookup_elem(m->polctport, &side, &v))
		return -1;
	return !!(v.bits[SL_POLCT_PORT_WORD(p)] & SL_POLCT_PORT_BIT(p));
}

static int ports_clear(const struct pm_fds *m)
{
	static const struct sl_polct_ports zero;

	for (uint32_t side = 0; side < 2; side++)
		if (bpf_map_update_elem(m->polctport, &side, &zero, BPF_ANY))
			return -errno;
	return 0;
}

/* sl_polctport_v1: a recorded UDP flow sets its local port's bit on its
 * side; a clear bit is the answer "no reply" without the LRU (a flow whose
 * bit is gone is no longer found); loader_polct_ports_fill (an agent
 * started over pins without the bitmap) sets the bits of the LRU's flows. */
void test_policy_tc_reply_ports(void)
{
	struct world w;
	int prog_in, prog_eg;

	if (!world_open(&w) || !scenario(&w.m))
		goto out;
	prog_in = bpf_program__fd(w.in->progs.pod_ingress_tc);
	prog_eg = bpf_program__fd(w.eg->progs.pod_egress_tc);
	for (int v6 = 0; v6 < 2; v6++) {
		/* C asks N (egress, port 41000); D asks C (ingress, C's port 5000) */
		const struct pkt_opts req_out = { UDP(C, 41000, N, 53) }, reply_in = { UDP(N, 53, C, 41000) };
		const struct pkt_opts req_in = { UDP(D, 6000, C, 5000) }, reply_out = { UDP(C, 5000, D, 6000) };
		const struct { const struct pkt_opts *o; int prog; } run[] = {
			{ &req_out, prog_eg }, { &reply_in, prog_in }, { &req_in, prog_in }, { &reply_out, prog_eg },
		};
		struct pkt p[4];
		int ret[4] = { -1, -1, -1, -1 };
		char desc[128];
		const char *fam = v6 ? "IPv6" : "IPv4";

		for (int i = 0; i < 4; i++) {
			struct pkt_opts o = *run[i].o;

			if (v6)
				pm_to_v6(run[i].o, &o);
			if (!ASSERT_OK(pkt_build(&p[i], &o), "build"))
				goto out;
		}
		if (!ASSERT_OK(ports_clear(&w.m), "clear the bitmap"))
			goto out;
		for (int i = 0; i < 4; i++)
			if (!ASSERT_OK(run_pkt(run[i].prog, &p[i], 0, &ret[i]), "run"))
				goto out;
		snprintf(desc, sizeof(desc), "%s: requests and replies pass", fam);
		ASSERT_TRUE(ret[0] == TC_OK && ret[1] == TC_OK && ret[2] == TC_OK && ret[3] == TC_OK, desc);
		snprintf(desc, sizeof(desc), "%s: egress flow's port marked", fam);
		ASSERT_EQ(port_bit(&w.m, SL_DIR_EGRESS, 41000), 1, desc);
		snprintf(desc, sizeof(desc), "%s: ingress flow's port marked", fam);
		ASSERT_EQ(port_bit(&w.m, SL_DIR_INGRESS, 5000), 1, desc);
		snprintf(desc, sizeof(desc), "%s: no other port marked", fam);
		ASSERT_TRUE(port_bit(&w.m, SL_DIR_EGRESS, 41001) == 0 && port_bit(&w.m, SL_DIR_INGRESS, 41000) == 0 &&
			    port_bit(&w.m, SL_DIR_EGRESS, 5000) == 0 && port_bit(&w.m, SL_DIR_EGRESS, 53) == 0, desc);
		/* the flows stay in the LRU; without their bits they are not looked up */
		if (!ASSERT_OK(ports_clear(&w.m), "clear the bitmap") ||
		    !ASSERT_OK(run_pkt(prog_in, &p[1], 0, &ret[1]), "run") ||
		    !ASSERT_OK(run_pkt(prog_eg, &p[3], 0, &ret[3]), "run"))
			goto out;
		snprintf(desc, sizeof(desc), "%s: a clear bit denies the replies", fam);
		ASSERT_TRUE(ret[1] == TC_SHOT && ret[3] == TC_SHOT, desc);
		snprintf(desc, sizeof(desc), "%s: a fill from no map fails and sets nothing", fam);
		ASSERT_TRUE(loader_polct_ports_fill(-1, w.m.polctport) < 0, desc);
		ASSERT_EQ(port_bit(&w.m, SL_DIR_EGRESS, 41000), 0, desc);
		snprintf(desc, sizeof(desc), "%s: bits filled from the LRU", fam);
		if (!ASSERT_OK(loader_polct_ports_fill(w.m.polct, w.m.polctport), desc) ||
		    !ASSERT_OK(run_pkt(prog_in, &p[1], 0, &ret[1]), "run") ||
		    !ASSERT_OK(run_pkt(prog_eg, &p[3], 0, &ret[3]), "run"))
			goto out;
		snprintf(desc, sizeof(desc), "%s: after the fill the replies pass", fam);
		ASSERT_TRUE(ret[1] == TC_OK && ret[3] == TC_OK, desc);
		ASSERT_EQ(port_bit(&w.m, SL_DIR_EGRESS, 41000), 1, desc);
		ASSERT_EQ(port_bit(&w.m, SL_DIR_INGRESS, 5000), 1, desc);
	}
out:
	world_close(&w);
}
