// SPDX-License-Identifier: Apache-2.0
/* fuzz_relay.c - libFuzzer target: tunnel_adopt() (user/tunnel.c), the new
 * agent's side of an upgrade: a relay's description (JSON from the old
 * agent's tunnel_export), its two sockets and the bytes it held.
 *
 * Input: bytes 0-1, little-endian, the description's length n (clamped);
 * the next n bytes the description (NUL-terminated in a buffer of exactly
 * its size); the rest the held bytes, split in half between the two
 * directions. The two sockets are socketpair ends whose far ends the harness
 * keeps; the tunnel has one pod, ns1/pod1, that a description may name. The
 * loop then runs for a millisecond (the relay writes what it held), and the
 * tunnel is freed. Beyond ASan/UBSan: whatever tunnel_adopt returned, both
 * sockets must be closed after tunnel_free() (the tunnel owns them either
 * way: a leak would keep a client's connection open forever).
 *
 * fuzz-srcs: user/tunnel.c user/hbone_hdr.c user/lib/xprt.c user/lib/loop.c user/lib/log.c
 * fuzz-libs: -lnghttp2 -ljansson -lssl -lcrypto -lpthread
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "tunnel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int op_orig_dst(void *arg, int fd, struct tunnel_addr *dst, struct tunnel_addr *vip)
{
	return -ENOENT;
}

static int op_lookup(void *arg, const struct sl_ip *ip, struct tunnel_workload *wl)
{
	return -ENOENT;
}

static int op_pod_socket(void *arg, const struct sl_ip *ip, int family)
{
	return -ENOENT;
}

static struct ssl_ctx_st *op_ctx(void *arg, const char *ns, const char *sa)
{
	return NULL;
}

static int op_peer_check(void *arg, struct ssl_st *ssl, const char *expected, char *out, size_t out_len)
{
	return -EACCES;
}

static const struct tunnel_ops ops = {
	.orig_dst = op_orig_dst,
	.lookup = op_lookup,
	.pod_socket = op_pod_socket,
	.client_ctx = op_ctx,
	.server_ctx = op_ctx,
	.peer_check = op_peer_check,
};

static void stop_cb(struct loop_timer *t)
{
	loop_stop(t->arg);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct tunnel_pod pod = { .ns = "ns1", .name = "pod1", .service_account = "sa1" };
	struct tunnel_opts o = { .buf_size = 4096 };
	struct loop *l = NULL;
	struct tunnel *t = NULL;
	struct loop_timer stop;
	struct iovec held[2];
	int a[2] = { -1, -1 }, b[2] = { -1, -1 }, fd[2];
	size_t n, rest;
	char *meta;

	if (size < 2)
		return 0;
	n = (size_t)data[0] | (size_t)data[1] << 8;
	if (n > size - 2)
		n = size - 2;
	meta = malloc(n + 1);
	if (!meta)
		return 0;
	memcpy(meta, data + 2, n);
	meta[n] = '\0';
	rest = size - 2 - n;
	held[0].iov_base = (void *)(data + 2 + n);
	held[0].iov_len = rest / 2;
	held[1].iov_base = (void *)(data + 2 + n + rest / 2);
	held[1].iov_len = rest - rest / 2;
	if (loop_new(&l) || tunnel_new(&t, l, &ops, NULL, &o) || tunnel_pod_add(t, &pod) ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, a) ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, b))
		abort();
	fd[0] = a[0];
	fd[1] = b[0];
	tunnel_adopt(t, meta, fd, held);
	loop_timer_init(&stop, stop_cb, l);
	loop_timer_arm(l, &stop, 1);
	loop_run(l);
	tunnel_free(t);
	loop_timer_cancel(l, &stop);
	if (fcntl(fd[0], F_GETFD) != -1 || fcntl(fd[1], F_GETFD) != -1) {
		fprintf(stderr, "fuzz_relay: a relay socket is still open after tunnel_free\n");
		abort();
	}
	close(a[1]);
	close(b[1]);
	loop_free(l);
	free(meta);
	return 0;
}
