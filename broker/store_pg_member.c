/*  store_pg_member.c — membership of a shared PostgreSQL store (store.h
    "members", docs/operations.md §4, docs/architecture.md "Members of a
    shared store").

    Every broker that opens the database is a member: a row of keel_members
    with a fresh member_id (from keel_member_seq: the member's lease epoch),
    its name, the endpoint clients reach it at, its lease (lease_until, in
    the database's clock) and the server pid of its session. Every member
    serves: it owns the services submitted to it (services.owner) and the
    engines logged in to it (engines.owner), and loads only those.

    A member's fence is an advisory lock of its own (KEEL_STORE_PG_MEMBER_LOCK,
    its member_id), held by its session from join to close. A session ends
    (kill -9, a dropped connection, pg_terminate_backend) and its lock goes
    with it, after the session's last transaction ended. A member that
    reconnects takes its lock again and checks that its row is still there
    before it writes; one that cannot is FENCED and writes nothing more.

    Taking over: a member whose lock is free (its session ended) or whose
    lease has passed (a paused broker: its session is ended for it with
    pg_terminate_backend) is dead. Its successor — the next live member by
    member_id, wrapping, which is the member its welcomes named to its
    clients — takes its lock, deletes its row and makes its services and
    engines its own in one transaction, then tells the broker to load them
    (KEEL_STORE_ADOPTED). Whoever notices a member dead for a whole lease
    more takes it over whether it is the successor or not. Holding the
    dead member's lock while its row goes is what makes the takeover and a
    late write of that member exclusive: the member's next session finds
    its row gone.

    A member's tick runs its queries synchronously (bounded by
    KEEL_STORE_PG_TIMEOUT_MS), outside the loop's turns; the lease renewal
    rides in the turn's pipeline, or in a transaction of its own when the
    loop is idle, never waited for.
*/
#include <assert.h>
#include <errno.h>
#include <signal.h>
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
#define S_TICK_MS       250   // a member looks for dead members this often
#define S_JOIN_WAIT_MS  15000 // for the session of a dead member to end
#define S_LEAVE_WAIT_MS 3000  // for the successor to take over after leave
#define S_GRACE_MS      2500  // after a reconnection, the others' time to come back

// Renews this member's row (with its load) and reads the members: this
// member first (the UPDATE's row: none when a taker deleted it), then the
// others, live or not, lease left in ms (negative: passed), and their
// load. $1 member_id, $2 lease ms, $3 endpoint, $4 queued, $5 idle slots.
static const char *s_renew_sql =
    "WITH me AS (UPDATE keel_members SET endpoint = $3::bytea,"
    "   lease_until = now() + $2::bigint * interval '1 millisecond', backend_pid = "
    "pg_backend_pid(),"
    "   queued = $4::bigint, idle_slots = $5::bigint"
    "   WHERE member_id = $1::bigint RETURNING member_id, name, endpoint)"
    " SELECT member_id, name, endpoint, 1::int8, $2::bigint, $4::bigint, $5::bigint FROM me"
    " UNION ALL SELECT member_id, name, endpoint, 0::int8,"
    "   (extract(epoch FROM lease_until - now()) * 1000)::int8, queued, idle_slots"
    " FROM keel_members WHERE member_id <> $1::bigint";

// Every other member: lease left (ms, negative once passed), server pid,
// and whether its session holds its lock.
static const char *s_watch_sql =
    "SELECT m.member_id, m.name, m.backend_pid,"
    "   (extract(epoch FROM m.lease_until - now()) * 1000)::int8,"
    "   EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
    "     AND l.classid::int8 = " S_XSTR (
        KEEL_STORE_PG_MEMBER_LOCK) " AND l.objid::int8 = m.member_id"
                                   "     AND l.objsubid = 2 AND l.database ="
                                   "     (SELECT oid FROM pg_database WHERE datname = "
                                   "current_database()))::int::int8"
                                   " FROM keel_members m WHERE m.member_id <> $1::bigint ORDER BY "
                                   "m.member_id";

