/* SPDX-License-Identifier: Apache-2.0 */
#include "vcpu.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../lib/cleanup.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "boot/x86.h"
#include "cpuid.h"

#define MSR_IA32_TSC          0x00000010
#define MSR_IA32_SYSENTER_CS  0x00000174
#define MSR_IA32_SYSENTER_ESP 0x00000175
#define MSR_IA32_SYSENTER_EIP 0x00000176
#define MSR_IA32_MISC_ENABLE  0x000001a0
#define MSR_MTRR_DEF_TYPE     0x000002ff
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102

#define MISC_ENABLE_FAST_STRING 0x1ull
#define MTRR_ENABLE             0x800ull
#define MTRR_TYPE_WRBACK        0x6ull

#define APIC_LVT0        0x350
#define APIC_LVT1        0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

struct reset_msr {
    uint32_t index;
    uint64_t value;
};

/* MSR values at reset that a kernel expects, beyond what KVM initialises. */
static const struct reset_msr reset_msrs[] = {
    {MSR_IA32_SYSENTER_CS, 0},
    {MSR_IA32_SYSENTER_ESP, 0},
    {MSR_IA32_SYSENTER_EIP, 0},
    {MSR_STAR, 0},
    {MSR_CSTAR, 0},
    {MSR_KERNEL_GS_BASE, 0},
    {MSR_SYSCALL_MASK, 0},
    {MSR_LSTAR, 0},
    {MSR_IA32_TSC, 0},
    {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING},
    {MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK},
};

int vcpu_create(struct vcpu *vcpu, const struct vm *vm, unsigned int index,
                const struct vcpu_env *env, volatile int *stopping, struct vr_error **err)
{
    memset(vcpu, 0, sizeof(*vcpu));
    vcpu->index = index;
    vcpu->env = env;
    vcpu->stopping = stopping;
    vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (vcpu->fd < 0)
        return vr_error_set(err, errno, "KVM_CREATE_VCPU %u", index);
    vcpu->run_size = (size_t)vm->vcpu_mmap_size;
    vcpu->run = mmap(NULL, vcpu->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
    if (vcpu->run == MAP_FAILED) {
        vcpu->run = NULL;
        return vr_error_set(err, errno, "map kvm_run of vCPU %u", index);
    }
    return 0;
}

static int set_cpuid(struct vcpu *vcpu, const struct vcpu_platform *p, struct vr_error **err)
{
    size_t size = sizeof(*p->cpuid) + p->cpuid->nent * sizeof(p->cpuid->entries[0]);
    cleanup_free struct kvm_cpuid2 *cpuid = malloc(size);
    struct cpuid_options opts = {
        .nr_vcpus = p->nr_vcpus,
        .threads_per_core = p->threads_per_core,
        .tsc_deadline = p->tsc_deadline,
    };

    if (cpuid == NULL)
        return vr_error_set(err, ENOMEM, "allocate CPUID");
    memcpy(cpuid, p->cpuid, size);
    cpuid_normalize(cpuid, &opts, vcpu->index);
    if (ioctl(vcpu->fd, KVM_SET_CPUID2, cpuid) < 0)
        return vr_error_set(err, errno, "KVM_SET_CPUID2");
    return 0;
}

static bool msr_listed(const struct vcpu_platform *p, uint32_t index)
{
    for (uint32_t i = 0; i < p->nr_msr_indices; i++) {
        if (p->msr_indices[i] == index)
            return true;
    }
    return false;
}

static int set_msrs(struct vcpu *vcpu, const struct vcpu_platform *p, struct vr_error **err)
{
    cleanup_free struct kvm_msrs *msrs =
        calloc(1, sizeof(*msrs) + ARRAY_SIZE(reset_msrs) * sizeof(struct kvm_msr_entry));
    int ret;

    if (msrs == NULL)
        return vr_error_set(err, ENOMEM, "allocate MSR list");
    /* Only MSRs this KVM saves and restores; others it would reject. */
    for (size_t i = 0; i < ARRAY_SIZE(reset_msrs); i++) {
        if (!msr_listed(p, reset_msrs[i].index))
            continue;
        msrs->entries[msrs->nmsrs].index = reset_msrs[i].index;
        msrs->entries[msrs->nmsrs].data = reset_msrs[i].value;
        msrs->nmsrs++;
    }
    ret = ioctl(vcpu->fd, KVM_SET_MSRS, msrs);
    if (ret < 0)
        return vr_error_set(err, errno, "KVM_SET_MSRS");
    if ((uint32_t)ret != msrs->nmsrs)
        return vr_error_new(err, EINVAL, "KVM_SET_MSRS rejected MSR 0x%x",
                            msrs->entries[ret].index);
    return 0;
}

static int set_fpu(struct vcpu *vcpu, struct vr_error **err)
{
    struct kvm_fpu fpu = {
        .fcw = 0x37f,    /* x87 reset control word: all exceptions masked */
        .mxcsr = 0x1f80, /* SSE reset value: all exceptions masked */
    };

    if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu) < 0)
        return vr_error_set(err, errno, "KVM_SET_FPU");
    return 0;
}

