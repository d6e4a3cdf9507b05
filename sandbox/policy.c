/* policy: reads a policy file (docs/policy.md) into struct policy, resolving "extends", and
 * refuses anything it does not fully understand: every refusal names the file and the field
 * path, or the line and column of a JSON syntax error. Never compiles or installs filters
 * (seccomp.c does) and never trusts a file: sizes, counts and names are all bounded. The names
 * a file may use are policy_names.c's; printing a policy back is policy_json.c's. */
#include "policy.h"
#include "policy_names.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>

#include "egress_rules.h"
#include "json.h"
#include "safedir.h"
#include "util.h"

#define NAME_MAX_CHARS    64
#define RULES_MAX         256 /* rules in one file */
#define SYSCALLS_PER_RULE 512
#define ENTRIES_MAX       2048 /* per-syscall rules after expansion and merging */
#define BINDS_MAX         64
#define SECONDS_MAX       (366.0 * 86400)
#define PID_OR_FILE_MAX   (1ull << 22)       /* kernel pid_max limit; also a sane nofile ceiling */
#define ARG_EXACT_MAX     9007199254740992.0 /* 2^53: larger JSON numbers lose bits */

/* ---- the names a file may use: policy_names.c ---- */

/* ---- helpers that fail naming the field ---- */

/* cJSON keeps duplicate keys and returns the first: a second "landlock": false below a first
 * "landlock": true would be silently ignored, so duplicates are refused like unknown keys. */
static int check_keys(const cJSON *obj, const char *ctx, const char *const *allowed, char *err,
                      size_t errsz)
{
    if (json_check_keys(obj, ctx, allowed, err, errsz) < 0)
        return -1;
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0)
                return errf(err, errsz, "%s.%s: given twice", ctx, a->string);
    return 0;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_CHARS)
        return false;
    for (const char *c = s; *c; c++)
        if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_' || *c == '-'))
            return false;
    return true;
}

static int parse_errno(const cJSON *v, const char *ctx, int *out, char *err, size_t errsz)
{
    if (cJSON_IsString(v)) {
        for (size_t i = 0; i < POLICY_ERRNO_NAMES; i++)
            if (strcmp(policy_errno_names[i].name, v->valuestring) == 0) {
                *out = (int)policy_errno_names[i].value;
                return 0;
            }
        return errf(err, errsz, "%s: unknown errno name \"%s\" (use a number 1-4095)", ctx,
                    v->valuestring);
    }
    if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 4095 &&
        v->valuedouble == floor(v->valuedouble)) {
        *out = (int)v->valuedouble;
        return 0;
    }
    return errf(err, errsz, "%s: expected an errno name like \"EPERM\" or a number 1-4095", ctx);
}

/* One token of an arg value: a decimal or 0x number, or a constant name. */
static int parse_value_token(const char *tok, uint64_t *out)
{
    if (isdigit((unsigned char)tok[0])) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(tok, &end, 0);
        if (errno || *end || tok[0] == '-')
            return -1;
        *out = v;
        return 0;
    }
    for (size_t i = 0; i < POLICY_CONSTANT_NAMES; i++)
        if (strcmp(policy_constant_names[i].name, tok) == 0) {
            *out = policy_constant_names[i].value;
            return 0;
        }
    return -1;
}

/* A syscall argument: a JSON integer (exact up to 2^53; negative ones become the 64-bit two's
 * complement a syscall() caller passes), or a string "0x5412", "21522", "TIOCSTI" or
 * "CLONE_NEWNS|CLONE_NEWUSER" for values JSON numbers cannot hold exactly. */
