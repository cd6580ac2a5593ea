/*  broker_sched.c — the broker's timers (heartbeats, lost peers, delayed
    requeues, HOLD expiry, retention), dispatch of queued tasks to engines,
    and HOLD claims. Recovery from the store is in broker_recover.c, the
    admin glue in broker_admin.c.
*/

#include "core_int.h"
#include "config.h"
#include "journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

// How often the retention purge looks for services to drop.
#define KEEL_PURGE_INTERVAL_MS (10 * 60 * 1000)

// ---------------------------------------------------------------- settings

void
keel_core_apply_settings (keel_core_t *self)
{
    keel_settings_t *s = self->settings;
    self->heartbeat_ms = keel_broker_cfg_HeartbeatInterval (s);
    self->engine_timeout_ms = keel_broker_cfg_EngineTimeoutMinutes (s);
    self->reschedule_delay_ms = keel_broker_cfg_RescheduleDelay (s);
    self->login_window_ms = keel_broker_cfg_EngineLoginWindow (s);
    self->commit_delay_ms = keel_broker_cfg_CommitDelay (s);
    self->max_attempts = (uint32_t) keel_broker_cfg_MaxAttempts (s);
    self->engine_prefetch = (uint32_t) keel_broker_cfg_EnginePrefetch (s);
    self->prefetch_window_us = (uint64_t) keel_broker_cfg_PrefetchWindow (s) * 1000;
    self->cancel_redundant = keel_broker_cfg_CancelRedundant (s);
    self->max_tasks = (uint64_t) keel_broker_cfg_MaxTasksPerService (s);
    self->blacklist_after = (uint32_t) keel_broker_cfg_BlacklistAfter (s);
    self->blacklist_for_ms = keel_broker_cfg_BlacklistFor (s);
    self->no_engine_timeout_ms = keel_broker_cfg_DSNoEngineTimeout (s);
    keel_log_level_t level;
    if (keel_log_level_parse (keel_broker_cfg_LogLevel (s), &level) == 0)
        keel_log_init (level);
}

// ---------------------------------------------------------------- lost work

void
keel_core_exec_lost (keel_core_t *self, keel_exec_t *exec)
{
    keel_service_rec_t *svc = exec->service;
    uint64_t task_id = exec->task_id;
    keel_core_exec_drop (self, exec);
    keel_task_t *t = keel_service_task (svc, task_id);
    if (t && t->state < KEEL_TASK_STATE_DONE && !t->execs) {
        keel_core_requeue (self, svc, task_id);
        self->counters.tasks_rescheduled++;
    }
}

void
keel_core_note_requeue_at (keel_core_t *self, int64_t at)
{
    if (self->requeue_check_at == 0 || at < self->requeue_check_at)
        self->requeue_check_at = at;
}

void
keel_core_engine_lost (keel_core_t *self, keel_engine_t *engine, const char *why, bool moving)
{
    if (engine->state == KEEL_ENGINE_OFFLINE)
        return;
    keel_core_engine_to (self, engine, KEEL_ENGINE_OFFLINE, NULL);
    zlistx_t *now_lost = zlistx_new ();
    size_t running = zlistx_size (engine->execs);
    for (keel_exec_t *x = zlistx_first (engine->execs); x; x = zlistx_next (engine->execs)) {
        // An engine moving to its primary carries its tasks there; they
        // come back here only if it never returns.
        int64_t delay =
            moving ? self->engine_timeout_ms : keel_core_service_delay (self, x->service);
        // After a pause of the broker (s_notice_pause in broker.c), the
        // engine may be in its login backoff: its tasks wait for its claims
        // until the login window ends, as after a restart.
        if (!moving && self->pause_window_end > self->now
            && delay < self->pause_window_end - self->now)
            delay = self->pause_window_end - self->now;
        if (delay <= 0 && now_lost)
            zlistx_add_end (now_lost, x);
        else
            keel_core_exec_await (self, x, self->now + delay);
    }
    for (keel_exec_t *x = now_lost ? zlistx_first (now_lost) : NULL; x; x = zlistx_next (now_lost))
        keel_core_exec_lost (self, x);
    zlistx_destroy (&now_lost);
    keel_core_event (self, "engine-lost", "engine=%s why=%s running=%zu", engine->id, why, running);
}

static void
s_requeue_due (keel_core_t *self)
{
    if (self->requeue_check_at == 0 || self->now < self->requeue_check_at)
        return;
    self->requeue_check_at = 0;
    zlistx_t *due = zlistx_new ();
    if (!due)
        return;
    for (keel_exec_t *x = keel_model_exec_first (self->model); x;
         x = keel_model_exec_next (self->model)) {
        if (x->state != KEEL_EXEC_AWAITING_CLAIM)
            continue;
        if (x->requeue_at <= self->now)
            zlistx_add_end (due, x);
        else
            keel_core_note_requeue_at (self, x->requeue_at);
    }
    for (keel_exec_t *x = zlistx_first (due); x; x = zlistx_next (due))
        keel_core_exec_lost (self, x);
    zlistx_destroy (&due);
}

