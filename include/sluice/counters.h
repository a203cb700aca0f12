/* SPDX-License-Identifier: Apache-2.0 */
/* counters.h - what the kernel programs count, as one X-macro list.
 *
 * Yields the index enum for sl_metrics_v1 (BPF and agent) and the names the
 * agent and sluicectl print. Never renumber: retire an entry as UNUSED_n.
 */
#ifndef SLUICE_COUNTERS_H
#define SLUICE_COUNTERS_H

#define SL_COUNTERS(X)								\
	X(LB_XLATE,         0, "lb_translated",      "connect/sendmsg to a VIP sent to a backend") \
	X(LB_NO_BACKEND,    1, "lb_no_backend",      "refused: service has no ready endpoint") \
	X(LB_AFF_HIT,       2, "lb_affinity_hit",    "sessionAffinity reused the client's backend") \
	X(LB_AFF_MISS,      3, "lb_affinity_miss",   "sessionAffinity chose anew (new or expired or gone)") \
	X(LB_BAD_SLOT,      4, "lb_bad_slot",        "internal: slot missing below count (fail open)") \
	X(LB_REVNAT,        5, "lb_revnat",          "getpeername/recvmsg showed the VIP") \
	X(LB_REVNAT_FULL,   6, "lb_revnat_update_err","internal: reverse entry not stored (fail open)") \
	X(LB_UDP_REUSE,     7, "lb_udp_flow_reuse",  "unconnected UDP kept its backend for a VIP") \
	X(LB_V4MAPPED,      8, "lb_v4mapped",        "IPv4-mapped IPv6 destination translated") \
	X(CAP_REDIRECT,     9, "capture_redirected", "an enrolled pod's connect sent to its 15001") \
	X(CAP_NO_LISTENER, 10, "capture_no_listener","enrolled pod but no agent listener: connect left alone (fail open)") \
	X(CAP_STORAGE_ERR, 11, "capture_storage_err","internal: original destination not stored (fail open)") \
	X(ORIG_STORED,     12, "origdst_stored",     "sockops recorded a captured connection's destination") \
	X(ORIG_STORE_ERR,  13, "origdst_store_err",  "internal: sl_origdst_v1 update failed") \
	X(IN_STEERED,      14, "ingress_steered",    "pod_ingress: inbound SYN assigned to the pod's 15006") \
	X(IN_NO_LISTENER,  15, "ingress_no_listener","pod_ingress: no 15006 listener: packet passed (fail open)") \
	X(IN_ASSIGN_ERR,   16, "ingress_assign_err", "pod_ingress: bpf_sk_assign failed: packet passed") \
	X(IN_BAD_PACKET,   17, "ingress_bad_packet", "pod_ingress: truncated or malformed header: packet passed") \
	X(POL_ALLOW,       18, "policy_allowed",     "NetworkPolicy: a rule allowed a new connection or datagram of an isolated pod") \
	X(POL_DENY,        19, "policy_denied",      "NetworkPolicy: denied (connect EPERM, or packet dropped)") \
	X(POL_REPLY,       20, "policy_reply",       "NetworkPolicy: a UDP reply to an allowed flow passed") \
	X(POL_HBONE,       21, "policy_hbone_passed","NetworkPolicy: HBONE to an enrolled pod left to the agent") \
	X(POL_FRAGMENT,    22, "policy_fragment",    "NetworkPolicy: a later fragment passed (reassembly needs the policed first)") \
	X(POL_EV_LOST,     23, "policy_event_lost",  "NetworkPolicy: deny event not logged (ring buffer full)") \
	X(EG_BAD_PACKET,   24, "egress_bad_packet",  "pod_egress: truncated or malformed header: packet passed") \
	X(POL_EV_LIMITED,  25, "policy_event_limited","NetworkPolicy: deny event not sent (per-CPU budget of 50/s spent)") \
	X(SOCK_ADDED,      26, "sockmap_added",      "sockops: a same-node mesh socket recorded in sl_socks_v1") \
	X(SOCK_ADD_ERR,    27, "sockmap_add_err",    "sockops: sl_socks_v1 update failed (the socket stays on TCP)") \
	X(SOCK_REDIRECT,   28, "sockmap_redirected", "sk_msg: a send moved straight to the peer socket") \
	X(SOCK_BYTES,      29, "sockmap_redirected_bytes","sk_msg: bytes moved straight to the peer socket") \
	X(SOCK_FALLBACK,   30, "sockmap_fallback",   "sk_msg: peer socket not found: this socket stays on TCP") \
	X(SOCK_STACK,      31, "sockmap_stack_sends","sk_msg: a send of a socket on TCP (after a fallback)") \
	X(SOCK_DIRECT,     32, "sockmap_direct",     "sk_msg: a send moved app to app, past the agent (direct connection)") \
	X(SOCK_DIRECT_BYTES,33,"sockmap_direct_bytes","sk_msg: bytes moved app to app, past the agent")

enum sl_counter {
#define SL_COUNTER_ENUM(name, num, str, help) SL_CNT_##name = num,
	SL_COUNTERS(SL_COUNTER_ENUM)
#undef SL_COUNTER_ENUM
	SL_CNT_MAX
};

#endif /* SLUICE_COUNTERS_H */
