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
Each run is os.posix_spawn + os.wait4 timed with time.perf_counter, so the Python overhead is
the same for all. With --compare PATH, a second agentbox binary (e.g. a build of the previous
commit) is timed in the same rounds (the two swap places every other round) and the median of the paired
differences is printed; as root
each binary then runs from its own sibling cgroup (memory and pids on v1, the unified one on
v2), so that one's cells' cgroups are never swept or reused by the other's.
--args and --compare-args add options to `agentbox exec` of either (e.g. the same binary with and
without `--network host`).
usage: bench_exec.py [--runs N] [--warmup N] [--agentbox PATH] [--args 'OPTS'] [--compare PATH]
                     [--compare-args 'OPTS'] [--cc CC]
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


def own_cgroups():
    """(hierarchy root, our path) for the v1 memory and pids hierarchies, or the v2 one."""
    out = []
    with open("/proc/self/cgroup") as f:
        for line in f.read().splitlines():
            _, ctrls, path = line.split(":", 2)
            names = ctrls.split(",")
            for c in ("memory", "pids"):
                if c in names:
                    out.append(("/sys/fs/cgroup/" + c, path))
            if ctrls == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                out.append(("/sys/fs/cgroup", path))
    return out


class CgroupSwitch:
    """Moves this process between sibling cgroups <ours>-bench-<name> (root only, best effort)."""

    def __init__(self, names):
        self.dirs = {n: [] for n in names}
        if os.geteuid() != 0:
            return
        for root, path in own_cgroups():
            for n in names:
                d = os.path.join(root + path, "bench-exec-%d-%s" % (os.getpid(), n.split()[0]))
                try:
                    os.mkdir(d)
                    self.dirs[n].append(d)
                except OSError:
                    pass
        self.home = [root + path for root, path in own_cgroups()]

    def enter(self, name):
        for d in self.dirs.get(name, []):
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def close(self):
        for d in getattr(self, "home", []):
            try:
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            except OSError:
                pass
        for ds in self.dirs.values():
            for d in ds:
                for sub in [os.path.join(d, "agentbox", e) for e in (os.listdir(os.path.join(d, "agentbox"))
                                                                     if os.path.isdir(os.path.join(d, "agentbox"))
                                                                     else []) if e.startswith("u")]:
                    try:
                        os.rmdir(sub)
                    except OSError:
                        pass
                for sub in (os.path.join(d, "agentbox"), d):
                    try:
                        os.rmdir(sub)
                    except OSError:
                        pass


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
    ap.add_argument("--agentbox", default=os.environ.get("AGENTBOX", os.path.join(os.path.dirname(__file__), "..",
                                                                               "agentbox")))
    ap.add_argument("--compare", help="a second agentbox binary timed in the same rounds")
    ap.add_argument("--args", default="", help="options for `agentbox exec` (split on spaces)")
    ap.add_argument("--compare-args", default="", help="options for the compared `agentbox exec`")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    a = ap.parse_args()
    agentbox = os.path.abspath(a.agentbox)
    tmp = tempfile.TemporaryDirectory(prefix="bench_exec.")
    os.chmod(tmp.name, 0o755)  # runnable by whoever runs this (nobody too)
    floor = build_floor(a.cc, tmp.name)
    cases = [("fork+exec", ["/bin/true"]), ("agentbox exec", [agentbox, "exec"] + a.args.split() + ["--", "/bin/true"]),
             ("bwrap", [subprocess.check_output(["which", "bwrap"]).decode().strip()] + BWRAP[1:]),
             ("floor", [floor]), ("floor+root", [floor, "--root"])]
    if a.compare:
        cases.insert(2, ("compare exec", [os.path.abspath(a.compare), "exec"] + a.compare_args.split() +
                         ["--", "/bin/true"]))
    switch = CgroupSwitch(["agentbox exec", "compare exec"] if a.compare else [])
    devnull = os.open(os.devnull, os.O_RDWR)
    load0 = os.getloadavg()[0]
    times = {name: [] for name, _ in cases}
    cpu = {name: [] for name, _ in cases}
    try:
        for i in range(a.warmup + a.runs):
            order = list(cases)
            if a.compare and i % 2:  # the two agentbox binaries swap places every other round
                order[1], order[2] = order[2], order[1]
            for name, argv in order:  # round-robin: drift and noise hit all alike
                switch.enter(name)
                dt, ct = spawn(argv, devnull)
                if i >= a.warmup:
                    times[name].append(dt)
                    cpu[name].append(ct)
    finally:
        switch.close()  # the sibling cgroups go even when a run fails
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
    print("agentbox / bwrap (median): %.2fx" % (med["agentbox exec"] / med["bwrap"]))
    if a.compare:
        diff = [x - y for x, y in zip(times["agentbox exec"], times["compare exec"])]
        cdiff = [x - y for x, y in zip(cpu["agentbox exec"], cpu["compare exec"])]
        print("agentbox - compare, median of paired differences: wall %+.3f ms, CPU %+.3f ms" % (
            statistics.median(diff) * 1e3, statistics.median(cdiff) * 1e3))
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
