/*  store_writer.c — the SQLite store's writes on a thread of their own.
    See store_writer.h.

    One mutex guards what the two threads share; the writer never holds it
    while it uses the connection or flushes. A journal travels in a node:
    the loop fills its spare node (swapping the turn's records in), links
    it at the queue's tail and wakes the writer; the writer unlinks the
    whole queue, writes it, and gives the nodes back on the free list, from
    which the loop takes its next spare. A failed transaction puts its
    nodes back at the queue's head, in order.
*/
#include "store_writer.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct s_node {
    struct s_node *next;
    keel_changes_t *changes;
    uint64_t turn;
} s_node_t;

struct _keel_store_writer_t {
    keel_store_sqlite_t *sql;
    bool flush;
    int64_t interval_ns;
    int fd; // eventfd: an answer arrived
    pthread_t thread;
    bool started;

    // The loop's alone.
    s_node_t *spare; // filled by the next hand over
    uint64_t issued;

    // Shared, under lock.
    pthread_mutex_t lock;
    pthread_cond_t work;   // to the writer: a journal, a release, stop
    pthread_cond_t idle;   // to the loop: the writer idle, a turn durable, a failure
    s_node_t *head, *tail; // handed over, not yet written
    size_t queued;         // records in them
    size_t writing;        // records in the turns the writer took
    s_node_t *free;        // written: nodes for the loop's next spares
    size_t nfree;
    uint64_t durable; // every turn up to it is durable
    bool busy;        // the writer is using the connection (or flushing)
    bool held;        // the loop is using the connection: the writer waits
    bool stop;
    keel_err failing;                        // the last transaction failed: tried again later
    bool broken;                             // a flush failed: nothing more is durable
    unsigned tries;                          // failed transactions in a row (the writer's)
    uint64_t flushes;                        // fdatasyncs that succeeded
    uint64_t times[KEEL_STORE_WRITER_TIMES]; // µs of the commits not read yet
    size_t ntimes;
    char error[512];
};

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec
s_abstime (int64_t mono_ns)
{
    return (struct timespec) { .tv_sec = mono_ns / 1000000000, .tv_nsec = mono_ns % 1000000000 };
}

static void
s_signal_loop (keel_store_writer_t *self)
{
    uint64_t one = 1;
    (void) !write (self->fd, &one, sizeof one);
    pthread_cond_broadcast (&self->idle);
}

static void
s_free_nodes (s_node_t *n)
{
    while (n) {
        s_node_t *next = n->next;
        keel_changes_destroy (&n->changes);
        free (n);
        n = next;
    }
}

// Applies the journals of batch in one transaction and commits it.
static keel_err
s_write (keel_store_writer_t *self, s_node_t *batch, keel_error_t *err)
{
    keel_err rc = KEEL_OK;
    for (s_node_t *n = batch; n && rc == KEEL_OK; n = n->next)
        rc = keel_store_sqlite_apply_all (self->sql, n->changes);
    if (rc == KEEL_OK)
        return keel_store_sqlite_commit (self->sql, err);
    keel_error_set (err, rc, "%s", keel_store_sqlite_last_error (self->sql));
    keel_store_sqlite_rollback (self->sql);
    return rc;
}

// Takes the queue (called locked, returns locked), writes it, and says how
// it went: the last turn written, or 0 after a failure (its nodes are back
// at the queue's head and the writer is failing).
static uint64_t
s_take_and_write (keel_store_writer_t *self)
{
    s_node_t *batch = self->head, *last = self->tail;
    size_t records = self->queued;
    self->head = self->tail = NULL;
    self->queued = 0;
    self->writing = records;
    self->busy = true;
    pthread_mutex_unlock (&self->lock);
    keel_error_t err = { "" };
    int64_t start = s_now_ns ();
    keel_err rc = s_write (self, batch, &err);
    uint64_t took_us = (uint64_t) (s_now_ns () - start) / 1000;
    pthread_mutex_lock (&self->lock);
    self->writing = 0;
    if (rc == KEEL_OK && self->ntimes < KEEL_STORE_WRITER_TIMES)
        self->times[self->ntimes++] = took_us; // beyond: the loop has not read them: dropped
    pthread_cond_broadcast (&self->idle);      // room for more (keel_store_writer_ready)
    if (rc != KEEL_OK) {
        last->next = self->head; // back at the head, in order
        if (!self->head)
            self->tail = last;
        self->head = batch;
        self->queued += records;
        self->failing = rc;
        snprintf (self->error, sizeof self->error, "%s",
                  err.text[0] ? err.text : "store commit failed");
        if (self->tries++ == 0) // said once per outage (the logger is one write(2) a line)
            KEEL_WARN ("broker",
                       "writing the store failed: %s; trying again every %d ms, refusing new "
                       "submissions meanwhile",
                       self->error, KEEL_STORE_WRITER_RETRY_MS);
        return 0;
    }
    if (self->tries)
        KEEL_INFO ("broker", "the store is written again (after %u failed tries)", self->tries);
    self->tries = 0;
    self->failing = KEEL_OK;
    uint64_t turn = last->turn;
    // Nodes back on the free list, a few at most: each keeps the memory of
    // the journal it carried.
    s_node_t *extra = NULL;
    while (batch) {
        s_node_t *n = batch;
        batch = n->next;
        if (self->nfree < KEEL_STORE_WRITER_SPARES) {
            keel_changes_clear_to (n->changes, KEEL_STORE_WRITER_QUEUE_MAX);
            n->next = self->free;
            self->free = n;
            self->nfree++;
        }
        else {
            n->next = extra;
            extra = n;
        }
    }
    pthread_mutex_unlock (&self->lock);
    s_free_nodes (extra);
    pthread_mutex_lock (&self->lock);
    return turn;
}

