// SPDX-License-Identifier: Apache-2.0
/* test_sync.c - the model -> map diff, against real (unpinned) kernel maps of
 * the ABI's key and value sizes. */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sluice/abi.h>

#include "lib/test.h"
#include "log.h"
#include "model.h"
#include "sync.h"

struct maps {
	int svc, be;
	struct sync_maps sm;
};

static bool maps_new(struct maps *m, uint32_t svc_max, uint32_t be_max)
{
	LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = BPF_F_NO_PREALLOC);

	m->svc = m->be = -1;
	if (!test_need_root())
		return false;
	m->svc = bpf_map_create(BPF_MAP_TYPE_HASH, "t_svc", sizeof(struct sl_svc_key),
				sizeof(struct sl_svc_val), svc_max, &o);
	m->be = bpf_map_create(BPF_MAP_TYPE_HASH, "t_be", sizeof(struct sl_be_key), sizeof(struct sl_be_val),
			       be_max, &o);
	m->sm = (struct sync_maps){ .svc_fd = m->svc, .be_fd = m->be, .svc_max = svc_max, .be_max = be_max };
	log_set_level(LOG_ERR);
	return ASSERT_GE(m->svc, 0, "svc map") && ASSERT_GE(m->be, 0, "be map");
}

static void maps_free(struct maps *m)
{
	if (m->svc >= 0)
		close(m->svc);
	if (m->be >= 0)
		close(m->be);
}

/* A model with frontends built by hand: what sync reads of a model. */
struct fmodel {
	struct sl_model m;
	struct sl_frontend f[8];
	struct sl_be_val slots[8][64];
};

static void fm_init(struct fmodel *fm)
{
	memset(fm, 0, sizeof(*fm));
	fm->m.frontends = fm->f;
}

static struct sl_frontend *fm_add(struct fmodel *fm, uint32_t vip_last, uint16_t port)
{
	struct sl_frontend *f = &fm->f[fm->m.n_frontends];

	f->key.vip.v4 = htonl(0x0a600000 | vip_last);
	f->key.port = htons(port);
	f->key.proto = SL_IPPROTO_TCP;
	f->key.family = SL_AF_INET;
	f->slots = fm->slots[fm->m.n_frontends];
	fm->m.n_frontends++;
	return f;
}

static void fe_set(struct fmodel *fm, struct sl_frontend *f, const int *be, size_t n)
{
	f->n_slots = n;
	for (size_t i = 0; i < n; i++)
		f->slots[i] = (struct sl_be_val){ .addr.v4 = htonl(0x0af40000 | (uint32_t)be[i]),
						  .port = htons(8080), .family = SL_AF_INET };
	fm->m.n_backends_total = 0;
	for (size_t i = 0; i < fm->m.n_frontends; i++)
		fm->m.n_backends_total += fm->f[i].n_slots;
}

static size_t count_keys(int fd, size_t key_size)
{
	char k[64], next[64];
	void *prev = NULL;
	size_t n = 0;

	while (!bpf_map_get_next_key(fd, prev, next)) {
		memcpy(k, next, key_size);
		prev = k;
		n++;
	}
	return n;
}

/* The backend number (low 16 bits) in slot i of frontend f, -1 if absent. */
static int slot_be(struct maps *mp, const struct sl_frontend *f, uint32_t i)
{
	struct sl_svc_val v;
	struct sl_be_key k;
	struct sl_be_val b;

	if (bpf_map_lookup_elem(mp->svc, &f->key, &v))
		return -1;
	k = (struct sl_be_key){ .svc_id = v.svc_id, .slot = i };
	if (bpf_map_lookup_elem(mp->be, &k, &b))
		return -1;
	return (int)(ntohl(b.addr.v4) & 0xffff);
}

static int svc_count(struct maps *mp, const struct sl_frontend *f)
{
	struct sl_svc_val v;

	return bpf_map_lookup_elem(mp->svc, &f->key, &v) ? -1 : v.count;
}

