"""release_cgroups: after the suites, removes the cgroups agentbox kept for its slots (a slot
keeps its cell's empty cgroups for its next cell), so that a test run leaves no cgroup behind.
Only this uid's slot cgroups below this process's own cgroups (tests/cellcheck.py finds them),
each removed while its slot's lock is held and only if no task is in it; then the "agentbox"
parents if they are empty. Prints one line; never fails the run."""
import fcntl
import os

from cellcheck import _PARENTS, cgroup_dirs, cgroup_empty, slot_lock_path


def slot_lock(cgroup_dir):
    """An fd holding the lock of the slot cgroup_dir is named after, or None if it is busy;
    -1 when there is no lock file (no agentbox of this uid holds the slot)."""
    try:
        fd = os.open(slot_lock_path(cgroup_dir), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def main():
    released = busy = 0
    for d in sorted(cgroup_dirs()):
        if slot_lock_path(d) is None:
            continue
        fd = slot_lock(d)
        if fd is None:
            busy += 1
            continue
        try:
            if cgroup_empty(d):
                os.rmdir(d)
                released += 1
            else:
                busy += 1
        except OSError:
            busy += 1
        finally:
            if fd >= 0:
                os.close(fd)
    for parent in _PARENTS:
        try:
            os.rmdir(parent)
        except OSError:
            pass
    print("slot cgroups kept by the suites: %d removed, %d left (in use)" % (released, busy))


if __name__ == "__main__":
    main()
