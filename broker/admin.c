/*  admin.c — keel-admin commands. See admin.h. */

#include "admin.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_why.h"
#include "config.h"
#include "json.h"

// Rows of `tasks SERVICE` by default, and at most (limit=N); a reply also
// stops at about KEEL_ADMIN_REPLY_BUDGET bytes of JSON and text (long error
// texts), well below the 64 MiB keel-admin accepts. has_more says when it cut.
#define KEEL_ADMIN_TASKS_MAX       10000
#define KEEL_ADMIN_TASKS_LIMIT_MAX 100000
#define KEEL_ADMIN_REPLY_BUDGET    (16u * 1024 * 1024)
// Bytes of a failed task's error shown in the table (--json has all of it).
#define KEEL_ADMIN_ERROR_CELL      60
#define KEEL_ADMIN_EVENTS          100

static const char *s_task_state[KEEL_TASK_NSTATES] = {
    "queued", "running", "done", "failed", "cancelled", "delivered_elsewhere"
};
static const char *s_service_state[] = { "open", "closed", "cancelled", "detached" };

// ---------------------------------------------------------------- text buffer

typedef struct {
    char *buf;
    size_t len, cap;
} s_text_t;

static void
s_tf (s_text_t *t, const char *fmt, ...)
{
    // Formats into the room left, and again only when it did not fit.
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (t->buf ? t->buf + t->len : NULL, t->cap - t->len, fmt, args);
    va_end (args);
    if (n < 0 || t->len + (size_t) n + 1 <= t->cap) {
        if (n < 0 && t->buf)
            t->buf[t->len] = 0; // nothing of a failed format is kept
        else if (n > 0)
            t->len += (size_t) n;
        return;
    }
    size_t cap = t->cap ? t->cap : 512;
    while (cap < t->len + (size_t) n + 1)
        cap *= 2;
    char *b = realloc (t->buf, cap);
    if (!b) {
        if (t->buf)
            t->buf[t->len] = 0; // drop what was cut short
        return;
    }
    t->buf = b;
    t->cap = cap;
    va_start (args, fmt);
    vsnprintf (t->buf + t->len, t->cap - t->len, fmt, args);
    va_end (args);
    t->len += (size_t) n;
}

static void
s_ok (keel_admin_reply_t *reply, keel_json_t *j, s_text_t *t)
{
    reply->ok = true;
    reply->json = keel_json_take (j);
    reply->text = t->buf ? t->buf : strdup ("");
    if (!reply->json) {
        reply->ok = false;
        reply->error = strdup ("out of memory building the reply");
    }
}

static void
s_fail (keel_admin_reply_t *reply, const char *fmt, ...)
{
    char text[300];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    reply->ok = false;
    reply->error = strdup (text);
    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_kv_bool (&j, "ok", false);
    keel_json_kv_str (&j, "error", text);
    keel_json_end_object (&j);
    reply->json = keel_json_take (&j);
    reply->text = strdup (text);
}

void
keel_admin_reply_clear (keel_admin_reply_t *reply)
{
    free (reply->error);
    free (reply->json);
    free (reply->text);
    memset (reply, 0, sizeof *reply);
}

// ---------------------------------------------------------------- status

