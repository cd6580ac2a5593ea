/*  store_pg.c — the "postgresql://" store backend: the connection, the
    schema and the turn's pipeline (see store_pg.h; the writes are in
    store_pg_write.c, the reads in store_pg_read.c).

    The connection is in libpq's nonblocking mode, and every wait on the
    server goes through s_wait with a deadline, so a server that stops
    answering costs a failed turn, never a hung broker. Outside a turn the
    connection is idle in normal mode; the first write of a turn enters
    pipeline mode and sends BEGIN.

    A failed send poisons the turn, as in the SQLite backend: every later
    write of the turn fails at once with the same error and commit reports
    it after abandoning the pipeline.
*/
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store_pg_int.h"

#define KEEL_STORE_PG_FORMAT  "keel-broker-store"
#define KEEL_STORE_PG_CONNECT "5"  // connect_timeout (s) unless the URI sets one
#define KEEL_STORE_PG_RETRY   1000 // ms between reconnect attempts

// ---------------------------------------------------------------- schema

// Migration i takes the schema from version i to i + 1, in one
// transaction at open. Never edit a released step: append one.
static const char *s_migrations[] = {
    // 0 -> 1: the first schema (the SQLite store's schema 4, blobs inline:
    // PostgreSQL keeps big values out of line by itself). Tasks are written
    // two or three times each (put, result, ack): half-empty pages let
    // those updates stay on the row's page without touching the index
    // (HOT updates), which made W1 ~30 % faster here.
    "CREATE TABLE keel_meta (name text PRIMARY KEY, value text NOT NULL);"
    "INSERT INTO keel_meta VALUES ('format', '" KEEL_STORE_PG_FORMAT "'), ('schema', '0');"
    "CREATE TABLE services ("
    "  service_id bytea PRIMARY KEY, type bytea NOT NULL, driver_id bytea NOT NULL,"
    "  priority bigint NOT NULL, max_attempts bigint NOT NULL,"
    "  reschedule_delay_ms bigint NOT NULL, init_data bytea, state bigint NOT NULL,"
    "  created_wall_ms bigint NOT NULL, closed_wall_ms bigint NOT NULL);"
    "CREATE TABLE tasks ("
    "  service_id bytea NOT NULL, task_id bigint NOT NULL, state bigint NOT NULL,"
    "  attempts bigint NOT NULL, status bigint NOT NULL, error bytea, engine_id bytea,"
    "  execution_id bigint NOT NULL, run_ms bigint NOT NULL, queued_ms bigint NOT NULL,"
    "  acked bigint NOT NULL, checkpoint_wall_ms bigint NOT NULL,"
    "  input bytea, output bytea, checkpoint bytea,"
    "  PRIMARY KEY (service_id, task_id)) WITH (fillfactor = 50);"
    "CREATE TABLE executions ("
    "  execution_id bigint PRIMARY KEY, service_id bytea NOT NULL, task_id bigint NOT NULL,"
    "  engine_id bytea NOT NULL, attempt bigint NOT NULL, started_wall_ms bigint NOT NULL);"
    "CREATE TABLE pending ("
    "  service_id bytea NOT NULL, task_id bigint NOT NULL, execution_id bigint NOT NULL,"
    "  engine_id bytea NOT NULL, has_result bigint NOT NULL, status bigint NOT NULL,"
    "  output bytea, error bytea, run_ms bigint NOT NULL, expires_wall_ms bigint NOT NULL,"
    "  PRIMARY KEY (service_id, task_id, execution_id));"
    "CREATE TABLE config (key bytea PRIMARY KEY, value bytea NOT NULL);"
    "CREATE TABLE events ("
    "  id bigserial PRIMARY KEY, wall_ms bigint NOT NULL, kind bytea NOT NULL,"
    "  text bytea NOT NULL);"
    "CREATE TABLE meta (name bytea PRIMARY KEY, value bigint NOT NULL);"
    "CREATE TABLE engines ("
    "  engine_id bytea PRIMARY KEY, host bytea NOT NULL, session bytea NOT NULL,"
    "  slots bigint NOT NULL, login_wall_ms bigint NOT NULL, seen_wall_ms bigint NOT NULL,"
    "  online bigint NOT NULL);",
    // 1 -> 2: members of a shared store (store_pg_member.c).
    "CREATE SEQUENCE keel_member_seq;"
    "CREATE TABLE keel_members ("
    "  member_id bigint PRIMARY KEY, name bytea NOT NULL, endpoint bytea NOT NULL,"
    "  serving bigint NOT NULL, lease_until timestamptz NOT NULL, backend_pid bigint NOT NULL);",
    // 2 -> 3: a service's condition on engines (the SQLite store's 4 -> 5).
    "ALTER TABLE services ADD COLUMN condition_text bytea;",
    // 3 -> 4: every member serves its own work (store_pg_member.c); 0 = no
    // member yet (the next to join takes it).
    "ALTER TABLE services ADD COLUMN owner bigint NOT NULL DEFAULT 0;"
    "CREATE INDEX services_owner ON services (owner);"
    "ALTER TABLE engines ADD COLUMN owner bigint NOT NULL DEFAULT 0;"
    "ALTER TABLE pending ADD COLUMN owner bigint NOT NULL DEFAULT 0;",
    // 4 -> 5: each member's load, for lending idle engines (store_pg_member.c).
    // (In parentheses: clang's -Wstring-concatenation takes two literals
    // in a row for a missing comma.)
    ("ALTER TABLE keel_members ADD COLUMN queued bigint NOT NULL DEFAULT 0;"
     "ALTER TABLE keel_members ADD COLUMN idle_slots bigint NOT NULL DEFAULT 0;"),
};
#define KEEL_STORE_PG_SCHEMA ((int) (sizeof s_migrations / sizeof s_migrations[0]))

