// SPDX-License-Identifier: Apache-2.0
/* polmap.c - see polmap.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <sluice/counters.h>

#include "mapdump.h"
#include "pkt.h"
#include "polmap.h"
#include "test.h"

void pm_unpin(struct bpf_object *obj)
{
	struct bpf_map *map;

	for (map = bpf_object__next_map(obj, NULL); map; map = bpf_object__next_map(obj, map))
		bpf_map__set_pin_path(map, NULL);
}

int pm_share(struct bpf_object *from, struct bpf_object *to)
{
	struct bpf_map *map;

	for (map = bpf_object__next_map(to, NULL); map; map = bpf_object__next_map(to, map)) {
		struct bpf_map *src = bpf_object__find_map_by_name(from, bpf_map__name(map));
		int err;

		/* .rodata/.bss and friends are each object's own. */
		if (!src || bpf_map__is_internal(map))
			continue;
		err = bpf_map__reuse_fd(map, bpf_map__fd(src));
		if (err)
			return err;
	}
	return 0;
}

static int map_fd(struct bpf_object *obj, const char *name)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, name);

	return map ? bpf_map__fd(map) : -ENOENT;
}

int pm_fds_get(struct bpf_object *obj, struct pm_fds *m)
{
	m->polid = map_fd(obj, "sl_polid_v1");
	m->polep = map_fd(obj, "sl_polep_v1");
	m->polrule = map_fd(obj, "sl_polrule_v1");
	m->polport = map_fd(obj, "sl_polport_v1");
	m->polrange = map_fd(obj, "sl_polrange_v1");
	m->polstat = map_fd(obj, "sl_polstat_v1");
	m->polct = map_fd(obj, "sl_polct_v1");
	m->polctport = map_fd(obj, "sl_polctport_v1");
	m->polev = map_fd(obj, "sl_polev_v1");
	m->polevrl = map_fd(obj, "sl_polevrl_v1");
	m->metrics = map_fd(obj, "sl_metrics_v1");
	if (m->polid < 0 || m->polep < 0 || m->polrule < 0 || m->polport < 0 || m->polrange < 0 || m->polstat < 0 || m->polct < 0 || m->polctport < 0 ||
	    m->polev < 0 || m->polevrl < 0 || m->metrics < 0)
		return -ENOENT;
	return 0;
}

int pm_addr(const char *ip, struct sl_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, ip, &a->v4) == 1)
		return SL_AF_INET;
	if (inet_pton(AF_INET6, ip, a->octets) == 1)
		return SL_AF_INET6;
	return -1;
}

int pm_put_ep(const struct pm_fds *m, const char *ip, uint32_t ep_id, uint32_t flags,
	      uint32_t deny_in, uint32_t deny_out)
{
	struct sl_polep_key k = { 0 };
	struct sl_polep_val v = { .ep_id = ep_id,
				  .flags = flags,
				  .deny_slot = { deny_in, deny_out } };
	int fam = pm_addr(ip, &k.addr);

	if (fam < 0)
		return -EINVAL;
	k.family = (uint8_t)fam;
	return bpf_map_update_elem(m->polep, &k, &v, BPF_ANY) ? -errno : 0;
}

int pm_put_id(const struct pm_fds *m, const char *cidr, uint32_t id)
{
	struct sl_polid_key k = { 0 };
	struct sl_polid_val v = { .id = id };
	char ip[64], *slash;
	int fam, len;

	snprintf(ip, sizeof(ip), "%s", cidr);
	slash = strchr(ip, '/');
	if (slash)
		*slash = '\0';
	fam = pm_addr(ip, &k.addr);
	if (fam < 0)
		return -EINVAL;
	len = slash ? atoi(slash + 1) : fam == SL_AF_INET ? 32 : 128;
	if (len < 0 || len > (fam == SL_AF_INET ? 32 : 128))
		return -EINVAL;
	k.prefixlen = SL_POLID_KEY_BITS((uint32_t)len);
	k.family = (uint8_t)fam;
	return bpf_map_update_elem(m->polid, &k, &v, BPF_ANY) ? -errno : 0;
}

/* A port-range block into its sl_polrange_v1 list, longest prefix first (as
 * the agent writes them). */
static int put_range(const struct pm_fds *m, const struct sl_polrule_key *k, uint32_t slot)
{
	struct sl_polrange_key rk = { .ep_id = k->ep_id, .peer_id = k->peer_id, .dir = k->dir, .proto = k->proto };
	struct sl_polrange_val v = { 0 };
	struct sl_polrange b = { .lo = ntohs(k->port), .slot = slot };
	uint32_t width = 1u << (SL_POLRULE_BITS - k->prefixlen), at = 0;

	b.hi = (uint16_t)(b.lo + width - 1);
	if (bpf_map_lookup_elem(m->polrange, &rk, &v) && errno != ENOENT)
		return -errno;
	if (v.n >= SL_POLRANGE_N)
		return -E2BIG;
	while (at < v.n && (uint32_t)(v.r[at].hi - v.r[at].lo) + 1 <= width)
		at++;
	memmove(&v.r[at + 1], &v.r[at], (v.n - at) * sizeof(v.r[0]));
	v.r[at] = b;
	v.n++;
	return bpf_map_update_elem(m->polrange, &rk, &v, BPF_ANY) ? -errno : 0;
}

