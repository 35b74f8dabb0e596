/* SPDX-License-Identifier: Apache-2.0 */
/*
 * LD_PRELOAD shim for benchmark (a): time from exec to a VMM's first
 * KVM_RUN. The launcher (bench/stamp-exec) puts CLOCK_MONOTONIC at exec in
 * VIREO_BENCH_T0_NS; at the first KVM_RUN this shim writes the difference
 * in nanoseconds to the file VIREO_BENCH_OUT and, with
 * VIREO_BENCH_EXIT=1, ends the process there. Works for any VMM that
 * calls glibc's ioctl(), so vireo-vmm and QEMU are measured the same way.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int ioctl(int fd, unsigned long request, ...);

static atomic_int seen;

static void record(void)
{
    const char *t0 = getenv("VIREO_BENCH_T0_NS"), *out = getenv("VIREO_BENCH_OUT");
    struct timespec ts;
    char line[64];
    int fd, n;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (t0 == NULL || out == NULL)
        return;
    n = snprintf(line, sizeof(line), "%lld\n",
                 (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec - atoll(t0));
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) != n)
            n = -1;
        close(fd);
    }
    if (getenv("VIREO_BENCH_EXIT") && strcmp(getenv("VIREO_BENCH_EXIT"), "1") == 0)
        _exit(0);
}

int ioctl(int fd, unsigned long request, ...)
{
    static int (*real_ioctl)(int, unsigned long, ...);
    va_list ap;
    void *arg;

    va_start(ap, request);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (real_ioctl == NULL)
        real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    if (request == KVM_RUN && atomic_exchange(&seen, 1) == 0)
        record();
    return real_ioctl(fd, request, arg);
}
