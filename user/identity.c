// SPDX-License-Identifier: Apache-2.0
/* identity.c - see identity.h.
 *
 * One list of identities (a node holds tens to a few hundred service
 * accounts; a linear scan costs less than the handshake it precedes), one
 * mutex around it, one loop timer. The timer is re-armed only from its own
 * callback, on the loop's thread: getters on other threads never touch the
 * loop. So that an identity first minted by a getter is still renewed on
 * time, the mesh-ca timer never sleeps longer than a quarter of the lifetime
 * (less than the half life of anything minted meanwhile), and arms for the
 * earliest renewal when that comes sooner.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "identity.h"
#include "log.h"
#include "loop.h"

#define ID_DEFAULT_TD		"cluster.local"
#define ID_DEFAULT_TTL_S	86400u
#define ID_DEFAULT_RELOAD_MS	10000u
#define ID_MAX_TTL_S		(10u * 366 * 86400)	/* keeps ms arithmetic far from overflow */
#define ID_BACKDATE_S		60	/* notBefore = now - 1 min: peers' clocks differ */
#define ID_RETRY_MS		5000u	/* a failed re-mint is tried again this soon */
#define ID_SERIAL_BYTES		16	/* 128-bit serials (RFC 5280 allows up to 20 bytes) */

/* HBONE.md: AES-GCM only, no ChaCha20. The TLS 1.2 list (allow_tls12) keeps
 * the same ciphers with ECDHE, for ECDSA (ours) and RSA (files mode) keys. */
#define ID_CIPHERSUITES		"TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"
#define ID_TLS12_CIPHERS	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
				"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
static const unsigned char alpn_h2[] = { 2, 'h', '2' };

enum ctx_role { ROLE_SERVER = 0, ROLE_CLIENT, ROLE_COUNT };

/* What stat() said about a file when it was read, to notice a change. */
struct file_sig {
	bool valid;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim, ctim;
};

/* One workload identity and the certificate it presents. */
struct ident {
	struct ident *next;
	struct spiffe_id sid;
	char uri[SL_SPIFFE_URI_MAX + 1];
	X509 *leaf;
	STACK_OF(X509) *chain;		/* presented after the leaf; never NULL once loaded */
	EVP_PKEY *key;
	SSL_CTX *ctx[ROLE_COUNT];	/* built on first use, dropped on rotation */
	time_t not_before, not_after;
	char serial[64];
	uint64_t due_ms;		/* mesh-ca: re-mint at (CLOCK_MONOTONIC ms) */
	time_t due_wall;		/* the same on the wall clock, for listings */
	bool used;			/* a context was asked for since the last mint */
	/* files mode */
	char *crt_path, *key_path;
	struct file_sig crt_sig, key_sig;	/* of the pair in use */
	struct file_sig bad_crt, bad_key;	/* of the last refused pair: not retried unchanged */
	bool expiry_logged;
	char error[512];
};

struct identity {
	pthread_mutex_t lock;
	struct loop *loop;		/* NULL: no timer */
	struct loop_timer timer;
	enum identity_mode mode;
	char td[SL_SPIFFE_TD_MAX + 1];
	unsigned int ttl_s, reload_ms;
	bool allow_tls12;
	char *groups;
	char *ca_cert_file, *ca_key_file, *certs_dir, *bundle_file;
	/* mesh-ca */
	X509 *ca;
	EVP_PKEY *ca_key;
	STACK_OF(X509) *ca_chain;	/* the CA and its issuers, minus self-signed roots */
	ASN1_OCTET_STRING *ca_keyid;	/* the AKI of what we mint */
	/* trust */
	X509_STORE *store;
	struct file_sig bundle_sig, bad_bundle;
	time_t next_check_wall;		/* files: next stat() round, for listings */
	struct ident *list;
};

/* ---- errors ---- */

__attribute__((format(printf, 2, 0)))
static void verrf(char **err, const char *fmt, va_list ap)
{
	char *s;

	if (!err)
		return;
	if (vasprintf(&s, fmt, ap) == -1)
		s = NULL;
	free(*err);
	*err = s;
}

/* Fill *err (when err is not NULL), replacing an earlier message. */
__attribute__((format(printf, 2, 3)))
static void errf(char **err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verrf(err, fmt, ap);
	va_end(ap);
}

/* errf() plus ": <OpenSSL's reason>" when OpenSSL left one; clears its queue. */
__attribute__((format(printf, 2, 3)))
static void ssl_errf(char **err, const char *fmt, ...)
{
	unsigned long e = ERR_peek_last_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;
	va_list ap;

	va_start(ap, fmt);
	verrf(err, fmt, ap);
	va_end(ap);
	if (err && *err && why) {
		char *s;

		if (asprintf(&s, "%s: %s", *err, why) != -1) {
			free(*err);
			*err = s;
		}
	}
	ERR_clear_error();
}

/* ---- SPIFFE IDs ---- */

static bool td_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool seg_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

static bool td_valid(const char *p, size_t n)
{
	if (!n || n > SL_SPIFFE_TD_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!td_char((unsigned char)p[i]))
			return false;
	return true;
}

/* A path segment: 1..SL_SPIFFE_SEG_MAX of seg_char, and not "." or "..". */
static bool seg_valid(const char *p, size_t n)
{
	if (!n || n > SL_SPIFFE_SEG_MAX)
		return false;
	if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!seg_char((unsigned char)p[i]))
			return false;
	return true;
}

