/*  store_sqlite_wal.c — the SQLite store's WAL with StoreSync=full: the
    file the syncer flushes, the count of its pages, and where its
    checkpoints run (see store_sqlite.h, syncer.h; internals in
    store_sqlite_int.h).
*/
#include "store_sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

//  StoreSync=full: checkpoints leave the loop. SQLite's own (every 1,000
//  WAL pages, inside the commit that crosses the mark) sync the WAL and the
//  database file: two flushes and the copy, on the broker's loop. This hook
//  replaces it (a connection has one WAL hook) and counts the pages; while
//  a syncer takes the checkpoints (keel_store_checkpoints_elsewhere) the
//  broker asks it for one on a connection of its own
//  (keel_syncer_checkpoint) once keel_store_checkpoint_due says so, and
//  until then the hook checkpoints at SQLite's mark itself. A
//  checkpoint that runs beside the writer cannot always finish (pages
//  written meanwhile), and the WAL restarts from its start only after one
//  that did; so past KEEL_STORE_SQLITE_WAL_FORCE pages the commit
//  checkpoints here, as SQLite would have, and the WAL stays bounded
//  whatever the syncer does.
static int
s_wal_hook (void *arg, sqlite3 *db, const char *name, int pages)
{
    keel_store_sqlite_t *self = arg;
    self->wal_pages = pages;
    if (pages >= (self->ckpt_elsewhere ? KEEL_STORE_SQLITE_WAL_FORCE
                                       : KEEL_STORE_SQLITE_WAL_CHECKPOINT)) {
        int log = 0, done = 0;
        sqlite3_wal_checkpoint_v2 (db, name, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    }
    return SQLITE_OK;
}

//  StoreSync=full: opens the WAL file for fdatasync and syncs its directory
//  once, so the WAL's directory entry is durable too. SQLite keeps the WAL
//  file (same inode) while this connection is open; checkpoints and
//  journal_size_limit truncate it but never replace it. If the WAL cannot
//  be opened, the connection falls back to synchronous=FULL (a sync inside
//  every commit): slower, never less durable.
//
//  On a reconnect (after keel_store_sqlite_replace) the syncer thread may
//  hold wal_fd: the new WAL takes the same fd number (dup2 swaps it
//  atomically, a sync in flight finishes on the old file), so
//  keel_store_sqlite_sync_fd never changes. A store that fell back keeps
//  falling back, and one whose new WAL cannot be opened falls back while
//  its fd keeps pointing at the old (deleted) WAL, harmlessly.
keel_err
keel_store_sqlite_open_wal (keel_store_sqlite_t *self, bool reconnect, keel_error_t *err)
{
    char wal[4200];
    snprintf (wal, sizeof wal, "%s-wal", self->path);
    int fd = reconnect && self->wal_fd < 0 ? -1 : open (wal, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && reconnect) {
        if (dup2 (fd, self->wal_fd) < 0) {
            close (fd);
            fd = -1;
        }
        else {
            close (fd);
            fd = self->wal_fd;
        }
    }
    if (fd >= 0) {
        self->wal_fd = fd;
        (void) keel_store_sqlite_sync_dir (self->path, NULL);
        self->wal_pages = 0;
        sqlite3_wal_hook (self->db, s_wal_hook, self); // checkpoints off the loop (above)
        return KEEL_OK;
    }
    return keel_store_sqlite_exec (self, "PRAGMA synchronous = FULL;", err);
}

int
keel_store_sqlite_sync_fd (const keel_store_sqlite_t *self)
{
    return self->wal_fd;
}

bool
keel_store_sqlite_checkpoint_due (const keel_store_sqlite_t *self)
{
    return self->wal_fd >= 0 && self->ckpt_elsewhere
           && self->wal_pages >= KEEL_STORE_SQLITE_WAL_CHECKPOINT;
}

void
keel_store_sqlite_checkpoints_elsewhere (keel_store_sqlite_t *self, bool elsewhere)
{
    self->ckpt_elsewhere = elsewhere;
}

const char *
keel_store_sqlite_path (const keel_store_sqlite_t *self)
{
    return self->path;
}

keel_err
keel_store_sqlite_sync (keel_store_sqlite_t *self, keel_error_t *err)
{
    if (self->wal_fd < 0 || fdatasync (self->wal_fd) == 0)
        return KEEL_OK;
    return keel_error_set (err, KEEL_ERR_STORE, "%s-wal: fdatasync: %s", self->path,
                           strerror (errno));
}
