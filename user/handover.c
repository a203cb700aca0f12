// SPDX-License-Identifier: Apache-2.0
/* handover.c - see handover.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "handover.h"
#include "log.h"
#include "loop.h"

#define HANDOVER_MSG_MAX	(HANDOVER_KEY_MAX + 16)
#define HANDOVER_IO_MS		5000	/* one record either way */
#define HANDOVER_READY_MS	120000	/* the successor's start-up, then thaw */
#define HANDOVER_VERSION	1
#define HANDOVER_FDS_MAX	2	/* per record: a relay's two sockets */
#define HANDOVER_CHUNK		(32 * 1024)	/* held bytes per DATA record */
#define HANDOVER_REC_MAX	(HANDOVER_CHUNK + 64)

struct hentry {
	char *key;
	int fd;
};

struct registry {
	struct hentry *v;
	size_t n, cap;
};

static struct registry offered, inherited;
static int successor_fd = -1;	/* the new agent's connection to the old one */

/* ---- registries ---- */

static ssize_t reg_find_fd(const struct registry *r, int fd)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i].fd == fd)
			return (ssize_t)i;
	return -1;
}

static void reg_del(struct registry *r, size_t i)
{
	free(r->v[i].key);
	r->v[i] = r->v[--r->n];
}

static int reg_add(struct registry *r, const char *key, int fd)
{
	char *k = strdup(key);

	if (!k)
		return -ENOMEM;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct hentry *v = realloc(r->v, cap * sizeof(*v));

		if (!v) {
			free(k);
			return -ENOMEM;
		}
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n].key = k;
	r->v[r->n++].fd = fd;
	return 0;
}

void handover_offerf(int fd, const char *fmt, ...)
{
	char key[HANDOVER_KEY_MAX];
	ssize_t i = reg_find_fd(&offered, fd);
	va_list ap;
	int n;

	if (fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	if (i >= 0)
		reg_del(&offered, (size_t)i);
	if (n < 0 || (size_t)n >= sizeof(key) || strchr(key, '\n')) {
		pr_warn("handover: key too long, not offered: %s", key);
		return;
	}
	if (reg_add(&offered, key, fd))
		pr_warn("handover: out of memory, not offered: %s", key);
}

void handover_withdraw(int fd)
{
	ssize_t i = reg_find_fd(&offered, fd);

	if (i >= 0)
		reg_del(&offered, (size_t)i);
}

size_t handover_n_offered(void)
{
	return offered.n;
}

int handover_takef(const char *fmt, ...)
{
	char key[HANDOVER_KEY_MAX];
	va_list ap;
	int fd;

	if (!inherited.n)
		return -1;
	va_start(ap, fmt);
	vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	for (size_t i = 0; i < inherited.n; i++) {
		if (strcmp(inherited.v[i].key, key))
			continue;
		fd = inherited.v[i].fd;
		reg_del(&inherited, i);
		pr_debug("handover: took %s (fd %d)", key, fd);
		return fd;
	}
	return -1;
}

size_t handover_n_inherited(void)
{
	return inherited.n;
}

/* ---- records: one message, at most one fd ---- */

/* A record: text, then len bytes of data (DATA records), with nfds fds. */
static int rec_sendv(int sock, const char *text, const void *data, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * HANDOVER_FDS_MAX)];
		struct cmsghdr align;
	} u;
	struct iovec iov[2] = { { .iov_base = (void *)text, .iov_len = strlen(text) },
				{ .iov_base = (void *)data, .iov_len = len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&u, 0, sizeof(u));
		m.msg_control = u.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(sock, &m, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static int rec_send(int sock, const char *text, int fd)
{
	return rec_sendv(sock, text, NULL, 0, &fd, fd >= 0 ? 1 : 0);
}

static void fds_close(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* A record into buf (NUL-terminated after its n bytes); fds[] the fds it
 * carried (*nfds of them). Returns its length, 0 at EOF, or -errno. */
static ssize_t rec_recvv(int sock, char *buf, size_t len, int fds[HANDOVER_FDS_MAX], int *nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * HANDOVER_FDS_MAX)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = buf, .iov_len = len - 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);

	*nfds = 0;
	if (n < 0)
		return -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (k > HANDOVER_FDS_MAX - (size_t)*nfds)
			k = HANDOVER_FDS_MAX - (size_t)*nfds;
		memcpy(fds + *nfds, CMSG_DATA(c), k * sizeof(int));
		*nfds += (int)k;
	}
	if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		fds_close(fds, *nfds);
		*nfds = 0;
		return -EMSGSIZE;
	}
	buf[n] = '\0';
	return n;
}

