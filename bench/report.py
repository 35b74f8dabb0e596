#!/usr/bin/python3
"""Turn bench/measure.py's JSON lines into the Markdown tables of docs/performance.md."""
import json
import sys

rows = []
commands = None
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("commands: "):
        commands = json.loads(line[len("commands: "):])
    elif line.startswith("{"):
        rows.append(json.loads(line))


def fmt(v, unit, digits=2):
    return "n/a" if v is None else ("%.*f %s" % (digits, v, unit))


print("| metric | environment | vireo-vmm | QEMU microvm |")
print("|---|---|---|---|")
for metric, key, unit, label in (
        ("a", "median_ms", "ms", "(a) exec to first KVM_RUN, median"),
        ("b", "median_overhead_mib", "MiB", "(b) RSS beyond touched guest RAM, median"),
        ("c", "median_s", "s", "(c) exec to guest init marker, median")):
    envs = sorted({r["env"] for r in rows if r["metric"] == metric})
    for env in envs:
        get = {r["vmm"]: r.get(key) for r in rows if r["metric"] == metric and r["env"] == env}
        print("| %s | %s | %s | %s |" % (label, env, fmt(get.get("vireo-vmm"), unit),
                                         fmt(get.get("qemu-microvm"), unit)))
print()
for r in rows:
    samples = r.get("samples_ms") or r.get("samples_s")
    extra = ""
    if r["metric"] == "b" and r.get("guest_touched_mib") is not None:
        extra = " guest RAM touched: %.1f MiB" % r["guest_touched_mib"]
    print("- %s, %s, %s: samples %s%s" % (r["metric"], r["vmm"], r["env"], samples, extra))
if commands:
    print()
    print("Commands (each run through bench/stamp-exec; (a) with LD_PRELOAD=bench/firstrun.so):")
    print()
    for name, argv in commands.items():
        print("    %s" % " ".join(argv))
