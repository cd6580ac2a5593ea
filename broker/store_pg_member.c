/*  store_pg_member.c — membership of a shared PostgreSQL store (store.h
    "members", docs/operations.md §4).

    Every broker that opens the database is a member: a row of keel_members
    with a fresh member_id (from keel_member_seq: the member's lease epoch),
    its name, the endpoint clients reach it at, whether it serves, its
    lease (lease_until, in the database's clock) and the server pid of its
    session. One member serves: the one whose session holds the store's
    advisory lock (KEEL_STORE_PG_LOCK). That lock is the fence: a session
    ends (kill -9, a dropped connection, pg_terminate_backend) and its lock
    goes with it, after the session's last transaction ended; a member
    reconnecting must take the lock again before it writes, and a member
    that cannot (another took over meanwhile) is FENCED and writes nothing
    more. So whatever a standby loads after it took the lock holds every
    commit the previous member made, and nothing that member writes later
    can reach the store.

    The lease is what lets a standby take over from a member that is alive
    but not running (SIGSTOP, a frozen VM): its session stays, so does the
    lock. The serving member renews its row every lease/4 — the renewal
    rides in the turn's pipeline, or in a transaction of its own when the
    loop is idle, never waited for. A standby whose tick finds the lock held
    by a session whose member's lease has passed ends that session
    (pg_terminate_backend) and takes the lock at its next tick.

    A standby's tick runs its queries synchronously (bounded by
    KEEL_STORE_PG_TIMEOUT_MS): it serves nothing while it waits.
*/
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_pg_int.h"

#define S_STR(x)  #x
#define S_XSTR(x) S_STR (x)

#define S_LEASE_DEFAULT 5000 // ms, until keel_store_pg_member_setup says
#define S_LEASE_MIN     500
#define S_JOIN_WAIT_MS  5000 // for the lock of a session that is ending
#define S_LEAVE_WAIT_MS 3000 // for a standby to serve after this member left

// The live members other than this one, then this member's own row (the
// statement's snapshot does not see its own upsert). $1 member_id,
// $2 lease ms, $3 name, $4 endpoint, $5 serving (0/1).
static const char *s_renew_sql =
    "WITH gone AS (DELETE FROM keel_members"
    "   WHERE lease_until < now() - interval '1 minute' AND member_id <> $1::bigint),"
    " me AS (INSERT INTO keel_members"
    "   (member_id, name, endpoint, serving, lease_until, backend_pid)"
    "   VALUES ($1::bigint, $3::bytea, $4::bytea, $5::bigint,"
    "   now() + $2::bigint * interval '1 millisecond', pg_backend_pid())"
    "   ON CONFLICT (member_id) DO UPDATE SET endpoint = EXCLUDED.endpoint,"
    "   serving = EXCLUDED.serving, lease_until = EXCLUDED.lease_until,"
    "   backend_pid = EXCLUDED.backend_pid RETURNING member_id)"
    " SELECT member_id, name, endpoint, serving,"
    "   (extract(epoch FROM lease_until - now()) * 1000)::int8"
    " FROM keel_members WHERE lease_until > now() AND member_id <> $1::bigint"
    " ORDER BY serving DESC, member_id LIMIT " S_XSTR (KEEL_STORE_MEMBERS_MAX);

static const char *s_lock_sql =
    "SELECT pg_try_advisory_lock(" S_XSTR (KEEL_STORE_PG_LOCK) ")::int::int8";

// The session holding the store's lock, when its member's lease has
// passed: ended. Returns the member it was.
static const char *s_fence_sql =
    "SELECT m.member_id, m.name, pg_terminate_backend(l.pid)::int::int8"
    " FROM pg_locks l JOIN keel_members m ON m.backend_pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0"
    " AND l.objid = " S_XSTR (
        KEEL_STORE_PG_LOCK) " AND l.objsubid = 1"
                            " AND l.database = (SELECT oid FROM pg_database WHERE datname = "
                            "current_database())"
                            " AND m.lease_until < now() AND m.member_id <> $1::bigint";

static void
s_renew_params (keel_store_pg_t *self, keel_store_pg_params_t *p, bool serving)
{
    memset (p, 0, sizeof *p);
    keel_store_pg_p_int (p, (int64_t) self->member_id);
    keel_store_pg_p_int (p, self->lease_ms);
    keel_store_pg_p_str (p, self->member_name);
    keel_store_pg_p_str (p, self->endpoint);
    keel_store_pg_p_int (p, serving ? 1 : 0);
}

