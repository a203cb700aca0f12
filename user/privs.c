// SPDX-License-Identifier: Apache-2.0
/* privs.c - see privs.h. Raw capget/capset/prctl: libcap would be one more
 * dependency for four system calls. */
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "privs.h"

#define CAP_BIT(c) (1ULL << (c))

static const struct {
	int cap;
	const char *name;
} cap_names[] = {
	{ CAP_CHOWN, "chown" },
	{ CAP_DAC_OVERRIDE, "dac_override" },
	{ CAP_DAC_READ_SEARCH, "dac_read_search" },
	{ CAP_FOWNER, "fowner" },
	{ CAP_FSETID, "fsetid" },
	{ CAP_KILL, "kill" },
	{ CAP_SETGID, "setgid" },
	{ CAP_SETUID, "setuid" },
	{ CAP_SETPCAP, "setpcap" },
	{ CAP_LINUX_IMMUTABLE, "linux_immutable" },
	{ CAP_NET_BIND_SERVICE, "net_bind_service" },
	{ CAP_NET_BROADCAST, "net_broadcast" },
	{ CAP_NET_ADMIN, "net_admin" },
	{ CAP_NET_RAW, "net_raw" },
	{ CAP_IPC_LOCK, "ipc_lock" },
	{ CAP_IPC_OWNER, "ipc_owner" },
	{ CAP_SYS_MODULE, "sys_module" },
	{ CAP_SYS_RAWIO, "sys_rawio" },
	{ CAP_SYS_CHROOT, "sys_chroot" },
	{ CAP_SYS_PTRACE, "sys_ptrace" },
	{ CAP_SYS_PACCT, "sys_pacct" },
	{ CAP_SYS_ADMIN, "sys_admin" },
	{ CAP_SYS_BOOT, "sys_boot" },
	{ CAP_SYS_NICE, "sys_nice" },
	{ CAP_SYS_RESOURCE, "sys_resource" },
	{ CAP_SYS_TIME, "sys_time" },
	{ CAP_SYS_TTY_CONFIG, "sys_tty_config" },
	{ CAP_MKNOD, "mknod" },
	{ CAP_LEASE, "lease" },
	{ CAP_AUDIT_WRITE, "audit_write" },
	{ CAP_AUDIT_CONTROL, "audit_control" },
	{ CAP_SETFCAP, "setfcap" },
	{ CAP_MAC_OVERRIDE, "mac_override" },
	{ CAP_MAC_ADMIN, "mac_admin" },
	{ CAP_SYSLOG, "syslog" },
	{ CAP_WAKE_ALARM, "wake_alarm" },
	{ CAP_BLOCK_SUSPEND, "block_suspend" },
	{ CAP_AUDIT_READ, "audit_read" },
	{ CAP_PERFMON, "perfmon" },
	{ CAP_BPF, "bpf" },
	{ CAP_CHECKPOINT_RESTORE, "checkpoint_restore" },
};

uint64_t privs_kept_mask(void)
{
	return CAP_BIT(CAP_BPF) | CAP_BIT(CAP_PERFMON) | CAP_BIT(CAP_NET_ADMIN) | CAP_BIT(CAP_NET_RAW) |
	       CAP_BIT(CAP_SYS_ADMIN) | CAP_BIT(CAP_NET_BIND_SERVICE) | CAP_BIT(CAP_DAC_READ_SEARCH);
}

void privs_names(uint64_t mask, char *buf, size_t len)
{
	size_t off = 0;

	if (!len)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++) {
		int n;

		if (!(mask & CAP_BIT(cap_names[i].cap)))
			continue;
		n = snprintf(buf + off, len - off, "%s%s", off ? "," : "", cap_names[i].name);
		if (n < 0 || (size_t)n >= len - off)
			return;
		off += (size_t)n;
	}
}

/* The highest capability this kernel knows (for the bounding set). */
static int cap_last(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int last = CAP_LAST_CAP;

	if (f) {
		if (fscanf(f, "%d", &last) != 1)
			last = CAP_LAST_CAP;
		fclose(f);
	}
	return last < 63 ? last : 63;
}

int privs_drop(char *err, size_t len)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	uint64_t keep = privs_kept_mask();
	int last = cap_last();

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data)) {
		snprintf(err, len, "capget: %s", strerror(errno));
		return -errno;
	}
	if (!(data[0].effective & CAP_BIT(CAP_SETPCAP))) {
		snprintf(err, len, "no CAP_SETPCAP: capabilities left as they are");
		return -EPERM;
	}
	/* The bounding set first: dropping from it needs CAP_SETPCAP, which the
	 * capset below gives up. */
	for (int c = 0; c <= last; c++) {
		if (keep & CAP_BIT(c))
			continue;
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL) {
			snprintf(err, len, "dropping capability %d from the bounding set: %s", c, strerror(errno));
			return -errno;
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL) {
		snprintf(err, len, "clearing ambient capabilities: %s", strerror(errno));
		return -errno;
	}
	for (int i = 0; i < 2; i++) {
		uint32_t k = (uint32_t)(keep >> (32 * i));

		data[i].effective &= k;
		data[i].permitted &= k;
		data[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &hdr, data)) {
		snprintf(err, len, "capset: %s", strerror(errno));
		return -errno;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		snprintf(err, len, "no_new_privs: %s", strerror(errno));
		return -errno;
	}
	return 0;
}
