/*  actor_lend.h — who may touch the driver actor's sockets and state right
    now: its own thread, or the application thread that waits for results.

    Why. Without it every round trip crosses two thread hand-offs each way
    (tasks into the actor's pipe, the result back out), and on a loaded
    2-core machine a wake-up costs 10–40 µs. An application thread that
    waits for results (keel_driver_poll, _next_result, _wait_all) instead
    *borrows* the actor: it takes this token, runs the same turn code as
    the actor on the actor's state (actor.c keel_actor_lent_*: sends its
    tasks, polls the broker sockets, steps the session's timers, takes the
    results), gives the token back and runs its callbacks. The actor thread
    keeps the sockets whenever nobody waits.

    The exception to "threads share nothing" (STYLE.md). The actor's state
    (keel_actor_t: session, services, the main/old/probe DEALER sockets,
    rate limits, scratch buffers) is shared by two threads, and this token
    is what makes that safe:

    - Exactly one thread holds the token at a time (owner below, under
      `mutex`), and only the holder touches the actor's state or its broker
      sockets. ZeroMQ sockets are not thread-safe but may move between
      threads with a full memory barrier: taking and returning the token
      lock and unlock `mutex` (acquire/release) and add a sequentially
      consistent fence, so everything one holder wrote is visible to the
      next and libzmq's own socket state moves with it.
    - Nobody blocks in a socket call while not holding the token. The actor
      thread, between turns, polls the sockets' ZMQ_FD file descriptors
      (plain poll on an fd is not a socket call) and its own pipe end; the
      pipe's two ends are never lent (the application's end is the
      application thread's, the actor's end the actor thread's).
    - The actor never blocks on the token: when a lend is on, it parks
      (waits on its pipe, at most until a time it records here) and tries
      again. A lend that comes back owes the actor nothing unless it lasted
      its bound while the actor asked; then the next borrow waits for one
      actor turn. So a long wait hands the sockets back every bound
      (KEEL_LEND_BOUND_MS) even though the lender also runs the timers.
    - Commands the application sent through the pipe (OPEN, TASKS, CLOSE,
      CANCEL) are counted (`sent`, `applied`): a borrow waits until the
      actor has applied every one, so what the lender does directly never
      overtakes them.

    Shared fields, all read and written only under `mutex`: owner, lent_at,
    lend_ended_at, actor_wake_at, actor_asked, owed, app_waiting, sent,
    applied. bound_ms
    is written once before any thread starts. The mutex and condition
    variable are the only synchronisation; TSan sees both.

    What the caller must do with the answers: keel_lend_give_back returns
    true when the actor must look at its sockets now (the lender left input
    unread, replaced a socket the actor polls, made a deadline earlier than
    the actor will wake, or owes it a turn); the caller then sends "WAKE"
    on the pipe.
*/
#ifndef KEEL_DRIVER_ACTOR_LEND_H
#define KEEL_DRIVER_ACTOR_LEND_H

#include <stdbool.h>
#include <stdint.h>

#define KEEL_LEND_BOUND_MS 20 // a lend hands back at least this often

typedef struct _keel_lend_t keel_lend_t;

// A token owned by nobody; bound_ms > 0 bounds each lend. NULL when out
// of memory or the mutex cannot be made.
keel_lend_t *keel_lend_new (int64_t bound_ms);
// Frees it; no thread may use it any more. Idempotent.
void keel_lend_destroy (keel_lend_t **self_p);

// ---- the actor thread

// Takes the token for one turn and returns true when nobody holds it.
// When the application holds it, notes that the actor asked and that it
// parks until park_until (monotonic ms), and returns false; never blocks
// on a lend.
bool keel_lend_actor_try (keel_lend_t *self, int64_t park_until);
// Like keel_lend_actor_try, but also leaves the token free (and parks) when
// a lend ended less than a bound ago and the actor is not owed a turn: an
// application thread that waits in a loop borrows again within
// microseconds, and an actor turn in between would make that borrow wait
// for a thread wake-up. For an actor with nothing of its own to do (no
// command in its pipe, not woken); the lender runs the timers meanwhile
// and wakes the actor for any that falls due before park_until.
bool keel_lend_actor_try_yielding (keel_lend_t *self, int64_t park_until);
// The holder (the actor) applied n commands from the pipe.
void keel_lend_actor_applied (keel_lend_t *self, uint64_t n);
// Ends the actor's turn; it will look at its sockets again by wake_at
// (monotonic ms; INT64_MAX = only when woken). Wakes a waiting borrow.
void keel_lend_actor_release (keel_lend_t *self, int64_t wake_at);

// ---- the application thread

// The application sent one command on the pipe (before the next borrow).
void keel_lend_sent (keel_lend_t *self);
// Takes the token: waits while the actor is in a turn, has commands to
// apply or is owed a turn, at most max_wait_ms. Returns true with
// *until_p = when this lend must end (now + bound), false when the wait
// ran out (the caller falls back to the pipe).
bool keel_lend_borrow (keel_lend_t *self, int64_t max_wait_ms, int64_t *until_p);
// Returns the token. next_due = when the actor's state next needs a turn
// (a timer), wake = the lender knows the actor must look now. Returns true
// when the caller must wake the actor ("WAKE" on the pipe).
bool keel_lend_give_back (keel_lend_t *self, int64_t next_due, bool wake);

#endif
