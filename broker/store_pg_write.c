/*  store_pg_write.c — the PostgreSQL backend's writes: one prepared
    statement per journal record kind (changes.h), sent in the turn's
    pipeline (store_pg.c), and the batches that make a turn of many tasks
    cost a few statements.

    Batches. The hot records — TASK_PUT, TASK_STATE, TASK_RESULT,
    TASK_ACKED, EXEC_PUT, EXEC_DELETE — are not sent one by one: a run of
    consecutive records of one kind becomes one statement over arrays
    (INSERT … SELECT FROM unnest($1::bytea[], $2::bigint[], …), UPDATE …
    FROM unnest(…), DELETE … = ANY($1)), in libpq's binary array format.
    Each batched kind has its batch open for the whole turn, so records of
    different kinds may interleave (a result, a dispatch, a result…)
    without ending a batch. That reorders writes of different rows only:
    a record whose key (service and task, or execution) is already in an
    open batch sends every open batch first, so two writes of one row keep
    the journal's order (and no upsert or UPDATE … FROM sees a row twice);
    a record of a kind not batched sends them first too, and commit sends
    what is left before COMMIT. A turn of W1 (thousands of puts, results
    and execution rows) is a handful of statements instead of thousands:
    PostgreSQL's cost per statement (parse, bind, executor start, a round
    of the protocol) was most of its CPU per task.
*/
#include <arpa/inet.h>
#include <endian.h>
#include <limits.h>
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
    [P_SERVICE_PUT] = "INSERT INTO services VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
                      " ON CONFLICT (service_id) DO UPDATE SET (type, driver_id, priority,"
                      " max_attempts, reschedule_delay_ms, init_data, state, created_wall_ms,"
                      " closed_wall_ms, condition_text, owner) = (EXCLUDED.type,"
                      " EXCLUDED.driver_id, EXCLUDED.priority, EXCLUDED.max_attempts,"
                      " EXCLUDED.reschedule_delay_ms, EXCLUDED.init_data, EXCLUDED.state,"
                      " EXCLUDED.created_wall_ms, EXCLUDED.closed_wall_ms, EXCLUDED.condition_text,"
                      " EXCLUDED.owner)",
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
    [P_PENDING_PUT] = "INSERT INTO pending VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
                      " ON CONFLICT (service_id, task_id, execution_id) DO UPDATE SET"
                      " (engine_id, has_result, status, output, error, run_ms, expires_wall_ms,"
                      " owner) = (EXCLUDED.engine_id, EXCLUDED.has_result, EXCLUDED.status,"
                      " EXCLUDED.output, EXCLUDED.error, EXCLUDED.run_ms,"
                      " EXCLUDED.expires_wall_ms, EXCLUDED.owner)",
    [P_PENDING_DEL] = "DELETE FROM pending WHERE service_id = $1 AND task_id = $2"
                      " AND execution_id = $3",
    [P_CONFIG_SET] = "INSERT INTO config VALUES ($1, $2)"
                     " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    [P_CONFIG_DEL] = "DELETE FROM config WHERE key = $1",
    [P_ENGINE_PUT] = "INSERT INTO engines VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
                     " ON CONFLICT (engine_id) DO UPDATE SET (host, session, slots,"
                     " login_wall_ms, seen_wall_ms, online, owner) = (EXCLUDED.host,"
                     " EXCLUDED.session, EXCLUDED.slots, EXCLUDED.login_wall_ms,"
                     " EXCLUDED.seen_wall_ms, EXCLUDED.online, EXCLUDED.owner)",
    [P_EVENT] = "INSERT INTO events (wall_ms, kind, text) VALUES ($1, $2, $3)",
    [P_EVENT_TRIM] = "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - " S_XSTR (
        KEEL_STORE_PG_EVENTS_MAX),
    // Members share the meta rows (the execution id reservation: each
    // member's ids carry its own prefix): a value never goes down.
    [P_META_SET] = "INSERT INTO meta VALUES ($1, $2)"
                   " ON CONFLICT (name) DO UPDATE SET value = GREATEST(meta.value, EXCLUDED.value)",
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
    // Acknowledgements are sent as ranges of task ids (s_ack_ranges): a
    // driver acknowledges in completion order, which is nearly task order,
    // and one index range scan per run costs far less than a lookup per row.
    [B_TASK_ACKED] = "UPDATE tasks t SET acked = 1 FROM unnest($1::bytea[], $2::bigint[],"
                     " $3::bigint[]) AS u (k, lo, hi)"
                     " WHERE t.service_id = u.k AND t.task_id BETWEEN u.lo AND u.hi",
    [B_EXEC_PUT] = "INSERT INTO executions SELECT * FROM unnest($1::bigint[], $2::bytea[],"
                   " $3::bigint[], $4::bytea[], $5::bigint[], $6::bigint[])"
                   " ON CONFLICT (execution_id) DO UPDATE SET (service_id, task_id, engine_id,"
                   " attempt, started_wall_ms) = (EXCLUDED.service_id, EXCLUDED.task_id,"
                   " EXCLUDED.engine_id, EXCLUDED.attempt, EXCLUDED.started_wall_ms)",
    [B_EXEC_DEL] = "DELETE FROM executions WHERE execution_id = ANY ($1::bigint[])",
};

