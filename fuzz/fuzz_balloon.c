/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: virtio-balloon against a hostile guest (fuzz/virtio_fuzz.h
 * gives the input format). Chains on inflateq/deflateq/statsq carry
 * fuzzer-chosen PFN arrays and statistics entries, with fuzzer-chosen
 * directions and lengths; DEVICE operations call the host-side control
 * functions: sub % 4 = 0 set_target(arg % 3 MiB; RAM is 1 MiB), 1 read the
 * statistics, 2 set_stats_interval(arg % 4), 3 read the balloon size.
 * Invariants: the control functions accept exactly the valid values and
 * report back what they were given; statistics never name unknown tags.
 * Seeds: fuzz/corpus/fuzz_balloon/, written by fuzz/make-virtio-seeds.
 */
#include <errno.h>
#include <fcntl.h>

#include "../lib/log.h"
#include "../vmm/virtio/balloon.h"
#include "virtio_fuzz.h"

#define BALLOON_F_STATS_VQ 1

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct vfuzz fuzz;

static void setup_once(void)
{
    struct virtio_balloon_config cfg = {.deflate_on_oom = true, .stats_interval_s = 3600};
    struct vr_error *err = NULL;

    log_set_level(LOG_ERROR); /* the guest-triggered warnings are the point here */
    vfuzz_init(&fuzz);
    if (virtio_balloon_create(&fuzz.mem, &fuzz.loop, &cfg, &fuzz.vdev, &err) < 0) {
        fprintf(stderr, "fuzz_balloon: %s\n", err->msg);
        abort();
    }
}

static void balloon_op(struct vfuzz *f, struct vfuzz_input *in, uint8_t sub, uint32_t arg)
{
    struct virtio_balloon_stats stats;
    struct virtio_balloon_info info;
    struct vr_error *err = NULL;
    int ret;

    (void)in;
    switch (sub % 4) {
    case 0:
        ret = virtio_balloon_set_target(f->vdev, arg % 3, &err);
        VFUZZ_REQUIRE((ret == 0) == (arg % 3 <= 1));
        virtio_balloon_info(f->vdev, &info);
        VFUZZ_REQUIRE(ret < 0 || info.target_mib == arg % 3);
        break;
    case 1:
        ret = virtio_balloon_stats(f->vdev, &stats, &err);
        VFUZZ_REQUIRE(ret == 0);
        VFUZZ_REQUIRE((stats.present >> VIRTIO_BALLOON_STAT_COUNT) == 0);
        break;
    case 2:
        ret = virtio_balloon_set_stats_interval(f->vdev, arg % 4, &err);
        VFUZZ_REQUIRE((ret == 0) == (arg % 4 != 0));
        break;
    default:
        virtio_balloon_info(f->vdev, &info);
        VFUZZ_REQUIRE(info.actual_mib == info.actual_pages / 256);
        break;
    }
    vr_error_free(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vfuzz_input in = {data, size};

    if (fuzz.vdev == NULL)
        setup_once();
    vfuzz_begin(&fuzz, &in, BALLOON_F_STATS_VQ);
    vfuzz_run(&fuzz, &in, balloon_op);
    return 0;
}
