/* orphan: leaves processes behind the way daemons do, then returns at once: a double-forked
 * grandchild, a setsid daemon that ignores SIGTERM and SIGHUP, and a child in its own process
 * group. Each sleeps up to 60 s (so an escapee still dies) with the marker in its argv.
 * usage: orphan MARKER */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static void linger(void)
{
    alarm(60);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    printf("marker=%s\n", argv[1]);
    fflush(stdout);
    if (fork() == 0) { /* double fork */
        if (fork() == 0)
            linger();
        _exit(0);
    }
    if (fork() == 0) { /* setsid daemon, deaf to TERM and HUP */
        setsid();
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        if (fork() == 0)
            linger();
        _exit(0);
    }
    if (fork() == 0) { /* its own process group */
        setpgid(0, 0);
        linger();
    }
    usleep(100 * 1000);
    printf("spawned\n");
    return 0;
}
