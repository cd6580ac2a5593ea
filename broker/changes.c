/*  changes.c — the journal of durable changes. See changes.h.

    Records live in one growing array; the strings and blobs they carry are
    copied into an arena of blocks that never move (a big blob gets a block
    of its own), so a record's pointers stay valid while the array grows.
    Clearing keeps the first block for the next turn.
*/
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "changes.h"
#include "changes.pb-c.h"
#include "cond.h"

#define S_BLOCK_SIZE (64 * 1024)

typedef struct s_block_t {
    struct s_block_t *next;
    size_t used, size;
    uint8_t data[];
} s_block_t;

// keel_changes_decode's arena for protobuf-c's unpacking: a peer's batch
// of thousands of records costs thousands of small mallocs otherwise (a
// pair's passive decodes every commit of the active).
typedef struct s_ablock_t {
    struct s_ablock_t *next;
    size_t cap, used;
    _Alignas(16) uint8_t data[];
} s_ablock_t;

struct _keel_changes_t {
    keel_change_t *records;
    size_t n, cap;
    s_block_t *blocks; // newest first
    // keel_changes_encode's scratch, kept between calls: a pair's active
    // encodes every commit, and fresh arrays cost page faults each time.
    Keel__Change *scratch;
    Keel__Change **scratch_ptrs;
    size_t scratch_cap;
    s_ablock_t *arena; // newest first
    size_t arena_hint; // bytes the last decode needed
};

static void *
s_arena_alloc (void *arg, size_t size)
{
    keel_changes_t *self = arg;
    size = (size + 15) & ~(size_t) 15;
    s_ablock_t *b = self->arena;
    if (!b || b->used + size > b->cap) {
        size_t cap = self->arena_hint > 65536 ? self->arena_hint : 65536;
        if (cap < size)
            cap = size;
        s_ablock_t *fresh = malloc (sizeof *fresh + cap);
        if (!fresh)
            return NULL;
        fresh->cap = cap;
        fresh->used = 0;
        fresh->next = b;
        self->arena = b = fresh;
    }
    void *at = b->data + b->used;
    b->used += size;
    return at;
}

static void
s_arena_free (void *arg, void *pointer)
{
    (void) arg; // freed all at once by s_arena_reset
    (void) pointer;
}

// Forgets what the last decode allocated: one block kept (sized for it
// next time), the others freed.
static void
s_arena_reset (keel_changes_t *self, bool all)
{
    size_t total = 0, blocks = 0;
    for (s_ablock_t *b = self->arena; b; b = b->next, blocks++)
        total += b->used;
    if (blocks == 1 && !all) {
        self->arena->used = 0;
        return;
    }
    while (self->arena) {
        s_ablock_t *next = self->arena->next;
        free (self->arena);
        self->arena = next;
    }
    self->arena_hint = total + total / 4;
}

static const char *s_kind_names[KEEL_CHANGE_KIND_MAX + 1] = {
    [KEEL_CHANGE_SERVICE_PUT] = "service-put",
    [KEEL_CHANGE_SERVICE_STATE] = "service-state",
    [KEEL_CHANGE_SERVICE_DELETE] = "service-delete",
    [KEEL_CHANGE_TASK_PUT] = "task-put",
    [KEEL_CHANGE_TASK_STATE] = "task-state",
    [KEEL_CHANGE_TASK_RESULT] = "task-result",
    [KEEL_CHANGE_TASK_ACKED] = "task-acked",
    [KEEL_CHANGE_TASK_CHECKPOINT] = "task-checkpoint",
    [KEEL_CHANGE_EXEC_PUT] = "exec-put",
    [KEEL_CHANGE_EXEC_DELETE] = "exec-delete",
    [KEEL_CHANGE_PENDING_PUT] = "pending-put",
    [KEEL_CHANGE_PENDING_DELETE] = "pending-delete",
    [KEEL_CHANGE_ENGINE_PUT] = "engine-put",
    [KEEL_CHANGE_CONFIG_SET] = "config-set",
    [KEEL_CHANGE_EVENT] = "event",
    [KEEL_CHANGE_META_SET] = "meta-set",
};

const char *
keel_change_kind_name (keel_change_kind_t kind)
{
    if ((int) kind < 1 || kind > KEEL_CHANGE_KIND_MAX)
        return "?";
    return s_kind_names[kind];
}

