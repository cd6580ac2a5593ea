/*  outbox.c — the engine's result outbox (see outbox.h). */
#include "outbox.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"

#define S_RESULTS_PER_TURN 256 // held results (re)sent per loop turn

//  Bytes of held results one EngineLogin may carry (well below the
//  broker's default MaxMessageSize of 64 MiB); the rest follow as Results.
#define S_LOGIN_RESULT_BYTES (8 * 1024 * 1024)

//  Results leave in ResultBatch messages of at most S_BATCH_RESULTS Results;
//  once one holds S_BATCH_BYTES of output and error text the next Result
//  starts a new message (far below MaxMessageSize). A larger Result goes
//  alone, as a plain Result.
#define S_BATCH_RESULTS 512
#define S_BATCH_BYTES   (1024 * 1024)

//  A task that ended during this turn while ONLINE: its Result leaves at the
//  end of the turn with the others (keel_outbox_end_turn), then its "task
//  finished" line is written, from this copy (the task may be gone by then).
typedef struct {
    uint64_t execution_id;
    bool log; // write the "task finished" line
    bool ok;
    bool permanent; // failed permanently (no retry can succeed)
    uint64_t run_us;
    char *error; // failed: a copy of the error text, or NULL
} s_finished_t;

struct _keel_outbox_t {
    keel_held_t *held;
    keel_spool_t *spool;
    const char *engine_id;
    keel_ratelimit_t *task_log;
    const keel_outbox_ops_t *ops;
    void *arg;
    s_finished_t *finished; // tasks that ended this turn while ONLINE, in order
    size_t nfinished, finished_cap;
    //  The Results being collected for one message (s_batch_add, s_batch_send).
    keel_held_task_t *batch_tasks[S_BATCH_RESULTS];
    Keel__Result batch_results[S_BATCH_RESULTS];
    Keel__Result *batch_ptrs[S_BATCH_RESULTS];
    size_t nbatch;
    size_t batch_bytes;
    bool batch_failed; // a send failed: the connection takes no more now
};

keel_outbox_t *
keel_outbox_new (keel_held_t *held, keel_spool_t *spool, const char *engine_id,
                 keel_ratelimit_t *task_log, const keel_outbox_ops_t *ops, void *arg)
{
    keel_outbox_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->held = held;
    self->spool = spool;
    self->engine_id = engine_id;
    self->task_log = task_log;
    self->ops = ops;
    self->arg = arg;
    return self;
}

void
keel_outbox_destroy (keel_outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_outbox_t *self = *self_p;
    for (size_t i = 0; i < self->nfinished; i++)
        free (self->finished[i].error);
    free (self->finished);
    free (self);
    *self_p = NULL;
}

// ------------------------------------------------------------ spooling

static void
s_on_spooled (const Keel__Result *result, void *arg)
{
    keel_outbox_t *self = arg;
    keel_held_task_t *task = keel_held_add_done (self->held, result);
    if (task)
        keel_held_step (task, KEEL_HELD_EV_SPOOLED);
}

int
keel_outbox_load (keel_outbox_t *self, size_t max_bytes)
{
    return keel_spool_load (self->spool, max_bytes, s_on_spooled, self);
}

//  Writes a done task's result to the spool unless it is there (see
//  outbox.h for when results are spooled).
static void
s_spool (keel_outbox_t *self, keel_held_task_t *task)
{
    if (!keel_held_is_done (task) || task->spooled)
        return;
    Keel__Result result;
    keel_held_result_view (task, &result);
    keel_error_t err;
    if (keel_spool_write (self->spool, &result, &err) == KEEL_OK)
        keel_held_step (task, KEEL_HELD_EV_SPOOLED);
    else
        KEEL_ERROR ("engine", "result not spooled exec=%" PRIu64 " error=\"%s\"",
                    task->execution_id, err.text);
}

void
keel_outbox_spool_all (keel_outbox_t *self)
{
    for (size_t i = 0; i < keel_held_size (self->held); i++)
        s_spool (self, keel_held_at (self->held, i));
}

void
keel_outbox_disconnected (keel_outbox_t *self)
{
    for (size_t i = 0; i < keel_held_size (self->held); i++)
        keel_held_step (keel_held_at (self->held, i), KEEL_HELD_EV_DISCONNECTED);
}

//  Removes an entry and its spool file.
static void
s_remove (keel_outbox_t *self, keel_held_task_t *task)
{
    uint64_t id = task->execution_id;
    if (task->spooled)
        keel_spool_remove (self->spool, id);
    keel_held_remove (self->held, id);
}

