/* serve: `agentbox serve`, the supervisor daemon. One epoll loop over the listening socket,
 * the clients, the runners' fds (cell channel, pidfd), the broker's sockets and a signalfd;
 * --jobs cells at once behind a FIFO queue; one broker (breakers, rate limits) shared by
 * every task; a journal so that a restart after a crash knows every task. Never blocks on a
 * client: a slow reader is disconnected at its queue bound, a stalled writer costs nothing. */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "commands.h"
#include "crashpoint.h"
#include "log.h"
#include "safedir.h"
#include "supervisor.h"
#include "util.h"
#include "serve.h"
#include "serve_log.h"

/* ---------------------------------------------------------------- the loop */

static void sync_broker_fds(struct server *s)
{
    if (!s->broker)
        return;
    struct pollfd pfd[256];
    int n = broker_poll_fds(s->broker, pfd, (int)ARRAY_SIZE(pfd));
    if (n > (int)ARRAY_SIZE(pfd))
        n = (int)ARRAY_SIZE(pfd);
    /* only broker fds live in s->bep, so a stale number can only ever be one of them */
    for (int j = 0; j < s->nbfds; j++) {
        bool listed = false;
        for (int i = 0; i < n; i++)
            listed |= pfd[i].fd == s->bfds[j];
        if (!listed)
            (void)epoll_ctl(s->bep, EPOLL_CTL_DEL, s->bfds[j], NULL);
    }
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = 0, .data.fd = pfd[i].fd};
        if (pfd[i].events & POLLIN)
            ev.events |= EPOLLIN;
        if (pfd[i].events & POLLOUT)
            ev.events |= EPOLLOUT;
        if (epoll_ctl(s->bep, EPOLL_CTL_MOD, pfd[i].fd, &ev) < 0 &&
            epoll_ctl(s->bep, EPOLL_CTL_ADD, pfd[i].fd, &ev) < 0)
            log_debug("broker fd %d: %s", pfd[i].fd, strerror(errno));
        s->bfds[i] = pfd[i].fd;
    }
    s->nbfds = n;
}

static long loop_timeout_ms(struct server *s)
{
    double now = monotonic_s();
    double next = now + 1.0;
    if (s->broker) {
        long bt = broker_timeout_ms(s->broker);
        if (bt >= 0)
            next = fmin(next, now + (double)bt / 1000.0);
    }
    for (struct slot *sl = s->running; sl; sl = sl->next) {
        double w = runner_next_wakeup(sl->runner);
        if (w > 0 && w == sl->woken_for)
            w = sl->rewake_at; /* handled already: no busy loop while the cell dies */
        if (w > 0)
            next = fmin(next, w);
        if (sl->own_broker && broker_timeout_ms(sl->own_broker) >= 0)
            next = now;
    }
    for (struct client *c = s->clients; c; c = c->next)
        if (c->pending == P_WAIT && c->deadline > 0)
            next = fmin(next, c->deadline);
    if (s->draining && !s->cancelled_all)
        next = fmin(next, s->drain_deadline);
    if (s->listen_paused_until > 0)
        next = fmin(next, s->listen_paused_until);
    double refill = prewarm_next_fill(s->prewarm);
    if (refill > now)
        next = fmin(next, refill);
    long ms = (long)ceil((next - now) * 1000.0);
    return ms < 0 ? 0 : ms;
}

static void handle_signal(struct server *s)
{
    struct signalfd_siginfo si;
    while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (s->draining)
            continue;
        log_info("signal %u: draining (%u running, %lu queued cancelled; grace %.0f s)",
                 si.ssi_signo, s->nrunning, s->nqueued, s->grace_s);
        s->draining = true;
        s->drain_deadline = monotonic_s() + s->grace_s;
        serve_cancel_queued(s, "cancelled: the server is shutting down");
    }
}

