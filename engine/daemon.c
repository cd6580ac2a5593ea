/*  daemon.c — the keel-engine process: sockets, timers and the main loop. */
#include "daemon.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_metrics.h"
#include "httpd.h"
#include "log.h"
#include "runner.h"
#include "engine_session.h"
#include "outbox.h"
#include "spool.h"
#include "starter.h"
#include "statedir.h"
#include "held.h"
#include "initdata.h"
#include "wire.h"

#define S_MSGS_PER_TURN    256 // broker messages handled per loop turn
#define S_POLL_MAX_MS      5000
#define S_HWM              100000
#define S_LOGOFF_LINGER_MS 1000
#define S_METRICS_MS       1000 // MetricsEndpoint: publish a snapshot this often
#define S_SPOOL_AFTER_MS   300  // offline this long after a drop: spool (outbox.h)

struct _keel_daemon_t {
    const keel_engine_config_t *cfg;
    keel_statedir_t *statedir;
    keel_spool_t *spool;
    keel_runner_t *runner;
    keel_held_t *tasks;
    keel_initdata_t *init;   // session init data per service
    keel_outbox_t *outbox;   // results and checkpoints on their way to the broker
    keel_starter_t *starter; // where assigned tasks run; the prefetch queue
    keel_engine_session_t *session;
    keel_engine_session_ops_t ops;
    keel_outbox_ops_t outbox_ops;
    keel_starter_ops_t starter_ops;
    zsock_t *dealer;     // to the current broker; NULL when offline
    zsock_t *probe;      // to the primary while probing
    unsigned dealer_gen; // changes whenever dealer is replaced
    char session_id[37];
    uint64_t seq;
    int64_t now;
    uint64_t malformed_messages;
    uint64_t unexpected_messages;
    uint64_t stale_messages; // from a deposed broker of a pair (stale epoch)
    int64_t spool_at;        // spool the unacknowledged results then, unless online; 0: none
    keel_ratelimit_t bad_log;
    keel_ratelimit_t stale_log; // messages dropped for a stale pair epoch
    keel_ratelimit_t task_log;  // lines a broker's message causes about one task it names
    keel_ratelimit_t peer_log;  // other lines a broker's valid message causes (its text, init data)
    // MetricsEndpoint (engine_metrics.h): NULL when off. A snapshot is
    // published to its thread every S_METRICS_MS.
    keel_httpd_t *httpd;
    int64_t metrics_due;
    int64_t started;       // monotonic ms
    int64_t offline_since; // start of the current stretch without a broker, 0 = online
    int64_t offline_total; // ms, stretches that ended
};

// ------------------------------------------------------------ sending

static keel_err
s_send (keel_daemon_t *self, zsock_t *sock, keel_env_t *env)
{
    if (!sock)
        return KEEL_ERR_STATE;
    env->has_seq = true;
    env->seq = ++self->seq;
    keel_err rc = keel_wire_send (sock, env);
    if (rc == KEEL_OK && sock == self->dealer)
        keel_engine_session_sent (self->session, self->now);
    return rc;
}

