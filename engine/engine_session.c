/*  engine_session.c — the engine ↔ broker session state machine (see engine_session.h). */
#include "engine_session.h"
#include "endpoint.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heartbeat.h"
#include "log.h"

#define S_LIVENESS              3
#define S_BACKOFF_INITIAL       1000 // between two rounds of the broker list: 1 s doubling
#define S_BACKOFF_MAX           3000 // to 3 s (± 20%), below the default EngineLoginWindow (5 s)
#define S_CONNECT_MS            500  // first round: a broker not connected by then is skipped
#define S_CONNECT_DOUBLINGS     3    // later rounds wait 1, 2, 4 s (at most 3·H)
#define S_QUIET_ROUNDS          3    // rounds whose failed tries are logged at INFO
#define S_NEVER                 INT64_MAX
//  Largest values a LoginReply may hand over: the engine's own HeartbeatInterval
//  limit and the broker's EngineTimeoutMinutes limit (100000 min). Beyond them
//  the session's int64 timer arithmetic would overflow.
#define S_MAX_HEARTBEAT_MS      (3600LL * 1000)
#define S_MAX_ENGINE_TIMEOUT_MS (100000LL * 60 * 1000)

struct _keel_engine_session_t {
    const keel_engine_config_t *cfg;
    const keel_engine_session_ops_t *ops;
    void *arg;
    keel_engine_session_state_t state;
    int broker; // index of the broker tried / logged in to
    int exit_code;
    int64_t heartbeat_ms;
    int64_t engine_timeout_ms;
    uint64_t epoch;          // of the broker we are logged in to
    keel_backoff_t backoff;  // between rounds
    int rounds_failed;       // rounds of the broker list without a login since the last one
    keel_peer_clock_t clock; // ONLINE and LOGGING_IN
    int64_t retry_at;        // OFFLINE
    int64_t login_deadline;  // LOGGING_IN: connected by then (not sent) / reply by then (sent)
    bool login_sent;         // LOGGING_IN
    int64_t offline_since;   // every state but ONLINE
    int64_t probe_at;        // ONLINE on a failover broker; S_NEVER otherwise
    int64_t probe_deadline;  // S_NEVER unless a probe is open
    //  Resilient pair (DESIGN §6), per configured broker:
    int pair_peer[KEEL_ENGINE_MAX_BROKERS]; // configured broker its LoginReply named; -1
    bool paired[KEEL_ENGINE_MAX_BROKERS];   // its LoginReply named a pair peer: epochs checked
    uint64_t pair_epoch[KEEL_ENGINE_MAX_BROKERS]; // highest epoch seen from it while paired
    unsigned jumped;       // brokers a Passive sent the session to in this round (bit i: broker i)
    char broker_name[128]; // the name in the last LoginReply
    char moved_from[128];  // moving home: the failover broker left ("" otherwise)
    // Members of a shared store that LoginReply.cluster_members named,
    // after the configured brokers (owned copies; see s_endpoint).
    char *learned[KEEL_ENGINE_MAX_BROKERS];
    int nlearned;
};

static int
s_nconfigured (const keel_engine_session_t *self)
{
    return self->cfg->n_brokers < KEEL_ENGINE_MAX_BROKERS ? self->cfg->n_brokers
                                                          : KEEL_ENGINE_MAX_BROKERS;
}

// Brokers: the configured ones, then the learned ones.
static int
s_nbrokers (const keel_engine_session_t *self)
{
    int n = s_nconfigured (self) + self->nlearned;
    return n < KEEL_ENGINE_MAX_BROKERS ? n : KEEL_ENGINE_MAX_BROKERS;
}

static const char *
s_endpoint (const keel_engine_session_t *self, int i)
{
    int c = s_nconfigured (self);
    if (i < 0 || i >= s_nbrokers (self))
        return "?";
    return i < c ? self->cfg->brokers[i] : self->learned[i - c];
}

static const char *s_state_names[] = { "offline", "logging-in", "online", "stopped" };