/* A record with at most one fd (*fd, or -1). */
static ssize_t rec_recv(int sock, char *buf, size_t len, int *fd)
{
	int fds[HANDOVER_FDS_MAX], n;
	ssize_t r = rec_recvv(sock, buf, len, fds, &n);

	*fd = n ? fds[0] : -1;
	if (n > 1)
		fds_close(fds + 1, n - 1);
	return r;
}

static void sock_timeouts(int sock, unsigned int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int sun_of(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

/* ---- the new agent ---- */

int handover_request(const char *path, pid_t *from)
{
	char msg[HANDOVER_MSG_MAX];
	struct sockaddr_un sa;
	size_t n_fds = 0;
	int sock, err, fd;
	ssize_t n;

	err = sun_of(path, &sa);
	if (err)
		return err;
	sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		close(sock);
		return err == -ECONNREFUSED || err == -ENOENT ? -ENOENT : err;
	}
	sock_timeouts(sock, HANDOVER_IO_MS);
	snprintf(msg, sizeof(msg), "HELLO %d %d", HANDOVER_VERSION, (int)getpid());
	err = rec_send(sock, msg, -1);
	while (!err) {
		n = rec_recv(sock, msg, sizeof(msg), &fd);
		if (n <= 0) {
			err = n ? (int)n : -ECONNRESET;
			break;
		}
		if (!strncmp(msg, "FD ", 3) && fd >= 0) {
			if (reg_add(&inherited, msg + 3, fd)) {
				close(fd);
				err = -ENOMEM;
			}
			n_fds++;
			continue;
		}
		if (fd >= 0)
			close(fd);
		if (!strncmp(msg, "END ", 4)) {
			*from = (pid_t)atoi(msg + 4);
			successor_fd = sock;
			pr_info("handover: took over from pid %d: %zu sockets and links inherited",
				(int)*from, n_fds);
			return 0;
		}
		if (!strncmp(msg, "NO ", 3)) {
			pr_err("handover: the agent at %s refused: %s", path, msg + 3);
			err = -EBUSY;
		} else {
			pr_err("handover: unexpected record from %s: %.40s", path, msg);
			err = -EPROTO;
		}
	}
	if (err != -EBUSY && err != -EPROTO)
		pr_err("handover: from %s: %s", path, strerror(-err));
	close(sock);
	while (inherited.n) {
		close(inherited.v[0].fd);
		reg_del(&inherited, 0);
	}
	return err;
}

bool handover_pending(void)
{
	return successor_fd >= 0;
}

/* The new agent, after READY: relays the old agent hands over, until DONE. */
static struct {
	struct loop *loop;
	struct loop_io io;
	handover_adopt_fn adopt;
	void *arg;
	char *meta;			/* the relay being received, or NULL */
	int fd[2];
	char *data[2];
	size_t len[2];
	size_t n_adopted, n_failed;
	char buf[HANDOVER_REC_MAX];
} rx = { .io = { .fd = -1 } };

static void rx_relay_end(void)
{
	if (rx.meta) {
		const struct iovec data[2] = { { rx.data[0], rx.len[0] }, { rx.data[1], rx.len[1] } };

		if (rx.adopt(rx.arg, rx.meta, rx.fd, data))
			rx.n_failed++;
		else
			rx.n_adopted++;
	}
	free(rx.meta);
	rx.meta = NULL;
	for (int i = 0; i < 2; i++) {
		free(rx.data[i]);
		rx.data[i] = NULL;
		rx.len[i] = 0;
	}
}

static void rx_end(const char *why)
{
	rx_relay_end();
	loop_del(rx.loop, &rx.io);
	close(successor_fd);
	successor_fd = -1;
	pr_info("handover: %zu relays carried on from the old agent (%zu failed)%s%s", rx.n_adopted,
		rx.n_failed, why ? ": " : "", why ? why : "");
}

static void rx_cb(struct loop_io *io, uint32_t events)
{
	int fds[HANDOVER_FDS_MAX], nfds;
	ssize_t n;

	(void)io;
	(void)events;
	for (;;) {
		n = rec_recvv(successor_fd, rx.buf, sizeof(rx.buf), fds, &nfds);
		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			rx_end(n ? strerror((int)-n) : "the old agent closed");
			return;
		}
		if (!strncmp(rx.buf, "CONN ", 5) && nfds == 2) {
			rx_relay_end();
			rx.meta = strdup(rx.buf + 5);
			rx.fd[0] = fds[0];
			rx.fd[1] = fds[1];
			if (!rx.meta) {	/* reset, as an unknown relay */
				fds_close(fds, 2);
				rx.n_failed++;
			}
			continue;
		}
		fds_close(fds, nfds);
		if (!strncmp(rx.buf, "DATA ", 5) && (rx.buf[5] == '0' || rx.buf[5] == '1') &&
		    rx.buf[6] == '\n' && rx.meta) {
			int d = rx.buf[5] - '0';
			size_t len = (size_t)n - 7;
			char *m = realloc(rx.data[d], rx.len[d] + len);

			if (m) {
				memcpy(m + rx.len[d], rx.buf + 7, len);
				rx.data[d] = m;
				rx.len[d] += len;
			}
			continue;
		}
		rx_end(strcmp(rx.buf, "DONE") ? "unexpected record" : NULL);
		return;
	}
}

