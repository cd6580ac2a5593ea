/*  actor.c — the driver's background thread: sockets, services, session.

    One loop turn: poll the pipe and the broker sockets; apply commands from
    the application; apply messages from the broker; step the session
    (timers); send queued tasks within the flow-control budget; hand results
    and status events to the application; acknowledge the results handed
    over. See actor.h for the pipe messages and session.h for the states.

    This file has the loop, the pipe, the sockets' input and the actor's
    lifetime; what is sent to the brokers and what their messages do is in
    actor_broker.c (actor_int.h has what the two share).

    The same turn runs on the application thread while it waits
    (keel_actor_lent_*), holding the actor's lend token (actor_lend.h);
    every turn on the actor thread holds it too. Between turns the actor
    thread polls its pipe and the broker sockets' ZMQ_FD descriptors, with
    the token released; finding the token lent, it parks on its pipe
    (S_PARK_MS) instead of blocking, and the results of a lend go straight
    to the lender instead of into the pipe.
*/
#include "actor_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "outstanding.h"
#include "session.h"

#define S_COMPONENT         "driver"
#define S_MAX_MSGS_PER_TURN 1000 // messages read from one socket per loop turn
#define S_MAX_POLL_MS       1000
#define S_PARK_MS           KEEL_LEND_BOUND_MS // a parked actor tries the token again this often

// ---------------------------------------------------------------- helpers

static void
s_service_destroy (keel_actor_service_t **self_p)
{
    keel_actor_service_t *self = *self_p;
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
    s_service_destroy ((keel_actor_service_t **) item);
}

//  Entries of an empty queue's ring kept for the next events.
#define S_QUEUE_KEEP 4096

//  Copies up to max of the first results and status events waiting for the
//  application into events[], leaving them queued. Returns how many.
static size_t
s_peek_app (keel_actor_t *self, keel_actor_event_t *events, size_t max)
{
    size_t n = 0;
    for (; n < keel_fifo_len (&self->to_app) && n < max; n++) {
        const keel_actor_to_app_t *entry = keel_fifo_at (&self->to_app, n);
        events[n] = (keel_actor_event_t) { entry->kind, entry->item };
    }
    return n;
}

//  Drops the first n events, handed over (their items are the receiver's
//  now); each result is acknowledged next.
static void
s_handed_app (keel_actor_t *self, size_t n)
{
    for (size_t i = 0; i < n && i < keel_fifo_len (&self->to_app); i++) {
        const keel_actor_to_app_t *entry = keel_fifo_at (&self->to_app, i);
        if (entry->kind == KEEL_ACTOR_TO_APP_RESULT)
            keel_actor_handed (self, entry->service, entry->task_id);
    }
    keel_fifo_drop (&self->to_app, n, S_QUEUE_KEEP); // a drained backlog's room goes back
}

