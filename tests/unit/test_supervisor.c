/* Unit tests for supervisor/supervisor.c: the key holder's bring-up leaves the process
 * non-dumpable with core dumps off, the key in the config only (its bytes in the
 * environment wiped), and opening the broker refuses a missing key or replay file with a
 * usage message; given a catalog, it loads it, and a catalog that cannot be read is a usage
 * error that leaves no key in the config. The bring-up changes the process for good, so it
 * runs in a child. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor.h"
#include "util.h"

#define KEY "sk-or-v1-unit-supervisor-0123456789abcdef"

static void clear_env(void)
{
    for (int i = 0; config_variables[i]; i++)
        unsetenv(config_variables[i]);
    unsetenv("AGENTBOX_CONFIG");
}

/* In the child: 0 when every promise holds, else the number of the first one broken. */
static int bring_up_and_check(void)
{
    clear_env();
    if (setenv("OPENROUTER_API_KEY", KEY, 1) < 0 || chdir("/") < 0)
        return 90;
    const char *in_env = getenv("OPENROUTER_API_KEY");
    if (!in_env || prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        return 91;
    struct agentbox_config cfg;
    char err[ERR_MSG_MAX];
    if (supervisor_keyholder_start(&cfg, NULL, err, sizeof(err)) < 0)
        return 1;
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
        return 2;
    struct rlimit core;
    if (getrlimit(RLIMIT_CORE, &core) < 0 || core.rlim_cur != 0 || core.rlim_max != 0)
        return 3;
    if (getenv("OPENROUTER_API_KEY"))
        return 4;
    for (size_t i = 0; i < strlen(KEY); i++) /* the bytes were wiped where they were */
        if (in_env[i] != '\0')
            return 5;
    if (!cfg.api_key || strcmp(cfg.api_key, KEY) != 0)
        return 6;
    config_free(&cfg);
    return 0;
}

/* Runs check in a child (the bring-up changes the process for good) and asserts it kept
 * every promise (exit 0; else the number of the first one broken). */
static void in_child(int (*check)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(check());
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_keyholder_start_hardens_and_scrubs(void **state)
{
    (void)state;
    in_child(bring_up_and_check);
}

/* In the child: 0 when the catalog comes with the bring-up (and a missing one is refused with
 * the key dropped), else the number of the first promise broken. */
static int catalog_with_bring_up(void)
{
    const char *data = getenv("AGENTBOX_DATA_DIR");
    char *keep = data ? strdup(data) : NULL;
    clear_env();
    if (!keep || setenv("OPENROUTER_API_KEY", KEY, 1) < 0 || setenv("AGENTBOX_DATA_DIR", keep, 1))
        return 90;
    struct agentbox_config cfg;
    struct catalog cat;
    char err[ERR_MSG_MAX];
    if (supervisor_keyholder_start(&cfg, &cat, err, sizeof(err)) < 0)
        return 1;
    if (cat.n == 0 || !catalog_find(&cat, cat.models[0].id))
        return 2;
    config_free(&cfg);
    if (setenv("OPENROUTER_API_KEY", KEY, 1) < 0 || setenv("AGENTBOX_DATA_DIR", "/nonexistent", 1))
        return 91;
    if (supervisor_keyholder_start(&cfg, &cat, err, sizeof(err)) == 0)
        return 3;
    if (cfg.api_key || !strstr(err, "catalog"))
        return 4;
    free(keep);
    return 0;
}

static void test_keyholder_start_loads_the_catalog(void **state)
{
    (void)state;
    in_child(catalog_with_bring_up);
}

static void test_broker_open_without_key_is_refused(void **state)
{
    (void)state;
    struct agentbox_config cfg = {0};
    struct broker *b = (struct broker *)&cfg; /* must be reset to NULL */
    char err[ERR_MSG_MAX] = "";
    assert_int_equal(supervisor_broker_open(&cfg, NULL, SUPERVISOR_REPLAY_KEEP,
                                            ", or pass --replay FILE", &b, err, sizeof(err)),
                     -1);
    assert_null(b);
    assert_string_equal(err, "OPENROUTER_API_KEY is not set: set it, or pass --replay FILE");
}

static void test_broker_open_bad_replay_is_refused(void **state)
{
    (void)state;
    struct agentbox_config cfg = {0};
    struct broker *b = NULL;
    char err[ERR_MSG_MAX] = "";
    assert_int_equal(supervisor_broker_open(&cfg, "/nonexistent/replay.json",
                                            SUPERVISOR_REPLAY_PROBE, "", &b, err, sizeof(err)),
                     -1);
    assert_null(b);
    assert_non_null(strstr(err, "/nonexistent/replay.json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keyholder_start_hardens_and_scrubs),
        cmocka_unit_test(test_keyholder_start_loads_the_catalog),
        cmocka_unit_test(test_broker_open_without_key_is_refused),
        cmocka_unit_test(test_broker_open_bad_replay_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
