/* verify: see verify.h. The cell's pid 1 runs a fixed script (below) with the spec's values
 * as positional arguments, never pasted into the script's text; the patch arrives on stdin
 * (a read-only memory file) and the command's stdin is /dev/null. */
#include "verify.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell.h"
#include "json.h"
#include "utf8.h"
#include "util.h"

#define VERIFY_GRACE_S 15.0 /* past the command's own timeout: the cell is killed */

static const char verify_script[] =
    "commit=$1; timeout_s=$2; apply=$3; cmd=$4; shift 4\n"
    "cd /workspace || exit 125\n"
    "export HOME=/tmp GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null\n"
    "g() { git -c core.hooksPath=/dev/null \"$@\"; }\n"
    "if [ \"$apply\" = 1 ]; then\n"
    "  if ! g apply --binary --whitespace=nowarn -; then\n"
    "    echo \"agentbox verify: the agent's patch does not apply to $commit\" >&2\n"
    "    exit 225\n"
    "  fi\n"
    "fi\n"
    "for p in \"$@\"; do\n"
    "  g checkout -q \"$commit\" -- \":(glob)$p\" >/dev/null 2>&1\n"
    "  g clean -fdqx -- \":(glob)$p\" >/dev/null 2>&1\n"
    "done\n"
    "exec timeout --kill-after=5 \"$timeout_s\" sh -c \"$cmd\" </dev/null\n";

struct verify {
    struct cell *cell;
    int out_fd;
    double start, deadline;
    bool done, timed_out, setup_failed;
    struct cell_record rec;
    char err[ERR_MSG_MAX];
};

/* The patch as a read-only fd of a memory file. */
static int patch_fd(const char *patch)
{
    cleanup_fd int m = memfd_create("agentbox-patch", MFD_CLOEXEC);
    if (m < 0 || write_all(m, patch, strlen(patch)) < 0)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", m);
    return open(path, O_RDONLY | O_CLOEXEC);
}

