// SPDX-License-Identifier: Apache-2.0
/* test_hbone_hdr.c - user/hbone_hdr.c: the HBONE ":authority" and
 * "forwarded" parsers, good and bad input, table-driven. Each failing row
 * names its input, so a failure says which one. selftests/fuzz/fuzz_hbone_hdr.c
 * covers what tables miss.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/test.h"
#include "hbone_hdr.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* An address from text, as the parsers store it. */
static struct sl_ip ip_of(const char *s)
{
	struct sl_ip ip;

	memset(&ip, 0, sizeof(ip));
	if (inet_pton(AF_INET, s, &ip.addr.v4) == 1) {
		ip.family = SL_AF_INET;
	} else if (inet_pton(AF_INET6, s, ip.addr.octets) == 1) {
		ip.family = SL_AF_INET6;
	}
	return ip;
}

static bool ip_same(const struct sl_ip *a, const struct sl_ip *b)
{
	return a->family == b->family && !memcmp(&a->addr, &b->addr, sizeof(a->addr));
}

/* head, n copies of c, tail (caller frees). */
static char *rep(const char *head, char c, size_t n, const char *tail)
{
	char *s = malloc(strlen(head) + n + strlen(tail) + 1), *p;

	if (!s)
		abort();
	p = stpcpy(s, head);
	memset(p, c, n);
	strcpy(p + n, tail);
	return s;
}

/* ---- :authority ---- */

void test_hbone_hdr_authority_good(void)
{
	static const struct {
		const char *in, *ip;
		uint16_t port;
	} t[] = {
		{ "10.0.0.1:80", "10.0.0.1", 80 },
		{ "0.0.0.0:1", "0.0.0.0", 1 },
		{ "255.255.255.255:65535", "255.255.255.255", 65535 },
		{ "10.0.0.1:0080", "10.0.0.1", 80 },	/* leading zeros: digits */
		{ "[fd00::1]:8080", "fd00::1", 8080 },
		{ "[::1]:1", "::1", 1 },
		{ "[::]:65535", "::", 65535 },
		{ "[FD00::A]:443", "fd00::a", 443 },
		{ "[fd00:0000:0000:0000:0000:0000:0000:0001]:443", "fd00::1", 443 },
		/* IPv4-mapped comes out as IPv4, as the tunnel's sockets do. */
		{ "[::ffff:10.0.0.1]:80", "10.0.0.1", 80 },
		{ "[0000:0000:0000:0000:0000:ffff:255.255.255.255]:1", "255.255.255.255", 1 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct tunnel_addr a = { 0 };
		struct sl_ip want = ip_of(t[i].ip);

		if (!ASSERT_OK(hbone_authority_parse(t[i].in, &a), t[i].in))
			continue;
		ASSERT_TRUE(ip_same(&a.ip, &want), t[i].in);
		ASSERT_EQ(a.port, t[i].port, t[i].in);
	}
}

void test_hbone_hdr_authority_bad(void)
{
	static const char *const t[] = {
		"",
		":",
		":80",
		"10.0.0.1",			/* no port */
		"10.0.0.1:",
		"10.0.0.1:0",
		"10.0.0.1:65536",
		"10.0.0.1:99999",
		"10.0.0.1:4294967376",		/* 2^32 + 80: no wrap */
		"10.0.0.1:18446744073709551696",	/* 2^64 + 80 */
		"10.0.0.1:99999999999999999999999999",
		"10.0.0.1:+1",
		"10.0.0.1:-1",
		"10.0.0.1: 1",
		"10.0.0.1:1 ",
		"10.0.0.1:\t1",
		" 10.0.0.1:1",
		"10.0.0.1 :1",
		"10.0.0.1:80x",
		"10.0.0.1:0x50",
		"10.0.0.1:80:81",
		"10.0.0.1:80/",
		"10.0.0.1:80\r\n",
		"10.0.0.1::80",
		"10.0.0.1:\xd9\xa0",		/* a non-ASCII digit */
		"010.0.0.1:80",			/* inet_pton: no leading zeros */
		"10.0.0:80",
		"10.1:80",
		"167772161:80",
		"10.0.0.1.5:80",
		"1.2.3.256:80",
		"localhost:80",
		"svc.ns.svc.cluster.local:80",
		"fd00::1:80",			/* IPv6 only in brackets */
		"fd00::1",
		"::1:80",
		"[fd00::1]",			/* brackets without port */
		"[fd00::1]:",
		"[fd00::1]80",
		"[fd00::1]:80]",
		"[fd00::1]:80 ",
		"[fd00::1]:0",
		"[fd00::1]:65536",
		"[fd00::1:80",
		"fd00::1]:80",
		"[[fd00::1]]:80",
		"[]:80",
		"[10.0.0.1]:80",		/* IPv4 is not bracketed */
		"[fe80::1%eth0]:80",		/* no zones */
		"[fe80::1%25eth0]:80",
		"[fd00::1::2]:80",
		"[fd00::g]:80",
		"[ fd00::1]:80",
		"[0000:0000:0000:0000:0000:0000:0000:0000:0000]:80",
	};

	static const struct tunnel_addr zero;

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct tunnel_addr a;

		memset(&a, 0xa5, sizeof(a));
		ASSERT_EQ(hbone_authority_parse(t[i], &a), -EINVAL, t[i]);
		ASSERT_TRUE(!memcmp(&a, &zero, sizeof(a)), "out zeroed on failure");
	}
}

