/*  broker_member.c — the loop's side of a shared store's membership (see
    broker_member.h).
*/
#include "broker_member.h"

#include <stdlib.h>
#include <string.h>

#include "broker_int.h"
#include "config.h"
#include "journal.h"
#include "log.h"
#include "wire.h"

#define KEEL_MEMBER_TICK_MS 250
#define S_LEND_IDLE_MS      1000 // this member has had nothing queued this long before it lends
#define S_LEAVE_LINGER_MS   2000 // a member that left answers Passive this long, then exits

struct _keel_broker_member_t {
    keel_broker_t *broker;
    bool active; // the core serves the member's work (false between fenced and rejoined)
    int64_t lease_ms;
    int64_t next_tick; // monotonic ms
    int64_t last_turn; // monotonic ms, for noticing a pause
    char peer[256];    // first other live member's endpoint (the core points here)
    // The live members' endpoints for welcomes (the core points here).
    char endpoints[KEEL_STORE_MEMBERS_MAX][256];
    char *listed[KEEL_STORE_MEMBERS_MAX];
    size_t nlisted;
    uint64_t takeovers, fenced, fenced_writes, clients_refused, clients_redirected;
    keel_ratelimit_t refused_rl;
    // keel-admin leave: asked (leaving), then done (left: the store is
    // closed, clients are answered Passive naming `peer` until exit_at).
    bool leaving, left;
    int64_t exit_at;
    uint64_t members_gen; // the store's member list as peer/listed show it
    // Lending idle engines: since when nothing is queued here (0: now
    // something is), and the member list generation of the last loan (one
    // loan per renewal, so the borrower's load is read again in between).
    int64_t empty_since;
    uint64_t lent_gen;
    uint64_t engines_lent;
    // Engines lent lately: still in the model until their silence is
    // noticed, never lent twice (engine number, when).
    struct {
        uint32_t number;
        int64_t at;
    } lent[8];
};

// The first other live member with an endpoint (this member's successor:
// the one that takes its work over), then every live member, for welcomes.
static void
s_note_peer (keel_broker_member_t *self)
{
    const keel_store_member_t *m;
    size_t n = keel_store_members (self->broker->store, &m);
    uint64_t me = keel_store_member_id (self->broker->store);
    self->peer[0] = 0;
    for (size_t i = 0; i < n; i++)
        if (m[i].member_id != me && m[i].endpoint[0]) {
            snprintf (self->peer, sizeof self->peer, "%s", m[i].endpoint);
            break;
        }
    self->nlisted = 0;
    for (size_t i = 0; i < n && self->nlisted < KEEL_STORE_MEMBERS_MAX; i++)
        if (m[i].endpoint[0]) {
            snprintf (self->endpoints[self->nlisted], sizeof self->endpoints[0], "%s",
                      m[i].endpoint);
            self->listed[self->nlisted] = self->endpoints[self->nlisted];
            self->nlisted++;
        }
}

void
keel_broker_member_tell_core (keel_broker_member_t *self)
{
    if (!self)
        return;
    keel_core_set_pair_peer (self->broker->core, self->peer);
    keel_core_set_cluster_members (self->broker->core, self->listed, &self->nlisted);
}

static void s_leave (keel_broker_member_t *self);
static void s_lend (keel_broker_member_t *self, int64_t now);

// (Re)loads the member's work into a fresh core: after a takeover (the
// work of a member that is gone is this member's now), or after a rejoin.
// What this member's own clients had in the old core is committed and
// sent first; they say hello and log in again, as after a restart.
static void
s_load (keel_broker_member_t *self, const char *why)
{
    keel_broker_t *broker = self->broker;
    if (self->active) {
        keel_broker_commit_pending (broker);
        keel_broker_flush (broker);
    }
    KEEL_INFO ("broker", "member %llu loads its work: %s",
               (unsigned long long) keel_store_member_id (broker->store), why);
    keel_error_t err = { "" };
    if (keel_broker_activate (broker, &err) != KEEL_OK) {
        KEEL_ERROR ("broker", "cannot load the store: %s; stopping", err.text);
        keel_broker_stop (broker);
        return;
    }
    self->active = true;
    keel_broker_member_tell_core (self);
}

