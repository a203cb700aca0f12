/* SPDX-License-Identifier: Apache-2.0 */
/* pods.h - local pods' network namespaces: find each pod's netns among the
 * named namespaces in a directory (/run/netns) by the pod's IP, enter it, set
 * it up for the mesh, hand it to the tunnel; undo it all when the pod leaves.
 * Pods under NetworkPolicy but not in the mesh get only their TC programs
 * (ops->attach_ingress / attach_egress) and their netns in the map (enrol).
 *
 * Per enrolled pod, inside its netns (setns there and back, always back):
 *   - sysctls net.ipv4.tcp_fwmark_accept=1, net.ipv{4,6}.fwmark_reflect=1;
 *   - policy routing for delivery from a client's IP:
 *       rule  fwmark SL_MARK_DELIVER/SL_MARK_MASK lookup SL_DELIVER_TABLE pref 100
 *       route local 0.0.0.0/0 (::/0) dev lo table SL_DELIVER_TABLE
 *   - listeners (non-blocking, CLOEXEC, SO_REUSEADDR; IPv6 ones v6only):
 *       15001 on 127.0.0.1 and ::1 (outbound capture),
 *       15006 on 0.0.0.0 and :: with IP(V6)_TRANSPARENT (inbound plaintext),
 *       15008 on 0.0.0.0 and :: (HBONE);
 *     a netns without IPv6 gets the IPv4 half only;
 *   - the TC ingress program on the interface carrying the pod's IP (through
 *     ops->attach_ingress, called while inside the netns).
 * The module keeps one fd of the netns per enrolled pod (for pods_socket) and
 * none of any other netns: every fd into a pod's netns is closed when the pod
 * goes, or the netns and its veth would stay alive.
 *
 * Namespaces are followed with inotify on the directory; pods whose netns is
 * not found yet (or whose setup failed, e.g. a port in use) are retried on a
 * timer with backoff and on every inotify event.
 *
 * Single-threaded: every function runs on the agent's loop thread, and every
 * path returns to the agent's netns before returning (checked in builds
 * without NDEBUG). Callbacks other than attach_ingress run in the agent's netns.
 */
#ifndef SL_PODS_H
#define SL_PODS_H

#include <limits.h>
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resources.h"

#define PODS_NETNS_DIR "/run/netns"
#define PODS_INGRESS_NO_LINK INT_MAX	/* attach_ingress: attached, no fd (clsact) */

struct loop;
struct pods;

/* The listeners of one pod, index into pods_pod.listeners. */
enum pods_listener {
	PODS_L_OUT4,			/* 127.0.0.1:15001 */
	PODS_L_OUT6,			/* [::1]:15001 */
	PODS_L_IN4,			/* 0.0.0.0:15006, IP_TRANSPARENT */
	PODS_L_IN6,			/* [::]:15006, IPV6_TRANSPARENT */
	PODS_L_HBONE4,			/* 0.0.0.0:15008 */
	PODS_L_HBONE6,			/* [::]:15008 */
	PODS_L_COUNT,
};

struct pods_listen {
	uint16_t port;			/* host byte order: SL_PORT_* */
	int family;			/* AF_INET / AF_INET6 */
	int fd;				/* listening, in the pod's netns; -1 if absent */
};

/* An enrolled pod, as the callbacks see it. The pointer stays valid (and its
 * content unchanged) from pod_ready until pod_gone returns, so the tunnel may
 * use it as a key. The fds are owned by pods: never close them. */
struct pods_pod {
	const char *ns, *name, *service_account;
	const struct sl_ip *ips;
	size_t n_ips;
	const char *netns;		/* entry name in the netns directory */
	uint64_t netns_cookie;		/* SO_NETNS_COOKIE, = bpf_get_netns_cookie() */
	int ifindex;			/* the pod's interface, inside its netns */
	bool mesh;			/* false: under policy only, no listeners (all fd -1) */
	struct pods_listen listeners[PODS_L_COUNT];
};

/* The desired set: one entry per pod of this node that is enrolled. Copied by
 * pods_set_enrolled. A pod is identified by ns/name; a change of its IPs or
 * service account re-enrols it. */
struct pods_spec {
	const char *ns, *name, *service_account;
	struct sl_ip ips[2];		/* at most one per family */
	size_t n_ips;
	bool mesh;			/* enrolled: listeners, routes, tunnel; else policy only */
};

/* Callbacks; arg is pods_new's arg. Any may be NULL (skipped). They may call
 * pods_socket and pods_list, not pods_set_enrolled or pods_free.
 *
 * Order for one pod. Setup: listener(on) per listener, pod_ready,
 * attach_ingress, enrol(on): capture starts last, when what it leads to is
 * served. Teardown (the pod left, its netns went, pods_free, or a later setup
 * step failed): enrol(off), the link fd closed, pod_gone, listener(off) per
 * listener; then pods closes the listeners and removes rule, routes and the
 * sysctls it changed. Only steps that were done are undone. */
