/* SPDX-License-Identifier: Apache-2.0 */
/* stamp-exec PROGRAM ARGS...: put CLOCK_MONOTONIC (ns) in VIREO_BENCH_T0_NS, then exec. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec ts;
    char value[32];

    if (argc < 2) {
        fprintf(stderr, "usage: stamp-exec PROGRAM [ARGS...]\n");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(value, sizeof(value), "%lld", (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec);
    setenv("VIREO_BENCH_T0_NS", value, 1);
    execvp(argv[1], argv + 1);
    perror("stamp-exec");
    return 127;
}
