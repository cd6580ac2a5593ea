/*  session.c — the driver ↔ broker session state machine (see session.h
    for the state table). Pure logic: no sockets, no clock reads.
*/
#include "session.h"
#include "endpoint.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_LIVENESS          3     // heartbeat intervals of silence before a broker is lost
#define S_BACKOFF_CAP_MS    30000 // longest wait between two hellos to the same broker
#define S_PROBE_WAIT_MIN_MS 1000  // a probe waits at least this long for its welcome
#define S_PROGRESS_MAX_MS   30000 // longest gap between two "still connecting" lines
#define S_PROGRESS_MIN_MS   1000  // shortest gap (short DSBrokerTimeouts)
#define S_PROGRESS_PER_TIMEOUT                                                                     \
    3 // a gap of DSBrokerTimeout/3, within the bounds: 2 lines per broker
//  After a loss the session stays on the broker at least H + this (or
//  DSBrokerTimeout, if shorter): see keel_session_move_at in session.h.
#define S_MOVE_FLOOR_EXTRA_MS 600

//  What the driver knows of one configured broker as a member of a
//  resilient pair (DESIGN §6).
typedef struct {
    int peer; // configured broker its last welcome (or a Passive) named as its pair peer; -1: none
    bool paired; // its last welcome named a pair peer (configured or not): its epochs are checked
    uint64_t epoch;    // highest epoch seen from it while paired
    bool said_passive; // answered Passive since the last welcome
    // A member of a shared store's cluster (a welcome listed it): members
    // share one store, so a move between two keeps the accepted flags, and
    // their epochs are their own (the store fences a member, not epochs).
    bool member;
} s_pair_t;

struct _keel_session_t {
    keel_session_config_t config;
    char **brokers; // owned copies of config.brokers
    keel_session_state_t state;
    int current;                    // broker the session socket talks to
    int last_welcomed;              // broker that last answered the session (-1: none yet)
    int64_t heartbeat_ms;           // H
    keel_peer_clock_t clock;        // READY: liveness of the broker, our idle time
    keel_backoff_t backoff;         // CONNECTING: wait between hellos to the same broker
    int64_t attempt_deadline;       // CONNECTING: reconnect when no welcome by then
    int64_t broker_deadline;        // CONNECTING: move to the next broker then
    int64_t broker_since;           // CONNECTING: DSBrokerTimeout on this broker counts from then
    int64_t progress_ms;            // CONNECTING: gap between "still connecting" lines
    int64_t progress_next;          // CONNECTING: when the next one is due
    int tried;                      // brokers given up on since the last welcome
    bool probe_open;                // a probe DEALER to the primary is waiting for its welcome
    int64_t probe_next;             // when to open the next probe
    int64_t probe_deadline;         // when to give up on the open probe
    s_pair_t *pairs;                // per configured broker
    keel_backoff_t passive_backoff; // between moves once every broker tried answered Passive
    int pending;         // CONNECTING: broker to connect to at attempt_deadline (-1: none)
    bool pending_forget; // FORGET_ACCEPTED before that move (not a move within a pair)
    uint64_t stale;      // messages dropped for a stale epoch
    int learned;         // brokers added from welcomes' cluster_members (keel_session_learn)
};

static void
s_emit (keel_session_out_t *out, keel_session_do_t what, int broker)
{
    //  The table never emits more than KEEL_SESSION_MAX_ACTIONS per step.
    assert (out->count < KEEL_SESSION_MAX_ACTIONS);
    keel_session_action_t *action = &out->actions[out->count++];
    memset (action, 0, sizeof *action);
    action->what = what;
    action->broker = broker;
}