static void
s_copy (char *out, size_t size, const char *in)
{
    snprintf (out, size, "%s", in ? in : "");
}

void
keel_store_pg_read_members (keel_store_pg_t *self, const PGresult *res)
{
    size_t n = 0;
    keel_store_member_t *me = &self->members[n++];
    *me = (keel_store_member_t) { .member_id = self->member_id,
                                  .serving = self->role == KEEL_STORE_SERVING,
                                  .lease_left_ms = self->lease_ms };
    s_copy (me->name, sizeof me->name, self->member_name);
    s_copy (me->endpoint, sizeof me->endpoint, self->endpoint);
    int rows = PQntuples (res);
    for (int r = 0; r < rows && n < KEEL_STORE_MEMBERS_MAX && PQnfields (res) == 5; r++) {
        keel_store_member_t *m = &self->members[n++];
        m->member_id = (uint64_t) keel_store_pg_int (res, r, 0);
        s_copy (m->name, sizeof m->name, keel_store_pg_str (res, r, 1));
        s_copy (m->endpoint, sizeof m->endpoint, keel_store_pg_str (res, r, 2));
        m->serving = keel_store_pg_int (res, r, 3) != 0;
        m->lease_left_ms = keel_store_pg_int (res, r, 4);
    }
    // Serving first: this member goes after a serving other.
    if (self->role != KEEL_STORE_SERVING && n > 1 && self->members[1].serving) {
        keel_store_member_t tmp = self->members[0];
        self->members[0] = self->members[1];
        self->members[1] = tmp;
    }
    self->nmembers = n;
    self->members_gen++;
}

keel_err
keel_store_pg_send_renewal (keel_store_pg_t *self)
{
    keel_store_pg_params_t p;
    s_renew_params (self, &p, true);
    if (!PQsendQueryParams (self->conn, s_renew_sql, p.n, NULL, p.values, p.lengths, p.formats, 1))
        return keel_store_pg_error (self, NULL, NULL, "renewing the lease");
    self->sent++;
    self->renew_in_txn = true;
    self->renew_at = keel_store_pg_now_ms () + self->lease_ms / 4;
    return KEEL_OK;
}

// One synchronous query (a standby's tick, join, leave), bounded by
// KEEL_STORE_PG_TIMEOUT_MS; NULL after a failure, err set.
static PGresult *
s_query (keel_store_pg_t *self, const char *sql, const keel_store_pg_params_t *p, keel_error_t *err)
{
    PGresult *res = keel_store_pg_query (self, sql, p, false, err);
    return res;
}

static keel_err
s_renew_now (keel_store_pg_t *self, bool serving, keel_error_t *err)
{
    keel_store_pg_params_t p;
    s_renew_params (self, &p, serving);
    PGresult *res = s_query (self, s_renew_sql, &p, err);
    if (!res)
        return KEEL_ERR_STORE;
    keel_store_pg_read_members (self, res);
    PQclear (res);
    self->renew_at = keel_store_pg_now_ms () + self->lease_ms / 4;
    return KEEL_OK;
}

// Takes the lock if free: this member serves from now on.
static keel_err
s_try_serve (keel_store_pg_t *self, bool *got_p, keel_error_t *err)
{
    *got_p = false;
    PGresult *res = s_query (self, s_lock_sql, NULL, err);
    if (!res)
        return KEEL_ERR_STORE;
    *got_p = PQntuples (res) == 1 && keel_store_pg_int (res, 0, 0) == 1;
    PQclear (res);
    if (!*got_p)
        return KEEL_OK;
    keel_store_pg_params_t p = { 0 };
    keel_store_pg_p_int (&p, (int64_t) self->member_id);
    res = s_query (
        self, "UPDATE keel_members SET serving = 0 WHERE serving = 1 AND member_id <> $1::bigint",
        &p, err);
    keel_err rc = res ? KEEL_OK : KEEL_ERR_STORE;
    PQclear (res);
    self->role = KEEL_STORE_SERVING;
    if (rc == KEEL_OK)
        rc = s_renew_now (self, true, err);
    return rc;
}

bool
keel_store_pg_lock_now (keel_store_pg_t *self, keel_error_t *err)
{
    char got[16] = "";
    if (keel_store_pg_value (self, "SELECT pg_try_advisory_lock(" S_XSTR (KEEL_STORE_PG_LOCK) ")",
                             got, sizeof got, err)
        != KEEL_OK)
        return false;
    return strcmp (got, "t") == 0;
}