static const char *s_lock_sql = "SELECT pg_try_advisory_lock(" S_XSTR (
    KEEL_STORE_PG_MEMBER_LOCK) ", ($1::bigint)::int4)::int::int8";
static const char *s_unlock_sql = "SELECT pg_advisory_unlock(" S_XSTR (
    KEEL_STORE_PG_MEMBER_LOCK) ", ($1::bigint)::int4)::int::int8";

static void
s_copy (char *out, size_t size, const char *in)
{
    snprintf (out, size, "%s", in ? in : "");
}

// Live members by member_id, starting after this one and wrapping: the
// first other is this member's successor (the one its clients turn to).
static int
s_by_id (const void *a, const void *b)
{
    uint64_t x = ((const keel_store_member_t *) a)->member_id;
    uint64_t y = ((const keel_store_member_t *) b)->member_id;
    return x < y ? -1 : x > y;
}

void
keel_store_pg_read_members (keel_store_pg_t *self, const PGresult *res)
{
    keel_store_member_t others[KEEL_STORE_MEMBERS_MAX];
    size_t n = 0;
    bool me = false;
    if (PQnfields (res) != 7)
        return;
    int rows = PQntuples (res);
    self->ndead = 0;
    for (int r = 0; r < rows; r++) {
        if (keel_store_pg_int (res, r, 3) == 1) {
            me = true;
            continue;
        }
        int64_t left = keel_store_pg_int (res, r, 4);
        if (left <= 0) {
            self->ndead++;
            continue;
        }
        if (n == KEEL_STORE_MEMBERS_MAX - 1)
            continue;
        keel_store_member_t *m = &others[n++];
        *m = (keel_store_member_t) { .member_id = (uint64_t) keel_store_pg_int (res, r, 0),
                                     .serving = true,
                                     .lease_left_ms = left,
                                     .queued = keel_store_pg_int (res, r, 5),
                                     .idle_slots = keel_store_pg_int (res, r, 6) };
        s_copy (m->name, sizeof m->name, keel_store_pg_str (res, r, 1));
        s_copy (m->endpoint, sizeof m->endpoint, keel_store_pg_str (res, r, 2));
    }
    if (!me && !self->left) {
        // A taker deleted this member's row: its work is another's now.
        self->lost_lock = true;
        keel_error_set (&self->last, KEEL_ERR_STORE,
                        "%s: member %llu is fenced: another member took its work over while it"
                        " was away",
                        self->safe, (unsigned long long) self->member_id);
    }
    qsort (others, n, sizeof others[0], s_by_id);
    size_t after = 0;
    while (after < n && others[after].member_id < self->member_id)
        after++;
    keel_store_member_t *out = self->members;
    out[0] = (keel_store_member_t) { .member_id = self->member_id,
                                     .serving = true,
                                     .lease_left_ms = self->lease_ms,
                                     .queued = self->load_queued,
                                     .idle_slots = self->load_idle };
    s_copy (out[0].name, sizeof out[0].name, self->member_name);
    s_copy (out[0].endpoint, sizeof out[0].endpoint, self->endpoint);
    size_t k = 1;
    for (size_t i = after; i < n; i++)
        out[k++] = others[i];
    for (size_t i = 0; i < after; i++)
        out[k++] = others[i];
    self->nmembers = k;
    self->members_gen++;
}

static void
s_renew_params (keel_store_pg_t *self, keel_store_pg_params_t *p)
{
    memset (p, 0, sizeof *p);
    keel_store_pg_p_int (p, (int64_t) self->member_id);
    keel_store_pg_p_int (p, self->lease_ms);
    keel_store_pg_p_str (p, self->endpoint);
    keel_store_pg_p_int (p, self->load_queued);
    keel_store_pg_p_int (p, self->load_idle);
}

keel_err
keel_store_pg_send_renewal (keel_store_pg_t *self)
{
    keel_store_pg_params_t p;
    s_renew_params (self, &p);
    if (!PQsendQueryParams (self->conn, s_renew_sql, p.n, NULL, p.values, p.lengths, p.formats, 1))
        return keel_store_pg_error (self, NULL, NULL, "renewing the lease");
    self->sent++;
    self->renew_in_txn = true;
    self->renew_at = keel_store_pg_now_ms () + self->lease_ms / 4;
    return KEEL_OK;
}

