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

/* Return codes of cgroup sock_addr programs. */
#define SL_SOCK_PROCEED	1
#define SL_SOCK_REJECT	0

#endif
