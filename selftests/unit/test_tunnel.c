// SPDX-License-Identifier: Apache-2.0
/* test_tunnel.c - the tunnel (user/tunnel.c) with real sockets, real TLS 1.3
 * and real HTTP/2: two tunnels ("node 0" and "node 1") on one loop in a
 * thread, inside a network namespace of the test's own (root; skipped
 * otherwise). 127.0.0.x and fd00::x on lo stand in for pod IPs:
 *
 *   P  default/client-0  sa client   127.0.0.2  fd00::2  node 0 (outbound listener)
 *   Q  default/server-0  sa server   127.0.0.3  fd00::3  node 1 (HBONE listener)
 *   R  default/local-0   sa local    127.0.0.4  fd00::4  node 0 (same node as P)
 *   X  not in the mesh               127.0.0.5  fd00::5  (passthrough)
 *   G  default/ghost-0   sa server   127.0.0.9           node 1 per the directory,
 *                                                        but not served there (400)
 *   S  default/slow-0    sa slow     127.0.0.7           HBONE port that never speaks TLS
 *   Y  default/py-0      sa py       127.0.0.8  fd00::8  a Python HBONE server (interop)
 *
 * Apps (one epoll thread): echo on :8080 of Q, R, X and Y's peers; "greet"
 * (says hello, half-closes, counts what it then receives) on Q:8081; "rst"
 * (resets after the first byte) on Q:8082; nothing on Q:8083.
 *
 * Certificates (a CA, and a second untrusted CA) are minted here with the
 * OpenSSL API: ECDSA P-256 leaves with URI SANs
 * spiffe://cluster.local/ns/<ns>/sa/<sa>; contexts follow HBONE.md (TLS 1.3
 * only, AES-GCM suites, ALPN h2, client certificates required).
 *
 * The transparent test builds a second netns joined by a veth, with the
 * KERNEL-NOTES delivery recipe and an nft tproxy rule standing in for the TC
 * program. Every wait is bounded (socket timeouts, poll deadlines).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <sluice/abi.h>

#include "../lib/fixture.h"
#include "../lib/test.h"
#include "log.h"
#include "loop.h"
#include "tunnel.h"

extern char **environ;

/* LeakSanitizer, when linked in (make san): checked at the end of each test,
 * since the runner ends test processes with _exit(). */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

#define TD "cluster.local"
#define MIN_SZ(a, b) ((size_t)(a) < (size_t)(b) ? (size_t)(a) : (size_t)(b))
#define IO_TIMEOUT_MS 15000

/* ---- certificates ---- */

struct ca {
	X509 *cert;
	EVP_PKEY *key;
};

static EVP_PKEY *key_p256(void)
{
	return EVP_EC_gen("P-256");
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext) {
		X509_add_ext(cert, ext, -1);
		X509_EXTENSION_free(ext);
	}
}

static X509 *cert_new(EVP_PKEY *key, const char *cn, long serial)
{
	X509 *c = X509_new();
	X509_NAME *n;

	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
	X509_gmtime_adj(X509_getm_notBefore(c), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c), 86400);
	X509_set_pubkey(c, key);
	n = X509_get_subject_name(c);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	return c;
}

static bool ca_make(struct ca *ca, const char *cn)
{
	ca->key = key_p256();
	if (!ca->key)
		return false;
	ca->cert = cert_new(ca->key, cn, 1);
	X509_set_issuer_name(ca->cert, X509_get_subject_name(ca->cert));
	add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign");
	add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash");
	return X509_sign(ca->cert, ca->key, EVP_sha256()) > 0;
}

static void ca_free(struct ca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	memset(ca, 0, sizeof(*ca));
}

static bool leaf_make(const struct ca *ca, const char *ns, const char *sa, X509 **out,
		      EVP_PKEY **key)
{
	static long serial = 100;
	char san[300];

	*key = key_p256();
	if (!*key)
		return false;
	*out = cert_new(*key, sa, ++serial);
	X509_set_issuer_name(*out, X509_get_subject_name(ca->cert));
	snprintf(san, sizeof(san), "URI:spiffe://%s/ns/%s/sa/%s", TD, ns, sa);
	add_ext(*out, ca->cert, NID_subject_alt_name, san);
	add_ext(*out, ca->cert, NID_basic_constraints, "critical,CA:FALSE");
	add_ext(*out, ca->cert, NID_key_usage, "critical,digitalSignature,keyEncipherment");
	add_ext(*out, ca->cert, NID_ext_key_usage, "serverAuth,clientAuth");
	return X509_sign(*out, ca->key, EVP_sha256()) > 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h2[] = { 2, 'h', '2' };
	unsigned char *sel;

	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto(&sel, outlen, h2, sizeof(h2), in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* An SSL_CTX per HBONE.md: TLS 1.3, AES-GCM, peer certificates required and
 * verified against roots; ALPN h2 (server side select; clients set it per
 * connection). */
static SSL_CTX *ctx_make(const struct ca *issuer, const struct ca *const *roots, int n_roots,
			 const char *ns, const char *sa)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	X509_STORE *st;
	X509 *leaf = NULL;
	EVP_PKEY *key = NULL;
	bool ok;

	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	st = SSL_CTX_get_cert_store(ctx);
	for (int i = 0; i < n_roots; i++)
		X509_STORE_add_cert(st, roots[i]->cert);
	ok = leaf_make(issuer, ns, sa, &leaf, &key) && SSL_CTX_use_certificate(ctx, leaf) == 1 &&
	     SSL_CTX_use_PrivateKey(ctx, key) == 1;
	X509_free(leaf);
	EVP_PKEY_free(key);
	if (!ok) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

static bool pem_write(const char *path, X509 *cert, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");
	bool ok;

	if (!f)
		return false;
	ok = cert ? PEM_write_X509(f, cert) == 1 : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
	fclose(f);
	return ok;
}

/* ---- the world: pods, directory, identities ---- */

struct wpod {
	const char *ns, *name, *sa;
	const char *ip4, *ip6;
	int node;			/* 0, 1; -1 not in the mesh */
	bool enrolled, served;
	int netns;			/* fd, -1: the test's netns */
	SSL_CTX *ctx;			/* its identity */
	uint16_t out_port;		/* its outbound listener (127.0.0.1:port), 0 none */
	int lfds[4];
	int n_lfds;
};

struct odst {
	uint16_t port;			/* the client's source port on the outbound listener */
	struct tunnel_addr dst;
};

struct world;

struct node {
	struct world *w;
	int id;
	struct tunnel *t;
};

struct world {
	struct wpod pods[10];
	int n_pods;
	struct ca ca, ca2;
	SSL_CTX *wrong_server_ctx;	/* Q presents this when set */
	atomic_int deny_status;		/* authorize answer */
	atomic_int authz_calls;
	char authz_src[TUNNEL_ID_MAX];
	pthread_mutex_t mu;
	struct odst od[1024];
	int n_od;
	int home;			/* fd of the test's netns */
	struct node nodes[2];
	struct loop *loop;
	struct loop_io call_io;
	int call_fd;
	pthread_t thr;
	bool running;
	void (*call_fn)(struct world *w, void *arg);
	void *call_arg;
	atomic_int call_done;
};

static struct wpod *pod_by_ip(struct world *w, const struct sl_ip *ip)
{
	char s[INET6_ADDRSTRLEN];

	inet_ntop(ip->family == SL_AF_INET6 ? AF_INET6 : AF_INET, ip->addr.octets, s, sizeof(s));
	for (int i = 0; i < w->n_pods; i++) {
		struct wpod *p = &w->pods[i];

		if ((p->ip4 && !strcmp(p->ip4, s)) || (p->ip6 && !strcmp(p->ip6, s)))
			return p;
	}
	return NULL;
}

static struct wpod *pod_named(struct world *w, const char *name)
{
	for (int i = 0; i < w->n_pods; i++)
		if (!strcmp(w->pods[i].name, name))
			return &w->pods[i];
	return NULL;
}

static int op_orig_dst(void *arg, int fd, struct tunnel_addr *dst, struct tunnel_addr *vip)
{
	(void)vip;
	struct node *n = arg;
	struct world *w = n->w;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	uint16_t port;
	int r = -ENOENT;

	if (getpeername(fd, (struct sockaddr *)&ss, &len))
		return -errno;
	port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	pthread_mutex_lock(&w->mu);
	for (int i = 0; i < w->n_od; i++)
		if (w->od[i].port == port) {
			*dst = w->od[i].dst;
			r = 0;
		}
	pthread_mutex_unlock(&w->mu);
	return r;
}

static int op_lookup(void *arg, const struct sl_ip *ip, struct tunnel_workload *wl)
{
	struct node *n = arg;
	struct wpod *p = pod_by_ip(n->w, ip);

	if (!p || !p->ns)
		return -ENOENT;
	snprintf(wl->ns, sizeof(wl->ns), "%s", p->ns);
	snprintf(wl->name, sizeof(wl->name), "%s", p->name);
	snprintf(wl->service_account, sizeof(wl->service_account), "%s", p->sa);
	if (!strcmp(p->name, "server-0"))
		snprintf(wl->service, sizeof(wl->service), "server.default.svc.cluster.local");
	wl->enrolled = p->enrolled;
	wl->local = p->node == n->id;
	return 0;
}

static int op_pod_socket(void *arg, const struct sl_ip *ip, int family)
{
	struct node *n = arg;
	struct wpod *p = pod_by_ip(n->w, ip);
	int fd, err;

	if (!p)
		return -ENOENT;
	if (p->netns >= 0 && setns(p->netns, CLONE_NEWNET))
		return -errno;
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	err = errno;
	if (p->netns >= 0 && setns(n->w->home, CLONE_NEWNET))
		abort();		/* a thread stuck in the wrong netns */
	return fd < 0 ? -err : fd;
}

static struct ssl_ctx_st *op_ctx(struct node *n, const char *ns, const char *sa, bool server)
{
	for (int i = 0; i < n->w->n_pods; i++) {
		struct wpod *p = &n->w->pods[i];

		if (p->ns && !strcmp(p->ns, ns) && !strcmp(p->sa, sa) && p->ctx) {
			SSL_CTX *ctx = p->ctx;

			if (server && n->w->wrong_server_ctx && !strcmp(sa, "server"))
				ctx = n->w->wrong_server_ctx;
			SSL_CTX_up_ref(ctx);	/* a new reference, as identity gives */
			return ctx;
		}
	}
	return NULL;
}

static struct ssl_ctx_st *op_client_ctx(void *arg, const char *ns, const char *sa)
{
	return op_ctx(arg, ns, sa, false);
}

static struct ssl_ctx_st *op_server_ctx(void *arg, const char *ns, const char *sa)
{
	return op_ctx(arg, ns, sa, true);
}

/* The peer's URI SAN; compared with expected when given. */
static int op_peer_check(void *arg, struct ssl_st *ssl, const char *expected, char *out,
			 size_t out_len)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);
	GENERAL_NAMES *names;
	int r = -EACCES;

	(void)arg;
	out[0] = '\0';
	if (!peer || SSL_get_verify_result(ssl) != X509_V_OK)
		return -EACCES;
	names = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);

		if (g->type != GEN_URI)
			continue;
		snprintf(out, out_len, "%.*s", ASN1_STRING_length(g->d.uniformResourceIdentifier),
			 (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier));
		r = expected && strcmp(out, expected) ? -EACCES : 0;
		break;
	}
	GENERAL_NAMES_free(names);
	return r;
}

static int op_authorize(void *arg, const struct tunnel_authz *a)
{
	struct node *n = arg;

	n->w->authz_calls++;
	if (a->src_identity)
		snprintf(n->w->authz_src, sizeof(n->w->authz_src), "%s", a->src_identity);
	return n->w->deny_status;
}

static const struct tunnel_ops test_ops = {
	.orig_dst = op_orig_dst,
	.lookup = op_lookup,
	.pod_socket = op_pod_socket,
	.client_ctx = op_client_ctx,
	.server_ctx = op_server_ctx,
	.peer_check = op_peer_check,
	.authorize = op_authorize,
};

