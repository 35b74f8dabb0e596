/* SPDX-License-Identifier: Apache-2.0 */
/* lib/: size and integer parsing, the error convention, file helpers; and the I/O bus. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "../../lib/cleanup.h"
#include "../../lib/err.h"
#include "../../lib/log.h"
#include "../../lib/util.h"
#include "../../vmm/bus.h"
#include "unit.h"

/* ---- parse_size --------------------------------------------------------------------------- */

static void check_size_ok(const char *text, uint64_t unit, uint64_t expect)
{
    struct vr_error *err = NULL;
    uint64_t out = 0xdeadbeef;
    int ret = parse_size(text, unit, &out, &err);

    if (!CHECK_EQ_I64(ret, 0)) {
        printf("  parse_size(\"%s\"): %s\n", text, err ? err->msg : "(no message)");
    } else if (!CHECK_EQ_U64(out, expect)) {
        printf("  parse_size(\"%s\", %llu)\n", text, (unsigned long long)unit);
    }
    CHECK(err == NULL);
    vr_error_free(&err);
}

/* Expect failure with errno `expect_errno` and a message containing `needle`. */
static void check_size_bad(const char *text, int expect_errno, const char *needle)
{
    struct vr_error *err = NULL;
    uint64_t out = 0xdeadbeef;
    int ret = parse_size(text, MiB, &out, &err);

    if (!CHECK_EQ_I64(ret, -expect_errno))
        printf("  parse_size(\"%s\") -> %llu\n", text ? text : "(null)", (unsigned long long)out);
    CHECK_EQ_U64(out, 0xdeadbeef); /* untouched on failure */
    if (CHECK(err != NULL)) {
        CHECK_EQ_I64(err->errnum, expect_errno);
        CHECK_STR_CONTAINS(err->msg, needle);
        if (text)
            CHECK_STR_CONTAINS(err->msg, text);
    }
    vr_error_free(&err);
}

TEST(parse_size_plain_numbers_use_default_unit)
{
    check_size_ok("256", MiB, 256 * MiB);
    check_size_ok("256", 1, 256);
    check_size_ok("4", GiB, 4 * GiB);
    check_size_ok("0", MiB, 0);
    check_size_ok("007", KiB, 7 * KiB);
}

TEST(parse_size_suffixes)
{
    check_size_ok("512K", MiB, 512 * KiB);
    check_size_ok("512k", MiB, 512 * KiB);
    check_size_ok("256M", 1, 256 * MiB);
    check_size_ok("256m", 1, 256 * MiB);
    check_size_ok("2G", MiB, 2 * GiB);
    check_size_ok("1T", MiB, 1024 * GiB);
    check_size_ok("1t", MiB, 1024 * GiB);
    /* Optional "iB" or "B", any case; all binary units. */
    check_size_ok("256MiB", 1, 256 * MiB);
    check_size_ok("256MB", 1, 256 * MiB);
    check_size_ok("256mib", 1, 256 * MiB);
    check_size_ok("256mb", 1, 256 * MiB);
    check_size_ok("1GIB", 1, GiB);
    check_size_ok("3KiB", 1, 3 * KiB);
    check_size_ok("0G", MiB, 0);
    /* The largest values that fit. */
    check_size_ok("16777215T", 1, 16777215ull << 40);
    check_size_ok("18446744073709551615", 1, UINT64_MAX);
}

TEST(parse_size_garbage)
{
    check_size_bad("", EINVAL, "not a size");
    check_size_bad("abc", EINVAL, "not a size");
    check_size_bad("M", EINVAL, "not a size");
    check_size_bad("12X", EINVAL, "suffix");
    check_size_bad("1GG", EINVAL, "not a size");
    check_size_bad("1 G", EINVAL, "not a size");
    check_size_bad(" 1G", EINVAL, "not a size");
    check_size_bad("1G ", EINVAL, "not a size");
    check_size_bad("1Gi", EINVAL, "not a size");
    check_size_bad("1GiBs", EINVAL, "not a size");
    check_size_bad("1B", EINVAL, "not a size");
    check_size_bad("0x10", EINVAL, "not a size");
    check_size_bad("1.5G", EINVAL, "not a size");
    check_size_bad("+1G", EINVAL, "not a size");
    check_size_bad(NULL, EINVAL, "not a size");
}

TEST(parse_size_negative)
{
    check_size_bad("-1", EINVAL, "not a size");
    check_size_bad("-1G", EINVAL, "not a size");
    check_size_bad("-0", EINVAL, "not a size");
}

