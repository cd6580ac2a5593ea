/*  Broker logic driven in-process through its message handlers (no
    sockets talk to it: messages go straight to keel_core_message), for
    contract bugs found in review: a task must always end up queued,
    running somewhere real, or terminal. */

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "broker_int.h"
#include "core_int.h"
#include "config.h"
#include "no_room.h"
#include "store_writes.h"

static keel_settings_t *settings;
static keel_broker_t *broker;
static keel_core_t *core; // broker->core: what the tests drive and read
static zframe_t *drv_route;
static zframe_t *eng_route;

static void
s_settings (const char *store, const char *login_window)
{
    keel_error_t err;
    settings = keel_settings_new (keel_broker_settings, &err);
    cr_assert_not_null (settings);
    cr_assert_eq (keel_settings_set (settings, "Store", store, "test", &err), KEEL_OK, "%s",
                  err.text);
    cr_assert_eq (keel_settings_set (settings, "Endpoint", "tcp://127.0.0.1:*", "test", &err),
                  KEEL_OK);
    cr_assert_eq (keel_settings_set (settings, "AdminEndpoint", "tcp://127.0.0.1:*", "test", &err),
                  KEEL_OK);
    cr_assert_eq (keel_settings_set (settings, "EngineLoginWindow", login_window, "test", &err),
                  KEEL_OK, "%s", err.text);
    cr_assert_eq (keel_settings_set (settings, "LogLevel", "error", "test", &err), KEEL_OK);
}

static void
s_start (void)
{
    keel_error_t err = { "" };
    broker = keel_broker_new (settings, &err);
    core = broker ? broker->core : NULL;
    cr_assert_not_null (broker, "%s", err.text);
    drv_route = zframe_new ("\0drv1", 5);
    eng_route = zframe_new ("\0eng1", 5);
}

static void
setup (void)
{
    s_settings ("memory:", "0");
    s_start ();
}

static void
teardown (void)
{
    zframe_destroy (&drv_route);
    zframe_destroy (&eng_route);
    keel_broker_destroy (&broker);
    keel_settings_destroy (&settings);
}

// ---------------------------------------------------------------- messages

// A task an engine lists at login as still running.
static Keel__HeldTask
s_held_running (const char *service_id, uint64_t task_id, uint64_t exec_id)
{
    Keel__HeldTask held = KEEL__HELD_TASK__INIT;
    held.service_id = (char *) service_id;
    held.has_task_id = true;
    held.task_id = task_id;
    held.has_execution_id = true;
    held.execution_id = exec_id;
    held.has_state = true;
    held.state = KEEL__HELD_STATE__HELD_RUNNING;
    return held;
}

static uint32_t s_login_slots = 4; // slots the next s_login announces

static void
s_login (zframe_t *route, const char *engine_id, const char *session, Keel__HeldTask **held,
         size_t nheld)
{
    Keel__Envelope env;
    Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    static char *types[] = { "t" };
    login.engine_id = (char *) engine_id;
    login.session = (char *) session;
    login.host = "host";
    login.has_slots = true;
    login.slots = s_login_slots;
    login.n_service_types = 1;
    login.service_types = types;
    login.n_held = nheld;
    login.held = held;
    env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
    env.engine_login = &login;
    keel_core_message (core, route, &env);
}

static void
s_hello (void)
{
    Keel__Envelope env;
    Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    hello.driver_id = "d1";
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
    env.driver_hello = &hello;
    keel_core_message (core, drv_route, &env);
}

static void
s_submit_service (const char *service_id, uint32_t max_attempts)
{
    Keel__Envelope env;
    Keel__SubmitService msg = KEEL__SUBMIT_SERVICE__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    msg.service_id = (char *) service_id;
    msg.type = "t";
    msg.has_max_attempts = max_attempts != 0;
    msg.max_attempts = max_attempts;
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_SERVICE;
    env.submit_service = &msg;
    keel_core_message (core, drv_route, &env);
}

static void
s_submit_task (const char *service_id, uint64_t task_id)
{
    Keel__Envelope env;
    Keel__SubmitTasks msg = KEEL__SUBMIT_TASKS__INIT;
    Keel__TaskInput in = KEEL__TASK_INPUT__INIT;
    Keel__TaskInput *ins[] = { &in };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    in.has_task_id = true;
    in.task_id = task_id;
    in.has_input = true;
    in.input.data = (uint8_t *) "x";
    in.input.len = 1;
    msg.service_id = (char *) service_id;
    msg.n_tasks = 1;
    msg.tasks = ins;
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_TASKS;
    env.submit_tasks = &msg;
    keel_core_message (core, drv_route, &env);
}

static void
s_result (zframe_t *route, const char *service_id, uint64_t task_id, uint64_t exec_id,
          Keel__TaskStatus status)
{
    Keel__Envelope env;
    Keel__Result res = KEEL__RESULT__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    res.service_id = (char *) service_id;
    res.has_task_id = true;
    res.task_id = task_id;
    res.has_execution_id = true;
    res.execution_id = exec_id;
    res.has_status = true;
    res.status = status;
    if (status == KEEL__TASK_STATUS__STATUS_FAILED)
        res.error = "boom";
    env.body_case = KEEL__ENVELOPE__BODY_RESULT;
    env.result = &res;
    keel_core_message (core, route, &env);
}

