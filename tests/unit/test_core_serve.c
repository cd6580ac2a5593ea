/*  test_core_serve.c — which engines may serve a service (broker/core_serve.c),
    driven through the core with invented times: engines blacklisted for a
    service after BlacklistAfter failures in a row, services whose type
    no online engine offers (DSNoEngineTimeout), and conditions on engines
    (a service's tasks go only to engines whose properties meet it).
*/
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"
#include "core.h"
#include "core_int.h"

static keel_settings_t *settings;
static keel_core_t *core;
static zframe_t *drv_route;
static zframe_t *routes[2];
static int64_t now = 1000000;        // invented monotonic ms
static int64_t wall = 1700000000000; // invented wall ms

static void
s_set (const char *key, const char *value)
{
    keel_error_t err;
    cr_assert_eq (keel_settings_set (settings, key, value, "test", &err), KEEL_OK, "%s", err.text);
    keel_core_settings_changed (core, key, value, "");
}

static void
setup (void)
{
    keel_error_t err;
    settings = keel_settings_new (keel_broker_settings, &err);
    cr_assert_not_null (settings);
    cr_assert_eq (keel_settings_set (settings, "EngineLoginWindow", "0", "test", &err), KEEL_OK);
    cr_assert_eq (keel_settings_set (settings, "LogLevel", "error", "test", &err), KEEL_OK);
    cr_assert_eq (keel_settings_set (settings, "MaxAttempts", "100", "test", &err), KEEL_OK);
    // One task per engine at a time: the tests say which execution failed.
    cr_assert_eq (keel_settings_set (settings, "EnginePrefetch", "0", "test", &err), KEEL_OK);
    core = keel_core_new (settings, now, wall);
    cr_assert_not_null (core);
    keel_core_recover_begin (core, 0, 0);
    keel_core_recover_end (core);
    keel_changes_clear (keel_core_changes (core));
    keel_core_recover_done (core);
    drv_route = zframe_new ("\0drv1", 5);
    routes[0] = zframe_new ("\0eng1", 5);
    routes[1] = zframe_new ("\0eng2", 5);
}

static void
teardown (void)
{
    zframe_destroy (&drv_route);
    zframe_destroy (&routes[0]);
    zframe_destroy (&routes[1]);
    keel_core_destroy (&core);
    keel_settings_destroy (&settings);
}

TestSuite (core_serve, .init = setup, .fini = teardown);

static void
s_tick (int64_t ms)
{
    now += ms;
    wall += ms;
    keel_core_clock (core, now, wall);
}

static void
s_commit (void)
{
    bool wrote = false;
    cr_assert_eq (keel_core_prepare_commit (core, &wrote), KEEL_OK);
    keel_changes_clear (keel_core_changes (core));
    keel_core_synced (core, keel_core_committed (core, wrote));
}