static void housekeeping(struct server *s)
{
    double now = monotonic_s();
    if (s->listen_paused_until > 0 && now >= s->listen_paused_until) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->listen_tag};
        if (s->spare_fd < 0)
            s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (epoll_ctl(s->ep, EPOLL_CTL_MOD, s->lfd, &ev) == 0)
            s->listen_paused_until = 0;
    }
    for (struct client *c = s->clients; c; c = c->next)
        if (!c->dead && c->pending == P_WAIT && c->deadline > 0 && now >= c->deadline) {
            c->pending = P_NONE;
            serve_reply_error(c, PERR_TIMEOUT, "the task has not finished");
            serve_client_interest(c);
        }
    for (struct client *c = s->clients, *next; c; c = next) {
        next = c->next;
        if (!c->dead && c->pending == P_NONE && c->inlen)
            serve_client_process(c);
        if (!c->dead && c->pending == P_STREAM && !c->live)
            serve_stream_pump(c);
        if (!c->dead && c->eof && c->pending == P_NONE && c->outlen == c->outoff &&
            (c->inlen == 0 || !memchr(c->in, '\n', c->inlen)))
            c->dead = true; /* all asked is answered; a torn last line is dropped */
        if (!c->dead)
            serve_client_interest(c);
        if (c->dead)
            serve_client_close(c);
    }
    struct stask *old;
    serve_retry_unsaved(s);
    /* a task whose result is not saved yet stays (and holds the ones after it) */
    while ((old = taskstore_evictable(&s->store, s->retain)) != NULL && !old->unsaved) {
        serve_remove_tree(s, old->id);
        if (journal_forget(&s->journal, old->id) < 0)
            log_error("journal: %s", strerror(errno));
        taskstore_remove(&s->store, old);
    }
    if (s->draining && !s->cancelled_all && now >= s->drain_deadline) {
        s->cancelled_all = true;
        for (struct slot *sl = s->running; sl; sl = sl->next) {
            sl->t->cancel_requested = true;
            runner_cancel(sl->runner);
        }
    }
    if (s->draining && !s->exiting && s->nrunning == 0) {
        s->exiting = true;
        s->exit_deadline = now + SERVE_EXIT_FLUSH_S;
        for (struct client *c = s->clients; c; c = c->next)
            if (!c->dead && c->pending == P_STREAM) {
                c->live = true;
                serve_stream_end(c);
            } else if (!c->dead && c->pending == P_WAIT) {
                c->pending = P_NONE;
                serve_reply_error(c, PERR_SHUTTING_DOWN,
                                  "the server stopped before the task ended");
            }
    }
}

/* The journal grows by every transition; a long-lived server rewrites it from what it
 * knows now (finished tasks without their task JSON) once it has grown past --journal-max. */
static void compact_journal(struct server *s)
{
    if (s->journal.appended < s->journal_max)
        return;
    struct journal_entry *e = calloc(s->store.count ? s->store.count : 1, sizeof(*e));
    if (!e) {
        log_warn("journal compaction: out of memory");
        return;
    }
    size_t n = 0;
    for (struct stask *t = s->store.head; t; t = t->next, n++) {
        snprintf(e[n].id, sizeof(e[n].id), "%s", t->id);
        e[n].task = task_status_terminal(t->status) ? NULL : t->task_json; /* borrowed */
        e[n].submitted = t->submitted;
        e[n].started = t->started;
        e[n].ended = t->ended;
        e[n].owner = t->owner;
        if (task_status_terminal(t->status))
            snprintf(e[n].status, sizeof(e[n].status), "%s", task_status_name(t->status));
    }
    char err[ERR_MSG_MAX];
    if (journal_rewrite(&s->journal, e, n, err, sizeof(err)) < 0) {
        log_warn("%s", err);
        s->journal.appended = 0; /* try again after as much again, not at every turn */
    }
    free(e);
}

static bool all_flushed(const struct server *s)
{
    for (const struct client *c = s->clients; c; c = c->next)
        if (!c->dead && c->outlen > c->outoff)
            return false;
    return true;
}

