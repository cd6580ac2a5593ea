/*  test_store_open.c — keel-broker refuses to start on a store it must not
    touch (docs/operations.md §4): a corrupt Keel store, a foreign SQLite
    database, a file that is not SQLite, a store from a newer Keel, a
    directory that does not exist or cannot be written. It exits 2 with a
    message naming the path and the problem, and leaves the file as it was.
    A store that another broker holds is refused too, naming the holder's
    pid: two brokers on one store would each recover it and bump its epoch.
    (A PostgreSQL store is shared: a second broker stands by.)
*/
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "harness.h"
#include "pg.h"

// ------------------------------------------------------------ local helpers

typedef struct {
    unsigned char *data;
    size_t size;
} s_bytes_t;

static s_bytes_t
s_read_bytes (const char *path)
{
    s_bytes_t b = { NULL, 0 };
    FILE *f = fopen (path, "rb");
    if (!f)
        return b;
    fseek (f, 0, SEEK_END);
    long size = ftell (f);
    fseek (f, 0, SEEK_SET);
    b.data = malloc (size > 0 ? (size_t) size : 1);
    if (b.data && size > 0 && fread (b.data, 1, (size_t) size, f) == (size_t) size)
        b.size = (size_t) size;
    fclose (f);
    return b;
}

static void
s_write_bytes (const char *path, const void *data, size_t size, long offset)
{
    FILE *f = fopen (path, offset < 0 ? "wb" : "r+b");
    cr_assert_not_null (f, "cannot write %s: %s", path, strerror (errno));
    if (offset > 0)
        fseek (f, offset, SEEK_SET);
    cr_assert_eq (fwrite (data, 1, size, f), size, "short write to %s", path);
    fclose (f);
}

static void
s_sql (const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    cr_assert_eq (sqlite3_open (path, &db), SQLITE_OK, "sqlite3_open %s", path);
    char *msg = NULL;
    int rc = sqlite3_exec (db, sql, NULL, NULL, &msg);
    cr_assert_eq (rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_free (msg);
    sqlite3_close (db);
}

// A real Keel store at <dir>/<name>.db: a broker ran on it, took a few
// tasks and stopped cleanly (so there is no WAL beside it).
static void
s_make_store (const char *name, char *path, size_t size)
{
    harness_broker_t b;
    HARNESS_ASSERT (harness_broker_start (&b, name, NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&b, "engine", 2, NULL) > 0, "engine did not start");
    const char *argv[] = { "--broker", b.endpoint, "submit", "--service",
                           "double",   "--range",  "0:50",   NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 0, "keel-driver exited %d: %s", res.code, res.err);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_stop (b.pid, 10000) == 0, "keel-broker did not stop cleanly");
    snprintf (path, size, "%s", b.store + strlen ("sqlite:"));
    struct stat st;
    char wal[600];
    snprintf (wal, sizeof wal, "%s-wal", path);
    cr_assert (stat (wal, &st) != 0 || st.st_size == 0, "a WAL is left beside %s", path);
}

// Runs keel-broker on the store at path and checks that it refuses it:
// exit 2, a message naming the path and containing `problem`, and the
// file unchanged (when there is one).
static void
s_assert_refused (const char *path, const char *problem)
{
    s_bytes_t before = s_read_bytes (path);
    char endpoint[64], admin[64], store[600];
    snprintf (endpoint, sizeof endpoint, "Endpoint=tcp://127.0.0.1:%d", harness_free_port ());
    snprintf (admin, sizeof admin, "AdminEndpoint=tcp://127.0.0.1:%d", harness_free_port ());
    snprintf (store, sizeof store, "Store=sqlite:%s", path);
    const char *argv[] = { "--set", endpoint, "--set", admin, "--set", store, NULL };
    harness_result_t res;
    harness_run (&res, 15000, "keel-broker", argv);
    cr_log_info ("keel-broker on %s: exit %d: %s", path, res.code, res.err);
    cr_assert_eq (res.code, 2, "keel-broker on %s exited %d, not 2; stderr:\n%s", path, res.code,
                  res.err);
    cr_assert (strstr (res.err, path), "the message does not name %s:\n%s", path, res.err);
    cr_assert (strstr (res.err, problem), "the message does not say '%s':\n%s", problem, res.err);
    harness_result_free (&res);
    s_bytes_t after = s_read_bytes (path);
    cr_assert_eq (after.size, before.size, "%s changed size: %zu -> %zu bytes", path, before.size,
                  after.size);
    cr_assert (before.size == 0 || memcmp (before.data, after.data, before.size) == 0, "%s changed",
               path);
    free (before.data);
    free (after.data);
}

// ------------------------------------------------------------ tests

Test (store_open, refuses_a_corrupt_store_and_leaves_it_as_it_was, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    char path[512];
    s_make_store ("corrupt", path, sizeof path);
    s_bytes_t bytes = s_read_bytes (path);
    cr_assert (bytes.size >= 4 * 4096, "store of %zu bytes is too small to corrupt a table page",
               bytes.size);
    free (bytes.data);
    // Overwrite page 3 (a table's b-tree page) with garbage; the header and
    // the schema on page 1 stay valid, so only the integrity check sees it.
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char) (0xA5 ^ (i * 31));
    s_write_bytes (path, junk, sizeof junk, 2 * 4096);
    s_assert_refused (path, "corrupt");
}