keel_changes_t *
keel_changes_new (void)
{
    return calloc (1, sizeof (keel_changes_t));
}

static void
s_free_blocks (s_block_t *b)
{
    while (b) {
        s_block_t *next = b->next;
        free (b);
        b = next;
    }
}

void
keel_changes_destroy (keel_changes_t **self_p)
{
    assert (self_p);
    keel_changes_t *self = *self_p;
    if (!self)
        return;
    s_free_blocks (self->blocks);
    free (self->records);
    free (self->scratch);
    free (self->scratch_ptrs);
    s_arena_reset (self, true);
    free (self);
    *self_p = NULL;
}

size_t
keel_changes_size (const keel_changes_t *self)
{
    return self->n;
}

const keel_change_t *
keel_changes_at (const keel_changes_t *self, size_t index)
{
    return index < self->n ? &self->records[index] : NULL;
}

void
keel_changes_clear (keel_changes_t *self)
{
    self->n = 0;
    if (!self->blocks)
        return;
    // Keep the oldest block (the last in the list) if it is a standard one.
    s_block_t *keep = self->blocks, *prev = NULL;
    while (keep->next) {
        prev = keep;
        keep = keep->next;
    }
    if (prev)
        prev->next = NULL;
    if (keep != self->blocks)
        s_free_blocks (self->blocks);
    if (keep->size == S_BLOCK_SIZE) {
        keep->used = 0;
        self->blocks = keep;
    }
    else {
        free (keep);
        self->blocks = NULL;
    }
}

void
keel_changes_clear_to (keel_changes_t *self, size_t max_records)
{
    keel_changes_clear (self);
    if (self->cap <= max_records)
        return;
    free (self->records);
    self->records = NULL;
    self->cap = 0;
    s_free_blocks (self->blocks);
    self->blocks = NULL;
}

void
keel_changes_swap (keel_changes_t *a, keel_changes_t *b)
{
    keel_changes_t t = *a;
    *a = *b;
    *b = t;
}

// Room for size bytes in the arena, or NULL.
static uint8_t *
s_alloc (keel_changes_t *self, size_t size)
{
    size = (size + 7) & ~(size_t) 7;
    s_block_t *b = self->blocks;
    if (!b || b->size - b->used < size) {
        size_t bsize = size > S_BLOCK_SIZE / 4 ? size : S_BLOCK_SIZE;
        s_block_t *nb = malloc (sizeof *nb + bsize);
        if (!nb)
            return NULL;
        nb->used = 0;
        nb->size = bsize;
        if (bsize == S_BLOCK_SIZE || !b) {
            nb->next = b;
            self->blocks = nb;
        }
        else {
            // A big blob's own block goes behind the current one, which
            // still has room for small strings.
            nb->next = b->next;
            b->next = nb;
        }
        b = nb;
    }
    uint8_t *p = b->data + b->used;
    b->used += size;
    return p;
}

// Copies a string into the arena (NULL stays NULL). Returns false on OOM.
static bool
s_str (keel_changes_t *self, const char **s)
{
    if (!*s)
        return true;
    size_t len = strlen (*s) + 1;
    char *copy = (char *) s_alloc (self, len);
    if (!copy)
        return false;
    memcpy (copy, *s, len);
    *s = copy;
    return true;
}

static bool
s_blob (keel_changes_t *self, const uint8_t **data, size_t len)
{
    if (!*data)
        return true;
    uint8_t *copy = s_alloc (self, len ? len : 1);
    if (!copy)
        return false;
    if (len)
        memcpy (copy, *data, len);
    *data = copy;
    return true;
}

