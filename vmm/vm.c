/* SPDX-License-Identifier: Apache-2.0 */
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../lib/cleanup.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "layout.h"

struct required_cap {
    long cap;
    const char *name;
};

static const struct required_cap required_caps[] = {
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
};

static int check_extension(int fd, long cap)
{
    int ret = ioctl(fd, KVM_CHECK_EXTENSION, cap);
    return ret < 0 ? 0 : ret;
}

int vm_check_extension(const struct vm *vm, long cap)
{
    return check_extension(vm->vm_fd >= 0 ? vm->vm_fd : vm->sys_fd, cap);
}

const char *vm_kvm_backend(void)
{
    static const char *const modules[] = {"kvm_intel", "kvm_amd", "kvm_pvm"};

    for (size_t i = 0; i < ARRAY_SIZE(modules); i++) {
        char path[64];

        snprintf(path, sizeof(path), "/sys/module/%s", modules[i]);
        if (access(path, F_OK) == 0)
            return modules[i];
    }
    return "unknown";
}

bool vm_backend_runs_stock_guests(const struct vm *vm)
{
    return strcmp(vm->backend, "kvm_pvm") != 0;
}

static int open_device(const char *device, struct vr_error **err)
{
    int fd = open(device, O_RDWR | O_CLOEXEC);

    if (fd >= 0)
        return fd;
    switch (errno) {
    case ENOENT:
        return vr_error_new(err, ENOENT,
                            "%s does not exist: KVM is not available on this host (load "
                            "kvm_intel or kvm_amd, or enable virtualization in the firmware)",
                            device);
    case EACCES:
    case EPERM:
        return vr_error_new(err, errno,
                            "%s: permission denied (run as root or join the group that owns it, "
                            "usually 'kvm')",
                            device);
    default:
        return vr_error_set(err, errno, "open %s", device);
    }
}

int vm_open_kvm(struct vm *vm, const char *device, struct vr_error **err)
{
    cleanup_close int fd = -1;
    int version, max;

    memset(vm, 0, sizeof(*vm));
    vm->sys_fd = vm->vm_fd = -1;
    fd = open_device(device, err);
    if (fd < 0)
        return fd;
    version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION)
        return vr_error_new(err, ENOTSUP, "%s: KVM API version %d, vireo needs %d", device, version,
                            KVM_API_VERSION);
    for (size_t i = 0; i < ARRAY_SIZE(required_caps); i++) {
        if (!check_extension(fd, required_caps[i].cap))
            return vr_error_new(err, ENOTSUP, "%s: KVM lacks %s, which vireo needs", device,
                                required_caps[i].name);
    }
    vm->vcpu_mmap_size = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run))
        return vr_error_set(err, errno ? errno : EINVAL, "%s: KVM_GET_VCPU_MMAP_SIZE", device);
    max = check_extension(fd, KVM_CAP_MAX_VCPUS);
    if (max <= 0)
        max = check_extension(fd, KVM_CAP_NR_VCPUS);
    if (max <= 0)
        max = 4; /* the KVM API's documented minimum when the capability is absent */
    vm->max_vcpus = (unsigned int)max;
    vm->backend = vm_kvm_backend();
    vm->sys_fd = steal_fd(&fd);
    return 0;
}

static int add_memory_slots(struct vm *vm, const struct guest_memory *mem, struct vr_error **err)
{
    for (unsigned int i = 0; i < mem->nr_regions; i++) {
        const struct memory_region *r = &mem->regions[i];
        struct kvm_userspace_memory_region slot = {
            .slot = i,
            .guest_phys_addr = r->gpa,
            .memory_size = r->size,
            .userspace_addr = (uint64_t)(uintptr_t)(mem->host + r->offset),
            .flags = mem->log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        };

        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
            return vr_error_set(err, errno,
                                "KVM_SET_USER_MEMORY_REGION slot %u (%llu MiB at 0x%llx)", i,
                                (unsigned long long)(r->size >> 20), (unsigned long long)r->gpa);
    }
    return 0;
}

static int create_platform(struct vm *vm, struct vr_error **err)
{
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    uint64_t identity_map = LAYOUT_IDENTITY_MAP;

    /* Intel needs these pages for real-mode emulation; AMD ignores them. */
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_TSS) < 0)
        return vr_error_set(err, errno, "KVM_SET_TSS_ADDR");
    if (vm_check_extension(vm, KVM_CAP_SET_IDENTITY_MAP_ADDR) &&
        ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity_map) < 0)
        return vr_error_set(err, errno, "KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return vr_error_set(err, errno, "KVM_CREATE_IRQCHIP (PIC, IOAPIC and LAPIC)");
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return vr_error_set(err, errno, "KVM_CREATE_PIT2");
    return 0;
}

int vm_create(struct vm *vm, const struct guest_memory *mem, struct vr_error **err)
{
    int ret;

    vm->vm_fd = ioctl(vm->sys_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0)
        return vr_error_set(err, errno, "KVM_CREATE_VM");
    ret = add_memory_slots(vm, mem, err);
    if (ret < 0)
        return ret;
    return create_platform(vm, err);
}

