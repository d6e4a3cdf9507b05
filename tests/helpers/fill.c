/* fill: disk-fill attacks against a quota. "fill bytes DIR CAP_MIB" writes DIR/abx-fill in
 * 256 KiB chunks until a write fails or CAP MiB are written; "fill inodes DIR CAP" creates
 * empty files until one fails or CAP exist. Prints "written=N errno=NAME" (bytes) or
 * "created=N errno=NAME". Bounded by CAP so it is harmless with no quota at all. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    long cap = atol(argv[3]);
    char path[4096];
    if (strcmp(argv[1], "bytes") == 0) {
        snprintf(path, sizeof path, "%s/abx-fill", argv[2]);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            printf("written=0 errno=%s\n", strerrorname_np(errno));
            return 1;
        }
        static char buf[256 << 10];
        memset(buf, 'x', sizeof buf);
        long long total = 0;
        int err = 0;
        while (total < (long long)cap << 20) {
            ssize_t w = write(fd, buf, sizeof buf);
            if (w <= 0) {
                err = w < 0 ? errno : ENOSPC;
                break;
            }
            total += w;
        }
        if (fsync(fd) < 0 && !err)
            err = errno;
        close(fd);
        printf("written=%lld errno=%s\n", total, err ? strerrorname_np(err) : "0");
        return 0;
    }
    long n = 0;
    int err = 0;
    for (; n < cap; n++) {
        snprintf(path, sizeof path, "%s/abx-i%ld", argv[2], n);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
            err = errno;
            break;
        }
        close(fd);
    }
    printf("created=%ld errno=%s\n", n, err ? strerrorname_np(err) : "0");
    return 0;
}
