/* Unit tests for llm/config.c: the defaults, env over file, and every invalid value
 * refused with the variable's name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

static void clear_env(void)
{
    for (int i = 0; config_variables[i]; i++)
        unsetenv(config_variables[i]);
    unsetenv("AGENTBOX_CONFIG");
}

static void test_defaults_are_specs(void **state)
{
    (void)state;
    clear_env();
    struct agentbox_config c;
    char err[ERR_MSG_MAX];
    /* run from a directory without agentbox.conf */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(config_load(&c, err, sizeof(err)), 0);
    assert_int_equal(chdir(cwd), 0);
    assert_null(c.api_key);
    assert_string_equal(c.model, "deepseek-v3");
    assert_string_equal(c.base_url, "https://openrouter.ai/api/v1");
    assert_string_equal(c.workspace_root, "./openhands_workspace");
    assert_true(c.timeout_s == 300.0);
    assert_true(c.circuit_breaker);
    assert_false(c.fallback_to_mock);
    assert_int_equal(c.breaker_failures, 5);
    assert_true(c.breaker_open_s == 60.0);
    assert_int_equal(c.breaker_half_open_calls, 3);
    assert_int_equal(c.breaker_successes, 2);
    assert_true(c.rate_limit_free_rpm == 20.0);
    assert_true(c.max_tokens > 0);
    config_free(&c);
}

static void test_invalid_values_name_the_variable(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"OPENHANDS_TIMEOUT", "soon"},
        {"OPENHANDS_TIMEOUT", "-1"},
        {"OPENHANDS_ENABLE_CIRCUIT_BREAKER", "maybe"},
        {"OPENHANDS_FALLBACK_TO_MOCK", "2"},
        {"OPENHANDS_BASE_URL", "ftp://x"},
        {"OPENHANDS_BASE_URL", "http://openrouter.ai/api/v1"},
        {"OPENHANDS_BASE_URL", "http://127.0.0.1.evil.com/api"},
        {"OPENHANDS_MODEL", ""},
        {"OPENHANDS_LLM_TIMEOUT", "0"},
        {"OPENHANDS_MAX_TOKENS", "0"},
        {"OPENHANDS_MAX_TOKENS", "12x"},
        {"OPENHANDS_CB_FAILURE_THRESHOLD", "0"},
        {"OPENHANDS_RATE_LIMIT_FREE_RPM", "-5"},
        {"OPENHANDS_RECOVERY_CONNECTION_ERROR", "RETRY*0"},
        {"OPENHANDS_RECOVERY_NOT_A_TYPE", "RETRY"},
        {"OPENHANDS_NO_SUCH_THING", "1"},
        {"OPENROUTER_API_KEY", "has space"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct agentbox_config c;
        config_defaults(&c);
        char err[ERR_MSG_MAX] = "";
        clear_env();
        assert_int_equal(setenv(bad[i][0], bad[i][1], 1), 0);
        /* unknown OPENHANDS_* names in the environment may belong to another module: only
         * config_set (and so the config file) refuses them */
        bool unknown = !strcmp(bad[i][0], "OPENHANDS_NO_SUCH_THING") ||
                       !strcmp(bad[i][0], "OPENHANDS_RECOVERY_NOT_A_TYPE");
        assert_int_equal(config_load(&c, err, sizeof(err)), unknown ? 0 : -1);
        print_message("%s=%s -> %s\n", bad[i][0], bad[i][1], err);
        if (!unknown)
            assert_non_null(strstr(err, bad[i][0]));
        config_free(&c);
        /* direct: unknown names are refused by config_set too */
        assert_int_equal(config_set(&c, bad[i][0], bad[i][1], err, sizeof(err)), -1);
        assert_non_null(strstr(err, bad[i][0]));
        config_free(&c);
        unsetenv(bad[i][0]);
    }
    clear_env();
}