void test_sync_apply_from_empty(void)
{
	struct maps mp;
	struct fmodel *fm = calloc(1, sizeof(*fm));
	struct sync *s = NULL;
	struct sync_stats st;
	struct sl_frontend *a, *b;

	if (!maps_new(&mp, 64, 256))
		goto out;
	fm_init(fm);
	a = fm_add(fm, 1, 80);
	b = fm_add(fm, 2, 443);
	fe_set(fm, a, (int[]){ 1, 2, 3 }, 3);
	fe_set(fm, b, (int[]){ 4 }, 1);
	if (!ASSERT_OK(sync_new(&s, &mp.sm), "sync_new"))
		goto out;
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply");
	ASSERT_EQ(st.frontends, 2, "frontends");
	ASSERT_EQ(st.backends, 4, "backends");
	ASSERT_EQ(st.updates, 6, "4 slots + 2 frontends written");
	ASSERT_EQ(count_keys(mp.svc, sizeof(struct sl_svc_key)), 2, "2 svc entries");
	ASSERT_EQ(count_keys(mp.be, sizeof(struct sl_be_key)), 4, "4 be entries");
	ASSERT_EQ(svc_count(&mp, a), 3, "count of a");
	ASSERT_EQ(slot_be(&mp, a, 2), 3, "a slot 2");
	ASSERT_NEQ(sync_svc_id(s, &a->key), sync_svc_id(s, &b->key), "distinct ids");
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply again");
	ASSERT_EQ(st.updates + st.deletes, 0, "nothing to do the second time");
out:
	sync_free(s);
	maps_free(&mp);
	free(fm);
}

/* Backends that stay keep their slot; new ones take the holes; the tail moves. */
void test_sync_backends_keep_slots(void)
{
	struct maps mp;
	struct fmodel *fm = calloc(1, sizeof(*fm));
	struct sync *s = NULL;
	struct sync_stats st;
	struct sl_frontend *a;

	if (!maps_new(&mp, 64, 256))
		goto out;
	fm_init(fm);
	a = fm_add(fm, 1, 80);
	fe_set(fm, a, (int[]){ 1, 2, 3, 4, 5 }, 5);
	if (!ASSERT_OK(sync_new(&s, &mp.sm), "sync_new") || !ASSERT_OK(sync_apply(s, &fm->m, &st), "apply"))
		goto out;
	/* Remove 2, add 9: 9 takes slot 1; others unchanged. */
	fe_set(fm, a, (int[]){ 1, 3, 4, 5, 9 }, 5);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply replace");
	ASSERT_EQ(st.updates, 1, "one slot rewritten, count unchanged");
	ASSERT_EQ(st.deletes, 0, "nothing deleted");
	ASSERT_EQ(slot_be(&mp, a, 0), 1, "slot 0 kept");
	ASSERT_EQ(slot_be(&mp, a, 1), 9, "new backend in the hole");
	ASSERT_EQ(slot_be(&mp, a, 4), 5, "slot 4 kept");
	/* Remove 1 and 4: the tail (5) moves into a hole, count 3, two slots deleted. */
	fe_set(fm, a, (int[]){ 3, 5, 9 }, 3);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply shrink");
	ASSERT_EQ(svc_count(&mp, a), 3, "count 3");
	ASSERT_EQ(count_keys(mp.be, sizeof(struct sl_be_key)), 3, "3 slots left");
	ASSERT_EQ(slot_be(&mp, a, 1), 9, "9 stays in slot 1");
	ASSERT_EQ(slot_be(&mp, a, 2), 3, "3 stays in slot 2");
	ASSERT_EQ(slot_be(&mp, a, 0), 5, "5 moved from the tail into slot 0");
	/* Grow: appended. */
	fe_set(fm, a, (int[]){ 3, 5, 9, 10, 11 }, 5);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply grow");
	ASSERT_EQ(st.updates, 3, "two slots and the count");
	ASSERT_EQ(svc_count(&mp, a), 5, "count 5");
	/* No endpoints: the frontend stays with count 0 (refuse). */
	fe_set(fm, a, NULL, 0);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply empty");
	ASSERT_EQ(svc_count(&mp, a), 0, "count 0 refuses");
	ASSERT_EQ(count_keys(mp.be, sizeof(struct sl_be_key)), 0, "no slots");
out:
	sync_free(s);
	maps_free(&mp);
	free(fm);
}

