/* SPDX-License-Identifier: Apache-2.0 */
/* kstatus.h - Gateway API status written back to Kubernetes by one agent:
 * the one that holds a coordination.k8s.io/v1 Lease; and every agent's
 * node report, which the holder merges in.
 *
 * Leader election as client-go's leaderelection does it: GET the Lease; take
 * it when it has no holder or its record (holderIdentity, renewTime) has not
 * changed for leaseDurationSeconds as this agent's own clock measures (no
 * trust in other nodes' clocks); PUT with the resourceVersion read
 * (optimistic concurrency: 409 Conflict means read again); renew every third
 * of the duration; stop writing when no renewal has succeeded for two thirds
 * of it, before another agent may take over.
 *
 * Status: after each applied configuration, the conditions of every Gateway
 * of class sluice (gwplan.h: Accepted, Programmed, and per listener
 * Accepted, ResolvedRefs, Conflicted, Programmed, attachedRoutes,
 * supportedKinds) and of every route parentRef that is ours (a Gateway of
 * class sluice, or a Service: GAMMA) with Accepted and ResolvedRefs
 * (route.h). Objects the source skipped as invalid (kube_skipped()) say
 * why: a Gateway of class sluice Accepted and Programmed False (Invalid), a
 * route's parentRefs that are ours Accepted False (UnsupportedValue); once
 * valid, they get the above instead. The holder PATCHes /status (merge
 * patch with the object's resourceVersion) only where the result differs
 * from what the object already has, ignoring lastTransitionTime: the watch
 * brings our write back, and it then compares equal, so nothing loops.
 * Entries of route status.parents of other controllers are kept as they are.
 *
 * Node reports (kreport.h): the plan is the same on every node, but a
 * listener can fail on one node only (a port in use there, a certificate
 * that does not load there). Every agent keeps the Lease of its node's
 * report (same namespace, identity, duration and renewal as the election;
 * written also when this node's failing listeners change, through the same
 * klease state machine); the holder LISTs the reports each renewal and
 * merges the live ones into each Gateway's listener conditions before it
 * compares and writes (kreports_merge). An address that cannot be added on
 * one node still shows only in sluicectl gateways there.
 */
#ifndef SL_KSTATUS_H
#define SL_KSTATUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resources.h"

struct loop;
struct kube;
struct sl_model;
struct route_table;
struct gwplan_gateway;
struct kstatus;

#define KSTATUS_LEASE_NAME	"sluice-status"
#define KSTATUS_LEASE_NS	"sluice-system"
#define KSTATUS_LEASE_S		15

struct kstatus_opts {
	const char *identity;		/* holderIdentity: the pod's name, else the node's */
	const char *ns;			/* the Lease's namespace */
	const char *lease_name;		/* NULL: KSTATUS_LEASE_NAME */
	unsigned int lease_s;		/* leaseDurationSeconds; 0: KSTATUS_LEASE_S */
	const struct sl_cidr *pools;	/* Gateway address pools, as gateway_opts */
	size_t n_pools;
	const char *node;		/* this node's name (its report's Lease); NULL: identity */
	/* This node's failing listeners (gateways_node_failures), new
	 * reference; NULL: none fail, ever. */
	json_t *(*node_failures)(void *arg);
	void *node_arg;
};

int kstatus_new(struct kstatus **out, struct loop *l, struct kube *k, const struct kstatus_opts *o);
void kstatus_free(struct kstatus *s);		/* NULL-safe; cancels its requests */

/* A configuration was applied: work out every object's status from m and rt
 * (both borrowed for this call only) and, when holding the Lease, write what
 * differs. 0 or -ENOMEM. */
int kstatus_update(struct kstatus *s, const struct sl_model *m, const struct route_table *rt);

/* This node's listeners changed outside a configuration (a port that was
 * in use is listened on): read them again, publish the report now when it
 * differs. NULL-safe. */
void kstatus_node_changed(struct kstatus *s);

/* The agent exits: stop writing and release the status Lease if held.
 * 1: done(arg) follows once the API server answered (or did not); 0: held
 * nothing, nothing follows. done may be NULL. NULL-safe. */
