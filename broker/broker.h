/*  broker.h — keel-broker's event loop (DESIGN §5).

    One thread owns all broker state. Each loop turn:
      1. reads every ready message (bounded per turn) and applies it to the
         in-memory model, recording which tasks changed;
      2. runs the timers (heartbeats, lost peers, delayed requeues, expired
         HOLD claims);
      3. sends the turn's results to their drivers;
      4. dispatches queued tasks to engines with free slots (plus
         EnginePrefetch; one AssignBatch per engine) and sends everything so
         far — including tasks accepted this very turn, not committed yet
         (see below);
      5. commits, in ONE transaction, everything changed since the last
         commit (group commit) — at once when a driver waits for an
         acceptance, otherwise within CommitDelay (default 100 ms). The
         commit writes the WAL (it survives kill -9 of the broker); with
         StoreSync=full the syncer thread (syncer.h) then fdatasyncs the
         WAL while the loop goes on. Acceptances and the acknowledgements
         that let engines forget their results are held until their commit
         is durable (synced for full, written for normal);
      6. answers admin requests.
    An acceptance therefore means "survives power loss" (StoreSync=full) or
    "survives kill -9 of this broker" (normal), and so does a result
    acknowledgement to an engine. Nothing else waits for the disk:
      - a task may be dispatched, and its result reach the driver, before
        the commit that accepts it (the commit follows in the same turn).
        If the broker or the machine dies first, the driver has no
        Accepted and submits the task again, an engine still running it
        claims it at login (HOLD until the driver is back), and the driver
        keeps only the first result of each task;
      - a result reaches the driver before it is committed: the engine
        holds it until its acknowledgement and offers it again at its next
        login, and the driver keeps only the first copy;
      - an assignment writes nothing (no RUNNING state, no execution row):
        a restarted broker gives the tasks its store shows queued one
        EngineLoginWindow for the engines' claims, as it does running ones,
        so an engine running a task the store shows queued claims it at its
        next login.
    If a commit fails (disk full), the turn's new submissions are undone
    (their executions cancelled on the engines) and refused with
    REFUSE_STORE_FULL; every other change stays in memory and is written
    again by the next commit, and the acknowledgements wait for it. While
    the store fails, nothing uncommitted is dispatched.
    If an fdatasync fails, nothing on disk can be trusted: the broker sends
    nothing held, logs why and exits non-zero (restart it; it recovers from
    the store). A turn in which a login DROPs an engine's copy of a result
    commits and syncs before it sends anything (logins are rare); its
    LoginReply waits in `held` for that commit, or, if it fails, for the
    next one that stores the result.
*/
#ifndef KEEL_BROKER_H
#define KEEL_BROKER_H

#include "error.h"
#include "settings.h"

typedef struct _keel_broker_t keel_broker_t;

// Opens the store, rebuilds state from it, binds both endpoints. settings
// must outlive the broker. Returns NULL and fills err on failure (the
// message names the key or file at fault).
keel_broker_t *keel_broker_new (keel_settings_t *settings, keel_error_t *err);

// Runs until SIGINT/SIGTERM (zsys_interrupted) or keel_broker_stop. Returns
// KEEL_OK after a clean stop.
keel_err keel_broker_run (keel_broker_t *self);

// Asks the loop to end after the current turn (for tests driving the loop).
void keel_broker_stop (keel_broker_t *self);

void keel_broker_destroy (keel_broker_t **self_p);

#endif
