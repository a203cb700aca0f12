// SPDX-License-Identifier: Apache-2.0
/* config.c - see config.h.
 *
 * Pipeline, per "unit" (a file, or a piece of a big multi-document file):
 *
 *   bytes --reader (JSON fix-ups)--> libyaml events --builder--> node tree of ONE
 *   object (tmp arena, with line numbers) --decode_*--> struct sl_resources
 *
 * Only one object's tree exists at a time: a document is one object, and a
 * List's items are built and decoded one by one (the List itself is never
 * materialised), after which the tmp arena is released back to a mark. What is
 * kept (names, labels, arrays) is copied into a per-thread store (arena plus
 * string interning) that the resulting set owns through ->priv.
 *
 * Big files are cut into pieces (at "---" lines, or between the items of a
 * List, YAML or pretty-printed JSON) and units are parsed by up to
 * CFG_MAX_THREADS threads; results are merged in file order. A cut file with
 * any syntax problem, or whose List cut the scan may have got wrong, is parsed
 * again whole, so config_load_dir() reports exactly what config_decode_buf()
 * of each file would (fuzz_config_split checks this).
 *
 * Everything here is hostile input (it is fuzzed): depth, sizes, alias
 * expansion, anchors and problem counts are bounded. Whatever drops content
 * reports a problem, so a set is never silently short of an object.
 *
 * Ownership: in a set made here, strings are shared (interned) and live in
 * the stores with the nested arrays; only resources_free() releases them. The
 * top-level arrays (services, pods...) are plain malloc. A set built by hand
 * (priv NULL) owns each string and array by malloc, which resources_free()
 * then frees one by one.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "log.h"
#include "loop.h"

#define CFG_MAX_FILE		(256u << 20)	/* bytes in one file */
#define CFG_MAX_DEPTH		64		/* nesting in one document */
#define CFG_MAX_OBJ_BYTES	(16u << 20)	/* tree of one object (k8s objects are < 1.5 MB) */
#define CFG_MAX_OBJ_NODES	(1u << 20)	/* nodes of one object, aliases expanded */
#define CFG_MAX_ANCHORS		1024		/* anchors in one document */
#define CFG_MAX_PROBLEMS	1000		/* reported per load (all are counted) */
#define CFG_MAX_DIR_DEPTH	16		/* subdirectory nesting (symlink loops) */
#ifndef CFG_MAX_THREADS
#define CFG_MAX_THREADS		4		/* parsing threads (tests may set 1) */
#endif
#ifndef CFG_SPLIT_BYTES
#define CFG_SPLIT_BYTES		(4u << 20)	/* big files are parsed in pieces this big */
#endif
#define CFG_TMP_CHUNK		(64u << 10)
#define CFG_STORE_CHUNK		(256u << 10)
#define CFG_READ_BUF		(64u << 10)
#define CFG_MAX_ADDRS		100		/* addresses of one endpoint (as Kubernetes) */

/* ---- arenas ------------------------------------------------------------- */

struct chunk {
	struct chunk *prev;
	size_t size, used;
	_Alignas(16) unsigned char data[];
};

/* Bump allocator. The tmp arena is released back to marks (one object at a
 * time); the store arena only grows, so it may tuck big blocks behind the
 * current chunk instead of abandoning the chunk's free tail. */
struct arena {
	struct chunk *cur;
	struct chunk *spare;		/* one released chunk, kept for the next object */
	size_t chunk_size;
	size_t bytes;			/* handed out since the last full release */
	bool no_marks;
};

struct arena_mark {
	struct chunk *chunk;
	size_t used, bytes;
};

/* len bytes aligned to align (a power of two, at most 16); NULL when out of memory. */
static void *arena_alloc_aligned(struct arena *a, size_t len, size_t align)
{
	struct chunk *c = a->cur;
	size_t at;

	if (len > SIZE_MAX / 2)
		return NULL;
	if (c) {
		at = (c->used + align - 1) & ~(align - 1);
		if (at <= c->size && c->size - at >= len) {
			a->bytes += at - c->used + len;
			c->used = at + len;
			return c->data + at;
		}
	}
	if (a->no_marks && c && len > a->chunk_size / 4) {
		c = malloc(sizeof(*c) + len);
		if (!c)
			return NULL;
		c->size = c->used = len;
		c->prev = a->cur->prev;
		a->cur->prev = c;
		a->bytes += len;
		return c->data;
	}
	if (a->spare && a->spare->size >= len) {
		c = a->spare;
		a->spare = NULL;
	} else {
		size_t sz = len > a->chunk_size ? len : a->chunk_size;

		c = malloc(sizeof(*c) + sz);
		if (!c)
			return NULL;
		c->size = sz;
	}
	c->used = len;
	c->prev = a->cur;
	a->cur = c;
	a->bytes += len;
	return c->data;
}

static void *arena_alloc(struct arena *a, size_t len)
{
	return arena_alloc_aligned(a, len, 8);
}

static struct arena_mark arena_mark(const struct arena *a)
{
	return (struct arena_mark){ a->cur, a->cur ? a->cur->used : 0, a->bytes };
}

static void arena_release(struct arena *a, struct arena_mark m)
{
	while (a->cur != m.chunk) {
		struct chunk *c = a->cur;

		a->cur = c->prev;
		if (!a->spare && c->size == a->chunk_size) {
			a->spare = c;
		} else {
			free(c);
		}
	}
	if (a->cur)
		a->cur->used = m.used;
	a->bytes = m.bytes;
}

static void arena_free(struct arena *a)
{
	arena_release(a, (struct arena_mark){ 0 });
	free(a->spare);
	a->spare = NULL;
}

/* ---- the store: what a set keeps ------------------------------------------ */

struct store {
	struct arena arena;
	char **tab;			/* interned strings, open addressing */
	size_t tab_cap, tab_n;
	struct store *next;
};

/* The top-level arrays of struct sl_resources (each X(v) has a count n_v):
 * whatever copies, merges or frees the sets walks this one list. */
#define RES_ARRAYS(X)									\
	X(namespaces) X(pods) X(services) X(slices) X(netpols) X(authzs) X(peerauthns)	\
	X(routes) X(gateways) X(gateway_classes) X(ref_grants) X(secrets)

/* Allocated lengths of those arrays, by the same names. */
struct caps {
#define CAPS_FIELD(v) size_t v;
	RES_ARRAYS(CAPS_FIELD)
#undef CAPS_FIELD
};

/* resources->priv */
struct cfg_set {
	struct store *stores;		/* one per thread that decoded into the set */
	struct caps caps;
};

static struct store *store_new(void)
{
	struct store *st = calloc(1, sizeof(*st));

	if (st) {
		st->arena.chunk_size = CFG_STORE_CHUNK;
		st->arena.no_marks = true;
	}
	return st;
}

static void store_free(struct store *st)
{
	while (st) {
		struct store *next = st->next;

		arena_free(&st->arena);
		free(st->tab);
		free(st);
		st = next;
	}
}

static uint32_t str_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static char *store_strndup(struct store *st, const char *s, size_t len)
{
	char *d = arena_alloc_aligned(&st->arena, len + 1, 1);

	if (d) {
		memcpy(d, s, len);
		d[len] = '\0';
	}
	return d;
}

static int store_grow_tab(struct store *st)
{
	size_t cap = st->tab_cap ? st->tab_cap * 2 : 1024;
	char **tab = calloc(cap, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < st->tab_cap; i++) {
		char *s = st->tab[i];
		size_t j;

		if (!s)
			continue;
		j = str_hash(s, strlen(s)) & (cap - 1);
		while (tab[j])
			j = (j + 1) & (cap - 1);
		tab[j] = s;
	}
	free(st->tab);
	st->tab = tab;
	st->tab_cap = cap;
	return 0;
}

/* One copy of each distinct string: namespaces, nodes, label keys and values
 * repeat across thousands of objects. Returns NULL when out of memory. */
static char *store_intern(struct store *st, const char *s, size_t len)
{
	size_t j;

	if ((st->tab_n + 1) * 2 > st->tab_cap && store_grow_tab(st))
		return NULL;
	j = str_hash(s, len) & (st->tab_cap - 1);
	for (; st->tab[j]; j = (j + 1) & (st->tab_cap - 1)) {
		const char *t = st->tab[j];

		if (!memcmp(t, s, len) && t[len] == '\0')
			return st->tab[j];
	}
	st->tab[j] = store_strndup(st, s, len);
	if (!st->tab[j])
		return NULL;
	st->tab_n++;
	return st->tab[j];
}

static void *store_zalloc(struct store *st, size_t n, size_t size)
{
	void *p;

	if (size && n > SIZE_MAX / size)
		return NULL;
	p = arena_alloc(&st->arena, n * size);
	if (p)
		memset(p, 0, n * size);
	return p;
}

/* ---- nodes --------------------------------------------------------------- */

enum node_type { NODE_SCALAR = 1, NODE_SEQ, NODE_MAP, NODE_SKIP };

#define NF_STRING	0x01		/* quoted, block or !!str: a string whatever it reads */
#define NF_NULL		0x02		/* plain ~, null or nothing */
#define NF_DONE		0x04		/* complete: aliases may refer to it */
#define NF_STREAMED	0x08		/* List items: decoded one by one, kids not kept */
#define NF_NUL		0x10		/* scalar holds a NUL byte */

struct node {
	union {
		char *s;		/* NODE_SCALAR, NUL-terminated */
		struct node **kids;	/* NODE_SEQ: items; NODE_MAP: key, value, key, ... */
	};
	uint32_t line;			/* 1-based, in the file */
	uint32_t n;			/* scalar: length; seq: items; map: pairs */
	uint32_t weight;		/* nodes in this subtree, aliases expanded */
	uint8_t type, flags;
};

static bool scalar_is(const struct node *n, const char *s, size_t len)
{
	return n && n->type == NODE_SCALAR && n->n == len && !memcmp(n->s, s, len);
}

#define SCALAR_IS(n, lit) scalar_is(n, lit, sizeof(lit) - 1)

/* Value of key in mapping m; NULL when m is not a mapping, or key is absent
 * or null (Kubernetes treats a null field as an absent one). */
static const struct node *map_get(const struct node *m, const char *key)
{
	size_t len = strlen(key);

	if (!m || m->type != NODE_MAP)
		return NULL;
	for (uint32_t i = 0; i < m->n; i++) {
		const struct node *k = m->kids[2 * i], *v = m->kids[2 * i + 1];

		if (scalar_is(k, key, len))
			return v->flags & NF_NULL ? NULL : v;
	}
	return NULL;
}

static bool node_null(const struct node *n)
{
	return !n || (n->flags & NF_NULL);
}

enum plain_kind { PK_STR, PK_NULL, PK_BOOL, PK_INT, PK_FLOAT };

static bool all_digits(const char *s, size_t len, const char *extra)
{
	if (!len)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((s[i] < '0' || s[i] > '9') && !(extra && s[i] && strchr(extra, s[i])))
			return false;
	return true;
}

static bool looks_float(const char *s, size_t len)
{
	static const char *const special[] = { ".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN" };
	size_t i = 0, digits = 0;

	if (len && (s[0] == '-' || s[0] == '+'))
		i++;
	for (size_t k = 0; k < sizeof(special) / sizeof(special[0]); k++)
		if (len - i == 4 && !memcmp(s + i, special[k], 4))
			return true;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		digits++;
	if (i < len && s[i] == '.')
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			digits++;
	if (!digits)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		if (i == len)
			return false;
		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			;
	}
	return i == len;
}

/* How Kubernetes' YAML reader (YAML 1.1 rules) would type a scalar. */
static enum plain_kind plain_kind(const struct node *n)
{
	static const char *const bools[] = { "true", "True", "TRUE", "false", "False", "FALSE",
					     "yes", "Yes", "YES", "no", "No", "NO",
					     "on", "On", "ON", "off", "Off", "OFF" };
	const char *s = n->s;
	size_t len = n->n;

	if (n->flags & NF_STRING)
		return PK_STR;
	if (n->flags & NF_NULL)
		return PK_NULL;
	if (len >= 2 && len <= 5 && strchr("tTfFyYnNoO", s[0]))
		for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++)
			if (!strcmp(s, bools[i]))
				return PK_BOOL;
	if (len && (s[0] == '-' || s[0] == '+')) {
		s++;
		len--;
	}
	if (all_digits(s, len, "_") && s[0] != '_')
		return PK_INT;
	if (len > 2 && s[0] == '0' && strchr("xXoObB", s[1]) && all_digits(s + 2, len - 2, "abcdefABCDEF_"))
		return PK_INT;
	if (looks_float(n->s, n->n))
		return PK_FLOAT;
	return PK_STR;
}

/* ---- units: what one parse works on and produces ---------------------------- */

/* Kinds we know: decoded, or accepted and ignored (decode NULL). */
struct dec;
typedef void (*decode_fn)(struct dec *d, const struct node *obj);

static void decode_namespace(struct dec *d, const struct node *obj);
static void decode_pod(struct dec *d, const struct node *obj);
static void decode_service(struct dec *d, const struct node *obj);
static void decode_slice(struct dec *d, const struct node *obj);
static void decode_netpol(struct dec *d, const struct node *obj);
static void decode_authz(struct dec *d, const struct node *obj);
static void decode_peerauthn(struct dec *d, const struct node *obj);
static void decode_route(struct dec *d, const struct node *obj);
static void decode_gateway(struct dec *d, const struct node *obj);
static void decode_gateway_class(struct dec *d, const struct node *obj);
static void decode_ref_grant(struct dec *d, const struct node *obj);
static void decode_secret(struct dec *d, const struct node *obj);
static const char *scalar_str(const struct node *n);

static const struct kind_desc {
	const char *kind;
	const char *group;		/* "" for the core group */
	const char *versions;		/* space separated */
	decode_fn decode;		/* NULL: accepted and ignored */
} kinds[] = {
	{ "Namespace", "", "v1", decode_namespace },
	{ "Pod", "", "v1", decode_pod },
	{ "Service", "", "v1", decode_service },
	{ "EndpointSlice", "discovery.k8s.io", "v1", decode_slice },
	{ "GatewayClass", "gateway.networking.k8s.io", "v1 v1beta1 v1alpha2 v1alpha3", decode_gateway_class },
	{ "Gateway", "gateway.networking.k8s.io", "v1 v1beta1 v1alpha2 v1alpha3", decode_gateway },
	{ "HTTPRoute", "gateway.networking.k8s.io", "v1 v1beta1 v1alpha2 v1alpha3", decode_route },
	{ "GRPCRoute", "gateway.networking.k8s.io", "v1 v1beta1 v1alpha2 v1alpha3", decode_route },
	{ "ReferenceGrant", "gateway.networking.k8s.io", "v1 v1beta1 v1alpha2 v1alpha3", decode_ref_grant },
	{ "TCPRoute", "gateway.networking.k8s.io", "v1 v1beta1 v1alpha2 v1alpha3", decode_route },
	{ "TLSRoute", "gateway.networking.k8s.io", "v1 v1beta1 v1alpha2 v1alpha3", decode_route },
	{ "BackendTLSPolicy", "gateway.networking.k8s.io", "v1 v1beta1 v1alpha2 v1alpha3", NULL },
	{ "NetworkPolicy", "networking.k8s.io", "v1", decode_netpol },
	{ "AuthorizationPolicy", "security.istio.io", "v1 v1beta1", decode_authz },
	{ "PeerAuthentication", "security.istio.io", "v1 v1beta1", decode_peerauthn },
	{ "Deployment", "apps", "v1", NULL },
	{ "StatefulSet", "apps", "v1", NULL },
	{ "DaemonSet", "apps", "v1", NULL },
	{ "ReplicaSet", "apps", "v1", NULL },
	{ "ConfigMap", "", "v1", NULL },
	{ "Secret", "", "v1", decode_secret },
	{ "ServiceAccount", "", "v1", NULL },
};

#define N_KINDS		(sizeof(kinds) / sizeof(kinds[0]))
#define IGN_FQDN	N_KINDS		/* EndpointSlices of addressType FQDN */

/* What part of a file a unit is. A big List is cut at item boundaries: the
 * head (the root up to some items), runs of items, and the tail (the rest of
 * the root); each parses on its own, with the List's kind from the scan. */
enum unit_role { ROLE_WHOLE, ROLE_LIST_HEAD, ROLE_LIST_ITEMS, ROLE_LIST_TAIL };

struct unit {
	char *path;			/* to open; NULL for a memory buffer */
	const char *name;		/* for messages (relative to the directory) */
	const char *buf;		/* memory input */
	size_t len;
	off_t off, end;			/* file range */
	int line0;			/* lines before off */
	int json;			/* -1: sniff */
	bool done;			/* nothing to parse (problem found while listing) */
	bool own_path;			/* frees path */
	/* A piece of a List cut at item boundaries (see split_file) */
	enum unit_role role;
	const char *pre, *post;		/* JSON: text around the piece to make it whole */
	char list_kind[64];		/* the List's kind and apiVersion, from the scan */
	char list_api[128];
	bool suspect;			/* a problem the cut may have caused: parse whole */
	bool saw_kind, saw_api;		/* head/tail: the root's fields are the scan's */
	char **root_keys;		/* head/tail: the root's keys, to find one twice */
	size_t n_root_keys;
	/* results */
	struct sl_resources res;	/* arrays only */
	struct caps caps;
	struct diags errs;
	size_t n_problems;
	size_t ignored[N_KINDS + 1];
	int io_err;			/* first -errno */
};

/* ---- the reader: bytes into libyaml ---------------------------------------- */

/* libyaml reads JSON as YAML flow style, except for a few corners that the
 * reader rewrites on the way in, never across a line break so line numbers
 * hold: a tab outside strings (YAML may not indent with tabs), a UTF-16
 * surrogate pair escape (YAML wants \UXXXXXXXX), a lone surrogate (\uFFFD, as
 * Go's encoding/json does), and raw DEL, C1 controls, U+2028 and U+2029 in
 * strings, which YAML rejects or folds as line breaks (escaped instead). */
struct reader {
	const char *pre, *post;		/* served before and after the file range */
	int fd;				/* -1: memory */
	const unsigned char *mem;
	size_t mem_len, mem_pos;
	off_t pos, end;			/* file range still to read */
	unsigned char *in;		/* file window (JSON, and the sniffed head) */
	size_t in_start, in_len;
	unsigned char *out;		/* JSON: filtered bytes for libyaml */
	size_t out_pos, out_len;
	bool json, in_str, eof;
	int err;			/* errno of a failed read */
};

static int hex4(const unsigned char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		int c = p[i];

		if (c >= '0' && c <= '9')
			c -= '0';
		else if (c >= 'a' && c <= 'f')
			c -= 'a' - 10;
		else if (c >= 'A' && c <= 'F')
			c -= 'A' - 10;
		else
			return -1;
		v = v * 16 + c;
	}
	return v;
}

/* Copy an escape sequence (without its NUL) into out; returns its length. */
static size_t put(unsigned char *out, const char *s)
{
	size_t n;

	for (n = 0; s[n]; n++)
		out[n] = (unsigned char)s[n];
	return n;
}

/* Filter in[0, len) into out (room >= 16 per step). Returns bytes consumed; stops
 * early when a sequence is cut by the end of in and more input may come. */
static size_t json_filter(struct reader *r, const unsigned char *in, size_t len, bool last,
			  unsigned char *out, size_t room, size_t *produced)
{
	size_t i = 0, o = 0;

	while (i < len && room - o >= 16) {
		unsigned char c = in[i];
		size_t need = 1;

		if (!r->in_str) {
			if (c == '"')
				r->in_str = true;
			out[o++] = c == '\t' ? ' ' : c;
			i++;
			continue;
		}
		if (c == '"') {
			r->in_str = false;
		} else if (c == '\\') {
			need = i + 1 < len && in[i + 1] == 'u' ? 6 : 2;
			if (need == 6 && i + 6 <= len) {
				int v = hex4(in + i + 2), w = -1;

				if (v >= 0xd800 && v <= 0xdbff) {
					if (i + 12 > len && !last)
						break;
					if (i + 12 <= len && in[i + 6] == '\\' && in[i + 7] == 'u')
						w = hex4(in + i + 8);
					if (w >= 0xdc00 && w <= 0xdfff) {
						uint32_t cp = 0x10000 + ((uint32_t)(v - 0xd800) << 10) +
							      (uint32_t)(w - 0xdc00);

						o += (size_t)snprintf((char *)out + o, 11, "\\U%08X", cp);
						i += 12;
						continue;
					}
				}
				if (v >= 0xd800 && v <= 0xdfff) {
					o += put(out + o, "\\uFFFD");
					i += 6;
					continue;
				}
				need = 6;
			}
		} else if (c == 0x7f) {
			o += put(out + o, "\\x7F");
			i++;
			continue;
		} else if (c == 0xc2 || c == 0xe2) {
			need = c == 0xc2 ? 2 : 3;
			if (i + need <= len) {
				if (c == 0xc2 && in[i + 1] >= 0x80 && in[i + 1] <= 0x9f) {
					o += (size_t)snprintf((char *)out + o, 5, "\\x%02X", in[i + 1]);
					i += 2;
					continue;
				}
				if (c == 0xe2 && in[i + 1] == 0x80 && (in[i + 2] == 0xa8 || in[i + 2] == 0xa9)) {
					o += put(out + o, in[i + 2] == 0xa8 ? "\\u2028" : "\\u2029");
					i += 3;
					continue;
				}
			}
		}
		if (i + need > len) {
			if (!last)
				break;
			need = len - i;
		}
		memcpy(out + o, in + i, need);
		o += need;
		i += need;
	}
	*produced = o;
	return i;
}

static ssize_t reader_pread(struct reader *r, void *buf, size_t size)
{
	ssize_t n;

	if ((off_t)size > r->end - r->pos)
		size = (size_t)(r->end - r->pos);
	if (!size)
		return 0;
	do {
		n = pread(r->fd, buf, size, r->pos);
	} while (n == -1 && errno == EINTR);
	if (n == -1) {
		r->err = errno;
		return -1;
	}
	r->pos += n;
	return n;
}

/* The unit's bytes: its prefix, the file range, its suffix. */
static ssize_t reader_raw(struct reader *r, void *buf, size_t size)
{
	const char **extra = r->pre && *r->pre ? &r->pre : NULL;
	ssize_t n;
	size_t k;

	if (!extra) {
		n = reader_pread(r, buf, size);
		if (n)
			return n;
		if (!r->post || !*r->post)
			return 0;
		extra = &r->post;
	}
	k = strlen(*extra);
	k = k < size ? k : size;
	memcpy(buf, *extra, k);
	*extra += k;
	return (ssize_t)k;
}

/* Fill the file window so that it holds at least what is left plus new bytes. */
static int reader_fill(struct reader *r)
{
	ssize_t n;

	if (r->in_start) {
		memmove(r->in, r->in + r->in_start, r->in_len - r->in_start);
		r->in_len -= r->in_start;
		r->in_start = 0;
	}
	if (r->in_len == CFG_READ_BUF)	/* full: not the end of anything */
		return 0;
	n = reader_raw(r, r->in + r->in_len, CFG_READ_BUF - r->in_len);
	if (n < 0)
		return -1;
	if (n == 0)
		r->eof = true;
	r->in_len += (size_t)n;
	return 0;
}

/* The next filtered JSON bytes: > 0, 0 at the end, -1 on a read error. */
static ssize_t reader_json(struct reader *r, unsigned char *buf, size_t size)
{
	size_t n;

	while (r->out_pos == r->out_len) {
		const unsigned char *in;
		size_t avail, used, made;
		bool last;

		if (r->fd < 0) {
			in = r->mem + r->mem_pos;
			avail = r->mem_len - r->mem_pos;
			last = true;
		} else {
			if (!r->eof && r->in_len - r->in_start < 16 && reader_fill(r))
				return -1;
			in = r->in + r->in_start;
			avail = r->in_len - r->in_start;
			last = r->eof;
		}
		if (!avail)
			return 0;
		used = json_filter(r, in, avail, last, r->out, CFG_READ_BUF, &made);
		if (r->fd < 0)
			r->mem_pos += used;
		else
			r->in_start += used;
		r->out_pos = 0;
		r->out_len = made;
		if (!used && r->fd >= 0 && reader_fill(r))	/* a cut sequence: read on */
			return -1;
	}
	n = r->out_len - r->out_pos < size ? r->out_len - r->out_pos : size;
	memcpy(buf, r->out + r->out_pos, n);
	r->out_pos += n;
	return (ssize_t)n;
}

/* The next bytes of the unit: > 0, 0 at the end, -1 on a read error. */
static ssize_t reader_step(struct reader *r, unsigned char *buf, size_t size)
{
	size_t n;

	if (r->json)
		return reader_json(r, buf, size);
	if (r->in_start < r->in_len) {		/* the sniffed head first */
		n = r->in_len - r->in_start < size ? r->in_len - r->in_start : size;
		memcpy(buf, r->in + r->in_start, n);
		r->in_start += n;
		return (ssize_t)n;
	}
	return reader_raw(r, buf, size);
}

/* libyaml's read handler: 1 and *size_read (0 at the end), or 0 on error.
 * It fills buf as far as the input goes, as libyaml's own string reader does:
 * libyaml decodes whatever it holds, and which of two close problems (bad
 * bytes, bad syntax) it reports first depends on where its reads end, so a
 * file must come in the same pieces as the same bytes from memory. */
static int reader_read(void *data, unsigned char *buf, size_t size, size_t *size_read)
{
	struct reader *r = data;
	size_t done = 0;

	while (done < size) {
		ssize_t n = reader_step(r, buf + done, size - done);

		if (n < 0)
			return 0;
		if (!n)
			break;
		done += (size_t)n;
	}
	*size_read = done;
	return 1;
}

/* JSON when named so, or when the first thing in it is '{' or '['. */
static bool sniff_json(const char *name, const unsigned char *p, size_t len)
{
	size_t nl = name ? strlen(name) : 0;

	if (len >= 2 && ((p[0] == 0xfe && p[1] == 0xff) || (p[0] == 0xff && p[1] == 0xfe) || !p[0]))
		return false;			/* UTF-16/32: libyaml decodes it, we do not */
	if (nl >= 5 && !strcasecmp(name + nl - 5, ".json"))
		return true;
	if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
		p += 3;
		len -= 3;
	}
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '{' || p[i] == '[')
			return true;
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return false;
	}
	return false;
}

/* ---- building one object's tree from events ---------------------------------- */

struct frame {
	struct node *node;
	size_t base;			/* its first child in parse.kids */
	uint8_t od;			/* depth below the object root (0: the root) */
	bool items;			/* a List's items: each child is an object */
	bool meta;			/* an object's metadata */
	bool data;			/* an object's data or stringData mapping */
	/* items only: where the current item started */
	struct arena_mark mark;
	size_t mark_anchors, mark_problems;
};

struct anchor {
	char *name;
	struct node *node;
};

struct parse {
	yaml_parser_t yp;
	struct unit *u;
	struct store *st;
	const char *file;		/* interned in st */
	struct arena tmp;		/* the tree of the current object */
	struct node **kids;		/* children of open containers */
	size_t n_kids, cap_kids;
	struct frame frames[CFG_MAX_DEPTH];
	int depth;
	struct node *root;		/* the finished document root */
	struct anchor *anchors;
	size_t n_anchors, cap_anchors;
	int skip;			/* > 0: inside a subtree that is not kept */
	struct node *skip_node;		/* its placeholder */
	bool doc_bad;			/* rest of the document dropped */
	bool have_items;		/* this document's root has streamed items */
	const struct node *root_kind;	/* the root mapping's kind, once seen */
	struct node **deferred;		/* items that could not be typed yet */
	size_t n_deferred, cap_deferred;
	size_t obj_base_bytes;		/* tmp.bytes when the current object started */
	size_t doc_problems;
	bool oom;
};