// ---------------------------------------------------------------- heartbeats

static void
s_heartbeat (keel_core_t *self, zframe_t *route)
{
    keel_msg_t msg;
    keel_core_send (self, route,
                    keel_msg_heartbeat (&msg, KEEL__SENDER_KIND__SENDER_BROKER, NULL, 0));
}

static void
s_peers (keel_core_t *self)
{
    zlistx_t *engines = keel_model_engines (self->model);
    zlistx_t *lost = zlistx_new ();
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        if (e->state != KEEL_ENGINE_ONLINE)
            continue;
        if (keel_peer_clock_lost (&e->clock, self->now)) {
            if (lost)
                zlistx_add_end (lost, e);
        }
        else if (keel_peer_clock_heartbeat_due (&e->clock, self->now)) {
            s_heartbeat (self, e->route);
            keel_peer_clock_sent (&e->clock, self->now);
        }
    }
    for (keel_engine_t *e = lost ? zlistx_first (lost) : NULL; e; e = zlistx_next (lost))
        keel_core_engine_lost (self, e, "heartbeat timeout", false);
    zlistx_destroy (&lost);

    zlistx_t *drivers = keel_model_drivers (self->model);
    for (keel_driver_rec_t *d = zlistx_first (drivers); d; d = zlistx_next (drivers)) {
        if (!d->connected)
            continue;
        if (keel_peer_clock_lost (&d->clock, self->now))
            keel_core_driver_gone (self, d, "heartbeat timeout");
        else if (keel_peer_clock_heartbeat_due (&d->clock, self->now)) {
            s_heartbeat (self, d->route);
            keel_peer_clock_sent (&d->clock, self->now);
        }
    }
}

void
keel_core_driver_gone (keel_core_t *self, keel_driver_rec_t *drv, const char *why)
{
    if (!drv->connected)
        return;
    drv->connected = false;
    // What waits here for the driver: its open services, and the results
    // it has not acknowledged (a detached service's results are
    // acknowledged on the primary, so they do not wait here).
    uint64_t open = 0, unacked = 0;
    for (keel_service_rec_t *s = keel_model_service_first (self->model); s;
         s = keel_model_service_next (self->model)) {
        if (strcmp (s->driver_id, drv->id) != 0 || s->state == KEEL_SERVICE_DETACHED)
            continue;
        open += s->state == KEEL_SERVICE_OPEN;
        unacked += s->unacked;
    }
    if (open == 0 && unacked == 0)
        KEEL_CORE_LOG (self, KEEL_CORE_RL_DRIVERS, KEEL_LOG_INFO,
                       "driver left driver=%s why=%s (services closed, results acknowledged)",
                       drv->id, why);
    else
        KEEL_CORE_LOG (self, KEEL_CORE_RL_DRIVERS, KEEL_LOG_INFO,
                       "driver silent, results wait for its return driver=%s why=%s "
                       "open_services=%llu unacked_results=%llu",
                       drv->id, why, (unsigned long long) open, (unsigned long long) unacked);
}

void
keel_core_send_failed (keel_core_t *self, int err)
{
    // The peer is not declared gone here: messages it sent before it closed
    // its connection may still wait to be read (a driver's last ResultAck),
    // and they count. Its heartbeat clock decides, as for a silent peer.
    if (err == EHOSTUNREACH)
        self->counters.sends_to_departed_peers++;
    else
        self->counters.send_failures++;
}

// ---------------------------------------------------------------- retention

// True when no execution of svc is alive here (running, or kept for an
// engine that may come back).
static bool
s_no_executions (const keel_service_rec_t *svc)
{
    for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks;
         id = keel_service_task_next (svc, id + 1)) {
        const keel_task_t *t = keel_service_task (svc, id);
        if (t && t->execs)
            return false;
    }
    return true;
}

// True when no connected driver has svc (its submitter detached, was
// killed, or never came back after a restart).
static bool
s_abandoned (keel_core_t *self, const keel_service_rec_t *svc)
{
    keel_driver_rec_t *drv = keel_model_driver (self->model, svc->driver_id);
    return !drv || !drv->connected;
}

