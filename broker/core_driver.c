/*  broker_driver.c — what the broker does with driver messages
    (docs/protocol.md, "Driver ↔ broker"), and the routing of every message
    from the main endpoint to its handler.
*/

#include "core_int.h"

#include <stdlib.h>
#include <string.h>

#include "ranges.h"

void
keel_core_event (keel_core_t *self, const char *kind, const char *fmt, ...)
{
    char text[512];
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    if (self->admin_who[0] && n >= 0 && (size_t) n < sizeof text)
        snprintf (text + n, sizeof text - (size_t) n, " by=%s", self->admin_who);
    KEEL_CORE_LOG (self, KEEL_CORE_RL_EVENTS, KEEL_LOG_INFO, "%s: %s", kind, text);
    keel_core_change (
        self, (keel_change_t) { .kind = KEEL_CHANGE_EVENT, .event = { self->wall, kind, text } });
}

// ---------------------------------------------------------------- routing

void
keel_core_message (keel_core_t *self, zframe_t *route, keel_env_t *env)
{
    if (env->body_case == KEEL__ENVELOPE__BODY_DRIVER_HELLO) {
        keel_core_driver_hello (self, route, env->driver_hello);
        return;
    }
    if (env->body_case == KEEL__ENVELOPE__BODY_ENGINE_LOGIN) {
        keel_core_engine_login (self, route, env->engine_login);
        return;
    }
    if (env->sender == KEEL__SENDER_KIND__SENDER_ENGINE) {
        keel_engine_t *engine = keel_model_engine_by_route (self->model, route);
        if (!engine || engine->state != KEEL_ENGINE_ONLINE) {
            keel_core_relogin (self, route, "unknown engine: log in");
            return;
        }
        keel_peer_clock_received (&engine->clock, self->now);
        keel_core_engine_msg (self, engine, env);
    }
    else if (env->sender == KEEL__SENDER_KIND__SENDER_DRIVER) {
        keel_driver_rec_t *drv = keel_model_driver_by_route (self->model, route);
        if (!drv || !drv->connected) {
            keel_core_relogin (self, route, "unknown driver: send hello");
            return;
        }
        keel_peer_clock_received (&drv->clock, self->now);
        keel_core_driver_msg (self, drv, env);
    }
    else
        keel_core_malformed (self, "%s from a %s on the main endpoint", keel_wire_body_name (env),
                             env->sender == KEEL__SENDER_KIND__SENDER_ADMIN ? "admin" : "broker");
}

// ---------------------------------------------------------------- hello

// Writes the service's whole row (new service, or its driver changed).

static void s_notice (keel_core_t *self, keel_driver_rec_t *drv, Keel__NoticeLevel level,
                      const char *service_id, const char *text);
static void
s_store_service (keel_core_t *self, const keel_service_rec_t *svc)
{
    keel_store_service_t row = { .service_id = svc->id,
                                 .type = svc->type,
                                 .driver_id = svc->driver_id,
                                 .priority = svc->priority,
                                 .max_attempts = svc->max_attempts,
                                 .reschedule_delay_ms = svc->reschedule_delay_ms,
                                 .init_data = svc->init_data,
                                 .init_len = svc->init_len,
                                 .state = svc->state,
                                 .created_wall_ms = svc->created_wall_ms,
                                 .closed_wall_ms = svc->closed_wall_ms,
                                 .condition = svc->cond ? keel_cond_text (svc->cond) : NULL };
    keel_core_change (self, (keel_change_t) { .kind = KEEL_CHANGE_SERVICE_PUT, .service = row });
}

// Queues every terminal result of svc the driver has not acknowledged.
static void
s_resend_results (keel_core_t *self, keel_service_rec_t *svc)
{
    if (svc->unacked == 0)
        return;
    for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks;
         id = keel_service_task_next (svc, id + 1)) {
        keel_task_t *t = keel_service_task (svc, id);
        if (t && t->result && !t->acked)
            keel_core_deliver (self, svc, id);
    }
}

// The driver holds the result of task t (from another broker, or from
// this one before a restart): drop it from the queue, stop its executions,
// and never run it or send its result again. A result stored here counts
// as acknowledged; a task with none ends as ELSEWHERE, stored acknowledged
// and with no output, so retention purges the service as usual.
static void
s_delivered_task (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id, keel_task_t *t)
{
    if (t->result) {
        if (t->acked)
            return;
        t->acked = 1;
        svc->unacked--;
        keel_core_touch (self, svc, task_id, KEEL_DIRTY_ACK);
        self->counters.tasks_delivered_elsewhere++;
        return;
    }
    if (t->state >= KEEL_TASK_STATE_DONE)
        return; // cancelled, or marked before
    keel_service_queue_remove (svc, task_id);
    while (t->execs)
        keel_core_cancel_exec (self, t->execs, "the driver has this task's result already");
    keel_core_task_to (self, svc, task_id, KEEL_TASK_STATE_ELSEWHERE);
    t->acked = 1;
    keel_core_touch (self, svc, task_id, KEEL_DIRTY_STATE | KEEL_DIRTY_ACK);
    self->counters.tasks_delivered_elsewhere++;
}

