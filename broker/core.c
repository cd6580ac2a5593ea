/*  core.c — the core's effects (messages to peers: results batched per
    driver, engine acknowledgements, acceptances), its clocks and reads, and
    its lifecycle. What a commit writes and what its outcome does is
    core_commit.c. See core.h; the handlers are core_driver.c and
    core_engine.c, timers and dispatch core_sched.c.
*/

#include "core_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "journal.h"
#include "log.h"

// Results per TaskResults message, and a byte budget per message.
#define KEEL_RESULTS_PER_MSG       512
#define KEEL_RESULTS_BYTES_PER_MSG (1024 * 1024)

// ---------------------------------------------------------------- outbox

void
keel_core_out_destroy (keel_core_out_t **out_p)
{
    keel_core_out_t *out = *out_p;
    if (!out)
        return;
    zframe_destroy (&out->route);
    zframe_destroy (&out->payload);
    free (out);
    *out_p = NULL;
}

static void
s_out_destroy (void **item_p)
{
    keel_core_out_destroy ((keel_core_out_t **) item_p);
}

keel_core_out_t *
keel_core_out_next (keel_core_t *self)
{
    keel_core_out_t *out = zlistx_first (self->outbox);
    if (out)
        zlistx_detach_cur (self->outbox);
    return out;
}

void
keel_core_send (keel_core_t *self, zframe_t *route, keel_env_t *env)
{
    env->epoch = self->epoch;
    env->has_epoch = true;
    zframe_t *payload = keel_wire_encode (env);
    keel_core_out_t *out = calloc (1, sizeof *out);
    if (!payload || !out) {
        zframe_destroy (&payload);
        free (out);
        KEEL_ERROR ("broker", "out of memory encoding %s", keel_wire_body_name (env));
        return;
    }
    out->route = zframe_dup (route);
    out->payload = payload;
    out->seq = self->hold_seq;
    zlistx_add_end (self->outbox, out);
}

void
keel_core_send_engine (keel_core_t *self, keel_engine_t *engine, keel_env_t *env)
{
    if (!engine->route)
        return;
    // Nothing to an engine overtakes its LoginReply held for a commit (a
    // Cancel sent before it would reach an engine still logging in, which
    // drops it): it waits for the same commit.
    uint64_t hold = self->hold_seq;
    if (engine->reply_held_seq > self->synced_seq && engine->reply_held_seq > hold)
        self->hold_seq = engine->reply_held_seq;
    keel_core_send (self, engine->route, env);
    self->hold_seq = hold;
    keel_peer_clock_sent (&engine->clock, self->now);
}

void
keel_core_send_driver (keel_core_t *self, keel_driver_rec_t *drv, keel_env_t *env)
{
    if (!drv->route || !drv->connected)
        return;
    keel_core_send (self, drv->route, env);
    keel_peer_clock_sent (&drv->clock, self->now);
}

void
keel_core_relogin (keel_core_t *self, zframe_t *route, const char *reason)
{
    keel_msg_t msg;
    keel_core_send (self, route, keel_msg_relogin (&msg, reason));
}

// ---------------------------------------------------------------- the journal

keel_err
keel_core_change (keel_core_t *self, keel_change_t change)
{
    keel_err rc = keel_changes_add (self->changes, &change);
    if (rc != KEEL_OK)
        KEEL_ERROR ("broker", "out of memory recording a change (%s)",
                    keel_change_kind_name (change.kind));
    return rc;
}

// ---------------------------------------------------------------- results to drivers

void
keel_core_deliver (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id)
{
    if (self->nresults == self->results_cap) {
        size_t cap = self->results_cap ? self->results_cap * 2 : 1024;
        keel_ref_t *r = realloc (self->results, cap * sizeof *r);
        if (!r)
            return; // the driver gets it at its next hello
        self->results = r;
        self->results_cap = cap;
    }
    self->results[self->nresults++] = (keel_ref_t) { svc, task_id };
}