#define S_STR(x)  #x
#define S_XSTR(x) S_STR (x)

// ---------------------------------------------------------------- URIs

bool
keel_store_pg_uri (const char *uri)
{
    return uri
           && (strncmp (uri, "postgresql://", 13) == 0 || strncmp (uri, "postgres://", 11) == 0);
}

void
keel_store_pg_safe_uri (const char *uri, char *out, size_t size)
{
    if (size == 0)
        return;
    size_t n = 0;
    const char *p = uri;
    const char *authority = strstr (uri, "://");
    const char *at = NULL, *colon = NULL;
    if (authority) {
        authority += 3;
        size_t span = strcspn (authority, "/?");
        for (size_t i = 0; i < span; i++)
            if (authority[i] == '@')
                at = authority + i; // the last '@' ends the user info
        if (at)
            colon = memchr (authority, ':', (size_t) (at - authority));
    }
    while (*p && n + 1 < size) {
        if (colon && p == colon + 1) {
            n += (size_t) snprintf (out + n, size - n, "***");
            p = at;
            continue;
        }
        bool param = (p > uri && (p[-1] == '?' || p[-1] == '&'));
        if (param && strncmp (p, "password=", 9) == 0) {
            n += (size_t) snprintf (out + n, size - n, "password=***");
            p += strcspn (p, "&");
            continue;
        }
        out[n++] = *p++;
    }
    if (n >= size)
        n = size - 1;
    out[n] = 0;
}

// ---------------------------------------------------------------- helpers

int64_t
keel_store_pg_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
keel_store_pg_p_int (keel_store_pg_params_t *p, int64_t value)
{
    assert (p->n < KEEL_STORE_PG_PARAMS_MAX);
    p->ints[p->n] = htobe64 ((uint64_t) value);
    p->kinds[p->n] = 'i';
    p->values[p->n] = (const char *) &p->ints[p->n];
    p->lengths[p->n] = 8;
    p->formats[p->n] = 1;
    p->n++;
}

void
keel_store_pg_p_blob (keel_store_pg_params_t *p, const void *data, size_t len)
{
    assert (p->n < KEEL_STORE_PG_PARAMS_MAX);
    if (len > INT_MAX) {
        p->too_big = true;
        len = 0;
    }
    p->kinds[p->n] = 'b';
    p->values[p->n] = data ? (len ? data : "") : NULL;
    p->lengths[p->n] = (int) len;
    p->formats[p->n] = 1;
    p->n++;
}

void
keel_store_pg_p_str (keel_store_pg_params_t *p, const char *text)
{
    keel_store_pg_p_blob (p, text, text ? strlen (text) : 0);
}

int64_t
keel_store_pg_int (const PGresult *res, int row, int col)
{
    if (PQgetisnull (res, row, col) || PQgetlength (res, row, col) != 8)
        return 0;
    uint64_t be;
    memcpy (&be, PQgetvalue (res, row, col), 8);
    return (int64_t) be64toh (be);
}

const uint8_t *
keel_store_pg_blob (const PGresult *res, int row, int col, size_t *len_p)
{
    if (PQgetisnull (res, row, col)) {
        *len_p = 0;
        return NULL;
    }
    *len_p = (size_t) PQgetlength (res, row, col);
    return (const uint8_t *) PQgetvalue (res, row, col);
}

const char *
keel_store_pg_str (const PGresult *res, int row, int col)
{
    return PQgetisnull (res, row, col) ? NULL : PQgetvalue (res, row, col);
}

// The first line of a libpq or server message.
static void
s_first_line (const char *msg, char *out, size_t size)
{
    snprintf (out, size, "%s", msg && *msg ? msg : "(no message)");
    out[strcspn (out, "\n")] = 0;
}