// Clears the pointers a kind does not use (changes.h lists the fields of
// each), then copies what is left into the arena: a record carries only
// its own data (a task's state change does not copy its input).
static bool
s_own (keel_changes_t *self, keel_change_t *c)
{
    switch (c->kind) {
        case KEEL_CHANGE_SERVICE_STATE:
        case KEEL_CHANGE_SERVICE_DELETE:
            c->service.type = c->service.driver_id = c->service.condition = NULL;
            c->service.init_data = NULL;
            c->service.init_len = 0;
            // fall through
        case KEEL_CHANGE_SERVICE_PUT:
            return s_str (self, &c->service.service_id) && s_str (self, &c->service.type)
                   && s_str (self, &c->service.driver_id) && s_str (self, &c->service.condition)
                   && s_blob (self, &c->service.init_data, c->service.init_len);
        case KEEL_CHANGE_TASK_STATE:
        case KEEL_CHANGE_TASK_ACKED:
        case KEEL_CHANGE_TASK_CHECKPOINT:
            c->task.output = NULL;
            c->task.output_len = 0;
            c->task.error = c->task.engine_id = NULL;
            if (c->kind != KEEL_CHANGE_TASK_CHECKPOINT) {
                c->task.checkpoint = NULL;
                c->task.checkpoint_len = 0;
            }
            // fall through
        case KEEL_CHANGE_TASK_RESULT:
            c->task.input = NULL;
            c->task.input_len = 0;
            if (c->kind == KEEL_CHANGE_TASK_RESULT) {
                c->task.checkpoint = NULL;
                c->task.checkpoint_len = 0;
            }
            // fall through
        case KEEL_CHANGE_TASK_PUT:
            return s_str (self, &c->task.service_id) && s_str (self, &c->task.error)
                   && s_str (self, &c->task.engine_id)
                   && s_blob (self, &c->task.input, c->task.input_len)
                   && s_blob (self, &c->task.output, c->task.output_len)
                   && s_blob (self, &c->task.checkpoint, c->task.checkpoint_len);
        case KEEL_CHANGE_EXEC_DELETE:
            c->exec.service_id = c->exec.engine_id = NULL;
            // fall through
        case KEEL_CHANGE_EXEC_PUT:
            return s_str (self, &c->exec.service_id) && s_str (self, &c->exec.engine_id);
        case KEEL_CHANGE_PENDING_DELETE:
            c->pending.engine_id = c->pending.error = NULL;
            c->pending.output = NULL;
            c->pending.output_len = 0;
            // fall through
        case KEEL_CHANGE_PENDING_PUT:
            return s_str (self, &c->pending.service_id) && s_str (self, &c->pending.engine_id)
                   && s_str (self, &c->pending.error)
                   && s_blob (self, &c->pending.output, c->pending.output_len);
        case KEEL_CHANGE_ENGINE_PUT:
            return s_str (self, &c->engine.engine_id) && s_str (self, &c->engine.host)
                   && s_str (self, &c->engine.session);
        case KEEL_CHANGE_CONFIG_SET:
            return s_str (self, &c->config.key) && s_str (self, &c->config.value);
        case KEEL_CHANGE_EVENT:
            return s_str (self, &c->event.kind) && s_str (self, &c->event.text);
        case KEEL_CHANGE_META_SET:
            return s_str (self, &c->meta.name);
    }
    return false;
}

keel_err
keel_changes_add (keel_changes_t *self, const keel_change_t *change)
{
    assert (self && change);
    if ((int) change->kind < 1 || change->kind > KEEL_CHANGE_KIND_MAX)
        return KEEL_ERR_INVALID;
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 256;
        keel_change_t *grown = realloc (self->records, cap * sizeof *grown);
        if (!grown)
            return KEEL_ERR_NOMEM;
        self->records = grown;
        self->cap = cap;
    }
    keel_change_t *c = &self->records[self->n];
    *c = *change;
    if (!s_own (self, c))
        return KEEL_ERR_NOMEM; // the arena keeps what was copied until clear
    self->n++;
    return KEEL_OK;
}

// ---------------------------------------------------------------- bytes

#define S_SET(msg, field, v) ((msg)->has_##field = true, (msg)->field = (v))
#define S_BIN(msg, field, ptr_, size_)                                                             \
    do {                                                                                           \
        if (ptr_) {                                                                                \
            (msg)->has_##field = true;                                                             \
            (msg)->field.data = (uint8_t *) (ptr_);                                                \
            (msg)->field.len = (size_);                                                            \
        }                                                                                          \
    } while (0)

