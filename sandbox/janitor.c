/* janitor: one small process per agentbox process (not per cell) that removes cells' cgroups
 * should agentbox die without doing it (SIGKILL). agentbox registers each cell's cgroups with
 * it and unregisters them once it has removed them itself; when its socket reaches EOF
 * (agentbox is gone), it removes whatever is still registered and exits. Each registration
 * carries the slot's lock fd (the same open file, so the same flock): the slot, and so the
 * cgroup names, cannot be reused until the janitor is done with them. A registration counts
 * once the janitor has answered it; a janitor found dead or silent is killed, reaped and
 * replaced, and the new one is told every cell still registered.
 *
 * Started on first use, with clone3 and no exit signal: a caller reaping with waitpid(-1)
 * does not take it, and no SIGCHLD arrives. It allocates nothing with malloc (the caller may
 * have had other threads, e.g. libcurl's resolver, when it was cloned): its table is mmap'ed.
 * One janitor instead of one per cell: a supervisor holding 500 cells paid ~314 KiB of
 * copy-on-write pages and a fork per cell for them. */
#include "cell_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpass.h"
#include "util.h"

#define JANITOR_WAIT_MS 10000 /* an orphaned pid 1 is reaped by the host's init, in its time */
#define JANITOR_ACK_MS  5000  /* it only stores an entry: silence this long means stopped */

enum { MSG_ADD = 'A', MSG_DONE = 'D' };

struct janitor_msg {
    char kind;
    char version;
    uint64_t id;
    char path[512], pids_path[512];
};

struct entry {
    uint64_t id; /* 0 = free */
    int version;
    int lock_fd;
    char path[512], pids_path[512];
};

/* agentbox's record of what the janitor was told, to tell a replacement. Each lock_fd is the
 * cell's own slot lock, open until after the cell unregisters. */
struct registration {
    struct janitor_msg msg;
    int lock_fd;
    struct registration *next;
};

static struct registration *registrations;
static int sock = -1;  /* our end; -1 = no janitor */
static pid_t pid = -1; /* the janitor */
static uint64_t last_id;

/* ---- the janitor process ---- */
static void remove_entry(struct entry *e)
{
    if (e->path[0])
        cgroup_remove(e->path, e->version, JANITOR_WAIT_MS);
    if (e->pids_path[0])
        cgroup_remove(e->pids_path, 1, JANITOR_WAIT_MS);
}

static __attribute__((noreturn)) void janitor_main(int fd, size_t capacity)
{
    static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    (void)prctl(PR_SET_NAME, "agentbox-janitor", 0, 0, 0); /* what ps shows */
    struct sigaction ign = {.sa_handler = SIG_IGN};
    for (size_t i = 0; i < ARRAY_SIZE(ignored); i++)
        (void)sigaction(ignored[i], &ign, NULL);
    /* Only our socket: holding anything of agentbox's (a cell's set-up socket, a client
     * connection, a listening socket) would keep it open after agentbox is gone. */
    /* The socket out of the way first: /dev/null may be opened as 3. */
    int sock_fd = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (sock_fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 ||
        dup2(sock_fd, 3) < 0)
        _exit(1);
    (void)syscall(SYS_close_range, 4, ~0u, 0);
    struct entry *table = mmap(NULL, capacity * sizeof(*table), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (table == MAP_FAILED)
        _exit(1);
    size_t used = 0; /* entries [0, used) may be live */
    for (;;) {
        struct janitor_msg m;
        int lock = -1;
        ssize_t n = fdpass_recv(3, &m, sizeof(m), 0, &lock);
        if (n <= 0)
            break; /* EOF: agentbox is gone (or an error we cannot wait out) */
        if (n != (ssize_t)sizeof(m)) {
            if (lock >= 0)
                (void)close(lock);
            continue;
        }
        m.path[sizeof(m.path) - 1] = m.pids_path[sizeof(m.pids_path) - 1] = '\0';
        if (m.kind == MSG_ADD) {
            size_t i = 0;
            while (i < used && table[i].id)
                i++;
            if (i == capacity) { /* cannot happen: one entry per slot */
                if (lock >= 0)
                    (void)close(lock);
                (void)send(3, "f", 1, MSG_NOSIGNAL); /* full: agentbox fails the cell */
                continue;
            }
            table[i].id = m.id;
            table[i].version = m.version;
            table[i].lock_fd = lock;
            memcpy(table[i].path, m.path, sizeof(m.path));
            memcpy(table[i].pids_path, m.pids_path, sizeof(m.pids_path));
            if (i == used)
                used++;
            /* Only now is the cell covered: agentbox waits for this byte. */
            if (send(3, "k", 1, MSG_NOSIGNAL) != 1)
                break;
        } else {
            if (lock >= 0)
                (void)close(lock);
            for (size_t i = 0; i < used; i++)
                if (m.kind == MSG_DONE && table[i].id == m.id) {
                    if (table[i].lock_fd >= 0)
                        (void)close(table[i].lock_fd);
                    table[i].id = 0;
                    break;
                }
        }
    }
    for (size_t i = 0; i < used; i++)
        if (table[i].id)
            remove_entry(&table[i]);
    _exit(0); /* and with it, every slot lock still held */
}

/* ---- agentbox's side ---- */
static void forget_janitor(void)
{
    /* Dead, dying, or silent (stopped, or stuck): SIGKILL before our end is closed, so that a
     * live one never sees EOF and removes the cgroups of cells that are still running (the
     * replacement is told of them), and so that the wait cannot block. */
    if (pid > 0)
        (void)kill(pid, SIGKILL);
    if (sock >= 0)
        (void)close(sock);
    sock = -1;
    if (pid > 0) {
        siginfo_t si;
        while (waitid(P_PID, (id_t)pid, &si, WEXITED | __WALL) < 0 && errno == EINTR)
            ;
    }
    pid = -1;
}

static int start_janitor(void)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return -1;
    size_t capacity = slot_count();
    struct clone_args ca = {.exit_signal = 0};
    long child = syscall(SYS_clone3, &ca, sizeof(ca));
    if (child == 0) {
        (void)close(sp[0]);
        janitor_main(sp[1], capacity);
    }
    int e = errno;
    (void)close(sp[1]);
    if (child < 0) {
        (void)close(sp[0]);
        errno = e;
        return -1;
    }
    sock = sp[0];
    pid = (pid_t)child;
    return 0;
}

