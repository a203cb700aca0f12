// SPDX-License-Identifier: Apache-2.0
/* gateway.c - Gateway listeners on the node; see gateway.h.
 *
 * gwplan.c says which listeners are served; here they get their addresses
 * (on the node's loopback), sockets (one per address and port) and TLS
 * contexts, and each accepted connection goes where its protocol says:
 * HTTP and HTTPS to the waypoint's HTTP parser, TCP to the listener's
 * TCPRoute, TLS Passthrough to the TLSRoute its ClientHello's server name
 * picks (peeked at, never consumed), both as a byte relay (waypoint_relay);
 * TLS Terminate is handshaken here (the server name picks the certificate,
 * and a name nothing routes is refused in the handshake), then its
 * decrypted bytes are relayed to the TLSRoute the name picks, or the
 * TCPRoute (waypoint_relay_xprt). HTTPS and TLS listeners of either mode may
 * share a port when their hostnames differ (the spec's distinct listeners):
 * the ClientHello's server name, peeked at, picks the listener, and the
 * connection goes on as that listener's would.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_addr.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>

#include "gateway.h"
#include "gwplan.h"
#include "handover.h"
#include "ip.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "sni.h"
#include "waypoint.h"
#include "xprt.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define GW_BACKLOG	1024
#define ACCEPT_BUDGET	64
#define HELLO_TIMEOUT_MS	10000	/* a TLS Passthrough client's ClientHello, a TLS
					 * Terminate client's handshake, must be done by then */
#define NODE_SRC_TTL_MS	30000	/* how long the node's own addresses are taken as known */

struct glistener {
	char *gw_ns, *gw_name, *name, *hostname;	/* hostname NULL: any */
	enum gw_proto proto;
	SSL_CTX *ctx;			/* HTTPS, TLS Terminate: its certificate; NULL when it
					 * does not load */
	char cert_err[160];
};

/* What a TLS socket's SNI callback chooses from, kept with its SSL_CTX (ex
 * data) so that it lives as long as any handshake that may use it. */
struct certset {
	size_t n;
	char **hosts;			/* NULL: any */
	SSL_CTX **ctxs;
};

struct gsock {
	struct gsock *next;
	struct gateways *g;
	struct tunnel_addr addr;	/* ip.family 0: every address (dual-stack) */
	enum gw_proto proto;		/* one per socket: gwplan leaves conflicts out, */
	bool mixed;			/* except HTTPS, TLS Passthrough and Terminate by
					 * hostname: then the server name picks */
	int fd;
	struct loop_io io;
	SSL_CTX *ctx;			/* HTTPS, TLS Terminate: the default context, with the
					 * SNI callback */
	struct glistener *ls;
	size_t n_ls;
	char err[160];			/* why it does not listen; "" when it does */
};

struct gaddr {
	struct sl_ip ip;
	bool keep;
	int err;			/* adding it failed: -errno; 0 */
};

/* A TLS Passthrough connection waiting for its whole ClientHello. */
struct ghello {
	struct ghello *next, *prev;
	struct gateways *g;
	int fd;
	struct loop_io io;
	struct loop_timer timer;
	struct tunnel_addr local;
};

/* A TLS Terminate connection in its handshake. Its SSL points back at it
 * (ex data, term_idx) while it lives, for the SNI callback. */
struct gterm {
	struct gterm *next, *prev;
	struct gateways *g;
	struct xprt x;			/* owns the fd and the SSL until handed on */
	struct loop_io io;
	struct loop_timer timer;
	struct tunnel_addr local;
};

struct gateways {
	struct loop *loop;
	struct waypoint *wp;
	uint32_t pick_seq;		/* route_pick_next()'s, for route_decide_l4 */
	struct gateway_opts o;
	const struct route_table *rt;	/* in force, with the model plan points into */
	struct gwplan *plan;
	struct gsock *socks;
	struct gsock *dead;		/* closed; freed once the loop's batch of events is over */
	struct loop_timer reaper;
	struct loop_timer retry;	/* sockets that could not listen: try again */
	bool stopped;			/* handed over: no more listening */
	struct ghello *hellos;
	struct gterm *terms;
	struct gaddr *addrs;		/* the ones we put on o.address_dev */
	size_t n_addrs;
	/* the node's own address per family (IPv4, IPv6), as source of upstreams */
	struct sl_ip node_src[2];
	bool node_src_ok[2];
	uint64_t node_src_at;		/* loop_now_ms() of the last look; 0: look again */
};

static const char *dev_of(const struct gateways *g)
{
	return g->o.address_dev ? g->o.address_dev : "lo";
}

static void glisteners_free(struct glistener *ls, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		SSL_CTX_free(ls[i].ctx);
		free(ls[i].gw_ns);
		free(ls[i].gw_name);
		free(ls[i].name);
		free(ls[i].hostname);
	}
	free(ls);
}

static void gsock_free(struct gsock *s)
{
	SSL_CTX_free(s->ctx);
	glisteners_free(s->ls, s->n_ls);
	free(s);
}

static void reap(struct loop_timer *t)
{
	struct gateways *g = t->arg;

	while (g->dead) {
		struct gsock *s = g->dead;

		g->dead = s->next;
		gsock_free(s);
	}
}

/* Stop listening at once; free later: an accept event of this batch may
 * still name its io (loop.h). */
static void gsock_retire(struct gateways *g, struct gsock *s)
{
	if (s->fd >= 0) {
		loop_del(g->loop, &s->io);
		handover_withdraw(s->fd);
		close(s->fd);
		s->fd = -1;
	}
	s->next = g->dead;
	g->dead = s;
	if (!loop_timer_armed(&g->reaper))
		loop_timer_arm(g->loop, &g->reaper, 0);
}

/* ---- addresses on the node ---- */

static int addr_change(const char *dev, const struct sl_ip *ip, bool add)
{
	struct nl_sock *sk = nl_socket_alloc();
	struct rtnl_addr *a = NULL;
	struct nl_addr *local = NULL;
	unsigned int ifindex = if_nametoindex(dev);
	int err;

	if (!sk)
		return -ENOMEM;
	if (!ifindex) {
		err = -errno;
		goto out;
	}
	err = nl_connect(sk, NETLINK_ROUTE);
	if (err < 0)
		goto nlerr;
	a = rtnl_addr_alloc();
	local = nl_addr_build(ip->family, ip->addr.octets, ip->family == SL_AF_INET ? 4 : 16);
	if (!a || !local) {
		err = -ENOMEM;
		goto out;
	}
	nl_addr_set_prefixlen(local, ip->family == SL_AF_INET ? 32 : 128);
	rtnl_addr_set_ifindex(a, (int)ifindex);
	rtnl_addr_set_family(a, ip->family);
	err = rtnl_addr_set_local(a, local);
	if (err < 0)
		goto nlerr;
	if (ip->family == SL_AF_INET6)
		rtnl_addr_set_flags(a, IFA_F_NODAD);
	err = add ? rtnl_addr_add(sk, a, 0) : rtnl_addr_delete(sk, a, 0);
	if (err == -NLE_EXIST || (!add && err == -NLE_NOADDR))
		err = 0;
nlerr:
	if (err < 0)
		err = -EIO;
out:
	nl_addr_put(local);
	rtnl_addr_put(a);
	nl_socket_free(sk);
	return err;
}