keel_err
keel_store_pg_join (keel_store_pg_t *self, keel_error_t *err)
{
    if (!self->lease_ms)
        self->lease_ms = S_LEASE_DEFAULT;
    char host[100] = "?";
    gethostname (host, sizeof host - 1);
    snprintf (self->member_name, sizeof self->member_name, "keel-broker[%ld]@%s", (long) getpid (),
              host);
    PGresult *res = s_query (self, "SELECT nextval('keel_member_seq')", NULL, err);
    if (!res)
        return KEEL_ERR_STORE;
    self->member_id = (uint64_t) keel_store_pg_int (res, 0, 0);
    PQclear (res);
    self->role = KEEL_STORE_STANDBY;
    self->lost_lock = false;
    keel_err rc = s_renew_now (self, false, err);
    // The lock held and no member serving: the session of a broker that
    // just closed the store (or died without a member row) is ending;
    // wait for it, briefly, rather than stand by behind nobody.
    int64_t deadline = keel_store_pg_now_ms () + S_JOIN_WAIT_MS;
    for (int i = 0; rc == KEEL_OK && i < 1000; i++) {
        bool got = false;
        rc = s_try_serve (self, &got, err);
        if (rc || got || keel_store_pg_now_ms () >= deadline)
            break;
        keel_store_pg_params_t p = { 0 };
        keel_store_pg_p_int (&p, (int64_t) self->member_id);
        PGresult *res = s_query (self,
                                 "SELECT count(*) FROM keel_members WHERE serving = 1"
                                 " AND lease_until > now() AND member_id <> $1::bigint",
                                 &p, err);
        if (!res)
            return KEEL_ERR_STORE;
        bool someone = keel_store_pg_int (res, 0, 0) > 0;
        PQclear (res);
        if (someone)
            break;
        struct timespec pause = { 0, 50 * 1000 * 1000 };
        nanosleep (&pause, NULL);
    }
    return rc;
}

// ---------------------------------------------------------------- store.h

void
keel_store_pg_member_setup (keel_store_pg_t *self, const char *endpoint, int64_t lease_ms)
{
    s_copy (self->endpoint, sizeof self->endpoint, endpoint);
    if (lease_ms > 0)
        self->lease_ms = lease_ms < S_LEASE_MIN ? S_LEASE_MIN : lease_ms;
    self->renew_at = 0; // tell the others at the next renewal
    if (self->nmembers)
        s_copy (self->members[0].endpoint, sizeof self->members[0].endpoint, self->endpoint);
}

keel_store_role_t
keel_store_pg_role (const keel_store_pg_t *self)
{
    return self->lost_lock ? KEEL_STORE_FENCED : self->role;
}

// After a pause: reads the answers in flight and asks the server
// something, so that a session ended meanwhile shows now, and reconnects
// at once (taking the lock again, or finding this member fenced).
static void
s_check_session (keel_store_pg_t *self)
{
    keel_error_t err;
    if (self->in_txn)
        return;
    PQclear (keel_store_pg_query (self, "SELECT 1", NULL, false, &err));
    if (!self->conn && !self->lost_lock) {
        self->retry_ms = 0;
        keel_store_pg_ready (self, &err);
    }
}

void
keel_store_pg_leave (keel_store_pg_t *self)
{
    if (self->left)
        return;
    keel_store_pg_rollback (self);
    keel_error_t err;
    keel_store_pg_sync (self, &err); // the commits in flight: answered, or lost
    if (self->conn && !self->lost_lock) {
        keel_store_pg_params_t p = { 0 };
        keel_store_pg_p_int (&p, (int64_t) self->member_id);
        PQclear (keel_store_pg_query (self, "DELETE FROM keel_members WHERE member_id = $1::bigint",
                                      &p, false, &err));
        // Hand the lock over and wait (bounded) until a standby says it
        // serves: the clients this member sends away must find it serving,
        // not standing by (they would come back here).
        bool was_serving = self->role == KEEL_STORE_SERVING;
        PQclear (keel_store_pg_query (self, "SELECT pg_advisory_unlock_all()", NULL, false, &err));
        int64_t deadline = keel_store_pg_now_ms () + S_LEAVE_WAIT_MS;
        for (int i = 0; was_serving && self->conn && i < 1000; i++) {
            PGresult *res = keel_store_pg_query (
                self, "SELECT count(*) FROM keel_members WHERE serving = 1 AND lease_until > now()",
                NULL, false, &err);
            bool served = res && keel_store_pg_int (res, 0, 0) > 0;
            PQclear (res);
            if (served || keel_store_pg_now_ms () >= deadline)
                break;
            struct timespec pause = { 0, 20 * 1000 * 1000 };
            nanosleep (&pause, NULL);
        }
    }
    self->closing = true; // nothing unconfirmed is sent again
    keel_store_pg_disconnect (self);
    self->closing = false;
    keel_changes_clear (self->replay);
    self->left = true;
    self->role = KEEL_STORE_STANDBY;
    self->retry_ms = INT64_MAX / 2; // never reconnect
}

