/* SPDX-License-Identifier: Apache-2.0 */
/* fixture.h - a throwaway world for socket-hook tests: this test process in its
 * own network and mount namespaces (lo up), its own cgroup v2 directory, and a
 * private bpffs, so nothing touches the host and everything vanishes with it. */
#ifndef SL_FIXTURE_H
#define SL_FIXTURE_H

#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

struct fixture {
	char cgroup[PATH_MAX];		/* the test's cgroup (this process is in it) */
	char cgroup_root[PATH_MAX / 2];
	char bpffs[PATH_MAX / 2];	/* a bpffs mount for pins */
};

/* Returns false (with the test skipped or failed) when the world can't be made. */
bool fixture_setup(struct fixture *f);
void fixture_teardown(struct fixture *f);
/* Runs a shell command (formatted); returns its exit status. */
int fx_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Wait (up to 2 s) for the local route of an IPv6 address just added: even
 * with nodad it comes from a workqueue, and on a loaded machine a connect
 * can beat it (ENETUNREACH). 0, or -1 if it never came. */
int fx_wait_local6(const char *ip);
/* The runner calls this after a test process ends, to remove its cgroup. */
void fixture_reap(int pid);

/* Socket helpers with timeouts. addr strings are IPv4 or IPv6 literals. */
int fx_sockaddr(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);
int fx_listen(int type, const char *ip, uint16_t port);		/* TCP or UDP; returns fd */
/* Connect (TCP or UDP) with a 1 s bound; returns fd or -errno. family: AF_INET/AF_INET6. */
int fx_connect(int family, int type, const char *ip, uint16_t port);
/* Accept on one of fds within ms; returns the index that got a connection or -1. */
int fx_accept_any(const int *fds, int n, int ms);
/* The peer (getpeername) of fd as "ip:port" / "[ip]:port". */
const char *fx_peer(int fd, char *buf, size_t len);
const char *fx_addr_str(const struct sockaddr_storage *ss, char *buf, size_t len);

#endif
