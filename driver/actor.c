/*  actor.c — the driver's background thread: sockets, services, session.

    One loop turn: poll the pipe and the broker sockets; apply commands from
    the application; apply messages from the broker; step the session
    (timers); send queued tasks within the flow-control budget; hand results
    and status events to the application; acknowledge the results handed
    over. See actor.h for the pipe messages and session.h for the states.
*/
#include "actor.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "outstanding.h"
#include "session.h"

#define S_COMPONENT "driver"
#define S_MAX_MSGS_PER_TURN 1000     // messages read from one socket per loop turn
#define S_MAX_BATCHES_PER_TURN 64    // SubmitTasks sent per service per loop turn
#define S_MAX_POLL_MS 1000
#define S_STORE_FULL_DELAY_MS 1000
#define S_CLOSE_LINGER_MS 2000       // time a Detach gets to leave a closed socket

typedef struct {
    keel_actor_open_t *open;
    keel_outstanding_t *tasks;
    bool submitted;                 // SubmitService sent on the current session socket
    bool closing;                   // the application closed it
    bool close_sent;                // CloseService sent on the current session socket
    bool cancelled;                 // cancelled or refused: nothing more is sent
    bool cancel_sent;
    bool finished;                  // closed, every result delivered, CloseService sent: nothing left to do
    int64_t resubmitted_at;         // last full resubmission after UNKNOWN_SERVICE
    uint64_t *acks;                 // task ids handed to the application, not yet acknowledged
    size_t nacks, acks_cap;
} s_service_t;

typedef enum { S_TO_APP_RESULT, S_TO_APP_STATUS } s_to_app_kind_t;

typedef struct {
    s_to_app_kind_t kind;
    void *item;                     // keel_result_t * or keel_actor_status_t *
    s_service_t *service;           // RESULT: acknowledge to it once handed over
    uint64_t task_id;
} s_to_app_t;

typedef struct {
    zsock_t *pipe;
    keel_actor_config_t *config;
    keel_session_t *session;
    zsock_t *main;                  // the session socket
    zsock_t *old;                   // the failover broker's socket during failback
    zsock_t *probe;                 // DEALER probing the primary
    zlistx_t *services;             // s_service_t *, in open order; owns them
    zhashx_t *by_id;                // service_id -> s_service_t * (not owned)
    zlistx_t *to_app;               // s_to_app_t * not yet in the pipe
    keel_env_t *welcome;            // the DriverWelcome being applied (RESYNC)
    uint64_t seq;
    int64_t hold_until;             // STORE_FULL: send no tasks before this
    bool send_blocked;              // a send hit the high-water mark this turn
    bool stopping;                  // STOP received: only $TERM is left
    bool terminated;
    keel_ratelimit_t rl_malformed;
    keel_ratelimit_t rl_unknown;
    Keel__TaskInput *inputs;        // scratch for SubmitTasks, batch_size entries
    Keel__TaskInput **input_ptrs;
    keel_outstanding_ref_t *refs;
} s_actor_t;

// ---------------------------------------------------------------- helpers

static void
s_service_destroy (s_service_t **self_p)
{
    s_service_t *self = *self_p;
    if (!self)
        return;
    keel_actor_open_destroy (&self->open);
    keel_outstanding_destroy (&self->tasks);
    free (self->acks);
    free (self);
    *self_p = NULL;
}

static void
s_service_list_destructor (void **item)
{
    s_service_destroy ((s_service_t **) item);
}

static bool
s_service_active (const s_service_t *svc)
{
    return !svc->cancelled && (!svc->closing || keel_outstanding_count (svc->tasks) > 0);
}

static void
s_log_limited (keel_ratelimit_t *rl, const char *what, const char *detail)
{
    int64_t suppressed = 0;
    if (keel_ratelimit_allow (rl, zclock_mono (), &suppressed)) {
        if (suppressed > 0)
            KEEL_WARN (S_COMPONENT, "%" PRId64 " similar messages suppressed", suppressed);
        KEEL_WARN (S_COMPONENT, "%s: %s", what, detail);
    }
}

static void
s_to_app (s_actor_t *self, s_to_app_kind_t kind, void *item, s_service_t *svc, uint64_t task_id)
{
    s_to_app_t *entry = calloc (1, sizeof *entry);
    if (!entry) {
        //  Out of memory: the result is not acknowledged, so the broker sends it again.
        free (item);
        if (svc)
            KEEL_ERROR (S_COMPONENT, "out of memory handing over a result");
        return;
    }
    entry->kind = kind;
    entry->item = item;
    entry->service = svc;
    entry->task_id = task_id;
    zlistx_add_end (self->to_app, entry);
}

