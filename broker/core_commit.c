/*  core_commit.c — what a commit writes and what its outcome does: the
    rows of changed tasks and executions added to the journal at the commit
    (an execution that starts and ends between two commits, most tiny
    tasks, costs no write), the undoing of a failed turn's submissions,
    the execution-id reservation, and the commit/sync bookkeeping the loop
    drives (core.h: prepare_commit, committed, commit_failed, synced).
*/

#include "core_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

// Execution ids are reserved from the store in blocks; the next block is
// asked for when half of one is left. 50,000 ids of slack cover ~0.5 s of
// dispatch at the fastest rates measured, far more than a commit and its
// sync (or a pair's mirror acknowledgement) take: with 10,000 a pair's
// active ran out of ids while its mirror confirmed the next block, and
// dispatch stalled (pair W1 0.64 -> 0.74 x single, docs/benchmarks.md). A
// restart skips at most one block of the 2^40 ids under a broker's prefix.
#define KEEL_EXEC_BLOCK 100000

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
    if (x->stored && !s_push_id (&self->exec_dels, &self->nexec_dels, &self->exec_dels_cap, x->id))
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
        keel_store_execution_t row = { x->id,      x->service->id,
                                       x->task_id, x->engine ? x->engine->id : "",
                                       x->attempt, x->started_wall_ms };
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

// Whether a task's changed row waits for the next commit. An engine's
// result that came since the last commit, to a task stored before it and
// not yet acknowledged by its driver, waits one commit when this one comes
// early (for submissions, before CommitDelay ran out; never in a turn that
// must be durable at once, a login's): the driver has the result already
// (results go out before commits) and acknowledges it within a round
// trip, so the next commit writes the result and the acknowledgement as
// one row instead of a row and then an UPDATE of it. Once only: `young`
// is cleared here. The engine's acknowledgement waits with the row
// (keel_core_send_acks), so it still means "stored".
static bool
s_carry (keel_core_t *self, keel_task_t *t)
{
    if (!t->young)
        return false;
    t->young = 0;
    bool early =
        self->uncommitted_since == 0 || self->now - self->uncommitted_since < self->commit_delay_ms;
    if (!early || self->sync_now || t->acked || !(t->dirty & KEEL_DIRTY_RESULT)
        || (t->dirty & KEEL_DIRTY_NEW) || !t->result
        || !s_push_id (&self->carried_execs, &self->ncarried, &self->carried_cap,
                       t->result->execution_id))
        return false;
    t->carried = 1;
    return true;
}

// Writes every changed task into the open transaction (but the rows
// s_carry leaves for the next commit).
static keel_err
s_write_dirty (keel_core_t *self)
{
    self->ncarried = 0;
    keel_err rc = s_write_execs (self);
    for (size_t i = 0; rc == KEEL_OK && i < self->ndirty; i++) {
        keel_service_rec_t *svc = self->dirty[i].svc;
        uint64_t id = self->dirty[i].task_id;
        keel_task_t *t = keel_service_task (svc, id);
        if (!t || !t->dirty)
            continue;
        t->carried = 0; // a carried row that a failed commit kept: written now
        if (s_carry (self, t))
            continue;
        keel_store_task_t row;
        keel_core_store_task (svc, id, t, &row);
        // A result of a small task goes as its whole row where the store
        // takes that faster (keel_core_set_whole_rows); the row carries the
        // acknowledgement and the checkpoint too.
        bool whole = self->whole_row_max > 0 && (t->dirty & KEEL_DIRTY_RESULT)
                     && row.input_len <= self->whole_row_max
                     && row.output_len <= self->whole_row_max
                     && row.checkpoint_len <= self->whole_row_max;
        if ((t->dirty & KEEL_DIRTY_NEW) || whole)
            rc = keel_core_change (self,
                                   (keel_change_t) { .kind = KEEL_CHANGE_TASK_PUT, .task = row });
        else {
            // A result write carries the ack flag too (one statement when
            // the driver acked within the same commit window).
            if (t->dirty & KEEL_DIRTY_RESULT)
                rc = keel_core_change (
                    self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_RESULT, .task = row });
            else if (t->dirty & KEEL_DIRTY_STATE)
                rc = keel_core_change (
                    self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_STATE, .task = row });
            if (rc == KEEL_OK && (t->dirty & KEEL_DIRTY_ACK) && !(t->dirty & KEEL_DIRTY_RESULT))
                rc = keel_core_change (
                    self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED, .task = row });
            if (rc == KEEL_OK && (t->dirty & KEEL_DIRTY_CKPT))
                rc = keel_core_change (
                    self, (keel_change_t) { .kind = KEEL_CHANGE_TASK_CHECKPOINT, .task = row });
        }
    }
    return rc;
}

static void
s_clear_dirty (keel_core_t *self)
{
    size_t kept = 0; // carried rows stay changed, for the next commit
    for (size_t i = 0; i < self->ndirty; i++) {
        keel_task_t *t = keel_service_task (self->dirty[i].svc, self->dirty[i].task_id);
        if (t && t->carried) {
            t->carried = 0;
            self->dirty[kept++] = self->dirty[i];
            continue;
        }
        if (t) {
            t->dirty = 0;
            if (!t->durable) {
                t->durable = 1;
                self->dispatch_ready = true;
            }
        }
    }
    self->ndirty = kept;
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
            char engine_id[KEEL_ID_MAX + 1];
            snprintf (engine_id, sizeof engine_id, "%s", r->engine_id);
            keel_core_pending_add (self, svc->id, self->fresh[i].task_id, r->execution_id,
                                   engine_id, r);
        }
        t->queued = 0;
        keel_service_task_drop (svc, self->fresh[i].task_id);
        self->counters.tasks_submitted--; // refused, not submitted
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
        keel_core_change (self,
                          (keel_change_t) { .kind = KEEL_CHANGE_META_SET,
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

// to the events table now (the failed turns' events were rolled back with
// them), the failure at the time it began.
static void
s_store_recovered (keel_core_t *self)
{
    int64_t now_wall = self->wall;
    char text[400];
    snprintf (text, sizeof text, "failed_commits=%llu error=\"%s\"",
              (unsigned long long) self->store_failed_commits, self->store_failed_text);
    keel_core_change (
        self, (keel_change_t) { .kind = KEEL_CHANGE_EVENT,
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
    // A failing store is tried again once per KEEL_CORE_STORE_RETRY_MS, not
    // at every loop turn (new submissions are refused meanwhile, so none
    // waits for it).
    if (self->store_failed && self->now < self->commit_retry_at)
        return false;
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
        if (self->store_failed && self->commit_retry_at - self->now > due)
            due = self->commit_retry_at - self->now;
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
    *writes_p =
        self->ndirty || self->nexec_puts || self->nexec_dels || keel_changes_size (self->changes);
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
        self->commit_seq++; // a DROP's LoginReply waits for this number
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
    keel_core_answer_submissions (self, true, NULL);
    keel_core_send_acks (self);
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
    self->commit_retry_at = self->now + KEEL_CORE_STORE_RETRY_MS;
    s_undo_fresh (self);
    keel_core_answer_submissions (self, false, error);
}

void
keel_core_synced (keel_core_t *self, uint64_t seq)
{
    if (seq > self->synced_seq)
        self->synced_seq = seq;
    if (self->exec_committed_seq <= self->synced_seq
        && self->exec_seq_committed > self->exec_seq_durable) {
        self->exec_seq_durable = self->exec_seq_committed;
        self->dispatch_ready = true; // dispatch may have waited for ids
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
