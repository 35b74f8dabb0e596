#!/usr/bin/python3
"""Tier 3: virtio devices with a real guest. Debian 12 boots from a
virtio-blk root disk (guest/build-rootfs) with the stock cloud kernel, over
virtio-pci and over virtio-mmio, and each device is used the way a user
would: files on disks, TCP over a TAP, vsock connections, hvc0 and
/dev/hwrng. The root disk is attached read-only and shared by every case;
cases that write get their own scratch disks.

Guest commands go on the kernel command line after ' -- '; the kernel
takes at most 31 words there (more is a panic, "Too many boot init vars"),
so keep them short. panic=-1 makes any guest panic end the VM at once
instead of hanging until the timeout."""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import vmtest  # noqa: E402

R = vmtest.Results("tier 3: virtio devices")
if os.environ.get("VIREO_E2E_DUMP_AFTER"):
    # Debugging a case that hangs: print every thread's stack after this many seconds.
    import faulthandler
    faulthandler.dump_traceback_later(int(os.environ["VIREO_E2E_DUMP_AFTER"]), exit=True)
BOOT_TIMEOUT = int(os.environ.get("VIREO_E2E_BOOT_TIMEOUT", "180"))


KERNEL, ROOTFS, INITRD = vmtest.root_disk_guest()
TMP = tempfile.mkdtemp(prefix="vireo-e2e-")


def vmm_args(command, disks=(), transport="pci", memory="512", extra=(), console="ttyS0",
             kernel_args=""):
    assert len(command.split()) <= 31, "more than 31 init arguments: %s" % command
    cmdline = "console=%s reboot=k panic=-1 root=/dev/vda ro quiet %s -- %s" % (
        console, kernel_args, command)
    argv = ["--kernel", KERNEL, "--initrd", INITRD, "--memory", memory, "--transport", transport,
            "--disk", ROOTFS + ",ro"]
    for d in disks:
        argv += ["--disk", d]
    return argv + list(extra) + ["--cmdline", cmdline]


def boot(command, **kw):
    """Boot the root disk, run `command`, power off; a hung boot is retried once (see linux.py)."""
    argv = vmm_args(command, **kw)
    r = vmtest.run_vmm(argv, timeout=BOOT_TIMEOUT, force=False)
    if r.timed_out:
        print("RETRY %s: the guest hung for %d s; once more." % (command, BOOT_TIMEOUT),
              flush=True)
        r = vmtest.run_vmm(argv, timeout=BOOT_TIMEOUT, force=False)
    return r


def guest_lines(r):
    out = r.out.replace("\r", "")
    start = out.find("vireo-guest: init started")
    end = out.find("vireo-guest: exit status")
    return out[start:end].splitlines()[1:] if start >= 0 and end > start else []


def scratch_disk(name, size_mib=64, mkfs=True):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    if mkfs:
        subprocess.run(["mkfs.ext4", "-q", "-F", path], check=True)
    return path


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- disks --------------------------------------------------------------------------------

def test_root_disk():
    for transport in ("pci", "mmio"):
        r = boot("findmnt -n -o SOURCE /; cat /etc/debian_version; uname -r", transport=transport)
        lines = guest_lines(r)
        ok = (r.status == 0 and len(lines) >= 3 and lines[0] == "/dev/vda"
              and lines[1].startswith("12."))
        R.check("Debian 12 boots from a virtio-blk root disk over virtio-%s and runs a command"
                % transport, ok, r.describe())


def test_durability():
    """The guest writes and syncs a file; vireo-vmm is SIGKILLed; the image has the file."""
    disk = scratch_disk("durable.ext4")
    cmd = ("mount /dev/vdb /mnt && head -c 3000000 /dev/urandom >/mnt/data && "
           "sha256sum /mnt/data && sync && echo SYNCED; sleep 3600")
    vm = vmtest.Vmm(vmm_args(cmd, disks=[disk]), force=False, stdin=subprocess.DEVNULL)
    synced = vm.expect("SYNCED", BOOT_TIMEOUT)
    vm.signal(signal.SIGKILL)
    r = vm.wait(30)
    m = re.search(r"([0-9a-f]{64})\s+/mnt/data", r.out)
    host = subprocess.run(["debugfs", "-R", "cat /data", disk], capture_output=True)
    got = hashlib.sha256(host.stdout).hexdigest()
    R.check("a file the guest synced survives SIGKILL of the VMM (read back with debugfs)",
            synced and m is not None and r.status == -signal.SIGKILL and got == m.group(1),
            "guest sha=%s host sha=%s\n%s" % (m.group(1) if m else None, got, r.describe()))


