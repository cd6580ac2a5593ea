/*  broker_sched.c — the broker's timers (heartbeats, lost peers, delayed
    requeues, HOLD expiry, retention), dispatch of queued tasks to engines,
    HOLD claims, recovery from the store at start, and the glue between
    admin requests and admin.c.
*/

#include "broker_int.h"

#include <stdlib.h>
#include <string.h>

#include "admin.h"

// How often the retention purge looks for services to drop.
#define KEEL_PURGE_INTERVAL_MS (10 * 60 * 1000)

// ---------------------------------------------------------------- settings

void
keel_broker_apply_settings (keel_broker_t *self)
{
    keel_settings_t *s = self->settings;
    self->heartbeat_ms = keel_settings_ms (s, "HeartbeatInterval");
    self->engine_timeout_ms = keel_settings_ms (s, "EngineTimeoutMinutes");
    self->reschedule_delay_ms = keel_settings_ms (s, "RescheduleDelay");
    self->login_window_ms = keel_settings_ms (s, "EngineLoginWindow");
    self->commit_delay_ms = keel_settings_ms (s, "CommitDelay");
    self->max_attempts = (uint32_t) keel_settings_int (s, "MaxAttempts");
    self->engine_prefetch = (uint32_t) keel_settings_int (s, "EnginePrefetch");
    self->cancel_redundant = keel_settings_bool (s, "CancelRedundant");
    self->max_tasks = (uint64_t) keel_settings_int (s, "MaxTasksPerService");
    keel_log_level_t level;
    if (keel_log_level_parse (keel_settings_str (s, "LogLevel"), &level) == 0)
        keel_log_init (level);
}

// ---------------------------------------------------------------- lost work

void
keel_broker_exec_lost (keel_broker_t *self, keel_exec_t *exec)
{
    keel_service_t *svc = exec->service;
    uint64_t task_id = exec->task_id;
    keel_store_execution_delete (self->store, exec->id);
    keel_model_exec_remove (self->model, exec);
    keel_task_t *t = keel_service_task (svc, task_id);
    if (t && t->state < KEEL_TASK_DONE && !t->execs) {
        keel_broker_requeue (self, svc, task_id);
        self->counters.tasks_rescheduled++;
    }
}

static void
s_note_requeue_at (keel_broker_t *self, int64_t at)
{
    if (self->requeue_check_at == 0 || at < self->requeue_check_at)
        self->requeue_check_at = at;
}

void
keel_broker_engine_lost (keel_broker_t *self, keel_engine_t *engine, const char *why, bool moving)
{
    if (engine->state == KEEL_ENGINE_OFFLINE)
        return;
    engine->state = KEEL_ENGINE_OFFLINE;
    engine->offline_since_mono = self->now;
    keel_model_engine_route (self->model, engine, NULL);
    keel_store_engine_t row = { engine->id, engine->host, engine->session, engine->slots,
                                engine->login_wall_ms, zclock_time () };
    keel_store_engine_put (self->store, &row);
    zlistx_t *now_lost = zlistx_new ();
    size_t running = zlistx_size (engine->execs);
    for (keel_exec_t *x = zlistx_first (engine->execs); x; x = zlistx_next (engine->execs)) {
        // An engine moving to its primary carries its tasks there; they
        // come back here only if it never returns.
        int64_t delay = moving ? self->engine_timeout_ms
                               : keel_broker_service_delay (self, x->service);
        if (delay <= 0 && now_lost)
            zlistx_add_end (now_lost, x);
        else {
            x->requeue_at = self->now + delay;
            s_note_requeue_at (self, x->requeue_at);
        }
    }
    for (keel_exec_t *x = now_lost ? zlistx_first (now_lost) : NULL; x; x = zlistx_next (now_lost))
        keel_broker_exec_lost (self, x);
    zlistx_destroy (&now_lost);
    keel_broker_event (self, "engine-lost", "engine=%s why=%s running=%zu", engine->id, why,
                       running);
}