static int parse_arg_value(const cJSON *v, const char *ctx, uint64_t *out, char *err, size_t errsz)
{
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!isfinite(d) || d != floor(d) || fabs(d) > ARG_EXACT_MAX)
            return errf(err, errsz,
                        "%s: expected a whole number within +-2^53 (write larger values as a "
                        "string like \"0xffffffff00005412\")",
                        ctx);
        *out = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
        return 0;
    }
    if (!cJSON_IsString(v) || strlen(v->valuestring) > 256)
        return errf(err, errsz, "%s: expected a number or a string like \"0x5412\"", ctx);
    char buf[257];
    snprintf(buf, sizeof(buf), "%s", v->valuestring);
    uint64_t acc = 0;
    char *save = NULL;
    int ntok = 0;
    for (char *tok = strtok_r(buf, "|", &save); tok; tok = strtok_r(NULL, "|", &save), ntok++) {
        uint64_t t;
        if (parse_value_token(tok, &t) < 0)
            return errf(err, errsz,
                        "%s: \"%s\" is neither a number nor a known constant (docs/policy.md "
                        "lists them)",
                        ctx, tok);
        acc |= t;
    }
    if (ntok == 0 || v->valuestring[strlen(v->valuestring) - 1] == '|' ||
        v->valuestring[0] == '|' || strstr(v->valuestring, "||"))
        return errf(err, errsz, "%s: empty value", ctx);
    *out = acc;
    return 0;
}

/* A size: a JSON integer or "512M"; zero refused where a limit must exist. */
static int get_size(const cJSON *obj, const char *ctx, const char *name, bool zero_ok,
                    uint64_t *out, char *err, size_t errsz)
{
    uint64_t v;
    int r = json_get_size(obj, ctx, name, &v, err, errsz);
    if (r != 0)
        return r;
    if (!zero_ok && v == 0)
        return errf(err, errsz, "%s.%s: must be more than 0", ctx, name);
    *out = v;
    return 0;
}

static int get_seconds(const cJSON *obj, const char *ctx, const char *name, bool zero_ok,
                       double *out, char *err, size_t errsz)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    double d = -1;
    if (cJSON_IsNumber(v))
        d = v->valuedouble;
    else if (!cJSON_IsString(v) || seconds_parse(v->valuestring, &d) < 0)
        d = -1;
    if (!isfinite(d) || d < 0 || d > SECONDS_MAX || (!zero_ok && d == 0))
        return errf(err, errsz, "%s.%s: expected seconds, %s to one year (a number, or \"5m\")",
                    ctx, name, zero_ok ? "0" : "more than 0");
    *out = d;
    return 0;
}

static int get_count(const cJSON *obj, const char *ctx, const char *name, uint64_t max,
                     bool zero_ok, uint64_t *out, char *err, size_t errsz)
{
    uint64_t v;
    int r = json_get_uint(obj, ctx, name, max, &v, err, errsz);
    if (r != 0)
        return r;
    if (!zero_ok && v == 0)
        return errf(err, errsz, "%s.%s: must be more than 0", ctx, name);
    *out = v;
    return 0;
}

/* ---- sections ---- */

static int parse_limits(const cJSON *o, struct policy_limits *l, char *err, size_t errsz)
{
    static const char *const keys[] = {"disk",  "inodes", "memory",    "pids", "nofile",
                                       "fsize", "cpu_s",  "timeout_s", NULL};
    const char *ctx = "limits";
    if (check_keys(o, ctx, keys, err, errsz) < 0 ||
        get_size(o, ctx, "disk", false, &l->disk_bytes, err, errsz) < 0 ||
        get_count(o, ctx, "inodes", UINT32_MAX, false, &l->inodes, err, errsz) < 0 ||
        get_size(o, ctx, "memory", true, &l->memory_bytes, err, errsz) < 0 ||
        get_count(o, ctx, "pids", PID_OR_FILE_MAX, true, &l->pids, err, errsz) < 0 ||
        get_count(o, ctx, "nofile", PID_OR_FILE_MAX, true, &l->nofile, err, errsz) < 0 ||
        get_size(o, ctx, "fsize", true, &l->fsize_bytes, err, errsz) < 0 ||
        get_seconds(o, ctx, "cpu_s", true, &l->cpu_s, err, errsz) < 0 ||
        get_seconds(o, ctx, "timeout_s", false, &l->timeout_s, err, errsz) < 0)
        return -1;
    if (l->memory_bytes && l->memory_bytes < POLICY_MIN_MEMORY_BYTES)
        return errf(err, errsz, "limits.memory: below the working minimum of 8M (0: none)");
    if (l->pids && l->pids < POLICY_MIN_PIDS)
        return errf(err, errsz, "limits.pids: below the working minimum of 2 (0: none)");
    if (l->disk_bytes < POLICY_MIN_DISK_BYTES)
        return errf(err, errsz, "limits.disk: below the working minimum of 4K");
    return 0;
}

