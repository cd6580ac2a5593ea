/*  test_pair.c — the resilient broker pair (DESIGN §6) with real processes
    on loopback: A (PairRole=primary) and B (backup) mirror one store; kill
    -9 of the active under load, the passive takes over with no
    resubmission; the killed broker comes back passive and resyncs; the
    passive sends clients to the active; strangers and a second primary
    are refused.
*/
#include <czmq.h>

#include "test_pair.h"
#include "wire_build.h"
#include "wire_link.h"

Test (pair, forms_with_the_primary_active_and_the_backup_a_passive_in_sync, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    char role[32];
    pt_status_str (&p.b, "pair.peer_state", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "up") == 0, "B sees its peer %s", role);
    HARNESS_ASSERT (ft_status (&p.a, "pair.links_up") == 1, "A has %lld links up",
                    ft_status (&p.a, "pair.links_up"));
    // A small batch through A while B mirrors it.
    pid_t engine = ft_engine_start (&p.a, &p.b, "engine", 2, NULL);
    HARNESS_ASSERT (engine > 0 && harness_wait_engines (&p.a, 1, 15000), "engine not on A");
    const char *submit[] = { "--service", "double", "--range", "0:200", NULL };
    pid_t driver = ft_driver_start ("driver", &p.a, &p.b, NULL, submit);
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code) && code == 0,
                    "keel-driver failed (%d)", code);
    pt_assert_each_once ("driver.out", 200);
    HARNESS_ASSERT (ft_status (&p.b, "pair.counters.updates_applied") > 0, "B applied no update");
    HARNESS_ASSERT (
        ft_wait_status (&p.b, "pair.applied_seq", ft_status (&p.a, "pair.applied_seq"), 5000),
        "B's mirror stays behind A (%lld < %lld)", ft_status (&p.b, "pair.applied_seq"),
        ft_status (&p.a, "pair.applied_seq"));
}

Test (pair, the_passive_takes_over_after_kill9_of_the_active_without_resubmission,
      .init = harness_setup, .fini = harness_teardown, .timeout = 240)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    const char *no_prefetch[] = { "LogLevel=info", NULL };
    pid_t e1 = ft_engine_start (&p.a, &p.b, "engine1", 1, no_prefetch);
    pid_t e2 = ft_engine_start (&p.a, &p.b, "engine2", 1, no_prefetch);
    HARNESS_ASSERT (e1 > 0 && e2 > 0 && harness_wait_engines (&p.a, 2, 15000),
                    "engines not online on A");
    long long epoch_a = ft_status (&p.a, "epoch");
    // 400 tasks of 20 ms on 2 slots: about 4 s of work, long enough to
    // kill A in the middle once every task is accepted (and so mirrored).
    const char *submit[] = { "--service", "sleep", "--input", "20", "--count", "400", NULL };
    // DSBrokerTimeout far above the test's patience: the driver must move
    // to the pair peer at once, not after it.
    const char *driver_sets[] = { "DSBrokerTimeout=120s", NULL };
    pid_t driver = ft_driver_start ("driver", &p.a, &p.b, driver_sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&p.a, "counters.tasks_submitted", 400, 15000),
                    "A did not get the 400 tasks");
    pt_brokers_t both = { &p.a, &p.b };
    HARNESS_ASSERT (harness_poll_until (pt_mirror_caught_up, &both, 10000),
                    "B's mirror did not catch up with A");
    pt_lines_wait_t some = { "driver.out", 20 };
    HARNESS_ASSERT (harness_poll_until (pt_lines_at_least, &some, 30000), "no results from A");
    long before = pt_lines ("driver.out");
    HARNESS_ASSERT (before < 300, "the batch was nearly done before the kill (%ld)", before);
    HARNESS_ASSERT (harness_kill9 (p.a.pid), "broker A did not die");
    cr_log_info ("killed A with %ld of 400 results in", before);

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 90000, &code), "keel-driver did not finish on B");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    pt_assert_each_once ("driver.out", 400);
    char role[32];
    pt_status_str (&p.b, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "active") == 0, "B is %s", role);
    HARNESS_ASSERT (ft_status (&p.b, "epoch") > epoch_a, "B's epoch %lld is not above A's %lld",
                    ft_status (&p.b, "epoch"), epoch_a);
    HARNESS_ASSERT (ft_status (&p.b, "pair.counters.takeovers") == 1, "B took over %lld times",
                    ft_status (&p.b, "pair.counters.takeovers"));
    HARNESS_ASSERT (ft_status (&p.b, "counters.tasks_resubmitted") == 0,
                    "the driver resubmitted %lld tasks to B",
                    ft_status (&p.b, "counters.tasks_resubmitted"));
    HARNESS_ASSERT (ft_status (&p.b, "counters.tasks_submitted") == 0,
                    "B was sent %lld tasks as new", ft_status (&p.b, "counters.tasks_submitted"));
    // The tasks the engines were running at the kill were claimed, not run again.
    HARNESS_ASSERT (ft_status (&p.b, "counters.claims_kept") >= 1, "B kept no claim");
    int started =
        ft_log_count ("engine1.err", "task started") + ft_log_count ("engine2.err", "task started");
    HARNESS_ASSERT (started == 400, "the engines started %d executions for 400 tasks", started);

    // Told: the driver by a Notice, the operator by NotifyCommand.
    HARNESS_ASSERT (ft_log_has ("driver.err", "failover broker brokerB active"),
                    "the driver got no notice of the takeover");
    HARNESS_ASSERT (ft_wait_log ("notify.log", "took_over brokerB", 5000)
                        && ft_log_has ("notify.log", "peer_lost brokerB"),
                    "NotifyCommand did not run for B's events");
    // A comes back on its old store: passive, in sync with B, no failback.
    HARNESS_ASSERT (ft_broker_spawn (&p.a, p.argv_a), "broker A did not restart");
    HARNESS_ASSERT (pt_wait_field (&p.a, "role", "passive", 15000), "A did not come back passive");
    HARNESS_ASSERT (pt_wait_field (&p.a, "pair.synced", "true", 20000), "A never got in sync");
    pt_status_str (&p.b, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "active") == 0, "B is %s after A came back", role);
}