static void p_vreport(struct parse *p, int line, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void p_vreport(struct parse *p, int line, const char *fmt, va_list ap)
{
	char msg[1024];

	p->u->n_problems++;
	if (p->u->n_problems > CFG_MAX_PROBLEMS)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	diags_add(&p->u->errs, p->file, line, "%s", msg);
}

static void p_report(struct parse *p, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void p_report(struct parse *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	p_vreport(p, line, fmt, ap);
	va_end(ap);
}

/* Out of memory: reported once per unit, counted always. */
static void p_oom(struct parse *p, int line)
{
	if (!p->oom)
		p_report(p, line, "out of memory");
	else
		p->u->n_problems++;
	p->oom = true;
}

static int ev_line(const struct parse *p, const yaml_event_t *ev)
{
	size_t line = ev->start_mark.line + 1 + (size_t)p->u->line0;

	return line > INT32_MAX ? INT32_MAX : (int)line;
}

/* "text" for messages: at most 64 characters, escaped. */
static const char *quote(char *buf, size_t size, const char *s, size_t len)
{
	size_t o = 0;

	buf[o++] = '"';
	for (size_t i = 0; i < len && o + 8 < size; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == 64) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c == '"' || c == '\\')
			o += (size_t)snprintf(buf + o, size - o, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* A node in the tmp arena; NULL (reported, document dropped) past the
 * object's size limit or out of memory. */
static struct node *node_new(struct parse *p, int type, int line)
{
	struct node *n;

	if (p->tmp.bytes - p->obj_base_bytes > CFG_MAX_OBJ_BYTES) {
		p_report(p, line, "object too large (more than %u MiB of YAML structure)",
			 CFG_MAX_OBJ_BYTES >> 20);
		p->doc_bad = true;
		return NULL;
	}
	n = arena_alloc(&p->tmp, sizeof(*n));
	if (!n) {
		p_oom(p, line);
		p->doc_bad = true;
		return NULL;
	}
	memset(n, 0, sizeof(*n));
	n->type = (uint8_t)type;
	n->line = (uint32_t)line;
	n->weight = 1;
	return n;
}

static int kids_push(struct parse *p, struct node *n)
{
	if (p->n_kids == p->cap_kids) {
		size_t cap = p->cap_kids ? p->cap_kids * 2 : 256;
		struct node **v = realloc(p->kids, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->kids = v;
		p->cap_kids = cap;
	}
	p->kids[p->n_kids++] = n;
	return 0;
}

/* Remember an anchor of this document (bounded; List items drop theirs). */
static void anchor_add(struct parse *p, const yaml_char_t *name, struct node *n, int line)
{
	struct anchor *a;

	if (p->n_anchors >= CFG_MAX_ANCHORS) {
		p_report(p, line, "more than %d YAML anchors in one document", CFG_MAX_ANCHORS);
		p->doc_bad = true;
		return;
	}
	if (p->n_anchors == p->cap_anchors) {
		size_t cap = p->cap_anchors ? p->cap_anchors * 2 : 16;

		a = realloc(p->anchors, cap * sizeof(*a));
		if (!a) {
			p_oom(p, line);
			p->doc_bad = true;
			return;
		}
		p->anchors = a;
		p->cap_anchors = cap;
	}
	a = &p->anchors[p->n_anchors];
	a->name = arena_alloc(&p->tmp, strlen((const char *)name) + 1);
	if (!a->name) {
		p_oom(p, line);
		p->doc_bad = true;
		return;
	}
	strcpy(a->name, (const char *)name);
	a->node = n;
	p->n_anchors++;
}

static void item_done(struct parse *p, struct frame *f, struct node *n);

/* A finished node: becomes the root, a child, or (in a List) an object. */
static void node_done(struct parse *p, struct node *n)
{
	struct frame *f;

	if (!p->depth) {
		p->root = n;
		return;
	}
	f = &p->frames[p->depth - 1];
	if (f->items) {
		item_done(p, f, n);
		return;
	}
	if (kids_push(p, n)) {
		p_oom(p, (int)n->line);
		p->doc_bad = true;
	}
}

/* A node is about to start: in a List, each item starts at an arena mark. */
static void node_begin(struct parse *p)
{
	struct frame *f;

	if (!p->depth)
		return;
	f = &p->frames[p->depth - 1];
	if (!f->items)
		return;
	f->mark = arena_mark(&p->tmp);
	f->mark_anchors = p->n_anchors;
	f->mark_problems = p->u->n_problems;
	p->obj_base_bytes = p->tmp.bytes;
}

/* The key under which the next node is a value, or NULL. */
static const struct node *pending_key(const struct parse *p)
{
	const struct frame *f;

	if (!p->depth)
		return NULL;
	f = &p->frames[p->depth - 1];
	if (f->items || f->node->type != NODE_MAP || (p->n_kids - f->base) % 2 == 0)
		return NULL;
	return p->kids[p->n_kids - 1];
}

static bool kind_is_list(const struct node *k)
{
	return k && k->type == NODE_SCALAR && k->n >= 4 && !memcmp(k->s + k->n - 4, "List", 4);
}

static bool kind_is_list_str(const char *k)
{
	size_t n = strlen(k);

	return n >= 4 && !strcmp(k + n - 4, "List");
}

/* Subtrees no decoder reads and that may be big (kubectl's last-applied
 * annotation, managedFields, ConfigMap and Secret data): consumed, not kept.
 * Of data and stringData only a TLS Secret's tls.crt and tls.key are kept:
 * the kind may come after data (kubectl sorts keys), so the key decides. */
static bool skip_value(const struct parse *p, const struct node *key)
{
	const struct frame *f = &p->frames[p->depth - 1];

	if (f->od == 0)
		return SCALAR_IS(key, "binaryData");
	if (f->meta)
		return SCALAR_IS(key, "annotations") || SCALAR_IS(key, "managedFields");
	if (f->data)
		return !SCALAR_IS(key, "tls.crt") && !SCALAR_IS(key, "tls.key");
	return false;
}

/* Builder, one per libyaml event kind: a scalar becomes a node (or, in a
 * skipped subtree, nothing); NULL-ish forms and quoting are noted in flags. */
static void on_scalar(struct parse *p, const yaml_event_t *ev)
{
	const yaml_char_t *tag = ev->data.scalar.tag;
	const struct node *key;
	struct node *n;
	int line = ev_line(p, ev);

	if (p->skip) {
		if (ev->data.scalar.anchor)
			anchor_add(p, ev->data.scalar.anchor, p->skip_node, line);
		return;
	}
	key = pending_key(p);
	node_begin(p);
	n = node_new(p, NODE_SCALAR, line);
	if (!n)
		return;
	if (key && skip_value(p, key)) {
		n->type = NODE_SKIP;
		n->flags |= NF_DONE;
		if (ev->data.scalar.anchor)
			anchor_add(p, ev->data.scalar.anchor, n, line);
		node_done(p, n);
		return;
	}
	if (ev->data.scalar.length > CFG_MAX_OBJ_BYTES - (p->tmp.bytes - p->obj_base_bytes)) {
		p_report(p, line, "object too large (more than %u MiB of YAML structure)",
			 CFG_MAX_OBJ_BYTES >> 20);
		p->doc_bad = true;
		return;
	}
	n->n = (uint32_t)ev->data.scalar.length;
	n->s = arena_alloc(&p->tmp, ev->data.scalar.length + 1);
	if (!n->s) {
		p_oom(p, line);
		p->doc_bad = true;
		return;
	}
	memcpy(n->s, ev->data.scalar.value, ev->data.scalar.length);
	n->s[n->n] = '\0';
	/* Only an escape (\0, \x00, \u0000) makes a NUL: libyaml rejects raw ones. */
	if (ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE && memchr(n->s, '\0', n->n))
		n->flags |= NF_NUL;
	if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
	    (tag && !strcmp((const char *)tag, YAML_STR_TAG)))
		n->flags |= NF_STRING;
	else if (!n->n || (n->n == 1 && n->s[0] == '~') ||
		 (n->n == 4 && (!memcmp(n->s, "null", 4) || !memcmp(n->s, "Null", 4) ||
				!memcmp(n->s, "NULL", 4))))
		n->flags |= NF_NULL;
	n->flags |= NF_DONE;
	if (ev->data.scalar.anchor)
		anchor_add(p, ev->data.scalar.anchor, n, line);
	if (p->depth == 1 && !p->frames[0].items && SCALAR_IS(key, "kind") && p->frames[0].od == 0)
		p->root_kind = n;
	node_done(p, n);
}

/* An alias is its anchor's node, shared (weights bound the expansion). */
static void on_alias(struct parse *p, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	int line = ev_line(p, ev);
	struct node *target = NULL;

	if (p->skip)
		return;
	for (size_t i = p->n_anchors; i-- > 0;) {
		if (!strcmp(p->anchors[i].name, name)) {
			target = p->anchors[i].node;
			break;
		}
	}
	if (!target) {
		p->u->suspect = true;	/* the anchor may be in another piece */
		p_report(p, line, "YAML alias *%.64s: no such anchor before it%s", name,
			 p->have_items ? " (anchors do not reach across List items)" : "");
		p->doc_bad = true;
		return;
	}
	if (!(target->flags & NF_DONE)) {
		p_report(p, line, "YAML alias *%.64s refers to a node that contains it", name);
		p->doc_bad = true;
		return;
	}
	node_begin(p);
	node_done(p, target);
}

/* A mapping or sequence opens: a frame, unless too deep or skipped; the
 * items of a List become a frame whose children are objects. */
static void on_start(struct parse *p, const yaml_event_t *ev, int type)
{
	const yaml_char_t *anchor = type == NODE_MAP ? ev->data.mapping_start.anchor :
						       ev->data.sequence_start.anchor;
	const struct node *key;
	struct frame *f, *up;
	struct node *n;
	int line = ev_line(p, ev);

	if (p->depth + p->skip >= CFG_MAX_DEPTH) {	/* libyaml bounds nothing; we do */
		p_report(p, line, "nesting deeper than %d levels", CFG_MAX_DEPTH);
		p->doc_bad = true;
		return;
	}
	if (p->skip) {
		p->skip++;
		if (anchor)		/* an alias to it says what it is */
			anchor_add(p, anchor, p->skip_node, line);
		return;
	}
	key = pending_key(p);
	node_begin(p);
	n = node_new(p, type, line);
	if (!n)
		return;
	if (key && skip_value(p, key)) {
		n->type = NODE_SKIP;
		n->flags |= NF_DONE;
		if (anchor)
			anchor_add(p, anchor, n, line);
		p->skip = 1;
		p->skip_node = n;
		return;
	}
	up = p->depth ? &p->frames[p->depth - 1] : NULL;
	f = &p->frames[p->depth++];
	memset(f, 0, sizeof(*f));
	f->node = n;
	f->base = p->n_kids;
	f->od = !up ? 0 : up->items ? 0 : (uint8_t)(up->od + 1 > 200 ? 200 : up->od + 1);
	f->meta = up && !up->items && up->od == 0 && SCALAR_IS(key, "metadata");
	f->data = up && !up->items && up->od == 0 && type == NODE_MAP &&
		  (SCALAR_IS(key, "data") || SCALAR_IS(key, "stringData"));
	/* A root mapping's items are objects of their own, unless the root's kind
	 * is already known not to be a List. */
	if ((type == NODE_SEQ && p->depth == 2 && up->od == 0 && SCALAR_IS(key, "items") &&
	     up->node->type == NODE_MAP && (!p->root_kind || kind_is_list(p->root_kind))) ||
	    (type == NODE_SEQ && p->depth == 1 && p->u->role == ROLE_LIST_ITEMS)) {
		f->items = true;
		n->flags |= NF_STREAMED;
		p->have_items = true;
	}
	if (anchor)
		anchor_add(p, anchor, n, line);
}

static int key_cmp(const void *a, const void *b)
{
	const struct node *x = *(const struct node *const *)a, *y = *(const struct node *const *)b;

	if (x->n != y->n)
		return x->n < y->n ? -1 : 1;
	if (x->n && memcmp(x->s, y->s, x->n))
		return memcmp(x->s, y->s, x->n);
	return x->line < y->line ? -1 : x->line > y->line;
}

static void dup_report(struct parse *p, const struct node *first, const struct node *again)
{
	char q[96];

	p_report(p, (int)again->line, "duplicate key %s (first on line %u)",
		 quote(q, sizeof(q), again->s, again->n), first->line);
}

/* Kubernetes (and YAML) reject a mapping with a key twice. */
static void check_dups(struct parse *p, struct node **kv, size_t pairs)
{
	struct node **keys;
	size_t n = 0;

	if (pairs <= 8) {
		for (size_t i = 1; i < pairs; i++)
			for (size_t j = 0; j < i; j++)
				if (kv[2 * i]->type == NODE_SCALAR && kv[2 * j]->type == NODE_SCALAR &&
				    scalar_is(kv[2 * j], kv[2 * i]->s, kv[2 * i]->n)) {
					dup_report(p, kv[2 * j], kv[2 * i]);
					break;
				}
		return;
	}
	keys = malloc(pairs * sizeof(*keys));
	if (!keys) {
		p_oom(p, (int)kv[0]->line);
		return;
	}
	for (size_t i = 0; i < pairs; i++)
		if (kv[2 * i]->type == NODE_SCALAR)
			keys[n++] = kv[2 * i];
	qsort(keys, n, sizeof(*keys), key_cmp);
	for (size_t i = 1; i < n; i++)
		if (keys[i]->n == keys[i - 1]->n && !memcmp(keys[i]->s, keys[i - 1]->s, keys[i]->n))
			dup_report(p, keys[i - 1], keys[i]);
	free(keys);
}

/* A container closes: its children move from the stack into the arena,
 * its weight and duplicate keys are checked, and it is done. */
static void on_end(struct parse *p)
{
	struct frame *f;
	struct node *n;
	size_t count;
	uint64_t w = 1;

	if (p->skip) {
		if (--p->skip == 0)
			node_done(p, p->skip_node);
		return;
	}
	if (!p->depth) {		/* cannot happen: libyaml pairs starts and ends */
		p->u->suspect = true;
		p_report(p, 0, "internal error: unbalanced YAML events");
		p->doc_bad = true;
		return;
	}
	f = &p->frames[--p->depth];
	n = f->node;
	count = p->n_kids - f->base;
	if (!f->items && count) {
		n->kids = arena_alloc(&p->tmp, count * sizeof(*n->kids));
		if (!n->kids) {
			p_oom(p, (int)n->line);
			p->doc_bad = true;
			return;
		}
		memcpy(n->kids, p->kids + f->base, count * sizeof(*n->kids));
		n->n = (uint32_t)(n->type == NODE_MAP ? count / 2 : count);
		for (size_t i = 0; i < count; i++)
			w += n->kids[i]->weight;
		if (n->type == NODE_MAP)
			check_dups(p, n->kids, count / 2);
	}
	p->n_kids = f->base;
	n->weight = w > UINT32_MAX ? UINT32_MAX : (uint32_t)w;
	if (n->weight > CFG_MAX_OBJ_NODES) {
		p_report(p, (int)n->line, "object too large (more than %u nodes with YAML aliases expanded)",
			 CFG_MAX_OBJ_NODES);
		p->doc_bad = true;
		return;
	}
	n->flags |= NF_DONE;
	node_done(p, n);
}

/* ---- decoding helpers ---------------------------------------------------------- */

/* Where in an object a value is, built on the stack as decoders descend and
 * rendered only for messages ("spec.ports[0].port"). */
struct path {
	const struct path *up;
	const char *key;		/* NULL: an index */
	size_t idx;
};

#define PK(up_, key_) (&(const struct path){ .up = (up_), .key = (key_) })
#define PI(up_, idx_) (&(const struct path){ .up = (up_), .idx = (idx_) })

struct dec {
	struct parse *p;
	const char *kind;
	const char *ns, *name;		/* for messages; NULL until known and valid */
	size_t problems0;
	bool bad;			/* problems found while building the tree */
};

static size_t clamp_add(size_t o, int n, size_t size)
{
	if (n < 0)
		return o;
	return o + (size_t)n >= size ? size - 1 : o + (size_t)n;
}

/* s escaped for a message: at most 64 characters, no control characters. */
static const char *esc(char *buf, size_t size, const char *s, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 8 < size; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == 64) {
			o = clamp_add(o, snprintf(buf + o, size - o, "..."), size);
			break;
		}
		if (c < 0x20 || c == 0x7f)
			o = clamp_add(o, snprintf(buf + o, size - o, "\\x%02x", c), size);
		else
			buf[o++] = (char)c;
	}
	buf[o] = '\0';
	return buf;
}

static size_t path_fmt(char *buf, size_t size, const struct path *pa)
{
	size_t o = 0;
	bool plain = true;

	if (!pa)
		return 0;
	o = path_fmt(buf, size, pa->up);
	if (!pa->key)
		return clamp_add(o, snprintf(buf + o, size - o, "[%zu]", pa->idx), size);
	for (const char *c = pa->key; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
		      *c == '_' || *c == '-'))
			plain = false;
	if (plain && *pa->key)
		return clamp_add(o, snprintf(buf + o, size - o, "%s%s", o ? "." : "", pa->key), size);
	{
		char q[96];

		quote(q, sizeof(q), pa->key, strlen(pa->key));
		return clamp_add(o, snprintf(buf + o, size - o, "[%s]", q), size);
	}
}