static void run_loop(struct server *s)
{
    struct epoll_event evs[SERVE_EPOLL_BATCH];
    while (!(s->exiting && (all_flushed(s) || monotonic_s() >= s->exit_deadline))) {
        sync_broker_fds(s);
        int n = epoll_wait(s->ep, evs, SERVE_EPOLL_BATCH, (int)loop_timeout_ms(s));
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            struct tag *tag = evs[i].data.ptr;
            switch (tag->kind) {
            case K_LISTEN:
                serve_accept(s);
                break;
            case K_SIGNAL:
                handle_signal(s);
                break;
            case K_BROKER:
                break; /* broker_step below */
            case K_RUNNER: {
                struct fdtag *ft = (struct fdtag *)tag;
                /* EPOLLIN/OUT/ERR/HUP have poll(2)'s values */
                ft->sl->revents[ft->idx] |= (short)(evs[i].events & 0xffff);
                ft->sl->ready = true;
                break;
            }
            case K_CLIENT: {
                struct client *c = (struct client *)tag;
                if (evs[i].events & EPOLLOUT)
                    serve_client_flush(c);
                if (evs[i].events & EPOLLIN)
                    serve_client_read(c);
                /* HUP: both directions are gone, nobody to answer; RDHUP alone: a
                 * half-close (`nc -q`), the answers still go out */
                if (evs[i].events & (EPOLLHUP | EPOLLERR))
                    c->dead = true;
                else if ((evs[i].events & EPOLLRDHUP) && !(evs[i].events & EPOLLIN)) {
                    c->eof = true;
                    serve_client_interest(c);
                }
                break;
            }
            }
        }
        if (s->broker)
            (void)broker_step(s->broker);
        serve_step_runners(s);
        serve_start_queued(s);
        serve_prewarm_step(s);
        housekeeping(s);
        compact_journal(s);
    }
}

/* ---------------------------------------------------------------- start-up */

/* systemd socket activation (sd_listen_fds(3)): LISTEN_PID is ours and LISTEN_FDS names one
 * fd, 3, which must be a listening Unix stream socket. Returns 1 when it was taken, 0 when
 * there is none, -1 when it is there but unusable. The variables are cleared either way, so
 * nothing started later (cells never see our environment anyway) inherits them. */
static int inherit_socket(struct server *s, char *err, size_t errsz)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    uint64_t p = 0, n = 0;
    bool ours = pid && fds && uint_parse(pid, INT32_MAX, &p) == 0 && (pid_t)p == getpid() &&
                uint_parse(fds, 1024, &n) == 0 && n > 0;
    (void)unsetenv("LISTEN_PID");
    (void)unsetenv("LISTEN_FDS");
    (void)unsetenv("LISTEN_FDNAMES");
    if (!ours)
        return 0;
    if (n != 1)
        return errf(err, errsz, "socket activation: expected one socket, got %llu",
                    (unsigned long long)n);
    int domain = 0, type = 0, listening = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(3, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
        getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || domain != AF_UNIX ||
        type != SOCK_STREAM || !listening)
        return errf(err, errsz, "socket activation: fd 3 is not a listening Unix stream socket");
    int fl = fcntl(3, F_GETFL);
    if (fl < 0 || fcntl(3, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
        return errf(err, errsz, "socket activation: fd 3: %s", strerror(errno));
    s->lfd = 3;
    s->socket_inherited = true;
    return 1;
}

static int open_socket(struct server *s, char *err, size_t errsz)
{
    int inherited = inherit_socket(s, err, errsz);
    if (inherited != 0)
        return inherited < 0 ? -1 : 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char perr[ERR_MSG_MAX];
    if (parent_check_trusted(s->socket_path, perr, sizeof(perr)) < 0)
        return errf(err, errsz, "--socket %s: %s", s->socket_path, perr);
    if (strlen(s->socket_path) >= sizeof(sa.sun_path))
        return errf(err, errsz, "--socket %s: path too long", s->socket_path);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->socket_path);
    struct stat st;
    if (lstat(s->socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return errf(err, errsz, "--socket %s: exists and is not a socket", s->socket_path);
        /* a live server answers; a stale socket file from a crash does not */
        cleanup_fd int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return errf(err, errsz, "--socket %s: another server is listening there",
                        s->socket_path);
        if (unlink(s->socket_path) < 0)
            return errf(err, errsz, "--socket %s: %s", s->socket_path, strerror(errno));
    }
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0)
        return errf(err, errsz, "socket: %s", strerror(errno));
    /* the socket file is born with the right mode: no window where others may connect */
    mode_t old = umask(0777 & ~s->socket_mode);
    int rc = bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0)
        return errf(err, errsz, "--socket %s: %s", s->socket_path, strerror(errno));
    if (chmod(s->socket_path, s->socket_mode) < 0 || listen(s->lfd, 512) < 0)
        return errf(err, errsz, "--socket %s: %s", s->socket_path, strerror(errno));
    return 0;
}

/* Two servers on one state dir would interleave their journals and reuse each other's task
 * directories. A dot name: no task id can collide with it. */