void handover_ready(struct loop *l, handover_adopt_fn adopt, void *arg)
{
	size_t unused = inherited.n;
	int err;

	if (successor_fd < 0)
		return;
	while (inherited.n) {
		pr_info("handover: %s: not taken (gone meanwhile), closed", inherited.v[0].key);
		close(inherited.v[0].fd);
		reg_del(&inherited, 0);
	}
	free(inherited.v);
	inherited.v = NULL;
	inherited.cap = 0;
	fcntl(successor_fd, F_SETFL, fcntl(successor_fd, F_GETFL) | O_NONBLOCK);
	rx.loop = l;
	rx.adopt = adopt;
	rx.arg = arg;
	/* watched before READY: the relays follow it at once */
	err = loop_add(l, &rx.io, successor_fd, EPOLLIN, rx_cb, NULL);
	if (!err)
		err = rec_send(successor_fd, "READY", -1);
	if (err) {
		pr_warn("handover: telling the old agent we are ready: %s (it thaws: two agents "
			"now share the sockets)", strerror(-err));
		loop_del(l, &rx.io);
		close(successor_fd);
		successor_fd = -1;
		return;
	}
	pr_info("handover: serving; the old agent hands over its relays and drains (%zu inherited "
		"objects unused)", unused);
}

/* ---- the running agent ---- */

struct handover {
	struct loop *loop;
	struct loop_io lio;		/* the listening socket */
	struct loop_io cio;		/* the successor, once it said HELLO */
	struct loop_timer timer;	/* READY deadline */
	const struct handover_ops *ops;
	void *arg;
	char *path;
	dev_t dev;
	ino_t ino;
	int fd, cfd;
	pid_t peer;
	bool done;			/* handed over: no more requests */
};