// The batch statement of a single one (S_COUNT when it is not batched).
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
            return S_COUNT;
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

// A row's key: FNV-1a over its key parameters (a task's service and task
// id; an execution's id) and the table, so rows of the tasks table and of
// the executions table never meet. A collision only sends batches early.
static uint64_t
s_row_key (const keel_store_pg_params_t *p, int nkey, uint8_t table)
{
    uint64_t h = 1469598103934665603ULL ^ table;
    for (int c = 0; c < nkey; c++) {
        const uint8_t *v = (const uint8_t *) p->values[c];
        for (int i = 0; v && i < p->lengths[c]; i++)
            h = (h ^ v[i]) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h ? h : 1;
}

// The slot of key in the key map: where it is, or the empty one it would
// take. The map is never full (grown at half).
static size_t
s_slot (const keel_store_pg_batches_t *b, uint64_t key)
{
    size_t j = key % b->slots;
    while (b->keys[j] && b->keys[j] != key)
        j = (j + 1) % b->slots;
    return j;
}

static bool
s_grow_keys (keel_store_pg_batches_t *b)
{
    size_t slots = b->slots ? b->slots * 2 : 4096;
    uint64_t *keys = calloc (slots, sizeof *keys);
    if (!keys)
        return false;
    keel_store_pg_batches_t bigger = { .keys = keys, .slots = slots };
    for (size_t i = 0; i < b->slots; i++)
        if (b->keys[i])
            keys[s_slot (&bigger, b->keys[i])] = b->keys[i];
    free (b->keys);
    b->keys = keys;
    b->slots = slots;
    return true;
}

void
keel_store_pg_batch_clear (keel_store_pg_t *self)
{
    keel_store_pg_batches_t *b = &self->batches;
    for (int i = 0; i < KEEL_STORE_PG_BATCHES; i++) {
        keel_store_pg_batch_t *batch = &b->batch[i];
        batch->rows = 0;
        for (int c = 0; c < KEEL_STORE_PG_PARAMS_MAX; c++) {
            batch->col[c].len = 0;
            batch->nulls[c] = false;
        }
    }
    b->open = 0;
    if (b->used) {
        memset (b->keys, 0, b->slots * sizeof *b->keys);
        b->used = 0;
    }
}

void
keel_store_pg_batch_free (keel_store_pg_t *self)
{
    keel_store_pg_batches_t *b = &self->batches;
    for (int i = 0; i < KEEL_STORE_PG_BATCHES; i++)
        for (int c = 0; c < KEEL_STORE_PG_PARAMS_MAX; c++)
            free (b->batch[i].col[c].data);
    free (b->keys);
    memset (b, 0, sizeof *b);
}

static void
s_be32 (uint8_t *out, uint32_t v)
{
    v = htonl (v);
    memcpy (out, &v, 4);
}

// One acknowledged task, read back from the batch's columns.
typedef struct {
    const uint8_t *svc;
    uint32_t len;
    int64_t id;
} s_ack_t;

static int
s_ack_cmp (const void *a, const void *b)
{
    const s_ack_t *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp (x->svc, y->svc, n);
    if (c || x->len != y->len)
        return c ? c : (x->len < y->len ? -1 : 1);
    return x->id < y->id ? -1 : x->id > y->id;
}

static uint32_t
s_rd32 (const uint8_t *p)
{
    uint32_t v;
    memcpy (&v, p, 4);
    return ntohl (v);
}

// Rewrites the TASK_ACKED batch (columns: service, task id) as ranges
// (service, first id, last id) of consecutive ids of one service. Returns
// false when out of memory (the batch is then sent as it is: one range
// per row).
static bool
s_ack_ranges (keel_store_pg_batch_t *batch)
{
    s_ack_t *acks = malloc (batch->rows * sizeof *acks);
    if (!acks)
        return false;
    const uint8_t *k = batch->col[0].data + S_ARRAY_HEADER,
                  *i = batch->col[1].data + S_ARRAY_HEADER;
    for (size_t r = 0; r < batch->rows; r++) {
        acks[r].len = s_rd32 (k);
        acks[r].svc = k + 4;
        k += 4 + acks[r].len;
        uint64_t be;
        memcpy (&be, i + 4, 8);
        acks[r].id = (int64_t) be64toh (be);
        i += 12;
    }
    qsort (acks, batch->rows, sizeof *acks, s_ack_cmp);
    keel_store_pg_buf_t cols[3] = { { 0 } };
    uint8_t header[S_ARRAY_HEADER] = { 0 };
    bool ok = s_put (&cols[0], header, sizeof header) && s_put (&cols[1], header, sizeof header)
              && s_put (&cols[2], header, sizeof header);
    size_t ranges = 0;
    for (size_t r = 0; ok && r < batch->rows;) {
        size_t e = r;
        while (e + 1 < batch->rows && acks[e + 1].len == acks[r].len
               && memcmp (acks[e + 1].svc, acks[r].svc, acks[r].len) == 0
               && acks[e + 1].id <= acks[e].id + 1)
            e++;
        uint8_t len[4], lo[12], hi[12];
        s_be32 (len, acks[r].len);
        s_be32 (lo, 8);
        s_be32 (hi, 8);
        uint64_t l = htobe64 ((uint64_t) acks[r].id), h = htobe64 ((uint64_t) acks[e].id);
        memcpy (lo + 4, &l, 8);
        memcpy (hi + 4, &h, 8);
        ok = s_put (&cols[0], len, 4) && s_put (&cols[0], acks[r].svc, acks[r].len)
             && s_put (&cols[1], lo, 12) && s_put (&cols[2], hi, 12);
        ranges++;
        r = e + 1;
    }
    free (acks);
    if (!ok) {
        for (int c = 0; c < 3; c++)
            free (cols[c].data);
        return false;
    }
    for (int c = 0; c < 3; c++) {
        free (batch->col[c].data);
        batch->col[c] = cols[c];
        batch->kinds[c] = c ? 'i' : 'b';
        batch->nulls[c] = false;
    }
    batch->ncols = 3;
    batch->rows = ranges;
    return true;
}

// Sends one batch as its array statement.
static keel_err
s_send_batch (keel_store_pg_t *self, int index)
{
    keel_store_pg_batch_t *batch = &self->batches.batch[index];
    if (P_COUNT + index == B_TASK_ACKED && !s_ack_ranges (batch)) {
        // No memory to sort: each row its own range (same columns twice).
        keel_store_pg_buf_t copy = { 0 };
        if (!s_put (&copy, batch->col[1].data, batch->col[1].len)) {
            keel_error_set (&self->last, KEEL_ERR_NOMEM,
                            "%s: out of memory sending acknowledgements", self->safe);
            return keel_store_pg_poison (self, KEEL_ERR_NOMEM);
        }
        free (batch->col[2].data);
        batch->col[2] = copy;
        batch->kinds[2] = 'i';
        batch->ncols = 3;
    }
    keel_store_pg_params_t p = { .n = batch->ncols };
    for (int c = 0; c < batch->ncols; c++) {
        uint8_t *h = batch->col[c].data;
        s_be32 (h, 1);                                    // one dimension
        s_be32 (h + 4, batch->nulls[c]);                  // has NULLs
        s_be32 (h + 8, batch->kinds[c] == 'i' ? 20 : 17); // bigint or bytea
        s_be32 (h + 12, (uint32_t) batch->rows);
        s_be32 (h + 16, 1); // lower bound
        p.values[c] = (const char *) h;
        p.lengths[c] = (int) batch->col[c].len;
        p.formats[c] = 1;
        if (batch->col[c].len > 0x7fffffff)
            p.too_big = true;
    }
    char name[16];
    snprintf (name, sizeof name, "k%d", P_COUNT + index);
    return keel_store_pg_send (self, name, s_sql[P_COUNT + index], &p);
}

// Sends every open batch: their rows have distinct keys, so their order
// among themselves does not matter; the journal's order against what
// comes next is kept by sending them now.
keel_err
keel_store_pg_batch_flush (keel_store_pg_t *self)
{
    keel_store_pg_batches_t *b = &self->batches;
    keel_err rc = KEEL_OK;
    for (int i = 0; rc == KEEL_OK && i < b->open; i++)
        rc = s_send_batch (self, b->order[i]);
    keel_store_pg_batch_clear (self);
    return rc;
}

// Appends a row to the batch of `batch` (the key map has room for it). The
// open batches are sent first when the row's key is already in one (the
// same row written twice in the turn: the journal's order decides which
// write wins) or the batch is full.
static keel_err
s_batch_add (keel_store_pg_t *self, s_stmt_t batch, const keel_store_pg_params_t *p)
{
    keel_store_pg_batches_t *b = &self->batches;
    if (self->poison)
        return self->poison;
    int index = (int) batch - P_COUNT;
    keel_store_pg_batch_t *mine = &b->batch[index];
    bool exec = batch == B_EXEC_PUT || batch == B_EXEC_DEL;
    uint64_t key = s_row_key (p, exec ? 1 : 2, exec ? 2 : 1);
    size_t slot = s_slot (b, key);
    if (b->keys[slot] || mine->rows >= S_BATCH_MAX) {
        keel_err rc = keel_store_pg_batch_flush (self);
        if (rc)
            return rc;
        slot = s_slot (b, key);
    }
    b->keys[slot] = key;
    b->used++;
    if (!mine->rows) {
        b->order[b->open++] = index;
        mine->ncols = p->n;
    }
    bool ok = true;
    for (int c = 0; c < p->n && ok; c++) {
        uint8_t header[S_ARRAY_HEADER] = { 0 };
        if (mine->col[c].len == 0)
            ok = s_put (&mine->col[c], header, sizeof header);
        mine->kinds[c] = p->kinds[c];
        uint8_t len[4];
        bool null = p->values[c] == NULL;
        s_be32 (len, null ? 0xffffffffu : (uint32_t) p->lengths[c]);
        mine->nulls[c] |= null;
        ok = ok && s_put (&mine->col[c], len, 4)
             && (null || s_put (&mine->col[c], p->values[c], (size_t) p->lengths[c]));
    }
    if (!ok) {
        keel_store_pg_batch_clear (self);
        keel_error_set (&self->last, KEEL_ERR_NOMEM, "%s: out of memory batching a write",
                        self->safe);
        return keel_store_pg_poison (self, KEEL_ERR_NOMEM);
    }
    mine->rows++;
    return KEEL_OK;
}

// Sends one write: batched when its kind is, else alone after the open
// batches (which keeps the journal's order).
static keel_err
s_send (keel_store_pg_t *self, s_stmt_t stmt, const keel_store_pg_params_t *p)
{
    s_stmt_t batch = s_batch_of (stmt);
    keel_store_pg_batches_t *b = &self->batches;
    // Too big: refused by keel_store_pg_send. No memory for the key map:
    // the row goes alone.
    if (batch != S_COUNT && !p->too_big && ((b->used + 1) * 2 <= b->slots || s_grow_keys (b)))
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

// True when a blob of the record is over what one libpq value can hold.
static bool
s_too_big (const keel_change_t *c)
{
    switch (c->kind) {
        case KEEL_CHANGE_SERVICE_PUT:
            return c->service.init_len > INT_MAX;
        case KEEL_CHANGE_TASK_PUT:
        case KEEL_CHANGE_TASK_RESULT:
        case KEEL_CHANGE_TASK_CHECKPOINT:
            return c->task.input_len > INT_MAX || c->task.output_len > INT_MAX
                   || c->task.checkpoint_len > INT_MAX;
        case KEEL_CHANGE_PENDING_PUT:
            return c->pending.output_len > INT_MAX;
        default:
            return false;
    }
}

keel_err
keel_store_pg_apply (keel_store_pg_t *self, const keel_change_t *c)
{
    if (self->poison)
        return self->poison;
    if (s_too_big (c)) {
        keel_error_set (&self->last, KEEL_ERR_STORE, "%s: a value over 2 GiB cannot be stored",
                        self->safe);
        return keel_store_pg_poison (self, KEEL_ERR_STORE);
    }
    // The transaction opens at the turn's first record, so that the
    // records to replay are queued before any of this turn's.
    if (!self->replaying) {
        keel_err rc = keel_store_pg_begin (self);
        if (rc)
            return rc;
    }
    // Kept until the commit is answered: sent again if the answer is lost.
    if (!self->replaying && keel_changes_add (self->txn, c) != KEEL_OK) {
        keel_error_set (&self->last, KEEL_ERR_NOMEM, "%s: out of memory keeping a write",
                        self->safe);
        return keel_store_pg_poison (self, KEEL_ERR_NOMEM);
    }
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
            keel_store_pg_p_str (&p, s->condition);
            keel_store_pg_p_int (&p, (int64_t) self->member_id);
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
            keel_store_pg_p_int (&p, (int64_t) self->member_id);
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
            keel_store_pg_p_int (&p, (int64_t) self->member_id);
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