// Drops closed services whose results are all acknowledged and whose
// retention has passed; open or closed services no driver is attached to,
// with no task queued or running, RetentionHours after their last result
// (or after they were opened, closed, or the broker restarted: the latest),
// acknowledged or not (driver.h promises it: nobody may ever collect them); cancelled services whose retention has passed,
// acknowledged or not (a cancel says nobody wants what is left: a driver
// killed before it acknowledged would otherwise keep them for ever); and
// services detached here (their driver went back to its primary, which
// owns them now) whose retention since the detach has passed and whose
// executions are all gone. A detached service's results are never
// acknowledged here: the driver acknowledges on the primary. Returns how
// many.
uint64_t
keel_core_purge (keel_core_t *self, int64_t now_wall, int64_t retention_ms)
{
    zlistx_t *old = zlistx_new ();
    if (!old)
        return 0;
    for (keel_service_rec_t *s = keel_model_service_first (self->model); s;
         s = keel_model_service_next (self->model)) {
        bool closed = s->state == KEEL_SERVICE_CLOSED || s->state == KEEL_SERVICE_CANCELLED;
        bool settled =
            s->state == KEEL_SERVICE_CANCELLED
            || (s->unacked == 0
                && s->count[KEEL_TASK_STATE_QUEUED] + s->count[KEEL_TASK_STATE_RUNNING] == 0);
        bool detached = s->state == KEEL_SERVICE_DETACHED && s_no_executions (s);
        if (((closed && settled) || detached) && s->closed_wall_ms + retention_ms <= now_wall) {
            zlistx_add_end (old, s);
            continue;
        }
        int64_t last = s->created_wall_ms;
        if (s->state == KEEL_SERVICE_CLOSED && s->closed_wall_ms > last)
            last = s->closed_wall_ms;
        if (s->last_result_wall_ms > last)
            last = s->last_result_wall_ms;
        bool idle = s->count[KEEL_TASK_STATE_QUEUED] + s->count[KEEL_TASK_STATE_RUNNING] == 0
                    && s_no_executions (s);
        if ((s->state == KEEL_SERVICE_OPEN || s->state == KEEL_SERVICE_CLOSED) && idle
            && s_abandoned (self, s) && last + retention_ms <= now_wall)
            zlistx_add_end (old, s);
    }
    uint64_t n = 0;
    for (keel_service_rec_t *s = zlistx_first (old); s; s = zlistx_next (old)) {
        keel_core_event (self, "service-purged",
                         "service=%s type=%s driver=%s state=%s tasks=%llu unacked=%llu", s->id,
                         s->type, s->driver_id,
                         s->state == KEEL_SERVICE_OPEN        ? "open"
                         : s->state == KEEL_SERVICE_CLOSED    ? "closed"
                         : s->state == KEEL_SERVICE_CANCELLED ? "cancelled"
                                                              : "detached",
                         (unsigned long long) s->total, (unsigned long long) s->unacked);
        keel_core_forget_service (self, s);
        keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_SERVICE_DELETE,
                                                  .service.service_id = s->id });
        keel_model_service_remove (self->model, s);
        n++;
    }
    zlistx_destroy (&old);
    return n;
}

// ---------------------------------------------------------------- HOLD claims

static void
s_pending_key (const char *service_id, uint64_t task_id, char *key, size_t size)
{
    snprintf (key, size, "%s/%llu", service_id, (unsigned long long) task_id);
}

static void
s_pending_free (keel_pending_t *p)
{
    keel_task_result_destroy (&p->result);
    free (p);
}

//  Records the claim in memory and, when durable, in the store. Recovery
//  is not durable: its rows are being read from the store as it runs, and
//  writing a row back under the cursor that reads it made SQLite visit it
//  again, for ever (a restarted broker with a HOLD claim never served).
static keel_err
s_pending_put (keel_core_t *self, const char *service_id, uint64_t task_id, uint64_t exec_id,
               const char *engine_id, keel_task_result_t *result, bool durable)
{
    char key[KEEL_ID_MAX + 32];
    s_pending_key (service_id, task_id, key, sizeof key);
    zlistx_t *list = zhashx_lookup (self->pending, key);
    if (!list) {
        list = zlistx_new ();
        if (!list || zhashx_insert (self->pending, key, list) != 0) {
            zlistx_destroy (&list);
            keel_task_result_destroy (&result);
            return KEEL_ERR_NOMEM;
        }
    }
    keel_pending_t *p = NULL;
    for (keel_pending_t *q = zlistx_first (list); q; q = zlistx_next (list))
        if (q->execution_id == exec_id)
            p = q;
    if (!p) {
        p = calloc (1, sizeof *p);
        if (!p) {
            keel_task_result_destroy (&result);
            return KEEL_ERR_NOMEM;
        }
        snprintf (p->service_id, sizeof p->service_id, "%s", service_id);
        p->task_id = task_id;
        p->execution_id = exec_id;
        zlistx_add_end (list, p);
        self->npending++;
    }
    snprintf (p->engine_id, sizeof p->engine_id, "%s", engine_id);
    if (result) {
        keel_task_result_destroy (&p->result);
        p->result = result;
    }
    p->expires_mono = self->now + self->engine_timeout_ms;
    if (!durable)
        return KEEL_OK;
    keel_store_pending_t row = { p->service_id,
                                 task_id,
                                 exec_id,
                                 p->engine_id,
                                 p->result != NULL,
                                 p->result ? p->result->status : 0,
                                 p->result ? p->result->output : NULL,
                                 p->result ? p->result->output_len : 0,
                                 p->result ? p->result->error : NULL,
                                 p->result ? p->result->run_ms : 0,
                                 self->wall + self->engine_timeout_ms };
    return keel_core_change (self,
                             (keel_change_t) { .kind = KEEL_CHANGE_PENDING_PUT, .pending = row });
}

