/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lib/log.c once configured (PUT /logger): Firecracker's line format with
 * and without level and origin, level names and filtering, Off, the module
 * filter, a named pipe nobody reads (never blocks, counts what it drops),
 * and errors that name the bad value. (The stderr format before
 * configuration and the rate limit are in test_lib.c.)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include "../../lib/log.h"
#include "unit.h"

struct fixture {
    char dir[64];
    char path[96];
};

/* A temporary directory with an empty file `log` in it; names this thread "tester". */
static bool setup(struct fixture *fx)
{
    int fd;

    strcpy(fx->dir, "/tmp/vireo-log-test.XXXXXX");
    if (!CHECK(mkdtemp(fx->dir) != NULL))
        return false;
    snprintf(fx->path, sizeof(fx->path), "%s/log", fx->dir);
    fd = open(fx->path, O_CREAT | O_WRONLY, 0600);
    if (!CHECK(fd >= 0))
        return false;
    close(fd);
    pthread_setname_np(pthread_self(), "tester");
    return true;
}

static void teardown(struct fixture *fx)
{
    log_reset_config();
    unlink(fx->path);
    rmdir(fx->dir);
}

/* The whole file (caller frees), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t size = 0;

    if (f == NULL)
        return NULL;
    text = calloc(1, 1 << 20);
    if (text)
        size = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    if (text)
        text[size] = '\0';
    return text;
}

static int configure(const struct log_config *cfg)
{
    struct vr_error *err = NULL;
    int ret = log_configure(cfg, &err);

    if (ret < 0)
        printf("  log_configure: %s\n", err ? err->msg : "?");
    vr_error_free(&err);
    return ret;
}

static unsigned int count_of(const char *text, const char *needle)
{
    unsigned int n = 0;

    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* "2024-05-01T12:34:56.123456789 " */
static bool is_timestamp(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddddd ";

    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    }
    return true;
}

TEST(log_file_plain_format)
{
    struct fixture fx;
    char *text;

    REQUIRE(setup(&fx));
    REQUIRE(configure(&(struct log_config){.log_path = fx.path, .level = "Info"}) == 0);
    log_info("hello %d", 1);
    text = slurp(fx.path);
    REQUIRE(text != NULL);
    CHECK(is_timestamp(text));
    CHECK_STR_EQ(text + 30, "[anonymous-instance:tester] hello 1\n");
    free(text);
    teardown(&fx);
}

TEST(log_file_level_and_origin)
{
    struct fixture fx;
    char *text, expected[256];
    int line;

    REQUIRE(setup(&fx));
    log_set_instance_id("vm-42");
    REQUIRE(configure(&(struct log_config){.log_path = fx.path,
                                           .level = "debug",
                                           .has_show_level = true,
                                           .show_level = true,
                                           .has_show_log_origin = true,
                                           .show_log_origin = true}) == 0);
    line = __LINE__ + 1;
    log_warn("disk %s is slow", "vda");
    log_msg(LOG_DEBUG, "no origin here");
    text = slurp(fx.path);
    REQUIRE(text != NULL);
    snprintf(expected, sizeof(expected), " [vm-42:tester:WARN:%s:%d] disk vda is slow\n", __FILE__,
             line);
    CHECK_STR_CONTAINS(text, expected);
    CHECK_STR_CONTAINS(text, " [vm-42:tester:DEBUG:?:?] no origin here\n");
    free(text);

    /* show_level alone; the fields left unset keep their values, the level falls back to Info. */
    REQUIRE(configure(&(struct log_config){.has_show_log_origin = true}) == 0);
    log_error("failed");
    log_debug("not shown: the default level is Info");
    text = slurp(fx.path);
    REQUIRE(text != NULL);
    CHECK_STR_CONTAINS(text, " [vm-42:tester:ERROR] failed\n");
    CHECK(strstr(text, "not shown") == NULL);
    CHECK_EQ_U64(log_get_level(), LOG_INFO);
    free(text);
    teardown(&fx);
}

TEST(log_level_filter_and_off)
{
    struct fixture fx;
    char *text;

    REQUIRE(setup(&fx));
    REQUIRE(configure(&(struct log_config){.log_path = fx.path, .level = "WARNING"}) == 0);
    log_error("e1");
    log_warn("w1");
    log_info("i1");
    log_debug("d1");
    log_trace("t1");
    REQUIRE(configure(&(struct log_config){.level = "Trace"}) == 0);
    log_trace("t2");
    REQUIRE(configure(&(struct log_config){.level = "oFF"}) == 0);
    log_error("e3");
    log_ratelimited(LOG_ERROR, "e4");
    text = slurp(fx.path);
    REQUIRE(text != NULL);
    CHECK_STR_CONTAINS(text, "] e1\n");
    CHECK_STR_CONTAINS(text, "] w1\n");
    CHECK_STR_CONTAINS(text, "] t2\n");
    CHECK(strstr(text, "i1") == NULL && strstr(text, "d1") == NULL && strstr(text, "t1") == NULL);
    CHECK(strstr(text, "e3") == NULL && strstr(text, "e4") == NULL);
    CHECK_EQ_U64(count_of(text, "\n"), 3);
    free(text);
    teardown(&fx);
}