// Applies a list of task ranges the driver holds results for (validated by
// the codec: sorted, disjoint). Work is bounded by the service's tasks: a
// range past the last task ends the walk. Returns the tasks newly settled.
static uint64_t
s_delivered (keel_core_t *self, keel_driver_rec_t *drv, keel_service_rec_t *svc,
             const uint64_t *ranges, size_t n)
{
    // Only the service's own driver speaks for it.
    if (!svc || svc->state == KEEL_SERVICE_CANCELLED || strcmp (svc->driver_id, drv->id) != 0)
        return 0;
    uint64_t before = self->counters.tasks_delivered_elsewhere;
    keel_ranges_reader_t reader;
    keel_ranges_reader_init (&reader, ranges, n);
    uint64_t lo, hi;
    while (keel_ranges_reader_next (&reader, &lo, &hi) && lo < svc->ntasks) {
        if (hi > svc->ntasks)
            hi = svc->ntasks;
        for (uint64_t id = keel_service_task_next (svc, lo); id < hi;
             id = keel_service_task_next (svc, id + 1))
            s_delivered_task (self, svc, id, keel_service_task (svc, id));
    }
    return self->counters.tasks_delivered_elsewhere - before;
}

// DriverHello.delivered: before any result is sent again or any task
// dispatched this turn.
static void
s_hello_delivered (keel_core_t *self, keel_driver_rec_t *drv, Keel__DriverHello *hello)
{
    for (size_t i = 0; i < hello->n_delivered; i++) {
        const Keel__DeliveredTasks *d = hello->delivered[i];
        keel_service_rec_t *svc = keel_model_service (self->model, d->service_id);
        uint64_t n = s_delivered (self, drv, svc, d->ranges, d->n_ranges);
        if (n)
            KEEL_CORE_LOG (self, KEEL_CORE_RL_TASKS, KEEL_LOG_INFO,
                           "driver holds results service=%s tasks=%llu: not run or sent again",
                           svc->id, (unsigned long long) n);
    }
}

// DriverWelcome.held: the tasks of each known service this broker stores,
// so the driver does not send them again (after a pair's takeover: what
// the mirror already had). Only when everything committed is durable (and,
// in a pair, mirrored): a task that is merely committed could still be
// lost, and its driver must keep it. A task of the turn not committed yet
// is left out. At most S_HELD_RANGES entries in all: the driver resends
// what did not fit, harmless (idempotent).
#define S_HELD_RANGES 65536

typedef struct {
    Keel__DeliveredTasks *items;
    Keel__DeliveredTasks **ptrs;
    uint64_t *buf;
    size_t n;
} s_held_t;

static void
s_held_build (keel_core_t *self, Keel__DriverHello *hello, s_held_t *h)
{
    memset (h, 0, sizeof *h);
    if (self->synced_seq < self->commit_seq || hello->n_services == 0)
        return;
    h->items = calloc (hello->n_services, sizeof *h->items);
    h->ptrs = calloc (hello->n_services, sizeof *h->ptrs);
    h->buf = malloc (S_HELD_RANGES * sizeof *h->buf);
    if (!h->items || !h->ptrs || !h->buf)
        return;
    // A service the hello lists twice is answered once (a welcome naming
    // one twice is refused by the driver's check).
    zhashx_t *listed = zhashx_new ();
    if (!listed)
        return;
    size_t used = 0;
    for (size_t i = 0; i < hello->n_services && used + 2 <= S_HELD_RANGES; i++) {
        keel_service_rec_t *svc = keel_model_service (self->model, hello->services[i]);
        if (!svc || svc->state == KEEL_SERVICE_CANCELLED
            || zhashx_insert (listed, svc->id, (void *) 1) != 0)
            continue;
        keel_ranges_writer_t w;
        keel_ranges_writer_init (&w, h->buf + used, S_HELD_RANGES - used);
        uint64_t lo = 0;
        bool open = false, full = false;
        // Outside a range, ids with no task change nothing: skip them.
        for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks && !full;
             id = open ? id + 1 : keel_service_task_next (svc, id + 1)) {
            keel_task_t *t = keel_service_task (svc, id);
            bool held = t && t->durable && !(t->dirty & KEEL_DIRTY_NEW);
            if (held && !open) {
                lo = id;
                open = true;
            }
            else if (!held && open) {
                full = !keel_ranges_writer_add (&w, lo, id);
                open = false;
            }
        }
        if (open && !full)
            keel_ranges_writer_add (&w, lo, svc->ntasks);
        if (w.n == 0)
            continue;
        Keel__DeliveredTasks *d = &h->items[h->n];
        keel__delivered_tasks__init (d);
        d->service_id = svc->id;
        d->n_ranges = w.n;
        d->ranges = h->buf + used;
        h->ptrs[h->n++] = d;
        used += w.n;
    }
    zhashx_destroy (&listed);
}

