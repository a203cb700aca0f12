// SPDX-License-Identifier: Apache-2.0
/* test_pods.c - user/pods.c against real network namespaces, sockets, rules
 * and routes.
 *
 * Each test unshares its own network and mount namespaces (the "agent" netns
 * is the test's own) and mounts a tmpfs as the netns directory, so nothing is
 * visible to the host or to a lab, and everything goes with the test process
 * even if it dies. Pod namespaces are bind-mounted there like `ip netns add`
 * does, each with a veth (eth0 inside) and private addresses (10.250.t.x,
 * fd00:250::t:x) that exist only inside these namespaces. The callbacks are
 * recorded; attach_ingress hands back an eventfd as its "link".
 * Waits poll with a deadline; nothing sleeps for a fixed time.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>

#include <sluice/abi.h>

#include "lib/fixture.h"
#include "lib/test.h"
#include "log.h"
#include "loop.h"
#include "pods.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

#define PREFIX "sl0-"

/* ---- recorded callbacks ---- */

struct rec {
	char order[512];		/* one letter per call, see the callbacks */
	size_t n_order;
	int n_attach, n_enrol_on, n_enrol_off, n_lis_on, n_lis_off, n_ready, n_gone;
	int attach_ifindex;
	ino_t attach_netns;		/* the netns attach_ingress ran in */
	uint64_t enrol_cookie;
	const struct pods_pod *ready_ptr;
	struct pods_pod ready;		/* copy made at pod_ready */
	int enrol_err;			/* returned by enrol(on) when set */
	int lis_fds_on;			/* listeners registered, not unregistered */
	bool no_link;			/* attach answers PODS_INGRESS_NO_LINK (clsact) */
	int n_detach;
	ino_t detach_netns;
};

static void rec_add(struct rec *r, char c)
{
	if (r->n_order + 1 < sizeof(r->order))
		r->order[r->n_order++] = c;
	r->order[r->n_order] = '\0';
}

static ino_t cur_netns(void)
{
	struct stat st;

	return stat("/proc/thread-self/ns/net", &st) ? 0 : st.st_ino;
}

/* a: attach_ingress */
static int cb_attach(void *arg, int ifindex, int link_fd)
{
	struct rec *r = arg;

	rec_add(r, 'a');
	r->n_attach++;
	r->attach_ifindex = ifindex;
	r->attach_netns = cur_netns();
	return r->no_link ? PODS_INGRESS_NO_LINK : eventfd(0, EFD_CLOEXEC);
}

/* d: detach_ingress (only after a PODS_INGRESS_NO_LINK attach) */
static int cb_detach(void *arg, int ifindex)
{
	struct rec *r = arg;

	rec_add(r, 'd');
	r->n_detach++;
	r->detach_netns = cur_netns();
	ASSERT_EQ(ifindex, r->attach_ifindex, "detach gets attach's ifindex");
	return 0;
}

/* l / L: listener on / off */
static int cb_listener(void *arg, uint64_t cookie, uint16_t port, int family, int fd, bool on)
{
	struct rec *r = arg;

	rec_add(r, on ? 'l' : 'L');
	if (on) {
		r->n_lis_on++;
		r->lis_fds_on++;
	} else {
		r->n_lis_off++;
		r->lis_fds_on--;
	}
	return 0;
}

/* e / E: enrol on / off */
static int cb_enrol(void *arg, uint64_t cookie, const struct pods_pod *pod, bool on)
{
	struct rec *r = arg;

	rec_add(r, on ? 'e' : 'E');
	if (on && r->enrol_err)
		return r->enrol_err;
	if (on) {
		r->n_enrol_on++;
		r->enrol_cookie = cookie;
	} else {
		r->n_enrol_off++;
	}
	return 0;
}

/* r: pod_ready */
static void cb_ready(void *arg, const struct pods_pod *pod)
{
	struct rec *r = arg;

	rec_add(r, 'r');
	r->n_ready++;
	r->ready_ptr = pod;
	r->ready = *pod;
}

/* g: pod_gone */
static void cb_gone(void *arg, const struct pods_pod *pod)
{
	struct rec *r = arg;

	rec_add(r, 'g');
	r->n_gone++;
	ASSERT_TRUE(pod == r->ready_ptr || r->n_ready > 1, "pod_gone gets pod_ready's pointer");
}

static const struct pods_ops rec_ops = {
	.attach_ingress = cb_attach,
	.detach_ingress = cb_detach,
	.listener = cb_listener,
	.enrol = cb_enrol,
	.pod_ready = cb_ready,
	.pod_gone = cb_gone,
};

/* ---- the lab: namespaces of this test only ---- */

struct lab {
	char dir[PATH_MAX / 2];		/* tmpfs: the netns directory */
	int home_fd;			/* the test's (= agent's) netns */
	ino_t home_ino;
	struct loop *loop;
	struct pods *pods;
	struct rec rec;
	bool mounted;
};

static bool lab_setup(struct lab *l)
{
	memset(l, 0, sizeof(*l));
	l->home_fd = -1;
	if (!test_need_root())
		return false;
	log_set_level(LOG_INFO);	/* shown only when the test fails (or -v) */
	if (!ASSERT_OK(unshare(CLONE_NEWNET | CLONE_NEWNS) ? -errno : 0, "unshare net+mnt"))
		return false;
	/* Our netns bind mounts must not propagate to the host. In a chroot "/"
	 * is no mount point (EINVAL) and there is nothing to make private. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		if (errno == EINVAL) {
			test_skip("cannot make mounts private: / is not a mount point (a chroot?)");
			return false;
		}
		ASSERT_OK(-errno, "rprivate");
		return false;
	}
	if (!ASSERT_EQ(fx_sh("ip link set lo up"), 0, "lo up"))
		return false;
	snprintf(l->dir, sizeof(l->dir), "%s/netns", test_tmpdir());
	if (!ASSERT_OK(mkdir(l->dir, 0755) ? -errno : 0, "mkdir netns dir"))
		return false;
	if (!ASSERT_OK(mount("tmpfs", l->dir, "tmpfs", 0, "mode=0755") ? -errno : 0, "tmpfs"))
		return false;
	l->mounted = true;
	l->home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (!ASSERT_GE(l->home_fd, 0, "home netns fd"))
		return false;
	l->home_ino = cur_netns();
	return ASSERT_OK(loop_new(&l->loop), "loop_new");
}

static int lab_pods_new(struct lab *l, const char *prefix, unsigned int retry_min,
			unsigned int retry_max)
{
	struct pods_opts o = { .netns_dir = l->dir, .prefix = prefix, .retry_min_ms = retry_min,
			       .retry_max_ms = retry_max };

	return pods_new(&l->pods, l->loop, &o, &rec_ops, &l->rec);
}

/* Test processes end with _exit(), so LeakSanitizer would never look: ask it
 * here (ASan builds), so a leak in pods.c fails the test. */
#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if __has_feature(address_sanitizer) || defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
static void leak_check(void)
{
	ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0, "no leaks");
}
#else
static void leak_check(void)
{
}
#endif