void
keel_core_deliver_again (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id)
{
    keel_core_deliver (self, svc, task_id | KEEL_REF_AGAIN);
}

static void
s_send_results_batch (keel_core_t *self, keel_driver_rec_t *drv, Keel__TaskResult **items, size_t n)
{
    keel_msg_t msg;
    keel_core_send_driver (self, drv, keel_msg_task_results (&msg, items, n));
}

// Encodes the turn's results into TaskResults messages, per driver.
void
keel_core_send_results (keel_core_t *self)
{
    if (self->nresults == 0)
        return;
    // A message holds at most this many (each item is initialized as it
    // is filled): one result, the usual case at a low rate, is one item,
    // not a zeroed 150 KiB for 512.
    size_t cap = self->nresults < KEEL_RESULTS_PER_MSG ? self->nresults : KEEL_RESULTS_PER_MSG;
    Keel__TaskResult *items = malloc (cap * sizeof *items);
    Keel__TaskResult **ptrs = malloc (cap * sizeof *ptrs);
    Keel__Timings *timings = malloc (cap * sizeof *timings);
    uint8_t *done = calloc (self->nresults, 1);
    if (!items || !ptrs || !timings || !done)
        goto cleanup;
    // Group by driver: each pass takes the first unsent result's driver
    // and sends every result of that driver.
    for (size_t first = 0; first < self->nresults; first++) {
        if (done[first])
            continue;
        keel_driver_rec_t *drv =
            keel_model_driver (self->model, self->results[first].svc->driver_id);
        size_t n = 0, bytes = 0;
        for (size_t i = first; i < self->nresults; i++) {
            keel_service_rec_t *svc = self->results[i].svc;
            if (done[i] || strcmp (svc->driver_id, self->results[first].svc->driver_id) != 0)
                continue;
            done[i] = 1;
            bool again = (self->results[i].task_id & KEEL_REF_AGAIN) != 0;
            uint64_t task_id = self->results[i].task_id & ~KEEL_REF_AGAIN;
            keel_task_t *t = keel_service_task (svc, task_id);
            if (!drv || !t || !t->result || (t->acked && !again))
                continue;
            keel_task_result_t *r = t->result;
            keel_item_task_result (
                &items[n], &timings[n],
                &(keel_task_result_args_t) {
                    .service_id = svc->id,
                    .task_id = task_id,
                    .status = r->status,
                    .output = r->output,
                    .output_size = r->output_len,
                    .error = r->error,
                    .engine_id = r->engine_id,
                    .execution_id = r->execution_id,
                    .attempts = keel_task_attempts (t), // the number keel-admin shows
                    .queued_ms = r->queued_ms,
                    .run_ms = r->run_ms });
            ptrs[n] = &items[n];
            n++;
            bytes += r->output_len + (r->error ? strlen (r->error) : 0) + 64;
            if (n == cap || bytes >= KEEL_RESULTS_BYTES_PER_MSG) {
                s_send_results_batch (self, drv, ptrs, n);
                n = 0;
                bytes = 0;
            }
        }
        if (n)
            s_send_results_batch (self, drv, ptrs, n);
    }
cleanup:
    free (items);
    free (ptrs);
    free (timings);
    free (done);
    self->nresults = 0;
}

// ---------------------------------------------------------------- engine acks

void
keel_core_ack_engine (keel_core_t *self, keel_engine_t *engine, uint64_t exec_id)
{
    if (!engine)
        return;
    if (self->nacks == self->acks_cap) {
        size_t cap = self->acks_cap ? self->acks_cap * 2 : 256;
        keel_ack_t *a = realloc (self->acks, cap * sizeof *a);
        if (!a)
            return; // the engine re-sends the result at its next login
        self->acks = a;
        self->acks_cap = cap;
    }
    self->acks[self->nacks++] = (keel_ack_t) { engine, exec_id };
}

