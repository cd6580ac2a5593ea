/*  test_ft_pending_restart.c — a failover broker that holds HOLD claims
    (an engine brought it tasks of a service whose driver has not failed
    over yet) is killed and restarted on its store: it must serve again and
    still hold the claims.

    Found by the chaos campaign (scripts/chaos/, seed 1, failover): recovery
    read the store's pending rows and wrote each back under the cursor that
    was reading them, so SQLite visited the row again, for ever; the
    restarted broker spun in its recovery and never served.
*/
#include "test_ft.h"

static const char *const s_broker_sets[] = { "HeartbeatInterval=200ms", "EngineTimeoutMinutes=1",
                                             NULL };
// The driver stays with A (long DSBrokerTimeout): B only ever sees the
// engine's claims, which it must HOLD.
static const char *const s_driver_sets[] = { "DSBrokerTimeout=50s", NULL };

static bool
s_store_settled (void *arg)
{
    const harness_broker_t *b = arg;
    return ft_status (b, "store_uncommitted") == 0 && ft_status (b, "store_unsynced") == 0;
}

Test (ft_pending_restart, a_broker_restarted_with_held_claims_serves_and_keeps_them,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    harness_broker_t a, b;
    HARNESS_ASSERT (ft_broker_plan (&a, "brokerA") && ft_broker_spawn (&a, s_broker_sets),
                    "broker A did not start");
    HARNESS_ASSERT (ft_broker_plan (&b, "brokerB") && ft_broker_spawn (&b, s_broker_sets),
                    "broker B did not start");
    HARNESS_ASSERT (ft_engine_start (&a, &b, "engine", 2, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&a, 1, 15000), "engine not online on A");

    const char *submit[] = { "--service", "sleep", "--input", "30000", "--count", "2", NULL };
    HARNESS_ASSERT (ft_driver_start ("driver", &a, &b, s_driver_sets, submit) > 0,
                    "keel-driver did not start");
    HARNESS_ASSERT (ft_wait_status (&a, "tasks.running", 2, 15000), "the tasks do not run on A");

    // A dies; the engine carries its two running tasks to B, which does
    // not know their service: two HOLD claims, in B's store.
    HARNESS_ASSERT (harness_kill9 (a.pid), "cannot kill A");
    HARNESS_ASSERT (ft_wait_status (&b, "counters.claims_held", 2, 20000),
                    "B did not hold the engine's two claims");
    HARNESS_ASSERT (harness_poll_until (s_store_settled, &b, 10000),
                    "B's store did not settle (uncommitted or unsynced changes)");

    HARNESS_ASSERT (harness_kill9 (b.pid), "cannot kill B");
    HARNESS_ASSERT (ft_broker_spawn (&b, s_broker_sets),
                    "B did not serve again after a restart with held claims in its store");
    HARNESS_ASSERT (ft_log_has ("brokerB.err", "pending=2"),
                    "B's recovery did not read back the two held claims");
}
