/* tool_bash: one long-lived bash per task, driven through a socketpair (its stdin) and one
 * pipe (its stdout and stderr). Never blocks without a deadline, never holds more than
 * clip + holdback bytes of a command's output, never signals a process outside the shell's
 * own session.
 *
 * How a command runs: its text goes to a private file and the shell is sent one line,
 * `{ . FILE
 * } </dev/null; __ab_done TOKEN`. Sourcing (not a subshell) is what lets `cd` and `export`
 * carry over; the </dev/null is what keeps `cat` or `read` from eating the next line of the
 * session's own input. __ab_done saves `export -p` to a state file and prints an end marker
 * with a fresh random token, the exit code and $PWD.
 *
 * Why timeouts kill by /proc start time and restart only as a last resort: the user's
 * command runs in the shell process itself (that is what makes state persist), so a builtin
 * loop (`while :; do :; done`) cannot be killed without killing the shell, while an external
 * command can. On expiry we SIGKILL every process of the shell's session that started after
 * the command did (the command, its pipeline, its subshells and background jobs), which
 * leaves the shell and earlier background jobs (a server started three calls ago) alive.
 * If the shell itself still does not answer within TOOL_BASH_KILL_GRACE_MS, it is killed and
 * a new one is started with the last saved working directory and exported variables. Job
 * control (`set -m`) was not used: without a terminal it gains nothing here, and a foreground
 * job's process group would still not cover a builtin loop. */
#include "tool_bash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procfs.h"
#include "utf8.h"
#include "util.h"

#define READ_CHUNK     65536
#define HOLDBACK_BYTES (PATH_MAX + 4096) /* room for a whole end marker with any $PWD */
#define POLL_SLICE_MS  50
#define OLD_SESSIONS   16
#define TOKEN_HEX      16
#define MARK_PREFIX    "\n__AB_"

extern char **environ;

struct tool_bash {
    pid_t pid;  /* the shell; also its session and process group id */
    int in_fd;  /* our end of the shell's stdin (a socket: send() with MSG_NOSIGNAL) */
    int out_rd; /* read end of the output pipe, O_NONBLOCK */
    int out_wr; /* write end, kept so a restarted shell writes into the same pipe */
    char dir[PATH_MAX];
    char cmd_path[PATH_MAX];
    char state_path[PATH_MAX];
    char *cwd; /* last working directory the shell reported */
    char bash_path[PATH_MAX];
    size_t clip;
    const volatile sig_atomic_t *cancel;
    double task_deadline_s;
    pid_t old_sessions[OLD_SESSIONS]; /* sessions of restarted shells: killed at stop */
    size_t n_old;
};

/* ---------- output: head + ring tail, bounded whatever the command prints ---------- */

struct clip {
    char *head, *ring;
    size_t head_cap, head_len, ring_cap, ring_pos, ring_len, total;
};

static int clip_init(struct clip *c, size_t limit)
{
    memset(c, 0, sizeof(*c));
    c->head_cap = limit / 2;
    c->ring_cap = limit - c->head_cap;
    c->head = malloc(c->head_cap + 1);
    c->ring = malloc(c->ring_cap + 1);
    return c->head && c->ring ? 0 : -1;
}

static void clip_free(struct clip *c)
{
    free(c->head);
    free(c->ring);
}

static void clip_add(struct clip *c, const char *p, size_t n)
{
    c->total += n;
    size_t h = c->head_cap - c->head_len < n ? c->head_cap - c->head_len : n;
    memcpy(c->head + c->head_len, p, h);
    c->head_len += h;
    p += h;
    n -= h;
    if (!n || !c->ring_cap)
        return;
    if (n >= c->ring_cap) { /* only the last ring_cap bytes can survive */
        p += n - c->ring_cap;
        n = c->ring_cap;
    }
    size_t first = c->ring_cap - c->ring_pos < n ? c->ring_cap - c->ring_pos : n;
    memcpy(c->ring + c->ring_pos, p, first);
    memcpy(c->ring, p + first, n - first);
    c->ring_pos = (c->ring_pos + n) % c->ring_cap;
    c->ring_len = c->ring_len + n > c->ring_cap ? c->ring_cap : c->ring_len + n;
}

