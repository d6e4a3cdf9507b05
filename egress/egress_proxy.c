/* egress_proxy: `agentbox __egress`, the proxy helper of one cell (see egress_proxy.h):
 * reads its rules, accepts connections from the cell under the connection caps, one thread
 * per connection, counts and reports, and ends with a summary when the supervisor says so.
 * Never holds the API key (exec'd with an empty environment), never dumpable. */
#include "egress_proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "commands.h"
#include "util.h"

#define CONFIG_MAX   (256 * 1024)
#define THREAD_STACK (256 * 1024)

void egress_emit(struct egress_proxy *p, const char *type, cJSON *fields)
{
    if (!fields)
        return;
    cJSON_AddStringToObject(fields, "type", type);
    char *text = cJSON_PrintUnformatted(fields);
    cJSON_Delete(fields);
    if (!text)
        return;
    pthread_mutex_lock(&p->mu);
    if (p->events_sent < EGRESS_EVENTS_MAX &&
        send(p->report_fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
        p->events_sent++;
    pthread_mutex_unlock(&p->mu);
    free(text);
}

void egress_denied(struct egress_proxy *p, const char *host, unsigned port, const char *why)
{
    pthread_mutex_lock(&p->mu);
    p->ndenied++;
    if (cJSON_GetArraySize(p->denied) < EGRESS_DENIED_MAX) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "host", host);
        cJSON_AddNumberToObject(d, "port", port);
        cJSON_AddStringToObject(d, "why", why);
        cJSON_AddItemToArray(p->denied, d);
    }
    pthread_mutex_unlock(&p->mu);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "host", host);
    cJSON_AddNumberToObject(f, "port", port);
    cJSON_AddStringToObject(f, "why", why);
    egress_emit(p, "net_denied", f);
}

bool egress_count_bytes(struct egress_proxy *p, uint64_t in, uint64_t out)
{
    pthread_mutex_lock(&p->mu);
    p->bytes_in += in;
    p->bytes_out += out;
    bool ok = p->bytes_in + p->bytes_out <= p->rules.max_bytes;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

struct conn_arg {
    struct egress_proxy *p;
    int fd;
};

static void *conn_thread(void *arg)
{
    struct conn_arg a = *(struct conn_arg *)arg;
    free(arg);
    egress_conn_serve(a.p, a.fd);
    pthread_mutex_lock(&a.p->mu);
    a.p->open--;
    pthread_mutex_unlock(&a.p->mu);
    return NULL;
}

/* One accepted connection: refused at once over a cap, else handed to its own thread. */
static void accept_one(struct egress_proxy *p, pthread_attr_t *attr)
{
    int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    char why[160] = "";
    pthread_mutex_lock(&p->mu);
    if (p->accepted >= p->rules.max_connections)
        snprintf(why, sizeof(why), "connection limit reached (%llu per task)",
                 (unsigned long long)p->rules.max_connections);
    else if (p->open >= p->rules.max_concurrent)
        snprintf(why, sizeof(why), "too many open connections (%llu at a time)",
                 (unsigned long long)p->rules.max_concurrent);
    else if (p->bytes_in + p->bytes_out > p->rules.max_bytes)
        snprintf(why, sizeof(why), "byte limit reached (%llu per task)",
                 (unsigned long long)p->rules.max_bytes);
    else {
        p->accepted++;
        p->open++;
    }
    pthread_mutex_unlock(&p->mu);
    struct conn_arg *a = why[0] ? NULL : malloc(sizeof(*a));
    pthread_t t;
    if (a) {
        a->p = p;
        a->fd = fd;
        if (pthread_create(&t, attr, conn_thread, a) == 0)
            return;
        free(a);
        snprintf(why, sizeof(why), "out of threads");
        pthread_mutex_lock(&p->mu);
        p->open--;
        pthread_mutex_unlock(&p->mu);
    } else if (!why[0]) {
        snprintf(why, sizeof(why), "out of memory");
    }
    egress_denied(p, "", 0, why);
    egress_respond(fd, 403, "Forbidden", why);
    (void)close(fd);
}

static void send_summary(struct egress_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "type", "summary");
    cJSON_AddNumberToObject(s, "connections", (double)p->connections);
    cJSON_AddNumberToObject(s, "bytes_in", (double)p->bytes_in);
    cJSON_AddNumberToObject(s, "bytes_out", (double)p->bytes_out);
    cJSON_AddNumberToObject(s, "denied_count", (double)p->ndenied);
    cJSON_AddItemToObject(s, "denied", cJSON_Duplicate(p->denied, true));
    pthread_mutex_unlock(&p->mu);
    char *text = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (text)
        (void)send(p->report_fd, text, strlen(text), MSG_NOSIGNAL);
    free(text);
}

static int read_config(struct egress_proxy *p)
{
    char *buf = malloc(CONFIG_MAX + 1);
    if (!buf)
        return -1;
    ssize_t n;
    do
        n = recv(p->report_fd, buf, CONFIG_MAX, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    char err[ERR_MSG_MAX];
    int r = egress_rules_from_json(j, &p->rules, err, sizeof(err));
    cJSON_Delete(j);
    if (r < 0) {
        fprintf(stderr, "agentbox __egress: rules: %s\n", err);
        return -1;
    }
    egress_rules_defaults(&p->rules);
    return 0;
}

int cmd_internal_egress(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    static struct egress_proxy p = {.listen_fd = EGRESS_LISTEN_FD, .report_fd = EGRESS_REPORT_FD};
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return EXIT_FAILURE;
    (void)signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in la;
    socklen_t ll = sizeof(la);
    if (getsockname(p.listen_fd, (struct sockaddr *)&la, &ll) < 0 || la.sin_family != AF_INET)
        return EXIT_FAILURE;
    p.listen_port = ntohs(la.sin_port);
    p.denied = cJSON_CreateArray();
    if (!p.denied || pthread_mutex_init(&p.mu, NULL) != 0 || read_config(&p) < 0)
        return EXIT_FAILURE;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0 || pthread_attr_setstacksize(&attr, THREAD_STACK) != 0 ||
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0)
        return EXIT_FAILURE;
    for (;;) {
        struct pollfd pf[2] = {{.fd = p.listen_fd, .events = POLLIN},
                               {.fd = p.report_fd, .events = POLLIN}};
        int r = poll(pf, 2, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (pf[1].revents) {
            char c;
            ssize_t n = recv(p.report_fd, &c, 1, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                break; /* the supervisor is done with this cell (or gone) */
        }
        if (pf[0].revents & POLLIN)
            accept_one(&p, &attr);
        else if (pf[0].revents)
            break;
    }
    (void)close(p.listen_fd);
    send_summary(&p);
    /* connection threads may still run: end the process without unwinding them */
    _exit(0);
}
