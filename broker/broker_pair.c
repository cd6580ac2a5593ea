/*  broker_pair.c — the loop's side of a resilient pair. See broker_pair.h
    for the links, the stream and the durability rule; pair.h for who
    serves.
*/
#include "broker_pair_int.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker_int.h"
#include "config.h"
#include "log.h"
#include "wire_build.h"

// ---------------------------------------------------------------- helpers

typedef struct {
    zframe_t *route;
    zframe_t *body; // the message, encoded again
    int64_t at;
    char principal[64]; // its authenticated principal (keel_core_principal)
} s_vote_t;

#define S_SILENCE_WARN_MS 30000

static int s_children; // NotifyCommand children not reaped yet

static void
s_vote_destroy (void **item_p)
{
    s_vote_t *v = *item_p;
    if (v) {
        zframe_destroy (&v->route);
        zframe_destroy (&v->body);
        free (v);
        *item_p = NULL;
    }
}

static void
s_update_destroy (void **item_p)
{
    s_update_t *u = *item_p;
    if (u) {
        zframe_destroy (&u->frame);
        free (u);
        *item_p = NULL;
    }
}

// Splits a comma list into at most KEEL_PAIR_MAX_LINKS trimmed entries.
static int
s_split (const char *list, char **out)
{
    int n = 0;
    const char *p = list;
    while (p && *p && n < KEEL_PAIR_MAX_LINKS + 1) {
        const char *comma = strchr (p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen (p);
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len) {
            if (n == KEEL_PAIR_MAX_LINKS)
                return -1;
            out[n++] = strndup (p, len);
        }
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

uint64_t
keel_bp_epoch (const keel_broker_pair_t *self)
{
    if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE)
        return keel_core_epoch (self->broker->core);
    return self->applied_epoch;
}

void
keel_bp_send (keel_broker_pair_t *self, int link, keel_env_t *env)
{
    env->has_epoch = true;
    env->epoch = keel_bp_epoch (self);
    if (link >= 0 && link < self->nlinks)
        keel_link_send (self->out[link], env, NULL);
}

// To every link (small control messages: acks, sync requests).
void
keel_bp_send_all (keel_broker_pair_t *self, keel_env_t *env)
{
    for (int i = 0; i < self->nlinks; i++)
        keel_bp_send (self, i, env);
}

void
keel_bp_send_frame (keel_broker_pair_t *self, int link, zframe_t *frame)
{
    if (link < 0 || link >= self->nlinks)
        return;
    zframe_t *copy = zframe_dup (frame);
    if (copy && zframe_send (&copy, self->out[link], ZFRAME_DONTWAIT) != 0)
        zframe_destroy (&copy);
}

// Acceptances say whether they are mirrored (Accepted.alone): a peer that
// is attached and in sync (acked up to the attach point) holds them.
void
keel_bp_tell_core (keel_broker_pair_t *self)
{
    if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE)
        keel_core_set_pair_alone (self->broker->core, !(self->attached && self->peer_synced));
}

// ---------------------------------------------------------------- notify

// Runs NotifyCommand for a pair event, without waiting for it.
void
keel_bp_notify (keel_broker_pair_t *self, const char *event, const char *detail)
{
    const char *command = keel_broker_cfg_NotifyCommand (self->broker->settings);
    KEEL_INFO ("pair", "event %s: %s", event, detail);
    if (!command || !*command)
        return;
    pid_t pid = fork ();
    if (pid == 0) {
        char epoch[32];
        snprintf (epoch, sizeof epoch, "%" PRIu64, keel_bp_epoch (self));
        setenv ("KEEL_EVENT", event, 1);
        setenv ("KEEL_BROKER", keel_broker_cfg_Name (self->broker->settings), 1);
        setenv ("KEEL_PEER", self->peer_name[0] ? self->peer_name : self->peer_conf, 1);
        setenv ("KEEL_EPOCH", epoch, 1);
        setenv ("KEEL_DETAIL", detail, 1);
        execl ("/bin/sh", "sh", "-c", command, (char *) NULL);
        _exit (127);
    }
    if (pid < 0)
        KEEL_WARN ("pair", "NotifyCommand: cannot fork: %s", strerror (errno));
    else
        s_children++;
}

