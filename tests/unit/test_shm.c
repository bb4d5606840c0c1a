/* test_shm.c - named shared-memory regions: lifecycle, validation, errors. */
#include "../common.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/mman.h>

static void test_create_open_roundtrip(void **state)
{
    (void)state;
    char n[64];
    ferry_shm *a, *b;
    t_name(n, sizeof n, "rt");
    assert_int_equal(ferry_shm_open(&a, n, 4096, FERRY_CREATE | FERRY_EXCL, NULL), 0);
    assert_int_equal(ferry_shm_created(a), 1);
    assert_int_equal(ferry_shm_size(a), 4096);
    assert_string_equal(ferry_shm_name(a), n);
    assert_int_equal((uintptr_t)ferry_shm_addr(a) % 64, 0);
    memcpy(ferry_shm_addr(a), "hello", 6);

    assert_int_equal(ferry_shm_open(&b, n, 0, 0, NULL), 0);
    assert_int_equal(ferry_shm_created(b), 0);
    assert_int_equal(ferry_shm_size(b), 4096);
    assert_string_equal(ferry_shm_addr(b), "hello");
    ferry_shm_close(b);
    assert_int_equal(ferry_shm_open(&b, n, 4096, FERRY_CREATE, NULL), 0);
    assert_int_equal(ferry_shm_created(b), 0);
    ferry_shm_close(b);

    assert_int_equal(ferry_shm_unlink(n), 0);
    assert_false(t_exists(n));
    /* the mapping outlives the name */
    assert_string_equal(ferry_shm_addr(a), "hello");
    ferry_shm_close(a);
    assert_int_equal(ferry_shm_open(&b, n, 0, 0, NULL), FERRY_ENOENT);
    assert_null(b);
    assert_int_equal(ferry_shm_unlink(n), FERRY_ENOENT);
    assert_int_equal(ferry_shm_close(NULL), 0);
}

