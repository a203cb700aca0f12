/* SPDX-License-Identifier: Apache-2.0 */
/* mapdump.h - read a whole BPF map (batch syscalls, else key by key), or
 * empty one (a hash) or zero one (an array). */
#ifndef SL_MAPDUMP_H
#define SL_MAPDUMP_H

#include <stddef.h>
#include <stdint.h>

/* Every entry of the map fd (at most max) into malloc'ed *keys and *vals,
 * *n of them. 0 or -errno. */
int map_dump(int fd, size_t key_size, size_t val_size, uint32_t max, void **keys, void **vals, size_t *n);

/* Delete every entry of the hash map fd (keys of key_size bytes, at most
 * 256). Stops at the first failing delete; 0 or -errno. */
int map_clear(int fd, size_t key_size);

/* Zero every entry of the array map fd: keys 0 .. max - 1, values of
 * val_size bytes (per-CPU maps: the value of every CPU). 0 or -errno. */
int map_zero(int fd, uint32_t max, size_t val_size);

#endif