int identity_spiffe_parse(const char *uri, size_t len, struct spiffe_id *out)
{
	static const char scheme[] = "spiffe://";
	const size_t slen = sizeof(scheme) - 1;
	/* After the trust domain: exactly /ns/<ns>/sa/<sa>. */
	const char *seg[4];
	size_t seglen[4];
	const char *p, *end, *td;
	size_t tdlen;
	int n = 0;

	if (!uri || !out || len < slen || memcmp(uri, scheme, slen))
		return -EINVAL;
	td = uri + slen;
	end = uri + len;
	p = memchr(td, '/', (size_t)(end - td));
	if (!p)
		return -EINVAL;
	tdlen = (size_t)(p - td);
	if (!td_valid(td, tdlen))
		return -EINVAL;
	while (p < end) {
		const char *s = p + 1, *e = memchr(s, '/', (size_t)(end - s));

		if (!e)
			e = end;
		if (n == 4 || !seg_valid(s, (size_t)(e - s)))
			return -EINVAL;	/* too many, empty (// or trailing /) or bad */
		seg[n] = s;
		seglen[n++] = (size_t)(e - s);
		p = e;
	}
	if (n != 4 || seglen[0] != 2 || memcmp(seg[0], "ns", 2) || seglen[2] != 2 ||
	    memcmp(seg[2], "sa", 2))
		return -EINVAL;
	memcpy(out->td, td, tdlen);
	out->td[tdlen] = '\0';
	memcpy(out->ns, seg[1], seglen[1]);
	out->ns[seglen[1]] = '\0';
	memcpy(out->sa, seg[3], seglen[3]);
	out->sa[seglen[3]] = '\0';
	return 0;
}

int identity_spiffe_format(const struct spiffe_id *id, char *buf, size_t len)
{
	size_t tl, nl, sl;
	int n;

	if (!id || !buf)
		return -EINVAL;
	/* strnlen: the fields may not be NUL-terminated in a caller's struct. */
	tl = strnlen(id->td, sizeof(id->td));
	nl = strnlen(id->ns, sizeof(id->ns));
	sl = strnlen(id->sa, sizeof(id->sa));
	if (!td_valid(id->td, tl) || !seg_valid(id->ns, nl) || !seg_valid(id->sa, sl))
		return -EINVAL;
	n = snprintf(buf, len, "spiffe://%.*s/ns/%.*s/sa/%.*s", (int)tl, id->td, (int)nl, id->ns,
		     (int)sl, id->sa);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= len)
		return -ENOSPC;
	return n;
}

/* Build a SPIFFE ID from parts, each checked as the parser would. */
static int spiffe_make(struct spiffe_id *sid, const char *td, const char *ns, const char *sa)
{
	size_t tl = strnlen(td, SL_SPIFFE_TD_MAX + 1), nl = strnlen(ns, SL_SPIFFE_SEG_MAX + 1);
	size_t sl = strnlen(sa, SL_SPIFFE_SEG_MAX + 1);

	if (!td_valid(td, tl) || !seg_valid(ns, nl) || !seg_valid(sa, sl))
		return -EINVAL;
	memcpy(sid->td, td, tl + 1);
	memcpy(sid->ns, ns, nl + 1);
	memcpy(sid->sa, sa, sl + 1);
	return 0;
}

int identity_cert_spiffe(const X509 *cert, struct spiffe_id *out)
{
	const ASN1_IA5STRING *uri = NULL;
	GENERAL_NAMES *gens;
	int crit = -1, nuri = 0, ret;

	if (!cert || !out)
		return -EINVAL;
	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
	if (!gens) {
		ERR_clear_error();
		/* -1: no SAN; -2: several SAN extensions; else it does not decode. */
		return crit == -1 ? -ENOENT : crit == -2 ? -ENOTUNIQ : -EINVAL;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);

		if (gn->type == GEN_URI) {
			uri = gn->d.uniformResourceIdentifier;
			nuri++;
		}
	}
	if (!nuri)
		ret = -ENOENT;
	else if (nuri > 1)
		ret = -ENOTUNIQ;
	else
		ret = identity_spiffe_parse((const char *)ASN1_STRING_get0_data(uri),
					    (size_t)ASN1_STRING_length(uri), out);
	GENERAL_NAMES_free(gens);
	return ret;
}

int identity_cert_spiffe_buf(const void *buf, size_t len, struct spiffe_id *out)
{
	static const char pem[] = "-----BEGIN";
	const unsigned char *p = buf;
	X509 *x = NULL;
	int ret;

	if (!buf || !out || len > INT32_MAX)
		return -EINVAL;
	if (len >= sizeof(pem) - 1 && memmem(buf, len, pem, sizeof(pem) - 1)) {
		BIO *b = BIO_new_mem_buf(buf, (int)len);

		if (!b)
			return -ENOMEM;
		x = PEM_read_bio_X509(b, NULL, NULL, NULL);
		BIO_free(b);
	}
	if (!x) {	/* not PEM, or DER that happens to hold the PEM marker */
		x = d2i_X509(NULL, &p, (long)len);
		if (x && p != (const unsigned char *)buf + len) {
			X509_free(x);
			x = NULL;
		}
	}
	ERR_clear_error();
	if (!x)
		return -EBADMSG;
	ret = identity_cert_spiffe(x, out);
	X509_free(x);
	return ret;
}

/* ---- files and certificate facts ---- */

static int sig_stat(const char *path, struct file_sig *s)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	if (stat(path, &st) == -1)
		return -errno;
	s->valid = true;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->size = st.st_size;
	s->mtim = st.st_mtim;
	s->ctim = st.st_ctim;
	return 0;
}

static bool sig_eq(const struct file_sig *a, const struct file_sig *b)
{
	return a->valid && b->valid && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec &&
	       a->ctim.tv_sec == b->ctim.tv_sec && a->ctim.tv_nsec == b->ctim.tv_nsec;
}

/* Never prompt on a terminal for a passphrase: encrypted keys just fail. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* All PEM certificates of path, in order (other PEM blocks are skipped).
 * Returns 0 with at least one, or -errno / -EINVAL with *err. */
static int read_certs(const char *what, const char *path, STACK_OF(X509) **out, char **err)
{
	STACK_OF(X509) *sk = NULL;
	unsigned long e;
	BIO *b;
	X509 *x;
	int ret;

	b = BIO_new_file(path, "r");
	if (!b) {
		ret = errno ? -errno : -EIO;
		ERR_clear_error();
		errf(err, "identity: %s %s: %s", what, path, strerror(-ret));
		return ret;
	}
	ret = -ENOMEM;
	sk = sk_X509_new_null();
	if (!sk)
		goto out;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			goto out;
		}
	}
	e = ERR_peek_last_error();
	if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
		ret = -EINVAL;
		ssl_errf(err, "identity: %s %s: bad PEM certificate", what, path);
		goto out;
	}
	ERR_clear_error();
	if (!sk_X509_num(sk)) {
		ret = -EINVAL;
		errf(err, "identity: %s %s holds no PEM certificate", what, path);
		goto out;
	}
	*out = sk;
	sk = NULL;
	ret = 0;
