/*  test_store_full.c — the broker's disk fills up (docs/operations.md §2):
    new submissions are refused with STORE_FULL and the driver says so and
    keeps its tasks; the broker keeps running the work it had accepted; when
    space returns the same submission completes, every result once, and the
    store is intact.

    Both writers of the SQLite store (StoreWriter). With `loop` the turn
    whose commit fails is refused at once, so the driver must say so. With
    `thread` (the default) the turn handed to the writer before it failed
    is written again until it goes through (only turns handed over while
    it fails are refused), so whether the driver sees a refusal depends on
    when its messages come: that run checks that the writer met the full
    disk and that nothing was lost or doubled.

    The store lives on a small tmpfs mounted by the test (root only: the
    test is skipped with a message when mount fails).
*/
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static char s_mount[512];

static void
s_unmount_teardown (void)
{
    // Detach first: a lazy unmount works while the broker still holds the
    // store open (the tmpfs goes when it exits), and harness_teardown may
    // abort (sanitizer report) before anything after it runs.
    if (s_mount[0])
        umount2 (s_mount, MNT_DETACH);
    s_mount[0] = '\0';
    harness_teardown ();
}

// Writes path until the file system is full. Returns the bytes written,
// or -1 when the write failed for another reason than ENOSPC.
static long long
s_fill (const char *path)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    static char chunk[65536];
    memset (chunk, 'x', sizeof chunk);
    long long total = 0;
    while (true) {
        ssize_t n = write (fd, chunk, sizeof chunk);
        if (n > 0) {
            total += n;
            continue;
        }
        int e = errno;
        close (fd);
        return n < 0 && e == ENOSPC ? total : -1;
    }
}

typedef struct {
    const harness_broker_t *b;
    long long total;
} s_tasks_wait_t;

static bool
s_all_tasks_known (void *arg)
{
    s_tasks_wait_t *w = arg;
    harness_result_t res;
    long long q = 0, r = 0, d = 0;
    bool ok = harness_admin (w->b, &res, true, "status", NULL) == 0
              && harness_json_int (res.out, "tasks.queued", &q)
              && harness_json_int (res.out, "tasks.running", &r)
              && harness_json_int (res.out, "tasks.done", &d);
    harness_result_free (&res);
    return ok && q + r + d >= w->total;
}

typedef struct {
    const harness_broker_t *b;
    long long dispatched_from;
    long long dispatched, failures;
} s_serving_wait_t;

// The broker goes on dispatching accepted tasks while its commits fail.
static bool
s_keeps_serving (void *arg)
{
    s_serving_wait_t *w = arg;
    harness_status_int (w->b, "counters.tasks_dispatched", &w->dispatched);
    harness_status_int (w->b, "counters.store_failures", &w->failures);
    return w->dispatched >= w->dispatched_from + 2 && w->failures >= 1;
}