keel_err
keel_core_pending_add (keel_core_t *self, const char *service_id, uint64_t task_id,
                       uint64_t exec_id, const char *engine_id, keel_task_result_t *result)
{
    return s_pending_put (self, service_id, task_id, exec_id, engine_id, result, true);
}

keel_err
keel_core_pending_restore (keel_core_t *self, const char *service_id, uint64_t task_id,
                           uint64_t exec_id, const char *engine_id, keel_task_result_t *result)
{
    return s_pending_put (self, service_id, task_id, exec_id, engine_id, result, false);
}

static void
s_pending_drop_list (keel_core_t *self, const char *key, zlistx_t *list)
{
    for (keel_pending_t *p = zlistx_first (list); p; p = zlistx_next (list)) {
        keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_PENDING_DELETE,
                                                  .pending = { .service_id = p->service_id,
                                                               .task_id = p->task_id,
                                                               .execution_id = p->execution_id } });
        s_pending_free (p);
        self->npending--;
    }
    zlistx_destroy (&list);
    zhashx_delete (self->pending, key);
}

bool
keel_core_pending_attach (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id)
{
    if (self->npending == 0)
        return false;
    char key[KEEL_ID_MAX + 32];
    s_pending_key (svc->id, task_id, key, sizeof key);
    zlistx_t *list = zhashx_lookup (self->pending, key);
    if (!list)
        return false;
    keel_task_t *t = keel_service_task (svc, task_id);
    bool handled = false;
    for (keel_pending_t *p = zlistx_first (list); p && t; p = zlistx_next (list)) {
        if (t->state >= KEEL_TASK_STATE_DONE)
            break;
        if (p->result) {
            // Now stored here: the engine may forget its copy (an engine
            // offline now learns it at login: the task is done, DROP).
            keel_engine_t *engine = keel_model_engine (self->model, p->engine_id);
            if (engine && engine->state == KEEL_ENGINE_ONLINE)
                keel_core_ack_engine (self, engine, p->execution_id);
        }
        if (p->result && p->result->status == KEEL__TASK_STATUS__STATUS_OK) {
            keel_task_result_t *r = p->result;
            p->result = NULL;
            keel_core_task_finished (self, svc, task_id, r, KEEL_TASK_STATE_DONE);
            self->counters.claims_kept++;
            handled = true;
        }
        else if (p->result && p->result->permanent) {
            t->attempts++; // failed, and no retry can succeed: the task fails now
            keel_task_result_t *r = p->result;
            p->result = NULL;
            keel_core_task_finished (self, svc, task_id, r, KEEL_TASK_STATE_FAILED);
            handled = true;
        }
        else if (p->result) {
            t->attempts++; // the held execution failed: it was one attempt
        }
        else {
            keel_engine_t *engine = keel_model_engine (self->model, p->engine_id);
            if (!engine || engine->state != KEEL_ENGINE_ONLINE)
                continue;
            keel_exec_t *x = keel_model_exec_add (self->model, p->execution_id, svc, task_id,
                                                  engine, t->attempts + 1, self->now);
            if (!x)
                continue;
            keel_core_exec_started (self, x);
            if (t->state != KEEL_TASK_STATE_RUNNING)
                keel_core_task_to (self, svc, task_id, KEEL_TASK_STATE_RUNNING);
            self->counters.claims_kept++;
            handled = true;
        }
    }
    s_pending_drop_list (self, key, list);
    return handled;
}

void
keel_core_pending_forget_engine (keel_core_t *self, const char *engine_id, Keel__HeldTask **held,
                                 size_t n_held)
{
    if (self->npending == 0)
        return;
    zlistx_t *keys = zlistx_new ();
    if (!keys)
        return;
    zlistx_set_destructor (keys, (zlistx_destructor_fn *) zstr_free);
    for (zlistx_t *list = zhashx_first (self->pending); list; list = zhashx_next (self->pending)) {
        for (;;) {
            keel_pending_t *stale = NULL;
            for (keel_pending_t *p = zlistx_first (list); p && !stale; p = zlistx_next (list)) {
                bool listed = false;
                for (size_t i = 0; i < n_held && !listed; i++)
                    listed = held[i]->execution_id == p->execution_id;
                if (!p->result && !listed && strcmp (p->engine_id, engine_id) == 0)
                    stale = p;
            }
            if (!stale)
                break;
            // The engine no longer runs it (it restarted, or the task ended
            // without a result it kept): attaching the claim would leave the
            // task "running" where nothing runs it.
            zlistx_delete (list, zlistx_find (list, stale));
            keel_core_change (
                self, (keel_change_t) { .kind = KEEL_CHANGE_PENDING_DELETE,
                                        .pending = { .service_id = stale->service_id,
                                                     .task_id = stale->task_id,
                                                     .execution_id = stale->execution_id } });
            s_pending_free (stale);
            self->npending--;
        }
        if (zlistx_size (list) == 0)
            zlistx_add_end (keys, strdup (zhashx_cursor (self->pending)));
    }
    for (char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        zlistx_t *list = zhashx_lookup (self->pending, key);
        if (list)
            s_pending_drop_list (self, key, list);
    }
    zlistx_destroy (&keys);
}

