/* egress_rules: parsing and checking the egress allow-list, the name pins and the refused
 * address classes (see egress_rules.h). Never resolves a name or opens a socket. */
#include "egress_rules.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

bool egress_is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

bool egress_host_normalize(char *host)
{
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '.')
        host[--n] = '\0';
    if (n == 0 || n > EGRESS_HOST_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        host[i] = (char)tolower((unsigned char)host[i]);
    if (egress_is_ip_literal(host))
        return true;
    /* letters, digits, '-', '_' (seen in real registries' names) and dots; no empty label,
     * no label longer than 63 */
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = host[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)c) && c != '-' && c != '_')
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

static int parse_port(const char *s, uint16_t *port)
{
    if (!*s || strlen(s) > 5 || strspn(s, "0123456789") != strlen(s))
        return -1;
    long v = strtol(s, NULL, 10);
    if (v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

int egress_rule_parse(const char *spec, struct egress_rule *r, char *err, size_t errsz)
{
    memset(r, 0, sizeof(*r));
    char buf[EGRESS_HOST_MAX + 16];
    if (!spec || strlen(spec) >= sizeof(buf))
        return errf(err, errsz, "'%s': expected HOST[:PORT]", spec ? spec : "");
    snprintf(buf, sizeof(buf), "%s", spec);
    char *host = buf, *port = NULL;
    if (buf[0] == '[') { /* [v6]:port */
        char *close = strchr(buf, ']');
        if (!close || (close[1] != '\0' && close[1] != ':'))
            return errf(err, errsz, "'%s': expected [IPV6]:PORT", spec);
        *close = '\0';
        host = buf + 1;
        if (close[1] == ':')
            port = close + 2;
        if (!egress_is_ip_literal(host) || !strchr(host, ':'))
            return errf(err, errsz, "'%s': not an IPv6 address in brackets", spec);
    } else {
        char *c = strchr(buf, ':');
        if (c && strchr(c + 1, ':')) { /* a bare IPv6 literal, no port */
            if (!egress_is_ip_literal(buf))
                return errf(err, errsz, "'%s': expected HOST[:PORT] or [IPV6]:PORT", spec);
        } else if (c) {
            *c = '\0';
            port = c + 1;
        }
    }
    if (port && parse_port(port, &r->port) < 0)
        return errf(err, errsz, "'%s': port must be 1-65535", spec);
    if (strncmp(host, "*.", 2) == 0) {
        r->wildcard = true;
        host += 2;
    }
    if (strchr(host, '*'))
        return errf(err, errsz, "'%s': '*' only as a leading \"*.\"", spec);
    if (strlen(host) > EGRESS_HOST_MAX)
        return errf(err, errsz, "'%s': name too long", spec);
    memcpy(r->host, host, strlen(host) + 1);
    if (!egress_host_normalize(r->host))
        return errf(err, errsz, "'%s': not a host name or IP address", spec);
    r->literal = egress_is_ip_literal(r->host);
    if (r->literal && r->wildcard)
        return errf(err, errsz, "'%s': a wildcard needs a domain name", spec);
    /* "*.com", "*.co.uk"-like patterns and a bare "*." are too wide to be meant */
    if (r->wildcard && !strchr(r->host, '.'))
        return errf(err, errsz, "'%s': a wildcard must be below a domain (*.example.org)", spec);
    return 0;
}

static int addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    size_t n = strlen(buf);
    if (n >= 2 && buf[0] == '[' && buf[n - 1] == ']') {
        buf[n - 1] = '\0';
        memmove(buf, buf + 1, n - 1);
    }
    if (inet_pton(AF_INET, buf, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        *len = sizeof(*a6);
        return 0;
    }
    return -1;
}

int egress_pin_parse(const char *spec, struct egress_pin *p, char *err, size_t errsz)
{
    memset(p, 0, sizeof(*p));
    const char *c = spec ? strchr(spec, ':') : NULL;
    if (!c || c == spec || (size_t)(c - spec) > EGRESS_HOST_MAX)
        return errf(err, errsz, "'%s': expected HOST:ADDR", spec ? spec : "");
    memcpy(p->host, spec, (size_t)(c - spec));
    p->host[c - spec] = '\0';
    if (!egress_host_normalize(p->host) || egress_is_ip_literal(p->host))
        return errf(err, errsz, "'%s': '%s' is not a host name", spec, p->host);
    const char *addr = c + 1;
    if (addr_parse(addr, &p->addr, &p->addrlen) == 0)
        return 0;
    /* curl's HOST:PORT:ADDR */
    const char *c2 = strchr(addr, ':');
    uint16_t port;
    char pbuf[8];
    if (c2 && (size_t)(c2 - addr) < sizeof(pbuf)) {
        memcpy(pbuf, addr, (size_t)(c2 - addr));
        pbuf[c2 - addr] = '\0';
        if (parse_port(pbuf, &port) == 0 && addr_parse(c2 + 1, &p->addr, &p->addrlen) == 0)
            return 0;
    }
    return errf(err, errsz, "'%s': '%s' is not an IP address", spec, addr);
}

int egress_rules_add(struct egress_rules *r, const char *spec, char *err, size_t errsz)
{
    if (r->nrules >= EGRESS_RULES_MAX)
        return errf(err, errsz, "more than %d allowed hosts", EGRESS_RULES_MAX);
    if (egress_rule_parse(spec, &r->rules[r->nrules], err, errsz) < 0)
        return -1;
    r->nrules++;
    return 0;
}

int egress_rules_add_pin(struct egress_rules *r, const char *spec, char *err, size_t errsz)
{
    if (r->npins >= EGRESS_PINS_MAX)
        return errf(err, errsz, "more than %d pinned names", EGRESS_PINS_MAX);
    struct egress_pin p;
    if (egress_pin_parse(spec, &p, err, errsz) < 0)
        return -1;
    for (size_t i = 0; i < r->npins; i++)
        if (strcmp(r->pins[i].host, p.host) == 0)
            return errf(err, errsz, "'%s' is pinned twice", p.host);
    r->pins[r->npins++] = p;
    return 0;
}

void egress_rules_defaults(struct egress_rules *r)
{
    if (!r->max_connections)
        r->max_connections = EGRESS_DEFAULT_MAX_CONNECTIONS;
    if (!r->max_concurrent)
        r->max_concurrent = EGRESS_DEFAULT_MAX_CONCURRENT;
    if (!r->max_bytes)
        r->max_bytes = EGRESS_DEFAULT_MAX_BYTES;
    if (r->max_conn_s <= 0)
        r->max_conn_s = EGRESS_DEFAULT_MAX_CONN_S;
}

static bool port_ok(const struct egress_rule *rule, uint16_t port)
{
    return rule->port ? rule->port == port : (port == 80 || port == 443);
}

static bool host_matches(const struct egress_rule *rule, const char *host)
{
    if (!rule->wildcard)
        return strcmp(rule->host, host) == 0;
    size_t hl = strlen(host), rl = strlen(rule->host);
    return hl > rl + 1 && host[hl - rl - 1] == '.' && strcmp(host + hl - rl, rule->host) == 0;
}

/* IP literals compare as addresses ("::1" == "0::1"). */
static bool literal_matches(const struct egress_rule *rule, const char *host)
{
    struct sockaddr_storage a, b;
    socklen_t la, lb;
    if (addr_parse(rule->host, &a, &la) < 0 || addr_parse(host, &b, &lb) < 0 ||
        a.ss_family != b.ss_family)
        return false;
    if (a.ss_family == AF_INET)
        return memcmp(&((struct sockaddr_in *)&a)->sin_addr, &((struct sockaddr_in *)&b)->sin_addr,
                      4) == 0;
    return memcmp(&((struct sockaddr_in6 *)&a)->sin6_addr, &((struct sockaddr_in6 *)&b)->sin6_addr,
                  16) == 0;
}

const char *egress_check_host(const struct egress_rules *r, const char *host, uint16_t port)
{
    bool literal = egress_is_ip_literal(host);
    bool name_ok = false;
    for (size_t i = 0; i < r->nrules; i++) {
        const struct egress_rule *rule = &r->rules[i];
        bool m = literal ? rule->literal && literal_matches(rule, host)
                         : !rule->literal && host_matches(rule, host);
        if (!m)
            continue;
        name_ok = true;
        if (port_ok(rule, port))
            return NULL;
    }
    if (name_ok)
        return "port not allowed for this host";
    return literal ? "IP address not on the allow-list" : "host not on the allow-list";
}

const struct egress_pin *egress_find_pin(const struct egress_rules *r, const char *host)
{
    for (size_t i = 0; i < r->npins; i++)
        if (strcmp(r->pins[i].host, host) == 0)
            return &r->pins[i];
    return NULL;
}

static const char *v4_refused(uint32_t a) /* host byte order */
{
    if (a == 0xA9FEA9FEu) /* 169.254.169.254: cloud metadata */
        return "metadata";
    if ((a >> 24) == 127)
        return "loopback";
    if ((a >> 24) == 0)
        return "unspecified";
    if ((a >> 24) == 10 || (a >> 20) == (172u << 4 | 1) || (a >> 16) == (192u << 8 | 168))
        return "private";
    if ((a >> 16) == (169u << 8 | 254))
        return "link-local";
    if ((a >> 22) == (100u << 2 | 1)) /* 100.64.0.0/10 */
        return "CGNAT";
    if ((a >> 28) == 0xE)
        return "multicast";
    if ((a >> 28) == 0xF) /* 240/4 and the broadcast address */
        return "reserved";
    if ((a >> 8) == (192u << 16) || (a >> 17) == (198u << 7 | 9)) /* 192.0.0/24, 198.18/15 */
        return "reserved";
    /* documentation: 192.0.2/24, 198.51.100/24, 203.0.113/24 */
    if ((a >> 8) == (192u << 16 | 2) || (a >> 8) == (198u << 16 | 51 << 8 | 100) ||
        (a >> 8) == (203u << 16 | 113))
        return "reserved";
    return NULL;
}

const char *egress_addr_refused(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        return v4_refused(ntohl(a->sin_addr.s_addr));
    }
    if (sa->sa_family != AF_INET6)
        return "unspecified";
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t metadata6[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0,
                                          0,    0,    0,    0,    0, 0, 2, 0x54};
    static const uint8_t zero[16];
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
    if (memcmp(b, metadata6, 16) == 0)
        return "metadata";
    if (memcmp(b, zero, 15) == 0)
        return b[15] == 1 ? "loopback" : b[15] == 0 ? "unspecified" : "reserved";
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 || memcmp(b, zero, 12) == 0) {
        uint32_t v4 = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
        return v4_refused(v4);
    }
    if (b[0] == 0x20 && b[1] == 0x02) { /* 6to4: 2002:V4ADDR::/48 */
        uint32_t v4 = (uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 | (uint32_t)b[4] << 8 | b[5];
        const char *why = v4_refused(v4);
        if (why)
            return why;
    }
    if ((b[0] & 0xfe) == 0xfc)
        return "private"; /* fc00::/7 unique local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local";
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return "private"; /* fec0::/10 site-local (deprecated) */
    if (b[0] == 0xff)
        return "multicast";
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        return "reserved"; /* 2001:db8::/32 documentation */
    if (b[0] == 0x01 && b[1] == 0 && memcmp(b + 2, zero, 6) == 0)
        return "reserved"; /* 100::/64 discard */
    return NULL;
}

const char *egress_addr_str(const struct sockaddr *sa, char *buf, size_t bufsz)
{
    const void *src = sa->sa_family == AF_INET
                          ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                          : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!inet_ntop(sa->sa_family, src, buf, (socklen_t)bufsz))
        snprintf(buf, bufsz, "?");
    return buf;
}

