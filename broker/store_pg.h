/*  store_pg.h — the PostgreSQL backend of the broker's store (internal).

    "postgresql://…" (or "postgres://…") store URIs, through libpq. Only
    store.c includes this header; the broker uses store.h, and every
    function here has the contract of the store.h function of the same
    name without "_pg". What differs from SQLite:

    Several brokers may share the database, each serving its own work
    (store_pg_member.c, store.h "members"): each member's session holds an
    advisory lock of its own, its fence; its successor takes its work over
    when that session ends or its lease passes.
    A turn is one pipeline. The first write of a turn enters libpq's
    pipeline mode and sends BEGIN; every write sends one prepared statement
    without waiting for it; keel_store_pg_commit sends COMMIT and a sync
    point and reads every result, so a turn costs one round trip however
    many rows it writes. A statement that failed is known only then: the
    whole turn rolls back and commit reports the first error. Durability is
    PostgreSQL's: a commit returns once the server says COMMIT, which with
    synchronous_commit=on (PostgreSQL's default; the describe string says
    what the server runs) means its WAL is flushed. StoreSync does not
    apply; there is no WAL file to sync here (keel_store_pg_sync_fd is -1).

    Every wait on the server is bounded (KEEL_STORE_PG_TIMEOUT_MS): a
    server that does not answer fails the turn and the connection is
    dropped; the next write reconnects (at most once a second) and takes
    its advisory lock again (or finds this member fenced). A commit whose answer was lost may have
    happened: the broker rewrites the turn's rows (puts are upserts), and
    drivers resubmit what was not acknowledged, which the broker knows.

    Strings are stored as bytea: the wire does not promise UTF-8, and a
    text column would refuse an id or error message that is not valid in
    the database's encoding. Integers are bigint. Values travel in libpq's
    binary format both ways.

    The URI may hold a password: keel_store_pg_safe_uri gives the URI
    without it, for every message and log line.
*/
#ifndef KEEL_STORE_PG_H
#define KEEL_STORE_PG_H

#include "store.h"

#define KEEL_STORE_PG_TIMEOUT_MS 10000 // longest wait for the server in one call

typedef struct _keel_store_pg_t keel_store_pg_t;

// True when uri names a PostgreSQL store (postgresql:// or postgres://).
bool keel_store_pg_uri (const char *uri);

// Writes uri to out without a password (user:PASSWORD@ and password=…
// query parameters become "***"), truncated to size.
void keel_store_pg_safe_uri (const char *uri, char *out, size_t size);

keel_store_pg_t *keel_store_pg_open (const char *uri, keel_error_t *err);
void keel_store_pg_destroy (keel_store_pg_t **self_p);
const char *keel_store_pg_describe (const keel_store_pg_t *self);

keel_err keel_store_pg_commit (keel_store_pg_t *self, keel_error_t *err);
keel_err keel_store_pg_commit_async (keel_store_pg_t *self, keel_error_t *err);
// Waits (bounded) for the awaited commit's answer; a lost answer is not
// fatal here (its records are sent again): read keel_store_pg_collect.
keel_err keel_store_pg_sync (keel_store_pg_t *self, keel_error_t *err);
uint64_t keel_store_pg_collect (keel_store_pg_t *self, keel_error_t *err);
uint64_t keel_store_pg_issued (const keel_store_pg_t *self);
int keel_store_pg_answer_fd (const keel_store_pg_t *self);
void keel_store_pg_rollback (keel_store_pg_t *self);
bool keel_store_pg_in_transaction (const keel_store_pg_t *self);
const char *keel_store_pg_last_error (const keel_store_pg_t *self);

keel_err keel_store_pg_apply (keel_store_pg_t *self, const keel_change_t *change);

keel_err keel_store_pg_meta_get (keel_store_pg_t *self, const char *name, uint64_t *value_p);
keel_err keel_store_pg_load (keel_store_pg_t *self, const keel_store_loader_t *loader, void *arg,
                             keel_error_t *err);
keel_err keel_store_pg_events (keel_store_pg_t *self, int limit, keel_store_event_fn *fn,
                               void *arg);
keel_err keel_store_pg_maintenance (keel_store_pg_t *self, int64_t now_wall_ms,
                                    int64_t retention_ms, keel_store_maintenance_t *report,
                                    keel_error_t *err);
uint64_t keel_store_pg_size (keel_store_pg_t *self);
// Members (store_pg_member.c; store.h "members").
void keel_store_pg_member_setup (keel_store_pg_t *self, const char *endpoint, int64_t lease_ms);
keel_store_role_t keel_store_pg_role (const keel_store_pg_t *self);
keel_store_role_t keel_store_pg_tick (keel_store_pg_t *self, bool paused);
keel_err keel_store_pg_rejoin (keel_store_pg_t *self, uint64_t *dropped_p, keel_error_t *err);
size_t keel_store_pg_members (const keel_store_pg_t *self, const keel_store_member_t **members_p);
void keel_store_pg_leave (keel_store_pg_t *self);
uint64_t keel_store_pg_members_gen (const keel_store_pg_t *self);
uint64_t keel_store_pg_member_id (const keel_store_pg_t *self);
int64_t keel_store_pg_service_owner (keel_store_pg_t *self, const char *service_id);
void keel_store_pg_member_load (keel_store_pg_t *self, int64_t queued, int64_t idle_slots);
int keel_store_pg_member_alive (keel_store_pg_t *self, uint64_t member_id);
bool keel_store_pg_db_up (const keel_store_pg_t *self);

#endif
