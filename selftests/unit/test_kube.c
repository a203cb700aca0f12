// SPDX-License-Identifier: Apache-2.0
/* test_kube.c - kube.c: kubeconfig parsing (tokens, client certificates, CA
 * data, bad files), the watch-stream line decoder, and list+watch against a
 * test API server (selftests/tools/sl-kube-api.py, TLS): the same model as
 * the directory source for manifests/examples, paging, watch events, 410 ->
 * relist, dropped connections and 500s -> backoff and reconnect, 404 -> kind
 * skipped, a bad object skipped while the others apply. Writes through
 * kube_request (Lease create, update, 409 on a stale resourceVersion, a
 * /status merge patch that the watch brings back), and kstatus writing a
 * Gateway's status once, and not again while nothing changes.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <yaml.h>

#include "config.h"
#include "kstatus.h"
#include "kube.h"
#include "loop.h"
#include "model.h"
#include "route.h"
#include "lib/test.h"

extern char **environ;

#define API_SCRIPT "selftests/tools/sl-kube-api.py"
#define PYTHON "/usr/bin/python3"
#define EXAMPLES "manifests/examples"

/* ---- helpers ---- */

static bool diags_have(const struct diags *d, const char *want)
{
	char buf[1024];

	for (size_t i = 0; i < d->n; i++)
		if (strstr(diag_str(&d->v[i], buf, sizeof(buf)), want))
			return true;
	printf("missing diag containing: %s\n", want);
	for (size_t i = 0; i < d->n; i++)
		printf("  diag: %s\n", diag_str(&d->v[i], buf, sizeof(buf)));
	return false;
}

static int parse_str(struct kube_cfg *c, const char *text, struct diags *errs)
{
	return kube_cfg_parse(c, "kc", text, strlen(text), NULL, errs);
}

static bool write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return false;
	fputs(text, f);
	return fclose(f) == 0;
}

/* ---- kubeconfig ---- */

#define KC_HEAD                                                                                         \
	"apiVersion: v1\nkind: Config\ncurrent-context: test\n"                                          \
	"contexts:\n- name: other\n  context: {cluster: nowhere, user: nobody}\n"                      \
	"- name: test\n  context: {cluster: c1, user: u1, namespace: default}\n"

void test_kube_kubeconfig_token(void)
{
	/* "-----BEGIN X-----\n" and "hello" in base64 */
	const char *kc = KC_HEAD
		"clusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:6443\n"
		"    certificate-authority-data: LS0tLS1CRUdJTiBYLS0tLS0K\n"
		"users:\n- name: u1\n  user: {token: abc.def}\n";
	struct kube_cfg c;
	struct diags errs = { 0 };

	if (!ASSERT_OK(parse_str(&c, kc, &errs), "parse"))
		goto out;
	ASSERT_STREQ(c.server, "https://10.0.0.1:6443", "server");
	ASSERT_STREQ(c.token, "abc.def", "token");
	ASSERT_STREQ(c.ca_pem, "-----BEGIN X-----\n", "ca data");
	ASSERT_TRUE(!c.cert_pem && !c.key_pem, "no client cert");
	ASSERT_FALSE(c.insecure, "verifies");
out:
	kube_cfg_clear(&c);
	diags_clear(&errs);
}

void test_kube_kubeconfig_client_cert(void)
{
	char dir[300], path[400], text[2048];
	struct kube_cfg c;
	struct diags errs = { 0 };

	snprintf(dir, sizeof(dir), "%s", test_tmpdir());
	snprintf(path, sizeof(path), "%s/client.crt", dir);
	ASSERT_TRUE(write_file(path, "CERT\n"), "write cert");
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	ASSERT_TRUE(write_file(path, "CA\n"), "write ca");
	/* the key inline, the certificate by relative path, the CA by absolute path */
	snprintf(text, sizeof(text),
		 KC_HEAD "clusters:\n- name: c1\n  cluster:\n    server: \"https://[fd00::1]\"\n"
			 "    certificate-authority: %s/ca.crt\n"
			 "users:\n- name: u1\n  user:\n    client-certificate: client.crt\n"
			 "    client-key-data: aGVsbG8=\n",
		 dir);
	snprintf(path, sizeof(path), "%s/kubeconfig", dir);
	ASSERT_TRUE(write_file(path, text), "write kubeconfig");
	if (!ASSERT_OK(kube_cfg_load(&c, path, &errs), "load"))
		goto out;
	ASSERT_STREQ(c.server, "https://[fd00::1]", "server");
	ASSERT_STREQ(c.cert_pem, "CERT\n", "client cert from a relative path");
	ASSERT_STREQ(c.key_pem, "hello", "client key data");
	ASSERT_STREQ(c.ca_pem, "CA\n", "CA from an absolute path");
	ASSERT_TRUE(c.token == NULL, "no token");
out:
	kube_cfg_clear(&c);
	diags_clear(&errs);
}

