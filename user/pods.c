// SPDX-License-Identifier: Apache-2.0
/* pods.c - see pods.h.
 *
 * State:
 *   struct nsent  one per entry of the netns directory whose name has the
 *                 prefix: its nsfs identity (dev, inode; 0 while the file is
 *                 not a namespace yet) and the addresses it held when last
 *                 read. An entry is read again only when its inode is new, or,
 *                 on a retry tick, while no pod owns it (its IP may have been
 *                 configured since). Opening it is all that pins a netns, and
 *                 the fd is closed right after reading.
 *   struct pod    one per desired pod: PENDING (no netns found yet, or the
 *                 last setup failed: err says why; retried) or ENROLLED (owns
 *                 an nsent, holds the netns fd, listeners and link fd).
 *
 * Setup of a pod (pod_setup), in this order, and why:
 *   1. open the netns file, check it is still the inode that was matched;
 *   2. inside (one setns there and back): re-read the addresses (the pod IP
 *      must still be there; gives the interface), sysctls, rule + local
 *      route, then the listeners and the netns cookie. Routing and sysctls
 *      come first so that anything the tunnel later delivers works from its
 *      first connection; nothing captures traffic yet.
 *   3. listener(on) for each listener: the kernel can then find them;
 *   4. pod_ready: the tunnel accepts on them (SYNs that arrive earlier wait
 *      in the backlog);
 *   5. inside again: attach_ingress on the pod's interface: inbound capture
 *      starts, with listeners registered and served;
 *   6. enrol(on): outbound capture starts, last, once everything it leads to
 *      is in place.
 * Teardown (pod_teardown) undoes exactly what was done, in reverse: capture
 * stops first (enrol off, then the link fd closes so TC stops steering), the
 * tunnel lets go of the listeners (pod_gone) before they are unregistered and
 * closed, then rule, route and changed sysctls go, and last the netns fd: with
 * it the last reference this process had into the netns. A failed setup runs
 * the same teardown, so nothing is left half done.
 *
 * The rule matches the delivery mark positively: `not fwmark X ... lookup`
 * negates the whole rule and breaks ARP, UDP and the reverse-path check
 * (KERNEL-NOTES).
 *
 * Every setns() into a pod goes through ns_enter/ns_leave; ns_leave aborts if
 * it cannot return (continuing would create the agent's sockets in a pod).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>

#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>

#include <sluice/abi.h>

#include "handover.h"
#include "log.h"
#include "loop.h"
#include "pods.h"

#define PODS_RETRY_MIN_MS	100
#define PODS_RETRY_MAX_MS	5000
#define PODS_RESYNC_MS		30000	/* directory re-read when nothing is pending */
#define PODS_BACKLOG		1024
#define PODS_RULE_PREF		100

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE		71	/* Linux 5.14 */
#endif

struct nsaddr {
	struct sl_ip ip;
	int ifindex;
};

struct pod;

struct nsent {
	char *name;
	dev_t dev;
	ino_t ino;			/* 0: not a network namespace (yet) */
	struct nsaddr *addrs;
	size_t n_addrs;
	bool scanned;			/* addrs read for this inode */
	bool seen;			/* in the current directory listing */
	struct pod *owner;		/* the pod enrolled in it, if any */
};

enum pod_st {
	POD_ST_PENDING,
	POD_ST_ENROLLED,
	POD_ST_COUNT,
};

/* The listeners: where and how. Index = enum pods_listener. */
static const struct lspec {
	uint16_t port;
	int family;
	bool loopback;			/* 127.0.0.1 / ::1, else the wildcard */
	bool transparent;
} lspecs[PODS_L_COUNT] = {
	[PODS_L_OUT4] = { SL_PORT_OUTBOUND, AF_INET, true, false },
	[PODS_L_OUT6] = { SL_PORT_OUTBOUND, AF_INET6, true, false },
	[PODS_L_IN4] = { SL_PORT_INBOUND, AF_INET, false, true },
	[PODS_L_IN6] = { SL_PORT_INBOUND, AF_INET6, false, true },
	[PODS_L_HBONE4] = { SL_PORT_HBONE, AF_INET, false, false },
	[PODS_L_HBONE6] = { SL_PORT_HBONE, AF_INET6, false, false },
};

/* Sysctls set to 1 in each pod's netns (paths follow the opener's netns),
 * relative to the procfs in use (--procfs: a container's own /proc/sys is
 * read-only, the host's /proc mounted elsewhere is not).
 * tcp_tw_reuse: the agent's deliveries connect from their client's IP, from
 * a narrow port range (tunnel.c), and close first when the client did; their
 * TIME_WAIT would hold each port for 60 s. Reuse (after 1 s, by timestamps)
 * applies to connect() only, so the pod's own connections change only in
 * getting the same. */
enum { SYS_TCP_FWMARK_ACCEPT, SYS_FWMARK_REFLECT4, SYS_FWMARK_REFLECT6, SYS_TCP_TW_REUSE, SYS_COUNT };
static const char *const sysctl_paths[SYS_COUNT] = {
	[SYS_TCP_FWMARK_ACCEPT] = "sys/net/ipv4/tcp_fwmark_accept",
	[SYS_FWMARK_REFLECT4] = "sys/net/ipv4/fwmark_reflect",
	[SYS_FWMARK_REFLECT6] = "sys/net/ipv6/fwmark_reflect",
	[SYS_TCP_TW_REUSE] = "sys/net/ipv4/tcp_tw_reuse",
};

struct pod {
	struct pods_pod pub;		/* what the callbacks see; points into this */
	char *ns, *name, *sa;
	struct sl_ip ips[2];
	size_t n_ips;

	enum pod_st st;
	uint64_t since_ms;
	char err[160];			/* last problem; "" if none */
	char serr[160];			/* first problem of the current setup attempt */
	char lost[96];			/* what happened to the last netns, for err */
	bool keep;			/* pods_set_enrolled: still desired */

	/* While enrolled (or during setup): what was done, for pod_teardown. */
	struct nsent *ent;
	char netns[NAME_MAX + 1];
	char ifname[IF_NAMESIZE];
	int nsfd;
	int link_fd;			/* pod_ingress */
	int eg_link_fd;			/* pod_egress (policy) */
	bool mesh;			/* full mesh setup; else TC programs and netns only */
	int lo;				/* ifindex of lo in the netns */
	bool v6;
	int sysctl_prev[SYS_COUNT];	/* value to restore; -1: not changed by us */
	bool rule[2], route[2];		/* [0] IPv4, [1] IPv6: present, ours to remove */
	bool registered[PODS_L_COUNT];
	bool ready;			/* pod_ready called */
	bool enrolled;			/* enrol(on) succeeded */
};

