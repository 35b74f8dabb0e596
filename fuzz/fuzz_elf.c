/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: elf_pvh_parse() on arbitrary bytes. An accepted file
 * must describe 1..ELF_MAX_LOAD_SEGMENTS segments whose file bytes lie in
 * the input and whose memory ranges do not wrap, and a 32-bit entry point.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../lib/err.h"
#include "../vmm/boot/elf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_elf: invariant failed: %s\n", #cond);                            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct elf_pvh_info info;
    struct vr_error *err = NULL;
    int ret = elf_pvh_parse(data, size, &info, &err);

    if (ret == 0) {
        REQUIRE(err == NULL);
        REQUIRE(elf_detect(data, size));
        REQUIRE(info.nr_segments >= 1 && info.nr_segments <= ELF_MAX_LOAD_SEGMENTS);
        for (unsigned int i = 0; i < info.nr_segments; i++) {
            const struct elf_segment *s = &info.segments[i];

            REQUIRE(s->memsz > 0);
            REQUIRE(s->filesz <= s->memsz);
            REQUIRE(s->offset <= size && s->filesz <= size - s->offset);
            REQUIRE(s->paddr + s->memsz >= s->paddr);
            if (s->filesz) {
                /* The loader copies these bytes: ASan checks they are in the input. */
                volatile uint8_t sink = data[s->offset];
                sink = data[s->offset + s->filesz - 1];
                (void)sink;
            }
        }
    } else {
        REQUIRE(ret < 0);
        REQUIRE(err != NULL && err->msg != NULL && err->errnum == -ret);
    }
    vr_error_free(&err);
    REQUIRE(elf_pvh_parse(data, size, &info, NULL) == ret);
    return 0;
}
