/* SPDX-License-Identifier: Apache-2.0 */
/* polsync.h - the NetworkPolicy maps made to say what the compiled tables
 * say, as a diff; their counters; and the kernel's deny events, logged.
 *
 * A diff never shows the kernel a state stricter or looser than the old or
 * the new policy for long: new and changed rule entries first, then
 * identities, then endpoints (isolation) and their removal, then stale
 * identities and rules. The shadow is read back from the maps at start, so a
 * restarted agent rewrites only what differs.
 */
#ifndef SL_POLSYNC_H
#define SL_POLSYNC_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct loop;
struct polsync;

struct polsync_maps {
	int id_fd, ep_fd, rule_fd;	/* sl_polid_v1, sl_polep_v1, sl_polrule_v1 */
	int port_fd;			/* sl_polport_v1 */
	int range_fd;			/* sl_polrange_v1 */
	int stat_fd;			/* sl_polstat_v1 */
	int ev_fd;			/* sl_polev_v1 (ring buffer); -1: no events */
};

struct polsync_stats {
	size_t updates, deletes, errors;
	double ms;
};

/* reg names the slots in deny log lines. 0 or -errno. */
int polsync_new(struct polsync **out, struct loop *loop, const struct polsync_maps *maps,
		const struct policy_registry *reg);
void polsync_free(struct polsync *s);		/* NULL-safe; leaves the maps */

/* Make the maps hold t. Goes on after a failed map operation and returns the
 * first error (-errno). */
int polsync_apply(struct polsync *s, const struct policy_tables *t, struct polsync_stats *st);
/* Entries in the maps now (from the shadow). */
void polsync_counts(const struct polsync *s, size_t *ids, size_t *eps, size_t *rules);

/* The kernel's count for slot (sum over CPUs), plus what the agent counted
 * itself (polsync_agent_count). */
uint64_t polsync_slot_count(const struct polsync *s, uint32_t slot);
void polsync_agent_count(struct polsync *s, uint32_t slot, bool deny, const char *what);
/* "policy: deny <what>: <why>" under the same rate limit as the kernel's denies. */
void polsync_log_deny(struct polsync *s, const char *what, const char *why);

#endif
