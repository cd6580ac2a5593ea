/*  driver.c — libkeeldriver's application-thread side (keel/driver.h).

    Everything here runs in the application's thread: it validates what the
    application asks, batches submitted tasks, sends commands to the actor
    (actor.c) and turns the actor's events into callbacks or kept results.
*/
#include "keel/driver.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "actor.h"
#include "cli.h"
#include "cond.h"
#include "driver_config.h"
#include "fifo.h"
#include "journal.h"
#include "thread.h"
#include "log.h"

#define S_MAX_BROKERS          16
#define S_MAX_EVENTS_PER_POLL  10000 // pipe batches and lent events per keel_driver_poll
#define S_STOP_WAIT_MS         5000
#define S_LEND_EVENTS          KEEL_ACTOR_EVENTS_MAX // events taken by one lend
#define S_BORROW_WAIT_MS       1000 // then wait on the pipe instead (the actor is stuck)
//  A lend pays when the application waits for a few results (a round trip's
//  latency); with more in flight the actor thread decodes, acknowledges and
//  sends in parallel with the application, so the wait stays on the pipe.
#define S_LEND_MAX_OUTSTANDING 16

struct _keel_service_t {
    keel_driver_t *driver;
    char id[KEEL_ID_MAX + 1];
    keel_actor_mode_t mode;
    uint64_t next_id;   // SUBMIT: tasks submitted
    int64_t expected;   // ATTACH*: results waited for in all (the broker's answer)
    uint64_t delivered; // results handed to the application
    bool closed;
    bool cancelled;
    bool detaching;
    bool detached;
    keel_service_info_t info;
};

struct _keel_driver_t {
    keel_thread_t *thread;
    zsock_t *actor;     // the actor thread's pipe (keel_thread_pipe)
    keel_actor_t *core; // the actor's state, lent while this thread waits; NULL once it ended
    keel_lend_t *lend;  // its lend token (actor_lend.h)
    keel_actor_event_t events[S_LEND_EVENTS];
    char id[37];
    keel_status_fn *status_fn;
    void *status_arg;
    keel_result_fn *result_fn;
    void *result_arg;
    zlistx_t *services;           // keel_service_t *, owned
    zhashx_t *by_id;              // id -> keel_service_t * (not owned)
    keel_fifo_t results;          // keel_result_t * kept for keel_driver_next_result
    keel_service_t *last_service; // the last result's (services live as long as the driver)
    keel_actor_tasks_t *pending;  // submitted, not yet passed to the actor
    size_t batch_size;
    uint64_t submitted;
    uint64_t delivered;
    bool lent_last; // the last wait lent the actor (it may be parked)
    bool hold_acks; // keel_driver_hold_acks: acknowledge only what the application kept
    uint64_t taken; // ... results handed to the application (in the actor's order)
    uint64_t acked; // ... of which the actor was told to acknowledge this many
    bool no_broker; // a NO_BROKER event waits to be returned
    char no_broker_text[KEEL_TEXT_MAX + 1];
};

// ---------------------------------------------------------------- helpers

static void
s_service_free (void **item)
{
    free (*item);
    *item = NULL;
}

//  The oldest kept result, or NULL.
static keel_result_t *
s_results_pop (keel_driver_t *self)
{
    keel_result_t *result = NULL;
    keel_fifo_pop (&self->results, &result);
    return result;
}

