/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: bzimage_detect() and bzimage_parse() on arbitrary bytes.
 * Beyond "no crash, no out-of-bounds read" (ASan), an accepted image must
 * satisfy what the loader relies on: the payload and the setup header lie
 * inside the file, and the kernel is a 64-bit one of protocol 2.12 or later.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../lib/err.h"
#include "../vmm/boot/bzimage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_bzimage: invariant failed: %s\n", #cond);                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bzimage_info info;
    struct vr_error *err = NULL;
    bool detected = bzimage_detect(data, size);
    int ret = bzimage_parse(data, size, &info, &err);

    if (ret == 0) {
        REQUIRE(err == NULL);
        REQUIRE(detected);
        REQUIRE(info.version >= 0x020c);
        REQUIRE(info.xloadflags & XLF_KERNEL_64);
        REQUIRE(info.header_end >= BP_HEADER && info.header_end <= BP_SIZE);
        REQUIRE(info.header_end <= size);
        REQUIRE(info.payload_size > 0);
        REQUIRE(info.payload_offset <= size);
        REQUIRE(info.payload_size <= size - info.payload_offset);
        REQUIRE(info.init_size >= info.payload_size);
        /* Touch the first and last payload bytes: ASan checks they are in the input. */
        volatile uint8_t sink = data[info.payload_offset];
        sink = data[info.payload_offset + info.payload_size - 1];
        (void)sink;
    } else {
        REQUIRE(ret < 0);
        REQUIRE(err != NULL && err->msg != NULL && err->errnum == -ret);
    }
    vr_error_free(&err);
    /* Without an error out-parameter the result must be the same. */
    REQUIRE(bzimage_parse(data, size, &info, NULL) == ret);
    return 0;
}
