/*  broker.c — keel-broker's event loop: sockets, turns, group commit.

    The message handlers live in broker_driver.c and broker_engine.c; the
    state they share is struct _keel_broker_t in broker_int.h. See broker.h
    for the turn structure.
*/

#include "broker_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "config.h"
#include "journal.h"
#include "log.h"

// Messages read per socket per turn: bounds the work (and the latency of
// everything else) one turn can take.
#define KEEL_TURN_MAX_MESSAGES 4096
// Results per TaskResults message, and a byte budget per message.
#define KEEL_RESULTS_PER_MSG 512
#define KEEL_RESULTS_BYTES_PER_MSG (1024 * 1024)
// Execution ids are reserved from the store in blocks.
#define KEEL_EXEC_BLOCK 10000

// ---------------------------------------------------------------- outbox

typedef struct {
    zframe_t *route;
    zframe_t *payload;
    uint64_t seq;           // held: leaves once commit seq is durable
} s_out_t;

static void
s_out_destroy (void **item_p)
{
    s_out_t *out = *item_p;
    if (!out)
        return;
    zframe_destroy (&out->route);
    zframe_destroy (&out->payload);
    free (out);
    *item_p = NULL;
}

void
keel_broker_send (keel_broker_t *self, zframe_t *route, keel_env_t *env)
{
    env->epoch = self->epoch;
    env->has_epoch = true;
    zframe_t *payload = keel_wire_encode (env);
    s_out_t *out = calloc (1, sizeof *out);
    if (!payload || !out) {
        zframe_destroy (&payload);
        free (out);
        KEEL_ERROR ("broker", "out of memory encoding %s", keel_wire_body_name (env));
        return;
    }
    out->route = zframe_dup (route);
    out->payload = payload;
    out->seq = self->hold_seq;
    if (out->seq > self->synced_seq)
        zlistx_add_end (self->held, out);
    else
        zlistx_add_end (self->outbox, out);
}

void
keel_broker_send_engine (keel_broker_t *self, keel_engine_t *engine, keel_env_t *env)
{
    if (!engine->route)
        return;
    keel_broker_send (self, engine->route, env);
    keel_peer_clock_sent (&engine->clock, self->now);
}

void
keel_broker_send_driver (keel_broker_t *self, keel_driver_rec_t *drv, keel_env_t *env)
{
    if (!drv->route || !drv->connected)
        return;
    keel_broker_send (self, drv->route, env);
    keel_peer_clock_sent (&drv->clock, self->now);
}

void
keel_broker_relogin (keel_broker_t *self, zframe_t *route, const char *reason)
{
    Keel__Envelope env;
    Keel__Relogin relogin = KEEL__RELOGIN__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    relogin.reason = (char *) reason;
    env.body_case = KEEL__ENVELOPE__BODY_RELOGIN;
    env.relogin = &relogin;
    keel_broker_send (self, route, &env);
}

static void
s_flush (keel_broker_t *self)
{
    s_out_t *out;
    while ((out = zlistx_first (self->outbox))) {
        if (keel_wire_send_frames (self->router, out->route, out->payload) != KEEL_OK)
            keel_broker_send_failed (self, errno);
        zlistx_delete (self->outbox, zlistx_cursor (self->outbox));
    }
}

// Every commit up to seq is durable: held messages up to it leave with the
// turn's outbox, and an execution-id reservation it wrote becomes usable.
static void
s_synced (keel_broker_t *self, uint64_t seq)
{
    if (seq > self->synced_seq)
        self->synced_seq = seq;
    // Not only a prefix: a LoginReply held for a commit that then failed
    // waits for a later one, ahead of messages whose commit is durable.
    for (s_out_t *out = zlistx_first (self->held); out; out = zlistx_next (self->held))
        if (out->seq <= self->synced_seq) {
            zlistx_detach_cur (self->held);
            zlistx_add_end (self->outbox, out);
        }
    if (self->exec_committed_seq <= self->synced_seq
        && self->exec_seq_committed > self->exec_seq_durable) {
        self->exec_seq_durable = self->exec_seq_committed;
        self->dispatch_ready = true;    // dispatch may have waited for ids
    }
}

