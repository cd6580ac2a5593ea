/*  test_engine_reconcile.c — an engine that does not run what it was
    assigned (the Assign was lost on the way, or inside the engine) but
    stays alive and keeps heartbeating. Its heartbeats list the executions
    it holds (Heartbeat.running, docs/protocol.md); the broker requeues an
    execution they keep leaving out, so the task runs on a real engine and
    the driver gets its result once. Without that the task would stay
    "running" there for as long as that engine lives.

    The lossy engine is the test itself: a DEALER that logs in, takes every
    Assign and drops it, and sends a Heartbeat listing nothing every H.
*/
#include <string.h>

#include "harness.h"
#include "wire.h"

#define S_HEARTBEAT_MS 200

typedef struct {
    zsock_t *sock;
    int assigns; // Assign messages received (each dropped)
    bool logged_in;
    int64_t next_heartbeat;
    pid_t driver; // for s_pump_until_driver_exits
} s_fake_t;

static void
s_fake_send (s_fake_t *f, keel_env_t *env)
{
    zframe_t *frame = keel_wire_encode (env);
    cr_assert_not_null (frame);
    cr_assert_eq (zframe_send (&frame, f->sock, 0), 0);
}

static void
s_fake_login (s_fake_t *f)
{
    keel_env_t env;
    Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
    static char *types[] = { "double" };
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    login.engine_id = "lossy-engine";
    login.session = "lossy-session-1";
    login.host = "test";
    login.has_slots = true;
    login.slots = 1;
    login.n_service_types = 1;
    login.service_types = types;
    env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
    env.engine_login = &login;
    s_fake_send (f, &env);
}

// Reads what the broker sent for up to 20 ms, counting and dropping
// Assigns, and sends the heartbeat when it is due: it lists nothing.
static void
s_fake_pump (s_fake_t *f)
{
    zpoller_t *poller = zpoller_new (f->sock, NULL);
    int64_t until = zclock_mono () + 20;
    while (zclock_mono () < until) {
        if (zpoller_wait (poller, 5) != f->sock)
            continue;
        zframe_t *frame = zframe_recv (f->sock);
        if (!frame)
            break;
        keel_error_t err;
        keel_env_t *env = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
        zframe_destroy (&frame);
        if (!env)
            continue;
        if (env->body_case == KEEL__ENVELOPE__BODY_LOGIN_REPLY && env->login_reply->ok)
            f->logged_in = true;
        else if (env->body_case == KEEL__ENVELOPE__BODY_ASSIGN)
            f->assigns++;
        else if (env->body_case == KEEL__ENVELOPE__BODY_ASSIGN_BATCH)
            f->assigns += (int) env->assign_batch->n_assigns;
        keel_wire_free (&env);
    }
    zpoller_destroy (&poller);
    if (f->logged_in && zclock_mono () >= f->next_heartbeat) {
        keel_env_t env;
        Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
        env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        s_fake_send (f, &env);
        f->next_heartbeat = zclock_mono () + S_HEARTBEAT_MS;
    }
}

static zsock_t *s_sock; // the lossy engine's socket, closed in s_teardown

static void
s_teardown (void)
{
    zsock_destroy (&s_sock);
    harness_teardown ();
}

static bool
s_pump_until_logged_in (void *arg)
{
    s_fake_t *f = arg;
    s_fake_pump (f);
    return f->logged_in;
}

static bool
s_pump_until_assigned (void *arg)
{
    s_fake_t *f = arg;
    s_fake_pump (f);
    return f->assigns > 0;
}

static bool
s_pump_until_driver_exits (void *arg)
{
    s_fake_t *f = arg;
    s_fake_pump (f);
    return !harness_alive (f->driver);
}

