/* serve (private): the state shared by the supervisor's three files: serve.c (the loop,
 * signals, start-up), serve_task.c (tasks: start, finish, results, events, recovery) and
 * serve_client.c (socket clients: I/O, the ops, event streams). Not an interface for anything
 * outside `agentbox serve`. */
#ifndef AGENTBOX_SERVE_H
#define AGENTBOX_SERVE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "catalog.h"
#include "config.h"
#include "journal.h"
#include "metrics.h"
#include "policy.h"
#include "protocol.h"
#include "runner.h"
#include "taskstore.h"

#define SERVE_DEFAULT_JOBS         4
#define SERVE_DEFAULT_RETAIN       1000
#define SERVE_DEFAULT_GRACE_S      30.0
#define SERVE_DEFAULT_QUEUE_MAX    100000
#define SERVE_DEFAULT_CLIENT_QUEUE (16u << 20)
#define SERVE_DEFAULT_JOURNAL_MAX  (64u << 20)
#define SERVE_CLIENTS_MAX          4096
#define SERVE_ALLOW_MAX            64
#define SERVE_POLICY_CACHE_MAX     16
#define SERVE_DEFAULT_MAX_ITER     100
#define SERVE_READ_CHUNK           65536
#define SERVE_REPLAY_LOW_WATER     (256u << 10)
#define SERVE_RESULT_MAX_BYTES     (256u << 20)
#define SERVE_EXIT_FLUSH_S         2.0
#define SERVE_EPOLL_BATCH          256
#define SERVE_REWAKE_S             0.05

enum kind { K_LISTEN = 1, K_SIGNAL, K_CLIENT, K_RUNNER, K_BROKER };

struct tag {
    enum kind kind;
};

enum pending { P_NONE, P_WAIT, P_STREAM };

struct client {
    struct tag tag;
    struct server *srv;
    int fd;
    uid_t uid;
    gid_t gid;
    int passed_fd; /* a descriptor the client sent (SCM_RIGHTS) for its next submit, or -1 */
    char *in;
    size_t inlen, incap;
    bool discarding; /* dropping the rest of an oversized line */
    char *out;
    size_t outlen, outoff, outcap;
    uint32_t interest;
    bool dead;
    bool eof; /* the peer shut down its writing side: answer what it asked, then close */
    enum pending pending;
    char id[TASK_ID_MAX + 1];
    bool all, follow, live;
    double deadline; /* wait: monotonic, 0 = none */
    int replay_fd;
    char *carry; /* a replayed line not yet complete */
    size_t carrylen;
    struct client *prev, *next;
};

struct slot;
struct fdtag {
    struct tag tag; /* K_RUNNER */
    struct slot *sl;
    int idx;
};

struct slot {
    struct fdtag ftags[4]; /* epoll says which fd fired through its own tag */
    struct server *srv;
    struct stask *t;
    struct runner *runner;
    struct broker *own_broker; /* --replay: each task reads its own trajectory */
    struct event_log events;
    int fds[4];
    short revents[4];
    int nfds;
    bool ready;
    double woken_for, rewake_at; /* a runner wake-up already handled, and when to retry it */
    char models[RUNNER_MODELS_MAX][CONFIG_MODEL_MAX];
    char state_dir[4400]; /* the runner borrows it for its whole life */
    struct slot *prev, *next;
};

struct policy_entry {
    char name[256];
    bool network_none;
    struct policy *pol;
    struct sock_fprog prog;
};

struct server {
    const char *socket_path, *replay;
    char state_dir[CONFIG_URL_MAX];
    unsigned jobs;
    unsigned long retain, queue_max;
    size_t client_queue;
    uint64_t journal_max; /* compact the running journal past this many appended bytes */
    double grace_s;
    bool requeue;
    uid_t allow_uid[SERVE_ALLOW_MAX];
    gid_t allow_gid[SERVE_ALLOW_MAX];
    int nallow_uid, nallow_gid;
    mode_t socket_mode;

    struct agentbox_config cfg;
    struct catalog cat;
    struct broker *broker; /* shared (live); NULL with --replay */
    struct journal journal;
    struct taskstore store;
    struct metrics metrics;
    struct policy_entry policies[SERVE_POLICY_CACHE_MAX];
    int npolicies;

    int ep, lfd, sigfd, bep;
    bool socket_inherited; /* from systemd (LISTEN_FDS): not ours to unlink */
    int lockfd;            /* STATE/.serve.lock, flock'ed: one server per state dir */
    struct tag listen_tag, signal_tag, broker_tag;
    int bfds[256];
    int nbfds;
    struct client *clients;
    int nclients;
    struct slot *running;
    unsigned nrunning;
    struct stask *qhead, *qtail;
    unsigned long nqueued;
    double started_mono;
    bool draining, cancelled_all, exiting;
    double drain_deadline, exit_deadline;
};

/* serve_task.c */
void serve_remove_tree(const char *path);
void serve_task_dir(const struct server *s, const char *id, char *out, size_t outsz);
void serve_finish_without_runner(struct server *s, struct stask *t, enum task_status st,
                                 const char *error_type, const char *message);
void serve_unregister_slot_fds(struct slot *sl);
int serve_policy_get(struct server *s, const char *name, bool network_none,
                     struct policy_entry **out, char *err, size_t errsz);
void serve_start_queued(struct server *s);
void serve_enqueue(struct server *s, struct stask *t);
void serve_dequeue(struct server *s, struct stask *t);
void serve_step_runners(struct server *s);
void serve_cancel_queued(struct server *s, const char *why);
int serve_recover(struct server *s, char *err, size_t errsz);
cJSON *serve_load_result(const struct server *s, const char *id);

/* serve_client.c */
void serve_client_interest(struct client *c);
void serve_client_flush(struct client *c);
void serve_client_queue(struct client *c, const char *p, size_t n);
void serve_reply_error(struct client *c, enum protocol_error code, const char *msg);
void serve_reply_ok(struct client *c, cJSON *fields); /* fields consumed */
void serve_stream_end(struct client *c);
void serve_answer_waiters(struct server *s, struct stask *t);
void serve_stream_pump(struct client *c);
void serve_client_process(struct client *c);
void serve_client_read(struct client *c);
void serve_client_close(struct client *c);
void serve_accept(struct server *s);

#endif
