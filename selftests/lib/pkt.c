// SPDX-License-Identifier: Apache-2.0
/* pkt.c - see pkt.h. Checksums are left zero: the programs under test do not
 * verify them and BPF_PROG_TEST_RUN does not either. */
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>

#include "pkt.h"

/* Headers are built in aligned locals and copied in: the frame's IP header
 * sits at offset 14, which is not aligned for struct iphdr. */
int pkt_build(struct pkt *p, const struct pkt_opts *o)
{
	uint8_t *b = p->data, *l4;
	struct in_addr s4, d4;
	struct in6_addr s6, d6;
	struct tcphdr th = { 0 };
	size_t off = 14;
	uint8_t proto = o->proto ? o->proto : IPPROTO_TCP;
	int v4 = inet_pton(AF_INET, o->src, &s4) == 1;

	memset(p, 0, sizeof(*p));
	memset(b, 0x02, 12);		/* locally administered MACs */
	if (v4) {
		struct iphdr ip = { 0 };
		int ihl = 5 + o->ip4_options / 4;

		if (inet_pton(AF_INET, o->dst, &d4) != 1)
			return -1;
		b[12] = 0x08, b[13] = 0x00;
		ip.version = 4;
		ip.ihl = (unsigned)ihl;
		ip.ttl = 64;
		ip.protocol = proto;
		ip.saddr = s4.s_addr;
		ip.daddr = d4.s_addr;
		ip.frag_off = htons(o->ip4_frag_off);
		ip.tot_len = htons((uint16_t)(ihl * 4 + 20));
		memcpy(b + off, &ip, sizeof(ip));
		memset(b + off + 20, 1, (size_t)o->ip4_options);	/* NOP options */
		off += (size_t)ihl * 4;
		l4 = b + off;
	} else {
		struct ip6_hdr ip6 = { 0 };
		size_t ip6_off = off;
		uint8_t *next;

		if (inet_pton(AF_INET6, o->src, &s6) != 1 || inet_pton(AF_INET6, o->dst, &d6) != 1)
			return -1;
		b[12] = 0x86, b[13] = 0xdd;
		ip6.ip6_flow = htonl(6u << 28);
		ip6.ip6_hlim = 64;
		ip6.ip6_src = s6;
		ip6.ip6_dst = d6;
		memcpy(b + off, &ip6, sizeof(ip6));
		next = b + ip6_off + offsetof(struct ip6_hdr, ip6_nxt);
		off += 40;
		if (o->ip6_hopopts) {
			*next = 0;		/* hop-by-hop */
			next = b + off;		/* its nexthdr */
			b[off + 1] = 0;		/* 8 bytes */
			b[off + 2] = 1, b[off + 3] = 4;	/* PadN */
			off += 8;
		}
		if (o->ip6_frag) {
			*next = 44;
			next = b + off;
			off += 8;
		}
		*next = proto;
		l4 = b + off;
		uint16_t plen = htons((uint16_t)(off - 54 + 20));
		memcpy(b + ip6_off + offsetof(struct ip6_hdr, ip6_plen), &plen, sizeof(plen));
	}
	th.source = htons(o->sport);
	th.dest = htons(o->dport);
	th.doff = 5;
	th.syn = !!(o->flags & PKT_SYN);
	th.ack = !!(o->flags & PKT_ACK);
	th.rst = !!(o->flags & PKT_RST);
	th.window = htons(65535);
	memcpy(l4, &th, sizeof(th));
	p->len = off + 20 - (size_t)o->truncate;
	return 0;
}