/* Assembles head + note + tail and sanitizes it; fills *cut. */
static char *clip_finish(struct clip *c, size_t *cut)
{
    size_t kept = c->head_len + c->ring_len;
    *cut = c->total - kept;
    char note[160] = "";
    if (*cut)
        snprintf(note, sizeof(note),
                 "\n[... Observation truncated: %zu bytes cut from the middle of %zu bytes of "
                 "output ...]\n",
                 *cut, c->total);
    size_t nlen = strlen(note);
    cleanup_free char *raw = malloc(kept + nlen + 1);
    if (!raw)
        return NULL;
    memcpy(raw, c->head, c->head_len);
    memcpy(raw + c->head_len, note, nlen);
    /* Until the ring wraps its bytes sit at [0, ring_len); after, the oldest is at ring_pos. */
    size_t start = c->ring_len < c->ring_cap ? 0 : c->ring_pos;
    size_t first = c->ring_len - start;
    memcpy(raw + c->head_len + nlen, c->ring + start, first);
    memcpy(raw + c->head_len + nlen + first, c->ring, start);
    return utf8_sanitize(raw, kept + nlen, NULL);
}

/* ---------- helpers ---------- */

/* Appends 'text' single-quoted for the shell. */
static int shell_quote(char *out, size_t outsz, const char *text)
{
    size_t o = 0;
    if (outsz < 3)
        return -1;
    out[o++] = '\'';
    for (const char *p = text; *p; p++) {
        const char *piece = *p == '\'' ? "'\\''" : NULL;
        size_t len = piece ? 4 : 1;
        if (o + len + 2 > outsz)
            return -1;
        if (piece)
            memcpy(out + o, piece, len);
        else
            out[o] = *p;
        o += len;
    }
    out[o++] = '\'';
    out[o] = '\0';
    return 0;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static unsigned long long boottime_ticks(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    return (unsigned long long)ts.tv_sec * (unsigned long long)hz +
           (unsigned long long)ts.tv_nsec / (1000000000ull / (unsigned long long)hz);
}

/* Reads session id and start time (clock ticks since boot) of pid from /proc. */
static int proc_stat(pid_t pid, pid_t *sid, unsigned long long *start)
{
    struct procfs_stat st;
    if (procfs_stat(pid, &st) < 0)
        return -1;
    *sid = st.session;
    *start = st.starttime;
    return 0;
}

/* SIGKILLs every process (except the shell) of the sessions given that started at or after
 * min_start; twice, to catch children forked while the first pass ran. Returns how many,
 * or -1 when /proc cannot be read (a cell without its own /proc mounted). */
static int kill_in_sessions(const pid_t *sids, size_t nsids, pid_t spare,
                            unsigned long long min_start)
{
    int killed = 0;
    for (int pass = 0; pass < 2; pass++) {
        DIR *d = opendir("/proc");
        if (!d)
            return pass == 0 ? -1 : killed;
        struct dirent *e;
        while ((e = readdir(d))) {
            char *end;
            long v = strtol(e->d_name, &end, 10);
            if (*end || v <= 0 || (pid_t)v == spare)
                continue;
            pid_t sid;
            unsigned long long start;
            if (proc_stat((pid_t)v, &sid, &start) != 0 || start < min_start)
                continue;
            for (size_t i = 0; i < nsids; i++)
                if (sid == sids[i] && kill((pid_t)v, SIGKILL) == 0)
                    killed++;
        }
        closedir(d);
    }
    return killed;
}

static void drain_discard(int fd)
{
    char buf[4096];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

static int write_command(const char *path, const char *text, size_t len)
{
    cleanup_fd int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, text, len) != 0 || write_all(fd, "\n", 1) != 0)
        return -1;
    return close(steal_fd(&fd));
}

