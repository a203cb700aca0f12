/* SPDX-License-Identifier: Apache-2.0 */
/* status.h - the agent's status socket: HTTP/1.1 with JSON bodies over a unix
 * socket (mode 0600), so `curl --unix-socket /run/sluice/agent.sock
 * http://x/status` and sluicectl both work.
 *
 * status.c knows HTTP, not the agent: main.c registers one handler per path;
 * a handler returns a new JSON value (jansson) for the body, or NULL for 500.
 */
#ifndef SL_STATUS_H
#define SL_STATUS_H

#include <jansson.h>
#include <stdint.h>

#define SL_STATUS_SOCK "/run/sluice/agent.sock"

struct loop;
struct status;

/* query: the part after '?' (NULL if none). *code may be set (default 200). */
typedef json_t *(*status_handler)(void *arg, const char *query, int *code);

/* A text body (malloc'ed; *len bytes), e.g. Prometheus metrics. */
typedef char *(*status_text_handler)(void *arg, const char *query, int *code, size_t *len);

/* Listen on path (its directory is created, a stale socket replaced). */
int status_new(struct status **out, struct loop *l, const char *path);
/* Listen on a TCP address instead (the metrics port, 127.0.0.1:15020). */
int status_new_tcp(struct status **out, struct loop *l, const char *ip, uint16_t port);
/* Register a GET handler for an exact path such as "/services". */
int status_route(struct status *s, const char *path, status_handler fn, void *arg);
int status_route_text(struct status *s, const char *path, status_text_handler fn,
		      const char *content_type, void *arg);
/* Stop accepting; the socket stays (a successor agent accepts on it now). */
void status_stop_accepting(struct status *s);
void status_free(struct status *s);			/* NULL-safe; unlinks the socket */

#endif
