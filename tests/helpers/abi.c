/* abi: system calls through the non-native ABIs from a 64-bit process: `int $0x80` (i386 table)
 * and the x32 bit. A seccomp filter that checks only the syscall number lets these through
 * under other numbers, so every foreign architecture must be killed or denied. Each call is
 * getpid (harmless). Prints "i386=RESULT" and "x32=RESULT" where RESULT is a return value,
 * an errno name, or SIGN if the child was killed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static long int80_getpid(void)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory"); /* i386 getpid */
    return ret;
}

static long x32_getpid(void)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(39L | 0x40000000L) : "rcx", "r11", "memory");
    return ret;
}

static void run(const char *name, long (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        long r = fn();
        if (r < 0 && r > -4096)
            printf("%s=%s\n", name, strerrorname_np((int)-r));
        else
            printf("%s=ret%ld\n", name, r);
        fflush(stdout);
        _exit(0);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) {
        printf("%s=FORKFAIL\n", name);
        return;
    }
    if (WIFSIGNALED(st))
        printf("%s=SIG%d\n", name, WTERMSIG(st));
}

int main(void)
{
    run("i386", int80_getpid);
    run("x32", x32_getpid);
    return 0;
}