static void conn_end(struct handover *h)
{
	if (h->cfd < 0)
		return;
	loop_del(h->loop, &h->cio);
	loop_timer_cancel(h->loop, &h->timer);
	close(h->cfd);
	h->cfd = -1;
}

static void successor_gone(struct handover *h, const char *why)
{
	pid_t peer = h->peer;

	conn_end(h);
	pr_warn("handover: pid %d did not take over (%s): serving on", (int)peer, why);
	h->ops->abort(h->arg, peer, why);
}

static void conn_cb(struct loop_io *io, uint32_t events)
{
	struct handover *h = io->arg;
	char msg[HANDOVER_MSG_MAX];
	int fd;
	ssize_t n = rec_recv(h->cfd, msg, sizeof(msg), &fd);

	(void)events;
	if (fd >= 0)
		close(fd);
	if (n == -EAGAIN)
		return;
	if (n > 0 && !strcmp(msg, "READY")) {
		h->done = true;
		loop_timer_cancel(h->loop, &h->timer);
		/* blocking (SO_SNDTIMEO) while the relays go */
		fcntl(h->cfd, F_SETFL, fcntl(h->cfd, F_GETFL) & ~O_NONBLOCK);
		h->ops->handed_over(h->arg, h->peer);
		if (h->cfd >= 0)
			rec_send(h->cfd, "DONE", -1);
		conn_end(h);
		return;
	}
	successor_gone(h, n > 0 ? "unexpected record" : n ? strerror((int)-n) : "it closed");
}

int handover_send_relay(struct handover *h, const char *meta, const int fd[2], const struct iovec data[2])
{
	char head[16];
	int err;

	if (!h || h->cfd < 0)
		return -ENOTCONN;
	if (strlen(meta) + 6 > HANDOVER_REC_MAX)
		return -EMSGSIZE;
	err = rec_sendv(h->cfd, "CONN ", meta, strlen(meta), fd, 2);
	for (int d = 0; d < 2 && !err; d++) {
		snprintf(head, sizeof(head), "DATA %d\n", d);
		for (size_t off = 0; off < data[d].iov_len && !err; off += HANDOVER_CHUNK) {
			size_t len = data[d].iov_len - off;

			err = rec_sendv(h->cfd, head, (const char *)data[d].iov_base + off,
					len > HANDOVER_CHUNK ? HANDOVER_CHUNK : len, NULL, 0);
		}
	}
	if (err) {	/* the successor is gone: nothing more goes */
		pr_warn("handover: sending a relay: %s", strerror(-err));
		conn_end(h);
	}
	return err;
}

static void timer_cb(struct loop_timer *t)
{
	successor_gone(t->arg, "not ready in time");
}

/* Send every offered object. 0 or -errno. */
static int send_all(struct handover *h)
{
	char msg[HANDOVER_MSG_MAX];
	int err = 0;

	for (size_t i = 0; i < offered.n && !err; i++) {
		snprintf(msg, sizeof(msg), "FD %s", offered.v[i].key);
		err = rec_send(h->cfd, msg, offered.v[i].fd);
	}
	if (!err) {
		snprintf(msg, sizeof(msg), "END %d", (int)getpid());
		err = rec_send(h->cfd, msg, -1);
	}
	return err;
}

static void refuse(int fd, const char *why)
{
	char msg[HANDOVER_MSG_MAX];

	snprintf(msg, sizeof(msg), "NO %s", why);
	rec_send(fd, msg, -1);
	close(fd);
}

