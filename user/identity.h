/* SPDX-License-Identifier: Apache-2.0 */
/* identity.h - workload identities: SPIFFE IDs, their certificates, and the
 * OpenSSL contexts HBONE's mutual TLS runs on (HBONE.md, "TLS").
 *
 * An identity is spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>,
 * carried as the only URI SAN of an X.509 certificate. struct identity holds
 * one certificate and key per (namespace, service account) it was asked for,
 * from one of two sources:
 *
 *   mesh-ca  the agent holds a CA certificate and key (PEM files) and mints an
 *            ECDSA P-256 key and certificate per identity: empty subject,
 *            critical URI SAN, digitalSignature+keyEncipherment,
 *            serverAuth+clientAuth, valid now-1min .. now+TTL (24 h; never
 *            past the CA's own end), random 128-bit serial, SKI/AKI. It mints
 *            again at half life; an identity nobody asked a context for during
 *            a whole half life is dropped instead (its pods left the node).
 *   files    <certs_dir>/<ns>/<sa>/{tls.crt,tls.key} as cert-manager or SPIRE
 *            write them (tls.crt: leaf first, then intermediates). Files are
 *            stat()ed every reload_ms and reloaded when they change. A
 *            certificate is refused when its URI SAN is not the expected SPIFFE
 *            ID, it has expired, its key does not match, or it does not chain
 *            to the trust bundle; a refused reload keeps the previous one.
 *
 * Peers are trusted when they chain to one bundle (PEM, one or more roots; in
 * mesh-ca mode the CA certificate by default) and carry a SPIFFE ID of our
 * own trust domain; the handshake itself rejects anything else.
 *
 * Contexts and ownership. identity_server_ctx() / identity_client_ctx() return
 * a new reference to the current SSL_CTX of that identity: call SSL_new() on
 * it, then SSL_CTX_free() it (the SSL keeps its own reference). Ask again for
 * every new connection: when a certificate rotates, the next call returns a
 * new context with the new certificate, while SSLs made from the old one keep
 * working until they are freed. A context holds no pointer into struct
 * identity, so it may outlive identity_free().
 *
 * Threads. Every function may be called from any thread (one mutex). The
 * timer runs on, and identity_new()/identity_free() belong to, the loop given
 * to identity_new(); without a loop, mesh-ca certificates are still renewed,
 * lazily when asked for, but files are never reloaded.
 *
 * Errors. char **err, where taken, is NULL or an earlier message; on failure
 * it is replaced (the earlier one freed) by a malloc()ed "identity: ...: why"
 * the caller free()s, or NULL when out of memory; on success it is untouched
 * (as haproxy's memprintf). err itself may be NULL.
 */
#ifndef SL_IDENTITY_H
#define SL_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

struct loop;
struct identity;

/* ---- SPIFFE IDs ---- */

#define SL_SPIFFE_TD_MAX	255	/* SPIFFE: trust domain at most 255 bytes */
#define SL_SPIFFE_SEG_MAX	253	/* a Kubernetes name (DNS subdomain) */
/* "spiffe://" td "/ns/" ns "/sa/" sa, without the NUL */
#define SL_SPIFFE_URI_MAX	(9 + SL_SPIFFE_TD_MAX + 4 + SL_SPIFFE_SEG_MAX + 4 + SL_SPIFFE_SEG_MAX)

struct spiffe_id {
	char td[SL_SPIFFE_TD_MAX + 1];	/* [a-z0-9._-]+ */
	char ns[SL_SPIFFE_SEG_MAX + 1];	/* [A-Za-z0-9._-]+, not "." or ".." */
	char sa[SL_SPIFFE_SEG_MAX + 1];	/* same */
};

/* Parse uri[0..len) (no NUL needed) as exactly spiffe://TD/ns/NS/sa/SA.
 * Refuses other schemes (case-sensitive), empty or oversize parts, characters
 * outside the sets above (so percent-encoding, userinfo, ports, query and
 * fragment), "." and ".." segments, empty segments and a trailing slash.
 * Returns 0 and fills *out, or -EINVAL (out is then undefined). */
int identity_spiffe_parse(const char *uri, size_t len, struct spiffe_id *out);
/* Write id as a URI with a NUL into buf[len]. Returns its length, -EINVAL if a
 * field would not parse back, or -ENOSPC (SL_SPIFFE_URI_MAX + 1 always fits). */
int identity_spiffe_format(const struct spiffe_id *id, char *buf, size_t len);

/* The SPIFFE ID of a certificate: its one URI SAN, parsed. Returns 0, -ENOENT
 * (no URI SAN), -ENOTUNIQ (several URI SANs, or several SAN extensions) or
 * -EINVAL (the URI is not a SPIFFE ID, or the SAN does not decode). Other SAN
 * types are ignored. */
int identity_cert_spiffe(const X509 *cert, struct spiffe_id *out);
/* Same from a DER or PEM (first certificate) buffer; -EBADMSG if no certificate
 * decodes, or DER bytes follow the certificate. */
int identity_cert_spiffe_buf(const void *buf, size_t len, struct spiffe_id *out);

/* ---- the store of certificates ---- */