static keel_task_t *
s_task (const char *service_id, uint64_t task_id)
{
    keel_service_rec_t *svc = keel_model_service (core->model, service_id);
    cr_assert_not_null (svc, "service %s unknown", service_id);
    keel_task_t *t = keel_service_task (svc, task_id);
    cr_assert_not_null (t, "task %llu unknown", (unsigned long long) task_id);
    return t;
}

// ---------------------------------------------------------------- tests

TestSuite (broker_review, .init = setup, .fini = teardown);

// An engine logs in to a broker that does not know the service yet: HOLD.
// Its process then dies and a new one (new session) logs in, running
// nothing. When the driver submits the service, the stale claim must not
// make the task "running" on an engine that does not run it: nothing would
// ever run it or requeue it while that engine stays online.
Test (broker_review, a_hold_claim_of_a_restarted_engine_does_not_strand_its_task)
{
    Keel__HeldTask held = s_held_running ("svc-a", 0, 77);
    Keel__HeldTask *helds[] = { &held };
    s_login (eng_route, "e1", "session-1", helds, 1);
    cr_assert_eq (core->npending, 1);

    zframe_t *route2 = zframe_new ("\0eng2", 5);
    s_login (route2, "e1", "session-2", NULL, 0); // restarted: runs nothing

    s_hello ();
    s_submit_service ("svc-a", 0);
    s_submit_task ("svc-a", 0);
    keel_task_t *t = s_task ("svc-a", 0);
    cr_expect_null (keel_model_exec (core->model, 77), "a stale claim became an execution");
    cr_expect_eq (t->state, KEEL_TASK_STATE_QUEUED, "task state %d: stranded", t->state);
    cr_expect (t->queued, "task not in its FIFO: nothing will dispatch it");
    zframe_destroy (&route2);
}

// Same engine process, but its next login no longer lists the held task
// (it ended without a result the engine kept): the claim is gone too.
Test (broker_review, a_hold_claim_the_engine_no_longer_lists_is_dropped)
{
    Keel__HeldTask held = s_held_running ("svc-b", 3, 78);
    Keel__HeldTask *helds[] = { &held };
    s_login (eng_route, "e1", "session-1", helds, 1);
    s_login (eng_route, "e1", "session-1", NULL, 0);

    s_hello ();
    s_submit_service ("svc-b", 0);
    s_submit_task ("svc-b", 3);
    keel_task_t *t = s_task ("svc-b", 3);
    cr_expect_null (keel_model_exec (core->model, 78));
    cr_expect_eq (t->state, KEEL_TASK_STATE_QUEUED);
    cr_expect (t->queued);
}

// A claim the engine still lists at its next login keeps working (the fix
// must not drop live HOLD claims).
Test (broker_review, a_hold_claim_still_listed_attaches)
{
    Keel__HeldTask held = s_held_running ("svc-c", 1, 79);
    Keel__HeldTask *helds[] = { &held };
    s_login (eng_route, "e1", "session-1", helds, 1);
    s_login (eng_route, "e1", "session-1", helds, 1);
    s_hello ();
    s_submit_service ("svc-c", 0);
    s_submit_task ("svc-c", 1);
    keel_task_t *t = s_task ("svc-c", 1);
    cr_expect_not_null (keel_model_exec (core->model, 79));
    cr_expect_eq (t->state, KEEL_TASK_STATE_RUNNING);
    cr_expect_not (t->queued);
}

static void
s_engine_heartbeat (zframe_t *route, uint64_t *running, size_t n)
{
    Keel__Envelope env;
    Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    hb.n_running = n;
    hb.running = running;
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    keel_core_message (core, route, &env);
}

// e1 runs execution 79 (a claim that attached), then its heartbeats stop
// listing it: its Assign or the execution itself was lost there. After two
// heartbeats that leave it out, 2*H after it started, the task is queued
// again; while they list it, or too soon after it started, nothing happens.
Test (broker_review, an_execution_the_engines_heartbeats_leave_out_is_requeued)
{
    Keel__HeldTask held = s_held_running ("svc-c", 1, 79);
    Keel__HeldTask *helds[] = { &held };
    s_login (eng_route, "e1", "session-1", helds, 1);
    s_hello ();
    s_submit_service ("svc-c", 0);
    s_submit_task ("svc-c", 1);
    keel_task_t *t = s_task ("svc-c", 1);
    cr_assert_eq (t->state, KEEL_TASK_STATE_RUNNING);

    uint64_t listed[] = { 5, 79, 1000 };
    s_engine_heartbeat (eng_route, NULL, 0); // too soon: the Assign may cross it
    s_engine_heartbeat (eng_route, NULL, 0);
    cr_assert_not_null (keel_model_exec (core->model, 79), "requeued within 2*H of its start");
    core->now += 10 * core->heartbeat_ms;
    s_engine_heartbeat (eng_route, listed, 3);
    s_engine_heartbeat (eng_route, NULL, 0); // one miss is not enough
    s_engine_heartbeat (eng_route, listed, 3);
    s_engine_heartbeat (eng_route, NULL, 0);
    cr_assert_not_null (keel_model_exec (core->model, 79), "requeued after one missed heartbeat");
    cr_assert_eq (core->counters.executions_missing, 0);

    s_engine_heartbeat (eng_route, listed, 1); // { 5 }: 79 missing again
    cr_expect_null (keel_model_exec (core->model, 79), "still running where it is not");
    cr_expect_eq (t->state, KEEL_TASK_STATE_QUEUED, "task state %d", t->state);
    cr_expect (t->queued, "task not in its FIFO: nothing will dispatch it");
    cr_expect_eq (core->counters.executions_missing, 1);
}