void test_kube_kubeconfig_errors(void)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "a: [", "kc:2: not valid YAML" },
		{ "- 1\n", "kc:1: expected a kubeconfig (a mapping)" },
		{ "apiVersion: v1\n", "kc:1: no current-context" },
		{ "current-context: x\ncontexts: []\n", "kc:2: contexts: no entry named 'x'" },
		{ KC_HEAD "clusters:\n- name: c1\n  cluster: {}\n", "kc:11: cluster: missing server" },
		{ KC_HEAD "clusters:\n- name: c1\n  cluster: {server: http://x}\n",
		  "kc:11: server: 'http://x': only https:// is supported" },
		{ KC_HEAD "clusters:\n- name: c1\n  cluster: {server: https://x, certificate-authority-data: \"!!\"}\n",
		  "kc:11: certificate-authority-data: not valid base64" },
		{ KC_HEAD "clusters:\n- name: c1\n  cluster: {server: https://x}\n"
			  "users:\n- name: u1\n  user: {client-certificate-data: aGVsbG8=}\n",
		  "kc:14: user: client-certificate and client-key go together" },
		{ KC_HEAD "clusters:\n- name: c1\n  cluster: {server: https://x}\n"
			  "users:\n- name: u1\n  user: {exec: {command: aws}}\n",
		  "exec and auth-provider credentials are not supported" },
		{ KC_HEAD "clusters:\n- name: c1\n  cluster: {server: https://x, certificate-authority: ca.crt}\n",
		  "kc:11: certificate-authority: a relative path needs the kubeconfig's directory" },
		{ KC_HEAD "clusters:\n- name: c2\n  cluster: {server: https://x}\n", "kc:10: clusters: no entry named 'c1'" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kube_cfg c;
		struct diags errs = { 0 };

		ASSERT_ERR(parse_str(&c, cases[i].text, &errs), cases[i].want);
		ASSERT_TRUE(diags_have(&errs, cases[i].want), cases[i].want);
		ASSERT_TRUE(c.server == NULL, "cleared on error");
		kube_cfg_clear(&c);
		diags_clear(&errs);
	}
	{
		struct kube_cfg c;
		struct diags errs = { 0 };

		ASSERT_ERR(kube_cfg_load(&c, "/nonexistent/kubeconfig", &errs), "missing file");
		ASSERT_TRUE(diags_have(&errs, "/nonexistent/kubeconfig: cannot read: No such file"), "missing file");
		diags_clear(&errs);
	}
}

void test_kube_in_cluster(void)
{
	char path[400];
	struct kube_cfg c;
	struct diags errs = { 0 };

	snprintf(path, sizeof(path), "%s/token", test_tmpdir());
	write_file(path, "tok123\n");
	snprintf(path, sizeof(path), "%s/ca.crt", test_tmpdir());
	write_file(path, "CA");
	unsetenv("KUBERNETES_SERVICE_HOST");
	ASSERT_ERR(kube_cfg_in_cluster(&c, test_tmpdir(), &errs), "no env");
	ASSERT_TRUE(diags_have(&errs, "KUBERNETES_SERVICE_HOST is not set"), "no env");
	diags_clear(&errs);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	if (ASSERT_OK(kube_cfg_in_cluster(&c, test_tmpdir(), &errs), "in cluster")) {
		ASSERT_STREQ(c.server, "https://[fd00::1]:443", "server");
		ASSERT_STREQ(c.token, "tok123", "token without its newline");
		ASSERT_STREQ(c.ca_pem, "CA", "ca");
		snprintf(path, sizeof(path), "%s/token", test_tmpdir());
		ASSERT_STREQ(c.token_file, path, "token file kept, to read the rotated token");
	}
	kube_cfg_clear(&c);
	diags_clear(&errs);
}

/* ---- the watch stream ---- */

struct ev_rec {
	char seen[1024];
	int n, n_bad;
};

static int rec_event(void *arg, const char *type, json_t *obj)
{
	struct ev_rec *r = arg;
	const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
	size_t l = strlen(r->seen);

	if (!type) {
		r->n_bad++;
		return 0;
	}
	r->n++;
	snprintf(r->seen + l, sizeof(r->seen) - l, "%s:%s ", type, name ? name : "-");
	return 0;
}

void test_kube_lines(void)
{
	const char *stream = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
			     "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}\r\n"
			     "\n"
			     "not json\n"
			     "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"b\"}}}\n";
	size_t len = strlen(stream);

	/* every cut of the stream into two pieces gives the same events */
	for (size_t cut = 0; cut <= len; cut++) {
		struct kube_lines lb = { 0 };
		struct ev_rec r = { 0 };

		ASSERT_OK(kube_lines_feed(&lb, stream, cut, rec_event, &r), "first piece");
		ASSERT_OK(kube_lines_feed(&lb, stream + cut, len - cut, rec_event, &r), "second piece");
		if (!ASSERT_STREQ(r.seen, "ADDED:a BOOKMARK:- DELETED:b ", "events") ||
		    !ASSERT_EQ(r.n_bad, 1, "one bad line")) {
			printf("cut at %zu\n", cut);
			kube_lines_clear(&lb);
			return;
		}
		kube_lines_clear(&lb);
	}
	{	/* byte by byte */
		struct kube_lines lb = { 0 };
		struct ev_rec r = { 0 };

		for (size_t i = 0; i < len; i++)
			kube_lines_feed(&lb, stream + i, 1, rec_event, &r);
		ASSERT_STREQ(r.seen, "ADDED:a BOOKMARK:- DELETED:b ", "byte by byte");
		kube_lines_clear(&lb);
	}
}

/* ---- YAML -> JSON, to serve the examples as the API server would ---- */

static json_t *yaml_to_json(yaml_document_t *doc, yaml_node_t *n)
{
	json_t *out;

	switch (n->type) {
	case YAML_SCALAR_NODE: {
		const char *s = (const char *)n->data.scalar.value;
		char *end;
		long long v;

		if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
			return json_string(s);
		if (!strcmp(s, "true") || !strcmp(s, "false"))
			return json_boolean(!strcmp(s, "true"));
		if (!strcmp(s, "null") || !strcmp(s, "~") || !s[0])
			return json_null();
		v = strtoll(s, &end, 10);
		if (!*end && end != s)
			return json_integer(v);
		return json_string(s);
	}
	case YAML_SEQUENCE_NODE:
		out = json_array();
		for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++)
			json_array_append_new(out, yaml_to_json(doc, yaml_document_get_node(doc, *i)));
		return out;
	case YAML_MAPPING_NODE:
		out = json_object();
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++)
			json_object_set_new(out, (const char *)yaml_document_get_node(doc, p->key)->data.scalar.value,
					    yaml_to_json(doc, yaml_document_get_node(doc, p->value)));
		return out;
	default:
		return json_null();
	}
}

