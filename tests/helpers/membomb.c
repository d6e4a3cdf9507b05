/* membomb: allocates and touches memory in 8 MiB steps up to CAP MiB (default 1024, so it
 * stays bounded with no limit at all), printing "touched=N" (MiB) after each step; ends
 * with "result=ENOMEM" if an allocation failed, or "result=cap". usage: membomb [CAP_MIB] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
    long cap = argc > 1 ? atol(argv[1]) : 1024;
    setvbuf(stdout, NULL, _IONBF, 0);
    for (long mib = 8; mib <= cap; mib += 8) {
        void *p = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("result=ENOMEM\n");
            return 1;
        }
        memset(p, 0xa5, 8 << 20);
        printf("touched=%ld\n", mib);
    }
    printf("result=cap\n");
    return 0;
}