void
keel_outbox_forget (keel_outbox_t *self, uint64_t execution_id)
{
    self->ops->stop (self->arg, execution_id);
    keel_held_task_t *task = keel_held_find (self->held, execution_id);
    if (task)
        s_remove (self, task);
}

void
keel_outbox_acked (keel_outbox_t *self, const Keel__ResultAck *ack)
{
    for (size_t i = 0; i < ack->n_execution_ids; i++) {
        keel_held_task_t *task = keel_held_find (self->held, ack->execution_ids[i]);
        //  A running task cannot have been acknowledged: the step refuses it.
        if (task && keel_held_step (task, KEEL_HELD_EV_ACKED))
            s_remove (self, task);
    }
}

// ------------------------------------------------------------ sending

//  Sends the Result of a done task on the current connection. True if it left.
static bool
s_send_result (keel_outbox_t *self, keel_held_task_t *task)
{
    Keel__Result result;
    keel_held_result_view (task, &result);
    keel_msg_t msg;
    if (self->ops->send (self->arg, keel_msg_result (&msg, &result)) != KEEL_OK)
        return false;
    keel_held_step (task, KEEL_HELD_EV_SENT);
    return true;
}

//  Starts collecting Results for the current connection.
static void
s_batch_begin (keel_outbox_t *self)
{
    self->nbatch = 0;
    self->batch_bytes = 0;
    self->batch_failed = false;
}