/* Every document of every YAML file under dir, appended to items. */
static bool yaml_dir_to_json(const char *dir, json_t *items)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);

	if (n < 0)
		return false;
	for (int i = 0; i < n; i++) {
		char path[600];
		FILE *f;
		yaml_parser_t p;
		yaml_document_t doc;

		if (!strstr(names[i]->d_name, ".yaml")) {
			free(names[i]);
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		free(names[i]);
		f = fopen(path, "r");
		if (!f)
			continue;
		yaml_parser_initialize(&p);
		yaml_parser_set_input_file(&p, f);
		while (yaml_parser_load(&p, &doc)) {
			yaml_node_t *root = yaml_document_get_root_node(&doc);

			if (!root) {
				yaml_document_delete(&doc);
				break;
			}
			json_array_append_new(items, yaml_to_json(&doc, root));
			yaml_document_delete(&doc);
		}
		yaml_parser_delete(&p);
		fclose(f);
	}
	free(names);
	return true;
}

/* ---- the test API server ---- */

struct fx {
	pid_t pid;
	int api_port, ctl_port;
	char dir[300];
	struct loop *loop;
	struct kube *kube;
	int changed;
	struct loop_timer poll;
	bool (*pred)(struct fx *f);
	uint64_t deadline;
	bool met;
};

static bool python_ok(void)
{
	if (access(API_SCRIPT, R_OK) || access(EXAMPLES, R_OK)) {
		test_skip("%s or %s not found (run from the repository root)", API_SCRIPT, EXAMPLES);
		return false;
	}
	if (access(PYTHON, X_OK) || system("command -v openssl >/dev/null")) {
		test_skip("python3 or openssl not available");
		return false;
	}
	return true;
}