keel_err
keel_store_pg_error (keel_store_pg_t *self, keel_error_t *err, const PGresult *res,
                     const char *what)
{
    char msg[200];
    const char *state = res ? PQresultErrorField (res, PG_DIAG_SQLSTATE) : NULL;
    s_first_line (res ? PQresultErrorMessage (res) : NULL, msg, sizeof msg);
    if (!res || !*PQresultErrorMessage (res))
        s_first_line (self->conn ? PQerrorMessage (self->conn) : "not connected", msg, sizeof msg);
    keel_err code = state && strcmp (state, "53100") == 0 ? KEEL_ERR_FULL : KEEL_ERR_STORE;
    keel_error_set (&self->last, code, "%s: %s: %s%s", self->safe, what, msg,
                    code == KEEL_ERR_FULL ? " (disk full)" : "");
    if (err)
        *err = self->last;
    return code;
}

// Drops the connection (a lost or unanswered server); the next write
// reconnects.
static void s_flights_lost (keel_store_pg_t *self);
static int s_drain (keel_store_pg_t *self, bool block, keel_error_t *err);
static keel_err s_drain_all (keel_store_pg_t *self, keel_error_t *err);

static void
s_disconnect (keel_store_pg_t *self)
{
    if (self->conn)
        PQfinish (self->conn);
    self->conn = NULL;
    self->in_txn = false;
    self->sent = 0;
    if (self->nflights)
        s_flights_lost (self);
}

// Flushes what libpq holds and waits until a result can be read without
// blocking, or the deadline passes. False (the connection dropped, err
// set) on a failure or timeout.
static bool
s_wait (keel_store_pg_t *self, int64_t deadline, keel_error_t *err)
{
    for (;;) {
        int flush = PQflush (self->conn);
        if (flush < 0)
            break;
        // Read only when what libpq holds is not enough: each read moves
        // the unread input to the front of its buffer, so reading before
        // every row of a big result would be quadratic.
        if (flush == 0 && !PQisBusy (self->conn))
            return true;
        if (!PQconsumeInput (self->conn))
            break;
        if (flush == 0 && !PQisBusy (self->conn))
            return true;
        int64_t left = deadline - keel_store_pg_now_ms ();
        if (left <= 0) {
            keel_error_set (&self->last, KEEL_ERR_STORE,
                            "%s: the server did not answer within %d ms; connection dropped",
                            self->safe, KEEL_STORE_PG_TIMEOUT_MS);
            if (err)
                *err = self->last;
            s_disconnect (self);
            return false;
        }
        struct pollfd pfd = { PQsocket (self->conn), POLLIN | (flush ? POLLOUT : 0), 0 };
        if (pfd.fd < 0 || (poll (&pfd, 1, (int) left) < 0 && errno != EINTR))
            break;
    }
    keel_store_pg_error (self, err, NULL, "connection lost");
    s_disconnect (self);
    return false;
}

PGresult *
keel_store_pg_next_result (keel_store_pg_t *self, bool *failed_p, keel_error_t *err)
{
    *failed_p = false;
    if (!self->conn || !s_wait (self, keel_store_pg_now_ms () + KEEL_STORE_PG_TIMEOUT_MS, err)) {
        *failed_p = true;
        return NULL;
    }
    return PQgetResult (self->conn);
}

void
keel_store_pg_drain (keel_store_pg_t *self)
{
    int64_t deadline = keel_store_pg_now_ms () + KEEL_STORE_PG_TIMEOUT_MS;
    for (int i = 0; self->conn && i < 1000000; i++) {
        if (!s_wait (self, deadline, NULL))
            return;
        PGresult *res = PQgetResult (self->conn);
        if (!res)
            return;
        PQclear (res);
    }
}

PGresult *
keel_store_pg_query (keel_store_pg_t *self, const char *sql, const keel_store_pg_params_t *params,
                     bool single_row, keel_error_t *err)
{
    if (keel_store_pg_ready (self, err))
        return NULL;
    int n = params ? params->n : 0;
    if (!PQsendQueryParams (self->conn, sql, n, NULL, params ? params->values : NULL,
                            params ? params->lengths : NULL, params ? params->formats : NULL, 1)) {
        keel_store_pg_error (self, err, NULL, "sending a query");
        s_disconnect (self);
        return NULL;
    }
    if (single_row) {
        PQsetSingleRowMode (self->conn);
        return NULL;
    }
    PGresult *last = NULL;
    for (int i = 0; i < 1000; i++) {
        bool failed;
        PGresult *res = keel_store_pg_next_result (self, &failed, err);
        if (failed) {
            PQclear (last);
            return NULL;
        }
        if (!res)
            break;
        PQclear (last);
        last = res;
    }
    ExecStatusType status = last ? PQresultStatus (last) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        keel_store_pg_error (self, err, last, sql);
        PQclear (last);
        return NULL;
    }
    return last;
}

