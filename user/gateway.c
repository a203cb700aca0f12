// SPDX-License-Identifier: Apache-2.0
/* gateway.c - Gateway listeners on the node; see gateway.h. */
#include <errno.h>
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
#include "ip.h"
#include "log.h"
#include "loop.h"
#include "model.h"
#include "waypoint.h"
#include "xprt.h"

#define GW_BACKLOG	1024
#define ACCEPT_BUDGET	64

struct glistener {
	char *gw_ns, *gw_name, *name, *hostname;	/* hostname NULL: any */
	bool https;
	SSL_CTX *ctx;			/* HTTPS: its certificates; NULL when they do not load */
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
	bool https;
	int fd;
	struct loop_io io;
	SSL_CTX *ctx;			/* HTTPS: the default context, with the SNI callback */
	struct glistener *ls;
	size_t n_ls;
	bool keep;
	char err[160];			/* why it does not listen; "" when it does */
};

struct gaddr {
	struct sl_ip ip;
	bool keep;
};

/* A Gateway's addresses as assigned, for /gateways. */
struct gassign {
	char *ns, *name;
	struct sl_ip ips[4];
	size_t n_ips;
};

struct gateways {
	struct loop *loop;
	struct waypoint *wp;
	struct gateway_opts o;
	struct gsock *socks;
	struct gaddr *addrs;		/* the ones we put on o.address_dev */
	size_t n_addrs;
	struct gassign *assigned;
	size_t n_assigned;
};

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

static void gsock_close(struct gateways *g, struct gsock *s)
{
	if (s->fd >= 0) {
		loop_del(g->loop, &s->io);
		close(s->fd);
	}
	SSL_CTX_free(s->ctx);
	glisteners_free(s->ls, s->n_ls);
	free(s);
}

static void assigned_clear(struct gateways *g)
{
	for (size_t i = 0; i < g->n_assigned; i++) {
		free(g->assigned[i].ns);
		free(g->assigned[i].name);
	}
	free(g->assigned);
	g->assigned = NULL;
	g->n_assigned = 0;
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

static bool ip_eq(const struct sl_ip *a, const struct sl_ip *b)
{
	return a->family == b->family && !memcmp(&a->addr, &b->addr, sizeof(a->addr));
}

/* ---- listening ---- */

static void accept_cb(struct loop_io *io, uint32_t ev)
{
	struct gsock *s = io->arg;

	(void)ev;
	for (int i = 0; i < ACCEPT_BUDGET; i++) {
		union {
			struct sockaddr sa;
			struct sockaddr_in in;
			struct sockaddr_in6 in6;
		} u;
		socklen_t len = sizeof(u);
		struct tunnel_addr local = { .port = 0 };
		struct tunnel_client cl = { .ns = "", .name = "sluice-gateway", .service_account = "",
					    .identity = "" };
		int one = 1;
		int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		memset(&local, 0, sizeof(local));
		memset(&u, 0, sizeof(u));
		if (getsockname(fd, &u.sa, &len)) {
			close(fd);
			continue;
		}
		if (u.sa.sa_family == AF_INET) {
			local.ip.family = SL_AF_INET;
			memcpy(local.ip.addr.octets, &u.in.sin_addr, 4);
			local.port = ntohs(u.in.sin_port);
		} else {
			local.ip.family = SL_AF_INET6;
			memcpy(local.ip.addr.octets, &u.in6.sin6_addr, 16);
			local.port = ntohs(u.in6.sin6_port);
			sl_ip_unmap(&local.ip);	/* a dual-stack socket's IPv4 client */
		}
		if (s->https) {
			if (!s->ctx) {	/* no certificate: nothing to say */
				xprt_close_rst(fd);
				continue;
			}
			waypoint_accept_tls(s->g->wp, fd, &cl, &local, s->ctx);
		} else {
			waypoint_accept(s->g->wp, fd, &cl, &local);
		}
	}
}

static int gsock_listen(struct gateways *g, struct gsock *s)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, zero = 0, fd;
	int family = s->addr.ip.family == SL_AF_INET ? AF_INET : AF_INET6;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(s->addr.port);
		memcpy(&in->sin_addr, s->addr.ip.addr.octets, 4);
		len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(s->addr.port);
		if (s->addr.ip.family)
			memcpy(&in6->sin6_addr, s->addr.ip.addr.octets, 16);
		len = sizeof(*in6);
	}
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
	return 0;
}