static int lock_state_dir(struct server *s, char *err, size_t errsz)
{
    s->lockfd =
        openat(s->state_dfd, ".serve.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->lockfd < 0)
        return errf(err, errsz, "%.300s/.serve.lock: %s", s->state_dir, strerror(errno));
    /* A server SIGKILLed a moment ago may leave a child that has not exec'd or died yet
     * (a cell being set up) holding the lock for some milliseconds: a restart waits for it a
     * little instead of failing. A live server holds it for good. */
    double give_up = monotonic_s() + SERVE_LOCK_WAIT_S;
    while (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK && errno != EINTR)
            return errf(err, errsz, "state dir %.300s: %s", s->state_dir, strerror(errno));
        if (monotonic_s() >= give_up)
            return errf(err, errsz, "state dir %.300s: another agentbox serve is using it",
                        s->state_dir);
        (void)usleep(20000);
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: agentbox serve [--socket PATH] [OPTIONS]\n\n"
            "The supervisor daemon: tasks arrive on a Unix socket (docs/protocol.md).\n\n"
            "  --socket PATH          listen there (created with --socket-mode; default\n"
            "                         $AGENTBOX_SOCKET, else " AGENTBOX_DEFAULT_SOCKET ")\n"
            "  --jobs N               cells at once (default %d); a FIFO queue behind them\n"
            "  --prewarm N            keep N cells made ahead (default policy and limits, no\n"
            "                         seed, no network) for the tasks that fit them (max 64)\n"
            "  --state-dir DIR        results and the journal (default OPENHANDS_WORKSPACE_ROOT)\n"
            "  --allow-uid UID        also serve this uid (repeatable; root and the server's\n"
            "                         own uid are always served)\n"
            "  --allow-gid GID        also serve callers whose primary gid is GID (repeatable)\n"
            "  --socket-mode 0660|0600  (default 0660)\n"
            "  --retain N             finished tasks kept (results on disk) (default %d)\n"
            "  --queue-max N          queued tasks accepted (default %d)\n"
            "  --grace SECONDS        on SIGTERM, running tasks get this long (default %.0f)\n"
            "  --client-queue SIZE    a client's unread output bound (default 16M)\n"
            "  --journal-max SIZE     compact the journal when it grew by this much (default 64M)\n"
            "  --requeue-interrupted  after a crash, queue interrupted tasks again (default:\n"
            "                         mark them failed)\n"
            "  --replay FILE          offline: every task takes its LLM replies from FILE\n"
            "  --log-level LEVEL      error, warn, info (default: a line per task event) or debug\n"
            "  --log-format FORMAT    text (default) or json lines, on stderr; under systemd\n"
            "                         (JOURNAL_STREAM) with <N> priorities and no timestamps\n"
            "  --admin-gid GID        members (primary or supplementary group) may see and\n"
            "                         cancel every client's tasks (repeatable); others see\n"
            "                         only their own uid's\n"
            "  --policy-floor NAME|PATH  no client policy may be weaker (default: default)\n"
            "  --allow-weaker-policies   lift that floor (clients may ask for host network,\n"
            "                         Landlock off, ...)\n"
            "  --egress-allow HOST[:PORT]  the egress ceiling: hosts a task's network.allow may\n"
            "                         name (repeatable; none = tasks get no egress, and with\n"
            "                         any, network \"host\" is refused); docs/network.md\n"
            "  --egress-resolve HOST:ADDR  a pin tasks may use (network.resolve)\n\n"
            "SIGTERM/SIGINT: stop intake, cancel the queue, let running tasks finish (up to\n"
            "--grace), then exit 0.\n",
            SERVE_DEFAULT_JOBS, SERVE_DEFAULT_RETAIN, SERVE_DEFAULT_QUEUE_MAX,
            SERVE_DEFAULT_GRACE_S);
}

static int option_error(const char *msg)
{
    fprintf(stderr, "agentbox serve: %s\n", msg);
    return -1;
}

