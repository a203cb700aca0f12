// SPDX-License-Identifier: Apache-2.0
/* sl-pingpong - how long a cache line takes to go from one CPU to another
 * and back: the benchmarks' check of where the host has put this VM's CPUs.
 *
 *   sl-pingpong [--cpus A,B] [--rounds N] [--bursts K]
 *
 * Two threads, pinned to CPUs A and B (default 0,1), hand one counter back
 * and forth N times per burst (default 20000); K bursts (default 9). Prints
 *
 *   rtt_ns=<median burst's ns per round trip> min=<fastest> max=<slowest>
 *
 * Why: on this machine (a nested VM on AMD EPYC) the round trip is 70-130 ns
 * for minutes, then 360-430 ns for minutes (2026-11-29): by all signs the
 * host then runs the two vCPUs where they share no cache. Whatever passes
 * data from one CPU to the other per packet (a generator on one CPU, the
 * receive on the other) then pays such misses per packet and runs at half
 * speed or less, the fastest programs worst. Exit 0; 2 on bad usage. Each
 * burst is bounded (1 s), so a descheduled partner cannot hang it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "tools/tool.h"

#define PP_BURST_MAX_S 1.0

static _Alignas(64) atomic_uint_fast64_t ball;
static _Alignas(64) atomic_bool quit;
static long cpu_b = 1;

static void pin_thread(long cpu)
{
	cpu_set_t set;
	int err;

	CPU_ZERO(&set);
	CPU_SET((int)cpu, &set);
	err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (err)
		die("--cpus: CPU %ld: %s", cpu, strerror(err));
}

/* B: answers each odd value with the next even one, until told to quit. */
static void *partner(void *arg)
{
	(void)arg;
	pin_thread(cpu_b);
	while (!atomic_load_explicit(&quit, memory_order_relaxed)) {
		uint_fast64_t v = atomic_load_explicit(&ball, memory_order_acquire);

		if (v & 1)
			atomic_store_explicit(&ball, v + 1, memory_order_release);
	}
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	long cpu_a = 0, rounds = 20000, bursts = 9;
	double ns[64];
	pthread_t t;
	int err;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v;
		char *end;

		if (i + 1 >= argc)
			die("%s needs a value (usage: sl-pingpong [--cpus A,B] [--rounds N] [--bursts K])", o);
		v = argv[++i];
		if (!strcmp(o, "--cpus")) {
			errno = 0;
			cpu_a = strtol(v, &end, 10);
			if (errno || end == v || *end != ',')
				die("bad --cpus '%s' (expected A,B)", v);
			cpu_b = num(end + 1, "--cpus' second CPU", 0, CPU_SETSIZE - 1);
			if (cpu_a < 0 || cpu_a >= CPU_SETSIZE || cpu_a == cpu_b)
				die("bad --cpus '%s' (two different CPUs)", v);
		} else if (!strcmp(o, "--rounds")) {
			rounds = num(v, "--rounds", 100, 10000000);
		} else if (!strcmp(o, "--bursts")) {
			bursts = num(v, "--bursts", 1, 64);
		} else {
			die("unknown option %s", o);
		}
	}
	pin_thread(cpu_a);
	err = pthread_create(&t, NULL, partner, NULL);
	if (err)
		die("start the partner thread: %s", strerror(err));
	/* burst -1 warms up: the partner may not run yet */
	for (long b = -1; b < bursts; b++) {
		/* even: the partner's last answer (or one it still owes, after a
		 * burst that ran out of time: then it answers this one) */
		uint_fast64_t base = atomic_load_explicit(&ball, memory_order_acquire) & ~(uint_fast64_t)1;
		double t0 = now_s(), deadline = t0 + PP_BURST_MAX_S;
		long n;

		for (n = 0; n < rounds; n++) {
			uint_fast64_t want = base + 2 * (uint_fast64_t)n + 2;

			atomic_store_explicit(&ball, want - 1, memory_order_release);
			/* the clock only now and then: it costs more than a round trip */
			for (unsigned spin = 1; atomic_load_explicit(&ball, memory_order_acquire) != want; spin++)
				if (!(spin & 0xfffff) && now_s() > deadline)
					goto out;
		}
out:
		if (b < 0)
			continue;
		ns[b] = n ? (now_s() - t0) * 1e9 / (double)n : PP_BURST_MAX_S * 1e9;
	}
	atomic_store_explicit(&quit, true, memory_order_relaxed);
	pthread_join(t, NULL);
	qsort(ns, (size_t)bursts, sizeof(ns[0]), cmp_double);
	printf("rtt_ns=%.0f min=%.0f max=%.0f\n", ns[bursts / 2], ns[0], ns[bursts - 1]);
	return 0;
}