static void
s_pending_expire (keel_core_t *self)
{
    if (self->npending == 0)
        return;
    zlistx_t *keys = zlistx_new ();
    if (!keys)
        return;
    zlistx_set_destructor (keys, (zlistx_destructor_fn *) zstr_free);
    for (zlistx_t *list = zhashx_first (self->pending); list; list = zhashx_next (self->pending)) {
        keel_pending_t *p = zlistx_first (list);
        if (p && p->expires_mono <= self->now)
            zlistx_add_end (keys, strdup (zhashx_cursor (self->pending)));
    }
    for (char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        zlistx_t *list = zhashx_lookup (self->pending, key);
        if (list) {
            KEEL_CORE_LOG (self, KEEL_CORE_RL_TASKS, KEEL_LOG_INFO,
                           "HOLD claim expired, nobody submitted it claim=%s", key);
            s_pending_drop_list (self, key, list);
        }
    }
    zlistx_destroy (&keys);
}

void
keel_core_pending_clear (keel_core_t *self)
{
    if (!self->pending)
        return;
    for (zlistx_t *list = zhashx_first (self->pending); list; list = zhashx_next (self->pending)) {
        for (keel_pending_t *p = zlistx_first (list); p; p = zlistx_next (list))
            s_pending_free (p);
        zlistx_destroy (&list);
    }
    zhashx_purge (self->pending);
    self->npending = 0;
}

// ---------------------------------------------------------------- the login window

// The login window after a start is over (or every engine is back): queue
// the recovered queued tasks that no engine claimed.
static void
s_release_recovered (keel_core_t *self)
{
    self->recovered_release_at = 0;
    uint64_t n = 0;
    for (keel_service_rec_t *svc = keel_model_service_first (self->model); svc;
         svc = keel_model_service_next (self->model)) {
        if (svc->state != KEEL_SERVICE_OPEN && svc->state != KEEL_SERVICE_CLOSED)
            continue; // as keel_core_requeue: closed services still run their tasks
        for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks;
             id = keel_service_task_next (svc, id + 1)) {
            keel_task_t *t = keel_service_task (svc, id);
            if (t && t->state == KEEL_TASK_STATE_QUEUED && !t->queued && !t->execs) {
                keel_core_requeue (self, svc, id);
                n++;
            }
        }
    }
    if (n)
        KEEL_INFO ("broker", "login window over: queued tasks released tasks=%llu",
                   (unsigned long long) n);
}

// After a restart (or a noticed pause) the engines that were online may be
// running tasks the store shows queued (a dispatch writes nothing) or
// executions it shows running: for EngineLoginWindow they may log in and
// claim them (KEEP) before anything is queued again. Once every engine
// that was online then has logged in, nobody left can claim anything the
// window protects, so it ends at once instead of idling the grid:
// - the recovered queued tasks nobody claimed are queued;
// - recovered executions linked to no engine (a running task without an
//   execution row) are requeued; those linked to an engine were settled at
//   its login (claimed, or requeued when it did not list them), except for
//   engines that were offline already: theirs keep their deadline;
// - engines lost from now on get their RescheduleDelay, not the window.
// Not when an engine moves in from a failover broker (EngineLogin.moved_from):
// a driver failed over there, and that broker may run tasks of this store
// on engines this one never knew; they come home within the window when
// the driver comes back (work follows its driver), so it runs its length.
// An engine that was offline at the restart may still come back holding a
// task or a result: its claim of a task queued again meanwhile adds an
// execution (the first result wins, the driver keeps the first of each);
// of a finished one gets DROP. Nothing is lost or delivered twice.

void
keel_core_window_open (keel_core_t *self)
{
    size_t awaited = 0;
    zlistx_t *engines = keel_model_engines (self->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        if (self->login_window_ms <= 0)
            e->awaited = false;
        awaited += e->awaited;
    }
    if (awaited == 0)
        return;
    if (self->window_start == 0) {
        self->window_start = self->now;
        self->window_engines = 0;
        self->window_awaited = 0;
        self->window_whole = false;
    }
    self->window_engines += awaited - self->window_awaited;
    self->window_awaited = awaited;
    if (self->now + self->login_window_ms > self->window_end)
        self->window_end = self->now + self->login_window_ms;
}