//  Moves results and status events into the pipe without blocking, in
//  batches of at most KEEL_ACTOR_EVENTS_MAX (actor.h).
static void
s_push_app (keel_actor_t *self)
{
    void *handle = zsock_resolve (self->pipe);
    keel_actor_event_t batch[KEEL_ACTOR_EVENTS_MAX];
    for (size_t sent = 0, bound = keel_fifo_len (&self->to_app); sent < bound;) {
        size_t n = s_peek_app (self, batch, KEEL_ACTOR_EVENTS_MAX);
        if (zmq_send (handle, "EVENTS", 6, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            break; // the application is slow: try next turn
        zmq_send (handle, batch, n * sizeof batch[0], 0);
        s_handed_app (self, n);
        sent += n;
    }
}

//  Moves up to max results and status events straight into events[] (a
//  lender's hand-over, instead of the pipe). Returns how many.
static size_t
s_take_app (keel_actor_t *self, keel_actor_event_t *events, size_t max)
{
    size_t n = s_peek_app (self, events, max);
    s_handed_app (self, n);
    return n;
}

// ---------------------------------------------------------------- broker sockets

//  Receives and decodes one message from a broker socket without waiting:
//  *none when nothing was waiting, else NULL (logged) when malformed. A
//  message is exactly one frame: a longer one is read whole and dropped
//  whole, so no part of it (its last frame, say) passes for a message.
//  Reading until nothing waits asks libzmq for the socket's commands once
//  per drain; a ZMQ_EVENTS before each message asked once more per message
//  (a zero-timeout poll and a getpid each).
static keel_env_t *
s_recv (keel_actor_t *self, zsock_t *sock, bool *none)
{
    void *handle = zsock_resolve (sock);
    zmq_msg_t part;
    zmq_msg_init (&part);
    *none = zmq_msg_recv (&part, handle, ZMQ_DONTWAIT) < 0;
    if (*none) {
        zmq_msg_close (&part);
        return NULL;
    }
    keel_error_t err = { "multi-frame message" };
    keel_env_t *env = NULL;
    if (!zmq_msg_more (&part))
        env = keel_wire_decode (zmq_msg_data (&part), zmq_msg_size (&part), &err);
    else {
        //  The rest of a multi-part message is there already (ZeroMQ
        //  delivers a message whole): bounded by what arrived.
        for (int more = 1; more;) {
            zmq_msg_t rest;
            zmq_msg_init (&rest);
            more = zmq_msg_recv (&rest, handle, ZMQ_DONTWAIT) >= 0 && zmq_msg_more (&rest);
            zmq_msg_close (&rest);
        }
    }
    zmq_msg_close (&part);
    if (env && env->sender != KEEL__SENDER_KIND__SENDER_BROKER) {
        snprintf (err.text, sizeof err.text, "sender is not a broker");
        keel_wire_free (&env);
    }
    if (!env)
        keel_actor_log_limited (&self->rl_malformed, "malformed message from broker", err.text);
    return env;
}

static void
s_handle_main (keel_actor_t *self)
{
    zsock_t *sock = self->main;
    for (int i = 0; i < S_MAX_MSGS_PER_TURN && sock == self->main; i++) {
        bool none = false;
        keel_env_t *env = s_recv (self, sock, &none);
        if (none)
            break;
        if (env)
            keel_actor_on_message (self, env, zclock_mono ());
        keel_wire_free (&env);
    }
}

static void
s_handle_probe (keel_actor_t *self)
{
    zsock_t *sock = self->probe;
    for (int i = 0; i < S_MAX_MSGS_PER_TURN && sock && sock == self->probe; i++) {
        bool none = false;
        keel_env_t *env = s_recv (self, sock, &none);
        if (none)
            break;
        if (env && env->body_case == KEEL__ENVELOPE__BODY_PASSIVE) {
            //  The primary came back passive: no failback in a pair.
            KEEL_LOG_LIMITED (&self->rl_peer, zclock_mono (), KEEL_LOG_INFO, S_COMPONENT,
                              "primary %s answered the probe: passive active=%s reason=\"%s\"",
                              keel_session_endpoint (self->session, 0),
                              env->passive->active ? env->passive->active : "?",
                              env->passive->reason ? env->passive->reason : "");
            keel_session_input_t in = { .event = KEEL_SESSION_EV_PROBE_PASSIVE,
                                        .active = env->passive->active };
            keel_actor_apply (self, &in);
        }
        else if (env && env->body_case == KEEL__ENVELOPE__BODY_DRIVER_WELCOME
                 && keel_actor_admit (self, env, 0, zclock_mono ())) {
            KEEL_INFO (S_COMPONENT, "primary %s answered the probe",
                       keel_session_endpoint (self->session, 0));
            self->welcome = env;
            keel_session_input_t in = { .event = KEEL_SESSION_EV_PROBE_WELCOME,
                                        .heartbeat_ms = env->driver_welcome->heartbeat_ms,
                                        .pair_peer = env->driver_welcome->pair_peer };
            keel_actor_apply (self, &in);
            self->welcome = NULL;
            if (self->main == sock)
                keel_session_received (self->session, zclock_mono ());
        }
        keel_wire_free (&env);
    }
}

// ---------------------------------------------------------------- application commands

static void
s_cmd_open (keel_actor_t *self, keel_actor_open_t *open)
{
    if (zhashx_lookup (self->by_id, open->service_id)) {
        keel_actor_open_destroy (&open);
        return;
    }
    keel_actor_service_t *svc = calloc (1, sizeof *svc);
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
    svc->queried_at = INT64_MIN / 2;
    if (open->mode == KEEL_ACTOR_ATTACH || open->mode == KEEL_ACTOR_ATTACH_ALL)
        keel_actor_hello_again (self);
}

static void
s_cmd_tasks (keel_actor_t *self, keel_actor_tasks_t *batch)
{
    for (size_t i = 0; i < batch->count; i++) {
        keel_actor_task_t *task = &batch->tasks[i];
        keel_actor_service_t *svc = zhashx_lookup (self->by_id, task->service_id);
        uint8_t *input = task->input;
        task->input = NULL;
        if (!svc) {
            free (input);
            continue;
        }
        keel_err rc = keel_outstanding_add (svc->tasks, task->task_id, input, task->size);
        if (rc == KEEL_ERR_NOMEM)
            keel_actor_fail_task (self, svc, task->task_id, KEEL_TASK_FAILED,
                                  "out of memory in the driver");
        else if (rc != KEEL_OK)
            KEEL_ERROR (S_COMPONENT, "task %" PRIu64 " out of order in service %s", task->task_id,
                        task->service_id);
        if (svc->cancelled)
            keel_actor_fail_service (self, svc, KEEL_TASK_CANCELLED, "service cancelled");
    }
    keel_actor_tasks_destroy (&batch);
}

//  Applies one message from the pipe; true when it was one of the
//  application's counted commands (OPEN, TASKS, CLOSE, CANCEL).
static bool
s_apply_command (keel_actor_t *self, zmsg_t *msg)
{
    char *command = zmsg_popstr (msg);
    zframe_t *arg = zmsg_pop (msg);
    void *ptr = NULL;
    bool counted = false;
    if (arg && zframe_size (arg) == sizeof (void *))
        memcpy (&ptr, zframe_data (arg), sizeof ptr);
    if (!command) {
        //  Nothing else sends on the pipe: ignore.
    }
    else if (streq (command, "$TERM"))
        self->terminated = true;
    else if (streq (command, "STOP")) {
        self->stopping = true;
        zstr_send (self->pipe, "STOPPED");
    }
    else if (streq (command, "OPEN") && ptr) {
        s_cmd_open (self, (keel_actor_open_t *) ptr);
        counted = true;
    }
    else if (streq (command, "TASKS") && ptr) {
        s_cmd_tasks (self, (keel_actor_tasks_t *) ptr);
        counted = true;
    }
    else if ((streq (command, "CLOSE") || streq (command, "CANCEL") || streq (command, "DETACH"))
             && arg) {
        char *service_id = zframe_strdup (arg);
        keel_actor_service_t *svc = service_id ? zhashx_lookup (self->by_id, service_id) : NULL;
        if (svc && streq (command, "CLOSE"))
            svc->closing = true;
        else if (svc && streq (command, "DETACH"))
            svc->detaching = true;
        else if (svc && !svc->cancelled)
            keel_actor_fail_service (self, svc, KEEL_TASK_CANCELLED, "service cancelled");
        free (service_id);
        counted = true;
    }
    else if (streq (command, "HOLDACKS")) {
        self->hold_acks = true;
        counted = true;
    }
    else if (streq (command, "ACKTAKEN") && arg && zframe_size (arg) == sizeof (uint64_t)) {
        uint64_t upto;
        memcpy (&upto, zframe_data (arg), sizeof upto);
        keel_actor_ack_taken (self, upto); // at once: a STOP may follow in this turn
        counted = true;
    }
    //  "WAKE" (after a lend) needs nothing: the turn that reads it looks at the sockets.
    zstr_free (&command);
    zframe_destroy (&arg);
    zmsg_destroy (&msg);
    return counted;
}

static void
s_handle_pipe (keel_actor_t *self)
{
    uint64_t applied = 0;
    if (self->held) {
        zmsg_t *msg = self->held;
        self->held = NULL;
        applied += s_apply_command (self, msg);
    }
    for (int i = 0; i < S_MAX_MSGS_PER_TURN && !self->terminated; i++) {
        if (!(zsock_events (self->pipe) & ZMQ_POLLIN))
            break;
        zmsg_t *msg = zmsg_recv (self->pipe);
        if (!msg) {
            self->terminated = true;
            break;
        }
        applied += s_apply_command (self, msg);
    }
    if (applied)
        keel_lend_actor_applied (self->lend, applied);
}

// ---------------------------------------------------------------- state

static void
s_actor_destroy (keel_actor_t **self_p)
{
    keel_actor_t *self = *self_p;
    if (!self)
        return;
    //  Give the last acknowledgements a moment to leave (zmq_close does not
    //  block; process exit waits up to the linger). A lost broker gets none.
    if (self->main && self->session && keel_session_state (self->session) == KEEL_SESSION_READY)
        zsock_set_linger (self->main, KEEL_ACTOR_CLOSE_LINGER_MS);
    zsock_destroy (&self->main);
    zsock_destroy (&self->old);
    zsock_destroy (&self->probe);
    zmsg_destroy (&self->held);
    for (size_t i = 0; i < keel_fifo_len (&self->to_app); i++)
        free (((keel_actor_to_app_t *) keel_fifo_at (&self->to_app, i))->item);
    keel_fifo_free (&self->to_app);
    zhashx_destroy (&self->by_id);
    zlistx_destroy (&self->services);
    keel_session_destroy (&self->session);
    keel_actor_config_destroy (&self->config);
    keel_lend_destroy (&self->lend);
    free (self->inputs);
    free (self->input_ptrs);
    free (self->refs);
    free (self->kept);
    free (self);
    *self_p = NULL;
}

keel_actor_t *
keel_actor_new (keel_actor_config_t *config)
{
    assert (config);
    keel_actor_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_actor_config_destroy (&config);
        return NULL;
    }
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
    self->lend = keel_lend_new (KEEL_LEND_BOUND_MS);
    self->session = keel_session_new (&sc, now);
    self->services = zlistx_new ();
    self->by_id = zhashx_new ();
    keel_fifo_init (&self->to_app, sizeof (keel_actor_to_app_t));
    size_t batch = (size_t) config->batch_size;
    self->inputs = calloc (batch, sizeof (Keel__TaskInput));
    self->input_ptrs = calloc (batch, sizeof (Keel__TaskInput *));
    self->refs = calloc (batch, sizeof (keel_outstanding_ref_t));
    keel_ratelimit_t rl = KEEL_RATELIMIT_INIT (10000, 5);
    self->rl_malformed = rl;
    self->rl_unknown = rl;
    self->rl_peer = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "broker-triggered");
    self->rl_stale = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "stale-epoch");
    if (self->services)
        zlistx_set_destructor (self->services, s_service_list_destructor);
    if (!self->lend || !self->session || !self->services || !self->by_id || !self->inputs
        || !self->input_ptrs || !self->refs)
        s_actor_destroy (&self);
    return self;
}