// The syncer failed to flush: what the WAL holds cannot be trusted to be
// on disk. Nothing held is ever sent; the loop stops and the broker exits
// non-zero. Drivers and engines keep what was not acknowledged and bring
// it to the restarted broker or to a failover broker.
static void
s_sync_failed (keel_broker_t *self, const keel_error_t *err)
{
    KEEL_ERROR ("broker", "%s; stopping without acknowledging anything more "
                "(restart the broker: it recovers from the store)", err->text);
    self->counters.store_failures++;
    self->fatal = true;
    self->stop = true;
    zlistx_purge (self->held);
}

static void
s_recv_syncer (keel_broker_t *self)
{
    while (self->syncer && !self->fatal
           && (zsock_events (keel_syncer_actor (self->syncer)) & ZMQ_POLLIN)) {
        uint64_t seq = 0;
        keel_error_t err = { "" };
        self->counters.store_syncs++;
        if (keel_syncer_recv (self->syncer, &seq, &err) != KEEL_OK)
            s_sync_failed (self, &err);
        else
            s_synced (self, seq);
    }
}

// Makes every commit so far durable before returning (blocking).
static void
s_sync_now (keel_broker_t *self)
{
    if (!self->syncer || self->fatal || self->synced_seq >= self->commit_seq)
        return;
    keel_error_t err = { "" };
    self->counters.store_syncs++;
    if (keel_store_sync (self->store, &err) != KEEL_OK)
        s_sync_failed (self, &err);
    else
        s_synced (self, self->commit_seq);
}

// ---------------------------------------------------------------- the journal

keel_err
keel_broker_change (keel_broker_t *self, keel_change_t change)
{
    keel_err rc = keel_changes_add (self->changes, &change);
    if (rc != KEEL_OK)
        KEEL_ERROR ("broker", "out of memory recording a change (%s)",
                    keel_change_kind_name (change.kind));
    return rc;
}

keel_err
keel_broker_commit_now (keel_broker_t *self, keel_error_t *err)
{
    keel_err rc = keel_store_apply_all (self->store, self->changes);
    if (rc == KEEL_OK)
        rc = keel_store_commit (self->store, err);
    else {
        keel_error_set (err, rc, "%s", keel_store_last_error (self->store));
        keel_store_rollback (self->store);
    }
    keel_changes_clear (self->changes);
    return rc;
}

// ---------------------------------------------------------------- dirty tasks

void
keel_broker_touch (keel_broker_t *self, keel_service_rec_t *svc, uint64_t task_id, uint8_t what)
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
keel_broker_store_task (const keel_service_rec_t *svc, uint64_t task_id, const keel_task_t *task,
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
keel_broker_exec_started (keel_broker_t *self, keel_exec_t *x)
{
    x->started_wall_ms = self->wall;
    if (!s_push_id (&self->exec_puts, &self->nexec_puts, &self->exec_puts_cap, x->id))
        KEEL_ERROR ("broker", "out of memory recording execution %" PRIu64, x->id);
}

void
keel_broker_exec_drop (keel_broker_t *self, keel_exec_t *x)
{
    if (x->stored
        && !s_push_id (&self->exec_dels, &self->nexec_dels, &self->exec_dels_cap, x->id))
        KEEL_ERROR ("broker", "out of memory recording execution %" PRIu64, x->id);
    keel_model_exec_remove (self->model, x);
}

// Writes the execution rows of the turn: executions started since the last
// commit and still running, and deletes for stored ones that ended.
static keel_err
s_write_execs (keel_broker_t *self)
{
    // Deletes first: an id that ended and was claimed again since (an
    // engine back with it) must end up stored.
    keel_err rc = KEEL_OK;
    for (size_t i = 0; rc == KEEL_OK && i < self->nexec_dels; i++)
        rc = keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_EXEC_DELETE,
                                                         .exec.execution_id = self->exec_dels[i] });
    for (size_t i = 0; rc == KEEL_OK && i < self->nexec_puts; i++) {
        keel_exec_t *x = keel_model_exec (self->model, self->exec_puts[i]);
        if (!x || x->stored)
            continue;
        keel_store_execution_t row = { x->id, x->service->id, x->task_id,
                                       x->engine ? x->engine->id : "", x->attempt,
                                       x->started_wall_ms };
        rc = keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_EXEC_PUT, .exec = row });
    }
    return rc;
}

