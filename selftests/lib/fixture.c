// SPDX-License-Identifier: Apache-2.0
/* fixture.c - see fixture.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <mntent.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "test.h"

static bool find_cgroup2(char *buf, size_t len)
{
	FILE *f = setmntent("/proc/self/mounts", "r");
	struct mntent *m;
	bool found = false;

	while (f && (m = getmntent(f)))
		if (!strcmp(m->mnt_type, "cgroup2")) {
			snprintf(buf, len, "%s", m->mnt_dir);
			found = true;
			break;
		}
	if (f)
		endmntent(f);
	return found;
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	close(fd);
	return n < 0 ? -errno : 0;
}

static int lo_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), err = 0;

	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr))
			err = -errno;
	} else {
		err = -errno;
	}
	close(fd);
	return err;
}

bool fixture_setup(struct fixture *f)
{
	char pid[32], path[PATH_MAX + 16];
	const char *tmp;

	memset(f, 0, sizeof(*f));
	if (!test_need_root())
		return false;
	if (!ASSERT_OK(unshare(CLONE_NEWNET | CLONE_NEWNS) ? -errno : 0, "unshare net+mnt"))
		return false;
	/* Mounts made from here on stay in this process's namespace. */
	mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (!ASSERT_OK(lo_up(), "lo up"))
		return false;
	tmp = test_tmpdir();
	if (!find_cgroup2(f->cgroup_root, sizeof(f->cgroup_root))) {
		snprintf(f->cgroup_root, sizeof(f->cgroup_root), "%s/cgroup2", tmp);
		mkdir(f->cgroup_root, 0755);
		if (mount("none", f->cgroup_root, "cgroup2", 0, NULL)) {
			test_skip("no cgroup v2 and mounting one failed: %s", strerror(errno));
			return false;
		}
	}
	snprintf(f->cgroup, sizeof(f->cgroup), "%s/sluice-test-%d", f->cgroup_root, (int)getpid());
	if (!ASSERT_OK(mkdir(f->cgroup, 0755) ? -errno : 0, "mkdir cgroup"))
		return false;
	snprintf(f->bpffs, sizeof(f->bpffs), "%s/bpf", tmp);
	mkdir(f->bpffs, 0700);
	if (mount("bpf", f->bpffs, "bpf", 0, "mode=0700")) {
		test_skip("cannot mount bpffs: %s", strerror(errno));
		return false;
	}
	/* The loader wants a root below the mount, as /sys/fs/bpf/sluice. */
	strncat(f->bpffs, "/sluice", sizeof(f->bpffs) - strlen(f->bpffs) - 1);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	snprintf(path, sizeof(path), "%s/cgroup.procs", f->cgroup);
	return ASSERT_OK(write_file(path, pid), "join cgroup");
}

void fixture_teardown(struct fixture *f)
{
	char path[PATH_MAX + 16], pid[32];

	if (!f->cgroup[0])
		return;
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	snprintf(path, sizeof(path), "%s/cgroup.procs", f->cgroup_root);
	write_file(path, pid);
	rmdir(f->cgroup);
}

void fixture_reap(int pid)
{
	char root[PATH_MAX], path[PATH_MAX + 64];

	if (!find_cgroup2(root, sizeof(root)))
		return;
	snprintf(path, sizeof(path), "%s/sluice-test-%d", root, pid);
	rmdir(path);
}

int fx_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return st == -1 ? -1 : WEXITSTATUS(st);
}

int fx_wait_local6(const char *ip)
{
	return fx_sh("for i in $(seq 200); do ip -6 route show table local | grep -q '^local %s ' && "
		     "exit 0; sleep 0.01; done; exit 1", ip) ? -1 : 0;
}

int fx_sockaddr(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*len = sizeof(*s4);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*len = sizeof(*s6);
		return AF_INET6;
	}
	return -EINVAL;
}

int fx_listen(int type, const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = fx_sockaddr(ip, port, &ss, &len), fd, one = 1;

	if (fam < 0)
		return fam;
	fd = socket(fam, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fam == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) || (type == SOCK_STREAM && listen(fd, 128))) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int fx_connect(int family, int type, const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 mapped = { 0 };
	socklen_t len;
	int fam = fx_sockaddr(ip, port, &ss, &len), fd, err = 0;
	struct pollfd pfd;

	if (fam < 0)
		return fam;
	if (family == AF_INET6 && fam == AF_INET) {
		/* An IPv4 destination from an IPv6 socket: ::ffff:a.b.c.d. */
		mapped.sin6_family = AF_INET6;
		mapped.sin6_port = htons(port);
		mapped.sin6_addr.s6_addr[10] = mapped.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&mapped.sin6_addr.s6_addr[12], &((struct sockaddr_in *)&ss)->sin_addr, 4);
		memcpy(&ss, &mapped, sizeof(mapped));
		len = sizeof(mapped);
	}
	fd = socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&ss, len)) {
		err = -errno;
		if (err == -EINPROGRESS) {
			socklen_t el = sizeof(err);

			pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
			if (poll(&pfd, 1, 1000) != 1)
				err = -ETIMEDOUT;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0)
				err = -err;
		}
	}
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int fx_accept_any(const int *fds, int n, int ms)
{
	struct pollfd pfd[16];

	for (int i = 0; i < n && i < 16; i++)
		pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	if (poll(pfd, (nfds_t)n, ms) <= 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (!(pfd[i].revents & POLLIN))
			continue;
		int c = accept4(fds[i], NULL, NULL, SOCK_CLOEXEC);

		if (c >= 0) {
			close(c);
			return i;
		}
	}
	return -1;
}

const char *fx_addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s->sin_port));
	} else {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s->sin6_port));
	}
	return buf;
}

const char *fx_peer(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &sl)) {
		snprintf(buf, len, "error:%s", strerror(errno));
		return buf;
	}
	return fx_addr_str(&ss, buf, len);
}
