/* taskstore: see taskstore.h. A chained hash on the id (FNV-1a), doubled when it fills. */
#include "taskstore.h"

#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static size_t hash(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return (size_t)h;
}

int taskstore_init(struct taskstore *s)
{
    memset(s, 0, sizeof(*s));
    s->nbuckets = 256;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    return s->buckets ? 0 : -1;
}

static void free_task(struct stask *t)
{
    if (t->parsed)
        task_free(&t->task);
    cJSON_Delete(t->task_json);
    cJSON_Delete(t->result);
    free(t);
}

void taskstore_free(struct taskstore *s)
{
    for (struct stask *t = s->head, *n; t; t = n) {
        n = t->next;
        free_task(t);
    }
    free(s->buckets);
    memset(s, 0, sizeof(*s));
}

struct stask *taskstore_find(const struct taskstore *s, const char *id)
{
    for (struct stask *t = s->buckets[hash(id) & (s->nbuckets - 1)]; t; t = t->hnext)
        if (strcmp(t->id, id) == 0)
            return t;
    return NULL;
}

static void grow(struct taskstore *s)
{
    size_t n = s->nbuckets * 2;
    struct stask **b = calloc(n, sizeof(*b));
    if (!b)
        return; /* longer chains, still correct */
    for (struct stask *t = s->head; t; t = t->next) {
        size_t i = hash(t->id) & (n - 1);
        t->hnext = b[i];
        b[i] = t;
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

struct stask *taskstore_add(struct taskstore *s, const char *id)
{
    struct stask *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->status = TS_QUEUED;
    t->owner = -1;
    if (s->count + 1 > s->nbuckets)
        grow(s);
    size_t i = hash(id) & (s->nbuckets - 1);
    t->hnext = s->buckets[i];
    s->buckets[i] = t;
    t->prev = s->tail;
    if (s->tail)
        s->tail->next = t;
    else
        s->head = t;
    s->tail = t;
    s->count++;
    s->by_status[TS_QUEUED]++;
    return t;
}

void taskstore_set_status(struct taskstore *s, struct stask *t, enum task_status st)
{
    s->by_status[t->status]--;
    t->status = st;
    s->by_status[st]++;
}

void taskstore_remove(struct taskstore *s, struct stask *t)
{
    struct stask **pp = &s->buckets[hash(t->id) & (s->nbuckets - 1)];
    while (*pp && *pp != t)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = t->hnext;
    if (t->prev)
        t->prev->next = t->next;
    else
        s->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        s->tail = t->prev;
    s->count--;
    s->by_status[t->status]--;
    free_task(t);
}

struct stask *taskstore_evictable(const struct taskstore *s, unsigned long retain)
{
    unsigned long finished = 0;
    for (int i = TS_SUCCEEDED; i < TS_NSTATUS; i++)
        finished += s->by_status[i];
    if (finished <= retain)
        return NULL;
    for (struct stask *t = s->head; t; t = t->next)
        if (task_status_terminal(t->status))
            return t;
    return NULL;
}
