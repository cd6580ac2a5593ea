/*  store_sqlite_snapshot.c — whole-store copies for the broker pair
    (DESIGN §6; see keel_store_snapshot, _check_file and _replace in
    store.h; internals in store_sqlite_int.h).

    A snapshot is SQLite's online backup of the store's connection into a
    new file, turned into a standalone rollback-journal database (its header
    would otherwise say WAL, like its source's) and fsynced. Checking opens
    a file read-only and immutable, so it reads the main file alone: what
    is checked is exactly what a replace installs, and no -wal or -shm is
    created or read next to it.

    Replacing renames the checked file over the store. The order is what
    makes it safe:
      1. lock the new file (flock) and fsync it; nobody else knows it yet;
      2. close the store's connection cleanly: the WAL is checkpointed into
         the database and deleted, so the store path alone holds the old
         store; the old lock is still held;
      3. rename the new file over the store path, fsync the directory: the
         path names either the old or the new database, each whole, and no
         WAL of the old one is left to be replayed into the new;
      4. swap the locks (a broker that locked the old file in between sees
         the path names another file and locks again: see s_lock) and
         reconnect.
    A failure before the rename reconnects the old store, unchanged.
*/
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_sqlite_int.h"

// The files SQLite keeps next to a database; stale ones would be replayed
// into (or confused with) the database they sit next to.
static const char *s_side_files[] = { "-journal", "-wal", "-shm" };

static void
s_remove_side_files (const char *path)
{
    for (size_t i = 0; i < sizeof s_side_files / sizeof s_side_files[0]; i++) {
        char side[4200];
        snprintf (side, sizeof side, "%s%s", path, s_side_files[i]);
        (void) unlink (side);
    }
}

// True when path names the file the store has locked (the store itself).
static bool
s_is_store (keel_store_sqlite_t *self, const char *path)
{
    struct stat named, held;
    return stat (path, &named) == 0 && fstat (self->lock_fd, &held) == 0
           && named.st_dev == held.st_dev && named.st_ino == held.st_ino;
}

static keel_err
s_usable (keel_store_sqlite_t *self, const char *what, keel_error_t *err)
{
    if (!self->db)
        return keel_error_set (err, KEEL_ERR_STORE, "%s", self->poison_err.text);
    if (self->in_txn || self->poison)
        return keel_error_set (err, KEEL_ERR_STATE, "%s: %s inside a loop-turn transaction",
                               self->path, what);
    return KEEL_OK;
}

static keel_err
s_fsync_file (const char *path, keel_error_t *err)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    int rc = fd >= 0 ? fsync (fd) : -1;
    int saved = errno;
    if (fd >= 0)
        close (fd);
    if (rc != 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: fsync: %s", path, strerror (saved));
    return KEEL_OK;
}

// ---------------------------------------------------------------- snapshot

// Error from the copy's connection, naming the copy.
static keel_err
s_copy_error (sqlite3 *copy, const char *path, int rc, const char *what, keel_error_t *err)
{
    keel_err code = copy ? keel_store_sqlite_code (copy, rc) : KEEL_ERR_STORE;
    return keel_error_set (err, code, "%s: snapshot: %s: %s%s", path, what,
                           copy ? sqlite3_errmsg (copy) : sqlite3_errstr (rc),
                           code == KEEL_ERR_FULL ? " (disk full)" : "");
}

