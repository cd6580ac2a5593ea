/*  test_store_writer.c — the SQLite store's writer thread (store_writer.h)
    through store.h, as the broker drives it: a turn's journal staged by
    keel_store_apply_all, keel_store_commit_async, keel_store_hand_over,
    then the answers (issued, collect, answer_fd). Real SQLite files under
    /tmp; the failures are real ones (a file size limit, a WAL descriptor
    that cannot be flushed).
*/
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "store_test.h"
#include "no_room.h"
#include "store_writer.h" // KEEL_STORE_WRITER_QUEUE_MAX
#include <czmq.h>

TestSuite (store_writer, .init = s_setup, .fini = s_teardown, .timeout = 60);

static keel_store_t *
s_open_writer (void)
{
    keel_store_t *store = s_open ();
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_start_writer (store, 0, &err), KEEL_OK, "%s", err.text);
    cr_assert_eq (keel_store_sync_fd (store), -1, "the writer flushes: no syncer wanted");
    return store;
}

// A journal of one service (with put) and tasks [first, first + n), each
// with an input of `size` bytes.
static keel_changes_t *
s_journal (const char *service_id, bool put, uint64_t first, uint64_t n, size_t size)
{
    static uint8_t input[4096];
    keel_changes_t *j = keel_changes_new ();
    cr_assert_not_null (j);
    if (put)
        cr_assert_eq (keel_changes_add (j, &(keel_change_t) { .kind = KEEL_CHANGE_SERVICE_PUT,
                                                              .service = s_service (service_id) }),
                      KEEL_OK);
    for (uint64_t i = first; i < first + n; i++) {
        keel_store_task_t t = s_task (service_id, i);
        t.input = input;
        t.input_len = size;
        cr_assert_eq (
            keel_changes_add (j, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_PUT, .task = t }),
            KEEL_OK);
    }
    return j;
}

// One turn the way the broker's s_commit ends it. Returns commit_async's
// answer; the journal is empty afterwards either way.
static keel_err
s_turn (keel_store_t *store, keel_changes_t *j, keel_error_t *err)
{
    keel_err rc = keel_store_apply_all (store, j);
    if (rc == KEEL_OK)
        rc = keel_store_commit_async (store, err);
    if (rc != KEEL_OK)
        keel_store_rollback (store);
    keel_store_hand_over (store, j);
    cr_assert_eq (keel_changes_size (j), 0, "the turn's journal was not emptied");
    return rc;
}

// Waits (5 s at most) until every turn up to `turn` is answered durable.
static bool
s_durable (keel_store_t *store, uint64_t turn)
{
    int64_t deadline = zclock_mono () + 5000;
    while (keel_store_collect (store, NULL) < turn && zclock_mono () < deadline) {
        struct pollfd p = { keel_store_answer_fd (store), POLLIN, 0 };
        poll (&p, 1, 100);
    }
    return keel_store_collect (store, NULL) >= turn;
}

static int64_t
s_count_tasks (void)
{
    return s_sql_int ("SELECT count(*) FROM tasks");
}