// A driver may ask for more attempts than the 16-bit attempt counter holds:
// the counter must not wrap, or a task that always fails retries forever
// and never reaches a terminal state.
Test (broker_review, a_huge_max_attempts_does_not_retry_forever, .timeout = 60)
{
    s_login (eng_route, "e1", "session-1", NULL, 0);
    s_hello ();
    s_submit_service ("svc-m", 70000);
    s_submit_task ("svc-m", 0);
    keel_task_t *t = NULL;
    for (int i = 0; i < 70000; i++) {
        s_result (eng_route, "svc-m", 0, 1000 + (uint64_t) i, KEEL__TASK_STATUS__STATUS_FAILED);
        t = s_task ("svc-m", 0);
        if (t->state >= KEEL_TASK_STATE_DONE)
            break;
    }
    cr_expect_eq (t->state, KEEL_TASK_STATE_FAILED,
                  "task state %d after 70000 failures (attempts %u)", t->state, t->attempts);
}

// ---------------------------------------------------------------- restart

static char s_db[256];

static void
s_store_closed_service_with_a_queued_task (void)
{
    snprintf (s_db, sizeof s_db, "/tmp/keel-review-%d.db", (int) getpid ());
    unlink (s_db);
    char uri[300];
    snprintf (uri, sizeof uri, "sqlite:%s", s_db);
    keel_error_t err = { "" };
    keel_store_t *store = keel_store_open (uri, KEEL_STORE_SYNC_NORMAL, &err);
    cr_assert_not_null (store, "%s", err.text);
    keel_store_service_t svc = { .service_id = "svc-z",
                                 .type = "t",
                                 .driver_id = "d1",
                                 .reschedule_delay_ms = -1,
                                 .state = KEEL_SERVICE_CLOSED,
                                 .created_wall_ms = 1,
                                 .closed_wall_ms = 2 };
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    keel_store_task_t task = { .service_id = "svc-z",
                               .task_id = 0,
                               .state = KEEL_TASK_STATE_QUEUED,
                               .input = (const uint8_t *) "x",
                               .input_len = 1 };
    cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    cr_assert_eq (keel_store_commit (store, &err), KEEL_OK, "%s", err.text);
    keel_store_destroy (&store);
    snprintf (uri, sizeof uri, "sqlite:%s", s_db);
    s_settings (uri, "0");
}

static void
s_restart_teardown (void)
{
    teardown ();
    char path[300];
    unlink (s_db);
    snprintf (path, sizeof path, "%s-wal", s_db);
    unlink (path);
    snprintf (path, sizeof path, "%s-shm", s_db);
    unlink (path);
}

// A closed service still runs the tasks it has (keel_core_requeue queues
// tasks of closed services; purge waits for them). After a restart its
// queued tasks must be queued again too, or they wait forever.
Test (broker_review, a_closed_services_queued_task_is_queued_after_a_restart,
      .fini = s_restart_teardown)
{
    // this suite's .init already started a broker: replace it
    teardown ();
    s_store_closed_service_with_a_queued_task ();
    s_start ();
    keel_task_t *t = s_task ("svc-z", 0);
    cr_expect_eq (t->state, KEEL_TASK_STATE_QUEUED);
    cr_expect (t->queued, "a closed service's queued task is never queued after a restart");
}

Test (broker_review, a_closed_services_queued_task_is_released_after_the_login_window,
      .fini = s_restart_teardown)
{
    teardown ();
    s_store_closed_service_with_a_queued_task ();
    keel_error_t err;
    cr_assert_eq (keel_settings_set (settings, "EngineLoginWindow", "5s", "test", &err), KEEL_OK);
    s_start ();
    cr_assert (core->recovered_release_at > 0, "no login window armed for the queued task");
    core->now = core->recovered_release_at;
    keel_core_timers (core);
    keel_task_t *t = s_task ("svc-z", 0);
    cr_expect (t->queued, "a closed service's queued task is never released after the window");
}