int pm_put_rule(const struct pm_fds *m, uint32_t ep, uint32_t peer, uint8_t dir, uint8_t proto,
		uint16_t port, unsigned int port_bits, uint32_t slot)
{
	uint16_t mask = port_bits ? (uint16_t)(0xffffu << (16 - port_bits)) : 0;
	struct sl_polrule_key k = {
		.prefixlen = SL_POLRULE_BITS - 16 + port_bits,
		.ep_id = ep,
		.peer_id = peer,
		.dir = dir,
		.proto = proto,
		.port = htons(port & mask),
	};
	struct sl_polrule_val v = { .slot = slot };

	struct sl_polport_key pk = { .ep_id = ep, .peer_id = peer, .dir = dir, .proto = proto, .port = k.port };

	if (port_bits > 16)
		return -EINVAL;
	if (bpf_map_update_elem(m->polrule, &k, &v, BPF_ANY))
		return -errno;
	if ((port_bits == 16 || !port_bits) && bpf_map_update_elem(m->polport, &pk, &v, BPF_ANY))
		return -errno;
	if (port_bits != 16 && port_bits)
		return put_range(m, &k, slot);
	return 0;
}

/* Per-CPU values: one 8-byte slot per possible CPU. */
static uint64_t percpu_sum(int fd, const void *key)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *v, sum = 0;

	if (ncpu <= 0)
		return 0;
	v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return 0;
	if (!bpf_map_lookup_elem(fd, key, v))
		for (int c = 0; c < ncpu; c++)
			sum += v[c];
	free(v);
	return sum;
}

uint64_t pm_stat(const struct pm_fds *m, uint32_t slot)
{
	return percpu_sum(m->polstat, &slot);
}

uint64_t pm_stat_total(const struct pm_fds *m)
{
	int ncpu = libbpf_num_possible_cpus();
	void *keys = NULL, *vals = NULL;
	uint64_t sum = 0;
	size_t n = 0;

	/* An array of SL_POLSTAT_MAX slots: read in batches, not key by key. */
	if (ncpu > 0 && !map_dump(m->polstat, sizeof(uint32_t), (size_t)ncpu * sizeof(uint64_t), SL_POLSTAT_MAX,
				  &keys, &vals, &n))
		for (size_t i = 0; i < n * (size_t)ncpu; i++)
			sum += ((const uint64_t *)vals)[i];
	free(keys);
	free(vals);
	return sum;
}

uint64_t pm_metric(const struct pm_fds *m, uint32_t counter)
{
	return percpu_sum(m->metrics, &counter);
}

void pm_metrics(const struct pm_fds *m, uint64_t *out, size_t n)
{
	for (uint32_t k = 0; k < n; k++)
		out[k] = pm_metric(m, k);
}

static int on_event(void *ctx, void *data, size_t len)
{
	struct pm_events *e = ctx;

	if (len >= sizeof(struct sl_polev) && e->n < PM_EV_MAX)
		memcpy(&e->ev[e->n], data, sizeof(struct sl_polev));
	e->n++;
	return 0;
}

int pm_events_open(struct pm_events *e, const struct pm_fds *m)
{
	memset(e, 0, sizeof(*e));
	e->budget_fd = m->polevrl;
	e->rb = ring_buffer__new(m->polev, on_event, e, NULL);
	return e->rb ? 0 : -errno;
}

size_t pm_events_drain(struct pm_events *e)
{
	struct sl_polev_budget full[512] = { 0 };	/* last_ns 0: refilled to the burst */
	__u32 zero = 0;

	e->n = 0;
	if (e->rb)
		ring_buffer__consume(e->rb);
	if (e->budget_fd > 0 && libbpf_num_possible_cpus() <= 512)
		bpf_map_update_elem(e->budget_fd, &zero, full, BPF_ANY);
	return e->n;
}

void pm_events_close(struct pm_events *e)
{
	ring_buffer__free(e->rb);
	e->rb = NULL;
}

/* v4 literal -> the v6 one of the same role. */
static const char *const v6_of[][2] = {
	{ PM_S, "fd00:10::10" },	    { PM_E, "fd00:10::11" },	      { PM_O, "fd00:10::12" },
	{ PM_C, "fd00:20::5" },		    { PM_D, "fd00:20::6" },	      { PM_W, "fd00:99::1" },
	{ PM_N, "fd00:30::53" },	    { PM_NOPOL, "fd00:10::99" },      { "192.168.50.5", "fd00:50::5" },
	{ "192.168.50.16", "fd00:50::10" }, { "192.168.50.31", "fd00:50::1f" }, { "192.168.50.32", "fd00:50::20" },
	{ "192.168.51.1", "fd00:51::1" },
};

const char *pm_v6(const char *v4)
{
	for (size_t i = 0; i < sizeof(v6_of) / sizeof(v6_of[0]); i++)
		if (!strcmp(v6_of[i][0], v4))
			return v6_of[i][1];
	return v4;
}