Test (store_writer, turns_handed_over_are_written_in_order_and_answered_durable)
{
    keel_store_t *store = s_open_writer ();
    keel_error_t err = { "" };
    keel_changes_t *j = s_journal ("svc", true, 0, 10, 8);
    cr_assert_eq (s_turn (store, j, &err), KEEL_OK, "%s", err.text);
    cr_assert_eq (keel_store_issued (store), 1);
    cr_assert_eq (s_turn (store, j, &err), KEEL_OK, "an empty turn: %s", err.text);
    cr_assert_eq (keel_store_issued (store), 1, "an empty journal took a turn");
    for (int i = 1; i < 20; i++) {
        keel_changes_t *more = s_journal ("svc", false, (uint64_t) i * 10, 10, 8);
        cr_assert_eq (s_turn (store, more, &err), KEEL_OK, "%s", err.text);
        keel_changes_destroy (&more);
    }
    cr_assert_eq (keel_store_issued (store), 20);
    cr_assert (s_durable (store, 20), "turns answered: %llu of 20",
               (unsigned long long) keel_store_collect (store, NULL));
    cr_expect_eq (keel_store_sync (store, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (s_count_tasks (), 200);
    cr_expect_gt (keel_store_flushes (store), 0, "StoreSync=full: the WAL was never flushed");
    uint64_t us[300];
    size_t times = keel_store_commit_times (store, us, 300);
    cr_expect (times >= 1 && times <= 20, "%zu commit times for 20 turns", times);
    cr_expect_eq (keel_store_commit_times (store, us, 300), 0, "the times were not drained");
    // A synchronous commit runs after every turn handed over, in order.
    keel_changes_t *last = s_journal ("svc", false, 200, 1, 8);
    cr_assert_eq (keel_store_apply_all (store, last), KEEL_OK);
    cr_assert_eq (keel_store_commit (store, &err), KEEL_OK, "%s", err.text);
    keel_changes_clear (last);
    s_seen_t seen = s_load (store);
    cr_expect_eq (seen.services, 1);
    cr_expect_eq (seen.tasks, 201);
    keel_changes_destroy (&j);
    keel_changes_destroy (&last);
    keel_store_destroy (&store);
}

Test (store_writer, the_turns_handed_over_are_written_before_the_store_closes)
{
    keel_store_t *store = s_open_writer ();
    keel_error_t err = { "" };
    for (int i = 0; i < 50; i++) {
        keel_changes_t *j = s_journal ("svc", i == 0, (uint64_t) i * 100, 100, 64);
        cr_assert_eq (s_turn (store, j, &err), KEEL_OK, "%s", err.text);
        keel_changes_destroy (&j);
    }
    keel_store_destroy (&store); // at once: nothing waited for the answers
    cr_expect_eq (s_count_tasks (), 5000);
}

Test (store_writer, a_failed_write_is_tried_again_and_new_turns_are_refused_meanwhile)
{
    keel_store_t *store = s_open_writer ();
    keel_error_t err = { "" };
    keel_changes_t *j = s_journal ("svc", true, 0, 1, 8);
    cr_assert_eq (s_turn (store, j, &err), KEEL_OK, "%s", err.text);
    cr_assert (s_durable (store, 1));

    struct rlimit old = s_no_room ();
    keel_changes_t *big = s_journal ("svc", false, 1, 500, 2000); // ~1 MB: the WAL must grow
    cr_assert_eq (s_turn (store, big, &err), KEEL_OK, "handed over before the failure: %s",
                  err.text);
    cr_assert_eq (keel_store_issued (store), 2);
    // The writer fails it; the next turns are refused with its error (those
    // handed over before it failed wait with it: they are written later).
    keel_err rc = KEEL_OK;
    uint64_t id = 1000, taken = 0;
    int64_t deadline = zclock_mono () + 5000;
    while (rc == KEEL_OK && zclock_mono () < deadline) {
        keel_changes_t *next = s_journal ("svc", false, ++id, 1, 8);
        memset (&err, 0, sizeof err);
        rc = s_turn (store, next, &err);
        keel_changes_destroy (&next);
        if (rc == KEEL_OK) {
            taken++;
            zclock_sleep (10);
        }
    }
    cr_expect_str_not_empty (err.text);
    cr_expect_str_eq (keel_store_last_error (store), err.text);
    cr_expect_neq (keel_store_sync (store, &err), KEEL_OK, "sync said durable while failing");
    cr_expect_lt (keel_store_collect (store, NULL), 2, "the failed turn was answered durable");
    s_room_again (old);

    // Tried again (once a second): the failed turn is written after all.
    uint64_t issued = keel_store_issued (store);
    cr_assert (s_durable (store, 2), "the failed turn was not written once there was room");
    keel_changes_t *after = s_journal ("svc", false, 2000, 1, 8);
    cr_assert_eq (s_turn (store, after, &err), KEEL_OK, "refused after the store recovered: %s",
                  err.text);
    cr_assert (s_durable (store, issued + 1));
    keel_store_destroy (&store);
    cr_expect_eq (s_count_tasks (), (int64_t) (1 + 500 + taken + 1),
                  "every task handed over (and no refused one) is in the store");
    char sql[100];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM tasks WHERE task_id = %llu",
              (unsigned long long) id);
    cr_expect_eq (s_sql_int (sql), 0, "a refused turn was written");
    keel_changes_destroy (&j);
    keel_changes_destroy (&big);
    keel_changes_destroy (&after);
}

Test (store_writer, a_failed_flush_breaks_the_writer_and_nothing_more_is_durable)
{
    keel_store_t *store = s_open ();
    int wal = keel_store_sync_fd (store);
    cr_assert_geq (wal, 0, "StoreSync=full: the WAL is flushed");
    keel_error_t err = { "" };
    cr_assert_eq (keel_store_start_writer (store, 0, &err), KEEL_OK, "%s", err.text);
    keel_changes_t *j = s_journal ("svc", true, 0, 1, 8);
    cr_assert_eq (s_turn (store, j, &err), KEEL_OK, "%s", err.text);
    cr_assert (s_durable (store, 1));

    int fds[2];
    cr_assert_eq (pipe (fds), 0);
    cr_assert_geq (dup2 (fds[0], wal), 0); // fdatasync of a pipe: EINVAL
    keel_changes_t *next = s_journal ("svc", false, 1, 1, 8);
    cr_assert_eq (s_turn (store, next, &err), KEEL_OK, "%s", err.text);
    int64_t deadline = zclock_mono () + 5000;
    while (!keel_store_broken (store, &err) && zclock_mono () < deadline)
        zclock_sleep (5);
    cr_assert (keel_store_broken (store, &err), "the writer did not report its failed flush");
    cr_expect (strstr (err.text, "fdatasync of the store's WAL failed"), "%s", err.text);
    cr_expect_eq (keel_store_collect (store, NULL), 1, "a turn not flushed was answered durable");
    cr_expect_neq (keel_store_sync (store, &err), KEEL_OK);
    keel_changes_t *refused = s_journal ("svc", false, 2, 1, 8);
    cr_expect_neq (s_turn (store, refused, &err), KEEL_OK, "a broken writer took a turn");
    keel_store_destroy (&store);
    close (fds[0]);
    close (fds[1]);
    keel_changes_destroy (&j);
    keel_changes_destroy (&next);
    keel_changes_destroy (&refused);
}

Test (store_writer, reads_and_maintenance_wait_for_the_turns_handed_over)
{
    keel_store_t *store = s_open_writer ();
    keel_error_t err = { "" };
    for (int i = 0; i < 20; i++) {
        keel_changes_t *j = s_journal ("svc", i == 0, (uint64_t) i * 50, 50, 64);
        cr_assert_eq (s_turn (store, j, &err), KEEL_OK, "%s", err.text);
        keel_changes_destroy (&j);
    }
    s_seen_t seen = s_load (store); // no wait for the answers first
    cr_expect_eq (seen.tasks, 1000, "a load missed turns handed over before it");
    keel_store_maintenance_t report;
    cr_expect_eq (keel_store_maintenance (store, 1700000000000, 1000, &report, &err), KEEL_OK, "%s",
                  err.text);
    cr_expect_gt (keel_store_size (store), 0);
    keel_store_stop_writer (store);
    cr_expect_eq (keel_store_answer_fd (store), -1);
    cr_expect_geq (keel_store_sync_fd (store), 0, "without the writer the WAL is the syncer's");
    keel_store_destroy (&store);
}

Test (store_writer, a_loop_ahead_of_the_writer_waits_for_it)
{
    keel_store_t *store = s_open_writer ();
    keel_error_t err = { "" };
    // One turn of more records than the queue takes: the next hand-over
    // waits until the writer has written it.
    keel_changes_t *j = s_journal ("svc", true, 0, KEEL_STORE_WRITER_QUEUE_MAX + 100, 8);
    cr_assert_eq (s_turn (store, j, &err), KEEL_OK, "%s", err.text);
    keel_changes_t *next = s_journal ("svc", false, 100000, 1, 8);
    cr_assert_eq (s_turn (store, next, &err), KEEL_OK, "%s", err.text);
    cr_expect_geq (s_count_tasks (), KEEL_STORE_WRITER_QUEUE_MAX + 100,
                   "a second turn was handed over before the first, too big to queue, was written");
    cr_assert (s_durable (store, 2));
    keel_changes_destroy (&j);
    keel_changes_destroy (&next);
    keel_store_destroy (&store);
}