// After a commit that succeeded: the rows written are stored.
static void
s_clear_execs (keel_broker_t *self)
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
s_write_dirty (keel_broker_t *self)
{
    keel_err rc = s_write_execs (self);
    for (size_t i = 0; rc == KEEL_OK && i < self->ndirty; i++) {
        keel_service_rec_t *svc = self->dirty[i].svc;
        uint64_t id = self->dirty[i].task_id;
        keel_task_t *t = keel_service_task (svc, id);
        if (!t || !t->dirty)
            continue;
        keel_store_task_t row;
        keel_broker_store_task (svc, id, t, &row);
        if (t->dirty & KEEL_DIRTY_NEW)
            rc = keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_PUT, .task = row });
        else {
            // A result write carries the ack flag too (one statement when
            // the driver acked within the same commit window).
            if (t->dirty & KEEL_DIRTY_RESULT)
                rc = keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_RESULT,
                                                                 .task = row });
            else if (t->dirty & KEEL_DIRTY_STATE)
                rc = keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_STATE,
                                                                 .task = row });
            if (rc == KEEL_OK && (t->dirty & KEEL_DIRTY_ACK) && !(t->dirty & KEEL_DIRTY_RESULT))
                rc = keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                                                 .task = row });
            if (rc == KEEL_OK && (t->dirty & KEEL_DIRTY_CKPT))
                rc = keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_CHECKPOINT,
                                                                 .task = row });
        }
    }
    return rc;
}

static void
s_clear_dirty (keel_broker_t *self)
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
keel_broker_deliver (keel_broker_t *self, keel_service_rec_t *svc, uint64_t task_id)
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
s_send_results_batch (keel_broker_t *self, keel_driver_rec_t *drv, Keel__TaskResult **items,
                      size_t n)
{
    Keel__Envelope env;
    Keel__TaskResults msg = KEEL__TASK_RESULTS__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    msg.n_results = n;
    msg.results = items;
    env.body_case = KEEL__ENVELOPE__BODY_TASK_RESULTS;
    env.task_results = &msg;
    keel_broker_send_driver (self, drv, &env);
}

// Encodes the turn's results into TaskResults messages, per driver.
static void
s_encode_results (keel_broker_t *self)
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
keel_broker_ack_engine (keel_broker_t *self, keel_engine_t *engine, uint64_t exec_id)
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
s_encode_acks (keel_broker_t *self)
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
        keel_broker_send_engine (self, engine, &env);
    }
    free (ids);
    free (done);
    self->nacks = 0;
}

// ---------------------------------------------------------------- acceptances

void
keel_broker_accept (keel_broker_t *self, zframe_t *route, const char *service_id,
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
s_answer_submissions (keel_broker_t *self, bool committed, const char *error)
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
        keel_broker_send (self, acc->route, &env);
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
keel_broker_forget_service (keel_broker_t *self, keel_service_rec_t *svc)
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
s_withdraw_ack (keel_broker_t *self, uint64_t exec_id)
{
    size_t kept = 0;
    for (size_t i = 0; i < self->nacks; i++)
        if (self->acks[i].exec_id != exec_id)
            self->acks[kept++] = self->acks[i];
    self->nacks = kept;
}

// Undoes the turn's new tasks and services after a failed commit.
static void
s_undo_fresh (keel_broker_t *self)
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
                keel_broker_cancel_exec (self, x, "submission not stored");
            else {
                if (x->engine)
                    keel_broker_pending_add (self, svc->id, self->fresh[i].task_id, x->id,
                                             x->engine->id, NULL);
                if (self->counters.claims_kept)
                    self->counters.claims_kept--;
                keel_broker_exec_drop (self, x);
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
            keel_broker_pending_add (self, svc->id, self->fresh[i].task_id, r->execution_id,
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
            keel_broker_forget_service (self, svc);
            keel_model_service_remove (self->model, svc);
        }
    }
}

