/*  test_engine_review.c — keel-engine against a scripted fake broker: the
    login verdicts and the prefetch queue.

    The broker is a ROUTER inside the test, driven step by step, so that the
    engine can be caught in the windows the real broker makes hard to hit:
    a task that finishes between the EngineLogin and the LoginReply, a flood
    of Assigns far beyond any EnginePrefetch.
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>

#include "fake_broker.h"
#include "harness.h"
#include "wire.h"

static fake_broker_t *s_running;

static void
s_teardown (void)
{
    fake_broker_destroy (&s_running);
    harness_teardown ();
}

static fake_broker_t *
s_fake_new (void)
{
    fake_broker_t *f = fake_broker_new ();
    cr_assert_not_null (f, "no fake broker (no free port?)");
    s_running = f;
    return f;
}

static void
s_login_reply (fake_broker_t *f, size_t n, Keel__TaskVerdict **verdicts)
{
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.has_ok = reply.ok = true;
    reply.broker_name = "fake";
    reply.has_epoch = true;
    reply.epoch = 1;
    reply.has_heartbeat_ms = reply.has_engine_timeout_ms = true;
    reply.heartbeat_ms = 1000;
    reply.engine_timeout_ms = 600000;
    reply.n_verdicts = n;
    reply.verdicts = verdicts;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;
    cr_assert (fake_broker_send (f, &env));
}

static void
s_assign (fake_broker_t *f, uint64_t execution_id, const char *type, const char *input)
{
    Keel__Assign a = KEEL__ASSIGN__INIT;
    a.service_id = "svc";
    a.type = (char *) type;
    a.has_task_id = a.has_execution_id = a.has_input = true;
    a.task_id = execution_id;
    a.execution_id = execution_id;
    a.input.data = (uint8_t *) input;
    a.input.len = strlen (input);
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
    env.assign = &a;
    cr_assert (fake_broker_send (f, &env));
}

static bool
s_log_has_finished_7 (void *arg)
{
    (void) arg;
    char path[600];
    char *text = harness_read_file (harness_path (path, sizeof path, "engine.err"));
    bool found = text && strstr (text, "task finished exec=7 ");
    free (text);
    return found;
}

//  A task running when the engine logs in, which finishes before the
//  LoginReply arrives with HOLD (the broker does not know the service yet):
//  the login carried no result for it, so the engine must still send its
//  Result; otherwise the broker's pending claim waits forever for a result
//  the engine keeps to itself, and the task never completes.
Test (engine_review, hold_for_task_finished_during_login_sends_result,
      .init = harness_setup, .fini = s_teardown, .timeout = 60)
{
    fake_broker_t *f = s_fake_new ();
    pid_t pid = harness_engine_start (&f->b, "engine", 1, NULL);
    HARNESS_ASSERT (pid > 0, "keel-engine did not start");
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 15000);
    HARNESS_ASSERT (env, "no EngineLogin");
    keel_wire_free (&env);
    s_login_reply (f, 0, NULL);
    s_assign (f, 7, "sleep", "400");

    //  Log in again (the engine carries exec 7, running).
    Keel__Relogin relogin = KEEL__RELOGIN__INIT;
    relogin.reason = "unknown engine: log in";
    keel_env_t rel;
    keel_env_init (&rel, KEEL__SENDER_KIND__SENDER_BROKER);
    rel.body_case = KEEL__ENVELOPE__BODY_RELOGIN;
    rel.relogin = &relogin;
    cr_assert (fake_broker_send (f, &rel));
    f->keepalive_ms = 0;        // no traffic to the new connection until the reply
    env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 5000);
    HARNESS_ASSERT (env, "no second EngineLogin");
    HARNESS_ASSERT (env->engine_login->n_held == 1
                    && env->engine_login->held[0]->execution_id == 7
                    && env->engine_login->held[0]->state == KEEL__HELD_STATE__HELD_RUNNING,
                    "the second login does not carry exec 7 running");
    keel_wire_free (&env);

    //  The task finishes while the engine waits for the LoginReply.
    HARNESS_ASSERT (harness_poll_until (s_log_has_finished_7, NULL, 2500),
                    "exec 7 did not finish during the login");
    Keel__TaskVerdict v = KEEL__TASK_VERDICT__INIT;
    v.service_id = "svc";
    v.has_task_id = v.has_execution_id = v.has_verdict = true;
    v.task_id = 7;
    v.execution_id = 7;
    v.verdict = KEEL__VERDICT__VERDICT_HOLD;
    Keel__TaskVerdict *vs[1] = { &v };
    s_login_reply (f, 1, vs);
    f->keepalive_ms = 300;

    env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_RESULT, 5000);
    HARNESS_ASSERT (env, "the engine never sent the result of exec 7 (HOLD)");
    HARNESS_ASSERT (env->result->execution_id == 7, "result of another execution");
    HARNESS_ASSERT (env->result->status == KEEL__TASK_STATUS__STATUS_OK, "exec 7 failed");
    keel_wire_free (&env);
}

#define S_FLOOD_EXTRA 5

//  A broker flooding Assigns far beyond Slots + EnginePrefetch (at most
//  10000): the engine queues up to Slots + 10000 and answers every one
//  beyond with a failed Result, instead of growing without bound.
Test (engine_review, prefetch_queue_is_capped,
      .init = harness_setup, .fini = s_teardown, .timeout = 120)
{
    fake_broker_t *f = s_fake_new ();
    pid_t pid = harness_engine_start (&f->b, "engine", 1, NULL);
    HARNESS_ASSERT (pid > 0, "keel-engine did not start");
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 15000);
    HARNESS_ASSERT (env, "no EngineLogin");
    keel_wire_free (&env);
    s_login_reply (f, 0, NULL);
    uint64_t total = 1 + 10000 + S_FLOOD_EXTRA;
    for (uint64_t id = 1; id <= total; id++)
        s_assign (f, id, "sleep", "600000");

    int failed = 0;
    bool beyond_only = true;
    int64_t deadline = zclock_mono () + 30000;
    while (zclock_mono () < deadline && failed <= S_FLOOD_EXTRA) {
        env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_RESULT, failed == S_FLOOD_EXTRA ? 3000 : 20000);
        if (!env)
            break;
        failed++;
        if (env->result->status != KEEL__TASK_STATUS__STATUS_FAILED
            || env->result->execution_id <= total - S_FLOOD_EXTRA)
            beyond_only = false;
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (failed == S_FLOOD_EXTRA, "%d failed results, expected %d", failed,
                    S_FLOOD_EXTRA);
    HARNESS_ASSERT (beyond_only, "a task within the cap was refused");
    HARNESS_ASSERT (harness_alive (pid), "keel-engine died under the flood");
}
