// SPDX-License-Identifier: Apache-2.0
/* sync.c - see sync.h.
 *
 * The shadow is an open-addressing table of frontends (key -> value + slots),
 * rebuilt on every apply from the model, with the previous table consulted for
 * the diff. Map writes go through an op queue flushed with the batch syscalls
 * (per element when a batch fails, to find the failing element).
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>

#include "log.h"
#include "mapdump.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524	/* the kernel's internal "operation not supported" */
#endif
#include "model.h"
#include "sync.h"

struct fe {
	struct sl_svc_key key;
	struct sl_svc_val val;
	struct sl_be_val *slots;	/* val.count entries */
	bool used;
	bool seen;			/* still in the model (during an apply) */
};

struct fe_table {
	struct fe *v;
	size_t cap;			/* power of two */
	size_t n;
};

struct sync {
	struct sync_maps maps;
	struct fe_table tab;
	uint32_t next_id;
};

/* ---- frontend table ---- */

static uint64_t key_hash(const struct sl_svc_key *k)
{
	const unsigned char *p = (const unsigned char *)k;
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

static int tab_init(struct fe_table *t, size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap *= 2;
	t->v = calloc(cap, sizeof(*t->v));
	if (!t->v)
		return -ENOMEM;
	t->cap = cap;
	t->n = 0;
	return 0;
}

static void tab_free(struct fe_table *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->v[i].slots);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static struct fe *tab_find(const struct fe_table *t, const struct sl_svc_key *k)
{
	if (!t->cap)
		return NULL;
	for (size_t i = key_hash(k) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		if (!t->v[i].used)
			return NULL;
		if (!memcmp(&t->v[i].key, k, sizeof(*k)))
			return &t->v[i];
	}
}

/* Insert (the table is sized for every insert up front; keys are unique). */
static struct fe *tab_insert(struct fe_table *t, const struct sl_svc_key *k)
{
	size_t i = key_hash(k) & (t->cap - 1);

	while (t->v[i].used)
		i = (i + 1) & (t->cap - 1);
	t->v[i].used = true;
	t->v[i].key = *k;
	t->n++;
	return &t->v[i];
}

/* ---- op queue ---- */

enum op_kind { OP_UPDATE, OP_DELETE };

struct op_queue {
	int fd;
	enum op_kind kind;
	size_t key_size, val_size;
	char *keys, *vals;
	size_t *owner;			/* index of the frontend each op belongs to */
	size_t n, cap;
	bool batch_ok;			/* the kernel takes batch ops on this map */
};

static int q_push(struct op_queue *q, const void *key, const void *val, size_t owner)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 1024;
		char *k = realloc(q->keys, cap * q->key_size);
		char *v = q->val_size ? realloc(q->vals, cap * q->val_size) : NULL;
		size_t *o = realloc(q->owner, cap * sizeof(*o));

		if (k)
			q->keys = k;
		if (v)
			q->vals = v;
		if (o)
			q->owner = o;
		if (!k || (q->val_size && !v) || !o)
			return -ENOMEM;
		q->cap = cap;
	}
	memcpy(q->keys + q->n * q->key_size, key, q->key_size);
	if (q->val_size)
		memcpy(q->vals + q->n * q->val_size, val, q->val_size);
	q->owner[q->n++] = owner;
	return 0;
}

static int q_one(struct op_queue *q, size_t i)
{
	int err;

	if (q->kind == OP_UPDATE)
		err = bpf_map_update_elem(q->fd, q->keys + i * q->key_size, q->vals + i * q->val_size, BPF_ANY);
	else
		err = bpf_map_delete_elem(q->fd, q->keys + i * q->key_size);
	if (err == -ENOENT && q->kind == OP_DELETE)
		err = 0;	/* already gone is what we wanted */
	return err;
}

/* Run the queued ops in order. failed[owner] is set for every op that fails.
 * Returns the first error or 0; *done counts successful ops. */