/* ---- sockets ---- */

static int ip_to_sl(const char *s, struct sl_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (inet_pton(AF_INET, s, &ip->addr.v4) == 1) {
		ip->family = SL_AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, ip->addr.octets) == 1) {
		ip->family = SL_AF_INET6;
		return 0;
	}
	return -EINVAL;
}

/* A listening socket; transparent for 15006-style listeners. */
static int listen_on(const char *ip, uint16_t port, bool transparent)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = fx_sockaddr(ip, port, &ss, &len), fd, one = 1;

	if (fam < 0)
		return fam;
	fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fam == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (transparent)
		setsockopt(fd, fam == AF_INET6 ? SOL_IPV6 : SOL_IP,
			   fam == AF_INET6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 512)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static uint16_t local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	getsockname(fd, (struct sockaddr *)&ss, &len);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_MS / 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Connect like an app in pod p to dst:dport: to p's outbound listener, with
 * the original destination registered for the directory. Blocking fd with
 * timeouts, or -errno. */
static int dial(struct world *w, struct wpod *p, const char *dst, uint16_t dport)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct odst od = { 0 };
	int fd, r;

	if (ip_to_sl(dst, &od.dst.ip))
		return -EINVAL;
	od.dst.port = dport;
	if (p->netns >= 0 && setns(p->netns, CLONE_NEWNET))
		return -errno;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->netns >= 0 && setns(w->home, CLONE_NEWNET))
		abort();
	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	fx_sockaddr("127.0.0.1", 0, &ss, &len);
	if (bind(fd, (struct sockaddr *)&ss, len)) {
		r = -errno;
		close(fd);
		return r;
	}
	od.port = local_port(fd);
	pthread_mutex_lock(&w->mu);
	if (w->n_od < (int)(sizeof(w->od) / sizeof(w->od[0])))
		w->od[w->n_od++] = od;
	pthread_mutex_unlock(&w->mu);
	fx_sockaddr("127.0.0.1", p->out_port, &ss, &len);
	if (connect(fd, (struct sockaddr *)&ss, len)) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* Position-determined test bytes, so both ends can check any stream. */
static void gen_fill(uint64_t seed, uint64_t pos, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++, pos++) {
		uint64_t x = (pos >> 3) + seed * 0x9e3779b97f4a7c15ull;

		x ^= x >> 30;
		x *= 0xbf58476d1ce4e5b9ull;
		x ^= x >> 27;
		p[i] = (uint8_t)(x >> (8 * (pos & 7)));
	}
}

/* Send n test bytes and read n back (an echo), both at once; half-close after
 * sending when shut; then expect EOF when want_eof. 0 or -1 (with output). */
static int xfer(int fd, size_t n, uint64_t seed, bool shut, bool want_eof)
{
	static uint8_t tx[65536], rx[65536], exp[65536];
	size_t sent = 0, rcvd = 0, txlen = 0, txoff = 0;
	bool eof = false, shut_done = false;
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	while (rcvd < n || (want_eof && !eof)) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (sent < n || txoff < txlen)
			pfd.events |= POLLOUT;
		if (shut && sent == n && txoff == txlen && !shut_done) {
			shutdown(fd, SHUT_WR);
			shut_done = true;
		}
		if (poll(&pfd, 1, IO_TIMEOUT_MS) <= 0) {
			printf("xfer: timeout at sent %zu received %zu of %zu\n", sent, rcvd, n);
			goto fail;
		}
		if ((pfd.revents & POLLOUT) && (sent < n || txoff < txlen)) {
			if (txoff == txlen) {
				txlen = MIN_SZ(sizeof(tx), n - sent);
				gen_fill(seed, sent, tx, txlen);
				sent += txlen;
				txoff = 0;
			}
			r = send(fd, tx + txoff, txlen - txoff, MSG_NOSIGNAL);
			if (r > 0)
				txoff += (size_t)r;
			else if (r < 0 && errno != EAGAIN) {
				printf("xfer: send: %s\n", strerror(errno));
				goto fail;
			}
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			r = read(fd, rx, sizeof(rx));
			if (r == 0) {
				eof = true;
				if (rcvd < n) {
					printf("xfer: EOF after %zu of %zu bytes\n", rcvd, n);
					goto fail;
				}
			} else if (r < 0 && errno != EAGAIN) {
				printf("xfer: read: %s after %zu of %zu\n", strerror(errno), rcvd, n);
				goto fail;
			} else if (r > 0) {
				if (rcvd + (size_t)r > n) {
					printf("xfer: %zu bytes too many\n", rcvd + (size_t)r - n);
					goto fail;
				}
				gen_fill(seed, rcvd, exp, (size_t)r);
				if (memcmp(rx, exp, (size_t)r)) {
					printf("xfer: corrupt bytes near offset %zu\n", rcvd);
					goto fail;
				}
				rcvd += (size_t)r;
			}
		}
	}
	fcntl(fd, F_SETFL, fl);
	return 0;
fail:
	fcntl(fd, F_SETFL, fl);
	return -1;
}

/* Read until EOF or error within the socket timeout: 0 EOF, -errno. */
static int read_to_end(int fd, char *out, size_t cap, size_t *got)
{
	size_t n = 0;

	for (;;) {
		char tmp[4096];
		ssize_t r = read(fd, tmp, sizeof(tmp));

		if (r == 0)
			break;
		if (r < 0) {
			if (got)
				*got = n;
			return -errno;
		}
		if (out && n + (size_t)r < cap)
			memcpy(out + n, tmp, (size_t)r);
		n += (size_t)r;
	}
	if (out && cap)
		out[n < cap ? n : cap - 1] = '\0';
	if (got)
		*got = n;
	return 0;
}

/* ---- apps: echo, greet, rst, sink; one epoll thread ---- */

enum app_mode { APP_ECHO, APP_GREET, APP_RST, APP_SINK, APP_STALL, APP_FLOOD };

#define FLOOD_BYTES (64u << 20)

struct aconn {
	int fd;
	enum app_mode mode;
	uint8_t buf[65536];
	size_t off, len;
	uint64_t count;
};

struct apps {
	int ep, stop_fd;
	pthread_t thr;
	int lfd[16];
	enum app_mode mode[16];
	int n;
	pthread_mutex_t mu;
	char last_peer[64];
	atomic_int resets;
	atomic_long greet_count;	/* -1 until a greet connection ended */
	atomic_long sink_count;
	atomic_long flood_sent;
	atomic_int accepted;
	int stalled[8];
	int n_stalled;
};

static struct apps apps;

static void app_close(struct aconn *c, bool rst)
{
	epoll_ctl(apps.ep, EPOLL_CTL_DEL, c->fd, NULL);
	if (rst) {
		struct linger lg = { 1, 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	free(c);
}

static void app_event(struct aconn *c, uint32_t ev)
{
	struct epoll_event e = { .data.ptr = c };
	ssize_t r;

	if (c->mode == APP_FLOOD && c->count < FLOOD_BYTES) {
		size_t n = MIN_SZ(sizeof(c->buf), FLOOD_BYTES - c->count);

		gen_fill(99, c->count, c->buf, n);
		r = send(c->fd, c->buf, n, MSG_NOSIGNAL);
		if (r < 0 && errno != EAGAIN) {
			app_close(c, false);
			return;
		}
		if (r > 0)
			c->count += (uint64_t)r;
		apps.flood_sent = (long)c->count;
		if (c->count == FLOOD_BYTES) {
			shutdown(c->fd, SHUT_WR);
			e.events = EPOLLIN;
			epoll_ctl(apps.ep, EPOLL_CTL_MOD, c->fd, &e);
		}
		return;
	}
	if (c->mode == APP_FLOOD) {
		r = read(c->fd, c->buf, sizeof(c->buf));
		if (r == 0 || (r < 0 && errno != EAGAIN))
			app_close(c, false);
		return;
	}
	if (c->mode == APP_RST) {
		r = read(c->fd, c->buf, sizeof(c->buf));
		if (r != 0 && !(r < 0 && errno == EAGAIN))
			app_close(c, true);
		return;
	}
	if (c->mode == APP_ECHO && c->off < c->len) {
		r = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (r < 0 && errno != EAGAIN) {
			app_close(c, false);
			return;
		}
		if (r > 0)
			c->off += (size_t)r;
		if (c->off < c->len)
			return;
		c->off = c->len = 0;
		e.events = EPOLLIN;
		epoll_ctl(apps.ep, EPOLL_CTL_MOD, c->fd, &e);
	}
	if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->mode != APP_ECHO)
		return;
	r = read(c->fd, c->buf, sizeof(c->buf));
	if (r < 0) {
		if (errno == EAGAIN)
			return;
		if (errno == ECONNRESET)
			apps.resets++;
		app_close(c, false);
		return;
	}
	if (r == 0) {
		if (c->mode == APP_GREET)
			apps.greet_count = (long)c->count;
		if (c->mode == APP_SINK)
			apps.sink_count = (long)c->count;
		shutdown(c->fd, SHUT_WR);
		app_close(c, false);
		return;
	}
	c->count += (uint64_t)r;
	if (c->mode != APP_ECHO)
		return;
	c->len = (size_t)r;
	c->off = 0;
	r = send(c->fd, c->buf, c->len, MSG_NOSIGNAL);
	if (r > 0)
		c->off = (size_t)r;
	if (c->off < c->len) {
		e.events = EPOLLOUT;
		epoll_ctl(apps.ep, EPOLL_CTL_MOD, c->fd, &e);
	} else {
		c->off = c->len = 0;
	}
}

static void *apps_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(apps.ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p == &apps.stop_fd)
				return NULL;
			if ((char *)p >= (char *)apps.lfd && (char *)p < (char *)(apps.lfd + 16)) {
				int idx = (int)((int *)p - apps.lfd);
				struct sockaddr_storage ss;
				socklen_t len = sizeof(ss);
				int fd = accept4(apps.lfd[idx], (struct sockaddr *)&ss, &len,
						 SOCK_NONBLOCK | SOCK_CLOEXEC);
				struct aconn *c;
				struct epoll_event e = { .events = EPOLLIN };

				if (fd < 0)
					continue;
				if (apps.mode[idx] == APP_STALL && apps.n_stalled < 8) {
					apps.stalled[apps.n_stalled++] = fd;	/* never read */
					continue;
				}
				pthread_mutex_lock(&apps.mu);
				fx_addr_str(&ss, apps.last_peer, sizeof(apps.last_peer));
				pthread_mutex_unlock(&apps.mu);
				apps.accepted++;
				c = calloc(1, sizeof(*c));
				c->fd = fd;
				c->mode = apps.mode[idx];
				if (c->mode == APP_FLOOD)
					e.events = EPOLLOUT;
				e.data.ptr = c;
				epoll_ctl(apps.ep, EPOLL_CTL_ADD, fd, &e);
				if (c->mode == APP_GREET) {
					if (send(fd, "hello", 5, MSG_NOSIGNAL) != 5)
						printf("app: greet send failed\n");
					shutdown(fd, SHUT_WR);
				}
				continue;
			}
			app_event(p, evs[i].events);
		}
	}
}

static bool apps_add(const char *ip, uint16_t port, enum app_mode mode)
{
	struct epoll_event e = { .events = EPOLLIN };
	int fd = listen_on(ip, port, false);

	if (!ASSERT_GE(fd, 0, "app listen"))
		return false;
	apps.lfd[apps.n] = fd;
	apps.mode[apps.n] = mode;
	e.data.ptr = &apps.lfd[apps.n];
	apps.n++;
	return !epoll_ctl(apps.ep, EPOLL_CTL_ADD, fd, &e);
}

static bool apps_start(void)
{
	struct epoll_event e = { .events = EPOLLIN };

	apps.ep = epoll_create1(EPOLL_CLOEXEC);
	apps.stop_fd = eventfd(0, EFD_CLOEXEC);
	apps.greet_count = -1;
	apps.sink_count = -1;
	pthread_mutex_init(&apps.mu, NULL);
	e.data.ptr = &apps.stop_fd;
	epoll_ctl(apps.ep, EPOLL_CTL_ADD, apps.stop_fd, &e);
	return !pthread_create(&apps.thr, NULL, apps_main, NULL);
}

