#!/usr/bin/python3
"""Tier 3: Firecracker's API on a real guest (issue 4). Debian 12 boots
from the root disk (guest/build-rootfs) with the stock cloud kernel, and
the test drives vireo-vmm through its API socket as a Firecracker client
would.

Guest commands go on the kernel command line after ' -- ' (at most 31
words, see devices.py)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
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


def wait_socket(path, timeout=10):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.path.exists(path)


def curl(sock, method, path, data):
    """One request the way Firecracker's getting-started guide sends it: (status, body)."""
    p = subprocess.run(["curl", "--unix-socket", sock, "-i", "-s", "-X", method,
                        "http://localhost" + path, "-H", "Accept: application/json",
                        "-H", "Content-Type: application/json", "-d", data],
                       capture_output=True, text=True, timeout=30)
    m = re.match(r"HTTP/1\.1 (\d+)", p.stdout)
    return (int(m.group(1)) if m else None), p.stdout


def writable_root():
    """A private copy of the root disk, for a guest that mounts it read-write."""
    path = os.path.join(TMP, "rootfs-rw.ext4")
    if not os.path.exists(path):
        subprocess.run(["cp", "--sparse=always", ROOTFS, path], check=True)
    return path


def data_disk(name, size_mib):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    return path


def firecracker_config(command, drives=(), extra=None):
    """Firecracker's config-file document for the root-disk guest running `command`."""
    assert len(command.split()) <= 28, "too many init arguments: %s" % command
    doc = {
        "boot-source": {"kernel_image_path": KERNEL, "initrd_path": INITRD,
                        "boot_args": "console=ttyS0 reboot=k panic=1 pci=off quiet -- " + command},
        "drives": [{"drive_id": "rootfs", "path_on_host": ROOTFS, "is_root_device": True,
                    "is_read_only": True}] + list(drives),
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 512},
    }
    doc.update(extra or {})
    return doc


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


