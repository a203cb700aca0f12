/* SPDX-License-Identifier: Apache-2.0 */
/* tool.h - what the test tools share: a usage error that names the tool and
 * exits 2, a bounded number argument, a monotonic clock in seconds, pinning to
 * a CPU, a stop flag set by signals. Header-only: each tool is one object file. */
#ifndef SL_TOOL_H
#define SL_TOOL_H

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* s as a number in min..max, or a usage error naming what. */
static inline long num(const char *s, const char *what, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		die("bad %s '%s' (expected %ld..%ld)", what, s, min, max);
	return v;
}

/* s as seconds in 0.1..3600 (a load's bound), or a usage error naming what. */
static inline double seconds_arg(const char *s, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.1 && v <= 3600))
		die("bad %s '%s' (expected 0.1..3600)", what, s);
	return v;
}

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run on CPU cpu from now on (a load tool plays one CPU's part); no-op when
 * cpu < 0. */
static inline void pin_cpu(long cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET((int)cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("--cpu %ld: %s", cpu, strerror(errno));
}

/* Set by stop_on_signals()' handler: the load loop's exit. */
static volatile sig_atomic_t stop;

static inline void tool_on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* SIGINT, SIGTERM and SIGALRM (the tools' hard deadline) set stop. */
static inline void stop_on_signals(void)
{
	struct sigaction sa = { .sa_handler = tool_on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
}

#endif
