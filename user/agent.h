/* SPDX-License-Identifier: Apache-2.0 */
/* agent.h - the running agent's state as main.c wires it, for views.c (the
 * status socket's JSON). Owned and mutated by main.c only. */
#ifndef SL_AGENT_H
#define SL_AGENT_H

#include <stdint.h>
#include <time.h>

#include "diag.h"
#include "policy.h"
#include "polsync.h"
#include "sync.h"

struct identity;
struct kube;
struct kstatus;
struct loader;
struct pods;
struct tunnel;
struct sl_model;
struct route_table;
struct waypoint;
struct gateways;

enum config_state { CONFIG_EMPTY = 0, CONFIG_OK, CONFIG_ERROR };

/* Decisions the agent made in the name of one security.istio.io policy. */
struct agent_authz_count {
	char *kind;			/* "AuthorizationPolicy" or "PeerAuthentication" */
	char *ns, *name;
	uint64_t allowed, denied, audited;
};

struct agent {
	const char *node_name;
	const char *config_dir;		/* NULL: no config directory */
	struct kube *kube;		/* Kubernetes mode: the API source, else NULL */
	struct kstatus *kstatus;	/* Kubernetes mode: status write-back (Lease holder only) */
	struct loader *loader;
	struct sync *sync;
	struct pods *pods;		/* enrolled pods' netns; NULL without mesh */
	struct tunnel *tunnel;		/* the per-pod data plane; NULL without mesh */
	struct waypoint *waypoint;	/* L7 for Services with routes; NULL without mesh */
	struct route_table *routes;	/* Gateway API routes of model; NULL before the first config */
	struct gateways *gateways;	/* Gateway listeners on this node; NULL without mesh */
	struct identity *identity;	/* workload certificates; NULL without mesh */
	const char *trust_domain;	/* NULL: cluster.local */
	const char *mesh_off;		/* why there is no mesh, or NULL */
	uint32_t next_pod_id;		/* sl_netns_val.pod_id of the last enrolled pod */
	enum policy_scope policy_scope;	/* which local pods the kernel polices */
	struct policy_registry *polreg;	/* ids and counter slots, for the agent's life */
	struct policy *policy;		/* compiled from model; NULL before the first config */
	struct polsync *polsync;
	struct polsync_stats last_polsync;
	int polsync_err;		/* first error of the last policy apply, 0 if none */
	const char *root_ns;		/* Istio's root namespace (mesh-wide policies) */
	struct agent_authz_count *authz_counts;	/* AuthorizationPolicy / PeerAuthentication decisions */
	size_t n_authz_counts;
	struct sl_model *model;		/* the configuration in force (last good), or NULL */
	enum config_state config_state;
	uint64_t generation;		/* bumped on every accepted configuration */
	time_t last_good_at;		/* wall clock of the last accepted one */
	struct diags errors;		/* problems of the last rejected load */
	struct sync_stats last_sync;
	time_t last_sync_at;
	uint64_t sync_generation;
	struct timespec started;	/* CLOCK_MONOTONIC */
	uint64_t mem_trims;		/* malloc_trim calls of the memory timer (main.c mem_tick) */
	uint64_t mem_spares_freed;	/* bytes of spare buffers it freed */
};

#endif
