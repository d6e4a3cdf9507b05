/* serve_artifact: see serve_artifact.h. */
#include "serve_artifact.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "json.h"
#include "log.h"
#include "safedir.h"
#include "serve.h"
#include "statefile.h"
#include "tar_in.h"
#include "util.h"

#define UPLOADS ".uploads"

/* STATE/.uploads/ID removed by an fd walk below the state dir (never through a link). */
static void remove_upload(const struct server *s, const char *id)
{
    if (!task_id_is_valid(id))
        return;
    cleanup_fd int up =
        openat(s->state_dfd, UPLOADS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (up < 0)
        return;
    if (remove_tree_at(up, id) < 0 && errno != ENOENT)
        log_warn("cannot remove %s/" UPLOADS "/%s: %s", s->state_dir, id, strerror(errno));
}

/* STATE/.uploads/ID made by fd (.uploads 0711, ID 0755: the cell's slot uid reads the seed)
 * and opened; its path in dir. */
static int make_upload_dir(const struct server *s, const char *id, char *dir, size_t dirsz)
{
    if (statefile_upload_path(s->state_dir, id, dir, dirsz) < 0)
        return -1;
    if (mkdirat(s->state_dfd, UPLOADS, 0711) < 0 && errno != EEXIST)
        return -1;
    cleanup_fd int up =
        openat(s->state_dfd, UPLOADS, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (up < 0 || mkdirat(up, id, 0755) < 0)
        return -1;
    return openat(up, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static int set_from_dir(cJSON *json, const char *dir)
{
    cJSON *ws = cJSON_GetObjectItemCaseSensitive(json, "workspace");
    if (!ws)
        ws = cJSON_AddObjectToObject(json, "workspace");
    if (!ws)
        return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(ws, "from_dir");
    return cJSON_AddStringToObject(ws, "from_dir", dir) ? 0 : -1;
}

/* The archive behind a passed descriptor: a regular file (or memfd), at most the cap. */
static int read_passed(int fd, unsigned char **data, size_t *len, char *err, size_t errsz)
{
    struct stat st;
    if (fd < 0)
        return errf(err, errsz,
                    "request.workspace_tar_fd: no descriptor came with the request (send it "
                    "with SCM_RIGHTS in the same sendmsg as the request's first bytes)");
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return errf(err, errsz, "request.workspace_tar_fd: not a regular file or memfd");
    if ((uint64_t)st.st_size > SERVE_UPLOAD_FD_MAX)
        return errf(err, errsz, "request.workspace_tar_fd: an archive larger than %u bytes",
                    SERVE_UPLOAD_FD_MAX);
    *len = (size_t)st.st_size;
    *data = malloc(*len ? *len : 1);
    if (!*data)
        return errf(err, errsz, "out of memory");
    size_t got = 0;
    while (got < *len) {
        ssize_t n = pread(fd, *data + got, *len - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return errf(err, errsz, "request.workspace_tar_fd: %s",
                        n < 0 ? strerror(errno) : "shorter than its size");
        got += (size_t)n;
    }
    return 0;
}

int serve_upload(struct server *s, const cJSON *request, int *passed_fd, struct task *tk,
                 cJSON *json, char *err, size_t errsz)
{
    const cJSON *tar = cJSON_GetObjectItemCaseSensitive(request, "workspace_tar");
    const cJSON *by_fd = cJSON_GetObjectItemCaseSensitive(request, "workspace_tar_fd");
    cleanup_fd int fd = steal_fd(passed_fd); /* one descriptor per submit, used or not */
    bool inline_tar = tar && !cJSON_IsNull(tar);
    if (!inline_tar && !cJSON_IsTrue(by_fd))
        return 0;
    if (inline_tar && cJSON_IsTrue(by_fd))
        return errf(err, errsz, "request: workspace_tar and workspace_tar_fd exclude each other");
    if (inline_tar && !cJSON_IsString(tar))
        return errf(err, errsz, "request.workspace_tar: expected a base64 string");
    if (tk->workspace_from || tk->git)
        return errf(err, errsz,
                    "request.workspace_tar: the task already names a workspace (from_dir or git)");
    cleanup_free unsigned char *data = NULL;
    size_t len = 0;
    if (!inline_tar) {
        if (read_passed(fd, &data, &len, err, errsz) < 0)
            return -1;
    } else if (b64_decode(tar->valuestring, strlen(tar->valuestring), SERVE_UPLOAD_MAX_BYTES, &data,
                          &len) < 0) {
        return errf(err, errsz,
                    "request.workspace_tar: not base64, or an archive larger than %u bytes "
                    "(pass bigger archives as a descriptor: workspace_tar_fd)",
                    SERVE_UPLOAD_MAX_BYTES);
    }
    char dir[STATEFILE_PATH_MAX] = "";
    cleanup_fd int dfd = make_upload_dir(s, tk->id, dir, sizeof(dir));
    if (dfd < 0) {
        int e = errno;
        if (e != EEXIST)
            remove_upload(s, tk->id);
        return errf(err, errsz, "request.workspace_tar: cannot create %s: %s", dir, strerror(e));
    }
    char terr[ERR_MSG_MAX];
    if (tar_in_extract(data, len, dfd, SERVE_UPLOAD_MAX_FILES, terr, sizeof(terr)) < 0) {
        remove_upload(s, tk->id);
        return errf(err, errsz, "request.workspace_tar: %s", terr);
    }
    free(tk->workspace_from);
    if (tk->seed_fd > 2)
        (void)close(tk->seed_fd);
    /* the server's own extraction is the seed, opened here like any other (seed_fd) */
    tk->seed_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
    if (tk->seed_fd < 0 || !(tk->workspace_from = strdup(dir)) || set_from_dir(json, dir) < 0) {
        remove_upload(s, tk->id);
        return errf(err, errsz, "out of memory");
    }
    return 0;
}

void serve_upload_remove(const struct server *s, const char *id)
{
    remove_upload(s, id);
}

#define LIST_MAX_FILES 10000

/* The regular files below dir (an fd, never a link followed), as {"path", "size"}. */
static void list_dir(int dfd, const char *prefix, cJSON *arr, int depth)
{
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            (void)close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) && cJSON_GetArraySize(arr) < LIST_MAX_FILES && depth < 64) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        char rel[PATH_MAX];
        if (snprintf(rel, sizeof(rel), "%s%s", prefix, e->d_name) >= (int)sizeof(rel) - 1)
            continue;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISREG(st.st_mode)) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "path", rel);
            cJSON_AddNumberToObject(f, "size", (double)st.st_size);
            cJSON_AddItemToArray(arr, f);
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                strncat(rel, "/", sizeof(rel) - strlen(rel) - 1);
                list_dir(sub, rel, arr, depth + 1);
                (void)close(sub);
            }
        }
    }
    (void)closedir(d);
}

