/* SPDX-License-Identifier: Apache-2.0 */
/* abi.h - kernel <-> agent ABI: the keys and values of every pinned map.
 *
 * Included by bpf/ (after vmlinux.h) and by user/ (after <linux/types.h>).
 * Changing a struct's layout means a new map suffix (_vN, see pin.h): libbpf
 * cannot tell a field reorder of equal size from the old layout.
 * Every address and port is in network byte order unless it says otherwise.
 */
#ifndef SLUICE_ABI_H
#define SLUICE_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Capacities. Tests may shrink them; a change means a map parameter mismatch
 * with pins of an older agent, so the loader migrates (see loader.c). The
 * Service maps' sizes are the defaults of sluice-agent --max-services, which
 * sets them at load time (bpf_map__set_max_entries); the BPF code never
 * depends on them. */
#ifndef SL_SVC_MAX
#define SL_SVC_MAX	65536		/* service frontends (VIP:port:proto) */
#endif
#ifndef SL_BE_MAX
#define SL_BE_MAX	1048576		/* backend slots over all frontends */
#endif
#ifndef SL_AFF_MAX
#define SL_AFF_MAX	131072		/* sessionAffinity ClientIP entries (LRU) */
#endif
#ifndef SL_SOCK_MAX
#define SL_SOCK_MAX	262144		/* per-socket translations (LRU) */
#endif
#define SL_BE_PER_SVC_MAX 65535		/* slots of one frontend (u16 count) */

/* Mesh ports, host order: Istio ambient's numbers, so operators recognise them. */
#define SL_PORT_OUTBOUND	15001	/* in each enrolled pod, on loopback: captured connects */
#define SL_PORT_INBOUND		15006	/* in each enrolled pod: captured plaintext inbound (transparent) */
#define SL_PORT_HBONE		15008	/* in each enrolled pod: HBONE (mTLS + HTTP/2 CONNECT) */
#define SL_PORT_METRICS		15020	/* agent, 127.0.0.1: Prometheus */

/* SO_MARK of the agent's own sockets; the kernel programs never capture them. */
#define SL_MARK_AGENT		0x539	/* tunnels and passthrough connects from a pod's IP */
#define SL_MARK_DELIVER		0x53a	/* delivery to an app from the client's IP (policy-routed back) */
#define SL_MARK_MASK		0xfff
#define SL_DELIVER_TABLE	100	/* route table of the pod's "local 0/0 dev lo" for SL_MARK_DELIVER */

#define SL_AF_INET	2		/* AF_INET, as the kernel numbers it */
#define SL_AF_INET6	10		/* AF_INET6 */
#define SL_IPPROTO_TCP	6
#define SL_IPPROTO_UDP	17

/* One address of either family. IPv4 lives in v4 (= v6[0]), the rest zero.
 * octets is the same bytes in wire order, so `bpftool map dump` shows
 * 10.96.0.10 as [10,96,0,10,0,...] beside the words. */
struct sl_addr {
	union {
		__be32 v4;
		__be32 v6[4];
		__u8 octets[16];
	};
};

/* sl_svc_v1 key: a Service frontend. */
struct sl_svc_key {
	struct sl_addr vip;
	__be16 port;
	__u8 proto;			/* SL_IPPROTO_* */
	__u8 family;			/* SL_AF_* */
};
_Static_assert(sizeof(struct sl_svc_key) == 20, "sl_svc_key is ABI");

/* sl_svc_v1 flags */
#define SL_SVC_F_AFFINITY	0x0001	/* sessionAffinity: ClientIP */
#define SL_SVC_F_LOCAL		0x0002	/* internalTrafficPolicy: Local (slots hold local endpoints only) */
#define SL_SVC_F_L7		0x0004	/* has Gateway API routes: enrolled clients go to the agent on the VIP */