static void
s_held_free (s_held_t *h)
{
    free (h->items);
    free (h->ptrs);
    free (h->buf);
}

// ---------------------------------------------------------------- attach and query

static const char *s_state_names[] = { "open", "closed", "cancelled", "detached" };

// What ServiceInfo says of a service: every count, and complete = closed
// or cancelled with no task queued or running.
static void
s_info_fill (const keel_service_rec_t *svc, const char *service_id, Keel__ServiceInfo *info)
{
    keel__service_info__init (info);
    info->service_id = (char *) service_id;
    info->has_known = true;
    info->known = svc != NULL;
    if (!svc)
        return;
    info->state = (char *) s_state_names[svc->state < 4 ? svc->state : 0];
    info->has_tasks = info->has_next_task = info->has_done = info->has_failed = true;
    info->has_unacked = info->has_complete = true;
    info->tasks = svc->total;
    info->next_task = svc->ntasks;
    info->failed = svc->count[KEEL_TASK_STATE_FAILED] + svc->count[KEEL_TASK_STATE_CANCELLED];
    info->done =
        svc->count[KEEL_TASK_STATE_DONE] + svc->count[KEEL_TASK_STATE_ELSEWHERE] + info->failed;
    info->unacked = svc->unacked;
    info->complete =
        (svc->state == KEEL_SERVICE_CLOSED || svc->state == KEEL_SERVICE_CANCELLED)
        && svc->count[KEEL_TASK_STATE_QUEUED] + svc->count[KEEL_TASK_STATE_RUNNING] == 0;
}

// The ids of svc an attaching driver must not wait for (ServiceInfo.skip):
// ids never stored, tasks that ended with no result to send, and (unless
// all) results acknowledged already. Returns false when w filled up.
static bool
s_info_skip (const keel_service_rec_t *svc, bool all, keel_ranges_writer_t *w)
{
    uint64_t lo = 0;
    bool open = false;
    // Inside a range, ids with no task are skipped too: jump over them.
    for (uint64_t id = 0; id < svc->ntasks;
         id = open ? keel_service_task_next (svc, id + 1) : id + 1) {
        const keel_task_t *t = keel_service_task (svc, id);
        bool skip = !t || (!t->result && t->state >= KEEL_TASK_STATE_DONE)
                    || (t->result && t->acked && !all);
        if (skip && !open) {
            lo = id;
            open = true;
        }
        else if (!skip && open) {
            if (!keel_ranges_writer_add (w, lo, id))
                return false;
            open = false;
        }
    }
    return !open || keel_ranges_writer_add (w, lo, svc->ntasks);
}

#define S_ATTACH_RANGES 100000 // skip range entries in one welcome, all services

typedef struct {
    Keel__ServiceInfo *items;
    Keel__ServiceInfo **ptrs;
    uint64_t *buf;
    size_t n;
} s_attached_t;

// DriverHello.attach: binds each known service to drv (its results go to
// drv from now on), closes an open one to new tasks (the driver that
// submitted it is gone, or has given it up: what is stored is the whole
// service), describes each in h, and queues its results to send: those
// not acknowledged, or with `all` every stored one (the driver drops what
// it has already).
static void
s_attach (keel_core_t *self, keel_driver_rec_t *drv, Keel__DriverHello *hello, s_attached_t *h)
{
    memset (h, 0, sizeof *h);
    if (hello->n_attach == 0)
        return;
    h->items = calloc (hello->n_attach, sizeof *h->items);
    h->ptrs = calloc (hello->n_attach, sizeof *h->ptrs);
    h->buf = malloc (S_ATTACH_RANGES * sizeof *h->buf);
    if (!h->items || !h->ptrs || !h->buf)
        return;
    size_t used = 0;
    for (size_t i = 0; i < hello->n_attach; i++) {
        const Keel__AttachService *a = hello->attach[i];
        keel_service_rec_t *svc = keel_model_service (self->model, a->service_id);
        Keel__ServiceInfo *info = &h->items[h->n];
        h->ptrs[h->n++] = info;
        if (svc && strcmp (svc->driver_id, drv->id) != 0) {
            keel_core_event (self, "service-attached", "service=%s driver=%s former_driver=%s",
                             svc->id, drv->id, svc->driver_id);
            snprintf (svc->driver_id, sizeof svc->driver_id, "%s", drv->id);
            s_store_service (self, svc);
        }
        if (svc && svc->state == KEEL_SERVICE_OPEN) {
            keel_core_service_to (self, svc, KEEL_SERVICE_CLOSED);
            keel_core_event (self, "service-closed",
                             "service=%s tasks=%llu unacked=%llu (attached: no more tasks)",
                             svc->id, (unsigned long long) svc->total,
                             (unsigned long long) svc->unacked);
        }
        s_info_fill (svc, a->service_id, info);
        if (!svc)
            continue;
        keel_ranges_writer_t w;
        keel_ranges_writer_init (&w, h->buf + used, S_ATTACH_RANGES - used);
        if (!s_info_skip (svc, a->all, &w)) {
            // The driver would wait for results nobody sends: say the
            // service cannot be attached here rather than hang.
            KEEL_CORE_LOG (self, KEEL_CORE_RL_DRIVERS, KEEL_LOG_WARN,
                           "attach service=%s: over %d acknowledged runs, not described", svc->id,
                           S_ATTACH_RANGES);
            info->known = false;
            continue;
        }
        info->n_skip = w.n;
        info->skip = h->buf + used;
        used += w.n;
        for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks;
             id = keel_service_task_next (svc, id + 1)) {
            keel_task_t *t = keel_service_task (svc, id);
            if (t && t->result && !t->acked)
                keel_core_deliver (self, svc, id);
            else if (t && t->result && a->all)
                keel_core_deliver_again (self, svc, id);
        }
    }
}

