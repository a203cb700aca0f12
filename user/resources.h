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
	/* JWT identities ("iss/sub"): kept, but sluice has no RequestAuthentication,
	 * so they are never enforceable (see authz.h). */
	struct sl_strs request_principals, not_request_principals;
	bool l7;			/* requestPrincipals: needs L7 (JWT) */
};

/* One to[].operation. The L7 fields are judged by the waypoint
 * (authz_decide_request); at L4 only `l7` counts. */
struct sl_authz_operation {
	uint16_t *ports, *not_ports;
	size_t n_ports, n_not_ports;
	struct sl_strs hosts, not_hosts;	/* Host/:authority, case-insensitive */
	struct sl_strs methods, not_methods;
	struct sl_strs paths, not_paths;	/* wildcards, or {*} / {**} templates */
	bool l7;			/* hosts, methods, paths (and their not- forms) */
};

/* One when[] condition. L4 keys: source.ip, remote.ip, source.namespace,
 * source.principal, destination.ip, destination.port; everything else
 * (request.headers[...], request.auth.*, connection.sni, ...) is L7. */
struct sl_authz_cond {
	char *key;
	char *header;			/* request.headers[<name>]: <name>; else NULL */
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
	char *group;			/* NULL when absent; "" is the core group */
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

/* ---- gateway.networking.k8s.io: Gateway API ---- */

/* A parentRef: a Gateway (default) or, for mesh routes (GAMMA), a Service. */
struct sl_parent_ref {
	char *group;			/* "gateway.networking.k8s.io" (default) or "" (core) */
	char *kind;			/* "Gateway" (default) or "Service" */
	char *ns;			/* NULL: the route's namespace */
	char *name;
	char *section_name;		/* a listener name or a Service port name; NULL: all */
	uint16_t port;			/* 0: unset */
};

/* A backendRef (or a RequestMirror's backendRef). */
struct sl_backend_ref {
	char *group;			/* "" core (default) */
	char *kind;			/* "Service" (default) */
	char *ns;			/* NULL: the route's namespace */
	char *name;
	uint16_t port;			/* 0: unset (required for Services; checked by route.c) */
	uint32_t weight;		/* default 1 */
	struct sl_route_filter *filters;	/* per-backend filters (HTTPRoute, GRPCRoute) */
	size_t n_filters;
};

struct sl_header_kv {
	char *name, *value;
};

struct sl_header_mod {
	struct sl_header_kv *set, *add;
	size_t n_set, n_add;
	char **remove;
	size_t n_remove;
};

enum sl_path_mod_type { SL_PATH_MOD_NONE = 0, SL_PATH_MOD_FULL, SL_PATH_MOD_PREFIX };

struct sl_path_mod {
	enum sl_path_mod_type type;	/* ReplaceFullPath / ReplacePrefixMatch */
	char *value;
};

enum sl_filter_type {
	SL_FILTER_REQUEST_HEADER = 0,	/* RequestHeaderModifier */
	SL_FILTER_RESPONSE_HEADER,	/* ResponseHeaderModifier */
	SL_FILTER_REDIRECT,		/* RequestRedirect */
	SL_FILTER_REWRITE,		/* URLRewrite */
	SL_FILTER_MIRROR,		/* RequestMirror */
	SL_FILTER_CORS,			/* CORS */
	SL_FILTER_EXTENSION,		/* ExtensionRef: its rule answers 500 (route.c) */
	SL_FILTER_TYPE_COUNT,
};

/* The filter types as the Gateway API spells them (model.c). */
extern const char *const sl_filter_type_names[SL_FILTER_TYPE_COUNT];

struct sl_route_filter {
	enum sl_filter_type type;
	struct sl_header_mod headers;	/* REQUEST_HEADER, RESPONSE_HEADER */
	/* REDIRECT: scheme, hostname, port (0 unset), path, status (302 default) */
	char *scheme, *hostname;
	uint16_t port;
	uint16_t status;
	struct sl_path_mod path;	/* REDIRECT, REWRITE */
	/* REWRITE: hostname (above), path (above) */
	/* MIRROR: backend, and the share of requests mirrored */
	struct sl_backend_ref mirror;
	uint32_t mirror_num, mirror_den;	/* percent p: p/100; fraction; default 100/100 */
	/* CORS */
	struct sl_strs allow_origins, allow_methods, allow_headers, expose_headers;
	bool allow_credentials;
	int32_t max_age;		/* seconds; default 5 */
	char *extension;		/* EXTENSION: "group/kind/name" for messages */
};

enum sl_match_type { SL_MATCH_EXACT = 0, SL_MATCH_PREFIX, SL_MATCH_REGEX };

struct sl_kv_match {
	enum sl_match_type type;	/* EXACT (default) or REGEX */
	char *name, *value;
};

struct sl_http_match {
	bool has_path;
	enum sl_match_type path_type;	/* PathPrefix "/" when no path is given */
	char *path;
	struct sl_kv_match *headers, *query;
	size_t n_headers, n_query;
	char *method;			/* NULL: any */
	/* GRPCRoute method match: service and/or method; EXACT or REGEX */
	bool has_grpc;
	enum sl_match_type grpc_type;
	char *grpc_service, *grpc_method;
};

struct sl_route_timeouts {
	uint32_t request_ms, backend_request_ms;	/* 0: none */
};

struct sl_route_retry {
	uint16_t *codes;
	size_t n_codes;
	uint32_t attempts;		/* 0: unset */
	uint32_t backoff_ms;
};

struct sl_route_rule {
	char *name;			/* sectionName-able rule name; may be NULL */
	struct sl_http_match *matches;	/* none: match everything */
	size_t n_matches;
	struct sl_route_filter *filters;
	size_t n_filters;
	struct sl_backend_ref *backends;
	size_t n_backends;
	struct sl_route_timeouts timeouts;
	bool has_retry;
	struct sl_route_retry retry;
};

enum sl_route_kind { SL_ROUTE_HTTP = 0, SL_ROUTE_GRPC, SL_ROUTE_TCP, SL_ROUTE_TLS };

/* HTTPRoute, GRPCRoute, TCPRoute, TLSRoute. */
struct sl_route {
	enum sl_route_kind kind;
	char *ns, *name;
	int64_t generation;		/* metadata.generation; 0 when absent */
	char *created;			/* metadata.creationTimestamp (RFC 3339), for precedence; may be NULL */
	struct sl_parent_ref *parents;
	size_t n_parents;
	char **hostnames;
	size_t n_hostnames;
	struct sl_route_rule *rules;
	size_t n_rules;
	struct sl_src src;
};

enum sl_routes_from { SL_ROUTES_FROM_SAME = 0, SL_ROUTES_FROM_ALL, SL_ROUTES_FROM_SELECTOR };

struct sl_route_group_kind {
	char *group, *kind;
};

struct sl_object_ref {
	char *group, *kind, *ns, *name;	/* ns NULL: the referrer's namespace */
};

struct sl_listener {
	char *name;
	char *hostname;			/* NULL: any */
	uint16_t port;
	char *protocol;			/* HTTP, HTTPS, TLS, TCP, UDP, ... as written */
	char *tls_mode;			/* Terminate (default for HTTPS) / Passthrough; NULL unset */
	struct sl_object_ref *certs;	/* tls.certificateRefs */
	size_t n_certs;
	enum sl_routes_from routes_from;	/* allowedRoutes.namespaces.from */
	struct sl_selector routes_selector;	/* allowedRoutes.namespaces.selector */
	struct sl_route_group_kind *route_kinds;	/* allowedRoutes.kinds; none: by protocol */
	size_t n_route_kinds;
};

struct sl_gateway {
	char *ns, *name;
	char *class_name;		/* spec.gatewayClassName */
	int64_t generation;
	struct sl_listener *listeners;
	size_t n_listeners;
	struct sl_ip *addresses;	/* spec.addresses of type IPAddress */
	size_t n_addresses;
	struct sl_src src;
};

struct sl_gateway_class {
	char *name;
	char *controller;		/* spec.controllerName */
	struct sl_src src;
};

/* ReferenceGrant: from (group, kind, namespace) may refer to to (group, kind,
 * name NULL: any) in the grant's namespace. */
struct sl_ref_grant_from {
	char *group, *kind, *ns;
};

struct sl_ref_grant_to {
	char *group, *kind, *name;
};

struct sl_ref_grant {
	char *ns, *name;
	struct sl_ref_grant_from *from;
	size_t n_from;
	struct sl_ref_grant_to *to;
	size_t n_to;
	struct sl_src src;
};

/* A kubernetes.io/tls Secret (or any Secret with tls.crt/tls.key): PEM text,
 * base64-decoded from data (or stringData as is). */
struct sl_secret {
	char *ns, *name;
	char *type;
	char *tls_crt, *tls_key;	/* NULL when absent */
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
	struct sl_route *routes;	/* HTTPRoute, GRPCRoute, TCPRoute, TLSRoute in file order */
	size_t n_routes;
	struct sl_gateway *gateways;
	size_t n_gateways;
	struct sl_gateway_class *gateway_classes;
	size_t n_gateway_classes;
	struct sl_ref_grant *ref_grants;
	size_t n_ref_grants;
	struct sl_secret *secrets;
	size_t n_secrets;
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