static void dec_err(struct dec *d, const struct node *n, const struct path *pa, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* "Service default/web: spec.ports[0].port: <what>" at n's line. */
static void dec_err(struct dec *d, const struct node *n, const struct path *pa, const char *fmt, ...)
{
	char where[256] = "", msg[640], who[200];
	va_list ap;

	path_fmt(where, sizeof(where), pa);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (d->name)
		snprintf(who, sizeof(who), "%s %s%s%s", d->kind, d->ns ? d->ns : "", d->ns ? "/" : "",
			 d->name);
	else
		snprintf(who, sizeof(who), "%s", d->kind);
	p_report(d->p, n ? (int)n->line : 0, "%s: %s%s%s", who, where, where[0] ? ": " : "", msg);
}

/* What a node is, for "expected X, got Y". */
static const char *node_desc(char *buf, size_t size, const struct node *n)
{
	if (!n)
		return "nothing";
	switch (n->type) {
	case NODE_MAP:
		return "a mapping";
	case NODE_SEQ:
		return "a list";
	case NODE_SKIP:
		return "an alias into content the agent does not read (annotations, managedFields, data)";
	}
	if (n->flags & NF_NULL)
		return "null";
	return quote(buf, size, n->s, n->n);
}

static bool want_map(struct dec *d, const struct node *n, const struct path *pa)
{
	char b[96];

	if (n && n->type == NODE_MAP)
		return true;
	dec_err(d, n, pa, "expected a mapping, got %s", node_desc(b, sizeof(b), n));
	return false;
}

static bool want_seq(struct dec *d, const struct node *n, const struct path *pa)
{
	char b[96];

	if (n && n->type == NODE_SEQ)
		return true;
	dec_err(d, n, pa, "expected a list, got %s", node_desc(b, sizeof(b), n));
	return false;
}

/* A scalar's text whatever YAML would type it as (IPs, enums); NULL after an error. */
static const char *want_text(struct dec *d, const struct node *n, const struct path *pa,
			     const char *what)
{
	char b[96];

	if (!n || n->type != NODE_SCALAR || (n->flags & NF_NULL)) {
		dec_err(d, n, pa, "expected %s, got %s", what, node_desc(b, sizeof(b), n));
		return NULL;
	}
	if (n->flags & NF_NUL) {
		dec_err(d, n, pa, "contains a NUL character");
		return NULL;
	}
	return n->s;
}

/* A string, as Kubernetes reads YAML: an unquoted 80, 1.5 or true is not one. */
static const char *want_str(struct dec *d, const struct node *n, const struct path *pa)
{
	static const char *const what[] = { [PK_BOOL] = "boolean", [PK_INT] = "number",
					    [PK_FLOAT] = "number" };
	enum plain_kind k;
	char b[96];

	if (!want_text(d, n, pa, "a string"))
		return NULL;
	k = plain_kind(n);
	if (k != PK_STR) {
		dec_err(d, n, pa, "expected a string, got the %s %s (quote it)", what[k],
			esc(b, sizeof(b), n->s, n->n));
		return NULL;
	}
	return n->s;
}

/* A plain decimal integer in [min, max] into *out (YAML 1.1's 010 or 0x10
 * are refused rather than read as octal or hex); false after an error. */
static bool get_int(struct dec *d, const struct node *n, const struct path *pa, long min, long max,
		    long *out)
{
	const char *s = n && n->type == NODE_SCALAR ? n->s : "";
	bool neg = s[0] == '-';
	long v = 0;
	size_t i = neg;
	char b[96];

	if (!n || n->type != NODE_SCALAR || (n->flags & (NF_STRING | NF_NULL)) || n->n - i > 12 ||
	    !all_digits(s + i, n->n - i, NULL) || (s[i] == '0' && n->n - i > 1))
		goto bad;
	for (; i < n->n; i++)
		v = v * 10 + (s[i] - '0');
	if (neg)
		v = -v;
	if (v < min || v > max)
		goto bad;
	*out = v;
	return true;
bad:
	if (n && n->type == NODE_SCALAR && (n->flags & NF_STRING) && all_digits(n->s, n->n, NULL))
		dec_err(d, n, pa, "expected an integer %ld-%ld, got the string %s (drop the quotes)",
			min, max, node_desc(b, sizeof(b), n));
	else
		dec_err(d, n, pa, "expected an integer %ld-%ld, got %s", min, max,
			node_desc(b, sizeof(b), n));
	return false;
}

/* true/false (and YAML 1.1's yes/no/on/off, as kubectl reads them). */
static bool get_bool(struct dec *d, const struct node *n, const struct path *pa, bool *out)
{
	static const char *const truths[] = { "true", "True", "TRUE", "yes", "Yes", "YES",
					      "on", "On", "ON" };
	char b[96];

	if (n && n->type == NODE_SCALAR && plain_kind(n) == PK_BOOL) {
		*out = false;
		for (size_t i = 0; i < sizeof(truths) / sizeof(truths[0]); i++)
			if (!strcmp(n->s, truths[i]))
				*out = true;
		return true;
	}
	dec_err(d, n, pa, "expected true or false, got %s", node_desc(b, sizeof(b), n));
	return false;
}

static char *keep_str(struct dec *d, const char *s, bool intern)
{
	size_t len = strlen(s);
	char *k = intern ? store_intern(d->p->st, s, len) : store_strndup(d->p->st, s, len);

	if (!k)
		p_oom(d->p, 0);
	return k;
}

static void *keep_array(struct dec *d, size_t n, size_t size)
{
	void *a = store_zalloc(d->p->st, n, size);

	if (!a && n)
		p_oom(d->p, 0);
	return a;
}

/* ---- Kubernetes names and labels (apimachinery's validation rules) ------- */

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* RFC 1123 label (RFC 1035 when letter_first). */
static bool valid_dns_label(const char *s, size_t len, bool letter_first)
{
	if (!len || len > 63 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
		return false;
	if (letter_first && !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool valid_subdomain(const char *s, size_t len)
{
	size_t start = 0;

	if (!len || len > 253)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (!valid_dns_label(s + start, i - start, false))
			return false;
		start = i + 1;
	}
	return true;
}

/* The name part of a label key, or a label value (which may also be empty). */
static bool valid_label_name(const char *s, size_t len)
{
	if (!len || len > 63 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

static bool valid_label_key(const char *s, size_t len)
{
	const char *slash = memchr(s, '/', len);

	if (!slash)
		return valid_label_name(s, len);
	return valid_subdomain(s, (size_t)(slash - s)) &&
	       valid_label_name(slash + 1, len - (size_t)(slash - s) - 1);
}

/* IANA service name: a named port. */
static bool valid_port_name(const char *s, size_t len)
{
	bool letter = false;

	if (!len || len > 15 || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
		if (s[i] >= 'a' && s[i] <= 'z')
			letter = true;
		if (s[i] == '-' && i && s[i - 1] == '-')
			return false;
	}
	return letter;
}

enum name_rule { NAME_LABEL, NAME_1035, NAME_SUBDOMAIN };

static const char *const name_rules[] = {
	[NAME_LABEL] = "at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
	[NAME_1035] = "at most 63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit",
	[NAME_SUBDOMAIN] = "at most 253 lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit",
};

/* A string that is a valid Kubernetes name by rule; NULL after an error. */
static const char *want_name(struct dec *d, const struct node *n, const struct path *pa,
			     enum name_rule rule)
{
	const char *s = want_str(d, n, pa);
	bool ok;
	char b[96];

	if (!s)
		return NULL;
	ok = rule == NAME_SUBDOMAIN ? valid_subdomain(s, n->n) :
				      valid_dns_label(s, n->n, rule == NAME_1035);
	if (!ok) {
		dec_err(d, n, pa, "not a valid name: %s (%s)", node_desc(b, sizeof(b), n), name_rules[rule]);
		return NULL;
	}
	return s;
}

/* Labels (or a selector) into out, or only checked when out is NULL. */
static bool decode_labels(struct dec *d, const struct node *m, const struct path *pa,
			  struct sl_labels *out)
{
	char b[96];

	if (!want_map(d, m, pa))
		return false;
	if (out) {
		out->n = 0;
		out->v = keep_array(d, m->n, sizeof(*out->v));
		if (!out->v)
			return false;
	}
	for (uint32_t i = 0; i < m->n; i++) {
		const struct node *k = m->kids[2 * i], *v = m->kids[2 * i + 1];
		const char *ks, *vs = "";

		ks = want_str(d, k, pa);
		if (!ks)
			continue;
		if (!valid_label_key(ks, k->n)) {
			dec_err(d, k, pa, "not a valid label key: %s (an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)",
				node_desc(b, sizeof(b), k));
			continue;
		}
		if (!node_null(v)) {
			vs = want_str(d, v, PK(pa, ks));
			if (!vs)
				continue;
			if (v->n && !valid_label_name(vs, v->n)) {
				dec_err(d, v, PK(pa, ks), "not a valid label value: %s (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)",
					node_desc(b, sizeof(b), v));
				continue;
			}
		}
		if (!out)
			continue;
		out->v[out->n].key = keep_str(d, ks, true);
		out->v[out->n].value = keep_str(d, vs, true);
		out->n++;
	}
	return true;
}

static int ip_parse(const char *s, struct sl_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (inet_pton(AF_INET, s, &ip->addr.v4) == 1) {
		ip->family = SL_AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, ip->addr.v6) == 1) {
		ip->family = SL_AF_INET6;
		return 0;
	}
	return -EINVAL;
}

static const char *family_str(uint8_t family)
{
	return family == SL_AF_INET ? "IPv4" : "IPv6";
}

/* An IPv4 or IPv6 address (no prefix length, no zone) into *ip. */
static bool want_ip(struct dec *d, const struct node *n, const struct path *pa, struct sl_ip *ip)
{
	const char *s = want_text(d, n, pa, "an IP address");
	char b[96];

	if (!s)
		return false;
	if (ip_parse(s, ip)) {
		dec_err(d, n, pa, "not an IP address: %s", node_desc(b, sizeof(b), n));
		return false;
	}
	return true;
}

/* Dual-stack lists (clusterIPs, podIPs): at most two, one per family. */
static bool add_ip(struct dec *d, const struct node *n, const struct path *pa, struct sl_ip *ips,
		   size_t *n_ips, const struct sl_ip *ip)
{
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];

	for (size_t i = 0; i < *n_ips; i++) {
		if (ips[i].family != ip->family)
			continue;
		inet_ntop(ips[i].family == SL_AF_INET ? AF_INET : AF_INET6, &ips[i].addr, a, sizeof(a));
		inet_ntop(ip->family == SL_AF_INET ? AF_INET : AF_INET6, &ip->addr, b, sizeof(b));
		dec_err(d, n, pa, "two %s addresses (%s and %s); at most one per family",
			family_str(ip->family), a, b);
		return false;
	}
	if (*n_ips == 2) {
		dec_err(d, n, pa, "more than 2 addresses (at most one IPv4 and one IPv6)");
		return false;
	}
	ips[(*n_ips)++] = *ip;
	return true;
}

static bool get_proto(struct dec *d, const struct node *n, const struct path *pa, uint8_t *proto)
{
	const char *s;
	char b[96];

	*proto = SL_IPPROTO_TCP;
	if (!n)
		return true;
	s = want_str(d, n, pa);
	if (!s)
		return false;
	if (!strcmp(s, "TCP"))
		*proto = SL_IPPROTO_TCP;
	else if (!strcmp(s, "UDP"))
		*proto = SL_IPPROTO_UDP;
	else if (!strcmp(s, "SCTP"))
		*proto = 132;
	else {
		dec_err(d, n, pa, "expected TCP, UDP or SCTP, got %s", node_desc(b, sizeof(b), n));
		return false;
	}
	return true;
}

/* An optional enum field; returns the index in choices, dflt when absent, -1 after an error. */
static int get_enum(struct dec *d, const struct node *n, const struct path *pa,
		    const char *const *choices, size_t n_choices, int dflt)
{
	char list[256] = "", b[96];
	const char *s;
	size_t o = 0;

	if (!n)
		return dflt;
	s = want_str(d, n, pa);
	if (!s)
		return -1;
	for (size_t i = 0; i < n_choices; i++)
		if (!strcmp(s, choices[i]))
			return (int)i;
	for (size_t i = 0; i < n_choices; i++)
		o = clamp_add(o, snprintf(list + o, sizeof(list) - o, "%s%s",
					  i ? (i + 1 == n_choices ? " or " : ", ") : "", choices[i]),
			      sizeof(list));
	dec_err(d, n, pa, "expected %s, got %s", list, node_desc(b, sizeof(b), n));
	return -1;
}

/* metadata: name (by rule), namespace ("default") when namespaced, labels
 * when asked. Sets d->name and d->ns for later messages. */
static const struct node *decode_meta(struct dec *d, const struct node *obj, enum name_rule rule,
				      bool namespaced, struct sl_labels *labels)
{
	const struct path *pm = PK(NULL, "metadata");
	const struct node *m = map_get(obj, "metadata"), *n;

	if (namespaced)
		d->ns = "default";
	if (!m) {
		dec_err(d, obj, pm, "missing");
		return NULL;
	}
	if (!want_map(d, m, pm))
		return NULL;
	if (namespaced && (n = map_get(m, "namespace")))
		d->ns = want_name(d, n, PK(pm, "namespace"), NAME_LABEL);
	n = map_get(m, "name");
	if (!n)
		dec_err(d, m, PK(pm, "name"), "missing");
	else
		d->name = want_name(d, n, PK(pm, "name"), rule);
	if (labels && (n = map_get(m, "labels")))
		decode_labels(d, n, PK(pm, "labels"), labels);
	return m;
}

/* Did this object decode cleanly (so it may join the set)? */
static bool dec_ok(const struct dec *d)
{
	return !d->bad && d->p->u->n_problems == d->problems0 && d->name;
}

static struct sl_src dec_src(const struct dec *d, const struct node *obj)
{
	return (struct sl_src){ .file = d->p->file, .line = (int)obj->line };
}

/* Make room for one more element of a result array; NULL when out of memory. */
static void *grow(struct dec *d, void *v, size_t n, size_t *cap, size_t size)
{
	size_t c;

	if (n < *cap)
		return v;
	c = *cap ? *cap * 2 : 64;
	v = realloc(v, c * size);
	if (!v) {
		p_oom(d->p, 0);
		return NULL;
	}
	*cap = c;
	return v;
}

#define RES_ADD(d, arr, n, cap, obj)							\
	do {										\
		void *___v = grow(d, arr, n, &(cap), sizeof(*(arr)));			\
		if (___v) {								\
			(arr) = ___v;							\
			(arr)[(n)++] = (obj);						\
		}									\
	} while (0)

/* Decoders, one per kind: check every field they read, report each problem,
 * and add the object to the unit's results only when there was none. */
static void decode_namespace(struct dec *d, const struct node *obj)
{
	struct unit *u = d->p->u;
	struct sl_namespace ns = { 0 };

	decode_meta(d, obj, NAME_LABEL, false, &ns.labels);
	if (!dec_ok(d))
		return;
	ns.name = keep_str(d, d->name, true);
	ns.src = dec_src(d, obj);
	if (ns.name)
		RES_ADD(d, u->res.namespaces, u->res.n_namespaces, u->caps.namespaces, ns);
}

/* spec.clusterIP and spec.clusterIPs: None (headless), "" (none), or up to
 * one address per family; clusterIP must be clusterIPs[0]. */
static void svc_cluster_ips(struct dec *d, const struct node *spec, const struct path *ps,
			    struct sl_service *s)
{
	const struct path *pip = PK(ps, "clusterIP"), *pips = PK(ps, "clusterIPs");
	const struct node *ip = map_get(spec, "clusterIP"), *ips = map_get(spec, "clusterIPs");
	bool listed = false;
	struct sl_ip a;
	const char *t;
	char b[INET6_ADDRSTRLEN];

	if (ips && want_seq(d, ips, pips)) {
		listed = ips->n > 0;
		if (ips->n > 2) {
			dec_err(d, ips, pips, "more than 2 addresses (at most one IPv4 and one IPv6)");
			return;
		}
		for (uint32_t i = 0; i < ips->n; i++) {
			const struct node *n = ips->kids[i];

			t = want_text(d, n, PI(pips, i), "an IP address or None");
			if (!t)
				continue;
			if (!strcmp(t, "None")) {
				if (ips->n > 1)
					dec_err(d, n, PI(pips, i), "None must be the only entry");
				s->headless = true;
			} else if (want_ip(d, n, PI(pips, i), &a)) {
				add_ip(d, n, PI(pips, i), s->cluster_ips, &s->n_cluster_ips, &a);
			}
		}
	}
	if (!ip || !(t = want_text(d, ip, pip, "an IP address or None")) || !*t)
		return;			/* "": not allocated (nothing to balance) */
	if (!strcmp(t, "None")) {
		if (listed && !s->headless)
			dec_err(d, ip, pip, "None, but spec.clusterIPs lists addresses");
		s->headless = true;
		return;
	}
	if (!want_ip(d, ip, pip, &a))
		return;
	if (!listed) {
		add_ip(d, ip, pip, s->cluster_ips, &s->n_cluster_ips, &a);
	} else if (s->headless) {
		dec_err(d, ip, pip, "%s, but spec.clusterIPs is None", t);
	} else if (s->n_cluster_ips &&
		   (a.family != s->cluster_ips[0].family ||
		    memcmp(&a.addr, &s->cluster_ips[0].addr, sizeof(a.addr)))) {
		inet_ntop(s->cluster_ips[0].family == SL_AF_INET ? AF_INET : AF_INET6,
			  &s->cluster_ips[0].addr, b, sizeof(b));
		dec_err(d, ip, pip, "%s differs from spec.clusterIPs[0] (%s)", t, b);
	}
}

/* One spec.ports[] entry; targetPort is a number, a name, or the port. */
static void svc_port(struct dec *d, const struct node *m, const struct path *pi,
		     struct sl_service_port *sp)
{
	const struct node *n;
	const char *t;
	long v = 0;
	char b[96];

	if ((n = map_get(m, "name")) && (t = want_name(d, n, PK(pi, "name"), NAME_LABEL)))
		sp->name = keep_str(d, t, true);
	if (!(n = map_get(m, "port")))
		dec_err(d, m, PK(pi, "port"), "missing");
	else if (get_int(d, n, PK(pi, "port"), 1, 65535, &v))
		sp->port = (uint16_t)v;
	get_proto(d, map_get(m, "protocol"), PK(pi, "protocol"), &sp->proto);
	sp->target_port = sp->port;
	n = map_get(m, "targetPort");
	if (n && n->type == NODE_SCALAR && plain_kind(n) == PK_INT) {
		if (get_int(d, n, PK(pi, "targetPort"), 0, 65535, &v) && v)
			sp->target_port = (uint16_t)v;
	} else if (n && (t = want_str(d, n, PK(pi, "targetPort"))) && *t) {
		if (all_digits(t, n->n, NULL)) {
			dec_err(d, n, PK(pi, "targetPort"),
				"expected a port number or name, got the string %s (drop the quotes)",
				node_desc(b, sizeof(b), n));
		} else if (!valid_port_name(t, n->n)) {
			dec_err(d, n, PK(pi, "targetPort"),
				"not a valid port name: %s (at most 15 lowercase letters, digits and '-', with a letter, no '--')",
				node_desc(b, sizeof(b), n));
		} else {
			sp->target_port = 0;
			sp->target_port_name = keep_str(d, t, true);
		}
	}
	if ((n = map_get(m, "appProtocol")) && (t = want_str(d, n, PK(pi, "appProtocol")))) {
		if (!valid_label_key(t, n->n))
			dec_err(d, n, PK(pi, "appProtocol"),
				"not a valid protocol name: %s (a name like http or example.com/proto)",
				node_desc(b, sizeof(b), n));
		else
			sp->app_protocol = keep_str(d, t, true);
	}
}

#define CFG_MAX_PORTS 1000

/* spec.ports: named when more than one, no name or port/protocol twice. */
static void svc_ports(struct dec *d, const struct node *spec, const struct path *ps,
		      struct sl_service *s)
{
	const struct path *pp = PK(ps, "ports");
	const struct node *ports = map_get(spec, "ports");

	if (!ports || !want_seq(d, ports, pp))
		return;
	if (ports->n > CFG_MAX_PORTS) {
		dec_err(d, ports, pp, "more than %d ports", CFG_MAX_PORTS);
		return;
	}
	s->ports = keep_array(d, ports->n, sizeof(*s->ports));
	if (!s->ports)
		return;
	for (uint32_t i = 0; i < ports->n; i++) {
		const struct node *m = ports->kids[i];
		struct sl_service_port *sp = &s->ports[s->n_ports];

		if (!want_map(d, m, PI(pp, i)))
			continue;
		svc_port(d, m, PI(pp, i), sp);
		s->n_ports++;
		if (ports->n > 1 && !sp->name)
			dec_err(d, m, PK(PI(pp, i), "name"), "required when a Service has more than one port");
		for (size_t j = 0; j + 1 < s->n_ports; j++) {
			const struct sl_service_port *o = &s->ports[j];

			if (sp->name && o->name && !strcmp(sp->name, o->name)) {
				dec_err(d, m, PK(PI(pp, i), "name"), "\"%s\" is used by another port too", sp->name);
				break;
			}
			if (sp->port && sp->port == o->port && sp->proto == o->proto) {
				dec_err(d, m, PK(PI(pp, i), "port"), "%u/%s is listed twice", sp->port,
					sp->proto == SL_IPPROTO_TCP ? "TCP" : sp->proto == SL_IPPROTO_UDP ? "UDP" : "SCTP");
				break;
			}
		}
	}
}

static void decode_service(struct dec *d, const struct node *obj)
{
	static const char *const types[] = { "ClusterIP", "NodePort", "LoadBalancer", "ExternalName" };
	static const char *const affinities[] = { "None", "ClientIP" };
	static const char *const policies[] = { "Cluster", "Local" };
	const struct path *ps = PK(NULL, "spec");
	struct sl_service s = { .affinity_timeout = 10800 };
	struct unit *u = d->p->u;
	const struct node *spec, *n;
	long v;

	decode_meta(d, obj, NAME_1035, true, NULL);
	spec = map_get(obj, "spec");
	if (!spec) {
		dec_err(d, obj, ps, "missing");
		return;
	}
	if (!want_map(d, spec, ps))
		return;
	v = get_enum(d, map_get(spec, "type"), PK(ps, "type"), types, 4, SL_SVC_CLUSTER_IP);
	s.type = v < 0 ? SL_SVC_CLUSTER_IP : (enum sl_svc_type)v;
	svc_cluster_ips(d, spec, ps, &s);
	svc_ports(d, spec, ps, &s);
	/* An empty selector selects nothing in Kubernetes (no endpoints are
	 * managed), though labels_match() would match everything with it. */
	if ((n = map_get(spec, "selector")) && decode_labels(d, n, PK(ps, "selector"), &s.selector))
		s.has_selector = s.selector.n > 0;
	s.affinity_client_ip = get_enum(d, map_get(spec, "sessionAffinity"), PK(ps, "sessionAffinity"),
					affinities, 2, 0) == 1;
	if ((n = map_get(spec, "sessionAffinityConfig"))) {
		const struct path *pc = PK(ps, "sessionAffinityConfig"), *pcc = PK(pc, "clientIP");
		const struct node *c, *t;

		if (want_map(d, n, pc) && (c = map_get(n, "clientIP")) && want_map(d, c, pcc) &&
		    (t = map_get(c, "timeoutSeconds")) &&
		    get_int(d, t, PK(pcc, "timeoutSeconds"), 1, 86400, &v))
			s.affinity_timeout = (uint32_t)v;
	}
	s.itp_local = get_enum(d, map_get(spec, "internalTrafficPolicy"),
			       PK(ps, "internalTrafficPolicy"), policies, 2, 0) == 1;
	if (!dec_ok(d))
		return;
	s.ns = keep_str(d, d->ns, true);
	s.name = keep_str(d, d->name, false);
	s.src = dec_src(d, obj);
	if (s.ns && s.name)
		RES_ADD(d, u->res.services, u->res.n_services, u->caps.services, s);
}

/* spec: node, service account, hostNetwork, and every container's ports. */
static void pod_spec(struct dec *d, const struct node *spec, struct sl_pod *pod)
{
	const struct path *ps = PK(NULL, "spec"), *pc = PK(ps, "containers");
	const struct node *n, *cs;
	const char *t;
	size_t total = 0;

	if (!want_map(d, spec, ps))
		return;
	if ((n = map_get(spec, "nodeName")) && (t = want_name(d, n, PK(ps, "nodeName"), NAME_SUBDOMAIN)))
		pod->node = keep_str(d, t, true);
	n = map_get(spec, "serviceAccountName");
	if (n && (t = want_name(d, n, PK(ps, "serviceAccountName"), NAME_SUBDOMAIN)))
		pod->service_account = keep_str(d, t, true);
	else if (!n && (n = map_get(spec, "serviceAccount")) &&	/* deprecated alias */
		 (t = want_name(d, n, PK(ps, "serviceAccount"), NAME_SUBDOMAIN)))
		pod->service_account = keep_str(d, t, true);
	if ((n = map_get(spec, "hostNetwork")))
		get_bool(d, n, PK(ps, "hostNetwork"), &pod->host_network);
	cs = map_get(spec, "containers");
	if (!cs || !want_seq(d, cs, pc))
		return;
	for (uint32_t i = 0; i < cs->n; i++) {
		const struct node *ports = map_get(cs->kids[i], "ports");

		if (ports && ports->type == NODE_SEQ)
			total += ports->n;
	}
	pod->ports = keep_array(d, total, sizeof(*pod->ports));
	if (total && !pod->ports)
		return;
	for (uint32_t i = 0; i < cs->n; i++) {
		const struct path *pci = PI(pc, i), *pp = PK(pci, "ports");
		const struct node *c = cs->kids[i], *ports;

		if (!want_map(d, c, pci) || !(ports = map_get(c, "ports")) || !want_seq(d, ports, pp))
			continue;
		for (uint32_t j = 0; j < ports->n; j++) {
			const struct path *pj = PI(pp, j);
			const struct node *m = ports->kids[j];
			struct sl_container_port *cp = &pod->ports[pod->n_ports];
			char b[96];
			long v;

			if (!want_map(d, m, pj))
				continue;
			if ((n = map_get(m, "name")) && (t = want_str(d, n, PK(pj, "name")))) {
				if (!valid_port_name(t, n->n))
					dec_err(d, n, PK(pj, "name"),
						"not a valid port name: %s (at most 15 lowercase letters, digits and '-', with a letter, no '--')",
						node_desc(b, sizeof(b), n));
				else
					cp->name = keep_str(d, t, true);
			}
			if (!(n = map_get(m, "containerPort")))
				dec_err(d, m, PK(pj, "containerPort"), "missing");
			else if (get_int(d, n, PK(pj, "containerPort"), 1, 65535, &v))
				cp->port = (uint16_t)v;
			get_proto(d, map_get(m, "protocol"), PK(pj, "protocol"), &cp->proto);
			pod->n_ports++;
		}
	}
}

/* status: podIPs (or podIP), and the Ready condition (ready when absent). */
static void pod_status(struct dec *d, const struct node *st, struct sl_pod *pod)
{
	static const char *const states[] = { "True", "False", "Unknown" };
	const struct path *ps = PK(NULL, "status"), *pips = PK(ps, "podIPs"), *pcs = PK(ps, "conditions");
	const struct node *ip, *ips, *cs;
	bool listed = false;
	struct sl_ip a;

	if (!want_map(d, st, ps))
		return;
	if ((ips = map_get(st, "podIPs")) && want_seq(d, ips, pips)) {
		listed = ips->n > 0;
		if (ips->n > 2)
			dec_err(d, ips, pips, "more than 2 addresses (at most one IPv4 and one IPv6)");
		for (uint32_t i = 0; i < ips->n && ips->n <= 2; i++) {
			const struct path *pi = PI(pips, i);
			const struct node *m = ips->kids[i], *n;

			if (!want_map(d, m, pi))
				continue;
			if (!(n = map_get(m, "ip")))
				dec_err(d, m, PK(pi, "ip"), "missing");
			else if (want_ip(d, n, PK(pi, "ip"), &a))
				add_ip(d, n, PK(pi, "ip"), pod->ips, &pod->n_ips, &a);
		}
	}
	if ((ip = map_get(st, "podIP")) && want_ip(d, ip, PK(ps, "podIP"), &a)) {
		if (!listed)
			add_ip(d, ip, PK(ps, "podIP"), pod->ips, &pod->n_ips, &a);
		else if (pod->n_ips && (a.family != pod->ips[0].family ||
					memcmp(&a.addr, &pod->ips[0].addr, sizeof(a.addr))))
			dec_err(d, ip, PK(ps, "podIP"), "%s differs from status.podIPs[0]", ip->s);
	}
	if (!(cs = map_get(st, "conditions")) || !want_seq(d, cs, pcs))
		return;
	for (uint32_t i = 0; i < cs->n; i++) {
		const struct path *pi = PI(pcs, i);
		const struct node *m = cs->kids[i], *t, *sn;
		int v;

		if (!want_map(d, m, pi) || !(t = map_get(m, "type")) || !want_str(d, t, PK(pi, "type")) ||
		    !SCALAR_IS(t, "Ready"))
			continue;
		if (!(sn = map_get(m, "status"))) {
			dec_err(d, m, PK(pi, "status"), "missing");
			continue;
		}
		v = get_enum(d, sn, PK(pi, "status"), states, 3, 0);
		if (v >= 0)
			pod->ready = v == 0;
	}
}

static void decode_pod(struct dec *d, const struct node *obj)
{
	struct sl_pod pod = { .ready = true };
	struct unit *u = d->p->u;
	const struct node *m, *n;

	m = decode_meta(d, obj, NAME_SUBDOMAIN, true, &pod.labels);
	pod.terminating = map_get(m, "deletionTimestamp") != NULL;
	if ((n = map_get(obj, "spec")))
		pod_spec(d, n, &pod);
	if ((n = map_get(obj, "status")))
		pod_status(d, n, &pod);
	if (!dec_ok(d))
		return;
	if (!pod.service_account)
		pod.service_account = keep_str(d, "default", true);
	pod.ns = keep_str(d, d->ns, true);
	pod.name = keep_str(d, d->name, false);
	pod.src = dec_src(d, obj);
	if (pod.ns && pod.name && pod.service_account)
		RES_ADD(d, u->res.pods, u->res.n_pods, u->caps.pods, pod);
}

/* One endpoints[] entry: 1-100 addresses of the slice's family, conditions
 * (serving defaults to ready), node, and the Pod it is, if targetRef says. */
static void slice_endpoint(struct dec *d, const struct node *m, const struct path *pe,
			   uint8_t family, struct sl_endpoint *ep)
{
	const struct path *pa = PK(pe, "addresses"), *pc = PK(pe, "conditions"), *pt = PK(pe, "targetRef");
	const struct node *addrs = map_get(m, "addresses"), *c, *n;
	const char *t;
	bool serving_set = false;

	ep->ready = true;
	if (!addrs) {
		dec_err(d, m, pa, "missing");
	} else if (want_seq(d, addrs, pa)) {
		if (!addrs->n || addrs->n > CFG_MAX_ADDRS)
			dec_err(d, addrs, pa, "expected 1 to %d addresses, got %u", CFG_MAX_ADDRS, addrs->n);
		else
			ep->addrs = keep_array(d, addrs->n, sizeof(*ep->addrs));
		for (uint32_t i = 0; ep->addrs && i < addrs->n; i++) {
			struct sl_ip *ip = &ep->addrs[ep->n_addrs];

			if (!want_ip(d, addrs->kids[i], PI(pa, i), ip))
				continue;
			if (ip->family != family)
				dec_err(d, addrs->kids[i], PI(pa, i), "%s is %s but addressType is %s",
					addrs->kids[i]->s, family_str(ip->family), family_str(family));
			else
				ep->n_addrs++;
		}
	}
	if ((c = map_get(m, "conditions")) && want_map(d, c, pc)) {
		if ((n = map_get(c, "ready")))
			get_bool(d, n, PK(pc, "ready"), &ep->ready);
		if ((n = map_get(c, "serving")))
			serving_set = get_bool(d, n, PK(pc, "serving"), &ep->serving);
		if ((n = map_get(c, "terminating")))
			get_bool(d, n, PK(pc, "terminating"), &ep->terminating);
	}
	if (!serving_set)
		ep->serving = ep->ready;
	if ((n = map_get(m, "nodeName")) && (t = want_name(d, n, PK(pe, "nodeName"), NAME_SUBDOMAIN)))
		ep->node = keep_str(d, t, true);
	if ((c = map_get(m, "targetRef")) && want_map(d, c, pt) && (n = map_get(c, "kind")) &&
	    (t = want_str(d, n, PK(pt, "kind"))) && !strcmp(t, "Pod") && (n = map_get(c, "name")) &&
	    (t = want_name(d, n, PK(pt, "name"), NAME_SUBDOMAIN)))
		ep->pod = keep_str(d, t, false);
}

static void decode_slice(struct dec *d, const struct node *obj)
{
	static const char *const types[] = { "IPv4", "IPv6", "FQDN" };
	const struct path *pp = PK(NULL, "ports"), *pe = PK(NULL, "endpoints");
	const struct path *pl = PK(PK(NULL, "metadata"), "labels");
	struct sl_endpoint_slice es = { 0 };
	struct unit *u = d->p->u;
	const struct node *m, *n, *ports, *eps;
	const char *svc = NULL;
	int at;

	m = decode_meta(d, obj, NAME_SUBDOMAIN, true, NULL);
	if ((n = map_get(m, "labels")) && decode_labels(d, n, pl, NULL)) {
		if (!(n = map_get(n, "kubernetes.io/service-name")))
			dec_err(d, m, pl, "missing kubernetes.io/service-name (the Service this slice belongs to)");
		else
			svc = want_name(d, n, PK(pl, "kubernetes.io/service-name"), NAME_1035);
	} else if (m && !n) {
		dec_err(d, m, pl, "missing kubernetes.io/service-name (the Service this slice belongs to)");
	}
	n = map_get(obj, "addressType");
	if (!n)
		dec_err(d, obj, PK(NULL, "addressType"), "missing");
	at = get_enum(d, n, PK(NULL, "addressType"), types, 3, -1);
	if (at == 2) {			/* FQDN: nothing for a socket load balancer */
		if (dec_ok(d)) {
			u->ignored[IGN_FQDN]++;
			u->res.n_ignored++;
		}
		return;
	}
	es.family = at == 1 ? SL_AF_INET6 : SL_AF_INET;
	if ((ports = map_get(obj, "ports")) && want_seq(d, ports, pp)) {
		if (ports->n > CFG_MAX_PORTS)
			dec_err(d, ports, pp, "more than %d ports", CFG_MAX_PORTS);
		else
			es.ports = keep_array(d, ports->n, sizeof(*es.ports));
		for (uint32_t i = 0; es.ports && i < ports->n; i++) {
			const struct path *pi = PI(pp, i);
			const struct node *pm = ports->kids[i];
			struct sl_slice_port *sp = &es.ports[es.n_ports];
			const char *t;
			long v;

			if (!want_map(d, pm, pi))
				continue;
			n = map_get(pm, "name");
			if (n && (t = want_str(d, n, PK(pi, "name"))) && *t) {
				if (want_name(d, n, PK(pi, "name"), NAME_LABEL))
					sp->name = keep_str(d, t, true);
			}
			if (!(n = map_get(pm, "port")))
				dec_err(d, pm, PK(pi, "port"), "missing");
			else if (get_int(d, n, PK(pi, "port"), 1, 65535, &v))
				sp->port = (uint16_t)v;
			get_proto(d, map_get(pm, "protocol"), PK(pi, "protocol"), &sp->proto);
			es.n_ports++;
		}
	}
	if ((eps = map_get(obj, "endpoints")) && want_seq(d, eps, pe)) {
		es.endpoints = keep_array(d, eps->n, sizeof(*es.endpoints));
		for (uint32_t i = 0; es.endpoints && i < eps->n; i++) {
			if (!want_map(d, eps->kids[i], PI(pe, i)))
				continue;
			slice_endpoint(d, eps->kids[i], PI(pe, i), es.family, &es.endpoints[es.n_endpoints++]);
		}
	}
	if (!dec_ok(d) || at < 0 || !svc)	/* (each reported above) */
		return;
	es.ns = keep_str(d, d->ns, true);
	es.name = keep_str(d, d->name, false);
	es.service = keep_str(d, svc, true);
	es.src = dec_src(d, obj);
	if (es.ns && es.name && es.service)
		RES_ADD(d, u->res.slices, u->res.n_slices, u->caps.slices, es);
}

/* ---- NetworkPolicy (networking.k8s.io/v1), validated as the API server does ---- */

#define CFG_MAX_NP_ITEMS	1024	/* rules, peers, ports, expressions, values per list */

static bool want_len(struct dec *d, const struct node *n, const struct path *pa, bool nonempty)
{
	if (!want_seq(d, n, pa))
		return false;
	if (n->n > CFG_MAX_NP_ITEMS) {
		dec_err(d, n, pa, "more than %d entries", CFG_MAX_NP_ITEMS);
		return false;
	}
	if (nonempty && !n->n) {
		dec_err(d, n, pa, "must not be empty");
		return false;
	}
	return true;
}

/* A metav1.LabelSelector: matchLabels and matchExpressions. */
static void decode_selector(struct dec *d, const struct node *m, const struct path *pa,
			    struct sl_selector *out)
{
	static const char *const ops[] = { "In", "NotIn", "Exists", "DoesNotExist" };
	const struct path *pe = PK(pa, "matchExpressions");
	const struct node *n, *ex;
	char b[96];

	if (!want_map(d, m, pa))
		return;
	for (uint32_t i = 0; i < m->n; i++) {
		const char *k = scalar_str(m->kids[2 * i]);

		if (k && strcmp(k, "matchLabels") && strcmp(k, "matchExpressions"))
			dec_err(d, m->kids[2 * i], pa, "unknown field %s (a selector has matchLabels and matchExpressions)",
				node_desc(b, sizeof(b), m->kids[2 * i]));
	}
	if ((n = map_get(m, "matchLabels")) && !node_null(n))
		decode_labels(d, n, PK(pa, "matchLabels"), &out->match);
	if (!(ex = map_get(m, "matchExpressions")) || node_null(ex) || !want_len(d, ex, pe, false))
		return;
	out->exprs = keep_array(d, ex->n, sizeof(*out->exprs));
	for (uint32_t i = 0; out->exprs && i < ex->n; i++) {
		const struct path *pi = PI(pe, i);
		const struct node *e = ex->kids[i], *vals;
		struct sl_sel_expr *x = &out->exprs[out->n_exprs];
		const char *kname;
		int op;

		if (!want_map(d, e, pi))
			continue;
		if (!(n = map_get(e, "key"))) {
			dec_err(d, e, PK(pi, "key"), "missing");
			continue;
		}
		kname = want_str(d, n, PK(pi, "key"));
		if (!kname)
			continue;
		if (!valid_label_key(kname, n->n)) {
			dec_err(d, n, PK(pi, "key"), "not a valid label key: %s", node_desc(b, sizeof(b), n));
			continue;
		}
		if (!(n = map_get(e, "operator"))) {
			dec_err(d, e, PK(pi, "operator"), "missing");
			continue;
		}
		op = get_enum(d, n, PK(pi, "operator"), ops, 4, -1);
		if (op < 0)
			continue;
		vals = map_get(e, "values");
		if (vals && node_null(vals))
			vals = NULL;
		if (op <= SL_SEL_NOT_IN && (!vals || !want_len(d, vals, PK(pi, "values"), true))) {
			if (!vals)
				dec_err(d, e, PK(pi, "values"), "%s needs at least one value", ops[op]);
			continue;
		}
		if (op > SL_SEL_NOT_IN && vals && (vals->type != NODE_SEQ || vals->n)) {
			dec_err(d, vals, PK(pi, "values"), "%s takes no values", ops[op]);
			continue;
		}
		x->key = keep_str(d, kname, true);
		x->op = (enum sl_sel_op)op;
		if (op <= SL_SEL_NOT_IN) {
			x->values = keep_array(d, vals->n, sizeof(*x->values));
			for (uint32_t j = 0; x->values && j < vals->n; j++) {
				const char *v = want_str(d, vals->kids[j], PI(PK(pi, "values"), j));

				if (!v)
					continue;
				if (vals->kids[j]->n && !valid_label_name(v, vals->kids[j]->n)) {
					dec_err(d, vals->kids[j], PI(PK(pi, "values"), j),
						"not a valid label value: %s", node_desc(b, sizeof(b), vals->kids[j]));
					continue;
				}
				x->values[x->n_values++] = keep_str(d, v, true);
			}
		}
		out->n_exprs++;
	}
}

/* "10.0.0.0/8" or "fd00::/64" into *c, host bits cleared (the API server
 * takes 10.1.2.3/8 as 10.0.0.0/8 too). */
static bool want_cidr(struct dec *d, const struct node *n, const struct path *pa, struct sl_cidr *c)
{
	const char *s = want_str(d, n, pa);
	char addr[INET6_ADDRSTRLEN + 1], b[96];
	const char *slash;
	long len = -1;
	char *end;
	size_t alen;

	if (!s)
		return false;
	slash = strchr(s, '/');
	alen = slash ? (size_t)(slash - s) : 0;
	if (slash && alen < sizeof(addr) && slash[1] >= '0' && slash[1] <= '9' && strlen(slash + 1) <= 3) {
		memcpy(addr, s, alen);
		addr[alen] = '\0';
		len = strtol(slash + 1, &end, 10);
		if (*end || ip_parse(addr, &c->ip))
			len = -1;
	}
	if (len < 0 || len > (c->ip.family == SL_AF_INET ? 32 : 128)) {
		dec_err(d, n, pa, "not a CIDR: %s (want address/prefix-length)", node_desc(b, sizeof(b), n));
		return false;
	}
	c->len = (uint8_t)len;
	for (int i = 0; i < 16; i++) {
		int keep = (int)len - 8 * i;

		if (keep <= 0)
			c->ip.addr.octets[i] = 0;
		else if (keep < 8)
			c->ip.addr.octets[i] &= (uint8_t)(0xff << (8 - keep));
	}
	return true;
}

static void decode_np_peer(struct dec *d, const struct node *m, const struct path *pa, struct sl_np_peer *p)
{
	const struct path *pb = PK(pa, "ipBlock");
	const struct node *ib = map_get(m, "ipBlock"), *ps = map_get(m, "podSelector"),
			  *ns = map_get(m, "namespaceSelector"), *n;
	char b1[64], b2[64];

	if (ib && node_null(ib))
		ib = NULL;
	if (ps && node_null(ps))
		ps = NULL;
	if (ns && node_null(ns))
		ns = NULL;
	if (!ib && !ps && !ns) {
		dec_err(d, m, pa, "needs one of ipBlock, podSelector, namespaceSelector");
		return;
	}
	if (ib && (ps || ns)) {
		dec_err(d, m, pa, "ipBlock cannot be combined with podSelector or namespaceSelector");
		return;
	}
	if (ps) {
		p->has_pod_sel = true;
		decode_selector(d, ps, PK(pa, "podSelector"), &p->pod_sel);
	}
	if (ns) {
		p->has_ns_sel = true;
		decode_selector(d, ns, PK(pa, "namespaceSelector"), &p->ns_sel);
	}
	if (!ib || !want_map(d, ib, pb))
		return;
	p->ip_block = true;
	if (!(n = map_get(ib, "cidr"))) {
		dec_err(d, ib, PK(pb, "cidr"), "missing");
		return;
	}
	if (!want_cidr(d, n, PK(pb, "cidr"), &p->cidr))
		return;
	if (!(n = map_get(ib, "except")) || node_null(n) || !want_len(d, n, PK(pb, "except"), false))
		return;
	p->except = keep_array(d, n->n, sizeof(*p->except));
	for (uint32_t i = 0; p->except && i < n->n; i++) {
		struct sl_cidr *x = &p->except[p->n_except];
		const struct path *pi = PI(PK(pb, "except"), i);

		if (!want_cidr(d, n->kids[i], pi, x))
			continue;
		if (x->ip.family != p->cidr.ip.family || x->len <= p->cidr.len || !cidr_contains(&p->cidr, &x->ip)) {
			dec_err(d, n->kids[i], pi, "%s/%u is not a strict subset of cidr %s/%u",
				sl_ip_str(&x->ip, b1), x->len, sl_ip_str(&p->cidr.ip, b2), p->cidr.len);
			continue;
		}
		p->n_except++;
	}
}

static void decode_np_port(struct dec *d, const struct node *m, const struct path *pa, struct sl_np_port *p)
{
	const struct node *n = map_get(m, "port"), *e = map_get(m, "endPort");
	char b[96];
	long v;

	get_proto(d, map_get(m, "protocol"), PK(pa, "protocol"), &p->proto);
	if (n && !node_null(n)) {
		if (n->type == NODE_SCALAR && plain_kind(n) == PK_INT) {
			if (get_int(d, n, PK(pa, "port"), 1, 65535, &v))
				p->port = (uint16_t)v;
		} else {
			const char *s = want_str(d, n, PK(pa, "port"));

			if (s && !valid_port_name(s, n->n))
				dec_err(d, n, PK(pa, "port"), "not a port number or name: %s (a name is at most 15 lowercase letters, digits and '-')",
					node_desc(b, sizeof(b), n));
			else if (s)
				p->name = keep_str(d, s, true);
		}
	}
	if (!e || node_null(e))
		return;
	if (!p->port) {
		dec_err(d, e, PK(pa, "endPort"), "needs a numeric port");
		return;
	}
	if (get_int(d, e, PK(pa, "endPort"), p->port, 65535, &v))
		p->end_port = (uint16_t)v;
}

/* ingress[] or egress[]: from/to peers and ports. */
static void decode_np_rules(struct dec *d, const struct node *seq, const struct path *pa, const char *peers_key,
			    struct sl_np_rule **out, size_t *n_out)
{
	if (!want_len(d, seq, pa, false))
		return;
	*out = keep_array(d, seq->n, sizeof(**out));
	for (uint32_t i = 0; *out && i < seq->n; i++) {
		const struct path *pi = PI(pa, i);
		const struct node *m = seq->kids[i], *n;
		struct sl_np_rule *r = &(*out)[(*n_out)++];

		if (node_null(m))
			continue;	/* "- {}" written as "-": every peer, every port */
		if (!want_map(d, m, pi))
			continue;
		if ((n = map_get(m, peers_key)) && !node_null(n) && want_len(d, n, PK(pi, peers_key), false)) {
			r->peers = keep_array(d, n->n, sizeof(*r->peers));
			for (uint32_t j = 0; r->peers && j < n->n; j++)
				if (want_map(d, n->kids[j], PI(PK(pi, peers_key), j)))
					decode_np_peer(d, n->kids[j], PI(PK(pi, peers_key), j), &r->peers[r->n_peers++]);
		}
		if ((n = map_get(m, "ports")) && !node_null(n) && want_len(d, n, PK(pi, "ports"), false)) {
			r->ports = keep_array(d, n->n, sizeof(*r->ports));
			for (uint32_t j = 0; r->ports && j < n->n; j++)
				if (want_map(d, n->kids[j], PI(PK(pi, "ports"), j)))
					decode_np_port(d, n->kids[j], PI(PK(pi, "ports"), j), &r->ports[r->n_ports++]);
		}
	}
}

static void decode_netpol(struct dec *d, const struct node *obj)
{
	static const char *const types[] = { "Ingress", "Egress" };
	const struct path *ps = PK(NULL, "spec");
	struct sl_netpol np = { 0 };
	struct unit *u = d->p->u;
	const struct node *spec, *n, *eg;
	bool typed = false;

	decode_meta(d, obj, NAME_SUBDOMAIN, true, NULL);
	spec = map_get(obj, "spec");
	if (!spec) {
		dec_err(d, obj, ps, "missing");
		return;
	}
	if (!want_map(d, spec, ps))
		return;
	if (!(n = map_get(spec, "podSelector")))
		dec_err(d, spec, PK(ps, "podSelector"), "missing ({} selects every pod of the namespace)");
	else if (!node_null(n))
		decode_selector(d, n, PK(ps, "podSelector"), &np.pod_sel);
	if ((n = map_get(spec, "ingress")) && !node_null(n))
		decode_np_rules(d, n, PK(ps, "ingress"), "from", &np.ingress, &np.n_ingress);
	if ((eg = map_get(spec, "egress")) && !node_null(eg))
		decode_np_rules(d, eg, PK(ps, "egress"), "to", &np.egress, &np.n_egress);
	if ((n = map_get(spec, "policyTypes")) && !node_null(n) && want_len(d, n, PK(ps, "policyTypes"), false)) {
		for (uint32_t i = 0; i < n->n; i++) {
			int t = get_enum(d, n->kids[i], PI(PK(ps, "policyTypes"), i), types, 2, -1);

			typed = true;
			if (t == 0)
				np.type_ingress = true;
			else if (t == 1)
				np.type_egress = true;
		}
	}
	if (!typed) {
		/* The API server's default: Ingress, and Egress when there are egress rules. */
		np.type_ingress = true;
		np.type_egress = np.n_egress > 0;
	}
	if (!dec_ok(d))
		return;
	np.ns = keep_str(d, d->ns, true);
	np.name = keep_str(d, d->name, false);
	np.src = dec_src(d, obj);
	if (np.ns && np.name)
		RES_ADD(d, u->res.netpols, u->res.n_netpols, u->caps.netpols, np);
}

/* ---- AuthorizationPolicy and PeerAuthentication (security.istio.io) ---- */

/* A list of strings (principals, namespaces, values...); NULL or absent: none. */
static void decode_strs(struct dec *d, const struct node *n, const struct path *pa, struct sl_strs *out)
{
	if (!n || node_null(n) || !want_len(d, n, pa, false))
		return;
	out->v = keep_array(d, n->n, sizeof(*out->v));
	for (uint32_t i = 0; out->v && i < n->n; i++) {
		const char *s = want_str(d, n->kids[i], PI(pa, i));

		if (s && !*s)
			dec_err(d, n->kids[i], PI(pa, i), "must not be empty");
		else if (s)
			out->v[out->n++] = keep_str(d, s, true);
	}
}

/* ipBlocks: "10.0.0.0/8" or a plain address (a /32 or /128), as Istio takes them. */
static void decode_cidrs(struct dec *d, const struct node *n, const struct path *pa, struct sl_cidrs *out)
{
	if (!n || node_null(n) || !want_len(d, n, pa, false))
		return;
	out->v = keep_array(d, n->n, sizeof(*out->v));
	for (uint32_t i = 0; out->v && i < n->n; i++) {
		const struct node *k = n->kids[i];
		struct sl_cidr *c = &out->v[out->n];
		const char *s = k->type == NODE_SCALAR ? k->s : NULL;

		if (s && !strchr(s, '/') && !ip_parse(s, &c->ip)) {
			c->len = c->ip.family == SL_AF_INET ? 32 : 128;
			out->n++;
		} else if (want_cidr(d, k, PI(pa, i), c)) {
			out->n++;
		}
	}
}

/* Ports as strings or numbers ("8080" in Istio's API). */
static void decode_port_list(struct dec *d, const struct node *n, const struct path *pa, uint16_t **out,
			     size_t *n_out)
{
	if (!n || node_null(n) || !want_len(d, n, pa, false))
		return;
	*out = keep_array(d, n->n, sizeof(**out));
	for (uint32_t i = 0; *out && i < n->n; i++) {
		const struct node *k = n->kids[i];
		const char *s = want_text(d, k, PI(pa, i), "a port");
		char *end;
		long v;

		if (!s)
			continue;
		v = strtol(s, &end, 10);
		if (*end || v < 1 || v > 65535 || !*s) {
			dec_err(d, k, PI(pa, i), "not a port (1 to 65535): %s", s);
			continue;
		}
		(*out)[(*n_out)++] = (uint16_t)v;
	}
}

static bool has_any(const struct node *m, const char *const *keys)
{
	for (; *keys; keys++) {
		const struct node *n = map_get(m, *keys);

		if (n && !node_null(n))
			return true;
	}
	return false;
}

/* Istio's path templates: a path holding {*} or {**} is one, and then every
 * segment with '*', '{' or '}' must be exactly {*} (one segment) or {**} (any
 * number of them), and {**} must be the last operator. */
static bool authz_path_template_ok(const char *p)
{
	bool any = false;

	if (!strstr(p, "{*}") && !strstr(p, "{**}"))
		return true;
	for (const char *seg = p; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL) {
		size_t n = strcspn(seg, "/");
		bool one = n == 3 && !strncmp(seg, "{*}", 3), many = n == 4 && !strncmp(seg, "{**}", 4);

		if (one || many) {
			if (any)
				return false;	/* an operator after {**} */
			any = many;
		} else if (memchr(seg, '*', n) || memchr(seg, '{', n) || memchr(seg, '}', n)) {
			return false;
		}
	}
	return true;
}

static void decode_authz_paths(struct dec *d, const struct node *n, const struct path *pa, struct sl_strs *out)
{
	decode_strs(d, n, pa, out);
	for (size_t i = 0; n && out->n == n->n && i < out->n; i++)	/* else: errors already */
		if (!authz_path_template_ok(out->v[i]))
			dec_err(d, n->kids[i], PI(pa, (uint32_t)i),
				"not a valid path template: {*} and {**} must each be a whole segment, with no other "
				"'*', '{' or '}', and {**} the last of them: %s",
				out->v[i]);
}

static void decode_authz_rule(struct dec *d, const struct node *m, const struct path *pa, struct sl_authz_rule *r)
{
	static const char *const src_l7[] = { "requestPrincipals", "notRequestPrincipals", NULL };
	static const char *const op_l7[] = { "hosts", "notHosts", "methods", "notMethods", "paths", "notPaths", NULL };
	static const char *const l4_keys[] = { "source.ip", "remote.ip", "source.namespace", "source.principal",
					       "destination.ip", "destination.port", NULL };
	const struct path *pf = PK(pa, "from"), *pt = PK(pa, "to"), *pw = PK(pa, "when");
	const struct node *n;

	if (node_null(m) || !want_map(d, m, pa))
		return;
	if ((n = map_get(m, "from")) && !node_null(n) && want_len(d, n, pf, false)) {
		r->from = keep_array(d, n->n, sizeof(*r->from));
		for (uint32_t i = 0; r->from && i < n->n; i++) {
			const struct path *pi = PI(pf, i), *ps = PK(pi, "source");
			const struct node *e = n->kids[i], *src;
			struct sl_authz_source *f = &r->from[r->n_from];

			if (!want_map(d, e, pi))
				continue;
			if (!(src = map_get(e, "source")) || !want_map(d, src, ps)) {
				if (!src)
					dec_err(d, e, ps, "missing");
				continue;
			}
			decode_strs(d, map_get(src, "principals"), PK(ps, "principals"), &f->principals);
			decode_strs(d, map_get(src, "notPrincipals"), PK(ps, "notPrincipals"), &f->not_principals);
			decode_strs(d, map_get(src, "namespaces"), PK(ps, "namespaces"), &f->namespaces);
			decode_strs(d, map_get(src, "notNamespaces"), PK(ps, "notNamespaces"), &f->not_namespaces);
			decode_cidrs(d, map_get(src, "ipBlocks"), PK(ps, "ipBlocks"), &f->ip_blocks);
			decode_cidrs(d, map_get(src, "notIpBlocks"), PK(ps, "notIpBlocks"), &f->not_ip_blocks);
			decode_cidrs(d, map_get(src, "remoteIpBlocks"), PK(ps, "remoteIpBlocks"), &f->remote_ip_blocks);
			decode_cidrs(d, map_get(src, "notRemoteIpBlocks"), PK(ps, "notRemoteIpBlocks"),
				     &f->not_remote_ip_blocks);
			decode_strs(d, map_get(src, "requestPrincipals"), PK(ps, "requestPrincipals"),
				    &f->request_principals);
			decode_strs(d, map_get(src, "notRequestPrincipals"), PK(ps, "notRequestPrincipals"),
				    &f->not_request_principals);
			f->l7 = has_any(src, src_l7);
			r->l7 |= f->l7;
			r->n_from++;
		}
	}
	if ((n = map_get(m, "to")) && !node_null(n) && want_len(d, n, pt, false)) {
		r->to = keep_array(d, n->n, sizeof(*r->to));
		for (uint32_t i = 0; r->to && i < n->n; i++) {
			const struct path *pi = PI(pt, i), *po = PK(pi, "operation");
			const struct node *e = n->kids[i], *op;
			struct sl_authz_operation *o = &r->to[r->n_to];

			if (!want_map(d, e, pi))
				continue;
			if (!(op = map_get(e, "operation")) || !want_map(d, op, po)) {
				if (!op)
					dec_err(d, e, po, "missing");
				continue;
			}
			decode_port_list(d, map_get(op, "ports"), PK(po, "ports"), &o->ports, &o->n_ports);
			decode_port_list(d, map_get(op, "notPorts"), PK(po, "notPorts"), &o->not_ports, &o->n_not_ports);
			decode_strs(d, map_get(op, "hosts"), PK(po, "hosts"), &o->hosts);
			decode_strs(d, map_get(op, "notHosts"), PK(po, "notHosts"), &o->not_hosts);
			decode_strs(d, map_get(op, "methods"), PK(po, "methods"), &o->methods);
			decode_strs(d, map_get(op, "notMethods"), PK(po, "notMethods"), &o->not_methods);
			decode_authz_paths(d, map_get(op, "paths"), PK(po, "paths"), &o->paths);
			decode_authz_paths(d, map_get(op, "notPaths"), PK(po, "notPaths"), &o->not_paths);
			o->l7 = has_any(op, op_l7);
			r->l7 |= o->l7;
			r->n_to++;
		}
	}
	if ((n = map_get(m, "when")) && !node_null(n) && want_len(d, n, pw, false)) {
		r->when = keep_array(d, n->n, sizeof(*r->when));
		for (uint32_t i = 0; r->when && i < n->n; i++) {
			const struct path *pi = PI(pw, i);
			const struct node *e = n->kids[i], *k;
			struct sl_authz_cond *c = &r->when[r->n_when];
			const char *kname;
			bool l4 = false;

			if (!want_map(d, e, pi))
				continue;
			if (!(k = map_get(e, "key"))) {
				dec_err(d, e, PK(pi, "key"), "missing");
				continue;
			}
			if (!(kname = want_str(d, k, PK(pi, "key"))))
				continue;
			decode_strs(d, map_get(e, "values"), PK(pi, "values"), &c->values);
			decode_strs(d, map_get(e, "notValues"), PK(pi, "notValues"), &c->not_values);
			if (!c->values.n && !c->not_values.n)
				dec_err(d, e, pi, "needs values or notValues");
			c->key = keep_str(d, kname, true);
			if (!strncmp(kname, "request.headers", 15)) {
				size_t kl = strlen(kname);

				if (kname[15] != '[' || kl < 18 || kname[kl - 1] != ']' || memchr(kname + 16, '[', kl - 17) ||
				    memchr(kname + 16, ']', kl - 17))
					dec_err(d, k, PK(pi, "key"), "expected request.headers[<header name>], got %s", kname);
				else if (!(c->header = store_intern(d->p->st, kname + 16, kl - 17)))
					p_oom(d->p, 0);
			}
			for (const char *const *l = l4_keys; *l; l++)
				l4 |= !strcmp(*l, kname);
			r->l7 |= !l4;
			r->n_when++;
		}
	}
}

/* selector: {matchLabels: {...}} (Istio's WorkloadSelector). */
static void decode_workload_selector(struct dec *d, const struct node *n, const struct path *pa, bool *has,
				     struct sl_labels *out)
{
	const struct node *ml;

	if (!n || node_null(n) || !want_map(d, n, pa))
		return;
	*has = true;
	if ((ml = map_get(n, "matchLabels")) && !node_null(ml))
		decode_labels(d, ml, PK(pa, "matchLabels"), out);
}

static void decode_target_ref(struct dec *d, const struct node *m, const struct path *pa, struct sl_target_ref *t)
{
	const struct node *k, *n, *g;
	const char *ks, *ns, *gs;

	if (!want_map(d, m, pa))
		return;
	if (!(k = map_get(m, "kind")) || !(n = map_get(m, "name"))) {
		dec_err(d, m, pa, "needs kind and name");
		return;
	}
	ks = want_str(d, k, PK(pa, "kind"));
	ns = want_name(d, n, PK(pa, "name"), NAME_SUBDOMAIN);
	if ((g = map_get(m, "group")) && !node_null(g) && (gs = want_str(d, g, PK(pa, "group"))))
		t->group = keep_str(d, gs, true);
	if (ks && ns) {
		t->kind = keep_str(d, ks, true);
		t->name = keep_str(d, ns, true);
	}
}

static void decode_authz(struct dec *d, const struct node *obj)
{
	static const char *const actions[] = { "ALLOW", "DENY", "AUDIT", "CUSTOM" };
	const struct path *ps = PK(NULL, "spec");
	struct sl_authz a = { 0 };
	struct unit *u = d->p->u;
	const struct node *spec, *n;
	int act;

	decode_meta(d, obj, NAME_SUBDOMAIN, true, NULL);
	spec = map_get(obj, "spec");
	if (spec && !node_null(spec) && want_map(d, spec, ps)) {
		decode_workload_selector(d, map_get(spec, "selector"), PK(ps, "selector"), &a.has_selector, &a.selector);
		if ((n = map_get(spec, "targetRef")) && !node_null(n)) {
			a.targets = keep_array(d, 1, sizeof(*a.targets));
			if (a.targets)
				decode_target_ref(d, n, PK(ps, "targetRef"), &a.targets[a.n_targets++]);
		} else if ((n = map_get(spec, "targetRefs")) && !node_null(n) && want_len(d, n, PK(ps, "targetRefs"), false)) {
			a.targets = keep_array(d, n->n, sizeof(*a.targets));
			for (uint32_t i = 0; a.targets && i < n->n; i++)
				decode_target_ref(d, n->kids[i], PI(PK(ps, "targetRefs"), i), &a.targets[a.n_targets++]);
		}
		if (a.has_selector && a.n_targets)
			dec_err(d, spec, ps, "selector and targetRefs cannot both be set");
		act = get_enum(d, map_get(spec, "action"), PK(ps, "action"), actions, 4, SL_AUTHZ_ALLOW);
		a.action = act < 0 ? SL_AUTHZ_ALLOW : (enum sl_authz_action)act;
		if ((n = map_get(spec, "rules")) && !node_null(n) && want_len(d, n, PK(ps, "rules"), false)) {
			a.rules = keep_array(d, n->n, sizeof(*a.rules));
			for (uint32_t i = 0; a.rules && i < n->n; i++)
				decode_authz_rule(d, n->kids[i], PI(PK(ps, "rules"), i), &a.rules[a.n_rules++]);
		}
	}
	if (!dec_ok(d))
		return;
	a.ns = keep_str(d, d->ns, true);
	a.name = keep_str(d, d->name, false);
	a.src = dec_src(d, obj);
	if (a.ns && a.name)
		RES_ADD(d, u->res.authzs, u->res.n_authzs, u->caps.authzs, a);
}

static void decode_peerauthn(struct dec *d, const struct node *obj)
{
	static const char *const modes[] = { "UNSET", "PERMISSIVE", "STRICT", "DISABLE" };
	const struct path *ps = PK(NULL, "spec"), *pp = PK(ps, "portLevelMtls");
	struct sl_peerauthn pa = { 0 };
	struct unit *u = d->p->u;
	const struct node *spec, *n, *m;
	int mode;

	decode_meta(d, obj, NAME_SUBDOMAIN, true, NULL);
	spec = map_get(obj, "spec");
	if (spec && !node_null(spec) && want_map(d, spec, ps)) {
		decode_workload_selector(d, map_get(spec, "selector"), PK(ps, "selector"), &pa.has_selector,
					 &pa.selector);
		if ((m = map_get(spec, "mtls")) && !node_null(m) && want_map(d, m, PK(ps, "mtls"))) {
			mode = get_enum(d, map_get(m, "mode"), PK(PK(ps, "mtls"), "mode"), modes, 4, SL_MTLS_UNSET);
			pa.mode = mode < 0 ? SL_MTLS_UNSET : (enum sl_mtls_mode)mode;
		}
		if ((n = map_get(spec, "portLevelMtls")) && !node_null(n) && want_map(d, n, pp)) {
			if (!pa.has_selector)
				dec_err(d, n, pp, "needs a selector (port-level mTLS applies to workloads)");
			pa.ports = keep_array(d, n->n, sizeof(*pa.ports));
			for (uint32_t i = 0; pa.ports && i < n->n; i++) {
				const struct node *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
				const char *ks = scalar_str(k);
				char *end;
				long port = ks ? strtol(ks, &end, 10) : 0;

				if (!ks || *end || port < 1 || port > 65535) {
					dec_err(d, k, pp, "not a port (1 to 65535): %s", ks ? ks : "?");
					continue;
				}
				if (!want_map(d, v, PK(pp, ks)))
					continue;
				mode = get_enum(d, map_get(v, "mode"), PK(PK(pp, ks), "mode"), modes, 4, SL_MTLS_UNSET);
				pa.ports[pa.n_ports].port = (uint16_t)port;
				pa.ports[pa.n_ports++].mode = mode < 0 ? SL_MTLS_UNSET : (enum sl_mtls_mode)mode;
			}
		}
	}
	if (!dec_ok(d))
		return;
	pa.ns = keep_str(d, d->ns, true);
	pa.name = keep_str(d, d->name, false);
	pa.src = dec_src(d, obj);
	if (pa.ns && pa.name)
		RES_ADD(d, u->res.peerauthns, u->res.n_peerauthns, u->caps.peerauthns, pa);
}

/* ---- Gateway API (gateway.networking.k8s.io) and TLS Secrets ----------------
 * Defaults are the CRDs' (what the API server would have stored); references
 * are kept as written, resolution is route.c's. */

#define GW_GROUP	"gateway.networking.k8s.io"

/* A required, non-empty string m.key; NULL after an error. */
static const char *req_str(struct dec *d, const struct node *m, const char *key, const struct path *pa)
{
	const struct node *n = map_get(m, key);
	const char *s;

	if (!n) {
		dec_err(d, m, PK(pa, key), "missing");
		return NULL;
	}
	s = want_str(d, n, PK(pa, key));
	if (s && !*s) {
		dec_err(d, n, PK(pa, key), "must not be empty");
		return NULL;
	}
	return s;
}

/* An optional string m.key into *out (interned); absent or null keeps *out. */
static void opt_str(struct dec *d, const struct node *m, const char *key, const struct path *pa, char **out)
{
	const struct node *n = map_get(m, key);
	const char *s;

	if (n && (s = want_str(d, n, PK(pa, key))))
		*out = keep_str(d, s, true);
}

/* A required API group: "" is the core group, so only absence is an error. */
static const char *req_group(struct dec *d, const struct node *m, const struct path *pa)
{
	const struct node *n = map_get(m, "group");

	if (!n) {
		dec_err(d, m, PK(pa, "group"), "missing (\"\" for the core group)");
		return NULL;
	}
	return want_str(d, n, PK(pa, "group"));
}

static void opt_ns(struct dec *d, const struct node *m, const struct path *pa, char **out)
{
	const struct node *n = map_get(m, "namespace");
	const char *s;

	if (n && (s = want_name(d, n, PK(pa, "namespace"), NAME_LABEL)))
		*out = keep_str(d, s, true);
}

static void opt_port(struct dec *d, const struct node *m, const struct path *pa, uint16_t *out)
{
	const struct node *n = map_get(m, "port");
	long v;

	if (n && get_int(d, n, PK(pa, "port"), 1, 65535, &v))
		*out = (uint16_t)v;
}

/* A listener name, rule name or sectionName (SectionName: a DNS subdomain). */
static void opt_section(struct dec *d, const struct node *m, const char *key, const struct path *pa, char **out)
{
	const struct node *n = map_get(m, key);
	const char *s;

	if (n && (s = want_name(d, n, PK(pa, key), NAME_SUBDOMAIN)))
		*out = keep_str(d, s, true);
}

/* A Gateway API Hostname: a lowercase DNS name, after "*." when wildcard. */
static const char *want_hostname(struct dec *d, const struct node *n, const struct path *pa, bool wildcard)
{
	const char *s = want_str(d, n, pa);
	size_t skip;
	char b[96];

	if (!s)
		return NULL;
	skip = wildcard && n->n > 2 && s[0] == '*' && s[1] == '.' ? 2 : 0;
	if (!valid_subdomain(s + skip, n->n - skip)) {
		dec_err(d, n, pa, "not a valid hostname: %s (lowercase letters, digits, '-' and '.'%s)",
			node_desc(b, sizeof(b), n), wildcard ? ", optionally after \"*.\"" : "");
		return NULL;
	}
	return s;
}

/* An HTTP header or query parameter name: an RFC 7230 token, 1 to 256 characters. */
static const char *want_header_name(struct dec *d, const struct node *n, const struct path *pa)
{
	const char *s = want_str(d, n, pa);
	bool ok;
	char b[96];

	if (!s)
		return NULL;
	ok = n->n >= 1 && n->n <= 256;
	for (size_t i = 0; ok && i < n->n; i++)
		ok = is_alnum(s[i]) || (s[i] && strchr("!#$%&'*+-.^_`|~", s[i]));
	if (!ok) {
		dec_err(d, n, pa, "not a valid header name: %s (1 to 256 letters, digits and !#$%%&'*+-.^_`|~)",
			node_desc(b, sizeof(b), n));
		return NULL;
	}
	return s;
}

static const char *req_header_name(struct dec *d, const struct node *m, const struct path *pa)
{
	const struct node *n = map_get(m, "name");

	if (!n) {
		dec_err(d, m, PK(pa, "name"), "missing");
		return NULL;
	}
	return want_header_name(d, n, PK(pa, "name"));
}

/* A Gateway API Duration (GEP-2257: one to four parts of 1-5 digits and a
 * unit h, m, s or ms, in any order, as Go's time.ParseDuration reads them:
 * "10s", "500ms", "1h30m", "0s") in milliseconds; false after an error. */
static bool get_duration(struct dec *d, const struct node *n, const struct path *pa, uint32_t *ms)
{
	const char *s = want_str(d, n, pa), *c;
	uint64_t total = 0;
	int parts = 0;
	char b[96];

	if (!s)
		return false;
	for (c = s; *c; parts++) {
		uint64_t v = 0, unit;
		size_t digits = 0;

		for (; *c >= '0' && *c <= '9' && digits <= 5; c++, digits++)
			v = v * 10 + (uint64_t)(*c - '0');
		if (!digits || digits > 5 || parts == 4)
			goto bad;
		if (c[0] == 'm' && c[1] == 's') {
			unit = 1;
			c += 2;
		} else if (*c == 'h' || *c == 'm' || *c == 's') {
			unit = *c == 'h' ? 3600000 : *c == 'm' ? 60000 : 1000;
			c++;
		} else {
			goto bad;
		}
		total += v * unit;
	}
	if (!parts)
		goto bad;
	if (total > UINT32_MAX) {	/* 4 x 99999h fits no uint32_t of ms */
		dec_err(d, n, pa, "duration %s is too long (at most 1193h)", node_desc(b, sizeof(b), n));
		return false;
	}
	*ms = (uint32_t)total;
	return true;
bad:
	dec_err(d, n, pa, "not a duration: %s (1 to 4 parts of up to 5 digits and a unit h, m, s or ms, like 10s, 500ms, 1h30m)",
		node_desc(b, sizeof(b), n));
	return false;
}

static const char *const http_methods[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT",
					    "OPTIONS", "TRACE", "PATCH", "*" };
#define N_HTTP_METHODS	9		/* without "*" (CORS only) */

/* headers[] or queryParams[] of a match: {type Exact|RegularExpression, name, value}. */
static void decode_kv_matches(struct dec *d, const struct node *n, const struct path *pa,
			      struct sl_kv_match **out, size_t *n_out)
{
	static const char *const types[] = { "Exact", "RegularExpression" };

	if (!n || !want_len(d, n, pa, false))
		return;
	*out = keep_array(d, n->n, sizeof(**out));
	for (uint32_t i = 0; *out && i < n->n; i++) {
		const struct path *pi = PI(pa, i);
		const struct node *e = n->kids[i];
		struct sl_kv_match *k = &(*out)[*n_out];
		const char *name, *value;
		int t;

		if (!want_map(d, e, pi))
			continue;
		t = get_enum(d, map_get(e, "type"), PK(pi, "type"), types, 2, 0);
		name = req_header_name(d, e, pi);
		value = req_str(d, e, "value", pi);
		if (t < 0 || !name || !value)
			continue;
		k->type = t ? SL_MATCH_REGEX : SL_MATCH_EXACT;
		k->name = keep_str(d, name, true);
		k->value = keep_str(d, value, true);
		(*n_out)++;
	}
}

/* set[] or add[] of a header modifier: {name, value}. */
static void decode_header_kvs(struct dec *d, const struct node *n, const struct path *pa,
			      struct sl_header_kv **out, size_t *n_out)
{
	if (!n || !want_len(d, n, pa, false))
		return;
	*out = keep_array(d, n->n, sizeof(**out));
	for (uint32_t i = 0; *out && i < n->n; i++) {
		const struct path *pi = PI(pa, i);
		const struct node *e = n->kids[i];
		const char *name, *value;

		if (!want_map(d, e, pi))
			continue;
		name = req_header_name(d, e, pi);
		value = req_str(d, e, "value", pi);
		if (!name || !value)
			continue;
		(*out)[*n_out].name = keep_str(d, name, true);
		(*out)[(*n_out)++].value = keep_str(d, value, true);
	}
}

/* A list of header names (remove[], CORS allowHeaders and exposeHeaders). */
static void decode_header_names(struct dec *d, const struct node *n, const struct path *pa, char ***out,
				size_t *n_out)
{
	if (!n || !want_len(d, n, pa, false))
		return;
	*out = keep_array(d, n->n, sizeof(**out));
	for (uint32_t i = 0; *out && i < n->n; i++) {
		const char *s = want_header_name(d, n->kids[i], PI(pa, i));

		if (s)
			(*out)[(*n_out)++] = keep_str(d, s, true);
	}
}

/* path of a RequestRedirect or URLRewrite: {type, replaceFullPath | replacePrefixMatch}. */
static void decode_path_mod(struct dec *d, const struct node *m, const struct path *pa, struct sl_path_mod *pm)
{
	static const char *const types[] = { "ReplaceFullPath", "ReplacePrefixMatch" };
	static const char *const keys[] = { "replaceFullPath", "replacePrefixMatch" };
	const struct node *n;
	const char *s;
	int t;

	if (!want_map(d, m, pa))
		return;
	if (!(n = map_get(m, "type"))) {
		dec_err(d, m, PK(pa, "type"), "missing");
		return;
	}
	if ((t = get_enum(d, n, PK(pa, "type"), types, 2, -1)) < 0)
		return;
	if ((n = map_get(m, keys[!t]))) {
		dec_err(d, n, PK(pa, keys[!t]), "only with type %s", types[!t]);
		return;
	}
	if (!(n = map_get(m, keys[t]))) {
		dec_err(d, m, PK(pa, keys[t]), "missing (type %s needs it)", types[t]);
		return;
	}
	if (!(s = want_str(d, n, PK(pa, keys[t]))))
		return;
	pm->type = t ? SL_PATH_MOD_PREFIX : SL_PATH_MOD_FULL;
	pm->value = keep_str(d, s, true);
}

static void decode_filters(struct dec *d, const struct node *n, const struct path *pa, enum sl_route_kind kind,
			   struct sl_route_filter **out, size_t *n_out);

/* A backendRef; mirror: a RequestMirror's (no weight, no filters). */
static void decode_backend_ref(struct dec *d, const struct node *m, const struct path *pa, enum sl_route_kind kind,
			       bool mirror, struct sl_backend_ref *b)
{
	const struct node *n;
	const char *s;
	long v;

	b->weight = 1;
	if (!want_map(d, m, pa))
		return;
	b->group = keep_str(d, "", true);
	b->kind = keep_str(d, "Service", true);
	opt_str(d, m, "group", pa, &b->group);
	opt_str(d, m, "kind", pa, &b->kind);
	opt_ns(d, m, pa, &b->ns);
	if ((s = req_str(d, m, "name", pa)))
		b->name = keep_str(d, s, true);
	opt_port(d, m, pa, &b->port);
	if (mirror)
		return;
	if ((n = map_get(m, "weight")) && get_int(d, n, PK(pa, "weight"), 0, 1000000, &v))
		b->weight = (uint32_t)v;
	if (kind == SL_ROUTE_HTTP || kind == SL_ROUTE_GRPC)
		decode_filters(d, map_get(m, "filters"), PK(pa, "filters"), kind, &b->filters, &b->n_filters);
}

/* The field that holds each type's settings. */
static const char *const filter_fields[] = {
	[SL_FILTER_REQUEST_HEADER] = "requestHeaderModifier",
	[SL_FILTER_RESPONSE_HEADER] = "responseHeaderModifier",
	[SL_FILTER_REDIRECT] = "requestRedirect",
	[SL_FILTER_REWRITE] = "urlRewrite",
	[SL_FILTER_MIRROR] = "requestMirror",
	[SL_FILTER_CORS] = "cors",
	[SL_FILTER_EXTENSION] = "extensionRef",
};

static void decode_mirror(struct dec *d, const struct node *m, const struct path *pa, enum sl_route_kind kind,
			  struct sl_route_filter *f)
{
	const struct path *pf = PK(pa, "fraction");
	const struct node *n, *pct = map_get(m, "percent"), *frac = map_get(m, "fraction");
	long num, den = 100;

	f->mirror_num = f->mirror_den = 100;
	if (!(n = map_get(m, "backendRef")))
		dec_err(d, m, PK(pa, "backendRef"), "missing");
	else
		decode_backend_ref(d, n, PK(pa, "backendRef"), kind, true, &f->mirror);
	if (pct && frac) {
		dec_err(d, frac, pa, "percent and fraction cannot both be set");
	} else if (pct) {
		if (get_int(d, pct, PK(pa, "percent"), 0, 100, &num))
			f->mirror_num = (uint32_t)num;
	} else if (frac && want_map(d, frac, pf)) {
		if (!(n = map_get(frac, "numerator"))) {
			dec_err(d, frac, PK(pf, "numerator"), "missing");
			return;
		}
		if (!get_int(d, n, PK(pf, "numerator"), 0, INT32_MAX, &num))
			return;
		if ((n = map_get(frac, "denominator")) && !get_int(d, n, PK(pf, "denominator"), 1, INT32_MAX, &den))
			return;
		if (num > den) {
			dec_err(d, frac, pf, "numerator %ld is larger than denominator %ld", num, den);
			return;
		}
		f->mirror_num = (uint32_t)num;
		f->mirror_den = (uint32_t)den;
	}
}

static void decode_cors(struct dec *d, const struct node *m, const struct path *pa, struct sl_route_filter *f)
{
	const struct path *pm = PK(pa, "allowMethods");
	const struct node *n;
	long v;

	f->max_age = 5;
	decode_strs(d, map_get(m, "allowOrigins"), PK(pa, "allowOrigins"), &f->allow_origins);
	if ((n = map_get(m, "allowMethods")) && want_len(d, n, pm, false)) {
		f->allow_methods.v = keep_array(d, n->n, sizeof(*f->allow_methods.v));
		for (uint32_t i = 0; f->allow_methods.v && i < n->n; i++) {
			int k = get_enum(d, n->kids[i], PI(pm, i), http_methods, N_HTTP_METHODS + 1, -1);

			if (k >= 0)
				f->allow_methods.v[f->allow_methods.n++] = keep_str(d, http_methods[k], true);
		}
	}
	decode_header_names(d, map_get(m, "allowHeaders"), PK(pa, "allowHeaders"), &f->allow_headers.v,
			    &f->allow_headers.n);
	decode_header_names(d, map_get(m, "exposeHeaders"), PK(pa, "exposeHeaders"), &f->expose_headers.v,
			    &f->expose_headers.n);
	if ((n = map_get(m, "allowCredentials")))
		get_bool(d, n, PK(pa, "allowCredentials"), &f->allow_credentials);
	if ((n = map_get(m, "maxAge")) && get_int(d, n, PK(pa, "maxAge"), 1, INT32_MAX, &v))
		f->max_age = (int32_t)v;
}

/* extensionRef {group, kind, name} as "group/kind/name". */
static void decode_extension(struct dec *d, const struct node *m, const struct path *pa, struct sl_route_filter *f)
{
	const char *g = req_group(d, m, pa), *k = req_str(d, m, "kind", pa), *n = req_str(d, m, "name", pa);
	size_t len;
	char *s;

	if (!g || !k || !n)
		return;
	len = strlen(g) + strlen(k) + strlen(n) + 3;
	s = malloc(len);
	if (!s) {
		p_oom(d->p, (int)m->line);
		return;
	}
	snprintf(s, len, "%s/%s/%s", g, k, n);
	f->extension = keep_str(d, s, true);
	free(s);
}

/* hostname and path, of a RequestRedirect or a URLRewrite. */
static void decode_location(struct dec *d, const struct node *m, const struct path *pa, struct sl_route_filter *f)
{
	const struct node *n;
	const char *s;

	if ((n = map_get(m, "hostname")) && (s = want_hostname(d, n, PK(pa, "hostname"), false)))
		f->hostname = keep_str(d, s, true);
	if ((n = map_get(m, "path")))
		decode_path_mod(d, n, PK(pa, "path"), &f->path);
}

static void decode_filter(struct dec *d, const struct node *m, const struct path *pa, enum sl_route_kind kind,
			  struct sl_route_filter *f)
{
	static const char *const schemes[] = { "http", "https" };
	/* GRPCRouteFilter has no redirect, rewrite or CORS */
	static const char *const grpc_names[] = { "RequestHeaderModifier", "ResponseHeaderModifier",
						  "RequestMirror", "ExtensionRef" };
	static const enum sl_filter_type grpc_types[] = { SL_FILTER_REQUEST_HEADER, SL_FILTER_RESPONSE_HEADER,
							  SL_FILTER_MIRROR, SL_FILTER_EXTENSION };
	const struct node *n, *sub;
	const struct path *ps;
	long v;
	int t;

	if (!want_map(d, m, pa))
		return;
	if (!(n = map_get(m, "type"))) {
		dec_err(d, m, PK(pa, "type"), "missing");
		return;
	}
	if (kind == SL_ROUTE_GRPC) {
		t = get_enum(d, n, PK(pa, "type"), grpc_names, 4, -1);
		t = t < 0 ? -1 : (int)grpc_types[t];
	} else {
		t = get_enum(d, n, PK(pa, "type"), sl_filter_type_names, SL_FILTER_TYPE_COUNT, -1);
	}
	if (t < 0)
		return;
	f->type = (enum sl_filter_type)t;
	ps = PK(pa, filter_fields[t]);
	if (!(sub = map_get(m, filter_fields[t]))) {
		dec_err(d, m, ps, "missing (type %s needs it)", sl_filter_type_names[t]);
		return;
	}
	if (!want_map(d, sub, ps))
		return;
	switch (f->type) {
	case SL_FILTER_REQUEST_HEADER:
	case SL_FILTER_RESPONSE_HEADER:
		decode_header_kvs(d, map_get(sub, "set"), PK(ps, "set"), &f->headers.set, &f->headers.n_set);
		decode_header_kvs(d, map_get(sub, "add"), PK(ps, "add"), &f->headers.add, &f->headers.n_add);
		decode_header_names(d, map_get(sub, "remove"), PK(ps, "remove"), &f->headers.remove,
				    &f->headers.n_remove);
		break;
	case SL_FILTER_REDIRECT:
		f->status = 302;
		if ((n = map_get(sub, "scheme")) && (t = get_enum(d, n, PK(ps, "scheme"), schemes, 2, -1)) >= 0)
			f->scheme = keep_str(d, schemes[t], true);
		if ((n = map_get(sub, "statusCode")) && get_int(d, n, PK(ps, "statusCode"), 0, 999, &v)) {
			if (v == 301 || v == 302 || v == 303 || v == 307 || v == 308)
				f->status = (uint16_t)v;
			else
				dec_err(d, n, PK(ps, "statusCode"), "expected 301, 302, 303, 307 or 308, got %ld", v);
		}
		opt_port(d, sub, ps, &f->port);
		decode_location(d, sub, ps, f);
		break;
	case SL_FILTER_REWRITE:
		decode_location(d, sub, ps, f);
		break;
	case SL_FILTER_MIRROR:
		decode_mirror(d, sub, ps, kind, f);
		break;
	case SL_FILTER_CORS:
		decode_cors(d, sub, ps, f);
		break;
	case SL_FILTER_EXTENSION:
		decode_extension(d, sub, ps, f);
		break;
	case SL_FILTER_TYPE_COUNT:	/* get_enum gives no such value */
		break;
	}
}

static void decode_filters(struct dec *d, const struct node *n, const struct path *pa, enum sl_route_kind kind,
			   struct sl_route_filter **out, size_t *n_out)
{
	if (!n || !want_len(d, n, pa, false))
		return;
	*out = keep_array(d, n->n, sizeof(**out));
	for (uint32_t i = 0; *out && i < n->n; i++)
		decode_filter(d, n->kids[i], PI(pa, i), kind, &(*out)[(*n_out)++]);
}

/* One matches[] entry: HTTPRouteMatch (path, headers, queryParams, method)
 * or GRPCRouteMatch (method {type, service, method}, headers). */
static void decode_match(struct dec *d, const struct node *m, const struct path *pa, enum sl_route_kind kind,
			 struct sl_http_match *x)
{
	static const char *const path_types[] = { "Exact", "PathPrefix", "RegularExpression" };	/* = sl_match_type */
	static const char *const grpc_types[] = { "Exact", "RegularExpression" };
	const struct path *pp = PK(pa, "path"), *pm = PK(pa, "method");
	const struct node *p, *n;
	const char *s;
	int t;

	x->path_type = SL_MATCH_PREFIX;
	x->path = keep_str(d, "/", true);
	if (node_null(m))
		return;		/* "- {}" written as "-": every request */
	if (!want_map(d, m, pa))
		return;
	decode_kv_matches(d, map_get(m, "headers"), PK(pa, "headers"), &x->headers, &x->n_headers);
	if (kind == SL_ROUTE_GRPC) {
		if (!(p = map_get(m, "method")) || !want_map(d, p, pm))
			return;
		t = get_enum(d, map_get(p, "type"), PK(pm, "type"), grpc_types, 2, 0);
		x->has_grpc = true;
		x->grpc_type = t == 1 ? SL_MATCH_REGEX : SL_MATCH_EXACT;
		opt_str(d, p, "service", pm, &x->grpc_service);
		opt_str(d, p, "method", pm, &x->grpc_method);
		if (!map_get(p, "service") && !map_get(p, "method"))
			dec_err(d, p, pm, "needs service or method (or both)");
		return;
	}
	decode_kv_matches(d, map_get(m, "queryParams"), PK(pa, "queryParams"), &x->query, &x->n_query);
	if ((n = map_get(m, "method")) && (t = get_enum(d, n, pm, http_methods, N_HTTP_METHODS, -1)) >= 0)
		x->method = keep_str(d, http_methods[t], true);
	if (!(p = map_get(m, "path")) || !want_map(d, p, pp))
		return;
	x->has_path = true;
	t = get_enum(d, map_get(p, "type"), PK(pp, "type"), path_types, 3, SL_MATCH_PREFIX);
	if (t < 0 || !(n = map_get(p, "value")) || !(s = want_str(d, n, PK(pp, "value"))))
		return;
	if (t != SL_MATCH_REGEX && s[0] != '/') {
		dec_err(d, n, PK(pp, "value"), "must start with '/' (type %s)", path_types[t]);
		return;
	}
	x->path_type = (enum sl_match_type)t;
	x->path = keep_str(d, s, true);
}

/* timeouts and retry of an HTTPRoute rule. */
static void decode_http_rule_extras(struct dec *d, const struct node *m, const struct path *pa,
				    struct sl_route_rule *r)
{
	const struct path *pt = PK(pa, "timeouts"), *pr = PK(pa, "retry"), *pc = PK(pr, "codes");
	const struct node *t, *n, *req, *breq;
	long v;

	if ((t = map_get(m, "timeouts")) && want_map(d, t, pt)) {
		req = map_get(t, "request");
		breq = map_get(t, "backendRequest");
		if (req)
			get_duration(d, req, PK(pt, "request"), &r->timeouts.request_ms);
		if (breq)
			get_duration(d, breq, PK(pt, "backendRequest"), &r->timeouts.backend_request_ms);
		if (req && breq && r->timeouts.request_ms && r->timeouts.backend_request_ms > r->timeouts.request_ms)
			dec_err(d, breq, PK(pt, "backendRequest"), "longer than the request timeout");
	}
	if (!(t = map_get(m, "retry")) || !want_map(d, t, pr))
		return;
	r->has_retry = true;
	if ((n = map_get(t, "codes")) && want_len(d, n, pc, false)) {
		r->retry.codes = keep_array(d, n->n, sizeof(*r->retry.codes));
		for (uint32_t i = 0; r->retry.codes && i < n->n; i++)
			if (get_int(d, n->kids[i], PI(pc, i), 400, 599, &v))
				r->retry.codes[r->retry.n_codes++] = (uint16_t)v;
	}
	if ((n = map_get(t, "attempts")) && get_int(d, n, PK(pr, "attempts"), 0, INT32_MAX, &v))
		r->retry.attempts = (uint32_t)v;
	if ((n = map_get(t, "backoff")))
		get_duration(d, n, PK(pr, "backoff"), &r->retry.backoff_ms);
}

static void decode_route_rule(struct dec *d, const struct node *m, const struct path *pa, enum sl_route_kind kind,
			      struct sl_route_rule *r)
{
	const struct path *pm = PK(pa, "matches"), *pb = PK(pa, "backendRefs");
	const struct node *n;

	if (!want_map(d, m, pa))
		return;
	opt_section(d, m, "name", pa, &r->name);
	if ((kind == SL_ROUTE_HTTP || kind == SL_ROUTE_GRPC) && (n = map_get(m, "matches")) &&
	    want_len(d, n, pm, false)) {
		r->matches = keep_array(d, n->n, sizeof(*r->matches));
		for (uint32_t i = 0; r->matches && i < n->n; i++)
			decode_match(d, n->kids[i], PI(pm, i), kind, &r->matches[r->n_matches++]);
	}
	if (kind == SL_ROUTE_HTTP || kind == SL_ROUTE_GRPC)
		decode_filters(d, map_get(m, "filters"), PK(pa, "filters"), kind, &r->filters, &r->n_filters);
	if ((n = map_get(m, "backendRefs")) && want_len(d, n, pb, false)) {
		r->backends = keep_array(d, n->n, sizeof(*r->backends));
		for (uint32_t i = 0; r->backends && i < n->n; i++)
			decode_backend_ref(d, n->kids[i], PI(pb, i), kind, false, &r->backends[r->n_backends++]);
	}
	if (kind == SL_ROUTE_HTTP)
		decode_http_rule_extras(d, m, pa, r);
}

static void decode_parent_ref(struct dec *d, const struct node *m, const struct path *pa, struct sl_parent_ref *r)
{
	const char *s;

	if (!want_map(d, m, pa))
		return;
	r->group = keep_str(d, GW_GROUP, true);
	r->kind = keep_str(d, "Gateway", true);
	opt_str(d, m, "group", pa, &r->group);
	opt_str(d, m, "kind", pa, &r->kind);
	opt_ns(d, m, pa, &r->ns);
	if ((s = req_str(d, m, "name", pa)))
		r->name = keep_str(d, s, true);
	opt_section(d, m, "sectionName", pa, &r->section_name);
	opt_port(d, m, pa, &r->port);
}

/* metadata.generation, and metadata.creationTimestamp when created is given. */
static void decode_generation(struct dec *d, const struct node *meta, int64_t *gen, char **created)
{
	const struct path *pm = PK(NULL, "metadata");
	const struct node *n;
	const char *s;
	long v;

	if (!meta)
		return;
	if ((n = map_get(meta, "generation")) && get_int(d, n, PK(pm, "generation"), 0, 999999999999L, &v))
		*gen = v;
	if (created && (n = map_get(meta, "creationTimestamp")) &&
	    (s = want_str(d, n, PK(pm, "creationTimestamp"))))
		*created = keep_str(d, s, true);
}

/* HTTPRoute, GRPCRoute, TCPRoute and TLSRoute: one shape, fields by kind. */
static void decode_route(struct dec *d, const struct node *obj)
{
	static const char *const route_kinds[] = { [SL_ROUTE_HTTP] = "HTTPRoute", [SL_ROUTE_GRPC] = "GRPCRoute",
						   [SL_ROUTE_TCP] = "TCPRoute", [SL_ROUTE_TLS] = "TLSRoute" };
	const struct path *ps = PK(NULL, "spec"), *pp = PK(ps, "parentRefs"), *ph = PK(ps, "hostnames"),
			  *pr = PK(ps, "rules");
	struct sl_route rt = { 0 };
	struct unit *u = d->p->u;
	const struct node *meta, *spec, *n, *rules = NULL;

	for (size_t k = 0; k < sizeof(route_kinds) / sizeof(route_kinds[0]); k++)
		if (!strcmp(d->kind, route_kinds[k]))
			rt.kind = (enum sl_route_kind)k;
	meta = decode_meta(d, obj, NAME_SUBDOMAIN, true, NULL);
	decode_generation(d, meta, &rt.generation, &rt.created);
	if (!(spec = map_get(obj, "spec")))
		dec_err(d, obj, ps, "missing");
	else if (want_map(d, spec, ps)) {
		if ((n = map_get(spec, "parentRefs")) && want_len(d, n, pp, false)) {
			rt.parents = keep_array(d, n->n, sizeof(*rt.parents));
			for (uint32_t i = 0; rt.parents && i < n->n; i++)
				decode_parent_ref(d, n->kids[i], PI(pp, i), &rt.parents[rt.n_parents++]);
		}
		if (rt.kind != SL_ROUTE_TCP && (n = map_get(spec, "hostnames")) && want_len(d, n, ph, false)) {
			rt.hostnames = keep_array(d, n->n, sizeof(*rt.hostnames));
			for (uint32_t i = 0; rt.hostnames && i < n->n; i++) {
				const char *s = want_hostname(d, n->kids[i], PI(ph, i), true);

				if (s)
					rt.hostnames[rt.n_hostnames++] = keep_str(d, s, true);
			}
		}
		if ((rules = map_get(spec, "rules")) && want_len(d, rules, pr, false)) {
			rt.rules = keep_array(d, rules->n, sizeof(*rt.rules));
			for (uint32_t i = 0; rt.rules && i < rules->n; i++)
				decode_route_rule(d, rules->kids[i], PI(pr, i), rt.kind, &rt.rules[rt.n_rules++]);
		}
	}
	if (!rules && rt.kind == SL_ROUTE_HTTP) {
		/* The CRD's default: one rule matching every path, no backends. */
		rt.rules = keep_array(d, 1, sizeof(*rt.rules));
		rt.n_rules = rt.rules ? 1 : 0;
	}
	if (!dec_ok(d))
		return;
	rt.ns = keep_str(d, d->ns, true);
	rt.name = keep_str(d, d->name, false);
	rt.src = dec_src(d, obj);
	if (rt.ns && rt.name)
		RES_ADD(d, u->res.routes, u->res.n_routes, u->caps.routes, rt);
}

static void decode_listener(struct dec *d, const struct node *m, const struct path *pa, struct sl_listener *l)
{
	static const char *const modes[] = { "Terminate", "Passthrough" };
	static const char *const froms[] = { "Same", "All", "Selector" };	/* = sl_routes_from */
	const struct path *pt = PK(pa, "tls"), *pc = PK(pt, "certificateRefs"), *pr = PK(pa, "allowedRoutes"),
			  *pn = PK(pr, "namespaces"), *pk = PK(pr, "kinds");
	const struct node *n, *t, *ns;
	const char *s;
	long v;
	int k;

	if (!want_map(d, m, pa))
		return;
	if (!map_get(m, "name"))
		dec_err(d, m, PK(pa, "name"), "missing");
	opt_section(d, m, "name", pa, &l->name);
	if ((n = map_get(m, "hostname")) && (s = want_hostname(d, n, PK(pa, "hostname"), true)))
		l->hostname = keep_str(d, s, true);
	if (!(n = map_get(m, "port")))
		dec_err(d, m, PK(pa, "port"), "missing");
	else if (get_int(d, n, PK(pa, "port"), 1, 65535, &v))
		l->port = (uint16_t)v;
	if ((s = req_str(d, m, "protocol", pa)))
		l->protocol = keep_str(d, s, true);
	if ((t = map_get(m, "tls")) && want_map(d, t, pt)) {
		k = get_enum(d, map_get(t, "mode"), PK(pt, "mode"), modes, 2, 0);
		if (k >= 0)
			l->tls_mode = keep_str(d, modes[k], true);
		if ((n = map_get(t, "certificateRefs")) && want_len(d, n, pc, false)) {
			l->certs = keep_array(d, n->n, sizeof(*l->certs));
			for (uint32_t i = 0; l->certs && i < n->n; i++) {
				const struct path *pi = PI(pc, i);
				struct sl_object_ref *c = &l->certs[l->n_certs++];

				if (!want_map(d, n->kids[i], pi))
					continue;
				c->group = keep_str(d, "", true);
				c->kind = keep_str(d, "Secret", true);
				opt_str(d, n->kids[i], "group", pi, &c->group);
				opt_str(d, n->kids[i], "kind", pi, &c->kind);
				opt_ns(d, n->kids[i], pi, &c->ns);
				if ((s = req_str(d, n->kids[i], "name", pi)))
					c->name = keep_str(d, s, true);
			}
		}
	}
	if (!(t = map_get(m, "allowedRoutes")) || !want_map(d, t, pr))
		return;
	if ((ns = map_get(t, "namespaces")) && want_map(d, ns, pn)) {
		k = get_enum(d, map_get(ns, "from"), PK(pn, "from"), froms, 3, SL_ROUTES_FROM_SAME);
		if (k >= 0)
			l->routes_from = (enum sl_routes_from)k;
		if ((n = map_get(ns, "selector")))
			decode_selector(d, n, PK(pn, "selector"), &l->routes_selector);
		else if (k == SL_ROUTES_FROM_SELECTOR)
			dec_err(d, ns, PK(pn, "selector"), "missing (from: Selector needs it)");
	}
	if ((n = map_get(t, "kinds")) && want_len(d, n, pk, false)) {
		l->route_kinds = keep_array(d, n->n, sizeof(*l->route_kinds));
		for (uint32_t i = 0; l->route_kinds && i < n->n; i++) {
			const struct path *pi = PI(pk, i);
			struct sl_route_group_kind *g = &l->route_kinds[l->n_route_kinds++];

			if (!want_map(d, n->kids[i], pi))
				continue;
			g->group = keep_str(d, GW_GROUP, true);
			opt_str(d, n->kids[i], "group", pi, &g->group);
			if ((s = req_str(d, n->kids[i], "kind", pi)))
				g->kind = keep_str(d, s, true);
		}
	}
}

static void decode_gateway(struct dec *d, const struct node *obj)
{
	const struct path *ps = PK(NULL, "spec"), *pl = PK(ps, "listeners"), *pa = PK(ps, "addresses");
	struct sl_gateway gw = { 0 };
	struct unit *u = d->p->u;
	const struct node *meta, *spec, *n;
	const char *s;

	meta = decode_meta(d, obj, NAME_SUBDOMAIN, true, NULL);
	decode_generation(d, meta, &gw.generation, NULL);
	if (!(spec = map_get(obj, "spec")))
		dec_err(d, obj, ps, "missing");
	else if (want_map(d, spec, ps)) {
		if ((s = req_str(d, spec, "gatewayClassName", ps)))
			gw.class_name = keep_str(d, s, true);
		if (!(n = map_get(spec, "listeners"))) {
			dec_err(d, spec, pl, "missing");
		} else if (want_len(d, n, pl, true)) {
			gw.listeners = keep_array(d, n->n, sizeof(*gw.listeners));
			for (uint32_t i = 0; gw.listeners && i < n->n; i++)
				decode_listener(d, n->kids[i], PI(pl, i), &gw.listeners[gw.n_listeners++]);
		}
		if ((n = map_get(spec, "addresses")) && want_len(d, n, pa, false)) {
			gw.addresses = keep_array(d, n->n, sizeof(*gw.addresses));
			for (uint32_t i = 0; gw.addresses && i < n->n; i++) {
				const struct path *pi = PI(pa, i);
				const struct node *e = n->kids[i], *t, *v;

				if (!want_map(d, e, pi))
					continue;
				/* Hostname, NamedAddress and vendor types are not ours to read */
				if ((t = map_get(e, "type")) && (!(s = want_str(d, t, PK(pi, "type"))) ||
								strcmp(s, "IPAddress")))
					continue;
				if (!(v = map_get(e, "value")))
					dec_err(d, e, PK(pi, "value"), "missing");
				else if (want_ip(d, v, PK(pi, "value"), &gw.addresses[gw.n_addresses]))
					gw.n_addresses++;
			}
		}
	}
	if (!dec_ok(d))
		return;
	gw.ns = keep_str(d, d->ns, true);
	gw.name = keep_str(d, d->name, false);
	gw.src = dec_src(d, obj);
	if (gw.ns && gw.name)
		RES_ADD(d, u->res.gateways, u->res.n_gateways, u->caps.gateways, gw);
}

static void decode_gateway_class(struct dec *d, const struct node *obj)
{
	const struct path *ps = PK(NULL, "spec");
	struct sl_gateway_class gc = { 0 };
	struct unit *u = d->p->u;
	const struct node *spec;
	const char *s;

	decode_meta(d, obj, NAME_SUBDOMAIN, false, NULL);
	if (!(spec = map_get(obj, "spec")))
		dec_err(d, obj, ps, "missing");
	else if (want_map(d, spec, ps) && (s = req_str(d, spec, "controllerName", ps)))
		gc.controller = keep_str(d, s, true);
	if (!dec_ok(d))
		return;
	gc.name = keep_str(d, d->name, false);
	gc.src = dec_src(d, obj);
	if (gc.name)
		RES_ADD(d, u->res.gateway_classes, u->res.n_gateway_classes, u->caps.gateway_classes, gc);
}

static void decode_ref_grant(struct dec *d, const struct node *obj)
{
	const struct path *ps = PK(NULL, "spec"), *pf = PK(ps, "from"), *pt = PK(ps, "to");
	struct sl_ref_grant rg = { 0 };
	struct unit *u = d->p->u;
	const struct node *spec, *n;
	const char *g, *k, *s;

	decode_meta(d, obj, NAME_SUBDOMAIN, true, NULL);
	if (!(spec = map_get(obj, "spec"))) {
		dec_err(d, obj, ps, "missing");
	} else if (want_map(d, spec, ps)) {
		if (!(n = map_get(spec, "from"))) {
			dec_err(d, spec, pf, "missing");
		} else if (want_len(d, n, pf, true)) {
			rg.from = keep_array(d, n->n, sizeof(*rg.from));
			for (uint32_t i = 0; rg.from && i < n->n; i++) {
				const struct path *pi = PI(pf, i);
				const struct node *e = n->kids[i], *ns;

				if (!want_map(d, e, pi))
					continue;
				g = req_group(d, e, pi);
				k = req_str(d, e, "kind", pi);
				if (!(ns = map_get(e, "namespace"))) {
					dec_err(d, e, PK(pi, "namespace"), "missing");
					continue;
				}
				if (!(s = want_name(d, ns, PK(pi, "namespace"), NAME_LABEL)) || !g || !k)
					continue;
				rg.from[rg.n_from].group = keep_str(d, g, true);
				rg.from[rg.n_from].kind = keep_str(d, k, true);
				rg.from[rg.n_from++].ns = keep_str(d, s, true);
			}
		}
		if (!(n = map_get(spec, "to"))) {
			dec_err(d, spec, pt, "missing");
		} else if (want_len(d, n, pt, true)) {
			rg.to = keep_array(d, n->n, sizeof(*rg.to));
			for (uint32_t i = 0; rg.to && i < n->n; i++) {
				const struct path *pi = PI(pt, i);
				const struct node *e = n->kids[i];
				struct sl_ref_grant_to *to = &rg.to[rg.n_to];

				if (!want_map(d, e, pi))
					continue;
				g = req_group(d, e, pi);
				k = req_str(d, e, "kind", pi);
				if (!g || !k)
					continue;
				to->group = keep_str(d, g, true);
				to->kind = keep_str(d, k, true);
				if (map_get(e, "name") && (s = req_str(d, e, "name", pi)))
					to->name = keep_str(d, s, true);
				rg.n_to++;
			}
		}
	}
	if (!dec_ok(d))
		return;
	rg.ns = keep_str(d, d->ns, true);
	rg.name = keep_str(d, d->name, false);
	rg.src = dec_src(d, obj);
	if (rg.ns && rg.name)
		RES_ADD(d, u->res.ref_grants, u->res.n_ref_grants, u->caps.ref_grants, rg);
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* A Secret's data value: standard padded base64 (RFC 4648), line breaks
 * skipped as Go's decoder does, kept as text; NULL after an error. */
static char *keep_base64(struct dec *d, const struct node *n, const struct path *pa)
{
	const char *s = want_str(d, n, pa);
	size_t len = 0, k = 0, o = 0, pad = 0;
	unsigned char *out;
	uint32_t acc = 0;
	char last = 0, b[16];
	char *kept;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n->n; i++)
		if (s[i] != '\n' && s[i] != '\r') {
			len++;
			last = s[i];
		}
	if (len % 4) {
		dec_err(d, n, pa, "not valid base64 (%zu characters, not a multiple of 4)", len);
		return NULL;
	}
	out = malloc(len / 4 * 3 + 1);
	if (!out) {
		p_oom(d->p, (int)n->line);
		return NULL;
	}
	for (size_t i = 0; i < n->n; i++) {
		unsigned char c = (unsigned char)s[i];
		int v = b64_val(c);

		if (c == '\n' || c == '\r')
			continue;
		/* '=' only pads the last group: "xx==" or "xxx=" */
		if (v < 0 && c == '=' && k + 4 >= len && (k % 4 == 3 || (k % 4 == 2 && last == '='))) {
			v = 0;
			pad++;
		}
		if (v < 0 || (pad && c != '=')) {
			dec_err(d, n, pa, "not valid base64 (%s at offset %zu)", quote(b, sizeof(b), s + i, 1), i);
			free(out);
			return NULL;
		}
		acc = acc << 6 | (uint32_t)v;
		if (++k % 4 == 0) {
			out[o++] = (unsigned char)(acc >> 16);
			if (pad < 2)
				out[o++] = (unsigned char)(acc >> 8);
			if (pad < 1)
				out[o++] = (unsigned char)acc;
			acc = 0;
		}
	}
	out[o] = '\0';
	if (memchr(out, '\0', o)) {
		dec_err(d, n, pa, "decodes to binary data with a NUL byte (want PEM text)");
		free(out);
		return NULL;
	}
	kept = keep_str(d, (const char *)out, false);
	free(out);
	return kept;
}

/* A Secret: its type and tls.crt / tls.key (other keys are not even kept,
 * see skip_value); stringData wins over data, as the API server merges it. */
static void decode_secret(struct dec *d, const struct node *obj)
{
	static const char *const keys[] = { "tls.crt", "tls.key" };
	const struct path *pd = PK(NULL, "data"), *psd = PK(NULL, "stringData");
	struct sl_secret sec = { 0 };
	struct unit *u = d->p->u;
	const struct node *n, *v;
	char *val[2] = { NULL, NULL };
	const char *s;

	decode_meta(d, obj, NAME_SUBDOMAIN, true, NULL);
	sec.type = keep_str(d, "Opaque", true);
	opt_str(d, obj, "type", NULL, &sec.type);
	if ((n = map_get(obj, "data")) && want_map(d, n, pd))
		for (int k = 0; k < 2; k++)
			if ((v = map_get(n, keys[k])))
				val[k] = keep_base64(d, v, PK(pd, keys[k]));
	if ((n = map_get(obj, "stringData")) && want_map(d, n, psd))
		for (int k = 0; k < 2; k++)
			if ((v = map_get(n, keys[k])) && (s = want_str(d, v, PK(psd, keys[k]))))
				val[k] = keep_str(d, s, false);
	if (!dec_ok(d))
		return;
	sec.tls_crt = val[0];
	sec.tls_key = val[1];
	sec.ns = keep_str(d, d->ns, true);
	sec.name = keep_str(d, d->name, false);
	sec.src = dec_src(d, obj);
	if (sec.ns && sec.name)
		RES_ADD(d, u->res.secrets, u->res.n_secrets, u->caps.secrets, sec);
}

/* ---- objects, Lists and documents ------------------------------------------- */

static bool version_in(const char *v, size_t len, const char *list)
{
	for (const char *s = list; *s;) {
		size_t n = strcspn(s, " ");

		if (n == len && !memcmp(s, v, n))
			return true;
		s += n;
		s += *s == ' ';
	}
	return false;
}

/* Decode one object. kind/api stand in when obj lacks them (items of a typed
 * List); bad says the tree already had problems (the object is then dropped). */
static void decode_object(struct parse *p, const struct node *obj, const char *kind,
			  const char *api, bool bad)
{
	struct dec d = { .p = p, .bad = bad, .problems0 = p->u->n_problems };
	const struct node *kn = map_get(obj, "kind"), *an = map_get(obj, "apiVersion");
	const struct kind_desc *kd = NULL, *by_name = NULL;
	const char *slash, *version;
	size_t glen;
	char b1[96], b2[96], b3[96];

	if (obj->type != NODE_MAP) {
		p_report(p, (int)obj->line, "expected an object (a mapping with apiVersion and kind), got %s",
			 node_desc(b1, sizeof(b1), obj));
		return;
	}
	d.kind = "object";
	if (kn && !(kind = want_str(&d, kn, PK(NULL, "kind"))))
		return;
	if (an && !(api = want_str(&d, an, PK(NULL, "apiVersion"))))
		return;
	if (!kind) {
		p_report(p, (int)obj->line, "missing kind");
		return;
	}
	if (!api) {
		p_report(p, (int)obj->line, "%s: missing apiVersion", esc(b1, sizeof(b1), kind, strlen(kind)));
		return;
	}
	slash = strchr(api, '/');
	glen = slash ? (size_t)(slash - api) : 0;
	version = slash ? slash + 1 : api;
	for (size_t i = 0; i < N_KINDS && !kd; i++) {
		if (strcmp(kinds[i].kind, kind))
			continue;
		by_name = &kinds[i];
		if (strlen(kinds[i].group) == glen && !memcmp(kinds[i].group, api, glen) &&
		    version_in(version, strlen(version), kinds[i].versions))
			kd = &kinds[i];
	}
	if (!kd) {
		size_t klen = strlen(kind);

		if (klen >= 4 && !strcmp(kind + klen - 4, "List"))
			p_report(p, (int)obj->line, "a List (%s) inside a List", esc(b1, sizeof(b1), kind, klen));
		else if (by_name)
			p_report(p, (int)obj->line, "unknown kind '%s' (apiVersion %s; %s is %s%s%.*s)",
				 esc(b1, sizeof(b1), kind, klen), esc(b2, sizeof(b2), api, strlen(api)),
				 by_name->kind, by_name->group, *by_name->group ? "/" : "",
				 (int)strcspn(by_name->versions, " "), by_name->versions);
		else
			p_report(p, (int)obj->line, "unknown kind '%s' (apiVersion %s)",
				 esc(b1, sizeof(b1), kind, klen), esc(b3, sizeof(b3), api, strlen(api)));
		return;
	}
	if (!kd->decode) {
		p->u->ignored[kd - kinds]++;
		p->u->res.n_ignored++;
		return;
	}
	d.kind = kd->kind;
	kd->decode(&d, obj);
}

/* The kind of a typed List's items ("Pod" for PodList) into buf; NULL for a
 * plain List, whose items must say what they are. */
static const char *list_item_kind(const char *list_kind, char *buf, size_t size)
{
	size_t n = list_kind ? strlen(list_kind) : 0;

	if (n <= 4 || n - 4 >= size)
		return NULL;
	memcpy(buf, list_kind, n - 4);
	buf[n - 4] = '\0';
	return buf;
}

static const char *scalar_str(const struct node *n)
{
	return n && n->type == NODE_SCALAR && !(n->flags & NF_NUL) ? n->s : NULL;
}

/* The List's kind and apiVersion: as seen in this document, else as the scan
 * of a cut List found them (a piece may not hold the root's fields). */
static const char *list_kind_of(const struct parse *p, const struct node *kind)
{
	const char *k = scalar_str(kind);

	return k ? k : p->u->list_kind[0] ? p->u->list_kind : NULL;
}

static const char *list_api_of(const struct parse *p, const struct node *api)
{
	const char *a = scalar_str(api);

	return a ? a : p->u->list_api[0] ? p->u->list_api : NULL;
}

/* The root mapping's apiVersion while the root is still being built. */
static const struct node *open_root_field(const struct parse *p, const char *key)
{
	const struct frame *f = &p->frames[0];
	size_t len = strlen(key);

	for (size_t i = f->base; i + 1 < p->n_kids; i += 2)
		if (scalar_is(p->kids[i], key, len))
			return node_null(p->kids[i + 1]) ? NULL : p->kids[i + 1];
	return NULL;
}

#define NF_BAD 0x20			/* a deferred item whose tree had problems */

/* One item of a List, complete: decode it now when its type is known, then
 * forget its tree; otherwise keep it until the List's kind shows up. */
static void item_done(struct parse *p, struct frame *f, struct node *n)
{
	bool bad = p->u->n_problems > f->mark_problems;
	char kbuf[128];

	f->node->n++;
	if (p->root_kind || p->u->list_kind[0] || (map_get(n, "kind") && map_get(n, "apiVersion"))) {
		decode_object(p, n, list_item_kind(list_kind_of(p, p->root_kind), kbuf, sizeof(kbuf)),
			      list_api_of(p, open_root_field(p, "apiVersion")), bad);
		arena_release(&p->tmp, f->mark);
		p->n_anchors = f->mark_anchors;
		return;
	}
	if (p->n_deferred == p->cap_deferred) {
		size_t cap = p->cap_deferred ? p->cap_deferred * 2 : 16;
		struct node **v = realloc(p->deferred, cap * sizeof(*v));

		if (!v) {
			p_oom(p, (int)n->line);
			p->doc_bad = true;
			return;
		}
		p->deferred = v;
		p->cap_deferred = cap;
	}
	if (bad)
		n->flags |= NF_BAD;
	p->deferred[p->n_deferred++] = n;
}

/* The head or tail of a cut List holds the root's own kind and apiVersion:
 * the pieces of items went by what the scan read; if it read wrong, or
 * missed one, the file is parsed whole (load_dir checks saw_*). */
static void list_check_hints(struct parse *p, const struct node *root)
{
	const struct node *kind = map_get(root, "kind"), *api = map_get(root, "apiVersion");
	struct unit *u = p->u;

	/* The root's keys are split between head and tail: keep them to see
	 * one in both (JSON's tail starts with the "items" the reader added). */
	if (u->root_keys || !(u->root_keys = calloc(root->n ? root->n : 1, sizeof(*u->root_keys)))) {
		u->suspect = true;	/* (a second root cannot be: the scan saw one) */
		return;
	}
	for (uint32_t i = u->json == 1 && u->role == ROLE_LIST_TAIL; i < root->n; i++) {
		const char *k = scalar_str(root->kids[2 * i]);

		if (!k || !(u->root_keys[u->n_root_keys++] = strdup(k))) {
			u->suspect = true;
			return;
		}
	}

	if (kind) {
		if (scalar_str(kind) && !strcmp(kind->s, u->list_kind))
			u->saw_kind = true;
		else
			u->suspect = true;
	}
	if (api) {
		if (scalar_str(api) && !strcmp(api->s, u->list_api))
			u->saw_api = true;
		else
			u->suspect = true;
	}
}

static void list_end(struct parse *p, const struct node *root)
{
	const struct node *kind = map_get(root, "kind"), *items = map_get(root, "items");
	const char *ks = list_kind_of(p, kind);
	char kbuf[128], b[96];

	if (p->u->role == ROLE_LIST_HEAD || p->u->role == ROLE_LIST_TAIL)
		list_check_hints(p, root);

	if (!kind_is_list(kind) && (kind || !ks)) {
		if (kind)
			p_report(p, (int)(items ? items : root)->line,
				 "items: only a List has items, and kind is %s", node_desc(b, sizeof(b), kind));
		else
			p_report(p, (int)root->line, "missing kind (a document with items is a List)");
		return;
	}
	if (items && items->type != NODE_SEQ) {
		p_report(p, (int)items->line, "items: expected a list, got %s", node_desc(b, sizeof(b), items));
		return;
	}
	for (size_t i = 0; i < p->n_deferred; i++)
		decode_object(p, p->deferred[i], list_item_kind(ks, kbuf, sizeof(kbuf)),
			      list_api_of(p, map_get(root, "apiVersion")), p->deferred[i]->flags & NF_BAD);
}

static void doc_reset(struct parse *p)
{
	arena_release(&p->tmp, (struct arena_mark){ 0 });
	p->n_kids = 0;
	p->depth = 0;
	p->root = NULL;
	p->n_anchors = 0;
	p->skip = 0;
	p->doc_bad = false;
	p->have_items = false;
	p->root_kind = NULL;
	p->n_deferred = 0;
	p->obj_base_bytes = 0;
	p->doc_problems = p->u->n_problems;
}

static void doc_end(struct parse *p)
{
	const struct node *root = p->root;
	char b[96];

	if (p->doc_bad || !root || (root->type == NODE_SCALAR && (root->flags & NF_NULL)))
		return;				/* dropped, or an empty document */
	if (p->u->role == ROLE_LIST_ITEMS) {
		if (root->type == NODE_SEQ && (root->flags & NF_STREAMED))
			return;			/* items of a cut List, all decoded */
		p->u->suspect = true;		/* not a run of items: cut wrong */
	}
	if (p->u->role == ROLE_LIST_HEAD || p->u->role == ROLE_LIST_TAIL) {
		if (root->type == NODE_MAP) {
			list_end(p, root);
			return;
		}
		p->u->suspect = true;		/* not the root mapping: cut wrong */
	}
	if (root->type != NODE_MAP)
		p_report(p, (int)root->line, "expected an object (a mapping with apiVersion and kind), got %s",
			 node_desc(b, sizeof(b), root));
	else if (p->have_items || kind_is_list(map_get(root, "kind")))
		list_end(p, root);
	else
		decode_object(p, root, NULL, NULL, p->u->n_problems > p->doc_problems);
}

/* Line of a byte offset in the unit's input, counting breaks as libyaml does
 * (for reader errors, which carry an offset and no line). */
static int unit_line_at(const struct unit *u, int fd, size_t offset)
{
	unsigned char buf[8192];
	size_t done = 0, lines = 0;
	bool cr = false;

	while (done < offset) {
		size_t want = offset - done < sizeof(buf) ? offset - done : sizeof(buf);
		ssize_t n;

		if (fd < 0) {
			want = done + want > u->len ? u->len - done : want;
			memcpy(buf, u->buf + done, want);
			n = (ssize_t)want;
		} else {
			n = pread(fd, buf, want, u->off + (off_t)done);
		}
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && !cr)
				lines++;
			else if (buf[i] == '\r')
				lines++;
			cr = buf[i] == '\r';
		}
		done += (size_t)n;
	}
	return (int)(lines + 1) + u->line0;
}

static void report_yaml_error(struct parse *p, const struct reader *r, bool json)
{
	const yaml_parser_t *yp = &p->yp;
	const char *what = json ? "JSON syntax" : "YAML syntax";
	int line;

	p->u->suspect = true;		/* a List piece may be cut wrong: parse whole */
	switch (yp->error) {
	case YAML_MEMORY_ERROR:
		p_oom(p, 0);
		break;
	case YAML_READER_ERROR:
		if (r->err) {
			p_report(p, 0, "cannot read: %s", strerror(r->err));
			if (!p->u->io_err)
				p->u->io_err = -r->err;
			break;
		}
		line = unit_line_at(p->u, r->fd, yp->problem_offset);
		if (yp->problem_value != -1)
			p_report(p, line, "%s: %s (byte 0x%02x)", what, yp->problem, yp->problem_value & 0xff);
		else
			p_report(p, line, "%s: %s", what, yp->problem);
		break;
	default:
		line = (int)yp->problem_mark.line + 1 + p->u->line0;
		if (yp->context && yp->context_mark.line != yp->problem_mark.line)
			p_report(p, line, "%s: %s (%s on line %d)", what, yp->problem, yp->context,
				 (int)yp->context_mark.line + 1 + p->u->line0);
		else if (yp->context)
			p_report(p, line, "%s: %s (%s)", what, yp->problem, yp->context);
		else
			p_report(p, line, "%s: %s", what, yp->problem ? yp->problem : "error");
		break;
	}
}

/* Open the unit's file range for reading: 0, or a problem reported. */
static int unit_open(struct parse *p, struct reader *r)
{
	struct unit *u = p->u;
	struct stat sb;
	int err;

	r->fd = open(u->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (r->fd == -1 || fstat(r->fd, &sb) == -1) {
		err = errno;
		p_report(p, 0, "cannot read: %s", strerror(err));
		u->io_err = -err;
		return -err;
	}
	if (!S_ISREG(sb.st_mode)) {
		p_report(p, 0, "not a regular file");
		return -EINVAL;
	}
	if ((unsigned long long)sb.st_size > CFG_MAX_FILE) {
		p_report(p, 0, "file too large (%lld MiB; at most %u MiB)", (long long)sb.st_size >> 20,
			 CFG_MAX_FILE >> 20);
		return -EFBIG;
	}
	r->pos = u->off;
	r->end = u->end ? u->end : sb.st_size;
	r->pre = u->pre;
	r->post = u->post;
	return 0;
}

/* Parse one unit into u's results, keeping strings in st. */
static void unit_parse(struct unit *u, struct store *st)
{
	struct reader r = { .fd = -1 };
	struct parse *p = calloc(1, sizeof(*p));
	bool json = false;

	if (!p || !yaml_parser_initialize(&p->yp)) {
		u->n_problems++;
		diags_add(&u->errs, u->name, 0, "out of memory");
		free(p);
		return;
	}
	p->u = u;
	p->st = st;
	p->tmp.chunk_size = CFG_TMP_CHUNK;
	p->file = store_intern(st, u->name, strlen(u->name));
	if (!p->file) {
		p->file = u->name;
		p_oom(p, 0);
		goto out;
	}
	if (!u->path) {
		json = u->json >= 0 ? u->json : sniff_json(u->name, (const unsigned char *)u->buf, u->len);
		if (json) {
			r.mem = (const unsigned char *)u->buf;
			r.mem_len = u->len;
		} else {
			yaml_parser_set_input_string(&p->yp, (const unsigned char *)u->buf, u->len);
		}
	} else {
		if (unit_open(p, &r))
			goto out;
		r.in = malloc(CFG_READ_BUF);
		if (!r.in || reader_fill(&r)) {
			p_report(p, 0, "cannot read: %s", r.in ? strerror(r.err) : "out of memory");
			goto out;
		}
		json = u->json >= 0 ? u->json : sniff_json(u->name, r.in, r.in_len);
	}
	if (json && !(r.out = malloc(CFG_READ_BUF))) {
		p_oom(p, 0);
		goto out;
	}
	r.json = json;
	if (u->path || json)
		yaml_parser_set_input(&p->yp, reader_read, &r);
	doc_reset(p);
	for (;;) {
		yaml_event_t ev;
		yaml_event_type_t type;

		if (!yaml_parser_parse(&p->yp, &ev)) {
			report_yaml_error(p, &r, json);
			break;
		}
		type = ev.type;
		if (!p->doc_bad || type == YAML_DOCUMENT_END_EVENT) {
			switch (type) {
			case YAML_DOCUMENT_START_EVENT:
				doc_reset(p);
				break;
			case YAML_DOCUMENT_END_EVENT:
				doc_end(p);
				doc_reset(p);
				break;
			case YAML_SCALAR_EVENT:
				on_scalar(p, &ev);
				break;
			case YAML_ALIAS_EVENT:
				on_alias(p, &ev);
				break;
			case YAML_SEQUENCE_START_EVENT:
				on_start(p, &ev, NODE_SEQ);
				break;
			case YAML_MAPPING_START_EVENT:
				on_start(p, &ev, NODE_MAP);
				break;
			case YAML_SEQUENCE_END_EVENT:
			case YAML_MAPPING_END_EVENT:
				on_end(p);
				break;
			default:
				break;
			}
		}
		yaml_event_delete(&ev);
		if (type == YAML_STREAM_END_EVENT)
			break;
	}
out:
	yaml_parser_delete(&p->yp);
	if (r.fd >= 0)
		close(r.fd);
	free(r.in);
	free(r.out);
	arena_free(&p->tmp);
	free(p->kids);
	free(p->anchors);
	free(p->deferred);
	free(p);
}

/* ---- sets ------------------------------------------------------------------------ */

struct sl_resources *config_resources_new(void)
{
	struct sl_resources *r = calloc(1, sizeof(*r));
	struct cfg_set *set = calloc(1, sizeof(*set));

	if (!r || !set || !(set->stores = store_new())) {
		free(set);
		free(r);
		return NULL;
	}
	r->priv = set;
	return r;
}

static void labels_free(struct sl_labels *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].value);
	}
	free(l->v);
}

