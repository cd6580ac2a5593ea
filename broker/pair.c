/*  pair.c — the resilient pair's state machine. See pair.h for the table.
*/
#include "pair.h"

#include <stdlib.h>

#define S_MAX_EVENTS 16

struct _keel_pair_t {
    keel_pair_config_t config;
    keel_pair_state_t state;
    uint64_t epoch; // ours while ACTIVE
    uint64_t applied_seq, applied_epoch;
    bool synced;
    int64_t started;
    int64_t link_heard[KEEL_PAIR_MAX_LINKS]; // 0: never
    bool peer_was_up;                        // for lost/back events
    keel_pair_peer_t peer;                   // as last heard; state 0: never
    int64_t vote_at;                         // last client request while not serving, 0: none
    int64_t unsure_until;                    // after a pause: serve nothing before, 0: sure
    bool synced_at_loss;                     // the mirror was in sync when the peer went
    int64_t yield_until;                     // handed over: the peer may take over until then
    keel_pair_event_t events[S_MAX_EVENTS];
    int nevents;
    const char *why; // of the last activation, for the log
};

static void
s_event (keel_pair_t *self, keel_pair_event_t event)
{
    if (self->nevents < S_MAX_EVENTS)
        self->events[self->nevents++] = event;
}

keel_pair_t *
keel_pair_new (const keel_pair_config_t *config, uint64_t applied_seq, uint64_t applied_epoch,
               int64_t now)
{
    keel_pair_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = *config;
    if (self->config.nlinks < 1)
        self->config.nlinks = 1;
    if (self->config.nlinks > KEEL_PAIR_MAX_LINKS)
        self->config.nlinks = KEEL_PAIR_MAX_LINKS;
    self->state = config->primary ? KEEL_PAIR_PRIMARY : KEEL_PAIR_BACKUP;
    self->applied_seq = applied_seq;
    self->applied_epoch = applied_epoch;
    self->started = now;
    return self;
}

