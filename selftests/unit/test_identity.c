// SPDX-License-Identifier: Apache-2.0
/* test_identity.c - user/identity.c: SPIFFE IDs, minted and file-based
 * certificates, rotation, and real TLS handshakes between the contexts it
 * hands out.
 *
 * CAs and file-mode certificates come from scripts/lab-ca (found next to the
 * test binary, ../scripts/lab-ca), so the script is tested too; the odd
 * certificates lab-ca does not make (no URI SAN, several) are built here.
 * Handshakes run over a non-blocking socketpair pumped by tls_pump(), with
 * poll() timeouts so a bug fails a test instead of hanging it. Waits for
 * renewals and reloads are driven by the agent's loop and its timers, never
 * sleep(). Under ASan each test ends with a leak check, because the runner's
 * children leave by _exit() and LeakSanitizer's own exit check never runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../lib/test.h"
#include "identity.h"
#include "loop.h"

#if defined(__SANITIZE_ADDRESS__)
#define ID_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ID_TEST_ASAN 1
#endif
#endif
#ifdef ID_TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

extern char **environ;

#define TD		"cluster.local"
#define URI(ns, sa)	"spiffe://" TD "/ns/" ns "/sa/" sa

static void leak_check(void)
{
#ifdef ID_TEST_ASAN
	ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0, "no leaks (see the LeakSanitizer report)");
#endif
}

/* snprintf() without GCC's truncation guesses on PATH_MAX paths: a test's
 * paths are short, and a truncated one fails the test that uses it. */
__attribute__((format(printf, 3, 4)))
static int strf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n;
}

/* ---- scripts/lab-ca ---- */

static const char *lab_ca_path(void)
{
	static char path[PATH_MAX];
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;

	if (path[0])
		return path;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return "scripts/lab-ca";
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	strf(path, sizeof(path), "%s/../scripts/lab-ca", exe);
	if (access(path, X_OK))
		strf(path, sizeof(path), "scripts/lab-ca");
	return path;
}

/* Run scripts/lab-ca with args (NULL-terminated, at most 14); true if it
 * exited 0. Its output lands in the test's captured output. */
static bool lab_run(const char *const *args)
{
	const char *argv[16];
	int n = 0, status = 0;
	pid_t pid;

	argv[n++] = lab_ca_path();
	for (; *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	if (posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv, environ))
		return false;
	if (waitpid(pid, &status, 0) != pid)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

#define lab(...) lab_run((const char *const[]){ __VA_ARGS__, NULL })

/* dir/name into buf[PATH_MAX]; returns buf ("" if it does not fit). */
static const char *path_in(char *buf, const char *dir, const char *name)
{
	if (strf(buf, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
		buf[0] = '\0';
	return buf;
}

/* ---- fixture: a lab CA and an identity over it ---- */

struct fx {
	char dir[PATH_MAX];
	char ca_dir[PATH_MAX], ca_crt[PATH_MAX], ca_key[PATH_MAX];
	struct loop *loop;
	struct identity *id;
};

static bool fx_ca(struct fx *f)
{
	strf(f->dir, sizeof(f->dir), "%s", test_tmpdir());
	path_in(f->ca_dir, f->dir, "ca");
	path_in(f->ca_crt, f->ca_dir, "ca.crt");
	path_in(f->ca_key, f->ca_dir, "ca.key");
	return ASSERT_TRUE(lab(f->ca_dir), "lab-ca DIR");
}

/* A mesh-ca identity over a fresh lab CA (with a loop when with_loop). */
static bool fx_mesh(struct fx *f, unsigned int ttl_s, bool with_loop)
{
	struct identity_opts o = { .mode = IDENTITY_MESH_CA };
	char *err = NULL;
	int ret;

	memset(f, 0, sizeof(*f));
	if (!fx_ca(f))
		return false;
	if (with_loop && !ASSERT_OK(loop_new(&f->loop), "loop_new"))
		return false;
	o.ca_cert_file = f->ca_crt;
	o.ca_key_file = f->ca_key;
	o.cert_ttl_s = ttl_s;
	ret = identity_new(&f->id, f->loop, &o, &err);
	if (!ASSERT_OK(ret, "identity_new"))
		printf("err: %s\n", err ? err : "(none)");
	free(err);
	return !ret;
}

static void fx_free(struct fx *f)
{
	identity_free(f->id);
	loop_free(f->loop);
	f->id = NULL;
	f->loop = NULL;
}

/* ---- waiting on the loop ---- */

/* What wait_certs() waits for: the entry for id with a serial other than
 * serial (when set), or with an error (when want_error). */
struct cert_wait {
	struct fx *f;
	struct loop_timer t;
	uint64_t t0;
	const char *id, *serial;
	bool want_error, hit;
};

static void cert_wait_cb(struct loop_timer *t)
{
	struct cert_wait *w = t->arg;
	struct identity_cert_info *info = NULL;
	size_t n = 0;

	if (!identity_certs(w->f->id, &info, &n)) {
		for (size_t i = 0; i < n; i++) {
			if (strcmp(info[i].id, w->id))
				continue;
			if ((w->serial && strcmp(info[i].serial, w->serial)) ||
			    (w->want_error && info[i].error[0]))
				w->hit = true;
		}
	}
	free(info);
	if (w->hit || loop_now_ms() - w->t0 > 5000)
		loop_stop(w->f->loop);
	else
		loop_timer_arm(w->f->loop, t, 10);
}

/* Run f's loop (so its identity timer runs) until the wait is met, checked
 * every 10 ms, or 5 s passed. */
static bool wait_certs(struct fx *f, const char *id, const char *serial, bool want_error)
{
	struct cert_wait w = { .f = f, .id = id, .serial = serial, .want_error = want_error };

	w.t0 = loop_now_ms();
	loop_timer_init(&w.t, cert_wait_cb, &w);
	loop_timer_arm(f->loop, &w.t, 10);
	loop_run(f->loop);
	loop_timer_cancel(f->loop, &w.t);
	return w.hit;
}

/* The listed serial of id ("" if not listed). */
static void listed_serial(struct identity *id, const char *uri, char *buf, size_t len)
{
	struct identity_cert_info *info = NULL;
	size_t n = 0;

	buf[0] = '\0';
	if (identity_certs(id, &info, &n))
		return;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(info[i].id, uri))
			strf(buf, len, "%s", info[i].serial);
	free(info);
}

/* ---- TLS over a socketpair ---- */

struct tls_pair {
	SSL *c, *s;
	int fd[2];
	bool c_done, s_done, c_failed, s_failed;
};

static bool pair_new(struct tls_pair *p, SSL_CTX *cctx, SSL_CTX *sctx)
{
	memset(p, 0, sizeof(*p));
	p->fd[0] = p->fd[1] = -1;
	if (!ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p->fd),
		       "socketpair"))
		return false;
	p->c = SSL_new(cctx);
	p->s = SSL_new(sctx);
	if (!ASSERT_OK_PTR(p->c, "SSL_new client") || !ASSERT_OK_PTR(p->s, "SSL_new server"))
		return false;
	SSL_set_fd(p->c, p->fd[0]);
	SSL_set_fd(p->s, p->fd[1]);
	SSL_set_connect_state(p->c);
	SSL_set_accept_state(p->s);
	return true;
}

static void pair_free(struct tls_pair *p)
{
	SSL_free(p->c);
	SSL_free(p->s);
	if (p->fd[0] >= 0)
		close(p->fd[0]);
	if (p->fd[1] >= 0)
		close(p->fd[1]);
	memset(p, 0, sizeof(*p));
	p->fd[0] = p->fd[1] = -1;
}

/* One step of one side; returns true when it made progress or ended. */
static bool hs_step(SSL *ssl, bool *done, bool *failed)
{
	int r, e;

	if (*done || *failed)
		return false;
	ERR_clear_error();
	r = SSL_do_handshake(ssl);
	if (r == 1) {
		*done = true;
		return true;
	}
	e = SSL_get_error(ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return false;
	*failed = true;
	ERR_clear_error();
	return true;
}

/* Pump both handshakes until each side finished or failed (or nothing moved
 * for 2 s). True when both finished. */
static bool tls_pump(struct tls_pair *p)
{
	for (int i = 0; i < 100; i++) {
		struct pollfd pfd[2] = { { p->fd[0], POLLIN, 0 }, { p->fd[1], POLLIN, 0 } };
		bool moved = hs_step(p->c, &p->c_done, &p->c_failed);

		moved |= hs_step(p->s, &p->s_done, &p->s_failed);
		if ((p->c_done || p->c_failed) && (p->s_done || p->s_failed))
			break;
		if (!moved && poll(pfd, 2, 2000) <= 0)
			break;
	}
	return p->c_done && p->s_done;
}

/* Move len bytes from one SSL to the other through the socketpair. */
static bool tls_send(SSL *from, int from_fd, SSL *to, int to_fd, const char *msg)
{
	size_t len = strlen(msg), got = 0;
	char buf[256];
	int r;

	ERR_clear_error();
	r = SSL_write(from, msg, (int)len);
	if (r != (int)len)
		return false;
	for (int i = 0; i < 50 && got < len; i++) {
		struct pollfd pfd = { to_fd, POLLIN, 0 };

		ERR_clear_error();
		r = SSL_read(to, buf + got, (int)(sizeof(buf) - got));
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (SSL_get_error(to, r) != SSL_ERROR_WANT_READ || poll(&pfd, 1, 2000) <= 0)
			return false;
	}
	(void)from_fd;
	return got == len && !memcmp(buf, msg, len);
}

static bool pair_echo(struct tls_pair *p, const char *what)
{
	return ASSERT_TRUE(tls_send(p->c, p->fd[0], p->s, p->fd[1], "ping"), what) &&
	       ASSERT_TRUE(tls_send(p->s, p->fd[1], p->c, p->fd[0], "pong"), what);
}

static void serial_of(const X509 *x, char *buf, size_t len)
{
	BIGNUM *bn = x ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL) : NULL;
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	strf(buf, len, "%s", hex ? hex : "");
	OPENSSL_free(hex);
	BN_free(bn);
}

