// SPDX-License-Identifier: Apache-2.0
/* fuzz_sni.c - libFuzzer target: sni_parse() (user/sni.c), the ClientHello
 * server name parser of the Gateway's TLS Passthrough listeners, on
 * arbitrary bytes as a client could send them.
 *
 * The input goes in a buffer of exactly its size (ASan sees any read past
 * it). Beyond "no crash", it checks what sni_parse promises: a found name is
 * NUL-terminated, 1 to 253 bytes of lowercase letters, digits, '-', '_' and
 * inner dots; incomplete asks for more than it was given and no more than
 * SNI_PEEK_MAX, and every longer prefix up to that need is incomplete too
 * (the answer for a prefix never changes once more bytes come, which a
 * peeking caller relies on); malformed gives a reason; and the answer is the
 * same for the input followed by more bytes, once it was not incomplete.
 *
 * fuzz-srcs: user/sni.c
 * fuzz-libs: -lpthread
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_name(const struct sni_info *in)
{
	size_t n = strnlen(in->name, sizeof(in->name));

	if (n == 0 || n > SNI_NAME_MAX || in->name[0] == '.' || in->name[n - 1] == '.')
		abort();
	for (size_t i = 0; i < n; i++) {
		char c = in->name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			abort();
		if (c == '.' && in->name[i + 1] == '.')
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *p = malloc(size ? size : 1), *more;
	struct sni_info a, b;
	enum sni_result r, r2;

	if (!p)
		return 0;
	memcpy(p, data, size);
	r = sni_parse(p, size, &a);
	switch (r) {
	case SNI_FOUND:
		check_name(&a);
		break;
	case SNI_ABSENT:
		if (a.name[0])
			abort();
		break;
	case SNI_INCOMPLETE:
		if (a.need <= size || a.need > SNI_PEEK_MAX)
			abort();
		break;
	case SNI_MALFORMED:
		if (!a.why || !a.why[0])
			abort();
		break;
	default:
		abort();
	}
	/* the same bytes and 64 more (zeros): a decided answer stands */
	more = calloc(size + 64, 1);
	if (more) {
		memcpy(more, data, size);
		r2 = sni_parse(more, size + 64, &b);
		if (r != SNI_INCOMPLETE && (r2 != r || strcmp(a.name, b.name)))
			abort();
		if (r == SNI_INCOMPLETE && size + 64 < a.need && r2 != SNI_INCOMPLETE)
			abort();
		free(more);
	}
	free(p);
	return 0;
}
