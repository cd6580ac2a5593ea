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
        cr_assert_eq (keel_outstanding_add (o, (uint64_t) i, s_copy (text), strlen (text)),
                      KEEL_OK);
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

Test (driver_outstanding, tasks_accepted_alone_are_sent_again_after_a_welcome)
{
    keel_outstanding_t *o = s_with_tasks (4);
    keel_outstanding_ref_t refs[8];
    keel_outstanding_take (o, 8, refs);
    // 0 and 1 mirrored by the pair; 2 accepted by the active alone; 3 both
    // (a mirrored acceptance wins).
    keel_outstanding_accept (o, 0, false);
    keel_outstanding_accept (o, 1, false);
    keel_outstanding_accept (o, 2, true);
    keel_outstanding_accept (o, 3, true);
    keel_outstanding_accept (o, 3, false);
    cr_assert_eq (keel_outstanding_take (o, 8, refs), 0);
    keel_outstanding_forget_alone (o);
    keel_outstanding_resend_unaccepted (o);
    size_t n = keel_outstanding_take (o, 8, refs);
    cr_assert_eq (n, 1);
    cr_assert_eq (refs[0].task_id, 2);
    keel_outstanding_destroy (&o);
}

Test (driver_outstanding, resends_only_unaccepted_tasks_to_the_same_broker)
{
    keel_outstanding_t *o = s_with_tasks (4);
    keel_outstanding_ref_t refs[8];
    keel_outstanding_take (o, 8, refs);
    cr_assert (keel_outstanding_accept (o, 0, false));
    cr_assert (keel_outstanding_accept (o, 2, false));
    cr_assert_not (keel_outstanding_accept (o, 2, false));
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
        keel_outstanding_accept (o, i, false);
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

// ---------------------------------------------------------------- results held (issue 10 item 11)

//  Every range of list v[0..n) as "lo-hi," (hi exclusive) into text.
static void
s_ranges_text (const uint64_t *v, size_t n, char *text, size_t size)
{
    text[0] = 0;
    keel_ranges_reader_t r;
    keel_ranges_reader_init (&r, v, n);
    uint64_t lo, hi;
    size_t len = 0;
    while (keel_ranges_reader_next (&r, &lo, &hi) && len < size)
        len += (size_t) snprintf (text + len, size - len, "%llu-%llu,", (unsigned long long) lo,
                                  (unsigned long long) hi);
}

Test (driver_outstanding, describes_the_results_held_as_ranges_around_the_tasks_in_flight)
{
    keel_outstanding_t *o = s_with_tasks (10);
    uint64_t buf[16];
    keel_ranges_writer_t w;
    keel_ranges_writer_init (&w, buf, 16);
    uint64_t from = 0;
    keel_outstanding_delivered (o, &from, &w, NULL, 0);
    cr_assert_eq (w.n, 0, "nothing delivered yet");
    cr_assert_eq (from, 10);
    //  Results of 0, 1, 2, 5, 6 and 9 arrived; 3, 4, 7, 8 are in flight.
    uint64_t done[] = { 1, 0, 2, 5, 6, 9 };
    for (size_t i = 0; i < sizeof done / sizeof done[0]; i++)
        cr_assert_eq (keel_outstanding_complete (o, done[i]), KEEL_OUTSTANDING_NEW);
    keel_ranges_writer_init (&w, buf, 16);
    from = 0;
    keel_outstanding_delivered (o, &from, &w, NULL, 0);
    char text[200];
    s_ranges_text (buf, w.n, text, sizeof text);
    cr_assert_str_eq (text, "0-3,5-7,9-10,");
    cr_assert_eq (w.ids, 6);
    cr_assert_eq (from, 10);
    size_t at;
    cr_assert_null (keel_ranges_problem (buf, w.n, &at));
    keel_outstanding_destroy (&o);
}

//  Results taken by the application but not kept yet (keel_driver_hold_acks)
//  are left out: a broker told of them would never send them again.
Test (driver_outstanding, leaves_out_the_results_not_kept_yet)
{
    keel_outstanding_t *o = s_with_tasks (10);
    for (uint64_t id = 0; id < 10; id++)
        if (id != 4)
            keel_outstanding_complete (o, id); // 4 in flight
    uint64_t buf[16];
    keel_ranges_writer_t w;
    keel_ranges_writer_init (&w, buf, 16);
    uint64_t from = 0;
    const uint64_t not_kept[] = { 0, 2, 3, 9, 12 };
    keel_outstanding_delivered (o, &from, &w, not_kept, 5);
    char text[200];
    s_ranges_text (buf, w.n, text, sizeof text);
    cr_assert_str_eq (text, "1-2,5-9,");
    cr_assert_eq (w.ids, 5);
    cr_assert_eq (from, 10);
    // Below the window's base too (everything there was delivered).
    keel_outstanding_t *done = s_with_tasks (6);
    for (uint64_t id = 0; id < 6; id++)
        keel_outstanding_complete (done, id);
    keel_ranges_writer_init (&w, buf, 16);
    from = 0;
    const uint64_t one[] = { 3 };
    keel_outstanding_delivered (done, &from, &w, one, 1);
    s_ranges_text (buf, w.n, text, sizeof text);
    cr_assert_str_eq (text, "0-3,4-6,");
    keel_outstanding_destroy (&done);
    keel_outstanding_destroy (&o);
}

Test (driver_outstanding, continues_a_description_that_did_not_fit)
{
    keel_outstanding_t *o = s_with_tasks (10);
    for (uint64_t id = 0; id < 10; id += 2)
        keel_outstanding_complete (o, id); // 0, 2, 4, 6, 8 held: five ranges
    uint64_t buf[4];
    char all[200] = "", text[200];
    uint64_t from = 0;
    int chunks = 0;
    while (from < keel_outstanding_next_id (o) && chunks < 10) {
        keel_ranges_writer_t w;
        keel_ranges_writer_init (&w, buf, 4); // two ranges per chunk
        keel_outstanding_delivered (o, &from, &w, NULL, 0);
        if (w.n == 0)
            break;
        s_ranges_text (buf, w.n, text, sizeof text);
        strcat (all, text);
        chunks++;
    }
    cr_assert_str_eq (all, "0-1,2-3,4-5,6-7,8-9,");
    cr_assert_eq (chunks, 3);
    keel_outstanding_destroy (&o);
}

//  A million tasks finished in order but for a few in flight: the list
//  stays a handful of entries, whatever the window's shape.
Test (driver_outstanding, describes_a_million_results_in_a_few_entries)
{
    keel_outstanding_t *o = keel_outstanding_new ();
    for (uint64_t id = 0; id < 1000000; id++)
        cr_assert_eq (keel_outstanding_add (o, id, NULL, 0), KEEL_OK);
    for (uint64_t id = 0; id < 1000000; id++)
        if (id != 999000 && id != 999500 && id < 999900)
            keel_outstanding_complete (o, id);
    uint64_t buf[16];
    keel_ranges_writer_t w;
    keel_ranges_writer_init (&w, buf, 16);
    uint64_t from = 0;
    keel_outstanding_delivered (o, &from, &w, NULL, 0);
    cr_assert_eq (w.n, 6, "%zu entries", w.n);
    cr_assert_eq (w.ids, 999900 - 2);
    char text[200];
    s_ranges_text (buf, w.n, text, sizeof text);
    cr_assert_str_eq (text, "0-999000,999001-999500,999501-999900,");
    cr_assert_eq (keel_outstanding_count (o), 102);
    keel_outstanding_destroy (&o);
}
