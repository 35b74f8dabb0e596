/* SPDX-License-Identifier: Apache-2.0 */
#include "bzimage.h"

#include <errno.h>
#include <string.h>

#include "../../lib/util.h"

bool bzimage_detect(const uint8_t *buf, size_t len)
{
    return len >= BP_HEADER + 4 && get_le16(buf + BP_BOOT_FLAG) == 0xaa55 &&
           memcmp(buf + BP_HEADER, "HdrS", 4) == 0;
}

int bzimage_parse(const uint8_t *buf, size_t len, struct bzimage_info *info, struct vr_error **err)
{
    uint64_t setup_sects;

    memset(info, 0, sizeof(*info));
    if (!bzimage_detect(buf, len))
        return vr_error_new(err, ENOEXEC, "not a bzImage (no 'HdrS' boot header)");
    if (len < BP_INIT_SIZE + 4)
        return vr_error_new(err, ENOEXEC, "bzImage is truncated inside its setup header");
    info->version = get_le16(buf + BP_VERSION);
    /* 2.12 added xloadflags, which is how a kernel announces its 64-bit entry point. */
    if (info->version < 0x020c)
        return vr_error_new(err, ENOEXEC,
                            "bzImage boot protocol %u.%02u is too old: 2.12 or later is needed "
                            "for the 64-bit entry point",
                            info->version >> 8, info->version & 0xff);
    info->xloadflags = get_le16(buf + BP_XLOADFLAGS);
    if (!(info->xloadflags & XLF_KERNEL_64))
        return vr_error_new(err, ENOEXEC,
                            "bzImage has no 64-bit entry point (not an x86-64 kernel)");
    if (!(buf[BP_LOADFLAGS] & LOADFLAGS_LOADED_HIGH))
        return vr_error_new(err, ENOEXEC, "zImage (loaded low) kernels are not supported");

    info->header_end = BP_HEADER + buf[BP_JUMP + 1];
    if (info->header_end > BP_SIZE || info->header_end > len)
        return vr_error_new(err, ENOEXEC, "bzImage setup header length is invalid");

    setup_sects = buf[BP_SETUP_SECTS] ? buf[BP_SETUP_SECTS] : 4;
    info->payload_offset = (setup_sects + 1) * 512;
    info->payload_size = (uint64_t)get_le32(buf + BP_SYSSIZE) * 16;
    if (info->payload_size == 0)
        return vr_error_new(err, ENOEXEC, "bzImage declares an empty kernel");
    if (info->payload_offset > len || info->payload_size > len - info->payload_offset)
        return vr_error_new(err, ENOEXEC,
                            "bzImage is truncated: header declares %llu bytes, file has %zu",
                            (unsigned long long)(info->payload_offset + info->payload_size), len);
    info->cmdline_max = get_le32(buf + BP_CMDLINE_SIZE);
    info->initrd_addr_max = get_le32(buf + BP_INITRD_ADDR_MAX);
    info->init_size = get_le32(buf + BP_INIT_SIZE);
    if (info->init_size < info->payload_size)
        info->init_size = info->payload_size;
    info->pref_address = get_le64(buf + BP_PREF_ADDRESS);
    info->kernel_alignment = get_le32(buf + BP_KERNEL_ALIGNMENT);
    info->relocatable = buf[BP_RELOCATABLE] != 0;
    if (info->relocatable &&
        (info->kernel_alignment == 0 || (info->kernel_alignment & (info->kernel_alignment - 1))))
        return vr_error_new(err, ENOEXEC, "bzImage kernel_alignment 0x%x is not a power of two",
                            info->kernel_alignment);
    if (info->pref_address > UINT64_MAX / 2 || info->init_size > UINT64_MAX / 4)
        return vr_error_new(err, ENOEXEC, "bzImage preferred address or size is out of range");
    return 0;
}

uint64_t bzimage_runtime_start(const struct bzimage_info *info, uint64_t load_address)
{
    uint64_t start;

    if (!info->relocatable)
        return info->pref_address;
    start = load_address < info->pref_address ? info->pref_address : load_address;
    return (start + info->kernel_alignment - 1) & ~((uint64_t)info->kernel_alignment - 1);
}
