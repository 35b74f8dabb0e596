#!/usr/bin/python3
"""Benchmarks for issue 2, vireo-vmm side by side with QEMU -M microvm on the
same kernel and initrd, in the same environment (the sandbox where the host
lacks VMX/SVM). Prints one JSON object per measurement.

  (a) exec -> first KVM_RUN          (LD_PRELOAD shim, bench/firstrun.c)
  (b) monitor RSS beyond the guest pages it touched (/proc/PID/smaps)
  (c) exec -> "vireo-guest: init started" on the serial console
"""
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("VIREO_BUILD", "build"))
RUNS = int(os.environ.get("VIREO_BENCH_RUNS", "5"))
# (a) takes milliseconds, so it gets more samples: a host that is itself a VM is noisy.
RUNS_A = int(os.environ.get("VIREO_BENCH_RUNS_A", "21"))
MARKER = b"vireo-guest: init started"
BOOT_TIMEOUT = 60  # a boot that has not reached init by then counts as hung
MEMORY_MIB = 128
CMDLINE = "console=ttyS0 reboot=k quiet"


def guest_dir():
    return subprocess.run([os.path.join(ROOT, "guest", "build-default"), "--print-dir"],
                          capture_output=True, text=True, check=True).stdout.strip()


def commands(kernel, initrd, cmdline):
    vireo = [os.path.join(BUILD, "vireo-vmm"), "--kernel", kernel, "--initrd", initrd,
             "--cpus", "1", "--memory", str(MEMORY_MIB), "--cmdline", cmdline]
    if os.path.exists("/sys/module/kvm_pvm"):
        vireo.append("--force")
    qemu = ["qemu-system-x86_64", "-M", "microvm,accel=kvm", "-cpu", "host", "-smp", "1",
            "-m", str(MEMORY_MIB), "-L", "/usr/share/qemu", "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot", "-serial", "stdio", "-kernel", kernel, "-initrd", initrd,
            "-append", cmdline]
    return {"vireo-vmm": vireo, "qemu-microvm": qemu}


def progress(*args):
    print("measure:", *args, file=sys.stderr, flush=True)


def first_kvm_run(argv):
    """(a): nanoseconds from exec to the first KVM_RUN ioctl."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t")
        env = dict(os.environ, LD_PRELOAD=os.path.join(BUILD, "bench", "firstrun.so"),
                   VIREO_BENCH_OUT=out, VIREO_BENCH_EXIT="1")
        subprocess.run([os.path.join(BUILD, "bench", "stamp-exec")] + argv, env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)
        return int(open(out).read()) if os.path.exists(out) else None


def read_until(proc, needle, timeout):
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if select.select([proc.stdout], [], [], left)[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            buf += chunk
    return time.monotonic()


def guest_ram_kib(pid):
    """(Rss of the whole process, Rss of the guest-RAM mapping) in KiB."""
    total = ram = 0
    current_is_ram = False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            if "-" in fields[0] and len(fields) >= 5:  # a mapping header
                start, end = (int(x, 16) for x in fields[0].split("-"))
                size_kib = (end - start) // 1024
                name = fields[5] if len(fields) > 5 else ""
                # vireo: the named mapping where the kernel names it; QEMU and older
                # kernels: the anonymous mapping the size of guest RAM.
                current_is_ram = ("vireo-guest-ram" in line or
                                  (name == "" and MEMORY_MIB * 1024 <= size_kib
                                   <= MEMORY_MIB * 1024 + 4096))
            elif fields[0] == "Rss:":
                kib = int(fields[1])
                total += kib
                if current_is_ram:
                    ram += kib
    return total, ram


def boot_to_marker(argv, sample_rss):
    """(c) seconds from exec to the marker, and (b) RSS once the guest is in init."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    seen = read_until(proc, MARKER, BOOT_TIMEOUT)
    rss = None
    if seen is not None and sample_rss:
        time.sleep(1.0)
        rss = guest_ram_kib(proc.pid)
    proc.kill()
    proc.wait()
    return (seen - start if seen else None), rss


def main():
    g = guest_dir()
    results = []
    # VIREO_BENCH_KERNEL picks the kernel (default: the guest's Debian cloud kernel).
    kernel = os.environ.get("VIREO_BENCH_KERNEL") or os.path.join(g, "vmlinuz")
    kernel_name = "%s (%.1f MiB)" % (os.path.basename(os.path.dirname(kernel)) + "/" +
                                     os.path.basename(kernel), os.path.getsize(kernel) / 2**20)
    # The init waits forever after its command, so the VM is still up when RSS is read.
    cmds = commands(kernel, os.path.join(g, "initramfs.cpio.gz"),
                    CMDLINE + " vireo.end=none -- true")
    env_name = "sandbox (QEMU TCG, nested kvm_amd)" if os.environ.get("VIREO_IN_SANDBOX") \
        else "host (%s)" % next((m for m in ("kvm_intel", "kvm_amd", "kvm_pvm")
                                 if os.path.exists("/sys/module/" + m)), "unknown")
    only = sys.argv[1:] or ["a", "b", "c"]
    for name, argv in cmds.items():
        if "a" in only:
            progress("(a)", name)
            samples = [first_kvm_run(argv) for _ in range(RUNS_A)]
            samples = [s for s in samples if s]
            results.append({"metric": "a", "vmm": name, "env": env_name,
                            "median_ms": statistics.median(samples) / 1e6 if samples else None,
                            "samples_ms": [round(s / 1e6, 2) for s in samples]})
        if "b" in only or "c" in only:
            times, overheads = [], []
            for i in range(RUNS):
                progress("(b, c)", name, "run", i + 1)
                t, rss = boot_to_marker(argv, sample_rss=("b" in only))
                if t is not None:
                    times.append(t)
                else:
                    progress("(b, c)", name, "run", i + 1, "did not reach init in %d s" % BOOT_TIMEOUT)
                if rss:
                    overheads.append((rss[0] - rss[1], rss[1]))
            if "c" in only:
                results.append({"metric": "c", "vmm": name, "env": env_name,
                                "median_s": statistics.median(times) if times else None,
                                "samples_s": [round(t, 3) for t in times],
                                "hung": RUNS - len(times)})
            if "b" in only:
                results.append({"metric": "b", "vmm": name, "env": env_name,
                                "median_overhead_mib": statistics.median(
                                    o for o, _ in overheads) / 1024 if overheads else None,
                                "guest_touched_mib": statistics.median(
                                    r for _, r in overheads) / 1024 if overheads else None})
    for r in results:
        r["kernel"] = kernel_name
        print(json.dumps(r), flush=True)
    print("commands: " + json.dumps(cmds))


main()