static void accept_cb(struct loop_io *io, uint32_t events)
{
	struct handover *h = io->arg;
	char msg[HANDOVER_MSG_MAX];
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	int fd, pfd, err, ver = 0, pid = 0;
	ssize_t n;

	(void)events;
	fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) || (cr.uid != 0 && cr.uid != geteuid())) {
		pr_warn("handover: refused a request from uid %d", (int)cr.uid);
		refuse(fd, "not root");
		return;
	}
	if (h->done || h->cfd >= 0) {
		refuse(fd, h->done ? "handed over already" : "a handover is in progress");
		return;
	}
	sock_timeouts(fd, HANDOVER_IO_MS);
	n = rec_recv(fd, msg, sizeof(msg), &pfd);
	if (pfd >= 0)
		close(pfd);
	if (n <= 0 || sscanf(msg, "HELLO %d %d", &ver, &pid) != 2 || ver != HANDOVER_VERSION) {
		pr_warn("handover: bad request from pid %d", (int)cr.pid);
		refuse(fd, "bad request (version 1 expected)");
		return;
	}
	h->cfd = fd;
	h->peer = (pid_t)pid;
	pr_info("handover: pid %d asks to take over: freezing the control plane, handing over %zu "
		"objects", pid, offered.n);
	h->ops->freeze(h->arg, h->peer);
	err = send_all(h);
	if (!err)
		err = loop_add(h->loop, &h->cio, fd, EPOLLIN | EPOLLRDHUP, conn_cb, h);
	if (!err)
		err = loop_timer_arm(h->loop, &h->timer, HANDOVER_READY_MS);
	if (err) {
		close(fd);
		h->cfd = -1;
		pr_warn("handover: pid %d: sending: %s: serving on", pid, strerror(-err));
		h->ops->abort(h->arg, h->peer, strerror(-err));
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Remove a stale socket file at path; refuse what is not a socket. */
static int clear_path(const char *path)
{
	struct stat st;

	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		pr_err("handover: %s exists and is not a socket; not replacing it", path);
		return -EEXIST;
	}
	return unlink(path) && errno != ENOENT ? -errno : 0;
}

int handover_serve(struct handover **out, struct loop *l, const char *path,
		   const struct handover_ops *ops, void *arg)
{
	struct sockaddr_un sa;
	struct handover *h;
	struct stat st;
	int err;

	err = sun_of(path, &sa);
	if (err) {
		pr_err("handover: socket path too long: %s", path);
		return err;
	}
	h = calloc(1, sizeof(*h));
	if (!h || !(h->path = strdup(path))) {
		free(h);
		return -ENOMEM;
	}
	h->loop = l;
	h->ops = ops;
	h->arg = arg;
	h->cfd = -1;
	loop_timer_init(&h->timer, timer_cb, h);
	h->fd = handover_takef("handover %s", path);
	if (h->fd < 0) {
		err = clear_path(path);
		if (err)
			goto fail;
		h->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		/* 0600 before bind, as the status socket: never wider. */
		if (h->fd < 0 || fchmod(h->fd, 0600) || bind(h->fd, (struct sockaddr *)&sa, sizeof(sa)) ||
		    listen(h->fd, 4)) {
			err = -errno;
			goto fail;
		}
	}
	if (!stat(path, &st)) {
		h->dev = st.st_dev;
		h->ino = st.st_ino;
	}
	err = loop_add(l, &h->lio, h->fd, EPOLLIN, accept_cb, h);
	if (err)
		goto fail;
	handover_offerf(h->fd, "handover %s", path);
	*out = h;
	return 0;
fail:
	pr_err("handover: cannot listen on %s: %s", path, strerror(-err));
	if (h->fd >= 0)
		close(h->fd);
	free(h->path);
	free(h);
	return err;
}

void handover_stop(struct handover *h)
{
	if (!h || h->lio.fd < 0)
		return;
	loop_del(h->loop, &h->lio);
	h->lio.fd = -1;
}

void handover_free(struct handover *h)
{
	struct stat st;

	if (!h)
		return;
	conn_end(h);
	handover_stop(h);
	handover_withdraw(h->fd);
	/* Unlink only the file we bound: a successor may have bound its own. */
	if (!h->done && !stat(h->path, &st) && st.st_dev == h->dev && st.st_ino == h->ino)
		unlink(h->path);
	close(h->fd);
	free(h->path);
	free(h);
}