static void *
s_run (void *arg)
{
    keel_store_writer_t *self = arg;
    int64_t flushed_at = 0; // when the last flush started
    pthread_mutex_lock (&self->lock);
    for (;;) {
        // Waits for work: a journal, not while the loop holds the
        // connection, and while failing not before the retry time.
        int64_t retry_at = self->failing ? s_now_ns () + KEEL_STORE_WRITER_RETRY_MS * 1000000LL : 0;
        while (!self->broken
               && (self->held || !self->head || (self->failing && s_now_ns () < retry_at))) {
            if (self->stop && (!self->head || self->failing))
                break;
            if (self->failing && !self->held && self->head) {
                struct timespec at = s_abstime (retry_at);
                pthread_cond_timedwait (&self->work, &self->lock, &at);
            }
            else
                pthread_cond_wait (&self->work, &self->lock);
        }
        if (self->broken || (self->stop && (!self->head || self->failing)))
            break;
        uint64_t turn = s_take_and_write (self);
        if (turn && self->flush) {
            // Commits made until the interval is over share this flush.
            int64_t due = flushed_at + self->interval_ns;
            while (!self->stop && turn && s_now_ns () < due) {
                struct timespec at = s_abstime (due);
                self->busy = false; // the loop may hold the connection meanwhile
                pthread_cond_broadcast (&self->idle);
                pthread_cond_timedwait (&self->work, &self->lock, &at);
                while (self->held)
                    pthread_cond_wait (&self->work, &self->lock);
                if (self->head && !self->failing) {
                    uint64_t more = s_take_and_write (self);
                    if (more)
                        turn = more;
                    else
                        break; // failing: flush what did commit
                }
            }
            self->busy = true;
            flushed_at = s_now_ns ();
            pthread_mutex_unlock (&self->lock);
            keel_error_t err = { "" };
            keel_err rc = keel_store_sqlite_sync (self->sql, &err);
            pthread_mutex_lock (&self->lock);
            if (rc == KEEL_OK)
                self->flushes++;
            else {
                self->broken = true; // the words of syncer.c, which docs/operations.md quotes
                snprintf (self->error, sizeof self->error,
                          "fdatasync of the store's WAL failed: %s", err.text);
            }
        }
        if (turn && !self->broken && turn > self->durable)
            self->durable = turn;
        self->busy = false;
        s_signal_loop (self);
    }
    self->busy = false;
    s_signal_loop (self);
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

keel_store_writer_t *
keel_store_writer_new (keel_store_sqlite_t *sql, bool flush, int64_t interval_ms, keel_error_t *err)
{
    keel_store_writer_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory starting the store writer");
        return NULL;
    }
    self->sql = sql;
    self->flush = flush;
    self->interval_ns = interval_ms * 1000000;
    self->fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->fd < 0) {
        keel_error_set (err, KEEL_ERR_STORE, "store writer: eventfd: %s", strerror (errno));
        free (self);
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->work, &attr);
    pthread_condattr_destroy (&attr);
    pthread_cond_init (&self->idle, NULL);
    int rc = pthread_create (&self->thread, NULL, s_run, self);
    if (rc != 0) {
        keel_error_set (err, KEEL_ERR_STORE, "store writer: cannot start its thread: %s",
                        strerror (rc));
        keel_store_writer_destroy (&self);
        return NULL;
    }
    self->started = true;
    return self;
}

void
keel_store_writer_destroy (keel_store_writer_t **self_p)
{
    keel_store_writer_t *self = *self_p;
    if (!self)
        return;
    if (self->started) {
        pthread_mutex_lock (&self->lock);
        self->stop = true;
        self->held = false;
        pthread_cond_broadcast (&self->work);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->thread, NULL);
    }
    if (self->head) // failing or broken: none of it was acknowledged
        KEEL_WARN ("broker",
                   "store writer stopped with %zu changes not written (%s); drivers and engines "
                   "keep what was not acknowledged",
                   self->queued, self->error[0] ? self->error : "not written");
    s_free_nodes (self->head);
    s_free_nodes (self->free);
    if (self->spare)
        s_free_nodes (self->spare);
    close (self->fd);
    pthread_cond_destroy (&self->work);
    pthread_cond_destroy (&self->idle);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