void egress_rule_str(const struct egress_rule *r, char *buf, size_t bufsz)
{
    bool v6 = r->literal && strchr(r->host, ':');
    char port[8] = "";
    if (r->port)
        snprintf(port, sizeof(port), ":%u", (unsigned)r->port);
    snprintf(buf, bufsz, "%s%s%s%s%s", r->wildcard ? "*." : "", v6 && r->port ? "[" : "", r->host,
             v6 && r->port ? "]" : "", port);
}

static bool rule_within(const struct egress_rule *c, const struct egress_rule *t)
{
    if (c->literal != t->literal)
        return false;
    if (c->port && c->port != t->port) /* t->port 0 means 80 and 443: wider than one port */
        return false;
    if (!c->port && t->port && t->port != 80 && t->port != 443)
        return false;
    if (c->literal)
        return literal_matches(c, t->host);
    if (!c->wildcard)
        return !t->wildcard && strcmp(c->host, t->host) == 0;
    /* *.a.org covers x.a.org and *.x.a.org; *.a.org covers *.a.org */
    if (t->wildcard && strcmp(c->host, t->host) == 0)
        return true;
    return host_matches(c, t->host);
}

int egress_rules_within(const struct egress_rules *ceiling, const struct egress_rules *task,
                        char *err, size_t errsz)
{
    char buf[EGRESS_HOST_MAX + 16];
    for (size_t i = 0; i < task->nrules; i++) {
        bool ok = false;
        for (size_t k = 0; k < ceiling->nrules && !ok; k++)
            ok = rule_within(&ceiling->rules[k], &task->rules[i]);
        if (!ok) {
            egress_rule_str(&task->rules[i], buf, sizeof(buf));
            return errf(err, errsz, "'%s' is not within the supervisor's egress allow-list", buf);
        }
    }
    for (size_t i = 0; i < task->npins; i++) {
        const struct egress_pin *p = egress_find_pin(ceiling, task->pins[i].host);
        if (!p || p->addrlen != task->pins[i].addrlen ||
            memcmp(&p->addr, &task->pins[i].addr, p->addrlen) != 0)
            return errf(err, errsz, "the pin of '%s' is not one the supervisor allows",
                        task->pins[i].host);
    }
    return 0;
}

