// SPDX-License-Identifier: Apache-2.0
/* mapdump.c - see mapdump.h. */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mapdump.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524	/* the kernel's internal "operation not supported" */
#endif

int map_dump(int fd, size_t key_size, size_t val_size, uint32_t max, void **keys, void **vals,
		    size_t *n)
{
	size_t cap = max ? max : 1, got = 0;
	char *k = malloc(cap * key_size), *v = malloc(cap * val_size);
	__u64 in = 0, outb = 0;
	void *inp = NULL;
	int err = 0;

	*keys = *vals = NULL;
	*n = 0;
	if (!k || !v) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	for (;;) {
		__u32 cnt = (__u32)(cap - got > 8192 ? 8192 : cap - got);

		if (!cnt)
			break;
		LIBBPF_OPTS(bpf_map_batch_opts, o);
		err = bpf_map_lookup_batch(fd, inp, &outb, k + got * key_size, v + got * val_size, &cnt, &o);
		got += cnt;
		if (err == -ENOENT) {
			err = 0;	/* the end */
			break;
		}
		if (err)
			break;
		in = outb;
		inp = &in;
	}
	if (err == -EINVAL || err == -EOPNOTSUPP || err == -ENOTSUPP) {
		/* No batch ops: walk the keys. */
		char *prev = NULL, *next = malloc(key_size);

		err = next ? 0 : -ENOMEM;
		got = 0;
		while (!err && got < cap && !bpf_map_get_next_key(fd, prev, next)) {
			memcpy(k + got * key_size, next, key_size);
			prev = k + got * key_size;
			if (!bpf_map_lookup_elem(fd, prev, v + got * val_size))
				got++;
		}
		free(next);
	}
	if (err) {
		free(k);
		free(v);
		return err;
	}
	*keys = k;
	*vals = v;
	*n = got;
	return 0;
}


int map_clear(int fd, size_t key_size)
{
	char key[256];

	if (key_size > sizeof(key))
		return -E2BIG;
	/* Always the first key: the one just deleted has no successor to ask for. */
	while (!bpf_map_get_next_key(fd, NULL, key))
		if (bpf_map_delete_elem(fd, key))
			return -errno;
	return 0;
}

int map_zero(int fd, uint32_t max, size_t val_size)
{
	enum { CHUNK = 1024 };
	uint32_t keys[CHUNK];
	char *zero = calloc(CHUNK, val_size);
	int err = zero ? 0 : -ENOMEM;

	for (uint32_t at = 0; !err && at < max; at += CHUNK) {
		const __u32 n = max - at < CHUNK ? max - at : CHUNK;
		__u32 cnt = n;	/* the batch call overwrites it */

		for (__u32 i = 0; i < n; i++)
			keys[i] = at + i;
		LIBBPF_OPTS(bpf_map_batch_opts, o);
		err = bpf_map_update_batch(fd, keys, zero, &cnt, &o);
		if (err == -EINVAL || err == -EOPNOTSUPP || err == -ENOTSUPP) {
			/* No batch ops: key by key. */
			err = 0;
			for (__u32 i = 0; !err && i < n; i++)
				err = bpf_map_update_elem(fd, &keys[i], zero, BPF_ANY) ? -errno : 0;
		}
	}
	free(zero);
	return err;
}
