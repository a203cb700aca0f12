/* SPDX-License-Identifier: Apache-2.0 */
/* sync.h - make the service maps say what the model says, as a diff.
 *
 * sync keeps a shadow of sl_svc_v1 and sl_be_v1, read back from the kernel
 * when it starts (so a restarted agent neither flushes nor renumbers what its
 * predecessor wrote), and on each apply writes only what changed, in an order
 * that never shows a reader a missing slot: slots below the new count first,
 * then the frontend, then slots above it are deleted. Backends that stay keep
 * their slot. Service ids are never reused while the agent runs.
 *
 * Uses the map fds only (libbpf's syscall wrappers, no objects or skeletons).
 */
#ifndef SL_SYNC_H
#define SL_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include <sluice/abi.h>

#include "diag.h"

struct sl_model;
struct sync;

struct sync_maps {
	int svc_fd;			/* sl_svc_v1 */
	int be_fd;			/* sl_be_v1 */
	uint32_t svc_max, be_max;	/* their max_entries */
};

struct sync_stats {
	size_t frontends, backends;	/* in the maps after the apply */
	size_t updates, deletes;	/* map operations of the apply */
	size_t errors;			/* failed map operations */
	double ms;			/* wall time of the apply */
};

/* Read the maps' current content. Stale slots (beyond a count, or of a
 * frontend that no longer exists, left by an interrupted apply) are removed. */
int sync_new(struct sync **out, const struct sync_maps *maps);
void sync_free(struct sync *s);				/* NULL-safe; leaves the maps */

/* Would m fit in the maps? Adds a "map full" problem to errs if not. */
int sync_check(const struct sync *s, const struct sl_model *m, struct diags *errs);
/* Make the maps match m. On a failed map operation goes on with the rest and
 * returns the first error (-errno); the shadow follows what the kernel holds. */
int sync_apply(struct sync *s, const struct sl_model *m, struct sync_stats *st);
/* The service id of a frontend in the maps, 0 if none. */
uint32_t sync_svc_id(const struct sync *s, const struct sl_svc_key *k);
size_t sync_n_frontends(const struct sync *s);

#endif