out:
	if (ret == -ENOMEM)
		errf(err, "identity: %s %s: out of memory", what, path);
	sk_X509_pop_free(sk, X509_free);
	BIO_free(b);
	return ret;
}

static int read_key(const char *what, const char *path, EVP_PKEY **out, char **err)
{
	BIO *b = BIO_new_file(path, "r");
	int ret;

	if (!b) {
		ret = errno ? -errno : -EIO;
		ERR_clear_error();
		errf(err, "identity: %s %s: %s", what, path, strerror(-ret));
		return ret;
	}
	*out = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
	BIO_free(b);
	if (!*out) {
		ssl_errf(err, "identity: %s %s: no PEM private key (encrypted keys are not supported)",
			 what, path);
		return -EINVAL;
	}
	return 0;
}

static time_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return timegm(&tm);
}

/* "2026-11-25T16:40:36Z" into buf; returns buf. */
static const char *time_str(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "%lld", (long long)t);
	return buf;
}

static void serial_str(const X509 *x, char *buf, size_t len)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	snprintf(buf, len, "%s", hex ? hex : "?");
	OPENSSL_free(hex);
	BN_free(bn);
}

/* An up-referenced copy of sk (NULL counts as empty). */
static STACK_OF(X509) *chain_dup(STACK_OF(X509) *sk)
{
	return sk ? X509_chain_up_ref(sk) : sk_X509_new_null();
}

/* Does leaf (with untrusted intermediates) chain to the bundle? Returns 0 or
 * an X509_V_ERR_* code (for X509_verify_cert_error_string). */
static int store_verify(X509_STORE *store, X509 *leaf, STACK_OF(X509) *untrusted)
{
	X509_STORE_CTX *xs = X509_STORE_CTX_new();
	int ret = X509_V_ERR_OUT_OF_MEM;

	if (xs && X509_STORE_CTX_init(xs, store, leaf, untrusted)) {
		ret = X509_verify_cert(xs) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(xs);
	}
	X509_STORE_CTX_free(xs);
	ERR_clear_error();
	return ret;
}

/* ---- trust bundle and CA ---- */

static int bundle_load(const char *path, X509_STORE **out, struct file_sig *sig, char **err)
{
	STACK_OF(X509) *certs = NULL;
	X509_STORE *st = NULL;
	int ret;

	/* stat() first: a change while reading shows up on the next round. */
	ret = sig_stat(path, sig);
	if (ret) {
		errf(err, "identity: trust bundle %s: %s", path, strerror(-ret));
		return ret;
	}
	ret = read_certs("trust bundle", path, &certs, err);
	if (ret)
		return ret;
	ret = -ENOMEM;
	st = X509_STORE_new();
	if (!st)
		goto out;
	for (int i = 0; i < sk_X509_num(certs); i++)
		if (!X509_STORE_add_cert(st, sk_X509_value(certs, i)))
			goto out;
	*out = st;
	st = NULL;
	ret = 0;
out:
	if (ret)
		ssl_errf(err, "identity: trust bundle %s: cannot build the store", path);
	X509_STORE_free(st);
	sk_X509_pop_free(certs, X509_free);
	return ret;
}

/* mesh-ca: load and check the signing CA. */
static int ca_load(struct identity *id, char **err)
{
	STACK_OF(X509) *certs = NULL;
	const char *crt = id->ca_cert_file, *keyf = id->ca_key_file;
	char when[32];
	int ret, v;

	ret = read_certs("CA certificate", crt, &certs, err);
	if (ret)
		return ret;
	ret = read_key("CA key", keyf, &id->ca_key, err);
	if (ret)
		goto out;
	id->ca = sk_X509_value(certs, 0);
	X509_up_ref(id->ca);
	ret = -EINVAL;
	if (!X509_check_private_key(id->ca, id->ca_key)) {
		ERR_clear_error();
		errf(err, "identity: CA key %s does not match certificate %s", keyf, crt);
		goto out;
	}
	if (!X509_check_ca(id->ca) || !(X509_get_key_usage(id->ca) & KU_KEY_CERT_SIGN)) {
		errf(err, "identity: CA certificate %s is not a CA (basicConstraints CA:TRUE, "
			  "keyUsage keyCertSign)", crt);
		goto out;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(id->ca)) <= 0) {
		errf(err, "identity: CA certificate %s expired at %s", crt,
		     time_str(asn1_time(X509_get0_notAfter(id->ca)), when, sizeof(when)));
		goto out;
	}
	v = store_verify(id->store, id->ca, certs);	/* certs[0] is the CA itself: harmless */
	if (v != X509_V_OK) {
		errf(err, "identity: CA certificate %s does not chain to the trust bundle %s: %s", crt,
		     id->bundle_file, X509_verify_cert_error_string(v));
		goto out;
	}
	/* Present the CA and the intermediates above it, not the root: peers have it. */
	ret = -ENOMEM;
	id->ca_chain = sk_X509_new_null();
	if (!id->ca_chain)
		goto out;
	for (int i = 0; i < sk_X509_num(certs); i++) {
		X509 *x = sk_X509_value(certs, i);

		if (X509_check_issued(x, x) == X509_V_OK)
			continue;
		if (!sk_X509_push(id->ca_chain, x))
			goto out;
		X509_up_ref(x);
	}
	/* Our AKI is the CA's SKI, or (CA without one) its key hash, as RFC 5280 says. */
	if (X509_get0_subject_key_id(id->ca)) {
		id->ca_keyid = ASN1_OCTET_STRING_dup(X509_get0_subject_key_id(id->ca));
	} else {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;

		id->ca_keyid = ASN1_OCTET_STRING_new();
		if (id->ca_keyid && (!X509_pubkey_digest(id->ca, EVP_sha1(), md, &mdlen) ||
				     !ASN1_OCTET_STRING_set(id->ca_keyid, md, (int)mdlen)))
			goto out;
	}
	if (!id->ca_keyid)
		goto out;
	ret = 0;
out:
	if (ret == -ENOMEM)
		ssl_errf(err, "identity: CA certificate %s: out of memory", crt);
	ERR_clear_error();
	sk_X509_pop_free(certs, X509_free);
	return ret;
}