Test (engine_reconcile, a_task_an_engine_does_not_run_is_requeued_from_its_heartbeats,
      .init = harness_setup, .fini = s_teardown, .timeout = 120)
{
    // H = 500 ms: the broker declares the lossy engine lost only after
    // 1.5 s without a message from it, however busy the machine; it
    // heartbeats every 200 ms.
    const char *sets[] = { "HeartbeatInterval=500ms", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");

    s_fake_t fake = { 0 };
    fake.sock = s_sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (fake.sock);
    zsock_set_linger (fake.sock, 0);
    cr_assert_eq (zsock_connect (fake.sock, "%s", broker.endpoint), 0);
    s_fake_login (&fake);
    HARNESS_ASSERT (harness_poll_until (s_pump_until_logged_in, &fake, 10000),
                    "the lossy engine was not logged in within 10 s");

    // The only engine is the lossy one: the task goes there and is dropped.
    const char *argv[] = { "--broker", broker.endpoint, "submit", "--service", "double", "--input",
                           "21",       "--count",       "1",      NULL };
    fake.driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (fake.driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (harness_poll_until (s_pump_until_assigned, &fake, 15000),
                    "the task was not assigned to the lossy engine within 15 s");

    // A real engine joins; the lossy one stays online, heartbeating.
    HARNESS_ASSERT (harness_engine_start (&broker, "engine", 1, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_poll_until (s_pump_until_driver_exits, &fake, 30000),
                    "the driver never got its result: the task stayed on the engine that "
                    "dropped it (%d assignments dropped)",
                    fake.assigns);
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (fake.driver, 1000, &code), "keel-driver not reaped");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);

    char path[512];
    char *out = harness_read_file (harness_path (path, sizeof path, "driver.out"));
    cr_assert_not_null (out);
    long long task = -1;
    char output[32] = "";
    cr_assert (harness_json_int (out, "task", &task) && task == 0, "%s", out);
    cr_assert (harness_json_get (out, "output", output, sizeof output)
                   && strcmp (output, "42") == 0,
               "%s", out);
    cr_assert (strchr (out, '\n') == out + strlen (out) - 1, "more than one result: %s", out);
    free (out);

    long long missing = -1;
    harness_status_int (&broker, "counters.executions_missing", &missing);
    cr_expect_geq (missing, 1, "executions_missing is %lld", missing);
    cr_expect (harness_wait_log ("broker.err", "no longer runs execution", 1, 0),
               "the broker did not say why it requeued the task");
}

// The other side: real engines holding tasks beyond their slots
// (EnginePrefetch; PrefetchWindow=0: whatever their length) list them in
// their heartbeats while they wait, so the
// broker requeues nothing. 1-slot engines, 4 prefetched each, 500 ms tasks:
// a queued task waits up to 2 s (> 2*H) while heartbeats go out every H.
Test (engine_reconcile, prefetched_tasks_are_not_taken_for_lost, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    const char *sets[] = { "HeartbeatInterval=200ms", "EnginePrefetch=4", "PrefetchWindow=0",
                           NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 1, NULL) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine2", 1, NULL) > 0,
                    "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "engines not online within 15 s");
    const char *argv[] = { "--broker", broker.endpoint, "submit",  "--service", "sleep",
                           "--input",  "500",           "--count", "20",        NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "keel-driver did not finish in 60 s");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    char path[512];
    HARNESS_ASSERT (harness_count_lines (harness_path (path, sizeof path, "driver.out")) == 20,
                    "expected 20 results");

    long long missing = -1, dispatched = -1;
    harness_status_int (&broker, "counters.executions_missing", &missing);
    harness_status_int (&broker, "counters.tasks_dispatched", &dispatched);
    cr_expect_eq (missing, 0, "%lld prefetched executions were taken for lost", missing);
    cr_expect_eq (dispatched, 20, "%lld dispatches for 20 tasks", dispatched);
    cr_expect (harness_wait_log ("engine1.err", "task started", 1, 0)
                   && harness_wait_log ("engine2.err", "task started", 1, 0),
               "both engines should have run tasks");
}
