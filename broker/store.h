/*  store.h — the broker's durable store (DESIGN §5), SQL hidden behind it.

    The broker's event loop owns one store. Each loop turn calls the write
    functions below for the effects of every message it applied; the first
    write opens a transaction, keel_store_commit (durable before it returns)
    or keel_store_commit_async (in the WAL; durable after a sync, see below)
    ends it. Only after a commit is durable does the broker send
    acknowledgements: an acknowledgement means "survives kill -9 of this
    broker" (and power loss with StoreSync=full). A failed commit rolls back
    the whole turn; the broker then refuses the turn's submissions.

    Backends, chosen by the Store URI:
      "sqlite:PATH"  SQLite in WAL mode (the default, sqlite:keel-broker.db)
      "memory:"      nothing is written; every call succeeds; load finds
                     nothing (for tests that do not need durability)

    A "sqlite:" store is locked (flock on the file) from open to destroy:
    opening a store another broker holds fails with KEEL_ERR_STORE naming
    the holder's pid, before anything is read or written.

    Opening is loud and safe: a file that is not a SQLite database, a SQLite
    database that is not a Keel store, a schema newer than this broker, or a
    directory that cannot be written is an error (KEEL_ERR_STORE with a
    message), never a fresh empty store over an old one. Older schemas are
    migrated forward in one transaction.

    Strings passed in are copied or bound before the call returns; the
    callers keep ownership of their buffers.
*/
#ifndef KEEL_STORE_H
#define KEEL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "error.h"

typedef struct _keel_store_t keel_store_t;

typedef enum {
    KEEL_STORE_SYNC_FULL = 0,    // commits fdatasynced before acks: acks survive power loss
    KEEL_STORE_SYNC_NORMAL = 1   // no sync per commit: acks survive kill -9 only
} keel_store_sync_t;

typedef enum {
    KEEL_SERVICE_OPEN = 0,
    KEEL_SERVICE_CLOSED = 1,     // driver closed it; purge once every result is acked + retention
    KEEL_SERVICE_CANCELLED = 2,
    KEEL_SERVICE_DETACHED = 3    // driver moved it back to its primary
} keel_service_state_t;

typedef enum {
    KEEL_TASK_STATE_QUEUED = 0,
    KEEL_TASK_STATE_RUNNING = 1,
    KEEL_TASK_STATE_DONE = 2,          // terminal: OK result stored
    KEEL_TASK_STATE_FAILED = 3,        // terminal: failed after MaxAttempts
    KEEL_TASK_STATE_CANCELLED = 4,     // terminal: service cancelled
    KEEL_TASK_STATE_ELSEWHERE = 5      // terminal: the driver came back holding its result (from
                                 // another broker): never dispatched again, no result here,
                                 // stored as acknowledged so retention purges it
} keel_task_state_t;

#define KEEL_TASK_NSTATES 6       // number of keel_task_state_t values

typedef struct {
    const char *service_id;
    const char *type;
    const char *driver_id;
    int32_t priority;
    uint32_t max_attempts;
    int64_t reschedule_delay_ms;     // -1 = broker default
    const uint8_t *init_data;
    size_t init_len;
    keel_service_state_t state;
    int64_t created_wall_ms;
    int64_t closed_wall_ms;          // 0 while open
} keel_store_service_t;

