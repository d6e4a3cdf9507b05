/* runner_post: see runner_post.h. The patch is hostile input like everything from the cell:
 * bounded, written with O_EXCL|O_NOFOLLOW, and applied only inside the verify cell. */
#include "runner_post.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "git_patch.h"
#include "log.h"
#include "utf8.h"
#include "util.h"

int post_prepare(struct runner_post *p, const struct task *t, struct event_log *ev, char *err,
                 size_t errsz)
{
    memset(p, 0, sizeof(*p));
    p->vjob.done_fd = -1;
    p->task = t;
    if (!t->git)
        return 0;
    uid_t uid = t->requester_set ? t->requester_uid : getuid();
    gid_t gid = t->requester_set ? t->requester_gid : getgid();
    bool drop = uid != geteuid() || gid != getegid();
    if (drop && geteuid() != 0)
        return errf(err, errsz,
                    "task.workspace.git: the repository must be read as uid %u, and this "
                    "supervisor (not root) cannot become it",
                    (unsigned)uid);
    p->git = calloc(1, sizeof(*p->git)); /* 8 KiB of paths: only for tasks with a git workspace */
    if (!p->git)
        return errf(err, errsz, "out of memory");
    if (git_ws_prepare(t->git, "task.workspace.git", drop, uid, gid, p->git, err, errsz) < 0) {
        free(p->git);
        p->git = NULL;
        return -1;
    }
    if (ev)
        post_announce(p, ev);
    return 0;
}

/* Whether the task has its clone (made, not yet removed). */
static bool git_on(const struct runner_post *p)
{
    return p->git && p->git->top[0];
}

const char *post_git_tree(const struct runner_post *p)
{
    return git_on(p) ? p->git->tree : NULL;
}

void post_announce(const struct runner_post *p, struct event_log *ev)
{
    if (!git_on(p))
        return;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "commit", p->git->commit);
    cJSON_AddNumberToObject(f, "prepare_s", round(p->git->prepare_s * 1000) / 1000);
    events_emit(ev, "workspace_ready", f);
}

const char *post_seed(const struct runner_post *p)
{
    return git_on(p) ? p->git->tree : p->task->workspace_from;
}

void post_task_fields(const struct runner_post *p, cJSON *cell_task)
{
    if (!git_on(p))
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(cell_task, "seeded");
    cJSON_AddBoolToObject(cell_task, "seeded", true);
    cJSON_AddStringToObject(cell_task, "git_commit", p->git->commit);
}

void post_on_patch(struct runner_post *p, const struct channel_msg *m)
{
    if (p->patch || !git_on(p) || m->payload_len > GIT_PATCH_MAX_BYTES)
        return; /* one patch, only for a git workspace, bounded */
    p->patch = malloc(m->payload_len + 1);
    if (!p->patch)
        return;
    memcpy(p->patch, m->payload ? m->payload : "", m->payload_len);
    p->patch[m->payload_len] = '\0';
    p->patch_len = strnlen(p->patch, m->payload_len); /* a NUL ends it: git's text never has one */
    p->patch_truncated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m->header, "truncated"));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(m->header, "error");
    if (cJSON_IsString(e))
        snprintf(p->patch_error, sizeof(p->patch_error), "%s", e->valuestring);
}

static void emit_finished(struct runner_post *p, struct event_log *ev)
{
    cJSON *f = cJSON_CreateObject();
    const char *keys[] = {"status", "exit_code", "wall_s"};
    for (size_t i = 0; i < 3; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->verify_json, keys[i]);
        if (v)
            cJSON_AddItemToObject(f, keys[i], cJSON_Duplicate(v, 1));
    }
    events_emit(ev, "verify_finished", f);
}

/* On a spawner thread: only p->vc (read), p->vmade, p->vrc and p->verr. */
static void verify_job_run(struct spawn_job *j)
{
    struct runner_post *p = (struct runner_post *)((char *)j - offsetof(struct runner_post, vjob));
    p->vrc = verify_start(&p->vc, &p->vmade, p->verr, sizeof(p->verr));
}

bool post_start_verify(struct runner_post *p, bool finished, const struct policy *pol,
                       const struct sock_fprog *seccomp, const struct policy_limits *lim,
                       const char *state_dir, struct event_log *ev)
{
    const struct verify_spec *vs = p->task->verify;
    if (!vs || !git_on(p))
        return false;
    if (!finished) {
        p->verify_json = verify_result_unrun("skipped", "the agent did not finish");
        return false;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "command", vs->command);
    events_emit(ev, "verify_started", f);
    char err[ERR_MSG_MAX];
    const char *why = p->patch_truncated  ? "the agent's patch passed the size limit"
                      : p->patch_error[0] ? p->patch_error
                      : !p->patch         ? "the agent sent no patch"
                                          : NULL;
    p->vc = (struct verify_cell){.spec = vs,
                                 .policy = pol,
                                 .seccomp = seccomp,
                                 .limits = *lim,
                                 .seed = p->git->tree,
                                 .commit = p->git->commit,
                                 .patch = p->patch ? p->patch : "",
                                 .tmp_dir = state_dir};
    /* the cell (and its copy of the clone) is made off the loop */
    if (!why && (spawner_job_init(&p->vjob, verify_job_run, err, sizeof(err)) < 0 ||
                 spawner_submit(&p->vjob, err, sizeof(err)) < 0)) {
        spawner_job_close(&p->vjob);
        why = err;
    }
    if (why) {
        p->verify_json = verify_result_unrun("error", why);
        emit_finished(p, ev);
        return false;
    }
    p->vspawning = true;
    p->next_look = monotonic_s() + 0.25;
    return true;
}