// Takes what the core sent; returns how many messages of body went to the
// driver.
static int
s_sent_to_driver (int body)
{
    int n = 0;
    keel_core_out_t *out;
    while ((out = keel_core_out_next (core))) {
        keel_error_t err;
        keel_env_t *env =
            keel_wire_decode (zframe_data (out->payload), zframe_size (out->payload), &err);
        cr_assert_not_null (env, "%s", err.text);
        n += zframe_eq (out->route, drv_route) && (int) env->body_case == body;
        keel_wire_free (&env);
        keel_core_out_destroy (&out);
    }
    return n;
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

// The driver says it is alive (a driver silent 3 H is lost: no notices).
static void
s_driver_alive (void)
{
    Keel__Envelope env;
    Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    keel_core_message (core, drv_route, &env);
}

// Service id of type "t" with n tasks (ids 0..n-1) and a condition on
// engines (NULL: none), committed.
static keel_service_rec_t *
s_submit_cond (const char *id, uint64_t n, const char *condition)
{
    Keel__Envelope env;
    Keel__SubmitService svc = KEEL__SUBMIT_SERVICE__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    svc.service_id = (char *) id;
    svc.type = "t";
    svc.condition = (char *) condition;
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_SERVICE;
    env.submit_service = &svc;
    keel_core_message (core, drv_route, &env);

    Keel__SubmitTasks msg = KEEL__SUBMIT_TASKS__INIT;
    Keel__TaskInput in[16];
    Keel__TaskInput *ins[16];
    cr_assert_leq (n, 16);
    for (uint64_t i = 0; i < n; i++) {
        keel__task_input__init (&in[i]);
        in[i].has_task_id = in[i].has_input = true;
        in[i].task_id = i;
        in[i].input.data = (uint8_t *) "x";
        in[i].input.len = 1;
        ins[i] = &in[i];
    }
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    msg.service_id = (char *) id;
    msg.n_tasks = n;
    msg.tasks = ins;
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_TASKS;
    env.submit_tasks = &msg;
    keel_core_message (core, drv_route, &env);
    s_commit ();
    keel_service_rec_t *rec = keel_model_service (keel_core_model (core), id);
    cr_assert_not_null (rec);
    return rec;
}

static keel_service_rec_t *
s_submit (const char *id, uint64_t n)
{
    return s_submit_cond (id, n, NULL);
}

// Engine e1 or e2 (which 0 or 1) logs in with one slot, offering "t", with
// property gpu=gpu (none when NULL).
static keel_engine_t *
s_login_gpu (int which, const char *gpu)
{
    Keel__Envelope env;
    Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
    static char *types[] = { "t" };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    login.engine_id = which ? "e2" : "e1";
    login.session = which ? "s2" : "s1";
    login.host = which ? "good" : "bad";
    login.has_slots = true;
    login.slots = 1;
    login.n_service_types = 1;
    login.service_types = types;
    Keel__EngineProperty prop = KEEL__ENGINE_PROPERTY__INIT, *props[] = { &prop };
    prop.name = "gpu";
    prop.value = (char *) gpu;
    login.n_properties = gpu ? 1 : 0;
    login.properties = props;
    env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
    env.engine_login = &login;
    keel_core_message (core, routes[which], &env);
    s_commit ();
    keel_engine_t *e = keel_model_engine (keel_core_model (core), login.engine_id);
    cr_assert_not_null (e);
    return e;
}

static keel_engine_t *
s_login (int which)
{
    return s_login_gpu (which, NULL);
}

// The execution the engine runs (it has one slot), or NULL.
static keel_exec_t *
s_running (keel_engine_t *e)
{
    return zlistx_first (e->execs);
}

// The engine reports its execution ended (ok or failed).
static void
s_result (int which, keel_exec_t *x, bool ok)
{
    cr_assert_not_null (x, "the engine runs nothing");
    Keel__Envelope env;
    Keel__Result res = KEEL__RESULT__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    res.service_id = x->service->id;
    res.has_task_id = res.has_execution_id = res.has_status = true;
    res.task_id = x->task_id;
    res.execution_id = x->id;
    res.status = ok ? KEEL__TASK_STATUS__STATUS_OK : KEEL__TASK_STATUS__STATUS_FAILED;
    res.error = ok ? NULL : "broken here";
    env.body_case = KEEL__ENVELOPE__BODY_RESULT;
    env.result = &res;
    keel_core_message (core, routes[which], &env);
    s_commit ();
}

// The engine says it is alive, listing what it runs.
static void
s_alive (int which, keel_engine_t *e)
{
    uint64_t ids[8];
    size_t n = 0;
    for (keel_exec_t *x = zlistx_first (e->execs); x && n < 8; x = zlistx_next (e->execs))
        ids[n++] = x->id;
    Keel__Envelope env;
    Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    hb.n_running = n;
    hb.running = ids;
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    keel_core_message (core, routes[which], &env);
}

// e1 and e2 online, svc's tasks dispatched to both; e1 then fails `fails`
// of svc's executions in a row (each time given the next one) while e2
// keeps its first task running. Returns e1; *e2_p is e2.
static keel_engine_t *
s_e1_fails (keel_service_rec_t *svc, int fails, keel_engine_t **e2_p)
{
    keel_engine_t *e1 = s_login (0);
    keel_engine_t *e2 = s_login (1);
    keel_core_dispatch (core);
    cr_assert_not_null (s_running (e2), "e2 got no task");
    for (int i = 0; i < fails; i++) {
        keel_exec_t *x = s_running (e1);
        cr_assert_not_null (x, "e1 got no task before failure %d", i);
        cr_assert_eq (x->service, svc);
        cr_assert_not (keel_core_blacklisted (core, e1, svc), "blacklisted after %d failures", i);
        s_result (0, x, false);
        keel_core_dispatch (core);
    }
    *e2_p = e2;
    return e1;
}

Test (core_serve, an_engine_whose_executions_fail_three_times_in_a_row_gets_no_more_of_them)
{
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 6);
    s_sent_to_driver (0); // what was sent so far (the notice that no engine offered "t")
    keel_engine_t *e2;
    keel_engine_t *e1 = s_e1_fails (svc, 3, &e2);
    cr_assert (keel_core_blacklisted (core, e1, svc), "3 failures in a row: blacklisted");
    cr_assert_eq (core->counters.engines_blacklisted, 1);
    cr_assert_eq (keel_core_blacklist_count (core), 1);
    cr_assert_eq (s_sent_to_driver (KEEL__ENVELOPE__BODY_NOTICE), 1,
                  "the driver hears of the blacklisting");
    cr_assert_null (s_running (e1), "a blacklisted engine got a task of the service");

    // The other engine takes the service's tasks, the failed ones included,
    // even while it is busy.
    for (int i = 0; i < 6; i++) {
        s_result (1, s_running (e2), true);
        keel_core_dispatch (core);
        cr_assert_null (s_running (e1));
    }
    cr_assert_eq (svc->count[KEEL_TASK_STATE_DONE], 6);
    cr_assert_eq (core->counters.engines_blacklisted, 1);
}