/* A context made without identity.c: what a foreign or broken peer would use. */
static SSL_CTX *plain_ctx(bool server, const char *crt, const char *key, bool alpn)
{
	SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (!c)
		return NULL;
	SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
	if ((crt && SSL_CTX_use_certificate_chain_file(c, crt) != 1) ||
	    (key && SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) ||
	    (alpn && !server && SSL_CTX_set_alpn_protos(c, (const unsigned char *)"\x02h2", 3))) {
		SSL_CTX_free(c);
		return NULL;
	}
	return c;
}

/* ---- certificates built here (what lab-ca does not make) ---- */

/* A P-256 certificate with SAN value san (openssl config syntax, NULL: no SAN),
 * signed by issuer/ikey (NULL: self-signed). */
static X509 *make_cert(const char *san, X509 *issuer, EVP_PKEY *ikey, EVP_PKEY **key_out)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509V3_CTX v3;
	bool ok = key && x;

	ok = ok && X509_set_version(x, X509_VERSION_3) &&
	     ASN1_INTEGER_set(X509_get_serialNumber(x), 42) &&
	     X509_gmtime_adj(X509_getm_notBefore(x), -60) &&
	     X509_gmtime_adj(X509_getm_notAfter(x), 3600) && X509_set_pubkey(x, key) &&
	     X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	if (ok && san) {
		X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &v3, NID_subject_alt_name, san);

		ok = e && X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	if (ok) {
		X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &v3, NID_ext_key_usage,
							 "serverAuth,clientAuth");

		ok = e && X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	ok = ok && X509_sign(x, ikey ? ikey : key, EVP_sha256());
	if (!ok) {
		X509_free(x);
		EVP_PKEY_free(key);
		return NULL;
	}
	if (key_out)
		*key_out = key;
	else
		EVP_PKEY_free(key);
	return x;
}

static X509 *read_pem_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x;

	if (!f)
		return NULL;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

static EVP_PKEY *read_pem_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;

	if (!f)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

static bool write_pem(const char *dir, X509 *x, EVP_PKEY *k)
{
	char p[PATH_MAX];
	FILE *f;
	bool ok;

	mkdir(dir, 0755);
	f = fopen(path_in(p, dir, "tls.crt"), "w");
	ok = f && PEM_write_X509(f, x);
	if (f)
		fclose(f);
	f = fopen(path_in(p, dir, "tls.key"), "w");
	ok = ok && f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	if (f)
		fclose(f);
	return ok;
}

/* ---- SPIFFE IDs ---- */

struct parse_case {
	const char *desc;
	const char *uri;
	size_t len;		/* 0: strlen(uri) */
	const char *td, *ns, *sa;	/* NULL td: must be refused */
};

void test_identity_spiffe_parse(void)
{
	static const struct parse_case cases[] = {
		{ "istio default", "spiffe://cluster.local/ns/default/sa/sleep", 0, "cluster.local",
		  "default", "sleep" },
		{ "short", "spiffe://td/ns/a/sa/b", 0, "td", "a", "b" },
		{ "all allowed chars", "spiffe://a_b-c.9/ns/A.b-c_9/sa/Z-z_0.x", 0, "a_b-c.9",
		  "A.b-c_9", "Z-z_0.x" },
		{ "three dots is a name", "spiffe://td/ns/.../sa/..a", 0, "td", "...", "..a" },
		{ "len stops early", "spiffe://td/ns/a/sa/bXYZ", 21, "td", "a", "b" },
		{ "empty", "", 0, NULL, NULL, NULL },
		{ "scheme only", "spiffe://", 0, NULL, NULL, NULL },
		{ "scheme upper case", "SPIFFE://td/ns/a/sa/b", 0, NULL, NULL, NULL },
		{ "other scheme", "https://td/ns/a/sa/b", 0, NULL, NULL, NULL },
		{ "one slash", "spiffe:/td/ns/a/sa/b", 0, NULL, NULL, NULL },
		{ "empty trust domain", "spiffe:///ns/a/sa/b", 0, NULL, NULL, NULL },
		{ "upper case trust domain", "spiffe://TD/ns/a/sa/b", 0, NULL, NULL, NULL },
		{ "userinfo", "spiffe://u@td/ns/a/sa/b", 0, NULL, NULL, NULL },
		{ "port", "spiffe://td:443/ns/a/sa/b", 0, NULL, NULL, NULL },
		{ "no path", "spiffe://td", 0, NULL, NULL, NULL },
		{ "root path", "spiffe://td/", 0, NULL, NULL, NULL },
		{ "trailing slash", "spiffe://td/ns/a/sa/b/", 0, NULL, NULL, NULL },
		{ "extra segment", "spiffe://td/ns/a/sa/b/c", 0, NULL, NULL, NULL },
		{ "missing sa", "spiffe://td/ns/a/sa", 0, NULL, NULL, NULL },
		{ "missing ns value", "spiffe://td/ns//sa/b", 0, NULL, NULL, NULL },
		{ "double slash after td", "spiffe://td//ns/a/sa/b", 0, NULL, NULL, NULL },
		{ "dot segment", "spiffe://td/ns/./sa/b", 0, NULL, NULL, NULL },
		{ "dot-dot segment", "spiffe://td/ns/../sa/b", 0, NULL, NULL, NULL },
		{ "dot-dot sa", "spiffe://td/ns/a/sa/..", 0, NULL, NULL, NULL },
		{ "percent-encoding", "spiffe://td/ns/a%2Fb/sa/c", 0, NULL, NULL, NULL },
		{ "query", "spiffe://td/ns/a/sa/b?x=1", 0, NULL, NULL, NULL },
		{ "fragment", "spiffe://td/ns/a/sa/b#f", 0, NULL, NULL, NULL },
		{ "upper case NS keyword", "spiffe://td/NS/a/sa/b", 0, NULL, NULL, NULL },
		{ "swapped keywords", "spiffe://td/sa/b/ns/a", 0, NULL, NULL, NULL },
		{ "wrong keyword", "spiffe://td/ns/a/sb/b", 0, NULL, NULL, NULL },
		{ "space", "spiffe://td/ns/a b/sa/c", 0, NULL, NULL, NULL },
		{ "newline", "spiffe://td/ns/a/sa/b\n", 0, NULL, NULL, NULL },
		{ "non-ASCII", "spiffe://td/ns/\xc3\xa9/sa/b", 0, NULL, NULL, NULL },
		{ "embedded NUL", "spiffe://td/ns/a\0/sa/b", 22, NULL, NULL, NULL },
		{ "not a workload path", "spiffe://td/workload/x", 0, NULL, NULL, NULL },
	};
	struct spiffe_id id;
	char big[1024];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct parse_case *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->uri);
		int ret = identity_spiffe_parse(c->uri, len, &id);

		if (!c->td) {
			ASSERT_EQ(ret, -EINVAL, c->desc);
			continue;
		}
		if (!ASSERT_OK(ret, c->desc))
			continue;
		ASSERT_STREQ(id.td, c->td, c->desc);
		ASSERT_STREQ(id.ns, c->ns, c->desc);
		ASSERT_STREQ(id.sa, c->sa, c->desc);
	}
	ASSERT_EQ(identity_spiffe_parse(NULL, 3, &id), -EINVAL, "NULL uri");
	ASSERT_EQ(identity_spiffe_parse("spiffe://td/ns/a/sa/b", 21, NULL), -EINVAL, "NULL out");

	/* Limits: 255-byte trust domain, 253-byte segments; one more is refused. */
	strf(big, sizeof(big), "spiffe://%.*s/ns/%.*s/sa/%.*s", SL_SPIFFE_TD_MAX,
		 "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt",
		 SL_SPIFFE_SEG_MAX,
		 "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
		 SL_SPIFFE_SEG_MAX,
		 "ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss");
	if (ASSERT_EQ(strlen(big), SL_SPIFFE_URI_MAX, "max length URI") &&
	    ASSERT_OK(identity_spiffe_parse(big, strlen(big), &id), "max lengths parse")) {
		ASSERT_EQ(strlen(id.td), SL_SPIFFE_TD_MAX, "max td");
		ASSERT_EQ(strlen(id.ns), SL_SPIFFE_SEG_MAX, "max ns");
		ASSERT_EQ(strlen(id.sa), SL_SPIFFE_SEG_MAX, "max sa");
	}
	{
		char td256[300], seg254[300];

		memset(td256, 't', 256);
		td256[256] = '\0';
		memset(seg254, 'n', 254);
		seg254[254] = '\0';
		strf(big, sizeof(big), "spiffe://%s/ns/a/sa/b", td256);
		ASSERT_EQ(identity_spiffe_parse(big, strlen(big), &id), -EINVAL, "256-byte td");
		strf(big, sizeof(big), "spiffe://td/ns/%s/sa/b", seg254);
		ASSERT_EQ(identity_spiffe_parse(big, strlen(big), &id), -EINVAL, "254-byte ns");
		strf(big, sizeof(big), "spiffe://td/ns/a/sa/%s", seg254);
		ASSERT_EQ(identity_spiffe_parse(big, strlen(big), &id), -EINVAL, "254-byte sa");
	}
	leak_check();
}

