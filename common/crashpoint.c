/* crashpoint: see crashpoint.h. Must never do anything but count and kill. */
#include "crashpoint.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char armed[64];
static unsigned long remaining;

void crashpoint_init(void)
{
    const char *v = getenv("AGENTBOX_TEST_CRASH_AT");
    if (v && *v) {
        const char *colon = strchr(v, ':');
        size_t n = colon ? (size_t)(colon - v) : strlen(v);
        if (n < sizeof(armed)) {
            memcpy(armed, v, n);
            armed[n] = '\0';
            remaining = colon ? strtoul(colon + 1, NULL, 10) : 1;
            if (remaining == 0)
                remaining = 1;
        }
    }
    (void)unsetenv("AGENTBOX_TEST_CRASH_AT");
}

void crashpoint(const char *name)
{
    if (!armed[0] || strcmp(name, armed) != 0)
        return;
    if (--remaining > 0)
        return;
    (void)kill(getpid(), SIGKILL);
    pause();
}
