/*  test_core.c — the broker's core (broker/core.h) driven directly: no
    sockets, no store, invented times. The test plays the loop: it hands the
    core messages and ticks, "commits" by clearing the journal, and reads
    the messages the core sends. Each test checks one lifecycle or one
    ordering rule of core_int.h.
*/
#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "ranges.h"
#include "core_int.h"

static keel_settings_t *settings;
static keel_core_t *core;
static zframe_t *drv_route;
static zframe_t *eng_route;
static int64_t now = 1000000;        // invented monotonic ms
static int64_t wall = 1700000000000; // invented wall ms

// What the core sent, decoded, in order.
typedef struct {
    bool to_engine;
    int body;     // KEEL__ENVELOPE__BODY_*
    uint64_t seq; // commit it waits for
} s_sent_t;

static s_sent_t s_sent[256];
static size_t s_nsent;

static void
setup (void)
{
    keel_error_t err;
    settings = keel_settings_new (keel_broker_settings, &err);
    cr_assert_not_null (settings);
    cr_assert_eq (keel_settings_set (settings, "EngineLoginWindow", "0", "test", &err), KEEL_OK);
    cr_assert_eq (keel_settings_set (settings, "LogLevel", "error", "test", &err), KEEL_OK);
    core = keel_core_new (settings, now, wall);
    cr_assert_not_null (core);
    keel_core_recover_begin (core, 0, 0);
    keel_core_recover_end (core);
    keel_changes_clear (keel_core_changes (core));
    keel_core_recover_done (core);
    drv_route = zframe_new ("\0drv1", 5);
    eng_route = zframe_new ("\0eng1", 5);
    s_nsent = 0;
}

static void
teardown (void)
{
    zframe_destroy (&drv_route);
    zframe_destroy (&eng_route);
    keel_core_destroy (&core);
    cr_assert_null (core);
    keel_settings_destroy (&settings);
}

TestSuite (core, .init = setup, .fini = teardown);

// Moves the clocks on.
static void
s_tick (int64_t ms)
{
    now += ms;
    wall += ms;
    keel_core_clock (core, now, wall);
}

// Takes what the core sent into s_sent.
static void
s_take (void)
{
    keel_core_out_t *out;
    while ((out = keel_core_out_next (core))) {
        keel_error_t err;
        keel_env_t *env =
            keel_wire_decode (zframe_data (out->payload), zframe_size (out->payload), &err);
        cr_assert_not_null (env, "the core sent bytes that do not decode: %s", err.text);
        cr_assert_lt (s_nsent, 256);
        s_sent[s_nsent++] =
            (s_sent_t) { zframe_eq (out->route, eng_route), env->body_case, out->seq };
        keel_wire_free (&env);
        keel_core_out_destroy (&out);
    }
}

// Index of the first message of this body sent so far, or -1.
static int
s_find (int body)
{
    for (size_t i = 0; i < s_nsent; i++)
        if (s_sent[i].body == body)
            return (int) i;
    return -1;
}

// The loop's commit: the journal "applied", then the outcome. Returns the
// commit's number. synced: the store says it is durable at once.
static uint64_t
s_commit (bool synced)
{
    bool wrote = false;
    cr_assert_eq (keel_core_prepare_commit (core, &wrote), KEEL_OK);
    keel_changes_clear (keel_core_changes (core));
    uint64_t seq = keel_core_committed (core, wrote);
    if (synced)
        keel_core_synced (core, seq);
    return seq;
}

// Counts the journal's records of a kind (before the commit clears it).
static size_t
s_changes (keel_change_kind_t kind)
{
    keel_changes_t *j = keel_core_changes (core);
    size_t n = 0;
    for (size_t i = 0; i < keel_changes_size (j); i++)
        n += keel_changes_at (j, i)->kind == kind;
    return n;
}

// ---------------------------------------------------------------- messages

// A DriverHello from driver_id naming service_id as open (NULL: none) and
// attaching the n services of attach.
static void
s_driver_hello (const char *driver_id, const char *service_id, Keel__AttachService **attach,
                size_t n)
{
    Keel__Envelope env;
    Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
    char *services[] = { (char *) service_id };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    hello.driver_id = (char *) driver_id;
    hello.n_services = service_id ? 1 : 0;
    hello.services = services;
    hello.n_attach = n;
    hello.attach = attach;
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
    env.driver_hello = &hello;
    keel_core_message (core, drv_route, &env);
}

// Driver d1's hello, naming service_id as open (NULL: none).
static void
s_hello_with (const char *service_id)
{
    s_driver_hello ("d1", service_id, NULL, 0);
}

static void
s_hello (void)
{
    s_hello_with (NULL);
}

static void
s_submit_service (const char *service_id)
{
    Keel__Envelope env;
    Keel__SubmitService msg = KEEL__SUBMIT_SERVICE__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    msg.service_id = (char *) service_id;
    msg.type = "t";
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_SERVICE;
    env.submit_service = &msg;
    keel_core_message (core, drv_route, &env);
}

// Tasks ids[0..n) (0..n-1 when ids is NULL), each with input "x".
static void
s_submit_task_ids (const char *service_id, const uint64_t *ids, uint64_t n)
{
    Keel__Envelope env;
    Keel__SubmitTasks msg = KEEL__SUBMIT_TASKS__INIT;
    Keel__TaskInput in[8];
    Keel__TaskInput *ins[8];
    cr_assert_leq (n, 8);
    for (uint64_t i = 0; i < n; i++) {
        keel__task_input__init (&in[i]);
        in[i].has_task_id = true;
        in[i].task_id = ids ? ids[i] : i;
        in[i].has_input = true;
        in[i].input.data = (uint8_t *) "x";
        in[i].input.len = 1;
        ins[i] = &in[i];
    }
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    msg.service_id = (char *) service_id;
    msg.n_tasks = n;
    msg.tasks = ins;
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_TASKS;
    env.submit_tasks = &msg;
    keel_core_message (core, drv_route, &env);
}

static void
s_submit_tasks (const char *service_id, uint64_t n)
{
    s_submit_task_ids (service_id, NULL, n);
}

static void
s_driver_says (int body, const char *service_id)
{
    Keel__Envelope env;
    Keel__CloseService close = KEEL__CLOSE_SERVICE__INIT;
    Keel__CancelService cancel = KEEL__CANCEL_SERVICE__INIT;
    Keel__Detach detach = KEEL__DETACH__INIT;
    char *ids[] = { (char *) service_id };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    env.body_case = body;
    close.service_id = cancel.service_id = (char *) service_id;
    detach.n_service_ids = 1;
    detach.service_ids = ids;
    env.close_service = &close; // the union: one of these is read
    if (body == KEEL__ENVELOPE__BODY_CANCEL_SERVICE)
        env.cancel_service = &cancel;
    if (body == KEEL__ENVELOPE__BODY_DETACH)
        env.detach = &detach;
    keel_core_message (core, drv_route, &env);
}

static void
s_login (Keel__HeldTask **held, size_t nheld)
{
    Keel__Envelope env;
    Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
    static char *types[] = { "t" };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    login.engine_id = "e1";
    login.session = "s1";
    login.host = "host";
    login.has_slots = true;
    login.slots = 2;
    login.n_service_types = 1;
    login.service_types = types;
    login.n_held = nheld;
    login.held = held;
    env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
    env.engine_login = &login;
    keel_core_message (core, eng_route, &env);
}

static keel_service_rec_t *
s_service (const char *id)
{
    keel_service_rec_t *svc = keel_model_service (keel_core_model (core), id);
    cr_assert_not_null (svc, "no service %s", id);
    return svc;
}

// ---------------------------------------------------------------- services

