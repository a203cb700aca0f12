// SPDX-License-Identifier: Apache-2.0
/* sni.c - the server name of a TLS ClientHello; see sni.h. */
#include <stdbool.h>
#include <string.h>

#include "sni.h"

#define REC_HDR		5
#define REC_MAX		16384		/* 2^14: the largest plaintext record */
#define HS_HDR		4
#define CT_HANDSHAKE	22
#define HS_CLIENT_HELLO	1
#define EXT_SERVER_NAME	0
#define NAME_HOST	0
/* version, random, session_id length, cipher_suites length, one suite,
 * compression length, one method */
#define HELLO_MIN	(2 + 32 + 1 + 2 + 2 + 1 + 1)

/* A view of bytes still to read; every take checks it first. */
struct cur {
	const uint8_t *p;
	size_t n;
};

static bool take(struct cur *c, size_t n, struct cur *out)
{
	if (c->n < n)
		return false;
	if (out)
		*out = (struct cur){ c->p, n };
	c->p += n;
	c->n -= n;
	return true;
}

static bool take_u8(struct cur *c, size_t *v)
{
	if (c->n < 1)
		return false;
	*v = c->p[0];
	return take(c, 1, NULL);
}

static bool take_u16(struct cur *c, size_t *v)
{
	if (c->n < 2)
		return false;
	*v = (size_t)c->p[0] << 8 | c->p[1];
	return take(c, 2, NULL);
}

/* A vector with a 1- or 2-byte length prefix, whole. */
static bool take_vec(struct cur *c, int prefix, struct cur *out)
{
	size_t len;

	if (!(prefix == 1 ? take_u8(c, &len) : take_u16(c, &len)))
		return false;
	return take(c, len, out);
}

static enum sni_result bad(struct sni_info *out, const char *why)
{
	out->name[0] = '\0';
	out->why = why;
	return SNI_MALFORMED;
}

/* A host_name as RFC 6066 has it: a DNS name, no trailing dot; lowercased
 * into out->name. */
static enum sni_result host_name(struct cur name, struct sni_info *out)
{
	size_t label = 0;

	if (!name.n || name.n > SNI_NAME_MAX)
		return bad(out, "host_name empty or longer than 253 bytes");
	for (size_t i = 0; i < name.n; i++) {
		char ch = (char)name.p[i];

		if (ch == '.') {
			if (!label)
				return bad(out, "host_name has an empty label");
			label = 0;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_') {
			label++;
		} else if (ch >= 'A' && ch <= 'Z') {
			ch = (char)(ch - 'A' + 'a');
			label++;
		} else {
			return bad(out, "host_name has a byte a DNS name cannot hold");
		}
		if (label > 63)
			return bad(out, "host_name has a label longer than 63 bytes");
		out->name[i] = ch;
	}
	if (!label)
		return bad(out, "host_name ends with a dot");
	out->name[name.n] = '\0';
	return SNI_FOUND;
}

/* The server_name extension's data: exactly one entry, of type host_name. */
static enum sni_result server_name(struct cur d, struct sni_info *out)
{
	struct cur list, name;
	size_t type;

	if (!take_vec(&d, 2, &list) || d.n)
		return bad(out, "server_name list length does not fill the extension");
	if (!take_u8(&list, &type) || !take_vec(&list, 2, &name))
		return bad(out, "server_name list truncated");
	if (type != NAME_HOST)
		return bad(out, "server_name entry is not a host_name");
	if (list.n)
		return bad(out, "server_name holds more than one name");
	return host_name(name, out);
}

/* The ClientHello body (after the handshake header). */
static enum sni_result client_hello(struct cur c, struct sni_info *out)
{
	struct cur sid, suites, comp, exts, data;
	enum sni_result r = SNI_ABSENT;
	bool seen = false;
	size_t v;

	if (!take_u8(&c, &v) || v != 3 || !take(&c, 1 + 32, NULL))
		return bad(out, "ClientHello version is not 3.x");
	if (!take_vec(&c, 1, &sid) || sid.n > 32)
		return bad(out, "session_id longer than 32 bytes or truncated");
	if (!take_vec(&c, 2, &suites) || !suites.n || suites.n % 2)
		return bad(out, "cipher_suites empty, odd or truncated");
	if (!take_vec(&c, 1, &comp) || !comp.n)
		return bad(out, "compression_methods empty or truncated");
	if (!c.n)
		return SNI_ABSENT;	/* SSL 3.0 style: no extensions at all */
	if (!take_vec(&c, 2, &exts) || c.n)
		return bad(out, "extensions length does not fill the ClientHello");
	while (exts.n) {
		size_t type;

		if (!take_u16(&exts, &type) || !take_vec(&exts, 2, &data))
			return bad(out, "extension truncated");
		if (type != EXT_SERVER_NAME)
			continue;
		if (seen)
			return bad(out, "two server_name extensions");
		seen = true;
		r = server_name(data, out);
		if (r == SNI_MALFORMED)
			return r;
	}
	return r;
}

static enum sni_result incomplete(struct sni_info *out, size_t need)
{
	if (need > SNI_PEEK_MAX)
		return bad(out, "ClientHello longer than this parser takes");
	out->need = need;
	return SNI_INCOMPLETE;
}

/* Handshake records from buf are joined into hs until the ClientHello is
 * whole; records come one after the other, each within SNI_PEEK_MAX. */
enum sni_result sni_parse(const uint8_t *buf, size_t len, struct sni_info *out)
{
	uint8_t hs[HS_HDR + SNI_HELLO_MAX];
	size_t hs_len = 0, hs_want = 0, off = 0;

	memset(out, 0, sizeof(*out));
	out->why = "";
	if (!buf)
		len = 0;
	for (;;) {
		size_t rlen, room, n;

		if (len - off < REC_HDR)
			return incomplete(out, off + REC_HDR);
		if (buf[off] != CT_HANDSHAKE)
			return bad(out, "not a TLS handshake record");
		if (buf[off + 1] != 3 || buf[off + 2] > 4)
			return bad(out, "record version is not 3.0 to 3.4");
		rlen = (size_t)buf[off + 3] << 8 | buf[off + 4];
		if (!rlen || rlen > REC_MAX)
			return bad(out, "record length 0 or over 2^14");
		if (off + REC_HDR + rlen > SNI_PEEK_MAX)	/* the same answer whatever len */
			return bad(out, "ClientHello spread over more than this parser takes");
		if (len - off - REC_HDR < rlen)
			return incomplete(out, off + REC_HDR + rlen);
		/* what of this fragment the ClientHello still needs */
		room = (hs_want ? hs_want : sizeof(hs)) - hs_len;
		n = rlen < room ? rlen : room;
		memcpy(hs + hs_len, buf + off + REC_HDR, n);
		hs_len += n;
		off += REC_HDR + rlen;
		if (!hs_want && hs_len >= HS_HDR) {
			size_t body = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];

			if (hs[0] != HS_CLIENT_HELLO)
				return bad(out, "first handshake message is not a ClientHello");
			if (body < HELLO_MIN || body > SNI_HELLO_MAX)
				return bad(out, "ClientHello length out of bounds");
			hs_want = HS_HDR + body;
		}
		if (hs_want && hs_len >= hs_want)
			return client_hello((struct cur){ hs + HS_HDR, hs_want - HS_HDR }, out);
	}
}

const char *sni_result_str(enum sni_result r)
{
	static const char *const names[] = { "found", "absent", "incomplete", "malformed" };

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}
