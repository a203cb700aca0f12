// SPDX-License-Identifier: Apache-2.0
/* polsync.c - see polsync.h. */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "log.h"
#include "loop.h"
#include "mapdump.h"
#include "polsync.h"

#define DENY_LOG_BURST		20	/* deny lines at once ... */
#define DENY_LOG_PER_S		10	/* ... then this many a second */

/* One map's shadow: sorted keys and their values. */
struct shadow {
	size_t key_size, val_size;
	unsigned char *keys, *vals;
	size_t n;
};

struct agent_count {
	uint32_t slot;
	uint64_t n;
};

enum { SH_ID, SH_EP, SH_RULE, SH_PORT, SH_RANGE, SH_COUNT };

struct polsync {
	struct polsync_maps maps;
	struct shadow sh[SH_COUNT];	/* ids, eps, rules, ports, ranges */
	int ncpu;
	const struct policy_registry *reg;
	struct loop *loop;
	struct ring_buffer *rb;
	struct loop_io rb_io;
	bool rb_added;
	struct agent_count *agent;	/* sorted by slot */
	size_t n_agent;
	double tokens;			/* deny log budget */
	uint64_t tokens_at_ms;
	uint64_t suppressed;
};


/* ---- rate-limited deny log ---- */

static bool log_budget(struct polsync *s)
{
	uint64_t now = loop_now_ms();

	s->tokens += (double)(now - s->tokens_at_ms) * DENY_LOG_PER_S / 1000.0;
	if (s->tokens > DENY_LOG_BURST)
		s->tokens = DENY_LOG_BURST;
	s->tokens_at_ms = now;
	if (s->tokens < 1) {
		s->suppressed++;
		return false;
	}
	s->tokens -= 1;
	if (s->suppressed) {
		pr_warn("policy: %llu deny log lines suppressed (rate limit %d/s)",
			(unsigned long long)s->suppressed, DENY_LOG_PER_S);
		s->suppressed = 0;
	}
	return true;
}

static const char *slot_name(const struct polsync *s, uint32_t slot)
{
	const struct policy_slot *ps = s->reg ? policy_registry_slot(s->reg, slot) : NULL;

	return ps ? ps->name : "(unknown rule)";
}

static const char *const hook_names[] = {
	[SL_HOOK_CONNECT] = "connect", [SL_HOOK_TC_INGRESS] = "tc ingress",
	[SL_HOOK_TC_EGRESS] = "tc egress", [SL_HOOK_XDP] = "xdp",
};

static int on_event(void *ctx, void *data, size_t len)
{
	struct polsync *s = ctx;
	const struct sl_polev *ev = data;
	struct sl_ip a = { 0 }, b = { 0 };
	char sa[SL_IP_STRLEN], da[SL_IP_STRLEN];
	bool v6 = ev->family == SL_AF_INET6;

	if (len < sizeof(*ev) || !log_budget(s))
		return 0;
	a.family = b.family = ev->family;
	a.addr = ev->saddr;
	b.addr = ev->daddr;
	pr_warn("policy: deny %s %s%s%s:%u -> %s%s%s:%u (%s, %s): %s", sl_proto_str(ev->proto), v6 ? "[" : "",
		sl_ip_str(&a, sa), v6 ? "]" : "", ntohs(ev->sport), v6 ? "[" : "", sl_ip_str(&b, da), v6 ? "]" : "",
		ntohs(ev->dport), ev->dir == SL_DIR_INGRESS ? "ingress" : "egress",
		ev->hook < sizeof(hook_names) / sizeof(hook_names[0]) && hook_names[ev->hook] ? hook_names[ev->hook] : "?",
		slot_name(s, ev->slot));
	return 0;
}

static void on_ring(struct loop_io *io, uint32_t events)
{
	struct polsync *s = io->arg;

	(void)events;
	ring_buffer__consume(s->rb);
}

/* ---- shadows ---- */

static int shadow_cmp_size;

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, (size_t)shadow_cmp_size);
}

/* Sort parallel arrays by key: through an index (entries are small). */
static int shadow_sort(struct shadow *sh)
{
	size_t rec = sh->key_size + sh->val_size;
	unsigned char *tmp = malloc(sh->n ? sh->n * rec : 1);

	if (!tmp)
		return -ENOMEM;
	for (size_t i = 0; i < sh->n; i++) {
		memcpy(tmp + i * rec, sh->keys + i * sh->key_size, sh->key_size);
		memcpy(tmp + i * rec + sh->key_size, sh->vals + i * sh->val_size, sh->val_size);
	}
	shadow_cmp_size = (int)sh->key_size;
	qsort(tmp, sh->n, rec, key_cmp);
	for (size_t i = 0; i < sh->n; i++) {
		memcpy(sh->keys + i * sh->key_size, tmp + i * rec, sh->key_size);
		memcpy(sh->vals + i * sh->val_size, tmp + i * rec + sh->key_size, sh->val_size);
	}
	free(tmp);
	return 0;
}