void test_identity_spiffe_format(void)
{
	struct spiffe_id id = { .td = TD, .ns = "default", .sa = "sleep" }, back;
	char buf[SL_SPIFFE_URI_MAX + 1];
	const char *want = URI("default", "sleep");
	int n;

	n = identity_spiffe_format(&id, buf, sizeof(buf));
	ASSERT_EQ(n, strlen(want), "length");
	ASSERT_STREQ(buf, want, "format");
	if (ASSERT_OK(identity_spiffe_parse(buf, (size_t)n, &back), "round trip"))
		ASSERT_TRUE(!strcmp(back.td, id.td) && !strcmp(back.ns, id.ns) &&
				    !strcmp(back.sa, id.sa), "round trip equal");
	ASSERT_EQ(identity_spiffe_format(&id, buf, strlen(want) + 1), strlen(want), "exact fit");
	ASSERT_EQ(identity_spiffe_format(&id, buf, strlen(want)), -ENOSPC, "one short");
	ASSERT_EQ(identity_spiffe_format(&id, buf, 0), -ENOSPC, "no room");

	static const struct spiffe_id bad[] = {
		{ .td = "", .ns = "a", .sa = "b" },
		{ .td = "TD", .ns = "a", .sa = "b" },
		{ .td = "td", .ns = "", .sa = "b" },
		{ .td = "td", .ns = "a/b", .sa = "b" },
		{ .td = "td", .ns = "a", .sa = ".." },
		{ .td = "td", .ns = "a", .sa = "b?c" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ASSERT_EQ(identity_spiffe_format(&bad[i], buf, sizeof(buf)), -EINVAL, "bad field");
	/* Fields filled to the brim, without a NUL, are not read past. */
	memset(&id, 'a', sizeof(id));
	ASSERT_EQ(identity_spiffe_format(&id, buf, sizeof(buf)), -EINVAL, "unterminated fields");
	ASSERT_EQ(identity_spiffe_format(NULL, buf, sizeof(buf)), -EINVAL, "NULL id");
	leak_check();
}

void test_identity_cert_spiffe(void)
{
	static const struct {
		const char *desc, *san;
		int want;
		const char *uri;
	} cases[] = {
		{ "one URI", "URI:" URI("a", "b"), 0, URI("a", "b") },
		{ "URI among DNS and IP", "DNS:x.example,URI:" URI("a", "b") ",IP:10.0.0.1", 0,
		  URI("a", "b") },
		{ "no SAN", NULL, -ENOENT, NULL },
		{ "DNS only", "DNS:x.example", -ENOENT, NULL },
		{ "two URIs", "URI:" URI("a", "b") ",URI:" URI("a", "c"), -ENOTUNIQ, NULL },
		{ "not SPIFFE", "URI:https://x.example/ns/a/sa/b", -EINVAL, NULL },
		{ "SPIFFE, not a workload", "URI:spiffe://" TD "/a/b", -EINVAL, NULL },
	};
	char uri[SL_SPIFFE_URI_MAX + 1];
	struct spiffe_id id;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509 *x = make_cert(cases[i].san, NULL, NULL, NULL);
		unsigned char *der = NULL, *p;
		char *pem = NULL;
		BIO *b = BIO_new(BIO_s_mem());
		int n;
		long pn;

		if (!ASSERT_OK_PTR(x, cases[i].desc) || !ASSERT_OK_PTR(b, "BIO"))
			goto next;
		ASSERT_EQ(identity_cert_spiffe(x, &id), cases[i].want, cases[i].desc);
		if (cases[i].uri && identity_spiffe_format(&id, uri, sizeof(uri)) > 0)
			ASSERT_STREQ(uri, cases[i].uri, cases[i].desc);
		/* The same from DER and from PEM bytes. */
		n = i2d_X509(x, &der);
		if (ASSERT_GE(n, 1, "i2d_X509")) {
			ASSERT_EQ(identity_cert_spiffe_buf(der, (size_t)n, &id), cases[i].want, "DER");
			ASSERT_EQ(identity_cert_spiffe_buf(der, (size_t)n - 1, &id), -EBADMSG,
				  "truncated DER");
			p = realloc(der, (size_t)n + 1);
			if (p) {
				der = p;
				der[n] = 0;
				ASSERT_EQ(identity_cert_spiffe_buf(der, (size_t)n + 1, &id), -EBADMSG,
					  "DER with a trailing byte");
			}
		}
		if (PEM_write_bio_X509(b, x)) {
			pn = BIO_get_mem_data(b, &pem);
			ASSERT_EQ(identity_cert_spiffe_buf(pem, (size_t)pn, &id), cases[i].want, "PEM");
		}
next:
		OPENSSL_free(der);
		BIO_free(b);
		X509_free(x);
	}
	ASSERT_EQ(identity_cert_spiffe_buf("garbage", 7, &id), -EBADMSG, "garbage");
	ASSERT_EQ(identity_cert_spiffe_buf("-----BEGIN CERTIFICATE-----\n", 28, &id), -EBADMSG,
		  "PEM header only");
	ASSERT_EQ(identity_cert_spiffe_buf("", 0, &id), -EBADMSG, "empty");
	ASSERT_EQ(identity_cert_spiffe(NULL, &id), -EINVAL, "NULL cert");
	leak_check();
}

/* ---- mesh-ca ---- */

void test_identity_mint(void)
{
	struct identity_cert_info *info = NULL;
	struct fx f;
	SSL_CTX *s = NULL, *s2 = NULL, *c = NULL, *o = NULL;
	X509 *ca = NULL, *x, *y;
	EVP_PKEY *pk;
	X509_STORE *st = NULL;
	X509_STORE_CTX *xs = NULL;
	struct spiffe_id id;
	char uri[SL_SPIFFE_URI_MAX + 1], name[64], serial[64], *err = NULL;
	BIGNUM *bn = NULL;
	size_t n = 0, gl = 0;
	time_t now = time(NULL);
	int idx;

	if (!fx_mesh(&f, 0, false))
		goto out;
	s = identity_server_ctx(f.id, "default", "sleep", &err);
	if (!ASSERT_OK_PTR(s, err ? err : "server ctx"))
		goto out;
	x = SSL_CTX_get0_certificate(s);
	if (!ASSERT_OK_PTR(x, "certificate"))
		goto out;

	/* Identity: the one URI SAN, critical, and an empty subject. */
	if (ASSERT_OK(identity_cert_spiffe(x, &id), "SPIFFE ID") &&
	    identity_spiffe_format(&id, uri, sizeof(uri)) > 0)
		ASSERT_STREQ(uri, URI("default", "sleep"), "URI SAN");
	idx = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
	ASSERT_TRUE(idx >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, idx)), "SAN critical");
	ASSERT_EQ(X509_NAME_entry_count(X509_get_subject_name(x)), 0, "empty subject");
	ASSERT_EQ(X509_get_version(x), X509_VERSION_3, "v3");

	/* Key: ECDSA P-256. */
	pk = X509_get0_pubkey(x);
	ASSERT_TRUE(pk && EVP_PKEY_is_a(pk, "EC"), "EC key");
	if (pk && EVP_PKEY_get_group_name(pk, name, sizeof(name), &gl))
		ASSERT_STREQ(name, "prime256v1", "P-256");

	/* Usage. */
	ASSERT_EQ(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT, "keyUsage");
	ASSERT_EQ(X509_get_extended_key_usage(x) & (XKU_SSL_SERVER | XKU_SSL_CLIENT),
		  XKU_SSL_SERVER | XKU_SSL_CLIENT, "extendedKeyUsage");
	ASSERT_EQ(X509_check_ca(x), 0, "not a CA");

	/* Validity: now - 1 min .. now + 24 h. */
	{
		struct tm tm;
		time_t nb = 0, na = 0;

		if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm))
			nb = timegm(&tm);
		if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
			na = timegm(&tm);
		ASSERT_TRUE(nb >= now - 65 && nb <= now - 55, "notBefore = now - 60 s");
		ASSERT_TRUE(na >= now + 86400 - 5 && na <= now + 86400 + 5, "notAfter = now + 24 h");
	}

	/* Serial: random, up to 128 bits. */
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	ASSERT_TRUE(bn && BN_num_bits(bn) <= 128 && BN_num_bits(bn) > 64, "128-bit serial");

	/* Signed by the CA; AKI is the CA's SKI; SKI present. */
	ca = read_pem_cert(f.ca_crt);
	if (!ASSERT_OK_PTR(ca, "read CA"))
		goto out;
	ASSERT_EQ(X509_check_issued(ca, x), X509_V_OK, "issued by the CA");
	ASSERT_EQ(X509_verify(x, X509_get0_pubkey(ca)), 1, "CA signature");
	ASSERT_OK_PTR(X509_get0_subject_key_id(x), "SKI");
	ASSERT_TRUE(X509_get0_authority_key_id(x) && X509_get0_subject_key_id(ca) &&
			    !ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x),
						   X509_get0_subject_key_id(ca)),
		    "AKI = CA SKI");
	st = X509_STORE_new();
	xs = X509_STORE_CTX_new();
	if (st && xs && X509_STORE_add_cert(st, ca) && X509_STORE_CTX_init(xs, st, x, NULL)) {
		X509_STORE_CTX_set_purpose(xs, X509_PURPOSE_SSL_CLIENT);
		ASSERT_EQ(X509_verify_cert(xs), 1, "chain verifies as a TLS client");
		X509_STORE_CTX_cleanup(xs);
		if (X509_STORE_CTX_init(xs, st, x, NULL)) {
			X509_STORE_CTX_set_purpose(xs, X509_PURPOSE_SSL_SERVER);
			ASSERT_EQ(X509_verify_cert(xs), 1, "chain verifies as a TLS server");
		}
	}

	/* Cached: the same context again; the client side presents the same cert. */
	s2 = identity_server_ctx(f.id, "default", "sleep", NULL);
	ASSERT_TRUE(s2 == s, "server context cached");
	c = identity_client_ctx(f.id, "default", "sleep", NULL);
	ASSERT_TRUE(c && SSL_CTX_get0_certificate(c) == x, "client presents the same certificate");
	/* Another identity: another key. */
	o = identity_server_ctx(f.id, "default", "other", NULL);
	y = o ? SSL_CTX_get0_certificate(o) : NULL;
	ASSERT_TRUE(y && EVP_PKEY_eq(X509_get0_pubkey(x), X509_get0_pubkey(y)) != 1,
		    "another identity, another key");

	/* Listing. */
	if (ASSERT_OK(identity_certs(f.id, &info, &n), "identity_certs") && ASSERT_EQ(n, 2, "two")) {
		serial_of(x, serial, sizeof(serial));
		ASSERT_STREQ(info[0].id, URI("default", "other"), "sorted by id");
		ASSERT_STREQ(info[1].id, URI("default", "sleep"), "id");
		ASSERT_STREQ(info[1].serial, serial, "serial");
		ASSERT_EQ(info[1].mode, IDENTITY_MESH_CA, "mode");
		ASSERT_STREQ(identity_mode_str(info[1].mode), "mesh-ca", "mode str");
		ASSERT_HAS(info[1].source, f.ca_crt, "source");
		ASSERT_TRUE(info[1].not_after - info[1].not_before == 86400 + 60, "validity listed");
		ASSERT_TRUE(info[1].next_renewal >= now + 43200 - 5 &&
				    info[1].next_renewal <= now + 43200 + 5,
			    "next renewal at half life");
		ASSERT_STREQ(info[1].error, "", "no error");
	}
