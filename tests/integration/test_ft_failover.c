/*  test_ft_failover.c — the reference scenario of DESIGN §4: broker A dies
    while an engine works on a driver's task; the engine keeps working and
    logs in to broker B with its task, the driver gives up on A after
    DSBrokerTimeout and resubmits to B, B does not run the task again, and
    the driver gets every result exactly once.

    Three orders of events: the driver reaches B while the task still runs
    (KEEP), the task finishes while no broker is reachable at all (spooled
    result carried to B), and the engine reaches B long before the driver
    and finishes there (HOLD, result pending until the driver resubmits).
*/
#include "test_ft.h"

// Broker settings: fast heartbeats; an Engine Timeout (15 s) well above
// the drivers' DSBrokerTimeout (3 s), as docs/operations.md §3 asks.
static const char *const s_broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=0.25",
                                             NULL };
static const char *const s_driver_sets[] = { "DSBrokerTimeout=3s", NULL };

typedef struct {
    harness_broker_t a, b;
    pid_t engine;
    pid_t driver;
    char service[80];
    unsigned long long exec_a; // execution id A gave task 0
    char engine_id[80];
} s_grid_t;

// Starts A (and B unless b_later), one engine with 1 slot on A,B and a
// driver on A with failover B submitting the inputs of input_file; waits
// until task 0 runs on the engine and records its execution id on A.
static void
s_start (s_grid_t *g, bool b_later, const char *inputs)
{
    HARNESS_ASSERT (ft_broker_plan (&g->a, "brokerA") && ft_broker_spawn (&g->a, s_broker_sets),
                    "broker A did not start");
    HARNESS_ASSERT (ft_broker_plan (&g->b, "brokerB"), "no ports for broker B");
    if (!b_later)
        HARNESS_ASSERT (ft_broker_spawn (&g->b, s_broker_sets), "broker B did not start");
    g->engine = ft_engine_start (&g->a, &g->b, "engine", 1, NULL);
    HARNESS_ASSERT (g->engine > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&g->a, 1, 15000), "engine not online on A");

    char file[600];
    harness_write_file (file, sizeof file, "inputs.txt", inputs);
    const char *submit[] = { "--service", "sleep", "--input-file", file, NULL };
    g->driver = ft_driver_start ("driver", &g->a, &g->b, s_driver_sets, submit);
    HARNESS_ASSERT (g->driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_service (&g->a, g->service, sizeof g->service, 15000),
                    "the driver's service did not reach A");
    HARNESS_ASSERT (ft_wait_task (&g->a, g->service, 0, "running", 15000),
                    "task 0 not running on A");
    HARNESS_ASSERT (
        ft_task_info (&g->a, g->service, 0, NULL, 0, &g->exec_a, g->engine_id, sizeof g->engine_id)
            && g->exec_a != 0,
        "no execution id for task 0 on A");
    cr_log_info ("task 0 runs on A as execution %llu on engine %s", g->exec_a, g->engine_id);
}

// Waits for the driver to finish, then checks every result once and task
// 0's result came from the execution A started.
static void
s_finish (s_grid_t *g, int ntasks, ft_results_t *r)
{
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (g->driver, 60000, &code), "keel-driver did not finish");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    HARNESS_ASSERT (ft_results_read ("driver.out", r), "cannot read the driver's results: %s",
                    r->bad);
    ft_assert_each_once (r, ntasks);
    HARNESS_ASSERT (r->exec[0] == g->exec_a,
                    "task 0 ran again: its result comes from execution %llu, A had started %llu",
                    r->exec[0], g->exec_a);
    HARNESS_ASSERT (strcmp (r->engine[0], g->engine_id) == 0,
                    "task 0's result comes from engine %s, not %s", r->engine[0], g->engine_id);
    char failover[128];
    snprintf (failover, sizeof failover, "failover: now on %s", g->b.endpoint);
    HARNESS_ASSERT (ft_log_has ("driver.err", failover), "the driver never said it failed over");
    // B acknowledged every result the engine carried: it holds none back.
    HARNESS_ASSERT (ft_wait_spool_empty ("engine", 5000),
                    "the engine still holds %d unacknowledged results after the driver got them",
                    ft_spooled ("engine"));
}