TEST(parse_size_overflow)
{
    /* Too many digits for 64 bits. */
    check_size_bad("18446744073709551616", ERANGE, "too large");
    check_size_bad("99999999999999999999999G", ERANGE, "too large");
    /* The number fits, the product with the unit does not. */
    check_size_bad("16777216T", ERANGE, "too large");
    check_size_bad("17179869184G", ERANGE, "too large");
    check_size_bad("18446744073709551615K", ERANGE, "too large");
    {
        /* ...also with the default unit. */
        struct vr_error *err = NULL;
        uint64_t out = 7;

        CHECK_EQ_I64(parse_size("17592186044416", MiB, &out, &err), -ERANGE);
        CHECK_STR_CONTAINS(err ? err->msg : NULL, "too large");
        CHECK_EQ_U64(out, 7);
        vr_error_free(&err);
        CHECK_EQ_I64(parse_size("17592186044415", MiB, &out, NULL), 0);
        CHECK_EQ_U64(out, 17592186044415ull * MiB);
    }
}

TEST(parse_size_without_error_out)
{
    uint64_t out = 0;

    CHECK_EQ_I64(parse_size("x", MiB, &out, NULL), -EINVAL);
    CHECK_EQ_I64(parse_size("99999999999999999999", MiB, &out, NULL), -ERANGE);
    CHECK_EQ_I64(parse_size("64M", MiB, &out, NULL), 0);
    CHECK_EQ_U64(out, 64 * MiB);
}

/* ---- parse_uint --------------------------------------------------------------------------- */

TEST(parse_uint_ranges)
{
    struct vr_error *err = NULL;
    uint64_t out = 0;

    CHECK_EQ_I64(parse_uint("1", "--cpus", 1, 254, &out, &err), 0);
    CHECK_EQ_U64(out, 1);
    CHECK_EQ_I64(parse_uint("254", "--cpus", 1, 254, &out, &err), 0);
    CHECK_EQ_U64(out, 254);
    CHECK_EQ_I64(parse_uint("0", "n", 0, 0, &out, &err), 0);
    CHECK_EQ_U64(out, 0);
    CHECK_EQ_I64(parse_uint("18446744073709551615", "n", 0, UINT64_MAX, &out, &err), 0);
    CHECK_EQ_U64(out, UINT64_MAX);
    CHECK(err == NULL);

    out = 99;
    CHECK_EQ_I64(parse_uint("0", "--cpus", 1, 254, &out, &err), -ERANGE);
    CHECK_EQ_U64(out, 99);
    if (CHECK(err != NULL)) {
        CHECK_STR_CONTAINS(err->msg, "--cpus");
        CHECK_STR_CONTAINS(err->msg, "out of range");
        CHECK_STR_CONTAINS(err->msg, "1 to 254");
    }
    CHECK_EQ_I64(parse_uint("255", "--cpus", 1, 254, &out, &err), -ERANGE);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "255");
    vr_error_free(&err);
}

TEST(parse_uint_garbage)
{
    static const char *const bad[] = {"",
                                      "x",
                                      "-1",
                                      "+1",
                                      " 1",
                                      "1 ",
                                      "1x",
                                      "0x10",
                                      "1.0",
                                      "18446744073709551616",
                                      "99999999999999999999999"};
    struct vr_error *err = NULL;
    uint64_t out = 99;

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (!CHECK_EQ_I64(parse_uint(bad[i], "--value", 0, UINT64_MAX, &out, &err), -EINVAL))
            printf("  for \"%s\"\n", bad[i]);
        if (CHECK(err != NULL)) {
            CHECK_STR_CONTAINS(err->msg, "--value");
            CHECK_STR_CONTAINS(err->msg, "not a number");
        }
        vr_error_free(&err);
    }
    CHECK_EQ_I64(parse_uint(NULL, "--value", 0, 10, &out, &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "--value");
    vr_error_free(&err);
    CHECK_EQ_U64(out, 99);
}

/* ---- errors ------------------------------------------------------------------------------- */

TEST(error_set_appends_strerror)
{
    struct vr_error *err = NULL;

    CHECK_EQ_I64(vr_error_set(&err, ENOENT, "open %s", "/nonexistent"), -ENOENT);
    REQUIRE(err != NULL);
    CHECK_EQ_I64(err->errnum, ENOENT);
    CHECK_STR_EQ(err->msg, "open /nonexistent: No such file or directory");
    vr_error_free(&err);
    CHECK(err == NULL);
    vr_error_free(&err); /* freeing nothing is fine */
}

