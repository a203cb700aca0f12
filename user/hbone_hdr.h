/* SPDX-License-Identifier: Apache-2.0 */
/* hbone_hdr.h - the two HBONE CONNECT request headers the server reads
 * (HBONE.md): ":authority" (the destination) and "forwarded" (RFC 7239: the
 * client's port and the destination service). Pure string parsing, no I/O,
 * so it is unit tested and fuzzed on its own (selftests/fuzz/fuzz_hbone_hdr.c).
 *
 * Inputs are NUL-terminated: a header value holding a NUL byte must be
 * rejected by the caller, which knows its length.
 */
#ifndef SL_HBONE_HDR_H
#define SL_HBONE_HDR_H

#include <stddef.h>
#include <stdint.h>

#include "resources.h"
#include "tunnel.h"

/* Longest authority hbone_authority_fmt writes: "[<v6>]:65535" + NUL. */
#define HBONE_AUTHORITY_MAX	64

/* "a.b.c.d:port" or "[v6]:port", port 1..65535 in decimal digits, nothing
 * else (IPv6 only in brackets). An IPv4-mapped IPv6 address comes out as
 * IPv4. 0 and *out set, or -EINVAL and *out zeroed. */
int hbone_authority_parse(const char *s, struct tunnel_addr *out);

/* The form hbone_authority_parse reads (also the log form, so port 0 is
 * written too, though not read back): the length written (without the NUL),
 * or -ENOSPC (buf then holds "") or -EINVAL (family neither IPv4 nor IPv6). */
int hbone_authority_fmt(const struct tunnel_addr *a, char *buf, size_t len);

/* hbone_forwarded_parse's findings. */
#define HBONE_FWD_FOR		0x1	/* for= names src_ip */
#define HBONE_FWD_PORT		0x2	/* ... with a port: *src_port */
#define HBONE_FWD_SERVICE	0x4	/* host= is a DNS name: service */

/* The first forwarded-element of a "forwarded" value (RFC 7239 section 4):
 * for="ip:port" gives *src_port when ip is src_ip, host=name gives the
 * service when name is made of DNS name characters and fits in service_len
 * (with its NUL); an unusable value is ignored, never truncated. IPv6 must
 * be quoted and bracketed, as RFC 7239 section 6 says. A bitmask of
 * HBONE_FWD_* (0: nothing usable), or -EINVAL when the element is not RFC
 * 7239 syntax (then nothing is used). *src_port is always set (0: not found),
 * service always NUL-terminated when service_len > 0. */
int hbone_forwarded_parse(const char *fwd, const struct sl_ip *src_ip, uint16_t *src_port,
			  char *service, size_t service_len);

#endif