struct pods {
	struct loop *loop;
	struct pods_ops ops;
	void *arg;
	char *dir, *prefix;
	size_t prefix_len;
	char *sysctl[SYS_COUNT];	/* <procfs>/sysctl_paths[i] */
	unsigned int retry_min, retry_max, backoff;
	bool frozen;			/* pods_freeze: another agent took over */

	int home_fd;			/* the agent's netns, open from the start */
	ino_t home_ino;
	dev_t nsfs_dev;			/* st_dev of namespace files */

	int ino_fd, wd;
	struct loop_io ino_io;
	struct loop_timer timer;

	struct pod **pods;		/* desired set, in the caller's order */
	size_t n_pods;
	struct nsent **ents;
	size_t n_ents, cap_ents;
	char dir_err[128];		/* why the directory can't be read, "" if it can */
};

/* ---- small helpers ---- */

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static bool ip_eq(const struct sl_ip *a, const struct sl_ip *b)
{
	return a->family == b->family && !memcmp(&a->addr, &b->addr, sizeof(a->addr));
}

static const char *ip_str(const struct sl_ip *ip, char *buf, size_t len)
{
	if (!inet_ntop(ip->family == SL_AF_INET6 ? AF_INET6 : AF_INET, &ip->addr, buf,
		       (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

static void pod_set_err(struct pod *pod, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Record the pod's current problem; logged when it differs from the last one. */
static void pod_set_err(struct pod *pod, enum log_level lvl, const char *fmt, ...)
{
	char msg[sizeof(pod->err)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!strcmp(msg, pod->err))
		return;
	log_msg(lvl, "pods: %s/%s: %s", pod->ns, pod->name, msg);
	snprintf(pod->err, sizeof(pod->err), "%s", msg);
}

static void setup_err(struct pod *pod, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first problem of a setup attempt; pod_setup makes it the pod's error. */
static void setup_err(struct pod *pod, const char *fmt, ...)
{
	va_list ap;

	if (pod->serr[0])
		return;
	va_start(ap, fmt);
	vsnprintf(pod->serr, sizeof(pod->serr), fmt, ap);
	va_end(ap);
}

static int nl_errno(int nlerr)
{
	switch (nlerr < 0 ? -nlerr : nlerr) {
	case NLE_EXIST:
		return -EEXIST;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_PERM:
		return -EPERM;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_AF_NOSUPPORT:
		return -EAFNOSUPPORT;
	case NLE_NODEV:
		return -ENODEV;
	case NLE_NOADDR:
		return -EADDRNOTAVAIL;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_RANGE:
		return -ERANGE;
	default:
		return -EIO;
	}
}

/* ---- network namespaces ---- */

/* Checks the thread is in the agent's netns. At the end of each entry point
 * (not per setns: the stat costs as much as the two setns of pods_socket). */
static void ns_assert_home(const struct pods *p)
{
#ifndef NDEBUG
	struct stat st;

	if (p->home_fd < 0)
		return;
	assert(stat("/proc/thread-self/ns/net", &st) == 0 && st.st_ino == p->home_ino);
#else
	(void)p;
#endif
}

static int ns_enter(const struct pods *p, int fd)
{
	(void)p;
	if (setns(fd, CLONE_NEWNET) == -1)
		return -errno;
	return 0;
}

/* Back to the agent's netns. Terminal if that fails: every later socket
 * would be made in a pod's netns. */
static void ns_leave(const struct pods *p)
{
	if (setns(p->home_fd, CLONE_NEWNET) == -1) {
		pr_err("pods: cannot return to the agent's netns: %s", strerror(errno));
		abort();
	}
}

static int nl_open(struct nl_sock **out)
{
	struct nl_sock *sk = nl_socket_alloc();
	int err;

	if (!sk)
		return -ENOMEM;
	err = nl_connect(sk, NETLINK_ROUTE);
	if (err < 0) {
		nl_socket_free(sk);
		return nl_errno(err);
	}
	*out = sk;
	return 0;
}

/* The addresses of the current netns that a pod can hold: global (and site)
 * scope, IPv4 and IPv6. *out is malloc'ed. */
static int addrs_read(struct nsaddr **out, size_t *n)
{
	struct nl_sock *sk = NULL;
	struct nl_cache *cache = NULL;
	struct nsaddr *v = NULL;
	size_t cnt = 0, cap = 0;
	int err;

	err = nl_open(&sk);
	if (err)
		goto out;
	err = rtnl_addr_alloc_cache(sk, &cache);
	if (err < 0) {
		err = nl_errno(err);
		goto out;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct nl_addr *l = rtnl_addr_get_local(a);
		int fam = l ? nl_addr_get_family(l) : AF_UNSPEC;
		unsigned int len = l ? nl_addr_get_len(l) : 0;
		struct nsaddr *na;

		if (rtnl_addr_get_scope(a) >= RT_SCOPE_LINK)
			continue;
		if (!((fam == AF_INET && len == 4) || (fam == AF_INET6 && len == 16)))
			continue;
		if (cnt == cap) {
			size_t c = cap ? cap * 2 : 4;
			struct nsaddr *nv = realloc(v, c * sizeof(*nv));

			if (!nv) {
				err = -ENOMEM;
				goto out;
			}
			v = nv;
			cap = c;
		}
		na = &v[cnt++];
		memset(na, 0, sizeof(*na));
		na->ip.family = fam == AF_INET ? SL_AF_INET : SL_AF_INET6;
		memcpy(na->ip.addr.octets, nl_addr_get_binary_addr(l), len);
		na->ifindex = rtnl_addr_get_ifindex(a);
	}
	*out = v;
	*n = cnt;
	v = NULL;
	err = 0;
out:
	free(v);
	if (cache)
		nl_cache_free(cache);
	nl_socket_free(sk);
	return err;
}

/* ---- sysctls, rules, routes (inside the pod's netns) ---- */

/* -ENOENT when the sysctl does not exist (no IPv6 in this kernel). */
static int sysctl_read(const char *path, int *val)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;
	ssize_t n;

	if (fd == -1)
		return -errno;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		err = -errno;
	else
		*val = atoi(buf);
	close(fd);
	return err;
}

static int sysctl_write(const char *path, int val)
{
	char buf[16];
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0, len;

	if (fd == -1)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%d\n", val);
	/* At offset 0: strict sysctl writes ignore other positions. */
	if (pwrite(fd, buf, (size_t)len, 0) != len)
		err = -errno;
	close(fd);
	return err;
}

/* IPv6 is usable in the current netns: the kernel has it and lo has it enabled. */
static bool ipv6_usable(void)
{
	int v = 1;

	if (sysctl_read("/proc/sys/net/ipv6/conf/lo/disable_ipv6", &v))
		return false;
	return v == 0;
}

/* ip rule add/del fwmark SL_MARK_DELIVER/SL_MARK_MASK lookup SL_DELIVER_TABLE pref 100.
 * Adding finds an identical rule as -EEXIST (NLM_F_EXCL), deleting a missing one -ENOENT. */
static int rule_change(struct nl_sock *sk, int family, bool add)
{
	struct rtnl_rule *r = rtnl_rule_alloc();
	int err;

	if (!r)
		return -ENOMEM;
	rtnl_rule_set_family(r, family);
	rtnl_rule_set_prio(r, PODS_RULE_PREF);
	rtnl_rule_set_mark(r, SL_MARK_DELIVER);
	rtnl_rule_set_mask(r, SL_MARK_MASK);
	rtnl_rule_set_table(r, SL_DELIVER_TABLE);
	rtnl_rule_set_action(r, FR_ACT_TO_TBL);
	err = add ? rtnl_rule_add(sk, r, NLM_F_EXCL) : rtnl_rule_delete(sk, r, 0);
	rtnl_rule_put(r);
	return err < 0 ? nl_errno(err) : 0;
}

/* ip route add/del local 0.0.0.0/0 (::/0) dev lo table SL_DELIVER_TABLE. */
static int route_change(struct nl_sock *sk, int family, int lo, bool add)
{
	static const uint8_t zero[16];
	struct rtnl_route *rt = rtnl_route_alloc();
	struct rtnl_nexthop *nh = NULL;
	struct nl_addr *dst = NULL;
	int err = -ENOMEM;

	if (!rt)
		return -ENOMEM;
	dst = nl_addr_build(family, zero, family == AF_INET ? 4 : 16);
	if (!dst)
		goto out;
	nl_addr_set_prefixlen(dst, 0);
	rtnl_route_set_family(rt, (uint8_t)family);
	rtnl_route_set_table(rt, SL_DELIVER_TABLE);
	rtnl_route_set_type(rt, RTN_LOCAL);
	rtnl_route_set_scope(rt, RT_SCOPE_HOST);
	/* Deletes match any protocol (a route an operator or older agent added). */
	rtnl_route_set_protocol(rt, add ? RTPROT_STATIC : RTPROT_UNSPEC);
	err = rtnl_route_set_dst(rt, dst);
	if (err < 0) {
		err = nl_errno(err);
		goto out;
	}
	nh = rtnl_route_nh_alloc();
	if (!nh) {
		err = -ENOMEM;
		goto out;
	}
	rtnl_route_nh_set_ifindex(nh, lo);
	rtnl_route_add_nexthop(rt, nh);		/* rt owns nh now */
	err = add ? rtnl_route_add(sk, rt, NLM_F_EXCL) : rtnl_route_delete(sk, rt, 0);
	err = err < 0 ? nl_errno(err) : 0;
out:
	nl_addr_put(dst);
	rtnl_route_put(rt);
	return err;
}

/* Undo what the setup did inside the netns: rules, routes, sysctls. The
 * caller is inside. Failures are logged: the netns may be on its way out. */
static void pod_undo_inside(struct pods *p, struct pod *pod)
{
	struct nl_sock *sk = NULL;
	int err;

	if (pod->rule[0] || pod->rule[1] || pod->route[0] || pod->route[1]) {
		err = nl_open(&sk);
		if (err)
			pr_warn("pods: %s/%s: netlink: %s", pod->ns, pod->name, strerror(-err));
	}
	for (int i = 0; sk && i < 2; i++) {
		int fam = i ? AF_INET6 : AF_INET;

		if (pod->rule[i]) {
			err = rule_change(sk, fam, false);
			if (err && err != -ENOENT)
				pr_warn("pods: %s/%s: removing the IPv%d delivery rule: %s",
					pod->ns, pod->name, i ? 6 : 4, strerror(-err));
		}
		if (pod->route[i]) {
			err = route_change(sk, fam, pod->lo, false);
			if (err && err != -ENOENT && err != -ESRCH)
				pr_warn("pods: %s/%s: removing the IPv%d local route: %s", pod->ns,
					pod->name, i ? 6 : 4, strerror(-err));
		}
	}
	if (sk)
		nl_socket_free(sk);
	memset(pod->rule, 0, sizeof(pod->rule));
	memset(pod->route, 0, sizeof(pod->route));
	for (int i = 0; i < SYS_COUNT; i++) {
		if (pod->sysctl_prev[i] < 0)
			continue;
		err = sysctl_write(p->sysctl[i], pod->sysctl_prev[i]);
		if (err)
			pr_warn("pods: %s/%s: restoring %s: %s", pod->ns, pod->name,
				p->sysctl[i], strerror(-err));
		pod->sysctl_prev[i] = -1;
	}
}

/* ---- listeners ---- */

/* What a pod's kernel objects are offered as for a takeover (handover.h): the
 * netns by its nsfs identity, the same in every process. */
#define POD_KEY			"pod %llu:%llu "
#define POD_KEY_ARGS(pod)	(unsigned long long)(pod)->ent->dev, (unsigned long long)(pod)->ent->ino

static int listener_open(const struct lspec *s, int *out)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int fd, one = 1, err = 0;

	fd = socket(s->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -errno;
	if (s->family == AF_INET) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(s->port);
		s4->sin_addr.s_addr = htonl(s->loopback ? INADDR_LOOPBACK : INADDR_ANY);
		len = sizeof(*s4);
	} else {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(s->port);
		s6->sin6_addr = s->loopback ? in6addr_loopback : in6addr_any;
		len = sizeof(*s6);
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    (s->family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1) ||
	    (s->transparent && s->family == AF_INET &&
	     setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one)) == -1) ||
	    (s->transparent && s->family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) == -1) ||
	    bind(fd, (struct sockaddr *)&ss, len) == -1 || listen(fd, PODS_BACKLOG) == -1) {
		err = -errno;
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

/* ---- setup and teardown of one pod ---- */

static const char *lspec_addr(const struct lspec *s)
{
	if (s->family == AF_INET)
		return s->loopback ? "127.0.0.1" : "0.0.0.0";
	return s->loopback ? "[::1]" : "[::]";
}

/* The cookie of the netns the caller is in (= bpf_get_netns_cookie()). */
static int netns_cookie_here(uint64_t *out)
{
	socklen_t cl = sizeof(*out);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), err = 0;

	if (fd < 0)
		return -errno;
	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, out, &cl) == -1)
		err = -errno;
	close(fd);
	return err;
}