static bool gateway_addr(const struct gateways *g, const struct sl_ip *ip)
{
	for (size_t i = 0; i < g->n_addrs; i++)
		if (sl_ip_eq(&g->addrs[i].ip, ip))
			return true;
	return false;
}

/* The addresses of the plan's Gateways on the node (the ones there stay). */
static void addresses_take(struct gateways *g, const struct gwplan *p)
{
	for (size_t i = 0; i < g->n_addrs; i++)
		g->addrs[i].keep = false;
	for (size_t i = 0; i < p->n_gws; i++) {
		const struct gwplan_gateway *pg = &p->gws[i];

		for (size_t j = 0; j < pg->n_ips; j++) {
			struct gaddr *v;
			size_t k;

			for (k = 0; k < g->n_addrs && !sl_ip_eq(&g->addrs[k].ip, &pg->ips[j]); k++)
				;
			if (k < g->n_addrs) {
				g->addrs[k].keep = true;
				continue;
			}
			if (!(v = realloc(g->addrs, (g->n_addrs + 1) * sizeof(*v))))
				continue;
			g->addrs = v;
			v[k] = (struct gaddr){ .ip = pg->ips[j], .keep = true };
			v[k].err = addr_change(dev_of(g), &pg->ips[j], true);
			if (v[k].err) {
				char b[SL_IP_STRLEN];

				pr_warn("gateway: %s/%s: cannot add %s to %s: %s", pg->gw->ns, pg->gw->name,
					sl_ip_str(&pg->ips[j], b), dev_of(g), strerror(-v[k].err));
			}
			g->n_addrs++;
		}
	}
}

/* Addresses no Gateway holds any more. */
static void addresses_release(struct gateways *g)
{
	for (size_t i = 0; i < g->n_addrs;) {
		if (g->addrs[i].keep) {
			i++;
			continue;
		}
		addr_change(dev_of(g), &g->addrs[i].ip, false);
		g->addrs[i] = g->addrs[--g->n_addrs];
	}
}

/* ---- upstream connections, from the node's own address ---- */

static void sa_of(const struct tunnel_addr *a, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (a->ip.family == SL_AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->ip.addr.octets, 4);
		*len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		if (a->ip.family)
			memcpy(&in6->sin6_addr, a->ip.addr.octets, 16);
		*len = sizeof(*in6);
	}
}

/* The source the kernel's routes give toward dst: a route lookup (a UDP
 * connect sends nothing). 0 or -errno. */