keel_lend_t *
keel_actor_lend (keel_actor_t *self)
{
    assert (self);
    return self->lend;
}

// ---------------------------------------------------------------- one turn

static long
s_poll_timeout (keel_actor_t *self, int64_t now)
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

//  The broker side of a turn, the same on both threads: read the sockets,
//  step the session's timers, send what is due.
static void
s_broker_turn (keel_actor_t *self)
{
    if (self->main)
        s_handle_main (self);
    if (self->probe)
        s_handle_probe (self);
    keel_actor_step (self, KEEL_SESSION_EV_TICK, 0);
    keel_ratelimit_flush (&self->rl_peer, zclock_mono (), KEEL_LOG_WARN, S_COMPONENT);
    keel_actor_flush (self, zclock_mono ());
}

// ---------------------------------------------------------------- the actor thread's loop

//  The application holds the token: wait on the pipe (only) until the park
//  ends. A command read meanwhile is held for the next turn; "WAKE" is
//  dropped and noted (the next try must not yield).
static void
s_park (keel_actor_t *self)
{
    if (self->held) {
        zmq_poll (NULL, 0, S_PARK_MS);
        return;
    }
    zmq_pollitem_t item = { zsock_resolve (self->pipe), 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, S_PARK_MS) <= 0)
        return;
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg) {
        self->terminated = true;
        return;
    }
    zframe_t *first = zmsg_first (msg);
    if (first && zframe_streq (first, "WAKE")) {
        zmsg_destroy (&msg);
        self->kicked = true;
    }
    else
        self->held = msg;
}

