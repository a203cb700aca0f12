// SPDX-License-Identifier: Apache-2.0
/* fuzz_config.c - libFuzzer target: config_decode_buf() on arbitrary bytes.
 *
 * Odd-sized inputs are named *.json (the reader's JSON fix-ups always on),
 * even-sized ones *.yaml (JSON only when the input starts like it). Every
 * decoded string and array is read back, so ASan sees any dangling pointer
 * or short allocation, and every problem is formatted.
 *
 * fuzz-srcs: user/config.c user/model.c user/lib/diag.c user/lib/log.c user/lib/loop.c
 * fuzz-libs: -lyaml -lpthread
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t touch(const char *s)
{
	return s ? strlen(s) : 0;
}

static size_t touch_labels(const struct sl_labels *l)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n; i++)
		n += touch(l->v[i].key) + touch(l->v[i].value);
	return n;
}

static size_t touch_all(const struct sl_resources *r)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n_namespaces; i++)
		n += touch(r->namespaces[i].name) + touch_labels(&r->namespaces[i].labels) +
		     touch(r->namespaces[i].src.file);
	for (size_t i = 0; i < r->n_pods; i++) {
		const struct sl_pod *p = &r->pods[i];

		n += touch(p->ns) + touch(p->name) + touch(p->node) + touch(p->service_account) +
		     touch_labels(&p->labels) + p->n_ips + p->ips[0].family;
		for (size_t j = 0; j < p->n_ports; j++)
			n += touch(p->ports[j].name) + p->ports[j].port;
	}
	for (size_t i = 0; i < r->n_services; i++) {
		const struct sl_service *s = &r->services[i];

		n += touch(s->ns) + touch(s->name) + touch_labels(&s->selector) + s->n_cluster_ips;
		for (size_t j = 0; j < s->n_ports; j++)
			n += touch(s->ports[j].name) + touch(s->ports[j].target_port_name) +
			     touch(s->ports[j].app_protocol) + s->ports[j].port;
	}
	for (size_t i = 0; i < r->n_slices; i++) {
		const struct sl_endpoint_slice *es = &r->slices[i];

		n += touch(es->ns) + touch(es->name) + touch(es->service);
		for (size_t j = 0; j < es->n_ports; j++)
			n += touch(es->ports[j].name) + es->ports[j].port;
		for (size_t j = 0; j < es->n_endpoints; j++) {
			const struct sl_endpoint *ep = &es->endpoints[j];

			n += touch(ep->node) + touch(ep->pod);
			for (size_t k = 0; k < ep->n_addrs; k++)
				n += ep->addrs[k].family;
		}
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_resources *res = config_resources_new();
	struct diags errs = { 0 };
	char line[2048];
	int ret;

	if (!res)
		return 0;
	ret = config_decode_buf(res, size & 1 ? "fuzz.json" : "fuzz.yaml", (const char *)data, size,
				&errs);
	if (ret == 0 && errs.n)
		__builtin_trap();	/* success with problems: a lie */
	if (ret && !errs.n)
		__builtin_trap();	/* failure without a reason */
	for (size_t i = 0; i < errs.n; i++)
		diag_str(&errs.v[i], line, sizeof(line));
	if (touch_all(res) == (size_t)-1)
		__builtin_trap();
	diags_clear(&errs);
	resources_free(res);
	return 0;
}