static int route_source(const struct tunnel_addr *dst, struct sl_ip *src)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, err = 0;

	sa_of(dst, &ss, &len);
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&ss, len) || getsockname(fd, (struct sockaddr *)&ss, &len))
		err = -errno;
	close(fd);
	if (err)
		return err;
	memset(src, 0, sizeof(*src));
	if (ss.ss_family == AF_INET) {
		src->family = SL_AF_INET;
		memcpy(src->addr.octets, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	} else {
		src->family = SL_AF_INET6;
		memcpy(src->addr.octets, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
	}
	return 0;
}

/* An address a node would give as its own: global, not loopback, not
 * link-local, not a Gateway's. */
static bool node_like(const struct gateways *g, const struct sl_ip *ip)
{
	const uint8_t *o = ip->addr.octets;
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t loop6[16] = { [15] = 1 };

	if (gateway_addr(g, ip))
		return false;
	if (ip->family == SL_AF_INET)
		return o[0] != 127 && !(o[0] == 169 && o[1] == 254) && o[0] != 0;
	return !(o[0] == 0xfe && (o[1] & 0xc0) == 0x80) && memcmp(o, mapped, 12) && memcmp(o, loop6, 16) &&
	       o[0] != 0xff;
}

/* The node's own address per family: the first node_like address of the
 * first interface that is up and not a loopback (interfaces in index
 * order: the uplink before the bridges and tunnels CNIs add later). */
static void node_addresses(struct gateways *g)
{
	struct ifaddrs *ifa = NULL;

	g->node_src_ok[0] = g->node_src_ok[1] = false;
	g->node_src_at = loop_now_ms();
	if (getifaddrs(&ifa))
		return;
	for (const struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		struct sl_ip ip = { 0 };
		int fi;

		if (!i->ifa_addr || (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
			continue;
		if (i->ifa_addr->sa_family == AF_INET) {
			ip.family = SL_AF_INET;
			memcpy(ip.addr.octets, &((const struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			ip.family = SL_AF_INET6;
			memcpy(ip.addr.octets, &((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
		} else {
			continue;
		}
		fi = ip.family == SL_AF_INET6;
		if (!g->node_src_ok[fi] && node_like(g, &ip)) {
			g->node_src[fi] = ip;
			g->node_src_ok[fi] = true;
		}
	}
	freeifaddrs(ifa);
}

/* The source for an upstream to dst: the route's own choice, unless that is
 * a Gateway address (the kernel picks one of those on the loopback for a
 * pod whose route has no source): then the node's own address. */
static bool node_source(struct gateways *g, const struct tunnel_addr *dst, struct sl_ip *src)
{
	int fi = dst->ip.family == SL_AF_INET6;

	memset(src, 0, sizeof(*src));
	if (!route_source(dst, src) && !gateway_addr(g, src))
		return true;
	if (!g->node_src_at || loop_now_ms() - g->node_src_at > NODE_SRC_TTL_MS)
		node_addresses(g);
	*src = g->node_src[fi];
	return g->node_src_ok[fi];
}

bool gateways_source(struct gateways *g, const struct tunnel_addr *dst, struct sl_ip *src)
{
	return g && node_source(g, dst, src);
}

int gateways_connect(struct gateways *g, const struct tunnel_addr *dst)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct sl_ip src;
	int fd, one = 1;

	sa_of(dst, &ss, &len);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (g && node_source(g, dst, &src)) {
		struct tunnel_addr from = { .ip = src, .port = 0 };
		struct sockaddr_storage sb;
		socklen_t blen;

		sa_of(&from, &sb, &blen);
		/* the port comes with connect(): the 4-tuple, not the address, must be unique */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sb, blen))
			pr_debug("gateway: upstream source: bind: %s (the kernel picks)", strerror(errno));
	}
	if (connect(fd, (struct sockaddr *)&ss, len) && errno != EINPROGRESS) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* ---- TLS contexts ---- */

static long host_score(const char *lh, const char *host);

static int certset_idx = -1;
static int term_idx = -1;		/* SSL ex data: the struct gterm in its handshake */

static void certset_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct certset *cs = ptr;

	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	if (!cs)
		return;
	for (size_t i = 0; i < cs->n; i++) {
		free(cs->hosts[i]);
		SSL_CTX_free(cs->ctxs[i]);
	}
	free(cs->hosts);
	free(cs->ctxs);
	free(cs);
}

static bool term_routable(const struct gterm *t, const char *sni);

/* SNI picks the listener, and so the certificate. A TLS Terminate
 * connection whose name no listener and route take is refused here, with
 * the alert RFC 6066 names for it, before any certificate is sent (as
 * Passthrough closes without one). */
static int sni_cb(SSL *ssl, int *al, void *arg)
{
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	const struct certset *cs = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), certset_idx);
	const struct gterm *t = term_idx >= 0 ? SSL_get_ex_data(ssl, term_idx) : NULL;
	SSL_CTX *best = NULL;
	long best_score = -1;

	(void)arg;
	if (t && !term_routable(t, name)) {
		*al = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	for (size_t i = 0; cs && i < cs->n; i++) {
		long sc = host_score(cs->hosts[i], name ? name : "");

		if (sc > best_score && cs->ctxs[i]) {
			best_score = sc;
			best = cs->ctxs[i];
		}
	}
	if (best)
		SSL_set_SSL_CTX(ssl, best);
	return SSL_TLSEXT_ERR_OK;
}

/* ALPN: h2, else http/1.1 (ours first, as nginx and Envoy prefer). An
 * HTTP/2 client's streams go to the backend in the protocol its Service port
 * says (appProtocol), HTTP/1.1 when it says none: the waypoint translates
 * (docs/l7.md). A client that offers neither goes on without ALPN (and may
 * still speak HTTP/2 by prior knowledge). */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		   unsigned int inlen, void *arg)
{
	static const unsigned char ours[] = { 2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };

	(void)ssl, (void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, ours, sizeof(ours), in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

/* A server context from a kubernetes.io/tls Secret's PEM. http: offer h2
 * and http/1.1 by ALPN (HTTPS); a TLS Terminate listener relays bytes it
 * does not read, so it says nothing of their protocol. */
static SSL_CTX *ctx_from_pem(const char *crt, const char *key, bool http, char *err, size_t len)
{
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	BIO *b = NULL;
	X509 *x = NULL;
	EVP_PKEY *k = NULL;

	if (!c)
		goto fail;
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
	if (http)
		SSL_CTX_set_alpn_select_cb(c, alpn_cb, NULL);
	b = BIO_new_mem_buf(crt, -1);
	if (!b || !(x = PEM_read_bio_X509(b, NULL, NULL, NULL)) || SSL_CTX_use_certificate(c, x) != 1)
		goto fail;
	for (X509 *chain; (chain = PEM_read_bio_X509(b, NULL, NULL, NULL));)
		if (SSL_CTX_add_extra_chain_cert(c, chain) != 1) {
			X509_free(chain);
			goto fail;
		}
	ERR_clear_error();	/* the end of the chain reads as an error */
	BIO_free(b);
	b = BIO_new_mem_buf(key, -1);
	if (!b || !(k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)) || SSL_CTX_use_PrivateKey(c, k) != 1 ||
	    SSL_CTX_check_private_key(c) != 1)
		goto fail;
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(k);
	return c;
fail:
	xprt_ssl_errors(err, len);
	if (!err[0])
		snprintf(err, len, "cannot load the certificate and key");
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(k);
	SSL_CTX_free(c);
	return NULL;
}

/* The listener's certificate: the Secret gwplan resolved. */
static void listener_tls(struct glistener *gl, const struct gwplan_listener *pl)
{
	if (!pl->cert) {
		snprintf(gl->cert_err, sizeof(gl->cert_err), "%.150s",
			 pl->message[0] ? pl->message : "no certificate");
		return;
	}
	gl->ctx = ctx_from_pem(pl->cert->tls_crt, pl->cert->tls_key, pl->proto == GW_PROTO_HTTPS, gl->cert_err,
			       sizeof(gl->cert_err));
}

/* The socket's default context: the first usable certificate, and SNI to
 * choose among all of them. */
static SSL_CTX *gsock_tls(const struct gsock *s)
{
	struct certset *cs = calloc(1, sizeof(*cs));
	const struct glistener *first = NULL;
	SSL_CTX *c = NULL;

	if (certset_idx < 0)
		certset_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, certset_free);
	if (!cs || certset_idx < 0)
		goto fail;
	cs->hosts = calloc(s->n_ls ? s->n_ls : 1, sizeof(*cs->hosts));
	cs->ctxs = calloc(s->n_ls ? s->n_ls : 1, sizeof(*cs->ctxs));
	if (!cs->hosts || !cs->ctxs)
		goto fail;
	for (size_t i = 0; i < s->n_ls; i++) {
		if (!s->ls[i].ctx)
			continue;
		if (!first)
			first = &s->ls[i];
		cs->hosts[cs->n] = s->ls[i].hostname ? strdup(s->ls[i].hostname) : NULL;
		SSL_CTX_up_ref(s->ls[i].ctx);
		cs->ctxs[cs->n++] = s->ls[i].ctx;
	}
	if (!first)
		goto fail;
	/* a context of its own (the SNI callback and the set ride on it) with
	 * the first listener's certificate, for clients that send no SNI */
	c = SSL_CTX_new(TLS_server_method());
	if (!c)
		goto fail;
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
	if (first->proto == GW_PROTO_HTTPS)
		SSL_CTX_set_alpn_select_cb(c, alpn_cb, NULL);
	if (SSL_CTX_use_certificate(c, SSL_CTX_get0_certificate(first->ctx)) != 1 ||
	    SSL_CTX_use_PrivateKey(c, SSL_CTX_get0_privatekey(first->ctx)) != 1)
		goto fail;
	SSL_CTX_set_tlsext_servername_callback(c, sni_cb);
	if (!SSL_CTX_set_ex_data(c, certset_idx, cs))
		goto fail;
	return c;
fail:
	SSL_CTX_free(c);	/* frees cs through ex data once attached */
	if (cs && (!c || SSL_CTX_get_ex_data(c, certset_idx) != cs))
		certset_free(NULL, cs, NULL, 0, 0, NULL);
	return NULL;
}

/* ---- which listener ---- */

/* How well a listener hostname takes host: -1 not at all; higher is more
 * specific (exact beats wildcard beats none), as the spec's listener
 * precedence says. */
static long host_score(const char *lh, const char *host)
{
	size_t hl = strlen(host), sl;

	if (!lh)
		return 0;
	if (lh[0] == '*' && lh[1] == '.') {
		sl = strlen(lh + 1);	/* ".example.com" */
		/* at least one label before the suffix */
		if (hl > sl && !strcasecmp(host + hl - sl, lh + 1))
			return 1 + (long)sl;
		return -1;
	}
	return !strcasecmp(lh, host) ? 100000 + (long)hl : -1;
}

/* The listening socket a connection to local came in on. */
static const struct gsock *gsock_of(const struct gateways *g, const struct tunnel_addr *local)
{
	for (const struct gsock *x = g->socks; x; x = x->next)
		if (x->fd >= 0 && x->addr.port == local->port && sl_ip_eq(&x->addr.ip, &local->ip))
			return x;
	for (const struct gsock *x = g->socks; x; x = x->next)
		if (x->fd >= 0 && x->addr.port == local->port && !x->addr.ip.family)
			return x;
	return NULL;
}

/* The listener of s that takes host best (Host, or SNI; "" none), of
 * protocol proto (GW_PROTO_NONE: any; a socket has several only when
 * mixed). */
static const struct glistener *listener_for(const struct gsock *s, const char *host, enum gw_proto proto)
{
	const struct glistener *best = NULL;
	long best_score = -1;

	for (size_t i = 0; s && i < s->n_ls; i++) {
		long sc = host_score(s->ls[i].hostname, host);

		if (proto != GW_PROTO_NONE && s->ls[i].proto != proto)
			continue;
		if (sc > best_score) {
			best_score = sc;
			best = &s->ls[i];
		}
	}
	return best;
}

/* The HTTP(S) listener a request to local with Host host belongs to. */
static const struct glistener *http_listener_of(const struct gateways *g, const struct tunnel_addr *local,
						const char *host, bool *https)
{
	const struct gsock *s;
	char h[256] = "";

	*https = false;
	if (!g)
		return NULL;
	s = gsock_of(g, local);
	if (!s || (s->proto != GW_PROTO_HTTP && s->proto != GW_PROTO_HTTPS && !s->mixed))
		return NULL;
	*https = s->proto != GW_PROTO_HTTP;
	if (host) {
		/* the port goes; "[v6]" keeps its brackets off */
		const char *e;

		if (host[0] == '[') {
			e = strchr(host, ']');
			snprintf(h, sizeof(h), "%.*s", e ? (int)(e - host - 1) : 0, host + 1);
		} else {
			e = strchr(host, ':');
			snprintf(h, sizeof(h), "%.*s", e ? (int)(e - host) : (int)strlen(host), host);
		}
	}
	return listener_for(s, h, *https ? GW_PROTO_HTTPS : GW_PROTO_HTTP);
}

const struct route_set *gateways_routes(const struct gateways *g, const struct route_table *rt,
					const struct tunnel_addr *local, const char *host, bool *https)
{
	const struct glistener *best = http_listener_of(g, local, host, https);

	if (!best || !rt)
		return NULL;
	return route_for_listener(rt, best->gw_ns, best->gw_name, best->name);
}

bool gateways_gateway_of(const struct gateways *g, const struct tunnel_addr *local, const char *host,
			 const char **ns, const char **name)
{
	bool https;
	const struct glistener *l = http_listener_of(g, local, host, &https);

	if (!l)
		return false;
	*ns = l->gw_ns;
	*name = l->gw_name;
	return true;
}

/* ---- TCP and TLS Passthrough: a byte relay to the route's backend ---- */

static const struct tunnel_client gateway_client = { .ns = "", .name = "sluice-gateway", .service_account = "",
						     .identity = "" };

static const char *local_str(const struct tunnel_addr *a, char *buf, size_t len);

/* Send fd where listener gl's route of kind says (sni: the TLS server name,
 * NULL none), or close it at once. Takes fd. */
static void l4_forward(struct gateways *g, int fd, const struct tunnel_addr *local, const struct glistener *gl,
		       enum sl_route_kind kind, const char *sni)
{
	const struct route_set *set = gl ? route_for_listener(g->rt, gl->gw_ns, gl->gw_name, gl->name) : NULL;
	struct route_l4_decision d;
	struct tunnel_client cl;
	char b[64];

	if (!route_decide_l4(set, kind, sni, route_pick_next(&g->pick_seq), &d) || !gl) {	/* no listener: no set */
		pr_debug("gateway: %s %s%s%s: %s (%s): closed", route_kind_str(kind), local_str(local, b, sizeof(b)),
			 sni ? " SNI " : "", sni ? sni : "", d.reason, d.why);
		xprt_close_rst(fd);
		return;
	}
	cl = gateway_client;
	cl.gw_ns = gl->gw_ns;	/* its identity goes into the mesh */
	cl.gw_name = gl->gw_name;
	if (!waypoint_relay(g->wp, fd, &cl, local, &d.backend))
		pr_debug("gateway: %s %s: %s/%s:%u has no ready endpoint: closed", route_kind_str(kind),
			 local_str(local, b, sizeof(b)), d.backend.ns, d.backend.name, d.backend.port);
}

static void mixed_terminate(struct gateways *g, const struct gsock *s, int fd, const struct tunnel_addr *local,
			    const struct glistener *gl);

static void hello_free(struct ghello *h, bool close_fd)
{
	struct gateways *g = h->g;

	loop_del(g->loop, &h->io);
	loop_timer_cancel(g->loop, &h->timer);
	if (close_fd)
		xprt_close_rst(h->fd);
	if (h->prev)
		h->prev->next = h->next;
	else
		g->hellos = h->next;
	if (h->next)
		h->next->prev = h->prev;
	free(h);
}

static void hello_timeout(struct loop_timer *t)
{
	hello_free(t->arg, true);
}

/* Peek (never read) until the ClientHello is whole; SO_RCVLOWAT holds epoll
 * back until as many bytes as the parser needs are there, so a slow client
 * costs no wakeups. Then the server name picks the listener and route. */
static void hello_io(struct loop_io *io, uint32_t ev)
{
	static uint8_t buf[SNI_PEEK_MAX];	/* one loop thread */
	struct ghello *h = io->arg;
	struct gateways *g = h->g;
	struct tunnel_addr local = h->local;
	struct sni_info info;
	enum sni_result r;
	const struct gsock *s;
	const struct glistener *gl;
	ssize_t n = recv(h->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	int fd = h->fd, one = 1;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		hello_free(h, true);
		return;
	}
	r = sni_parse(buf, (size_t)n, &info);
	if (r == SNI_INCOMPLETE && !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
		int want = (int)info.need;

		setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof(want));
		return;
	}
	if (r != SNI_FOUND && r != SNI_ABSENT) {
		char b[64];

		pr_debug("gateway: TLS %s: ClientHello %s%s%s: closed", local_str(&local, b, sizeof(b)),
			 sni_result_str(r), info.why[0] ? ": " : "", info.why);
		hello_free(h, true);
		return;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	hello_free(h, false);
	s = gsock_of(g, &local);
	gl = listener_for(s, r == SNI_FOUND ? info.name : "", GW_PROTO_NONE);
	if (s && s->mixed && (!gl || gl->proto != GW_PROTO_TLS)) {
		mixed_terminate(g, s, fd, &local, gl);
		return;
	}
	l4_forward(g, fd, &local, gl, SL_ROUTE_TLS, r == SNI_FOUND ? info.name : NULL);
}

static void hello_start(struct gateways *g, int fd, const struct tunnel_addr *local)
{
	struct ghello *h = calloc(1, sizeof(*h));

	if (!h || loop_add(g->loop, &h->io, fd, EPOLLIN | EPOLLRDHUP, hello_io, h)) {
		free(h);
		xprt_close_rst(fd);
		return;
	}
	h->g = g;
	h->fd = fd;
	h->local = *local;
	loop_timer_init(&h->timer, hello_timeout, h);
	loop_timer_arm(g->loop, &h->timer, HELLO_TIMEOUT_MS);
	h->next = g->hellos;
	if (g->hellos)
		g->hellos->prev = h;
	g->hellos = h;
}

/* ---- TLS Terminate: the handshake here, then the decrypted bytes relayed ---- */

/* Where a TLS Terminate connection with server name sni (NULL: none) goes:
 * the TLSRoute the name picks (as for Passthrough), else the listener's
 * TCPRoute. *gl: the listener the name picks, NULL when none. Returns
 * d->forward; d->route says whether some route took it. */
static bool term_decide(struct gateways *g, const struct tunnel_addr *local, const char *sni,
			const struct glistener **gl, struct route_l4_decision *d)
{
	uint32_t rnd = route_pick_next(&g->pick_seq);	/* one per connection: whichever route takes it */
	const struct route_set *set;

	*gl = listener_for(gsock_of(g, local), sni ? sni : "", GW_PROTO_TLS_TERMINATE);
	set = *gl ? route_for_listener(g->rt, (*gl)->gw_ns, (*gl)->gw_name, (*gl)->name) : NULL;
	if (route_decide_l4(set, SL_ROUTE_TLS, sni, rnd, d) || d->route)
		return d->forward;
	return route_decide_l4(set, SL_ROUTE_TCP, NULL, rnd, d);
}

/* For the SNI callback: does some listener take the name, with a
 * certificate of its own (not another listener's), and a route? */
static bool term_routable(const struct gterm *t, const char *sni)
{
	const struct glistener *gl;
	struct route_l4_decision d;

	term_decide(t->g, &t->local, sni, &gl, &d);
	return d.route && gl && gl->ctx;
}

/* Off the loop and the list; its SSL no longer points at it. */
static void term_unlink(struct gterm *t)
{
	struct gateways *g = t->g;

	loop_del(g->loop, &t->io);
	loop_timer_cancel(g->loop, &t->timer);
	SSL_set_ex_data(t->x.ssl, term_idx, NULL);
	if (t->prev)
		t->prev->next = t->next;
	else
		g->terms = t->next;
	if (t->next)
		t->next->prev = t->prev;
}

/* Give up on t (terminal): abort resets the connection; otherwise it ends
 * in order, so that a TLS alert already written reaches the client. */
static void term_close(struct gterm *t, bool abort)
{
	term_unlink(t);
	t->x.ops->close(&t->x, abort);
	free(t);
}

static void term_timeout(struct loop_timer *tm)
{
	term_close(tm->arg, true);
}

/* The handshake is done (terminal for t): the server name it saw picks the
 * listener, whose Gateway's identity goes into the mesh, and the route;
 * the connection becomes a relay, or is reset. */
static void term_forward(struct gterm *t)
{
	struct gateways *g = t->g;
	const char *name = SSL_get_servername(t->x.ssl, TLSEXT_NAMETYPE_host_name);
	struct tunnel_client cl = gateway_client;
	struct tunnel_addr local = t->local;
	struct route_l4_decision d;
	const struct glistener *gl;
	struct xprt x = t->x;
	char sni[256] = "", b[64];

	if (name)
		snprintf(sni, sizeof(sni), "%s", name);
	term_unlink(t);
	free(t);
	if (!term_decide(g, &local, name ? sni : NULL, &gl, &d) || !gl) {
		pr_debug("gateway: TLS Terminate %s SNI %s: %s (%s): closed", local_str(&local, b, sizeof(b)),
			 name ? sni : "(none)", d.reason ? d.reason : "", d.why);
		x.ops->close(&x, true);
		return;
	}
	cl.gw_ns = gl->gw_ns;	/* its identity goes into the mesh */
	cl.gw_name = gl->gw_name;
	if (!waypoint_relay_xprt(g->wp, &x, &cl, &local, &d.backend))
		pr_debug("gateway: TLS Terminate %s: %s/%s:%u has no ready endpoint: closed",
			 local_str(&local, b, sizeof(b)), d.backend.ns, d.backend.name, d.backend.port);
}

static void term_io(struct loop_io *io, uint32_t ev)
{
	struct gterm *t = io->arg;
	int r = t->x.ops->handshake(&t->x);
	char b[64];

	(void)ev;
	if (r == -EAGAIN) {
		if (io->events != t->x.want)
			loop_mod(t->g->loop, &t->io, t->x.want);
		return;
	}
	if (r) {
		pr_debug("gateway: TLS Terminate %s: handshake: %s: closed", local_str(&t->local, b, sizeof(b)),
			 t->x.err);
		term_close(t, false);
		return;
	}
	term_forward(t);
}

/* Take fd, a TLS Terminate listener's connection, into its handshake with
 * ctx (the socket's: its SNI callback picks the certificate). */
static void term_start(struct gateways *g, int fd, const struct tunnel_addr *local, SSL_CTX *ctx)
{
	struct gterm *t = calloc(1, sizeof(*t));

	if (term_idx < 0)
		term_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (!t || term_idx < 0 || xprt_init_tls(&t->x, fd, ctx, true)) {
		free(t);
		xprt_close_rst(fd);
		return;
	}
	t->g = g;
	t->local = *local;
	if (!SSL_set_ex_data(t->x.ssl, term_idx, t) || loop_add(g->loop, &t->io, fd, EPOLLIN, term_io, t)) {
		t->x.ops->close(&t->x, true);
		free(t);
		return;
	}
	loop_timer_init(&t->timer, term_timeout, t);
	loop_timer_arm(g->loop, &t->timer, HELLO_TIMEOUT_MS);
	t->next = g->terms;
	if (g->terms)
		g->terms->prev = t;
	g->terms = t;
}

/* ---- listening ---- */

/* One end of an accepted connection (peer: the client's, else ours), an IPv4
 * client of a dual-stack socket as IPv4. false when it cannot be read. */
static bool end_of(int fd, bool peer, struct tunnel_addr *out)
{
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} u;
	socklen_t len = sizeof(u);

	memset(out, 0, sizeof(*out));
	memset(&u, 0, sizeof(u));
	if (peer ? getpeername(fd, &u.sa, &len) : getsockname(fd, &u.sa, &len))
		return false;
	if (u.sa.sa_family == AF_INET) {
		out->ip.family = SL_AF_INET;
		memcpy(out->ip.addr.octets, &u.in.sin_addr, 4);
		out->port = ntohs(u.in.sin_port);
	} else if (u.sa.sa_family == AF_INET6) {
		out->ip.family = SL_AF_INET6;
		memcpy(out->ip.addr.octets, &u.in6.sin6_addr, 16);
		out->port = ntohs(u.in6.sin6_port);
		sl_ip_unmap(&out->ip);
	} else {
		return false;
	}
	return true;
}

/* The Gateway's client on fd, with the peer's address (in *peer) for
 * AuthorizationPolicies that name IPs. */
static void client_of(int fd, struct tunnel_client *cl, struct tunnel_addr *peer)
{
	*cl = gateway_client;
	if (end_of(fd, true, peer)) {
		cl->ips = &peer->ip;
		cl->n_ips = 1;
		cl->port = peer->port;
	}
}

/* A connection to a mixed socket whose server name picked gl (NULL: none),
 * not a Passthrough one: an HTTPS listener's goes to the waypoint,
 * handshaken there (reset when the listener has no certificate); the rest
 * into TLS Terminate, whose handshake refuses a name no listener with a
 * certificate and a route takes. Takes fd. */
static void mixed_terminate(struct gateways *g, const struct gsock *s, int fd, const struct tunnel_addr *local,
			    const struct glistener *gl)
{
	struct tunnel_client cl;
	struct tunnel_addr peer;

	if (!s->ctx || (gl && gl->proto == GW_PROTO_HTTPS && !gl->ctx)) {
		xprt_close_rst(fd);	/* no certificate of its own: none shown */
		return;
	}
	if (gl && gl->proto == GW_PROTO_HTTPS) {
		client_of(fd, &cl, &peer);
		waypoint_accept_tls(g->wp, fd, &cl, local, s->ctx);
		return;
	}
	term_start(g, fd, local, s->ctx);
}

static void accept_cb(struct loop_io *io, uint32_t ev)
{
	struct gsock *s = io->arg;

	(void)ev;
	for (int i = 0; i < ACCEPT_BUDGET; i++) {
		struct tunnel_addr local, peer;
		struct tunnel_client cl;
		int one = 1;
		int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (!end_of(fd, false, &local)) {
			close(fd);
			continue;
		}
		client_of(fd, &cl, &peer);
		if (s->mixed) {	/* the server name says which listener */
			hello_start(s->g, fd, &local);
			continue;
		}
		switch (s->proto) {
		case GW_PROTO_HTTPS:
			if (!s->ctx) {	/* no certificate: nothing to say */
				xprt_close_rst(fd);
				continue;
			}
			waypoint_accept_tls(s->g->wp, fd, &cl, &local, s->ctx);
			break;
		case GW_PROTO_TLS:
			hello_start(s->g, fd, &local);
			break;
		case GW_PROTO_TLS_TERMINATE:
			if (!s->ctx) {	/* no certificate */
				xprt_close_rst(fd);
				continue;
			}
			term_start(s->g, fd, &local, s->ctx);
			break;
		case GW_PROTO_TCP:
			l4_forward(s->g, fd, &local, s->n_ls ? &s->ls[0] : NULL, SL_ROUTE_TCP, NULL);
			break;
		case GW_PROTO_HTTP:
		default:
			waypoint_accept(s->g->wp, fd, &cl, &local);
			break;
		}
	}
}

static const char *local_str(const struct tunnel_addr *a, char *buf, size_t len);

static int gsock_listen(struct gateways *g, struct gsock *s)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, zero = 0, fd;
	int family;
	char key[64];

	local_str(&s->addr, key, sizeof(key));
	fd = handover_takef("gateway %s", key);	/* a takeover: the old agent's */
	if (fd >= 0) {
		if (loop_add(g->loop, &s->io, fd, EPOLLIN, accept_cb, s)) {
			int err = -errno;

			close(fd);
			return err;
		}
		s->fd = fd;
		handover_offerf(fd, "gateway %s", key);
		return 0;
	}
	sa_of(&s->addr, &ss, &len);
	family = ss.ss_family;
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* the address may reach the loopback a moment later */
	setsockopt(fd, family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6,
		   family == AF_INET ? IP_FREEBIND : IPV6_FREEBIND, &one, sizeof(one));
	if (family == AF_INET6 && !s->addr.ip.family)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, GW_BACKLOG) ||
	    loop_add(g->loop, &s->io, fd, EPOLLIN, accept_cb, s)) {
		int err = -errno;

		close(fd);
		return err ? err : -EIO;
	}
	s->fd = fd;
	handover_offerf(fd, "gateway %s", key);
	return 0;
}