TEST(error_new_has_no_strerror)
{
    struct vr_error *err = NULL;

    CHECK_EQ_I64(vr_error_new(&err, ERANGE, "value %d is too big", 7), -ERANGE);
    REQUIRE(err != NULL);
    CHECK_EQ_I64(err->errnum, ERANGE);
    CHECK_STR_EQ(err->msg, "value 7 is too big");
    vr_error_free(&err);
}

TEST(error_zero_or_negative_errno_becomes_einval)
{
    struct vr_error *err = NULL;

    CHECK_EQ_I64(vr_error_new(&err, 0, "zero"), -EINVAL);
    CHECK_EQ_I64(err ? err->errnum : 0, EINVAL);
    CHECK_EQ_I64(vr_error_set(&err, -5, "negative"), -EINVAL);
    CHECK_EQ_I64(err ? err->errnum : 0, EINVAL);
    /* The previous error was replaced, not leaked (ASan checks the leak part). */
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "negative");
    vr_error_free(&err);
}

TEST(error_wrap_prefixes_context)
{
    struct vr_error *err = NULL;

    vr_error_set(&err, EACCES, "open '%s'", "k");
    CHECK_EQ_I64(vr_error_wrap(&err, "kernel %d", 1), -EACCES);
    CHECK_EQ_I64(vr_error_wrap(&err, "boot"), -EACCES);
    REQUIRE(err != NULL);
    CHECK_STR_EQ(err->msg, "boot: kernel 1: open 'k': Permission denied");
    CHECK_EQ_I64(err->errnum, EACCES);
    vr_error_free(&err);
}

TEST(error_without_out_parameter)
{
    struct vr_error *err = NULL;

    /* Callers that do not want the message pass NULL and still get the code. */
    CHECK_EQ_I64(vr_error_set(NULL, EIO, "x"), -EIO);
    CHECK_EQ_I64(vr_error_new(NULL, ENOSPC, "y"), -ENOSPC);
    CHECK_EQ_I64(vr_error_wrap(NULL, "z"), -EINVAL);
    /* Wrapping no error has nothing to wrap. */
    CHECK_EQ_I64(vr_error_wrap(&err, "z"), -EINVAL);
    CHECK(err == NULL);
    vr_error_free(NULL);
}

TEST(error_cleanup_attribute)
{
    struct vr_error *seen;

    {
        cleanup_error struct vr_error *err = NULL;

        vr_error_new(&err, EINVAL, "scoped");
        seen = err;
        CHECK(seen != NULL);
    }
    /* Freed at scope exit; ASan's leak check would catch it otherwise. */
    CHECK(seen != NULL);
}

TEST(error_long_message)
{
    struct vr_error *err = NULL;
    char big[5000];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    vr_error_new(&err, EINVAL, "%s", big);
    CHECK_EQ_U64(strlen(err ? err->msg : ""), sizeof(big) - 1);
    vr_error_wrap(&err, "ctx");
    CHECK_EQ_U64(strlen(err ? err->msg : ""), sizeof(big) - 1 + 5);
    vr_error_free(&err);
}

/* ---- files -------------------------------------------------------------------------------- */

TEST(file_helpers)
{
    char dir[] = "/tmp/vireo-unit-lib.XXXXXX";
    char path[64];
    struct vr_error *err = NULL;
    uint8_t buf[16];
    uint64_t size = 0;
    int fd = -1;

    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/f", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    CHECK_EQ_I64(write_all(fd, "0123456789", 10), 0);
    close(fd);

    CHECK_EQ_I64(open_file_size(path, "test file", &fd, &size, &err), 0);
    CHECK_EQ_U64(size, 10);
    CHECK_EQ_I64(read_full_at(fd, buf, 4, 3, path, &err), 0);
    CHECK_MEM_EQ(buf, "3456", 4);
    /* Short file: -EIO and a message naming it. */
    CHECK_EQ_I64(read_full_at(fd, buf, 8, 5, "thing", &err), -EIO);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "thing");
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "end of file");
    vr_error_free(&err);
    close(fd);

    /* Missing file and a directory. */
    CHECK_EQ_I64(open_file_size("/nonexistent/vireo", "kernel", &fd, &size, &err), -ENOENT);
    CHECK_STR_EQ(err ? err->msg : NULL, "kernel '/nonexistent/vireo': No such file or directory");
    vr_error_free(&err);
    CHECK_EQ_I64(open_file_size(dir, "initrd", &fd, &size, &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "not a regular file");
    vr_error_free(&err);
    CHECK_EQ_I64(write_all(-1, "x", 1), -EBADF);

    unlink(path);
    rmdir(dir);
}