static int
s_cmp_id (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return (x > y) - (x < y);
}

void
keel_core_send_acks (keel_core_t *self)
{
    if (self->nacks == 0)
        return;
    // The acks of rows this commit left for the next one stay (in order,
    // at the front); the others go, one message per engine.
    size_t kept = 0;
    if (self->ncarried) {
        qsort (self->carried_execs, self->ncarried, sizeof (uint64_t), s_cmp_id);
        for (size_t i = 0; i < self->nacks; i++)
            if (bsearch (&self->acks[i].exec_id, self->carried_execs, self->ncarried,
                         sizeof (uint64_t), s_cmp_id)) {
                keel_ack_t a = self->acks[kept];
                self->acks[kept++] = self->acks[i];
                self->acks[i] = a;
            }
        self->ncarried = 0;
    }
    size_t nsend = self->nacks - kept;
    keel_ack_t *send = self->acks + kept;
    uint64_t *ids = nsend ? calloc (nsend, sizeof *ids) : NULL;
    uint8_t *done = nsend ? calloc (nsend, 1) : NULL;
    for (size_t first = 0; ids && done && first < nsend; first++) {
        if (done[first])
            continue;
        keel_engine_t *engine = send[first].engine;
        size_t n = 0;
        for (size_t i = first; i < nsend; i++)
            if (!done[i] && send[i].engine == engine) {
                done[i] = 1;
                ids[n++] = send[i].exec_id;
            }
        keel_msg_t msg;
        keel_core_send_engine (self, engine, keel_msg_execution_ack (&msg, ids, n));
    }
    free (ids);
    free (done);
    self->nacks = kept;
}

// ---------------------------------------------------------------- acceptances

void
keel_core_accept (keel_core_t *self, zframe_t *route, const char *service_id,
                  const uint64_t *task_ids, size_t n)
{
    keel_accept_t *acc = calloc (1, sizeof *acc);
    if (!acc)
        return;
    acc->route = zframe_dup (route);
    snprintf (acc->service_id, sizeof acc->service_id, "%s", service_id);
    if (n) {
        acc->task_ids = malloc (n * sizeof *acc->task_ids);
        if (!acc->task_ids) {
            zframe_destroy (&acc->route);
            free (acc);
            return;
        }
        memcpy (acc->task_ids, task_ids, n * sizeof *task_ids);
    }
    acc->n = n;
    zlistx_add_end (self->accepts, acc);
}

static void
s_accept_destroy (void **item_p)
{
    keel_accept_t *acc = *item_p;
    if (!acc)
        return;
    zframe_destroy (&acc->route);
    free (acc->task_ids);
    free (acc);
    *item_p = NULL;
}

// Sends Accepted (committed) or Refused{STORE_FULL} (commit failed) for
// every submission of the turn.
void
keel_core_answer_submissions (keel_core_t *self, bool committed, const char *error)
{
    keel_accept_t *acc;
    while ((acc = zlistx_first (self->accepts))) {
        keel_msg_t msg;
        keel_env_t *env;
        if (committed) {
            env = keel_msg_accepted (&msg, acc->service_id, acc->task_ids, acc->n);
            if (self->pair_alone)
                keel_msg_set_accepted_alone (&msg);
            for (size_t i = 0; keel_journal_fd_ >= 0 && i < acc->n; i++)
                KEEL_JOURNAL ("accepted", .service = acc->service_id, .task = acc->task_ids[i],
                              .epoch = (int64_t) self->epoch, .text = self->name);
        }
        else {
            env = keel_msg_refused (&msg, acc->service_id, acc->task_ids, acc->n,
                                    KEEL__REFUSE_CODE__REFUSE_STORE_FULL, error);
            self->counters.submissions_refused += acc->n ? acc->n : 1;
        }
        keel_core_send (self, acc->route, env);
        keel_driver_rec_t *drv = keel_model_driver_by_route (self->model, acc->route);
        if (drv)
            keel_peer_clock_sent (&drv->clock, self->now);
        zlistx_delete (self->accepts, zlistx_cursor (self->accepts));
    }
}