static const char *local_str(const struct tunnel_addr *a, char *buf, size_t len)
{
	char ip[SL_IP_STRLEN];

	if (!a->ip.family)
		snprintf(buf, len, "*:%u", a->port);
	else if (a->ip.family == SL_AF_INET6)
		snprintf(buf, len, "[%s]:%u", sl_ip_str(&a->ip, ip), a->port);
	else
		snprintf(buf, len, "%s:%u", sl_ip_str(&a->ip, ip), a->port);
	return buf;
}

/* ---- applying a plan ---- */

static struct gsock *gsock_find(struct gsock *list, const struct tunnel_addr *a)
{
	for (struct gsock *s = list; s; s = s->next)
		if (s->addr.port == a->port && (s->addr.ip.family == a->ip.family) &&
		    (!a->ip.family || sl_ip_eq(&s->addr.ip, &a->ip)))
			return s;
	return NULL;
}

static int listener_add(struct gsock *s, const struct gwplan_gateway *pg, const struct gwplan_listener *pl)
{
	const struct sl_listener *l = pl->l;
	struct glistener *v = realloc(s->ls, (s->n_ls + 1) * sizeof(*v));
	struct glistener *n;
	bool host = l->hostname && l->hostname[0] && pl->proto != GW_PROTO_TCP;

	if (!v)
		return -ENOMEM;
	s->ls = v;
	n = &v[s->n_ls];
	memset(n, 0, sizeof(*n));
	n->gw_ns = strdup(pg->gw->ns);
	n->gw_name = strdup(pg->gw->name);
	n->name = strdup(l->name ? l->name : "");
	n->hostname = host ? strdup(l->hostname) : NULL;
	n->proto = pl->proto;
	s->n_ls++;
	if (gw_proto_terminates_tls(pl->proto))
		listener_tls(n, pl);
	if (!n->gw_ns || !n->gw_name || !n->name || (host && !n->hostname))
		return -ENOMEM;
	return 0;
}