Test (pair, the_passive_sends_clients_to_the_active, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    // Configured with B first: B answers Passive, the driver goes to A.
    pid_t engine = ft_engine_start (&p.b, &p.a, "engine", 2, NULL);
    HARNESS_ASSERT (engine > 0 && harness_wait_engines (&p.a, 1, 15000),
                    "the engine did not reach A through B");
    const char *submit[] = { "--service", "double", "--range", "0:50", NULL };
    const char *driver_sets[] = { "DSBrokerTimeout=120s", NULL };
    pid_t driver = ft_driver_start ("driver", &p.b, &p.a, driver_sets, submit);
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 30000, &code) && code == 0,
                    "keel-driver did not finish through A (%d)", code);
    pt_assert_each_once ("driver.out", 50);
    char role[32];
    pt_status_str (&p.b, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "passive") == 0, "B is %s: a client made it take over", role);
    HARNESS_ASSERT (ft_status (&p.b, "pair.counters.clients_refused") >= 1, "B refused no client");
}

Test (pair, a_stranger_and_a_second_primary_are_refused, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    // C claims to be A's peer but is not B (its PairEndpoint is not A's PairPeer).
    harness_broker_t c;
    HARNESS_ASSERT (ft_broker_plan (&c, "brokerC"), "no ports");
    int pair_c = harness_free_port ();
    char sets[5][160];
    snprintf (sets[0], 160, "PairRole=backup");
    snprintf (sets[1], 160, "PairEndpoint=tcp://127.0.0.1:%d", pair_c);
    snprintf (sets[2], 160, "PairPeer=tcp://127.0.0.1:%d", p.pair_a);
    snprintf (sets[3], 160, "HeartbeatInterval=250ms");
    const char *argv_c[] = { sets[0], sets[1], sets[2], sets[3], NULL };
    HARNESS_ASSERT (ft_broker_spawn (&c, argv_c), "broker C did not start");
    HARNESS_ASSERT (ft_wait_status (&p.a, "pair.counters.strangers", 1, 10000),
                    "A counted no stranger");
    char role[32];
    pt_status_str (&p.a, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "active") == 0, "A is %s", role);
    pt_status_str (&c, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "active") != 0, "the stranger became active");
    harness_stop (c.pid, 5000);

    // Two primaries: D is primary with B's links while B is stopped.
    harness_stop (p.b.pid, 5000);
    harness_broker_t d;
    HARNESS_ASSERT (ft_broker_plan (&d, "brokerD"), "no ports");
    pt_sets (&p, p.sets_b, p.argv_b, "primary", p.pair_b, p.pair_a);
    HARNESS_ASSERT (ft_broker_spawn (&d, p.argv_b), "broker D did not start");
    HARNESS_ASSERT (ft_wait_status (&d, "pair.counters.misconfigured", 1, 10000),
                    "D did not notice the other primary");
    // A client turns to D: it must not serve while the other primary lives.
    const char *submit[] = { "--service", "double", "--range", "0:5", NULL };
    const char *driver_sets[] = { "DSBrokerTimeout=2s", NULL };
    pid_t driver = ft_driver_start ("driver", &d, NULL, driver_sets, submit);
    HARNESS_ASSERT (ft_wait_status (&d, "pair.counters.clients_refused", 1, 10000),
                    "D did not refuse the driver");
    pt_status_str (&d, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "active") != 0, "the second primary became active");
    harness_signal (driver, SIGKILL);
}

