/*  store_pg_write.c — the PostgreSQL backend's writes: one prepared
    statement per journal record kind (changes.h), sent in the turn's
    pipeline (store_pg.c), and the batches that make a turn of many tasks
    cost a few statements.

    Batches. The hot records — TASK_PUT, TASK_STATE, TASK_RESULT,
    TASK_ACKED, EXEC_PUT, EXEC_DELETE — are not sent one by one: a run of
    consecutive records of one kind becomes one statement over arrays
    (INSERT … SELECT FROM unnest($1::bytea[], $2::bigint[], …), UPDATE …
    FROM unnest(…), DELETE … = ANY($1)), in libpq's binary array format.
    The journal's order is kept: a record of another kind, or one whose
    key (service and task, or execution) is already in the batch, sends the
    batch first (an upsert or UPDATE … FROM must not see one row twice),
    and commit sends what is left before COMMIT. A turn of W1 (a few
    thousand puts, results and execution rows) is about six statements
    instead of thousands: PostgreSQL's cost per statement (parse, bind,
    executor start, a round of the protocol) was most of its CPU per task.
*/
#include <arpa/inet.h>
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg_int.h"

#define S_BATCH_MAX 50000 // rows in one array statement at most

typedef enum {
    P_SERVICE_PUT,
    P_SERVICE_STATE,
    P_SERVICE_DEL_TASKS,
    P_SERVICE_DEL_EXECS,
    P_SERVICE_DEL_PENDING,
    P_SERVICE_DEL,
    P_TASK_PUT,
    P_TASK_STATE,
    P_TASK_RESULT,
    P_TASK_ACKED,
    P_TASK_CHECKPOINT,
    P_EXEC_PUT,
    P_EXEC_DEL,
    P_PENDING_PUT,
    P_PENDING_DEL,
    P_CONFIG_SET,
    P_CONFIG_DEL,
    P_ENGINE_PUT,
    P_EVENT,
    P_EVENT_TRIM,
    P_META_SET,
    P_COUNT, // the batch statements follow, one per batched kind
    B_TASK_PUT = P_COUNT,
    B_TASK_STATE,
    B_TASK_RESULT,
    B_TASK_ACKED,
    B_EXEC_PUT,
    B_EXEC_DEL,
    S_COUNT
} s_stmt_t;

#define S_STR(x)  #x
#define S_XSTR(x) S_STR (x)