/* Start the server with objects (a JSON array) and extra args; wait for its ports. */
static bool server_start(struct fx *f, json_t *objects, const char *const *extra)
{
	const char *argv[24];
	char objs[400], ports[400];
	int n = 0;

	snprintf(f->dir, sizeof(f->dir), "%s", test_tmpdir());
	snprintf(objs, sizeof(objs), "%s/objects.json", f->dir);
	snprintf(ports, sizeof(ports), "%s/ports", f->dir);
	if (json_dump_file(objects, objs, 0))
		return false;
	argv[n++] = PYTHON;
	argv[n++] = API_SCRIPT;
	argv[n++] = "--dir";
	argv[n++] = f->dir;
	argv[n++] = "--objects";
	argv[n++] = objs;
	argv[n++] = "--lifetime";
	argv[n++] = "100";
	for (; extra && *extra && n < 22; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	if (posix_spawn(&f->pid, PYTHON, NULL, NULL, (char *const *)argv, environ))
		return false;
	for (int i = 0; i < 1000; i++) {	/* 10 s */
		FILE *pf = fopen(ports, "r");

		if (pf) {
			bool ok = fscanf(pf, "%d %d", &f->api_port, &f->ctl_port) == 2;

			fclose(pf);
			return ok;
		}
		usleep(10000);
	}
	printf("sl-kube-api did not start\n");
	return false;
}

static void server_stop(struct fx *f)
{
	int st;

	if (f->pid > 0) {
		kill(f->pid, SIGTERM);
		waitpid(f->pid, &st, 0);
		f->pid = 0;
	}
}

/* One request to the control port (plain HTTP, blocking, bounded). */
static json_t *ctl(struct fx *f, const char *method, const char *path, const char *body)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->ctl_port) };
	struct timeval tv = { .tv_sec = 5 };
	char req[8192], resp[65536];
	size_t got = 0;
	ssize_t r;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	const char *b;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return NULL;
	}
	body = body ? body : "";
	snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nContent-Length: %zu\r\n\r\n%s", method, path, strlen(body),
		 body);
	if (write(fd, req, strlen(req)) < 0) {
		close(fd);
		return NULL;
	}
	while (got < sizeof(resp) - 1 && (r = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	resp[got] = 0;
	b = strstr(resp, "\r\n\r\n");
	return b ? json_loads(b + 4, 0, NULL) : NULL;
}

static bool ctl_ok(struct fx *f, const char *path, const char *body)
{
	json_t *r = ctl(f, "POST", path, body);
	bool ok = r && json_is_true(json_object_get(r, "ok"));

	json_decref(r);
	return ok;
}

static long long stat_of(struct fx *f, const char *table, const char *kind)
{
	json_t *r = ctl(f, "GET", "/stats", NULL);
	long long v = json_integer_value(json_object_get(json_object_get(r, table), kind));

	json_decref(r);
	return v;
}

static void on_changed(void *arg)
{
	struct fx *f = arg;

	f->changed++;
}

static void poll_cb(struct loop_timer *t)
{
	struct fx *f = t->arg;

	if (f->pred(f)) {
		f->met = true;
		loop_stop(f->loop);
	} else if (loop_now_ms() >= f->deadline) {
		loop_stop(f->loop);
	} else {
		loop_timer_arm(f->loop, &f->poll, 20);
	}
}

/* Run the loop until pred holds (true) or ms pass (false). */
static bool run_until(struct fx *f, bool (*pred)(struct fx *f), unsigned int ms)
{
	f->pred = pred;
	f->met = false;
	f->deadline = loop_now_ms() + ms;
	loop_timer_arm(f->loop, &f->poll, 1);
	loop_run(f->loop);
	loop_timer_cancel(f->loop, &f->poll);
	return f->met;
}

static bool was_changed(struct fx *f)
{
	return f->changed > 0;
}

/* A kind's status entry (borrowed from st). */
static json_t *kind_status(json_t *st, const char *kind)
{
	size_t i;
	json_t *k;

	json_array_foreach(json_object_get(st, "kinds"), i, k)
		if (!strcmp(json_string_value(json_object_get(k, "kind")), kind))
			return k;
	return NULL;
}

static long long kind_num(struct fx *f, const char *kind, const char *field)
{
	json_t *st = kube_status_json(f->kube);
	long long v = json_integer_value(json_object_get(kind_status(st, kind), field));

	json_decref(st);
	return v;
}

static bool kind_state_is(struct fx *f, const char *kind, const char *state)
{
	json_t *st = kube_status_json(f->kube);
	const char *s = json_string_value(json_object_get(kind_status(st, kind), "state"));
	bool ok = s && !strcmp(s, state);

	json_decref(st);
	return ok;
}

static bool fx_start(struct fx *f, json_t *objects, const char *const *extra, const char *token,
		     unsigned int page_limit)
{
	char server[64], ca[400];
	struct kube_cfg cfg = { 0 };
	struct kube_opts o = { .backoff_min_ms = 50, .backoff_max_ms = 400,
			       .settle_ms = 20, .page_limit = page_limit };
	int err;

	memset(f, 0, sizeof(*f));
	if (!ASSERT_TRUE(server_start(f, objects, extra), "server"))
		return false;
	if (!ASSERT_OK(loop_new(&f->loop), "loop"))
		return false;
	loop_timer_init(&f->poll, poll_cb, f);
	snprintf(server, sizeof(server), "https://127.0.0.1:%d", f->api_port);
	snprintf(ca, sizeof(ca), "%s/ca.crt", f->dir);
	cfg.server = server;
	cfg.token = (char *)token;
	{
		FILE *cf = fopen(ca, "r");
		static char pem[8192];
		size_t n = cf ? fread(pem, 1, sizeof(pem) - 1, cf) : 0;

		if (cf)
			fclose(cf);
		pem[n] = 0;
		cfg.ca_pem = pem;
	}
	err = kube_new(&f->kube, f->loop, &cfg, &o, on_changed, f);
	return ASSERT_OK(err, "kube_new");
}

static void fx_stop(struct fx *f)
{
	kube_free(f->kube);
	f->kube = NULL;
	loop_free(f->loop);
	f->loop = NULL;
	server_stop(f);
}

/* ---- model summary: what the datapath and the mesh would see ---- */

static int line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted lines, one per frontend (with its slots) and per workload; the
 * order of objects (file order vs store order) does not matter. */
static char *model_summary(struct sl_model *m)
{
	char *lines[4096], *out;
	size_t n = 0, len = 1;
	char ip[SL_IP_STRLEN], line[2048];

	for (size_t i = 0; i < m->n_frontends && n < 4000; i++) {
		const struct sl_frontend *fe = &m->frontends[i];
		int l = snprintf(line, sizeof(line), "fe %s/%s port %u flags %u:", fe->svc->ns, fe->svc->name,
				 fe->port->port, fe->flags);

		for (size_t j = 0; j < fe->n_backends; j++)
			l += snprintf(line + l, sizeof(line) - (size_t)l, " %s:%u%s",
				      sl_ip_str(&fe->backends[j].ip, ip), fe->backends[j].port,
				      fe->backends[j].chosen ? "*" : "");
		lines[n++] = strdup(line);
	}
	for (size_t i = 0; i < m->res->n_pods && n < 4000; i++) {
		const struct sl_workload *w = &m->workloads[i];

		snprintf(line, sizeof(line), "wl %s/%s enrolled %d local %d svc %s", w->pod->ns, w->pod->name,
			 w->enrolled, w->local, w->service ? w->service->name : "-");
		lines[n++] = strdup(line);
	}
	snprintf(line, sizeof(line), "counts ns %zu pods %zu svc %zu slices %zu", m->res->n_namespaces,
		 m->res->n_pods, m->res->n_services, m->res->n_slices);
	lines[n++] = strdup(line);
	qsort(lines, n, sizeof(*lines), line_cmp);
	for (size_t i = 0; i < n; i++)
		len += strlen(lines[i]) + 1;
	out = calloc(1, len);
	for (size_t i = 0; i < n; i++) {
		strcat(out, lines[i]);
		strcat(out, "\n");
		free(lines[i]);
	}
	return out;
}

static char *kube_summary(struct fx *f, struct diags *bad)
{
	struct sl_resources *res = NULL;
	struct sl_model *m = NULL;
	struct diags errs = { 0 };
	char *s = NULL;

	if (!ASSERT_OK(kube_resources(f->kube, &res, bad), "kube_resources"))
		return NULL;
	if (ASSERT_OK(model_build(res, "node-1", &m, &errs), "model from the API"))
		s = model_summary(m);
	model_free(m);
	diags_clear(&errs);
	return s;
}

static json_t *examples(void)
{
	json_t *items = json_array();

	yaml_dir_to_json(EXAMPLES, items);
	return items;
}

/* The same objects through the API and from the directory: one model. A bad
 * object and paging (limit=2) on top. */
void test_kube_same_model_as_directory(void)
{
	json_t *items;
	struct fx f;
	struct sl_resources *dres = NULL;
	struct sl_model *dm = NULL;
	struct diags errs = { 0 }, bad = { 0 };
	char *want = NULL, *got = NULL;

	if (!python_ok())
		return;
	items = examples();
	if (!ASSERT_GE(json_array_size(items), 10, "examples as JSON"))
		goto out;
	if (!ASSERT_OK(config_load_dir(EXAMPLES, &dres, &errs), "directory") ||
	    !ASSERT_OK(model_build(dres, "node-1", &dm, &errs), "directory model"))
		goto out;
	want = model_summary(dm);
	/* a bad Service: reported and skipped, the rest applies */
	json_array_append_new(items, json_loads("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":"
						"{\"name\":\"bad\",\"namespace\":\"demo\"},\"spec\":"
						"{\"clusterIP\":\"10.96.0.999\",\"ports\":[{\"port\":80}]}}",
						0, NULL));
	if (!fx_start(&f, items, NULL, NULL, 2))
		goto stop;
	if (!ASSERT_TRUE(run_until(&f, was_changed, 15000), "changed() after the lists"))
		goto stop;
	ASSERT_TRUE(kube_ready(f.kube), "ready");
	got = kube_summary(&f, &bad);
	if (got && !ASSERT_STREQ(got, want, "same model as the directory"))
		printf("want:\n%s\ngot:\n%s\n", want, got);
	ASSERT_EQ(bad.n, 1, "one bad object");
	ASSERT_TRUE(diags_have(&bad, "Service demo/bad:1: "), "bad object named");
	ASSERT_EQ(json_object_size(kube_skipped(f.kube)), 1, "kube_skipped: one object");
	ASSERT_HAS(json_string_value(json_object_get(kube_skipped(f.kube), "Service/demo/bad")), "clusterIP",
		   "kube_skipped: by Kind/ns/name, with why");
	ASSERT_GE(stat_of(&f, "lists", "Pod"), 2, "pods paged (limit=2)");
	{
		json_t *st = kube_status_json(f.kube);
		char *txt = json_dumps(st, JSON_COMPACT);

		ASSERT_TRUE(txt && strstr(txt, "\"bad_objects\":[\"Service demo/bad:1:"), "status lists the bad object");
		ASSERT_TRUE(txt && strstr(txt, "\"kind\":\"Pod\",\"api\":\"core\",\"state\":\"watching\",\"listed\":true"),
			    "Pod watching");
		free(txt);
		json_decref(st);
	}
stop:
	fx_stop(&f);
out:
	free(want);
	free(got);
	model_free(dm);
	diags_clear(&errs);
	diags_clear(&bad);
	json_decref(items);
}

/* Is the Service there (port < 0: any port) once changed() was called? */
static bool has_service(struct fx *f, const char *name, int port)
{
	struct sl_resources *res = NULL;
	bool found = false;

	if (!f->changed || kube_resources(f->kube, &res, NULL))
		return false;
	for (size_t i = 0; i < res->n_services; i++)
		if (!strcmp(res->services[i].name, name) && (port < 0 || (res->services[i].n_ports &&
									   res->services[i].ports[0].port == port)))
			found = true;
	resources_free(res);
	return found;
}

static bool svc_extra_80(struct fx *f)
{
	return has_service(f, "extra", 80);
}

static bool svc_extra_81(struct fx *f)
{
	return has_service(f, "extra", 81);
}

static bool svc_extra_gone(struct fx *f)
{
	return f->changed && !has_service(f, "extra", -1);
}

static bool svc_extra2(struct fx *f)
{
	return has_service(f, "extra2", -1);
}

static bool svc_extra3(struct fx *f)
{
	return has_service(f, "extra3", -1);
}

#define SVC_JSON(name, ip, port)                                                                      \
	"{\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"" name "\","   \
	"\"namespace\":\"demo\"},\"spec\":{\"clusterIP\":\"" ip "\",\"ports\":[{\"port\":" #port "}]}}}"

/* Watch events: a Service added, modified and deleted shows up each time. */
void test_kube_watch_events(void)
{
	json_t *items;
	struct fx f;

	if (!python_ok())
		return;
	items = examples();
	if (!fx_start(&f, items, NULL, "s3cret", 0) ||
	    !ASSERT_TRUE(run_until(&f, was_changed, 15000), "first build"))
		goto out;
	/* each change is seen in the store and announced with changed() */
	f.changed = 0;
	ASSERT_TRUE(ctl_ok(&f, "/apply", SVC_JSON("extra", "10.96.0.50", 80)), "add");
	ASSERT_TRUE(run_until(&f, svc_extra_80, 5000), "ADDED seen");
	f.changed = 0;
	ASSERT_TRUE(ctl_ok(&f, "/apply", SVC_JSON("extra", "10.96.0.50", 81)), "modify");
	ASSERT_TRUE(run_until(&f, svc_extra_81, 5000), "MODIFIED seen");
	f.changed = 0;
	ASSERT_TRUE(ctl_ok(&f, "/delete", "{\"kind\":\"Service\",\"namespace\":\"demo\",\"name\":\"extra\"}"),
		    "delete");
	ASSERT_TRUE(run_until(&f, svc_extra_gone, 5000), "DELETED seen");
	/* a bad version is skipped and reported; fixed, it applies */
	f.changed = 0;
	ASSERT_TRUE(ctl_ok(&f, "/apply", SVC_JSON("extra", "10.96.0.300", 80)), "bad version");
	ASSERT_TRUE(run_until(&f, was_changed, 5000), "bad version announced");
	{
		struct sl_resources *res = NULL;
		struct diags bad = { 0 };

		ASSERT_OK(kube_resources(f.kube, &res, &bad), "resources with a bad object");
		ASSERT_TRUE(diags_have(&bad, "Service demo/extra:1: "), "bad version reported");
		ASSERT_FALSE(has_service(&f, "extra", -1), "bad version skipped");
		ASSERT_GE(res ? res->n_services : 0, 6, "the others stay");
		resources_free(res);
		diags_clear(&bad);
	}
	f.changed = 0;
	ASSERT_TRUE(ctl_ok(&f, "/apply", SVC_JSON("extra", "10.96.0.50", 80)), "fixed");
	ASSERT_TRUE(run_until(&f, svc_extra_80, 5000), "fixed version applies");
	{
		struct sl_resources *res = NULL;
		struct diags bad = { 0 };

		ASSERT_OK(kube_resources(f.kube, &res, &bad), "resources");
		ASSERT_EQ(bad.n, 0, "nothing bad any more");
		resources_free(res);
		diags_clear(&bad);
	}
	ASSERT_EQ(stat_of(&f, "lists", "Service"), 1, "no relist");
	ASSERT_EQ(kind_num(&f, "Service", "reconnects"), 0, "no reconnect");
out:
	fx_stop(&f);
	json_decref(items);
}

static bool svc_relisted(struct fx *f)
{
	return kind_num(f, "Service", "relists") >= 1 && kind_state_is(f, "Service", "watching") &&
	       stat_of(f, "lists", "Service") >= 2;
}

static bool svc_reconnected(struct fx *f)
{
	return kind_num(f, "Service", "reconnects") >= 1 && stat_of(f, "watches", "Service") >= 2 &&
	       kind_state_is(f, "Service", "watching");
}

/* 410 Gone as an ERROR event: the kind lists again and goes on watching. */
void test_kube_relist_on_410(void)
{
	json_t *items;
	struct fx f;

	if (!python_ok())
		return;
	items = examples();
	if (!fx_start(&f, items, NULL, NULL, 0) || !ASSERT_TRUE(run_until(&f, was_changed, 15000), "first build"))
		goto out;
	ASSERT_TRUE(ctl_ok(&f, "/expire", "{\"resource\":\"services\"}"), "expire");
	ASSERT_TRUE(run_until(&f, svc_relisted, 5000), "relisted");
	ASSERT_TRUE(ctl_ok(&f, "/apply", SVC_JSON("extra2", "10.96.0.51", 80)), "add after relist");
	ASSERT_TRUE(run_until(&f, svc_extra2, 5000), "event after the relist");
	ASSERT_EQ(kind_num(&f, "Pod", "relists"), 0, "other kinds untouched");
out:
	fx_stop(&f);
	json_decref(items);
}

/* A dropped watch and then two 500s: backoff, reconnect, resume from the
 * resourceVersion (no relist), and the error is reported meanwhile. */
void test_kube_reconnect(void)
{
	json_t *items, *st;
	struct fx f;
	const char *e;

	if (!python_ok())
		return;
	items = examples();
	if (!fx_start(&f, items, NULL, NULL, 0) || !ASSERT_TRUE(run_until(&f, was_changed, 15000), "first build"))
		goto out;
	ASSERT_TRUE(ctl_ok(&f, "/fail", "{\"resource\":\"services\",\"status\":500,\"count\":2}"), "fail next 2");
	ASSERT_TRUE(ctl_ok(&f, "/drop", "{\"resource\":\"services\"}"), "drop");
	ASSERT_TRUE(run_until(&f, svc_reconnected, 8000), "reconnected");
	ASSERT_GE(kind_num(&f, "Service", "reconnects"), 3, "drop + two 500s");
	st = kube_status_json(f.kube);
	e = json_string_value(json_object_get(kind_status(st, "Service"), "last_error"));
	ASSERT_TRUE(e && strstr(e, "HTTP 500: injected failure"), "last error says 500");
	json_decref(st);
	ASSERT_EQ(stat_of(&f, "lists", "Service"), 1, "resumed from the resourceVersion, no relist");
	ASSERT_TRUE(ctl_ok(&f, "/apply", SVC_JSON("extra3", "10.96.0.52", 80)), "add after reconnect");
	ASSERT_TRUE(run_until(&f, svc_extra3, 5000), "event after the reconnect");
out:
	fx_stop(&f);
	json_decref(items);
}

/* A group the server does not serve is skipped; the rest is ready. A token
 * the server does not take keeps Service from listing (401), so no build. */
void test_kube_unserved_and_auth(void)
{
	static const char *const unserved[] = { "--unserved", "security.istio.io", "--token", "good", NULL };
	json_t *items;
	struct fx f;

	if (!python_ok())
		return;
	items = examples();
	if (fx_start(&f, items, unserved, "good", 0) &&
	    ASSERT_TRUE(run_until(&f, was_changed, 15000), "ready without security.istio.io")) {
		ASSERT_TRUE(kind_state_is(&f, "AuthorizationPolicy", "not-served"), "AuthorizationPolicy skipped");
		ASSERT_TRUE(kind_state_is(&f, "PeerAuthentication", "not-served"), "PeerAuthentication skipped");
		ASSERT_TRUE(kind_state_is(&f, "Service", "watching"), "Service watching");
	}
	fx_stop(&f);
	if (fx_start(&f, items, unserved, "wrong", 0)) {
		ASSERT_FALSE(run_until(&f, was_changed, 1500), "no build without Pods and Services");
		ASSERT_FALSE(kube_ready(f.kube), "not ready");
		ASSERT_GE(kind_num(&f, "Pod", "reconnects"), 1, "retrying");
	}
	fx_stop(&f);
	json_decref(items);
}

/* The server's certificate is checked against the CA and the address. */
void test_kube_tls_verify(void)
{
	json_t *items;
	struct fx f;
	struct kube_cfg cfg = { 0 };
	struct kube_opts o = { .backoff_min_ms = 50, .backoff_max_ms = 100 };
	struct kube *k2 = NULL;
	char server[64];

	if (!python_ok())
		return;
	items = examples();
	if (!fx_start(&f, items, NULL, NULL, 0))
		goto out;
	/* a CA that did not sign the server: the system roots */
	snprintf(server, sizeof(server), "https://127.0.0.1:%d", f.api_port);
	cfg.server = server;
	kube_free(f.kube);	/* only the badly configured one runs */
	f.kube = NULL;
	f.changed = 0;
	if (ASSERT_OK(kube_new(&k2, f.loop, &cfg, &o, on_changed, &f), "kube_new")) {
		json_t *st;
		const char *e;

		f.kube = k2;
		run_until(&f, was_changed, 1000);
		ASSERT_EQ(f.changed, 0, "never changed");
		st = kube_status_json(k2);
		e = json_string_value(json_object_get(kind_status(st, "Pod"), "last_error"));
		ASSERT_TRUE(e && strstr(e, "server certificate"), "certificate error reported");
		if (e)
			printf("error: %s\n", e);
		json_decref(st);
	}
out:
	fx_stop(&f);
	json_decref(items);
}

/* ---- writes: kube_request, kstatus ---- */

struct answer {
	int status;			/* -1: none yet */
	json_t *body;
};

static void on_answer(void *arg, int status, json_t *body)
{
	struct answer *a = arg;

	a->status = status;
	json_decref(a->body);
	a->body = json_incref(body);
}

static struct answer *cur_answer;

static bool answered(struct fx *f)
{
	(void)f;
	return cur_answer->status >= 0;
}

/* One request, run to its answer (its status; -1: none within 5 s). */
static int request(struct fx *f, struct answer *a, const char *method, const char *path, const char *ctype,
		   const char *body)
{
	a->status = -1;
	cur_answer = a;
	if (kube_request(f->kube, method, path, ctype, body, on_answer, a))
		return -1;
	run_until(f, answered, 5000);
	return a->status;
}

static const char *body_rv(const struct answer *a)
{
	return json_string_value(json_object_get(json_object_get(a->body, "metadata"), "resourceVersion"));
}

#define LEASE_PATH "/apis/coordination.k8s.io/v1/namespaces/sluice-system/leases"
#define GW_STATUS_PATH "/apis/gateway.networking.k8s.io/v1/namespaces/infra/gateways/gw/status"

static const char gw_objects[] =
	"[{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"infra\"}},"
	"{\"apiVersion\":\"gateway.networking.k8s.io/v1\",\"kind\":\"GatewayClass\",\"metadata\":{\"name\":\"sluice\"},"
	"\"spec\":{\"controllerName\":\"sluice.io/gateway-controller\"}},"
	"{\"apiVersion\":\"gateway.networking.k8s.io/v1\",\"kind\":\"Gateway\",\"metadata\":{\"name\":\"gw\","
	"\"namespace\":\"infra\"},\"spec\":{\"gatewayClassName\":\"sluice\",\"listeners\":"
	"[{\"name\":\"web\",\"port\":80,\"protocol\":\"HTTP\"}]}}]";

static bool gw_has_status(struct fx *f)
{
	json_t *gw = json_object_get(kube_objects(f->kube, "Gateway"), "infra/gw");

	return json_is_object(json_object_get(gw, "status"));
}

/* Lease create/read/update with optimistic concurrency, and a /status patch. */
void test_kube_requests(void)
{
	struct answer a = { .status = -1 };
	json_t *items;
	struct fx f;
	char body[1024], rv[32];

	if (!python_ok())
		return;
	items = json_loads(gw_objects, 0, NULL);
	if (!fx_start(&f, items, NULL, "tok", 0))
		goto out;
	ASSERT_EQ(request(&f, &a, "GET", LEASE_PATH "/sluice-status", NULL, NULL), 404, "GET: no Lease yet");
	ASSERT_EQ(request(&f, &a, "POST", LEASE_PATH, NULL,
			  "{\"metadata\":{\"name\":\"sluice-status\"},\"spec\":{\"holderIdentity\":\"a\"}}"),
		  201, "POST: created");
	snprintf(rv, sizeof(rv), "%s", body_rv(&a) ? body_rv(&a) : "");
	ASSERT_TRUE(rv[0], "created with a resourceVersion");
	ASSERT_EQ(request(&f, &a, "POST", LEASE_PATH, NULL, "{\"metadata\":{\"name\":\"sluice-status\"}}"), 409,
		  "POST again: AlreadyExists");
	ASSERT_EQ(request(&f, &a, "PUT", LEASE_PATH "/sluice-status", NULL,
			  "{\"metadata\":{\"name\":\"sluice-status\",\"resourceVersion\":\"1\"},\"spec\":{}}"),
		  409, "PUT with a stale resourceVersion: Conflict");
	snprintf(body, sizeof(body),
		 "{\"metadata\":{\"name\":\"sluice-status\",\"resourceVersion\":\"%s\"},\"spec\":{\"holderIdentity\":\"b\"}}",
		 rv);
	ASSERT_EQ(request(&f, &a, "PUT", LEASE_PATH "/sluice-status", NULL, body), 200, "PUT with its resourceVersion");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(a.body, "spec"), "holderIdentity")), "b",
		     "updated");
	ASSERT_TRUE(run_until(&f, was_changed, 15000), "listed");
	ASSERT_EQ(request(&f, &a, "PATCH", GW_STATUS_PATH, "application/merge-patch+json",
			  "{\"metadata\":{\"resourceVersion\":\"1\"},\"status\":{\"conditions\":[]}}"),
		  409, "PATCH /status with a stale resourceVersion: Conflict");
	ASSERT_EQ(request(&f, &a, "PATCH", GW_STATUS_PATH, "application/merge-patch+json",
			  "{\"status\":{\"conditions\":[]}}"),
		  200, "PATCH /status");
	ASSERT_TRUE(run_until(&f, gw_has_status, 5000), "the watch brings the status back");
	ASSERT_EQ(request(&f, &a, "GET", LEASE_PATH "/sluice-status", NULL, NULL), 200,
		  "a kept-alive connection serves the next request");