// The writer's failure as the loop sees it (called locked).
static keel_err
s_failure (keel_store_writer_t *self, keel_error_t *err)
{
    if (self->broken)
        return keel_error_set (err, KEEL_ERR_STORE, "%s", self->error);
    if (self->failing)
        return keel_error_set (err, self->failing, "%s", self->error);
    return KEEL_OK;
}

keel_err
keel_store_writer_ready (keel_store_writer_t *self, keel_error_t *err)
{
    pthread_mutex_lock (&self->lock);
    keel_err rc;
    // A bounded queue: a loop that hands over faster than the writer writes
    // waits here (as it waited for its own writes without a writer).
    while ((rc = s_failure (self, err)) == KEEL_OK
           && self->queued + self->writing >= KEEL_STORE_WRITER_QUEUE_MAX)
        pthread_cond_wait (&self->idle, &self->lock);
    if (rc == KEEL_OK && !self->spare && self->free) {
        self->spare = self->free;
        self->free = self->free->next;
        self->spare->next = NULL;
        self->nfree--;
    }
    pthread_mutex_unlock (&self->lock);
    if (rc != KEEL_OK || self->spare)
        return rc;
    s_node_t *n = calloc (1, sizeof *n);
    if (n)
        n->changes = keel_changes_new ();
    if (!n || !n->changes) {
        free (n);
        return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory handing a commit to the store");
    }
    self->spare = n;
    return KEEL_OK;
}

uint64_t
keel_store_writer_hand_over (keel_store_writer_t *self, keel_changes_t *changes)
{
    if (!keel_changes_size (changes) || !self->spare)
        return self->issued;
    s_node_t *n = self->spare;
    self->spare = NULL;
    keel_changes_swap (n->changes, changes);
    n->turn = ++self->issued;
    size_t records = keel_changes_size (n->changes);
    pthread_mutex_lock (&self->lock);
    self->queued += records;
    if (self->tail)
        self->tail->next = n;
    else
        self->head = n;
    self->tail = n;
    pthread_cond_signal (&self->work);
    pthread_mutex_unlock (&self->lock);
    return n->turn;
}

uint64_t
keel_store_writer_issued (const keel_store_writer_t *self)
{
    return self->issued;
}

uint64_t
keel_store_writer_collect (keel_store_writer_t *self)
{
    uint64_t count;
    (void) !read (self->fd, &count, sizeof count);
    pthread_mutex_lock (&self->lock);
    uint64_t durable = self->durable;
    pthread_mutex_unlock (&self->lock);
    return durable;
}

int
keel_store_writer_fd (const keel_store_writer_t *self)
{
    return self->fd;
}

size_t
keel_store_writer_commit_times (keel_store_writer_t *self, uint64_t *us, size_t max)
{
    pthread_mutex_lock (&self->lock);
    size_t n = self->ntimes < max ? self->ntimes : max;
    memcpy (us, self->times, n * sizeof *us);
    memmove (self->times, self->times + n, (self->ntimes - n) * sizeof *us);
    self->ntimes -= n;
    pthread_mutex_unlock (&self->lock);
    return n;
}

uint64_t
keel_store_writer_flushes (keel_store_writer_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t flushes = self->flushes;
    pthread_mutex_unlock (&self->lock);
    return flushes;
}

bool
keel_store_writer_broken (keel_store_writer_t *self, keel_error_t *err)
{
    pthread_mutex_lock (&self->lock);
    bool broken = self->broken;
    if (broken)
        keel_error_set (err, KEEL_ERR_STORE, "%s", self->error);
    pthread_mutex_unlock (&self->lock);
    return broken;
}

keel_err
keel_store_writer_wait (keel_store_writer_t *self, keel_error_t *err)
{
    pthread_mutex_lock (&self->lock);
    keel_err rc;
    while ((rc = s_failure (self, err)) == KEEL_OK && self->durable < self->issued)
        pthread_cond_wait (&self->idle, &self->lock);
    pthread_mutex_unlock (&self->lock);
    return rc;
}

keel_err
keel_store_writer_hold (keel_store_writer_t *self, bool drain, keel_error_t *err)
{
    pthread_mutex_lock (&self->lock);
    keel_err rc = KEEL_OK;
    for (;;) {
        if (drain && (rc = s_failure (self, err)) != KEEL_OK)
            break;
        if (!self->busy && (!drain || !self->head))
            break;
        pthread_cond_wait (&self->idle, &self->lock);
    }
    if (rc == KEEL_OK)
        self->held = true;
    pthread_mutex_unlock (&self->lock);
    return rc;
}

void
keel_store_writer_release (keel_store_writer_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->held = false;
    pthread_cond_signal (&self->work);
    pthread_mutex_unlock (&self->lock);
}