void
keel_broker_pair_notify (keel_broker_pair_t *self, const char *event, const char *detail)
{
    if (self)
        keel_bp_notify (self, event, detail);
}

// NotifyCommand children not reaped yet: the loop asks the kernel only
// while there are some (a waitpid per turn was a system call per turn).
static void
s_reap (void)
{
    for (int i = 0; i < 64 && s_children > 0 && waitpid (-1, NULL, WNOHANG) > 0; i++)
        s_children--;
}

// A peer not heard on any link (PairPeer unreachable, wrong, or down)
// gets a warning after PairTimeout and then one every 30 s while the
// silence lasts, each counted (pair.counters.peer_unheard).
static void
s_watch_silence (keel_broker_pair_t *self)
{
    if (keel_pair_peer_up (self->fsm, self->now)) {
        self->silent_since = 0;
        return;
    }
    if (!self->silent_since) {
        self->silent_since = self->now;
        self->silent_warned = 0;
    }
    int64_t silent = self->now - self->silent_since;
    if (silent < self->timeout_ms
        || (self->silent_warned && self->now - self->silent_warned < S_SILENCE_WARN_MS))
        return;
    self->silent_warned = self->now;
    self->counters.peer_unheard++;
    KEEL_WARN ("pair",
               "peer %s not heard on any of %d link(s) for %lld ms; serving: %s (check "
               "that it runs, PairPeer, PairEndpoint and the network between them)",
               self->peer_conf, self->nlinks, (long long) silent,
               keel_pair_serving (self->fsm) ? "yes, without a mirror" : "no");
}

// ---------------------------------------------------------------- votes

static void
s_send_passive (keel_broker_pair_t *self, zframe_t *route)
{
    self->counters.clients_refused++;
    KEEL_LOG_LIMITED (&self->refused_rl, self->now, KEEL_LOG_INFO, "pair",
                      "client refused: this broker is %s; the active is %s",
                      keel_pair_state_name (keel_pair_state (self->fsm)),
                      self->peer_advertised[0] ? self->peer_advertised : "(not known yet)");
    keel_msg_t msg;
    keel_env_t *env = keel_msg_passive (
        &msg, self->peer_advertised[0] ? self->peer_advertised : NULL,
        keel_pair_state (self->fsm) == KEEL_PAIR_PASSIVE ? "passive broker of a pair"
                                                         : "broker of a pair not serving yet");
    env->has_epoch = true;
    env->epoch = keel_bp_epoch (self);
    keel_link_send_to (self->broker->router, route, env);
}

// The peer is heard again (answer the kept messages Passive), or this
// broker serves now (hand them to the core, oldest first).
static void
s_settle_votes (keel_broker_pair_t *self)
{
    bool serving = keel_pair_serving (self->fsm);
    s_vote_t *v;
    while ((v = zlistx_first (self->votes))) {
        zlistx_detach_cur (self->votes);
        if (serving) {
            keel_error_t err = { "" };
            keel_env_t *env = keel_wire_decode (zframe_data (v->body), zframe_size (v->body), &err);
            if (env) {
                keel_core_principal (self->broker->core, v->principal);
                keel_core_message (self->broker->core, v->route, env);
            }
            keel_wire_free (&env);
        }
        else if (self->now - v->at < self->timeout_ms)
            s_send_passive (self, v->route);
        void *item = v;
        s_vote_destroy (&item);
    }
}

// ---------------------------------------------------------------- activation

