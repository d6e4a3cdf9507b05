/* cmd_client: `agentbox submit|wait|status|cancel|events|list|health|metrics`: one request
 * to a running `agentbox serve` over its Unix socket, the reply printed (JSON, or the
 * Prometheus text for metrics). wait (and submit --wait) exit with run's codes. Holds
 * no state; everything the server sends is parsed as untrusted JSON. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "commands.h"
#include "grow.h"
#include "json.h"
#include "protocol.h"
#include "task.h"
#include "util.h"

#define CLIENT_TASK_FILE_MAX_BYTES PROTOCOL_REQUEST_MAX_BYTES
#define CLIENT_REPLY_MAX_BYTES     (512u << 20)
#define CLIENT_READ_CHUNK          65536u

struct conn {
    int fd;
    char *buf;
    size_t len, cap; /* cap at most CLIENT_REPLY_MAX_BYTES + a read + the NUL */
    bool too_long;   /* a line passed CLIENT_REPLY_MAX_BYTES: refused, not grown */
};

struct op_help {
    const char *op, *synopsis, *what;
};

static const struct op_help op_helps[] = {
    {"submit",
     "(PROMPT | --task-file FILE|-) [--id ID] [--model M] [--timeout S]\n"
     "                       [--wait [--wait-timeout S]]",
     "Queues a task; prints its id (with --wait: the result, and exits as `wait`).\n"
     "A relative workspace.from_dir is taken from this directory, not the server's."},
    {"wait", "ID [--timeout S]",
     "Prints the task's result once it ends. Exit 0 succeeded, 1 failed, timed out or\n"
     "cancelled, 3 escalated, 4 mock, 5 --timeout passed first (the task goes on)."},
    {"status", "ID", "Prints the task's summary (status, times, model)."},
    {"cancel", "ID", "Asks the server to cancel the task; `wait` then gives its result."},
    {"events", "ID|all [--follow]",
     "Prints the task's events (or every task's) as JSON lines; --follow: until the end."},
    {"list", "", "Prints every task the server knows."},
    {"health", "", "Prints the server's health (jobs, queue, breakers)."},
    {"metrics", "", "Prints the server's metrics (Prometheus text)."},
};

static void usage(FILE *out, const char *op)
{
    for (size_t i = 0; i < ARRAY_SIZE(op_helps); i++)
        if (strcmp(op, op_helps[i].op) == 0)
            fprintf(out, "usage: agentbox %s [--socket PATH] %s\n\n%s\n\n", op,
                    op_helps[i].synopsis, op_helps[i].what);
    fprintf(out,
            "--socket defaults to $AGENTBOX_SOCKET, else %s.\n"
            "Exit 2: usage, no server there, or the server refused the request.\n"
            "The other client commands: submit wait status cancel events list health metrics\n"
            "(agentbox help COMMAND).\n",
            AGENTBOX_DEFAULT_SOCKET);
}

static int conn_open(struct conn *c, const char *path, const char *op)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "agentbox %s: --socket %s: path too long\n", op, path);
        return -1;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        struct stat st;
        if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "agentbox %s: --socket %s: not a socket\n", op, path);
            return -1;
        }
        fprintf(stderr, "agentbox %s: cannot reach the server at %s: %s%s\n", op, path, strerror(e),
                e == ENOENT || e == ECONNREFUSED ? " (is `agentbox serve` running there?)" : "");
        return -1;
    }
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        (void)close(c->fd);
    free(c->buf);
}

/* The next line (without its newline), NUL-terminated inside the buffer; NULL at EOF. */
static char *conn_line(struct conn *c, size_t *consumed)
{
    if (*consumed) {
        memmove(c->buf, c->buf + *consumed, c->len - *consumed);
        c->len -= *consumed;
        *consumed = 0;
    }
    for (;;) {
        char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            *nl = '\0';
            *consumed = (size_t)(nl - c->buf) + 1;
            return c->buf;
        }
        /* room for a 64 KiB read and the NUL, a line never past CLIENT_REPLY_MAX_BYTES */
        if (c->len >= CLIENT_REPLY_MAX_BYTES) {
            c->too_long = true;
            return NULL;
        }
        if (grow_to_fit(&c->buf, c->len + CLIENT_READ_CHUNK, &c->cap, 1, 131072,
                        (size_t)CLIENT_REPLY_MAX_BYTES + CLIENT_READ_CHUNK + 1) < 0)
            return NULL;
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        c->len += (size_t)n;
    }
}

static int send_request(struct conn *c, cJSON *req, const char *op)
{
    cleanup_free char *text = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!text || write_all(c->fd, text, strlen(text)) < 0 || write_all(c->fd, "\n", 1) < 0) {
        fprintf(stderr, "agentbox %s: cannot send the request: %s\n", op, strerror(errno));
        return -1;
    }
    return 0;
}