# Bad requests: (method, path, body, status, what the fault_message must contain). Bodies are
# sent as they are (str), so malformed JSON stays malformed.
PRE_BOOT_BAD = [
    ("PUT", "/boot-source", "{", 400, ""),
    ("PUT", "/boot-source", "[]", 400, ""),
    ("PUT", "/boot-source", "{}", 400, "kernel_image_path"),
    ("PUT", "/boot-source", '{"kernel_image_path": 5}', 400, "kernel_image_path"),
    ("PUT", "/boot-source", '{"kernel_image_path": "/nonexistent/vmlinuz"}', 400,
     "kernel_image_path"),
    ("PUT", "/boot-source", '{"kernel_image_path": "%(k)s", "bogus": 1}', 400, "bogus"),
    ("PUT", "/boot-source", '{"kernel_image_path": "%(k)s", "initrd_path": "/nonexistent"}',
     400, "initrd_path"),
    ("PUT", "/boot-source", '{"kernel_image_path": "%(k)s", "boot_args": 7}', 400, "boot_args"),
    ("PUT", "/machine-config", '{"vcpu_count": 0, "mem_size_mib": 128}', 400, "vcpu_count"),
    ("PUT", "/machine-config", '{"vcpu_count": 33, "mem_size_mib": 128}', 400, "vcpu_count"),
    ("PUT", "/machine-config", '{"vcpu_count": 1}', 400, "mem_size_mib"),
    ("PUT", "/machine-config", '{"vcpu_count": "two", "mem_size_mib": 128}', 400, "vcpu_count"),
    ("PUT", "/machine-config", '{"vcpu_count": 1, "mem_size_mib": -5}', 400, "mem_size_mib"),
    ("PUT", "/machine-config", '{"vcpu_count": 1, "mem_size_mib": 128, "smt": "yes"}', 400,
     "smt"),
    ("PUT", "/machine-config", '{"vcpu_count": 1, "mem_size_mib": 128, "huge_pages": "1G"}',
     400, "huge_pages"),
    ("PUT", "/machine-config", '{"vcpu_count": 1, "mem_size_mib": 128, "cpu_template": "T2"}',
     400, "cpu_template"),
    ("PATCH", "/machine-config", '{"vcpu_count": 1.5}', 400, "vcpu_count"),
    ("PATCH", "/machine-config", '{"unknown": true}', 400, "unknown"),
    ("PUT", "/drives/rootfs", '{"drive_id": "other", "path_on_host": "%(r)s", '
     '"is_root_device": true, "is_read_only": true}', 400, "drive_id"),
    ("PUT", "/drives/rootfs", '{"drive_id": "rootfs", "is_root_device": true}', 400,
     "path_on_host"),
    ("PUT", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "/nonexistent", '
     '"is_root_device": true, "is_read_only": true}', 400, "path_on_host"),
    ("PUT", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "%(r)s", '
     '"is_root_device": "yes", "is_read_only": true}', 400, "is_root_device"),
    ("PUT", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "%(r)s", '
     '"is_root_device": true, "cache_type": "Fast"}', 400, "cache_type"),
    ("PUT", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "%(r)s", '
     '"is_root_device": true, "io_engine": "Turbo"}', 400, "io_engine"),
    ("PUT", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "%(r)s", '
     '"is_root_device": true, "rate_limiter": {"bandwidth": {"size": -1, "refill_time": 100}}}',
     400, "size"),
    ("PUT", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "%(r)s", '
     '"is_root_device": true, "rate_limiter": {"bandwidth": {"size": 100}}}', 400,
     "refill_time"),
    ("PUT", "/drives/a%%20b", '{"drive_id": "a b", "path_on_host": "%(r)s", '
     '"is_root_device": false}', 400, ""),
    ("PUT", "/network-interfaces/eth0", '{"iface_id": "eth0"}', 400, "host_dev_name"),
    ("PUT", "/network-interfaces/eth0", '{"iface_id": "eth0", "host_dev_name": "tap0", '
     '"guest_mac": "zz:zz"}', 400, "guest_mac"),
    ("PUT", "/network-interfaces/eth0", '{"iface_id": "eth1", "host_dev_name": "tap0"}', 400,
     "iface_id"),
    ("PUT", "/vsock", '{"guest_cid": 2, "uds_path": "/tmp/v.sock"}', 400, "guest_cid"),
    ("PUT", "/vsock", '{"guest_cid": 3}', 400, "uds_path"),
    ("PUT", "/balloon", '{"amount_mib": "lots", "deflate_on_oom": true}', 400, "amount_mib"),
    ("PUT", "/balloon", '{"deflate_on_oom": true}', 400, "amount_mib"),
    ("PUT", "/mmds/config", '{"network_interfaces": ["nope"]}', 400, "network_interfaces"),
    ("PUT", "/mmds/config", '{"network_interfaces": [], "ipv4_address": "10.0.0.1"}', 400,
     "ipv4_address"),
    ("PUT", "/mmds/config", '{"network_interfaces": [], "version": "V3"}', 400, "version"),
    ("PUT", "/entropy", '{"rate_limiter": {"ops": {"size": 1, "refill_time": 1}}}', 400,
     "rate_limiter"),
    ("PUT", "/logger", '{"level": "Loud"}', 400, "level"),
    ("PUT", "/logger", '{"log_path": "/nonexistent/dir/log"}', 400, "log_path"),
    ("PUT", "/metrics", '{}', 400, "metrics_path"),
    ("PATCH", "/vm", '{"state": "Paused"}', 400, "before starting"),
    ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "%(r)s"}', 400,
     "before starting"),
    ("PUT", "/actions", '{"action_type": "SendCtrlAltDel"}', 400, "before starting"),
    ("PUT", "/actions", '{"action_type": "Explode"}', 400, "action_type"),
    ("PUT", "/actions", '{}', 400, "action_type"),
]

