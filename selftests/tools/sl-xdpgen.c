// SPDX-License-Identifier: Apache-2.0
/* sl-xdpgen - a bounded flood of UDP frames that reach a veth as a NIC's ring
 * delivers them: as xdp_frames, with no skb (policy benchmark, frame feed).
 *
 *   sl-xdpgen --dev IF --dst-mac MAC --src ADDR --dst ADDR --port N --seconds S
 *             [--sport N] [--size BYTES] [--cpu N] [--batch N] [--pace PCT]
 *
 * The kernel generates the frames: BPF_PROG_TEST_RUN of selftests/progs/
 * xdpgen.bpf.c in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, 5.18), which
 * XDP_REDIRECTs each one out of IF (a veth in this netns). The veth's peer
 * receives them in its NAPI poll like a driver's RX ring: its XDP program
 * sees the frame before any skb exists, and an skb is built only for what it
 * passes. (A flood from a socket arrives at a veth as an skb instead, already
 * allocated, and XDP there saves nothing of it.) The peer needs NAPI: an XDP
 * program attached, or GRO on (ethtool -K PEER gro on); else the veth drops
 * the frames (its tx_queue_0_xdp_xmit_errors count them).
 *
 * Frames: Ethernet (source: IF's address) + IPv4 or IPv6 (by ADDR) + UDP from
 * --sport (default 40000) to PORT, BYTES long in all (default 64, at least
 * 64, at most 1514), zero payload. The receive work runs on the CPU that
 * runs sl-xdpgen (the redirect schedules the peer's NAPI there), after each
 * batch of 64 frames, unless the peer's NAPI is threaded (echo 1 >
 * /sys/class/net/PEER/threaded): then in its own thread, which can be pinned
 * apart from the generator, as a NIC queue's work runs on its own core.
 *
 * --pace PCT sends no more than the peer takes: after each call the share of
 * frames that go out is set to what the peer took in it plus half of PCT
 * percent, when the peer refused more than a quarter of PCT percent (it ran
 * full); else 5% more than went out, then 10, 20 and 40% more while it keeps
 * taking all. The rest are dropped in the generator (xdpgen.bpf.c), as a
 * NIC's ring drops a flood's excess without the host. Unpaced, frames the
 * peer's ring refuses (IF's *xdp_xmit_errors statistics) come back on the
 * generator's CPU into the page pool the receiver fills from its own, and the
 * two CPUs contend for its lock. SL_XDPGEN_TRACE=1 in the environment prints
 * each call's rates on stderr.
 *
 * Prints one line on stdout, as sl-flood does:
 *
 *   sent=<frames> errors=<failed runs> seconds=<elapsed> pps=<sent/elapsed>
 *
 * sent counts frames redirected (paced: those let out); those the peer's
 * ring had no room for are lost there (the veth counts them). Exit 0 when
 * anything was sent, 1 when nothing was, 2 on bad usage or when the program cannot be loaded. Stops
 * at the deadline, on SIGINT/SIGTERM, and by SIGALRM 2 s after the deadline
 * should a run overshoot, printing what it sent.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/sockios.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#include "progs/xdpgen.skel.h"
#include "tools/tool.h"

#define XDPGEN_HDR	64	/* as in xdpgen.bpf.c */
#define XDPGEN_MAX	1514
#define XDPGEN_BATCH	64	/* frames per flush; the kernel sizes its page pool by it */
#define XDPGEN_BATCH_MAX	256	/* the kernel's TEST_XDP_MAX_BATCH */
/* Frames per BPF_PROG_TEST_RUN call: each call sets up and tears down a page
 * pool (an RCU grace period: milliseconds), so calls are made long, about
 * XDPGEN_CALL_S each, and the deadline is checked between them. */
#define XDPGEN_CALL_S	0.2
#define XDPGEN_REPEAT_MIN 65536u
#define XDPGEN_REPEAT_MAX (1u << 26)
/* Paced: a call that lost more than a quarter of PCT percent ran the peer
 * full, and what it took is its speed: the next lets out that plus half of
 * PCT. One that lost less probes up, by 5%, then 10, 20, 40% while the peer
 * keeps taking all (the first call, unpaced, measures the peer as well). */