static const char *s_sql[S_COUNT] = {
    [P_SERVICE_PUT] = "INSERT INTO services VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
                      " ON CONFLICT (service_id) DO UPDATE SET (type, driver_id, priority,"
                      " max_attempts, reschedule_delay_ms, init_data, state, created_wall_ms,"
                      " closed_wall_ms) = (EXCLUDED.type, EXCLUDED.driver_id, EXCLUDED.priority,"
                      " EXCLUDED.max_attempts, EXCLUDED.reschedule_delay_ms, EXCLUDED.init_data,"
                      " EXCLUDED.state, EXCLUDED.created_wall_ms, EXCLUDED.closed_wall_ms)",
    [P_SERVICE_STATE] = "UPDATE services SET state = $2::bigint,"
                        " closed_wall_ms = CASE WHEN $2::bigint = 0 THEN 0 ELSE $3::bigint END"
                        " WHERE service_id = $1",
    [P_SERVICE_DEL_TASKS] = "DELETE FROM tasks WHERE service_id = $1",
    [P_SERVICE_DEL_EXECS] = "DELETE FROM executions WHERE service_id = $1",
    [P_SERVICE_DEL_PENDING] = "DELETE FROM pending WHERE service_id = $1",
    [P_SERVICE_DEL] = "DELETE FROM services WHERE service_id = $1",
    [P_TASK_PUT] = "INSERT INTO tasks VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)"
                   " ON CONFLICT (service_id, task_id) DO UPDATE SET (state, attempts, status,"
                   " error, engine_id, execution_id, run_ms, queued_ms, acked,"
                   " checkpoint_wall_ms, input, output, checkpoint) = (EXCLUDED.state,"
                   " EXCLUDED.attempts, EXCLUDED.status, EXCLUDED.error, EXCLUDED.engine_id,"
                   " EXCLUDED.execution_id, EXCLUDED.run_ms, EXCLUDED.queued_ms, EXCLUDED.acked,"
                   " EXCLUDED.checkpoint_wall_ms, EXCLUDED.input, EXCLUDED.output,"
                   " EXCLUDED.checkpoint)",
    [P_TASK_STATE] = "UPDATE tasks SET state = $3, attempts = $4"
                     " WHERE service_id = $1 AND task_id = $2",
    [P_TASK_RESULT] = "UPDATE tasks SET state = $3, attempts = $4, status = $5, error = $6,"
                      " engine_id = $7, execution_id = $8, run_ms = $9, queued_ms = $10,"
                      " acked = $11, output = $12 WHERE service_id = $1 AND task_id = $2",
    [P_TASK_ACKED] = "UPDATE tasks SET acked = 1 WHERE service_id = $1 AND task_id = $2",
    [P_TASK_CHECKPOINT] = "UPDATE tasks SET checkpoint_wall_ms = $3, checkpoint = $4"
                          " WHERE service_id = $1 AND task_id = $2",
    [P_EXEC_PUT] = "INSERT INTO executions VALUES ($1,$2,$3,$4,$5,$6)"
                   " ON CONFLICT (execution_id) DO UPDATE SET (service_id, task_id, engine_id,"
                   " attempt, started_wall_ms) = (EXCLUDED.service_id, EXCLUDED.task_id,"
                   " EXCLUDED.engine_id, EXCLUDED.attempt, EXCLUDED.started_wall_ms)",
    [P_EXEC_DEL] = "DELETE FROM executions WHERE execution_id = $1",
    [P_PENDING_PUT] = "INSERT INTO pending VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
                      " ON CONFLICT (service_id, task_id, execution_id) DO UPDATE SET"
                      " (engine_id, has_result, status, output, error, run_ms, expires_wall_ms)"
                      " = (EXCLUDED.engine_id, EXCLUDED.has_result, EXCLUDED.status,"
                      " EXCLUDED.output, EXCLUDED.error, EXCLUDED.run_ms,"
                      " EXCLUDED.expires_wall_ms)",
    [P_PENDING_DEL] = "DELETE FROM pending WHERE service_id = $1 AND task_id = $2"
                      " AND execution_id = $3",
    [P_CONFIG_SET] = "INSERT INTO config VALUES ($1, $2)"
                     " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    [P_CONFIG_DEL] = "DELETE FROM config WHERE key = $1",
    [P_ENGINE_PUT] = "INSERT INTO engines VALUES ($1,$2,$3,$4,$5,$6,$7)"
                     " ON CONFLICT (engine_id) DO UPDATE SET (host, session, slots,"
                     " login_wall_ms, seen_wall_ms, online) = (EXCLUDED.host, EXCLUDED.session,"
                     " EXCLUDED.slots, EXCLUDED.login_wall_ms, EXCLUDED.seen_wall_ms,"
                     " EXCLUDED.online)",
    [P_EVENT] = "INSERT INTO events (wall_ms, kind, text) VALUES ($1, $2, $3)",
    [P_EVENT_TRIM] = "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - " S_XSTR (
        KEEL_STORE_PG_EVENTS_MAX),
    [P_META_SET] = "INSERT INTO meta VALUES ($1, $2)"
                   " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
    // Batches: the same parameters as the single statement above, each an
    // array with one element per row.
    [B_TASK_PUT] = "INSERT INTO tasks SELECT * FROM unnest($1::bytea[], $2::bigint[],"
                   " $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[],"
                   " $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],"
                   " $13::bytea[], $14::bytea[], $15::bytea[])"
                   " ON CONFLICT (service_id, task_id) DO UPDATE SET (state, attempts, status,"
                   " error, engine_id, execution_id, run_ms, queued_ms, acked,"
                   " checkpoint_wall_ms, input, output, checkpoint) = (EXCLUDED.state,"
                   " EXCLUDED.attempts, EXCLUDED.status, EXCLUDED.error, EXCLUDED.engine_id,"
                   " EXCLUDED.execution_id, EXCLUDED.run_ms, EXCLUDED.queued_ms, EXCLUDED.acked,"
                   " EXCLUDED.checkpoint_wall_ms, EXCLUDED.input, EXCLUDED.output,"
                   " EXCLUDED.checkpoint)",
    [B_TASK_STATE] = "UPDATE tasks t SET state = u.s, attempts = u.a FROM unnest($1::bytea[],"
                     " $2::bigint[], $3::bigint[], $4::bigint[]) AS u (k, i, s, a)"
                     " WHERE t.service_id = u.k AND t.task_id = u.i",
    [B_TASK_RESULT] = "UPDATE tasks t SET (state, attempts, status, error, engine_id, execution_id,"
                      " run_ms, queued_ms, acked, output) = (u.c3, u.c4, u.c5, u.c6, u.c7, u.c8,"
                      " u.c9, u.c10, u.c11, u.c12) FROM unnest($1::bytea[], $2::bigint[],"
                      " $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[],"
                      " $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bytea[])"
                      " AS u (c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12)"
                      " WHERE t.service_id = u.c1 AND t.task_id = u.c2",
    [B_TASK_ACKED] = "UPDATE tasks t SET acked = 1 FROM unnest($1::bytea[], $2::bigint[])"
                     " AS u (k, i) WHERE t.service_id = u.k AND t.task_id = u.i",
    [B_EXEC_PUT] = "INSERT INTO executions SELECT * FROM unnest($1::bigint[], $2::bytea[],"
                   " $3::bigint[], $4::bytea[], $5::bigint[], $6::bigint[])"
                   " ON CONFLICT (execution_id) DO UPDATE SET (service_id, task_id, engine_id,"
                   " attempt, started_wall_ms) = (EXCLUDED.service_id, EXCLUDED.task_id,"
                   " EXCLUDED.engine_id, EXCLUDED.attempt, EXCLUDED.started_wall_ms)",
    [B_EXEC_DEL] = "DELETE FROM executions WHERE execution_id = ANY ($1::bigint[])",
};