TEST(log_level_names)
{
    static const struct {
        const char *name;
        enum log_level level;
    } cases[] = {
        {"Error", LOG_ERROR}, {"WARNING", LOG_WARN}, {"warn", LOG_WARN}, {"Info", LOG_INFO},
        {"debug", LOG_DEBUG}, {"TrAcE", LOG_TRACE},  {"Off", LOG_OFF},
    };
    struct vr_error *err = NULL;
    enum log_level level = LOG_INFO;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ_I64(log_parse_level(cases[i].name, &level, &err), 0);
        CHECK_EQ_U64(level, cases[i].level);
    }
    CHECK_STR_EQ(log_level_name(LOG_WARN), "Warning");
    CHECK_STR_EQ(log_level_name(LOG_OFF), "Off");

    CHECK_EQ_I64(log_parse_level("verbose", &level, &err), -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "level: 'verbose' is not a log level");
    vr_error_free(&err);
}

TEST(log_configure_errors_change_nothing)
{
    struct fixture fx;
    struct vr_error *err = NULL;
    char missing[128], *text;

    REQUIRE(setup(&fx));
    REQUIRE(configure(&(struct log_config){.log_path = fx.path, .level = "Warning"}) == 0);

    CHECK_EQ_I64(
        log_configure(
            &(struct log_config){.level = "Loud", .has_show_level = true, .show_level = true},
            &err),
        -EINVAL);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, "'Loud'");
    vr_error_free(&err);

    /* The file must exist: it is not created (as in Firecracker). */
    snprintf(missing, sizeof(missing), "%s/missing", fx.dir);
    CHECK_EQ_I64(log_configure(&(struct log_config){.log_path = missing, .level = "Trace"}, &err),
                 -ENOENT);
    CHECK_STR_CONTAINS(err ? err->msg : NULL, missing);
    vr_error_free(&err);
    CHECK(access(missing, F_OK) < 0);

    log_warn("still here");
    log_info("still filtered");
    text = slurp(fx.path);
    REQUIRE(text != NULL);
    CHECK_STR_CONTAINS(text, "[anonymous-instance:tester] still here\n");
    CHECK(strstr(text, "still filtered") == NULL);
    free(text);
    teardown(&fx);
}

TEST(log_module_filter)
{
    struct fixture fx;
    char *text;

    REQUIRE(setup(&fx));
    REQUIRE(configure(&(struct log_config){.log_path = fx.path, .module = "vmm/virtio"}) == 0);
    log_info("from the test file");
    log_msg(LOG_INFO, "from nowhere");
    log_msg_at(LOG_INFO, "vmm/virtio/blk.c", 10, "from blk");
    log_msg_at(LOG_INFO, "/src/vireo/vmm/virtio/net.c", 20, "from net, built elsewhere");
    log_msg_at(LOG_INFO, "vmm/vcpu.c", 30, "from vcpu");
    for (int i = 0; i < 3; i++)
        log_ratelimited(LOG_WARN, "rate-limited from the test file");
    REQUIRE(configure(&(struct log_config){.module = ""}) == 0); /* cleared */
    log_info("after clearing");
    text = slurp(fx.path);
    REQUIRE(text != NULL);
    CHECK_STR_CONTAINS(text, "] from blk\n");
    CHECK_STR_CONTAINS(text, "] from net, built elsewhere\n");
    CHECK_STR_CONTAINS(text, "] after clearing\n");
    CHECK(strstr(text, "from the test file") == NULL);
    CHECK(strstr(text, "from nowhere") == NULL);
    CHECK(strstr(text, "from vcpu") == NULL);
    CHECK(strstr(text, "rate-limited") == NULL);
    CHECK_EQ_U64(count_of(text, "\n"), 3);
    free(text);
    teardown(&fx);
}

static void on_alarm(int signo)
{
    (void)signo;
    static const char msg[] = "  a log write blocked\n";
    (void)!write(STDOUT_FILENO, msg, sizeof(msg) - 1);
    _exit(UNIT_EXIT_FAIL);
}

/* A FIFO with no reader: configuring and writing never block; a full pipe drops whole lines. */
TEST(log_fifo_never_blocks)
{
    struct fixture fx;
    char fifo[128], buf[4096], pending[8192] = "";
    unsigned int lines = 0;
    uint64_t missed_before = log_missed_count();
    int rd;
    ssize_t n;

    REQUIRE(setup(&fx));
    snprintf(fifo, sizeof(fifo), "%s/fifo", fx.dir);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    signal(SIGALRM, on_alarm);
    alarm(10);
    REQUIRE(configure(&(struct log_config){.log_path = fifo, .level = "Info"}) == 0);
    /* 2000 lines of about 200 bytes: several times what a pipe holds. */
    for (int i = 0; i < 2000; i++)
        log_info("line %04d %0180d", i, 0);
    alarm(0);
    CHECK(log_missed_count() > missed_before);

    /* What the pipe took is whole lines. */
    rd = open(fifo, O_RDONLY | O_NONBLOCK);
    REQUIRE(rd >= 0);
    while ((n = read(rd, buf, sizeof(buf) - 1)) > 0) {
        buf[n] = '\0';
        strncat(pending, buf, sizeof(pending) - strlen(pending) - 1);
        for (char *nl; (nl = strchr(pending, '\n')) != NULL;) {
            *nl = '\0';
            CHECK(is_timestamp(pending));
            CHECK(strstr(pending, "] line ") != NULL && strlen(strstr(pending, "] line ")) == 192);
            lines++;
            memmove(pending, nl + 1, strlen(nl + 1) + 1);
        }
    }
    close(rd);
    CHECK_STR_EQ(pending, "");
    CHECK(lines > 0);
    CHECK_EQ_U64(lines + (log_missed_count() - missed_before), 2000);
    unlink(fifo);
    teardown(&fx);
}

int main(int argc, char **argv)
{
    log_init("test_log", LOG_WARN);
    return unit_main(argc, argv);
}
