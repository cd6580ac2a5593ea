/*  test_cluster.c — several brokers on one PostgreSQL database
    (Store=postgresql://, docs/operations.md §4 "Several brokers on one
    database"): every member serves its own drivers and engines side by
    side; welcomes list the members, so clients configured with one member
    learn the others; kill -9 of a member makes its successor take its work
    over at once (its clients turn to it without waiting DSBrokerTimeout,
    engines claim their running tasks, nothing is resubmitted or run
    again); a member paused past its lease is taken over and, when it runs
    again, fenced: its writes refused and counted, it serves again as a new
    member with no work; `keel-admin leave` hands a member's work and
    clients to its successor; a joining member never takes the
    execution-id prefix of a member row. A private PostgreSQL (pg.h),
    stopped by its PID.
*/
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"
#include "test_pair.h"

typedef struct {
    pg_instance_t pg;
    harness_broker_t a, b;
    const char *sets[6];
    char lease[64];
} s_cluster_t;

// Plans A and B on one fresh private database, lease as given.
static void
s_plan (s_cluster_t *c, const char *lease)
{
    memset (c, 0, sizeof *c);
    char why[1024];
    HARNESS_ASSERT (pg_start (&c->pg, why, sizeof why), "%s", why);
    HARNESS_ASSERT (ft_broker_plan (&c->a, "brokerA") && ft_broker_plan (&c->b, "brokerB"),
                    "no ports");
    snprintf (c->a.store, sizeof c->a.store, "%s", c->pg.uri);
    snprintf (c->b.store, sizeof c->b.store, "%s", c->pg.uri);
    snprintf (c->lease, sizeof c->lease, "MemberLease=%s", lease);
    int n = 0;
    c->sets[n++] = "HeartbeatInterval=250ms";
    c->sets[n++] = "EngineTimeoutMinutes=0.5";
    c->sets[n++] = c->lease;
    c->sets[n] = NULL;
}

// Starts A, then B (both serve), and waits until each lists the other.
static void
s_start (s_cluster_t *c)
{
    HARNESS_ASSERT (ft_broker_spawn (&c->a, c->sets), "broker A did not start");
    HARNESS_ASSERT (pt_wait_field (&c->a, "cluster.state", "serving", 15000), "A does not serve");
    HARNESS_ASSERT (ft_broker_spawn (&c->b, c->sets), "broker B did not start");
    HARNESS_ASSERT (pt_wait_field (&c->b, "cluster.state", "serving", 15000), "B does not serve");
    char role[32];
    pt_status_str (&c->b, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "cluster") == 0, "B's role is %s", role);
    for (int i = 0; i < 2; i++) {
        const harness_broker_t *who = i ? &c->b : &c->a;
        bool both = false;
        for (int tries = 0; tries < 100 && !both; tries++) {
            char *json = ft_admin_json (who, "status", NULL);
            const char *members = json ? strstr (json, "\"members\"") : NULL;
            both = members && strstr (members, c->a.endpoint) && strstr (members, c->b.endpoint);
            free (json);
            if (!both)
                usleep (100 * 1000);
        }
        HARNESS_ASSERT (both, "%s does not list A and B as members", who->name);
    }
}

// Two 1-slot engines online at A (engine1 configured with A then `e1b`,
// engine2 with `e2` then `e2b`) and a driver (A then `db`) submitting 400
// tasks of 20 ms: about 4 s of work. DSBrokerTimeout is far above the
// test's patience: the driver must turn to another member at once.
// Returns the driver's pid once A has every task and 20 results are out.
static pid_t
s_load (s_cluster_t *c, const harness_broker_t *e1b, const harness_broker_t *e2,
        const harness_broker_t *e2b, const harness_broker_t *db)
{
    pid_t e1p = ft_engine_start (&c->a, e1b, "engine1", 1, NULL);
    pid_t e2p = ft_engine_start (e2, e2b, "engine2", 1, NULL);
    HARNESS_ASSERT (e1p > 0 && e2p > 0 && harness_wait_engines (&c->a, 2, 15000),
                    "engines not online on A");
    const char *submit[] = { "--service", "sleep", "--input", "20", "--count", "400", NULL };
    const char *driver_sets[] = { "DSBrokerTimeout=120s", "LogLevel=info", NULL };
    pid_t driver = ft_driver_start ("driver", &c->a, db, driver_sets, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&c->a, "counters.tasks_submitted", 400, 15000),
                    "A did not get the 400 tasks");
    pt_lines_wait_t some = { "driver.out", 20 };
    HARNESS_ASSERT (harness_poll_until (pt_lines_at_least, &some, 30000), "no results from A");
    return driver;
}