static void set_lvt_mode(struct kvm_lapic_state *lapic, unsigned int reg, uint32_t mode)
{
    uint32_t value;

    memcpy(&value, &lapic->regs[reg], 4);
    value = (value & ~0x700u) | (mode << 8);
    memcpy(&lapic->regs[reg], &value, 4);
}

/* Wire LINT0 to the 8259 (ExtINT) and LINT1 to NMI, as firmware does on a PC. */
static int set_lapic(struct vcpu *vcpu, struct vr_error **err)
{
    struct kvm_lapic_state lapic;

    if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic) < 0)
        return vr_error_set(err, errno, "KVM_GET_LAPIC");
    set_lvt_mode(&lapic, APIC_LVT0, APIC_MODE_EXTINT);
    set_lvt_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
    if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic) < 0)
        return vr_error_set(err, errno, "KVM_SET_LAPIC");
    return 0;
}

int vcpu_configure(struct vcpu *vcpu, const struct vcpu_platform *platform, struct vr_error **err)
{
    int ret = set_cpuid(vcpu, platform, err);

    if (ret == 0)
        ret = set_msrs(vcpu, platform, err);
    if (ret == 0)
        ret = set_fpu(vcpu, err);
    if (ret == 0)
        ret = set_lapic(vcpu, err);
    return ret < 0 ? vr_error_wrap(err, "vCPU %u", vcpu->index) : 0;
}

int vcpu_set_boot_state(struct vcpu *vcpu, const struct boot_entry *entry, struct vr_error **err)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;

    /* Start from KVM's reset state so fields vireo does not set keep sane values. */
    if (ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
        return vr_error_set(err, errno, "KVM_GET_SREGS");
    x86_boot_registers(entry, &regs, &sregs);
    if (ioctl(vcpu->fd, KVM_SET_SREGS, &sregs) < 0)
        return vr_error_set(err, errno, "KVM_SET_SREGS");
    if (ioctl(vcpu->fd, KVM_SET_REGS, &regs) < 0)
        return vr_error_set(err, errno, "KVM_SET_REGS");
    return 0;
}

/* --- the run loop -------------------------------------------------------------------------- */

static void handle_pio(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    uint32_t size = run->io.size;

    /* `count` > 1 is a REP INS/OUTS: KVM hands over all elements at once. */
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        if (run->io.direction == KVM_EXIT_IO_IN) {
            if (!bus_read(vcpu->env->pio, run->io.port, data, size))
                memset(data, 0xff, size); /* nothing decodes the port: the bus floats high */
        } else if (!bus_write(vcpu->env->pio, run->io.port, data, size)) {
            log_ratelimited(LOG_DEBUG, "vCPU %u: write to unclaimed port 0x%x", vcpu->index,
                            run->io.port);
        }
    }
}

static void handle_mmio(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;
    uint32_t len = run->mmio.len;

    if (len > sizeof(run->mmio.data))
        len = sizeof(run->mmio.data);
    if (run->mmio.is_write) {
        if (!bus_write(vcpu->env->mmio, run->mmio.phys_addr, run->mmio.data, len))
            log_ratelimited(LOG_DEBUG, "vCPU %u: write to unclaimed MMIO 0x%llx", vcpu->index,
                            (unsigned long long)run->mmio.phys_addr);
    } else if (!bus_read(vcpu->env->mmio, run->mmio.phys_addr, run->mmio.data, len)) {
        memset(run->mmio.data, 0xff, len);
    }
}

static char *fatal_report(struct vcpu *vcpu, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "reason" + register dump, as one string for the machine to print after stopping. */
static char *fatal_report(struct vcpu *vcpu, const char *fmt, ...)
{
    char *reason = NULL, *state = vcpu_state_report(vcpu), *report = NULL;
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(&reason, fmt, ap) < 0)
        reason = NULL;
    va_end(ap);
    if (asprintf(&report, "vCPU %u: %s\n%s", vcpu->index, reason ? reason : "fatal error",
                 state ? state : "(registers unavailable)\n") < 0)
        report = NULL;
    free(reason);
    free(state);
    return report;
}