void test_hbone_hdr_authority_overlong(void)
{
	struct tunnel_addr a;
	char *s;

	s = rep("[", 'f', 4096, "::1]:80");
	ASSERT_EQ(hbone_authority_parse(s, &a), -EINVAL, "4 KiB IPv6 host");
	free(s);
	s = rep("", '1', 4096, ":80");
	ASSERT_EQ(hbone_authority_parse(s, &a), -EINVAL, "4 KiB IPv4 host");
	free(s);
	s = rep("10.0.0.1:", '9', 4096, "");
	ASSERT_EQ(hbone_authority_parse(s, &a), -EINVAL, "4 KiB port");
	free(s);
	/* Leading zeros do not count toward the value (RFC 3986 port = *DIGIT). */
	s = rep("10.0.0.1:", '0', 4096, "80");
	ASSERT_OK(hbone_authority_parse(s, &a), "zeros then 80");
	ASSERT_EQ(a.port, 80, "port");
	free(s);
}

/* The parsers take C strings: a NUL ends the value. A header value holding a
 * NUL is the caller's to refuse (tunnel.c's on_header, which has the length);
 * what the parser sees is the part before it. */
void test_hbone_hdr_authority_nul(void)
{
	static const char v[] = "10.0.0.1:8\0" "0";
	struct tunnel_addr a;

	ASSERT_OK(hbone_authority_parse(v, &a), "prefix before the NUL");
	ASSERT_EQ(a.port, 8, "only the bytes before the NUL");
	ASSERT_EQ(strlen(v), sizeof(v) - 3, "the length shows the NUL");
	ASSERT_EQ(hbone_authority_parse("10.0.0.1:\0" "80", &a), -EINVAL, "NUL right after ':'");
}

void test_hbone_hdr_authority_fmt(void)
{
	static const char *const t[] = {
		"10.0.0.1:80", "255.255.255.255:65535", "[fd00::1]:8080",
		"[2001:db8:85a3::8a2e:370:7334]:1", "[::]:9",
	};
	struct tunnel_addr a = { 0 }, b;
	char buf[HBONE_AUTHORITY_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		int n;

		if (!ASSERT_OK(hbone_authority_parse(t[i], &a), t[i]))
			continue;
		n = hbone_authority_fmt(&a, buf, sizeof(buf));
		ASSERT_EQ(n, (long long)strlen(t[i]), t[i]);
		ASSERT_STREQ(buf, t[i], "canonical input formats back to itself");
		ASSERT_OK(hbone_authority_parse(buf, &b), buf);
		ASSERT_TRUE(!memcmp(&a, &b, sizeof(a)), "round trip");
		/* One byte short: nothing, not a truncated authority. */
		ASSERT_EQ(hbone_authority_fmt(&a, buf, (size_t)n), -ENOSPC, t[i]);
		ASSERT_STREQ(buf, "", "empty after -ENOSPC");
	}
	/* The longest form fits HBONE_AUTHORITY_MAX. */
	a.ip = ip_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	a.port = 65535;
	ASSERT_EQ(hbone_authority_fmt(&a, buf, sizeof(buf)), 47, "longest");
	/* Port 0 is written (log form) but never read back. */
	a.ip = ip_of("10.0.0.1");
	a.port = 0;
	ASSERT_EQ(hbone_authority_fmt(&a, buf, sizeof(buf)), 10, "port 0");
	ASSERT_STREQ(buf, "10.0.0.1:0", "port 0");
	ASSERT_EQ(hbone_authority_parse(buf, &b), -EINVAL, "port 0 not read");
	memset(&a, 0, sizeof(a));
	ASSERT_EQ(hbone_authority_fmt(&a, buf, sizeof(buf)), -EINVAL, "family unset");
	ASSERT_EQ(hbone_authority_fmt(&a, buf, 0), -EINVAL, "no buffer");
}