/* sl_svc_v1 value. count == 0 means: refuse the connection (no ready endpoint). */
struct sl_svc_val {
	__u32 svc_id;			/* key of this frontend's slots in sl_be_v1 */
	__u16 count;			/* ready backends, slots [0, count) */
	__u16 flags;			/* SL_SVC_F_* */
	__u32 aff_timeout;		/* seconds, host order; used with SL_SVC_F_AFFINITY */
	__u32 pad;
};
_Static_assert(sizeof(struct sl_svc_val) == 16, "sl_svc_val is ABI");

/* sl_be_v1 key: one backend slot of a frontend. */
struct sl_be_key {
	__u32 svc_id;
	__u32 slot;			/* 0 .. count-1 */
};
_Static_assert(sizeof(struct sl_be_key) == 8, "sl_be_key is ABI");

/* sl_be_v1 value: where a slot sends the connection (targetPort resolved). */
struct sl_be_val {
	struct sl_addr addr;
	__be16 port;
	__u8 family;			/* SL_AF_* */
	__u8 flags;			/* reserved, 0 */
};
_Static_assert(sizeof(struct sl_be_val) == 20, "sl_be_val is ABI");

/* sl_aff_v1 key: one client of one affinity frontend. The client is its
 * network namespace: connect() runs before the socket has a source address,
 * and a pod's netns is the pod (Cilium's socket LB keys affinity the same way). */
struct sl_aff_key {
	__u64 netns_cookie;
	__u32 svc_id;
	__u32 pad;
};
_Static_assert(sizeof(struct sl_aff_key) == 16, "sl_aff_key is ABI");

/* sl_aff_v1 and sl_udpfwd_v1 value: a remembered backend choice. The slot is
 * a hint; the backend is valid only while some slot below count still holds it,
 * so a sync that moves backends between slots keeps clients where they were. */
struct sl_sticky_val {
	__u64 last_used_ns;		/* bpf_ktime_get_boot_ns() clock */
	struct sl_be_val be;
	__u32 slot;
};
_Static_assert(sizeof(struct sl_sticky_val) == 32, "sl_sticky_val is ABI");

/* sl_revnat_v1 and sl_udpfwd_v1 key: one peer address of one socket
 * (revnat: the backend it talks to; udpfwd: the VIP it sends to). */
struct sl_sock_key {
	__u64 cookie;			/* bpf_get_socket_cookie() */
	struct sl_addr addr;
	__be16 port;
	__u8 family;
	__u8 pad[5];
};
_Static_assert(sizeof(struct sl_sock_key) == 32, "sl_sock_key is ABI");

/* sl_revnat_v1 value: the VIP:port the application asked for. */
struct sl_sock_val {
	struct sl_addr addr;
	__be16 port;
	__u8 family;
	__u8 pad;
};
_Static_assert(sizeof(struct sl_sock_val) == 20, "sl_sock_val is ABI");

/* ---- capture of enrolled pods ---- */

/* sl_netns_v1 value: an enrolled pod's network namespace (key: netns cookie).
 * Written by: agent (pods). Read by: sock_lb connect4/6. */
#define SL_NETNS_F_ENROLLED	0x0001
struct sl_netns_val {
	__u32 pod_id;			/* the agent's number for the pod (debugging) */
	__u32 flags;			/* SL_NETNS_F_* */
	struct sl_addr ip4;		/* the pod's own addresses: connects to them */
	struct sl_addr ip6;		/*   stay inside the pod */
};
_Static_assert(sizeof(struct sl_netns_val) == 40, "sl_netns_val is ABI");

/* Where a captured connect() was going. sock_lb keeps it in socket storage;
 * sockops copies it to sl_origdst_v1 once the client port is known. */
#define SL_ORIG_F_SERVICE	0x01	/* addr:port was chosen for the Service in vip */
struct sl_orig {
	struct sl_addr addr;		/* the destination after Service load balancing */
	__be16 port;
	__u8 family;
	__u8 flags;			/* SL_ORIG_F_* */
	struct sl_addr vip;		/* the Service frontend, with SL_ORIG_F_SERVICE */
	__be16 vip_port;
	__u8 vip_family;
	__u8 listen_family;		/* which 15001 listener: SL_AF_INET (127.0.0.1) or SL_AF_INET6 (::1) */
};
_Static_assert(sizeof(struct sl_orig) == 40, "sl_orig is ABI");