static void
s_status (s_actor_t *self, keel_status_kind_t kind, keel_status_level_t level, const char *broker,
          const char *service_id, const char *text)
{
    KEEL_INFO (S_COMPONENT, "status %s kind=%s", text, keel_status_kind_name (kind));
    keel_actor_status_t *status = calloc (1, sizeof *status);
    if (!status)
        return;
    status->kind = kind;
    status->level = level;
    snprintf (status->text, sizeof status->text, "%s", text);
    snprintf (status->broker, sizeof status->broker, "%s", broker ? broker : "");
    snprintf (status->service_id, sizeof status->service_id, "%s", service_id ? service_id : "");
    s_to_app (self, S_TO_APP_STATUS, status, NULL, 0);
}

//  A result made here (refused, cancelled) or received: hand it over once.
static void
s_deliver (s_actor_t *self, s_service_t *svc, keel_result_t *result)
{
    if (!result) {
        KEEL_ERROR (S_COMPONENT, "out of memory building a result");
        return;
    }
    s_to_app (self, S_TO_APP_RESULT, result, svc, result->task_id);
}

static void
s_fail_task (s_actor_t *self, s_service_t *svc, uint64_t task_id, keel_task_status_t status,
             const char *error)
{
    s_deliver (self, svc, keel_actor_result_new (svc->open->service_id, task_id, status, NULL, 0,
                                                 error, ""));
}

//  Fails every task still waiting in svc and stops sending for it.
static void
s_fail_service (s_actor_t *self, s_service_t *svc, keel_task_status_t status, const char *error)
{
    svc->cancelled = true;
    uint64_t task_id;
    size_t bound = keel_outstanding_count (svc->tasks);
    for (size_t i = 0; i < bound && keel_outstanding_pop (svc->tasks, &task_id); i++)
        s_fail_task (self, svc, task_id, status, error);
}

// ---------------------------------------------------------------- sending

static zsock_t *
s_dealer_new (const char *endpoint)
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
    if (zsock_connect (sock, "%s", endpoint) != 0) {
        KEEL_ERROR (S_COMPONENT, "cannot connect to %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
    }
    return sock;
}

static keel_err
s_send (s_actor_t *self, zsock_t *sock, keel_env_t *env)
{
    if (!sock)
        return KEEL_ERR_STATE;
    env->has_seq = true;
    env->seq = ++self->seq;
    keel_err rc = keel_wire_send (sock, env);
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
s_open_ids (s_actor_t *self, size_t *count_p)
{
    size_t n = 0;
    char **ids = calloc (zlistx_size (self->services) + 1, sizeof (char *));
    if (!ids) {
        *count_p = 0;
        return NULL;
    }
    s_service_t *svc = zlistx_first (self->services);
    while (svc && n < KEEL_LIST_MAX) {
        if (s_service_active (svc))
            ids[n++] = svc->open->service_id;
        svc = zlistx_next (self->services);
    }
    *count_p = n;
    return ids;
}

static void
s_send_hello (s_actor_t *self, zsock_t *sock, bool primary)
{
    Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
    hello.driver_id = self->config->driver_id;
    hello.services = s_open_ids (self, &hello.n_services);
    hello.has_broker_timeout_ms = true;
    hello.broker_timeout_ms = (uint64_t) self->config->broker_timeout_ms;
    hello.has_heartbeat_ms = true;
    hello.heartbeat_ms = (uint64_t) keel_session_heartbeat_ms (self->session);
    hello.has_primary = true;
    hello.primary = primary;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
    env.driver_hello = &hello;
    s_send (self, sock, &env);
    free (hello.services);
}

static void
s_send_heartbeat (s_actor_t *self)
{
    Keel__Heartbeat heartbeat = KEEL__HEARTBEAT__INIT;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &heartbeat;
    s_send (self, self->main, &env);
}

static void
s_send_detach (s_actor_t *self, zsock_t *sock)
{
    Keel__Detach detach = KEEL__DETACH__INIT;
    detach.service_ids = s_open_ids (self, &detach.n_service_ids);
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    env.body_case = KEEL__ENVELOPE__BODY_DETACH;
    env.detach = &detach;
    s_send (self, sock, &env);
    free (detach.service_ids);
}

static keel_err
s_send_service (s_actor_t *self, s_service_t *svc)
{
    keel_actor_open_t *open = svc->open;
    Keel__SubmitService submit = KEEL__SUBMIT_SERVICE__INIT;
    submit.service_id = open->service_id;
    submit.type = open->type;
    submit.has_priority = true;
    submit.priority = open->priority;
    submit.has_max_attempts = true;
    submit.max_attempts = open->max_attempts;
    submit.has_reschedule_delay_ms = true;
    submit.reschedule_delay_ms = open->reschedule_delay_ms;
    if (open->init_data) {
        submit.has_init_data = true;
        submit.init_data.data = open->init_data;
        submit.init_data.len = open->init_data_size;
    }
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_SERVICE;
    env.submit_service = &submit;
    return s_send (self, self->main, &env);
}

static void
s_send_simple (s_actor_t *self, s_service_t *svc, bool cancel)
{
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    Keel__CloseService close = KEEL__CLOSE_SERVICE__INIT;
    Keel__CancelService cancel_msg = KEEL__CANCEL_SERVICE__INIT;
    if (cancel) {
        cancel_msg.service_id = svc->open->service_id;
        env.body_case = KEEL__ENVELOPE__BODY_CANCEL_SERVICE;
        env.cancel_service = &cancel_msg;
    }
    else {
        close.service_id = svc->open->service_id;
        env.body_case = KEEL__ENVELOPE__BODY_CLOSE_SERVICE;
        env.close_service = &close;
    }
    if (s_send (self, self->main, &env) == KEEL_OK) {
        if (cancel)
            svc->cancel_sent = true;
        else
            svc->close_sent = true;
    }
}

//  Sends queued tasks of svc within budget; returns the number sent.
static size_t
s_flush_service (s_actor_t *self, s_service_t *svc, size_t budget)
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
            Keel__TaskInput *input = &self->inputs[i];
            keel__task_input__init (input);
            input->has_task_id = true;
            input->task_id = self->refs[i].task_id;
            input->has_input = true;
            input->input.data = (uint8_t *) self->refs[i].input;
            input->input.len = self->refs[i].size;
            self->input_ptrs[i] = input;
        }
        Keel__SubmitTasks submit = KEEL__SUBMIT_TASKS__INIT;
        submit.service_id = svc->open->service_id;
        submit.n_tasks = n;
        submit.tasks = self->input_ptrs;
        keel_env_t env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
        env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_TASKS;
        env.submit_tasks = &submit;
        if (s_send (self, self->main, &env) != KEEL_OK) {
            for (size_t i = 0; i < n; i++)
                keel_outstanding_unsend (svc->tasks, self->refs[i].task_id);
            break;
        }
        sent += n;
    }
    return sent;
}

