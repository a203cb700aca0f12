// SPDX-License-Identifier: Apache-2.0
/* test_pod_ingress.c - pod_ingress decisions on crafted packets
 * (BPF_PROG_TEST_RUN), with real listeners in the test's netns standing in for
 * the agent (15006, 15008) and an application (8080). The verdict is always
 * TC_ACT_OK (steering never drops); what differs is the counter each packet
 * moves. bpf_sk_assign itself needs a real ingress skb, so under test_run a
 * steered SYN shows as an assign attempt; the lab tests prove the steering. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sluice/counters.h>

#include "lib/fixture.h"
#include "lib/pkt.h"
#include "lib/test.h"
#include "pod_ingress.skel.h"

enum want {
	W_PASS,		/* no counter moves */
	W_STEER,	/* steered (or an assign attempt under test_run) */
	W_NO_LISTENER,
	W_BAD,
};

struct tc_case {
	const char *desc;
	struct pkt_opts pkt;
	enum want want;
};

#define V4(s, d) .src = s, .dst = d
static const struct tc_case cases[] = {
	{ "v4 SYN to an app port is steered", { V4("10.1.0.2", "10.1.0.1"), 40000, 8080, PKT_SYN }, W_STEER },
	{ "v4 SYN to a closed port is steered", { V4("10.1.0.2", "10.1.0.1"), 40000, 9999, PKT_SYN }, W_STEER },
	{ "v4 SYN with IP options is steered", { V4("10.1.0.2", "10.1.0.1"), 40000, 8080, PKT_SYN, 0, 8 }, W_STEER },
	{ "v4 SYN to 15008 (HBONE) passes", { V4("10.1.0.2", "10.1.0.1"), 40000, 15008, PKT_SYN }, W_PASS },
	{ "v4 ACK without a socket passes", { V4("10.1.0.2", "10.1.0.1"), 40000, 8080, PKT_ACK }, W_PASS },
	{ "v4 SYN-ACK passes", { V4("10.1.0.2", "10.1.0.1"), 40000, 8080, PKT_SYN | PKT_ACK }, W_PASS },
	{ "v4 UDP passes", { V4("10.1.0.2", "10.1.0.1"), 40000, 8080, 0, 17 }, W_PASS },
	{ "v4 non-first fragment passes", { V4("10.1.0.2", "10.1.0.1"), 40000, 8080, PKT_SYN, 0, 0, 0, 0, 100 },
	  W_PASS },
	{ "v4 truncated TCP header is counted bad", { V4("10.1.0.2", "10.1.0.1"), 40000, 8080, PKT_SYN,
						     .truncate = 8 }, W_BAD },
	/* (A frame shorter than an IPv4 header is refused by BPF_PROG_TEST_RUN
	 * itself, so the first bound check is covered by the options case.) */
	{ "v4 IP options beyond the frame are bad", { V4("10.1.0.2", "10.1.0.1"), 40000, 8080, PKT_SYN, 0, 40,
						     .truncate = 40 }, W_BAD },
	{ "v6 SYN to an app port is steered", { V4("fd00:1::2", "fd00:1::1"), 40000, 8080, PKT_SYN }, W_STEER },
	{ "v6 SYN behind hop-by-hop options is steered", { V4("fd00:1::2", "fd00:1::1"), 40000, 8080, PKT_SYN,
							    .ip6_hopopts = 1 }, W_STEER },
	{ "v6 SYN with an atomic fragment header is steered", { V4("fd00:1::2", "fd00:1::1"), 40000, 8080, PKT_SYN,
								 .ip6_frag = 1 }, W_STEER },
	{ "v6 SYN to 15008 passes", { V4("fd00:1::2", "fd00:1::1"), 40000, 15008, PKT_SYN }, W_PASS },
	{ "v6 truncated TCP header is bad", { V4("fd00:1::2", "fd00:1::1"), 40000, 8080, PKT_SYN, .truncate = 4 },
	  W_BAD },
};