static const char *internal_error_name(uint32_t suberror)
{
    switch (suberror) {
    case KVM_INTERNAL_ERROR_EMULATION:
        return "KVM could not emulate an instruction";
    case KVM_INTERNAL_ERROR_SIMUL_EX:
        return "exception while delivering an exception";
    case KVM_INTERNAL_ERROR_DELIVERY_EV:
        return "event delivery failed";
    default:
        return "KVM internal error";
    }
}

/*
 * KVM on AMD re-initialises a vCPU on a SHUTDOWN intercept (the VMCB is
 * undefined afterwards), so its registers then show the reset vector
 * instead of the state at the fault. Say so rather than mislead.
 */
static bool vcpu_in_reset_state(struct vcpu *vcpu)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;

    if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &sregs) < 0)
        return false;
    return regs.rip == 0xfff0 && sregs.cs.selector == 0xf000 && sregs.cs.base == 0xffff0000;
}

/* Returns a report when the exit ends the VM, NULL to keep running. */
static char *handle_exit(struct vcpu *vcpu)
{
    struct kvm_run *run = vcpu->run;

    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_pio(vcpu);
        return NULL;
    case KVM_EXIT_MMIO:
        handle_mmio(vcpu);
        return NULL;
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_HLT:
        return NULL;
    case KVM_EXIT_SHUTDOWN:
        if (vcpu_in_reset_state(vcpu))
            return fatal_report(vcpu, "guest triple fault (KVM_EXIT_SHUTDOWN); KVM re-initialised "
                                      "the vCPU when it shut down (as it does on AMD), so the "
                                      "registers below are its reset state, not the state at "
                                      "the fault");
        return fatal_report(vcpu, "guest triple fault (KVM_EXIT_SHUTDOWN)");
    case KVM_EXIT_FAIL_ENTRY:
        return fatal_report(vcpu, "KVM could not enter the guest (hardware entry failure 0x%llx)",
                            (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
    case KVM_EXIT_INTERNAL_ERROR:
        return fatal_report(vcpu, "%s (KVM_EXIT_INTERNAL_ERROR, suberror %u)",
                            internal_error_name(run->internal.suberror), run->internal.suberror);
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
        case KVM_SYSTEM_EVENT_RESET:
            vcpu->env->system_event(vcpu->env->ctx,
                                    run->system_event.type == KVM_SYSTEM_EVENT_RESET);
            return NULL;
        default:
            return fatal_report(vcpu, "guest crashed (KVM system event %u)",
                                run->system_event.type);
        }
    default:
        return fatal_report(vcpu, "unexpected KVM exit reason %u", run->exit_reason);
    }
}

static const char *exit_reason_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_IO:
        return "io";
    case KVM_EXIT_MMIO:
        return "mmio";
    case KVM_EXIT_HLT:
        return "hlt";
    case KVM_EXIT_SHUTDOWN:
        return "shutdown";
    case KVM_EXIT_INTR:
        return "intr";
    case KVM_EXIT_SYSTEM_EVENT:
        return "system event";
    case KVM_EXIT_INTERNAL_ERROR:
        return "internal error";
    default:
        return "other";
    }
}

/* Only this vCPU's thread writes its counters: a relaxed load and store, no locked add. */
static void count(_Atomic uint64_t *counter)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void count_exit(struct vcpu *vcpu)
{
    struct vcpu_exit_counters *c = &vcpu->exit_counters;
    const struct kvm_run *run = vcpu->run;

    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        count(run->io.direction == KVM_EXIT_IO_IN ? &c->io_in : &c->io_out);
        break;
    case KVM_EXIT_MMIO:
        count(run->mmio.is_write ? &c->mmio_write : &c->mmio_read);
        break;
    case KVM_EXIT_HLT:
        count(&c->hlt);
        break;
    case KVM_EXIT_INTR:
        count(&c->intr);
        break;
    case KVM_EXIT_IRQ_WINDOW_OPEN:
        count(&c->irq_window_open);
        break;
    case KVM_EXIT_SHUTDOWN:
        count(&c->shutdown);
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        count(&c->system_event);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        count(&c->fail_entry);
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        count(&c->internal_error);
        break;
    default:
        count(&c->other);
        break;
    }
}