/* sl_origdst_v1 key: the client side of a connection to a pod's 15001.
 * Written by: sockops (TCP_CONNECT_CB). Read and deleted by: agent on accept. */
struct sl_origdst_key {
	__u64 netns_cookie;
	__be16 sport;			/* the client's port, as getpeername() on the accepted socket shows */
	__u8 family;			/* the listener's family */
	__u8 pad[5];
};
_Static_assert(sizeof(struct sl_origdst_key) == 16, "sl_origdst_key is ABI");

/* ---- same-node acceleration (sockops records, sk_msg redirects) ----
 *
 * sl_socks_v1 (sockhash) holds the established sockets of mesh hops whose two
 * ends are on this node and in one network namespace: an app's captured
 * connection to its pod's 15001 and the agent's end of it, the agent's
 * delivery socket (SL_MARK_DELIVER) and the app's end of that. The key is a
 * socket's own view of its connection; the peer's key is the same with local
 * and remote swapped, so sk_msg finds the peer by one lookup. bpftool shows the
 * value as the socket's cookie.
 */
struct sl_hop_key {
	__u64 netns_cookie;		/* the two ends of a hop share their netns */
	struct sl_addr local;		/* IPv4 in the first 4 bytes, the rest 0 */
	struct sl_addr remote;
	__be16 lport;
	__be16 rport;
	__u8 family;			/* SL_AF_INET, SL_AF_INET6 (IPv4-mapped ends as IPv4) */
	__u8 pad[3];
};
_Static_assert(sizeof(struct sl_hop_key) == 48, "sl_hop_key is ABI");

/* sl_sk_accel_v1 (socket storage) of a socket in sl_socks_v1. Written by:
 * sockops (role), sk_msg (the rest). Read by: the agent (by fd), bpftool. */
#define SL_ACCEL_ROLE_APP_OUT	1	/* an app's connection to its pod's 15001 */
#define SL_ACCEL_ROLE_AGENT_OUT	2	/* the agent's accepted end of it */
#define SL_ACCEL_ROLE_DELIVER	3	/* the agent's delivery socket to an app */
#define SL_ACCEL_ROLE_APP_IN	4	/* the app's accepted end of a delivery */
#define SL_ACCEL_F_STACK	0x01	/* its peer was missing once: sends stay on TCP for good,
					 * so nothing overtakes bytes the peer has not read yet */
struct sl_sk_accel {
	__u32 role;			/* SL_ACCEL_ROLE_* */
	__u32 flags;			/* SL_ACCEL_F_* */
	__u64 redirected_bytes;		/* sent socket to socket */
	__u64 stack_bytes;		/* sent through TCP */
};
_Static_assert(sizeof(struct sl_sk_accel) == 24, "sl_sk_accel is ABI");

/* sl_hoppair_v1: a direct connection (two pods of this node, no tunnel, no
 * L7) whose app sockets may talk to each other without the agent in between.
 * Key: an app socket's sl_hop_key (the client's socket to 15001, or the
 * server's accepted delivery socket). Written by: the agent (tunnel relay),
 * whole values only. Read by: sk_msg. A send goes straight into the peer app
 * socket only once the agent has delivered every byte this socket sent it
 * before (relayed == its sl_sk_accel redirected_bytes + stack_bytes), so
 * nothing overtakes what is still on its way through the agent. */
struct sl_hop_pair {
	struct sl_hop_key peer;		/* the app socket at the other end */
	__u64 relayed;			/* bytes of this direction the agent has delivered */
};
_Static_assert(sizeof(struct sl_hop_pair) == 56, "sl_hop_pair is ABI");

/* sl_hopstat_v1 (same key): what went app to app. Created (zero) by the agent
 * with the pair, counted by sk_msg in place, read and deleted at the end. */
struct sl_hop_stat {
	__u64 direct_bytes;
	__u64 direct_sends;
};
_Static_assert(sizeof(struct sl_hop_stat) == 16, "sl_hop_stat is ABI");