// The driver ends 0 with every task once and `at` was resent nothing.
static void
s_finish_at (const harness_broker_t *at, pid_t driver)
{
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 90000, &code), "keel-driver did not finish on %s",
                    at->name);
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    pt_assert_each_once ("driver.out", 400);
    HARNESS_ASSERT (ft_status (at, "counters.tasks_resubmitted") == 0,
                    "the driver resubmitted %lld tasks to %s",
                    ft_status (at, "counters.tasks_resubmitted"), at->name);
}

// s_finish_at B, and (with ran_once) the engines started 400 executions
// for the 400 tasks (engine3 too, less the `others` it ran for another
// driver).
static void
s_finish (s_cluster_t *c, pid_t driver, bool ran_once, int others)
{
    s_finish_at (&c->b, driver);
    int started = ft_log_count ("engine1.err", "task started")
                  + ft_log_count ("engine2.err", "task started")
                  + ft_log_count ("engine3.err", "task started") - others;
    HARNESS_ASSERT (!ran_once || started == 400, "the engines started %d executions for 400 tasks",
                    started);
}

// Side by side: B serves a driver and an engine of its own, and A the big
// batch of another driver (B's idle engine may be lent to A); then A is
// killed -9 and B, its successor, takes A's work over at once.
Test (cluster, members_serve_side_by_side_and_kill9_hands_the_work_to_the_successor,
      .init = harness_setup, .fini = harness_teardown, .timeout = 240)
{
    s_cluster_t c;
    s_plan (&c, "2s");
    s_start (&c);
    long long epoch_a = ft_status (&c.a, "epoch");
    // B serves work of its own.
    pid_t e3 = ft_engine_start (&c.b, NULL, "engine3", 1, NULL);
    HARNESS_ASSERT (e3 > 0 && harness_wait_engines (&c.b, 1, 15000), "engine3 not online on B");
    const char *small[] = { "--service", "double", "--input", "21", "--count", "20", NULL };
    pid_t d2 = ft_driver_start ("driver2", &c.b, NULL, NULL, small);
    int code = -1;
    HARNESS_ASSERT (d2 > 0 && harness_wait_exit (d2, 30000, &code) && code == 0,
                    "the driver at B did not finish (%d)", code);
    harness_assert_each_once ("driver2.out", 20, "42");
    // engine1 and the driver know only A: A's welcome lists B, and they
    // turn to B when A is gone. engine2 is configured with A, then B.
    pid_t driver = s_load (&c, NULL, &c.a, &c.b, NULL);
    HARNESS_ASSERT (ft_log_has ("driver.err", "is a member of the cluster")
                        && ft_log_has ("engine1.err", "is a member of the cluster"),
                    "the driver or engine1 did not learn B from A's welcome");
    HARNESS_ASSERT (ft_status (&c.a, "counters.tasks_submitted") == 400
                        && ft_status (&c.b, "counters.tasks_submitted") == 20,
                    "A was submitted %lld tasks and B %lld, not their drivers' 400 and 20",
                    ft_status (&c.a, "counters.tasks_submitted"),
                    ft_status (&c.b, "counters.tasks_submitted"));

    long before = pt_lines ("driver.out");
    HARNESS_ASSERT (before < 300, "the batch was nearly done before the kill (%ld)", before);
    HARNESS_ASSERT (harness_kill9 (c.a.pid), "broker A did not die");
    cr_log_info ("killed A with %ld of 400 results in", before);
    HARNESS_ASSERT (ft_wait_status (&c.b, "cluster.counters.takeovers", 1, 10000),
                    "B did not take A's work over within 10 s of the kill");
    HARNESS_ASSERT (ft_log_has ("brokerB.err", "takes its work over"),
                    "B did not say whose work it took");
    s_finish (&c, driver, true, 20);
    HARNESS_ASSERT (ft_status (&c.b, "epoch") > epoch_a, "B's epoch %lld is not above A's %lld",
                    ft_status (&c.b, "epoch"), epoch_a);
    HARNESS_ASSERT (ft_status (&c.b, "counters.tasks_submitted") == 0,
                    "B was sent %lld tasks as new after the takeover",
                    ft_status (&c.b, "counters.tasks_submitted"));
    // The tasks the engines were running at the kill were claimed, not run again.
    HARNESS_ASSERT (ft_status (&c.b, "counters.claims_kept") >= 1, "B kept no claim");
    HARNESS_ASSERT (harness_stop (c.b.pid, 10000) == 0, "broker B did not stop cleanly");
    pg_stop (&c.pg, 10000);
}

