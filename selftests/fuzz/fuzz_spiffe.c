// SPDX-License-Identifier: Apache-2.0
/* fuzz_spiffe.c - libFuzzer target: identity_spiffe_parse() and
 * identity_cert_spiffe_buf() (URI SAN from DER or PEM) on arbitrary bytes.
 *
 * Every input goes to both (each rejects the other's inputs in a few bytes).
 * Beyond "no crash", it checks what the parser promises: an accepted URI is
 * canonical (the formatter gives back exactly the input bytes) and its parts
 * keep to the SPIFFE limits; an ID taken from a certificate formats and parses
 * back to itself.
 *
 * fuzz-srcs: user/identity.c user/lib/log.c user/lib/loop.c
 * fuzz-libs: -lssl -lcrypto -lpthread
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const struct spiffe_id *id, const uint8_t *src, size_t len)
{
	char buf[SL_SPIFFE_URI_MAX + 1];
	struct spiffe_id back;
	int n;

	if (strlen(id->td) > SL_SPIFFE_TD_MAX || strlen(id->ns) > SL_SPIFFE_SEG_MAX ||
	    strlen(id->sa) > SL_SPIFFE_SEG_MAX || !id->td[0] || !id->ns[0] || !id->sa[0])
		abort();
	n = identity_spiffe_format(id, buf, sizeof(buf));
	if (n < 0)
		abort();
	if (src && ((size_t)n != len || memcmp(buf, src, len)))
		abort();	/* accepted but not canonical */
	if (identity_spiffe_parse(buf, (size_t)n, &back) || strcmp(back.td, id->td) ||
	    strcmp(back.ns, id->ns) || strcmp(back.sa, id->sa))
		abort();
	/* One byte short never fits. */
	if (identity_spiffe_format(id, buf, (size_t)n) != -ENOSPC)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spiffe_id id;

	if (!identity_spiffe_parse((const char *)data, size, &id))
		check_roundtrip(&id, data, size);
	memset(&id, 0, sizeof(id));
	if (!identity_cert_spiffe_buf(data, size, &id))
		check_roundtrip(&id, NULL, 0);
	return 0;
}
