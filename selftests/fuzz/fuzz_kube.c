// SPDX-License-Identifier: Apache-2.0
/* fuzz_kube.c - libFuzzer target: kube.c's kubeconfig parser, and a watch
 * response as the agent reads it (http_parser, chunked transfer coding, one
 * JSON event per line via kube_lines_feed).
 *
 * The first byte picks the parser. Beyond "no crash": a kubeconfig is either
 * accepted with an https:// server or rejected with at least one problem and
 * nothing left set; a response cut into two pieces anywhere gives the same
 * events as in one piece.
 *
 * fuzz-srcs: user/kube.c user/config.c user/model.c user/lib/diag.c user/lib/log.c user/lib/loop.c
 * fuzz-libs: -lyaml -ljansson -lhttp_parser -lssl -lcrypto -lpthread
 */
#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kube.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct watch_run {
	struct kube_lines lines;
	unsigned long events, bad;
	unsigned long hash;		/* of the event types and object sizes, in order */
};

static int on_event(void *arg, const char *type, json_t *obj)
{
	struct watch_run *r = arg;

	if (!type) {
		r->bad++;
		return 0;
	}
	r->events++;
	r->hash = r->hash * 31 + strlen(type) * 7 + json_object_size(obj);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct watch_run *r = p->data;

	return kube_lines_feed(&r->lines, at, len, on_event, r) ? 1 : 0;
}

static void run_watch(const char *buf, size_t len, size_t cut, struct watch_run *r)
{
	http_parser_settings s = { .on_body = on_body };
	http_parser p;

	memset(r, 0, sizeof(*r));
	http_parser_init(&p, HTTP_RESPONSE);
	p.data = r;
	if (http_parser_execute(&p, &s, buf, cut) == cut && HTTP_PARSER_ERRNO(&p) == HPE_OK)
		http_parser_execute(&p, &s, buf + cut, len - cut);
	kube_lines_clear(&r->lines);
}

static void fuzz_kubeconfig(const char *buf, size_t len)
{
	struct kube_cfg c;
	struct diags errs = { 0 };
	int err = kube_cfg_parse(&c, "fuzz", buf, len, NULL, &errs);

	if (!err && (!c.server || strncmp(c.server, "https://", 8)))
		abort();
	if (err && (!errs.n || c.server || c.token || c.ca_pem || c.cert_pem || c.key_pem))
		abort();
	kube_cfg_clear(&c);
	diags_clear(&errs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct watch_run whole, parts;
	const char *buf = (const char *)data + 1;
	size_t len;

	log_set_level(LOG_ERR);
	if (size < 2)
		return 0;
	len = size - 1;
	if (data[0] & 1) {
		fuzz_kubeconfig(buf, len);
		return 0;
	}
	run_watch(buf, len, len, &whole);
	run_watch(buf, len, (size_t)data[0] * len / 256, &parts);
	/* the same bytes in two pieces: the same events (a parse that stopped
	 * early on an error may stop at a different event, so only then compare) */
	if (whole.events == parts.events && whole.hash != parts.hash)
		abort();
	return 0;
}
