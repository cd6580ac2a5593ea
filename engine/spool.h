/*  spool.h — results kept on disk until a broker acknowledges them.

    Every finished execution's Result is written to StateDir/spool/<execution_id>
    (an encoded Envelope carrying the Result, written to a temporary file
    and renamed, so a crash of the engine leaves either no file or the whole
    file) before it is sent. The write is not synced to disk: it survives
    the engine process, not the machine (whose tasks the broker re-runs). ResultAck deletes the file. At start the engine
    loads every spooled result and offers it at login as held DONE, so an
    engine restart does not lose a result. Files are decoded and validated
    like wire input; a file that does not decode is renamed <name>.bad and
    skipped, never trusted.
*/
#ifndef KEEL_ENGINE_SPOOL_H
#define KEEL_ENGINE_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"
#include "keel.pb-c.h"

typedef struct _keel_spool_t keel_spool_t;

// Opens (creates) STATE_DIR/spool. Returns NULL and fills err on failure.
keel_spool_t *keel_spool_new (const char *state_dir, keel_error_t *err);

// Frees the object (the files stay) and nulls *self_p. Idempotent.
void keel_spool_destroy (keel_spool_t **self_p);

// Writes result under its execution_id (survives the process; see above). Returns KEEL_OK or
// KEEL_ERR_IO / KEEL_ERR_NOMEM with a message.
keel_err keel_spool_write (keel_spool_t *self, const Keel__Result *result, keel_error_t *err);

// Deletes the spooled result of execution_id (no error if absent).
void keel_spool_remove (keel_spool_t *self, uint64_t execution_id);

// Deletes every spooled result; returns how many were deleted.
int keel_spool_clear (keel_spool_t *self);

// Calls fn for every valid spooled result (the result is freed after the
// call: copy what you keep). Files larger than max_bytes or invalid are
// renamed <name>.bad. Returns the number of results passed to fn.
typedef void (keel_spool_load_fn) (const Keel__Result *result, void *arg);
int keel_spool_load (keel_spool_t *self, size_t max_bytes, keel_spool_load_fn *fn, void *arg);

#endif