// A PairPeer that never answers (nothing listens there): a warning naming
// the peer after PairTimeout, counted, and the peer shown lost.
Test (pair, a_peer_never_heard_at_start_is_warned_about_and_counted, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    pt_pair_t p;
    pt_plan (&p); // B is never started: A's PairPeer stays silent
    HARNESS_ASSERT (ft_broker_spawn (&p.a, p.argv_a), "broker A did not start");
    HARNESS_ASSERT (ft_wait_status (&p.a, "pair.counters.peer_unheard", 1, 10000),
                    "A did not count its silent peer");
    HARNESS_ASSERT (harness_wait_log ("brokerA.err", "not heard on any of 1 link(s)", 1, 5000),
                    "A did not warn about its silent peer");
    char role[32];
    pt_status_str (&p.a, "pair.peer_state", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "lost") == 0, "peer_state is %s", role);
}

// keel-admin with a longer patience than harness_admin (a handover or two).
static int
s_admin_long (const harness_broker_t *b, harness_result_t *res, const char *a1, const char *a2)
{
    const char *argv[] = { "-e", b->admin_endpoint, "--timeout", "10s", a1, a2, NULL };
    return harness_run (res, 90000, "keel-admin", argv);
}

Test (pair, takeover_hands_over_under_load_with_nothing_lost_or_doubled, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    pid_t driver = pt_load (&p);
    long long epoch_a = ft_status (&p.a, "epoch");
    harness_result_t res;
    int code = s_admin_long (&p.b, &res, "takeover", NULL);
    HARNESS_ASSERT (code == 0, "keel-admin takeover on B exited %d: %s", code, res.err);
    harness_result_free (&res);
    char role[32];
    pt_status_str (&p.b, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "active") == 0, "B is %s after takeover", role);
    HARNESS_ASSERT (ft_status (&p.b, "epoch") > epoch_a, "B's epoch is not above A's");
    HARNESS_ASSERT (pt_wait_field (&p.a, "role", "passive", 5000), "A did not become passive");
    pt_finish (driver);
    HARNESS_ASSERT (pt_wait_field (&p.a, "pair.synced", "true", 20000), "A never got in sync");
    // On the active, takeover is refused with a reason.
    code = s_admin_long (&p.b, &res, "takeover", NULL);
    HARNESS_ASSERT (code == 1 && strstr (res.err, "already the active"),
                    "takeover on the active: exit %d, '%s'", code, res.err);
    harness_result_free (&res);
}

Test (pair, maintenance_pair_runs_on_both_and_hands_back_while_a_batch_flows, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    pid_t driver = pt_load (&p);
    harness_result_t res;
    int code = s_admin_long (&p.a, &res, "maintenance", "--pair");
    HARNESS_ASSERT (code == 0, "keel-admin maintenance --pair exited %d: %s / %s", code, res.out,
                    res.err);
    HARNESS_ASSERT (strstr (res.out, "maintenance done on both brokers"), "output: %s", res.out);
    harness_result_free (&res);
    pt_finish (driver);
    char role[32];
    pt_status_str (&p.a, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "active") == 0, "A is %s after maintenance --pair", role);
    HARNESS_ASSERT (pt_wait_field (&p.b, "role", "passive", 5000), "B is not passive");
    HARNESS_ASSERT (ft_status (&p.a, "pair.counters.takeovers") == 1
                        && ft_status (&p.b, "pair.counters.takeovers") == 1,
                    "expected one handover each way");
}