POST_BOOT_BAD = [
    ("PUT", "/boot-source", '{"kernel_image_path": "%(k)s"}', 400, "after starting"),
    ("PUT", "/machine-config", '{"vcpu_count": 1, "mem_size_mib": 128}', 400, "after starting"),
    ("PATCH", "/machine-config", '{"vcpu_count": 2}', 400, "after starting"),
    ("PUT", "/drives/extra", '{"drive_id": "extra", "path_on_host": "%(r)s", '
     '"is_root_device": false}', 400, "after starting"),
    ("PUT", "/network-interfaces/eth9", '{"iface_id": "eth9", "host_dev_name": "tap9"}', 400,
     "after starting"),
    ("PUT", "/vsock", '{"guest_cid": 3, "uds_path": "/tmp/v.sock"}', 400, "after starting"),
    ("PUT", "/balloon", '{"amount_mib": 1, "deflate_on_oom": true}', 400, "after starting"),
    ("PUT", "/mmds/config", '{"network_interfaces": []}', 400, "after starting"),
    ("PUT", "/actions", '{"action_type": "InstanceStart"}', 400, "after starting"),
    ("PATCH", "/drives/nope", '{"drive_id": "nope", "path_on_host": "%(r)s"}', 400, "nope"),
    ("PATCH", "/drives/rootfs", '{"drive_id": "other"}', 400, "drive_id"),
    ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": "/nonexistent"}', 400,
     "/nonexistent"),
    ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "is_read_only": true}', 400,
     "is_read_only"),
    ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "rate_limiter": {"ops": '
     '{"size": "many", "refill_time": 10}}}', 400, "size"),
    ("PATCH", "/network-interfaces/eth0", '{"iface_id": "eth0"}', 400, "eth0"),
    ("PATCH", "/vm", '{"state": "Sleeping"}', 400, "state"),
    ("PATCH", "/vm", '{}', 400, "state"),
    ("PATCH", "/vm", '{"state": "Paused", "extra": 1}', 400, "extra"),
    ("PATCH", "/balloon", '{"amount_mib": 1}', 400, "balloon"),
    ("PUT", "/mmds", '{"a": ', 400, ""),
    ("PATCH", "/mmds", 'not json', 400, ""),
    ("PUT", "/mmds", '"' + "x" * 60000 + '"', 413, ""),
    ("PUT", "/logger", '{"show_level": "loud"}', 400, "show_level"),
    ("PUT", "/metrics", '{"metrics_path": 12}', 400, "metrics_path"),
    ("GET", "/nowhere", None, 400, "Invalid request method and/or path"),
    ("DELETE", "/vm/config", None, 400, "Invalid request method and/or path"),
    ("POST", "/actions", '{"action_type": "FlushMetrics"}', 400,
     "Invalid request method and/or path"),
    ("GET", "/drives/rootfs", None, 400, "Invalid request method and/or path"),
    ("GET", "/", '{"body": "on a GET"}', 400, "GET request cannot have a body"),
    ("PUT", "/actions", "\xff\xfe", 400, ""),
    ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "path_on_host": 5}', 400, "path_on_host"),
    ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "bogus": true}', 400, "bogus"),
    ("PATCH", "/drives/rootfs", '{}', 400, "drive_id"),
    ("PATCH", "/drives/rootfs", '[1, 2]', 400, ""),
    ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "rate_limiter": {"bandwidth": '
     '{"size": 1}}}', 400, "refill_time"),
    ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "rate_limiter": {"bandwidth": '
     '{"size": 1, "refill_time": 1, "extra": 2}}}', 400, "extra"),
    ("PATCH", "/drives/rootfs", '{"drive_id": "rootfs", "rate_limiter": 7}', 400,
     "rate_limiter"),
    ("PATCH", "/network-interfaces/eth0", '{"iface_id": "eth0", "rx_rate_limiter": {"ops": '
     '{"size": -1, "refill_time": 1}}}', 400, "size"),
    ("PATCH", "/network-interfaces/eth0", '{"iface_id": "eth0", "host_dev_name": "tap1"}', 400,
     "host_dev_name"),
    ("PATCH", "/vm", '{"state": 1}', 400, "state"),
    ("PATCH", "/vm", '{"state": "paused"}', 400, "state"),
    ("PUT", "/actions", '{"action_type": 5}', 400, "action_type"),
    ("PUT", "/actions", '{"action_type": "FlushMetrics", "x": 1}', 400, "x"),
    ("PUT", "/actions", '', 400, ""),
    ("PATCH", "/balloon/statistics", '{"stats_polling_interval_s": 1}', 400, "balloon"),
    ("GET", "/balloon", None, 400, "balloon"),
    ("GET", "/balloon/statistics", None, 400, "balloon"),
    ("PUT", "/logger", '{"level": 3}', 400, "level"),
    ("PUT", "/logger", '{"module": 5}', 400, "module"),
    ("PUT", "/logger", '[]', 400, ""),
    ("PUT", "/mmds", '', 400, ""),
    ("PATCH", "/mmds", '{"a": 1}', 400, ""),
    ("GET", "/mmds/config", None, 400, "Invalid request method and/or path"),
    ("PUT", "/vm/config", '{}', 400, "Invalid request method and/or path"),
    ("PUT", "/", '{}', 400, "Invalid request method and/or path"),
    ("GET", "/machine-config/extra", None, 400, "Invalid request method and/or path"),
    ("PUT", "/drives/", '{}', 400, "Invalid request method and/or path"),
    ("PUT", "/network-interfaces/", '{}', 400, "Invalid request method and/or path"),
]