keel_engine_session_t *
keel_engine_session_new (const keel_engine_config_t *cfg, const keel_engine_session_ops_t *ops,
                         void *arg, int64_t now)
{
    keel_engine_session_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->ops = ops;
    self->arg = arg;
    self->state = KEEL_ENGINE_SESSION_OFFLINE;
    self->heartbeat_ms = cfg->heartbeat_ms;
    self->engine_timeout_ms = cfg->default_engine_timeout_ms;
    keel_backoff_init (&self->backoff, S_BACKOFF_INITIAL, S_BACKOFF_MAX,
                       (uint32_t) getpid () ^ (uint32_t) now);
    self->retry_at = now;
    self->offline_since = now;
    self->probe_at = S_NEVER;
    self->probe_deadline = S_NEVER;
    for (int i = 0; i < KEEL_ENGINE_MAX_BROKERS; i++)
        self->pair_peer[i] = -1;
    return self;
}

void
keel_engine_session_destroy (keel_engine_session_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_engine_session_t *self = *self_p;
    for (int i = 0; i < self->nlearned; i++)
        free (self->learned[i]);
    free (self);
    *self_p = NULL;
}

int
keel_engine_session_learn (keel_engine_session_t *self, const char *endpoint)
{
    if (!keel_endpoint_named (endpoint) || strlen (endpoint) > 255)
        return -1;
    int known = keel_engine_session_find_broker (self, endpoint);
    if (known >= 0)
        return known;
    if (s_nbrokers (self) >= KEEL_ENGINE_MAX_BROKERS)
        return -1;
    char *copy = strdup (endpoint);
    if (!copy)
        return -1;
    self->learned[self->nlearned++] = copy;
    KEEL_INFO ("engine", "broker %s is a member of the cluster: added as broker %d", copy,
               s_nbrokers (self) - 1);
    return s_nbrokers (self) - 1;
}

const char *
keel_engine_session_endpoint (const keel_engine_session_t *self, int broker)
{
    return s_endpoint (self, broker);
}

keel_engine_session_state_t
keel_engine_session_state (const keel_engine_session_t *self)
{
    return self->state;
}
int
keel_engine_session_broker (const keel_engine_session_t *self)
{
    return self->broker;
}
int64_t
keel_engine_session_heartbeat_ms (const keel_engine_session_t *self)
{
    return self->heartbeat_ms;
}
int
keel_engine_session_exit_code (const keel_engine_session_t *self)
{
    return self->exit_code;
}
bool
keel_engine_session_probing (const keel_engine_session_t *self)
{
    return self->probe_deadline != S_NEVER;
}

int64_t
keel_engine_session_engine_timeout_ms (const keel_engine_session_t *self)
{
    return self->engine_timeout_ms;
}

const char *
keel_engine_session_moved_from (const keel_engine_session_t *self)
{
    return self->moved_from;
}

const char *
keel_engine_session_state_name (keel_engine_session_state_t state)
{
    return (unsigned) state < 4 ? s_state_names[state] : "?";
}

bool
keel_engine_session_wants_writable (const keel_engine_session_t *self)
{
    return self->state == KEEL_ENGINE_SESSION_LOGGING_IN && !self->login_sent;
}

// ------------------------------------------------------------ pairs

int
keel_engine_session_find_broker (const keel_engine_session_t *self, const char *endpoint)
{
    int n = s_nbrokers (self);
    for (int i = 0; i < n; i++)
        if (keel_endpoint_find ((const char *const[]) { s_endpoint (self, i) }, 1, endpoint) == 0)
            return i;
    return -1;
}

int
keel_engine_session_pair_peer (const keel_engine_session_t *self, int broker)
{
    return broker >= 0 && broker < KEEL_ENGINE_MAX_BROKERS ? self->pair_peer[broker] : -1;
}

//  Either of a and b named the other as its pair peer.
static bool
s_related (const keel_engine_session_t *self, int a, int b)
{
    if (a < 0 || b < 0 || a == b || a >= KEEL_ENGINE_MAX_BROKERS || b >= KEEL_ENGINE_MAX_BROKERS)
        return false;
    return self->pair_peer[a] == b || self->pair_peer[b] == a;
}

