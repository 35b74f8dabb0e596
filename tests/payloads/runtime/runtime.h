/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime of the tier-2 payloads written in freestanding C: the PVH
 * entry (32-bit protected mode, flat segments, no paging, interrupts off),
 * port and MMIO access, COM1 output with a small printf, PASS/FAIL lines
 * in the format tests/payloads/run reads, and power-off.
 *
 * A payload defines `void payload_main(void)`; when it returns, the
 * runtime prints the verdict line and powers the machine off.
 */
#ifndef VIREO_PAYLOAD_RUNTIME_H
#define VIREO_PAYLOAD_RUNTIME_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The payload's own code; the runtime calls it once. */
void payload_main(void);

/* --- port I/O and MMIO ----------------------------------------------------------------------- */

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
    __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;

    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint16_t inw(uint16_t port)
{
    uint16_t v;

    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;

    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* Plain MOVs, the only instructions a VMM has to decode for an MMIO exit. */
static inline uint8_t mmio_read8(uintptr_t addr)
{
    return *(volatile uint8_t *)addr;
}

static inline uint16_t mmio_read16(uintptr_t addr)
{
    return *(volatile uint16_t *)addr;
}

static inline uint32_t mmio_read32(uintptr_t addr)
{
    return *(volatile uint32_t *)addr;
}

static inline void mmio_write8(uintptr_t addr, uint8_t v)
{
    *(volatile uint8_t *)addr = v;
}

static inline void mmio_write16(uintptr_t addr, uint16_t v)
{
    *(volatile uint16_t *)addr = v;
}

static inline void mmio_write32(uintptr_t addr, uint32_t v)
{
    *(volatile uint32_t *)addr = v;
}

/* Keep the compiler from moving memory accesses across this point (x86 orders the rest). */
static inline void barrier(void)
{
    __asm__ volatile("" : : : "memory");
}

static inline void cpu_relax(void)
{
    __asm__ volatile("pause" : : : "memory");
}

static inline uint64_t rdtsc(void)
{
    uint64_t v;

    __asm__ volatile("rdtsc" : "=A"(v));
    return v;
}

/* --- memory ---------------------------------------------------------------------------------- */

/* The compiler may emit calls to these even in freestanding code. */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* Offset of the first byte where [a, a+n) and [b, b+n) differ, or n. */
size_t mismatch(const void *a, const void *b, size_t n);

/* --- output and checks ----------------------------------------------------------------------- */

void putchar_serial(char c);
/*
 * printf subset: %c %s %d %i %u %x %X %p with the '0', '-' and '#' flags
 * ('#' always adds 0x), a width, and the l, ll and z modifiers.
 */
void print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int format(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vformat(char *buf, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Print "PASS name" or "FAIL name"; returns ok. */
bool check(const char *name, bool ok);
/* The same, with the reason after the name on failure: "FAIL name: reason". */
bool checkf(const char *name, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
unsigned int checks_failed(void);

/* Print the verdict line ("payload: all checks passed" or "... some checks failed") and power off.
 */
__attribute__((noreturn)) void finish(void);
__attribute__((noreturn)) void poweroff(void);

/* --- the machine ----------------------------------------------------------------------------- */

/* The kernel command line from the PVH start info ("" if none). */
const char *boot_cmdline(void);
/* Whether the command line holds `word` as a whole, space-separated word. */
bool cmdline_has(const char *word);
/* End of the RAM that starts at address 0 (the guest's memory below the 32-bit hole). */
uint64_t ram_end_low(void);

/*
 * Bounded waiting: a deadline in TSC cycles (the rate from CPUID leaf
 * 0x16, or a 3 GHz guess), plus a cap on polls in case the TSC does not
 * move, so that a wait never hangs.
 */
struct deadline {
    uint64_t end;
    uint32_t polls;
};

void deadline_start(struct deadline *d, unsigned int ms);
bool deadline_passed(struct deadline *d);

#endif