/* ---- forwarded ---- */

#define V4 "10.0.0.1"
#define V6 "fd00::1"
#define FOR_PORT (HBONE_FWD_FOR | HBONE_FWD_PORT)

struct fwd_case {
	const char *in;
	const char *src;	/* the connection's source IP */
	int ret;
	uint16_t port;
	const char *service;
};

static void fwd_run(const struct fwd_case *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct sl_ip src = ip_of(t[i].src);
		char svc[TUNNEL_NAME_MAX];
		uint16_t port = 0xa5a5;

		memset(svc, 'x', sizeof(svc));
		ASSERT_EQ(hbone_forwarded_parse(t[i].in, &src, &port, svc, sizeof(svc)), t[i].ret,
			  t[i].in);
		ASSERT_EQ(port, t[i].port, t[i].in);
		ASSERT_STREQ(svc, t[i].service ? t[i].service : "", t[i].in);
	}
}

void test_hbone_hdr_forwarded_for(void)
{
	static const struct fwd_case t[] = {
		/* What sluice and ztunnel send. */
		{ "for=\"" V4 ":1234\"", V4, FOR_PORT, 1234, NULL },
		{ "for=\"[" V6 "]:1234\"", V6, FOR_PORT, 1234, NULL },
		/* Token or quoted, with or without a port. */
		{ "for=" V4, V4, HBONE_FWD_FOR, 0, NULL },
		{ "for=\"" V4 "\"", V4, HBONE_FWD_FOR, 0, NULL },
		{ "for=\"[" V6 "]\"", V6, HBONE_FWD_FOR, 0, NULL },
		{ "for=\"" V4 ":1\"", V4, FOR_PORT, 1, NULL },
		{ "for=\"" V4 ":65535\"", V4, FOR_PORT, 65535, NULL },
		/* Names are case-insensitive (RFC 7239 section 4). */
		{ "FOR=\"" V4 ":7\"", V4, FOR_PORT, 7, NULL },
		{ "For=\"" V4 ":7\"", V4, FOR_PORT, 7, NULL },
		/* An escaped character is itself. */
		{ "for=\"10\\.0.0.1:\\12\"", V4, FOR_PORT, 12, NULL },
		/* IPv4-mapped names the IPv4 source. */
		{ "for=\"[::ffff:" V4 "]:9\"", V4, FOR_PORT, 9, NULL },
		/* Not the source: nothing. */
		{ "for=\"10.0.0.2:1234\"", V4, 0, 0, NULL },
		{ "for=\"[fd00::2]:1234\"", V6, 0, 0, NULL },
		{ "for=\"[" V6 "]:1234\"", V4, 0, 0, NULL },
		{ "for=\"" V4 ":1234\"", V6, 0, 0, NULL },
		/* The source, but no usable port. */
		{ "for=\"" V4 ":0\"", V4, 0, 0, NULL },
		{ "for=\"" V4 ":65536\"", V4, 0, 0, NULL },
		{ "for=\"" V4 ":+1\"", V4, 0, 0, NULL },
		{ "for=\"" V4 ": 1\"", V4, 0, 0, NULL },
		{ "for=\"" V4 ":1 \"", V4, 0, 0, NULL },
		{ "for=\"" V4 ":\"", V4, 0, 0, NULL },
		{ "for=\"" V4 ":_obf\"", V4, 0, 0, NULL },
		{ "for=\"" V4 ":1:2\"", V4, 0, 0, NULL },
		{ "for=\"[" V6 "]1234\"", V6, 0, 0, NULL },
		/* IPv6 must be bracketed, and quoted (':' and '[' are not token). */
		{ "for=\"" V6 "\"", V6, 0, 0, NULL },
		{ "for=\"" V6 ":1234\"", V6, 0, 0, NULL },
		{ "for=[" V6 "]:1234", V6, -EINVAL, 0, NULL },
		{ "for=[" V6 "]", V6, -EINVAL, 0, NULL },
		/* A port makes an IPv4 node a quoted-string too. */
		{ "for=" V4 ":1234", V4, -EINVAL, 0, NULL },
		/* Not addresses. */
		{ "for=unknown", V4, 0, 0, NULL },
		{ "for=_hidden", V4, 0, 0, NULL },
		{ "for=\"\"", V4, 0, 0, NULL },
		{ "for=\"[]:1\"", V4, 0, 0, NULL },
		{ "for=\"[" V4 "]:1\"", V4, 0, 0, NULL },
		{ "for=\"010.0.0.1:1\"", V4, 0, 0, NULL },
	};

	fwd_run(t, ARRAY_SIZE(t));
}