static void
s_requeue_due (keel_broker_t *self)
{
    if (self->requeue_check_at == 0 || self->now < self->requeue_check_at)
        return;
    self->requeue_check_at = 0;
    zlistx_t *due = zlistx_new ();
    if (!due)
        return;
    for (keel_exec_t *x = keel_model_exec_first (self->model); x;
         x = keel_model_exec_next (self->model)) {
        if (x->requeue_at == 0)
            continue;
        if (x->requeue_at <= self->now)
            zlistx_add_end (due, x);
        else
            s_note_requeue_at (self, x->requeue_at);
    }
    for (keel_exec_t *x = zlistx_first (due); x; x = zlistx_next (due))
        keel_broker_exec_lost (self, x);
    zlistx_destroy (&due);
}

// ---------------------------------------------------------------- heartbeats

static void
s_heartbeat (keel_broker_t *self, zframe_t *route)
{
    Keel__Envelope env;
    Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    keel_broker_send (self, route, &env);
}

static void
s_peers (keel_broker_t *self)
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
        keel_broker_engine_lost (self, e, "heartbeat timeout", false);
    zlistx_destroy (&lost);

    zlistx_t *drivers = keel_model_drivers (self->model);
    for (keel_driver_rec_t *d = zlistx_first (drivers); d; d = zlistx_next (drivers)) {
        if (!d->connected)
            continue;
        if (keel_peer_clock_lost (&d->clock, self->now)) {
            d->connected = false;
            KEEL_INFO ("broker", "driver silent, results wait for its return driver=%s", d->id);
        }
        else if (keel_peer_clock_heartbeat_due (&d->clock, self->now)) {
            s_heartbeat (self, d->route);
            keel_peer_clock_sent (&d->clock, self->now);
        }
    }
}

// ---------------------------------------------------------------- retention

// Drops closed services whose results are all acknowledged and whose
// retention has passed. Returns how many.
static uint64_t
s_purge (keel_broker_t *self, int64_t now_wall, int64_t retention_ms)
{
    zlistx_t *old = zlistx_new ();
    if (!old)
        return 0;
    for (keel_service_t *s = keel_model_service_first (self->model); s;
         s = keel_model_service_next (self->model)) {
        bool closed = s->state == KEEL_SERVICE_CLOSED || s->state == KEEL_SERVICE_CANCELLED;
        bool settled = s->unacked == 0 && (s->state == KEEL_SERVICE_CANCELLED
                                           || s->count[KEEL_TASK_QUEUED] + s->count[KEEL_TASK_RUNNING] == 0);
        if (closed && settled && s->closed_wall_ms + retention_ms <= now_wall)
            zlistx_add_end (old, s);
    }
    uint64_t n = 0;
    for (keel_service_t *s = zlistx_first (old); s; s = zlistx_next (old)) {
        keel_broker_forget_service (self, s);
        keel_store_service_delete (self->store, s->id);
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

keel_err
keel_broker_pending_add (keel_broker_t *self, const char *service_id, uint64_t task_id,
                         uint64_t exec_id, const char *engine_id, keel_task_result_t *result)
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
    keel_store_pending_t row = { p->service_id, task_id, exec_id, p->engine_id, p->result != NULL,
                                 p->result ? p->result->status : 0,
                                 p->result ? p->result->output : NULL,
                                 p->result ? p->result->output_len : 0,
                                 p->result ? p->result->error : NULL,
                                 p->result ? p->result->run_ms : 0,
                                 zclock_time () + self->engine_timeout_ms };
    return keel_store_pending_put (self->store, &row);
}

static void
s_pending_drop_list (keel_broker_t *self, const char *key, zlistx_t *list)
{
    for (keel_pending_t *p = zlistx_first (list); p; p = zlistx_next (list)) {
        keel_store_pending_delete (self->store, p->service_id, p->task_id, p->execution_id);
        s_pending_free (p);
        self->npending--;
    }
    zlistx_destroy (&list);
    zhashx_delete (self->pending, key);
}

bool
keel_broker_pending_attach (keel_broker_t *self, keel_service_t *svc, uint64_t task_id)
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
        if (t->state >= KEEL_TASK_DONE)
            break;
        if (p->result) {
            // Now stored here: the engine may forget its copy (an engine
            // offline now learns it at login: the task is done, DROP).
            keel_engine_t *engine = keel_model_engine (self->model, p->engine_id);
            if (engine && engine->state == KEEL_ENGINE_ONLINE)
                keel_broker_ack_engine (self, engine, p->execution_id);
        }
        if (p->result && p->result->status == KEEL__TASK_STATUS__STATUS_OK) {
            keel_task_result_t *r = p->result;
            p->result = NULL;
            keel_broker_task_finished (self, svc, task_id, r, KEEL_TASK_DONE);
            self->counters.claims_kept++;
            handled = true;
        }
        else if (p->result) {
            t->attempts++;      // the held execution failed: it was one attempt
        }
        else {
            keel_engine_t *engine = keel_model_engine (self->model, p->engine_id);
            if (!engine || engine->state != KEEL_ENGINE_ONLINE)
                continue;
            keel_exec_t *x = keel_model_exec_add (self->model, p->execution_id, svc, task_id,
                                                  engine, t->attempts + 1, self->now);
            if (!x)
                continue;
            keel_store_execution_t row = { x->id, svc->id, task_id, engine->id, x->attempt,
                                           zclock_time () };
            keel_store_execution_put (self->store, &row);
            if (t->state != KEEL_TASK_RUNNING)
                keel_service_task_set_state (svc, t, KEEL_TASK_RUNNING);
            self->counters.claims_kept++;
            handled = true;
        }
    }
    s_pending_drop_list (self, key, list);
    return handled;
}