void
keel_broker_fresh_task (keel_broker_t *self, keel_service_rec_t *svc, uint64_t task_id)
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
keel_broker_next_exec_id (keel_broker_t *self)
{
    if (self->exec_seq + KEEL_EXEC_BLOCK / 2 >= self->exec_seq_limit) {
        self->exec_seq_limit = self->exec_seq + KEEL_EXEC_BLOCK;
        keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_META_SET,
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

// ---------------------------------------------------------------- the turn

// Receives one frame without waiting into msg (initialised here). Returns
// false when nothing is waiting.
static bool
s_recv_frame (void *sock, zmq_msg_t *msg, int flags)
{
    zmq_msg_init (msg);
    if (zmq_msg_recv (msg, sock, flags) >= 0)
        return true;
    zmq_msg_close (msg);
    return false;
}

// Reads every waiting message (bounded per turn) without asking the socket
// for its events between messages: a receive that would block ends the
// batch.
static void
s_recv_router (keel_broker_t *self)
{
    void *sock = zsock_resolve (self->router);
    for (int i = 0; i < KEEL_TURN_MAX_MESSAGES; i++) {
        zmq_msg_t head, body;
        if (!s_recv_frame (sock, &head, ZMQ_DONTWAIT))
            break;
        self->now = zclock_mono ();
        self->wall = zclock_time ();
        size_t frames = 1;
        bool have_body = zmq_msg_more (&head) && s_recv_frame (sock, &body, 0);
        if (have_body) {
            frames++;
            // Extra frames: counted, dropped.
            for (int more = zmq_msg_more (&body); more; frames++) {
                zmq_msg_t extra;
                if (!s_recv_frame (sock, &extra, 0))
                    break;
                more = zmq_msg_more (&extra);
                zmq_msg_close (&extra);
            }
        }
        if (frames != 2)
            keel_broker_malformed (self, "expected 2 frames (routing id + message), got %zu",
                                   frames);
        else {
            zframe_t *route = zframe_new (zmq_msg_data (&head), zmq_msg_size (&head));
            keel_error_t err;
            keel_env_t *env = keel_wire_decode (zmq_msg_data (&body), zmq_msg_size (&body), &err);
            if (!env)
                keel_broker_malformed (self, "%s", err.text);
            else if (route)
                keel_broker_handle (self, route, env);
            keel_wire_free (&env);
            zframe_destroy (&route);
        }
        zmq_msg_close (&head);
        if (have_body)
            zmq_msg_close (&body);
    }
}

void
keel_broker_malformed (keel_broker_t *self, const char *fmt, ...)
{
    self->counters.malformed_messages++;
    int64_t suppressed = 0;
    if (!keel_ratelimit_allow (&self->malformed_rl, zclock_mono (), &suppressed))
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

static void
s_recv_admin (keel_broker_t *self)
{
    for (int i = 0; i < 64; i++) {
        if (!(zsock_events (self->admin) & ZMQ_POLLIN))
            break;
        zmsg_t *msg = zmsg_recv (self->admin);
        if (!msg)
            break;
        zlistx_add_end (self->admin_queue, msg);
    }
}

static void
s_answer_admin (keel_broker_t *self)
{
    zmsg_t *msg;
    while ((msg = zlistx_first (self->admin_queue))) {
        zlistx_detach_cur (self->admin_queue);
        keel_broker_admin (self, msg);
        zmsg_destroy (&msg);
    }
}

static int64_t
s_poll_timeout (keel_broker_t *self)
{
    if (self->dispatch_ready || zlistx_size (self->outbox) || self->force_commit)
        return 0;
    int64_t t = self->heartbeat_ms / 4;
    t = t < 5 ? 5 : t > 250 ? 250 : t;
    if (self->uncommitted_since) {
        int64_t due = self->uncommitted_since + self->commit_delay_ms - zclock_mono ();
        if (due < t)
            t = due < 0 ? 0 : due;
    }
    return t;
}

// The store took a commit again after failing: both ends of the outage go
// to the events table now (the failed turns' events were rolled back with
// them), the failure at the time it began.
static void
s_store_recovered (keel_broker_t *self)
{
    int64_t now_wall = zclock_time ();
    char text[400];
    snprintf (text, sizeof text, "failed_commits=%llu error=\"%s\"",
              (unsigned long long) self->store_failed_commits, self->store_failed_text);
    keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_EVENT,
                                                .event = { self->store_failed_wall, "store-failed", text } });
    keel_broker_event (self, "store-recovered", "failed_commits=%llu down_ms=%lld",
                       (unsigned long long) self->store_failed_commits,
                       (long long) (now_wall - self->store_failed_wall));
}

// Commits the turn's writes. Returns true on success. Acceptances and
// engine acknowledgements are sent only after a commit that succeeded; a
// failed commit undoes the turn's new submissions and refuses them.
static bool
s_commit (keel_broker_t *self)
{
    keel_error_t err = { "" };
    uint64_t limit_in_txn = self->exec_seq_limit;
    // Only a commit that wrote something proves the store writable again.
    bool wrote = self->ndirty || self->nexec_puts || self->nexec_dels
                 || keel_changes_size (self->changes);
    keel_err rc = s_write_dirty (self);
    if (rc == KEEL_OK)
        rc = keel_store_apply_all (self->store, self->changes);
    if (rc == KEEL_OK)
        rc = keel_store_commit_async (self->store, &err);
    else {
        snprintf (err.text, sizeof err.text, "%s", keel_store_last_error (self->store));
        keel_store_rollback (self->store);
    }
    keel_changes_clear (self->changes);
    self->force_commit = false;
    if (rc == KEEL_OK) {
        self->counters.store_commits++;
        self->uncommitted_since = 0;
        if (self->store_failed && wrote) {
            KEEL_INFO ("broker", "store writable again; accepting submissions");
            self->store_failed = false;
            s_store_recovered (self);
        }
        if (wrote || self->sync_now)
            self->commit_seq++;     // a DROP's LoginReply waits for this number
        if (limit_in_txn > self->exec_seq_committed) {
            self->exec_seq_committed = limit_in_txn;
            self->exec_committed_seq = self->commit_seq;
        }
        s_clear_dirty (self);
        s_clear_execs (self);
        self->nfresh = 0;
        zlistx_purge (self->fresh_services);
        // Acceptances and result acknowledgements promise durability: they
        // leave once this commit is synced (at once without a syncer).
        if (self->syncer && self->commit_seq > self->synced_seq) {
            keel_syncer_request (self->syncer, self->commit_seq);
            if (keel_syncer_failed (self->syncer)) {
                keel_error_t gone;
                keel_error_set (&gone, KEEL_ERR_STORE, "the store's sync thread is gone");
                s_sync_failed (self, &gone);
            }
        }
        else
            s_synced (self, self->commit_seq);
        self->hold_seq = self->commit_seq;
        s_answer_submissions (self, true, NULL);
        s_encode_acks (self);
        self->hold_seq = 0;
        if (self->sync_now)
            s_sync_now (self);
        self->sync_now = false;
        return true;
    }
    // Memory keeps the turn's effects except new submissions; the changed
    // tasks and the engine acknowledgements wait for the next commit. The
    // execution-id reservation written in this transaction is gone too: ask
    // for it again, so no id past the committed one is ever treated as safe.
    self->exec_seq_limit = self->exec_seq_committed;
    self->sync_now = false;
    self->counters.store_failures++;
    if (!self->store_failed) {
        KEEL_ERROR ("broker", "store commit failed: %s; refusing new submissions until it recovers",
                    err.text);
        self->store_failed_wall = zclock_time ();
        self->store_failed_commits = 0;
        snprintf (self->store_failed_text, sizeof self->store_failed_text, "%s", err.text);
    }
    self->store_failed_commits++;
    self->store_failed = true;
    s_undo_fresh (self);
    s_answer_submissions (self, false, err.text[0] ? err.text : "store commit failed");
    return false;
}

// True when the turn must commit now: a driver waits for an acceptance,
// dispatch ran out of committed execution ids, or a change nobody waits for
// (dispatch state, engine acknowledgements, driver acks, checkpoints) has
// been uncommitted for CommitDelay. Everything else rides along with the
// next commit, so a turn that only moves work costs no disk sync.
static bool
s_commit_due (keel_broker_t *self)
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
// elsewhere (keel_broker_engine_lost), and no peer is judged by a silence
// the broker caused: its liveness clock starts again now. CLOCK_MONOTONIC
// (zclock_mono) runs on while the process is stopped, so the gap shows.
static void
s_notice_pause (keel_broker_t *self)
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
    keel_broker_event (self, "broker-paused",
                       "noticed a pause of %.1f s (no loop turn; HeartbeatInterval %lld ms): "
                       "giving engines the login window (EngineLoginWindow %lld ms) before "
                       "their tasks are queued again engines_online=%zu",
                       gap / 1000.0, (long long) self->heartbeat_ms,
                       (long long) self->login_window_ms, online);
}

