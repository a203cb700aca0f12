// SPDX-License-Identifier: Apache-2.0
/* log.c - see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static enum log_level cur_level = LOG_INFO;
static const char *const level_names[] = { "err", "warn", "info", "debug" };

void log_set_level(enum log_level lvl)
{
	cur_level = lvl;
}

enum log_level log_get_level(void)
{
	return cur_level;
}

int log_level_parse(const char *s)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (!strcmp(s, level_names[i]))
			return (int)i;
	return -1;
}

/* "2026-01-01T00:00:00" for now's second: strftime once a second, not per
 * line (per thread: the cache is not shared). */
static void log_when(const struct timespec *ts, char when[32])
{
	static _Thread_local time_t last = -1;
	static _Thread_local char cached[32];

	if (ts->tv_sec != last) {
		struct tm tm;

		gmtime_r(&ts->tv_sec, &tm);
		strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
		last = ts->tv_sec;
	}
	memcpy(when, cached, sizeof(cached));
}

/* "<when>.<ms>Z <level padded to 5> " into buf (64 bytes at least); its length. */
static size_t log_prefix_now(char *buf, enum log_level lvl)
{
	struct timespec ts;
	char when[32];
	size_t n, l;
	long ms;

	clock_gettime(CLOCK_REALTIME, &ts);
	log_when(&ts, when);
	n = strnlen(when, sizeof(when) - 1);
	memcpy(buf, when, n);
	ms = ts.tv_nsec / 1000000;
	buf[n++] = '.';
	buf[n++] = (char)('0' + ms / 100);
	buf[n++] = (char)('0' + ms / 10 % 10);
	buf[n++] = (char)('0' + ms % 10);
	buf[n++] = 'Z';
	buf[n++] = ' ';
	l = strlen(level_names[lvl]);
	memcpy(buf + n, level_names[lvl], l);
	for (n += l; l < 5; l++)
		buf[n++] = ' ';
	buf[n++] = ' ';
	return n;
}

size_t log_prefix(char *buf, size_t size, enum log_level lvl)
{
	if (lvl > cur_level || size < 64)
		return 0;
	return log_prefix_now(buf, lvl);
}

__attribute__((format(printf, 2, 0)))
static void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char line[2200];
	size_t n, pre;

	if (lvl > cur_level)
		return;
	pre = log_prefix_now(line, lvl);
	/* the message: at most 2047 bytes, without trailing newlines */
	line[pre] = '\0';
	vsnprintf(line + pre, 2048, fmt, ap);
	n = pre + strlen(line + pre);
	while (n > pre && line[n - 1] == '\n')
		n--;
	line[n++] = '\n';
	line[n] = '\0';
	/* One fputs per line keeps lines whole when several processes share stderr. */
	fputs(line, stderr);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}
