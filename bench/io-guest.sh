#!/bin/sh
# The job bench/io_measure.py runs inside the root-disk guest (guest/README.md,
# "Root-disk guest"). bench/io writes it into its copy of the root image as
# /root/vireo-io-job.sh; the kernel command line ends with
#   -- sh /root/vireo-io-job.sh HOST RAND_S SEQ_S NET_S
# It measures the data disk /dev/vdb with fio and the NIC eth0 with iperf3
# against HOST, then prints one "vireo-io: result {JSON}" line per test.
# A duration of 0 leaves its tests out (SEQ_S covers both sequential ones).
# "vireo-io: begin NAME" and "vireo-io: end NAME" bracket each test, so that
# the harness outside can read the VMM's and KVM's counters at those moments.
# Plain POSIX sh (dash); the results are summarised by the image's python3.
set -u
host=$1 rand_s=$2 seq_s=$3 net_s=$4
disk=/dev/vdb
out=/tmp/vireo-io
mkdir -p "$out"

say() {
    echo "vireo-io: $*"
}

# net_counts: eth0's frames received and sent, one per line.
net_counts() {
    cat /sys/class/net/eth0/statistics/rx_packets /sys/class/net/eth0/statistics/tx_packets \
        2>/dev/null
}

# step NAME COMMAND...: run one test, its output (JSON) and its interrupt
# and frame counts before and after kept in $out.
step() {
    name=$1
    shift
    say begin "$name"
    cat /proc/interrupts >"$out/$name.irq0"
    cat /proc/stat >"$out/$name.stat0"
    net_counts >"$out/$name.net0"
    "$@" >"$out/$name.json" 2>"$out/$name.err"
    echo $? >"$out/$name.rc"
    net_counts >"$out/$name.net1"
    cat /proc/stat >"$out/$name.stat1"
    cat /proc/interrupts >"$out/$name.irq1"
    say end "$name"
}

# task_vcpus COMM: for each thread named COMM, the vCPU it is on now and the
# CPU time it has used (clock ticks), one thread per line.
task_vcpus() {
    for t in /proc/[0-9]*/task/[0-9]*; do
        comm=$(cat "$t/comm" 2>/dev/null) && [ "$comm" = "$1" ] &&
            awk '{ print $39, $14 + $15 }' "$t/stat" 2>/dev/null
    done
}