// The last awaited engine is back before the window's end.
static void
s_window_over_early (keel_core_t *self)
{
    keel_core_event (self, "login-window-over",
                     "all %zu engines back after %.1f s: releasing queued tasks "
                     "(EngineLoginWindow %lld ms)",
                     self->window_engines, (self->now - self->window_start) / 1000.0,
                     (long long) self->login_window_ms);
    self->window_start = self->window_end = 0;
    if (self->recovered_release_at)
        s_release_recovered (self);
    // Executions to settle: recovered ones linked to no engine, and after a
    // pause those of engines lost since they came back (every awaited one
    // has): kept until the window's end (keel_core_engine_lost), they now
    // wait their RescheduleDelay from that loss, as any lost engine's.
    zlistx_t *due = zlistx_new ();
    for (keel_exec_t *x = keel_model_exec_first (self->model); x && due;
         x = keel_model_exec_next (self->model)) {
        if (x->state != KEEL_EXEC_AWAITING_CLAIM)
            continue;
        bool paused = self->pause_window_end && x->requeue_at == self->pause_window_end && x->engine
                      && x->engine->state == KEEL_ENGINE_OFFLINE;
        if (!x->engine || paused)
            zlistx_add_end (due, x);
    }
    for (keel_exec_t *x = due ? zlistx_first (due) : NULL; x; x = zlistx_next (due)) {
        int64_t at =
            x->engine ? x->engine->offline_since_mono + keel_core_service_delay (self, x->service)
                      : self->now;
        if (at <= self->now)
            keel_core_exec_lost (self, x);
        else
            keel_core_exec_await (self, x, at);
    }
    zlistx_destroy (&due);
    self->pause_window_end = 0;
}

void
keel_core_window_engine_back (keel_core_t *self, keel_engine_t *engine)
{
    if (!engine->awaited)
        return;
    engine->awaited = false;
    if (self->window_awaited > 0)
        self->window_awaited--;
    if (self->window_awaited == 0 && self->window_start && !self->window_whole)
        s_window_over_early (self);
}

void
keel_core_window_moved_in (keel_core_t *self, const keel_engine_t *engine, const char *from)
{
    if (!self->window_start || self->window_whole || !from || !from[0]
        || strcmp (from, self->name) == 0)
        return;
    self->window_whole = true;
    keel_core_event (self, "login-window-whole",
                     "engine=%s moved here from broker %s: work of this store ran there, maybe "
                     "on engines this broker does not know; the login window runs its length "
                     "(EngineLoginWindow %lld ms)",
                     engine->id, from, (long long) self->login_window_ms);
}

// The window ran its full length: some engines never came back. Those
// still offline are recorded so (the next restart does not wait for them).
static void
s_window_over (keel_core_t *self)
{
    zlistx_t *engines = keel_model_engines (self->model);
    size_t missing = 0;
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        if (!e->awaited)
            continue;
        e->awaited = false;
        missing++;
        if (e->state == KEEL_ENGINE_OFFLINE)
            keel_core_engine_store (self, e);
    }
    KEEL_INFO ("broker", "login window over: engines_missing=%zu of %zu", missing,
               self->window_engines);
    self->window_start = self->window_end = 0;
    self->window_awaited = 0;
    self->window_whole = false;
}

// ---------------------------------------------------------------- timers

void
keel_core_timers (keel_core_t *self)
{
    s_peers (self);
    s_requeue_due (self);
    // Say how many peer-triggered lines each limiter dropped, once its
    // window is over.
    keel_ratelimit_flush (&self->malformed_rl, self->now, KEEL_LOG_WARN, "broker");
    keel_ratelimit_flush (&self->refused_rl, self->now, KEEL_LOG_WARN, "broker");
    for (int i = 0; i < KEEL_CORE_RL_COUNT; i++)
        keel_ratelimit_flush (&self->rl[i], self->now, KEEL_LOG_WARN, "broker");
    if (self->recovered_release_at && self->now >= self->recovered_release_at)
        s_release_recovered (self);
    if (self->window_start && self->now >= self->window_end)
        s_window_over (self);
    static const int64_t every = 1000;
    if (self->now - self->last_slow_timer >= every) {
        self->last_slow_timer = self->now;
        s_pending_expire (self);
        keel_core_blacklist_expire (self);
        keel_core_no_engine_check (self);
        // A failed store is tried again once a second: the first commit
        // that succeeds takes submissions again, even on a broker with
        // nothing else to write. With nothing in the transaction, the write
        // is the execution-id reservation, unchanged (after a failed commit
        // the limit is the committed one).
        if (self->store_failed) {
            if (!keel_changes_size (self->changes))
                keel_core_change (
                    self, (keel_change_t) { .kind = KEEL_CHANGE_META_SET,
                                            .meta = { "execution_seq", self->exec_seq_limit } });
            self->force_commit = true;
        }
    }
    if (self->now - self->last_purge >= KEEL_PURGE_INTERVAL_MS) {
        self->last_purge = self->now;
        keel_core_purge (self, self->wall, keel_broker_cfg_RetentionHours (self->settings));
    }
}

// ---------------------------------------------------------------- dispatch