static void apps_stop(void)
{
	uint64_t one = 1;

	if (write(apps.stop_fd, &one, sizeof(one)) != sizeof(one))
		return;
	pthread_join(apps.thr, NULL);
	for (int i = 0; i < apps.n; i++)
		close(apps.lfd[i]);
	for (int i = 0; i < apps.n_stalled; i++)
		close(apps.stalled[i]);
	close(apps.ep);
	close(apps.stop_fd);
}

static void last_peer(char *buf, size_t len)
{
	pthread_mutex_lock(&apps.mu);
	snprintf(buf, len, "%s", apps.last_peer);
	pthread_mutex_unlock(&apps.mu);
}

/* Poll v (an atomic) until it equals want, or ms pass. */
#define WAIT_EQ(v, want, ms)                                                               \
	({                                                                                 \
		long ___w = (long)(want);                                                   \
		for (int ___i = 0; ___i < (ms) / 10 && (long)(v) != ___w; ___i++)          \
			usleep(10000);                                                      \
		(long)(v) == ___w;                                                          \
	})

/* ---- the loop thread ---- */

static void call_cb(struct loop_io *io, uint32_t ev)
{
	struct world *w = io->arg;
	uint64_t v;

	(void)ev;
	if (read(w->call_fd, &v, sizeof(v)) != sizeof(v))
		return;
	w->call_fn(w, w->call_arg);
	w->call_done = 1;
}

/* Run fn on the loop thread and wait for it. */
static void wcall(struct world *w, void (*fn)(struct world *, void *), void *arg)
{
	uint64_t one = 1;

	if (!w->running) {
		fn(w, arg);
		return;
	}
	w->call_fn = fn;
	w->call_arg = arg;
	w->call_done = 0;
	if (write(w->call_fd, &one, sizeof(one)) != sizeof(one))
		return;
	while (!w->call_done)
		usleep(1000);
}

static void *loop_main(void *arg)
{
	struct world *w = arg;

	loop_run(w->loop);
	return NULL;
}

static void stop_fn(struct world *w, void *arg)
{
	(void)arg;
	loop_stop(w->loop);
}

static struct world W;

static struct wpod *wpod_add(const char *ns, const char *name, const char *sa, const char *ip4,
			     const char *ip6, int node, bool enrolled)
{
	struct wpod *p = &W.pods[W.n_pods++];

	memset(p, 0, sizeof(*p));
	p->ns = ns;
	p->name = name;
	p->sa = sa;
	p->ip4 = ip4;
	p->ip6 = ip6;
	p->node = node;
	p->enrolled = enrolled;
	p->netns = -1;
	return p;
}

/* Give pod p to its node's tunnel with the listeners in p->lfds. */
static bool wpod_serve(struct wpod *p, const enum tunnel_role *roles)
{
	struct tunnel_pod tp = { .ns = p->ns, .name = p->name, .service_account = p->sa };
	struct sl_ip ips[2];
	size_t n = 0;

	if (p->ip4)
		ip_to_sl(p->ip4, &ips[n++]);
	if (p->ip6)
		ip_to_sl(p->ip6, &ips[n++]);
	tp.ips = ips;
	tp.n_ips = n;
	for (int i = 0; i < p->n_lfds; i++) {
		tp.listeners[i].fd = p->lfds[i];
		tp.listeners[i].role = roles[i];
	}
	tp.n_listeners = (size_t)p->n_lfds;
	p->served = true;
	return ASSERT_OK(tunnel_pod_add(W.nodes[p->node].t, &tp), "tunnel_pod_add");
}

