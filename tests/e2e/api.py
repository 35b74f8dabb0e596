#!/usr/bin/python3
"""Tier 3: Firecracker's API on a real guest (issue 4). Debian 12 boots
from the root disk (guest/build-rootfs) with the stock cloud kernel, and
the test drives vireo-vmm through its API socket as a Firecracker client
would.

Guest commands go on the kernel command line after ' -- ' (at most 31
words, see devices.py)."""
import os
import re
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest  # noqa: E402

R = vmtest.Results("tier 3: Firecracker API")
BOOT_TIMEOUT = int(os.environ.get("VIREO_E2E_BOOT_TIMEOUT", "180"))
TMP = tempfile.mkdtemp(prefix="vireo-e2e-api-")


KERNEL, ROOTFS, INITRD = vmtest.root_disk_guest()


def vmm_args(command, sock, memory="256", extra=()):
    assert len(command.split()) <= 31, "more than 31 init arguments: %s" % command
    cmdline = "console=ttyS0 reboot=k panic=-1 root=/dev/vda ro quiet -- %s" % command
    return ["--kernel", KERNEL, "--initrd", INITRD, "--memory", memory, "--cpus", "2",
            "--disk", ROOTFS + ",ro", "--api-sock", sock] + list(extra) + ["--cmdline", cmdline]


def ticks(out):
    return [int(n) for n in re.findall(r"TICK (\d+)", out.decode(errors="replace"))]


def test_pause_resume():
    """Paused for 5 s: the vCPU threads take no CPU time and the guest prints nothing;
    resumed: the same process goes on counting, and the guest reports no lockup."""
    sock = os.path.join(TMP, "pause.sock")
    cmd = "i=0; while :; do i=$((i+1)); echo TICK $i; sleep 0.2; done"
    vm = vmtest.Vmm(vmm_args(cmd, sock), force=False)
    try:
        running = vm.expect("TICK 5", BOOT_TIMEOUT)
        status, _ = vmtest.api(sock, "PATCH", "/vm", {"state": "Paused"}) if running else (0, 0)
        paused = status == 204
        _, info = vmtest.api(sock, "GET", "/") if paused else (0, {})
        vcpu0 = vmtest.thread_cpu_seconds(vm.proc.pid, "vcpu")
        all0 = vmtest.thread_cpu_seconds(vm.proc.pid)
        vm._pump(0.5)
        ticks_at_pause = len(ticks(vm.out))
        time.sleep(5)
        vm._pump(0)
        vcpu1 = vmtest.thread_cpu_seconds(vm.proc.pid, "vcpu")
        all1 = vmtest.thread_cpu_seconds(vm.proc.pid)
        ticks_paused = len(ticks(vm.out)) - ticks_at_pause
        status, _ = vmtest.api(sock, "PATCH", "/vm", {"state": "Resumed"}) if paused else (0, 0)
        resumed = status == 204
        last = max(ticks(vm.out) or [0])
        went_on = resumed and vm.expect("TICK %d" % (last + 10), 60)
        _, info2 = vmtest.api(sock, "GET", "/") if resumed else (0, {})
        # Another pause and resume, to show the cycle repeats.
        again = (vmtest.api(sock, "PATCH", "/vm", {"state": "Paused"})[0] == 204
                 and vmtest.api(sock, "PATCH", "/vm", {"state": "Resumed"})[0] == 204
                 and vm.expect("TICK %d" % (last + 15), 60))
        time.sleep(1)
    finally:
        vm.signal(signal.SIGTERM)
        r = vm.wait(30)
    detail = r.describe()
    R.check("pause: PATCH /vm Paused answers 204 and GET / says Paused",
            paused and info.get("state") == "Paused", "info=%s\n%s" % (info, detail))
    R.check("pause: for 5 s the vCPU threads use no CPU (%.2f s) and the monitor next to none "
            "(%.2f s), and the guest prints nothing (%d lines)"
            % (vcpu1 - vcpu0, all1 - all0, ticks_paused),
            paused and vcpu1 - vcpu0 <= 0.02 and all1 - all0 <= 0.1 and ticks_paused == 0,
            detail)
    R.check("resume: PATCH /vm Resumed answers 204, GET / says Running, and the guest's loop "
            "goes on from where it stopped", resumed and went_on
            and info2.get("state") == "Running" and ticks(vm.out) == list(
                range(1, len(ticks(vm.out)) + 1)), detail)
    R.check("resume: a second pause and resume work, and the guest reports no soft lockup "
            "or RCU stall", again and not re.search(r"soft lockup|rcu.*stall", r.out), detail)


def test_ctrl_alt_del():
    """PUT /actions SendCtrlAltDel: the guest's keyboard driver sees the chord, Linux
    reboots, and the VM ends as a reboot does (status 0)."""
    sock = os.path.join(TMP, "cad.sock")
    vm = vmtest.Vmm(vmm_args("echo READY; sleep 600", sock), force=False)
    try:
        ready = vm.expect("READY", BOOT_TIMEOUT)
        status, body = (vmtest.api(sock, "PUT", "/actions", {"action_type": "SendCtrlAltDel"})
                        if ready else (0, None))
    except OSError as e:
        status, body = 0, str(e)
    r = vm.wait(60)
    R.check("SendCtrlAltDel: 204, the guest reboots and the VM ends with status 0",
            ready and status == 204 and r.status == 0 and not r.timed_out
            and "Restarting system" in r.out, "status=%s body=%s\n%s" % (status, body,
                                                                       r.describe()))


def main():
    if not os.path.exists(ROOTFS):
        R.skip("Firecracker API tests", "no root disk image (run guest/build-rootfs)")
        vmtest.exit_cleanly(R)
    tests = (test_pause_resume, test_ctrl_alt_del)
    wanted = sys.argv[1:]
    for test in tests:
        if not wanted or any(w in test.__name__ for w in wanted):
            test()
    vmtest.exit_cleanly(R)


if __name__ == "__main__":
    main()
