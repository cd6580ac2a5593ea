/*  actor_broker.c — the broker side of the driver's actor: what it sends to
    the brokers and what it does with their answers.

    Submissions and their flow control, acknowledgements, the session's
    actions (connect, hello, heartbeat, probe, failback, resync after a
    welcome). The handling of each broker message (results, Accepted,
    Refused and the resubmission it may call for, notices, service status)
    is in actor_inbox.c; the loop, the pipe and the actor's lifetime in
    actor.c; actor_int.h has what they share.
*/
#include "actor_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define S_COMPONENT            "driver"
#define S_MAX_BATCHES_PER_TURN 64   // SubmitTasks sent per service per loop turn
#define S_HELLO_RANGES         2048 // range entries in one DriverHello, all services (<= 20 KB)
#define S_TELL_RANGES          8192 // range entries in one ResultAck.delivered (<= 80 KB)

// ---------------------------------------------------------------- helpers

//  A service this driver submitted and still collects: listed in hellos,
//  Detach and the results it holds.
static bool
s_service_active (const keel_actor_service_t *svc)
{
    return svc->open->mode == KEEL_ACTOR_SUBMIT && !svc->cancelled && !svc->detached
           && (!svc->closing || keel_outstanding_count (svc->tasks) > 0);
}

//  A service taken over (keel_session_attach) whose results still come:
//  listed in DriverHello.attach until the broker described it and every
//  result it waits for came.
static bool
s_attach_active (const keel_actor_service_t *svc)
{
    keel_actor_mode_t mode = svc->open->mode;
    return (mode == KEEL_ACTOR_ATTACH || mode == KEEL_ACTOR_ATTACH_ALL) && !svc->cancelled
           && !svc->attach_failed
           && (!svc->attach_known || keel_outstanding_count (svc->tasks) > 0);
}

void
keel_actor_log_limited (keel_ratelimit_t *rl, const char *what, const char *detail)
{
    int64_t suppressed = 0;
    if (keel_ratelimit_allow (rl, zclock_mono (), &suppressed)) {
        if (suppressed > 0)
            KEEL_WARN (S_COMPONENT, "%" PRId64 " similar messages suppressed", suppressed);
        KEEL_WARN (S_COMPONENT, "%s: %s", what, detail);
    }
}

static void
s_to_app (keel_actor_t *self, keel_actor_to_app_kind_t kind, void *item, keel_actor_service_t *svc,
          uint64_t task_id)
{
    keel_actor_to_app_t entry = { kind, item, svc, task_id };
    if (!keel_fifo_push (&self->to_app, &entry)) {
        //  Out of memory: the result is not acknowledged, so the broker sends it again.
        free (item);
        if (svc)
            KEEL_ERROR (S_COMPONENT, "out of memory handing over a result");
    }
}

keel_actor_status_t *
keel_actor_status (keel_actor_t *self, keel_status_kind_t kind, keel_status_level_t level,
                   const char *broker, const char *service_id, const char *text)
{
    KEEL_LOG_LIMITED (&self->rl_peer, zclock_mono (), KEEL_LOG_INFO, S_COMPONENT,
                      "status %s kind=%s", text, keel_status_kind_name (kind));
    keel_actor_status_t *status = calloc (1, sizeof *status);
    if (!status)
        return NULL;
    status->kind = kind;
    status->level = level;
    snprintf (status->text, sizeof status->text, "%s", text);
    snprintf (status->broker, sizeof status->broker, "%s", broker ? broker : "");
    snprintf (status->service_id, sizeof status->service_id, "%s", service_id ? service_id : "");
    s_to_app (self, KEEL_ACTOR_TO_APP_STATUS, status, NULL, 0);
    return status; // still the actor's to fill until the next hand-over
}

//  ServiceInfo as the application reads it.
void
keel_actor_info_copy (const Keel__ServiceInfo *in, keel_service_info_t *out)
{
    memset (out, 0, sizeof *out);
    out->answered = true;
    if (!in)
        return;
    out->known = in->known;
    snprintf (out->state, sizeof out->state, "%s", in->state ? in->state : "");
    out->tasks = in->tasks;
    out->done = in->done;
    out->failed = in->failed;
    out->unacked = in->unacked;
    out->complete = in->complete;
}