void
keel_bp_carry_out (keel_broker_pair_t *self, keel_pair_do_t what)
{
    switch (what) {
        case KEEL_PAIR_DO_NOTHING:
            return;
        case KEEL_PAIR_DO_ACTIVATE: {
            KEEL_INFO ("pair", "becoming active: %s", keel_pair_why (self->fsm));
            keel_bp_apply_incoming (self);
            keel_bp_snap_abandon (self);
            keel_bp_forget_updates (self);
            keel_error_t err = { "" };
            if (keel_broker_activate (self->broker, &err) != KEEL_OK) {
                KEEL_ERROR ("pair", "cannot take over: %s; stopping", err.text);
                keel_broker_stop (self->broker);
                return;
            }
            keel_pair_set_epoch (self->fsm, keel_core_epoch (self->broker->core));
            self->attached = false;
            self->peer_synced = false;
            keel_bp_tell_core (self);
            s_settle_votes (self);
            self->attached = false;
            self->data_link = -1;
            keel_bp_choose_link (self);
            self->next_beat = 0; // tell the peer at once
            return;
        }
        case KEEL_PAIR_DO_DEMOTE:
            self->counters.demotions++;
            keel_bp_detach (self, "demoted");
            keel_bp_forget_updates (self);
            keel_broker_deactivate (self->broker);
            self->next_beat = 0;
            keel_bp_ask_sync (self, false);
            return;
        case KEEL_PAIR_DO_SYNC:
            self->next_beat = 0;
            keel_bp_ask_sync (self, false);
            return;
    }
}

static void
s_events (keel_broker_pair_t *self)
{
    keel_pair_event_t ev;
    while ((ev = keel_pair_next_event (self->fsm)) != KEEL_PAIR_EV_NONE) {
        char detail[300];
        switch (ev) {
            case KEEL_PAIR_EV_PEER_LOST:
                snprintf (detail, sizeof detail, "peer %s silent on every link for %lld ms%s",
                          self->peer_name[0] ? self->peer_name : self->peer_conf,
                          (long long) self->timeout_ms,
                          keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE
                              ? ": running without a mirror"
                              : "");
                if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE)
                    keel_core_notice_all (self->broker->core,
                                          "peer lost: running without a mirror");
                keel_bp_detach (self, "peer lost");
                break;
            case KEEL_PAIR_EV_PEER_BACK:
                snprintf (detail, sizeof detail, "peer %s heard", self->peer_conf);
                break;
            case KEEL_PAIR_EV_TOOK_OVER: {
                self->counters.takeovers++;
                snprintf (detail, sizeof detail, "took over as active at epoch %" PRIu64,
                          keel_bp_epoch (self));
                char notice[300];
                snprintf (notice, sizeof notice,
                          "failover broker %s active: took over from %s at epoch %" PRIu64,
                          keel_broker_cfg_Name (self->broker->settings),
                          self->peer_name[0] ? self->peer_name : self->peer_conf,
                          keel_bp_epoch (self));
                keel_core_pair_notice (self->broker->core, notice);
                break;
            }
            case KEEL_PAIR_EV_DEMOTED:
                snprintf (detail, sizeof detail, "now passive: the peer is active");
                break;
            default:
                detail[0] = 0;
        }
        keel_bp_notify (self, keel_pair_event_name (ev), detail);
    }
}

// ---------------------------------------------------------------- reading the links

static void
s_stranger (keel_broker_pair_t *self, int link, const char *why)
{
    self->counters.strangers++;
    KEEL_LOG_LIMITED (&self->strangers_rl, self->now, KEEL_LOG_WARN, "pair",
                      "link %d (%s): message from a stranger dropped: %s", link, self->own[link],
                      why);
}