static void
s_attached_free (s_attached_t *h)
{
    free (h->items);
    free (h->ptrs);
    free (h->buf);
}

// ServiceQuery: how each service stands, at once (keel-driver wait).
static void
s_service_query (keel_core_t *self, keel_driver_rec_t *drv, Keel__ServiceQuery *q)
{
    Keel__ServiceInfo *items = calloc (q->n_service_ids + 1, sizeof *items);
    Keel__ServiceInfo **ptrs = calloc (q->n_service_ids + 1, sizeof *ptrs);
    if (items && ptrs) {
        for (size_t i = 0; i < q->n_service_ids; i++) {
            s_info_fill (keel_model_service (self->model, q->service_ids[i]), q->service_ids[i],
                         &items[i]);
            ptrs[i] = &items[i];
        }
        keel_msg_t msg;
        keel_core_send_driver (self, drv, keel_msg_service_status (&msg, ptrs, q->n_service_ids));
    }
    free (items);
    free (ptrs);
}

// With Security=curve, whether the driver of the message being handled
// (self->principal) may speak for the service: its driver (svc->driver_id)
// said hello under the same key, or not since the broker started. A
// refusal is counted and logged.
static bool
s_owned (keel_core_t *self, const char *driver_id, const char *service_id)
{
    if (!self->principal[0])
        return true;
    keel_service_rec_t *svc = keel_model_service (self->model, service_id);
    keel_driver_rec_t *owner = svc ? keel_model_driver (self->model, svc->driver_id) : NULL;
    if (!owner || !owner->principal[0] || strcmp (owner->principal, self->principal) == 0)
        return true;
    keel_core_refused (self, true, "driver=%s may not use service=%s: opened under another key",
                       driver_id, service_id);
    return false;
}

// With Security=curve, whether a hello's driver id and services belong to
// the key it comes from (the driver id is bound to the first key that
// says hello with it).
static bool
s_hello_owned (keel_core_t *self, keel_driver_rec_t *drv, Keel__DriverHello *hello)
{
    if (!self->principal[0])
        return true;
    if (drv && drv->principal[0] && strcmp (drv->principal, self->principal) != 0) {
        keel_core_refused (self, true, "hello as driver=%s from another key", hello->driver_id);
        return false;
    }
    for (size_t i = 0; i < hello->n_services; i++)
        if (!s_owned (self, hello->driver_id, hello->services[i]))
            return false;
    for (size_t i = 0; i < hello->n_attach; i++)
        if (!s_owned (self, hello->driver_id, hello->attach[i]->service_id))
            return false;
    for (size_t i = 0; i < hello->n_delivered; i++)
        if (!s_owned (self, hello->driver_id, hello->delivered[i]->service_id))
            return false;
    return true;
}

