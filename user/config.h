/* SPDX-License-Identifier: Apache-2.0 */
/* config.h - Kubernetes objects from a directory of YAML and JSON files.
 *
 * Every *.yaml, *.yml and *.json file under the directory (recursively; names
 * starting with '.' skipped, symlinks followed, as in a ConfigMap mount) is read.
 * A file holds one object, several YAML documents, or a List (kind: List or
 * <Kind>List with items). Namespace, Pod, Service and EndpointSlice are decoded
 * into struct sl_resources; other known kinds (Gateway API, policy) are accepted
 * and counted in n_ignored with an info note; unknown kinds are errors.
 * Problems are reported as "file:line: reason" (diag.h). The set is all or
 * nothing: callers keep their last good set when any error is reported.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>

#include "diag.h"
#include "resources.h"

struct loop;

/* Decode every file under dir. Returns 0 with *out set when no error was found;
 * otherwise -EINVAL (or -errno for I/O) with the problems in errs, *out NULL. */
int config_load_dir(const char *dir, struct sl_resources **out, struct diags *errs);

/* Decode one buffer named name (for messages) into *res, which
 * config_resources_new() made. Returns 0 or -EINVAL with problems in errs
 * (what decoded well is kept in res). For tests and fuzzing. */
int config_decode_buf(struct sl_resources *res, const char *name, const char *buf, size_t len,
		      struct diags *errs);
struct sl_resources *config_resources_new(void);

/* Watch dir (recursively) with inotify; calls changed(arg) from the loop once
 * things settle (debounced, ~100 ms after the last event). */
struct config_watch;
int config_watch_new(struct config_watch **out, struct loop *l, const char *dir,
		     void (*changed)(void *arg), void *arg);
void config_watch_free(struct config_watch *w);		/* NULL-safe */

#endif