Test (cluster, a_member_paused_past_its_lease_is_taken_over_and_fenced, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    s_cluster_t c;
    s_plan (&c, "1s");
    s_start (&c);
    long long member_a = ft_status (&c.a, "cluster.lease_epoch");
    pid_t driver = s_load (&c, &c.b, &c.a, &c.b, &c.b);

    // A stops running (SIGSTOP) with its session, and its lock, alive.
    harness_signal (c.a.pid, SIGSTOP);
    HARNESS_ASSERT (ft_wait_status (&c.b, "cluster.counters.takeovers", 1, 15000),
                    "B did not take over from A paused past its lease");
    HARNESS_ASSERT (ft_log_has ("brokerB.err", "has not renewed its lease"),
                    "B did not say why it took over");
    // The clients move to B (A is silent); then A runs again.
    HARNESS_ASSERT (harness_wait_engines (&c.b, 2, 20000), "the engines did not move to B");
    harness_signal (c.a.pid, SIGCONT);
    HARNESS_ASSERT (ft_wait_status (&c.a, "cluster.counters.fenced", 1, 15000),
                    "A was not fenced after it ran again");
    HARNESS_ASSERT (pt_wait_field (&c.a, "cluster.state", "serving", 15000),
                    "A does not serve again after its rejoin");
    HARNESS_ASSERT (ft_status (&c.a, "cluster.lease_epoch") > member_a,
                    "A did not rejoin as a new member (%lld, was %lld)",
                    ft_status (&c.a, "cluster.lease_epoch"), member_a);
    cr_log_info ("A fenced: %lld writes refused",
                 ft_status (&c.a, "cluster.counters.fenced_writes"));
    s_finish (&c, driver, false, 0);
    HARNESS_ASSERT (harness_stop (c.a.pid, 10000) == 0, "broker A did not stop cleanly");
    HARNESS_ASSERT (harness_stop (c.b.pid, 10000) == 0, "broker B did not stop cleanly");
    pg_stop (&c.pg, 10000);
}

// keel-admin leave on a member mid-run: it commits and sends what it has,
// hands its work to its successor, sends its drivers and engines there
// (Passive naming it) and exits 0; the run ends on B with every task once,
// nothing resubmitted and no task run twice.
Test (cluster, leave_hands_the_work_and_the_clients_to_the_successor, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    s_cluster_t c;
    s_plan (&c, "2s");
    s_start (&c);
    pid_t driver = s_load (&c, NULL, &c.a, NULL, NULL);
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&c.a, &res, false, "leave", NULL) == 0, "leave refused: %s",
                    res.err);
    harness_result_free (&res);
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (c.a.pid, 15000, &code), "A did not exit after leave");
    HARNESS_ASSERT (code == 0, "A exited %d after leave", code);
    HARNESS_ASSERT (ft_status (&c.b, "cluster.counters.takeovers") == 1,
                    "B took over %lld times, not once",
                    ft_status (&c.b, "cluster.counters.takeovers"));
    s_finish (&c, driver, true, 0);
    // leave takes no argument.
    HARNESS_ASSERT (harness_admin (&c.b, &res, false, "leave", "now", NULL) != 0,
                    "leave took an argument");
    harness_result_free (&res);
    HARNESS_ASSERT (harness_stop (c.b.pid, 10000) == 0, "broker B did not stop cleanly");
    pg_stop (&c.pg, 10000);
}

// Runs keel-driver against broker b with args; stdout kept in <dir>/<name>.
static int
s_driver_run (const harness_broker_t *b, const char *name, harness_result_t *res,
              const char *const args[])
{
    const char *argv[32] = { "--broker", b->endpoint, "--set", "DSBrokerTimeout=30s" };
    int n = 4;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    int code = harness_run (res, 60000, "keel-driver", argv);
    char path[600];
    harness_write_file (path, sizeof path, name, res->out);
    return code;
}