void test_sync_frontend_removed(void)
{
	struct maps mp;
	struct fmodel *fm = calloc(1, sizeof(*fm));
	struct sync *s = NULL;
	struct sync_stats st;
	struct sl_frontend *a, *b;

	if (!maps_new(&mp, 64, 256))
		goto out;
	fm_init(fm);
	a = fm_add(fm, 1, 80);
	b = fm_add(fm, 2, 80);
	fe_set(fm, a, (int[]){ 1, 2 }, 2);
	fe_set(fm, b, (int[]){ 3, 4 }, 2);
	if (!ASSERT_OK(sync_new(&s, &mp.sm), "sync_new") || !ASSERT_OK(sync_apply(s, &fm->m, &st), "apply"))
		goto out;
	uint32_t id_b = sync_svc_id(s, &b->key);
	fm->m.n_frontends = 1;	/* b is gone */
	fe_set(fm, a, (int[]){ 1, 2 }, 2);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply");
	ASSERT_EQ(st.deletes, 3, "frontend and its 2 slots deleted");
	ASSERT_EQ(count_keys(mp.svc, sizeof(struct sl_svc_key)), 1, "one frontend left");
	ASSERT_EQ(count_keys(mp.be, sizeof(struct sl_be_key)), 2, "its two slots left");
	/* It comes back: a new id (ids are not reused while the agent runs). */
	fm->m.n_frontends = 2;
	fe_set(fm, b, (int[]){ 3 }, 1);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply");
	ASSERT_NEQ(sync_svc_id(s, &b->key), id_b, "fresh id");
out:
	sync_free(s);
	maps_free(&mp);
	free(fm);
}

/* A restarted agent reads the maps back: same ids, nothing rewritten, and slots
 * nobody can reach (an interrupted apply) are removed. */
void test_sync_restart_reads_back(void)
{
	struct maps mp;
	struct fmodel *fm = calloc(1, sizeof(*fm));
	struct sync *s = NULL;
	struct sync_stats st;
	struct sl_frontend *a;
	uint32_t id;

	if (!maps_new(&mp, 64, 256))
		goto out;
	fm_init(fm);
	a = fm_add(fm, 1, 80);
	fe_set(fm, a, (int[]){ 1, 2, 3 }, 3);
	if (!ASSERT_OK(sync_new(&s, &mp.sm), "sync_new") || !ASSERT_OK(sync_apply(s, &fm->m, &st), "apply"))
		goto out;
	id = sync_svc_id(s, &a->key);
	sync_free(s);
	s = NULL;
	/* Leftovers: a slot above the count, and a slot of an unknown id. */
	struct sl_be_key k1 = { id, 7 }, k2 = { 999, 0 };
	struct sl_be_val bv = { .family = SL_AF_INET };
	bpf_map_update_elem(mp.be, &k1, &bv, BPF_ANY);
	bpf_map_update_elem(mp.be, &k2, &bv, BPF_ANY);
	if (!ASSERT_OK(sync_new(&s, &mp.sm), "sync_new after restart"))
		goto out;
	ASSERT_EQ(count_keys(mp.be, sizeof(struct sl_be_key)), 3, "unreachable slots removed");
	ASSERT_EQ(sync_svc_id(s, &a->key), id, "same id");
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply the same model");
	ASSERT_EQ(st.updates + st.deletes, 0, "nothing rewritten");
	/* A new frontend gets an id above every id seen. */
	struct sl_frontend *b = fm_add(fm, 2, 80);
	fe_set(fm, b, (int[]){ 5 }, 1);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply with a new frontend");
	ASSERT_GE(sync_svc_id(s, &b->key), id + 1, "id above the old ones");
out:
	sync_free(s);
	maps_free(&mp);
	free(fm);
}

