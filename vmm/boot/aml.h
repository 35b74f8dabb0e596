/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small ACPI Machine Language writer, enough for the DSDT objects vireo
 * declares: names, integers, strings, packages, scopes, devices and
 * resource templates. Encodings follow the ACPI 6.x specification, ch. 20.
 */
#ifndef VIREO_VMM_BOOT_AML_H
#define VIREO_VMM_BOOT_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
    uint8_t *buf;
    size_t len, cap;
    bool failed; /* an allocation failed; the buffer is unusable */
};

void aml_free(struct aml *a);
void aml_bytes(struct aml *a, const void *data, size_t len);
void aml_byte(struct aml *a, uint8_t b);

/* A name path such as "_S5_", "COM1" or "\\_SB_" (segments padded to 4 with '_'). */
void aml_name_string(struct aml *a, const char *path);
void aml_integer(struct aml *a, uint64_t value);
void aml_string(struct aml *a, const char *s);
/* EisaId("PNP0501") as the compressed 32-bit integer. */
void aml_eisa_id(struct aml *a, const char *id);

/* Name(path, <object written next>) */
void aml_name(struct aml *a, const char *path);

/*
 * Constructs with a PkgLength: open returns a mark to pass to close, which
 * inserts the length once the body is written. They nest.
 */
size_t aml_open_scope(struct aml *a, const char *path);
size_t aml_open_device(struct aml *a, const char *path);
size_t aml_open_package(struct aml *a, uint8_t nr_elements);
size_t aml_open_buffer(struct aml *a);
void aml_close(struct aml *a, size_t mark);

/* Resource descriptors, written inside a buffer opened with aml_open_buffer. */
void aml_res_io(struct aml *a, uint16_t base, uint8_t len);
void aml_res_irq(struct aml *a, uint8_t irq);
/* Memory32Fixed(ReadWrite, base, len) */
void aml_res_memory32_fixed(struct aml *a, uint32_t base, uint32_t len);
/* Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi } */
void aml_res_interrupt_edge(struct aml *a, uint32_t gsi);
/* Address space windows a host bridge produces (min to max, inclusive, no translation). */
void aml_res_bus_numbers(struct aml *a, uint16_t min, uint16_t max);
void aml_res_io_window(struct aml *a, uint16_t min, uint16_t max);
void aml_res_memory_window(struct aml *a, uint32_t min, uint32_t max);
void aml_res_end(struct aml *a);

#endif