//  Whether env from the current broker takes part in the epoch rule
//  (*peer_p: its pair peer then): a LoginReply that names a pair peer, or
//  anything else from a broker whose LoginReply did. Passive never does,
//  nor does a member of a shared store's cluster (its LoginReply lists the
//  members): each member has epochs of its own, and the store fences a
//  member that lost its work.
static bool
s_epoch_checked (const keel_engine_session_t *self, const keel_env_t *env, int *peer_p)
{
    int b = self->broker;
    if (!env->has_epoch || env->body_case == KEEL__ENVELOPE__BODY_PASSIVE || b < 0
        || b >= KEEL_ENGINE_MAX_BROKERS)
        return false;
    if (env->body_case == KEEL__ENVELOPE__BODY_LOGIN_REPLY) {
        *peer_p = keel_engine_session_find_broker (self, env->login_reply->pair_peer);
        return keel_endpoint_named (env->login_reply->pair_peer)
               && env->login_reply->n_cluster_members == 0;
    }
    *peer_p = self->pair_peer[b];
    return self->paired[b];
}

bool
keel_engine_session_stale (const keel_engine_session_t *self, const keel_env_t *env)
{
    int peer = -1, b = self->broker;
    if (!s_epoch_checked (self, env, &peer))
        return false;
    uint64_t high = self->pair_epoch[b];
    for (int i = 0; i < s_nbrokers (self) && i < KEEL_ENGINE_MAX_BROKERS; i++)
        if (i != b && (i == peer || self->pair_peer[i] == b) && self->paired[i]
            && self->pair_epoch[i] > high)
            high = self->pair_epoch[i];
    return env->epoch < high;
}

//  env passed the epoch rule: remember its epoch.
static void
s_note_epoch (keel_engine_session_t *self, const keel_env_t *env)
{
    int peer = -1;
    if (s_epoch_checked (self, env, &peer) && env->epoch > self->pair_epoch[self->broker])
        self->pair_epoch[self->broker] = env->epoch;
}

//  A LoginReply from the current broker named pair_peer (NULL: none); a
//  member of a cluster names its successor, but its epochs are its own.
static void
s_note_pair (keel_engine_session_t *self, const char *pair_peer, bool member)
{
    int b = self->broker;
    if (b < 0 || b >= KEEL_ENGINE_MAX_BROKERS)
        return;
    bool named = keel_endpoint_named (pair_peer);
    self->paired[b] = named && !member;
    self->pair_peer[b] = named ? keel_engine_session_find_broker (self, pair_peer) : -1;
    if (self->pair_peer[b] == b)
        self->pair_peer[b] = -1;
    if (!self->paired[b])
        self->pair_epoch[b] = 0; // standalone now: its epochs are its own
}

// ------------------------------------------------------------ actions

static void
s_set_state (keel_engine_session_t *self, keel_engine_session_state_t state)
{
    if (state != self->state)
        KEEL_DEBUG ("engine", "session %s -> %s", s_state_names[self->state], s_state_names[state]);
    self->state = state;
}

static void
s_close_probe (keel_engine_session_t *self)
{
    if (self->probe_deadline != S_NEVER)
        self->ops->probe_close (self->arg);
    self->probe_deadline = S_NEVER;
    self->probe_at = S_NEVER;
}

//  How long a try waits for its connection (the broker DEALER has
//  ZMQ_IMMEDIATE: the login leaves only once the connection is made, so an
//  unsent login means no broker there, or one that is not running). Short
//  in the first round, so that the next broker of the list is tried within
//  S_CONNECT_MS of losing one; longer in later rounds, for slow links;
//  never more than 3·H.
static int64_t
s_connect_ms (const keel_engine_session_t *self)
{
    int doublings =
        self->rounds_failed < S_CONNECT_DOUBLINGS ? self->rounds_failed : S_CONNECT_DOUBLINGS;
    int64_t ms = (int64_t) S_CONNECT_MS << doublings;
    int64_t cap = S_LIVENESS * self->heartbeat_ms;
    return ms < cap ? ms : cap;
}

//  The login left: the broker has 3·H from now to answer.
static void
s_login_sent (keel_engine_session_t *self, int64_t now)
{
    self->login_sent = true;
    self->login_deadline = now + S_LIVENESS * self->heartbeat_ms;
    keel_peer_clock_init (&self->clock, self->heartbeat_ms, S_LIVENESS, now);
}

