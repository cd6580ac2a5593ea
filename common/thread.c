/*  thread.c — an actor thread that is joined when it is destroyed. See
    thread.h.
*/
#include "thread.h"

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
    //  A handler that already returned (its pipe failed) has signalled:
    //  the wait reads that signal, the "$TERM" goes nowhere.
    zsock_set_sndtimeo (self->pipe, 0);
    zstr_send (self->pipe, "$TERM");
    zsock_wait (self->pipe);
    pthread_join (self->thread, NULL);
    zsock_destroy (&self->pipe);
    free (self);
    *self_p = NULL;
}

zsock_t *
keel_thread_pipe (keel_thread_t *self)
{
    return self->pipe;
}
