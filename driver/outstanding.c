/*  outstanding.c — one service's tasks between submit and result.

    slots[off + (id - base)] holds task id for base <= id < next_id (by
    value: no allocation per task), not held once its result arrived. base
    advances past completed tasks, so the window spans only from the oldest
    task still waiting to the newest.
    cursor is the lowest id that may still need sending.
*/
#include "outstanding.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *input;
    size_t size;
    bool held;     // waits for its result
    bool sent;     // sent to the current broker
    bool accepted; // the current broker Accepted it
    bool alone;    // ... on its own store alone (a pair's active without its peer)
} s_task_t;

struct _keel_outstanding_t {
    s_task_t *slots;
    size_t cap;        // slots allocated
    size_t off;        // index of id `base` in slots
    uint64_t base;     // lowest id that may be held
    uint64_t next_id;  // tasks ever added
    uint64_t cursor;   // lowest id that may be unsent
    size_t count;      // held tasks
    size_t unaccepted; // held, sent, not accepted
    size_t unsent;     // held, not sent
};

static s_task_t *
s_lookup (const keel_outstanding_t *self, uint64_t task_id)
{
    if (task_id < self->base || task_id >= self->next_id)
        return NULL;
    s_task_t *task = &self->slots[self->off + (size_t) (task_id - self->base)];
    return task->held ? task : NULL;
}

//  Advances base past completed tasks at the front of the window.
static void
s_trim (keel_outstanding_t *self)
{
    while (self->base < self->next_id && !self->slots[self->off].held) {
        self->base++;
        self->off++;
    }
    if (self->base == self->next_id)
        self->off = 0; // empty window: start over at the front
    if (self->cursor < self->base)
        self->cursor = self->base;
}

static void
s_forget (keel_outstanding_t *self, uint64_t task_id)
{
    size_t index = self->off + (size_t) (task_id - self->base);
    s_task_t *task = &self->slots[index];
    if (task->sent && !task->accepted)
        self->unaccepted--;
    if (!task->sent)
        self->unsent--;
    free (task->input);
    *task = (s_task_t) { 0 };
    self->count--;
    s_trim (self);
}

keel_outstanding_t *
keel_outstanding_new (void)
{
    return calloc (1, sizeof (keel_outstanding_t));
}

void
keel_outstanding_destroy (keel_outstanding_t **self_p)
{
    assert (self_p);
    keel_outstanding_t *self = *self_p;
    if (!self)
        return;
    size_t len = (size_t) (self->next_id - self->base);
    for (size_t i = 0; i < len; i++)
        free (self->slots[self->off + i].input); // NULL when not held
    free (self->slots);
    free (self);
    *self_p = NULL;
}

keel_err
keel_outstanding_add (keel_outstanding_t *self, uint64_t task_id, uint8_t *input, size_t size)
{
    assert (self);
    if (task_id != self->next_id) {
        free (input);
        return KEEL_ERR_INVALID;
    }
    size_t len = (size_t) (self->next_id - self->base);
    if (self->off + len == self->cap) {
        if (self->off > 0 && self->off >= self->cap / 2) {
            memmove (self->slots, self->slots + self->off, len * sizeof (s_task_t));
            self->off = 0;
        }
        else {
            size_t cap = self->cap ? self->cap * 2 : 64;
            s_task_t *slots = realloc (self->slots, cap * sizeof (s_task_t));
            if (!slots) {
                free (input);
                return KEEL_ERR_NOMEM;
            }
            self->slots = slots;
            self->cap = cap;
        }
    }
    self->slots[self->off + len] = (s_task_t) { .input = input, .size = size, .held = true };
    self->next_id++;
    self->count++;
    self->unsent++;
    return KEEL_OK;
}

uint64_t
keel_outstanding_next_id (const keel_outstanding_t *self)
{
    assert (self);
    return self->next_id;
}

size_t
keel_outstanding_count (const keel_outstanding_t *self)
{
    assert (self);
    return self->count;
}

size_t
keel_outstanding_unaccepted (const keel_outstanding_t *self)
{
    assert (self);
    return self->unaccepted;
}

bool
keel_outstanding_all_accepted (const keel_outstanding_t *self)
{
    assert (self);
    return self->unsent == 0 && self->unaccepted == 0;
}

bool
keel_outstanding_has_unsent (const keel_outstanding_t *self)
{
    assert (self);
    return self->unsent > 0;
}

keel_outstanding_verdict_t
keel_outstanding_complete (keel_outstanding_t *self, uint64_t task_id)
{
    assert (self);
    if (task_id >= self->next_id)
        return KEEL_OUTSTANDING_UNKNOWN;
    if (!s_lookup (self, task_id))
        return KEEL_OUTSTANDING_DUPLICATE;
    s_forget (self, task_id);
    return KEEL_OUTSTANDING_NEW;
}