static bool netns_enter_new(void)
{
	struct ifreq ifr = { 0 };
	int fd;

	if (geteuid() != 0) {
		test_skip("needs root (network namespaces, SO_MARK, IP_TRANSPARENT)");
		return false;
	}
	if (unshare(CLONE_NEWNET)) {
		test_skip("unshare(CLONE_NEWNET): %s", strerror(errno));
		return false;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	ioctl(fd, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= IFF_UP;
	ioctl(fd, SIOCSIFFLAGS, &ifr);
	close(fd);
	return true;
}

struct setup_opts {
	struct tunnel_opts topts;
	bool untrusted_client;		/* P's certificate from a CA node 1 does not trust */
	bool wrong_server;		/* Q presents a valid certificate of another identity */
	bool hbone_any;			/* Q's HBONE listener on 0.0.0.0 (reaches G too) */
};

/* The standard world: see the top of the file. */
static bool setup(const struct setup_opts *so)
{
	static const enum tunnel_role out_roles[] = { TUNNEL_LISTEN_OUTBOUND };
	static const enum tunnel_role hb_roles[] = { TUNNEL_LISTEN_HBONE, TUNNEL_LISTEN_HBONE };
	const struct ca *roots1[] = { &W.ca }, *roots2[] = { &W.ca, &W.ca2 };
	struct wpod *p, *q, *r;
	struct epoll_event dummy;

	(void)dummy;
	log_set_level(getenv("SL_TEST_DEBUG") ? LOG_DEBUG : LOG_WARN);
	if (!netns_enter_new())
		return false;
	signal(SIGPIPE, SIG_IGN);
	if (fx_sh("ip -6 addr add fd00::2/128 dev lo nodad && ip -6 addr add fd00::3/128 dev lo nodad"
		  " && ip -6 addr add fd00::4/128 dev lo nodad && ip -6 addr add fd00::5/128 dev lo nodad"
		  " && ip -6 addr add fd00::8/128 dev lo nodad")) {
		test_skip("cannot add IPv6 addresses to lo");
		return false;
	}
	for (const char *const *ip = (const char *const[]){ "fd00::2", "fd00::3", "fd00::4", "fd00::5", "fd00::8", NULL };
	     *ip; ip++)
		fx_wait_local6(*ip);
	pthread_mutex_init(&W.mu, NULL);
	W.home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (!ASSERT_TRUE(ca_make(&W.ca, "mesh root") && ca_make(&W.ca2, "other root"), "CAs"))
		return false;
	p = wpod_add("default", "client-0", "client", "127.0.0.2", "fd00::2", 0, true);
	q = wpod_add("default", "server-0", "server", "127.0.0.3", "fd00::3", 1, true);
	r = wpod_add("default", "local-0", "local", "127.0.0.4", "fd00::4", 0, true);
	wpod_add(NULL, "outside", NULL, "127.0.0.5", "fd00::5", -1, false);
	wpod_add("default", "ghost-0", "server", "127.0.0.9", NULL, 1, true);
	wpod_add("default", "slow-0", "slow", "127.0.0.7", NULL, 1, true);
	wpod_add("default", "py-0", "py", "127.0.0.8", "fd00::8", 1, true);
	p->ctx = ctx_make(so && so->untrusted_client ? &W.ca2 : &W.ca, roots2, 2, p->ns, p->sa);
	q->ctx = ctx_make(&W.ca, roots1, 1, q->ns, q->sa);
	r->ctx = ctx_make(&W.ca, roots1, 1, r->ns, r->sa);
	if (so && so->wrong_server)
		W.wrong_server_ctx = ctx_make(&W.ca, roots1, 1, "default", "other");
	if (!ASSERT_TRUE(p->ctx && q->ctx && r->ctx, "contexts"))
		return false;

	if (!ASSERT_OK(loop_new(&W.loop), "loop_new"))
		return false;
	for (int i = 0; i < 2; i++) {
		W.nodes[i].w = &W;
		W.nodes[i].id = i;
		if (!ASSERT_OK(tunnel_new(&W.nodes[i].t, W.loop, &test_ops, &W.nodes[i],
					  so ? &so->topts : NULL), "tunnel_new"))
			return false;
	}
	/* P: outbound listener. Q: HBONE listeners. R: served, no listener needed. */
	p->lfds[p->n_lfds++] = listen_on("127.0.0.1", 0, false);
	p->out_port = local_port(p->lfds[0]);
	q->lfds[q->n_lfds++] = listen_on(so && so->hbone_any ? "0.0.0.0" : "127.0.0.3", 15008, false);
	q->lfds[q->n_lfds++] = listen_on("fd00::3", 15008, false);
	if (!ASSERT_GE(p->lfds[0], 0, "listen P") || !ASSERT_GE(q->lfds[0], 0, "listen Q") ||
	    !ASSERT_GE(q->lfds[1], 0, "listen Q6"))
		return false;
	if (!wpod_serve(p, out_roles) || !wpod_serve(q, hb_roles) || !wpod_serve(r, out_roles))
		return false;

	if (!apps_start() || !apps_add("127.0.0.3", 8080, APP_ECHO) ||
	    !apps_add("fd00::3", 8080, APP_ECHO) || !apps_add("127.0.0.3", 8081, APP_GREET) ||
	    !apps_add("127.0.0.3", 8082, APP_RST) || !apps_add("127.0.0.4", 8080, APP_ECHO) ||
	    !apps_add("127.0.0.5", 8080, APP_ECHO) || !apps_add("127.0.0.3", 8084, APP_SINK) ||
	    !apps_add("127.0.0.3", 8085, APP_STALL) || !apps_add("127.0.0.3", 8086, APP_FLOOD))
		return false;

	W.call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (loop_add(W.loop, &W.call_io, W.call_fd, EPOLLIN, call_cb, &W))
		return false;
	if (pthread_create(&W.thr, NULL, loop_main, &W))
		return false;
	W.running = true;
	return true;
}

static void teardown(void)
{
	if (W.running) {
		wcall(&W, stop_fn, NULL);
		pthread_join(W.thr, NULL);
		W.running = false;
	}
	apps_stop();
	for (int i = 0; i < 2; i++)
		tunnel_free(W.nodes[i].t);
	if (W.loop) {
		loop_del(W.loop, &W.call_io);
		close(W.call_fd);
		loop_free(W.loop);
	}
	for (int i = 0; i < W.n_pods; i++) {
		SSL_CTX_free(W.pods[i].ctx);
		for (int j = 0; j < W.pods[i].n_lfds; j++)
			close(W.pods[i].lfds[j]);
		if (W.pods[i].netns >= 0)
			close(W.pods[i].netns);
	}
	SSL_CTX_free(W.wrong_server_ctx);
	ca_free(&W.ca);
	ca_free(&W.ca2);
	if (W.home >= 0)
		close(W.home);
	if (__lsan_do_recoverable_leak_check)
		ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0, "no leaks");
}

struct stats_req {
	int node;
	struct tunnel_stats st;
};

static void stats_fn(struct world *w, void *arg)
{
	struct stats_req *r = arg;

	tunnel_stats_get(w->nodes[r->node].t, &r->st);
}

static struct tunnel_stats stats(int node)
{
	struct stats_req r = { .node = node };

	wcall(&W, stats_fn, &r);
	return r.st;
}

/* Wait (bounded) until node's open connection count reaches want, and no
 * closed one still waits for its stream to end. */
static bool wait_conns(int node, uint64_t want)
{
	struct tunnel_stats st;

	for (int i = 0; i < 500; i++) {
		st = stats(node);
		if (st.conns_open == want && !st.conns_closing)
			return true;
		usleep(10000);
	}
	return ASSERT_EQ(st.conns_open, want, "open connections") &&
	       ASSERT_EQ(st.conns_closing, 0, "closed connections waiting on their stream");
}

/* ---- tests ---- */

void test_tunnel_hbone_echo(void)
{
	struct wpod *p;
	char peer[64];
	int fd;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial v4"))
		goto out;
	ASSERT_OK(xfer(fd, 1000, 1, true, true), "echo v4");
	close(fd);
	last_peer(peer, sizeof(peer));
	ASSERT_HAS(peer, "127.0.0.2:", "app sees the client pod's IP");

	fd = dial(&W, p, "fd00::3", 8080);
	if (!ASSERT_GE(fd, 0, "dial v6"))
		goto out;
	ASSERT_OK(xfer(fd, 100000, 2, true, true), "echo v6");
	close(fd);
	last_peer(peer, sizeof(peer));
	ASSERT_HAS(peer, "[fd00::2]:", "app sees the client pod's IPv6");

	ASSERT_EQ(stats(0).hbone_clients_total, 2, "one HBONE connection per destination IP");
	ASSERT_EQ(stats(1).hbone_servers_total, 2, "server side");
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
	ASSERT_EQ(stats(0).conns_failed + stats(1).conns_failed, 0, "no failures");
out:
	teardown();
}

void test_tunnel_hbone_large(void)
{
	const char *mb = getenv("SL_BENCH_MB");
	size_t n = (size_t)(mb ? atol(mb) : 64) << 20;
	struct timespec t0, t1;
	double secs;
	struct wpod *p;
	int fd;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_OK(xfer(fd, n, 42, true, true), "large echo, checked both ways");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(fd);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("echo %zu MiB each way through HBONE: %.2f s, %.1f MB/s each way\n", n >> 20, secs,
	       (double)n / secs / 1e6);

	/* One way only, into a sink: the throughput of one stream. */
	fd = dial(&W, p, "127.0.0.3", 8084);
	if (!ASSERT_GE(fd, 0, "dial sink"))
		goto out;
	{
		static uint8_t buf[1 << 16];
		size_t sent = 0;

		gen_fill(7, 0, buf, sizeof(buf));
		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (sent < n) {
			ssize_t r = send(fd, buf, MIN_SZ(sizeof(buf), n - sent), MSG_NOSIGNAL);

			if (!ASSERT_GE(r, 1, "send"))
				break;
			sent += (size_t)r;
		}
		shutdown(fd, SHUT_WR);
		ASSERT_OK(read_to_end(fd, NULL, 0, NULL), "sink closes");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		ASSERT_EQ(apps.sink_count, (long)n, "sink got everything");
		printf("one stream, %zu MiB one way through HBONE client+server: %.2f s, %.1f MB/s\n",
		       n >> 20, secs, (double)n / secs / 1e6);
	}
	close(fd);
out:
	teardown();
}

struct mem_req {
	int node;
	bool trim;
	size_t freed;
	struct tunnel_mem m;
};

static void mem_fn(struct world *w, void *arg)
{
	struct mem_req *r = arg;

	if (r->trim)
		r->freed = tunnel_mem_trim(w->nodes[r->node].t);
	tunnel_mem_get(w->nodes[r->node].t, &r->m);
}

static struct mem_req mem(int node, bool trim)
{
	struct mem_req r = { .node = node, .trim = trim };

	wcall(&W, mem_fn, &r);
	return r;
}

/* Idle memory goes back (tunnel_mem_trim, from the agent's memory timer):
 * an HBONE session that carried bytes keeps a 256 KiB output area until
 * then, and a trimmed session takes it again when it next sends. */
void test_tunnel_mem_trim(void)
{
	struct mem_req r;
	struct wpod *p;
	int fd;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_OK(xfer(fd, 1 << 20, 5, true, true), "1 MiB echo");
	close(fd);
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
	for (int node = 0; node < 2; node++) {
		r = mem(node, false);
		ASSERT_EQ(r.m.conns, 0, "no connection left");
		ASSERT_EQ(r.m.relay_bufs, 0, "no relay buffer held by a closed connection");
		ASSERT_EQ(r.m.sessions, 1, "the HBONE session stays (pooled)");
		ASSERT_GE(r.m.session_out_bytes, 256 * 1024, "its output area with it");
		r = mem(node, true);
		ASSERT_EQ(r.m.session_out_bytes, 0, "trim: an idle session's output area is freed");
		ASSERT_GE(r.freed, 256 * 1024, "trim: freed bytes counted");
		r = mem(node, true);
		ASSERT_LE(r.m.spare_bufs, 8, "trim: spare relay buffers unused all period freed, a few kept");
	}
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial again"))
		goto out;
	ASSERT_OK(xfer(fd, 100000, 6, true, true), "echo over the trimmed session");
	close(fd);
	ASSERT_EQ(stats(0).hbone_clients_total, 1, "the same pooled HBONE connection");
	ASSERT_EQ(stats(0).conns_failed + stats(1).conns_failed, 0, "no failures");
out:
	teardown();
}

void test_tunnel_half_close(void)
{
	char buf[64];
	size_t got = 0;
	struct wpod *p;
	int fd;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	/* Client FIN first: the echo still flows back, then the app's FIN. */
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_OK(xfer(fd, 300000, 3, true, true), "client half-closes, echo completes");
	close(fd);

	/* Server FIN first: "hello" + EOF reach the client, which then still sends. */
	fd = dial(&W, p, "127.0.0.3", 8081);
	if (!ASSERT_GE(fd, 0, "dial greet"))
		goto out;
	ASSERT_OK(read_to_end(fd, buf, sizeof(buf), &got), "greeting then EOF");
	ASSERT_STREQ(buf, "hello", "greeting");
	{
		static uint8_t data[1 << 20];
		size_t sent = 0;

		while (sent < sizeof(data)) {
			ssize_t r = send(fd, data + sent, sizeof(data) - sent, MSG_NOSIGNAL);

			if (!ASSERT_GE(r, 1, "send after the server's FIN"))
				break;
			sent += (size_t)r;
		}
	}
	shutdown(fd, SHUT_WR);
	ASSERT_TRUE(WAIT_EQ(apps.greet_count, 1 << 20, 10000), "app got all bytes after its FIN");
	close(fd);
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
	ASSERT_EQ(stats(0).conns_failed + stats(1).conns_failed, 0, "closed cleanly");
out:
	teardown();
}

void test_tunnel_reset(void)
{
	struct linger lg = { 1, 0 };
	struct wpod *p;
	char c = 'x';
	int fd, r;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	/* The app resets: the client sees a reset. */
	fd = dial(&W, p, "127.0.0.3", 8082);
	if (!ASSERT_GE(fd, 0, "dial rst"))
		goto out;
	ASSERT_EQ(send(fd, &c, 1, 0), 1, "send");
	r = read_to_end(fd, NULL, 0, NULL);
	ASSERT_EQ(r, -ECONNRESET, "client sees the app's reset");
	close(fd);

	/* The client resets: the app sees a reset. */
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial echo"))
		goto out;
	ASSERT_OK(xfer(fd, 5000, 4, false, false), "echo");
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	ASSERT_TRUE(WAIT_EQ(apps.resets, 1, 5000), "app sees the client's reset");
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
out:
	teardown();
}

void test_tunnel_pool(void)
{
	enum { N = 150 };
	static int fds[N];
	struct tunnel_stats s0, s1;
	struct wpod *p;
	int n = 0;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	for (n = 0; n < N; n++) {
		fds[n] = dial(&W, p, "127.0.0.3", 8080);
		if (!ASSERT_GE(fds[n], 0, "dial"))
			goto close;
		if (!ASSERT_OK(xfer(fds[n], 1000 + (size_t)n, (uint64_t)n, false, false), "echo"))
			goto close;
	}
	s0 = stats(0);
	s1 = stats(1);
	ASSERT_EQ(s0.conns_open, N, "all open at once (client side)");
	ASSERT_EQ(s0.streams_open, N, "streams");
	ASSERT_EQ(s0.hbone_clients, 2, "100 streams per connection, then a second");
	ASSERT_EQ(s1.hbone_servers, 2, "server side");
	ASSERT_EQ(s1.conns_open, N, "all delivered");
	/* Every stream still works after the others. */
	for (int i = 0; i < N; i++)
		if (!ASSERT_OK(xfer(fds[i], 20000, (uint64_t)i + 1000, true, true), "echo again"))
			break;
close:
	for (int i = 0; i < n && i < N; i++)
		close(fds[i]);
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
	ASSERT_TRUE(WAIT_EQ(stats(0).conns_closing + stats(1).conns_closing, 0, 2000),
		    "no closed connection waits on its stream");
	s0 = stats(0);
	ASSERT_EQ(s0.streams_open, 0, "no streams left");
	ASSERT_EQ(s0.hbone_clients, 2, "connections stay pooled while idle");
	ASSERT_EQ(s0.conns_failed, 0, "no failures");
out:
	teardown();
}

/* The server refuses (503: nothing listens; 401: policy; 400: not this pod):
 * the client app's connection is reset. */
void test_tunnel_refusals(void)
{
	struct setup_opts so = { .hbone_any = true };
	struct wpod *p;
	char c = 'x';
	int fd;

	if (!setup(&so))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.3", 8083);
	if (!ASSERT_GE(fd, 0, "dial closed port"))
		goto out;
	ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "503: reset");
	close(fd);

	W.deny_status = 401;
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial denied"))
		goto out;
	ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "401: reset");
	close(fd);
	ASSERT_STREQ(W.authz_src, "spiffe://" TD "/ns/default/sa/client",
		     "policy sees the verified client identity");
	W.deny_status = 0;

	/* G is "on node 1" per the directory but not served there. */
	fd = dial(&W, p, "127.0.0.9", 8080);
	if (!ASSERT_GE(fd, 0, "dial ghost"))
		goto out;
	if (send(fd, &c, 1, MSG_NOSIGNAL) != 1)
		printf("send to ghost failed early (fine)\n");
	ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "400: reset");
	close(fd);
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
	ASSERT_EQ(stats(1).conns_failed, 3, "three refused on the server");
out:
	teardown();
}

void test_tunnel_wrong_server_identity(void)
{
	struct setup_opts so = { .wrong_server = true };
	struct wpod *p;
	int fd;

	if (!setup(&so))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "refused: reset");
	close(fd);
	ASSERT_EQ(stats(0).hbone_setup_failed, 1, "client refused the server");
	ASSERT_EQ(apps.accepted, 0, "nothing delivered");
out:
	teardown();
}

void test_tunnel_untrusted_client(void)
{
	struct setup_opts so = { .untrusted_client = true };
	struct wpod *p;
	int fd;

	if (!setup(&so))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "refused: reset");
	close(fd);
	ASSERT_TRUE(wait_conns(0, 0), "closed");
	ASSERT_GE(stats(1).hbone_setup_failed, 1, "server refused the client certificate");
	ASSERT_EQ(apps.accepted, 0, "nothing delivered");
out:
	teardown();
}

void test_tunnel_passthrough(void)
{
	struct wpod *p;
	char peer[64];
	int fd;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.5", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_OK(xfer(fd, 200000, 5, true, true), "echo through passthrough");
	close(fd);
	last_peer(peer, sizeof(peer));
	ASSERT_HAS(peer, "127.0.0.2:", "from the pod's IP");
	ASSERT_EQ(stats(0).hbone_clients_total, 0, "no tunnel");
	/* A refused connect reaches the app as a reset. */
	fd = dial(&W, p, "127.0.0.5", 8099);
	if (!ASSERT_GE(fd, 0, "dial a closed port"))
		goto out;
	ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "refused: reset");
	close(fd);
	ASSERT_TRUE(wait_conns(0, 0), "closed");
out:
	teardown();
}

void test_tunnel_same_node(void)
{
	struct wpod *p;
	char peer[64];
	int fd;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.4", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_OK(xfer(fd, 4 << 20, 6, true, true), "echo, same node");
	close(fd);
	last_peer(peer, sizeof(peer));
	ASSERT_HAS(peer, "127.0.0.2:", "from the client pod's IP");
	ASSERT_EQ(stats(0).hbone_clients_total, 0, "no TLS on the same node");
	ASSERT_EQ(W.authz_calls, 1, "policy asked");
	ASSERT_TRUE(wait_conns(0, 0), "closed");

	fd = dial(&W, p, "127.0.0.4", 8099);
	if (!ASSERT_GE(fd, 0, "dial a closed port"))
		goto out;
	ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "refused: reset");
	close(fd);

	W.deny_status = 403;
	fd = dial(&W, p, "127.0.0.4", 8080);
	if (!ASSERT_GE(fd, 0, "dial denied"))
		goto out;
	ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "denied: reset");
	close(fd);
