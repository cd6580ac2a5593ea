/*  held.c — the executions an engine holds (see held.h). */
#include "held.h"

#include <stdlib.h>
#include <string.h>

//  items keeps insertion order for keel_held_at (swap-remove); slots is an
//  open-addressing index (linear probing) from execution id to item: each
//  slot holds an items index + 1, 0 = empty; nslots is a power of two at
//  least twice cap, so a lookup is O(1) however many tasks an engine holds
//  (with EnginePrefetch, thousands of finished tasks may await their acks).
struct _keel_held_t {
    keel_held_task_t **items;
    size_t size, cap;
    size_t *slots;
    size_t nslots;
};

static size_t
s_hash (uint64_t id)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdULL;
    id ^= id >> 33;
    return (size_t) id;
}

//  The slot holding id, or the empty slot where it would go.
static size_t *
s_slot (const keel_held_t *self, uint64_t id)
{
    size_t mask = self->nslots - 1;
    for (size_t i = s_hash (id) & mask;; i = (i + 1) & mask) {
        size_t v = self->slots[i];
        if (!v || self->items[v - 1]->execution_id == id)
            return &self->slots[i];
    }
}

//  Empties a slot, shifting back the entries that probed past it.
static void
s_unslot (keel_held_t *self, size_t *slot)
{
    size_t mask = self->nslots - 1;
    size_t hole = (size_t) (slot - self->slots);
    self->slots[hole] = 0;
    for (size_t j = (hole + 1) & mask; self->slots[j]; j = (j + 1) & mask) {
        size_t home = s_hash (self->items[self->slots[j] - 1]->execution_id) & mask;
        //  The entry at j may move to the hole unless its home lies
        //  cyclically in (hole, j].
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            self->slots[hole] = self->slots[j];
            self->slots[j] = 0;
            hole = j;
        }
    }
}

static bool
s_reindex (keel_held_t *self, size_t nslots)
{
    size_t *slots = calloc (nslots, sizeof *slots);
    if (!slots)
        return false;
    free (self->slots);
    self->slots = slots;
    self->nslots = nslots;
    for (size_t i = 0; i < self->size; i++)
        *s_slot (self, self->items[i]->execution_id) = i + 1;
    return true;
}

keel_held_t *
keel_held_new (void)
{
    return calloc (1, sizeof (keel_held_t));
}

static void
s_free (keel_held_task_t *task)
{
    free (task->service_id);
    free (task->type);
    free (task->output);
    free (task->error);
    free (task->checkpoint);
    free (task);
}

void
keel_held_destroy (keel_held_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_held_clear (*self_p);
    free ((*self_p)->items);
    free ((*self_p)->slots);
    free (*self_p);
    *self_p = NULL;
}

static keel_held_task_t *
s_append (keel_held_t *self, uint64_t execution_id, const char *service_id, uint64_t task_id)
{
    if (keel_held_find (self, execution_id))
        return NULL;
    if (self->size == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        keel_held_task_t **items = realloc (self->items, cap * sizeof *items);
        if (!items)
            return NULL;
        self->items = items;
        self->cap = cap;
        if (!s_reindex (self, cap * 2))
            return NULL;
    }
    keel_held_task_t *task = calloc (1, sizeof *task);
    if (!task || !(task->service_id = strdup (service_id))) {
        free (task);
        return NULL;
    }
    task->execution_id = execution_id;
    task->task_id = task_id;
    self->items[self->size++] = task;
    *s_slot (self, execution_id) = self->size;
    return task;
}

keel_held_task_t *
keel_held_add (keel_held_t *self, uint64_t execution_id, const char *service_id,
                uint64_t task_id, const char *type)
{
    keel_held_task_t *task = s_append (self, execution_id, service_id, task_id);
    if (task && !(task->type = strdup (type))) {
        keel_held_remove (self, execution_id);
        return NULL;
    }
    return task;
}

