/*  held.h — the executions an engine holds: running, or done with a result
    no broker has acknowledged yet.

    This is the engine's one table of work. An entry is added when an Assign
    starts (RUNNING: in a worker, inline, or queued for a worker) or when a
    spooled result is loaded at start (added, then FINISHED at once); it is
    removed on ResultAck (once ACKED), Cancel, a DROP verdict, the Engine
    Timeout or at stop (the running ones). The table owns every entry and
    every byte in it; pointers into it stay valid until the entry is removed.

    Lifecycle of one execution: keel_held_step is the one place its state
    changes (a switch over state × event in held.c). An event a state does
    not expect is refused: the step returns false, logs it (DEBUG), and
    leaves the entry as it was; it never aborts.

      state \ event  FINISHED SENT  SPOOLED  CARRIED   LEFT_OUT HELD     LOGGED_IN DISCONN. ACKED
      RUNNING        DONE     -     -        -         -        RUNNING  RUNNING   RUNNING  -
      DONE           -        SENT  DONE*    IN_LOGIN  DONE     DONE     DONE      DONE     ACKED
      IN_LOGIN       -        -     IN_LOGIN* IN_LOGIN DONE     SENT     DONE      DONE     ACKED
      SENT           -        -     SENT*    -         -        SENT     SENT      DONE     ACKED
      ACKED          -        -     -        -         -        -        -         -        -
      ( - refused;  * also sets spooled )

    States
      RUNNING   no result yet. checkpoint/checkpoint_pending hold its latest
                memory and whether a broker has seen it (data, not state).
      DONE      result recorded (ok, output or error, permanent, run_us),
                not on the current broker connection: it is to be sent.
      IN_LOGIN  done, and the EngineLogin built last carries the Result (its
                verdict decides whether it must be sent again).
      SENT      the Result left on the current connection; awaiting ResultAck.
      ACKED     the broker has the Result: the owner removes the entry.

    Events
      FINISHED    the runner (or an inline built-in) reported: keel_held_finish
      SENT        the Result left, alone or in a ResultBatch
      SPOOLED     a copy was written to StateDir/spool. Orthogonal to
                  delivery: a spooled result may be sent, a sent one spooled
                  (the connection dropped), so `spooled` is data that says a
                  file is to be deleted with the entry; the state is unchanged
      CARRIED     the EngineLogin being built carries the Result
      LEFT_OUT    the EngineLogin being built lists it as running (past the
                  login's byte budget): the Result follows after the verdicts
      HELD        LoginReply verdict HOLD: the broker holds the Result pending
                  if the login carried it; one finished since is still to send
      LOGGED_IN   the verdicts are applied: a result the login carried that
                  the broker did not hold is offered again
      DISCONNECTED the connection is gone: nothing sent on it counts any more
      ACKED       ResultAck names the execution
*/
#ifndef KEEL_ENGINE_HELD_H
#define KEEL_ENGINE_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keel.pb-c.h"

#define KEEL_HELD_ERROR_MAX 4000 // error texts are cut to fit the wire's 4096

typedef enum {
    KEEL_HELD_RUNNING, // 0: what keel_held_add creates
    KEEL_HELD_DONE,
    KEEL_HELD_IN_LOGIN,
    KEEL_HELD_SENT,
    KEEL_HELD_ACKED
} keel_held_state_t;

typedef enum {
    KEEL_HELD_EV_FINISHED,
    KEEL_HELD_EV_SENT,
    KEEL_HELD_EV_SPOOLED,
    KEEL_HELD_EV_CARRIED,
    KEEL_HELD_EV_LEFT_OUT,
    KEEL_HELD_EV_HELD,
    KEEL_HELD_EV_LOGGED_IN,
    KEEL_HELD_EV_DISCONNECTED,
    KEEL_HELD_EV_ACKED
} keel_held_event_t;

//  Read any field; write only the data ones (permanent, checkpoint_pending).
//  state and spooled change through keel_held_step alone.
typedef struct {
    uint64_t execution_id;
    char *service_id;
    uint64_t task_id;
    char *type; // NULL for a result loaded from the spool
    keel_held_state_t state;
    bool spooled; // a copy is in the spool (StateDir/spool): delete it with the entry
    bool ok;      // done: output (true) or error (false)
    uint8_t *output;
    size_t output_size;
    char *error;
    bool permanent; // done, failed: no retry can succeed (the Result says so)
    uint64_t run_us;
    uint8_t *checkpoint; // running: the task's latest checkpoint, or NULL
    size_t checkpoint_size;
    bool checkpoint_pending; // running: the latest checkpoint is not sent to a broker yet
} keel_held_task_t;

typedef struct _keel_held_t keel_held_t;

keel_held_t *keel_held_new (void);
// Frees every entry and the table; nulls *self_p. Idempotent.
void keel_held_destroy (keel_held_t **self_p);

// Adds a RUNNING execution. Returns NULL if the id is already held or
// memory ran out.
keel_held_task_t *keel_held_add (keel_held_t *self, uint64_t execution_id, const char *service_id,
                                 uint64_t task_id, const char *type);

// Adds a DONE execution from a (validated) Result, permanent flag
// included. Returns NULL if the id is already held or memory ran out.
keel_held_task_t *keel_held_add_done (keel_held_t *self, const Keel__Result *result);

// The entry for execution_id, or NULL.
keel_held_task_t *keel_held_find (const keel_held_t *self, uint64_t execution_id);

// Feeds event to task's lifecycle (table above). Returns true if the
// transition is legal (and done); false if refused (logged, nothing changed).
bool keel_held_step (keel_held_task_t *task, keel_held_event_t event);

// True once task has a result (DONE, IN_LOGIN, SENT; ACKED until removed).
bool keel_held_is_done (const keel_held_task_t *task);

// Records task's result: output (ok) or error text (data, cut to
// KEEL_HELD_ERROR_MAX bytes, NULs replaced), and steps FINISHED (the pending
// checkpoint is superseded). Returns false if task was not RUNNING (nothing
// changed) or memory ran out (task is DONE, its data missing).
bool keel_held_finish (keel_held_task_t *task, bool ok, const uint8_t *data, size_t size,
                       int64_t run_us);

// Keeps a copy of data as the RUNNING task's latest checkpoint (replacing
// the previous one) and marks it pending. Returns false if task is not
// RUNNING or out of memory.
bool keel_held_set_checkpoint (keel_held_task_t *task, const uint8_t *data, size_t size);

// Removes and frees the entry (no-op if absent). Returns true if one was removed.
bool keel_held_remove (keel_held_t *self, uint64_t execution_id);

// Removes every entry.
void keel_held_clear (keel_held_t *self);

// Removes every RUNNING entry (at stop: their workers are gone).
void keel_held_remove_running (keel_held_t *self);

size_t keel_held_size (const keel_held_t *self);
// Entries in RUNNING.
size_t keel_held_running (const keel_held_t *self);
// Fills ids with the execution ids of up to max RUNNING entries; returns how many.
size_t keel_held_running_ids (const keel_held_t *self, uint64_t *ids, size_t max);
// Entry number index (0 .. size-1); order changes when entries are removed.
keel_held_task_t *keel_held_at (const keel_held_t *self, size_t index);

// Fills result (initialised here) as a view of a done task: its pointers
// refer into task, nothing to free.
void keel_held_result_view (const keel_held_task_t *task, Keel__Result *result);

// Bytes of output and error text a done task's Result carries.
size_t keel_held_result_bytes (const keel_held_task_t *task);

const char *keel_held_state_name (keel_held_state_t state);
const char *keel_held_event_name (keel_held_event_t event);

#endif
