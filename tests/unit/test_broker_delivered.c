/*  test_broker_delivered.c — a driver that returns to a broker tells it
    which results it already holds (DriverHello.delivered, ResultAck.
    delivered; issue 10 item 11). The broker runs none of those tasks
    again, sends none of their results again, stores them as settled
    (state ELSEWHERE, acknowledged, no output) across a restart, and
    still purges the service. Driven in-process through the message
    handlers, as test_broker_review.c. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker_int.h"
#include "core_int.h"
#include "config.h"

static keel_settings_t *settings;
static keel_broker_t *broker;
static keel_core_t *core; // broker->core: what the tests drive and read
static zframe_t *drv_route;
static zframe_t *eng_route;
static char s_db[256];

static void
s_settings (const char *store)
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
    cr_assert_eq (keel_settings_set (settings, "EngineLoginWindow", "0", "test", &err), KEEL_OK);
    cr_assert_eq (keel_settings_set (settings, "LogLevel", "error", "test", &err), KEEL_OK);
}

static void
s_start (void)
{
    keel_error_t err = { "" };
    broker = keel_broker_new (settings, &err);
    core = broker ? broker->core : NULL;
    cr_assert_not_null (broker, "%s", err.text);
}

static void
s_stop (void)
{
    keel_broker_destroy (&broker);
    keel_settings_destroy (&settings);
}

static void
setup (void)
{
    snprintf (s_db, sizeof s_db, "/tmp/keel-delivered-%d.db", (int) getpid ());
    unlink (s_db);
    char uri[300];
    snprintf (uri, sizeof uri, "sqlite:%s", s_db);
    s_settings (uri);
    s_start ();
    drv_route = zframe_new ("\0drv1", 5);
    eng_route = zframe_new ("\0eng1", 5);
}

static void
teardown (void)
{
    zframe_destroy (&drv_route);
    zframe_destroy (&eng_route);
    s_stop ();
    char path[300];
    unlink (s_db);
    snprintf (path, sizeof path, "%s-wal", s_db);
    unlink (path);
    snprintf (path, sizeof path, "%s-shm", s_db);
    unlink (path);
}

// One loop turn, then the clean-stop commit: what the handlers changed is
// in the store.
static void
s_one_turn (void)
{
    keel_broker_stop (broker);
    cr_assert_eq (keel_broker_run (broker), KEEL_OK);
    broker->stop = false;
}

// Stops the broker and starts a new one on the same store.
static void
s_restart (void)
{
    s_one_turn ();
    s_stop ();
    char uri[300];
    snprintf (uri, sizeof uri, "sqlite:%s", s_db);
    s_settings (uri);
    s_start ();
}

// ---------------------------------------------------------------- messages

// DriverHello from driver `driver_id` listing `service_id` open, holding
// the results of the ranges (gap, length pairs) given.
static void
s_hello (const char *driver_id, const char *service_id, const uint64_t *ranges, size_t n)
{
    Keel__Envelope env;
    Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
    Keel__DeliveredTasks d = KEEL__DELIVERED_TASKS__INIT;
    Keel__DeliveredTasks *dp[] = { &d };
    char *services[] = { (char *) service_id };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    hello.driver_id = (char *) driver_id;
    if (service_id) {
        hello.n_services = 1;
        hello.services = services;
    }
    if (n) {
        d.service_id = (char *) service_id;
        d.n_ranges = n;
        d.ranges = (uint64_t *) ranges;
        hello.n_delivered = 1;
        hello.delivered = dp;
    }
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
    env.driver_hello = &hello;
    keel_error_t err;
    cr_assert_eq (keel_wire_validate (&env, &err), KEEL_OK, "%s", err.text);
    keel_core_message (core, drv_route, &env);
}

static void
s_ack_ranges (const char *service_id, const uint64_t *ranges, size_t n)
{
    Keel__Envelope env;
    Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    ack.service_id = (char *) service_id;
    ack.n_delivered = n;
    ack.delivered = (uint64_t *) ranges;
    env.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
    env.result_ack = &ack;
    keel_error_t err;
    cr_assert_eq (keel_wire_validate (&env, &err), KEEL_OK, "%s", err.text);
    keel_core_message (core, drv_route, &env);
}

// Service `service_id` of driver d1 with tasks 0..n-1, all queued.
static void
s_service (const char *service_id, uint64_t n)
{
    s_hello ("d1", NULL, NULL, 0);
    Keel__Envelope env;
    Keel__SubmitService svc = KEEL__SUBMIT_SERVICE__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    svc.service_id = (char *) service_id;
    svc.type = "t";
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_SERVICE;
    env.submit_service = &svc;
    keel_core_message (core, drv_route, &env);
    for (uint64_t id = 0; id < n; id++) {
        Keel__SubmitTasks msg = KEEL__SUBMIT_TASKS__INIT;
        Keel__TaskInput in = KEEL__TASK_INPUT__INIT;
        Keel__TaskInput *ins[] = { &in };
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
        in.has_task_id = true;
        in.task_id = id;
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
}

// Engine e1 logs in, listing task_id of service_id as running (exec_id),
// or nothing when service_id is NULL.
static void
s_login (const char *service_id, uint64_t task_id, uint64_t exec_id)
{
    Keel__Envelope env;
    Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
    Keel__HeldTask held = KEEL__HELD_TASK__INIT;
    Keel__HeldTask *helds[] = { &held };
    static char *types[] = { "t" };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    login.engine_id = "e1";
    login.session = "session-1";
    login.host = "host";
    login.has_slots = true;
    login.slots = 4;
    login.n_service_types = 1;
    login.service_types = types;
    if (service_id) {
        held.service_id = (char *) service_id;
        held.has_task_id = true;
        held.task_id = task_id;
        held.has_execution_id = true;
        held.execution_id = exec_id;
        held.has_state = true;
        held.state = KEEL__HELD_STATE__HELD_RUNNING;
        login.n_held = 1;
        login.held = helds;
    }
    env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
    env.engine_login = &login;
    keel_core_message (core, eng_route, &env);
}

static keel_service_rec_t *
s_svc (const char *service_id)
{
    keel_service_rec_t *svc = keel_model_service (core->model, service_id);
    cr_assert_not_null (svc, "service %s unknown", service_id);
    return svc;
}

static keel_task_t *
s_task (const char *service_id, uint64_t task_id)
{
    keel_task_t *t = keel_service_task (s_svc (service_id), task_id);
    cr_assert_not_null (t, "task %llu unknown", (unsigned long long) task_id);
    return t;
}

// A terminal OK result for task_id, as an engine's would be stored.
static void
s_finish (const char *service_id, uint64_t task_id)
{
    keel_task_result_t *r =
        keel_task_result_new (KEEL__TASK_STATUS__STATUS_OK, NULL, 0, NULL, NULL);
    cr_assert_not_null (r);
    keel_core_task_finished (core, s_svc (service_id), task_id, r, KEEL_TASK_STATE_DONE);
}

// ---------------------------------------------------------------- tests

TestSuite (broker_delivered, .init = setup, .fini = teardown);

Test (broker_delivered, a_returning_driver_s_held_results_leave_the_queue)
{
    s_service ("svc-a", 6);
    cr_assert_eq (s_svc ("svc-a")->nready, 6);
    uint64_t held[] = { 0, 3, 1, 1 }; // [0, 3) and [4, 5): task 3 and 5 in flight
    s_hello ("d1", "svc-a", held, 4);
    keel_service_rec_t *svc = s_svc ("svc-a");
    for (uint64_t id = 0; id < 6; id++) {
        keel_task_t *t = s_task ("svc-a", id);
        bool in_flight = id == 3 || id == 5;
        cr_expect_eq (t->state, in_flight ? KEEL_TASK_STATE_QUEUED : KEEL_TASK_STATE_ELSEWHERE,
                      "task %llu", (unsigned long long) id);
        cr_expect_eq (t->queued, in_flight, "task %llu queued=%d", (unsigned long long) id,
                      t->queued);
        cr_expect_eq (t->acked, !in_flight);
        cr_expect_null (t->result);
    }
    cr_expect_eq (svc->nready, 2);
    cr_expect_eq (svc->count[KEEL_TASK_STATE_ELSEWHERE], 4);
    cr_expect_eq (svc->unacked, 0);
    cr_expect_eq (core->counters.tasks_delivered_elsewhere, 4);
    // The same news again changes nothing.
    s_hello ("d1", "svc-a", held, 4);
    cr_expect_eq (core->counters.tasks_delivered_elsewhere, 4);
}

Test (broker_delivered, a_result_the_driver_holds_is_not_sent_again)
{
    s_service ("svc-b", 3);
    s_finish ("svc-b", 1);
    cr_assert_eq (s_svc ("svc-b")->unacked, 1);
    size_t queued = core->nresults;
    uint64_t held[] = { 1, 1 };
    s_hello ("d1", "svc-b", held, 2);
    keel_task_t *t = s_task ("svc-b", 1);
    cr_expect_eq (t->state, KEEL_TASK_STATE_DONE, "a stored result stays");
    cr_expect_not_null (t->result);
    cr_expect (t->acked, "the driver holds it: acknowledged");
    cr_expect_eq (s_svc ("svc-b")->unacked, 0);
    cr_expect_eq (core->nresults, queued, "the hello queued the held result to be sent again");
    // Without the list the hello sends it again (the old behaviour, for
    // results the driver does not hold).
    s_finish ("svc-b", 2);
    queued = core->nresults;
    s_hello ("d1", "svc-b", NULL, 0);
    cr_expect_eq (core->nresults, queued + 1);
}

Test (broker_delivered, a_running_execution_of_a_held_task_is_cancelled)
{
    s_service ("svc-c", 2);
    s_login ("svc-c", 0, 4242); // e1 runs task 0 (a claim: KEEP)
    cr_assert_eq (s_task ("svc-c", 0)->state, KEEL_TASK_STATE_RUNNING);
    cr_assert_not_null (keel_model_exec (core->model, 4242));
    uint64_t held[] = { 0, 1 };
    s_ack_ranges ("svc-c", held, 2); // as the driver sends after the welcome
    keel_task_t *t = s_task ("svc-c", 0);
    cr_expect_eq (t->state, KEEL_TASK_STATE_ELSEWHERE);
    cr_expect_null (t->execs);
    cr_expect_null (keel_model_exec (core->model, 4242));
    cr_expect_eq (core->counters.executions_cancelled, 1, "e1 was not told to stop");
    cr_expect_eq (s_task ("svc-c", 1)->state, KEEL_TASK_STATE_QUEUED);
}

Test (broker_delivered, ranges_for_another_driver_s_service_change_nothing)
{
    s_service ("svc-d", 2);
    uint64_t held[] = { 0, 2 };
    Keel__Envelope env;
    Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
    Keel__DeliveredTasks d = KEEL__DELIVERED_TASKS__INIT;
    Keel__DeliveredTasks *dp[] = { &d };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    hello.driver_id = "d2"; // does not list svc-d: not its service
    d.service_id = "svc-d";
    d.n_ranges = 2;
    d.ranges = held;
    hello.n_delivered = 1;
    hello.delivered = dp;
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
    env.driver_hello = &hello;
    zframe_t *other = zframe_new ("\0drv2", 5);
    keel_core_message (core, other, &env);
    zframe_destroy (&other);
    cr_expect_eq (s_task ("svc-d", 0)->state, KEEL_TASK_STATE_QUEUED);
    cr_expect_eq (core->counters.tasks_delivered_elsewhere, 0);
}

// Ranges reaching 2^64 on a service of three tasks: the walk stops at the
// last task (bounded work), and ids past it are ignored.
Test (broker_delivered, absurd_ranges_cost_no_more_than_the_service_s_tasks, .timeout = 5)
{
    s_service ("svc-e", 3);
    uint64_t held[] = {
        1,
        UINT64_MAX - 2,
    };
    s_hello ("d1", "svc-e", held, 2);
    cr_expect_eq (s_task ("svc-e", 0)->state, KEEL_TASK_STATE_QUEUED);
    cr_expect_eq (s_task ("svc-e", 1)->state, KEEL_TASK_STATE_ELSEWHERE);
    cr_expect_eq (s_task ("svc-e", 2)->state, KEEL_TASK_STATE_ELSEWHERE);
    uint64_t far[] = { 1000000000000ULL, 5 };
    s_ack_ranges ("svc-e", far, 2);
    cr_expect_eq (s_task ("svc-e", 0)->state, KEEL_TASK_STATE_QUEUED);
}

// Settled tasks stay settled across a restart: never queued again, a
// returning engine's claim is dropped, and once the driver closes the
// service, retention purges it.
Test (broker_delivered, held_tasks_stay_settled_after_a_restart_and_the_service_is_purged)
{
    s_service ("svc-f", 3);
    uint64_t held[] = { 0, 2 };
    s_hello ("d1", "svc-f", held, 2);
    s_restart ();
    keel_task_t *t = s_task ("svc-f", 1);
    cr_expect_eq (t->state, KEEL_TASK_STATE_ELSEWHERE);
    cr_expect (t->acked);
    cr_expect_null (t->result);
    cr_expect_not (t->queued);
    cr_expect_eq (s_svc ("svc-f")->nready, 1, "only task 2 is queued after the restart");
    cr_expect_eq (s_svc ("svc-f")->unacked, 0);
    s_login ("svc-f", 1, 777); // an engine still runs task 1: DROP
    cr_expect_null (keel_model_exec (core->model, 777));
    cr_expect_eq (core->counters.claims_dropped, 1);
    // Task 2's result arrives and is acknowledged; the driver closes the service.
    s_hello ("d1", "svc-f", NULL, 0);
    s_finish ("svc-f", 2);
    uint64_t last[] = { 2, 1 };
    s_ack_ranges ("svc-f", last, 2);
    Keel__Envelope env;
    Keel__CloseService close = KEEL__CLOSE_SERVICE__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    close.service_id = "svc-f";
    env.body_case = KEEL__ENVELOPE__BODY_CLOSE_SERVICE;
    env.close_service = &close;
    keel_core_message (core, drv_route, &env);
    cr_expect_eq (keel_core_purge (core, zclock_time () + 1, 0), 1, "the service was not purged");
    cr_expect_null (keel_model_service (core->model, "svc-f"));
}
