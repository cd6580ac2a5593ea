/*  store_sqlite_int.h — internals of the SQLite store backend, private to
    its three files (and tests/unit/test_store.c, for KEEL_STORE_INLINE_MAX
    and the blob kinds; store.c uses store_sqlite.h, the broker store.h):
      store_sqlite.c        the connection: open, schema, migrations, the
                            turn's transaction
      store_sqlite_write.c  the writes, one per journal record kind
      store_sqlite_read.c   counters, loading, the event log, maintenance,
                            the size
*/
#ifndef KEEL_STORE_SQLITE_INT_H
#define KEEL_STORE_SQLITE_INT_H

#include <czmq.h>
#include <sqlite3.h>

#include "store_sqlite.h"

#define KEEL_STORE_EVENTS_MAX 10000 // newest events kept

//  Task blobs (input, output, checkpoint) up to KEEL_STORE_INLINE_MAX bytes
//  live inline in their tasks row (schema 3); larger ones live in
//  task_blobs, one row per blob, with the inline column NULL and the
//  blob's bit (1 << kind) set in tasks.spilled. Why 256: every UPDATE of a
//  task (state, result, ack) rewrites its whole row. Three inline blobs of
//  256 bytes plus the other columns (~100 bytes) keep a row under ~900
//  bytes, so a row never needs an overflow page (barring a long error
//  text), a leaf page holds at least four tasks, and the frequent small
//  updates never rewrite more than that. (Schemas 3-5 kept tasks WITHOUT
//  ROWID, where a cell over ~1000 bytes spilled; since schema 6 tasks is a
//  rowid table keyed by an integer.) A big input is written once to
//  task_blobs and never again. The limit is only a policy: readers follow
//  tasks.spilled, not the size, so changing it needs no migration.
#define KEEL_STORE_INLINE_MAX 256
_Static_assert(KEEL_STORE_SQLITE_WHOLE_ROW_MAX == KEEL_STORE_INLINE_MAX,
               "whole rows are rows without task_blobs");

//  Whole task rows a turn's journal writes with one statement
//  (Q_TASK_PUT_MANY, KEEL_STORE_SQLITE_PUT_BATCH rows): a multi-row INSERT OR
//  REPLACE costs ~0.4-0.5 us a row, new or not, against ~1.2 us for one row a
//  statement and ~2 us for an UPDATE of a result (SQLite 3.40, this machine);
//  32 rows are most of that.
#define KEEL_STORE_PUT_BATCH KEEL_STORE_SQLITE_PUT_BATCH

// task_blobs.kind, and the bit (1 << kind) in tasks.spilled.
enum { KEEL_STORE_BLOB_INPUT = 0, KEEL_STORE_BLOB_OUTPUT = 1, KEEL_STORE_BLOB_CHECKPOINT = 2 };

// Prepared once at open, reused every turn. The load's statements too: a
// broker loads once, when it becomes active, but parsing the six SELECTs
// costs more than running them on a small store, and fuzz_store_rows
// loads once per input.
typedef enum {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_SERVICE_PUT,
    Q_SERVICE_NUMBER,
    Q_SERVICE_NUM,
    Q_SERVICE_STATE,
    Q_SERVICE_DEL_BLOBS,
    Q_SERVICE_DEL_TASKS,
    Q_SERVICE_DEL_EXECS,
    Q_SERVICE_DEL_PENDING,
    Q_SERVICE_DEL,
    Q_TASK_INSERT,
    Q_TASK_PUT_MANY,
    Q_TASK_SPILLED_MANY,
    Q_TASK_REPLACE,
    Q_TASK_BLOBS_DEL,
    Q_BLOB_PUT,
    Q_BLOB_DEL,
    Q_TASK_STATE,
    Q_TASK_RESULT,
    Q_TASK_ACKED,
    Q_TASK_ACKED_RANGE,
    Q_TASK_CHECKPOINT,
    Q_EXEC_PUT,
    Q_EXEC_DEL,
    Q_PENDING_PUT,
    Q_PENDING_DEL,
    Q_CONFIG_SET,
    Q_CONFIG_DEL,
    Q_ENGINE_PUT,
    Q_EVENT,
    Q_EVENT_TRIM,
    Q_META_SET,
    Q_META_GET,
    Q_LOAD_SERVICES,
    Q_LOAD_TASKS,
    Q_LOAD_EXECUTIONS,
    Q_LOAD_PENDING,
    Q_LOAD_CONFIG,
    Q_LOAD_ENGINES,
    Q_COUNT
} keel_store_sqlite_query_t;