def raw_exchange(sock, data, read=True, timeout=5):
    """Send raw bytes on the API socket; the status of the reply (None if none)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(data)
        if not read:
            return None
        reply = b""
        while b"\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        m = re.match(rb"HTTP/1\.1 (\d+)", reply)
        return int(m.group(1)) if m else None
    except OSError:
        return None
    finally:
        s.close()


def run_battery(sock, battery, subst):
    failures = []
    for method, path, body, want, needle in battery:
        body = body % subst if body is not None else None
        try:
            status, reply = vmtest.api(sock, method, path, raw=body.encode() if body else None)
        except OSError as e:
            status, reply = None, str(e)
        message = reply.get("fault_message", "") if isinstance(reply, dict) else str(reply)
        if status != want or needle not in message or "\n" in message:
            failures.append((method, path, (body or "")[:60], status, message[:120]))
    return failures


def protocol_abuse(sock):
    """HTTP-level garbage, half-sent requests and a flood: (name, ok) pairs."""
    results = [
        ("garbage request line gets 400", raw_exchange(sock, b"\x00\x01garbage\r\n\r\n") == 400),
        ("HTTP/2.0 gets 505", raw_exchange(sock, b"GET / HTTP/2.0\r\n\r\n") == 505),
        ("chunked body gets 501", raw_exchange(
            sock, b"PUT /mmds HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 501),
        ("header flood gets 431", raw_exchange(
            sock, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 100 + b"\r\n") == 431),
        ("oversized Content-Length gets 413", raw_exchange(
            sock, b"PUT /mmds HTTP/1.1\r\nContent-Length: 999999\r\n\r\n") == 413),
    ]
    # Half a request, then gone; then 80 connections that send nothing and stay open.
    raw_exchange(sock, b"PUT /mmds HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"a\":", read=False)
    idle = []
    for _ in range(80):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(sock)
        except OSError:
            s.close()
            break
        idle.append(s)
    try:
        status = vmtest.api(sock, "GET", "/")[0]
    except OSError:
        status = None
    results.append(("with 80 idle connections open, a new client is answered (200 or 503)",
                    status in (200, 503)))
    for s in idle:
        s.close()
    time.sleep(0.5)
    results.append(("after the flood, GET / answers 200", vmtest.api(sock, "GET", "/")[0] == 200))
    return results


def test_bad_requests():
    """Over 60 bad requests, before and after InstanceStart, each refused with its status and a
    one-line message naming the problem; the VM runs on and its console still answers."""
    sock = os.path.join(TMP, "bad.sock")
    subst = {"k": KERNEL, "r": ROOTFS}
    vm = vmtest.Vmm(["--api-sock", sock], force=False)
    pre = post = abuse = []
    echoed = running = False
    try:
        if wait_socket(sock):
            pre = run_battery(sock, PRE_BOOT_BAD, subst)
            cfg = firecracker_config("while read l; do echo ECHO:$l; done")
            started = (vmtest.api(sock, "PUT", "/boot-source", cfg["boot-source"])[0] == 204
                       and vmtest.api(sock, "PUT", "/drives/rootfs", cfg["drives"][0])[0] == 204
                       and vmtest.api(sock, "PUT", "/machine-config",
                                      cfg["machine-config"])[0] == 204
                       and vmtest.api(sock, "PUT", "/actions",
                                      {"action_type": "InstanceStart"})[0] == 204)
            if started and vm.expect("vireo-guest: init started", BOOT_TIMEOUT):
                time.sleep(2)
                post = run_battery(sock, POST_BOOT_BAD, subst)
                abuse = protocol_abuse(sock)
                running = vmtest.api(sock, "GET", "/")[1].get("state") == "Running"
                vm.send("still here\n")
                echoed = vm.expect("ECHO:still here", 30)
    finally:
        vm.signal(signal.SIGTERM)
        r = vm.wait(30)
    total = len(PRE_BOOT_BAD) + len(POST_BOOT_BAD) + len(abuse)
    while_running = len(POST_BOOT_BAD) + len(abuse)
    R.check("bad requests: %d pre-boot, each 400 with a one-line message naming the problem"
            % len(PRE_BOOT_BAD), not pre and len(PRE_BOOT_BAD) > 0, "failures=%s" % pre)
    R.check("bad requests: %d after the start, each with Firecracker's status and message"
            % len(POST_BOOT_BAD), bool(abuse) and not post, "failures=%s\n%s" % (post,
                                                                              r.describe()))
    R.check("bad requests: protocol abuse, half-sent requests and a connection flood are "
            "answered or dropped (%d cases)" % len(abuse),
            bool(abuse) and all(ok for _, ok in abuse), "%s" % abuse)
    R.check("bad requests: after %d of them (%d while the guest ran) the VM still runs and its "
            "console answers" % (total, while_running),
            running and echoed and while_running >= 60, r.describe())



def test_getting_started():
    """Firecracker's getting-started sequence, verbatim apart from the paths: curl PUTs of
    boot-source, drives and machine-config, then InstanceStart; GET /vm/config gives them back."""
    sock = os.path.join(TMP, "gs.sock")
    root = writable_root()
    vm = vmtest.Vmm(["--api-sock", sock], force=False)
    statuses = []
    config = None
    try:
        if wait_socket(sock):
            boot_args = "console=ttyS0 reboot=k panic=1 pci=off -- findmnt -n -o SOURCE,OPTIONS /"
            for path, data in (
                    ("/boot-source", json.dumps({"kernel_image_path": KERNEL,
                                                 "initrd_path": INITRD,
                                                 "boot_args": boot_args})),
                    ("/drives/rootfs", json.dumps({"drive_id": "rootfs", "path_on_host": root,
                                                   "is_root_device": True,
                                                   "is_read_only": False})),
                    ("/machine-config", '{"vcpu_count": 2, "mem_size_mib": 1024}')):
                statuses.append(curl(sock, "PUT", path, data)[0])
            config = vmtest.api(sock, "GET", "/vm/config")[1]
            statuses.append(curl(sock, "PUT", "/actions", '{"action_type": "InstanceStart"}')[0])
    finally:
        r = vm.wait(BOOT_TIMEOUT)
    R.check("getting started: the curl PUTs and InstanceStart answer 204, and the Debian guest "
            "boots with /dev/vda as a writable root",
            statuses == [204] * 4 and re.search(r"/dev/vda\s+rw", r.out) is not None
            and r.status == 0, "statuses=%s\n%s" % (statuses, r.describe()))
    cfg = config if isinstance(config, dict) else {}
    R.check("getting started: GET /vm/config returns what was set",
            cfg.get("boot-source", {}).get("kernel_image_path") == KERNEL
            and cfg.get("boot-source", {}).get("initrd_path") == INITRD
            and [d.get("path_on_host") for d in cfg.get("drives", [])] == [root]
            and cfg.get("drives", [{}])[0].get("is_read_only") is False
            and cfg.get("machine-config", {}).get("vcpu_count") == 2
            and cfg.get("machine-config", {}).get("mem_size_mib") == 1024,
            json.dumps(config))


def read_metrics(path):
    lines = []
    try:
        with open(path) as f:
            for line in f:
                lines.append(json.loads(line))
    except (OSError, ValueError) as e:
        return None, str(e)
    return lines, None


def test_config_file_and_metrics():
    """--config-file boots the same guest with no API call; the metrics file gets valid JSON
    lines whose block counters move with the guest's reads."""
    sock = os.path.join(TMP, "cf.sock")
    metrics = os.path.join(TMP, "metrics.json")
    log = os.path.join(TMP, "vmm.log")
    open(log, "w").close()
    data = data_disk("cf-data.raw", 64)
    cfg = os.path.join(TMP, "vm.json")
    cmd = ("cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list "
           "/sys/block/vda/queue/write_cache /sys/block/vdb/queue/write_cache; "
           "dd if=/dev/vdb of=/dev/null bs=1M count=32 iflag=direct; echo IO-DONE; read x")
    doc = firecracker_config(cmd, drives=[{"drive_id": "data", "path_on_host": data,
                                           "is_root_device": False, "is_read_only": True,
                                           "cache_type": "Writeback"}],
                             extra={"metrics": {"metrics_path": metrics},
                                    "logger": {"log_path": log, "level": "Info",
                                               "show_level": True}})
    doc["machine-config"]["smt"] = True
    with open(cfg, "w") as f:
        json.dump(doc, f)
    vm = vmtest.Vmm(["--config-file", cfg, "--api-sock", sock], force=False)
    flushed = False
    try:
        booted = vm.expect("IO-DONE", BOOT_TIMEOUT)
        flushed = booted and vmtest.api(sock, "PUT", "/actions",
                                        {"action_type": "FlushMetrics"})[0] == 204
        state = vmtest.api(sock, "GET", "/")[1] if booted else {}
        vm.send("\n")
    finally:
        r = vm.wait(60)
    R.check("--config-file: the VM boots and runs its command with no API call",
            booted and state.get("state") == "Running" and r.status == 0, r.describe())
    R.check("machine-config smt: vCPUs 0 and 1 are one core's two threads",
            re.search(r"^0-1\r?$", r.out, re.M) is not None, r.describe())
    R.check("cache_type: the root drive (Unsafe, the default) is write through for the guest, "
            "the Writeback one write back", re.search(r"write through\r?\nwrite back", r.out)
            is not None, r.describe())
    with open(log) as f:
        logged = f.read()
    R.check("logger: the config file's logger writes the monitor's messages to its file, "
            "with their level", re.search(r"info.*guest powered off", logged, re.I) is not None,
            "log file:\n%s" % logged[-2000:])
    lines, error = read_metrics(metrics)
    reads = [line.get("block_data", {}).get("read_bytes", 0) for line in lines or []]
    R.check("metrics: valid JSON lines; the data drive's read_bytes counts the guest's 32 MiB "
            "(%s)" % reads, flushed and lines is not None and len(lines) >= 2
            and sum(reads) >= 32 << 20 and all("utc_timestamp_ms" in x for x in lines),
            "error=%s lines=%s\n%s" % (error, (lines or [])[:1], r.describe()))