bool
keel_outstanding_accept (keel_outstanding_t *self, uint64_t task_id, bool alone)
{
    assert (self);
    s_task_t *task = s_lookup (self, task_id);
    if (!task)
        return false;
    if (task->accepted) {
        task->alone = task->alone && alone; // once mirrored, mirrored
        return false;
    }
    task->alone = alone;
    if (task->sent)
        self->unaccepted--;
    else
        self->unsent--; // accepted from an earlier send: no need to send again
    task->sent = true;
    task->accepted = true;
    return true;
}

void
keel_outstanding_unsend (keel_outstanding_t *self, uint64_t task_id)
{
    assert (self);
    s_task_t *task = s_lookup (self, task_id);
    if (!task || !task->sent)
        return;
    if (!task->accepted)
        self->unaccepted--;
    task->sent = false;
    task->accepted = false;
    self->unsent++;
    if (task_id < self->cursor)
        self->cursor = task_id;
}

void
keel_outstanding_resend_unaccepted (keel_outstanding_t *self)
{
    assert (self);
    size_t len = (size_t) (self->next_id - self->base);
    for (size_t i = 0; i < len; i++) {
        s_task_t *task = &self->slots[self->off + i];
        if (task->held && task->sent && !task->accepted) {
            task->sent = false;
            self->unsent++;
        }
    }
    self->unaccepted = 0;
    self->cursor = self->base;
}

void
keel_outstanding_forget_alone (keel_outstanding_t *self)
{
    assert (self);
    size_t len = (size_t) (self->next_id - self->base);
    for (size_t i = 0; i < len; i++) {
        s_task_t *task = &self->slots[self->off + i];
        if (task->held && task->accepted && task->alone) {
            task->accepted = false;
            task->alone = false;
            task->sent = false;
            self->unsent++;
        }
    }
    if (self->cursor > self->base)
        self->cursor = self->base;
}

void
keel_outstanding_forget_accepted (keel_outstanding_t *self)
{
    assert (self);
    size_t len = (size_t) (self->next_id - self->base);
    for (size_t i = 0; i < len; i++) {
        s_task_t *task = &self->slots[self->off + i];
        if (task->held) {
            task->sent = false;
            task->accepted = false;
        }
    }
    self->unaccepted = 0;
    self->unsent = self->count;
    self->cursor = self->base;
}

size_t
keel_outstanding_take (keel_outstanding_t *self, size_t max, keel_outstanding_ref_t *refs)
{
    assert (self);
    size_t n = 0;
    //  Bounded by the window: the cursor only moves forward here.
    while (n < max && self->cursor < self->next_id) {
        s_task_t *task = s_lookup (self, self->cursor);
        if (task && !task->sent) {
            task->sent = true;
            self->unsent--;
            self->unaccepted++;
            refs[n].task_id = self->cursor;
            refs[n].input = task->input;
            refs[n].size = task->size;
            n++;
        }
        self->cursor++;
    }
    return n;
}

//  True when id is in except[*k_p..) (sorted); moves *k_p past the ids below.
static bool
s_excepted (const uint64_t *except, size_t nexcept, size_t *k_p, uint64_t id)
{
    while (*k_p < nexcept && except[*k_p] < id)
        ++*k_p;
    return *k_p < nexcept && except[*k_p] == id;
}

void
keel_outstanding_delivered (const keel_outstanding_t *self, uint64_t *from_p,
                            keel_ranges_writer_t *w, const uint64_t *except, size_t nexcept)
{
    assert (self && from_p && w);
    uint64_t id = *from_p;
    size_t k = 0;
    while (id < self->next_id) {
        while (id < self->next_id && (s_lookup (self, id) || s_excepted (except, nexcept, &k, id)))
            id++; // held (still waits for its result), or not kept yet
        if (id == self->next_id)
            break;
        uint64_t lo = id;
        uint64_t stop = k < nexcept && except[k] < self->next_id ? except[k] : self->next_id;
        if (id < self->base)
            id = self->base < stop ? self->base : stop; // nothing below base is held
        while (id < stop && !s_lookup (self, id))
            id++;
        if (!keel_ranges_writer_add (w, lo, id)) {
            *from_p = lo;
            return;
        }
    }
    *from_p = self->next_id;
}

bool
keel_outstanding_pop (keel_outstanding_t *self, uint64_t *task_id_p)
{
    assert (self && task_id_p);
    if (self->count == 0)
        return false;
    s_trim (self);
    *task_id_p = self->base; // after a trim the front slot is held
    s_forget (self, self->base);
    return true;
}