static void test_mode(void **state)
{
    (void)state;
    char n[64], p[300];
    struct stat st;
    ferry_shm *a;
    mode_t old = umask(0);
    t_name(n, sizeof n, "mode");
    assert_int_equal(ferry_shm_open(&a, n, 100, FERRY_CREATE, NULL), 0);
    t_path(p, sizeof p, n);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    ferry_shm_close(a);
    ferry_shm_unlink(n);

    umask(0077); /* the umask must not change an explicit mode */
    ferry_shm_opts o = {.mode = 0644};
    assert_int_equal(ferry_shm_open(&a, n, 100, FERRY_CREATE, &o), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    ferry_shm_close(a);
    ferry_shm_unlink(n);
    umask(old);
}

static void test_exclusive(void **state)
{
    (void)state;
    char n[64];
    ferry_shm *a, *b;
    t_name(n, sizeof n, "excl");
    assert_int_equal(ferry_shm_open(&a, n, 64, FERRY_CREATE | FERRY_EXCL, NULL), 0);
    assert_int_equal(ferry_shm_open(&b, n, 64, FERRY_CREATE | FERRY_EXCL, NULL), FERRY_EEXIST);
    assert_null(b);
    assert_non_null(strstr(ferry_errdetail(), n));
    ferry_shm_close(a);
    ferry_shm_unlink(n);
}

static void test_bad_names(void **state)
{
    (void)state;
    char long_name[FERRY_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const char *bad[] = {"",        long_name,      "a/b",  "..",  ".",
                         ".hidden", "a..b",         "a\nb", "a b", "\x01",
                         "x\x7f",   "na\xc3\xafve", "a:b",  "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ferry_shm *h = (ferry_shm *)1;
        assert_int_equal(ferry_name_check(bad[i]), FERRY_EBADNAME);
        assert_int_equal(ferry_shm_open(&h, bad[i], 64, FERRY_CREATE, NULL), FERRY_EBADNAME);
        assert_null(h);
        assert_int_equal(ferry_shm_unlink(bad[i]), FERRY_EBADNAME);
    }
    ferry_shm *h;
    assert_int_equal(ferry_shm_open(&h, NULL, 64, FERRY_CREATE, NULL), FERRY_EBADNAME);
    long_name[FERRY_NAME_MAX] = '\0'; /* exactly 200 bytes is fine */
    assert_int_equal(ferry_name_check(long_name), 0);
    assert_int_equal(ferry_name_check("a.b_c-9"), 0);
}

static void test_sizes(void **state)
{
    (void)state;
    char n[64];
    ferry_shm *a, *b;
    t_name(n, sizeof n, "size");
    assert_int_equal(ferry_shm_open(&a, n, 0, FERRY_CREATE, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_shm_open(&a, n, 4096, FERRY_CREATE, NULL), 0);
    assert_int_equal(ferry_shm_open(&b, n, 8192, 0, NULL), FERRY_ESIZE);
    assert_int_equal(ferry_shm_open(&b, n, 8192, FERRY_CREATE, NULL), FERRY_ESIZE);
    assert_non_null(strstr(ferry_errdetail(), "4096"));
    assert_int_equal(ferry_shm_open(&b, n, 64, 0, (void *)0), FERRY_ESIZE);
    ferry_shm_close(a);
    ferry_shm_unlink(n);
    assert_int_equal(ferry_shm_open(&a, n, SIZE_MAX - 8, FERRY_CREATE, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_shm_open(&a, n, 64, 0x40, NULL), FERRY_EINVAL);
}

/* Writes raw bytes as /dev/shm/ferry.NAME. */
static void write_file(const char *name, const void *data, size_t len)
{
    char p[300];
    t_path(p, sizeof p, name);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_foreign_and_damaged(void **state)
{
    (void)state;
    char n[64], p[300];
    ferry_shm *a;
    t_name(n, sizeof n, "foreign");
    t_path(p, sizeof p, n);
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    write_file(n, junk, sizeof junk);
    assert_int_equal(ferry_shm_open(&a, n, 0, 0, NULL), FERRY_EFOREIGN);
    assert_int_equal(ferry_shm_open(&a, n, 0, FERRY_CREATE, NULL), FERRY_EFOREIGN);
    assert_int_equal(ferry_shm_unlink(n), FERRY_EFOREIGN); /* not ours to remove */
    assert_int_equal(ferry_object_remove(n), FERRY_EFOREIGN);
    assert_true(t_exists(n));
    write_file(n, "", 0); /* empty */
    assert_int_equal(ferry_shm_open(&a, n, 0, 0, NULL), FERRY_EFOREIGN);
    unlink(p);

    /* a real region, truncated: inside the header, then inside the data */
    assert_int_equal(ferry_shm_open(&a, n, 4096, FERRY_CREATE, NULL), 0);
    ferry_shm_close(a);
    assert_int_equal(truncate(p, 1000), 0);
    assert_int_equal(ferry_shm_open(&a, n, 0, 0, NULL), FERRY_EDAMAGED);
    assert_int_equal(truncate(p, 100), 0);
    assert_int_equal(ferry_shm_open(&a, n, 0, 0, NULL), FERRY_EDAMAGED);
    assert_int_equal(ferry_object_remove(n), 0); /* damaged but ours: removable */
    assert_false(t_exists(n));

    /* a newer layout version */
    assert_int_equal(ferry_shm_open(&a, n, 64, FERRY_CREATE, NULL), 0);
    ferry_shm_close(a);
    int fd = open(p, O_RDWR);
    uint32_t v = 99;
    assert_int_equal(pwrite(fd, &v, 4, 8), 4);
    close(fd);
    assert_int_equal(ferry_shm_open(&a, n, 0, 0, NULL), FERRY_EVERSION);
    assert_int_equal(ferry_object_remove(n), 0);

    /* a symlink planted under the name is not followed */
    assert_int_equal(symlink("/etc/passwd", p), 0);
    assert_int_not_equal(ferry_shm_open(&a, n, 0, 0, NULL), 0);
    unlink(p);
}

static void test_kind(void **state)
{
    (void)state;
    char n[64];
    ferry_sem *s;
    ferry_shm *a;
    t_name(n, sizeof n, "kind");
    assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE, 0, 1), 0);
    assert_int_equal(ferry_shm_open(&a, n, 0, 0, NULL), FERRY_EKIND);
    assert_int_equal(ferry_shm_unlink(n), FERRY_EKIND);
    ferry_sem_close(s);
    assert_int_equal(ferry_sem_unlink(n), 0);
    assert_int_equal(ferry_shm_open(&a, n, 64, FERRY_CREATE, NULL), 0);
    assert_int_equal(ferry_sem_open(&s, n, 0, 0, 0), FERRY_EKIND);
    ferry_shm_close(a);
    ferry_shm_unlink(n);
}

static void test_permission_denied(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char n[64];
    ferry_shm *a;
    t_name(n, sizeof n, "perm");
    assert_int_equal(ferry_shm_open(&a, n, 64, FERRY_CREATE, NULL), 0); /* 0600 root */
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(90);
        ferry_shm *b;
        int rc = ferry_shm_open(&b, n, 0, 0, NULL);
        if (rc != FERRY_EACCES)
            _exit(91);
        if (strstr(ferry_errdetail(), "permission denied") == NULL)
            _exit(92);
        rc = ferry_shm_unlink(n); /* nor may it remove it */
        _exit(rc == FERRY_EACCES || rc == FERRY_EPERM ? 0 : 93);
    }
    assert_int_equal(t_wait(pid), 0);
    ferry_shm_close(a);
    ferry_shm_unlink(n);
}

static int init_fill(void *addr, size_t size, void *arg)
{
    unsigned char *p = addr;
    for (size_t i = 0; i < size; i++)
        if (p[i] != 0)
            return FERRY_EINVAL; /* must start zeroed */
    memcpy(addr, arg, strlen(arg) + 1);
    return 0;
}

static int init_fail(void *addr, size_t size, void *arg)
{
    (void)addr, (void)size, (void)arg;
    return FERRY_ENOSPC;
}

static void test_init_callback(void **state)
{
    (void)state;
    char n[64];
    ferry_shm *a;
    t_name(n, sizeof n, "init");
    ferry_shm_opts o = {.init = init_fill, .init_arg = "ready"};
    assert_int_equal(ferry_shm_open(&a, n, 256, FERRY_CREATE, &o), 0);
    assert_string_equal(ferry_shm_addr(a), "ready");
    ferry_shm_close(a);
    ferry_shm_unlink(n);
    ferry_shm_opts f = {.init = init_fail};
    assert_int_equal(ferry_shm_open(&a, n, 256, FERRY_CREATE, &f), FERRY_ENOSPC);
    assert_false(t_exists(n));
}

/* Many processes race to open-or-create: one creates, all see it ready. */
static void test_concurrent_create(void **state)
{
    (void)state;
    enum { N = 8 };
    char n[64];
    pid_t pids[N];
    t_name(n, sizeof n, "race");
    struct t_pipe go;
    t_pipe_open(&go);
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            close(go.w);
            t_pipe_recv(&go); /* all start together when the pipe closes */
            ferry_shm *a;
            ferry_shm_opts o = {.init = init_fill, .init_arg = "ready"};
            if (ferry_shm_open(&a, n, 4096, FERRY_CREATE, &o) != 0)
                _exit(90);
            if (strcmp(ferry_shm_addr(a), "ready") != 0)
                _exit(91);
            _exit(ferry_shm_created(a) ? 1 : 0);
        }
    }
    t_pipe_close(&go);
    int created = 0;
    for (int i = 0; i < N; i++) {
        int rc = t_wait(pids[i]);
        assert_true(rc == 0 || rc == 1);
        created += rc;
    }
    assert_int_equal(created, 1);
    ferry_shm_unlink(n);
}

