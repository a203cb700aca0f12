/* SPDX-License-Identifier: Apache-2.0 */
/* resources.h - the Kubernetes objects the agent understands, as decoded from
 * config files (config.c) or, later, the Kubernetes API: plain data, no
 * resolution. model.c turns a set of them into what the datapath needs.
 *
 * Strings are owned by the set (freed by resources_free); ports are host byte
 * order; addresses are struct sl_ip (family + network-order bytes).
 */
#ifndef SL_RESOURCES_H
#define SL_RESOURCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sluice/abi.h>

/* Where an object came from, for "file:line: ..." messages. */
struct sl_src {
	const char *file;		/* interned in the set; never NULL */
	int line;			/* 1-based line of the object's start; 0 unknown */
};

struct sl_ip {
	uint8_t family;			/* SL_AF_INET or SL_AF_INET6 */
	struct sl_addr addr;		/* network byte order */
};

struct sl_label {
	char *key;
	char *value;
};

struct sl_labels {
	struct sl_label *v;
	size_t n;
};

struct sl_namespace {
	char *name;
	struct sl_labels labels;
	struct sl_src src;
};

struct sl_container_port {
	char *name;			/* may be NULL */
	uint16_t port;
	uint8_t proto;			/* SL_IPPROTO_TCP / SL_IPPROTO_UDP (SCTP: 132) */
};

struct sl_pod {
	char *ns, *name;
	char *node;			/* spec.nodeName; may be NULL */
	char *service_account;		/* spec.serviceAccountName; "default" if unset */
	struct sl_labels labels;
	struct sl_ip ips[2];		/* status.podIPs (or podIP); at most one per family */
	size_t n_ips;
	struct sl_container_port *ports;	/* all containers' ports, in order */
	size_t n_ports;
	bool ready;			/* status condition Ready (true when absent) */
	bool terminating;		/* metadata.deletionTimestamp set */
	bool host_network;
	struct sl_src src;
};

enum sl_svc_type { SL_SVC_CLUSTER_IP = 0, SL_SVC_NODE_PORT, SL_SVC_LOAD_BALANCER, SL_SVC_EXTERNAL_NAME };

struct sl_service_port {
	char *name;			/* may be NULL (single-port services) */
	uint16_t port;
	uint8_t proto;
	uint16_t target_port;		/* 0 when target_port_name is set */
	char *target_port_name;		/* named targetPort, or NULL */
	char *app_protocol;		/* may be NULL */
};

struct sl_service {
	char *ns, *name;
	enum sl_svc_type type;
	struct sl_ip cluster_ips[2];	/* spec.clusterIPs (or clusterIP) */
	size_t n_cluster_ips;
	bool headless;			/* clusterIP: None */
	struct sl_service_port *ports;
	size_t n_ports;
	struct sl_labels selector;
	bool has_selector;
	bool affinity_client_ip;	/* sessionAffinity: ClientIP */
	uint32_t affinity_timeout;	/* seconds; 10800 by default */
	bool itp_local;			/* internalTrafficPolicy: Local */
	struct sl_src src;
};

struct sl_endpoint {
	struct sl_ip *addrs;
	size_t n_addrs;
	bool ready;			/* conditions.ready (absent: true) */
	bool serving;			/* conditions.serving (absent: = ready) */
	bool terminating;		/* conditions.terminating (absent: false) */
	char *node;			/* nodeName; may be NULL */
	char *pod;			/* targetRef.name when targetRef.kind is Pod; may be NULL */
};

struct sl_slice_port {
	char *name;			/* may be NULL */
	uint16_t port;
	uint8_t proto;
};

struct sl_endpoint_slice {
	char *ns, *name;
	char *service;			/* label kubernetes.io/service-name */
	uint8_t family;			/* addressType IPv4 / IPv6 */
	struct sl_slice_port *ports;
	size_t n_ports;
	struct sl_endpoint *endpoints;
	size_t n_endpoints;
	struct sl_src src;
};

/* A label selector (metav1.LabelSelector): every matchLabels pair and every
 * expression must hold; an empty selector selects everything. */
enum sl_sel_op { SL_SEL_IN, SL_SEL_NOT_IN, SL_SEL_EXISTS, SL_SEL_DOES_NOT_EXIST };

struct sl_sel_expr {
	char *key;
	enum sl_sel_op op;
	char **values;			/* In / NotIn: 1 or more; Exists / DoesNotExist: none */
	size_t n_values;
};

struct sl_selector {
	struct sl_labels match;		/* matchLabels */
	struct sl_sel_expr *exprs;	/* matchExpressions */
	size_t n_exprs;
};

struct sl_cidr {
	struct sl_ip ip;		/* host bits zero */
	uint8_t len;
};

/* One from/to entry of a NetworkPolicy rule: ipBlock, or pods by selectors. */
struct sl_np_peer {
	bool ip_block;
	struct sl_cidr cidr;		/* ipBlock.cidr */
	struct sl_cidr *except;		/* ipBlock.except: inside cidr, same family */
	size_t n_except;
	bool has_pod_sel, has_ns_sel;	/* no namespaceSelector: the policy's namespace */
	struct sl_selector pod_sel, ns_sel;
};

/* One ports entry: a protocol and a port, a range (port..end_port), a named
 * port (resolved against the destination pod's containerPorts), or, with
 * neither, every port of the protocol. */