//  Sets up the wait between turns (the token is held): the pipe as a
//  socket, the broker sockets by their ZMQ_FD (a plain fd poll is no socket
//  call, so a lender may use the sockets meanwhile). Returns the timeout.
static long
s_prepare_wait (keel_actor_t *self, zmq_pollitem_t *items, int *n_p)
{
    int n = 0;
    items[n++] = (zmq_pollitem_t) {
        zsock_resolve (self->pipe), 0,
        (short) (ZMQ_POLLIN | (keel_fifo_len (&self->to_app) && !self->stopping ? ZMQ_POLLOUT : 0)),
        0
    };
    *n_p = n;
    if (self->stopping)
        return -1;
    long timeout = s_poll_timeout (self, zclock_mono ());
    zsock_t *socks[2] = { self->main, self->probe };
    for (int i = 0; i < 2; i++) {
        if (!socks[i])
            continue;
        //  ZMQ_FD is edge-like: wait on it only when ZMQ_EVENTS says nothing is readable.
        items[n++] = (zmq_pollitem_t) { NULL, zsock_fd (socks[i]), ZMQ_POLLIN, 0 };
        if (zsock_events (socks[i]) & ZMQ_POLLIN)
            timeout = 0;
    }
    self->polled_gen = self->gen;
    *n_p = n;
    return timeout;
}

