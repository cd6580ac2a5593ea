/*  test_broker_observe.c — what the broker tells its operator is true:
    its log and counters after a healthy run, its events table after a grid
    went through the life of services and engines, and its log under a
    flood of peer messages with absurd values.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "harness.h"
#include "keel.pb-c.h"

// ---------------------------------------------------------------- helpers

typedef struct {
    const harness_broker_t *broker;
    const char *path;
    long long want;
    long long seen;
} s_counter_wait_t;

static bool
s_counter_reached (void *arg)
{
    s_counter_wait_t *w = arg;
    return harness_status_int (w->broker, w->path, &w->seen) && w->seen >= w->want;
}

// Runs keel-driver submit --service TYPE --range RANGE against the broker
// with extra arguments (NULL-terminated, up to 8); returns the exit code.
static int
s_submit (const harness_broker_t *b, harness_result_t *res, const char *type, const char *range,
          const char *const extra[])
{
    const char *argv[24] = { "--broker", b->endpoint };
    int n = 2;
    for (int i = 0; extra && extra[i] && n < 14; i++)
        argv[n++] = extra[i];
    argv[n++] = "submit";
    argv[n++] = "--service";
    argv[n++] = type;
    argv[n++] = "--range";
    argv[n++] = range;
    argv[n] = NULL;
    return harness_run (res, 60000, "keel-driver", argv);
}

// Counts the lines of <dir>/<name> that contain text.
static long
s_log_lines_with (const char *name, const char *text)
{
    char path[512];
    char *log = harness_read_file (harness_path (path, sizeof path, name));
    long n = 0;
    for (char *line = log, *next; line && *line; line = next) {
        next = strchr (line, '\n');
        if (next)
            *next++ = '\0';
        else
            next = line + strlen (line);
        n += strstr (line, text) != NULL;
    }
    free (log);
    return n;
}

// ---------------------------------------------------------------- a healthy run

Test (observe, a_driver_that_finished_is_not_reported_silent_and_no_send_fails,
      .init = harness_setup, .fini = harness_teardown, .timeout = 90)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, NULL) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine2", 2, NULL) > 0,
                    "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 2, 15000), "2 engines not online within 15 s");

    harness_result_t res;
    HARNESS_ASSERT (s_submit (&broker, &res, "double", "0:1000", NULL) == 0,
                    "keel-driver exited %d; stderr:\n%s", res.code, res.err);
    harness_result_free (&res);

    // The driver closed its service, every result is acknowledged, and it
    // left: the broker says so (after 3 heartbeat intervals of silence), and
    // the heartbeats it sent meanwhile do not count as failures.
    HARNESS_ASSERT (harness_wait_log ("broker.err", "driver left", 1, 8000),
                    "the broker did not log that the finished driver left");
    cr_assert_eq (s_log_lines_with ("broker.err", "driver silent"), 0,
                  "a driver that finished is reported silent with results waiting");
    s_counter_wait_t w = { &broker, "counters.results_delivered", 1000, 0 };
    HARNESS_ASSERT (harness_poll_until (s_counter_reached, &w, 5000),
                    "results_delivered is %lld, expected 1000", w.seen);
    long long failures = -1, departed = -1;
    HARNESS_ASSERT (
        harness_status_int (&broker, "counters.send_failures", &failures)
            && harness_status_int (&broker, "counters.sends_to_departed_peers", &departed),
        "status lacks send_failures or sends_to_departed_peers");
    cr_assert_eq (failures, 0, "send_failures is %lld after a healthy run", failures);
    // The heartbeats to the driver that left, until its clock says it is
    // gone: about 2, more when a loaded machine stalls the broker's loop.
    cr_log_info ("sends_to_departed_peers: %lld", departed);
    cr_assert_geq (departed, 0);
}

// ---------------------------------------------------------------- events

typedef struct {
    const harness_broker_t *broker;
    const char *const *kinds;
    char missing[64];
} s_events_wait_t;

// True when `keel-admin --json events` shows an event of every kind in
// w->kinds, each with a time ("time" and a plausible "time_ms").
static bool
s_events_show (void *arg)
{
    s_events_wait_t *w = arg;
    harness_result_t res;
    bool ok = harness_admin (w->broker, &res, true, "events", NULL) == 0;
    for (int i = 0; ok && w->kinds[i]; i++) {
        char needle[80];
        snprintf (needle, sizeof needle, "\"kind\":\"%s\"", w->kinds[i]);
        const char *at = strstr (res.out, needle);
        // The event's object: from its opening brace to its closing one.
        const char *open = at;
        while (open && open > res.out && *open != '{')
            open--;
        const char *close = at ? strchr (at, '}') : NULL;
        char object[1024] = "";
        if (open && close && close - open < (long) sizeof object - 1)
            memcpy (object, open, (size_t) (close - open + 1));
        long long ms = 0;
        char when[64];
        ok = at && harness_json_int (object, "time_ms", &ms) && ms > 1600000000000LL
             && harness_json_get (object, "time", when, sizeof when) && strlen (when) >= 19;
        if (!ok)
            snprintf (w->missing, sizeof w->missing, "%s", w->kinds[i]);
    }
    harness_result_free (&res);
    return ok;
}

static void
s_assert_events (const harness_broker_t *b, const char *const kinds[], const char *where,
                 int timeout_ms)
{
    s_events_wait_t w = { b, kinds, "" };
    if (!harness_poll_until (s_events_show, &w, timeout_ms)) {
        harness_result_t res;
        harness_admin (b, &res, false, "events", NULL);
        HARNESS_ASSERT (false, "%s: no '%s' event with a time within %d s; events:\n%s", where,
                        w.missing, timeout_ms / 1000, res.out);
    }
}

static bool
s_running_at_least_2 (void *arg)
{
    long long n = 0;
    return harness_status_int (arg, "tasks.running", &n) && n >= 2;
}

Test (observe, events_record_services_engines_claims_failover_and_config_with_a_time,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    // A: the primary; B: the failover broker of the driver and the engines.
    const char *sets[] = { "HeartbeatInterval=200ms", NULL };
    harness_broker_t a, b;
    HARNESS_ASSERT (harness_broker_start (&a, "a", sets), "broker a did not start");
    HARNESS_ASSERT (harness_broker_start (&b, "b", sets), "broker b did not start");

    // A service whose type nobody offers yet: a notice. Then engines come,
    // it finishes, its driver closes it.
    const char *argv1[] = { "--broker", a.endpoint, "submit", "--service",
                            "double",   "--range",  "0:5",    NULL };
    pid_t driver1 = harness_spawn ("driver1", "keel-driver", argv1);
    HARNESS_ASSERT (driver1 > 0, "driver1 did not start");
    HARNESS_ASSERT (harness_wait_log ("driver1.err", "no engine", 1, 10000),
                    "driver1 was not told that no engine offers its service type");
    char brokers[200];
    snprintf (brokers, sizeof brokers, "Brokers=%s,%s", a.endpoint, b.endpoint);
    // LogLevel=info: engine1 says when it starts a task (waited for below).
    const char *esets[] = { brokers, "LogLevel=info", NULL };
    pid_t engine1 = harness_engine_start (&a, "engine1", 2, esets);
    pid_t engine2 = harness_engine_start (&a, "engine2", 1, esets);
    HARNESS_ASSERT (engine1 > 0 && engine2 > 0, "engines did not start");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver1, 30000, &code) && code == 0,
                    "driver1 did not finish (exit %d)", code);

    // Configuration changes name who made them; a purge follows retention 0.
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&a, &res, false, "config", "set", "RetentionHours", "0", NULL)
                        == 0,
                    "config set failed: %s", res.err);
    harness_result_free (&res);
    s_counter_wait_t acked = { &a, "counters.results_delivered", 5, 0 };
    HARNESS_ASSERT (harness_poll_until (s_counter_reached, &acked, 5000),
                    "results not acknowledged");
    HARNESS_ASSERT (harness_admin (&a, &res, false, "maintenance", NULL) == 0,
                    "maintenance failed: %s", res.err);
    harness_result_free (&res);

    // kill -9 of an engine: engine lost.
    HARNESS_ASSERT (harness_kill9 (engine2), "engine2 did not die");
    const char *kinds_a[] = { "broker-started", "engine-login",   "notice",
                              "service-opened", "service-closed", "config",
                              "service-purged", "engine-lost",    NULL };
    s_assert_events (&a, kinds_a, "broker a", 10000);
    HARNESS_ASSERT (harness_admin (&a, &res, true, "events", NULL) == 0, "events failed");
    cr_assert (
        strstr (res.out, "RetentionHours=0 was=24 by=admin=") && strstr (res.out, "from=127.0.0.1"),
        "the config event does not say what changed and who changed it from where:\n%s", res.out);
    harness_result_free (&res);

    // A dies while engine1 runs a driver's tasks: the engine carries them to
    // B (claims held there), the driver follows (failover) and resubmits.
    const char *dsets[] = { "--failover", b.endpoint, "--set", "DSBrokerTimeout=1s", NULL };
    const char *argv2[] = { "--broker", a.endpoint, dsets[0],    dsets[1], dsets[2],
                            dsets[3],   "submit",   "--service", "sleep",  "--input",
                            "3000",     "--count",  "2",         NULL };
    pid_t driver2 = harness_spawn ("driver2", "keel-driver", argv2);
    HARNESS_ASSERT (driver2 > 0, "driver2 did not start");
    HARNESS_ASSERT (harness_poll_until (s_running_at_least_2, &a, 10000),
                    "driver2's tasks are not running on a");
    // Running in a's model is not yet running on the engine: the
    // assignments may still be in a's send queue, which the kill would drop
    // (then there is nothing to claim). Wait for engine1's own word.
    HARNESS_ASSERT (harness_wait_log ("engine1.err", "type=sleep", 2, 10000),
                    "engine1 did not start driver2's 2 tasks");
    HARNESS_ASSERT (harness_kill9 (a.pid), "broker a did not die");
    const char *kinds_b[] = { "broker-started", "engine-login", "claims", "failover", NULL };
    // The engine reaches b after its reconnect backoff (up to ~8 s).
    s_assert_events (&b, kinds_b, "broker b", 30000);
    HARNESS_ASSERT (harness_admin (&b, &res, true, "events", NULL) == 0, "events failed");
    // Held when the engine reached b first, kept when the driver did.
    cr_assert (strstr (res.out, "kept=0 dropped=0 held=2")
                   || strstr (res.out, "kept=2 dropped=0 held=0"),
               "b's claims event does not count engine1's 2 claims in one row:\n%s", res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_wait_exit (driver2, 30000, &code) && code == 0,
                    "driver2 did not finish on b (exit %d)", code);
    (void) engine1;
}

// ---------------------------------------------------------------- log flood

#define S_ABSURD_HELLOS 1000

// A valid DriverHello from driver `id` whose DSBrokerTimeout is absurd
// (about 1.8e16 s): the broker warns about it, at most a few times.
static size_t
s_absurd_hello (uint8_t *buf, size_t size, const char *id)
{
    Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
    hello.driver_id = (char *) id;
    hello.has_broker_timeout_ms = true;
    hello.broker_timeout_ms = 18446744073709551000ull;
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    env.has_version = true;
    env.version = 1;
    env.has_sender = true;
    env.sender = KEEL__SENDER_KIND__SENDER_DRIVER;
    env.has_seq = true;
    env.seq = 1;
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
    env.driver_hello = &hello;
    size_t len = keel__envelope__get_packed_size (&env);
    cr_assert_leq (len, size);
    return keel__envelope__pack (&env, buf);
}

Test (observe,
      a_thousand_absurd_hellos_log_a_bounded_number_of_lines_and_say_how_many_were_suppressed,
      .init = harness_setup, .fini = harness_teardown, .timeout = 90)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");

    // Plain libzmq: a foreign client, not a Keel program.
    void *ctx = zmq_ctx_new ();
    cr_assert_not_null (ctx);
    void *dealer = zmq_socket (ctx, ZMQ_DEALER);
    cr_assert_not_null (dealer);
    int linger = 2000, sndtimeo = 10000;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (dealer, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    cr_assert_eq (zmq_connect (dealer, broker.endpoint), 0);
    uint8_t frame[256];
    for (int i = 0; i < S_ABSURD_HELLOS; i++) {
        char id[64];
        snprintf (id, sizeof id, "absurd-driver-%d", i);
        size_t len = s_absurd_hello (frame, sizeof frame, id);
        cr_assert_eq (zmq_send (dealer, frame, len, 0), (int) len, "send failed: %s",
                      zmq_strerror (zmq_errno ()));
    }

    // Once the limiter's window is over, the broker says how many lines it
    // did not write.
    HARNESS_ASSERT (harness_wait_log ("broker.err", "peer value lines suppressed", 1, 20000),
                    "no 'N peer value lines suppressed' line within 20 s of the flood");
    HARNESS_ASSERT (harness_wait_log ("broker.err", "driver lines suppressed", 1, 5000),
                    "no 'N driver lines suppressed' line after a flood of driver hellos");
    zmq_close (dealer);
    zmq_ctx_term (ctx);
    long warnings = s_log_lines_with ("broker.err", "DSBrokerTimeout");
    long connected = s_log_lines_with ("broker.err", "driver connected");
    char path[512];
    long total = harness_count_lines (harness_path (path, sizeof path, "broker.err"));
    cr_log_info ("broker log: %ld lines, %ld DSBrokerTimeout warnings, %ld driver lines", total,
                 warnings, connected);
    cr_assert (warnings >= 1 && warnings <= 15, "%ld DSBrokerTimeout warnings for %d hellos",
               warnings, S_ABSURD_HELLOS);
    cr_assert (connected >= 1 && connected <= 60, "%ld 'driver connected' lines for %d hellos",
               connected, S_ABSURD_HELLOS);
    cr_assert_lt (total, 120, "the broker logged %ld lines for %d hellos", total, S_ABSURD_HELLOS);
    HARNESS_ASSERT (harness_alive (broker.pid), "keel-broker died");
}