//  A result made here (refused, cancelled) or received: hand it over once.
void
keel_actor_deliver (keel_actor_t *self, keel_actor_service_t *svc, keel_result_t *result)
{
    if (!result) {
        KEEL_ERROR (S_COMPONENT, "out of memory building a result");
        return;
    }
    s_to_app (self, KEEL_ACTOR_TO_APP_RESULT, result, svc, result->task_id);
}

void
keel_actor_fail_task (keel_actor_t *self, keel_actor_service_t *svc, uint64_t task_id,
                      keel_task_status_t status, const char *error)
{
    keel_actor_deliver (
        self, svc,
        keel_actor_result_new (svc->open->service_id, task_id, status, NULL, 0, error, ""));
}

//  Fails every task still waiting in svc and stops sending for it.
void
keel_actor_fail_service (keel_actor_t *self, keel_actor_service_t *svc, keel_task_status_t status,
                         const char *error)
{
    svc->cancelled = true;
    uint64_t task_id;
    size_t bound = keel_outstanding_count (svc->tasks);
    for (size_t i = 0; i < bound && keel_outstanding_pop (svc->tasks, &task_id); i++)
        keel_actor_fail_task (self, svc, task_id, status, error);
}

// ---------------------------------------------------------------- sending

static zsock_t *
s_dealer_new (const keel_security_t *security, const char *endpoint)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_maxmsgsize (sock, KEEL_DEFAULT_MAX_MSG_SIZE);
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_reconnect_ivl (sock, 100);
    zsock_set_reconnect_ivl_max (sock, 2000);
    keel_security_client (sock, security, NULL);
    if (zsock_connect (sock, "%s", endpoint) != 0) {
        KEEL_ERROR (S_COMPONENT, "cannot connect to %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
    }
    return sock;
}

static keel_err
s_send (keel_actor_t *self, zsock_t *sock, keel_env_t *env)
{
    if (!sock)
        return KEEL_ERR_STATE;
    keel_err rc = keel_link_send (sock, env, &self->seq);
    if (rc == KEEL_OK && sock == self->main)
        keel_session_sent (self->session, zclock_mono ());
    if (rc != KEEL_OK) {
        self->send_blocked = true;
        KEEL_DEBUG (S_COMPONENT, "send %s failed", keel_wire_body_name (env));
    }
    return rc;
}

//  Service ids the driver still has open, for DriverHello and Detach.
static char **
s_open_ids (keel_actor_t *self, size_t *count_p)
{
    size_t n = 0;
    char **ids = calloc (zlistx_size (self->services) + 1, sizeof (char *));
    if (!ids) {
        *count_p = 0;
        return NULL;
    }
    keel_actor_service_t *svc = zlistx_first (self->services);
    while (svc && n < KEEL_LIST_MAX) {
        if (s_service_active (svc))
            ids[n++] = svc->open->service_id;
        svc = zlistx_next (self->services);
    }
    *count_p = n;
    return ids;
}

// The list for DriverHello.delivered (*n_p entries, NULL when there is no
// memory): per open service (at most max), the task ids whose results the
// driver holds, within S_HELLO_RANGES entries in all (the rest follows the
// welcome: s_tell_delivered). The caller frees the list, *entries_p and
// *buf_p.
static Keel__DeliveredTasks **
s_hello_delivered (keel_actor_t *self, size_t max, size_t *n_p, Keel__DeliveredTasks **entries_p,
                   uint64_t **buf_p)
{
    Keel__DeliveredTasks *entries = calloc (max + 1, sizeof *entries);
    Keel__DeliveredTasks **ptrs = calloc (max + 1, sizeof *ptrs);
    uint64_t *buf = malloc (S_HELLO_RANGES * sizeof *buf);
    *entries_p = entries;
    *buf_p = buf;
    *n_p = 0;
    if (!entries || !ptrs || !buf) {
        free (ptrs); // no list: the broker learns it after the welcome
        return NULL;
    }
    size_t n = 0, used = 0;
    keel_actor_service_t *svc = zlistx_first (self->services);
    while (svc && n < max && S_HELLO_RANGES - used >= 2) {
        size_t nexcept = 0;
        uint64_t *except = NULL;
        if (s_service_active (svc) && keel_actor_not_kept (self, svc, &except, &nexcept)) {
            keel_ranges_writer_t w;
            keel_ranges_writer_init (&w, buf + used, S_HELLO_RANGES - used);
            uint64_t from = 0;
            keel_outstanding_delivered (svc->tasks, &from, &w, except, nexcept);
            free (except);
            if (w.n > 0) {
                keel_item_delivered (&entries[n], svc->open->service_id, w.buf, w.n);
                ptrs[n] = &entries[n];
                n++;
                used += w.n;
            }
        }
        svc = zlistx_next (self->services);
    }
    *n_p = n;
    return ptrs;
}

