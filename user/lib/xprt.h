/* SPDX-License-Identifier: Apache-2.0 */
/* xprt.h - the byte transport under a connection: plain TCP or TLS behind one
 * set of operations (haproxy's xprt_ops), so connection code never branches
 * on "is this TLS". A struct xprt is embedded in its owner; it owns the fd
 * (and the SSL) from xprt_init_* until ops->close.
 *
 * Every operation is non-blocking. On -EAGAIN, x->want says which epoll event
 * (EPOLLIN or EPOLLOUT) the transport waits for: a TLS read can need to write
 * and a TLS write can need to read, so owners add x->want to their interest
 * set rather than guessing from the call they made.
 *
 * TLS follows HBONE.md: the SSL_CTX (from identity) carries the certificate,
 * the trust roots and the versions; per connection this sets ALPN "h2", no
 * SNI and no session resumption (client), no session tickets (server), and
 * partial writes. Callers check ALPN with ops->alpn after the handshake.
 */
#ifndef SL_XPRT_H
#define SL_XPRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

struct xprt;

struct xprt_ops {
	const char *name;		/* "tcp", "tls" */
	/* Finish the handshake: 0 done, -EAGAIN (see want), or -errno (why in x->err). */
	int (*handshake)(struct xprt *x);
	/* > 0 bytes read; 0 orderly end of stream; -EAGAIN; -ECONNRESET; -errno. */
	ssize_t (*rcv)(struct xprt *x, void *p, size_t n);
	/* > 0 bytes taken (maybe fewer than n); -EAGAIN; -EPIPE/-ECONNRESET; -errno.
	 * After -EAGAIN, call again with the same bytes first (TLS may hold a
	 * sealed record of them). */
	ssize_t (*snd)(struct xprt *x, const void *p, size_t n);
	/* End our sending side (FIN, or close_notify): 0 or -errno. */
	int (*shut)(struct xprt *x);
	/* Release everything and close the fd; abort sends a TCP RST (SO_LINGER 0)
	 * instead of an orderly close. x is then unusable (fd -1). */
	void (*close)(struct xprt *x, bool abort);
	/* The negotiated application protocol (ALPN); *n = 0 when none. */
	void (*alpn)(struct xprt *x, const unsigned char **p, unsigned int *n);
};

struct xprt {
	const struct xprt_ops *ops;
	int fd;
	uint32_t want;			/* EPOLLIN/EPOLLOUT the last -EAGAIN waits for */
	SSL *ssl;			/* TLS only: for peer checks (identity) */
	char err[160];			/* why the last failure happened */
};

extern const struct xprt_ops xprt_plain_ops;
extern const struct xprt_ops xprt_tls_ops;

/* Plain TCP over fd (non-blocking). Cannot fail. */
void xprt_init_plain(struct xprt *x, int fd);
/* TLS over fd with ctx (SSL_new takes its own reference to ctx). On error
 * (-ENOMEM) x is left unused and the caller still owns fd. */
int xprt_init_tls(struct xprt *x, int fd, SSL_CTX *ctx, bool server);

/* Drain OpenSSL's error queue into buf ("" when empty); returns buf. */
const char *xprt_ssl_errors(char *buf, size_t len);

/* Close fd so the peer sees a TCP RST rather than a FIN. */
void xprt_close_rst(int fd);

#endif
