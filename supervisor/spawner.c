/* spawner: see spawner.h. A few threads, started on first use and never ended, take jobs
 * from one queue (a mutex and a condition variable) and write each job's eventfd when it
 * has run.
 *
 * Ownership rule. A submitted job belongs to the spawner thread that runs it until its
 * eventfd is written: the loop thread must not read or write what the job owns (for a
 * runner: its cell, its channel socket, its git clone, its spawn error) before
 * spawner_job_done (or spawner_job_wait) said it ran; afterwards the job never touches it
 * again. What a job may use besides its own: things the loop does not change while it runs
 * (the task, the policy and its seccomp program, both held for the task's life; the broker
 * is never touched), and sandbox calls made safe for two threads: slot locks are kernel
 * locks (flock), the cgroup janitor's registrations are under its own mutex, its error
 * buffer is per thread, ids are switched per thread with raw system calls (namespaces.c).
 * A job never emits events, never calls back into the caller, never logs above debug (a
 * log line is one write(2), safe from any thread), reports errors in its own buffer and
 * reads errno only right after its own calls (errno is per thread). And a cell's child,
 * between its clone and its exec, is a copy of a multi-threaded process: it must take no lock
 * another thread may have held at the clone (no malloc, no stdio, no glibc set*id wrapper,
 * which waits for threads the child does not have): raw system calls and stack buffers.
 *
 * Why threads and not a pre-forked helper process: a cell must be the supervisor's child,
 * since its exit status and rusage are read with waitid on its pidfd (cell_reap), and the
 * cgroup janitor, the slot locks and PDEATHSIG are tied to the supervisor. A thread keeps all
 * of that and costs no fd passing. Two consequences: the threads never exit, because a
 * cell's PDEATHSIG fires when the thread that cloned it ends; and they block every signal,
 * so signals stay pending for the loop's signalfd. Their stacks keep the default size: a
 * cell's set-up (pid 1 before its exec, a seed copy's recursion) runs on a copy of the stack
 * of the thread that cloned it. */
#include "spawner.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct spawn_job *head, *tail;
static int started; /* threads running */

static void *spawner_main(void *arg)
{
    (void)arg;
    for (;;) {
        (void)pthread_mutex_lock(&lock);
        while (!head)
            (void)pthread_cond_wait(&wake, &lock);
        struct spawn_job *j = head;
        head = j->next;
        if (!head)
            tail = NULL;
        (void)pthread_mutex_unlock(&lock);
        j->next = NULL;
        int fd = j->done_fd; /* read before run: after the write, j may be gone */
        j->run(j);           /* a detached job (fd -1) may have freed itself */
        uint64_t one = 1;
        while (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
    return NULL;
}

/* Under lock. */
static int start_threads(char *err, size_t errsz)
{
    sigset_t all, old;
    sigfillset(&all);
    (void)pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    while (started < SPAWNER_THREADS) {
        pthread_t th;
        pthread_attr_t at;
        (void)pthread_attr_init(&at);
        (void)pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int e = pthread_create(&th, &at, spawner_main, NULL);
        (void)pthread_attr_destroy(&at);
        if (e != 0) {
            rc = started ? 0 : errf(err, errsz, "cannot start the spawner thread: %s", strerror(e));
            break;
        }
        started++;
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int spawner_job_init(struct spawn_job *j, void (*run)(struct spawn_job *j), char *err, size_t errsz)
{
    memset(j, 0, sizeof(*j));
    j->run = run;
    j->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (j->done_fd < 0)
        return errf(err, errsz, "eventfd: %s", strerror(errno));
    return 0;
}

int spawner_submit(struct spawn_job *j, char *err, size_t errsz)
{
    (void)pthread_mutex_lock(&lock);
    if (started < SPAWNER_THREADS && start_threads(err, errsz) < 0) {
        (void)pthread_mutex_unlock(&lock);
        return -1;
    }
    j->next = NULL;
    if (tail)
        tail->next = j;
    else
        head = j;
    tail = j;
    (void)pthread_cond_signal(&wake);
    (void)pthread_mutex_unlock(&lock);
    return 0;
}

int spawner_submit_detached(struct spawn_job *j, void (*run)(struct spawn_job *j), char *err,
                            size_t errsz)
{
    j->run = run;
    j->done_fd = -1;
    return spawner_submit(j, err, errsz);
}

bool spawner_job_done(struct spawn_job *j)
{
    uint64_t n;
    ssize_t r;
    do
        r = read(j->done_fd, &n, sizeof(n));
    while (r < 0 && errno == EINTR);
    return r == (ssize_t)sizeof(n);
}

void spawner_job_wait(struct spawn_job *j)
{
    struct pollfd p = {.fd = j->done_fd, .events = POLLIN};
    while (!spawner_job_done(j))
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            log_warn("spawner: poll: %s", strerror(errno));
}

void spawner_job_close(struct spawn_job *j)
{
    if (j->done_fd >= 0)
        (void)close(j->done_fd);
    j->done_fd = -1;
}
