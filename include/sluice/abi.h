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
 * with pins of an older agent, so the loader migrates (see loader.c). */
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

#ifndef SL_NETNS_MAX
#define SL_NETNS_MAX	4096		/* enrolled pods on one node */
#endif
#ifndef SL_ORIGDST_MAX
#define SL_ORIGDST_MAX	65536		/* captured connects not yet accepted (LRU) */
#endif

/* sl_metrics_v1: per-CPU array indexed by enum sl_counter (counters.h). */
struct sl_metric {
	__u64 count;
};

#endif /* SLUICE_ABI_H */
