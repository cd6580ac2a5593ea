/*  test_driver_delivered.c — keel-driver tells a broker it comes back to
    which results it already holds (issue 10 item 11; protocol.md,
    "Results the driver holds"): in its DriverHello, and right after the
    welcome in ResultAck.delivered, before it resends anything. Against a
    scripted broker (fake_broker.h), so the test reads exactly what the
    driver sends. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fake_broker.h"
#include "harness.h"
#include "ranges.h"

static fake_broker_t *s_fake;

static void
s_teardown (void)
{
    fake_broker_destroy (&s_fake);
    harness_teardown ();
}

static bool
s_send_welcome (fake_broker_t *f)
{
    Keel__DriverWelcome welcome = KEEL__DRIVER_WELCOME__INIT;
    welcome.broker_name = "fake-broker";
    welcome.has_epoch = welcome.has_heartbeat_ms = true;
    welcome.epoch = 1;
    welcome.heartbeat_ms = 1000;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_WELCOME;
    env.driver_welcome = &welcome;
    return fake_broker_send (f, &env);
}

static bool
s_send_result (fake_broker_t *f, const char *service_id, uint64_t task_id, const char *output)
{
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
    env.body_case = KEEL__ENVELOPE__BODY_TASK_RESULTS;
    env.task_results = &msg;
    return fake_broker_send (f, &env);
}

// The ranges of list v[0..n) as "lo-hi," (hi exclusive).
static void
s_ranges_text (const uint64_t *v, size_t n, char *text, size_t size)
{
    text[0] = 0;
    size_t at;
    if (keel_ranges_problem (v, n, &at)) {
        snprintf (text, size, "malformed");
        return;
    }
    keel_ranges_reader_t r;
    keel_ranges_reader_init (&r, v, n);
    uint64_t lo, hi;
    size_t len = 0;
    while (keel_ranges_reader_next (&r, &lo, &hi) && len < size)
        len += (size_t) snprintf (text + len, size - len, "%" PRIu64 "-%" PRIu64 ",", lo, hi);
}

Test (driver_delivered, tells_the_broker_it_returns_to_which_results_it_holds,
      .init = harness_setup, .fini = s_teardown, .timeout = 60)
{
    fake_broker_t *f = s_fake = fake_broker_new ();
    HARNESS_ASSERT (f, "no fake broker");
    const char *argv[] = { "--broker", f->b.endpoint, "--set",  "DSBrokerTimeout=20s",
                           "submit",   "--service",   "double", "--range",
                           "0:5",      NULL };
    pid_t pid = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (pid > 0, "keel-driver did not start");

    // 1. Hello, welcome; the service and its five tasks come; all accepted.
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_DRIVER_HELLO, 8000);
    HARNESS_ASSERT (env, "no DriverHello");
    HARNESS_ASSERT (env->driver_hello->n_delivered == 0, "a new driver says it holds results");
    keel_wire_free (&env);
    HARNESS_ASSERT (s_send_welcome (f), "cannot send the welcome");
    env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_SUBMIT_SERVICE, 5000);
    HARNESS_ASSERT (env, "no SubmitService");
    char sid[KEEL_ID_MAX + 1];
    snprintf (sid, sizeof sid, "%s", env->submit_service->service_id);
    keel_wire_free (&env);
    int got = 0;
    while (got < 5 && (env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_SUBMIT_TASKS, 5000))) {
        got += (int) env->submit_tasks->n_tasks;
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (got == 5, "the driver submitted %d tasks", got);
    uint64_t ids[] = { 0, 1, 2, 3, 4 };
    Keel__Accepted accepted = KEEL__ACCEPTED__INIT;
    accepted.service_id = sid;
    accepted.n_task_ids = 5;
    accepted.task_ids = ids;
    keel_env_t acc;
    keel_env_init (&acc, KEEL__SENDER_KIND__SENDER_BROKER);
    acc.body_case = KEEL__ENVELOPE__BODY_ACCEPTED;
    acc.accepted = &accepted;
    HARNESS_ASSERT (fake_broker_send (f, &acc), "cannot send Accepted");

    // 2. Results of tasks 0, 1 and 3 arrive (from "another broker", as far
    //    as the driver can tell); it acknowledges them.
    s_send_result (f, sid, 0, "0");
    s_send_result (f, sid, 1, "2");
    s_send_result (f, sid, 3, "6");
    int acked = 0;
    while (acked < 3 && (env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_RESULT_ACK, 5000))) {
        acked += (int) env->result_ack->n_task_ids;
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (acked == 3, "the driver acknowledged %d results", acked);

    // 3. Relogin: its hello lists what it holds, tasks 2 and 4 in flight.
    Keel__Relogin relogin = KEEL__RELOGIN__INIT;
    relogin.reason = "restarted";
    keel_env_t rl;
    keel_env_init (&rl, KEEL__SENDER_KIND__SENDER_BROKER);
    rl.body_case = KEEL__ENVELOPE__BODY_RELOGIN;
    rl.relogin = &relogin;
    HARNESS_ASSERT (fake_broker_send (f, &rl), "cannot send Relogin");
    env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_DRIVER_HELLO, 5000);
    HARNESS_ASSERT (env, "no DriverHello after Relogin");
    char text[200];
    HARNESS_ASSERT (env->driver_hello->n_delivered == 1, "hello lists %zu services' results",
                    env->driver_hello->n_delivered);
    const Keel__DeliveredTasks *d = env->driver_hello->delivered[0];
    HARNESS_ASSERT (streq (d->service_id, sid), "results listed for service %s", d->service_id);
    s_ranges_text (d->ranges, d->n_ranges, text, sizeof text);
    HARNESS_ASSERT (streq (text, "0-2,3-4,"), "hello says the driver holds %s", text);
    keel_wire_free (&env);

    // 4. The welcome: the first thing it sends is the same set, complete,
    //    in a ResultAck, before any (re)submission.
    HARNESS_ASSERT (s_send_welcome (f), "cannot send the welcome");
    env = fake_broker_recv (f, 5000);
    while (env && env->body_case == KEEL__ENVELOPE__BODY_HEARTBEAT) {
        keel_wire_free (&env);
        env = fake_broker_recv (f, 5000);
    }
    HARNESS_ASSERT (env && env->body_case == KEEL__ENVELOPE__BODY_RESULT_ACK,
                    "after the welcome the driver first sent %s",
                    env ? keel_wire_body_name (env) : "nothing");
    HARNESS_ASSERT (streq (env->result_ack->service_id, sid) && env->result_ack->n_task_ids == 0,
                    "not a ResultAck of ranges for the service");
    s_ranges_text (env->result_ack->delivered, env->result_ack->n_delivered, text, sizeof text);
    HARNESS_ASSERT (streq (text, "0-2,3-4,"), "ResultAck.delivered says %s", text);
    keel_wire_free (&env);

    // 5. The last results: it prints five and exits 0.
    s_send_result (f, sid, 2, "4");
    s_send_result (f, sid, 4, "8");
    int code = -1;
    bool exited = false;
    int64_t deadline = zclock_mono () + 10000;
    while (!(exited = harness_wait_exit (pid, 0, &code)) && zclock_mono () < deadline) {
        env = fake_broker_recv (f, 50);
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
