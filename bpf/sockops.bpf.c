// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* sockops - TCP socket events of every process in the node's cgroup.
 *
 * TCP_CONNECT_CB: a connect that sock_lb captured (socket storage holds its
 * original destination) now has its client port; publish the destination in
 * sl_origdst_v1 under (netns cookie, client port, listener family), which is
 * what the agent can see from the accepted end (SO_NETNS_COOKIE, getpeername).
 * Always lets the socket proceed.
 */
#include "lib/common.h"
#include "lib/mesh.h"
#include "lib/metrics.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void origdst_publish(struct bpf_sock_ops *skops)
{
	struct sl_origdst_key k = {};
	struct bpf_sock *sk = skops->sk;
	struct sl_orig *o;

	if (!sk)
		return;
	o = bpf_sk_storage_get(&sl_sk_orig_v1, sk, 0, 0);
	if (!o)
		return;		/* not a captured socket */
	k.netns_cookie = bpf_get_netns_cookie(skops);
	k.sport = bpf_htons((__u16)skops->local_port);
	k.family = o->listen_family;
	if (bpf_map_update_elem(&sl_origdst_v1, &k, o, BPF_ANY))
		metrics_inc(SL_CNT_ORIG_STORE_ERR);
	else
		metrics_inc(SL_CNT_ORIG_STORED);
	bpf_sk_storage_delete(&sl_sk_orig_v1, sk);
}

SEC("sockops")
int sockops_prog(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_TCP_CONNECT_CB)
		origdst_publish(skops);
	return 1;
}