static void lab_teardown(struct lab *l)
{
	pods_free(l->pods);
	l->pods = NULL;
	loop_free(l->loop);
	if (l->home_fd >= 0) {
		setns(l->home_fd, CLONE_NEWNET);
		close(l->home_fd);
	}
	/* Lazily detaches the tmpfs and every netns bind mount below it, so the
	 * runner can remove the tmpdir; the namespaces die with this process. */
	if (l->mounted)
		umount2(l->dir, MNT_DETACH);
	leak_check();
}

static void lab_path(const struct lab *l, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", l->dir, name);
}

/* A named netns like `ip netns add`: create the file, bind-mount a new netns on it. */
static bool lab_netns_add(struct lab *l, const char *name)
{
	char path[PATH_MAX];
	int fd, err = 0;

	lab_path(l, name, path, sizeof(path));
	fd = open(path, O_CREAT | O_EXCL | O_RDONLY | O_CLOEXEC, 0444);
	if (!ASSERT_GE(fd, 0, "create netns file"))
		return false;
	close(fd);
	if (unshare(CLONE_NEWNET) || mount("/proc/thread-self/ns/net", path, NULL, MS_BIND, NULL))
		err = -errno;
	if (setns(l->home_fd, CLONE_NEWNET))
		abort();	/* the test can't go on in the wrong netns */
	if (!ASSERT_OK(err, "new netns"))
		return false;
	return ASSERT_EQ(fx_sh("nsenter --net=%s ip link set lo up", path), 0, "netns lo up");
}

/* A veth: eth0 in the netns, h<name> in the test's netns; both up. */
static bool lab_veth(struct lab *l, const char *name)
{
	char path[PATH_MAX];

	lab_path(l, name, path, sizeof(path));
	return ASSERT_EQ(fx_sh("ip link add h%s type veth peer name eth0 netns %s && "
			       "ip link set h%s up && nsenter --net=%s ip link set eth0 up",
			       name, path, name, path),
			 0, "veth");
}

static bool lab_addr(struct lab *l, const char *name, const char *cidr)
{
	char path[PATH_MAX];

	lab_path(l, name, path, sizeof(path));
	return ASSERT_EQ(fx_sh("nsenter --net=%s ip addr add %s dev eth0%s", path, cidr,
			       strchr(cidr, ':') ? " nodad" : ""),
			 0, cidr);
}

/* A pod's netns: netns, veth, and its addresses (either may be NULL). */
static bool lab_pod(struct lab *l, const char *name, const char *v4, const char *v6)
{
	return lab_netns_add(l, name) && lab_veth(l, name) && (!v4 || lab_addr(l, name, v4)) &&
	       (!v6 || lab_addr(l, name, v6));
}

/* Like `ip netns del`: unmount and unlink. */
static bool lab_netns_del(struct lab *l, const char *name)
{
	char path[PATH_MAX];

	lab_path(l, name, path, sizeof(path));
	umount2(path, MNT_DETACH);
	return ASSERT_OK(unlink(path) ? -errno : 0, "delete netns");
}

static bool lab_enter(struct lab *l, const char *name)
{
	char path[PATH_MAX];
	int fd, err = 0;

	lab_path(l, name, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET))
		err = -errno;
	if (fd >= 0)
		close(fd);
	return ASSERT_OK(err, name);
}

static void lab_leave(struct lab *l)
{
	if (setns(l->home_fd, CLONE_NEWNET))
		abort();
}

static ino_t lab_netns_ino(struct lab *l, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	lab_path(l, name, path, sizeof(path));
	return stat(path, &st) ? 0 : st.st_ino;
}

static uint64_t lab_netns_cookie(struct lab *l, const char *name)
{
	uint64_t c = 0;
	socklen_t len = sizeof(c);
	int fd;

	if (!lab_enter(l, name))
		return 0;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	lab_leave(l);
	if (fd < 0)
		return 0;
	getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &c, &len);
	close(fd);
	return c;
}

/* Runs the loop for about ms milliseconds. */
static void stop_cb(struct loop_timer *t)
{
	loop_stop(t->arg);
}

static void lab_run(struct lab *l, unsigned int ms)
{
	struct loop_timer t;

	loop_timer_init(&t, stop_cb, l->loop);
	loop_timer_arm(l->loop, &t, ms);
	loop_run(l->loop);
	loop_timer_cancel(l->loop, &t);
}

/* The pods_list entry of pod i (a static copy), or NULL. */
static const struct pods_info *lab_info(struct lab *l, size_t i)
{
	static struct pods_info copy;
	struct pods_info *v = NULL;
	size_t n = 0;

	if (pods_list(l->pods, &v, &n) || i >= n) {
		free(v);
		return NULL;
	}
	copy = v[i];
	free(v);
	return &copy;
}

/* Runs the loop until pod i's enrolled state is want; false after ms. */
static bool lab_wait_enrolled(struct lab *l, size_t i, bool want, unsigned int ms)
{
	uint64_t end = loop_now_ms() + ms;

	for (;;) {
		const struct pods_info *f = lab_info(l, i);

		if (f && f->enrolled == want)
			return true;
		if (loop_now_ms() >= end)
			return false;
		lab_run(l, 5);
	}
}