static void
s_actor_turn (keel_actor_t *self)
{
    self->send_blocked = false;
    s_handle_pipe (self);
    if (self->stopping || self->terminated)
        return;
    s_broker_turn (self);
    s_push_app (self);
    keel_actor_flush_acks (self);
}

void
keel_actor_run (zsock_t *pipe, void *args)
{
    keel_actor_t *self = (keel_actor_t *) args;
    assert (self);
    self->pipe = pipe;
    //  The application borrows only once zactor_new has returned (after the signal).
    bool holding = keel_lend_actor_try (self->lend, 0);
    assert (holding);
    keel_actor_step (self, KEEL_SESSION_EV_START, 0);
    keel_lend_actor_release (self->lend, zclock_mono ());
    holding = false;
    zsock_signal (pipe, 0);
    bool timer_due = false; // the last wait ended by its timeout: a timer of the actor's is due
    //  Runs until $TERM: each turn is bounded; the loop ends with the driver.
    while (!self->terminated) {
        if (!holding) {
            //  With nothing of its own to do, leave the sockets to an
            //  application thread that waits in a loop (actor_lend.h).
            int64_t park_until = zclock_mono () + S_PARK_MS;
            bool own =
                timer_due || self->kicked || self->held || (zsock_events (self->pipe) & ZMQ_POLLIN);
            holding = own ? keel_lend_actor_try (self->lend, park_until)
                          : keel_lend_actor_try_yielding (self->lend, park_until);
            if (!holding) {
                timer_due = false;
                s_park (self);
                continue;
            }
            self->kicked = false;
        }
        s_actor_turn (self);
        if (self->terminated)
            break;
        zmq_pollitem_t items[3];
        int n = 0;
        long timeout = s_prepare_wait (self, items, &n);
        keel_lend_actor_release (self->lend, timeout < 0 ? INT64_MAX : zclock_mono () + timeout);
        holding = false;
        int rc = zmq_poll (items, n, timeout);
        if (rc < 0 && zmq_errno () != EINTR)
            break;
        timer_due = rc == 0;
    }
    //  Freeing touches the sockets: wait for the token (a lend is bounded).
    while (!holding) {
        holding = keel_lend_actor_try (self->lend, zclock_mono () + 1);
        if (!holding)
            zmq_poll (NULL, 0, 1);
    }
    s_actor_destroy (&self);
}

// ---------------------------------------------------------------- lent to the application thread

void
keel_actor_lent_tasks (keel_actor_t *self, keel_actor_tasks_t *batch)
{
    assert (self && batch);
    s_cmd_tasks (self, batch);
}

size_t
keel_actor_lent_wait (keel_actor_t *self, int64_t until, keel_actor_event_t *events, size_t max,
                      bool *interrupted_p)
{
    assert (self && events && max > 0 && interrupted_p);
    *interrupted_p = false;
    size_t n = 0;
    //  Each turn either hands something over, passes until, or waits for
    //  the sockets at most until then: the loop ends by until.
    for (;;) {
        self->send_blocked = false;
        s_broker_turn (self);
        n += s_take_app (self, events + n, max - n);
        keel_actor_flush_acks (self);
        int64_t now = zclock_mono ();
        if (n > 0 || now >= until)
            return n;
        long timeout = s_poll_timeout (self, now);
        if (until - now < timeout)
            timeout = (long) (until - now);
        zmq_pollitem_t items[2];
        int k = 0;
        if (self->main)
            items[k++] = (zmq_pollitem_t) { zsock_resolve (self->main), 0, ZMQ_POLLIN, 0 };
        if (self->probe)
            items[k++] = (zmq_pollitem_t) { zsock_resolve (self->probe), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (items, k, timeout) < 0) {
            *interrupted_p = zmq_errno () == EINTR;
            return n;
        }
    }
}

int64_t
keel_actor_lent_next_due (keel_actor_t *self, bool *wake_p)
{
    assert (self && wake_p);
    int64_t now = zclock_mono ();
    //  The lender read the sockets last: a message it left consumed the
    //  fd's signal, so the actor would not see it.
    bool wake = self->gen != self->polled_gen || keel_fifo_len (&self->to_app) > 0;
    if (self->main && (zsock_events (self->main) & ZMQ_POLLIN))
        wake = true;
    if (self->probe && (zsock_events (self->probe) & ZMQ_POLLIN))
        wake = true;
    *wake_p = wake;
    return now + s_poll_timeout (self, now);
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
    free (open->condition);
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
