/*  store_pg_int.h — internals of the PostgreSQL store backend, private to
    its two files:
      store_pg.c       the connection (open, lock, schema, reconnect), the
                       turn's pipeline and the writes
      store_pg_read.c  meta, loading, the event log, maintenance, the size
*/
#ifndef KEEL_STORE_PG_INT_H
#define KEEL_STORE_PG_INT_H

#include <libpq-fe.h>

#include "changes.h"
#include "store_pg.h"

#define KEEL_STORE_PG_LOCK        1262830924 // 0x4B45454C, "KEEL": (this, 1) guards schema creation
#define KEEL_STORE_PG_MEMBER_LOCK 1262830925 // (this, member_id): each member's fence
#define KEEL_STORE_PG_EVENTS_MAX  10000      // newest events kept (as the SQLite store)

// One statement's parameters, in libpq's binary format. Integers are kept
// big-endian in `ints`; strings and blobs point at the caller's buffers
// (libpq copies them into its output buffer when the statement is sent).
#define KEEL_STORE_PG_PARAMS_MAX 16
typedef struct {
    int n;
    bool too_big;                         // a blob over INT_MAX bytes: the statement must not run
    char kinds[KEEL_STORE_PG_PARAMS_MAX]; // 'i' bigint, 'b' bytea
    const char *values[KEEL_STORE_PG_PARAMS_MAX];
    int lengths[KEEL_STORE_PG_PARAMS_MAX];
    int formats[KEEL_STORE_PG_PARAMS_MAX];
    uint64_t ints[KEEL_STORE_PG_PARAMS_MAX];
} keel_store_pg_params_t;

void keel_store_pg_p_int (keel_store_pg_params_t *p, int64_t value);
// NULL data is SQL NULL; a zero-length blob stays an empty bytea.
void keel_store_pg_p_blob (keel_store_pg_params_t *p, const void *data, size_t len);
// NULL is SQL NULL.
void keel_store_pg_p_str (keel_store_pg_params_t *p, const char *text);

typedef struct {
    uint8_t *data;
    size_t len, cap;
} keel_store_pg_buf_t;

// A transaction sent and not yet answered.
typedef struct {
    keel_changes_t *records; // sent again if its answer is lost (commit_async), else NULL
    uint64_t turn;           // its commit's turn number, 0 for a rollback
    size_t left;             // results still to read at most
    keel_err rc;             // its first error
    bool members;            // carries a lease renewal: its rows are the members
} keel_store_pg_flight_t;

#define KEEL_STORE_PG_FLIGHTS 4 // commits in flight at most

// A batch being built (store_pg_write.c): rows of one batch statement,
// column by column, as binary arrays.
typedef struct {
    size_t rows;
    int ncols;
    char kinds[KEEL_STORE_PG_PARAMS_MAX];
    bool nulls[KEEL_STORE_PG_PARAMS_MAX];
    keel_store_pg_buf_t col[KEEL_STORE_PG_PARAMS_MAX];
} keel_store_pg_batch_t;

#define KEEL_STORE_PG_BATCHES 6 // batched record kinds

// The turn's open batches, one per batched kind, and the keys of the rows
// they hold (open addressing; key 0 = empty).
typedef struct {
    keel_store_pg_batch_t batch[KEEL_STORE_PG_BATCHES];
    int order[KEEL_STORE_PG_BATCHES]; // open batches, in the order they were opened
    int open;
    uint64_t *keys;
    size_t slots, used;
} keel_store_pg_batches_t;

struct _keel_store_pg_t {
    PGconn *conn;            // NULL while disconnected
    char *uri;               // as configured (may hold a password: never logged)
    char safe[512];          // uri without its password, for messages
    char describe[768];      // for keel_store_describe
    bool in_txn;             // BEGIN sent in pipeline mode, COMMIT not yet
    size_t sent;             // statements sent in this turn (BEGIN included)
    uint64_t events;         // events written by this connection (for trimming)
    keel_err poison;         // a write of this turn failed (KEEL_OK if not)
    keel_error_t poison_err; // its message
    keel_error_t last;       // the last failure, for keel_store_pg_last_error
    int64_t retry_ms;        // monotonic time of the last reconnect attempt
    bool lost_lock;          // another broker took the store while we were away
    keel_store_pg_batches_t batches;
    // Commits answered later (store_pg.c "the turn"): the transactions
    // sent and not yet answered, oldest first, and the records to send again.
    keel_store_pg_flight_t flights[KEEL_STORE_PG_FLIGHTS];
    size_t head, nflights;
    uint64_t issued;        // turns committed (a COMMIT sent)
    uint64_t confirmed;     // turns known durable: all up to this number
    keel_changes_t *txn;    // the records of the open transaction
    keel_changes_t *replay; // records of commits whose answer was lost, oldest first
    bool closing;           // destroy: nothing is kept for a replay
    uint64_t size;          // keel_store_pg_size's last answer
    int64_t size_at;        // ... asked at (monotonic ms), 0 never
    bool replaying;         // sending replay's records (not copied into txn)
    // Membership (store_pg_member.c).
    uint64_t member_id;     // this member's row, a new one at each join
    keel_store_role_t role; // SERVING once joined (FENCED is lost_lock)
    char member_name[128];  // keel-broker[PID]@HOST
    char endpoint[256];     // for clients (keel_store_pg_member_setup)
    int64_t lease_ms;       // the lease each renewal grants
    int64_t renew_at;       // monotonic ms: a renewal is due
    int64_t connected_at;   // monotonic ms of the last connection
    bool renew_in_txn;      // the open transaction renews the lease (its rows: the members)
    keel_store_member_t members[KEEL_STORE_MEMBERS_MAX];
    size_t nmembers;
    uint64_t members_gen; // read again (keel_store_pg_read_members) this many times
    bool left;            // keel_store_pg_leave: no member any more, nothing more written
    size_t ndead;         // members whose lease has passed, as last read
    int64_t load_queued;  // this member's queued tasks, published at each renewal
    int64_t load_idle;    // ... and its engines' idle slots
    int64_t watch_at;     // monotonic ms: the next look for dead members
    bool reconnected;     // the connection is not the first one
};

