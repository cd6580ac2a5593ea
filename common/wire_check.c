/*  wire_check.c — the validation table: what each body must carry and who
    may send it. See wire_check.h.

    Each check returns true when the value is acceptable; otherwise it fills
    err with "where: what" and returns false. Strings reach the checks NUL
    free: wire_codec.c refuses embedded NULs before it validates.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cond.h"
#include "ranges.h"
#include "wire_check.h"

#define S_MAX_SLOTS         4096
#define S_MAX_SERVICE_TYPES 256
#define S_MAX_ADMIN_ARGS    16
#define S_MIN_HEARTBEAT_MS  10

#define S_SENDER(kind) (1u << (KEEL__SENDER_KIND__SENDER_##kind))

// ---------------------------------------------------------------- checks

static bool
s_fail (keel_error_t *err, const char *where, const char *fmt, ...)
{
    char what[200];
    va_list args;
    va_start (args, fmt);
    vsnprintf (what, sizeof what, fmt, args);
    va_end (args);
    keel_error_set (err, KEEL_ERR_INVALID, "%s: %s", where, what);
    return false;
}

static bool
s_has (keel_error_t *err, const char *where, const char *field, bool present)
{
    return present || s_fail (err, where, "missing %s", field);
}

// The characters of names, by byte: S_NAME for [A-Za-z0-9_.-], S_ID for
// those and ':' (every message carries ids: one table lookup a byte).
enum { S_NAME = 1, S_ID = 2 };
#define S_N (S_NAME | S_ID)
static const unsigned char s_name_chars[256] = {
    ['-'] = S_N, ['.'] = S_N, ['_'] = S_N, [':'] = S_ID, ['0'] = S_N, ['1'] = S_N, ['2'] = S_N,
    ['3'] = S_N, ['4'] = S_N, ['5'] = S_N, ['6'] = S_N,  ['7'] = S_N, ['8'] = S_N, ['9'] = S_N,
    ['A'] = S_N, ['B'] = S_N, ['C'] = S_N, ['D'] = S_N,  ['E'] = S_N, ['F'] = S_N, ['G'] = S_N,
    ['H'] = S_N, ['I'] = S_N, ['J'] = S_N, ['K'] = S_N,  ['L'] = S_N, ['M'] = S_N, ['N'] = S_N,
    ['O'] = S_N, ['P'] = S_N, ['Q'] = S_N, ['R'] = S_N,  ['S'] = S_N, ['T'] = S_N, ['U'] = S_N,
    ['V'] = S_N, ['W'] = S_N, ['X'] = S_N, ['Y'] = S_N,  ['Z'] = S_N, ['a'] = S_N, ['b'] = S_N,
    ['c'] = S_N, ['d'] = S_N, ['e'] = S_N, ['f'] = S_N,  ['g'] = S_N, ['h'] = S_N, ['i'] = S_N,
    ['j'] = S_N, ['k'] = S_N, ['l'] = S_N, ['m'] = S_N,  ['n'] = S_N, ['o'] = S_N, ['p'] = S_N,
    ['q'] = S_N, ['r'] = S_N, ['s'] = S_N, ['t'] = S_N,  ['u'] = S_N, ['v'] = S_N, ['w'] = S_N,
    ['x'] = S_N, ['y'] = S_N, ['z'] = S_N,
};
#undef S_N

// Describes why text is not a well formed name of at most max characters
// drawn from [A-Za-z0-9_.-] (plus ':' when colon), or NULL when it is.
static const char *
s_name_problem (const char *text, size_t max, bool colon)
{
    const unsigned char *p = (const unsigned char *) text;
    unsigned char want = colon ? S_ID : S_NAME;
    size_t len = 0;
    // One pass: a NUL ends the name, any other byte not in the set is bad.
    while (len <= max && (s_name_chars[p[len]] & want))
        len++;
    if (len > max)
        return "too long";
    if (p[len] != 0)
        return "bad character";
    return len == 0 ? "empty" : NULL;
}

static bool
s_id (keel_error_t *err, const char *where, const char *field, const char *id, bool required)
{
    if (!id)
        return !required || s_fail (err, where, "missing %s", field);
    const char *problem = s_name_problem (id, KEEL_ID_MAX, true);
    return !problem || s_fail (err, where, "%s: bad id (%s)", field, problem);
}

static bool
s_type (keel_error_t *err, const char *where, const char *field, const char *type)
{
    if (!type)
        return s_fail (err, where, "missing %s", field);
    const char *problem = s_name_problem (type, KEEL_TYPE_MAX, false);
    return !problem || s_fail (err, where, "%s: bad service type (%s)", field, problem);
}

// Texts are NUL free by construction here: decode refuses embedded NULs.
static bool
s_text (keel_error_t *err, const char *where, const char *field, const char *text, bool required,
        size_t max)
{
    if (!text)
        return !required || s_fail (err, where, "missing %s", field);
    if (required && *text == 0)
        return s_fail (err, where, "%s: empty", field);
    return strnlen (text, max + 1) <= max
           || s_fail (err, where, "%s: longer than %zu bytes", field, max);
}

static bool
s_count (keel_error_t *err, const char *where, const char *field, size_t n, size_t min, size_t max)
{
    if (n < min)
        return s_fail (err, where, "%s: needs at least %zu entries", field, min);
    return n <= max || s_fail (err, where, "%s: more than %zu entries", field, max);
}

static bool
s_id_list (keel_error_t *err, const char *where, const char *field, size_t n, char **ids,
           size_t min)
{
    if (!s_count (err, where, field, n, min, KEEL_LIST_MAX))
        return false;
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf (name, sizeof name, "%s[%zu]", field, i);
        if (!s_id (err, where, name, ids[i], true))
            return false;
    }
    return true;
}

// Optional enum field: when present its value must lie in lo..hi.
static bool
s_enum (keel_error_t *err, const char *where, const char *field, bool has, int value, int lo,
        int hi)
{
    return !has || (value >= lo && value <= hi)
           || s_fail (err, where, "%s: value %d out of range", field, value);
}

// A list of task-id ranges (ranges.h): at most KEEL_LIST_MAX entries, in
// (gap, length) pairs, no empty range, no end past 2^64. Hostile lists are
// refused here in one pass, so a receiver's work on an accepted list is
// bounded by the tasks it holds (the ranges are sorted and disjoint).
static bool
s_ranges (keel_error_t *err, const char *where, const char *field, const uint64_t *v, size_t n)
{
    if (!s_count (err, where, field, n, 0, KEEL_LIST_MAX))
        return false;
    size_t at = 0;
    const char *problem = keel_ranges_problem (v, n, &at);
    return !problem || s_fail (err, where, "%s[%zu]: %s", field, at, problem);
}

static int
s_cmp_str (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

// DriverHello.delivered and DriverWelcome.held (field): well formed
// ranges, each service at most once (so no list makes its receiver walk
// one service's tasks twice).
static bool
s_delivered (keel_error_t *err, const char *where, const char *field, size_t n,
             Keel__DeliveredTasks **list)
{
    if (!s_count (err, where, field, n, 0, KEEL_LIST_MAX))
        return false;
    if (n == 0)
        return true;
    char **ids = malloc (n * sizeof *ids);
    if (!ids)
        return s_fail (err, where, "%s: out of memory checking %zu entries", field, n);
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        char name[64];
        snprintf (name, sizeof name, "%s[%zu].service_id", field, i);
        ok = s_id (err, where, name, list[i]->service_id, true);
        snprintf (name, sizeof name, "%s[%zu].ranges", field, i);
        ok = ok && s_ranges (err, where, name, list[i]->ranges, list[i]->n_ranges);
        ids[i] = list[i]->service_id;
    }
    if (ok) {
        qsort (ids, n, sizeof *ids, s_cmp_str);
        for (size_t i = 1; ok && i < n; i++)
            if (strcmp (ids[i - 1], ids[i]) == 0)
                ok = s_fail (err, where, "%s: service %s listed twice", field, ids[i]);
    }
    free (ids);
    return ok;
}

// ---------------------------------------------------------------- bodies

static bool
s_check_heartbeat (const keel_env_t *env, const char *w, keel_error_t *err)
{
    return s_count (err, w, "running", env->heartbeat->n_running, 0, KEEL_LIST_MAX);
}

static bool
s_check_relogin (const keel_env_t *env, const char *w, keel_error_t *err)
{
    return s_text (err, w, "reason", env->relogin->reason, false, KEEL_TEXT_MAX);
}

static bool
s_check_notice (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__Notice *m = env->notice;
    return s_enum (err, w, "level", m->has_level, m->level, KEEL__NOTICE_LEVEL__NOTICE_INFO,
                   KEEL__NOTICE_LEVEL__NOTICE_ERROR)
           && s_text (err, w, "text", m->text, true, KEEL_TEXT_MAX)
           && s_id (err, w, "service_id", m->service_id, false);
}

static bool
s_check_passive (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__Passive *m = env->passive;
    return s_text (err, w, "active", m->active, false, KEEL_TEXT_MAX)
           && s_text (err, w, "reason", m->reason, false, KEEL_TEXT_MAX);
}

static bool
s_check_driver_hello (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__DriverHello *m = env->driver_hello;
    if (!s_id (err, w, "driver_id", m->driver_id, true)
        || !s_id_list (err, w, "services", m->n_services, m->services, 0)
        || !s_delivered (err, w, "delivered", m->n_delivered, m->delivered)
        || !s_count (err, w, "attach", m->n_attach, 0, KEEL_LIST_MAX))
        return false;
    for (size_t i = 0; i < m->n_attach; i++) {
        char name[64];
        snprintf (name, sizeof name, "attach[%zu].service_id", i);
        if (!s_id (err, w, name, m->attach[i]->service_id, true))
            return false;
    }
    return true;
}

// A ServiceInfo of DriverWelcome.attached or ServiceStatus.services.
static bool
s_service_infos (keel_error_t *err, const char *w, const char *field, size_t n,
                 Keel__ServiceInfo **list)
{
    if (!s_count (err, w, field, n, 0, KEEL_LIST_MAX))
        return false;
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf (name, sizeof name, "%s[%zu].service_id", field, i);
        if (!s_id (err, w, name, list[i]->service_id, true))
            return false;
        snprintf (name, sizeof name, "%s[%zu].state", field, i);
        if (!s_text (err, w, name, list[i]->state, false, KEEL_TEXT_MAX))
            return false;
        snprintf (name, sizeof name, "%s[%zu].skip", field, i);
        if (!s_ranges (err, w, name, list[i]->skip, list[i]->n_skip))
            return false;
    }
    return true;
}

static bool
s_check_service_query (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__ServiceQuery *m = env->service_query;
    return s_id_list (err, w, "service_ids", m->n_service_ids, m->service_ids, 1);
}

static bool
s_check_service_status (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__ServiceStatus *m = env->service_status;
    return s_service_infos (err, w, "services", m->n_services, m->services);
}

// cluster_members: at most KEEL_MEMBERS_MAX non-empty endpoints.
static bool
s_members (keel_error_t *err, const char *w, size_t n, char **members)
{
    if (!s_count (err, w, "cluster_members", n, 0, KEEL_MEMBERS_MAX))
        return false;
    for (size_t i = 0; i < n; i++) {
        char where[64];
        snprintf (where, sizeof where, "%s: cluster_members[%zu]", w, i);
        if (!s_text (err, where, "endpoint", members[i], true, KEEL_ENDPOINT_MAX))
            return false;
    }
    return true;
}

static bool
s_check_driver_welcome (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__DriverWelcome *m = env->driver_welcome;
    if (!s_text (err, w, "broker_name", m->broker_name, true, KEEL_TEXT_MAX)
        || !s_has (err, w, "heartbeat_ms", m->has_heartbeat_ms))
        return false;
    if (m->heartbeat_ms < S_MIN_HEARTBEAT_MS)
        return s_fail (err, w, "heartbeat_ms: below %d", S_MIN_HEARTBEAT_MS);
    return s_id_list (err, w, "unknown_services", m->n_unknown_services, m->unknown_services, 0)
           && s_text (err, w, "pair_peer", m->pair_peer, false, KEEL_TEXT_MAX)
           && s_members (err, w, m->n_cluster_members, m->cluster_members)
           && s_delivered (err, w, "held", m->n_held, m->held)
           && s_service_infos (err, w, "attached", m->n_attached, m->attached);
}

static bool
s_check_submit_service (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__SubmitService *m = env->submit_service;
    if (!s_id (err, w, "service_id", m->service_id, true) || !s_type (err, w, "type", m->type))
        return false;
    // The condition's length only: its grammar is the broker's to check,
    // so that a malformed one is refused with its column, not dropped.
    if (!s_text (err, w, "condition", m->condition, false, KEEL_COND_MAX_LEN))
        return false;
    return !m->has_reschedule_delay_ms || m->reschedule_delay_ms >= -1
           || s_fail (err, w, "reschedule_delay_ms: below -1");
}

static bool
s_check_submit_tasks (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__SubmitTasks *m = env->submit_tasks;
    if (!s_id (err, w, "service_id", m->service_id, true)
        || !s_count (err, w, "tasks", m->n_tasks, 1, KEEL_LIST_MAX))
        return false;
    for (size_t i = 0; i < m->n_tasks; i++)
        if (!m->tasks[i]->has_task_id)
            return s_fail (err, w, "tasks[%zu]: missing task_id", i);
    return true;
}

static bool
s_check_accepted (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__Accepted *m = env->accepted;
    return s_id (err, w, "service_id", m->service_id, true)
           && s_count (err, w, "task_ids", m->n_task_ids, 0, KEEL_LIST_MAX);
}

static bool
s_check_refused (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__Refused *m = env->refused;
    return s_id (err, w, "service_id", m->service_id, true)
           && s_count (err, w, "task_ids", m->n_task_ids, 0, KEEL_LIST_MAX)
           && s_has (err, w, "code", m->has_code)
           && s_enum (err, w, "code", true, m->code, KEEL__REFUSE_CODE__REFUSE_UNKNOWN_SERVICE,
                      KEEL__REFUSE_CODE__REFUSE_SERVICE_CLOSED)
           && s_text (err, w, "error", m->error, false, KEEL_TEXT_MAX);
}

// One element of a TaskResults.
static bool
s_check_task_result (const Keel__TaskResult *r, const char *w, keel_error_t *err)
{
    return s_id (err, w, "service_id", r->service_id, true)
           && s_has (err, w, "task_id", r->has_task_id) && s_has (err, w, "status", r->has_status)
           && s_enum (err, w, "status", true, r->status, KEEL__TASK_STATUS__STATUS_OK,
                      KEEL__TASK_STATUS__STATUS_CANCELLED)
           && s_text (err, w, "error", r->error, false, KEEL_TEXT_MAX)
           && s_id (err, w, "engine_id", r->engine_id, false);
}

static bool
s_check_task_results (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__TaskResults *m = env->task_results;
    if (!s_count (err, w, "results", m->n_results, 1, KEEL_LIST_MAX))
        return false;
    for (size_t i = 0; i < m->n_results; i++) {
        keel_error_t scratch;
        if (s_check_task_result (m->results[i], w, &scratch))
            continue;
        // The element's name is formatted only for the error (a driver's
        // batch of 256 results paid a snprintf each).
        char where[64];
        snprintf (where, sizeof where, "%s: results[%zu]", w, i);
        return s_check_task_result (m->results[i], where, err);
    }
    return true;
}

// Drivers acknowledge results by service and task ids, brokers by execution ids.
static bool
s_check_result_ack (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__ResultAck *m = env->result_ack;
    if (env->sender == KEEL__SENDER_KIND__SENDER_DRIVER) {
        if (m->n_execution_ids)
            return s_fail (err, w, "execution_ids: not allowed from a driver");
        if (!s_id (err, w, "service_id", m->service_id, true)
            || !s_count (err, w, "task_ids", m->n_task_ids, 0, KEEL_LIST_MAX)
            || !s_ranges (err, w, "delivered", m->delivered, m->n_delivered))
            return false;
        return m->n_task_ids + m->n_delivered > 0
               || s_fail (err, w, "task_ids, delivered: both empty");
    }
    if (m->service_id || m->n_task_ids)
        return s_fail (err, w, "service_id, task_ids: not allowed from a broker");
    if (m->n_delivered)
        return s_fail (err, w, "delivered: not allowed from a broker");
    return s_count (err, w, "execution_ids", m->n_execution_ids, 1, KEEL_LIST_MAX);
}

static bool
s_check_close_service (const keel_env_t *env, const char *w, keel_error_t *err)
{
    return s_id (err, w, "service_id", env->close_service->service_id, true);
}

static bool
s_check_cancel_service (const keel_env_t *env, const char *w, keel_error_t *err)
{
    return s_id (err, w, "service_id", env->cancel_service->service_id, true);
}

static bool
s_check_detach (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__Detach *m = env->detach;
    return s_id_list (err, w, "service_ids", m->n_service_ids, m->service_ids, 1);
}

// An engine's Result, on its own or inside a held task.
static bool
s_check_result_msg (const Keel__Result *r, const char *w, keel_error_t *err)
{
    return s_id (err, w, "service_id", r->service_id, true)
           && s_has (err, w, "task_id", r->has_task_id)
           && s_has (err, w, "execution_id", r->has_execution_id)
           && s_has (err, w, "status", r->has_status)
           && s_enum (err, w, "status", true, r->status, KEEL__TASK_STATUS__STATUS_OK,
                      KEEL__TASK_STATUS__STATUS_FAILED)
           && s_text (err, w, "error", r->error, false, KEEL_TEXT_MAX)
           && (!r->has_permanent || !r->permanent || r->status == KEEL__TASK_STATUS__STATUS_FAILED
               || s_fail (err, w, "permanent: only on a FAILED result"));
}

static bool
s_check_held (const Keel__HeldTask *h, const char *w, keel_error_t *err)
{
    if (!s_id (err, w, "service_id", h->service_id, true)
        || !s_has (err, w, "task_id", h->has_task_id)
        || !s_has (err, w, "execution_id", h->has_execution_id)
        || !s_enum (err, w, "state", h->has_state, h->state, KEEL__HELD_STATE__HELD_RUNNING,
                    KEEL__HELD_STATE__HELD_DONE)
        || !s_text (err, w, "broker_name", h->broker_name, false, KEEL_TEXT_MAX))
        return false;
    bool done = h->has_state && h->state == KEEL__HELD_STATE__HELD_DONE;
    if (!done)
        return !h->result || s_fail (err, w, "result: not allowed on a running task");
    if (!h->result)
        return s_fail (err, w, "missing result (state DONE)");
    char where[80];
    snprintf (where, sizeof where, "%s: result", w);
    if (!s_check_result_msg (h->result, where, err))
        return false;
    if (strcmp (h->result->service_id, h->service_id) != 0 || h->result->task_id != h->task_id
        || h->result->execution_id != h->execution_id)
        return s_fail (err, where, "ids differ from the held task's");
    return true;
}

// An engine's properties: at most KEEL_PROPERTIES_MAX, each a valid name
// (cond.h) given once, with a value of at most KEEL_COND_VALUE_MAX bytes.
static bool
s_properties (keel_error_t *err, const char *w, size_t n, Keel__EngineProperty **props)
{
    if (!s_count (err, w, "properties", n, 0, KEEL_PROPERTIES_MAX))
        return false;
    for (size_t i = 0; i < n; i++) {
        const Keel__EngineProperty *p = props[i];
        if (!p->name || !keel_cond_name_ok (p->name))
            return s_fail (err, w,
                           "properties[%zu]: bad name (want [A-Za-z_][A-Za-z0-9_]*, at "
                           "most %d bytes)",
                           i, KEEL_COND_NAME_MAX);
        if (!p->value)
            return s_fail (err, w, "properties[%zu]: missing value", i);
        if (strnlen (p->value, KEEL_COND_VALUE_MAX + 1) > KEEL_COND_VALUE_MAX)
            return s_fail (err, w, "properties[%zu] (%s): value longer than %d bytes", i, p->name,
                           KEEL_COND_VALUE_MAX);
        for (size_t j = 0; j < i; j++)
            if (strcmp (props[j]->name, p->name) == 0)
                return s_fail (err, w, "properties[%zu]: '%s' given twice", i, p->name);
    }
    return true;
}

static bool
s_check_engine_login (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__EngineLogin *m = env->engine_login;
    if (!s_id (err, w, "engine_id", m->engine_id, true)
        || !s_id (err, w, "session", m->session, true)
        || !s_text (err, w, "host", m->host, false, KEEL_TEXT_MAX)
        || !s_text (err, w, "moved_from", m->moved_from, false, KEEL_TEXT_MAX)
        || !s_has (err, w, "slots", m->has_slots))
        return false;
    if (m->slots < 1 || m->slots > S_MAX_SLOTS)
        return s_fail (err, w, "slots: %u not in 1..%d", m->slots, S_MAX_SLOTS);
    if (!s_count (err, w, "service_types", m->n_service_types, 1, S_MAX_SERVICE_TYPES))
        return false;
    for (size_t i = 0; i < m->n_service_types; i++) {
        char name[40];
        snprintf (name, sizeof name, "service_types[%zu]", i);
        if (!s_type (err, w, name, m->service_types[i]))
            return false;
    }
    if (!s_properties (err, w, m->n_properties, m->properties)
        || !s_count (err, w, "held", m->n_held, 0, KEEL_LIST_MAX))
        return false;
    for (size_t i = 0; i < m->n_held; i++) {
        char where[64];
        snprintf (where, sizeof where, "%s: held[%zu]", w, i);
        if (!s_check_held (m->held[i], where, err))
            return false;
    }
    return true;
}

static bool
s_check_login_reply (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__LoginReply *m = env->login_reply;
    if (!s_has (err, w, "ok", m->has_ok)
        || !s_text (err, w, "error", m->error, false, KEEL_TEXT_MAX)
        || !s_text (err, w, "broker_name", m->broker_name, false, KEEL_TEXT_MAX)
        || !s_count (err, w, "verdicts", m->n_verdicts, 0, KEEL_LIST_MAX)
        || !s_members (err, w, m->n_cluster_members, m->cluster_members))
        return false;
    if (m->ok) {
        if (!s_has (err, w, "heartbeat_ms", m->has_heartbeat_ms)
            || !s_has (err, w, "engine_timeout_ms", m->has_engine_timeout_ms))
            return false;
        if (m->heartbeat_ms < S_MIN_HEARTBEAT_MS)
            return s_fail (err, w, "heartbeat_ms: below %d", S_MIN_HEARTBEAT_MS);
        if (m->engine_timeout_ms == 0)
            return s_fail (err, w, "engine_timeout_ms: zero");
    }
    for (size_t i = 0; i < m->n_verdicts; i++) {
        const Keel__TaskVerdict *v = m->verdicts[i];
        char where[64];
        snprintf (where, sizeof where, "%s: verdicts[%zu]", w, i);
        if (!s_id (err, where, "service_id", v->service_id, true)
            || !s_has (err, where, "task_id", v->has_task_id)
            || !s_has (err, where, "execution_id", v->has_execution_id)
            || !s_enum (err, where, "verdict", v->has_verdict, v->verdict,
                        KEEL__VERDICT__VERDICT_KEEP, KEEL__VERDICT__VERDICT_HOLD))
            return false;
    }
    return true;
}

// A broker's Assign, on its own or inside an AssignBatch.
static bool
s_check_assign_msg (const Keel__Assign *m, const char *w, keel_error_t *err)
{
    return s_id (err, w, "service_id", m->service_id, true) && s_type (err, w, "type", m->type)
           && s_has (err, w, "task_id", m->has_task_id)
           && s_has (err, w, "execution_id", m->has_execution_id);
}

static bool
s_check_assign (const keel_env_t *env, const char *w, keel_error_t *err)
{
    return s_check_assign_msg (env->assign, w, err);
}

static bool
s_check_result (const keel_env_t *env, const char *w, keel_error_t *err)
{
    return s_check_result_msg (env->result, w, err);
}

// A batch holds 1..KEEL_BATCH_MAX messages.
static bool
s_batch_count (keel_error_t *err, const char *w, const char *field, size_t n)
{
    if (n == 0)
        return s_fail (err, w, "%s: empty batch", field);
    return n <= KEEL_BATCH_MAX
           || s_fail (err, w, "%s: %zu entries, more than %d in one batch", field, n,
                      KEEL_BATCH_MAX);
}

// Each element is checked exactly like the message on its own; an error
// names the element ("assign_batch: assigns[3]: missing task_id").
static bool
s_check_assign_batch (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__AssignBatch *m = env->assign_batch;
    if (!s_batch_count (err, w, "assigns", m->n_assigns))
        return false;
    for (size_t i = 0; i < m->n_assigns; i++) {
        keel_error_t scratch;
        if (m->assigns[i] && s_check_assign_msg (m->assigns[i], w, &scratch))
            continue;
        // The element's name is formatted only for the error (a batch of
        // a thousand results paid a snprintf each).
        char where[64];
        snprintf (where, sizeof where, "%s: assigns[%zu]", w, i);
        if (!m->assigns[i])
            return s_fail (err, where, "missing"); // only a locally built one
        return s_check_assign_msg (m->assigns[i], where, err);
    }
    return true;
}

static bool
s_check_result_batch (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__ResultBatch *m = env->result_batch;
    if (!s_batch_count (err, w, "results", m->n_results))
        return false;
    for (size_t i = 0; i < m->n_results; i++) {
        keel_error_t scratch;
        if (m->results[i] && s_check_result_msg (m->results[i], w, &scratch))
            continue;
        // The element's name is formatted only for the error (a batch of
        // a thousand results paid a snprintf each).
        char where[64];
        snprintf (where, sizeof where, "%s: results[%zu]", w, i);
        if (!m->results[i])
            return s_fail (err, where, "missing"); // only a locally built one
        return s_check_result_msg (m->results[i], where, err);
    }
    return true;
}

static bool
s_check_checkpoint (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__Checkpoint *m = env->checkpoint;
    return s_id (err, w, "service_id", m->service_id, true)
           && s_has (err, w, "task_id", m->has_task_id)
           && s_has (err, w, "execution_id", m->has_execution_id);
}

static bool
s_check_cancel (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__Cancel *m = env->cancel;
    return s_count (err, w, "execution_ids", m->n_execution_ids, 1, KEEL_LIST_MAX)
           && s_text (err, w, "reason", m->reason, false, KEEL_TEXT_MAX);
}

static bool
s_check_logoff (const keel_env_t *env, const char *w, keel_error_t *err)
{
    return s_text (err, w, "reason", env->logoff->reason, false, KEEL_TEXT_MAX);
}

static bool
s_check_admin_request (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__AdminRequest *m = env->admin_request;
    if (!s_text (err, w, "command", m->command, true, KEEL_TEXT_MAX)
        || !s_count (err, w, "args", m->n_args, 0, S_MAX_ADMIN_ARGS))
        return false;
    for (size_t i = 0; i < m->n_args; i++) {
        char name[32];
        snprintf (name, sizeof name, "args[%zu]", i);
        if (!s_text (err, w, name, m->args[i], false, KEEL_TEXT_MAX))
            return false;
    }
    return true;
}

// json and text carry whole listings: bounded by the frame size only.
static bool
s_check_admin_reply (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__AdminReply *m = env->admin_reply;
    return s_has (err, w, "ok", m->has_ok)
           && s_text (err, w, "error", m->error, false, KEEL_TEXT_MAX);
}

// ---------------------------------------------------------------- pair

static bool
s_check_pair_heartbeat (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__PairHeartbeat *m = env->pair_heartbeat;
    if (!s_enum (err, w, "state", m->has_state, m->state, KEEL__PAIR_STATE__PAIR_STATE_PRIMARY,
                 KEEL__PAIR_STATE__PAIR_STATE_PASSIVE)
        || !s_text (err, w, "role", m->role, true, 16)
        || !s_text (err, w, "endpoints", m->endpoints, true, KEEL_TEXT_MAX)
        || !s_has (err, w, "link", m->has_link)
        || !s_has (err, w, "applied_seq", m->has_applied_seq)
        || !s_text (err, w, "advertised", m->advertised, false, KEEL_TEXT_MAX)
        || !s_text (err, w, "name", m->name, false, KEEL_TEXT_MAX)
        || !s_text (err, w, "pair_name", m->pair_name, false, KEEL_TEXT_MAX)
        || !s_text (err, w, "admin", m->admin, false, KEEL_TEXT_MAX))
        return false;
    if (strcmp (m->role, "primary") != 0 && strcmp (m->role, "backup") != 0)
        return s_fail (err, w, "role: '%s' is neither primary nor backup", m->role);
    return m->link < 16 || s_fail (err, w, "link: %u is not a link index", m->link);
}

static bool
s_check_pair_update (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__PairUpdate *m = env->pair_update;
    return s_has (err, w, "seq", m->has_seq && m->seq > 0) && s_has (err, w, "epoch", m->has_epoch)
           && s_has (err, w, "batch", m->has_batch);
}

static bool
s_check_pair_ack (const keel_env_t *env, const char *w, keel_error_t *err)
{
    return s_has (err, w, "seq", env->pair_ack->has_seq);
}

static bool
s_check_pair_sync_request (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__PairSyncRequest *m = env->pair_sync_request;
    return s_has (err, w, "applied_seq", m->has_applied_seq)
           && s_has (err, w, "applied_epoch", m->has_applied_epoch);
}

static bool
s_check_pair_snapshot (const keel_env_t *env, const char *w, keel_error_t *err)
{
    const Keel__PairSnapshot *m = env->pair_snapshot;
    if (!s_has (err, w, "snapshot_id", m->has_snapshot_id) || !s_has (err, w, "seq", m->has_seq)
        || !s_has (err, w, "epoch", m->has_epoch) || !s_has (err, w, "offset", m->has_offset)
        || !s_has (err, w, "total", m->has_total) || !s_has (err, w, "data", m->has_data))
        return false;
    if (m->offset > m->total || m->data.len > m->total - m->offset)
        return s_fail (
            err, w, "data: bytes %llu..%llu beyond total %llu", (unsigned long long) m->offset,
            (unsigned long long) (m->offset + m->data.len), (unsigned long long) m->total);
    return true;
}

static bool
s_check_pair_handover (const keel_env_t *env, const char *w, keel_error_t *err)
{
    return s_has (err, w, "seq", env->pair_handover->has_seq);
}

typedef bool (s_check_fn) (const keel_env_t *env, const char *where, keel_error_t *err);

#define S_BODY(upper, lower, senders)                                                              \
    {                                                                                              \
        KEEL__ENVELOPE__BODY_##upper, #lower, senders, s_check_##lower                             \
    }
#define S_DRIVER S_SENDER (DRIVER)
#define S_ENGINE S_SENDER (ENGINE)
#define S_ADMIN  S_SENDER (ADMIN)
#define S_BROKER S_SENDER (BROKER)

// Who may send each body, and what it must carry.
static const struct {
    Keel__Envelope__BodyCase body;
    const char *name;
    unsigned senders; // S_SENDER bits allowed to send it
    s_check_fn *check;
} s_bodies[] = {
    S_BODY (HEARTBEAT, heartbeat, S_DRIVER | S_ENGINE | S_BROKER),
    S_BODY (RELOGIN, relogin, S_BROKER),
    S_BODY (NOTICE, notice, S_BROKER),
    S_BODY (PASSIVE, passive, S_BROKER),
    S_BODY (DRIVER_HELLO, driver_hello, S_DRIVER),
    S_BODY (DRIVER_WELCOME, driver_welcome, S_BROKER),
    S_BODY (SUBMIT_SERVICE, submit_service, S_DRIVER),
    S_BODY (SUBMIT_TASKS, submit_tasks, S_DRIVER),
    S_BODY (ACCEPTED, accepted, S_BROKER),
    S_BODY (REFUSED, refused, S_BROKER),
    S_BODY (TASK_RESULTS, task_results, S_BROKER),
    S_BODY (RESULT_ACK, result_ack, S_DRIVER | S_BROKER),
    S_BODY (CLOSE_SERVICE, close_service, S_DRIVER),
    S_BODY (CANCEL_SERVICE, cancel_service, S_DRIVER),
    S_BODY (DETACH, detach, S_DRIVER),
    S_BODY (SERVICE_QUERY, service_query, S_DRIVER),
    S_BODY (SERVICE_STATUS, service_status, S_BROKER),
    S_BODY (ENGINE_LOGIN, engine_login, S_ENGINE),
    S_BODY (LOGIN_REPLY, login_reply, S_BROKER),
    S_BODY (ASSIGN, assign, S_BROKER),
    S_BODY (RESULT, result, S_ENGINE),
    S_BODY (CHECKPOINT, checkpoint, S_ENGINE),
    S_BODY (CANCEL, cancel, S_BROKER),
    S_BODY (LOGOFF, logoff, S_ENGINE),
    S_BODY (ASSIGN_BATCH, assign_batch, S_BROKER),
    S_BODY (RESULT_BATCH, result_batch, S_ENGINE),
    S_BODY (ADMIN_REQUEST, admin_request, S_ADMIN),
    S_BODY (ADMIN_REPLY, admin_reply, S_BROKER),
    S_BODY (PAIR_HEARTBEAT, pair_heartbeat, S_BROKER),
    S_BODY (PAIR_UPDATE, pair_update, S_BROKER),
    S_BODY (PAIR_ACK, pair_ack, S_BROKER),
    S_BODY (PAIR_SYNC_REQUEST, pair_sync_request, S_BROKER),
    S_BODY (PAIR_SNAPSHOT, pair_snapshot, S_BROKER),
    S_BODY (PAIR_HANDOVER, pair_handover, S_BROKER),
};
#define S_BODIES (sizeof s_bodies / sizeof s_bodies[0])

static const char *s_sender_names[] = { "an unknown sender", "a driver", "an engine", "an admin",
                                        "a broker" };

static int
s_body_index (Keel__Envelope__BodyCase body)
{
    for (size_t i = 0; i < S_BODIES; i++)
        if (s_bodies[i].body == body)
            return (int) i;
    return -1;
}

const char *
keel_wire_body_name (const keel_env_t *env)
{
    int index = env ? s_body_index (env->body_case) : -1;
    return index < 0 ? "none" : s_bodies[index].name;
}

keel_err
keel_wire_validate (const keel_env_t *env, keel_error_t *err)
{
    if (!env)
        return keel_error_set (err, KEEL_ERR_INVALID, "envelope: missing");
    if (!env->has_version)
        return keel_error_set (err, KEEL_ERR_INVALID, "envelope: missing version");
    if (env->version != KEEL_PROTOCOL_VERSION)
        return keel_error_set (err, KEEL_ERR_INVALID, "envelope: version %u, expected %d",
                               env->version, KEEL_PROTOCOL_VERSION);
    if (!env->has_sender)
        return keel_error_set (err, KEEL_ERR_INVALID, "envelope: missing sender");
    if ((int) env->sender <= KEEL__SENDER_KIND__SENDER_UNKNOWN
        || (int) env->sender > KEEL__SENDER_KIND__SENDER_BROKER)
        return keel_error_set (err, KEEL_ERR_INVALID, "envelope: sender: value %d out of range",
                               (int) env->sender);
    if (env->body_case == KEEL__ENVELOPE__BODY__NOT_SET)
        return keel_error_set (err, KEEL_ERR_INVALID, "envelope: no body");
    int index = s_body_index (env->body_case);
    // A body case outside the table cannot come out of protobuf-c, but a
    // locally built envelope may carry anything.
    if (index < 0 || !env->heartbeat)
        return keel_error_set (err, KEEL_ERR_INVALID, "envelope: bad body %d",
                               (int) env->body_case);
    if (!(s_bodies[index].senders & (1u << env->sender)))
        return keel_error_set (err, KEEL_ERR_INVALID, "%s: not allowed from %s",
                               s_bodies[index].name, s_sender_names[env->sender]);
    if (!s_bodies[index].check (env, s_bodies[index].name, err))
        return KEEL_ERR_INVALID;
    return KEEL_OK;
}

// ---------------------------------------------------------------- names

bool
keel_id_valid (const char *id)
{
    return id && !s_name_problem (id, KEEL_ID_MAX, true);
}

bool
keel_type_name_valid (const char *name)
{
    return name && !s_name_problem (name, KEEL_TYPE_MAX, false);
}
