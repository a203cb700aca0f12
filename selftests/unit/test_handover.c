// SPDX-License-Identifier: Apache-2.0
/* test_handover.c - user/handover.c with real sockets: an "old agent" (a loop
 * in a thread serving the handover socket) and a "new agent" (this thread)
 * in one process; the registries are separate (offered / inherited), so the
 * fds really cross by SCM_RIGHTS. Also what a bad or vanishing successor does
 * to the old agent: it thaws. Every socket has 5 s timeouts (handover.c's),
 * and waits are bounded loops, never bare sleeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/test.h"
#include "handover.h"
#include "loop.h"

struct old_agent {
	struct loop *loop;
	struct handover *h;
	struct loop_io stop_io;
	int stop_fd;
	pthread_t thr;
	char path[PATH_MAX];
	/* what the ops saw */
	int n_freeze, n_handed_over, n_abort;
	pid_t successor;
	/* handed_over sends this relay */
	int relay[2];			/* our ends; the peer ends go */
	int peer[2];
	char *held0;
	size_t held0_len;
};

static void old_freeze(void *arg, pid_t successor)
{
	struct old_agent *o = arg;

	o->n_freeze++;
	o->successor = successor;
}

static void old_handed_over(void *arg, pid_t successor)
{
	struct old_agent *o = arg;
	const struct iovec data[2] = { { o->held0, o->held0_len }, { (void *)"back", 4 } };

	o->n_handed_over++;
	if (o->peer[0] >= 0 &&
	    !handover_send_relay(o->h, "{\"v\":1,\"what\":\"a relay\"}", o->peer, data)) {
		close(o->peer[0]);	/* our copies: the successor holds them */
		close(o->peer[1]);
		o->peer[0] = o->peer[1] = -1;
	}
	handover_stop(o->h);
}

static void old_abort(void *arg, pid_t successor, const char *why)
{
	struct old_agent *o = arg;

	o->n_abort++;
}

static const struct handover_ops old_ops = {
	.freeze = old_freeze,
	.handed_over = old_handed_over,
	.abort = old_abort,
};

static void stop_cb(struct loop_io *io, uint32_t events)
{
	struct old_agent *o = io->arg;
	uint64_t v;

	if (read(io->fd, &v, sizeof(v)) > 0)
		loop_stop(o->loop);
}

static void *old_thread(void *arg)
{
	loop_run(((struct old_agent *)arg)->loop);
	return NULL;
}

static bool old_start(struct old_agent *o)
{
	memset(o, 0, sizeof(*o));
	o->stop_fd = -1;
	o->relay[0] = o->relay[1] = o->peer[0] = o->peer[1] = -1;
	snprintf(o->path, sizeof(o->path), "%s/agent.sock.handover", test_tmpdir());
	if (!ASSERT_OK(loop_new(&o->loop), "loop_new") ||
	    !ASSERT_OK(handover_serve(&o->h, o->loop, o->path, &old_ops, o), "handover_serve"))
		return false;
	o->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!ASSERT_OK(loop_add(o->loop, &o->stop_io, o->stop_fd, EPOLLIN, stop_cb, o), "loop_add"))
		return false;
	return ASSERT_OK(pthread_create(&o->thr, NULL, old_thread, o), "pthread_create");
}

static void old_stop(struct old_agent *o)
{
	uint64_t one = 1;

	if (write(o->stop_fd, &one, sizeof(one)) != sizeof(one))
		return;
	pthread_join(o->thr, NULL);
	handover_free(o->h);
	loop_del(o->loop, &o->stop_io);
	close(o->stop_fd);
	loop_free(o->loop);
	for (int i = 0; i < 2; i++) {
		if (o->relay[i] >= 0)
			close(o->relay[i]);
		if (o->peer[i] >= 0)
			close(o->peer[i]);
	}
	free(o->held0);
}

/* Wait (bounded) until *v reaches want; the old agent's thread writes it. */
static bool wait_for(volatile int *v, int want)
{
	for (int i = 0; i < 500 && *v < want; i++)
		usleep(10 * 1000);
	return *v >= want;
}

