/*  test_engine_pair.c — keel-engine with a resilient broker pair (DESIGN §6;
    protocol.md, "Clients and a resilient broker pair"), against two
    scripted brokers (fake_broker.h): a Passive from the broker it is
    logged in to sends it to the active one at once, carrying its running
    task, which is not cancelled and whose result goes to the new broker. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "fake_broker.h"
#include "harness.h"

static fake_broker_t *s_a, *s_b;

static void
s_teardown (void)
{
    fake_broker_destroy (&s_a);
    fake_broker_destroy (&s_b);
    harness_teardown ();
}

static bool
s_login_reply (fake_broker_t *f, const char *pair_peer, uint64_t epoch, size_t n,
               Keel__TaskVerdict **verdicts)
{
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.has_ok = reply.ok = true;
    reply.broker_name = "fake";
    reply.has_epoch = true;
    reply.epoch = epoch;
    reply.has_heartbeat_ms = reply.has_engine_timeout_ms = true;
    reply.heartbeat_ms = 1000;
    reply.engine_timeout_ms = 600000;
    reply.n_verdicts = n;
    reply.verdicts = verdicts;
    reply.pair_peer = (char *) pair_peer;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.has_epoch = true;
    env.epoch = epoch;
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;
    return fake_broker_send (f, &env);
}

Test (engine_pair, passive_sends_the_engine_to_the_active_broker_with_its_running_task,
      .init = harness_setup, .fini = s_teardown, .timeout = 60)
{
    fake_broker_t *a = s_a = fake_broker_new ();
    fake_broker_t *b = s_b = fake_broker_new ();
    HARNESS_ASSERT (a && b, "no fake brokers");
    char brokers[200];
    snprintf (brokers, sizeof brokers, "Brokers=%s,%s", a->b.endpoint, b->b.endpoint);
    const char *sets[] = { brokers, NULL };
    pid_t pid = harness_engine_start (&a->b, "engine", 1, sets);
    HARNESS_ASSERT (pid > 0, "keel-engine did not start");

    // 1. Logged in to A (pair peer B), running exec 7.
    keel_env_t *env = fake_broker_expect (a, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 15000);
    HARNESS_ASSERT (env, "no EngineLogin to A");
    keel_wire_free (&env);
    HARNESS_ASSERT (s_login_reply (a, b->b.endpoint, 3, 0, NULL), "cannot reply");
    Keel__Assign as = KEEL__ASSIGN__INIT;
    as.service_id = "svc";
    as.type = "sleep";
    as.has_task_id = as.has_execution_id = as.has_input = true;
    as.task_id = as.execution_id = 7;
    as.input.data = (uint8_t *) "1500";
    as.input.len = 4;
    keel_env_t assign;
    keel_env_init (&assign, KEEL__SENDER_KIND__SENDER_BROKER);
    assign.has_epoch = true;
    assign.epoch = 3;
    assign.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
    assign.assign = &as;
    HARNESS_ASSERT (fake_broker_send (a, &assign), "cannot assign");
    HARNESS_ASSERT (harness_wait_log ("engine.err", "exec=7", 1, 5000), "exec 7 did not start");

    // 2. A demotes itself: the engine logs in to B at once, carrying exec 7.
    Keel__Passive passive = KEEL__PASSIVE__INIT;
    passive.active = b->b.endpoint;
    passive.reason = "demoted";
    keel_env_t pe;
    keel_env_init (&pe, KEEL__SENDER_KIND__SENDER_BROKER);
    pe.has_epoch = true;
    pe.epoch = 3;
    pe.body_case = KEEL__ENVELOPE__BODY_PASSIVE;
    pe.passive = &passive;
    int64_t passive_at = zclock_mono ();
    HARNESS_ASSERT (fake_broker_send (a, &pe), "cannot send Passive");
    env = fake_broker_expect (b, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 5000);
    HARNESS_ASSERT (env, "no EngineLogin to B after A's Passive");
    int64_t moved_ms = zclock_mono () - passive_at;
    HARNESS_ASSERT (moved_ms < 1000, "the engine took %lld ms to move", (long long) moved_ms);
    HARNESS_ASSERT (env->engine_login->n_held == 1 && env->engine_login->held[0]->execution_id == 7,
                    "the login to B does not carry exec 7");
    keel_wire_free (&env);
    Keel__TaskVerdict v = KEEL__TASK_VERDICT__INIT;
    v.service_id = "svc";
    v.has_task_id = v.has_execution_id = v.has_verdict = true;
    v.task_id = v.execution_id = 7;
    v.verdict = KEEL__VERDICT__VERDICT_KEEP;
    Keel__TaskVerdict *vs[1] = { &v };
    HARNESS_ASSERT (s_login_reply (b, a->b.endpoint, 4, 1, vs), "cannot reply");

    // 3. The task was not cancelled: its result reaches B.
    env = fake_broker_expect (b, KEEL__ENVELOPE__BODY_RESULT, 8000);
    HARNESS_ASSERT (env, "no result of exec 7 at B");
    HARNESS_ASSERT (env->result->execution_id == 7
                        && env->result->status == KEEL__TASK_STATUS__STATUS_OK,
                    "exec 7 did not finish OK");
    keel_wire_free (&env);
    HARNESS_ASSERT (harness_stop (pid, 5000) == 0, "keel-engine did not stop cleanly");
}