// Copies the store into the open, empty database copy and makes the copy a
// rollback-journal database.
static keel_err
s_backup (keel_store_sqlite_t *self, sqlite3 *copy, const char *path, keel_error_t *err)
{
    // The copy is fsynced once at the end; a crash before leaves junk that
    // the caller never installs (it checks, and it snapshots again).
    int rc = sqlite3_exec (copy, "PRAGMA synchronous = OFF", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return s_copy_error (copy, path, rc, "open", err);
    sqlite3_backup *backup = sqlite3_backup_init (copy, "main", self->db, "main");
    if (!backup)
        return s_copy_error (copy, path, sqlite3_errcode (copy), "backup", err);
    rc = sqlite3_backup_step (backup, -1); // every page, in one read transaction
    int finish = sqlite3_backup_finish (backup);
    if (rc != SQLITE_DONE)
        return s_copy_error (copy, path, rc == SQLITE_OK ? finish : rc, "backup", err);
    if (finish != SQLITE_OK)
        return s_copy_error (copy, path, finish, "backup", err);
    //  Page 1 came from a WAL database and says so: switch the copy to a
    //  rollback journal, so that it opens without any -wal next to it.
    sqlite3_stmt *stmt = NULL;
    char mode[16] = "";
    rc = sqlite3_prepare_v2 (copy, "PRAGMA journal_mode = DELETE", -1, &stmt, NULL);
    if (rc == SQLITE_OK && sqlite3_step (stmt) == SQLITE_ROW)
        snprintf (mode, sizeof mode, "%s", (const char *) sqlite3_column_text (stmt, 0));
    rc = sqlite3_errcode (copy);
    sqlite3_finalize (stmt);
    if (strcmp (mode, "delete") != 0)
        return s_copy_error (copy, path, rc, "journal_mode = DELETE", err);
    return KEEL_OK;
}

keel_err
keel_store_sqlite_snapshot (keel_store_sqlite_t *self, const char *path, keel_error_t *err)
{
    keel_err rc = s_usable (self, "snapshot", err);
    if (rc)
        return rc;
    if (s_is_store (self, path))
        return keel_error_set (err, KEEL_ERR_INVALID, "%s: snapshot: this is the store itself",
                               path);
    s_remove_side_files (path);
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: snapshot: cannot create: %s", path,
                               strerror (errno));
    close (fd);
    sqlite3 *copy = NULL;
    int src = sqlite3_open_v2 (path, &copy, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK)
        rc = s_copy_error (copy, path, src, "open", err);
    if (!rc) {
        sqlite3_extended_result_codes (copy, 1);
        rc = s_backup (self, copy, path, err);
    }
    if (sqlite3_close (copy) != SQLITE_OK && !rc)
        rc = s_copy_error (copy, path, sqlite3_errcode (copy), "close", err);
    if (!rc)
        rc = s_fsync_file (path, err);
    if (!rc)
        rc = keel_store_sqlite_sync_dir (path, err);
    if (rc) {
        (void) unlink (path); // never leave half a copy that looks like one
        s_remove_side_files (path);
    }
    return rc;
}

// ---------------------------------------------------------------- check

// "file:" URI for path, read-only and immutable (no locks, no -wal/-shm).
static bool
s_immutable_uri (const char *path, char *uri, size_t size)
{
    size_t n = (size_t) snprintf (uri, size, "file:%s", path[0] == '/' ? "//" : "");
    for (const unsigned char *c = (const unsigned char *) path; *c && n + 4 < size; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')
                     || (*c >= '0' && *c <= '9') || strchr ("/._-~", *c);
        n += (size_t) snprintf (uri + n, size - n, plain ? "%c" : "%%%02X", *c);
    }
    const char *query = "?mode=ro&immutable=1";
    if (n + strlen (query) + 1 > size)
        return false;
    snprintf (uri + n, size - n, "%s", query);
    return true;
}