out:
	teardown();
}

struct text {
	char *buf;
	size_t len;
	int node;
};

static void metrics_fn(struct world *w, void *arg)
{
	struct text *t = arg;
	FILE *f = open_memstream(&t->buf, &t->len);

	if (!f)
		return;
	tunnel_metrics_write(w->nodes[t->node].t, f);
	fclose(f);
}

void test_tunnel_metrics(void)
{
	struct text m0 = { .node = 0 }, m1 = { .node = 1 };
	struct wpod *p;
	int fd;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	for (int i = 0; i < 2; i++) {
		fd = dial(&W, p, "127.0.0.3", 8080);
		if (!ASSERT_GE(fd, 0, "dial"))
			goto out;
		ASSERT_OK(xfer(fd, 1000, 9, true, true), "echo");
		close(fd);
	}
	fd = dial(&W, p, "127.0.0.5", 8080);
	if (fd >= 0) {
		ASSERT_OK(xfer(fd, 10, 9, true, true), "echo passthrough");
		close(fd);
	}
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
	wcall(&W, metrics_fn, &m0);
	wcall(&W, metrics_fn, &m1);
	ASSERT_HAS(m0.buf, "# TYPE istio_tcp_connections_opened_total counter", "type line");
	ASSERT_HAS(m0.buf,
		   "istio_tcp_connections_opened_total{reporter=\"source\",source_workload=\"client-0\","
		   "source_workload_namespace=\"default\","
		   "source_principal=\"spiffe://cluster.local/ns/default/sa/client\","
		   "destination_workload=\"server-0\",destination_workload_namespace=\"default\","
		   "destination_principal=\"spiffe://cluster.local/ns/default/sa/server\","
		   "destination_service=\"server.default.svc.cluster.local\","
		   "connection_security_policy=\"mutual_tls\",request_protocol=\"tcp\"} 2",
		   "source-reported series");
	ASSERT_HAS(m0.buf, "istio_tcp_connections_closed_total{reporter=\"source\"", "closed");
	ASSERT_HAS(m0.buf, "request_protocol=\"tcp\"} 2000\n", "bytes (2 x 1000)");
	ASSERT_HAS(m0.buf, "istio_tcp_sent_bytes_total{", "sent");
	ASSERT_HAS(m0.buf, "istio_tcp_received_bytes_total{", "received");
	ASSERT_HAS(m0.buf,
		   "destination_workload=\"unknown\",destination_workload_namespace=\"unknown\","
		   "destination_principal=\"unknown\",destination_service=\"unknown\","
		   "connection_security_policy=\"none\"", "passthrough series");
	ASSERT_HAS(m1.buf,
		   "istio_tcp_received_bytes_total{reporter=\"destination\",source_workload=\"client-0\","
		   "source_workload_namespace=\"default\","
		   "source_principal=\"spiffe://cluster.local/ns/default/sa/client\","
		   "destination_workload=\"server-0\"", "destination-reported series");
	ASSERT_HAS(m1.buf, "connection_security_policy=\"mutual_tls\",request_protocol=\"tcp\"} 2000",
		   "destination bytes");
out:
	free(m0.buf);
	free(m1.buf);
	teardown();
}

struct rec {
	int node, n;
	struct tunnel_conn_info ci;
	char src_id[TUNNEL_ID_MAX], dst_id[TUNNEL_ID_MAX], state[32], svc[TUNNEL_NAME_MAX];
};

static int rec_cb(void *arg, const struct tunnel_conn_info *c)
{
	struct rec *r = arg;

	r->n++;
	r->ci = *c;
	snprintf(r->src_id, sizeof(r->src_id), "%s", c->src_identity);
	snprintf(r->dst_id, sizeof(r->dst_id), "%s", c->dst_identity);
	snprintf(r->state, sizeof(r->state), "%s", c->state);
	snprintf(r->svc, sizeof(r->svc), "%s", c->dst_service);
	return 0;
}

static void rec_fn(struct world *w, void *arg)
{
	struct rec *r = arg;

	tunnel_conn_foreach(w->nodes[r->node].t, rec_cb, r);
}

void test_tunnel_records(void)
{
	struct rec r0 = { .node = 0 }, r1 = { .node = 1 };
	char a[INET6_ADDRSTRLEN];
	struct wpod *p;
	int fd;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_OK(xfer(fd, 12345, 10, false, false), "echo");
	wcall(&W, rec_fn, &r0);
	wcall(&W, rec_fn, &r1);
	ASSERT_EQ(r0.n, 1, "one record on node 0");
	ASSERT_EQ(r0.ci.dir, TUNNEL_DIR_OUTBOUND, "outbound");
	ASSERT_EQ(r0.ci.path, TUNNEL_PATH_HBONE, "hbone");
	ASSERT_STREQ(r0.state, "relay", "state");
	ASSERT_STREQ(r0.src_id, "spiffe://cluster.local/ns/default/sa/client", "source identity");
	ASSERT_STREQ(r0.dst_id, "spiffe://cluster.local/ns/default/sa/server", "destination identity");
	ASSERT_STREQ(r0.svc, "server.default.svc.cluster.local", "service");
	ASSERT_STREQ(inet_ntop(AF_INET, &r0.ci.src.ip.addr.v4, a, sizeof(a)), "127.0.0.2", "src ip");
	ASSERT_STREQ(inet_ntop(AF_INET, &r0.ci.dst.ip.addr.v4, a, sizeof(a)), "127.0.0.3", "dst ip");
	ASSERT_EQ(r0.ci.dst.port, 8080, "dst port");
	ASSERT_EQ(r0.ci.bytes_to_dst, 12345, "bytes to destination");
	ASSERT_EQ(r0.ci.bytes_to_src, 12345, "bytes back");
	ASSERT_GE(r0.ci.start_ms, 1600000000000ull, "wall-clock start");
	ASSERT_EQ(r1.n, 1, "one record on node 1");
	ASSERT_EQ(r1.ci.dir, TUNNEL_DIR_INBOUND, "inbound");
	ASSERT_STREQ(r1.src_id, "spiffe://cluster.local/ns/default/sa/client", "verified peer");
	ASSERT_EQ(r1.ci.src.port, r0.ci.src.port, "client port from forwarded");
	ASSERT_EQ(r1.ci.bytes_to_dst, 12345, "server side bytes");
	shutdown(fd, SHUT_WR);
	r0.n = 0;
	for (int i = 0; i < 100; i++) {
		char buf[16];

		wcall(&W, rec_fn, &r0);
		if (r0.n && !strcmp(r0.state, "half-closed"))
			break;
		r0.n = 0;
		if (read(fd, buf, sizeof(buf)) == 0)
			break;
	}
	close(fd);
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "records go with the connections");
out:
	teardown();
}

/* ---- virtual clients: a Gateway's identity into the mesh ---- */

#define GW_ID "spiffe://cluster.local/ns/gw-ns/sa/gw-sluice"

struct vopen {
	const char *name, *src, *dst;	/* virtual client, source IP, destination IP */
	uint16_t port;
	int fd;
};

static void vadd_fn(struct world *w, void *arg)
{
	const struct tunnel_vclient v = { .ns = "gw-ns", .name = "gw", .service_account = "gw-sluice",
					  .workload = "gw-sluice", .workload_kind = "deployment" };

	(void)arg;
	ASSERT_OK(tunnel_vclient_add(w->nodes[0].t, &v), "tunnel_vclient_add");
	ASSERT_EQ(tunnel_vclient_add(w->nodes[0].t, &v), -EEXIST, "once");
}

static void vopen_fn(struct world *w, void *arg)
{
	struct vopen *o = arg;
	struct sl_ip src;
	struct tunnel_addr dst = { .port = o->port };

	ip_to_sl(o->src, &src);
	ip_to_sl(o->dst, &dst.ip);
	o->fd = tunnel_vclient_open(w->nodes[0].t, "gw-ns", o->name, &src, &dst);
}

static int vopen(const char *name, const char *src, const char *dst, uint16_t port)
{
	struct vopen o = { .name = name, .src = src, .dst = dst, .port = port };

	wcall(&W, vopen_fn, &o);
	return o.fd;
}

static int vname_cb(void *arg, const char *ns, const char *name)
{
	char *seen = arg;

	snprintf(seen + strlen(seen), 64, "%s/%s;", ns, name);
	return 0;
}

static void vremove_fn(struct world *w, void *arg)
{
	char seen[256] = "";

	(void)arg;
	tunnel_vclient_names(w->nodes[0].t, vname_cb, seen);
	ASSERT_STREQ(seen, "gw-ns/gw;", "the virtual clients listed, no pod");
	ASSERT_OK(tunnel_vclient_remove(w->nodes[0].t, "gw-ns", "gw"), "tunnel_vclient_remove");
	ASSERT_EQ(tunnel_vclient_remove(w->nodes[0].t, "gw-ns", "gw"), -ENOENT, "gone");
}

/* A virtual client (a Gateway's proxy, no netns, no listener) reaches an
 * enrolled pod of another node over HBONE with its own identity, from the
 * address it names, on pooled connections; a pod of its own node through
 * the policy check with that identity; anything else is left to the caller. */