# task_pid COMM: the process named COMM (the first found).
task_pid() {
    for p in /proc/[0-9]*; do
        [ "$(cat "$p/comm" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}" && return 0
    done
    return 1
}

# fio_step NAME RW BLOCKSIZE DEPTH SECONDS
fio_step() {
    # Halfway through, where fio runs: set against the vCPU that takes the
    # disk's interrupts, it tells whether completions wake fio across vCPUs.
    (sleep $(($5 / 2 + 2)) && task_vcpus fio >"$out/$1.vcpus") &
    step "$1" fio --name="$1" --filename="$disk" --rw="$2" --bs="$3" --iodepth="$4" \
        --direct=1 --ioengine=libaio --time_based --runtime="$5" --ramp_time=2 \
        --norandommap --randrepeat=0 --output-format=json
    wait
}

[ -b "$disk" ] || {
    say error "no $disk"
    exit 1
}
# The virtio device names (virtioN) behind the disk and the NIC, to find
# their queues' lines in /proc/interrupts.
blk_dev=$(basename "$(readlink -f /sys/block/vdb/device)")
net_dev=$(basename "$(readlink -f /sys/class/net/eth0/device)" 2>/dev/null)

# Warm-up: load fio, libaio, iperf3 and python3 from the root disk into the
# page cache now, so that the first test's counters do not include it.
fio --name=warmup --filename="$disk" --rw=read --bs=1M --size=16M --direct=1 \
    --ioengine=libaio --output-format=json >/dev/null 2>&1
iperf3 --version >/dev/null 2>&1
python3 -c 'import json, platform, subprocess' >/dev/null 2>&1

if [ "$rand_s" -gt 0 ]; then
    fio_step randread randread 4k 32 "$rand_s"
fi
if [ "$seq_s" -gt 0 ]; then
    fio_step seqread read 1M 8 "$seq_s"
    fio_step seqwrite write 1M 8 "$seq_s"
fi
if [ "$net_s" -gt 0 ]; then
    # Halfway through, the sender's TCP state (cwnd, RTT, pacing rate, and
    # how long it was limited by the window, the send buffer or the
    # application) tells what holds the stream back.
    (sleep $((net_s / 2 + 2)) && ss -tin dst "$host" >"$out/iperf3.ss" 2>&1) &
    # Where the sender runs, once a second: the guest's scheduler places it,
    # and whether it shares a vCPU with the NIC's interrupts changes the cost.
    (sleep 3 && sender=$(task_pid iperf3) && for _ in $(seq "$net_s"); do
        awk '{ print $39, $14 + $15 }' "/proc/$sender/stat" 2>/dev/null
        sleep 1
    done >"$out/iperf3.vcpus") &
    step iperf3 iperf3 -c "$host" -t "$net_s" -O 2 -J
    wait
fi

python3 - "$out" "$blk_dev" "$net_dev" <<'EOF'
import json
import os
import platform
import subprocess
import sys

out, blk_dev, net_dev = sys.argv[1:4]


def interrupt_rows(path):
    """/proc/interrupts as {row: [count per vCPU]}: numbered rows under their last
    field (a virtio queue's "virtioN-QUEUE"), the others under their label (LOC...)."""
    rows = {}
    for line in open(path):
        fields = line.split()
        if not fields or not fields[0].endswith(":"):
            continue  # the CPU0 CPU1 ... header
        counts = []
        for f in fields[1:]:
            if not f.isdigit():
                break
            counts.append(int(f))
        label = fields[0][:-1]
        rows[fields[-1] if label.isdigit() else label] = counts
    return rows


def interrupt_delta(name):
    """Each /proc/interrupts row's count per vCPU during test `name`."""
    before = interrupt_rows("%s/%s.irq0" % (out, name))
    after = interrupt_rows("%s/%s.irq1" % (out, name))
    return {k: [a - b for a, b in zip(v, before.get(k, [0] * len(v)))] for k, v in after.items()}


def device_irqs(delta, device):
    """Interrupts per queue of virtio device `device`, one count per vCPU."""
    prefix = device + "-"
    return {k[len(prefix):]: v for k, v in delta.items() if k.startswith(prefix)}


def totals(per_vcpu):
    return {q: sum(n) for q, n in per_vcpu.items()}


def system_irqs(delta):
    """The architecture's own interrupts per vCPU: LOC (local timer), RES
    (rescheduling IPI), CAL (function-call IPI), TLB (shootdown). The ones a
    VMM changes by how and where it injects interrupts."""
    return {k: delta[k] for k in ("LOC", "RES", "CAL", "TLB") if k in delta}


STAT_COLS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def stat_delta(name):
    """/proc/stat's cpu lines during test `name`: {"cpu": [...], "cpu0": [...], ...},
    the STAT_COLS of each."""
    rows = []
    for suffix in ("stat0", "stat1"):
        rows.append({f[0]: [int(x) for x in f[1:1 + len(STAT_COLS)]]
                     for f in (line.split() for line in open("%s/%s.%s" % (out, name, suffix)))
                     if f and f[0].startswith("cpu")})
    zero = [0] * len(STAT_COLS)
    return {c: [b - a for a, b in zip(rows[0].get(c, zero), v)] for c, v in rows[1].items()}


def vcpu_deltas(name):
    """stat_delta's rows of each vCPU, in vCPU order; None when the files are missing."""
    try:
        delta = stat_delta(name)
    except (OSError, ValueError):
        return None
    return [delta[c] for c in sorted((c for c in delta if c != "cpu"), key=lambda c: int(c[3:]))]


def vcpu_busy(name):
    """Each vCPU's busy time during the test, in %, steal included."""
    rows = vcpu_deltas(name)
    if rows is None:
        return None
    idle = [d[STAT_COLS.index("idle")] + d[STAT_COLS.index("iowait")] for d in rows]
    return [round(100.0 * (sum(d) - i) / (sum(d) or 1), 1) for d, i in zip(rows, idle)]


def vcpu_time(name):
    """Where each vCPU's time went during the test, in % of its time (STAT_COLS that are
    not zero): tells a vCPU busy with work from one whose time was stolen by the host."""
    rows = vcpu_deltas(name)
    if rows is None:
        return None
    return [{c: round(100.0 * x / (sum(d) or 1), 1) for c, x in zip(STAT_COLS, d) if x}
            for d in rows]


def task_vcpus(name):
    """The vCPU of each sampled thread (fio: halfway through, the busiest thread, the
    job's, first; iperf3: once a second)."""
    try:
        threads = [[int(x) for x in line.split()]
                   for line in open("%s/%s.vcpus" % (out, name)) if line.strip()]
        return [vcpu for vcpu, ticks in sorted(threads, key=lambda t: -t[1])]
    except (OSError, ValueError):
        return None


def fio_result(name, direction):
    job = json.load(open("%s/%s.json" % (out, name)))
    side = job["jobs"][0][direction]
    util = (job.get("disk_util") or [{}])[0]
    irqs = interrupt_delta(name)
    per_vcpu = device_irqs(irqs, blk_dev)
    return {"iops": side["iops"], "mib_s": side["bw_bytes"] / 2**20,
            "clat_us": side["clat_ns"]["mean"] / 1000,
            "guest_cpu_pct": job["jobs"][0]["usr_cpu"] + job["jobs"][0]["sys_cpu"],
            "ios": util.get(direction + "_ios"), "irqs": totals(per_vcpu),
            "irqs_per_vcpu": per_vcpu, "vcpu_busy_pct": vcpu_busy(name),
            "vcpu_time_pct": vcpu_time(name), "fio_vcpus": task_vcpus(name),
            "system_irqs": system_irqs(irqs)}


def frames(name):
    """eth0's frames received and sent during the test (what the interrupts carried)."""
    try:
        before = [int(x) for x in open("%s/%s.net0" % (out, name)).read().split()]
        after = [int(x) for x in open("%s/%s.net1" % (out, name)).read().split()]
        return {"rx": after[0] - before[0], "tx": after[1] - before[1]}
    except (OSError, ValueError, IndexError):
        return None


def cpu_time(name):
    """Where the guest's vCPUs spent the test, in % of all vCPUs' time (/proc/stat)."""
    try:
        delta = stat_delta(name)["cpu"]
    except (OSError, ValueError, KeyError):
        return None
    total = sum(delta) or 1
    return {c: round(100.0 * d / total, 1) for c, d in zip(STAT_COLS, delta)}


def tcp_state(name):
    """The data connection's line of `ss -tin` halfway through (the one with most bytes sent)."""
    try:
        text = open("%s/%s.ss" % (out, name)).read()
    except OSError:
        return None
    best, most = None, -1
    for line in text.splitlines():
        fields = dict(f.split(":", 1) for f in line.split() if ":" in f and "[" not in f)
        sent = fields.get("bytes_sent", "0")
        if line.startswith((" ", "\t")) and sent.isdigit() and int(sent) > most:
            best, most = " ".join(line.split()), int(sent)
    return best


def sender_vcpus(name):
    """How many of the once-a-second samples found the sender on each vCPU."""
    samples = task_vcpus(name)
    if samples is None:
        return None
    counts = [0] * len(vcpu_deltas(name) or [])
    for vcpu in samples:
        if 0 <= vcpu < len(counts):
            counts[vcpu] += 1
    return counts


def iperf3_result(name):
    doc = json.load(open("%s/%s.json" % (out, name)))
    end = doc["end"]
    sender = (end.get("streams") or [{}])[0].get("sender", {})
    cwnds = sorted(i["streams"][0]["snd_cwnd"] for i in doc.get("intervals", [])
                   if i.get("streams") and "snd_cwnd" in i["streams"][0])
    irqs = interrupt_delta(name)
    per_vcpu = device_irqs(irqs, net_dev)
    return {"gbit_s": end["sum_received"]["bits_per_second"] / 1e9,
            "bytes": end["sum_sent"]["bytes"], "retransmits": end["sum_sent"].get("retransmits"),
            "irqs": totals(per_vcpu), "irqs_per_vcpu": per_vcpu, "vcpu_busy_pct": vcpu_busy(name),
            "system_irqs": system_irqs(irqs), "frames": frames(name),
            "sender": {"median_cwnd": cwnds[len(cwnds) // 2] if cwnds else None,
                       "mean_rtt_us": sender.get("mean_rtt"), "max_rtt_us": sender.get("max_rtt")},
            "tcp": tcp_state(name), "guest_cpu": cpu_time(name),
            "vcpu_time_pct": vcpu_time(name), "sender_vcpus": sender_vcpus(name)}


def features(device):
    """The feature bits the driver negotiated, as a hex number (bit 0 first in sysfs)."""
    try:
        bits = open("/sys/bus/virtio/devices/%s/features" % device).read().strip()
    except OSError:
        return None
    return hex(sum(1 << i for i, b in enumerate(bits) if b == "1"))


def version(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        return None


print("vireo-io: versions " + json.dumps({
    "guest_kernel": platform.release(), "fio": version(["fio", "--version"]),
    "iperf3": version(["iperf3", "--version"]),
    "features": {"blk": features(blk_dev), "net": features(net_dev)}}), flush=True)
for name, parse in (("randread", lambda: fio_result("randread", "read")),
                    ("seqread", lambda: fio_result("seqread", "read")),
                    ("seqwrite", lambda: fio_result("seqwrite", "write")),
                    ("iperf3", lambda: iperf3_result("iperf3"))):
    if not os.path.exists("%s/%s.rc" % (out, name)):
        continue  # left out (a duration of 0)
    rc = open("%s/%s.rc" % (out, name)).read().strip()
    try:
        if rc != "0":
            raise ValueError("exit status %s" % rc)
        result = parse()
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        err = open("%s/%s.err" % (out, name)).read().strip().splitlines()[-3:]
        result = {"error": "%s: %s" % (e, " / ".join(err))}
    result["test"] = name
    print("vireo-io: result " + json.dumps(result), flush=True)
EOF