static int make_token(char out[TOKEN_HEX + 1])
{
    unsigned char raw[TOKEN_HEX / 2];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -1;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* The session's environment: the agent's own, minus what could make bash read files or
 * page output, minus the API key (defence in depth: a cell never has it anyway). */
static char **session_env(void)
{
    static const char *const drop[] = {"PAGER",
                                       "GIT_PAGER",
                                       "MANPAGER",
                                       "SYSTEMD_PAGER",
                                       "TERM",
                                       "PS1",
                                       "PS2",
                                       "PROMPT_COMMAND",
                                       "BASH_ENV",
                                       "ENV",
                                       "HISTFILE",
                                       "OPENROUTER_API_KEY",
                                       "GIT_TERMINAL_PROMPT",
                                       "PYTHONUNBUFFERED"};
    static const char *const add[] = {
        "PAGER=cat", "GIT_PAGER=cat", "MANPAGER=cat",          "SYSTEMD_PAGER=cat",
        "TERM=dumb", "PS1=",          "GIT_TERMINAL_PROMPT=0", "PYTHONUNBUFFERED=1"};
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + ARRAY_SIZE(add) + 1, sizeof(char *));
    if (!env)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool skip = false;
        for (size_t j = 0; j < ARRAY_SIZE(drop) && !skip; j++)
            skip = strlen(drop[j]) == klen && memcmp(drop[j], environ[i], klen) == 0;
        if (!skip)
            env[o++] = environ[i];
    }
    for (size_t j = 0; j < ARRAY_SIZE(add); j++)
        env[o++] = (char *)add[j];
    env[o] = NULL;
    return env;
}

/* Starts a shell; with restore, it re-reads the saved exported variables and cwd. */
static int spawn(struct tool_bash *b, const char *start_cwd, bool restore, char *err, size_t errsz)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return errf(err, errsz, "bash session: socketpair: %s", strerror(errno));
    cleanup_free char **env = session_env();
    if (!env) {
        close(sv[0]);
        close(sv[1]);
        return errf(err, errsz, "bash session: out of memory");
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return errf(err, errsz, "bash session: fork: %s", strerror(e));
    }
    if (pid == 0) {
        /* Only async-signal-safe calls from here to exec. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int s = 1; s < NSIG; s++)
            signal(s, SIG_DFL);
        if (setsid() < 0)
            _exit(126);
        if (dup2(sv[1], 0) < 0 || dup2(b->out_wr, 1) < 0 || dup2(b->out_wr, 2) < 0)
            _exit(126);
        /* The agent's other fds (the cell channel above all) must not reach bash. */
        if (close_range(3, ~0U, 0) != 0)
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        if (start_cwd && chdir(start_cwd) != 0 && chdir("/") != 0)
            _exit(126);
        execle(b->bash_path, "bash", "--noprofile", "--norc", (char *)NULL, env);
        _exit(127);
    }
    close(sv[1]);
    b->pid = pid;
    b->in_fd = sv[0];

    char qstate[PATH_MAX * 4 + 8], qcwd[PATH_MAX * 4 + 8] = "''";
    if (shell_quote(qstate, sizeof(qstate), b->state_path) != 0 ||
        (restore && b->cwd && shell_quote(qcwd, sizeof(qcwd), b->cwd) != 0))
        return errf(err, errsz, "bash session: path too long");
    char init[sizeof(qstate) * 2 + sizeof(qcwd) + 512];
    int n = snprintf(
        init, sizeof(init),
        "PS1=; PS2=; unset PROMPT_COMMAND HISTFILE BASH_ENV ENV\n"
        /* on a timeout the rest of the sourced command must not run: SIGUSR1 makes the
         * shell return from the `.` as soon as the killed child lets it run again */
        "trap 'return 124 2>/dev/null' USR1\n"
        "%s%s%s"
        "__ab_done() { __ab_rc=$?; builtin export -p >| %s 2>/dev/null; "
        "builtin printf '\\n__AB_%%s_%%d_%%s_%%s__\\n' \"$1\" \"$__ab_rc\" \"$PWD\" \"$1\"; }\n"
        "readonly -f __ab_done\n",
        restore ? ". " : "", restore ? qstate : "", restore ? " >/dev/null 2>&1\n" : "", qstate);
    if (n < 0 || (size_t)n >= sizeof(init))
        return errf(err, errsz, "bash session: init script too long");
    if (send_all(b->in_fd, init, (size_t)n) != 0)
        return errf(err, errsz, "bash session: cannot write to bash: %s", strerror(errno));
    if (restore && b->cwd) {
        char cd[sizeof(qcwd) + 32];
        n = snprintf(cd, sizeof(cd), "cd -- %s 2>/dev/null\n", qcwd);
        if (n < 0 || (size_t)n >= sizeof(cd) || send_all(b->in_fd, cd, (size_t)n) != 0)
            return errf(err, errsz, "bash session: cannot restore the working directory");
    }
    return 0;
}

/* Kills the current shell (and what is left of its command), reaps it, remembers its
 * session so background jobs it left are still killed at stop. */