void vcpu_exit_counts(const struct vcpu *vcpu, struct vcpu_exit_counts *out)
{
    const struct vcpu_exit_counters *c = &vcpu->exit_counters;

#define VCPU_COUNT_LOAD(field) out->field = atomic_load_explicit(&c->field, memory_order_relaxed)
    VCPU_COUNT_LOAD(io_in);
    VCPU_COUNT_LOAD(io_out);
    VCPU_COUNT_LOAD(mmio_read);
    VCPU_COUNT_LOAD(mmio_write);
    VCPU_COUNT_LOAD(hlt);
    VCPU_COUNT_LOAD(intr);
    VCPU_COUNT_LOAD(irq_window_open);
    VCPU_COUNT_LOAD(shutdown);
    VCPU_COUNT_LOAD(system_event);
    VCPU_COUNT_LOAD(fail_entry);
    VCPU_COUNT_LOAD(internal_error);
    VCPU_COUNT_LOAD(other);
    VCPU_COUNT_LOAD(failures);
#undef VCPU_COUNT_LOAD
}

/* On request (SIGUSR2): where this vCPU is, as one write so vCPUs do not interleave. */
static void print_report(struct vcpu *vcpu)
{
    char *state = vcpu_state_report(vcpu);

    fprintf(stderr, "vireo-vmm: vCPU %u (SIGUSR2): %" PRIu64 " exits, the last %s (%u)\n%s",
            vcpu->index, vcpu->exits, exit_reason_name(vcpu->last_exit), vcpu->last_exit,
            state ? state : "  (registers unavailable)\n");
    free(state);
}

/*
 * Wait at the gate while the VM is paused. Returns true when the machine
 * is stopping instead. On the way out the guest is told, through kvmclock,
 * that it was stopped, so its soft-lockup and RCU-stall watchdogs do not
 * count the pause as a hang (KVM_KVMCLOCK_CTRL; EINVAL: the guest has no
 * kvmclock, nothing to tell).
 */
static bool park(struct vcpu *vcpu)
{
    struct vcpu_gate *gate = vcpu->env->gate;
    bool was_parked = false;

    pthread_mutex_lock(&gate->lock);
    while (gate->pause && !*vcpu->stopping) {
        if (!was_parked) {
            was_parked = true;
            gate->parked++;
            pthread_cond_broadcast(&gate->changed);
        }
        pthread_cond_wait(&gate->changed, &gate->lock);
    }
    if (was_parked)
        gate->parked--;
    pthread_mutex_unlock(&gate->lock);
    if (was_parked && !*vcpu->stopping && ioctl(vcpu->fd, KVM_KVMCLOCK_CTRL, 0) < 0 &&
        errno != EINVAL)
        log_ratelimited(LOG_WARN, "vCPU %u: KVM_KVMCLOCK_CTRL: %s", vcpu->index, strerror(errno));
    return *vcpu->stopping != 0;
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *vcpu = arg;
    sigset_t kick;
    char *report = NULL;

    sigemptyset(&kick);
    sigaddset(&kick, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &kick, NULL);

    while (!*vcpu->stopping) {
        int ret;

        if (vcpu->env->gate && atomic_load(&vcpu->env->gate->pause) && park(vcpu))
            break;
        ret = ioctl(vcpu->fd, KVM_RUN, 0);

        if (atomic_exchange(&vcpu->report_requested, false))
            print_report(vcpu);
        if (ret < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                vcpu->run->immediate_exit = 0;
                continue;
            }
            report = fatal_report(vcpu, "KVM_RUN failed: %s", strerror(errno));
        } else {
            vcpu->exits++;
            vcpu->last_exit = vcpu->run->exit_reason;
            count_exit(vcpu);
            report = handle_exit(vcpu);
        }
        if (report) {
            count(&vcpu->exit_counters.failures);
            vcpu->env->fatal(vcpu->env->ctx, report);
            break;
        }
    }
    return NULL;
}

static void kick_handler(int signo)
{
    (void)signo; /* its only job is to interrupt KVM_RUN */
}

int vcpu_install_kick_handler(struct vr_error **err)
{
    struct sigaction sa = {.sa_handler = kick_handler};

    sigemptyset(&sa.sa_mask);
    if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
        return vr_error_set(err, errno, "install vCPU kick handler");
    return 0;
}