#ifndef SL_SOCKS_MAX
#define SL_SOCKS_MAX	65536		/* accelerated sockets on one node (two per hop) */
#endif

#ifndef SL_NETNS_MAX
#define SL_NETNS_MAX	4096		/* enrolled pods on one node */
#endif
#ifndef SL_ORIGDST_MAX
#define SL_ORIGDST_MAX	65536		/* captured connects not yet accepted (LRU) */
#endif

/* ---- NetworkPolicy (policy.c compiles; pod_ingress, pod_egress, sock_lb enforce) ----
 *
 * A peer address has an identity: the class of addresses that every policy
 * peer (selector or ipBlock) of this node's policies treats alike.
 * sl_polid_v1 (LPM) maps an address to it: pod IPs as /32 and /128, ipBlock
 * CIDRs and their excepts as prefixes. An address with no entry is
 * SL_POLID_WORLD, which no rule names.
 * sl_polep_v1 holds each local pod under policy (key: its IP): its endpoint
 * id and whether it is isolated for ingress and egress.
 * sl_polrule_v1 (LPM) holds what an isolated endpoint allows: {endpoint,
 * direction, protocol, peer identity, port}, the port as a prefix so that a
 * range (port..endPort) is a handful of entries and "every port" one. A rule
 * for any peer has peer SL_POLID_ANY. Two lookups (the peer, then ANY) decide,
 * whatever the number of rules.
 */
#define SL_POLID_ANY	0		/* sl_polrule_v1: a rule for every peer */
#define SL_POLID_WORLD	1		/* an address no policy peer matches */

#define SL_DIR_INGRESS	0
#define SL_DIR_EGRESS	1

/* sl_polid_v1 key (LPM trie): prefixlen counts the family byte (8) plus the
 * address bits, so IPv4 and IPv6 share one trie. */
struct sl_polid_key {
	__u32 prefixlen;
	__u8 family;			/* SL_AF_* */
	__u8 pad[3];
	struct sl_addr addr;		/* IPv4 in the first 4 bytes */
};
_Static_assert(sizeof(struct sl_polid_key) == 24, "sl_polid_key is ABI");
#define SL_POLID_KEY_BITS(addr_bits) (32 + (addr_bits))	/* family and pad, then the address */

struct sl_polid_val {
	__u32 id;
};

/* sl_polep_v1 key: a local pod's address. */
struct sl_polep_key {
	struct sl_addr addr;
	__u8 family;
	__u8 pad[3];
};
_Static_assert(sizeof(struct sl_polep_key) == 20, "sl_polep_key is ABI");

#define SL_EP_F_ISO_IN		0x0001	/* a policy with policyTypes Ingress selects it */
#define SL_EP_F_ISO_OUT		0x0002	/* a policy with policyTypes Egress selects it */
#define SL_EP_F_NO_STEER	0x0004	/* not in the mesh: pod_ingress only polices it */
#define SL_EP_F_ENROLLED	0x0008	/* in the mesh: HBONE (15008) is the agent's to police */
#define SL_EP_F_NO_RANGES	0x0010	/* every rule of it is in sl_polport_v1: skip the LPM trie */
/* Lookups a decision may skip, by direction (flag << SL_DIR_*). Negative, as
 * NO_RANGES: a value written without them (an older agent) costs lookups,
 * never a wrong deny. */
#define SL_EP_F_NO_ANY_PEER	0x0020	/* 0x20 in, 0x40 out: no rule allows every peer */
#define SL_EP_F_NO_ALL_PORTS	0x0080	/* 0x80 in, 0x100 out: no sl_polport_v1 entry of port 0 */
#define SL_EP_F_DIR(flag, dir)	((flag) << (dir))
/* Positive, unlike the skip flags: set only when sl_polrange_v1 holds every
 * port range of the endpoint (an older agent's value takes the LPM trie). */
