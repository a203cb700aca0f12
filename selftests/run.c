// SPDX-License-Identifier: Apache-2.0
/* run.c - runs the registered tests, each in a forked child with its output
 * captured; prints "[name] PASS|FAIL|SKIP" and ends with "N passed, N failed,
 * N skipped". Options: -t <substring> (repeatable) runs matching tests only,
 * -l lists them, -v shows every test's output, -T <seconds> per-test timeout. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/fixture.h"
#include "lib/test.h"

/* Under ASan each test's child checks for leaks before it goes: _exit()
 * (which the child must use, not to run the parent's atexit work twice)
 * skips LeakSanitizer's own check at exit. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define SL_TEST_LEAK_CHECK 1
#endif
#endif

#define SL_TEST(fn) void fn(void);
#include "selftests/registry.h"
#undef SL_TEST

struct test_entry {
	const char *name;
	void (*fn)(void);
};

#define SL_TEST(fn) { #fn, fn },
static const struct test_entry tests[] = {
#include "selftests/registry.h"
};
#undef SL_TEST

int test_failed;

/* Shared with the parent so a skip reason survives the child. */
struct shared_state {
	int skipped;
	char reason[256];
	char tmpdir[256];	/* removed by the parent: the child's mounts are gone then */
};
static struct shared_state *shared;
static char tmpdir[256];

void test_skip(const char *fmt, ...)
{
	va_list ap;

	shared->skipped = 1;
	va_start(ap, fmt);
	vsnprintf(shared->reason, sizeof(shared->reason), fmt, ap);
	va_end(ap);
}

bool test_skipped(void)
{
	return shared->skipped;
}

bool test_need_root(void)
{
	if (geteuid() != 0) {
		test_skip("needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)");
		return false;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		test_skip("kernel has no BTF at /sys/kernel/btf/vmlinux");
		return false;
	}
	return true;
}

const char *test_tmpdir(void)
{
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/sluice-test.XXXXXX");
		if (!mkdtemp(tmpdir))
			tmpdir[0] = '\0';
		memcpy(shared->tmpdir, tmpdir, sizeof(shared->tmpdir));
	}
	return tmpdir;
}

static int rm_cb(const char *p, const struct stat *sb, int type, struct FTW *f)
{
	(void)sb;
	(void)type;
	(void)f;
	return remove(p);
}

static bool selected(const char *name, char **filters, int n)
{
	if (!n)
		return true;
	for (int i = 0; i < n; i++)
		if (strstr(name, filters[i]))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	char *filters[64];
	int n_filters = 0, verbose = 0, list = 0, timeout_s = 120;
	int passed = 0, failed = 0, skipped = 0, opt;

	while ((opt = getopt(argc, argv, "t:lvT:")) != -1) {
		switch (opt) {
		case 't':
			if (n_filters < 64)
				filters[n_filters++] = optarg;
			break;
		case 'l':
			list = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'T':
			timeout_s = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-t filter]... [-l] [-v] [-T seconds]\n", argv[0]);
			return 2;
		}
	}
	shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);

	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		const struct test_entry *t = &tests[i];
		char outpath[] = "/tmp/sluice-test-out.XXXXXX";
		struct timespec t0, t1;
		int status = 0, outfd;
		pid_t pid;

		if (!selected(t->name, filters, n_filters))
			continue;
		if (list) {
			printf("%s\n", t->name);
			continue;
		}
		memset(shared, 0, sizeof(*shared));
		outfd = mkstemp(outpath);
		if (outfd < 0)
			return 2;
		unlink(outpath);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			setpgid(0, 0);
			dup2(outfd, 1);
			dup2(outfd, 2);
			setvbuf(stdout, NULL, _IONBF, 0);
			alarm((unsigned)timeout_s);
			test_failed = 0;
			t->fn();
			fflush(stdout);
#ifdef SL_TEST_LEAK_CHECK
			__lsan_do_leak_check();	/* leaks: reported, and the child exits 23 */
#endif
			_exit(test_failed ? 1 : 0);
		}
		waitpid(pid, &status, 0);
		kill(-pid, SIGKILL);	/* stray children of the test */
		fixture_reap(pid);	/* its cgroup, if it died without teardown */
		if (shared->tmpdir[0])
			nftw(shared->tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
		const char *verdict = !ok ? "FAIL" : shared->skipped ? "SKIP" : "PASS";

		if (!ok)
			failed++;
		else if (shared->skipped)
			skipped++;
		else
			passed++;
		if (!ok || verbose) {
			char buf[4096];
			ssize_t n;

			lseek(outfd, 0, SEEK_SET);
			while ((n = read(outfd, buf, sizeof(buf))) > 0)
				fwrite(buf, 1, (size_t)n, stdout);
			if (WIFSIGNALED(status))
				printf("%s: killed by signal %d%s\n", t->name, WTERMSIG(status),
				       WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
		}
		close(outfd);
		if (shared->skipped && ok)
			printf("[%s] SKIP (%s)\n", t->name, shared->reason);
		else
			printf("[%s] %s (%.2fs)\n", t->name, verdict, secs);
	}
	if (!list)
		printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed ? 1 : 0;
}
