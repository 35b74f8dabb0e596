/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime.h"

#define COM1               0x3f8
#define COM1_LSR           (COM1 + 5)
#define LSR_THRE           0x20
#define ACPI_SLEEP_CONTROL 0x600
#define SLP_S5_EN          0x34 /* SLP_TYP 5 << 2 | SLP_EN */

#define PVH_START_MAGIC 0x336ec578
#define E820_RAM        1
#define FOUR_GIB        0x100000000ull

/* Filled in by _start from %ebx: the loader's struct hvm_start_info. */
uint32_t start_info_addr;

/*
 * The PVH entry: the loader jumps to _start in 32-bit protected mode with
 * %ebx pointing at the start info. The note names _start for the loader
 * (XEN_ELFNOTE_PHYS32_ENTRY, type 18, owner "Xen").
 */
__asm__(".pushsection .text.entry, \"ax\"\n"
        "    .code32\n"
        "    .globl _start\n"
        "_start:\n"
        "    cld\n"
        "    mov $payload_stack_top, %esp\n"
        "    mov %ebx, start_info_addr\n"
        "    call runtime_main\n"
        "1:  hlt\n"
        "    jmp 1b\n"
        ".popsection\n"
        ".pushsection .bss\n"
        "    .balign 16\n"
        "    .space 16384\n"
        "payload_stack_top:\n"
        ".popsection\n"
        ".pushsection .note.pvh, \"a\"\n"
        "    .balign 4\n"
        "    .long 4, 4, 18\n"
        "    .asciz \"Xen\"\n"
        "    .long _start\n"
        ".popsection\n");

void runtime_main(void);

void runtime_main(void)
{
    payload_main();
    finish();
}

/* --- memory ---------------------------------------------------------------------------------- */

/*
 * String instructions, a dword at a time: where KVM emulates the payload
 * (kvm_pvm runs unpaged code that way), each iteration costs about a
 * microsecond, and a loop of plain instructions several times that. They
 * also keep the compiler from turning these loops into calls to themselves.
 */
void *memset(void *dst, int c, size_t n)
{
    uint32_t word = (uint8_t)c * 0x01010101u;
    size_t words = n / 4, rest = n % 4;
    void *d = dst;

    __asm__ volatile("rep stosl" : "+D"(d), "+c"(words) : "a"(word) : "memory");
    __asm__ volatile("rep stosb" : "+D"(d), "+c"(rest) : "a"(word) : "memory");
    return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
    size_t words = n / 4, rest = n % 4;
    void *d = dst;

    __asm__ volatile("rep movsl" : "+D"(d), "+S"(src), "+c"(words) : : "memory");
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(rest) : : "memory");
    return dst;
}

size_t mismatch(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    const void *p = a, *q = b;
    size_t words = n / 4, from;

    /* Stops one dword past the first difference, or at the end of the whole dwords. */
    if (words)
        __asm__ volatile("repe cmpsl" : "+S"(p), "+D"(q), "+c"(words) : : "memory", "cc");
    from = (size_t)((const uint8_t *)p - (const uint8_t *)a);
    from = from >= 4 ? from - 4 : 0;
    for (size_t i = from; i < n; i++)
        if (x[i] != y[i])
            return i;
    return n;
}

int memcmp(const void *a, const void *b, size_t n)
{
    size_t i = mismatch(a, b, n);

    if (i == n)
        return 0;
    return ((const uint8_t *)a)[i] < ((const uint8_t *)b)[i] ? -1 : 1;
}

size_t strlen(const char *s)
{
    size_t n = 0;

    while (s[n])
        n++;
    return n;
}

/* --- formatting ------------------------------------------------------------------------------ */

/* Where formatted text goes: a buffer (always NUL-terminated), or COM1 when buf is NULL. */
struct sink {
    char *buf;
    size_t size, len;
};

static void emit(struct sink *s, char c)
{
    if (s->buf == NULL)
        putchar_serial(c);
    else if (s->len + 1 < s->size)
        s->buf[s->len] = c;
    s->len++;
}

