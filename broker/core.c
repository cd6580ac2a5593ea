/*  core.c — the core's turn: the effects a turn collects (messages, the
    journal's task and execution rows, results, engine acknowledgements,
    acceptances), what a commit's outcome does to them, execution ids, and
    the core's lifecycle. See core.h; the handlers are core_driver.c and
    core_engine.c, timers and dispatch core_sched.c.
*/

#include "core_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "journal.h"
#include "log.h"

// Results per TaskResults message, and a byte budget per message.
#define KEEL_RESULTS_PER_MSG 512
#define KEEL_RESULTS_BYTES_PER_MSG (1024 * 1024)
// Execution ids are reserved from the store in blocks.
#define KEEL_EXEC_BLOCK 10000

// ---------------------------------------------------------------- outbox

void
keel_core_out_destroy (keel_core_out_t **out_p)
{
    keel_core_out_t *out = *out_p;
    if (!out)
        return;
    zframe_destroy (&out->route);
    zframe_destroy (&out->payload);
    free (out);
    *out_p = NULL;
}

static void
s_out_destroy (void **item_p)
{
    keel_core_out_destroy ((keel_core_out_t **) item_p);
}

keel_core_out_t *
keel_core_out_next (keel_core_t *self)
{
    keel_core_out_t *out = zlistx_first (self->outbox);
    if (out)
        zlistx_detach_cur (self->outbox);
    return out;
}

void
keel_core_send (keel_core_t *self, zframe_t *route, keel_env_t *env)
{
    env->epoch = self->epoch;
    env->has_epoch = true;
    zframe_t *payload = keel_wire_encode (env);
    keel_core_out_t *out = calloc (1, sizeof *out);
    if (!payload || !out) {
        zframe_destroy (&payload);
        free (out);
        KEEL_ERROR ("broker", "out of memory encoding %s", keel_wire_body_name (env));
        return;
    }
    out->route = zframe_dup (route);
    out->payload = payload;
    out->seq = self->hold_seq;
    zlistx_add_end (self->outbox, out);
}

void
keel_core_send_engine (keel_core_t *self, keel_engine_t *engine, keel_env_t *env)
{
    if (!engine->route)
        return;
    keel_core_send (self, engine->route, env);
    keel_peer_clock_sent (&engine->clock, self->now);
}

void
keel_core_send_driver (keel_core_t *self, keel_driver_rec_t *drv, keel_env_t *env)
{
    if (!drv->route || !drv->connected)
        return;
    keel_core_send (self, drv->route, env);
    keel_peer_clock_sent (&drv->clock, self->now);
}

void
keel_core_relogin (keel_core_t *self, zframe_t *route, const char *reason)
{
    Keel__Envelope env;
    Keel__Relogin relogin = KEEL__RELOGIN__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    relogin.reason = (char *) reason;
    env.body_case = KEEL__ENVELOPE__BODY_RELOGIN;
    env.relogin = &relogin;
    keel_core_send (self, route, &env);
}

// ---------------------------------------------------------------- the journal

keel_err
keel_core_change (keel_core_t *self, keel_change_t change)
{
    keel_err rc = keel_changes_add (self->changes, &change);
    if (rc != KEEL_OK)
        KEEL_ERROR ("broker", "out of memory recording a change (%s)",
                    keel_change_kind_name (change.kind));
    return rc;
}

// ---------------------------------------------------------------- dirty tasks

void
keel_core_touch (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id, uint8_t what)
{
    keel_task_t *task = keel_service_task (svc, task_id);
    if (!task)
        return;
    if (!task->dirty) {
        if (self->ndirty == self->dirty_cap) {
            size_t cap = self->dirty_cap ? self->dirty_cap * 2 : 1024;
            keel_ref_t *d = realloc (self->dirty, cap * sizeof *d);
            if (!d) {
                KEEL_ERROR ("broker", "out of memory tracking changed tasks");
                return;
            }
            self->dirty = d;
            self->dirty_cap = cap;
        }
        self->dirty[self->ndirty++] = (keel_ref_t) { svc, task_id };
    }
    task->dirty |= what;
}

