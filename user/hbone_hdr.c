// SPDX-License-Identifier: Apache-2.0
/* hbone_hdr.c - see hbone_hdr.h.
 *
 * The values come from the network (any peer holding a mesh certificate), so
 * every read is bounded by the NUL and every copy by its buffer; nothing is
 * truncated into a different value: too long is unusable.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "hbone_hdr.h"
#include "ip.h"

/* Longest forwarded value kept (unescaped, with its NUL): more than any
 * for= node ("[v6]:port" is at most 54) or host= name (TUNNEL_NAME_MAX). */
#define FWD_VALUE_MAX	256

/* ---- addresses ---- */

/* A node split as "host" or "[host]", then the rest (after the bracket). */
struct node {
	const char *host;
	size_t host_len;
	bool v6;		/* bracketed */
	const char *rest;
};

/* Unbracketed, the host ends at the first ':' (so "a:b:c" leaves ":b:c",
 * which no port accepts); bracketed, at the first ']'. */
static int node_split(const char *s, struct node *n)
{
	if (*s == '[') {
		const char *rb = strchr(s, ']');

		if (!rb)
			return -EINVAL;
		n->host = s + 1;
		n->host_len = (size_t)(rb - n->host);
		n->v6 = true;
		n->rest = rb + 1;
	} else {
		n->host = s;
		n->host_len = strcspn(s, ":");
		n->v6 = false;
		n->rest = s + n->host_len;
	}
	return 0;
}

/* The host as an address: IPv6 when bracketed, dotted-quad IPv4 otherwise
 * (inet_pton: exactly four parts, no leading zeros). */
static int ip_parse(const struct node *n, struct sl_ip *ip)
{
	char buf[INET6_ADDRSTRLEN + 1];

	memset(ip, 0, sizeof(*ip));
	if (!n->host_len || n->host_len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, n->host, n->host_len);
	buf[n->host_len] = '\0';
	if (n->v6) {
		if (inet_pton(AF_INET6, buf, ip->addr.octets) != 1)
			return -EINVAL;
		ip->family = SL_AF_INET6;
	} else {
		if (inet_pton(AF_INET, buf, &ip->addr.v4) != 1)
			return -EINVAL;
		ip->family = SL_AF_INET;
	}
	sl_ip_unmap(ip);
	return 0;
}

/* 1..65535, decimal digits only: no sign, space or suffix (strtoul would take
 * " 1" and "+1"). Leading zeros are digits, as RFC 3986's port allows. */
static int port_parse(const char *s, uint16_t *port)
{
	unsigned long v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -EINVAL;
	}
	if (!v)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int hbone_authority_parse(const char *s, struct tunnel_addr *out)
{
	struct node n;
	uint16_t port;

	memset(out, 0, sizeof(*out));
	if (node_split(s, &n) || n.rest[0] != ':' || port_parse(n.rest + 1, &port) ||
	    ip_parse(&n, &out->ip)) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	out->port = port;
	return 0;
}

int hbone_authority_fmt(const struct tunnel_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	int n;

	if (len)
		buf[0] = '\0';
	if (a->ip.family == SL_AF_INET6) {
		if (!inet_ntop(AF_INET6, a->ip.addr.octets, ip, sizeof(ip)))
			return -EINVAL;
		n = snprintf(buf, len, "[%s]:%u", ip, a->port);
	} else if (a->ip.family == SL_AF_INET) {
		if (!inet_ntop(AF_INET, &a->ip.addr.v4, ip, sizeof(ip)))
			return -EINVAL;
		n = snprintf(buf, len, "%s:%u", ip, a->port);
	} else {
		return -EINVAL;
	}
	if (n < 0 || (size_t)n >= len) {
		if (len)
			buf[0] = '\0';
		return -ENOSPC;
	}
	return n;
}

