/*
 * curve_keys.c - CURVE key pairs (Curve25519, as RFC 26 uses them) made
 * and derived by libsodium, written as Z85 text. A secret key lives in
 * our memory only as long as the call and is wiped before it returns.
 */
#include "../../core/fy.h"

#include <sodium.h>
#include <string.h>

/* Every call's start: its two arguments there, libsodium started (which
 * is thread-safe, and cheap after the first time). */
static int keys_begin(const void *a, const void *b)
{
    fy_err_clear();
    if (a == NULL || b == NULL)
        return FERRY_EINVAL;
    if (sodium_init() < 0)
        return fy_err(FERRY_EIO, "libsodium could not start (no entropy source?)");
    return 0;
}

int ferry_curve_keypair(char public_key[41], char secret_key[41])
{
    int rc = keys_begin(public_key, secret_key);
    if (rc != 0)
        return rc;
    unsigned char pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
    crypto_box_keypair(pk, sk);
    rc = ferry_z85_encode(public_key, 41, pk, sizeof pk);
    if (rc == 0)
        rc = ferry_z85_encode(secret_key, 41, sk, sizeof sk);
    sodium_memzero(sk, sizeof sk);
    return rc;
}

int ferry_curve_public(char public_key[41], const char *secret_key)
{
    int rc = keys_begin(public_key, secret_key);
    if (rc != 0)
        return rc;
    unsigned char pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
    size_t n = 0;
    if (strlen(secret_key) != 40 || ferry_z85_decode(sk, sizeof sk, secret_key, &n) != 0 ||
        n != sizeof sk) {
        sodium_memzero(sk, sizeof sk);
        return fy_err(FERRY_EINVAL, "curve: a secret key is 40 characters of Z85");
    }
    rc = crypto_scalarmult_base(pk, sk) == 0 ? 0 : fy_err(FERRY_EINVAL, "curve: bad secret key");
    sodium_memzero(sk, sizeof sk);
    return rc == 0 ? ferry_z85_encode(public_key, 41, pk, sizeof pk) : rc;
}