static int q_flush(struct op_queue *q, bool *failed, size_t *done, size_t *n_err)
{
	size_t i = 0;
	int first = 0;

	while (i < q->n) {
		if (q->batch_ok && q->n - i > 1) {
			__u32 cnt = (__u32)(q->n - i > 4096 ? 4096 : q->n - i);
			int err;

			LIBBPF_OPTS(bpf_map_batch_opts, o, .elem_flags = BPF_ANY);
			if (q->kind == OP_UPDATE)
				err = bpf_map_update_batch(q->fd, q->keys + i * q->key_size,
							   q->vals + i * q->val_size, &cnt, &o);
			else
				err = bpf_map_delete_batch(q->fd, q->keys + i * q->key_size, &cnt, &o);
			if (!err) {
				i += cnt;
				*done += cnt;
				continue;
			}
			if (err == -EINVAL || err == -EOPNOTSUPP || err == -ENOTSUPP)
				q->batch_ok = false;
			/* cnt ops went through; redo from the first failed one singly. */
			i += cnt;
			*done += cnt;
			if (i >= q->n)
				break;
		}
		int err = q_one(q, i);

		if (err) {
			if (!first)
				first = err;
			(*n_err)++;
			if (failed)
				failed[q->owner[i]] = true;
		} else {
			(*done)++;
		}
		i++;
	}
	q->n = 0;
	return first;
}

static void q_free(struct op_queue *q)
{
	free(q->keys);
	free(q->vals);
	free(q->owner);
}

/* ---- reading the maps back ---- */

struct id_count {
	uint32_t svc_id;
	uint32_t count;
};

static int id_count_cmp(const void *pa, const void *pb)
{
	const struct id_count *a = pa, *b = pb;

	return a->svc_id < b->svc_id ? -1 : a->svc_id > b->svc_id;
}

/* Every entry of a hash map, with the batch syscall where the kernel has it
 * (a few calls for 100k entries instead of 200k). keys and vals are malloc'ed. */
struct slot_entry {
	struct sl_be_key key;
	struct sl_be_val val;
};

static int slot_entry_cmp(const void *pa, const void *pb)
{
	const struct slot_entry *a = pa, *b = pb;

	if (a->key.svc_id != b->key.svc_id)
		return a->key.svc_id < b->key.svc_id ? -1 : 1;
	return a->key.slot < b->key.slot ? -1 : a->key.slot > b->key.slot;
}