out:
	free(err);
	free(info);
	BN_free(bn);
	X509_STORE_CTX_free(xs);
	X509_STORE_free(st);
	X509_free(ca);
	SSL_CTX_free(s);
	SSL_CTX_free(s2);
	SSL_CTX_free(c);
	SSL_CTX_free(o);
	fx_free(&f);
	leak_check();
}

/* A CA that ends before the TTL would: the certificate ends with it. */
void test_identity_mint_clamped_to_ca(void)
{
	struct identity_opts o = { .mode = IDENTITY_MESH_CA, .cert_ttl_s = 3 * 86400 };
	char dir[PATH_MAX], crt[PATH_MAX], key[PATH_MAX], *err = NULL;
	struct identity *id = NULL;
	SSL_CTX *s = NULL;
	X509 *ca = NULL;

	path_in(dir, test_tmpdir(), "ca");
	if (!ASSERT_TRUE(lab(dir, "--days", "1"), "lab-ca --days 1"))
		return;
	o.ca_cert_file = path_in(crt, dir, "ca.crt");
	o.ca_key_file = path_in(key, dir, "ca.key");
	if (!ASSERT_OK(identity_new(&id, NULL, &o, &err), err ? err : "identity_new"))
		goto out;
	s = identity_server_ctx(id, "a", "b", &err);
	ca = read_pem_cert(crt);
	if (ASSERT_OK_PTR(s, err ? err : "ctx") && ASSERT_OK_PTR(ca, "CA"))
		ASSERT_EQ(ASN1_TIME_compare(X509_get0_notAfter(SSL_CTX_get0_certificate(s)),
					    X509_get0_notAfter(ca)),
			  0, "notAfter = the CA's");
out:
	free(err);
	X509_free(ca);
	SSL_CTX_free(s);
	identity_free(id);
	leak_check();
}

/* Renewal: at half life, re-armed for the next; dropped when unused. */
struct renew_probe {
	struct fx *f;
	struct loop_timer t;
	uint64_t t0, at[3];
	int phase;
	char serial[64];
};

static void renew_probe_cb(struct loop_timer *t)
{
	struct renew_probe *p = t->arg;
	struct identity_cert_info *info = NULL;
	uint64_t now = loop_now_ms();
	size_t n = 0;

	if (identity_certs(p->f->id, &info, &n)) {
		loop_stop(p->f->loop);
		return;
	}
	if (n == 1 && strcmp(info[0].serial, p->serial)) {
		strf(p->serial, sizeof(p->serial), "%s", info[0].serial);
		if (p->phase < 2)
			p->at[p->phase] = now;
		else
			p->at[2] = 1;	/* renewed although unused: wrong */
		/* Used after the first renewal only, so the second is the last. */
		if (p->phase++ == 0)
			SSL_CTX_free(identity_client_ctx(p->f->id, "default", "sleep", NULL));
	} else if (n == 0) {
		if (p->phase == 2)
			p->at[2] = now;
		loop_stop(p->f->loop);
	}
	free(info);
	if (now - p->t0 > 8000)
		loop_stop(p->f->loop);
	else
		loop_timer_arm(p->f->loop, t, 10);
}

void test_identity_renewal(void)
{
	struct identity_cert_info *info = NULL;
	struct renew_probe p = { 0 };
	struct fx f;
	SSL_CTX *c;
	size_t n = 0;

	/* TTL 2 s: renewal every 1 s. */
	if (!fx_mesh(&f, 2, true))
		goto out;
	p.f = &f;
	p.t0 = loop_now_ms();
	c = identity_client_ctx(f.id, "default", "sleep", NULL);
	if (!ASSERT_OK_PTR(c, "ctx"))
		goto out;
	SSL_CTX_free(c);
	if (!ASSERT_OK(identity_certs(f.id, &info, &n), "certs") || !ASSERT_EQ(n, 1, "one"))
		goto out;
	strf(p.serial, sizeof(p.serial), "%s", info[0].serial);
	loop_timer_init(&p.t, renew_probe_cb, &p);
	loop_timer_arm(f.loop, &p.t, 10);
	ASSERT_OK(loop_run(f.loop), "loop_run");
	loop_timer_cancel(f.loop, &p.t);

	/* Never early (due = mint + 1000 ms; t0 is before the mint), and not much
	 * later. Later renewals are timed from when the 10 ms probe saw the
	 * previous one, hence the slack below 1000 ms. */
	ASSERT_EQ(p.phase, 2, "renewed twice");
	if (p.phase == 2) {
		printf("renewals after %llu and %llu ms, dropped after %llu ms\n",
		       (unsigned long long)(p.at[0] - p.t0), (unsigned long long)(p.at[1] - p.at[0]),
		       (unsigned long long)(p.at[2] - p.at[1]));
		ASSERT_TRUE(p.at[0] - p.t0 >= 1000 && p.at[0] - p.t0 < 1600, "first at half life");
		ASSERT_TRUE(p.at[1] - p.at[0] >= 950 && p.at[1] - p.at[0] < 1600,
			    "second half a life later");
		ASSERT_TRUE(p.at[2] > p.at[1] && p.at[2] - p.at[1] >= 950 && p.at[2] - p.at[1] < 1600,
			    "unused: dropped at the next half life");
	}
out:
	free(info);
	fx_free(&f);
	leak_check();
}

/* ---- handshakes ---- */

void test_identity_handshake(void)
{
	struct fx f;
	struct tls_pair p = { .fd = { -1, -1 } };
	SSL_CTX *s = NULL, *c = NULL;
	enum identity_peer_reason why = IDENTITY_PEER_REASON_COUNT;
	const unsigned char *alpn = NULL;
	unsigned int alpn_len = 0;
	char peer[SL_SPIFFE_URI_MAX + 1], *err = NULL;
	const char *cipher;

	if (!fx_mesh(&f, 0, false))
		goto out;
	s = identity_server_ctx(f.id, "default", "httpbin", &err);
	c = identity_client_ctx(f.id, "default", "sleep", &err);
	if (!ASSERT_OK_PTR(s, "server ctx") || !ASSERT_OK_PTR(c, "client ctx"))
		goto out;
	if (!pair_new(&p, c, s))
		goto out;
	/* The SSLs hold their own references. */
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	s = c = NULL;
	if (!ASSERT_TRUE(tls_pump(&p), "handshake"))
		goto out;

	ASSERT_EQ(SSL_version(p.c), TLS1_3_VERSION, "TLS 1.3");
	cipher = SSL_get_cipher_name(p.c);
	ASSERT_TRUE(cipher && (!strcmp(cipher, "TLS_AES_256_GCM_SHA384") ||
			       !strcmp(cipher, "TLS_AES_128_GCM_SHA256")), "AES-GCM suite");
	SSL_get0_alpn_selected(p.s, &alpn, &alpn_len);
	ASSERT_TRUE(alpn_len == 2 && !memcmp(alpn, "h2", 2), "ALPN h2 (server)");
	SSL_get0_alpn_selected(p.c, &alpn, &alpn_len);
	ASSERT_TRUE(alpn_len == 2 && !memcmp(alpn, "h2", 2), "ALPN h2 (client)");
	ASSERT_TRUE(SSL_get_servername(p.s, TLSEXT_NAMETYPE_host_name) == NULL, "no SNI");

	ASSERT_OK(identity_peer_check(p.c, URI("default", "httpbin"), peer, sizeof(peer), &why),
		  "client checks the server");
	ASSERT_EQ(why, IDENTITY_PEER_OK, "reason ok");
	ASSERT_STREQ(peer, URI("default", "httpbin"), "server identity");
	ASSERT_OK(identity_peer_check(p.s, NULL, peer, sizeof(peer), &why), "server checks the client");
	ASSERT_STREQ(peer, URI("default", "sleep"), "client identity");
	ASSERT_OK(identity_peer_check(p.s, URI("default", "sleep"), NULL, 0, NULL), "expected client");

	pair_echo(&p, "data both ways");
	/* No resumption: no ticket arrived, nothing reused. */
	ASSERT_FALSE(SSL_session_reused(p.c), "not resumed");
	ASSERT_FALSE(SSL_SESSION_is_resumable(SSL_get_session(p.c)), "no session ticket");
out:
	free(err);
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	fx_free(&f);
	leak_check();
}

