/* egress: starting, reading and stopping one cell's proxy helper (see egress.h). The helper
 * is exec'd right after fork with an empty environment, so it never has the API key. */
#include "egress.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "egress_proxy.h"
#include "util.h"

#define NOBODY         65534u
#define FINISH_WAIT_MS 3000
#define MSG_MAX        65536

struct egress {
    pid_t pid;
    int sock;
};

/* Between fork and exec: only async-signal-safe calls. */
static __attribute__((noreturn)) void helper_child(int listen_fd, int sock, pid_t parent)
{
    int l = fcntl(listen_fd, F_DUPFD, 10), s = fcntl(sock, F_DUPFD, 10);
    if (l < 0 || s < 0 || dup2(l, EGRESS_LISTEN_FD) < 0 || dup2(s, EGRESS_REPORT_FD) < 0)
        _exit(127);
    /* stdin and stdout are the caller's (a terminal, run's result JSON): not the helper's */
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0)
        _exit(127);
    if (syscall(SYS_close_range, EGRESS_REPORT_FD + 1, ~0u, 0) < 0)
        for (int fd = EGRESS_REPORT_FD + 1; fd < 1024; fd++)
            (void)close(fd);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        _exit(127);
    /* as root, the helper needs no privilege at all: it only accepts and connects */
    if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
                           setresuid(NOBODY, NOBODY, NOBODY) < 0))
        _exit(127);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
        _exit(127);
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    char *const argv[] = {"agentbox", "__egress", NULL};
    char *const envp[] = {"PATH=/usr/bin:/bin", "LANG=C", NULL};
    execve(self_exe_path(), argv, envp);
    _exit(127);
}

int egress_start(const struct egress_rules *rules, int listen_fd, struct egress **out, char *err,
                 size_t errsz)
{
    *out = NULL;
    cJSON *j = egress_rules_to_json(rules);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    struct egress *e = calloc(1, sizeof(*e));
    int sv[2] = {-1, -1};
    if (!text || !e || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        errf(err, errsz, "egress proxy: %s", text && e ? strerror(errno) : "out of memory");
        goto fail;
    }
    e->sock = sv[0];
    (void)self_exe_path();
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        helper_child(listen_fd, sv[1], parent);
    if (pid < 0) {
        errf(err, errsz, "egress proxy: fork: %s", strerror(errno));
        goto fail;
    }
    e->pid = pid;
    (void)close(sv[1]);
    sv[1] = -1;
    (void)close(listen_fd);
    listen_fd = -1;
    if (send(e->sock, text, strlen(text), MSG_NOSIGNAL) != (ssize_t)strlen(text)) {
        errf(err, errsz, "egress proxy: sending the rules: %s", strerror(errno));
        goto fail;
    }
    free(text);
    *out = e;
    return 0;
fail:
    free(text);
    if (sv[1] >= 0)
        (void)close(sv[1]);
    if (listen_fd >= 0)
        (void)close(listen_fd);
    if (e) {
        cJSON_Delete(egress_finish(e, NULL, NULL));
    }
    return -1;
}

int egress_fd(const struct egress *e)
{
    return e->sock;
}

/* One message from the helper: an event (relayed) or the summary (returned). */
static cJSON *handle_msg(const char *buf, ssize_t n, egress_event_fn fn, void *opaque)
{
    cJSON *j = cJSON_ParseWithLength(buf, (size_t)n);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (!cJSON_IsString(t)) {
        cJSON_Delete(j);
        return NULL;
    }
    if (strcmp(t->valuestring, "summary") == 0)
        return j;
    if (fn &&
        (strcmp(t->valuestring, "net_connect") == 0 || strcmp(t->valuestring, "net_denied") == 0)) {
        static const char *const keys[] = {"host", "port", "address", "allowed", "why"};
        cJSON *f = cJSON_CreateObject();
        for (size_t i = 0; f && i < ARRAY_SIZE(keys); i++) {
            cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(j, keys[i]);
            if (v)
                cJSON_AddItemToObject(f, keys[i], v);
        }
        fn(opaque, t->valuestring, f);
    }
    cJSON_Delete(j);
    return NULL;
}