static int read_maps(struct sync *s)
{
	struct op_queue del = { .fd = s->maps.be_fd, .kind = OP_DELETE,
				.key_size = sizeof(struct sl_be_key), .batch_ok = true };
	struct sl_svc_key *sk = NULL;
	struct sl_svc_val *sv = NULL;
	struct sl_be_key *bk = NULL;
	struct sl_be_val *bv = NULL;
	struct slot_entry *se = NULL;
	size_t n_svc = 0, n_be = 0, done = 0, n_err = 0, i;
	int err;

	err = map_dump(s->maps.svc_fd, sizeof(*sk), sizeof(*sv), s->maps.svc_max, (void **)&sk,
		       (void **)&sv, &n_svc);
	if (!err)
		err = map_dump(s->maps.be_fd, sizeof(*bk), sizeof(*bv), s->maps.be_max, (void **)&bk,
			       (void **)&bv, &n_be);
	if (!err)
		err = tab_init(&s->tab, n_svc);
	se = calloc(n_be ? n_be : 1, sizeof(*se));
	if (!err && !se)
		err = -ENOMEM;
	if (err)
		goto out;
	for (i = 0; i < n_be; i++)
		se[i] = (struct slot_entry){ bk[i], bv[i] };
	qsort(se, n_be, sizeof(*se), slot_entry_cmp);

	for (i = 0; i < n_svc; i++) {
		struct slot_entry probe = { .key = { .svc_id = sv[i].svc_id } };
		struct slot_entry *first;
		size_t lo = 0, hi = n_be;
		struct fe *f;

		if (tab_find(&s->tab, &sk[i]))
			continue;
		f = tab_insert(&s->tab, &sk[i]);
		f->val = sv[i];
		f->slots = calloc(sv[i].count ? sv[i].count : 1, sizeof(*f->slots));
		if (!f->slots) {
			err = -ENOMEM;
			goto out;
		}
		while (lo < hi) {	/* the first slot entry of this id */
			size_t mid = (lo + hi) / 2;

			if (slot_entry_cmp(&se[mid], &probe) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		first = &se[lo];
		for (uint32_t j = 0; j < sv[i].count; j++) {
			if (lo + j >= n_be || first[j].key.svc_id != sv[i].svc_id || first[j].key.slot != j) {
				/* A hole below count (never written by sync): shrink to it. */
				f->val.count = (uint16_t)j;
				bpf_map_update_elem(s->maps.svc_fd, &sk[i], &f->val, BPF_ANY);
				break;
			}
			f->slots[j] = first[j].val;
		}
		if (sv[i].svc_id >= s->next_id)
			s->next_id = sv[i].svc_id + 1;
	}
	/* Slots nobody can reach: of a removed frontend or above a count. */
	{
		struct id_count *ids = calloc(s->tab.n ? s->tab.n : 1, sizeof(*ids));
		size_t n_ids = 0;

		if (!ids) {
			err = -ENOMEM;
			goto out;
		}
		for (size_t t = 0; t < s->tab.cap; t++)
			if (s->tab.v[t].used)
				ids[n_ids++] = (struct id_count){ s->tab.v[t].val.svc_id, s->tab.v[t].val.count };
		qsort(ids, n_ids, sizeof(*ids), id_count_cmp);
		for (i = 0; i < n_be; i++) {
			struct id_count probe = { .svc_id = se[i].key.svc_id }, *ic;

			ic = bsearch(&probe, ids, n_ids, sizeof(*ids), id_count_cmp);
			if ((!ic || se[i].key.slot >= ic->count) && q_push(&del, &se[i].key, NULL, 0))
				break;
		}
		free(ids);
	}
	q_flush(&del, NULL, &done, &n_err);
	if (done)
		pr_info("sync: removed %zu unreachable backend slots left by an earlier agent", done);
out:
	q_free(&del);
	free(sk);
	free(sv);
	free(bk);
	free(bv);
	free(se);
	return err;
}

int sync_new(struct sync **out, const struct sync_maps *maps)
{
	struct sync *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	s->maps = *maps;
	s->next_id = 1;
	err = read_maps(s);
	if (err) {
		sync_free(s);
		return err;
	}
	*out = s;
	return 0;
}

void sync_free(struct sync *s)
{
	if (!s)
		return;
	tab_free(&s->tab);
	free(s);
}

/* ---- the diff ---- */

static int be_cmp(const void *pa, const void *pb)
{
	const struct sl_be_val *a = pa, *b = pb;

	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	int c = memcmp(&a->addr, &b->addr, sizeof(a->addr));

	return c ? c : (int)ntohs(a->port) - (int)ntohs(b->port);
}

static bool in_sorted(const struct sl_be_val *v, size_t n, const struct sl_be_val *x)
{
	return n && bsearch(x, v, n, sizeof(*v), be_cmp);
}

/* The new slot arrangement: backends that stay keep their slot, new ones fill
 * the holes of removed ones, then the tail moves into holes that remain, then
 * the rest of the new ones are appended. *out has n_want entries. */
static int arrange(const struct sl_be_val *cur, size_t n_cur, const struct sl_be_val *want,
		   size_t n_want, struct sl_be_val **out)
{
	struct sl_be_val *ws = malloc((n_want ? n_want : 1) * sizeof(*ws));
	struct sl_be_val *cs = malloc((n_cur ? n_cur : 1) * sizeof(*cs));
	struct sl_be_val *t = malloc((n_cur + n_want + 1) * sizeof(*t));
	bool *hole = calloc(n_cur + 1, sizeof(*hole));
	size_t n_t = n_cur, next_new = 0;
	int err = -ENOMEM;

	if (!ws || !cs || !t || !hole)
		goto out;
	memcpy(ws, want, n_want * sizeof(*ws));
	memcpy(cs, cur, n_cur * sizeof(*cs));
	qsort(ws, n_want, sizeof(*ws), be_cmp);
	qsort(cs, n_cur, sizeof(*cs), be_cmp);
	memcpy(t, cur, n_cur * sizeof(*t));
	for (size_t i = 0; i < n_cur; i++)
		hole[i] = !in_sorted(ws, n_want, &cur[i]);

	/* New backends, in the model's order, into holes first. */
	for (size_t i = 0; i < n_cur; i++) {
		if (!hole[i])
			continue;
		while (next_new < n_want && in_sorted(cs, n_cur, &want[next_new]))
			next_new++;
		if (next_new == n_want)
			break;
		t[i] = want[next_new++];
		hole[i] = false;
	}
	/* Holes left: move tail entries down into them. */
	for (size_t i = 0; i < n_t; i++) {
		if (!hole[i])
			continue;
		while (n_t > i + 1 && hole[n_t - 1])
			n_t--;
		if (n_t > i + 1) {
			t[i] = t[n_t - 1];
			hole[i] = false;
			n_t--;
		} else {
			n_t = i;
		}
	}
	/* The remaining new backends at the end. */
	for (; next_new < n_want; next_new++)
		if (!in_sorted(cs, n_cur, &want[next_new]))
			t[n_t++] = want[next_new];
	err = n_t == n_want ? 0 : -EINVAL;	/* duplicates in want: a model bug */
out:
	free(ws);
	free(cs);
	free(hole);
	if (err)
		free(t);
	else
		*out = t;
	return err;
}

struct plan {
	const struct sl_frontend *mf;
	struct fe *old;			/* in the previous table, or NULL */
	struct sl_svc_val val;
	struct sl_be_val *slots;	/* val.count */
};

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

int sync_check(const struct sync *s, const struct sl_model *m, struct diags *errs)
{
	(void)s;
	/* Say how many did not fit: nothing of the set is written, and the
	 * operator needs the size of the gap, not just that there is one. */
	if (m->n_frontends > s->maps.svc_max) {
		diags_add(errs, NULL, 0,
			  "sync: %zu Service frontends do not fit map sl_svc_v1 (%u entries): %zu too many "
			  "(raise --max-services)",
			  m->n_frontends, s->maps.svc_max, m->n_frontends - s->maps.svc_max);
		return -ENOSPC;
	}
	if (m->n_backends_total > s->maps.be_max) {
		diags_add(errs, NULL, 0,
			  "sync: %zu backend slots do not fit map sl_be_v1 (%u entries): %zu too many "
			  "(raise --max-services: %u slots per frontend)",
			  m->n_backends_total, s->maps.be_max, m->n_backends_total - s->maps.be_max,
			  (unsigned int)(SL_BE_MAX / SL_SVC_MAX));
		return -ENOSPC;
	}
	return 0;
}

/* One diff pass (see sync_apply); logs nothing. */
static int apply_once(struct sync *s, const struct sl_model *m, struct sync_stats *st)
{
	struct op_queue be_up = { .fd = s->maps.be_fd, .kind = OP_UPDATE, .batch_ok = true,
				  .key_size = sizeof(struct sl_be_key), .val_size = sizeof(struct sl_be_val) };
	struct op_queue be_del = { .fd = s->maps.be_fd, .kind = OP_DELETE, .batch_ok = true,
				   .key_size = sizeof(struct sl_be_key) };
	struct op_queue svc_up = { .fd = s->maps.svc_fd, .kind = OP_UPDATE, .batch_ok = true,
				   .key_size = sizeof(struct sl_svc_key), .val_size = sizeof(struct sl_svc_val) };
	struct op_queue svc_del = { .fd = s->maps.svc_fd, .kind = OP_DELETE, .batch_ok = true,
				    .key_size = sizeof(struct sl_svc_key) };
	size_t n = m->n_frontends, done = 0, n_err = 0;
	struct plan *plan = calloc(n ? n : 1, sizeof(*plan));
	bool *failed = calloc(n + 1, sizeof(*failed));	/* [n]: removed frontends */
	struct fe_table tab = { 0 };
	struct timespec t0;
	int err = 0, e;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	memset(st, 0, sizeof(*st));
	if (!plan || !failed || tab_init(&tab, n)) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < s->tab.cap; i++)
		s->tab.v[i].seen = false;

	/* Plan every frontend and queue its slot writes (phase 1). */
	for (size_t i = 0; i < n && !err; i++) {
		struct plan *p = &plan[i];
		const struct sl_frontend *f = &m->frontends[i];

		p->mf = f;
		p->old = tab_find(&s->tab, &f->key);
		if (p->old) {
			p->old->seen = true;
			p->val.svc_id = p->old->val.svc_id;
			err = arrange(p->old->slots, p->old->val.count, f->slots, f->n_slots, &p->slots);
		} else {
			p->val.svc_id = s->next_id++;
			p->slots = malloc((f->n_slots ? f->n_slots : 1) * sizeof(*p->slots));
			if (p->slots)
				memcpy(p->slots, f->slots, f->n_slots * sizeof(*p->slots));
			else
				err = -ENOMEM;
		}
		if (err)
			break;
		p->val.count = (uint16_t)f->n_slots;
		p->val.flags = f->flags;
		p->val.aff_timeout = f->aff_timeout;
		for (uint32_t j = 0; j < p->val.count && !err; j++) {
			struct sl_be_key k = { .svc_id = p->val.svc_id, .slot = j };

			if (p->old && j < p->old->val.count && !be_cmp(&p->old->slots[j], &p->slots[j]))
				continue;
			err = q_push(&be_up, &k, &p->slots[j], i);
		}
	}
	if (err)
		goto out;
	e = q_flush(&be_up, failed, &done, &n_err);
	err = err ? err : e;
	st->updates += done;
	done = 0;

	/* Phase 2: publish counts and flags of frontends whose slots are in place. */
	for (size_t i = 0; i < n; i++) {
		struct plan *p = &plan[i];

		if (failed[i] || (p->old && !memcmp(&p->old->val, &p->val, sizeof(p->val))))
			continue;
		if (q_push(&svc_up, &p->mf->key, &p->val, i))
			failed[i] = true;
	}
	e = q_flush(&svc_up, failed, &done, &n_err);
	err = err ? err : e;
	st->updates += done;
	done = 0;

	/* Phase 3: removed frontends first, then slots nobody can reach. */
	for (size_t i = 0; i < s->tab.cap; i++) {
		const struct fe *o = &s->tab.v[i];

		if (o->used && !o->seen && q_push(&svc_del, &o->key, NULL, n))
			failed[n] = true;
	}
	e = q_flush(&svc_del, failed, &done, &n_err);
	err = err ? err : e;
	st->deletes += done;
	done = 0;
	for (size_t i = 0; i < s->tab.cap; i++) {
		const struct fe *o = &s->tab.v[i];

		for (uint32_t j = 0; o->used && !o->seen && !failed[n] && j < o->val.count; j++) {
			struct sl_be_key k = { .svc_id = o->val.svc_id, .slot = j };

			q_push(&be_del, &k, NULL, n);
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct plan *p = &plan[i];
		uint32_t from = failed[i] ? (p->old ? p->old->val.count : 0) : p->val.count;
		uint32_t to = p->old ? p->old->val.count : 0;

		if (failed[i] && !p->old)
			to = p->val.count;	/* slots of a frontend never published */
		else if (failed[i])
			to = p->val.count > to ? p->val.count : to;
		for (uint32_t j = from; j < to; j++) {
			struct sl_be_key k = { .svc_id = p->val.svc_id, .slot = j };

			q_push(&be_del, &k, NULL, i);
		}
	}
	e = q_flush(&be_del, NULL, &done, &n_err);
	err = err ? err : e;
	st->deletes += done;

	/* The new shadow: what the kernel now holds. */
	for (size_t i = 0; i < n; i++) {
		struct plan *p = &plan[i];
		struct fe *f;

		if (failed[i] && !p->old)
			continue;
		f = tab_insert(&tab, &p->mf->key);
		if (failed[i]) {
			/* The kernel kept the old count and flags, but some slots below
			 * it may hold new backends now: read them back. */
			f->val = p->old->val;
			f->slots = p->old->slots;
			p->old->slots = NULL;
			for (uint32_t j = 0; j < f->val.count; j++) {
				struct sl_be_key k = { .svc_id = f->val.svc_id, .slot = j };

				bpf_map_lookup_elem(s->maps.be_fd, &k, &f->slots[j]);
			}
			free(p->slots);
		} else {
			f->val = p->val;
			f->slots = p->slots;
		}
		p->slots = NULL;
		st->backends += f->val.count;
	}
	if (failed[n]) {
		/* Frontends we could not delete stay in the shadow, as in the kernel. */
		for (size_t i = 0; i < s->tab.cap; i++) {
			struct fe *o = &s->tab.v[i], *f;

			if (!o->used || o->seen || tab_find(&tab, &o->key))
				continue;
			if (bpf_map_lookup_elem(s->maps.svc_fd, &o->key, &(struct sl_svc_val){ 0 }))
				continue;
			if (tab.n + 1 > tab.cap / 2)
				break;
			f = tab_insert(&tab, &o->key);
			f->val = o->val;
			f->slots = o->slots;
			o->slots = NULL;
			st->backends += f->val.count;
		}
	}
	tab_free(&s->tab);
	s->tab = tab;
	tab.v = NULL;
	st->frontends = s->tab.n;
	st->errors = n_err;
out:
	for (size_t i = 0; plan && i < n; i++)
		free(plan[i].slots);
	free(plan);
	free(failed);
	if (tab.v)
		tab_free(&tab);
	q_free(&be_up);
	q_free(&be_del);
	q_free(&svc_up);
	q_free(&svc_del);
	st->ms = ms_since(&t0);
	return err;
}

int sync_apply(struct sync *s, const struct sl_model *m, struct sync_stats *st)
{
	struct sync_stats again;
	int err = apply_once(s, m, st);

	/* A full map refuses a new entry (E2BIG) that only this pass's deletes,
	 * which come last, make room for: a VIP that moved, endpoints that moved
	 * between Services. The set fits (sync_check), so a second pass, diffing
	 * against what the kernel now holds, writes what was refused instead of
	 * leaving it out until the next change. */
	if (err == -E2BIG && st->deletes) {
		err = apply_once(s, m, &again);
		st->frontends = again.frontends;
		st->backends = again.backends;
		st->updates += again.updates;
		st->deletes += again.deletes;
		st->errors = again.errors;
		st->ms += again.ms;
	}
	if (err)
		pr_err("sync: %zu map operations failed: %s", st->errors, strerror(-err));
	return err;
}

uint32_t sync_svc_id(const struct sync *s, const struct sl_svc_key *k)
{
	const struct fe *f = tab_find(&s->tab, k);

	return f ? f->val.svc_id : 0;
}

size_t sync_n_frontends(const struct sync *s)
{
	return s->tab.n;
}