void
keel_core_store_task (const keel_service_rec_t *svc, uint64_t task_id, const keel_task_t *task,
                        keel_store_task_t *row)
{
    memset (row, 0, sizeof *row);
    row->service_id = svc->id;
    row->task_id = task_id;
    row->state = (keel_task_state_t) task->state;
    row->attempts = task->attempts;
    row->input = task->input;
    row->input_len = task->input_len;
    row->result_acked = task->acked;
    row->checkpoint = task->checkpoint;
    row->checkpoint_len = task->checkpoint_len;
    row->checkpoint_wall_ms = task->checkpoint_wall_ms;
    if (task->result) {
        row->status = task->result->status;
        row->output = task->result->output;
        row->output_len = task->result->output_len;
        row->error = task->result->error;
        row->engine_id = task->result->engine_id;
        row->execution_id = task->result->execution_id;
        row->run_ms = task->result->run_ms;
        row->queued_ms = task->result->queued_ms;
    }
}

// ---------------------------------------------------------------- execution rows

static bool
s_push_id (uint64_t **ids, size_t *n, size_t *cap, uint64_t id)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        uint64_t *grown = realloc (*ids, c * sizeof *grown);
        if (!grown)
            return false;
        *ids = grown;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return true;
}

void
keel_core_exec_started (keel_core_t *self, keel_exec_t *x)
{
    x->started_wall_ms = self->wall;
    if (!s_push_id (&self->exec_puts, &self->nexec_puts, &self->exec_puts_cap, x->id))
        KEEL_ERROR ("broker", "out of memory recording execution %" PRIu64, x->id);
}

void
keel_core_exec_drop (keel_core_t *self, keel_exec_t *x)
{
    if (x->stored
        && !s_push_id (&self->exec_dels, &self->nexec_dels, &self->exec_dels_cap, x->id))
        KEEL_ERROR ("broker", "out of memory recording execution %" PRIu64, x->id);
    keel_model_exec_remove (self->model, x);
}

// Writes the execution rows of the turn: executions started since the last
// commit and still running, and deletes for stored ones that ended.
static keel_err
s_write_execs (keel_core_t *self)
{
    // Deletes first: an id that ended and was claimed again since (an
    // engine back with it) must end up stored.
    keel_err rc = KEEL_OK;
    for (size_t i = 0; rc == KEEL_OK && i < self->nexec_dels; i++)
        rc = keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_EXEC_DELETE,
                                                         .exec.execution_id = self->exec_dels[i] });
    for (size_t i = 0; rc == KEEL_OK && i < self->nexec_puts; i++) {
        keel_exec_t *x = keel_model_exec (self->model, self->exec_puts[i]);
        if (!x || x->stored)
            continue;
        keel_store_execution_t row = { x->id, x->service->id, x->task_id,
                                       x->engine ? x->engine->id : "", x->attempt,
                                       x->started_wall_ms };
        rc = keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_EXEC_PUT, .exec = row });
    }
    return rc;
}

// After a commit that succeeded: the rows written are stored.
static void
s_clear_execs (keel_core_t *self)
{
    for (size_t i = 0; i < self->nexec_puts; i++) {
        keel_exec_t *x = keel_model_exec (self->model, self->exec_puts[i]);
        if (x)
            x->stored = true;
    }
    self->nexec_puts = 0;
    self->nexec_dels = 0;
}

// Writes every changed task into the open transaction.
static keel_err
s_write_dirty (keel_core_t *self)
{
    keel_err rc = s_write_execs (self);
    for (size_t i = 0; rc == KEEL_OK && i < self->ndirty; i++) {
        keel_service_rec_t *svc = self->dirty[i].svc;
        uint64_t id = self->dirty[i].task_id;
        keel_task_t *t = keel_service_task (svc, id);
        if (!t || !t->dirty)
            continue;
        keel_store_task_t row;
        keel_core_store_task (svc, id, t, &row);
        if (t->dirty & KEEL_DIRTY_NEW)
            rc = keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_PUT, .task = row });
        else {
            // A result write carries the ack flag too (one statement when
            // the driver acked within the same commit window).
            if (t->dirty & KEEL_DIRTY_RESULT)
                rc = keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_RESULT,
                                                                 .task = row });
            else if (t->dirty & KEEL_DIRTY_STATE)
                rc = keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_STATE,
                                                                 .task = row });
            if (rc == KEEL_OK && (t->dirty & KEEL_DIRTY_ACK) && !(t->dirty & KEEL_DIRTY_RESULT))
                rc = keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                                                 .task = row });
            if (rc == KEEL_OK && (t->dirty & KEEL_DIRTY_CKPT))
                rc = keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_CHECKPOINT,
                                                                 .task = row });
        }
    }
    return rc;
}