static zsock_t *
s_dealer_new (keel_daemon_t *self, const char *endpoint, bool immediate)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_immediate (sock, immediate ? 1 : 0);
    zsock_set_maxmsgsize (sock, self->cfg->max_message_bytes);
    zsock_set_sndhwm (sock, S_HWM);
    zsock_set_rcvhwm (sock, S_HWM);
    keel_security_client (sock, &self->cfg->security, NULL);
    if (zsock_connect (sock, "%s", endpoint) != 0) {
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

// ------------------------------------------------------------ outbox and starter actions

static bool
s_online (void *arg)
{
    keel_daemon_t *self = arg;
    return keel_engine_session_state (self->session) == KEEL_ENGINE_SESSION_ONLINE;
}

static keel_err
s_send_to_broker (void *arg, keel_env_t *env)
{
    keel_daemon_t *self = arg;
    return s_send (self, self->dealer, env);
}

static void
s_stop_execution (void *arg, uint64_t execution_id)
{
    keel_daemon_t *self = arg;
    if (keel_runner_is_running (self->runner, execution_id))
        keel_runner_cancel (self->runner, execution_id);
}

static int
s_free_slots (void *arg)
{
    return keel_runner_free_slots (((keel_daemon_t *) arg)->runner);
}

static keel_err
s_start_worker (void *arg, const keel_worker_request_t *req, int64_t timeout_ms)
{
    keel_daemon_t *self = arg;
    return keel_runner_start (self->runner, req, timeout_ms, self->now);
}

static pid_t
s_pid_of (void *arg, uint64_t execution_id)
{
    return keel_runner_pid_of (((keel_daemon_t *) arg)->runner, execution_id);
}

//  Every task that ran ends here: a worker's result (keel_runner_process)
//  or an inline built-in's (the starter).
static void
s_ended (const keel_runner_result_t *r, void *arg)
{
    keel_outbox_finish (((keel_daemon_t *) arg)->outbox, r);
}

static void
s_refused (void *arg, uint64_t execution_id, const char *error)
{
    keel_outbox_refuse (((keel_daemon_t *) arg)->outbox, execution_id, error);
}

static void
s_on_checkpoint (uint64_t execution_id, const uint8_t *data, size_t size, void *arg)
{
    keel_outbox_checkpoint (((keel_daemon_t *) arg)->outbox, execution_id, data, size);
}

// ------------------------------------------------------------ session actions

static bool
s_op_connect (void *arg, int index)
{
    keel_daemon_t *self = arg;
    zsock_destroy (&self->dealer);
    self->dealer = s_dealer_new (self, keel_engine_session_endpoint (self->session, index), true);
    self->dealer_gen++;
    return self->dealer != NULL;
}

static void
s_op_disconnect (void *arg)
{
    keel_daemon_t *self = arg;
    keel_outbox_disconnected (self->outbox);
    self->spool_at = self->now + S_SPOOL_AFTER_MS;
    if (self->dealer) {
        zsock_destroy (&self->dealer);
        self->dealer_gen++;
    }
}

static bool
s_op_send_login (void *arg)
{
    keel_daemon_t *self = arg;
    char *types[KEEL_ENGINE_MAX_SERVICES];
    for (int i = 0; i < self->cfg->n_services; i++)
        types[i] = self->cfg->services[i].name;
    Keel__EngineProperty props[KEEL_PROPERTIES_MAX], *prop_ptrs[KEEL_PROPERTIES_MAX];
    for (int i = 0; i < self->cfg->n_props; i++) {
        keel__engine_property__init (&props[i]);
        props[i].name = self->cfg->props[i].name;
        props[i].value = self->cfg->props[i].value;
        prop_ptrs[i] = &props[i];
    }
    keel_engine_login_args_t login = { .engine_id = keel_statedir_engine_id (self->statedir),
                                       .session = self->session_id,
                                       .host = self->cfg->host,
                                       .slots = (uint32_t) self->cfg->slots,
                                       .pid = (uint32_t) getpid (),
                                       .service_types = types,
                                       .n_service_types = (size_t) self->cfg->n_services,
                                       .moved_from = keel_engine_session_moved_from (self->session),
                                       .properties = prop_ptrs,
                                       .n_properties = (size_t) self->cfg->n_props };
    return keel_outbox_send_login (self->outbox, &login); // with every held task
}

static bool
s_send_heartbeat (keel_daemon_t *self, zsock_t *sock)
{
    //  Every execution held and not finished (running in a worker or
    //  waiting for one): the broker requeues one it assigned here that
    //  heartbeats keep leaving out (its Assign never arrived).
    size_t held = keel_held_size (self->tasks);
    size_t cap = held < KEEL_LIST_MAX ? held : KEEL_LIST_MAX;
    uint64_t *running = cap ? malloc (cap * sizeof *running) : NULL;
    size_t n = running ? keel_held_running_ids (self->tasks, running, cap) : 0;
    keel_msg_t msg;
    bool sent =
        s_send (self, sock, keel_msg_heartbeat (&msg, KEEL__SENDER_KIND__SENDER_ENGINE, running, n))
        == KEEL_OK;
    free (running);
    return sent;
}

static bool
s_op_send_heartbeat (void *arg)
{
    keel_daemon_t *self = arg;
    return s_send_heartbeat (self, self->dealer);
}

static void
s_op_send_logoff (void *arg, const char *reason)
{
    keel_daemon_t *self = arg;
    keel_msg_t msg;
    keel_env_t *env = keel_msg_logoff (&msg, reason);
    if (self->dealer) {
        //  Give the Logoff a moment to leave before the socket goes away.
        zsock_set_linger (self->dealer, S_LOGOFF_LINGER_MS);
        s_send (self, self->dealer, env);
    }
}

static void
s_op_logged_in (void *arg, const Keel__LoginReply *reply)
{
    keel_daemon_t *self = arg;
    keel_outbox_logged_in (self->outbox, reply, self->now);
}

static void
s_op_work (void *arg, const keel_env_t *env)
{
    keel_daemon_t *self = arg;
    switch (env->body_case) {
        case KEEL__ENVELOPE__BODY_ASSIGN:
            keel_starter_assign (self->starter, env->assign, self->now);
            break;
        case KEEL__ENVELOPE__BODY_CANCEL:
            for (size_t i = 0; i < env->cancel->n_execution_ids; i++) {
                uint64_t id = env->cancel->execution_ids[i];
                if (keel_held_find (self->tasks, id)) {
                    KEEL_LOG_LIMITED (&self->task_log, self->now, KEEL_LOG_INFO, "engine",
                                      "task cancelled exec=%" PRIu64 " reason=\"%s\"", id,
                                      env->cancel->reason ? env->cancel->reason : "");
                    keel_outbox_forget (self->outbox, id);
                }
            }
            break;
        case KEEL__ENVELOPE__BODY_RESULT_ACK:
            keel_outbox_acked (self->outbox, env->result_ack);
            break;
        case KEEL__ENVELOPE__BODY_NOTICE:
            KEEL_LOG_LIMITED (&self->peer_log, self->now, KEEL_LOG_INFO, "engine",
                              "broker notice: %s", env->notice->text ? env->notice->text : "");
            break;
        default:
            break; // Heartbeat: liveness only
    }
}

static bool
s_op_probe_open (void *arg)
{
    keel_daemon_t *self = arg;
    zsock_destroy (&self->probe);
    //  No ZMQ_IMMEDIATE here: the probe heartbeat waits for the connection.
    self->probe = s_dealer_new (self, keel_engine_session_endpoint (self->session, 0), false);
    if (self->probe && !s_send_heartbeat (self, self->probe))
        zsock_destroy (&self->probe);
    return self->probe != NULL;
}

static void
s_op_probe_close (void *arg)
{
    keel_daemon_t *self = arg;
    zsock_destroy (&self->probe);
}

static void
s_op_engine_timeout (void *arg)
{
    keel_daemon_t *self = arg;
    bool all_gone = true;
    int killed = keel_runner_kill_all (self->runner, &all_gone);
    size_t held = keel_held_size (self->tasks) - keel_held_running (self->tasks);
    keel_held_clear (self->tasks);
    keel_initdata_clear (self->init);
    int spooled = keel_spool_clear (self->spool);
    KEEL_WARN ("engine",
               "timeout: killed tasks=%d dropped results=%zu spool_files=%d "
               "process_groups_gone=%s",
               killed, held, spooled, all_gone ? "yes" : "no");
}

static void
s_op_new_session (void *arg)
{
    keel_daemon_t *self = arg;
    keel_uuid_new (self->session_id);
    keel_initdata_clear (self->init);
    KEEL_INFO ("engine", "starting over session=%s", self->session_id);
}

// ------------------------------------------------------------ life cycle

keel_daemon_t *
keel_daemon_new (const keel_engine_config_t *cfg, keel_error_t *err)
{
    keel_daemon_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->cfg = cfg;
    self->bad_log = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "bad message");
    self->stale_log = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "stale-epoch");
    self->task_log = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "task");
    self->peer_log = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "broker-triggered");
    self->ops =
        (keel_engine_session_ops_t) { s_op_connect,        s_op_disconnect,  s_op_send_login,
                                      s_op_send_heartbeat, s_op_send_logoff, s_op_logged_in,
                                      s_op_work,           s_op_probe_open,  s_op_probe_close,
                                      s_op_engine_timeout, s_op_new_session };
    self->outbox_ops = (keel_outbox_ops_t) { s_online, s_send_to_broker, s_stop_execution };
    self->starter_ops =
        (keel_starter_ops_t) { s_free_slots, s_start_worker, s_pid_of, s_ended, s_refused };
    keel_uuid_new (self->session_id);
    self->now = zclock_mono ();
    if (!(self->statedir = keel_statedir_open (cfg->state_dir, err))
        || !(self->spool = keel_spool_new (cfg->state_dir, err))
        || !(self->tasks = keel_held_new ()) || !(self->init = keel_initdata_new ())
        || !(self->outbox = keel_outbox_new (self->tasks, self->spool,
                                             keel_statedir_engine_id (self->statedir),
                                             &self->task_log, &self->outbox_ops, self))
        || !(self->starter = keel_starter_new (
                 cfg, self->tasks, self->init, keel_statedir_engine_id (self->statedir),
                 &self->task_log, &self->peer_log, &self->starter_ops, self))
        || !(self->runner = keel_runner_new (cfg->slots, (size_t) cfg->max_output_bytes, err))
        || !(self->session = keel_engine_session_new (cfg, &self->ops, self, self->now))) {
        keel_daemon_destroy (&self);
        return NULL;
    }
    self->started = self->now;
    if (!cfg->security.curve)
        keel_security_warn_open ("engine");
    if (cfg->metrics_endpoint && cfg->security.curve && !cfg->metrics_insecure)
        KEEL_WARN ("engine",
                   "MetricsEndpoint %s not served: Security=curve and MetricsInsecure=false "
                   "(set MetricsInsecure=true to serve it in the clear)",
                   cfg->metrics_endpoint);
    else if (cfg->metrics_endpoint) {
        self->httpd = keel_httpd_new (cfg->metrics_endpoint, err);
        if (!self->httpd) {
            keel_error_prefix (err, "MetricsEndpoint");
            keel_daemon_destroy (&self);
            return NULL;
        }
        KEEL_INFO ("engine", "metrics on http://%s/metrics", cfg->metrics_endpoint);
    }
    int loaded = keel_outbox_load (self->outbox, (size_t) cfg->max_message_bytes);
    KEEL_INFO ("engine",
               "started engine=%s session=%s slots=%d services=%d state_dir=%s "
               "spooled_results=%d",
               keel_statedir_engine_id (self->statedir), self->session_id, cfg->slots,
               cfg->n_services, cfg->state_dir, loaded);
    return self;
}

