// SPDX-License-Identifier: Apache-2.0
/* test_buf.c - lib/buf.h, the linear buffer every relay and HTTP/2 stream
 * uses: an append takes all the free bytes, also when some of them are
 * before the data (the HTTP/2 code puts what a window allows and treats a
 * short put as a broken peer). */
#include <string.h>

#include "lib/buf.h"
#include "lib/test.h"

void test_buf_put_all_room(void)
{
	static char area[65536], in[16384];
	struct buf b = { .area = area, .size = sizeof(area) };

	memset(in, 'a', sizeof(in));
	/* 45,000 bytes of data after 10,000 taken: 10,536 free at the tail,
	 * 20,536 in all */
	b.head = 10000;
	b.data = 45000;
	memset(area + b.head, 'd', b.data);
	ASSERT_EQ(buf_put(&b, in, sizeof(in)), sizeof(in), "16 KiB fit in the 20,536 free bytes");
	ASSERT_EQ(b.head, 0, "the data moved to the front");
	ASSERT_EQ(b.data, 45000 + sizeof(in), "all of it counted");
	ASSERT_TRUE(area[0] == 'd' && area[44999] == 'd' && area[45000] == 'a' && area[45000 + 16383] == 'a',
		    "the old bytes first, then the new");
	/* more than is free: what fits, no more */
	ASSERT_EQ(buf_put(&b, in, sizeof(in)), sizeof(area) - 45000 - sizeof(in), "a full buffer takes what fits");
	ASSERT_EQ(b.data, sizeof(area), "and is full");
	/* no move when the tail has room */
	b.head = 100;
	b.data = 1000;
	ASSERT_EQ(buf_put(&b, in, 1000), 1000, "a small put");
	ASSERT_EQ(b.head, 100, "fits at the tail: nothing moved");
}
