/*  syncer.c — fdatasync of the store's WAL in a thread of its own. See syncer.h.

    Protocol on the actor's pipe (zsock picture):
      loop -> thread   "8"   commit seq to make durable
      thread -> loop   "84"  seq now durable, errno (0 = success)

    The checkpointer is a second thread, so a checkpoint never delays a
    flush: the loop sends it "CHECKPOINT" and reads nothing back; the
    thread says it is done through an atomic the loop reads.
*/
#include "syncer.h"
#include "thread.h"

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// What the checkpointer thread shares with the loop.
typedef struct {
    char *db_path;       // set before the thread starts, never changed
    atomic_bool running; // a checkpoint was asked for and is not over
    atomic_uint_fast64_t done, failed;
} s_ckpt_t;

// What the flushing thread shares with the loop.
typedef struct {
    int fd;
    int64_t interval_us;         // from the start of one flush to the start of the next
    atomic_uint_fast64_t latest; // the last commit asked for: written before it is stored here
} s_flush_t;

struct _keel_syncer_t {
    keel_thread_t *thread;
    s_flush_t flush;
    zsock_t *actor;             // its pipe
    keel_thread_t *ckpt_thread; // NULL without db_path
    s_ckpt_t ckpt;
    uint64_t requested; // highest seq asked for
    uint64_t inflight;  // seq of the fdatasync running, 0 = none
    uint64_t synced;    // highest seq known durable
    uint64_t flushes;
    bool broken; // a request could not reach the thread
};

// Signals are the loop's business (SIGTERM stops the broker): one
// delivered to a syncer thread would interrupt its receive.
static void
s_block_signals (void)
{
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, NULL);
}