struct sl_np_port {
	uint8_t proto;			/* SL_IPPROTO_*, 132 SCTP; TCP by default */
	uint16_t port, end_port;	/* 0: every port; end_port 0: just port */
	char *name;			/* named port, or NULL */
};

/* One ingress or egress rule. No peers (from/to absent or empty): every peer.
 * No ports: every port and protocol. */
struct sl_np_rule {
	struct sl_np_peer *peers;
	size_t n_peers;
	struct sl_np_port *ports;
	size_t n_ports;
};

struct sl_netpol {
	char *ns, *name;
	struct sl_selector pod_sel;	/* spec.podSelector */
	bool type_ingress, type_egress;	/* policyTypes, defaulted as the API server does */
	struct sl_np_rule *ingress;
	size_t n_ingress;
	struct sl_np_rule *egress;
	size_t n_egress;
	struct sl_src src;
};

/* ---- security.istio.io: AuthorizationPolicy, PeerAuthentication ---- */

struct sl_strs {
	char **v;
	size_t n;
};

struct sl_cidrs {
	struct sl_cidr *v;
	size_t n;
};

/* One from[].source: every field set must match (AND); values match exactly,
 * or "*" (anything), "prefix*", "*suffix". */
struct sl_authz_source {
	struct sl_strs principals, not_principals;	/* "cluster.local/ns/x/sa/y" */
	struct sl_strs namespaces, not_namespaces;
	struct sl_cidrs ip_blocks, not_ip_blocks;
	struct sl_cidrs remote_ip_blocks, not_remote_ip_blocks;
	bool l7;			/* requestPrincipals: needs L7 (JWT) */
};

/* One to[].operation. */
struct sl_authz_operation {
	uint16_t *ports, *not_ports;
	size_t n_ports, n_not_ports;
	bool l7;			/* hosts, methods, paths (and their not- forms) */
};

/* One when[] condition on an L4 key (source.ip, source.namespace,
 * source.principal, destination.ip, destination.port, connection.sni is L7). */
struct sl_authz_cond {
	char *key;
	struct sl_strs values, not_values;
};

struct sl_authz_rule {
	struct sl_authz_source *from;
	size_t n_from;
	struct sl_authz_operation *to;
	size_t n_to;
	struct sl_authz_cond *when;
	size_t n_when;
	bool l7;			/* some field needs L7 processing */
};

enum sl_authz_action { SL_AUTHZ_ALLOW = 0, SL_AUTHZ_DENY, SL_AUTHZ_AUDIT, SL_AUTHZ_CUSTOM };

struct sl_target_ref {
	char *kind, *name;		/* Service, Gateway, ... */
};

struct sl_authz {
	char *ns, *name;
	bool has_selector;
	struct sl_labels selector;	/* selector.matchLabels */
	struct sl_target_ref *targets;	/* targetRef / targetRefs */
	size_t n_targets;
	enum sl_authz_action action;
	struct sl_authz_rule *rules;
	size_t n_rules;
	struct sl_src src;
};

enum sl_mtls_mode { SL_MTLS_UNSET = 0, SL_MTLS_PERMISSIVE, SL_MTLS_STRICT, SL_MTLS_DISABLE };

struct sl_port_mtls {
	uint16_t port;
	enum sl_mtls_mode mode;
};

struct sl_peerauthn {
	char *ns, *name;
	bool has_selector;
	struct sl_labels selector;
	enum sl_mtls_mode mode;		/* mtls.mode; UNSET inherits */
	struct sl_port_mtls *ports;	/* portLevelMtls (workload scope only) */
	size_t n_ports;
	struct sl_src src;
};

/* A decoded set of objects: everything from one config directory. */
struct sl_resources {
	struct sl_namespace *namespaces;
	size_t n_namespaces;
	struct sl_pod *pods;
	size_t n_pods;
	struct sl_service *services;
	size_t n_services;
	struct sl_endpoint_slice *slices;
	size_t n_slices;
	struct sl_netpol *netpols;
	size_t n_netpols;
	struct sl_authz *authzs;
	size_t n_authzs;
	struct sl_peerauthn *peerauthns;
	size_t n_peerauthns;
	/* Kinds accepted but not handled yet (Gateway API, policy...): counted and noted. */
	size_t n_ignored;
	void *priv;			/* allocator and interned strings (config.c) */
};

void resources_free(struct sl_resources *r);	/* NULL-safe; frees r too */

/* Label helpers (model.c). */
const char *labels_get(const struct sl_labels *l, const char *key);
/* Equality-based selector: every selector label present with the same value.
 * An empty selector matches everything. */
bool labels_match(const struct sl_labels *selector, const struct sl_labels *labels);

/* A full LabelSelector (expressions too) against a pod's or namespace's labels. */
bool selector_match(const struct sl_selector *sel, const struct sl_labels *labels);
bool selector_empty(const struct sl_selector *sel);
bool cidr_contains(const struct sl_cidr *c, const struct sl_ip *ip);

/* Formatting (model.c). buf >= SL_IP_STRLEN. */
#define SL_IP_STRLEN 46
const char *sl_ip_str(const struct sl_ip *ip, char *buf);
int sl_ip_parse(const char *s, struct sl_ip *out);	/* 0 or -EINVAL */
const char *sl_proto_str(uint8_t proto);

#endif