Test (core, a_service_moves_open_closed_cancelled_and_nothing_leaves_cancelled)
{
    s_hello ();
    s_submit_service ("s1");
    keel_service_rec_t *svc = s_service ("s1");
    cr_assert_eq (svc->state, KEEL_SERVICE_OPEN);
    cr_assert_eq (s_changes (KEEL_CHANGE_SERVICE_PUT), 1, "a new service is one SERVICE_PUT");
    s_commit (true);

    s_tick (500);
    s_driver_says (KEEL__ENVELOPE__BODY_CLOSE_SERVICE, "s1");
    cr_assert_eq (svc->state, KEEL_SERVICE_CLOSED);
    cr_assert_eq (svc->closed_wall_ms, wall, "retention counts from the close");
    cr_assert_eq (s_changes (KEEL_CHANGE_SERVICE_STATE), 1);

    s_driver_says (KEEL__ENVELOPE__BODY_CANCEL_SERVICE, "s1");
    cr_assert_eq (svc->state, KEEL_SERVICE_CANCELLED);
    s_commit (true);

    // CANCELLED is final: no message and no direct move takes it back.
    s_driver_says (KEEL__ENVELOPE__BODY_DETACH, "s1");
    s_driver_says (KEEL__ENVELOPE__BODY_CLOSE_SERVICE, "s1");
    cr_assert_eq (svc->state, KEEL_SERVICE_CANCELLED);
    cr_assert_not (keel_core_service_to (core, svc, KEEL_SERVICE_OPEN));
    cr_assert_not (keel_core_service_to (core, svc, KEEL_SERVICE_DETACHED));
    cr_assert_eq (svc->state, KEEL_SERVICE_CANCELLED);
    cr_assert_eq (s_changes (KEEL_CHANGE_SERVICE_STATE), 0, "a refused move writes nothing");
}

Test (core, a_detached_service_comes_back_open_with_its_queued_tasks)
{
    s_hello ();
    s_submit_service ("s1");
    s_submit_tasks ("s1", 3);
    s_commit (true);
    keel_service_rec_t *svc = s_service ("s1");
    cr_assert_eq (svc->nready, 3);

    s_tick (100);
    s_driver_says (KEEL__ENVELOPE__BODY_DETACH, "s1");
    cr_assert_eq (svc->state, KEEL_SERVICE_DETACHED);
    cr_assert_eq (svc->closed_wall_ms, wall);
    cr_assert_eq (svc->nready, 0, "a detached service's tasks leave the queue");
    cr_assert_null (svc->sched_handle, "and the service leaves the scheduler");

    s_submit_service ("s1"); // the driver came back
    cr_assert_eq (svc->state, KEEL_SERVICE_OPEN);
    cr_assert_eq (svc->closed_wall_ms, 0);
    cr_assert_eq (svc->nready, 3, "its queued tasks are queued again");
}

// ---------------------------------------------------------------- tasks

Test (core, task_moves_follow_the_table)
{
    s_hello ();
    s_submit_service ("s1");
    s_submit_tasks ("s1", 1);
    keel_service_rec_t *svc = s_service ("s1");
    keel_task_t *t = keel_service_task (svc, 0);
    cr_assert_eq (t->state, KEEL_TASK_STATE_QUEUED);
    cr_assert_eq (s_changes (KEEL_CHANGE_TASK_PUT), 0, "task rows are added at the commit");
    bool wrote = false;
    cr_assert_eq (keel_core_prepare_commit (core, &wrote), KEEL_OK);
    cr_assert (wrote);
    cr_assert_eq (s_changes (KEEL_CHANGE_TASK_PUT), 1, "one TASK_PUT per new task");
    keel_changes_clear (keel_core_changes (core));
    keel_core_synced (core, keel_core_committed (core, wrote));

    cr_assert (keel_core_task_to (core, svc, 0, KEEL_TASK_STATE_RUNNING));
    cr_assert (keel_core_task_to (core, svc, 0, KEEL_TASK_STATE_QUEUED));
    cr_assert (keel_core_task_to (core, svc, 0, KEEL_TASK_STATE_DONE));
    cr_assert_eq (svc->count[KEEL_TASK_STATE_DONE], 1);
    // Final states stay final.
    for (int to = 0; to < KEEL_TASK_NSTATES; to++)
        cr_assert_not (keel_core_task_to (core, svc, 0, (keel_task_state_t) to), "DONE moved to %d",
                       to);
    cr_assert_eq (t->state, KEEL_TASK_STATE_DONE);
    cr_assert_eq (svc->count[KEEL_TASK_STATE_DONE], 1, "per-state counts unchanged");
    cr_assert_eq (svc->count[KEEL_TASK_STATE_QUEUED], 0);
}

// ---------------------------------------------------------------- engines

Test (core, an_engine_goes_offline_after_three_silent_heartbeats)
{
    s_login (NULL, 0);
    keel_engine_t *e = keel_model_engine (keel_core_model (core), "e1");
    cr_assert_not_null (e);
    cr_assert_eq (e->state, KEEL_ENGINE_ONLINE);
    cr_assert_eq (s_changes (KEEL_CHANGE_ENGINE_PUT), 1, "a login is one ENGINE_PUT");
    s_commit (true);
    int64_t hb = keel_broker_cfg_HeartbeatInterval (settings);

    s_tick (2 * hb);
    keel_core_timers (core);
    cr_assert_eq (e->state, KEEL_ENGINE_ONLINE, "two silent intervals are not a loss");
    s_tick (hb + 1);
    keel_core_timers (core);
    cr_assert_eq (e->state, KEEL_ENGINE_OFFLINE, "three are");
    cr_assert_eq (e->offline_since_mono, now);
    cr_assert_eq (s_changes (KEEL_CHANGE_ENGINE_PUT), 1);
    const keel_change_t *c = NULL;
    keel_changes_t *j = keel_core_changes (core);
    for (size_t i = 0; i < keel_changes_size (j); i++)
        if (keel_changes_at (j, i)->kind == KEEL_CHANGE_ENGINE_PUT)
            c = keel_changes_at (j, i);
    cr_assert_eq (c->engine.seen_wall_ms, wall, "the row says when it was last seen");
}

// ---------------------------------------------------------------- ordering rules

// A login whose verdicts DROP an engine's copy of a task makes the
// LoginReply wait for the commit that makes the drop safe; no Assign may
// overtake that reply (the engine would run work before it learns what to
// forget). core_sched.c: "Nothing may overtake a LoginReply still held".
Test (core, no_assign_overtakes_a_login_reply_held_for_its_commit)
{
    s_hello ();
    s_submit_service ("work");
    s_submit_tasks ("work", 3);
    s_submit_service ("gone");
    s_submit_tasks ("gone", 1);
    s_commit (true);
    s_driver_says (KEEL__ENVELOPE__BODY_CANCEL_SERVICE, "gone");
    s_commit (true);
    s_take ();
    s_nsent = 0;

    // e1 comes back still running gone/0: DROP, and the turn must sync.
    Keel__HeldTask held = KEEL__HELD_TASK__INIT;
    Keel__HeldTask *helds[] = { &held };
    held.service_id = "gone";
    held.has_task_id = true;
    held.task_id = 0;
    held.has_execution_id = true;
    held.execution_id = 77;
    held.has_state = true;
    held.state = KEEL__HELD_STATE__HELD_RUNNING;
    s_login (helds, 1);
    cr_assert (keel_core_sync_now (core));

    keel_core_dispatch (core);
    s_take ();
    int reply = s_find (KEEL__ENVELOPE__BODY_LOGIN_REPLY);
    cr_assert_geq (reply, 0, "no LoginReply");
    uint64_t wait_for = s_sent[reply].seq;
    cr_assert_gt (wait_for, keel_core_synced_seq (core), "the reply must wait for a commit");
    cr_assert_lt (s_find (KEEL__ENVELOPE__BODY_ASSIGN), 0, "an Assign overtook the LoginReply");
    cr_assert_lt (s_find (KEEL__ENVELOPE__BODY_ASSIGN_BATCH), 0,
                  "an AssignBatch overtook the LoginReply");

    // Committed but not yet durable: still nothing.
    uint64_t seq = s_commit (false);
    cr_assert_eq (seq, wait_for, "the commit is the one the reply waits for");
    keel_core_dispatch (core);
    s_take ();
    cr_assert_lt (s_find (KEEL__ENVELOPE__BODY_ASSIGN), 0);
    cr_assert_lt (s_find (KEEL__ENVELOPE__BODY_ASSIGN_BATCH), 0);

    // Durable: the work goes out, after the reply.
    keel_core_synced (core, seq);
    keel_core_dispatch (core);
    s_take ();
    int assign = s_find (KEEL__ENVELOPE__BODY_ASSIGN_BATCH);
    if (assign < 0)
        assign = s_find (KEEL__ENVELOPE__BODY_ASSIGN);
    cr_assert_gt (assign, reply, "the work should go out once the reply can");
    cr_assert_eq (s_sent[assign].seq, 0, "an Assign needs no durability of its own");
}

