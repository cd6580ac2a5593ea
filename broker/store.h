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
      "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?…]" (or postgres://)
                     PostgreSQL through libpq (store_pg.h: brokers on one
                     database are members, one serving at a time (below,
                     "members"), a pipeline per turn, durability is
                     the server's synchronous_commit; StoreSync does not
                     apply; no snapshots)
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
#include "changes.h"
#include "error.h"

typedef struct _keel_store_t keel_store_t;

typedef enum {
    KEEL_STORE_SYNC_FULL = 0,  // commits fdatasynced before acks: acks survive power loss
    KEEL_STORE_SYNC_NORMAL = 1 // no sync per commit: acks survive kill -9 only
} keel_store_sync_t;

// ---------------------------------------------------------------- lifecycle

// Opens (creating if absent) the store named by uri. Returns NULL and fills
// err on failure (see above).
keel_store_t *keel_store_open (const char *uri, keel_store_sync_t sync, keel_error_t *err);
void keel_store_destroy (keel_store_t **self_p);

// True when writes reach a disk (sqlite:), false for memory:.
bool keel_store_durable (const keel_store_t *self);

// Human description for logs: "sqlite:/var/lib/keel/broker.db (WAL, StoreSync=full)".
// Never shows a password.
const char *keel_store_describe (const keel_store_t *self);

// Writes a store URI to out, truncated to size, with any password it holds
// (postgresql://user:PASSWORD@…, ?password=…) replaced by "***": the form
// for logs and messages.
void keel_store_safe_uri (const char *uri, char *out, size_t size);

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
// StoreSync=full on SQLite: the store file to checkpoint off the loop
// (syncer.h), else NULL; and whether its WAL is due a checkpoint now.
// keel_store_checkpoints_elsewhere (true) tells the store a syncer takes
// them: until then (a pair's passive, a broker starting) its commits
// checkpoint every 1,000 WAL pages as SQLite would.
const char *keel_store_checkpoint_path (const keel_store_t *self);
bool keel_store_checkpoint_due (const keel_store_t *self);
void keel_store_checkpoints_elsewhere (keel_store_t *self, bool elsewhere);
keel_err keel_store_sync (keel_store_t *self, keel_error_t *err);

// The SQLite store's writes on a thread of their own (store_writer.h):
// once started, keel_store_apply_all only stages the turn's journal,
// keel_store_commit_async says whether it may be handed over (a failing
// writer refuses it with its error), and keel_store_hand_over hands it over;
// commits are then answered later, as below (issued, collect, answer_fd),
// and keel_store_sync waits for every one. keel_store_commit still commits
// before it returns (after every turn handed over). interval_ms is
// StoreSyncInterval. No-op for other backends. keel_store_stop_writer
// writes what was handed over and stops the thread (so does destroy).
keel_err keel_store_start_writer (keel_store_t *self, int64_t interval_ms, keel_error_t *err);
void keel_store_stop_writer (keel_store_t *self);
// Ends a turn's journal after keel_store_commit_async: hands it to the
// writer (which takes its records) when there is one and the commit
// succeeded; clears it in every case (use it where keel_changes_clear
// would end the turn).
void keel_store_hand_over (keel_store_t *self, keel_changes_t *changes);
// With a writer: the durations (µs) of its commits since the last call, at
// most max (the broker's keel_store_commit_seconds); 0 without one (the
// loop times its own commits). keel_store_has_writer says which.
size_t keel_store_commit_times (keel_store_t *self, uint64_t *us, size_t max);
bool keel_store_has_writer (const keel_store_t *self);
// The writer's flushes so far (0 without a writer): the broker counts them
// in store_syncs, as it counts the syncer's.
uint64_t keel_store_flushes (keel_store_t *self);
// True (the reason in err) once the writer failed to flush: what it
// answered durable may not be; the broker must stop acknowledging.
bool keel_store_broken (keel_store_t *self, keel_error_t *err);

// Commits answered later (postgresql:). keel_store_commit_async sends the
// commit and returns; the commit is durable once keel_store_collect returns
// a number at least the keel_store_issued read right after it. collect
// reads, without waiting, the answers that have arrived; answer_fd (-1 when
// none is awaited) becomes readable when one arrives, for the loop's poll
// (it may change after a reconnect: read it again each turn). A commit
// whose answer is lost (the connection went) is not lost: the store sends
// its records again before the next turn's, in order, and confirms them
// with that turn. Backends durable as commit_async returns (or through a
// syncer) keep issued and collect at 0.
int keel_store_answer_fd (const keel_store_t *self);
uint64_t keel_store_issued (const keel_store_t *self);
uint64_t keel_store_collect (keel_store_t *self, keel_error_t *err);

// True when writes are waiting for a commit (always false for memory:).
bool keel_store_in_transaction (const keel_store_t *self);

// Abandons the open transaction, if any.
void keel_store_rollback (keel_store_t *self);

// The message of the most recent failed write ("PATH: ...: database or disk
// is full"), for logging after a write returned an error; "" if none. Valid
// until the next call on the store.
const char *keel_store_last_error (const keel_store_t *self);

// ---------------------------------------------------------------- writes
// The one way to change the store: apply records of the journal of changes
// (changes.h) in the open transaction (opening one if needed). A write
// fails only on store errors; the broker then rolls back the turn.

// (Fails with a writer thread: a turn's records go through apply_all.)
keel_err keel_store_apply (keel_store_t *self, const keel_change_t *change);
// Applies every record of changes in order; stops at the first failure.
// With a writer thread it only stages changes (kept, not copied) for the
// keel_store_commit_async / keel_store_hand_over or keel_store_commit that
// follows.
keel_err keel_store_apply_all (keel_store_t *self, const keel_changes_t *changes);

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

// ---------------------------------------------------------------- members
// A store several brokers share (postgresql:) makes each broker that opens
// it a member (docs/operations.md §4, docs/architecture.md "Members of a
// shared store"). Every member serves: it owns the services submitted to
// it and the engines logged in to it, and loads only those. A member whose
// session ended (kill -9: at once) or whose lease, renewed through the
// database's clock, has passed (a paused broker: its session is ended for
// it) is gone: its successor (the next member by id, the one its welcomes
// named) takes its work over and loads it (ADOPTED). A member that lost
// its work while it was away (a pause, a partition) is FENCED: nothing it
// writes reaches the store. sqlite: and memory: stores are ALONE.

typedef enum {
    KEEL_STORE_ALONE = 0, // not shared
    KEEL_STORE_SERVING,   // a member: writes its own work
    KEEL_STORE_ADOPTED,   // (tick) took over a member that is gone: load the store again
    KEEL_STORE_FENCED     // lost its work while away: rejoin (keel_store_rejoin)
} keel_store_role_t;

typedef struct {
    uint64_t member_id; // a new one at every join: the member's lease epoch
    char name[128];     // keel-broker[PID]@HOST
    char endpoint[256]; // where clients reach it ("" when it did not say)
    bool serving;
    int64_t lease_left_ms; // time its lease still runs (database clock)
    int64_t queued;        // its queued tasks at its last renewal
    int64_t idle_slots;    // its online engines' free slots then
} keel_store_member_t;

#define KEEL_STORE_MEMBERS_MAX 16 // members listed at most

// A member's execution ids carry a prefix made of its member_id
// (member_id % KEEL_STORE_EXEC_PREFIXES + 1, keel_core_set_member): a join
// takes a member_id whose prefix no row of keel_members holds (a member
// that is gone keeps its row, and its engines their ids, until its
// successor adopts its work), so at most this many rows.
#define KEEL_STORE_EXEC_PREFIXES 255

// This broker's endpoint for clients (its AdvertisedEndpoint) and its
// lease (ms); both take effect at the next renewal. No-op when ALONE.
void keel_store_member_setup (keel_store_t *self, const char *endpoint, int64_t lease_ms);

keel_store_role_t keel_store_role (const keel_store_t *self);

// The membership's step, called by the loop every few hundred ms (and at
// once after a pause), never inside a turn: renews the lease (in the next
// transaction, or in one of its own: never waits) and, while there are
// other members, looks for one that is gone (waiting for the server,
// bounded): ADOPTED when this member took its work over (the broker loads
// the store again). With paused (the loop noticed it was not running for a
// while), first checks, waiting, that its session is still there (or can
// be had again): FENCED if another member took its work meanwhile.
keel_store_role_t keel_store_tick (keel_store_t *self, bool paused);

// After FENCED: forgets every write not confirmed (they are not the
// store's any more: *dropped_p counts the records) and joins again as a
// new member, with no work.
keel_err keel_store_rejoin (keel_store_t *self, uint64_t *dropped_p, keel_error_t *err);

// Leaves the cluster for good (keel-admin leave): waits (bounded) for the
// commits in flight, ends its lease and its lock, and waits (bounded) for
// its successor to take its work over. Nothing is written afterwards; tick
// does nothing. No-op when ALONE.
void keel_store_leave (keel_store_t *self);

// The live members as last read: this member first, then the others by
// member id starting after it (its successor second), wrapping;
// the generation grows each time they are read again.
size_t keel_store_members (const keel_store_t *self, const keel_store_member_t **members_p);
uint64_t keel_store_members_gen (const keel_store_t *self);
uint64_t keel_store_member_id (const keel_store_t *self);

// The largest blob (input, output, checkpoint) of a task whose result this
// store takes faster as its whole row (TASK_PUT) than as an update
// (TASK_RESULT): SQLite rewrites a row in a multi-row INSERT OR REPLACE for
// a quarter of what one UPDATE costs. 0: updates (postgresql:, memory:).
size_t keel_store_whole_row_max (const keel_store_t *self);
// This member's load, published to the others at its next renewal:
// tasks queued, and free slots of its online engines. No-op when ALONE.
void keel_store_member_load (keel_store_t *self, int64_t queued, int64_t idle_slots);
// Whether member_id is alive now (its lease runs and its session holds its
// lock; waiting for the server, bounded): 1, 0 (gone: the next tick looks
// for the dead at once), -1 when the server did not answer (or ALONE).
int keel_store_member_alive (keel_store_t *self, uint64_t member_id);
// The member that owns service_id (waiting for the server, bounded): 0
// when the store does not have it (or is not shared), -1 on failure.
int64_t keel_store_service_owner (keel_store_t *self, const char *service_id);
// False while the database cannot be reached (the last attempt failed).
bool keel_store_db_up (const keel_store_t *self);

// ---------------------------------------------------------------- maintenance

typedef struct {
    uint64_t services_purged;
    uint64_t bytes_before;
    uint64_t bytes_after;
} keel_store_maintenance_t;

// Deletes cancelled services, and closed services whose results are all
// acknowledged, whose closed_wall_ms is older than now_wall_ms -
// retention_ms (the broker's core purges the same), checkpoints the
// WAL and vacuums. Must run outside a loop-turn transaction.
keel_err keel_store_maintenance (keel_store_t *self, int64_t now_wall_ms, int64_t retention_ms,
                                 keel_store_maintenance_t *report, keel_error_t *err);

// Size of the store on disk (db + WAL), in bytes; 0 for memory:.
uint64_t keel_store_size (keel_store_t *self);

// ---------------------------------------------------------------- snapshots
// A whole-store copy for the broker pair (DESIGN §6): the active writes one
// (keel_store_snapshot), the passive receives the file, checks it
// (keel_store_check_file) and swaps it in (keel_store_replace). memory:
// stores refuse both with KEEL_ERR_STORE ("not supported for Store=memory").

// Writes a consistent copy of everything committed so far to path (created
// or truncated, with any stale path-journal/-wal/-shm removed) through
// SQLite's online backup of the store's own connection, then fsyncs the
// file and its directory. The copy is a standalone rollback-journal
// database: it opens without the store's WAL. The store is not disturbed
// (its lock, WAL, statements). Call between loop turns: inside an open
// transaction (or after a failed write not yet rolled back) it fails with
// KEEL_ERR_STATE; path naming the store itself is KEEL_ERR_INVALID. On
// failure path is removed; KEEL_ERR_FULL when the disk is full, otherwise
// KEEL_ERR_STORE, err naming path. Takes as long as copying the file.
keel_err keel_store_snapshot (keel_store_t *self, const char *path, keel_error_t *err);

// Checks that path is a Keel store this broker can install with
// keel_store_replace: a SQLite database (read read-only and as immutable:
// only the main file, no -wal, nothing created next to it) with the Keel
// application id and format marker, exactly this broker's schema version
// (neither older nor newer: a pair runs one build) and a clean
// PRAGMA quick_check (O(size)). KEEL_ERR_STORE otherwise, err naming path
// and the problem: "not a Keel store (empty file)", "... (not a SQLite
// database)", "... (foreign SQLite database)", "store schema version 7,
// this broker uses 3", "store is corrupt: database disk image is
// malformed". Needs no store; works for any backend.
keel_err keel_store_check_file (const char *path, keel_error_t *err);

// Replaces the whole content of the store with the database at path (made
// by keel_store_snapshot and passed by keel_store_check_file; replace
// checks again its identity and version, not quick_check) by renaming path
// over the store file: the store's connection is closed cleanly first (its
// WAL checkpointed and deleted), path is fsynced, renamed, and the
// directory fsynced, so after a crash at any point the store file holds
// either the old or the new database, whole. path must be on the store's
// file system (ideally in its directory); it is gone after success. The
// store stays locked against another broker throughout: path is flock'ed
// before the rename and the lock on the old file is released after it.
// Afterwards the store reads the new content (statements prepared again,
// same StoreSync) and keel_store_sync_fd keeps its value (the new WAL
// takes over the same fd, so a syncer keeps working).
// Call between loop turns (KEEL_ERR_STATE inside a transaction).
// Failure before the rename (a bad or missing path, a lock or fsync error)
// leaves the old store open and unchanged. A failed directory fsync after
// the rename is reported but the store is open on the new content. If the
// store cannot be reopened after the rename (an I/O error), the error says
// "store closed": every later call fails, destroy it and open it again.
keel_err keel_store_replace (keel_store_t *self, const char *path, keel_error_t *err);

#endif
