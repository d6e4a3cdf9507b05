#!/usr/bin/env python3
"""bench_exec: start-up cost of a cell. Times, interleaved round-robin in one run, plain fork+exec
of /bin/true, `agentbox exec -- /bin/true`, bubblewrap with every namespace
(`bwrap --unshare-all --die-with-parent --new-session --ro-bind / / --dev /dev --proc /proc
--tmpfs /tmp --cap-drop ALL /bin/true`) and two floors built from bench/cell_floor.c: "floor"
(clone with every namespace, one tmpfs mount, exec: what no sandbox can go below here) and
"floor+root" (the same with uid maps, a tmpfs root with /usr and /etc bound read-only, a fresh
/proc and pivot_root). Prints median, p90 and min wall time, the median CPU time (user+system of
the process and the children it reaped, from wait4), ratios, and the peak RSS of a cell's pid 1
(VmHWM read from inside) and of agentbox itself (its VmHWM while the cell runs).
Given --agentbox more than once, every binary is timed in the same rounds ("agentbox exec" is the
first, "agentbox #2"... the others): before/after comparisons that share the machine's noise.
Each run is os.posix_spawn + os.wait4 timed with time.perf_counter, so the Python overhead is
the same for all. usage: bench_exec.py [--runs N] [--warmup N] [--agentbox PATH]... [--cc CC]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BWRAP = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev",
         "--proc", "/proc", "--tmpfs", "/tmp", "--cap-drop", "ALL", "/bin/true"]


def spawn(argv, devnull):
    fa = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)
    _, status, ru = os.wait4(pid, 0)
    dt = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("%s failed with status %d" % (" ".join(argv), os.waitstatus_to_exitcode(status)))
    return dt, ru.ru_utime + ru.ru_stime


def build_floor(cc, outdir):
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cell_floor.c")
    exe = os.path.join(outdir, "cell_floor")
    subprocess.run([cc, "-O2", "-D_GNU_SOURCE", "-o", exe, src], check=True)
    return exe


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--agentbox", action="append", help="binary to time (repeat to compare binaries)")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    a = ap.parse_args()
    default = os.environ.get("AGENTBOX", os.path.join(os.path.dirname(__file__), "..", "agentbox"))
    binaries = [os.path.abspath(b) for b in (a.agentbox or [default])]
    agentbox = binaries[0]
    tmp = tempfile.TemporaryDirectory(prefix="bench_exec.")
    os.chmod(tmp.name, 0o755)  # runnable by whoever runs this (nobody too)
    floor = build_floor(a.cc, tmp.name)
    cases = [("fork+exec", ["/bin/true"]), ("agentbox exec", [agentbox, "exec", "--", "/bin/true"]),
             ("bwrap", [subprocess.check_output(["which", "bwrap"]).decode().strip()] + BWRAP[1:]),
             ("floor", [floor]), ("floor+root", [floor, "--root"])]
    cases += [("agentbox #%d" % (i + 2), [b, "exec", "--", "/bin/true"]) for i, b in enumerate(binaries[1:])]
    devnull = os.open(os.devnull, os.O_RDWR)
    load0 = os.getloadavg()[0]
    times = {name: [] for name, _ in cases}
    cpu = {name: [] for name, _ in cases}
    for i in range(a.warmup + a.runs):
        for name, argv in cases:  # round-robin: drift and noise hit all alike
            dt, ct = spawn(argv, devnull)
            if i >= a.warmup:
                times[name].append(dt)
                cpu[name].append(ct)
    pid1 = []
    for _ in range(5):
        out = subprocess.run([agentbox, "exec", "--", "/bin/sh", "-c", "grep VmHWM /proc/1/status"],
                             capture_output=True, text=True, check=True).stdout
        pid1.append(int(out.split()[1]))
    # agentbox's own peak while its cell runs (VmHWM of the process we started)
    sup = []
    for _ in range(5):
        p = subprocess.Popen([agentbox, "exec", "--", "/bin/sleep", "0.3"])
        time.sleep(0.2)
        with open("/proc/%d/status" % p.pid) as f:
            sup += [int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")]
        p.wait()
    med = {n: statistics.median(t) for n, t in times.items()}
    print("kernel %s, %d CPUs, %d timed runs each after %d warm-up, interleaved" % (
        os.uname().release, os.cpu_count(), a.runs, a.warmup))
    print("load average before: %.2f" % load0)
    print("%-14s %10s %10s %10s %10s %12s" % ("", "median ms", "p90 ms", "mean ms", "min ms", "CPU ms (med)"))
    for n, t in times.items():
        print("%-14s %10.3f %10.3f %10.3f %10.3f %12.3f" % (n, med[n] * 1e3, pct(t, 90) * 1e3,
                                                            statistics.fmean(t) * 1e3, min(t) * 1e3,
                                                            statistics.median(cpu[n]) * 1e3))
    for i, b in enumerate(binaries):
        name = "agentbox exec" if i == 0 else "agentbox #%d" % (i + 1)
        print("%s = %s: / bwrap median %.2fx, CPU %.2fx" % (name, b, med[name] / med["bwrap"],
              statistics.median(cpu[name]) / statistics.median(cpu["bwrap"])))
    print("agentbox / bwrap (median): %.2fx" % (med["agentbox exec"] / med["bwrap"]))
    print("agentbox / fork+exec (median): %.2fx" % (med["agentbox exec"] / med["fork+exec"]))
    print("bwrap / fork+exec (median): %.2fx" % (med["bwrap"] / med["fork+exec"]))
    print("floor / bwrap (median): %.2fx   floor+root / bwrap: %.2fx" % (med["floor"] / med["bwrap"],
                                                                      med["floor+root"] / med["bwrap"]))
    print("agentbox - floor+root (median): %.3f ms" % ((med["agentbox exec"] - med["floor+root"]) * 1e3))
    print("peak RSS of a cell's pid 1 (VmHWM from /proc/1/status inside, 5 cells): %d-%d kB" % (min(pid1), max(pid1)))
    print("peak RSS of agentbox exec itself while its cell runs (VmHWM, 5 runs): %d-%d kB" % (min(sup), max(sup)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
