#!/usr/bin/python3
"""I/O benchmarks for issue 3: vireo-vmm side by side with QEMU (q35, virtio-blk-pci
and virtio-net-pci), same kernel, initramfs, root image, data disk and TAP set-up,
in the same environment (the sandbox where the host lacks VMX/SVM). Needs root:
it creates a network namespace. Prints one JSON object per VMM and test of the round.

Inside the guest (bench/io-guest.sh, written into the root image by bench/io):
  randread   fio 4 KiB random reads, iodepth 32, O_DIRECT, libaio   -> IOPS
  seqread    fio 1 MiB sequential reads, iodepth 8, O_DIRECT         -> MiB/s
  seqwrite   fio 1 MiB sequential writes, iodepth 8, O_DIRECT        -> MiB/s
  iperf3     guest -> host TCP, one stream                           -> Gbit/s
Around each test the harness reads KVM's exit counters (debugfs) and the VMM
process's CPU time, and the guest counts its device's interrupts.

Usage: bench/io_measure.py GUEST_DIR RUN
GUEST_DIR holds vmlinuz, initramfs.cpio.gz and rootfs.ext4 (bench/io copies them
there and writes the job into the image); RUN numbers the boot round: odd
rounds boot vireo-vmm first, even ones QEMU. The data disk is made afresh.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("VIREO_BUILD", "build"))
# vireo's --disk io= and QEMU's aio= for the data disk: io_uring or threads.
ENGINE = os.environ.get("VIREO_BENCH_IO_ENGINE", "uring")
RAND_S = int(os.environ.get("VIREO_BENCH_IO_RAND_S", "20"))
SEQ_S = int(os.environ.get("VIREO_BENCH_IO_SEQ_S", "15"))
NET_S = int(os.environ.get("VIREO_BENCH_IO_NET_S", "15"))
DATA_MIB = int(os.environ.get("VIREO_BENCH_IO_DATA_MIB", "1024"))
WORKDIR = os.environ.get("VIREO_BENCH_IO_DIR", "/tmp")  # tmpfs in the sandbox
# Which VMMs a round boots, for looking into one of them (bench/io needs both).
VMMS = os.environ.get("VIREO_BENCH_IO_VMMS", "vireo-vmm,qemu").split(",")
VCPUS, MEMORY_MIB = 2, 1024
NETNS, TAP = "vireo-bench-io", "vbio0"
HOST_IP, GUEST_IP = "10.77.0.1", "10.77.0.2"
MAC = "52:54:00:12:34:56"
SILENCE_S = 180  # no console output for this long: the VM is taken as hung
# A duration of 0 leaves those tests out (VIREO_BENCH_IO_SEQ_S covers both sequential ones).
TESTS = tuple(t for t, seconds in (("randread", RAND_S), ("seqread", SEQ_S),
                                   ("seqwrite", SEQ_S), ("iperf3", NET_S)) if seconds > 0)
if not RAND_S and not SEQ_S:
    DATA_MIB = min(DATA_MIB, 16)  # no fio test reads it; the guest job still wants a /dev/vdb
KVM_STATS = "/sys/kernel/debug/kvm"
KVM_COUNTERS = ("exits", "io_exits", "mmio_exits", "halt_exits", "halt_wakeup", "irq_exits",
                "irq_window_exits", "signal_exits", "insn_emulation", "halt_attempted_poll",
                "halt_successful_poll", "halt_poll_success_ns", "halt_poll_fail_ns",
                "host_state_reload", "request_irq_exits", "nmi_window_exits", "l1d_flush")


def progress(*args):
    print("io:", *args, file=sys.stderr, flush=True)


def run(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def commands(kernel, initrd, rootfs, data):
    cmdline = ("console=ttyS0 reboot=k panic=-1 quiet root=/dev/vda ro "
               "ip=%s::%s:24::eth0:off -- sh /root/vireo-io-job.sh %s %d %d %d"
               % (GUEST_IP, HOST_IP, HOST_IP, RAND_S, SEQ_S, NET_S))
    vireo = [os.path.join(BUILD, "vireo-vmm"), "--kernel", kernel, "--initrd", initrd,
             "--cpus", str(VCPUS), "--memory", str(MEMORY_MIB), "--console", "stdio",
             "--transport", "pci", "--disk", rootfs + ",ro",
             "--disk", "%s,io=%s" % (data, "uring" if ENGINE == "uring" else "thread"),
             "--net", "tap=%s,mac=%s" % (TAP, MAC), "--cmdline", cmdline]
    aio = "io_uring" if ENGINE == "uring" else "threads"
    qemu = ["qemu-system-x86_64", "-M", "q35", "-enable-kvm", "-cpu", "host",
            "-m", str(MEMORY_MIB), "-smp", str(VCPUS), "-name", "io,debug-threads=on",
            "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
            "-drive", "file=%s,if=none,id=d0,format=raw,readonly=on,cache=writeback,aio=%s"
            % (rootfs, aio),
            "-device", "virtio-blk-pci,drive=d0,num-queues=1",
            "-drive", "file=%s,if=none,id=d1,format=raw,cache=writeback,aio=%s" % (data, aio),
            "-device", "virtio-blk-pci,drive=d1,num-queues=1",
            "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no,vhost=off" % TAP,
            "-device", "virtio-net-pci,netdev=n0,mac=%s" % MAC]
    return {"vireo-vmm": vireo, "qemu": qemu}


def make_data_disk(path):
    """A raw file of DATA_MIB MiB of non-zero data, so that reads hit real pages."""
    block = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as f:
        for i in range(DATA_MIB):
            block[:8] = i.to_bytes(8, "little")
            f.write(block)


def netns_up():
    run("ip", "netns", "del", NETNS, check=False)
    run("ip", "netns", "add", NETNS)
    run("ip", "-n", NETNS, "link", "set", "lo", "up")
    run("ip", "-n", NETNS, "tuntap", "add", "dev", TAP, "mode", "tap")
    run("ip", "-n", NETNS, "addr", "add", HOST_IP + "/24", "dev", TAP)
    run("ip", "-n", NETNS, "link", "set", TAP, "up")


def netns_down():
    run("ip", "netns", "del", NETNS, check=False)


def kvm_counters():
    values = {}
    for name in KVM_COUNTERS:
        try:
            values[name] = int(open(os.path.join(KVM_STATS, name)).read())
        except (OSError, ValueError):
            pass
    return values


def vmm_cpu_s(pid):
    """CPU seconds the VMM process spent outside guest mode (all its threads)."""
    try:
        fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    utime, stime, guest = int(fields[11]), int(fields[12]), int(fields[40])
    return (utime + stime - guest) / os.sysconf("SC_CLK_TCK")


def thread_stats(pid):
    """Per thread of the VMM, by thread id: its name, CPU seconds, guest time included (a vCPU
    thread's time is mostly guest time), and context switches, voluntary or not (how often it
    slept or was preempted, which costs far more in a nested guest than on hardware)."""
    threads = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return threads
    for tid in tids:
        try:
            head, fields = open("/proc/%d/task/%s/stat" % (pid, tid)).read().rsplit(")", 1)
            status = open("/proc/%d/task/%s/status" % (pid, tid)).read()
        except OSError:
            continue
        f = fields.split()
        threads[tid] = (head.split("(", 1)[1],
                        (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"),
                        sum(int(line.split(":")[1]) for line in status.splitlines()
                            if line.split(":")[0].endswith("ctxt_switches")))
    return threads


def thread_deltas(a, b):
    """CPU seconds and switches per thread name between two snapshots. Matched by thread id:
    a thread that started meanwhile counts from zero, and one that ended is left out (its
    time is in vmm_cpu_s), so a worker replaced by another of the same name cannot make a
    negative figure."""
    cpu, switches = {}, {}
    for tid, (name, c, sw) in b.items():
        _, c0, sw0 = a.get(tid, (name, 0, 0))
        cpu[name] = cpu.get(name, 0) + c - c0
        switches[name] = switches.get(name, 0) + sw - sw0
    return {k: round(v, 2) for k, v in cpu.items()}, switches


def machine_busy_s():
    """CPU seconds all of this machine's CPUs spent busy (not idle or iowait)."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def snapshot(pid):
    return {"t": time.monotonic(), "kvm": kvm_counters(), "cpu": vmm_cpu_s(pid),
            "threads": thread_stats(pid), "busy": machine_busy_s()}


