/* SPDX-License-Identifier: Apache-2.0 */
/* config.h - load-time constants. The loader sets them between open and load
 * (skel->rodata->cfg_*), so the verifier prunes what is disabled. */
#ifndef SL_BPF_CONFIG_H
#define SL_BPF_CONFIG_H

/* How long an unconnected UDP socket keeps the backend it was given for a
 * VIP while it stays silent (conntrack's UDP stream timeout is 120 s). */
const volatile __u64 cfg_udp_flow_timeout_ns = 120ULL * 1000000000ULL;

/* The agent's own cgroup (v2 id): its connects are never captured, whatever
 * their mark (a second guard; the marks are the first). 0: no such check. */
const volatile __u64 cfg_agent_cgroup_id = 0;

/* Same-node acceleration (sockops + sk_msg): sockets of same-node mesh hops
 * go into sl_socks_v1. Off with --no-sockmap. */
const volatile __u32 cfg_sockmap = 1;

#endif
