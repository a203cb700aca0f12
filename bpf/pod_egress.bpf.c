// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* pod_egress - TC egress on a pod's own interface, inside the pod's netns:
 * the pod's egress NetworkPolicy for what leaves it as packets.
 *
 * sock_lb already refuses a denied connect() or sendmsg() with EPERM before
 * any packet exists; this hook covers the rest (sockets outside the node's
 * cgroup, policy that changed after connect) and records allowed UDP flows
 * so that their replies pass the pod's isolated ingress. A TCP SYN and every
 * UDP datagram are policed; the agent's own sockets (by mark) never are: the
 * agent polices what it carries itself.
 */
#include "lib/common.h"
#include "lib/metrics.h"
#include "lib/parse.h"
#include "lib/policy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int pod_egress_tc(struct __sk_buff *skb)
{
	__u32 mark = skb->mark & SL_MARK_MASK;
	struct sl_polep_val *ep;
	struct pol_flow pf = {};
	struct flow f = {};
	enum parse_result p;
	enum pol_verdict v;

	if (mark == SL_MARK_AGENT || mark == SL_MARK_DELIVER)
		return TC_ACT_OK;
	p = parse_flow(skb, &f);
	if (p == PARSE_BAD) {
		/* A tiny first fragment (see pod_ingress): its ports arrive in a
		 * later fragment, which is never policed. Only a raw socket makes one. */
		if (f.frag) {
			metrics_inc(SL_CNT_POL_DENY);
			return TC_ACT_SHOT;
		}
		metrics_inc(SL_CNT_EG_BAD_PACKET);
		return TC_ACT_OK;
	}
	if (p == PARSE_FRAG) {
		metrics_inc(SL_CNT_POL_FRAGMENT);
		return TC_ACT_OK;
	}
	if (p != PARSE_TCP && p != PARSE_UDP)
		return TC_ACT_OK;
	if (p == PARSE_TCP && (!f.syn || f.ack))
		return TC_ACT_OK;
	ep = pol_endpoint(&f.saddr, f.family);
	if (!ep)
		return TC_ACT_OK;
	pol_flow_of(&pf, &f, SL_DIR_EGRESS);
	if ((ep->flags & SL_EP_F_ISO_OUT) && p == PARSE_UDP && pol_ct_reply(&pf)) {
		metrics_inc(SL_CNT_POL_REPLY);
		return TC_ACT_OK;
	}
	v = pol_decide(ep, &pf, SL_HOOK_TC_EGRESS);
	if (v == POL_DENY)
		return TC_ACT_SHOT;
	pol_ct_record(ep, &pf);
	return TC_ACT_OK;
}