// Out of execution ids, dispatch waits for the next reservation to be
// durable, and says so: the loop sleeps (wait > 0) until keel_core_synced
// confirms it, instead of turning with a zero timeout. (Seen: a pair's
// active spun ~25,000 empty turns per 200,000 tasks while its mirror
// confirmed the reservation.)
Test (core, out_of_execution_ids_the_loop_sleeps_until_the_reservation_is_durable)
{
    s_hello ();
    s_submit_service ("work");
    s_submit_tasks ("work", 2);
    s_commit (true);
    s_login (NULL, 0);
    s_commit (true);
    s_take ();
    s_nsent = 0;
    // Every id of the reservation made at start is used.
    core->exec_seq = core->exec_seq_durable;

    keel_core_dispatch (core);
    s_take ();
    cr_assert_lt (s_find (KEEL__ENVELOPE__BODY_ASSIGN), 0, "no id: nothing may be assigned");
    cr_assert_lt (s_find (KEEL__ENVELOPE__BODY_ASSIGN_BATCH), 0);
    cr_assert_eq (s_changes (KEEL_CHANGE_META_SET), 1, "the next block is reserved");
    cr_assert (keel_core_commit_due (core), "the reservation forces a commit");
    uint64_t seq = s_commit (false); // committed, not yet durable (syncer, pair mirror)

    for (int turn = 0; turn < 3; turn++) { // the loop dispatches every turn
        keel_core_dispatch (core);
        cr_assert_gt (keel_core_wait_ms (core), 0,
                      "turn %d: waiting for the reservation, the loop must sleep", turn);
    }
    s_take ();
    cr_assert_lt (s_find (KEEL__ENVELOPE__BODY_ASSIGN), 0);
    cr_assert_lt (s_find (KEEL__ENVELOPE__BODY_ASSIGN_BATCH), 0);

    keel_core_synced (core, seq);
    cr_assert_eq (keel_core_wait_ms (core), 0, "a durable reservation asks for a dispatch");
    keel_core_dispatch (core);
    s_take ();
    cr_assert (s_find (KEEL__ENVELOPE__BODY_ASSIGN) >= 0
                   || s_find (KEEL__ENVELOPE__BODY_ASSIGN_BATCH) >= 0,
               "the tasks go out once the ids are durable");
}

// A driver's hello is answered with the tasks this broker stores of each
// service it lists (DriverWelcome.held), so it does not send them again;
// only once everything committed is durable, and never a task of the turn
// not committed yet.
static Keel__DriverWelcome *
s_welcome (keel_env_t **env_p)
{
    keel_core_out_t *out;
    *env_p = NULL;
    while ((out = keel_core_out_next (core))) {
        keel_error_t err;
        keel_env_t *env =
            keel_wire_decode (zframe_data (out->payload), zframe_size (out->payload), &err);
        keel_core_out_destroy (&out);
        cr_assert_not_null (env, "%s", err.text);
        if (env->body_case == KEEL__ENVELOPE__BODY_DRIVER_WELCOME && !*env_p)
            *env_p = env;
        else
            keel_wire_free (&env);
    }
    cr_assert_not_null (*env_p, "no DriverWelcome");
    return (*env_p)->driver_welcome;
}

Test (core, a_welcome_lists_the_stored_tasks_of_each_known_service)
{
    s_hello ();
    s_submit_service ("work");
    s_submit_tasks ("work", 5);
    uint64_t seq = s_commit (false);
    s_take ();

    // Committed, not yet durable: nothing is listed.
    keel_env_t *env;
    s_hello_with ("work");
    Keel__DriverWelcome *w = s_welcome (&env);
    cr_assert_eq (w->n_held, 0, "tasks listed before their commit is durable");
    keel_wire_free (&env);

    keel_core_synced (core, seq);
    s_hello_with ("work");
    w = s_welcome (&env);
    cr_assert_eq (w->n_held, 1);
    cr_assert_str_eq (w->held[0]->service_id, "work");
    cr_assert_eq (w->held[0]->n_ranges, 2);
    cr_assert_eq (w->held[0]->ranges[0], 0, "from task 0");
    cr_assert_eq (w->held[0]->ranges[1], 5, "5 tasks");
    cr_assert_not (w->held_alone);
    keel_wire_free (&env);

    // A hello naming the service twice gets it once (the driver refuses a
    // welcome listing a service twice).
    Keel__Envelope twice;
    Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
    char *services[] = { "work", "work" };
    keel_env_init (&twice, KEEL__SENDER_KIND__SENDER_DRIVER);
    hello.driver_id = "d1";
    hello.n_services = 2;
    hello.services = services;
    twice.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
    twice.driver_hello = &hello;
    keel_core_message (core, drv_route, &twice);
    w = s_welcome (&env);
    cr_assert_eq (w->n_held, 1, "a service listed twice was answered %zu times", w->n_held);
    keel_wire_free (&env);
}

// A Cancel to an engine whose LoginReply waits for its commit waits for the
// same commit (an engine still logging in drops it; seen after a pair's
// takeover: the driver's hello settled tasks the engine had just claimed).
Test (core, no_cancel_overtakes_a_login_reply_held_for_its_commit)
{
    s_hello ();
    s_submit_service ("work");
    s_submit_tasks ("work", 3);
    s_submit_service ("gone");
    s_submit_tasks ("gone", 1);
    s_commit (true);
    s_driver_says (KEEL__ENVELOPE__BODY_CANCEL_SERVICE, "gone");
    s_commit (true);
    s_take ();
    s_nsent = 0;

    // e1 comes back running gone/0 (DROP: the turn must sync) and work/0 (KEEP).
    Keel__HeldTask dropped = KEEL__HELD_TASK__INIT, kept = KEEL__HELD_TASK__INIT;
    Keel__HeldTask *helds[] = { &dropped, &kept };
    dropped.service_id = "gone";
    dropped.has_task_id = true;
    dropped.task_id = 0;
    dropped.has_execution_id = true;
    dropped.execution_id = 77;
    dropped.has_state = true;
    dropped.state = KEEL__HELD_STATE__HELD_RUNNING;
    kept = dropped;
    kept.service_id = "work";
    kept.execution_id = 78;
    s_login (helds, 2);
    cr_assert (keel_core_sync_now (core));
    // The driver cancels "work" in the same turn: its execution on e1 is cancelled.
    s_driver_says (KEEL__ENVELOPE__BODY_CANCEL_SERVICE, "work");
    s_take ();
    int reply = s_find (KEEL__ENVELOPE__BODY_LOGIN_REPLY);
    int cancel = s_find (KEEL__ENVELOPE__BODY_CANCEL);
    cr_assert_geq (reply, 0, "no LoginReply");
    cr_assert_gt (cancel, reply, "no Cancel after the LoginReply");
    cr_assert_gt (s_sent[reply].seq, keel_core_synced_seq (core), "the reply must wait");
    cr_assert_geq (s_sent[cancel].seq, s_sent[reply].seq,
                   "the Cancel would overtake the held LoginReply");
}