enum identity_mode {
	IDENTITY_MESH_CA = 0,		/* mint from a CA (the default) */
	IDENTITY_FILES,			/* read <dir>/<ns>/<sa>/tls.{crt,key} */
};

struct identity_opts {
	enum identity_mode mode;
	const char *trust_domain;	/* NULL: "cluster.local" */
	const char *ca_cert_file;	/* mesh-ca: signing CA (PEM; then any chain above it) */
	const char *ca_key_file;	/* mesh-ca: its key (PEM, not encrypted) */
	const char *certs_dir;		/* files */
	const char *bundle_file;	/* trust roots (PEM); NULL: ca_cert_file (mesh-ca) */
	unsigned int cert_ttl_s;	/* mesh-ca lifetime; 0: 86400. Renewed at half life */
	unsigned int reload_ms;		/* files: stat() period; 0: 10000 */
	bool allow_tls12;		/* also TLS 1.2 (ECDHE, AES-GCM); default 1.3 only */
	const char *groups;		/* key exchange, e.g. "X25519MLKEM768:X25519" where
					 * OpenSSL has it; NULL: OpenSSL's defaults */
};

/* Load the CA (mesh-ca) and the trust bundle, check them (the key matches the
 * CA, the CA is a CA, unexpired and chains to the bundle), and arm the timer
 * on l (may be NULL, see above). Nothing is minted or read per identity yet.
 * Returns 0, -EINVAL (bad options or files; *err says which), -ENOENT, -ENOMEM. */
int identity_new(struct identity **out, struct loop *l, const struct identity_opts *opts,
		 char **err);
/* NULL-safe; on the loop's thread, before loop_free(). Contexts handed out
 * stay valid (see "Contexts and ownership"). */
void identity_free(struct identity *id);

/* The current context for workload (ns, sa), minted or loaded on first use.
 * Server: presents its certificate, requires a client certificate that
 * verifies against the bundle with a SPIFFE ID of our trust domain, selects
 * ALPN "h2" and refuses clients that offer no "h2", sends no session tickets.
 * Client: presents its certificate, verifies the server the same way, offers
 * ALPN "h2", sets no SNI, caches no sessions. Both: TLS 1.3 (1.2 with
 * allow_tls12), TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256 only.
 * Returns a new reference (see "Contexts and ownership"), or NULL with *err. */
SSL_CTX *identity_server_ctx(struct identity *id, const char *ns, const char *sa, char **err);
SSL_CTX *identity_client_ctx(struct identity *id, const char *ns, const char *sa, char **err);

/* ---- checking the peer of a handshake ---- */

/* Never renumbered: the tunnel engine counts them. */
#define IDENTITY_PEER_REASONS(X)                                                       \
	X(OK,         0, "ok")                                                        \
	X(HANDSHAKE,  1, "TLS handshake did not complete")                            \
	X(NO_CERT,    2, "peer presented no certificate")                             \
	X(UNTRUSTED,  3, "peer certificate does not chain to the trust bundle")       \
	X(EXPIRED,    4, "peer certificate expired or not yet valid")                 \
	X(NO_SPIFFE,  5, "peer certificate has no single SPIFFE ID URI SAN")          \
	X(FOREIGN_TD, 6, "peer SPIFFE ID is of a foreign trust domain")               \
	X(WRONG_ID,   7, "peer SPIFFE ID is not the expected one")                    \
	X(NO_ALPN,    8, "ALPN h2 was not negotiated")

enum identity_peer_reason {
#define X(name, val, str) IDENTITY_PEER_##name = val,
	IDENTITY_PEER_REASONS(X)
#undef X
	IDENTITY_PEER_REASON_COUNT
};

const char *identity_peer_reason_str(enum identity_peer_reason r);

/* After a handshake on an SSL made from one of our contexts (or after it
 * failed, to learn why): 0 when the peer's certificate verified, has exactly
 * one URI SAN that is a SPIFFE ID of our trust domain, equals expected (when
 * not NULL) and ALPN "h2" was negotiated; else -EACCES. peer_id_out[len]
 * receives the peer's SPIFFE ID whenever one is known ("" otherwise), so a
 * WRONG_ID log can say what came instead; why (may be NULL) the reason. */
int identity_peer_check(SSL *ssl, const char *expected, char *peer_id_out, size_t len,
			enum identity_peer_reason *why);

/* ---- listing, for `sluicectl certs` ---- */

struct identity_cert_info {
	char id[SL_SPIFFE_URI_MAX + 1];
	char serial[64];		/* hex, as `openssl x509 -serial` prints it */
	int64_t not_before, not_after;	/* Unix seconds */
	int64_t next_renewal;		/* Unix seconds: mesh-ca re-mint; files next stat() */
	enum identity_mode mode;
	char source[512];		/* mesh-ca: "minted by <ca.crt>"; files: the tls.crt path */
	char error[512];		/* why the last reload was refused, "" if it was not */
};

/* A snapshot of the certificates held, sorted by id, in a malloc()ed array
 * the caller free()s (*out is NULL when *n is 0). Returns 0 or -ENOMEM. */
int identity_certs(struct identity *id, struct identity_cert_info **out, size_t *n);
const char *identity_mode_str(enum identity_mode m);	/* "mesh-ca", "files" */

#endif
