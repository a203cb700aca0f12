/* SPDX-License-Identifier: Apache-2.0 */
/* test.h - the unit/BPF test harness (after the kernel's test_progs.h).
 *
 * A test is `void test_<area>_<case>(void)` in selftests/unit or selftests/bpf;
 * the Makefile finds it by that exact line shape. Each test runs in its own
 * forked process (so it may unshare namespaces or crash without harm); its
 * output is shown only when it fails. Asserts print
 * "func:FAIL:name actual X != expected Y", mark the test failed, and return
 * false so the caller can stop.
 */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

extern int test_failed;		/* set by failing asserts */

/* Mark the current test skipped (with why); the caller should return. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool test_skipped(void);
/* Skip unless running as root with bpffs and cgroup2 available. */
bool test_need_root(void);
/* A fresh directory for this test (removed after it). */
const char *test_tmpdir(void);

#define _ASSERT(cond, name, fmt, ...)                                                       \
	({                                                                                  \
		bool ___ok = (cond);                                                        \
		if (!___ok) {                                                               \
			test_failed = 1;                                                    \
			fprintf(stdout, "%s:%d:%s:FAIL:%s " fmt "\n", __FILE__, __LINE__,  \
				__func__, name, ##__VA_ARGS__);                             \
		}                                                                           \
		___ok;                                                                      \
	})

#define ASSERT_TRUE(a, name) _ASSERT(!!(a), name, "unexpected false")
#define ASSERT_FALSE(a, name) _ASSERT(!(a), name, "unexpected true")
#define ASSERT_EQ(a, b, name)                                                               \
	({                                                                                  \
		long long ___a = (long long)(a), ___b = (long long)(b);                     \
		_ASSERT(___a == ___b, name, "actual %lld != expected %lld", ___a, ___b);    \
	})
#define ASSERT_NEQ(a, b, name)                                                              \
	({                                                                                  \
		long long ___a = (long long)(a), ___b = (long long)(b);                     \
		_ASSERT(___a != ___b, name, "actual %lld == unexpected %lld", ___a, ___b);  \
	})
#define ASSERT_GE(a, b, name)                                                               \
	({                                                                                  \
		long long ___a = (long long)(a), ___b = (long long)(b);                     \
		_ASSERT(___a >= ___b, name, "actual %lld < expected %lld", ___a, ___b);     \
	})
#define ASSERT_LE(a, b, name)                                                               \
	({                                                                                  \
		long long ___a = (long long)(a), ___b = (long long)(b);                     \
		_ASSERT(___a <= ___b, name, "actual %lld > expected %lld", ___a, ___b);     \
	})
#define ASSERT_OK(a, name)                                                                  \
	({                                                                                  \
		long long ___a = (long long)(a);                                            \
		_ASSERT(___a == 0, name, "unexpected error %lld (%s)", ___a,                \
			___a < 0 ? strerror((int)-___a) : "");                              \
	})
#define ASSERT_ERR(a, name)                                                                 \
	({                                                                                  \
		long long ___a = (long long)(a);                                            \
		_ASSERT(___a < 0, name, "unexpected success %lld", ___a);                   \
	})
#define ASSERT_OK_PTR(p, name) _ASSERT((p) != NULL, name, "unexpected NULL")
#define ASSERT_STREQ(a, b, name)                                                            \
	({                                                                                  \
		const char *___a = (a), *___b = (b);                                        \
		_ASSERT(___a && ___b && !strcmp(___a, ___b), name,                          \
			"actual '%s' != expected '%s'", ___a ? ___a : "(null)",             \
			___b ? ___b : "(null)");                                            \
	})
#define ASSERT_HAS(hay, needle, name)                                                       \
	({                                                                                  \
		const char *___h = (hay), *___n = (needle);                                 \
		_ASSERT(___h && strstr(___h, ___n), name, "'%s' not in '%s'", ___n,         \
			___h ? ___h : "(null)");                                            \
	})

#endif
