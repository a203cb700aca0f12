/* SPDX-License-Identifier: Apache-2.0 */
/* views.h - the status socket's JSON documents, rendered from the agent's state.
 * Shapes are documented in docs/operations.md and read by sluicectl. */
#ifndef SL_VIEWS_H
#define SL_VIEWS_H

#include <jansson.h>

struct agent;

json_t *views_status(const struct agent *a);
json_t *views_services(const struct agent *a);
json_t *views_workloads(const struct agent *a);
json_t *views_maps(const struct agent *a);
json_t *views_connections(const struct agent *a);
json_t *views_certs(const struct agent *a);

#endif