static bool
s_accept (keel_service_rec_t *svc, keel_task_t *task, keel_engine_t *engine, void *arg)
{
    keel_core_t *self = arg;
    // A task not committed yet is dispatched only when its commit is due
    // this turn and the store took the last one (see s_turn).
    if (!task->durable && self->store_failed)
        return false;
    // No task of a service whose executions failed here too often, while
    // another engine may take it: a blacklist steers work away from an
    // engine, it never leaves a service with no engine at all (a single
    // engine, or one whose tasks fail everywhere: they fail after their
    // attempts instead of waiting BlacklistFor).
    if (keel_core_blacklisted (self, engine, svc) && keel_core_can_serve (self, engine, svc))
        return false;
    // Retry a failed task on another engine when there is one (one that
    // offers the type and is not blacklisted for the service: else the
    // task would wait for nobody).
    if (task->avoid == engine->number && keel_core_can_serve (self, engine, svc))
        return false;
    // Beyond the engine's free slots, only what fits its PrefetchWindow.
    if (self->prefetch_room != UINT64_MAX && keel_service_cost (svc) > self->prefetch_room)
        return false;
    return true;
}

// How much more expected work an engine may be sent, in µs: any task while
// a slot is free (UINT64_MAX); beyond its slots, up to EnginePrefetch
// tasks, each only if its service's estimated run time fits what is left
// of PrefetchWindow per slot after the work it holds (backlog_us: running
// and queued tasks, a task of a service with no result yet weighing more
// than any window). So tiny tasks stream (the next ones wait at the engine
// when a slot frees up: no round trip to the broker between them), while a
// task that would wait longer than the window behind others stays here for
// whichever engine frees a slot first. PrefetchWindow=0: EnginePrefetch
// tasks whatever they weigh. Returns 0 when the engine is full.
static uint64_t
s_room (keel_core_t *self, const keel_engine_t *e)
{
    size_t held = zlistx_size (e->execs);
    if (held < (size_t) e->slots)
        return UINT64_MAX;
    if (held >= (size_t) e->slots + self->engine_prefetch)
        return 0;
    if (self->prefetch_window_us == 0)
        return UINT64_MAX;
    uint64_t window = self->prefetch_window_us * (e->slots ? e->slots : 1);
    return e->backlog_us < window ? window - e->backlog_us : 0;
}

// Assigns for one engine leave together: within one dispatch turn they
// are collected and sent as one AssignBatch (a single one as a plain
// Assign), at most KEEL_ASSIGNS_PER_MSG per message and, once it holds
// KEEL_ASSIGN_BYTES_PER_MSG of task bytes (input, memory, init data), the
// next goes in a new message: far below MaxMessageSize. A task larger
// than that goes alone.
#define KEEL_ASSIGNS_PER_MSG      512
#define KEEL_ASSIGN_BYTES_PER_MSG (1024 * 1024)

// The Assigns collected for one engine. They point into the model (ids,
// inputs, checkpoints, init data), which nothing changes while dispatch
// fills one engine; they are encoded before dispatch moves on.
typedef struct {
    keel_engine_t *engine;
    Keel__Assign *items;
    Keel__Assign **ptrs;
    size_t cap; // KEEL_ASSIGNS_PER_MSG, or 1 without memory for more
    size_t n;
    size_t bytes;
    bool out_of_ids; // dispatch stopped for the next execution-id reservation
} s_batch_t;

static void
s_batch_flush (keel_core_t *self, s_batch_t *b)
{
    if (b->n == 0)
        return;
    keel_msg_t msg;
    keel_core_send_engine (self, b->engine, keel_msg_assigns (&msg, b->ptrs, b->n)); // encodes now
    b->n = 0;
    b->bytes = 0;
}