// A result arrives and, before the turn's group commit, its engine logs in
// again listing it as done: the verdict DROP lets the engine forget its
// copy, so the result must be committed before that LoginReply is sent
// (the turn commits before it flushes when force_commit is set).
Test (broker_review, a_drop_verdict_for_an_uncommitted_result_forces_the_commit)
{
    s_login (eng_route, "e1", "session-1", NULL, 0);
    s_hello ();
    s_submit_service ("svc-d", 0);
    s_submit_task ("svc-d", 0);
    core->force_commit = false;
    s_result (eng_route, "svc-d", 0, 500, KEEL__TASK_STATUS__STATUS_OK);
    keel_task_t *t = s_task ("svc-d", 0);
    cr_assert_eq (t->state, KEEL_TASK_STATE_DONE);
    cr_assert (t->dirty & KEEL_DIRTY_RESULT, "result should not be committed yet");

    Keel__Result res = KEEL__RESULT__INIT;
    res.service_id = "svc-d";
    res.has_task_id = true;
    res.has_execution_id = true;
    res.execution_id = 500;
    res.has_status = true;
    res.status = KEEL__TASK_STATUS__STATUS_OK;
    Keel__HeldTask held = KEEL__HELD_TASK__INIT;
    Keel__HeldTask *helds[] = { &held };
    held.service_id = "svc-d";
    held.has_task_id = true;
    held.has_execution_id = true;
    held.execution_id = 500;
    held.has_state = true;
    held.state = KEEL__HELD_STATE__HELD_DONE;
    held.result = &res;
    uint64_t dropped = core->counters.claims_dropped;
    s_login (eng_route, "e1", "session-1", helds, 1);
    cr_assert_eq (core->counters.claims_dropped, dropped + 1, "expected a DROP verdict");
    cr_expect (core->force_commit, "DROP sent for a result that is not committed yet");
}

// Dispatch runs out of execution ids (the next reservation is not committed
// or synced yet): it must stop for the turn with the task back in its
// queue, not take the same task again forever (it used to spin here).
Test (broker_review, dispatch_stops_when_execution_ids_run_out, .timeout = 60)
{
    keel_error_t err = { "" };
    cr_assert_eq (keel_settings_set (settings, "EnginePrefetch", "10000", "test", &err), KEEL_OK,
                  "%s", err.text);
    // Whatever the tasks weigh (no run time measured yet).
    cr_assert_eq (keel_settings_set (settings, "PrefetchWindow", "0", "test", &err), KEEL_OK, "%s",
                  err.text);
    keel_core_apply_settings (core);
    s_login (eng_route, "e1", "session-1", NULL, 0);
    s_hello ();
    s_submit_service ("svc-ids", 0);
    uint64_t ids = core->exec_seq_durable - core->exec_seq;
    uint64_t tasks = ids + 3;
    cr_assert_leq (tasks, 4 + 10000, "the engine cannot hold more than the ids left: %llu",
                   (unsigned long long) ids);
    for (uint64_t i = 0; i < tasks; i++)
        s_submit_task ("svc-ids", i);
    uint64_t before = core->counters.tasks_dispatched;
    keel_core_dispatch (core);
    cr_expect_eq (core->counters.tasks_dispatched - before, ids,
                  "dispatched %llu tasks with %llu execution ids",
                  (unsigned long long) (core->counters.tasks_dispatched - before),
                  (unsigned long long) ids);
    size_t queued = 0;
    for (uint64_t i = 0; i < tasks; i++)
        queued += s_task ("svc-ids", i)->state == KEEL_TASK_STATE_QUEUED;
    cr_expect_eq (queued, 3, "%zu tasks still queued, expected 3", queued);
}

// Tasks that come one at a time go to idle engines in turn, not always to
// the same one (a dispatch pass used to leave the engine order as it was).
Test (broker_review, idle_engines_take_turns_at_single_tasks)
{
    zframe_t *route2 = zframe_new ("\0eng2", 5);
    s_login (eng_route, "e1", "session-1", NULL, 0);
    s_login (route2, "e2", "session-2", NULL, 0);
    s_hello ();
    s_submit_service ("svc-t", 0);
    const char *owner[4] = { NULL };
    for (uint64_t i = 0; i < 4; i++) {
        s_submit_task ("svc-t", i);
        keel_core_dispatch (core);
        keel_exec_t *x = s_task ("svc-t", i)->execs;
        cr_assert_not_null (x, "task %llu not dispatched", (unsigned long long) i);
        owner[i] = x->engine->id;
        s_result (strcmp (owner[i], "e1") == 0 ? eng_route : route2, "svc-t", i, x->id,
                  KEEL__TASK_STATUS__STATUS_OK);
    }
    for (int i = 1; i < 4; i++)
        cr_expect_str_neq (owner[i], owner[i - 1], "tasks %d and %d both went to %s", i - 1, i,
                           owner[i]);
    zframe_destroy (&route2);
}