/* The new agent's relay callback. */
struct adopted {
	int n;
	char meta[256];
	int fd[2];
	size_t len[2];
	char d0_last, d1[8];
};

static int adopt(void *arg, const char *meta, const int fd[2], const struct iovec data[2])
{
	struct adopted *a = arg;

	a->n++;
	snprintf(a->meta, sizeof(a->meta), "%s", meta);
	a->fd[0] = fd[0];
	a->fd[1] = fd[1];
	a->len[0] = data[0].iov_len;
	a->len[1] = data[1].iov_len;
	if (data[0].iov_len)
		a->d0_last = ((const char *)data[0].iov_base)[data[0].iov_len - 1];
	memcpy(a->d1, data[1].iov_base, data[1].iov_len < 8 ? data[1].iov_len : 7);
	return 0;
}

static void pending_tick(struct loop_timer *t)
{
	struct loop *l = t->arg;

	if (handover_pending())
		loop_timer_arm(l, t, 10);
	else
		loop_stop(l);
}

static void deadline_cb(struct loop_timer *t)
{
	loop_stop(t->arg);
}

void test_handover_takeover(void)
{
	struct old_agent o;
	struct adopted a = { .fd = { -1, -1 } };
	struct loop *l = NULL;
	struct loop_timer tick, deadline;
	int pfd[2] = { -1, -1 }, efd = -1, fd, sp[2] = { -1, -1 };
	char c = 0, got[8] = { 0 };
	pid_t from = 0;

	if (!old_start(&o))
		goto out;
	/* what the old agent offers: a pipe's write end, an eventfd (withdrawn
	 * again: not sent) */
	if (!ASSERT_OK(pipe2(pfd, O_CLOEXEC), "pipe2"))
		goto out;
	efd = eventfd(0, EFD_CLOEXEC);
	handover_offerf(pfd[1], "pod %d:%d listen %s:%u", 1, 2, "0.0.0.0", 15001);
	handover_offerf(efd, "gone");
	handover_withdraw(efd);
	ASSERT_EQ(handover_n_offered(), 2, "offered: the pipe and the handover socket");
	/* and the relay it hands over after READY, 100 KiB held one way */
	if (!ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), "socketpair"))
		goto out;
	o.relay[0] = sp[0];
	o.peer[0] = sp[1];
	o.peer[1] = dup(sp[1]);
	o.held0_len = 100 * 1024;
	o.held0 = malloc(o.held0_len);
	memset(o.held0, 'x', o.held0_len);
	o.held0[o.held0_len - 1] = 'z';

	if (!ASSERT_OK(handover_request(o.path, &from), "handover_request"))
		goto out;
	ASSERT_EQ(from, getpid(), "the old agent's pid");
	ASSERT_TRUE(handover_pending(), "pending until ready");
	ASSERT_EQ(handover_n_inherited(), 2, "inherited: the pipe and the handover socket");
	ASSERT_TRUE(wait_for(&o.n_freeze, 1), "the old agent froze");
	ASSERT_EQ(o.successor, getpid(), "freeze names the successor");
	ASSERT_EQ(handover_takef("nothing %d", 1), -1, "an unknown key");
	fd = handover_takef("pod %d:%d listen %s:%u", 1, 2, "0.0.0.0", 15001);
	if (!ASSERT_GE(fd, 0, "take the pipe"))
		goto out;
	ASSERT_EQ(handover_takef("pod 1:2 listen 0.0.0.0:15001"), -1, "taken once only");
	/* the same pipe: written here, read at the old agent's end */
	ASSERT_EQ(write(fd, "!", 1), 1, "write the inherited end");
	ASSERT_EQ(read(pfd[0], &c, 1), 1, "read the original end");
	ASSERT_EQ(c, '!', "one pipe");
	close(fd);
	ASSERT_EQ(o.n_handed_over, 0, "not handed over before READY");

	/* READY: the handover socket was not taken, so it is closed; the relay comes */
	if (!ASSERT_OK(loop_new(&l), "loop_new"))
		goto out;
	handover_ready(l, adopt, &a);
	ASSERT_EQ(handover_n_inherited(), 0, "what was not taken is closed");
	loop_timer_init(&tick, pending_tick, l);
	loop_timer_init(&deadline, deadline_cb, l);
	loop_timer_arm(l, &tick, 10);
	loop_timer_arm(l, &deadline, 5000);
	loop_run(l);
	ASSERT_FALSE(handover_pending(), "DONE came within 5 s");
	ASSERT_TRUE(wait_for(&o.n_handed_over, 1), "handed_over");
	ASSERT_EQ(o.n_abort, 0, "no abort");
	ASSERT_EQ(a.n, 1, "one relay adopted");
	ASSERT_STREQ(a.meta, "{\"v\":1,\"what\":\"a relay\"}", "its description");
	ASSERT_EQ(a.len[0], 100 * 1024, "100 KiB held one way, in chunks");
	ASSERT_EQ(a.d0_last, 'z', "in order");
	ASSERT_EQ(a.len[1], 4, "4 bytes the other way");
	ASSERT_STREQ(a.d1, "back", "its bytes");
	/* the relay's socket: written at the adopted fd, read at the old end */
	if (ASSERT_GE(a.fd[0], 0, "relay fd") && ASSERT_EQ(write(a.fd[0], "ok", 2), 2, "write"))
		ASSERT_EQ(read(sp[0], got, sizeof(got)), 2, "the same socket");