static int shadow_read(struct shadow *sh, int fd, size_t ks, size_t vs, uint32_t max)
{
	void *k, *v;
	int err;

	sh->key_size = ks;
	sh->val_size = vs;
	err = map_dump(fd, ks, vs, max, &k, &v, &sh->n);
	if (err)
		return err;
	sh->keys = k;
	sh->vals = v;
	return shadow_sort(sh);
}

static void shadow_free(struct shadow *sh)
{
	free(sh->keys);
	free(sh->vals);
	sh->keys = sh->vals = NULL;
	sh->n = 0;
}

/* Adds and changes of `want` over `have` (ins), or deletes (!ins). */
static void shadow_diff(int fd, const struct shadow *have, const void *wkeys, const void *wvals, size_t wn,
			bool ins, struct polsync_stats *st, int *first_err)
{
	const unsigned char *wk = wkeys, *wv = wvals;
	size_t ks = have->key_size, vs = have->val_size, i = 0, j = 0;

	while (i < have->n || j < wn) {
		int c = i >= have->n ? 1 : j >= wn ? -1 : memcmp(have->keys + i * ks, wk + j * ks, ks);
		int err = 0;

		if (c < 0) {		/* only in the maps */
			if (!ins) {
				err = bpf_map_delete_elem(fd, have->keys + i * ks);
				if (err == -ENOENT)
					err = 0;
				st->deletes++;
			}
			i++;
		} else if (c > 0) {	/* only wanted */
			if (ins) {
				err = bpf_map_update_elem(fd, wk + j * ks, wv + j * vs, BPF_ANY);
				st->updates++;
			}
			j++;
		} else {
			if (ins && memcmp(have->vals + i * vs, wv + j * vs, vs)) {
				err = bpf_map_update_elem(fd, wk + j * ks, wv + j * vs, BPF_ANY);
				st->updates++;
			}
			i++;
			j++;
		}
		if (err) {
			st->errors++;
			if (!*first_err)
				*first_err = err;
		}
	}
}

static int shadow_set(struct shadow *sh, const void *keys, const void *vals, size_t n)
{
	size_t kb = n * sh->key_size, vb = n * sh->val_size;
	unsigned char *k = malloc(kb ? kb : 1), *v = malloc(vb ? vb : 1);

	if (!k || !v) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	memcpy(k, keys, n * sh->key_size);
	memcpy(v, vals, n * sh->val_size);
	shadow_free(sh);
	sh->keys = k;
	sh->vals = v;
	sh->n = n;
	return 0;
}

/* The shadows as the kernel's maps hold them now. */
static int shadows_read(struct polsync *s)
{
	const struct polsync_maps *m = &s->maps;
	int err;

	err = shadow_read(&s->sh[SH_ID], m->id_fd, sizeof(struct sl_polid_key), sizeof(struct sl_polid_val),
			  SL_POLID_MAX);
	if (!err)
		err = shadow_read(&s->sh[SH_EP], m->ep_fd, sizeof(struct sl_polep_key),
				  sizeof(struct sl_polep_val), SL_POLEP_MAX);
	if (!err)
		err = shadow_read(&s->sh[SH_RULE], m->rule_fd, sizeof(struct sl_polrule_key),
				  sizeof(struct sl_polrule_val), SL_POLRULE_MAX);
	if (!err)
		err = shadow_read(&s->sh[SH_PORT], m->port_fd, sizeof(struct sl_polport_key),
				  sizeof(struct sl_polrule_val), SL_POLRULE_MAX);
	if (!err)
		err = shadow_read(&s->sh[SH_RANGE], m->range_fd, sizeof(struct sl_polrange_key),
				  sizeof(struct sl_polrange_val), SL_POLRANGE_MAX);
	return err;
}

/* Zero sl_polstat_v1 (a per-CPU array), whatever its size. A failure costs
 * only counts, so it is logged, not fatal. */
static void zero_counts(const struct polsync *s)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	int err;

	if (s->maps.stat_fd < 0)
		return;
	err = bpf_obj_get_info_by_fd(s->maps.stat_fd, &info, &len) ? -errno : 0;
	if (!err)
		err = map_zero(s->maps.stat_fd, info.max_entries,
			       (size_t)s->ncpu * ((info.value_size + 7) & ~7U));
	if (err)
		pr_warn("policy: cannot zero the counts a previous agent left: %s", strerror(-err));
}

int polsync_new(struct polsync **out, struct loop *loop, const struct polsync_maps *maps,
		const struct policy_registry *reg)
{
	struct polsync *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->maps = *maps;
	s->reg = reg;
	s->loop = loop;
	s->tokens = DENY_LOG_BURST;
	s->tokens_at_ms = loop_now_ms();
	s->ncpu = libbpf_num_possible_cpus();
	if (s->ncpu <= 0)
		s->ncpu = 1;
	err = shadows_read(s);
	/* Slot numbers are this agent's (its registry): counts a previous agent
	 * left in the pinned map would be read under other names. From 0. */
	if (!err)
		zero_counts(s);
	if (!err && maps->ev_fd >= 0 && loop) {
		s->rb = ring_buffer__new(maps->ev_fd, on_event, s, NULL);
		if (!s->rb)
			err = -errno ? -errno : -ENOMEM;
		if (!err)
			err = loop_add(loop, &s->rb_io, ring_buffer__epoll_fd(s->rb), EPOLLIN, on_ring, s);
		s->rb_added = !err;
	}
	if (err) {
		polsync_free(s);
		return err;
	}
	*out = s;
	return 0;
}