void
keel_daemon_destroy (keel_daemon_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_daemon_t *self = *self_p;
    keel_httpd_destroy (&self->httpd); // first: its thread may be serving
    zsock_destroy (&self->probe);
    zsock_destroy (&self->dealer);
    keel_runner_destroy (&self->runner);
    keel_engine_session_destroy (&self->session);
    keel_starter_destroy (&self->starter);
    keel_outbox_destroy (&self->outbox);
    keel_held_destroy (&self->tasks);
    keel_initdata_destroy (&self->init);
    keel_spool_destroy (&self->spool);
    keel_statedir_destroy (&self->statedir);
    free (self);
    *self_p = NULL;
}

const char *
keel_daemon_engine_id (const keel_daemon_t *self)
{
    return keel_statedir_engine_id (self->statedir);
}

const char *
keel_daemon_session_id (const keel_daemon_t *self)
{
    return self->session_id;
}

// ------------------------------------------------------------ the loop

// Keeps the time without a broker, and publishes the metrics when due.
static void
s_metrics_turn (keel_daemon_t *self)
{
    keel_engine_session_state_t state = keel_engine_session_state (self->session);
    if (state == KEEL_ENGINE_SESSION_ONLINE && self->offline_since) {
        self->offline_total += self->now - self->offline_since;
        self->offline_since = 0;
    }
    else if (state != KEEL_ENGINE_SESSION_ONLINE && !self->offline_since)
        self->offline_since = self->now;
    if (!self->httpd || self->now < self->metrics_due)
        return;
    self->metrics_due = self->now + S_METRICS_MS;
    int64_t offline = self->offline_since ? self->now - self->offline_since : 0;
    size_t held = keel_held_size (self->tasks), running = keel_held_running (self->tasks);
    keel_engine_metrics_t m = {
        .engine_id = keel_statedir_engine_id (self->statedir),
        .session_id = self->session_id,
        .state = keel_engine_session_state_name (state),
        .broker = state == KEEL_ENGINE_SESSION_ONLINE ? keel_engine_session_endpoint (
                      self->session, keel_engine_session_broker (self->session))
                                                      : "",
        .slots = self->cfg->slots,
        .running = running,
        .held_results = held > running ? held - running : 0,
        .offline_seconds = (double) offline / 1e3,
        .offline_seconds_total = (double) (self->offline_total + offline) / 1e3,
        .uptime_seconds = (double) (self->now - self->started) / 1e3,
        .malformed_messages = self->malformed_messages,
        .stale_messages = self->stale_messages,
    };
    char *text = keel_engine_metrics_render (&m);
    if (text) {
        keel_httpd_publish (self->httpd, "/metrics", "text/plain; version=0.0.4; charset=utf-8",
                            text, strlen (text));
        free (text);
    }
}