/* Polls (without the loop) until interface name is gone from the test's
 * netns: its netns was freed, so nothing held it. */
static bool wait_if_gone(const char *name, unsigned int ms)
{
	uint64_t end = loop_now_ms() + ms;

	while (if_nametoindex(name)) {
		if (loop_now_ms() >= end)
			return false;
		poll(NULL, 0, 10);
	}
	return true;
}

/* Output of a shell command (formatted), "" on failure. */
static const char *sh_out(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static const char *sh_out(char *buf, size_t len, const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	size_t n = 0;
	FILE *f;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	buf[0] = '\0';
	f = popen(cmd, "r");
	if (!f)
		return buf;
	while (n + 1 < len) {
		size_t r = fread(buf + n, 1, len - n - 1, f);

		if (!r)
			break;
		n += r;
	}
	buf[n] = '\0';
	pclose(f);
	return buf;
}

static int count_substr(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *s = hay; (s = strstr(s, needle)); s += strlen(needle))
		n++;
	return n;
}

/* Open fds of this process into netns ino (namespace files, whatever path
 * they were opened by), or eventfds (ino 0). */
static int count_fds(ino_t ino)
{
	char link[128], path[300];
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	struct stat home, st;
	int n = 0;

	stat("/proc/thread-self/ns/net", &home);
	while (d && (de = readdir(d))) {
		ssize_t r;

		if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		if (ino) {
			n += !stat(path, &st) && st.st_dev == home.st_dev && st.st_ino == ino;
			continue;
		}
		r = readlink(path, link, sizeof(link) - 1);
		if (r <= 0)
			continue;
		link[r] = '\0';
		n += !strcmp(link, "anon_inode:[eventfd]");
	}
	if (d)
		closedir(d);
	return n;
}

static int sysctl_get(const char *path)
{
	char buf[16] = "";
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return atoi(buf);
}

static struct pods_spec spec(const char *name, const char *ip4, const char *ip6)
{
	struct pods_spec s = { .ns = "default", .name = name, .service_account = "sa-", .mesh = true };

	if (ip4 && !sl_ip_parse(ip4, &s.ips[s.n_ips]))
		s.n_ips++;
	if (ip6 && !sl_ip_parse(ip6, &s.ips[s.n_ips]))
		s.n_ips++;
	return s;
}

/* Connects from inside netns name to ip:port and checks the listener fd
 * (in the agent's hands) gets the connection. */
static bool lab_reach(struct lab *l, const char *name, const char *ip, uint16_t port, int listen_fd)
{
	int family = strchr(ip, ':') ? AF_INET6 : AF_INET, c, got;
	char what[96];

	snprintf(what, sizeof(what), "%s %s port %u", name, ip, port);
	if (!ASSERT_GE(listen_fd, 0, what))
		return false;
	if (!lab_enter(l, name))
		return false;
	c = fx_connect(family, SOCK_STREAM, ip, port);
	lab_leave(l);
	if (!ASSERT_GE(c, 0, what))
		return false;
	got = fx_accept_any(&listen_fd, 1, 1000);
	close(c);
	return ASSERT_EQ(got, 0, what);
}

