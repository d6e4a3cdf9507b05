/* config: see config.h. The API key is copied once into cfg->api_key and nowhere else in
 * this module; never print a config value without checking it is not the key. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "log.h"
#include "util.h"

#define RECOVERY_PREFIX "OPENHANDS_RECOVERY_"

const char *const config_variables[] = {
    "OPENROUTER_API_KEY",
    "OPENHANDS_MODEL",
    "OPENHANDS_BASE_URL",
    "OPENHANDS_WORKSPACE_ROOT",
    "OPENHANDS_TIMEOUT",
    "OPENHANDS_ENABLE_CIRCUIT_BREAKER",
    "OPENHANDS_FALLBACK_TO_MOCK",
    "OPENHANDS_LLM_TIMEOUT",
    "OPENHANDS_CONNECT_TIMEOUT",
    "OPENHANDS_MAX_TOKENS",
    "OPENHANDS_MAX_ATTEMPTS",
    "OPENHANDS_RETRY_BASE_DELAY",
    "OPENHANDS_RETRY_MAX_DELAY",
    "OPENHANDS_RETRY_AFTER_MAX",
    "OPENHANDS_CB_FAILURE_THRESHOLD",
    "OPENHANDS_CB_OPEN_SECONDS",
    "OPENHANDS_MODEL_UNAVAILABLE_TTL",
    "OPENHANDS_CB_HALF_OPEN_CALLS",
    "OPENHANDS_CB_SUCCESS_THRESHOLD",
    "OPENHANDS_RATE_LIMIT_FREE_RPM",
    "OPENHANDS_RATE_LIMIT_RPM",
    "OPENHANDS_RATE_LIMIT_BURST",
    "OPENHANDS_FALLBACK_MODELS",
    "OPENHANDS_CATALOG_FALLBACK",
    "OPENHANDS_MAX_CONNECTIONS",
    "OPENHANDS_HTTP_REFERER",
    "OPENHANDS_APP_TITLE",
    "OPENHANDS_EGRESS_ALLOW",
    "OPENHANDS_EGRESS_RESOLVE",
    "OPENHANDS_RECOVERY_CONNECTION_ERROR",
    "OPENHANDS_RECOVERY_TIMEOUT_ERROR",
    "OPENHANDS_RECOVERY_AUTHENTICATION_ERROR",
    "OPENHANDS_RECOVERY_RATE_LIMIT_ERROR",
    "OPENHANDS_RECOVERY_VALIDATION_ERROR",
    "OPENHANDS_RECOVERY_SDK_ERROR",
    "OPENHANDS_RECOVERY_UNKNOWN_ERROR",
    NULL,
};

void config_defaults(struct agentbox_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->model, sizeof(cfg->model), "deepseek-v3");
    snprintf(cfg->base_url, sizeof(cfg->base_url), "https://openrouter.ai/api/v1");
    snprintf(cfg->workspace_root, sizeof(cfg->workspace_root), "./openhands_workspace");
    cfg->timeout_s = 300.0;
    cfg->circuit_breaker = true;
    cfg->fallback_to_mock = false;
    cfg->llm_timeout_s = 120.0;
    cfg->connect_timeout_s = 10.0;
    cfg->max_tokens = 4096;
    cfg->max_attempts = 12;
    cfg->retry_base_s = 0.5;
    cfg->retry_max_s = 8.0;
    cfg->retry_after_max_s = 120.0;
    cfg->breaker_failures = 5;
    cfg->breaker_open_s = 60.0;
    cfg->model_unavailable_ttl_s = 600.0;
    cfg->breaker_half_open_calls = 3;
    cfg->breaker_successes = 2;
    cfg->rate_limit_free_rpm = 20.0;
    cfg->rate_limit_rpm = 0.0;
    cfg->rate_limit_burst = 5;
    cfg->catalog_fallback = true;
    cfg->max_connections = 1024;
    snprintf(cfg->http_referer, sizeof(cfg->http_referer), "https://github.com/agentbox/agentbox");
    snprintf(cfg->app_title, sizeof(cfg->app_title), "agentbox");
    recovery_policy_default(&cfg->recovery);
}

static int parse_bool(const char *name, const char *v, bool *out, char *err, size_t errsz)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        *out = true;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") ||
             !strcasecmp(v, "off"))
        *out = false;
    else
        return errf(err, errsz, "%s: expected true or false, got '%s'", name, v);
    return 0;
}

static int parse_secs(const char *name, const char *v, double min, double max, double *out,
                      char *err, size_t errsz)
{
    double d;
    if (seconds_parse(v, &d) < 0 || d < min || d > max)
        return errf(err, errsz, "%s: expected seconds between %g and %g, got '%s'", name, min, max,
                    v);
    *out = d;
    return 0;
}

static int parse_uint(const char *name, const char *v, unsigned min, unsigned max, unsigned *out,
                      char *err, size_t errsz)
{
    uint64_t u;
    if (uint_parse(v, max, &u) < 0 || u < min)
        return errf(err, errsz, "%s: expected an integer between %u and %u, got '%s'", name, min,
                    max, v);
    *out = (unsigned)u;
    return 0;
}

static int parse_rate(const char *name, const char *v, double *out, char *err, size_t errsz)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || errno || !isfinite(d) || d < 0 || d > 1e6)
        return errf(err, errsz, "%s: expected requests per minute (0 = no limit), got '%s'", name,
                    v);
    *out = d;
    return 0;
}

static int copy_str(const char *name, const char *v, char *dst, size_t dstsz, bool nonempty,
                    char *err, size_t errsz)
{
    if (nonempty && !*v)
        return errf(err, errsz, "%s: must not be empty", name);
    if (strlen(v) >= dstsz)
        return errf(err, errsz, "%s: longer than %zu characters", name, dstsz - 1);
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return errf(err, errsz, "%s: contains a control character", name);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* an address literal in 127.0.0.0/8, [::1] or "localhost"; "127.0.0.1.evil.com" is not */
static bool is_loopback_host(const char *host, size_t len)
{
    char buf[64];
    struct in_addr a4;
    if (len == 9 && !strncasecmp(host, "localhost", 9))
        return true;
    if (len == 5 && !strncmp(host, "[::1]", 5))
        return true;
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, host, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/* https anywhere; http only to loopback, where the key cannot be read on the wire */
static int parse_base_url(const char *name, const char *v, char *dst, size_t dstsz, char *err,
                          size_t errsz)
{
    const char *host;
    if (!strncasecmp(v, "https://", 8))
        host = v + 8;
    else if (!strncasecmp(v, "http://", 7)) {
        host = v + 7;
        size_t hl = strcspn(host, "/");
        const char *colon = host[0] == '[' ? memchr(host, ']', hl) : memchr(host, ':', hl);
        size_t name_len = hl;
        if (host[0] == '[' && colon)
            name_len = (size_t)(colon - host) + 1;
        else if (colon)
            name_len = (size_t)(colon - host);
        if (!is_loopback_host(host, name_len))
            return errf(err, errsz,
                        "%s: plain http is allowed only to a loopback host (127.0.0.1, ::1, "
                        "localhost); the API key would cross the network in clear",
                        name);
    } else
        return errf(err, errsz, "%s: expected an https:// URL, got '%s'", name, v);
    if (strcspn(host, "/") == 0)
        return errf(err, errsz, "%s: no host in '%s'", name, v);
    if (copy_str(name, v, dst, dstsz, true, err, errsz) < 0)
        return -1;
    size_t l = strlen(dst);
    while (l > 0 && dst[l - 1] == '/')
        dst[--l] = '\0';
    return 0;
}

static int parse_models(const char *name, const char *v, struct agentbox_config *cfg, char *err,
                        size_t errsz)
{
    char models[CONFIG_FALLBACKS_MAX][CONFIG_MODEL_MAX];
    int n = 0;
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (len == 0)
            break;
        if (n >= CONFIG_FALLBACKS_MAX)
            return errf(err, errsz, "%s: at most %d models", name, CONFIG_FALLBACKS_MAX);
        if (len >= CONFIG_MODEL_MAX)
            return errf(err, errsz, "%s: model name too long", name);
        memcpy(models[n], p, len);
        models[n][len] = '\0';
        for (size_t i = 0; i < len; i++)
            if (!isgraph((unsigned char)models[n][i]))
                return errf(err, errsz, "%s: invalid character in a model name", name);
        n++;
        p += len;
    }
    memcpy(cfg->fallback_models, models, sizeof(models));
    cfg->n_fallback_models = n;
    return 0;
}