// A blacklist steers work away from an engine; it never leaves a service
// with no engine: alone, a blacklisted engine still gets its tasks (they
// fail after their attempts instead of waiting BlacklistFor).
Test (core_serve, a_blacklisted_engine_alone_still_gets_the_tasks)
{
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 6);
    keel_engine_t *e1 = s_login (0);
    for (int i = 0; i < 3; i++) {
        keel_core_dispatch (core);
        s_result (0, s_running (e1), false);
    }
    cr_assert (keel_core_blacklisted (core, e1, svc));
    keel_core_dispatch (core);
    cr_assert_not_null (s_running (e1), "the only engine got nothing: the service stalls");
    s_result (0, s_running (e1), true);
    // Another engine arrives: the blacklisted one gets no more.
    keel_engine_t *e2 = s_login (1);
    keel_core_dispatch (core);
    cr_assert_null (s_running (e1));
    cr_assert_not_null (s_running (e2));
}

Test (core_serve, a_success_clears_the_failures_in_a_row)
{
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 8);
    keel_engine_t *e1 = s_login (0);
    bool outcomes[] = { false, false, true, false, false, true, false, false };
    for (size_t i = 0; i < sizeof outcomes / sizeof *outcomes; i++) {
        keel_core_dispatch (core);
        s_result (0, s_running (e1), outcomes[i]);
        cr_assert_not (keel_core_blacklisted (core, e1, svc), "blacklisted at outcome %zu", i);
    }
    cr_assert_eq (core->counters.engines_blacklisted, 0);
}

Test (core_serve, blacklist_after_zero_never_blacklists)
{
    s_set ("BlacklistAfter", "0");
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 1);
    keel_engine_t *e1 = s_login (0);
    for (int i = 0; i < 10; i++) {
        keel_core_dispatch (core);
        s_result (0, s_running (e1), false);
    }
    cr_assert_not (keel_core_blacklisted (core, e1, svc));
    cr_assert_eq (core->counters.engines_blacklisted, 0);
}

Test (core_serve, a_blacklisting_is_per_service)
{
    s_hello ();
    keel_service_rec_t *s1 = s_submit ("s1", 6);
    keel_engine_t *e2;
    keel_engine_t *e1 = s_e1_fails (s1, 3, &e2);
    cr_assert (keel_core_blacklisted (core, e1, s1));
    keel_service_rec_t *s2 = s_submit ("s2", 1);
    cr_assert_not (keel_core_blacklisted (core, e1, s2));
    keel_core_dispatch (core);
    keel_exec_t *x = s_running (e1);
    cr_assert_not_null (x, "the engine got nothing of another service");
    cr_assert_eq (x->service, s2);
}

