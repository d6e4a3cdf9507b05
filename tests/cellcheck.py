"""cellcheck: shared helpers for the suites that drive the real `agentbox exec` (escape, usability).

Runs cells with a timeout, reads their cell record (--meta), seeds /workspace with the static probe
programs from $HELPERS_DIR, and checks on the HOST side that a cell left nothing behind: no
process (the test process is a child subreaper, so every orphan of a cell lands back here), no new
mount, no agentbox cgroup directory left with tasks in it while its slot is free (a slot keeps its
empty cgroups for its next cell), no new file in the test's temp root or /tmp.
It never kills a process it did not start (only descendants of this test process).
"""
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import unittest

AGENTBOX = os.environ.get("AGENTBOX", os.path.join(os.path.dirname(__file__), "..", "agentbox"))
HELPERS_DIR = os.environ.get("HELPERS_DIR", os.path.join(os.path.dirname(__file__), "..", "build", "helpers"))
UNPRIVILEGED = os.geteuid() != 0
CGROUP_ROOT = "/sys/fs/cgroup"
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)
# Orphans of every cell (double forks, setsid daemons, a cell whose agentbox died) are re-parented
# to us instead of the host's init, so "our descendants" is a complete list of what a cell left.
if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def kv(text):
    """Parses the probes' "key=value" lines (several per line allowed) into a dict."""
    out = {}
    for line in text.splitlines():
        for word in line.split():
            if "=" in word:
                k, v = word.split("=", 1)
                out[k] = v
    return out


def marker(tag="m"):
    return "abx-%s-%d-%s" % (tag, os.getpid(), os.urandom(4).hex())


def helper(name):
    path = os.path.join(HELPERS_DIR, name)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest("probe %s not built (make helpers)" % path)
    return path


