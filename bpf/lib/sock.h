/* SPDX-License-Identifier: Apache-2.0 */
/* sock.h - per-socket translation state of socket-level load balancing.
 *
 * Maps:
 *   sl_revnat_v1  (socket cookie, backend) -> VIP.  Written by: sock_lb connect/
 *                 sendmsg. Read by: sock_lb getpeername/recvmsg, so the application
 *                 sees the address it asked for. LRU: closed sockets age out.
 *   sl_udpfwd_v1  (socket cookie, VIP) -> backend choice of an unconnected UDP
 *                 socket. Written and read by: sock_lb sendmsg. LRU.
 * Both are pinned so that sockets opened before an agent restart keep working.
 */
#ifndef SL_BPF_SOCK_H
#define SL_BPF_SOCK_H

#include "common.h"
#include "metrics.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sl_sock_key);
	__type(value, struct sl_sock_val);
	__uint(max_entries, SL_SOCK_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_revnat_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sl_sock_key);
	__type(value, struct sl_sticky_val);
	__uint(max_entries, SL_SOCK_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_udpfwd_v1 SEC(".maps");

/* Remember that this socket's peer be really is vip (fail open on error). */
static __always_inline void revnat_store(__u64 cookie, const struct sl_be_val *be,
					 const struct sl_svc_key *vip)
{
	struct sl_sock_key k = { .cookie = cookie, .addr = be->addr, .port = be->port,
				 .family = be->family };
	struct sl_sock_val v = { .addr = vip->vip, .port = vip->port, .family = vip->family };

	if (bpf_map_update_elem(&sl_revnat_v1, &k, &v, BPF_ANY))
		metrics_inc(SL_CNT_LB_REVNAT_FULL);
}

/* The VIP this socket's peer stands for, or NULL. */
static __always_inline struct sl_sock_val *revnat_lookup(__u64 cookie, const struct sl_addr *peer,
							 __be16 port, __u8 family)
{
	struct sl_sock_key k = { .cookie = cookie, .addr = *peer, .port = port, .family = family };

	return bpf_map_lookup_elem(&sl_revnat_v1, &k);
}

#endif