static void
s_clear_dirty (keel_core_t *self)
{
    for (size_t i = 0; i < self->ndirty; i++) {
        keel_task_t *t = keel_service_task (self->dirty[i].svc, self->dirty[i].task_id);
        if (t) {
            t->dirty = 0;
            if (!t->durable) {
                t->durable = 1;
                self->dispatch_ready = true;
            }
        }
    }
    self->ndirty = 0;
}

// ---------------------------------------------------------------- results to drivers

void
keel_core_deliver (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id)
{
    if (self->nresults == self->results_cap) {
        size_t cap = self->results_cap ? self->results_cap * 2 : 1024;
        keel_ref_t *r = realloc (self->results, cap * sizeof *r);
        if (!r)
            return;     // the driver gets it at its next hello
        self->results = r;
        self->results_cap = cap;
    }
    self->results[self->nresults++] = (keel_ref_t) { svc, task_id };
}

static void
s_send_results_batch (keel_core_t *self, keel_driver_rec_t *drv, Keel__TaskResult **items,
                      size_t n)
{
    Keel__Envelope env;
    Keel__TaskResults msg = KEEL__TASK_RESULTS__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    msg.n_results = n;
    msg.results = items;
    env.body_case = KEEL__ENVELOPE__BODY_TASK_RESULTS;
    env.task_results = &msg;
    keel_core_send_driver (self, drv, &env);
}

// Encodes the turn's results into TaskResults messages, per driver.
void
keel_core_send_results (keel_core_t *self)
{
    if (self->nresults == 0)
        return;
    Keel__TaskResult *items = calloc (KEEL_RESULTS_PER_MSG, sizeof *items);
    Keel__TaskResult **ptrs = calloc (KEEL_RESULTS_PER_MSG, sizeof *ptrs);
    Keel__Timings *timings = calloc (KEEL_RESULTS_PER_MSG, sizeof *timings);
    uint8_t *done = calloc (self->nresults, 1);
    if (!items || !ptrs || !timings || !done)
        goto cleanup;
    // Group by driver: each pass takes the first unsent result's driver
    // and sends every result of that driver.
    for (size_t first = 0; first < self->nresults; first++) {
        if (done[first])
            continue;
        keel_driver_rec_t *drv = keel_model_driver (self->model, self->results[first].svc->driver_id);
        size_t n = 0, bytes = 0;
        for (size_t i = first; i < self->nresults; i++) {
            keel_service_rec_t *svc = self->results[i].svc;
            if (done[i] || strcmp (svc->driver_id, self->results[first].svc->driver_id) != 0)
                continue;
            done[i] = 1;
            keel_task_t *t = keel_service_task (svc, self->results[i].task_id);
            if (!drv || !t || !t->result || t->acked)
                continue;
            keel_task_result_t *r = t->result;
            Keel__TaskResult *tr = &items[n];
            keel__task_result__init (tr);
            keel__timings__init (&timings[n]);
            tr->service_id = svc->id;
            tr->has_task_id = true;
            tr->task_id = self->results[i].task_id;
            tr->has_status = true;
            tr->status = r->status;
            if (r->output) {
                tr->has_output = true;
                tr->output.data = r->output;
                tr->output.len = r->output_len;
            }
            tr->error = r->error;
            tr->engine_id = r->engine_id[0] ? r->engine_id : NULL;
            tr->has_execution_id = true;
            tr->execution_id = r->execution_id;
            tr->has_attempts = true;
            tr->attempts = keel_task_attempts (t);      // the number keel-admin shows
            timings[n].has_queued_ms = true;
            timings[n].queued_ms = r->queued_ms;
            timings[n].has_run_ms = true;
            timings[n].run_ms = r->run_ms;
            tr->timings = &timings[n];
            ptrs[n] = tr;
            n++;
            bytes += r->output_len + (r->error ? strlen (r->error) : 0) + 64;
            if (n == KEEL_RESULTS_PER_MSG || bytes >= KEEL_RESULTS_BYTES_PER_MSG) {
                s_send_results_batch (self, drv, ptrs, n);
                n = 0;
                bytes = 0;
            }
        }
        if (n)
            s_send_results_batch (self, drv, ptrs, n);
    }
cleanup:
    free (items);
    free (ptrs);
    free (timings);
    free (done);
    self->nresults = 0;
}