// One loop turn. Returns false when the loop should end.
static bool
s_turn (keel_broker_t *self, zpoller_t *poller)
{
    zpoller_wait (poller, (int) s_poll_timeout (self));
    if (zpoller_terminated (poller) || zsys_interrupted)
        return false;
    self->now = zclock_mono ();
    self->wall = zclock_time ();
    s_notice_pause (self);
    s_recv_syncer (self);
    s_recv_admin (self);
    s_recv_router (self);
    self->now = zclock_mono ();
    self->wall = zclock_time ();
    keel_broker_timers (self);
    // Results go to drivers at once, before the commit: the application
    // sees each result once because the driver keeps the first copy of each
    // task, and the engine keeps its copy until a commit makes the result
    // durable here (its acknowledgement goes out after that commit).
    s_encode_results (self);
    if (self->sync_now) {
        // A login DROPs an engine's copy of a result: nothing of this turn
        // leaves before its commit is durable.
        if (s_commit_due (self))
            s_commit (self);
        self->dispatch_ready = false;
        keel_broker_dispatch (self);
        s_flush (self);
    }
    else {
        // Dispatch first, then commit: the engines start while the store
        // writes. A task accepted this turn may be dispatched before its
        // commit (the commit is due in this same turn because its driver
        // waits for Accepted); if that commit fails, the turn's new tasks
        // are undone and their executions cancelled (s_undo_fresh). An
        // assignment needs no durability of its own: an engine running a
        // task the store does not show as running claims it at login, and
        // a driver without Accepted submits the task again.
        self->dispatch_ready = false;
        keel_broker_dispatch (self);
        s_flush (self);
        if (s_commit_due (self))
            s_commit (self);
        s_flush (self);
    }
    s_answer_admin (self);
    return !self->stop;
}

