/* SPDX-License-Identifier: Apache-2.0 */
/* heap.h - the size of an allocation as the allocator made it, for the
 * status socket's memory section (tunnel_mem_get, waypoint_mem_get). */
#ifndef SL_HEAP_H
#define SL_HEAP_H

#include <malloc.h>
#include <stdint.h>

/* Heap bytes of one allocation (0 for NULL). */
static inline uint64_t heap_size(void *p)
{
	return p ? malloc_usable_size(p) : 0;
}

#endif
