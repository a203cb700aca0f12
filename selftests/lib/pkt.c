// SPDX-License-Identifier: Apache-2.0
/* pkt.c - see pkt.h. Checksums are left zero: the programs under test do not
 * verify them and BPF_PROG_TEST_RUN does not either. */
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <stddef.h>
#include <string.h>

#include "pkt.h"

/* The L4 header of o at l4; returns its length. */
static size_t put_l4(uint8_t *l4, const struct pkt_opts *o, uint8_t proto, size_t payload, int v4)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr th = { 0 };

		th.source = htons(o->sport);
		th.dest = htons(o->dport);
		th.doff = 5;
		th.syn = !!(o->flags & PKT_SYN);
		th.ack = !!(o->flags & PKT_ACK);
		th.rst = !!(o->flags & PKT_RST);
		th.window = htons(65535);
		memcpy(l4, &th, sizeof(th));
		return sizeof(th);
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr uh = { 0 };

		uh.source = htons(o->sport);
		uh.dest = htons(o->dport);
		uh.len = htons((uint16_t)(sizeof(uh) + payload));
		memcpy(l4, &uh, sizeof(uh));
		return sizeof(uh);
	}
	memset(l4, 0, 8);
	if (proto == IPPROTO_ICMP && v4)
		l4[0] = 8;		/* echo request */
	else if (proto == IPPROTO_ICMPV6 && !v4)
		l4[0] = 128;		/* echo request */
	return 8;
}

/* Headers are built in aligned locals and copied in: the frame's IP header
 * sits at offset 14, which is not aligned for struct iphdr. */
int pkt_build(struct pkt *p, const struct pkt_opts *o)
{
	uint8_t *b = p->data, *l4;
	struct in_addr s4, d4;
	struct in6_addr s6, d6;
	size_t off = 14, l4len, payload = o->payload > 0 ? (size_t)o->payload : 0;
	uint8_t proto = o->proto ? o->proto : IPPROTO_TCP;
	int v4 = inet_pton(AF_INET, o->src, &s4) == 1;

	memset(p, 0, sizeof(*p));
	if (o->ip4_options < 0 || o->ip4_options > 40 || o->ip4_options % 4)
		return -1;
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
		ip.frag_off =
			htons((uint16_t)((o->ip4_frag_off & 0x1fff) | (o->more_frags ? IP_MF : 0)));
		off += (size_t)ihl * 4;
		l4 = b + off;
		if (payload > sizeof(p->data) - off - 20)
			payload = sizeof(p->data) - off - 20;
		l4len = put_l4(l4, o, proto, payload, 1);
		ip.tot_len = htons((uint16_t)((size_t)ihl * 4 + l4len + payload));
		memcpy(b + 14, &ip, sizeof(ip));
		memset(b + 14 + 20, 1, (size_t)o->ip4_options);	/* NOP options */
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
			uint16_t fo =
				htons((uint16_t)(o->ip6_frag_off << 3 | (o->more_frags ? 1 : 0)));

			*next = 44;
			next = b + off;
			memcpy(b + off + 2, &fo, sizeof(fo));
			b[off + 7] = 0x5a;	/* identification */
			off += 8;
		}
		*next = proto;
		l4 = b + off;
		if (payload > sizeof(p->data) - off - 20)
			payload = sizeof(p->data) - off - 20;
		l4len = put_l4(l4, o, proto, payload, 0);
		uint16_t plen = htons((uint16_t)(off - 54 + l4len + payload));
		memcpy(b + ip6_off + offsetof(struct ip6_hdr, ip6_plen), &plen, sizeof(plen));
	}
	p->len = off + l4len + payload;
	if (o->truncate < 0 || (size_t)o->truncate > p->len)
		return -1;
	p->len -= (size_t)o->truncate;
	return 0;
}