/* A full map is an error that names the map; what fit is published consistently. */
void test_sync_map_full(void)
{
	struct maps mp;
	struct fmodel *fm = calloc(1, sizeof(*fm));
	struct sync *s = NULL;
	struct sync_stats st;
	struct diags errs = { 0 };
	struct sl_frontend *a, *b;
	int big[40];

	for (int i = 0; i < 40; i++)
		big[i] = i + 1;
	if (!maps_new(&mp, 8, 32))
		goto out;
	fm_init(fm);
	a = fm_add(fm, 1, 80);
	b = fm_add(fm, 2, 80);
	fe_set(fm, a, big, 10);
	fe_set(fm, b, big + 10, 30);
	if (!ASSERT_OK(sync_new(&s, &mp.sm), "sync_new"))
		goto out;
	ASSERT_EQ(sync_check(s, &fm->m, &errs), -ENOSPC, "check says it does not fit");
	if (ASSERT_EQ(errs.n, 1, "one problem"))
		ASSERT_HAS(errs.v[0].msg, "sl_be_v1", "names the map");
	ASSERT_ERR(sync_apply(s, &fm->m, &st), "apply reports the failure");
	ASSERT_GE(st.errors, 1, "failed operations counted");
	/* Whatever frontend made it is whole: its count matches its slots. */
	for (int i = 0; i < 2; i++) {
		int c = svc_count(&mp, &fm->f[i]);

		for (int j = 0; j < c; j++)
			ASSERT_GE(slot_be(&mp, &fm->f[i], (uint32_t)j), 1, "published slot exists");
	}
	ASSERT_EQ(svc_count(&mp, b), -1, "the frontend that did not fit is not published");
	/* Shrink back: everything fits and the maps converge. */
	fe_set(fm, b, big + 10, 5);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "apply after shrinking");
	ASSERT_EQ(svc_count(&mp, b), 5, "b published");
	ASSERT_EQ(count_keys(mp.be, sizeof(struct sl_be_key)), 15, "exactly the slots in use");
out:
	diags_clear(&errs);
	sync_free(s);
	maps_free(&mp);
	free(fm);
}

/* At capacity, a frontend that moves (a new VIP replaces an old one) or slots
 * that move between frontends fit once the old ones are gone: the apply makes
 * room and writes them, rather than leaving them out with E2BIG. */
void test_sync_full_map_moves(void)
{
	struct maps mp;
	struct fmodel *fm = calloc(1, sizeof(*fm));
	struct sync *s = NULL;
	struct sync_stats st;
	struct sl_frontend *a, *b;

	if (!maps_new(&mp, 2, 6))
		goto out;
	fm_init(fm);
	a = fm_add(fm, 1, 80);
	b = fm_add(fm, 2, 80);
	fe_set(fm, a, (int[]){ 1, 2, 3 }, 3);
	fe_set(fm, b, (int[]){ 4, 5, 6 }, 3);
	if (!ASSERT_OK(sync_new(&s, &mp.sm), "sync_new"))
		goto out;
	ASSERT_OK(sync_apply(s, &fm->m, &st), "fill both maps");
	/* b moves to another VIP: its new frontend and slots need b's room. */
	b->key.vip.v4 = htonl(0x0a600000 | 3);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "a moved VIP fits a full map");
	ASSERT_EQ(st.errors, 0, "no failed operation left");
	ASSERT_EQ(svc_count(&mp, b), 3, "the new VIP is published");
	ASSERT_EQ(slot_be(&mp, b, 2), 6, "with its slots");
	ASSERT_EQ(count_keys(mp.svc, sizeof(struct sl_svc_key)), 2, "the old VIP is gone");
	/* Two slots move from b to a: a grows before b shrinks. */
	fe_set(fm, a, (int[]){ 1, 2, 3, 4, 5 }, 5);
	fe_set(fm, b, (int[]){ 6 }, 1);
	ASSERT_OK(sync_apply(s, &fm->m, &st), "slots moving between frontends fit");
	ASSERT_EQ(svc_count(&mp, a), 5, "a has 5");
	ASSERT_EQ(slot_be(&mp, a, 4), 5, "a's last slot");
	ASSERT_EQ(svc_count(&mp, b), 1, "b has 1");
	ASSERT_EQ(count_keys(mp.be, sizeof(struct sl_be_key)), 6, "exactly the slots in use");
out:
	sync_free(s);
	maps_free(&mp);
	free(fm);
}