cJSON *egress_rules_to_json(const struct egress_rules *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *allow = j ? cJSON_AddArrayToObject(j, "allow") : NULL;
    cJSON *res = j ? cJSON_AddObjectToObject(j, "resolve") : NULL;
    if (!allow || !res) {
        cJSON_Delete(j);
        return NULL;
    }
    char buf[EGRESS_HOST_MAX + 16], addr[64];
    for (size_t i = 0; i < r->nrules; i++) {
        egress_rule_str(&r->rules[i], buf, sizeof(buf));
        cJSON_AddItemToArray(allow, cJSON_CreateString(buf));
    }
    for (size_t i = 0; i < r->npins; i++)
        cJSON_AddStringToObject(
            res, r->pins[i].host,
            egress_addr_str((const struct sockaddr *)&r->pins[i].addr, addr, sizeof(addr)));
    /* caps left at 0 (the defaults) are left out: the object loads back the same */
    if (r->max_connections)
        cJSON_AddNumberToObject(j, "max_connections", (double)r->max_connections);
    if (r->max_concurrent)
        cJSON_AddNumberToObject(j, "max_concurrent", (double)r->max_concurrent);
    if (r->max_bytes)
        cJSON_AddNumberToObject(j, "max_bytes", (double)r->max_bytes);
    if (r->max_conn_s >= 1)
        cJSON_AddNumberToObject(j, "max_connection_s", r->max_conn_s);
    return j;
}