// Reads every result of the query just sent (bounded). A result that is
// neither COMMAND_OK nor TUPLES_OK is the error, named by what; with out,
// the first value of the first row (text) is copied there ("" if none).
static keel_err
s_results (keel_store_pg_t *self, const char *what, char *out, size_t size, keel_error_t *err)
{
    if (out)
        out[0] = 0;
    keel_err rc = KEEL_OK;
    for (int i = 0; i < 1000; i++) {
        bool failed;
        PGresult *res = keel_store_pg_next_result (self, &failed, err);
        if (failed)
            return KEEL_ERR_STORE;
        if (!res)
            break;
        ExecStatusType status = PQresultStatus (res);
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
            rc = rc ? rc : keel_store_pg_error (self, err, res, what);
        else if (out && !out[0] && PQntuples (res) > 0 && !PQgetisnull (res, 0, 0))
            snprintf (out, size, "%s", PQgetvalue (res, 0, 0));
        PQclear (res);
    }
    return rc;
}

// Runs SQL text (several statements allowed) outside a turn.
static keel_err
s_exec (keel_store_pg_t *self, const char *sql, keel_error_t *err)
{
    if (!PQsendQuery (self->conn, sql))
        return keel_store_pg_error (self, err, NULL, "sending a query");
    return s_results (self, "schema", NULL, 0, err);
}

// One text value of a one-row query (NULL-safe), into out.
static keel_err
s_value (keel_store_pg_t *self, const char *sql, char *out, size_t size, keel_error_t *err)
{
    // Text results for these: send with the simple protocol.
    if (!PQsendQuery (self->conn, sql))
        return keel_store_pg_error (self, err, NULL, sql);
    return s_results (self, sql, out, size, err);
}

// ---------------------------------------------------------------- open

// Refuses anything but an empty schema or a Keel store this code knows,
// then creates or migrates the schema.
static keel_err
s_schema_locked (keel_store_pg_t *self, keel_error_t *err)
{
    char found[64], tables[32];
    keel_err rc =
        s_value (self, "SELECT to_regclass('keel_meta') IS NOT NULL", found, sizeof found, err);
    if (!rc)
        rc = s_value (self, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                      tables, sizeof tables, err);
    if (rc)
        return rc;
    long version = 0;
    if (strcmp (found, "t") == 0) {
        char format[64], schema[32];
        rc = s_value (self, "SELECT value FROM keel_meta WHERE name = 'format'", format,
                      sizeof format, err);
        if (!rc)
            rc = s_value (self, "SELECT value FROM keel_meta WHERE name = 'schema'", schema,
                          sizeof schema, err);
        if (rc)
            return rc;
        if (strcmp (format, KEEL_STORE_PG_FORMAT) != 0)
            return keel_error_set (err, KEEL_ERR_STORE,
                                   "%s: not a Keel store (keel_meta belongs to something else)",
                                   self->safe);
        version = strtol (schema, NULL, 10);
        if (version > KEEL_STORE_PG_SCHEMA)
            return keel_error_set (err, KEEL_ERR_STORE,
                                   "%s: store schema version %ld is newer than this broker"
                                   " supports (%d); upgrade keel-broker",
                                   self->safe, version, KEEL_STORE_PG_SCHEMA);
    }
    else if (strtol (tables, NULL, 10) > 0)
        return keel_error_set (err, KEEL_ERR_STORE,
                               "%s: not a Keel store (the schema holds %s other table(s); give"
                               " Keel a database or schema of its own)",
                               self->safe, tables);
    if (version == KEEL_STORE_PG_SCHEMA)
        return KEEL_OK;
    rc = s_exec (self, "BEGIN", err);
    for (long v = version; !rc && v < KEEL_STORE_PG_SCHEMA; v++)
        rc = s_exec (self, s_migrations[v], err);
    if (!rc) {
        char set[96];
        snprintf (set, sizeof set, "UPDATE keel_meta SET value = '%d' WHERE name = 'schema'",
                  KEEL_STORE_PG_SCHEMA);
        rc = s_exec (self, set, err);
    }
    if (!rc)
        return s_exec (self, "COMMIT", err);
    keel_error_t ignored;
    if (self->conn)
        s_exec (self, "ROLLBACK", &ignored);
    return rc;
}