static void
s_to_proto (const keel_change_t *c, Keel__Change *m)
{
    S_SET (m, kind, (uint32_t) c->kind);
    switch (c->kind) {
        case KEEL_CHANGE_SERVICE_PUT:
        case KEEL_CHANGE_SERVICE_STATE:
        case KEEL_CHANGE_SERVICE_DELETE: {
            const keel_store_service_t *s = &c->service;
            m->service_id = (char *) s->service_id;
            if (c->kind == KEEL_CHANGE_SERVICE_DELETE)
                break;
            S_SET (m, service_state, (uint32_t) s->state);
            S_SET (m, closed_wall_ms, s->closed_wall_ms);
            if (c->kind == KEEL_CHANGE_SERVICE_STATE)
                break;
            m->type = (char *) s->type;
            m->driver_id = (char *) s->driver_id;
            S_SET (m, priority, s->priority);
            S_SET (m, max_attempts, s->max_attempts);
            S_SET (m, reschedule_delay_ms, s->reschedule_delay_ms);
            S_BIN (m, init_data, s->init_data, s->init_len);
            S_SET (m, created_wall_ms, s->created_wall_ms);
            m->condition = (char *) s->condition;
            break;
        }
        case KEEL_CHANGE_TASK_PUT:
        case KEEL_CHANGE_TASK_STATE:
        case KEEL_CHANGE_TASK_RESULT:
        case KEEL_CHANGE_TASK_ACKED:
        case KEEL_CHANGE_TASK_CHECKPOINT: {
            const keel_store_task_t *t = &c->task;
            m->service_id = (char *) t->service_id;
            S_SET (m, task_id, t->task_id);
            if (c->kind == KEEL_CHANGE_TASK_ACKED)
                break;
            if (c->kind == KEEL_CHANGE_TASK_CHECKPOINT) {
                S_BIN (m, checkpoint, t->checkpoint, t->checkpoint_len);
                S_SET (m, checkpoint_wall_ms, t->checkpoint_wall_ms);
                break;
            }
            S_SET (m, task_state, (uint32_t) t->state);
            S_SET (m, attempts, t->attempts);
            if (c->kind == KEEL_CHANGE_TASK_STATE)
                break;
            S_SET (m, status, t->status);
            S_BIN (m, output, t->output, t->output_len);
            m->error = (char *) t->error;
            m->engine_id = (char *) t->engine_id;
            S_SET (m, execution_id, t->execution_id);
            S_SET (m, run_ms, t->run_ms);
            S_SET (m, queued_ms, t->queued_ms);
            S_SET (m, result_acked, t->result_acked);
            if (c->kind == KEEL_CHANGE_TASK_RESULT)
                break;
            S_BIN (m, input, t->input, t->input_len);
            S_BIN (m, checkpoint, t->checkpoint, t->checkpoint_len);
            S_SET (m, checkpoint_wall_ms, t->checkpoint_wall_ms);
            break;
        }
        case KEEL_CHANGE_EXEC_PUT:
        case KEEL_CHANGE_EXEC_DELETE: {
            const keel_store_execution_t *x = &c->exec;
            S_SET (m, execution_id, x->execution_id);
            if (c->kind == KEEL_CHANGE_EXEC_DELETE)
                break;
            m->service_id = (char *) x->service_id;
            S_SET (m, task_id, x->task_id);
            m->engine_id = (char *) x->engine_id;
            S_SET (m, attempt, x->attempt);
            S_SET (m, started_wall_ms, x->started_wall_ms);
            break;
        }
        case KEEL_CHANGE_PENDING_PUT:
        case KEEL_CHANGE_PENDING_DELETE: {
            const keel_store_pending_t *p = &c->pending;
            m->service_id = (char *) p->service_id;
            S_SET (m, task_id, p->task_id);
            S_SET (m, execution_id, p->execution_id);
            if (c->kind == KEEL_CHANGE_PENDING_DELETE)
                break;
            m->engine_id = (char *) p->engine_id;
            S_SET (m, has_result, p->has_result);
            S_SET (m, status, p->status);
            S_BIN (m, output, p->output, p->output_len);
            m->error = (char *) p->error;
            S_SET (m, run_ms, p->run_ms);
            S_SET (m, expires_wall_ms, p->expires_wall_ms);
            break;
        }
        case KEEL_CHANGE_ENGINE_PUT: {
            const keel_store_engine_t *e = &c->engine;
            m->engine_id = (char *) e->engine_id;
            m->host = (char *) e->host;
            m->session = (char *) e->session;
            S_SET (m, slots, e->slots);
            S_SET (m, login_wall_ms, e->login_wall_ms);
            S_SET (m, seen_wall_ms, e->seen_wall_ms);
            S_SET (m, engine_online, e->online);
            break;
        }
        case KEEL_CHANGE_CONFIG_SET:
            m->key = (char *) c->config.key;
            m->value = (char *) c->config.value;
            break;
        case KEEL_CHANGE_EVENT:
            S_SET (m, wall_ms, c->event.wall_ms);
            m->event_kind = (char *) c->event.kind;
            m->text = (char *) c->event.text;
            break;
        case KEEL_CHANGE_META_SET:
            m->key = (char *) c->meta.name;
            S_SET (m, meta_value, c->meta.value);
            break;
    }
}