// The file-level checks before SQLite reads it: a regular, non-empty file
// that starts like a SQLite database.
static keel_err
s_check_header (const char *path, keel_error_t *err)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot open: %s", path, strerror (errno));
    struct stat st;
    char header[16];
    bool regular = fstat (fd, &st) == 0 && S_ISREG (st.st_mode);
    ssize_t got = regular ? pread (fd, header, sizeof header, 0) : -1;
    int saved = errno;
    close (fd);
    if (!regular)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: not a regular file", path);
    if (got < 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot read: %s", path, strerror (saved));
    if (st.st_size == 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: not a Keel store (empty file)", path);
    if (got < (ssize_t) sizeof header || st.st_size < 512
        || memcmp (header, "SQLite format 3", 16) != 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: not a Keel store (not a SQLite database)",
                               path);
    return KEEL_OK;
}

// Checks path as a store of this build's schema; quick_check if `thorough`.
static keel_err
s_check (const char *path, bool thorough, keel_error_t *err)
{
    keel_err rc = s_check_header (path, err);
    if (rc)
        return rc;
    char uri[4200 * 3 + 64];
    if (!s_immutable_uri (path, uri, sizeof uri))
        return keel_error_set (err, KEEL_ERR_STORE, "%s: path too long", path);
    sqlite3 *db = NULL;
    int src = sqlite3_open_v2 (uri, &db,
                               SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        rc = keel_error_set (err, KEEL_ERR_STORE, "%s: cannot open: %s", path,
                             db ? sqlite3_errmsg (db) : sqlite3_errstr (src));
        sqlite3_close (db);
        return rc;
    }
    sqlite3_extended_result_codes (db, 1);
    // A backend object around the connection, for the open path's checks.
    keel_store_sqlite_t probe = { .db = db, .path = (char *) path, .wal_fd = -1, .lock_fd = -1 };
    rc = keel_store_sqlite_check_schema (&probe, thorough, err);
    sqlite3_close (db);
    return rc;
}

keel_err
keel_store_sqlite_check_file (const char *path, keel_error_t *err)
{
    return s_check (path, true, err);
}

// ---------------------------------------------------------------- replace

// Step 2 (see the top): closes the connection and makes sure no WAL or
// journal of the old store is left next to it.
static keel_err
s_close_cleanly (keel_store_sqlite_t *self, keel_error_t *err)
{
    keel_err rc = keel_store_sqlite_disconnect (self, err);
    if (rc)
        return rc;
    char wal[4200];
    snprintf (wal, sizeof wal, "%s-wal", self->path);
    struct stat st;
    if (stat (wal, &st) == 0 && st.st_size > 0)
        return keel_error_set (err, KEEL_ERR_STORE,
                               "%s: still holds %lld bytes after a full checkpoint", wal,
                               (long long) st.st_size);
    s_remove_side_files (self->path); // empty or absent: nothing of the old store is lost
    return KEEL_OK;
}

// Steps 3 and 4: rename, directory sync, lock swap. Returns true once the
// rename is done (the old store is gone), whatever the outcome.
static bool
s_swap (keel_store_sqlite_t *self, const char *path, int new_lock_fd, keel_error_t *err,
        keel_err *rc_p)
{
    if (rename (path, self->path) != 0) {
        *rc_p = keel_error_set (err, KEEL_ERR_STORE, "%s: cannot rename to %s: %s", path,
                                self->path, strerror (errno));
        return false;
    }
    close (self->lock_fd);
    self->lock_fd = new_lock_fd;
    *rc_p = keel_store_sqlite_sync_dir (self->path, err);
    char old_dir[4200], new_dir[4200];
    keel_store_sqlite_dirname (path, old_dir, sizeof old_dir);
    keel_store_sqlite_dirname (self->path, new_dir, sizeof new_dir);
    if (!*rc_p && strcmp (old_dir, new_dir) != 0)
        *rc_p = keel_store_sqlite_sync_dir (path, err);
    return true;
}

keel_err
keel_store_sqlite_replace (keel_store_sqlite_t *self, const char *path, keel_error_t *err)
{
    keel_err rc = s_usable (self, "replace", err);
    if (rc)
        return rc;
    if (s_is_store (self, path))
        return keel_error_set (err, KEEL_ERR_INVALID, "%s: replace: this is the store itself",
                               path);
    rc = s_check (path, false, err); // the caller ran the thorough check
    if (rc)
        return rc;
    // Step 1: lock and sync the new file.
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot open: %s", path, strerror (errno));
    rc = keel_store_sqlite_flock (fd, path, err);
    if (!rc && fsync (fd) != 0)
        rc = keel_error_set (err, KEEL_ERR_STORE, "%s: fsync: %s", path, strerror (errno));
    if (!rc)
        rc = s_close_cleanly (self, err);
    bool swapped = false;
    if (!rc)
        swapped = s_swap (self, path, fd, err, &rc);
    if (!swapped)
        close (fd);
    if (!self->db) {
        //  Reconnect: to the new store after the rename, to the old one if
        //  anything before it failed. The first error is the one reported.
        keel_error_t again = { "" };
        keel_err reopen = keel_store_sqlite_connect (self, true, &again);
        if (reopen) {
            keel_store_sqlite_close_db (self);
            keel_error_set (&self->poison_err, reopen,
                            "%s: store closed: reopening it after a replace failed: %s; "
                            "destroy the store and open it again",
                            self->path, again.text);
            if (!rc)
                rc = keel_error_set (err, reopen, "%s", self->poison_err.text);
            else if (err) {
                keel_error_t first = *err;
                keel_error_set (err, rc, "%s; %s", first.text, self->poison_err.text);
            }
        }
    }
    return rc;
}