/* Does some listener of s terminate TLS here (HTTPS, TLS Terminate)? */
static bool gsock_terminates(const struct gsock *s)
{
	for (size_t i = 0; i < s->n_ls; i++)
		if (gw_proto_terminates_tls(s->ls[i].proto))
			return true;
	return false;
}

/* The sockets the plan wants: one per address and port (every address when
 * the Gateway has none), holding the listeners served there. */
static struct gsock *sockets_want(struct gateways *g, const struct gwplan *p)
{
	struct gsock *want = NULL;

	for (size_t i = 0; i < p->n_gws; i++) {
		const struct gwplan_gateway *pg = &p->gws[i];

		for (size_t li = 0; li < pg->n_ls; li++) {
			const struct gwplan_listener *pl = &pg->ls[li];

			if (!pl->serve)
				continue;
			for (size_t j = 0; j < (pg->n_ips ? pg->n_ips : 1); j++) {
				struct tunnel_addr a = { .port = pl->l->port };
				struct gsock *s;

				if (pg->n_ips)
					a.ip = pg->ips[j];
				s = gsock_find(want, &a);
				if (!s) {
					if (!(s = calloc(1, sizeof(*s))))
						continue;
					*s = (struct gsock){ .g = g, .addr = a, .proto = pl->proto, .fd = -1,
							     .next = want };
					want = s;
				}
				if (s->proto != pl->proto) {
					/* gwplan's conflicts rule out all but TLS
					 * listeners of distinct hostnames */
					if (!gw_proto_tls(s->proto) || !gw_proto_tls(pl->proto))
						continue;
					s->mixed = true;
				}
				if (listener_add(s, pg, pl))
					pr_err("gateway: out of memory");
			}
		}
	}
	return want;
}