static void
s_bad_message (keel_daemon_t *self, const char *what, const char *why)
{
    int64_t suppressed = 0;
    if (keel_ratelimit_allow (&self->bad_log, self->now, &suppressed))
        KEEL_WARN ("engine", "%s message dropped reason=\"%s\" suppressed=%" PRId64, what, why,
                   suppressed);
}

//  Receives one frame from sock; returns the validated envelope or NULL
//  (and *empty_p true when nothing was waiting).
static keel_env_t *
s_recv (keel_daemon_t *self, zsock_t *sock, bool *empty_p)
{
    *empty_p = false;
    zmsg_t *msg = zmsg_recv_nowait (sock);
    if (!msg) {
        *empty_p = true;
        return NULL;
    }
    keel_env_t *env = NULL;
    keel_error_t err = { "more than one frame" };
    if (zmsg_size (msg) == 1) {
        zframe_t *frame = zmsg_first (msg);
        env = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
        if (env && env->sender != KEEL__SENDER_KIND__SENDER_BROKER) {
            snprintf (err.text, sizeof err.text, "not from a broker");
            keel_wire_free (&env);
        }
        else if (env && !keel_engine_session_reply_usable (env, &err))
            keel_wire_free (&env);
    }
    zmsg_destroy (&msg);
    if (!env) {
        self->malformed_messages++;
        s_bad_message (self, "malformed", err.text);
    }
    return env;
}