void
keel_core_driver_hello (keel_core_t *self, zframe_t *route, Keel__DriverHello *hello)
{
    keel_driver_rec_t *drv = keel_model_driver (self->model, hello->driver_id);
    if (!s_hello_owned (self, drv, hello))
        return;
    if (!drv) {
        drv = keel_model_driver_add (self->model, hello->driver_id);
        if (!drv)
            return;
        KEEL_CORE_LOG (self, KEEL_CORE_RL_DRIVERS, KEEL_LOG_INFO, "driver connected driver=%s",
                       drv->id);
    }
    else if (!drv->connected)
        KEEL_CORE_LOG (self, KEEL_CORE_RL_DRIVERS, KEEL_LOG_INFO, "driver reconnected driver=%s",
                       drv->id);
    keel_model_driver_route (self->model, drv, route);
    drv->connected = true;
    if (self->principal[0] && !drv->principal[0])
        snprintf (drv->principal, sizeof drv->principal, "%s", self->principal);
    keel_peer_clock_init (&drv->clock, self->heartbeat_ms, 3, self->now);
    drv->broker_timeout_ms = hello->has_broker_timeout_ms ? hello->broker_timeout_ms : 0;

    char **unknown = calloc (hello->n_services + 1, sizeof *unknown);
    size_t nunknown = 0;
    for (size_t i = 0; i < hello->n_services; i++) {
        keel_service_rec_t *svc = keel_model_service (self->model, hello->services[i]);
        if (!svc || svc->state == KEEL_SERVICE_CANCELLED) {
            if (unknown)
                unknown[nunknown++] = hello->services[i];
            continue;
        }
        if (strcmp (svc->driver_id, drv->id) != 0) {
            snprintf (svc->driver_id, sizeof svc->driver_id, "%s", drv->id);
            s_store_service (self, svc);
        }
    }
    s_attached_t attached;
    s_attach (self, drv, hello, &attached);
    s_hello_delivered (self, drv, hello);
    for (size_t i = 0; i < hello->n_services; i++) {
        keel_service_rec_t *svc = keel_model_service (self->model, hello->services[i]);
        if (svc && svc->state != KEEL_SERVICE_CANCELLED)
            s_resend_results (self, svc);
    }

    if (nunknown)
        keel_core_event (self, "failover",
                         "driver=%s unknown_services=%zu (it resubmits them: "
                         "it moved here from another broker, or they ended here)",
                         drv->id, nunknown);
    keel_msg_t msg;
    keel_env_t *welcome = keel_msg_driver_welcome (
        &msg, self->name, self->epoch, (uint64_t) self->heartbeat_ms, unknown, nunknown);
    keel_msg_set_pair_peer (&msg, self->pair_peer && *self->pair_peer ? self->pair_peer : NULL);
    if (self->ncluster_members)
        keel_msg_set_cluster_members (&msg, self->cluster_members, *self->ncluster_members);
    s_held_t held;
    s_held_build (self, hello, &held);
    keel_msg_set_welcome_held (&msg, held.ptrs, held.n, self->pair_alone);
    keel_msg_set_welcome_attached (&msg, attached.ptrs, attached.n);
    keel_core_send_driver (self, drv, welcome);
    s_held_free (&held);
    s_attached_free (&attached);
    free (unknown);
    if (self->pair_notice[0] && !drv->pair_noticed) {
        drv->pair_noticed = true;
        s_notice (self, drv, KEEL__NOTICE_LEVEL__NOTICE_WARNING, NULL, self->pair_notice);
    }

    if (drv->broker_timeout_ms && (uint64_t) self->engine_timeout_ms <= drv->broker_timeout_ms) {
        KEEL_CORE_LOG (self, KEEL_CORE_RL_VALUES, KEEL_LOG_WARN,
                       "EngineTimeoutMinutes (%.2f min) is not above driver %s's DSBrokerTimeout "
                       "(%.0f s): engines may abandon tasks before the driver fails over",
                       self->engine_timeout_ms / 60000.0, drv->id, drv->broker_timeout_ms / 1000.0);
    }
}

// ---------------------------------------------------------------- services

static void
s_refuse (keel_core_t *self, keel_driver_rec_t *drv, const char *service_id, const uint64_t *ids,
          size_t n, Keel__RefuseCode code, const char *error)
{
    keel_msg_t msg;
    keel_core_send_driver (self, drv, keel_msg_refused (&msg, service_id, ids, n, code, error));
    self->counters.submissions_refused += n ? n : 1;
}

// Why new work is refused while the store fails (the first failure's
// message: a full disk, a database that went away).
static const char *
s_store_failed_text (keel_core_t *self)
{
    static char text[320];
    snprintf (text, sizeof text, "its store fails: %.256s", self->store_failed_text);
    return text;
}

static void
s_notice (keel_core_t *self, keel_driver_rec_t *drv, Keel__NoticeLevel level,
          const char *service_id, const char *text)
{
    keel_msg_t msg;
    keel_core_send_driver (self, drv, keel_msg_notice (&msg, level, service_id, text));
    keel_core_event (self, "notice", "driver=%s service=%s text=\"%s\"", drv->id,
                     service_id ? service_id : "", text);
}

void
keel_core_pair_notice (keel_core_t *self, const char *text)
{
    snprintf (self->pair_notice, sizeof self->pair_notice, "%s", text);
    zlistx_t *drivers = keel_model_drivers (self->model);
    for (keel_driver_rec_t *d = zlistx_first (drivers); d; d = zlistx_next (drivers))
        if (d->connected && !d->pair_noticed) {
            d->pair_noticed = true;
            s_notice (self, d, KEEL__NOTICE_LEVEL__NOTICE_WARNING, NULL, text);
        }
}