// A driver that reaches a member which does not own its service (here:
// `attach` at B to a service submitted at A) is sent to the owner
// (Passive naming A, an endpoint it was not configured with), collects
// every result once there, and B takes nothing of it.
Test (cluster, a_driver_at_a_member_that_does_not_own_its_service_is_sent_to_the_owner,
      .init = harness_setup, .fini = harness_teardown, .timeout = 240)
{
    s_cluster_t c;
    s_plan (&c, "2s");
    s_start (&c);
    pid_t e1 = ft_engine_start (&c.a, NULL, "engine1", 2, NULL);
    HARNESS_ASSERT (e1 > 0 && harness_wait_engines (&c.a, 1, 15000), "engine1 not online on A");
    harness_result_t res;
    const char *submit[] = {
        "submit", "--service", "double", "--range", "0:200", "--detach", NULL
    };
    HARNESS_ASSERT (s_driver_run (&c.a, "submit.out", &res, submit) == 0,
                    "submit --detach at A failed: %s", res.err);
    char id[64];
    snprintf (id, sizeof id, "%s", res.out);
    id[strcspn (id, "\n")] = 0;
    harness_result_free (&res);
    HARNESS_ASSERT (strlen (id) == 36, "submit --detach printed '%s'", id);

    const char *attach[] = { "attach", id, NULL };
    int code = s_driver_run (&c.b, "driver.out", &res, attach);
    HARNESS_ASSERT (code == 0, "attach at B exited %d: %s", code, res.err);
    HARNESS_ASSERT (strstr (res.err, "served by another member"),
                    "the driver was not sent on by B: %s", res.err);
    harness_result_free (&res);
    harness_assert_each_once ("driver.out", 200, "2*id");
    HARNESS_ASSERT (ft_status (&c.b, "cluster.counters.clients_redirected") >= 1,
                    "B did not send the driver to A");
    HARNESS_ASSERT (ft_status (&c.b, "counters.tasks_submitted") == 0,
                    "B took %lld tasks of A's service",
                    ft_status (&c.b, "counters.tasks_submitted"));
    HARNESS_ASSERT (ft_status (&c.b, "cluster.counters.takeovers") == 0, "B took A's work over");
    HARNESS_ASSERT (harness_stop (c.a.pid, 10000) == 0, "broker A did not stop cleanly");
    HARNESS_ASSERT (harness_stop (c.b.pid, 10000) == 0, "broker B did not stop cleanly");
    pg_stop (&c.pg, 10000);
}

// Waits until every broker in bs lists endpoint among its members.
static bool
s_all_list (const harness_broker_t *const bs[], int n, const char *endpoint, int timeout_ms)
{
    for (int tries = 0; tries < timeout_ms / 100; tries++) {
        int listed = 0;
        for (int i = 0; i < n; i++) {
            char *json = ft_admin_json (bs[i], "status", NULL);
            const char *members = json ? strstr (json, "\"members\"") : NULL;
            listed += members && strstr (members, endpoint) != NULL;
            free (json);
        }
        if (listed == n)
            return true;
        usleep (100 * 1000);
    }
    return false;
}