static void reply_outputs(struct client *c, const char *id)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(f, "files");
    cleanup_fd int fd = statefile_open(c->srv->state_dfd, id, "outputs", O_RDONLY | O_DIRECTORY, 0);
    if (fd >= 0)
        list_dir(fd, "outputs/", arr, 0);
    serve_reply_ok(c, f);
}

static bool name_ok(const char *name)
{
    if (strcmp(name, "result.json") == 0 || strcmp(name, "events.jsonl") == 0 ||
        strcmp(name, "patch.diff") == 0)
        return true;
    return strncmp(name, "outputs/", 8) == 0 && task_path_is_safe(name + 8);
}

/* Opens STATE/ID/NAME for reading, every component without following a link. */
static int open_artifact(const struct server *s, const char *id, const char *name)
{
    int fd = statefile_open(s->state_dfd, id, NULL, O_RDONLY | O_DIRECTORY, 0);
    cleanup_free char *rel = strdup(name);
    if (!rel) {
        if (fd >= 0)
            (void)close(fd);
        return -1;
    }
    char *p = rel;
    for (char *slash; fd >= 0 && (slash = strchr(p, '/')); p = slash + 1) {
        *slash = '\0';
        int next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        (void)close(fd);
        fd = next;
    }
    if (fd < 0)
        return -1;
    int f = openat(fd, p, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    (void)close(fd);
    return f;
}

static int get_u64(const cJSON *root, const char *name, uint64_t max, uint64_t *out, char *err,
                   size_t errsz)
{
    return json_get_uint(root, "request", name, max, out, err, errsz) < 0 ? -1 : 0;
}

void serve_op_artifact(struct client *c, const struct request *req)
{
    char err[ERR_MSG_MAX];
    const char *name = NULL;
    uint64_t offset = 0, length = SERVE_ARTIFACT_CHUNK;
    if (json_get_string(req->root, "request", "name", &name, err, sizeof(err)) != 0 || !name ||
        get_u64(req->root, "offset", UINT64_MAX >> 1, &offset, err, sizeof(err)) < 0 ||
        get_u64(req->root, "length", SERVE_ARTIFACT_CHUNK, &length, err, sizeof(err)) < 0) {
        serve_reply_error(c, PERR_BAD_REQUEST,
                          name ? err
                               : "request.name: required (result.json, events.jsonl, "
                                 "patch.diff or outputs/PATH)");
        return;
    }
    /* a task belongs to the uid that submitted it: to anyone else it does not exist */
    const struct stask *t = taskstore_find(&c->srv->store, req->id);
    if (!t || !serve_client_sees(c, t)) {
        serve_reply_error(c, PERR_NOT_FOUND, "no such task");
        return;
    }
    if (strcmp(name, "outputs/") == 0) {
        reply_outputs(c, req->id);
        return;
    }
    if (!name_ok(name)) {
        serve_reply_error(c, PERR_BAD_REQUEST,
                          "request.name: one of result.json, events.jsonl, patch.diff, "
                          "outputs/PATH (relative, no '..')");
        return;
    }
    cleanup_fd int fd = open_artifact(c->srv, req->id, name);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        serve_reply_error(c, PERR_NOT_FOUND, "no such artifact (yet) for this task");
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    size_t want = offset >= size ? 0 : (size_t)fmin((double)length, (double)(size - offset));
    cleanup_free unsigned char *buf = malloc(want ? want : 1);
    ssize_t n = buf && want ? pread(fd, buf, want, (off_t)offset) : 0;
    cleanup_free char *b64 = buf && n >= 0 ? b64_encode(buf, (size_t)n) : NULL;
    if (!b64) {
        serve_reply_error(c, PERR_INTERNAL, n < 0 ? strerror(errno) : "out of memory");
        return;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "name", name);
    cJSON_AddNumberToObject(f, "offset", (double)offset);
    cJSON_AddNumberToObject(f, "size", (double)size);
    cJSON_AddBoolToObject(f, "eof", offset + (uint64_t)n >= size);
    cJSON_AddStringToObject(f, "data", b64);
    serve_reply_ok(c, f);
}