static void
s_pending_expire (keel_broker_t *self)
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
            KEEL_INFO ("broker", "HOLD claim expired, nobody submitted it claim=%s", key);
            s_pending_drop_list (self, key, list);
        }
    }
    zlistx_destroy (&keys);
}

void
keel_broker_pending_clear (keel_broker_t *self)
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

// ---------------------------------------------------------------- timers

// The login window after a start is over: queue the recovered queued
// tasks that no engine claimed.
static void
s_release_recovered (keel_broker_t *self)
{
    self->recovered_release_at = 0;
    uint64_t n = 0;
    for (keel_service_t *svc = keel_model_service_first (self->model); svc;
         svc = keel_model_service_next (self->model)) {
        if (svc->state != KEEL_SERVICE_OPEN)
            continue;
        for (uint64_t id = 0; id < svc->ntasks; id++) {
            keel_task_t *t = &svc->tasks[id];
            if (t->present && t->state == KEEL_TASK_QUEUED && !t->queued && !t->execs) {
                keel_broker_requeue (self, svc, id);
                n++;
            }
        }
    }
    if (n)
        KEEL_INFO ("broker", "login window over: queued tasks released tasks=%llu",
                   (unsigned long long) n);
}

void
keel_broker_timers (keel_broker_t *self)
{
    s_peers (self);
    s_requeue_due (self);
    if (self->recovered_release_at && self->now >= self->recovered_release_at)
        s_release_recovered (self);
    static const int64_t every = 1000;
    if (self->now - self->last_slow_timer >= every) {
        self->last_slow_timer = self->now;
        s_pending_expire (self);
    }
    if (self->now - self->last_purge >= KEEL_PURGE_INTERVAL_MS) {
        self->last_purge = self->now;
        uint64_t n = s_purge (self, zclock_time (), keel_settings_ms (self->settings, "RetentionHours"));
        if (n)
            keel_broker_event (self, "retention", "purged %llu services", (unsigned long long) n);
    }
}

// ---------------------------------------------------------------- dispatch

static bool
s_other_engine_offers (keel_broker_t *self, keel_engine_t *engine, const char *type)
{
    zlistx_t *engines = keel_model_engines (self->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines))
        if (e != engine && e->state == KEEL_ENGINE_ONLINE && !e->draining
            && keel_engine_offers (e, type))
            return true;
    return false;
}

static bool
s_accept (keel_service_t *svc, keel_task_t *task, keel_engine_t *engine, void *arg)
{
    keel_broker_t *self = arg;
    if (!task->durable)
        return false;
    // Retry a failed task on another engine when there is one.
    if (task->avoid == engine && s_other_engine_offers (self, engine, svc->type))
        return false;
    return true;
}