// Brokers starting together on one database create or migrate its schema
// one at a time (a second advisory lock, held for the check).
static keel_err
s_schema (keel_store_pg_t *self, keel_error_t *err)
{
    keel_err rc = s_exec (self, "SELECT pg_advisory_lock(" S_XSTR (KEEL_STORE_PG_LOCK) ", 1)", err);
    if (rc)
        return rc;
    rc = s_schema_locked (self, err);
    keel_error_t ignored;
    if (self->conn)
        s_exec (self, "SELECT pg_advisory_unlock(" S_XSTR (KEEL_STORE_PG_LOCK) ", 1)", &ignored);
    return rc;
}

keel_err
keel_store_pg_value (keel_store_pg_t *self, const char *sql, char *out, size_t size,
                     keel_error_t *err)
{
    return s_value (self, sql, out, size, err);
}

void
keel_store_pg_disconnect (keel_store_pg_t *self)
{
    s_disconnect (self);
}

keel_err
keel_store_pg_prepare (keel_store_pg_t *self, const char *name, const char *sql, keel_error_t *err)
{
    if (!PQsendPrepare (self->conn, name, sql, 0, NULL))
        return keel_store_pg_error (self, err, NULL, "prepare");
    return s_results (self, sql, NULL, 0, err);
}

// Connects, locks, checks or creates the schema and prepares the writes.
// The first connection also describes the server.
static keel_err
s_connect (keel_store_pg_t *self, bool first, keel_error_t *err)
{
    char host[128] = "?", app[200];
    gethostname (host, sizeof host - 1);
    snprintf (app, sizeof app, "keel-broker[%ld]@%s", (long) getpid (), host);
    // Entries before dbname are defaults the URI may override.
    const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *values[] = { KEEL_STORE_PG_CONNECT, app, self->uri, NULL };
    self->retry_ms = keel_store_pg_now_ms ();
    self->conn = PQconnectdbParams (keys, values, 1);
    if (!self->conn)
        return keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", self->safe);
    if (PQstatus (self->conn) != CONNECTION_OK) {
        keel_err rc = keel_store_pg_error (self, err, NULL, "cannot connect");
        s_disconnect (self);
        return rc;
    }
    keel_err rc = PQsetnonblocking (self->conn, 1) == 0
                      ? KEEL_OK
                      : keel_store_pg_error (self, err, NULL, "nonblocking mode");
    // A member that reconnects takes its lock again before it writes: a
    // member that cannot, or whose row is gone, lost its work to another.
    if (!rc && !first && self->member_id) {
        keel_error_t why = { "" };
        if (!keel_store_pg_lock_now (self, &why)) {
            if (why.text[0])
                rc = KEEL_ERR_STORE;
            else {
                self->lost_lock = true;
                rc = keel_error_set (err, KEEL_ERR_STORE,
                                     "%s: member %llu is fenced: another member took its work over"
                                     " (this one lost its session while it was away)",
                                     self->safe, (unsigned long long) self->member_id);
            }
            if (err && why.text[0])
                *err = why;
        }
    }
    if (!rc && first)
        rc = s_schema (self, err);
    if (!rc)
        rc = keel_store_pg_prepare_writes (self, err);
    if (!rc && first) {
        char sync[32] = "?";
        rc = s_value (self, "SHOW synchronous_commit", sync, sizeof sync, err);
        const char *version = PQparameterStatus (self->conn, "server_version");
        snprintf (self->describe, sizeof self->describe,
                  "%s (PostgreSQL %s, synchronous_commit=%s%s; StoreSync does not apply)",
                  self->safe, version ? version : "?", sync,
                  strcmp (sync, "off") == 0 ? ": acknowledged work can be lost in a crash" : "");
    }
    if (rc) {
        if (err)
            self->last = *err;
        s_disconnect (self);
    }
    else {
        self->connected_at = keel_store_pg_now_ms ();
        self->reconnected = !first;
        self->renew_at = 0; // the member row names this session at the next renewal
    }
    return rc;
}

keel_store_pg_t *
keel_store_pg_open (const char *uri, keel_error_t *err)
{
    keel_store_pg_t *self = calloc (1, sizeof *self);
    if (self)
        self->uri = strdup (uri);
    if (!self || !self->uri) {
        free (self);
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    keel_store_pg_safe_uri (uri, self->safe, sizeof self->safe);
    self->txn = keel_changes_new ();
    self->replay = keel_changes_new ();
    if (!self->txn || !self->replay) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        keel_store_pg_destroy (&self);
        return NULL;
    }
    if (s_connect (self, true, err) != KEEL_OK || keel_store_pg_join (self, err) != KEEL_OK)
        keel_store_pg_destroy (&self);
    return self;
}