/* Rotation: a connection made before keeps working; new ones get the new cert. */
void test_identity_rotation(void)
{
	struct fx f;
	struct tls_pair a = { .fd = { -1, -1 } }, b = { .fd = { -1, -1 } };
	SSL_CTX *s1 = NULL, *c1 = NULL, *s2 = NULL, *c2 = NULL;
	char old_serial[64], new_serial[64], old_client[64];

	if (!fx_mesh(&f, 2, true))
		goto out;
	s1 = identity_server_ctx(f.id, "default", "httpbin", NULL);
	c1 = identity_client_ctx(f.id, "default", "sleep", NULL);
	if (!ASSERT_OK_PTR(s1, "s1") || !ASSERT_OK_PTR(c1, "c1") || !pair_new(&a, c1, s1) ||
	    !ASSERT_TRUE(tls_pump(&a), "handshake before rotation"))
		goto out;
	serial_of(SSL_get0_peer_certificate(a.c), old_serial, sizeof(old_serial));
	pair_echo(&a, "before rotation");

	listed_serial(f.id, URI("default", "sleep"), old_client, sizeof(old_client));
	/* Both were minted within milliseconds; each rotates at its own half life. */
	if (!ASSERT_TRUE(wait_certs(&f, URI("default", "httpbin"), old_serial, false),
			 "server rotated by the timer") ||
	    !ASSERT_TRUE(wait_certs(&f, URI("default", "sleep"), old_client, false),
			 "client rotated by the timer"))
		goto out;

	/* The old connection, and its context, still work. */
	pair_echo(&a, "old connection after rotation");
	ASSERT_TRUE(SSL_get_SSL_CTX(a.s) == s1, "old SSL keeps its context");

	s2 = identity_server_ctx(f.id, "default", "httpbin", NULL);
	c2 = identity_client_ctx(f.id, "default", "sleep", NULL);
	if (!ASSERT_OK_PTR(s2, "s2") || !ASSERT_OK_PTR(c2, "c2"))
		goto out;
	ASSERT_TRUE(s2 != s1, "a new server context");
	ASSERT_TRUE(c2 != c1, "a new client context");
	if (!pair_new(&b, c2, s2) || !ASSERT_TRUE(tls_pump(&b), "handshake after rotation"))
		goto out;
	serial_of(SSL_get0_peer_certificate(b.c), new_serial, sizeof(new_serial));
	ASSERT_TRUE(new_serial[0] && strcmp(new_serial, old_serial), "new connection, new cert");
	ASSERT_OK(identity_peer_check(b.c, URI("default", "httpbin"), NULL, 0, NULL), "peer ok");
	pair_echo(&b, "new connection");
	pair_echo(&a, "old connection still");
out:
	pair_free(&a);
	pair_free(&b);
	SSL_CTX_free(s1);
	SSL_CTX_free(c1);
	SSL_CTX_free(s2);
	SSL_CTX_free(c2);
	fx_free(&f);
	leak_check();
}

/* A context outlives identity_free(): its verify callback needs nothing of it. */
void test_identity_ctx_outlives_identity(void)
{
	struct fx f;
	struct tls_pair p = { .fd = { -1, -1 } };
	SSL_CTX *s = NULL, *c = NULL;

	if (!fx_mesh(&f, 0, false))
		goto out;
	s = identity_server_ctx(f.id, "default", "httpbin", NULL);
	c = identity_client_ctx(f.id, "default", "sleep", NULL);
	fx_free(&f);
	if (!ASSERT_OK_PTR(s, "s") || !ASSERT_OK_PTR(c, "c") || !pair_new(&p, c, s))
		goto out;
	if (ASSERT_TRUE(tls_pump(&p), "handshake after identity_free"))
		ASSERT_OK(identity_peer_check(p.c, URI("default", "httpbin"), NULL, 0, NULL), "peer");
out:
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	fx_free(&f);
	leak_check();
}

void test_identity_wrong_identity(void)
{
	struct fx f;
	struct tls_pair p = { .fd = { -1, -1 } };
	SSL_CTX *s = NULL, *c = NULL;
	enum identity_peer_reason why = IDENTITY_PEER_OK;
	char peer[SL_SPIFFE_URI_MAX + 1];

	if (!fx_mesh(&f, 0, false))
		goto out;
	/* A valid mesh certificate, for another workload than the one we dialled. */
	s = identity_server_ctx(f.id, "default", "impostor", NULL);
	c = identity_client_ctx(f.id, "default", "sleep", NULL);
	if (!ASSERT_OK_PTR(s, "s") || !ASSERT_OK_PTR(c, "c") || !pair_new(&p, c, s) ||
	    !ASSERT_TRUE(tls_pump(&p), "handshake itself succeeds"))
		goto out;
	ASSERT_EQ(identity_peer_check(p.c, URI("default", "httpbin"), peer, sizeof(peer), &why),
		  -EACCES, "rejected");
	ASSERT_EQ(why, IDENTITY_PEER_WRONG_ID, "wrong identity");
	ASSERT_STREQ(peer, URI("default", "impostor"), "says who it was");
	ASSERT_STREQ(identity_peer_reason_str(why), "peer SPIFFE ID is not the expected one", "str");
out:
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	fx_free(&f);
	leak_check();
}

/* Two meshes: A trusts its CA only; B trusts both. */
void test_identity_untrusted_peer(void)
{
	struct identity_opts o = { .mode = IDENTITY_MESH_CA };
	struct identity *b_id = NULL;
	struct fx f;
	struct tls_pair p = { .fd = { -1, -1 } };
	SSL_CTX *s = NULL, *c = NULL;
	enum identity_peer_reason why = IDENTITY_PEER_OK;
	char other[PATH_MAX], ocrt[PATH_MAX], okey[PATH_MAX], both[PATH_MAX], cmd[3 * PATH_MAX];
	char *err = NULL;

	if (!fx_mesh(&f, 0, false))
		goto out;
	path_in(other, f.dir, "other");
	if (!ASSERT_TRUE(lab(other, "--other"), "lab-ca --other"))
		goto out;
	path_in(both, f.dir, "both.pem");
	strf(cmd, sizeof(cmd), "cat %s %s/ca.crt > %s", f.ca_crt, other, both);
	if (!ASSERT_OK(system(cmd), "bundle of both"))
		goto out;
	o.ca_cert_file = path_in(ocrt, other, "ca.crt");
	o.ca_key_file = path_in(okey, other, "ca.key");
	o.bundle_file = both;
	if (!ASSERT_OK(identity_new(&b_id, NULL, &o, &err), err ? err : "identity B"))
		goto out;

	/* B's client (which accepts A's server) is refused by A's server. */
	s = identity_server_ctx(f.id, "default", "httpbin", NULL);
	c = identity_client_ctx(b_id, "default", "sleep", NULL);
	if (!ASSERT_OK_PTR(s, "s") || !ASSERT_OK_PTR(c, "c") || !pair_new(&p, c, s))
		goto out;
	ASSERT_FALSE(tls_pump(&p), "handshake fails");
	ASSERT_TRUE(p.s_failed, "server refused");
	ASSERT_EQ(identity_peer_check(p.s, NULL, NULL, 0, &why), -EACCES, "server check");
	ASSERT_EQ(why, IDENTITY_PEER_UNTRUSTED, "untrusted client");
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);

	/* A's client refuses B's server. */
	s = identity_server_ctx(b_id, "default", "httpbin", NULL);
	c = identity_client_ctx(f.id, "default", "sleep", NULL);
	if (!ASSERT_OK_PTR(s, "s") || !ASSERT_OK_PTR(c, "c") || !pair_new(&p, c, s))
		goto out;
	ASSERT_FALSE(tls_pump(&p), "handshake fails");
	ASSERT_TRUE(p.c_failed, "client refused");
	ASSERT_EQ(identity_peer_check(p.c, URI("default", "httpbin"), NULL, 0, &why), -EACCES,
		  "client check");
	ASSERT_EQ(why, IDENTITY_PEER_UNTRUSTED, "untrusted server");