void
keel_core_notice_all (keel_core_t *self, const char *text)
{
    zlistx_t *drivers = keel_model_drivers (self->model);
    for (keel_driver_rec_t *d = zlistx_first (drivers); d; d = zlistx_next (drivers))
        if (d->connected)
            s_notice (self, d, KEEL__NOTICE_LEVEL__NOTICE_WARNING, NULL, text);
}

void
keel_core_notice (keel_core_t *self, keel_driver_rec_t *drv, const char *service_id,
                  const char *text)
{
    s_notice (self, drv, KEEL__NOTICE_LEVEL__NOTICE_WARNING, service_id, text);
}

static void
s_submit_service (keel_core_t *self, keel_driver_rec_t *drv, zframe_t *route,
                  Keel__SubmitService *msg)
{
    keel_service_rec_t *svc = keel_model_service (self->model, msg->service_id);
    if (svc) {
        // Resubmission is idempotent; a detached service comes back.
        if (svc->state == KEEL_SERVICE_DETACHED) {
            keel_core_service_to (self, svc, KEEL_SERVICE_OPEN);
            for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks;
                 id = keel_service_task_next (svc, id + 1)) {
                keel_task_t *t = keel_service_task (svc, id);
                if (t && t->state == KEEL_TASK_STATE_QUEUED && !t->queued)
                    keel_core_requeue (self, svc, id);
            }
            keel_core_event (self, "service-reattached", "service=%s driver=%s", svc->id, drv->id);
        }
        snprintf (svc->driver_id, sizeof svc->driver_id, "%s", drv->id);
        keel_core_accept (self, route, svc->id, NULL, 0);
        return;
    }
    if (self->store_failed) {
        s_refuse (self, drv, msg->service_id, NULL, 0, KEEL__REFUSE_CODE__REFUSE_STORE_FULL,
                  s_store_failed_text (self));
        return;
    }
    // Its condition is parsed here, once: a client that skipped the
    // driver's own check gets the same error.
    keel_cond_t *cond = NULL;
    if (msg->condition && *msg->condition) {
        keel_error_t err;
        cond = keel_cond_parse (msg->condition, &err);
        if (!cond) {
            char text[300];
            snprintf (text, sizeof text, "condition: %s", err.text);
            s_refuse (self, drv, msg->service_id, NULL, 0, KEEL__REFUSE_CODE__REFUSE_INVALID, text);
            keel_core_event (self, "service-refused", "service=%s driver=%s why=\"%s\"",
                             msg->service_id, drv->id, text);
            return;
        }
    }
    svc = keel_model_service_add (self->model, msg->service_id, msg->type, drv->id);
    if (!svc) {
        keel_cond_destroy (&cond);
        return;
    }
    svc->cond = cond;
    svc->priority = msg->has_priority ? msg->priority : 0;
    svc->max_attempts = msg->has_max_attempts ? msg->max_attempts : 0;
    svc->reschedule_delay_ms = msg->has_reschedule_delay_ms ? msg->reschedule_delay_ms : -1;
    if (msg->has_init_data && msg->init_data.len) {
        svc->init_data = malloc (msg->init_data.len);
        if (svc->init_data) {
            memcpy (svc->init_data, msg->init_data.data, msg->init_data.len);
            svc->init_len = msg->init_data.len;
        }
    }
    svc->state = KEEL_SERVICE_OPEN; // created so: not a move (core_life.c)
    svc->created_wall_ms = self->wall;
    s_store_service (self, svc);
    zlistx_add_end (self->fresh_services, svc);
    keel_core_accept (self, route, svc->id, NULL, 0);
    keel_core_event (self, "service-opened", "service=%s type=%s driver=%s priority=%d%s%s%s",
                     svc->id, svc->type, drv->id, svc->priority, cond ? " condition=\"" : "",
                     cond ? keel_cond_text (cond) : "", cond ? "\"" : "");
    char why[KEEL_UNSERVED_TEXT];
    if (!keel_model_service_served (self->model, svc, why, sizeof why)) {
        // Told again every minute while it lasts; DSNoEngineTimeout may
        // fail its tasks (core_serve.c).
        char text[KEEL_UNSERVED_TEXT + 32];
        snprintf (text, sizeof text, "%s yet; tasks wait", why);
        s_notice (self, drv, KEEL__NOTICE_LEVEL__NOTICE_WARNING, svc->id, text);
        svc->no_engine_notice_at = self->now;
    }
}