static int send_msg(const struct janitor_msg *m, int lock_fd)
{
    return fdpass_send(sock, m, sizeof(*m), lock_fd) == (ssize_t)sizeof(*m) ? 0 : -1;
}

/* The janitor's answer to a registration: 'k' (stored), 'f' (table full), or -1 when it did
 * not answer. A send can succeed into the socket of a janitor already SIGKILLed: a dying
 * process closes its files only after tearing down its memory (slow for a large one, e.g.
 * under ASan), so only the answer proves that the cell is covered. */
static int await_ack(void)
{
    struct pollfd p = {.fd = sock, .events = POLLIN};
    double deadline = monotonic_s() + JANITOR_ACK_MS / 1000.0;
    for (;;) {
        double left = deadline - monotonic_s();
        int r = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1; /* stopped or stuck: treated as dead */
        char ack;
        ssize_t n = recv(sock, &ack, 1, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        return n == 1 ? ack : -1;
    }
}

/* Sends a registration and waits for the answer (see await_ack). */
static int tell(const struct janitor_msg *m, int lock_fd)
{
    return send_msg(m, lock_fd) == 0 ? await_ack() : -1;
}

/* A janitor to talk to: started if there is none, and a new one is told every cell still
 * registered, so that replacing a janitor killed from outside loses no cell's safety net.
 * One attempt; callers that must succeed try again. */
static int ensure_janitor(void)
{
    if (sock >= 0)
        return 0;
    if (start_janitor() < 0)
        return -1;
    for (const struct registration *r = registrations; r; r = r->next)
        if (tell(&r->msg, r->lock_fd) != 'k') {
            forget_janitor();
            errno = EPIPE;
            return -1;
        }
    return 0;
}

static int register_locked(const struct cell_cgroup *cg, int slot_lock_fd, uint64_t *id)
{
    struct registration *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->msg.kind = MSG_ADD;
    r->msg.version = (char)cg->version;
    r->msg.id = ++last_id;
    snprintf(r->msg.path, sizeof(r->msg.path), "%s", cg->path);
    if (cg->version == 1)
        snprintf(r->msg.pids_path, sizeof(r->msg.pids_path), "%s", cg->pids_path);
    r->lock_fd = slot_lock_fd;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ensure_janitor() < 0)
            continue;
        int ack = tell(&r->msg, r->lock_fd);
        if (ack == 'k') {
            r->next = registrations;
            registrations = r;
            *id = r->msg.id;
            return 0;
        }
        if (ack == 'f') {
            errno = ENOSPC;
            break;
        }
        forget_janitor(); /* dead, dying or stopped: the next attempt replaces it */
        errno = EPIPE;
    }
    int e = errno;
    free(r);
    errno = e;
    return -1;
}

static void unregister_locked(uint64_t id)
{
    if (!id)
        return;
    for (struct registration **p = &registrations; *p; p = &(*p)->next)
        if ((*p)->msg.id == id) {
            struct registration *gone = *p;
            *p = gone->next;
            free(gone);
            break;
        }
    if (sock < 0)
        return;
    struct janitor_msg m;
    memset(&m, 0, sizeof(m));
    m.kind = MSG_DONE;
    m.id = id;
    /* Should it not get through, the janitor would remove what is already gone: harmless,
     * as it still holds the slot's lock until then. A janitor found dead here is replaced
     * at once, for the cells still running. */
    if (send_msg(&m, -1) < 0) {
        forget_janitor();
        (void)ensure_janitor();
    }
}

/* ---- thread safety: a supervisor makes cells on spawner threads (supervisor/spawner.c)
 * while its loop thread reaps others; the registrations, the socket and the janitor's pid
 * above are shared, so each call holds this lock throughout (a request and its ack). ---- */
static pthread_mutex_t janitor_lock = PTHREAD_MUTEX_INITIALIZER;

int janitor_register(const struct cell_cgroup *cg, int slot_lock_fd, uint64_t *id)
{
    (void)pthread_mutex_lock(&janitor_lock);
    int rc = register_locked(cg, slot_lock_fd, id);
    int e = errno;
    (void)pthread_mutex_unlock(&janitor_lock);
    errno = e;
    return rc;
}

void janitor_unregister(uint64_t id)
{
    (void)pthread_mutex_lock(&janitor_lock);
    unregister_locked(id);
    (void)pthread_mutex_unlock(&janitor_lock);
}