/* Reads one reply; prints the server's error and returns NULL when it is not ok. */
static cJSON *read_reply(struct conn *c, size_t *consumed, const char *op, const char **code)
{
    char *line = conn_line(c, consumed);
    if (!line && c->too_long) {
        fprintf(stderr, "agentbox %s: a reply from the server is longer than %u bytes\n", op,
                CLIENT_REPLY_MAX_BYTES);
        return NULL;
    }
    if (!line) {
        fprintf(stderr, "agentbox %s: the server closed the connection\n", op);
        return NULL;
    }
    cJSON *r = cJSON_Parse(line);
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r, "ok");
    if (!cJSON_IsBool(ok)) {
        fprintf(stderr, "agentbox %s: not a protocol reply from the server\n", op);
        cJSON_Delete(r);
        return NULL;
    }
    if (cJSON_IsFalse(ok)) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
        const cJSON *cd = cJSON_GetObjectItemCaseSensitive(e, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
        static char codebuf[64];
        snprintf(codebuf, sizeof(codebuf), "%s", cJSON_IsString(cd) ? cd->valuestring : "?");
        if (code)
            *code = codebuf;
        fprintf(stderr, "agentbox %s: %s: %s\n", op, codebuf,
                cJSON_IsString(msg) ? msg->valuestring : "");
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

static void print_json(const cJSON *j)
{
    cleanup_free char *text = json_print_pretty(j);
    if (text)
        printf("%s\n", text);
}

static int result_exit_code(const cJSON *result)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(result, "status");
    return task_status_exit_code(cJSON_IsString(st) ? st->valuestring : NULL);
}

static int do_wait(struct conn *c, size_t *consumed, const char *id, double timeout, const char *op)
{
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "wait");
    cJSON_AddStringToObject(req, "id", id);
    if (timeout >= 0)
        cJSON_AddNumberToObject(req, "timeout_s", timeout);
    if (send_request(c, req, op) < 0)
        return EXIT_USAGE;
    const char *code = NULL;
    cleanup_json cJSON *r = read_reply(c, consumed, op, &code);
    if (!r)
        return code && strcmp(code, "timeout") == 0 ? EXIT_WAIT_TIMEOUT : EXIT_USAGE;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(r, "result");
    print_json(res);
    return result_exit_code(res);
}

/* A relative workspace.from_dir names a directory below the client's working directory; the
 * server has its own, so the path is made absolute here, before it leaves. */
static int absolute_from_dir(cJSON *task, const char *op)
{
    cJSON *ws = cJSON_GetObjectItemCaseSensitive(task, "workspace");
    cJSON *fd = cJSON_GetObjectItemCaseSensitive(ws, "from_dir");
    if (!cJSON_IsString(fd) || fd->valuestring[0] == '/' || fd->valuestring[0] == '\0')
        return 0;
    char cwd[PATH_MAX], abs[PATH_MAX * 2];
    if (!getcwd(cwd, sizeof(cwd))) {
        fprintf(stderr, "agentbox %s: the working directory: %s\n", op, strerror(errno));
        return -1;
    }
    snprintf(abs, sizeof(abs), "%s/%s", strcmp(cwd, "/") ? cwd : "", fd->valuestring);
    char real[PATH_MAX];
    const char *path = realpath(abs, real) ? real : abs; /* missing: the server says so */
    cJSON *n = cJSON_CreateString(path);
    if (!n || !cJSON_ReplaceItemInObjectCaseSensitive(ws, "from_dir", n)) {
        cJSON_Delete(n);
        fprintf(stderr, "agentbox %s: out of memory\n", op);
        return -1;
    }
    return 0;
}