static void selector_free(struct sl_selector *s)
{
	labels_free(&s->match);
	for (size_t i = 0; i < s->n_exprs; i++) {
		free(s->exprs[i].key);
		for (size_t j = 0; j < s->exprs[i].n_values; j++)
			free(s->exprs[i].values[j]);
		free(s->exprs[i].values);
	}
	free(s->exprs);
}

static void rules_free(struct sl_np_rule *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < r[i].n_peers; j++) {
			free(r[i].peers[j].except);
			selector_free(&r[i].peers[j].pod_sel);
			selector_free(&r[i].peers[j].ns_sel);
		}
		free(r[i].peers);
		for (size_t j = 0; j < r[i].n_ports; j++)
			free(r[i].ports[j].name);
		free(r[i].ports);
	}
	free(r);
}

static void strs_free(struct sl_strs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static void authz_free(struct sl_authz *a)
{
	free(a->ns);
	free(a->name);
	labels_free(&a->selector);
	for (size_t i = 0; i < a->n_targets; i++) {
		free(a->targets[i].kind);
		free(a->targets[i].name);
		free(a->targets[i].group);
	}
	free(a->targets);
	for (size_t i = 0; i < a->n_rules; i++) {
		struct sl_authz_rule *r = &a->rules[i];

		for (size_t j = 0; j < r->n_from; j++) {
			struct sl_authz_source *f = &r->from[j];

			strs_free(&f->principals);
			strs_free(&f->not_principals);
			strs_free(&f->namespaces);
			strs_free(&f->not_namespaces);
			free(f->ip_blocks.v);
			free(f->not_ip_blocks.v);
			free(f->remote_ip_blocks.v);
			free(f->not_remote_ip_blocks.v);
			strs_free(&f->request_principals);
			strs_free(&f->not_request_principals);
		}
		free(r->from);
		for (size_t j = 0; j < r->n_to; j++) {
			struct sl_authz_operation *o = &r->to[j];

			free(o->ports);
			free(o->not_ports);
			strs_free(&o->hosts);
			strs_free(&o->not_hosts);
			strs_free(&o->methods);
			strs_free(&o->not_methods);
			strs_free(&o->paths);
			strs_free(&o->not_paths);
		}
		free(r->to);
		for (size_t j = 0; j < r->n_when; j++) {
			free(r->when[j].key);
			free(r->when[j].header);
			strs_free(&r->when[j].values);
			strs_free(&r->when[j].not_values);
		}
		free(r->when);
	}
	free(a->rules);
}

static void header_kvs_free(struct sl_header_kv *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].value);
	}
	free(v);
}