// Monotonic milliseconds.
int64_t keel_store_pg_now_ms (void);

// Records the failure of what (with the server's or libpq's message) in err
// and self->last; returns KEEL_ERR_FULL for a full disk (SQLSTATE 53100),
// KEEL_ERR_STORE otherwise. res may be NULL (a connection failure).
keel_err keel_store_pg_error (keel_store_pg_t *self, keel_error_t *err, const PGresult *res,
                              const char *what);

// Sends a query outside a turn and waits (bounded) for its last result,
// which the caller clears. Returns NULL after filling err. With single_row
// the caller reads the rows itself: the query is sent in single-row mode
// and NULL is returned on success (see keel_store_pg_next_row).
PGresult *keel_store_pg_query (keel_store_pg_t *self, const char *sql,
                               const keel_store_pg_params_t *params, bool single_row,
                               keel_error_t *err);

// The next result of a single-row query (PGRES_SINGLE_TUPLE, then the
// final PGRES_TUPLES_OK, then NULL), waiting at most
// KEEL_STORE_PG_TIMEOUT_MS for each. NULL with err set when the wait failed.
PGresult *keel_store_pg_next_result (keel_store_pg_t *self, bool *failed_p, keel_error_t *err);

// Drains every result still pending on the connection (after a failed
// read), dropping the connection if that does not finish in time.
void keel_store_pg_drain (keel_store_pg_t *self);

// Ready to run a statement outside a turn: connected (reconnecting if due)
// and no turn open.
keel_err keel_store_pg_ready (keel_store_pg_t *self, keel_error_t *err);

// store_pg.c: opens the turn's transaction if it is not (BEGIN, then the
// records of commits whose answer was lost, before anything of this turn).
keel_err keel_store_pg_begin (keel_store_pg_t *self);
// store_pg.c: sends a prepared statement in the turn's pipeline (entering
// it, with BEGIN, at the first write); a failure poisons the turn. `what`
// names the statement in errors.
keel_err keel_store_pg_send (keel_store_pg_t *self, const char *name, const char *what,
                             const keel_store_pg_params_t *params);
// Fails the rest of the turn with self->last.
keel_err keel_store_pg_poison (keel_store_pg_t *self, keel_err code);
// Prepares one statement on the connection (outside a turn).
keel_err keel_store_pg_prepare (keel_store_pg_t *self, const char *name, const char *sql,
                                keel_error_t *err);

// store_pg_write.c: prepares every write statement; sends the open
// batches (commit does, before COMMIT); drops them (rollback); frees them.
keel_err keel_store_pg_prepare_writes (keel_store_pg_t *self, keel_error_t *err);
keel_err keel_store_pg_batch_flush (keel_store_pg_t *self);
void keel_store_pg_batch_clear (keel_store_pg_t *self);
void keel_store_pg_batch_free (keel_store_pg_t *self);

// store_pg.c: runs a one-row query (simple protocol, text) outside a turn,
// its first value into out; drops the connection.
keel_err keel_store_pg_value (keel_store_pg_t *self, const char *sql, char *out, size_t size,
                              keel_error_t *err);
void keel_store_pg_disconnect (keel_store_pg_t *self);

// store_pg_member.c: joins as a new member (taking over the work of
// members that are gone); sends the lease renewal in the turn's pipeline;
// reads the members from a renewal's rows; takes this member's lock again
// after a reconnection (false when its row is gone — another member took
// its work over — or on failure, err set then).
keel_err keel_store_pg_join (keel_store_pg_t *self, keel_error_t *err);
keel_err keel_store_pg_send_renewal (keel_store_pg_t *self);
void keel_store_pg_read_members (keel_store_pg_t *self, const PGresult *res);
bool keel_store_pg_lock_now (keel_store_pg_t *self, keel_error_t *err);

// Binary-format column readers.
int64_t keel_store_pg_int (const PGresult *res, int row, int col);
// NULL for SQL NULL; an empty bytea is a non-NULL empty buffer. libpq ends
// every value with a zero byte, so text columns read as C strings.
const uint8_t *keel_store_pg_blob (const PGresult *res, int row, int col, size_t *len_p);
const char *keel_store_pg_str (const PGresult *res, int row, int col);

#endif