out:
	free(err);
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	identity_free(b_id);
	fx_free(&f);
	leak_check();
}

/* An expired certificate signed by the trusted CA, on either side. */
void test_identity_expired_peer(void)
{
	struct fx f;
	struct tls_pair p = { .fd = { -1, -1 } };
	SSL_CTX *s = NULL, *c = NULL;
	enum identity_peer_reason why = IDENTITY_PEER_OK;
	char out_dir[PATH_MAX], crt[PATH_MAX], key[PATH_MAX];

	if (!fx_mesh(&f, 0, false))
		goto out;
	path_in(out_dir, f.dir, "expired");
	if (!ASSERT_TRUE(lab("issue", f.ca_dir, "default", "sleep", out_dir, "--expired"),
			 "lab-ca issue --expired"))
		goto out;
	path_in(crt, out_dir, "tls.crt");
	path_in(key, out_dir, "tls.key");

	c = plain_ctx(false, crt, key, true);
	s = identity_server_ctx(f.id, "default", "httpbin", NULL);
	if (!ASSERT_OK_PTR(s, "s") || !ASSERT_OK_PTR(c, "expired client ctx") || !pair_new(&p, c, s))
		goto out;
	ASSERT_FALSE(tls_pump(&p), "handshake fails");
	ASSERT_EQ(identity_peer_check(p.s, NULL, NULL, 0, &why), -EACCES, "server check");
	ASSERT_EQ(why, IDENTITY_PEER_EXPIRED, "expired client");
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);

	s = plain_ctx(true, crt, key, false);
	c = identity_client_ctx(f.id, "default", "sleep", NULL);
	if (!ASSERT_OK_PTR(s, "expired server ctx") || !ASSERT_OK_PTR(c, "c") || !pair_new(&p, c, s))
		goto out;
	ASSERT_FALSE(tls_pump(&p), "handshake fails");
	ASSERT_EQ(identity_peer_check(p.c, NULL, NULL, 0, &why), -EACCES, "client check");
	ASSERT_EQ(why, IDENTITY_PEER_EXPIRED, "expired server");
out:
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	fx_free(&f);
	leak_check();
}

/* Trusted CA, but another trust domain / no SPIFFE ID at all. */
void test_identity_foreign_trust_domain(void)
{
	struct fx f;
	struct tls_pair p = { .fd = { -1, -1 } };
	SSL_CTX *s = NULL, *c = NULL;
	enum identity_peer_reason why = IDENTITY_PEER_OK;
	char out_dir[PATH_MAX], crt[PATH_MAX], key[PATH_MAX];
	X509 *ca = NULL, *x = NULL;
	EVP_PKEY *cak = NULL, *k = NULL;

	if (!fx_mesh(&f, 0, false))
		goto out;
	path_in(out_dir, f.dir, "foreign");
	if (!ASSERT_TRUE(lab("issue", f.ca_dir, "default", "sleep", out_dir, "--trust-domain",
			     "other.example"), "lab-ca issue --trust-domain"))
		goto out;
	c = plain_ctx(false, path_in(crt, out_dir, "tls.crt"), path_in(key, out_dir, "tls.key"), true);
	s = identity_server_ctx(f.id, "default", "httpbin", NULL);
	if (!ASSERT_OK_PTR(s, "s") || !ASSERT_OK_PTR(c, "c") || !pair_new(&p, c, s))
		goto out;
	ASSERT_FALSE(tls_pump(&p), "handshake fails");
	ASSERT_EQ(identity_peer_check(p.s, NULL, NULL, 0, &why), -EACCES, "server check");
	ASSERT_EQ(why, IDENTITY_PEER_FOREIGN_TD, "foreign trust domain");
	pair_free(&p);
	SSL_CTX_free(c);
	c = NULL;

	/* Signed by our CA, with only a DNS SAN. */
	ca = read_pem_cert(f.ca_crt);
	cak = read_pem_key(f.ca_key);
	x = ca && cak ? make_cert("DNS:sleep.default.svc", ca, cak, &k) : NULL;
	path_in(out_dir, f.dir, "dns");
	if (!ASSERT_OK_PTR(x, "DNS-only cert") || !ASSERT_TRUE(write_pem(out_dir, x, k), "write"))
		goto out;
	c = plain_ctx(false, path_in(crt, out_dir, "tls.crt"), path_in(key, out_dir, "tls.key"), true);
	if (!ASSERT_OK_PTR(c, "c") || !pair_new(&p, c, s))
		goto out;
	ASSERT_FALSE(tls_pump(&p), "handshake fails");
	ASSERT_EQ(identity_peer_check(p.s, NULL, NULL, 0, &why), -EACCES, "server check");
	ASSERT_EQ(why, IDENTITY_PEER_NO_SPIFFE, "no SPIFFE ID");
out:
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	X509_free(ca);
	X509_free(x);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(k);
	fx_free(&f);
	leak_check();
}

void test_identity_no_client_cert(void)
{
	struct fx f;
	struct tls_pair p = { .fd = { -1, -1 } };
	SSL_CTX *s = NULL, *c = NULL;
	enum identity_peer_reason why = IDENTITY_PEER_OK;

	if (!fx_mesh(&f, 0, false))
		goto out;
	s = identity_server_ctx(f.id, "default", "httpbin", NULL);
	c = plain_ctx(false, NULL, NULL, true);
	if (!ASSERT_OK_PTR(s, "s") || !ASSERT_OK_PTR(c, "c") || !pair_new(&p, c, s))
		goto out;
	ASSERT_FALSE(tls_pump(&p), "handshake fails");
	ASSERT_TRUE(p.s_failed, "server refused");
	ASSERT_EQ(identity_peer_check(p.s, NULL, NULL, 0, &why), -EACCES, "server check");
	ASSERT_EQ(why, IDENTITY_PEER_NO_CERT, "no client certificate");
out:
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	fx_free(&f);
	leak_check();
}

/* A client of ours, restricted per SSL, against a server of ours. */
static enum identity_peer_reason handshake_variant(struct fx *f, const char *what, int max_ver,
						   const char *suites, const char *alpn,
						   bool *ok)
{
	struct tls_pair p = { .fd = { -1, -1 } };
	SSL_CTX *s = identity_server_ctx(f->id, "default", "httpbin", NULL);
	SSL_CTX *c = identity_client_ctx(f->id, "default", "sleep", NULL);
	enum identity_peer_reason why = IDENTITY_PEER_REASON_COUNT;

	*ok = false;
	if (!ASSERT_OK_PTR(s, what) || !ASSERT_OK_PTR(c, what) || !pair_new(&p, c, s))
		goto out;
	if (max_ver)
		SSL_set_max_proto_version(p.c, max_ver);
	if (suites)
		SSL_set_ciphersuites(p.c, suites);
	if (alpn)
		SSL_set_alpn_protos(p.c, (const unsigned char *)alpn, (unsigned int)strlen(alpn));
	*ok = tls_pump(&p);
	identity_peer_check(p.s, NULL, NULL, 0, &why);
out:
	pair_free(&p);
	SSL_CTX_free(s);
	SSL_CTX_free(c);
	return why;
}

void test_identity_reject_tls12(void)
{
	struct identity_opts o = { .mode = IDENTITY_MESH_CA, .allow_tls12 = true };
	struct fx f;
	bool ok;

	if (!fx_mesh(&f, 0, false))
		goto out;
	ASSERT_EQ(handshake_variant(&f, "TLS 1.2 client", TLS1_2_VERSION, NULL, NULL, &ok),
		  IDENTITY_PEER_HANDSHAKE, "TLS 1.2 refused by default");
	ASSERT_FALSE(ok, "no handshake");
	fx_free(&f);

	/* allow_tls12: the same client gets in, with ECDHE and AES-GCM. */
	o.ca_cert_file = f.ca_crt;
	o.ca_key_file = f.ca_key;
	if (!ASSERT_OK(identity_new(&f.id, NULL, &o, NULL), "identity allow_tls12"))
		goto out;
	ASSERT_EQ(handshake_variant(&f, "TLS 1.2 allowed", TLS1_2_VERSION, NULL, NULL, &ok),
		  IDENTITY_PEER_OK, "TLS 1.2 allowed");
	ASSERT_TRUE(ok, "handshake");
out:
	fx_free(&f);
	leak_check();
}

void test_identity_reject_alpn_and_ciphers(void)
{
	struct fx f;
	bool ok;

	if (!fx_mesh(&f, 0, false))
		goto out;
	ASSERT_EQ(handshake_variant(&f, "http/1.1 only", 0, NULL, "\x08http/1.1", &ok),
		  IDENTITY_PEER_HANDSHAKE, "ALPN without h2 refused");
	ASSERT_FALSE(ok, "no handshake (ALPN http/1.1)");
	ASSERT_EQ(handshake_variant(&f, "no ALPN", 0, NULL, "", &ok), IDENTITY_PEER_HANDSHAKE,
		  "no ALPN refused");
	ASSERT_FALSE(ok, "no handshake (no ALPN)");
	ASSERT_EQ(handshake_variant(&f, "h2 among others", 0, NULL, "\x08http/1.1\x02h2", &ok),
		  IDENTITY_PEER_OK, "h2 picked from a list");
	ASSERT_TRUE(ok, "handshake (h2 in a list)");
	ASSERT_EQ(handshake_variant(&f, "ChaCha20 only", 0, "TLS_CHACHA20_POLY1305_SHA256", NULL, &ok),
		  IDENTITY_PEER_HANDSHAKE, "ChaCha20 refused");
	ASSERT_FALSE(ok, "no handshake (ChaCha20)");
out:
	fx_free(&f);
	leak_check();
}