struct _keel_store_sqlite_t {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *q[Q_COUNT];
    bool in_txn;             // a turn transaction is open
    keel_err poison;         // a write of this turn failed (KEEL_OK if not)
    keel_error_t poison_err; // its message
    int bind_rc;             // first failed binding of the statement being built
    bool skip;               // the statement being built has no row to touch (s_bind_key)
    int wal_fd;              // the WAL file, for fdatasync (StoreSync=full); -1 if none
    int wal_pages;           // pages in the WAL after the last commit (s_wal_hook; 0 if unhooked)
    bool ckpt_elsewhere;     // a syncer thread checkpoints (keel_store_checkpoints_elsewhere)
    int lock_fd;             // the store file, flock'ed LOCK_EX for this broker's life; -1 if none
    keel_store_sync_t sync;  // StoreSync, kept for reopening after keel_store_sqlite_replace
    zhashx_t *nums;          // service id -> services.num (s_task_key); purged with every rollback
    char last_sid[64];       // the service id s_service_num found last ...
    int64_t last_num;        // ... and its number; 0 when none (cleared with nums)
    int64_t *acked; // keys of the journal's acknowledgements (keel_store_sqlite_acked_later)
    zhashx_t
        *blob_services; // services that may have task_blobs rows (keel_store_sqlite_note_blobs)
    size_t nacked, acked_cap;
};

// Maps a SQLite result code to a Keel error: KEEL_ERR_FULL when the disk is
// full, KEEL_ERR_STORE otherwise.
keel_err keel_store_sqlite_code (sqlite3 *db, int rc);

// Fills err with the store path, what failed and SQLite's message; returns
// the code from keel_store_sqlite_code.
keel_err keel_store_sqlite_error (keel_store_sqlite_t *self, keel_error_t *err, int rc,
                                  const char *what);

// Joins the turn's transaction, opening it at the first write; returns the
// poison if a write of this turn already failed.
keel_err keel_store_sqlite_begin (keel_store_sqlite_t *self);

// Ends the open transaction now, if SQLite has not already rolled it back.
void keel_store_sqlite_rollback_now (keel_store_sqlite_t *self);
// The SQL text of a prepared query (for error messages).
const char *keel_store_sqlite_sql (keel_store_sqlite_query_t query);
// Runs SQL text (no prepared statement) on the connection.
keel_err keel_store_sqlite_exec (keel_store_sqlite_t *self, const char *sql, keel_error_t *err);

// Connects self->db to self->path (already locked): opens, identifies,
// runs quick_check (not on a reconnect: the caller checked the file),
// configures, migrates, prepares the statements and, with StoreSync=full,
// opens the WAL for syncing. On a reconnect keel_store_sqlite_sync_fd
// keeps its value: the new WAL is dup2'ed onto the fd a syncer thread may
// hold, so it syncs the new WAL from then on.
keel_err keel_store_sqlite_connect (keel_store_sqlite_t *self, bool reconnect, keel_error_t *err);

// Fills blob_services: the services with rows in task_blobs now (at
// connect and at each load: rows may come from outside); every blob write
// adds its service, and nothing takes one out before the next look (an
// extra service only costs a check). A task of a service not in it has no
// spilled bit, so a batch of whole rows of such services needs no check
// for blobs it would leave behind.
keel_err keel_store_sqlite_note_blobs (keel_store_sqlite_t *self, keel_error_t *err);

// Finalizes the statements and closes the connection at once (db NULL
// after); for destroy and for giving up on a failed connect.
void keel_store_sqlite_close_db (keel_store_sqlite_t *self);

// Closes the connection cleanly: checkpoints the whole WAL into the
// database, finalizes the statements and closes, which deletes PATH-wal
// and PATH-shm. Fails (nothing closed) when the checkpoint cannot finish.
// The lock and the WAL fd stay open.
keel_err keel_store_sqlite_disconnect (keel_store_sqlite_t *self, keel_error_t *err);

// Checks that the connection self->db holds a Keel store of exactly this
// build's schema (and, if thorough, passes quick_check); errors name
// self->path.
keel_err keel_store_sqlite_check_schema (keel_store_sqlite_t *self, bool thorough,
                                         keel_error_t *err);

// flock(LOCK_EX | LOCK_NB) on fd; the error names path and, when it can be
// told, the pid holding the lock.
keel_err keel_store_sqlite_flock (int fd, const char *path, keel_error_t *err);

// The directory part of path ("." when none) in dir, and an fsync of it.
void keel_store_sqlite_dirname (const char *path, char *dir, size_t size);
keel_err keel_store_sqlite_sync_dir (const char *path, keel_error_t *err);

// StoreSync=full (store_sqlite_wal.c): opens the WAL for fdatasync and
// hooks its page count, or falls back to synchronous=FULL.
keel_err keel_store_sqlite_open_wal (keel_store_sqlite_t *self, bool reconnect, keel_error_t *err);

#endif