// ---------------------------------------------------------------- engine acks

void
keel_core_ack_engine (keel_core_t *self, keel_engine_t *engine, uint64_t exec_id)
{
    if (!engine)
        return;
    if (self->nacks == self->acks_cap) {
        size_t cap = self->acks_cap ? self->acks_cap * 2 : 256;
        keel_ack_t *a = realloc (self->acks, cap * sizeof *a);
        if (!a)
            return;     // the engine re-sends the result at its next login
        self->acks = a;
        self->acks_cap = cap;
    }
    self->acks[self->nacks++] = (keel_ack_t) { engine, exec_id };
}

static void
s_encode_acks (keel_core_t *self)
{
    if (self->nacks == 0)
        return;
    uint64_t *ids = calloc (self->nacks, sizeof *ids);
    uint8_t *done = calloc (self->nacks, 1);
    for (size_t first = 0; ids && done && first < self->nacks; first++) {
        if (done[first])
            continue;
        keel_engine_t *engine = self->acks[first].engine;
        size_t n = 0;
        for (size_t i = first; i < self->nacks; i++)
            if (!done[i] && self->acks[i].engine == engine) {
                done[i] = 1;
                ids[n++] = self->acks[i].exec_id;
            }
        Keel__Envelope env;
        Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
        ack.n_execution_ids = n;
        ack.execution_ids = ids;
        env.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
        env.result_ack = &ack;
        keel_core_send_engine (self, engine, &env);
    }
    free (ids);
    free (done);
    self->nacks = 0;
}

// ---------------------------------------------------------------- acceptances

void
keel_core_accept (keel_core_t *self, zframe_t *route, const char *service_id,
                    const uint64_t *task_ids, size_t n)
{
    keel_accept_t *acc = calloc (1, sizeof *acc);
    if (!acc)
        return;
    acc->route = zframe_dup (route);
    snprintf (acc->service_id, sizeof acc->service_id, "%s", service_id);
    if (n) {
        acc->task_ids = malloc (n * sizeof *acc->task_ids);
        if (!acc->task_ids) {
            zframe_destroy (&acc->route);
            free (acc);
            return;
        }
        memcpy (acc->task_ids, task_ids, n * sizeof *task_ids);
    }
    acc->n = n;
    zlistx_add_end (self->accepts, acc);
}

static void
s_accept_destroy (void **item_p)
{
    keel_accept_t *acc = *item_p;
    if (!acc)
        return;
    zframe_destroy (&acc->route);
    free (acc->task_ids);
    free (acc);
    *item_p = NULL;
}

// Sends Accepted (committed) or Refused{STORE_FULL} (commit failed) for
// every submission of the turn.
static void
s_answer_submissions (keel_core_t *self, bool committed, const char *error)
{
    keel_accept_t *acc;
    while ((acc = zlistx_first (self->accepts))) {
        Keel__Envelope env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
        Keel__Accepted accepted = KEEL__ACCEPTED__INIT;
        Keel__Refused refused = KEEL__REFUSED__INIT;
        if (committed) {
            accepted.service_id = acc->service_id;
            accepted.n_task_ids = acc->n;
            accepted.task_ids = acc->task_ids;
            env.body_case = KEEL__ENVELOPE__BODY_ACCEPTED;
            env.accepted = &accepted;
            for (size_t i = 0; keel_journal_fd_ >= 0 && i < acc->n; i++)
                KEEL_JOURNAL ("accepted", .service = acc->service_id, .task = acc->task_ids[i],
                              .epoch = (int64_t) self->epoch, .text = self->name);
        }
        else {
            refused.service_id = acc->service_id;
            refused.n_task_ids = acc->n;
            refused.task_ids = acc->task_ids;
            refused.has_code = true;
            refused.code = KEEL__REFUSE_CODE__REFUSE_STORE_FULL;
            refused.error = (char *) error;
            env.body_case = KEEL__ENVELOPE__BODY_REFUSED;
            env.refused = &refused;
            self->counters.submissions_refused += acc->n ? acc->n : 1;
        }
        keel_core_send (self, acc->route, &env);
        keel_driver_rec_t *drv = keel_model_driver_by_route (self->model, acc->route);
        if (drv)
            keel_peer_clock_sent (&drv->clock, self->now);
        zlistx_delete (self->accepts, zlistx_cursor (self->accepts));
    }
}

