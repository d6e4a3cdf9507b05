/* status: see status.h. */
#include "status.h"

#include <string.h>

static const char *const status_names[TS_NSTATUS] = {
    "queued", "running", "succeeded", "failed", "timeout", "cancelled", "escalated", "mock",
};

const char *task_status_name(enum task_status st)
{
    return (unsigned)st < TS_NSTATUS ? status_names[st] : "failed";
}

int task_status_parse(const char *name)
{
    for (int i = TS_SUCCEEDED; i < TS_NSTATUS; i++)
        if (name && strcmp(status_names[i], name) == 0)
            return i;
    return -1;
}

int task_status_exit_code(const char *name)
{
    switch (task_status_parse(name)) {
    case TS_SUCCEEDED:
        return EXIT_TASK_OK;
    case TS_ESCALATED:
        return EXIT_TASK_ESCALATED;
    case TS_MOCK:
        return EXIT_TASK_MOCK;
    default:
        return EXIT_TASK_FAILED;
    }
}