static int set_key(struct agentbox_config *cfg, const char *v, char *err, size_t errsz)
{
    size_t len = strlen(v);
    if (len == 0 || len > 512)
        return errf(err, errsz, "OPENROUTER_API_KEY: expected 1..512 characters");
    for (size_t i = 0; i < len; i++)
        if (!isgraph((unsigned char)v[i]))
            return errf(err, errsz, "OPENROUTER_API_KEY: contains a space or control character");
    char *k = strdup(v);
    if (!k)
        return errf(err, errsz, "OPENROUTER_API_KEY: out of memory");
    if (cfg->api_key) {
        log_add_secret(NULL);
        explicit_bzero(cfg->api_key, strlen(cfg->api_key));
        free(cfg->api_key);
    }
    cfg->api_key = k;
    log_add_secret(cfg->api_key);
    return 0;
}

int config_set(struct agentbox_config *cfg, const char *n, const char *v, char *err, size_t errsz)
{
    if (!strcmp(n, "OPENROUTER_API_KEY"))
        return set_key(cfg, v, err, errsz);
    if (!strcmp(n, "OPENHANDS_MODEL"))
        return copy_str(n, v, cfg->model, sizeof(cfg->model), true, err, errsz);
    if (!strcmp(n, "OPENHANDS_BASE_URL"))
        return parse_base_url(n, v, cfg->base_url, sizeof(cfg->base_url), err, errsz);
    if (!strcmp(n, "OPENHANDS_WORKSPACE_ROOT"))
        return copy_str(n, v, cfg->workspace_root, sizeof(cfg->workspace_root), true, err, errsz);
    if (!strcmp(n, "OPENHANDS_TIMEOUT"))
        return parse_secs(n, v, 0.001, 7 * 86400.0, &cfg->timeout_s, err, errsz);
    if (!strcmp(n, "OPENHANDS_ENABLE_CIRCUIT_BREAKER"))
        return parse_bool(n, v, &cfg->circuit_breaker, err, errsz);
    if (!strcmp(n, "OPENHANDS_FALLBACK_TO_MOCK"))
        return parse_bool(n, v, &cfg->fallback_to_mock, err, errsz);
    if (!strcmp(n, "OPENHANDS_LLM_TIMEOUT"))
        return parse_secs(n, v, 0.001, 3600.0, &cfg->llm_timeout_s, err, errsz);
    if (!strcmp(n, "OPENHANDS_CONNECT_TIMEOUT"))
        return parse_secs(n, v, 0.001, 600.0, &cfg->connect_timeout_s, err, errsz);
    if (!strcmp(n, "OPENHANDS_MAX_TOKENS"))
        return parse_uint(n, v, 1, 1000000, &cfg->max_tokens, err, errsz);
    if (!strcmp(n, "OPENHANDS_MAX_ATTEMPTS"))
        return parse_uint(n, v, 1, 100, &cfg->max_attempts, err, errsz);
    if (!strcmp(n, "OPENHANDS_RETRY_BASE_DELAY"))
        return parse_secs(n, v, 0, 600.0, &cfg->retry_base_s, err, errsz);
    if (!strcmp(n, "OPENHANDS_RETRY_MAX_DELAY"))
        return parse_secs(n, v, 0, 3600.0, &cfg->retry_max_s, err, errsz);
    if (!strcmp(n, "OPENHANDS_RETRY_AFTER_MAX"))
        return parse_secs(n, v, 0, 3600.0, &cfg->retry_after_max_s, err, errsz);
    if (!strcmp(n, "OPENHANDS_CB_FAILURE_THRESHOLD"))
        return parse_uint(n, v, 1, 10000, &cfg->breaker_failures, err, errsz);
    if (!strcmp(n, "OPENHANDS_MODEL_UNAVAILABLE_TTL"))
        return parse_secs(n, v, 0, 86400.0, &cfg->model_unavailable_ttl_s, err, errsz);
    if (!strcmp(n, "OPENHANDS_CB_OPEN_SECONDS"))
        return parse_secs(n, v, 0, 86400.0, &cfg->breaker_open_s, err, errsz);
    if (!strcmp(n, "OPENHANDS_CB_HALF_OPEN_CALLS"))
        return parse_uint(n, v, 1, 1000, &cfg->breaker_half_open_calls, err, errsz);
    if (!strcmp(n, "OPENHANDS_CB_SUCCESS_THRESHOLD"))
        return parse_uint(n, v, 1, 1000, &cfg->breaker_successes, err, errsz);
    if (!strcmp(n, "OPENHANDS_RATE_LIMIT_FREE_RPM"))
        return parse_rate(n, v, &cfg->rate_limit_free_rpm, err, errsz);
    if (!strcmp(n, "OPENHANDS_RATE_LIMIT_RPM"))
        return parse_rate(n, v, &cfg->rate_limit_rpm, err, errsz);
    if (!strcmp(n, "OPENHANDS_RATE_LIMIT_BURST"))
        return parse_uint(n, v, 1, 100000, &cfg->rate_limit_burst, err, errsz);
    if (!strcmp(n, "OPENHANDS_FALLBACK_MODELS"))
        return parse_models(n, v, cfg, err, errsz);
    if (!strcmp(n, "OPENHANDS_CATALOG_FALLBACK"))
        return parse_bool(n, v, &cfg->catalog_fallback, err, errsz);
    if (!strcmp(n, "OPENHANDS_MAX_CONNECTIONS"))
        return parse_uint(n, v, 1, 100000, &cfg->max_connections, err, errsz);
    if (!strcmp(n, "OPENHANDS_EGRESS_ALLOW"))
        return copy_str(n, v, cfg->egress_allow, sizeof(cfg->egress_allow), false, err, errsz);
    if (!strcmp(n, "OPENHANDS_EGRESS_RESOLVE"))
        return copy_str(n, v, cfg->egress_resolve, sizeof(cfg->egress_resolve), false, err, errsz);
    if (!strcmp(n, "OPENHANDS_HTTP_REFERER"))
        return copy_str(n, v, cfg->http_referer, sizeof(cfg->http_referer), false, err, errsz);
    if (!strcmp(n, "OPENHANDS_APP_TITLE"))
        return copy_str(n, v, cfg->app_title, sizeof(cfg->app_title), false, err, errsz);
    if (!strncmp(n, RECOVERY_PREFIX, strlen(RECOVERY_PREFIX))) {
        int t = llm_error_type_parse(n + strlen(RECOVERY_PREFIX));
        if (t >= 0) {
            char e2[ERR_MSG_MAX];
            if (recovery_chain_parse(v, &cfg->recovery.chains[t], e2, sizeof(e2)) < 0)
                return errf(err, errsz, "%s: %s", n, e2);
            return 0;
        }
    }
    return errf(err, errsz, "%s: unknown setting", n);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l > 0 && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
    return s;
}