out:
	json_decref(a.body);
	fx_stop(&f);
	json_decref(items);
}

static struct kstatus *cur_ks, *cur_ks2;

/* The first wrote both (the Gateway and the GatewayClass), and the second
 * has read the Lease since. */
static bool ks_wrote(struct fx *f)
{
	json_t *st = kstatus_json(cur_ks), *st2 = kstatus_json(cur_ks2);
	const char *h = json_string_value(json_object_get(st2, "holder"));
	bool ok = json_integer_value(json_object_get(st, "writes")) >= 2 && gw_has_status(f) && h && h[0];

	json_decref(st);
	json_decref(st2);
	return ok;
}

static long long status_writes(struct fx *f)
{
	json_t *w = ctl(f, "GET", "/writes", NULL), *e;
	long long n = 0;
	size_t i;

	json_array_foreach(w, i, e)
		if (!strcmp(json_string_value(json_object_get(e, "verb")), "PATCH/status"))
			n++;
	json_decref(w);
	return n;
}

static bool never(struct fx *f)
{
	(void)f;
	return false;
}

/* Model and routes from the stored objects, handed to kstatus. */
static bool ks_update(struct fx *f, struct kstatus *ks)
{
	struct sl_resources *res = NULL;
	struct sl_model *m = NULL;
	struct route_table *rt = NULL;
	struct diags errs = { 0 };
	bool ok = !kube_resources(f->kube, &res, NULL) && !model_build(res, "node-1", &m, &errs) &&
		  !route_table_build(m, &rt, &errs) && !kstatus_update(ks, m, rt);

	route_table_free(rt);
	if (m)
		model_free(m);
	else
		resources_free(res);
	diags_clear(&errs);
	return ok;
}