void test_identity_peer_check_misuse(void)
{
	struct fx f;
	SSL_CTX *c = NULL;
	SSL *ssl = NULL;
	enum identity_peer_reason why = IDENTITY_PEER_OK;
	char peer[8] = "x";

	ASSERT_EQ(identity_peer_check(NULL, NULL, peer, sizeof(peer), &why), -EACCES, "NULL ssl");
	ASSERT_EQ(why, IDENTITY_PEER_HANDSHAKE, "reason");
	ASSERT_STREQ(peer, "", "no peer id");
	if (!fx_mesh(&f, 0, false))
		goto out;
	c = identity_client_ctx(f.id, "default", "sleep", NULL);
	ssl = c ? SSL_new(c) : NULL;
	if (ASSERT_OK_PTR(ssl, "SSL"))
		// cppcheck-suppress invalidPrintfArgType_sint ; misreads the macro
		ASSERT_EQ(identity_peer_check(ssl, NULL, NULL, 0, &why), -EACCES, "before handshake");
	ASSERT_EQ(why, IDENTITY_PEER_HANDSHAKE, "before handshake: handshake");
	for (int r = 0; r <= IDENTITY_PEER_REASON_COUNT; r++)
		ASSERT_OK_PTR(identity_peer_reason_str(r), "reason string");
	ASSERT_STREQ(identity_peer_reason_str(IDENTITY_PEER_REASON_COUNT), "unknown", "unknown");
out:
	SSL_free(ssl);
	SSL_CTX_free(c);
	fx_free(&f);
	leak_check();
}

/* ---- files mode ---- */

static bool fx_files(struct fx *f)
{
	struct identity_opts o = { .mode = IDENTITY_FILES, .reload_ms = 20 };
	char certs[PATH_MAX], *err = NULL;
	int ret;

	memset(f, 0, sizeof(*f));
	if (!fx_ca(f) || !ASSERT_OK(loop_new(&f->loop), "loop_new"))
		return false;
	o.certs_dir = path_in(certs, f->dir, "certs");
	o.bundle_file = f->ca_crt;
	ret = identity_new(&f->id, f->loop, &o, &err);
	if (!ASSERT_OK(ret, "identity_new files"))
		printf("err: %s\n", err ? err : "(none)");
	free(err);
	return !ret;
}

static bool issue(struct fx *f, const char *ns, const char *sa, const char *to_ns,
		  const char *to_sa, const char *extra)
{
	char out_dir[PATH_MAX];

	strf(out_dir, sizeof(out_dir), "%s/certs/%s/%s", f->dir, to_ns, to_sa);
	return lab("issue", f->ca_dir, ns, sa, out_dir, extra);
}

/* Replace *info with a fresh listing; true if it has want entries. */
static bool certs_get(struct identity *id, struct identity_cert_info **info, size_t want)
{
	size_t n = 0;

	free(*info);
	*info = NULL;
	if (!ASSERT_OK(identity_certs(id, info, &n), "identity_certs"))
		return false;
	return ASSERT_EQ(n, want, "entries listed") && *info;
}

void test_identity_files_mode(void)
{
	struct identity_cert_info *info = NULL;
	struct tls_pair p = { .fd = { -1, -1 } };
	struct fx f;
	SSL_CTX *s1 = NULL, *s2 = NULL, *c = NULL, *s3 = NULL;
	char *err = NULL, want[PATH_MAX], serial1[64], serial2[64], cur[64];

	if (!fx_files(&f) || !ASSERT_TRUE(issue(&f, "default", "sleep", "default", "sleep", NULL),
					  "issue sleep") ||
	    !ASSERT_TRUE(issue(&f, "default", "httpbin", "default", "httpbin", NULL), "issue httpbin"))
		goto out;

	/* Load, and a handshake between two file-mode identities. */
	s1 = identity_server_ctx(f.id, "default", "sleep", &err);
	if (!ASSERT_OK_PTR(s1, err ? err : "load"))
		goto out;
	c = identity_client_ctx(f.id, "default", "httpbin", &err);
	if (!ASSERT_OK_PTR(c, err ? err : "load httpbin") || !pair_new(&p, c, s1) ||
	    !ASSERT_TRUE(tls_pump(&p), "handshake"))
		goto out;
	ASSERT_OK(identity_peer_check(p.c, URI("default", "sleep"), NULL, 0, NULL), "client check");
	ASSERT_OK(identity_peer_check(p.s, URI("default", "httpbin"), NULL, 0, NULL), "server check");
	if (!certs_get(f.id, &info, 2))
		goto out;
	strf(want, sizeof(want), "%s/certs/default/sleep/tls.crt", f.dir);
	ASSERT_STREQ(info[1].id, URI("default", "sleep"), "id");
	ASSERT_STREQ(info[1].source, want, "source");
	ASSERT_STREQ(identity_mode_str(info[1].mode), "files", "mode");
	ASSERT_STREQ(info[1].error, "", "no error");
	serial_of(SSL_CTX_get0_certificate(s1), cur, sizeof(cur));
	ASSERT_STREQ(info[1].serial, cur, "serial");

	/* New files: reloaded by the timer; the old connection keeps working. */
	listed_serial(f.id, URI("default", "sleep"), serial1, sizeof(serial1));
	if (!ASSERT_TRUE(issue(&f, "default", "sleep", "default", "sleep", NULL), "re-issue") ||
	    !ASSERT_TRUE(wait_certs(&f, URI("default", "sleep"), serial1, false), "reloaded"))
		goto out;
	s2 = identity_server_ctx(f.id, "default", "sleep", NULL);
	ASSERT_TRUE(s2 && s2 != s1, "new context after reload");
	pair_echo(&p, "connection from before the reload");

	/* Another identity's pair in sleep's place: refused, the current one stays. */
	listed_serial(f.id, URI("default", "sleep"), serial2, sizeof(serial2));
	if (!ASSERT_TRUE(issue(&f, "default", "other", "default", "sleep", NULL), "wrong SAN") ||
	    !ASSERT_TRUE(wait_certs(&f, URI("default", "sleep"), NULL, true), "refused"))
		goto out;
	if (certs_get(f.id, &info, 2)) {
		strf(want, sizeof(want), "identity: files mode: %s/certs/default/sleep/tls.crt has "
			 "SAN %s, expected %s", f.dir, URI("default", "other"), URI("default", "sleep"));
		ASSERT_STREQ(info[1].error, want, "refusal says why and where");
		ASSERT_STREQ(info[1].serial, serial2, "serial unchanged");
	}
	s3 = identity_server_ctx(f.id, "default", "sleep", NULL);
	ASSERT_TRUE(s3 && s3 == s2, "previous certificate kept");

	/* Fixed again: picked up, the error cleared. */
	if (!ASSERT_TRUE(issue(&f, "default", "sleep", "default", "sleep", NULL), "re-issue") ||
	    !ASSERT_TRUE(wait_certs(&f, URI("default", "sleep"), serial2, false), "reloaded again"))
		goto out;
	if (certs_get(f.id, &info, 2))
		// cppcheck-suppress AssignmentAddressToInteger ; misreads the macro
		ASSERT_STREQ(info[1].error, "", "error cleared");
out:
	free(err);
	free(info);
	pair_free(&p);
	SSL_CTX_free(s1);
	SSL_CTX_free(s2);
	SSL_CTX_free(s3);
	SSL_CTX_free(c);
	fx_free(&f);
	leak_check();
}