typedef struct {
    const char *service_id;
    uint64_t task_id;
    keel_task_state_t state;
    uint32_t attempts;               // executions that ended in a task failure
    const uint8_t *input;
    size_t input_len;
    // result, when state is DONE/FAILED/CANCELLED
    int status;                      // KEEL__TASK_STATUS__STATUS_*
    const uint8_t *output;
    size_t output_len;
    const char *error;               // NULL when none
    const char *engine_id;           // winner's engine, NULL when none
    uint64_t execution_id;           // winner's execution, 0 when none
    uint64_t run_ms;
    uint64_t queued_ms;
    bool result_acked;               // the driver has acknowledged the result
    const uint8_t *checkpoint;       // latest memory, NULL when none
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
// login is what brings it back online).
typedef struct {
    const char *engine_id;
    const char *host;
    const char *session;
    uint32_t slots;
    int64_t login_wall_ms;
    int64_t seen_wall_ms;
} keel_store_engine_t;

// ---------------------------------------------------------------- lifecycle

// Opens (creating if absent) the store named by uri. Returns NULL and fills
// err on failure (see above).
keel_store_t *keel_store_open (const char *uri, keel_store_sync_t sync, keel_error_t *err);
void keel_store_destroy (keel_store_t **self_p);

// True when writes reach a disk (sqlite:), false for memory:.
bool keel_store_durable (const keel_store_t *self);

// Human description for logs: "sqlite:/var/lib/keel/broker.db (WAL, StoreSync=full)".
const char *keel_store_describe (const keel_store_t *self);

// ---------------------------------------------------------------- transactions

// Commits the open transaction (no-op when nothing was written this turn)
// and returns once it is durable: with StoreSync=full the WAL is synced
// (keel_store_sync) before the call returns.
// On failure rolls back and returns KEEL_ERR_FULL (disk full) or
// KEEL_ERR_STORE with a message; the store stays usable for later turns.
keel_err keel_store_commit (keel_store_t *self, keel_error_t *err);

// Group commit off the loop. keel_store_commit_async commits like
// keel_store_commit but returns once the commit is in the WAL (it survives
// kill -9 of this process, not yet a power loss). Every such commit is
// durable once an fdatasync of keel_store_sync_fd (from any thread) or a
// keel_store_sync that started after it returns; an fdatasync failure means
// the state on disk is unknown: acknowledge nothing more and stop.
// keel_store_sync_fd returns -1 when there is nothing to sync (memory:,
// StoreSync=normal, or a store that fell back to syncing inside each commit):
// then keel_store_commit_async is already as durable as StoreSync asks.
keel_err keel_store_commit_async (keel_store_t *self, keel_error_t *err);
int keel_store_sync_fd (const keel_store_t *self);
keel_err keel_store_sync (keel_store_t *self, keel_error_t *err);

// True when writes are waiting for a commit (always false for memory:).
bool keel_store_in_transaction (const keel_store_t *self);

// Abandons the open transaction, if any.
void keel_store_rollback (keel_store_t *self);

// The message of the most recent failed write ("PATH: ...: database or disk
// is full"), for logging after a write returned an error; "" if none. Valid
// until the next call on the store.
const char *keel_store_last_error (const keel_store_t *self);

// ---------------------------------------------------------------- writes
// Each joins the open transaction (opening one if needed). They fail only
// on store errors; the broker then rolls back the turn.

keel_err keel_store_service_put (keel_store_t *self, const keel_store_service_t *svc);
keel_err keel_store_service_state (keel_store_t *self, const char *service_id,
                                   keel_service_state_t state, int64_t wall_ms);
// Deletes a service with its tasks, executions and pending rows.
keel_err keel_store_service_delete (keel_store_t *self, const char *service_id);

// Inserts a new task (state QUEUED) or replaces every column of an existing
// one (blobs included: a blob the new row lacks is gone). Inserting is the
// cheap case; replacing costs a few more statements.
keel_err keel_store_task_put (keel_store_t *self, const keel_store_task_t *task);
// Updates state and attempts only (the hot path of dispatch).
keel_err keel_store_task_state (keel_store_t *self, const char *service_id, uint64_t task_id,
                                keel_task_state_t state, uint32_t attempts);
// Stores the terminal result: state, attempts, status, output/error, winner,
// and result_acked (so a result and the driver's acknowledgement of it can be
// written in one statement; pass false while the driver has not acked: it
// overwrites an earlier keel_store_task_acked). Input and checkpoint are
// left alone.
keel_err keel_store_task_result (keel_store_t *self, const keel_store_task_t *task);
// Marks results acknowledged by the driver.
keel_err keel_store_task_acked (keel_store_t *self, const char *service_id, uint64_t task_id);
keel_err keel_store_task_checkpoint (keel_store_t *self, const char *service_id, uint64_t task_id,
                                     const uint8_t *data, size_t len, int64_t wall_ms);

keel_err keel_store_execution_put (keel_store_t *self, const keel_store_execution_t *exec);
keel_err keel_store_execution_delete (keel_store_t *self, uint64_t execution_id);

keel_err keel_store_pending_put (keel_store_t *self, const keel_store_pending_t *pending);
keel_err keel_store_pending_delete (keel_store_t *self, const char *service_id, uint64_t task_id,
                                    uint64_t execution_id);

// Records an engine's login or loss.
keel_err keel_store_engine_put (keel_store_t *self, const keel_store_engine_t *engine);

// Runtime configuration set by keel-admin (survives restarts).
keel_err keel_store_config_set (keel_store_t *self, const char *key, const char *value);

// Appends to the event log (engine lost/returned, failover, redundant result...).
keel_err keel_store_event (keel_store_t *self, int64_t wall_ms, const char *kind, const char *text);

// Monotonic counters kept across restarts: "epoch", "execution_seq".
keel_err keel_store_meta_set (keel_store_t *self, const char *name, uint64_t value);

// ---------------------------------------------------------------- reads
// Used at start (outside any loop-turn transaction) and by admin commands.

keel_err keel_store_meta_get (keel_store_t *self, const char *name, uint64_t *value_p);

typedef struct {
    // Each callback gets a record valid only during the call. Returning
    // non-zero stops the load with KEEL_ERR_STORE.
    int (*service) (const keel_store_service_t *svc, void *arg);
    int (*task) (const keel_store_task_t *task, void *arg);
    int (*execution) (const keel_store_execution_t *exec, void *arg);
    int (*pending) (const keel_store_pending_t *pending, void *arg);
    int (*config) (const char *key, const char *value, void *arg);
    int (*engine) (const keel_store_engine_t *engine, void *arg);
} keel_store_loader_t;

// Calls the loader for every row: services first, then their tasks in
// task_id order, then executions, pending claims, config, engines. NULL callbacks
// are skipped.
keel_err keel_store_load (keel_store_t *self, const keel_store_loader_t *loader, void *arg,
                          keel_error_t *err);

// Calls fn for the newest `limit` events, oldest first.
typedef void (keel_store_event_fn) (int64_t wall_ms, const char *kind, const char *text, void *arg);
keel_err keel_store_events (keel_store_t *self, int limit, keel_store_event_fn *fn, void *arg);

// ---------------------------------------------------------------- maintenance

typedef struct {
    uint64_t services_purged;
    uint64_t bytes_before;
    uint64_t bytes_after;
} keel_store_maintenance_t;

// Deletes closed services whose results are all acknowledged and whose
// closed_wall_ms is older than now_wall_ms - retention_ms, checkpoints the
// WAL and vacuums. Must run outside a loop-turn transaction.
keel_err keel_store_maintenance (keel_store_t *self, int64_t now_wall_ms, int64_t retention_ms,
                                 keel_store_maintenance_t *report, keel_error_t *err);

// Size of the store on disk (db + WAL), in bytes; 0 for memory:.
uint64_t keel_store_size (keel_store_t *self);

#endif
