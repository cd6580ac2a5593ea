/*  actor_lend.c — the token that lends the driver actor to the application
    thread while it waits. See actor_lend.h for the rules and why the shared
    fields are safe.
*/
#include "actor_lend.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <czmq.h>

typedef enum { S_NOBODY = 0, S_ACTOR, S_APP } s_owner_t;

struct _keel_lend_t {
    pthread_mutex_t mutex;
    pthread_cond_t cond; // broadcast when the actor ends a turn and a borrow waits
    int64_t bound_ms;    // written once, before any thread starts
    //  Everything below only under mutex.
    s_owner_t owner;
    int64_t lent_at;       // when the current lend began
    int64_t lend_ended_at; // when the last lend ended
    int64_t actor_wake_at; // the actor looks at its sockets again by then
    bool actor_asked;      // the actor found the token lent during this lend
    bool owed;             // a lend lasted its bound while the actor asked: the actor goes next
    bool app_waiting;      // a borrow waits on cond
    uint64_t sent;         // commands the application sent on the pipe
    uint64_t applied;      // commands the actor applied
};

//  ZeroMQ wants a full barrier when a socket changes threads; the mutex
//  gives acquire/release, this makes it a full fence on every platform.
//  (TSan does not model fences and reasons from the mutex instead.)
static void
s_fence (void)
{
#if !defined(__SANITIZE_THREAD__)
    __atomic_thread_fence (__ATOMIC_SEQ_CST);
#endif
}

keel_lend_t *
keel_lend_new (int64_t bound_ms)
{
    assert (bound_ms > 0);
    keel_lend_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    pthread_condattr_t attr;
    if (pthread_condattr_init (&attr) != 0) {
        free (self);
        return NULL;
    }
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    bool ok = pthread_cond_init (&self->cond, &attr) == 0;
    pthread_condattr_destroy (&attr);
    if (ok && pthread_mutex_init (&self->mutex, NULL) != 0) {
        pthread_cond_destroy (&self->cond);
        ok = false;
    }
    if (!ok) {
        free (self);
        return NULL;
    }
    self->bound_ms = bound_ms;
    self->actor_wake_at = INT64_MAX;
    return self;
}

void
keel_lend_destroy (keel_lend_t **self_p)
{
    assert (self_p);
    keel_lend_t *self = *self_p;
    if (!self)
        return;
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->mutex);
    free (self);
    *self_p = NULL;
}

// ---------------------------------------------------------------- actor thread

static bool
s_actor_try (keel_lend_t *self, int64_t park_until, bool yielding)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    bool taken = self->owner == S_NOBODY;
    if (taken && yielding && !self->owed && self->lend_ended_at > 0
        && zclock_mono () - self->lend_ended_at < self->bound_ms) {
        self->actor_wake_at = park_until;
        pthread_mutex_unlock (&self->mutex);
        return false;
    }
    if (taken)
        self->owner = S_ACTOR;
    else {
        assert (self->owner == S_APP); // only the actor thread takes it as the actor
        self->actor_asked = true;
        self->actor_wake_at = park_until;
    }
    pthread_mutex_unlock (&self->mutex);
    if (taken)
        s_fence ();
    return taken;
}

bool
keel_lend_actor_try (keel_lend_t *self, int64_t park_until)
{
    return s_actor_try (self, park_until, false);
}

bool
keel_lend_actor_try_yielding (keel_lend_t *self, int64_t park_until)
{
    return s_actor_try (self, park_until, true);
}

void
keel_lend_actor_applied (keel_lend_t *self, uint64_t n)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    assert (self->owner == S_ACTOR);
    self->applied += n;
    pthread_mutex_unlock (&self->mutex);
}

void
keel_lend_actor_release (keel_lend_t *self, int64_t wake_at)
{
    assert (self);
    s_fence ();
    pthread_mutex_lock (&self->mutex);
    assert (self->owner == S_ACTOR);
    self->owner = S_NOBODY;
    self->actor_wake_at = wake_at;
    self->owed = false;
    if (self->app_waiting)
        pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
}

// ---------------------------------------------------------------- application thread

void
keel_lend_sent (keel_lend_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    self->sent++;
    pthread_mutex_unlock (&self->mutex);
}

bool
keel_lend_borrow (keel_lend_t *self, int64_t max_wait_ms, int64_t *until_p)
{
    assert (self && until_p);
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    int64_t deadline_ns = (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec
                          + (max_wait_ms > 0 ? max_wait_ms : 0) * 1000000;
    struct timespec abs = { (time_t) (deadline_ns / 1000000000),
                            (long) (deadline_ns % 1000000000) };
    pthread_mutex_lock (&self->mutex);
    assert (self->owner != S_APP); // one application thread, no nested lends
    bool ready = false;
    //  Each turn waits for a broadcast or the deadline: bounded.
    for (;;) {
        ready = self->owner == S_NOBODY && self->applied >= self->sent && !self->owed;
        if (ready)
            break;
        self->app_waiting = true;
        if (pthread_cond_timedwait (&self->cond, &self->mutex, &abs) == ETIMEDOUT) {
            ready = self->owner == S_NOBODY && self->applied >= self->sent && !self->owed;
            break;
        }
    }
    self->app_waiting = false;
    if (ready) {
        self->owner = S_APP;
        self->lent_at = zclock_mono ();
        self->actor_asked = false;
        *until_p = self->lent_at + self->bound_ms;
    }
    pthread_mutex_unlock (&self->mutex);
    if (ready)
        s_fence ();
    return ready;
}

bool
keel_lend_give_back (keel_lend_t *self, int64_t next_due, bool wake)
{
    assert (self);
    s_fence ();
    pthread_mutex_lock (&self->mutex);
    assert (self->owner == S_APP);
    int64_t now = zclock_mono ();
    bool kick = wake || next_due < self->actor_wake_at;
    if (now - self->lent_at >= self->bound_ms && self->actor_asked) {
        self->owed = true;
        kick = true;
    }
    self->owner = S_NOBODY;
    self->lend_ended_at = now;
    pthread_mutex_unlock (&self->mutex);
    return kick;
}