#define XDPGEN_PACE_STEP_MIN 0.05
#define XDPGEN_PACE_STEP_MAX 0.4

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fputs("usage: sl-xdpgen --dev IF --dst-mac MAC --src ADDR --dst ADDR --port N --seconds S "
	      "[--sport N] [--size BYTES] [--cpu N] [--batch N] [--pace PCT]\n",
	      stderr);
	exit(2);
}

static void parse_mac(const char *s, uint8_t mac[ETH_ALEN])
{
	unsigned int b[ETH_ALEN];
	char tail;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != ETH_ALEN)
		die("bad MAC address '%s' (expected xx:xx:xx:xx:xx:xx)", s);
	for (int i = 0; i < ETH_ALEN; i++)
		mac[i] = (uint8_t)b[i];
}

static void dev_mac(const char *ifname, uint8_t mac[ETH_ALEN])
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr))
		die("%s: no hardware address: %s", ifname, strerror(errno));
	close(fd);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
}

static uint16_t ip_checksum(const void *hdr, size_t len)
{
	const uint8_t *p = hdr;
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/* The frame: Ethernet, IP (by the family of src and dst), UDP, zeros. UDP
 * checksum 0 (IPv4: none; IPv6: receivers that deliver would drop it, but
 * these frames are meant to be dropped or forwarded, not delivered). */
static size_t build_frame(uint8_t *f, size_t size, const uint8_t dmac[ETH_ALEN], const uint8_t smac[ETH_ALEN],
			  const char *src, const char *dst, uint16_t sport, uint16_t dport)
{
	struct ethhdr *eth = (struct ethhdr *)f;
	struct udphdr *udp;
	size_t l3;

	memcpy(eth->h_dest, dmac, ETH_ALEN);
	memcpy(eth->h_source, smac, ETH_ALEN);
	if (strchr(dst, ':')) {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)(eth + 1);

		eth->h_proto = htons(ETH_P_IPV6);
		ip6->version = 6;
		ip6->payload_len = htons((uint16_t)(size - sizeof(*eth) - sizeof(*ip6)));
		ip6->nexthdr = IPPROTO_UDP;
		ip6->hop_limit = 64;
		if (inet_pton(AF_INET6, src, &ip6->saddr) != 1 || inet_pton(AF_INET6, dst, &ip6->daddr) != 1)
			die("bad IPv6 address '%s' or '%s'", src, dst);
		udp = (struct udphdr *)(ip6 + 1);
		l3 = sizeof(*ip6);
	} else {
		struct iphdr *ip = (struct iphdr *)(eth + 1);

		eth->h_proto = htons(ETH_P_IP);
		ip->version = 4;
		ip->ihl = 5;
		ip->tot_len = htons((uint16_t)(size - sizeof(*eth)));
		ip->ttl = 64;
		ip->protocol = IPPROTO_UDP;
		if (inet_pton(AF_INET, src, &ip->saddr) != 1 || inet_pton(AF_INET, dst, &ip->daddr) != 1)
			die("bad IPv4 address '%s' or '%s'", src, dst);
		ip->check = ip_checksum(ip, sizeof(*ip));
		udp = (struct udphdr *)(ip + 1);
		l3 = sizeof(*ip);
	}
	udp->source = htons(sport);
	udp->dest = htons(dport);
	udp->len = htons((uint16_t)(size - sizeof(*eth) - l3));
	return size;
}

/* Frames IF's peer refused (its ring full): the sum of IF's ethtool
 * statistics named *xdp_xmit_errors (a veth's per queue). */
struct xmit_errors {
	int sock;
	unsigned int n;			/* statistics of IF */
	unsigned int idx[64], n_idx;	/* those that count refused frames */
	struct ethtool_stats *st;	/* room for n, read after each call */
	char dev[IFNAMSIZ];
};

static int ethtool_ioctl(struct xmit_errors *x, void *cmd)
{
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", x->dev);
	ifr.ifr_data = cmd;
	return ioctl(x->sock, SIOCETHTOOL, &ifr);
}