/* --allow-uid (kind 'u'), --allow-gid ('g'), --admin-gid ('a'): one id more. */
static int add_id(struct server *s, char kind, const char *arg)
{
    const char *opt = kind == 'u' ? "--allow-uid" : kind == 'g' ? "--allow-gid" : "--admin-gid";
    int *n = kind == 'u' ? &s->nallow_uid : kind == 'g' ? &s->nallow_gid : &s->nadmin_gid;
    uint64_t u;
    char oerr[ERR_MSG_MAX];
    if (opt_count(opt, arg, 0, UINT32_MAX - 1, &u, oerr, sizeof(oerr)) < 0)
        return option_error(oerr);
    if (*n >= SERVE_ALLOW_MAX) {
        fprintf(stderr, "agentbox serve: at most %d of %s\n", SERVE_ALLOW_MAX, opt);
        return -1;
    }
    if (kind == 'u')
        s->allow_uid[(*n)++] = (uid_t)u;
    else if (kind == 'g')
        s->allow_gid[(*n)++] = (gid_t)u;
    else
        s->admin_gid[(*n)++] = (gid_t)u;
    return 0;
}

/* ---- options: one table row each, applied by kind ---- */

enum opt_kind {
    OPT_STR,     /* a const char * field keeps the argument */
    OPT_FLAG,    /* a bool field set */
    OPT_COUNT,   /* a whole number from min to max (opt_count) */
    OPT_SIZE,    /* a size of at least min (opt_size) */
    OPT_SECONDS, /* seconds, 0 allowed (opt_seconds) */
    OPT_STATE,   /* --state-dir into its buffer */
    OPT_ID,      /* --allow-uid 'u', --allow-gid 'g', --admin-gid 'a' */
    OPT_MODE,    /* --socket-mode */
    OPT_LOG,     /* --log-level 'l', --log-format 'f' */
    OPT_EGRESS,  /* --egress-allow, --egress-resolve 'p' (a pin) */
    OPT_HELP,
};

struct serve_option {
    const char *name;
    enum opt_kind kind;
    size_t off, size; /* the struct server field it sets (FIELD) */
    uint64_t min, max;
    char sub;
};

#define FIELD(f) offsetof(struct server, f), sizeof(((struct server *)0)->f)

static const struct serve_option serve_options[] = {
    {"socket", OPT_STR, FIELD(socket_path)},
    {"jobs", OPT_COUNT, FIELD(jobs), 1, 4096},
    {"state-dir", OPT_STATE},
    {"allow-uid", OPT_ID, .sub = 'u'},
    {"allow-gid", OPT_ID, .sub = 'g'},
    {"socket-mode", OPT_MODE},
    {"retain", OPT_COUNT, FIELD(retain), 0, 100000000},
    {"prewarm", OPT_COUNT, FIELD(prewarm_n), 0, PREWARM_MAX},
    {"queue-max", OPT_COUNT, FIELD(queue_max), 1, 100000000},
    {"grace", OPT_SECONDS, FIELD(grace_s)},
    {"client-queue", OPT_SIZE, FIELD(client_queue), 4096},
    {"journal-max", OPT_SIZE, FIELD(journal_max), 4096},
    {"requeue-interrupted", OPT_FLAG, FIELD(requeue)},
    {"replay", OPT_STR, FIELD(replay)},
    {"log-level", OPT_LOG, .sub = 'l'},
    {"log-format", OPT_LOG, .sub = 'f'},
    {"admin-gid", OPT_ID, .sub = 'a'},
    {"policy-floor", OPT_STR, FIELD(floor_name)},
    {"allow-weaker-policies", OPT_FLAG, FIELD(allow_weaker)},
    {"egress-allow", OPT_EGRESS},
    {"egress-resolve", OPT_EGRESS, .sub = 'p'},
    {"help", OPT_HELP},
};

/* A number into an unsigned field of 4 or 8 bytes (unsigned, unsigned long, size_t,
 * uint64_t). */
static void set_uint(void *field, size_t size, uint64_t v)
{
    if (size == sizeof(uint32_t)) {
        uint32_t v32 = (uint32_t)v;
        memcpy(field, &v32, sizeof(v32));
    } else {
        memcpy(field, &v, sizeof(v));
    }
}

struct log_choice {
    enum log_level level;
    enum log_format format;
};

