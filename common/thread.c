/*  thread.c — an actor thread that is joined when it is destroyed. See
    thread.h.
*/
#include "thread.h"

#include "log.h"

#include <pthread.h>
#include <stdlib.h>

struct _keel_thread_t {
    zsock_t *pipe;    // ours
    zsock_t *backend; // the handler's, closed by its thread
    zactor_fn *handler;
    void *args;
    pthread_t thread;
};

static void *
s_shim (void *arg)
{
    keel_thread_t *self = arg;
    self->handler (self->backend, self->args);
    //  The last signal, then the pipe closes on this thread, before the
    //  join returns (zactor closes it after its destructor has returned).
    zsock_set_sndtimeo (self->backend, 0);
    zsock_signal (self->backend, 0);
    zsock_destroy (&self->backend);
    return NULL;
}

keel_thread_t *
keel_thread_new (zactor_fn *handler, void *args)
{
    keel_thread_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->handler = handler;
    self->args = args;
    self->pipe = zsys_create_pipe (&self->backend);
    if (!self->pipe) {
        free (self);
        return NULL;
    }
    if (pthread_create (&self->thread, NULL, s_shim, self) != 0) {
        zsock_destroy (&self->backend);
        zsock_destroy (&self->pipe);
        free (self);
        return NULL;
    }
    zsock_wait (self->pipe);
    return self;
}

void
keel_thread_destroy (keel_thread_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_thread_t *self = *self_p;
    *self_p = NULL;
    //  A handler that already returned (its pipe failed) has signalled:
    //  the wait reads that signal, the "$TERM" goes nowhere. The send
    //  waits (bounded) for room: a pipe full of requests the handler has
    //  not read yet still takes the "$TERM" once it reads them.
    zsock_set_sndtimeo (self->pipe, 10000);
    if (zstr_send (self->pipe, "$TERM") != 0) {
        //  A handler that reads nothing for 10 s cannot be told to stop:
        //  leave it (and its pipe and this block) rather than hang here.
        KEEL_ERROR ("thread", "a thread does not read its pipe; left running");
        pthread_detach (self->thread);
        return;
    }
    zsock_wait (self->pipe);
    pthread_join (self->thread, NULL);
    zsock_destroy (&self->pipe);
    free (self);
}

zsock_t *
keel_thread_pipe (keel_thread_t *self)
{
    return self->pipe;
}
