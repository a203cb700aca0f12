/* SPDX-License-Identifier: Apache-2.0 */
/* privs.h - the agent gives up the capabilities it no longer needs.
 *
 * Once set up (programs loaded, maps pinned, hooks attached, status socket
 * bound), the agent keeps only what its running work asks for: CAP_BPF and
 * CAP_PERFMON (map updates, programs for pods that arrive later),
 * CAP_NET_ADMIN (tcx/TC attach, routes, rules and addresses over netlink,
 * SO_MARK, IP_TRANSPARENT), CAP_NET_RAW, CAP_SYS_ADMIN (setns into pods'
 * network namespaces: there is no narrower capability for it),
 * CAP_NET_BIND_SERVICE (Gateway listeners on ports below 1024) and
 * CAP_DAC_READ_SEARCH (config files of any mode, as mounted). Everything else
 * goes from the effective, permitted, inheritable and bounding sets, and
 * no_new_privs is set, so nothing the agent runs can get them back.
 */
#ifndef SL_PRIVS_H
#define SL_PRIVS_H

#include <stddef.h>
#include <stdint.h>

/* The capabilities kept, as a bit mask (1 << CAP_x). */
uint64_t privs_kept_mask(void);

/* Drop every capability not kept. Returns 0, or -errno with what failed in
 * err. Not root (no CAP_SETPCAP): -EPERM, nothing changed. */
int privs_drop(char *err, size_t len);

/* Names of the capabilities in mask, comma-separated ("bpf,net_admin"). */
void privs_names(uint64_t mask, char *buf, size_t len);

#endif