/* Two writers on one API: one takes the Lease and writes the Gateway's
 * and its GatewayClass's status once; nothing is written again while
 * nothing changes. */
void test_kube_status_writer(void)
{
	struct kstatus_opts o1 = { .identity = "node-1", .ns = "sluice-system", .lease_s = 3 };
	struct kstatus_opts o2 = { .identity = "node-2", .ns = "sluice-system", .lease_s = 3 };
	struct kstatus *k1 = NULL, *k2 = NULL;
	json_t *items, *s1, *s2, *gw;
	struct fx f;
	long long n;

	if (!python_ok())
		return;
	items = json_loads(gw_objects, 0, NULL);
	if (!fx_start(&f, items, NULL, NULL, 0) || !ASSERT_TRUE(run_until(&f, was_changed, 15000), "listed"))
		goto out;
	if (!ASSERT_OK(kstatus_new(&k1, f.loop, f.kube, &o1), "kstatus 1") ||
	    !ASSERT_OK(kstatus_new(&k2, f.loop, f.kube, &o2), "kstatus 2"))
		goto out;
	ASSERT_TRUE(ks_update(&f, k1) && ks_update(&f, k2), "update");
	cur_ks = k1;
	cur_ks2 = k2;
	ASSERT_TRUE(run_until(&f, ks_wrote, 5000), "node-1 (first to ask) holds the Lease and writes");
	s1 = kstatus_json(k1);
	s2 = kstatus_json(k2);
	ASSERT_TRUE(json_is_true(json_object_get(s1, "leader")), "node-1 leads");
	ASSERT_FALSE(json_is_true(json_object_get(s2, "leader")), "node-2 does not");
	ASSERT_STREQ(json_string_value(json_object_get(s2, "holder")), "node-1", "node-2 sees node-1 hold it");
	json_decref(s1);
	json_decref(s2);
	gw = json_object_get(kube_objects(f.kube, "Gateway"), "infra/gw");
	ASSERT_STREQ(json_string_value(json_object_get(
			     json_array_get(json_object_get(json_object_get(gw, "status"), "conditions"), 0), "reason")),
		     "Accepted", "Accepted written");
	/* the echo arrives, another update computes the same: no write */
	n = status_writes(&f);
	run_until(&f, never, 1500);
	ASSERT_TRUE(ks_update(&f, k1) && ks_update(&f, k2), "update again");
	run_until(&f, never, 1000);
	ASSERT_EQ(status_writes(&f), n, "no second write of the same status");
	ASSERT_EQ(n, 2, "one write each: the Gateway and its GatewayClass (ours)");
	gw = json_object_get(kube_objects(f.kube, "GatewayClass"), "/sluice");
	ASSERT_STREQ(json_string_value(json_object_get(
			     json_array_get(json_object_get(json_object_get(gw, "status"), "conditions"), 0), "status")),
		     "True", "the GatewayClass: Accepted True");
out:
	kstatus_free(k2);
	kstatus_free(k1);
	fx_stop(&f);
	json_decref(items);
}