// A failed task is retried on another engine when one offers its service,
// whichever engine dispatch looks at first (and dispatch ends: it walks
// the engine list while the retry rule walks it too).
Test (broker_review, a_failed_task_is_retried_on_the_other_engine, .timeout = 20)
{
    zframe_t *route2 = zframe_new ("\0eng2", 5);
    // Each engine fails tasks of the service in a row here: no blacklisting
    // (BlacklistAfter, test_core_serve.c), which would leave one engine.
    cr_assert_eq (keel_settings_set (settings, "BlacklistAfter", "0", "test", NULL), KEEL_OK);
    keel_core_settings_changed (core, "BlacklistAfter", "0", "");
    s_login (eng_route, "e1", "session-1", NULL, 0);
    s_login (route2, "e2", "session-2", NULL, 0);
    s_hello ();
    s_submit_service ("svc-r2", 3);
    for (uint64_t i = 0; i < 4; i++) {
        s_submit_task ("svc-r2", i);
        keel_core_dispatch (core);
        keel_exec_t *x = s_task ("svc-r2", i)->execs;
        cr_assert_not_null (x);
        keel_engine_t *first = x->engine;
        s_result (strcmp (first->id, "e1") == 0 ? eng_route : route2, "svc-r2", i, x->id,
                  KEEL__TASK_STATUS__STATUS_FAILED);
        keel_core_dispatch (core);
        x = s_task ("svc-r2", i)->execs;
        cr_assert_not_null (x, "task %llu was not retried", (unsigned long long) i);
        cr_expect_neq (x->engine, first, "task %llu was retried on %s, where it failed",
                       (unsigned long long) i, first->id);
        s_result (strcmp (x->engine->id, "e1") == 0 ? eng_route : route2, "svc-r2", i, x->id,
                  KEEL__TASK_STATUS__STATUS_OK);
    }
    zframe_destroy (&route2);
}

// ---------------------------------------------------------------- real turns, SQLite store

// A broker on a SQLite store (StoreSync=full) on an inproc endpoint, and a
// DEALER that is engine e1: its routing id is the route the in-process
// messages use, so what the loop sends e1 can be read back. A turn is run
// with keel_broker_run after keel_broker_stop: exactly one turn, then the
// clean-stop commit, sync and flush.
static zsock_t *eng_sock;
static zframe_t *eng_sock_route;

static void
s_start_sqlite (void)
{
    teardown (); // this suite's .init started a memory: broker
    snprintf (s_db, sizeof s_db, "/tmp/keel-review-%d.db", (int) getpid ());
    unlink (s_db);
    char uri[300], endpoint[100];
    snprintf (uri, sizeof uri, "sqlite:%s", s_db);
    snprintf (endpoint, sizeof endpoint, "inproc://keel-review-%d", (int) getpid ());
    s_settings (uri, "0");
    keel_error_t err;
    cr_assert_eq (keel_settings_set (settings, "Endpoint", endpoint, "test", &err), KEEL_OK);
    cr_assert_eq (keel_settings_set (settings, "StoreSync", "full", "test", &err), KEEL_OK);
    // The loop writes: these tests are about a turn whose own commit fails
    // (refused at once). With the writer thread a failed write is tried
    // again instead (test_store_writer.c, it_test_store_full).
    cr_assert_eq (keel_settings_set (settings, "StoreWriter", "loop", "test", &err), KEEL_OK);
    s_start ();
    cr_assert_not_null (broker->syncer, "StoreSync=full on SQLite should sync off the loop");
    eng_sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (eng_sock);
    zsock_set_identity (eng_sock, "ENG1");
    zsock_set_rcvtimeo (eng_sock, 0);
    cr_assert_eq (zsock_connect (eng_sock, "%s", endpoint), 0);
    eng_sock_route = zframe_new ("ENG1", 4);
}

static void
s_sqlite_teardown (void)
{
    s_login_slots = 4;
    zsock_destroy (&eng_sock);
    zframe_destroy (&eng_sock_route);
    s_restart_teardown ();
}

static void
s_one_turn (keel_err want)
{
    keel_broker_stop (broker);
    cr_assert_eq (keel_broker_run (broker), want);
    broker->stop = false;
}

// Sends env from the DEALER and waits (deadline) until the broker can read it.
static void
s_engine_send (Keel__Envelope *env)
{
    zframe_t *frame = keel_wire_encode (env);
    cr_assert_not_null (frame);
    cr_assert_eq (zframe_send (&frame, eng_sock, 0), 0);
    int64_t deadline = zclock_mono () + 5000;
    while (!(zsock_events (broker->router) & ZMQ_POLLIN) && zclock_mono () < deadline)
        zclock_sleep (1);
    cr_assert (zsock_events (broker->router) & ZMQ_POLLIN, "the broker never saw the message");
}

