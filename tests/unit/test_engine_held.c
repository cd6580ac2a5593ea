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

// ------------------------------------------------------------ the lifecycle

#define S_STATES 5
#define S_EVENTS 9
#define X        (-1) // refused

//  held.h's table, written out again: expected[state][event], events in
//  the order FINISHED SENT SPOOLED CARRIED LEFT_OUT HELD LOGGED_IN
//  DISCONNECTED ACKED.
static const int s_expected[S_STATES][S_EVENTS] = {
    [KEEL_HELD_RUNNING] = { KEEL_HELD_DONE, X, X, X, X, KEEL_HELD_RUNNING, KEEL_HELD_RUNNING,
                            KEEL_HELD_RUNNING, X },
    [KEEL_HELD_DONE] = { X, KEEL_HELD_SENT, KEEL_HELD_DONE, KEEL_HELD_IN_LOGIN, KEEL_HELD_DONE,
                         KEEL_HELD_DONE, KEEL_HELD_DONE, KEEL_HELD_DONE, KEEL_HELD_ACKED },
    [KEEL_HELD_IN_LOGIN] = { X, X, KEEL_HELD_IN_LOGIN, KEEL_HELD_IN_LOGIN, KEEL_HELD_DONE,
                             KEEL_HELD_SENT, KEEL_HELD_DONE, KEEL_HELD_DONE, KEEL_HELD_ACKED },
    [KEEL_HELD_SENT] = { X, X, KEEL_HELD_SENT, X, X, KEEL_HELD_SENT, KEEL_HELD_SENT, KEEL_HELD_DONE,
                         KEEL_HELD_ACKED },
    [KEEL_HELD_ACKED] = { X, X, X, X, X, X, X, X, X },
};

//  A fresh task brought to state through legal events only.
static keel_held_task_t *
s_task_in (keel_held_t *held, keel_held_state_t state)
{
    static uint64_t next_id = 1000;
    keel_held_task_t *t = keel_held_add (held, next_id++, "svc", 1, "echo");
    cr_assert_not_null (t);
    cr_assert_eq (t->state, KEEL_HELD_RUNNING);
    if (state == KEEL_HELD_RUNNING)
        return t;
    cr_assert (keel_held_finish (t, true, (const uint8_t *) "ok", 2, 3));
    switch (state) {
        case KEEL_HELD_IN_LOGIN:
            cr_assert (keel_held_step (t, KEEL_HELD_EV_CARRIED));
            break;
        case KEEL_HELD_SENT:
            cr_assert (keel_held_step (t, KEEL_HELD_EV_SENT));
            break;
        case KEEL_HELD_ACKED:
            cr_assert (keel_held_step (t, KEEL_HELD_EV_ACKED));
            break;
        default:
            break;
    }
    cr_assert_eq (t->state, state);
    return t;
}

Test (held, every_state_takes_the_events_of_its_table_and_refuses_the_others)
{
    keel_held_t *held = keel_held_new ();
    for (int st = 0; st < S_STATES; st++)
        for (int ev = 0; ev < S_EVENTS; ev++) {
            keel_held_task_t *t = s_task_in (held, (keel_held_state_t) st);
            bool spooled = t->spooled;
            bool legal = keel_held_step (t, (keel_held_event_t) ev);
            int want = s_expected[st][ev];
            cr_assert_eq (legal, want != X, "%s + %s: legal=%d",
                          keel_held_state_name ((keel_held_state_t) st),
                          keel_held_event_name ((keel_held_event_t) ev), legal);
            cr_assert_eq ((int) t->state, want == X ? st : want, "%s + %s -> %s",
                          keel_held_state_name ((keel_held_state_t) st),
                          keel_held_event_name ((keel_held_event_t) ev),
                          keel_held_state_name (t->state));
            //  Only a legal SPOOLED sets the flag; a refused event changes nothing.
            cr_assert_eq (t->spooled, spooled || (legal && ev == KEEL_HELD_EV_SPOOLED));
        }
    cr_assert_str_eq (keel_held_state_name (KEEL_HELD_IN_LOGIN), "in-login");
    cr_assert_str_eq (keel_held_event_name (KEEL_HELD_EV_DISCONNECTED), "disconnected");
    cr_assert_str_eq (keel_held_state_name ((keel_held_state_t) 99), "?");
    cr_assert_str_eq (keel_held_event_name ((keel_held_event_t) 99), "?");
    keel_held_destroy (&held);
}