/* ---- mesh-ca: minting ---- */

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

static int add_san_uri(X509 *x, const char *uri)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();
	int ret = -ENOMEM;

	if (!gens || !gn || !s || !ASN1_STRING_set(s, uri, (int)strlen(uri)))
		goto out;
	GENERAL_NAME_set0_value(gn, GEN_URI, s);
	s = NULL;
	if (!sk_GENERAL_NAME_push(gens, gn))
		goto out;
	gn = NULL;
	/* Critical: the subject is empty, so the SAN is the name (RFC 5280 4.2.1.6). */
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 1, X509V3_ADD_DEFAULT) == 1)
		ret = 0;
out:
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(gn);
	GENERAL_NAMES_free(gens);
	return ret;
}

static int add_aki(X509 *x, const ASN1_OCTET_STRING *keyid)
{
	AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
	int ret = -ENOMEM;

	if (!aki)
		return ret;
	aki->keyid = ASN1_OCTET_STRING_dup(keyid);
	if (aki->keyid && X509_add1_ext_i2d(x, NID_authority_key_identifier, aki, 0, X509V3_ADD_DEFAULT) == 1)
		ret = 0;
	AUTHORITY_KEYID_free(aki);
	return ret;
}

static int set_random_serial(X509 *x)
{
	unsigned char b[ID_SERIAL_BYTES];
	ASN1_INTEGER *sn = NULL;
	BIGNUM *bn = NULL;
	int ret = -ENOMEM;

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	b[0] &= 0x7f;		/* a positive INTEGER in 16 bytes */
	b[0] |= !b[0];		/* and never zero */
	bn = BN_bin2bn(b, sizeof(b), NULL);
	if (bn)
		sn = BN_to_ASN1_INTEGER(bn, NULL);
	if (sn && X509_set_serialNumber(x, sn))
		ret = 0;
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	return ret;
}

/* A P-256 key and a certificate for uri, signed by the CA. Terminal on
 * nothing; ~1 ms (keygen + one signature), so fine inline on the loop. */
static int mint(struct identity *id, const char *uri, X509 **leaf_out, EVP_PKEY **key_out,
		char **err)
{
	const EVP_MD *md = EVP_sha256();
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	int ret = -ENOMEM;

	key = EVP_EC_gen("P-256");
	x = X509_new();
	if (!key || !x || !X509_set_version(x, X509_VERSION_3))
		goto out;
	ret = set_random_serial(x);
	if (ret)
		goto out;
	ret = -ENOMEM;
	if (!X509_set_issuer_name(x, X509_get_subject_name(id->ca)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -ID_BACKDATE_S) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)id->ttl_s) || !X509_set_pubkey(x, key))
		goto out;
	/* Never past the CA: a chain is only as valid as its shortest link. */
	if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(id->ca)) > 0 &&
	    !X509_set1_notAfter(x, X509_get0_notAfter(id->ca)))
		goto out;
	/* The subject stays empty, as in Istio's and ztunnel's certificates. */
	if (add_ext(x, id->ca, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(x, id->ca, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
	    add_ext(x, id->ca, NID_ext_key_usage, "serverAuth,clientAuth") ||
	    add_ext(x, id->ca, NID_subject_key_identifier, "hash") || add_aki(x, id->ca_keyid) ||
	    add_san_uri(x, uri))
		goto out;
	if (EVP_PKEY_is_a(id->ca_key, "ED25519") || EVP_PKEY_is_a(id->ca_key, "ED448"))
		md = NULL;	/* EdDSA hashes internally */
	if (!X509_sign(x, id->ca_key, md)) {
		ret = -EINVAL;
		goto out;
	}
	*leaf_out = x;
	*key_out = key;
	x = NULL;
	key = NULL;
	ret = 0;
out:
	if (ret)
		ssl_errf(err, "identity: cannot mint a certificate for %s", uri);
	X509_free(x);
	EVP_PKEY_free(key);
	return ret;
}

/* ---- the identities ---- */

static void ident_drop_ctx(struct ident *e)
{
	for (int r = 0; r < ROLE_COUNT; r++) {
		SSL_CTX_free(e->ctx[r]);	/* SSLs made from it keep their own reference */
		e->ctx[r] = NULL;
	}
}

static void ident_free(struct ident *e)
{
	if (!e)
		return;
	ident_drop_ctx(e);
	X509_free(e->leaf);
	sk_X509_pop_free(e->chain, X509_free);
	EVP_PKEY_free(e->key);
	free(e->crt_path);
	free(e->key_path);
	free(e);
}

/* Take over leaf, chain and key as e's certificate; the old one's contexts go. */
static void ident_set(struct ident *e, X509 *leaf, STACK_OF(X509) *chain, EVP_PKEY *key)
{
	ident_drop_ctx(e);
	X509_free(e->leaf);
	sk_X509_pop_free(e->chain, X509_free);
	EVP_PKEY_free(e->key);
	e->leaf = leaf;
	e->chain = chain;
	e->key = key;
	e->not_before = asn1_time(X509_get0_notBefore(leaf));
	e->not_after = asn1_time(X509_get0_notAfter(leaf));
	serial_str(leaf, e->serial, sizeof(e->serial));
	e->expiry_logged = false;
}

static int ident_mint(struct identity *id, struct ident *e, char **err)
{
	STACK_OF(X509) *chain;
	EVP_PKEY *key;
	X509 *leaf;
	int ret;

	ret = mint(id, e->uri, &leaf, &key, err);
	if (ret)
		return ret;
	chain = chain_dup(id->ca_chain);
	if (!chain) {
		X509_free(leaf);
		EVP_PKEY_free(key);
		errf(err, "identity: cannot mint a certificate for %s: out of memory", e->uri);
		return -ENOMEM;
	}
	ident_set(e, leaf, chain, key);
	e->used = false;
	e->due_ms = loop_now_ms() + (uint64_t)id->ttl_s * 500;
	e->due_wall = time(NULL) + (time_t)(id->ttl_s / 2);
	return 0;
}

/* files mode: read and check e's pair; on success it becomes e's certificate.
 * On failure e keeps what it had and bad_crt/bad_key remember the refused pair. */
static int ident_load_files(struct identity *id, struct ident *e, char **err)
{
	const char *crt = e->crt_path, *keyf = e->key_path;
	STACK_OF(X509) *certs = NULL;
	struct file_sig cs = { 0 }, ks = { 0 };
	struct spiffe_id got;
	EVP_PKEY *key = NULL;
	X509 *leaf = NULL;
	char when[32], uri[SL_SPIFFE_URI_MAX + 1];
	int ret, v;

	/* stat() before reading: a write racing the read shows as a change next round. */
	ret = sig_stat(crt, &cs);
	if (!ret)
		ret = sig_stat(keyf, &ks);
	if (ret) {
		errf(err, "identity: files mode: %s: %s", !cs.valid ? crt : keyf, strerror(-ret));
		return ret;
	}
	ret = read_certs("files mode:", crt, &certs, err);
	if (ret)
		goto refused;
	ret = read_key("files mode:", keyf, &key, err);
	if (ret)
		goto refused;
	leaf = sk_X509_shift(certs);
	ret = -EINVAL;
	switch (identity_cert_spiffe(leaf, &got)) {
	case 0:
		break;
	case -ENOENT:
		errf(err, "identity: files mode: %s has no URI SAN, expected %s", crt, e->uri);
		goto refused;
	case -ENOTUNIQ:
		errf(err, "identity: files mode: %s has several URI SANs, expected only %s", crt,
		     e->uri);
		goto refused;
	default:
		errf(err, "identity: files mode: %s has a URI SAN that is not a SPIFFE ID, expected %s",
		     crt, e->uri);
		goto refused;
	}
	if (identity_spiffe_format(&got, uri, sizeof(uri)) < 0 || strcmp(uri, e->uri)) {
		errf(err, "identity: files mode: %s has SAN %s, expected %s", crt, uri, e->uri);
		goto refused;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
		errf(err, "identity: files mode: %s expired at %s", crt,
		     time_str(asn1_time(X509_get0_notAfter(leaf)), when, sizeof(when)));
		goto refused;
	}
	if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
		errf(err, "identity: files mode: %s is not valid before %s", crt,
		     time_str(asn1_time(X509_get0_notBefore(leaf)), when, sizeof(when)));
		goto refused;
	}
	if (!X509_check_private_key(leaf, key)) {
		ERR_clear_error();
		errf(err, "identity: files mode: key %s does not match certificate %s", keyf, crt);
		goto refused;
	}
	if (X509_check_purpose(leaf, X509_PURPOSE_SSL_CLIENT, 0) != 1 ||
	    X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0) != 1) {
		errf(err, "identity: files mode: %s is not for both TLS client and server "
			  "authentication (extendedKeyUsage)", crt);
		goto refused;
	}
	v = store_verify(id->store, leaf, certs);
	if (v != X509_V_OK) {
		errf(err, "identity: files mode: %s does not chain to the trust bundle %s: %s", crt,
		     id->bundle_file, X509_verify_cert_error_string(v));
		goto refused;
	}
	ident_set(e, leaf, certs, key);
	e->crt_sig = cs;
	e->key_sig = ks;
	e->error[0] = '\0';
	return 0;