// Acceptances promise durability: each carries the commit that must be
// durable before it leaves, and a failed commit refuses instead.
Test (core, accepted_waits_for_its_commit_and_a_failed_commit_refuses)
{
    s_hello ();
    s_submit_service ("s1");
    s_submit_tasks ("s1", 2);
    cr_assert (keel_core_commit_due (core), "a driver waits: the commit is due now");
    uint64_t seq = s_commit (false);
    s_take ();
    int acc = s_find (KEEL__ENVELOPE__BODY_ACCEPTED);
    cr_assert_geq (acc, 0);
    cr_assert_eq (s_sent[acc].seq, seq, "Accepted leaves once its commit is durable");

    s_submit_tasks ("s1", 4); // tasks 0-3: 2 and 3 are new
    bool wrote = false;
    cr_assert_eq (keel_core_prepare_commit (core, &wrote), KEEL_OK);
    keel_changes_clear (keel_core_changes (core));
    keel_core_commit_failed (core, "disk full");
    s_nsent = 0;
    s_take ();
    int refused = s_find (KEEL__ENVELOPE__BODY_REFUSED);
    cr_assert_geq (refused, 0, "a failed commit refuses the turn's submissions");
    cr_assert_lt (s_find (KEEL__ENVELOPE__BODY_ACCEPTED), 0);
    keel_service_rec_t *svc = s_service ("s1");
    cr_assert_null (keel_service_task (svc, 2), "the turn's new tasks are undone");
    cr_assert_not_null (keel_service_task (svc, 1), "committed tasks stay");
}

// A service purged while the turn still holds references to it (a result
// to send) is forgotten by the turn first (keel_core_forget_service), so
// nothing reads freed memory afterwards.
Test (core, a_purged_service_leaves_no_reference_in_the_turn)
{
    s_hello ();
    s_submit_service ("s1");
    s_submit_tasks ("s1", 1);
    s_commit (true);
    keel_service_rec_t *svc = s_service ("s1");
    keel_task_result_t *r =
        keel_task_result_new (KEEL__TASK_STATUS__STATUS_OK, NULL, 0, NULL, NULL);
    keel_core_task_finished (core, svc, 0, r, KEEL_TASK_STATE_DONE);
    cr_assert_gt (core->nresults, 0, "the result waits to be sent");
    keel_task_t *t = keel_service_task (svc, 0);
    t->acked = 1; // as a ResultAck in the same turn does
    svc->unacked = 0;
    cr_assert (keel_core_service_to (core, svc, KEEL_SERVICE_CLOSED));
    s_tick (1);
    cr_assert_eq (keel_core_purge_now (core, 0), 1, "the service should be purged");
    cr_assert_null (keel_model_service (keel_core_model (core), "s1"));
    cr_assert_eq (core->nresults, 0, "the turn still points at the purged service");
    cr_assert_eq (core->ndirty, 0, "the turn still points at the purged service");
    keel_core_send_results (core); // reads nothing freed (ASan would say)
    cr_assert_eq (s_changes (KEEL_CHANGE_SERVICE_DELETE), 1);
}

// A cancelled service goes once its retention has passed even with results
// nobody acknowledged (its driver was killed before it could); a closed
// one waits for its acknowledgements.
Test (core, a_cancelled_service_is_purged_with_unacknowledged_results)
{
    s_hello ();
    const char *ids[] = { "gone", "kept" };
    for (int i = 0; i < 2; i++) {
        s_submit_service (ids[i]);
        s_submit_tasks (ids[i], 1);
    }
    s_commit (true);
    for (int i = 0; i < 2; i++) {
        keel_service_rec_t *svc = s_service (ids[i]);
        keel_task_result_t *r =
            keel_task_result_new (KEEL__TASK_STATUS__STATUS_OK, NULL, 0, NULL, NULL);
        keel_core_task_finished (core, svc, 0, r, KEEL_TASK_STATE_DONE);
        cr_assert_eq (svc->unacked, 1, "%s: the result is not waiting for its ack", ids[i]);
        cr_assert (keel_core_service_to (core, svc,
                                         i == 0 ? KEEL_SERVICE_CANCELLED : KEEL_SERVICE_CLOSED));
    }
    s_tick (1);
    cr_assert_eq (keel_core_purge_now (core, 0), 1);
    cr_assert_null (keel_model_service (keel_core_model (core), "gone"),
                    "the cancelled service was kept for its unacknowledged result");
    cr_assert_not_null (keel_model_service (keel_core_model (core), "kept"),
                        "a closed service went before its results were acknowledged");
}

// A service no connected driver has (submit --detach, a driver killed)
// is purged RetentionHours after its last result, acknowledged or not,
// open or closed; not while a task of it runs, and not while its driver
// is attached.
Test (core, an_abandoned_service_is_purged_after_its_last_result_acknowledged_or_not)
{
    s_hello ();
    const char *ids[] = { "open", "closed", "busy" };
    for (int i = 0; i < 3; i++) {
        s_submit_service (ids[i]);
        s_submit_tasks (ids[i], 2);
    }
    s_commit (true);
    for (int i = 0; i < 3; i++) {
        keel_service_rec_t *svc = s_service (ids[i]);
        for (uint64_t t = 0; t < (i == 2 ? 1u : 2u); t++) {
            keel_task_result_t *r =
                keel_task_result_new (KEEL__TASK_STATUS__STATUS_OK, NULL, 0, NULL, NULL);
            keel_core_task_finished (core, svc, t, r, KEEL_TASK_STATE_DONE);
        }
    }
    cr_assert (keel_core_service_to (core, s_service ("closed"), KEEL_SERVICE_CLOSED));
    s_tick (1);
    cr_assert_eq (keel_core_purge_now (core, 0), 0, "purged while its driver is attached");
    keel_model_driver (keel_core_model (core), "d1")->connected = false; // gone
    cr_assert_eq (keel_core_purge_now (core, 3600 * 1000), 0, "purged before its retention");
    cr_assert_eq (keel_core_purge_now (core, 0), 2);
    cr_assert_null (keel_model_service (keel_core_model (core), "open"));
    cr_assert_null (keel_model_service (keel_core_model (core), "closed"));
    cr_assert_not_null (keel_model_service (keel_core_model (core), "busy"),
                        "purged with a task still queued");
}

// A DriverHello from driver_id attaching the n services of attach.
static void
s_hello_attach (const char *driver_id, Keel__AttachService **attach, size_t n)
{
    s_driver_hello (driver_id, NULL, attach, n);
}

// DriverHello.attach: the service moves to the attaching driver, is closed
// to new tasks, and its unacknowledged results are sent; with `all` the
// acknowledged ones too. An unknown id is answered known = false.
Test (core, an_attach_takes_the_service_over_closes_it_and_resends_its_results)
{
    s_hello ();
    s_submit_service ("s1");
    s_submit_tasks ("s1", 3);
    s_commit (true);
    keel_service_rec_t *svc = s_service ("s1");
    for (uint64_t t = 0; t < 2; t++) {
        keel_task_result_t *r =
            keel_task_result_new (KEEL__TASK_STATUS__STATUS_OK, NULL, 0, NULL, NULL);
        keel_core_task_finished (core, svc, t, r, KEEL_TASK_STATE_DONE);
    }
    keel_service_task (svc, 0)->acked = 1; // collected by the first driver
    svc->unacked--;
    keel_core_send_results (core);
    for (int all = 0; all < 2; all++) {
        Keel__AttachService a[2];
        keel_item_attach (&a[0], "s1", all);
        keel_item_attach (&a[1], "nope", false);
        Keel__AttachService *ptrs[] = { &a[0], &a[1] };
        s_hello_attach ("d2", ptrs, 2);
        cr_assert_str_eq (svc->driver_id, "d2", "the service is not bound to the attacher");
        cr_assert_eq (svc->state, KEEL_SERVICE_CLOSED, "an attached service takes no more tasks");
        cr_assert_eq (core->nresults, all ? 2u : 1u, "results queued for the attacher (all=%d)",
                      all);
        keel_core_send_results (core);
    }
}