Test (ft_failover, keeps_the_running_task_when_driver_and_engine_move_to_broker_b,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    s_grid_t g;
    // Task 0 runs 6 s on the only slot; task 1 waits in A's queue.
    s_start (&g, false, "6000\n200\n");
    HARNESS_ASSERT (harness_kill9 (g.a.pid), "broker A did not die");

    // The engine keeps its task and carries it to B.
    HARNESS_ASSERT (ft_wait_status (&g.b, "engines.online", 1, 15000),
                    "the engine did not log in to B");
    // The driver moves after DSBrokerTimeout and resubmits both tasks.
    HARNESS_ASSERT (ft_wait_status (&g.b, "counters.tasks_submitted", 2, 15000),
                    "the driver did not resubmit its two tasks to B");
    bool finished_first = ft_log_has ("engine.err", "task finished");
    cr_log_info ("driver resubmitted to B %s task 0 finished", finished_first ? "after" : "before");

    ft_results_t r;
    s_finish (&g, 2, &r);
    HARNESS_ASSERT (r.exec[1] != g.exec_a, "task 1 reused task 0's execution id");
    HARNESS_ASSERT (ft_status (&g.b, "counters.claims_kept") >= 1,
                    "B kept no claim: claims_kept=%lld", ft_status (&g.b, "counters.claims_kept"));
    // B dispatched task 1 (never started on A) and nothing else.
    HARNESS_ASSERT (ft_status (&g.b, "counters.tasks_dispatched") == 1,
                    "B dispatched %lld tasks (expected only task 1)",
                    ft_status (&g.b, "counters.tasks_dispatched"));
    HARNESS_ASSERT (ft_status (&g.b, "counters.results_delivered") == 2,
                    "B delivered %lld results (expected 2)",
                    ft_status (&g.b, "counters.results_delivered"));
    HARNESS_ASSERT (ft_log_count ("engine.err", "task started") == 2,
                    "the engine started %d executions for 2 tasks",
                    ft_log_count ("engine.err", "task started"));
}

Test (ft_failover, delivers_a_result_finished_while_no_broker_was_reachable, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    s_grid_t g;
    // B is not running yet: once A dies, the engine reaches no broker.
    s_start (&g, true, "1500\n");
    HARNESS_ASSERT (harness_kill9 (g.a.pid), "broker A did not die");

    char finished[80];
    snprintf (finished, sizeof finished, "task finished exec=%llu status=ok", g.exec_a);
    HARNESS_ASSERT (ft_wait_log ("engine.err", finished, 15000),
                    "the engine did not finish its task while offline");
    HARNESS_ASSERT (ft_log_count ("engine.err", "logged in broker=") == 1,
                    "the engine logged in somewhere while no broker was up");
    HARNESS_ASSERT (harness_alive (g.driver), "the driver finished without a broker");

    HARNESS_ASSERT (ft_broker_spawn (&g.b, s_broker_sets), "broker B did not start");
    ft_results_t r;
    s_finish (&g, 1, &r);
    HARNESS_ASSERT (strcmp (r.output[0], "1500") == 0, "task 0's output is '%s'", r.output[0]);
    HARNESS_ASSERT (ft_status (&g.b, "counters.tasks_dispatched") == 0,
                    "B ran the task again (tasks_dispatched=%lld)",
                    ft_status (&g.b, "counters.tasks_dispatched"));
    HARNESS_ASSERT (ft_status (&g.b, "counters.claims_kept") >= 1,
                    "B did not take the engine's claim (claims_kept=%lld)",
                    ft_status (&g.b, "counters.claims_kept"));
    HARNESS_ASSERT (ft_log_count ("engine.err", "task started") == 1,
                    "the engine ran the task %d times",
                    ft_log_count ("engine.err", "task started"));
}

Test (ft_failover, holds_a_result_on_broker_b_until_the_driver_resubmits, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    s_grid_t g;
    // The driver waits 3 s before it leaves A; the engine reaches B in
    // about 2 s and its 2.5 s task finishes there before the driver comes.
    s_start (&g, false, "2500\n");
    HARNESS_ASSERT (harness_kill9 (g.a.pid), "broker A did not die");

    HARNESS_ASSERT (ft_wait_status (&g.b, "counters.claims_held", 1, 15000),
                    "B did not hold the engine's claim");
    char finished[80];
    snprintf (finished, sizeof finished, "task finished exec=%llu status=ok", g.exec_a);
    HARNESS_ASSERT (ft_wait_log ("engine.err", finished, 15000), "the task did not finish");
    long long services = ft_status (&g.b, "services.total");
    HARNESS_ASSERT (services == 0,
                    "precondition: the driver reached B before the task finished (services=%lld)",
                    services);
    HARNESS_ASSERT (ft_wait_status (&g.b, "pending_claims", 1, 5000),
                    "B holds no pending claim for the finished task");

    ft_results_t r;
    s_finish (&g, 1, &r);
    HARNESS_ASSERT (ft_status (&g.b, "counters.tasks_dispatched") == 0,
                    "B ran the held task again (tasks_dispatched=%lld)",
                    ft_status (&g.b, "counters.tasks_dispatched"));
    HARNESS_ASSERT (ft_status (&g.b, "pending_claims") == 0,
                    "the claim is still pending on B after the driver resubmitted");
    HARNESS_ASSERT (ft_log_count ("engine.err", "task started") == 1,
                    "the engine ran the task %d times",
                    ft_log_count ("engine.err", "task started"));
}
