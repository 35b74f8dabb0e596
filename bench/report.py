#!/usr/bin/python3
"""Turn bench/measure.py's JSON lines into the Markdown tables of docs/performance.md."""
import json
import sys

rows = []
commands = []
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("commands: "):
        cmds = json.loads(line[len("commands: "):])
        if cmds not in commands:
            commands.append(cmds)
    elif line.startswith("{"):
        rows.append(json.loads(line))


def fmt(v, unit):
    return "n/a" if v is None else "%.2f %s" % (v, unit)


print("| metric | kernel | environment | vireo-vmm | QEMU microvm |")
print("|---|---|---|---|---|")
for metric, key, unit, label in (
        ("a", "median_ms", "ms", "(a) exec to first KVM_RUN"),
        ("b", "median_overhead_mib", "MiB", "(b) RSS beyond touched guest RAM"),
        ("c", "median_s", "s", "(c) exec to guest init marker")):
    groups = sorted({(r["kernel"], r["env"]) for r in rows if r["metric"] == metric})
    for kernel, env in groups:
        get = {r["vmm"]: r.get(key) for r in rows
               if r["metric"] == metric and r["env"] == env and r["kernel"] == kernel}
        print("| %s | %s | %s | %s | %s |" % (label, kernel, env, fmt(get.get("vireo-vmm"), unit),
                                              fmt(get.get("qemu-microvm"), unit)))
print()
print("Medians: (a) of VIREO_BENCH_RUNS_A (default 21) runs, (b) and (c) of VIREO_BENCH_RUNS "
      "(default 5) boots. Samples:")
print()
for r in rows:
    if r["metric"] == "b":
        detail = "guest RAM touched %s" % fmt(r.get("guest_touched_mib"), "MiB")
    else:
        detail = "samples %s" % (r.get("samples_ms") or r.get("samples_s"))
        if r.get("hung"):
            detail += ", %d run(s) did not reach init" % r["hung"]
    print("- (%s) %s, %s, %s: %s" % (r["metric"], r["vmm"], r["kernel"], r["env"], detail))
if commands:
    print()
    print("Commands (each started through bench/stamp-exec; (a) with "
          "LD_PRELOAD=bench/firstrun.so):")
    print()
    for cmds in commands:
        for name, argv in cmds.items():
            print("    %s" % " ".join(argv))
