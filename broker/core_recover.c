/*  core_recover.c — rebuilding the core's state from the store's rows at start
    (DESIGN §5): services, tasks, executions, HOLD claims, runtime config and
    known engines. Running and queued tasks wait one EngineLoginWindow for
    their engines to claim them before they are queued again, or less: the
    window ends once every engine the store shows online is back
    (core_sched.c, "the login window").
*/

#include "core_int.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- recovery

// A row without the text that names it (a NULL where no broker writes one:
// a torn or foreign store; SQLite lets a TEXT PRIMARY KEY be NULL) cannot
// be put anywhere: it is skipped with a warning, never dereferenced.
static bool
s_unnamed (const char *table, const char *a, const char *b, const char *c)
{
    if (a && b && c)
        return false;
    KEEL_WARN ("broker", "skipping a %s row of the store with a NULL name", table);
    return true;
}

static int
s_load_service (const keel_store_service_t *row, void *arg)
{
    keel_core_t *self = arg;
    keel_core_load_t *ld = &self->load;
    if (s_unnamed ("services", row->service_id, row->type, row->driver_id))
        return 0;
    keel_service_rec_t *svc =
        keel_model_service_add (self->model, row->service_id, row->type, row->driver_id);
    if (!svc)
        return -1;
    svc->priority = row->priority;
    svc->max_attempts = row->max_attempts;
    svc->reschedule_delay_ms = row->reschedule_delay_ms;
    if (row->condition && *row->condition) {
        // Parsed when the service was opened; a store that holds one that
        // does not parse (torn, foreign) leaves the service waiting for no
        // engine rather than running its tasks anywhere.
        keel_error_t err;
        svc->cond = keel_cond_parse (row->condition, &err);
        if (!svc->cond) {
            KEEL_WARN ("broker",
                       "service %s: condition '%.100s' in the store: %s; its tasks "
                       "go to no engine",
                       row->service_id, row->condition, err.text);
            svc->cond = keel_cond_parse ("__keel_unparsable_condition == 1", NULL);
        }
    }
    if (row->init_len) {
        svc->init_data = malloc (row->init_len);
        if (!svc->init_data)
            return -1;
        memcpy (svc->init_data, row->init_data, row->init_len);
        svc->init_len = row->init_len;
    }
    // A state no broker writes (a torn or foreign store) would index past
    // every table of states: such a service is kept open, as a task in an
    // unknown state is queued, so nothing acknowledged is dropped.
    if ((unsigned) row->state > KEEL_SERVICE_DETACHED) {
        KEEL_WARN ("broker", "service %s: unknown state %d in the store, taken as open",
                   row->service_id, (int) row->state);
        svc->state = KEEL_SERVICE_OPEN;
    }
    else
        svc->state = row->state;
    svc->created_wall_ms = row->created_wall_ms;
    svc->closed_wall_ms = row->closed_wall_ms;
    // The store keeps no time of the last result: an abandoned service's
    // retention counts from the restart (later, never sooner).
    svc->last_result_wall_ms = self->wall;
    ld->services++;
    return 0;
}