static void s_try_failed (keel_engine_session_t *self, int64_t now);

//  Opens a fresh connection to the current broker and sends the login.
static void
s_start_login (keel_engine_session_t *self, int64_t now)
{
    const char *endpoint = s_endpoint (self, self->broker);
    if (!self->ops->connect (self->arg, self->broker)) {
        KEEL_WARN ("engine", "cannot connect broker=%s", endpoint);
        s_try_failed (self, now);
        return;
    }
    s_set_state (self, KEEL_ENGINE_SESSION_LOGGING_IN);
    self->login_sent = false;
    self->login_deadline = now + s_connect_ms (self);
    if (self->ops->send_login (self->arg))
        s_login_sent (self, now);
    KEEL_DEBUG ("engine", "logging in broker=%s sent=%d", endpoint, self->login_sent);
}

//  Leaves ONLINE: no socket; a round of the broker list starts at once,
//  primary first, or the lost broker's pair peer first (it takes over
//  with the mirrored store).
static void
s_go_offline (keel_engine_session_t *self, int64_t now)
{
    int peer = keel_engine_session_pair_peer (self, self->broker);
    s_close_probe (self);
    self->ops->disconnect (self->arg);
    self->offline_since = now;
    if (peer >= 0)
        KEEL_INFO ("engine", "trying the pair peer first broker=%s lost=%s",
                   s_endpoint (self, peer), s_endpoint (self, self->broker));
    self->broker = peer >= 0 ? peer : 0;
    self->rounds_failed = 0;
    self->jumped = 0;
    self->retry_at = now;
    s_set_state (self, KEEL_ENGINE_SESSION_OFFLINE);
}

//  A try failed (no connection, no reply, refused): the next broker of the
//  round at once; after the last one, the next round starts at the primary
//  after the backoff delay.
static void
s_try_failed (keel_engine_session_t *self, int64_t now)
{
    s_close_probe (self);
    self->ops->disconnect (self->arg);
    self->broker++;
    self->retry_at = now;
    if (self->broker >= s_nbrokers (self)) {
        self->broker = 0;
        self->jumped = 0;
        self->rounds_failed++;
        int64_t delay = keel_backoff_next (&self->backoff);
        self->retry_at = now + delay;
        if (self->rounds_failed <= S_QUIET_ROUNDS || self->rounds_failed % 10 == 0)
            KEEL_INFO ("engine", "no broker answered rounds=%d offline_ms=%lld next_round_ms=%lld",
                       self->rounds_failed, (long long) (now - self->offline_since),
                       (long long) delay);
    }
    s_set_state (self, KEEL_ENGINE_SESSION_OFFLINE);
}

//  Logs off the current broker and logs in to the primary, carrying tasks.
static void
s_move_to_primary (keel_engine_session_t *self, int64_t now, const char *why)
{
    KEEL_INFO ("engine", "moving to primary broker=%s from=%s reason=\"%s\"", s_endpoint (self, 0),
               s_endpoint (self, self->broker), why);
    if (self->broker != 0) {
        self->ops->send_logoff (self->arg, "moving");
        snprintf (self->moved_from, sizeof self->moved_from, "%s", self->broker_name);
    }
    s_close_probe (self);
    self->ops->disconnect (self->arg);
    self->offline_since = now;
    self->broker = 0;
    self->rounds_failed = 0;
    s_start_login (self, now);
}

