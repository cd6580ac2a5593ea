/*  test_engine_held.c — engine/held.h: the executions an engine holds,
    looked up by id through an index that must stay right across adds,
    swap-removes, regrowth and clears.
*/
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "held.h"

#define S_N 5000

// Ids that collide in the index's low bits as well as random-looking ones.
static uint64_t
s_id (int i)
{
    return i % 2 ? (uint64_t) i << 32 : 0x10000000000ULL + (uint64_t) i * 7919;
}

static void
s_check (keel_held_t *held, const bool *present)
{
    size_t want = 0;
    for (int i = 0; i < S_N; i++) {
        keel_held_task_t *t = keel_held_find (held, s_id (i));
        if (present[i]) {
            want++;
            cr_assert_not_null (t, "id %d lost", i);
            cr_assert_eq (t->execution_id, s_id (i));
            cr_assert_eq (t->task_id, (uint64_t) i);
        }
        else
            cr_assert_null (t, "id %d found after its removal", i);
    }
    cr_assert_eq (keel_held_size (held), want);
    for (size_t k = 0; k < want; k++) {
        keel_held_task_t *t = keel_held_at (held, k);
        cr_assert_not_null (t);
        cr_assert_eq (keel_held_find (held, t->execution_id), t);
    }
}

Test (held, finds_every_task_across_adds_removes_and_clear)
{
    keel_held_t *held = keel_held_new ();
    cr_assert_not_null (held);
    cr_assert_null (keel_held_find (held, 42));
    cr_assert_not (keel_held_remove (held, 42));
    static bool present[S_N];
    for (int i = 0; i < S_N; i++) {
        cr_assert_not_null (keel_held_add (held, s_id (i), "svc", (uint64_t) i, "double"));
        present[i] = true;
    }
    cr_assert_null (keel_held_add (held, s_id (7), "svc", 7, "double"), "duplicate id accepted");
    s_check (held, present);
    srand (7);
    for (int n = 0; n < S_N / 2; n++) {
        int i = rand () % S_N;
        cr_assert_eq (keel_held_remove (held, s_id (i)), present[i]);
        present[i] = false;
    }
    s_check (held, present);
    keel_held_task_t *t = keel_held_find (held, s_id (S_N - 1));
    if (t)
        cr_assert (keel_held_finish (t, true, (const uint8_t *) "2", 1, 0));
    for (int i = 0; i < S_N; i += 3)
        if (!present[i]) {
            cr_assert_not_null (keel_held_add (held, s_id (i), "svc", (uint64_t) i, "double"));
            present[i] = true;
        }
    s_check (held, present);
    keel_held_clear (held);
    for (int i = 0; i < S_N; i++)
        present[i] = false;
    s_check (held, present);
    cr_assert_not_null (keel_held_add (held, s_id (1), "svc", 1, "double"));
    keel_held_destroy (&held);
    cr_assert_null (held);
}

Test (held, a_permanent_failure_is_carried_in_the_result_view_and_back_from_the_spool)
{
    keel_held_t *held = keel_held_new ();
    keel_held_task_t *t = keel_held_add (held, 7, "svc", 3, "render");
    cr_assert_not_null (t);
    const char error[] = "exit status 127";
    cr_assert (keel_held_finish (t, false, (const uint8_t *) error, sizeof error - 1, 5));
    t->permanent = true;
    Keel__Result view;
    keel_held_result_view (t, &view);
    cr_assert (view.has_permanent && view.permanent);
    cr_assert_str_eq (view.error, error);
    //  As loaded from the spool at start: the flag survives.
    view.execution_id = 8;
    keel_held_task_t *loaded = keel_held_add_done (held, &view);
    cr_assert_not_null (loaded);
    cr_assert (loaded->permanent);
    Keel__Result again;
    keel_held_result_view (loaded, &again);
    cr_assert (again.has_permanent && again.permanent);
    //  An ordinary failure says nothing.
    keel_held_task_t *plain = keel_held_add (held, 9, "svc", 4, "fail");
    cr_assert (keel_held_finish (plain, false, (const uint8_t *) "no", 2, 1));
    keel_held_result_view (plain, &view);
    cr_assert (!view.has_permanent);
    keel_held_destroy (&held);
}