//  Sends what is due: services, task batches within DSMaxUnaccepted, closes.
static void
s_flush (s_actor_t *self, int64_t now)
{
    if (keel_session_state (self->session) != KEEL_SESSION_READY || !self->main)
        return;
    size_t unaccepted = 0;
    s_service_t *svc = zlistx_first (self->services);
    while (svc) {
        unaccepted += keel_outstanding_unaccepted (svc->tasks);
        svc = zlistx_next (self->services);
    }
    size_t max = (size_t) self->config->max_unaccepted;
    svc = zlistx_first (self->services);
    while (svc && !self->send_blocked) {
        if (svc->finished) {
            //  Results the broker sends again are still deduplicated and acknowledged.
        }
        else
        if (svc->cancelled) {
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
static void
s_flush_acks (s_actor_t *self)
{
    s_service_t *svc = zlistx_first (self->services);
    while (svc) {
        size_t done = 0;
        for (int turn = 0; turn < 16 && done < svc->nacks && self->main; turn++) {
            size_t n = svc->nacks - done > KEEL_LIST_MAX ? KEEL_LIST_MAX : svc->nacks - done;
            Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
            ack.service_id = svc->open->service_id;
            ack.n_task_ids = n;
            ack.task_ids = svc->acks + done;
            keel_env_t env;
            keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
            env.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
            env.result_ack = &ack;
            if (s_send (self, self->main, &env) != KEEL_OK)
                break;              // the broker sends them again; we acknowledge then
            done += n;
        }
        svc->nacks = 0;
        svc = zlistx_next (self->services);
    }
}

static void
s_ack_later (s_service_t *svc, uint64_t task_id)
{
    if (svc->nacks == svc->acks_cap) {
        size_t cap = svc->acks_cap ? svc->acks_cap * 2 : 256;
        uint64_t *acks = realloc (svc->acks, cap * sizeof (uint64_t));
        if (!acks)
            return;                 // unacknowledged: the broker re-sends, we ack the duplicate
        svc->acks = acks;
        svc->acks_cap = cap;
    }
    svc->acks[svc->nacks++] = task_id;
}

//  Moves results and status events into the pipe without blocking.
static void
s_push_app (s_actor_t *self)
{
    void *handle = zsock_resolve (self->pipe);
    size_t bound = zlistx_size (self->to_app);
    for (size_t i = 0; i < bound; i++) {
        s_to_app_t *entry = zlistx_first (self->to_app);
        const char *name = entry->kind == S_TO_APP_RESULT ? "RESULT" : "STATUS";
        if (zmq_send (handle, name, strlen (name), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            break;                  // the application is slow: try next turn
        zmq_send (handle, &entry->item, sizeof (void *), 0);
        if (entry->kind == S_TO_APP_RESULT && entry->service)
            s_ack_later (entry->service, entry->task_id);
        free (zlistx_detach (self->to_app, NULL));
    }
}

// ---------------------------------------------------------------- session actions

static void
s_forget_accepted (s_actor_t *self)
{
    s_service_t *svc = zlistx_first (self->services);
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

//  A broker welcomed us: resubmit what it does not know, resend what it
//  has not Accepted. SubmitService is idempotent, so every open service is
//  (re)submitted before its tasks flow again.
static void
s_resync (s_actor_t *self)
{
    s_service_t *svc = zlistx_first (self->services);
    while (svc) {
        svc->submitted = false;
        svc->close_sent = false;
        if (!svc->cancelled) {
            if (s_listed (self->welcome, svc->open->service_id))
                keel_outstanding_forget_accepted (svc->tasks);
            else
                keel_outstanding_resend_unaccepted (svc->tasks);
        }
        svc = zlistx_next (self->services);
    }
    self->hold_until = 0;
}

static void
s_run_actions (s_actor_t *self, const keel_session_out_t *out)
{
    const keel_actor_config_t *config = self->config;
    for (int i = 0; i < out->count; i++) {
        const keel_session_action_t *action = &out->actions[i];
        switch (action->what) {
            case KEEL_SESSION_DO_CONNECT:
                zsock_destroy (&self->main);
                self->main = s_dealer_new (config->brokers[action->broker]);
                KEEL_DEBUG (S_COMPONENT, "hello to %s", config->brokers[action->broker]);
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
            case KEEL_SESSION_DO_PROBE_OPEN:
                zsock_destroy (&self->probe);
                self->probe = s_dealer_new (config->brokers[0]);
                s_send_hello (self, self->probe, true);
                break;
            case KEEL_SESSION_DO_PROBE_CLOSE:
                zsock_destroy (&self->probe);
                break;
            case KEEL_SESSION_DO_ADOPT_PROBE:
                zsock_destroy (&self->old);
                self->old = self->main;
                self->main = self->probe;
                self->probe = NULL;
                break;
            case KEEL_SESSION_DO_DETACH_OLD:
                s_send_detach (self, self->old);
                break;
            case KEEL_SESSION_DO_CLOSE_OLD:
                if (self->old)
                    zsock_set_linger (self->old, S_CLOSE_LINGER_MS);
                zsock_destroy (&self->old);
                break;
            case KEEL_SESSION_DO_STATUS: {
                keel_status_kind_t kind = KEEL_STATUS_CONNECTED;
                keel_status_level_t level = KEEL_LEVEL_INFO;
                switch (action->status) {
                    case KEEL_SESSION_STATUS_CONNECTED: kind = KEEL_STATUS_CONNECTED; break;
                    case KEEL_SESSION_STATUS_LOST: kind = KEEL_STATUS_LOST; level = KEEL_LEVEL_WARNING; break;
                    case KEEL_SESSION_STATUS_RECONNECTED: kind = KEEL_STATUS_RECONNECTED; break;
                    case KEEL_SESSION_STATUS_FAILOVER: kind = KEEL_STATUS_FAILOVER; level = KEEL_LEVEL_WARNING; break;
                    case KEEL_SESSION_STATUS_FAILBACK: kind = KEEL_STATUS_FAILBACK; break;
                    case KEEL_SESSION_STATUS_TRYING: kind = KEEL_STATUS_TRYING; level = KEEL_LEVEL_WARNING; break;
                    default: break;
                }
                s_status (self, kind, level, config->brokers[keel_session_broker (self->session)],
                          NULL, action->text);
                break;
            }
            case KEEL_SESSION_DO_GIVE_UP: {
                char text[KEEL_TEXT_MAX];
                snprintf (text, sizeof text,
                          "no broker reachable: %d broker(s) tried for %.1f s each (DSBrokerTimeout)",
                          config->nbrokers, config->broker_timeout_ms / 1000.0);
                s_status (self, KEEL_STATUS_NO_BROKER, KEEL_LEVEL_ERROR, "", NULL, text);
                break;
            }
            default:
                break;
        }
    }
}

static void
s_step (s_actor_t *self, keel_session_event_t event, uint64_t heartbeat_ms)
{
    keel_session_out_t out;
    keel_session_step (self->session, event, heartbeat_ms, zclock_mono (), &out);
    s_run_actions (self, &out);
}

// ---------------------------------------------------------------- broker messages

static s_service_t *
s_lookup (s_actor_t *self, const char *service_id, const char *what)
{
    s_service_t *svc = service_id ? zhashx_lookup (self->by_id, service_id) : NULL;
    if (!svc)
        s_log_limited (&self->rl_unknown, what, "unknown service id, ignored");
    return svc;
}

static void
s_on_results (s_actor_t *self, const Keel__TaskResults *results)
{
    for (size_t i = 0; i < results->n_results; i++) {
        const Keel__TaskResult *r = results->results[i];
        s_service_t *svc = s_lookup (self, r->service_id, "task result");
        if (!svc)
            continue;
        switch (keel_outstanding_complete (svc->tasks, r->task_id)) {
            case KEEL_OUTSTANDING_NEW: {
                keel_task_status_t status = KEEL_TASK_FAILED;
                const char *error = r->error;
                if (r->status == KEEL__TASK_STATUS__STATUS_OK)
                    status = KEEL_TASK_OK;
                else
                if (r->status == KEEL__TASK_STATUS__STATUS_CANCELLED)
                    status = KEEL_TASK_CANCELLED;
                else
                if (r->status != KEEL__TASK_STATUS__STATUS_FAILED && !error)
                    error = "result without a status";
                keel_result_t *result = keel_actor_result_new (
                    svc->open->service_id, r->task_id, status,
                    r->has_output ? r->output.data : NULL, r->has_output ? r->output.len : 0,
                    error, r->engine_id);
                if (result) {
                    result->execution_id = r->execution_id;
                    result->attempts = r->attempts;
                    if (r->timings) {
                        result->queued_ms = r->timings->queued_ms;
                        result->run_ms = r->timings->run_ms;
                    }
                }
                s_deliver (self, svc, result);
                break;
            }
            case KEEL_OUTSTANDING_DUPLICATE:
                s_ack_later (svc, r->task_id);
                break;
            default:
                s_log_limited (&self->rl_unknown, "task result", "unknown task id, ignored");
                break;
        }
    }
}

static void
s_on_accepted (s_actor_t *self, const Keel__Accepted *accepted)
{
    s_service_t *svc = s_lookup (self, accepted->service_id, "accepted");
    if (!svc)
        return;
    for (size_t i = 0; i < accepted->n_task_ids; i++)
        keel_outstanding_accept (svc->tasks, accepted->task_ids[i]);
}

static void
s_on_refused (s_actor_t *self, const Keel__Refused *refused, int64_t now)
{
    s_service_t *svc = s_lookup (self, refused->service_id, "refused");
    if (!svc || svc->cancelled)
        return;
    const char *error = refused->error ? refused->error : "";
    KEEL_INFO (S_COMPONENT, "refused service=%s code=%d tasks=%zu: %s", svc->open->service_id,
               (int) refused->code, refused->n_task_ids, error);
    int64_t guard = 3 * keel_session_heartbeat_ms (self->session);
    switch (refused->code) {
        case KEEL__REFUSE_CODE__REFUSE_UNKNOWN_SERVICE:
            if (refused->n_task_ids == 0 || now - svc->resubmitted_at > guard) {
                //  The broker lost the service: everything again, once per 3·H.
                svc->resubmitted_at = now;
                svc->submitted = false;
                svc->close_sent = false;
                keel_outstanding_forget_accepted (svc->tasks);
            }
            else
                for (size_t i = 0; i < refused->n_task_ids; i++)
                    keel_outstanding_unsend (svc->tasks, refused->task_ids[i]);
            break;
        case KEEL__REFUSE_CODE__REFUSE_STORE_FULL: {
            for (size_t i = 0; i < refused->n_task_ids; i++)
                keel_outstanding_unsend (svc->tasks, refused->task_ids[i]);
            if (now >= self->hold_until) {
                char text[KEEL_TEXT_MAX];
                snprintf (text, sizeof text, "broker store full (%s); retrying %zu task(s) in %.1f s",
                          error, refused->n_task_ids, S_STORE_FULL_DELAY_MS / 1000.0);
                s_status (self, KEEL_STATUS_STORE_FULL, KEEL_LEVEL_WARNING, "",
                          svc->open->service_id, text);
            }
            self->hold_until = now + S_STORE_FULL_DELAY_MS;
            break;
        }
        default: {
            //  INVALID, SERVICE_CLOSED or an unnamed reason: do not retry.
            char text[KEEL_TEXT_MAX];
            snprintf (text, sizeof text, "refused by broker: %s", error[0] ? error : "no reason given");
            if (refused->n_task_ids == 0)
                s_fail_service (self, svc, KEEL_TASK_FAILED, text);
            else
                for (size_t i = 0; i < refused->n_task_ids; i++)
                    if (keel_outstanding_complete (svc->tasks, refused->task_ids[i])
                        == KEEL_OUTSTANDING_NEW)
                        s_fail_task (self, svc, refused->task_ids[i], KEEL_TASK_FAILED, text);
            break;
        }
    }
}

static void
s_on_notice (s_actor_t *self, const Keel__Notice *notice)
{
    keel_status_level_t level = KEEL_LEVEL_INFO;
    if (notice->level == KEEL__NOTICE_LEVEL__NOTICE_WARNING)
        level = KEEL_LEVEL_WARNING;
    else
    if (notice->level == KEEL__NOTICE_LEVEL__NOTICE_ERROR)
        level = KEEL_LEVEL_ERROR;
    s_status (self, KEEL_STATUS_NOTICE, level,
              self->config->brokers[keel_session_broker (self->session)], notice->service_id,
              notice->text ? notice->text : "");
}

static void
s_on_message (s_actor_t *self, keel_env_t *env, int64_t now)
{
    keel_session_received (self->session, now);
    switch (env->body_case) {
        case KEEL__ENVELOPE__BODY_DRIVER_WELCOME:
            KEEL_INFO (S_COMPONENT, "welcome broker=%s epoch=%" PRIu64 " unknown_services=%zu",
                       env->driver_welcome->broker_name ? env->driver_welcome->broker_name : "",
                       env->driver_welcome->epoch, env->driver_welcome->n_unknown_services);
            self->welcome = env;
            s_step (self, KEEL_SESSION_EV_WELCOME, env->driver_welcome->heartbeat_ms);
            self->welcome = NULL;
            break;
        case KEEL__ENVELOPE__BODY_RELOGIN:
            s_step (self, KEEL_SESSION_EV_RELOGIN, 0);
            break;
        case KEEL__ENVELOPE__BODY_HEARTBEAT:
            break;
        case KEEL__ENVELOPE__BODY_NOTICE:
            s_on_notice (self, env->notice);
            break;
        case KEEL__ENVELOPE__BODY_ACCEPTED:
            s_on_accepted (self, env->accepted);
            break;
        case KEEL__ENVELOPE__BODY_REFUSED:
            s_on_refused (self, env->refused, now);
            break;
        case KEEL__ENVELOPE__BODY_TASK_RESULTS:
            s_on_results (self, env->task_results);
            break;
        default:
            s_log_limited (&self->rl_malformed, "unexpected message from broker",
                           keel_wire_body_name (env));
            break;
    }
}

//  Decodes one frame from a broker socket; NULL (logged) when malformed.
static keel_env_t *
s_recv (s_actor_t *self, zsock_t *sock)
{
    zframe_t *frame = zframe_recv (sock);
    if (!frame)
        return NULL;
    keel_error_t err = { "" };
    keel_env_t *env = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
    bool more = zframe_more (frame);
    zframe_destroy (&frame);
    if (env && (more || env->sender != KEEL__SENDER_KIND__SENDER_BROKER)) {
        snprintf (err.text, sizeof err.text, "%s", more ? "multi-frame message" : "sender is not a broker");
        keel_wire_free (&env);
    }
    if (!env)
        s_log_limited (&self->rl_malformed, "malformed message from broker", err.text);
    return env;
}

static void
s_handle_main (s_actor_t *self)
{
    zsock_t *sock = self->main;
    for (int i = 0; i < S_MAX_MSGS_PER_TURN && sock == self->main; i++) {
        if (!(zsock_events (sock) & ZMQ_POLLIN))
            break;
        keel_env_t *env = s_recv (self, sock);
        if (env)
            s_on_message (self, env, zclock_mono ());
        keel_wire_free (&env);
    }
}

static void
s_handle_probe (s_actor_t *self)
{
    zsock_t *sock = self->probe;
    for (int i = 0; i < S_MAX_MSGS_PER_TURN && sock && sock == self->probe; i++) {
        if (!(zsock_events (sock) & ZMQ_POLLIN))
            break;
        keel_env_t *env = s_recv (self, sock);
        if (env && env->body_case == KEEL__ENVELOPE__BODY_DRIVER_WELCOME) {
            KEEL_INFO (S_COMPONENT, "primary %s answered the probe", self->config->brokers[0]);
            self->welcome = env;
            s_step (self, KEEL_SESSION_EV_PROBE_WELCOME, env->driver_welcome->heartbeat_ms);
            self->welcome = NULL;
            if (self->main == sock)
                keel_session_received (self->session, zclock_mono ());
        }
        keel_wire_free (&env);
    }
}

// ---------------------------------------------------------------- application commands

static void
s_cmd_open (s_actor_t *self, keel_actor_open_t *open)
{
    if (zhashx_lookup (self->by_id, open->service_id)) {
        keel_actor_open_destroy (&open);
        return;
    }
    s_service_t *svc = calloc (1, sizeof *svc);
    if (svc)
        svc->tasks = keel_outstanding_new ();
    if (!svc || !svc->tasks) {
        KEEL_ERROR (S_COMPONENT, "out of memory opening service %s", open->service_id);
        keel_actor_open_destroy (&open);
        s_service_destroy (&svc);
        return;
    }
    svc->open = open;
    svc->resubmitted_at = INT64_MIN / 2;
    zlistx_add_end (self->services, svc);
    zhashx_insert (self->by_id, open->service_id, svc);
}

static void
s_cmd_tasks (s_actor_t *self, keel_actor_tasks_t *batch)
{
    for (size_t i = 0; i < batch->count; i++) {
        keel_actor_task_t *task = &batch->tasks[i];
        s_service_t *svc = zhashx_lookup (self->by_id, task->service_id);
        uint8_t *input = task->input;
        task->input = NULL;
        if (!svc) {
            free (input);
            continue;
        }
        keel_err rc = keel_outstanding_add (svc->tasks, task->task_id, input, task->size);
        if (rc == KEEL_ERR_NOMEM)
            s_fail_task (self, svc, task->task_id, KEEL_TASK_FAILED, "out of memory in the driver");
        else
        if (rc != KEEL_OK)
            KEEL_ERROR (S_COMPONENT, "task %" PRIu64 " out of order in service %s", task->task_id,
                        task->service_id);
        if (svc->cancelled)
            s_fail_service (self, svc, KEEL_TASK_CANCELLED, "service cancelled");
    }
    keel_actor_tasks_destroy (&batch);
}

static void
s_handle_pipe (s_actor_t *self)
{
    for (int i = 0; i < S_MAX_MSGS_PER_TURN && !self->terminated; i++) {
        if (!(zsock_events (self->pipe) & ZMQ_POLLIN))
            break;
        zmsg_t *msg = zmsg_recv (self->pipe);
        if (!msg) {
            self->terminated = true;
            break;
        }
        char *command = zmsg_popstr (msg);
        zframe_t *arg = zmsg_pop (msg);
        void *ptr = NULL;
        if (arg && zframe_size (arg) == sizeof (void *))
            memcpy (&ptr, zframe_data (arg), sizeof ptr);
        if (!command) {
            //  Nothing else sends on the pipe: ignore.
        }
        else
        if (streq (command, "$TERM"))
            self->terminated = true;
        else
        if (streq (command, "STOP")) {
            self->stopping = true;
            zstr_send (self->pipe, "STOPPED");
        }
        else
        if (streq (command, "OPEN") && ptr)
            s_cmd_open (self, (keel_actor_open_t *) ptr);
        else
        if (streq (command, "TASKS") && ptr)
            s_cmd_tasks (self, (keel_actor_tasks_t *) ptr);
        else
        if ((streq (command, "CLOSE") || streq (command, "CANCEL")) && arg) {
            char *service_id = zframe_strdup (arg);
            s_service_t *svc = service_id ? zhashx_lookup (self->by_id, service_id) : NULL;
            if (svc && streq (command, "CLOSE"))
                svc->closing = true;
            else
            if (svc && !svc->cancelled)
                s_fail_service (self, svc, KEEL_TASK_CANCELLED, "service cancelled");
            free (service_id);
        }
        zstr_free (&command);
        zframe_destroy (&arg);
        zmsg_destroy (&msg);
    }
}

// ---------------------------------------------------------------- loop

static s_actor_t *
s_actor_new (zsock_t *pipe, keel_actor_config_t *config)
{
    s_actor_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->pipe = pipe;
    self->config = config;
    keel_session_config_t sc = {
        .nbrokers = config->nbrokers,
        .brokers = (const char *const *) config->brokers,
        .broker_timeout_ms = config->broker_timeout_ms,
        .primary_retry_ms = config->primary_retry_ms,
        .heartbeat_ms = config->heartbeat_ms,
        .seed = (uint32_t) zclock_mono () ^ (uint32_t) (uintptr_t) self,
    };
    int64_t now = zclock_mono ();
    self->session = keel_session_new (&sc, now);
    self->services = zlistx_new ();
    self->by_id = zhashx_new ();
    self->to_app = zlistx_new ();
    size_t batch = (size_t) config->batch_size;
    self->inputs = calloc (batch, sizeof (Keel__TaskInput));
    self->input_ptrs = calloc (batch, sizeof (Keel__TaskInput *));
    self->refs = calloc (batch, sizeof (keel_outstanding_ref_t));
    keel_ratelimit_t rl = KEEL_RATELIMIT_INIT (10000, 5);
    self->rl_malformed = rl;
    self->rl_unknown = rl;
    if (!self->session || !self->services || !self->by_id || !self->to_app || !self->inputs
        || !self->input_ptrs || !self->refs)
        return self;                // s_actor_run checks and cleans up
    zlistx_set_destructor (self->services, s_service_list_destructor);
    return self;
}

static void
s_actor_destroy (s_actor_t **self_p)
{
    s_actor_t *self = *self_p;
    if (!self)
        return;
    //  Give the last acknowledgements a moment to leave (zmq_close does not
    //  block; process exit waits up to the linger). A lost broker gets none.
    if (self->main && self->session && keel_session_state (self->session) == KEEL_SESSION_READY)
        zsock_set_linger (self->main, S_CLOSE_LINGER_MS);
    zsock_destroy (&self->main);
    zsock_destroy (&self->old);
    zsock_destroy (&self->probe);
    if (self->to_app) {
        s_to_app_t *entry = zlistx_first (self->to_app);
        while (entry) {
            free (entry->item);
            free (entry);
            entry = zlistx_next (self->to_app);
        }
        zlistx_destroy (&self->to_app);
    }
    zhashx_destroy (&self->by_id);
    zlistx_destroy (&self->services);
    keel_session_destroy (&self->session);
    keel_actor_config_destroy (&self->config);
    free (self->inputs);
    free (self->input_ptrs);
    free (self->refs);
    free (self);
    *self_p = NULL;
}

static long
s_poll_timeout (s_actor_t *self, int64_t now)
{
    int64_t deadline = keel_session_next_deadline (self->session);
    if (self->hold_until > now && self->hold_until < deadline)
        deadline = self->hold_until;
    int64_t wait = deadline - now;
    if (self->send_blocked)
        wait = wait > 10 ? 10 : wait;
    if (wait < 0)
        wait = 0;
    if (wait > S_MAX_POLL_MS)
        wait = S_MAX_POLL_MS;
    return (long) wait;
}

void
keel_actor_run (zsock_t *pipe, void *args)
{
    s_actor_t *self = s_actor_new (pipe, (keel_actor_config_t *) args);
    if (!self || !self->session || !self->inputs || !self->to_app || !self->refs) {
        if (self)
            s_actor_destroy (&self);
        else
            keel_actor_config_destroy ((keel_actor_config_t **) &args);
        zsock_signal (pipe, 1);
        return;
    }
    zsock_signal (pipe, 0);
    s_step (self, KEEL_SESSION_EV_START, 0);
    //  Runs until $TERM: each turn is bounded; the loop ends with the driver.
    while (!self->terminated) {
        int64_t now = zclock_mono ();
        zmq_pollitem_t items[3];
        int n = 0;
        items[n++] = (zmq_pollitem_t) { zsock_resolve (self->pipe), 0,
                                        (short) (ZMQ_POLLIN | (zlistx_size (self->to_app) && !self->stopping
                                                               ? ZMQ_POLLOUT : 0)), 0 };
        zsock_t *main = self->stopping ? NULL : self->main;
        zsock_t *probe = self->stopping ? NULL : self->probe;
        if (main)
            items[n++] = (zmq_pollitem_t) { zsock_resolve (main), 0, ZMQ_POLLIN, 0 };
        if (probe)
            items[n++] = (zmq_pollitem_t) { zsock_resolve (probe), 0, ZMQ_POLLIN, 0 };
        long timeout = self->stopping ? -1 : s_poll_timeout (self, now);
        self->send_blocked = false;
        if (zmq_poll (items, n, timeout) < 0) {
            if (zmq_errno () == EINTR)
                continue;
            break;
        }
        s_handle_pipe (self);
        if (self->stopping || self->terminated)
            continue;
        if (main && main == self->main)
            s_handle_main (self);
        if (probe && probe == self->probe)
            s_handle_probe (self);
        s_step (self, KEEL_SESSION_EV_TICK, 0);
        s_flush (self, zclock_mono ());
        s_push_app (self);
        s_flush_acks (self);
    }
    s_actor_destroy (&self);
}

// ---------------------------------------------------------------- message structs

void
keel_actor_config_destroy (keel_actor_config_t **config_p)
{
    keel_actor_config_t *config = *config_p;
    if (!config)
        return;
    for (int i = 0; i < config->nbrokers && config->brokers; i++)
        free (config->brokers[i]);
    free (config->brokers);
    free (config);
    *config_p = NULL;
}

void
keel_actor_open_destroy (keel_actor_open_t **open_p)
{
    keel_actor_open_t *open = *open_p;
    if (!open)
        return;
    free (open->init_data);
    free (open);
    *open_p = NULL;
}

void
keel_actor_tasks_destroy (keel_actor_tasks_t **tasks_p)
{
    keel_actor_tasks_t *batch = *tasks_p;
    if (!batch)
        return;
    for (size_t i = 0; i < batch->count; i++)
        free (batch->tasks[i].input);
    free (batch->tasks);
    free (batch);
    *tasks_p = NULL;
}

keel_result_t *
keel_actor_result_new (const char *service_id, uint64_t task_id, keel_task_status_t status,
                       const void *output, size_t size, const char *error, const char *engine_id)
{
    service_id = service_id ? service_id : "";
    error = error ? error : "";
    engine_id = engine_id ? engine_id : "";
    size_t lsid = strlen (service_id) + 1, lerr = strlen (error) + 1, leng = strlen (engine_id) + 1;
    //  One block: the struct, then output (plus a NUL for convenience), then the strings.
    keel_result_t *result = malloc (sizeof *result + size + 1 + lsid + lerr + leng);
    if (!result)
        return NULL;
    memset (result, 0, sizeof *result);
    uint8_t *p = (uint8_t *) (result + 1);
    if (size)
        memcpy (p, output, size);
    p[size] = 0;
    result->output = p;
    result->output_size = size;
    p += size + 1;
    memcpy (p, service_id, lsid);
    result->service_id = (const char *) p;
    p += lsid;
    memcpy (p, error, lerr);
    result->error = (const char *) p;
    p += lerr;
    memcpy (p, engine_id, leng);
    result->engine_id = (const char *) p;
    result->task_id = task_id;
    result->status = status;
    return result;
}