void test_identity_files_refused(void)
{
	struct fx f;
	char other[PATH_MAX], dir[PATH_MAX], from[PATH_MAX], to[PATH_MAX], cmd[3 * PATH_MAX];
	char *err = NULL;
	SSL_CTX *s;

	if (!fx_files(&f))
		goto out;
	/* Missing files. */
	s = identity_server_ctx(f.id, "default", "nobody", &err);
	ASSERT_TRUE(!s && err, "missing");
	ASSERT_HAS(err, "/certs/default/nobody/tls.crt: No such file or directory", "missing: why");

	/* SAN of another identity. */
	if (!ASSERT_TRUE(issue(&f, "default", "x", "default", "y", NULL), "issue"))
		goto out;
	s = identity_server_ctx(f.id, "default", "y", &err);
	ASSERT_TRUE(!s && err, "wrong SAN");
	strf(cmd, sizeof(cmd), "identity: files mode: %s/certs/default/y/tls.crt has SAN %s, "
		 "expected %s", f.dir, URI("default", "x"), URI("default", "y"));
	ASSERT_STREQ(err, cmd, "wrong SAN: message");

	/* Other trust domain, same names. */
	if (!ASSERT_TRUE(issue(&f, "default", "td", "default", "td", "--trust-domain=other.example"),
			 "issue"))
		goto out;
	s = identity_server_ctx(f.id, "default", "td", &err);
	ASSERT_TRUE(!s && err, "foreign trust domain");
	ASSERT_HAS(err, "has SAN spiffe://other.example/ns/default/sa/td, expected", "td: message");

	/* Expired. */
	if (!ASSERT_TRUE(issue(&f, "default", "old", "default", "old", "--expired"), "issue"))
		goto out;
	s = identity_server_ctx(f.id, "default", "old", &err);
	ASSERT_TRUE(!s && err, "expired");
	ASSERT_HAS(err, "/certs/default/old/tls.crt expired at 20", "expired: message");

	/* Signed by a CA outside the bundle. */
	path_in(other, f.dir, "other");
	strf(dir, sizeof(dir), "%s/certs/default/wrongca", f.dir);
	if (!ASSERT_TRUE(lab(other, "--other"), "other CA") ||
	    !ASSERT_TRUE(lab("issue", other, "default", "wrongca", dir), "issue other"))
		goto out;
	s = identity_server_ctx(f.id, "default", "wrongca", &err);
	ASSERT_TRUE(!s && err, "untrusted");
	ASSERT_HAS(err, "does not chain to the trust bundle", "untrusted: message");

	/* The key of another pair. */
	if (!ASSERT_TRUE(issue(&f, "default", "k", "default", "k", NULL), "issue"))
		goto out;
	strf(from, sizeof(from), "%s/certs/default/y/tls.key", f.dir);
	strf(to, sizeof(to), "%s/certs/default/k/tls.key", f.dir);
	if (!ASSERT_TRUE(rename(from, to) == 0, "swap key"))
		goto out;
	s = identity_server_ctx(f.id, "default", "k", &err);
	ASSERT_TRUE(!s && err, "key mismatch");
	ASSERT_HAS(err, "/certs/default/k/tls.key does not match certificate", "mismatch: message");

	/* Not PEM. */
	strf(dir, sizeof(dir), "%s/certs/default/junk", f.dir);
	strf(cmd, sizeof(cmd), "mkdir -p %s && echo junk > %s/tls.crt && echo junk > %s/tls.key",
		 dir, dir, dir);
	if (!ASSERT_OK(system(cmd), "junk"))
		goto out;
	s = identity_server_ctx(f.id, "default", "junk", &err);
	ASSERT_TRUE(!s && err, "junk");
	ASSERT_HAS(err, "holds no PEM certificate", "junk: message");

	/* Names that would leave the directory. */
	s = identity_server_ctx(f.id, "..", "x", &err);
	ASSERT_TRUE(!s && err, "..");
	ASSERT_HAS(err, "expected 1-253 of [A-Za-z0-9._-]", "..: message");
	s = identity_server_ctx(f.id, "default", "a/b", &err);
	ASSERT_TRUE(!s && err, "slash");
	s = identity_server_ctx(f.id, "", "b", &err);
	ASSERT_TRUE(!s && err, "empty");
out:
	free(err);
	fx_free(&f);
	leak_check();
}

/* ---- configuration errors ---- */

void test_identity_ca_mismatch(void)
{
	struct identity_opts o = { .mode = IDENTITY_MESH_CA };
	struct identity *id = NULL;
	char a[PATH_MAX], b[PATH_MAX], crt[PATH_MAX], key[PATH_MAX], want[3 * PATH_MAX];
	char *err = NULL;

	path_in(a, test_tmpdir(), "a");
	path_in(b, test_tmpdir(), "b");
	if (!ASSERT_TRUE(lab(a), "CA a") || !ASSERT_TRUE(lab(b, "--other"), "CA b"))
		return;
	o.ca_cert_file = path_in(crt, a, "ca.crt");
	o.ca_key_file = path_in(key, b, "ca.key");
	ASSERT_EQ(identity_new(&id, NULL, &o, &err), -EINVAL, "refused");
	ASSERT_TRUE(id == NULL, "no identity");
	strf(want, sizeof(want), "identity: CA key %s does not match certificate %s", key, crt);
	ASSERT_STREQ(err, want, "message");
	free(err);
	leak_check();
}

void test_identity_bad_config(void)
{
	struct identity_opts o;
	struct identity *id = NULL;
	char ca[PATH_MAX], crt[PATH_MAX], key[PATH_MAX], exp[PATH_MAX], ecrt[PATH_MAX];
	char ekey[PATH_MAX], other[PATH_MAX], ocrt[PATH_MAX], leaf[PATH_MAX], lcrt[PATH_MAX];
	char lkey[PATH_MAX], empty[PATH_MAX];
	char *err = NULL;
	FILE *fp;
	const char *d = test_tmpdir();

	path_in(ca, d, "ca");
	path_in(exp, d, "expired");
	path_in(other, d, "other");
	path_in(leaf, d, "leaf");
	if (!ASSERT_TRUE(lab(ca), "CA") || !ASSERT_TRUE(lab(exp, "--expired"), "expired") ||
	    !ASSERT_TRUE(lab(other, "--other"), "other") ||
	    !ASSERT_TRUE(lab("issue", ca, "default", "leaf", leaf), "leaf"))
		return;
	path_in(crt, ca, "ca.crt");
	path_in(key, ca, "ca.key");
	path_in(ecrt, exp, "ca.crt");
	path_in(ekey, exp, "ca.key");
	path_in(ocrt, other, "ca.crt");
	path_in(lcrt, leaf, "tls.crt");
	path_in(lkey, leaf, "tls.key");
	path_in(empty, d, "empty.pem");
	fp = fopen(empty, "w");
	if (fp)
		fclose(fp);

#define BAD(desc, want_ret, want_msg, ...)                                                      \
	do {                                                                                    \
		o = (struct identity_opts){ __VA_ARGS__ };                                      \
		ASSERT_EQ(identity_new(&id, NULL, &o, &err), want_ret, desc);                   \
		ASSERT_HAS(err, want_msg, desc);                                                \
		identity_free(id);                                                              \
		id = NULL;                                                                      \
		free(err);                                                                      \
		err = NULL;                                                                     \
	} while (0)

	BAD("no CA", -EINVAL, "mesh-ca mode needs a CA certificate and key", .mode = IDENTITY_MESH_CA);
	BAD("missing CA file", -ENOENT, "/nope/ca.crt: No such file or directory",
	    .ca_cert_file = "/nope/ca.crt", .ca_key_file = key);
	BAD("missing key file", -ENOENT, "identity: CA key /nope/ca.key: No such file",
	    .ca_cert_file = crt, .ca_key_file = "/nope/ca.key");
	BAD("expired CA", -EINVAL, "expired at 20", .ca_cert_file = ecrt, .ca_key_file = ekey);
	BAD("leaf as CA", -EINVAL, "is not a CA", .ca_cert_file = lcrt, .ca_key_file = lkey,
	    .bundle_file = crt);
	BAD("CA outside the bundle", -EINVAL, "does not chain to the trust bundle",
	    .ca_cert_file = crt, .ca_key_file = key, .bundle_file = ocrt);
	BAD("empty bundle", -EINVAL, "holds no PEM certificate", .ca_cert_file = crt,
	    .ca_key_file = key, .bundle_file = empty);
	BAD("key as certificate", -EINVAL, "no PEM certificate", .ca_cert_file = key,
	    .ca_key_file = key);
	BAD("certificate as key", -EINVAL, "no PEM private key", .ca_cert_file = crt,
	    .ca_key_file = crt);
	BAD("bad trust domain", -EINVAL, "trust domain 'Bad/TD'", .trust_domain = "Bad/TD",
	    .ca_cert_file = crt, .ca_key_file = key);
	BAD("files without bundle", -EINVAL, "files mode needs", .mode = IDENTITY_FILES,
	    .certs_dir = d);
	BAD("unknown mode", -EINVAL, "unknown mode", .mode = (enum identity_mode)7);
	BAD("bogus groups", -EINVAL, "key exchange groups 'nope' not available", .ca_cert_file = crt,
	    .ca_key_file = key, .groups = "nope");
#undef BAD
	ASSERT_EQ(identity_new(&id, NULL, NULL, NULL), -EINVAL, "no opts, no err");
	identity_free(NULL);

	/* Groups OpenSSL has are fine. */
	o = (struct identity_opts){ .ca_cert_file = crt, .ca_key_file = key, .groups = "X25519:P-256" };
	ASSERT_OK(identity_new(&id, NULL, &o, &err), err ? err : "groups");
	identity_free(id);
	free(err);
	leak_check();
}

/* Getters from several threads while the loop renews (TTL 1 s). */
struct thr_arg {
	struct identity *id;
	int fails;
};

static void *thr_main(void *arg)
{
	struct thr_arg *a = arg;
	static const char *const sas[] = { "a", "b", "c" };

	for (int i = 0; i < 300; i++) {
		SSL_CTX *c = (i & 1) ? identity_client_ctx(a->id, "ns", sas[i % 3], NULL)
				     : identity_server_ctx(a->id, "ns", sas[i % 3], NULL);

		if (!c)
			a->fails++;
		SSL_CTX_free(c);
	}
	return NULL;
}

static void stop_cb(struct loop_timer *t)
{
	loop_stop(t->arg);
}

void test_identity_threads(void)
{
	struct thr_arg args[4];
	pthread_t th[4];
	struct loop_timer stop;
	struct fx f;
	int started = 0;

	if (!fx_mesh(&f, 1, true))
		goto out;
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thr_arg){ .id = f.id };
		if (pthread_create(&th[i], NULL, thr_main, &args[i]))
			break;
		started++;
	}
	loop_timer_init(&stop, stop_cb, f.loop);
	loop_timer_arm(f.loop, &stop, 700);
	loop_run(f.loop);
	for (int i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		ASSERT_EQ(args[i].fails, 0, "every call got a context");
	}
	ASSERT_EQ(started, 4, "threads");
out:
	fx_free(&f);
	leak_check();
}
