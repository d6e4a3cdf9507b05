/* fdscan: lists every open file descriptor above 2 (CVE-2024-21626 and friends: an fd leaked into
 * a sandbox is a handle on the host), the working directory, and whether ".." from the cwd and
 * from each fd reaches a directory holding the marker file named in argv[1]. Any regular file
 * fd whose path contains "abx-canary" is written to, so a leak shows on the host side. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int finds_marker(int dirfd, const char *marker)
{
    /* climbs up to 32 levels, looking for the marker in each directory */
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; fd >= 0 && i < 32; i++) {
        if (faccessat(fd, marker, F_OK, 0) == 0) {
            close(fd);
            return 1;
        }
        int up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        close(fd);
        fd = up;
    }
    if (fd >= 0)
        close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    const char *marker = argc > 1 ? argv[1] : "abx-no-marker";
    char cwd[4096], link[4096];
    if (getcwd(cwd, sizeof cwd))
        printf("cwd=%s\n", cwd);
    else
        printf("cwd=ERR_%s\n", strerrorname_np(errno));
    ssize_t n = readlink("/proc/self/cwd", link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("cwdlink=%s\n", link);
    printf("cwd_marker=%d\n", finds_marker(AT_FDCWD, marker));
    int count = 0;
    for (int fd = 3; fd < 65536; fd++) {
        if (fcntl(fd, F_GETFD) < 0)
            continue;
        char p[64];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        n = readlink(p, link, sizeof link - 1);
        link[n > 0 ? n : 0] = 0;
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
            printf("fd_marker %d=%d\n", fd, finds_marker(fd, marker));
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && strstr(link, "abx-canary")) {
            ssize_t w = pwrite(fd, "PWNED", 5, 0);
            printf("fd_write %d=%zd\n", fd, w);
        }
        printf("fd %d=%s\n", fd, link);
        count++;
    }
    printf("fd_count=%d\n", count);
    return 0;
}
