/*  test_cluster.c — several brokers on one PostgreSQL database
    (Store=postgresql://, docs/operations.md §4 "Several brokers on one
    database"): one member serves, the others stand by and send clients to
    it; welcomes list the members, so clients configured with one member
    learn the others; kill -9 of the serving member makes a standby serve
    at once (its clients turn to it without waiting DSBrokerTimeout,
    engines claim their
    running tasks, nothing is resubmitted or run again); a serving member
    paused past its lease is taken over and, when it runs again, fenced:
    its writes refused and counted, it stands by as a new member. A private
    PostgreSQL (pg.h), stopped by its PID.
*/
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

// Starts A (it serves), then B (it stands by), and waits until each lists
// the other.
static void
s_start (s_cluster_t *c)
{
    HARNESS_ASSERT (ft_broker_spawn (&c->a, c->sets), "broker A did not start");
    HARNESS_ASSERT (pt_wait_field (&c->a, "cluster.state", "serving", 15000), "A does not serve");
    HARNESS_ASSERT (ft_broker_spawn (&c->b, c->sets), "broker B did not start");
    HARNESS_ASSERT (pt_wait_field (&c->b, "cluster.state", "standby", 15000),
                    "B does not stand by");
    char role[32];
    pt_status_str (&c->b, "role", role, sizeof role);
    HARNESS_ASSERT (strcmp (role, "cluster") == 0, "B's role is %s", role);
    // Each member lists both, the serving one first.
    for (int i = 0; i < 2; i++) {
        const harness_broker_t *who = i ? &c->b : &c->a;
        bool both = false;
        for (int tries = 0; tries < 100 && !both; tries++) {
            char *json = ft_admin_json (who, "status", NULL);
            const char *members = json ? strstr (json, "\"members\"") : NULL;
            const char *first = members ? strstr (members, c->a.endpoint) : NULL;
            const char *second = members ? strstr (members, c->b.endpoint) : NULL;
            both = first && second && first < second;
            free (json);
            if (!both)
                usleep (100 * 1000);
        }
        HARNESS_ASSERT (both, "%s does not list A then B as members", who->name);
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

// The driver ends 0 with every task once, B was resent nothing, and (with
// ran_once) the engines started 400 executions for the 400 tasks.
static void
s_finish (s_cluster_t *c, pid_t driver, bool ran_once)
{
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 90000, &code), "keel-driver did not finish on B");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    pt_assert_each_once ("driver.out", 400);
    HARNESS_ASSERT (ft_status (&c->b, "counters.tasks_resubmitted") == 0,
                    "the driver resubmitted %lld tasks to B",
                    ft_status (&c->b, "counters.tasks_resubmitted"));
    int started =
        ft_log_count ("engine1.err", "task started") + ft_log_count ("engine2.err", "task started");
    HARNESS_ASSERT (!ran_once || started == 400, "the engines started %d executions for 400 tasks",
                    started);
}

Test (cluster, kill9_of_the_serving_member_makes_the_standby_serve_at_once, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    s_cluster_t c;
    s_plan (&c, "2s");
    s_start (&c);
    long long epoch_a = ft_status (&c.a, "epoch");
    // engine1 and the driver know only A: A's welcome lists B, and they
    // turn to B when A is gone. engine2 is configured with B first: B
    // stands by and sends it to A.
    pid_t driver = s_load (&c, NULL, &c.b, &c.a, NULL);
    HARNESS_ASSERT (ft_status (&c.b, "cluster.counters.clients_refused") >= 1,
                    "B did not refuse engine2");
    HARNESS_ASSERT (ft_log_has ("driver.err", "is a member of the cluster")
                        && ft_log_has ("engine1.err", "is a member of the cluster"),
                    "the driver or engine1 did not learn B from A's welcome");
    long before = pt_lines ("driver.out");
    HARNESS_ASSERT (before < 300, "the batch was nearly done before the kill (%ld)", before);
    HARNESS_ASSERT (harness_kill9 (c.a.pid), "broker A did not die");
    cr_log_info ("killed A with %ld of 400 results in", before);
    HARNESS_ASSERT (pt_wait_field (&c.b, "cluster.state", "serving", 10000),
                    "B did not serve within 10 s of the kill");
    s_finish (&c, driver, true);
    HARNESS_ASSERT (ft_status (&c.b, "epoch") > epoch_a, "B's epoch %lld is not above A's %lld",
                    ft_status (&c.b, "epoch"), epoch_a);
    HARNESS_ASSERT (ft_status (&c.b, "cluster.counters.takeovers") == 1, "B took over %lld times",
                    ft_status (&c.b, "cluster.counters.takeovers"));
    HARNESS_ASSERT (ft_status (&c.b, "counters.tasks_submitted") == 0,
                    "B was sent %lld tasks as new", ft_status (&c.b, "counters.tasks_submitted"));
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
    HARNESS_ASSERT (pt_wait_field (&c.b, "cluster.state", "serving", 15000),
                    "B did not take over from A paused past its lease");
    HARNESS_ASSERT (ft_log_has ("brokerB.err", "has not renewed its lease"),
                    "B did not say why it took over");
    // The clients move to B (A is silent); then A runs again.
    HARNESS_ASSERT (harness_wait_engines (&c.b, 2, 20000), "the engines did not move to B");
    harness_signal (c.a.pid, SIGCONT);
    HARNESS_ASSERT (pt_wait_field (&c.a, "cluster.state", "standby", 15000),
                    "A did not stand by after it ran again");
    HARNESS_ASSERT (ft_status (&c.a, "cluster.counters.fenced") == 1, "A was fenced %lld times",
                    ft_status (&c.a, "cluster.counters.fenced"));
    HARNESS_ASSERT (ft_status (&c.a, "cluster.lease_epoch") > member_a,
                    "A did not rejoin as a new member (%lld, was %lld)",
                    ft_status (&c.a, "cluster.lease_epoch"), member_a);
    cr_log_info ("A fenced: %lld writes refused",
                 ft_status (&c.a, "cluster.counters.fenced_writes"));
    s_finish (&c, driver, false);
    HARNESS_ASSERT (harness_stop (c.a.pid, 10000) == 0, "broker A did not stop cleanly");
    HARNESS_ASSERT (harness_stop (c.b.pid, 10000) == 0, "broker B did not stop cleanly");
    pg_stop (&c.pg, 10000);
}

// keel-admin leave on the serving member mid-run: it commits and sends
// what it has, leaves the store to the standby, sends its drivers and
// engines there (Passive naming it) and exits 0; the run ends on B with
// every task once, nothing resubmitted and no task run twice.
Test (cluster, leave_hands_the_store_and_the_clients_to_the_standby, .init = harness_setup,
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
    HARNESS_ASSERT (pt_wait_field (&c.b, "cluster.state", "serving", 10000), "B does not serve");
    s_finish (&c, driver, true);
    // leave takes no argument.
    HARNESS_ASSERT (harness_admin (&c.b, &res, false, "leave", "now", NULL) != 0,
                    "leave took an argument");
    harness_result_free (&res);
    HARNESS_ASSERT (harness_stop (c.b.pid, 10000) == 0, "broker B did not stop cleanly");
    pg_stop (&c.pg, 10000);
}