// Reads what the broker sent e1 (it has sent it all: keel_broker_run has
// returned) and returns how many DROP verdicts its LoginReplies carry.
static size_t
s_engine_drops_received (void)
{
    size_t drops = 0;
    zpoller_t *poller = zpoller_new (eng_sock, NULL);
    while (zpoller_wait (poller, 200) == eng_sock) {
        zframe_t *frame = zframe_recv (eng_sock);
        if (!frame)
            break;
        keel_error_t err;
        keel_env_t *env = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
        zframe_destroy (&frame);
        cr_assert_not_null (env, "%s", err.text);
        if (env->body_case == KEEL__ENVELOPE__BODY_LOGIN_REPLY)
            for (size_t i = 0; i < env->login_reply->n_verdicts; i++)
                drops += env->login_reply->verdicts[i]->verdict == KEEL__VERDICT__VERDICT_DROP;
        keel_wire_free (&env);
    }
    zpoller_destroy (&poller);
    return drops;
}

// e1 runs task 0 of svc-r (committed and synced) and its result arrives,
// not committed yet. Returns the execution id.
static uint64_t
s_result_not_committed (void)
{
    s_login (eng_sock_route, "e1", "session-1", NULL, 0);
    s_hello ();
    s_submit_service ("svc-r", 0);
    s_submit_task ("svc-r", 0);
    s_one_turn (KEEL_OK); // commits the task, dispatches it to e1
    keel_task_t *t = s_task ("svc-r", 0);
    cr_assert (t->durable);
    cr_assert_not_null (t->execs, "task 0 was not dispatched");
    uint64_t exec_id = t->execs->id;
    s_engine_drops_received (); // the Assign
    s_result (eng_sock_route, "svc-r", 0, exec_id, KEEL__TASK_STATUS__STATUS_OK);
    cr_assert (s_task ("svc-r", 0)->dirty & KEEL_DIRTY_RESULT);
    return exec_id;
}

// e1 logs in again (same process) listing the task as done: the verdict is
// DROP, which lets e1 forget the only other copy of the result.
static void
s_engine_relogin_with_result (uint64_t exec_id)
{
    Keel__Envelope env;
    Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
    Keel__HeldTask held = KEEL__HELD_TASK__INIT;
    Keel__HeldTask *helds[] = { &held };
    Keel__Result res = KEEL__RESULT__INIT;
    static char *types[] = { "t" };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    res.service_id = "svc-r";
    res.has_task_id = true;
    res.has_execution_id = true;
    res.execution_id = exec_id;
    res.has_status = true;
    res.status = KEEL__TASK_STATUS__STATUS_OK;
    held.service_id = "svc-r";
    held.has_task_id = true;
    held.has_execution_id = true;
    held.execution_id = exec_id;
    held.has_state = true;
    held.state = KEEL__HELD_STATE__HELD_DONE;
    held.result = &res;
    login.engine_id = "e1";
    login.session = "session-1";
    login.host = "host";
    login.has_slots = true;
    login.slots = 4;
    login.n_service_types = 1;
    login.service_types = types;
    login.n_held = 1;
    login.held = helds;
    env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
    env.engine_login = &login;
    s_engine_send (&env);
}

// The commit of the DROP turn fails (here: no file may grow): the result
// the DROP is for is not in the store, so the LoginReply must not leave.
// Once a commit stores the result and is synced, it does.
Test (broker_review, a_drop_verdict_waits_when_the_commit_fails, .fini = s_sqlite_teardown)
{
    s_start_sqlite ();
    uint64_t exec_id = s_result_not_committed ();
    struct rlimit old = s_no_room ();
    uint64_t failures = core->counters.store_failures;
    s_engine_relogin_with_result (exec_id);
    s_one_turn (KEEL_OK);
    cr_assert_gt (core->counters.store_failures, failures, "the commit did not fail");
    cr_assert (s_task ("svc-r", 0)->dirty & KEEL_DIRTY_RESULT);
    cr_expect_eq (s_engine_drops_received (), 0,
                  "DROP sent after a failed commit: the result is in no store and no engine");

    s_room_again (old);
    s_one_turn (KEEL_OK); // the next commit stores the result
    cr_assert_not (s_task ("svc-r", 0)->dirty & KEEL_DIRTY_RESULT);
    cr_expect_eq (s_engine_drops_received (), 1, "the DROP never left once the result was stored");
}

// The fdatasync of the DROP turn fails: nothing that promises durability
// leaves, the DROP included, and the loop stops.
Test (broker_review, a_drop_verdict_never_leaves_when_the_sync_fails, .fini = s_sqlite_teardown)
{
    s_start_sqlite ();
    uint64_t exec_id = s_result_not_committed ();
    int fds[2];
    cr_assert_eq (pipe (fds), 0);
    int wal = keel_store_sync_fd (broker->store);
    cr_assert_geq (wal, 0);
    cr_assert_geq (dup2 (fds[0], wal), 0); // fdatasync on a pipe: EINVAL
    s_engine_relogin_with_result (exec_id);
    s_one_turn (KEEL_ERR_STORE);
    cr_expect_eq (s_engine_drops_received (), 0, "DROP sent although the store could not sync");
    close (fds[0]);
    close (fds[1]);
}