void pm_to_v6(const struct pkt_opts *in, struct pkt_opts *out)
{
	*out = *in;
	out->src = pm_v6(in->src);
	out->dst = pm_v6(in->dst);
	out->ip4_options = 0;
	out->ip6_hopopts = in->ip4_options > 0;
	out->ip4_frag_off = 0;
	out->ip6_frag = in->ip4_frag_off || in->more_frags;
	out->ip6_frag_off = in->ip4_frag_off;
	if (in->proto == 1)
		out->proto = 58;	/* ICMP -> ICMPv6 */
	/* IPv4 options cut with the L4 header: the hop-by-hop header (8 bytes) cut instead. */
	if (in->ip4_options && in->truncate > 20)
		out->truncate = 20 + 4;
}

int pm_scenario(const struct pm_fds *m, bool v6)
{
	int err = 0;

#define A(x) (v6 ? pm_v6(x) : (x))
	err = err ?: pm_put_ep(m, A(PM_S), 1, SL_EP_F_ISO_IN | SL_EP_F_NO_STEER, 100, 101);
	err = err
		?: pm_put_ep(m, A(PM_C), 2, SL_EP_F_ISO_IN | SL_EP_F_ISO_OUT | SL_EP_F_NO_STEER,
			     200, 201);
	err = err ?: pm_put_ep(m, A(PM_E), 3, SL_EP_F_ISO_IN | SL_EP_F_ENROLLED, 300, 301);
	err = err ?: pm_put_ep(m, A(PM_O), 4, SL_EP_F_ISO_OUT | SL_EP_F_NO_STEER, 400, 401);
	err = err ?: pm_put_id(m, A(PM_C), 7);
	err = err ?: pm_put_id(m, A(PM_D), 8);
	err = err ?: pm_put_id(m, A(PM_S), 9);
#undef A
	err = err ?: pm_put_id(m, v6 ? "fd00:50::/120" : "192.168.50.0/24", 20);
	err = err ?: pm_put_id(m, v6 ? "fd00:50::10/124" : "192.168.50.16/28", 21);
	err = err ?: pm_put_rule(m, 1, 7, SL_DIR_INGRESS, PKT_TCP, 80, 16, 1);
	err = err ?: pm_put_rule(m, 1, SL_POLID_ANY, SL_DIR_INGRESS, PKT_TCP, 8443, 16, 2);
	err = err ?: pm_put_rule(m, 1, 7, SL_DIR_INGRESS, PKT_TCP, 4096, 12, 3);
	err = err ?: pm_put_rule(m, 1, 20, SL_DIR_INGRESS, PKT_TCP, 443, 16, 4);
	err = err ?: pm_put_rule(m, 1, 7, SL_DIR_INGRESS, PKT_UDP, 53, 16, 5);
	err = err ?: pm_put_rule(m, 1, 8, SL_DIR_INGRESS, PKT_UDP, 0, 0, 6);
	err = err ?: pm_put_rule(m, 2, 8, SL_DIR_INGRESS, PKT_UDP, 5000, 16, 10);
	err = err ?: pm_put_rule(m, 2, SL_POLID_ANY, SL_DIR_EGRESS, PKT_UDP, 53, 16, 7);
	err = err ?: pm_put_rule(m, 2, 9, SL_DIR_EGRESS, PKT_TCP, 80, 16, 8);
	err = err ?: pm_put_rule(m, 4, SL_POLID_ANY, SL_DIR_EGRESS, PKT_TCP, 0, 0, 9);
	return err;
}

int pm_fill_rules(const struct pm_fds *m, unsigned int from, unsigned int to)
{
	int err = 0;

	for (unsigned int i = from; i < to && !err; i++)
		err = pm_put_rule(m, 1000 + i / 100, 10 + i % 7, SL_DIR_INGRESS, PKT_TCP,
				  (uint16_t)(1024 + i % 100), 16, 5000 + i);
	return err;
}

int pm_fill_ids(const struct pm_fds *m, unsigned int from, unsigned int to)
{
	char ip[64];
	int err = 0;

	for (unsigned int i = from; i < to && !err; i++) {
		snprintf(ip, sizeof(ip), "10.200.%u.%u", i / 250, 1 + i % 250);
		err = pm_put_id(m, ip, 10 + i % 7);
		snprintf(ip, sizeof(ip), "fd00:200::%x", i + 1);
		err = err ?: pm_put_id(m, ip, 10 + i % 7);
	}
	return err;
}

double pm_ns_per_packet(int prog, const struct pkt *p, struct pm_events *ev, int want, int total)
{
	const int batch = 2000;
	double ns = 0;
	int runs = 0;

	for (int done = 0; done < total; done += batch) {
		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = p->data, .data_size_in = (uint32_t)p->len,
			    .repeat = batch);

		if (!ASSERT_OK(bpf_prog_test_run_opts(prog, &o), "test_run repeat") ||
		    !ASSERT_EQ(o.retval, want, "verdict under repeat"))
			return -1;
		ns += o.duration;
		runs++;
		pm_events_drain(ev);
	}
	return runs ? ns / runs : -1;
}
