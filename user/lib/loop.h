/* SPDX-License-Identifier: Apache-2.0 */
/* loop.h - one epoll event loop: fd callbacks and one-shot timers.
 *
 * Callers embed a struct loop_io / struct loop_timer in their own objects, so
 * the loop allocates nothing per connection. A callback may delete its own io
 * or timer (and free the object around it) before returning.
 */
#ifndef SL_LOOP_H
#define SL_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;

typedef void (*loop_io_cb)(struct loop_io *io, uint32_t events);
typedef void (*loop_timer_cb)(struct loop_timer *t);

struct loop_io {
	int fd;
	uint32_t events;	/* EPOLLIN | EPOLLOUT ... as registered */
	loop_io_cb cb;
	void *arg;
};

struct loop_timer {
	uint64_t due_ms;	/* CLOCK_MONOTONIC, ms */
	int heap_idx;		/* -1 when not armed */
	loop_timer_cb cb;
	void *arg;
};

int loop_new(struct loop **out);
void loop_free(struct loop *l);			/* NULL-safe; does not close fds */

/* Watch io->fd for events; io must stay valid until loop_del(). */
int loop_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb, void *arg);
int loop_mod(struct loop *l, struct loop_io *io, uint32_t events);
int loop_del(struct loop *l, struct loop_io *io);	/* before close(fd) */

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg);
/* (Re)arm t to fire once after ms milliseconds. */
int loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t ms);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
	return t->heap_idx >= 0;
}

/* Run until loop_stop(); returns 0, or -errno if epoll fails. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);
uint64_t loop_now_ms(void);

#endif