static void s_status (keel_session_out_t *out, keel_session_status_t status, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_status (keel_session_out_t *out, keel_session_status_t status, const char *fmt, ...)
{
    s_emit (out, KEEL_SESSION_DO_STATUS, -1);
    keel_session_action_t *action = &out->actions[out->count - 1];
    action->status = status;
    va_list args;
    va_start (args, fmt);
    vsnprintf (action->text, sizeof action->text, fmt, args);
    va_end (args);
}

static int64_t
s_max (int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t
s_min (int64_t a, int64_t b)
{
    return a < b ? a : b;
}

//  True when a and b are the two members of one resilient pair: either
//  named the other as its pair peer.
static bool
s_related (const keel_session_t *self, int a, int b)
{
    if (a < 0 || b < 0 || a == b || a >= self->config.nbrokers || b >= self->config.nbrokers)
        return false;
    if (self->pairs[a].member && self->pairs[b].member)
        return true;
    return self->pairs[a].peer == b || self->pairs[b].peer == a;
}

int
keel_session_find_broker (const keel_session_t *self, const char *endpoint)
{
    assert (self);
    return keel_endpoint_find ((const char *const *) self->brokers, self->config.nbrokers,
                               endpoint);
}

char *
keel_session_duration_text (int64_t ms, char *buf, size_t size)
{
    long long t = ms > 0 ? (long long) ms : 0;
    long long sec = (t + 500) / 1000;
    if (t < 1000)
        snprintf (buf, size, "%lld ms", t);
    else if (t < 9950) {
        long long tenths = (t + 50) / 100;
        if (tenths % 10)
            snprintf (buf, size, "%lld.%lld s", tenths / 10, tenths % 10);
        else
            snprintf (buf, size, "%lld s", tenths / 10);
    }
    else if (sec < 60)
        snprintf (buf, size, "%lld s", sec);
    else if (sec < 3600) {
        if (sec % 60)
            snprintf (buf, size, "%lld min %lld s", sec / 60, sec % 60);
        else
            snprintf (buf, size, "%lld min", sec / 60);
    }
    else if (sec < 86400 - 30) {
        long long min = (sec + 30) / 60;
        if (min % 60)
            snprintf (buf, size, "%lld h %lld min", min / 60, min % 60);
        else
            snprintf (buf, size, "%lld h", min / 60);
    }
    else {
        long long hours = (sec + 1800) / 3600;
        if (hours % 24)
            snprintf (buf, size, "%lld d %lld h", hours / 24, hours % 24);
        else
            snprintf (buf, size, "%lld d", hours / 24);
    }
    return buf;
}

//  ", then tcp://next" when a failover broker follows `broker` in this pass.
static const char *
s_then (const keel_session_t *self, int broker, char *buf, size_t size)
{
    buf[0] = 0;
    if (broker + 1 < self->config.nbrokers)
        snprintf (buf, size, ", then %s", self->brokers[broker + 1]);
    return buf;
}

//  What the session is doing while it has no broker: at START, and every
//  progress_ms while CONNECTING (each broker gets DSBrokerTimeout).
static void
s_connecting_status (keel_session_t *self, int64_t now, bool still, keel_session_out_t *out)
{
    char timeout[32], left[32], spent[32], then[KEEL_SESSION_TEXT_MAX / 2];
    const char *url = self->brokers[self->current];
    s_then (self, self->current, then, sizeof then);
    keel_session_duration_text (self->config.broker_timeout_ms, timeout, sizeof timeout);
    if (!still)
        s_status (out, KEEL_SESSION_STATUS_CONNECTING,
                  "connecting to %s, retrying for %s (DSBrokerTimeout)%s", url, timeout, then);
    else {
        //  Counted from when the line was due, not from a tick that came late:
        //  "after 1 s; 1 s more", not "after 1 s; 999 ms more".
        int64_t due = self->progress_next < now ? self->progress_next : now;
        keel_session_duration_text (self->broker_deadline - due, left, sizeof left);
        keel_session_duration_text (due - self->broker_since, spent, sizeof spent);
        s_status (out, KEEL_SESSION_STATUS_STILL_CONNECTING,
                  "still connecting to %s after %s; retrying for %s more (DSBrokerTimeout %s)%s",
                  url, spent, left, timeout, then);
    }
    self->progress_next = now + self->progress_ms;
}

//  Starts (or restarts) trying broker `broker` with a fresh socket.
static void
s_connect (keel_session_t *self, int broker, int64_t now, bool new_broker, keel_session_out_t *out)
{
    self->state = KEEL_SESSION_CONNECTING;
    self->current = broker;
    if (new_broker) {
        keel_backoff_reset (&self->backoff);
        self->broker_since = now;
        self->broker_deadline = now + self->config.broker_timeout_ms;
        self->progress_next = now + self->progress_ms;
    }
    s_emit (out, KEEL_SESSION_DO_CONNECT, broker);
    self->attempt_deadline =
        now + s_max (S_LIVENESS * self->heartbeat_ms, keel_backoff_next (&self->backoff));
}

static void
s_adopt_heartbeat (keel_session_t *self, uint64_t heartbeat_ms, int64_t now)
{
    if (heartbeat_ms > 0 && heartbeat_ms <= 3600 * 1000)
        self->heartbeat_ms = (int64_t) heartbeat_ms;
    keel_peer_clock_init (&self->clock, self->heartbeat_ms, S_LIVENESS, now);
}

static void
s_became_ready (keel_session_t *self, uint64_t heartbeat_ms, int64_t now)
{
    self->state = KEEL_SESSION_READY;
    self->tried = 0;
    keel_backoff_reset (&self->backoff);
    s_adopt_heartbeat (self, heartbeat_ms, now);
    if (self->current != 0)
        self->probe_next = now + self->config.primary_retry_ms;
}

//  A welcome from broker `broker` named pair_peer (NULL or blank: none):
//  remember which configured broker that is. A broker that names none
//  leaves the pair: its epochs are independent again.
static void
s_note_pair (keel_session_t *self, int broker, const char *pair_peer)
{
    s_pair_t *pair = &self->pairs[broker];
    pair->paired = keel_endpoint_named (pair_peer);
    pair->peer = pair->paired ? keel_session_find_broker (self, pair_peer) : -1;
    if (pair->peer == broker)
        pair->peer = -1; // a broker is not its own peer
    if (!pair->paired)
        pair->epoch = 0;
}

//  A broker welcomed the driver: whatever Passive answers came before are
//  over, and so is their backoff.
static void
s_passive_over (keel_session_t *self)
{
    for (int i = 0; i < self->config.nbrokers; i++)
        self->pairs[i].said_passive = false;
    keel_backoff_reset (&self->passive_backoff);
    self->pending = -1;
}

static void
s_on_welcome (keel_session_t *self, const keel_session_input_t *in, int64_t now,
              keel_session_out_t *out)
{
    const char *url = self->brokers[self->current];
    s_note_pair (self, self->current, in->pair_peer);
    s_passive_over (self);
    s_emit (out, KEEL_SESSION_DO_RESYNC, self->current);
    s_emit (out, KEEL_SESSION_DO_TELL_DELIVERED, self->current);
    if (self->state == KEEL_SESSION_CONNECTING) {
        const char *prev = self->last_welcomed >= 0 ? self->brokers[self->last_welcomed] : "";
        if (self->last_welcomed < 0)
            s_status (out, KEEL_SESSION_STATUS_CONNECTED, "connected to %s", url);
        else if (self->last_welcomed == self->current)
            s_status (out, KEEL_SESSION_STATUS_RECONNECTED, "reconnected to %s", url);
        else if (s_related (self, self->last_welcomed, self->current))
            s_status (out, KEEL_SESSION_STATUS_FAILOVER,
                      "failover: now on %s, the pair peer of %s; the tasks %s accepted are not "
                      "resubmitted (the pair mirrors them)",
                      url, prev, prev);
        else if (self->current == 0)
            s_status (out, KEEL_SESSION_STATUS_FAILBACK, "back on primary %s", url);
        else
            s_status (out, KEEL_SESSION_STATUS_FAILOVER, "failover: now on %s", url);
    }
    self->last_welcomed = self->current;
    s_became_ready (self, in->heartbeat_ms, now);
}

static void
s_on_probe_welcome (keel_session_t *self, const keel_session_input_t *in, int64_t now,
                    keel_session_out_t *out)
{
    if (!self->probe_open || self->current == 0)
        return; // a late answer to a probe we gave up on
    s_note_pair (self, 0, in->pair_peer);
    s_passive_over (self);
    if (s_related (self, 0, self->current)) {
        //  The primary is the active broker of the current one's pair (it
        //  took over): move there keeping what the pair mirrors, and send
        //  no Detach, which the pair would mirror to the primary too.
        int from = self->current;
        s_emit (out, KEEL_SESSION_DO_ADOPT_PROBE, 0);
        s_emit (out, KEEL_SESSION_DO_RESYNC, 0);
        s_emit (out, KEEL_SESSION_DO_TELL_DELIVERED, 0);
        s_emit (out, KEEL_SESSION_DO_CLOSE_OLD, from);
        s_status (out, KEEL_SESSION_STATUS_FAILOVER,
                  "failover: now on %s, the pair peer of %s; the tasks %s accepted are not "
                  "resubmitted (the pair mirrors them)",
                  self->brokers[0], self->brokers[from], self->brokers[from]);
        self->probe_open = false;
        self->current = 0;
        self->last_welcomed = 0;
        s_became_ready (self, in->heartbeat_ms, now);
        return;
    }
    s_emit (out, KEEL_SESSION_DO_ADOPT_PROBE, 0);
    s_emit (out, KEEL_SESSION_DO_FORGET_ACCEPTED, 0);
    s_emit (out, KEEL_SESSION_DO_RESYNC, 0);
    s_emit (out, KEEL_SESSION_DO_TELL_DELIVERED, 0);
    //  Also when the failover broker is being retried (CONNECTING: it went
    //  quiet, e.g. it judged a paused driver lost): the Detach follows the
    //  hello on that socket, so a live broker reads both and sends its
    //  engines home; without it they would keep the tasks there and the
    //  primary would run them a second time. A dead one reads neither.
    s_emit (out, KEEL_SESSION_DO_DETACH_OLD, self->current);
    s_emit (out, KEEL_SESSION_DO_CLOSE_OLD, self->current);
    s_status (out, KEEL_SESSION_STATUS_FAILBACK, "back on primary %s", self->brokers[0]);
    self->probe_open = false;
    self->current = 0;
    self->last_welcomed = 0;
    s_became_ready (self, in->heartbeat_ms, now);
}

//  Passive on the session socket: the broker `current` is the passive
//  member of a pair. Go to the active one it names when that is a
//  configured broker, else to the next configured broker, at once; keep
//  the accepted flags when the move stays within a pair. Once the target
//  too has answered Passive since the last welcome (neither broker of the
//  pair is active yet), wait as the attempt backoff does before going.
static void
s_on_passive (keel_session_t *self, const keel_session_input_t *in, int64_t now,
              keel_session_out_t *out)
{
    if (self->state == KEEL_SESSION_CONNECTING && self->pending >= 0)
        return; // a move is already set for the end of the backoff
    int n = self->config.nbrokers;
    int from = self->current;
    int target = keel_session_find_broker (self, in->active);
    if (target >= 0 && target != from && self->pairs[from].peer < 0)
        self->pairs[from].peer = target; // the passive member names its active peer
    bool named = target >= 0 && target != from;
    if (!named)
        target = (from + 1) % n;
    bool forget = target != from && !s_related (self, from, target);
    self->pairs[from].said_passive = true;
    char reason[KEEL_SESSION_TEXT_MAX / 3] = "";
    if (keel_endpoint_named (in->reason))
        snprintf (reason, sizeof reason, " (%s)", in->reason);
    const char *to = self->brokers[target];
    if (self->pairs[target].said_passive) {
        char wait[32];
        int64_t delay = keel_backoff_next (&self->passive_backoff);
        keel_session_duration_text (delay, wait, sizeof wait);
        s_status (out, KEEL_SESSION_STATUS_TRYING,
                  "%s is passive%s and so is %s: no active broker yet; trying %s in %s",
                  self->brokers[from], reason, to, to, wait);
        self->state = KEEL_SESSION_CONNECTING;
        self->pending = target;
        self->pending_forget = forget;
        self->attempt_deadline = now + delay;
        return;
    }
    if (named)
        s_status (out, KEEL_SESSION_STATUS_TRYING,
                  "%s is passive%s; moving to the active broker of its pair, %s, now",
                  self->brokers[from], reason, to);
    else
        s_status (out, KEEL_SESSION_STATUS_TRYING,
                  "%s is passive%s and names no configured active broker; trying %s now",
                  self->brokers[from], reason, to);
    if (forget)
        s_emit (out, KEEL_SESSION_DO_FORGET_ACCEPTED, target);
    s_connect (self, target, now, target != from, out);
}

//  Passive on the primary probe socket: the primary came back passive (no
//  automatic failback in a pair). The probe failed.
static void
s_on_probe_passive (keel_session_t *self, const keel_session_input_t *in, keel_session_out_t *out)
{
    int active = keel_session_find_broker (self, in->active);
    if (active > 0 && self->pairs[0].peer < 0)
        self->pairs[0].peer = active; // probes stop once that is the current broker
    if (!self->probe_open)
        return;
    s_emit (out, KEEL_SESSION_DO_PROBE_CLOSE, 0);
    self->probe_open = false;
}

static void
s_on_relogin (keel_session_t *self, int64_t now, keel_session_out_t *out)
{
    s_emit (out, KEEL_SESSION_DO_HELLO, self->current);
    if (self->state == KEEL_SESSION_READY) {
        self->state = KEEL_SESSION_CONNECTING;
        self->broker_since = now; // the Relogin is its last message
        self->broker_deadline = now + self->config.broker_timeout_ms;
        self->progress_next = now + self->progress_ms;
    }
    self->attempt_deadline = now + S_LIVENESS * self->heartbeat_ms;
}

//  CONNECTING and time passed: hello again, or move on to the next broker.
static void
s_tick_connecting (keel_session_t *self, int64_t now, keel_session_out_t *out)
{
    if (self->pending >= 0) {
        //  Waiting after Passive answers: the move, when its time comes.
        if (now >= self->attempt_deadline) {
            int to = self->pending;
            self->pending = -1;
            if (self->pending_forget)
                s_emit (out, KEEL_SESSION_DO_FORGET_ACCEPTED, to);
            s_connect (self, to, now, to != self->current, out);
        }
        return;
    }
    if (now >= self->broker_deadline) {
        int from = self->current;
        int next = (from + 1) % self->config.nbrokers;
        self->tried++;
        if (self->tried >= self->config.nbrokers) {
            s_emit (out, KEEL_SESSION_DO_GIVE_UP, from);
            self->tried = 0;
        }
        if (next != from) {
            //  Silent since broker_since: DSBrokerTimeout, or longer when
            //  the floor after a loss held the move back.
            char silent[32], timeout[32], then[KEEL_SESSION_TEXT_MAX / 2];
            keel_session_duration_text (self->broker_deadline - self->broker_since, silent,
                                        sizeof silent);
            keel_session_duration_text (self->config.broker_timeout_ms, timeout, sizeof timeout);
            if (!s_related (self, from, next))
                s_emit (out, KEEL_SESSION_DO_FORGET_ACCEPTED, next);
            s_status (out, KEEL_SESSION_STATUS_TRYING,
                      "%s did not answer for %s; connecting to %s, retrying for %s "
                      "(DSBrokerTimeout)%s",
                      self->brokers[from], silent, self->brokers[next], timeout,
                      s_then (self, next, then, sizeof then));
        }
        s_connect (self, next, now, true, out);
        return;
    }
    if (now >= self->attempt_deadline)
        s_connect (self, self->current, now, false, out);
    if (now >= self->progress_next)
        s_connecting_status (self, now, true, out);
}

static void
s_tick_ready (keel_session_t *self, int64_t now, keel_session_out_t *out)
{
    if (keel_peer_clock_lost (&self->clock, now) && self->pairs[self->current].peer >= 0) {
        //  A broker of a pair: its peer takes over with the mirrored
        //  store, so go there now and keep the accepted flags.
        int from = self->current, peer = self->pairs[from].peer;
        char silent[32];
        keel_session_duration_text (now - self->clock.last_recv, silent, sizeof silent);
        s_status (out, KEEL_SESSION_STATUS_FAILOVER,
                  "lost %s (silent for %s); its pair peer %s takes over: moving there now, "
                  "without resubmitting what %s accepted",
                  self->brokers[from], silent, self->brokers[peer], self->brokers[from]);
        self->tried = 0;
        s_connect (self, peer, now, true, out);
    }
    else if (keel_peer_clock_lost (&self->clock, now)) {
        //  DSBrokerTimeout counts from the broker's last message, not from
        //  now: the move comes when it would have, had the loss been seen
        //  at once (keel_session_move_at).
        int64_t last = self->clock.last_recv;
        int64_t move_at =
            keel_session_move_at (last, now, self->config.broker_timeout_ms, self->heartbeat_ms);
        char silent[32], left[32], timeout[32], then[KEEL_SESSION_TEXT_MAX / 2];
        keel_session_duration_text (now - last, silent, sizeof silent);
        keel_session_duration_text (move_at - now, left, sizeof left);
        keel_session_duration_text (self->config.broker_timeout_ms, timeout, sizeof timeout);
        s_status (out, KEEL_SESSION_STATUS_LOST,
                  "lost %s (silent for %s); retrying for %s more (DSBrokerTimeout %s)%s",
                  self->brokers[self->current], silent, left, timeout,
                  s_then (self, self->current, then, sizeof then));
        self->tried = 0;
        s_connect (self, self->current, now, true, out);
        self->broker_since = s_min (last, now);
        self->broker_deadline = move_at;
    }
    else if (keel_peer_clock_heartbeat_due (&self->clock, now))
        s_emit (out, KEEL_SESSION_DO_HEARTBEAT, self->current);
}

//  Probing the primary runs beside both states whenever we are elsewhere.
//  Probing the primary is wanted on any other broker once one answered,
//  except on the primary's pair peer: a pair has no automatic failback.
static bool
s_probe_wanted (const keel_session_t *self)
{
    return self->current != 0 && self->last_welcomed >= 0 && !s_related (self, self->current, 0);
}

static void
s_tick_probe (keel_session_t *self, int64_t now, keel_session_out_t *out)
{
    if (!s_probe_wanted (self)) {
        if (self->probe_open) {
            s_emit (out, KEEL_SESSION_DO_PROBE_CLOSE, 0);
            self->probe_open = false;
        }
        return;
    }
    if (self->probe_open && now >= self->probe_deadline) {
        s_emit (out, KEEL_SESSION_DO_PROBE_CLOSE, 0);
        self->probe_open = false;
    }
    if (!self->probe_open && now >= self->probe_next) {
        s_emit (out, KEEL_SESSION_DO_PROBE_OPEN, 0);
        self->probe_open = true;
        int64_t wait = s_max (S_LIVENESS * self->heartbeat_ms, S_PROBE_WAIT_MIN_MS);
        self->probe_deadline = now + s_min (wait, s_max (self->config.primary_retry_ms, 1));
        self->probe_next = now + self->config.primary_retry_ms;
    }
}

int64_t
keel_session_move_at (int64_t last_recv, int64_t lost_at, int64_t broker_timeout_ms,
                      int64_t heartbeat_ms)
{
    int64_t floor = s_min (broker_timeout_ms, heartbeat_ms + S_MOVE_FLOOR_EXTRA_MS);
    return s_max (last_recv + broker_timeout_ms, lost_at + floor);
}

keel_session_t *
keel_session_new (const keel_session_config_t *config, int64_t now)
{
    assert (config);
    if (config->nbrokers < 1 || !config->brokers)
        return NULL;
    keel_session_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = *config;
    self->brokers = calloc ((size_t) config->nbrokers, sizeof (char *));
    if (!self->brokers) {
        free (self);
        return NULL;
    }
    for (int i = 0; i < config->nbrokers; i++) {
        self->brokers[i] = strdup (config->brokers[i] ? config->brokers[i] : "");
        if (!self->brokers[i]) {
            keel_session_destroy (&self);
            return NULL;
        }
    }
    self->config.brokers = NULL;
    self->pairs = calloc ((size_t) config->nbrokers, sizeof *self->pairs);
    if (!self->pairs) {
        keel_session_destroy (&self);
        return NULL;
    }
    for (int i = 0; i < config->nbrokers; i++)
        self->pairs[i].peer = -1;
    self->pending = -1;
    self->state = KEEL_SESSION_CONNECTING;
    self->last_welcomed = -1;
    self->heartbeat_ms = config->heartbeat_ms > 0 ? config->heartbeat_ms : 1000;
    int64_t cap = s_max (S_LIVENESS * self->heartbeat_ms,
                         s_min (S_BACKOFF_CAP_MS, config->broker_timeout_ms / 2));
    keel_backoff_init (&self->backoff, S_LIVENESS * self->heartbeat_ms, cap, config->seed | 1);
    keel_backoff_init (&self->passive_backoff, S_LIVENESS * self->heartbeat_ms, cap,
                       (config->seed * 2654435761u) | 1);
    keel_peer_clock_init (&self->clock, self->heartbeat_ms, S_LIVENESS, now);
    self->attempt_deadline = now;
    self->broker_since = now;
    self->broker_deadline = now + config->broker_timeout_ms;
    self->progress_ms =
        s_max (S_PROGRESS_MIN_MS,
               s_min (S_PROGRESS_MAX_MS, config->broker_timeout_ms / S_PROGRESS_PER_TIMEOUT));
    self->progress_next = now + self->progress_ms;
    return self;
}

int
keel_session_learn (keel_session_t *self, const char *endpoint)
{
    assert (self);
    if (!keel_endpoint_named (endpoint) || strlen (endpoint) > 255)
        return -1;
    int known = keel_session_find_broker (self, endpoint);
    if (known >= 0)
        return known;
    if (self->learned >= KEEL_SESSION_LEARNED_MAX)
        return -1;
    int n = self->config.nbrokers;
    char **brokers = realloc (self->brokers, (size_t) (n + 1) * sizeof *brokers);
    if (!brokers)
        return -1;
    self->brokers = brokers;
    s_pair_t *pairs = realloc (self->pairs, (size_t) (n + 1) * sizeof *pairs);
    if (!pairs)
        return -1;
    self->pairs = pairs;
    self->brokers[n] = strdup (endpoint);
    if (!self->brokers[n])
        return -1;
    self->pairs[n] = (s_pair_t) { .peer = -1 };
    self->config.nbrokers = n + 1;
    self->learned++;
    return n;
}

void
keel_session_member (keel_session_t *self, int broker)
{
    assert (self);
    if (broker >= 0 && broker < self->config.nbrokers)
        self->pairs[broker].member = true;
}

const char *
keel_session_endpoint (const keel_session_t *self, int broker)
{
    assert (self);
    return broker >= 0 && broker < self->config.nbrokers ? self->brokers[broker] : "?";
}

int
keel_session_nbrokers (const keel_session_t *self)
{
    assert (self);
    return self->config.nbrokers;
}

void
keel_session_destroy (keel_session_t **self_p)
{
    assert (self_p);
    keel_session_t *self = *self_p;
    if (!self)
        return;
    if (self->brokers) {
        for (int i = 0; i < self->config.nbrokers; i++)
            free (self->brokers[i]);
        free (self->brokers);
    }
    free (self->pairs);
    free (self);
    *self_p = NULL;
}

void
keel_session_step (keel_session_t *self, keel_session_event_t event, uint64_t heartbeat_ms,
                   int64_t now, keel_session_out_t *out)
{
    keel_session_input_t in = { .event = event, .heartbeat_ms = heartbeat_ms };
    keel_session_apply (self, &in, now, out);
}

void
keel_session_apply (keel_session_t *self, const keel_session_input_t *in, int64_t now,
                    keel_session_out_t *out)
{
    assert (self && in && out);
    out->count = 0;
    switch (in->event) {
        case KEEL_SESSION_EV_START:
            self->tried = 0;
            s_connect (self, 0, now, true, out);
            s_connecting_status (self, now, false, out);
            break;
        case KEEL_SESSION_EV_WELCOME:
            s_on_welcome (self, in, now, out);
            break;
        case KEEL_SESSION_EV_PROBE_WELCOME:
            s_on_probe_welcome (self, in, now, out);
            break;
        case KEEL_SESSION_EV_PASSIVE:
            s_on_passive (self, in, now, out);
            break;
        case KEEL_SESSION_EV_PROBE_PASSIVE:
            s_on_probe_passive (self, in, out);
            break;
        case KEEL_SESSION_EV_RELOGIN:
            s_on_relogin (self, now, out);
            break;
        case KEEL_SESSION_EV_TICK:
            switch (self->state) {
                case KEEL_SESSION_CONNECTING:
                    s_tick_connecting (self, now, out);
                    break;
                case KEEL_SESSION_READY:
                    s_tick_ready (self, now, out);
                    break;
                default:
                    assert (false);
                    break;
            }
            s_tick_probe (self, now, out);
            break;
        default:
            break; // unknown events change nothing
    }
}

void
keel_session_received (keel_session_t *self, int64_t now)
{
    assert (self);
    keel_peer_clock_received (&self->clock, now);
}

void
keel_session_sent (keel_session_t *self, int64_t now)
{
    assert (self);
    keel_peer_clock_sent (&self->clock, now);
}

int64_t
keel_session_next_deadline (const keel_session_t *self)
{
    assert (self);
    int64_t next;
    if (self->state == KEEL_SESSION_CONNECTING && self->pending >= 0)
        next = self->attempt_deadline; // only the move after the backoff is due
    else if (self->state == KEEL_SESSION_CONNECTING)
        next = s_min (s_min (self->attempt_deadline, self->broker_deadline), self->progress_next);
    else
        next = keel_peer_clock_next_deadline (&self->clock);
    if (s_probe_wanted (self))
        next = s_min (next, self->probe_open ? self->probe_deadline : self->probe_next);
    return next;
}

bool
keel_session_admit (keel_session_t *self, int broker, bool welcome, const char *pair_peer,
                    bool has_epoch, uint64_t epoch)
{
    assert (self);
    if (!has_epoch || broker < 0 || broker >= self->config.nbrokers)
        return true;
    s_pair_t *pair = &self->pairs[broker];
    bool paired = welcome ? keel_endpoint_named (pair_peer) : pair->paired;
    if (!paired || pair->member)
        return true; // a standalone broker: its epochs are its own business
    int peer = welcome ? keel_session_find_broker (self, pair_peer) : pair->peer;
    uint64_t high = pair->epoch;
    for (int i = 0; i < self->config.nbrokers; i++)
        if (i != broker && (i == peer || self->pairs[i].peer == broker) && self->pairs[i].paired
            && self->pairs[i].epoch > high)
            high = self->pairs[i].epoch;
    if (epoch < high) {
        self->stale++;
        return false;
    }
    if (epoch > pair->epoch)
        pair->epoch = epoch;
    return true;
}

uint64_t
keel_session_stale_count (const keel_session_t *self)
{
    assert (self);
    return self->stale;
}

int
keel_session_pair_peer (const keel_session_t *self, int broker)
{
    assert (self);
    if (broker < 0 || broker >= self->config.nbrokers)
        return -1;
    return self->pairs[broker].peer;
}

keel_session_state_t
keel_session_state (const keel_session_t *self)
{
    assert (self);
    return self->state;
}

int
keel_session_broker (const keel_session_t *self)
{
    assert (self);
    return self->current;
}

int64_t
keel_session_heartbeat_ms (const keel_session_t *self)
{
    assert (self);
    return self->heartbeat_ms;
}

const char *
keel_session_state_name (keel_session_state_t state)
{
    switch (state) {
        case KEEL_SESSION_CONNECTING:
            return "CONNECTING";
        case KEEL_SESSION_READY:
            return "READY";
        default:
            return "?";
    }
}