Test (store_open, refuses_a_foreign_sqlite_database, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    char path[512];
    harness_path (path, sizeof path, "foreign.db");
    s_sql (path, "CREATE TABLE t (a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'mine');");
    s_assert_refused (path, "not a Keel store");
}

Test (store_open, refuses_a_file_that_is_not_sqlite, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    char path[512];
    harness_path (path, sizeof path, "garbage.db");
    unsigned char junk[8192];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char) (x >> 16);
    }
    s_write_bytes (path, junk, sizeof junk, -1);
    s_assert_refused (path, "not a SQLite database");
}

Test (store_open, refuses_a_store_written_by_a_newer_keel, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    char path[512];
    s_make_store ("newer", path, sizeof path);
    s_sql (path, "PRAGMA user_version = 999;");
    s_assert_refused (path, "newer");
}

Test (store_open, refuses_a_store_in_a_directory_that_does_not_exist, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    char path[600], dir[512];
    harness_path (dir, sizeof dir, "no-such-dir");
    snprintf (path, sizeof path, "%s/broker.db", dir);
    s_assert_refused (path, "cannot open store directory");
    struct stat st;
    cr_assert (stat (dir, &st) != 0, "keel-broker created %s", dir);
}

static char s_mount[512];

static void
s_unmount_teardown (void)
{
    if (s_mount[0])
        umount2 (s_mount, MNT_DETACH);
    s_mount[0] = '\0';
    harness_teardown ();
}

Test (store_open, refuses_a_store_on_a_read_only_filesystem, .init = harness_setup,
      .fini = s_unmount_teardown, .timeout = 60)
{
    char made[512];
    s_make_store ("made", made, sizeof made);
    s_bytes_t store = s_read_bytes (made);
    cr_assert (store.size > 0, "no store made");

    harness_path (s_mount, sizeof s_mount, "ro");
    mkdir (s_mount, 0755);
    if (mount ("tmpfs", s_mount, "tmpfs", 0, "size=4m") != 0) {
        int e = errno;
        s_mount[0] = '\0';
        free (store.data);
        cr_skip_test ("cannot mount a tmpfs (%s): needs root in a mount namespace", strerror (e));
    }
    char path[600];
    snprintf (path, sizeof path, "%s/broker.db", s_mount);
    s_write_bytes (path, store.data, store.size, -1);
    free (store.data);
    cr_assert_eq (mount ("tmpfs", s_mount, "tmpfs", MS_REMOUNT | MS_RDONLY, "size=4m"), 0,
                  "cannot remount %s read-only: %s", s_mount, strerror (errno));
    s_assert_refused (path, "not writable");
}

// Two brokers on one store would each recover it, bump its epoch and take
// submissions the other does not know (issue 10, item 1). The second must
// refuse before touching it, naming the store and the first one's pid; the
// first goes on undisturbed; once it is dead (kill -9: the kernel drops its
// lock) the store opens again.
Test (store_open, refuses_a_store_that_another_broker_holds, .init = harness_setup,
      .fini = harness_teardown, .timeout = 90)
{
    harness_broker_t first;
    HARNESS_ASSERT (harness_broker_start (&first, "first", NULL), "keel-broker did not start");
    long long epoch = -1;
    HARNESS_ASSERT (harness_status_int (&first, "epoch", &epoch), "no status");

    const char *path = first.store + strlen ("sqlite:");
    char endpoint[64], admin[64], store[600], holder[64];
    snprintf (endpoint, sizeof endpoint, "Endpoint=tcp://127.0.0.1:%d", harness_free_port ());
    snprintf (admin, sizeof admin, "AdminEndpoint=tcp://127.0.0.1:%d", harness_free_port ());
    snprintf (store, sizeof store, "Store=%s", first.store);
    snprintf (holder, sizeof holder, "(pid %ld)", (long) first.pid);
    const char *argv[] = { "--set", endpoint, "--set", admin, "--set", store, NULL };
    harness_result_t res;
    harness_run (&res, 15000, "keel-broker", argv);
    cr_log_info ("second keel-broker: exit %d: %s", res.code, res.err);
    HARNESS_ASSERT (res.code == 2, "the second broker exited %d, not 2; stderr:\n%s", res.code,
                    res.err);
    HARNESS_ASSERT (strstr (res.err, path), "the message does not name %s:\n%s", path, res.err);
    HARNESS_ASSERT (strstr (res.err, "in use by another broker"),
                    "the message does not say "
                    "the store is in use:\n%s",
                    res.err);
    HARNESS_ASSERT (strstr (res.err, holder), "the message does not name the holder %s:\n%s",
                    holder, res.err);
    harness_result_free (&res);

    // The first broker still owns the store: same epoch, and it serves.
    long long now = -1;
    HARNESS_ASSERT (harness_status_int (&first, "epoch", &now) && now == epoch,
                    "the first broker's epoch moved from %lld to %lld", epoch, now);
    HARNESS_ASSERT (harness_engine_start (&first, "engine", 2, NULL) > 0, "engine did not start");
    const char *driver[] = { "--broker", first.endpoint, "submit", "--service",
                             "double",   "--range",      "0:20",   NULL };
    harness_run (&res, 30000, "keel-driver", driver);
    HARNESS_ASSERT (res.code == 0, "keel-driver exited %d: %s", res.code, res.err);
    harness_result_free (&res);

    // Dead holder, free store: the lock dies with its process.
    HARNESS_ASSERT (harness_kill9 (first.pid), "cannot kill the first broker");
    HARNESS_ASSERT (harness_broker_restart (&first, NULL), "the store did not open again after "
                                                           "its broker died");
    HARNESS_ASSERT (harness_status_int (&first, "epoch", &now) && now == epoch + 1,
                    "epoch %lld after the restart, expected %lld", now, epoch + 1);
}

