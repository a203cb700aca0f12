/* SPDX-License-Identifier: Apache-2.0 */
/* loader.h - the BPF side of the agent: mount bpffs and cgroup v2 when needed,
 * load the programs (libbpf skeletons), reuse or pin their maps under the bpffs
 * root, attach them with pinned links, and undo it all on uninstall.
 *
 * Pinned maps and links outlive the agent: while it is down (or restarting),
 * the kernel keeps balancing with what the maps hold. A new agent reuses the
 * pins and swaps its programs into the existing links (bpf_link_update), so
 * there is no moment without a program attached.
 * The only module that includes skeletons or libbpf object APIs.
 */
#ifndef SL_LOADER_H
#define SL_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>

#include <sluice/abi.h>
#include <sluice/counters.h>

struct loader;

/* --map-max NAME=N: a hash map's max_entries other than the built-in size,
 * so tests can fill a map in milliseconds (katran's shrinkable sizes). A pinned
 * map of another size is resized at start, its entries copied. */
#define LOADER_MAP_MAX_N	8
struct loader_map_max {
	char name[16];			/* e.g. sl_svc_v1 (BPF_OBJ_NAME_LEN) */
	uint32_t max_entries;
};

/* --max-services N: the Service-scaled maps' sizes at load time (Cilium's
 * --bpf-lb-map-max): sl_svc_v1 holds N frontends, sl_be_v1 LOADER_BE_PER_SVC
 * times N backend slots (1 to LOADER_MAX_SERVICES; 0: the built-in
 * SL_SVC_MAX and SL_BE_MAX). Both maps allocate entries as they are written
 * (BPF_F_NO_PREALLOC): the size costs the hash table's buckets, about 16 bytes
 * per entry of capacity, plus the entries in use. Pins of another size are
 * resized at start, their entries copied (loader.c, replace_stale_maps). */
#define LOADER_BE_PER_SVC	(SL_BE_MAX / SL_SVC_MAX)	/* 16 */
#define LOADER_MAX_SERVICES	(16u * SL_SVC_MAX)		/* 1,048,576 */

struct loader_opts {
	const char *bpffs_root;		/* pins; default SL_BPFFS_ROOT */
	uint32_t max_services;		/* 0: built-in sizes */
	const char *cgroup;		/* cgroup v2 dir to attach to; NULL: the v2 root */
	bool ingress_clsact;		/* pod_ingress via clsact even where tcx exists */
	bool no_sockmap;		/* no same-node acceleration (sockops + sk_msg) */
	struct loader_map_max map_max[LOADER_MAP_MAX_N];
	size_t n_map_max;
};

struct loader_prog_info {
	const char *name;		/* e.g. sock_lb_connect4 */
	const char *attach;		/* e.g. cgroup/connect4 */
	char link_pin[256];
};

struct loader_map_info {
	const char *name;
	const char *type;		/* "hash", "lru_hash", "percpu_array" ... */
	uint32_t entries;		/* counted now (max_entries for arrays) */
	uint32_t max_entries, key_size, value_size;
	char pin[256];
};

/* Returns 0, or -errno with a message logged (pr_err) saying what and why. */
int loader_open(struct loader **out, const struct loader_opts *o);
void loader_free(struct loader *l);		/* NULL-safe; pins and links stay */

int loader_map_fd(const struct loader *l, const char *name);	/* -ENOENT if unknown */
uint32_t loader_map_max(const struct loader *l, const char *name);
/* *out is malloc'ed (free it); one entry per pinned map. */
int loader_maps_info(const struct loader *l, struct loader_map_info **out, size_t *n);
/* Sum over CPUs of every counter of sl_metrics_v1. */
int loader_counters(const struct loader *l, uint64_t out[SL_CNT_MAX]);
size_t loader_programs(const struct loader *l, const struct loader_prog_info **out);

/* Attach pod_ingress at TC ingress of ifindex in the caller's current netns
 * (call it from inside the pod's netns): tcx where the kernel has it (returns
 * the link fd; closing it detaches), else a clsact qdisc with a
 * direct-action filter (returns LOADER_INGRESS_CLSACT; detach with
 * loader_pod_ingress_detach from inside the netns). Or -errno. link_fd >= 0:
 * a tcx link inherited from the agent taken over: our program is swapped
 * into it and link_fd returned (the call owns link_fd either way). */