def test_read_only_disk():
    disk = scratch_disk("ro.ext4")
    before = sha256_file(disk)
    cmd = ("cat /sys/block/vdb/ro; dd if=/dev/zero of=/dev/vdb count=1 oflag=direct; "
           "mount -o ro /dev/vdb /mnt && ls /mnt")
    r = boot(cmd, disks=[disk + ",ro"])
    out = "\n".join(guest_lines(r))
    R.check("a read-only disk is read-only in the guest, writes fail, reads work",
            r.status == 0 and out.startswith("1") and "Operation not permitted" in out
            and "lost+found" in out, r.describe())
    R.check("a read-only disk's image is unchanged", sha256_file(disk) == before)


def test_disk_serial_and_discard():
    disk = scratch_disk("serial.img", mkfs=False)
    with open(disk, "r+b") as f:
        f.write(os.urandom(8 << 20))
    blocks_before = os.stat(disk).st_blocks
    cmd = ("cat /sys/block/vdb/serial; echo; "
           "blkdiscard -o 0 -l 4194304 /dev/vdb && echo DISCARDED; "
           "cat /sys/block/vdb/queue/write_cache")
    r = boot(cmd, disks=[disk + ",id=scratch,serial=vireo-serial-1"])
    lines = guest_lines(r)
    blocks_after = os.stat(disk).st_blocks
    R.check("--disk serial= is the guest's /sys/block/vdb/serial",
            r.status == 0 and lines[:1] == ["vireo-serial-1"], r.describe())
    R.check("blkdiscard in the guest punches a hole in the image (%d -> %d blocks)" % (
        blocks_before, blocks_after),
        "DISCARDED" in lines and blocks_after < blocks_before - 4000, r.describe())


# --- network ------------------------------------------------------------------------------

NETNS_HELPER = r'''
import hashlib, socket, sys
mode, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if mode == "recv":
    srv.bind(("10.0.2.1", port)); srv.listen(1)
    print("LISTENING", flush=True)
    c, _ = srv.accept()
    h = hashlib.sha256(); n = 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b); n += len(b)
    print("RECEIVED %d %s" % (n, h.hexdigest()), flush=True)
else:
    import time
    h = hashlib.sha256(); n = 0
    for attempt in range(600):
        try:
            c = socket.create_connection(("10.0.2.2", port), timeout=5)
            break
        except OSError:
            time.sleep(0.5)
    block = hashlib.sha256(b"vireo").digest() * 2048
    while n < size:
        chunk = block[: min(len(block), size - n)]
        c.sendall(chunk); h.update(chunk); n += len(chunk)
    c.close()
    print("SENT %d %s" % (n, h.hexdigest()), flush=True)
'''


def netns_run(ns, argv, **kw):
    return subprocess.run(["ip", "netns", "exec", ns] + argv, **kw)