// Three members, drivers and engines spread over them: 20,000 tasks from
// two drivers (at A and at B), every result exactly once. Mid-run a fourth
// member is started (hot add): every member lists it, and a new driver and
// engine configured with it alone are served there.
Test (cluster, three_members_serve_two_drivers_and_a_fourth_joins_mid_run, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    s_cluster_t c;
    s_plan (&c, "2s");
    harness_broker_t m3, m4;
    HARNESS_ASSERT (ft_broker_plan (&m3, "brokerC") && ft_broker_plan (&m4, "brokerD"), "no ports");
    snprintf (m3.store, sizeof m3.store, "%s", c.pg.uri);
    snprintf (m4.store, sizeof m4.store, "%s", c.pg.uri);
    s_start (&c);
    HARNESS_ASSERT (ft_broker_spawn (&m3, c.sets), "broker C did not start");
    const harness_broker_t *three[] = { &c.a, &c.b, &m3 };
    HARNESS_ASSERT (s_all_list (three, 3, m3.endpoint, 15000), "not every member lists C");

    // Engines: two at A, one at B, one at C (each with a failover member).
    pid_t e[4] = { ft_engine_start (&c.a, &c.b, "engine1", 2, NULL),
                   ft_engine_start (&c.a, &m3, "engine2", 2, NULL),
                   ft_engine_start (&c.b, &m3, "engine3", 2, NULL),
                   ft_engine_start (&m3, &c.a, "engine4", 2, NULL) };
    for (int i = 0; i < 4; i++)
        HARNESS_ASSERT (e[i] > 0, "engine%d did not start", i + 1);
    HARNESS_ASSERT (harness_wait_engines (&c.a, 2, 15000) && harness_wait_engines (&c.b, 1, 15000)
                        && harness_wait_engines (&m3, 1, 15000),
                    "the engines are not online at their members");
    const char *sub1[] = { "--service", "double", "--range", "0:10000", NULL };
    const char *sub2[] = { "--service", "double", "--range", "0:10000", NULL };
    pid_t d1 = ft_driver_start ("driver1", &c.a, NULL, NULL, sub1);
    pid_t d2 = ft_driver_start ("driver2", &c.b, NULL, NULL, sub2);
    HARNESS_ASSERT (d1 > 0 && d2 > 0, "a keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&c.a, "counters.tasks_submitted", 1000, 30000),
                    "A got no tasks");

    // Hot add: D joins while the drivers run.
    HARNESS_ASSERT (ft_broker_spawn (&m4, c.sets), "broker D did not start");
    const harness_broker_t *four[] = { &c.a, &c.b, &m3, &m4 };
    HARNESS_ASSERT (s_all_list (four, 4, m4.endpoint, 15000), "not every member lists D");
    pid_t e5 = ft_engine_start (&m4, NULL, "engine5", 1, NULL);
    HARNESS_ASSERT (e5 > 0 && harness_wait_engines (&m4, 1, 15000), "engine5 not online at D");
    const char *sub3[] = { "--service", "double", "--range", "0:100", NULL };
    pid_t d3 = ft_driver_start ("driver3", &m4, NULL, NULL, sub3);

    pid_t drivers[3] = { d1, d2, d3 };
    for (int i = 0; i < 3; i++) {
        int code = -1;
        HARNESS_ASSERT (harness_wait_exit (drivers[i], 120000, &code) && code == 0,
                        "driver%d exited %d", i + 1, code);
    }
    harness_assert_each_once ("driver1.out", 10000, "2*id");
    harness_assert_each_once ("driver2.out", 10000, "2*id");
    harness_assert_each_once ("driver3.out", 100, "2*id");
    HARNESS_ASSERT (ft_status (&m4, "counters.tasks_submitted") == 100,
                    "D was submitted %lld tasks, not driver3's 100",
                    ft_status (&m4, "counters.tasks_submitted"));
    for (int i = 0; i < 4; i++)
        HARNESS_ASSERT (ft_status (four[i], "counters.tasks_resubmitted") == 0
                            && ft_status (four[i], "cluster.counters.takeovers") == 0,
                        "%s resubmitted or took over", four[i]->name);
    for (int i = 3; i >= 0; i--)
        HARNESS_ASSERT (harness_stop (four[i]->pid, 10000) == 0, "%s did not stop cleanly",
                        four[i]->name);
    pg_stop (&c.pg, 10000);
}

// Work is not trapped where it was submitted: a driver at A and engines
// only at B. B, with nothing queued, lends its idle engines to A (Passive
// naming A: they log in there) and A's batch is done once each.
Test (cluster, a_member_with_nothing_queued_lends_its_idle_engines_to_one_with_work,
      .init = harness_setup, .fini = harness_teardown, .timeout = 240)
{
    s_cluster_t c;
    s_plan (&c, "2s");
    s_start (&c);
    pid_t e1 = ft_engine_start (&c.b, NULL, "engine1", 1, NULL);
    pid_t e2 = ft_engine_start (&c.b, NULL, "engine2", 1, NULL);
    HARNESS_ASSERT (e1 > 0 && e2 > 0 && harness_wait_engines (&c.b, 2, 15000),
                    "engines not online at B");
    const char *submit[] = { "--service", "sleep", "--input", "20", "--count", "200", NULL };
    pid_t driver = ft_driver_start ("driver", &c.a, NULL, NULL, submit);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 60000, &code), "the batch at A was not done");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    harness_assert_each_once ("driver.out", 200, NULL);
    HARNESS_ASSERT (ft_status (&c.b, "cluster.counters.engines_lent") >= 1,
                    "B lent no engine to A");
    int started =
        ft_log_count ("engine1.err", "task started") + ft_log_count ("engine2.err", "task started");
    HARNESS_ASSERT (started == 200, "B's engines started %d executions for A's 200 tasks", started);
    HARNESS_ASSERT (harness_stop (c.a.pid, 10000) == 0, "broker A did not stop cleanly");
    HARNESS_ASSERT (harness_stop (c.b.pid, 10000) == 0, "broker B did not stop cleanly");
    pg_stop (&c.pg, 10000);
}