Test (held, a_result_replaces_the_pending_checkpoint_and_is_recorded_once)
{
    keel_held_t *held = keel_held_new ();
    keel_held_task_t *t = keel_held_add (held, 1, "svc", 1, "count");
    cr_assert (keel_held_set_checkpoint (t, (const uint8_t *) "37", 2));
    cr_assert (t->checkpoint_pending);
    cr_assert_eq (t->checkpoint_size, 2);
    cr_assert (keel_held_finish (t, true, (const uint8_t *) "0-99", 4, 12));
    cr_assert_eq (t->state, KEEL_HELD_DONE);
    cr_assert (keel_held_is_done (t));
    cr_assert_not (t->checkpoint_pending, "the result supersedes the memory");
    cr_assert_eq (t->run_us, 12);
    //  A second result (a late worker report) is refused and changes nothing.
    cr_assert_not (keel_held_finish (t, false, (const uint8_t *) "late", 4, 99));
    cr_assert (t->ok);
    cr_assert_eq (t->output_size, 4);
    cr_assert_null (t->error);
    cr_assert_eq (t->run_us, 12);
    //  A done task takes no checkpoint.
    cr_assert_not (keel_held_set_checkpoint (t, (const uint8_t *) "38", 2));
    cr_assert_eq (keel_held_result_bytes (t), 4);
    keel_held_destroy (&held);
}

Test (held, a_result_the_login_carried_is_resent_unless_the_broker_holds_it)
{
    keel_held_t *held = keel_held_new ();
    keel_held_task_t *kept = s_task_in (held, KEEL_HELD_DONE);
    keel_held_task_t *holds = s_task_in (held, KEEL_HELD_DONE);
    keel_held_task_t *later = s_task_in (held, KEEL_HELD_RUNNING);
    keel_held_task_t *big = s_task_in (held, KEEL_HELD_DONE);
    //  The login carries two, leaves the big one out (listed as running).
    cr_assert (keel_held_step (kept, KEEL_HELD_EV_CARRIED));
    cr_assert (keel_held_step (holds, KEEL_HELD_EV_CARRIED));
    cr_assert (keel_held_step (big, KEEL_HELD_EV_LEFT_OUT));
    //  One finishes after the login left.
    cr_assert (keel_held_finish (later, true, (const uint8_t *) "x", 1, 0));
    //  Verdicts: HOLD for holds, later and big (listed running), none for kept.
    cr_assert (keel_held_step (holds, KEEL_HELD_EV_HELD));
    cr_assert (keel_held_step (later, KEEL_HELD_EV_HELD));
    cr_assert (keel_held_step (big, KEEL_HELD_EV_HELD));
    for (size_t i = 0; i < keel_held_size (held); i++)
        cr_assert (keel_held_step (keel_held_at (held, i), KEEL_HELD_EV_LOGGED_IN));
    cr_assert_eq (holds->state, KEEL_HELD_SENT, "the broker holds what the login carried");
    cr_assert_eq (kept->state, KEEL_HELD_DONE, "not held: offered again");
    cr_assert_eq (later->state, KEEL_HELD_DONE, "finished after the login: still to send");
    cr_assert_eq (big->state, KEEL_HELD_DONE, "left out of the login: still to send");
    //  The connection drops: nothing sent on it counts any more.
    cr_assert (keel_held_step (holds, KEEL_HELD_EV_DISCONNECTED));
    cr_assert_eq (holds->state, KEEL_HELD_DONE);
    keel_held_destroy (&held);
}

Test (held, running_entries_are_counted_listed_and_removed_at_stop)
{
    keel_held_t *held = keel_held_new ();
    for (int i = 0; i < 10; i++) {
        keel_held_task_t *t = keel_held_add (held, (uint64_t) i, "svc", (uint64_t) i, "sleep");
        if (i % 3 == 0)
            cr_assert (keel_held_finish (t, true, NULL, 0, 0));
    }
    cr_assert_eq (keel_held_running (held), 6);
    uint64_t ids[10];
    cr_assert_eq (keel_held_running_ids (held, ids, 4), 4);
    size_t n = keel_held_running_ids (held, ids, 10);
    cr_assert_eq (n, 6);
    for (size_t i = 0; i < n; i++)
        cr_assert_neq (ids[i] % 3, 0);
    keel_held_remove_running (held);
    cr_assert_eq (keel_held_size (held), 4);
    cr_assert_eq (keel_held_running (held), 0);
    for (uint64_t id = 0; id < 10; id++)
        cr_assert_eq (keel_held_find (held, id) != NULL, id % 3 == 0);
    keel_held_destroy (&held);
}
