/*  broker_engine.c — what the broker does with engine messages
    (docs/protocol.md, "Engine ↔ broker"): login with claims, results (alone
    or in a ResultBatch) with first-wins deduplication and retries,
    checkpoints, logoff.
*/

#include "core_int.h"
#include "journal.h"

#include <stdlib.h>
#include <string.h>

int64_t
keel_core_service_delay (keel_core_t *self, keel_service_rec_t *svc)
{
    return svc && svc->reschedule_delay_ms >= 0 ? svc->reschedule_delay_ms
                                                : self->reschedule_delay_ms;
}

void
keel_core_requeue (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id)
{
    keel_task_t *t = keel_service_task (svc, task_id);
    if (!t || t->state >= KEEL_TASK_STATE_DONE)
        return;
    if (t->state != KEEL_TASK_STATE_QUEUED) {
        keel_core_task_to (self, svc, task_id, KEEL_TASK_STATE_QUEUED);
        keel_core_touch (self, svc, task_id, KEEL_DIRTY_STATE);
    }
    if (svc->state != KEEL_SERVICE_OPEN && svc->state != KEEL_SERVICE_CLOSED)
        return; // detached or cancelled: stays here, not dispatched
    keel_service_queue_push (svc, task_id);
    keel_sched_activate (self->sched, svc);
    self->dispatch_ready = true;
}

static keel_task_result_t *
s_result_from (const Keel__Result *res, const char *engine_id)
{
    keel_task_result_t *r =
        keel_task_result_new (res->status, res->has_output ? res->output.data : NULL,
                              res->has_output ? res->output.len : 0, res->error, engine_id);
    if (!r)
        return NULL;
    r->execution_id = res->execution_id;
    r->run_ms = res->has_run_ms ? res->run_ms : 0;
    r->permanent =
        res->status == KEEL__TASK_STATUS__STATUS_FAILED && res->has_permanent && res->permanent;
    return r;
}

void
keel_core_cancel_exec (keel_core_t *self, keel_exec_t *x, const char *reason)
{
    if (x->engine && x->engine->state == KEEL_ENGINE_ONLINE) {
        keel_msg_t msg;
        keel_core_send_engine (self, x->engine, keel_msg_cancel (&msg, &x->id, 1, reason));
        self->counters.executions_cancelled++;
    }
    keel_core_exec_drop (self, x);
}

void
keel_core_task_finished (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id,
                         keel_task_result_t *result, keel_task_state_t state)
{
    keel_task_t *t = keel_service_task (svc, task_id);
    if (!t) {
        keel_task_result_destroy (&result);
        return;
    }
    result->queued_ms = t->accepted_mono && result->queued_ms == 0
                            ? (uint64_t) (self->now - t->accepted_mono)
                            : result->queued_ms;
    keel_service_queue_remove (svc, task_id);
    keel_task_set_result (t, result);
    keel_core_task_to (self, svc, task_id, state);
    svc->unacked++;
    KEEL_JOURNAL ("result_stored", .service = svc->id, .task = task_id,
                  .execution = result->execution_id, .epoch = (int64_t) self->epoch,
                  .status = state == KEEL_TASK_STATE_DONE ? "ok" : "failed", .text = self->name);
    keel_core_touch (self, svc, task_id, KEEL_DIRTY_RESULT);
    if (self->cancel_redundant) {
        while (t->execs)
            keel_core_cancel_exec (self, t->execs, "another execution of this task finished first");
    }
    keel_core_deliver (self, svc, task_id);
}

// ---------------------------------------------------------------- heartbeats

static int
s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

