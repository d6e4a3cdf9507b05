/* Unit tests for the egress allow-list, pins, refused address classes, ceilings
 * (common/egress_rules.c) and the proxy's preamble parser (egress/egress_http.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "egress_http.h"
#include "egress_rules.h"
#include "policy.h"

static struct egress_rules rules_of(const char *const *allow, const char *const *pins)
{
    struct egress_rules r;
    memset(&r, 0, sizeof(r));
    char err[256];
    for (; allow && *allow; allow++)
        assert_int_equal(egress_rules_add(&r, *allow, err, sizeof(err)), 0);
    for (; pins && *pins; pins++)
        assert_int_equal(egress_rules_add_pin(&r, *pins, err, sizeof(err)), 0);
    egress_rules_defaults(&r);
    return r;
}

static void test_rule_syntax(void **state)
{
    (void)state;
    struct egress_rule r;
    char err[256];
    assert_int_equal(egress_rule_parse("PyPI.org.", &r, err, sizeof(err)), 0);
    assert_string_equal(r.host, "pypi.org");
    assert_int_equal(r.port, 0);
    assert_int_equal(egress_rule_parse("*.npmjs.org:443", &r, err, sizeof(err)), 0);
    assert_true(r.wildcard);
    assert_int_equal(r.port, 443);
    assert_int_equal(egress_rule_parse("[fd00::1]:8443", &r, err, sizeof(err)), 0);
    assert_true(r.literal);
    assert_string_equal(r.host, "fd00::1");
    assert_int_equal(egress_rule_parse("::1", &r, err, sizeof(err)), 0);
    const char *bad[] = {"",        "*",      "*.com",        "a.*.org",    "x:0",
                         "x:65536", "x:1:2",  "bad host",     "*.10.0.0.1", "[::1",
                         "a..b",    "-x:abc", "[1.2.3.4]:80", NULL};
    for (const char **b = bad; *b; b++) {
        if (egress_rule_parse(*b, &r, err, sizeof(err)) == 0)
            fail_msg("accepted '%s'", *b);
    }
}

static void test_matching(void **state)
{
    (void)state;
    const char *allow[] = {"pypi.org", "*.npmjs.org:443", "10.0.0.5:8080", "[::1]:9", NULL};
    struct egress_rules r = rules_of(allow, NULL);
    assert_null(egress_check_host(&r, "pypi.org", 443));
    assert_null(egress_check_host(&r, "pypi.org", 80));
    assert_string_equal(egress_check_host(&r, "pypi.org", 8443), "port not allowed for this host");
    assert_string_equal(egress_check_host(&r, "files.pypi.org", 443), "host not on the allow-list");
    assert_string_equal(egress_check_host(&r, "evilpypi.org", 443), "host not on the allow-list");
    assert_null(egress_check_host(&r, "registry.npmjs.org", 443));
    assert_null(egress_check_host(&r, "a.b.npmjs.org", 443));
    assert_non_null(egress_check_host(&r, "npmjs.org", 443)); /* *. is below only */
    assert_non_null(egress_check_host(&r, "xnpmjs.org", 443));
    assert_non_null(egress_check_host(&r, "registry.npmjs.org", 80));
    assert_null(egress_check_host(&r, "10.0.0.5", 8080));
    assert_null(egress_check_host(&r, "0:0::1", 9)); /* literals compare as addresses */
    assert_string_equal(egress_check_host(&r, "10.0.0.6", 8080),
                        "IP address not on the allow-list");
    /* a listed name never lets its IP through, nor the reverse */
    assert_non_null(egress_check_host(&r, "127.0.0.1", 443));
}

static int refused(const char *addr, const char *want)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(addr, ':')) {
        ss.ss_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
    } else {
        ss.ss_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr), 1);
    }
    const char *why = egress_addr_refused((struct sockaddr *)&ss);
    if (!want) {
        if (why)
            fail_msg("%s refused as %s", addr, why);
        return 0;
    }
    if (!why || strcmp(why, want) != 0)
        fail_msg("%s: expected %s, got %s", addr, want, why ? why : "allowed");
    return 0;
}