static void
s_drop_refs (keel_ref_t *refs, size_t *n, const keel_service_rec_t *svc)
{
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++)
        if (refs[i].svc != svc)
            refs[kept++] = refs[i];
    *n = kept;
}

void
keel_core_forget_service (keel_core_t *self, keel_service_rec_t *svc)
{
    s_drop_refs (self->dirty, &self->ndirty, svc);
    s_drop_refs (self->fresh, &self->nfresh, svc);
    s_drop_refs (self->results, &self->nresults, svc);
    void *handle = zlistx_find (self->fresh_services, svc);
    if (handle)
        zlistx_delete (self->fresh_services, handle);
    keel_sched_remove (self->sched, svc);
}

// Takes back an acknowledgement not sent yet (its result was not stored).
static void
s_withdraw_ack (keel_core_t *self, uint64_t exec_id)
{
    size_t kept = 0;
    for (size_t i = 0; i < self->nacks; i++)
        if (self->acks[i].exec_id != exec_id)
            self->acks[kept++] = self->acks[i];
    self->nacks = kept;
}

// Undoes the turn's new tasks and services after a failed commit.
static void
s_undo_fresh (keel_core_t *self)
{
    for (size_t i = 0; i < self->nfresh; i++) {
        keel_service_rec_t *svc = self->fresh[i].svc;
        keel_task_t *t = keel_service_task (svc, self->fresh[i].task_id);
        if (!t || t->durable)
            continue;
        keel_service_queue_remove (svc, self->fresh[i].task_id);
        // Executions dispatched this turn are cancelled on their engines.
        // Claims attached this turn (HOLD) go back to the pending claims,
        // so the driver's next submission of the task attaches them again
        // instead of running it a second time.
        while (t->execs) {
            keel_exec_t *x = t->execs;
            if (x->before_commit)
                keel_core_cancel_exec (self, x, "submission not stored");
            else {
                if (x->engine)
                    keel_core_pending_add (self, svc->id, self->fresh[i].task_id, x->id,
                                             x->engine->id, NULL);
                if (self->counters.claims_kept)
                    self->counters.claims_kept--;
                keel_core_exec_drop (self, x);
            }
        }
        if (t->result && !t->acked) {
            // A held result attached this turn: back to the pending claims,
            // and its engine must not be told to forget its copy.
            svc->unacked--;
            keel_task_result_t *r = t->result;
            t->result = NULL;
            s_withdraw_ack (self, r->execution_id);
            if (self->counters.claims_kept)
                self->counters.claims_kept--;
            char engine_id[sizeof r->engine_id];
            snprintf (engine_id, sizeof engine_id, "%s", r->engine_id);
            keel_core_pending_add (self, svc->id, self->fresh[i].task_id, r->execution_id,
                                     engine_id, r);
        }
        t->queued = 0;
        keel_service_task_drop (svc, self->fresh[i].task_id);
        self->counters.tasks_submitted--;      // refused, not submitted
    }
    self->nfresh = 0;
    keel_service_rec_t *svc;
    while ((svc = zlistx_first (self->fresh_services))) {
        zlistx_delete (self->fresh_services, zlistx_cursor (self->fresh_services));
        if (svc->total == 0) {
            keel_core_forget_service (self, svc);
            keel_model_service_remove (self->model, svc);
        }
    }
}

