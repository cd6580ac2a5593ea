/*  store_writer.h — the SQLite store's writes, off the broker's loop.

    Without a writer the loop applies each turn's journal to SQLite and
    commits it itself: in W1 that was ~60 % of the loop's CPU, and the loop
    is the grid's bottleneck (docs/benchmarks.md). With a writer the loop
    hands the journal over (its records are swapped out, not copied) and
    goes on. The writer thread takes every journal handed over since its
    last transaction into one transaction (group commit), commits it, and
    with StoreSync=full flushes the WAL (fdatasync, at most one flush per
    StoreSyncInterval from the start of one to the start of the next: the
    commits made meanwhile share it). Then it answers "every turn up to N is
    durable": keel_store_writer_collect returns N, and the descriptor of
    keel_store_writer_fd turns readable when an answer comes. The loop sends
    what waits for durability (acceptances, engines' result
    acknowledgements) only then, as it does for a PostgreSQL store, whose
    commits are answered later too (store.h).

    Turns are numbered 1, 2, ... in the order they are handed over; an
    empty journal takes no number. A journal is handed over in two steps,
    so that a turn is never promised and then lost: keel_store_writer_ready
    says whether one may be (and makes the room for it: it can fail), and
    keel_store_writer_hand_over then takes it and cannot fail.

    Failure. A transaction that fails (disk full, an I/O error) is rolled
    back; the writer keeps its journals, in order, and tries them again
    every KEEL_STORE_WRITER_RETRY_MS. While it fails, keel_store_writer_ready
    refuses the next turns with its error: the core refuses their
    submissions and keeps their other changes for a later commit, as it
    does when a commit on the loop fails. Nothing handed over is dropped
    while the writer runs; what waits for it is not acknowledged until it
    is durable. A failed fdatasync is not tried again (after one, the
    kernel may have dropped the dirty pages: what the WAL holds cannot be
    trusted to be on disk): the writer stops and keel_store_writer_broken
    says so, and the broker stops without acknowledging more (syncer.h).

    The connection is the writer's while it works. The loop's other uses
    of it (a load, reads for keel-admin, maintenance, a snapshot, a commit
    it waits for) are made between keel_store_writer_hold and
    keel_store_writer_release: hold waits until the writer is idle (and,
    with drain, until everything handed over is written) and keeps it idle
    until release. Only the loop's thread calls the functions below.

    Checkpoints: the writer's commits run SQLite's WAL hook (store_sqlite_wal.c),
    which checkpoints every KEEL_STORE_SQLITE_WAL_CHECKPOINT pages, in the
    writer's thread.
*/
#ifndef KEEL_STORE_WRITER_H
#define KEEL_STORE_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "changes.h"
#include "error.h"
#include "store_sqlite.h"

#define KEEL_STORE_WRITER_RETRY_MS  1000
// Records handed over and not yet written, at most: beyond,
// keel_store_writer_ready waits for the writer (the memory of journals in
// flight stays bounded: W4, a million tasks submitted at once, handed the
// writer turns of 20,000-70,000 records faster than it wrote them).
#define KEEL_STORE_WRITER_QUEUE_MAX 32768
// Written nodes kept for the next hand-overs (each keeps its journal's
// memory, up to room for KEEL_STORE_WRITER_QUEUE_MAX records).
#define KEEL_STORE_WRITER_SPARES    4

typedef struct _keel_store_writer_t keel_store_writer_t;

// Starts the writer thread for sql (not owned; it must outlive the
// writer). flush: fdatasync the WAL after commits (StoreSync=full with a
// WAL to flush), no sooner than interval_ms after the last flush started.
// Returns NULL and fills err on failure.
keel_store_writer_t *keel_store_writer_new (keel_store_sqlite_t *sql, bool flush,
                                            int64_t interval_ms, keel_error_t *err);

// Writes what was handed over (unless the writer is failing or broken:
// then what is left was never acknowledged), stops the thread, frees,
// nulls *self_p.
void keel_store_writer_destroy (keel_store_writer_t **self_p);

// Whether a journal may be handed over now (after waiting while
// KEEL_STORE_WRITER_QUEUE_MAX records are queued or being written): KEEL_OK,
// or the error the writer is failing with (KEEL_ERR_FULL for a full disk,
// else KEEL_ERR_STORE; KEEL_ERR_NOMEM when there is no memory for the hand
// over), written to err.
keel_err keel_store_writer_ready (keel_store_writer_t *self, keel_error_t *err);

// After keel_store_writer_ready returned KEEL_OK: takes changes' records
// (changes is left empty, its memory the writer's last spare) and returns
// the turn's number; an empty journal takes none and returns the last
// one.
uint64_t keel_store_writer_hand_over (keel_store_writer_t *self, keel_changes_t *changes);

// The last turn handed over, and the last one durable (reads the answers
// that arrived, without waiting).
uint64_t keel_store_writer_issued (const keel_store_writer_t *self);
uint64_t keel_store_writer_collect (keel_store_writer_t *self);

// Readable when an answer arrived (read by keel_store_writer_collect).
int keel_store_writer_fd (const keel_store_writer_t *self);

// The durations (µs) of the writer's transactions (apply and commit) since
// the last call, oldest first, at most max (the loop's metrics; the writer
// keeps KEEL_STORE_WRITER_TIMES unread ones at most).
#define KEEL_STORE_WRITER_TIMES 256
size_t keel_store_writer_commit_times (keel_store_writer_t *self, uint64_t *us, size_t max);

// The flushes (fdatasync) made so far.
uint64_t keel_store_writer_flushes (keel_store_writer_t *self);

// True (with the reason in err) once a flush failed: nothing more may be
// acknowledged, the broker must stop.
bool keel_store_writer_broken (keel_store_writer_t *self, keel_error_t *err);

// Waits until every turn handed over is durable (bounded only by the
// disk). Fails with the writer's error when it is failing or broken.
keel_err keel_store_writer_wait (keel_store_writer_t *self, keel_error_t *err);

// The connection for the loop: waits until the writer is idle (with
// drain, until every turn handed over is written too; that fails with the
// writer's error while it is failing or broken) and keeps it idle until
// keel_store_writer_release.
keel_err keel_store_writer_hold (keel_store_writer_t *self, bool drain, keel_error_t *err);
void keel_store_writer_release (keel_store_writer_t *self);

#endif