static bool any_failing(const struct gateways *g)
{
	for (const struct gsock *s = g->socks; s; s = s->next)
		if (s->fd < 0 && s->err[0])
			return true;
	return false;
}

static void retry_arm(struct gateways *g)
{
	if (!g->stopped && any_failing(g) && !loop_timer_armed(&g->retry))
		loop_timer_arm(g->loop, &g->retry, GATEWAY_RETRY_MS);
}

/* A port in use when the plan came may be free now: nothing else would
 * try again before the next configuration. Bounded: one bind per failing
 * socket every GATEWAY_RETRY_MS. */
static void retry_cb(struct loop_timer *t)
{
	struct gateways *g = t->arg;
	bool changed = false;

	for (struct gsock *s = g->socks; s; s = s->next) {
		char b[64], err[sizeof(s->err)];
		int ret;

		if (s->fd >= 0 || !s->err[0])
			continue;
		ret = gsock_listen(g, s);
		if (!ret) {
			s->err[0] = '\0';
			changed = true;
			pr_info("gateway: listening on %s (%s, %zu listener%s), tried again",
				local_str(&s->addr, b, sizeof(b)), gw_proto_str(s->proto), s->n_ls,
				s->n_ls == 1 ? "" : "s");
			continue;
		}
		snprintf(err, sizeof(err), "cannot listen: %s", strerror(-ret));
		if (strcmp(err, s->err)) {
			memcpy(s->err, err, sizeof(err));
			changed = true;
			pr_warn("gateway: %s: %s", local_str(&s->addr, b, sizeof(b)), s->err);
		}
	}
	retry_arm(g);
	if (changed && g->o.changed)
		g->o.changed(g->o.changed_arg);
}