// An engine's heartbeat lists every execution it holds unfinished. One
// assigned there at least 2*H before, that two heartbeats in a row leave
// out, never arrived (its Assign was lost) or was lost in the engine: it is
// requeued, or the task would stay "running" on an engine that does not
// run it for as long as that engine lives. (A result is never overtaken:
// the engine sends it before any later heartbeat, on the same connection.)
static void
s_reconcile (keel_core_t *self, keel_engine_t *engine, const Keel__Heartbeat *hb)
{
    if (zlistx_size (engine->execs) == 0)
        return;
    uint64_t *running = NULL;
    if (hb->n_running) {
        running = malloc (hb->n_running * sizeof *running);
        if (!running)
            return;
        memcpy (running, hb->running, hb->n_running * sizeof *running);
        qsort (running, hb->n_running, sizeof *running, s_cmp_u64);
    }
    zlistx_t *missing = zlistx_new ();
    for (keel_exec_t *x = zlistx_first (engine->execs); x && missing;
         x = zlistx_next (engine->execs)) {
        bool listed =
            running && bsearch (&x->id, running, hb->n_running, sizeof *running, s_cmp_u64);
        if (listed || self->now - x->started_mono < 2 * self->heartbeat_ms)
            x->missing = 0;
        else if (++x->missing >= 2)
            zlistx_add_end (missing, x);
    }
    for (keel_exec_t *x = missing ? zlistx_first (missing) : NULL; x; x = zlistx_next (missing)) {
        KEEL_CORE_LOG (self, KEEL_CORE_RL_TASKS, KEEL_LOG_WARN,
                       "engine %s no longer runs execution %llu (service=%s task=%llu): "
                       "requeued",
                       engine->id, (unsigned long long) x->id, x->service->id,
                       (unsigned long long) x->task_id);
        self->counters.executions_missing++;
        keel_task_t *t = keel_service_task (x->service, x->task_id);
        if (t)
            t->avoid = engine->number; // another engine, when one offers the service
        keel_core_exec_lost (self, x);
    }
    zlistx_destroy (&missing);
    free (running);
}

// ---------------------------------------------------------------- results

static void
s_engine_result (keel_core_t *self, keel_engine_t *engine, Keel__Result *res)
{
    self->counters.results_received++;
    keel_service_rec_t *svc = keel_model_service (self->model, res->service_id);
    keel_task_t *t = svc ? keel_service_task (svc, res->task_id) : NULL;
    if (svc && svc->state == KEEL_SERVICE_DETACHED) {
        // The driver is with its primary now: the result goes there, so it
        // is not acknowledged here.
        keel_core_relogin (self, engine->route, "primary");
        return;
    }
    keel_exec_t *x = keel_model_exec (self->model, res->execution_id);
    if (x && (strcmp (x->service->id, res->service_id) != 0 || x->task_id != res->task_id))
        x = NULL; // an id from another broker that collides with ours
    if (x) {
        engine->tasks_done++;
        if (res->status == KEEL__TASK_STATUS__STATUS_OK
            || res->status == KEEL__TASK_STATUS__STATUS_FAILED) {
            uint64_t run_us = res->has_run_us ? res->run_us : res->run_ms * UINT64_C (1000);
            keel_service_note_run (x->service, run_us);
            if (self->metrics)
                keel_metrics_task_run (self->metrics, x->service->type, run_us);
        }
        keel_core_exec_drop (self, x);
    }
    if (!svc || !t) {
        // Service (or task) not submitted here yet: keep the result pending
        // so no engine runs the task again once the driver submits it. No
        // acknowledgement yet: the engine keeps its copy in case the driver
        // returns to another broker (its primary) instead of coming here;
        // the acknowledgement goes out when the result is attached.
        keel_task_result_t *r = s_result_from (res, engine->id);
        if (r)
            keel_core_pending_add (self, res->service_id, res->task_id, res->execution_id,
                                   engine->id, r);
        return;
    }
    keel_core_ack_engine (self, engine, res->execution_id);
    // The engine's record with this service (blacklisting), whether or not
    // this result wins.
    if (res->status == KEEL__TASK_STATUS__STATUS_OK
        || res->status == KEEL__TASK_STATUS__STATUS_FAILED)
        keel_core_blacklist_note (self, engine, svc,
                                  res->status == KEEL__TASK_STATUS__STATUS_FAILED);
    if (t->state >= KEEL_TASK_STATE_DONE) {
        self->counters.redundant_results_discarded++;
        KEEL_DEBUG ("broker", "redundant result discarded service=%s task=%llu exec=%llu", svc->id,
                    (unsigned long long) res->task_id, (unsigned long long) res->execution_id);
        return;
    }
    keel_task_result_t *r = s_result_from (res, engine->id);
    if (!r)
        return;
    uint32_t max = svc->max_attempts ? svc->max_attempts : self->max_attempts;
    if (max > UINT16_MAX)
        max = UINT16_MAX; // t->attempts is 16 bits: it must not wrap
    if (res->status == KEEL__TASK_STATUS__STATUS_OK) {
        keel_core_task_finished (self, svc, res->task_id, r, KEEL_TASK_STATE_DONE);
        // Its row may wait one commit for the driver's ack (core_commit.c).
        keel_task_t *done = keel_service_task (svc, res->task_id);
        if (done)
            done->young = 1;
        return;
    }
    // The task itself failed.
    self->counters.task_failures++;
    t->attempts++;
    if (r->permanent) {
        // The engine says no retry can succeed (exit 127, bad input...):
        // fail the task now instead of spending the other attempts.
        KEEL_INFO ("broker",
                   "task failed permanently, not retried service=%s task=%llu "
                   "attempt=%u/%u error=%s",
                   svc->id, (unsigned long long) res->task_id, t->attempts, max,
                   r->error ? r->error : "");
        keel_core_task_finished (self, svc, res->task_id, r, KEEL_TASK_STATE_FAILED);
        return;
    }
    if (t->attempts >= max) {
        keel_core_task_finished (self, svc, res->task_id, r, KEEL_TASK_STATE_FAILED);
        return;
    }
    KEEL_CORE_LOG (self, KEEL_CORE_RL_TASKS, KEEL_LOG_INFO,
                   "task failed, will retry service=%s task=%llu attempt=%u/%u error=%s", svc->id,
                   (unsigned long long) res->task_id, t->attempts, max, r->error ? r->error : "");
    keel_task_result_destroy (&r);
    t->avoid = engine->number;
    keel_core_touch (self, svc, res->task_id, KEEL_DIRTY_STATE);
    if (!t->execs)
        keel_core_requeue (self, svc, res->task_id);
}