// ranges (DeliveredTasks.ranges' coding) are the [lo, hi) pairs of want.
static void
s_assert_ranges (const uint64_t *ranges, size_t n, const uint64_t *want, size_t nwant,
                 const char *what)
{
    keel_ranges_reader_t reader;
    keel_ranges_reader_init (&reader, ranges, n);
    uint64_t lo, hi;
    size_t i = 0;
    while (keel_ranges_reader_next (&reader, &lo, &hi)) {
        cr_assert_lt (i, nwant, "%s: more ranges than %zu", what, nwant / 2);
        cr_assert (lo == want[i] && hi == want[i + 1],
                   "%s range %zu: [%" PRIu64 ", %" PRIu64 "), not [%" PRIu64 ", %" PRIu64 ")", what,
                   i / 2, lo, hi, want[i], want[i + 1]);
        i += 2;
    }
    cr_assert_eq (i, nwant, "%s: %zu ranges, not %zu", what, i / 2, nwant / 2);
}

// Sparse task ids (a service's ids need not be dense): the ranges a hello
// and an attach are answered with see every gap, and the walks skip pages
// with no task (fuzz_store_load: one stored task of id 537,133,310 made
// recovery and the admin views walk every id below it, seconds per walk).
Test (core, the_ranges_of_a_service_with_sparse_ids_see_every_gap)
{
    s_hello ();
    s_submit_service ("s1");
    const uint64_t ids[] = { 2, 3, 5 * KEEL_TASK_PAGE + 7, 3000000 };
    s_submit_task_ids ("s1", ids, 4);
    s_commit (true);
    s_take ();
    keel_service_rec_t *svc = s_service ("s1");
    cr_assert_eq (svc->ntasks, 3000001);
    cr_assert_eq (keel_service_task_next (svc, 0), 2);
    cr_assert_eq (keel_service_task_next (svc, 4), 5 * KEEL_TASK_PAGE + 7);
    cr_assert_eq (keel_service_task_next (svc, 5 * KEEL_TASK_PAGE + 8), 3000000);
    cr_assert_eq (keel_service_task_next (svc, 3000001), svc->ntasks);

    keel_env_t *env;
    s_hello_with ("s1");
    Keel__DriverWelcome *w = s_welcome (&env);
    cr_assert_eq (w->n_held, 1);
    const uint64_t held[] = {
        2, 4, 5 * KEEL_TASK_PAGE + 7, 5 * KEEL_TASK_PAGE + 8, 3000000, 3000001
    };
    s_assert_ranges (w->held[0]->ranges, w->held[0]->n_ranges, held, 6, "held");
    keel_wire_free (&env);

    // Task 3's result is acknowledged: an attach skips it and every id
    // with no task.
    keel_task_result_t *r =
        keel_task_result_new (KEEL__TASK_STATUS__STATUS_OK, NULL, 0, NULL, NULL);
    keel_core_task_finished (core, svc, 3, r, KEEL_TASK_STATE_DONE);
    keel_service_task (svc, 3)->acked = 1;
    svc->unacked--;
    keel_core_send_results (core);
    s_take ();
    Keel__AttachService a;
    keel_item_attach (&a, "s1", false);
    Keel__AttachService *ptrs[] = { &a };
    s_hello_attach ("d2", ptrs, 1);
    w = s_welcome (&env);
    cr_assert_eq (w->n_attached, 1);
    Keel__ServiceInfo *info = w->attached[0];
    cr_assert_eq (info->next_task, 3000001);
    const uint64_t skip[] = { 0, 2, 3, 5 * KEEL_TASK_PAGE + 7, 5 * KEEL_TASK_PAGE + 8, 3000000 };
    s_assert_ranges (info->skip, info->n_skip, skip, 6, "skip");
    keel_wire_free (&env);
}

// An execution whose engine goes silent waits for a claim until the
// engine's tasks are due elsewhere; a claim at login takes it back.
Test (core, a_lost_engines_execution_awaits_a_claim_then_runs_again_or_is_requeued)
{
    cr_assert_eq (keel_settings_set (settings, "RescheduleDelay", "5s", "test", NULL), KEEL_OK);
    keel_core_settings_changed (core, "RescheduleDelay", "5s", "");
    s_hello ();
    s_submit_service ("s1");
    s_submit_tasks ("s1", 1);
    s_commit (true);
    s_login (NULL, 0);
    keel_core_dispatch (core);
    keel_service_rec_t *svc = s_service ("s1");
    keel_task_t *t = keel_service_task (svc, 0);
    cr_assert_not_null (t->execs, "the task was not dispatched");
    keel_exec_t *x = t->execs;
    uint64_t exec_id = x->id;
    cr_assert_eq (x->state, KEEL_EXEC_RUNNING);

    int64_t hb = keel_broker_cfg_HeartbeatInterval (settings);
    s_tick (3 * hb + 1);
    keel_core_timers (core);
    cr_assert_eq (x->state, KEEL_EXEC_AWAITING_CLAIM, "the engine is lost: its execution waits");
    cr_assert_eq (x->requeue_at, now + 5000);
    cr_assert_eq (t->state, KEEL_TASK_STATE_RUNNING, "and its task is not queued yet");

    // The engine comes back with it: RUNNING again, nothing requeued.
    Keel__HeldTask held = KEEL__HELD_TASK__INIT;
    Keel__HeldTask *helds[] = { &held };
    held.service_id = "s1";
    held.has_task_id = true;
    held.task_id = 0;
    held.has_execution_id = true;
    held.execution_id = exec_id;
    held.has_state = true;
    held.state = KEEL__HELD_STATE__HELD_RUNNING;
    s_tick (1000);
    s_login (helds, 1);
    cr_assert_eq (x->state, KEEL_EXEC_RUNNING);
    cr_assert_eq (x->requeue_at, 0);

    // Lost again, and this time nobody claims it before the deadline.
    s_tick (3 * hb + 1);
    keel_core_timers (core);
    cr_assert_eq (x->state, KEEL_EXEC_AWAITING_CLAIM);
    s_tick (5000);
    keel_core_timers (core);
    cr_assert_null (keel_model_exec (keel_core_model (core), exec_id), "the execution ended");
    cr_assert_eq (t->state, KEEL_TASK_STATE_QUEUED, "and its task is queued again");
    cr_assert_eq (keel_core_counters (core)->tasks_rescheduled, 1);
}

// ---------------------------------------------------------------- prefetch

// The engine's executions, as the broker sees them.
static size_t
s_engine_execs (uint64_t *ids, size_t max)
{
    keel_engine_t *e = keel_model_engine (keel_core_model (core), "e1");
    cr_assert_not_null (e);
    size_t n = 0;
    uint64_t backlog = 0;
    for (keel_exec_t *x = zlistx_first (e->execs); x; x = zlistx_next (e->execs)) {
        if (n < max)
            ids[n] = x->id;
        n++;
        backlog += x->cost_us;
    }
    cr_assert_eq (e->backlog_us, backlog, "the engine's backlog is not the sum of its executions");
    return n;
}

// The engine reports each of these executions ended OK after run_us.
static void
s_results (const uint64_t *ids, size_t n, uint64_t run_us)
{
    for (size_t i = 0; i < n; i++) {
        keel_exec_t *x = keel_model_exec (keel_core_model (core), ids[i]);
        cr_assert_not_null (x);
        Keel__Envelope env;
        Keel__Result res = KEEL__RESULT__INIT;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
        res.service_id = x->service->id;
        res.has_task_id = res.has_execution_id = res.has_status = res.has_run_us = true;
        res.task_id = x->task_id;
        res.execution_id = ids[i];
        res.status = KEEL__TASK_STATUS__STATUS_OK;
        res.run_us = run_us;
        env.body_case = KEEL__ENVELOPE__BODY_RESULT;
        env.result = &res;
        keel_core_message (core, eng_route, &env);
    }
}