void test_hbone_hdr_forwarded_host(void)
{
	static const struct fwd_case t[] = {
		{ "for=\"" V4 ":1234\";host=reviews.default.svc.cluster.local", V4,
		  FOR_PORT | HBONE_FWD_SERVICE, 1234, "reviews.default.svc.cluster.local" },
		{ "host=svc;for=\"" V4 ":1\"", V4, FOR_PORT | HBONE_FWD_SERVICE, 1, "svc" },
		{ "host=svc", V4, HBONE_FWD_SERVICE, 0, "svc" },
		{ "HOST=svc", V4, HBONE_FWD_SERVICE, 0, "svc" },
		{ "host=\"svc.ns\"", V4, HBONE_FWD_SERVICE, 0, "svc.ns" },
		{ "host=Svc-1.NS", V4, HBONE_FWD_SERVICE, 0, "Svc-1.NS" },
		/* The host, even when for= is someone else. */
		{ "for=\"10.0.0.9:1\";host=svc", V4, HBONE_FWD_SERVICE, 0, "svc" },
		/* Outside a DNS name's characters: ignored. */
		{ "host=svc_x", V4, 0, 0, NULL },
		{ "host=\"svc x\"", V4, 0, 0, NULL },
		{ "host=\"svc:80\"", V4, 0, 0, NULL },
		{ "host=\"[fd00::1]\"", V4, 0, 0, NULL },
		{ "host=\"a\\\"b\"", V4, 0, 0, NULL },
		{ "host=\"a\\\\b\"", V4, 0, 0, NULL },
		{ "host=\"a/b\"", V4, 0, 0, NULL },
		{ "host=\"a\tb\"", V4, 0, 0, NULL },
		{ "host=\"caf\xc3\xa9\"", V4, 0, 0, NULL },	/* obs-text: syntax, not DNS */
		{ "host=\"\"", V4, 0, 0, NULL },
		{ "host=a%0a", V4, 0, 0, NULL },
		/* host= ignored, for= still used. */
		{ "for=\"" V4 ":5\";host=\"a b\"", V4, FOR_PORT, 5, NULL },
	};

	fwd_run(t, ARRAY_SIZE(t));
}