static void
s_send_hello (keel_actor_t *self, zsock_t *sock, bool primary)
{
    size_t n_services = 0;
    char **services = s_open_ids (self, &n_services);
    keel_driver_hello_args_t hello = {
        .driver_id = self->config->driver_id,
        .services = services,
        .n_services = n_services,
        .broker_timeout_ms = (uint64_t) self->config->broker_timeout_ms,
        .heartbeat_ms = (uint64_t) keel_session_heartbeat_ms (self->session),
        .primary = primary,
    };
    Keel__DeliveredTasks *entries = NULL;
    uint64_t *ranges = NULL;
    Keel__DeliveredTasks **delivered =
        s_hello_delivered (self, n_services, &hello.n_delivered, &entries, &ranges);
    hello.delivered = delivered;
    size_t cap = zlistx_size (self->services) + 1;
    Keel__AttachService *attach = calloc (cap, sizeof *attach);
    Keel__AttachService **attach_ptrs = calloc (cap, sizeof *attach_ptrs);
    for (keel_actor_service_t *svc = zlistx_first (self->services);
         svc && attach && attach_ptrs && hello.n_attach < KEEL_LIST_MAX;
         svc = zlistx_next (self->services))
        if (s_attach_active (svc)) {
            keel_item_attach (&attach[hello.n_attach], svc->open->service_id,
                              svc->open->mode == KEEL_ACTOR_ATTACH_ALL);
            attach_ptrs[hello.n_attach] = &attach[hello.n_attach];
            hello.n_attach++;
        }
    hello.attach = attach_ptrs;
    keel_msg_t msg;
    s_send (self, sock, keel_msg_driver_hello (&msg, &hello));
    free (attach);
    free (attach_ptrs);
    free (services);
    free (delivered);
    free (entries);
    free (ranges);
}

void
keel_actor_hello_again (keel_actor_t *self)
{
    if (self->main)
        s_send_hello (self, self->main, keel_session_broker (self->session) == 0);
}

static void
s_send_heartbeat (keel_actor_t *self)
{
    keel_msg_t msg;
    s_send (self, self->main, keel_msg_heartbeat (&msg, KEEL__SENDER_KIND__SENDER_DRIVER, NULL, 0));
}

static void
s_send_detach (keel_actor_t *self, zsock_t *sock)
{
    size_t n = 0;
    char **ids = s_open_ids (self, &n);
    keel_msg_t msg;
    s_send (self, sock, keel_msg_detach (&msg, ids, n));
    free (ids);
}

static keel_err
s_send_service (keel_actor_t *self, keel_actor_service_t *svc)
{
    keel_actor_open_t *open = svc->open;
    keel_submit_service_args_t submit = {
        .service_id = open->service_id,
        .type = open->type,
        .priority = open->priority,
        .max_attempts = open->max_attempts,
        .reschedule_delay_ms = open->reschedule_delay_ms,
        .init_data = open->init_data,
        .init_size = open->init_data_size,
        .condition = open->condition,
    };
    keel_msg_t msg;
    return s_send (self, self->main, keel_msg_submit_service (&msg, &submit));
}

static void
s_send_simple (keel_actor_t *self, keel_actor_service_t *svc, bool cancel)
{
    keel_msg_t msg;
    const char *id = svc->open->service_id;
    keel_env_t *env =
        cancel ? keel_msg_cancel_service (&msg, id) : keel_msg_close_service (&msg, id);
    if (s_send (self, self->main, env) == KEEL_OK) {
        if (cancel)
            svc->cancel_sent = true;
        else
            svc->close_sent = true;
    }
}

