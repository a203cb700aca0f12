// SPDX-License-Identifier: Apache-2.0
/* test_sni.c - the ClientHello server name parser (sni.c): a ClientHello
 * as OpenSSL's s_client sends it, hand-built ones (fragmented over records,
 * without extensions, without server_name), every truncation of a good one
 * (incomplete, never malformed, never read past its length), and bad ones:
 * oversized and inconsistent lengths, two names, two extensions, other name
 * types, names a DNS name cannot be, records that are not handshakes. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lib/test.h"
#include "sni.h"

/* `openssl s_client -tls1_2 -servername a.b.example.org`, captured on loopback. */
static const uint8_t openssl_tls12[] = {
	0x16, 0x03, 0x01, 0x00, 0xcf, 0x01, 0x00, 0x00, 0xcb, 0x03, 0x03, 0x3d, 0x35, 0xaa, 0x43, 0x04,
	0x20, 0x86, 0x77, 0x44, 0xeb, 0xb8, 0xa4, 0xc1, 0x7b, 0x7e, 0x1a, 0x41, 0x7a, 0xa5, 0x12, 0xaf,
	0x6c, 0x3a, 0x6d, 0x21, 0x18, 0x04, 0x43, 0x05, 0x38, 0xe3, 0x78, 0x00, 0x00, 0x38, 0xc0, 0x2c,
	0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e,
	0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14,
	0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c,
	0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0x6a, 0x00, 0x00, 0x00, 0x14, 0x00, 0x12,
	0x00, 0x00, 0x0f, 0x61, 0x2e, 0x62, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x6f,
	0x72, 0x67, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x0c, 0x00, 0x0a,
	0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16,
	0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03,
	0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05,
	0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02,
	0x05, 0x02, 0x06, 0x02,
};

/* ---- a ClientHello builder ---- */

struct bytes {
	uint8_t b[40000];
	size_t n;
};

static void put(struct bytes *o, const void *p, size_t n)
{
	if (o->n + n <= sizeof(o->b)) {
		memcpy(o->b + o->n, p, n);
		o->n += n;
	}
}

static void put8(struct bytes *o, size_t v)
{
	uint8_t b = (uint8_t)v;

	put(o, &b, 1);
}

static void put16(struct bytes *o, size_t v)
{
	put8(o, v >> 8);
	put8(o, v);
}

static void put24(struct bytes *o, size_t v)
{
	put8(o, v >> 16);
	put16(o, v);
}

/* A server_name extension (type 0) with entries of type host_name, or
 * typed "T:name" for another type T; NULL-terminated. */
static void ext_sni(struct bytes *o, ...)
{
	struct bytes list = { .n = 0 };
	const char *name;
	va_list ap;

	va_start(ap, o);
	while ((name = va_arg(ap, const char *))) {
		size_t type = 0;

		if (name[0] && name[1] == ':') {
			type = (size_t)(name[0] - '0');
			name += 2;
		}
		put8(&list, type);
		put16(&list, strlen(name));
		put(&list, name, strlen(name));
	}
	va_end(ap);
	put16(o, 0);
	put16(o, list.n + 2);
	put16(o, list.n);
	put(o, list.b, list.n);
}

/* Another extension: type, n zero bytes of data. */
static void ext_other(struct bytes *o, size_t type, size_t n)
{
	put16(o, type);
	put16(o, n);
	for (size_t i = 0; i < n; i++)
		put8(o, 0);
}

/* A handshake message: ClientHello with exts (NULL: no extensions block). */
static void client_hello(struct bytes *o, const struct bytes *exts)
{
	struct bytes body = { .n = 0 };
	uint8_t random[32] = { 1, 2, 3 };

	put16(&body, 0x0303);
	put(&body, random, sizeof(random));
	put8(&body, 32);			/* session_id */
	put(&body, random, 32);
	put16(&body, 4);			/* two suites */
	put16(&body, 0x1301);
	put16(&body, 0xc02f);
	put8(&body, 1);				/* compression: null */
	put8(&body, 0);
	if (exts) {
		put16(&body, exts->n);
		put(&body, exts->b, exts->n);
	}
	put8(o, 1);
	put24(o, body.n);
	put(o, body.b, body.n);
}

/* hs in handshake records of at most frag bytes each. */
static void records(struct bytes *o, const struct bytes *hs, size_t frag)
{
	for (size_t off = 0; off < hs->n; off += frag) {
		size_t n = hs->n - off < frag ? hs->n - off : frag;

		put8(o, 22);
		put16(o, 0x0301);
		put16(o, n);
		put(o, hs->b + off, n);
	}
}

/* A whole record stream for a ClientHello with exts, in records of frag. */
static struct bytes *wire(const struct bytes *exts, size_t frag)
{
	static struct bytes hs, out;

