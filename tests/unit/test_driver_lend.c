/*  test_driver_lend.c — the token that lends the driver actor's sockets to
    the application thread (driver/actor_lend.h): one holder at a time under
    concurrent use, borrows that wait for the actor's turn and its commands,
    the bound that hands a long lend back, and when the actor is woken. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <czmq.h>

#include "../../driver/actor_lend.h"

#define S_BOUND_MS 20

//  Polls cond until it holds or deadline_ms passes; returns whether it held.
#define S_EVENTUALLY(cond, deadline_ms)                                                            \
    ({                                                                                             \
        int64_t s_until = zclock_mono () + (deadline_ms);                                          \
        while (!(cond) && zclock_mono () < s_until)                                                \
            zclock_sleep (1);                                                                      \
        (cond);                                                                                    \
    })

// ---------------------------------------------------------------- a scripted actor thread

typedef struct {
    keel_lend_t *lend;
    atomic_int step;     // what the test asks the actor to do next
    atomic_int done;     // the last step the actor finished
    atomic_bool holding; // the actor holds the token
    int64_t hold_ms;     // how long a turn lasts
    uint64_t apply;      // commands a turn applies
} s_actor_t;

enum { S_NOTHING = 0, S_TRY_ONCE, S_TURN, S_QUIT };

//  Does each step the test asks for, once: S_TRY_ONCE tries once (and is
//  refused while lent), S_TURN retries until it gets a turn, holds it
//  hold_ms and applies `apply` commands.
static void *
s_actor_thread (void *arg)
{
    s_actor_t *a = arg;
    int64_t deadline = zclock_mono () + 10000;
    while (zclock_mono () < deadline) {
        int step = atomic_load (&a->step);
        if (step == S_QUIT)
            break;
        if (step == S_NOTHING) {
            zclock_sleep (1);
            continue;
        }
        if (step == S_TRY_ONCE) {
            if (keel_lend_actor_try (a->lend, zclock_mono () + S_BOUND_MS))
                keel_lend_actor_release (a->lend, INT64_MAX);
        }
        else {
            while (!keel_lend_actor_try (a->lend, zclock_mono () + 1))
                zclock_sleep (1);
            atomic_store (&a->holding, true);
            zclock_sleep ((int) a->hold_ms);
            if (a->apply)
                keel_lend_actor_applied (a->lend, a->apply);
            atomic_store (&a->holding, false);
            keel_lend_actor_release (a->lend, INT64_MAX);
        }
        atomic_store (&a->step, S_NOTHING);
        atomic_store (&a->done, step);
    }
    return NULL;
}

static void
s_ask (s_actor_t *a, int step)
{
    atomic_store (&a->done, S_NOTHING);
    atomic_store (&a->step, step);
    cr_assert (S_EVENTUALLY (atomic_load (&a->done) == step, 5000), "actor did not do step %d",
               step);
}

// ---------------------------------------------------------------- one thread

Test (driver_lend, actor_is_refused_while_the_token_is_lent_and_gets_it_back_after)
{
    keel_lend_t *lend = keel_lend_new (S_BOUND_MS);
    cr_assert_not_null (lend);
    int64_t until = 0;
    int64_t before = zclock_mono ();
    cr_assert (keel_lend_borrow (lend, 0, &until));
    cr_assert_geq (until, before + S_BOUND_MS);
    cr_assert_not (keel_lend_actor_try (lend, zclock_mono () + S_BOUND_MS));
    //  A short lend owes the actor nothing and its park covers every timer.
    cr_assert_not (keel_lend_give_back (lend, INT64_MAX, false));
    cr_assert (keel_lend_actor_try (lend, 0));
    keel_lend_actor_release (lend, INT64_MAX);
    keel_lend_destroy (&lend);
    cr_assert_null (lend);
    keel_lend_destroy (&lend);
}

Test (driver_lend, give_back_wakes_the_actor_only_when_it_must_look_now)
{
    keel_lend_t *lend = keel_lend_new (S_BOUND_MS);
    int64_t until, now = zclock_mono ();
    cr_assert (keel_lend_actor_try (lend, 0));
    keel_lend_actor_release (lend, now + 1000); // the actor polls for up to a second
    cr_assert (keel_lend_borrow (lend, 0, &until));
    cr_assert (keel_lend_give_back (lend, now + 10, false), "a timer due before the actor wakes");
    cr_assert (keel_lend_borrow (lend, 0, &until));
    cr_assert_not (keel_lend_give_back (lend, now + 5000, false), "nothing due before it wakes");
    cr_assert (keel_lend_borrow (lend, 0, &until));
    cr_assert (keel_lend_give_back (lend, now + 5000, true), "the lender left input unread");
    keel_lend_destroy (&lend);
}

// ---------------------------------------------------------------- two threads

Test (driver_lend, a_borrow_waits_for_the_actor_turn_to_end)
{
    s_actor_t a = { .lend = keel_lend_new (S_BOUND_MS), .hold_ms = 60 };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_actor_thread, &a), 0);
    atomic_store (&a.step, S_TURN);
    cr_assert (S_EVENTUALLY (atomic_load (&a.holding), 5000));
    int64_t until, t0 = zclock_mono ();
    cr_assert (keel_lend_borrow (a.lend, 5000, &until));
    cr_assert_not (atomic_load (&a.holding), "borrowed while the actor was in its turn");
    cr_assert_geq (zclock_mono () - t0, 30);
    keel_lend_give_back (a.lend, INT64_MAX, false);
    atomic_store (&a.step, S_QUIT);
    pthread_join (thread, NULL);
    keel_lend_destroy (&a.lend);
}

Test (driver_lend, a_borrow_waits_until_the_actor_applied_every_command_sent)
{
    s_actor_t a = { .lend = keel_lend_new (S_BOUND_MS), .apply = 2 };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_actor_thread, &a), 0);
    keel_lend_sent (a.lend);
    keel_lend_sent (a.lend);
    int64_t until;
    //  Two commands in the pipe, none applied: a lend would overtake them.
    cr_assert_not (keel_lend_borrow (a.lend, 30, &until));
    s_ask (&a, S_TURN);
    cr_assert (keel_lend_borrow (a.lend, 0, &until));
    keel_lend_give_back (a.lend, INT64_MAX, false);
    atomic_store (&a.step, S_QUIT);
    pthread_join (thread, NULL);
    keel_lend_destroy (&a.lend);
}

Test (driver_lend, a_lend_that_lasts_its_bound_while_the_actor_asked_owes_it_a_turn)
{
    s_actor_t a = { .lend = keel_lend_new (S_BOUND_MS) };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_actor_thread, &a), 0);
    int64_t until;
    cr_assert (keel_lend_borrow (a.lend, 0, &until));
    s_ask (&a, S_TRY_ONCE); // refused: the actor asked
    while (zclock_mono () < until)
        zclock_sleep (1);
    cr_assert (keel_lend_give_back (a.lend, INT64_MAX, false), "the actor must be woken");
    //  Owed: no lend before the actor has had its turn.
    cr_assert_not (keel_lend_borrow (a.lend, 30, &until));
    s_ask (&a, S_TURN);
    cr_assert (keel_lend_borrow (a.lend, 0, &until));
    //  A lend of the same length the actor did not ask for owes nothing.
    while (zclock_mono () < until)
        zclock_sleep (1);
    cr_assert_not (keel_lend_give_back (a.lend, INT64_MAX, false));
    cr_assert (keel_lend_borrow (a.lend, 0, &until));
    keel_lend_give_back (a.lend, INT64_MAX, false);
    atomic_store (&a.step, S_QUIT);
    pthread_join (thread, NULL);
    keel_lend_destroy (&a.lend);
}

// ---------------------------------------------------------------- under load

//  Both threads loop taking the token and, while holding it, check that
//  nobody else is inside and update plain (non-atomic) state, as the actor
//  and a lender update keel_actor_t. The app thread lends for the whole
//  bound now and then, and wakes the actor when give_back says so; the
//  actor parks as actor.c does.
typedef struct {
    keel_lend_t *lend;
    atomic_int inside;
    atomic_bool overlap;
    atomic_bool app_done;
    atomic_int kicks;
    uint64_t counter; // plain: only the holder touches it
    uint64_t actor_turns, app_lends;
    int64_t max_actor_gap_ms; // longest wait of the actor for a turn while the app lends
} s_shared_t;

static void
s_inside (s_shared_t *sh)
{
    if (atomic_fetch_add (&sh->inside, 1) != 0)
        atomic_store (&sh->overlap, true);
    sh->counter++;
    atomic_fetch_sub (&sh->inside, 1);
}

static void *
s_busy_actor (void *arg)
{
    s_shared_t *sh = arg;
    int64_t last_turn = zclock_mono ();
    while (!atomic_load (&sh->app_done)) {
        int64_t now = zclock_mono ();
        if (!keel_lend_actor_try_yielding (sh->lend, now + S_BOUND_MS)) {
            //  Parked: until a kick or the park ends.
            int64_t park_end = now + S_BOUND_MS;
            while (zclock_mono () < park_end && atomic_load (&sh->kicks) == 0
                   && !atomic_load (&sh->app_done))
                zclock_sleep (1);
            atomic_store (&sh->kicks, 0);
            continue;
        }
        now = zclock_mono ();
        if (now - last_turn > sh->max_actor_gap_ms)
            sh->max_actor_gap_ms = now - last_turn;
        last_turn = now;
        s_inside (sh);
        sh->actor_turns++;
        keel_lend_actor_release (sh->lend, zclock_mono () + 1);
    }
    return NULL;
}

Test (driver_lend, exactly_one_thread_holds_the_token_under_concurrent_use)
{
    s_shared_t sh = { .lend = keel_lend_new (S_BOUND_MS) };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_busy_actor, &sh), 0);
    int64_t end = zclock_mono () + 600;
    for (uint64_t i = 0; zclock_mono () < end; i++) {
        int64_t until;
        cr_assert (keel_lend_borrow (sh.lend, 1000, &until), "borrow %" PRIu64 " waited 1 s", i);
        s_inside (&sh);
        sh.app_lends++;
        if (i % 50 == 49) //  now and then a lend that lasts its bound
            while (zclock_mono () < until)
                s_inside (&sh);
        if (keel_lend_give_back (sh.lend, INT64_MAX, false))
            atomic_fetch_add (&sh.kicks, 1);
    }
    atomic_store (&sh.app_done, true);
    pthread_join (thread, NULL);
    cr_assert_not (atomic_load (&sh.overlap), "two threads held the token at once");
    cr_assert_gt (sh.app_lends, 100);
    cr_assert_gt (sh.actor_turns, 10, "the actor got %" PRIu64 " turns", sh.actor_turns);
    //  The actor's turns never wait much longer than one bound plus one park.
    cr_assert_lt (sh.max_actor_gap_ms, 4 * S_BOUND_MS + 100, "actor waited %" PRId64 " ms",
                  sh.max_actor_gap_ms);
    keel_lend_destroy (&sh.lend);
}

Test (driver_lend, an_idle_actor_leaves_the_token_to_a_lender_that_just_gave_it_back)
{
    keel_lend_t *lend = keel_lend_new (S_BOUND_MS);
    int64_t until;
    //  Never lent: nothing to yield to.
    cr_assert (keel_lend_actor_try_yielding (lend, 0));
    keel_lend_actor_release (lend, INT64_MAX);
    cr_assert (keel_lend_borrow (lend, 0, &until));
    cr_assert_not (keel_lend_give_back (lend, INT64_MAX, false));
    //  The lender will be back within microseconds: an idle actor parks...
    cr_assert_not (keel_lend_actor_try_yielding (lend, zclock_mono () + S_BOUND_MS));
    //  ... and says when it looks again, so an earlier timer wakes it.
    cr_assert (keel_lend_borrow (lend, 0, &until));
    cr_assert (keel_lend_give_back (lend, zclock_mono () + 1, false));
    //  An actor with work of its own (a command, a kick) takes it at once.
    cr_assert (keel_lend_actor_try (lend, 0));
    keel_lend_actor_release (lend, INT64_MAX);
    //  A bound after the last lend the actor takes it even when idle.
    int64_t later = zclock_mono () + S_BOUND_MS + 1;
    while (zclock_mono () < later)
        zclock_sleep (1);
    cr_assert (keel_lend_actor_try_yielding (lend, 0));
    keel_lend_actor_release (lend, INT64_MAX);
    keel_lend_destroy (&lend);
}
