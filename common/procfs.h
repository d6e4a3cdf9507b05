/* procfs: the one parser of /proc/PID/stat. The command name (field 2) may hold spaces and
 * parentheses, so fields are read after its last ')'. Reads only; never trusts a field it
 * could not parse. */
#ifndef AGENTBOX_PROCFS_H
#define AGENTBOX_PROCFS_H

#include <sys/types.h>

struct procfs_stat {
    char state;                   /* field 3: R, S, D, Z, ... */
    pid_t ppid, pgrp, session;    /* fields 4, 5, 6 */
    unsigned long long starttime; /* field 22: clock ticks after boot */
};

/* 0 and *out filled, or -1 (no such process, or a line that does not parse). */
int procfs_stat(pid_t pid, struct procfs_stat *out);
/* The same over a line already read (NUL-terminated; modified). */
int procfs_stat_parse(char *line, struct procfs_stat *out);

#endif
