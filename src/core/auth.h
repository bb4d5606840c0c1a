/*
 * auth.h - a socket's CURVE settings (the FERRY_OPT_CURVE_* options) and
 * the question a CURVE server asks at each handshake: is this client key
 * admitted? The mechanism itself is the stream transport's
 * (src/transport/zmtp/curve.h); this is policy only.
 *
 * What a socket holds here, counted against fixed limits: the keys given
 * by option (at most FY_AUTH_KEYS_MAX) and those read from the allow file
 * (a file of at most FY_AUTH_FILE_MAX bytes, so at most that many keys
 * too). Both sorted, so a handshake's question costs a binary search, plus
 * one stat() of the file to see whether it changed.
 *
 * Every function takes the socket's mtx unless it says "mtx held".
 */
#ifndef FY_AUTH_H
#define FY_AUTH_H

#include "fy.h"

#include <stddef.h>

#define FY_AUTH_KEYS_MAX 65536
#define FY_AUTH_FILE_MAX (4u << 20)

/* What a socket speaks on tcp:// and ipc://. */
enum { FY_MECH_NULL, FY_MECH_CURVE_CLIENT, FY_MECH_CURVE_SERVER };

struct fy_auth;

/* 1 if opt is one of the FERRY_OPT_CURVE_* options. */
int fy_auth_is_opt(int opt);

/* ferry_setopt and ferry_getopt of those options (mtx taken inside). */
int fy_auth_setopt(ferry_socket *s, int opt, const void *val, size_t len);
int fy_auth_getopt(ferry_socket *s, int opt, void *val, size_t *len);

/* The mechanism new connections speak, and its keys: our secret (and
 * public) key, and for a client the server's public key. mtx held. */
int fy_auth_mech(const ferry_socket *s);
void fy_auth_keys(const ferry_socket *s, unsigned char secret[32], unsigned char server_key[32]);

/* Whether s may make an endpoint on a transport (secure: it carries the
 * CURVE mechanism): 0, or FERRY_ENOTSUP / FERRY_EINVAL with the detail
 * set (a CURVE socket on shm://, a client without the server's key, a
 * server admitting nobody). */
int fy_auth_endpoint_ok(ferry_socket *s, int secure);

/* A CURVE server's question: is this client key admitted? 0, or
 * FERRY_EAUTH with why (cap bytes) saying why not. Reads the allow file
 * again when it changed. mtx held. */
int fy_auth_admit(ferry_socket *s, const unsigned char key[32], char *why, size_t cap);

/* Wipes and frees what the socket held (its last reference). */
void fy_auth_free(ferry_socket *s);

#endif /* FY_AUTH_H */
