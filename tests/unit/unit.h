/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A tiny header-only unit test framework for vireo's tier-1 tests.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_U64(a, b); }
 *   int main(int argc, char **argv) { return unit_main(argc, argv); }
 *
 * TEST() registers the function in a static table (through a constructor),
 * so a test file needs no explicit list. Every test runs in a forked child,
 * so a test that crashes is reported as failed and the others still run
 * (set UNIT_NOFORK=1 to run in-process, e.g. under a debugger). Arguments
 * to the binary select tests whose name contains one of them.
 *
 * CHECK* macros record a failure and continue; REQUIRE* macros also end the
 * test (use them when what follows depends on the condition). UNIT_SKIP()
 * ends a test that cannot run here; a skipped test counts as neither passed
 * nor failed. The last line of output is always "N passed, M failed"
 * (counting tests), and the exit status is non-zero if any test failed.
 */
#ifndef VIREO_TESTS_UNIT_UNIT_H
#define VIREO_TESTS_UNIT_UNIT_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define UNIT_MAX_TESTS 512

/* Exit codes of a forked test. */
#define UNIT_EXIT_PASS 0
#define UNIT_EXIT_FAIL 1
#define UNIT_EXIT_SKIP 77

struct unit_test {
    const char *name;
    void (*fn)(void);
};

static struct unit_test unit_tests_[UNIT_MAX_TESTS];
static unsigned int unit_nr_tests_;
static unsigned int unit_cur_failures_; /* failed checks in the running test */
static bool unit_cur_skipped_;

__attribute__((unused)) static void unit_register_(const char *name, void (*fn)(void))
{
    if (unit_nr_tests_ >= UNIT_MAX_TESTS) {
        fprintf(stderr, "unit.h: too many tests (raise UNIT_MAX_TESTS)\n");
        exit(2);
    }
    unit_tests_[unit_nr_tests_++] = (struct unit_test){name, fn};
}

