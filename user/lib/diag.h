/* SPDX-License-Identifier: Apache-2.0 */
/* diag.h - a list of "file:line: reason" problems found in configuration. */
#ifndef SL_DIAG_H
#define SL_DIAG_H

#include <stddef.h>

struct diag {
	char *file;			/* NULL when not tied to a file */
	int line;			/* 0 when unknown */
	char *msg;
};

struct diags {
	struct diag *v;
	size_t n, cap;
};

/* Append one problem; formatting failures are dropped (out of memory). */
void diags_add(struct diags *d, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* "file:line: msg" (or "file: msg", or "msg") into buf; returns buf. */
const char *diag_str(const struct diag *g, char *buf, size_t len);
void diags_clear(struct diags *d);		/* frees entries, keeps d usable */
void diags_move(struct diags *to, struct diags *from);	/* appends, empties from */

#endif