static void
s_on_heartbeat (keel_broker_pair_t *self, int link, zframe_t *route, const keel_env_t *env)
{
    const Keel__PairHeartbeat *m = env->pair_heartbeat;
    const char *pair_name = keel_broker_cfg_PairName (self->broker->settings);
    if (*pair_name) {
        if (!m->pair_name || strcmp (m->pair_name, pair_name) != 0) {
            char why[300];
            snprintf (why, sizeof why, "its PairName is '%.100s', ours is '%.100s'",
                      m->pair_name ? m->pair_name : "", pair_name);
            s_stranger (self, link, why);
            return;
        }
    }
    else if (strcmp (m->endpoints, self->peer_conf) != 0) {
        char why[300];
        snprintf (why, sizeof why, "its PairEndpoint is '%.100s', our PairPeer is '%.100s'",
                  m->endpoints, self->peer_conf);
        s_stranger (self, link, why);
        return;
    }
    if (strcmp (m->role, self->role) == 0) {
        self->counters.misconfigured++;
        KEEL_LOG_LIMITED (&self->strangers_rl, self->now, KEEL_LOG_ERROR, "pair",
                          "the peer is PairRole=%s too: one broker must be primary and the other "
                          "backup; neither serves until one is reconfigured",
                          m->role);
        // It is alive: this broker never counts it lost, so never serves
        // alone on a client's vote while it is there.
        keel_pair_link_heard (self->fsm, link, self->now);
        return;
    }
    // Older than a heartbeat already heard from the same process (it waited
    // on another link while this broker was paused): it says nothing now.
    if (m->has_incarnation && m->incarnation == self->peer_incarnation
        && m->beat <= self->peer_beat) {
        self->counters.stale_heartbeats++;
        return;
    }
    if (m->has_incarnation) {
        self->peer_incarnation = m->incarnation;
        self->peer_beat = m->beat;
    }
    uint64_t epoch = env->has_epoch ? env->epoch : 0;
    if (m->state == KEEL__PAIR_STATE__PAIR_STATE_ACTIVE && epoch < self->peer_epoch_max) {
        self->counters.stale_epoch++;
        return;
    }
    if (epoch > self->peer_epoch_max)
        self->peer_epoch_max = epoch;
    if (!self->peer_route[link] || !zframe_eq (self->peer_route[link], route)) {
        zframe_destroy (&self->peer_route[link]);
        self->peer_route[link] = zframe_dup (route);
    }
    snprintf (self->peer_advertised, sizeof self->peer_advertised, "%s",
              m->advertised ? m->advertised : "");
    snprintf (self->peer_name, sizeof self->peer_name, "%s", m->name ? m->name : "");
    snprintf (self->peer_admin, sizeof self->peer_admin, "%s", m->admin ? m->admin : "");
    keel_pair_peer_t peer = { .state = (keel_pair_state_t) m->state,
                              .epoch = epoch,
                              .applied_seq = m->applied_seq,
                              .applied_epoch = m->applied_epoch };
    bool was_passive = keel_pair_state (self->fsm) == KEEL_PAIR_PASSIVE;
    keel_bp_carry_out (self, keel_pair_heard (self->fsm, link, &peer, self->now));
    if (was_passive && keel_pair_state (self->fsm) == KEEL_PAIR_PASSIVE
        && peer.state == KEEL_PAIR_ACTIVE) {
        // The active says whether it counts us in sync (acked up to the
        // point it attached us): only then may we take over.
        keel_pair_set_synced (self->fsm, m->synced && !self->snap_id);
        if (!m->synced && !self->snap_id && self->now - self->sync_asked_at >= self->timeout_ms)
            keel_bp_ask_sync (self, false);
    }
}

static void
s_read_link (keel_broker_pair_t *self, int link)
{
    zsock_t *sock = self->in[link];
    for (int i = 0; i < S_MAX_PAIR_READS && (zsock_events (sock) & ZMQ_POLLIN); i++) {
        zmsg_t *msg = zmsg_recv (sock);
        if (!msg)
            break;
        zframe_t *route = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        keel_error_t err = { "" };
        keel_env_t *env = zmsg_size (msg) == 2
                              ? keel_wire_decode (zframe_data (body), zframe_size (body), &err)
                              : NULL;
        if (!env) {
            self->counters.bad_messages++;
            KEEL_LOG_LIMITED (&self->bad_rl, self->now, KEEL_LOG_WARN, "pair",
                              "link %d: malformed pair message dropped: %s", link,
                              err.text[0] ? err.text : "expected 2 frames");
        }
        else if (env->body_case == KEEL__ENVELOPE__BODY_PAIR_HEARTBEAT)
            s_on_heartbeat (self, link, route, env);
        else if (!self->peer_route[link] || !zframe_eq (self->peer_route[link], route))
            s_stranger (self, link, "not from the connection the peer's heartbeat came on");
        else {
            keel_pair_link_heard (self->fsm, link, self->now);
            switch (env->body_case) {
                case KEEL__ENVELOPE__BODY_PAIR_UPDATE:
                    keel_bp_on_update (self, env->pair_update);
                    break;
                case KEEL__ENVELOPE__BODY_PAIR_ACK:
                    keel_bp_on_ack (self, env->pair_ack->seq);
                    break;
                case KEEL__ENVELOPE__BODY_PAIR_SYNC_REQUEST:
                    keel_bp_on_sync_request (self, env->pair_sync_request);
                    break;
                case KEEL__ENVELOPE__BODY_PAIR_SNAPSHOT:
                    keel_bp_on_snapshot (self, env->pair_snapshot);
                    break;
                case KEEL__ENVELOPE__BODY_PAIR_HANDOVER:
                    keel_bp_on_handover (self, env->pair_handover);
                    break;
                default:
                    self->counters.bad_messages++;
                    KEEL_LOG_LIMITED (&self->bad_rl, self->now, KEEL_LOG_WARN, "pair",
                                      "link %d: %s is not a pair message; dropped", link,
                                      keel_wire_body_name (env));
            }
        }
        keel_wire_free (&env);
        zmsg_destroy (&msg);
    }
}