/* Host paths the cell builds itself, or whose Unix sockets would reach host services
 * (a read-only bind does not stop connect() on a socket: /run/docker.sock). */
static const char *const bind_refused[] = {"/proc",    "/sys", "/dev",       "/run",
                                           "/var/run", "/tmp", "/workspace", NULL};

static int check_bind_path(const char *path, const char *ctx, char *err, size_t errsz)
{
    size_t n = strlen(path);
    if (path[0] != '/' || n >= PATH_MAX)
        return errf(err, errsz, "%s: expected an absolute path", ctx);
    if (n == 1)
        return errf(err, errsz, "%s: binding the whole host root is refused", ctx);
    for (const char *c = path; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return errf(err, errsz, "%s: control character in path", ctx);
    if (path[n - 1] == '/' || strstr(path, "//") || strstr(path, "/./") || strstr(path, "/../") ||
        (n >= 2 && strcmp(path + n - 2, "/.") == 0) || (n >= 3 && strcmp(path + n - 3, "/..") == 0))
        return errf(err, errsz, "%s: path must be normalized (no //, ., .. or trailing /)", ctx);
    for (const char *const *r = bind_refused; *r; r++) {
        size_t rn = strlen(*r);
        if (strncmp(path, *r, rn) == 0 && (path[rn] == '\0' || path[rn] == '/'))
            return errf(err, errsz,
                        "%s: %s is refused: the cell makes its own or it holds host "
                        "sockets",
                        ctx, *r);
    }
    return 0;
}

static void free_binds(struct policy_bind *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(b[i].path);
        free(b[i].dest);
    }
    free(b);
}

static int parse_binds(const cJSON *arr, struct policy *p, char *err, size_t errsz)
{
    if (!cJSON_IsArray(arr))
        return errf(err, errsz, "mounts.ro_binds: expected an array");
    int n = cJSON_GetArraySize(arr);
    if (n > BINDS_MAX)
        return errf(err, errsz, "mounts.ro_binds: at most %d entries", BINDS_MAX);
    struct policy_bind *b = calloc((size_t)n + 1, sizeof(*b));
    if (!b)
        return errf(err, errsz, "out of memory");
    static const char *const keys[] = {"path", "optional", "comment", NULL};
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        char ctx[64];
        snprintf(ctx, sizeof(ctx), "mounts.ro_binds[%zu]", i);
        const char *path = NULL, *comment;
        bool optional = false;
        int r = check_keys(it, ctx, keys, err, errsz);
        if (r == 0)
            r = json_get_string(it, ctx, "path", &path, err, errsz);
        if (r == 1)
            r = errf(err, errsz, "%s.path: required", ctx);
        if (r == 0) {
            char pctx[80];
            snprintf(pctx, sizeof(pctx), "%s.path", ctx);
            r = check_bind_path(path, pctx, err, errsz);
        }
        if (r == 0)
            r = json_get_bool(it, ctx, "optional", &optional, err, errsz) < 0 ? -1 : 0;
        if (r == 0)
            r = json_get_string(it, ctx, "comment", &comment, err, errsz) < 0 ? -1 : 0;
        for (size_t j = 0; r == 0 && j < i; j++)
            if (strcmp(b[j].path, path) == 0)
                r = errf(err, errsz, "%s.path: \"%s\" already bound by ro_binds[%zu]", ctx, path,
                         j);
        if (r == 0 && !(b[i].path = strdup(path)))
            r = errf(err, errsz, "out of memory");
        if (r < 0) {
            free_binds(b, i);
            return -1;
        }
        b[i].optional = optional;
        i++;
    }
    free_binds(p->binds, p->nbinds);
    p->binds = b;
    p->nbinds = i;
    return 0;
}

static int parse_mounts(const cJSON *o, struct policy *p, char *err, size_t errsz)
{
    static const char *const keys[] = {"ro_binds", "tmp_size", "shm_size", NULL};
    if (check_keys(o, "mounts", keys, err, errsz) < 0 ||
        get_size(o, "mounts", "tmp_size", false, &p->tmp_bytes, err, errsz) < 0 ||
        get_size(o, "mounts", "shm_size", false, &p->shm_bytes, err, errsz) < 0)
        return -1;
    const cJSON *binds = cJSON_GetObjectItemCaseSensitive(o, "ro_binds");
    return binds ? parse_binds(binds, p, err, errsz) : 0;
}

