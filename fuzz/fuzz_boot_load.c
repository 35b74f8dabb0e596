/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: boot_load() end to end. The input is the kernel file
 * (bzImage, ELF or anything else), written to a memfd and opened through
 * /proc/self/fd like any path. Guest RAM is 64 MiB (the smallest vireo
 * accepts), created once and never reset: stale bytes from earlier inputs
 * are part of what the loader has to cope with.
 *
 * The input's size modulo 4 picks the rest of the configuration, so that
 * every seed and mutation exercises a mix of paths:
 *   bit 0: also pass the input itself as the initrd (placement, limits)
 *   bit 1: a 3000-byte command line instead of a short one (length limits)
 *
 * Checked besides memory safety: accepted kernels get an entry point and
 * boot information where the boot protocols put them, and an initrd that
 * lies page-aligned in RAM; no file descriptor leaks from either path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../lib/err.h"
#include "../lib/log.h"
#include "../vmm/boot/boot.h"
#include "../vmm/memory.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GUEST_RAM (64ull << 20)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_boot_load: invariant failed: %s\n", #cond);                      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct guest_memory mem;
static int kernel_fd = -1;
static char kernel_path[64];
static char long_cmdline[3001];
static int lowest_free_fd = -1;

static int first_free_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    if (fd >= 0)
        close(fd);
    return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct vr_error *err = NULL;

    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    if (guest_memory_create(&mem, GUEST_RAM, false, &err) < 0) {
        fprintf(stderr, "fuzz_boot_load: %s\n", err ? err->msg : "guest_memory_create failed");
        abort();
    }
    kernel_fd = memfd_create("fuzz-kernel", MFD_CLOEXEC);
    if (kernel_fd < 0) {
        perror("fuzz_boot_load: memfd_create");
        abort();
    }
    snprintf(kernel_path, sizeof(kernel_path), "/proc/self/fd/%d", kernel_fd);
    memset(long_cmdline, 'c', sizeof(long_cmdline) - 1);
    long_cmdline[sizeof(long_cmdline) - 1] = '\0';
    lowest_free_fd = first_free_fd();
    return 0;
}

static void put_input(const uint8_t *data, size_t size)
{
    size_t done = 0;

    if (ftruncate(kernel_fd, 0) < 0 || ftruncate(kernel_fd, (off_t)size) < 0) {
        perror("fuzz_boot_load: ftruncate");
        abort();
    }
    while (done < size) {
        ssize_t n = pwrite(kernel_fd, data + done, size - done, (off_t)done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            perror("fuzz_boot_load: pwrite");
            abort();
        }
        done += (size_t)n;
    }
}

static uint32_t get32(uint64_t gpa)
{
    uint32_t v;
    const void *p = gpa_to_hva(&mem, gpa, 4);

    REQUIRE(p != NULL);
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(uint64_t gpa)
{
    uint64_t v;
    const void *p = gpa_to_hva(&mem, gpa, 8);

    REQUIRE(p != NULL);
    memcpy(&v, p, 8);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool with_initrd = size & 1;
    struct boot_spec spec = {
        .kernel_path = kernel_path,
        .initrd_path = with_initrd ? kernel_path : NULL,
        .cmdline = (size & 2) ? long_cmdline : "console=ttyS0 panic=-1",
        .rsdp = 0xe0000,
    };
    struct boot_entry entry;
    struct vr_error *err = NULL;
    int ret;

    if (kernel_fd < 0)
        LLVMFuzzerInitialize(NULL, NULL);
    put_input(data, size);
    memset(&entry, 0xa5, sizeof(entry));
    ret = boot_load(&mem, &spec, &entry, &err);
    if (ret == 0) {
        uint64_t initrd = 0, initrd_size = 0;

        REQUIRE(err == NULL);
        REQUIRE(gpa_to_hva(&mem, entry.entry, 1) != NULL);
        if (entry.mode == BOOT_MODE_LINUX64) {
            REQUIRE(entry.entry == 0x100200);
            REQUIRE(entry.boot_info == 0x7000);
            REQUIRE(get32(0x7000 + 0x228) == 0x20000); /* cmd_line_ptr */
            initrd = get32(0x7000 + 0x218) | (uint64_t)get32(0x7000 + 0xc0) << 32;
            initrd_size = get32(0x7000 + 0x21c) | (uint64_t)get32(0x7000 + 0xc4) << 32;
        } else {
            REQUIRE(entry.mode == BOOT_MODE_PVH);
            REQUIRE(entry.boot_info == 0x6000);
            REQUIRE(get32(0x6000) == 0x336ec578);
            REQUIRE(get32(0x6000 + 12) == (with_initrd ? 1u : 0u));
            if (with_initrd) {
                uint64_t mod = get64(0x6000 + 16);

                initrd = get64(mod);
                initrd_size = get64(mod + 8);
            }
        }
        REQUIRE(initrd_size == (with_initrd ? size : 0));
        if (with_initrd) {
            REQUIRE(initrd % 4096 == 0);
            REQUIRE(initrd >= 0x100000);
            REQUIRE(gpa_to_hva(&mem, initrd, initrd_size) != NULL);
            REQUIRE(memcmp(gpa_to_hva(&mem, initrd, initrd_size), data, size) == 0);
        }
    } else {
        REQUIRE(ret < 0);
        REQUIRE(err != NULL && err->msg != NULL && err->errnum == -ret);
    }
    vr_error_free(&err);
    /* Every path closes and unmaps what it opened. */
    REQUIRE(first_free_fd() == lowest_free_fd);
    return 0;
}