//  Sends queued tasks of svc within budget; returns the number sent.
static size_t
s_flush_service (keel_actor_t *self, keel_actor_service_t *svc, size_t budget)
{
    if (!svc->submitted) {
        if (s_send_service (self, svc) != KEEL_OK)
            return 0;
        svc->submitted = true;
    }
    size_t sent = 0;
    size_t batch = (size_t) self->config->batch_size;
    for (int turn = 0; turn < S_MAX_BATCHES_PER_TURN && sent < budget; turn++) {
        size_t max = budget - sent < batch ? budget - sent : batch;
        size_t n = keel_outstanding_take (svc->tasks, max, self->refs);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            keel_item_task_input (&self->inputs[i], self->refs[i].task_id,
                                  (const uint8_t *) self->refs[i].input, self->refs[i].size);
            self->input_ptrs[i] = &self->inputs[i];
        }
        keel_msg_t msg;
        keel_env_t *env = keel_msg_submit_tasks (&msg, svc->open->service_id, self->input_ptrs, n);
        if (s_send (self, self->main, env) != KEEL_OK) {
            for (size_t i = 0; i < n; i++)
                keel_outstanding_unsend (svc->tasks, self->refs[i].task_id);
            break;
        }
        sent += n;
    }
    return sent;
}

//  keel_service_detach is done: every task is stored and the service closed
//  (or it ended here anyway). Nothing more is sent, delivered or
//  acknowledged for it.
static void
s_detached (keel_actor_t *self, keel_actor_service_t *svc)
{
    svc->detached = true;
    svc->finished = true;
    char text[KEEL_TEXT_MAX];
    snprintf (text, sizeof text,
              "service %s detached: %" PRIu64 " task(s) stored at %s; its results wait there",
              svc->open->service_id, keel_outstanding_next_id (svc->tasks),
              keel_session_endpoint (self->session, keel_session_broker (self->session)));
    keel_actor_status (self, KEEL_STATUS_DETACHED, KEEL_LEVEL_INFO,
                       keel_session_endpoint (self->session, keel_session_broker (self->session)),
                       svc->open->service_id, text);
}

#define S_WATCH_MS 1000 // ServiceQuery interval for watched services

//  Asks how the watched services stand, once per S_WATCH_MS while ready.
static void
s_flush_watch (keel_actor_t *self, int64_t now)
{
    char *ids[64];
    size_t n = 0;
    for (keel_actor_service_t *svc = zlistx_first (self->services); svc && n < 64;
         svc = zlistx_next (self->services))
        if (svc->open->mode == KEEL_ACTOR_WATCH && now - svc->queried_at >= S_WATCH_MS) {
            ids[n++] = svc->open->service_id;
            svc->queried_at = now;
        }
    if (n == 0)
        return;
    keel_msg_t msg;
    s_send (self, self->main, keel_msg_service_query (&msg, ids, n));
}

//  Sends what is due: services, task batches within DSMaxUnaccepted, closes.
void
keel_actor_flush (keel_actor_t *self, int64_t now)
{
    if (keel_session_state (self->session) != KEEL_SESSION_READY || !self->main)
        return;
    size_t unaccepted = 0;
    keel_actor_service_t *svc = zlistx_first (self->services);
    while (svc) {
        unaccepted += keel_outstanding_unaccepted (svc->tasks);
        svc = zlistx_next (self->services);
    }
    size_t max = (size_t) self->config->max_unaccepted;
    s_flush_watch (self, now);
    svc = zlistx_first (self->services);
    while (svc && !self->send_blocked) {
        if (svc->open->mode != KEEL_ACTOR_SUBMIT || svc->detached) {
            //  Attached and watched services send no tasks; acknowledgements
            //  go with keel_actor_flush_acks.
        }
        else if (svc->detaching && (svc->finished || svc->cancelled))
            s_detached (self, svc);
        else if (svc->detaching) {
            if (now >= self->hold_until && unaccepted < max
                && (keel_outstanding_has_unsent (svc->tasks) || !svc->submitted))
                unaccepted += s_flush_service (self, svc, max - unaccepted);
            if (svc->closing && svc->submitted && keel_outstanding_all_accepted (svc->tasks)) {
                s_send_simple (self, svc, false);
                if (svc->close_sent)
                    s_detached (self, svc);
            }
        }
        else if (svc->finished) {
            //  Results the broker sends again are still deduplicated and acknowledged.
        }
        else if (svc->cancelled) {
            if (!svc->cancel_sent)
                s_send_simple (self, svc, true);
        }
        else {
            if (now >= self->hold_until && unaccepted < max
                && (keel_outstanding_has_unsent (svc->tasks) || !svc->submitted))
                unaccepted += s_flush_service (self, svc, max - unaccepted);
            if (svc->closing && !svc->close_sent && svc->submitted
                && keel_outstanding_count (svc->tasks) == 0) {
                s_send_simple (self, svc, false);
                svc->finished = svc->close_sent;
            }
        }
        svc = zlistx_next (self->services);
    }
}

