/*  journal.h — an append-only journal of what each process did, for checks.

    A chaos campaign (scripts/chaos/) proves the grid's promise by reading
    what every process says it did, not what the processes conclude: a
    driver journals each task it submitted and each result it handed to its
    application, an engine each execution it started and ended, a broker
    its epoch, each acceptance it acknowledged and each dispatch. The
    checker (scripts/chaos/check.py) trusts nothing else.

    Off unless the environment names a file: KEEL_JOURNAL=PATH. Then each
    record is one JSON line appended to PATH with a single write(2) on an
    O_APPEND descriptor, so several processes can share one file, lines
    never interleave, and a record survives kill -9 of its writer the
    moment the call returns (it is in the kernel; no buffer in the
    process). When off, KEEL_JOURNAL costs one compare of a global and
    formats nothing.

    Record shape (fields absent when zero/NULL):
        {"t":WALL_MS,"who":"engine","pid":N,"run":"PID.START_US","ev":"exec_end","service":"…",
         "task":N,"execution":N,"engine":"…","epoch":N,"status":"ok",
         "output":"…","n":N,"text":"…"}
    "run" names the process incarnation (pid and start time in µs): over a
    long campaign pids are reused, and a record must never be taken for
    another process's. Events and their fields are listed in
    docs/reliability.md.

    The journal's one descriptor is process-wide state, like the log level:
    set once by keel_journal_init (idempotent; the driver library calls it
    too), closed by the kernel at exit. Thread-safe: each record is
    formatted on the caller's stack and written in one call.
*/
#ifndef KEEL_JOURNAL_H
#define KEEL_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

extern int keel_journal_fd_; // -1 when the journal is off

typedef struct {
    const char *service; // service id
    uint64_t task;
    uint64_t execution;
    const char *engine; // engine id
    int64_t epoch;
    const char *status; // "ok", "failed", …
    const void *output; // output bytes (or input, for "submitted")
    size_t output_len;
    int64_t n;        // a count (tasks accepted, …)
    const char *text; // anything else: an error, a broker name
} keel_journal_rec_t;

// Opens the journal named by $KEEL_JOURNAL (if set and not yet open) for
// the process kind `who` ("broker", "engine", "driver"). A journal that
// cannot be opened is reported once on stderr and left off: the journal is
// for checks, never a reason for a daemon not to run.
void keel_journal_init (const char *who);

// Appends one record of event `event`. Use KEEL_JOURNAL instead.
void keel_journal_write (const char *event, const keel_journal_rec_t *rec);

// KEEL_JOURNAL ("exec_end", .service = id, .task = n, .status = "ok");
#define KEEL_JOURNAL(event, ...)                                                                   \
    do {                                                                                           \
        if (keel_journal_fd_ >= 0)                                                                 \
            keel_journal_write ((event), &(keel_journal_rec_t) { __VA_ARGS__ });                   \
    } while (0)

#endif