static void
s_beat (keel_broker_pair_t *self)
{
    keel_pair_state_t state = keel_pair_state (self->fsm);
    const char *pair_name = keel_broker_cfg_PairName (self->broker->settings);
    for (int i = 0; i < self->nlinks; i++) {
        keel_msg_t msg;
        keel_pair_heartbeat_args_t args = {
            .state = (Keel__PairState) state,
            .role = self->role,
            .endpoints = self->own_conf,
            .link = (uint32_t) i,
            .advertised = self->advertised,
            .applied_seq = self->applied_seq,
            .applied_epoch = self->applied_epoch,
            .synced = state == KEEL_PAIR_ACTIVE ? self->peer_synced : keel_pair_synced (self->fsm),
            .name = keel_broker_cfg_Name (self->broker->settings),
            .pair_name = *pair_name ? pair_name : NULL,
            .admin = keel_broker_cfg_AdminEndpoint (self->broker->settings),
            .incarnation = self->incarnation,
            .beat = ++self->beats
        };
        keel_bp_send (self, i, keel_msg_pair_heartbeat (&msg, &args));
    }
    self->next_beat = self->now + self->heartbeat_ms;
}

static void
s_read_all (keel_broker_pair_t *self)
{
    for (int i = 0; i < self->nlinks; i++)
        s_read_link (self, i);
    keel_bp_apply_incoming (self);
}

void
keel_broker_pair_turn (keel_broker_pair_t *self)
{
    self->now = zclock_mono ();
    int64_t gap = self->last_turn ? self->now - self->last_turn : 0;
    self->last_turn = self->now;
    if (gap >= self->timeout_ms)
        keel_pair_paused (self->fsm, gap, self->now);
    s_read_all (self);
    // Back from a pause with the peer not heard yet: wait for it (or for
    // PairTimeout) before serving anything, so that a peer that took over
    // meanwhile demotes this broker first. Bounded by PairTimeout.
    for (int i = 0; i < 1000 && keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE
                    && !keel_pair_serving (self->fsm);
         i++) {
        zmq_pollitem_t items[KEEL_PAIR_MAX_LINKS];
        for (int l = 0; l < self->nlinks; l++)
            items[l] = (zmq_pollitem_t) { zsock_resolve (self->in[l]), 0, ZMQ_POLLIN, 0 };
        zmq_poll (items, self->nlinks, 10);
        self->now = zclock_mono ();
        s_read_all (self);
        keel_bp_carry_out (self, keel_pair_tick (self->fsm, self->now));
        if (self->now >= self->next_beat)
            s_beat (self);
    }
    keel_bp_carry_out (self, keel_pair_tick (self->fsm, self->now));
    keel_bp_handover_step (self);
    s_events (self);
    keel_bp_choose_link (self);
    // A vote older than PairTimeout counts no more and is not served.
    s_vote_t *oldest;
    while ((oldest = zlistx_first (self->votes)) && self->now - oldest->at >= self->timeout_ms)
        zlistx_delete (self->votes, zlistx_cursor (self->votes));
    if (zlistx_size (self->votes)
        && (keel_pair_serving (self->fsm)
            || keel_pair_silence_ms (self->fsm, self->now) <= self->heartbeat_ms))
        s_settle_votes (self);
    // A passive without the stream asks again every PairTimeout.
    if (keel_pair_state (self->fsm) == KEEL_PAIR_PASSIVE && !keel_pair_synced (self->fsm)
        && keel_pair_peer (self->fsm)->state == KEEL_PAIR_ACTIVE
        && (!self->snap_id || self->now - self->snap_heard >= self->timeout_ms)
        && self->now - self->sync_asked_at >= self->timeout_ms) {
        if (self->snap_id)
            keel_bp_snap_abandon (self);
        keel_bp_ask_sync (self, false);
    }
    if (self->now >= self->next_beat)
        s_beat (self);
    keel_bp_tell_core (self);
    s_watch_silence (self);
    s_reap ();
}

