/*  test_driver_pair.c — keel-driver with a resilient broker pair (DESIGN §6;
    protocol.md, "Clients and a resilient broker pair"), against two
    scripted brokers (fake_broker.h): a Passive answer sends the driver to
    the other broker at once, long before DSBrokerTimeout, and a move
    between the two members of a pair resubmits nothing they mirror. */
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
s_send_welcome (fake_broker_t *f, const char *pair_peer, uint64_t epoch)
{
    Keel__DriverWelcome welcome = KEEL__DRIVER_WELCOME__INIT;
    welcome.broker_name = "fake-broker";
    welcome.has_epoch = welcome.has_heartbeat_ms = true;
    welcome.epoch = epoch;
    welcome.heartbeat_ms = 1000;
    welcome.pair_peer = (char *) pair_peer;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.has_epoch = true;
    env.epoch = epoch;
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_WELCOME;
    env.driver_welcome = &welcome;
    return fake_broker_send (f, &env);
}

static bool
s_send_passive (fake_broker_t *f, const char *active)
{
    Keel__Passive passive = KEEL__PASSIVE__INIT;
    passive.active = (char *) active;
    passive.reason = "passive member of the pair";
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.has_epoch = true;
    env.epoch = 1;
    env.body_case = KEEL__ENVELOPE__BODY_PASSIVE;
    env.passive = &passive;
    return fake_broker_send (f, &env);
}

static bool
s_send_result (fake_broker_t *f, const char *service_id, uint64_t task_id, uint64_t epoch)
{
    char output[32];
    snprintf (output, sizeof output, "%llu", (unsigned long long) (2 * task_id));
    Keel__TaskResult r = KEEL__TASK_RESULT__INIT;
    Keel__TaskResult *rp[] = { &r };
    r.service_id = (char *) service_id;
    r.has_task_id = r.has_status = r.has_output = r.has_execution_id = true;
    r.task_id = task_id;
    r.status = KEEL__TASK_STATUS__STATUS_OK;
    r.output.data = (uint8_t *) output;
    r.output.len = strlen (output);
    r.execution_id = 100 + task_id;
    Keel__TaskResults msg = KEEL__TASK_RESULTS__INIT;
    msg.n_results = 1;
    msg.results = rp;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.has_epoch = true;
    env.epoch = epoch;
    env.body_case = KEEL__ENVELOPE__BODY_TASK_RESULTS;
    env.task_results = &msg;
    return fake_broker_send (f, &env);
}