refused:
	ERR_clear_error();
	e->bad_crt = cs;
	e->bad_key = ks;
	X509_free(leaf);
	EVP_PKEY_free(key);
	sk_X509_pop_free(certs, X509_free);
	return ret;
}

static struct ident *ident_find(struct identity *id, const char *uri)
{
	for (struct ident *e = id->list; e; e = e->next)
		if (!strcmp(e->uri, uri))
			return e;
	return NULL;
}

/* Find sid, or mint / load it and add it to the list. */
static struct ident *ident_get(struct identity *id, const struct spiffe_id *sid, char **err)
{
	struct ident *e;
	char uri[SL_SPIFFE_URI_MAX + 1], when[32];
	int ret;

	if (identity_spiffe_format(sid, uri, sizeof(uri)) < 0) {
		errf(err, "identity: bad identity");
		return NULL;
	}
	e = ident_find(id, uri);
	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e) {
		errf(err, "identity: %s: out of memory", uri);
		return NULL;
	}
	e->sid = *sid;
	memcpy(e->uri, uri, sizeof(uri));
	if (id->mode == IDENTITY_FILES) {
		if (asprintf(&e->crt_path, "%s/%s/%s/tls.crt", id->certs_dir, sid->ns, sid->sa) == -1 ||
		    asprintf(&e->key_path, "%s/%s/%s/tls.key", id->certs_dir, sid->ns, sid->sa) == -1) {
			e->crt_path = e->key_path = NULL;
			errf(err, "identity: %s: out of memory", uri);
			ret = -ENOMEM;
		} else {
			ret = ident_load_files(id, e, err);
		}
	} else {
		ret = ident_mint(id, e, err);
	}
	if (ret) {
		ident_free(e);
		return NULL;
	}
	pr_info("identity: %s: %s serial %s, valid until %s", uri,
		id->mode == IDENTITY_FILES ? "loaded" : "minted", e->serial,
		time_str(e->not_after, when, sizeof(when)));
	e->next = id->list;
	id->list = e;
	return e;
}

/* ---- contexts ---- */

/* Accept the peer only if its chain verifies and its one SPIFFE ID is of our
 * trust domain. Our trust domain is read from our own certificate (we only
 * hold certificates of it), so the context needs no pointer back into struct
 * identity and may outlive it. The codes set here are what
 * identity_peer_check() reads back from SSL_get_verify_result(). */
static int verify_spiffe(X509_STORE_CTX *xs, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	X509 *leaf = X509_STORE_CTX_get0_cert(xs), *own = ssl ? SSL_get_certificate(ssl) : NULL;
	struct spiffe_id peer, mine;
	int ok = X509_verify_cert(xs);

	if (ok <= 0)
		return ok;
	if (!leaf || identity_cert_spiffe(leaf, &peer)) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	if (!own || identity_cert_spiffe(own, &mine) || strcmp(peer.td, mine.td)) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_PERMITTED_VIOLATION);
		return 0;
	}
	return 1;
}