// Checks a driver's output: tasks 0..n-1 once each, status ok, output as
// want(task) says.
static void
s_check_output (const char *name, long n, long long (*want) (long long))
{
    char path[512], file[64];
    snprintf (file, sizeof file, "%s.out", name);
    char *out = harness_read_file (harness_path (path, sizeof path, file));
    cr_assert_not_null (out, "no %s", path);
    unsigned char *seen = calloc ((size_t) n, 1);
    long lines = 0;
    char *save = NULL;
    for (char *line = strtok_r (out, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        lines++;
        long long task = -1;
        char status[32], output[32];
        cr_assert (harness_json_int (line, "task", &task) && task >= 0 && task < n,
                   "%s: bad task id: %s", name, line);
        cr_assert (!seen[task], "%s: task %lld delivered twice", name, task);
        seen[task] = 1;
        cr_assert (harness_json_get (line, "status", status, sizeof status)
                       && strcmp (status, "ok") == 0,
                   "%s: task %lld not ok: %s", name, task, line);
        cr_assert (harness_json_get (line, "output", output, sizeof output)
                       && strtoll (output, NULL, 10) == want (task),
                   "%s: task %lld: wrong output: %s", name, task, line);
    }
    cr_assert_eq (lines, n, "%s: expected %ld results, got %ld", name, n, lines);
    free (seen);
    free (out);
}

static long long
s_want_300 (long long task)
{
    (void) task;
    return 300;
}

static long long
s_want_double (long long task)
{
    return 2 * task;
}

static bool
s_outage_recorded (void *arg)
{
    harness_result_t res;
    bool ok = harness_admin (arg, &res, true, "events", NULL) == 0
              && strstr (res.out, "\"kind\":\"store-failed\",\"text\":\"failed_commits=")
              && strstr (res.out, "\"kind\":\"store-recovered\"");
    harness_result_free (&res);
    return ok;
}

static void
s_disk_full (const char *writer)
{
    bool loop = strcmp (writer, "loop") == 0;
    harness_path (s_mount, sizeof s_mount, "full");
    mkdir (s_mount, 0755);
    if (mount ("tmpfs", s_mount, "tmpfs", 0, "size=8m") != 0) {
        int e = errno;
        s_mount[0] = '\0';
        cr_skip_test ("cannot mount a tmpfs (%s): needs root in a mount namespace", strerror (e));
    }
    char store[600], store_set[620], filler[600];
    snprintf (store, sizeof store, "%s/broker.db", s_mount);
    snprintf (store_set, sizeof store_set, "Store=sqlite:%s", store);
    snprintf (filler, sizeof filler, "%s/filler", s_mount);

    char writer_set[64];
    snprintf (writer_set, sizeof writer_set, "StoreWriter=%s", writer);
    const char *sets[] = { "HeartbeatInterval=200ms", store_set, writer_set, NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    harness_result_t res;
    char described[700] = "";
    harness_admin (&broker, &res, true, "status", NULL);
    harness_json_get (res.out, "store", described, sizeof described);
    harness_result_free (&res);
    cr_assert (strstr (described, store), "the broker's store is %s, not %s", described, store);
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online within 15 s");

    // Accepted work: 20 x 300 ms on 2 slots, about 3 s.
    const char *argv1[] = { "--broker", broker.endpoint, "submit",  "--service", "sleep",
                            "--input",  "300",           "--count", "20",        NULL };
    pid_t driver1 = harness_spawn ("driver1", "keel-driver", argv1);
    HARNESS_ASSERT (driver1 > 0, "driver1 did not start");
    s_tasks_wait_t known = { &broker, 20 };
    HARNESS_ASSERT (harness_poll_until (s_all_tasks_known, &known, 15000),
                    "the broker did not accept driver1's 20 tasks within 15 s");

    long long filled = s_fill (filler);
    cr_assert (filled >= 0, "could not fill %s: %s", s_mount, strerror (errno));
    cr_log_info ("filled %s with %lld bytes", s_mount, filled);
    s_serving_wait_t serving = { &broker, -1, -1, -1 };
    harness_status_int (&broker, "counters.tasks_dispatched", &serving.dispatched_from);

    const char *argv2[] = { "--broker", broker.endpoint, "submit", "--service",
                            "double",   "--range",       "0:200",  NULL };
    pid_t driver2 = harness_spawn ("driver2", "keel-driver", argv2);
    HARNESS_ASSERT (driver2 > 0, "driver2 did not start");
    if (loop)
        HARNESS_ASSERT (harness_wait_log ("driver2.err", "cannot store new work", 1, 15000),
                        "driver2 did not report the broker's full store within 15 s");
    else
        HARNESS_ASSERT (harness_wait_log ("broker.err", "writing the store failed", 1, 15000),
                        "the broker's writer did not meet the full disk within 15 s");
    HARNESS_ASSERT (harness_poll_until (s_keeps_serving, &serving, 15000),
                    "with its disk full the broker stopped running accepted work (dispatched %lld "
                    "-> %lld, store_failures %lld)",
                    serving.dispatched_from, serving.dispatched, serving.failures);
    long long refused = -1;
    harness_status_int (&broker, "counters.submissions_refused", &refused);
    HARNESS_ASSERT (!loop || refused >= 1, "submissions_refused is %lld while the disk is full",
                    refused);
    HARNESS_ASSERT (harness_alive (broker.pid), "keel-broker died when its disk filled up");
    HARNESS_ASSERT (harness_alive (driver2), "driver2 gave up while the disk was full");

    cr_assert_eq (unlink (filler), 0, "cannot remove %s", filler);
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver1, 60000, &code), "driver1 did not finish in 60 s");
    HARNESS_ASSERT (code == 0, "driver1 exited %d", code);
    HARNESS_ASSERT (harness_wait_exit (driver2, 60000, &code), "driver2 did not finish in 60 s");
    HARNESS_ASSERT (code == 0, "driver2 exited %d", code);
    s_check_output ("driver1", 20, s_want_300);
    s_check_output ("driver2", 200, s_want_double);
    // The outage is in the events table, its start and its end, each with a
    // time (written once the store took a commit again).
    HARNESS_ASSERT (!loop || harness_poll_until (s_outage_recorded, &broker, 5000),
                    "keel-admin events does not show store-failed and store-recovered");

    HARNESS_ASSERT (harness_stop (broker.pid, 10000) == 0, "keel-broker did not stop cleanly");
    sqlite3 *db = NULL;
    cr_assert_eq (sqlite3_open_v2 (store, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK,
                  "cannot open %s", store);
    sqlite3_stmt *stmt = NULL;
    char verdict[256] = "";
    if (sqlite3_prepare_v2 (db, "PRAGMA integrity_check", -1, &stmt, NULL) == SQLITE_OK
        && sqlite3_step (stmt) == SQLITE_ROW)
        snprintf (verdict, sizeof verdict, "%s", (const char *) sqlite3_column_text (stmt, 0));
    sqlite3_finalize (stmt);
    long long rows = -1;
    if (sqlite3_prepare_v2 (db, "SELECT count(*) FROM tasks", -1, &stmt, NULL) == SQLITE_OK
        && sqlite3_step (stmt) == SQLITE_ROW)
        rows = sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    sqlite3_close (db);
    cr_assert_str_eq (verdict, "ok", "integrity_check of the store: %s", verdict);
    cr_assert_eq (rows, 220, "the store holds %lld tasks, not 220", rows);
}

Test (store_full, refuses_new_work_while_the_disk_is_full_and_takes_it_when_space_returns,
      .init = harness_setup, .fini = s_unmount_teardown, .timeout = 150)
{
    s_disk_full ("loop");
}

Test (store_full, the_writer_thread_loses_nothing_while_the_disk_is_full, .init = harness_setup,
      .fini = s_unmount_teardown, .timeout = 150)
{
    s_disk_full ("thread");
}
