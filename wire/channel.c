/* channel: see channel.h. The reader never allocates more than the bounds in channel.h,
 * whatever the peer claims, and rejects a header that is not a JSON object with a "t". */
#include "channel.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "util.h"

static const struct {
    const char *name;
    enum channel_dir dir;
} types[CH_NTYPES] = {
    [CH_TASK] = {"task", CH_TO_CELL},           [CH_LLM] = {"llm", CH_FROM_CELL},
    [CH_LLM_REPLY] = {"llm_reply", CH_TO_CELL}, [CH_CANCEL] = {"cancel", CH_TO_CELL},
    [CH_EVENT] = {"event", CH_FROM_CELL},       [CH_OUTPUT] = {"output", CH_FROM_CELL},
    [CH_PATCH] = {"patch", CH_FROM_CELL},       [CH_RESULT] = {"result", CH_FROM_CELL},
};

const char *channel_type_name(enum channel_type t)
{
    return t > CH_UNKNOWN && t < CH_NTYPES ? types[t].name : "?";
}

enum channel_type channel_type_of(const char *name)
{
    for (int i = CH_UNKNOWN + 1; name && i < CH_NTYPES; i++)
        if (strcmp(types[i].name, name) == 0)
            return (enum channel_type)i;
    return CH_UNKNOWN;
}

int channel_type_dir(enum channel_type t)
{
    return t > CH_UNKNOWN && t < CH_NTYPES ? (int)types[t].dir : -1;
}

int channel_dispatch(const struct channel_rule *rules, size_t n, unsigned *seen, void *ctx,
                     struct channel_msg *m, char *err, size_t errsz)
{
    const struct channel_rule *rule = NULL;
    for (size_t i = 0; i < n && !rule; i++)
        if (rules[i].type == m->kind && m->kind != CH_UNKNOWN &&
            channel_type_dir(m->kind) == (int)rules[i].dir)
            rule = &rules[i];
    if (!rule)
        return errf(err, errsz, "unpermitted message '%.40s'", m->type ? m->type : "");
    unsigned bit = 1u << m->kind;
    if (rule->once && (*seen & bit))
        return errf(err, errsz, "a second '%s'", channel_type_name(m->kind));
    *seen |= bit;
    rule->handler(ctx, m);
    return 0;
}

int channel_send_kind(int fd, enum channel_type kind, cJSON *fields, const void *payload,
                      size_t payload_len)
{
    return channel_send_type(fd, channel_type_name(kind), fields, payload, payload_len);
}

void channel_msg_clear(struct channel_msg *m)
{
    cJSON_Delete(m->header);
    free(m->payload);
    memset(m, 0, sizeof(*m));
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int send_iov(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        /* MSG_NOSIGNAL: a peer that died must give EPIPE, not kill the supervisor */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                (void)poll(&p, 1, 1000);
                continue;
            }
            return -1;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int channel_send(int fd, const cJSON *header, const void *payload, size_t payload_len)
{
    cleanup_free char *text = cJSON_PrintUnformatted(header);
    if (!text)
        return -1;
    size_t hlen = strlen(text);
    if (hlen > CHANNEL_HEADER_MAX_BYTES || payload_len > CHANNEL_PAYLOAD_MAX_BYTES) {
        errno = EMSGSIZE;
        return -1;
    }
    unsigned char head[8];
    put_u32(head, (uint32_t)hlen);
    put_u32(head + 4, (uint32_t)payload_len);
    struct iovec iov[3] = {{head, 8}, {text, hlen}, {(void *)payload, payload_len}};
    return send_iov(fd, iov, payload_len ? 3 : 2);
}

int channel_send_type(int fd, const char *type, cJSON *fields, const void *payload,
                      size_t payload_len)
{
    cJSON *h = fields ? fields : cJSON_CreateObject();
    if (!h)
        return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(h, "t");
    if (!cJSON_AddStringToObject(h, "t", type)) {
        cJSON_Delete(h);
        return -1;
    }
    int rc = channel_send(fd, h, payload, payload_len);
    cJSON_Delete(h);
    return rc;
}

void channel_reader_init(struct channel_reader *r)
{
    memset(r, 0, sizeof(*r));
}

void channel_reader_free(struct channel_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

static int finish_frame(struct channel_reader *r, struct channel_msg *msg)
{
    char saved = r->buf[r->hlen];
    r->buf[r->hlen] = '\0';
    cJSON *h = cJSON_ParseWithLength(r->buf, r->hlen);
    r->buf[r->hlen] = saved;
    const cJSON *t = h ? cJSON_GetObjectItemCaseSensitive(h, "t") : NULL;
    if (!cJSON_IsObject(h) || !cJSON_IsString(t)) {
        cJSON_Delete(h);
        errno = EPROTO;
        return -1;
    }
    memset(msg, 0, sizeof(*msg));
    msg->header = h;
    msg->type = t->valuestring;
    msg->kind = channel_type_of(msg->type);
    if (r->plen) {
        /* hand the frame buffer over instead of copying a payload that may be megabytes:
         * the payload becomes the buffer's start (a move within it, no new allocation) */
        memmove(r->buf, r->buf + r->hlen, r->plen);
        r->buf[r->plen] = '\0';
        msg->payload = r->buf;
        msg->payload_len = r->plen;
    } else {
        free(r->buf);
    }
    r->buf = NULL;
    r->head_got = r->got = 0;
    return 1;
}

int channel_read(struct channel_reader *r, int fd, struct channel_msg *msg)
{
    for (;;) {
        if (r->head_got < 8) {
            ssize_t n = read(fd, r->head + r->head_got, 8 - r->head_got);
            if (n == 0) {
                errno = r->head_got ? EPROTO : 0;
                return -1;
            }
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return errno == EAGAIN ? 0 : -1;
            }
            r->head_got += (size_t)n;
            if (r->head_got < 8)
                continue;
            r->hlen = get_u32(r->head);
            r->plen = get_u32(r->head + 4);
            if (r->hlen == 0 || r->hlen > CHANNEL_HEADER_MAX_BYTES ||
                r->plen > CHANNEL_PAYLOAD_MAX_BYTES) {
                errno = EPROTO;
                return -1;
            }
            r->buf = malloc((size_t)r->hlen + r->plen + 1);
            if (!r->buf)
                return -1;
            r->got = 0;
        }
        size_t total = (size_t)r->hlen + r->plen;
        if (r->got == total)
            return finish_frame(r, msg);
        ssize_t n = read(fd, r->buf + r->got, total - r->got);
        if (n == 0) {
            errno = EPROTO;
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        r->got += (size_t)n;
    }
}

int channel_recv(struct channel_reader *r, int fd, struct channel_msg *msg, int timeout_ms)
{
    double deadline = timeout_ms >= 0 ? monotonic_s() + timeout_ms / 1000.0 : 0;
    for (;;) {
        int left = -1;
        if (timeout_ms >= 0) {
            double d = deadline - monotonic_s();
            if (d <= 0)
                return 0;
            left = (int)(d * 1000) + 1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, left);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (pr == 0)
            continue;
        int rc = channel_read(r, fd, msg);
        if (rc != 0)
            return rc;
    }
}