//  Sends the collected Results: one alone as a Result, more as one
//  ResultBatch, and marks them sent. When the connection does not take the
//  message they stay unsent (keel_outbox_flush offers them again next turn)
//  and nothing more is sent until the next s_batch_begin.
static void
s_batch_send (keel_outbox_t *self)
{
    size_t n = self->nbatch;
    self->nbatch = 0;
    self->batch_bytes = 0;
    if (n == 0 || self->batch_failed)
        return;
    if (n == 1) {
        self->batch_failed = !s_send_result (self, self->batch_tasks[0]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        keel_held_result_view (self->batch_tasks[i], &self->batch_results[i]);
        self->batch_ptrs[i] = &self->batch_results[i];
    }
    keel_msg_t msg;
    if (self->ops->send (self->arg, keel_msg_results (&msg, self->batch_ptrs, n)) == KEEL_OK) {
        for (size_t i = 0; i < n; i++)
            keel_held_step (self->batch_tasks[i], KEEL_HELD_EV_SENT);
    }
    else
        self->batch_failed = true;
}

//  Adds a done task's Result to the message being collected, sending that
//  message first when it is full or this Result would take it past
//  S_BATCH_BYTES. Returns false once a send failed.
static bool
s_batch_add (keel_outbox_t *self, keel_held_task_t *task)
{
    size_t bytes = keel_held_result_bytes (task);
    if (self->nbatch
        && (self->nbatch == S_BATCH_RESULTS || self->batch_bytes + bytes > S_BATCH_BYTES))
        s_batch_send (self);
    if (self->batch_failed)
        return false;
    self->batch_tasks[self->nbatch++] = task;
    self->batch_bytes += bytes;
    return true;
}

void
keel_outbox_flush (keel_outbox_t *self)
{
    if (!self->ops->online (self->arg))
        return;
    s_batch_begin (self);
    int taken = 0;
    for (size_t i = 0; i < keel_held_size (self->held) && taken < S_RESULTS_PER_TURN; i++) {
        keel_held_task_t *task = keel_held_at (self->held, i);
        if (task->state != KEEL_HELD_DONE)
            continue;
        if (!s_batch_add (self, task))
            break; // the connection cannot take more now
        taken++;
    }
    s_batch_send (self);
}

// ------------------------------------------------------------ checkpoints

//  A printable excerpt of data for the log ("37", "\x01..." as '?').
static void
s_excerpt (const uint8_t *data, size_t size, char *buf, size_t bufsize)
{
    size_t n = 0;
    for (size_t i = 0; i < size && n + 4 < bufsize; i++)
        buf[n++] = (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '"') ? (char) data[i] : '?';
    if (size > n && n + 3 < bufsize)
        n += (size_t) snprintf (buf + n, bufsize - n, "...");
    buf[n] = 0;
}

//  Sends the pending checkpoint of a running task on the current connection.
static void
s_send_checkpoint (keel_outbox_t *self, keel_held_task_t *task)
{
    keel_msg_t msg;
    keel_env_t *env =
        keel_msg_checkpoint (&msg, task->service_id, task->task_id, task->execution_id,
                             task->checkpoint, task->checkpoint_size);
    if (self->ops->send (self->arg, env) != KEEL_OK)
        return; // still pending: sent again after the next login
    task->checkpoint_pending = false;
    char shown[40];
    s_excerpt (task->checkpoint, task->checkpoint_size, shown, sizeof shown);
    KEEL_DEBUG ("engine", "checkpoint sent exec=%" PRIu64 " task=%" PRIu64 " bytes=%zu data=\"%s\"",
                task->execution_id, task->task_id, task->checkpoint_size, shown);
}

void
keel_outbox_checkpoint (keel_outbox_t *self, uint64_t execution_id, const uint8_t *data,
                        size_t size)
{
    keel_held_task_t *task = keel_held_find (self->held, execution_id);
    if (!task || task->state != KEEL_HELD_RUNNING)
        return;
    if (!keel_held_set_checkpoint (task, data, size)) {
        KEEL_ERROR ("engine", "checkpoint lost (out of memory) exec=%" PRIu64, execution_id);
        return;
    }
    //  While not ONLINE only the latest is kept; it is sent after login.
    if (self->ops->online (self->arg))
        s_send_checkpoint (self, task);
}

//  Sends every pending checkpoint (after a login: the broker has only seen
//  what reached it before the connection was lost).
static void
s_flush_checkpoints (keel_outbox_t *self)
{
    if (!self->ops->online (self->arg))
        return;
    for (size_t i = 0; i < keel_held_size (self->held); i++) {
        keel_held_task_t *task = keel_held_at (self->held, i);
        if (task->state == KEEL_HELD_RUNNING && task->checkpoint_pending)
            s_send_checkpoint (self, task);
    }
}

// ------------------------------------------------------------ tasks that end

static void
s_log_finished (uint64_t execution_id, bool ok, bool permanent, uint64_t run_us, const char *error)
{
    KEEL_INFO ("engine", "task finished exec=%" PRIu64 " status=%s run_ms=%lld%s%s%s", execution_id,
               ok          ? "ok"
               : permanent ? "failed-permanent"
                           : "failed",
               (long long) (run_us / 1000), ok ? "" : " error=\"",
               ok      ? ""
               : error ? error
                       : "",
               ok ? "" : "\"");
}

//  Remembers a task that ended this turn while ONLINE. False when out of memory.
static bool
s_finished_push (keel_outbox_t *self, keel_held_task_t *task, bool log)
{
    if (self->nfinished == self->finished_cap) {
        size_t cap = self->finished_cap ? self->finished_cap * 2 : 256;
        s_finished_t *grown = realloc (self->finished, cap * sizeof *grown);
        if (!grown)
            return false;
        self->finished = grown;
        self->finished_cap = cap;
    }
    s_finished_t *f = &self->finished[self->nfinished++];
    f->execution_id = task->execution_id;
    f->log = log;
    f->ok = task->ok;
    f->permanent = task->permanent;
    f->run_us = task->run_us;
    f->error = log && !task->ok && task->error ? strdup (task->error) : NULL;
    return true;
}

//  Hands a task that just became done on. ONLINE, its Result leaves at the
//  end of this turn, batched with the others that ended in it
//  (keel_outbox_end_turn), which writes its "task finished" line (when log)
//  after the send: returns true. Not ONLINE, it is spooled now (and sent
//  after the next login): returns false, the caller logs.
static bool
s_deliver (keel_outbox_t *self, keel_held_task_t *task, bool log)
{
    if (!self->ops->online (self->arg)) {
        s_spool (self, task);
        return false;
    }
    if (s_finished_push (self, task, log))
        return true;
    s_send_result (self, task); // no memory to hold it back: alone, now
    return false;
}

void
keel_outbox_finish (keel_outbox_t *self, const keel_runner_result_t *r)
{
    keel_held_task_t *task = keel_held_find (self->held, r->execution_id);
    if (!task || task->state != KEEL_HELD_RUNNING)
        return;
    keel_held_finish (task, r->ok, r->data, r->size, r->run_us);
    task->permanent = !r->ok && r->permanent;
    KEEL_JOURNAL ("exec_end", .service = task->service_id, .task = task->task_id,
                  .execution = task->execution_id, .status = r->ok ? "ok" : "failed");
    if (!s_deliver (self, task, true))
        s_log_finished (task->execution_id, task->ok, task->permanent, task->run_us, task->error);
}

void
keel_outbox_refuse (keel_outbox_t *self, uint64_t execution_id, const char *error)
{
    keel_held_task_t *task = keel_held_find (self->held, execution_id);
    if (!task || task->state != KEEL_HELD_RUNNING)
        return;
    keel_held_finish (task, false, (const uint8_t *) error, strlen (error), 0);
    s_deliver (self, task, false); // like any finished task
}

void
keel_outbox_end_turn (keel_outbox_t *self)
{
    if (self->nfinished == 0)
        return;
    //  A task cancelled or dropped since it ended is not sent; one already
    //  sent (a login in this turn sent it) is not sent twice. If the session
    //  left ONLINE during the turn, the connection's close spooled every
    //  result and the next login carries them.
    bool online = self->ops->online (self->arg);
    if (online) {
        s_batch_begin (self);
        for (size_t i = 0; i < self->nfinished; i++) {
            keel_held_task_t *task = keel_held_find (self->held, self->finished[i].execution_id);
            if (task && task->state == KEEL_HELD_DONE && !s_batch_add (self, task))
                break; // the connection takes no more now: keel_outbox_flush retries
        }
        s_batch_send (self);
    }
    for (size_t i = 0; i < self->nfinished; i++) {
        s_finished_t *f = &self->finished[i];
        if (!online) {
            keel_held_task_t *task = keel_held_find (self->held, f->execution_id);
            if (task)
                s_spool (self, task);
        }
        if (f->log)
            s_log_finished (f->execution_id, f->ok, f->permanent, f->run_us, f->error);
        free (f->error);
    }
    self->nfinished = 0;
}

// ------------------------------------------------------------ login

bool
keel_outbox_send_login (keel_outbox_t *self, keel_engine_login_args_t *login)
{
    size_t n = keel_held_size (self->held);
    Keel__HeldTask *held = calloc (n ? n : 1, sizeof *held);
    Keel__HeldTask **held_p = calloc (n ? n : 1, sizeof *held_p);
    Keel__Result *results = calloc (n ? n : 1, sizeof *results);
    bool sent = false;
    if (held && held_p && results) {
        size_t budget = S_LOGIN_RESULT_BYTES;
        for (size_t i = 0; i < n; i++) {
            keel_held_task_t *task = keel_held_at (self->held, i);
            const Keel__Result *result = NULL;
            //  Results ride in the login up to a byte budget, so a few large
            //  ones can never make the login too big for the broker; a done
            //  task past the budget is listed as running and its result
            //  follows as a Result once the verdicts are in (KEEP or HOLD).
            if (keel_held_is_done (task)) {
                size_t size = keel_held_result_bytes (task);
                bool carried = size <= budget;
                keel_held_step (task, carried ? KEEL_HELD_EV_CARRIED : KEEL_HELD_EV_LEFT_OUT);
                if (carried) {
                    budget -= size;
                    keel_held_result_view (task, &results[i]);
                    result = &results[i];
                }
            }
            keel_item_held_task (&held[i], task->service_id, task->task_id, task->execution_id,
                                 result);
            held_p[i] = &held[i];
        }
        login->n_held = n;
        login->held = held_p;
        keel_msg_t msg;
        sent = self->ops->send (self->arg, keel_msg_engine_login (&msg, login)) == KEEL_OK;
        login->n_held = 0;
        login->held = NULL;
    }
    free (held);
    free (held_p);
    free (results);
    return sent;
}

void
keel_outbox_logged_in (keel_outbox_t *self, const Keel__LoginReply *reply, int64_t now)
{
    size_t dropped = 0, held = 0;
    for (size_t i = 0; i < reply->n_verdicts; i++) {
        const Keel__TaskVerdict *v = reply->verdicts[i];
        keel_held_task_t *task = keel_held_find (self->held, v->execution_id);
        if (!task)
            continue;
        if (v->verdict == KEEL__VERDICT__VERDICT_DROP) {
            KEEL_LOG_LIMITED (self->task_log, now, KEEL_LOG_INFO, "engine",
                              "task dropped by broker exec=%" PRIu64, v->execution_id);
            keel_outbox_forget (self, v->execution_id);
            dropped++;
        }
        else if (v->verdict == KEEL__VERDICT__VERDICT_HOLD) {
            keel_held_step (task, KEEL_HELD_EV_HELD);
            held++;
        }
    }
    //  Every other result is offered again on this connection.
    for (size_t i = 0; i < keel_held_size (self->held); i++)
        keel_held_step (keel_held_at (self->held, i), KEEL_HELD_EV_LOGGED_IN);
    KEEL_DEBUG ("engine", "verdicts applied dropped=%zu held=%zu", dropped, held);
    KEEL_JOURNAL ("logged_in", .engine = self->engine_id,
                  .epoch = reply->has_epoch ? (int64_t) reply->epoch : 0,
                  .n = (int64_t) reply->n_verdicts);
    keel_outbox_flush (self);
    s_flush_checkpoints (self);
}