Test (core_serve, a_blacklisting_ends_after_blacklist_for)
{
    s_set ("BlacklistFor", "10s");
    s_set ("BlacklistAfter", "2");
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 4);
    keel_engine_t *e2;
    keel_engine_t *e1 = s_e1_fails (svc, 2, &e2);
    cr_assert (keel_core_blacklisted (core, e1, svc));
    int64_t hb = keel_broker_cfg_HeartbeatInterval (settings);
    for (int64_t t = 0; t < 9000; t += hb) { // both engines stay online meanwhile
        s_tick (hb);
        s_alive (0, e1);
        s_alive (1, e2);
        keel_core_timers (core);
        keel_core_dispatch (core);
        cr_assert_null (s_running (e1), "the blacklisting ended early");
    }
    s_tick (1000);
    s_alive (0, e1);
    s_alive (1, e2);
    keel_core_timers (core);
    cr_assert_not (keel_core_blacklisted (core, e1, svc), "BlacklistFor passed");
    keel_core_dispatch (core);
    cr_assert_not_null (s_running (e1), "the engine gets the service's tasks again");
}

Test (core_serve, unblacklist_ends_a_blacklisting_and_names_what_it_does_not_know)
{
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 6);
    keel_engine_t *e2;
    keel_engine_t *e1 = s_e1_fails (svc, 3, &e2);
    cr_assert (keel_core_blacklisted (core, e1, svc));
    size_t cleared = 99;
    keel_error_t err = { "" };
    cr_assert_eq (keel_core_unblacklist (core, "nobody", NULL, &cleared, &err), KEEL_ERR_NOTFOUND);
    cr_assert (strstr (err.text, "no engine 'nobody'"), "%s", err.text);
    cr_assert_eq (keel_core_unblacklist (core, "e1", "nothing", &cleared, &err), KEEL_ERR_NOTFOUND);
    cr_assert (strstr (err.text, "no service 'nothing'"), "%s", err.text);
    cr_assert (keel_core_blacklisted (core, e1, svc), "a refused unblacklist changed something");

    cr_assert_eq (keel_core_unblacklist (core, "e1", "s1", &cleared, &err), KEEL_OK);
    cr_assert_eq (cleared, 1);
    cr_assert_not (keel_core_blacklisted (core, e1, svc));
    keel_core_dispatch (core);
    cr_assert_not_null (s_running (e1), "the engine gets the service's tasks again");
    // The failures in a row start from zero: one more is not a blacklisting.
    s_result (0, s_running (e1), false);
    cr_assert_not (keel_core_blacklisted (core, e1, svc));
    cr_assert_eq (keel_core_unblacklist (core, "e1", NULL, &cleared, &err), KEEL_OK);
    cr_assert_eq (cleared, 0, "nothing was blacklisted");
}

// A failed task goes to another engine when one may take it; an engine
// blacklisted for the service may not, so the task is not kept from the
// engine it failed on for an engine that will never take it.
Test (core_serve, a_failed_task_is_retried_elsewhere_but_not_on_a_blacklisted_engine)
{
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 1);
    keel_engine_t *e1 = s_login (0);
    keel_engine_t *e2 = s_login (1);
    keel_core_dispatch (core);
    int first = s_running (e1) ? 0 : 1;
    keel_engine_t *on = first ? e2 : e1, *other = first ? e1 : e2;
    s_result (first, s_running (on), false);
    keel_core_dispatch (core);
    cr_assert_null (s_running (on), "the failed task was retried on the same engine");
    cr_assert_not_null (s_running (other), "the failed task was not retried on the other engine");

    // The other engine fails it too, and is blacklisted for the service:
    // the task goes back to the first one rather than wait for nobody.
    s_set ("BlacklistAfter", "1");
    s_result (!first, s_running (other), false);
    cr_assert (keel_core_blacklisted (core, other, svc));
    cr_assert (keel_core_blacklisted (core, on, svc) == false);
    keel_core_dispatch (core);
    cr_assert_not_null (s_running (on), "the task waits for a blacklisted engine");
}

// ---------------------------------------------------------------- no engine