static void
s_assign (keel_broker_t *self, keel_engine_t *engine, keel_service_t *svc, uint64_t task_id,
          keel_task_t *t)
{
    uint64_t exec_id = keel_broker_next_exec_id (self);
    if (exec_id == 0) {
        keel_broker_requeue (self, svc, task_id);   // next turn, after the commit
        return;
    }
    keel_exec_t *x = keel_model_exec_add (self->model, exec_id, svc, task_id, engine,
                                          t->attempts + 1u, self->now);
    if (!x) {
        keel_broker_requeue (self, svc, task_id);
        return;
    }
    keel_service_task_set_state (svc, t, KEEL_TASK_RUNNING);
    keel_broker_touch (self, svc, task_id, KEEL_DIRTY_STATE);
    keel_store_execution_t row = { exec_id, svc->id, task_id, engine->id, x->attempt,
                                   zclock_time () };
    keel_store_execution_put (self->store, &row);

    Keel__Envelope env;
    Keel__Assign assign = KEEL__ASSIGN__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    assign.service_id = svc->id;
    assign.type = svc->type;
    assign.has_task_id = true;
    assign.task_id = task_id;
    assign.has_execution_id = true;
    assign.execution_id = exec_id;
    assign.has_input = true;
    assign.input.data = t->input;
    assign.input.len = t->input_len;
    if (t->checkpoint) {
        assign.has_memory = true;
        assign.memory.data = t->checkpoint;
        assign.memory.len = t->checkpoint_len;
    }
    assign.has_attempt = true;
    assign.attempt = x->attempt;
    if (svc->init_len && !zhashx_lookup (engine->init_sent, svc->id)) {
        assign.has_init_data = true;
        assign.init_data.data = svc->init_data;
        assign.init_data.len = svc->init_len;
        zhashx_insert (engine->init_sent, svc->id, (void *) 1);
    }
    env.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
    env.assign = &assign;
    keel_broker_send_engine (self, engine, &env);
    self->counters.tasks_dispatched++;
}

void
keel_broker_dispatch (keel_broker_t *self)
{
    if (keel_sched_size (self->sched) == 0)
        return;
    zlistx_t *engines = keel_model_engines (self->model);
    size_t n = zlistx_size (engines);
    for (size_t i = 0; i < n; i++) {
        keel_engine_t *e = zlistx_first (engines);
        if (!e)
            break;
        // Rotate: the next turn starts with the next engine.
        zlistx_move_end (engines, zlistx_cursor (engines));
        if (e->state != KEEL_ENGINE_ONLINE || e->draining)
            continue;
        while (zlistx_size (e->execs) < (size_t) e->slots + self->engine_prefetch) {
            keel_service_t *svc;
            uint64_t task_id;
            keel_task_t *t = keel_sched_next (self->sched, e, s_accept, self, &svc, &task_id);
            if (!t)
                break;
            s_assign (self, e, svc, task_id, t);
        }
    }
}

// ---------------------------------------------------------------- recovery

typedef struct {
    keel_broker_t *self;
    uint64_t services, tasks, execs, pending;
} s_load_t;

static int
s_load_service (const keel_store_service_t *row, void *arg)
{
    s_load_t *ld = arg;
    keel_service_t *svc = keel_model_service_add (ld->self->model, row->service_id, row->type,
                                                  row->driver_id);
    if (!svc)
        return -1;
    svc->priority = row->priority;
    svc->max_attempts = row->max_attempts;
    svc->reschedule_delay_ms = row->reschedule_delay_ms;
    if (row->init_len) {
        svc->init_data = malloc (row->init_len);
        if (!svc->init_data)
            return -1;
        memcpy (svc->init_data, row->init_data, row->init_len);
        svc->init_len = row->init_len;
    }
    svc->state = row->state;
    svc->created_wall_ms = row->created_wall_ms;
    svc->closed_wall_ms = row->closed_wall_ms;
    ld->services++;
    return 0;
}

