// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* edge - XDP on the node's uplink: drop what the ingress NetworkPolicy of a
 * local pod denies before an skb exists, for traffic that arrives from
 * outside the node (other nodes, external hosts).
 *
 * It judges exactly what pod_ingress judges, with the same tables
 * (bpf/lib/policy.h): a TCP SYN (no ACK) and every UDP datagram to a local
 * pod (sl_polep_v1, by destination address) that is isolated for ingress.
 * HBONE (15008) to an enrolled pod is the agent's to police; a UDP reply to
 * the pod's own allowed egress flow (sl_polct_v1) passes. A first fragment
 * carries the ports and is judged like pod_ingress judges it; later fragments,
 * non-IP, ICMP, other protocols and truncated or malformed headers pass
 * (XDP_PASS): pod_ingress sees them all again and is the one that decides
 * them.
 *
 * Only drops are counted here (sl_polstat_v1 deny slot, SL_CNT_POL_DENY, a
 * deny event with SL_HOOK_XDP). What passes reaches the pod and is judged and
 * counted by pod_ingress, so this program never calls pol_decide (which counts
 * allows) but looks up the same rule (pol_allowing_rule): a packet must not be
 * counted twice.
 *
 * Addresses and ports are compared in network byte order, as the packet
 * carries them. Needs: XDP (native or generic), bpf_ringbuf_* (5.8),
 * bpf_ktime_get_boot_ns (5.8), bpf_ktime_get_coarse_ns (5.11).
 */
#include "lib/common.h"
#include "lib/metrics.h"
#include "lib/parse.h"
#include "lib/policy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp.frags")
int edge_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct sl_polep_val *ep;
	struct pol_flow pf = {};
	struct flow f = {};
	enum parse_result p;
	__u32 slot = 0;

	p = parse_frame(data, end, &f);
	if (p != PARSE_TCP && p != PARSE_UDP)
		return XDP_PASS;	/* bad, later fragment, or neither TCP nor UDP */
	if (p == PARSE_TCP && (!f.syn || f.ack))
		return XDP_PASS;	/* of a connection a SYN opened */
	ep = pol_endpoint(&f.daddr, f.family);
	if (!ep || !(ep->flags & SL_EP_F_ISO_IN))
		return XDP_PASS;
	if (p == PARSE_TCP && f.dport == bpf_htons(SL_PORT_HBONE) && (ep->flags & SL_EP_F_ENROLLED))
		return XDP_PASS;	/* the agent polices what HBONE carries */
	pol_flow_of(&pf, &f, SL_DIR_INGRESS);
	if (p == PARSE_UDP && pol_ct_reply(&pf))
		return XDP_PASS;	/* a reply to the pod's own allowed flow */
	/* lookups only: what passes is counted by pod_ingress */
	if (pol_allowing_rule(ep, &f.saddr, f.family, SL_DIR_INGRESS, f.proto, f.dport, &slot))
		return XDP_PASS;
	slot = ep->deny_slot[SL_DIR_INGRESS];
	pol_count(slot);
	metrics_inc(SL_CNT_POL_DENY);
	pol_event(&pf, slot, SL_HOOK_XDP);
	return XDP_DROP;
}