/* Server: pick "h2" from the client's list, or fail with no_application_protocol. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned int i = 0;

	while (i < inlen) {
		unsigned int n = in[i];

		if (!n || n > inlen - i - 1)
			break;
		if (n == 2 && !memcmp(in + i + 1, "h2", 2)) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Server: OpenSSL calls the ALPN callback only when the client sent ALPN, so
 * a client without the extension is refused here. */
static int hello_need_alpn(SSL *ssl, int *al, void *arg)
{
	const unsigned char *p;
	size_t n;

	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p,
				       &n)) {
		*al = SSL_AD_NO_APPLICATION_PROTOCOL;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

static SSL_CTX *ctx_build(struct identity *id, struct ident *e, enum ctx_role role, char **err)
{
	bool server = role == ROLE_SERVER;
	SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (!c)
		goto fail;
	if (!SSL_CTX_set_min_proto_version(c, id->allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(c, ID_CIPHERSUITES) ||
	    (id->allow_tls12 && !SSL_CTX_set_cipher_list(c, ID_TLS12_CIPHERS)) ||
	    (id->groups && !SSL_CTX_set1_groups_list(c, id->groups)))
		goto fail;
	/* No resumption either way: every connection proves its identity afresh. */
	SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	if (!SSL_CTX_set_num_tickets(c, 0))
		goto fail;
	if (SSL_CTX_use_certificate(c, e->leaf) != 1 || SSL_CTX_use_PrivateKey(c, e->key) != 1)
		goto fail;
	for (int i = 0; i < sk_X509_num(e->chain); i++)
		if (!SSL_CTX_add1_chain_cert(c, sk_X509_value(e->chain, i)))
			goto fail;
	if (SSL_CTX_check_private_key(c) != 1)
		goto fail;
	SSL_CTX_set1_cert_store(c, id->store);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	SSL_CTX_set_cert_verify_callback(c, verify_spiffe, NULL);
	if (server) {
		SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
		SSL_CTX_set_client_hello_cb(c, hello_need_alpn, NULL);
		if (!SSL_CTX_set_session_id_context(c, (const unsigned char *)"sluice", 6))
			goto fail;
	} else if (SSL_CTX_set_alpn_protos(c, alpn_h2, sizeof(alpn_h2))) {	/* 0 is success */
		goto fail;
	}
	return c;
fail:
	ssl_errf(err, "identity: cannot set up the TLS %s context of %s", server ? "server" : "client",
		 e->uri);
	SSL_CTX_free(c);
	return NULL;
}

static SSL_CTX *identity_ctx(struct identity *id, const char *ns, const char *sa,
			     enum ctx_role role, char **err)
{
	struct spiffe_id sid;
	SSL_CTX *c = NULL;
	struct ident *e;

	if (!id || !ns || !sa) {
		errf(err, "identity: no identity given");
		return NULL;
	}
	if (spiffe_make(&sid, id->td, ns, sa)) {
		errf(err, "identity: namespace '%.64s' / service account '%.64s': expected 1-%d of "
			  "[A-Za-z0-9._-], not . or ..", ns, sa, SL_SPIFFE_SEG_MAX);
		return NULL;
	}
	ERR_clear_error();
	pthread_mutex_lock(&id->lock);
	e = ident_get(id, &sid, err);
	if (!e)
		goto out;
	/* The timer renews on time; this covers a loop that is late or absent. */
	if (id->mode == IDENTITY_MESH_CA && e->due_ms <= loop_now_ms()) {
		char *merr = NULL;

		if (ident_mint(id, e, &merr)) {
			pr_err("%s (keeping the current one)", merr ? merr : "identity: cannot mint");
			e->due_ms = loop_now_ms() + ID_RETRY_MS;
		}
		free(merr);
	}
	if (!e->ctx[role])
		e->ctx[role] = ctx_build(id, e, role, err);
	if (!e->ctx[role])
		goto out;
	e->used = true;
	c = e->ctx[role];
	SSL_CTX_up_ref(c);
out:
	pthread_mutex_unlock(&id->lock);
	return c;
}

SSL_CTX *identity_server_ctx(struct identity *id, const char *ns, const char *sa, char **err)
{
	return identity_ctx(id, ns, sa, ROLE_SERVER, err);
}

SSL_CTX *identity_client_ctx(struct identity *id, const char *ns, const char *sa, char **err)
{
	return identity_ctx(id, ns, sa, ROLE_CLIENT, err);
}

/* ---- the timer ---- */

static void tick_mesh_ca(struct identity *id)
{
	uint64_t now = loop_now_ms(), next = now + (uint64_t)id->ttl_s * 250;
	struct ident **pp = &id->list;

	while (*pp) {
		struct ident *e = *pp;

		if (e->due_ms <= now) {
			char *err = NULL, when[32];

			if (!e->used) {
				/* Nobody asked for it for half its life: its pods are gone. */
				pr_info("identity: %s unused for half its lifetime: dropped", e->uri);
				*pp = e->next;
				ident_free(e);
				continue;
			}
			if (ident_mint(id, e, &err)) {
				pr_err("%s (keeping serial %s, valid until %s)",
				       err ? err : "identity: cannot mint", e->serial,
				       time_str(e->not_after, when, sizeof(when)));
				e->due_ms = now + ID_RETRY_MS;
			} else {
				pr_info("identity: %s: renewed, serial %s, valid until %s", e->uri,
					e->serial, time_str(e->not_after, when, sizeof(when)));
			}
			free(err);
		}
		if (e->due_ms < next)
			next = e->due_ms;
		pp = &e->next;
	}
	if (loop_timer_arm(id->loop, &id->timer, next > now ? next - now : 0))
		pr_err("identity: cannot arm the renewal timer: out of memory");
}

/* files mode: a new bundle replaces the store; contexts are rebuilt on next use. */
static void check_bundle(struct identity *id)
{
	struct file_sig s;
	X509_STORE *st = NULL;
	char *err = NULL;

	if (sig_stat(id->bundle_file, &s) || sig_eq(&s, &id->bundle_sig) || sig_eq(&s, &id->bad_bundle))
		return;
	if (bundle_load(id->bundle_file, &st, &s, &err)) {
		pr_err("%s (keeping the previous bundle)", err ? err : "identity: bad trust bundle");
		id->bad_bundle = s;
		free(err);
		return;
	}
	X509_STORE_free(id->store);
	id->store = st;
	id->bundle_sig = s;
	for (struct ident *e = id->list; e; e = e->next)
		ident_drop_ctx(e);
	pr_info("identity: trust bundle %s reloaded", id->bundle_file);
}

static void check_files(struct identity *id, struct ident *e)
{
	struct file_sig cs, ks;
	char *err = NULL;
	char when[32];

	if (!e->expiry_logged && X509_cmp_current_time(X509_get0_notAfter(e->leaf)) <= 0) {
		snprintf(e->error, sizeof(e->error), "identity: files mode: %s expired at %s",
			 e->crt_path, time_str(e->not_after, when, sizeof(when)));
		pr_err("%s and was not replaced", e->error);
		e->expiry_logged = true;
	}
	if (sig_stat(e->crt_path, &cs) || sig_stat(e->key_path, &ks))
		return;		/* gone: keep what we have; a new pair is picked up */
	if (sig_eq(&cs, &e->crt_sig) && sig_eq(&ks, &e->key_sig)) {
		if (!e->expiry_logged)
			e->error[0] = '\0';	/* a refused pair was put back as it was */
		return;
	}
	if (sig_eq(&cs, &e->bad_crt) && sig_eq(&ks, &e->bad_key))
		return;
	if (ident_load_files(id, e, &err)) {
		snprintf(e->error, sizeof(e->error), "%s", err ? err : "identity: out of memory");
		pr_err("%s (keeping serial %s)", e->error, e->serial);
	} else {
		pr_info("identity: files mode: %s reloaded, serial %s, valid until %s", e->uri,
			e->serial, time_str(e->not_after, when, sizeof(when)));
	}
	free(err);
}

static void identity_tick(struct loop_timer *t)
{
	struct identity *id = t->arg;

	pthread_mutex_lock(&id->lock);
	if (id->mode == IDENTITY_MESH_CA) {
		tick_mesh_ca(id);
	} else {
		check_bundle(id);
		for (struct ident *e = id->list; e; e = e->next)
			check_files(id, e);
		if (loop_timer_arm(id->loop, &id->timer, id->reload_ms))
			pr_err("identity: cannot arm the reload timer: out of memory");
		id->next_check_wall = time(NULL) + (time_t)(id->reload_ms / 1000);
	}
	pthread_mutex_unlock(&id->lock);
}

/* ---- checking the peer ---- */

const char *identity_peer_reason_str(enum identity_peer_reason r)
{
	switch (r) {
#define X(name, val, str)               \
	case IDENTITY_PEER_##name:      \
		return str;
		IDENTITY_PEER_REASONS(X)
#undef X
	default:
		return "unknown";
	}
}

static enum identity_peer_reason verify_reason(long v)
{
	switch (v) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return IDENTITY_PEER_EXPIRED;
	case X509_V_ERR_APPLICATION_VERIFICATION:	/* set by verify_spiffe() */
		return IDENTITY_PEER_NO_SPIFFE;
	case X509_V_ERR_PERMITTED_VIOLATION:		/* same */
		return IDENTITY_PEER_FOREIGN_TD;
	default:
		return IDENTITY_PEER_UNTRUSTED;
	}
}

int identity_peer_check(SSL *ssl, const char *expected, char *peer_id_out, size_t len,
			enum identity_peer_reason *why)
{
	enum identity_peer_reason r = IDENTITY_PEER_OK;
	char uri[SL_SPIFFE_URI_MAX + 1] = "";
	struct spiffe_id peer, mine;
	const unsigned char *alpn = NULL;
	unsigned int alpn_len = 0;
	X509 *cert, *own;
	long v;

	if (!ssl) {
		r = IDENTITY_PEER_HANDSHAKE;
		goto out;
	}
	cert = SSL_get0_peer_certificate(ssl);
	if (cert && !identity_cert_spiffe(cert, &peer) &&
	    identity_spiffe_format(&peer, uri, sizeof(uri)) < 0)
		uri[0] = '\0';
	v = SSL_get_verify_result(ssl);
	if (v != X509_V_OK) {
		r = verify_reason(v);
		goto out;
	}
	if (!SSL_is_init_finished(ssl)) {
		/* A server that failed right where the client's Certificate was due. */
		r = !cert && SSL_get_state(ssl) == TLS_ST_SR_CERT ? IDENTITY_PEER_NO_CERT
								   : IDENTITY_PEER_HANDSHAKE;
		goto out;
	}
	/* X509_V_OK is also what an unverified peer reads: require that we verified. */
	if (!(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)) {
		r = IDENTITY_PEER_UNTRUSTED;
		goto out;
	}
	if (!cert) {
		r = IDENTITY_PEER_NO_CERT;
		goto out;
	}
	if (!uri[0]) {
		r = IDENTITY_PEER_NO_SPIFFE;
		goto out;
	}
	own = SSL_get_certificate(ssl);
	if (!own || identity_cert_spiffe(own, &mine) || strcmp(mine.td, peer.td)) {
		r = IDENTITY_PEER_FOREIGN_TD;
		goto out;
	}
	SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
	if (alpn_len != 2 || memcmp(alpn, "h2", 2)) {
		r = IDENTITY_PEER_NO_ALPN;
		goto out;
	}
	if (expected && strcmp(expected, uri))
		r = IDENTITY_PEER_WRONG_ID;
out:
	if (peer_id_out && len)
		snprintf(peer_id_out, len, "%s", uri);
	if (why)
		*why = r;
	return r == IDENTITY_PEER_OK ? 0 : -EACCES;
}

/* ---- listing ---- */

const char *identity_mode_str(enum identity_mode m)
{
	switch (m) {
	case IDENTITY_MESH_CA:
		return "mesh-ca";
	case IDENTITY_FILES:
		return "files";
	default:
		return "unknown";
	}
}

static int info_cmp(const void *a, const void *b)
{
	return strcmp(((const struct identity_cert_info *)a)->id,
		      ((const struct identity_cert_info *)b)->id);
}

int identity_certs(struct identity *id, struct identity_cert_info **out, size_t *n)
{
	struct identity_cert_info *v = NULL;
	size_t cnt = 0, i = 0;
	int ret = 0;

	if (!id || !out || !n)
		return -EINVAL;
	pthread_mutex_lock(&id->lock);
	for (struct ident *e = id->list; e; e = e->next)
		cnt++;
	if (cnt) {
		v = calloc(cnt, sizeof(*v));
		if (!v) {
			ret = -ENOMEM;
			goto out;
		}
	}
	for (struct ident *e = id->list; e; e = e->next, i++) {
		struct identity_cert_info *c = &v[i];

		snprintf(c->id, sizeof(c->id), "%s", e->uri);
		snprintf(c->serial, sizeof(c->serial), "%s", e->serial);
		c->not_before = e->not_before;
		c->not_after = e->not_after;
		c->mode = id->mode;
		if (id->mode == IDENTITY_MESH_CA) {
			c->next_renewal = e->due_wall;
			snprintf(c->source, sizeof(c->source), "minted by %s", id->ca_cert_file);
		} else {
			c->next_renewal = id->next_check_wall;
			snprintf(c->source, sizeof(c->source), "%s", e->crt_path);
			snprintf(c->error, sizeof(c->error), "%s", e->error);
		}
	}
	if (cnt)
		qsort(v, cnt, sizeof(*v), info_cmp);
out:
	pthread_mutex_unlock(&id->lock);
	*out = v;
	*n = ret ? 0 : cnt;
	return ret;
}

/* ---- life ---- */

static int dup_opt(char **dst, const char *src)
{
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

/* Refuse a groups list this OpenSSL does not have now, not at the first handshake. */
static int groups_check(const char *groups, char **err)
{
	SSL_CTX *c = SSL_CTX_new(TLS_method());
	int ret = 0;

	if (!c)
		ret = -ENOMEM;
	else if (!SSL_CTX_set1_groups_list(c, groups))
		ret = -EINVAL;
	if (ret)
		ssl_errf(err, "identity: key exchange groups '%s' not available in %s", groups,
			 OpenSSL_version(OPENSSL_VERSION));
	SSL_CTX_free(c);
	return ret;
}

int identity_new(struct identity **out, struct loop *l, const struct identity_opts *opts,
		 char **err)
{
	struct identity *id = NULL;
	const char *td;
	int ret = -EINVAL;

	if (!out || !opts) {
		errf(err, "identity: no options");
		return -EINVAL;
	}
	*out = NULL;
	ERR_clear_error();
	id = calloc(1, sizeof(*id));
	if (!id) {
		errf(err, "identity: out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&id->lock, NULL);
	loop_timer_init(&id->timer, identity_tick, id);
	id->loop = l;
	id->mode = opts->mode;
	id->ttl_s = opts->cert_ttl_s ? opts->cert_ttl_s : ID_DEFAULT_TTL_S;
	id->reload_ms = opts->reload_ms ? opts->reload_ms : ID_DEFAULT_RELOAD_MS;
	id->allow_tls12 = opts->allow_tls12;
	td = opts->trust_domain ? opts->trust_domain : ID_DEFAULT_TD;
	if (!td_valid(td, strnlen(td, SL_SPIFFE_TD_MAX + 1))) {
		errf(err, "identity: trust domain '%.64s': expected 1-%d of [a-z0-9._-]", td,
		     SL_SPIFFE_TD_MAX);
		goto out;
	}
	snprintf(id->td, sizeof(id->td), "%s", td);
	if (id->ttl_s > ID_MAX_TTL_S) {
		errf(err, "identity: certificate lifetime %us: at most %us", id->ttl_s, ID_MAX_TTL_S);
		goto out;
	}
	switch (id->mode) {
	case IDENTITY_MESH_CA:
		if (!opts->ca_cert_file || !opts->ca_key_file) {
			errf(err, "identity: mesh-ca mode needs a CA certificate and key");
			goto out;
		}
		break;
	case IDENTITY_FILES:
		if (!opts->certs_dir || !opts->bundle_file) {
			errf(err, "identity: files mode needs a certificates directory and a trust "
				  "bundle file");
			goto out;
		}
		break;
	default:
		errf(err, "identity: unknown mode %d", (int)id->mode);
		goto out;
	}
	ret = -ENOMEM;
	if (dup_opt(&id->ca_cert_file, opts->ca_cert_file) ||
	    dup_opt(&id->ca_key_file, opts->ca_key_file) ||
	    dup_opt(&id->certs_dir, opts->certs_dir) ||
	    dup_opt(&id->bundle_file, opts->bundle_file ? opts->bundle_file : opts->ca_cert_file) ||
	    dup_opt(&id->groups, opts->groups)) {
		errf(err, "identity: out of memory");
		goto out;
	}
	if (id->groups) {
		ret = groups_check(id->groups, err);
		if (ret)
			goto out;
	}
	ret = bundle_load(id->bundle_file, &id->store, &id->bundle_sig, err);
	if (ret)
		goto out;
	if (id->mode == IDENTITY_MESH_CA) {
		ret = ca_load(id, err);
		if (ret)
			goto out;
	}
	if (l) {
		uint64_t ms = id->mode == IDENTITY_MESH_CA ? (uint64_t)id->ttl_s * 250 : id->reload_ms;

		ret = loop_timer_arm(l, &id->timer, ms);
		if (ret) {
			errf(err, "identity: cannot arm the timer: %s", strerror(-ret));
			goto out;
		}
		id->next_check_wall = time(NULL) + (time_t)(ms / 1000);
	}
	*out = id;
	id = NULL;
	ret = 0;
out:
	identity_free(id);
	return ret;
}

void identity_free(struct identity *id)
{
	if (!id)
		return;
	if (id->loop)
		loop_timer_cancel(id->loop, &id->timer);
	while (id->list) {
		struct ident *e = id->list;

		id->list = e->next;
		ident_free(e);
	}
	X509_STORE_free(id->store);
	ASN1_OCTET_STRING_free(id->ca_keyid);
	sk_X509_pop_free(id->ca_chain, X509_free);
	EVP_PKEY_free(id->ca_key);
	X509_free(id->ca);
	free(id->ca_cert_file);
	free(id->ca_key_file);
	free(id->certs_dir);
	free(id->bundle_file);
	free(id->groups);
	pthread_mutex_destroy(&id->lock);
	free(id);
}