static int
s_load_task (const keel_store_task_t *row, void *arg)
{
    s_load_t *ld = arg;
    keel_broker_t *self = ld->self;
    keel_service_t *svc = keel_model_service (self->model, row->service_id);
    if (!svc)
        return 0;       // orphan row: ignore
    keel_task_t *t = keel_service_task_add (svc, row->task_id, row->input, row->input_len);
    if (!t)
        return -1;
    t->durable = 1;
    t->attempts = (uint16_t) row->attempts;
    t->acked = row->result_acked;
    t->accepted_mono = self->now;
    if (row->checkpoint_len) {
        t->checkpoint = malloc (row->checkpoint_len);
        if (!t->checkpoint)
            return -1;
        memcpy (t->checkpoint, row->checkpoint, row->checkpoint_len);
        t->checkpoint_len = (uint32_t) row->checkpoint_len;
        t->checkpoint_wall_ms = row->checkpoint_wall_ms;
    }
    keel_task_state_t state = row->state <= KEEL_TASK_CANCELLED ? row->state : KEEL_TASK_QUEUED;
    if (state >= KEEL_TASK_DONE && state != KEEL_TASK_CANCELLED) {
        keel_task_result_t *r = calloc (1, sizeof *r);
        if (!r)
            return -1;
        r->status = row->status;
        if (row->output_len) {
            r->output = malloc (row->output_len);
            if (!r->output) {
                free (r);
                return -1;
            }
            memcpy (r->output, row->output, row->output_len);
            r->output_len = row->output_len;
        }
        r->error = row->error ? strdup (row->error) : NULL;
        snprintf (r->engine_id, sizeof r->engine_id, "%s", row->engine_id ? row->engine_id : "");
        r->execution_id = row->execution_id;
        r->run_ms = row->run_ms;
        r->queued_ms = row->queued_ms;
        keel_task_set_result (t, r);
        if (!t->acked)
            svc->unacked++;
    }
    keel_service_task_set_state (svc, t, state);
    // A queued task may be running elsewhere by now (the driver failed over
    // and a failover broker dispatched it): like running tasks, queued ones
    // wait one login window so that a returning engine claims it first.
    if (state == KEEL_TASK_QUEUED && svc->state == KEEL_SERVICE_OPEN) {
        if (self->login_window_ms > 0)
            self->recovered_release_at = self->now + self->login_window_ms;
        else {
            keel_service_queue_push (svc, row->task_id);
            keel_sched_activate (self->sched, svc);
        }
    }
    ld->tasks++;
    return 0;
}

static int
s_load_exec (const keel_store_execution_t *row, void *arg)
{
    s_load_t *ld = arg;
    keel_broker_t *self = ld->self;
    keel_service_t *svc = keel_model_service (self->model, row->service_id);
    if (!svc || !keel_service_task (svc, row->task_id))
        return 0;
    keel_exec_t *x = keel_model_exec_add (self->model, row->execution_id, svc, row->task_id, NULL,
                                          row->attempt, self->now);
    if (x) {
        // Its engine gets one login window to claim it.
        x->requeue_at = self->now + self->login_window_ms;
        s_note_requeue_at (self, x->requeue_at);
        ld->execs++;
    }
    return 0;
}

static int
s_load_pending (const keel_store_pending_t *row, void *arg)
{
    s_load_t *ld = arg;
    keel_task_result_t *r = NULL;
    if (row->has_result) {
        r = calloc (1, sizeof *r);
        if (!r)
            return -1;
        r->status = row->status;
        if (row->output_len && (r->output = malloc (row->output_len))) {
            memcpy (r->output, row->output, row->output_len);
            r->output_len = row->output_len;
        }
        r->error = row->error ? strdup (row->error) : NULL;
        snprintf (r->engine_id, sizeof r->engine_id, "%s", row->engine_id ? row->engine_id : "");
        r->execution_id = row->execution_id;
        r->run_ms = row->run_ms;
    }
    keel_broker_pending_add (ld->self, row->service_id, row->task_id, row->execution_id,
                             row->engine_id ? row->engine_id : "", r);
    ld->pending++;
    return 0;
}

static int
s_load_config (const char *key, const char *value, void *arg)
{
    s_load_t *ld = arg;
    keel_error_t err;
    if (keel_settings_set (ld->self->settings, key, value, "store", &err) != KEEL_OK)
        KEEL_WARN ("broker", "ignoring stored setting: %s", err.text);
    return 0;
}

// Known engines come back offline; their own login brings them online.
static int
s_load_engine (const keel_store_engine_t *row, void *arg)
{
    s_load_t *ld = arg;
    keel_engine_t *engine = keel_model_engine (ld->self->model, row->engine_id);
    if (!engine)
        engine = keel_model_engine_add (ld->self->model, row->engine_id);
    if (!engine)
        return -1;
    snprintf (engine->host, sizeof engine->host, "%s", row->host);
    snprintf (engine->session, sizeof engine->session, "%s", row->session);
    engine->slots = row->slots;
    engine->login_wall_ms = row->login_wall_ms;
    engine->offline_since_mono = ld->self->now;
    return 0;
}