#define SL_EP_F_RANGE_LIST	0x0200	/* ranges in sl_polrange_v1: no LPM trie */
/* Skip flags again (negative, by direction): no rule of the endpoint that
 * way names the protocol, so nothing of it can be allowed and the decision
 * needs neither the peer's identity nor a rule lookup. The common case under
 * a UDP flood: a pod that serves TCP only. */
#define SL_EP_F_NO_TCP		0x0400	/* 0x400 in, 0x800 out */
#define SL_EP_F_NO_UDP		0x1000	/* 0x1000 in, 0x2000 out */
#define SL_EP_F_NO_SCTP		0x4000	/* 0x4000 in, 0x8000 out */
struct sl_polep_val {
	__u32 ep_id;
	__u32 flags;			/* SL_EP_F_* */
	__u32 deny_slot[2];		/* sl_polstat_v1 slot of a default deny, by SL_DIR_* */
};
_Static_assert(sizeof(struct sl_polep_val) == 16, "sl_polep_val is ABI");

/* sl_polrule_v1 key (LPM trie). Full length SL_POLRULE_BITS; a rule for every
 * port of a protocol is SL_POLRULE_BITS - 16. */
struct sl_polrule_key {
	__u32 prefixlen;
	__u32 ep_id;
	__u32 peer_id;			/* SL_POLID_ANY or an identity */
	__u8 dir;			/* SL_DIR_* */
	__u8 proto;			/* SL_IPPROTO_* */
	__be16 port;
};
_Static_assert(sizeof(struct sl_polrule_key) == 16, "sl_polrule_key is ABI");
#define SL_POLRULE_BITS		96

struct sl_polrule_val {
	__u32 slot;			/* sl_polstat_v1 slot of the allowing rule */
};

/* sl_polport_v1 (hash): the rule entries for one port or every port (port 0)
 * again, so that the common case costs one hash lookup whatever the number of
 * rules; the LPM trie stays the whole truth (for endpoints with neither
 * SL_EP_F_NO_RANGES nor SL_EP_F_RANGE_LIST). */
struct sl_polport_key {
	__u32 ep_id;
	__u32 peer_id;
	__u8 dir;
	__u8 proto;
	__be16 port;			/* 0: every port */
};
_Static_assert(sizeof(struct sl_polport_key) == 12, "sl_polport_key is ABI");

/* sl_polrange_v1 (hash): the port-range entries of one endpoint, peer,
 * direction and protocol, as the aligned blocks the LPM trie holds, longest
 * prefix first. The first block that holds a port is the trie's longest
 * match among them, so an endpoint with SL_EP_F_RANGE_LIST is decided by
 * hash lookups alone: its port (sl_polport_v1), these blocks, every port
 * (sl_polport_v1, port 0): whatever the number of rules. An endpoint with
 * more blocks for one key than SL_POLRANGE_N stays on the trie. */
#define SL_POLRANGE_N		32
struct sl_polrange_key {
	__u32 ep_id;
	__u32 peer_id;
	__u8 dir;
	__u8 proto;
	__u16 pad;
};
_Static_assert(sizeof(struct sl_polrange_key) == 12, "sl_polrange_key is ABI");
struct sl_polrange {
	__u16 lo, hi;			/* host order, inclusive */
	__u32 slot;			/* sl_polstat_v1 slot of the allowing rule */
};
struct sl_polrange_val {
	__u32 n;			/* blocks in r, at most SL_POLRANGE_N */
	__u32 pad;
	struct sl_polrange r[SL_POLRANGE_N];
};
_Static_assert(sizeof(struct sl_polrange_val) == 8 + 8 * SL_POLRANGE_N, "sl_polrange_val is ABI");

/* sl_polstat_v1 (per-CPU array, key: slot): what a rule allowed and a default
 * deny denied. The agent names the slots (/policies, /metrics); slot 0 is
 * never counted. */
struct sl_polstat {
	__u64 packets;			/* connections (TCP SYN, connect, sendmsg) and UDP datagrams */
};

/* sl_polct_v1 key: a UDP flow that policy let through, so that its replies
 * pass the other way (TCP needs none: only a SYN is policed). side says whose
 * hook recorded it: the source pod's egress or the destination pod's ingress. */