// Starts an execution of the task on the batch's engine and adds its
// Assign to the batch. Returns false, with the task back in its queue, when
// there is no execution id (none until the next commit) or no memory.
static bool
s_assign (keel_core_t *self, s_batch_t *b, keel_service_rec_t *svc, uint64_t task_id,
          keel_task_t *t)
{
    keel_engine_t *engine = b->engine;
    uint64_t exec_id = keel_core_next_exec_id (self);
    if (exec_id == 0) {
        keel_core_requeue (self, svc, task_id); // next turn, after the commit
        b->out_of_ids = true;
        return false;
    }
    // Queue wait: from acceptance to the dispatch of a task that has no
    // other execution and no failed attempt (its first dispatch, or again
    // after its engine was lost).
    if (self->metrics && !t->execs && t->attempts == 0 && t->accepted_mono
        && self->now >= t->accepted_mono)
        keel_metrics_queue_wait (self->metrics, svc->type,
                                 (uint64_t) (self->now - t->accepted_mono));
    keel_exec_t *x = keel_model_exec_add (self->model, exec_id, svc, task_id, engine,
                                          t->attempts + 1u, self->now);
    if (!x) {
        keel_core_requeue (self, svc, task_id);
        return false;
    }
    x->before_commit = !t->durable;
    // A dispatch writes nothing to the store: neither the task's RUNNING
    // state nor an execution row. A restarted broker treats the tasks its
    // store shows queued exactly like running ones (they wait one
    // EngineLoginWindow for the engines' claims before they are queued),
    // so these writes, two per task at high rates, bought no safety. Claims
    // at login still write both (rare).
    keel_core_task_to (self, svc, task_id, KEEL_TASK_STATE_RUNNING);
    x->started_wall_ms = self->wall;

    bool with_init = svc->init_len && !zhashx_lookup (engine->init_sent, svc->id);
    size_t bytes = (size_t) t->input_len + (t->checkpoint ? t->checkpoint_len : 0)
                   + (with_init ? svc->init_len : 0);
    if (b->n && (b->n == b->cap || b->bytes + bytes > KEEL_ASSIGN_BYTES_PER_MSG))
        s_batch_flush (self, b);
    Keel__Assign *assign = &b->items[b->n++];
    b->bytes += bytes;
    keel_item_assign (assign,
                      &(keel_assign_args_t) { .service_id = svc->id,
                                              .type = svc->type,
                                              .task_id = task_id,
                                              .execution_id = exec_id,
                                              .input = t->input,
                                              .input_size = t->input_len,
                                              .memory = t->checkpoint,
                                              .memory_size = t->checkpoint_len,
                                              .attempt = x->attempt,
                                              .init_data = with_init ? svc->init_data : NULL,
                                              .init_size = with_init ? svc->init_len : 0 });
    if (with_init)
        zhashx_insert (engine->init_sent, svc->id, (void *) 1);
    self->counters.tasks_dispatched++;
    KEEL_JOURNAL ("dispatched", .service = svc->id, .task = task_id, .execution = exec_id,
                  .engine = engine->id, .epoch = (int64_t) self->epoch, .text = self->name);
    return true;
}

void
keel_core_dispatch (keel_core_t *self)
{
    self->dispatch_ready = false;
    if (keel_sched_size (self->sched) == 0)
        return;
    Keel__Assign one;
    Keel__Assign *one_p = &one;
    if (!self->assign_items) {
        Keel__Assign *items = malloc (KEEL_ASSIGNS_PER_MSG * sizeof *items);
        Keel__Assign **ptrs = malloc (KEEL_ASSIGNS_PER_MSG * sizeof *ptrs);
        if (items && ptrs) {
            for (size_t i = 0; i < KEEL_ASSIGNS_PER_MSG; i++)
                ptrs[i] = &items[i];
            self->assign_items = items;
            self->assign_ptrs = ptrs;
        }
        else {
            free (items);
            free (ptrs);
        }
    }
    s_batch_t b = {
        NULL, self->assign_items, self->assign_ptrs, KEEL_ASSIGNS_PER_MSG, 0, 0, false
    };
    if (!b.items) {
        b.items = &one; // no memory for a batch: one Assign per message
        b.ptrs = &one_p;
        b.cap = 1;
    }
    bool stop = false;
    zlistx_t *engines = keel_model_engines (self->model);
    // Each engine visited goes to the end of the list (s_accept walks the
    // same list, so the loop never keeps a cursor across it). A full pass
    // restores the order: one more step then, so the next dispatch starts
    // with the next engine and engines with free slots take turns at tasks
    // that come one at a time.
    size_t n = zlistx_size (engines), visited = 0;
    for (; visited < n && !stop; visited++) {
        keel_engine_t *e = zlistx_first (engines);
        if (!e)
            break;
        zlistx_move_end (engines, zlistx_cursor (engines));
        if (e->state != KEEL_ENGINE_ONLINE || e->draining)
            continue;
        // Nothing may overtake a LoginReply still held for its commit.
        if (e->reply_held_seq > self->synced_seq)
            continue;
        b.engine = e;
        while ((self->prefetch_room = s_room (self, e)) > 0) {
            keel_service_rec_t *svc;
            uint64_t task_id;
            keel_task_t *t = keel_sched_next (self->sched, e, s_accept, self, &svc, &task_id);
            if (!t)
                break;
            // Out of execution ids (they come with the next commit, which
            // sets dispatch_ready) or memory: asking again now would only
            // pop the requeued task again, forever.
            stop = !s_assign (self, &b, svc, task_id, t);
            if (stop)
                break;
        }
        s_batch_flush (self, &b);
    }
    self->prefetch_room = UINT64_MAX;
    if (visited == n && zlistx_first (engines))
        zlistx_move_end (engines, zlistx_cursor (engines));
    // The task given back for want of an id asked for another dispatch;
    // none can assign before the reservation is durable, and
    // keel_core_synced asks for one then. Asking now made the loop spin
    // (poll timeout 0) until the syncer, or a pair's mirror, confirmed it.
    if (b.out_of_ids)
        self->dispatch_ready = false;
}
