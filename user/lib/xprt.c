// SPDX-License-Identifier: Apache-2.0
/* xprt.c - see xprt.h. Plain TCP is read/write/shutdown on the fd; TLS is
 * OpenSSL over the same fd (no BIO pairs: OpenSSL reads and writes the socket
 * itself, and its WANT_READ/WANT_WRITE become x->want). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "xprt.h"

void xprt_close_rst(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

const char *xprt_ssl_errors(char *buf, size_t len)
{
	size_t off = 0;
	unsigned long e;

	if (!len)
		return buf;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[120];

		ERR_error_string_n(e, one, sizeof(one));
		if (off + 1 < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "; " : "", one);
		if (off >= len)
			off = len - 1;
	}
	return buf;
}

/* ---- plain TCP ---- */

static int plain_handshake(struct xprt *x)
{
	(void)x;
	return 0;
}

static ssize_t plain_rcv(struct xprt *x, void *p, size_t n)
{
	ssize_t r = recv(x->fd, p, n, 0);	/* not read(2): no VFS layer on the way */

	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EINTR) {
		x->want = EPOLLIN;
		return -EAGAIN;
	}
	return -errno;
}

static ssize_t plain_snd(struct xprt *x, const void *p, size_t n)
{
	ssize_t r = send(x->fd, p, n, MSG_NOSIGNAL);

	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EINTR) {
		x->want = EPOLLOUT;
		return -EAGAIN;
	}
	return -errno;
}

static int plain_shut(struct xprt *x)
{
	return shutdown(x->fd, SHUT_WR) == -1 ? -errno : 0;
}

static void plain_close(struct xprt *x, bool abort)
{
	if (abort)
		xprt_close_rst(x->fd);
	else if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
}

static void plain_alpn(struct xprt *x, const unsigned char **p, unsigned int *n)
{
	(void)x;
	*p = NULL;
	*n = 0;
}

const struct xprt_ops xprt_plain_ops = {
	.name = "tcp",
	.handshake = plain_handshake,
	.rcv = plain_rcv,
	.snd = plain_snd,
	.shut = plain_shut,
	.close = plain_close,
	.alpn = plain_alpn,
};

void xprt_init_plain(struct xprt *x, int fd)
{
	memset(x, 0, sizeof(*x));
	x->ops = &xprt_plain_ops;
	x->fd = fd;
}

/* ---- TLS ---- */

/* Map a failed SSL_* call to -EAGAIN (setting want) or -errno (setting err). */
static int tls_fail(struct xprt *x, int ret)
{
	int e = SSL_get_error(x->ssl, ret), saved = errno;

	switch (e) {
	case SSL_ERROR_WANT_READ:
		x->want = EPOLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		x->want = EPOLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		snprintf(x->err, sizeof(x->err), "peer closed the TLS session");
		return -ECONNRESET;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (saved == EAGAIN || saved == EINTR) {
			x->want = EPOLLIN;
			return -EAGAIN;
		}
		snprintf(x->err, sizeof(x->err), "%s", saved ? strerror(saved) : "unexpected EOF");
		return saved ? -saved : -ECONNRESET;
	default:
		xprt_ssl_errors(x->err, sizeof(x->err));
		if (strstr(x->err, "unexpected eof"))
			return -ECONNRESET;
		/* "certificate verify failed" alone does not say what is wrong with
		 * the peer's chain (an unknown CA during a CA rotation, an expired
		 * certificate): add the verifier's reason. */
		long v = SSL_get_verify_result(x->ssl);

		if (v != X509_V_OK) {
			size_t l = strlen(x->err);

			snprintf(x->err + l, sizeof(x->err) - l, " (%s)", X509_verify_cert_error_string(v));
		}
		return -EPROTO;
	}
}

static int tls_handshake(struct xprt *x)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(x->ssl);
	if (r == 1)
		return 0;
	return tls_fail(x, r);
}

static ssize_t tls_rcv(struct xprt *x, void *p, size_t n)
{
	size_t got = 0;
	int r;

	ERR_clear_error();
	r = SSL_read_ex(x->ssl, p, n, &got);
	if (r == 1)
		return (ssize_t)got;
	if (SSL_get_error(x->ssl, r) == SSL_ERROR_ZERO_RETURN)
		return 0;			/* close_notify: orderly end */
	return tls_fail(x, r);
}

static ssize_t tls_snd(struct xprt *x, const void *p, size_t n)
{
	size_t done = 0;
	int r;

	ERR_clear_error();
	r = SSL_write_ex(x->ssl, p, n, &done);
	if (r == 1)
		return (ssize_t)done;
	return tls_fail(x, r);
}

static int tls_shut(struct xprt *x)
{
	int r;

	ERR_clear_error();
	r = SSL_shutdown(x->ssl);	/* sends close_notify; does not wait for the peer's */
	if (r >= 0)
		return 0;
	return tls_fail(x, r);
}

static void tls_close(struct xprt *x, bool abort)
{
	if (x->ssl) {
		if (!abort) {
			ERR_clear_error();
			SSL_shutdown(x->ssl);	/* best effort, non-blocking */
		}
		ERR_clear_error();
		SSL_free(x->ssl);
		x->ssl = NULL;
	}
	plain_close(x, abort);
}

static void tls_alpn(struct xprt *x, const unsigned char **p, unsigned int *n)
{
	SSL_get0_alpn_selected(x->ssl, p, n);
}

const struct xprt_ops xprt_tls_ops = {
	.name = "tls",
	.handshake = tls_handshake,
	.rcv = tls_rcv,
	.snd = tls_snd,
	.shut = tls_shut,
	.close = tls_close,
	.alpn = tls_alpn,
};

int xprt_init_tls(struct xprt *x, int fd, SSL_CTX *ctx, bool server)
{
	static const unsigned char alpn_h2[] = { 2, 'h', '2' };
	SSL *ssl;

	memset(x, 0, sizeof(*x));
	x->fd = -1;
	ERR_clear_error();
	ssl = SSL_new(ctx);
	if (!ssl)
		goto fail;
	if (SSL_set_fd(ssl, fd) != 1)
		goto fail;
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Read what the socket has, several records per read(2), not a
	 * header and a body per record. Owners read until -EAGAIN, so bytes
	 * held here never wait for an epoll event that will not come. */
	SSL_set_read_ahead(ssl, 1);
	SSL_set_default_read_buffer_len(ssl, 64 * 1024);
	if (server) {
		SSL_set_accept_state(ssl);
		SSL_set_num_tickets(ssl, 0);		/* clients never resume */
	} else {
		SSL_set_connect_state(ssl);
		/* No SNI (nothing calls SSL_set_tlsext_host_name), no session set:
		 * no resumption. ALPN returns 0 on success. */
		if (SSL_set_alpn_protos(ssl, alpn_h2, sizeof(alpn_h2)) != 0)
			goto fail;
	}
	x->ops = &xprt_tls_ops;
	x->fd = fd;
	x->ssl = ssl;
	return 0;
fail:
	xprt_ssl_errors(x->err, sizeof(x->err));
	SSL_free(ssl);
	return -ENOMEM;
}