static void
s_checkpoint (keel_core_t *self, Keel__Checkpoint *cp)
{
    keel_service_rec_t *svc = keel_model_service (self->model, cp->service_id);
    keel_task_t *t = svc ? keel_service_task (svc, cp->task_id) : NULL;
    if (!t || t->state >= KEEL_TASK_STATE_DONE)
        return;
    uint8_t *data = NULL;
    if (cp->has_data && cp->data.len) {
        data = malloc (cp->data.len);
        if (!data)
            return;
        memcpy (data, cp->data.data, cp->data.len);
    }
    free (t->checkpoint);
    t->checkpoint = data;
    t->checkpoint_len = data ? (uint32_t) cp->data.len : 0;
    t->checkpoint_wall_ms = self->wall;
    keel_core_touch (self, svc, cp->task_id, KEEL_DIRTY_CKPT);
}

void
keel_core_engine_msg (keel_core_t *self, keel_engine_t *engine, keel_env_t *env)
{
    switch (env->body_case) {
        case KEEL__ENVELOPE__BODY_HEARTBEAT:
            s_reconcile (self, engine, env->heartbeat);
            break;
        case KEEL__ENVELOPE__BODY_RESULT:
            s_engine_result (self, engine, env->result);
            break;
        case KEEL__ENVELOPE__BODY_RESULT_BATCH:
            // As that many Results, in order.
            for (size_t i = 0; i < env->result_batch->n_results; i++)
                s_engine_result (self, engine, env->result_batch->results[i]);
            break;
        case KEEL__ENVELOPE__BODY_CHECKPOINT:
            s_checkpoint (self, env->checkpoint);
            break;
        case KEEL__ENVELOPE__BODY_LOGOFF: {
            bool moving = env->logoff->reason && strcmp (env->logoff->reason, "moving") == 0;
            keel_core_engine_lost (self, engine,
                                   env->logoff->reason ? env->logoff->reason : "logoff", moving);
            break;
        }
        default:
            keel_core_malformed (self, "%s is not an engine message", keel_wire_body_name (env));
            break;
    }
}

// ---------------------------------------------------------------- login

