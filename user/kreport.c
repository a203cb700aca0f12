// SPDX-License-Identifier: Apache-2.0
/* kreport.c - node reports and their merge into Gateway status; see kreport.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kreport.h"
#include "log.h"

#define KREPORT_MSG_NODES	4	/* nodes named in a message; the rest counted */
#define KREPORT_MSG_MAX		1024	/* a condition message may hold 32768 */

static bool alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

void kreport_lease_name(const char *node, char out[KREPORT_NAME_MAX])
{
	const size_t pre = sizeof(KREPORT_PREFIX) - 1, room = KREPORT_NAME_MAX - 1 - pre;
	size_t n = strlen(node), keep = n, i;
	uint32_t h = 2166136261u;	/* FNV-1a of the whole name: cut names stay apart */
	char *p = out + pre;

	memcpy(out, KREPORT_PREFIX, pre);
	for (i = 0; i < n; i++)
		h = (h ^ (unsigned char)node[i]) * 16777619u;
	if (n > room)
		keep = room - 9;	/* "-" and 8 hex digits */
	for (i = 0; i < keep; i++) {
		char c = node[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		p[i] = alnum(c) || c == '.' ? c : '-';
	}
	p[keep] = '\0';
	/* a DNS-1123 subdomain: a dot only between two alphanumerics */
	for (i = 0; i < keep; i++)
		if (p[i] == '.' && (!i || !alnum(p[i - 1]) || !alnum(p[i + 1])))
			p[i] = '-';
	while (keep && !alnum(p[keep - 1]))
		p[--keep] = '\0';
	if (n > room)
		snprintf(p + keep, KREPORT_NAME_MAX - pre - keep, "-%08x", h);
	else if (!keep)
		snprintf(p, KREPORT_NAME_MAX - pre, "%08x", h);
}

int kreport_parse(const char *text, json_t **out, char *err, size_t errlen)
{
	json_t *o, *gw, *l, *v;
	const char *gk, *lk;
	json_error_t je;
	size_t len = text ? strnlen(text, KREPORT_TEXT_MAX + 1) : 0;

	*out = NULL;
	if (!text) {
		snprintf(err, errlen, "no %s annotation", KREPORT_ANNOTATION);
		return -EINVAL;
	}
	if (len > KREPORT_TEXT_MAX) {
		snprintf(err, errlen, "%s: longer than %d bytes", KREPORT_ANNOTATION, KREPORT_TEXT_MAX);
		return -EINVAL;
	}
	o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		snprintf(err, errlen, "%s: not JSON: %.100s (offset %d)", KREPORT_ANNOTATION, je.text, je.position);
		return -EINVAL;
	}
	if (!json_is_object(o)) {
		snprintf(err, errlen, "%s: not a JSON object", KREPORT_ANNOTATION);
		goto bad;
	}
	json_object_foreach(o, gk, gw) {
		if (!json_is_object(gw) || !strchr(gk, '/')) {
			snprintf(err, errlen, "%s: \"%.100s\": not a Gateway (\"ns/name\") and an object",
				 KREPORT_ANNOTATION, gk);
			goto bad;
		}
		json_object_foreach(gw, lk, l) {
			v = json_object_get(l, "message");
			if (!json_is_object(l) || !json_is_string(json_object_get(l, "reason")) ||
			    (v && !json_is_string(v))) {
				snprintf(err, errlen, "%s: %.100s listener \"%.60s\": expected {\"reason\": string, "
					 "\"message\": string}", KREPORT_ANNOTATION, gk, lk);
				goto bad;
			}
		}
	}
	*out = o;
	return 0;
bad:
	json_decref(o);
	return -EINVAL;
}

/* ---- the reports the holder keeps ---- */

static void report_free(struct kreport *p)
{
	free(p->text);
	json_decref(p->listeners);
}

static struct kreport *report_find(struct kreports *r, const char *lease)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->v[i].lease, lease))
			return &r->v[i];
	return NULL;
}

static struct kreport *report_add(struct kreports *r, const char *lease)
{
	struct kreport *v = realloc(r->v, (r->n + 1) * sizeof(*v));

	if (!v)
		return NULL;
	r->v = v;
	v = &r->v[r->n++];
	memset(v, 0, sizeof(*v));
	snprintf(v->lease, sizeof(v->lease), "%s", lease);
	return v;
}

