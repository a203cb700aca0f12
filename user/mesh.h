/* SPDX-License-Identifier: Apache-2.0 */
/* mesh.h - the agent's mesh wiring: identity + pods + tunnel, and what they
 * ask of the rest of the agent (the model as directory, the loader's maps).
 *
 * mesh_start() builds the identity store, the tunnel and the pods module in
 * that order and points agent->identity/tunnel/pods at them; pods then hand
 * each enrolled pod to the tunnel (pod_ready) before capture starts (enrol).
 * mesh_stop() undoes it in reverse: pods first (capture stops, the tunnel lets
 * go of the listeners), then the tunnel, then the identity store.
 */
#ifndef SL_MESH_H
#define SL_MESH_H

#include "identity.h"
#include "pods.h"
#include "tunnel.h"
#include "waypoint.h"
#include "gateway.h"

struct agent;
struct loop;

struct mesh_opts {
	struct identity_opts identity;
	struct tunnel_opts tunnel;
	struct waypoint_opts waypoint;
	struct gateway_opts gateway;
	struct pods_opts pods;
};

/* 0, or -errno with *err (malloc'ed, the caller frees) saying what failed. */
int mesh_start(struct agent *a, struct loop *l, const struct mesh_opts *o, char **err);
void mesh_stop(struct agent *a);	/* NULL-safe parts; before loop_free() */
/* The pods module alone (mesh_start calls it; without a mesh, NetworkPolicy
 * still needs the pods' TC programs). */
int mesh_pods_start(struct agent *a, struct loop *l, const struct pods_opts *o, char **err);

/* A new configuration is in force: Gateways that are gone stop being mesh
 * clients (their HBONE connections drain). */
void mesh_gateways_applied(struct agent *a);

/* Free the agent's AuthorizationPolicy counters. */
void mesh_authz_counts_free(struct agent *a);

/* Prometheus text of the tunnel (status_route_text handler shape). */
char *mesh_metrics_text(void *agent, const char *query, int *code, size_t *len);

#endif