static Keel__Verdict
s_claim (keel_core_t *self, keel_engine_t *engine, Keel__HeldTask *held)
{
    keel_service_rec_t *svc = keel_model_service (self->model, held->service_id);
    keel_task_t *t = svc ? keel_service_task (svc, held->task_id) : NULL;
    if (!svc || !t) {
        keel_task_result_t *r = NULL;
        if (held->state == KEEL__HELD_STATE__HELD_DONE && held->result)
            r = s_result_from (held->result, engine->id);
        // A held result is not acknowledged (see s_engine_result): the
        // engine keeps it until the pending result is attached here, or
        // carries it to the broker its driver returns to.
        keel_core_pending_add (self, held->service_id, held->task_id, held->execution_id,
                               engine->id, r);
        self->counters.claims_held++;
        return KEEL__VERDICT__VERDICT_HOLD;
    }
    if (t->state >= KEEL_TASK_STATE_DONE || svc->state == KEEL_SERVICE_CANCELLED) {
        // DROP lets the engine forget its copy: the result it drops for
        // must be durable (committed and synced) before the LoginReply
        // leaves this turn. Logins are rare; this turn waits for the disk.
        self->force_commit = true;
        self->sync_now = true;
        self->counters.claims_dropped++;
        if (held->state == KEEL__HELD_STATE__HELD_DONE)
            self->counters.redundant_results_discarded++;
        return KEEL__VERDICT__VERDICT_DROP;
    }
    keel_exec_t *x = keel_model_exec (self->model, held->execution_id);
    if (x && (x->service != svc || x->task_id != held->task_id)) {
        // Same id, other task: we cannot track both. The task runs again
        // elsewhere (at-least-once); this engine drops its copy.
        self->counters.claims_dropped++;
        return KEEL__VERDICT__VERDICT_DROP;
    }
    if (x)
        keel_core_exec_claimed (self, x, engine);
    else {
        x = keel_model_exec_add (self->model, held->execution_id, svc, held->task_id, engine,
                                 t->attempts + 1, self->now);
        if (!x)
            return KEEL__VERDICT__VERDICT_DROP;
        keel_core_exec_started (self, x);
        keel_service_queue_remove (svc, held->task_id); // no redundant run
        if (t->state != KEEL_TASK_STATE_RUNNING) {
            keel_core_task_to (self, svc, held->task_id, KEEL_TASK_STATE_RUNNING);
            keel_core_touch (self, svc, held->task_id, KEEL_DIRTY_STATE);
        }
    }
    self->counters.claims_kept++;
    return KEEL__VERDICT__VERDICT_KEEP;
}

static void
s_login_reply (keel_core_t *self, keel_engine_t *engine, Keel__TaskVerdict **verdicts, size_t n)
{
    keel_msg_t msg;
    keel_login_reply_args_t args = { .broker_name = self->name,
                                     .epoch = self->epoch,
                                     .engine_timeout_ms = (uint64_t) self->engine_timeout_ms,
                                     .heartbeat_ms = (uint64_t) self->heartbeat_ms,
                                     .verdicts = verdicts,
                                     .n_verdicts = n };
    keel_env_t *reply = keel_msg_login_reply (&msg, &args);
    keel_msg_set_pair_peer (&msg, self->pair_peer && *self->pair_peer ? self->pair_peer : NULL);
    if (self->ncluster_members)
        keel_msg_set_cluster_members (&msg, self->cluster_members, *self->ncluster_members);
    keel_core_send_engine (self, engine, reply);
}

// The engine's properties as it sent them (validated by wire_check.c):
// conditions are evaluated against them again from now on.
static void
s_set_props (keel_engine_t *engine, const Keel__EngineLogin *login)
{
    size_t n = 0;
    char **props = login->n_properties ? calloc (2 * login->n_properties, sizeof *props) : NULL;
    for (size_t i = 0; props && i < login->n_properties; i++) {
        char *name = strdup (login->properties[i]->name);
        char *value = strdup (login->properties[i]->value);
        if (!name || !value) {
            free (name);
            free (value);
            continue; // no memory: the engine lacks that property until its next login
        }
        props[2 * n] = name;
        props[2 * n + 1] = value;
        n++;
    }
    keel_engine_set_props (engine, props, n);
}