// The batch statement of a single one (P_COUNT when it is not batched).
static s_stmt_t
s_batch_of (s_stmt_t stmt)
{
    switch (stmt) {
        case P_TASK_PUT:
            return B_TASK_PUT;
        case P_TASK_STATE:
            return B_TASK_STATE;
        case P_TASK_RESULT:
            return B_TASK_RESULT;
        case P_TASK_ACKED:
            return B_TASK_ACKED;
        case P_EXEC_PUT:
            return B_EXEC_PUT;
        case P_EXEC_DEL:
            return B_EXEC_DEL;
        default:
            return P_COUNT;
    }
}

keel_err
keel_store_pg_prepare_writes (keel_store_pg_t *self, keel_error_t *err)
{
    for (int i = 0; i < S_COUNT; i++) {
        char name[16];
        snprintf (name, sizeof name, "k%d", i);
        keel_err rc = keel_store_pg_prepare (self, name, s_sql[i], err);
        if (rc)
            return rc;
    }
    return KEEL_OK;
}

// ---------------------------------------------------------------- batches

// Each column is a binary array being built: a 20-byte header (written
// when the batch is sent) and then, per row, a 4-byte length (-1: NULL)
// and the value.
#define S_ARRAY_HEADER 20

static bool
s_put (keel_store_pg_buf_t *buf, const void *data, size_t len)
{
    if (buf->len + len > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 4096;
        while (cap < buf->len + len)
            cap *= 2;
        uint8_t *grown = realloc (buf->data, cap);
        if (!grown)
            return false;
        buf->data = grown;
        buf->cap = cap;
    }
    memcpy (buf->data + buf->len, data, len);
    buf->len += len;
    return true;
}

