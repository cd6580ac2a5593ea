/*  test_driver_hold_acks.c — keel_driver_hold_acks (keel/driver.h): a
    result the application took is acknowledged to the broker only when
    the application says it kept it (keel_driver_ack_taken), so a driver
    that dies between the two leaves it at the broker for an attach. Real
    broker and engine; libkeeldriver in this test process.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "keel/driver.h"

#define N_TASKS 3

//  The broker's unacked_results of its one service (-1: no answer).
static long long
s_unacked (const harness_broker_t *b)
{
    harness_result_t res;
    long long n = -1;
    if (harness_admin (b, &res, true, "services", NULL) == 0) {
        const char *p = strstr (res.out, "\"unacked_results\":");
        if (p)
            n = strtoll (p + strlen ("\"unacked_results\":"), NULL, 10);
    }
    harness_result_free (&res);
    return n;
}

typedef struct {
    const harness_broker_t *b;
    long long want;
} s_unacked_wait_t;

static bool
s_unacked_is (void *arg)
{
    s_unacked_wait_t *w = arg;
    return s_unacked (w->b) == w->want;
}

static bool
s_unacked_is_not (void *arg)
{
    return !s_unacked_is (arg);
}

Test (driver_hold_acks, a_result_taken_is_acknowledged_only_once_the_application_kept_it,
      .init = harness_setup, .fini = harness_teardown, .timeout = 120)
{
    harness_broker_t b;
    const char *sets[] = { "HeartbeatInterval=200ms", NULL };
    HARNESS_ASSERT (harness_broker_start (&b, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&b, "engine", 2, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&b, 1, 15000), "engine not online within 15 s");
    char set[128];
    snprintf (set, sizeof set, "DSPrimaryBroker=%s", b.endpoint);
    char *overrides[] = { set, "DSHeartbeatInterval=200ms" };
    keel_error_t err = { "" };
    keel_driver_t *driver = keel_driver_new (NULL, overrides, 2, &err);
    cr_assert (driver, "driver: %s", err.text);
    cr_assert_eq (keel_driver_hold_acks (driver, &err), KEEL_OK, "hold_acks: %s", err.text);
    keel_service_options_t options;
    keel_service_options_init (&options, "echo");
    keel_service_t *service = keel_driver_open_service (driver, &options, &err);
    cr_assert (service, "open: %s", err.text);
    // Too late once a service is open: results may be on their way. (A
    // driver of its own, towards a port where no broker listens.)
    char nowhere[128];
    snprintf (nowhere, sizeof nowhere, "DSPrimaryBroker=tcp://127.0.0.1:%d", harness_free_port ());
    char *late_overrides[] = { nowhere };
    keel_driver_t *late = keel_driver_new (NULL, late_overrides, 1, &err);
    cr_assert (late, "driver: %s", err.text);
    keel_service_options_t late_options;
    keel_service_options_init (&late_options, "echo");
    cr_assert (keel_driver_open_service (late, &late_options, &err));
    cr_assert_eq (keel_driver_hold_acks (late, &err), KEEL_ERR_STATE);
    keel_driver_destroy (&late);

    for (int i = 0; i < N_TASKS; i++)
        cr_assert_eq (keel_service_submit (service, "x", 1, NULL, &err), KEEL_OK);
    keel_service_close (service, NULL);
    int taken = 0;
    for (int turn = 0; turn < 200 && taken < N_TASKS; turn++) {
        keel_result_t *result = NULL;
        cr_assert_eq (keel_driver_next_result (driver, 100, &result, &err), KEEL_OK, "%s",
                      err.text);
        if (result) {
            cr_assert_eq (result->status, KEEL_TASK_OK);
            taken++;
            keel_result_destroy (&result);
        }
    }
    cr_assert_eq (taken, N_TASKS, "took %d results in 20 s", taken);
    // Taken, not kept: the broker still holds every one. (The library
    // would have acknowledged them within a loop turn: a second is ample.)
    s_unacked_wait_t held = { &b, N_TASKS };
    HARNESS_ASSERT (s_unacked_is (&held), "unacked_results %lld before keel_driver_ack_taken",
                    s_unacked (&b));
    HARNESS_ASSERT (!harness_poll_until (s_unacked_is_not, &held, 1000),
                    "results were acknowledged before keel_driver_ack_taken (%lld left)",
                    s_unacked (&b));
    // Kept: acknowledged.
    cr_assert_eq (keel_driver_ack_taken (driver, &err), KEEL_OK, "ack_taken: %s", err.text);
    s_unacked_wait_t none = { &b, 0 };
    HARNESS_ASSERT (harness_poll_until (s_unacked_is, &none, 5000),
                    "unacked_results %lld after keel_driver_ack_taken", s_unacked (&b));
    keel_driver_destroy (&driver);
}