//  An AssignBatch is its Assigns, in order: each goes to the session as an
//  Assign alone would (epoch fencing, state), in an envelope that is a view
//  of the batch's. False if any was not expected.
static bool
s_on_assign_batch (keel_daemon_t *self, const keel_env_t *env)
{
    keel_env_t one = *env; // version, sender, seq, epoch
    one.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
    bool expected = true;
    for (size_t i = 0; i < env->assign_batch->n_assigns; i++) {
        one.assign = env->assign_batch->assigns[i];
        if (!keel_engine_session_on_message (self->session, &one, self->now))
            expected = false;
    }
    return expected;
}

static void
s_read_broker (keel_daemon_t *self)
{
    unsigned gen = self->dealer_gen;
    for (int i = 0; i < S_MSGS_PER_TURN && self->dealer && gen == self->dealer_gen; i++) {
        bool empty = false;
        keel_env_t *env = s_recv (self, self->dealer, &empty);
        if (empty)
            break;
        if (env && keel_engine_session_stale (self->session, env)) {
            self->stale_messages++;
            KEEL_LOG_LIMITED (&self->stale_log, self->now, KEEL_LOG_INFO, "engine",
                              "dropped %s: epoch %" PRIu64
                              " below the highest its pair has shown dropped=%" PRIu64,
                              keel_wire_body_name (env), env->epoch, self->stale_messages);
            keel_wire_free (&env);
            continue;
        }
        bool expected = !env
                        || (env->body_case == KEEL__ENVELOPE__BODY_ASSIGN_BATCH
                                ? s_on_assign_batch (self, env)
                                : keel_engine_session_on_message (self->session, env, self->now));
        if (!expected) {
            self->unexpected_messages++;
            s_bad_message (self, keel_wire_body_name (env), "unexpected in this state");
        }
        keel_wire_free (&env);
    }
}

static void
s_read_probe (keel_daemon_t *self)
{
    for (int i = 0; i < S_MSGS_PER_TURN && self->probe; i++) {
        bool empty = false;
        keel_env_t *env = s_recv (self, self->probe, &empty);
        if (empty)
            break;
        if (env && env->body_case == KEEL__ENVELOPE__BODY_PASSIVE)
            keel_engine_session_on_probe_passive (self->session, env->passive->active, self->now);
        else if (env)
            keel_engine_session_on_probe_reply (self->session, self->now);
        keel_wire_free (&env);
    }
}