int kstatus_release(struct kstatus *s, void (*done)(void *arg), void *arg);

/* {"identity", "lease", "leader", "holder", "transitions", "writes",
 *  "write_errors", "last_write_at", "last_error", "node_report": {"lease",
 *  "published", "writes", "listeners", "last_error"?}, "node_reports" (the
 *  holder: kreports_json, "lists", "list_error"?), ...} */
json_t *kstatus_json(const struct kstatus *s);

/* ---- the Lease, apart for tests: no I/O, the caller's clocks ---- */

enum klease_op { KLEASE_WAIT = 0, KLEASE_GET, KLEASE_CREATE, KLEASE_UPDATE, KLEASE_RELEASE };

struct klease {
	char identity[128];
	unsigned int duration_s;
	bool leader;
	uint64_t renewed_ms;		/* the last acquire or renew that succeeded */
	json_t *record;			/* the Lease as last read or written; NULL: none known */
	char seen[256];			/* holderIdentity and renewTime last observed */
	uint64_t seen_ms;		/* when they last changed, by our clock */
	char holder[128];		/* "" none */
	uint64_t transitions;		/* times we became the holder */
	bool report;			/* a node report's Lease (kreport.h): its own log lines */
	bool released;			/* given up for good (the agent exits): never led again */
};

void klease_init(struct klease *l, const char *identity, unsigned int duration_s);
void klease_clear(struct klease *l);
/* Every duration/3: what to do now (a leader that could not renew for
 * 2/3 of the duration stops leading here). */
enum klease_op klease_tick(struct klease *l, uint64_t now_ms);
/* The answer to op (status 0: none); returns what to do next. */
enum klease_op klease_answer(struct klease *l, enum klease_op op, int status, json_t *body, uint64_t now_ms);
/* Give the Lease up for good: KLEASE_RELEASE when we hold it (PUT an empty
 * holder, as client-go's ReleaseOnCancel, so a candidate takes it at its
 * next read instead of after the duration), else KLEASE_WAIT. */
enum klease_op klease_release(struct klease *l);
/* The Lease to POST (CREATE) or PUT (UPDATE, RELEASE); now is a MicroTime. New reference. */
json_t *klease_body(const struct klease *l, enum klease_op op, const char *ns, const char *name,
		    const char *now);

/* ---- status documents, apart for tests ---- */

/* What our conditions say, without times and generations. */
json_t *kstatus_gateway_intent(const struct gwplan_gateway *pg);
/* A GatewayClass whose controllerName is ours: Accepted True (the agent
 * serves its Gateways; it takes no parametersRef and checks none). */
json_t *kstatus_gatewayclass_intent(void);
/* One route parentRef (parent_ref: its spec entry, borrowed) as a status.parents entry. */
json_t *kstatus_parent_intent(json_t *parent_ref, bool accepted, const char *acc_reason, bool refs,
			      const char *refs_reason, bool partially_invalid, const char *message);
/* The status to write: intent (a Gateway's or a GatewayClass's) or ours (a route's parents
 * entries, array) stamped with obj's metadata.generation and with
 * lastTransitionTime kept from obj's status where a condition's status did
 * not change, else now; a route keeps other controllers' parents entries.
 * New reference. */
json_t *kstatus_gateway_status(json_t *intent, json_t *obj, const char *now);
json_t *kstatus_route_status(json_t *ours, json_t *obj, const char *now);
/* Objects the source skipped as invalid (message: why, kube_skipped()).
 * A Gateway of a class of ours: Accepted and Programmed False, reason
 * Invalid, no listeners or addresses. A route (obj as stored): one entry per
 * spec.parentRefs entry naming a Gateway in gateways ("ns/name" keys: ours,
 * the valid ones) or a Service, Accepted False, reason UnsupportedValue;
 * an empty array when none does. New references. */
json_t *kstatus_invalid_gateway_intent(const char *message);
json_t *kstatus_invalid_route_intent(json_t *obj, json_t *gateways, const char *message);
/* Equal but for lastTransitionTime (NULL equals an empty object). */
bool kstatus_same(json_t *a, json_t *b);

#endif
