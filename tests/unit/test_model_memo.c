/* Unit tests for llm/model_memo.c: a model found unavailable stays dead for its task,
 * for every task till its TTL, and the tables stay bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>

#include "model_memo.h"

static void test_task_and_ttl(void **state)
{
    (void)state;
    struct model_memo *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    assert_false(model_memo_dead(m, "t1", "a/model", 0));
    model_memo_mark(m, "t1", "a/model", 100.0, 10.0);
    assert_true(model_memo_dead(m, "t1", "a/model", 101.0));
    assert_true(model_memo_dead(m, "t2", "a/model", 109.0));  /* shared within the TTL */
    assert_false(model_memo_dead(m, "t2", "a/model", 110.5)); /* not after it */
    assert_true(model_memo_dead(m, "t1", "a/model", 1e6));    /* the task itself: always */
    assert_false(model_memo_dead(m, "t1", "b/model", 101.0));
    model_memo_mark(m, "t3", "b/model", 200.0, 0); /* TTL 0: this task only */
    assert_true(model_memo_dead(m, "t3", "b/model", 200.0));
    assert_false(model_memo_dead(m, "t1", "b/model", 200.0));
    free(m);
}

static void test_bounded(void **state)
{
    (void)state;
    struct model_memo *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    char task[32], model[32];
    for (int i = 0; i < MODEL_MEMO_TASKS + 10; i++) {
        snprintf(task, sizeof(task), "task-%d", i);
        model_memo_mark(m, task, "x/model", 0, 0);
    }
    assert_int_equal(m->ntasks, MODEL_MEMO_TASKS);
    assert_false(model_memo_dead(m, "task-0", "x/model", 1)); /* the oldest was forgotten */
    assert_true(model_memo_dead(m, "task-1033", "x/model", 1));
    for (int i = 0; i < MODEL_MEMO_MODELS + 5; i++) {
        snprintf(model, sizeof(model), "m/%d", i);
        model_memo_mark(m, "t", model, 0, 100);
    }
    assert_int_equal(m->nmodels, MODEL_MEMO_MODELS);
    assert_false(model_memo_dead(m, "t", "m/66", 1)); /* no slot: asked again, never refused */
    assert_true(model_memo_dead(m, "t", "m/3", 1));
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_and_ttl),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
