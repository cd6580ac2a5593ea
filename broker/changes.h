/*  changes.h — the journal of durable changes: every change the broker makes
    to durable state is one typed record here, and the store applies the
    records, in order, in the turn's transaction (keel_store_apply_all).

    This is the one way durable state changes. A message handler or a timer
    never writes a row: it appends a record to the turn's journal
    (keel_changes_add). At the end of the turn the loop adds the records of
    the tasks and executions that changed, applies the whole journal to the
    store, commits, and clears it. A failed commit drops the journal with
    the rolled-back transaction (the tasks stay marked changed and are
    written again by the next commit; docs/architecture.md).

    The records are designed to leave the process: a resilient pair streams
    the committed journal to its peer, a cluster applies the same records to
    PostgreSQL. So each record is self-contained (keel_changes_add copies
    every string and blob into the journal: a record never points into the
    model), its kind numbers below are stable (new kinds get new numbers,
    none is ever reused), and keel_changes_encode writes a versioned byte
    form (KEEL_CHANGES_VERSION) that keel_changes_decode reads back.

    The records reuse the store's row structs: a record is "put this row",
    "set these columns of that row" or "delete that row".

      kind                 fields used (struct)                       store effect
      SERVICE_PUT          service: every field                       insert/replace the service
      SERVICE_STATE        service: service_id, state, closed_wall_ms set its state (and close time)
      SERVICE_DELETE       service: service_id                        delete it with its tasks,
                                                                      executions, pending claims
      TASK_PUT             task: every field                          insert (QUEUED) or replace
                                                                      (also a result written whole:
                                                                      keel_core_set_whole_rows)
      TASK_STATE           task: service_id, task_id, state, attempts set state and attempts
      TASK_RESULT          task: all but input and checkpoint         store the terminal result
      TASK_ACKED           task: service_id, task_id                  the driver has the result
      TASK_CHECKPOINT      task: service_id, task_id, checkpoint*     the task's latest memory
      EXEC_PUT             exec: every field                          an execution started
      EXEC_DELETE          exec: execution_id                         an execution ended
      PENDING_PUT          pending: every field                       keep a HOLD claim
      PENDING_DELETE       pending: service_id, task_id, execution_id drop a HOLD claim
      ENGINE_PUT           engine: every field                        an engine as last seen
      CONFIG_SET           config: key, value                         a runtime setting (keel-admin)
      EVENT                event: wall_ms, kind, text                 one line of the event log
      META_SET             meta: name, value                          a counter ("epoch",
                                                                      "execution_seq")
*/
#ifndef KEEL_CHANGES_H
#define KEEL_CHANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "error.h"

// ---------------------------------------------------------------- row types

typedef enum {
    KEEL_SERVICE_OPEN = 0,
    KEEL_SERVICE_CLOSED = 1, // driver closed it; purge once every result is acked + retention
    KEEL_SERVICE_CANCELLED = 2,
    KEEL_SERVICE_DETACHED = 3 // driver moved it back to its primary
} keel_service_state_t;

typedef enum {
    KEEL_TASK_STATE_QUEUED = 0,
    KEEL_TASK_STATE_RUNNING = 1,
    KEEL_TASK_STATE_DONE = 2,      // terminal: OK result stored
    KEEL_TASK_STATE_FAILED = 3,    // terminal: failed after MaxAttempts
    KEEL_TASK_STATE_CANCELLED = 4, // terminal: service cancelled
    KEEL_TASK_STATE_ELSEWHERE = 5  // terminal: the driver came back holding its result (from
                                   // another broker): never dispatched again, no result here,
                                   // stored as acknowledged so retention purges it
} keel_task_state_t;

#define KEEL_TASK_NSTATES 6 // number of keel_task_state_t values

typedef struct {
    const char *service_id;
    const char *type;
    const char *driver_id;
    int32_t priority;
    uint32_t max_attempts;
    int64_t reschedule_delay_ms; // -1 = broker default
    const uint8_t *init_data;
    size_t init_len;
    keel_service_state_t state;
    int64_t created_wall_ms;
    int64_t closed_wall_ms; // 0 while open
    const char *condition;  // its condition on engines (cond.h), NULL: none
} keel_store_service_t;

typedef struct {
    const char *service_id;
    uint64_t task_id;
    keel_task_state_t state;
    uint32_t attempts; // executions that ended in a task failure
    const uint8_t *input;
    size_t input_len;
    // result, when state is DONE/FAILED/CANCELLED
    int status; // KEEL__TASK_STATUS__STATUS_*
    const uint8_t *output;
    size_t output_len;
    const char *error;     // NULL when none
    const char *engine_id; // winner's engine, NULL when none
    uint64_t execution_id; // winner's execution, 0 when none
    uint64_t run_ms;
    uint64_t queued_ms;
    bool result_acked;         // the driver has acknowledged the result
    const uint8_t *checkpoint; // latest memory, NULL when none
    size_t checkpoint_len;
    int64_t checkpoint_wall_ms;
} keel_store_task_t;

typedef struct {
    uint64_t execution_id;
    const char *service_id;
    uint64_t task_id;
    const char *engine_id;
    uint32_t attempt;
    int64_t started_wall_ms;
} keel_store_execution_t;