static const char *addr_str(const struct tunnel_addr *a, char *buf, size_t len)
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

/* ---- TLS ---- */

static long host_score(const char *lh, const char *host);

static int certset_idx = -1;

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

/* SNI picks the listener, and so the certificate. */
static int sni_cb(SSL *ssl, int *al, void *arg)
{
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	const struct certset *cs = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), certset_idx);
	SSL_CTX *best = NULL;
	long best_score = -1;

	(void)al, (void)arg;
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

/* ALPN: http/1.1. Not h2 yet: an HTTP/2 client is proxied to its backend
 * over HTTP/2, which a plain HTTP/1.1 backend would not speak (no
 * translation between the two yet); a client that offers neither goes on
 * without ALPN (and may still speak HTTP/2 by prior knowledge). */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		   unsigned int inlen, void *arg)
{
	static const unsigned char ours[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };

	(void)ssl, (void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, ours, sizeof(ours), in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

/* A server context from a kubernetes.io/tls Secret's PEM. */
static SSL_CTX *ctx_from_pem(const char *crt, const char *key, char *err, size_t len)
{
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	BIO *b = NULL;
	X509 *x = NULL;
	EVP_PKEY *k = NULL;

	if (!c)
		goto fail;
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
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

/* The listener's certificate from its first certificateRef (a Secret). */
static void listener_tls(struct glistener *gl, const struct sl_gateway *gw, const struct sl_listener *l,
			 const struct sl_model *m)
{
	const struct sl_object_ref *r = l->n_certs ? &l->certs[0] : NULL;
	const char *ns = r && r->ns ? r->ns : gw->ns;

	if (!r) {
		snprintf(gl->cert_err, sizeof(gl->cert_err), "no certificateRefs");
		return;
	}
	if ((r->kind && strcmp(r->kind, "Secret")) || (r->group && r->group[0])) {
		snprintf(gl->cert_err, sizeof(gl->cert_err), "certificateRef %s/%s: not a Secret",
			 r->kind ? r->kind : "", r->name ? r->name : "");
		return;
	}
	for (size_t i = 0; i < m->res->n_secrets; i++) {
		const struct sl_secret *sec = &m->res->secrets[i];

		if (strcmp(sec->ns, ns) || strcmp(sec->name, r->name))
			continue;
		if (!sec->tls_crt || !sec->tls_key) {
			snprintf(gl->cert_err, sizeof(gl->cert_err), "Secret %s/%s: no tls.crt and tls.key", ns,
				 r->name);
			return;
		}
		gl->ctx = ctx_from_pem(sec->tls_crt, sec->tls_key, gl->cert_err, sizeof(gl->cert_err));
		return;
	}
	snprintf(gl->cert_err, sizeof(gl->cert_err), "Secret %s/%s not found", ns, r->name);
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

/* ---- applying a model ---- */

static const struct sl_gateway_class *class_of(const struct sl_model *m, const char *name)
{
	for (size_t i = 0; i < m->res->n_gateway_classes; i++)
		if (name && !strcmp(m->res->gateway_classes[i].name, name))
			return &m->res->gateway_classes[i];
	return NULL;
}

static bool ours(const struct sl_model *m, const struct sl_gateway *gw)
{
	const struct sl_gateway_class *c = class_of(m, gw->class_name);

	return c && c->controller && !strcmp(c->controller, ROUTE_CONTROLLER_NAME);
}

static int gw_cmp(const void *pa, const void *pb)
{
	const struct sl_gateway *a = *(const struct sl_gateway *const *)pa;
	const struct sl_gateway *b = *(const struct sl_gateway *const *)pb;
	int c = strcmp(a->ns, b->ns);

	return c ? c : strcmp(a->name, b->name);
}

/* The i-th address of a pool (.1 is the first). */
static struct sl_ip pool_addr(const struct sl_cidr *c, size_t i)
{
	struct sl_ip ip = c->ip;
	int last = ip.family == SL_AF_INET ? 3 : 15;
	unsigned int carry = (unsigned int)i + 1;

	for (int b = last; b >= 0 && carry; b--) {
		unsigned int v = ip.addr.octets[b] + (carry & 0xff);

		ip.addr.octets[b] = (uint8_t)v;
		carry = (carry >> 8) + (v >> 8);
	}
	return ip;
}

static bool proto_served(const char *p, bool *https)
{
	if (!p)
		return false;
	*https = !strcmp(p, "HTTPS");
	return *https || !strcmp(p, "HTTP");
}

static struct gsock *gsock_find(struct gsock *list, const struct tunnel_addr *a)
{
	for (struct gsock *s = list; s; s = s->next)
		if (s->addr.port == a->port && ip_eq(&s->addr.ip, &a->ip))
			return s;
	return NULL;
}

static int listener_add(struct gsock *s, const struct sl_gateway *gw, const struct sl_listener *l, bool https,
			const struct sl_model *m)
{
	struct glistener *v = realloc(s->ls, (s->n_ls + 1) * sizeof(*v));
	struct glistener *n;

	if (!v)
		return -ENOMEM;
	s->ls = v;
	n = &v[s->n_ls];
	memset(n, 0, sizeof(*n));
	n->gw_ns = strdup(gw->ns);
	n->gw_name = strdup(gw->name);
	n->name = strdup(l->name ? l->name : "");
	n->hostname = l->hostname && l->hostname[0] ? strdup(l->hostname) : NULL;
	n->https = https;
	s->n_ls++;
	if (https)
		listener_tls(n, gw, l, m);
	if (!n->gw_ns || !n->gw_name || !n->name || (l->hostname && l->hostname[0] && !n->hostname))
		return -ENOMEM;
	return 0;
}

void gateways_apply(struct gateways *g, const struct sl_model *m)
{
	const struct sl_gateway **gws;
	struct gsock *want = NULL;
	size_t n = 0;

	assigned_clear(g);
	gws = calloc(m->res->n_gateways ? m->res->n_gateways : 1, sizeof(*gws));
	if (!gws) {
		pr_err("gateway: out of memory");
		return;
	}
	for (size_t i = 0; i < m->res->n_gateways; i++)
		if (ours(m, &m->res->gateways[i]))
			gws[n++] = &m->res->gateways[i];
	qsort(gws, n, sizeof(*gws), gw_cmp);
	g->assigned = calloc(n ? n : 1, sizeof(*g->assigned));
	for (size_t i = 0; i < g->n_addrs; i++)
		g->addrs[i].keep = false;
	for (size_t i = 0; i < n; i++) {
		const struct sl_gateway *gw = gws[i];
		struct sl_ip ips[4];
		size_t n_ips = 0;

		for (size_t j = 0; j < gw->n_addresses && n_ips < 4; j++)
			ips[n_ips++] = gw->addresses[j];
		if (!n_ips)
			for (size_t j = 0; j < g->o.n_pools; j++)
				ips[n_ips++] = pool_addr(&g->o.pools[j], i);
		if (g->assigned) {
			struct gassign *as = &g->assigned[g->n_assigned++];

			as->ns = strdup(gw->ns);
			as->name = strdup(gw->name);
			memcpy(as->ips, ips, sizeof(ips));
			as->n_ips = n_ips;
		}
		/* addresses for the node */
		for (size_t j = 0; j < n_ips; j++) {
			size_t k;

			for (k = 0; k < g->n_addrs; k++)
				if (ip_eq(&g->addrs[k].ip, &ips[j]))
					break;
			if (k == g->n_addrs) {
				struct gaddr *v = realloc(g->addrs, (g->n_addrs + 1) * sizeof(*v));
				int err;

				if (!v)
					continue;
				g->addrs = v;
				err = addr_change(g->o.address_dev ? g->o.address_dev : "lo", &ips[j], true);
				if (err) {
					char b[SL_IP_STRLEN];

					pr_warn("gateway: %s/%s: cannot add %s to %s: %s", gw->ns, gw->name,
						sl_ip_str(&ips[j], b), g->o.address_dev ? g->o.address_dev : "lo",
						strerror(-err));
				}
				g->addrs[g->n_addrs].ip = ips[j];
				g->addrs[g->n_addrs++].keep = true;
			} else {
				g->addrs[k].keep = true;
			}
		}
		/* sockets: one per address and port (every address when none) */
		for (size_t li = 0; li < gw->n_listeners; li++) {
			const struct sl_listener *l = &gw->listeners[li];
			bool https;

			if (!proto_served(l->protocol, &https))
				continue;
			for (size_t j = 0; j < (n_ips ? n_ips : 1); j++) {
				struct tunnel_addr a = { .port = l->port };
				struct gsock *s;

				if (n_ips)
					a.ip = ips[j];
				s = gsock_find(want, &a);
				if (!s) {
					s = calloc(1, sizeof(*s));
					if (!s)
						continue;
					s->g = g;
					s->addr = a;
					s->https = https;
					s->fd = -1;
					s->next = want;
					want = s;
				}
				if (s->https != https) {
					snprintf(s->err, sizeof(s->err),
						 "HTTP and HTTPS listeners on one port (%s/%s %s)", gw->ns,
						 gw->name, l->name ? l->name : "");
					continue;
				}
				if (listener_add(s, gw, l, https, m))
					pr_err("gateway: out of memory");
			}
		}
	}
	free(gws);
	/* keep the sockets that stay; open the new ones; close the rest */
	for (struct gsock *s = want; s; s = s->next) {
		struct gsock *old = gsock_find(g->socks, &s->addr);
		char b[64];
		int err;

		if (s->https) {
			s->ctx = gsock_tls(s);
			if (!s->ctx) {
				snprintf(s->err, sizeof(s->err), "no usable certificate (%.120s)",
					 s->n_ls ? s->ls[0].cert_err : "no listener");
				pr_warn("gateway: %s: %s", addr_str(&s->addr, b, sizeof(b)), s->err);
			}
		}
		if (old && old->https == s->https && old->fd >= 0) {
			s->fd = old->fd;
			old->fd = -1;
			loop_del(g->loop, &old->io);
			if (loop_add(g->loop, &s->io, s->fd, EPOLLIN, accept_cb, s)) {
				close(s->fd);
				s->fd = -1;
			}
			continue;
		}
		if (old && old->fd >= 0) {	/* the same port, now with(out) TLS */
			loop_del(g->loop, &old->io);
			close(old->fd);
			old->fd = -1;
		}
		err = gsock_listen(g, s);
		if (err) {
			snprintf(s->err, sizeof(s->err), "cannot listen: %s", strerror(-err));
			pr_warn("gateway: %s: %s", addr_str(&s->addr, b, sizeof(b)), s->err);
		} else {
			pr_info("gateway: listening on %s (%s, %zu listener%s)", addr_str(&s->addr, b, sizeof(b)),
				s->https ? "HTTPS" : "HTTP", s->n_ls, s->n_ls == 1 ? "" : "s");
		}
	}
	while (g->socks) {
		struct gsock *s = g->socks;

		g->socks = s->next;
		gsock_close(g, s);
	}
	g->socks = want;
	/* addresses no Gateway holds any more */
	for (size_t i = 0; i < g->n_addrs;) {
		if (g->addrs[i].keep) {
			i++;
			continue;
		}
		addr_change(g->o.address_dev ? g->o.address_dev : "lo", &g->addrs[i].ip, false);
		g->addrs[i] = g->addrs[--g->n_addrs];
	}
}

/* ---- per request ---- */

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

const struct route_set *gateways_routes(const struct gateways *g, const struct route_table *rt,
					const struct tunnel_addr *local, const char *host, bool *https)
{
	const struct gsock *s = NULL;
	const struct glistener *best = NULL;
	char h[256] = "";
	long best_score = -1;

	*https = false;
	if (!g || !rt)
		return NULL;
	for (const struct gsock *x = g->socks; x && !s; x = x->next)
		if (x->fd >= 0 && x->addr.port == local->port && ip_eq(&x->addr.ip, &local->ip))
			s = x;
	for (const struct gsock *x = g->socks; x && !s; x = x->next)
		if (x->fd >= 0 && x->addr.port == local->port && !x->addr.ip.family)
			s = x;
	if (!s)
		return NULL;
	*https = s->https;
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
	for (size_t i = 0; i < s->n_ls; i++) {
		long sc = host_score(s->ls[i].hostname, h);

		if (sc > best_score) {
			best_score = sc;
			best = &s->ls[i];
		}
	}
	if (!best)
		return NULL;
	return route_for_listener(rt, best->gw_ns, best->gw_name, best->name);
}

/* ---- observability ---- */

json_t *gateways_json(const struct gateways *g, const struct sl_model *m, const struct route_table *rt)
{
	json_t *arr = json_array();

	for (size_t i = 0; g && i < g->n_assigned; i++) {
		const struct gassign *as = &g->assigned[i];
		json_t *addrs = json_array(), *ls = json_array();
		const struct sl_gateway *gw = NULL;

		for (size_t j = 0; m && j < m->res->n_gateways; j++)
			if (!strcmp(m->res->gateways[j].ns, as->ns) && !strcmp(m->res->gateways[j].name, as->name))
				gw = &m->res->gateways[j];
		for (size_t j = 0; j < as->n_ips; j++) {
			char b[SL_IP_STRLEN];

			json_array_append_new(addrs, json_string(sl_ip_str(&as->ips[j], b)));
		}
		for (size_t j = 0; gw && j < gw->n_listeners; j++) {
			const struct sl_listener *l = &gw->listeners[j];
			bool https;
			const char *err = proto_served(l->protocol, &https) ? "" : "protocol not served yet";
			int sockets = 0;

			for (const struct gsock *s = g->socks; s; s = s->next)
				for (size_t k = 0; k < s->n_ls; k++)
					if (!strcmp(s->ls[k].gw_ns, as->ns) && !strcmp(s->ls[k].gw_name, as->name) &&
					    !strcmp(s->ls[k].name, l->name ? l->name : "")) {
						if (s->fd >= 0)
							sockets++;
						else if (s->err[0])
							err = s->err;
						if (s->ls[k].https && !s->ls[k].ctx)
							err = s->ls[k].cert_err;
					}
			json_array_append_new(
				ls, json_pack("{s:s, s:i, s:s, s:s?, s:i, s:b, s:s}", "name", l->name ? l->name : "",
					      "port", l->port, "protocol", l->protocol ? l->protocol : "",
					      "hostname", l->hostname, "sockets", sockets, "routes",
					      rt && route_for_listener(rt, as->ns, as->name, l->name ? l->name : ""),
					      "problem", err));
		}
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s?, s:o, s:o}", "namespace", as->ns, "name",
						     as->name, "class", gw ? gw->class_name : NULL, "addresses",
						     addrs, "listeners", ls));
	}
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
	if (o)
		g->o = *o;
	*out = g;
	return 0;
}

void gateways_free(struct gateways *g)
{
	if (!g)
		return;
	while (g->socks) {
		struct gsock *s = g->socks;

		g->socks = s->next;
		gsock_close(g, s);
	}
	for (size_t i = 0; i < g->n_addrs; i++)
		addr_change(g->o.address_dev ? g->o.address_dev : "lo", &g->addrs[i].ip, false);
	free(g->addrs);
	assigned_clear(g);
	free(g);
}