// Logs "<what>: <text>" as a warning unless rl has had its lines for this
// window; the first line of a new window says how many were not logged.
static void
s_warn_limited (keel_core_t *self, keel_ratelimit_t *rl, const char *what, const char *fmt,
                va_list args)
{
    int64_t suppressed = 0;
    if (!keel_ratelimit_allow (rl, self->now, &suppressed))
        return;
    char text[400];
    vsnprintf (text, sizeof text, fmt, args);
    if (suppressed)
        KEEL_WARN ("broker", "%s: %s (and %lld more not logged)", what, text,
                   (long long) suppressed);
    else
        KEEL_WARN ("broker", "%s: %s", what, text);
}

void
keel_core_malformed (keel_core_t *self, const char *fmt, ...)
{
    self->counters.malformed_messages++;
    va_list args;
    va_start (args, fmt);
    s_warn_limited (self, &self->malformed_rl, "malformed message dropped", fmt, args);
    va_end (args);
}

void
keel_core_refused (keel_core_t *self, bool role, const char *fmt, ...)
{
    if (role)
        self->counters.role_refused++;
    else
        self->counters.auth_refused++;
    va_list args;
    va_start (args, fmt);
    s_warn_limited (self, &self->refused_rl, role ? "role refused" : "auth refused", fmt, args);
    va_end (args);
}

void
keel_core_principal (keel_core_t *self, const char *principal)
{
    snprintf (self->principal, sizeof self->principal, "%s", principal ? principal : "");
}

// A loop that did not wake for 2·H or more (SIGSTOP, a paused VM, a
// stalled disk) said nothing to its peers meanwhile. Engines give a broker
// up after 3·H of silence and the last heartbeat they had from us may be H
// old, so some may be in their login backoff now, holding the results of
// tasks that finished meanwhile. As after a restart (DESIGN §5), they get
// one EngineLoginWindow to log in again before their work is queued
// elsewhere (keel_core_engine_lost), a window that ends as soon as every
// engine online now has logged in again (keel_core_window_engine_back;
// one that never noticed the pause does not log in: the window then runs
// its length, which only delays the work of engines lost meanwhile), and
// no peer is judged by a silence
// the broker caused: its liveness clock starts again now. CLOCK_MONOTONIC
// (zclock_mono) runs on while the process is stopped, so the gap shows.
void
keel_core_turn_begin (keel_core_t *self)
{
    int64_t gap = self->now - self->last_wake;
    self->last_wake = self->now;
    if (gap < 2 * self->heartbeat_ms)
        return;
    zlistx_t *engines = keel_model_engines (self->model);
    size_t online = 0;
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        if (e->state == KEEL_ENGINE_ONLINE) {
            keel_peer_clock_received (&e->clock, self->now);
            e->awaited = true; // the window ends early once each logged in again
            online++;
        }
    }
    zlistx_t *drivers = keel_model_drivers (self->model);
    for (keel_driver_rec_t *d = zlistx_first (drivers); d; d = zlistx_next (drivers))
        if (d->connected)
            keel_peer_clock_received (&d->clock, self->now);
    if (self->login_window_ms > 0)
        self->pause_window_end = self->now + self->login_window_ms;
    keel_core_window_open (self);
    keel_core_event (self, "broker-paused",
                     "noticed a pause of %.1f s (no loop turn; HeartbeatInterval %lld ms): "
                     "giving engines the login window (EngineLoginWindow %lld ms) before "
                     "their tasks are queued again engines_online=%zu",
                     gap / 1000.0, (long long) self->heartbeat_ms,
                     (long long) self->login_window_ms, online);
}

// ---------------------------------------------------------------- clocks