static int init_block(void *addr, size_t size, void *arg)
{
    (void)addr, (void)size;
    struct t_pipe *p = arg;
    t_pipe_send(p, 'i');
    for (;;)
        pause();
    return 0;
}

/* A creator killed in the middle of creation leaves nothing behind. */
static void test_creator_killed_mid_create(void **state)
{
    (void)state;
    char n[64];
    t_name(n, sizeof n, "killed");
    struct t_pipe p;
    t_pipe_open(&p);
    pid_t pid = fork();
    if (pid == 0) {
        ferry_shm *a;
        ferry_shm_opts o = {.init = init_block, .init_arg = &p};
        ferry_shm_open(&a, n, 1 << 20, FERRY_CREATE, &o);
        _exit(1);
    }
    assert_int_equal(t_pipe_recv(&p), 'i');
    assert_false(t_exists(n)); /* not visible while being made */
    kill(pid, SIGKILL);
    assert_int_equal(t_wait(pid), 128 + SIGKILL);
    assert_false(t_exists(n));
    ferry_shm *a;
    assert_int_equal(ferry_shm_open(&a, n, 0, 0, NULL), FERRY_ENOENT);
    t_pipe_close(&p);
}

/* An object planted by another local user (here: ours, given to uid 65534,
 * mode 0666, valid header) is refused unless the caller names that owner;
 * a root-owned object is accepted by everyone. */
