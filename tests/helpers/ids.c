/* ids: prints the identity and privileges a process holds: "ruid= euid= suid= rgid= egid=", then
 * the Cap*, NoNewPrivs and Seccomp lines of /proc/self/status. A setuid copy of it shows whether
 * the setuid bit elevated anything. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) < 0 || getresgid(&rg, &eg, &sg) < 0)
        return 1;
    printf("ruid=%u euid=%u suid=%u rgid=%u egid=%u\n", r, e, s, rg, eg);
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return 1;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Cap", 3) == 0 || strncmp(line, "NoNewPrivs", 10) == 0 ||
            strncmp(line, "Seccomp:", 8) == 0)
            fputs(line, stdout);
    fclose(f);
    return 0;
}