static void
s_status (const keel_admin_view_t *v, keel_admin_reply_t *reply)
{
    uint64_t online = 0, offline = 0, slots = 0, busy = 0;
    zlistx_t *engines = keel_model_engines (v->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        if (e->state == KEEL_ENGINE_ONLINE) {
            online++;
            slots += e->slots;
            busy += zlistx_size (e->execs);
        }
        else
            offline++;
    }
    uint64_t open = 0, total = 0, tasks[KEEL_TASK_NSTATES] = { 0 };
    for (keel_service_rec_t *s = keel_model_service_first (v->model); s;
         s = keel_model_service_next (v->model)) {
        total++;
        if (s->state == KEEL_SERVICE_OPEN)
            open++;
        for (int i = 0; i < KEEL_TASK_NSTATES; i++)
            tasks[i] += s->count[i];
    }
    int64_t uptime = (zclock_mono () - v->started_mono) / 1000;

    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_kv_str (&j, "name", v->name);
    keel_json_kv_str (&j, "role", v->role);
    keel_json_kv_uint (&j, "epoch", v->epoch);
    keel_json_kv_int (&j, "uptime_s", uptime);
    keel_json_kv_str (&j, "store", keel_store_describe (v->store));
    keel_json_kv_uint (&j, "store_bytes", keel_store_size (v->store));
    keel_json_kv_uint (&j, "store_uncommitted", v->store_uncommitted);
    keel_json_kv_uint (&j, "store_unsynced", v->store_unsynced);
    keel_json_key (&j, "engines");
    keel_json_object (&j);
    keel_json_kv_uint (&j, "online", online);
    keel_json_kv_uint (&j, "offline", offline);
    keel_json_kv_uint (&j, "slots", slots);
    keel_json_kv_uint (&j, "busy", busy);
    keel_json_end_object (&j);
    keel_json_key (&j, "services");
    keel_json_object (&j);
    keel_json_kv_uint (&j, "open", open);
    keel_json_kv_uint (&j, "total", total);
    keel_json_end_object (&j);
    keel_json_key (&j, "tasks");
    keel_json_object (&j);
    for (int i = 0; i < KEEL_TASK_NSTATES; i++)
        keel_json_kv_uint (&j, s_task_state[i], tasks[i]);
    keel_json_end_object (&j);
    keel_json_kv_uint (&j, "pending_claims", v->pending_claims);
    const keel_admin_pair_t *p = v->pair;
    if (p) {
        keel_json_key (&j, "pair");
        keel_json_object (&j);
        keel_json_kv_str (&j, "peer", p->peer);
        keel_json_kv_str (&j, "peer_state", p->peer_state);
        keel_json_kv_int (&j, "links_up", p->links_up);
        keel_json_kv_int (&j, "links", p->links);
        keel_json_kv_uint (&j, "mirror_lag", p->mirror_lag);
        keel_json_kv_bool (&j, "synced", p->synced);
        keel_json_kv_str (&j, "pair_role", p->pair_role);
        keel_json_kv_uint (&j, "applied_seq", p->applied_seq);
        keel_json_kv_str (&j, "peer_admin", p->peer_admin);
        keel_json_key (&j, "counters");
        keel_json_object (&j);
#define KEEL_PAIR_COUNTER_JSON(name) keel_json_kv_uint (&j, #name, p->counters->name);
        KEEL_PAIR_COUNTERS (KEEL_PAIR_COUNTER_JSON)
#undef KEEL_PAIR_COUNTER_JSON
        keel_json_end_object (&j);
        keel_json_end_object (&j);
    }
    const keel_admin_cluster_t *c = v->cluster;
    if (c) {
        keel_json_key (&j, "cluster");
        keel_json_object (&j);
        keel_json_kv_str (&j, "state", c->state);
        keel_json_kv_uint (&j, "lease_epoch", c->lease_epoch);
        keel_json_kv_str (&j, "db", c->db);
        keel_json_key (&j, "members");
        keel_json_array (&j);
        for (size_t i = 0; i < c->nmembers; i++) {
            const keel_store_member_t *m = &c->members[i];
            keel_json_object (&j);
            keel_json_kv_uint (&j, "member_id", m->member_id);
            keel_json_kv_str (&j, "name", m->name);
            keel_json_kv_str (&j, "endpoint", m->endpoint);
            keel_json_kv_bool (&j, "serving", m->serving);
            keel_json_kv_int (&j, "lease_left_ms", m->lease_left_ms);
            keel_json_end_object (&j);
        }
        keel_json_end_array (&j);
        keel_json_key (&j, "counters");
        keel_json_object (&j);
        keel_json_kv_uint (&j, "takeovers", c->takeovers);
        keel_json_kv_uint (&j, "fenced", c->fenced);
        keel_json_kv_uint (&j, "fenced_writes", c->fenced_writes);
        keel_json_kv_uint (&j, "clients_refused", c->clients_refused);
        keel_json_kv_uint (&j, "clients_redirected", c->clients_redirected);
        keel_json_kv_uint (&j, "engines_lent", c->engines_lent);
        keel_json_end_object (&j);
        keel_json_end_object (&j);
    }
    keel_json_key (&j, "counters");
    keel_json_object (&j);
#define KEEL_COUNTER_JSON(name) keel_json_kv_uint (&j, #name, v->counters->name);
    KEEL_COUNTERS (KEEL_COUNTER_JSON)
#undef KEEL_COUNTER_JSON
    keel_json_end_object (&j);
    keel_json_end_object (&j);

    s_text_t t = { 0 };
    s_tf (&t,
          "# Broker\nname:%s\nrole:%s\nepoch:%llu\nuptime_s:%lld\nstore:%s\nstore_bytes:%llu\n"
          "store_uncommitted:%llu\nstore_unsynced:%llu\n",
          v->name, v->role, (unsigned long long) v->epoch, (long long) uptime,
          keel_store_describe (v->store), (unsigned long long) keel_store_size (v->store),
          (unsigned long long) v->store_uncommitted, (unsigned long long) v->store_unsynced);
    if (p) {
        s_tf (&t,
              "\n# Pair\npair_role:%s\npeer:%s\npeer_state:%s\nlinks_up:%d/%d\n"
              "mirror_lag:%llu\nsynced:%s\napplied_seq:%llu\npeer_admin:%s\n",
              p->pair_role, p->peer, p->peer_state, p->links_up, p->links,
              (unsigned long long) p->mirror_lag, p->synced ? "true" : "false",
              (unsigned long long) p->applied_seq, p->peer_admin);
#define KEEL_PAIR_COUNTER_TEXT(name)                                                               \
    s_tf (&t, "pair_%s:%llu\n", #name, (unsigned long long) p->counters->name);
        KEEL_PAIR_COUNTERS (KEEL_PAIR_COUNTER_TEXT)
#undef KEEL_PAIR_COUNTER_TEXT
    }
    if (c) {
        s_tf (&t, "\n# Cluster\nstate:%s\nlease_epoch:%llu\ndb:%s\nmembers:%zu\n", c->state,
              (unsigned long long) c->lease_epoch, c->db, c->nmembers);
        for (size_t i = 0; i < c->nmembers; i++)
            s_tf (&t, "member_%llu:%s %s%s lease_left_ms=%lld\n",
                  (unsigned long long) c->members[i].member_id, c->members[i].name,
                  c->members[i].endpoint[0] ? c->members[i].endpoint : "-",
                  c->members[i].serving ? " serving" : "", (long long) c->members[i].lease_left_ms);
        s_tf (&t,
              "takeovers:%llu\nfenced:%llu\nfenced_writes:%llu\nclients_refused:%llu\n"
              "clients_redirected:%llu\nengines_lent:%llu\n",
              (unsigned long long) c->takeovers, (unsigned long long) c->fenced,
              (unsigned long long) c->fenced_writes, (unsigned long long) c->clients_refused,
              (unsigned long long) c->clients_redirected, (unsigned long long) c->engines_lent);
    }
    s_tf (&t, "\n# Engines\nonline:%llu\noffline:%llu\nslots:%llu\nbusy:%llu\n",
          (unsigned long long) online, (unsigned long long) offline, (unsigned long long) slots,
          (unsigned long long) busy);
    s_tf (&t, "\n# Services\nopen:%llu\ntotal:%llu\n", (unsigned long long) open,
          (unsigned long long) total);
    s_tf (&t, "\n# Tasks\n");
    for (int i = 0; i < KEEL_TASK_NSTATES; i++)
        s_tf (&t, "%s:%llu\n", s_task_state[i], (unsigned long long) tasks[i]);
    s_tf (&t, "pending_claims:%zu\n\n# Counters\n", v->pending_claims);
#define KEEL_COUNTER_TEXT(name)                                                                    \
    s_tf (&t, "%s:%llu\n", #name, (unsigned long long) v->counters->name);
    KEEL_COUNTERS (KEEL_COUNTER_TEXT)
#undef KEEL_COUNTER_TEXT
    s_ok (reply, &j, &t);
}

// ---------------------------------------------------------------- engines

// Wall-clock ms as an ISO 8601 UTC time.
static void
s_iso_time (int64_t wall_ms, char *out, size_t size)
{
    time_t secs = (time_t) (wall_ms / 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    strftime (out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

// An engine's blacklistings (BlacklistAfter): "blacklisted":[{service,
// type, failures, remaining_ms, until}] in JSON, one indented line each
// under the engine's row in text.
static void
s_engine_blacklist (const keel_admin_view_t *v, keel_engine_t *e, keel_json_t *j, s_text_t *t)
{
    int64_t now = zclock_mono ();
    keel_json_key (j, "blacklisted");
    keel_json_array (j);
    for (keel_blacklist_t *b = zhashx_first (e->blacklist); b; b = zhashx_next (e->blacklist)) {
        if (!b->blacklisted || b->until_mono <= now)
            continue;
        const char *service_id = zhashx_cursor (e->blacklist);
        keel_service_rec_t *svc = keel_model_service (v->model, service_id);
        char until[40];
        s_iso_time (b->until_wall_ms, until, sizeof until);
        keel_json_object (j);
        keel_json_kv_str (j, "service", service_id);
        keel_json_kv_str (j, "type", svc ? svc->type : "");
        keel_json_kv_uint (j, "failures", b->blacklisted);
        keel_json_kv_uint (j, "remaining_ms", (uint64_t) (b->until_mono - now));
        keel_json_kv_str (j, "until", until);
        keel_json_end_object (j);
        s_tf (t,
              "  blacklisted for service %s (%s) until %s (%lld s left) after %u failures in a "
              "row\n",
              service_id, svc ? svc->type : "?", until,
              (long long) ((b->until_mono - now + 999) / 1000), b->blacklisted);
    }
    keel_json_end_array (j);
}

static void
s_engines (const keel_admin_view_t *v, keel_admin_reply_t *reply)
{
    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_key (&j, "engines");
    keel_json_array (&j);
    s_text_t t = { 0 };
    s_tf (&t, "%-36s  %-16s  %-8s  %5s  %7s  %9s  %s\n", "ENGINE", "HOST", "STATE", "SLOTS",
          "RUNNING", "DONE", "SERVICES");
    zlistx_t *engines = keel_model_engines (v->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        const char *state =
            e->state == KEEL_ENGINE_ONLINE ? (e->draining ? "draining" : "online") : "offline";
        keel_json_object (&j);
        keel_json_kv_str (&j, "id", e->id);
        keel_json_kv_str (&j, "host", e->host);
        keel_json_kv_str (&j, "state", state);
        keel_json_kv_bool (&j, "draining", e->draining);
        keel_json_kv_uint (&j, "slots", e->slots);
        keel_json_kv_uint (&j, "running", zlistx_size (e->execs));
        keel_json_kv_uint (&j, "tasks_done", e->tasks_done);
        keel_json_kv_str (&j, "session", e->session);
        keel_json_key (&j, "service_types");
        keel_json_array (&j);
        s_text_t types = { 0 };
        for (size_t i = 0; i < e->ntypes; i++) {
            keel_json_str (&j, e->types[i]);
            s_tf (&types, "%s%s", i ? "," : "", e->types[i]);
        }
        keel_json_end_array (&j);
        s_tf (&t, "%-36s  %-16.16s  %-8s  %5u  %7zu  %9llu  %s\n", e->id, e->host, state, e->slots,
              zlistx_size (e->execs), (unsigned long long) e->tasks_done,
              types.buf ? types.buf : "");
        free (types.buf);
        s_engine_blacklist (v, e, &j, &t);
        keel_json_end_object (&j);
    }
    keel_json_end_array (&j);
    keel_json_end_object (&j);
    s_ok (reply, &j, &t);
}

// ---------------------------------------------------------------- services

static void
s_services (const keel_admin_view_t *v, keel_admin_reply_t *reply)
{
    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_key (&j, "services");
    keel_json_array (&j);
    s_text_t t = { 0 };
    s_tf (&t, "%-36s  %-16s  %-9s  %4s  %8s  %8s  %8s  %8s  %8s  %s\n", "SERVICE", "TYPE", "STATE",
          "PRIO", "TOTAL", "QUEUED", "RUNNING", "DONE", "FAILED", "DRIVER");
    for (keel_service_rec_t *s = keel_model_service_first (v->model); s;
         s = keel_model_service_next (v->model)) {
        keel_json_object (&j);
        keel_json_kv_str (&j, "id", s->id);
        keel_json_kv_str (&j, "type", s->type);
        // No connected driver has it: submitted --detach, its driver
        // interrupted or killed; its results wait for keel-driver attach.
        keel_driver_rec_t *drv = keel_model_driver (v->model, s->driver_id);
        bool attached = drv && drv->connected;
        keel_json_kv_str (&j, "driver", s->driver_id);
        keel_json_kv_bool (&j, "driver_attached", attached);
        keel_json_kv_str (&j, "state", s_service_state[s->state]);
        keel_json_kv_int (&j, "priority", s->priority);
        keel_json_kv_uint (&j, "unacked_results", s->unacked);
        // Its condition on engines, and why its queued tasks wait (null
        // while an online engine may take them): keel-admin why SERVICE
        // says it per engine.
        keel_json_kv_str (&j, "condition", s->cond ? keel_cond_text (s->cond) : NULL);
        char why[KEEL_UNSERVED_TEXT] = "";
        bool waiting = (s->state == KEEL_SERVICE_OPEN || s->state == KEEL_SERVICE_CLOSED)
                       && s->count[KEEL_TASK_STATE_QUEUED] > 0
                       && !keel_model_service_served (v->model, s, why, sizeof why);
        keel_json_kv_str (&j, "waiting", waiting ? why : NULL);
        keel_json_key (&j, "tasks");
        keel_json_object (&j);
        keel_json_kv_uint (&j, "total", s->total);
        for (int i = 0; i < KEEL_TASK_NSTATES; i++)
            keel_json_kv_uint (&j, s_task_state[i], s->count[i]);
        keel_json_end_object (&j);
        keel_json_end_object (&j);
        s_tf (&t, "%-36s  %-16.16s  %-9s  %4d  %8llu  %8llu  %8llu  %8llu  %8llu  %s\n", s->id,
              s->type, s_service_state[s->state], s->priority, (unsigned long long) s->total,
              (unsigned long long) s->count[0], (unsigned long long) s->count[1],
              (unsigned long long) s->count[2], (unsigned long long) s->count[3],
              attached ? "attached" : "detached (no driver)");
        if (s->cond)
            s_tf (&t, "  condition: %s\n", keel_cond_text (s->cond));
        if (waiting)
            s_tf (&t, "  waiting: %s (keel-admin why %s)\n", why, s->id);
    }
    keel_json_end_array (&j);
    keel_json_end_object (&j);
    s_ok (reply, &j, &t);
}

// ---------------------------------------------------------------- tasks

typedef struct {
    int state; // keel_task_state_t, -1 = every state
    uint64_t limit;
    uint64_t offset;
} s_tasks_query_t;

// Reads the options after SERVICE: "state=S", "limit=N", "offset=N"
// (docs/protocol.md). Returns false after filling reply with the problem.
static bool
s_tasks_query (char **args, size_t nargs, s_tasks_query_t *q, keel_admin_reply_t *reply)
{
    *q = (s_tasks_query_t) { -1, KEEL_ADMIN_TASKS_MAX, 0 };
    for (size_t i = 0; i < nargs; i++) {
        const char *arg = args[i] ? args[i] : "";
        const char *eq = strchr (arg, '=');
        size_t klen = eq ? (size_t) (eq - arg) : 0;
        const char *value = eq ? eq + 1 : "";
        if (klen == 5 && strncmp (arg, "state", 5) == 0) {
            q->state = -1;
            for (int st = 0; st < KEEL_TASK_NSTATES; st++)
                if (strcmp (value, s_task_state[st]) == 0)
                    q->state = st;
            if (q->state < 0) {
                s_fail (reply,
                        "tasks: state: expected queued, running, done, failed, "
                        "cancelled or delivered_elsewhere, got '%.64s'",
                        value);
                return false;
            }
        }
        else if ((klen == 5 && strncmp (arg, "limit", 5) == 0)
                 || (klen == 6 && strncmp (arg, "offset", 6) == 0)) {
            bool limit = klen == 5;
            char *end = NULL;
            errno = 0;
            unsigned long long n = *value >= '0' && *value <= '9' ? strtoull (value, &end, 10) : 0;
            bool ok = end && !*end && errno == 0
                      && (limit ? n >= 1 && n <= KEEL_ADMIN_TASKS_LIMIT_MAX : n <= INT64_MAX);
            if (!ok) {
                if (limit)
                    s_fail (reply,
                            "tasks: limit: expected a number of rows from 1 to %d, "
                            "got '%.64s'",
                            KEEL_ADMIN_TASKS_LIMIT_MAX, value);
                else
                    s_fail (reply,
                            "tasks: offset: expected a number of rows (0 or more), "
                            "got '%.64s'",
                            value);
                return false;
            }
            if (limit)
                q->limit = n;
            else
                q->offset = n;
        }
        else {
            s_fail (reply,
                    "tasks: unknown option '%.64s' (options: state=STATE, limit=N, "
                    "offset=N)",
                    arg);
            return false;
        }
    }
    return true;
}

// Appends text to t for a table cell: control characters become spaces and
// at most max bytes are kept (cut at a UTF-8 boundary, "..." marks the cut).
static void
s_cell (s_text_t *t, const char *text, size_t max)
{
    size_t len = strlen (text), keep = len;
    if (len > max) {
        keep = max - 3;
        while (keep > 0 && ((unsigned char) text[keep] & 0xC0) == 0x80)
            keep--;
    }
    char *copy = strndup (text, keep);
    if (!copy)
        return;
    for (char *p = copy; *p; p++)
        if ((unsigned char) *p < 0x20 || *p == 0x7f)
            *p = ' ';
    s_tf (t, "%s%s", copy, keep < len ? "..." : "");
    free (copy);
}

// Adds id to the comma-separated list unless it is there already.
static void
s_engine_add (s_text_t *list, keel_json_t *j, const char *id)
{
    if (!id || !*id)
        return;
    for (const char *p = list->buf; p && (p = strstr (p, id)); p += strlen (id)) {
        bool starts = p == list->buf || p[-1] == ',';
        bool ends = p[strlen (id)] == ',' || p[strlen (id)] == '\0';
        if (starts && ends)
            return;
    }
    s_tf (list, "%s%s", list->len ? "," : "", id);
    keel_json_str (j, id);
}

// One task: a JSON object (every field) and a table row.
static void
s_task_row (keel_json_t *j, s_text_t *t, uint64_t id, const keel_task_t *task, int64_t now)
{
    const keel_task_result_t *r = task->result;
    keel_json_object (j);
    keel_json_kv_uint (j, "task", id);
    keel_json_kv_str (j, "state", s_task_state[task->state]);
    keel_json_kv_uint (j, "attempts", keel_task_attempts (task));
    keel_json_kv_uint (j, "failures", task->attempts);
    keel_json_kv_uint (j, "input_bytes", task->input_len);
    keel_json_kv_uint (j, "checkpoint_bytes", task->checkpoint_len);
    if (task->checkpoint)
        keel_json_kv_int (j, "checkpoint_age_s", (now - task->checkpoint_wall_ms) / 1000);
    keel_json_kv_bool (j, "result_acked", task->acked);
    if (r && r->error)
        keel_json_kv_str (j, "error", r->error);
    // The engines that ran it: those running it now, then the one whose
    // result counted (earlier failed executions are not kept).
    keel_json_key (j, "engines");
    keel_json_array (j);
    s_text_t engines = { 0 };
    for (keel_exec_t *x = task->execs; x; x = x->next_of_task)
        s_engine_add (&engines, j, x->engine ? x->engine->id : NULL);
    if (r)
        s_engine_add (&engines, j, r->engine_id);
    keel_json_end_array (j);
    keel_json_key (j, "executions");
    keel_json_array (j);
    bool lost = false;
    for (keel_exec_t *x = task->execs; x; x = x->next_of_task) {
        keel_json_object (j);
        keel_json_kv_uint (j, "id", x->id);
        keel_json_kv_str (j, "engine", x->engine ? x->engine->id : NULL);
        keel_json_kv_uint (j, "attempt", x->attempt);
        keel_json_kv_int (j, "started_ms", x->started_wall_ms);
        keel_json_end_object (j);
        lost |= !x->engine;
    }
    keel_json_end_array (j);
    if (r) {
        const char *status = r->status == KEEL__TASK_STATUS__STATUS_OK          ? "ok"
                             : r->status == KEEL__TASK_STATUS__STATUS_FAILED    ? "failed"
                             : r->status == KEEL__TASK_STATUS__STATUS_CANCELLED ? "cancelled"
                                                                                : "unknown";
        keel_json_key (j, "result");
        keel_json_object (j);
        keel_json_kv_str (j, "status", status);
        keel_json_kv_str (j, "engine", r->engine_id[0] ? r->engine_id : NULL);
        keel_json_kv_uint (j, "execution", r->execution_id);
        keel_json_kv_uint (j, "output_bytes", r->output_len);
        keel_json_kv_uint (j, "run_ms", r->run_ms);
        keel_json_kv_uint (j, "queued_ms", r->queued_ms);
        if (r->error)
            keel_json_kv_str (j, "error", r->error);
        keel_json_end_object (j);
    }
    keel_json_end_object (j);

    if (lost)
        s_tf (&engines, "%s(lost)", engines.len ? "," : "");
    char age[32] = "-";
    if (task->checkpoint)
        snprintf (age, sizeof age, "%lld", (long long) ((now - task->checkpoint_wall_ms) / 1000));
    s_tf (t, "%8llu  %-19s  %8u  %10u  %10s  %-36s  ", (unsigned long long) id,
          s_task_state[task->state], keel_task_attempts (task), task->checkpoint_len, age,
          engines.buf ? engines.buf : "-");
    s_cell (t, r && r->error ? r->error : "", KEEL_ADMIN_ERROR_CELL);
    s_tf (t, "\n");
    free (engines.buf);
}

static void
s_tasks (const keel_admin_view_t *v, char **args, size_t nargs, keel_admin_reply_t *reply)
{
    keel_service_rec_t *s = keel_model_service (v->model, args[0]);
    if (!s) {
        s_fail (reply, "no service '%s' (keel-admin services lists them)", args[0]);
        return;
    }
    s_tasks_query_t q;
    if (!s_tasks_query (args + 1, nargs - 1, &q, reply))
        return;
    uint64_t total = q.state < 0 ? s->total : s->count[q.state];
    int64_t now = zclock_time ();
    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_kv_str (&j, "service", s->id);
    keel_json_kv_str (&j, "type", s->type);
    keel_json_kv_str (&j, "state", q.state < 0 ? NULL : s_task_state[q.state]);
    keel_json_key (&j, "tasks");
    keel_json_array (&j);
    s_text_t t = { 0 };
    s_tf (&t, "%8s  %-19s  %8s  %10s  %10s  %-36s  %s\n", "TASK", "STATE", "ATTEMPTS", "CKPT_BYTES",
          "CKPT_AGE_S", "ENGINES", "ERROR");
    // Rows in task id order; offset counts the rows that match the filter.
    // The reply stops early rather than outgrow what keel-admin accepts.
    uint64_t matched = 0, listed = 0;
    for (uint64_t id = keel_service_task_next (s, 0); id < s->ntasks && listed < q.limit;
         id = keel_service_task_next (s, id + 1)) {
        const keel_task_t *task = keel_service_task (s, id);
        if (!task || (q.state >= 0 && task->state != q.state))
            continue;
        if (matched++ < q.offset)
            continue;
        if (j.len + t.len > KEEL_ADMIN_REPLY_BUDGET)
            break;
        s_task_row (&j, &t, id, task, now);
        listed++;
    }
    keel_json_end_array (&j);
    uint64_t shown_to = q.offset + listed;
    bool has_more = shown_to < total;
    keel_json_kv_uint (&j, "total", total);
    keel_json_kv_uint (&j, "limit", q.limit);
    keel_json_kv_uint (&j, "offset", q.offset);
    keel_json_kv_uint (&j, "returned", listed);
    keel_json_kv_bool (&j, "has_more", has_more);
    if (has_more)
        keel_json_kv_uint (&j, "next_offset", shown_to);
    keel_json_kv_bool (&j, "truncated", has_more);
    keel_json_end_object (&j);
    if (has_more)
        s_tf (&t, "(%llu more rows: use --offset %llu)\n", (unsigned long long) (total - shown_to),
              (unsigned long long) shown_to);
    else if (listed == 0)
        s_tf (&t, "(no tasks%s%s%s)\n", q.state >= 0 ? " in state " : "",
              q.state >= 0 ? s_task_state[q.state] : "", q.offset ? " at this offset" : "");
    s_ok (reply, &j, &t);
}

// ---------------------------------------------------------------- config

static void
s_config_one (keel_json_t *j, s_text_t *t, keel_settings_t *settings, const keel_setting_def_t *d)
{
    keel_json_object (j);
    keel_json_kv_str (j, "key", d->name);
    keel_json_kv_str (j, "value", keel_settings_str (settings, d->name));
    keel_json_kv_str (j, "origin", keel_settings_origin (settings, d->name));
    keel_json_kv_str (j, "unit", d->unit); // of a bare number; null when none
    keel_json_kv_bool (j, "runtime", d->runtime);
    keel_json_end_object (j);
    s_tf (t, "%s:%s\n", d->name, keel_settings_str (settings, d->name));
}

static void
s_config_get (const keel_admin_view_t *v, char **args, size_t nargs, keel_admin_reply_t *reply)
{
    keel_json_t j;
    keel_json_init (&j);
    s_text_t t = { 0 };
    if (nargs >= 2) {
        const keel_setting_def_t *d = keel_settings_def (v->settings, args[1]);
        if (!d || strchr (d->name, '*')) {
            keel_json_reset (&j);
            s_fail (reply, "unknown key '%s' (keel-admin config get lists the keys)", args[1]);
            return;
        }
        s_config_one (&j, &t, v->settings, d);
        s_ok (reply, &j, &t);
        return;
    }
    // No key: every key, for people browsing.
    keel_json_object (&j);
    keel_json_key (&j, "config");
    keel_json_array (&j);
    for (const keel_setting_def_t *d = keel_broker_settings; d->name; d++)
        s_config_one (&j, &t, v->settings, d);
    keel_json_end_array (&j);
    keel_json_end_object (&j);
    s_ok (reply, &j, &t);
}

static void
s_done (keel_admin_reply_t *reply, const char *what, const char *text)
{
    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_kv_bool (&j, "ok", true);
    keel_json_kv_str (&j, "done", what);
    keel_json_end_object (&j);
    s_text_t t = { 0 };
    s_tf (&t, "%s\n", text);
    s_ok (reply, &j, &t);
}

// ---------------------------------------------------------------- events

typedef struct {
    keel_json_t *j;
    s_text_t *t;
} s_events_ctx_t;

static void
s_event (int64_t wall_ms, const char *kind, const char *text, void *arg)
{
    s_events_ctx_t *c = arg;
    char when[40];
    s_iso_time (wall_ms, when, sizeof when);
    keel_json_object (c->j);
    keel_json_kv_str (c->j, "time", when);
    keel_json_kv_int (c->j, "time_ms", wall_ms);
    keel_json_kv_str (c->j, "kind", kind);
    keel_json_kv_str (c->j, "text", text);
    keel_json_end_object (c->j);
    s_tf (c->t, "%s  %-18s  %s\n", when, kind, text);
}

static void
s_events (const keel_admin_view_t *v, keel_admin_reply_t *reply)
{
    keel_json_t j;
    keel_json_init (&j);
    s_text_t t = { 0 };
    keel_json_object (&j);
    keel_json_key (&j, "events");
    keel_json_array (&j);
    s_events_ctx_t c = { &j, &t };
    keel_store_events (v->store, KEEL_ADMIN_EVENTS, s_event, &c);
    keel_json_end_array (&j);
    keel_json_end_object (&j);
    if (!t.buf)
        s_tf (&t, "(no events%s)\n",
              keel_store_durable (v->store) ? "" : ": Store=memory keeps none");
    s_ok (reply, &j, &t);
}

// ---------------------------------------------------------------- dispatch

static bool
s_args (keel_admin_reply_t *reply, const char *command, size_t nargs, size_t want,
        const char *usage)
{
    if (nargs == want)
        return true;
    s_fail (reply, "%s: usage: %s", command, usage);
    return false;
}

static void
s_unblacklisted (keel_admin_reply_t *reply, size_t cleared)
{
    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_kv_str (&j, "unblacklist", "ok");
    keel_json_kv_uint (&j, "cleared", cleared);
    keel_json_end_object (&j);
    s_text_t t = { 0 };
    if (cleared)
        s_tf (&t, "blacklistings ended: %zu (the engine gets those tasks again)\n", cleared);
    else
        s_tf (&t, "the engine was not blacklisted there: nothing to end\n");
    s_ok (reply, &j, &t);
}

void
keel_admin_handle (const keel_admin_view_t *v, const char *command, char **args, size_t nargs,
                   keel_admin_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    keel_error_t err = { "" };
    if (!command)
        s_fail (reply, "no command");
    else if (strcmp (command, "status") == 0)
        s_status (v, reply);
    else if (strcmp (command, "engines") == 0)
        s_engines (v, reply);
    else if (strcmp (command, "services") == 0)
        s_services (v, reply);
    else if (strcmp (command, "why") == 0) {
        keel_service_rec_t *s = nargs == 1 ? keel_model_service (v->model, args[0]) : NULL;
        if (nargs != 1)
            s_fail (reply, "why: usage: why SERVICE");
        else if (!s)
            s_fail (reply, "no service '%s' (keel-admin services lists them)", args[0]);
        else
            keel_admin_why (v, s, reply);
    }
    else if (strcmp (command, "tasks") == 0) {
        if (nargs >= 1 && nargs <= 4)
            s_tasks (v, args, nargs, reply);
        else
            s_fail (reply, "tasks: usage: tasks SERVICE [state=STATE] [limit=N] [offset=N]");
    }
    else if (strcmp (command, "cancel") == 0) {
        if (s_args (reply, command, nargs, 1, "cancel SERVICE")) {
            if (v->cancel (v->broker, args[0], &err) == KEEL_OK)
                s_done (reply, "cancel", "service cancelled");
            else
                s_fail (reply, "cancel: %s", err.text);
        }
    }
    else if (strcmp (command, "config") == 0) {
        if (nargs >= 1 && strcmp (args[0], "get") == 0 && nargs <= 2)
            s_config_get (v, args, nargs, reply);
        else if (nargs == 3 && strcmp (args[0], "set") == 0) {
            if (v->config_set (v->broker, args[1], args[2], &err) == KEEL_OK)
                s_done (reply, "config set", "ok");
            else
                s_fail (reply, "config set: %s", err.text);
        }
        else
            s_fail (reply, "config: usage: config get [KEY] | config set KEY VALUE");
    }
    else if (strcmp (command, "events") == 0)
        s_events (v, reply);
    else if (strcmp (command, "maintenance") == 0) {
        keel_store_maintenance_t report = { 0 };
        if (v->maintenance (v->broker, &report, &err) != KEEL_OK) {
            s_fail (reply, "maintenance: %s", err.text);
            return;
        }
        keel_json_t j;
        keel_json_init (&j);
        keel_json_object (&j);
        keel_json_kv_uint (&j, "services_purged", report.services_purged);
        keel_json_kv_uint (&j, "bytes_before", report.bytes_before);
        keel_json_kv_uint (&j, "bytes_after", report.bytes_after);
        keel_json_end_object (&j);
        s_text_t t = { 0 };
        s_tf (&t, "services_purged:%llu\nbytes_before:%llu\nbytes_after:%llu\n",
              (unsigned long long) report.services_purged, (unsigned long long) report.bytes_before,
              (unsigned long long) report.bytes_after);
        s_ok (reply, &j, &t);
    }
    else if (strcmp (command, "drain") == 0) {
        if (s_args (reply, command, nargs, 1, "drain ENGINE")) {
            if (v->drain (v->broker, args[0], &err) == KEEL_OK)
                s_done (reply, "drain", "engine draining: no new tasks, running ones finish");
            else
                s_fail (reply, "drain: %s", err.text);
        }
    }
    else if (strcmp (command, "unblacklist") == 0) {
        if (nargs < 1 || nargs > 2)
            s_fail (reply, "unblacklist: usage: unblacklist ENGINE [SERVICE]");
        else {
            size_t cleared = 0;
            if (v->unblacklist (v->broker, args[0], nargs == 2 ? args[1] : NULL, &cleared, &err)
                != KEEL_OK)
                s_fail (reply, "unblacklist: %s", err.text);
            else
                s_unblacklisted (reply, cleared);
        }
    }
    else if (strcmp (command, "takeover") == 0) {
        if (s_args (reply, command, nargs, 0, "takeover")) {
            if (v->takeover (v->broker, &err) == KEEL_OK)
                s_done (reply, "takeover",
                        "handover requested: this broker becomes active once it holds the "
                        "active's last update");
            else
                s_fail (reply, "takeover: %s", err.text);
        }
    }
    else if (strcmp (command, "leave") == 0) {
        if (s_args (reply, command, nargs, 0, "leave")) {
            if (v->leave && v->leave (v->broker, &err) == KEEL_OK)
                s_done (reply, "leave",
                        "leaving: this member sends its drivers and engines to the next member"
                        " and stops");
            else
                s_fail (reply, "leave: %s", err.text);
        }
    }
    else
        s_fail (reply,
                "unknown command '%s' (commands: status, engines, services, why, tasks, cancel, "
                "config, events, maintenance, drain, unblacklist, takeover, leave)",
                command);
}