static int parse_network(const cJSON *o, struct policy *p, char *err, size_t errsz)
{
    static const char *const keys[] = {"allow_host", "loopback", "egress", NULL};
    if (check_keys(o, "network", keys, err, errsz) < 0 ||
        json_get_bool(o, "network", "allow_host", &p->allow_network_host, err, errsz) < 0 ||
        json_get_bool(o, "network", "loopback", &p->loopback, err, errsz) < 0)
        return -1;
    const cJSON *eg = cJSON_GetObjectItemCaseSensitive(o, "egress");
    return eg ? policy_parse_egress(eg, p, err, errsz) : 0;
}

static int parse_action(const cJSON *o, const char *ctx, const char *field, enum policy_action *out,
                        char *err, size_t errsz)
{
    const char *s;
    int r = json_get_string(o, ctx, field, &s, err, errsz);
    if (r != 0)
        return r;
    int a = policy_name_index(policy_action_names, POLICY_ACTION_NAMES, s);
    if (a < 0)
        return errf(err, errsz, "%s.%s: unknown action \"%s\" (allow, log, errno or kill_process)",
                    ctx, field, s);
    *out = (enum policy_action)a;
    return 0;
}

static int parse_arg(const cJSON *o, const char *ctx, struct policy_arg *a, char *err, size_t errsz)
{
    static const char *const keys[] = {"index", "op", "value", "mask", NULL};
    uint64_t index;
    const char *op;
    int r;
    char fctx[128];
    if (check_keys(o, ctx, keys, err, errsz) < 0)
        return -1;
    if ((r = json_get_uint(o, ctx, "index", 5, &index, err, errsz)) != 0)
        return r < 0 ? -1 : errf(err, errsz, "%s.index: required (0-5)", ctx);
    if ((r = json_get_string(o, ctx, "op", &op, err, errsz)) != 0)
        return r < 0 ? -1 : errf(err, errsz, "%s.op: required", ctx);
    int opi = policy_name_index(policy_op_names, POLICY_OP_NAMES, op);
    if (opi < 0)
        return errf(err, errsz, "%s.op: unknown op \"%s\" (eq, ne, lt, le, gt, ge, masked_eq)", ctx,
                    op);
    a->index = (unsigned)index;
    a->op = (enum policy_op)opi;
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(o, "value");
    const cJSON *mask = cJSON_GetObjectItemCaseSensitive(o, "mask");
    snprintf(fctx, sizeof(fctx), "%s.value", ctx);
    if (!value)
        return errf(err, errsz, "%s: required", fctx);
    if (parse_arg_value(value, fctx, &a->value, err, errsz) < 0)
        return -1;
    snprintf(fctx, sizeof(fctx), "%s.mask", ctx);
    if (a->op == POLICY_OP_MASKED_EQ) {
        if (!mask)
            return errf(err, errsz, "%s: required with op masked_eq", fctx);
        if (parse_arg_value(mask, fctx, &a->mask, err, errsz) < 0)
            return -1;
        if ((a->value & ~a->mask) != 0)
            return errf(err, errsz, "%s: value has bits outside the mask, so it never matches",
                        fctx);
    } else if (mask) {
        return errf(err, errsz, "%s: only with op masked_eq", fctx);
    }
    return 0;
}

static int parse_syscall_name(const cJSON *v, const char *ctx, int *nr, char *err, size_t errsz)
{
    if (!cJSON_IsString(v))
        return errf(err, errsz, "%s: expected a syscall name", ctx);
    const char *s = v->valuestring;
    bool ok = *s && strlen(s) < POLICY_SYSCALL_NAME_MAX;
    for (const char *c = s; ok && *c; c++)
        ok = islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_';
    /* libseccomp knows every architecture's names; a name that only exists elsewhere gets a
     * negative pseudo number that never matches here, so portable policies stay valid. */
    if (!ok || (*nr = seccomp_syscall_resolve_name(s)) == __NR_SCMP_ERROR)
        return errf(err, errsz, "%s: unknown syscall \"%.64s\"", ctx, s);
    return 0;
}

