/* SPDX-License-Identifier: Apache-2.0 */
/* pkt.h - crafted Ethernet frames for BPF_PROG_TEST_RUN tables.
 *
 * IPv4 or IPv6 (by the address literals), then a TCP header (20 bytes), a
 * UDP header (8 bytes, proto 17) or an 8-byte header of another protocol
 * (ICMP and ICMPv6 as an echo request), then payload zero bytes. Fields are
 * positional for old tables: new ones go at the end.
 */
#ifndef SL_PKT_H
#define SL_PKT_H

#include <stddef.h>
#include <stdint.h>

#define PKT_SYN 0x02
#define PKT_ACK 0x10
#define PKT_RST 0x04

#define PKT_TCP 6
#define PKT_UDP 17

struct pkt {
	uint8_t data[256];
	size_t len;
};

struct pkt_opts {
	const char *src, *dst;		/* IPv4 or IPv6 literals (both the same family) */
	uint16_t sport, dport;		/* host order */
	uint8_t flags;			/* PKT_* (TCP only) */
	uint8_t proto;			/* 0: TCP; PKT_UDP; any other IP protocol number */
	int ip4_options;		/* bytes of IPv4 options (multiple of 4, <= 40) */
	int ip6_hopopts;		/* an IPv6 hop-by-hop header in front of the L4 header */
	int ip6_frag;			/* an IPv6 fragment header in front of the L4 header */
	uint16_t ip4_frag_off;		/* fragment offset in 8-byte units */
	int truncate;			/* cut this many bytes off the end */
	uint16_t ip6_frag_off; /* offset in the fragment header, 8-byte units (with ip6_frag) */
	int more_frags; /* IPv4 MF, or the M flag of the IPv6 fragment header */
	int payload;			/* zero bytes after the L4 header (clamped to fit) */
};

/* Build the frame described by o into p. Returns 0 or -1 on a bad literal
 * or options that do not fit. */
int pkt_build(struct pkt *p, const struct pkt_opts *o);

#endif