// What e1 received, in order: one letter per message (L LoginReply,
// A Assign or AssignBatch, R ResultAck, o anything else but heartbeats), at
// most size - 1 of them.
static void
s_engine_received (char *seq, size_t size)
{
    size_t n = 0;
    zpoller_t *poller = zpoller_new (eng_sock, NULL);
    while (n + 1 < size && zpoller_wait (poller, 200) == eng_sock) {
        zframe_t *frame = zframe_recv (eng_sock);
        if (!frame)
            break;
        keel_error_t err;
        keel_env_t *env = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
        zframe_destroy (&frame);
        cr_assert_not_null (env, "%s", err.text);
        switch (env->body_case) {
            case KEEL__ENVELOPE__BODY_LOGIN_REPLY:
                seq[n++] = 'L';
                break;
            case KEEL__ENVELOPE__BODY_ASSIGN:
            case KEEL__ENVELOPE__BODY_ASSIGN_BATCH:
                seq[n++] = 'A';
                break;
            case KEEL__ENVELOPE__BODY_RESULT_ACK:
                seq[n++] = 'R';
                break;
            case KEEL__ENVELOPE__BODY_HEARTBEAT:
                break; // due whenever a turn runs late (a loaded machine): not an ordering
            default:
                seq[n++] = 'o';
                break;
        }
        keel_wire_free (&env);
    }
    seq[n] = '\0';
    zpoller_destroy (&poller);
}

// The LoginReply that carries a DROP waits until its commit is synced; an
// Assign dispatched in the same turn to the same engine must wait too, or
// it reaches the engine before the reply that logs it in (the engine, still
// logging in, would not take it and the task would sit "running" there).
// e1 (1 slot) runs task 0 while task 1 waits, durable, in the queue; task
// 0's result arrives, then e1 logs in again listing it done (DROP) with a
// free slot, and that turn's commit fails: task 1 may go to e1 only after
// the LoginReply, which leaves once a later commit is synced. (When the
// commit succeeds, the turn syncs before it dispatches.)
Test (broker_review, no_assign_overtakes_a_login_reply_held_for_its_drop, .fini = s_sqlite_teardown)
{
    s_start_sqlite ();
    s_login_slots = 1;
    s_login (eng_sock_route, "e1", "session-1", NULL, 0);
    s_hello ();
    s_submit_service ("svc-r", 0);
    s_submit_task ("svc-r", 0);
    s_submit_task ("svc-r", 1);
    s_one_turn (KEEL_OK);
    cr_assert_not_null (s_task ("svc-r", 0)->execs, "task 0 was not dispatched");
    cr_assert_null (s_task ("svc-r", 1)->execs, "task 1 should wait: e1 has one slot");
    cr_assert (s_task ("svc-r", 1)->durable);
    uint64_t exec_id = s_task ("svc-r", 0)->execs->id;
    char seq[16];
    s_engine_received (seq, sizeof seq);
    cr_assert_str_eq (seq, "LA", "e1's first login and task 0's assignment");
    s_result (eng_sock_route, "svc-r", 0, exec_id, KEEL__TASK_STATUS__STATUS_OK);

    // The DROP turn's commit fails (no file may grow), so its LoginReply
    // waits for a later commit; the next turn's commit stores the result.
    struct rlimit old = s_no_room ();
    uint64_t failures = core->counters.store_failures;
    s_engine_relogin_with_result (exec_id);
    s_one_turn (KEEL_OK);
    s_room_again (old);
    cr_assert_gt (core->counters.store_failures, failures, "the commit did not fail");
    s_one_turn (KEEL_OK);
    s_one_turn (KEEL_OK); // task 1 goes now if it did not before
    cr_assert_not_null (s_task ("svc-r", 1)->execs, "task 1 was never dispatched");
    s_engine_received (seq, sizeof seq);
    cr_expect (seq[0] == 'L' && strchr (seq, 'A') != NULL,
               "e1 received %s: its assignment came before the LoginReply held for the DROP", seq);
}

// An engine runs a task of a service this broker does not know yet (HOLD).
// The driver submits it, the claim attaches, and that commit fails: the
// task is undone (the driver is refused and submits it again later). The
// claim must go back to the pending claims so the next submission attaches
// it again, instead of running the task a second time.
Test (broker_review, a_hold_claim_survives_a_failed_commit_of_its_submission,
      .fini = s_sqlite_teardown)
{
    s_start_sqlite ();
    Keel__HeldTask held = s_held_running ("svc-h", 0, 77);
    Keel__HeldTask *helds[] = { &held };
    s_login (eng_sock_route, "e1", "session-1", helds, 1);
    s_one_turn (KEEL_OK);
    cr_assert_eq (core->npending, 1, "the claim is not held");

    s_hello ();
    s_submit_service ("svc-h", 0);
    struct rlimit old = s_no_room ();
    s_submit_task ("svc-h", 0);
    cr_assert_eq (core->npending, 0, "the claim did not attach");
    uint64_t failures = core->counters.store_failures;
    s_one_turn (KEEL_OK);
    s_room_again (old);
    cr_assert_gt (core->counters.store_failures, failures, "the commit did not fail");
    cr_expect_eq (core->npending, 1, "the claim was lost with the refused submission");

    // A commit that writes (the claim's row again) shows the store writable;
    // then the driver submits again: the claim attaches, nothing is dispatched.
    s_one_turn (KEEL_OK);
    cr_assert_not (core->store_failed, "the store did not recover");
    uint64_t dispatched = core->counters.tasks_dispatched;
    s_submit_service ("svc-h", 0);
    s_submit_task ("svc-h", 0);
    s_one_turn (KEEL_OK);
    keel_task_t *t = s_task ("svc-h", 0);
    cr_assert (t->durable);
    cr_expect_eq (core->counters.tasks_dispatched, dispatched,
                  "the task was dispatched again although e1 runs it");
    cr_expect (t->execs && t->execs->id == 77 && !t->execs->next_of_task,
               "task 0 should run only as e1's execution 77");
}

