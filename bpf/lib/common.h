/* SPDX-License-Identifier: Apache-2.0 */
/* common.h - what every sluice BPF program includes first: vmlinux.h, libbpf's
 * helpers, the shared ABI, and the constants vmlinux.h does not carry. */
#ifndef SL_BPF_COMMON_H
#define SL_BPF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <sluice/abi.h>
#include <sluice/counters.h>

/* vmlinux.h has no #defines; these are the kernel's values (uapi). */
#define AF_INET		2
#define AF_INET6	10
#define ECONNREFUSED	111

/* IPv6 extension headers (uapi in6.h; vmlinux.h lacks them). */
#define IPPROTO_HOPOPTS		0
#define IPPROTO_ROUTING		43
#define IPPROTO_FRAGMENT	44
#define IPPROTO_DSTOPTS		60

#define ETH_P_IP	0x0800
#define ETH_P_IPV6	0x86DD
#define TC_ACT_OK	0
#define TC_ACT_SHOT	2

/* Return codes of cgroup sock_addr programs. */
#define SL_SOCK_PROCEED	1
#define SL_SOCK_REJECT	0

#endif