int config_load_file(struct agentbox_config *cfg, const char *path, char *err, size_t errsz)
{
    cleanup_free char *text = NULL;
    size_t len;
    if (read_file(path, CONFIG_FILE_MAX_BYTES, &text, &len) < 0)
        return errf(err, errsz, "%s: cannot read: %s", path, strerror(errno));
    if (memchr(text, '\0', len))
        return errf(err, errsz, "%s: contains a NUL byte", path);
    bool has_key = false;
    int lineno = 0;
    char *save = NULL;
    int rc = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *l = trim(line);
        if (*l == '\0' || *l == '#')
            continue;
        if (!strncmp(l, "export ", 7))
            l = trim(l + 7);
        char *eq = strchr(l, '=');
        if (!eq) {
            rc = errf(err, errsz, "%s:%d: expected KEY=VALUE", path, lineno);
            break;
        }
        *eq = '\0';
        char *k = trim(l), *v = trim(eq + 1);
        size_t vl = strlen(v);
        if (vl >= 2 && ((v[0] == '"' && v[vl - 1] == '"') || (v[0] == '\'' && v[vl - 1] == '\''))) {
            v[vl - 1] = '\0';
            v++;
        }
        char e2[ERR_MSG_MAX];
        if (config_set(cfg, k, v, e2, sizeof(e2)) < 0) {
            rc = errf(err, errsz, "%s:%d: %s", path, lineno, e2);
            break;
        }
        has_key |= !strcmp(k, "OPENROUTER_API_KEY");
    }
    explicit_bzero(text, len);
    if (rc < 0)
        return -1;
    struct stat st;
    if (has_key && stat(path, &st) == 0 && (st.st_mode & 0044))
        log_warn("%s holds OPENROUTER_API_KEY and is readable by others; chmod 600 it", path);
    snprintf(cfg->source, sizeof(cfg->source), "%s", path);
    return 0;
}

