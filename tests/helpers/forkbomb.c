/* forkbomb: forks sleeping children until fork fails or CAP children exist (so it stays
 * bounded even with no limit at all), prints "forked=N errno=NAME" and then waits for
 * HOLD seconds with every child alive. The children share argv, which holds the marker, so
 * the host can look for survivors; each also ends itself after 60 s, should it escape.
 * usage: forkbomb MARKER [CAP] [HOLD] */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int cap = argc > 2 ? atoi(argv[2]) : 2000;
    int hold = argc > 3 ? atoi(argv[3]) : 0;
    int n = 0, err = 0;
    for (; n < cap; n++) {
        pid_t p = fork();
        if (p < 0) {
            err = errno;
            break;
        }
        if (p == 0) {
            alarm(60);
            for (;;)
                pause();
        }
    }
    printf("forked=%d errno=%s\n", n, err ? strerrorname_np(err) : "0");
    fflush(stdout);
    if (hold > 0)
        sleep((unsigned)hold);
    return 0;
}