bool
keel_broker_pair_serving (const keel_broker_pair_t *self)
{
    return !self || (keel_pair_serving (self->fsm) && !self->handing_over);
}

bool
keel_broker_pair_client (keel_broker_pair_t *self, zframe_t *route, keel_env_t *env,
                         const char *principal)
{
    self->now = zclock_mono ();
    keel_pair_do_t what = keel_pair_client (self->fsm, self->now);
    keel_bp_carry_out (self, what);
    s_events (self);
    if (keel_broker_pair_serving (self))
        return true;
    if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE)
        return false; // unsure after a pause: not a moment to answer anything
    // The peer is in doubt: this client may be the vote that makes this
    // broker take over; keep its message rather than send it back there.
    if (keel_pair_silence_ms (self->fsm, self->now) > self->heartbeat_ms * 3 / 2) {
        s_vote_t *v = calloc (1, sizeof *v);
        if (v) {
            v->route = zframe_dup (route);
            v->body = keel_wire_encode (env);
            v->at = self->now;
            snprintf (v->principal, sizeof v->principal, "%s", principal ? principal : "");
        }
        if (!v || !v->route || !v->body) {
            void *item = v;
            s_vote_destroy (&item);
            return false;
        }
        if (zlistx_size (self->votes) >= S_MAX_VOTES) {
            s_vote_t *old = zlistx_first (self->votes);
            zlistx_delete (self->votes, zlistx_cursor (self->votes));
            (void) old;
        }
        zlistx_add_end (self->votes, v);
        return false;
    }
    s_send_passive (self, route);
    return false;
}

int64_t
keel_broker_pair_wait_ms (keel_broker_pair_t *self)
{
    int64_t now = zclock_mono ();
    int64_t wait = self->next_beat - now;
    int64_t fsm = keel_pair_wait_ms (self->fsm, now);
    if (fsm < wait)
        wait = fsm;
    return wait < 0 ? 0 : wait;
}

const char *
keel_broker_pair_peer_endpoint (const keel_broker_pair_t *self)
{
    return self && self->peer_advertised[0] ? self->peer_advertised : NULL;
}

const keel_pair_counters_t *
keel_broker_pair_counters (const keel_broker_pair_t *self)
{
    return &self->counters;
}

const char *
keel_broker_pair_role (const keel_broker_pair_t *self)
{
    switch (keel_pair_state (self->fsm)) {
        case KEEL_PAIR_ACTIVE:
            return "active";
        case KEEL_PAIR_PASSIVE:
            return "passive";
        default:
            return "starting";
    }
}

uint64_t
keel_broker_pair_epoch (const keel_broker_pair_t *self)
{
    return keel_bp_epoch (self);
}

uint64_t
keel_broker_pair_epoch_floor (const keel_broker_pair_t *self)
{
    return self ? self->peer_epoch_max : 0;
}

