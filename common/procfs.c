/* procfs: see procfs.h. */
#include "procfs.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int procfs_stat_parse(char *line, struct procfs_stat *out)
{
    char *p = strrchr(line, ')');
    if (!p)
        return -1;
    memset(out, 0, sizeof(*out));
    char *save = NULL;
    int field = 3, got = 0;
    for (char *tok = strtok_r(p + 1, " ", &save); tok && field <= 22;
         tok = strtok_r(NULL, " ", &save), field++) {
        switch (field) {
        case 3:
            out->state = tok[0];
            got++;
            break;
        case 4:
            out->ppid = (pid_t)strtol(tok, NULL, 10);
            got++;
            break;
        case 5:
            out->pgrp = (pid_t)strtol(tok, NULL, 10);
            got++;
            break;
        case 6:
            out->session = (pid_t)strtol(tok, NULL, 10);
            got++;
            break;
        case 22:
            out->starttime = strtoull(tok, NULL, 10);
            got++;
            break;
        default:
            break;
        }
    }
    return got == 5 ? 0 : -1;
}

int procfs_stat(pid_t pid, struct procfs_stat *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    (void)close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return procfs_stat_parse(buf, out);
}