void test_tunnel_vclient(void)
{
	const struct ca *roots[] = { &W.ca };
	struct rec r0 = { .node = 0 }, r1 = { .node = 1 };
	struct wpod *g;
	char peer[64];
	int fd, fds[3];

	if (!setup(NULL))
		goto out;
	/* its certificate, as the identity store would mint it */
	g = wpod_add("gw-ns", "gw", "gw-sluice", NULL, NULL, 0, false);
	g->ctx = ctx_make(&W.ca, roots, 1, g->ns, g->sa);
	if (!ASSERT_TRUE(g->ctx, "gateway context"))
		goto out;
	ASSERT_EQ(vopen("gw", "127.0.0.1", "127.0.0.3", 8080), -ENOENT, "not registered yet");
	wcall(&W, vadd_fn, NULL);

	/* another node: HBONE with the gateway's identity, from the node's address */
	fd = vopen("gw", "127.0.0.1", "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "open v4"))
		goto out;
	ASSERT_OK(xfer(fd, 5000, 21, false, false), "echo v4");
	wcall(&W, rec_fn, &r0);
	wcall(&W, rec_fn, &r1);
	ASSERT_EQ(r0.ci.path, TUNNEL_PATH_HBONE, "hbone");
	ASSERT_STREQ(r0.src_id, GW_ID, "source identity, node 0");
	ASSERT_STREQ(r1.src_id, GW_ID, "verified peer identity, node 1");
	ASSERT_STREQ(W.authz_src, GW_ID, "policy asked with the gateway's identity");
	ASSERT_OK(xfer(fd, 0, 0, true, true), "half-close");
	close(fd);
	last_peer(peer, sizeof(peer));
	ASSERT_HAS(peer, "127.0.0.1:", "app sees the node's address");

	/* pooled: several at once share the one connection */
	for (int i = 0; i < 3; i++)
		fds[i] = vopen("gw", "127.0.0.1", "127.0.0.3", 8080);
	for (int i = 0; i < 3; i++)
		if (ASSERT_GE(fds[i], 0, "open pooled")) {
			ASSERT_OK(xfer(fds[i], 1000, 30 + (uint64_t)i, true, true), "echo pooled");
			close(fds[i]);
		}
	ASSERT_EQ(stats(0).hbone_clients_total, 1, "one HBONE connection for all");

	fd = vopen("gw", "::1", "fd00::3", 8080);
	if (ASSERT_GE(fd, 0, "open v6")) {
		ASSERT_OK(xfer(fd, 70000, 22, true, true), "echo v6");
		close(fd);
		last_peer(peer, sizeof(peer));
		ASSERT_HAS(peer, "[::1]:", "app sees the node's IPv6 address");
	}
	ASSERT_EQ(stats(0).hbone_clients_total, 2, "one per destination IP");
	ASSERT_EQ(vopen("gw", "127.0.0.1", "fd00::3", 8080), -EAFNOSUPPORT, "families differ");

	/* this node: delivered directly, policy checked with its identity */
	W.authz_src[0] = 0;
	fd = vopen("gw", "127.0.0.1", "127.0.0.4", 8080);
	if (ASSERT_GE(fd, 0, "open same node")) {
		ASSERT_OK(xfer(fd, 3000, 23, true, true), "echo same node");
		close(fd);
		last_peer(peer, sizeof(peer));
		ASSERT_HAS(peer, "127.0.0.1:", "from the node's address");
	}
	ASSERT_STREQ(W.authz_src, GW_ID, "same node: policy asked with the gateway's identity");
	W.deny_status = 403;
	ASSERT_EQ(vopen("gw", "127.0.0.1", "127.0.0.4", 8080), -EACCES, "same node: denied");
	W.deny_status = 0;

	/* outside the mesh: the caller's own plain connection */
	ASSERT_EQ(vopen("gw", "127.0.0.1", "127.0.0.5", 8080), -ESRCH, "not enrolled");
	/* a pod and a virtual client do not share names */
	ASSERT_EQ(vopen("client-0", "127.0.0.1", "127.0.0.3", 8080), -ENOENT, "a pod is no virtual client");

	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
	ASSERT_EQ(stats(0).conns_failed + stats(1).conns_failed, 0, "no failures");
	wcall(&W, vremove_fn, NULL);
	ASSERT_EQ(vopen("gw", "127.0.0.1", "127.0.0.3", 8080), -ENOENT, "removed");
out:
	teardown();
}

/* Backpressure: a peer that does not read stops the other side after a
 * bounded amount, and the tunnel holds at most its buffers for it. */
void test_tunnel_backpressure(void)
{
	struct rec r0 = { .node = 0 }, r1 = { .node = 1 };
	struct wpod *p;
	size_t sent = 0;
	long last;
	int fd;

	if (!setup(NULL))
		goto out;
	p = pod_named(&W, "client-0");
	/* Client -> an app that never reads. */
	fd = dial(&W, p, "127.0.0.3", 8085);
	if (!ASSERT_GE(fd, 0, "dial stall"))
		goto out;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	{
		static uint8_t buf[1 << 16];
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };

		while (sent < (64u << 20) && poll(&pfd, 1, 500) == 1) {
			ssize_t n = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);

			if (n > 0)
				sent += (size_t)n;
		}
	}
	wcall(&W, rec_fn, &r0);
	wcall(&W, rec_fn, &r1);
	printf("stalled app: client wrote %zu KiB before blocking; node 0 holds %llu KiB, "
	       "node 1 holds %llu KiB\n", sent >> 10, (unsigned long long)r0.ci.buffered >> 10,
	       (unsigned long long)r1.ci.buffered >> 10);
	ASSERT_LE(sent, (48u << 20) - 1, "the client was stopped");
	ASSERT_LE(r0.ci.buffered, 128 * 1024, "client side: one relay buffer at most");
	ASSERT_LE(r1.ci.buffered, 5u << 20, "server side: the stream window at most");
	{
		struct linger lg = { 1, 0 };	/* bytes are stuck: abort, not FIN */

		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(fd);

	/* An app floods a client that does not read (yet). */
	fd = dial(&W, p, "127.0.0.3", 8086);
	if (!ASSERT_GE(fd, 0, "dial flood"))
		goto out;
	last = -1;
	for (int i = 0; i < 200 && apps.flood_sent != last; i++) {
		last = apps.flood_sent;
		usleep(100000);
	}
	r0.n = r1.n = 0;
	wcall(&W, rec_fn, &r0);
	wcall(&W, rec_fn, &r1);
	printf("flooding app: wrote %ld KiB before blocking; node 0 holds %llu KiB, node 1 holds "
	       "%llu KiB\n", (long)apps.flood_sent >> 10, (unsigned long long)r0.ci.buffered >> 10,
	       (unsigned long long)r1.ci.buffered >> 10);
	ASSERT_LE(apps.flood_sent, (48l << 20) - 1, "the app was stopped");
	ASSERT_LE(r0.ci.buffered, 5u << 20, "client side: the stream window at most");
	ASSERT_LE(r1.ci.buffered, 128 * 1024, "server side: one relay buffer at most");
	/* Now read it all, checked. */
	{
		static uint8_t buf[1 << 16], exp[1 << 16];
		size_t got = 0;
		ssize_t n;

		while ((n = read(fd, buf, sizeof(buf))) > 0) {
			gen_fill(99, got, exp, (size_t)n);
			if (!ASSERT_OK(memcmp(buf, exp, (size_t)n), "flood bytes"))
				break;
			got += (size_t)n;
		}
		ASSERT_EQ(got, FLOOD_BYTES, "everything arrived once the client read");
	}
	close(fd);
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
out:
	teardown();
}

/* An HBONE connection left idle past pool_idle_ms says GOAWAY and closes. */
void test_tunnel_idle_close(void)
{
	struct setup_opts so = { .topts.pool_idle_ms = 1000 };
	struct wpod *p;
	int fd;

	if (!setup(&so))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_OK(xfer(fd, 1000, 30, true, true), "echo");
	close(fd);
	ASSERT_EQ(stats(0).hbone_clients, 1, "pooled after the stream");
	ASSERT_TRUE(WAIT_EQ(stats(0).hbone_clients, 0, 5000), "closed when idle");
	ASSERT_TRUE(WAIT_EQ(stats(1).hbone_servers, 0, 5000), "server side closed too");
	ASSERT_EQ(stats(0).hbone_setup_failed + stats(1).hbone_setup_failed, 0, "cleanly");
	/* And a new connection is made on demand. */
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial again"))
		goto out;
	ASSERT_OK(xfer(fd, 1000, 31, true, true), "echo again");
	close(fd);
	ASSERT_EQ(stats(0).hbone_clients_total, 2, "a second connection");
out:
	teardown();
}

static void remove_fn(struct world *w, void *arg)
{
	ASSERT_OK(tunnel_pod_remove(w->nodes[0].t, "default", arg), "tunnel_pod_remove");
	ASSERT_EQ(tunnel_pod_remove(w->nodes[0].t, "default", arg), -ENOENT, "gone");
}

void test_tunnel_pod_remove(void)
{
	struct setup_opts so = { .topts.drain_ms = 1000 };
	struct wpod *p;
	int fd, fd2;
	char buf[8];

	if (!setup(&so))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.3", 8080);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_OK(xfer(fd, 1000, 11, false, false), "echo");
	wcall(&W, remove_fn, "client-0");
	/* Still working during the drain... */
	ASSERT_OK(xfer(fd, 1000, 12, false, false), "echo while draining");
	/* ...reset after it. */
	ASSERT_EQ(read(fd, buf, sizeof(buf)), -1, "reset after the drain");
	ASSERT_EQ(errno, ECONNRESET, "ECONNRESET");
	close(fd);
	/* No longer accepted: the listener is the pods module's, but unwatched. */
	fd2 = dial(&W, p, "127.0.0.3", 8080);
	if (fd2 >= 0) {
		struct pollfd pfd = { .fd = fd2, .events = POLLIN };

		send(fd2, "x", 1, MSG_NOSIGNAL);
		ASSERT_EQ(poll(&pfd, 1, 300), 0, "nothing answers");
		close(fd2);
	}
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
out:
	teardown();
}

void test_tunnel_setup_timeout(void)
{
	struct setup_opts so = { .topts.connect_timeout_ms = 300 };
	char path[300], log[4096] = "";
	struct timespec t0, t1;
	struct wpod *p;
	int fd, lfd, saved, logfd;
	size_t got = 0;
	long ms;

	if (!setup(&so))
		goto out;
	/* S's HBONE port accepts TCP (the kernel does) but never speaks TLS. */
	lfd = listen_on("127.0.0.7", 15008, false);
	if (!ASSERT_GE(lfd, 0, "silent listener"))
		goto out;
	snprintf(path, sizeof(path), "%s/log", test_tmpdir());
	logfd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	fflush(stderr);
	saved = dup(2);
	dup2(logfd, 2);
	p = pod_named(&W, "client-0");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = dial(&W, p, "127.0.0.7", 8080);
	if (fd >= 0) {
		ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "reset after the timeout");
		close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ASSERT_GE(ms, 250, "waited for the timeout");
	ASSERT_LE(ms, 3000, "not much longer");
	lseek(logfd, 0, SEEK_SET);
	got = (size_t)read(logfd, log, sizeof(log) - 1);
	log[got < sizeof(log) ? got : 0] = '\0';
	ASSERT_HAS(log, "NetworkPolicy", "the message names the likely cause");
	ASSERT_HAS(log, "15008", "and the port");
	close(logfd);
	close(lfd);
	ASSERT_EQ(stats(0).hbone_setup_failed, 1, "counted");
out:
	teardown();
}

/* A plain TCP connection from 127.0.0.1 to Q's HBONE port that never
 * speaks TLS: a handshake the server waits for. */
static int raw_hbone(void)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	fx_sockaddr("127.0.0.3", 15008, &ss, &len);
	if (connect(fd, (struct sockaddr *)&ss, len)) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* Did the server end fd (reset or EOF) within ms? */
static bool ended_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b[64];

	return poll(&p, 1, ms) > 0 && read(fd, b, sizeof(b)) <= 0;
}

/* Per-peer limits on the HBONE server: connections stuck in their TLS
 * handshake from one address are capped (the third is reset at once, the
 * first two wait), another peer is served meanwhile; established HBONE
 * connections from one address are capped too. */
