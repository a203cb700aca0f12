/* SPDX-License-Identifier: Apache-2.0 */
/* log.h - the agent's log: leveled, timestamped lines on stderr.
 * Messages read "module: what failed: why". */
#ifndef SL_LOG_H
#define SL_LOG_H

enum log_level { LOG_ERR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "err", "warn", "info", "debug"; -1 when unknown. */
int log_level_parse(const char *s);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The start of the line log_msg would write ("<time> <level> "), for
 * callers that put the rest together themselves (the waypoint's access
 * log, per request: no printf); buf holds 64 bytes at least. Returns its
 * length; 0 when lvl is not logged now. */
size_t log_prefix(char *buf, size_t size, enum log_level lvl);
/* Route libbpf's own messages into the log, one level lower than libbpf says. */
void log_route_libbpf(void);

#define pr_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define pr_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define pr_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define pr_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