int verify_start(const struct verify_cell *vc, struct verify **out, char *err, size_t errsz)
{
    struct verify *v = calloc(1, sizeof(*v));
    if (!v)
        return errf(err, errsz, "out of memory");
    v->out_fd = -1;
    v->out_fd = open(vc->tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    cleanup_fd int in = patch_fd(vc->patch);
    if (v->out_fd < 0 || in < 0) {
        errf(err, errsz, "verify: cannot prepare its files: %s", strerror(errno));
        verify_free(v);
        return -1;
    }
    char tmo[32];
    snprintf(tmo, sizeof(tmo), "%g", vc->spec->timeout_s);
    char *argv[8 + VERIFY_RESET_MAX] = {
        "/bin/sh",          "-c", (char *)verify_script,    "verify",
        (char *)vc->commit, tmo,  vc->patch[0] ? "1" : "0", vc->spec->command};
    size_t n = 8;
    for (size_t i = 0; i < vc->spec->nreset; i++)
        argv[n++] = vc->spec->reset[i];
    argv[n] = NULL;
    /* the clone seeds the cell through a descriptor, like any seed (the cell resolves no
     * host path itself) */
    cleanup_fd int seed_fd =
        vc->seed ? open(vc->seed, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (vc->seed && seed_fd < 0) {
        errf(err, errsz, "verify: %s: %s", vc->seed, strerror(errno));
        verify_free(v);
        return -1;
    }
    struct cell_config cc = {
        .policy = vc->policy,
        .seccomp = vc->seccomp,
        .limits = vc->limits,
        .network_host = false,
        .workspace_from = vc->seed,
        .seed_fd = seed_fd,
        .pid1 = CELL_PID1_COMMAND,
        .argv = argv,
        .envp = NULL,
        .channel_fd = -1,
        .stdio_passthrough = false,
        .stdin_set = true,
        .stdin_fd = in,
        .stdout_fd = v->out_fd,
        .stderr_fd = v->out_fd,
    };
    cc.limits.timeout_s = 0; /* enforced here, with the deadline below */
    v->start = monotonic_s();
    v->deadline = v->start + vc->spec->timeout_s + VERIFY_GRACE_S;
    if (cell_spawn(&cc, &v->cell, v->err, sizeof(v->err)) < 0) {
        errf(err, errsz, "verify: %s", v->err);
        verify_free(v);
        return -1;
    }
    *out = v;
    return 0;
}

int verify_pidfd(const struct verify *v)
{
    return v->done ? -1 : cell_pidfd(v->cell);
}

double verify_deadline(const struct verify *v)
{
    return v->deadline;
}

bool verify_poll(struct verify *v)
{
    if (v->done)
        return true;
    struct pollfd p = {.fd = cell_pidfd(v->cell), .events = POLLIN};
    if (poll(&p, 1, 0) <= 0) {
        if (monotonic_s() < v->deadline || v->timed_out)
            return false;
        v->timed_out = true;
        (void)cell_timeout(v->cell);
        return false;
    }
    if (cell_reap(v->cell, &v->rec) < 0)
        snprintf(v->err, sizeof(v->err), "reaping the verify cell: %s", strerror(errno));
    v->done = true;
    return true;
}

void verify_kill(struct verify *v)
{
    if (!v->done)
        (void)cell_kill(v->cell);
}

/* The head and the tail of the output file, the middle replaced by a note. */
static char *clipped_output(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return strdup("");
    size_t size = (size_t)st.st_size, head = size, tail = 0;
    if (size > VERIFY_OUTPUT_HEAD + VERIFY_OUTPUT_TAIL) {
        head = VERIFY_OUTPUT_HEAD;
        tail = VERIFY_OUTPUT_TAIL;
    }
    cleanup_free char *buf = malloc(head + tail + 128);
    if (!buf)
        return NULL;
    ssize_t a = pread(fd, buf, head, 0);
    if (a < 0)
        a = 0;
    size_t len = (size_t)a;
    if (tail) {
        len += (size_t)snprintf(buf + len, 128, "\n[... %zu bytes cut ...]\n", size - head - tail);
        ssize_t b = pread(fd, buf + len, tail, (off_t)(size - tail));
        len += b > 0 ? (size_t)b : 0;
    }
    return utf8_sanitize(buf, len, NULL);
}

static const char *status_of(const struct verify *v)
{
    if (v->setup_failed || v->rec.status == CELL_SETUP_ERROR)
        return "error";
    if (v->timed_out || (v->rec.has_exit_code && v->rec.exit_code == 124))
        return "timeout";
    if (v->rec.has_exit_code && v->rec.exit_code == VERIFY_EXIT_PATCH_FAILS)
        return "error";
    if (v->rec.has_exit_code && v->rec.exit_code == 0)
        return "passed";
    return "failed";
}

bool verify_passed(const struct verify *v)
{
    return v && v->done && strcmp(status_of(v), "passed") == 0;
}

cJSON *verify_result_json(const struct verify *v)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "status", status_of(v));
    if (v->rec.has_exit_code)
        cJSON_AddNumberToObject(j, "exit_code", v->rec.exit_code);
    else
        cJSON_AddNullToObject(j, "exit_code");
    if (v->rec.signal)
        cJSON_AddNumberToObject(j, "signal", v->rec.signal);
    cleanup_free char *o = clipped_output(v->out_fd);
    cJSON_AddStringToObject(j, "output", o ? o : "");
    cJSON_AddNumberToObject(j, "wall_s", round(v->rec.wall_s * 1000) / 1000);
    return j;
}

cJSON *verify_result_unrun(const char *status, const char *why)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "status", status);
    cJSON_AddNullToObject(j, "exit_code");
    cJSON_AddStringToObject(j, "output", why ? why : "");
    cJSON_AddNumberToObject(j, "wall_s", 0);
    return j;
}

void verify_free(struct verify *v)
{
    if (!v)
        return;
    if (v->cell) {
        if (!v->done) {
            (void)cell_kill(v->cell);
            struct cell_record rec;
            (void)cell_reap(v->cell, &rec);
        }
        cell_free(v->cell);
    }
    if (v->out_fd >= 0)
        (void)close(v->out_fd);
    free(v);
}