void test_hbone_hdr_forwarded_host_length(void)
{
	struct sl_ip src = ip_of(V4);
	char svc[TUNNEL_NAME_MAX], small[4];
	uint16_t port;
	char *s;

	/* The longest name that fits (with its NUL) is used whole. */
	s = rep("host=", 'a', TUNNEL_NAME_MAX - 1, "");
	ASSERT_EQ(hbone_forwarded_parse(s, &src, &port, svc, sizeof(svc)), HBONE_FWD_SERVICE,
		  "253 bytes");
	ASSERT_EQ(strlen(svc), TUNNEL_NAME_MAX - 1, "whole");
	free(s);
	/* One more: ignored, never truncated. */
	s = rep("host=", 'a', TUNNEL_NAME_MAX, "");
	ASSERT_EQ(hbone_forwarded_parse(s, &src, &port, svc, sizeof(svc)), 0, "254 bytes");
	ASSERT_STREQ(svc, "", "not truncated");
	free(s);
	s = rep("for=\"" V4 ":80\";host=\"", 'b', 4096, "\"");
	ASSERT_EQ(hbone_forwarded_parse(s, &src, &port, svc, sizeof(svc)), FOR_PORT, "4 KiB host");
	ASSERT_STREQ(svc, "", "not truncated");
	ASSERT_EQ(port, 80, "for= still used");
	free(s);
	/* The caller's buffer bounds it too. */
	ASSERT_EQ(hbone_forwarded_parse("host=abc", &src, &port, small, sizeof(small)),
		  HBONE_FWD_SERVICE, "fits 4");
	ASSERT_STREQ(small, "abc", "fits 4");
	ASSERT_EQ(hbone_forwarded_parse("host=abcd", &src, &port, small, sizeof(small)), 0,
		  "does not fit 4");
	ASSERT_STREQ(small, "", "not truncated");
	memset(small, 'x', sizeof(small));
	ASSERT_EQ(hbone_forwarded_parse("host=abc", &src, &port, small, 0), 0, "no buffer");
	ASSERT_EQ(small[0], 'x', "no buffer: untouched");
	/* An overlong for= is ignored the same way. */
	s = rep("for=\"" V4 ":", '0', 4096, "80\"");
	ASSERT_EQ(hbone_forwarded_parse(s, &src, &port, svc, sizeof(svc)), 0, "4 KiB for");
	ASSERT_EQ(port, 0, "4 KiB for: no port");
	free(s);
}

void test_hbone_hdr_forwarded_elements(void)
{
	static const struct fwd_case t[] = {
		/* The first element is the client's; later ones are ignored. */
		{ "for=\"" V4 ":1\", for=\"10.0.0.2:2\"", V4, FOR_PORT, 1, NULL },
		{ "for=\"10.0.0.2:2\", for=\"" V4 ":1\"", V4, 0, 0, NULL },
		{ "for=\"" V4 ":1\",host=evil", V4, FOR_PORT, 1, NULL },
		{ "for=\"" V4 ":1\";by=x, host=evil", V4, FOR_PORT, 1, NULL },
		/* Later elements are not even parsed. */
		{ "for=\"" V4 ":1\", ]]]", V4, FOR_PORT, 1, NULL },
		/* Empty list elements and OWS around commas (RFC 9110 5.6.1). */
		{ ", ,\tfor=\"" V4 ":1\"", V4, FOR_PORT, 1, NULL },
		{ "for=\"" V4 ":1\" \t, x", V4, FOR_PORT, 1, NULL },
		{ "for=\"" V4 ":1\"  ", V4, FOR_PORT, 1, NULL },
		/* A comma in a quoted string does not end the element. */
		{ "ext=\"a,b;c=d\";for=\"" V4 ":3\"", V4, FOR_PORT, 3, NULL },
		/* Empty pairs; other parameters read and dropped. */
		{ ";;for=\"" V4 ":4\";", V4, FOR_PORT, 4, NULL },
		{ "proto=http;by=\"[fd00::9]:80\";for=\"" V4 ":5\";host=s", V4,
		  FOR_PORT | HBONE_FWD_SERVICE, 5, "s" },
		{ "", V4, 0, 0, NULL },
		{ ",", V4, 0, 0, NULL },
		{ ";", V4, 0, 0, NULL },
		{ "by=x", V4, 0, 0, NULL },
	};

	fwd_run(t, ARRAY_SIZE(t));
}

/* Not RFC 7239: -EINVAL, and nothing from the element is used, even a
 * pair that came before the error. */