void polsync_free(struct polsync *s)
{
	if (!s)
		return;
	if (s->rb_added)
		loop_del(s->loop, &s->rb_io);
	ring_buffer__free(s->rb);
	for (int i = 0; i < SH_COUNT; i++)
		shadow_free(&s->sh[i]);
	free(s->agent);
	free(s);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

int polsync_apply(struct polsync *s, const struct policy_tables *t, struct polsync_stats *st)
{
	int err = 0, e2;
	struct timespec t0;

	memset(st, 0, sizeof(*st));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Allows before the identities and isolation that use them; removals after. */
	shadow_diff(s->maps.rule_fd, &s->sh[SH_RULE], t->rule_keys, t->rule_vals, t->n_rules, true, st, &err);
	shadow_diff(s->maps.port_fd, &s->sh[SH_PORT], t->port_keys, t->port_vals, t->n_ports, true, st, &err);
	shadow_diff(s->maps.range_fd, &s->sh[SH_RANGE], t->range_keys, t->range_vals, t->n_ranges, true, st, &err);
	shadow_diff(s->maps.id_fd, &s->sh[SH_ID], t->id_keys, t->id_vals, t->n_ids, true, st, &err);
	shadow_diff(s->maps.ep_fd, &s->sh[SH_EP], t->ep_keys, t->ep_vals, t->n_eps, true, st, &err);
	shadow_diff(s->maps.ep_fd, &s->sh[SH_EP], t->ep_keys, t->ep_vals, t->n_eps, false, st, &err);
	shadow_diff(s->maps.id_fd, &s->sh[SH_ID], t->id_keys, t->id_vals, t->n_ids, false, st, &err);
	shadow_diff(s->maps.range_fd, &s->sh[SH_RANGE], t->range_keys, t->range_vals, t->n_ranges, false, st, &err);
	shadow_diff(s->maps.port_fd, &s->sh[SH_PORT], t->port_keys, t->port_vals, t->n_ports, false, st, &err);
	shadow_diff(s->maps.rule_fd, &s->sh[SH_RULE], t->rule_keys, t->rule_vals, t->n_rules, false, st, &err);
	/* The shadow follows the kernel: after an error, read the maps back. */
	if (err) {
		for (int i = 0; i < SH_COUNT; i++)
			shadow_free(&s->sh[i]);
		shadows_read(s);	/* err stands, whatever this finds */
	} else {
		e2 = shadow_set(&s->sh[SH_RULE], t->rule_keys, t->rule_vals, t->n_rules);
		if (!e2)
			e2 = shadow_set(&s->sh[SH_ID], t->id_keys, t->id_vals, t->n_ids);
		if (!e2)
			e2 = shadow_set(&s->sh[SH_EP], t->ep_keys, t->ep_vals, t->n_eps);
		if (!e2)
			e2 = shadow_set(&s->sh[SH_PORT], t->port_keys, t->port_vals, t->n_ports);
		if (!e2)
			e2 = shadow_set(&s->sh[SH_RANGE], t->range_keys, t->range_vals, t->n_ranges);
		err = e2;
	}
	st->ms = ms_since(&t0);
	return err;
}

void polsync_counts(const struct polsync *s, size_t *ids, size_t *eps, size_t *rules)
{
	*ids = s->sh[SH_ID].n;
	*eps = s->sh[SH_EP].n;
	*rules = s->sh[SH_RULE].n;
}

static struct agent_count *agent_find(const struct polsync *s, uint32_t slot)
{
	for (size_t i = 0; i < s->n_agent; i++)
		if (s->agent[i].slot == slot)
			return &s->agent[i];
	return NULL;
}

uint64_t polsync_slot_count(const struct polsync *s, uint32_t slot)
{
	struct sl_polstat vals[256];
	const struct agent_count *a = agent_find(s, slot);
	uint64_t sum = a ? a->n : 0;

	if (s->ncpu <= 256 && !bpf_map_lookup_elem(s->maps.stat_fd, &slot, vals))
		for (int i = 0; i < s->ncpu; i++)
			sum += vals[i].packets;
	return sum;
}

void polsync_agent_count(struct polsync *s, uint32_t slot, bool deny, const char *what)
{
	struct agent_count *a = agent_find(s, slot);

	if (deny && log_budget(s))
		pr_warn("policy: deny %s: %s", what, slot_name(s, slot));
	if (!slot)
		return;
	if (!a) {
		struct agent_count *v = realloc(s->agent, (s->n_agent + 1) * sizeof(*v));

		if (!v)
			return;
		s->agent = v;
		a = &v[s->n_agent++];
		a->slot = slot;
		a->n = 0;
	}
	a->n++;
}

void polsync_log_deny(struct polsync *s, const char *what, const char *why)
{
	if (log_budget(s))
		pr_warn("policy: deny %s: %s", what, why);
}