static int get_count(const cJSON *j, const char *key, uint64_t *out, char *err, size_t errsz)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e15)
        return errf(err, errsz, "%s: expected a positive number", key);
    *out = (uint64_t)v->valuedouble;
    return 0;
}

int egress_rules_from_json(const cJSON *j, struct egress_rules *r, char *err, size_t errsz)
{
    memset(r, 0, sizeof(*r));
    if (!cJSON_IsObject(j))
        return errf(err, errsz, "expected an object");
    const cJSON *allow = cJSON_GetObjectItemCaseSensitive(j, "allow");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "resolve");
    if ((allow && !cJSON_IsArray(allow)) || (res && !cJSON_IsObject(res)))
        return errf(err, errsz, "allow: a list of HOST[:PORT]; resolve: {HOST: ADDR}");
    const cJSON *it;
    cJSON_ArrayForEach(it, allow)
    {
        if (!cJSON_IsString(it))
            return errf(err, errsz, "allow: expected strings");
        if (egress_rules_add(r, it->valuestring, err, errsz) < 0)
            return -1;
    }
    cJSON_ArrayForEach(it, res)
    {
        char spec[EGRESS_HOST_MAX + 80];
        if (!cJSON_IsString(it) || strlen(it->string) > EGRESS_HOST_MAX ||
            strlen(it->valuestring) > 64)
            return errf(err, errsz, "resolve: expected {\"HOST\": \"ADDR\"}");
        snprintf(spec, sizeof(spec), "%s:%s", it->string, it->valuestring);
        if (egress_rules_add_pin(r, spec, err, errsz) < 0)
            return -1;
    }
    uint64_t secs = 0;
    if (get_count(j, "max_connections", &r->max_connections, err, errsz) < 0 ||
        get_count(j, "max_concurrent", &r->max_concurrent, err, errsz) < 0 ||
        get_count(j, "max_bytes", &r->max_bytes, err, errsz) < 0 ||
        get_count(j, "max_connection_s", &secs, err, errsz) < 0)
        return -1;
    r->max_conn_s = (double)secs;
    return 0;
}
