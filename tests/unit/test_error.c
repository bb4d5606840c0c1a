/* test_error.c - the error list: names, descriptions, details. */
#include "../common.h"

static const int codes[] = {
#define XX(name, val, str) FERRY_##name,
    FERRY_ERRNO_MAP(XX)
#undef XX
};
static const char *const names[] = {
#define XX(name, val, str) "FERRY_" #name,
    FERRY_ERRNO_MAP(XX)
#undef XX
};

static void test_every_code_named(void **state)
{
    (void)state;
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        assert_true(codes[i] < 0);
        assert_string_equal(ferry_err_name(codes[i]), names[i]);
        const char *s = ferry_strerror(codes[i]);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
    assert_int_equal(FERRY_EACCES, -EACCES); /* OS errors are negated errno */
    assert_true(FERRY_EBADNAME <= -4000);    /* ferry's own are far away */
}

static void test_unknown_codes(void **state)
{
    (void)state;
    assert_string_equal(ferry_strerror(-99999), "unknown error");
    assert_string_equal(ferry_err_name(-99999), "FERRY_UNKNOWN");
    assert_string_equal(ferry_strerror(0), "success");
    /* an errno outside the list still gets the C library's words */
    assert_string_equal(ferry_strerror(-EPIPE), "Broken pipe");
}

static void test_detail(void **state)
{
    (void)state;
    ferry_shm *h;
    assert_int_equal(ferry_shm_open(&h, "t-does-not-exist-xyz", 0, 0, NULL), FERRY_ENOENT);
    assert_string_equal(ferry_errdetail(),
                        "open /dev/shm/ferry.t-does-not-exist-xyz: no such object");
    assert_int_equal(ferry_shm_open(&h, "bad/name", 0, 0, NULL), FERRY_EBADNAME);
    assert_non_null(strstr(ferry_errdetail(), "'bad/name'"));
    assert_string_equal(ferry_version(), FERRY_VERSION_STRING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_named),
        cmocka_unit_test(test_unknown_codes),
        cmocka_unit_test(test_detail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