static void report_drop(struct kreports *r, size_t i)
{
	report_free(&r->v[i]);
	memmove(&r->v[i], &r->v[i + 1], (r->n - i - 1) * sizeof(r->v[0]));
	r->n--;
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* The text is parsed when it changes, so a bad one is counted once. */
static void report_text(struct kreports *r, struct kreport *p, const char *text)
{
	char err[160];

	if (p->text && text && !strcmp(p->text, text))
		return;
	if (!p->text && !text && p->seen_ms)
		return;
	free(p->text);
	p->text = text ? strdup(text) : NULL;
	json_decref(p->listeners);
	p->listeners = NULL;
	if (kreport_parse(text, &p->listeners, err, sizeof(err))) {
		r->n_bad++;
		snprintf(r->last_error, sizeof(r->last_error), "report %.120s: %s", p->lease, err);
		pr_warn("kstatus: node %s", r->last_error);
	}
}

void kreports_observe(struct kreports *r, json_t *list, const char *self_lease, uint64_t now_ms,
		      unsigned int default_s)
{
	json_t *items = json_object_get(list, "items"), *it;
	bool *listed = calloc(r->n + json_array_size(items) + 1, sizeof(*listed));
	size_t i;

	if (!listed)
		return;
	json_array_foreach(items, i, it) {
		json_t *md = json_object_get(it, "metadata"), *spec = json_object_get(it, "spec");
		json_t *ann = json_object_get(md, "annotations");
		const char *name = jstr(md, "name"), *holder = jstr(spec, "holderIdentity");
		const char *renew = jstr(spec, "renewTime"), *node = jstr(ann, KREPORT_NODE_ANNOTATION);
		json_int_t dur = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
		struct kreport *p;
		char seen[sizeof(p->seen)];

		if (!name || (self_lease && !strcmp(name, self_lease)))
			continue;	/* our own is current without it */
		p = report_find(r, name);
		if (!p && !(p = report_add(r, name)))
			continue;
		listed[p - r->v] = true;
		snprintf(seen, sizeof(seen), "%s|%s", holder ? holder : "", renew ? renew : "");
		report_text(r, p, jstr(ann, KREPORT_ANNOTATION));
		if (strcmp(seen, p->seen) || !p->seen_ms) {
			memcpy(p->seen, seen, sizeof(seen));
			p->seen_ms = now_ms;
			p->deleting = false;	/* renewed: alive after all */
		}
		snprintf(p->node, sizeof(p->node), "%s", node ? node : holder ? holder : name);
		snprintf(p->rv, sizeof(p->rv), "%s", jstr(md, "resourceVersion") ? jstr(md, "resourceVersion") : "");
		p->duration_s = dur > 0 && dur < 86400 ? (unsigned int)dur : default_s;
	}
	for (i = r->n; i-- > 0;)
		if (!listed[i] && !r->v[i].self)
			report_drop(r, i);	/* deleted */
	free(listed);
}

void kreports_set_self(struct kreports *r, const char *lease, const char *node, json_t *listeners)
{
	struct kreport *p = report_find(r, lease);

	if (!p && !(p = report_add(r, lease)))
		return;
	p->self = true;
	snprintf(p->node, sizeof(p->node), "%s", node);
	json_decref(p->listeners);
	p->listeners = listeners ? json_deep_copy(listeners) : json_object();
}

bool kreports_live(const struct kreports *r, size_t i, uint64_t now_ms)
{
	const struct kreport *p = &r->v[i];

	return p->self || now_ms - p->seen_ms < (uint64_t)p->duration_s * 1000;
}

bool kreports_gc_due(const struct kreports *r, size_t i, uint64_t now_ms)
{
	const struct kreport *p = &r->v[i];

	/* no resourceVersion, no precondition: never delete blind */
	return !p->self && !p->deleting && p->seen_ms && p->rv[0] &&
	       now_ms - p->seen_ms >= (uint64_t)p->duration_s * 1000 * KREPORT_GC_DURATIONS;
}

bool kreports_changed(struct kreports *r, uint64_t now_ms)
{
	json_t *d = json_object();
	bool changed;

	for (size_t i = 0; d && i < r->n; i++)
		if (r->v[i].listeners && kreports_live(r, i, now_ms))
			json_object_set(d, r->v[i].lease, r->v[i].listeners);
	changed = !json_equal(d, r->digest) || !r->digest != !d;
	json_decref(r->digest);
	r->digest = d;
	return changed;
}

void kreports_clear(struct kreports *r)
{
	for (size_t i = 0; i < r->n; i++)
		report_free(&r->v[i]);
	free(r->v);
	json_decref(r->digest);
	memset(r, 0, sizeof(*r));
}

/* ---- the merge ---- */

static json_t *cond_of(json_t *conds, const char *type)
{
	json_t *c;
	size_t i;

	json_array_foreach(conds, i, c)
		if (!strcmp(jstr(c, "type") ? jstr(c, "type") : "", type))
			return c;
	return NULL;
}

static bool cond_true(json_t *conds, const char *type)
{
	const char *st = jstr(cond_of(conds, type), "status");

	return st && !strcmp(st, "True");
}

static void cond_set(json_t *conds, const char *type, bool status, const char *reason, const char *msg)
{
	json_t *c = cond_of(conds, type);

	if (!c) {
		c = json_object();
		json_object_set_new(c, "type", json_string(type));
		json_array_append_new(conds, c);
	}
	json_object_set_new(c, "status", json_string(status ? "True" : "False"));
	json_object_set_new(c, "reason", json_string(reason));
	json_object_set_new(c, "message", json_string(msg));
}

/* What the live nodes say of one listener: how many fail, and a message
 * naming them. */
struct lfail {
	size_t live, failing;
	bool port, cert;
	char msg[KREPORT_MSG_MAX];
};

static void listener_failures(const struct kreports *r, const char *gw_key, const char *name, uint64_t now_ms,
			      struct lfail *f)
{
	char nodes[KREPORT_MSG_MAX] = "";
	size_t len = 0, named = 0;
	bool all_ports = true;

	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < r->n; i++) {
		const struct kreport *p = &r->v[i];
		json_t *l;
		const char *reason, *msg;

		if (!p->listeners || !kreports_live(r, i, now_ms))
			continue;
		f->live++;
		l = json_object_get(json_object_get(p->listeners, gw_key), name);
		if (!l)
			continue;
		f->failing++;
		reason = jstr(l, "reason") ? jstr(l, "reason") : "";
		msg = jstr(l, "message") ? jstr(l, "message") : reason;
		if (!strcmp(reason, "PortUnavailable")) {
			f->port = true;
		} else {
			all_ports = false;
			if (!strcmp(reason, "InvalidCertificateRef"))
				f->cert = true;
		}
		if (named++ < KREPORT_MSG_NODES && len < sizeof(nodes)) {
			int n = snprintf(nodes + len, sizeof(nodes) - len, "%s%.60s (%.200s)", len ? ", " : "",
					 p->node, msg);

			len += n > 0 ? (size_t)n : 0;
		}
	}
	if (!f->failing)
		return;
	if (named > KREPORT_MSG_NODES && len < sizeof(nodes))
		snprintf(nodes + len, sizeof(nodes) - len, " and %zu more", named - KREPORT_MSG_NODES);
	snprintf(f->msg, sizeof(f->msg), "not %s on %s; %s on %zu of %zu nodes", all_ports ? "listening" : "serving",
		 nodes, all_ports ? "listening" : "serving", f->live - f->failing, f->live);
}