// The driver acknowledges the results of these tasks of service_id.
static void
s_driver_acks (const char *service_id, const uint64_t *task_ids, size_t n)
{
    Keel__Envelope env;
    Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    ack.service_id = (char *) service_id;
    ack.n_task_ids = n;
    ack.task_ids = (uint64_t *) task_ids;
    env.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
    env.result_ack = &ack;
    keel_core_message (core, drv_route, &env);
}

// Service s1 of the driver with ntasks queued and stored, engine e1 (2
// slots) logged in, and one dispatch turn made.
static void
s_dispatched (uint64_t ntasks)
{
    s_hello ();
    s_submit_service ("s1");
    s_submit_tasks ("s1", ntasks);
    s_commit (true);
    s_login (NULL, 0);
    s_commit (true);
    keel_core_dispatch (core);
}

// Records of a kind in the journal, and how many of the task rows among
// them say the driver has the result.
static size_t
s_rows (keel_change_kind_t kind, size_t *acked)
{
    keel_changes_t *j = keel_core_changes (core);
    size_t n = 0;
    *acked = 0;
    for (size_t i = 0; i < keel_changes_size (j); i++) {
        const keel_change_t *c = keel_changes_at (j, i);
        if (c->kind == kind) {
            n++;
            *acked += c->task.result_acked;
        }
    }
    return n;
}

// One commit made by hand: prepare, then the journal's rows of each kind
// are counted before it is cleared, committed and made durable.
typedef struct {
    size_t puts, results, rows_acked, acked_updates;
    uint64_t seq;
} s_commit_rows_t;

static s_commit_rows_t
s_commit_counting (void)
{
    s_commit_rows_t c = { 0 };
    bool wrote = false;
    size_t acked_puts, acked_results, unused;
    cr_assert_eq (keel_core_prepare_commit (core, &wrote), KEEL_OK);
    c.puts = s_rows (KEEL_CHANGE_TASK_PUT, &acked_puts);
    c.results = s_rows (KEEL_CHANGE_TASK_RESULT, &acked_results);
    c.rows_acked = acked_puts + acked_results;
    c.acked_updates = s_rows (KEEL_CHANGE_TASK_ACKED, &unused);
    keel_changes_clear (keel_core_changes (core));
    c.seq = keel_core_committed (core, wrote);
    keel_core_synced (core, c.seq);
    return c;
}

// An engine's result that comes between commits waits one commit for its
// driver's acknowledgement, so that both go to the store as one row (not a
// row and then an UPDATE of it), and the engine is told its result is
// stored only once the row is: after the second commit, not the first.
// Without the driver's acknowledgement the row is written at the second
// commit all the same.
Test (core, a_result_waits_one_commit_for_its_drivers_ack_and_the_engines_ack_waits_with_it)
{
    s_dispatched (2);
    uint64_t ids[2];
    cr_assert_eq (s_engine_execs (ids, 2), 2);
    keel_exec_t *x0 = keel_model_exec (keel_core_model (core), ids[0]);
    cr_assert_not_null (x0);
    uint64_t task0 = x0->task_id;
    s_results (ids, 2, 15);
    keel_core_send_results (core);
    s_take ();
    s_nsent = 0;

    s_commit_rows_t first = s_commit_counting ();
    cr_expect_eq (first.puts + first.results, 0, "the results' rows wait for the next commit");
    s_take ();
    cr_expect_lt (s_find (KEEL__ENVELOPE__BODY_RESULT_ACK), 0,
                  "the engine is not told its results are stored before they are");

    s_driver_acks ("s1", &task0, 1); // task 1's acknowledgement does not come
    s_commit_rows_t second = s_commit_counting ();
    cr_expect_eq (second.puts + second.results, 2, "both rows are written at the next commit");
    cr_expect_eq (second.rows_acked, 1, "task 0's row carries its driver's acknowledgement");
    cr_expect_eq (second.acked_updates, 0, "no UPDATE of a row just written");
    s_take ();
    int ack = s_find (KEEL__ENVELOPE__BODY_RESULT_ACK);
    cr_assert_geq (ack, 0, "the engine is told once the rows are stored");
    cr_expect (s_sent[ack].to_engine);
    cr_expect_eq (s_sent[ack].seq, second.seq, "with the commit that wrote the rows");

    s_commit_rows_t third = s_commit_counting ();
    cr_expect_eq (third.puts + third.results + third.acked_updates, 0, "nothing left to write");
}

// A commit that comes only because CommitDelay ran out (nobody waits for
// an earlier one) writes a result's row at once: a row waits a commit only
// when the commit comes early, so it never waits more than CommitDelay.
Test (core, a_result_is_written_at_once_by_a_commit_that_came_after_commit_delay)
{
    s_dispatched (1);
    uint64_t ids[1];
    cr_assert_eq (s_engine_execs (ids, 1), 1);
    s_results (ids, 1, 15);
    s_take ();
    s_nsent = 0;
    cr_assert_not (keel_core_commit_due (core), "nobody waits: the commit waits CommitDelay");
    s_tick (keel_broker_cfg_CommitDelay (settings) + 1);
    cr_assert (keel_core_commit_due (core));
    s_commit_rows_t c = s_commit_counting ();
    cr_expect_eq (c.puts + c.results, 1, "the row is written by this commit");
    s_take ();
    int ack = s_find (KEEL__ENVELOPE__BODY_RESULT_ACK);
    cr_assert_geq (ack, 0, "the engine is told with this commit");
    cr_expect_eq (s_sent[ack].seq, c.seq);
}

// Tasks of a service whose run time is not known go to free slots only;
// once results say they are tiny, the engine gets the rest at once.
Test (core, tiny_tasks_are_prefetched_once_their_run_time_is_known)
{
    s_dispatched (8);
    uint64_t ids[8];
    cr_assert_eq (s_engine_execs (ids, 8), 2, "no run time known yet: one task per free slot");
    s_results (ids, 2, 15);
    keel_service_rec_t *svc = s_service ("s1");
    cr_assert_eq (keel_service_cost (svc), 15);
    s_commit (true);
    keel_core_dispatch (core);
    cr_assert_eq (s_engine_execs (ids, 8), 6, "15 µs tasks: the 6 left all fit the window");
}

// Tasks longer than PrefetchWindow are never queued at an engine: each
// waits at the broker for a free slot. PrefetchWindow=0 is the old fixed
// prefetch: EnginePrefetch tasks, whatever they weigh.
Test (core, long_tasks_wait_for_a_free_slot)
{
    s_dispatched (8);
    uint64_t ids[8];
    cr_assert_eq (s_engine_execs (ids, 8), 2);
    s_results (ids, 2, 500000); // half a second each
    s_commit (true);
    keel_core_dispatch (core);
    cr_assert_eq (s_engine_execs (ids, 8), 2, "0.5 s tasks: the free slots only");
    s_results (ids, 1, 1000); // one ends early: the mean moves 1/8 of the way
    cr_assert_eq (keel_service_cost (s_service ("s1")), 500000 - (500000 - 1000) / 8);
    s_commit (true);
    keel_core_dispatch (core);
    cr_assert_eq (s_engine_execs (ids, 8), 2, "still far beyond the window");

    cr_assert_eq (keel_settings_set (settings, "EnginePrefetch", "3", "test", NULL), KEEL_OK);
    cr_assert_eq (keel_settings_set (settings, "PrefetchWindow", "0", "test", NULL), KEEL_OK);
    keel_core_apply_settings (core);
    keel_core_dispatch (core);
    cr_assert_eq (s_engine_execs (ids, 8), 5, "PrefetchWindow=0: 2 slots + EnginePrefetch 3");
}

// ---------------------------------------------------------------- the login window

// EngineLogin.moved_from of the next logins (NULL: absent).
static const char *s_moved_from;