void
keel_broker_pair_status (keel_broker_pair_t *self, keel_admin_pair_t *status)
{
    int64_t now = zclock_mono ();
    bool active = keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE;
    const keel_pair_peer_t *peer = keel_pair_peer (self->fsm);
    uint64_t lag = 0;
    if (active && self->attached)
        lag = self->applied_seq > self->acked_seq ? self->applied_seq - self->acked_seq : 0;
    else if (!active && peer->applied_seq > self->applied_seq)
        lag = peer->applied_seq - self->applied_seq;
    *status =
        (keel_admin_pair_t) { .pair_role = self->role,
                              .peer = self->peer_conf,
                              .peer_state = keel_pair_peer_up (self->fsm, now) ? "up" : "lost",
                              .links_up = keel_pair_links_up (self->fsm, now),
                              .links = self->nlinks,
                              .mirror_lag = lag,
                              .synced = active ? self->attached && self->peer_synced
                                               : keel_pair_synced (self->fsm),
                              .applied_seq = self->applied_seq,
                              .peer_admin = self->peer_admin,
                              .counters = &self->counters };
}

// ---------------------------------------------------------------- lifecycle

static zsock_t *
s_bind (keel_broker_t *broker, const char *endpoint, keel_error_t *err)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    if (!sock) {
        keel_error_set (err, KEEL_ERR_IO, "cannot create a ZeroMQ socket");
        return NULL;
    }
    keel_security_server (sock, &broker->security, KEEL_ZAP_DOMAIN_PAIR);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_linger (sock, 0);
    zsock_set_maxmsgsize (sock, 64 * 1024 * 1024);
    if (zsock_bind (sock, "%s", endpoint) < 0) {
        keel_error_set (err, KEEL_ERR_CONFIG, "PairEndpoint: cannot bind '%s': %s", endpoint,
                        zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
    }
    return sock;
}

static zsock_t *
s_connect (keel_broker_t *broker, const char *endpoint, keel_error_t *err)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock) {
        keel_error_set (err, KEEL_ERR_IO, "cannot create a ZeroMQ socket");
        return NULL;
    }
    keel_security_client (sock, &broker->security, broker->pair_peer_key);
    zsock_set_immediate (sock, 1);
    zsock_set_sndhwm (sock, 100000);
    zsock_set_sndtimeo (sock, 5000);
    zsock_set_linger (sock, 0);
    zsock_set_reconnect_ivl (sock, 100);
    zsock_set_reconnect_ivl_max (sock, 1000);
    if (zsock_connect (sock, "%s", endpoint) < 0) {
        keel_error_set (err, KEEL_ERR_CONFIG, "PairPeer: cannot connect to '%s': %s", endpoint,
                        zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
    }
    return sock;
}