Test (pair, hostile_messages_on_a_pair_link_are_counted_and_change_nothing, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    zsock_t *evil = zsock_new (ZMQ_DEALER);
    HARNESS_ASSERT (evil && zsock_connect (evil, "tcp://127.0.0.1:%d", p.pair_a) == 0,
                    "cannot reach A's pair link");
    // Junk bytes; a three-frame message.
    zstr_send (evil, "not a keel message");
    zstr_sendm (evil, "a");
    zstr_sendm (evil, "b");
    zstr_send (evil, "c");
    // An update, a snapshot chunk and a handover from a connection that never
    // sent the peer's heartbeat.
    keel_msg_t msg;
    uint8_t junk[16] = { 1, 2, 3 };
    keel_link_send (evil, keel_msg_pair_update (&msg, 999, 99, junk, sizeof junk), NULL);
    keel_link_send (evil, keel_msg_pair_snapshot (&msg, 7, 1, 1, 0, 16, junk, sizeof junk), NULL);
    keel_link_send (evil, keel_msg_pair_handover (&msg, 0), NULL);
    // A heartbeat claiming to be an active peer with a huge epoch, but from
    // a stranger (its endpoints are not A's PairPeer).
    keel_pair_heartbeat_args_t beat = { .state = KEEL__PAIR_STATE__PAIR_STATE_ACTIVE,
                                        .role = "backup",
                                        .endpoints = "tcp://127.0.0.1:1",
                                        .applied_seq = 1000000,
                                        .applied_epoch = 1000 };
    keel_env_t *env = keel_msg_pair_heartbeat (&msg, &beat);
    env->has_epoch = true;
    env->epoch = 1000;
    keel_link_send (evil, env, NULL);
    HARNESS_ASSERT (ft_wait_status (&p.a, "pair.counters.strangers", 4, 5000),
                    "A counted %lld strangers", ft_status (&p.a, "pair.counters.strangers"));
    HARNESS_ASSERT (ft_wait_status (&p.a, "pair.counters.bad_messages", 1, 5000),
                    "A counted no malformed pair message");
    zsock_destroy (&evil);
    char role[32];
    pt_status_str (&p.a, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "active") == 0, "A is %s after the hostile messages", role);
    HARNESS_ASSERT (pt_wait_field (&p.b, "pair.synced", "true", 5000), "B is out of sync");
    HARNESS_ASSERT (harness_alive (p.a.pid) && harness_alive (p.b.pid), "a broker died");
}

typedef struct {
    const harness_broker_t *b;
    const char *service;
    long long want;
} s_done_wait_t;

// `keel-admin tasks SERVICE --state done` on b lists at least want tasks.
static bool
s_tasks_done (void *arg)
{
    s_done_wait_t *w = arg;
    harness_result_t res;
    bool ok = false;
    if (harness_admin (w->b, &res, true, "tasks", w->service, "--state", "done", "--limit",
                       "100000", NULL)
        == 0) {
        long long n = 0;
        for (const char *q = res.out; (q = strstr (q, "\"task\":")); q++)
            n++;
        ok = n >= w->want;
    }
    harness_result_free (&res);
    return ok;
}

Test (pair, a_service_whose_driver_died_is_completed_by_the_broker_that_took_over,
      .init = harness_setup, .fini = harness_teardown, .timeout = 240)
{
    pt_pair_t p;
    pt_plan (&p);
    pt_start_pair (&p);
    pid_t driver = pt_load (&p);
    char service[80];
    HARNESS_ASSERT (ft_first_service (&p.a, service, sizeof service), "no service on A");
    // The driver dies first, then the active: only the engines turn to B.
    harness_kill9 (driver);
    HARNESS_ASSERT (harness_kill9 (p.a.pid), "broker A did not die");
    HARNESS_ASSERT (pt_wait_field (&p.b, "role", "active", 10000),
                    "B did not take over on the engines' vote");
    s_done_wait_t w = { &p.b, service, 400 };
    HARNESS_ASSERT (harness_poll_until (s_tasks_done, &w, 60000),
                    "B did not complete the 400 tasks of the service whose driver died");
    HARNESS_ASSERT (ft_status (&p.b, "counters.tasks_submitted") == 0, "B was sent %lld tasks",
                    ft_status (&p.b, "counters.tasks_submitted"));
}