static cJSON *build_task(const char *prompt, const char *task_file, const char *id,
                         const char *model, const char *timeout, const char *op)
{
    cJSON *task = NULL;
    if (task_file) {
        cleanup_free char *text = NULL;
        if (read_input(task_file, CLIENT_TASK_FILE_MAX_BYTES, &text, NULL) < 0) {
            fprintf(stderr, "agentbox %s: --task-file %s: %s\n", op, task_file, strerror(errno));
            return NULL;
        }
        char perr[ERR_MSG_MAX];
        task = json_parse_located(text, strcmp(task_file, "-") ? task_file : "stdin", perr,
                                  sizeof(perr));
        if (!task) {
            fprintf(stderr, "agentbox %s: --task-file %s\n", op, perr);
            return NULL;
        }
        if (!cJSON_IsObject(task)) {
            fprintf(stderr, "agentbox %s: --task-file %s: not a JSON object\n", op, task_file);
            cJSON_Delete(task);
            return NULL;
        }
    } else {
        task = cJSON_CreateObject();
    }
    struct {
        const char *name, *val;
    } set[] = {{"prompt", prompt}, {"id", id}, {"model", model}};
    for (size_t i = 0; i < ARRAY_SIZE(set); i++)
        if (set[i].val) {
            cJSON_DeleteItemFromObjectCaseSensitive(task, set[i].name);
            cJSON_AddStringToObject(task, set[i].name, set[i].val);
        }
    if (timeout) {
        double d;
        char terr[ERR_MSG_MAX];
        if (opt_seconds("--timeout", timeout, 0, &d, terr, sizeof(terr)) < 0) {
            fprintf(stderr, "agentbox %s: %s\n", op, terr);
            cJSON_Delete(task);
            return NULL;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(task, "timeout_s");
        cJSON_AddNumberToObject(task, "timeout_s", d);
    }
    if (absolute_from_dir(task, op) < 0) {
        cJSON_Delete(task);
        return NULL;
    }
    return task;
}

struct client_args {
    const char *op, *sock, *task_file, *id, *model, *timeout, *wait_timeout, *arg;
    bool wait, follow;
    bool is_submit, needs_id, no_arg;
    double wt; /* how long to wait: submit --wait-timeout, wait --timeout; -1: no limit */
};

enum { O_SOCKET = 256, O_TASK, O_ID, O_MODEL, O_TIMEOUT, O_WAIT, O_WAIT_TIMEOUT, O_FOLLOW, O_HELP };

/* Every option but --help: where its value (or true) goes in struct client_args. */
static const struct client_opt {
    struct option opt;
    size_t text; /* offset of the const char * its argument goes to; 0: a flag */
    size_t flag; /* offset of the bool it sets */
} client_opts[] = {
    {{"socket", required_argument, 0, O_SOCKET}, offsetof(struct client_args, sock), 0},
    {{"task-file", required_argument, 0, O_TASK}, offsetof(struct client_args, task_file), 0},
    {{"id", required_argument, 0, O_ID}, offsetof(struct client_args, id), 0},
    {{"model", required_argument, 0, O_MODEL}, offsetof(struct client_args, model), 0},
    {{"timeout", required_argument, 0, O_TIMEOUT}, offsetof(struct client_args, timeout), 0},
    {{"wait", no_argument, 0, O_WAIT}, 0, offsetof(struct client_args, wait)},
    {{"wait-timeout", required_argument, 0, O_WAIT_TIMEOUT},
     offsetof(struct client_args, wait_timeout),
     0},
    {{"follow", no_argument, 0, O_FOLLOW}, 0, offsetof(struct client_args, follow)},
};

/* The options and the one argument: 0, 1 after --help, -1 on a usage error (said). */
static int parse_client_options(int argc, char **argv, struct client_args *a)
{
    struct option opts[ARRAY_SIZE(client_opts) + 2] = {{0}};
    for (size_t i = 0; i < ARRAY_SIZE(client_opts); i++)
        opts[i] = client_opts[i].opt;
    opts[ARRAY_SIZE(client_opts)] = (struct option){"help", no_argument, 0, O_HELP};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == O_HELP) {
            usage(stdout, a->op);
            return 1;
        }
        const struct client_opt *o = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(client_opts) && !o; i++)
            if (client_opts[i].opt.val == c)
                o = &client_opts[i];
        if (!o) {
            fprintf(stderr, "agentbox %s: unknown or incomplete option '%s' (see --help)\n", a->op,
                    argv[optind - 1]);
            return -1;
        }
        if (o->text)
            *(const char **)(void *)((char *)a + o->text) = optarg;
        else
            *(bool *)(void *)((char *)a + o->flag) = true;
    }
    a->arg = optind < argc ? argv[optind++] : NULL;
    if (optind < argc) {
        fprintf(stderr, "agentbox %s: unexpected argument '%s'\n", a->op, argv[optind]);
        return -1;
    }
    return 0;
}

/* What the command needs (an ID, a prompt, nothing) and how long it waits; -1 when refused. */
static int check_client_args(struct client_args *a)
{
    const char *op = a->op;
    if (!a->sock || !*a->sock)
        a->sock = AGENTBOX_DEFAULT_SOCKET;
    a->is_submit = strcmp(op, "submit") == 0;
    a->needs_id = !strcmp(op, "wait") || !strcmp(op, "status") || !strcmp(op, "cancel") ||
                  !strcmp(op, "events");
    a->no_arg = !strcmp(op, "list") || !strcmp(op, "health") || !strcmp(op, "metrics");
    if (!a->is_submit && !a->needs_id && !a->no_arg) {
        fprintf(stderr, "agentbox: unknown client command '%s'\n", op);
        return -1;
    }
    if ((a->needs_id && !a->arg) || (a->no_arg && a->arg) ||
        (a->is_submit && !a->arg && !a->task_file)) {
        fprintf(stderr, "agentbox %s: %s (see --help)\n", op,
                a->needs_id    ? "give a task ID"
                : a->is_submit ? "give a PROMPT or --task-file FILE"
                               : "takes no argument");
        return -1;
    }
    a->wt = -1;
    /* submit's --timeout is the task's own; wait's is how long to wait */
    const char *wt_text = a->is_submit ? a->wait_timeout : !strcmp(op, "wait") ? a->timeout : NULL;
    if (wt_text) {
        char terr[ERR_MSG_MAX];
        if (opt_seconds(a->is_submit ? "--wait-timeout" : "--timeout", wt_text, 1, &a->wt, terr,
                        sizeof(terr)) < 0) {
            fprintf(stderr, "agentbox %s: %s\n", op, terr);
            return -1;
        }
    }
    return 0;
}