/* Step 2 of pod_setup: everything done inside the netns in one visit. The
 * caller is inside and returns to the agent's netns whatever this returns. */
static int pod_setup_inside(struct pods *p, struct pod *pod)
{
	struct nsaddr *addrs = NULL;
	struct nl_sock *sk = NULL;
	socklen_t cl = sizeof(pod->pub.netns_cookie);
	size_t n = 0;
	char ipb[INET6_ADDRSTRLEN];
	int err, lo;

	/* The pod's IP, still there? Its interface is the one to attach to. */
	err = addrs_read(&addrs, &n);
	if (err) {
		setup_err(pod, "netns %s: reading addresses: %s", pod->netns, strerror(-err));
		goto out;
	}
	for (size_t i = 0; i < n && !pod->pub.ifindex; i++)
		for (size_t j = 0; j < pod->n_ips; j++)
			if (ip_eq(&addrs[i].ip, &pod->ips[j]))
				pod->pub.ifindex = addrs[i].ifindex;
	if (!pod->pub.ifindex) {
		err = -EADDRNOTAVAIL;
		setup_err(pod, "netns %s no longer holds %s", pod->netns,
			  ip_str(&pod->ips[0], ipb, sizeof(ipb)));
		goto out;
	}
	if (!if_indextoname((unsigned int)pod->pub.ifindex, pod->ifname))
		snprintf(pod->ifname, sizeof(pod->ifname), "?");
	pod->v6 = ipv6_usable();
	if (!pod->mesh) {
		err = netns_cookie_here(&pod->pub.netns_cookie);
		if (err)
			setup_err(pod, "SO_NETNS_COOKIE: %s (needs Linux 5.14)", strerror(-err));
		goto out;
	}

	for (int i = 0; i < SYS_COUNT; i++) {
		int v = 0;

		if (i == SYS_FWMARK_REFLECT6 && !pod->v6)
			continue;
		err = sysctl_read(p->sysctl[i], &v);
		if (!err && v != 1) {
			err = sysctl_write(p->sysctl[i], 1);
			if (!err)
				pod->sysctl_prev[i] = v;
		}
		if (err) {
			setup_err(pod, "setting %s: %s", p->sysctl[i], strerror(-err));
			goto out;
		}
	}

	lo = (int)if_nametoindex("lo");
	pod->lo = lo;
	if (!lo) {
		err = -ENODEV;
		setup_err(pod, "netns %s has no lo", pod->netns);
		goto out;
	}
	err = nl_open(&sk);
	if (err) {
		setup_err(pod, "netlink: %s", strerror(-err));
		goto out;
	}
	for (int i = 0; i < (pod->v6 ? 2 : 1); i++) {
		int fam = i ? AF_INET6 : AF_INET;

		err = rule_change(sk, fam, true);
		if (err && err != -EEXIST) {
			setup_err(pod, "adding the IPv%d rule fwmark 0x%x/0x%x lookup %d: %s",
				  i ? 6 : 4, SL_MARK_DELIVER, SL_MARK_MASK, SL_DELIVER_TABLE,
				  strerror(-err));
			goto out;
		}
		pod->rule[i] = true;
		err = route_change(sk, fam, lo, true);
		if (err && err != -EEXIST) {
			setup_err(pod, "adding the IPv%d route local %s dev lo table %d: %s",
				  i ? 6 : 4, i ? "::/0" : "0.0.0.0/0", SL_DELIVER_TABLE,
				  strerror(-err));
			goto out;
		}
		pod->route[i] = true;
	}

	for (int i = 0; i < PODS_L_COUNT; i++) {
		const struct lspec *s = &lspecs[i];

		if (s->family == AF_INET6 && !pod->v6)
			continue;
		/* A takeover: the old agent's listener, its queue and all. */
		pod->pub.listeners[i].fd = handover_takef(POD_KEY "listen %s:%u", POD_KEY_ARGS(pod),
							  lspec_addr(s), s->port);
		err = pod->pub.listeners[i].fd >= 0 ? 0 : listener_open(s, &pod->pub.listeners[i].fd);
		if (err == -EAFNOSUPPORT && s->family == AF_INET6) {
			pod->v6 = false;	/* no IPv6 after all: keep the IPv4 half */
			err = 0;
			continue;
		}
		if (err == -EADDRINUSE) {
			setup_err(pod, "port %u in use (%s:%u, netns %s)", s->port, lspec_addr(s),
				  s->port, pod->netns);
			goto out;
		}
		if (err) {
			setup_err(pod, "listening on %s:%u: %s", lspec_addr(s), s->port,
				  strerror(-err));
			goto out;
		}
	}
	for (int i = 0; i < PODS_L_COUNT; i++)
		handover_offerf(pod->pub.listeners[i].fd, POD_KEY "listen %s:%u", POD_KEY_ARGS(pod),
				lspec_addr(&lspecs[i]), lspecs[i].port);
	if (getsockopt(pod->pub.listeners[PODS_L_OUT4].fd, SOL_SOCKET, SO_NETNS_COOKIE,
		       &pod->pub.netns_cookie, &cl) == -1) {
		err = -errno;
		setup_err(pod, "SO_NETNS_COOKIE: %s (needs Linux 5.14)", strerror(-err));
		goto out;
	}
out:
	if (sk)
		nl_socket_free(sk);
	free(addrs);
	return err;
}