//  Splits a comma list into endpoints appended to brokers[]; checks each.
static keel_err
s_add_brokers (char **brokers, int *count, const char *list, const char *key, keel_error_t *err)
{
    const char *p = list;
    for (int guard = 0; guard <= S_MAX_BROKERS && *p; guard++) {
        const char *end = strchr (p, ',');
        size_t len = end ? (size_t) (end - p) : strlen (p);
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 0) {
            if (*count >= S_MAX_BROKERS)
                return keel_error_set (err, KEEL_ERR_CONFIG, "%s: more than %d brokers", key,
                                       S_MAX_BROKERS);
            char *url = strndup (p, len);
            if (!url)
                return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
            if (!strstr (url, "://")) {
                keel_err rc =
                    keel_error_set (err, KEEL_ERR_CONFIG,
                                    "%s: '%s' is not an endpoint (e.g. tcp://host:7070)", key, url);
                free (url);
                return rc;
            }
            brokers[(*count)++] = url;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return KEEL_OK;
}

//  Sends a command to the actor on the pipe and counts it, so the next
//  lend starts only once the actor has applied it (actor_lend.h).
static int
s_command (keel_driver_t *self, const char *picture, const char *name, const void *arg)
{
    int rc = zsock_send (self->actor, picture, name, arg);
    if (rc == 0)
        keel_lend_sent (self->lend);
    return rc;
}

static bool
s_has_pending (const keel_driver_t *self)
{
    return self->pending && self->pending->count > 0;
}

static keel_err
s_flush_pending (keel_driver_t *self)
{
    if (!s_has_pending (self))
        return KEEL_OK;
    keel_actor_tasks_t *batch = self->pending;
    self->pending = NULL;
    if (s_command (self, "sp", "TASKS", batch) != 0) {
        keel_actor_tasks_destroy (&batch);
        return KEEL_ERR_IO;
    }
    return KEEL_OK;
}

static void
s_handle_result (keel_driver_t *self, keel_result_t *result)
{
    keel_service_t *last = self->last_service;
    result->service = last && strcmp (last->id, result->service_id) == 0
                          ? last
                          : zhashx_lookup (self->by_id, result->service_id);
    if (result->service)
        self->last_service = result->service;
    self->delivered++;
    if (result->service)
        result->service->delivered++;
    KEEL_JOURNAL ("delivered", .service = result->service_id, .task = result->task_id,
                  .execution = result->execution_id, .engine = result->engine_id,
                  .status = result->status == KEEL_TASK_OK       ? "ok"
                            : result->status == KEEL_TASK_FAILED ? "failed"
                                                                 : "cancelled",
                  .output = result->status == KEEL_TASK_OK ? (const void *) result->output : NULL,
                  .output_len = result->output_size,
                  .text = result->status == KEEL_TASK_OK ? NULL : result->error);
    if (self->result_fn) {
        self->taken++;
        self->result_fn (result, self->result_arg);
        keel_result_destroy (&result);
    }
    else if (!keel_fifo_push (&self->results, &result)) {
        KEEL_ERROR ("driver", "out of memory keeping result %" PRIu64 " of %s", result->task_id,
                    result->service_id);
        keel_result_destroy (&result);
    }
}

static void
s_handle_status (keel_driver_t *self, keel_actor_status_t *msg)
{
    keel_status_t status = { msg->kind, msg->level, msg->text, msg->broker, msg->service_id };
    keel_service_t *service =
        msg->service_id[0] ? zhashx_lookup (self->by_id, msg->service_id) : NULL;
    if (service && msg->has_info)
        service->info = msg->info;
    if (service && msg->kind == KEEL_STATUS_ATTACHED && msg->has_info && msg->info.known) {
        //  The results it waits for count as submitted from now on.
        self->submitted = (uint64_t) ((int64_t) self->submitted + msg->expect - service->expected);
        service->expected = msg->expect;
    }
    if (service && msg->kind == KEEL_STATUS_DETACHED && !service->detached) {
        //  Its results will not come here: they count as delivered.
        service->detached = true;
        if (service->next_id > service->delivered)
            self->delivered += service->next_id - service->delivered;
    }
    if (msg->kind == KEEL_STATUS_NO_BROKER) {
        self->no_broker = true;
        snprintf (self->no_broker_text, sizeof self->no_broker_text, "%s", msg->text);
    }
    if (self->status_fn)
        self->status_fn (&status, self->status_arg);
    else
        KEEL_LOG (msg->level == KEEL_LEVEL_INFO      ? KEEL_LOG_INFO
                  : msg->level == KEEL_LEVEL_WARNING ? KEEL_LOG_WARN
                                                     : KEEL_LOG_ERROR,
                  "driver", "%s: %s", keel_status_kind_name (msg->kind), msg->text);
    free (msg);
}

//  Handles one event from the actor (a pipe batch's or a lend's), in order.
static void
s_handle_event (keel_driver_t *self, const keel_actor_event_t *event)
{
    if (event->kind == KEEL_ACTOR_TO_APP_RESULT)
        s_handle_result (self, (keel_result_t *) event->item);
    else
        s_handle_status (self, (keel_actor_status_t *) event->item);
}

//  Frees an event the application will never see (the driver is ending).
static void
s_event_free (const keel_actor_event_t *event)
{
    if (event->kind == KEEL_ACTOR_TO_APP_RESULT) {
        keel_result_t *result = event->item;
        keel_result_destroy (&result);
    }
    else
        free (event->item);
}

//  Reads one message from the actor without waiting. Returns false when
//  none is waiting. A batch of events (actor.h) is handled in order,
//  or freed when handle is false; *stopped_p is set on "STOPPED".
static bool
s_read_events (keel_driver_t *self, bool handle, bool *stopped_p)
{
    void *pipe = zsock_resolve (self->actor);
    zmq_msg_t name, body;
    zmq_msg_init (&name);
    if (zmq_msg_recv (&name, pipe, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&name);
        return false;
    }
    zmq_msg_init (&body);
    bool have_body = zmq_msg_more (&name) && zmq_msg_recv (&body, pipe, 0) >= 0;
    for (int more = have_body && zmq_msg_more (&body), i = 0; more && i < 64; i++) {
        zmq_msg_t extra; // not sent by the actor; read whole, dropped
        zmq_msg_init (&extra);
        more = zmq_msg_recv (&extra, pipe, 0) >= 0 && zmq_msg_more (&extra);
        zmq_msg_close (&extra);
    }
    size_t len = zmq_msg_size (&name);
    const char *text = zmq_msg_data (&name);
    if (len == 6 && memcmp (text, "EVENTS", 6) == 0 && have_body) {
        size_t n = zmq_msg_size (&body) / sizeof (keel_actor_event_t);
        keel_actor_event_t event;
        for (size_t i = 0; i < n; i++) {
            memcpy (&event, (const char *) zmq_msg_data (&body) + i * sizeof event, sizeof event);
            if (handle)
                s_handle_event (self, &event);
            else
                s_event_free (&event);
        }
    }
    else if (len == 7 && memcmp (text, "STOPPED", 7) == 0 && stopped_p)
        *stopped_p = true;
    zmq_msg_close (&name);
    zmq_msg_close (&body);
    return true;
}

//  Whether the next wait lends the actor (few tasks in flight) or stays on
//  the pipe.
static bool
s_lends (const keel_driver_t *self)
{
    return self->submitted - self->delivered <= S_LEND_MAX_OUTSTANDING;
}

//  Handles the event batches the actor thread already put in the pipe, at
//  most max messages, without waiting and without a poll per message, and
//  adds how many it read to *handled. Tasks callbacks submitted go to the
//  actor after each batch, unless the next wait lends (the lend hands them
//  over without a command the actor must apply first).
static keel_err
s_drain (keel_driver_t *self, size_t max, size_t *handled, keel_error_t *err)
{
    for (size_t n = 0; n < max && s_read_events (self, true, NULL); n++) {
        ++*handled;
        if (!s_lends (self) && s_flush_pending (self) != KEEL_OK)
            return keel_error_set (err, KEEL_ERR_IO, "cannot reach the driver thread");
    }
    return KEEL_OK;
}

//  The wait without a lend (many tasks in flight, or the actor does not
//  hand over within S_BORROW_WAIT_MS): sends the pending tasks, waits on
//  the pipe until until only when nothing is there yet, then drains it.
//  Adds the messages read to *handled.
static keel_err
s_pipe_turn (keel_driver_t *self, int64_t until, size_t *handled, keel_error_t *err)
{
    if (s_flush_pending (self) != KEEL_OK)
        return keel_error_set (err, KEEL_ERR_IO, "cannot reach the driver thread");
    size_t before = *handled;
    size_t max = S_MAX_EVENTS_PER_POLL - *handled;
    keel_err rc = s_drain (self, max, handled, err);
    if (rc != KEEL_OK)
        return rc;
    int64_t left = until - zclock_mono ();
    if (*handled > before || left <= 0)
        return KEEL_OK;
    zmq_pollitem_t item = { zsock_resolve (self->actor), 0, ZMQ_POLLIN, 0 };
    int polled = zmq_poll (&item, 1, (long) left);
    if (polled < 0 && zmq_errno () == EINTR)
        return keel_error_set (err, KEEL_ERR_INTERRUPTED, "interrupted");
    return polled > 0 ? s_drain (self, max, handled, err) : KEEL_OK;
}

//  One lend (with at most S_LEND_MAX_OUTSTANDING tasks in flight; else
//  the pipe): this thread takes the actor's token, hands it the pending
//  tasks, runs its turns until an event or until (at most the lend's
//  bound), gives the token back and handles what it took (callbacks run
//  after the token is back). Adds the events handled to *handled.
static keel_err
s_lend_turn (keel_driver_t *self, int64_t until, size_t *handled, keel_error_t *err)
{
    if (!s_lends (self)) {
        //  The actor may still be parked after the last lend: it takes over now.
        if (self->lent_last && zstr_send (self->actor, "WAKE") == 0)
            self->lent_last = false;
        return s_pipe_turn (self, until, handled, err);
    }
    int64_t lend_until;
    if (!keel_lend_borrow (self->lend, S_BORROW_WAIT_MS, &lend_until))
        return s_pipe_turn (self, until, handled, err);
    self->lent_last = true;
    if (s_has_pending (self)) {
        keel_actor_lent_tasks (self->core, self->pending);
        self->pending = NULL;
    }
    bool interrupted = false;
    size_t n = keel_actor_lent_wait (self->core, until < lend_until ? until : lend_until,
                                     self->events, S_LEND_EVENTS, &interrupted);
    bool wake = false;
    int64_t due = keel_actor_lent_next_due (self->core, &wake);
    if (keel_lend_give_back (self->lend, due, wake))
        zstr_send (self->actor, "WAKE");
    for (size_t i = 0; i < n; i++)
        s_handle_event (self, &self->events[i]);
    *handled += n;
    if (interrupted)
        return keel_error_set (err, KEEL_ERR_INTERRUPTED, "interrupted");
    return KEEL_OK;
}

// ---------------------------------------------------------------- driver

const char *
keel_status_kind_name (keel_status_kind_t kind)
{
    switch (kind) {
        case KEEL_STATUS_CONNECTED:
            return "connected";
        case KEEL_STATUS_LOST:
            return "lost";
        case KEEL_STATUS_RECONNECTED:
            return "reconnected";
        case KEEL_STATUS_FAILOVER:
            return "failover";
        case KEEL_STATUS_FAILBACK:
            return "failback";
        case KEEL_STATUS_TRYING:
            return "trying";
        case KEEL_STATUS_NOTICE:
            return "notice";
        case KEEL_STATUS_STORE_FULL:
            return "store full";
        case KEEL_STATUS_NO_BROKER:
            return "no broker";
        case KEEL_STATUS_CONNECTING:
            return "connecting";
        case KEEL_STATUS_ATTACHED:
            return "attached";
        case KEEL_STATUS_DETACHED:
            return "detached";
        case KEEL_STATUS_SERVICE_INFO:
            return "service info";
        default:
            return "status";
    }
}

keel_driver_t *
keel_driver_new (const char *config_path, char **overrides, int noverrides, keel_error_t *err)
{
    keel_settings_t *settings =
        keel_cli_load (keel_driver_settings (), config_path, overrides, noverrides, err);
    if (!settings)
        return NULL;
    keel_driver_t *self = keel_driver_new_from_settings (settings, err);
    keel_settings_destroy (&settings);
    return self;
}

keel_driver_t *
keel_driver_new_from_settings (const keel_settings_t *settings, keel_error_t *err)
{
    assert (settings);
    keel_journal_init ("driver");
    keel_actor_config_t *config = calloc (1, sizeof *config);
    if (config)
        config->brokers = calloc (S_MAX_BROKERS, sizeof (char *));
    if (!config || !config->brokers) {
        free (config);
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (s_add_brokers (config->brokers, &config->nbrokers,
                       keel_driver_cfg_DSPrimaryBroker (settings), "DSPrimaryBroker", err)
        || s_add_brokers (config->brokers, &config->nbrokers,
                          keel_driver_cfg_DSFailoverBrokers (settings), "DSFailoverBrokers", err)) {
        keel_actor_config_destroy (&config);
        return NULL;
    }
    if (config->nbrokers == 0 || !strchr (keel_driver_cfg_DSPrimaryBroker (settings), ':')) {
        keel_actor_config_destroy (&config);
        keel_error_set (err, KEEL_ERR_CONFIG, "DSPrimaryBroker: an endpoint is required");
        return NULL;
    }
    config->broker_timeout_ms = keel_driver_cfg_DSBrokerTimeout (settings);
    config->primary_retry_ms = keel_driver_cfg_DSPrimaryRetryInterval (settings);
    config->heartbeat_ms = keel_driver_cfg_DSHeartbeatInterval (settings);
    config->batch_size = keel_driver_cfg_DSBatchSize (settings);
    config->max_unaccepted = keel_driver_cfg_DSMaxUnaccepted (settings);
    if (config->batch_size < 1)
        config->batch_size = 1;
    if (keel_security_init (&config->security, keel_driver_cfg_DSSecurity (settings), "DSCurveKey",
                            keel_driver_cfg_DSCurveKey (settings), "DSBrokerKey",
                            keel_driver_cfg_DSBrokerKey (settings), err)
        != KEEL_OK) {
        keel_actor_config_destroy (&config);
        return NULL;
    }

    keel_driver_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_actor_config_destroy (&config);
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    keel_uuid_new (self->id);
    memcpy (config->driver_id, self->id, sizeof self->id);
    self->batch_size = (size_t) config->batch_size;
    self->services = zlistx_new ();
    self->by_id = zhashx_new ();
    keel_fifo_init (&self->results, sizeof (keel_result_t *));
    if (!self->services || !self->by_id) {
        keel_actor_config_destroy (&config);
        keel_driver_destroy (&self);
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    zlistx_set_destructor (self->services, s_service_free);
    KEEL_INFO ("driver", "driver %s starting primary=%s brokers=%d", self->id, config->brokers[0],
               config->nbrokers);
    self->core = keel_actor_new (config); // takes config over
    if (!self->core) {
        keel_driver_destroy (&self);
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->lend = keel_actor_lend (self->core);
    //  From here the actor thread owns self->core and frees it when it ends
    self->thread = keel_thread_new (keel_actor_run, self->core);
    self->actor = self->thread ? keel_thread_pipe (self->thread) : NULL;
    if (!self->actor) {
        self->core = NULL;
        self->lend = NULL;
        keel_driver_destroy (&self);
        keel_error_set (err, KEEL_ERR_NOMEM, "cannot start the driver thread");
        return NULL;
    }
    return self;
}

void
keel_driver_destroy (keel_driver_t **self_p)
{
    assert (self_p);
    keel_driver_t *self = *self_p;
    if (!self)
        return;
    //  A driver that ends (not killed) closes its account: the checker
    //  expects every task it submitted to have been delivered (n = how
    //  many were not).
    KEEL_JOURNAL ("driver_closed", .n = (int64_t) (self->submitted - self->delivered),
                  .text = self->actor ? NULL : "never started");
    if (self->actor) {
        //  STOP first so every event still in the pipe is read and freed here.
        zstr_send (self->actor, "STOP");
        int64_t deadline = zclock_mono () + S_STOP_WAIT_MS;
        bool stopped = false;
        for (int i = 0; i < 1000000 && !stopped; i++) {
            int64_t left = deadline - zclock_mono ();
            if (left <= 0)
                break;
            zmq_pollitem_t item = { zsock_resolve (self->actor), 0, ZMQ_POLLIN, 0 };
            if (zmq_poll (&item, 1, (long) left) <= 0)
                continue;
            if (!s_read_events (self, false, &stopped))
                continue;
        }
        keel_thread_destroy (&self->thread); // joined: its sockets are closed
        self->actor = NULL;
        self->core = NULL; // freed by the actor thread
        self->lend = NULL;
    }
    keel_actor_tasks_destroy (&self->pending);
    for (keel_result_t *result; (result = s_results_pop (self));)
        keel_result_destroy (&result);
    keel_fifo_free (&self->results);
    zhashx_destroy (&self->by_id);
    zlistx_destroy (&self->services);
    free (self);
    *self_p = NULL;
}

const char *
keel_driver_id (const keel_driver_t *self)
{
    assert (self);
    return self->id;
}

void
keel_driver_set_status_handler (keel_driver_t *self, keel_status_fn *fn, void *arg)
{
    assert (self);
    self->status_fn = fn;
    self->status_arg = arg;
}

void
keel_driver_set_result_handler (keel_driver_t *self, keel_result_fn *fn, void *arg)
{
    assert (self);
    self->result_fn = fn;
    self->result_arg = arg;
    if (fn) {
        //  Results kept so far go to the new handler at the next poll.
        for (keel_result_t *result; (result = s_results_pop (self));) {
            self->taken++;
            self->result_fn (result, self->result_arg);
            keel_result_destroy (&result);
        }
    }
}

keel_err
keel_driver_poll (keel_driver_t *self, int timeout_ms, keel_error_t *err)
{
    assert (self);
    int64_t until = timeout_ms < 0 ? INT64_MAX : zclock_mono () + timeout_ms;
    size_t handled = 0;
    //  Every turn lends the actor to this thread when few tasks are in
    //  flight (s_lend_turn; one turn of it at least, even with timeout 0:
    //  the actor thread may be parked), else waits on the pipe. The loop goes
    //  on while nothing came and time is left (each lend waits for an
    //  event, at most until), or while callbacks left tasks to send; it
    //  ends by until and after S_MAX_EVENTS_PER_POLL pipe batches and lent
    //  events.
    for (int turn = 0; handled < S_MAX_EVENTS_PER_POLL; turn++) {
        keel_err rc = s_drain (self, S_MAX_EVENTS_PER_POLL - handled, &handled, err);
        if (rc != KEEL_OK)
            return rc;
        if (handled >= S_MAX_EVENTS_PER_POLL)
            break;
        int64_t now = zclock_mono ();
        bool wait = handled == 0 && now < until;
        if (turn > 0 && !wait && !s_has_pending (self))
            break;
        rc = s_lend_turn (self, wait ? until : now, &handled, err);
        if (rc != KEEL_OK)
            return rc;
    }
    if (s_flush_pending (self) != KEEL_OK) // left by callbacks after the last event
        return keel_error_set (err, KEEL_ERR_IO, "cannot reach the driver thread");
    if (self->no_broker) {
        self->no_broker = false;
        return keel_error_set (err, KEEL_ERR_TIMEOUT, "%s", self->no_broker_text);
    }
    return KEEL_OK;
}

keel_err
keel_driver_next_result (keel_driver_t *self, int timeout_ms, keel_result_t **result_p,
                         keel_error_t *err)
{
    assert (self && result_p);
    *result_p = NULL;
    if (self->result_fn)
        return keel_error_set (err, KEEL_ERR_STATE, "a result handler is set");
    int64_t deadline = zclock_mono () + (timeout_ms < 0 ? 0 : timeout_ms);
    //  Each turn waits for at least one event, so the loop ends by the deadline.
    for (uint64_t turn = 0;; turn++) {
        if (keel_fifo_len (&self->results) > 0) {
            *result_p = s_results_pop (self);
            self->taken++;
            return KEEL_OK;
        }
        int64_t left = deadline - zclock_mono ();
        if (timeout_ms >= 0 && left <= 0 && turn > 0)
            return KEEL_OK;
        keel_err rc =
            keel_driver_poll (self, timeout_ms < 0 ? -1 : (int) (left > 0 ? left : 0), err);
        if (rc == KEEL_ERR_TIMEOUT && keel_fifo_len (&self->results) > 0) {
            //  Results that came in with the news go first (the broker has
            //  them acknowledged); "no broker" is reported on a later call.
            self->no_broker = true;
            continue;
        }
        if (rc != KEEL_OK)
            return rc;
    }
}

keel_err
keel_driver_wait_all (keel_driver_t *self, int timeout_ms, keel_error_t *err)
{
    assert (self);
    int64_t deadline = zclock_mono () + (timeout_ms < 0 ? 0 : timeout_ms);
    for (uint64_t turn = 0; self->submitted > self->delivered; turn++) {
        int64_t left = deadline - zclock_mono ();
        if (timeout_ms >= 0 && left <= 0 && turn > 0)
            return keel_error_set (err, KEEL_ERR_TIMEOUT, "%" PRIu64 " tasks still outstanding",
                                   self->submitted - self->delivered);
        keel_err rc =
            keel_driver_poll (self, timeout_ms < 0 ? 1000 : (int) (left > 0 ? left : 0), err);
        if (rc != KEEL_OK)
            return rc;
    }
    return KEEL_OK;
}

keel_err
keel_driver_hold_acks (keel_driver_t *self, keel_error_t *err)
{
    assert (self);
    if (self->hold_acks)
        return KEEL_OK;
    //  The actor counts what it hands over from the command on, this
    //  thread what it takes: no result may be on its way meanwhile.
    if (zlistx_size (self->services) > 0)
        return keel_error_set (err, KEEL_ERR_STATE,
                               "keel_driver_hold_acks: a service is already open");
    if (s_command (self, "s", "HOLDACKS", NULL) != 0)
        return keel_error_set (err, KEEL_ERR_IO, "cannot reach the driver thread");
    self->hold_acks = true;
    return KEEL_OK;
}

keel_err
keel_driver_ack_taken (keel_driver_t *self, keel_error_t *err)
{
    assert (self);
    if (!self->hold_acks || self->acked == self->taken)
        return KEEL_OK;
    uint64_t upto = self->taken;
    int rc = zsock_send (self->actor, "sb", "ACKTAKEN", &upto, sizeof upto);
    if (rc != 0)
        return keel_error_set (err, KEEL_ERR_IO, "cannot reach the driver thread");
    keel_lend_sent (self->lend);
    self->acked = upto;
    return KEEL_OK;
}

uint64_t
keel_driver_outstanding (const keel_driver_t *self)
{
    assert (self);
    return self->submitted - self->delivered;
}

// ---------------------------------------------------------------- services

void
keel_service_options_init (keel_service_options_t *options, const char *type)
{
    assert (options);
    memset (options, 0, sizeof *options);
    options->type = type;
    options->reschedule_delay_ms = -1;
}

keel_service_t *
keel_driver_open_service (keel_driver_t *self, const keel_service_options_t *options,
                          keel_error_t *err)
{
    assert (self && options);
    if (!options->type || !keel_type_name_valid (options->type)) {
        keel_error_set (err, KEEL_ERR_INVALID,
                        "service type '%s' is not 1-%d characters of [A-Za-z0-9_.-]",
                        options->type ? options->type : "", KEEL_TYPE_MAX);
        return NULL;
    }
    if (options->reschedule_delay_ms < -1) {
        keel_error_set (err, KEEL_ERR_INVALID, "reschedule delay must be -1 or more");
        return NULL;
    }
    if (options->init_data_size > KEEL_DEFAULT_MAX_MSG_SIZE / 2) {
        keel_error_set (err, KEEL_ERR_INVALID, "init data over %d bytes",
                        KEEL_DEFAULT_MAX_MSG_SIZE / 2);
        return NULL;
    }
    if (options->condition && *options->condition) {
        keel_error_t cerr;
        keel_cond_t *cond = keel_cond_parse (options->condition, &cerr);
        if (!cond) {
            keel_error_set (err, KEEL_ERR_INVALID, "condition: %s", cerr.text);
            return NULL;
        }
        keel_cond_destroy (&cond);
    }
    keel_service_t *service = calloc (1, sizeof *service);
    keel_actor_open_t *open = calloc (1, sizeof *open);
    if (!service || !open)
        goto nomem;
    service->driver = self;
    keel_uuid_new (service->id);
    memcpy (open->service_id, service->id, sizeof service->id);
    snprintf (open->type, sizeof open->type, "%s", options->type);
    open->priority = options->priority;
    open->max_attempts = options->max_attempts;
    open->reschedule_delay_ms = options->reschedule_delay_ms;
    if (options->init_data && options->init_data_size > 0) {
        open->init_data = malloc (options->init_data_size);
        if (!open->init_data)
            goto nomem;
        memcpy (open->init_data, options->init_data, options->init_data_size);
        open->init_data_size = options->init_data_size;
    }
    if (options->condition && *options->condition
        && !(open->condition = strdup (options->condition)))
        goto nomem;
    if (s_command (self, "sp", "OPEN", open) != 0) {
        keel_actor_open_destroy (&open);
        free (service);
        keel_error_set (err, KEEL_ERR_IO, "cannot reach the driver thread");
        return NULL;
    }
    zlistx_add_end (self->services, service);
    zhashx_insert (self->by_id, service->id, service);
    KEEL_INFO ("driver", "opened service=%s type=%s", service->id, options->type);
    KEEL_JOURNAL ("service_opened", .service = service->id, .text = options->type);
    return service;
nomem:
    keel_actor_open_destroy (&open);
    free (service);
    keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
    return NULL;
}

const char *
keel_service_id (const keel_service_t *service)
{
    assert (service);
    return service->id;
}

uint64_t
keel_service_submitted (const keel_service_t *service)
{
    assert (service);
    return service->next_id;
}

//  Opens a service this driver did not submit (attach, watch).
static keel_service_t *
s_open_other (keel_driver_t *self, const char *service_id, keel_actor_mode_t mode,
              keel_error_t *err)
{
    assert (self);
    if (!service_id || !keel_id_valid (service_id)) {
        keel_error_set (err, KEEL_ERR_INVALID,
                        "'%s' is not a service id (1-%d of [A-Za-z0-9_.:-], e.g. a UUID)",
                        service_id ? service_id : "", KEEL_ID_MAX);
        return NULL;
    }
    if (zhashx_lookup (self->by_id, service_id)) {
        keel_error_set (err, KEEL_ERR_STATE, "service %s is already open in this driver",
                        service_id);
        return NULL;
    }
    keel_service_t *service = calloc (1, sizeof *service);
    keel_actor_open_t *open = calloc (1, sizeof *open);
    if (!service || !open) {
        free (service);
        free (open);
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    service->driver = self;
    service->mode = mode;
    service->closed = true; // no tasks from here
    snprintf (service->id, sizeof service->id, "%s", service_id);
    snprintf (open->service_id, sizeof open->service_id, "%s", service_id);
    open->mode = mode;
    open->reschedule_delay_ms = -1;
    if (s_command (self, "sp", "OPEN", open) != 0) {
        keel_actor_open_destroy (&open);
        free (service);
        keel_error_set (err, KEEL_ERR_IO, "cannot reach the driver thread");
        return NULL;
    }
    zlistx_add_end (self->services, service);
    zhashx_insert (self->by_id, service->id, service);
    KEEL_INFO ("driver", "%s service=%s", mode == KEEL_ACTOR_WATCH ? "watching" : "attaching",
               service->id);
    return service;
}

keel_service_t *
keel_session_attach (keel_driver_t *self, const char *service_id, bool all, keel_error_t *err)
{
    return s_open_other (self, service_id, all ? KEEL_ACTOR_ATTACH_ALL : KEEL_ACTOR_ATTACH, err);
}

keel_service_t *
keel_session_watch (keel_driver_t *self, const char *service_id, keel_error_t *err)
{
    return s_open_other (self, service_id, KEEL_ACTOR_WATCH, err);
}

void
keel_service_info (const keel_service_t *service, keel_service_info_t *info)
{
    assert (service && info);
    *info = service->info;
}

keel_err
keel_service_submit (keel_service_t *service, const void *input, size_t size, uint64_t *task_id_p,
                     keel_error_t *err)
{
    assert (service);
    keel_driver_t *self = service->driver;
    if (service->mode != KEEL_ACTOR_SUBMIT)
        return keel_error_set (err, KEEL_ERR_STATE, "service %s was not opened here: no tasks",
                               service->id);
    if (service->closed || service->cancelled)
        return keel_error_set (err, KEEL_ERR_STATE, "service %s is %s", service->id,
                               service->cancelled ? "cancelled" : "closed");
    if (size > KEEL_DEFAULT_MAX_MSG_SIZE / 2)
        return keel_error_set (err, KEEL_ERR_INVALID, "task input over %d bytes",
                               KEEL_DEFAULT_MAX_MSG_SIZE / 2);
    if (!self->pending) {
        self->pending = calloc (1, sizeof (keel_actor_tasks_t));
        if (!self->pending)
            return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
    }
    keel_actor_tasks_t *batch = self->pending;
    if (batch->count == batch->cap) {
        size_t cap = batch->cap ? batch->cap * 2 : 64;
        keel_actor_task_t *tasks = realloc (batch->tasks, cap * sizeof *tasks);
        if (!tasks)
            return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        batch->tasks = tasks;
        batch->cap = cap;
    }
    uint8_t *copy = NULL;
    if (size > 0) {
        copy = malloc (size);
        if (!copy)
            return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        memcpy (copy, input, size);
    }
    keel_actor_task_t *task = &batch->tasks[batch->count++];
    memcpy (task->service_id, service->id, sizeof service->id);
    task->task_id = service->next_id++;
    task->input = copy;
    task->size = size;
    self->submitted++;
    KEEL_JOURNAL ("submitted", .service = service->id, .task = task->task_id,
                  .output = size ? (const void *) input : "", .output_len = size);
    if (task_id_p)
        *task_id_p = task->task_id;
    if (batch->count >= self->batch_size && s_flush_pending (self) != KEEL_OK)
        return keel_error_set (err, KEEL_ERR_IO, "cannot reach the driver thread");
    return KEEL_OK;
}

static keel_err
s_service_command (keel_service_t *service, const char *command, keel_error_t *err)
{
    keel_driver_t *self = service->driver;
    if (s_flush_pending (self) != KEEL_OK || s_command (self, "ss", command, service->id) != 0)
        return keel_error_set (err, KEEL_ERR_IO, "cannot reach the driver thread");
    return KEEL_OK;
}

keel_err
keel_service_close (keel_service_t *service, keel_error_t *err)
{
    assert (service);
    if (service->closed || service->cancelled)
        return KEEL_OK;
    service->closed = true;
    return s_service_command (service, "CLOSE", err);
}

keel_err
keel_service_detach (keel_service_t *service, keel_error_t *err)
{
    assert (service);
    if (service->mode != KEEL_ACTOR_SUBMIT)
        return keel_error_set (err, KEEL_ERR_STATE, "service %s was not opened here", service->id);
    if (service->detaching)
        return KEEL_OK;
    service->detaching = true;
    return s_service_command (service, "DETACH", err);
}

bool
keel_service_detached (const keel_service_t *service)
{
    assert (service);
    return service->detached;
}

keel_err
keel_service_cancel (keel_service_t *service, keel_error_t *err)
{
    assert (service);
    if (service->cancelled)
        return KEEL_OK;
    service->cancelled = true;
    return s_service_command (service, "CANCEL", err);
}

void
keel_result_destroy (keel_result_t **result_p)
{
    assert (result_p);
    free (*result_p); // one block: see keel_actor_result_new
    *result_p = NULL;
}