/* n /= 10, returning the remainder, with two 32-bit DIVs (no libgcc in a freestanding payload). */
static uint32_t divmod10(uint64_t *n)
{
    uint32_t hi = (uint32_t)(*n >> 32), lo = (uint32_t)*n, qhi = hi / 10, qlo, rem = hi % 10;

    __asm__("divl %4" : "=a"(qlo), "=d"(rem) : "a"(lo), "d"(rem), "r"(10u));
    *n = (uint64_t)qhi << 32 | qlo;
    return rem;
}

struct spec {
    bool zero_pad, left, alt;
    unsigned int width;
};

static void emit_padded(struct sink *s, const struct spec *sp, const char *text, size_t len)
{
    size_t pad = sp->width > len ? sp->width - len : 0;

    if (!sp->left)
        for (; pad; pad--)
            emit(s, sp->zero_pad ? '0' : ' ');
    for (size_t i = 0; i < len; i++)
        emit(s, text[i]);
    for (; pad; pad--)
        emit(s, ' ');
}

static void emit_number(struct sink *s, const struct spec *sp, uint64_t v, bool negative,
                        unsigned int base, bool upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    size_t n = sizeof(tmp);

    do {
        if (base == 16) {
            tmp[--n] = digits[v & 15];
            v >>= 4;
        } else {
            tmp[--n] = digits[divmod10(&v)];
        }
    } while (v);
    if (sp->alt && base == 16) {
        tmp[--n] = 'x';
        tmp[--n] = '0';
    }
    if (negative) {
        if (sp->zero_pad && sp->width) {
            struct spec rest = *sp;

            emit(s, '-');
            rest.width = sp->width - 1;
            emit_padded(s, &rest, tmp + n, sizeof(tmp) - n);
            return;
        }
        tmp[--n] = '-';
    }
    emit_padded(s, sp, tmp + n, sizeof(tmp) - n);
}

static const char *parse_spec(const char *f, struct spec *sp, unsigned int *longs)
{
    *sp = (struct spec){0};
    for (;; f++) {
        if (*f == '0')
            sp->zero_pad = true;
        else if (*f == '#')
            sp->alt = true;
        else if (*f == '-')
            sp->left = true;
        else
            break;
    }
    while (*f >= '0' && *f <= '9')
        sp->width = sp->width * 10 + (unsigned int)(*f++ - '0');
    *longs = 0;
    while (*f == 'l' || *f == 'z')
        *longs += *f++ == 'l';
    return f;
}

/* One conversion; `*f` is the conversion character. */
static void convert(struct sink *s, char conv, const struct spec *sp, unsigned int longs,
                    va_list *ap)
{
    uint64_t u;
    int64_t i;
    char c;

    switch (conv) {
    case 'c':
        c = (char)va_arg(*ap, int);
        emit_padded(s, sp, &c, 1);
        break;
    case 's': {
        const char *str = va_arg(*ap, const char *);

        if (str == NULL)
            str = "(null)";
        emit_padded(s, sp, str, strlen(str));
        break;
    }
    case 'd':
    case 'i':
        i = longs >= 2 ? va_arg(*ap, long long) : va_arg(*ap, int);
        u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
        emit_number(s, sp, u, i < 0, 10, false);
        break;
    case 'u':
    case 'x':
    case 'X':
        u = longs >= 2 ? va_arg(*ap, unsigned long long) : va_arg(*ap, unsigned int);
        emit_number(s, sp, u, false, conv == 'u' ? 10 : 16, conv == 'X');
        break;
    case 'p':
        emit(s, '0');
        emit(s, 'x');
        emit_number(s, sp, (uintptr_t)va_arg(*ap, void *), false, 16, false);
        break;
    default:
        emit(s, '%');
        emit(s, conv);
    }
}

static void format_to(struct sink *s, const char *fmt, va_list ap)
{
    va_list args;

    va_copy(args, ap);
    for (const char *f = fmt; *f; f++) {
        struct spec sp;
        unsigned int longs;

        if (*f != '%') {
            emit(s, *f);
            continue;
        }
        if (f[1] == '%') {
            emit(s, '%');
            f++;
            continue;
        }
        f = parse_spec(f + 1, &sp, &longs);
        if (*f == '\0')
            break;
        convert(s, *f, &sp, longs, &args);
    }
    va_end(args);
    if (s->buf && s->size)
        s->buf[s->len < s->size ? s->len : s->size - 1] = '\0';
}

