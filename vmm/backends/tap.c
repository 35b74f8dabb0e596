/* SPDX-License-Identifier: Apache-2.0 */
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../../lib/cleanup.h"
#include "../../lib/log.h"
#include "../../lib/util.h"

#define TUN_DEVICE "/dev/net/tun"

struct tap {
    struct net_backend be;
    char name[IFNAMSIZ];
    bool created;
};

static ssize_t tap_recv(struct net_backend *be, const struct iovec *iov, unsigned int n)
{
    ssize_t got;

    do
        got = readv(be->fd, iov, (int)n);
    while (got < 0 && errno == EINTR);
    return got < 0 ? -errno : got;
}

static ssize_t tap_send(struct net_backend *be, const struct iovec *iov, unsigned int n)
{
    ssize_t put;

    do
        put = writev(be->fd, iov, (int)n);
    while (put < 0 && errno == EINTR);
    return put < 0 ? -errno : put;
}

static unsigned int tun_offload_flags(unsigned int offloads)
{
    unsigned int flags = 0;

    if (offloads & NET_OFFLOAD_CSUM)
        flags |= TUN_F_CSUM;
    if (offloads & NET_OFFLOAD_TSO4)
        flags |= TUN_F_TSO4;
    if (offloads & NET_OFFLOAD_TSO6)
        flags |= TUN_F_TSO6;
    if (offloads & NET_OFFLOAD_TSO_ECN)
        flags |= TUN_F_TSO_ECN;
    if (offloads & NET_OFFLOAD_UFO)
        flags |= TUN_F_UFO;
    /* The kernel refuses segmentation offloads without checksum offload. */
    if (!(flags & TUN_F_CSUM))
        flags = 0;
    return flags;
}

static int tap_set_offloads(struct net_backend *be, unsigned int offloads, struct vr_error **err)
{
    struct tap *tap = container_of(be, struct tap, be);

    if (ioctl(be->fd, TUNSETOFFLOAD, tun_offload_flags(offloads)) < 0)
        return vr_error_set(err, errno, "tap '%s': set offloads 0x%x", tap->name, offloads);
    return 0;
}

static void tap_destroy(struct net_backend *be)
{
    struct tap *tap = container_of(be, struct tap, be);

    if (be->fd >= 0)
        close(be->fd);
    free(tap);
}

static const struct net_backend_ops tap_ops = {
    .kind = "tap",
    .recv = tap_recv,
    .send = tap_send,
    .set_offloads = tap_set_offloads,
    .destroy = tap_destroy,
};

static int check_name(const char *name, struct vr_error **err)
{
    if (name == NULL || name[0] == '\0')
        return vr_error_new(err, EINVAL, "tap device name is empty");
    if (strlen(name) >= IFNAMSIZ)
        return vr_error_new(err, ENAMETOOLONG,
                            "tap device name '%s' is too long: at most %d characters", name,
                            IFNAMSIZ - 1);
    return 0;
}

static int open_tun_device(int *fd_out, struct vr_error **err)
{
    int fd = open(TUN_DEVICE, O_RDWR | O_NONBLOCK | O_CLOEXEC);

    if (fd >= 0) {
        *fd_out = fd;
        return 0;
    }
    if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
        return vr_error_set(err, errno, "%s is missing (is the tun module loaded?)", TUN_DEVICE);
    if (errno == EACCES || errno == EPERM)
        return vr_error_set(err, errno, "no permission to open %s (vireo needs CAP_NET_ADMIN)",
                            TUN_DEVICE);
    return vr_error_set(err, errno, "open %s", TUN_DEVICE);
}

/* TUNSETIFF's errors, in words: the kernel reuses a few errnos for several causes. */
static int explain_setiff_error(const char *name, bool existed, int errnum, struct vr_error **err)
{
    switch (errnum) {
    case EPERM:
    case EACCES:
        return vr_error_set(err, errnum,
                            existed
                                ? "no permission to attach to tap '%s' (it belongs to another "
                                  "user or group, or vireo lacks CAP_NET_ADMIN)"
                                : "no permission to create tap '%s' (vireo needs CAP_NET_ADMIN)",
                            name);
    case EBUSY:
        return vr_error_set(err, errnum, "tap '%s' is busy: another process has it open", name);
    case EINVAL:
        if (existed)
            return vr_error_new(err, EINVAL,
                                "'%s' is not a single-queue tap device (a tun device, a "
                                "multi-queue tap or another kind of interface has that name)",
                                name);
        return vr_error_new(err, EINVAL, "'%s' is not a valid interface name", name);
    default:
        return vr_error_set(err, errnum, "attach to tap '%s'", name);
    }
}

static int attach(struct tap *tap, const char *name, struct vr_error **err)
{
    struct ifreq ifr = {0};
    int hdr_len = NET_BACKEND_HDR_LEN;
    bool existed = if_nametoindex(name) != 0;

    memcpy(ifr.ifr_name, name, strlen(name));
    /* Frames carry the virtio-net header; no packet-information prefix. */
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(tap->be.fd, TUNSETIFF, &ifr) < 0)
        return explain_setiff_error(name, existed, errno, err);
    memcpy(tap->name, ifr.ifr_name, IFNAMSIZ - 1);
    tap->created = !existed;
    /* The VERSION_1 header always has num_buffers: 12 bytes, not the legacy 10. */
    if (ioctl(tap->be.fd, TUNSETVNETHDRSZ, &hdr_len) < 0)
        return vr_error_set(err, errno, "tap '%s': set the virtio-net header size", name);
    /* No offloads until the guest says which it accepts (a previous user may have set some). */
    return tap_set_offloads(&tap->be, 0, err);
}

int tap_open(const char *name, struct net_backend **out, struct vr_error **err)
{
    struct tap *tap;
    int ret;

    ret = check_name(name, err);
    if (ret < 0)
        return ret;
    tap = calloc(1, sizeof(*tap));
    if (tap == NULL)
        return vr_error_set(err, ENOMEM, "allocate tap '%s'", name);
    tap->be.ops = &tap_ops;
    tap->be.fd = -1;
    ret = open_tun_device(&tap->be.fd, err);
    if (ret == 0)
        ret = attach(tap, name, err);
    if (ret < 0) {
        tap_destroy(&tap->be);
        return ret;
    }
    if (tap->created)
        log_info("created tap '%s'; it disappears when vireo exits", tap->name);
    *out = &tap->be;
    return 0;
}

const char *tap_name(const struct net_backend *be)
{
    return container_of(be, struct tap, be)->name;
}

bool tap_created(const struct net_backend *be)
{
    return container_of(be, struct tap, be)->created;
}