static void backend_free(struct sl_backend_ref *b);

static void filters_free(struct sl_route_filter *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		header_kvs_free(f[i].headers.set, f[i].headers.n_set);
		header_kvs_free(f[i].headers.add, f[i].headers.n_add);
		strs_free(&(struct sl_strs){ f[i].headers.remove, f[i].headers.n_remove });
		free(f[i].scheme);
		free(f[i].hostname);
		free(f[i].path.value);
		backend_free(&f[i].mirror);
		strs_free(&f[i].allow_origins);
		strs_free(&f[i].allow_methods);
		strs_free(&f[i].allow_headers);
		strs_free(&f[i].expose_headers);
		free(f[i].extension);
	}
	free(f);
}

static void backend_free(struct sl_backend_ref *b)
{
	free(b->group);
	free(b->kind);
	free(b->ns);
	free(b->name);
	filters_free(b->filters, b->n_filters);
}

static void kv_matches_free(struct sl_kv_match *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].value);
	}
	free(v);
}

static void route_free(struct sl_route *rt)
{
	free(rt->ns);
	free(rt->name);
	free(rt->created);
	for (size_t i = 0; i < rt->n_parents; i++) {
		free(rt->parents[i].group);
		free(rt->parents[i].kind);
		free(rt->parents[i].ns);
		free(rt->parents[i].name);
		free(rt->parents[i].section_name);
	}
	free(rt->parents);
	strs_free(&(struct sl_strs){ rt->hostnames, rt->n_hostnames });
	for (size_t i = 0; i < rt->n_rules; i++) {
		struct sl_route_rule *r = &rt->rules[i];

		free(r->name);
		for (size_t j = 0; j < r->n_matches; j++) {
			struct sl_http_match *m = &r->matches[j];

			free(m->path);
			kv_matches_free(m->headers, m->n_headers);
			kv_matches_free(m->query, m->n_query);
			free(m->method);
			free(m->grpc_service);
			free(m->grpc_method);
		}
		free(r->matches);
		filters_free(r->filters, r->n_filters);
		for (size_t j = 0; j < r->n_backends; j++)
			backend_free(&r->backends[j]);
		free(r->backends);
		free(r->retry.codes);
	}
	free(rt->rules);
}

