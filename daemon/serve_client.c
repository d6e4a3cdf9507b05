/* serve_client: the socket clients of `agentbox serve`: non-blocking reads into a bounded
 * buffer, one request at a time per connection, the ops, event streams (replay from the
 * task's events file, then live) and bounded output queues. Never blocks on a client: a slow
 * reader is disconnected at its queue bound, a stalled writer costs nothing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "commands.h"
#include "json.h"
#include "log.h"
#include "safedir.h"
#include "util.h"
#include "serve.h"
#include "serve_log.h"
#include "fdpass.h"
#include "grow.h"
#include "serve_artifact.h"

/* ---------------------------------------------------------------- clients: output */

void serve_client_interest(struct client *c)
{
    if (c->dead)
        return;
    uint32_t want = 0;
    if (!c->eof)
        want |= EPOLLRDHUP; /* level-triggered: asked for only until seen */
    if (c->pending == P_NONE && !c->eof)
        want |= EPOLLIN;
    if (c->outlen > c->outoff)
        want |= EPOLLOUT;
    if (want == c->interest)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(c->srv->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->interest = want;
}

void serve_client_flush(struct client *c)
{
    while (!c->dead && c->outlen > c->outoff) {
        ssize_t n =
            send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->outoff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        c->dead = true; /* EPIPE, ECONNRESET: the peer is gone */
        return;
    }
    if (c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    else if (c->outoff > (1u << 20)) {
        memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
        c->outlen -= c->outoff;
        c->outoff = 0;
    }
}

/* Queues bytes for the client. The queue's bound is --client-queue, given when the client is
 * accepted (outmax): a reader that lets its queue pass it is dropped; one message larger than
 * the bound is accepted alone, into an empty queue. */
void serve_client_queue(struct client *c, const char *p, size_t n)
{
    if (c->dead || n == 0)
        return;
    size_t queued = c->outlen - c->outoff;
    if (queued > 0 && queued + n > c->outmax) {
        log_info("client uid %u: output queue over %zu bytes, disconnected", (unsigned)c->uid,
                 c->outmax);
        c->dead = true;
        return;
    }
    if (c->outlen + n > c->outcap && c->outoff > 0) { /* what was sent makes room first */
        memmove(c->out, c->out + c->outoff, queued);
        c->outlen = queued;
        c->outoff = 0;
    }
    size_t most = queued ? c->outmax : (n > c->outmax ? n : c->outmax);
    if (grow_to_fit(&c->out, c->outlen + n - 1, &c->outcap, 1, 4096, most) < 0) {
        log_info("client uid %u: no room for %zu more bytes of output (%s), disconnected",
                 (unsigned)c->uid, n, strerror(errno));
        c->dead = true;
        return;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
    serve_client_flush(c);
}

static void queue_line(struct client *c, char *line)
{
    if (!line) {
        c->dead = true;
        return;
    }
    serve_client_queue(c, line, strlen(line));
    free(line);
}

void serve_reply_error(struct client *c, enum protocol_error code, const char *msg)
{
    queue_line(c, protocol_error_line(code, msg));
}

static void reply_ok(struct client *c, cJSON *fields)
{
    queue_line(c, protocol_ok_line(fields));
}

void serve_reply_ok(struct client *c, cJSON *fields)
{
    reply_ok(c, fields);
}

/* ---------------------------------------------------------------- summaries */

static cJSON *time_or_null(double t)
{
    return t > 0 ? cJSON_CreateNumber(t) : cJSON_CreateNull();
}

static cJSON *task_summary(const struct stask *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "status", task_status_name(t->status));
    cJSON_AddItemToObject(o, "submitted", time_or_null(t->submitted));
    cJSON_AddItemToObject(o, "started", time_or_null(t->started));
    cJSON_AddItemToObject(o, "ended", time_or_null(t->ended));
    return o;
}

/* ---------------------------------------------------------------- ownership */

bool serve_client_sees(const struct client *c, const struct stask *t)
{
    return c->admin || (t->owner >= 0 && (uid_t)t->owner == c->uid);
}

/* The task by id when this client may see it; another client's task answers not_found
 * exactly as an unknown id does, so ids reveal nothing. */
static struct stask *find_visible(struct client *c, const char *id)
{
    struct stask *t = taskstore_find(&c->srv->store, id);
    if (!t || !serve_client_sees(c, t)) {
        serve_reply_error(c, PERR_NOT_FOUND, "no such task");
        return NULL;
    }
    return t;
}

/* ---------------------------------------------------------------- ops */

static void drop_carry(struct client *c)
{
    free(c->carry);
    c->carry = NULL;
    c->carrylen = c->carrycap = 0;
}

void serve_stream_end(struct client *c)
{
    if (c->replay_fd >= 0)
        (void)close(c->replay_fd);
    c->replay_fd = -1;
    drop_carry(c);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddBoolToObject(f, "end", true);
    reply_ok(c, f);
    c->pending = P_NONE;
    c->live = false;
    serve_client_interest(c);
}

static void op_submit(struct client *c, const struct request *req)
{
    struct server *s = c->srv;
    if (s->draining) {
        serve_reply_error(c, PERR_SHUTTING_DOWN, "the server is draining: no new tasks");
        return;
    }
    if (s->nqueued >= s->queue_max) {
        serve_reply_error(c, PERR_QUEUE_FULL, "the queue is full; try again later");
        return;
    }
    char err[ERR_MSG_MAX];
    struct task tk;
    if (task_parse(req->task, &tk, err, sizeof(err)) < 0) {
        serve_reply_error(c, PERR_INVALID_TASK, err);
        return;
    }
    /* The seed is opened now, with this client's rights, never the server's. */
    struct seed_requester who;
    if (tk.workspace_from && (seed_requester_from_socket(c->fd, &who) < 0 ||
                              task_open_seed(&tk, &who, err, sizeof(err)) < 0)) {
        task_free(&tk);
        serve_reply_error(c, PERR_INVALID_TASK, err);
        return;
    }
    tk.requester_set = true; /* a git workspace is read with the client's rights */
    tk.requester_uid = c->uid;
    tk.requester_gid = c->gid;
    struct policy_entry *pe = NULL;
    if (serve_egress_check(s, &tk, err, sizeof(err)) < 0 ||
        serve_policy_get(s, &tk, &pe, err, sizeof(err)) < 0) {
        task_free(&tk);
        serve_reply_error(c, PERR_INVALID_TASK, err);
        return;
    }
    struct stat st;
    if (taskstore_find(&s->store, tk.id) ||
        fstatat(s->state_dfd, tk.id, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        snprintf(err, sizeof(err), "task id '%s' is already known to this server", tk.id);
        task_free(&tk);
        serve_reply_error(c, PERR_DUPLICATE_ID, err);
        return;
    }
    cJSON *json = cJSON_Duplicate(req->task, 1);
    if (json) {
        cJSON_DeleteItemFromObjectCaseSensitive(json, "id");
        cJSON_AddStringToObject(json, "id", tk.id);
    }
    if (json && serve_upload(s, req->root, &c->passed_fd, &tk, json, err, sizeof(err)) < 0) {
        cJSON_Delete(json);
        task_free(&tk);
        serve_reply_error(c, PERR_INVALID_TASK, err);
        return;
    }
    struct stask *t = json ? taskstore_add(&s->store, tk.id) : NULL;
    if (!t) {
        cJSON_Delete(json);
        task_free(&tk);
        serve_reply_error(c, PERR_INTERNAL, "out of memory");
        return;
    }
    t->task = tk;
    t->parsed = true;
    t->task_json = json;
    t->submitted = wallclock_s();
    /* acknowledged only once its record is durable */
    t->owner = (long)c->uid;
    if (journal_submitted(&s->journal, t->id, json, t->submitted, t->owner) < 0) {
        int e = errno;
        taskstore_remove(&s->store, t);
        if (errno_is_no_space(e)) {
            if (!s->no_space)
                log_error("state disk %s is full: new tasks are refused until it has room",
                          s->state_dir);
            s->no_space = true;
            serve_reply_error(c, PERR_NO_SPACE,
                              "the server's state disk is full: the task was not accepted "
                              "(try again later)");
        } else {
            snprintf(err, sizeof(err), "journal: %s: the task was not accepted", strerror(e));
            serve_reply_error(c, PERR_INTERNAL, err);
        }
        return;
    }
    if (s->no_space)
        log_info("state disk: writable again");
    s->no_space = false;
    serve_enqueue(s, t);
    serve_log_accepted(t->id, (unsigned)c->uid, s->nqueued);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "id", t->id);
    reply_ok(c, f);
    serve_start_queued(s);
}

static void send_result(struct client *c, struct stask *t)
{
    /* results live on disk and are read on demand: memory holds only the summary */
    cJSON *res = serve_result_get(c->srv, t);
    if (!res) {
        serve_reply_error(c, PERR_INTERNAL, "the task's result cannot be read or rebuilt");
        return;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddItemToObject(f, "result", res);
    reply_ok(c, f);
}

void serve_publish_event(struct server *s, const struct stask *t, const char *line, size_t len,
                         bool terminal)
{
    for (struct client *c = s->clients; c; c = c->next) {
        if (c->dead || c->pending != P_STREAM || !c->live)
            continue;
        if (!c->all && strcmp(c->id, t->id) != 0)
            continue;
        if (c->all && !serve_client_sees(c, t))
            continue; /* "events all": only the tasks this client may see */
        serve_client_queue(c, line, len);
        if (terminal && !c->all)
            serve_stream_end(c);
    }
}

void serve_answer_waiters(struct server *s, struct stask *t)
{
    for (struct client *c = s->clients; c; c = c->next) {
        if (c->dead || c->pending != P_WAIT || strcmp(c->id, t->id) != 0)
            continue;
        c->pending = P_NONE;
        send_result(c, t);
        serve_client_interest(c);
    }
}

static void op_wait(struct client *c, const struct request *req)
{
    struct stask *t = find_visible(c, req->id);
    if (!t)
        return;
    if (task_status_terminal(t->status)) {
        send_result(c, t);
        return;
    }
    if (req->timeout_s == 0) {
        serve_reply_error(c, PERR_TIMEOUT, "the task has not finished");
        return;
    }
    c->pending = P_WAIT;
    snprintf(c->id, sizeof(c->id), "%s", t->id);
    c->deadline = req->timeout_s > 0 ? monotonic_s() + req->timeout_s : 0;
}

static void op_cancel(struct client *c, const struct request *req)
{
    struct server *s = c->srv;
    struct stask *t = find_visible(c, req->id);
    if (!t)
        return;
    bool cancelling = false;
    if (t->status == TS_QUEUED) {
        serve_dequeue(s, t);
        serve_finish_without_runner(s, t, TS_CANCELLED, "UNKNOWN_ERROR",
                                    "cancelled before it started");
    } else if (t->status == TS_RUNNING) {
        t->cancel_requested = true;
        cancelling = true;
        struct slot *sl = t->slot;
        if (sl)
            runner_cancel(sl->runner);
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", task_status_name(t->status));
    cJSON_AddBoolToObject(f, "cancelling", cancelling);
    reply_ok(c, f);
}

static void op_events(struct client *c, const struct request *req)
{
    struct server *s = c->srv;
    struct stask *t = NULL;
    if (!req->all && !(t = find_visible(c, req->id)))
        return;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddBoolToObject(f, "stream", true);
    reply_ok(c, f);
    c->pending = P_STREAM;
    c->all = req->all;
    c->follow = req->follow;
    c->live = false;
    c->id[0] = '\0';
    if (req->all) {
        /* every task's live events from now on; no replay of the whole history */
        if (!req->follow)
            serve_stream_end(c);
        else
            c->live = true;
        return;
    }
    snprintf(c->id, sizeof(c->id), "%s", t->id);
    c->replay_fd = statefile_open(s->state_dfd, t->id, "events.jsonl", O_RDONLY, 0);
    /* a queued task has no events file yet: nothing to replay */
    serve_stream_pump(c);
}

/* Replays the events file in chunks while the client keeps up; at its end (everything
 * emitted so far is in the file: the loop is single-threaded and the file written
 * synchronously) the client turns live, or the stream ends. */
void serve_stream_pump(struct client *c)
{
    while (!c->dead && c->pending == P_STREAM && !c->live &&
           c->outlen - c->outoff < SERVE_REPLAY_LOW_WATER) {
        ssize_t n = -1;
        char buf[SERVE_READ_CHUNK];
        if (c->replay_fd >= 0) {
            n = read(c->replay_fd, buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
        }
        if (n > 0) {
            /* one line at most is carried, bounded as serve reads an events file */
            if (GROW(c->carry, c->carrylen + (size_t)n - 1, c->carrycap, SERVE_READ_CHUNK * 2,
                     SERVE_EVENTS_READ_MAX) < 0) {
                log_warn("client uid %u: events of %s: %s; the stream ends here", (unsigned)c->uid,
                         c->id,
                         errno == E2BIG ? "a line longer than the events file's bound"
                                        : strerror(errno));
                serve_stream_end(c);
                return;
            }
            memcpy(c->carry + c->carrylen, buf, (size_t)n);
            c->carrylen += (size_t)n;
            char *last = memrchr(c->carry, '\n', c->carrylen);
            if (last) {
                size_t whole = (size_t)(last - c->carry) + 1;
                serve_client_queue(c, c->carry, whole);
                memmove(c->carry, c->carry + whole, c->carrylen - whole);
                c->carrylen -= whole;
            }
            continue;
        }
        /* end of the file */
        if (c->replay_fd >= 0)
            (void)close(c->replay_fd);
        c->replay_fd = -1;
        drop_carry(c);
        struct stask *t = taskstore_find(&c->srv->store, c->id);
        if (!c->follow || !t || task_status_terminal(t->status))
            serve_stream_end(c);
        else
            c->live = true;
    }
}

static void op_status(struct client *c, const struct request *req)
{
    struct stask *t = find_visible(c, req->id);
    if (!t)
        return;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddItemToObject(f, "task", task_summary(t));
    reply_ok(c, f);
}

static void op_list(struct client *c)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(f, "tasks");
    for (struct stask *t = c->srv->store.head; t; t = t->next)
        if (serve_client_sees(c, t))
            cJSON_AddItemToArray(arr, task_summary(t));
    reply_ok(c, f);
}

static void op_health(struct client *c)
{
    struct server *s = c->srv;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", s->draining ? "draining" : "ok");
    cJSON_AddStringToObject(f, "state_disk", s->no_space ? "full" : "ok");
    cJSON_AddNumberToObject(f, "unsaved_results", (double)s->nunsaved);
    cJSON_AddStringToObject(f, "version", AGENTBOX_VERSION);
    cJSON_AddNumberToObject(f, "running", s->nrunning);
    cJSON_AddNumberToObject(f, "queued", (double)s->nqueued);
    cJSON_AddNumberToObject(f, "jobs", s->jobs);
    cJSON_AddNumberToObject(f, "uptime_s", monotonic_s() - s->started_mono);
    cJSON_AddBoolToObject(f, "replay", s->replay != NULL);
    cJSON_AddItemToObject(f, "breaker", metrics_breakers_json(&s->metrics));
    reply_ok(c, f);
}

static void op_metrics(struct client *c)
{
    struct server *s = c->srv;
    const char *names[TS_NSTATUS];
    for (int i = 0; i < TS_NSTATUS; i++)
        names[i] = task_status_name((enum task_status)i);
    struct metrics_gauges g = {
        .status_names = names,
        .status_counts = s->store.by_status,
        .nstatus = TS_NSTATUS,
        .queue_depth = s->nqueued,
        .running_cells = s->nrunning,
    };
    cleanup_free char *text = metrics_format(&s->metrics, &g);
    if (!text) {
        serve_reply_error(c, PERR_INTERNAL, "out of memory");
        return;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "text", text);
    reply_ok(c, f);
}

static void handle_request(struct client *c, const char *line, size_t len)
{
    struct request req;
    enum protocol_error code;
    char err[ERR_MSG_MAX];
    if (protocol_parse(line, len, &req, &code, err, sizeof(err)) < 0) {
        serve_reply_error(c, code, err);
        return;
    }
    switch (req.op) {
    case OP_SUBMIT:
        op_submit(c, &req);
        break;
    case OP_STATUS:
        op_status(c, &req);
        break;
    case OP_WAIT:
        op_wait(c, &req);
        break;
    case OP_CANCEL:
        op_cancel(c, &req);
        break;
    case OP_EVENTS:
        op_events(c, &req);
        break;
    case OP_LIST:
        op_list(c);
        break;
    case OP_HEALTH:
        op_health(c);
        break;
    case OP_METRICS:
        op_metrics(c);
        break;
    case OP_ARTIFACT:
        serve_op_artifact(c, &req);
        break;
    }
    request_free(&req);
}

/* ---------------------------------------------------------------- clients: input */

/* Every client's input buffer is accounted in s->in_bytes (bounded by SERVE_INPUT_TOTAL_MAX):
 * sized here only. 0 frees it. */
static int set_in_cap(struct client *c, size_t ncap)
{
    struct server *s = c->srv;
    if (ncap == 0) {
        free(c->in);
        c->in = NULL;
    } else {
        char *ni = realloc(c->in, ncap);
        if (!ni)
            return -1;
        c->in = ni;
    }
    s->in_bytes = s->in_bytes - c->incap + ncap;
    c->incap = ncap;
    return 0;
}

/* The line being read is dropped (too long, or no room left for it); what follows its
 * newline is read again. The buffer goes back to nothing: a peer that stops mid-line holds
 * no memory. */
static void start_discard(struct client *c, const char *why)
{
    if (!c->discarding)
        serve_reply_error(c, PERR_TOO_LARGE, why);
    c->discarding = true;
    c->inlen = 0;
    (void)set_in_cap(c, 0);
}

/* One request at a time per connection: while a wait or a stream is pending, the next
 * lines stay in the buffer (and the socket is not read: the peer's writes block). */
void serve_client_process(struct client *c)
{
    size_t off = 0;
    while (!c->dead && c->pending == P_NONE && off < c->inlen) {
        char *nl = memchr(c->in + off, '\n', c->inlen - off);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (c->in + off));
        if (c->discarding)
            c->discarding = false;
        else if (len > 0 && !(len == 1 && c->in[off] == '\r'))
            handle_request(c, c->in + off, len);
        off += len + 1;
    }
    if (c->discarding && off == 0)
        off = c->inlen; /* still inside the dropped line: nothing of it is kept */
    if (off) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
    }
    if (!c->dead && c->pending == P_NONE && c->inlen > PROTOCOL_REQUEST_MAX_BYTES) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request: longer than %u bytes", PROTOCOL_REQUEST_MAX_BYTES);
        start_discard(c, msg);
    }
    /* a buffer grown for one large request shrinks back once it is handled */
    if (c->incap > 2 * SERVE_READ_CHUNK && c->inlen <= SERVE_READ_CHUNK)
        (void)set_in_cap(c, c->inlen ? 2 * SERVE_READ_CHUNK : 0);
    else if (c->discarding && c->inlen == 0 && c->incap)
        (void)set_in_cap(c, 0);
    serve_client_interest(c);
}

/* Room for one more read: the buffer grows by doubling up to one request's bound, and only
 * while all clients' buffers together stay within SERVE_INPUT_TOTAL_MAX. */
static int grow_input(struct client *c)
{
    size_t most = PROTOCOL_REQUEST_MAX_BYTES + 2 * SERVE_READ_CHUNK;
    size_t ncap =
        grow_next_cap(c->inlen + SERVE_READ_CHUNK - 1, c->incap, SERVE_READ_CHUNK * 2, most);
    if (ncap == c->incap || ncap == 0)
        return 0; /* room enough; or full: the next process() discards */
    if (c->srv->in_bytes - c->incap + ncap > SERVE_INPUT_TOTAL_MAX) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "request: the server's input buffers are full (%u MiB for all clients): "
                 "send it again later",
                 SERVE_INPUT_TOTAL_MAX >> 20);
        start_discard(c, msg);
        return c->incap - c->inlen >= SERVE_READ_CHUNK ? 0 : set_in_cap(c, SERVE_READ_CHUNK * 2);
    }
    return set_in_cap(c, ncap);
}

