/* SPDX-License-Identifier: Apache-2.0 */
/* kcond.h - reading Kubernetes status conditions in tests. */
#ifndef SL_KCOND_H
#define SL_KCOND_H

#include <jansson.h>

/* The condition of type in conds (an array of {"type", "status",
 * "reason", ...}); NULL when none. */
json_t *kcond_of(json_t *conds, const char *type);

#endif