static void test_address_classes(void **state)
{
    (void)state;
    refused("127.0.0.1", "loopback");
    refused("127.255.0.9", "loopback");
    refused("::1", "loopback");
    refused("0.0.0.0", "unspecified");
    refused("::", "unspecified");
    refused("10.1.2.3", "private");
    refused("172.16.0.1", "private");
    refused("172.31.255.255", "private");
    refused("192.168.1.1", "private");
    refused("fd12::1", "private");
    refused("169.254.1.1", "link-local");
    refused("fe80::1", "link-local");
    refused("169.254.169.254", "metadata");
    refused("fd00:ec2::254", "metadata");
    refused("100.64.0.1", "CGNAT");
    refused("100.127.255.254", "CGNAT");
    refused("224.0.0.1", "multicast");
    refused("ff02::1", "multicast");
    refused("255.255.255.255", "reserved");
    refused("198.18.0.1", "reserved");
    refused("192.0.2.1", "reserved");
    refused("203.0.113.7", "reserved");
    refused("198.51.100.200", "reserved");
    refused("::ffff:127.0.0.1", "loopback"); /* v4-mapped */
    refused("::ffff:169.254.169.254", "metadata");
    refused("64:ff9b::a00:1", "private");     /* NAT64 of 10.0.0.1 */
    refused("2002:a9fe:a9fe::1", "metadata"); /* 6to4 of 169.254.169.254 */
    refused("151.101.0.223", NULL);           /* a public address */
    refused("172.32.0.1", NULL);
    refused("100.128.0.1", NULL);
    refused("2a04:4e42::223", NULL);
}

static void test_pins(void **state)
{
    (void)state;
    struct egress_pin p;
    char err[256];
    assert_int_equal(egress_pin_parse("reg.test:127.0.0.1", &p, err, sizeof(err)), 0);
    assert_string_equal(p.host, "reg.test");
    assert_int_equal(p.addr.ss_family, AF_INET);
    assert_int_equal(egress_pin_parse("reg.test:443:::1", &p, err, sizeof(err)), 0); /* curl */
    assert_int_equal(p.addr.ss_family, AF_INET6);
    assert_int_equal(egress_pin_parse("reg.test:[fd00::2]", &p, err, sizeof(err)), 0);
    assert_int_not_equal(egress_pin_parse("reg.test:nope", &p, err, sizeof(err)), 0);
    assert_int_not_equal(egress_pin_parse("1.2.3.4:1.2.3.4", &p, err, sizeof(err)), 0);
    assert_int_not_equal(egress_pin_parse(":1.2.3.4", &p, err, sizeof(err)), 0);
}

static void test_ceiling(void **state)
{
    (void)state;
    const char *ceil_allow[] = {"*.npmjs.org", "pypi.org:443", "files.pythonhosted.org", NULL};
    const char *ceil_pins[] = {"reg.test:10.0.0.1", NULL};
    struct egress_rules c = rules_of(ceil_allow, ceil_pins);
    char err[256];
    const char *ok[] = {"registry.npmjs.org:443", "*.npmjs.org", "*.a.npmjs.org", "pypi.org:443",
                        "files.pythonhosted.org", NULL};
    struct egress_rules t = rules_of(ok, (const char *[]){"reg.test:10.0.0.1", NULL});
    assert_int_equal(egress_rules_within(&c, &t, err, sizeof(err)), 0);
    const char *wider[][2] = {{"npmjs.org", NULL},   {"pypi.org", NULL}, /* 80 too */
                              {"pypi.org:80", NULL}, {"*.npmjs.org:8080", NULL},
                              {"evil.org", NULL},    {"10.0.0.1", NULL}};
    for (size_t i = 0; i < sizeof(wider) / sizeof(wider[0]); i++) {
        t = rules_of(wider[i], NULL);
        if (egress_rules_within(&c, &t, err, sizeof(err)) == 0)
            fail_msg("'%s' passed the ceiling", wider[i][0]);
    }
    t = rules_of(NULL, (const char *[]){"reg.test:127.0.0.1", NULL});
    assert_int_not_equal(egress_rules_within(&c, &t, err, sizeof(err)), 0);
}

static void test_rules_json_round_trip(void **state)
{
    (void)state;
    const char *allow[] = {"*.npmjs.org:443", "[::1]:9", "pypi.org", NULL};
    const char *pins[] = {"reg.test:127.0.0.1", NULL};
    struct egress_rules r = rules_of(allow, pins), back;
    r.max_connections = 7;
    cJSON *j = egress_rules_to_json(&r);
    char err[256];
    assert_int_equal(egress_rules_from_json(j, &back, err, sizeof(err)), 0);
    cJSON_Delete(j);
    assert_int_equal(back.nrules, 3);
    assert_int_equal(back.npins, 1);
    assert_int_equal(back.max_connections, 7);
    assert_null(egress_check_host(&back, "x.npmjs.org", 443));
    assert_null(egress_check_host(&back, "::1", 9));
}

static int parse(const char *text, struct egress_request *req, const char **why)
{
    size_t len = strlen(text);
    size_t end = egress_preamble_end(text, len);
    assert_int_equal(end, len);
    return egress_request_parse(text, end, req, why);
}