def test_network():
    if not os.path.exists("/dev/net/tun"):
        R.skip("virtio-net TCP transfer", "no /dev/net/tun on this host")
        return
    ns = "vireo-e2e-%d" % os.getpid()
    helper = os.path.join(TMP, "netns_helper.py")
    with open(helper, "w") as f:
        f.write(NETNS_HELPER)
    size = 100 * 1000 * 1000
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        netns_run(ns, ["ip", "link", "set", "lo", "up"], check=True)
        netns_run(ns, ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"], check=True)
        netns_run(ns, ["ip", "addr", "add", "10.0.2.1/24", "dev", "tap0"], check=True)
        netns_run(ns, ["ip", "link", "set", "tap0", "up"], check=True)
        recv = subprocess.Popen(["ip", "netns", "exec", ns, "python3", helper, "recv", "5001",
                                 "0"], stdout=subprocess.PIPE, text=True)
        recv.stdout.readline()  # LISTENING
        # The host connects only once the guest listens: SYNs to a guest
        # that is not up yet fail neighbour discovery, and the socket can
        # keep that error.
        cmd = ("head -c %d /dev/urandom >/tmp/blob && sha256sum /tmp/blob && "
               "socat -u FILE:/tmp/blob TCP:10.0.2.1:5001 && rm /tmp/blob && echo LISTEN && "
               "socat -u TCP-LISTEN:5002,reuseaddr - | sha256sum" % size)
        vm = vmtest.Vmm(vmm_args(cmd, memory="768",
                                 extra=["--net", "tap=tap0,mac=52:54:00:00:00:02"],
                                 kernel_args="ip=10.0.2.2::10.0.2.1:255.255.255.0::eth0:off"),
                        force=False, stdin=subprocess.DEVNULL, prefix=["ip", "netns", "exec", ns])
        send = None
        # A healthy run needs about 30 s in the sandbox for the boot and both transfers.
        if vm.expect("LISTEN", BOOT_TIMEOUT):
            time.sleep(1)
            send = subprocess.Popen(["ip", "netns", "exec", ns, "python3", helper, "send", "5002",
                                     str(size)], stdout=subprocess.PIPE, text=True)
        r = vm.wait(BOOT_TIMEOUT)
        try:
            recv_out = recv.communicate(timeout=30)[0]
            send_out = send.communicate(timeout=30)[0] if send else ""
        except subprocess.TimeoutExpired:
            recv.kill()
            if send:
                send.kill()
            recv_out = send_out = ""
        sums = re.findall(r"([0-9a-f]{64})", "\n".join(guest_lines(r)))
        got = re.search(r"RECEIVED (\d+) ([0-9a-f]{64})", recv_out)
        sent = re.search(r"SENT (\d+) ([0-9a-f]{64})", send_out)
        R.check("100 MB guest to host over virtio-net and a TAP arrives with a matching SHA-256",
                got is not None and len(sums) >= 1 and int(got.group(1)) == size
                and got.group(2) == sums[0], "%s\n%s" % (recv_out, r.describe()))
        R.check("100 MB host to guest arrives with a matching SHA-256",
                sent is not None and len(sums) >= 2 and sent.group(2) == sums[1],
                "%s\n%s" % (send_out, r.describe()))
    finally:
        subprocess.run(["ip", "netns", "del", ns])


# --- vsock --------------------------------------------------------------------------------

def host_connect(uds, port, payload, results, i):
    """Firecracker's protocol: CONNECT <port>\\n, then OK <hostport>\\n, then data."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(uds)
        s.sendall(b"CONNECT %d\n" % port)
        line = b""
        while not line.endswith(b"\n"):
            b = s.recv(1)
            if not b:
                break
            line += b
        if re.match(rb"OK \d+\n$", line) is None:
            results[i] = "no OK line, got %r" % line
            return
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        echo = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            echo += b
        results[i] = echo == payload or "echo differs (%d of %d bytes)" % (len(echo), len(payload))
    except OSError as e:
        results[i] = "error: %s" % e


def host_listener(path, expected, received):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    srv.settimeout(BOOT_TIMEOUT)

    def serve(c):
        data = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
        received.append(hashlib.sha256(data).hexdigest())
        c.close()

    threads = []
    try:
        for _ in range(expected):
            c, _ = srv.accept()
            t = threading.Thread(target=serve, args=(c,))
            t.start()
            threads.append(t)
    except OSError:
        pass
    for t in threads:
        t.join(60)
    srv.close()


def test_vsock():
    uds = os.path.join(TMP, "v.sock")
    received = []
    nconn = 4
    listener = threading.Thread(target=host_listener, args=(uds + "_6000", nconn, received))
    listener.start()
    # The guest starts its echo listener on port 5000 and waits until socat
    # says it listens before its four connections start, so once their
    # checksums are printed the host's connections find it. (Spaces are
    # sparse: init takes at most 31 arguments.) -v: a refused or unanswered
    # connection is named in the monitor's stderr.
    cmd = ("socat -dd VSOCK-LISTEN:5000,fork EXEC:cat 2>/tmp/l& "
           "until grep -q listening /tmp/l;do sleep 0.1;done; "
           "for i in 1 2 3 4;do (head -c99999 /dev/urandom>/tmp/g$i;"
           "socat -u FILE:/tmp/g$i VSOCK-CONNECT:2:6000;sha256sum /tmp/g$i)& done;sleep 3600")
    vm = vmtest.Vmm(vmm_args(cmd, extra=["-v", "--vsock", "cid=3,uds=%s" % uds]), force=False,
                    stdin=subprocess.DEVNULL)
    ready = all(vm.expect("  /tmp/g%d" % i, BOOT_TIMEOUT) for i in range(1, nconn + 1))
    results = [None] * nconn
    threads = [threading.Thread(target=host_connect,
                                args=(uds, 5000, os.urandom(200000 + i), results, i))
               for i in range(nconn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    vm.signal(signal.SIGTERM)
    r = vm.wait(30)
    listener.join(5)
    guest_sums = sorted(re.findall(r"([0-9a-f]{64})\s+/tmp/g\d", r.out))
    R.check("vsock: %d guest connections to a host listener at <uds>_6000 deliver their data"
            % nconn, ready and len(guest_sums) == nconn and sorted(received) == guest_sums,
            "received=%s guest=%s\n%s" % (received, guest_sums, r.describe()))
    R.check("vsock: %d host connections (CONNECT 5000) at once get OK and their data echoed"
            % nconn, ready and all(x is True for x in results),
            "results=%s\n%s" % (results, r.describe()))


# --- balloon ------------------------------------------------------------------------------

def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def wait_balloon(sock_path, actual_mib, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, stats = vmtest.api(sock_path, "GET", "/balloon/statistics")
        if status == 200 and stats["actual_mib"] == actual_mib:
            return True
        time.sleep(0.5)
    return False


def test_balloon():
    """Inflate by 200 MiB: the monitor's RSS drops; deflate: the guest has the memory again."""
    sock = os.path.join(TMP, "api.sock")
    # The guest touches most of its free memory (python zeroes a 280 MiB
    # buffer), frees it, then waits for the host at each step on its console.
    cmd = ("python3 -c 'b=bytearray(280<<20)'; echo FILLED; read a; grep MemTotal /proc/meminfo; "
           "read b; grep MemTotal /proc/meminfo")
    vm = vmtest.Vmm(vmm_args(cmd, memory="384", extra=["--balloon=stats=1", "--api-sock", sock]),
                    force=False)
    filled = vm.expect("FILLED", BOOT_TIMEOUT)
    before = rss_mib(vm.proc.pid)
    status, _ = (vmtest.api(sock, "PATCH", "/balloon", {"amount_mib": 200}) if filled
                 else (None, None))
    inflated = status == 204 and wait_balloon(sock, 200)
    after = rss_mib(vm.proc.pid)
    vm.send("\n")
    vm.expect("MemTotal", 30)
    status2, _ = (vmtest.api(sock, "PATCH", "/balloon", {"amount_mib": 0}) if inflated
                  else (None, None))
    deflated = status2 == 204 and wait_balloon(sock, 0)
    vm.send("\n")
    r = vm.wait(BOOT_TIMEOUT)
    totals = [int(x) for x in re.findall(r"MemTotal:\s+(\d+) kB", r.out)]
    R.check("balloon: inflating by 200 MiB lowers the monitor's RSS by at least 150 MiB "
            "(%.0f -> %.0f MiB)" % (before, after),
            filled and inflated and before - after >= 150, r.describe())
    R.check("balloon: deflating gives the guest its 200 MiB back (MemTotal %s kB)" % totals,
            deflated and len(totals) == 2 and totals[1] - totals[0] >= 200 * 1024 - 64
            and r.status == 0, r.describe())


# --- console and entropy --------------------------------------------------------------------

def test_hvc0_and_hwrng():
    cmd = ("cat /sys/class/tty/console/active; cat /sys/class/misc/hw_random/rng_current; "
           "dd if=/dev/hwrng bs=64 count=1 2>/dev/null | wc -c")
    r = boot(cmd, extra=["--virtio-console", "--rng"], console="hvc0")
    lines = guest_lines(r)
    R.check("--virtio-console: the guest's console is hvc0",
            r.status == 0 and lines[:1] == ["hvc0"], r.describe())
    R.check("--rng: /dev/hwrng is virtio_rng and gives entropy",
            len(lines) >= 3 and lines[1].startswith("virtio_rng") and lines[2] == "64",
            r.describe())


def main():
    if not os.path.exists(ROOTFS):
        R.skip("virtio device tests", "no root disk image (run guest/build-rootfs)")
        vmtest.exit_cleanly(R)
    tests = (test_root_disk, test_durability, test_read_only_disk, test_disk_serial_and_discard,
             test_hvc0_and_hwrng, test_balloon, test_vsock, test_network)
    # Arguments pick cases by name, e.g. `devices.py vsock network`.
    wanted = sys.argv[1:]
    try:
        for test in tests:
            if not wanted or any(w in test.__name__ for w in wanted):
                vmtest.run_case(R, test)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    vmtest.exit_cleanly(R)


if __name__ == "__main__":
    main()
