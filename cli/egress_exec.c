/* egress_exec: --allow-host/--resolve and the effective egress rules of a cell (see
 * egress_exec.h). */
#include "egress_exec.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

int egress_exec_option(struct exec_options *o, const char *name, const char *v, char *err,
                       size_t errsz)
{
    char why[ERR_MSG_MAX];
    if (strcmp(name, "--allow-host") == 0) {
        struct egress_rule r;
        if (egress_rule_parse(v, &r, why, sizeof(why)) < 0)
            return errf(err, errsz, "--allow-host: %s", why);
        if (o->nallow >= ARRAY_SIZE(o->allow))
            return errf(err, errsz, "--allow-host: at most %zu", ARRAY_SIZE(o->allow));
        o->allow[o->nallow++] = v;
        return 0;
    }
    struct egress_pin p;
    if (egress_pin_parse(v, &p, why, sizeof(why)) < 0)
        return errf(err, errsz, "--resolve: %s", why);
    if (o->nresolve >= ARRAY_SIZE(o->resolve))
        return errf(err, errsz, "--resolve: at most %zu", ARRAY_SIZE(o->resolve));
    o->resolve[o->nresolve++] = v;
    return 0;
}

int egress_exec_start(const struct egress_rules *r, struct cell *c, struct egress **out, char *err,
                      size_t errsz)
{
    int fd = cell_take_proxy_fd(c);
    char why[ERR_MSG_MAX] = "no proxy socket";
    if (fd >= 0 && egress_start(r, fd, out, why, sizeof(why)) == 0)
        return 0;
    (void)cell_kill(c);
    struct cell_record rec;
    (void)cell_reap(c, &rec);
    cell_free(c);
    return errf(err, errsz, "set-up failed at %s", why);
}

void egress_exec_print(void *opaque, const char *type, cJSON *fields)
{
    (void)opaque;
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(fields, "host");
    const cJSON *port = cJSON_GetObjectItemCaseSensitive(fields, "port");
    const cJSON *why = cJSON_GetObjectItemCaseSensitive(fields, "why");
    if (strcmp(type, "net_denied") == 0 && cJSON_IsString(host) && cJSON_IsNumber(port) &&
        cJSON_IsString(why)) {
        if (host->valuestring[0])
            fprintf(stderr, "agentbox: egress denied: %s port %d: %s\n", host->valuestring,
                    port->valueint, why->valuestring);
        else
            fprintf(stderr, "agentbox: egress denied: %s\n", why->valuestring);
    }
    cJSON_Delete(fields);
}

int egress_task_override(cJSON *task, const char *const *allow, size_t nallow,
                         const char *const *resolve, size_t nresolve, char *err, size_t errsz)
{
    cJSON *net = cJSON_GetObjectItemCaseSensitive(task, "network");
    if (net && !cJSON_IsObject(net))
        return errf(err, errsz, "--allow-host/--resolve: the task's network is \"%s\"",
                    cJSON_IsString(net) ? net->valuestring : "?");
    if (!net && !(net = cJSON_AddObjectToObject(task, "network")))
        return errf(err, errsz, "out of memory");
    cJSON *al = cJSON_GetObjectItemCaseSensitive(net, "allow");
    if (!al)
        al = cJSON_AddArrayToObject(net, "allow");
    cJSON *res = cJSON_GetObjectItemCaseSensitive(net, "resolve");
    if (!res)
        res = cJSON_AddObjectToObject(net, "resolve");
    if (!cJSON_IsArray(al) || !cJSON_IsObject(res))
        return errf(err, errsz, "task.network: allow must be a list, resolve an object");
    for (size_t i = 0; i < nallow; i++)
        cJSON_AddItemToArray(al, cJSON_CreateString(allow[i]));
    char why[ERR_MSG_MAX];
    for (size_t i = 0; i < nresolve; i++) {
        struct egress_pin p;
        char addr[64];
        if (egress_pin_parse(resolve[i], &p, why, sizeof(why)) < 0)
            return errf(err, errsz, "--resolve: %s", why);
        cJSON_DeleteItemFromObjectCaseSensitive(res, p.host);
        cJSON_AddStringToObject(
            res, p.host, egress_addr_str((const struct sockaddr *)&p.addr, addr, sizeof(addr)));
    }
    return 0;
}