// A row's key for the duplicate check: FNV-1a over the first parameter's
// bytes, mixed with the second's (a task's service and task id; an
// execution's id). A collision only sends a batch early.
static uint64_t
s_row_key (const keel_store_pg_params_t *p, int nkey)
{
    uint64_t h = 1469598103934665603ULL;
    for (int c = 0; c < nkey; c++) {
        const uint8_t *v = (const uint8_t *) p->values[c];
        for (int i = 0; v && i < p->lengths[c]; i++)
            h = (h ^ v[i]) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h ? h : 1;
}

// Adds key to the batch's set; false when it was there already.
static bool
s_key_add (keel_store_pg_batch_t *b, uint64_t key)
{
    if ((b->rows + 1) * 2 > b->slots) {
        size_t slots = b->slots ? b->slots * 2 : 1024;
        uint64_t *keys = calloc (slots, sizeof *keys);
        if (!keys)
            return true; // no room to check: the statement itself still refuses a repeat
        for (size_t i = 0; i < b->slots; i++)
            for (size_t j = b->keys[i] % slots; b->keys[i]; j = (j + 1) % slots)
                if (!keys[j]) {
                    keys[j] = b->keys[i];
                    break;
                }
        free (b->keys);
        b->keys = keys;
        b->slots = slots;
    }
    for (size_t j = key % b->slots;; j = (j + 1) % b->slots) {
        if (b->keys[j] == key)
            return false;
        if (!b->keys[j]) {
            b->keys[j] = key;
            b->used++;
            return true;
        }
    }
}

void
keel_store_pg_batch_clear (keel_store_pg_t *self)
{
    keel_store_pg_batch_t *b = &self->batch;
    b->stmt = 0;
    b->rows = 0;
    for (int c = 0; c < KEEL_STORE_PG_PARAMS_MAX; c++) {
        b->col[c].len = 0;
        b->nulls[c] = false;
    }
    if (b->used) {
        memset (b->keys, 0, b->slots * sizeof *b->keys);
        b->used = 0;
    }
}

void
keel_store_pg_batch_free (keel_store_pg_t *self)
{
    keel_store_pg_batch_t *b = &self->batch;
    for (int c = 0; c < KEEL_STORE_PG_PARAMS_MAX; c++)
        free (b->col[c].data);
    free (b->keys);
    memset (b, 0, sizeof *b);
}

static void
s_be32 (uint8_t *out, uint32_t v)
{
    v = htonl (v);
    memcpy (out, &v, 4);
}

keel_err
keel_store_pg_batch_flush (keel_store_pg_t *self)
{
    keel_store_pg_batch_t *b = &self->batch;
    if (!b->rows)
        return KEEL_OK;
    keel_store_pg_params_t p = { .n = b->ncols };
    for (int c = 0; c < b->ncols; c++) {
        uint8_t *h = b->col[c].data;
        s_be32 (h, 1);                                // one dimension
        s_be32 (h + 4, b->nulls[c]);                  // has NULLs
        s_be32 (h + 8, b->kinds[c] == 'i' ? 20 : 17); // bigint or bytea
        s_be32 (h + 12, (uint32_t) b->rows);
        s_be32 (h + 16, 1); // lower bound
        p.values[c] = (const char *) h;
        p.lengths[c] = (int) b->col[c].len;
        p.formats[c] = 1;
        if (b->col[c].len > 0x7fffffff)
            p.too_big = true;
    }
    char name[16];
    snprintf (name, sizeof name, "k%d", (int) b->stmt);
    s_stmt_t stmt = (s_stmt_t) b->stmt;
    keel_store_pg_batch_clear (self);
    return keel_store_pg_send (self, name, s_sql[stmt], &p);
}

// Appends a row to the batch of `batch`, sending the batch first when it
// is of another statement, holds the row's key, or is full.
static keel_err
s_batch_add (keel_store_pg_t *self, s_stmt_t batch, const keel_store_pg_params_t *p)
{
    keel_store_pg_batch_t *b = &self->batch;
    if (self->poison)
        return self->poison;
    int nkey = batch == B_EXEC_PUT || batch == B_EXEC_DEL ? 1 : 2;
    uint64_t key = s_row_key (p, nkey);
    keel_err rc = KEEL_OK;
    if (b->rows && (b->stmt != (int) batch || b->rows >= S_BATCH_MAX || !s_key_add (b, key)))
        rc = keel_store_pg_batch_flush (self);
    if (rc)
        return rc;
    if (!b->rows) {
        b->stmt = (int) batch;
        b->ncols = p->n;
        s_key_add (b, key);
    }
    bool ok = true;
    for (int c = 0; c < p->n && ok; c++) {
        uint8_t header[S_ARRAY_HEADER] = { 0 };
        if (b->col[c].len == 0)
            ok = s_put (&b->col[c], header, sizeof header);
        b->kinds[c] = p->kinds[c];
        uint8_t len[4];
        bool null = p->values[c] == NULL;
        s_be32 (len, null ? 0xffffffffu : (uint32_t) p->lengths[c]);
        b->nulls[c] |= null;
        ok = ok && s_put (&b->col[c], len, 4)
             && (null || s_put (&b->col[c], p->values[c], (size_t) p->lengths[c]));
    }
    if (!ok) {
        keel_store_pg_batch_clear (self);
        keel_error_set (&self->last, KEEL_ERR_NOMEM, "%s: out of memory batching a write",
                        self->safe);
        return keel_store_pg_poison (self, KEEL_ERR_NOMEM);
    }
    b->rows++;
    return KEEL_OK;
}

// Sends one write: batched when its kind is, else alone (after the batch,
// which keeps the journal's order).
static keel_err
s_send (keel_store_pg_t *self, s_stmt_t stmt, const keel_store_pg_params_t *p)
{
    s_stmt_t batch = s_batch_of (stmt);
    if (batch != P_COUNT && !p->too_big) // too big: refused by keel_store_pg_send
        return s_batch_add (self, batch, p);
    keel_err rc = keel_store_pg_batch_flush (self);
    if (rc)
        return rc;
    char name[16];
    snprintf (name, sizeof name, "k%d", (int) stmt);
    return keel_store_pg_send (self, name, s_sql[stmt], p);
}

// ---------------------------------------------------------------- writes

static void
s_key (keel_store_pg_params_t *p, const char *service_id, uint64_t task_id)
{
    keel_store_pg_p_str (p, service_id);
    keel_store_pg_p_int (p, (int64_t) task_id);
}

// The key and the state and result columns ($1 .. $10), numbered alike in
// P_TASK_PUT and P_TASK_RESULT.
static void
s_outcome (keel_store_pg_params_t *p, const keel_store_task_t *t)
{
    s_key (p, t->service_id, t->task_id);
    keel_store_pg_p_int (p, t->state);
    keel_store_pg_p_int (p, t->attempts);
    keel_store_pg_p_int (p, t->status);
    keel_store_pg_p_str (p, t->error);
    keel_store_pg_p_str (p, t->engine_id);
    keel_store_pg_p_int (p, (int64_t) t->execution_id);
    keel_store_pg_p_int (p, (int64_t) t->run_ms);
    keel_store_pg_p_int (p, (int64_t) t->queued_ms);
    keel_store_pg_p_int (p, t->result_acked ? 1 : 0);
}

static keel_err
s_service_delete (keel_store_pg_t *self, const char *service_id)
{
    static const s_stmt_t steps[] = { P_SERVICE_DEL_TASKS, P_SERVICE_DEL_EXECS,
                                      P_SERVICE_DEL_PENDING, P_SERVICE_DEL };
    keel_err rc = KEEL_OK;
    for (size_t i = 0; !rc && i < sizeof steps / sizeof steps[0]; i++) {
        keel_store_pg_params_t p = { 0 };
        keel_store_pg_p_str (&p, service_id);
        rc = s_send (self, steps[i], &p);
    }
    return rc;
}

keel_err
keel_store_pg_apply (keel_store_pg_t *self, const keel_change_t *c)
{
    keel_store_pg_params_t p = { 0 };
    const keel_store_task_t *t = &c->task;
    switch (c->kind) {
        case KEEL_CHANGE_SERVICE_PUT: {
            const keel_store_service_t *s = &c->service;
            keel_store_pg_p_str (&p, s->service_id);
            keel_store_pg_p_str (&p, s->type ? s->type : "");
            keel_store_pg_p_str (&p, s->driver_id ? s->driver_id : "");
            keel_store_pg_p_int (&p, s->priority);
            keel_store_pg_p_int (&p, s->max_attempts);
            keel_store_pg_p_int (&p, s->reschedule_delay_ms);
            keel_store_pg_p_blob (&p, s->init_data, s->init_len);
            keel_store_pg_p_int (&p, s->state);
            keel_store_pg_p_int (&p, s->created_wall_ms);
            keel_store_pg_p_int (&p, s->closed_wall_ms);
            return s_send (self, P_SERVICE_PUT, &p);
        }
        case KEEL_CHANGE_SERVICE_STATE:
            keel_store_pg_p_str (&p, c->service.service_id);
            keel_store_pg_p_int (&p, c->service.state);
            keel_store_pg_p_int (&p, c->service.closed_wall_ms);
            return s_send (self, P_SERVICE_STATE, &p);
        case KEEL_CHANGE_SERVICE_DELETE:
            return s_service_delete (self, c->service.service_id);
        case KEEL_CHANGE_TASK_PUT:
            s_outcome (&p, t);
            keel_store_pg_p_int (&p, t->checkpoint_wall_ms);
            keel_store_pg_p_blob (&p, t->input, t->input_len);
            keel_store_pg_p_blob (&p, t->output, t->output_len);
            keel_store_pg_p_blob (&p, t->checkpoint, t->checkpoint_len);
            return s_send (self, P_TASK_PUT, &p);
        case KEEL_CHANGE_TASK_STATE:
            s_key (&p, t->service_id, t->task_id);
            keel_store_pg_p_int (&p, t->state);
            keel_store_pg_p_int (&p, t->attempts);
            return s_send (self, P_TASK_STATE, &p);
        case KEEL_CHANGE_TASK_RESULT:
            s_outcome (&p, t);
            keel_store_pg_p_blob (&p, t->output, t->output_len);
            return s_send (self, P_TASK_RESULT, &p);
        case KEEL_CHANGE_TASK_ACKED:
            s_key (&p, t->service_id, t->task_id);
            return s_send (self, P_TASK_ACKED, &p);
        case KEEL_CHANGE_TASK_CHECKPOINT:
            s_key (&p, t->service_id, t->task_id);
            keel_store_pg_p_int (&p, t->checkpoint ? t->checkpoint_wall_ms : 0);
            keel_store_pg_p_blob (&p, t->checkpoint, t->checkpoint_len);
            return s_send (self, P_TASK_CHECKPOINT, &p);
        case KEEL_CHANGE_EXEC_PUT:
            keel_store_pg_p_int (&p, (int64_t) c->exec.execution_id);
            keel_store_pg_p_str (&p, c->exec.service_id);
            keel_store_pg_p_int (&p, (int64_t) c->exec.task_id);
            keel_store_pg_p_str (&p, c->exec.engine_id ? c->exec.engine_id : "");
            keel_store_pg_p_int (&p, c->exec.attempt);
            keel_store_pg_p_int (&p, c->exec.started_wall_ms);
            return s_send (self, P_EXEC_PUT, &p);
        case KEEL_CHANGE_EXEC_DELETE:
            keel_store_pg_p_int (&p, (int64_t) c->exec.execution_id);
            return s_send (self, P_EXEC_DEL, &p);
        case KEEL_CHANGE_PENDING_PUT: {
            const keel_store_pending_t *q = &c->pending;
            s_key (&p, q->service_id, q->task_id);
            keel_store_pg_p_int (&p, (int64_t) q->execution_id);
            keel_store_pg_p_str (&p, q->engine_id ? q->engine_id : "");
            keel_store_pg_p_int (&p, q->has_result ? 1 : 0);
            keel_store_pg_p_int (&p, q->status);
            keel_store_pg_p_blob (&p, q->output, q->output_len);
            keel_store_pg_p_str (&p, q->error);
            keel_store_pg_p_int (&p, (int64_t) q->run_ms);
            keel_store_pg_p_int (&p, q->expires_wall_ms);
            return s_send (self, P_PENDING_PUT, &p);
        }
        case KEEL_CHANGE_PENDING_DELETE:
            s_key (&p, c->pending.service_id, c->pending.task_id);
            keel_store_pg_p_int (&p, (int64_t) c->pending.execution_id);
            return s_send (self, P_PENDING_DEL, &p);
        case KEEL_CHANGE_ENGINE_PUT: {
            const keel_store_engine_t *e = &c->engine;
            keel_store_pg_p_str (&p, e->engine_id);
            keel_store_pg_p_str (&p, e->host ? e->host : "");
            keel_store_pg_p_str (&p, e->session ? e->session : "");
            keel_store_pg_p_int (&p, e->slots);
            keel_store_pg_p_int (&p, e->login_wall_ms);
            keel_store_pg_p_int (&p, e->seen_wall_ms);
            keel_store_pg_p_int (&p, e->online ? 1 : 0);
            return s_send (self, P_ENGINE_PUT, &p);
        }
        case KEEL_CHANGE_CONFIG_SET:
            keel_store_pg_p_str (&p, c->config.key);
            if (c->config.value)
                keel_store_pg_p_str (&p, c->config.value);
            return s_send (self, c->config.value ? P_CONFIG_SET : P_CONFIG_DEL, &p);
        case KEEL_CHANGE_EVENT: {
            keel_store_pg_p_int (&p, c->event.wall_ms);
            keel_store_pg_p_str (&p, c->event.kind ? c->event.kind : "");
            keel_store_pg_p_str (&p, c->event.text ? c->event.text : "");
            keel_err rc = s_send (self, P_EVENT, &p);
            // Every 1000th event of this connection trims the log, so it
            // stays bounded between maintenance runs.
            if (rc == KEEL_OK && ++self->events % 1000 == 0) {
                keel_store_pg_params_t none = { 0 };
                rc = s_send (self, P_EVENT_TRIM, &none);
            }
            return rc;
        }
        case KEEL_CHANGE_META_SET:
            keel_store_pg_p_str (&p, c->meta.name);
            keel_store_pg_p_int (&p, (int64_t) c->meta.value);
            return s_send (self, P_META_SET, &p);
    }
    return KEEL_ERR_INVALID;
}