/* The rules and local routes of netns name, from `ip` itself. */
static void lab_routing(struct lab *l, const char *name, char *rules, char *routes, size_t len)
{
	char path[PATH_MAX];

	lab_path(l, name, path, sizeof(path));
	sh_out(rules, len, "nsenter --net=%s sh -c 'ip rule show; ip -6 rule show' 2>&1", path);
	sh_out(routes, len,
	       "nsenter --net=%s sh -c 'ip route show table %d; ip -6 route show table %d' 2>&1",
	       path, SL_DELIVER_TABLE, SL_DELIVER_TABLE);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* ---- tests ---- */

/* One pod, dual stack: found by IP among several netns, everything set up as
 * promised, pods_socket, then removal undoes it all and the netns can die. */
void test_pods_enrol(void)
{
	struct lab l;
	struct pods_spec s[1];
	const struct pods_info *f;
	char rules[4096], routes[4096];
	struct sl_ip ip;
	ino_t ino;
	double t0, t1;
	int fd;

	if (!lab_setup(&l))
		goto out;
	if (!lab_pod(&l, PREFIX "other", "10.250.1.3/24", NULL) ||
	    !lab_pod(&l, PREFIX "a", "10.250.1.2/24", "fd00:250::1:2/64"))
		goto out;
	ino = lab_netns_ino(&l, PREFIX "a");
	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 0, 0), "pods_new"))
		goto out;

	s[0] = spec("a", "10.250.1.2", "fd00:250::1:2");
	t0 = now_us();
	if (!ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set"))
		goto out;
	t1 = now_us();
	printf("enrolling one pod (netns found, set up, callbacks): %.0f us\n", t1 - t0);
	f = lab_info(&l, 0);
	if (!ASSERT_OK_PTR(f, "info") || !ASSERT_TRUE(f->enrolled, "enrolled at once"))
		goto out;
	ASSERT_STREQ(f->netns, PREFIX "a", "netns found by IP");
	ASSERT_STREQ(f->ifname, "eth0", "interface");
	ASSERT_STREQ(f->error, "", "no error");
	ASSERT_TRUE(f->ingress_attached, "ingress attached");
	ASSERT_EQ(f->netns_cookie, lab_netns_cookie(&l, PREFIX "a"), "cookie is the netns's");
	ASSERT_STREQ(l.rec.order, "llllllrae", "setup order: listeners, ready, attach, enrol");
	ASSERT_EQ(l.rec.attach_netns, ino, "attach ran inside the pod's netns");
	ASSERT_EQ(l.rec.attach_ifindex, f->ifindex, "attach got the pod's ifindex");
	ASSERT_EQ(l.rec.enrol_cookie, f->netns_cookie, "enrol got the cookie");
	ASSERT_EQ(cur_netns(), l.home_ino, "back in the agent's netns");
	ASSERT_EQ(count_fds(ino), 1, "one fd into the pod's netns while enrolled");

	/* The listeners are in the pod's netns and are the ones handed over. */
	lab_reach(&l, PREFIX "a", "127.0.0.1", SL_PORT_OUTBOUND,
		  l.rec.ready.listeners[PODS_L_OUT4].fd);
	lab_reach(&l, PREFIX "a", "::1", SL_PORT_OUTBOUND, l.rec.ready.listeners[PODS_L_OUT6].fd);
	lab_reach(&l, PREFIX "a", "10.250.1.2", SL_PORT_INBOUND,
		  l.rec.ready.listeners[PODS_L_IN4].fd);
	lab_reach(&l, PREFIX "a", "fd00:250::1:2", SL_PORT_INBOUND,
		  l.rec.ready.listeners[PODS_L_IN6].fd);
	lab_reach(&l, PREFIX "a", "10.250.1.2", SL_PORT_HBONE,
		  l.rec.ready.listeners[PODS_L_HBONE4].fd);
	lab_reach(&l, PREFIX "a", "fd00:250::1:2", SL_PORT_HBONE,
		  l.rec.ready.listeners[PODS_L_HBONE6].fd);
	{
		int v = 0;
		socklen_t len = sizeof(v);

		getsockopt(l.rec.ready.listeners[PODS_L_IN4].fd, IPPROTO_IP, IP_TRANSPARENT, &v,
			   &len);
		ASSERT_EQ(v, 1, "15006 is IP_TRANSPARENT");
		v = 0;
		getsockopt(l.rec.ready.listeners[PODS_L_IN6].fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &v,
			   &len);
		ASSERT_EQ(v, 1, "[::]:15006 is IPV6_TRANSPARENT");
		v = 0;
		getsockopt(l.rec.ready.listeners[PODS_L_HBONE6].fd, IPPROTO_IPV6, IPV6_V6ONLY, &v,
			   &len);
		ASSERT_EQ(v, 1, "[::]:15008 is v6only");
		ASSERT_TRUE(fcntl(l.rec.ready.listeners[PODS_L_OUT4].fd, F_GETFL) & O_NONBLOCK,
			    "non-blocking");
		ASSERT_TRUE(fcntl(l.rec.ready.listeners[PODS_L_OUT4].fd, F_GETFD) & FD_CLOEXEC,
			    "cloexec");
	}
	/* Not in the other netns. */
	if (lab_enter(&l, PREFIX "other")) {
		fd = fx_connect(AF_INET, SOCK_STREAM, "127.0.0.1", SL_PORT_OUTBOUND);
		lab_leave(&l);
		ASSERT_EQ(fd, -ECONNREFUSED, "no listener in the other netns");
		if (fd >= 0)
			close(fd);
	}

	/* Sysctls, rule and routes. */
	if (lab_enter(&l, PREFIX "a")) {
		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/tcp_fwmark_accept"), 1,
			  "tcp_fwmark_accept");
		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/fwmark_reflect"), 1,
			  "ipv4 fwmark_reflect");
		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv6/fwmark_reflect"), 1,
			  "ipv6 fwmark_reflect");
		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/tcp_tw_reuse"), 1, "tcp_tw_reuse");
		lab_leave(&l);
	}
	ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/tcp_fwmark_accept"), 0, "agent's netns untouched");
	lab_routing(&l, PREFIX "a", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "100:\tfrom all fwmark 0x53a/0xfff lookup 100"), 2,
		  "v4 and v6 rule");
	ASSERT_HAS(routes, "local default dev lo", "v4 local route");
	ASSERT_EQ(count_substr(routes, "local default dev lo"), 2, "v4 and v6 local routes");
	lab_routing(&l, PREFIX "other", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark"), 0, "no rule in the other netns");

	/* pods_socket: a socket of the pod's netns, bindable to its IP. */
	sl_ip_parse("10.250.1.2", &ip);
	fd = pods_socket(l.pods, &ip, AF_INET, SOCK_STREAM);
	if (ASSERT_GE(fd, 0, "pods_socket v4")) {
		struct sockaddr_storage ss;
		socklen_t len;
		uint64_t c = 0;
		socklen_t cl = sizeof(c);

		fx_sockaddr("10.250.1.2", 0, &ss, &len);
		ASSERT_OK(bind(fd, (struct sockaddr *)&ss, len) ? -errno : 0, "bind to the pod IP");
		getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &c, &cl);
		ASSERT_EQ(c, f->netns_cookie, "socket in the pod's netns");
		ASSERT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK, "socket non-blocking");
		ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC, "socket cloexec");
		close(fd);
	}
	sl_ip_parse("fd00:250::1:2", &ip);
	fd = pods_socket(l.pods, &ip, AF_INET6, SOCK_STREAM);
	if (ASSERT_GE(fd, 0, "pods_socket v6")) {
		struct sockaddr_storage ss;
		socklen_t len;

		fx_sockaddr("fd00:250::1:2", 0, &ss, &len);
		ASSERT_OK(bind(fd, (struct sockaddr *)&ss, len) ? -errno : 0, "bind to pod IPv6");
		close(fd);
	}
	sl_ip_parse("10.250.1.3", &ip);
	ASSERT_EQ(pods_socket(l.pods, &ip, AF_INET, SOCK_STREAM), -ENOENT,
		  "not an enrolled pod's IP");
	sl_ip_parse("10.250.1.2", &ip);
	t0 = now_us();
	for (int i = 0; i < 10000; i++) {
		fd = pods_socket(l.pods, &ip, AF_INET, SOCK_STREAM);
		if (fd >= 0)
			close(fd);
	}
	t1 = now_us();
	printf("pods_socket + close: %.2f us per call\n", (t1 - t0) / 10000);
	ASSERT_EQ(cur_netns(), l.home_ino, "pods_socket returned to the agent's netns");

	/* Removal. */
	l.rec.n_order = 0;
	t0 = now_us();
	ASSERT_OK(pods_set_enrolled(l.pods, NULL, 0), "set empty");
	t1 = now_us();
	printf("removing one pod: %.0f us\n", t1 - t0);
	ASSERT_STREQ(l.rec.order, "EgLLLLLL", "teardown order: unenrol, gone, listeners");
	ASSERT_EQ(l.rec.lis_fds_on, 0, "listeners unregistered");
	ASSERT_EQ(count_fds(ino), 0, "no fd into the pod's netns");
	ASSERT_EQ(count_fds(0), 0, "link fd closed");
	lab_routing(&l, PREFIX "a", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark"), 0, "rules removed");
	ASSERT_EQ(count_substr(routes, "local"), 0, "routes removed");
	if (lab_enter(&l, PREFIX "a")) {
		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/tcp_fwmark_accept"), 0, "sysctl restored");
		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv6/fwmark_reflect"), 0, "v6 sysctl restored");
		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/tcp_tw_reuse"), 2, "tcp_tw_reuse restored");
		fd = fx_connect(AF_INET, SOCK_STREAM, "127.0.0.1", SL_PORT_OUTBOUND);
		lab_leave(&l);
		ASSERT_EQ(fd, -ECONNREFUSED, "15001 closed");
		if (fd >= 0)
			close(fd);
	}
	t0 = now_us();
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set again");
	t1 = now_us();
	printf("enrolling it again (netns cached): %.0f us\n", t1 - t0);
	ASSERT_OK(pods_set_enrolled(l.pods, NULL, 0), "set empty again");
	/* Nothing holds the netns any more: deleting it frees it and its veth. */
	lab_netns_del(&l, PREFIX "a");
	lab_run(&l, 20);
	ASSERT_TRUE(wait_if_gone("h" PREFIX "a", 5000), "veth gone with the netns");
	ASSERT_TRUE(if_nametoindex("h" PREFIX "other") > 0, "other netns untouched");
out:
	lab_teardown(&l);
}