bool post_verifying(const struct runner_post *p)
{
    return (p->vspawning || p->verify) && !p->verify_json;
}

int post_poll_fd(const struct runner_post *p)
{
    if (p->vspawning)
        return p->vjob.done_fd;
    return post_verifying(p) ? verify_pidfd(p->verify) : -1;
}

double post_wakeup(const struct runner_post *p)
{
    if (!post_verifying(p))
        return 0;
    if (p->vspawning)
        return p->next_look;
    /* a loop that registered its fds before the verify cell existed still looks in; the
     * time stays put until it is handled, or a loop waiting for it would never get there */
    double dl = verify_deadline(p->verify);
    return p->next_look < dl ? p->next_look : dl;
}

/* The verify cell's job is done: the cell is the loop's now (or the reason it is not). */
static bool take_verify_cell(struct runner_post *p, struct event_log *ev)
{
    if (!spawner_job_done(&p->vjob))
        return false;
    /* the eventfd stays open until post_free: a caller's epoll may still hold it, and a new
     * fd with its number (the verify cell's pidfd) must not be mistaken for it */
    p->vspawning = false;
    if (p->vrc < 0) {
        p->verify_json = verify_result_unrun("error", p->verr);
        emit_finished(p, ev);
        return true;
    }
    p->verify = p->vmade;
    p->vmade = NULL;
    if (p->vkill)
        verify_kill(p->verify);
    return true;
}

bool post_step(struct runner_post *p, struct event_log *ev)
{
    if (p->vspawning && !take_verify_cell(p, ev)) {
        p->next_look = monotonic_s() + 0.25;
        return false;
    }
    if (!post_verifying(p))
        return true;
    p->next_look = monotonic_s() + 0.25;
    if (!verify_poll(p->verify))
        return false;
    p->verify_json = verify_result_json(p->verify);
    if (!p->verify_json)
        p->verify_json = verify_result_unrun("error", "out of memory");
    emit_finished(p, ev);
    return true;
}

void post_kill(struct runner_post *p)
{
    if (p->vspawning)
        p->vkill = true; /* killed once it exists (take_verify_cell) */
    else if (post_verifying(p))
        verify_kill(p->verify);
}

void post_decide(const struct runner_post *p, const char **status, const char **terminal,
                 cJSON **error)
{
    if (!p->task->verify || strcmp(*status, "succeeded") != 0)
        return;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(p->verify_json, "status");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(p->verify_json, "exit_code");
    if (cJSON_IsString(st) && strcmp(st->valuestring, "passed") == 0)
        return;
    char msg[200];
    if (cJSON_IsNumber(code))
        snprintf(msg, sizeof(msg), "the verify command exited %d (%s)", code->valueint,
                 cJSON_IsString(st) ? st->valuestring : "failed");
    else
        snprintf(msg, sizeof(msg), "the verify step did not pass (%s)",
                 cJSON_IsString(st) ? st->valuestring : "error");
    *status = "failed";
    *terminal = "task_failed";
    cJSON_Delete(*error);
    *error = broker_error_object("VALIDATION_ERROR", msg, NULL);
    cJSON_AddStringToObject(*error, "reason", "verify_failed");
}

static void write_patch_file(const struct runner_post *p, int state_dfd)
{
    cleanup_fd int fd =
        openat(state_dfd, "patch.diff", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, p->patch ? p->patch : "", p->patch_len) < 0)
        log_warn("task %s: cannot write patch.diff: %s", p->task->id, strerror(errno));
}

/* The clone and its record go (removed as the requester). */
static void drop_clone(struct runner_post *p)
{
    if (p->git)
        git_ws_cleanup(p->git);
    free(p->git);
    p->git = NULL;
}

void post_result(struct runner_post *p, cJSON *res, int state_dfd)
{
    if (git_on(p)) {
        cleanup_free char *text = utf8_sanitize(p->patch ? p->patch : "", p->patch_len, NULL);
        cJSON_AddStringToObject(res, "patch", text ? text : "");
        if (p->patch_truncated)
            cJSON_AddBoolToObject(res, "patch_truncated", true);
        cJSON *g = git_ws_spec_json(p->task->git);
        cJSON_AddStringToObject(g, "commit", p->git->commit);
        cJSON_AddItemToObject(res, "workspace_git", g);
        write_patch_file(p, state_dfd);
    }
    if (p->task->verify)
        cJSON_AddItemToObject(res, "verify",
                              p->verify_json ? cJSON_Duplicate(p->verify_json, 1)
                                             : verify_result_unrun("skipped", NULL));
    /* the clone served both cells: it goes now, not when the runner is freed */
    drop_clone(p);
}

void post_free(struct runner_post *p)
{
    if (p->vspawning) { /* its job may still be making the cell */
        spawner_job_wait(&p->vjob);
        p->vspawning = false;
        verify_free(p->vmade); /* kills and reaps it */
        p->vmade = NULL;
    }
    spawner_job_close(&p->vjob);
    verify_free(p->verify);
    p->verify = NULL;
    cJSON_Delete(p->verify_json);
    p->verify_json = NULL;
    free(p->patch);
    p->patch = NULL;
    drop_clone(p);
}