static void gateway_free(struct sl_gateway *gw)
{
	free(gw->ns);
	free(gw->name);
	free(gw->class_name);
	for (size_t i = 0; i < gw->n_listeners; i++) {
		struct sl_listener *l = &gw->listeners[i];

		free(l->name);
		free(l->hostname);
		free(l->protocol);
		free(l->tls_mode);
		for (size_t j = 0; j < l->n_certs; j++) {
			free(l->certs[j].group);
			free(l->certs[j].kind);
			free(l->certs[j].ns);
			free(l->certs[j].name);
		}
		free(l->certs);
		selector_free(&l->routes_selector);
		for (size_t j = 0; j < l->n_route_kinds; j++) {
			free(l->route_kinds[j].group);
			free(l->route_kinds[j].kind);
		}
		free(l->route_kinds);
	}
	free(gw->listeners);
	free(gw->addresses);
}

static void ref_grant_free(struct sl_ref_grant *rg)
{
	free(rg->ns);
	free(rg->name);
	for (size_t i = 0; i < rg->n_from; i++) {
		free(rg->from[i].group);
		free(rg->from[i].kind);
		free(rg->from[i].ns);
	}
	free(rg->from);
	for (size_t i = 0; i < rg->n_to; i++) {
		free(rg->to[i].group);
		free(rg->to[i].kind);
		free(rg->to[i].name);
	}
	free(rg->to);
}