void
keel_store_pg_destroy (keel_store_pg_t **self_p)
{
    assert (self_p);
    keel_store_pg_t *self = *self_p;
    if (!self)
        return;
    if (self->nflights && self->conn)
        s_drain_all (self, NULL); // the last commits' answers, if they come in time
    // The lease ends now: the successor (or the next broker to open the
    // store) takes this member's work over once the session has ended.
    if (self->member_id && self->conn && !self->lost_lock && !self->in_txn && !self->left) {
        keel_store_pg_params_t p = { 0 };
        keel_store_pg_p_int (&p, (int64_t) self->member_id);
        keel_error_t ignored;
        PQclear (keel_store_pg_query (self,
                                      "UPDATE keel_members SET lease_until = now() - interval '1"
                                      " minute' WHERE member_id = $1::bigint",
                                      &p, false, &ignored));
    }
    self->closing = true; // what is not confirmed is not ours to finish
    s_disconnect (self);  // the advisory lock goes with the session
    keel_store_pg_batch_free (self);
    keel_changes_destroy (&self->txn);
    keel_changes_destroy (&self->replay);
    free (self->uri);
    free (self);
    *self_p = NULL;
}

const char *
keel_store_pg_describe (const keel_store_pg_t *self)
{
    return self->describe;
}

bool
keel_store_pg_in_transaction (const keel_store_pg_t *self)
{
    return self->in_txn;
}

const char *
keel_store_pg_last_error (const keel_store_pg_t *self)
{
    return self->last.text;
}

keel_err
keel_store_pg_ready (keel_store_pg_t *self, keel_error_t *err)
{
    if (self->in_txn)
        return keel_error_set (err, KEEL_ERR_STATE, "%s: inside a loop-turn transaction",
                               self->safe);
    if (self->nflights)
        s_drain_all (self, NULL); // their outcome is kept for keel_store_pg_collect
    if (self->conn && PQpipelineStatus (self->conn) != PQ_PIPELINE_OFF
        && !PQexitPipelineMode (self->conn))
        s_disconnect (self);
    if (self->conn)
        return KEEL_OK;
    if (self->lost_lock) {
        if (err)
            *err = self->last;
        return KEEL_ERR_STORE;
    }
    if (keel_store_pg_now_ms () - self->retry_ms < KEEL_STORE_PG_RETRY) {
        if (err)
            *err = self->last;
        return KEEL_ERR_STORE;
    }
    keel_error_t why = { "" };
    keel_err rc = s_connect (self, false, &why);
    if (rc && self->lost_lock) // fenced: nothing in memory may be written over the store
        self->last = why;
    if (err)
        *err = why;
    return rc;
}

// ---------------------------------------------------------------- the turn

// A write failed: poison the rest of the turn.
keel_err
keel_store_pg_poison (keel_store_pg_t *self, keel_err code)
{
    self->poison = code ? code : KEEL_ERR_STORE;
    self->poison_err = self->last;
    return self->poison;
}