//  Acknowledges every result handed to the application.
void
keel_actor_flush_acks (keel_actor_t *self)
{
    keel_actor_service_t *svc = zlistx_first (self->services);
    while (svc) {
        size_t done = 0;
        for (int turn = 0; turn < 16 && done < svc->nacks && self->main; turn++) {
            size_t n = svc->nacks - done > KEEL_LIST_MAX ? KEEL_LIST_MAX : svc->nacks - done;
            keel_msg_t msg;
            keel_env_t *env =
                keel_msg_result_ack (&msg, svc->open->service_id, svc->acks + done, n, NULL, 0);
            if (s_send (self, self->main, env) != KEEL_OK)
                break; // the broker sends them again; we acknowledge then
            done += n;
        }
        svc->nacks = 0;
        svc = zlistx_next (self->services);
    }
}

void
keel_actor_ack_later (keel_actor_service_t *svc, uint64_t task_id)
{
    if (svc->nacks == svc->acks_cap) {
        size_t cap = svc->acks_cap ? svc->acks_cap * 2 : 256;
        uint64_t *acks = realloc (svc->acks, cap * sizeof (uint64_t));
        if (!acks)
            return; // unacknowledged: the broker re-sends, we ack the duplicate
        svc->acks = acks;
        svc->acks_cap = cap;
    }
    svc->acks[svc->nacks++] = task_id;
}

// ---------------------------------------------------------------- session actions

static void
s_forget_accepted (keel_actor_t *self)
{
    keel_actor_service_t *svc = zlistx_first (self->services);
    while (svc) {
        keel_outstanding_forget_accepted (svc->tasks);
        svc->submitted = false;
        svc->close_sent = false;
        svc = zlistx_next (self->services);
    }
}

static bool
s_listed (const keel_env_t *welcome, const char *service_id)
{
    if (!welcome || welcome->body_case != KEEL__ENVELOPE__BODY_DRIVER_WELCOME)
        return false;
    const Keel__DriverWelcome *w = welcome->driver_welcome;
    for (size_t i = 0; i < w->n_unknown_services; i++)
        if (streq (w->unknown_services[i], service_id))
            return true;
    return false;
}

//  DriverWelcome.held: the broker stores these tasks of svc already (a
//  pair's peer that took over has what its mirror had): they count as
//  Accepted and are not sent again. Ids beyond what the driver submitted
//  are ignored (the loop is bounded by them, whatever the broker says).
static size_t
s_welcome_held (const keel_env_t *welcome, keel_actor_service_t *svc)
{
    size_t counted = 0; // tasks not Accepted before: the welcome accepted them
    if (!welcome || welcome->body_case != KEEL__ENVELOPE__BODY_DRIVER_WELCOME)
        return 0;
    const Keel__DriverWelcome *w = welcome->driver_welcome;
    uint64_t next = keel_outstanding_next_id (svc->tasks);
    for (size_t i = 0; i < w->n_held; i++) {
        if (!streq (w->held[i]->service_id, svc->open->service_id))
            continue;
        keel_ranges_reader_t r;
        keel_ranges_reader_init (&r, w->held[i]->ranges, w->held[i]->n_ranges);
        uint64_t lo, hi;
        while (keel_ranges_reader_next (&r, &lo, &hi) && lo < next)
            for (uint64_t id = lo; id < hi && id < next; id++)
                counted += keel_outstanding_accept (svc->tasks, id, w->held_alone);
        break;
    }
    return counted;
}

#define S_ATTACH_MAX_TASKS (UINT64_C (1) << 31) // task ids an attach takes on

static const Keel__ServiceInfo *
s_attached_info (const keel_env_t *welcome, const char *service_id)
{
    if (!welcome || welcome->body_case != KEEL__ENVELOPE__BODY_DRIVER_WELCOME)
        return NULL;
    const Keel__DriverWelcome *w = welcome->driver_welcome;
    for (size_t i = 0; i < w->n_attached; i++)
        if (streq (w->attached[i]->service_id, service_id))
            return w->attached[i];
    return NULL;
}