static void
s_fenced (keel_broker_member_t *self)
{
    keel_broker_t *broker = self->broker;
    uint64_t was = keel_store_member_id (broker->store);
    uint64_t uncommitted = keel_core_uncommitted (broker->core);
    keel_broker_deactivate (broker);
    self->active = false;
    uint64_t dropped = 0;
    keel_error_t err = { "" };
    keel_err rc = keel_store_rejoin (broker->store, &dropped, &err);
    self->fenced++;
    self->fenced_writes += dropped + uncommitted;
    KEEL_WARN ("broker",
               "member %llu lost its work while it was away (another member took it over): %llu"
               " writes refused, nothing of them acknowledged; %s%llu",
               (unsigned long long) was, (unsigned long long) (dropped + uncommitted),
               rc == KEEL_OK ? "serving again as member " : "cannot rejoin yet, member ",
               (unsigned long long) keel_store_member_id (broker->store));
    if (rc != KEEL_OK)
        KEEL_WARN ("broker", "%s", err.text);
    KEEL_JOURNAL ("fenced", .epoch = (int64_t) was);
    if (rc == KEEL_OK)
        s_load (self, "rejoined with no work");
}

keel_broker_member_t *
keel_broker_member_new (keel_broker_t *broker, keel_error_t *err)
{
    keel_store_role_t role = keel_store_role (broker->store);
    if (role == KEEL_STORE_ALONE)
        return NULL;
    keel_broker_member_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->broker = broker;
    self->lease_ms = keel_broker_cfg_MemberLease (broker->settings);
    self->refused_rl = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 3, "client refused");
    const char *adv = keel_broker_cfg_AdvertisedEndpoint (broker->settings);
    if (!adv || !*adv)
        adv = keel_broker_cfg_Endpoint (broker->settings);
    keel_store_member_setup (broker->store, adv, self->lease_ms);

    // The renewal tells the others the endpoint.
    self->active = true;
    KEEL_INFO ("broker", "member %llu of the store's cluster: serving its own work",
               (unsigned long long) keel_store_member_id (broker->store));
    return self;
}

