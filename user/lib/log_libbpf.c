// SPDX-License-Identifier: Apache-2.0
/* log_libbpf.c - libbpf's print callback into our log (kept apart from log.c so
 * that sluicectl links the log without libbpf). */
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

__attribute__((format(printf, 2, 0)))
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum log_level lvl = level == LIBBPF_WARN ? LOG_INFO : LOG_DEBUG;
	char line[2048];

	if (lvl > log_get_level())
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	log_msg(lvl, "libbpf: %s", line);
	return 0;
}

void log_route_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
