/*  daemon.h — the keel-engine process: sockets, timers and the main loop.

    keel_daemon_t ties the parts together and owns them: the state directory
    (lock, engine id), the result spool, the runner (process pool), the table
    of held executions (held.h), the init data, the broker session state
    machine (engine_session.h), the result outbox (outbox.h: batching,
    spooling, resending at login, ResultAck) and the task starter
    (starter.h: inline built-ins, workers, the prefetch queue). It
    implements the session's actions (connect, login, heartbeat, logoff,
    probe, verdicts, Engine Timeout) and the outbox's and starter's (send on
    the broker DEALER, whether ONLINE, the runner), and runs the one-thread
    loop: zmq_poll over the broker DEALER, the probe DEALER and the workers'
    sockets, with the nearest deadline as timeout, a bounded amount of work
    per turn. A turn: session timers, resend what the connection did not
    take, poll, read the broker and the probe, collect worker results and
    checkpoints, start queued tasks, then send the Results of the tasks that
    ended in the turn together (outbox.h).

    Where a task runs (starter.h): the inline built-ins — echo, double and
    fail (keel_builtin_is_inline) — in the engine process; everything else
    in a runner worker process (runner.h), or in the prefetch queue while
    every worker is busy. Either way a task ends through one path
    (keel_outbox_finish): its result is recorded in the held table, sent when
    ONLINE or spooled when not, then logged ("task finished"); its "task
    started" line names the process that runs it (pid=, the engine's own
    pid for an inline built-in).

    Ownership: the engine owns everything it creates; cfg is the caller's
    and must outlive it.
*/
#ifndef KEEL_ENGINE_DAEMON_H
#define KEEL_ENGINE_DAEMON_H

#include <signal.h>
#include "engine_config.h"
#include "error.h"

typedef struct _keel_daemon_t keel_daemon_t;

// Opens StateDir (lock, engine id), loads spooled results and starts the
// workers. Returns NULL and fills err; KEEL_ERR_STATE means another engine
// holds StateDir.
keel_daemon_t *keel_daemon_new (const keel_engine_config_t *cfg, keel_error_t *err);

// Kills and reaps every worker, destroys every socket, releases the lock,
// frees everything; nulls *self_p. Idempotent.
void keel_daemon_destroy (keel_daemon_t **self_p);

// Runs until *stop becomes non-zero (set by a signal handler) or the Engine
// Timeout ends the process. Returns the exit code: 0 clean stop, 3 Engine
// Timeout with EngineTimeoutAction=exit.
int keel_daemon_run (keel_daemon_t *self, volatile sig_atomic_t *stop);

// The engine id (persisted in StateDir) and the current session id.
const char *keel_daemon_engine_id (const keel_daemon_t *self);
const char *keel_daemon_session_id (const keel_daemon_t *self);

#endif
