/* Unit tests for daemon/taskstore.c: lookup by id through growth, submission order,
 * status counts, removal from the middle, and retention picking the oldest finished task. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "taskstore.h"

static void test_store(void **state)
{
    (void)state;
    struct taskstore s;
    assert_int_equal(taskstore_init(&s), 0);
    char id[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof(id), "t%d", i);
        assert_non_null(taskstore_add(&s, id));
    }
    assert_int_equal(s.count, 2000);
    assert_int_equal(s.by_status[TS_QUEUED], 2000);
    for (int i = 0; i < 2000; i += 7) {
        snprintf(id, sizeof(id), "t%d", i);
        struct stask *t = taskstore_find(&s, id);
        assert_non_null(t);
        assert_string_equal(t->id, id);
    }
    assert_null(taskstore_find(&s, "t2000"));
    /* nothing finished: nothing to evict */
    assert_null(taskstore_evictable(&s, 0));
    struct stask *t5 = taskstore_find(&s, "t5"), *t9 = taskstore_find(&s, "t9");
    taskstore_set_status(&s, t9, TS_RUNNING);
    taskstore_set_status(&s, t9, TS_SUCCEEDED);
    taskstore_set_status(&s, t5, TS_CANCELLED);
    assert_int_equal(s.by_status[TS_QUEUED], 1998);
    assert_int_equal(s.by_status[TS_RUNNING], 0);
    assert_null(taskstore_evictable(&s, 2));
    assert_ptr_equal(taskstore_evictable(&s, 1), t5); /* the oldest finished */
    taskstore_remove(&s, t5);
    assert_null(taskstore_find(&s, "t5"));
    assert_int_equal(s.by_status[TS_CANCELLED], 0);
    assert_null(taskstore_evictable(&s, 1));
    /* order kept around the hole */
    assert_string_equal(taskstore_find(&s, "t4")->next->id, "t6");
    assert_string_equal(s.head->id, "t0");
    assert_string_equal(s.tail->id, "t1999");
    taskstore_remove(&s, s.head);
    taskstore_remove(&s, s.tail);
    assert_string_equal(s.head->id, "t1");
    assert_string_equal(s.tail->id, "t1998");
    assert_int_equal(s.count, 1997);
    taskstore_free(&s);
}

static void test_status_names(void **state)
{
    (void)state;
    for (int i = TS_SUCCEEDED; i < TS_NSTATUS; i++) {
        assert_int_equal(task_status_parse(task_status_name((enum task_status)i)), i);
        assert_true(task_status_terminal((enum task_status)i));
    }
    assert_int_equal(task_status_parse("running"), -1);
    assert_int_equal(task_status_parse("bogus"), -1);
    assert_false(task_status_terminal(TS_RUNNING));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests_name("taskstore", tests, NULL, NULL);
}