def tree_digest(root):
    """sha256 over every path, type, mode, symlink target and file content below root (no
    symlink is followed): equal digests mean a byte-identical tree."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(("%s\0%o\0%d\0" % (os.path.relpath(p, root), st.st_mode, st.st_size)).encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---- host state ---------------------------------------------------------------------------

def _proc_stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[1])  # state, ppid


def descendants(root_pid=None):
    """Live (non-zombie) processes whose parent chain reaches root_pid (default: us)."""
    root_pid = root_pid or os.getpid()
    parent, state = {}, {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st:
                state[int(name)], parent[int(name)] = st
    found = []
    for pid in parent:
        p, hops = parent.get(pid), 0
        while p and p != root_pid and hops < 4096:
            p, hops = parent.get(p), hops + 1
        if p == root_pid and state[pid] not in ("Z", "X"):
            found.append(pid)
    return sorted(found)


def reap():
    """Reaps zombies re-parented to us (we are a subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes_with(text):
    """Every host process whose argv or comm contains text (any owner)."""
    hits = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        pid = int(name)
        try:
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read()
        except OSError:
            comm = ""
        st = _proc_stat(pid)
        if st and st[0] in ("Z", "X"):
            continue
        if text in cmdline(pid) or text in comm:
            hits.append(pid)
    return hits


def mounts():
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            out.add((fields[4], right.split()[0] if right else "?", right.split()[1] if right else "?"))
    return out


def _own_cgroup_parents():
    """Where our cells' cgroups go, <our cgroup in each hierarchy>/agentbox (v1 and v2), each
    with a flag: True when our cgroup there is not the root one (private to our container)."""
    parents = {}
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return parents
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        for c in [c for c in ctrls.split(",") if c] or [""]:
            base = os.path.join(CGROUP_ROOT, c.replace("name=", "")) if c else os.path.join(CGROUP_ROOT, "unified")
            if not c and not os.path.exists(os.path.join(base, "cgroup.procs")):
                base = CGROUP_ROOT
            parents[os.path.normpath(base + path + "/agentbox")] = path != "/"
    return parents


_PARENTS = _own_cgroup_parents()


def cgroup_dirs():
    """Cell cgroup directories this test's agentbox would make: <our cgroup>/agentbox/u<euid>-s<slot>
    in every hierarchy. Other users' cells and the shared "agentbox" parent directories are left
    out, so concurrent suites do not show here."""
    found = set()
    prefix = "u%d-s" % os.geteuid()
    for parent in _PARENTS:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        found |= {os.path.join(parent, n) for n in names if n.startswith(prefix)}
    return found


def attribute(dirs):
    """On a host shared with other containers, hierarchies such as pids sit at "/" for all of
    them while our memory cgroup is our own: where such a private hierarchy exists, a directory
    in a shared one counts as ours only if the same cell name also appears in the private one."""
    private_parents = {p for p, private in _PARENTS.items() if private}
    if not private_parents:
        return dirs
    private = {d for d in dirs if os.path.dirname(d) in private_parents}
    names = {os.path.basename(d) for d in private}
    return {d for d in dirs if d in private or os.path.basename(d) in names}


def slot_lock_path(cgroup_dir):
    """The lock file of the slot cgroup_dir (…/u<euid>-s<N>) is named after, as agentbox's
    slot.c places it; None when the name is not a slot's."""
    try:
        n = int(os.path.basename(cgroup_dir).rsplit("-s", 1)[1])
    except (IndexError, ValueError):
        return None
    lock_dir = "/run/agentbox" if os.geteuid() == 0 else (
        os.path.join(os.environ["XDG_RUNTIME_DIR"], "agentbox") if os.environ.get("XDG_RUNTIME_DIR", "").startswith("/")
        else "/tmp/agentbox-%d" % os.geteuid())
    return os.path.join(lock_dir, "slot-%d.lock" % n)


def slot_free(cgroup_dir):
    """Whether nobody holds the lock of the slot cgroup_dir (…/u<euid>-s<N>) is named after."""
    path = slot_lock_path(cgroup_dir)
    if path is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def cgroup_empty(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return f.read().strip() == ""
    except OSError:
        return True


def tmp_entries():
    """Entries of /tmp that agentbox itself would make (its own prefix). Test suites name
    their temp dirs differently (ours: abx-test-*), so concurrent suites do not show here."""
    try:
        return {n for n in os.listdir("/tmp") if n.startswith(("agentbox.", "agentbox-cell", "abx-cell"))}
    except OSError:
        return set()


class HostSnapshot:
    def __init__(self):
        self.mounts = mounts()
        self.cgroups = cgroup_dirs()
        self.tmp = tmp_entries()

    def leftovers(self, grace_s=3.0):
        """What appeared since the snapshot and is still there after grace_s. Processes are
        killed (they are our own descendants) once reported."""
        deadline = time.monotonic() + grace_s
        while True:
            reap()
            procs = descendants()
            new_mounts = mounts() - self.mounts
            # An empty one is a slot's kept cgroup, waiting for the slot's next cell (at most one
            # per slot and hierarchy); one with tasks is a live cell's while its slot is held.
            # Tasks in a free slot's cgroup are a leak (ours would also show as processes).
            new_cg = attribute({d for d in cgroup_dirs() if not cgroup_empty(d) and slot_free(d)})
            new_tmp = tmp_entries() - self.tmp
            if not (procs or new_mounts or new_cg or new_tmp) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        problems = []
        for pid in procs:
            problems.append("process %d survives: %s" % (pid, cmdline(pid)[:120]))
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        reap()
        problems += ["new mount on the host: %s" % (m,) for m in sorted(new_mounts)]
        problems += ["cgroup left with tasks, its slot free: %s" % d for d in sorted(new_cg)]
        problems += ["file left in /tmp: %s" % n for n in sorted(new_tmp)]
        return problems


# ---- running cells ------------------------------------------------------------------------

class Result:
    def __init__(self, rc, out, err, meta, wall_s):
        self.rc, self.out, self.err, self.meta, self.wall_s = rc, out, err, meta, wall_s
        self.kv = kv(out)

    def __repr__(self):
        return "rc=%s meta=%s\n--- stdout\n%s\n--- stderr\n%s" % (
            self.rc, self.meta, self.out[-3000:], self.err[-3000:])


class CellTest(unittest.TestCase):
    """Base class: a private temp root (mode 0755 so an unprivileged run works too), cells run
    with the probes seeded into /workspace, and a host-side leftover check after every test."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="abx-test-")
        os.chmod(self.tmp, 0o755)
        self.metadir = os.path.join(self.tmp, "meta")
        os.mkdir(self.metadir)
        self.state = os.path.join(self.tmp, "state")
        self.tmpdir = os.path.join(self.tmp, "tmpdir")  # TMPDIR of agentbox: must stay empty
        os.mkdir(self.tmpdir, 0o755)
        self._n = 0
        self.snapshot = HostSnapshot()

    def tearDown(self):
        problems = self.snapshot.leftovers()
        problems += ["file left in agentbox's TMPDIR: %s" % n for n in os.listdir(self.tmpdir)]
        if os.path.isdir(self.state):
            for dirpath, _, files in os.walk(self.state):
                problems += ["file left in the state dir: %s" % os.path.join(dirpath, f) for f in files]
        shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            self.fail("the cell left things behind:\n  " + "\n  ".join(problems))

    def seed(self, *helpers, files=None, name=None):
        """A seed directory holding the named probes (copied) and files {relpath: text|bytes}."""
        self._n += 1
        d = os.path.join(self.tmp, name or "seed%d" % self._n)
        os.makedirs(d, mode=0o755, exist_ok=True)
        os.chmod(d, 0o755)
        for h in helpers:
            shutil.copy2(helper(h), os.path.join(d, h))
        for rel, content in (files or {}).items():
            p = os.path.join(d, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
        return d

    def cell(self, cmd, helpers=(), opts=(), seed=None, timeout=60, env=None, stdin=subprocess.DEVNULL,
             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=None, pass_fds=(), binary=None,
             check_setup=True):
        """Runs `agentbox exec [opts] [--workspace-from SEED] --meta F -- cmd` and returns a Result.
        Fails the test if agentbox does not return within timeout seconds (it is killed then)."""
        if helpers and seed is None:
            seed = self.seed(*helpers)
        self._n += 1
        meta_path = os.path.join(self.metadir, "m%d.json" % self._n)
        argv = [binary or AGENTBOX, "exec", "--meta", meta_path] + list(opts)
        if seed:
            argv += ["--workspace-from", seed]
        argv += ["--"] + list(cmd)
        e = dict(os.environ)
        e.setdefault("OPENHANDS_WORKSPACE_ROOT", self.state)
        e.setdefault("TMPDIR", self.tmpdir)
        e.setdefault("AGENTBOX_DATA_DIR", os.path.dirname(os.path.abspath(AGENTBOX)))
        e.update(env or {})
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=e, cwd=cwd or self.tmp,
                             pass_fds=pass_fds)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail("agentbox exec %s did not return within %s s" % (cmd, timeout))
        wall = time.perf_counter() - t0
        meta = None
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            pass
        r = Result(p.returncode, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace"),
                   meta, wall)
        if check_setup and r.rc == 125:
            self.fail("the cell could not be set up: %r" % r)
        return r

    def cell_on_slot0(self, cmd, env=None, **kw):
        """self.cell pinned to slot 0 (AGENTBOX_SLOTS=1), so that cells in a row share a slot;
        while another agentbox holds slot 0 the set-up is refused, and tried again (30 s)."""
        e = dict(env or {}, AGENTBOX_SLOTS="1")
        deadline = time.monotonic() + 30
        while True:
            r = self.cell(cmd, env=e, check_setup=False, **kw)
            if not (r.rc == 125 and "slots are in use" in r.err) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if r.rc == 125:
            self.fail("the cell could not be set up: %r" % r)
        return r

    def ran(self, result):
        """The cell's command ran to its end (a script ending in "; true"): an attack test must
        not pass merely because nothing ran."""
        self.assertEqual(result.rc, 0, "the cell's command did not run to its end: %r" % result)
        return result

    def probe(self, name, *args, **kw):
        """Runs one probe program from /workspace inside a cell."""
        return self.cell(["/workspace/" + name] + list(args), helpers=kw.pop("helpers", (name,)), **kw)

    def assertDenied(self, result, op, allowed=("EPERM", "EACCES", "SIG31")):
        """The operation failed with a permission error or the process was killed by seccomp."""
        v = result.kv.get(op)
        self.assertIsNotNone(v, "probe printed nothing for %s: %r" % (op, result))
        self.assertIn(v, allowed, "%s was not denied (%s): %r" % (op, v, result))


def enforced(meta):
    return set((meta or {}).get("enforced") or [])


def unavailable(meta):
    return set((meta or {}).get("unavailable") or [])