int config_load(struct agentbox_config *cfg, char *err, size_t errsz)
{
    config_defaults(cfg);
    const char *file = getenv("AGENTBOX_CONFIG");
    if (file && *file) {
        if (config_load_file(cfg, file, err, errsz) < 0)
            goto fail;
    } else if (access(CONFIG_DEFAULT_FILE, F_OK) == 0) {
        if (config_load_file(cfg, CONFIG_DEFAULT_FILE, err, errsz) < 0)
            goto fail;
    }
    for (int i = 0; config_variables[i]; i++) {
        const char *v = getenv(config_variables[i]);
        if (!v)
            continue;
        /* an exported-but-empty key means "no key", as in most shells' idiom */
        if (!*v && !strcmp(config_variables[i], "OPENROUTER_API_KEY"))
            continue;
        if (config_set(cfg, config_variables[i], v, err, errsz) < 0)
            goto fail;
    }
    /* other modules may own OPENHANDS_* names, so an unknown one is a warning, not an error */
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "OPENHANDS_", 10) != 0)
            continue;
        size_t nl = strcspn(*e, "=");
        bool known = false;
        for (int i = 0; config_variables[i] && !known; i++)
            known = strlen(config_variables[i]) == nl && !strncmp(config_variables[i], *e, nl);
        if (!known && !strncmp(*e, RECOVERY_PREFIX, strlen(RECOVERY_PREFIX)))
            log_warn("%.*s: not an ERROR_TYPE; ignored (docs/errors.md)", (int)nl, *e);
    }
    return 0;
fail:
    config_free(cfg);
    return -1;
}

int config_keyholder_harden(char *err, size_t errsz)
{
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return errf(err, errsz, "prctl(PR_SET_DUMPABLE): %s", strerror(errno));
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) < 0)
        return errf(err, errsz, "setrlimit(RLIMIT_CORE): %s", strerror(errno));
    return 0;
}

void config_scrub_env(void)
{
    char *v = getenv("OPENROUTER_API_KEY");
    if (v)
        explicit_bzero(v, strlen(v));
    (void)unsetenv("OPENROUTER_API_KEY");
}

void config_free(struct agentbox_config *cfg)
{
    if (cfg->api_key) {
        log_add_secret(NULL);
        explicit_bzero(cfg->api_key, strlen(cfg->api_key));
        free(cfg->api_key);
        cfg->api_key = NULL;
    }
}