void
keel_core_fresh_task (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id)
{
    if (self->nfresh == self->fresh_cap) {
        size_t cap = self->fresh_cap ? self->fresh_cap * 2 : 1024;
        keel_ref_t *f = realloc (self->fresh, cap * sizeof *f);
        if (!f)
            return;
        self->fresh = f;
        self->fresh_cap = cap;
    }
    self->fresh[self->nfresh++] = (keel_ref_t) { svc, task_id };
}

// ---------------------------------------------------------------- execution ids

// Execution ids come from a sequence whose high-water mark is reserved in
// the store in blocks. An id is only handed out below a reservation that is
// already committed, so a broker restarted after a crash never reuses an id
// an engine may still hold. The next block is requested half a block early
// so dispatch rarely waits for it. Returns 0 when no committed id is left
// this turn (dispatch resumes after the next commit).
uint64_t
keel_core_next_exec_id (keel_core_t *self)
{
    if (self->exec_seq + KEEL_EXEC_BLOCK / 2 >= self->exec_seq_limit) {
        self->exec_seq_limit = self->exec_seq + KEEL_EXEC_BLOCK;
        keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_META_SET,
                                                    .meta = { "execution_seq", self->exec_seq_limit } });
    }
    for (int tries = 0; tries < 1000; tries++) {
        if (self->exec_seq + 1 > self->exec_seq_durable) {
            // The reservation waits for a commit (force one) or for the
            // syncer (s_synced sets dispatch_ready).
            if (self->exec_seq_limit > self->exec_seq_committed)
                self->force_commit = true;
            return 0;
        }
        uint64_t id = self->exec_prefix | ++self->exec_seq;
        // An engine may hold an execution id from another broker; skip it.
        if (!keel_model_exec (self->model, id))
            return id;
    }
    return 0;
}

void
keel_core_malformed (keel_core_t *self, const char *fmt, ...)
{
    self->counters.malformed_messages++;
    int64_t suppressed = 0;
    if (!keel_ratelimit_allow (&self->malformed_rl, self->now, &suppressed))
        return;
    char text[300];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    if (suppressed)
        KEEL_WARN ("broker", "malformed message dropped: %s (and %lld more not logged)", text,
                   (long long) suppressed);
    else
        KEEL_WARN ("broker", "malformed message dropped: %s", text);
}

// to the events table now (the failed turns' events were rolled back with
// them), the failure at the time it began.
static void
s_store_recovered (keel_core_t *self)
{
    int64_t now_wall = self->wall;
    char text[400];
    snprintf (text, sizeof text, "failed_commits=%llu error=\"%s\"",
              (unsigned long long) self->store_failed_commits, self->store_failed_text);
    keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_EVENT,
                                                .event = { self->store_failed_wall, "store-failed", text } });
    keel_core_event (self, "store-recovered", "failed_commits=%llu down_ms=%lld",
                       (unsigned long long) self->store_failed_commits,
                       (long long) (now_wall - self->store_failed_wall));
}

// Commits the turn's writes. Returns true on success. Acceptances and
// engine acknowledgements are sent only after a commit that succeeded; a
// failed commit undoes the turn's new submissions and refuses them.
// (dispatch state, engine acknowledgements, driver acks, checkpoints) has
// been uncommitted for CommitDelay. Everything else rides along with the
// next commit, so a turn that only moves work costs no disk sync.
bool
keel_core_commit_due (keel_core_t *self)
{
    if (zlistx_size (self->accepts) || self->force_commit)
        return true;
    if (self->ndirty || self->nacks || self->nexec_puts || self->nexec_dels
        || keel_changes_size (self->changes)) {
        if (self->uncommitted_since == 0)
            self->uncommitted_since = self->now;
        return self->now - self->uncommitted_since >= self->commit_delay_ms;
    }
    return false;
}