// A login of engine_id on route with slots, holding these tasks of s1
// (running, execution ids given).
static void
s_login_holding (zframe_t *route, const char *engine_id, uint32_t slots, const uint64_t *tasks,
                 const uint64_t *execs, size_t n)
{
    Keel__HeldTask held[8];
    Keel__HeldTask *helds[8];
    cr_assert_leq (n, 8);
    for (size_t i = 0; i < n; i++) {
        keel__held_task__init (&held[i]);
        held[i].service_id = "s1";
        held[i].has_task_id = held[i].has_execution_id = held[i].has_state = true;
        held[i].task_id = tasks[i];
        held[i].execution_id = execs[i];
        held[i].state = KEEL__HELD_STATE__HELD_RUNNING;
        helds[i] = &held[i];
    }
    Keel__Envelope env;
    Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
    static char *types[] = { "t" };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    login.engine_id = (char *) engine_id;
    login.session = "s1";
    login.host = "host";
    login.has_slots = true;
    login.slots = slots;
    login.n_service_types = 1;
    login.service_types = types;
    login.n_held = n;
    login.held = helds;
    login.moved_from = (char *) s_moved_from;
    env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
    env.engine_login = &login;
    keel_core_message (core, route, &env);
}

// A turn that must be durable at once (a login that drops a held copy of
// a finished task: its LoginReply lets the engine forget it) writes a
// result's row at once: the row's wait for its driver's acknowledgement
// (s_carry) never delays such a turn.
Test (core, a_result_is_written_at_once_in_a_turn_that_must_be_durable)
{
    s_dispatched (2);
    uint64_t ids[2];
    cr_assert_eq (s_engine_execs (ids, 2), 2);
    uint64_t task = keel_model_exec (keel_core_model (core), ids[0])->task_id;
    s_results (ids, 1, 15); // young: would wait a commit for the driver's ack
    zframe_t *route2 = zframe_new ("\0eng2", 5);
    s_login_holding (route2, "e2", 1, &task, (uint64_t[]) { 777 }, 1); // a copy: DROP
    cr_assert (keel_core_commit_due (core), "the drop's LoginReply waits for this commit");
    s_commit_rows_t c = s_commit_counting ();
    cr_expect_eq (c.puts + c.results, 1, "the result's row is written by this commit");
    zframe_destroy (&route2);
}

static void
s_engine_says (zframe_t *route, int body, uint64_t running)
{
    Keel__Envelope env;
    Keel__Logoff logoff = KEEL__LOGOFF__INIT;
    Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    env.body_case = body;
    logoff.reason = "stopping";
    hb.n_running = 1;
    hb.running = &running;
    if (body == KEEL__ENVELOPE__BODY_LOGOFF)
        env.logoff = &logoff;
    else
        env.heartbeat = &hb;
    keel_core_message (core, route, &env);
}

// One loop turn after the messages: timers, dispatch, commit. Returns the
// Assigns it sent (plain or in batches, any engine).
static size_t
s_turn (void)
{
    keel_core_timers (core);
    keel_core_dispatch (core);
    s_commit (true);
    s_nsent = 0;
    s_take ();
    size_t n = 0;
    for (size_t i = 0; i < s_nsent; i++)
        n += s_sent[i].body == KEEL__ENVELOPE__BODY_ASSIGN
             || s_sent[i].body == KEEL__ENVELOPE__BODY_ASSIGN_BATCH;
    return n;
}

// True when the turn's journal has an event of this kind.
static bool
s_event (const char *kind)
{
    keel_changes_t *j = keel_core_changes (core);
    for (size_t i = 0; i < keel_changes_size (j); i++) {
        const keel_change_t *c = keel_changes_at (j, i);
        if (c->kind == KEEL_CHANGE_EVENT && strcmp (c->event.kind, kind) == 0)
            return true;
    }
    return false;
}

// The engine the task's only execution runs on, or NULL (none, or it
// awaits a claim).
static const char *
s_runs_on (uint64_t task_id)
{
    keel_task_t *t = keel_service_task (s_service ("s1"), task_id);
    cr_assert_not_null (t);
    if (!t->execs)
        return NULL;
    cr_assert_null (t->execs->next_of_task, "task %llu runs twice", (unsigned long long) task_id);
    if (t->execs->state != KEEL_EXEC_RUNNING || !t->execs->engine)
        return NULL;
    return t->execs->engine->id;
}

// Engines heartbeat (listing what they run) while the clock moves on to
// `until`, one heartbeat interval at a time.
static void
s_idle_until (int64_t until, zframe_t *route2)
{
    int64_t hb = keel_broker_cfg_HeartbeatInterval (settings);
    while (now < until) {
        s_tick (until - now < hb ? until - now : hb);
        const char *ids[] = { "e1", "e2" };
        zframe_t *routes[] = { eng_route, route2 };
        for (int i = 0; i < 2; i++) {
            keel_engine_t *e = keel_model_engine (keel_core_model (core), ids[i]);
            if (!e || e->state != KEEL_ENGINE_ONLINE || !routes[i])
                continue;
            uint64_t running[16];
            size_t n = 0;
            for (keel_exec_t *x = zlistx_first (e->execs); x && n < 16; x = zlistx_next (e->execs))
                running[n++] = x->id;
            Keel__Envelope env;
            Keel__Heartbeat beat = KEEL__HEARTBEAT__INIT;
            keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
            beat.n_running = n;
            beat.running = running;
            env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
            env.heartbeat = &beat;
            keel_core_message (core, routes[i], &env);
        }
        if (now < until)
            cr_assert_eq (s_turn (), 0, "something was dispatched before %lld ms",
                          (long long) until);
    }
}

// A fresh core with EngineLoginWindow=5s, recovered from these rows: service
// s1 with tasks 0-3 that the store shows queued (a dispatch writes nothing:
// 0 runs on e1, 1 on e2), task 4 running on e1 (execution row 900) and task
// 5 on e3 (row 901). e1 and e2 were online when the broker stopped, e3 was
// offline already. Returns the time it started.
static int64_t
s_restart (bool with_rows)
{
    keel_core_destroy (&core);
    keel_error_t err;
    cr_assert_eq (keel_settings_set (settings, "EngineLoginWindow", "5s", "test", &err), KEEL_OK);
    core = keel_core_new (settings, now, wall);
    cr_assert_not_null (core);
    keel_core_recover_begin (core, 1, 1000);
    const keel_store_loader_t *ld = keel_core_loader ();
    if (with_rows) {
        keel_store_service_t svc = { .service_id = "s1",
                                     .type = "t",
                                     .driver_id = "d1",
                                     .reschedule_delay_ms = -1,
                                     .state = KEEL_SERVICE_OPEN };
        cr_assert_eq (ld->service (&svc, core), 0);
        for (uint64_t i = 0; i < 6; i++) {
            keel_store_task_t row = { .service_id = "s1",
                                      .task_id = i,
                                      .state =
                                          i < 4 ? KEEL_TASK_STATE_QUEUED : KEEL_TASK_STATE_RUNNING,
                                      .input = (const uint8_t *) "x",
                                      .input_len = 1 };
            cr_assert_eq (ld->task (&row, core), 0);
        }
        keel_store_execution_t x4 = { 900, "s1", 4, "e1", 1, wall - 1000 };
        keel_store_execution_t x5 = { 901, "s1", 5, "e3", 1, wall - 1000 };
        cr_assert_eq (ld->execution (&x4, core), 0);
        cr_assert_eq (ld->execution (&x5, core), 0);
        keel_store_engine_t e1 = { "e1", "host", "s1", 4, wall - 9000, wall - 9000, true };
        keel_store_engine_t e2 = { "e2", "host", "s1", 4, wall - 9000, wall - 9000, true };
        keel_store_engine_t e3 = { "e3", "host", "s1", 4, wall - 9000, wall - 3000, false };
        cr_assert_eq (ld->engine (&e1, core), 0);
        cr_assert_eq (ld->engine (&e2, core), 0);
        cr_assert_eq (ld->engine (&e3, core), 0);
    }
    keel_core_recover_end (core);
    keel_changes_clear (keel_core_changes (core));
    keel_core_recover_done (core);
    return now;
}