Test (core_serve, a_type_no_engine_offers_fails_its_queued_tasks_after_ds_no_engine_timeout)
{
    s_set ("DSNoEngineTimeout", "2s");
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 3);
    cr_assert_eq (s_sent_to_driver (KEEL__ENVELOPE__BODY_NOTICE), 1, "no notice at submit");
    for (int i = 0; i < 2; i++) {
        s_tick (1000);
        s_driver_alive ();
        keel_core_timers (core);
        cr_assert_eq (svc->count[KEEL_TASK_STATE_QUEUED], 3, "failed before the timeout");
    }
    s_tick (1000);
    s_driver_alive ();
    keel_core_timers (core);
    cr_assert_eq (svc->count[KEEL_TASK_STATE_FAILED], 3, "not failed after the timeout");
    const keel_task_t *t = keel_service_task (svc, 2);
    cr_assert_not_null (t->result);
    cr_assert_str_eq (t->result->error, "no engine offers service type 't' (DSNoEngineTimeout=2s)");
    cr_assert_eq (core->counters.tasks_failed_no_engine, 3);
    keel_core_send_results (core);
    cr_assert_geq (s_sent_to_driver (KEEL__ENVELOPE__BODY_TASK_RESULTS), 1,
                   "the driver got no results");
}

Test (core_serve, an_engine_that_comes_before_ds_no_engine_timeout_gets_the_tasks)
{
    s_set ("DSNoEngineTimeout", "2s");
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 2);
    s_tick (1000);
    keel_core_timers (core);
    keel_engine_t *e1 = s_login (0);
    for (int i = 0; i < 5; i++) {
        s_tick (1000);
        s_login (0); // stays online
        keel_core_timers (core);
    }
    cr_assert_eq (svc->count[KEEL_TASK_STATE_FAILED], 0);
    for (int i = 0; i < 2; i++) {
        keel_core_dispatch (core);
        s_result (0, s_running (e1), true);
    }
    cr_assert_eq (svc->count[KEEL_TASK_STATE_DONE], 2);
}

// A type offered only by an engine that left: the wait counts from the
// loss, not from the submission.
Test (core_serve, the_wait_counts_from_when_the_last_engine_of_the_type_left)
{
    s_set ("DSNoEngineTimeout", "5s");
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 2);
    s_login (0);
    int64_t hb = keel_broker_cfg_HeartbeatInterval (settings);
    s_tick (3 * hb + 1); // lost; its running task is queued again (RescheduleDelay 0)
    keel_core_timers (core);
    cr_assert_eq (svc->count[KEEL_TASK_STATE_QUEUED], 2);
    for (int i = 0; i < 4; i++) {
        s_tick (1000);
        keel_core_timers (core);
    }
    cr_assert_eq (svc->count[KEEL_TASK_STATE_QUEUED], 2, "failed before the timeout");
    s_tick (1000);
    keel_core_timers (core);
    cr_assert_eq (svc->count[KEEL_TASK_STATE_FAILED], 2);
}

Test (core_serve, with_no_timeout_the_driver_is_told_again_every_minute)
{
    s_hello ();
    keel_service_rec_t *svc = s_submit ("s1", 1);
    cr_assert_eq (s_sent_to_driver (KEEL__ENVELOPE__BODY_NOTICE), 1);
    int notices = 0;
    for (int s = 1; s <= 180; s++) {
        s_tick (1000);
        s_driver_alive ();
        keel_core_timers (core);
        notices += s_sent_to_driver (KEEL__ENVELOPE__BODY_NOTICE);
        if (s == 59)
            cr_assert_eq (notices, 0, "told again within the minute");
    }
    cr_assert_eq (notices, 3, "told %d times in 3 minutes, not 3", notices);
    cr_assert_eq (svc->count[KEEL_TASK_STATE_QUEUED], 1, "DSNoEngineTimeout=0 waits for ever");
}

// ---------------------------------------------------------------- conditions

Test (core_serve, a_service_with_a_condition_goes_only_to_engines_that_meet_it)
{
    s_hello ();
    keel_engine_t *e1 = s_login_gpu (0, "v100");
    keel_engine_t *e2 = s_login_gpu (1, "a100");
    keel_service_rec_t *svc = s_submit_cond ("s1", 3, "gpu == \"a100\"");
    cr_assert_not_null (svc->cond);
    for (int i = 0; i < 3; i++) {
        keel_core_dispatch (core);
        cr_assert_null (s_running (e1), "a task went to the engine that does not match");
        s_result (1, s_running (e2), true);
    }
    cr_assert_eq (svc->count[KEEL_TASK_STATE_DONE], 3);
    cr_assert_eq (zhashx_lookup (e1->matches, "s1"), KEEL_MATCH_NO, "not cached");
    // Another service with no condition goes to both.
    keel_service_rec_t *any = s_submit ("s2", 2);
    keel_core_dispatch (core);
    cr_assert_not_null (s_running (e1));
    cr_assert_not_null (s_running (e2));
    cr_assert_eq (any->count[KEEL_TASK_STATE_RUNNING], 2);
}

