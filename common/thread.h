/*  thread.h — an actor thread that is joined when it is destroyed: CZMQ's
    zactor protocol (a PAIR pipe, a signal when started, "$TERM" to stop,
    a signal when stopped) on a thread the caller waits for.

    Why not zactor: zactor_destroy returns once the handler has signalled,
    while the thread still holds its end of the pipe (CZMQ closes it after
    the signal). A program that exits then finds a socket still open in
    CZMQ's atexit handler (zsys_shutdown), which sleeps 200 ms "to allow
    the actors to close their sockets". Seen in keel-driver: one run in
    three of a 3,000-task batch ended 200 ms after its last result (28 ms
    of work). keel_thread_destroy joins the thread, so every socket it
    opened is closed when it returns.

    The handler has zactor's signature and contract: it calls
    zsock_signal (pipe, 0) once it is ready, and returns when it reads
    "$TERM" from pipe (or the pipe fails). It must close every socket it
    opened before it returns.
*/
#ifndef KEEL_THREAD_H
#define KEEL_THREAD_H

#include <czmq.h>

typedef struct _keel_thread_t keel_thread_t;

// Starts handler (args) on a new thread and waits for its first signal.
// Returns NULL when the pipe or the thread cannot be made.
keel_thread_t *keel_thread_new (zactor_fn *handler, void *args);
// Sends "$TERM" (waiting up to 10 s for room in the pipe), waits for the
// handler's last signal, joins the thread and closes the pipe. A handler
// that takes nothing from its pipe for 10 s is left running, with its pipe
// (logged: the alternative is to hang). NULL-safe.
void keel_thread_destroy (keel_thread_t **self_p);
// The caller's end of the pipe: send to it, receive from it, poll it
// (it stays the thread's until keel_thread_destroy).
zsock_t *keel_thread_pipe (keel_thread_t *self);

#endif