static void test_preamble(void **state)
{
    (void)state;
    struct egress_request req;
    const char *why;
    assert_int_equal(parse("CONNECT Reg.Test:443 HTTP/1.1\r\nHost: x\r\n\r\n", &req, &why), 0);
    assert_true(req.connect);
    assert_string_equal(req.host, "reg.test");
    assert_int_equal(req.port, 443);
    assert_int_equal(parse("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n", &req, &why), 0);
    assert_string_equal(req.host, "::1");
    assert_int_equal(parse("GET http://a.test/p?q=1 HTTP/1.1\r\nHost: evil.test\r\n"
                           "Proxy-Connection: keep-alive\r\nProxy-Authorization: x\r\n\r\n",
                           &req, &why),
                     0);
    assert_int_equal(req.port, 80);
    char out[512];
    size_t n = egress_request_rewrite(&req, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    assert_string_equal(out, "GET /p?q=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    assert_int_equal(parse("GET http://a.test HTTP/1.0\r\n\r\n", &req, &why), 0);
    n = egress_request_rewrite(&req, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "GET / HTTP/1.0\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    /* the origin sees the checked authority, never the client's Host (domain fronting) */
    assert_int_equal(
        parse("POST http://[::1]:8080/x HTTP/1.1\r\nhOsT: evil\r\nA: b\r\n\r\n", &req, &why), 0);
    n = egress_request_rewrite(&req, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(
        out, "POST /x HTTP/1.1\r\nA: b\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n");
    struct {
        const char *text;
        int status;
    } bad[] = {
        {"CONNECT a.test HTTP/1.1\r\n\r\n", 400},
        {"CONNECT a.test:99999 HTTP/1.1\r\n\r\n", 400},
        {"CONNECT a.test:443 HTTP/2.0\r\n\r\n", 505},
        {"CONNECT a.test:443 HTTP/1.1 x\r\n\r\n", 400},
        {"connect a.test:443 HTTP/1.1\r\n\r\n", 400},
        {"GET /x HTTP/1.1\r\n\r\n", 400},
        {"GET https://a.test/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://u:p@a.test/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://a.test:80:80/ HTTP/1.1\r\n\r\n", 400},
        {"GET http://a.test/ HTTP/1.1\r\nNoColon\r\n\r\n", 400},
        {"GET http://a.test/ HTTP/1.1\r\n: v\r\n\r\n", 400},
        {"GET http://a\x01.test/ HTTP/1.1\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int st = parse(bad[i].text, &req, &why);
        if (st != bad[i].status)
            fail_msg("'%s': %d, expected %d", bad[i].text, st, bad[i].status);
    }
    /* the header count is bounded */
    char big[8192] = "CONNECT a.test:443 HTTP/1.1\r\n";
    for (int i = 0; i < 150; i++)
        strcat(big, "X: y\r\n");
    strcat(big, "\r\n");
    assert_int_equal(parse(big, &req, &why), 431);
    assert_int_equal(egress_preamble_end("CONNECT a:1 HTTP/1.1\r\n", 22), 0);
}

static void test_policy_section(void **state)
{
    (void)state;
    static const char ok[] = "{\"name\": \"x\", \"network\": {\"egress\": {\"allow\": "
                             "[\"pypi.org\", \"*.npmjs.org:443\"], \"max_connections\": 9}}}";
    struct policy *p = NULL;
    char err[512];
    assert_int_equal(policy_parse(ok, strlen(ok), "t", &p, err, sizeof(err)), 0);
    assert_non_null(p->egress);
    assert_int_equal(p->egress->nrules, 2);
    assert_int_equal(p->egress->max_connections, 9);
    /* back to JSON and again: the same */
    cJSON *j = policy_to_json(p);
    char *text = cJSON_PrintUnformatted(j);
    struct policy *q = NULL;
    assert_int_equal(policy_parse(text, strlen(text), "t2", &q, err, sizeof(err)), 0);
    assert_int_equal(q->egress->nrules, 2);
    assert_int_equal(q->egress->max_concurrent, 0); /* left to the default */
    free(text);
    cJSON_Delete(j);
    policy_free(q);
    policy_free(p);
    const char *bad[] = {
        "{\"network\": {\"egress\": {\"allow\": [\"*.com\"]}}}",
        "{\"network\": {\"egress\": {\"allow\": [\"a.org\"], \"x\": 1}}}",
        "{\"network\": {\"egress\": {\"resolve\": {\"a.org\": \"nope\"}}}}",
        "{\"network\": {\"loopback\": false, \"egress\": {\"allow\": [\"a.org\"]}}}",
        "{\"network\": {\"egress\": {\"allow\": [\"a.org\"], \"max_bytes\": 0}}}",
        NULL};
    for (const char **b = bad; *b; b++) {
        p = NULL;
        if (policy_parse(*b, strlen(*b), "t", &p, err, sizeof(err)) == 0)
            fail_msg("accepted %s", *b);
        assert_non_null(strstr(err, "network.egress"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_syntax),     cmocka_unit_test(test_matching),
        cmocka_unit_test(test_address_classes), cmocka_unit_test(test_pins),
        cmocka_unit_test(test_ceiling),         cmocka_unit_test(test_rules_json_round_trip),
        cmocka_unit_test(test_preamble),        cmocka_unit_test(test_policy_section),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