static keel_err
s_renew_now (keel_store_pg_t *self, keel_error_t *err)
{
    keel_store_pg_params_t p;
    s_renew_params (self, &p);
    PGresult *res = keel_store_pg_query (self, s_renew_sql, &p, false, err);
    if (!res)
        return KEEL_ERR_STORE;
    keel_store_pg_read_members (self, res);
    PQclear (res);
    self->renew_at = keel_store_pg_now_ms () + self->lease_ms / 4;
    return KEEL_OK;
}

// One bigint answer of a statement taking member as $1; -1 on failure.
static int64_t
s_ask (keel_store_pg_t *self, const char *sql, uint64_t member, keel_error_t *err)
{
    keel_store_pg_params_t p = { 0 };
    keel_store_pg_p_int (&p, (int64_t) member);
    PGresult *res = keel_store_pg_query (self, sql, &p, false, err);
    int64_t v = res && PQntuples (res) == 1 ? keel_store_pg_int (res, 0, 0) : -1;
    PQclear (res);
    return v;
}

bool
keel_store_pg_lock_now (keel_store_pg_t *self, keel_error_t *err)
{
    // The lock, then the row: a member whose row a taker deleted is fenced
    // even if its lock was free again.
    if (s_ask (self, s_lock_sql, self->member_id, err) != 1)
        return false;
    return s_ask (self, "SELECT count(*)::int8 FROM keel_members WHERE member_id = $1::bigint",
                  self->member_id, err)
           == 1;
}

// A member's name is keel-broker[PID]@HOST: true when that is a process of
// this host that is gone (a broker killed here whose server session has
// not ended yet: it is dead, whatever its lease says).
static bool
s_gone_here (const char *name)
{
    char host[100] = "";
    gethostname (host, sizeof host - 1);
    long pid = 0;
    char at[128] = "";
    if (sscanf (name, "keel-broker[%ld]@%127s", &pid, at) != 2 || pid <= 0)
        return false;
    return strcmp (at, host) == 0 && pid != (long) getpid () && kill ((pid_t) pid, 0) == -1
           && errno == ESRCH;
}

// Runs sql (with member as $1 and this member as $2, unless bare); false
// (err set) on failure.
static bool
s_step (keel_store_pg_t *self, const char *sql, bool bare, uint64_t member, keel_error_t *err)
{
    keel_store_pg_params_t p = { 0 };
    keel_store_pg_p_int (&p, (int64_t) member);
    keel_store_pg_p_int (&p, (int64_t) self->member_id);
    PGresult *res = keel_store_pg_query (self, sql, bare ? NULL : &p, false, err);
    PQclear (res);
    return res != NULL;
}

// The dead member's lock is taken: its row goes and its work becomes this
// member's, in one transaction.
static bool
s_adopt (keel_store_pg_t *self, uint64_t dead, const char *name, keel_error_t *err)
{
    bool ok =
        s_step (self, "BEGIN", true, 0, err)
        && s_step (self, "DELETE FROM keel_members WHERE member_id = $1::bigint AND $2::bigint > 0",
                   false, dead, err)
        && s_step (self, "UPDATE services SET owner = $2::bigint WHERE owner = $1::bigint", false,
                   dead, err)
        && s_step (self, "UPDATE engines SET owner = $2::bigint WHERE owner = $1::bigint", false,
                   dead, err)
        && s_step (self, "UPDATE pending SET owner = $2::bigint WHERE owner = $1::bigint", false,
                   dead, err)
        && s_step (self, "COMMIT", true, 0, err);
    if (!ok) {
        keel_error_t ignored;
        PQclear (keel_store_pg_query (self, "ROLLBACK", NULL, false, &ignored));
    }
    keel_error_t ignored;
    s_ask (self, s_unlock_sql, dead, &ignored);
    if (ok)
        KEEL_WARN ("store", "member %llu (%s) is gone: member %llu takes its work over",
                   (unsigned long long) dead, name, (unsigned long long) self->member_id);
    return ok;
}

