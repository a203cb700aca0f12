/* SPDX-License-Identifier: Apache-2.0 */
/* views.h - the status socket's JSON documents, rendered from the agent's state.
 * Shapes are documented in docs/operations.md and read by sluicectl. */
#ifndef SL_VIEWS_H
#define SL_VIEWS_H

#include <stdio.h>

#include <jansson.h>

struct agent;

json_t *views_status(const struct agent *a);
json_t *views_services(const struct agent *a);
json_t *views_workloads(const struct agent *a);
json_t *views_maps(const struct agent *a);
json_t *views_sockmap(const struct agent *a);	/* same-node acceleration and its sockets */
json_t *views_connections(const struct agent *a);
json_t *views_certs(const struct agent *a);
/* NetworkPolicies in force with counters, and the local pods they police. */
json_t *views_policies(const struct agent *a);
/* One decision: ?from=&to=&port=&protocol=; *code 400/404/503 on bad input. */
json_t *views_policy_check(const struct agent *a, const char *query, int *code);
/* Gateway API routes with their parents' conditions. */
json_t *views_routes(const struct agent *a);
#define WAYPOINT_HEADER_ARGS 16
/* Which rule and backend a request would take:
 * ?service=ns/name&port=N&method=M&path=P[&from=NS][&host=H][&h0=k:v...]. */
json_t *views_route_check(const struct agent *a, const char *query, int *code);
/* Prometheus text of the NetworkPolicy counters into f. 0 or -EIO. */
int views_policy_metrics(const struct agent *a, FILE *f);

#endif