/* The netns exists before its IP: not found (and said so), then found by the
 * retry timer once the IP is configured. A pod whose IP is nowhere stays
 * reported. */
void test_pods_ip_later(void)
{
	struct lab l;
	struct pods_spec s[2];
	const struct pods_info *f;
	double t0;

	if (!lab_setup(&l))
		goto out;
	if (!lab_pod(&l, PREFIX "b", NULL, NULL))
		goto out;
	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 0, 0), "pods_new"))
		goto out;
	s[0] = spec("b", "10.250.2.2", NULL);
	s[1] = spec("nowhere", "10.250.2.99", NULL);
	ASSERT_OK(pods_set_enrolled(l.pods, s, 2), "set");
	lab_run(&l, 250);
	f = lab_info(&l, 0);
	if (!ASSERT_OK_PTR(f, "info"))
		goto out;
	ASSERT_FALSE(f->enrolled, "not enrolled without its IP");
	ASSERT_HAS(f->error, "netns not found yet", "reported");
	ASSERT_EQ(l.rec.n_order, 0, "no callbacks");

	lab_addr(&l, PREFIX "b", "10.250.2.2/24");
	t0 = now_us();
	ASSERT_TRUE(lab_wait_enrolled(&l, 0, true, 3000), "enrolled once the IP appears");
	printf("found %.0f ms after the IP was configured (retry backoff)\n",
	       (now_us() - t0) / 1000);
	f = lab_info(&l, 0);
	if (f)
		ASSERT_STREQ(f->netns, PREFIX "b", "netns");
	f = lab_info(&l, 1);
	if (ASSERT_OK_PTR(f, "info nowhere")) {
		ASSERT_FALSE(f->enrolled, "pod without netns");
		ASSERT_HAS(f->error, "netns not found yet", "pod without netns reported");
		ASSERT_HAS(f->error, "10.250.2.99", "error names the IP");
		ASSERT_STREQ(f->netns, "", "no netns");
	}
out:
	lab_teardown(&l);
}

/* With retries far away (60 s), only inotify can find a new netns and notice
 * a deleted one: the pod is enrolled on the create event, and undone on the
 * delete event (its netns and veth then vanish). */
void test_pods_inotify(void)
{
	struct lab l;
	struct pods_spec s[1];
	const struct pods_info *f;
	ino_t ino;

	if (!lab_setup(&l))
		goto out;
	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 60000, 60000), "pods_new"))
		goto out;
	s[0] = spec("c", "10.250.3.2", NULL);
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set");
	lab_run(&l, 20);
	f = lab_info(&l, 0);
	if (!ASSERT_OK_PTR(f, "info") || !ASSERT_FALSE(f->enrolled, "no netns yet"))
		goto out;

	/* Made while the loop does not run: the events wait in the queue. */
	if (!lab_pod(&l, PREFIX "c", "10.250.3.2/24", NULL))
		goto out;
	ino = lab_netns_ino(&l, PREFIX "c");
	ASSERT_TRUE(lab_wait_enrolled(&l, 0, true, 2000), "enrolled on the inotify event");
	ASSERT_STREQ(l.rec.order, "llllllrae", "setup (IPv6 listeners too: IPv6 is on)");

	l.rec.n_order = 0;
	lab_netns_del(&l, PREFIX "c");
	ASSERT_TRUE(lab_wait_enrolled(&l, 0, false, 2000), "undone on the delete event");
	ASSERT_STREQ(l.rec.order, "EgLLLLLL", "teardown");
	f = lab_info(&l, 0);
	if (f)
		ASSERT_HAS(f->error, "deleted", "reported");
	ASSERT_EQ(count_fds(ino), 0, "no fd into the deleted netns");
	ASSERT_TRUE(wait_if_gone("h" PREFIX "c", 5000), "netns and veth gone");
out:
	lab_teardown(&l);
}

/* Only names with the prefix count; two netns with the prefix holding the IP
 * are an error until one goes. */