typedef struct {
    const s_cluster_t *c;
} s_takeover_seen_t;

static bool
s_takeover_seen (void *arg)
{
    const s_cluster_t *c = ((s_takeover_seen_t *) arg)->c;
    return ft_status (&c->a, "cluster.counters.takeovers") > 0
           || ft_status (&c->b, "cluster.counters.takeovers") > 0;
}

// The database stopped (immediate) for 10 s under two members, each with
// a driver and an engine: both live through it, refuse what they cannot
// store, reconnect with their own locks (neither takes the other over),
// and every task of both drivers completes exactly once.
Test (cluster, members_live_through_a_database_outage, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    s_cluster_t c;
    s_plan (&c, "2s");
    c.sets[3] = "EnginePrefetch=0"; // one task per slot: the batches outlast the outage
    c.sets[4] = NULL;
    s_start (&c);
    pid_t e1 = ft_engine_start (&c.a, NULL, "engine1", 1, NULL);
    pid_t e2 = ft_engine_start (&c.b, NULL, "engine2", 1, NULL);
    HARNESS_ASSERT (e1 > 0 && e2 > 0 && harness_wait_engines (&c.a, 1, 15000)
                        && harness_wait_engines (&c.b, 1, 15000),
                    "engines not online");
    const char *submit[] = { "--service", "sleep", "--input", "20", "--count", "400", NULL };
    const char *sets[] = { "DSBrokerTimeout=120s", NULL };
    pid_t d1 = ft_driver_start ("driver1", &c.a, NULL, sets, submit);
    pid_t d2 = ft_driver_start ("driver2", &c.b, NULL, sets, submit);
    HARNESS_ASSERT (d1 > 0 && d2 > 0, "a keel-driver did not start");
    pt_lines_wait_t some1 = { "driver1.out", 20 }, some2 = { "driver2.out", 20 };
    HARNESS_ASSERT (harness_poll_until (pt_lines_at_least, &some1, 30000)
                        && harness_poll_until (pt_lines_at_least, &some2, 30000),
                    "no results before the outage");

    HARNESS_ASSERT (pg_halt (&c.pg, true, 10000), "PostgreSQL did not stop");
    HARNESS_ASSERT (harness_wait_log ("brokerA.err", "store commit failed", 1, 10000)
                        && harness_wait_log ("brokerB.err", "store commit failed", 1, 10000),
                    "a member did not notice the database was gone");
    // The outage itself: 10 s of no database (a fault, not a wait).
    for (int64_t waited = 0; waited < 10000; waited += 200) {
        HARNESS_ASSERT (harness_alive (c.a.pid) && harness_alive (c.b.pid),
                        "a member died during the outage");
        HARNESS_ASSERT (harness_alive (e1) && harness_alive (e2), "an engine died");
        usleep (200 * 1000);
    }
    char why[1024];
    HARNESS_ASSERT (pg_resume (&c.pg, why, sizeof why), "%s", why);
    // Both write again (a small batch each, stored after the outage), and
    // for two leases more neither takes the other over: every lease passed
    // during the outage, and the first member back must not count that as
    // a death.
    const char *small[] = { "--service", "double", "--range", "0:20", NULL };
    pid_t s1 = ft_driver_start ("small1", &c.a, NULL, sets, small);
    pid_t s2 = ft_driver_start ("small2", &c.b, NULL, sets, small);
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (s1, 60000, &code) && code == 0, "small1 exited %d", code);
    HARNESS_ASSERT (harness_wait_exit (s2, 60000, &code) && code == 0, "small2 exited %d", code);
    s_takeover_seen_t seen = { &c };
    HARNESS_ASSERT (!harness_poll_until (s_takeover_seen, &seen, 4000),
                    "a member took the other over after the outage");
    HARNESS_ASSERT (harness_wait_exit (d1, 120000, &code) && code == 0, "driver1 exited %d", code);
    HARNESS_ASSERT (harness_wait_exit (d2, 120000, &code) && code == 0, "driver2 exited %d", code);
    harness_assert_each_once ("driver1.out", 400, NULL);
    harness_assert_each_once ("driver2.out", 400, NULL);
    for (int i = 0; i < 2; i++) {
        const harness_broker_t *m = i ? &c.b : &c.a;
        HARNESS_ASSERT (ft_status (m, "cluster.counters.takeovers") == 0
                            && ft_status (m, "cluster.counters.fenced") == 0,
                        "%s took work over (%lld) or was fenced (%lld) for an outage", m->name,
                        ft_status (m, "cluster.counters.takeovers"),
                        ft_status (m, "cluster.counters.fenced"));
        HARNESS_ASSERT (ft_status (m, "counters.store_failures") > 0, "%s saw no failed commit",
                        m->name);
    }
    HARNESS_ASSERT (harness_stop (c.a.pid, 10000) == 0, "broker A did not stop cleanly");
    HARNESS_ASSERT (harness_stop (c.b.pid, 10000) == 0, "broker B did not stop cleanly");
    pg_stop (&c.pg, 10000);
}