/* Undo what was done for pod (all of it, or what a failed setup got to), in
 * the reverse order of pod_setup; the pod ends PENDING with no fd left. */
static void pod_teardown(struct pods *p, struct pod *pod)
{
	bool inside = pod->rule[0] || pod->rule[1] || pod->route[0] || pod->route[1];
	int err;

	if (pod->enrolled && p->ops.enrol) {
		err = p->ops.enrol(p->arg, pod->pub.netns_cookie, &pod->pub, false);
		if (err)
			pr_warn("pods: %s/%s: unenrolling netns cookie %llu: %s", pod->ns,
				pod->name, (unsigned long long)pod->pub.netns_cookie,
				strerror(-err));
	}
	pod->enrolled = false;
	if (pod->link_fd == PODS_INGRESS_NO_LINK) {
		/* A filter without a link: removed from inside (gone with a gone netns). */
		err = p->ops.detach_ingress ? ns_enter(p, pod->nsfd) : 0;
		if (!err && p->ops.detach_ingress) {
			err = p->ops.detach_ingress(p->arg, pod->pub.ifindex);
			ns_leave(p);
		}
		if (err && err != -ENODEV && err != -ENOENT)
			pr_warn("pods: %s/%s: detaching ingress from ifindex %d: %s", pod->ns,
				pod->name, pod->pub.ifindex, strerror(-err));
	} else if (pod->link_fd >= 0) {
		handover_withdraw(pod->link_fd);
		close(pod->link_fd);
	}
	pod->link_fd = -1;
	if (pod->eg_link_fd == PODS_INGRESS_NO_LINK) {
		err = p->ops.detach_egress ? ns_enter(p, pod->nsfd) : 0;
		if (!err && p->ops.detach_egress) {
			err = p->ops.detach_egress(p->arg, pod->pub.ifindex);
			ns_leave(p);
		}
		if (err && err != -ENODEV && err != -ENOENT)
			pr_warn("pods: %s/%s: detaching egress from ifindex %d: %s", pod->ns,
				pod->name, pod->pub.ifindex, strerror(-err));
	} else if (pod->eg_link_fd >= 0) {
		handover_withdraw(pod->eg_link_fd);
		close(pod->eg_link_fd);
	}
	pod->eg_link_fd = -1;
	if (pod->ready && p->ops.pod_gone)
		p->ops.pod_gone(p->arg, &pod->pub);
	pod->ready = false;
	for (int i = 0; i < PODS_L_COUNT; i++) {
		struct pods_listen *l = &pod->pub.listeners[i];

		if (pod->registered[i] && p->ops.listener) {
			err = p->ops.listener(p->arg, pod->pub.netns_cookie, l->port, l->family,
					      l->fd, false);
			if (err)
				pr_warn("pods: %s/%s: unregistering listener %u: %s", pod->ns,
					pod->name, l->port, strerror(-err));
		}
		pod->registered[i] = false;
		if (l->fd >= 0) {
			handover_withdraw(l->fd);
			close(l->fd);
		}
		l->fd = -1;
	}
	for (int i = 0; i < SYS_COUNT; i++)
		inside |= pod->sysctl_prev[i] >= 0;
	if (inside && pod->nsfd >= 0) {
		err = ns_enter(p, pod->nsfd);
		if (!err) {
			pod_undo_inside(p, pod);
			ns_leave(p);
		} else {
			pr_warn("pods: %s/%s: entering netns %s to clean up: %s", pod->ns,
				pod->name, pod->netns, strerror(-err));
		}
	}
	if (pod->nsfd >= 0)
		close(pod->nsfd);
	pod->nsfd = -1;
	if (pod->ent)
		pod->ent->owner = NULL;
	pod->ent = NULL;
	pod->pub.netns_cookie = 0;
	pod->pub.ifindex = 0;
	pod->ifname[0] = '\0';
	if (pod->st == POD_ST_ENROLLED) {
		pr_info("pods: %s/%s: left netns %s", pod->ns, pod->name, pod->netns);
		pod->since_ms = loop_now_ms();
	}
	pod->st = POD_ST_PENDING;
}

