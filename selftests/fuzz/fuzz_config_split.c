// SPDX-License-Identifier: Apache-2.0
/* fuzz_config_split.c - libFuzzer target, differential: a file loaded by
 * config_load_dir() must decode exactly as config_decode_buf() decodes the
 * same bytes in one parse: the same problems (file, line, text) and the same
 * objects.
 *
 * config.c is built here with 64-byte pieces, so almost every input is cut
 * (at "---" lines, or between a List's items), parsed by several threads,
 * merged, and parsed again whole when a cut turns out wrong: the paths that
 * fuzz_config does not reach, checked against the one that it does.
 *
 * fuzz-srcs: user/config.c user/model.c user/lib/diag.c user/lib/log.c user/lib/loop.c
 * fuzz-cflags: -DCFG_SPLIT_BYTES=64
 * fuzz-libs: -lyaml -lpthread
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t mix(size_t h, const char *s)
{
	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return h * 31 + 7;
}

/* Everything decoded, in order, as one number. */
static size_t digest(const struct sl_resources *r)
{
	size_t h = r->n_ignored;

	for (size_t i = 0; i < r->n_namespaces; i++)
		h = mix(h, r->namespaces[i].name) + (size_t)r->namespaces[i].src.line;
	for (size_t i = 0; i < r->n_pods; i++) {
		const struct sl_pod *p = &r->pods[i];

		h = mix(mix(mix(h, p->ns), p->name), p->node) + (size_t)p->src.line + p->n_ips +
		    p->n_ports + p->ready * 2u + p->terminating * 4u;
	}
	for (size_t i = 0; i < r->n_services; i++) {
		const struct sl_service *s = &r->services[i];

		h = mix(mix(h, s->ns), s->name) + (size_t)s->src.line + s->n_cluster_ips + s->headless;
		for (size_t j = 0; j < s->n_ports; j++)
			h = mix(mix(h, s->ports[j].name), s->ports[j].target_port_name) + s->ports[j].port;
	}
	for (size_t i = 0; i < r->n_slices; i++) {
		const struct sl_endpoint_slice *es = &r->slices[i];

		h = mix(mix(h, es->name), es->service) + (size_t)es->src.line + es->n_endpoints;
		for (size_t j = 0; j < es->n_endpoints; j++)
			h = mix(h, es->endpoints[j].pod) + es->endpoints[j].n_addrs;
	}
	return h;
}

static char dir[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *name = size & 1 ? "in.json" : "in.yaml";
	struct sl_resources *whole = config_resources_new(), *cut = NULL;
	struct diags e1 = { 0 }, e2 = { 0 };
	char path[128];
	int r1, r2;
	FILE *f;

	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz-config-split.XXXXXX");
		if (!mkdtemp(dir))
			abort();
		log_set_level(LOG_ERR);		/* no "ignoring N objects" per run */
	}
	if (!whole)
		return 0;
	snprintf(path, sizeof(path), "%s/%s", dir, size & 1 ? "in.yaml" : "in.json");
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f || fwrite(data, 1, size, f) != size || fclose(f))
		abort();
	r1 = config_load_dir(dir, &cut, &e1);
	r2 = config_decode_buf(whole, name, (const char *)data, size, &e2);
	/* Past 1000 problems each piece of a cut file counts its own: compare
	 * the ones shown. */
	if (r1 != r2 || (e1.n != e2.n && (e1.n < 1000 || e2.n < 1000)))
		__builtin_trap();
	for (size_t i = 0; i < e1.n && i < e2.n && i < 1000; i++)
		if (e1.v[i].line != e2.v[i].line || strcmp(e1.v[i].msg, e2.v[i].msg) ||
		    (!e1.v[i].file) != (!e2.v[i].file))
			__builtin_trap();
	if (!r1 && (!cut || digest(cut) != digest(whole)))
		__builtin_trap();
	diags_clear(&e1);
	diags_clear(&e2);
	resources_free(cut);
	resources_free(whole);
	return 0;
}
