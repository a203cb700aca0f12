// SPDX-License-Identifier: Apache-2.0
#include <string.h>

#include "kcond.h"

json_t *kcond_of(json_t *conds, const char *type)
{
	size_t i;
	json_t *c;

	json_array_foreach(conds, i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));

		if (t && !strcmp(t, type))
			return c;
	}
	return NULL;
}