keel_err
keel_broker_run (keel_broker_t *self)
{
    zpoller_t *poller = zpoller_new (self->router, self->admin, NULL);
    if (!poller)
        return KEEL_ERR_NOMEM;
    if (self->syncer && zpoller_add (poller, keel_syncer_actor (self->syncer)) != 0) {
        zpoller_destroy (&poller);
        return KEEL_ERR_NOMEM;
    }
    self->last_wake = zclock_mono ();
    KEEL_INFO ("broker", "serving name=%s endpoint=%s admin=%s epoch=%llu",
               self->name, keel_settings_str (self->settings, "Endpoint"),
               keel_settings_str (self->settings, "AdminEndpoint"), (unsigned long long) self->epoch);
    KEEL_JOURNAL ("serving", .epoch = (int64_t) self->epoch, .text = self->name,
                  .output = keel_settings_str (self->settings, "Store"),
                  .output_len = strlen (keel_settings_str (self->settings, "Store")));
    while (s_turn (self, poller))
        ;
    zpoller_destroy (&poller);
    if (self->fatal) {
        zlistx_purge (self->outbox);
        KEEL_INFO ("broker", "stopping after a store failure");
        return KEEL_ERR_STORE;
    }
    // A clean stop leaves nothing uncommitted and nothing unsent.
    if (self->ndirty || self->nacks || self->nexec_puts || self->nexec_dels
        || keel_changes_size (self->changes))
        s_commit (self);
    s_sync_now (self);
    s_flush (self);
    KEEL_INFO ("broker", "stopping");
    return self->fatal ? KEEL_ERR_STORE : KEEL_OK;
}

void
keel_broker_stop (keel_broker_t *self)
{
    self->stop = true;
}

// ---------------------------------------------------------------- lifecycle

static zsock_t *
s_bind_router (const char *endpoint, int64_t max_msg, keel_error_t *err, const char *key)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    if (!sock) {
        keel_error_set (err, KEEL_ERR_IO, "cannot create a ZeroMQ socket");
        return NULL;
    }
    zsock_set_router_mandatory (sock, 1);
    zsock_set_router_handover (sock, 1);
    zsock_set_maxmsgsize (sock, (int) (max_msg > INT32_MAX ? INT32_MAX : max_msg));
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_linger (sock, 0);
    if (zsock_bind (sock, "%s", endpoint) < 0) {
        keel_error_set (err, KEEL_ERR_CONFIG, "%s: cannot bind '%s': %s", key, endpoint,
                        zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

static uint64_t
s_name_prefix (const char *name)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t) *p) * 16777619u;
    return ((uint64_t) (h % 255 + 1)) << 40;
}