/* The request to send; NULL for wait (do_wait builds its own) and on an error (said, with
 * *failed set). */
static cJSON *build_request(const struct client_args *a, bool *failed)
{
    *failed = false;
    if (!strcmp(a->op, "wait"))
        return NULL;
    cJSON *req = cJSON_CreateObject();
    if (!req) {
        fprintf(stderr, "agentbox %s: out of memory\n", a->op);
        *failed = true;
        return NULL;
    }
    if (a->is_submit) {
        cJSON *task = build_task(a->arg, a->task_file, a->id, a->model, a->timeout, a->op);
        if (!task) {
            cJSON_Delete(req);
            *failed = true;
            return NULL;
        }
        cJSON_AddStringToObject(req, "op", "submit");
        cJSON_AddItemToObject(req, "task", task);
        return req;
    }
    cJSON_AddStringToObject(req, "op", a->op);
    if (a->arg)
        cJSON_AddStringToObject(req, "id", a->arg);
    if (!strcmp(a->op, "events"))
        cJSON_AddBoolToObject(req, "follow", a->follow);
    return req;
}

/* events: the event lines pass through as the server sent them, until {"ok":true,"end":true} */
static int relay_events(struct conn *cn, size_t *consumed)
{
    char *line;
    while ((line = conn_line(cn, consumed)) != NULL) {
        cleanup_json cJSON *ev = cJSON_Parse(line);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "end")))
            return 0;
        printf("%s\n", line);
        fflush(stdout);
    }
    if (cn->too_long)
        fprintf(stderr, "agentbox events: a line from the server is longer than %u bytes\n",
                CLIENT_REPLY_MAX_BYTES);
    else
        fprintf(stderr, "agentbox events: the server closed the stream before its end\n");
    return EXIT_TASK_FAILED;
}

/* The server's reply to a request other than wait, printed; the exit code. */
static int answer(const struct client_args *a, struct conn *cn, size_t *consumed, cJSON *r)
{
    if (a->is_submit) {
        const cJSON *rid = cJSON_GetObjectItemCaseSensitive(r, "id");
        char idbuf[TASK_ID_MAX + 1];
        snprintf(idbuf, sizeof(idbuf), "%s", cJSON_IsString(rid) ? rid->valuestring : "");
        cJSON_Delete(r);
        if (!a->wait) {
            printf("%s\n", idbuf);
            return 0;
        }
        fprintf(stderr, "agentbox submit: %s\n", idbuf);
        return do_wait(cn, consumed, idbuf, a->wt, a->op);
    }
    if (!strcmp(a->op, "metrics")) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(r, "text");
        fputs(cJSON_IsString(text) ? text->valuestring : "", stdout);
        cJSON_Delete(r);
        return 0;
    }
    if (!strcmp(a->op, "events")) {
        cJSON_Delete(r);
        return relay_events(cn, consumed);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(r, "ok");
    print_json(r);
    cJSON_Delete(r);
    return 0;
}

int cmd_client(int argc, char **argv)
{
    struct client_args a = {.op = argv[0], .sock = getenv("AGENTBOX_SOCKET")};
    int prc = parse_client_options(argc, argv, &a);
    if (prc != 0)
        return prc > 0 ? 0 : EXIT_USAGE;
    if (check_client_args(&a) < 0)
        return EXIT_USAGE;
    bool failed;
    cJSON *req = build_request(&a, &failed);
    if (failed)
        return EXIT_USAGE;
    struct conn cn = {.fd = -1};
    if (conn_open(&cn, a.sock, a.op) < 0) {
        cJSON_Delete(req);
        conn_close(&cn);
        return EXIT_USAGE;
    }
    size_t consumed = 0;
    int rc = EXIT_USAGE;
    if (!req) /* wait */
        rc = do_wait(&cn, &consumed, a.arg, a.wt, a.op);
    else if (send_request(&cn, req, a.op) == 0) {
        cJSON *r = read_reply(&cn, &consumed, a.op, NULL);
        if (r)
            rc = answer(&a, &cn, &consumed, r);
    }
    conn_close(&cn);
    return rc;
}
