/*  test_syncer.c — broker/syncer.h: fdatasync off the loop, merged
    requests, a failed flush reported (never retried or hidden), and the
    store's checkpoints made off the loop with the WAL kept bounded.
*/
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "store_sqlite.h"
#include "store_writes.h"
#include "syncer.h"

// Waits (bounded) for the syncer's answer and reads it.
static keel_err
s_wait (keel_syncer_t *syncer, uint64_t *synced, keel_error_t *err)
{
    zpoller_t *poller = zpoller_new (keel_syncer_actor (syncer), NULL);
    cr_assert_not_null (poller);
    void *which = zpoller_wait (poller, 10000);
    zpoller_destroy (&poller);
    cr_assert_not_null (which, "the syncer did not answer within 10 s");
    return keel_syncer_recv (syncer, synced, err);
}

// A fresh file with one byte written, for a syncer to flush (path: a
// mkstemp template, filled in).
static int
s_dirty_file (char *path)
{
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    cr_assert_eq (write (fd, "x", 1), 1);
    return fd;
}

Test (syncer, flushes_a_file_and_merges_requests_made_meanwhile, .timeout = 30)
{
    char path[] = "/tmp/keel-syncer-XXXXXX";
    int fd = s_dirty_file (path);
    keel_syncer_t *syncer = keel_syncer_new (fd, NULL, 0);
    cr_assert_not_null (syncer);
    cr_expect_not (keel_syncer_busy (syncer));

    keel_syncer_request (syncer, 1);
    cr_expect (keel_syncer_busy (syncer));
    // While 1 is in flight, 2..5 are merged into one more flush.
    for (uint64_t seq = 2; seq <= 5; seq++)
        keel_syncer_request (syncer, seq);
    keel_syncer_request (syncer, 3); // older than asked: no-op
    uint64_t synced = 0;
    keel_error_t err = { "" };
    cr_assert_eq (s_wait (syncer, &synced, &err), KEEL_OK, "%s", err.text);
    if (synced < 5)
        cr_assert_eq (s_wait (syncer, &synced, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (synced, 5);
    // The first flush covers 2..5 too when they were asked before it began
    // (the thread reads the last commit asked for): one or two flushes.
    cr_expect_leq (keel_syncer_flushes (syncer), 2,
                   "expected at most 2 flushes for 5 requests, "
                   "got %llu",
                   (unsigned long long) keel_syncer_flushes (syncer));
    cr_expect_not (keel_syncer_busy (syncer));

    keel_syncer_destroy (&syncer);
    cr_expect_null (syncer);
    close (fd);
    unlink (path);
}

// StoreSyncInterval: a flush starts no sooner than the interval after the
// one before started, and covers every commit asked for while it waited.
Test (syncer, flushes_are_spaced_by_the_interval_and_cover_what_waited, .timeout = 30)
{
    char path[] = "/tmp/keel-syncer-XXXXXX";
    int fd = s_dirty_file (path);
    keel_syncer_t *syncer = keel_syncer_new (fd, NULL, 200);
    cr_assert_not_null (syncer);
    uint64_t synced = 0;
    keel_error_t err = { "" };
    int64_t asked = zclock_usecs ();
    keel_syncer_request (syncer, 1); // the first flush starts at once
    cr_assert_eq (s_wait (syncer, &synced, &err), KEEL_OK, "%s", err.text);
    cr_assert_eq (synced, 1);
    keel_syncer_request (syncer, 2); // waits for the interval in the thread
    keel_syncer_request (syncer, 3); // asked meanwhile: merged by the loop's side
    keel_syncer_request (syncer, 4);
    cr_assert_eq (s_wait (syncer, &synced, &err), KEEL_OK, "%s", err.text);
    int64_t took_ms = (zclock_usecs () - asked) / 1000;
    cr_expect_geq (took_ms, 199,
                   "the second flush came %lld ms after the first was asked for: "
                   "sooner than the 200 ms interval",
                   (long long) took_ms);
    cr_expect_eq (synced, 4, "the second flush should cover 2..4, covered up to %llu",
                  (unsigned long long) synced);
    cr_expect_eq (keel_syncer_flushes (syncer), 2, "expected 2 flushes, got %llu",
                  (unsigned long long) keel_syncer_flushes (syncer));
    cr_expect_not (keel_syncer_busy (syncer));
    keel_syncer_destroy (&syncer);
    close (fd);
    unlink (path);
}

// A broker stopping while its syncer waits out StoreSyncInterval (up to a
// second) is not held by that wait: $TERM ends it.
Test (syncer, stopping_does_not_wait_out_the_interval, .timeout = 30)
{
    char path[] = "/tmp/keel-syncer-XXXXXX";
    int fd = s_dirty_file (path);
    keel_syncer_t *syncer = keel_syncer_new (fd, NULL, 20000); // 20 s between flushes
    cr_assert_not_null (syncer);
    uint64_t synced = 0;
    keel_error_t err = { "" };
    keel_syncer_request (syncer, 1); // the first flush starts at once
    cr_assert_eq (s_wait (syncer, &synced, &err), KEEL_OK, "%s", err.text);
    keel_syncer_request (syncer, 2); // the thread waits up to 20 s to flush it
    int64_t start = zclock_mono ();
    keel_syncer_destroy (&syncer);
    int64_t took_ms = zclock_mono () - start;
    cr_expect_lt (took_ms, 10000, "stopping the syncer took %lld ms: it waited out the interval",
                  (long long) took_ms);
    close (fd);
    unlink (path);
}

Test (syncer, a_failed_flush_is_reported_with_its_reason, .timeout = 30)
{
    int fds[2];
    cr_assert_eq (pipe (fds), 0);
    // fdatasync on a pipe fails (EINVAL): the same path as a disk's EIO.
    keel_syncer_t *syncer = keel_syncer_new (fds[0], NULL, 0);
    cr_assert_not_null (syncer);
    keel_syncer_request (syncer, 1);
    uint64_t synced = 0;
    keel_error_t err = { "" };
    cr_expect_eq (s_wait (syncer, &synced, &err), KEEL_ERR_STORE);
    cr_expect (strstr (err.text, "fdatasync"), "%s", err.text);
    cr_expect_eq (synced, 0, "a failed flush reported commits durable");
    keel_syncer_destroy (&syncer);
    close (fds[0]);
    close (fds[1]);
}

static volatile sig_atomic_t s_usr1;

static void
s_on_usr1 (int sig)
{
    (void) sig;
    s_usr1++;
}

// A signal that can only land on the syncer's thread (every other thread
// blocks it) must not end that thread: the broker's SIGTERM once did, and
// the loop then blocked forever handing it the next commit.
Test (syncer, a_signal_does_not_end_the_thread, .timeout = 20)
{
    char path[] = "/tmp/keel-syncer-XXXXXX";
    int fd = s_dirty_file (path);
    struct sigaction sa = { 0 };
    sa.sa_handler = s_on_usr1; // no SA_RESTART: interrupts system calls
    cr_assert_eq (sigaction (SIGUSR1, &sa, NULL), 0);
    keel_syncer_t *syncer = keel_syncer_new (fd, NULL, 0);
    cr_assert_not_null (syncer);
    sigset_t usr1;
    sigemptyset (&usr1);
    sigaddset (&usr1, SIGUSR1);
    cr_assert_eq (pthread_sigmask (SIG_BLOCK, &usr1, NULL), 0);
    for (int i = 0; i < 5; i++) {
        kill (getpid (), SIGUSR1);
        zclock_sleep (20);
    }
    keel_syncer_request (syncer, 1);
    cr_expect_not (keel_syncer_failed (syncer), "the syncer thread is gone after a signal");
    uint64_t synced = 0;
    keel_error_t err = { "" };
    if (!keel_syncer_failed (syncer))
        cr_expect_eq (s_wait (syncer, &synced, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (synced, 1);
    cr_assert_eq (pthread_sigmask (SIG_UNBLOCK, &usr1, NULL), 0); // the handler runs here
    keel_syncer_destroy (&syncer);
    close (fd);
    unlink (path);
}

// ---------------------------------------------------------------- checkpoints

// A StoreSync=full SQLite store in a fresh directory (its path in dir).
static keel_store_t *
s_store (char *dir, size_t size)
{
    snprintf (dir, size, "/tmp/keel-ckpt-XXXXXX");
    cr_assert_not_null (mkdtemp (dir));
    char uri[300];
    snprintf (uri, sizeof uri, "sqlite:%s/store.db", dir);
    keel_error_t err = { "" };
    keel_store_t *store = keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err);
    cr_assert_not_null (store, "%s", err.text);
    cr_assert_not_null (keel_store_checkpoint_path (store),
                        "a full store has a file to checkpoint");
    keel_store_service_t svc = { .service_id = "svc", .type = "double", .driver_id = "d" };
    cr_assert_eq (test_store_service_put (store, &svc), KEEL_OK);
    cr_assert_eq (keel_store_commit_async (store, &err), KEEL_OK, "%s", err.text);
    return store;
}

// One commit of 50 tasks with 1 KiB inputs (some 13 pages of WAL).
static void
s_turn (keel_store_t *store, uint64_t turn)
{
    static uint8_t input[1024];
    memset (input, 'i', sizeof input);
    for (uint64_t i = 0; i < 50; i++) {
        keel_store_task_t task = {
            .service_id = "svc", .task_id = turn * 50 + i, .input = input, .input_len = sizeof input
        };
        cr_assert_eq (test_store_task_put (store, &task), KEEL_OK);
    }
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_commit_async (store, &err), KEEL_OK, "%s", err.text);
}

static off_t
s_wal_bytes (const char *dir)
{
    char wal[300];
    snprintf (wal, sizeof wal, "%s/store.db-wal", dir);
    struct stat st;
    return stat (wal, &st) == 0 ? st.st_size : 0;
}

static int
s_count_task (const keel_store_task_t *task, void *arg)
{
    (void) task;
    (*(uint64_t *) arg)++;
    return 0;
}

// Every task written is in the store once it is opened again.
static void
s_assert_tasks (const char *dir, uint64_t want)
{
    char uri[300];
    snprintf (uri, sizeof uri, "sqlite:%s/store.db", dir);
    keel_error_t err = { "" };
    keel_store_t *store = keel_store_open (uri, KEEL_STORE_SYNC_FULL, &err);
    cr_assert_not_null (store, "%s", err.text);
    uint64_t n = 0;
    keel_store_loader_t loader = { .task = s_count_task };
    cr_assert_eq (keel_store_load (store, &loader, &n, &err), KEEL_OK, "%s", err.text);
    cr_assert_eq (n, want, "%" PRIu64 " tasks in the store, %" PRIu64 " written", n, want);
    keel_store_destroy (&store);
}

static void
s_remove (const char *dir)
{
    char cmd[400];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq (system (cmd), 0);
}

#define S_PAGE 4096

// The broker's way (broker.c, s_checkpoint): once the WAL holds 1,000
// pages, the checkpointer copies it into the database file off the loop;
// the next commit then starts the WAL again from its start. The WAL stays
// near SQLite's mark, and every task is there after a reopen.
Test (syncer, checkpoints_off_the_loop_keep_the_wal_near_1000_pages, .timeout = 60)
{
    char dir[64];
    keel_store_t *store = s_store (dir, sizeof dir);
    keel_syncer_t *syncer =
        keel_syncer_new (keel_store_sync_fd (store), keel_store_checkpoint_path (store), 0);
    cr_assert_not_null (syncer);
    keel_store_checkpoints_elsewhere (store, true);
    off_t largest = 0;
    uint64_t asked = 0;
    for (uint64_t turn = 0; turn < 600; turn++) {
        s_turn (store, turn);
        off_t bytes = s_wal_bytes (dir);
        largest = bytes > largest ? bytes : largest;
        if (!keel_store_checkpoint_due (store))
            continue;
        uint64_t before = keel_syncer_checkpoints (syncer, NULL);
        keel_syncer_checkpoint (syncer);
        asked++;
        // Bounded wait for it (a test's pace, not the broker's: the loop
        // goes on writing meanwhile).
        for (int i = 0; i < 1000 && keel_syncer_checkpoints (syncer, NULL) == before; i++)
            zclock_sleep (10);
        cr_assert_gt (keel_syncer_checkpoints (syncer, NULL), before, "no checkpoint within 10 s");
    }
    uint64_t failed = 1;
    uint64_t done = keel_syncer_checkpoints (syncer, &failed);
    cr_expect_eq (failed, 0);
    cr_expect_geq (done, 4, "%" PRIu64 " checkpoints for ~7,800 pages of WAL", done);
    cr_expect_eq (done, asked);
    // 1,000 pages, the turn that crossed the mark, the WAL header: well
    // under the 8,000 pages at which the commits would checkpoint.
    cr_expect_lt (largest, (off_t) 1100 * (S_PAGE + 24), "the WAL grew to %lld bytes",
                  (long long) largest);
    keel_syncer_destroy (&syncer);
    keel_store_destroy (&store);
    s_assert_tasks (dir, 600 * 50);
    s_remove (dir);
}

// Nobody checkpoints (a syncer that was asked nothing, or whose
// checkpoints fail): the commits do, past KEEL_STORE_SQLITE_WAL_FORCE
// pages; and a store that has no syncer (elsewhere = false, a pair's
// passive) checkpoints at SQLite's own mark, as before.
Test (syncer, without_the_checkpointer_the_commits_keep_the_wal_bounded, .timeout = 60)
{
    for (int elsewhere = 0; elsewhere < 2; elsewhere++) {
        char dir[64];
        keel_store_t *store = s_store (dir, sizeof dir);
        keel_store_checkpoints_elsewhere (store, elsewhere);
        off_t largest = 0;
        for (uint64_t turn = 0; turn < 1400; turn++) {
            s_turn (store, turn);
            off_t bytes = s_wal_bytes (dir);
            largest = bytes > largest ? bytes : largest;
            cr_assert_not (keel_store_checkpoint_due (store) && !elsewhere,
                           "without a syncer nothing is due elsewhere");
        }
        off_t mark = elsewhere ? KEEL_STORE_SQLITE_WAL_FORCE : KEEL_STORE_SQLITE_WAL_CHECKPOINT;
        cr_expect_lt (largest, (mark + 100) * (S_PAGE + 24),
                      "elsewhere=%d: the WAL grew to %lld bytes", elsewhere, (long long) largest);
        cr_expect_gt (largest, (mark - 100) * (S_PAGE + 24),
                      "elsewhere=%d: the WAL was checkpointed early (%lld bytes)", elsewhere,
                      (long long) largest);
        keel_store_destroy (&store);
        s_assert_tasks (dir, 1400 * 50);
        s_remove (dir);
    }
}

// A checkpoint that cannot be made (no such store) is counted as failed,
// and the checkpointer takes the next request.
Test (syncer, a_failed_checkpoint_is_counted, .timeout = 30)
{
    char path[] = "/tmp/keel-syncer-XXXXXX";
    int fd = s_dirty_file (path);
    keel_syncer_t *syncer = keel_syncer_new (fd, "/nonexistent-dir/store.db", 0);
    cr_assert_not_null (syncer);
    for (uint64_t want = 1; want <= 2; want++) {
        keel_syncer_checkpoint (syncer);
        uint64_t failed = 0;
        for (int i = 0; i < 1000 && keel_syncer_checkpoints (syncer, &failed) == 0 && failed < want;
             i++)
            zclock_sleep (10);
        cr_assert_eq (failed, want, "failures counted: %" PRIu64, failed);
        cr_assert_eq (keel_syncer_checkpoints (syncer, NULL), 0);
    }
    keel_syncer_destroy (&syncer);
    close (fd);
    unlink (path);
}
