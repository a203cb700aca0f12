/* SPDX-License-Identifier: Apache-2.0 */
/* buf.h - a linear byte buffer (after haproxy's struct buffer, without the
 * wrapping): bytes live in area[head, head + data); free room is at the tail.
 * An all-zero struct buf is a valid empty buffer with no storage (BUF_NULL),
 * so owners allocate storage only when bytes arrive and give it back when the
 * buffer drains.
 *
 *   area                head           head + data          size
 *   |----- consumed ------|=== data ====|------ room ---------|
 *
 * Header-only; nothing here allocates: owners set area/size.
 */
#ifndef SL_BUF_H
#define SL_BUF_H

#include <stddef.h>
#include <string.h>

struct buf {
	char *area;
	size_t size;			/* bytes at area */
	size_t head;			/* offset of the first byte of data */
	size_t data;			/* bytes of data */
};

#define BUF_NULL ((struct buf){ 0 })

static inline char *buf_head(const struct buf *b)
{
	return b->area + b->head;
}

static inline char *buf_tail(const struct buf *b)
{
	return b->area + b->head + b->data;
}

/* Room at the tail, after moving data to the front when the consumed part
 * is larger than the room left (so copies stay rare and small). */
static inline size_t buf_room(struct buf *b)
{
	if (b->head && b->size - b->head - b->data < b->head) {
		memmove(b->area, b->area + b->head, b->data);
		b->head = 0;
	}
	return b->size - b->head - b->data;
}

static inline void buf_add(struct buf *b, size_t n)	/* n bytes written at the tail */
{
	b->data += n;
}

static inline void buf_del(struct buf *b, size_t n)	/* n bytes taken from the head */
{
	b->data -= n;
	b->head = b->data ? b->head + n : 0;
}

/* Append up to n bytes; returns how many fitted. All the free bytes count:
 * the data moves to the front when the tail alone is short of n (callers
 * that bound what they put by a window, as HTTP/2's, rely on it). */
static inline size_t buf_put(struct buf *b, const void *p, size_t n)
{
	size_t room = buf_room(b);

	if (room < n && b->head) {
		memmove(b->area, b->area + b->head, b->data);
		b->head = 0;
		room = b->size - b->data;
	}

	if (n > room)
		n = room;
	if (n)
		memcpy(buf_tail(b), p, n);
	b->data += n;
	return n;
}

#endif