static void test_loopback_http_allowed(void **state)
{
    (void)state;
    struct agentbox_config c;
    config_defaults(&c);
    char err[ERR_MSG_MAX];
    const char *ok[] = {"http://127.0.0.1:8080/api/v1/", "http://localhost/api",
                        "http://[::1]:9/v1", "https://example.com/v1"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_int_equal(config_set(&c, "OPENHANDS_BASE_URL", ok[i], err, sizeof(err)), 0);
    assert_int_equal(
        config_set(&c, "OPENHANDS_BASE_URL", "http://127.0.0.1:8080/api/v1/", err, sizeof(err)), 0);
    assert_string_equal(c.base_url, "http://127.0.0.1:8080/api/v1"); /* trailing / dropped */
}

static void test_file_then_env_wins(void **state)
{
    (void)state;
    clear_env();
    char path[] = "/tmp/agentbox-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\n\nOPENHANDS_MODEL=gemini-flash\n"
                       "export OPENHANDS_TIMEOUT = \"12\"\n"
                       "OPENHANDS_FALLBACK_MODELS=a/b, c/d:free\n"
                       "OPENHANDS_RECOVERY_RATE_LIMIT_ERROR=FALLBACK_MODEL,ESCALATE\n"
                       "OPENROUTER_API_KEY=sk-or-from-file-123456\n";
    assert_int_equal(write_all(fd, text, strlen(text)), 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(setenv("AGENTBOX_CONFIG", path, 1), 0);
    assert_int_equal(setenv("OPENHANDS_TIMEOUT", "30", 1), 0);
    struct agentbox_config c;
    char err[ERR_MSG_MAX];
    assert_int_equal(config_load(&c, err, sizeof(err)), 0);
    assert_string_equal(c.model, "gemini-flash");
    assert_true(c.timeout_s == 30.0);
    assert_int_equal(c.n_fallback_models, 2);
    assert_string_equal(c.fallback_models[1], "c/d:free");
    assert_int_equal(c.recovery.chains[RATE_LIMIT_ERROR].n, 2);
    assert_int_equal(c.recovery.chains[RATE_LIMIT_ERROR].steps[1].strategy, ESCALATE);
    assert_string_equal(c.api_key, "sk-or-from-file-123456");
    config_free(&c);
    assert_null(c.api_key);
    /* a bad line names the file, the line and the variable */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("OPENHANDS_MODEL=x\nOPENHANDS_ENABLE_CIRCUIT_BREAKER=perhaps\n", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(config_load(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ":2:"));
    assert_non_null(strstr(err, "OPENHANDS_ENABLE_CIRCUIT_BREAKER"));
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("just words\n", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(config_load(&c, err, sizeof(err)), -1);
    assert_int_equal(unlink(path), 0);
    /* AGENTBOX_CONFIG naming a missing file is an error, not a silent default */
    assert_int_equal(config_load(&c, err, sizeof(err)), -1);
    clear_env();
}

static void test_scrub_env_keeps_config_copy(void **state)
{
    (void)state;
    clear_env();
    assert_int_equal(setenv("OPENROUTER_API_KEY", "sk-or-scrub-me-12345678", 1), 0);
    char *env_copy = getenv("OPENROUTER_API_KEY");
    struct agentbox_config c;
    char err[ERR_MSG_MAX];
    assert_int_equal(config_load(&c, err, sizeof(err)), 0);
    config_scrub_env();
    assert_null(getenv("OPENROUTER_API_KEY"));
    assert_string_equal(c.api_key, "sk-or-scrub-me-12345678");
    (void)env_copy; /* setenv's storage may be freed by unsetenv: not inspected */
    config_free(&c);
    config_scrub_env(); /* idempotent */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_specs),
        cmocka_unit_test(test_invalid_values_name_the_variable),
        cmocka_unit_test(test_loopback_http_allowed),
        cmocka_unit_test(test_file_then_env_wins),
        cmocka_unit_test(test_scrub_env_keeps_config_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