int vformat(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct sink s = {.buf = buf, .size = size};

    format_to(&s, fmt, ap);
    return (int)s.len;
}

int format(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vformat(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

void putchar_serial(char c)
{
    if (c == '\n')
        putchar_serial('\r');
    while (!(inb(COM1_LSR) & LSR_THRE))
        ;
    outb(COM1, (uint8_t)c);
}

void print(const char *fmt, ...)
{
    struct sink s = {0};
    va_list ap;

    va_start(ap, fmt);
    format_to(&s, fmt, ap);
    va_end(ap);
}

/* --- checks and the end ---------------------------------------------------------------------- */

static unsigned int failed;

bool check(const char *name, bool ok)
{
    print("%s %s\n", ok ? "PASS" : "FAIL", name);
    if (!ok)
        failed++;
    return ok;
}

bool checkf(const char *name, bool ok, const char *fmt, ...)
{
    char why[160];
    va_list ap;

    if (ok)
        return check(name, true);
    va_start(ap, fmt);
    vformat(why, sizeof(why), fmt, ap);
    va_end(ap);
    print("FAIL %s: %s\n", name, why);
    failed++;
    return false;
}

unsigned int checks_failed(void)
{
    return failed;
}

void poweroff(void)
{
    outb(ACPI_SLEEP_CONTROL, SLP_S5_EN);
    for (;;)
        __asm__ volatile("hlt");
}

void finish(void)
{
    print(failed ? "payload: some checks failed\n" : "payload: all checks passed\n");
    poweroff();
}

/* --- the machine ----------------------------------------------------------------------------- */

/* struct hvm_start_info, version 1, as the PVH boot protocol defines it. */
struct start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};

struct memmap_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};

static const struct start_info *start_info(void)
{
    const struct start_info *si = (const struct start_info *)start_info_addr;

    return si && si->magic == PVH_START_MAGIC ? si : NULL;
}

const char *boot_cmdline(void)
{
    const struct start_info *si = start_info();

    if (si == NULL || si->cmdline_paddr == 0 || si->cmdline_paddr >= FOUR_GIB)
        return "";
    return (const char *)(uintptr_t)si->cmdline_paddr;
}

bool cmdline_has(const char *word)
{
    const char *p = boot_cmdline();
    size_t n = strlen(word);

    while (*p) {
        size_t len = 0;

        while (*p == ' ')
            p++;
        while (p[len] && p[len] != ' ')
            len++;
        if (len == n && memcmp(p, word, n) == 0)
            return true;
        p += len;
    }
    return false;
}

uint64_t ram_end_low(void)
{
    const struct start_info *si = start_info();
    const struct memmap_entry *e;
    uint64_t end = 0;

    if (si == NULL || si->version < 1 || si->memmap_paddr >= FOUR_GIB)
        return 0;
    e = (const struct memmap_entry *)(uintptr_t)si->memmap_paddr;
    for (uint32_t i = 0; i < si->memmap_entries; i++) {
        uint64_t top = e[i].addr + e[i].size;

        if (e[i].type == E820_RAM && e[i].addr < FOUR_GIB && top <= FOUR_GIB && top > end)
            end = top;
    }
    return end;
}

/* --- time ------------------------------------------------------------------------------------ */

#define DEFAULT_TSC_MHZ 3000
#define MAX_POLLS       20000000u

static uint32_t tsc_mhz(void)
{
    uint32_t max_leaf, eax, ebx, ecx, edx;

    __asm__ volatile("cpuid" : "=a"(max_leaf), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0), "c"(0));
    if (max_leaf < 0x16)
        return DEFAULT_TSC_MHZ;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0x16), "c"(0));
    return eax & 0xffff ? eax & 0xffff : DEFAULT_TSC_MHZ;
}

void deadline_start(struct deadline *d, unsigned int ms)
{
    static uint32_t mhz;

    if (mhz == 0)
        mhz = tsc_mhz();
    d->end = rdtsc() + (uint64_t)ms * 1000 * mhz;
    d->polls = 0;
}

bool deadline_passed(struct deadline *d)
{
    cpu_relax();
    return ++d->polls > MAX_POLLS || rdtsc() > d->end;
}
