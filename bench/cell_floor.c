/* cell_floor: the reference bench_exec.py measures agentbox exec against besides bubblewrap:
 * the least any sandbox with fresh namespaces costs on this machine. It is not a sandbox.
 *
 *   cell_floor          clone with every namespace agentbox uses (user, pid, mount, network,
 *                       IPC, UTS, cgroup), one tmpfs mount, exec /bin/true; the parent waits
 *                       (the "physical floor": nothing a sandbox could skip)
 *   cell_floor --root   the same plus what makes a usable root: uid/gid maps, a tmpfs root with
 *                       read-only binds of /usr and /etc, the /bin /lib /lib64 /sbin symlinks, a
 *                       fresh /proc, pivot_root and the old root detached
 *
 * Exits with /bin/true's status, or 100 + the failed step. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    return close(fd) == 0 && n == (ssize_t)strlen(text) ? 0 : -1;
}

static int build_root(void)
{
    static const char *const binds[] = {"/usr", "/etc"};
    static const char *const links[][2] = {
        {"bin", "usr/bin"}, {"sbin", "usr/sbin"}, {"lib", "usr/lib"}, {"lib64", "usr/lib64"}};
    char target[64];
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1M") < 0)
        return 1;
    for (size_t i = 0; i < sizeof(binds) / sizeof(binds[0]); i++) {
        snprintf(target, sizeof(target), "/tmp%s", binds[i]);
        if (mkdir(target, 0755) < 0 || mount(binds[i], target, NULL, MS_BIND | MS_REC, NULL) < 0 ||
            mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                  NULL) < 0)
            return 2;
    }
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        snprintf(target, sizeof(target), "/tmp/%s", links[i][0]);
        if (symlink(links[i][1], target) < 0)
            return 3;
    }
    if (mkdir("/tmp/proc", 0755) < 0 ||
        mount("proc", "/tmp/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return 4;
    if (chdir("/tmp") < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
        umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return 5;
    return 0;
}

int main(int argc, char **argv)
{
    int with_root = argc > 1 && strcmp(argv[1], "--root") == 0;
    int go[2];
    if (pipe2(go, O_CLOEXEC) < 0)
        return 100;
    long pid = syscall(SYS_clone,
                       CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
                           CLONE_NEWUTS | CLONE_NEWCGROUP | SIGCHLD,
                       0, 0, 0, 0);
    if (pid < 0)
        return 101;
    if (pid == 0) {
        char c;
        if (with_root && read(go[0], &c, 1) != 1)
            _exit(102);
        int r = with_root ? build_root() : mount("tmpfs", "/tmp", "tmpfs", 0, "size=1M");
        if (r != 0)
            _exit(110 + (r < 0 ? 0 : r));
        char *args[] = {"/bin/true", NULL};
        execv(args[0], args);
        _exit(127);
    }
    if (with_root) {
        char path[64], map[64];
        snprintf(map, sizeof(map), "1000 %u 1\n", (unsigned)getuid());
        snprintf(path, sizeof(path), "/proc/%ld/setgroups", pid);
        if (getuid() != 0 && write_file(path, "deny") < 0)
            return 103;
        snprintf(path, sizeof(path), "/proc/%ld/uid_map", pid);
        if (write_file(path, map) < 0)
            return 104;
        snprintf(map, sizeof(map), "1000 %u 1\n", (unsigned)getgid());
        snprintf(path, sizeof(path), "/proc/%ld/gid_map", pid);
        if (write_file(path, map) < 0 || write(go[1], "g", 1) != 1)
            return 105;
    }
    int st;
    while (waitpid((pid_t)pid, &st, 0) < 0)
        if (errno != EINTR)
            return 106;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