void egress_read(struct egress *e, egress_event_fn fn, void *opaque)
{
    char *buf = malloc(MSG_MAX);
    if (!buf)
        return;
    for (int i = 0; i < 256; i++) {
        ssize_t n = recv(e->sock, buf, MSG_MAX, MSG_DONTWAIT);
        if (n <= 0)
            break;
        cJSON_Delete(handle_msg(buf, n, fn, opaque));
    }
    free(buf);
}

static cJSON *network_object(const cJSON *summary)
{
    cJSON *net = cJSON_CreateObject();
    static const char *const counts[] = {"connections", "bytes_in", "bytes_out"};
    for (size_t i = 0; net && i < ARRAY_SIZE(counts); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(summary, counts[i]);
        cJSON_AddNumberToObject(net, counts[i], cJSON_IsNumber(v) ? v->valuedouble : 0);
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(summary, "denied");
    cJSON_AddItemToObject(net, "denied",
                          cJSON_IsArray(d) ? cJSON_Duplicate(d, true) : cJSON_CreateArray());
    if (!summary)
        cJSON_AddStringToObject(net, "error", "the egress proxy ended without its summary");
    return net;
}

cJSON *egress_finish(struct egress *e, egress_event_fn fn, void *opaque)
{
    cJSON *summary = NULL;
    char *buf = malloc(MSG_MAX);
    if (e->sock >= 0 && buf && e->pid > 0) {
        (void)shutdown(e->sock, SHUT_WR);
        double deadline = monotonic_s() + FINISH_WAIT_MS / 1000.0;
        for (;;) {
            int ms = (int)((deadline - monotonic_s()) * 1000);
            struct pollfd pfd = {.fd = e->sock, .events = POLLIN};
            if (ms <= 0 || poll(&pfd, 1, ms) <= 0)
                break;
            ssize_t n = recv(e->sock, buf, MSG_MAX, MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n <= 0)
                break;
            cJSON *s = handle_msg(buf, n, fn, opaque);
            if (s) {
                cJSON_Delete(summary);
                summary = s;
            }
        }
    }
    free(buf);
    if (e->sock >= 0)
        (void)close(e->sock);
    if (e->pid > 0) {
        (void)kill(e->pid, SIGKILL);
        while (waitpid(e->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    free(e);
    cJSON *net = network_object(summary);
    cJSON_Delete(summary);
    return net;
}

char **egress_cell_env(char *const *base)
{
    static char *const proxy[] = {
        "HTTP_PROXY=" EGRESS_PROXY_URL,
        "HTTPS_PROXY=" EGRESS_PROXY_URL,
        "http_proxy=" EGRESS_PROXY_URL,
        "https_proxy=" EGRESS_PROXY_URL,
        "NO_PROXY=localhost,127.0.0.1,::1",
        "no_proxy=localhost,127.0.0.1,::1",
        "npm_config_proxy=" EGRESS_PROXY_URL,
        "npm_config_https_proxy=" EGRESS_PROXY_URL,
        "PIP_PROXY=" EGRESS_PROXY_URL,
        "CARGO_HTTP_PROXY=" EGRESS_PROXY_URL,
        "GIT_CONFIG_COUNT=1",
        "GIT_CONFIG_KEY_0=http.proxy",
        "GIT_CONFIG_VALUE_0=" EGRESS_PROXY_URL,
    };
    size_t n = 0;
    while (base && base[n])
        n++;
    char **env = calloc(n + ARRAY_SIZE(proxy) + 1, sizeof(*env));
    if (!env)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        bool skip = false; /* ours replace the base's */
        for (size_t k = 0; k < ARRAY_SIZE(proxy) && !skip; k++) {
            size_t klen = (size_t)(strchr(proxy[k], '=') - proxy[k]);
            skip = strncmp(base[i], proxy[k], klen + 1) == 0;
        }
        if (!skip)
            env[o++] = base[i];
    }
    for (size_t k = 0; k < ARRAY_SIZE(proxy); k++)
        env[o++] = proxy[k];
    return env;
}