Test (core, a_restart_releases_queued_tasks_once_every_engine_online_before_is_back)
{
    int64_t start = s_restart (true);
    zframe_t *route2 = zframe_new ("\0eng2", 5);
    cr_assert_eq (s_turn (), 0);

    s_tick (200);
    s_login_holding (eng_route, "e1", 4, (uint64_t[]) { 0, 4 }, (uint64_t[]) { 50, 900 }, 2);
    cr_assert_eq (s_turn (), 0, "e1 has free slots, but e2 may still claim the queued tasks");
    for (uint64_t id = 1; id < 4; id++)
        cr_assert_null (s_runs_on (id), "task %llu left before e2 was back",
                        (unsigned long long) id);

    s_tick (200);
    s_login_holding (route2, "e2", 4, (uint64_t[]) { 1 }, (uint64_t[]) { 51 }, 1);
    cr_assert (s_event ("login-window-over"), "no event says the window ended early");
    cr_assert_gt (s_turn (), 0, "both engines are back: the queued tasks go out at once");
    cr_assert_lt (now - start, 5000);
    cr_assert_str_eq (s_runs_on (0), "e1", "the claims stand, nothing runs twice");
    cr_assert_str_eq (s_runs_on (1), "e2");
    cr_assert_str_eq (s_runs_on (4), "e1");
    cr_assert_not_null (s_runs_on (2));
    cr_assert_not_null (s_runs_on (3));

    // e3 was offline at the stop: its execution keeps the whole window.
    keel_exec_t *x5 = keel_model_exec (keel_core_model (core), 901);
    cr_assert_not_null (x5);
    cr_assert_eq (x5->state, KEEL_EXEC_AWAITING_CLAIM);
    cr_assert_eq (x5->requeue_at, start + 5000);
    s_idle_until (start + 5000, route2);
    cr_assert_gt (s_turn (), 0, "task 5 is queued and dispatched once the window is over");
    cr_assert_null (keel_model_exec (keel_core_model (core), 901));
    cr_assert_not_null (s_runs_on (5));
    zframe_destroy (&route2);
}

Test (core, a_restart_waits_the_whole_window_for_an_engine_that_does_not_come_back)
{
    int64_t start = s_restart (true);
    s_tick (200);
    s_login_holding (eng_route, "e1", 8, (uint64_t[]) { 0, 4 }, (uint64_t[]) { 50, 900 }, 2);
    cr_assert_eq (s_turn (), 0);
    s_idle_until (start + 4999, NULL);
    cr_assert_eq (s_turn (), 0, "e2 is not back: nothing is released before the window ends");
    for (uint64_t id = 1; id < 4; id++)
        cr_assert_null (s_runs_on (id));

    s_idle_until (start + 5000, NULL);
    keel_core_timers (core);
    bool e2_offline = false;
    keel_changes_t *j = keel_core_changes (core);
    for (size_t i = 0; i < keel_changes_size (j); i++) {
        const keel_change_t *c = keel_changes_at (j, i);
        if (c->kind == KEEL_CHANGE_ENGINE_PUT && strcmp (c->engine.engine_id, "e2") == 0)
            e2_offline = !c->engine.online;
    }
    cr_assert (e2_offline, "e2 missed the window: the store should say it is offline now");
    cr_assert_not (s_event ("login-window-over"));
    cr_assert_gt (s_turn (), 0, "the window is over: the queued tasks go out");
    for (uint64_t id = 1; id < 4; id++)
        cr_assert_str_eq (s_runs_on (id), "e1");
}

// An engine moving home from a failover broker says so (moved_from): a
// driver failed over there, and that broker may run tasks of this store
// on engines this one never knew. The window then runs its length.
Test (core, a_restart_keeps_the_whole_window_once_an_engine_moves_in_from_a_failover_broker)
{
    int64_t start = s_restart (true);
    zframe_t *route2 = zframe_new ("\0eng2", 5);
    s_moved_from = "broker-b";
    s_login_holding (eng_route, "e1", 4, (uint64_t[]) { 0, 4 }, (uint64_t[]) { 50, 900 }, 2);
    s_moved_from = NULL;
    cr_assert (s_event ("login-window-whole"));
    cr_assert_eq (s_turn (), 0);
    s_tick (200);
    s_login_holding (route2, "e2", 4, (uint64_t[]) { 1 }, (uint64_t[]) { 51 }, 1);
    cr_assert_not (s_event ("login-window-over"));
    cr_assert_eq (s_turn (), 0, "every engine is back, but a failover broker ran our work");
    s_idle_until (start + 5000, route2);
    cr_assert_gt (s_turn (), 0, "the window is over: the queued tasks go out");
    zframe_destroy (&route2);
}

// After a pause the window waits for the engines that were online: one
// lost after it came back keeps its work until the window ends, or until
// every engine online before the pause has logged in again.
static void
s_pause_scenario (bool second_comes_back)
{
    s_restart (false);
    zframe_t *route2 = zframe_new ("\0eng2", 5);
    s_login_holding (eng_route, "e1", 1, NULL, NULL, 0);
    s_login_holding (route2, "e2", 2, NULL, NULL, 0);
    s_hello ();
    s_submit_service ("s1");
    s_submit_tasks ("s1", 2);
    s_commit (true);
    cr_assert_eq (s_turn (), 2);
    cr_assert_str_eq (s_runs_on (0), "e1");
    cr_assert_str_eq (s_runs_on (1), "e2");
    uint64_t x0 = keel_service_task (s_service ("s1"), 0)->execs->id;
    uint64_t x1 = keel_service_task (s_service ("s1"), 1)->execs->id;

    s_tick (10000);
    keel_core_turn_begin (core);
    int64_t resumed = now;
    cr_assert (s_event ("broker-paused"));
    s_login_holding (eng_route, "e1", 1, (uint64_t[]) { 0 }, (uint64_t[]) { x0 }, 1);
    s_engine_says (eng_route, KEEL__ENVELOPE__BODY_LOGOFF, 0);
    cr_assert_eq (s_turn (), 0, "e1's task waits: e2 may be in its login backoff");
    cr_assert_null (s_runs_on (0));

    s_tick (300);
    if (second_comes_back) {
        s_login_holding (route2, "e2", 2, (uint64_t[]) { 1 }, (uint64_t[]) { x1 }, 1);
        cr_assert (s_event ("login-window-over"));
        cr_assert_eq (s_turn (), 1, "every engine is back: e1's task goes to e2 at once");
        cr_assert_str_eq (s_runs_on (0), "e2");
    }
    else {
        for (int i = 0; i < 4; i++) {
            s_engine_says (route2, KEEL__ENVELOPE__BODY_HEARTBEAT, x1);
            cr_assert_eq (s_turn (), 0, "e2 never logged in again: e1's task waits");
            s_tick (1000);
        }
        s_engine_says (route2, KEEL__ENVELOPE__BODY_HEARTBEAT, x1);
        s_tick (resumed + 4999 - now);
        cr_assert_eq (s_turn (), 0);
        cr_assert_null (s_runs_on (0));
        s_tick (1);
        cr_assert_eq (s_turn (), 1, "the window is over: e1's task goes to e2");
        cr_assert_str_eq (s_runs_on (0), "e2");
        cr_assert_not (s_event ("login-window-over"));
    }
    cr_assert_str_eq (s_runs_on (1), "e2");
    zframe_destroy (&route2);
}

Test (core, after_a_pause_the_window_ends_once_every_engine_online_before_is_back)
{
    s_pause_scenario (true);
}

Test (core, after_a_pause_the_window_runs_its_length_while_an_engine_is_not_back)
{
    s_pause_scenario (false);
}

Test (core, with_engine_login_window_zero_nothing_waits_for_engines)
{
    // setup's core: EngineLoginWindow=0, and a pause changes nothing.
    s_tick (10000);
    keel_core_turn_begin (core);
    s_login_holding (eng_route, "e1", 1, NULL, NULL, 0);
    cr_assert_not (s_event ("login-window-over"));
    keel_engine_t *e = keel_model_engine (keel_core_model (core), "e1");
    cr_assert_not (e->awaited);
}
