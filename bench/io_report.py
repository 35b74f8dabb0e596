#!/usr/bin/python3
"""Turn bench/io_measure.py's JSON lines (one per VMM, test and boot) into the Markdown
tables of docs/performance.md, or with --summary into one JSON line per VMM and test
with the median of the boots."""
import json
import statistics
import sys

summary = sys.argv[1:2] == ["--summary"]
rows, env, commands = [], {}, {}
for line in open(sys.argv[-1]):
    line = line.strip()
    if line.startswith("env: "):
        env = json.loads(line[len("env: "):])
    elif line.startswith("commands: "):
        commands = json.loads(line[len("commands: "):])
    elif line.startswith("{"):
        rows.append(json.loads(line))

VMMS = ("vireo-vmm", "qemu")
# The tests the samples hold (a test length of 0 leaves some out).
TESTS = tuple(t for t in (
    ("randread", "fio 4 KiB random read, iodepth 32", "IOPS", "%.0f"),
    ("seqread", "fio 1 MiB sequential read, iodepth 8", "MiB/s", "%.1f"),
    ("seqwrite", "fio 1 MiB sequential write, iodepth 8", "MiB/s", "%.1f"),
    ("iperf3", "iperf3 guest to host, TCP, 1 stream", "Gbit/s", "%.3f"))
    if any(r["metric"] == t[0] for r in rows))


def fmt(v, f, unit=""):
    return "n/a" if v is None else (f % v) + (" " + unit if unit else "")


# Feature bits worth naming (virtio 1.2: 6 reserved bits; 5.1.3 net; 5.2.3 blk).
COMMON_BITS = {28: "INDIRECT_DESC", 29: "EVENT_IDX", 34: "RING_PACKED"}
DEVICE_BITS = {"blk": {2: "SEG_MAX", 9: "FLUSH", 12: "MQ", 13: "DISCARD", 14: "WRITE_ZEROES"},
               "net": {0: "CSUM", 7: "GUEST_TSO4", 11: "HOST_TSO4", 15: "MRG_RXBUF",
                       17: "CTRL_VQ", 22: "MQ"}}


def feature_names(kind, value):
    if value is None:
        return "n/a"
    bits = int(value, 16)
    names = {**COMMON_BITS, **DEVICE_BITS[kind]}
    return " ".join(n for b, n in sorted(names.items()) if bits >> b & 1) or "none of these"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# (vmm, test) -> {"median", "samples", "runs"}, the boots in the order they ran.
get = {}
for r in sorted(rows, key=lambda r: r["run"]):
    g = get.setdefault((r["vmm"], r["metric"]), {"samples": [], "runs": []})
    if r["value"] is not None:
        g["samples"].append(r["value"])
    g["runs"].append(r["result"])
for g in get.values():
    g["median"] = median(g["samples"])
if summary:
    for (vmm, test), g in sorted(get.items()):
        print(json.dumps({"metric": test, "vmm": vmm, "env": env.get("env"),
                          "engine": env.get("engine"), "median": g["median"],
                          "samples": g["samples"], "boots": len(g["runs"])}))
    sys.exit(0)


def per_unit(run, what):
    """Counts of one run divided by its I/O requests (fio) or MiB sent (iperf3)."""
    if "error" in run or not run.get("host"):
        return None
    units = run["bytes"] / 2**20 if run["test"] == "iperf3" else run.get("ios")
    if not units:
        return None
    host = run["host"]
    if what == "exits":
        n = host["kvm"].get("exits")
    elif what == "notify_exits":  # the guest's kicks that reached KVM as MMIO/PIO exits
        n = host["kvm"].get("mmio_exits", 0) + host["kvm"].get("io_exits", 0)
    elif what == "halt_exits":
        n = host["kvm"].get("halt_exits")
    elif what == "irqs":
        n = sum(run["irqs"].values())
    elif what == "vmm_cpu_us":
        n = host.get("vmm_cpu_s")
        n = None if n is None else n * 1e6
    return None if n is None else n / units