static void test_foreign_owner_refused(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char n[64], p[300];
    ferry_shm *a, *b;
    ferry_shm_opts o = {.mode = 0666};
    t_name(n, sizeof n, "owner");
    t_path(p, sizeof p, n);
    assert_int_equal(ferry_shm_open(&a, n, 64, FERRY_CREATE, &o), 0);
    ferry_shm_close(a);
    assert_int_equal(chown(p, 65534, 65534), 0);
    assert_int_equal(ferry_shm_open(&b, n, 64, 0, NULL), FERRY_EOWNER);
    assert_non_null(strstr(ferry_errdetail(), "65534"));
    assert_int_equal(ferry_shm_open(&b, n, 64, FERRY_CREATE, NULL), FERRY_EOWNER);
    assert_int_equal(ferry_shm_open_ex(&b, n, 64, 0, NULL, 1234), FERRY_EOWNER);
    assert_int_equal(ferry_shm_open_ex(&b, n, 64, 0, NULL, 65534), 0);
    ferry_shm_close(b);
    assert_int_equal(ferry_shm_open_ex(&b, n, 64, 0, NULL, FERRY_OWNER_ANY), 0);
    ferry_shm_close(b);
    assert_int_equal(ferry_shm_open_ex(&b, n, 64, 0, NULL, -2), FERRY_EINVAL);
    /* the same object seen by its owner, and a root-owned one by uid 65534 */
    char n2[64];
    t_name(n2, sizeof n2, "owner-root");
    assert_int_equal(ferry_shm_open(&a, n2, 64, FERRY_CREATE, &o), 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(90);
        ferry_shm *c;
        CHILD_CHECK(ferry_shm_open(&c, n, 64, 0, NULL) == 0, 91);
        ferry_shm_close(c);
        CHILD_CHECK(ferry_shm_open(&c, n2, 64, 0, NULL) == 0, 92);
        ferry_shm_close(c);
        _exit(0);
    }
    assert_int_equal(t_wait(pid), 0);
    ferry_shm_close(a);
    assert_int_equal(ferry_shm_unlink(n), 0);
    assert_int_equal(ferry_shm_unlink(n2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_open_roundtrip),
        cmocka_unit_test(test_mode),
        cmocka_unit_test(test_exclusive),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_foreign_and_damaged),
        cmocka_unit_test(test_kind),
        cmocka_unit_test(test_permission_denied),
        cmocka_unit_test(test_init_callback),
        cmocka_unit_test(test_concurrent_create),
        cmocka_unit_test(test_creator_killed_mid_create),
        cmocka_unit_test(test_foreign_owner_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