/* A set built by hand (priv NULL) owns each string and array by malloc, as
 * resources.h says; src.file is never freed (it may be a literal). */
static void resources_free_each(struct sl_resources *r)
{
	for (size_t i = 0; i < r->n_namespaces; i++) {
		free(r->namespaces[i].name);
		labels_free(&r->namespaces[i].labels);
	}
	for (size_t i = 0; i < r->n_pods; i++) {
		struct sl_pod *p = &r->pods[i];

		free(p->ns);
		free(p->name);
		free(p->node);
		free(p->service_account);
		labels_free(&p->labels);
		for (size_t j = 0; j < p->n_ports; j++)
			free(p->ports[j].name);
		free(p->ports);
	}
	for (size_t i = 0; i < r->n_services; i++) {
		struct sl_service *s = &r->services[i];

		free(s->ns);
		free(s->name);
		for (size_t j = 0; j < s->n_ports; j++) {
			free(s->ports[j].name);
			free(s->ports[j].target_port_name);
			free(s->ports[j].app_protocol);
		}
		free(s->ports);
		labels_free(&s->selector);
	}
	for (size_t i = 0; i < r->n_slices; i++) {
		struct sl_endpoint_slice *es = &r->slices[i];

		free(es->ns);
		free(es->name);
		free(es->service);
		for (size_t j = 0; j < es->n_ports; j++)
			free(es->ports[j].name);
		free(es->ports);
		for (size_t j = 0; j < es->n_endpoints; j++) {
			free(es->endpoints[j].addrs);
			free(es->endpoints[j].node);
			free(es->endpoints[j].pod);
		}
		free(es->endpoints);
	}
	for (size_t i = 0; i < r->n_netpols; i++) {
		struct sl_netpol *np = &r->netpols[i];

		free(np->ns);
		free(np->name);
		selector_free(&np->pod_sel);
		rules_free(np->ingress, np->n_ingress);
		rules_free(np->egress, np->n_egress);
	}
	for (size_t i = 0; i < r->n_authzs; i++)
		authz_free(&r->authzs[i]);
	for (size_t i = 0; i < r->n_peerauthns; i++) {
		free(r->peerauthns[i].ns);
		free(r->peerauthns[i].name);
		labels_free(&r->peerauthns[i].selector);
		free(r->peerauthns[i].ports);
	}
	for (size_t i = 0; i < r->n_routes; i++)
		route_free(&r->routes[i]);
	for (size_t i = 0; i < r->n_gateways; i++)
		gateway_free(&r->gateways[i]);
	for (size_t i = 0; i < r->n_gateway_classes; i++) {
		free(r->gateway_classes[i].name);
		free(r->gateway_classes[i].controller);
	}
	for (size_t i = 0; i < r->n_ref_grants; i++)
		ref_grant_free(&r->ref_grants[i]);
	for (size_t i = 0; i < r->n_secrets; i++) {
		free(r->secrets[i].ns);
		free(r->secrets[i].name);
		free(r->secrets[i].type);
		free(r->secrets[i].tls_crt);
		free(r->secrets[i].tls_key);
	}
}

void resources_free(struct sl_resources *r)
{
	struct cfg_set *set;

	if (!r)
		return;
	set = r->priv;
	if (set) {
		store_free(set->stores);
		free(set);
	} else {
		resources_free_each(r);
	}
#define FREE_ARRAY(v)	free(r->v);
	RES_ARRAYS(FREE_ARRAY)
#undef FREE_ARRAY
	free(r);
}

struct diag_ord {
	int line;
	size_t idx;
};