Test (core_serve, a_condition_no_engine_meets_is_told_every_minute_until_one_that_does_logs_in)
{
    s_hello ();
    keel_engine_t *e1 = s_login_gpu (0, NULL);
    keel_service_rec_t *svc = s_submit_cond ("s1", 1, "!(gpu == \"x\") && gpu >= \"a\"");
    cr_assert_eq (s_sent_to_driver (KEEL__ENVELOPE__BODY_NOTICE), 1, "no notice at submit");
    char why[KEEL_UNSERVED_TEXT];
    cr_assert_not (keel_model_service_served (keel_core_model (core), svc, why, sizeof why));
    cr_assert_str_eq (why, "no engine online offering service type 't' meets its condition "
                           "'!(gpu == \"x\") && gpu >= \"a\"'");
    char mismatch[300];
    keel_engine_mismatch (e1, svc, mismatch, sizeof mismatch);
    cr_assert_str_eq (mismatch, "gpu >= \"a\" is false (gpu is not set)");
    int notices = 0;
    for (int s = 1; s <= 120; s++) {
        s_tick (1000);
        s_driver_alive ();
        s_alive (0, e1);
        keel_core_timers (core);
        keel_core_dispatch (core);
        notices += s_sent_to_driver (KEEL__ENVELOPE__BODY_NOTICE);
    }
    cr_assert_eq (notices, 2, "told %d times in 2 minutes, not 2", notices);
    cr_assert_null (s_running (e1));
    // The same engine logs in again with the property: evaluated again.
    s_login_gpu (0, "a100");
    keel_core_dispatch (core);
    cr_assert_not_null (s_running (e1), "the engine that now matches got nothing");
    s_result (0, s_running (e1), true);
    cr_assert_eq (svc->count[KEEL_TASK_STATE_DONE], 1);
}

Test (core_serve, a_malformed_condition_is_refused_naming_its_column)
{
    s_hello ();
    Keel__Envelope env;
    Keel__SubmitService msg = KEEL__SUBMIT_SERVICE__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    msg.service_id = "s1";
    msg.type = "t";
    msg.condition = "memory_mb >= 4096 && gpu >=";
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_SERVICE;
    env.submit_service = &msg;
    keel_core_message (core, drv_route, &env);
    cr_assert_null (keel_model_service (keel_core_model (core), "s1"));
    keel_core_out_t *out;
    int refused = 0;
    while ((out = keel_core_out_next (core))) {
        keel_error_t err;
        keel_env_t *e =
            keel_wire_decode (zframe_data (out->payload), zframe_size (out->payload), &err);
        cr_assert_not_null (e, "%s", err.text);
        if (e->body_case == KEEL__ENVELOPE__BODY_REFUSED) {
            refused++;
            cr_expect_eq (e->refused->code, KEEL__REFUSE_CODE__REFUSE_INVALID);
            cr_expect_str_eq (e->refused->error,
                              "condition: column 28: expected a value after '>='");
        }
        keel_wire_free (&e);
        keel_core_out_destroy (&out);
    }
    cr_assert_eq (refused, 1);
}

// A blacklisted engine's tasks may go elsewhere only to an engine that
// meets the condition: else the blacklisted one keeps them.
Test (core_serve, a_blacklisting_steers_work_only_to_engines_that_meet_the_condition)
{
    s_hello ();
    keel_engine_t *e1 = s_login_gpu (0, "a100");
    keel_engine_t *e2 = s_login_gpu (1, NULL);
    keel_service_rec_t *svc = s_submit_cond ("s1", 5, "gpu == \"a100\"");
    for (int i = 0; i < 4; i++) {
        keel_core_dispatch (core);
        cr_assert_null (s_running (e2));
        s_result (0, s_running (e1), false);
    }
    cr_assert (keel_core_blacklisted (core, e1, svc));
    cr_assert_not (keel_core_can_serve (core, e1, svc), "e2 does not meet the condition");
    keel_core_dispatch (core);
    cr_assert_not_null (s_running (e1), "the only matching engine gets the tasks");
}