/* Set pod up in the netns of ent (see the top of the file). 0 or -errno
 * with pod->err set; on error everything done is undone. */
static int pod_setup(struct pods *p, struct pod *pod, struct nsent *ent)
{
	uint64_t t0 = now_us(), t_in = 0;
	char path[PATH_MAX];
	struct stat st;
	int err = 0;

	pod->serr[0] = '\0';
	snprintf(pod->netns, sizeof(pod->netns), "%s", ent->name);
	pod->ent = ent;
	ent->owner = pod;
	if (snprintf(path, sizeof(path), "%s/%s", p->dir, ent->name) >= (int)sizeof(path)) {
		err = -ENAMETOOLONG;
		setup_err(pod, "netns path too long");
		goto out;
	}
	pod->nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (pod->nsfd == -1 || fstat(pod->nsfd, &st) == -1) {
		err = -errno;
		setup_err(pod, "opening %s: %s", path, strerror(-err));
		goto out;
	}
	if (st.st_dev != ent->dev || st.st_ino != ent->ino) {
		ent->scanned = false;	/* replaced since it was read */
		err = -ESTALE;
		setup_err(pod, "netns %s changed while being set up", ent->name);
		goto out;
	}

	err = ns_enter(p, pod->nsfd);
	if (err) {
		setup_err(pod, "entering netns %s: %s", ent->name, strerror(-err));
		goto out;
	}
	err = pod_setup_inside(p, pod);
	ns_leave(p);
	t_in = now_us() - t0;
	if (err == -EADDRNOTAVAIL)
		ent->scanned = false;	/* the cache was stale: read it again */
	if (err)
		goto out;

	for (int i = 0; i < PODS_L_COUNT && p->ops.listener; i++) {
		struct pods_listen *l = &pod->pub.listeners[i];

		if (l->fd < 0)
			continue;
		err = p->ops.listener(p->arg, pod->pub.netns_cookie, l->port, l->family, l->fd,
				      true);
		if (err) {
			setup_err(pod, "registering listener %s:%u: %s", lspec_addr(&lspecs[i]),
				  l->port, strerror(-err));
			goto out;
		}
		pod->registered[i] = true;
	}

	if (p->ops.pod_ready && pod->mesh) {
		p->ops.pod_ready(p->arg, &pod->pub);
		pod->ready = true;
	}

	if (p->ops.attach_ingress) {
		err = ns_enter(p, pod->nsfd);
		if (err) {
			setup_err(pod, "entering netns %s: %s", ent->name, strerror(-err));
			goto out;
		}
		err = p->ops.attach_ingress(p->arg, pod->pub.ifindex,
					    handover_takef(POD_KEY "ingress %d", POD_KEY_ARGS(pod),
							   pod->pub.ifindex));
		ns_leave(p);
		if (err < 0) {
			setup_err(pod, "attaching ingress to %s (ifindex %d): %s", pod->ifname,
				  pod->pub.ifindex, strerror(-err));
			goto out;
		}
		pod->link_fd = err;
		if (err != PODS_INGRESS_NO_LINK)
			handover_offerf(err, POD_KEY "ingress %d", POD_KEY_ARGS(pod), pod->pub.ifindex);
		err = 0;
	}
	if (p->ops.attach_egress) {
		err = ns_enter(p, pod->nsfd);
		if (err) {
			setup_err(pod, "entering netns %s: %s", ent->name, strerror(-err));
			goto out;
		}
		err = p->ops.attach_egress(p->arg, pod->pub.ifindex,
					   handover_takef(POD_KEY "egress %d", POD_KEY_ARGS(pod),
							  pod->pub.ifindex));
		ns_leave(p);
		if (err < 0) {
			setup_err(pod, "attaching egress to %s (ifindex %d): %s", pod->ifname,
				  pod->pub.ifindex, strerror(-err));
			goto out;
		}
		pod->eg_link_fd = err;
		if (err != PODS_INGRESS_NO_LINK)
			handover_offerf(err, POD_KEY "egress %d", POD_KEY_ARGS(pod), pod->pub.ifindex);
		err = 0;
	}

	if (p->ops.enrol) {
		err = p->ops.enrol(p->arg, pod->pub.netns_cookie, &pod->pub, true);
		if (err) {
			setup_err(pod, "enrolling netns cookie %llu: %s",
				  (unsigned long long)pod->pub.netns_cookie, strerror(-err));
			goto out;
		}
	}
	pod->enrolled = true;
	pod->st = POD_ST_ENROLLED;
	pod->since_ms = loop_now_ms();
	pr_info("pods: %s/%s: enrolled in netns %s (cookie %llu, %s ifindex %d%s) in %llu us "
		"(%llu us inside)",
		pod->ns, pod->name, pod->netns, (unsigned long long)pod->pub.netns_cookie,
		pod->ifname, pod->pub.ifindex, pod->v6 ? "" : ", no IPv6",
		(unsigned long long)(now_us() - t0), (unsigned long long)t_in);
	pod->err[0] = '\0';
	pod->lost[0] = '\0';
out:
	if (err) {
		pod_teardown(p, pod);
		pod_set_err(pod, LOG_WARN, "%s", pod->serr[0] ? pod->serr : strerror(-err));
	}
	return err;
}