int
keel_daemon_run (keel_daemon_t *self, volatile sig_atomic_t *stop)
{
    zmq_pollitem_t items[2 + KEEL_ENGINE_MAX_SLOTS];
    keel_runner_handlers_t handlers = { s_ended, s_on_checkpoint, self };
    int fds[KEEL_ENGINE_MAX_SLOTS];
    //  One turn per wake-up; the process runs until stopped.
    while (keel_engine_session_state (self->session) != KEEL_ENGINE_SESSION_STOPPED) {
        self->now = zclock_mono ();
        if (*stop) {
            KEEL_INFO ("engine", "stopping: logging off, killing tasks running=%zu",
                       keel_held_running (self->tasks));
            keel_engine_session_stop (self->session, self->now);
            break;
        }
        keel_engine_session_tick (self->session, self->now);
        s_metrics_turn (self);
        keel_ratelimit_flush (&self->bad_log, self->now, KEEL_LOG_WARN, "engine");
        keel_ratelimit_flush (&self->task_log, self->now, KEEL_LOG_WARN, "engine");
        keel_ratelimit_flush (&self->peer_log, self->now, KEEL_LOG_WARN, "engine");
        if (keel_engine_session_state (self->session) == KEEL_ENGINE_SESSION_STOPPED)
            break;
        keel_outbox_flush (self->outbox); // results the connection did not take yet
        if (self->spool_at && self->now >= self->spool_at) {
            // Still offline a moment after the connection dropped: no broker
            // has these results; they must outlive this process.
            if (keel_engine_session_state (self->session) != KEEL_ENGINE_SESSION_ONLINE)
                keel_outbox_spool_all (self->outbox);
            self->spool_at = 0;
        }

        int n = 0;
        int dealer_at = -1, probe_at = -1;
        if (self->dealer) {
            dealer_at = n;
            short events = ZMQ_POLLIN;
            if (keel_engine_session_wants_writable (self->session))
                events |= ZMQ_POLLOUT;
            items[n++] = (zmq_pollitem_t) { zsock_resolve (self->dealer), 0, events, 0 };
        }
        if (self->probe) {
            probe_at = n;
            items[n++] = (zmq_pollitem_t) { zsock_resolve (self->probe), 0, ZMQ_POLLIN, 0 };
        }
        int nfds = keel_runner_fds (self->runner, fds, KEEL_ENGINE_MAX_SLOTS);
        int fds_at = n;
        for (int i = 0; i < nfds; i++)
            items[n++] = (zmq_pollitem_t) { NULL, fds[i], ZMQ_POLLIN, 0 };

        int64_t next = keel_engine_session_next_deadline (self->session);
        if (self->spool_at && self->spool_at < next)
            next = self->spool_at;
        int64_t runner_next = keel_runner_next_deadline (self->runner);
        if (runner_next < next)
            next = runner_next;
        if (self->httpd && self->metrics_due < next)
            next = self->metrics_due;
        int64_t wait = next - self->now;
        if (wait < 0)
            wait = 0;
        if (wait > S_POLL_MAX_MS)
            wait = S_POLL_MAX_MS;
        int rc = zmq_poll (items, n, (long) wait);
        self->now = zclock_mono ();
        if (rc < 0)
            continue; // EINTR: a signal; the loop top looks at *stop
        if (dealer_at >= 0 && (items[dealer_at].revents & ZMQ_POLLIN))
            s_read_broker (self);
        if (probe_at >= 0 && (items[probe_at].revents & ZMQ_POLLIN))
            s_read_probe (self);
        int nready = 0;
        for (int i = 0; i < nfds; i++)
            if (items[fds_at + i].revents)
                fds[nready++] = fds[i];
        keel_runner_process_polled (self->runner, self->now, &handlers, fds, nready);
        keel_starter_start_queued (self->starter, self->now);
        keel_outbox_end_turn (self->outbox); // the Results of the tasks that ended in this turn
    }
    keel_outbox_end_turn (self->outbox);
    keel_outbox_spool_all (self->outbox); // unacknowledged results outlive this process
    bool all_gone = true;
    int killed = keel_runner_kill_all (self->runner, &all_gone);
    keel_held_remove_running (self->tasks);
    int code = keel_engine_session_exit_code (self->session);
    KEEL_INFO ("engine",
               "stopped exit_code=%d killed_tasks=%d spooled_results=%zu "
               "malformed_messages=%" PRIu64,
               code, killed, keel_held_size (self->tasks), self->malformed_messages);
    return code;
}