struct entries {
    struct policy_rule *v;
    size_t n, cap;
};

static int parse_rule(const cJSON *o, size_t ri, const char *source, int default_errno,
                      struct entries *out, char *err, size_t errsz)
{
    static const char *const keys[] = {"syscalls", "action", "errno", "args", "comment", NULL};
    char ctx[64];
    snprintf(ctx, sizeof(ctx), "seccomp.rules[%zu]", ri);
    struct policy_rule proto = {.errno_value = default_errno};
    int r;
    const char *comment;
    if (check_keys(o, ctx, keys, err, errsz) < 0 ||
        json_get_string(o, ctx, "comment", &comment, err, errsz) < 0)
        return -1;
    if ((r = parse_action(o, ctx, "action", &proto.action, err, errsz)) != 0)
        return r < 0 ? -1 : errf(err, errsz, "%s.action: required", ctx);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "errno");
    if (e) {
        char ectx[80];
        snprintf(ectx, sizeof(ectx), "%s.errno", ctx);
        if (proto.action != POLICY_ACT_ERRNO)
            return errf(err, errsz, "%s: only with action errno", ectx);
        if (parse_errno(e, ectx, &proto.errno_value, err, errsz) < 0)
            return -1;
    }
    if (proto.action != POLICY_ACT_ERRNO)
        proto.errno_value = 0;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "args");
    if (args) {
        if (!cJSON_IsArray(args) || cJSON_GetArraySize(args) > 6)
            return errf(err, errsz, "%s.args: expected an array of at most 6 comparisons", ctx);
        const cJSON *a;
        cJSON_ArrayForEach(a, args)
        {
            char actx[80];
            snprintf(actx, sizeof(actx), "%s.args[%u]", ctx, proto.nargs);
            struct policy_arg *pa = &proto.args[proto.nargs];
            if (parse_arg(a, actx, pa, err, errsz) < 0)
                return -1;
            /* libseccomp refuses two comparisons of one argument in one rule (EINVAL) */
            for (unsigned j = 0; j < proto.nargs; j++)
                if (proto.args[j].index == pa->index)
                    return errf(err, errsz,
                                "%s.index: argument %u is already compared by "
                                "args[%u] (one comparison per argument)",
                                actx, pa->index, j);
            proto.nargs++;
        }
    }
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(o, "syscalls");
    if (!sys)
        return errf(err, errsz, "%s.syscalls: required", ctx);
    int ns = cJSON_IsArray(sys) ? cJSON_GetArraySize(sys) : -1;
    if (ns < 1 || ns > SYSCALLS_PER_RULE)
        return errf(err, errsz, "%s.syscalls: expected an array of 1 to %d syscall names", ctx,
                    SYSCALLS_PER_RULE);
    if (out->n + (size_t)ns > out->cap)
        return errf(err, errsz, "%s.syscalls: more than %d syscall rules in all", ctx, ENTRIES_MAX);
    size_t si = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, sys)
    {
        char sctx[96];
        snprintf(sctx, sizeof(sctx), "%s.syscalls[%zu]", ctx, si++);
        struct policy_rule *pr = &out->v[out->n];
        *pr = proto;
        if (parse_syscall_name(s, sctx, &pr->nr, err, errsz) < 0)
            return -1;
        snprintf(pr->syscall, sizeof(pr->syscall), "%s", s->valuestring);
        snprintf(pr->where, sizeof(pr->where), "%s: %s", source, sctx);
        out->n++;
    }
    return 0;
}

static bool same_args(const struct policy_rule *a, const struct policy_rule *b)
{
    if (a->nargs != b->nargs)
        return false;
    for (unsigned i = 0; i < a->nargs; i++) {
        bool found = false;
        for (unsigned j = 0; j < b->nargs && !found; j++)
            found = a->args[i].index == b->args[j].index && a->args[i].op == b->args[j].op &&
                    a->args[i].value == b->args[j].value && a->args[i].mask == b->args[j].mask;
        if (!found)
            return false;
    }
    return true;
}