keel_broker_t *
keel_broker_new (keel_settings_t *settings, keel_error_t *err)
{
    keel_broker_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->settings = settings;
    snprintf (self->name, sizeof self->name, "%s", keel_settings_str (settings, "Name"));
    keel_broker_apply_settings (self);
    self->started_mono = zclock_mono ();
    self->now = self->started_mono;
    self->wall = zclock_time ();
    self->malformed_rl = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "malformed message");
    self->rl[KEEL_BROKER_RL_EVENTS] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 100, "event");
    self->rl[KEEL_BROKER_RL_DRIVERS] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "driver");
    self->rl[KEEL_BROKER_RL_VALUES] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "peer value");
    self->rl[KEEL_BROKER_RL_TASKS] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "task");
    self->model = keel_model_new ();
    self->sched = keel_sched_new ();
    self->outbox = zlistx_new ();
    self->accepts = zlistx_new ();
    self->fresh_services = zlistx_new ();
    self->admin_queue = zlistx_new ();
    self->pending = zhashx_new ();
    self->held = zlistx_new ();
    self->changes = keel_changes_new ();
    if (!self->changes || !self->model || !self->sched || !self->outbox || !self->accepts || !self->fresh_services
        || !self->admin_queue || !self->pending || !self->held) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        keel_broker_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->outbox, s_out_destroy);
    zlistx_set_destructor (self->held, s_out_destroy);
    zlistx_set_destructor (self->accepts, s_accept_destroy);
    self->exec_prefix = s_name_prefix (self->name);

    keel_store_sync_t sync = strcmp (keel_settings_str (settings, "StoreSync"), "normal") == 0
                                 ? KEEL_STORE_SYNC_NORMAL : KEEL_STORE_SYNC_FULL;
    self->store = keel_store_open (keel_settings_str (settings, "Store"), sync, err);
    if (!self->store) {
        keel_error_prefix (err, "Store");
        keel_broker_destroy (&self);
        return NULL;
    }
    if (keel_broker_recover (self, err) != KEEL_OK) {
        keel_broker_destroy (&self);
        return NULL;
    }
    if (keel_store_sync_fd (self->store) >= 0) {
        self->syncer = keel_syncer_new (keel_store_sync_fd (self->store));
        if (!self->syncer) {
            keel_error_set (err, KEEL_ERR_NOMEM, "cannot start the store sync thread");
            keel_broker_destroy (&self);
            return NULL;
        }
    }
    self->router = s_bind_router (keel_settings_str (settings, "Endpoint"),
                                  keel_settings_int (settings, "MaxMessageSize"), err, "Endpoint");
    if (!self->router) {
        keel_broker_destroy (&self);
        return NULL;
    }
    self->admin = s_bind_router (keel_settings_str (settings, "AdminEndpoint"), 1024 * 1024, err,
                                 "AdminEndpoint");
    if (!self->admin) {
        keel_broker_destroy (&self);
        return NULL;
    }
    KEEL_INFO ("broker", "store %s", keel_store_describe (self->store));
    if (!keel_store_durable (self->store))
        KEEL_WARN ("broker", "Store=memory: nothing survives a broker restart");
    return self;
}

void
keel_broker_destroy (keel_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_broker_t *self = *self_p;
    if (self->router) {
        // Send what the last turn left, then close without lingering.
        s_flush (self);
    }
    zsock_destroy (&self->router);
    zsock_destroy (&self->admin);
    if (self->admin_queue) {
        zmsg_t *msg;
        while ((msg = zlistx_first (self->admin_queue))) {
            zlistx_detach_cur (self->admin_queue);
            zmsg_destroy (&msg);
        }
        zlistx_destroy (&self->admin_queue);
    }
    keel_broker_pending_clear (self);
    zhashx_destroy (&self->pending);
    zlistx_destroy (&self->outbox);
    zlistx_destroy (&self->held);
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
    keel_syncer_destroy (&self->syncer);     // before the store: it syncs its WAL
    keel_store_destroy (&self->store);
    keel_changes_destroy (&self->changes);
    free (self);
    *self_p = NULL;
}