#define LOADER_INGRESS_CLSACT	INT_MAX
int loader_pod_ingress_attach(struct loader *l, int ifindex, int link_fd);
/* Remove pod_ingress's clsact filter from ifindex in the current netns. */
int loader_pod_ingress_detach(int ifindex);
/* The same for pod_egress at TC egress (NetworkPolicy for what the pod sends). */
int loader_pod_egress_attach(struct loader *l, int ifindex, int link_fd);
int loader_pod_egress_detach(int ifindex);
/* edge (XDP, NetworkPolicy drops) on a node uplink of the agent's netns, with a
 * pinned link. 0 or -errno (logged). At most LOADER_UPLINKS_MAX uplinks. */
#define LOADER_UPLINKS_MAX	4
int loader_edge_attach(struct loader *l, const char *ifname);
/* Same-node acceleration now: whether it is on, the sockets in sl_socks_v1
 * and the hops among them (both ends present). */
struct loader_sockmap_stats {
	bool enabled;
	uint32_t sockets;
	uint32_t hops;
	uint32_t shortcuts;		/* directions paired app to app */
};
int loader_sockmap_stats(const struct loader *l, struct loader_sockmap_stats *st);
/* The sockets in sl_socks_v1 (a sockhash: bpftool prints its keys as bytes,
 * the kernel takes no BTF for it). *out is malloc'ed. */
struct loader_sock {
	struct sl_hop_key key;
	uint64_t cookie;		/* the socket's cookie (SO_COOKIE) */
	bool peer;			/* the other end of the hop is in the map too */
};
int loader_sockmap_list(const struct loader *l, struct loader_sock **out, size_t *n);
/* A direct connection's shortcut (sl_hoppair_v1): the app sockets at the far
 * ends of the agent's two sockets (client_fd accepted on 15001, server_fd
 * its delivery socket), paired so that their bytes go app to app once the
 * agent has delivered what it took (relayed[0] client -> server, [1] back).
 * open: 0, -ENOENT (an end is not accelerated), -EPIPE (an agent socket fell
 * back to TCP: its bytes could be overtaken), -errno. relayed: the agent
 * delivered more of direction d; -EPIPE when that direction is unpaired for
 * good. close: how many bytes went app to app each way, and the pair gone. */
struct loader_shortcut {
	struct sl_hop_key app[2];	/* [0] the client's socket, [1] the server's */
	bool paired[2];			/* per direction */
};
int loader_shortcut_open(const struct loader *l, int client_fd, int server_fd, const uint64_t relayed[2],
			 struct loader_shortcut *sc);
int loader_shortcut_relayed(const struct loader *l, struct loader_shortcut *sc, int client_fd, int server_fd,
			    int d, uint64_t relayed);
void loader_shortcut_bytes(const struct loader *l, const struct loader_shortcut *sc, uint64_t direct[2]);
void loader_shortcut_close(const struct loader *l, struct loader_shortcut *sc, uint64_t direct[2]);
/* sl_netns_v1: enrol (or forget) a pod's netns for capture. */
int loader_netns_set(const struct loader *l, uint64_t cookie, const struct sl_netns_val *v);
int loader_netns_del(const struct loader *l, uint64_t cookie);
/* sl_origdst_v1: the original destination of a captured connection, removed
 * as it is read. -ENOENT when the kernel has no record. */
int loader_origdst_take(const struct loader *l, const struct sl_origdst_key *k, struct sl_orig *out);
/* Set the bit of every flow in sl_polct_v1 (ct_fd) in sl_polctport_v1
 * (ports_fd): what a start over pins of an agent without that map does
 * before attaching. Rewrites the bitmap's values whole: nothing may set bits
 * meanwhile. 0 or -errno. */
int loader_polct_ports_fill(int ct_fd, int ports_fd);
bool loader_reused_pins(const struct loader *l);
const char *loader_cgroup(const struct loader *l);
const char *loader_bpffs_root(const struct loader *l);

/* Detach every pinned link and remove every pin under the root. */
int loader_uninstall(const struct loader_opts *o);

#endif