void test_pods_prefix(void)
{
	struct lab l;
	struct pods_spec s[1];
	const struct pods_info *f;

	if (!lab_setup(&l))
		goto out;
	/* Another lab's pod, same IP, other prefix. */
	if (!lab_pod(&l, "sl1-d", "10.250.4.2/24", NULL))
		goto out;
	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 0, 0), "pods_new"))
		goto out;
	s[0] = spec("d", "10.250.4.2", NULL);
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set");
	f = lab_info(&l, 0);
	if (!ASSERT_OK_PTR(f, "info"))
		goto out;
	ASSERT_FALSE(f->enrolled, "other prefix ignored");
	ASSERT_HAS(f->error, "not found", "reported");

	if (!lab_pod(&l, PREFIX "d1", "10.250.4.2/24", NULL) ||
	    !lab_pod(&l, PREFIX "d2", "10.250.4.2/24", NULL))
		goto out;
	lab_run(&l, 300);
	f = lab_info(&l, 0);
	if (!ASSERT_OK_PTR(f, "info"))
		goto out;
	ASSERT_FALSE(f->enrolled, "ambiguous");
	ASSERT_HAS(f->error, "in two netns", "ambiguity reported");

	lab_netns_del(&l, PREFIX "d1");
	ASSERT_TRUE(lab_wait_enrolled(&l, 0, true, 2000), "enrolled once unambiguous");
	f = lab_info(&l, 0);
	if (f) {
		ASSERT_STREQ(f->netns, PREFIX "d2", "the remaining one");
		ASSERT_EQ(f->netns_cookie, lab_netns_cookie(&l, PREFIX "d2"), "its cookie");
	}
	if (lab_enter(&l, "sl1-d")) {
		int fd = fx_connect(AF_INET, SOCK_STREAM, "127.0.0.1", SL_PORT_OUTBOUND);

		lab_leave(&l);
		ASSERT_EQ(fd, -ECONNREFUSED, "nothing in the other lab's netns");
		if (fd >= 0)
			close(fd);
	}
out:
	lab_teardown(&l);
}

/* A port taken in the pod: a clear error, nothing left behind, and enrolled
 * once the port is free again. */
void test_pods_port_conflict(void)
{
	struct lab l;
	struct pods_spec s[1];
	const struct pods_info *f;
	char rules[4096], routes[4096];
	int busy = -1;

	if (!lab_setup(&l))
		goto out;
	if (!lab_pod(&l, PREFIX "e", "10.250.5.2/24", "fd00:250::5:2/64"))
		goto out;
	if (!lab_enter(&l, PREFIX "e"))
		goto out;
	busy = fx_listen(SOCK_STREAM, "0.0.0.0", SL_PORT_INBOUND);
	lab_leave(&l);
	if (!ASSERT_GE(busy, 0, "app on 15006"))
		goto out;
	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 0, 0), "pods_new"))
		goto out;
	s[0] = spec("e", "10.250.5.2", "fd00:250::5:2");
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set");
	f = lab_info(&l, 0);
	if (!ASSERT_OK_PTR(f, "info"))
		goto out;
	ASSERT_FALSE(f->enrolled, "not enrolled");
	ASSERT_HAS(f->error, "port 15006 in use", "error names the port");
	ASSERT_EQ(l.rec.n_order, 0, "no callbacks");
	ASSERT_EQ(count_fds(lab_netns_ino(&l, PREFIX "e")), 0, "no fd kept");
	lab_routing(&l, PREFIX "e", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark"), 0, "rules rolled back");
	ASSERT_EQ(count_substr(routes, "local"), 0, "routes rolled back");
	if (lab_enter(&l, PREFIX "e")) {
		int fd = fx_connect(AF_INET, SOCK_STREAM, "127.0.0.1", SL_PORT_OUTBOUND);

		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/tcp_fwmark_accept"), 0,
			  "sysctl rolled back");
		lab_leave(&l);
		ASSERT_EQ(fd, -ECONNREFUSED, "15001 rolled back");
		if (fd >= 0)
			close(fd);
	}

	close(busy);
	busy = -1;
	ASSERT_TRUE(lab_wait_enrolled(&l, 0, true, 3000), "enrolled once the port is free");
out:
	if (busy >= 0)
		close(busy);
	lab_teardown(&l);
}