	hs.n = out.n = 0;
	client_hello(&hs, exts);
	records(&out, &hs, frag);
	return &out;
}

static enum sni_result parse(const struct bytes *b, struct sni_info *info)
{
	/* a heap copy of exactly n bytes: ASan sees any read past the end */
	uint8_t *p = malloc(b->n ? b->n : 1);
	enum sni_result r;

	memcpy(p, b->b, b->n);
	r = sni_parse(p, b->n, info);
	free(p);
	return r;
}

/* ---- tests ---- */

void test_sni_openssl_hello(void)
{
	struct bytes b = { .n = 0 };
	struct sni_info info;

	put(&b, openssl_tls12, sizeof(openssl_tls12));
	ASSERT_EQ(parse(&b, &info), SNI_FOUND, "found");
	ASSERT_STREQ(info.name, "a.b.example.org", "the name s_client sent");
	/* bytes after the ClientHello (a client that does not wait) are not its business */
	put(&b, "\x17\x03\x03\x00\x01x", 6);
	ASSERT_EQ(parse(&b, &info), SNI_FOUND, "trailing record ignored");
}

void test_sni_built_hellos(void)
{
	struct bytes e = { .n = 0 };
	struct sni_info info;

	ext_other(&e, 10, 8);
	ext_sni(&e, "WWW.Example.COM", NULL);
	ext_other(&e, 43, 3);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_FOUND, "one record");
	ASSERT_STREQ(info.name, "www.example.com", "lowercased");
	ASSERT_EQ(parse(wire(&e, 7), &info), SNI_FOUND, "fragmented over 7-byte records");
	ASSERT_STREQ(info.name, "www.example.com", "the same name reassembled");
	ASSERT_EQ(parse(wire(&e, 1), &info), SNI_FOUND, "one byte per record");

	e.n = 0;
	ext_other(&e, 10, 8);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_ABSENT, "no server_name extension");
	ASSERT_STREQ(info.name, "", "no name");
	ASSERT_EQ(parse(wire(NULL, 16384), &info), SNI_ABSENT, "no extensions block at all");
	e.n = 0;
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_ABSENT, "an empty extensions block");

	e.n = 0;
	ext_sni(&e, "under_score-1.example", NULL);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_FOUND, "'_' and '-' are taken");

	/* the largest hello taken: SNI_HELLO_MAX bytes of body, over two records */
	e.n = 0;
	ext_sni(&e, "big.example", NULL);
	ext_other(&e, 21, SNI_HELLO_MAX - 2 - 32 - 1 - 32 - 2 - 4 - 2 - 2 - e.n - 4);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_FOUND, "a ClientHello of SNI_HELLO_MAX bytes");
	ext_other(&e, 22, 0);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_MALFORMED, "4 bytes more: too long");
}

/* Every prefix of a good ClientHello asks for more, and says how much: at
 * least one byte more, never past the whole. */
void test_sni_truncated(void)
{
	struct bytes e = { .n = 0 };
	struct bytes *w;
	struct sni_info info;
	size_t bad = 0;

	ext_sni(&e, "shop.example", NULL);
	w = wire(&e, 40);
	for (size_t n = 0; n < w->n; n++) {
		struct bytes cut = { .n = 0 };

		put(&cut, w->b, n);
		if (parse(&cut, &info) != SNI_INCOMPLETE || info.need <= n || info.need > w->n)
			bad++;
	}
	ASSERT_EQ(bad, 0, "every prefix incomplete, need within (len, total]");
	ASSERT_EQ(parse(w, &info), SNI_FOUND, "the whole");
}

struct bad_case {
	const char *desc;
	size_t off;			/* byte to overwrite in the wire form */
	uint8_t val;
};

/* Lengths that lie, set one byte at a time in a good wire form:
 *   0 type 1-2 version 3-4 record length | 5 hs type 6-8 hs length |
 *   9-10 version 11-42 random 43 sid length ... */