//  DriverWelcome.attached for an attached service: its task ids join the
//  service's outstanding tasks (never sent: counted Accepted), those the
//  broker says never come (ServiceInfo.skip) leave it, and the application
//  hears how many results it now waits for. A first broker that does not
//  know the service fails the attach; a later one (a failover broker)
//  does not: the results are where the service was stored.
static void
s_welcome_attached (keel_actor_t *self, keel_actor_service_t *svc)
{
    const char *id = svc->open->service_id;
    const char *broker = keel_session_endpoint (self->session, keel_session_broker (self->session));
    const Keel__ServiceInfo *info = s_attached_info (self->welcome, id);
    char text[KEEL_TEXT_MAX];
    keel_actor_status_t *status;
    if (!info)
        return; // the answer to a hello sent before the attach: the next one says
    if (!info->known) {
        if (svc->attach_known) {
            snprintf (text, sizeof text,
                      "%s does not know service %s: its results are on the broker that stored it; "
                      "still waiting for them",
                      broker, id);
            keel_actor_status (self, KEEL_STATUS_ATTACHED, KEEL_LEVEL_WARNING, broker, id, text);
            return;
        }
        svc->attach_failed = true;
        snprintf (text, sizeof text,
                  "no such service %s at %s: never submitted there, or purged after "
                  "RetentionHours",
                  id, broker);
        status = keel_actor_status (self, KEEL_STATUS_ATTACHED, KEEL_LEVEL_ERROR, broker, id, text);
        if (status) {
            status->has_info = true;
            keel_actor_info_copy (info, &status->info);
        }
        return;
    }
    uint64_t next = info->next_task < S_ATTACH_MAX_TASKS ? info->next_task : S_ATTACH_MAX_TASKS;
    for (uint64_t t = keel_outstanding_next_id (svc->tasks); t < next; t++) {
        if (keel_outstanding_add (svc->tasks, t, NULL, 0) != KEEL_OK)
            break; // out of memory: those results are not taken
        keel_outstanding_accept (svc->tasks, t, false);
        svc->expect++;
    }
    keel_ranges_reader_t r;
    keel_ranges_reader_init (&r, info->skip, info->n_skip);
    uint64_t lo, hi;
    while (keel_ranges_reader_next (&r, &lo, &hi) && lo < next)
        for (uint64_t t = lo; t < hi && t < next; t++)
            if (keel_outstanding_complete (svc->tasks, t) == KEEL_OUTSTANDING_NEW)
                svc->expect--;
    snprintf (text, sizeof text,
              "attached to service %s at %s (%s, %" PRIu64 " tasks, %" PRIu64
              " done): %zu result(s) to collect",
              id, broker, info->state ? info->state : "?", info->tasks, info->done,
              keel_outstanding_count (svc->tasks));
    svc->attach_known = true;
    status = keel_actor_status (self, KEEL_STATUS_ATTACHED, KEEL_LEVEL_INFO, broker, id, text);
    if (status) {
        status->has_info = true;
        keel_actor_info_copy (info, &status->info);
        status->expect = svc->expect;
    }
}

//  A broker welcomed us: resubmit what it does not know, resend what it
//  has not Accepted. SubmitService is idempotent, so every open service is
//  (re)submitted before its tasks flow again.
static void
s_resync (keel_actor_t *self)
{
    size_t held = 0;
    keel_actor_service_t *svc = zlistx_first (self->services);
    while (svc) {
        svc->submitted = false;
        svc->close_sent = false;
        if (svc->open->mode == KEEL_ACTOR_WATCH)
            svc->queried_at = INT64_MIN / 2; // ask the new broker at once
        else if (svc->open->mode != KEEL_ACTOR_SUBMIT) {
            if (s_attach_active (svc))
                s_welcome_attached (self, svc);
        }
        else if (!svc->cancelled) {
            if (s_listed (self->welcome, svc->open->service_id))
                keel_outstanding_forget_accepted (svc->tasks);
            else {
                keel_outstanding_forget_alone (svc->tasks);
                held += s_welcome_held (self->welcome, svc);
                keel_outstanding_resend_unaccepted (svc->tasks);
            }
        }
        svc = zlistx_next (self->services);
    }
    if (held)
        KEEL_INFO (S_COMPONENT,
                   "welcome: the broker holds %zu task(s) not yet accepted: counted accepted, "
                   "not sent again",
                   held);
    self->hold_until = 0;
}

