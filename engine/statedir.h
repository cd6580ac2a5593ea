/*  statedir.h — the engine's state directory: lock and identity.

    StateDir holds:
      lock       exclusive flock held for the engine's life, containing its pid;
                 a second engine on the same StateDir is refused (exit 2)
      engine-id  the engine's UUID, created on first start and kept forever
      spool/     results not yet acknowledged by a broker (see spool.h)
    The directory is created if missing. keel_statedir_t owns the lock fd.
*/
#ifndef KEEL_ENGINE_STATEDIR_H
#define KEEL_ENGINE_STATEDIR_H

#include "error.h"

typedef struct _keel_statedir_t keel_statedir_t;

// Creates path if needed, takes the lock, loads or creates engine-id.
// Returns NULL and fills err: KEEL_ERR_STATE "StateDir X is in use by
// another engine (pid N); give each engine its own StateDir", KEEL_ERR_IO
// when the directory or files cannot be made, KEEL_ERR_INVALID when
// engine-id holds something that is not an id.
keel_statedir_t *keel_statedir_open (const char *path, keel_error_t *err);

// Releases the lock (the files stay) and nulls *self_p. Idempotent.
void keel_statedir_destroy (keel_statedir_t **self_p);

// The directory path and the engine id (owned by the statedir).
const char *keel_statedir_path (const keel_statedir_t *self);
const char *keel_statedir_engine_id (const keel_statedir_t *self);

#endif
