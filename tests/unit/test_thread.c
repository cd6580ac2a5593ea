/*  test_thread.c — keel_thread (common/thread.h): the zactor protocol on a
    thread that keel_thread_destroy joins.
*/
#include <criterion/criterion.h>
#include <stdatomic.h>

#include "thread.h"

typedef struct {
    atomic_int finished; // set by the handler as its very last step
    int echoed;
    bool return_early; // returns after one message, before any $TERM
    int linger_ms;     // how long the handler waits before it ends
} s_state_t;

// Echoes every message but "$TERM"; waits a little before it ends, so a
// destroy that did not wait for the end would see finished == 0.
static void
s_handler (zsock_t *pipe, void *args)
{
    s_state_t *state = args;
    zsock_signal (pipe, 0);
    while (true) {
        char *text = zstr_recv (pipe);
        if (!text)
            break;
        bool term = strcmp (text, "$TERM") == 0;
        if (!term) {
            zstr_send (pipe, text);
            state->echoed++;
        }
        zstr_free (&text);
        if (term || state->return_early)
            break;
    }
    zclock_sleep (state->linger_ms);
    atomic_store (&state->finished, 1);
}

Test (thread, messages_go_both_ways_and_destroy_returns_after_the_handler)
{
    s_state_t state = { .linger_ms = 50 };
    keel_thread_t *thread = keel_thread_new (s_handler, &state);
    cr_assert_not_null (thread);
    zsock_t *pipe = keel_thread_pipe (thread);
    zsock_set_rcvtimeo (pipe, 5000);
    for (int i = 0; i < 3; i++) {
        zstr_sendf (pipe, "hello %d", i);
        char *back = zstr_recv (pipe);
        cr_assert_not_null (back, "no echo");
        char want[16];
        snprintf (want, sizeof want, "hello %d", i);
        cr_assert_str_eq (back, want);
        zstr_free (&back);
    }
    keel_thread_destroy (&thread);
    cr_assert_null (thread);
    cr_assert_eq (state.echoed, 3);
    cr_assert_eq (atomic_load (&state.finished), 1, "destroy returned before the handler ended");
    keel_thread_destroy (&thread); // NULL-safe
}

// A handler that returns on its own (its work is over) has signalled
// already: destroy reads that signal, does not wait for another, and joins.
Test (thread, a_handler_that_ended_by_itself_is_destroyed_without_a_hang, .timeout = 30)
{
    s_state_t state = { .return_early = true, .linger_ms = 50 };
    keel_thread_t *thread = keel_thread_new (s_handler, &state);
    cr_assert_not_null (thread);
    zsock_t *pipe = keel_thread_pipe (thread);
    zsock_set_rcvtimeo (pipe, 5000);
    zstr_send (pipe, "once");
    char *back = zstr_recv (pipe);
    cr_assert_str_eq (back, "once");
    zstr_free (&back);
    keel_thread_destroy (&thread);
    cr_assert_eq (atomic_load (&state.finished), 1);
}

// Many in a row: each joined thread's pipe is closed (a leak would run the
// process out of sockets or file descriptors long before 500).
Test (thread, five_hundred_threads_started_and_joined_in_turn)
{
    for (int i = 0; i < 500; i++) {
        s_state_t state = { 0 };
        keel_thread_t *thread = keel_thread_new (s_handler, &state);
        cr_assert_not_null (thread, "thread %d", i);
        keel_thread_destroy (&thread);
    }
}