// Joins the turn's pipeline, entering it (and sending BEGIN, then the
// records to replay) at the first write.
keel_err
keel_store_pg_begin (keel_store_pg_t *self)
{
    if (self->poison)
        return self->poison;
    if (self->in_txn)
        return KEEL_OK;
    if (self->role != KEEL_STORE_SERVING && !self->lost_lock) {
        keel_error_set (&self->last, KEEL_ERR_STORE,
                        "%s: member %llu has left the cluster: it writes nothing more", self->safe,
                        (unsigned long long) self->member_id);
        return keel_store_pg_poison (self, KEEL_ERR_STORE);
    }
    // Up to KEEL_STORE_PG_FLIGHTS commits in flight; the oldest answer is
    // read (waiting) before another starts.
    keel_err rc = KEEL_OK;
    while (rc == KEEL_OK && self->nflights >= KEEL_STORE_PG_FLIGHTS)
        if (s_drain (self, true, NULL) < 0)
            rc = KEEL_ERR_STORE;
    if (!self->conn || !self->nflights)
        rc = keel_store_pg_ready (self, NULL); // connects when needed
    if (rc)
        return keel_store_pg_poison (self, rc);
    if (!PQenterPipelineMode (self->conn)
        || !PQsendQueryParams (self->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) {
        rc = keel_store_pg_error (self, NULL, NULL, "BEGIN");
        s_disconnect (self);
        return keel_store_pg_poison (self, rc);
    }
    self->in_txn = true;
    self->sent = 1;
    self->renew_in_txn = false;
    if (keel_store_pg_now_ms () >= self->renew_at && keel_store_pg_send_renewal (self) != KEEL_OK) {
        s_disconnect (self);
        return keel_store_pg_poison (self, KEEL_ERR_STORE);
    }
    // Transactions that failed after keel_store_pg_commit_async returned
    // go first, in order: the broker counts them written.
    size_t n = keel_changes_size (self->replay);
    self->replaying = true;
    for (size_t i = 0; rc == KEEL_OK && i < n; i++)
        rc = keel_store_pg_apply (self, keel_changes_at (self->replay, i));
    self->replaying = false;
    return rc;
}

keel_err
keel_store_pg_send (keel_store_pg_t *self, const char *name, const char *what,
                    const keel_store_pg_params_t *p)
{
    keel_err rc = keel_store_pg_begin (self);
    if (rc)
        return rc;
    if (p->too_big) {
        keel_error_set (&self->last, KEEL_ERR_STORE, "%s: a value over 2 GiB cannot be stored",
                        self->safe);
        return keel_store_pg_poison (self, KEEL_ERR_STORE);
    }
    if (!PQsendQueryPrepared (self->conn, name, p->n, p->values, p->lengths, p->formats, 1)) {
        rc = keel_store_pg_error (self, NULL, NULL, what);
        s_disconnect (self);
        return keel_store_pg_poison (self, rc);
    }
    self->sent++;
    return KEEL_OK;
}

// The connection went with commits in flight: their outcome is unknown.
// Those the broker counts written (commit_async) are sent again, in order,
// before the next turn's records; the others (a rollback, a commit whose
// caller waits for it) are dropped.
static void
s_flights_lost (keel_store_pg_t *self)
{
    for (size_t i = 0; i < self->nflights; i++) {
        keel_store_pg_flight_t *f = &self->flights[(self->head + i) % KEEL_STORE_PG_FLIGHTS];
        size_t n = f->records && !self->closing ? keel_changes_size (f->records) : 0;
        for (size_t r = 0; r < n; r++)
            if (keel_changes_add (self->replay, keel_changes_at (f->records, r)) != KEEL_OK) {
                // Out of memory for the only copy of acknowledged work: the
                // broker must stop before it acknowledges more.
                self->lost_lock = true;
                keel_error_set (&self->last, KEEL_ERR_NOMEM,
                                "%s: out of memory keeping a commit to send again; restart the"
                                " broker",
                                self->safe);
                break;
            }
        keel_changes_destroy (&f->records);
    }
    self->head = 0;
    self->nflights = 0;
}

// Sends `last` (COMMIT or ROLLBACK) and a sync point and pushes everything
// to the server (bounded); the transaction is then in flight, with the
// open transaction's records when `keep` (a commit the broker counts
// written). If that fails, nothing is in flight: the caller reports the
// turn failed (the broker writes it again).
static keel_err
s_end (keel_store_pg_t *self, const char *last, bool commit, bool keep, keel_error_t *err)
{
    if (!PQsendQueryParams (self->conn, last, 0, NULL, NULL, NULL, NULL, 0)
        || !PQpipelineSync (self->conn)) {
        keel_err rc = keel_store_pg_error (self, err, NULL, last);
        s_disconnect (self);
        return rc;
    }
    self->in_txn = false;
    size_t sent = self->sent;
    self->sent = 0;
    int64_t deadline = keel_store_pg_now_ms () + KEEL_STORE_PG_TIMEOUT_MS;
    for (;;) {
        int flush = PQflush (self->conn);
        if (flush == 0)
            break;
        if (flush < 0 || !PQconsumeInput (self->conn) || keel_store_pg_now_ms () >= deadline) {
            keel_err rc = keel_store_pg_error (self, err, NULL, "sending the commit");
            s_disconnect (self);
            return rc;
        }
        struct pollfd pfd = { PQsocket (self->conn), POLLIN | POLLOUT, 0 };
        poll (&pfd, 1, 50);
    }
    keel_changes_t *records = NULL;
    if (keep) { // the open transaction's records go with the flight
        records = self->txn;
        self->txn = keel_changes_new ();
        if (!self->txn) {
            self->txn = records; // no memory: wait for this commit now
            records = NULL;
            keep = false;
        }
    }
    keel_store_pg_flight_t *f =
        &self->flights[(self->head + self->nflights) % KEEL_STORE_PG_FLIGHTS];
    *f = (keel_store_pg_flight_t) { .records = records,
                                    .turn = commit ? ++self->issued : 0,
                                    .left = 2 * (sent + 1) + 2,
                                    .members = self->renew_in_txn && commit };
    self->renew_in_txn = false;
    self->nflights++;
    if (!keep)
        keel_changes_clear (self->txn);
    return KEEL_OK;
}

// Reads the oldest flight's results (each statement a result and a NULL,
// the sync point one result). With block, waits for them (bounded);
// without, reads what has arrived. Returns 1 when it ended well (a commit
// is then confirmed), -1 when it failed (any error drops the connection:
// every flight's outcome is then unknown, see s_flights_lost), 0 when its
// answer is not all there yet.
static int
s_drain (keel_store_pg_t *self, bool block, keel_error_t *err)
{
    if (!self->nflights)
        return 1;
    keel_store_pg_flight_t *f = &self->flights[self->head];
    int64_t deadline = keel_store_pg_now_ms () + KEEL_STORE_PG_TIMEOUT_MS;
    bool synced = false;
    while (!synced && f->left > 0) {
        if (block) {
            if (!s_wait (self, deadline, err))
                return -1; // dropped
        }
        else {
            if (PQflush (self->conn) < 0 || !PQconsumeInput (self->conn)) {
                keel_store_pg_error (self, err, NULL, "connection lost");
                s_disconnect (self);
                return -1;
            }
            if (PQisBusy (self->conn))
                return 0;
        }
        PGresult *res = PQgetResult (self->conn);
        f->left--;
        if (!res)
            continue;
        ExecStatusType status = PQresultStatus (res);
        if (status == PGRES_PIPELINE_SYNC)
            synced = true;
        else if (status == PGRES_TUPLES_OK && f->members)
            keel_store_pg_read_members (self, res);
        else if (status == PGRES_FATAL_ERROR && !f->rc)
            f->rc = keel_store_pg_error (self, NULL, res, "commit");
        PQclear (res);
    }
    if (!synced || f->rc) {
        if (!f->rc)
            keel_store_pg_error (self, NULL, NULL, "pipeline did not end");
        if (err)
            *err = self->last;
        s_disconnect (self);
        return -1;
    }
    if (f->turn) {
        self->confirmed = f->turn;
        keel_changes_clear (self->replay); // it rode in this transaction or before
    }
    keel_changes_destroy (&f->records);
    self->head = (self->head + 1) % KEEL_STORE_PG_FLIGHTS;
    self->nflights--;
    if (!self->nflights && !self->in_txn && !PQexitPipelineMode (self->conn))
        s_disconnect (self);
    return 1;
}

// Reads every flight's answer (waiting, bounded).
static keel_err
s_drain_all (keel_store_pg_t *self, keel_error_t *err)
{
    while (self->nflights)
        if (s_drain (self, true, err) < 0)
            return KEEL_ERR_STORE;
    return KEEL_OK;
}

// Ends the turn's open transaction with COMMIT.
static keel_err
s_commit (keel_store_pg_t *self, bool keep, keel_error_t *err)
{
    if (!self->poison)
        keel_store_pg_batch_flush (self); // a failure poisons the turn
    if (self->poison) {
        keel_err rc = self->poison;
        if (err)
            *err = self->poison_err;
        keel_store_pg_rollback (self);
        return rc;
    }
    if (!self->in_txn)
        return KEEL_OK;
    keel_err rc = s_end (self, "COMMIT", true, keep, err);
    if (rc)
        keel_changes_clear (self->txn); // not sent: the broker writes it again
    return rc;
}

keel_err
keel_store_pg_commit_async (keel_store_pg_t *self, keel_error_t *err)
{
    return s_commit (self, true, err); // the caller counts it written: ours to finish
}

keel_err
keel_store_pg_commit (keel_store_pg_t *self, keel_error_t *err)
{
    // The caller learns the outcome (and writes a failed turn again, or
    // refuses its submissions): a lost answer is not replayed.
    uint64_t before = self->issued;
    keel_err rc = s_commit (self, false, err);
    if (rc == KEEL_OK && self->issued > before) {
        s_drain_all (self, err);
        if (self->confirmed < self->issued)
            rc = KEEL_ERR_STORE;
    }
    return rc;
}

keel_err
keel_store_pg_sync (keel_store_pg_t *self, keel_error_t *err)
{
    return self->conn && s_drain_all (self, err) != KEEL_OK ? KEEL_ERR_STORE : KEEL_OK;
}

uint64_t
keel_store_pg_collect (keel_store_pg_t *self, keel_error_t *err)
{
    while (self->nflights && self->conn && s_drain (self, false, err) == 1)
        ;
    return self->confirmed;
}

uint64_t
keel_store_pg_issued (const keel_store_pg_t *self)
{
    return self->issued;
}

int
keel_store_pg_answer_fd (const keel_store_pg_t *self)
{
    return self->nflights && self->conn ? PQsocket (self->conn) : -1;
}

void
keel_store_pg_rollback (keel_store_pg_t *self)
{
    keel_store_pg_batch_clear (self);
    if (self->renew_in_txn)
        self->renew_at = 0; // the renewal went with the rollback
    self->renew_in_txn = false;
    if (self->in_txn && self->conn && s_end (self, "ROLLBACK", false, false, NULL) == KEEL_OK)
        s_drain_all (self, NULL);
    self->in_txn = false;
    self->sent = 0;
    self->poison = KEEL_OK;
    keel_changes_clear (self->txn);
}