/* One option: 0, 1 for --help (printed), -1 with the refusal printed. */
static int apply_option(struct server *s, const struct serve_option *o, const char *arg,
                        struct log_choice *log)
{
    char flag[64], oerr[ERR_MSG_MAX];
    snprintf(flag, sizeof(flag), "--%s", o->name);
    void *field = (char *)s + o->off;
    uint64_t u;
    switch (o->kind) {
    case OPT_STR:
        memcpy(field, &arg, sizeof(arg));
        return 0;
    case OPT_FLAG:
        *(bool *)field = true;
        return 0;
    case OPT_COUNT:
        if (opt_count(flag, arg, o->min, o->max, &u, oerr, sizeof(oerr)) < 0)
            return option_error(oerr);
        set_uint(field, o->size, u);
        return 0;
    case OPT_SIZE:
        if (opt_size(flag, arg, o->min, &u, oerr, sizeof(oerr)) < 0)
            return option_error(oerr);
        set_uint(field, o->size, u);
        return 0;
    case OPT_SECONDS:
        return opt_seconds(flag, arg, 1, (double *)field, oerr, sizeof(oerr)) < 0
                   ? option_error(oerr)
                   : 0;
    case OPT_STATE:
        snprintf(s->state_dir, sizeof(s->state_dir), "%s", arg);
        return 0;
    case OPT_ID:
        return add_id(s, o->sub, arg);
    case OPT_MODE:
        if (strcmp(arg, "0660") && strcmp(arg, "0600") && strcmp(arg, "660") &&
            strcmp(arg, "600")) {
            fprintf(stderr, "agentbox serve: --socket-mode: 0660 or 0600\n");
            return -1;
        }
        s->socket_mode = strstr(arg, "660") ? 0660 : 0600;
        return 0;
    case OPT_LOG:
        if (o->sub == 'l' ? log_level_parse(arg, &log->level) < 0
                          : log_format_parse(arg, &log->format) < 0) {
            fprintf(stderr, "agentbox serve: %s: expected %s, got '%s'\n", flag,
                    o->sub == 'l' ? "error, warn, info or debug" : "text or json", arg);
            return -1;
        }
        return 0;
    case OPT_EGRESS:
        if (serve_egress_option(s, o->sub == 'p', arg, oerr, sizeof(oerr)) < 0)
            return option_error(oerr);
        return 0;
    case OPT_HELP:
        usage(stdout);
        return 1;
    }
    return -1;
}