static int
s_load_task (const keel_store_task_t *row, void *arg)
{
    keel_core_t *self = arg;
    keel_core_load_t *ld = &self->load;
    if (s_unnamed ("tasks", row->service_id, "", ""))
        return 0;
    keel_service_rec_t *svc = keel_model_service (self->model, row->service_id);
    if (!svc)
        return 0; // orphan row: ignore
    // Task ids index pages (model.h): no broker takes one at or past the
    // largest MaxTasksPerService, and a row that has one would make the
    // model allocate for every id below it.
    const keel_setting_def_t *def = keel_settings_def (self->settings, "MaxTasksPerService");
    if (def && (double) row->task_id >= def->max) {
        KEEL_WARN ("broker", "service %s: skipping task %llu of the store: ids stop below %.0f",
                   row->service_id, (unsigned long long) row->task_id, def->max);
        return 0;
    }
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
    keel_task_state_t state = row->state < KEEL_TASK_NSTATES ? row->state : KEEL_TASK_STATE_QUEUED;
    if (state == KEEL_TASK_STATE_DONE || state == KEEL_TASK_STATE_FAILED) {
        keel_task_result_t *r = keel_task_result_new (row->status, row->output, row->output_len,
                                                      row->error, row->engine_id);
        if (!r)
            return -1;
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
    if (state == KEEL_TASK_STATE_QUEUED
        && (svc->state == KEEL_SERVICE_OPEN || svc->state == KEEL_SERVICE_CLOSED)) {
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
    keel_core_t *self = arg;
    keel_core_load_t *ld = &self->load;
    if (s_unnamed ("executions", row->service_id, "", ""))
        return 0;
    keel_service_rec_t *svc = keel_model_service (self->model, row->service_id);
    if (!svc || !keel_service_task (svc, row->task_id))
        return 0;
    // Linked to its engine (offline until it logs in; its row is read
    // later): at its login the engine claims it, or, not listing it, no
    // longer runs it and it is queued again at once.
    keel_engine_t *engine = NULL;
    if (row->engine_id && row->engine_id[0]) {
        engine = keel_model_engine (self->model, row->engine_id);
        if (!engine)
            engine = keel_model_engine_add (self->model, row->engine_id);
    }
    keel_exec_t *x = keel_model_exec_add (self->model, row->execution_id, svc, row->task_id, engine,
                                          row->attempt, self->now);
    if (x) {
        x->stored = true;
        x->started_wall_ms = row->started_wall_ms;
        // Its engine gets one login window to claim it.
        keel_core_exec_await (self, x, self->now + self->login_window_ms);
        ld->execs++;
    }
    return 0;
}

static int
s_load_pending (const keel_store_pending_t *row, void *arg)
{
    keel_core_t *self = arg;
    keel_core_load_t *ld = &self->load;
    if (s_unnamed ("pending", row->service_id, "", ""))
        return 0;
    keel_task_result_t *r = NULL;
    if (row->has_result) {
        r = keel_task_result_new (row->status, row->output, row->output_len, row->error,
                                  row->engine_id);
        if (!r)
            return -1;
        r->execution_id = row->execution_id;
        r->run_ms = row->run_ms;
    }
    keel_core_pending_restore (self, row->service_id, row->task_id, row->execution_id,
                               row->engine_id ? row->engine_id : "", r);
    ld->pending++;
    return 0;
}

static int
s_load_config (const char *key, const char *value, void *arg)
{
    keel_core_t *self = arg;
    keel_error_t err;
    if (s_unnamed ("config", key, value, ""))
        return 0;
    if (keel_settings_set (self->settings, key, value, "store", &err) != KEEL_OK)
        KEEL_WARN ("broker", "ignoring stored setting: %s", err.text);
    return 0;
}

// Known engines come back offline; their own login brings them online.
// Those the store shows online when the broker stopped may be running
// tasks: the login window waits for them (keel_core_window_open).
static int
s_load_engine (const keel_store_engine_t *row, void *arg)
{
    keel_core_t *self = arg;
    if (s_unnamed ("engines", row->engine_id, row->host, row->session))
        return 0;
    keel_engine_t *engine = keel_model_engine (self->model, row->engine_id);
    if (!engine)
        engine = keel_model_engine_add (self->model, row->engine_id);
    if (!engine)
        return -1;
    snprintf (engine->host, sizeof engine->host, "%s", row->host);
    snprintf (engine->session, sizeof engine->session, "%s", row->session);
    engine->slots = row->slots;
    engine->login_wall_ms = row->login_wall_ms;
    engine->seen_wall_ms = row->seen_wall_ms;
    engine->offline_since_mono = self->now;
    engine->awaited = row->online;
    return 0;
}

static const keel_store_loader_t s_loader = { s_load_service, s_load_task,   s_load_exec,
                                              s_load_pending, s_load_config, s_load_engine };

const keel_store_loader_t *
keel_core_loader (void)
{
    return &s_loader;
}

void
keel_core_recover_begin (keel_core_t *self, uint64_t stored_epoch, uint64_t stored_exec_seq)
{
    self->epoch = stored_epoch + 1;
    self->exec_seq = stored_exec_seq;
    self->exec_seq_limit = stored_exec_seq; // the first dispatch reserves a new block
    memset (&self->load, 0, sizeof self->load);
}

void
keel_core_recover_end (keel_core_t *self)
{
    keel_core_load_t *ld = &self->load;
    keel_core_apply_settings (self);
    // Tasks that were running but have no execution row: give them the
    // same login window through a placeholder execution.
    for (keel_service_rec_t *svc = keel_model_service_first (self->model); svc;
         svc = keel_model_service_next (self->model)) {
        for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks;
             id = keel_service_task_next (svc, id + 1)) {
            keel_task_t *t = keel_service_task (svc, id);
            if (t && t->state == KEEL_TASK_STATE_RUNNING && !t->execs) {
                self->exec_seq++;
                keel_exec_t *x =
                    keel_model_exec_add (self->model, self->exec_prefix | self->exec_seq, svc, id,
                                         NULL, t->attempts + 1u, self->now);
                if (x)
                    keel_core_exec_await (self, x, self->now + self->login_window_ms);
            }
        }
    }
    keel_core_window_open (self);
    self->exec_seq_limit = self->exec_seq + 10000;
    self->exec_seq_committed = self->exec_seq_durable = self->exec_seq_limit;
    keel_core_event (self, "broker-started",
                     "epoch=%llu services=%llu tasks=%llu executions=%llu "
                     "pending=%llu",
                     (unsigned long long) self->epoch, (unsigned long long) ld->services,
                     (unsigned long long) ld->tasks, (unsigned long long) ld->execs,
                     (unsigned long long) ld->pending);
    keel_core_change (
        self, (keel_change_t) { .kind = KEEL_CHANGE_META_SET, .meta = { "epoch", self->epoch } });
    keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_META_SET,
                                              .meta = { "execution_seq", self->exec_seq_limit } });
}

void
keel_core_recover_done (keel_core_t *self)
{
    keel_core_load_t *ld = &self->load;
    if (ld->services || ld->pending)
        KEEL_INFO ("broker",
                   "recovered services=%llu tasks=%llu executions=%llu pending=%llu "
                   "login_window_ms=%lld",
                   (unsigned long long) ld->services, (unsigned long long) ld->tasks,
                   (unsigned long long) ld->execs, (unsigned long long) ld->pending,
                   (long long) self->login_window_ms);
    self->last_purge = self->now;
}