// A claim (and maybe a result) an engine made for a service this broker did
// not know yet (login verdict HOLD). Kept until the service is submitted or
// the Engine Timeout passes.
typedef struct {
    const char *service_id;
    uint64_t task_id;
    uint64_t execution_id;
    const char *engine_id;
    bool has_result;
    int status;
    const uint8_t *output;
    size_t output_len;
    const char *error;
    uint64_t run_ms;
    int64_t expires_wall_ms;
} keel_store_pending_t;

// An engine as last seen (for keel-admin after a restart; an engine's own
// login is what brings it back online). `online`: the last write was its
// login (true), or it logged off, was lost, or missed a restart's login
// window (false). A restarted broker waits for the engines the store shows
// online, and ends its login window once all of them are back.
typedef struct {
    const char *engine_id;
    const char *host;
    const char *session;
    uint32_t slots;
    int64_t login_wall_ms;
    int64_t seen_wall_ms;
    bool online;
} keel_store_engine_t;

// ---------------------------------------------------------------- records

#define KEEL_CHANGES_VERSION 1 // of the byte form (keel_changes_encode)

// Stable numbers: they are written to peers and logs. Add, never renumber.
typedef enum {
    KEEL_CHANGE_SERVICE_PUT = 1,
    KEEL_CHANGE_SERVICE_STATE = 2,
    KEEL_CHANGE_SERVICE_DELETE = 3,
    KEEL_CHANGE_TASK_PUT = 4,
    KEEL_CHANGE_TASK_STATE = 5,
    KEEL_CHANGE_TASK_RESULT = 6,
    KEEL_CHANGE_TASK_ACKED = 7,
    KEEL_CHANGE_TASK_CHECKPOINT = 8,
    KEEL_CHANGE_EXEC_PUT = 9,
    KEEL_CHANGE_EXEC_DELETE = 10,
    KEEL_CHANGE_PENDING_PUT = 11,
    KEEL_CHANGE_PENDING_DELETE = 12,
    KEEL_CHANGE_ENGINE_PUT = 13,
    KEEL_CHANGE_CONFIG_SET = 14,
    KEEL_CHANGE_EVENT = 15,
    KEEL_CHANGE_META_SET = 16
} keel_change_kind_t;

#define KEEL_CHANGE_KIND_MAX 16

typedef struct {
    keel_change_kind_t kind;
    union {
        keel_store_service_t service; // SERVICE_*
        keel_store_task_t task;       // TASK_*
        keel_store_execution_t exec;  // EXEC_*
        keel_store_pending_t pending; // PENDING_*
        keel_store_engine_t engine;   // ENGINE_PUT
        struct {
            const char *key;
            const char *value;
        } config; // CONFIG_SET
        struct {
            int64_t wall_ms;
            const char *kind;
            const char *text;
        } event; // EVENT
        struct {
            const char *name;
            uint64_t value;
        } meta; // META_SET
    };
} keel_change_t;

// "task-result", … for logs and tests; "?" for an unknown kind.
const char *keel_change_kind_name (keel_change_kind_t kind);

// ---------------------------------------------------------------- the journal

typedef struct _keel_changes_t keel_changes_t;

keel_changes_t *keel_changes_new (void);
void keel_changes_destroy (keel_changes_t **self_p);

// Appends a copy of change: every string and blob it points to is copied
// into the journal (NULL stays NULL), so the caller's buffers may change or
// go at once. Returns KEEL_ERR_NOMEM (nothing appended) or KEEL_ERR_INVALID
// for an unknown kind.
keel_err keel_changes_add (keel_changes_t *self, const keel_change_t *change);

// Records in the order they were added; pointers stay valid until
// keel_changes_clear or destroy.
size_t keel_changes_size (const keel_changes_t *self);
const keel_change_t *keel_changes_at (const keel_changes_t *self, size_t index);

// Drops every record (keeps the memory for the next turn).
void keel_changes_clear (keel_changes_t *self);

// Drops every record, and gives the memory back when it held room for
// more than max_records (a journal that once carried a huge turn).
void keel_changes_clear_to (keel_changes_t *self, size_t max_records);

// Exchanges the records (and the memory) of a and b: how a journal is
// handed to the store's writer thread without a copy (store_writer.h).
void keel_changes_swap (keel_changes_t *a, keel_changes_t *b);

// The journal as bytes: a protobuf ChangeBatch (proto/keel.proto) carrying
// KEEL_CHANGES_VERSION and seq (the commit number the batch belongs to).
// Returns a malloc'd buffer (caller frees) and its size, or NULL on OOM.
uint8_t *keel_changes_encode (keel_changes_t *self, uint64_t seq, size_t *size_p);

// Reads bytes from keel_changes_encode (from a peer: validated, never
// trusted) and appends their records to self. Returns KEEL_ERR_INVALID with
// a message naming the problem (not a ChangeBatch, a newer version, an
// unknown kind, a record missing a field its kind needs), nothing appended.
keel_err keel_changes_decode (keel_changes_t *self, const uint8_t *data, size_t size,
                              uint64_t *seq_p, keel_error_t *err);

#endif
