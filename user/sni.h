/* SPDX-License-Identifier: Apache-2.0 */
/* sni.h - the server name a TLS ClientHello asks for, read from bytes peeked
 * at the start of a connection (a Gateway's TLS Passthrough listener picks
 * its TLSRoute by it, then relays the bytes untouched). OpenSSL parses a
 * ClientHello only inside a handshake it runs itself, so this is our own.
 *
 * Strict, and bounded: TLS records of type handshake (version 3.x, 1 to
 * 2^14 bytes each) carrying one ClientHello, which may span records, of at
 * most SNI_HELLO_MAX bytes; every length inside its container; at most one
 * server_name extension, holding exactly one name of type host_name (RFC
 * 6066: one name per type; like OpenSSL, no other type is taken), a DNS
 * name of letters, digits, '-' and '_' in dot-separated labels. Nothing is
 * read past len; nothing but the name is kept.
 *
 *   record:      type(1)=22 version(2)=3.x length(2) fragment
 *   handshake:   type(1)=1 length(3) ClientHello
 *   ClientHello: version(2) random(32) session_id<0..32> cipher_suites<2..2^16-2>
 *                compression_methods<1..2^8-1> [extensions<0..2^16-1>]
 *   extension:   type(2) length(2) data    server_name is type 0:
 *   server_name: list length(2) { name_type(1)=0 length(2) name }
 */
#ifndef SL_SNI_H
#define SL_SNI_H

#include <stddef.h>
#include <stdint.h>

#define SNI_HELLO_MAX	16384		/* the largest ClientHello (handshake body) taken */
#define SNI_PEEK_MAX	(SNI_HELLO_MAX + 512)	/* bytes a caller need peek at most */
#define SNI_NAME_MAX	253		/* a DNS name, without the trailing dot */

enum sni_result {
	SNI_FOUND = 0,			/* a complete ClientHello with a host_name */
	SNI_ABSENT,			/* a complete ClientHello without one */
	SNI_INCOMPLETE,			/* more bytes needed: at least out->need in all */
	SNI_MALFORMED,			/* not a ClientHello we take (out->why says why) */
};

struct sni_info {
	char name[SNI_NAME_MAX + 1];	/* SNI_FOUND: the name, lowercased */
	size_t need;			/* SNI_INCOMPLETE: > len, <= SNI_PEEK_MAX */
	const char *why;		/* SNI_MALFORMED: static text */
};

/* Parse the first len bytes a client sent. Always fills *out. */
enum sni_result sni_parse(const uint8_t *buf, size_t len, struct sni_info *out);

const char *sni_result_str(enum sni_result r);

#endif