static void
s_submit_tasks (keel_core_t *self, keel_driver_rec_t *drv, zframe_t *route, Keel__SubmitTasks *msg)
{
    keel_service_rec_t *svc = keel_model_service (self->model, msg->service_id);
    uint64_t *ids = calloc (msg->n_tasks + 1, sizeof *ids);
    if (!ids)
        return;
    for (size_t i = 0; i < msg->n_tasks; i++)
        ids[i] = msg->tasks[i]->task_id;
    if (!svc) {
        s_refuse (self, drv, msg->service_id, ids, msg->n_tasks,
                  KEEL__REFUSE_CODE__REFUSE_UNKNOWN_SERVICE, "unknown service: submit it first");
        free (ids);
        return;
    }
    if (svc->state == KEEL_SERVICE_CANCELLED || svc->state == KEEL_SERVICE_CLOSED) {
        s_refuse (self, drv, svc->id, ids, msg->n_tasks, KEEL__REFUSE_CODE__REFUSE_SERVICE_CLOSED,
                  svc->state == KEEL_SERVICE_CANCELLED ? "service is cancelled"
                                                       : "service is closed");
        free (ids);
        return;
    }
    size_t nacc = 0;
    for (size_t i = 0; i < msg->n_tasks; i++) {
        Keel__TaskInput *in = msg->tasks[i];
        if (in->task_id >= self->max_tasks) {
            char text[160];
            snprintf (text, sizeof text, "task id %llu is not below MaxTasksPerService (%llu)",
                      (unsigned long long) in->task_id, (unsigned long long) self->max_tasks);
            s_refuse (self, drv, svc->id, &in->task_id, 1, KEEL__REFUSE_CODE__REFUSE_INVALID, text);
            continue;
        }
        if (keel_service_task (svc, in->task_id)) {
            ids[nacc++] = in->task_id; // already here: idempotent
            self->counters.tasks_resubmitted++;
            continue;
        }
        if (self->store_failed) {
            s_refuse (self, drv, svc->id, &in->task_id, 1, KEEL__REFUSE_CODE__REFUSE_STORE_FULL,
                      s_store_failed_text (self));
            continue;
        }
        keel_task_t *t = keel_service_task_add (svc, in->task_id, in->input.data,
                                                in->has_input ? in->input.len : 0);
        if (!t) {
            s_refuse (self, drv, svc->id, &in->task_id, 1, KEEL__REFUSE_CODE__REFUSE_STORE_FULL,
                      "broker out of memory");
            continue;
        }
        t->accepted_mono = self->now;
        self->counters.tasks_submitted++;
        keel_core_touch (self, svc, in->task_id, KEEL_DIRTY_NEW);
        keel_core_fresh_task (self, svc, in->task_id);
        if (!keel_core_pending_attach (self, svc, in->task_id)) {
            keel_service_queue_push (svc, in->task_id);
            keel_sched_activate (self->sched, svc);
        }
        ids[nacc++] = in->task_id;
    }
    if (nacc)
        keel_core_accept (self, route, svc->id, ids, nacc);
    free (ids);
}

static void
s_result_ack (keel_core_t *self, keel_driver_rec_t *drv, Keel__ResultAck *msg)
{
    keel_service_rec_t *svc = keel_model_service (self->model, msg->service_id);
    if (!svc)
        return;
    if (msg->n_delivered) {
        uint64_t n = s_delivered (self, drv, svc, msg->delivered, msg->n_delivered);
        if (n)
            KEEL_CORE_LOG (self, KEEL_CORE_RL_TASKS, KEEL_LOG_INFO,
                           "driver holds results service=%s tasks=%llu: not run or sent again",
                           svc->id, (unsigned long long) n);
    }
    for (size_t i = 0; i < msg->n_task_ids; i++) {
        keel_task_t *t = keel_service_task (svc, msg->task_ids[i]);
        if (!t || !t->result || t->acked)
            continue;
        t->acked = 1;
        svc->unacked--;
        self->counters.results_delivered++;
        keel_core_touch (self, svc, msg->task_ids[i], KEEL_DIRTY_ACK);
    }
}

keel_err
keel_core_cancel_service (keel_core_t *self, keel_service_rec_t *svc)
{
    if (svc->state == KEEL_SERVICE_CANCELLED)
        return KEEL_OK;
    keel_sched_remove (self->sched, svc);
    for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks;
         id = keel_service_task_next (svc, id + 1)) {
        keel_task_t *t = keel_service_task (svc, id);
        if (!t || t->state >= KEEL_TASK_STATE_DONE)
            continue;
        keel_service_queue_remove (svc, id);
        while (t->execs)
            keel_core_cancel_exec (self, t->execs, "service cancelled");
        keel_core_task_to (self, svc, id, KEEL_TASK_STATE_CANCELLED);
        keel_core_touch (self, svc, id, KEEL_DIRTY_STATE);
    }
    keel_core_event (self, "service-cancelled", "service=%s", svc->id);
    return keel_core_service_to (self, svc, KEEL_SERVICE_CANCELLED) ? KEEL_OK : KEEL_ERR_STATE;
}