def delta(a, b):
    cpu, switches = thread_deltas(a["threads"], b["threads"])
    d = {"seconds": b["t"] - a["t"],
         "kvm": {k: b["kvm"][k] - a["kvm"][k] for k in b["kvm"] if k in a["kvm"]},
         "threads_cpu_s": cpu, "threads_switches": switches,
         "machine_busy_s": round(b["busy"] - a["busy"], 2)}
    if a["cpu"] is not None and b["cpu"] is not None:
        d["vmm_cpu_s"] = b["cpu"] - a["cpu"]
    return d


def boot_and_measure(name, argv):
    """One boot: {test: result} from the guest, with the host-side deltas added."""
    server = subprocess.Popen(["ip", "netns", "exec", NETNS, "iperf3", "-s", "-1", "-B", HOST_IP],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    errlog = open(os.path.join(WORKDIR, "vireo-bench-io.%s.err" % name), "w+")
    proc = subprocess.Popen(["ip", "netns", "exec", NETNS] + argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=errlog)
    results, marks, versions, tail = {}, {}, None, []
    buf = b""
    start = last = time.monotonic()
    try:
        while True:
            if not select.select([proc.stdout], [], [], 5)[0]:
                if time.monotonic() - last > SILENCE_S:
                    progress(name, "no console output for %d s: taken as hung" % SILENCE_S)
                    if name == "vireo-vmm" and proc.poll() is None:
                        # Its virtio queues' state (SIGUSR2), into the error log printed below.
                        proc.send_signal(signal.SIGUSR2)
                        time.sleep(1)
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            last = time.monotonic()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                tail = (tail + [line])[-30:]
                if not line.startswith("vireo-io: "):
                    continue
                word, _, rest = line[len("vireo-io: "):].partition(" ")
                if word == "begin":
                    marks[rest] = snapshot(proc.pid)
                elif word == "end" and rest in marks:
                    marks[rest] = delta(marks[rest], snapshot(proc.pid))
                    progress(name, "%s done (%.0f s since start)" % (rest, last - start))
                elif word == "result":
                    r = json.loads(rest)
                    r["host"] = marks.get(r["test"])
                    results[r["test"]] = r
                elif word == "versions":
                    versions = json.loads(rest)
                elif word == "error":
                    progress(name, "guest:", rest)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if server.poll() is None:
            server.kill()
        server.wait()
    missing = [t for t in TESTS if t not in results or "error" in results[t]]
    if missing:
        errlog.seek(0)
        progress(name, "exit status %s; missing or failed: %s" % (proc.returncode, missing))
        for t in missing:
            if t in results:
                progress(name, t, results[t]["error"])
        for line in tail[-15:] + errlog.read().splitlines()[-40:]:
            progress(name, "|", line)
    errlog.close()
    return results, versions


def value(r):
    """The headline figure of one test's result."""
    if "error" in r:
        return None
    return r["gbit_s"] if r["test"] == "iperf3" else (
        r["iops"] if r["test"] == "randread" else r["mib_s"])


def env_name():
    if os.environ.get("VIREO_IN_SANDBOX"):
        return "sandbox (QEMU TCG, nested kvm_amd)"
    return "host (%s)" % next((m for m in ("kvm_intel", "kvm_amd")
                               if os.path.exists("/sys/module/" + m)), "unknown")


def main():
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        sys.exit("usage: bench/io_measure.py GUEST_DIR RUN (bench/io prepares GUEST_DIR)")
    guest_dir, run_no = sys.argv[1], int(sys.argv[2])
    if os.geteuid() != 0:
        sys.exit("io: needs root (network namespace, TAP device)")
    for tool in ("qemu-system-x86_64", "iperf3", "ip"):
        if not shutil.which(tool):
            sys.exit("io: %s not found (scripts/install-deps installs it)" % tool)
    if not os.path.isdir(KVM_STATS):
        run("mount", "-t", "debugfs", "none", "/sys/kernel/debug", check=False)
    data = os.path.join(WORKDIR, "vireo-bench-io.data.raw")
    progress("run %d: writing the %d MiB data disk %s" % (run_no, DATA_MIB, data))
    make_data_disk(data)
    cmds = commands(*(os.path.join(guest_dir, f)
                      for f in ("vmlinuz", "initramfs.cpio.gz", "rootfs.ext4")), data)
    unknown = set(VMMS) - set(cmds)
    if unknown:
        sys.exit("io: VIREO_BENCH_IO_VMMS: unknown VMM %s (known: %s)"
                 % (", ".join(sorted(unknown)), ", ".join(cmds)))
    cmds = {vmm: argv for vmm, argv in cmds.items() if vmm in VMMS}
    env = env_name()
    versions = {}
    # Alternate the order between runs, so that neither VMM always goes first.
    order = list(cmds) if run_no % 2 == 1 else list(reversed(list(cmds)))
    netns_up()
    try:
        for vmm in order:
            for attempt in (1, 2):
                progress("run %d %s%s: booting" % (run_no, vmm, " (RETRY)" if attempt > 1 else ""))
                results, v = boot_and_measure(vmm, cmds[vmm])
                if all(t in results for t in TESTS) or attempt == 2:
                    break
            if v:
                versions[vmm] = v
            progress("run %d %s: %s" % (run_no, vmm, ", ".join(
                "%s %s" % (t, "n/a" if t not in results or value(results[t]) is None
                           else "%.4g" % value(results[t])) for t in TESTS)))
            for t in TESTS:
                r = results.get(t, {"test": t, "error": "no result (the guest did not get there)"})
                print(json.dumps({"metric": t, "vmm": vmm, "run": run_no, "env": env,
                                  "engine": ENGINE, "value": value(r), "result": r}), flush=True)
    finally:
        netns_down()
        os.unlink(data)
    qemu_version = run("qemu-system-x86_64", "--version").stdout.split("\n")[0]
    guest = next(iter(versions.values()), {})
    print("env: " + json.dumps(dict(
        guest_kernel=guest.get("guest_kernel"), fio=guest.get("fio"), iperf3=guest.get("iperf3"),
        features={vmm: v.get("features") for vmm, v in versions.items()}, qemu=qemu_version,
        host_kernel=os.uname().release, vcpus=VCPUS, memory_mib=MEMORY_MIB, env=env,
        engine=ENGINE, data_mib=DATA_MIB,
        seconds={"randread": RAND_S, "seq": SEQ_S, "iperf3": NET_S})))
    print("commands: " + json.dumps(cmds))


main()
