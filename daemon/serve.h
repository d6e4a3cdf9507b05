/* serve (private): the state shared by the supervisor's files: serve.c (the loop, signals,
 * start-up), serve_task.c (tasks: start, finish, events, recovery), serve_result.c (results
 * made durable, read back, rebuilt) and serve_client.c (socket clients: I/O, the ops, event
 * streams). Not an interface for anything outside `agentbox serve`. */
#ifndef AGENTBOX_SERVE_H
#define AGENTBOX_SERVE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "catalog.h"
#include "config.h"
#include "egress_rules.h"
#include "journal.h"
#include "metrics.h"
#include "policy.h"
#include "protocol.h"
#include "runner.h"
#include "statefile.h"
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
#define SERVE_INPUT_TOTAL_MAX      (64u << 20) /* all clients' input buffers together */
#define SERVE_REPLAY_LOW_WATER     (256u << 10)
#define SERVE_RESULT_MAX_BYTES     (256u << 20)
#define SERVE_EVENTS_READ_MAX      (64u << 20) /* a task's events file read whole; one line replayed */
#define SERVE_EXIT_FLUSH_S         2.0
#define SERVE_LOCK_WAIT_S          2.0 /* a killed server's dying children may hold the lock */
#define SERVE_EPOLL_BATCH          256
#define SERVE_REWAKE_S             0.05
#define SERVE_LISTEN_PAUSE_S       0.1 /* out of fds and no spare: listener not polled */

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
    bool admin;    /* sees and acts on every task: root, the server's uid, --admin-gid */
    char *in;
    size_t inlen, incap;
    bool discarding; /* dropping the rest of an oversized line */
    char *out;
    size_t outlen, outoff, outcap;
    size_t outmax; /* --client-queue: the output queue's bound (serve_client_queue) */
    uint32_t interest;
    bool dead;
    bool eof; /* the peer shut down its writing side: answer what it asked, then close */
    enum pending pending;
    char id[TASK_ID_MAX + 1];
    bool all, follow, live;
    double deadline; /* wait: monotonic, 0 = none */
    int replay_fd;
    char *carry; /* a replayed line not yet complete */
    size_t carrylen, carrycap;
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
    char state_dir[STATEFILE_PATH_MAX]; /* the runner borrows it for its whole life */
    struct policy_entry *pe;     /* borrowed (a reference held) for the runner's whole life */
    struct egress_rules *egress; /* with egress only (29 KiB); the runner borrows it */
    struct slot *prev, *next;
};

struct policy_entry {
    char name[256]; /* an installed policy's name, or "inline:" + SHA-256 of its text */
    bool network_none;
    unsigned refs;      /* running tasks that borrow it: never evicted while > 0 */
    unsigned long used; /* the server's policy clock at its last use (LRU eviction) */
    struct policy *pol;
    struct sock_fprog prog;
};

/* What the task side tells the client side, installed by serve.c (serve_client.c's
 * functions): serve_task.c never walks the clients nor calls into serve_client.c. */
struct serve_publish {
    /* one event line of task t to every live subscriber; terminal: t's stream ends */
    void (*event)(struct server *s, const struct stask *t, const char *line, size_t len,
                  bool terminal);
    void (*finished)(struct server *s, struct stask *t); /* t has a result: answer its waiters */
};

struct server {
    const char *socket_path, *replay;
    char state_dir[CONFIG_URL_MAX];
    unsigned jobs;
    unsigned prewarm_n;      /* --prewarm */
    struct prewarm *prewarm; /* its pool (serve_prewarm.c), NULL without */
    unsigned long retain, queue_max;
    size_t client_queue;
    uint64_t journal_max; /* compact the running journal past this many appended bytes */
    double grace_s;
    bool requeue;
    uid_t allow_uid[SERVE_ALLOW_MAX];
    gid_t allow_gid[SERVE_ALLOW_MAX];
    int nallow_uid, nallow_gid;
    gid_t admin_gid[SERVE_ALLOW_MAX]; /* members see every client's tasks */
    int nadmin_gid;
    mode_t socket_mode;
    struct egress_rules egress_ceiling; /* --egress-allow/--egress-resolve (serve_egress.c) */
    bool egress_ceiling_set;

    struct agentbox_config cfg;
    struct catalog cat;
    struct broker *broker; /* shared (live); NULL with --replay */
    struct journal journal;
    struct taskstore store;
    struct metrics metrics;
    struct policy_entry policies[SERVE_POLICY_CACHE_MAX];
    int npolicies;
    unsigned long policy_clock;
    const char *floor_name; /* --policy-floor (default "default") */
    struct policy *floor;   /* no client policy may be weaker, unless allow_weaker */
    bool allow_weaker;      /* --allow-weaker-policies */