int vm_supported_cpuid(const struct vm *vm, struct kvm_cpuid2 **out, struct vr_error **err)
{
    /* Ask with a growing buffer until KVM stops answering E2BIG (today's KVMs fit in 256). */
    for (unsigned int nent = 256; nent <= 4096; nent *= 2) {
        struct kvm_cpuid2 *cpuid =
            calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));

        if (cpuid == NULL)
            return vr_error_set(err, ENOMEM, "allocate CPUID table");
        cpuid->nent = nent;
        if (ioctl(vm->sys_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0) {
            *out = cpuid;
            return 0;
        }
        free(cpuid);
        if (errno != E2BIG)
            return vr_error_set(err, errno, "KVM_GET_SUPPORTED_CPUID");
    }
    return vr_error_new(err, E2BIG, "KVM_GET_SUPPORTED_CPUID: table too large");
}

int vm_msr_index_list(const struct vm *vm, uint32_t **out, uint32_t *count, struct vr_error **err)
{
    struct kvm_msr_list probe = {.nmsrs = 0};
    struct kvm_msr_list *list;

    if (ioctl(vm->sys_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
        return vr_error_set(err, errno, "KVM_GET_MSR_INDEX_LIST");
    list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
    if (list == NULL)
        return vr_error_set(err, ENOMEM, "allocate MSR list");
    list->nmsrs = probe.nmsrs;
    if (ioctl(vm->sys_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        free(list);
        return vr_error_set(err, errno, "KVM_GET_MSR_INDEX_LIST");
    }
    *count = list->nmsrs;
    /* Hand out just the indices: shift them to the start of the allocation. */
    memmove(list, list->indices, list->nmsrs * sizeof(uint32_t));
    *out = (uint32_t *)list;
    return 0;
}

int vm_set_irq_line(const struct vm *vm, uint32_t gsi, int level)
{
    struct kvm_irq_level irq = {.irq = gsi, .level = level};

    return ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0 ? -errno : 0;
}

int vm_ioeventfd(const struct vm *vm, uint64_t addr, uint32_t len, int fd, bool pio,
                 const uint64_t *datamatch, struct vr_error **err)
{
    struct kvm_ioeventfd io = {.addr = addr, .len = len, .fd = fd};

    if (pio)
        io.flags |= KVM_IOEVENTFD_FLAG_PIO;
    if (datamatch) {
        io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
        io.datamatch = *datamatch;
    }
    if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0)
        return vr_error_set(err, errno, "KVM_IOEVENTFD at %#llx", (unsigned long long)addr);
    return 0;
}

int vm_irqfd(const struct vm *vm, uint32_t gsi, int fd, struct vr_error **err)
{
    struct kvm_irqfd irqfd = {.fd = (uint32_t)fd, .gsi = gsi};

    if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
        return vr_error_set(err, errno, "KVM_IRQFD for GSI %u", gsi);
    return 0;
}

/*
 * KVM_SET_GSI_ROUTING replaces the whole table, so vireo keeps it: first
 * the routes KVM installs by default (GSIs 0-15 to both PICs and the
 * IOAPIC, 16-23 to the IOAPIC), then one MSI route per vector.
 */
static void add_route(struct vm *vm, const struct kvm_irq_routing_entry *e)
{
    vm->routes[vm->nr_routes++] = *e;
}

static void init_default_routes(struct vm *vm)
{
    for (uint32_t gsi = 0; gsi < VM_IOAPIC_PINS; gsi++) {
        if (gsi < 16) {
            add_route(vm, &(struct kvm_irq_routing_entry){
                              .gsi = gsi,
                              .type = KVM_IRQ_ROUTING_IRQCHIP,
                              .u.irqchip = {.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
                                                               : KVM_IRQCHIP_PIC_SLAVE,
                                            .pin = gsi % 8}});
        }
        add_route(vm, &(struct kvm_irq_routing_entry){
                          .gsi = gsi,
                          .type = KVM_IRQ_ROUTING_IRQCHIP,
                          .u.irqchip = {.irqchip = KVM_IRQCHIP_IOAPIC, .pin = gsi}});
    }
}

static int apply_routes(struct vm *vm)
{
    size_t size = sizeof(struct kvm_irq_routing) + vm->nr_routes * sizeof(vm->routes[0]);
    cleanup_free struct kvm_irq_routing *table = calloc(1, size);

    if (table == NULL)
        return -ENOMEM;
    table->nr = vm->nr_routes;
    memcpy(table->entries, vm->routes, vm->nr_routes * sizeof(vm->routes[0]));
    return ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, table) < 0 ? -errno : 0;
}

int vm_route_msi(struct vm *vm, uint32_t gsi, uint64_t address, uint32_t data)
{
    struct kvm_irq_routing_entry *e = NULL;
    int ret;

    if (gsi < VM_IOAPIC_PINS || gsi >= VM_IOAPIC_PINS + VM_MAX_MSI_ROUTES)
        return -EINVAL;
    pthread_mutex_lock(&vm->routes_lock);
    if (vm->nr_routes == 0)
        init_default_routes(vm);
    for (unsigned int i = 0; i < vm->nr_routes; i++)
        if (vm->routes[i].gsi == gsi)
            e = &vm->routes[i];
    if (e == NULL) {
        e = &vm->routes[vm->nr_routes++];
        *e = (struct kvm_irq_routing_entry){.gsi = gsi, .type = KVM_IRQ_ROUTING_MSI};
    }
    e->u.msi.address_lo = (uint32_t)address;
    e->u.msi.address_hi = (uint32_t)(address >> 32);
    e->u.msi.data = data;
    ret = apply_routes(vm);
    pthread_mutex_unlock(&vm->routes_lock);
    return ret;
}

void vm_close(struct vm *vm)
{
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->sys_fd >= 0)
        close(vm->sys_fd);
    vm->vm_fd = vm->sys_fd = -1;
}
