/* Unit tests for cell_record_to_json (sandbox/cell_record.c): the cell record's field names and
 * types, nulls where a value does not apply, feature names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cell.h"
#include "json.h"
#include "util.h"

static bool array_has(const cJSON *a, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0)
            return true;
    }
    return false;
}

static void test_exited_record_has_spec_fields(void **state)
{
    (void)state;
    struct cell_record r = {.status = CELL_EXITED,
                            .has_exit_code = true,
                            .exit_code = 3,
                            .wall_s = 0.0123456789,
                            .cpu_s = 0.5,
                            .max_rss_kb = 2048,
                            .disk_bytes = 8192,
                            .enforced = (1u << CELL_F_USERNS) | (1u << CELL_F_SECCOMP) |
                                        (1u << CELL_F_DISK_QUOTA),
                            .unavailable = 1u << CELL_F_MEMORY,
                            .workspace_seed = "copy",
                            .cgroup = "v1",
                            .landlock_abi = 7};
    cleanup_json cJSON *j = cell_record_to_json(&r);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "exited");
    assert_int_equal(cJSON_GetObjectItem(j, "exit_code")->valueint, 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "signal")));
    assert_true(cJSON_GetObjectItem(j, "wall_s")->valuedouble == 0.012346);
    assert_int_equal(cJSON_GetObjectItem(j, "max_rss_kb")->valueint, 2048);
    assert_int_equal(cJSON_GetObjectItem(j, "disk_bytes")->valueint, 8192);
    cJSON *enf = cJSON_GetObjectItem(j, "enforced");
    assert_true(cJSON_IsArray(enf));
    assert_int_equal(cJSON_GetArraySize(enf), 3);
    assert_true(array_has(enf, "userns") && array_has(enf, "seccomp") &&
                array_has(enf, "disk_quota"));
    cJSON *un = cJSON_GetObjectItem(j, "unavailable");
    assert_int_equal(cJSON_GetArraySize(un), 1);
    assert_true(array_has(un, "memory"));
    assert_string_equal(cJSON_GetObjectItem(j, "workspace_seed")->valuestring, "copy");
    assert_string_equal(cJSON_GetObjectItem(j, "cgroup")->valuestring, "v1");
}

static void test_signaled_and_timeout_have_null_exit_code(void **state)
{
    (void)state;
    struct cell_record r = {.status = CELL_SIGNALED, .signal = 9};
    cleanup_json cJSON *j = cell_record_to_json(&r);
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "signaled");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "exit_code")));
    assert_int_equal(cJSON_GetObjectItem(j, "signal")->valueint, 9);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "workspace_seed")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "enforced")), 0);

    struct cell_record t = {.status = CELL_TIMEOUT, .wall_s = -1};
    cleanup_json cJSON *k = cell_record_to_json(&t);
    assert_string_equal(cJSON_GetObjectItem(k, "status")->valuestring, "timeout");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(k, "exit_code")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(k, "signal")));
    assert_true(cJSON_GetObjectItem(k, "wall_s")->valuedouble == 0); /* never negative */
}

static void test_status_and_feature_names(void **state)
{
    (void)state;
    assert_string_equal(cell_status_name(CELL_MEMORY), "memory");
    assert_string_equal(cell_status_name(CELL_SETUP_ERROR), "setup_error");
    for (int f = 0; f < CELL_F_COUNT; f++) {
        const char *n = cell_feature_name((enum cell_feature)f);
        assert_non_null(n);
        assert_true(strlen(n) > 0 && strcmp(n, "unknown") != 0);
        for (int g = 0; g < f; g++)
            assert_string_not_equal(n, cell_feature_name((enum cell_feature)g));
    }
    assert_string_equal(cell_feature_name(CELL_F_MEMORY_RLIMIT), "memory_rlimit");
    assert_string_equal(cell_feature_name(CELL_F_COUNT), "unknown");
    /* every bit the record can hold fits its 32-bit masks */
    assert_true(CELL_F_COUNT <= 32);
}

static void test_all_features_round_trip(void **state)
{
    (void)state;
    struct cell_record r = {
        .status = CELL_MEMORY, .signal = 9, .enforced = (1u << CELL_F_COUNT) - 1};
    cleanup_json cJSON *j = cell_record_to_json(&r);
    cJSON *enf = cJSON_GetObjectItem(j, "enforced");
    assert_int_equal(cJSON_GetArraySize(enf), CELL_F_COUNT);
    for (int f = 0; f < CELL_F_COUNT; f++)
        assert_true(array_has(enf, cell_feature_name((enum cell_feature)f)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exited_record_has_spec_fields),
        cmocka_unit_test(test_signaled_and_timeout_have_null_exit_code),
        cmocka_unit_test(test_status_and_feature_names),
        cmocka_unit_test(test_all_features_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
