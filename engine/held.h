/*  held.h — the executions an engine holds: running, or done with a result
    no broker has acknowledged yet.

    This is the engine's one table of work. An entry is added when an Assign
    starts (running) or when a spooled result is loaded at start (done); it
    becomes done when the runner reports; it is removed on ResultAck, Cancel,
    a DROP verdict or the Engine Timeout. The table owns every entry and
    every byte in it; pointers into it stay valid until the entry is removed.
*/
#ifndef KEEL_ENGINE_HELD_H
#define KEEL_ENGINE_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keel.pb-c.h"

#define KEEL_HELD_ERROR_MAX  4000   // error texts are cut to fit the wire's 4096

typedef struct {
    uint64_t execution_id;
    char *service_id;
    uint64_t task_id;
    char *type;             // NULL for a result loaded from the spool
    bool done;
    bool ok;                // done: output (true) or error (false)
    uint8_t *output;
    size_t output_size;
    char *error;
    bool permanent;         // done, failed: no retry can succeed (the Result says so)
    uint64_t run_ms;
    bool sent;              // done: Result sent on the current connection
    bool spooled;           // done: the Result is in the spool (StateDir/spool)
    bool in_login;          // done when the last EngineLogin was built: it carried the Result
    uint8_t *checkpoint;    // running: the task's latest checkpoint, or NULL
    size_t checkpoint_size;
    bool checkpoint_pending;    // the latest checkpoint is not sent to a broker yet
} keel_held_task_t;

typedef struct _keel_held_t keel_held_t;

keel_held_t *keel_held_new (void);
// Frees every entry and the table; nulls *self_p. Idempotent.
void keel_held_destroy (keel_held_t **self_p);

// Adds a running execution. Returns NULL if the id is already held or
// memory ran out.
keel_held_task_t *keel_held_add (keel_held_t *self, uint64_t execution_id, const char *service_id,
                             uint64_t task_id, const char *type);

// Adds a done execution from a (validated) Result, permanent flag
// included. Returns NULL if the id is already held or memory ran out.
keel_held_task_t *keel_held_add_done (keel_held_t *self, const Keel__Result *result);

// The entry for execution_id, or NULL.
keel_held_task_t *keel_held_find (const keel_held_t *self, uint64_t execution_id);

// Marks task done with output (ok) or error text (data, cut to
// KEEL_HELD_ERROR_MAX bytes, NULs replaced). Returns false if out of memory.
bool keel_held_finish (keel_held_task_t *task, bool ok, const uint8_t *data, size_t size,
                        int64_t run_ms);

// Keeps a copy of data as the task's latest checkpoint (replacing the
// previous one) and marks it pending. Returns false if out of memory.
bool keel_held_set_checkpoint (keel_held_task_t *task, const uint8_t *data, size_t size);

// Removes and frees the entry (no-op if absent). Returns true if one was removed.
bool keel_held_remove (keel_held_t *self, uint64_t execution_id);

// Removes every entry.
void keel_held_clear (keel_held_t *self);

size_t keel_held_size (const keel_held_t *self);
size_t keel_held_running (const keel_held_t *self);
// Entry number index (0 .. size-1); order changes when entries are removed.
keel_held_task_t *keel_held_at (const keel_held_t *self, size_t index);

// Fills result (initialised here) as a view of a done task: its pointers
// refer into task, nothing to free.
void keel_held_result_view (const keel_held_task_t *task, Keel__Result *result);

#endif