static void xmit_errors_open(struct xmit_errors *x, const char *dev)
{
	struct { struct ethtool_sset_info h; uint32_t len; } ss = { .h = { .cmd = ETHTOOL_GSSET_INFO,
								   .sset_mask = 1ULL << ETH_SS_STATS } };
	struct ethtool_gstrings *gs;
	const char *suffix = "xdp_xmit_errors";

	memset(x, 0, sizeof(*x));
	snprintf(x->dev, sizeof(x->dev), "%s", dev);
	x->sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (x->sock < 0 || ethtool_ioctl(x, &ss) || !ss.h.sset_mask)
		die("--pace: no ethtool statistics on %s", dev);
	x->n = ss.len;
	gs = calloc(1, sizeof(*gs) + (size_t)x->n * ETH_GSTRING_LEN);
	if (!gs)
		die("out of memory");
	gs->cmd = ETHTOOL_GSTRINGS;
	gs->string_set = ETH_SS_STATS;
	gs->len = x->n;
	if (ethtool_ioctl(x, gs))
		die("--pace: %s: reading statistics' names: %s", dev, strerror(errno));
	for (unsigned int i = 0; i < x->n && x->n_idx < sizeof(x->idx) / sizeof(x->idx[0]); i++) {
		const char *name = (const char *)gs->data + (size_t)i * ETH_GSTRING_LEN;
		size_t l = strnlen(name, ETH_GSTRING_LEN);

		if (l >= strlen(suffix) && !strcmp(name + l - strlen(suffix), suffix))
			x->idx[x->n_idx++] = i;
	}
	free(gs);
	if (!x->n_idx)
		die("--pace: %s counts no refused frames (no *%s statistics: not a veth?)", dev, suffix);
	x->st = calloc(1, sizeof(*x->st) + (size_t)x->n * sizeof(uint64_t));
	if (!x->st)
		die("out of memory");
}

static uint64_t xmit_errors_read(struct xmit_errors *x)
{
	struct ethtool_stats *st = x->st;
	uint64_t sum = 0;

	st->cmd = ETHTOOL_GSTATS;
	st->n_stats = x->n;
	if (ethtool_ioctl(x, st))
		die("--pace: %s: reading statistics: %s", x->dev, strerror(errno));
	for (unsigned int i = 0; i < x->n_idx; i++)
		sum += st->data[x->idx[i]];
	return sum;
}