void
keel_core_clock (keel_core_t *self, int64_t now, int64_t wall)
{
    self->now = now;
    self->wall = wall;
}

// ---------------------------------------------------------------- reads

keel_model_t *
keel_core_model (keel_core_t *self)
{
    return self->model;
}

const keel_counters_t *
keel_core_counters (const keel_core_t *self)
{
    return &self->counters;
}

uint64_t
keel_core_epoch (const keel_core_t *self)
{
    return self->epoch;
}

void
keel_core_set_pair_peer (keel_core_t *self, const char *peer)
{
    self->pair_peer = peer;
}

void
keel_core_set_cluster_members (keel_core_t *self, char **members, const size_t *n)
{
    self->cluster_members = members;
    self->ncluster_members = n;
}

void
keel_core_set_metrics (keel_core_t *self, keel_metrics_t *metrics)
{
    self->metrics = metrics;
}

void
keel_core_set_pair_alone (keel_core_t *self, bool alone)
{
    self->pair_alone = alone;
}

const char *
keel_core_name (const keel_core_t *self)
{
    return self->name;
}

// ---------------------------------------------------------------- lifecycle

static uint64_t
s_name_prefix (const char *name)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t) *p) * 16777619u;
    return ((uint64_t) (h % KEEL_STORE_EXEC_PREFIXES + 1)) << 40;
}

void
keel_core_set_member (keel_core_t *self, uint64_t member_id)
{
    if (member_id)
        self->exec_prefix = ((uint64_t) (member_id % KEEL_STORE_EXEC_PREFIXES + 1)) << 40;
}

void
keel_core_set_whole_rows (keel_core_t *self, size_t max)
{
    self->whole_row_max = max;
}

keel_core_t *
keel_core_new (keel_settings_t *settings, int64_t now, int64_t wall)
{
    keel_core_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->settings = settings;
    snprintf (self->name, sizeof self->name, "%s", keel_broker_cfg_Name (settings));
    keel_core_apply_settings (self);
    self->started_mono = now;
    self->now = now;
    self->wall = wall;
    self->last_wake = now;
    self->prefetch_room = UINT64_MAX; // set per engine during dispatch (core_sched.c)
    self->malformed_rl = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "malformed message");
    self->refused_rl = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "refusal");
    self->rl[KEEL_CORE_RL_EVENTS] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 100, "event");
    self->rl[KEEL_CORE_RL_DRIVERS] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "driver");
    self->rl[KEEL_CORE_RL_VALUES] =
        (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "peer value");
    self->rl[KEEL_CORE_RL_TASKS] = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "task");
    self->model = keel_model_new ();
    self->sched = keel_sched_new ();
    self->outbox = zlistx_new ();
    self->accepts = zlistx_new ();
    self->fresh_services = zlistx_new ();
    self->pending = zhashx_new ();
    self->changes = keel_changes_new ();
    if (!self->changes || !self->model || !self->sched || !self->outbox || !self->accepts
        || !self->fresh_services || !self->pending) {
        keel_core_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->outbox, s_out_destroy);
    zlistx_set_destructor (self->accepts, s_accept_destroy);
    self->exec_prefix = s_name_prefix (self->name);
    return self;
}

void
keel_core_destroy (keel_core_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_core_t *self = *self_p;
    if (self->pending)
        keel_core_pending_clear (self);
    zhashx_destroy (&self->pending);
    zlistx_destroy (&self->outbox);
    zlistx_destroy (&self->accepts);
    zlistx_destroy (&self->fresh_services);
    free (self->dirty);
    free (self->fresh);
    free (self->results);
    free (self->assign_items);
    free (self->assign_ptrs);
    free (self->acks);
    free (self->carried_execs);
    free (self->exec_puts);
    free (self->exec_dels);
    keel_sched_destroy (&self->sched);
    keel_model_destroy (&self->model);
    keel_changes_destroy (&self->changes);
    free (self);
    *self_p = NULL;
}