void
keel_broker_member_destroy (keel_broker_member_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

bool
keel_broker_member_serving (const keel_broker_member_t *self)
{
    return !self || (self->active && !self->left);
}

void
keel_broker_member_turn (keel_broker_member_t *self)
{
    keel_broker_t *broker = self->broker;
    int64_t now = zclock_mono ();
    if (self->left) {
        if (now >= self->exit_at) {
            KEEL_INFO ("broker", "left the cluster: stopping");
            keel_broker_stop (broker);
        }
        return;
    }
    if (self->leaving) {
        s_leave (self);
        return;
    }
    // Welcomes name the members as the store last read them: a new list
    // (a renewal's answer) shows at once, not at the next tick.
    if (keel_store_members_gen (broker->store) != self->members_gen) {
        self->members_gen = keel_store_members_gen (broker->store);
        s_note_peer (self);
    }
    bool paused = self->last_turn && now - self->last_turn >= self->lease_ms / 2;
    self->last_turn = now;
    // A member just fenced acts at once; one whose rejoin failed tries again
    // at the tick's pace.
    bool fenced = self->active && keel_store_role (broker->store) == KEEL_STORE_FENCED;
    if (now < self->next_tick && !paused && !fenced)
        return;
    self->next_tick = now + KEEL_MEMBER_TICK_MS;
    // After a pause, before anything is served: is its work still this
    // member's?
    keel_store_role_t role = keel_store_tick (broker->store, paused);
    s_note_peer (self);
    if (role == KEEL_STORE_FENCED && self->active)
        s_fenced (self);
    else if (role == KEEL_STORE_FENCED) { // rejoining failed before: again
        uint64_t dropped = 0;
        keel_error_t err;
        if (keel_store_rejoin (broker->store, &dropped, &err) == KEEL_OK)
            s_load (self, "rejoined with no work");
    }
    else if (role == KEEL_STORE_ADOPTED) {
        self->takeovers++;
        s_load (self, "took over the work of a member that is gone");
    }
    s_note_peer (self);
    if (self->active && !self->leaving)
        s_lend (self, now);
}

// ---------------------------------------------------------------- lending

#define S_LENT_FOR_MS 10000 // a lent engine is not counted here, nor lent again, this long

static bool
s_lent_lately (const keel_broker_member_t *self, const keel_engine_t *e, int64_t now)
{
    for (size_t i = 0; i < sizeof self->lent / sizeof self->lent[0]; i++)
        if (self->lent[i].number == e->number && now - self->lent[i].at < S_LENT_FOR_MS)
            return true;
    return false;
}

// This member's load for the others: tasks queued, and free slots of its
// online engines; *idle_p: an online engine running nothing (to lend).
static void
s_load_of (keel_broker_member_t *self, int64_t now, int64_t *queued_p, int64_t *free_p,
           keel_engine_t **idle_p)
{
    keel_model_t *model = keel_core_model (self->broker->core);
    int64_t queued = 0, free_slots = 0;
    for (keel_service_rec_t *svc = keel_model_service_first (model); svc;
         svc = keel_model_service_next (model))
        queued += (int64_t) svc->qlen;
    *idle_p = NULL;
    zlistx_t *engines = keel_model_engines (model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        if (e->state != KEEL_ENGINE_ONLINE || e->draining || !e->route
            || s_lent_lately (self, e, now))
            continue;
        size_t running = zlistx_size (e->execs);
        if (running < e->slots)
            free_slots += (int64_t) (e->slots - running);
        if (running == 0 && !*idle_p)
            *idle_p = e;
    }
    *queued_p = queued;
    *free_p = free_slots;
}

// Work is not trapped where it was submitted: a member with nothing queued
// for a while lends an idle engine to a member that has queued work and no
// free slot (Passive naming it: the engine logs in there). One engine per
// renewal of the member list; the borrower's load is read again first.
static void
s_lend (keel_broker_member_t *self, int64_t now)
{
    keel_broker_t *broker = self->broker;
    int64_t queued, free_slots;
    keel_engine_t *idle;
    s_load_of (self, now, &queued, &free_slots, &idle);
    keel_store_member_load (broker->store, queued, free_slots);
    if (queued > 0 || !self->empty_since) {
        self->empty_since = queued > 0 ? 0 : now;
        return;
    }
    uint64_t gen = keel_store_members_gen (broker->store);
    if (!idle || now - self->empty_since < S_LEND_IDLE_MS || gen == self->lent_gen)
        return;
    const keel_store_member_t *m;
    size_t n = keel_store_members (broker->store, &m);
    const keel_store_member_t *to = NULL;
    for (size_t i = 1; i < n; i++) // the busiest with no free slot
        if (m[i].queued > 0 && m[i].idle_slots == 0 && m[i].endpoint[0]
            && (!to || m[i].queued > to->queued))
            to = &m[i];
    if (!to)
        return;
    self->lent_gen = gen;
    self->lent[self->engines_lent % (sizeof self->lent / sizeof self->lent[0])].number =
        idle->number;
    self->lent[self->engines_lent % (sizeof self->lent / sizeof self->lent[0])].at = now;
    self->engines_lent++;
    KEEL_INFO ("broker",
               "engine %s lent to member %llu (%s): nothing queued here, %lld tasks queued there",
               idle->id, (unsigned long long) to->member_id, to->endpoint, (long long) to->queued);
    keel_msg_t msg;
    char reason[96];
    snprintf (reason, sizeof reason, "lent to member %llu: it has queued work",
              (unsigned long long) to->member_id);
    keel_link_send_to (broker->router, idle->route, keel_msg_passive (&msg, to->endpoint, reason));
}

// Sends Passive (go to `peer`) to every driver and engine the core knows.
static void
s_send_clients_away (keel_broker_member_t *self)
{
    keel_broker_t *broker = self->broker;
    keel_model_t *model = keel_core_model (broker->core);
    keel_msg_t msg;
    size_t sent = 0;
    zlistx_t *lists[2] = { keel_model_drivers (model), keel_model_engines (model) };
    for (int l = 0; l < 2; l++) {
        for (void *item = zlistx_first (lists[l]); item; item = zlistx_next (lists[l])) {
            zframe_t *route =
                l == 0 ? ((keel_driver_rec_t *) item)->route : ((keel_engine_t *) item)->route;
            if (!route)
                continue;
            keel_env_t *env =
                keel_msg_passive (&msg, self->peer[0] ? self->peer : NULL, "member leaving");
            keel_link_send_to (broker->router, route, env);
            sent++;
        }
    }
    KEEL_INFO ("broker", "leaving: %zu drivers and engines sent to %s", sent,
               self->peer[0] ? self->peer : "(no other member)");
}

// keel-admin leave, carried out: everything committed and sent, the
// member's work handed to its successor (store.h keel_store_leave), the
// clients sent there.
static void
s_leave (keel_broker_member_t *self)
{
    keel_broker_t *broker = self->broker;
    if (self->active) {
        keel_broker_commit_pending (broker);
        keel_broker_flush (broker);
    }
    keel_store_leave (broker->store);
    if (self->active) {
        s_send_clients_away (self);
        keel_broker_deactivate (broker);
    }
    self->active = false;
    self->left = true;
    self->exit_at = zclock_mono () + S_LEAVE_LINGER_MS;
    KEEL_JOURNAL ("left", .epoch = (int64_t) keel_store_member_id (broker->store));
}

keel_err
keel_broker_member_leave (keel_broker_member_t *self, keel_error_t *err)
{
    if (!self)
        return keel_error_set (err, KEEL_ERR_STATE,
                               "this broker is not a member of a shared store (Store=postgresql://"
                               "…): stop it with SIGTERM");
    self->leaving = true;
    self->next_tick = 0; // at the end of this turn
    return KEEL_OK;
}

int64_t
keel_broker_member_wait_ms (const keel_broker_member_t *self)
{
    int64_t wait = (self->left ? self->exit_at : self->next_tick) - zclock_mono ();
    return wait < 0 ? 0 : wait;
}

void
keel_broker_member_refuse (keel_broker_member_t *self, zframe_t *route)
{
    keel_broker_t *broker = self->broker;
    self->clients_refused++;
    // A member that left (its successor has its work) or is between a
    // fencing and its rejoin sends clients to its successor.
    const char *next = self->peer[0] ? self->peer : NULL;
    KEEL_LOG_LIMITED (&self->refused_rl, zclock_mono (), KEEL_LOG_INFO, "broker",
                      "client refused: this member %s; %s has its work",
                      self->left ? "left the cluster" : "has no work loaded",
                      next ? next : "(no other member)");
    keel_msg_t msg;
    keel_env_t *env = keel_msg_passive (&msg, next, "member of a shared store not serving");
    keel_link_send_to (broker->router, route, env);
}

// The owner of one service this member's core does not have: true when
// the hello may go on (new, or this member's), else answered or dropped.
static bool
s_admit_service (keel_broker_member_t *self, zframe_t *route, const char *id)
{
    keel_broker_t *broker = self->broker;
    if (!id || keel_model_service (keel_core_model (broker->core), id))
        return true;
    int64_t owner = keel_store_service_owner (broker->store, id);
    uint64_t me = keel_store_member_id (broker->store);
    if (owner == 0 || (owner > 0 && (uint64_t) owner == me))
        return true;
    const keel_store_member_t *m;
    size_t n = keel_store_members (broker->store, &m);
    const char *there = NULL;
    for (size_t i = 1; i < n && owner > 0; i++)
        if (m[i].member_id == (uint64_t) owner && m[i].endpoint[0])
            there = m[i].endpoint;
    // Listed, but maybe just gone (killed: its lock is free before its
    // lease has passed): then its successor takes it over first.
    if (there && keel_store_member_alive (broker->store, (uint64_t) owner) != 1) {
        there = NULL;
        self->next_tick = 0;
    }
    if (there) {
        self->clients_redirected++;
        KEEL_LOG_LIMITED (&self->refused_rl, zclock_mono (), KEEL_LOG_INFO, "broker",
                          "client sent to %s: service %s is member %lld's work", there, id,
                          (long long) owner);
        keel_msg_t msg;
        char reason[160];
        snprintf (reason, sizeof reason, "service %.40s is served by another member", id);
        keel_link_send_to (broker->router, route, keel_msg_passive (&msg, there, reason));
    }
    else
        KEEL_LOG_LIMITED (&self->refused_rl, zclock_mono (), KEEL_LOG_INFO, "broker",
                          "client's hello held back: service %s is the work of member %lld, which"
                          " is gone or unreachable (%s); its successor takes it over",
                          id, (long long) owner, owner < 0 ? "the store did not answer" : "gone");
    return false;
}

bool
keel_broker_member_admit_login (keel_broker_member_t *self, zframe_t *route,
                                const Keel__EngineLogin *login)
{
    if (!self || !self->active || !login)
        return true;
    for (size_t i = 0; i < login->n_held; i++)
        if (login->held[i] && !s_admit_service (self, route, login->held[i]->service_id))
            return false;
    return true;
}

bool
keel_broker_member_admit_hello (keel_broker_member_t *self, zframe_t *route,
                                const Keel__DriverHello *hello)
{
    if (!self || !self->active || !hello)
        return true;
    for (size_t i = 0; i < hello->n_services; i++)
        if (!s_admit_service (self, route, hello->services[i]))
            return false;
    for (size_t i = 0; i < hello->n_attach; i++)
        if (hello->attach[i] && !s_admit_service (self, route, hello->attach[i]->service_id))
            return false;
    return true;
}

const char *
keel_broker_member_peer (const keel_broker_member_t *self)
{
    return self ? self->peer : "";
}

void
keel_broker_member_status (const keel_broker_member_t *self, keel_admin_cluster_t *status)
{
    keel_store_t *store = self->broker->store;
    *status = (keel_admin_cluster_t) {
        .state = self->left      ? "left"
                 : self->leaving ? "leaving"
                 : self->active  ? "serving"
                                 : "rejoining",
        .lease_epoch = keel_store_member_id (store),
        .db = keel_store_db_up (store) ? "up" : "lost",
        .takeovers = self->takeovers,
        .fenced = self->fenced,
        .fenced_writes = self->fenced_writes,
        .clients_refused = self->clients_refused,
        .clients_redirected = self->clients_redirected,
        .engines_lent = self->engines_lent,
    };
    status->nmembers = keel_store_members (store, &status->members);
}
