/*  core_life.c — the lifecycles of services, tasks and engines: one
    function each that changes the state, after checking the move against
    the table written in core_int.h. Nothing else in the core writes these
    states (recovery restores them from the store's rows, which is not a
    move). A move the table does not allow is a bug: it is logged and not
    made.
*/

#include "core_int.h"

#include <string.h>

static const char *s_service_names[] = { "open", "closed", "cancelled", "detached" };
static const char *s_task_names[] = { "queued", "running",   "done",
                                      "failed", "cancelled", "delivered_elsewhere" };

// ---------------------------------------------------------------- services

// s_service_moves[from][to]: the moves core_int.h lists.
static const bool s_service_moves[4][4] = {
    //                 OPEN   CLOSED CANCEL DETACH
    [KEEL_SERVICE_OPEN] = { false, true, true, true },
    [KEEL_SERVICE_CLOSED] = { false, false, true, false },
    [KEEL_SERVICE_CANCELLED] = { false, false, false, false },
    [KEEL_SERVICE_DETACHED] = { true, false, true, false },
};

bool
keel_core_service_to (keel_core_t *self, keel_service_rec_t *svc, keel_service_state_t to)
{
    keel_service_state_t from = svc->state;
    if (from > KEEL_SERVICE_DETACHED || to > KEEL_SERVICE_DETACHED || !s_service_moves[from][to]) {
        KEEL_CORE_LOG (self, KEEL_CORE_RL_TASKS, KEEL_LOG_ERROR,
                       "service %s: no move from %s to %s (a bug; the service stays %s)", svc->id,
                       from <= KEEL_SERVICE_DETACHED ? s_service_names[from] : "?",
                       to <= KEEL_SERVICE_DETACHED ? s_service_names[to] : "?",
                       from <= KEEL_SERVICE_DETACHED ? s_service_names[from] : "?");
        return false;
    }
    svc->state = to;
    switch (to) {
        case KEEL_SERVICE_OPEN:
            svc->closed_wall_ms = 0; // back from DETACHED
            break;
        case KEEL_SERVICE_CLOSED:
        case KEEL_SERVICE_CANCELLED:
        case KEEL_SERVICE_DETACHED:
            svc->closed_wall_ms = self->wall; // retention counts from here
            break;
    }
    if (to == KEEL_SERVICE_CANCELLED || to == KEEL_SERVICE_DETACHED)
        keel_sched_remove (self->sched, svc); // nothing of it is dispatched again
    keel_core_change (self,
                      (keel_change_t) { .kind = KEEL_CHANGE_SERVICE_STATE,
                                        .service = { .service_id = svc->id,
                                                     .state = to,
                                                     .closed_wall_ms = svc->closed_wall_ms } });
    return true;
}

// ---------------------------------------------------------------- tasks

// s_task_moves[from][to]: the moves core_int.h lists. RUNNING → RUNNING is
// a second execution of a running task (a claim, redundant scheduling).
#define Q KEEL_TASK_STATE_QUEUED
#define R KEEL_TASK_STATE_RUNNING
#define D KEEL_TASK_STATE_DONE
#define F KEEL_TASK_STATE_FAILED
#define C KEEL_TASK_STATE_CANCELLED
#define E KEEL_TASK_STATE_ELSEWHERE
static const bool s_task_moves[KEEL_TASK_NSTATES][KEEL_TASK_NSTATES] = {
    [Q] = { [R] = true, [D] = true, [F] = true, [C] = true, [E] = true },
    [R] = { [Q] = true, [R] = true, [D] = true, [F] = true, [C] = true, [E] = true },
};
#undef Q
#undef R
#undef D
#undef F
#undef C
#undef E

bool
keel_core_task_to (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id,
                   keel_task_state_t to)
{
    keel_task_t *t = keel_service_task (svc, task_id);
    if (!t)
        return false;
    keel_task_state_t from = (keel_task_state_t) t->state;
    if (from >= KEEL_TASK_NSTATES || to >= KEEL_TASK_NSTATES || !s_task_moves[from][to]) {
        KEEL_CORE_LOG (self, KEEL_CORE_RL_TASKS, KEEL_LOG_ERROR,
                       "task %s/%llu: no move from %s to %s (a bug; the task stays %s)", svc->id,
                       (unsigned long long) task_id,
                       from < KEEL_TASK_NSTATES ? s_task_names[from] : "?",
                       to < KEEL_TASK_NSTATES ? s_task_names[to] : "?",
                       from < KEEL_TASK_NSTATES ? s_task_names[from] : "?");
        return false;
    }
    keel_service_task_set_state (svc, t, to);
    if (to >= KEEL_TASK_STATE_DONE)
        svc->last_result_wall_ms = self->wall; // retention of an abandoned service
    return true;
}

// ---------------------------------------------------------------- engines

void
keel_core_engine_to (keel_core_t *self, keel_engine_t *engine, keel_engine_state_t to,
                     zframe_t *route)
{
    switch (to) {
        case KEEL_ENGINE_ONLINE:
            // A login, from OFFLINE or ONLINE (a new connection or a new
            // process replaces the old one).
            keel_model_engine_route (self->model, engine, route);
            engine->state = KEEL_ENGINE_ONLINE;
            engine->login_wall_ms = self->wall;
            keel_peer_clock_init (&engine->clock, self->heartbeat_ms, 3, self->now);
            break;
        case KEEL_ENGINE_OFFLINE:
            if (engine->state == KEEL_ENGINE_OFFLINE)
                return;
            engine->state = KEEL_ENGINE_OFFLINE;
            engine->offline_since_mono = self->now;
            engine->seen_wall_ms = self->wall;
            keel_model_engine_route (self->model, engine, NULL);
            break;
    }
    keel_core_engine_store (self, engine);
}

void
keel_core_engine_store (keel_core_t *self, const keel_engine_t *engine)
{
    bool online = engine->state == KEEL_ENGINE_ONLINE;
    keel_store_engine_t row = {
        engine->id,    engine->host,          engine->session,
        engine->slots, engine->login_wall_ms, online ? engine->login_wall_ms : engine->seen_wall_ms,
        online
    };
    keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_ENGINE_PUT, .engine = row });
}

// ---------------------------------------------------------------- executions

void
keel_core_exec_await (keel_core_t *self, keel_exec_t *x, int64_t until)
{
    x->state = KEEL_EXEC_AWAITING_CLAIM;
    x->requeue_at = until;
    keel_core_note_requeue_at (self, until);
}

void
keel_core_exec_claimed (keel_core_t *self, keel_exec_t *x, keel_engine_t *engine)
{
    (void) self;
    keel_model_exec_move (x, engine);
    x->state = KEEL_EXEC_RUNNING;
    x->requeue_at = 0;
}