/* ---- logging ----------------------------------------------------------------------------- */

/* Run fn with stderr going to a temporary file; returns what it wrote (caller frees). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/vireo-unit-log.XXXXXX";
    int fd = mkstemp(path), saved;
    char *text = NULL;
    off_t size;

    if (fd < 0)
        return NULL;
    unlink(path);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn(arg);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    size = lseek(fd, 0, SEEK_END);
    text = calloc(1, (size_t)size + 1);
    if (text && pread(fd, text, (size_t)size, 0) != size) {
        free(text);
        text = NULL;
    }
    close(fd);
    return text;
}

static unsigned int count_lines(const char *text, const char *needle)
{
    unsigned int n = 0;

    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void log_burst(void *arg)
{
    struct log_ratelimit *rl = arg;

    for (int i = 0; i < 15; i++)
        log_ratelimited_at(rl, LOG_WARN, "guest did thing %d", i);
}

static void log_after_window(void *arg)
{
    struct log_ratelimit *rl = arg;

    rl->window_start_ns -= LOG_RATELIMIT_WINDOW_NS; /* as if the window had passed */
    log_ratelimited_at(rl, LOG_WARN, "guest did thing again");
}

static void log_levels(void *arg)
{
    (void)arg;
    log_set_level(LOG_WARN);
    log_error("an error %d", 1);
    log_warn("a warning");
    log_info("some info");
    log_debug("debugging");
}

TEST(log_ratelimit)
{
    struct log_ratelimit rl = {0};
    char *out;

    log_set_level(LOG_WARN);
    out = capture_stderr(log_burst, &rl);
    REQUIRE(out != NULL);
    CHECK_EQ_U64(count_lines(out, "guest did thing"), LOG_RATELIMIT_BURST);
    CHECK_STR_CONTAINS(out, "guest did thing 9\n");
    CHECK(strstr(out, "guest did thing 10") == NULL);
    CHECK_EQ_U64(rl.suppressed, 15 - LOG_RATELIMIT_BURST);
    free(out);

    /* The next window reports how many were dropped, then prints again. */
    out = capture_stderr(log_after_window, &rl);
    REQUIRE(out != NULL);
    CHECK_STR_CONTAINS(out, "5 similar messages suppressed");
    CHECK_STR_CONTAINS(out, "guest did thing again");
    free(out);

    /* Below the log level nothing is printed or counted. */
    log_set_level(LOG_ERROR);
    rl = (struct log_ratelimit){0};
    out = capture_stderr(log_burst, &rl);
    CHECK_STR_EQ(out, "");
    CHECK_EQ_U64(rl.printed + rl.suppressed, 0);
    free(out);
}

TEST(log_levels)
{
    char *out = capture_stderr(log_levels, NULL);

    REQUIRE(out != NULL);
    CHECK_STR_CONTAINS(out, "error: an error 1\n");
    CHECK_STR_CONTAINS(out, "warning: a warning\n");
    CHECK(strstr(out, "some info") == NULL);
    CHECK(strstr(out, "debugging") == NULL);
    CHECK_EQ_U64(log_get_level(), LOG_WARN);
    free(out);
}

/* ---- I/O bus ------------------------------------------------------------------------------ */

struct fake_dev {
    struct device dev;
    uint64_t last_offset;
    uint32_t last_len;
    unsigned int reads, writes;
    uint8_t last_write;
};

static void fake_read(struct device *dev, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct fake_dev *f = container_of(dev, struct fake_dev, dev);

    f->reads++;
    f->last_offset = offset;
    f->last_len = len;
    memset(data, 0x42, len);
}

static void fake_write(struct device *dev, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct fake_dev *f = container_of(dev, struct fake_dev, dev);

    f->writes++;
    f->last_offset = offset;
    f->last_len = len;
    f->last_write = data[0];
}

static const struct device_ops fake_ops_a = {
    .name = "dev-a", .read = fake_read, .write = fake_write};
static const struct device_ops fake_ops_b = {
    .name = "dev-b", .read = fake_read, .write = fake_write};
static const struct device_ops fake_ops_c = {
    .name = "dev-c", .read = fake_read, .write = fake_write};
static const struct device_ops fake_ops_ro = {.name = "dev-ro", .read = fake_read};