int vcpu_start(struct vcpu *vcpu, struct vr_error **err)
{
    pthread_attr_t attr;
    char name[16];
    int ret;

    pthread_attr_init(&attr);
    /* The run loop is shallow; a small stack keeps the VMM's footprint down. */
    pthread_attr_setstacksize(&attr, 256 * 1024);
    ret = pthread_create(&vcpu->thread, &attr, vcpu_thread, vcpu);
    pthread_attr_destroy(&attr);
    if (ret != 0)
        return vr_error_set(err, ret, "start vCPU %u thread", vcpu->index);
    vcpu->thread_started = true;
    snprintf(name, sizeof(name), "vcpu%u", vcpu->index);
    pthread_setname_np(vcpu->thread, name);
    return 0;
}

void vcpu_kick(struct vcpu *vcpu)
{
    if (vcpu->run)
        vcpu->run->immediate_exit = 1;
    if (vcpu->thread_started)
        pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

void vcpu_request_report(struct vcpu *vcpu)
{
    atomic_store(&vcpu->report_requested, true);
    vcpu_kick(vcpu);
}

void vcpu_join(struct vcpu *vcpu)
{
    if (vcpu->thread_started)
        pthread_join(vcpu->thread, NULL);
    vcpu->thread_started = false;
}

void vcpu_destroy(struct vcpu *vcpu)
{
    if (vcpu->run)
        munmap(vcpu->run, vcpu->run_size);
    if (vcpu->fd >= 0)
        close(vcpu->fd);
    vcpu->run = NULL;
    vcpu->fd = -1;
}

/* --- state report ------------------------------------------------------------------------- */

struct text {
    char *buf;
    size_t len;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
    char *line = NULL, *grown;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    grown = realloc(t->buf, t->len + (size_t)n + 1);
    if (grown) {
        memcpy(grown + t->len, line, (size_t)n + 1);
        t->buf = grown;
        t->len += (size_t)n;
    }
    free(line);
}

static void add_segment(struct text *t, const char *name, const struct kvm_segment *s)
{
    text_add(t, "  %-3s sel=%04x base=%016llx limit=%08x type=%x dpl=%u p=%u db=%u l=%u g=%u\n",
             name, s->selector, (unsigned long long)s->base, s->limit, s->type, s->dpl, s->present,
             s->db, s->l, s->g);
}

static void add_code_bytes(struct text *t, struct vcpu *vcpu, const struct kvm_regs *regs,
                           const struct kvm_sregs *sregs)
{
    struct kvm_translation tr = {.linear_address = sregs->cs.base + regs->rip};
    const uint8_t *code;

    if (ioctl(vcpu->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid) {
        text_add(t, "  code: rip 0x%llx is not mapped\n", (unsigned long long)tr.linear_address);
        return;
    }
    code = gpa_to_hva(vcpu->env->mem, tr.physical_address, 16);
    if (code == NULL) {
        text_add(t, "  code: rip maps to 0x%llx, outside guest RAM\n",
                 (unsigned long long)tr.physical_address);
        return;
    }
    text_add(t, "  code at 0x%llx (guest physical 0x%llx):", (unsigned long long)tr.linear_address,
             (unsigned long long)tr.physical_address);
    for (int i = 0; i < 16; i++)
        text_add(t, " %02x", code[i]);
    text_add(t, "\n");
}

char *vcpu_state_report(struct vcpu *vcpu)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    struct text t = {0};

    if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0)
        return NULL;
    text_add(&t, "  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n", r.rax, r.rbx, r.rcx, r.rdx);
    text_add(&t, "  rsi=%016llx rdi=%016llx rsp=%016llx rbp=%016llx\n", r.rsi, r.rdi, r.rsp, r.rbp);
    text_add(&t, "  r8 =%016llx r9 =%016llx r10=%016llx r11=%016llx\n", r.r8, r.r9, r.r10, r.r11);
    text_add(&t, "  r12=%016llx r13=%016llx r14=%016llx r15=%016llx\n", r.r12, r.r13, r.r14, r.r15);
    text_add(&t, "  rip=%016llx rflags=%016llx\n", r.rip, r.rflags);
    text_add(&t, "  cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%016llx\n", s.cr0, s.cr2,
             s.cr3, s.cr4, s.efer);
    add_segment(&t, "cs", &s.cs);
    add_segment(&t, "ds", &s.ds);
    add_segment(&t, "ss", &s.ss);
    add_segment(&t, "tr", &s.tr);
    text_add(&t, "  gdt base=%016llx limit=%04x  idt base=%016llx limit=%04x\n",
             (unsigned long long)s.gdt.base, s.gdt.limit, (unsigned long long)s.idt.base,
             s.idt.limit);
    add_code_bytes(&t, vcpu, &r, &s);
    return t.buf;
}
