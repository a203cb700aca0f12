// SPDX-License-Identifier: Apache-2.0
/* fuzz_hbone_hdr.c - libFuzzer target: hbone_authority_parse() and
 * hbone_forwarded_parse() (user/hbone_hdr.c) on arbitrary bytes.
 *
 * The input, NUL-terminated in a buffer of exactly its size (so ASan sees any
 * read past the NUL), goes to both parsers: each rejects the other's inputs
 * within a few bytes. Beyond "no crash", it checks what they promise: an
 * accepted authority is a real address and port that formats and parses back
 * to itself; forwarded findings are consistent (a port only with its for=, a
 * service only of DNS name characters, NUL-terminated inside the buffer, the
 * same whatever the buffer's size except whether the name fits), and nothing
 * is written past the service buffer.
 *
 * fuzz-srcs: user/hbone_hdr.c
 * fuzz-libs: -lpthread
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hbone_hdr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CANARY	0x5a
#define GUARD	16

static const uint8_t mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static void check_authority(const char *s)
{
	struct tunnel_addr a, b;
	char buf[HBONE_AUTHORITY_MAX], again[HBONE_AUTHORITY_MAX];
	int n;

	if (hbone_authority_parse(s, &a)) {
		static const struct tunnel_addr zero;

		if (memcmp(&a, &zero, sizeof(a)))
			abort();	/* failure leaves *out zeroed */
		return;
	}
	if (!a.port || (a.ip.family != SL_AF_INET && a.ip.family != SL_AF_INET6))
		abort();
	if (a.ip.family == SL_AF_INET6 && !memcmp(a.ip.addr.octets, mapped_prefix, 12))
		abort();	/* mapped addresses come out as IPv4 */
	n = hbone_authority_fmt(&a, buf, sizeof(buf));
	if (n <= 0 || (size_t)n != strlen(buf))
		abort();
	if (hbone_authority_parse(buf, &b) || memcmp(&a, &b, sizeof(a)))
		abort();
	/* The formatted form is canonical: a fixed point. */
	if (hbone_authority_fmt(&b, again, sizeof(again)) != n || strcmp(buf, again))
		abort();
	/* One byte short never fits, and leaves nothing behind. */
	if (hbone_authority_fmt(&a, again, (size_t)n) != -ENOSPC || again[0])
		abort();
}

static bool dns_chars(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.'))
			return false;
	return true;
}

/* One call with a service buffer of len bytes between canaries; returns the
 * result and checks what holds whatever the input. */
static int forwarded_call(const char *s, const struct sl_ip *src, size_t len, uint16_t *port,
			  char *out)
{
	uint8_t mem[GUARD + TUNNEL_NAME_MAX + GUARD];
	char *svc = (char *)mem + GUARD;
	int r, f;

	memset(mem, CANARY, sizeof(mem));
	*port = 0xa5a5;
	r = hbone_forwarded_parse(s, src, port, svc, len);
	for (size_t i = 0; i < sizeof(mem); i++)
		if ((i < GUARD || i >= GUARD + len) && mem[i] != CANARY)
			abort();	/* written outside the buffer */
	if (r < 0 && r != -EINVAL)
		abort();
	if (r > (HBONE_FWD_FOR | HBONE_FWD_PORT | HBONE_FWD_SERVICE))
		abort();
	f = r < 0 ? 0 : r;	/* an error finds nothing */
	if ((f & HBONE_FWD_PORT) ? (!*port || !(f & HBONE_FWD_FOR)) : *port != 0)
		abort();
	if (!len && (f & HBONE_FWD_SERVICE))
		abort();
	if (len) {
		if (!memchr(svc, '\0', len))
			abort();
		if (!(f & HBONE_FWD_SERVICE) != !svc[0])
			abort();
		if (!dns_chars(svc))
			abort();
		memcpy(out, svc, len);
	}
	return r;
}

static void check_forwarded(const char *s, size_t small)
{
	static const struct sl_ip srcs[] = {
		{ .family = SL_AF_INET, .addr.octets = { 10, 0, 0, 1 } },
		{ .family = SL_AF_INET6, .addr.octets = { 0xfd, 0, [15] = 1 } },
	};
	char big_svc[TUNNEL_NAME_MAX], small_svc[TUNNEL_NAME_MAX];
	uint16_t big_port, small_port;

	for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
		int big = forwarded_call(s, &srcs[i], TUNNEL_NAME_MAX, &big_port, big_svc);
		int sm = forwarded_call(s, &srcs[i], small, &small_port, small_svc);
		const int svc_bit = HBONE_FWD_SERVICE;

		/* The buffer's size changes only whether the name fits. */
		if ((big < 0) != (sm < 0) || big_port != small_port)
			abort();
		if (big < 0)
			continue;
		if ((big & ~svc_bit) != (sm & ~svc_bit))
			abort();
		if ((sm & svc_bit) && (!(big & svc_bit) || strcmp(small_svc, big_svc)))
			abort();
		if ((big & svc_bit) && strlen(big_svc) < small && !(sm & svc_bit))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	check_authority(s);
	/* A second service buffer size from the input, small enough to matter. */
	check_forwarded(s, size ? data[0] % 24 : 0);
	free(s);
	return 0;
}
