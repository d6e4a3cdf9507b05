/* serve_artifact: files over the socket, for an orchestrator that shares no file system with
 * the supervisor: a workspace uploaded with `submit` as a base64 tar archive (extracted into
 * STATE/.uploads/ID, which seeds the task and is removed when it ends), and the `artifact` op
 * that hands out a finished task's result, events, patch and output files in bounded base64
 * chunks. Reads below STATE/ID only, never through a link; writes only below
 * STATE/.uploads/ID. */
#ifndef AGENTBOX_SERVE_ARTIFACT_H
#define AGENTBOX_SERVE_ARTIFACT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "protocol.h"
#include "task.h"

#define SERVE_UPLOAD_MAX_BYTES 3000000u    /* decoded archive: its base64 fits one request line */
#define SERVE_UPLOAD_MAX_FILES (64u << 20) /* bytes of files once extracted */
#define SERVE_ARTIFACT_CHUNK   (1u << 20)  /* bytes per artifact reply (before base64) */
#define SERVE_UPLOAD_FD_MAX    (64u << 20) /* an archive passed as a descriptor */

struct server;
struct client;

/* submit: when the request has "workspace_tar" (base64), or "workspace_tar_fd": true and the
 * client passed a descriptor of a regular file (or memfd) holding the archive with SCM_RIGHTS
 * (*passed_fd, consumed: closed and set to -1), extracts it and points the task (tk and the
 * journal's copy json) at it. Returns 0 (nothing to do, or done), -1 with err. */
int serve_upload(struct server *s, const cJSON *request, int *passed_fd, struct task *tk,
                 cJSON *json, char *err, size_t errsz);
void serve_upload_remove(const struct server *s, const char *id);
void serve_op_artifact(struct client *c, const struct request *req);

#endif
