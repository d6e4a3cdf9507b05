/* slot: per-cell slots, as isolate's box ids. A slot is a lock file held with flock, so a
 * holder that dies (even SIGKILLed) releases it with nothing to clean. As root the slot picks
 * the cell's host uid/gid (AGENTBOX_FIRST_UID + index) so that cells cannot signal or ptrace
 * each other. Never creates anything outside its lock directory. */
#include "cell_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define DEFAULT_FIRST_UID 60000u
#define DEFAULT_SLOTS     1000u
#define MAX_SLOTS         65536u

static unsigned env_uint(const char *name, unsigned def, unsigned max)
{
    const char *v = getenv(name);
    uint64_t n;
    if (!v || uint_parse(v, max, &n) < 0)
        return def;
    return (unsigned)n;
}

unsigned slot_count(void)
{
    unsigned n = env_uint("AGENTBOX_SLOTS", DEFAULT_SLOTS, MAX_SLOTS);
    return n ? n : 1;
}

static unsigned first_uid(void)
{
    return env_uint("AGENTBOX_FIRST_UID", DEFAULT_FIRST_UID, 0x7fffffffu - MAX_SLOTS);
}

/* Why lock_dir failed, for the error message ("" = errno says it); per thread, as cells are
 * made on more than one (supervisor/spawner.c). */
static _Thread_local char lock_dir_problem[4400];

/* /run/agentbox (root), $XDG_RUNTIME_DIR/agentbox, or /tmp/agentbox-UID; made 0700 and
 * checked to be ours, so another user cannot pre-create it and hold our locks. */
static int lock_dir(char *out, size_t outsz)
{
    lock_dir_problem[0] = '\0';
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (geteuid() == 0)
        n = snprintf(out, outsz, "/run/agentbox");
    else if (xdg && xdg[0] == '/')
        n = snprintf(out, outsz, "%s/agentbox", xdg);
    else
        n = snprintf(out, outsz, "/tmp/agentbox-%u", (unsigned)geteuid());
    if (n < 0 || (size_t)n >= outsz)
        return -1;
    if (mkdir(out, 0700) < 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (lstat(out, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077)) {
        /* Not ours to use: someone else made it (a squatter in /tmp), or it is open to others.
         * Never "repaired": it is not ours to chmod or remove. */
        snprintf(lock_dir_problem, sizeof(lock_dir_problem),
                 "%s: %s (uid %u, mode %03o; it must be a directory of uid %u, mode 0700%s)", out,
                 !S_ISDIR(st.st_mode) ? "not a directory" : "refused", (unsigned)st.st_uid,
                 (unsigned)(st.st_mode & 0777), (unsigned)geteuid(),
                 geteuid() != 0 && !(xdg && xdg[0] == '/') ? "; or set XDG_RUNTIME_DIR" : "");
        errno = EPERM;
        return -1;
    }
    return 0;
}

/* slot_try in a lock directory already made and checked */
static int try_in(const char *dir, int index, struct cell_slot *s)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/slot-%d.lock", dir, index);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        (void)close(fd);
        if (e == EWOULDBLOCK)
            return 0;
        errno = e;
        return -1;
    }
    s->index = index;
    s->lock_fd = fd;
    s->uid = geteuid() == 0 ? (uid_t)(first_uid() + (unsigned)index) : geteuid();
    s->gid = geteuid() == 0 ? (gid_t)(first_uid() + (unsigned)index) : getegid();
    return 1;
}

int slot_try(int index, struct cell_slot *s)
{
    char dir[4096];
    if (lock_dir(dir, sizeof(dir)) < 0)
        return -1;
    return try_in(dir, index, s);
}

/* A slot whose uid is an account's (or whose gid is a group's) is never used: that user
 * could signal or ptrace the slot's cells, and a cell would get that group's files. Looked
 * up once per slot and process (NSS may be slow); said once in the log. */
static bool slot_belongs_to_account(unsigned index)
{
    static unsigned char known[MAX_SLOTS]; /* 0 unknown, 1 free, 2 an account's */
    if (geteuid() != 0 || index >= MAX_SLOTS)
        return false;
    if (!known[index]) {
        unsigned id = first_uid() + index;
        const struct passwd *pw = getpwuid((uid_t)id);
        const struct group *gr = pw ? NULL : getgrgid((gid_t)id);
        known[index] = pw || gr ? 2 : 1;
        if (pw || gr)
            log_warn("slot %u skipped: its uid/gid %u belongs to %s '%s' on this host (choose "
                     "AGENTBOX_FIRST_UID so that no account is in its range)",
                     index, id, pw ? "account" : "group", pw ? pw->pw_name : gr->gr_name);
    }
    return known[index] == 2;
}

int slot_acquire(struct cell_slot *s, char *err, size_t errsz)
{
    unsigned n = slot_count(), skipped = 0;
    /* The lowest free slot: slots keep their cgroups between cells (cgroup.c), so the fewer
     * distinct slots are used, the fewer cgroups are kept and the more often one is reused. A
     * busy slot costs a failed non-blocking flock. */
    char dir[4096];
    if (lock_dir(dir, sizeof(dir)) < 0)
        return lock_dir_problem[0] ? errf(err, errsz, "slot lock directory %s", lock_dir_problem)
                                   : errf(err, errsz, "slot lock: %s", strerror(errno));
    for (unsigned i = 0; i < n; i++) {
        if (slot_belongs_to_account(i)) {
            skipped++;
            continue;
        }
        int r = try_in(dir, (int)i, s);
        if (r < 0)
            return errf(err, errsz, "slot lock: %s", strerror(errno));
        if (r == 1)
            return 0;
    }
    if (skipped)
        return errf(err, errsz,
                    "slot: all %u slots are in use or belong to accounts (%u: uids %u-%u "
                    "include existing accounts or groups; see AGENTBOX_FIRST_UID)",
                    n, skipped, first_uid(), first_uid() + n - 1);
    return errf(err, errsz, "slot: all %u slots are in use (AGENTBOX_SLOTS)", n);
}

bool slot_sweep_due(double period_s)
{
    char dir[4096], path[4200];
    if (lock_dir(dir, sizeof(dir)) < 0)
        return true; /* the slot cannot be had either: no harm in sweeping */
    snprintf(path, sizeof(path), "%s/sweep.stamp", dir);
    struct stat st;
    if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        struct timespec now;
        (void)clock_gettime(CLOCK_REALTIME, &now);
        double age = (double)(now.tv_sec - st.st_mtim.tv_sec) +
                     (double)(now.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
        if (age >= 0 && age < period_s)
            return false;
    }
    /* due (no stamp yet, an old one, or one from the future): stamped now */
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        (void)futimens(fd, NULL);
        (void)close(fd);
    }
    return true;
}

void slot_release(struct cell_slot *s)
{
    if (s->lock_fd >= 0)
        (void)close(s->lock_fd);
    s->lock_fd = -1;
    s->index = -1;
}