void serve_client_read(struct client *c)
{
    /* bounded per wake-up so one fast writer cannot starve the others */
    for (int rounds = 0; rounds < 16 && !c->dead && c->pending == P_NONE; rounds++) {
        if (grow_input(c) < 0) {
            c->dead = true;
            return;
        }
        int got = -1; /* a workspace archive may come with the bytes (serve_artifact.h) */
        ssize_t n = fdpass_recv(c->fd, c->in + c->inlen, c->incap - c->inlen, MSG_DONTWAIT, &got);
        if (got >= 0) {
            if (c->passed_fd >= 0)
                (void)close(c->passed_fd);
            c->passed_fd = got;
        }
        if (n == 0) {
            c->eof = true;
            serve_client_interest(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                c->dead = true;
            return;
        }
        c->inlen += (size_t)n;
        serve_client_process(c);
    }
}

void serve_client_close(struct client *c)
{
    struct server *s = c->srv;
    (void)epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    (void)close(c->fd);
    if (c->passed_fd >= 0)
        (void)close(c->passed_fd);
    if (c->replay_fd >= 0)
        (void)close(c->replay_fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nclients--;
    (void)set_in_cap(c, 0);
    free(c->out);
    free(c->carry);
    free(c);
}

/* Root, the server's own uid, and members (primary or supplementary) of an --admin-gid. */
static bool peer_is_admin(const struct server *s, int fd, const struct ucred *cr)
{
    if (cr->uid == 0 || cr->uid == geteuid())
        return true;
    gid_t groups[256];
    socklen_t len = sizeof(groups);
    int ng = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0
                 ? (int)(len / sizeof(gid_t))
                 : 0;
    for (int i = 0; i < s->nadmin_gid; i++) {
        if (s->admin_gid[i] == cr->gid)
            return true;
        for (int k = 0; k < ng; k++)
            if (groups[k] == s->admin_gid[i])
                return true;
    }
    return false;
}

static bool peer_allowed(const struct server *s, const struct ucred *cr)
{
    if (cr->uid == 0 || cr->uid == geteuid())
        return true;
    for (int i = 0; i < s->nallow_uid; i++)
        if (s->allow_uid[i] == cr->uid)
            return true;
    for (int i = 0; i < s->nallow_gid; i++)
        if (s->allow_gid[i] == cr->gid)
            return true;
    return false;
}

/* Out of fds (EMFILE, ENFILE): the level-triggered listener would wake the loop forever.
 * The spare fd is given up to accept the connection and refuse it with a reason, then
 * taken back; without a spare the listener is paused for a moment. One log line per 10 s.
 * Returns true when a connection was taken off the backlog. */
static bool refuse_for_want_of_fds(struct server *s)
{
    int why = errno;
    double now = monotonic_s();
    s->fd_refused++;
    if (now >= s->fd_log_at + 10.0) {
        log_warn("accept: %s: %lu connection(s) refused since the last such line", strerror(why),
                 s->fd_refused);
        s->fd_refused = 0;
        s->fd_log_at = now;
    }
    bool taken = false;
    if (s->spare_fd >= 0) {
        (void)close(s->spare_fd);
        s->spare_fd = -1;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            cleanup_free char *line = protocol_error_line(
                PERR_INTERNAL, "the server is out of file descriptors: try again later");
            if (line)
                (void)send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)close(fd);
            taken = true;
        }
        s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (!taken) {
        struct epoll_event ev = {.events = 0, .data.ptr = &s->listen_tag};
        if (epoll_ctl(s->ep, EPOLL_CTL_MOD, s->lfd, &ev) == 0)
            s->listen_paused_until = now + SERVE_LISTEN_PAUSE_S;
    }
    return taken;
}

void serve_accept(struct server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && refuse_for_want_of_fds(s))
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        struct ucred cr;
        socklen_t crlen = sizeof(cr);
        bool admin = false;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 ||
            !((admin = peer_is_admin(s, fd, &cr)) || peer_allowed(s, &cr))) {
            cleanup_free char *line =
                protocol_error_line(PERR_FORBIDDEN, "this uid/gid may not use the server");
            if (line)
                (void)send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
            log_info("refused a client (uid %u gid %u)", (unsigned)cr.uid, (unsigned)cr.gid);
            (void)close(fd);
            continue;
        }
        struct client *c = s->nclients < SERVE_CLIENTS_MAX ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            (void)close(fd);
            continue;
        }
        c->tag.kind = K_CLIENT;
        c->srv = s;
        c->fd = fd;
        c->uid = cr.uid;
        c->admin = admin;
        c->gid = cr.gid;
        c->passed_fd = -1;
        c->replay_fd = -1;
        c->outmax = s->client_queue;
        c->interest = EPOLLIN | EPOLLRDHUP;
        struct epoll_event ev = {.events = c->interest, .data.ptr = c};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            (void)close(fd);
            free(c);
            continue;
        }
        c->next = s->clients;
        if (s->clients)
            s->clients->prev = c;
        s->clients = c;
        s->nclients++;
    }
}