TEST(bus_register_keeps_ranges_sorted)
{
    struct bus bus = {.name = "pio"};
    struct fake_dev a = {.dev.ops = &fake_ops_a}, b = {.dev.ops = &fake_ops_b},
                    c = {.dev.ops = &fake_ops_c};

    CHECK_EQ_I64(bus_register(&bus, 0x3f8, 8, &b.dev, NULL), 0);
    CHECK_EQ_I64(bus_register(&bus, 0xcf8, 8, &c.dev, NULL), 0);
    CHECK_EQ_I64(bus_register(&bus, 0x60, 5, &a.dev, NULL), 0);
    REQUIRE_EQ_U64(bus.nr_ranges, 3);
    CHECK_EQ_U64(bus.ranges[0].base, 0x60);
    CHECK(bus.ranges[0].dev == &a.dev);
    CHECK_EQ_U64(bus.ranges[1].base, 0x3f8);
    CHECK(bus.ranges[1].dev == &b.dev);
    CHECK_EQ_U64(bus.ranges[2].base, 0xcf8);
    CHECK(bus.ranges[2].dev == &c.dev);
    /* Adjacent ranges are fine on both sides. */
    CHECK_EQ_I64(bus_register(&bus, 0x3f0, 8, &a.dev, NULL), 0);
    CHECK_EQ_I64(bus_register(&bus, 0x400, 1, &a.dev, NULL), 0);
    CHECK_EQ_U64(bus.nr_ranges, 5);
    for (unsigned int i = 1; i < bus.nr_ranges; i++)
        CHECK(bus.ranges[i - 1].base + bus.ranges[i - 1].len <= bus.ranges[i].base);
    bus_free(&bus);
    CHECK_EQ_U64(bus.nr_ranges, 0);
    CHECK(bus.ranges == NULL);
}

TEST(bus_register_rejects_overlap)
{
    struct bus bus = {.name = "pio"};
    struct fake_dev a = {.dev.ops = &fake_ops_a}, b = {.dev.ops = &fake_ops_b};
    struct vr_error *err = NULL;
    static const struct {
        uint64_t base, len;
    } bad[] = {
        {0x3f8, 8},     /* the same range */
        {0x3f8, 1},     /* the same start */
        {0x3f0, 9},     /* runs into it */
        {0x3ff, 4},     /* starts in its last byte */
        {0x3fa, 2},     /* inside */
        {0x300, 0x200}, /* around it */
    };

    REQUIRE_EQ_U64(bus_register(&bus, 0x3f8, 8, &a.dev, NULL), 0);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (!CHECK_EQ_I64(bus_register(&bus, bad[i].base, bad[i].len, &b.dev, &err), -EEXIST))
            printf("  for 0x%llx+0x%llx\n", (unsigned long long)bad[i].base,
                   (unsigned long long)bad[i].len);
        if (CHECK(err != NULL)) {
            CHECK_STR_CONTAINS(err->msg, "pio bus");
            CHECK_STR_CONTAINS(err->msg, "dev-b");
            CHECK_STR_CONTAINS(err->msg, "overlaps dev-a");
        }
        vr_error_free(&err);
    }
    CHECK_EQ_U64(bus.nr_ranges, 1);
    /* With a neighbour on each side, overlapping either is caught. */
    REQUIRE_EQ_U64(bus_register(&bus, 0x408, 8, &a.dev, NULL), 0);
    CHECK_EQ_I64(bus_register(&bus, 0x3ff, 2, &b.dev, NULL), -EEXIST);
    CHECK_EQ_I64(bus_register(&bus, 0x400, 9, &b.dev, NULL), -EEXIST);
    CHECK_EQ_I64(bus_register(&bus, 0x400, 8, &b.dev, NULL), 0);
    CHECK_EQ_U64(bus.nr_ranges, 3);
    bus_free(&bus);
}

