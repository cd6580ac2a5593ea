/*  held.c — the executions an engine holds (see held.h). */
#include "held.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "wire_build.h"

//  items keeps insertion order for keel_held_at (swap-remove); slots is an
//  open-addressing index (linear probing) from execution id to item: each
//  slot holds the id and its items index + 1 (v, 0 = empty), so a probe
//  reads the index alone, not the task; nslots is a power of two at least
//  twice cap, so a lookup is O(1) however many tasks an engine holds (with
//  prefetch, thousands of finished tasks may await their acks).
typedef struct {
    uint64_t id;
    size_t v;
} s_slot_t;

struct _keel_held_t {
    keel_held_task_t **items;
    size_t size, cap;
    s_slot_t *slots;
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
static s_slot_t *
s_slot (const keel_held_t *self, uint64_t id)
{
    size_t mask = self->nslots - 1;
    for (size_t i = s_hash (id) & mask;; i = (i + 1) & mask) {
        s_slot_t *slot = &self->slots[i];
        if (!slot->v || slot->id == id)
            return slot;
    }
}

static void
s_set_slot (keel_held_t *self, uint64_t id, size_t v)
{
    s_slot_t *slot = s_slot (self, id);
    slot->id = id;
    slot->v = v;
}

//  Empties a slot, shifting back the entries that probed past it.
static void
s_unslot (keel_held_t *self, s_slot_t *slot)
{
    size_t mask = self->nslots - 1;
    size_t hole = (size_t) (slot - self->slots);
    self->slots[hole].v = 0;
    for (size_t j = (hole + 1) & mask; self->slots[j].v; j = (j + 1) & mask) {
        size_t home = s_hash (self->slots[j].id) & mask;
        //  The entry at j may move to the hole unless its home lies
        //  cyclically in (hole, j].
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            self->slots[hole] = self->slots[j];
            self->slots[j].v = 0;
            hole = j;
        }
    }
}

static bool
s_reindex (keel_held_t *self, size_t nslots)
{
    s_slot_t *slots = calloc (nslots, sizeof *slots);
    if (!slots)
        return false;
    free (self->slots);
    self->slots = slots;
    self->nslots = nslots;
    for (size_t i = 0; i < self->size; i++)
        s_set_slot (self, self->items[i]->execution_id, i + 1);
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
    s_set_slot (self, execution_id, self->size);
    return task;
}

keel_held_task_t *
keel_held_add (keel_held_t *self, uint64_t execution_id, const char *service_id, uint64_t task_id,
               const char *type)
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
    keel_held_task_t *task =
        s_append (self, result->execution_id, result->service_id, result->task_id);
    if (!task)
        return NULL;
    bool ok = result->status == KEEL__TASK_STATUS__STATUS_OK;
    const uint8_t *data = ok ? result->output.data : (const uint8_t *) result->error;
    size_t size = ok ? result->output.len : (result->error ? strlen (result->error) : 0);
    int64_t run_us = (int64_t) (result->has_run_us ? result->run_us : result->run_ms * 1000);
    if (!keel_held_finish (task, ok, data, size, run_us)) {
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
    size_t v = s_slot (self, execution_id)->v;
    return v ? self->items[v - 1] : NULL;
}

bool
keel_held_finish (keel_held_task_t *task, bool ok, const uint8_t *data, size_t size, int64_t run_us)
{
    if (!keel_held_step (task, KEEL_HELD_EV_FINISHED))
        return false;
    task->ok = ok;
    task->run_us = run_us > 0 ? (uint64_t) run_us : 0;
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
    s_slot_t *slot = s_slot (self, execution_id);
    if (!slot->v)
        return false;
    size_t i = slot->v - 1;
    s_unslot (self, slot);
    s_free (self->items[i]);
    self->items[i] = self->items[--self->size];
    if (i < self->size)
        s_slot (self, self->items[i]->execution_id)->v = i + 1;
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
        if (self->items[i]->state == KEEL_HELD_RUNNING)
            n++;
    return n;
}

size_t
keel_held_running_ids (const keel_held_t *self, uint64_t *ids, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < self->size && n < max; i++)
        if (self->items[i]->state == KEEL_HELD_RUNNING)
            ids[n++] = self->items[i]->execution_id;
    return n;
}

void
keel_held_remove_running (keel_held_t *self)
{
    for (size_t i = self->size; i > 0; i--)
        if (self->items[i - 1]->state == KEEL_HELD_RUNNING)
            keel_held_remove (self, self->items[i - 1]->execution_id);
}

keel_held_task_t *
keel_held_at (const keel_held_t *self, size_t index)
{
    return index < self->size ? self->items[index] : NULL;
}