// One bigint answer of sql on the private database.
static long long
s_sql_int (const pg_instance_t *pg, const char *sql)
{
    PGconn *conn = PQconnectdb (pg->conninfo);
    HARNESS_ASSERT (PQstatus (conn) == CONNECTION_OK, "connect: %s", PQerrorMessage (conn));
    PGresult *res = PQexec (conn, sql);
    HARNESS_ASSERT (PQresultStatus (res) == PGRES_TUPLES_OK && PQntuples (res) == 1, "%s: %s", sql,
                    PQresultErrorMessage (res));
    long long v = atoll (PQgetvalue (res, 0, 0));
    PQclear (res);
    PQfinish (conn);
    return v;
}

// Execution ids carry a prefix made of the member id (member_id % 255 + 1):
// after 255 joins the sequence hands out an id whose prefix a live member
// holds, and both would number executions alike. The join skips it. (Here
// the sequence is moved so that B's first try is A's id + 255.)
Test (cluster, a_joining_member_never_takes_the_execution_id_prefix_of_a_member,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    s_cluster_t c;
    s_plan (&c, "3s");
    HARNESS_ASSERT (ft_broker_spawn (&c.a, c.sets), "broker A did not start");
    HARNESS_ASSERT (pt_wait_field (&c.a, "cluster.state", "serving", 15000), "A does not serve");
    long long a = s_sql_int (&c.pg, "SELECT max(member_id) FROM keel_members");
    char sql[200];
    snprintf (sql, sizeof sql, "SELECT setval('keel_member_seq', %lld)", a + 254);
    s_sql_int (&c.pg, sql);
    HARNESS_ASSERT (ft_broker_spawn (&c.b, c.sets), "broker B did not start");
    HARNESS_ASSERT (pt_wait_field (&c.b, "cluster.state", "serving", 15000), "B does not serve");
    HARNESS_ASSERT (s_sql_int (&c.pg, "SELECT count(*) FROM keel_members") == 2,
                    "expected the rows of A and B");
    long long b = s_sql_int (&c.pg, "SELECT max(member_id) FROM keel_members");
    HARNESS_ASSERT (b > a + 255, "B joined as member %lld: the prefix of A (member %lld)", b, a);
    HARNESS_ASSERT (s_sql_int (&c.pg, "SELECT count(DISTINCT member_id % 255) FROM keel_members")
                        == 2,
                    "A (%lld) and B (%lld) share an execution-id prefix", a, b);
    HARNESS_ASSERT (harness_stop (c.b.pid, 10000) == 0, "broker B did not stop cleanly");
    HARNESS_ASSERT (harness_stop (c.a.pid, 10000) == 0, "broker A did not stop cleanly");
    pg_stop (&c.pg, 10000);
}