/* ---- the netns directory ---- */

static void ent_free(struct nsent *e)
{
	if (!e)
		return;
	free(e->name);
	free(e->addrs);
	free(e);
}

static struct nsent *ent_find(const struct pods *p, const char *name)
{
	for (size_t i = 0; i < p->n_ents; i++)
		if (!strcmp(p->ents[i]->name, name))
			return p->ents[i];
	return NULL;
}

static struct nsent *ent_add(struct pods *p, const char *name)
{
	struct nsent *e;

	if (p->n_ents == p->cap_ents) {
		size_t c = p->cap_ents ? p->cap_ents * 2 : 16;
		struct nsent **v = realloc(p->ents, c * sizeof(*v));

		if (!v)
			return NULL;
		p->ents = v;
		p->cap_ents = c;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->name = strdup(name);
	if (!e->name) {
		free(e);
		return NULL;
	}
	p->ents[p->n_ents++] = e;
	return e;
}

/* An entry's namespace went away or was replaced: the pod in it leaves. */
static void ent_lost(struct pods *p, struct nsent *e, const char *why)
{
	struct pod *pod = e->owner;

	if (!pod)
		return;
	pod_teardown(p, pod);
	snprintf(pod->lost, sizeof(pod->lost), "netns %s %s", e->name, why);
	pod_set_err(pod, LOG_WARN, "%s", pod->lost);
}

static void ent_remove(struct pods *p, size_t i)
{
	struct nsent *e = p->ents[i];

	ent_lost(p, e, "was deleted");
	ent_free(e);
	p->ents[i] = p->ents[--p->n_ents];
}

/* Read the addresses of e's namespace (e->ino must be set). */
static int ent_scan(struct pods *p, struct nsent *e)
{
	char path[PATH_MAX];
	struct stat st;
	struct nsaddr *addrs = NULL;
	size_t n = 0;
	int fd, err;

	snprintf(path, sizeof(path), "%s/%s", p->dir, e->name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	if (fstat(fd, &st) == -1 || st.st_dev != e->dev || st.st_ino != e->ino) {
		close(fd);
		return -ESTALE;
	}
	err = ns_enter(p, fd);
	if (!err) {
		err = addrs_read(&addrs, &n);
		ns_leave(p);
	}
	close(fd);
	if (err) {
		/* Not a network namespace (another kind bind-mounted here): ignore it. */
		pr_debug("pods: netns %s: %s", e->name, strerror(-err));
		if (err == -EINVAL)
			e->scanned = true;
		return err;
	}
	free(e->addrs);
	e->addrs = addrs;
	e->n_addrs = n;
	e->scanned = true;
	return 0;
}

/* Follow the directory: new entries, deleted ones, replaced ones. Entries
 * are read when their inode is new; with all, also those no pod owns. */
static void dir_refresh(struct pods *p, bool all)
{
	DIR *d = opendir(p->dir);
	struct dirent *de;

	if (!d) {
		snprintf(p->dir_err, sizeof(p->dir_err), "netns directory %s: %s", p->dir,
			 strerror(errno));
		/* Gone: so are its entries. Unreadable: keep what we know. */
		if (errno != ENOENT)
			return;
	} else {
		p->dir_err[0] = '\0';
	}
	for (size_t i = 0; i < p->n_ents; i++)
		p->ents[i]->seen = false;
	while (d && (de = readdir(d))) {
		struct nsent *e;
		struct stat st;

		if (de->d_name[0] == '.' || strncmp(de->d_name, p->prefix, p->prefix_len))
			continue;
		e = ent_find(p, de->d_name);
		if (!e)
			e = ent_add(p, de->d_name);
		if (!e)
			continue;	/* memory: next refresh */
		e->seen = true;
		if (fstatat(dirfd(d), de->d_name, &st, 0) == -1 || st.st_dev != p->nsfs_dev ||
		    st.st_ino == p->home_ino) {
			/* Not (yet, or no longer) a namespace, or the agent's own. */
			if (e->ino)
				ent_lost(p, e, "is no longer a namespace");
			e->ino = 0;
			e->scanned = false;
			e->n_addrs = 0;
			continue;
		}
		if (e->ino != st.st_ino || e->dev != st.st_dev) {
			if (e->ino)
				ent_lost(p, e, "was replaced");
			e->dev = st.st_dev;
			e->ino = st.st_ino;
			e->scanned = false;
			e->n_addrs = 0;
		}
		if (!e->scanned || (all && !e->owner))
			ent_scan(p, e);
	}
	if (d)
		closedir(d);
	for (size_t i = 0; i < p->n_ents;)
		if (!p->ents[i]->seen)
			ent_remove(p, i);
		else
			i++;
}

/* ---- matching pods to namespaces ---- */

/* Try to enrol a pending pod from the cache. Returns true when no entry, or
 * more than one, holds its IP: reading the entries again may help. */
static bool pod_try(struct pods *p, struct pod *pod)
{
	struct nsent *found = NULL;
	char ipb[INET6_ADDRSTRLEN];

	if (!pod->n_ips) {
		pod_set_err(pod, LOG_WARN, "pod has no IP");
		return false;
	}
	for (size_t i = 0; i < p->n_ents; i++) {
		struct nsent *e = p->ents[i];
		bool holds = false;

		if (!e->ino)
			continue;
		for (size_t a = 0; a < e->n_addrs && !holds; a++)
			for (size_t j = 0; j < pod->n_ips && !holds; j++)
				holds = ip_eq(&e->addrs[a].ip, &pod->ips[j]);
		if (!holds || (found && found->ino == e->ino && found->dev == e->dev))
			continue;
		if (found) {
			pod_set_err(pod, LOG_WARN, "%s is in two netns: %s and %s",
				    ip_str(&pod->ips[0], ipb, sizeof(ipb)), found->name, e->name);
			return true;	/* one may be stale: worth reading again */
		}
		found = e;
	}
	if (!found) {
		if (p->dir_err[0])
			pod_set_err(pod, LOG_WARN, "%s; netns not found yet", p->dir_err);
		else
			pod_set_err(pod, LOG_INFO,
				    "netns not found yet (none under %s%s%s holds %s)%s%s", p->dir,
				    p->prefix_len ? " named " : "", p->prefix_len ? p->prefix : "",
				    ip_str(&pod->ips[0], ipb, sizeof(ipb)),
				    pod->lost[0] ? "; " : "", pod->lost);
		return true;
	}
	if (found->owner && found->owner != pod) {
		pod_set_err(pod, LOG_WARN, "netns %s already holds pod %s/%s", found->name,
			    found->owner->ns, found->owner->name);
		return false;
	}
	pod_setup(p, pod, found);
	return false;
}

static size_t n_pending(const struct pods *p)
{
	size_t n = 0;

	for (size_t i = 0; i < p->n_pods; i++)
		n += p->pods[i]->st == POD_ST_PENDING;
	return n;
}

static void watch_start(struct pods *p)
{
	if (p->wd >= 0 || p->ino_fd < 0)
		return;
	p->wd = inotify_add_watch(p->ino_fd, p->dir,
				  IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
				  IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
	if (p->wd == -1)
		pr_debug("pods: watching %s: %s (retrying)", p->dir, strerror(errno));
}

/* Enrol what can be. full: entries no pod owns are read again when some
 * pod's IP is in none of them (its IP may have been configured since). */
static void pods_attempt(struct pods *p, bool full)
{
	bool missing = false;

	watch_start(p);
	dir_refresh(p, false);
	for (size_t i = 0; i < p->n_pods; i++)
		if (p->pods[i]->st == POD_ST_PENDING)
			missing |= pod_try(p, p->pods[i]);
	if (missing && full) {
		dir_refresh(p, true);
		for (size_t i = 0; i < p->n_pods; i++)
			if (p->pods[i]->st == POD_ST_PENDING)
				pod_try(p, p->pods[i]);
	}
}

/* Arm the retry timer: at the first backoff step after a change (reset),
 * else keep the current step; a slow resync when nothing is pending. */
static void retry_arm(struct pods *p, bool reset)
{
	if (!n_pending(p)) {
		p->backoff = p->retry_min;
		loop_timer_arm(p->loop, &p->timer, PODS_RESYNC_MS);
		return;
	}
	if (reset) {
		p->backoff = p->retry_min;
		loop_timer_arm(p->loop, &p->timer, p->backoff);
	} else if (!loop_timer_armed(&p->timer)) {
		loop_timer_arm(p->loop, &p->timer, p->backoff);
	}
}

static void pods_on_timer(struct loop_timer *t)
{
	struct pods *p = t->arg;
	bool was_pending = n_pending(p) > 0;

	pods_attempt(p, true);
	if (was_pending && p->backoff < p->retry_max)
		p->backoff = p->backoff * 2 > p->retry_max ? p->retry_max : p->backoff * 2;
	retry_arm(p, false);
	ns_assert_home(p);
}

void pods_freeze(struct pods *p, bool frozen)
{
	p->frozen = frozen;
	if (frozen) {
		loop_timer_cancel(p->loop, &p->timer);
		return;
	}
	pods_attempt(p, true);
	retry_arm(p, true);
	ns_assert_home(p);
}

static void pods_on_inotify(struct loop_io *io, uint32_t events)
{
	struct pods *p = io->arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false;
	ssize_t n;

	(void)events;
	while ((n = read(p->ino_fd, buf, sizeof(buf))) > 0) {
		if (p->frozen)
			continue;	/* the thaw reads the directory afresh */
		for (char *c = buf; c < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)c;

			c += sizeof(*ev) + ev->len;
			changed = true;
			if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
				/* The directory went: watch again when it is back. */
				if (ev->wd == p->wd && (ev->mask & IN_IGNORED))
					p->wd = -1;
				continue;
			}
			if (ev->len && (ev->mask & (IN_DELETE | IN_MOVED_FROM))) {
				for (size_t i = 0; i < p->n_ents; i++)
					if (!strcmp(p->ents[i]->name, ev->name)) {
						ent_remove(p, i);
						break;
					}
			}
		}
	}
	if (n == -1 && errno != EAGAIN && errno != EINTR)
		pr_warn("pods: reading inotify: %s", strerror(errno));
	if (!changed)
		return;
	/* New entries are read by the refresh; IN_Q_OVERFLOW lands here too. */
	pods_attempt(p, false);
	retry_arm(p, true);
	ns_assert_home(p);
}

/* ---- pods: the API ---- */

static void pod_free(struct pod *pod)
{
	if (!pod)
		return;
	free(pod->ns);
	free(pod->name);
	free(pod->sa);
	free(pod);
}

static struct pod *pod_new(const struct pods_spec *s)
{
	struct pod *pod = calloc(1, sizeof(*pod));