void
keel_held_result_view (const keel_held_task_t *task, Keel__Result *result)
{
    keel_item_result (result,
                      &(keel_result_args_t) { .service_id = task->service_id,
                                              .task_id = task->task_id,
                                              .execution_id = task->execution_id,
                                              .status = task->ok ? KEEL__TASK_STATUS__STATUS_OK
                                                                 : KEEL__TASK_STATUS__STATUS_FAILED,
                                              .output = task->output,
                                              .output_size = task->output_size,
                                              .error = task->error,
                                              .permanent = task->permanent,
                                              .run_us = task->run_us });
}

bool
keel_held_set_checkpoint (keel_held_task_t *task, const uint8_t *data, size_t size)
{
    if (task->state != KEEL_HELD_RUNNING)
        return false;
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

size_t
keel_held_result_bytes (const keel_held_task_t *task)
{
    return task->output_size + (task->error ? strlen (task->error) : 0);
}

// ------------------------------------------------------------ the lifecycle

static const char *s_state_names[] = { "running", "done", "in-login", "sent", "acked" };
static const char *s_event_names[] = { "finished",  "sent",         "spooled",
                                       "carried",   "left-out",     "held",
                                       "logged-in", "disconnected", "acked" };

const char *
keel_held_state_name (keel_held_state_t state)
{
    return (unsigned) state < sizeof s_state_names / sizeof *s_state_names ? s_state_names[state]
                                                                           : "?";
}

const char *
keel_held_event_name (keel_held_event_t event)
{
    return (unsigned) event < sizeof s_event_names / sizeof *s_event_names ? s_event_names[event]
                                                                           : "?";
}

bool
keel_held_is_done (const keel_held_task_t *task)
{
    return task->state != KEEL_HELD_RUNNING;
}

//  The next state for event in state, or -1 when state does not expect it.
//  The table in held.h, row by row.
static int
s_next (keel_held_state_t state, keel_held_event_t event)
{
    switch (state) {
        case KEEL_HELD_RUNNING:
            switch (event) {
                case KEEL_HELD_EV_FINISHED:
                    return KEEL_HELD_DONE;
                case KEEL_HELD_EV_HELD:
                case KEEL_HELD_EV_LOGGED_IN:
                case KEEL_HELD_EV_DISCONNECTED:
                    return KEEL_HELD_RUNNING;
                default:
                    return -1;
            }
        case KEEL_HELD_DONE:
            switch (event) {
                case KEEL_HELD_EV_SENT:
                    return KEEL_HELD_SENT;
                case KEEL_HELD_EV_CARRIED:
                    return KEEL_HELD_IN_LOGIN;
                case KEEL_HELD_EV_SPOOLED:
                case KEEL_HELD_EV_LEFT_OUT:
                case KEEL_HELD_EV_HELD:
                case KEEL_HELD_EV_LOGGED_IN:
                case KEEL_HELD_EV_DISCONNECTED:
                    return KEEL_HELD_DONE;
                case KEEL_HELD_EV_ACKED:
                    return KEEL_HELD_ACKED;
                default:
                    return -1;
            }
        case KEEL_HELD_IN_LOGIN:
            switch (event) {
                case KEEL_HELD_EV_SPOOLED:
                case KEEL_HELD_EV_CARRIED:
                    return KEEL_HELD_IN_LOGIN;
                case KEEL_HELD_EV_HELD:
                    return KEEL_HELD_SENT;
                case KEEL_HELD_EV_LEFT_OUT:
                case KEEL_HELD_EV_LOGGED_IN:
                case KEEL_HELD_EV_DISCONNECTED:
                    return KEEL_HELD_DONE;
                case KEEL_HELD_EV_ACKED:
                    return KEEL_HELD_ACKED;
                default:
                    return -1;
            }
        case KEEL_HELD_SENT:
            switch (event) {
                case KEEL_HELD_EV_SPOOLED:
                case KEEL_HELD_EV_HELD:
                case KEEL_HELD_EV_LOGGED_IN:
                    return KEEL_HELD_SENT;
                case KEEL_HELD_EV_DISCONNECTED:
                    return KEEL_HELD_DONE;
                case KEEL_HELD_EV_ACKED:
                    return KEEL_HELD_ACKED;
                default:
                    return -1;
            }
        case KEEL_HELD_ACKED:
        default:
            return -1;
    }
}

bool
keel_held_step (keel_held_task_t *task, keel_held_event_t event)
{
    int next = s_next (task->state, event);
    if (next < 0) {
        KEEL_DEBUG ("engine", "held: event %s refused in state %s exec=%" PRIu64,
                    keel_held_event_name (event), keel_held_state_name (task->state),
                    task->execution_id);
        return false;
    }
    //  What an event does besides the state change.
    if (event == KEEL_HELD_EV_FINISHED)
        task->checkpoint_pending = false; // the result supersedes the memory
    else if (event == KEEL_HELD_EV_SPOOLED)
        task->spooled = true;
    task->state = (keel_held_state_t) next;
    return true;
}