static void
s_logged_in (keel_engine_session_t *self, const keel_env_t *env, int64_t now)
{
    const Keel__LoginReply *reply = env->login_reply;
    for (size_t i = 0; i < reply->n_cluster_members; i++)
        keel_engine_session_learn (self, reply->cluster_members[i]);
    s_note_pair (self, reply->pair_peer, reply->n_cluster_members > 0);
    self->jumped = 0;
    self->heartbeat_ms = (int64_t) reply->heartbeat_ms;
    self->engine_timeout_ms = (int64_t) reply->engine_timeout_ms;
    self->epoch = reply->has_epoch ? reply->epoch : (env->has_epoch ? env->epoch : 0);
    keel_peer_clock_init (&self->clock, self->heartbeat_ms, S_LIVENESS, now);
    keel_backoff_reset (&self->backoff);
    self->rounds_failed = 0;
    s_set_state (self, KEEL_ENGINE_SESSION_ONLINE);
    self->probe_deadline = S_NEVER;
    //  No probe of the primary from its pair peer: no automatic failback
    //  in a pair (a returning primary comes back passive).
    self->probe_at = self->broker != 0 && !s_related (self, self->broker, 0)
                         ? now + self->cfg->primary_retry_ms
                         : S_NEVER;
    snprintf (self->broker_name, sizeof self->broker_name, "%s",
              reply->broker_name ? reply->broker_name : "");
    self->moved_from[0] = 0;
    KEEL_INFO ("engine",
               "logged in broker=%s name=%s slots=%d heartbeat_ms=%lld "
               "engine_timeout_ms=%lld verdicts=%zu pair_peer=%s",
               s_endpoint (self, self->broker), reply->broker_name ? reply->broker_name : "?",
               self->cfg->slots, (long long) self->heartbeat_ms,
               (long long) self->engine_timeout_ms, reply->n_verdicts,
               reply->pair_peer ? reply->pair_peer : "-");
    self->ops->logged_in (self->arg, reply);
}

//  Passive from the broker being logged in to or logged in to: go to the
//  active broker it names (a configured one not already gone to by a
//  Passive in this round) at once, or, from ONLINE, to the next broker;
//  else treat it as a failed try (the next broker at once; the backoff
//  after the round's last). Tasks keep
//  running and results are kept: the next login claims them.
static void
s_passive (keel_engine_session_t *self, const keel_env_t *env, int64_t now)
{
    const Keel__Passive *passive = env->passive;
    int from = self->broker;
    int target = keel_engine_session_find_broker (self, passive->active);
    KEEL_INFO ("engine", "broker is passive broker=%s active=%s reason=\"%s\"",
               s_endpoint (self, from), passive->active ? passive->active : "?",
               passive->reason ? passive->reason : "");
    if (self->state == KEEL_ENGINE_SESSION_ONLINE) {
        //  Left ONLINE: the Engine Timeout counts from now; a fresh round.
        self->offline_since = now;
        self->rounds_failed = 0;
        self->jumped = 0;
    }
    if ((target < 0 || target == from) && self->state == KEEL_ENGINE_SESSION_ONLINE)
        target = (from + 1) % s_nbrokers (self); // a fresh round from the next broker
    if (target >= 0 && target != from && target < KEEL_ENGINE_MAX_BROKERS
        && !(self->jumped & (1u << target))) {
        self->jumped |= 1u << target;
        s_close_probe (self);
        self->ops->disconnect (self->arg);
        self->broker = target;
        self->retry_at = now;
        s_set_state (self, KEEL_ENGINE_SESSION_OFFLINE);
        return;
    }
    s_try_failed (self, now);
}

static void
s_engine_timeout (keel_engine_session_t *self, int64_t now)
{
    KEEL_ERROR ("engine",
                "engine timeout: offline for %lld ms (limit %lld ms); killing tasks, "
                "dropping held results action=%s",
                (long long) (now - self->offline_since), (long long) self->engine_timeout_ms,
                self->cfg->timeout_action == KEEL_TIMEOUT_ACTION_EXIT ? "exit" : "restart");
    s_close_probe (self);
    self->ops->disconnect (self->arg);
    self->ops->engine_timeout (self->arg);
    if (self->cfg->timeout_action == KEEL_TIMEOUT_ACTION_EXIT) {
        self->exit_code = 3;
        s_set_state (self, KEEL_ENGINE_SESSION_STOPPED);
        return;
    }
    self->ops->new_session (self->arg);
    keel_backoff_reset (&self->backoff);
    self->jumped = 0;
    self->broker = 0;
    self->rounds_failed = 0;
    self->offline_since = now;
    self->retry_at = now;
    s_set_state (self, KEEL_ENGINE_SESSION_OFFLINE);
}

