/* SPDX-License-Identifier: Apache-2.0 */
/* model.h - the resolved view of the cluster for one node: Service frontends
 * with the backends the datapath may choose, and the workloads (pods).
 *
 * Built from a struct sl_resources (which it takes over) and the node's name;
 * immutable afterwards. Cross-object validation happens here: two Services
 * claiming one VIP, duplicate objects, two pods with one IP.
 */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/abi.h>

#include "diag.h"
#include "resources.h"

/* One endpoint of a frontend as the model sees it (all of them, for display). */
struct sl_backend {
	struct sl_ip ip;
	uint16_t port;			/* resolved targetPort, host order */
	const char *pod;		/* may be NULL */
	const char *node;		/* may be NULL */
	bool ready, serving, terminating;
	bool chosen;			/* in the datapath's slots */
};

/* One Service VIP:port:proto: what sl_svc_v1 and sl_be_v1 hold for it. */
struct sl_frontend {
	const struct sl_service *svc;
	const struct sl_service_port *port;
	struct sl_svc_key key;		/* ABI key, network order */
	uint16_t flags;			/* SL_SVC_F_* */
	uint32_t aff_timeout;		/* seconds */
	struct sl_backend *backends;	/* every known endpoint */
	size_t n_backends;
	struct sl_be_val *slots;	/* the chosen ones, in slot order */
	size_t n_slots;
};

/* Mesh enrolment: a namespace or pod label; a pod's own label wins, and
 * "none" on a pod opts it out of an enrolled namespace (as in Istio). */
#define SL_LABEL_DATAPLANE	"sluice.io/dataplane-mode"
#define SL_LABEL_DATAPLANE_ISTIO "istio.io/dataplane-mode"
#define SL_DATAPLANE_AMBIENT	"ambient"
#define SL_DATAPLANE_NONE	"none"

/* A pod as the mesh sees it. */
struct sl_workload {
	const struct sl_pod *pod;
	bool enrolled;			/* in the mesh (labels) */
	bool local;			/* on this node */
	const struct sl_service *service;	/* first Service with the pod as an endpoint, or NULL */
};

/* One pod address, for lookups by IP. */
struct sl_workload_ip {
	struct sl_ip ip;
	const struct sl_workload *wl;
};

struct sl_model {
	struct sl_resources *res;	/* owned */
	struct sl_workload *workloads;	/* one per pod, in res->pods order */
	struct sl_workload_ip *by_ip;	/* sorted by ip; hostNetwork pods left out */
	size_t n_by_ip;
	char *node_name;
	struct sl_frontend *frontends;	/* sorted by key (memcmp) */
	size_t n_frontends;
	size_t n_backends_total;	/* sum of n_slots */
	size_t n_headless;		/* Services left alone */
	const struct sl_service **svc_by_name;	/* every Service, sorted by (ns, name) */
	size_t n_svc_by_name;
};

/* Resolve res (taken over, also on error) for node_name. Returns 0 with *out, or
 * -EINVAL with problems in errs (and *out NULL), or -ENOMEM. */
int model_build(struct sl_resources *res, const char *node_name, struct sl_model **out,
		struct diags *errs);
void model_free(struct sl_model *m);			/* NULL-safe */

const struct sl_frontend *model_find_frontend(const struct sl_model *m, const struct sl_svc_key *k);
/* Service ns/name, or NULL (O(log n): per request and per upstream). */
const struct sl_service *model_find_service(const struct sl_model *m, const char *ns, const char *name);
/* The TCP frontend of Service s on port (the Service port) with endpoints
 * chosen, for a VIP of family (SL_AF_*), else of the other family; NULL when
 * there is none. */
const struct sl_frontend *model_service_frontend(const struct sl_model *m, const struct sl_service *s,
						 uint16_t port, uint8_t family);
/* The pod that has ip, or NULL. */
const struct sl_workload *model_workload_by_ip(const struct sl_model *m, const struct sl_ip *ip);

#endif