json_t *kreports_merge(json_t *intent, const char *gw_key, const struct kreports *r, uint64_t now_ms)
{
	json_t *out = json_deep_copy(intent), *ls = json_object_get(out, "listeners");
	json_t *gconds = json_object_get(out, "conditions"), *l, *acc;
	size_t i, valid = 0, affected = 0, served_somewhere = 0, programmed = 0;
	char first[KREPORT_MSG_MAX + 80] = "";

	if (!out)
		return NULL;
	json_array_foreach(ls, i, l) {
		json_t *c = json_object_get(l, "conditions");
		const char *name = jstr(l, "name") ? jstr(l, "name") : "";
		struct lfail f;

		if (cond_true(c, "Programmed")) {
			programmed++;
			listener_failures(r, gw_key, name, now_ms, &f);
			if (f.failing) {
				/* the plan serves it: only the nodes can say it does not */
				affected++;
				if (!first[0])
					snprintf(first, sizeof(first), "%s: %s", name, f.msg);
				if (f.failing == f.live) {
					if (f.port)
						cond_set(c, "Accepted", false, "PortUnavailable", f.msg);
					if (f.cert)
						cond_set(c, "ResolvedRefs", false, "InvalidCertificateRef", f.msg);
				} else {
					served_somewhere++;
				}
				cond_set(c, "Programmed", false, "Invalid", f.msg);
			} else {
				served_somewhere++;
			}
		}
		if (cond_true(c, "Accepted") && !cond_true(c, "Conflicted"))
			valid++;
	}
	if (!affected)
		return out;
	acc = cond_of(gconds, "Accepted");
	if (acc) {
		const char *m = jstr(acc, "message");

		json_object_set_new(acc, "status", json_string(valid ? "True" : "False"));
		json_object_set_new(acc, "reason", json_string("ListenersNotValid"));
		if (!m || !m[0]) {
			char msg[sizeof(first) + 80];

			snprintf(msg, sizeof(msg), "%zu of %zu listeners not programmed on every node; %s", affected,
				 json_array_size(ls), first);
			json_object_set_new(acc, "message", json_string(msg));
		}
	}
	if (programmed && !served_somewhere)
		cond_set(gconds, "Programmed", false, "Invalid", first);
	return out;
}

json_t *kreports_json(const struct kreports *r, uint64_t now_ms)
{
	json_t *stale = json_array(), *failing = json_object();
	size_t live = 0;

	for (size_t i = 0; i < r->n; i++) {
		const struct kreport *p = &r->v[i];

		if (!kreports_live(r, i, now_ms)) {
			json_array_append_new(stale, json_string(p->node));
			continue;
		}
		live++;
		if (json_object_size(p->listeners))
			json_object_set(failing, p->node, p->listeners);
	}
	return json_pack("{s:I, s:I, s:o, s:o, s:I, s:s?}", "seen", (json_int_t)r->n, "live", (json_int_t)live,
			 "stale", stale, "failing", failing, "bad", (json_int_t)r->n_bad, "last_error",
			 r->last_error[0] ? r->last_error : NULL);
}