out:
	loop_free(l);
	for (int i = 0; i < 2; i++) {
		if (a.fd[i] >= 0)
			close(a.fd[i]);
		if (pfd[i] >= 0)
			close(pfd[i]);
	}
	if (efd >= 0)
		close(efd);
	handover_withdraw(pfd[1]);
	old_stop(&o);
}

/* A raw client: connect, send text, read records up to END/NO (or EOF). */
static int raw_session(const char *path, const char *hello, char *last, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 5 };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ssize_t n;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) || send(s, hello, strlen(hello), 0) < 0) {
		close(s);
		return -1;
	}
	last[0] = '\0';
	while ((n = recv(s, last, len - 1, 0)) > 0) {	/* fds arrive and are dropped */
		last[n] = '\0';
		if (!strncmp(last, "END ", 4) || !strncmp(last, "NO ", 3))
			break;
	}
	return s;
}

void test_handover_successor_gone(void)
{
	struct old_agent o;
	char last[256];
	pid_t from;
	int s;

	if (!old_start(&o))
		return;
	/* a wrong version: refused, the old agent never froze */
	s = raw_session(o.path, "HELLO 9 1", last, sizeof(last));
	if (ASSERT_GE(s, 0, "connect"))
		close(s);
	ASSERT_HAS(last, "NO bad request", "refused");
	ASSERT_EQ(o.n_freeze, 0, "not frozen by a bad request");
	/* a successor that takes everything and goes away before READY */
	s = raw_session(o.path, "HELLO 1 4242", last, sizeof(last));
	ASSERT_HAS(last, "END ", "the objects, then END");
	ASSERT_TRUE(wait_for(&o.n_freeze, 1), "frozen");
	ASSERT_EQ(o.successor, 4242, "for pid 4242");
	if (s >= 0)
		close(s);
	ASSERT_TRUE(wait_for(&o.n_abort, 1), "thawed when it went");
	ASSERT_EQ(o.n_handed_over, 0, "never handed over");
	/* and it still serves a real successor afterwards */
	ASSERT_OK(handover_request(o.path, &from), "a later request");
	ASSERT_TRUE(wait_for(&o.n_freeze, 2), "frozen again");
	old_stop(&o);
}

void test_handover_no_agent(void)
{
	char path[100];
	pid_t from = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/none.handover", test_tmpdir());
	ASSERT_EQ(handover_request(path, &from), -ENOENT, "no socket: start afresh");
	/* a stale socket file (its agent died): the same */
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
		ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), "bind");
	}
	close(fd);
	ASSERT_EQ(handover_request(path, &from), -ENOENT, "a stale socket: start afresh");
	ASSERT_FALSE(handover_pending(), "nothing pending");
	handover_ready(NULL, NULL, NULL);	/* a no-op */
}