#define TEST(name)                                                                                 \
    static void unit_test_##name(void);                                                            \
    __attribute__((constructor)) static void unit_register_##name(void)                            \
    {                                                                                              \
        unit_register_(#name, unit_test_##name);                                                   \
    }                                                                                              \
    static void unit_test_##name(void)

__attribute__((unused, format(printf, 3, 4))) static void unit_fail_(const char *file, int line,
                                                                     const char *fmt, ...)
{
    va_list ap;

    unit_cur_failures_++;
    printf("  %s:%d: ", file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

__attribute__((unused)) static bool unit_check_(bool ok, const char *file, int line,
                                                const char *expr)
{
    if (!ok)
        unit_fail_(file, line, "CHECK(%s) failed", expr);
    return ok;
}

/* Each macro evaluates to true when the check passed (a call, so it may be used or not). */
#define CHECK(cond) unit_check_(!!(cond), __FILE__, __LINE__, #cond)

__attribute__((unused)) static bool unit_check_eq_u64_(const char *file, int line, const char *ea,
                                                       const char *eb, uint64_t a, uint64_t b)
{
    if (a == b)
        return true;
    unit_fail_(file, line,
               "CHECK_EQ_U64(%s, %s) failed: 0x%" PRIx64 " (%" PRIu64 ") != 0x%" PRIx64 " (%" PRIu64
               ")",
               ea, eb, a, a, b, b);
    return false;
}

#define CHECK_EQ_U64(a, b)                                                                         \
    unit_check_eq_u64_(__FILE__, __LINE__, #a, #b, (uint64_t)(a), (uint64_t)(b))

__attribute__((unused)) static bool unit_check_eq_i64_(const char *file, int line, const char *ea,
                                                       const char *eb, int64_t a, int64_t b)
{
    if (a == b)
        return true;
    unit_fail_(file, line, "CHECK_EQ_I64(%s, %s) failed: %" PRId64 " != %" PRId64, ea, eb, a, b);
    return false;
}

/* For signed values such as return codes (-EINVAL prints as -22). */
#define CHECK_EQ_I64(a, b)                                                                         \
    unit_check_eq_i64_(__FILE__, __LINE__, #a, #b, (int64_t)(a), (int64_t)(b))

__attribute__((unused)) static bool unit_check_str_contains_(const char *file, int line,
                                                             const char *eh, const char *en,
                                                             const char *haystack,
                                                             const char *needle)
{
    if (haystack && needle && strstr(haystack, needle))
        return true;
    unit_fail_(file, line, "CHECK_STR_CONTAINS(%s, %s) failed: \"%s\" does not contain \"%s\"", eh,
               en, haystack ? haystack : "(null)", needle ? needle : "(null)");
    return false;
}

#define CHECK_STR_CONTAINS(haystack, needle)                                                       \
    unit_check_str_contains_(__FILE__, __LINE__, #haystack, #needle, (haystack), (needle))

__attribute__((unused)) static bool unit_check_str_eq_(const char *file, int line, const char *ea,
                                                       const char *eb, const char *a, const char *b)
{
    if (a && b && strcmp(a, b) == 0)
        return true;
    unit_fail_(file, line, "CHECK_STR_EQ(%s, %s) failed: \"%s\" != \"%s\"", ea, eb,
               a ? a : "(null)", b ? b : "(null)");
    return false;
}

#define CHECK_STR_EQ(a, b) unit_check_str_eq_(__FILE__, __LINE__, #a, #b, (a), (b))

__attribute__((unused)) static bool unit_check_mem_eq_(const char *file, int line, const char *ea,
                                                       const char *eb, const void *a, const void *b,
                                                       size_t len)
{
    const uint8_t *pa = a, *pb = b;

    for (size_t i = 0; i < len; i++) {
        if (pa[i] != pb[i]) {
            unit_fail_(file, line,
                       "CHECK_MEM_EQ(%s, %s, %zu) failed: first difference at byte %zu: "
                       "0x%02x != 0x%02x",
                       ea, eb, len, i, pa[i], pb[i]);
            return false;
        }
    }
    return true;
}

#define CHECK_MEM_EQ(a, b, len) unit_check_mem_eq_(__FILE__, __LINE__, #a, #b, (a), (b), (len))

/* REQUIRE*: like CHECK*, and return from the test function on failure. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!CHECK(cond))                                                                          \
            return;                                                                                \
    } while (0)
#define REQUIRE_EQ_U64(a, b)                                                                       \
    do {                                                                                           \
        if (!CHECK_EQ_U64(a, b))                                                                   \
            return;                                                                                \
    } while (0)

/* Leave the current test as skipped, with a reason. */
#define UNIT_SKIP(...)                                                                             \
    do {                                                                                           \
        printf("  SKIP: ");                                                                        \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        unit_cur_skipped_ = true;                                                                  \
        return;                                                                                    \
    } while (0)

/* Run one test in this process; returns UNIT_EXIT_*. */
__attribute__((unused)) static int unit_run_one_(const struct unit_test *t)
{
    unit_cur_failures_ = 0;
    unit_cur_skipped_ = false;
    t->fn();
    fflush(stdout);
    if (unit_cur_failures_)
        return UNIT_EXIT_FAIL;
    return unit_cur_skipped_ ? UNIT_EXIT_SKIP : UNIT_EXIT_PASS;
}

__attribute__((unused)) static int unit_run_forked_(const struct unit_test *t)
{
    pid_t pid;
    int status;

    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("unit.h: fork");
        return unit_run_one_(t);
    }
    if (pid == 0) {
        int code = unit_run_one_(t);
        fflush(NULL);
        exit(code);
    }
    while (waitpid(pid, &status, 0) < 0) {
        perror("unit.h: waitpid");
        return UNIT_EXIT_FAIL;
    }
    if (WIFSIGNALED(status)) {
        printf("  CRASH: %s was killed by signal %d (%s)\n", t->name, WTERMSIG(status),
               strsignal(WTERMSIG(status)));
        return UNIT_EXIT_FAIL;
    }
    if (!WIFEXITED(status))
        return UNIT_EXIT_FAIL;
    switch (WEXITSTATUS(status)) {
    case UNIT_EXIT_PASS:
    case UNIT_EXIT_SKIP:
        return WEXITSTATUS(status);
    case UNIT_EXIT_FAIL:
        return UNIT_EXIT_FAIL;
    default:
        printf("  CRASH: %s exited with status %d\n", t->name, WEXITSTATUS(status));
        return UNIT_EXIT_FAIL;
    }
}

__attribute__((unused)) static bool unit_selected_(const char *name, int argc, char **argv)
{
    if (argc <= 1)
        return true;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i]))
            return true;
    return false;
}

__attribute__((unused)) static int unit_main(int argc, char **argv)
{
    const char *nofork = getenv("UNIT_NOFORK");
    bool fork_tests = !(nofork && *nofork && strcmp(nofork, "0") != 0);
    unsigned int passed = 0, failed = 0, skipped = 0;
    const char *prog = argc > 0 ? strrchr(argv[0], '/') : NULL;

    prog = prog ? prog + 1 : (argc > 0 ? argv[0] : "unit");
    /* Line-buffer stdout so output interleaves sanely with stderr through a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (unsigned int i = 0; i < unit_nr_tests_; i++) {
        const struct unit_test *t = &unit_tests_[i];
        int result;

        if (!unit_selected_(t->name, argc, argv))
            continue;
        printf("[ RUN  ] %s.%s\n", prog, t->name);
        result = fork_tests ? unit_run_forked_(t) : unit_run_one_(t);
        switch (result) {
        case UNIT_EXIT_PASS:
            passed++;
            printf("[  OK  ] %s.%s\n", prog, t->name);
            break;
        case UNIT_EXIT_SKIP:
            skipped++;
            printf("[ SKIP ] %s.%s\n", prog, t->name);
            break;
        default:
            failed++;
            printf("[ FAIL ] %s.%s\n", prog, t->name);
            break;
        }
    }
    if (skipped)
        printf("%s: %u skipped\n", prog, skipped);
    printf("%u passed, %u failed\n", passed, failed);
    fflush(stdout);
    return failed ? 1 : 0;
}

/* Whether all `len` bytes at `p` are `v` (for checks on buffers and guest memory). */
__attribute__((unused)) static bool unit_all_bytes(const void *p, size_t len, uint8_t v)
{
    const uint8_t *b = p;

    for (size_t i = 0; i < len; i++)
        if (b[i] != v)
            return false;
    return true;
}

/*
 * How many of the `pages` 4 KiB pages from `addr` are resident in memory
 * now (mincore). A failing mincore fails the running test.
 */
__attribute__((unused)) static uint64_t unit_resident_pages(const void *addr, size_t pages)
{
    unsigned char *vec = malloc(pages ? pages : 1);
    uint64_t n = 0;

    if (!CHECK(vec && mincore((void *)addr, pages * 4096, vec) == 0)) {
        free(vec);
        return 0;
    }
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    return n;
}

#endif