/* A pod netns with IPv6 disabled: the IPv4 half, no error. */
void test_pods_no_ipv6(void)
{
	struct lab l;
	struct pods_spec s[1];
	const struct pods_info *f;
	char path[PATH_MAX], rules[4096], routes[4096];

	if (!lab_setup(&l))
		goto out;
	if (!lab_netns_add(&l, PREFIX "f"))
		goto out;
	lab_path(&l, PREFIX "f", path, sizeof(path));
	if (!ASSERT_EQ(fx_sh("nsenter --net=%s sh -c 'sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
			     "net.ipv6.conf.default.disable_ipv6=1 "
			     "net.ipv6.conf.lo.disable_ipv6=1'",
			     path),
		       0, "disable IPv6"))
		goto out;
	if (!lab_veth(&l, PREFIX "f") || !lab_addr(&l, PREFIX "f", "10.250.6.2/24"))
		goto out;
	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 0, 0), "pods_new"))
		goto out;
	s[0] = spec("f", "10.250.6.2", NULL);
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set");
	f = lab_info(&l, 0);
	if (!ASSERT_OK_PTR(f, "info") || !ASSERT_TRUE(f->enrolled, "enrolled"))
		goto out;
	ASSERT_STREQ(f->error, "", "no error");
	ASSERT_EQ(f->listeners[PODS_L_OUT6].fd, -1, "no [::1]:15001");
	ASSERT_EQ(f->listeners[PODS_L_IN6].fd, -1, "no [::]:15006");
	ASSERT_EQ(f->listeners[PODS_L_HBONE6].fd, -1, "no [::]:15008");
	ASSERT_STREQ(l.rec.order, "lllrae", "three listeners");
	lab_reach(&l, PREFIX "f", "127.0.0.1", SL_PORT_OUTBOUND, f->listeners[PODS_L_OUT4].fd);
	lab_reach(&l, PREFIX "f", "10.250.6.2", SL_PORT_HBONE, f->listeners[PODS_L_HBONE4].fd);
	lab_routing(&l, PREFIX "f", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark 0x53a/0xfff lookup 100"), 1, "IPv4 rule only");
	ASSERT_EQ(count_substr(routes, "local default dev lo"), 1, "IPv4 route only");
	ASSERT_OK(pods_set_enrolled(l.pods, NULL, 0), "remove");
	lab_routing(&l, PREFIX "f", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark"), 0, "rule removed");
out:
	lab_teardown(&l);
}

/* An agent that died (no cleanup) left rules, routes and sysctls: the next
 * one enrols the pod anyway, without duplicating them, and removes them. */
void test_pods_restart(void)
{
	struct lab l;
	struct pods_spec s[1];
	const struct pods_info *f;
	char rules[4096], routes[4096];
	int status = -1;
	pid_t pid;

	if (!lab_setup(&l))
		goto out;
	if (!lab_pod(&l, PREFIX "g", "10.250.7.2/24", "fd00:250::7:2/64"))
		goto out;
	s[0] = spec("g", "10.250.7.2", "fd00:250::7:2");

	pid = fork();
	if (pid == 0) {
		struct loop *lp = NULL;
		struct pods *p = NULL;
		struct pods_opts o = { .netns_dir = l.dir, .prefix = PREFIX };
		struct pods_info *v = NULL;
		size_t n = 0;

		if (loop_new(&lp) || pods_new(&p, lp, &o, NULL, NULL) ||
		    pods_set_enrolled(p, s, 1) || pods_list(p, &v, &n) || n != 1 || !v[0].enrolled)
			_exit(1);
		_exit(0);	/* a crash: nothing undone */
	}
	if (!ASSERT_GE(pid, 0, "fork"))
		goto out;
	for (uint64_t end = loop_now_ms() + 10000; waitpid(pid, &status, WNOHANG) == 0;) {
		if (loop_now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		poll(NULL, 0, 5);
	}
	if (!ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "first agent enrolled"))
		goto out;
	lab_routing(&l, PREFIX "g", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark 0x53a/0xfff"), 2, "rules left behind");

	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 0, 0), "pods_new"))
		goto out;
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set");
	f = lab_info(&l, 0);
	if (!ASSERT_OK_PTR(f, "info") || !ASSERT_TRUE(f->enrolled, "enrolled after restart"))
		goto out;
	ASSERT_STREQ(f->error, "", "no error");
	lab_routing(&l, PREFIX "g", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark 0x53a/0xfff"), 2, "no duplicate rules");
	ASSERT_EQ(count_substr(routes, "local default dev lo"), 2, "no duplicate routes");
	lab_reach(&l, PREFIX "g", "127.0.0.1", SL_PORT_OUTBOUND,
		  l.rec.ready.listeners[PODS_L_OUT4].fd);

	ASSERT_OK(pods_set_enrolled(l.pods, NULL, 0), "remove");
	lab_routing(&l, PREFIX "g", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark"), 0, "rules removed");
	ASSERT_EQ(count_substr(routes, "local"), 0, "routes removed");
out:
	lab_teardown(&l);
}

/* pods_set_enrolled is a diff: pods that stay are left alone, a pod whose IP
 * changed is re-enrolled, leavers are undone; pods_free undoes the rest. */
void test_pods_diff(void)
{
	struct lab l;
	struct pods_spec s[2];
	const struct pods_info *f;
	char rules[4096], routes[4096];

	if (!lab_setup(&l))
		goto out;
	if (!lab_pod(&l, PREFIX "h1", "10.250.8.2/24", NULL) ||
	    !lab_pod(&l, PREFIX "h2", "10.250.8.3/24", NULL) ||
	    !lab_addr(&l, PREFIX "h2", "10.250.8.4/24"))
		goto out;
	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 0, 0), "pods_new"))
		goto out;
	s[0] = spec("h1", "10.250.8.2", NULL);
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "A");
	ASSERT_EQ(l.rec.n_ready, 1, "A ready");

	s[1] = spec("h2", "10.250.8.3", NULL);
	ASSERT_OK(pods_set_enrolled(l.pods, s, 2), "A+B");
	ASSERT_EQ(l.rec.n_ready, 2, "B ready, A untouched");
	ASSERT_EQ(l.rec.n_gone, 0, "nothing gone");

	ASSERT_OK(pods_set_enrolled(l.pods, &s[1], 1), "B");
	ASSERT_EQ(l.rec.n_gone, 1, "A gone");
	ASSERT_EQ(l.rec.n_ready, 2, "B untouched");
	f = lab_info(&l, 0);
	if (f) {
		ASSERT_STREQ(f->name, "h2", "B listed");
		ASSERT_TRUE(f->enrolled, "B enrolled");
	}
	lab_routing(&l, PREFIX "h1", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark"), 0, "A's rules removed");

	s[1] = spec("h2", "10.250.8.4", NULL);	/* same pod, another IP (same netns here) */
	ASSERT_OK(pods_set_enrolled(l.pods, &s[1], 1), "B'");
	ASSERT_EQ(l.rec.n_gone, 2, "B re-enrolled: gone");
	ASSERT_EQ(l.rec.n_ready, 3, "B re-enrolled: ready");
	f = lab_info(&l, 0);
	if (f)
		ASSERT_TRUE(f->enrolled, "B' enrolled");

	pods_free(l.pods);
	l.pods = NULL;
	ASSERT_EQ(l.rec.n_gone, 3, "pods_free: gone");
	ASSERT_EQ(l.rec.lis_fds_on, 0, "pods_free: listeners unregistered");
	ASSERT_EQ(l.rec.n_enrol_on, l.rec.n_enrol_off, "pods_free: unenrolled");
	ASSERT_EQ(count_fds(lab_netns_ino(&l, PREFIX "h2")), 0, "pods_free: no netns fd");
	ASSERT_EQ(count_fds(0), 0, "pods_free: link fds closed");
	lab_routing(&l, PREFIX "h2", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark"), 0, "pods_free: rules removed");
	lab_netns_del(&l, PREFIX "h2");
	ASSERT_TRUE(wait_if_gone("h" PREFIX "h2", 5000), "pods_free: netns can die");
out:
	lab_teardown(&l);
}

/* A failing callback mid-setup: everything done so far is undone, in order. */
void test_pods_enrol_fails(void)
{
	struct lab l;
	struct pods_spec s[1];
	const struct pods_info *f;
	char rules[4096], routes[4096];

	if (!lab_setup(&l))
		goto out;
	if (!lab_pod(&l, PREFIX "i", "10.250.9.2/24", NULL))
		goto out;
	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 0, 0), "pods_new"))
		goto out;
	l.rec.enrol_err = -EIO;
	s[0] = spec("i", "10.250.9.2", NULL);
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set");
	f = lab_info(&l, 0);
	if (!ASSERT_OK_PTR(f, "info"))
		goto out;
	ASSERT_FALSE(f->enrolled, "not enrolled");
	ASSERT_HAS(f->error, "enrolling netns cookie", "error says what failed");
	ASSERT_STREQ(l.rec.order, "llllllrae" "gLLLLLL", "rolled back in reverse");
	ASSERT_EQ(count_fds(0), 0, "link fd closed");
	ASSERT_EQ(count_fds(lab_netns_ino(&l, PREFIX "i")), 0, "no netns fd");
	lab_routing(&l, PREFIX "i", rules, routes, sizeof(rules));
	ASSERT_EQ(count_substr(rules, "fwmark"), 0, "rules rolled back");

	l.rec.enrol_err = 0;
	ASSERT_TRUE(lab_wait_enrolled(&l, 0, true, 3000), "retried and enrolled");