print("## I/O: vireo-vmm and QEMU, virtio-blk and virtio-net over PCI")
print()
print("Environment: %s; guest kernel %s, %s vCPUs, %s MiB; %s; data disk engine %s; "
      "%s boots per VMM, interleaved; medians." % (
          env.get("env", "?"), env.get("guest_kernel", "?"), env.get("vcpus", "?"),
          env.get("memory_mib", "?"), env.get("qemu", "QEMU ?"), env.get("engine", "?"),
          max((len(g["runs"]) for g in get.values()), default=0)))
print()
# Each round boots both VMMs minutes apart: the ratio within a round is less exposed to
# the load of the machine changing than the ratio of the medians.
by_round = {(r["vmm"], r["metric"], r["run"]): r["value"] for r in rows}


def round_ratios(test):
    rounds = sorted({run for (_, t, run) in by_round if t == test})
    return [by_round[("vireo-vmm", test, n)] / by_round[("qemu", test, n)] for n in rounds
            if by_round.get(("vireo-vmm", test, n)) and by_round.get(("qemu", test, n))]


print("| metric | vireo-vmm | QEMU | vireo / QEMU | per round: median ratio, rounds vireo >= QEMU |")
print("|---|---|---|---|---|")
for test, label, unit, f in TESTS:
    v = get.get(("vireo-vmm", test), {}).get("median")
    q = get.get(("qemu", test), {}).get("median")
    ratio = "n/a" if v is None or not q else "%.2f" % (v / q)
    ratios = round_ratios(test)
    paired = "%.2f, %d of %d" % (median(ratios), sum(x >= 1 for x in ratios),
                                 len(ratios)) if ratios else "n/a"
    print("| %s | %s | %s | %s | %s |" % (label, fmt(v, f, unit), fmt(q, f, unit), ratio, paired))
print()
print("Cost per request (fio: per I/O the guest's block layer issued; iperf3: per MiB sent), "
      "medians over the boots. Exits and VMM CPU time are counted by the harness between the "
      "guest's begin and end markers of each test (KVM's debugfs counters; the VMM process's "
      "user+system time less guest time); interrupts are the guest's /proc/interrupts for the "
      "device.")
print()
print("| test | VMM | KVM exits | exits to the VMM (MMIO/PIO) | HLT exits | guest interrupts "
      "| VMM CPU µs | fio's CPU % in the guest |")
print("|---|---|---|---|---|---|---|---|")
for test, label, unit, f in TESTS:
    for vmm in VMMS:
        runs = get.get((vmm, test), {}).get("runs", [])
        cells = [fmt(median(per_unit(r, w) for r in runs), f)
                 for w, f in (("exits", "%.2f"), ("notify_exits", "%.3f"), ("halt_exits", "%.2f"),
                              ("irqs", "%.2f"), ("vmm_cpu_us", "%.0f"))]
        cpu = median(r.get("guest_cpu_pct") for r in runs if "error" not in r)
        print("| %s | %s | %s | %s |" % (test, vmm, " | ".join(cells),
                                         fmt(cpu, "%.0f") if test != "iperf3" else "-"))
print()
print("Samples, in the order the boots ran:")
print()
for test, label, unit, f in TESTS:
    for vmm in VMMS:
        r = get.get((vmm, test))
        if r is None:
            continue
        errors = [x["error"] for x in r["runs"] if "error" in x]
        print("- %s, %s: %s %s%s" % (test, vmm, ", ".join(f % s for s in r["samples"]), unit,
                                     "; errors: %s" % errors if errors else ""))


