// SPDX-License-Identifier: Apache-2.0
/* waypoint_ws.c - the WebSocket handshake fields the waypoint writes when
 * it translates between an HTTP/1.1 Upgrade (RFC 6455) and an HTTP/2
 * extended CONNECT (RFC 8441), which has neither Sec-WebSocket-Key nor
 * Sec-WebSocket-Accept: the translating hop makes them up or checks nothing,
 * as Envoy does. */
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "waypoint_int.h"

bool wp_is_websocket(const char *v, size_t len)
{
	return len == 9 && !strncasecmp(v, "websocket", 9);
}

/* A nonce for the HTTP/1.1 backend (RFC 6455 4.1: 16 bytes, base64); it
 * only proves the backend read this handshake, so no strong randomness. */
void wp_ws_key(struct waypoint *w, char out[WP_WS_KEY_LEN + 1])
{
	unsigned char raw[16];

	for (size_t i = 0; i < sizeof(raw); i += 4) {
		uint32_t r = wp_rand(w);

		memcpy(raw + i, &r, 4);
	}
	EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
}

/* Sec-WebSocket-Accept for a client's key (RFC 6455 4.2.2: base64 of the
 * SHA-1 of the key and the protocol's GUID). */
void wp_ws_accept(const char *key, size_t len, char out[WP_WS_ACCEPT_LEN + 1])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char md[SHA_DIGEST_LENGTH];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	out[0] = 0;
	if (!ctx)
		return;
	if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) && EVP_DigestUpdate(ctx, key, len) &&
	    EVP_DigestUpdate(ctx, guid, sizeof(guid) - 1) && EVP_DigestFinal_ex(ctx, md, NULL))
		EVP_EncodeBlock((unsigned char *)out, md, sizeof(md));
	EVP_MD_CTX_free(ctx);
}