def script_disk(name, text):
    """A disk whose whole content is a shell script, padded with newlines to a sector multiple:
    the guest runs it with `sh /dev/vdX`, with no quoting on the kernel command line."""
    data = text.encode()
    data += b"\n" * (-len(data) % 512)
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


MMDS_SCRIPT = r"""
ip route add 169.254.169.254 dev eth0
path=/latest/meta-data/instance-id
# One HTTP/1.0 request to MMDS: METHOD PATH [HEADER-LINES]; MMDS closes after the reply.
req() { printf "$1 $2 HTTP/1.0\r\n$3\r\n" | socat -t 5 - TCP:169.254.169.254:80; }
body() { req "$@" | tail -n 1; }
status() { req "$@" | head -n 1 | cut -d' ' -f2; }
i=0
while [ $i -lt 30 ] && ! req GET / | grep -q HTTP/1; do
    i=$((i+1)); sleep 1
done
echo "TLSTATUS[$(status GET $path)]"
echo "TLBODY[$(body GET $path)]"
tok=$(body PUT /latest/api/token 'X-metadata-token-ttl-seconds: 60\r\n')
echo "TOKENLEN[${#tok}]"
echo "WITHTOKEN[$(body GET $path "X-metadata-token: $tok\r\n")]"
echo "BADSTATUS[$(status GET $path "X-metadata-token: x$tok\r\n")]"
"""