static void
s_stop (keel_engine_session_t *self)
{
    if (self->state == KEEL_ENGINE_SESSION_ONLINE)
        self->ops->send_logoff (self->arg, "stopping");
    s_close_probe (self);
    self->ops->disconnect (self->arg);
    self->exit_code = 0;
    s_set_state (self, KEEL_ENGINE_SESSION_STOPPED);
}

static void
s_unexpected (keel_engine_session_t *self, keel_engine_session_event_t event)
{
    KEEL_DEBUG ("engine", "session: event %d ignored in state %s", (int) event,
                s_state_names[self->state]);
}

// ------------------------------------------------------------ the machine

void
keel_engine_session_event (keel_engine_session_t *self, keel_engine_session_event_t event,
                           const keel_env_t *env, int64_t now)
{
    if (event == KEEL_ENGINE_SEV_STOP && self->state != KEEL_ENGINE_SESSION_STOPPED) {
        s_stop (self);
        return;
    }
    if (event == KEEL_ENGINE_SEV_ENGINE_TIMEOUT && self->state != KEEL_ENGINE_SESSION_ONLINE
        && self->state != KEEL_ENGINE_SESSION_STOPPED) {
        s_engine_timeout (self, now);
        return;
    }
    switch (self->state) {
        case KEEL_ENGINE_SESSION_OFFLINE:
            switch (event) {
                case KEEL_ENGINE_SEV_RETRY_DUE:
                    s_start_login (self, now);
                    break;
                default:
                    s_unexpected (self, event);
                    break;
            }
            break;

        case KEEL_ENGINE_SESSION_LOGGING_IN:
            switch (event) {
                case KEEL_ENGINE_SEV_WRITABLE:
                    if (self->ops->send_login (self->arg))
                        s_login_sent (self, now);
                    break;
                case KEEL_ENGINE_SEV_LOGIN_OK:
                    s_logged_in (self, env, now);
                    break;
                case KEEL_ENGINE_SEV_LOGIN_REFUSED:
                    KEEL_WARN ("engine", "login refused broker=%s error=\"%s\"",
                               s_endpoint (self, self->broker),
                               env->login_reply->error ? env->login_reply->error : "");
                    s_try_failed (self, now);
                    break;
                case KEEL_ENGINE_SEV_PASSIVE:
                    s_passive (self, env, now);
                    break;
                case KEEL_ENGINE_SEV_LOGIN_TIMEOUT:
                    if (self->rounds_failed < S_QUIET_ROUNDS)
                        KEEL_INFO ("engine", "no login reply broker=%s connected=%s",
                                   s_endpoint (self, self->broker),
                                   self->login_sent ? "yes" : "no");
                    else
                        KEEL_DEBUG ("engine", "no login reply broker=%s connected=%s",
                                    s_endpoint (self, self->broker),
                                    self->login_sent ? "yes" : "no");
                    s_try_failed (self, now);
                    break;
                default:
                    s_unexpected (self, event);
                    break;
            }
            break;

        case KEEL_ENGINE_SESSION_ONLINE:
            switch (event) {
                case KEEL_ENGINE_SEV_WORK:
                    self->ops->work (self->arg, env);
                    break;
                case KEEL_ENGINE_SEV_HEARTBEAT_DUE:
                    //  Sent or not (the connection may be down), the next try is one
                    //  interval away: no spinning on a dead socket.
                    self->ops->send_heartbeat (self->arg);
                    keel_peer_clock_sent (&self->clock, now);
                    break;
                case KEEL_ENGINE_SEV_BROKER_SILENT:
                    KEEL_WARN ("engine", "offline: broker silent broker=%s silent_ms=%lld",
                               s_endpoint (self, self->broker),
                               (long long) (now - self->clock.last_recv));
                    s_go_offline (self, now);
                    break;
                case KEEL_ENGINE_SEV_PASSIVE:
                    s_passive (self, env, now);
                    break;
                case KEEL_ENGINE_SEV_RELOGIN:
                    s_move_to_primary (
                        self, now, env && env->relogin->reason ? env->relogin->reason : "relogin");
                    break;
                case KEEL_ENGINE_SEV_PROBE_DUE:
                    if (self->ops->probe_open (self->arg))
                        self->probe_deadline = now + S_LIVENESS * self->heartbeat_ms;
                    self->probe_at = now + self->cfg->primary_retry_ms;
                    break;
                case KEEL_ENGINE_SEV_PROBE_ANSWERED:
                    s_move_to_primary (self, now, "primary is back");
                    break;
                case KEEL_ENGINE_SEV_PROBE_TIMEOUT:
                case KEEL_ENGINE_SEV_PROBE_PASSIVE:
                    self->ops->probe_close (self->arg);
                    self->probe_deadline = S_NEVER;
                    if (s_related (self, self->broker, 0))
                        self->probe_at = S_NEVER; // the primary said we are on its peer
                    break;
                default:
                    s_unexpected (self, event);
                    break;
            }
            break;

        case KEEL_ENGINE_SESSION_STOPPED:
        default:
            s_unexpected (self, event);
            break;
    }
}