keel_broker_pair_t *
keel_broker_pair_new (keel_broker_t *broker, keel_error_t *err)
{
    keel_settings_t *s = broker->settings;
    const char *role = keel_broker_cfg_PairRole (s);
    if (!role || !*role || strcmp (role, "none") == 0)
        return NULL;
    const char *own = keel_broker_cfg_PairEndpoint (s);
    const char *peer = keel_broker_cfg_PairPeer (s);
    if (!*own || !*peer) {
        keel_error_set (err, KEEL_ERR_CONFIG, "PairRole=%s needs PairEndpoint and PairPeer", role);
        return NULL;
    }
    if (!keel_store_durable (broker->store)) {
        keel_error_set (err, KEEL_ERR_CONFIG,
                        "PairRole=%s needs a durable Store (sqlite:PATH), not memory:", role);
        return NULL;
    }
    if (strncmp (keel_broker_cfg_Store (s), "sqlite:", 7) != 0) {
        keel_error_set (err, KEEL_ERR_CONFIG,
                        "PairRole=%s needs Store=sqlite:PATH: a pair mirrors a SQLite store"
                        " (brokers on one PostgreSQL database share it instead)",
                        role);
        return NULL;
    }
    keel_broker_pair_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->broker = broker;
    self->role = role;
    self->own_conf = own;
    self->peer_conf = peer;
    const char *adv = keel_broker_cfg_AdvertisedEndpoint (s);
    self->advertised = adv && *adv ? adv : keel_broker_cfg_Endpoint (s);
    self->heartbeat_ms = keel_broker_cfg_HeartbeatInterval (s);
    self->timeout_ms = keel_broker_cfg_PairTimeout (s);
    if (self->timeout_ms <= 0)
        self->timeout_ms = 3 * self->heartbeat_ms;
    self->data_link = -1;
    while (!self->incarnation)
        self->incarnation =
            ((uint64_t) zclock_time () << 20) ^ (uint64_t) getpid () ^ (uint64_t) random ();
    self->strangers_rl = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "pair stranger");
    self->bad_rl = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "bad pair message");
    self->refused_rl = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 3, "client refused");
    self->unacked = zlistx_new ();
    self->recent = zlistx_new ();
    self->votes = zlistx_new ();
    self->incoming = keel_changes_new ();
    int nown = s_split (own, self->own);
    int npeer = s_split (peer, self->peers);
    if (!self->unacked || !self->recent || !self->incoming || !self->votes) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        keel_broker_pair_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->unacked, s_update_destroy);
    zlistx_set_destructor (self->recent, s_update_destroy);
    zlistx_set_destructor (self->votes, s_vote_destroy);
    if (nown < 1 || npeer < 1 || nown != npeer) {
        keel_error_set (err, KEEL_ERR_CONFIG,
                        "PairEndpoint (%d entries) and PairPeer (%d entries) need the same number "
                        "of links, 1 to %d",
                        nown, npeer, KEEL_PAIR_MAX_LINKS);
        keel_broker_pair_destroy (&self);
        return NULL;
    }
    self->nlinks = nown;
    for (int i = 0; i < self->nlinks; i++) {
        self->in[i] = s_bind (broker, self->own[i], err);
        self->out[i] = self->in[i] ? s_connect (broker, self->peers[i], err) : NULL;
        if (!self->out[i]) {
            keel_broker_pair_destroy (&self);
            return NULL;
        }
    }
    char path[1024];
    snprintf (path, sizeof path, "%s.pair-in", keel_broker_store_path (broker));
    self->snap_path = strdup (path);
    keel_store_meta_get (broker->store, "pair_seq", &self->applied_seq);
    keel_store_meta_get (broker->store, "pair_epoch", &self->applied_epoch);
    keel_pair_config_t config = { .primary = strcmp (role, "primary") == 0,
                                  .nlinks = self->nlinks,
                                  .timeout_ms = self->timeout_ms,
                                  .heartbeat_ms = self->heartbeat_ms };
    self->now = zclock_mono ();
    self->fsm = keel_pair_new (&config, self->applied_seq, self->applied_epoch, self->now);
    if (!self->fsm || !self->snap_path) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        keel_broker_pair_destroy (&self);
        return NULL;
    }
    KEEL_INFO ("pair",
               "PairRole=%s: links %s -> peer %s, PairTimeout %lld ms; store at update %" PRIu64
               " (epoch %" PRIu64 "); waiting for the peer",
               role, own, peer, (long long) self->timeout_ms, self->applied_seq,
               self->applied_epoch);
    return self;
}

void
keel_broker_pair_destroy (keel_broker_pair_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_broker_pair_t *self = *self_p;
    keel_bp_snap_abandon (self);
    for (int i = 0; i < KEEL_PAIR_MAX_LINKS; i++) {
        zsock_destroy (&self->in[i]);
        zsock_destroy (&self->out[i]);
        zframe_destroy (&self->peer_route[i]);
        free (self->own[i]);
        free (self->peers[i]);
    }
    zlistx_destroy (&self->unacked);
    zlistx_destroy (&self->recent);
    zlistx_destroy (&self->votes);
    if (self->pending) {
        void *item = self->pending;
        s_update_destroy (&item);
    }
    keel_changes_destroy (&self->incoming);
    keel_pair_destroy (&self->fsm);
    free (self->snap_path);
    free (self);
    *self_p = NULL;
}

int
keel_broker_pair_poll_on (keel_broker_pair_t *self, zpoller_t *poller)
{
    for (int i = 0; i < self->nlinks; i++)
        if (zpoller_add (poller, self->in[i]) != 0)
            return -1;
    return 0;
}