/* Keep the listening fds that stay (the protocol only changes what
 * accept_cb does), open the new ones, retire the rest. */
static void sockets_swap(struct gateways *g, struct gsock *want)
{
	for (struct gsock *s = want; s; s = s->next) {
		struct gsock *old = gsock_find(g->socks, &s->addr);
		char b[64];
		int err;

		/* without a certificate it still listens (and resets): its
		 * listeners say why they are not programmed */
		if (gsock_terminates(s) && !(s->ctx = gsock_tls(s)))
			pr_warn("gateway: %s: no usable certificate (%.120s)", local_str(&s->addr, b, sizeof(b)),
				s->n_ls ? s->ls[0].cert_err : "no listener");
		if (old && old->fd >= 0) {
			s->fd = old->fd;
			old->fd = -1;
			loop_del(g->loop, &old->io);
			if (loop_add(g->loop, &s->io, s->fd, EPOLLIN, accept_cb, s)) {
				handover_withdraw(s->fd);
				close(s->fd);
				s->fd = -1;
			}
			continue;
		}
		err = gsock_listen(g, s);
		if (err) {
			snprintf(s->err, sizeof(s->err), "cannot listen: %s", strerror(-err));
			pr_warn("gateway: %s: %s", local_str(&s->addr, b, sizeof(b)), s->err);
		} else {
			pr_info("gateway: listening on %s (%s, %zu listener%s)", local_str(&s->addr, b, sizeof(b)),
				s->mixed ? "HTTPS and TLS by server name" : gw_proto_str(s->proto), s->n_ls,
				s->n_ls == 1 ? "" : "s");
		}
	}
	while (g->socks) {
		struct gsock *s = g->socks;

		g->socks = s->next;
		gsock_retire(g, s);
	}
	g->socks = want;
	retry_arm(g);
}

void gateways_apply(struct gateways *g, const struct sl_model *m, const struct route_table *rt)
{
	struct gwplan *plan = NULL;

	/* the old plan points into the model just freed: let it go unread */
	gwplan_free(g->plan);
	g->plan = NULL;
	g->rt = rt;
	g->node_src_at = 0;	/* addresses change: look at the node's again */
	if (gwplan_build(m, rt, g->o.pools, g->o.n_pools, &plan)) {
		pr_err("gateway: out of memory; the listeners stay as they were");
		return;
	}
	g->plan = plan;
	addresses_take(g, plan);
	sockets_swap(g, sockets_want(g, plan));
	addresses_release(g);
}

/* ---- observability ---- */

/* What the sockets say of one planned listener: listening sockets, why one
 * does not listen, why its certificate does not load. */
struct lstate {
	int sockets;
	const char *listen_err;		/* NULL: none */
	const struct gsock *listen_sock;	/* the one listen_err is of */
	const char *cert_err;		/* NULL: none */
};

static struct lstate listener_state(const struct gateways *g, const struct gwplan_gateway *pg,
				    const struct gwplan_listener *pl)
{
	struct lstate st = { 0 };
	const char *name = pl->l->name ? pl->l->name : "";

	for (const struct gsock *s = g->socks; s; s = s->next)
		for (size_t k = 0; k < s->n_ls; k++) {
			const struct glistener *gl = &s->ls[k];

			if (strcmp(gl->gw_ns, pg->gw->ns) || strcmp(gl->gw_name, pg->gw->name) ||
			    strcmp(gl->name, name))
				continue;
			if (s->fd >= 0)
				st.sockets++;
			else if (s->err[0]) {
				st.listen_err = s->err;
				st.listen_sock = s;
			}
			if (gw_proto_terminates_tls(gl->proto) && !gl->ctx)
				st.cert_err = gl->cert_err;
		}
	return st;
}

static json_t *kinds_json(unsigned kinds)
{
	json_t *a = json_array();

	for (unsigned k = SL_ROUTE_HTTP; k <= SL_ROUTE_TLS; k++)
		if (kinds & ROUTE_KIND_BIT(k))
			json_array_append_new(a, json_string(route_kind_str((enum sl_route_kind)k)));
	return a;
}

/* A condition as two fields: key (its status) and reason_key. */
static void cond_set(json_t *o, const char *key, const char *reason_key, bool status, const char *reason)
{
	json_object_set_new(o, key, json_boolean(status));
	json_object_set_new(o, reason_key, json_string(reason));
}

