/* SPDX-License-Identifier: Apache-2.0 */
/* metrics.h - per-CPU event counters (sl_metrics_v1), indexed by enum sl_counter.
 * Written by: every program. Read by: the agent (/maps, /metrics), bpftool. */
#ifndef SL_BPF_METRICS_H
#define SL_BPF_METRICS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sl_metric);
	__uint(max_entries, SL_CNT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sl_metrics_v1 SEC(".maps");

static __always_inline void metrics_inc(enum sl_counter c)
{
	__u32 key = c;
	struct sl_metric *m = bpf_map_lookup_elem(&sl_metrics_v1, &key);

	if (m)
		m->count++;	/* per-CPU slot: no atomic needed */
}

static __always_inline void metrics_add(enum sl_counter c, __u64 n)
{
	__u32 key = c;
	struct sl_metric *m = bpf_map_lookup_elem(&sl_metrics_v1, &key);

	if (m)
		m->count += n;
}

#endif
