/*  broker.h — keel-broker's event loop (DESIGN §5).

    One thread owns all broker state. Each loop turn:
      1. reads every ready message (bounded per turn) and applies it to the
         in-memory model, recording which tasks changed;
      2. runs the timers (heartbeats, lost peers, delayed requeues, expired
         HOLD claims);
      3. dispatches committed, queued tasks to engines with free slots;
      4. writes the turn's effects to the store in ONE transaction and
         commits (group commit);
      5. only then sends what the turn produced: acceptances, results,
         acknowledgements, assignments;
      6. answers admin requests.
    An acceptance therefore means "survives kill -9 of this broker". If the
    commit fails (disk full), the turn's new submissions are undone and
    refused with REFUSE_STORE_FULL, every other effect stays in memory and
    is written again by the next commit, and its messages wait for it.
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