static void counters(int fd, uint64_t out[SL_CNT_MAX])
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t v[512];

	for (uint32_t k = 0; k < SL_CNT_MAX; k++) {
		out[k] = 0;
		if (!bpf_map_lookup_elem(fd, &k, v))
			for (int c = 0; c < ncpu && c < 512; c++)
				out[k] += v[c];
	}
}

static void run_cases(struct pod_ingress *skel, bool listeners_up)
{
	int prog = bpf_program__fd(skel->progs.pod_ingress_tc);
	int mfd = bpf_map__fd(skel->maps.sl_metrics_v1);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tc_case *c = &cases[i];
		uint64_t before[SL_CNT_MAX], after[SL_CNT_MAX];
		enum want want = c->want;
		struct pkt p;

		if (!listeners_up && want == W_STEER)
			want = W_NO_LISTENER;
		if (!ASSERT_OK(pkt_build(&p, &c->pkt), c->desc))
			continue;
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = p.data, .data_size_in = (uint32_t)p.len, .repeat = 1);
		counters(mfd, before);
		if (!ASSERT_OK(bpf_prog_test_run_opts(prog, &o), c->desc))
			continue;
		counters(mfd, after);
		ASSERT_EQ(o.retval, 0 /* TC_ACT_OK */, c->desc);
		uint64_t steer = after[SL_CNT_IN_STEERED] - before[SL_CNT_IN_STEERED] +
				 after[SL_CNT_IN_ASSIGN_ERR] - before[SL_CNT_IN_ASSIGN_ERR];
		uint64_t nol = after[SL_CNT_IN_NO_LISTENER] - before[SL_CNT_IN_NO_LISTENER];
		uint64_t bad = after[SL_CNT_IN_BAD_PACKET] - before[SL_CNT_IN_BAD_PACKET];

		switch (want) {
		case W_PASS:
			ASSERT_EQ(steer + nol + bad, 0, c->desc);
			break;
		case W_STEER:
			ASSERT_EQ(steer, 1, c->desc);
			break;
		case W_NO_LISTENER:
			ASSERT_EQ(nol, 1, c->desc);
			break;
		case W_BAD:
			ASSERT_EQ(bad, 1, c->desc);
			break;
		}
	}
}

static int transparent_listener(const char *ip, uint16_t port)
{
	int fd = fx_listen(SOCK_STREAM, ip, port);

	return fd;
}

void test_pod_ingress_packets(void)
{
	struct fixture fx;
	struct pod_ingress *skel = NULL;
	int fds[6], n = 0;

	if (!fixture_setup(&fx))
		goto out;
	*strrchr(fx.bpffs, '/') = '\0';
	LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = fx.bpffs);
	skel = pod_ingress__open_opts(&oo);
	if (!ASSERT_OK_PTR(skel, "open") || !ASSERT_OK(pod_ingress__load(skel), "load"))
		goto out;
	fx_sh("ip addr add 10.1.0.1/32 dev lo && ip -6 addr add fd00:1::1/128 dev lo nodad");
	fx_wait_local6("fd00:1::1");

	run_cases(skel, false);	/* no agent listeners: fail open */

	fds[n++] = transparent_listener("0.0.0.0", 15006);
	fds[n++] = transparent_listener("::", 15006);
	fds[n++] = fx_listen(SOCK_STREAM, "0.0.0.0", 15008);
	fds[n++] = fx_listen(SOCK_STREAM, "::", 15008);
	fds[n++] = fx_listen(SOCK_STREAM, "0.0.0.0", 8080);
	fds[n++] = fx_listen(SOCK_STREAM, "::", 8080);
	for (int i = 0; i < n; i++)
		ASSERT_GE(fds[i], 0, "listener");
	run_cases(skel, true);
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
out:
	pod_ingress__destroy(skel);
	fixture_teardown(&fx);
}