/* libseccomp builds one decision tree per syscall and resolves some conflicts silently (the
 * first unconditional rule wins; an unconditional rule hides every conditional one), so the
 * combinations whose outcome would depend on that are refused here instead. */
static int check_rules(const struct policy *p, char *err, size_t errsz)
{
    for (size_t i = 0; i < p->nrules; i++) {
        const struct policy_rule *a = &p->rules[i];
        if (a->action == p->default_action &&
            (a->action != POLICY_ACT_ERRNO || a->errno_value == p->default_errno))
            return errf(err, errsz,
                        "%s: \"%s\" rule does nothing: its action is the "
                        "default_action",
                        a->where, a->syscall);
        for (size_t j = 0; j < i; j++) {
            const struct policy_rule *b = &p->rules[j];
            if (a->nr != b->nr)
                continue;
            if (a->nargs == 0 || b->nargs == 0)
                return errf(err, errsz,
                            "%s: \"%s\" already has a rule at %s; a rule without "
                            "args must be the syscall's only rule",
                            a->where, a->syscall, b->where);
            if (same_args(a, b))
                return errf(err, errsz, "%s: \"%s\" has a rule with the same args at %s", a->where,
                            a->syscall, b->where);
            if (a->action != b->action || a->errno_value != b->errno_value)
                return errf(err, errsz,
                            "%s: \"%s\" rules with args must all have one action "
                            "(%s says %s)",
                            a->where, a->syscall, b->where, policy_action_name(b->action));
        }
    }
    return 0;
}

static int parse_seccomp(const cJSON *o, struct policy *p, const char *source, char *err,
                         size_t errsz)
{
    static const char *const keys[] = {"default_action", "default_errno", "rules", NULL};
    if (check_keys(o, "seccomp", keys, err, errsz) < 0 ||
        parse_action(o, "seccomp", "default_action", &p->default_action, err, errsz) < 0)
        return -1;
    const cJSON *de = cJSON_GetObjectItemCaseSensitive(o, "default_errno");
    if (de && parse_errno(de, "seccomp.default_errno", &p->default_errno, err, errsz) < 0)
        return -1;
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(o, "rules");
    if (!rules)
        return 0;
    int n = cJSON_IsArray(rules) ? cJSON_GetArraySize(rules) : -1;
    if (n < 0 || n > RULES_MAX)
        return errf(err, errsz, "seccomp.rules: expected an array of at most %d rules", RULES_MAX);
    size_t cap = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rules)
    {
        const cJSON *sys = cJSON_GetObjectItemCaseSensitive(r, "syscalls");
        if (cJSON_IsArray(sys))
            cap += (size_t)cJSON_GetArraySize(sys);
    }
    cap = cap < ENTRIES_MAX ? cap : ENTRIES_MAX;
    cleanup_free struct policy_rule *v = calloc(cap + 1, sizeof(*v));
    if (!v)
        return errf(err, errsz, "out of memory");
    struct entries mine = {v, 0, cap};
    size_t ri = 0;
    cJSON_ArrayForEach(r, rules)
    {
        if (parse_rule(r, ri++, source, p->default_errno, &mine, err, errsz) < 0)
            return -1;
    }
    /* A rule here replaces every rule the base policy had for the same syscall. */
    size_t kept = 0;
    for (size_t i = 0; i < p->nrules; i++) {
        bool replaced = false;
        for (size_t j = 0; j < mine.n && !replaced; j++)
            replaced = mine.v[j].nr == p->rules[i].nr;
        if (!replaced)
            p->rules[kept++] = p->rules[i];
    }
    if (kept + mine.n > ENTRIES_MAX)
        return errf(err, errsz, "seccomp.rules: more than %d syscall rules with the base's",
                    ENTRIES_MAX);
    struct policy_rule *all = realloc(p->rules, (kept + mine.n + 1) * sizeof(*all));
    if (!all)
        return errf(err, errsz, "out of memory");
    memcpy(all + kept, mine.v, mine.n * sizeof(*all));
    p->rules = all;
    p->nrules = kept + mine.n;
    return 0;
}

/* ---- the file ---- */

