// SPDX-License-Identifier: Apache-2.0
/* diag.c - see diag.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"

void diags_add(struct diags *d, const char *file, int line, const char *fmt, ...)
{
	struct diag g = { .line = line };
	va_list ap;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct diag *v = realloc(d->v, cap * sizeof(*v));

		if (!v)
			return;
		d->v = v;
		d->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&g.msg, fmt, ap) == -1)
		g.msg = NULL;
	va_end(ap);
	if (!g.msg)
		return;
	g.file = file ? strdup(file) : NULL;
	d->v[d->n++] = g;
}

const char *diag_str(const struct diag *g, char *buf, size_t len)
{
	if (g->file && g->line > 0)
		snprintf(buf, len, "%s:%d: %s", g->file, g->line, g->msg);
	else if (g->file)
		snprintf(buf, len, "%s: %s", g->file, g->msg);
	else
		snprintf(buf, len, "%s", g->msg);
	return buf;
}

void diags_clear(struct diags *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].msg);
	}
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

void diags_move(struct diags *to, struct diags *from)
{
	for (size_t i = 0; i < from->n; i++) {
		if (to->n == to->cap) {
			size_t cap = to->cap ? to->cap * 2 : 8;
			struct diag *v = realloc(to->v, cap * sizeof(*v));

			if (!v)
				break;
			to->v = v;
			to->cap = cap;
		}
		to->v[to->n++] = from->v[i];
		from->v[i].file = from->v[i].msg = NULL;
	}
	diags_clear(from);
}