uint8_t *
keel_changes_encode (keel_changes_t *self, uint64_t seq, size_t *size_p)
{
    // Grown before the first encode too: an empty journal still encodes
    // (to a batch of no records), it is not "out of memory".
    if (self->n > self->scratch_cap || !self->scratch) {
        size_t cap = self->n < 64 ? 64 : self->n + self->n / 2;
        Keel__Change *msgs = realloc (self->scratch, cap * sizeof *msgs);
        if (msgs)
            self->scratch = msgs;
        Keel__Change **ptrs = realloc (self->scratch_ptrs, cap * sizeof *ptrs);
        if (ptrs)
            self->scratch_ptrs = ptrs;
        if (!msgs || !ptrs)
            return NULL;
        self->scratch_cap = cap;
    }
    Keel__Change *msgs = self->scratch;
    Keel__Change **ptrs = self->scratch_ptrs;
    uint8_t *buf = NULL;
    if (msgs && ptrs) {
        for (size_t i = 0; i < self->n; i++) {
            keel__change__init (&msgs[i]);
            s_to_proto (&self->records[i], &msgs[i]);
            ptrs[i] = &msgs[i];
        }
        Keel__ChangeBatch batch = KEEL__CHANGE_BATCH__INIT;
        S_SET (&batch, version, KEEL_CHANGES_VERSION);
        S_SET (&batch, seq, seq);
        batch.n_changes = self->n;
        batch.changes = ptrs;
        size_t size = keel__change_batch__get_packed_size (&batch);
        buf = malloc (size ? size : 1);
        if (buf)
            *size_p = keel__change_batch__pack (&batch, buf);
    }
    return buf;
}

// Which fields each kind needs (decode refuses a record without them).
#define F_SERVICE (1u << 0)
#define F_TASK    (1u << 1)
#define F_EXEC    (1u << 2)
#define F_ENGINE  (1u << 3)
#define F_SSTATE  (1u << 4)
#define F_TSTATE  (1u << 5)
#define F_KEY     (1u << 6)
#define F_VALUE   (1u << 7)
#define F_EVENT   (1u << 8)
#define F_META    (1u << 9)
#define F_TYPE    (1u << 10)

static const unsigned s_needs[KEEL_CHANGE_KIND_MAX + 1] = {
    [KEEL_CHANGE_SERVICE_PUT] = F_SERVICE | F_SSTATE | F_TYPE,
    [KEEL_CHANGE_SERVICE_STATE] = F_SERVICE | F_SSTATE,
    [KEEL_CHANGE_SERVICE_DELETE] = F_SERVICE,
    [KEEL_CHANGE_TASK_PUT] = F_SERVICE | F_TASK | F_TSTATE,
    [KEEL_CHANGE_TASK_STATE] = F_SERVICE | F_TASK | F_TSTATE,
    [KEEL_CHANGE_TASK_RESULT] = F_SERVICE | F_TASK | F_TSTATE,
    [KEEL_CHANGE_TASK_ACKED] = F_SERVICE | F_TASK,
    [KEEL_CHANGE_TASK_CHECKPOINT] = F_SERVICE | F_TASK,
    [KEEL_CHANGE_EXEC_PUT] = F_SERVICE | F_TASK | F_EXEC | F_ENGINE,
    [KEEL_CHANGE_EXEC_DELETE] = F_EXEC,
    [KEEL_CHANGE_PENDING_PUT] = F_SERVICE | F_TASK | F_EXEC | F_ENGINE,
    [KEEL_CHANGE_PENDING_DELETE] = F_SERVICE | F_TASK | F_EXEC,
    [KEEL_CHANGE_ENGINE_PUT] = F_ENGINE,
    [KEEL_CHANGE_CONFIG_SET] = F_KEY | F_VALUE,
    [KEEL_CHANGE_EVENT] = F_EVENT,
    [KEEL_CHANGE_META_SET] = F_KEY | F_META,
};

