// SPDX-License-Identifier: Apache-2.0
/* fuzz_node_report.c - libFuzzer target: kreport.c, a node report as the
 * status writer reads it from another node's Lease (the sluice.io/listeners
 * annotation, any bytes) and merges it into a Gateway's conditions; and the
 * report Lease's name made from a node name.
 *
 * Beyond "no crash": a report that parses is an object; one that does not is
 * counted once and leaves the merge the plan's; the merge keeps every
 * listener, and a listener it changes is not Programmed; a Lease name is a
 * DNS-1123 subdomain of at most 253 characters.
 *
 * fuzz-srcs: user/kreport.c user/lib/log.c
 * fuzz-libs: -ljansson
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kreport.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char intent_json[] =
	"{\"conditions\": [{\"type\": \"Accepted\", \"status\": \"True\", \"reason\": \"Accepted\", \"message\": \"\"},"
	" {\"type\": \"Programmed\", \"status\": \"True\", \"reason\": \"Programmed\", \"message\": \"\"}],"
	" \"listeners\": [{\"name\": \"web\", \"conditions\": ["
	"  {\"type\": \"Accepted\", \"status\": \"True\", \"reason\": \"Accepted\", \"message\": \"\"},"
	"  {\"type\": \"ResolvedRefs\", \"status\": \"True\", \"reason\": \"ResolvedRefs\", \"message\": \"\"},"
	"  {\"type\": \"Conflicted\", \"status\": \"False\", \"reason\": \"NoConflicts\", \"message\": \"\"},"
	"  {\"type\": \"Programmed\", \"status\": \"True\", \"reason\": \"Programmed\", \"message\": \"\"}]},"
	" {\"name\": \"\", \"conditions\": []}], \"addresses\": null}";

static bool dns_subdomain(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool an = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!an && c != '-' && c != '.')
			return false;
		if ((!i || i == n - 1) && !an)
			return false;
		if (c == '.' && (s[i - 1] == '.' || s[i - 1] == '-' || s[i + 1] == '-' || s[i + 1] == '.'))
			return false;
	}
	return true;
}

static void fuzz_merge(const char *text)
{
	static json_t *intent;
	struct kreports r = { 0 };
	json_t *list, *got, *parsed = NULL, *l, *want;
	char err[200];
	size_t i;
	int perr = kreport_parse(text, &parsed, err, sizeof(err));

	if (!intent && !(intent = json_loads(intent_json, 0, NULL)))
		abort();
	if (!perr && !json_is_object(parsed))
		abort();
	if (perr && (parsed || !err[0]))
		abort();
	json_decref(parsed);
	list = json_pack("{s:[{s:{s:s, s:{s:s, s:s}}, s:{s:s, s:s, s:i}}]}", "items", "metadata", "name",
			 "sluice-node-b", "annotations", KREPORT_ANNOTATION, text, KREPORT_NODE_ANNOTATION, "b",
			 "spec", "holderIdentity", "b", "renewTime", "t", "leaseDurationSeconds", 3);
	if (!list)
		return;	/* not UTF-8: the API server would not have it either */
	kreports_set_self(&r, "sluice-node-a", "a", NULL);
	kreports_observe(&r, list, "sluice-node-a", 1000, 15);
	kreports_observe(&r, list, "sluice-node-a", 2000, 15);	/* the same text again */
	if (r.n_bad != (perr ? 1u : 0u))
		abort();
	got = kreports_merge(intent, "infra/gw", &r, 2500);
	if (!got || json_array_size(json_object_get(got, "listeners")) != 2)
		abort();
	want = json_object_get(intent, "listeners");
	json_array_foreach(json_object_get(got, "listeners"), i, l)
		if (!json_equal(l, json_array_get(want, i))) {
			json_t *c;
			size_t j;
			bool prog = false;

			json_array_foreach(json_object_get(l, "conditions"), j, c)
				if (!strcmp(json_string_value(json_object_get(c, "type")), "Programmed"))
					prog = !strcmp(json_string_value(json_object_get(c, "status")), "True");
			if (prog || perr)
				abort();
		}
	json_decref(got);
	/* stale by now: the plan's */
	got = kreports_merge(intent, "infra/gw", &r, 1000 + 3000);
	if (!json_equal(got, intent))
		abort();
	json_decref(got);
	json_decref(list);
	kreports_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), name[KREPORT_NAME_MAX];

	log_set_level(LOG_ERR);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';	/* an annotation is a string: no NUL inside */
	fuzz_merge(text);
	kreport_lease_name(text, name);
	if (!dns_subdomain(name))
		abort();
	free(text);
	return 0;
}
