/*  broker.h — keel-broker's event loop (DESIGN §5).

    One thread owns all broker state. Each loop turn:
      1. reads every ready message (bounded per turn) and applies it to the
         in-memory model, recording which tasks changed;
      2. runs the timers (heartbeats, lost peers, delayed requeues, expired
         HOLD claims);
      3. sends the turn's results to their drivers;
      4. commits, in ONE transaction, everything changed since the last
         commit (group commit) — at once when a driver waits for an
         acceptance, otherwise within CommitDelay (default 20 ms). The commit
         writes the WAL (it survives kill -9 of the broker); with
         StoreSync=full the syncer thread (syncer.h) then fdatasyncs the WAL
         while the loop goes on. Acceptances and the acknowledgements that let
         engines forget their results are held until their commit is durable
         (synced for full, written for normal);
      5. dispatches committed, queued tasks to engines with free slots (plus
         EnginePrefetch); the dispatch state rides in a later commit;
      6. answers admin requests.
    An acceptance therefore means "survives power loss" (StoreSync=full) or
    "survives kill -9 of this broker" (normal), and so does a result
    acknowledgement to an engine. A task may be dispatched, and its result
    reach the driver, before the commit that accepted it is synced: if the
    machine then loses power, the driver has no Accepted for it and submits
    it again, and keeps only the first result of each task. A result may reach the driver
    before it is committed: if the broker then dies, the engine still holds
    the result and offers it again at its next login, and the driver keeps
    only the first copy of each task, so the application sees it once.
    If a commit fails (disk full), the turn's new submissions are undone and
    refused with REFUSE_STORE_FULL; every other change stays in memory and is
    written again by the next commit, and the acknowledgements wait for it.
    If an fdatasync fails, nothing on disk can be trusted: the broker sends
    nothing held, logs why and exits non-zero (restart it; it recovers from
    the store). A login that DROPs an engine's copy of a result waits for
    the disk in its own turn (logins are rare).
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