// The driver moved these services back to its primary: stop working on
// them here and send their engines home, carrying the tasks.
static void
s_detach (keel_core_t *self, Keel__Detach *msg)
{
    for (size_t i = 0; i < msg->n_service_ids; i++) {
        keel_service_rec_t *svc = keel_model_service (self->model, msg->service_ids[i]);
        if (!svc || svc->state != KEEL_SERVICE_OPEN)
            continue;
        keel_core_service_to (self, svc, KEEL_SERVICE_DETACHED); // retention counts from here
        zlistx_t *sent = zlistx_new ();
        for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks;
             id = keel_service_task_next (svc, id + 1)) {
            keel_task_t *t = keel_service_task (svc, id);
            if (!t)
                continue;
            keel_service_queue_remove (svc, id);
            for (keel_exec_t *x = t->execs; x; x = x->next_of_task)
                if (x->engine && x->engine->state == KEEL_ENGINE_ONLINE && sent
                    && !zlistx_find (sent, x->engine)) {
                    zlistx_add_end (sent, x->engine);
                    keel_core_relogin (self, x->engine->route, "primary");
                }
        }
        zlistx_destroy (&sent);
        keel_core_event (self, "service-detached", "service=%s", svc->id);
    }
}

// With Security=curve, whether every service the message names belongs to
// the driver's key.
static bool
s_msg_owned (keel_core_t *self, keel_driver_rec_t *drv, keel_env_t *env)
{
    if (!self->principal[0])
        return true;
    if (drv->principal[0] && strcmp (drv->principal, self->principal) != 0) {
        keel_core_refused (self, true, "message as driver=%s from another key", drv->id);
        return false;
    }
    const char *one = NULL;
    char **ids = NULL;
    size_t n = 0;
    switch (env->body_case) {
        case KEEL__ENVELOPE__BODY_SUBMIT_SERVICE:
            one = env->submit_service->service_id;
            break;
        case KEEL__ENVELOPE__BODY_SUBMIT_TASKS:
            one = env->submit_tasks->service_id;
            break;
        case KEEL__ENVELOPE__BODY_RESULT_ACK:
            one = env->result_ack->service_id;
            break;
        case KEEL__ENVELOPE__BODY_CLOSE_SERVICE:
            one = env->close_service->service_id;
            break;
        case KEEL__ENVELOPE__BODY_CANCEL_SERVICE:
            one = env->cancel_service->service_id;
            break;
        case KEEL__ENVELOPE__BODY_DETACH:
            ids = env->detach->service_ids;
            n = env->detach->n_service_ids;
            break;
        case KEEL__ENVELOPE__BODY_SERVICE_QUERY:
            ids = env->service_query->service_ids;
            n = env->service_query->n_service_ids;
            break;
        default:
            break;
    }
    if (one && !s_owned (self, drv->id, one))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!s_owned (self, drv->id, ids[i]))
            return false;
    return true;
}

void
keel_core_driver_msg (keel_core_t *self, keel_driver_rec_t *drv, keel_env_t *env)
{
    if (!s_msg_owned (self, drv, env))
        return;
    switch (env->body_case) {
        case KEEL__ENVELOPE__BODY_HEARTBEAT:
            break;
        case KEEL__ENVELOPE__BODY_SUBMIT_SERVICE:
            s_submit_service (self, drv, drv->route, env->submit_service);
            break;
        case KEEL__ENVELOPE__BODY_SUBMIT_TASKS:
            s_submit_tasks (self, drv, drv->route, env->submit_tasks);
            break;
        case KEEL__ENVELOPE__BODY_RESULT_ACK:
            s_result_ack (self, drv, env->result_ack);
            break;
        case KEEL__ENVELOPE__BODY_CLOSE_SERVICE: {
            keel_service_rec_t *svc =
                keel_model_service (self->model, env->close_service->service_id);
            if (svc && svc->state == KEEL_SERVICE_OPEN) {
                keel_core_service_to (self, svc, KEEL_SERVICE_CLOSED);
                keel_core_event (self, "service-closed", "service=%s tasks=%llu unacked=%llu",
                                 svc->id, (unsigned long long) svc->total,
                                 (unsigned long long) svc->unacked);
            }
            break;
        }
        case KEEL__ENVELOPE__BODY_CANCEL_SERVICE: {
            keel_service_rec_t *svc =
                keel_model_service (self->model, env->cancel_service->service_id);
            if (svc)
                keel_core_cancel_service (self, svc);
            break;
        }
        case KEEL__ENVELOPE__BODY_DETACH:
            s_detach (self, env->detach);
            break;
        case KEEL__ENVELOPE__BODY_SERVICE_QUERY:
            s_service_query (self, drv, env->service_query);
            break;
        default:
            keel_core_malformed (self, "%s is not a driver message", keel_wire_body_name (env));
            break;
    }
}
