/* tiocsti: the terminal-injection attacks of CVE-2017-5226 (TIOCSTI), CVE-2019-10063 (the same
 * ioctl with high bits set, which the kernel truncates to 32 bits but a careless seccomp filter
 * compares in 64) and TIOCLINUX. usage: tiocsti plain|high|linux|setd [FD]. It first tries to make
 * FD (default 0) its controlling terminal (setsid + TIOCSCTTY), which is what a real attacker does
 * after the sandbox's own setsid. It injects only a harmless marker string. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

static const char MARK[] = "ABX_TIOCSTI_INJECTED\n";

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int fd = argc > 2 ? atoi(argv[2]) : 0;
    if (setsid() < 0)
        printf("setsid=%s\n", strerrorname_np(errno));
    else
        printf("setsid=0\n");
    printf("tiocsctty=%s\n", ioctl(fd, TIOCSCTTY, 0) == 0 ? "0" : strerrorname_np(errno));
    if (strcmp(argv[1], "setd") == 0) {
        /* line disciplines on a pty: kernel attack surface (n_hdlc CVE-2017-2636, n_gsm
         * CVE-2023-6546); put back N_TTY should one be accepted */
        static const int ldiscs[] = {13 /* N_HDLC */, 21 /* N_GSM0710 */};
        for (size_t i = 0; i < sizeof ldiscs / sizeof ldiscs[0]; i++) {
            int ld = ldiscs[i], tty = 0;
            long r = syscall(SYS_ioctl, fd, (unsigned long)TIOCSETD, &ld);
            printf("tiocsetd_%d=%s\n", ldiscs[i], r == 0 ? "0" : strerrorname_np(errno));
            if (r == 0)
                (void)syscall(SYS_ioctl, fd, (unsigned long)TIOCSETD, &tty);
        }
        return 0;
    }
    if (strcmp(argv[1], "linux") == 0) {
        char sub[2] = {3 /* TIOCL_PASTESEL */, 0};
        long r = syscall(SYS_ioctl, fd, (unsigned long)TIOCLINUX, sub);
        printf("tioclinux=%s\n", r == 0 ? "0" : strerrorname_np(errno));
        return 0;
    }
    unsigned long cmd = TIOCSTI;
    if (strcmp(argv[1], "high") == 0)
        cmd |= 0xffffffff00000000UL;
    int ok = 0, err = 0;
    for (const char *p = MARK; *p; p++) {
        if (syscall(SYS_ioctl, fd, cmd, p) == 0)
            ok++;
        else
            err = errno;
    }
    printf("tiocsti=%s injected=%d\n", ok ? "0" : strerrorname_np(err), ok);
    return 0;
}