keel_held_task_t *
keel_held_add_done (keel_held_t *self, const Keel__Result *result)
{
    keel_held_task_t *task = s_append (self, result->execution_id, result->service_id,
                                  result->task_id);
    if (!task)
        return NULL;
    bool ok = result->status == KEEL__TASK_STATUS__STATUS_OK;
    const uint8_t *data = ok ? result->output.data : (const uint8_t *) result->error;
    size_t size = ok ? result->output.len : (result->error ? strlen (result->error) : 0);
    if (!keel_held_finish (task, ok, data, size, (int64_t) result->run_ms)) {
        keel_held_remove (self, result->execution_id);
        return NULL;
    }
    task->permanent = !ok && result->has_permanent && result->permanent;
    return task;
}

keel_held_task_t *
keel_held_find (const keel_held_t *self, uint64_t execution_id)
{
    if (!self->nslots)
        return NULL;
    size_t v = *s_slot (self, execution_id);
    return v ? self->items[v - 1] : NULL;
}

bool
keel_held_finish (keel_held_task_t *task, bool ok, const uint8_t *data, size_t size, int64_t run_ms)
{
    task->done = true;
    task->ok = ok;
    task->sent = false;
    task->run_ms = run_ms > 0 ? (uint64_t) run_ms : 0;
    if (ok) {
        task->output = malloc (size ? size : 1);
        if (!task->output)
            return false;
        if (size)
            memcpy (task->output, data, size);
        task->output_size = size;
        return true;
    }
    if (size > KEEL_HELD_ERROR_MAX) {
        size = KEEL_HELD_ERROR_MAX;
        //  Do not cut a UTF-8 sequence in half.
        while (size > 0 && (data[size] & 0xC0) == 0x80)
            size--;
    }
    task->error = malloc (size + 1);
    if (!task->error)
        return false;
    for (size_t i = 0; i < size; i++)
        task->error[i] = data[i] ? (char) data[i] : '?';
    task->error[size] = 0;
    return true;
}

bool
keel_held_remove (keel_held_t *self, uint64_t execution_id)
{
    if (!self->nslots)
        return false;
    size_t *slot = s_slot (self, execution_id);
    if (!*slot)
        return false;
    size_t i = *slot - 1;
    s_unslot (self, slot);
    s_free (self->items[i]);
    self->items[i] = self->items[--self->size];
    if (i < self->size)
        *s_slot (self, self->items[i]->execution_id) = i + 1;
    return true;
}

void
keel_held_clear (keel_held_t *self)
{
    for (size_t i = 0; i < self->size; i++)
        s_free (self->items[i]);
    self->size = 0;
    if (self->slots)
        memset (self->slots, 0, self->nslots * sizeof *self->slots);
}

size_t
keel_held_size (const keel_held_t *self)
{
    return self->size;
}

size_t
keel_held_running (const keel_held_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->size; i++)
        if (!self->items[i]->done)
            n++;
    return n;
}

keel_held_task_t *
keel_held_at (const keel_held_t *self, size_t index)
{
    return index < self->size ? self->items[index] : NULL;
}

void
keel_held_result_view (const keel_held_task_t *task, Keel__Result *result)
{
    keel__result__init (result);
    result->service_id = task->service_id;
    result->has_task_id = true;
    result->task_id = task->task_id;
    result->has_execution_id = true;
    result->execution_id = task->execution_id;
    result->has_status = true;
    result->status = task->ok ? KEEL__TASK_STATUS__STATUS_OK : KEEL__TASK_STATUS__STATUS_FAILED;
    if (task->ok) {
        result->has_output = true;
        result->output.data = task->output;
        result->output.len = task->output_size;
    }
    else {
        result->error = task->error;
        result->has_permanent = task->permanent;
        result->permanent = task->permanent;
    }
    result->has_run_ms = true;
    result->run_ms = task->run_ms;
}

bool
keel_held_set_checkpoint (keel_held_task_t *task, const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc (size ? size : 1);
    if (!copy)
        return false;
    if (size)
        memcpy (copy, data, size);
    free (task->checkpoint);
    task->checkpoint = copy;
    task->checkpoint_size = size;
    task->checkpoint_pending = true;
    return true;
}
