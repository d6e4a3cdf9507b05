/* Unit tests for wire/channel.c: framing round trips, byte-at-a-time delivery, and
 * refusal of hostile frames (oversized lengths, non-JSON headers, truncation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel.h"
#include "util.h"

static void test_round_trip_with_payload(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "id", 7);
    assert_int_equal(channel_send_type(sv[0], "llm", f, "payload\0x", 9), 0);
    struct channel_reader r;
    channel_reader_init(&r);
    struct channel_msg m;
    assert_int_equal(channel_recv(&r, sv[1], &m, 1000), 1);
    assert_string_equal(m.type, "llm");
    assert_int_equal(m.kind, CH_LLM);
    assert_int_equal(cJSON_GetObjectItem(m.header, "id")->valueint, 7);
    assert_int_equal(m.payload_len, 9);
    assert_memory_equal(m.payload, "payload\0x", 9);
    channel_msg_clear(&m);
    channel_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

static void test_byte_at_a_time(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int tx[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, tx), 0);
    assert_int_equal(channel_send_type(tx[0], "event", NULL, "abc", 3), 0);
    close(tx[0]);
    char frame[256];
    ssize_t n = read(tx[1], frame, sizeof(frame));
    assert_true(n > 8);
    close(tx[1]);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    struct channel_reader r;
    channel_reader_init(&r);
    struct channel_msg m;
    for (ssize_t i = 0; i < n; i++) {
        assert_int_equal(channel_read(&r, sv[1], &m), 0);
        assert_int_equal(write(sv[0], frame + i, 1), 1);
    }
    assert_int_equal(channel_read(&r, sv[1], &m), 1);
    assert_string_equal(m.type, "event");
    assert_int_equal(m.payload_len, 3);
    channel_msg_clear(&m);
    channel_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

static int feed_raw(const void *bytes, size_t len)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[0], bytes, len), (ssize_t)len);
    close(sv[0]);
    struct channel_reader r;
    channel_reader_init(&r);
    struct channel_msg m;
    errno = 0;
    int rc = channel_recv(&r, sv[1], &m, 1000);
    int e = errno;
    if (rc == 1)
        channel_msg_clear(&m);
    channel_reader_free(&r);
    close(sv[1]);
    errno = e;
    return rc;
}

static void test_hostile_frames_refused(void **state)
{
    (void)state;
    /* header length beyond the bound: refused before any allocation */
    const unsigned char huge[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    assert_int_equal(feed_raw(huge, 8), -1);
    assert_int_equal(errno, EPROTO);
    /* payload beyond the bound */
    const unsigned char bigp[8] = {0, 0, 0, 2, 0x7f, 0xff, 0xff, 0xff};
    assert_int_equal(feed_raw(bigp, 8), -1);
    assert_int_equal(errno, EPROTO);
    /* header not JSON */
    const unsigned char notjson[] = {0, 0, 0, 3, 0, 0, 0, 0, 'a', 'b', 'c'};
    assert_int_equal(feed_raw(notjson, sizeof(notjson)), -1);
    assert_int_equal(errno, EPROTO);
    /* header JSON without "t" */
    const unsigned char not [] = {0, 0, 0, 2, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(feed_raw(not, sizeof(not )), -1);
    assert_int_equal(errno, EPROTO);
    /* truncated frame then EOF */
    const unsigned char trunc[] = {0, 0, 0, 10, 0, 0, 0, 0, '{'};
    assert_int_equal(feed_raw(trunc, sizeof(trunc)), -1);
    assert_int_equal(errno, EPROTO);
    /* zero-length header */
    const unsigned char zero[8] = {0};
    assert_int_equal(feed_raw(zero, 8), -1);
    /* clean EOF between frames: errno 0 */
    assert_int_equal(feed_raw("", 0), -1);
    assert_int_equal(errno, 0);
}

static int handled;
static void count(void *ctx, struct channel_msg *m)
{
    (void)m;
    (*(int *)ctx)++;
}

/* The supervisor's table: what a cell may send, a result once; anything else, or a message
 * of the other direction, is a protocol violation that names the message. */
static void test_dispatch_table(void **state)
{
    (void)state;
    static const struct channel_rule rules[] = {
        {CH_LLM, CH_FROM_CELL, false, count},
        {CH_EVENT, CH_FROM_CELL, false, count},
        {CH_RESULT, CH_FROM_CELL, true, count},
    };
    unsigned seen = 0;
    char err[128];
    handled = 0;
    struct channel_msg m = {.type = "event", .kind = channel_type_of("event")};
    assert_int_equal(m.kind, CH_EVENT);
    assert_int_equal(channel_dispatch(rules, 3, &seen, &handled, &m, err, sizeof(err)), 0);
    assert_int_equal(channel_dispatch(rules, 3, &seen, &handled, &m, err, sizeof(err)), 0);
    m = (struct channel_msg){.type = "result", .kind = CH_RESULT};
    assert_int_equal(channel_dispatch(rules, 3, &seen, &handled, &m, err, sizeof(err)), 0);
    assert_int_equal(handled, 3);
    assert_int_equal(channel_dispatch(rules, 3, &seen, &handled, &m, err, sizeof(err)), -1);
    assert_string_equal(err, "a second 'result'");
    m = (struct channel_msg){.type = "bogus", .kind = channel_type_of("bogus")};
    assert_int_equal(m.kind, CH_UNKNOWN);
    assert_int_equal(channel_dispatch(rules, 3, &seen, &handled, &m, err, sizeof(err)), -1);
    assert_string_equal(err, "unpermitted message 'bogus'");
    /* a supervisor -> cell type from the cell, and one this table does not list */
    m = (struct channel_msg){.type = "llm_reply", .kind = CH_LLM_REPLY};
    assert_int_equal(channel_dispatch(rules, 3, &seen, &handled, &m, err, sizeof(err)), -1);
    m = (struct channel_msg){.type = "output", .kind = CH_OUTPUT};
    assert_int_equal(channel_dispatch(rules, 3, &seen, &handled, &m, err, sizeof(err)), -1);
    assert_int_equal(handled, 3);
    /* names and directions: request and answer pair up across the boundary */
    for (int t = CH_UNKNOWN + 1; t < CH_NTYPES; t++)
        assert_int_equal(channel_type_of(channel_type_name((enum channel_type)t)), t);
    assert_int_equal(channel_type_dir(CH_LLM), CH_FROM_CELL);
    assert_int_equal(channel_type_dir(CH_LLM_REPLY), CH_TO_CELL);
    assert_int_equal(channel_type_dir(CH_UNKNOWN), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_with_payload),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_hostile_frames_refused),
        cmocka_unit_test(test_dispatch_table),
    };
    return cmocka_run_group_tests_name("channel", tests, NULL, NULL);
}