// ------------------------------------------------------------ PostgreSQL

// Runs keel-broker with the extra settings and checks that it exits 2 with
// each of `says` in its message and never `never`.
static void
s_assert_broker_refuses (const char *const sets[], const char *const says[], const char *never)
{
    char endpoint[64], admin[64];
    snprintf (endpoint, sizeof endpoint, "Endpoint=tcp://127.0.0.1:%d", harness_free_port ());
    snprintf (admin, sizeof admin, "AdminEndpoint=tcp://127.0.0.1:%d", harness_free_port ());
    const char *argv[32] = { "--set", endpoint, "--set", admin };
    int n = 4;
    for (int i = 0; sets[i] && n < 30; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    argv[n] = NULL;
    harness_result_t res;
    harness_run (&res, 30000, "keel-broker", argv);
    cr_log_info ("keel-broker: exit %d: %s", res.code, res.err);
    cr_assert_eq (res.code, 2, "keel-broker exited %d, not 2; stderr:\n%s", res.code, res.err);
    for (int i = 0; says[i]; i++)
        cr_assert (strstr (res.err, says[i]), "the message does not say '%s':\n%s", says[i],
                   res.err);
    cr_assert (!never || !strstr (res.err, never), "the message shows '%s':\n%s", never, res.err);
    harness_result_free (&res);
}

Test (store_open, an_unreachable_postgresql_is_refused_at_start_without_its_password,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    char store[200], safe[200];
    int port = harness_free_port (); // nothing listens there
    snprintf (store, sizeof store, "Store=postgresql://keel:Hunter2@127.0.0.1:%d/keel", port);
    snprintf (safe, sizeof safe, "postgresql://keel:***@127.0.0.1:%d/keel", port);
    const char *sets[] = { store, NULL };
    const char *says[] = { safe, "cannot connect", NULL };
    s_assert_broker_refuses (sets, says, "Hunter2");
}

// A second broker on a PostgreSQL database is a second member, serving
// beside the first (docs/operations.md §4); a pair cannot mirror a
// PostgreSQL store.
Test (store_open, a_postgresql_store_has_members_side_by_side_and_no_pair, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    pg_instance_t pg;
    char why[1024];
    HARNESS_ASSERT (pg_start (&pg, why, sizeof why), "%s", why);
    char store[600];
    snprintf (store, sizeof store, "Store=%s", pg.uri);
    const char *sets[] = { store, NULL };
    harness_broker_t first, second;
    HARNESS_ASSERT (harness_broker_start (&first, "first", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_broker_start (&second, "second", sets),
                    "a second keel-broker on the database did not start");
    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&second, &res, true, "status", NULL) == 0, "no status");
    char state[32] = "";
    harness_json_get (res.out, "cluster.state", state, sizeof state);
    HARNESS_ASSERT (strcmp (state, "serving") == 0, "the second broker is '%s': %s", state,
                    res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_admin (&first, &res, true, "status", NULL) == 0, "no status");
    harness_json_get (res.out, "cluster.state", state, sizeof state);
    HARNESS_ASSERT (strcmp (state, "serving") == 0, "the first broker is '%s': %s", state, res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_stop (second.pid, 10000) == 0,
                    "the second broker did not stop cleanly");

    HARNESS_ASSERT (harness_stop (first.pid, 10000) == 0, "the first broker did not stop cleanly");
    char peer[64], own[64];
    snprintf (own, sizeof own, "PairEndpoint=tcp://127.0.0.1:%d", harness_free_port ());
    snprintf (peer, sizeof peer, "PairPeer=tcp://127.0.0.1:%d", harness_free_port ());
    const char *pair[] = { store, "PairRole=primary", own, peer, NULL };
    const char *pair_says[] = { "PairRole=primary needs Store=sqlite:PATH", NULL };
    s_assert_broker_refuses (pair, pair_says, NULL);
    pg_stop (&pg, 10000);
}
