/* SPDX-License-Identifier: Apache-2.0 */
/* pkt.h - crafted Ethernet frames for BPF_PROG_TEST_RUN tables. */
#ifndef SL_PKT_H
#define SL_PKT_H

#include <stddef.h>
#include <stdint.h>

#define PKT_SYN 0x02
#define PKT_ACK 0x10
#define PKT_RST 0x04

struct pkt {
	uint8_t data[256];
	size_t len;
};

struct pkt_opts {
	const char *src, *dst;		/* IPv4 or IPv6 literals (both the same family) */
	uint16_t sport, dport;		/* host order */
	uint8_t flags;			/* PKT_* */
	uint8_t proto;			/* 0: TCP */
	int ip4_options;		/* bytes of IPv4 options (multiple of 4, <= 40) */
	int ip6_hopopts;		/* an IPv6 hop-by-hop header in front of TCP */
	int ip6_frag;			/* an IPv6 fragment header in front of TCP */
	uint16_t ip4_frag_off;		/* fragment offset in 8-byte units */
	int truncate;			/* cut this many bytes off the end */
};

/* Build the frame described by o into p. Returns 0 or -1 on a bad literal. */
int pkt_build(struct pkt *p, const struct pkt_opts *o);

#endif
