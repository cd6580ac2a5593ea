/*  fuzz_store_rows.c — libFuzzer target for the store rows a broker reads
    back at recovery: broker/store_sqlite_read.c (columns of any SQLite
    type, NULLs, spilled blobs) feeding broker/core_recover.c (the model
    rebuilt from them), then the broker's first turns on that model.

    A store's file is outside bytes twice over: a disk may tear or rot it,
    and a resilient pair's passive installs the snapshot its peer sends
    (keel_store_replace). Whatever the rows hold, recovery must refuse or
    accept them without crashing, leaking or corrupting memory.

    One store (sqlite:, StoreSync=normal) lives in a private temporary
    directory (on /dev/shm when there is one) for the whole run. Each input
    is decoded into rows that a second, plain SQLite connection writes over
    the store's tables (DELETE, then INSERT: whatever SQLite's constraints
    let through, of any type; its statements are prepared once), then the
    broker does what broker.c s_recover does: a new core (on the default
    settings again after an input that stored config rows: they change the
    settings), the store's meta counters, keel_store_load through
    keel_core_loader, recover_end, a commit of the journal, recover_done;
    then a turn past the login window (timers, dispatch, a commit of every
    changed row) and keel-admin status, services and engines
    (fuzz_broker.h).

    Input: records, each
        TABLE            one byte, modulo the 8 tables below
        COLUMN...        one value per column of that table, each
            TYPE         one byte, modulo 6: 0 NULL, 1 int8, 2 int64 (8 bytes,
                         little-endian), 3 text, 4 blob, 5 double (8 bytes)
            LEN          text and blob: one byte; 255 means two more bytes
                         (little-endian) give the length
            BYTES
    A record cut short by the end of the input is dropped.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fuzz_broker.h"
#include "admin.h"
#include "config.h"
#include "core.h"
#include "log.h"
#include "store.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

static const char *s_tables[] = { "services", "tasks",  "task_blobs", "executions",
                                  "pending",  "config", "engines",    "meta" };
#define S_NTABLES ((int) (sizeof s_tables / sizeof s_tables[0]))
#define S_CONFIG  5 // s_tables[S_CONFIG] is "config"

static char s_dir[256], s_path[300];
static keel_store_t *s_store;
static sqlite3 *s_raw;
static sqlite3_stmt *s_insert[S_NTABLES], *s_delete[S_NTABLES], *s_begin, *s_commit;
static int s_columns[S_NTABLES];
static keel_settings_t *s_settings;

static void
s_cleanup (void)
{
    for (int i = 0; i < S_NTABLES; i++) {
        sqlite3_finalize (s_insert[i]);
        sqlite3_finalize (s_delete[i]);
    }
    sqlite3_finalize (s_begin);
    sqlite3_finalize (s_commit);
    sqlite3_close (s_raw);
    keel_store_destroy (&s_store);
    keel_settings_destroy (&s_settings);
    const char *suffix[] = { "", "-wal", "-shm", ".lock" };
    char path[320];
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf (path, sizeof path, "%s%s", s_path, suffix[i]);
        unlink (path);
    }
    rmdir (s_dir);
}

static void
s_exec (const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec (s_raw, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf (stderr, "fuzz_store_rows: %s: %s\n", sql, msg ? msg : "?");
        abort ();
    }
}

static sqlite3_stmt *
s_prepare (const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v3 (s_raw, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK) {
        fprintf (stderr, "fuzz_store_rows: %s: %s\n", sql, sqlite3_errmsg (s_raw));
        abort ();
    }
    return stmt;
}

//  Runs a statement that returns no rows (BEGIN, DELETE, COMMIT).
static void
s_run (sqlite3_stmt *stmt)
{
    if (sqlite3_step (stmt) != SQLITE_DONE) {
        fprintf (stderr, "fuzz_store_rows: %s: %s\n", sqlite3_sql (stmt), sqlite3_errmsg (s_raw));
        abort ();
    }
    sqlite3_reset (stmt);
}

//  The broker's settings for one input: the defaults, the login window
//  ending at the first turn (no waiting on the clock), LogLevel error (each
//  core sets the process's level from its settings: the default, info,
//  wrote lines for every input). Made again after an input that stored
//  config rows: they would otherwise change the next input's settings.
static keel_settings_t *
s_settings_new (void)
{
    keel_error_t err;
    keel_settings_t *settings = keel_settings_new (keel_broker_settings, &err);
    if (!settings || keel_settings_set (settings, "EngineLoginWindow", "0", "fuzz", &err) != KEEL_OK
        || keel_settings_set (settings, "LogLevel", "error", "fuzz", &err) != KEEL_OK) {
        fprintf (stderr, "fuzz_store_rows: %s\n", err.text);
        abort ();
    }
    return settings;
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    keel_log_init (KEEL_LOG_ERROR);
    const char *tmp = getenv ("TMPDIR");
    if (access ("/dev/shm", W_OK) == 0)
        tmp = "/dev/shm"; // no disk writes per input
    snprintf (s_dir, sizeof s_dir, "%s/keel-fuzz-store-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp (s_dir))
        abort ();
    snprintf (s_path, sizeof s_path, "%s/store.db", s_dir);
    char uri[320];
    snprintf (uri, sizeof uri, "sqlite:%s", s_path);
    keel_error_t err;
    s_settings = s_settings_new ();
    s_store = keel_store_open (uri, KEEL_STORE_SYNC_NORMAL, &err);
    if (!s_store) {
        fprintf (stderr, "fuzz_store_rows: %s\n", err.text);
        abort ();
    }
    if (sqlite3_open (s_path, &s_raw) != SQLITE_OK)
        abort ();
    sqlite3_busy_timeout (s_raw, 5000);
    s_exec ("PRAGMA synchronous = OFF");
    if (strcmp (s_tables[S_CONFIG], "config") != 0)
        abort ();
    for (int t = 0; t < S_NTABLES; t++) {
        char sql[512];
        snprintf (sql, sizeof sql, "SELECT count(*) FROM pragma_table_info('%s')", s_tables[t]);
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2 (s_raw, sql, -1, &q, NULL) != SQLITE_OK
            || sqlite3_step (q) != SQLITE_ROW)
            abort ();
        s_columns[t] = sqlite3_column_int (q, 0);
        sqlite3_finalize (q);
        int n = snprintf (sql, sizeof sql, "INSERT INTO %s VALUES (", s_tables[t]);
        for (int c = 0; c < s_columns[t]; c++)
            n += snprintf (sql + n, sizeof sql - (size_t) n, c ? ",?" : "?");
        snprintf (sql + n, sizeof sql - (size_t) n, ")");
        if (s_columns[t] < 2)
            abort ();
        s_insert[t] = s_prepare (sql);
        snprintf (sql, sizeof sql, "DELETE FROM %s", s_tables[t]);
        s_delete[t] = s_prepare (sql);
    }
    s_begin = s_prepare ("BEGIN IMMEDIATE");
    s_commit = s_prepare ("COMMIT");
    atexit (s_cleanup);
    return 0;
}

typedef struct {
    const uint8_t *p, *end;
} s_reader_t;

static bool
s_take (s_reader_t *r, size_t n, const uint8_t **out)
{
    if ((size_t) (r->end - r->p) < n)
        return false;
    *out = r->p;
    r->p += n;
    return true;
}

//  Reads one value and binds it to column col of stmt. False at the end.
static bool
s_bind_value (s_reader_t *r, sqlite3_stmt *stmt, int col)
{
    const uint8_t *b;
    if (!s_take (r, 1, &b))
        return false;
    switch (b[0] % 6) {
        case 0:
            return sqlite3_bind_null (stmt, col) == SQLITE_OK;
        case 1:
            if (!s_take (r, 1, &b))
                return false;
            return sqlite3_bind_int64 (stmt, col, (int8_t) b[0]) == SQLITE_OK;
        case 2: {
            if (!s_take (r, 8, &b))
                return false;
            uint64_t v = 0;
            for (int i = 7; i >= 0; i--)
                v = v << 8 | b[i];
            return sqlite3_bind_int64 (stmt, col, (sqlite3_int64) v) == SQLITE_OK;
        }
        case 5: {
            if (!s_take (r, 8, &b))
                return false;
            double d;
            memcpy (&d, b, sizeof d);
            return sqlite3_bind_double (stmt, col, d) == SQLITE_OK;
        }
        default: {
            bool text = b[0] % 6 == 3;
            if (!s_take (r, 1, &b))
                return false;
            size_t len = b[0];
            if (len == 255) {
                if (!s_take (r, 2, &b))
                    return false;
                len = (size_t) b[0] | (size_t) b[1] << 8;
            }
            if (!s_take (r, len, &b))
                return false;
            int rc = text
                         ? sqlite3_bind_text (stmt, col, (const char *) b, (int) len, SQLITE_STATIC)
                         : sqlite3_bind_blob (stmt, col, b, (int) len, SQLITE_STATIC);
            return rc == SQLITE_OK;
        }
    }
}

//  Replaces every row of the store's tables with the input's rows.
//  Returns true when a config row was stored.
static bool
s_write_rows (const uint8_t *data, size_t size)
{
    bool config = false;
    s_run (s_begin);
    for (int t = 0; t < S_NTABLES; t++)
        s_run (s_delete[t]);
    s_reader_t r = { data, data + size };
    const uint8_t *b;
    while (s_take (&r, 1, &b)) {
        int t = b[0] % S_NTABLES;
        sqlite3_stmt *stmt = s_insert[t];
        bool whole = true;
        for (int c = 1; whole && c <= s_columns[t]; c++)
            whole = s_bind_value (&r, stmt, c);
        // A constraint may refuse the row: so be it.
        if (whole && sqlite3_step (stmt) == SQLITE_DONE && t == S_CONFIG)
            config = true;
        sqlite3_reset (stmt);
        sqlite3_clear_bindings (stmt);
    }
    s_run (s_commit);
    return config;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    bool config = s_write_rows (data, size);
    int64_t now = 1000000, wall = 1700000000000;
    keel_core_t *core = keel_core_new (s_settings, now, wall);
    if (!core)
        abort ();
    uint64_t epoch = 0, seq = 0;
    keel_store_meta_get (s_store, "epoch", &epoch);
    keel_store_meta_get (s_store, "execution_seq", &seq);
    keel_core_recover_begin (core, epoch, seq);
    keel_error_t err;
    if (keel_store_load (s_store, keel_core_loader (), core, &err) == KEEL_OK)
        fuzz_broker_start (core, s_store, s_settings, now, wall);
    keel_changes_clear (keel_core_changes (core));
    fuzz_broker_drain (core);
    keel_core_destroy (&core);
    // Stored config rows changed the settings: the next input starts from
    // the defaults again.
    if (config) {
        keel_settings_destroy (&s_settings);
        s_settings = s_settings_new ();
    }
    return 0;
}