keel_store_role_t
keel_store_pg_tick (keel_store_pg_t *self, bool paused)
{
    if (self->left)
        return self->role;
    int64_t now = keel_store_pg_now_ms ();
    if (self->lost_lock)
        return KEEL_STORE_FENCED;
    if (self->role == KEEL_STORE_SERVING && paused)
        s_check_session (self);
    if (self->lost_lock)
        return KEEL_STORE_FENCED;
    if (self->role == KEEL_STORE_SERVING) {
        if (self->nflights && self->conn)
            keel_store_pg_collect (self, NULL); // the last renewal's answer, if it came
        // A renewal of its own when no turn carried one: one more
        // transaction in flight, answered like a turn's.
        if (now >= self->renew_at && !self->in_txn && self->nflights < KEEL_STORE_PG_FLIGHTS
            && (self->conn || now - self->retry_ms >= 1000)) {
            if (keel_store_pg_begin (self) == KEEL_OK)
                keel_store_pg_commit_async (self, NULL);
            else
                keel_store_pg_rollback (self);
        }
        return keel_store_pg_role (self);
    }
    if (now < self->renew_at - self->lease_ms / 4 + 250)
        return self->role; // a standby asks every 250 ms
    // Back from a lost connection (the server restarted: every session
    // ended, the serving member's too), a standby leaves the serving member
    // half a lease to reconnect and take its lock again first.
    bool fresh = !self->conn || now - self->connected_at < self->lease_ms / 2;
    keel_error_t err = { "" };
    bool got = false;
    keel_err rc = s_renew_now (self, false, &err);
    if (rc == KEEL_OK && !(fresh && self->nmembers > 1 && self->members[0].serving))
        rc = s_try_serve (self, &got, &err);
    if (rc == KEEL_OK && !got && !fresh) {
        keel_store_pg_params_t p = { 0 };
        keel_store_pg_p_int (&p, (int64_t) self->member_id);
        PGresult *res = s_query (self, s_fence_sql, &p, &err);
        for (int r = 0; res && r < PQntuples (res); r++)
            KEEL_WARN ("store",
                       "member %lld (%s) has not renewed its lease: its session is ended;"
                       " member %llu takes over",
                       (long long) keel_store_pg_int (res, r, 0), keel_store_pg_str (res, r, 1),
                       (unsigned long long) self->member_id);
        PQclear (res);
    }
    self->renew_at = now + self->lease_ms / 4; // also after a failure: at most every 250 ms
    return keel_store_pg_role (self);
}

keel_err
keel_store_pg_rejoin (keel_store_pg_t *self, uint64_t *dropped_p, keel_error_t *err)
{
    // Nothing this member did not see confirmed is the store's: another
    // member serves what the store holds.
    keel_store_pg_rollback (self);
    uint64_t dropped = keel_changes_size (self->replay);
    for (size_t i = 0; i < self->nflights; i++) {
        keel_store_pg_flight_t *f = &self->flights[(self->head + i) % KEEL_STORE_PG_FLIGHTS];
        dropped += f->records ? keel_changes_size (f->records) : 0;
    }
    self->closing = true; // the flights are dropped, not kept for a replay
    keel_store_pg_disconnect (self);
    self->closing = false;
    keel_changes_clear (self->replay);
    if (dropped_p)
        *dropped_p = dropped;
    self->lost_lock = false;
    self->role = KEEL_STORE_STANDBY;
    self->nmembers = 0;
    self->retry_ms = 0;
    return keel_store_pg_join (self, err);
}

size_t
keel_store_pg_members (const keel_store_pg_t *self, const keel_store_member_t **members_p)
{
    *members_p = self->members;
    return self->nmembers;
}

uint64_t
keel_store_pg_members_gen (const keel_store_pg_t *self)
{
    return self->members_gen;
}

uint64_t
keel_store_pg_member_id (const keel_store_pg_t *self)
{
    return self->member_id;
}

bool
keel_store_pg_db_up (const keel_store_pg_t *self)
{
    return self->conn != NULL;
}