int main(int argc, char **argv)
{
	static uint8_t frame[XDPGEN_MAX];
	const char *dev = NULL, *dmac_s = NULL, *src = NULL, *dst = NULL;
	long port = 0, sport = 40000, size = XDPGEN_HDR, cpu = -1, batch = XDPGEN_BATCH;
	double seconds = 0, t0, deadline, elapsed, call_t;
	uint8_t dmac[ETH_ALEN], smac[ETH_ALEN];
	unsigned long long sent = 0, errors = 0;
	double pace = 0;		/* --pace: percent of loss allowed; 0: unpaced */
	double step = XDPGEN_PACE_STEP_MIN;
	bool trace = getenv("SL_XDPGEN_TRACE") != NULL;
	struct xmit_errors xe = { .sock = -1 };
	uint64_t lost0 = 0;
	unsigned int ifindex, repeat = XDPGEN_REPEAT_MIN;
	struct xdpgen *skel;
	int fd, err;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v;

		if (i + 1 >= argc)
			usage();
		v = argv[++i];
		if (!strcmp(o, "--dev")) {
			dev = v;
		} else if (!strcmp(o, "--dst-mac")) {
			dmac_s = v;
		} else if (!strcmp(o, "--src")) {
			src = v;
		} else if (!strcmp(o, "--dst")) {
			dst = v;
		} else if (!strcmp(o, "--port")) {
			port = num(v, "--port", 1, 65535);
		} else if (!strcmp(o, "--sport")) {
			sport = num(v, "--sport", 1, 65535);
		} else if (!strcmp(o, "--size")) {
			size = num(v, "--size", XDPGEN_HDR, XDPGEN_MAX);
		} else if (!strcmp(o, "--batch")) {
			batch = num(v, "--batch", 1, XDPGEN_BATCH_MAX);
		} else if (!strcmp(o, "--pace")) {
			pace = (double)num(v, "--pace", 1, 50);
		} else if (!strcmp(o, "--cpu")) {
			cpu = num(v, "--cpu", 0, CPU_SETSIZE - 1);
		} else if (!strcmp(o, "--seconds")) {
			seconds = seconds_arg(v, "--seconds");
		} else {
			die("unknown option %s", o);
		}
	}
	if (!dev || !dmac_s || !src || !dst || !port || !seconds)
		usage();
	if (!strchr(src, ':') != !strchr(dst, ':'))
		die("--src %s and --dst %s are not of one family", src, dst);
	ifindex = if_nametoindex(dev);
	if (!ifindex)
		die("no interface '%s' here: %s", dev, strerror(errno));
	parse_mac(dmac_s, dmac);
	dev_mac(dev, smac);
	build_frame(frame, (size_t)size, dmac, smac, src, dst, (uint16_t)sport, (uint16_t)port);

	if (pace)
		xmit_errors_open(&xe, dev);
	pin_cpu(cpu);

	libbpf_set_print(NULL);
	skel = xdpgen__open();
	if (!skel)
		die("open the generator program: %s", strerror(errno));
	memcpy(skel->bss->tmpl, frame, XDPGEN_HDR);
	skel->rodata->out_ifindex = ifindex;
	err = xdpgen__load(skel);
	if (err)
		die("load the generator program: %s", strerror(-err));
	fd = bpf_program__fd(skel->progs.xdpgen);

	/* A hard bound too: SIGALRM ends a run in the kernel (EINTR) should a
	 * call take far longer than the last one did. */
	stop_on_signals();
	alarm((unsigned int)seconds + 2);

	t0 = now_s();
	deadline = t0 + seconds;
	if (pace)
		lost0 = xmit_errors_read(&xe);
	while (!stop && (call_t = now_s()) < deadline) {
		/* the frame as received on an interface of this netns: the
		 * kernel needs one for the xdp_rxq (loopback is always there) */
		struct xdp_md ctx = { .data_end = (__u32)size, .ingress_ifindex = 1 };
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = (__u32)size,
			    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .repeat = repeat,
			    .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = (uint32_t)batch);
		double took, left = deadline - call_t;
		uint64_t out0 = skel->bss->redirected, out;

		if (bpf_prog_test_run_opts(fd, &opts)) {
			if (errno == EINTR)
				break;
			if (errno == EOPNOTSUPP || errno == EINVAL)
				die("this kernel cannot run XDP programs on live frames: %s", strerror(errno));
			errors++;
			if (errors > 100)
				die("BPF_PROG_TEST_RUN keeps failing: %s", strerror(errno));
			continue;
		}
		out = skel->bss->redirected - out0;
		sent += out;
		/* size the next call to XDPGEN_CALL_S, or to what is left */
		took = now_s() - call_t;
		if (pace && took > 0) {
			uint64_t lost = xmit_errors_read(&xe);
			double gone = (double)(lost - lost0), made = (double)repeat / took;
			double out_r = (double)out / took, peer_r = ((double)out - gone) / took, want;

			lost0 = lost;
			if (gone > (double)out * pace / 400) {
				want = peer_r * (1 + pace / 200);
				step = XDPGEN_PACE_STEP_MIN;
			} else {
				want = out_r * (1 + step);
				step = step * 2 > XDPGEN_PACE_STEP_MAX ? XDPGEN_PACE_STEP_MAX : step * 2;
			}
			if (trace)
				fprintf(stderr, "call %.3fs made %.0f out %.0f peer %.0f lost %.1f%% -> want %.0f\n",
					took, made, out_r, peer_r, out ? 100 * gone / (double)out : 0, want);
			want = want / made * 65536;
			skel->data->share = want >= 65536 ? 65536 : want < 64 ? 64 : (uint32_t)want;
		}
		if (took > 0) {
			double want = (double)repeat * (left - took < XDPGEN_CALL_S ? left - took : XDPGEN_CALL_S) / took;

			repeat = want < XDPGEN_REPEAT_MIN ? XDPGEN_REPEAT_MIN
				 : want > XDPGEN_REPEAT_MAX ? XDPGEN_REPEAT_MAX
							    : (unsigned int)want;
		}
	}
	elapsed = now_s() - t0;
	xdpgen__destroy(skel);
	if (xe.sock >= 0)
		close(xe.sock);
	free(xe.st);
	printf("sent=%llu errors=%llu seconds=%.3f pps=%.0f\n", sent, errors, elapsed,
	       elapsed > 0 ? (double)sent / elapsed : 0.0);
	return sent ? 0 : 1;
}