struct sl_polct_key {
	struct sl_addr saddr, daddr;
	__be16 sport, dport;
	__u8 family;
	__u8 proto;
	__u8 side;			/* SL_DIR_*: egress of saddr's pod, ingress of daddr's pod */
	__u8 pad;
};
_Static_assert(sizeof(struct sl_polct_key) == 40, "sl_polct_key is ABI");
struct sl_polct_val {
	__u64 last_ns;			/* bpf_ktime_get_boot_ns() of the last datagram */
};

/* sl_polctport_v1 (array; key: the side, SL_DIR_*): the local pod ports of
 * the flows recorded at that side, one bit per port (the __be16 as stored:
 * word port >> 6, bit port & 63). A hook sets the bit with the flow and
 * nothing clears it: a clear bit means no flow of that port is in
 * sl_polct_v1, so a datagram to (ingress) or from (egress) that port is no
 * reply and needs no LRU lookup (a flood against a denied port hashes no
 * 40-byte key); a stale bit costs only that lookup. */
#define SL_POLCT_PORT_WORDS	1024
#define SL_POLCT_PORT_WORD(port)	(((__u16)(port) >> 6) & (SL_POLCT_PORT_WORDS - 1))
#define SL_POLCT_PORT_BIT(port)		(1ULL << ((__u16)(port) & 63))
/* A recorded flow's local pod port: the destination's of an ingress flow. */
#define SL_POLCT_KEY_PORT(k)		((k)->side == SL_DIR_INGRESS ? (k)->dport : (k)->sport)
struct sl_polct_ports {
	__u64 bits[SL_POLCT_PORT_WORDS];
};

/* sl_polev_v1 (ring buffer): a denied connection or datagram, for the
 * agent's rate-limited log. */
struct sl_polev {
	struct sl_addr saddr, daddr;
	__be16 sport, dport;
	__u8 family, proto, dir;
	__u8 hook;			/* SL_HOOK_* */
	__u32 slot;			/* the deny slot */
	__u32 pad;
};
_Static_assert(sizeof(struct sl_polev) == 48, "sl_polev is ABI");
/* sl_polevrl_v1 (per-CPU array, one slot): the deny events' budget, so that
 * a flood of denied packets costs the agent nothing (it logs 10 a second). */
struct sl_polev_budget {
	__u64 last_ns;			/* bpf_ktime_get_coarse_ns() of the last refill */
	__u64 tokens;
};
#define SL_POLEV_NS_PER_TOKEN	20000000ULL	/* 50 events a second per CPU ... */
#define SL_POLEV_BURST		50		/* ... after a burst of 50 */

#define SL_HOOK_CONNECT		1	/* sock_lb connect/sendmsg */
#define SL_HOOK_TC_INGRESS	2
#define SL_HOOK_TC_EGRESS	3
#define SL_HOOK_XDP		4

#ifndef SL_POLID_MAX
#define SL_POLID_MAX	65536		/* pod IPs and policy CIDRs */
#endif
#ifndef SL_POLEP_MAX
#define SL_POLEP_MAX	8192		/* local pod addresses under policy */
#endif
#ifndef SL_POLRULE_MAX
#define SL_POLRULE_MAX	524288		/* compiled rule entries */
#endif
#ifndef SL_POLRANGE_MAX
#define SL_POLRANGE_MAX	65536		/* endpoint, peer, direction, protocol with port ranges */
#endif
#ifndef SL_POLSTAT_MAX
#define SL_POLSTAT_MAX	65536		/* rule and default-deny slots */
#endif
#ifndef SL_POLCT_MAX
#define SL_POLCT_MAX	65536		/* UDP flows let through (LRU) */
#endif
#define SL_POLCT_TIMEOUT_NS (120ULL * 1000000000ULL)	/* conntrack's UDP stream timeout */

/* sl_metrics_v1: per-CPU array indexed by enum sl_counter (counters.h). */
struct sl_metric {
	__u64 count;
};

#endif /* SLUICE_ABI_H */