void test_hbone_hdr_forwarded_syntax(void)
{
	static const struct fwd_case t[] = {
		{ "for=\"" V4 ":1\" ;host=a", V4, -EINVAL, 0, NULL },	/* no OWS inside */
		{ "for=\"" V4 ":1\"; host=a", V4, -EINVAL, 0, NULL },
		{ "for =\"" V4 ":1\"", V4, -EINVAL, 0, NULL },
		{ "for= \"" V4 ":1\"", V4, -EINVAL, 0, NULL },
		{ " for=\"" V4 ":1\" x", V4, -EINVAL, 0, NULL },
		{ "for=\"" V4 ":1", V4, -EINVAL, 0, NULL },		/* unterminated */
		{ "for=\"" V4 ":1\\\"", V4, -EINVAL, 0, NULL },		/* escaped quote */
		{ "for=\"" V4 ":1\\", V4, -EINVAL, 0, NULL },
		{ "for=\"" V4 ":1\"x", V4, -EINVAL, 0, NULL },
		{ "for=\"" V4 ":1\"\"\"", V4, -EINVAL, 0, NULL },
		{ "for=", V4, -EINVAL, 0, NULL },
		{ "for=;host=a", V4, -EINVAL, 0, NULL },
		{ "for", V4, -EINVAL, 0, NULL },
		{ "=x", V4, -EINVAL, 0, NULL },
		{ "for==x", V4, -EINVAL, 0, NULL },
		{ "for:x", V4, -EINVAL, 0, NULL },
		{ "\"for\"=x", V4, -EINVAL, 0, NULL },
		{ "for=a\"b\"", V4, -EINVAL, 0, NULL },
		{ "for=\"" V4 ":1\x01\"", V4, -EINVAL, 0, NULL },	/* CTL */
		{ "for=\"" V4 ":1\x7f\"", V4, -EINVAL, 0, NULL },
		{ "for=\"" V4 ":1\r\n\"", V4, -EINVAL, 0, NULL },
		{ "host=\"a\\\x01\"", V4, -EINVAL, 0, NULL },	/* CTL in quoted-pair */
		{ "host=a\x80", V4, -EINVAL, 0, NULL },		/* obs-text is no token */
		/* Each parameter at most once per element. */
		{ "for=\"" V4 ":1\";for=\"" V4 ":2\"", V4, -EINVAL, 0, NULL },
		{ "for=\"" V4 ":1\";FOR=x", V4, -EINVAL, 0, NULL },
		{ "host=a;for=\"" V4 ":1\";host=b", V4, -EINVAL, 0, NULL },
	};

	fwd_run(t, ARRAY_SIZE(t));
}

/* The old hand parser looked for "for=" and "host=" anywhere in the value;
 * they are parameter names only. */
void test_hbone_hdr_forwarded_no_substring(void)
{
	static const struct fwd_case t[] = {
		{ "ext=\"for=" V4 ":1;host=x\"", V4, 0, 0, NULL },
		{ "xfor=\"" V4 ":1\";vhost=x", V4, 0, 0, NULL },
		{ "by=\"for=" V4 ":1\";for=\"" V4 ":2\"", V4, FOR_PORT, 2, NULL },
	};

	fwd_run(t, ARRAY_SIZE(t));
}

void test_hbone_hdr_forwarded_overlong(void)
{
	struct sl_ip src = ip_of(V4);
	char svc[TUNNEL_NAME_MAX];
	uint16_t port;
	char *s;

	/* Many empty pairs, then the ones that count. */
	s = rep("", ';', 65536, "for=\"" V4 ":6\";host=svc");
	ASSERT_EQ(hbone_forwarded_parse(s, &src, &port, svc, sizeof(svc)),
		  FOR_PORT | HBONE_FWD_SERVICE, "64 Ki semicolons");
	ASSERT_EQ(port, 6, "port");
	free(s);
	/* A long parameter name, a long token, a long unterminated string. */
	s = rep("", 'n', 65536, "=v;for=\"" V4 ":6\"");
	ASSERT_EQ(hbone_forwarded_parse(s, &src, &port, svc, sizeof(svc)), FOR_PORT, "long name");
	free(s);
	s = rep("ext=", 't', 65536, ";for=\"" V4 ":6\"");
	ASSERT_EQ(hbone_forwarded_parse(s, &src, &port, svc, sizeof(svc)), FOR_PORT, "long token");
	free(s);
	s = rep("for=\"", 'q', 65536, "");
	ASSERT_EQ(hbone_forwarded_parse(s, &src, &port, svc, sizeof(svc)), -EINVAL,
		  "long unterminated");
	free(s);
}
