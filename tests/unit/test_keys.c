/*
 * test_keys.c - Z85 (RFC 32) and CURVE key pairs: the RFC's own vector,
 * round trips, every way a text can be refused, and keys whose public half
 * is what the secret half derives (as libzmq's zmq_curve_public does; the
 * CLI test checks the same against pyzmq).
 */
#include "../common.h"

static void test_z85_rfc_vector(void **state)
{
    (void)state;
    static const unsigned char bytes[8] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};
    char text[11];
    assert_int_equal(ferry_z85_encode(text, sizeof text, bytes, sizeof bytes), 0);
    assert_string_equal(text, "HelloWorld");
    unsigned char back[8];
    size_t n = 0;
    assert_int_equal(ferry_z85_decode(back, sizeof back, "HelloWorld", &n), 0);
    assert_int_equal(n, 8);
    assert_memory_equal(back, bytes, 8);
}

static void test_z85_round_trip(void **state)
{
    (void)state;
    unsigned char b[256], back[256];
    char text[321];
    for (size_t i = 0; i < sizeof b; i++)
        b[i] = (unsigned char)(i * 37 + 11);
    b[0] = 0xff, b[1] = 0xff, b[2] = 0xff, b[3] = 0xff; /* the largest group: "%nSc0" */
    for (size_t len = 0; len <= sizeof b; len += 4) {
        assert_int_equal(ferry_z85_encode(text, sizeof text, b, len), 0);
        assert_int_equal(strlen(text), len / 4 * 5);
        size_t n = 99;
        assert_int_equal(ferry_z85_decode(back, sizeof back, text, &n), 0);
        assert_int_equal(n, len);
        assert_memory_equal(back, b, len);
    }
    assert_int_equal(ferry_z85_encode(text, sizeof text, b, 4), 0);
    assert_string_equal(text, "%nSc0");
}

static void test_z85_refused(void **state)
{
    (void)state;
    unsigned char b[64] = {0};
    char text[64];
    assert_int_equal(ferry_z85_encode(text, sizeof text, b, 3), FERRY_EINVAL); /* not 4k */
    assert_int_equal(ferry_z85_encode(text, 5, b, 4), FERRY_ERANGE);           /* no NUL room */
    assert_int_equal(ferry_z85_decode(b, sizeof b, "Hello", NULL), 0);
    assert_int_equal(ferry_z85_decode(b, sizeof b, "Hell", NULL), FERRY_EINVAL);   /* not 5k */
    assert_int_equal(ferry_z85_decode(b, sizeof b, "Hel o", NULL), FERRY_EINVAL);  /* space */
    assert_int_equal(ferry_z85_decode(b, sizeof b, "Hel\"o", NULL), FERRY_EINVAL); /* not Z85 */
    assert_int_equal(ferry_z85_decode(b, sizeof b, "%nSc1", NULL), FERRY_EINVAL);  /* > 2^32-1 */
    assert_non_null(strstr(ferry_errdetail(), "32 bits"));
    assert_int_equal(ferry_z85_decode(b, sizeof b, "#####", NULL), FERRY_EINVAL);
    assert_int_equal(ferry_z85_decode(b, 3, "Hello", NULL), FERRY_ERANGE);
    assert_int_equal(ferry_z85_decode(NULL, 3, "Hello", NULL), FERRY_EINVAL);
}

static void test_keypair(void **state)
{
    (void)state;
    char pub[FERRY_KEY_TEXT], sec[FERRY_KEY_TEXT], pub2[FERRY_KEY_TEXT];
    char pub3[FERRY_KEY_TEXT], sec3[FERRY_KEY_TEXT];
    assert_int_equal(ferry_curve_keypair(pub, sec), 0);
    assert_int_equal(strlen(pub), 40);
    assert_int_equal(strlen(sec), 40);
    unsigned char raw[32];
    size_t n = 0;
    assert_int_equal(ferry_z85_decode(raw, sizeof raw, pub, &n), 0);
    assert_int_equal(n, 32);
    assert_int_equal(ferry_curve_public(pub2, sec), 0);
    assert_string_equal(pub2, pub); /* the public half is the secret's */
    assert_int_equal(ferry_curve_keypair(pub3, sec3), 0);
    assert_string_not_equal(sec3, sec); /* random, not a constant */
    assert_string_not_equal(pub3, pub);
    /* RFC 26's example server key pair */
    assert_int_equal(ferry_curve_public(pub2, "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"), 0);
    assert_string_equal(pub2, "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    assert_int_equal(ferry_curve_public(pub2, "short"), FERRY_EINVAL);
    assert_int_equal(ferry_curve_public(pub2, "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6x"),
                     FERRY_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_z85_rfc_vector),
        cmocka_unit_test(test_z85_round_trip),
        cmocka_unit_test(test_z85_refused),
        cmocka_unit_test(test_keypair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
