// SPDX-License-Identifier: Apache-2.0
/* loop.c - see loop.h. Timers live in a binary min-heap of pointers. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

struct loop {
	int epfd;
	bool stop;
	struct loop_timer **heap;
	int n_timers, cap_timers;
};

uint64_t loop_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int loop_new(struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd == -1) {
		int err = -errno;

		free(l);
		return err;
	}
	*out = l;
	return 0;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	close(l->epfd);
	free(l->heap);
	free(l);
}

int loop_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb, void *arg)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	io->fd = fd;
	io->events = events;
	io->cb = cb;
	io->arg = arg;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		return -errno;
	return 0;
}

int loop_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	if (io->events == events)
		return 0;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) == -1)
		return -errno;
	io->events = events;
	return 0;
}

int loop_del(struct loop *l, struct loop_io *io)
{
	if (io->fd < 0)
		return 0;
	if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL) == -1)
		return -errno;
	io->fd = -1;
	return 0;
}

static void heap_swap(struct loop *l, int a, int b)
{
	struct loop_timer *t = l->heap[a];

	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a;
	l->heap[b]->heap_idx = b;
}

static void heap_up(struct loop *l, int i)
{
	while (i > 0 && l->heap[(i - 1) / 2]->due_ms > l->heap[i]->due_ms) {
		heap_swap(l, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void heap_down(struct loop *l, int i)
{
	for (;;) {
		int c = 2 * i + 1, m = i;

		if (c < l->n_timers && l->heap[c]->due_ms < l->heap[m]->due_ms)
			m = c;
		if (c + 1 < l->n_timers && l->heap[c + 1]->due_ms < l->heap[m]->due_ms)
			m = c + 1;
		if (m == i)
			return;
		heap_swap(l, i, m);
		i = m;
	}
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg)
{
	t->due_ms = 0;
	t->heap_idx = -1;
	t->cb = cb;
	t->arg = arg;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	int i = t->heap_idx;

	if (i < 0)
		return;
	l->n_timers--;
	if (i != l->n_timers) {
		heap_swap(l, i, l->n_timers);
		heap_down(l, i);
		heap_up(l, i);
	}
	t->heap_idx = -1;
}

int loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t ms)
{
	loop_timer_cancel(l, t);
	if (l->n_timers == l->cap_timers) {
		int cap = l->cap_timers ? l->cap_timers * 2 : 64;
		struct loop_timer **h = realloc(l->heap, (size_t)cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		l->heap = h;
		l->cap_timers = cap;
	}
	t->due_ms = loop_now_ms() + ms;
	t->heap_idx = l->n_timers;
	l->heap[l->n_timers++] = t;
	heap_up(l, t->heap_idx);
	return 0;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}

static int next_timeout(struct loop *l)
{
	uint64_t now;

	if (!l->n_timers)
		return -1;
	now = loop_now_ms();
	if (l->heap[0]->due_ms <= now)
		return 0;
	return (int)(l->heap[0]->due_ms - now);
}

static void run_timers(struct loop *l)
{
	uint64_t now = loop_now_ms();

	while (l->n_timers && l->heap[0]->due_ms <= now) {
		struct loop_timer *t = l->heap[0];

		loop_timer_cancel(l, t);
		t->cb(t);
	}
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[64];

	l->stop = false;
	while (!l->stop) {
		int n = epoll_wait(l->epfd, evs, 64, next_timeout(l));

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n && !l->stop; i++) {
			struct loop_io *io = evs[i].data.ptr;

			/* An earlier callback in this batch may have deleted io (fd
			 * set to -1). Objects are freed only by their own callback,
			 * or after the batch (deferred), never another's mid-batch. */
			if (io->fd >= 0)
				io->cb(io, evs[i].events);
		}
		run_timers(l);
	}
	return 0;
}