typedef struct {
    uint64_t id;
    char name[128];
    int64_t pid, left_ms;
    bool held;
} s_watched_t;

// This member's successor's view: among the live members and this one,
// the first after dead by member_id, wrapping.
static bool
s_successor_of (const keel_store_pg_t *self, const s_watched_t *w, size_t n, uint64_t dead)
{
    uint64_t best = 0, lowest = self->member_id;
    for (size_t i = 0; i <= n; i++) {
        uint64_t id = i < n ? w[i].id : self->member_id;
        bool live = i == n || (w[i].held && w[i].left_ms > 0);
        if (!live)
            continue;
        if (id < lowest)
            lowest = id;
        if (id > dead && (best == 0 || id < best))
            best = id;
    }
    return (best ? best : lowest) == self->member_id;
}

// Looks for dead members and takes over (at most) one: true when this
// member has new work to load. With joining, waits (bounded) for the
// session of a dead member to end.
static bool
s_watch (keel_store_pg_t *self, bool joining, keel_error_t *err)
{
    s_watched_t w[64];
    size_t n = 0;
    keel_store_pg_params_t p = { 0 };
    keel_store_pg_p_int (&p, (int64_t) self->member_id);
    PGresult *res = keel_store_pg_query (self, s_watch_sql, &p, false, err);
    if (!res)
        return false;
    for (int r = 0; r < PQntuples (res) && n < 64; r++, n++) {
        w[n].id = (uint64_t) keel_store_pg_int (res, r, 0);
        s_copy (w[n].name, sizeof w[n].name, keel_store_pg_str (res, r, 1));
        w[n].pid = keel_store_pg_int (res, r, 2);
        w[n].left_ms = keel_store_pg_int (res, r, 3);
        w[n].held = keel_store_pg_int (res, r, 4) != 0;
    }
    PQclear (res);
    // Back from a lost connection (the server restarted or was out of
    // reach: every session may have ended, every lock gone, and every
    // lease passed meanwhile, since nobody could renew), a member leaves
    // the others a lease (at least S_GRACE_MS: they retry once a second)
    // to reconnect and renew before it counts anything as a death.
    int64_t grace = self->lease_ms > S_GRACE_MS ? self->lease_ms : S_GRACE_MS;
    bool fresh = self->reconnected && keel_store_pg_now_ms () - self->connected_at < grace;
    for (size_t i = 0; i < n; i++) {
        s_watched_t *m = &w[i];
        bool passed = m->left_ms <= 0, gone_here = s_gone_here (m->name);
        if (m->held && !passed && !gone_here)
            continue; // alive
        if (fresh && !gone_here)
            continue;
        if (!s_successor_of (self, w, n, m->id) && m->left_ms > -self->lease_ms)
            continue; // its successor's work, for a lease
        if (m->held && !gone_here) {
            // Alive but not renewing (paused): its session is ended for
            // it; its lock goes when its last transaction has.
            KEEL_WARN ("store",
                       "member %llu (%s) has not renewed its lease: its session is ended;"
                       " member %llu takes over",
                       (unsigned long long) m->id, m->name, (unsigned long long) self->member_id);
            keel_store_pg_params_t kp = { 0 };
            keel_store_pg_p_int (&kp, m->pid);
            PQclear (keel_store_pg_query (
                self, "SELECT pg_terminate_backend(($1::bigint)::int4)::int::int8", &kp, false,
                err));
        }
        // A broker of this host that is gone: its session still works
        // through what it sent; what it commits is kept. Wait for it.
        int64_t deadline = keel_store_pg_now_ms () + (joining ? S_JOIN_WAIT_MS : 0);
        if (m->held && !gone_here)
            deadline = keel_store_pg_now_ms () + 1000;
        for (int t = 0; t < 2000; t++) {
            if (s_ask (self, s_lock_sql, m->id, err) == 1)
                return s_adopt (self, m->id, m->name, err);
            if (keel_store_pg_now_ms () >= deadline)
                break;
            struct timespec pause = { 0, 10 * 1000 * 1000 };
            nanosleep (&pause, NULL);
        }
        return false; // its session has not ended yet: the next tick
    }
    return false;
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
    self->member_id = 0; // no lock to take again if the connection drops meanwhile
    // The next member_id whose execution-id prefix no member row holds
    // (store.h, KEEL_STORE_EXEC_PREFIXES): two members sharing one could
    // hand out the same execution id (each reserves its ids from where the
    // shared reservation stood when it started, so the ranges of members
    // that run side by side overlap; the prefix keeps them apart). Joins
    // racing each other take ids from one sequence, so they could share a
    // prefix only after 255 other joins in between.
    int64_t id = 0;
    for (int tries = 0; tries <= KEEL_STORE_EXEC_PREFIXES && id == 0; tries++) {
        int64_t next = s_ask (self, "SELECT nextval('keel_member_seq') + $1::bigint", 0, err);
        if (next <= 0)
            return KEEL_ERR_STORE;
        int64_t holders = s_ask (
            self,
            "SELECT count(*)::int8 FROM keel_members WHERE member_id % " S_XSTR (
                KEEL_STORE_EXEC_PREFIXES) " = $1::bigint % " S_XSTR (KEEL_STORE_EXEC_PREFIXES),
            (uint64_t) next, err);
        if (holders < 0)
            return KEEL_ERR_STORE;
        if (holders == 0)
            id = next;
    }
    if (id == 0)
        return keel_error_set (err, KEEL_ERR_STORE,
                               "%s: %d member rows hold every execution-id prefix: no room for "
                               "another member (see keel-admin status: members that are gone "
                               "leave once their successor adopts their work)",
                               self->safe, KEEL_STORE_EXEC_PREFIXES);
    keel_store_pg_params_t p = { 0 };
    keel_store_pg_p_int (&p, id);
    keel_store_pg_p_str (&p, self->member_name);
    keel_store_pg_p_str (&p, self->endpoint);
    keel_store_pg_p_int (&p, self->lease_ms);
    PGresult *res = keel_store_pg_query (
        self,
        "INSERT INTO keel_members (member_id, name, endpoint, serving, lease_until, backend_pid)"
        " VALUES ($1::bigint, $2::bytea, $3::bytea, 1, now() + $4::bigint * interval '1 "
        "millisecond',"
        " pg_backend_pid())",
        &p, false, err);
    if (!res)
        return KEEL_ERR_STORE;
    PQclear (res);
    if (s_ask (self, s_lock_sql, (uint64_t) id, err) != 1)
        return keel_error_set (err, KEEL_ERR_STORE, "%s: cannot take member %lld's lock",
                               self->safe, (long long) id);
    self->member_id = (uint64_t) id;
    self->role = KEEL_STORE_SERVING;
    self->lost_lock = false;
    self->reconnected = false;
    // The work of members that are gone (a broker restarted on this
    // store, one that closed it): this member's before it loads.
    for (int i = 0; i < 64 && s_watch (self, true, err); i++)
        ;
    // Work no member owns (a store from before members had work).
    if (!s_step (self, "UPDATE services SET owner = $2::bigint WHERE owner = $1::bigint", false, 0,
                 err)
        || !s_step (self, "UPDATE engines SET owner = $2::bigint WHERE owner = $1::bigint", false,
                    0, err)
        || !s_step (self, "UPDATE pending SET owner = $2::bigint WHERE owner = $1::bigint", false,
                    0, err))
        return KEEL_ERR_STORE;
    return s_renew_now (self, err);
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

int
keel_store_pg_member_alive (keel_store_pg_t *self, uint64_t member_id)
{
    if (self->in_txn || self->left)
        return -1;
    keel_error_t err;
    int64_t v =
        s_ask (self,
               "SELECT (m.lease_until > now() AND EXISTS (SELECT 1 FROM pg_locks l"
               " WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int8 = " S_XSTR (
                   KEEL_STORE_PG_MEMBER_LOCK) " AND l.objid::int8 = m.member_id"
                                              " AND l.objsubid = 2))::int::int8"
                                              " FROM keel_members m WHERE m.member_id = "
                                              "$1::bigint",
               member_id, &err);
    self->watch_at = 0; // and look for the dead at the next tick
    return v < 0 ? (self->conn ? 0 : -1) : (int) v;
}

void
keel_store_pg_member_load (keel_store_pg_t *self, int64_t queued, int64_t idle_slots)
{
    self->load_queued = queued;
    self->load_idle = idle_slots;
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
        // The lease ends now and the lock goes: the successor takes this
        // member's work over at its next tick. Wait (bounded) until it
        // has, so the clients sent there find their work there.
        keel_store_pg_params_t p = { 0 };
        keel_store_pg_p_int (&p, (int64_t) self->member_id);
        PQclear (keel_store_pg_query (self,
                                      "UPDATE keel_members SET lease_until = now() - interval '1"
                                      " minute' WHERE member_id = $1::bigint",
                                      &p, false, &err));
        PQclear (keel_store_pg_query (self, "SELECT pg_advisory_unlock_all()", NULL, false, &err));
        int64_t deadline = keel_store_pg_now_ms () + S_LEAVE_WAIT_MS;
        for (int i = 0; self->nmembers > 1 && self->conn && i < 1000; i++) {
            if (s_ask (self, "SELECT count(*)::int8 FROM keel_members WHERE member_id = $1::bigint",
                       self->member_id, &err)
                    != 1
                || keel_store_pg_now_ms () >= deadline)
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
    if (paused)
        s_check_session (self);
    if (self->lost_lock)
        return KEEL_STORE_FENCED;
    if (self->nflights && self->conn)
        keel_store_pg_collect (self, NULL); // the last renewal's answer, if it came
    // A renewal of its own when no turn carried one: one more transaction
    // in flight, answered like a turn's.
    if (now >= self->renew_at && !self->in_txn && self->nflights < KEEL_STORE_PG_FLIGHTS
        && (self->conn || now - self->retry_ms >= 1000)) {
        if (keel_store_pg_begin (self) == KEEL_OK)
            keel_store_pg_commit_async (self, NULL);
        else
            keel_store_pg_rollback (self);
    }
    // Members that are gone: looked for while there are others.
    if ((self->nmembers > 1 || self->ndead) && self->conn && !self->in_txn
        && now >= self->watch_at) {
        self->watch_at = now + S_TICK_MS;
        keel_error_t err = { "" };
        if (s_watch (self, false, &err)) {
            keel_error_t ignored;
            s_renew_now (self, &ignored);
            return KEEL_STORE_ADOPTED;
        }
    }
    return keel_store_pg_role (self);
}

keel_err
keel_store_pg_rejoin (keel_store_pg_t *self, uint64_t *dropped_p, keel_error_t *err)
{
    // Nothing this member did not see confirmed is the store's: another
    // member owns what it had.
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
    self->nmembers = 0;
    self->retry_ms = 0;
    self->member_id = 0; // a new member: no lock of the old one to take again
    keel_err rc = keel_store_pg_ready (self, err);
    if (!rc)
        rc = keel_store_pg_join (self, err);
    if (rc)
        self->lost_lock = true; // still FENCED: the broker tries again
    return rc;
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

int64_t
keel_store_pg_service_owner (keel_store_pg_t *self, const char *service_id)
{
    if (self->in_txn || self->left)
        return -1;
    keel_store_pg_params_t p = { 0 };
    keel_store_pg_p_str (&p, service_id);
    keel_error_t err;
    PGresult *res = keel_store_pg_query (
        self, "SELECT owner FROM services WHERE service_id = $1::bytea", &p, false, &err);
    if (!res)
        return -1;
    int64_t owner = PQntuples (res) == 1 ? keel_store_pg_int (res, 0, 0) : 0;
    PQclear (res);
    return owner;
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