static int parse_args(int argc, char **argv, struct server *s)
{
    struct option opts[ARRAY_SIZE(serve_options) + 1];
    for (size_t i = 0; i < ARRAY_SIZE(serve_options); i++) {
        const struct serve_option *o = &serve_options[i];
        bool has_arg = o->kind != OPT_FLAG && o->kind != OPT_HELP;
        opts[i] =
            (struct option){o->name, has_arg ? required_argument : no_argument, 0, 256 + (int)i};
    }
    opts[ARRAY_SIZE(serve_options)] = (struct option){0, 0, 0, 0};
    optind = 1;
    opterr = 0;
    int c;
    struct log_choice log = {LOG_INFO, LOG_FORMAT_TEXT};
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (c < 256 || c >= 256 + (int)ARRAY_SIZE(serve_options)) {
            fprintf(stderr, "agentbox serve: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return -1;
        }
        int rc = apply_option(s, &serve_options[c - 256], optarg, &log);
        if (rc != 0)
            return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "agentbox serve: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    log_configure(log.level, log.format);
    if (!s->socket_path) /* the clients' default too: one path everywhere */
        s->socket_path = getenv("AGENTBOX_SOCKET") && *getenv("AGENTBOX_SOCKET")
                             ? getenv("AGENTBOX_SOCKET")
                             : AGENTBOX_DEFAULT_SOCKET;
    return 0;
}

static int add_fd(int ep, int fd, struct tag *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void teardown(struct server *s)
{
    while (s->running) {
        struct slot *sl = s->running;
        s->running = sl->next;
        serve_unregister_slot_fds(sl);
        runner_free(sl->runner); /* kills and reaps the cell */
        sl->t->slot = NULL;
        serve_slot_free(sl);
    }
    while (s->clients)
        serve_client_close(s->clients);
    taskstore_free(&s->store);
    journal_close(&s->journal);
    broker_free(s->broker);
    serve_policy_free(s);
    if (s->lfd >= 0) {
        (void)close(s->lfd);
        if (!s->socket_inherited) /* systemd's socket is systemd's to remove */
            (void)unlink(s->socket_path);
    }
    for (int *fd = (int[]){s->sigfd, s->bep, s->ep, s->lockfd, s->spare_fd, s->state_dfd}, i = 0;
         i < 6; i++)
        if (fd[i] >= 0)
            (void)close(fd[i]);
    config_free(&s->cfg);
}

int cmd_serve(int argc, char **argv)
{
    static struct server srv;
    struct server *s = &srv;
    memset(s, 0, sizeof(*s));
    s->jobs = SERVE_DEFAULT_JOBS;
    s->retain = SERVE_DEFAULT_RETAIN;
    s->queue_max = SERVE_DEFAULT_QUEUE_MAX;
    s->grace_s = SERVE_DEFAULT_GRACE_S;
    s->client_queue = SERVE_DEFAULT_CLIENT_QUEUE;
    s->journal_max = SERVE_DEFAULT_JOURNAL_MAX;
    s->socket_mode = 0660;
    s->ep = s->lfd = s->sigfd = s->bep = s->lockfd = s->state_dfd = -1;
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); /* see refuse_for_want_of_fds */
    s->journal.fd = s->journal.dfd = -1;
    s->publish = (struct serve_publish){serve_publish_event, serve_answer_waiters};
    int prc = parse_args(argc, argv, s);
    if (prc != 0)
        return prc > 0 ? 0 : EXIT_USAGE;
    char err[ERR_MSG_MAX];
    if (supervisor_keyholder_start(&s->cfg, &s->cat, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox serve: %s\n", err);
        config_free(&s->cfg);
        return EXIT_USAGE;
    }
    crashpoint_init();
    if (serve_egress_from_config(s, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox serve: %s\n", err);
        config_free(&s->cfg);
        return EXIT_USAGE;
    }
    int rc = EXIT_USAGE;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    (void)signal(SIGPIPE, SIG_IGN);
    metrics_init(&s->metrics);
    if (taskstore_init(&s->store) < 0) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    if (!s->state_dir[0])
        snprintf(s->state_dir, sizeof(s->state_dir), "%.*s", (int)sizeof(s->state_dir) - 1,
                 s->cfg.workspace_root);
    /* no other user may own or write the state dir or any directory above it: a root
     * server would otherwise write (journal, results) through links they plant there */
    char perr[ERR_MSG_MAX];
    if (dir_ensure_trusted(s->state_dir, s->state_dir, sizeof(s->state_dir), perr, sizeof(perr)) <
            0 ||
        (s->state_dfd = dir_open_trusted(s->state_dir, perr, sizeof(perr))) < 0) {
        snprintf(err, sizeof(err), "state dir: %.480s", perr);
        goto fail;
    }
    if (lock_state_dir(s, err, sizeof(err)) < 0)
        goto fail;
    if (serve_policy_init(s, err, sizeof(err)) < 0)
        goto fail;
    /* a replay file is checked once here so a bad one is a usage error, not 1000 failed tasks */
    if (supervisor_broker_open(&s->cfg, s->replay, SUPERVISOR_REPLAY_PROBE,
                               ", or pass --replay FILE for offline tasks", &s->broker, err,
                               sizeof(err)) < 0)
        goto fail;
    if (s->replay)
        log_info("OFFLINE REPLAY: every task's LLM replies come from %s", s->replay);
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->bep = epoll_create1(EPOLL_CLOEXEC);
    s->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->ep < 0 || s->bep < 0 || s->sigfd < 0) {
        snprintf(err, sizeof(err), "epoll/signalfd: %s", strerror(errno));
        goto fail;
    }
    if (serve_recover(s, err, sizeof(err)) < 0 || open_socket(s, err, sizeof(err)) < 0 ||
        serve_prewarm_start(s, err, sizeof(err)) < 0)
        goto fail;
    s->listen_tag.kind = K_LISTEN;
    s->signal_tag.kind = K_SIGNAL;
    s->broker_tag.kind = K_BROKER;
    if (add_fd(s->ep, s->lfd, &s->listen_tag) < 0 || add_fd(s->ep, s->sigfd, &s->signal_tag) < 0 ||
        add_fd(s->ep, s->bep, &s->broker_tag) < 0) {
        snprintf(err, sizeof(err), "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    s->started_mono = monotonic_s();
    serve_log_listening(s->socket_path, s->jobs, s->state_dir, s->socket_inherited);
    serve_start_queued(s);
    run_loop(s);
    log_info("drained; exiting");
    rc = 0;
    teardown(s);
    return rc;
fail:
    fprintf(stderr, "agentbox serve: %s\n", err);
    teardown(s);
    return rc;
}