void test_sni_bad_lengths(void)
{
	static const struct bad_case cases[] = {
		{ "record type alert", 0, 21 },
		{ "record type application data", 0, 23 },
		{ "record version 2.x", 1, 2 },
		{ "record version 3.5", 2, 5 },
		{ "record length over 2^14", 3, 0x40 },
		{ "handshake not a ClientHello (ServerHello)", 5, 2 },
		{ "handshake length over SNI_HELLO_MAX", 6, 0x01 },
		{ "ClientHello version 2.x", 9, 2 },
		{ "session_id longer than 32", 43, 33 },
		{ "session_id length past the body", 43, 0xff },
	};
	struct bytes e = { .n = 0 };
	struct sni_info info;

	ext_sni(&e, "shop.example", NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct bytes *w = wire(&e, 16384);
		enum sni_result r;

		w->b[cases[i].off] = cases[i].val;
		r = parse(w, &info);
		ASSERT_EQ(r, SNI_MALFORMED, cases[i].desc);
		ASSERT_TRUE(info.why && info.why[0], "a reason is given");
	}
	{
		/* zero-length record */
		struct bytes w = { .n = 0 };

		put(&w, "\x16\x03\x01\x00\x00", 5);
		ASSERT_EQ(parse(&w, &info), SNI_MALFORMED, "empty handshake record");
		w.n = 0;
		put(&w, "\x80\x2e\x01\x03\x01", 5);
		ASSERT_EQ(parse(&w, &info), SNI_MALFORMED, "SSLv2-style hello");
		w.n = 0;
		put(&w, "GET / HTTP/1.1\r\n", 16);
		ASSERT_EQ(parse(&w, &info), SNI_MALFORMED, "plain HTTP");
	}
	{
		/* the extensions block longer or shorter than what is left */
		struct bytes *w = wire(&e, 16384);
		size_t ext_len_off = 5 + 4 + 2 + 32 + 1 + 32 + 2 + 4 + 1 + 1;

		w->b[ext_len_off + 1]++;
		ASSERT_EQ(parse(w, &info), SNI_MALFORMED, "extensions length past the ClientHello");
		w = wire(&e, 16384);
		w->b[ext_len_off + 1]--;
		ASSERT_EQ(parse(w, &info), SNI_MALFORMED, "extensions length short of the ClientHello");
		w = wire(&e, 16384);
		/* the server_name list length (after ext type and length) */
		w->b[ext_len_off + 2 + 4 + 1]++;
		ASSERT_EQ(parse(w, &info), SNI_MALFORMED, "server_name list length past its extension");
		w = wire(&e, 16384);
		/* the host_name length */
		w->b[ext_len_off + 2 + 4 + 2 + 1 + 1] += 3;
		ASSERT_EQ(parse(w, &info), SNI_MALFORMED, "host_name length past its list");
	}
	{
		/* no cipher suites, odd suites, no compression method */
		struct bytes hs = { .n = 0 }, w = { .n = 0 };
		uint8_t rnd[32] = { 0 };

		put16(&hs, 0x0303);
		put(&hs, rnd, 32);
		put8(&hs, 0);
		put16(&hs, 3);
		put(&hs, "\x13\x01\x00", 3);
		put8(&hs, 1);
		put8(&hs, 0);
		put8(&w, 22);
		put16(&w, 0x0301);
		put16(&w, hs.n + 4);
		put8(&w, 1);
		put24(&w, hs.n);
		put(&w, hs.b, hs.n);
		ASSERT_EQ(parse(&w, &info), SNI_MALFORMED, "odd cipher_suites length");
	}
}

void test_sni_bad_names(void)
{
	struct sni_info info;
	struct bytes e;
	static const char *const names[] = {
		"", ".example.com", "example.com.", "a..example.com", "exa mple.com", "exa\x01mple.com",
		"*.example.com", "example.com:443", "\xc3\xa9t\xc3\xa9.example",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", /* 64-byte label */
	};
	char longname[300];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		e.n = 0;
		ext_sni(&e, names[i], NULL);
		ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_MALFORMED, names[i]);
	}
	memset(longname, 'a', sizeof(longname) - 1);
	for (size_t i = 60; i < sizeof(longname) - 1; i += 61)
		longname[i] = '.';
	longname[254] = '\0';
	e.n = 0;
	ext_sni(&e, longname, NULL);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_MALFORMED, "a name of 254 bytes");
	longname[253] = '\0';
	e.n = 0;
	ext_sni(&e, longname, NULL);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_FOUND, "a name of 253 bytes");

	e.n = 0;
	ext_sni(&e, "a.example", "b.example", NULL);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_MALFORMED, "two host_names");
	ASSERT_HAS(info.why, "more than one", "why");
	e.n = 0;
	ext_sni(&e, "a.example", "1:b.example", NULL);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_MALFORMED, "a host_name and another type");
	e.n = 0;
	ext_sni(&e, "1:a.example", NULL);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_MALFORMED, "only a name of another type");
	e.n = 0;
	ext_sni(&e, "a.example", NULL);
	ext_sni(&e, "a.example", NULL);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_MALFORMED, "two server_name extensions");
	e.n = 0;
	ext_other(&e, 0, 0);
	ASSERT_EQ(parse(wire(&e, 16384), &info), SNI_MALFORMED, "an empty server_name extension");
	ASSERT_EQ(sni_parse(NULL, 0, &info), SNI_INCOMPLETE, "nothing yet");
	ASSERT_EQ(info.need, 5, "a record header first");
}