static struct policy *policy_new_defaults(void)
{
    struct policy *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->limits = (struct policy_limits){
        .disk_bytes = POLICY_DEFAULT_DISK_BYTES,
        .inodes = POLICY_DEFAULT_INODES,
        .memory_bytes = POLICY_DEFAULT_MEMORY_BYTES,
        .pids = POLICY_DEFAULT_PIDS,
        .nofile = POLICY_DEFAULT_NOFILE,
        .fsize_bytes = POLICY_DEFAULT_FSIZE_BYTES,
        .cpu_s = POLICY_DEFAULT_CPU_S,
        .timeout_s = POLICY_DEFAULT_TIMEOUT_S,
    };
    p->tmp_bytes = POLICY_DEFAULT_TMP_BYTES;
    p->shm_bytes = POLICY_DEFAULT_SHM_BYTES;
    p->landlock = true;
    p->loopback = true;
    p->default_action = POLICY_ACT_ALLOW;
    p->default_errno = EPERM;
    return p;
}

static int load_depth(const char *name_or_path, int depth, struct policy **out, char *err,
                      size_t errsz);

static int parse_root(const cJSON *root, const char *source, int depth, struct policy **out,
                      char *err, size_t errsz)
{
    static const char *const keys[] = {"name",    "description", "extends", "seccomp", "mounts",
                                       "network", "landlock",    "limits",  NULL};
    const char *name = NULL, *desc = NULL, *base = NULL;
    if (!cJSON_IsObject(root))
        return errf(err, errsz, "expected a JSON object at the top");
    if (check_keys(root, "", keys, err, errsz) < 0 ||
        json_get_string(root, "", "name", &name, err, errsz) < 0 ||
        json_get_string(root, "", "description", &desc, err, errsz) < 0 ||
        json_get_string(root, "", "extends", &base, err, errsz) < 0)
        return -1;
    if (name && !valid_name(name))
        return errf(err, errsz, "name: expected 1-%d of a-z 0-9 _ -", NAME_MAX_CHARS);
    struct policy *p = NULL;
    if (base) {
        if (!valid_name(base))
            return errf(err, errsz, "extends: expected a policy name (a-z 0-9 _ -), not a path");
        if (depth >= POLICY_EXTENDS_DEPTH_MAX)
            return errf(err, errsz, "extends: more than %d levels (a cycle?)",
                        POLICY_EXTENDS_DEPTH_MAX);
        char berr[ERR_MSG_MAX];
        if (load_depth(base, depth + 1, &p, berr, sizeof(berr)) < 0)
            return errf(err, errsz, "extends: %s", berr);
        free(p->name);
        free(p->source);
        free(p->description);
        p->name = p->source = p->description = NULL;
    } else if (!(p = policy_new_defaults())) {
        return errf(err, errsz, "out of memory");
    }
    const cJSON *sec;
    int r = 0;
    if (r == 0 && (sec = cJSON_GetObjectItemCaseSensitive(root, "seccomp")))
        r = parse_seccomp(sec, p, source, err, errsz);
    if (r == 0 && (sec = cJSON_GetObjectItemCaseSensitive(root, "mounts")))
        r = parse_mounts(sec, p, err, errsz);
    if (r == 0 && (sec = cJSON_GetObjectItemCaseSensitive(root, "network")))
        r = parse_network(sec, p, err, errsz);
    if (r == 0 && (sec = cJSON_GetObjectItemCaseSensitive(root, "limits")))
        r = parse_limits(sec, &p->limits, err, errsz);
    if (r == 0 && json_get_bool(root, "", "landlock", &p->landlock, err, errsz) < 0)
        r = -1;
    if (r == 0)
        r = check_rules(p, err, errsz);
    if (r == 0 && ((desc && !(p->description = strdup(desc))) || !(p->source = strdup(source))))
        r = errf(err, errsz, "out of memory");
    if (r == 0 && name && !(p->name = strdup(name)))
        r = errf(err, errsz, "out of memory");
    if (r < 0) {
        policy_free(p);
        return -1;
    }
    *out = p;
    return 0;
}

/* "name: msg" -> "SOURCE: name: msg"; top-level fields come out of json.c as ".name". */
static int with_source(const char *source, char *err, size_t errsz)
{
    if (!err || !errsz)
        return -1;
    char tmp[ERR_MSG_MAX];
    snprintf(tmp, sizeof(tmp), "%s", err[0] == '.' ? err + 1 : err);
    snprintf(err, errsz, "%s: %s", source, tmp);
    return -1;
}