out:
	lab_teardown(&l);
}

/* --procfs: the pods' sysctls are written through that procfs (in a
 * container /proc/sys is read-only and the host's /proc is mounted elsewhere);
 * the files still follow the writer's netns, so they are the pod's. */
void test_pods_procfs(void)
{
	struct lab l;
	struct pods_spec s[1];
	const struct pods_info *f;
	char proc[PATH_MAX], want[PATH_MAX + 96];
	struct pods_opts o = { .prefix = PREFIX };
	bool mounted = false;

	if (!lab_setup(&l))
		goto out;
	if (!lab_pod(&l, PREFIX "p", "10.250.10.2/24", NULL))
		goto out;
	o.netns_dir = l.dir;
	s[0] = spec("p", "10.250.10.2", NULL);

	/* No such procfs: the pod's setup names the path it could not write. */
	snprintf(proc, sizeof(proc), "%s/noproc", test_tmpdir());
	o.procfs = proc;
	if (!ASSERT_OK(pods_new(&l.pods, l.loop, &o, &rec_ops, &l.rec), "pods_new (no procfs)"))
		goto out;
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set");
	f = lab_info(&l, 0);
	if (ASSERT_OK_PTR(f, "info")) {
		ASSERT_FALSE(f->enrolled, "not enrolled without the sysctls");
		snprintf(want, sizeof(want), "setting %s/sys/net/ipv4/tcp_fwmark_accept: No such file", proc);
		ASSERT_HAS(f->error, want, "the error names the path under --procfs");
	}
	pods_free(l.pods);
	l.pods = NULL;

	/* A second mount of procfs, as the host's /proc in the DaemonSet. */
	snprintf(proc, sizeof(proc), "%s/hostproc", test_tmpdir());
	if (!ASSERT_OK(mkdir(proc, 0755) ? -errno : 0, "mkdir") ||
	    !ASSERT_OK(mount("proc", proc, "proc", 0, NULL) ? -errno : 0, "mount proc"))
		goto out;
	mounted = true;
	if (!ASSERT_OK(pods_new(&l.pods, l.loop, &o, &rec_ops, &l.rec), "pods_new (procfs)"))
		goto out;
	ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set");
	if (!ASSERT_TRUE(lab_wait_enrolled(&l, 0, true, 3000), "enrolled"))
		goto out;
	if (lab_enter(&l, PREFIX "p")) {
		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/tcp_fwmark_accept"), 1, "the pod's sysctl set");
		lab_leave(&l);
	}
	ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/tcp_fwmark_accept"), 0, "agent's netns untouched");
	ASSERT_OK(pods_set_enrolled(l.pods, NULL, 0), "unenrol");
	if (lab_enter(&l, PREFIX "p")) {
		ASSERT_EQ(sysctl_get("/proc/sys/net/ipv4/tcp_fwmark_accept"), 0, "restored through it");
		lab_leave(&l);
	}
out:
	lab_teardown(&l);
	if (mounted)
		umount2(proc, MNT_DETACH);
}

/* An ingress attached without a link (clsact) is detached from inside the
 * pod's netns when the pod leaves; a linked one is never "detached". */
void test_pods_ingress_no_link(void)
{
	struct lab l;
	struct pods_spec s[1];
	ino_t ino;

	if (!lab_setup(&l))
		goto out;
	if (!lab_pod(&l, PREFIX "a", "10.250.1.2/24", NULL))
		goto out;
	ino = lab_netns_ino(&l, PREFIX "a");
	if (!ASSERT_OK(lab_pods_new(&l, PREFIX, 0, 0), "pods_new"))
		goto out;
	l.rec.no_link = true;
	s[0] = spec("a", "10.250.1.2", NULL);
	if (!ASSERT_OK(pods_set_enrolled(l.pods, s, 1), "set"))
		goto out;
	ASSERT_TRUE(lab_info(&l, 0) && lab_info(&l, 0)->enrolled, "enrolled");
	ASSERT_OK(pods_set_enrolled(l.pods, s, 0), "leave");
	ASSERT_EQ(l.rec.n_detach, 1, "detached once");
	ASSERT_EQ(l.rec.detach_netns, ino, "detach ran inside the pod's netns");
	ASSERT_EQ(cur_netns(), l.home_ino, "back in the agent's netns");
	ASSERT_TRUE(strchr(l.rec.order, 'd') && strchr(l.rec.order, 'E') < strchr(l.rec.order, 'd'),
		    "capture stops before the filter goes");
out:
	lab_teardown(&l);
}