//  Right after a welcome, before any task is resent: tells the broker every
//  task id of each service it knows whose result the driver holds
//  (ResultAck.delivered, in chunks of S_TELL_RANGES entries), so it runs
//  none of them again and sends none of their results again. The hello
//  said most of it; this adds what did not fit and what arrived since.
static void
s_tell_delivered (keel_actor_t *self)
{
    uint64_t *buf = NULL;
    keel_actor_service_t *svc = zlistx_first (self->services);
    while (svc && self->main) {
        size_t nexcept = 0;
        uint64_t *except = NULL;
        if (s_service_active (svc) && !s_listed (self->welcome, svc->open->service_id)
            && keel_actor_not_kept (self, svc, &except, &nexcept)) {
            uint64_t from = 0, ids = 0;
            size_t msgs = 0;
            while (from < keel_outstanding_next_id (svc->tasks)) {
                if (!buf)
                    buf = malloc (S_TELL_RANGES * sizeof *buf);
                if (!buf)
                    break; // the broker may then run some again: harmless
                keel_ranges_writer_t w;
                keel_ranges_writer_init (&w, buf, S_TELL_RANGES);
                keel_outstanding_delivered (svc->tasks, &from, &w, except, nexcept);
                if (w.n == 0)
                    break;
                keel_msg_t msg;
                keel_env_t *env =
                    keel_msg_result_ack (&msg, svc->open->service_id, NULL, 0, w.buf, w.n);
                if (s_send (self, self->main, env) != KEEL_OK)
                    break;
                ids += w.ids;
                msgs++;
            }
            if (ids)
                KEEL_LOG_LIMITED (
                    &self->rl_peer, zclock_mono (), KEEL_LOG_INFO, S_COMPONENT,
                    "told %s: results held service=%s tasks=%" PRIu64
                    " messages=%zu outstanding=%zu",
                    keel_session_endpoint (self->session, keel_session_broker (self->session)),
                    svc->open->service_id, ids, msgs, keel_outstanding_count (svc->tasks));
            free (except);
        }
        svc = zlistx_next (self->services);
    }
    free (buf);
}

static void
s_run_actions (keel_actor_t *self, const keel_session_out_t *out)
{
    const keel_actor_config_t *config = self->config;
    for (int i = 0; i < out->count; i++) {
        const keel_session_action_t *action = &out->actions[i];
        switch (action->what) {
            case KEEL_SESSION_DO_CONNECT:
                zsock_destroy (&self->main);
                self->main = s_dealer_new (&self->config->security,
                                           keel_session_endpoint (self->session, action->broker));
                self->gen++;
                KEEL_DEBUG (S_COMPONENT, "hello to %s",
                            keel_session_endpoint (self->session, action->broker));
                s_send_hello (self, self->main, action->broker == 0);
                break;
            case KEEL_SESSION_DO_HELLO:
                s_send_hello (self, self->main, keel_session_broker (self->session) == 0);
                break;
            case KEEL_SESSION_DO_HEARTBEAT:
                s_send_heartbeat (self);
                break;
            case KEEL_SESSION_DO_FORGET_ACCEPTED:
                s_forget_accepted (self);
                break;
            case KEEL_SESSION_DO_RESYNC:
                s_resync (self);
                break;
            case KEEL_SESSION_DO_TELL_DELIVERED:
                s_tell_delivered (self);
                break;
            case KEEL_SESSION_DO_PROBE_OPEN:
                zsock_destroy (&self->probe);
                self->probe = s_dealer_new (&self->config->security,
                                            keel_session_endpoint (self->session, 0));
                self->gen++;
                s_send_hello (self, self->probe, true);
                break;
            case KEEL_SESSION_DO_PROBE_CLOSE:
                zsock_destroy (&self->probe);
                self->gen++;
                break;
            case KEEL_SESSION_DO_ADOPT_PROBE:
                zsock_destroy (&self->old);
                self->old = self->main;
                self->main = self->probe;
                self->probe = NULL;
                self->gen++;
                break;
            case KEEL_SESSION_DO_DETACH_OLD:
                s_send_detach (self, self->old);
                break;
            case KEEL_SESSION_DO_CLOSE_OLD:
                if (self->old)
                    zsock_set_linger (self->old, KEEL_ACTOR_CLOSE_LINGER_MS);
                zsock_destroy (&self->old);
                break;
            case KEEL_SESSION_DO_STATUS: {
                keel_status_kind_t kind = KEEL_STATUS_CONNECTED;
                keel_status_level_t level = KEEL_LEVEL_INFO;
                switch (action->status) {
                    case KEEL_SESSION_STATUS_CONNECTED:
                        kind = KEEL_STATUS_CONNECTED;
                        break;
                    case KEEL_SESSION_STATUS_LOST:
                        kind = KEEL_STATUS_LOST;
                        level = KEEL_LEVEL_WARNING;
                        break;
                    case KEEL_SESSION_STATUS_RECONNECTED:
                        kind = KEEL_STATUS_RECONNECTED;
                        break;
                    case KEEL_SESSION_STATUS_FAILOVER:
                        kind = KEEL_STATUS_FAILOVER;
                        level = KEEL_LEVEL_WARNING;
                        break;
                    case KEEL_SESSION_STATUS_FAILBACK:
                        kind = KEEL_STATUS_FAILBACK;
                        break;
                    case KEEL_SESSION_STATUS_TRYING:
                        kind = KEEL_STATUS_TRYING;
                        level = KEEL_LEVEL_WARNING;
                        break;
                    case KEEL_SESSION_STATUS_CONNECTING:
                        kind = KEEL_STATUS_CONNECTING;
                        break;
                    case KEEL_SESSION_STATUS_STILL_CONNECTING:
                        kind = KEEL_STATUS_CONNECTING;
                        level = KEEL_LEVEL_WARNING;
                        break;
                    default:
                        break;
                }
                keel_actor_status (
                    self, kind, level,
                    keel_session_endpoint (self->session, keel_session_broker (self->session)),
                    NULL, action->text);
                break;
            }
            case KEEL_SESSION_DO_GIVE_UP: {
                char text[KEEL_TEXT_MAX], timeout[32];
                keel_session_duration_text (config->broker_timeout_ms, timeout, sizeof timeout);
                if (keel_session_nbrokers (self->session) == 1)
                    snprintf (text, sizeof text,
                              "no broker reachable: %s did not answer for %s (DSBrokerTimeout)",
                              keel_session_endpoint (self->session, 0), timeout);
                else
                    snprintf (text, sizeof text,
                              "no broker reachable: %d brokers tried for %s each (DSBrokerTimeout)",
                              keel_session_nbrokers (self->session), timeout);
                keel_actor_status (self, KEEL_STATUS_NO_BROKER, KEEL_LEVEL_ERROR, "", NULL, text);
                break;
            }
            default:
                break;
        }
    }
}