static void line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *c = text; c < at && *c; c++) {
        if (*c == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int parse_depth(const char *text, size_t len, const char *source, int depth,
                       struct policy **out, char *err, size_t errsz)
{
    if (len > POLICY_FILE_MAX_BYTES) {
        errf(err, errsz, "larger than %u bytes", POLICY_FILE_MAX_BYTES);
        return with_source(source, err, errsz);
    }
    if (memchr(text, '\0', len)) {
        errf(err, errsz, "contains a NUL byte");
        return with_source(source, err, errsz);
    }
    const char *end = NULL;
    cleanup_json cJSON *root = cJSON_ParseWithOpts(text, &end, true);
    if (!root) {
        int line, col;
        const char *at = end ? end : text + len;
        line_col(text, at, &line, &col);
        if (!*at)
            return errf(err, errsz, "%s:%d:%d: JSON syntax error at the end of the file", source,
                        line, col);
        return errf(err, errsz, "%s:%d:%d: JSON syntax error near \"%.*s\"", source, line, col,
                    (int)(strcspn(at, "\r\n") < 24 ? strcspn(at, "\r\n") : 24), at);
    }
    if (parse_root(root, source, depth, out, err, errsz) < 0)
        return with_source(source, err, errsz);
    if (!(*out)->name) {
        const char *base = strrchr(source, '/');
        base = base ? base + 1 : source;
        size_t n = strcspn(base, ".");
        if (!((*out)->name = strndup(base, n))) {
            policy_free(*out);
            *out = NULL;
            return errf(err, errsz, "out of memory");
        }
    }
    return 0;
}

int policy_parse(const char *text, size_t len, const char *source, struct policy **out, char *err,
                 size_t errsz)
{
    *out = NULL;
    return parse_depth(text, len, source, 0, out, err, errsz);
}

static int load_depth(const char *name_or_path, int depth, struct policy **out, char *err,
                      size_t errsz)
{
    char path[PATH_MAX];
    size_t n = strlen(name_or_path);
    bool is_path =
        strchr(name_or_path, '/') || (n > 5 && strcmp(name_or_path + n - 5, ".json") == 0);
    if (is_path) {
        if (n >= sizeof(path))
            return errf(err, errsz, "%.64s...: path too long", name_or_path);
        snprintf(path, sizeof(path), "%s", name_or_path);
    } else {
        char rel[128];
        if (!valid_name(name_or_path))
            return errf(err, errsz,
                        "policy \"%.64s\": a name is 1-%d of a-z 0-9 _ - (or give "
                        "a path)",
                        name_or_path, NAME_MAX_CHARS);
        snprintf(rel, sizeof(rel), "policies/%s.json", name_or_path);
        if (data_path(rel, path, sizeof(path)) < 0)
            return errf(err, errsz,
                        "policy \"%s\": no %s beside agentbox, in ../share/agentbox "
                        "or in $AGENTBOX_DATA_DIR",
                        name_or_path, rel);
    }
    cleanup_free char *text = NULL;
    size_t len = 0;
    /* regular files only, opened without blocking: a FIFO or a device is refused unopened */
    if (read_regular_at(AT_FDCWD, path, 1, POLICY_FILE_MAX_BYTES, &text, &len) < 0) {
        if (errno == EFBIG)
            return errf(err, errsz, "%s: larger than %u bytes", path, POLICY_FILE_MAX_BYTES);
        if (errno == EINVAL)
            return errf(err, errsz, "%s: not a regular file", path);
        return errf(err, errsz, "%s: %s", path, strerror(errno));
    }
    return parse_depth(text, len, path, depth, out, err, errsz);
}

int policy_load(const char *name_or_path, struct policy **out, char *err, size_t errsz)
{
    *out = NULL;
    return load_depth(name_or_path, 0, out, err, errsz);
}

void policy_free(struct policy *p)
{
    if (!p)
        return;
    free(p->name);
    free(p->source);
    free(p->description);
    free_binds(p->binds, p->nbinds);
    free(p->rules);
    free(p->egress);
    free(p);
}