def placement(r):
    """Which vCPUs took the device's interrupts and did the work (bench/io-guest.sh)."""
    irqs = {q: n for q, n in (r.get("irqs_per_vcpu") or {}).items() if sum(n)}
    text = "interrupts per vCPU %s; vCPUs busy %s %%" % (
        ", ".join("%s %s" % (q, "/".join(map(str, n))) for q, n in sorted(irqs.items())) or "n/a",
        "/".join(map(str, r.get("vcpu_busy_pct") or [])) or "n/a")
    if r.get("system_irqs"):
        text += "; per vCPU %s" % ", ".join(
            "%s %s" % (k, "/".join(map(str, v))) for k, v in sorted(r["system_irqs"].items()))
    if "fio_vcpus" in r:
        text += "; fio's threads, busiest first, on vCPU %s" % (
            "/".join(map(str, r["fio_vcpus"] or [])) or "n/a")
    return text


fio_boots = [(vmm, r) for vmm in VMMS for r in get.get((vmm, "randread"), {}).get("runs", [])
             if "error" not in r and r.get("vcpu_busy_pct")]
if fio_boots:
    print()
    print("Random reads, per boot: the disk's interrupts each vCPU took, each vCPU's busy time "
          "(steal included), and the vCPUs fio's threads were on halfway through:")
    print()
    for vmm, r in fio_boots:
        print("- %s: %.0f IOPS; %s" % (vmm, r["iops"], placement(r)))
if get.get(("vireo-vmm", "iperf3")) or get.get(("qemu", "iperf3")):
    print()
    print("iperf3's sender in the guest, per boot: the median congestion window over the "
          "intervals (bytes), the mean RTT, the mean TSO frame sent, the frames each "
          "receive interrupt carried, where the vCPUs' time went, and `ss -tin` halfway "
          "through:")
    print()
    for vmm in VMMS:
        for r in get.get((vmm, "iperf3"), {}).get("runs", []):
            if "error" in r:
                continue
            sender, frames, irqs = r.get("sender") or {}, r.get("frames") or {}, r.get("irqs", {})
            rx_irqs = sum(n for q, n in irqs.items() if q.startswith("input"))
            tso = r["bytes"] / frames["tx"] if frames.get("tx") else None
            per_irq = frames["rx"] / rx_irqs if frames.get("rx") and rx_irqs else None
            print("- %s: %.3f Gbit/s; cwnd %s, RTT %s µs, %s bytes per frame, %s frames per "
                  "receive interrupt" % (vmm, r["gbit_s"], sender.get("median_cwnd", "n/a"),
                                         sender.get("mean_rtt_us", "n/a"), fmt(tso, "%.0f"),
                                         fmt(per_irq, "%.2f")))
            host = r.get("host") or {}
            if host.get("threads_cpu_s"):
                print("  in %.1f s: the VMM's threads' CPU s %s; all CPUs busy %s s" % (
                    host.get("seconds", 0), ", ".join(
                        "%s %s" % (k, v) for k, v in sorted(host["threads_cpu_s"].items())
                        if v >= 0.05), host.get("machine_busy_s")))
            if r.get("guest_cpu"):
                print("  guest vCPUs, %% of their time: %s" % ", ".join(
                    "%s %s" % (k, v) for k, v in r["guest_cpu"].items()))
            if r.get("vcpu_busy_pct"):
                print("  %s" % placement(r))
            if r.get("tcp"):
                print("  `%s`" % r["tcp"])
if env:
    print()
    print("Versions: %s; fio %s in the guest, %s; environment kernel %s." % (
        env.get("qemu"), env.get("fio"), env.get("iperf3"), env.get("host_kernel")))
if env.get("features"):
    print()
    print("Features the guest driver negotiated (of those that matter here):")
    print()
    for vmm, f in env["features"].items():
        f = f or {}
        print("- %s: blk %s (%s); net %s (%s)" % (
            vmm, f.get("blk"), feature_names("blk", f.get("blk")), f.get("net"),
            feature_names("net", f.get("net"))))
if commands:
    print()
    print("Commands (each run as `ip netns exec vireo-bench-io COMMAND`):")
    print()
    for name, argv in commands.items():
        print("    %s" % " ".join("'%s'" % a if " " in a else a for a in argv))