keel_err
keel_broker_recover (keel_broker_t *self, keel_error_t *err)
{
    uint64_t epoch = 0, seq = 0;
    keel_store_meta_get (self->store, "epoch", &epoch);
    keel_store_meta_get (self->store, "execution_seq", &seq);
    self->epoch = epoch + 1;
    self->exec_seq = seq;
    self->exec_seq_limit = seq;     // the first dispatch reserves a new block
    s_load_t ld = { self, 0, 0, 0, 0 };
    keel_store_loader_t loader = { s_load_service, s_load_task, s_load_exec, s_load_pending,
                                   s_load_config, s_load_engine };
    keel_err rc = keel_store_load (self->store, &loader, &ld, err);
    if (rc != KEEL_OK)
        return rc;
    keel_broker_apply_settings (self);
    // Tasks that were running but have no execution row: give them the
    // same login window through a placeholder execution.
    for (keel_service_t *svc = keel_model_service_first (self->model); svc;
         svc = keel_model_service_next (self->model)) {
        for (uint64_t id = 0; id < svc->ntasks; id++) {
            keel_task_t *t = &svc->tasks[id];
            if (t->present && t->state == KEEL_TASK_RUNNING && !t->execs) {
                self->exec_seq++;
                keel_exec_t *x = keel_model_exec_add (self->model, self->exec_prefix | self->exec_seq,
                                                      svc, id, NULL, t->attempts + 1u, self->now);
                if (x) {
                    x->requeue_at = self->now + self->login_window_ms;
                    s_note_requeue_at (self, x->requeue_at);
                }
            }
        }
    }
    self->exec_seq_limit = self->exec_seq + 10000;
    self->exec_seq_durable = self->exec_seq_limit;
    rc = keel_store_meta_set (self->store, "epoch", self->epoch);
    if (rc == KEEL_OK)
        rc = keel_store_meta_set (self->store, "execution_seq", self->exec_seq_limit);
    if (rc == KEEL_OK)
        rc = keel_store_commit (self->store, err);
    if (rc != KEEL_OK)
        return rc;
    if (ld.services)
        KEEL_INFO ("broker", "recovered services=%llu tasks=%llu executions=%llu pending=%llu "
                   "login_window_ms=%lld", (unsigned long long) ld.services,
                   (unsigned long long) ld.tasks, (unsigned long long) ld.execs,
                   (unsigned long long) ld.pending, (long long) self->login_window_ms);
    self->last_purge = self->now;
    return KEEL_OK;
}

// ---------------------------------------------------------------- admin

static keel_err
s_admin_cancel (void *broker, const char *service_id, keel_error_t *err)
{
    keel_broker_t *self = broker;
    keel_service_t *svc = keel_model_service (self->model, service_id);
    if (!svc)
        return keel_error_set (err, KEEL_ERR_NOTFOUND, "no service '%s'", service_id);
    bool was_cancelled = svc->state == KEEL_SERVICE_CANCELLED;
    keel_err rc = keel_broker_cancel_service (self, svc);
    keel_driver_rec_t *drv = keel_model_driver (self->model, svc->driver_id);
    if (rc != KEEL_OK || was_cancelled || !drv)
        return rc;
    // The driver would otherwise wait forever for results that will not
    // come: Refused{SERVICE_CLOSED} without task ids fails the whole service
    // there (docs/protocol.md). A driver that is away now learns it at its
    // next hello: the service is reported unknown and its tasks refused.
    Keel__Envelope env;
    Keel__Refused refused = KEEL__REFUSED__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    refused.service_id = svc->id;
    refused.has_code = true;
    refused.code = KEEL__REFUSE_CODE__REFUSE_SERVICE_CLOSED;
    refused.error = "service cancelled by an administrator";
    env.body_case = KEEL__ENVELOPE__BODY_REFUSED;
    env.refused = &refused;
    keel_broker_send_driver (self, drv, &env);
    return KEEL_OK;
}