// ------------------------------------------------------------ inputs

bool
keel_engine_session_reply_usable (const keel_env_t *env, keel_error_t *err)
{
    if (env->body_case != KEEL__ENVELOPE__BODY_LOGIN_REPLY || !env->login_reply->ok)
        return true;
    const Keel__LoginReply *reply = env->login_reply;
    if (reply->heartbeat_ms > (uint64_t) S_MAX_HEARTBEAT_MS) {
        snprintf (err->text, sizeof err->text, "login_reply: heartbeat_ms %" PRIu64 " above %lld",
                  reply->heartbeat_ms, S_MAX_HEARTBEAT_MS);
        return false;
    }
    if (reply->engine_timeout_ms > (uint64_t) S_MAX_ENGINE_TIMEOUT_MS) {
        snprintf (err->text, sizeof err->text,
                  "login_reply: engine_timeout_ms %" PRIu64 " above %lld", reply->engine_timeout_ms,
                  S_MAX_ENGINE_TIMEOUT_MS);
        return false;
    }
    return true;
}

void
keel_engine_session_tick (keel_engine_session_t *self, int64_t now)
{
    if (self->state != KEEL_ENGINE_SESSION_ONLINE && self->state != KEEL_ENGINE_SESSION_STOPPED
        && now - self->offline_since >= self->engine_timeout_ms) {
        keel_engine_session_event (self, KEEL_ENGINE_SEV_ENGINE_TIMEOUT, NULL, now);
        return;
    }
    switch (self->state) {
        case KEEL_ENGINE_SESSION_OFFLINE:
            if (now >= self->retry_at)
                keel_engine_session_event (self, KEEL_ENGINE_SEV_RETRY_DUE, NULL, now);
            break;
        case KEEL_ENGINE_SESSION_LOGGING_IN:
            if (now >= self->login_deadline)
                keel_engine_session_event (self, KEEL_ENGINE_SEV_LOGIN_TIMEOUT, NULL, now);
            else if (!self->login_sent)
                keel_engine_session_event (self, KEEL_ENGINE_SEV_WRITABLE, NULL, now);
            break;
        case KEEL_ENGINE_SESSION_ONLINE:
            if (keel_peer_clock_lost (&self->clock, now)) {
                keel_engine_session_event (self, KEEL_ENGINE_SEV_BROKER_SILENT, NULL, now);
                break;
            }
            if (now >= self->probe_deadline)
                keel_engine_session_event (self, KEEL_ENGINE_SEV_PROBE_TIMEOUT, NULL, now);
            if (self->probe_deadline == S_NEVER && now >= self->probe_at)
                keel_engine_session_event (self, KEEL_ENGINE_SEV_PROBE_DUE, NULL, now);
            if (keel_peer_clock_heartbeat_due (&self->clock, now))
                keel_engine_session_event (self, KEEL_ENGINE_SEV_HEARTBEAT_DUE, NULL, now);
            break;
        case KEEL_ENGINE_SESSION_STOPPED:
        default:
            break;
    }
}

