// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* xdpgen - the frame generator of sl-xdpgen (selftests/tools/sl-xdpgen.c).
 *
 * Run by BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES):
 * the kernel hands it the same frame again and again, in recycled pages,
 * and each XDP_REDIRECT really goes out, into a veth whose peer receives an
 * xdp_frame, as from a NIC's ring. The pages are not rewritten between runs,
 * and a receiver that forwards decrements the TTL in place (or rewrites the
 * Ethernet header), so every run first puts the template's first 64 bytes
 * back: else the TTL reaches 0 after 64 rounds and the frames die of it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define XDPGEN_HDR 64	/* bytes restored per frame; frames are at least this long */

/* Not const: the compiler would fold reads of a const template to its
 * zero initializer. Set by sl-xdpgen before the load. */
__u8 tmpl[XDPGEN_HDR];
const volatile __u32 out_ifindex;

/* Pacing (sl-xdpgen --pace): share of every 65,536 frames made go out, the
 * rest are dropped here and recycled in the generator's page pool on its own
 * CPU: the excess a NIC's ring drops in hardware. Sent out, each excess frame
 * the receiver's ring refuses is handed back on the generator's CPU into the
 * pool's ring, which the receiver's CPU fills too: both then fight over its
 * lock. 65,536: every frame goes out. One CPU runs this: no atomics. */
__u32 share = 65536;
__u32 acc;
__u64 redirected;

SEC("xdp")
int xdpgen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	if (share < 65536) {
		acc += share;
		if (acc < 65536)
			return XDP_DROP;
		acc -= 65536;
	}
	if (data + XDPGEN_HDR > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, tmpl, XDPGEN_HDR);
	redirected++;
	return bpf_redirect(out_ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
