// SPDX-License-Identifier: Apache-2.0
/* test_privs.c - user/privs.c: after privs_drop() a process holds exactly the
 * kept capabilities, in every set, can still do what the agent does at run
 * time (a transparent socket, a port below 1024) and no longer what it must
 * not (chown, load a module's worth of privilege back through exec). Each
 * drop happens in a child: the test process keeps its own. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/test.h"
#include "privs.h"

/* Bits of the failures a child found (0: all as expected). */
enum {
	F_DROP = 1 << 0,
	F_EFFECTIVE = 1 << 1,
	F_PERMITTED = 1 << 2,
	F_BOUNDING = 1 << 3,
	F_NNP = 1 << 4,
	F_TRANSPARENT = 1 << 5,
	F_LOW_PORT = 1 << 6,
	F_CHOWN = 1 << 7,
};

static uint64_t caps_of(const struct __user_cap_data_struct d[2], int which)
{
	uint64_t lo = which ? d[0].permitted : d[0].effective;
	uint64_t hi = which ? d[1].permitted : d[1].effective;

	return lo | hi << 32;
}

static int child_checks(const char *file)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	uint64_t keep = privs_kept_mask();
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char err[160];
	int f = 0, one = 1, fd;

	if (privs_drop(err, sizeof(err)))
		return F_DROP;
	memset(d, 0, sizeof(d));
	syscall(SYS_capget, &hdr, d);
	if (caps_of(d, 0) != keep)
		f |= F_EFFECTIVE;
	if (caps_of(d, 1) != keep)
		f |= F_PERMITTED;
	if (prctl(PR_CAPBSET_READ, CAP_SYS_MODULE, 0, 0, 0) != 0 ||
	    prctl(PR_CAPBSET_READ, CAP_SETPCAP, 0, 0, 0) != 0 || prctl(PR_CAPBSET_READ, CAP_BPF, 0, 0, 0) != 1)
		f |= F_BOUNDING;
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		f |= F_NNP;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)))
		f |= F_TRANSPARENT;
	sin.sin_port = htons(1);	/* tcpmux: nothing listens there */
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)))
		f |= F_LOW_PORT;
	if (fd >= 0)
		close(fd);
	if (chown(file, 12345, 12345) == 0 || errno != EPERM)
		f |= F_CHOWN;
	return f;
}

void test_privs_drop(void)
{
	char file[] = "/tmp/sluice-privs.XXXXXX";
	int fd = mkstemp(file), st = 0;
	pid_t pid;

	if (!ASSERT_GE(fd, 0, "temp file"))
		return;
	close(fd);
	if (geteuid() != 0) {
		unlink(file);
		test_skip("needs root");
		return;
	}
	pid = fork();
	if (pid == 0)
		_exit(child_checks(file));
	waitpid(pid, &st, 0);
	unlink(file);
	if (!ASSERT_TRUE(WIFEXITED(st), "child exited"))
		return;
	st = WEXITSTATUS(st);
	ASSERT_FALSE(st & F_DROP, "privs_drop succeeds as root");
	ASSERT_FALSE(st & F_EFFECTIVE, "effective set is the kept set");
	ASSERT_FALSE(st & F_PERMITTED, "permitted set is the kept set");
	ASSERT_FALSE(st & F_BOUNDING, "bounding set: sys_module and setpcap gone, bpf kept");
	ASSERT_FALSE(st & F_NNP, "no_new_privs set");
	ASSERT_FALSE(st & F_TRANSPARENT, "IP_TRANSPARENT still allowed (net_admin)");
	ASSERT_FALSE(st & F_LOW_PORT, "a port below 1024 still bindable (net_bind_service)");
	ASSERT_FALSE(st & F_CHOWN, "chown refused (chown dropped)");
}

void test_privs_names(void)
{
	char buf[256];

	privs_names(privs_kept_mask(), buf, sizeof(buf));
	ASSERT_STREQ(buf, "dac_read_search,net_bind_service,net_admin,net_raw,sys_admin,perfmon,bpf",
		      "the kept set by name");
	privs_names(0, buf, sizeof(buf));
	ASSERT_STREQ(buf, "", "none");
	privs_names(privs_kept_mask(), buf, 10);
	ASSERT_TRUE(strlen(buf) < 10, "a short buffer is not overrun");
}