int64_t
keel_engine_session_next_deadline (const keel_engine_session_t *self)
{
    int64_t next = S_NEVER;
    if (self->state != KEEL_ENGINE_SESSION_ONLINE && self->state != KEEL_ENGINE_SESSION_STOPPED)
        next = self->offline_since + self->engine_timeout_ms;
    int64_t at = S_NEVER;
    switch (self->state) {
        case KEEL_ENGINE_SESSION_OFFLINE:
            at = self->retry_at;
            break;
        case KEEL_ENGINE_SESSION_LOGGING_IN:
            at = self->login_deadline;
            break;
        case KEEL_ENGINE_SESSION_ONLINE:
            at = keel_peer_clock_next_deadline (&self->clock);
            if (self->probe_deadline < at)
                at = self->probe_deadline;
            if (self->probe_deadline == S_NEVER && self->probe_at < at)
                at = self->probe_at;
            break;
        default:
            break;
    }
    return at < next ? at : next;
}

bool
keel_engine_session_on_message (keel_engine_session_t *self, const keel_env_t *env, int64_t now)
{
    keel_engine_session_state_t state = self->state;
    if (state != KEEL_ENGINE_SESSION_ONLINE && state != KEEL_ENGINE_SESSION_LOGGING_IN)
        return false;
    //  A deposed active broker of a pair: not even a sign of life.
    if (keel_engine_session_stale (self, env))
        return false;
    keel_peer_clock_received (&self->clock, now);
    if (env->body_case == KEEL__ENVELOPE__BODY_PASSIVE) {
        keel_engine_session_event (self, KEEL_ENGINE_SEV_PASSIVE, env, now);
        return true;
    }
    s_note_epoch (self, env);
    if (state == KEEL_ENGINE_SESSION_LOGGING_IN) {
        if (env->body_case != KEEL__ENVELOPE__BODY_LOGIN_REPLY)
            return false; // e.g. a Relogin answering a heartbeat sent before
        keel_engine_session_event (
            self, env->login_reply->ok ? KEEL_ENGINE_SEV_LOGIN_OK : KEEL_ENGINE_SEV_LOGIN_REFUSED,
            env, now);
        return true;
    }
    //  Fencing: a message from an older epoch of the broker is refused.
    if (env->has_epoch && self->epoch && env->epoch < self->epoch)
        return false;
    switch (env->body_case) {
        case KEEL__ENVELOPE__BODY_RELOGIN:
            keel_engine_session_event (self, KEEL_ENGINE_SEV_RELOGIN, env, now);
            return true;
        case KEEL__ENVELOPE__BODY_ASSIGN:
        case KEEL__ENVELOPE__BODY_CANCEL:
        case KEEL__ENVELOPE__BODY_RESULT_ACK:
        case KEEL__ENVELOPE__BODY_HEARTBEAT:
        case KEEL__ENVELOPE__BODY_NOTICE:
            keel_engine_session_event (self, KEEL_ENGINE_SEV_WORK, env, now);
            return true;
        default:
            return false;
    }
}

void
keel_engine_session_on_probe_reply (keel_engine_session_t *self, int64_t now)
{
    if (self->state == KEEL_ENGINE_SESSION_ONLINE && self->probe_deadline != S_NEVER)
        keel_engine_session_event (self, KEEL_ENGINE_SEV_PROBE_ANSWERED, NULL, now);
}

void
keel_engine_session_on_probe_passive (keel_engine_session_t *self, const char *active, int64_t now)
{
    int named = keel_engine_session_find_broker (self, active);
    if (named > 0 && self->pair_peer[0] < 0)
        self->pair_peer[0] = named; // the primary's active peer
    if (self->state == KEEL_ENGINE_SESSION_ONLINE && self->probe_deadline != S_NEVER)
        keel_engine_session_event (self, KEEL_ENGINE_SEV_PROBE_PASSIVE, NULL, now);
}

void
keel_engine_session_sent (keel_engine_session_t *self, int64_t now)
{
    if (self->state == KEEL_ENGINE_SESSION_ONLINE || self->state == KEEL_ENGINE_SESSION_LOGGING_IN)
        keel_peer_clock_sent (&self->clock, now);
}

void
keel_engine_session_stop (keel_engine_session_t *self, int64_t now)
{
    keel_engine_session_event (self, KEEL_ENGINE_SEV_STOP, NULL, now);
}
