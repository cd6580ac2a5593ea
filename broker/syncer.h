/*  syncer.h — makes the broker's store commits durable off its loop.

    With StoreSync=full a commit is written to the SQLite WAL at once
    (keel_store_commit_async: it survives kill -9 of the broker) and made
    durable against power loss by an fdatasync of the WAL file, which takes
    one disk flush (~0.3 ms here, several ms on many disks). The syncer runs
    that fdatasync in its own thread, so the loop keeps receiving, sending
    results and dispatching while the disk works; what must wait for
    durability (acceptances, result acknowledgements to engines) waits for
    the syncer's answer.

    Commits are numbered by the broker (1, 2, ...). keel_syncer_request(n)
    asks that every commit up to n be made durable. One fdatasync is in
    flight at a time; requests made meanwhile are merged into the next one
    (group commit), and the next one starts no sooner than StoreSyncInterval
    after the last one started, so the number of flushes per second is
    bounded by the disk and by that interval, not by the commit rate. A
    flush costs ~65-110 µs of kernel CPU here; at one per round trip it was
    a fifth of the broker's CPU in W2 (docs/benchmarks.md).

    The syncer's thread does one thing: fdatasync(fd). A second thread, the
    checkpointer, runs when the loop asks (keel_syncer_checkpoint, once the
    WAL holds 1,000 pages) a PASSIVE checkpoint of the store on a SQLite
    connection of its own, opened for it: the copy of the WAL into the database file and its two
    flushes, which SQLite's automatic checkpoint made inside a commit on
    the loop (store_sqlite.c, s_wal_hook). The loop's connection stays
    single-threaded, and a flush never waits for a checkpoint. A failed fdatasync is reported, never retried: after a
    failed flush the kernel may have dropped the dirty pages, so nothing
    written so far can be trusted to be on disk; the broker stops without
    acknowledging more. A failed checkpoint is counted; the WAL then grows
    until a commit checkpoints it on the loop (KEEL_STORE_SQLITE_WAL_FORCE).
*/
#ifndef KEEL_BROKER_SYNCER_H
#define KEEL_BROKER_SYNCER_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"

typedef struct _keel_syncer_t keel_syncer_t;

// Starts the syncer thread for fd (not owned: it must outlive the syncer);
// db_path (copied; NULL: no checkpoints) is the SQLite store to checkpoint.
// A flush starts at least interval_ms after the one before started
// (StoreSyncInterval): requests made meanwhile are merged into it. Returns
// NULL on failure (out of memory, no thread).
keel_syncer_t *keel_syncer_new (int fd, const char *db_path, int64_t interval_ms);

// Stops the thread (after any fdatasync in flight), frees, nulls *self_p.
void keel_syncer_destroy (keel_syncer_t **self_p);

// Asks that every commit up to seq be made durable (no-op if already asked).
void keel_syncer_request (keel_syncer_t *self, uint64_t seq);

// Asks the checkpointer thread for a checkpoint (never blocks); no-op
// while one is running, or without db_path.
void keel_syncer_checkpoint (keel_syncer_t *self);

// What the loop polls: readable when an fdatasync has finished.
zsock_t *keel_syncer_actor (keel_syncer_t *self);

// Reads the finished fdatasync (call when the actor is readable). On
// success returns KEEL_OK and the highest commit now durable in *synced_p
// (and issues the next merged request, if any); on a failed fdatasync
// returns KEEL_ERR_STORE with the reason in err.
keel_err keel_syncer_recv (keel_syncer_t *self, uint64_t *synced_p, keel_error_t *err);

// True while an fdatasync is in flight or requested.
bool keel_syncer_busy (const keel_syncer_t *self);

// True when a request could not reach the thread (it is gone): nothing more
// will be made durable; the broker treats it like a failed fdatasync.
bool keel_syncer_failed (const keel_syncer_t *self);

// Number of fdatasync calls made so far.
uint64_t keel_syncer_flushes (const keel_syncer_t *self);

// Checkpoints made so far (and in *failures, when not NULL, those that
// failed).
uint64_t keel_syncer_checkpoints (const keel_syncer_t *self, uint64_t *failures);

#endif