static keel_err
s_from_proto (const Keel__Change *m, size_t index, keel_change_t *c, keel_error_t *err)
{
    if (!m->has_kind || m->kind < 1 || m->kind > KEEL_CHANGE_KIND_MAX)
        return keel_error_set (err, KEEL_ERR_INVALID, "change %zu: unknown kind %u", index,
                               m->has_kind ? m->kind : 0);
    const char *name = s_kind_names[m->kind];
    unsigned need = s_needs[m->kind];
    const char *missing = NULL;
    if ((need & F_SERVICE) && !m->service_id)
        missing = "service_id";
    else if ((need & F_TASK) && !m->has_task_id)
        missing = "task_id";
    else if ((need & F_EXEC) && !m->has_execution_id)
        missing = "execution_id";
    else if ((need & F_ENGINE) && !m->engine_id)
        missing = "engine_id";
    else if ((need & F_SSTATE) && !m->has_service_state)
        missing = "service_state";
    else if ((need & F_TSTATE) && !m->has_task_state)
        missing = "task_state";
    else if ((need & F_KEY) && !m->key)
        missing = "key";
    else if ((need & F_VALUE) && !m->value)
        missing = "value";
    else if ((need & F_EVENT) && (!m->event_kind || !m->text || !m->has_wall_ms))
        missing = "event_kind, text or wall_ms";
    else if ((need & F_META) && !m->has_meta_value)
        missing = "meta_value";
    else if ((need & F_TYPE) && (!m->type || !m->driver_id))
        missing = "type or driver_id";
    if (missing)
        return keel_error_set (err, KEEL_ERR_INVALID, "change %zu (%s): no %s", index, name,
                               missing);
    if (m->condition && strnlen (m->condition, KEEL_COND_MAX_LEN + 1) > KEEL_COND_MAX_LEN)
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "change %zu (%s): condition longer than %d "
                               "bytes",
                               index, name, KEEL_COND_MAX_LEN);
    if (m->has_service_state && m->service_state > KEEL_SERVICE_DETACHED)
        return keel_error_set (err, KEEL_ERR_INVALID, "change %zu (%s): service_state %u", index,
                               name, m->service_state);
    if (m->has_task_state && m->task_state >= KEEL_TASK_NSTATES)
        return keel_error_set (err, KEEL_ERR_INVALID, "change %zu (%s): task_state %u", index, name,
                               m->task_state);
    memset (c, 0, sizeof *c);
    c->kind = (keel_change_kind_t) m->kind;
    switch (c->kind) {
        case KEEL_CHANGE_SERVICE_PUT:
        case KEEL_CHANGE_SERVICE_STATE:
        case KEEL_CHANGE_SERVICE_DELETE:
            c->service = (keel_store_service_t) {
                .service_id = m->service_id,
                .type = m->type,
                .driver_id = m->driver_id,
                .priority = m->priority,
                .max_attempts = m->max_attempts,
                .reschedule_delay_ms = m->has_reschedule_delay_ms ? m->reschedule_delay_ms : -1,
                .init_data = m->has_init_data ? m->init_data.data : NULL,
                .init_len = m->has_init_data ? m->init_data.len : 0,
                .state = (keel_service_state_t) m->service_state,
                .created_wall_ms = m->created_wall_ms,
                .closed_wall_ms = m->closed_wall_ms,
                .condition = m->condition
            };
            break;
        case KEEL_CHANGE_TASK_PUT:
        case KEEL_CHANGE_TASK_STATE:
        case KEEL_CHANGE_TASK_RESULT:
        case KEEL_CHANGE_TASK_ACKED:
        case KEEL_CHANGE_TASK_CHECKPOINT:
            c->task =
                (keel_store_task_t) { .service_id = m->service_id,
                                      .task_id = m->task_id,
                                      .state = (keel_task_state_t) m->task_state,
                                      .attempts = m->attempts,
                                      .input = m->has_input ? m->input.data : NULL,
                                      .input_len = m->has_input ? m->input.len : 0,
                                      .status = m->status,
                                      .output = m->has_output ? m->output.data : NULL,
                                      .output_len = m->has_output ? m->output.len : 0,
                                      .error = m->error,
                                      .engine_id = m->engine_id,
                                      .execution_id = m->execution_id,
                                      .run_ms = m->run_ms,
                                      .queued_ms = m->queued_ms,
                                      .result_acked = m->result_acked,
                                      .checkpoint = m->has_checkpoint ? m->checkpoint.data : NULL,
                                      .checkpoint_len = m->has_checkpoint ? m->checkpoint.len : 0,
                                      .checkpoint_wall_ms = m->checkpoint_wall_ms };
            break;
        case KEEL_CHANGE_EXEC_PUT:
        case KEEL_CHANGE_EXEC_DELETE:
            c->exec = (keel_store_execution_t) { .execution_id = m->execution_id,
                                                 .service_id = m->service_id,
                                                 .task_id = m->task_id,
                                                 .engine_id = m->engine_id,
                                                 .attempt = m->attempt,
                                                 .started_wall_ms = m->started_wall_ms };
            break;
        case KEEL_CHANGE_PENDING_PUT:
        case KEEL_CHANGE_PENDING_DELETE:
            c->pending = (keel_store_pending_t) { .service_id = m->service_id,
                                                  .task_id = m->task_id,
                                                  .execution_id = m->execution_id,
                                                  .engine_id = m->engine_id,
                                                  .has_result = m->has_result,
                                                  .status = m->status,
                                                  .output = m->has_output ? m->output.data : NULL,
                                                  .output_len = m->has_output ? m->output.len : 0,
                                                  .error = m->error,
                                                  .run_ms = m->run_ms,
                                                  .expires_wall_ms = m->expires_wall_ms };
            break;
        case KEEL_CHANGE_ENGINE_PUT:
            c->engine =
                (keel_store_engine_t) { .engine_id = m->engine_id,
                                        .host = m->host,
                                        .session = m->session,
                                        .slots = m->slots,
                                        .login_wall_ms = m->login_wall_ms,
                                        .seen_wall_ms = m->seen_wall_ms,
                                        .online = m->has_engine_online
                                                      ? m->engine_online
                                                      : m->seen_wall_ms == m->login_wall_ms };
            break;
        case KEEL_CHANGE_CONFIG_SET:
            c->config.key = m->key;
            c->config.value = m->value;
            break;
        case KEEL_CHANGE_EVENT:
            c->event.wall_ms = m->wall_ms;
            c->event.kind = m->event_kind;
            c->event.text = m->text;
            break;
        case KEEL_CHANGE_META_SET:
            c->meta.name = m->key;
            c->meta.value = m->meta_value;
            break;
    }
    return KEEL_OK;
}