static keel_err
s_admin_config_set (void *broker, const char *key, const char *value, keel_error_t *err)
{
    keel_broker_t *self = broker;
    const keel_setting_def_t *def = keel_settings_def (self->settings, key);
    if (!def)
        return keel_error_set (err, KEEL_ERR_NOTFOUND, "unknown key '%s'", key);
    if (!def->runtime)
        return keel_error_set (err, KEEL_ERR_STATE,
                               "%s cannot be changed while the broker runs (set it in the "
                               "properties file and restart)", key);
    keel_err rc = keel_settings_set (self->settings, key, value, "keel-admin", err);
    if (rc != KEEL_OK)
        return rc;
    rc = keel_store_config_set (self->store, key, value);
    if (rc == KEEL_OK)
        rc = keel_store_commit (self->store, err);
    if (rc != KEEL_OK)
        return rc;
    keel_broker_apply_settings (self);
    keel_broker_event (self, "config", "%s=%s", key, value);
    return KEEL_OK;
}

static keel_err
s_admin_drain (void *broker, const char *engine_id, keel_error_t *err)
{
    keel_broker_t *self = broker;
    keel_engine_t *engine = keel_model_engine (self->model, engine_id);
    if (!engine)
        return keel_error_set (err, KEEL_ERR_NOTFOUND, "no engine '%s'", engine_id);
    engine->draining = true;
    keel_broker_event (self, "engine-drain", "engine=%s running=%zu", engine->id,
                       zlistx_size (engine->execs));
    return KEEL_OK;
}

static keel_err
s_admin_maintenance (void *broker, keel_store_maintenance_t *report, keel_error_t *err)
{
    keel_broker_t *self = broker;
    int64_t retention = keel_settings_ms (self->settings, "RetentionHours");
    uint64_t n = s_purge (self, zclock_time (), retention);
    keel_err rc = keel_store_commit (self->store, err);
    if (rc == KEEL_OK)
        rc = keel_store_maintenance (self->store, zclock_time (), retention, report, err);
    if (rc == KEEL_OK) {
        if (report->services_purged < n)
            report->services_purged = n;
        keel_broker_event (self, "maintenance", "purged=%llu bytes_before=%llu bytes_after=%llu",
                           (unsigned long long) report->services_purged,
                           (unsigned long long) report->bytes_before,
                           (unsigned long long) report->bytes_after);
        keel_store_commit (self->store, NULL);
    }
    return rc;
}

void
keel_broker_admin (keel_broker_t *self, zmsg_t *msg)
{
    if (zmsg_size (msg) != 2) {
        keel_broker_malformed (self, "admin: expected 2 frames, got %zu", zmsg_size (msg));
        return;
    }
    zframe_t *route = zmsg_first (msg);
    zframe_t *payload = zmsg_next (msg);
    keel_error_t err;
    keel_env_t *req = keel_wire_decode (zframe_data (payload), zframe_size (payload), &err);
    if (!req) {
        keel_broker_malformed (self, "admin: %s", err.text);
        return;
    }
    if (req->body_case != KEEL__ENVELOPE__BODY_ADMIN_REQUEST) {
        keel_broker_malformed (self, "admin: %s is not an admin request", keel_wire_body_name (req));
        keel_wire_free (&req);
        return;
    }
    keel_admin_view_t view = {
        .name = self->name, .role = "standalone", .epoch = self->epoch,
        .started_mono = self->started_mono, .model = self->model, .store = self->store,
        .settings = self->settings, .counters = &self->counters, .pending_claims = self->npending,
        .broker = self, .cancel = s_admin_cancel, .config_set = s_admin_config_set,
        .drain = s_admin_drain, .maintenance = s_admin_maintenance
    };
    keel_admin_reply_t reply = { 0 };
    keel_admin_handle (&view, req->admin_request->command, req->admin_request->args,
                       req->admin_request->n_args, &reply);
    Keel__Envelope env;
    Keel__AdminReply ar = KEEL__ADMIN_REPLY__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    ar.has_ok = true;
    ar.ok = reply.ok;
    ar.error = reply.error;
    ar.json = reply.json;
    ar.text = reply.text;
    env.body_case = KEEL__ENVELOPE__BODY_ADMIN_REPLY;
    env.admin_reply = &ar;
    if (keel_wire_send_to (self->admin, route, &env) != KEEL_OK)
        self->counters.send_failures++;
    keel_admin_reply_clear (&reply);
    keel_wire_free (&req);
}