// The same with a result the engine holds: attached at the submission, its
// ResultAck waits for the commit, which fails. The engine must not be told
// to forget its copy by a later commit: the result is stored nowhere here.
// It goes back to the pending claims; the next submission stores it, and
// only then does the ResultAck leave.
Test (broker_review, a_held_result_is_not_acknowledged_when_its_submission_is_not_stored,
      .fini = s_sqlite_teardown)
{
    s_start_sqlite ();
    Keel__HeldTask held = KEEL__HELD_TASK__INIT;
    Keel__HeldTask *helds[] = { &held };
    Keel__Result res = KEEL__RESULT__INIT;
    res.service_id = "svc-h";
    res.has_task_id = true;
    res.has_execution_id = true;
    res.execution_id = 78;
    res.has_status = true;
    res.status = KEEL__TASK_STATUS__STATUS_OK;
    held.service_id = "svc-h";
    held.has_task_id = true;
    held.has_execution_id = true;
    held.execution_id = 78;
    held.has_state = true;
    held.state = KEEL__HELD_STATE__HELD_DONE;
    held.result = &res;
    s_login (eng_sock_route, "e1", "session-1", helds, 1);
    s_one_turn (KEEL_OK);
    cr_assert_eq (core->npending, 1, "the result is not held");
    char seq[16];
    s_engine_received (seq, sizeof seq);
    cr_assert_str_eq (seq, "L");

    s_hello ();
    s_submit_service ("svc-h", 0);
    struct rlimit old = s_no_room ();
    s_submit_task ("svc-h", 0);
    uint64_t failures = core->counters.store_failures;
    s_one_turn (KEEL_OK);
    s_room_again (old);
    cr_assert_gt (core->counters.store_failures, failures, "the commit did not fail");
    // Nothing else to write: the broker tries its store again once a second.
    int64_t deadline = zclock_mono () + 5000;
    while (core->store_failed && zclock_mono () < deadline)
        s_one_turn (KEEL_OK);
    cr_assert_not (core->store_failed, "the store did not recover within 5 s");
    s_engine_received (seq, sizeof seq);
    cr_expect (!strchr (seq, 'R'), "e1 was told to forget a result stored nowhere (received %s)",
               seq);
    cr_expect_eq (core->npending, 1, "the held result was lost with the refused submission");

    s_submit_service ("svc-h", 0);
    s_submit_task ("svc-h", 0);
    s_one_turn (KEEL_OK);
    keel_task_t *t = s_task ("svc-h", 0);
    cr_assert (t->durable && t->state == KEEL_TASK_STATE_DONE,
               "task 0 did not take the held result");
    cr_expect (t->result && t->result->execution_id == 78);
    s_engine_received (seq, sizeof seq);
    cr_expect (strchr (seq, 'R'), "e1 never got the ResultAck once the result was stored (%s)",
               seq);
}

// An idle broker whose only commit failed (disk full) has nothing else to
// write: it must still find out when space returns, or it refuses every
// submission for ever.
Test (broker_review, an_idle_broker_takes_submissions_again_when_its_store_recovers,
      .fini = s_sqlite_teardown)
{
    s_start_sqlite ();
    s_hello ();
    struct rlimit old = s_no_room ();
    s_submit_service ("svc-f", 0);
    s_submit_task ("svc-f", 0);
    s_one_turn (KEEL_OK);
    s_room_again (old);
    cr_assert (core->store_failed, "the commit did not fail");
    cr_assert_null (keel_model_service (core->model, "svc-f"), "a refused service stayed");

    int64_t deadline = zclock_mono () + 5000;
    while (core->store_failed && zclock_mono () < deadline)
        s_one_turn (KEEL_OK);
    cr_assert_not (core->store_failed, "the store was not tried again within 5 s");
    s_submit_service ("svc-f", 0);
    s_submit_task ("svc-f", 0);
    s_one_turn (KEEL_OK);
    cr_expect (s_task ("svc-f", 0)->durable, "the submission was not stored");
}