	if (!pod)
		return NULL;
	pod->ns = strdup(s->ns ? s->ns : "");
	pod->name = strdup(s->name ? s->name : "");
	pod->sa = strdup(s->service_account ? s->service_account : "default");
	if (!pod->ns || !pod->name || !pod->sa) {
		pod_free(pod);
		return NULL;
	}
	pod->n_ips = s->n_ips > 2 ? 2 : s->n_ips;
	memcpy(pod->ips, s->ips, pod->n_ips * sizeof(pod->ips[0]));
	pod->st = POD_ST_PENDING;
	pod->since_ms = loop_now_ms();
	pod->nsfd = -1;
	pod->link_fd = -1;
	pod->eg_link_fd = -1;
	pod->mesh = s->mesh;
	pod->pub.mesh = s->mesh;
	for (int i = 0; i < SYS_COUNT; i++)
		pod->sysctl_prev[i] = -1;
	pod->pub.ns = pod->ns;
	pod->pub.name = pod->name;
	pod->pub.service_account = pod->sa;
	pod->pub.ips = pod->ips;
	pod->pub.n_ips = pod->n_ips;
	pod->pub.netns = pod->netns;
	for (int i = 0; i < PODS_L_COUNT; i++)
		pod->pub.listeners[i] = (struct pods_listen){
			.port = lspecs[i].port, .family = lspecs[i].family, .fd = -1 };
	return pod;
}

static bool pod_same(const struct pod *pod, const struct pods_spec *s)
{
	if (strcmp(pod->ns, s->ns ? s->ns : "") || strcmp(pod->name, s->name ? s->name : "") ||
	    strcmp(pod->sa, s->service_account ? s->service_account : "default") ||
	    pod->n_ips != (s->n_ips > 2 ? 2 : s->n_ips) || pod->mesh != s->mesh)
		return false;
	for (size_t i = 0; i < pod->n_ips; i++)
		if (!ip_eq(&pod->ips[i], &s->ips[i]))
			return false;
	return true;
}

int pods_new(struct pods **out, struct loop *loop, const struct pods_opts *opts,
	     const struct pods_ops *ops, void *arg)
{
	struct pods *p = calloc(1, sizeof(*p));
	struct stat st;
	int err;

	if (!p)
		return -ENOMEM;
	p->loop = loop;
	if (ops)
		p->ops = *ops;
	p->arg = arg;
	p->home_fd = p->ino_fd = p->wd = -1;
	loop_timer_init(&p->timer, pods_on_timer, p);
	p->ino_io.fd = -1;
	p->dir = strdup(opts && opts->netns_dir ? opts->netns_dir : PODS_NETNS_DIR);
	p->prefix = strdup(opts && opts->prefix ? opts->prefix : "");
	if (!p->dir || !p->prefix) {
		err = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < SYS_COUNT; i++) {
		if (asprintf(&p->sysctl[i], "%s/%s", opts && opts->procfs ? opts->procfs : "/proc",
			     sysctl_paths[i]) == -1) {
			p->sysctl[i] = NULL;
			err = -ENOMEM;
			goto out;
		}
	}
	p->prefix_len = strlen(p->prefix);
	p->retry_min = opts && opts->retry_min_ms ? opts->retry_min_ms : PODS_RETRY_MIN_MS;
	p->retry_max = opts && opts->retry_max_ms ? opts->retry_max_ms : PODS_RETRY_MAX_MS;
	if (p->retry_max < p->retry_min)
		p->retry_max = p->retry_min;
	p->backoff = p->retry_min;

	p->home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (p->home_fd == -1 || fstat(p->home_fd, &st) == -1) {
		err = -errno;
		pr_err("pods: opening the agent's netns: %s", strerror(-err));
		goto out;
	}
	p->home_ino = st.st_ino;
	p->nsfs_dev = st.st_dev;

	p->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (p->ino_fd == -1) {
		err = -errno;
		pr_err("pods: inotify: %s", strerror(-err));
		goto out;
	}
	err = loop_add(loop, &p->ino_io, p->ino_fd, EPOLLIN, pods_on_inotify, p);
	if (err) {
		pr_err("pods: watching inotify: %s", strerror(-err));
		goto out;
	}
	watch_start(p);
	retry_arm(p, true);
	*out = p;
	return 0;
out:
	pods_free(p);
	return err;
}

void pods_free(struct pods *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_pods; i++) {
		pod_teardown(p, p->pods[i]);
		pod_free(p->pods[i]);
	}
	free(p->pods);
	for (size_t i = 0; i < p->n_ents; i++)
		ent_free(p->ents[i]);
	free(p->ents);
	loop_timer_cancel(p->loop, &p->timer);
	if (p->ino_io.fd >= 0)
		loop_del(p->loop, &p->ino_io);
	if (p->ino_fd >= 0)
		close(p->ino_fd);
	if (p->home_fd >= 0)
		close(p->home_fd);
	free(p->dir);
	free(p->prefix);
	for (int i = 0; i < SYS_COUNT; i++)
		free(p->sysctl[i]);
	ns_assert_home(p);
	free(p);
}