/* One listener: the plan's conditions, with what the sockets add. */
static json_t *listener_json(const struct gateways *g, const struct gwplan_gateway *pg,
			     const struct gwplan_listener *pl, bool *programmed)
{
	const struct sl_listener *l = pl->l;
	struct lstate st = listener_state(g, pg, pl);
	bool accepted = pl->accepted, refs = pl->resolved_refs;
	const char *acc_reason = pl->accepted_reason, *refs_reason = pl->refs_reason, *msg = pl->message;
	const char *prog_reason = "Programmed";
	char problem[300] = "";
	json_t *o;

	if (accepted && st.listen_err && !st.sockets) {
		accepted = false;
		acc_reason = "PortUnavailable";
		msg = st.listen_err;
	}
	if (refs && st.cert_err) {
		refs = false;
		refs_reason = "InvalidCertificateRef";
		msg = st.cert_err;
	}
	*programmed = pl->serve && accepted && st.sockets > 0 && !(gw_proto_terminates_tls(pl->proto) && st.cert_err);
	if (!*programmed)
		prog_reason = pl->serve && accepted && !st.sockets && !st.listen_err ? "Pending" : "Invalid";
	if (pl->conflicted)
		snprintf(problem, sizeof(problem), "Conflicted %s: %s", pl->conflict_reason, msg);
	else if (!accepted)
		snprintf(problem, sizeof(problem), "not Accepted %s: %s", acc_reason, msg);
	else if (!*programmed && !refs)
		snprintf(problem, sizeof(problem), "ResolvedRefs %s: %s", refs_reason, msg);
	else if (!*programmed)
		snprintf(problem, sizeof(problem), "not Programmed %s: %s", prog_reason,
			 msg[0] ? msg
				: !pl->serve ? "its Gateway has no address (AddressNotAssigned)" : "no socket yet");
	o = json_pack("{s:s, s:i, s:s, s:s?, s:s?, s:i, s:b, s:i, s:o, s:s, s:s}", "name", l->name ? l->name : "",
		      "port", l->port, "protocol", l->protocol ? l->protocol : "", "tls_mode",
		      l->protocol && !strcmp(l->protocol, "TLS") ? l->tls_mode : NULL, "hostname",
		      pl->proto == GW_PROTO_TCP ? NULL : l->hostname, "sockets", st.sockets, "routes",
		      g->rt && route_for_listener(g->rt, pg->gw->ns, pg->gw->name, l->name ? l->name : ""),
		      "attached_routes", (int)pl->attached, "supported_kinds", kinds_json(pl->kinds), "message", msg,
		      "problem", problem);
	cond_set(o, "accepted", "accepted_reason", accepted, acc_reason);
	cond_set(o, "resolved_refs", "refs_reason", refs, refs_reason);
	cond_set(o, "conflicted", "conflict_reason", pl->conflicted, pl->conflict_reason);
	cond_set(o, "programmed", "programmed_reason", *programmed, prog_reason);
	return o;
}

json_t *gateways_node_failures(const struct gateways *g)
{
	json_t *out = json_object();

	/* the rules of listener_json: what makes a served listener fail here */
	for (size_t i = 0; g && g->plan && i < g->plan->n_gws; i++) {
		const struct gwplan_gateway *pg = &g->plan->gws[i];
		char key[520], msg[300], b[64];
		json_t *gw = NULL;

		for (size_t j = 0; j < pg->n_ls; j++) {
			const struct gwplan_listener *pl = &pg->ls[j];
			struct lstate st = listener_state(g, pg, pl);
			const char *reason = NULL;

			if (!pl->serve || !pl->accepted)
				continue;
			if (st.listen_err && !st.sockets) {
				reason = "PortUnavailable";
				snprintf(msg, sizeof(msg), "%s: %s", local_str(&st.listen_sock->addr, b, sizeof(b)),
					 st.listen_err);
			} else if (pl->resolved_refs && st.cert_err) {
				reason = "InvalidCertificateRef";
				snprintf(msg, sizeof(msg), "%s", st.cert_err);
			}
			if (!reason)
				continue;
			if (!gw) {
				snprintf(key, sizeof(key), "%s/%s", pg->gw->ns, pg->gw->name);
				gw = json_object();
				json_object_set_new(out, key, gw);
			}
			json_object_set_new(gw, pl->l->name ? pl->l->name : "",
					    json_pack("{s:s, s:s}", "reason", reason, "message", msg));
		}
	}
	return out;
}

static json_t *gateway_json(const struct gateways *g, const struct gwplan_gateway *pg)
{
	json_t *addrs = json_array(), *ls = json_array(), *o;
	const char *prog_reason = "Invalid";
	const char *msg = pg->message;
	char addr_msg[GWPLAN_MSG] = "";
	bool any = false, unusable = false;

	for (size_t j = 0; j < pg->n_ips; j++) {
		char b[SL_IP_STRLEN];

		json_array_append_new(addrs, json_string(sl_ip_str(&pg->ips[j], b)));
		for (size_t k = 0; k < g->n_addrs; k++)
			if (sl_ip_eq(&g->addrs[k].ip, &pg->ips[j]) && g->addrs[k].err && !unusable) {
				unusable = true;
				snprintf(addr_msg, sizeof(addr_msg), "cannot add %s to %s: %s", b, dev_of(g),
					 strerror(-g->addrs[k].err));
			}
	}
	for (size_t j = 0; j < pg->n_ls; j++) {
		bool prog;

		json_array_append_new(ls, listener_json(g, pg, &pg->ls[j], &prog));
		any |= prog;
	}
	if (!pg->n_ips && pg->address_missing) {
		prog_reason = "AddressNotAssigned";
	} else if (unusable) {
		prog_reason = "AddressNotUsable";
		msg = addr_msg;
	} else if (any) {
		prog_reason = "Programmed";
	}
	o = json_pack("{s:s, s:s, s:s?, s:o, s:s, s:o}", "namespace", pg->gw->ns, "name", pg->gw->name, "class",
		      pg->gw->class_name, "addresses", addrs, "message", msg, "listeners", ls);
	cond_set(o, "accepted", "accepted_reason", pg->accepted, pg->accepted_reason);
	cond_set(o, "programmed", "programmed_reason", !strcmp(prog_reason, "Programmed"), prog_reason);
	return o;
}

json_t *gateways_json(const struct gateways *g)
{
	json_t *arr = json_array();

	for (size_t i = 0; g && g->plan && i < g->plan->n_gws; i++)
		json_array_append_new(arr, gateway_json(g, &g->plan->gws[i]));
	return json_pack("{s:o}", "gateways", arr);
}

/* ---- lifecycle ---- */

int gateways_new(struct gateways **out, struct loop *l, struct waypoint *wp, const struct gateway_opts *o)
{
	struct gateways *g = calloc(1, sizeof(*g));

	if (!g)
		return -ENOMEM;
	g->loop = l;
	g->wp = wp;
	g->pick_seq = (uint32_t)random();
	if (o)
		g->o = *o;
	loop_timer_init(&g->reaper, reap, g);
	loop_timer_init(&g->retry, retry_cb, g);
	*out = g;
	return 0;
}

void gateways_stop_accepting(struct gateways *g)
{
	if (g) {
		g->stopped = true;
		loop_timer_cancel(g->loop, &g->retry);
	}
	for (struct gsock *s = g ? g->socks : NULL; s; s = s->next)
		loop_del(g->loop, &s->io);
}

void gateways_free(struct gateways *g)
{
	if (!g)
		return;
	while (g->hellos)
		hello_free(g->hellos, true); /* NOLINT(clang-analyzer-unix.Malloc): it unlinks it */
	while (g->terms)
		term_close(g->terms, true); /* NOLINT(clang-analyzer-unix.Malloc): it unlinks it */
	while (g->socks) {
		struct gsock *s = g->socks;

		g->socks = s->next;
		gsock_retire(g, s);
	}
	loop_timer_cancel(g->loop, &g->reaper);
	loop_timer_cancel(g->loop, &g->retry);
	reap(&g->reaper);
	for (size_t i = 0; i < g->n_addrs; i++)
		addr_change(dev_of(g), &g->addrs[i].ip, false);
	free(g->addrs);
	gwplan_free(g->plan);
	free(g);
}
