/*  syncer.c — fdatasync of the store's WAL in a thread of its own. See syncer.h.

    Protocol on the actor's pipe (zsock picture):
      loop -> thread   "8"   commit seq to make durable
      thread -> loop   "84"  seq now durable, errno (0 = success)
*/
#include "syncer.h"
#include "thread.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct _keel_syncer_t {
    keel_thread_t *thread;
    zsock_t *actor; // its pipe
    int fd;
    uint64_t requested; // highest seq asked for
    uint64_t inflight;  // seq of the fdatasync running, 0 = none
    uint64_t synced;    // highest seq known durable
    uint64_t flushes;
    bool broken; // a request could not reach the thread
};

static void
s_thread (zsock_t *pipe, void *arg)
{
    int fd = *(int *) arg;
    //  Signals are the loop's business (SIGTERM stops the broker): one
    //  delivered here would interrupt the receive below.
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, NULL);
    zsock_signal (pipe, 0);
    while (true) {
        zmsg_t *msg = zmsg_recv (pipe);
        if (!msg) {
            if (zmq_errno () == EINTR)
                continue;
            break; // the context is going away
        }
        zframe_t *frame = zmsg_first (msg);
        bool term = frame && zframe_streq (frame, "$TERM");
        uint64_t seq = 0;
        if (frame && zframe_size (frame) == sizeof seq)
            memcpy (&seq, zframe_data (frame), sizeof seq);
        zmsg_destroy (&msg);
        if (term)
            break;
        int error = fdatasync (fd) == 0 ? 0 : errno;
        zsock_send (pipe, "84", seq, (uint32_t) error);
    }
}

keel_syncer_t *
keel_syncer_new (int fd)
{
    keel_syncer_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->fd = fd;
    self->thread = keel_thread_new (s_thread, &self->fd);
    self->actor = self->thread ? keel_thread_pipe (self->thread) : NULL;
    if (!self->actor) {
        free (self);
        return NULL;
    }
    zsock_set_sndtimeo (self->actor, 0);
    return self;
}

void
keel_syncer_destroy (keel_syncer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_syncer_t *self = *self_p;
    keel_thread_destroy (&self->thread); // sends $TERM, joins the thread
    self->actor = NULL;
    free (self);
    *self_p = NULL;
}

//  Never blocks the loop: the actor's pipe (sndtimeo 0, see
//  keel_syncer_new) refuses a request only when the thread is gone, and
//  then nothing more can be made durable: keel_syncer_busy stays true and
//  keel_syncer_failed tells the loop.
static void
s_issue (keel_syncer_t *self)
{
    uint64_t seq = self->requested;
    zframe_t *frame = zframe_new (&seq, sizeof seq);
    if (frame && zframe_send (&frame, self->actor, 0) == 0) {
        self->inflight = seq;
        self->flushes++;
    }
    else
        self->broken = true;
    zframe_destroy (&frame);
}

void
keel_syncer_request (keel_syncer_t *self, uint64_t seq)
{
    if (seq > self->requested)
        self->requested = seq;
    if (!self->inflight && self->requested > self->synced)
        s_issue (self);
}

zsock_t *
keel_syncer_actor (keel_syncer_t *self)
{
    return self->actor;
}

keel_err
keel_syncer_recv (keel_syncer_t *self, uint64_t *synced_p, keel_error_t *err)
{
    uint64_t seq = 0;
    uint32_t error = 0;
    if (zsock_recv (self->actor, "84", &seq, &error) != 0)
        return keel_error_set (err, KEEL_ERR_STORE, "store sync thread did not answer");
    self->inflight = 0;
    if (error)
        return keel_error_set (err, KEEL_ERR_STORE, "fdatasync of the store's WAL failed: %s",
                               strerror ((int) error));
    if (seq > self->synced)
        self->synced = seq;
    if (self->requested > self->synced)
        s_issue (self);
    *synced_p = self->synced;
    return KEEL_OK;
}

bool
keel_syncer_failed (const keel_syncer_t *self)
{
    return self->broken;
}

bool
keel_syncer_busy (const keel_syncer_t *self)
{
    return self->inflight != 0 || self->requested > self->synced;
}

uint64_t
keel_syncer_flushes (const keel_syncer_t *self)
{
    return self->flushes;
}