int pods_set_enrolled(struct pods *p, const struct pods_spec *specs, size_t n)
{
	struct pod **v = calloc(n ? n : 1, sizeof(*v));
	size_t n_old = p->n_pods;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n_old; i++)
		p->pods[i]->keep = false;
	/* Pods that stay as they are keep their state; others are new. */
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n_old && !v[i]; j++) {
			struct pod *old = p->pods[j];

			if (!old->keep && pod_same(old, &specs[i])) {
				old->keep = true;
				v[i] = old;
			}
		}
		if (!v[i])
			v[i] = pod_new(&specs[i]);
		if (!v[i]) {
			for (size_t k = 0; k < i; k++)
				if (!v[k]->keep)
					pod_free(v[k]);
			for (size_t j = 0; j < n_old; j++)
				p->pods[j]->keep = false;
			free(v);
			return -ENOMEM;
		}
	}
	/* Leavers first: a pod re-enrolled with new IPs may need its netns back. */
	for (size_t j = 0; j < n_old; j++) {
		struct pod *old = p->pods[j];

		if (old->keep) {
			old->keep = false;
			continue;
		}
		pod_teardown(p, old);
		pod_free(old);
	}
	free(p->pods);
	p->pods = v;
	p->n_pods = n;
	if (n_pending(p))
		pods_attempt(p, true);
	retry_arm(p, true);
	ns_assert_home(p);
	return 0;
}

int pods_socket(struct pods *p, const struct sl_ip *ip, int domain, int type)
{
	for (size_t i = 0; i < p->n_pods; i++) {
		struct pod *pod = p->pods[i];
		int fd, err;

		if (pod->st != POD_ST_ENROLLED)
			continue;
		for (size_t j = 0; j < pod->n_ips; j++) {
			if (!ip_eq(&pod->ips[j], ip))
				continue;
			err = ns_enter(p, pod->nsfd);
			if (err)
				return err;
			fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			err = fd == -1 ? -errno : 0;
			ns_leave(p);
			return err ? err : fd;
		}
	}
	return -ENOENT;
}

int pods_list(const struct pods *p, struct pods_info **out, size_t *n)
{
	struct pods_info *v = calloc(p->n_pods ? p->n_pods : 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_pods; i++) {
		const struct pod *pod = p->pods[i];
		struct pods_info *f = &v[i];

		snprintf(f->ns, sizeof(f->ns), "%s", pod->ns);
		snprintf(f->name, sizeof(f->name), "%s", pod->name);
		memcpy(f->ips, pod->ips, sizeof(f->ips));
		f->n_ips = pod->n_ips;
		f->enrolled = pod->st == POD_ST_ENROLLED;
		if (f->enrolled) {
			snprintf(f->netns, sizeof(f->netns), "%s", pod->netns);
			snprintf(f->ifname, sizeof(f->ifname), "%s", pod->ifname);
		}
		f->netns_cookie = pod->pub.netns_cookie;
		f->ifindex = pod->pub.ifindex;
		f->ingress_attached = pod->link_fd >= 0;
		f->egress_attached = pod->eg_link_fd >= 0;
		f->mesh = pod->mesh;
		memcpy(f->listeners, pod->pub.listeners, sizeof(f->listeners));
		f->since_ms = pod->since_ms;
		snprintf(f->error, sizeof(f->error), "%s",
			 pod->st == POD_ST_ENROLLED ? "" : pod->err);
	}
	*out = v;
	*n = p->n_pods;
	return 0;
}