void
keel_core_engine_login (keel_core_t *self, zframe_t *route, Keel__EngineLogin *login)
{
    keel_engine_t *engine = keel_model_engine (self->model, login->engine_id);
    // Security=curve: an engine id belongs to the key that first logged in
    // with it (its tasks, its held results).
    if (self->principal[0] && engine && engine->principal[0]
        && strcmp (engine->principal, self->principal) != 0) {
        keel_core_refused (self, true, "login as engine=%s from another key", login->engine_id);
        return;
    }
    bool returning = engine != NULL;
    if (!engine) {
        engine = keel_model_engine_add (self->model, login->engine_id);
        if (!engine)
            return;
    }
    if (self->principal[0] && !engine->principal[0])
        snprintf (engine->principal, sizeof engine->principal, "%s", self->principal);
    bool new_session = strcmp (engine->session, login->session) != 0;
    snprintf (engine->session, sizeof engine->session, "%s", login->session);
    snprintf (engine->host, sizeof engine->host, "%s", login->host ? login->host : "");
    engine->slots = login->slots;
    char **types = calloc (login->n_service_types, sizeof *types);
    size_t ntypes = 0;
    for (size_t i = 0; types && i < login->n_service_types; i++) {
        types[ntypes] = strdup (login->service_types[i]);
        if (types[ntypes])
            ntypes++;
    }
    keel_engine_set_types (engine, types, ntypes);
    s_set_props (engine, login);
    keel_core_engine_to (self, engine, KEEL_ENGINE_ONLINE, route);
    keel_core_window_moved_in (self, engine, login->moved_from);
    if (new_session)
        engine->draining = false; // a drain lasts until the engine restarts
    if (new_session)
        zhashx_purge (engine->init_sent); // a new process has no init data

    Keel__TaskVerdict *verdicts = calloc (login->n_held + 1, sizeof *verdicts);
    Keel__TaskVerdict **vptrs = calloc (login->n_held + 1, sizeof *vptrs);
    size_t nv = 0;
    for (size_t i = 0; verdicts && vptrs && i < login->n_held; i++) {
        Keel__HeldTask *held = login->held[i];
        keel_item_verdict (&verdicts[nv], held->service_id, held->task_id, held->execution_id,
                           s_claim (self, engine, held));
        vptrs[nv] = &verdicts[nv];
        nv++;
    }
    // HOLD claims it made earlier and did not list now are gone as well.
    keel_core_pending_forget_engine (self, engine->id, login->held, login->n_held);
    // Executions we thought ran there that the engine did not list are gone.
    zlistx_t *lost = zlistx_new ();
    for (keel_exec_t *x = zlistx_first (engine->execs); x && lost;
         x = zlistx_next (engine->execs)) {
        bool listed = false;
        for (size_t i = 0; i < login->n_held && !listed; i++)
            listed = login->held[i]->execution_id == x->id;
        if (!listed)
            zlistx_add_end (lost, x);
    }
    for (keel_exec_t *x = lost ? zlistx_first (lost) : NULL; x; x = zlistx_next (lost))
        keel_core_exec_lost (self, x);
    zlistx_destroy (&lost);

    // A DROP lets the engine forget a result: the reply waits in `held`
    // until this turn's commit is durable (s_commit numbers it even when it
    // writes nothing); if that commit fails, until one that stores it.
    bool drop = false;
    size_t count[3] = { 0, 0, 0 }; // claims kept, dropped, held
    for (size_t i = 0; i < nv; i++) {
        drop |= verdicts[i].verdict == KEEL__VERDICT__VERDICT_DROP;
        if ((unsigned) verdicts[i].verdict < 3)
            count[verdicts[i].verdict]++;
    }
    if (drop && self->sync_now)
        self->hold_seq = engine->reply_held_seq = self->commit_seq + 1;
    s_login_reply (self, engine, vptrs, nv);
    self->hold_seq = 0;
    free (verdicts);
    free (vptrs);
    keel_core_event (self, returning ? "engine-returned" : "engine-login",
                     "engine=%s host=%s slots=%u types=%zu held=%zu session=%s", engine->id,
                     engine->host, engine->slots, engine->ntypes, login->n_held,
                     new_session ? "new" : "same");
    if (nv)
        keel_core_event (self, "claims", "engine=%s kept=%zu dropped=%zu held=%zu", engine->id,
                         count[0], count[1], count[2]);
    keel_core_window_engine_back (self, engine);
    self->dispatch_ready = true;
}