keel_err
keel_changes_decode (keel_changes_t *self, const uint8_t *data, size_t size, uint64_t *seq_p,
                     keel_error_t *err)
{
    ProtobufCAllocator arena = { s_arena_alloc, s_arena_free, self };
    Keel__ChangeBatch *batch = keel__change_batch__unpack (&arena, size, data);
    if (!batch) {
        s_arena_reset (self, false);
        return keel_error_set (err, KEEL_ERR_INVALID, "not a change batch (%zu bytes)", size);
    }
    keel_err rc = KEEL_OK;
    if (!batch->has_version || batch->version != KEEL_CHANGES_VERSION)
        rc = keel_error_set (err, KEEL_ERR_INVALID,
                             "change batch version %u (this broker reads version %d)",
                             batch->has_version ? batch->version : 0, KEEL_CHANGES_VERSION);
    // All or nothing: check every record before appending any.
    keel_change_t c;
    for (size_t i = 0; rc == KEEL_OK && i < batch->n_changes; i++)
        rc = s_from_proto (batch->changes[i], i, &c, err);
    size_t start = self->n;
    for (size_t i = 0; rc == KEEL_OK && i < batch->n_changes; i++) {
        s_from_proto (batch->changes[i], i, &c, err);
        rc = keel_changes_add (self, &c);
        if (rc != KEEL_OK) {
            keel_error_set (err, rc, "out of memory reading a change batch");
            self->n = start;
        }
    }
    if (rc == KEEL_OK && seq_p)
        *seq_p = batch->has_seq ? batch->seq : 0;
    s_arena_reset (self, false); // the records were copied into the journal
    return rc;
}