static int diag_ord_cmp(const void *a, const void *b)
{
	const struct diag_ord *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* A file's problems in line order (decoders find them in field order). */
static void unit_finish(struct unit *u)
{
	struct diag_ord *ord = NULL;
	struct diag *v = NULL;

	if (u->errs.n > 1 && (ord = malloc(u->errs.n * sizeof(*ord))) &&
	    (v = malloc(u->errs.n * sizeof(*v)))) {
		for (size_t i = 0; i < u->errs.n; i++)
			ord[i] = (struct diag_ord){ u->errs.v[i].line, i };
		qsort(ord, u->errs.n, sizeof(*ord), diag_ord_cmp);
		for (size_t i = 0; i < u->errs.n; i++)
			v[i] = u->errs.v[ord[i].idx];
		memcpy(u->errs.v, v, u->errs.n * sizeof(*v));
	}
	free(ord);
	free(v);
	if (u->n_problems > CFG_MAX_PROBLEMS)
		diags_add(&u->errs, u->name, 0, "%zu more problems not shown",
			  u->n_problems - CFG_MAX_PROBLEMS);
}

int config_decode_buf(struct sl_resources *res, const char *name, const char *buf, size_t len,
		      struct diags *errs)
{
	struct cfg_set *set = res ? res->priv : NULL;
	struct unit u = { .name = name ? name : "(buffer)", .buf = buf ? buf : "", .len = buf ? len : 0,
			  .json = -1 };

	if (!set || !set->stores)
		return -EINVAL;
	if (len > CFG_MAX_FILE) {
		diags_add(errs, u.name, 0, "too large (%zu MiB; at most %u MiB)", len >> 20, CFG_MAX_FILE >> 20);
		return -EINVAL;
	}
#define COPY_IN(v)	u.res.v = res->v; u.res.n_##v = res->n_##v;
	RES_ARRAYS(COPY_IN)
#undef COPY_IN
	u.caps = set->caps;
	unit_parse(&u, set->stores);
	unit_finish(&u);
#define COPY_OUT(v)	res->v = u.res.v; res->n_##v = u.res.n_##v;
	RES_ARRAYS(COPY_OUT)
#undef COPY_OUT
	res->n_ignored += u.res.n_ignored;
	set->caps = u.caps;
	diags_move(errs, &u.errs);
	return u.n_problems ? -EINVAL : 0;
}

/* ---- loading a directory ---------------------------------------------------------- */

struct units {
	struct unit *v;
	size_t n, cap;
	size_t next;			/* the next unit to parse (threads take turns) */
};

static struct unit *units_add(struct units *us, char *path, const char *name)
{
	struct unit *u;

	if (us->n == us->cap) {
		size_t cap = us->cap ? us->cap * 2 : 64;
		struct unit *v = realloc(us->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		us->v = v;
		us->cap = cap;
	}
	u = &us->v[us->n++];
	memset(u, 0, sizeof(*u));
	u->path = path;
	u->name = name;
	u->json = -1;
	return u;
}

/* A unit that only carries a problem found while listing; the name for
 * messages is path from rel on (all of path if that is nothing). */
static int units_problem(struct units *us, const char *path, size_t rel, int err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int units_problem(struct units *us, const char *path, size_t rel, int err, const char *fmt, ...)
{
	char *copy = strdup(path), msg[512];
	struct unit *u;
	va_list ap;

	if (!copy)
		return -ENOMEM;
	u = units_add(us, copy, rel < strlen(copy) ? copy + rel : copy);
	if (!u) {
		free(copy);
		return -ENOMEM;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	u->done = true;
	u->own_path = true;
	u->n_problems = 1;
	u->io_err = err;
	diags_add(&u->errs, u->name, 0, "%s", msg);
	return 0;
}

static bool config_name(const char *name)
{
	size_t n = strlen(name);

	return (n > 5 && !strcasecmp(name + n - 5, ".yaml")) || (n > 4 && !strcasecmp(name + n - 4, ".yml")) ||
	       (n > 5 && !strcasecmp(name + n - 5, ".json"));
}

static bool is_blank_or_break(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

#define SCAN_LOOK 256		/* bytes of a line the scan looks at */

struct cut {
	off_t off;
	size_t lines;			/* line breaks before off */
};

struct cuts {
	struct cut *v;
	size_t n, cap;
};

enum { LS_ROOT, LS_ITEMS_START, LS_ITEMS, LS_NONE };

/* What a scan of a big file found: where it may be cut. */
struct scan {
	bool json;
	struct cuts docs;		/* YAML: "---" lines */
	struct cuts items;		/* a List's item boundaries */
	off_t doc_piece, item_piece;	/* where the current pieces started */
	bool content;			/* a document has begun */
	bool directive;			/* the last line was a %directive */
	int state;			/* LS_*: where in a List the scan is */
	size_t item_ind, root_ind;	/* indentation of items, of JSON root keys */
	bool after_item;		/* JSON: the last non-blank line ended "}," */
	struct cut items_end;		/* the first line after the items */
	bool have_items_end;
	char kind[64], api[128];	/* the root's kind and apiVersion */
	char keys[32][32];		/* the root's keys, to see one twice */
	int n_keys;
	bool nomem;
};

static void cuts_add(struct scan *sc, struct cuts *c, off_t off, size_t lines)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct cut *v = realloc(c->v, cap * sizeof(*v));

		if (!v) {
			sc->nomem = true;
			return;
		}
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = (struct cut){ off, lines };
}

/* A root key; false when seen before (or too many to tell). */
static bool scan_key(struct scan *sc, const unsigned char *k, size_t n)
{
	if (n >= sizeof(sc->keys[0]) || sc->n_keys == (int)(sizeof(sc->keys) / sizeof(sc->keys[0])))
		return false;
	for (int i = 0; i < sc->n_keys; i++)
		if (strlen(sc->keys[i]) == n && !memcmp(sc->keys[i], k, n))
			return false;
	memcpy(sc->keys[sc->n_keys], k, n);
	sc->keys[sc->n_keys++][n] = '\0';
	return true;
}

/* A simple value (v1, "List", 'discovery.k8s.io/v1') into out, or "". */
static void scan_value(const unsigned char *v, size_t n, char *out, size_t size)
{
	unsigned char q = n && (v[0] == '"' || v[0] == '\'') ? v[0] : 0;
	size_t i = q ? 1 : 0, start = i;

	out[0] = '\0';
	while (i < n && (is_alnum((char)v[i]) || v[i] == '.' || v[i] == '/' || v[i] == '-' || v[i] == '_'))
		i++;
	if (i == start || i - start >= size || (q && (i == n || v[i] != q)))
		return;
	if (i + (q != 0) < n && !strchr(" \t\r\n,#", v[i + (q != 0)]))
		return;
	memcpy(out, v + start, i - start);
	out[i - start] = '\0';
}

static bool is_entry(const unsigned char *r, size_t n)
{
	return r[0] == '-' && (n == 1 || is_blank_or_break(r[1]));
}

/* One line of YAML: "---" lines, and the layout of a root List (root keys at
 * column 0, "items:" alone, entries "- " at one indentation). */
static void scan_yaml_line(struct scan *sc, const unsigned char *l, size_t n, off_t at, size_t lines)
{
	const unsigned char *r, *v;
	size_t ind = 0, rn, kn = 0, vn;

	while (ind < n && l[ind] == ' ')
		ind++;
	r = l + ind;
	rn = n - ind;
	if (!rn || r[0] == '#' || r[0] == '\r' || r[0] == '\n')
		return;
	if (!ind && rn >= 3 && !memcmp(r, "---", 3) && (rn == 3 || is_blank_or_break(r[3]))) {
		if (!sc->directive && at - sc->doc_piece >= (off_t)CFG_SPLIT_BYTES) {
			cuts_add(sc, &sc->docs, at, lines);
			sc->doc_piece = at;
		}
		if (sc->content)
			sc->state = LS_NONE;	/* a second document: not one List */
		sc->directive = false;
		return;
	}
	if (!ind && r[0] == '%') {
		sc->directive = true;
		return;
	}
	sc->directive = false;
	if (!ind && rn >= 3 && !memcmp(r, "...", 3))
		sc->state = LS_NONE;
	sc->content = true;
	switch (sc->state) {
	case LS_NONE:
		return;
	case LS_ITEMS_START:
		sc->state = is_entry(r, rn) ? LS_ITEMS : LS_NONE;
		sc->item_ind = ind;
		return;
	case LS_ITEMS:
		if (ind > sc->item_ind || (ind == sc->item_ind && is_entry(r, rn))) {
			if (ind == sc->item_ind && at - sc->item_piece >= (off_t)CFG_SPLIT_BYTES) {
				cuts_add(sc, &sc->items, at, lines);
				sc->item_piece = at;
			}
			return;
		}
		if (ind) {		/* items end at a root key, or the YAML is wrong */
			sc->state = LS_NONE;
			return;
		}
		sc->items_end = (struct cut){ at, lines };
		sc->have_items_end = true;
		sc->state = LS_ROOT;
		break;
	}
	if (ind)
		return;			/* inside a root value */
	while (kn < rn && (is_alnum((char)r[kn]) || strchr("_./-", r[kn])))
		kn++;
	if (!kn || kn == rn || r[kn] != ':' || (kn + 1 < rn && !is_blank_or_break(r[kn + 1])) ||
	    !scan_key(sc, r, kn)) {
		sc->state = LS_NONE;	/* not a plain root key (or one twice): do not cut */
		return;
	}
	v = r + kn + 1;
	vn = rn - kn - 1;
	while (vn && (*v == ' ' || *v == '\t')) {
		v++;
		vn--;
	}
	if (kn == 5 && !memcmp(r, "items", 5) && (!vn || *v == '#' || *v == '\r' || *v == '\n'))
		sc->state = LS_ITEMS_START;
	else if (kn == 4 && !memcmp(r, "kind", 4))
		scan_value(v, vn, sc->kind, sizeof(sc->kind));
	else if (kn == 10 && !memcmp(r, "apiVersion", 10))
		scan_value(v, vn, sc->api, sizeof(sc->api));
}

/* One line of pretty-printed JSON (kubectl, jq): a root object whose keys
 * share one indentation, "items": [ alone, items starting at one indentation.
 * JSON strings hold no line breaks, so every line starts outside of one. */
static void scan_json_line_at(struct scan *sc, const unsigned char *l, size_t n, off_t at, size_t lines)
{
	const unsigned char *r, *v;
	size_t ind = 0, rn, kn = 0, vn;

	while (ind < n && (l[ind] == ' ' || l[ind] == '\t'))
		ind++;
	r = l + ind;
	rn = n - ind;
	if (!rn || r[0] == '\r' || r[0] == '\n' || sc->state == LS_NONE)
		return;
	if (!sc->content) {		/* "{" alone opens the root */
		sc->content = true;
		if (r[0] != '{' || (rn > 1 && !is_blank_or_break(r[1])))
			sc->state = LS_NONE;
		return;
	}
	switch (sc->state) {
	case LS_ITEMS_START:
	case LS_ITEMS:
		if (ind == sc->root_ind && r[0] == ']') {
			sc->items_end = (struct cut){ at, lines };
			sc->have_items_end = true;
			sc->state = LS_ROOT;
		} else if (sc->state == LS_ITEMS_START) {
			sc->item_ind = ind;
			sc->state = LS_ITEMS;
		} else if (ind == sc->item_ind && r[0] != '}' && r[0] != ']' && sc->after_item &&
			   at - sc->item_piece >= (off_t)CFG_SPLIT_BYTES) {
			cuts_add(sc, &sc->items, at, lines);
			sc->item_piece = at;
		}
		return;
	}
	if (sc->root_ind == SIZE_MAX)
		sc->root_ind = ind;
	if (ind < sc->root_ind && r[0] != '}') {
		sc->state = LS_NONE;	/* not the layout we know */
		return;
	}
	if (ind != sc->root_ind || r[0] == '}')
		return;			/* inside a root value, or the root's end */
	while (kn + 1 < rn && r[kn + 1] != '"' && r[kn + 1] != '\\')
		kn++;
	if (r[0] != '"' || kn + 1 >= rn || r[kn + 1] != '"' || !scan_key(sc, r + 1, kn)) {
		sc->state = LS_NONE;
		return;
	}
	v = r + kn + 2;
	vn = rn - kn - 2;
	while (vn && (*v == ' ' || *v == '\t' || *v == ':')) {
		v++;
		vn--;
	}
	if (kn == 5 && !memcmp(r + 1, "items", 5) && vn && *v == '[' &&
	    (vn == 1 || is_blank_or_break(v[1])))
		sc->state = LS_ITEMS_START;
	else if (kn == 4 && !memcmp(r + 1, "kind", 4))
		scan_value(v, vn, sc->kind, sizeof(sc->kind));
	else if (kn == 10 && !memcmp(r + 1, "apiVersion", 10))
		scan_value(v, vn, sc->api, sizeof(sc->api));
}

/* A line starts an item only right after "}," ends the one before: an item
 * boundary found by indentation alone could split text that does not parse
 * whole (say "},NULL" then "{") into pieces that each parse. A line longer
 * than the scan's look (n == SCAN_LOOK) has an unknown end: no cut after it. */
static void scan_json_line(struct scan *sc, const unsigned char *l, size_t n, off_t at, size_t lines)
{
	size_t e = n;

	scan_json_line_at(sc, l, n, at, lines);
	while (e && is_blank_or_break(l[e - 1]))
		e--;
	if (e)
		sc->after_item = n < SCAN_LOOK && e >= 2 && l[e - 2] == '}' && l[e - 1] == ',';
}

/* Read the file once, counting lines as libyaml does (LF, CR LF, lone CR),
 * and let the scanner look at the start of every line. */
static void scan_file(struct scan *sc, int fd, const char *name)
{
	unsigned char *buf = malloc(1u << 20);
	size_t have = 0, lines = 0;
	bool bol = true, cr = false;
	off_t base = 0;

	if (!buf) {
		sc->nomem = true;
		return;
	}
	for (;;) {
		ssize_t n = pread(fd, buf + have, (1u << 20) - have, base + (off_t)have);
		size_t end;
		bool eof, has_cr;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sc->nomem = true;	/* unit_parse reports the error */
			break;
		}
		eof = n == 0;
		have += (size_t)n;
		/* UTF-16 (libyaml reads it after a BOM) is not byte-searchable,
		 * and a piece without the BOM would be read as UTF-8 */
		if (base == 0 && have >= 2 &&
		    (!buf[0] || !buf[1] || (buf[0] == 0xff && buf[1] == 0xfe) ||
		     (buf[0] == 0xfe && buf[1] == 0xff))) {
			sc->nomem = true;
			break;
		}
		if (base == 0)
			sc->json = sniff_json(name, buf, have);
		end = eof ? have : (have > SCAN_LOOK ? have - SCAN_LOOK : 0);
		has_cr = memchr(buf, '\r', end) != NULL;
		for (size_t i = 0; i < end && !sc->nomem; i++) {
			unsigned char c;

			if (!bol && !has_cr) {	/* the common case: on to the next line */
				const unsigned char *q = memchr(buf + i, '\n', end - i);

				if (!q)
					break;
				i = (size_t)(q - buf);
			}
			c = buf[i];
			if (bol && c != '\n' && c != '\r') {
				size_t len = have - i < SCAN_LOOK ? have - i : SCAN_LOOK;
				const unsigned char *eol = memchr(buf + i, '\n', len);

				if (eol)
					len = (size_t)(eol - (buf + i));
				if (sc->json)
					scan_json_line(sc, buf + i, len, base + (off_t)i, lines);
				else
					scan_yaml_line(sc, buf + i, len, base + (off_t)i, lines);
				bol = false;
			}
			if (c == '\n' || c == '\r') {
				if (c == '\r' || !cr)
					lines++;
				bol = true;
			}
			cr = c == '\r';
		}
		if (eof || sc->nomem)
			break;
		memmove(buf, buf + end, have - end);
		base += (off_t)end;
		have -= end;
	}
	free(buf);
}

static struct unit *piece_add(struct units *us, char *path, const char *name, const struct scan *sc,
			      enum unit_role role, struct cut from, off_t to)
{
	struct unit *u = units_add(us, path, name);

	if (!u)
		return NULL;
	u->off = from.off;
	u->end = to;			/* 0: to the end, whatever it is by then */
	u->line0 = (int)from.lines;
	u->json = sc->json;
	u->role = role;
	if (role != ROLE_WHOLE) {
		snprintf(u->list_kind, sizeof(u->list_kind), "%s", sc->kind);
		snprintf(u->list_api, sizeof(u->list_api), "%s", sc->api);
	}
	if (sc->json && role == ROLE_LIST_HEAD)
		u->post = "]}";
	else if (sc->json && role == ROLE_LIST_ITEMS)
		u->pre = "[", u->post = "]";
	else if (sc->json && role == ROLE_LIST_TAIL)
		u->pre = "{\"items\": [";
	return u;
}

/* Add a file as units: whole, or cut in pieces of about CFG_SPLIT_BYTES that
 * threads parse apart. A YAML file is cut at "---" lines (a document start at
 * column 0 is one wherever it appears: YAML forbids it inside any node). A
 * big List, YAML or pretty-printed JSON, is cut between items, by layout:
 * should a cut be wrong, some piece fails to parse, and load_file_whole()
 * parses the file again in one piece (as it does for any syntax problem).
 * Takes path. */
static int split_file(struct units *us, char *path, const char *name, off_t size, int threads)
{
	struct scan sc = { .root_ind = SIZE_MAX };
	bool list = false;
	size_t first = us->n, n_cuts = 0;
	struct cut *cuts = NULL;
	int fd = -1;

	if (threads >= 2 && size >= 2 * (off_t)CFG_SPLIT_BYTES &&
	    (fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) >= 0) {
		scan_file(&sc, fd, name);
		close(fd);
		list = !sc.nomem && sc.state != LS_NONE && sc.have_items_end && sc.items.n &&
		       kind_is_list_str(sc.kind);
		if (list) {
			cuts = sc.items.v;
			n_cuts = sc.items.n;
		} else if (!sc.nomem && !sc.json) {
			cuts = sc.docs.v;
			n_cuts = sc.docs.n;
		}
	}
	if (list) {
		if (!piece_add(us, path, name, &sc, ROLE_LIST_HEAD, (struct cut){ 0, 0 }, cuts[0].off))
			goto nomem;
		for (size_t k = 0; k < n_cuts; k++)
			if (!piece_add(us, path, name, &sc, ROLE_LIST_ITEMS, cuts[k],
				       k + 1 < n_cuts ? cuts[k + 1].off : sc.items_end.off))
				goto nomem;
		if (!piece_add(us, path, name, &sc, ROLE_LIST_TAIL, sc.items_end, 0))
			goto nomem;
	} else {
		for (size_t k = 0; k <= n_cuts; k++) {
			struct unit *u = piece_add(us, path, name, &sc, ROLE_WHOLE,
						   k ? cuts[k - 1] : (struct cut){ 0, 0 },
						   k < n_cuts ? cuts[k].off : 0);

			if (!u)
				goto nomem;
			u->json = n_cuts ? 0 : -1;
		}
	}
	us->v[first].own_path = true;
	free(sc.docs.v);
	free(sc.items.v);
	return 0;
nomem:
	if (us->n > first)
		us->v[first].own_path = true;
	else
		free(path);
	free(sc.docs.v);
	free(sc.items.v);
	return -ENOMEM;
}

/* Does a root key of a cut List's head show up in its tail too? */
static bool root_keys_twice(const struct unit *head, const struct unit *tail)
{
	for (size_t i = 0; i < head->n_root_keys; i++)
		for (size_t j = 0; j < tail->n_root_keys; j++)
			if (!strcmp(head->root_keys[i], tail->root_keys[j]))
				return true;
	return false;
}

/* A cut file whose pieces did not all parse: drop what they found and parse
 * it in one piece. A List may have been cut wrong; and in any file a broken
 * document stops the file, and libyaml's reader, decoding ahead, reports bad
 * bytes before the problems of the lines just above them: only one parse of
 * the whole file reports what config_decode_buf() would. */
static void load_file_whole(struct units *us, size_t first, size_t end, struct store *st)
{
	struct unit *u = &us->v[first];

	for (size_t i = first; i < end; i++) {
		struct unit *v = &us->v[i];

#define FREE_ARRAY(a)	free(v->res.a);
		RES_ARRAYS(FREE_ARRAY)
#undef FREE_ARRAY
		diags_clear(&v->errs);
		memset(&v->res, 0, sizeof(v->res));
		memset(&v->caps, 0, sizeof(v->caps));
		memset(v->ignored, 0, sizeof(v->ignored));
		v->n_problems = 0;
		v->io_err = 0;
		v->done = true;
	}
	u->role = ROLE_WHOLE;
	u->off = u->end = 0;
	u->line0 = 0;
	u->pre = u->post = NULL;
	u->json = -1;
	u->list_kind[0] = u->list_api[0] = '\0';
	unit_parse(u, st);
	unit_finish(u);
}

struct dir_id {
	dev_t dev;
	ino_t ino;
};

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* List dir (path, whose name for messages starts at path + rel) into units, in
 * name order, recursively. Returns 0 or -ENOMEM; problems become units. */
static int walk_dir(struct units *us, const char *path, size_t rel, struct dir_id *up, int depth,
		    int threads)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int ret = 0;
	DIR *dir;

	dir = opendir(path);
	if (!dir) {
		int err = errno;

		return units_problem(us, path, rel, -err, "cannot open directory: %s", strerror(err));
	}
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')	/* hidden, and ConfigMap's ..data, ..2024_* */
			continue;
		if (n == cap) {
			char **v = realloc(names, (cap = cap ? cap * 2 : 32) * sizeof(*v));

			if (!v) {
				ret = -ENOMEM;
				goto out;
			}
			names = v;
		}
		if (!(names[n] = strdup(de->d_name))) {
			ret = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n && !ret; i++) {
		char *full = NULL;
		const char *name;
		struct stat sb;

		if (asprintf(&full, "%s/%s", path, names[i]) == -1) {
			ret = -ENOMEM;
			break;
		}
		name = full + rel;
		if (stat(full, &sb) == -1) {		/* follows symlinks */
			int err = errno;

			if (config_name(names[i]))
				ret = units_problem(us, full, rel, -err, "cannot read: %s", strerror(err));
			free(full);
			continue;
		}
		if (S_ISDIR(sb.st_mode)) {
			bool loop = false;

			for (int k = 0; k <= depth; k++)
				if (up[k].dev == sb.st_dev && up[k].ino == sb.st_ino)
					loop = true;
			if (loop) {
				free(full);	/* a symlink back up the tree: seen already */
				continue;
			}
			if (depth + 1 >= CFG_MAX_DIR_DEPTH) {
				ret = units_problem(us, full, rel, 0, "directories nested deeper than %d",
						    CFG_MAX_DIR_DEPTH);
				free(full);
				continue;
			}
			up[depth + 1] = (struct dir_id){ sb.st_dev, sb.st_ino };
			ret = walk_dir(us, full, rel, up, depth + 1, threads);
			free(full);
			continue;
		}
		if (!config_name(names[i])) {
			free(full);
			continue;
		}
		if (!S_ISREG(sb.st_mode)) {
			ret = units_problem(us, full, rel, 0, "not a regular file");
			free(full);
		} else if ((unsigned long long)sb.st_size > CFG_MAX_FILE) {
			ret = units_problem(us, full, rel, 0, "file too large (%lld MiB; at most %u MiB)",
					    (long long)sb.st_size >> 20, CFG_MAX_FILE >> 20);
			free(full);
		} else {
			ret = split_file(us, full, name, sb.st_size, threads);	/* takes full */
		}
	}
out:
	closedir(dir);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return ret;
}

struct worker {
	pthread_t tid;
	struct units *us;
	struct store *st;
	bool started;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	struct units *us = w->us;

	for (;;) {
		size_t i = __atomic_fetch_add(&us->next, 1, __ATOMIC_RELAXED);

		if (i >= us->n)
			break;
		if (!us->v[i].done)
			unit_parse(&us->v[i], w->st);
		unit_finish(&us->v[i]);
	}
	return NULL;
}

/* Concatenate the units' results, in unit order, into res. */
static int units_merge(struct units *us, struct sl_resources *res)
{
	struct cfg_set *set = res->priv;

	for (size_t i = 0; i < us->n; i++)
		res->n_ignored += us->v[i].res.n_ignored;
#define MERGE(a)									\
	do {										\
		size_t n = 0;								\
											\
		for (size_t i = 0; i < us->n; i++)					\
			n += us->v[i].res.n_##a;					\
		res->a = malloc((n ? n : 1) * sizeof(*res->a));				\
		if (!res->a)								\
			return -ENOMEM;							\
		set->caps.a = n ? n : 1;						\
		for (size_t i = 0; i < us->n; i++) {					\
			const struct unit *u = &us->v[i];				\
											\
			if (u->res.n_##a) {						\
				memcpy(res->a + res->n_##a, u->res.a,			\
				       u->res.n_##a * sizeof(*res->a));			\
				res->n_##a += u->res.n_##a;				\
			}								\
		}									\
	} while (0);
	RES_ARRAYS(MERGE)
#undef MERGE
	return 0;
}

static void units_free(struct units *us)
{
	for (size_t i = 0; i < us->n; i++) {
		struct unit *u = &us->v[i];

#define FREE_ARRAY(v)	free(u->res.v);
		RES_ARRAYS(FREE_ARRAY)
#undef FREE_ARRAY
		diags_clear(&u->errs);
		for (size_t k = 0; k < u->n_root_keys; k++)
			free(u->root_keys[k]);
		free(u->root_keys);
		if (u->own_path)
			free(u->path);
	}
	free(us->v);
}

static void log_ignored(const char *dir, const struct units *us, size_t total)
{
	char list[512] = "";
	size_t o = 0;

	if (!total)
		return;
	for (size_t k = 0; k <= N_KINDS; k++) {
		size_t c = 0;

		for (size_t i = 0; i < us->n; i++)
			c += us->v[i].ignored[k];
		if (c)
			o = clamp_add(o, snprintf(list + o, sizeof(list) - o, "%s%zu %s", o ? ", " : "", c,
						  k == IGN_FQDN ? "FQDN EndpointSlice" : kinds[k].kind),
				      sizeof(list));
	}
	pr_info("config: %s: ignoring %zu objects of kinds not handled yet (%s)", dir, total, list);
}

static int cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > CFG_MAX_THREADS ? CFG_MAX_THREADS : (int)n;
}

int config_load_dir(const char *dir, struct sl_resources **out, struct diags *errs)
{
	struct worker workers[CFG_MAX_THREADS] = { 0 };
	struct dir_id up[CFG_MAX_DIR_DEPTH];
	struct units us = { 0 };
	struct sl_resources *res;
	struct cfg_set *set;
	size_t problems = 0, shown = 0;
	int threads = cpu_count(), ret, io_err = 0;
	size_t dlen = strlen(dir);
	struct stat sb;
	char *root;

	*out = NULL;
	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	if (stat(dir, &sb) == -1) {
		ret = -errno;
		diags_add(errs, dir, 0, "cannot open directory: %s", strerror(-ret));
		return ret;
	}
	res = config_resources_new();
	root = strndup(dir, dlen);
	if (!res || !root) {
		ret = -ENOMEM;
		goto out;
	}
	set = res->priv;
	up[0] = (struct dir_id){ sb.st_dev, sb.st_ino };
	ret = walk_dir(&us, root, dlen + 1, up, 0, threads);
	if (ret)
		goto out;
	if ((size_t)threads > us.n)
		threads = us.n ? (int)us.n : 1;
	workers[0].st = set->stores;
	for (int i = 1; i < threads; i++) {
		workers[i].st = store_new();
		if (!workers[i].st)
			break;
		workers[i].st->next = set->stores;	/* the set owns every store */
		set->stores = workers[i].st;
	}
	for (int i = 0; i < threads && workers[i].st; i++) {
		workers[i].us = &us;
		if (i && !pthread_create(&workers[i].tid, NULL, worker_run, &workers[i]))
			workers[i].started = true;
	}
	worker_run(&workers[0]);
	for (int i = 1; i < threads; i++)
		if (workers[i].started)
			pthread_join(workers[i].tid, NULL);
	for (size_t i = 0, j; i < us.n; i = j) {	/* cut files that did not parse */
		bool suspect = false, saw_kind = false, saw_api = false;

		for (j = i; j < us.n && us.v[j].path == us.v[i].path; j++) {
			suspect |= us.v[j].suspect;
			saw_kind |= us.v[j].saw_kind;
			saw_api |= us.v[j].saw_api;
		}
		if (us.v[i].role != ROLE_WHOLE)	/* a cut List: did the root confirm the scan? */
			suspect |= (us.v[i].list_kind[0] && !saw_kind) || (us.v[i].list_api[0] && !saw_api) ||
				   root_keys_twice(&us.v[i], &us.v[j - 1]);
		if (suspect && j - i > 1)
			load_file_whole(&us, i, j, workers[0].st);
	}
	ret = units_merge(&us, res);
	if (ret)
		goto out;
	for (size_t i = 0; i < us.n; i++) {
		problems += us.v[i].n_problems;
		shown += us.v[i].errs.n;
		if (us.v[i].io_err && !io_err)
			io_err = us.v[i].io_err;
	}
	/* Each unit says itself when it has more than it shows; over units,
	 * keep the first CFG_MAX_PROBLEMS and say how many there were. */
	for (size_t i = 0, k = 0; i < us.n; i++) {
		struct unit *u = &us.v[i];

		for (size_t j = 0; j < u->errs.n; j++, k++)
			if (shown <= CFG_MAX_PROBLEMS + 1 || k < CFG_MAX_PROBLEMS)
				diags_add(errs, u->errs.v[j].file, u->errs.v[j].line, "%s", u->errs.v[j].msg);
	}
	if (shown > CFG_MAX_PROBLEMS + 1)
		diags_add(errs, NULL, 0, "%zu problems in all; only the first %d are shown", problems,
			  CFG_MAX_PROBLEMS);
	if (problems) {
		ret = io_err ? io_err : -EINVAL;
		goto out;
	}
	log_ignored(root, &us, res->n_ignored);
	*out = res;
	res = NULL;
out:
	if (ret == -ENOMEM)
		diags_add(errs, dir, 0, "out of memory");
	units_free(&us);
	resources_free(res);
	free(root);
	return ret;
}

/* ---- watching ------------------------------------------------------------------------ */

#define WATCH_DEBOUNCE_MS	100
#define WATCH_MAX_DELAY_MS	1000	/* a steady stream of events still reloads this often */
#define WATCH_RETRY_MS		1000	/* the directory is gone: look again this often */
#define WATCH_MASK	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | \
			 IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB | IN_ONLYDIR)

struct watch_dir {
	int wd;
	bool seen;			/* found by the current rescan */
	char *path;
};

struct config_watch {
	struct loop *loop;
	struct loop_io io;
	struct loop_timer timer;
	int fd;
	char *root;
	struct watch_dir *dirs;
	size_t n_dirs, cap_dirs;
	bool root_ok;			/* root is watched */
	bool rescan;			/* directories changed: re-walk before reporting */
	bool pending;			/* changed() is due */
	uint64_t first_ms;		/* first event of the pending burst */
	void (*changed)(void *arg);
	void *arg;
};

static struct watch_dir *watch_find(struct config_watch *w, int wd)
{
	for (size_t i = 0; i < w->n_dirs; i++)
		if (w->dirs[i].wd == wd)
			return &w->dirs[i];
	return NULL;
}

static int watch_add(struct config_watch *w, const char *path)
{
	int wd = inotify_add_watch(w->fd, path, WATCH_MASK);
	struct watch_dir *d;
	char *copy;

	if (wd == -1)
		return -errno;
	d = watch_find(w, wd);
	if (d && d->seen)
		return -ELOOP;		/* the same directory by another path */
	copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	if (d) {
		free(d->path);
		d->path = copy;
		d->seen = true;
		return 0;
	}
	if (w->n_dirs == w->cap_dirs) {
		size_t cap = w->cap_dirs ? w->cap_dirs * 2 : 16;
		struct watch_dir *v = realloc(w->dirs, cap * sizeof(*v));

		if (!v) {
			free(copy);
			return -ENOMEM;	/* stays watched; the next rescan drops it */
		}
		w->dirs = v;
		w->cap_dirs = cap;
	}
	w->dirs[w->n_dirs++] = (struct watch_dir){ .wd = wd, .seen = true, .path = copy };
	return 0;
}

/* Watch path and the directories below it that config_load_dir reads. */
static int watch_tree(struct config_watch *w, const char *path, int depth)
{
	struct dirent *de;
	DIR *dir;
	int ret;

	ret = watch_add(w, path);
	if (ret)
		return ret == -ELOOP ? 0 : ret;
	if (depth + 1 >= CFG_MAX_DIR_DEPTH || !(dir = opendir(path)))
		return 0;
	while ((de = readdir(dir))) {
		struct stat sb;
		char *sub;

		if (de->d_name[0] == '.' || de->d_type == DT_REG)
			continue;
		if (asprintf(&sub, "%s/%s", path, de->d_name) == -1)
			break;
		if (!stat(sub, &sb) && S_ISDIR(sb.st_mode))
			watch_tree(w, sub, depth + 1);
		free(sub);
	}
	closedir(dir);
	return 0;
}

/* Re-walk the tree: watch new directories, drop the watches of gone ones. */
static void watch_rescan(struct config_watch *w)
{
	size_t k = 0;

	for (size_t i = 0; i < w->n_dirs; i++)
		w->dirs[i].seen = false;
	w->root_ok = watch_tree(w, w->root, 0) == 0;
	for (size_t i = 0; i < w->n_dirs; i++) {
		if (w->dirs[i].seen) {
			w->dirs[k++] = w->dirs[i];
		} else {
			inotify_rm_watch(w->fd, w->dirs[i].wd);
			free(w->dirs[i].path);
		}
	}
	w->n_dirs = k;
}

static void watch_timer(struct loop_timer *t)
{
	struct config_watch *w = t->arg;
	bool had_root = w->root_ok;

	if (w->rescan || !w->root_ok) {
		w->rescan = false;
		watch_rescan(w);
	}
	if (!w->root_ok) {		/* gone: poll until it is back */
		loop_timer_arm(w->loop, &w->timer, WATCH_RETRY_MS);
		if (!w->pending)
			return;
	} else if (!had_root) {
		w->pending = true;	/* back: whatever is there now is new */
	}
	if (!w->pending)
		return;
	w->pending = false;
	w->changed(w->arg);		/* last: it may free w */
}

static void watch_kick(struct config_watch *w)
{
	uint64_t now = loop_now_ms();

	if (!w->pending) {
		w->pending = true;
		w->first_ms = now;
	}
	if (now - w->first_ms < WATCH_MAX_DELAY_MS - WATCH_DEBOUNCE_MS)
		loop_timer_arm(w->loop, &w->timer, WATCH_DEBOUNCE_MS);
	else if (!loop_timer_armed(&w->timer))
		loop_timer_arm(w->loop, &w->timer, 0);
}

/* What one event means: 0 nothing, 1 reload, 2 rescan directories and reload. */
static int watch_event(struct config_watch *w, const struct inotify_event *ev)
{
	struct watch_dir *d = watch_find(w, ev->wd);
	const char *name = ev->len ? ev->name : "";
	struct stat sb;
	char *path;
	int ret;

	if (ev->mask & IN_Q_OVERFLOW)
		return 2;
	if (ev->mask & IN_IGNORED)	/* gone; when not ours, rm_watch said so already */
		return d ? 2 : 0;
	if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF))
		return 2;
	if (!name[0] || !d)
		return 0;		/* about the directory itself (attributes) */
	if (name[0] == '.')		/* editor swap files; but ConfigMaps swap ..data */
		return !strcmp(name, "..data");
	if (ev->mask & IN_ISDIR)
		return 2;
	if (config_name(name))
		return 1;
	if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
		return 2;		/* may have been a symlink to a directory */
	if (!(ev->mask & (IN_CREATE | IN_MOVED_TO)) || asprintf(&path, "%s/%s", d->path, name) == -1)
		return 0;
	ret = !stat(path, &sb) && S_ISDIR(sb.st_mode) ? 2 : 0;
	free(path);
	return ret;
}

static void watch_io(struct loop_io *io, uint32_t events)
{
	struct config_watch *w = io->arg;
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool kick = false;

	(void)events;
	for (;;) {
		ssize_t n = read(w->fd, buf, sizeof(buf));

		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			int what = watch_event(w, ev);

			p += sizeof(*ev) + ev->len;
			kick |= what > 0;
			if (what == 2)
				w->rescan = true;
		}
	}
	if (kick)
		watch_kick(w);
}

int config_watch_new(struct config_watch **out, struct loop *l, const char *dir,
		     void (*changed)(void *arg), void *arg)
{
	struct config_watch *w = calloc(1, sizeof(*w));
	int ret;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	w->loop = l;
	w->changed = changed;
	w->arg = arg;
	w->io.fd = -1;
	loop_timer_init(&w->timer, watch_timer, w);
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd == -1) {
		ret = -errno;
		goto err;
	}
	w->root = strdup(dir);
	if (!w->root) {
		ret = -ENOMEM;
		goto err;
	}
	ret = watch_tree(w, w->root, 0);
	if (ret)
		goto err;
	w->root_ok = true;
	ret = loop_add(l, &w->io, w->fd, EPOLLIN, watch_io, w);
	if (ret)
		goto err;
	*out = w;
	return 0;
err:
	config_watch_free(w);
	return ret;
}

void config_watch_free(struct config_watch *w)
{
	if (!w)
		return;
	if (w->io.fd >= 0)
		loop_del(w->loop, &w->io);
	loop_timer_cancel(w->loop, &w->timer);
	if (w->fd >= 0)
		close(w->fd);
	for (size_t i = 0; i < w->n_dirs; i++)
		free(w->dirs[i].path);
	free(w->dirs);
	free(w->root);
	free(w);
}
