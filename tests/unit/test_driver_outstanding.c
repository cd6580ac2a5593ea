/*  test_driver_outstanding.c — the driver's per-service task bookkeeping:
    inputs held until results, accepted flags, resend, exactly-once. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../driver/outstanding.h"

static uint8_t *
s_copy (const char *text)
{
    return (uint8_t *) strdup (text);
}

static keel_outstanding_t *
s_with_tasks (int n)
{
    keel_outstanding_t *o = keel_outstanding_new ();
    for (int i = 0; i < n; i++) {
        char text[16];
        snprintf (text, sizeof text, "in%d", i);
        cr_assert_eq (keel_outstanding_add (o, (uint64_t) i, s_copy (text), strlen (text)), KEEL_OK);
    }
    return o;
}

Test (driver_outstanding, delivers_each_result_once_and_acknowledges_duplicates)
{
    keel_outstanding_t *o = s_with_tasks (3);
    cr_assert_eq (keel_outstanding_complete (o, 1), KEEL_OUTSTANDING_NEW);
    cr_assert_eq (keel_outstanding_complete (o, 1), KEEL_OUTSTANDING_DUPLICATE);
    cr_assert_eq (keel_outstanding_complete (o, 0), KEEL_OUTSTANDING_NEW);
    cr_assert_eq (keel_outstanding_complete (o, 0), KEEL_OUTSTANDING_DUPLICATE);
    cr_assert_eq (keel_outstanding_count (o), 1);
    keel_outstanding_destroy (&o);
    cr_assert_null (o);
}

Test (driver_outstanding, ignores_results_for_tasks_never_submitted)
{
    keel_outstanding_t *o = s_with_tasks (2);
    cr_assert_eq (keel_outstanding_complete (o, 2), KEEL_OUTSTANDING_UNKNOWN);
    cr_assert_eq (keel_outstanding_complete (o, UINT64_MAX), KEEL_OUTSTANDING_UNKNOWN);
    cr_assert_eq (keel_outstanding_count (o), 2);
    keel_outstanding_destroy (&o);
}

Test (driver_outstanding, takes_ids_in_order_in_bounded_batches)
{
    keel_outstanding_t *o = s_with_tasks (5);
    keel_outstanding_ref_t refs[8];
    cr_assert_eq (keel_outstanding_take (o, 2, refs), 2);
    cr_assert_eq (refs[0].task_id, 0);
    cr_assert_eq (refs[1].task_id, 1);
    cr_assert_eq (memcmp (refs[1].input, "in1", 3), 0);
    cr_assert_eq (keel_outstanding_take (o, 8, refs), 3);
    cr_assert_eq (refs[2].task_id, 4);
    cr_assert_eq (keel_outstanding_take (o, 8, refs), 0);
    cr_assert_eq (keel_outstanding_unaccepted (o), 5);
    keel_outstanding_destroy (&o);
}

Test (driver_outstanding, resends_only_unaccepted_tasks_to_the_same_broker)
{
    keel_outstanding_t *o = s_with_tasks (4);
    keel_outstanding_ref_t refs[8];
    keel_outstanding_take (o, 8, refs);
    cr_assert (keel_outstanding_accept (o, 0));
    cr_assert (keel_outstanding_accept (o, 2));
    cr_assert_not (keel_outstanding_accept (o, 2));
    cr_assert_eq (keel_outstanding_unaccepted (o), 2);
    keel_outstanding_resend_unaccepted (o);
    size_t n = keel_outstanding_take (o, 8, refs);
    cr_assert_eq (n, 2);
    cr_assert_eq (refs[0].task_id, 1);
    cr_assert_eq (refs[1].task_id, 3);
    keel_outstanding_destroy (&o);
}

Test (driver_outstanding, resends_every_held_task_to_a_new_broker)
{
    keel_outstanding_t *o = s_with_tasks (4);
    keel_outstanding_ref_t refs[8];
    keel_outstanding_take (o, 8, refs);
    for (uint64_t i = 0; i < 4; i++)
        keel_outstanding_accept (o, i);
    keel_outstanding_complete (o, 1);
    cr_assert (keel_outstanding_all_accepted (o));
    keel_outstanding_forget_accepted (o);
    cr_assert_not (keel_outstanding_all_accepted (o));
    size_t n = keel_outstanding_take (o, 8, refs);
    cr_assert_eq (n, 3);
    cr_assert_eq (refs[0].task_id, 0);
    cr_assert_eq (refs[1].task_id, 2);
    cr_assert_eq (refs[2].task_id, 3);
    keel_outstanding_destroy (&o);
}

Test (driver_outstanding, sends_a_refused_task_again)
{
    keel_outstanding_t *o = s_with_tasks (3);
    keel_outstanding_ref_t refs[8];
    keel_outstanding_take (o, 8, refs);
    keel_outstanding_unsend (o, 1);
    cr_assert (keel_outstanding_has_unsent (o));
    cr_assert_eq (keel_outstanding_take (o, 8, refs), 1);
    cr_assert_eq (refs[0].task_id, 1);
    keel_outstanding_destroy (&o);
}

Test (driver_outstanding, refuses_out_of_order_ids)
{
    keel_outstanding_t *o = s_with_tasks (1);
    cr_assert_eq (keel_outstanding_add (o, 5, s_copy ("x"), 1), KEEL_ERR_INVALID);
    cr_assert_eq (keel_outstanding_next_id (o), 1);
    keel_outstanding_destroy (&o);
}

Test (driver_outstanding, pops_held_tasks_lowest_first_for_cancellation)
{
    keel_outstanding_t *o = s_with_tasks (3);
    keel_outstanding_complete (o, 0);
    uint64_t id;
    cr_assert (keel_outstanding_pop (o, &id));
    cr_assert_eq (id, 1);
    cr_assert (keel_outstanding_pop (o, &id));
    cr_assert_eq (id, 2);
    cr_assert_not (keel_outstanding_pop (o, &id));
    cr_assert_eq (keel_outstanding_complete (o, 2), KEEL_OUTSTANDING_DUPLICATE);
    keel_outstanding_destroy (&o);
}

Test (driver_outstanding, keeps_memory_to_the_window_of_waiting_tasks)
{
    //  200,000 tasks streamed with results arriving behind: the table slides.
    keel_outstanding_t *o = keel_outstanding_new ();
    keel_outstanding_ref_t refs[256];
    uint64_t next_done = 0;
    for (uint64_t i = 0; i < 200000; i++) {
        cr_assert_eq (keel_outstanding_add (o, i, NULL, 0), KEEL_OK);
        if (i >= 1000)
            cr_assert_eq (keel_outstanding_complete (o, next_done++), KEEL_OUTSTANDING_NEW);
        if (i % 256 == 255)
            keel_outstanding_take (o, 256, refs);
    }
    cr_assert_eq (keel_outstanding_count (o), 1000);
    cr_assert_eq (keel_outstanding_complete (o, 5), KEEL_OUTSTANDING_DUPLICATE);
    keel_outstanding_destroy (&o);
}