struct pods_ops {
	/* Called inside the pod's netns: attach the pod's TC ingress program on
	 * ifindex. Returns a link fd (pods owns it and closes it when the pod
	 * goes), PODS_INGRESS_NO_LINK (attached without a link: detach_ingress
	 * undoes it, inside the netns), or -errno. link_fd >= 0: the link
	 * inherited from the agent taken over (handover.h), to reuse; the
	 * callback owns it. */
	int (*attach_ingress)(void *arg, int ifindex, int link_fd);
	int (*detach_ingress)(void *arg, int ifindex);
	/* The same for the TC egress program (NetworkPolicy). */
	int (*attach_egress)(void *arg, int ifindex, int link_fd);
	int (*detach_egress)(void *arg, int ifindex);
	/* Register (on) or unregister a listener, e.g. in a sockhash.
	 * 0 or -errno; a failed "on" fails the pod's setup. */
	int (*listener)(void *arg, uint64_t netns_cookie, uint16_t port, int family, int fd,
			bool on);
	/* Start (on) or stop capturing the pod's connects (the enrolled-netns
	 * map). 0 or -errno; a failed "on" fails the pod's setup. */
	int (*enrol)(void *arg, uint64_t netns_cookie, const struct pods_pod *pod, bool on);
	/* The tunnel starts accepting on pod->listeners / stops using them
	 * (mesh pods only). */
	void (*pod_ready)(void *arg, const struct pods_pod *pod);
	void (*pod_gone)(void *arg, const struct pods_pod *pod);
};

struct pods_opts {
	const char *netns_dir;		/* NULL: PODS_NETNS_DIR */
	const char *prefix;		/* only names starting with it; NULL or "": all */
	const char *procfs;		/* where the pods' sysctls are written; NULL: /proc */
	unsigned int retry_min_ms;	/* first retry of a pending pod; 0: 100 */
	unsigned int retry_max_ms;	/* backoff doubles up to this; 0: 5000 */
};

/* Keeps an fd of the calling thread's netns as "home". 0 or -errno. The
 * directory may not exist yet: it is watched once it does. */
int pods_new(struct pods **out, struct loop *loop, const struct pods_opts *opts,
	     const struct pods_ops *ops, void *arg);
/* Undo everything for every pod (see pods_set_enrolled), close everything. NULL-safe. */
void pods_free(struct pods *p);

/* Make the enrolled set be pods[0..n): pods that left are undone, new ones
 * set up at once when their netns is found, else retried later. Returns 0, or
 * -errno when the set could not be taken (memory); per-pod problems are not
 * errors here but shown by pods_list. */
int pods_set_enrolled(struct pods *p, const struct pods_spec *pods, size_t n);
/* Frozen: no set-up, teardown or retry from now on, whatever the netns
 * directory says (a successor agent owns the pods: handover.h); thawed: a
 * full pass at once. pods_set_enrolled must not be called while frozen. */
void pods_freeze(struct pods *p, bool frozen);

/* A new socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC) created in the
 * netns of the enrolled pod holding ip (for connects from the pod's IP; the
 * caller sets SO_MARK). Returns the fd, -ENOENT if no enrolled pod has ip, or
 * -errno from socket(). Two setns() calls, no file opened. Like the
 * listeners, such a socket keeps the pod's netns alive: close it by pod_gone. */
int pods_socket(struct pods *p, const struct sl_ip *ip, int domain, int type);

/* For `sluicectl workloads`. */
struct pods_info {
	char ns[64], name[254];
	struct sl_ip ips[2];
	size_t n_ips;
	bool enrolled;			/* set up and handed to the tunnel */
	char netns[NAME_MAX + 1];	/* "" when not found */
	uint64_t netns_cookie;		/* 0 when not enrolled */
	int ifindex;			/* 0 when not enrolled */
	char ifname[IF_NAMESIZE];
	bool ingress_attached, egress_attached;
	bool mesh;
	struct pods_listen listeners[PODS_L_COUNT];	/* fd >= 0: listening */
	uint64_t since_ms;		/* loop_now_ms() of the last state change */
	char error[160];		/* last problem, "" if none ("netns not found yet", ...) */
};

/* *out is malloc'ed (free it), one entry per desired pod in the order given
 * to pods_set_enrolled. 0 or -ENOMEM. */
int pods_list(const struct pods *p, struct pods_info **out, size_t *n);

#endif