// A loop that did not wake for 2·H or more (SIGSTOP, a paused VM, a
// stalled disk) said nothing to its peers meanwhile. Engines give a broker
// up after 3·H of silence and the last heartbeat they had from us may be H
// old, so some may be in their login backoff now, holding the results of
// tasks that finished meanwhile. As after a restart (DESIGN §5), they get
// one EngineLoginWindow to log in again before their work is queued
// elsewhere (keel_core_engine_lost), and no peer is judged by a silence
// the broker caused: its liveness clock starts again now. CLOCK_MONOTONIC
// (zclock_mono) runs on while the process is stopped, so the gap shows.
void
keel_core_turn_begin (keel_core_t *self)
{
    int64_t gap = self->now - self->last_wake;
    self->last_wake = self->now;
    if (gap < 2 * self->heartbeat_ms)
        return;
    zlistx_t *engines = keel_model_engines (self->model);
    size_t online = 0;
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        if (e->state == KEEL_ENGINE_ONLINE) {
            keel_peer_clock_received (&e->clock, self->now);
            online++;
        }
    }
    zlistx_t *drivers = keel_model_drivers (self->model);
    for (keel_driver_rec_t *d = zlistx_first (drivers); d; d = zlistx_next (drivers))
        if (d->connected)
            keel_peer_clock_received (&d->clock, self->now);
    if (self->login_window_ms > 0)
        self->pause_window_end = self->now + self->login_window_ms;
    keel_core_event (self, "broker-paused",
                       "noticed a pause of %.1f s (no loop turn; HeartbeatInterval %lld ms): "
                       "giving engines the login window (EngineLoginWindow %lld ms) before "
                       "their tasks are queued again engines_online=%zu",
                       gap / 1000.0, (long long) self->heartbeat_ms,
                       (long long) self->login_window_ms, online);
}

// One loop turn. Returns false when the loop should end.

// ---------------------------------------------------------------- commits

bool
keel_core_uncommitted (const keel_core_t *self)
{
    return self->ndirty || self->nacks || self->nexec_puts || self->nexec_dels
           || keel_changes_size (self->changes);
}

bool
keel_core_sync_now (const keel_core_t *self)
{
    return self->sync_now;
}

int64_t
keel_core_wait_ms (const keel_core_t *self)
{
    if (self->dispatch_ready || zlistx_size (self->outbox) || self->force_commit)
        return 0;
    int64_t t = self->heartbeat_ms / 4;
    t = t < 5 ? 5 : t > 250 ? 250 : t;
    if (self->uncommitted_since) {
        int64_t due = self->uncommitted_since + self->commit_delay_ms - self->now;
        if (due < t)
            t = due < 0 ? 0 : due;
    }
    return t;
}

keel_changes_t *
keel_core_changes (keel_core_t *self)
{
    return self->changes;
}

keel_err
keel_core_prepare_commit (keel_core_t *self, bool *writes_p)
{
    self->limit_in_txn = self->exec_seq_limit;
    // Only a commit that wrote something proves the store writable again.
    *writes_p = self->ndirty || self->nexec_puts || self->nexec_dels
                || keel_changes_size (self->changes);
    return s_write_dirty (self);
}

uint64_t
keel_core_committed (keel_core_t *self, bool wrote)
{
    self->force_commit = false;
    self->counters.store_commits++;
    self->uncommitted_since = 0;
    if (self->store_failed && wrote) {
        KEEL_INFO ("broker", "store writable again; accepting submissions");
        self->store_failed = false;
        s_store_recovered (self);
    }
    if (wrote || self->sync_now)
        self->commit_seq++;     // a DROP's LoginReply waits for this number
    if (self->limit_in_txn > self->exec_seq_committed) {
        self->exec_seq_committed = self->limit_in_txn;
        self->exec_committed_seq = self->commit_seq;
    }
    s_clear_dirty (self);
    s_clear_execs (self);
    self->nfresh = 0;
    zlistx_purge (self->fresh_services);
    // Acceptances and result acknowledgements promise durability: they
    // carry this commit's number, and the loop sends them once it is
    // durable (at once without a syncer).
    self->hold_seq = self->commit_seq;
    s_answer_submissions (self, true, NULL);
    s_encode_acks (self);
    self->hold_seq = 0;
    self->sync_now = false;
    return self->commit_seq;
}