TEST(bus_register_rejects_bad_ranges)
{
    struct bus bus = {.name = "mmio"};
    struct fake_dev a = {.dev.ops = &fake_ops_a};
    struct vr_error *err = NULL;

    CHECK_EQ_I64(bus_register(&bus, 0x1000, 0, &a.dev, &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "bad range");
    vr_error_free(&err);
    CHECK_EQ_I64(bus_register(&bus, UINT64_MAX - 1, 4, &a.dev, &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "mmio bus");
    vr_error_free(&err);
    CHECK_EQ_U64(bus.nr_ranges, 0);
    bus_free(&bus);
}

TEST(bus_lookup_boundaries)
{
    struct bus bus = {.name = "pio"};
    struct fake_dev a = {.dev.ops = &fake_ops_a}, b = {.dev.ops = &fake_ops_b},
                    c = {.dev.ops = &fake_ops_c};
    const struct bus_range *r;

    REQUIRE_EQ_U64(bus_register(&bus, 0x60, 5, &a.dev, NULL), 0);
    REQUIRE_EQ_U64(bus_register(&bus, 0x3f8, 8, &b.dev, NULL), 0);
    REQUIRE_EQ_U64(bus_register(&bus, 0x400, 8, &c.dev, NULL), 0); /* right after b */

    r = bus_lookup(&bus, 0x3f8, 1);
    CHECK(r != NULL && r->dev == &b.dev);
    r = bus_lookup(&bus, 0x3ff, 1); /* last byte */
    CHECK(r != NULL && r->dev == &b.dev);
    r = bus_lookup(&bus, 0x3fc, 4); /* last dword, ending exactly at the range end */
    CHECK(r != NULL && r->dev == &b.dev);
    r = bus_lookup(&bus, 0x3f8, 8); /* the whole range */
    CHECK(r != NULL && r->dev == &b.dev);
    r = bus_lookup(&bus, 0x400, 1);
    CHECK(r != NULL && r->dev == &c.dev);
    r = bus_lookup(&bus, 0x64, 1);
    CHECK(r != NULL && r->dev == &a.dev);

    /* Outside every range. */
    CHECK(bus_lookup(&bus, 0x3f7, 1) == NULL);
    CHECK(bus_lookup(&bus, 0x65, 1) == NULL);
    CHECK(bus_lookup(&bus, 0x0, 1) == NULL);
    CHECK(bus_lookup(&bus, 0x408, 1) == NULL);
    CHECK(bus_lookup(&bus, UINT64_MAX, 1) == NULL);
    /* Straddling a range end, even into an adjacent range: no match. */
    CHECK(bus_lookup(&bus, 0x3fe, 4) == NULL);
    CHECK(bus_lookup(&bus, 0x3ff, 2) == NULL);
    CHECK(bus_lookup(&bus, 0x63, 4) == NULL);
    CHECK(bus_lookup(&bus, 0x3f8, 9) == NULL);
    /* Straddling a range start. */
    CHECK(bus_lookup(&bus, 0x3f6, 4) == NULL);
    CHECK(bus_lookup(&bus, 0x5e, 4) == NULL);
    CHECK(bus_lookup(&bus, 0x404, 0xffffffff) == NULL);
    bus_free(&bus);

    /* An empty bus. */
    CHECK(bus_lookup(&bus, 0x3f8, 1) == NULL);
}

TEST(bus_read_write_dispatch)
{
    struct bus bus = {.name = "pio"};
    struct fake_dev a = {.dev.ops = &fake_ops_a}, ro = {.dev.ops = &fake_ops_ro};
    uint8_t data[4] = {0x99, 0, 0, 0};

    REQUIRE_EQ_U64(bus_register(&bus, 0x3f8, 8, &a.dev, NULL), 0);
    REQUIRE_EQ_U64(bus_register(&bus, 0x500, 4, &ro.dev, NULL), 0);
    CHECK(bus_write(&bus, 0x3fb, data, 1));
    CHECK_EQ_U64(a.writes, 1);
    CHECK_EQ_U64(a.last_offset, 3); /* offsets are relative to the range */
    CHECK_EQ_U64(a.last_len, 1);
    CHECK_EQ_U64(a.last_write, 0x99);
    CHECK(bus_read(&bus, 0x3fc, data, 4));
    CHECK_EQ_U64(a.reads, 1);
    CHECK_EQ_U64(a.last_offset, 4);
    CHECK_EQ_U64(data[3], 0x42);
    /* Unclaimed and straddling accesses are not dispatched. */
    CHECK(!bus_read(&bus, 0x3fe, data, 4));
    CHECK(!bus_write(&bus, 0x3f0, data, 1));
    CHECK_EQ_U64(a.reads + a.writes, 2);
    /* A device without a write op does not claim writes. */
    CHECK(!bus_write(&bus, 0x500, data, 1));
    CHECK(bus_read(&bus, 0x500, data, 1));
    CHECK_EQ_U64(ro.reads, 1);
    bus_free(&bus);
}

int main(int argc, char **argv)
{
    return unit_main(argc, argv);
}