Test (driver_pair, passive_sends_the_driver_to_the_other_broker_at_once_without_resubmission,
      .init = harness_setup, .fini = s_teardown, .timeout = 90)
{
    fake_broker_t *a = s_a = fake_broker_new ();
    fake_broker_t *b = s_b = fake_broker_new ();
    HARNESS_ASSERT (a && b, "no fake brokers");
    const char *argv[] = { "--broker",    a->b.endpoint, "--failover",
                           b->b.endpoint, "--set",       "DSBrokerTimeout=60s",
                           "submit",      "--service",   "double",
                           "--range",     "0:5",         NULL };
    pid_t pid = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (pid > 0, "keel-driver did not start");

    // 1. A is passive: the driver goes to B at once, not after 60 s.
    keel_env_t *env = fake_broker_expect (a, KEEL__ENVELOPE__BODY_DRIVER_HELLO, 8000);
    HARNESS_ASSERT (env, "no DriverHello to A");
    keel_wire_free (&env);
    int64_t passive_at = zclock_mono ();
    HARNESS_ASSERT (s_send_passive (a, b->b.endpoint), "cannot send Passive");
    env = fake_broker_expect (b, KEEL__ENVELOPE__BODY_DRIVER_HELLO, 5000);
    HARNESS_ASSERT (env, "no DriverHello to B after A's Passive");
    keel_wire_free (&env);
    int64_t moved_ms = zclock_mono () - passive_at;
    HARNESS_ASSERT (moved_ms < 2000, "the driver took %lld ms to move", (long long) moved_ms);

    // 2. B is active: welcome naming A as its pair peer; it accepts all.
    HARNESS_ASSERT (s_send_welcome (b, a->b.endpoint, 5), "cannot welcome");
    env = fake_broker_expect (b, KEEL__ENVELOPE__BODY_SUBMIT_SERVICE, 5000);
    HARNESS_ASSERT (env, "no SubmitService to B");
    char sid[KEEL_ID_MAX + 1];
    snprintf (sid, sizeof sid, "%s", env->submit_service->service_id);
    keel_wire_free (&env);
    int got = 0;
    while (got < 5 && (env = fake_broker_expect (b, KEEL__ENVELOPE__BODY_SUBMIT_TASKS, 5000))) {
        got += (int) env->submit_tasks->n_tasks;
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (got == 5, "the driver submitted %d tasks to B", got);
    uint64_t ids[] = { 0, 1, 2, 3, 4 };
    Keel__Accepted accepted = KEEL__ACCEPTED__INIT;
    accepted.service_id = sid;
    accepted.n_task_ids = 5;
    accepted.task_ids = ids;
    keel_env_t acc;
    keel_env_init (&acc, KEEL__SENDER_KIND__SENDER_BROKER);
    acc.has_epoch = true;
    acc.epoch = 5;
    acc.body_case = KEEL__ENVELOPE__BODY_ACCEPTED;
    acc.accepted = &accepted;
    HARNESS_ASSERT (fake_broker_send (b, &acc), "cannot send Accepted");
    s_send_result (b, sid, 0, 5);
    env = fake_broker_expect (b, KEEL__ENVELOPE__BODY_RESULT_ACK, 5000);
    HARNESS_ASSERT (env, "result 0 not acknowledged");
    keel_wire_free (&env);

    // 3. B demotes itself (A took over): the driver goes back to A at once.
    HARNESS_ASSERT (s_send_passive (b, a->b.endpoint), "cannot send Passive");
    env = fake_broker_expect (a, KEEL__ENVELOPE__BODY_DRIVER_HELLO, 5000);
    HARNESS_ASSERT (env, "no DriverHello to A after B's Passive");
    keel_wire_free (&env);
    HARNESS_ASSERT (s_send_welcome (a, b->b.endpoint, 6), "cannot welcome");

    // 4. A mirrors what B accepted: the service again (idempotent), no task.
    int tasks = 0;
    int64_t quiet_until = zclock_mono () + 2000;
    while (zclock_mono () < quiet_until) {
        env = fake_broker_recv (a, 100);
        if (env && env->body_case == KEEL__ENVELOPE__BODY_SUBMIT_TASKS)
            tasks += (int) env->submit_tasks->n_tasks;
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (tasks == 0, "the driver resubmitted %d accepted tasks to the pair peer", tasks);

    // 5. A result from A under an epoch below the pair's highest (6) comes
    //    from a deposed broker: dropped, not acknowledged. The others end
    //    the run.
    s_send_result (a, sid, 1, 4);
    for (uint64_t t = 2; t < 5; t++)
        s_send_result (a, sid, t, 6);
    int acked = 0;
    bool acked_stale = false;
    int64_t until = zclock_mono () + 2000;
    while (zclock_mono () < until) {
        env = fake_broker_recv (a, 100);
        if (env && env->body_case == KEEL__ENVELOPE__BODY_RESULT_ACK)
            for (size_t i = 0; i < env->result_ack->n_task_ids; i++) {
                acked++;
                acked_stale = acked_stale || env->result_ack->task_ids[i] == 1;
            }
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (acked == 3 && !acked_stale, "acknowledged %d results%s", acked,
                    acked_stale ? ", the stale one among them" : "");
    s_send_result (a, sid, 1, 6);
    int code = -1;
    bool exited = false;
    int64_t deadline = zclock_mono () + 10000;
    while (!(exited = harness_wait_exit (pid, 0, &code)) && zclock_mono () < deadline) {
        env = fake_broker_recv (a, 50);
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (exited && code == 0, "keel-driver exited %d", exited ? code : -1);
    char path[512];
    char *out = harness_read_file (harness_path (path, sizeof path, "driver.out"));
    HARNESS_ASSERT (out, "no driver.out");
    int lines = 0;
    for (char *p = out; (p = strchr (p, '\n')); p++)
        lines++;
    free (out);
    HARNESS_ASSERT (lines == 5, "the driver printed %d results", lines);
}