void
keel_actor_step (keel_actor_t *self, keel_session_event_t event, uint64_t heartbeat_ms)
{
    keel_session_input_t in = { .event = event, .heartbeat_ms = heartbeat_ms };
    keel_actor_apply (self, &in);
}

void
keel_actor_apply (keel_actor_t *self, const keel_session_input_t *in)
{
    keel_session_out_t out;
    keel_session_apply (self->session, in, zclock_mono (), &out);
    s_run_actions (self, &out);
}

// A welcome from a member of a shared store lists the live members: the
// ones this driver was not configured with become brokers it may turn to,
// and every one (the welcoming broker too) is known as a member.
static void
s_learn_members (keel_actor_t *self, const Keel__DriverWelcome *w, int broker)
{
    if (w->n_cluster_members)
        keel_session_member (self->session, broker);
    for (size_t i = 0; i < w->n_cluster_members; i++) {
        int before = keel_session_nbrokers (self->session);
        int at = keel_session_learn (self->session, w->cluster_members[i]);
        if (at >= before)
            KEEL_INFO (S_COMPONENT, "broker %s is a member of the cluster: added as broker %d",
                       w->cluster_members[i], at);
        keel_session_member (self->session, at);
    }
}

bool
keel_actor_admit (keel_actor_t *self, const keel_env_t *env, int broker, int64_t now)
{
    bool welcome = env->body_case == KEEL__ENVELOPE__BODY_DRIVER_WELCOME;
    if (welcome) // members first: their epochs are not checked
        s_learn_members (self, env->driver_welcome, broker);
    if (keel_session_admit (self->session, broker, welcome,
                            welcome ? env->driver_welcome->pair_peer : NULL, env->has_epoch,
                            env->epoch))
        return true;
    KEEL_LOG_LIMITED (&self->rl_stale, now, KEEL_LOG_INFO, S_COMPONENT,
                      "dropped %s from %s: epoch %" PRIu64
                      " is below the highest its pair has shown (a deposed active broker) "
                      "dropped=%" PRIu64,
                      keel_wire_body_name (env), keel_session_endpoint (self->session, broker),
                      env->epoch, keel_session_stale_count (self->session));
    return false;
}