static void kill_shell(struct tool_bash *b, unsigned long long min_start)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, SIGKILL);
    pid_t sid = b->pid;
    kill_in_sessions(&sid, 1, b->pid, min_start);
    while (waitpid(b->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (b->n_old == OLD_SESSIONS) {
        memmove(b->old_sessions, b->old_sessions + 1, (OLD_SESSIONS - 1) * sizeof(pid_t));
        b->n_old--;
    }
    b->old_sessions[b->n_old++] = b->pid;
    if (b->in_fd >= 0)
        close(b->in_fd);
    b->in_fd = -1;
    b->pid = -1;
}

static int restart(struct tool_bash *b, unsigned long long min_start, char *err, size_t errsz)
{
    kill_shell(b, min_start);
    drain_discard(b->out_rd);
    return spawn(b, b->cwd, true, err, errsz);
}

int tool_bash_start(struct tool_bash **out, const struct tool_bash_opts *opts, char *err,
                    size_t errsz)
{
    struct tool_bash_opts none = {0};
    if (!opts)
        opts = &none;
    struct tool_bash *b = calloc(1, sizeof(*b));
    if (!b)
        return errf(err, errsz, "bash session: out of memory");
    b->pid = -1;
    b->in_fd = b->out_rd = b->out_wr = -1;
    b->clip = opts->clip_chars ? opts->clip_chars : TOOL_BASH_CLIP_CHARS;
    b->cancel = opts->cancel;
    b->task_deadline_s = opts->task_deadline_s;
    const char *tmp = opts->tmp_dir ? opts->tmp_dir : getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(b->bash_path, sizeof(b->bash_path), "%s",
             opts->bash_path ? opts->bash_path : "/bin/bash");
    int n = snprintf(b->dir, sizeof(b->dir), "%s/agentbox-bash-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof(b->dir) - 16 || !mkdtemp(b->dir)) {
        int e = errno;
        free(b);
        return errf(err, errsz, "bash session: cannot create a scratch dir in %s: %s", tmp,
                    strerror(e));
    }
    if (snprintf(b->cmd_path, sizeof(b->cmd_path), "%s/cmd", b->dir) >= (int)sizeof(b->cmd_path) ||
        snprintf(b->state_path, sizeof(b->state_path), "%s/state", b->dir) >=
            (int)sizeof(b->state_path)) {
        tool_bash_stop(b);
        return errf(err, errsz, "bash session: scratch path too long");
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        int e = errno;
        tool_bash_stop(b);
        return errf(err, errsz, "bash session: pipe: %s", strerror(e));
    }
    b->out_rd = p[0];
    b->out_wr = p[1];
    if (fcntl(b->out_rd, F_SETFL, O_NONBLOCK) != 0) {
        tool_bash_stop(b);
        return errf(err, errsz, "bash session: fcntl: %s", strerror(errno));
    }
    if (opts->cwd && !(b->cwd = strdup(opts->cwd))) {
        tool_bash_stop(b);
        return errf(err, errsz, "bash session: out of memory");
    }
    if (spawn(b, opts->cwd, false, err, errsz) != 0) {
        tool_bash_stop(b);
        return -1;
    }
    *out = b;
    return 0;
}

pid_t tool_bash_pid(const struct tool_bash *b)
{
    return b ? b->pid : -1;
}

void tool_bash_stop(struct tool_bash *b)
{
    if (!b)
        return;
    pid_t sids[OLD_SESSIONS + 1];
    size_t n = 0;
    /* An old shell was reaped, so a live process with its pid is a newcomer that reused the
     * number and may lead a new session or group of that id: leave those alone. While old
     * background jobs still use the id as their session and group, the kernel cannot reuse it. */
    for (size_t i = 0; i < b->n_old; i++)
        if (kill(b->old_sessions[i], 0) != 0 && errno == ESRCH)
            sids[n++] = b->old_sessions[i];
    if (b->pid > 0)
        sids[n++] = b->pid;
    /* Without job control every process the shells started is in their process groups; the
     * /proc scan also finds those that moved to a group of their own. */
    for (size_t i = 0; i < n; i++)
        kill(-sids[i], SIGKILL);
    kill_in_sessions(sids, n, -1, 0);
    if (b->pid > 0)
        while (waitpid(b->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    if (b->in_fd >= 0)
        close(b->in_fd);
    if (b->out_rd >= 0)
        close(b->out_rd);
    if (b->out_wr >= 0)
        close(b->out_wr);
    if (b->dir[0]) {
        unlink(b->cmd_path);
        unlink(b->state_path);
        rmdir(b->dir);
    }
    free(b->cwd);
    free(b);
}

void tool_bash_result_free(struct tool_bash_result *res)
{
    if (!res)
        return;
    free(res->output);
    free(res->cwd);
    memset(res, 0, sizeof(*res));
}

/* ---------- running one command ---------- */

struct marker_scan {
    char start[sizeof(MARK_PREFIX) + TOKEN_HEX + 2]; /* "\n__AB_<tok>_" */
    char end[TOKEN_HEX + 8];                         /* "_<tok>__\n" */
    size_t start_len, end_len;
    char *hold;
    size_t hold_len, searched;
    bool found;
    int rc;
    char *cwd;
};

/* Feeds bytes read from the shell. Bytes that can no longer be part of the end marker go on
 * to the clip; the marker itself never does. */
static int scan_feed(struct marker_scan *m, struct clip *c, const char *p, size_t n)
{
    memcpy(m->hold + m->hold_len, p, n);
    m->hold_len += n;
    for (;;) {
        size_t from = m->searched > m->start_len ? m->searched - m->start_len : 0;
        char *s = memmem(m->hold + from, m->hold_len - from, m->start, m->start_len);
        if (!s)
            break;
        char *body = s + m->start_len;
        char *e = memmem(body, (size_t)(m->hold + m->hold_len - body), m->end, m->end_len);
        if (!e) {
            if ((size_t)(m->hold + m->hold_len - s) <= HOLDBACK_BYTES) {
                /* The marker has begun; keep everything from it on and wait for its end. */
                clip_add(c, m->hold, (size_t)(s - m->hold));
                m->hold_len -= (size_t)(s - m->hold);
                memmove(m->hold, s, m->hold_len);
                m->searched = 0;
                return 0;
            }
            /* Too long to be our marker (someone printed the prefix): pass it on. */
            m->searched = (size_t)(s - m->hold) + 1;
            continue;
        }
        char *under = memchr(body, '_', (size_t)(e - body));
        if (!under)
            return -1;
        *under = '\0';
        m->rc = atoi(body);
        m->cwd = strndup(under + 1, (size_t)(e - under - 1));
        clip_add(c, m->hold, (size_t)(s - m->hold));
        char *after = e + m->end_len;
        clip_add(c, after, (size_t)(m->hold + m->hold_len - after)); /* background output */
        m->hold_len = 0;
        m->found = true;
        return m->cwd ? 0 : -1;
    }
    m->searched = m->hold_len;
    if (m->hold_len > HOLDBACK_BYTES) {
        size_t out = m->hold_len - HOLDBACK_BYTES;
        clip_add(c, m->hold, out);
        memmove(m->hold, m->hold + out, HOLDBACK_BYTES);
        m->hold_len = HOLDBACK_BYTES;
        m->searched = m->searched > out ? m->searched - out : 0;
    }
    return 0;
}

/* Reads what is available now (bounded per call so deadlines are still checked). */
static int read_some(struct tool_bash *b, struct marker_scan *m, struct clip *c, char *buf)
{
    for (int i = 0; i < 16 && !m->found; i++) {
        ssize_t n = read(b->out_rd, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        if (scan_feed(m, c, buf, (size_t)n) != 0)
            return -1;
    }
    return 0;
}

/* The timeout of one call: the asked one (default, capped), cut to what is left of the task's
 * wall clock (res->task_deadline then says so). */
static double call_timeout(const struct tool_bash *b, double timeout_s,
                           struct tool_bash_result *res)
{
    if (timeout_s <= 0 || timeout_s != timeout_s)
        timeout_s = TOOL_BASH_DEFAULT_TIMEOUT_S;
    if (timeout_s > TOOL_BASH_MAX_TIMEOUT_S)
        timeout_s = TOOL_BASH_MAX_TIMEOUT_S;
    if (b->task_deadline_s > 0) {
        double left = b->task_deadline_s - monotonic_s();
        if (left < timeout_s) {
            timeout_s = left > 0.01 ? left : 0.01;
            res->task_deadline = true;
        }
    }
    return timeout_s;
}

#define SHELL_ALIVE (-2) /* settle_shell's status: the shell did not exit */

/* After a call: the working directory the end marker reported is kept; a shell that exited
 * (its wait status, -1 if someone else reaped it) or got stuck without printing the end
 * marker is replaced; else the command's code is taken. */
static int settle_shell(struct tool_bash *b, struct marker_scan *m, bool killed, int status,
                        unsigned long long start_ticks, struct tool_bash_result *res, char *err,
                        size_t errsz)
{
    if (m->found) {
        free(b->cwd);
        b->cwd = m->cwd;
        m->cwd = NULL;
    }
    if (status != SHELL_ALIVE) {
        b->old_sessions[b->n_old < OLD_SESSIONS ? b->n_old++ : OLD_SESSIONS - 1] = b->pid;
        close(b->in_fd);
        b->in_fd = -1;
        b->pid = -1;
        if (!killed && status != -1)
            res->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        res->restarted = true;
        return restart(b, start_ticks, err, errsz);
    }
    if (!m->found) {
        /* The shell itself is stuck (a builtin loop): replace it. */
        res->restarted = true;
        return restart(b, start_ticks, err, errsz);
    }
    if (!killed)
        res->exit_code = m->rc;
    return 0;
}

int tool_bash_run(struct tool_bash *b, const char *command, double timeout_s,
                  struct tool_bash_result *res, char *err, size_t errsz)
{
    memset(res, 0, sizeof(*res));
    res->exit_code = -1;
    if (!command)
        return errf(err, errsz, "execute_bash: no command");
    size_t clen = strlen(command);
    if (clen > TOOL_BASH_MAX_COMMAND_BYTES)
        return errf(err, errsz, "execute_bash: command is %zu bytes; the limit is %u", clen,
                    TOOL_BASH_MAX_COMMAND_BYTES);
    timeout_s = res->timeout_s = call_timeout(b, timeout_s, res);
    if (b->pid <= 0 && restart(b, 0, err, errsz) != 0)
        return -1;

    if (write_command(b->cmd_path, command, clen) != 0)
        return errf(err, errsz, "execute_bash: cannot write %s: %s", b->cmd_path, strerror(errno));
    char tok[TOKEN_HEX + 1];
    if (make_token(tok) != 0)
        return errf(err, errsz, "execute_bash: getrandom: %s", strerror(errno));
    char qcmd[PATH_MAX * 4 + 8], line[sizeof(qcmd) + 64];
    if (shell_quote(qcmd, sizeof(qcmd), b->cmd_path) != 0)
        return errf(err, errsz, "execute_bash: scratch path too long");
    int ll = snprintf(line, sizeof(line), "{ . %s\n} </dev/null; __ab_done %s\n", qcmd, tok);

    struct clip c;
    struct marker_scan m = {.rc = -1};
    cleanup_free char *buf = malloc(READ_CHUNK);
    m.hold = malloc(HOLDBACK_BYTES + READ_CHUNK);
    if (clip_init(&c, b->clip) != 0 || !buf || !m.hold) {
        clip_free(&c);
        free(m.hold);
        return errf(err, errsz, "execute_bash: out of memory");
    }
    m.start_len = (size_t)snprintf(m.start, sizeof(m.start), MARK_PREFIX "%s_", tok);
    m.end_len = (size_t)snprintf(m.end, sizeof(m.end), "_%s__\n", tok);

    /* Output of earlier background jobs that arrived between calls belongs to this one. */
    int rc = read_some(b, &m, &c, buf);
    unsigned long long start_ticks = boottime_ticks();
    if (rc == 0 && send_all(b->in_fd, line, (size_t)ll) != 0) {
        /* The shell died between calls (killed from outside): start over once. */
        if (restart(b, start_ticks, err, errsz) != 0 || send_all(b->in_fd, line, (size_t)ll) != 0) {
            clip_free(&c);
            free(m.hold);
            return errf(err, errsz, "execute_bash: the shell does not accept commands");
        }
        res->restarted = true;
    }

    double now = monotonic_s(), started = now, deadline = now + timeout_s, grace = 0;
    bool killed = false, shell_exited = false;
    int status = 0;
    while (rc == 0 && !m.found) {
        now = monotonic_s();
        bool cancel = b->cancel && *b->cancel;
        if (!killed && (now >= deadline || cancel)) {
            (void)kill(b->pid, SIGUSR1); /* abandon the rest of the command list */
            if (kill_in_sessions(&b->pid, 1, b->pid, start_ticks) < 0)
                kill(-b->pid, SIGKILL); /* no /proc: the whole group, shell included */
            killed = true;
            res->timed_out = !cancel;
            res->cancelled = cancel;
            res->elapsed_s = now - started;
            grace = now + TOOL_BASH_KILL_GRACE_MS / 1000.0;
        }
        if (killed && now >= grace)
            break;
        double until = killed ? grace : deadline;
        int slice = (int)((until - now) * 1000) + 1;
        if (slice > POLL_SLICE_MS)
            slice = POLL_SLICE_MS;
        struct pollfd pfd = {.fd = b->out_rd, .events = POLLIN};
        int pr = poll(&pfd, 1, slice);
        if (pr < 0 && errno != EINTR) {
            rc = errf(err, errsz, "execute_bash: poll: %s", strerror(errno));
            break;
        }
        if (pr > 0 && read_some(b, &m, &c, buf) != 0) {
            rc = errf(err, errsz, "execute_bash: malformed end marker");
            break;
        }
        if (!m.found) {
            pid_t w = waitpid(b->pid, &status, WNOHANG);
            if (w < 0 && errno == ECHILD)
                status = -1; /* someone else reaped it (a careless pid-1 reaper): gone */
            if (w == b->pid || (w < 0 && errno == ECHILD)) {
                /* `exit`, `exec`, or a fatal signal: keep what it printed, then restart. */
                if (read_some(b, &m, &c, buf) != 0) {
                    rc = -1;
                    break;
                }
                shell_exited = true;
                break;
            }
        }
    }
    /* Anything still held back is output too (no marker came). */
    if (!m.found && m.hold_len)
        clip_add(&c, m.hold, m.hold_len);
    free(m.hold);
    if (rc != 0) {
        clip_free(&c);
        free(m.cwd);
        return -1;
    }
    if (settle_shell(b, &m, killed, shell_exited ? status : SHELL_ALIVE, start_ticks, res, err,
                     errsz) != 0) {
        clip_free(&c);
        return -1;
    }
    res->bytes_total = c.total;
    res->output = clip_finish(&c, &res->bytes_cut);
    clip_free(&c);
    res->cwd = b->cwd ? strdup(b->cwd) : NULL;
    if (!res->output)
        return errf(err, errsz, "execute_bash: out of memory");
    return 0;
}

char *tool_bash_observation(const struct tool_bash_result *res)
{
    const char *out = res->output ? res->output : "";
    size_t olen = strlen(out);
    while (olen && out[olen - 1] == '\n')
        olen--;
    cleanup_free char *cwd = res->cwd ? utf8_sanitize(res->cwd, strlen(res->cwd), NULL) : NULL;
    char status[512], after[64];
    /* a cancel says when it came (its time since the command started), a timeout which
     * limit applied: "cancelled after 120 seconds" for a cancel at 0.5 s would be false */
    if (res->cancelled)
        snprintf(after, sizeof(after), "%.2f", res->elapsed_s);
    else
        snprintf(after, sizeof(after), "%g", res->timeout_s);
    if (res->timed_out || res->cancelled)
        snprintf(status, sizeof(status),
                 "[Command %s after %s seconds%s; its processes were killed%s. The shell is "
                 "still usable.]",
                 res->cancelled ? "was cancelled" : "timed out", after,
                 res->task_deadline && !res->cancelled ? " (the task's time limit)" : "",
                 res->restarted ? " and the shell was restarted (working directory and exported "
                                  "variables restored)"
                                : "");
    else if (res->restarted)
        snprintf(status, sizeof(status),
                 "[The shell exited with code %d and was restarted; working directory and "
                 "exported variables were restored.]\n[Command finished with exit code %d]",
                 res->exit_code, res->exit_code);
    else
        snprintf(status, sizeof(status), "[Command finished with exit code %d]", res->exit_code);
    char *obs = NULL;
    if (asprintf(&obs, "%.*s%s[Current working directory: %s]\n%s", (int)olen, out,
                 olen ? "\n" : "", cwd ? cwd : "?", status) < 0)
        return NULL;
    return obs;
}