def test_mmds():
    """The guest reads MMDS over its NIC at 169.254.169.254: V1 without a token, V2 only with
    the session token from PUT /latest/api/token."""
    if not os.path.exists("/dev/net/tun"):
        R.skip("MMDS", "no /dev/net/tun on this host")
        return
    ns = "vireo-e2e-mmds-%d" % os.getpid()
    script = script_disk("mmds.sh", MMDS_SCRIPT)
    data = {"latest": {"meta-data": {"instance-id": "i-vireo-0042", "ami-id": "ami-7"}}}
    subprocess.run(["ip", "netns", "add", ns], check=True)
    results = {}
    try:
        # A tap that is up, so the guest's other frames (IPv6 router solicitations...) go out.
        for argv in (["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
                     ["ip", "link", "set", "tap0", "up"]):
            subprocess.run(["ip", "netns", "exec", ns] + argv, check=True)
        for version in ("V1", "V2"):
            sock = os.path.join(TMP, "mmds-%s.sock" % version)
            cfg = os.path.join(TMP, "mmds-%s.json" % version)
            doc = firecracker_config("sh /dev/vdb", drives=[{
                "drive_id": "script", "path_on_host": script, "is_root_device": False,
                "is_read_only": True}], extra={
                    "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                                            "guest_mac": "06:00:ac:10:00:02"}],
                    "mmds-config": {"version": version, "network_interfaces": ["eth0"]}})
            doc["boot-source"]["boot_args"] = doc["boot-source"]["boot_args"].replace(
                " -- ", " ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off -- ")
            with open(cfg, "w") as f:
                json.dump(doc, f)
            vm = vmtest.Vmm(["--config-file", cfg, "--api-sock", sock], force=False,
                            stdin=subprocess.DEVNULL, prefix=["ip", "netns", "exec", ns])
            put = wait_socket(sock) and vmtest.api(sock, "PUT", "/mmds", data)[0] == 204
            got = vmtest.api(sock, "GET", "/mmds")[1] if put else None
            r = vm.wait(BOOT_TIMEOUT)
            results[version] = (put and got == data, r)
    finally:
        subprocess.run(["ip", "netns", "del", ns])

    def field(r, name):
        m = re.search(r"%s\[([^]]*)\]" % name, r.out)
        return m.group(1) if m else None

    ok1, r1 = results.get("V1", (False, None))
    ok2, r2 = results.get("V2", (False, None))
    R.check("MMDS V1: PUT and GET /mmds on the API; the guest reads instance-id without a "
            "token", ok1 and r1 is not None and field(r1, "TLSTATUS") == "200"
            and field(r1, "TLBODY") == "i-vireo-0042", r1.describe() if r1 else "no run")
    R.check("MMDS V2: the guest gets a token from PUT /latest/api/token and reads with it; "
            "without a token, or with a wrong one, it gets 401",
            ok2 and r2 is not None and field(r2, "WITHTOKEN") == "i-vireo-0042"
            and int(field(r2, "TOKENLEN") or 0) > 10 and field(r2, "TLSTATUS") == "401"
            and field(r2, "BADSTATUS") == "401", r2.describe() if r2 else "no run")


NET_LIMIT_SCRIPT = r"""
bw() {
    iperf3 -c 10.0.2.1 -t 8 -O 2 -J | python3 -c 'import json, sys
print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))'
}
sleep 1
echo "NET1[$(bw)]"
read line
echo "NET2[$(bw)]"
"""


def test_net_rate_limiter():
    """A NIC whose transmit side is limited to 10 MiB/s sends at 10 MiB/s to iperf3 on the host
    (within 10 %); PATCHed to 20 MiB/s, at 20 MiB/s, without a reboot."""
    if not os.path.exists("/dev/net/tun"):
        R.skip("network rate limiter", "no /dev/net/tun on this host")
        return
    ns = "vireo-e2e-rl-%d" % os.getpid()
    mib = 1 << 20
    sock = os.path.join(TMP, "netrl.sock")
    cfg = os.path.join(TMP, "netrl.json")
    doc = firecracker_config("sh /dev/vdb", drives=[{
        "drive_id": "script", "path_on_host": script_disk("netrl.sh", NET_LIMIT_SCRIPT),
        "is_root_device": False, "is_read_only": True}], extra={
            "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0",
                                    "tx_rate_limiter": {"bandwidth": {"size": 10 * mib,
                                                                      "refill_time": 1000}}}]})
    doc["boot-source"]["boot_args"] = doc["boot-source"]["boot_args"].replace(
        " -- ", " ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off -- ")
    with open(cfg, "w") as f:
        json.dump(doc, f)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    status = None
    try:
        for argv in (["ip", "link", "set", "lo", "up"],
                     ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
                     ["ip", "addr", "add", "10.0.2.1/24", "dev", "tap0"],
                     ["ip", "link", "set", "tap0", "up"]):
            subprocess.run(["ip", "netns", "exec", ns] + argv, check=True)
        server = subprocess.Popen(["ip", "netns", "exec", ns, "iperf3", "-s", "-B", "10.0.2.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        vm = vmtest.Vmm(["--config-file", cfg, "--api-sock", sock], force=False,
                        prefix=["ip", "netns", "exec", ns])
        if vm.expect("NET1[", BOOT_TIMEOUT) and vm.expect("]", 5):
            status = vmtest.api(sock, "PATCH", "/network-interfaces/eth0", {
                "iface_id": "eth0",
                "tx_rate_limiter": {"bandwidth": {"size": 20 * mib, "refill_time": 1000}}})[0]
            vm.send("\n")
        r = vm.wait(120)
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", ns])
    rates = [int(x) / 8 / mib for x in re.findall(r"NET\d\[(\d+)\]", r.out)]
    R.check("rate limiter: a NIC limited to 10 MiB/s sends at 9-11 MiB/s (%s)" % rates,
            len(rates) >= 1 and 9 <= rates[0] <= 11, r.describe())
    R.check("rate limiter: PATCH to 20 MiB/s answers 204 and the NIC sends at 18-22 MiB/s (%s)"
            % rates, status == 204 and len(rates) == 2 and 18 <= rates[1] <= 22, r.describe())


def test_drive_rate_limiter():
    """A drive limited to 10 MiB/s reads at 10 MiB/s (within 10 %); PATCHed to 20 MiB/s, at
    20 MiB/s, without a reboot."""
    sock = os.path.join(TMP, "rl.sock")
    data = data_disk("rl-data.raw", 512)
    mib = 1 << 20
    limit = {"bandwidth": {"size": 10 * mib, "refill_time": 1000}}
    fio = ("fio --name=r --filename=/dev/vdb --rw=read --bs=64k --direct=1 --ioengine=libaio "
           "--iodepth=4 --time_based --runtime=8 --ramp_time=2 --output-format=terse"
           "|cut -d\\; -f7")
    cmd = "f(){ %s;}; echo BW1 $(f); read l; echo BW2 $(f)" % fio
    cfg = os.path.join(TMP, "rl.json")
    with open(cfg, "w") as f:
        json.dump(firecracker_config(cmd, drives=[{"drive_id": "data", "path_on_host": data,
                                                   "is_root_device": False,
                                                   "is_read_only": True,
                                                   "rate_limiter": limit}]), f)
    vm = vmtest.Vmm(["--config-file", cfg, "--api-sock", sock], force=False)
    status = None
    try:
        if vm.expect("BW1 ", BOOT_TIMEOUT) and vm.expect("\n", 5):
            status = vmtest.api(sock, "PATCH", "/drives/data", {
                "drive_id": "data",
                "rate_limiter": {"bandwidth": {"size": 20 * mib, "refill_time": 1000}}})[0]
            vm.send("\n")
        vm.expect("BW2 ", 120)
    finally:
        r = vm.wait(60)
    bw = [int(x) / 1024 for x in re.findall(r"BW\d (\d+)", r.out)]
    R.check("rate limiter: 10 MiB/s drive reads at 9-11 MiB/s (%s)" % bw,
            len(bw) >= 1 and 9 <= bw[0] <= 11, r.describe())
    R.check("rate limiter: PATCH to 20 MiB/s answers 204 and reads go at 18-22 MiB/s (%s)" % bw,
            status == 204 and len(bw) == 2 and 18 <= bw[1] <= 22, r.describe())


def main():
    if not os.path.exists(ROOTFS):
        R.skip("Firecracker API tests", "no root disk image (run guest/build-rootfs)")
        vmtest.exit_cleanly(R)
    tests = (test_getting_started, test_config_file_and_metrics, test_drive_rate_limiter,
             test_net_rate_limiter, test_mmds, test_bad_requests, test_pause_resume, test_ctrl_alt_del)
    wanted = sys.argv[1:]
    for test in tests:
        if not wanted or any(w in test.__name__ for w in wanted):
            vmtest.run_case(R, test)
    vmtest.exit_cleanly(R)


if __name__ == "__main__":
    main()