    int ep, lfd, sigfd, bep;
    bool socket_inherited; /* from systemd (LISTEN_FDS): not ours to unlink */
    int lockfd;            /* STATE/.serve.lock, flock'ed: one server per state dir */
    int state_dfd;         /* the state dir, judged trusted: files in it opened by *at() */
    struct tag listen_tag, signal_tag, broker_tag;
    int bfds[256];
    int nbfds;
    struct client *clients;
    int nclients;
    size_t in_bytes;            /* all clients' input buffers (SERVE_INPUT_TOTAL_MAX) */
    int spare_fd;               /* /dev/null, given up to accept-and-refuse when out of fds */
    unsigned long fd_refused;   /* connections refused for want of an fd, since the last log */
    double fd_log_at;           /* monotonic: when that count was last logged */
    double listen_paused_until; /* monotonic; 0 = the listener is polled */
    struct slot *running;
    unsigned nrunning;
    struct stask *qhead, *qtail;
    unsigned long nqueued;
    double started_mono;
    bool draining, cancelled_all, exiting;
    bool no_space;           /* the last state write found the disk full */
    unsigned long nunsaved;  /* finished tasks whose result or record is not durable yet */
    double unsaved_retry_at; /* monotonic */
    double drain_deadline, exit_deadline;
    struct serve_publish publish;
};

/* serve_result.c */
cJSON *serve_load_result(const struct server *s, const char *id);
const char *serve_terminal_event_type(enum task_status st);
bool serve_is_terminal_event(const char *type);
cJSON *serve_terminal_event(const struct server *s, const char *id);
void serve_emit_own_event(struct server *s, struct stask *t, const char *type, cJSON *fields);
cJSON *serve_terminal_fields(const cJSON *res);
cJSON *serve_rebuild_result(const struct server *s, const struct stask *t, const cJSON *ev);
bool serve_save_result(struct server *s, const char *id, const cJSON *res, const char *crash_point);
void serve_persist_finished(struct server *s, struct stask *t);
void serve_retry_unsaved(struct server *s);
cJSON *serve_result_get(struct server *s, struct stask *t);

/* serve_task.c */
void serve_slot_event_sink(void *opaque, const char *line, size_t len);
void serve_remove_tree(struct server *s, const char *id);
void serve_finish_without_runner(struct server *s, struct stask *t, enum task_status st,
                                 const char *error_type, const char *message);
void serve_unregister_slot_fds(struct slot *sl);
/* A slot that holds no runner any more (or never did): its broker, egress rules and itself. */
void serve_slot_free(struct slot *sl);
/* serve_policy.c: the task's policy (an installed one by name, or inline), checked against
 * the floor, compiled, from a bounded cache that evicts the least recently used entry no
 * running task borrows. A client may never name a path. */
int serve_policy_get(struct server *s, const struct task *tk, struct policy_entry **out, char *err,
                     size_t errsz);
void serve_policy_put(struct policy_entry *e);
int serve_policy_init(struct server *s, char *err, size_t errsz);
void serve_policy_free(struct server *s);
/* serve_egress.c: --egress-allow / --egress-resolve into the ceiling; -1 + err. */
int serve_egress_option(struct server *s, bool pin, const char *v, char *err, size_t errsz);
/* Adds OPENHANDS_EGRESS_ALLOW / OPENHANDS_EGRESS_RESOLVE (comma or space separated) to the
 * ceiling the options built. -1 + err. */
int serve_egress_from_config(struct server *s, char *err, size_t errsz);
/* A submitted task's network request against the ceiling; -1 + err (task.network: ...). */
int serve_egress_check(const struct server *s, const struct task *t, char *err, size_t errsz);
void serve_start_queued(struct server *s);
void serve_enqueue(struct server *s, struct stask *t);
void serve_dequeue(struct server *s, struct stask *t);
void serve_step_runners(struct server *s);
/* serve_prewarm.c */
int serve_prewarm_start(struct server *s, char *err, size_t errsz);
void serve_prewarm_step(struct server *s);
void serve_prewarm_stop(struct server *s);
void serve_cancel_queued(struct server *s, const char *why);
int serve_recover(struct server *s, char *err, size_t errsz);

/* serve_client.c */
void serve_client_interest(struct client *c);
void serve_client_flush(struct client *c);
void serve_client_queue(struct client *c, const char *p, size_t n);
void serve_reply_error(struct client *c, enum protocol_error code, const char *msg);
void serve_reply_ok(struct client *c, cJSON *fields); /* fields consumed */
void serve_stream_end(struct client *c);
void serve_answer_waiters(struct server *s, struct stask *t);
void serve_publish_event(struct server *s, const struct stask *t, const char *line, size_t len,
                         bool terminal);
void serve_stream_pump(struct client *c);
void serve_client_process(struct client *c);
void serve_client_read(struct client *c);
void serve_client_close(struct client *c);
void serve_accept(struct server *s);
/* A task is its submitter's: others (but admins) are told it does not exist. */
bool serve_client_sees(const struct client *c, const struct stask *t);

#endif
