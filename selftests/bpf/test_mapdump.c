// SPDX-License-Identifier: Apache-2.0
/* test_mapdump.c - user/lib/mapdump on real maps: a per-CPU array zeroed
 * across more than one batch (as the agent zeroes sl_polstat_v1 at start),
 * read back whole by map_dump. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "mapdump.h"
#include "lib/test.h"

enum { ENTRIES = 2500 };	/* more than one of map_zero's batches of 1,024 */

static uint64_t sum_all(const uint64_t *v, size_t n)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += v[i];
	return s;
}

void test_mapdump_zero_percpu_array(void)
{
	int ncpu = libbpf_num_possible_cpus(), fd;
	uint64_t *val = NULL, *vals = NULL;
	uint32_t *keys = NULL;
	size_t n = 0;

	if (!test_need_root())
		return;
	if (!ASSERT_GE(ncpu, 1, "ncpu"))
		return;
	fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "t_zero", sizeof(uint32_t), sizeof(uint64_t), ENTRIES, NULL);
	if (!ASSERT_GE(fd, 0, "create"))
		return;
	val = calloc((size_t)ncpu, sizeof(*val));
	if (!ASSERT_TRUE(val, "calloc"))
		goto out;
	for (int c = 0; c < ncpu; c++)
		val[c] = 7;
	/* first, middle (second batch) and last key */
	for (uint32_t k = 0; k < ENTRIES; k += ENTRIES / 2 - 1)
		ASSERT_OK(bpf_map_update_elem(fd, &k, val, BPF_ANY), "set");
	ASSERT_OK(map_dump(fd, sizeof(uint32_t), (size_t)ncpu * sizeof(uint64_t), ENTRIES, (void **)&keys,
			   (void **)&vals, &n), "dump before");
	ASSERT_EQ(n, (size_t)ENTRIES, "an array dumps every key");
	ASSERT_EQ(sum_all(vals, n * (size_t)ncpu), 3 * 7 * (uint64_t)ncpu, "counts before");
	free(keys);
	free(vals);
	keys = NULL;
	vals = NULL;

	ASSERT_OK(map_zero(fd, ENTRIES, (size_t)ncpu * sizeof(uint64_t)), "map_zero");
	ASSERT_OK(map_dump(fd, sizeof(uint32_t), (size_t)ncpu * sizeof(uint64_t), ENTRIES, (void **)&keys,
			   (void **)&vals, &n), "dump after");
	ASSERT_EQ(n, (size_t)ENTRIES, "still every key");
	ASSERT_EQ(sum_all(vals, n * (size_t)ncpu), 0, "all zero");
	ASSERT_ERR(map_zero(fd, ENTRIES + 1, (size_t)ncpu * sizeof(uint64_t)), "past the end fails");
out:
	free(keys);
	free(vals);
	free(val);
	close(fd);
}
