/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest RAM: one private anonymous mapping in the VMM, exposed to KVM as up
 * to two regions around the 32-bit device hole. Anonymous memory gets
 * transparent huge pages under the host's default THP setting ("madvise"),
 * which shared memory (memfd, shmem) does not, and gives pages back with
 * MADV_DONTNEED.
 */
#ifndef VIREO_VMM_MEMORY_H
#define VIREO_VMM_MEMORY_H

#include <stdbool.h>
#include <stdint.h>

#include "../lib/err.h"

struct memory_region {
    uint64_t gpa;    /* guest physical start */
    uint64_t size;   /* bytes */
    uint64_t offset; /* offset in the host mapping */
};

struct guest_memory {
    bool hugetlb;   /* backed by 2 MiB hugetlbfs pages */
    bool log_dirty; /* KVM logs the pages the guest writes (KVM_MEM_LOG_DIRTY_PAGES) */
    uint8_t *host;  /* mapping of all guest RAM */
    uint64_t size;  /* total RAM in bytes */
    struct memory_region regions[2];
    unsigned int nr_regions;
};

/* The unit guest_memory_zero() gives back to the host. */
#define GUEST_PAGE_SIZE 4096

/* How guest RAM is backed (flags for guest_memory_create). */
#define GUEST_RAM_THP 0x1 /* ask for transparent huge pages */
#define GUEST_RAM_HUGETLB                                                                          \
    0x2 /* 2 MiB hugetlbfs pages, reserved up front: size must be a multiple */

/*
 * Allocate `size` bytes of guest RAM. With GUEST_RAM_HUGETLB the host's
 * pool of 2 MiB pages must hold all of it (/proc/sys/vm/nr_hugepages):
 * the pages are reserved now, so the guest can never fault on a missing one.
 */
int guest_memory_create(struct guest_memory *mem, uint64_t size, unsigned int flags,
                        struct vr_error **err);
void guest_memory_destroy(struct guest_memory *mem);

/*
 * Host pointer for [gpa, gpa+len) if the whole range is RAM within one
 * region, else NULL. Every guest-supplied address goes through this.
 */
void *gpa_to_hva(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/* Copy into guest RAM; fails with a message if the range is not RAM. */
int guest_memory_write(const struct guest_memory *mem, uint64_t gpa, const void *src, uint64_t len,
                       struct vr_error **err);

/*
 * Copy `len` bytes of file `fd` at `offset` into guest RAM at `gpa`
 * (pread straight into the mapping, no bounce buffer).
 */
int guest_memory_load(const struct guest_memory *mem, uint64_t gpa, int fd, uint64_t offset,
                      uint64_t len, const char *name, struct vr_error **err);

/* Make [gpa, gpa+len) read as zeros, releasing any pages behind it. */
int guest_memory_zero(const struct guest_memory *mem, uint64_t gpa, uint64_t len,
                      struct vr_error **err);

/* End of the RAM region that starts at 0 (the guest's "low" memory). */
uint64_t guest_memory_low_end(const struct guest_memory *mem);

#endif
