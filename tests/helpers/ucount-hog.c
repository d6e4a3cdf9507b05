/* ucount-hog: takes as many of the kernel's per-user objects as its cell lets it (inotify
 * instances, queued real-time signals, up to MAX of each), prints what it got, and holds them
 * for HOLD seconds. Usage: ucount-hog HOLD [MAX]. Prints "inotify=N inotify_errno=E
 * sigqueue=N sigqueue_errno=E". Harmless: every object is released when it exits. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int hold = argc > 1 ? atoi(argv[1]) : 0;
    long max = argc > 2 ? atol(argv[2]) : 1000000;
    long ino = 0, sq = 0;
    int ino_err = 0, sq_err = 0;
    while (ino < max) {
        if (inotify_init1(IN_CLOEXEC) < 0) {
            ino_err = errno;
            break;
        }
        ino++;
    }
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN);
    if (sigprocmask(SIG_BLOCK, &s, NULL) < 0)
        return 1;
    union sigval v = {0};
    while (sq < max) {
        if (sigqueue(getpid(), SIGRTMIN, v) < 0) {
            sq_err = errno;
            break;
        }
        sq++;
    }
    printf("inotify=%ld inotify_errno=%d sigqueue=%ld sigqueue_errno=%d\n", ino, ino_err, sq,
           sq_err);
    fflush(stdout);
    if (hold > 0)
        sleep((unsigned)hold);
    return 0;
}