void
keel_core_commit_failed (keel_core_t *self, const char *error)
{
    // Memory keeps the turn's effects except new submissions; the changed
    // tasks and the engine acknowledgements wait for the next commit. The
    // execution-id reservation written in this transaction is gone too: ask
    // for it again, so no id past the committed one is ever treated as safe.
    self->force_commit = false;
    self->exec_seq_limit = self->exec_seq_committed;
    self->sync_now = false;
    self->counters.store_failures++;
    if (!self->store_failed) {
        KEEL_ERROR ("broker", "store commit failed: %s; refusing new submissions until it recovers",
                    error);
        self->store_failed_wall = self->wall;
        self->store_failed_commits = 0;
        snprintf (self->store_failed_text, sizeof self->store_failed_text, "%s", error);
    }
    self->store_failed_commits++;
    self->store_failed = true;
    s_undo_fresh (self);
    s_answer_submissions (self, false, error);
}

void
keel_core_synced (keel_core_t *self, uint64_t seq)
{
    if (seq > self->synced_seq)
        self->synced_seq = seq;
    if (self->exec_committed_seq <= self->synced_seq
        && self->exec_seq_committed > self->exec_seq_durable) {
        self->exec_seq_durable = self->exec_seq_committed;
        self->dispatch_ready = true;    // dispatch may have waited for ids
    }
}

uint64_t
keel_core_synced_seq (const keel_core_t *self)
{
    return self->synced_seq;
}

void
keel_core_count_sync (keel_core_t *self)
{
    self->counters.store_syncs++;
}

void
keel_core_sync_failed (keel_core_t *self)
{
    self->counters.store_failures++;
}

// ---------------------------------------------------------------- clocks

void
keel_core_clock (keel_core_t *self, int64_t now, int64_t wall)
{
    self->now = now;
    self->wall = wall;
}

// ---------------------------------------------------------------- reads

keel_model_t *
keel_core_model (keel_core_t *self)
{
    return self->model;
}

const keel_counters_t *
keel_core_counters (const keel_core_t *self)
{
    return &self->counters;
}

uint64_t
keel_core_epoch (const keel_core_t *self)
{
    return self->epoch;
}

const char *
keel_core_name (const keel_core_t *self)
{
    return self->name;
}

// ---------------------------------------------------------------- lifecycle

static uint64_t
s_name_prefix (const char *name)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t) *p) * 16777619u;
    return ((uint64_t) (h % 255 + 1)) << 40;
}

keel_core_t *
keel_core_new (keel_settings_t *settings, int64_t now, int64_t wall)
{
    keel_core_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->settings = settings;
    snprintf (self->name, sizeof self->name, "%s", keel_broker_cfg_Name (settings));
    keel_core_apply_settings (self);
    self->started_mono = now;
    self->now = now;
    self->wall = wall;
    self->last_wake = now;
    self->malformed_rl = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "malformed message");
    self->rl[KEEL_CORE_RL_EVENTS] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 100, "event");
    self->rl[KEEL_CORE_RL_DRIVERS] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "driver");
    self->rl[KEEL_CORE_RL_VALUES] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "peer value");
    self->rl[KEEL_CORE_RL_TASKS] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "task");
    self->model = keel_model_new ();
    self->sched = keel_sched_new ();
    self->outbox = zlistx_new ();
    self->accepts = zlistx_new ();
    self->fresh_services = zlistx_new ();
    self->pending = zhashx_new ();
    self->changes = keel_changes_new ();
    if (!self->changes || !self->model || !self->sched || !self->outbox || !self->accepts
        || !self->fresh_services || !self->pending) {
        keel_core_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->outbox, s_out_destroy);
    zlistx_set_destructor (self->accepts, s_accept_destroy);
    self->exec_prefix = s_name_prefix (self->name);
    return self;
}

void
keel_core_destroy (keel_core_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_core_t *self = *self_p;
    if (self->pending)
        keel_core_pending_clear (self);
    zhashx_destroy (&self->pending);
    zlistx_destroy (&self->outbox);
    zlistx_destroy (&self->accepts);
    zlistx_destroy (&self->fresh_services);
    free (self->dirty);
    free (self->fresh);
    free (self->results);
    free (self->acks);
    free (self->exec_puts);
    free (self->exec_dels);
    keel_sched_destroy (&self->sched);
    keel_model_destroy (&self->model);
    keel_changes_destroy (&self->changes);
    free (self);
    *self_p = NULL;
}