// A PASSIVE checkpoint of the store at path on a connection of its own,
// opened for it: it copies what the WAL holds into the database file
// (syncing both) beside the loop's connection, without taking the write
// lock. The connection neither checkpoints nor deletes the WAL when it
// closes (were the loop's connection gone first). Returns a SQLite code.
static int
s_checkpoint (const char *path)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_db_config (db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    int persist = 1;
    if (rc == SQLITE_OK)
        rc = sqlite3_file_control (db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    // A read opens the WAL: before one, the connection does not know the
    // file is in WAL mode, and the checkpoint does nothing (log = -1).
    if (rc == SQLITE_OK)
        rc = sqlite3_exec (db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    int log = 0, done = 0;
    if (rc == SQLITE_OK)
        rc = sqlite3_wal_checkpoint_v2 (db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc == SQLITE_OK && log < 0)
        rc = SQLITE_ERROR; // not in WAL mode: nothing was checkpointed
    sqlite3_close (db);
    return rc;
}

static void
s_ckpt_thread (zsock_t *pipe, void *arg)
{
    s_ckpt_t *ckpt = arg;
    s_block_signals ();
    zsock_signal (pipe, 0);
    while (true) {
        char *command = zstr_recv (pipe);
        if (!command) {
            if (zmq_errno () == EINTR)
                continue;
            break; // the context is going away
        }
        bool term = strcmp (command, "$TERM") == 0;
        zstr_free (&command);
        if (term)
            break;
        int rc = s_checkpoint (ckpt->db_path);
        // Free for the next request before the count moves: whoever sees
        // the count may ask again at once.
        atomic_store (&ckpt->running, false);
        if (rc == SQLITE_OK)
            atomic_fetch_add (&ckpt->done, 1);
        else
            atomic_fetch_add (&ckpt->failed, 1); // the commits checkpoint past the force mark
    }
}

// Reads one request from the pipe: false on $TERM (or when the context
// is going away), else true with *seq_p raised to the seq it names.
static bool
s_recv_request (zsock_t *pipe, uint64_t *seq_p)
{
    while (true) {
        zmsg_t *msg = zmsg_recv (pipe);
        if (!msg) {
            if (zmq_errno () == EINTR)
                continue;
            return false; // the context is going away
        }
        zframe_t *frame = zmsg_first (msg);
        bool term = frame && zframe_streq (frame, "$TERM");
        uint64_t seq = 0;
        if (frame && zframe_size (frame) == sizeof seq)
            memcpy (&seq, zframe_data (frame), sizeof seq);
        zmsg_destroy (&msg);
        if (seq > *seq_p)
            *seq_p = seq;
        return !term;
    }
}

// StoreSyncInterval: waits until `until` (zclock_usecs), reading the
// loop's requests meanwhile into *seq_p (they are merged into the coming
// flush). Returns false when $TERM came: the broker is stopping, and a
// wait of up to the interval (StoreSyncInterval can be a second) would
// hold its exit.
static bool
s_wait_until (zsock_t *pipe, int64_t until, uint64_t *seq_p)
{
    void *handle = zsock_resolve (pipe);
    // Bounded: each pass reads a request or lets time pass.
    for (int pass = 0; pass < 100000; pass++) {
        int64_t left = until - zclock_usecs ();
        if (left <= 0)
            return true;
        if (left < 1000) {
            usleep ((useconds_t) left); // under a millisecond: zmq_poll's unit
            return true;
        }
        zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll (&item, 1, (long) (left / 1000));
        if (rc > 0 && !s_recv_request (pipe, seq_p))
            return false;
        if (rc < 0 && zmq_errno () != EINTR)
            return false; // the context is going away
    }
    return true;
}

static void
s_thread (zsock_t *pipe, void *arg)
{
    const s_flush_t *flush = arg;
    s_block_signals ();
    zsock_signal (pipe, 0);
    int64_t last_start = 0;
    while (true) {
        uint64_t seq = 0;
        if (!s_recv_request (pipe, &seq))
            break;
        // StoreSyncInterval: wait out what is left of it since the last
        // flush started; the loop's requests meanwhile are merged into
        // this flush (keel_syncer_request), and $TERM ends the wait.
        if (last_start && !s_wait_until (pipe, last_start + flush->interval_us, &seq))
            break;
        last_start = zclock_usecs ();
        // Every commit asked for by now is in the file (the loop writes a
        // commit before it asks): this flush makes them all durable, not
        // only the one the message named.
        uint64_t latest = atomic_load_explicit (&flush->latest, memory_order_acquire);
        if (latest > seq)
            seq = latest;
        int error = fdatasync (flush->fd) == 0 ? 0 : errno;
        zsock_send (pipe, "84", seq, (uint32_t) error);
    }
}

keel_syncer_t *
keel_syncer_new (int fd, const char *db_path, int64_t interval_ms)
{
    keel_syncer_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->flush.fd = fd;
    self->flush.interval_us = interval_ms > 0 ? interval_ms * 1000 : 0;
    atomic_init (&self->flush.latest, 0);
    atomic_init (&self->ckpt.running, false);
    atomic_init (&self->ckpt.done, 0);
    atomic_init (&self->ckpt.failed, 0);
    if (db_path) {
        self->ckpt.db_path = strdup (db_path);
        self->ckpt_thread =
            self->ckpt.db_path ? keel_thread_new (s_ckpt_thread, &self->ckpt) : NULL;
        if (!self->ckpt_thread) {
            free (self->ckpt.db_path);
            free (self);
            return NULL;
        }
        zsock_set_sndtimeo (keel_thread_pipe (self->ckpt_thread), 0);
    }
    self->thread = keel_thread_new (s_thread, &self->flush);
    self->actor = self->thread ? keel_thread_pipe (self->thread) : NULL;
    if (!self->actor) {
        keel_thread_destroy (&self->ckpt_thread);
        free (self->ckpt.db_path);
        free (self);
        return NULL;
    }
    zsock_set_sndtimeo (self->actor, 0);
    return self;
}

void
keel_syncer_destroy (keel_syncer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_syncer_t *self = *self_p;
    keel_thread_destroy (&self->thread); // sends $TERM, joins the thread
    self->actor = NULL;
    keel_thread_destroy (&self->ckpt_thread); // after the checkpoint running, if any
    free (self->ckpt.db_path);
    free (self);
    *self_p = NULL;
}

//  Never blocks the loop: the actor's pipe (sndtimeo 0, see
//  keel_syncer_new) refuses a request only when the thread is gone, and
//  then nothing more can be made durable: keel_syncer_busy stays true and
//  keel_syncer_failed tells the loop.
static void
s_issue (keel_syncer_t *self)
{
    uint64_t seq = self->requested;
    zframe_t *frame = zframe_new (&seq, sizeof seq);
    if (frame && zframe_send (&frame, self->actor, 0) == 0) {
        self->inflight = seq;
        self->flushes++;
    }
    else
        self->broken = true;
    zframe_destroy (&frame);
}

void
keel_syncer_request (keel_syncer_t *self, uint64_t seq)
{
    if (seq > self->requested) {
        self->requested = seq;
        atomic_store_explicit (&self->flush.latest, seq, memory_order_release);
    }
    if (!self->inflight && self->requested > self->synced)
        s_issue (self);
}

void
keel_syncer_checkpoint (keel_syncer_t *self)
{
    if (!self->ckpt_thread || atomic_load (&self->ckpt.running))
        return;
    atomic_store (&self->ckpt.running, true);
    if (zstr_send (keel_thread_pipe (self->ckpt_thread), "CHECKPOINT") != 0)
        atomic_store (&self->ckpt.running, false); // asked again at the next commit
}

uint64_t
keel_syncer_checkpoints (const keel_syncer_t *self, uint64_t *failures)
{
    if (failures)
        *failures = atomic_load (&self->ckpt.failed);
    return atomic_load (&self->ckpt.done);
}

zsock_t *
keel_syncer_actor (keel_syncer_t *self)
{
    return self->actor;
}

keel_err
keel_syncer_recv (keel_syncer_t *self, uint64_t *synced_p, keel_error_t *err)
{
    uint64_t seq = 0;
    uint32_t error = 0;
    if (zsock_recv (self->actor, "84", &seq, &error) != 0)
        return keel_error_set (err, KEEL_ERR_STORE, "store sync thread did not answer");
    self->inflight = 0;
    if (error)
        return keel_error_set (err, KEEL_ERR_STORE, "fdatasync of the store's WAL failed: %s",
                               strerror ((int) error));
    if (seq > self->synced)
        self->synced = seq;
    if (self->requested > self->synced)
        s_issue (self);
    *synced_p = self->synced;
    return KEEL_OK;
}

bool
keel_syncer_failed (const keel_syncer_t *self)
{
    return self->broken;
}

bool
keel_syncer_busy (const keel_syncer_t *self)
{
    return self->inflight != 0 || self->requested > self->synced;
}

uint64_t
keel_syncer_flushes (const keel_syncer_t *self)
{
    return self->flushes;
}