void
keel_pair_destroy (keel_pair_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

bool
keel_pair_link_up (const keel_pair_t *self, int link, int64_t now)
{
    if (link < 0 || link >= self->config.nlinks || !self->link_heard[link])
        return false;
    return now - self->link_heard[link] < self->config.timeout_ms;
}

int
keel_pair_links_up (const keel_pair_t *self, int64_t now)
{
    int up = 0;
    for (int i = 0; i < self->config.nlinks; i++)
        up += keel_pair_link_up (self, i, now);
    return up;
}

bool
keel_pair_peer_up (const keel_pair_t *self, int64_t now)
{
    return keel_pair_links_up (self, now) > 0;
}

int64_t
keel_pair_silence_ms (const keel_pair_t *self, int64_t now)
{
    int64_t last = 0;
    for (int i = 0; i < self->config.nlinks; i++)
        if (self->link_heard[i] > last)
            last = self->link_heard[i];
    return last ? now - last : INT64_MAX;
}

void
keel_pair_link_heard (keel_pair_t *self, int link, int64_t now)
{
    if (link < 0 || link >= self->config.nlinks)
        return;
    self->link_heard[link] = now;
    if (!self->peer_was_up) {
        self->peer_was_up = true;
        s_event (self, KEEL_PAIR_EV_PEER_BACK);
    }
}

// Nobody serves: the broker with the newer store does (the one that holds
// everything either acknowledged); equal stores: the primary.
static bool
s_wins (const keel_pair_t *self, const keel_pair_peer_t *peer)
{
    if (self->applied_epoch != peer->applied_epoch)
        return self->applied_epoch > peer->applied_epoch;
    if (self->applied_seq != peer->applied_seq)
        return self->applied_seq > peer->applied_seq;
    return self->config.primary;
}

static keel_pair_do_t
s_activate (keel_pair_t *self, bool takeover, const char *why)
{
    self->why = why;
    self->state = KEEL_PAIR_ACTIVE;
    self->vote_at = 0;
    self->unsure_until = 0;
    self->synced = false;
    if (takeover)
        s_event (self, KEEL_PAIR_EV_TOOK_OVER);
    return KEEL_PAIR_DO_ACTIVATE;
}

keel_pair_do_t
keel_pair_heard (keel_pair_t *self, int link, const keel_pair_peer_t *peer, int64_t now)
{
    keel_pair_link_heard (self, link, now);
    self->peer = *peer;
    self->unsure_until = 0; // the peer speaks: whatever it says decides
    bool peer_active = peer->state == KEEL_PAIR_ACTIVE;
    switch (self->state) {
        case KEEL_PAIR_PRIMARY:
        case KEEL_PAIR_BACKUP:
            if (peer_active) {
                self->state = KEEL_PAIR_PASSIVE;
                self->synced = false;
                return KEEL_PAIR_DO_SYNC;
            }
            return s_wins (self, peer)
                       ? s_activate (self, false, "nobody serves and this store is the newer")
                       : KEEL_PAIR_DO_NOTHING;
        case KEEL_PAIR_ACTIVE:
            if (!peer_active)
                return KEEL_PAIR_DO_NOTHING;
            if (peer->epoch > self->epoch
                || (peer->epoch == self->epoch && !self->config.primary)) {
                self->state = KEEL_PAIR_PASSIVE;
                self->synced = false;
                s_event (self, KEEL_PAIR_EV_DEMOTED);
                return KEEL_PAIR_DO_DEMOTE;
            }
            return KEEL_PAIR_DO_NOTHING;
        case KEEL_PAIR_PASSIVE:
            if (peer_active || now < self->yield_until)
                return KEEL_PAIR_DO_NOTHING;
            return s_wins (self, peer) ? s_activate (
                       self, true, "the peer is not active and this store is the newer")
                                       : KEEL_PAIR_DO_NOTHING;
    }
    return KEEL_PAIR_DO_NOTHING;
}

// The peer has been silent on every link for PairTimeout (or, at start,
// was never heard for PairTimeout).
static bool
s_peer_gone (const keel_pair_t *self, int64_t now)
{
    if (keel_pair_peer_up (self, now))
        return false;
    bool never = true;
    for (int i = 0; i < self->config.nlinks; i++)
        never = never && !self->link_heard[i];
    return !never || now - self->started >= self->config.timeout_ms;
}

static keel_pair_do_t
s_vote_counts (keel_pair_t *self, int64_t now)
{
    if (!self->vote_at || now - self->vote_at >= self->config.timeout_ms
        || !s_peer_gone (self, now))
        return KEEL_PAIR_DO_NOTHING;
    switch (self->state) {
        case KEEL_PAIR_PRIMARY:
            return s_activate (self, false, "no peer heard, and a client turned here");
        case KEEL_PAIR_PASSIVE:
            return self->synced_at_loss
                       ? s_activate (self, true, "peer lost, mirror in sync, a client turned here")
                       : KEEL_PAIR_DO_NOTHING;
        default:
            return KEEL_PAIR_DO_NOTHING;
    }
}

keel_pair_do_t
keel_pair_client (keel_pair_t *self, int64_t now)
{
    if (self->state == KEEL_PAIR_ACTIVE)
        return KEEL_PAIR_DO_NOTHING;
    self->vote_at = now ? now : 1;
    return s_vote_counts (self, now);
}

keel_pair_do_t
keel_pair_tick (keel_pair_t *self, int64_t now)
{
    bool up = keel_pair_peer_up (self, now);
    if (self->peer_was_up && !up) {
        self->peer_was_up = false;
        // What the mirror holds is complete only if it was in sync when
        // the stream stopped.
        self->synced_at_loss = self->synced;
        s_event (self, KEEL_PAIR_EV_PEER_LOST);
    }
    if (up)
        self->synced_at_loss = self->synced;
    if (self->unsure_until && now >= self->unsure_until)
        self->unsure_until = 0;
    return s_vote_counts (self, now);
}

void
keel_pair_hand_over (keel_pair_t *self, int64_t now)
{
    if (self->state != KEEL_PAIR_ACTIVE)
        return;
    self->state = KEEL_PAIR_PASSIVE;
    self->synced = true;
    self->synced_at_loss = true;
    self->yield_until = now + self->config.timeout_ms;
    s_event (self, KEEL_PAIR_EV_DEMOTED);
}

keel_pair_do_t
keel_pair_take_handover (keel_pair_t *self)
{
    if (self->state != KEEL_PAIR_PASSIVE || !self->synced)
        return KEEL_PAIR_DO_NOTHING;
    return s_activate (self, true, "the active handed over");
}

const char *
keel_pair_why (const keel_pair_t *self)
{
    return self->why ? self->why : "";
}

void
keel_pair_paused (keel_pair_t *self, int64_t gap_ms, int64_t now)
{
    if (self->state == KEEL_PAIR_ACTIVE && gap_ms >= self->config.timeout_ms)
        self->unsure_until = now + self->config.timeout_ms;
}

void
keel_pair_set_applied (keel_pair_t *self, uint64_t seq, uint64_t epoch)
{
    self->applied_seq = seq;
    self->applied_epoch = epoch;
}

void
keel_pair_set_epoch (keel_pair_t *self, uint64_t epoch)
{
    self->epoch = epoch;
}

void
keel_pair_set_synced (keel_pair_t *self, bool synced)
{
    self->synced = synced;
}

keel_pair_state_t
keel_pair_state (const keel_pair_t *self)
{
    return self->state;
}

bool
keel_pair_serving (const keel_pair_t *self)
{
    return self->state == KEEL_PAIR_ACTIVE && !self->unsure_until;
}

const keel_pair_peer_t *
keel_pair_peer (const keel_pair_t *self)
{
    return &self->peer;
}

bool
keel_pair_synced (const keel_pair_t *self)
{
    return self->synced;
}

uint64_t
keel_pair_epoch (const keel_pair_t *self)
{
    return self->epoch;
}

int64_t
keel_pair_wait_ms (const keel_pair_t *self, int64_t now)
{
    int64_t wait = self->config.heartbeat_ms;
    for (int i = 0; i < self->config.nlinks; i++)
        if (self->link_heard[i]) {
            int64_t left = self->link_heard[i] + self->config.timeout_ms - now;
            if (left >= 0 && left < wait)
                wait = left;
        }
    if (self->unsure_until && self->unsure_until - now < wait)
        wait = self->unsure_until - now;
    if (self->vote_at) {
        int64_t left = self->vote_at + self->config.timeout_ms - now;
        if (left >= 0 && left < wait)
            wait = left;
    }
    return wait < 0 ? 0 : wait;
}

keel_pair_event_t
keel_pair_next_event (keel_pair_t *self)
{
    if (!self->nevents)
        return KEEL_PAIR_EV_NONE;
    keel_pair_event_t event = self->events[0];
    for (int i = 1; i < self->nevents; i++)
        self->events[i - 1] = self->events[i];
    self->nevents--;
    return event;
}

const char *
keel_pair_state_name (keel_pair_state_t state)
{
    switch (state) {
        case KEEL_PAIR_PRIMARY:
            return "starting (primary)";
        case KEEL_PAIR_BACKUP:
            return "starting (backup)";
        case KEEL_PAIR_ACTIVE:
            return "active";
        case KEEL_PAIR_PASSIVE:
            return "passive";
    }
    return "?";
}

const char *
keel_pair_event_name (keel_pair_event_t event)
{
    switch (event) {
        case KEEL_PAIR_EV_PEER_LOST:
            return "peer_lost";
        case KEEL_PAIR_EV_PEER_BACK:
            return "peer_back";
        case KEEL_PAIR_EV_TOOK_OVER:
            return "took_over";
        case KEEL_PAIR_EV_DEMOTED:
            return "demoted";
        case KEEL_PAIR_EV_NONE:
            break;
    }
    return "none";
}