/* ---- forwarded (RFC 7239, with RFC 9110's token and quoted-string) ---- */

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* qdtext: HTAB, SP, VCHAR except '"' and '\', obs-text. */
static bool is_qdtext(unsigned char c)
{
	return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
	       (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

/* What may follow '\' in a quoted-pair: HTAB, SP, VCHAR, obs-text. */
static bool is_qpchar(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* A pair's value, unescaped; too_long when it did not fit (then unusable). */
struct fwd_val {
	char s[FWD_VALUE_MAX];
	size_t n;
	bool too_long;
};

static void val_put(struct fwd_val *v, char c)
{
	if (v->n + 1 < sizeof(v->s))
		v->s[v->n++] = c;
	else
		v->too_long = true;
}

/* quoted-string after its opening '"': the end past the closing '"', or
 * NULL (unterminated, or a byte no quoted-string holds). */
static const char *quoted_read(const char *p, struct fwd_val *v)
{
	for (;;) {
		unsigned char c = (unsigned char)*p;

		if (c == '"')
			return p + 1;
		if (c == '\\') {
			c = (unsigned char)p[1];
			if (!is_qpchar(c))
				return NULL;
			val_put(v, (char)c);
			p += 2;
		} else if (is_qdtext(c)) {
			val_put(v, (char)c);
			p++;
		} else {
			return NULL;
		}
	}
}

/* value = token / quoted-string: the end, or NULL. */
static const char *value_read(const char *p, struct fwd_val *v)
{
	memset(v, 0, sizeof(*v));
	if (*p == '"') {
		p = quoted_read(p + 1, v);
	} else if (is_tchar((unsigned char)*p)) {
		while (is_tchar((unsigned char)*p))
			val_put(v, *p++);
	} else {
		p = NULL;
	}
	v->s[v->n] = '\0';
	return p;
}

/* The for= and host= of one element. */
struct fwd_elem {
	struct fwd_val for_v, host_v;
	bool has_for, has_host;
};

/* Parameter names are case-insensitive (RFC 7239 section 4). */
static bool name_is(const char *name, size_t len, const char *lit)
{
	size_t i;

	for (i = 0; i < len && lit[i]; i++) {
		char c = name[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != lit[i])
			return false;
	}
	return i == len && !lit[i];
}

/* forwarded-pair = token "=" value, at p: the end, or NULL. Other
 * parameters (by, proto, extensions) are read and dropped. A repeated for
 * or host is an error, since which one to believe is ambiguous (section 4:
 * each parameter at most once per element). */
static const char *pair_read(const char *p, struct fwd_elem *e)
{
	const char *name = p;
	struct fwd_val v;
	size_t nl;

	while (is_tchar((unsigned char)*p))
		p++;
	nl = (size_t)(p - name);
	if (*p != '=')
		return NULL;
	p = value_read(p + 1, &v);
	if (!p)
		return NULL;
	if (name_is(name, nl, "for")) {
		if (e->has_for)
			return NULL;
		e->has_for = true;
		e->for_v = v;
	} else if (name_is(name, nl, "host")) {
		if (e->has_host)
			return NULL;
		e->has_host = true;
		e->host_v = v;
	}
	return p;
}

/* forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] ): the
 * end (at ',', OWS or the NUL), or NULL. No whitespace inside an element. */
static const char *element_read(const char *p, struct fwd_elem *e)
{
	for (;;) {
		if (is_tchar((unsigned char)*p)) {
			p = pair_read(p, e);
			if (!p)
				return NULL;
		}
		if (*p != ';')
			return p;
		p++;
	}
}

/* for=: the node must be this connection's source IP; its port is used
 * when it is a real one (not absent, obfuscated or "unknown"). */
static int for_use(const struct fwd_val *v, const struct sl_ip *src_ip, uint16_t *src_port)
{
	struct node n;
	struct sl_ip ip;

	if (v->too_long || node_split(v->s, &n) || ip_parse(&n, &ip) || !sl_ip_eq(&ip, src_ip))
		return 0;
	if (!n.rest[0])
		return HBONE_FWD_FOR;
	if (n.rest[0] == ':' && !port_parse(n.rest + 1, src_port))
		return HBONE_FWD_FOR | HBONE_FWD_PORT;
	return 0;
}

/* host=: a service name, so DNS name characters only (no port, no
 * escapes that could smuggle anything into logs or metrics labels). */
static int host_use(const struct fwd_val *v, char *service, size_t service_len)
{
	if (v->too_long || !v->n || v->n >= service_len)
		return 0;
	for (size_t i = 0; i < v->n; i++) {
		char c = v->s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return 0;
	}
	memcpy(service, v->s, v->n + 1);
	return HBONE_FWD_SERVICE;
}

int hbone_forwarded_parse(const char *fwd, const struct sl_ip *src_ip, uint16_t *src_port,
			  char *service, size_t service_len)
{
	struct fwd_elem e;
	const char *p = fwd;
	int found = 0;

	*src_port = 0;
	if (service_len)
		service[0] = '\0';
	memset(&e, 0, sizeof(e));
	/* 1#element: empty list elements and OWS around commas are allowed. */
	while (is_ows(*p) || *p == ',')
		p++;
	p = element_read(p, &e);
	if (!p)
		return -EINVAL;
	while (is_ows(*p))
		p++;
	if (*p && *p != ',')
		return -EINVAL;
	/* The first element is the original client's; later ones are hops. */
	if (e.has_for)
		found |= for_use(&e.for_v, src_ip, src_port);
	if (e.has_host)
		found |= host_use(&e.host_v, service, service_len);
	return found;
}