void test_tunnel_peer_limits(void)
{
	struct setup_opts so = { .topts = { .max_handshakes_per_peer = 2, .max_hbone_per_peer = 3,
					    .max_streams_per_conn = 1 } };
	int raw[3], fds[4];
	struct wpod *p;

	if (!setup(&so))
		goto out;
	for (int i = 0; i < 3; i++)
		raw[i] = raw_hbone();
	ASSERT_TRUE(raw[0] >= 0 && raw[1] >= 0 && raw[2] >= 0, "three raw connections");
	ASSERT_TRUE(ended_within(raw[2], 3000), "the third handshake from one address is reset");
	ASSERT_FALSE(ended_within(raw[0], 200), "the first two still wait");
	ASSERT_EQ(stats(1).hbone_peer_limited, 1, "counted");

	/* another peer (the client pod's 127.0.0.2) is served meanwhile; with one
	 * stream per HBONE connection each dial is a connection of its own */
	p = pod_named(&W, "client-0");
	for (int i = 0; i < 3; i++) {	/* one after the other: each handshake done */
		fds[i] = dial(&W, p, "127.0.0.3", 8080);
		ASSERT_GE(fds[i], 0, "dial");
		if (fds[i] >= 0)
			ASSERT_OK(xfer(fds[i], 1000, (uint64_t)i, false, false), "echo while the other peer floods");
	}
	fds[3] = dial(&W, p, "127.0.0.3", 8080);
	ASSERT_GE(fds[3], 0, "the fourth dial (its HBONE connection is refused)");
	if (fds[3] >= 0)
		ASSERT_ERR(xfer(fds[3], 1000, 3, false, false), "a fourth HBONE connection from one peer fails");
	ASSERT_EQ(stats(1).hbone_peer_limited, 2, "counted too");
	for (int i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (int i = 0; i < 3; i++)
		if (raw[i] >= 0)
			close(raw[i]);
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");	/* the apps' too */
out:
	teardown();
}

/* ---- the full in-pod walk with real transparency ---- */

struct padd {
	struct tunnel *t;
	struct tunnel_pod *tp;
	int r;
};

static void padd_fn(struct world *w, void *arg)
{
	struct padd *x = arg;

	(void)w;
	x->r = tunnel_pod_add(x->t, x->tp);
}

/* Pod C (client, 192.0.2.1) in its own netns, joined by a veth to this netns,
 * which plays pod Q2 (192.0.2.2) with the delivery recipe of KERNEL-NOTES:
 * tcp_fwmark_accept, fwmark_reflect, a fwmark rule to a local table. An nft
 * tproxy rule on Q2's veth stands in for the TC program steering plaintext
 * to 15006. The app on Q2 must see 192.0.2.1 both ways in. */
void test_tunnel_transparent(void)
{
	static const enum tunnel_role out_roles[] = { TUNNEL_LISTEN_OUTBOUND };
	static const enum tunnel_role in_roles[] = { TUNNEL_LISTEN_HBONE, TUNNEL_LISTEN_INBOUND };
	const struct ca *roots[] = { &W.ca };
	struct wpod *c, *q;
	char peer[64];
	int cns, fd;
	bool have_nft;

	if (!setup(NULL))
		goto out;
	c = wpod_add("default", "tclient-0", "client", "192.0.2.1", NULL, 0, true);
	q = wpod_add("default", "tserver-0", "tserver", "192.0.2.2", NULL, 1, true);
	c->ctx = ctx_make(&W.ca, roots, 1, c->ns, c->sa);
	q->ctx = ctx_make(&W.ca, roots, 1, q->ns, q->sa);
	/* C's netns: made by unshare, kept by fd; we come back home. */
	if (unshare(CLONE_NEWNET))
		goto out;
	cns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	c->netns = cns;
	if (setns(W.home, CLONE_NEWNET))
		abort();
	if (!ASSERT_OK(fx_sh("ip link add vc type veth peer name vq && "
			     "ip link set vc netns /proc/%d/fd/%d", getpid(), cns), "veth"))
		goto out;
	if (setns(cns, CLONE_NEWNET))
		abort();
	if (!ASSERT_OK(fx_sh("ip link set lo up && ip addr add 192.0.2.1/24 dev vc && "
			     "ip link set vc up"), "client netns"))
		goto home;
	c->lfds[c->n_lfds++] = listen_on("127.0.0.1", 0, false);
	c->out_port = local_port(c->lfds[0]);
home:
	if (setns(W.home, CLONE_NEWNET))
		abort();
	if (!ASSERT_GE(c->n_lfds, 1, "client listener"))
		goto out;
	if (!ASSERT_OK(fx_sh("ip addr add 192.0.2.2/24 dev vq && ip link set vq up && "
			     "sysctl -qw net.ipv4.tcp_fwmark_accept=1 net.ipv4.fwmark_reflect=1 && "
			     "ip rule add fwmark 0x%x/0x%x lookup %d pref 100 && "
			     "ip route add local 0.0.0.0/0 dev lo table %d",
			     SL_MARK_DELIVER, SL_MARK_MASK, SL_DELIVER_TABLE, SL_DELIVER_TABLE),
		       "pod netns recipe"))
		goto out;
	have_nft = !fx_sh("nft -f - <<'EOF' 2>/dev/null\n"
			  "table ip sltest {\n"
			  "  chain pre {\n"
			  "    type filter hook prerouting priority mangle; policy accept;\n"
			  "    iifname \"vq\" meta l4proto tcp tcp dport 8080 tproxy to :15006\n"
			  "  }\n"
			  "}\n"
			  "EOF");
	q->lfds[q->n_lfds++] = listen_on("192.0.2.2", 15008, false);
	q->lfds[q->n_lfds++] = listen_on("0.0.0.0", 15006, true);
	if (!ASSERT_GE(q->lfds[0], 0, "hbone listener") || !ASSERT_GE(q->lfds[1], 0, "15006"))
		goto out;
	if (!apps_add("192.0.2.2", 8080, APP_ECHO))
		goto out;
	{
		struct { struct wpod *p; const enum tunnel_role *roles; } a[] = {
			{ c, out_roles }, { q, in_roles } };

		for (int i = 0; i < 2; i++) {
			struct tunnel_pod tp = { .ns = a[i].p->ns, .name = a[i].p->name,
						 .service_account = a[i].p->sa, .n_ips = 1 };
			struct sl_ip ip;
			struct padd pa;

			ip_to_sl(a[i].p->ip4, &ip);
			tp.ips = &ip;
			for (int j = 0; j < a[i].p->n_lfds; j++) {
				tp.listeners[j].fd = a[i].p->lfds[j];
				tp.listeners[j].role = a[i].roles[j];
			}
			tp.n_listeners = (size_t)a[i].p->n_lfds;
			/* tunnel_pod_add from the loop thread */
			pa = (struct padd){ W.nodes[a[i].p->node].t, &tp, -1 };
			wcall(&W, padd_fn, &pa);
			if (!ASSERT_OK(pa.r, "tunnel_pod_add"))
				goto out;
		}
	}

	/* HBONE from C's IP; delivered in Q2 from C's IP (not local there). */
	fd = dial(&W, c, "192.0.2.2", 8080);
	if (!ASSERT_GE(fd, 0, "dial through HBONE"))
		goto out;
	ASSERT_OK(xfer(fd, 100000, 13, true, true), "echo through HBONE");
	close(fd);
	last_peer(peer, sizeof(peer));
	ASSERT_HAS(peer, "192.0.2.1:", "delivered from the client pod's IP");

	if (!have_nft) {
		printf("nft tproxy unavailable: plaintext inbound part skipped\n");
		goto out;
	}
	/* Plaintext: C connects to Q2:8080 directly; tproxy hands it to 15006. */
	if (setns(cns, CLONE_NEWNET))
		goto out;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (setns(W.home, CLONE_NEWNET))
		abort();
	set_timeouts(fd);
	{
		struct sockaddr_storage ss;
		socklen_t len;

		fx_sockaddr("192.0.2.2", 8080, &ss, &len);
		if (!ASSERT_OK(connect(fd, (struct sockaddr *)&ss, len), "connect plaintext")) {
			close(fd);
			goto out;
		}
	}
	ASSERT_OK(xfer(fd, 100000, 14, true, true), "echo through 15006");
	close(fd);
	last_peer(peer, sizeof(peer));
	ASSERT_HAS(peer, "192.0.2.1:", "plaintext delivered from the client's IP");
	{
		/* From above Linux's ephemeral range: the client's own later
		 * connections must not meet the delivery's 4-tuple in Q2. */
		const char *colon = strrchr(peer, ':');
		long port = colon ? strtol(colon + 1, NULL, 10) : 0;

		ASSERT_TRUE(port >= 61000 && port <= 65535, "plaintext delivery port in 61000-65535");
	}

	/* Denied by policy: a reset, and the app never sees it. */
	W.deny_status = 401;
	if (setns(cns, CLONE_NEWNET))
		goto out;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (setns(W.home, CLONE_NEWNET))
		abort();
	set_timeouts(fd);
	{
		struct sockaddr_storage ss;
		socklen_t len;
		int before = apps.accepted;

		fx_sockaddr("192.0.2.2", 8080, &ss, &len);
		if (ASSERT_OK(connect(fd, (struct sockaddr *)&ss, len), "connect denied"))
			ASSERT_EQ(read_to_end(fd, NULL, 0, NULL), -ECONNRESET, "denied: reset");
		ASSERT_EQ(apps.accepted, before, "not delivered");
	}
	close(fd);
	W.deny_status = 0;
	{
		struct rec r = { .node = 1 };

		ASSERT_TRUE(wait_conns(1, 0), "closed");
		(void)r;
	}
out:
	teardown();
}

/* ---- interop with an independent HBONE peer (Python ssl + h2) ---- */

#define PEER_SCRIPT "selftests/interop/hbone_peer.py"
#define PYTHON "/usr/bin/python3"

static bool python_ready(void)
{
	if (access(PEER_SCRIPT, R_OK)) {
		test_skip("%s not found (run from the repository root)", PEER_SCRIPT);
		return false;
	}
	if (fx_sh(PYTHON " -c 'import h2, ssl' 2>/dev/null")) {
		test_skip("python3 with h2 (Debian python3-h2) not available");
		return false;
	}
	return true;
}

/* Write the CA and a leaf for ns/sa as PEM under the tmpdir: ca.pem,
 * <sa>.crt, <sa>.key. */
static bool pem_identity(const char *ns, const char *sa)
{
	char path[400];
	X509 *leaf = NULL;
	EVP_PKEY *key = NULL;
	bool ok;

	snprintf(path, sizeof(path), "%s/ca.pem", test_tmpdir());
	ok = pem_write(path, W.ca.cert, NULL) && leaf_make(&W.ca, ns, sa, &leaf, &key);
	snprintf(path, sizeof(path), "%s/%s.crt", test_tmpdir(), sa);
	ok = ok && pem_write(path, leaf, NULL);
	snprintf(path, sizeof(path), "%s/%s.key", test_tmpdir(), sa);
	ok = ok && pem_write(path, NULL, key);
	X509_free(leaf);
	EVP_PKEY_free(key);
	return ok;
}

/* Run the peer with args (NULL-terminated after the script), bounded in
 * time; returns its exit status, or -1. */
static int run_peer(const char *const *args, pid_t *bg)
{
	const char *argv[32];
	int n = 0, st;
	pid_t pid;

	argv[n++] = PYTHON;
	argv[n++] = PEER_SCRIPT;
	for (; *args && n < 31; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	if (posix_spawn(&pid, PYTHON, NULL, NULL, (char *const *)argv, environ))
		return -1;
	if (bg) {
		*bg = pid;
		return 0;
	}
	for (int i = 0; i < 3000; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	printf("hbone_peer timed out\n");
	return -1;
}

/* The PEM files of pem_identity(ns, sa) written for the Python peer. */
static bool peer_pems(const char *ns, const char *sa, char cert[400], char key[400], char ca[400])
{
	if (!ASSERT_TRUE(pem_identity(ns, sa), "pem"))
		return false;
	snprintf(ca, 400, "%s/ca.pem", test_tmpdir());
	snprintf(cert, 400, "%s/%s.crt", test_tmpdir(), sa);
	snprintf(key, 400, "%s/%s.key", test_tmpdir(), sa);
	return true;
}

/* Wait (10 s at most) for a background peer to write its ready file. */
static bool peer_listening(const char *ready)
{
	for (int k = 0; k < 1000 && access(ready, F_OK); k++)
		usleep(10000);
	return ASSERT_OK(access(ready, F_OK), "peer listening");
}

/* Reap a background peer (15 s at most): did all its checks pass? *pid
 * becomes -1 once reaped. */
static bool peer_passed(pid_t *pid)
{
	int st = -1;

	for (int k = 0; k < 1500; k++) {
		if (waitpid(*pid, &st, WNOHANG) == *pid) {
			*pid = -1;
			return WIFEXITED(st) && WEXITSTATUS(st) == 0;
		}
		usleep(10000);
	}
	return false;
}

static void peer_kill(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* The Python HBONE server on S's 127.0.0.8:15008 for node 0's client-0
 * (identity, authority 127.0.0.8:9000 and forwarded-for checked), with
 * extra arguments (NULL-terminated, at most 14), listening on return. */
static bool peer_serve(pid_t *pid, const char *const *extra)
{
	char cert[400], key[400], ca[400], ready[400];
	const char *args[32] = { "server", "--listen", "127.0.0.8:15008", "--cert", cert, "--key", key,
				 "--ca", ca, "--expect-id", "spiffe://cluster.local/ns/default/sa/client",
				 "--expect-authority", "127.0.0.8:9000", "--expect-for", "127.0.0.2",
				 "--ready-file", ready };
	size_t n = 17;

	if (!peer_pems("default", "py", cert, key, ca))
		return false;
	snprintf(ready, sizeof(ready), "%s/ready", test_tmpdir());
	for (; *extra && n < 31; extra++)
		args[n++] = *extra;
	args[n] = NULL;
	return ASSERT_OK(run_peer(args, pid), "spawn peer") && peer_listening(ready);
}

/* Python as the HBONE client against node 1's Q: echo over v4 and v6
 * authorities, and each refusal with its status. */
void test_tunnel_interop_client(void)
{
	char cert[400], key[400], ca[400];
	const char *id = "spiffe://cluster.local/ns/default/sa/server";
	struct {
		const char *connect, *authority, *status, *what;
	} cases[] = {
		{ "127.0.0.3:15008", "127.0.0.3:8080", "200", "echo, IPv4 authority" },
		{ "[fd00::3]:15008", "[fd00::3]:8080", "200", "echo, IPv6 authority" },
		{ "127.0.0.3:15008", "127.0.0.4:8080", "400", "400: not this pod" },
		{ "127.0.0.3:15008", "nonsense", "400", "400: bad authority" },
		{ "127.0.0.3:15008", "127.0.0.3:15008", "400", "400: a mesh port" },
		{ "127.0.0.3:15008", "127.0.0.3:8083", "503", "503: connection refused" },
		{ "127.0.0.3:15008", "127.0.0.3:8080", "401", "401: policy" },
		{ "127.0.0.3:15008", "127.0.0.3:8080", "400", "400: GET is not CONNECT" },
	};

	if (!python_ready() || !setup(NULL) || !peer_pems("default", "client", cert, key, ca))
		goto out;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *args[] = { "client", "--connect", cases[i].connect, "--authority",
				       cases[i].authority, "--cert", cert, "--key", key, "--ca", ca,
				       "--expect-id", id, "--expect-status", cases[i].status,
				       "--bytes", "1000000", i == 7 ? "--method" : NULL, "GET", NULL };

		W.deny_status = strcmp(cases[i].status, "401") ? 0 : 401;
		ASSERT_EQ(run_peer(args, NULL), 0, cases[i].what);
	}
	ASSERT_TRUE(wait_conns(1, 0), "all closed");
out:
	teardown();
}

/* Python as the HBONE server for node 0's client: it checks the TLS, the
 * settings and the CONNECT headers per HBONE.md, and echoes. */
void test_tunnel_interop_server(void)
{
	char cert[400], key[400], ca[400];
	struct wpod *p;
	pid_t pid[2] = { -1, -1 };
	const char *ip[2] = { "127.0.0.8", "fd00::8" };
	const char *listen[2] = { "127.0.0.8:15008", "[fd00::8]:15008" };
	const char *auth[2] = { "127.0.0.8:9000", "[fd00::8]:9000" };
	const char *fwd[2] = { "127.0.0.2", "[fd00::2]" };

	if (!python_ready() || !setup(NULL) || !peer_pems("default", "py", cert, key, ca))
		goto out;
	p = pod_named(&W, "client-0");
	for (int i = 0; i < 2; i++) {
		char ready[400];
		const char *args[] = { "server", "--listen", listen[i], "--cert", cert, "--key", key,
				       "--ca", ca, "--expect-id", "spiffe://cluster.local/ns/default/sa/client",
				       "--expect-authority", auth[i], "--expect-for", fwd[i],
				       "--streams", "2", "--ready-file", ready, NULL };
		int fd;

		snprintf(ready, sizeof(ready), "%s/ready%d", test_tmpdir(), i);
		if (!ASSERT_OK(run_peer(args, &pid[i]), "spawn peer") || !peer_listening(ready))
			goto out;
		for (int s = 0; s < 2; s++) {
			fd = dial(&W, p, ip[i], 9000);
			if (!ASSERT_GE(fd, 0, "dial"))
				goto out;
			ASSERT_OK(xfer(fd, s ? 3000000 : 1000, 20 + (uint64_t)s, true, true),
				  "echo through the Python server");
			close(fd);
		}
		ASSERT_TRUE(peer_passed(&pid[i]), "peer checks passed");
	}
	ASSERT_EQ(stats(0).hbone_clients_total, 2, "one connection per server");
out:
	for (int i = 0; i < 2; i++)
		peer_kill(pid[i]);
	teardown();
}

static void drain_fn(struct world *w, void *arg)
{
	(void)arg;
	tunnel_drain(w->nodes[1].t, 2000);
}

/* An HBONE server told to drain (an upgrade: its successor accepts from now
 * on) while a connection is in its TLS handshake: once the handshake is
 * done, GOAWAY with last stream 0 goes out at once, so the client sends
 * its streams elsewhere instead of having them refused one by one, and the
 * connection closes without waiting for the drain's deadline. */
void test_tunnel_drain_handshake(void)
{
	char cert[400], key[400], ca[400];
	pid_t pid = -1;
	bool accepted = false;

	if (!python_ready() || !setup(NULL) || !peer_pems("default", "client", cert, key, ca))
		goto out;
	{
		const char *args[] = { "client", "--connect", "127.0.0.3:15008", "--authority", "127.0.0.3:8080",
				       "--cert", cert, "--key", key, "--ca", ca,
				       "--expect-id", "spiffe://cluster.local/ns/default/sa/server",
				       "--pause-before-tls", "1", "--expect-goaway", NULL };

		if (!ASSERT_OK(run_peer(args, &pid), "spawn peer"))
			goto out;
	}
	for (int i = 0; i < 90 && !accepted; i++) {
		accepted = stats(1).hbone_servers == 1;
		if (!accepted)
			usleep(10000);
	}
	if (!ASSERT_TRUE(accepted, "the server accepted (its handshake waits for the client)"))
		goto out;
	wcall(&W, drain_fn, NULL);
	ASSERT_TRUE(peer_passed(&pid), "the client got GOAWAY, last stream 0");
	for (int i = 0; i < 100 && stats(1).hbone_servers; i++)
		usleep(10000);
	ASSERT_EQ(stats(1).hbone_servers, 0, "the connection closed before the drain's 2 s");
	ASSERT_EQ(stats(1).conns_total, 0, "no stream was taken");
out:
	peer_kill(pid);
	teardown();
}

/* The Python server lets the first stream of its first connection fail
 * (peer_flag) and serves a second connection: the stream goes again there,
 * not on the connection that failed it, and the app sees nothing of it. */
static void retry_on_new_connection(const char *peer_flag, uint64_t seed)
{
	struct wpod *p;
	pid_t pid = -1;
	int fd;

	if (!python_ready() || !setup(NULL) || !peer_serve(&pid, (const char *const[]){ "--streams", "1", peer_flag, NULL }))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.8", 9000);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	/* the app says nothing until the failure has come and gone */
	ASSERT_TRUE(WAIT_EQ(stats(0).hbone_clients_total, 2, 3000), "a second connection for the retry");
	ASSERT_OK(xfer(fd, 1000, seed, true, true), "echo after the failed first try");
	close(fd);
	ASSERT_TRUE(peer_passed(&pid), "peer checks passed (retry on a new connection)");
	ASSERT_EQ(stats(0).conns_failed, 0, "no connection failed");
out:
	peer_kill(pid);
	teardown();
}

/* A stream refused with REFUSED_STREAM and no GOAWAY (a server that began
 * draining during our handshake, in an upgrade). */
void test_tunnel_refused_retry(void)
{
	retry_on_new_connection("--refuse-first", 31);
}

/* A connection reset before the server answered and before the app sent a
 * byte (a draining server that closed with our new stream unread; its
 * GOAWAY, if any, is lost with the reset). */
void test_tunnel_reset_retry(void)
{
	retry_on_new_connection("--reset-first", 33);
}

/* A session reset after the stream was answered and the app's first bytes
 * went out on it (they go only after the answer): not retried, the server
 * may have acted on them; the app's connection fails. */
void test_tunnel_reset_after_data(void)
{
	struct pollfd pfd;
	struct wpod *p;
	pid_t pid = -1;
	char buf[64];
	int fd;

	if (!python_ready() || !setup(NULL) ||
	    !peer_serve(&pid, (const char *const[]){ "--streams", "1", "--reset-after-data", "--timeout", "10", NULL }))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.8", 9000);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_EQ(write(fd, "sent before the reset", 21), 21, "the app's bytes");
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	ASSERT_EQ(poll(&pfd, 1, 5000), 1, "the connection ends");
	ASSERT_TRUE(read(fd, buf, sizeof(buf)) <= 0, "with no bytes: reset or closed");
	close(fd);
	ASSERT_TRUE(peer_passed(&pid), "peer checks passed: no retry came");
	ASSERT_EQ(stats(0).hbone_clients_total, 1, "no second connection");
	ASSERT_TRUE(WAIT_EQ(stats(0).conns_failed, 1, 3000), "the connection counted failed");
out:
	peer_kill(pid);
	teardown();
}

static void drain0_fn(struct world *w, void *arg)
{
	(void)arg;
	tunnel_drain(w->nodes[0].t, 5000);
}

/* A client connection opened while the agent drains (here: the retry of a
 * stream refused after the drain began) closes with its last stream, not
 * after the pool's idle time, so a handing-over agent can exit. */
void test_tunnel_drain_new_session(void)
{
	struct wpod *p;
	pid_t pid = -1;
	int fd;

	if (!python_ready() || !setup(NULL) ||
	    !peer_serve(&pid, (const char *const[]){ "--streams", "1", "--refuse-first", "--refuse-delay", "0.5",
						     "--expect-client-close", "2", NULL }))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.8", 9000);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_TRUE(WAIT_EQ(stats(0).conns_open, 1, 3000), "accepted");
	wcall(&W, drain0_fn, NULL);	/* before the refusal: the retry's session is new */
	ASSERT_OK(xfer(fd, 1000, 32, true, true), "echo on the retry, while draining");
	close(fd);
	ASSERT_TRUE(peer_passed(&pid), "peer checks passed: the retry's connection ended with its stream");
	ASSERT_EQ(stats(0).hbone_clients_total, 2, "the retry opened a connection");
	ASSERT_TRUE(WAIT_EQ(stats(0).hbone_clients, 0, 3000), "none left, before the drain's end");
out:
	peer_kill(pid);
	teardown();
}

/* PING keepalive: an idle pooled connection stays up while the peer answers
 * PINGs, and is closed when it stops answering (here: SIGSTOP). */
void test_tunnel_keepalive(void)
{
	struct setup_opts so = { .topts.keepalive_ms = 100, .topts.keepalive_timeout_ms = 700 };
	struct wpod *p;
	pid_t pid = -1;
	int fd;

	if (!python_ready() || !setup(&so) || !peer_serve(&pid, (const char *const[]){ "--streams", "2", NULL }))
		goto out;
	p = pod_named(&W, "client-0");
	fd = dial(&W, p, "127.0.0.8", 9000);
	if (!ASSERT_GE(fd, 0, "dial"))
		goto out;
	ASSERT_OK(xfer(fd, 1000, 40, true, true), "echo");
	close(fd);
	/* Several keepalive periods of silence from the apps: PINGs keep it. */
	usleep(800000);
	ASSERT_EQ(stats(0).hbone_clients, 1, "alive while PINGs are answered");
	kill(pid, SIGSTOP);
	ASSERT_TRUE(WAIT_EQ(stats(0).hbone_clients, 0, 5000), "closed when PINGs go unanswered");
out:
	peer_kill(pid);
	teardown();
}

/* Every path with the smallest buffers (4 KiB), with and without splice:
 * many partial reads and writes, and still every byte in order. */
static void small_buffers(bool no_splice)
{
	struct setup_opts so = { .topts.buf_size = 4096, .topts.no_splice = no_splice };
	const char *dst[] = { "127.0.0.3", "fd00::3", "127.0.0.4", "127.0.0.5" };
	struct wpod *p;

	if (!setup(&so))
		goto out;
	p = pod_named(&W, "client-0");
	for (int i = 0; i < 4; i++) {
		int fd = dial(&W, p, dst[i], 8080);

		if (!ASSERT_GE(fd, 0, dst[i]))
			goto out;
		ASSERT_OK(xfer(fd, 8u << 20, 50 + (uint64_t)i, true, true), dst[i]);
		close(fd);
	}
	ASSERT_TRUE(wait_conns(0, 0) && wait_conns(1, 0), "all closed");
	ASSERT_EQ(stats(0).conns_failed + stats(1).conns_failed, 0, "no failures");
out:
	teardown();
}

void test_tunnel_small_buffers(void)
{
	small_buffers(true);
}

void test_tunnel_small_pipes(void)
{
	small_buffers(false);
}
