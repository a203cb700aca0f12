/* SPDX-License-Identifier: Apache-2.0 */
/* ip.h - comparing and normalising struct sl_ip (resources.h), header-only so
 * small parsers and fuzz targets need not link the model. */
#ifndef SL_IP_H
#define SL_IP_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "resources.h"

static inline bool sl_ip_eq(const struct sl_ip *a, const struct sl_ip *b)
{
	if (a->family != b->family)
		return false;
	if (a->family == SL_AF_INET)
		return a->addr.v4 == b->addr.v4;
	return !memcmp(a->addr.octets, b->addr.octets, 16);
}

/* ::ffff:a.b.c.d -> a.b.c.d: an IPv4 peer looks the same whatever the socket
 * or header it came through. */
static inline void sl_ip_unmap(struct sl_ip *ip)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (ip->family == SL_AF_INET6 && !memcmp(ip->addr.octets, mapped, 12)) {
		uint32_t v4;

		memcpy(&v4, ip->addr.octets + 12, 4);
		memset(&ip->addr, 0, sizeof(ip->addr));
		ip->addr.v4 = v4;
		ip->family = SL_AF_INET;
	}
}

#endif
