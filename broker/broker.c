/*  broker.c — keel-broker's event loop: sockets, the store, the syncer, and
    the outbox held until a commit is durable. Everything the broker
    decides is the core's (core.h): the loop reads the clocks and the
    sockets, hands the core its events, applies the core's journal of
    changes to the store in one transaction per turn, and sends the core's
    messages once the commit they need is durable. See broker.h for the
    turn and docs/architecture.md for the whole path.
*/

#include "broker_int.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "journal.h"
#include "log.h"

// Messages read per socket per turn: bounds the work (and the latency of
// everything else) one turn can take.
#define KEEL_TURN_MAX_MESSAGES 4096

// ---------------------------------------------------------------- outbox

static void
s_out_destroy (void **item_p)
{
    keel_core_out_destroy ((keel_core_out_t **) item_p);
}

// Moves the core's messages to the send queue, or to `held` while the
// commit they need is not durable.
static void
s_take_outbox (keel_broker_t *self)
{
    uint64_t synced = keel_core_synced_seq (self->core);
    keel_core_out_t *out;
    while ((out = keel_core_out_next (self->core))) {
        if (out->seq > synced)
            zlistx_add_end (self->held, out);
        else
            zlistx_add_end (self->sendq, out);
    }
}

static void
s_flush (keel_broker_t *self)
{
    s_take_outbox (self);
    keel_core_out_t *out;
    while ((out = zlistx_first (self->sendq))) {
        if (keel_wire_send_frames (self->router, out->route, out->payload) != KEEL_OK)
            keel_core_send_failed (self->core, errno);
        zlistx_delete (self->sendq, zlistx_cursor (self->sendq));
    }
}

// Commits up to min(durable here, held by the pair's mirror) are durable:
// held messages up to it leave with the turn's outbox, and an execution-id
// reservation it wrote becomes usable.
void
keel_broker_release (keel_broker_t *self)
{
    uint64_t seq = self->local_synced;
    uint64_t mirrored = keel_broker_pair_mirrored (self->pair);
    if (mirrored < seq)
        seq = mirrored;
    if (seq <= keel_core_synced_seq (self->core))
        return;
    s_take_outbox (self); // what the core sent before, in order
    keel_core_synced (self->core, seq);
    uint64_t synced = keel_core_synced_seq (self->core);
    // Not only a prefix: a LoginReply held for a commit that then failed
    // waits for a later one, ahead of messages whose commit is durable.
    for (keel_core_out_t *out = zlistx_first (self->held); out; out = zlistx_next (self->held))
        if (out->seq <= synced) {
            zlistx_detach_cur (self->held);
            zlistx_add_end (self->sendq, out);
        }
}

void
keel_broker_mark_held_alone (keel_broker_t *self, uint64_t mirrored)
{
    s_take_outbox (self);
    for (keel_core_out_t *out = zlistx_first (self->held); out; out = zlistx_next (self->held)) {
        if (out->seq <= mirrored)
            continue;
        keel_error_t err;
        keel_env_t *env =
            keel_wire_decode (zframe_data (out->payload), zframe_size (out->payload), &err);
        if (env && env->body_case == KEEL__ENVELOPE__BODY_ACCEPTED) {
            env->accepted->has_alone = true;
            env->accepted->alone = true;
            zframe_t *again = keel_wire_encode (env);
            if (again) {
                zframe_destroy (&out->payload);
                out->payload = again;
            }
        }
        keel_wire_free (&env);
    }
}

// Every commit up to seq is durable in this store.
static void
s_synced (keel_broker_t *self, uint64_t seq)
{
    if (seq > self->local_synced)
        self->local_synced = seq;
    keel_broker_release (self);
}

// The syncer failed to flush: what the WAL holds cannot be trusted to be
// on disk. Nothing held is ever sent; the loop stops and the broker exits
// non-zero. Drivers and engines keep what was not acknowledged and bring
// it to the restarted broker or to a failover broker.
static void
s_sync_failed (keel_broker_t *self, const keel_error_t *err)
{
    KEEL_ERROR ("broker",
                "%s; stopping without acknowledging anything more "
                "(restart the broker: it recovers from the store)",
                err->text);
    keel_core_sync_failed (self->core);
    self->fatal = true;
    self->stop = true;
    s_take_outbox (self);
    zlistx_purge (self->held);
}

// Reads the store's answers (without waiting) and releases what the
// commits now durable held.
static void
s_collect (keel_broker_t *self)
{
    if (self->fatal)
        return;
    keel_error_t broken = { "" };
    if (keel_store_broken (self->store, &broken)) {
        s_sync_failed (self, &broken);
        return;
    }
    for (uint64_t f = keel_store_flushes (self->store); self->flushes_seen < f;
         self->flushes_seen++)
        keel_core_count_sync (self->core); // the writer's flushes, in store_syncs
    if (self->metrics) {                   // the writer's commits, in keel_store_commit_seconds
        uint64_t us[64];
        size_t n;
        while ((n = keel_store_commit_times (self->store, us, 64)) > 0)
            for (size_t i = 0; i < n; i++)
                keel_metrics_store_commit (self->metrics, us[i]);
    }
    if (!self->nanswers) {
        // Transactions of the store's own (a member's lease renewal) are
        // answered too: read, or the poller wakes for them for ever.
        if (keel_store_answer_fd (self->store) >= 0)
            keel_store_collect (self->store, NULL);
        return;
    }
    keel_error_t err = { "" };
    uint64_t confirmed = keel_store_collect (self->store, &err);
    size_t n = 0;
    uint64_t seq = 0;
    while (n < self->nanswers && self->answers[n].turn <= confirmed)
        seq = self->answers[n++].seq;
    if (!n)
        return;
    memmove (self->answers, self->answers + n, (self->nanswers - n) * sizeof *self->answers);
    self->nanswers -= n;
    s_synced (self, seq);
}

// A commit of a store that answers later: durable once its turn is.
static void
s_await_answer (keel_broker_t *self, uint64_t seq)
{
    uint64_t turn = keel_store_issued (self->store);
    if (!self->nanswers && turn <= keel_store_collect (self->store, NULL)) {
        s_synced (self, seq);
        return;
    }
    if (self->nanswers == self->answers_cap) {
        size_t cap = self->answers_cap ? self->answers_cap * 2 : 16;
        void *grown = realloc (self->answers, cap * sizeof *self->answers);
        if (!grown) {
            keel_error_t err;
            keel_error_set (&err, KEEL_ERR_NOMEM, "out of memory waiting for the store");
            s_sync_failed (self, &err);
            return;
        }
        self->answers = grown;
        self->answers_cap = cap;
    }
    self->answers[self->nanswers].turn = turn;
    self->answers[self->nanswers].seq = seq;
    self->nanswers++;
    s_collect (self);
}

// Keeps the loop's poller on the store's answer socket (it changes when
// the store reconnects).
static void
s_watch_store (keel_broker_t *self, zpoller_t *poller)
{
    int fd = keel_store_answer_fd (self->store);
    if (fd == *self->store_fd)
        return;
    if (*self->store_fd >= 0)
        zpoller_remove (poller, self->store_fd);
    *self->store_fd = fd;
    if (fd >= 0 && zpoller_add (poller, self->store_fd) != 0)
        *self->store_fd = -1; // polled again next turn; answers are read each turn anyway
}

static void
s_recv_syncer (keel_broker_t *self)
{
    while (self->syncer && !self->fatal && keel_broker_quiet_readable (&self->syncer_q)) {
        uint64_t seq = 0;
        keel_error_t err = { "" };
        keel_core_count_sync (self->core);
        if (keel_syncer_recv (self->syncer, &seq, &err) != KEEL_OK)
            s_sync_failed (self, &err);
        else
            s_synced (self, seq);
    }
}

// Makes every commit so far durable before returning (blocking).
static void
s_sync_now (keel_broker_t *self)
{
    uint64_t commit_seq = self->commit_seq;
    if (self->fatal || keel_core_synced_seq (self->core) >= commit_seq)
        return;
    if (!self->syncer) {
        // A store that answers later: wait for the answer (bounded). A lost
        // one is not fatal: the store sends that commit again.
        keel_error_t err = { "" };
        if (self->nanswers) {
            keel_store_sync (self->store, &err);
            s_collect (self);
        }
        return;
    }
    keel_error_t err = { "" };
    keel_core_count_sync (self->core);
    if (keel_store_sync (self->store, &err) != KEEL_OK)
        s_sync_failed (self, &err);
    else
        s_synced (self, commit_seq);
}

// ---------------------------------------------------------------- commits

keel_err
keel_broker_commit_now (keel_broker_t *self, keel_error_t *err)
{
    keel_changes_t *changes = keel_core_changes (self->core);
    keel_broker_pair_stamp (self->pair, changes);
    int64_t start = zclock_usecs ();
    keel_err rc = keel_store_apply_all (self->store, changes);
    if (rc == KEEL_OK)
        rc = keel_store_commit (self->store, err);
    if (rc != KEEL_OK) {
        keel_error_set (err, rc, "%s", keel_store_last_error (self->store));
        keel_store_rollback (self->store);
    }
    else if (self->metrics)
        keel_metrics_store_commit (self->metrics, (uint64_t) (zclock_usecs () - start));
    if (rc == KEEL_OK)
        keel_broker_pair_committed (self->pair, changes);
    keel_changes_clear (changes);
    if (rc == KEEL_OK)
        keel_broker_pair_stream (self->pair, self->commit_seq);
    return rc;
}

// The WAL is due a checkpoint: the syncer's checkpointer makes it, off the
// loop (syncer.h). Failures are said at most once a minute (a failing one
// is asked again at every commit); the commits then checkpoint the WAL on
// the loop past KEEL_STORE_SQLITE_WAL_FORCE.
static void
s_checkpoint (keel_broker_t *self)
{
    uint64_t failed = 0;
    keel_syncer_checkpoints (self->syncer, &failed);
    int64_t now = zclock_mono ();
    if (failed > self->checkpoints_failed
        && (!self->checkpoint_warned_at || now - self->checkpoint_warned_at >= 60000)) {
        KEEL_WARN ("broker",
                   "store checkpoint failed (%" PRIu64 " so far); the WAL grows until a commit "
                   "checkpoints it",
                   failed);
        self->checkpoints_failed = failed;
        self->checkpoint_warned_at = now;
    }
    keel_syncer_checkpoint (self->syncer);
}

// Commits the turn's journal. Returns true on success. Acceptances and
// engine acknowledgements are sent only after a commit that succeeded (and
// is durable); a failed commit undoes the turn's new submissions and
// refuses them.
static bool
s_commit (keel_broker_t *self)
{
    keel_error_t err = { "" };
    keel_changes_t *changes = keel_core_changes (self->core);
    bool wrote = false;
    int64_t start = zclock_usecs ();
    keel_err rc = keel_core_prepare_commit (self->core, &wrote);
    if (rc == KEEL_OK) {
        keel_broker_pair_stamp (self->pair, changes);
        rc = keel_store_apply_all (self->store, changes);
    }
    if (rc == KEEL_OK)
        rc = keel_store_commit_async (self->store, &err);
    if (rc != KEEL_OK) {
        if (!err.text[0]) // a failed write says why in last_error; a failed COMMIT in err
            snprintf (err.text, sizeof err.text, "%s", keel_store_last_error (self->store));
        keel_store_rollback (self->store);
    }
    else if (self->metrics && !keel_store_has_writer (self->store)) // the writer's: s_collect
        keel_metrics_store_commit (self->metrics, (uint64_t) (zclock_usecs () - start));
    if (rc == KEEL_OK)
        keel_broker_pair_committed (self->pair, changes);
    keel_store_hand_over (self->store, changes); // to the store's writer, if it has one
    if (rc != KEEL_OK) {
        keel_core_commit_failed (self->core, err.text[0] ? err.text : "store commit failed");
        return false;
    }
    bool sync_now = keel_core_sync_now (self->core);
    uint64_t seq = self->commit_seq = keel_core_committed (self->core, wrote);
    // The pair's update carries this commit: its messages wait for the
    // peer's acknowledgement of it too.
    keel_broker_pair_stream (self->pair, seq);
    if (self->syncer && keel_store_checkpoint_due (self->store))
        s_checkpoint (self);
    if (self->syncer && seq > keel_core_synced_seq (self->core)) {
        keel_syncer_request (self->syncer, seq);
        self->syncer_q.touched = true; // it may have sent on the pipe
        if (keel_syncer_failed (self->syncer)) {
            keel_error_t gone;
            keel_error_set (&gone, KEEL_ERR_STORE, "the store's sync thread is gone");
            s_sync_failed (self, &gone);
        }
    }
    else
        s_await_answer (self, seq);
    if (sync_now)
        s_sync_now (self);
    return true;
}

void
keel_broker_commit_pending (keel_broker_t *self)
{
    if (keel_core_uncommitted (self->core))
        s_commit (self);
    s_flush (self);
}

void
keel_broker_flush (keel_broker_t *self)
{
    s_sync_now (self);
    s_flush (self);
}

// ---------------------------------------------------------------- the turn

static void
s_clock (keel_broker_t *self)
{
    keel_core_clock (self->core, zclock_mono (), zclock_time ());
}

// Receives one frame without waiting into msg (initialised here). Returns
// false when nothing is waiting.
static bool
s_recv_frame (void *sock, zmq_msg_t *msg, int flags)
{
    zmq_msg_init (msg);
    if (zmq_msg_recv (msg, sock, flags) >= 0)
        return true;
    zmq_msg_close (msg);
    return false;
}

// Reads every waiting message (bounded per turn) without asking the socket
// for its events between messages: a receive that would block ends the
// batch.
static void
s_recv_router (keel_broker_t *self)
{
    void *sock = zsock_resolve (self->router);
    for (int i = 0; i < KEEL_TURN_MAX_MESSAGES; i++) {
        zmq_msg_t head, body;
        if (!s_recv_frame (sock, &head, ZMQ_DONTWAIT))
            break;
        s_clock (self);
        size_t frames = 1;
        bool have_body = zmq_msg_more (&head) && s_recv_frame (sock, &body, 0);
        if (have_body) {
            frames++;
            // Extra frames: counted, dropped.
            for (int more = zmq_msg_more (&body); more; frames++) {
                zmq_msg_t extra;
                if (!s_recv_frame (sock, &extra, 0))
                    break;
                more = zmq_msg_more (&extra);
                zmq_msg_close (&extra);
            }
        }
        if (frames != 2)
            keel_core_malformed (self->core, "expected 2 frames (routing id + message), got %zu",
                                 frames);
        else {
            zframe_t *route = zframe_new (zmq_msg_data (&head), zmq_msg_size (&head));
            const char *principal = "";
            keel_error_t err;
            keel_env_t *env = keel_wire_decode (zmq_msg_data (&body), zmq_msg_size (&body), &err);
            if (!env)
                keel_core_malformed (self->core, "%s", err.text);
            else if (!keel_broker_security_allows (self, &body, env, &principal))
                ; // refused: counted and logged
            else if (route && !keel_broker_member_serving (self->member))
                keel_broker_member_refuse (self->member, route);
            else if (route && env->body_case == KEEL__ENVELOPE__BODY_DRIVER_HELLO
                     && !keel_broker_member_admit_hello (self->member, route, env->driver_hello))
                ; // sent to the member whose work it is, or held back for a takeover
            else if (route && env->body_case == KEEL__ENVELOPE__BODY_ENGINE_LOGIN
                     && !keel_broker_member_admit_login (self->member, route, env->engine_login))
                ; // the same for an engine carrying another member's tasks
            else if (route
                     && (keel_broker_pair_serving (self->pair)
                         || keel_broker_pair_client (self->pair, route, env, principal))) {
                // The core now serving (a takeover may just have replaced it)
                // learns who sent the message.
                keel_core_principal (self->core, principal);
                keel_core_message (self->core, route, env);
            }
            keel_wire_free (&env);
            zframe_destroy (&route);
        }
        zmq_msg_close (&head);
        if (have_body)
            zmq_msg_close (&body);
    }
}

static void
s_recv_admin (keel_broker_t *self)
{
    for (int i = 0; i < 64; i++) {
        if (!keel_broker_quiet_readable (&self->admin_q))
            break;
        zmsg_t *msg = zmsg_recv (self->admin);
        if (!msg)
            break;
        if (!keel_broker_security_admin_allows (self, msg)) {
            zmsg_destroy (&msg);
            continue;
        }
        zlistx_add_end (self->admin_queue, msg);
    }
}

static void
s_answer_admin (keel_broker_t *self)
{
    zmsg_t *msg;
    while ((msg = zlistx_first (self->admin_queue))) {
        zlistx_detach_cur (self->admin_queue);
        keel_broker_admin (self, msg); // marks admin_q touched when it replies
        zmsg_destroy (&msg);
    }
}

static int64_t
s_poll_timeout (keel_broker_t *self)
{
    if (zlistx_size (self->sendq))
        return 0;
    keel_core_clock (self->core, zclock_mono (), zclock_time ());
    int64_t wait = keel_broker_serving (self) ? keel_core_wait_ms (self->core) : 1000;
    if (self->member) {
        int64_t member = keel_broker_member_wait_ms (self->member);
        if (member < wait)
            wait = member;
    }
    if (self->pair) {
        int64_t pair = keel_broker_pair_wait_ms (self->pair);
        if (pair < wait)
            wait = pair;
    }
    int64_t metrics = keel_broker_metrics_wait_ms (self);
    if (metrics >= 0 && metrics < wait)
        wait = metrics;
    return wait;
}

// One loop turn. Returns false when the loop should end.
static bool
s_turn (keel_broker_t *self, zpoller_t *poller)
{
    s_watch_store (self, poller);
    zpoller_wait (poller, keel_broker_quiet_pending (self) ? 0 : (int) s_poll_timeout (self));
    if (zpoller_terminated (poller) || zsys_interrupted)
        return false;
    keel_broker_quiet_look (self);
    s_clock (self);
    keel_broker_security_turn (self);
    s_collect (self);
    // A pair's links first: a peer that took over while this broker was
    // paused demotes it before it serves anything.
    if (self->pair)
        keel_broker_pair_turn (self->pair);
    // A member back from a pause checks that the store is still its own
    // before it serves anything; a member may take another's work over here.
    if (self->member)
        keel_broker_member_turn (self->member);
    if (keel_broker_serving (self))
        keel_core_turn_begin (self->core);
    s_recv_syncer (self);
    s_recv_admin (self);
    s_recv_router (self); // a client's message may make a pair's broker take over
    if (!keel_broker_serving (self)) {
        s_answer_admin (self);
        keel_broker_metrics_turn (self);
        return !self->stop;
    }
    keel_core_t *core = self->core;
    s_clock (self);
    keel_core_timers (core);
    // Results go to drivers at once, before the commit: the application
    // sees each result once because the driver keeps the first copy of each
    // task, and the engine keeps its copy until a commit makes the result
    // durable here (its acknowledgement goes out after that commit).
    keel_core_send_results (core);
    if (keel_core_sync_now (core)) {
        // A login DROPs an engine's copy of a result: nothing of this turn
        // leaves before its commit is durable.
        if (keel_core_commit_due (core))
            s_commit (self);
        keel_core_dispatch (core);
        s_flush (self);
    }
    else {
        // Dispatch first, then commit: the engines start while the store
        // writes. A task accepted this turn may be dispatched before its
        // commit (the commit is due in this same turn because its driver
        // waits for Accepted); if that commit fails, the turn's new tasks
        // are undone and their executions cancelled (core.c). An
        // assignment needs no durability of its own: an engine running a
        // task the store does not show as running claims it at login, and
        // a driver without Accepted submits the task again.
        keel_core_dispatch (core);
        s_flush (self);
        if (keel_core_commit_due (core))
            s_commit (self);
        s_flush (self);
    }
    s_answer_admin (self);
    s_flush (self);
    keel_broker_metrics_turn (self);
    return !self->stop;
}

static void
s_say_serving (keel_broker_t *self)
{
    char store[512];
    keel_store_safe_uri (keel_broker_cfg_Store (self->settings), store, sizeof store);
    KEEL_INFO ("broker", "serving name=%s endpoint=%s admin=%s epoch=%llu",
               keel_core_name (self->core), keel_broker_cfg_Endpoint (self->settings),
               keel_broker_cfg_AdminEndpoint (self->settings),
               (unsigned long long) keel_core_epoch (self->core));
    KEEL_JOURNAL ("serving", .epoch = (int64_t) keel_core_epoch (self->core),
                  .text = keel_core_name (self->core), .output = store,
                  .output_len = strlen (store));
}

keel_err
keel_broker_run (keel_broker_t *self)
{
    zpoller_t *poller = zpoller_new (self->router, NULL);
    if (!poller)
        return KEEL_ERR_NOMEM;
    if (keel_broker_quiet_set (&self->admin_q, self->admin, poller) != 0
        || keel_broker_quiet_set (&self->syncer_q,
                                  self->syncer ? keel_syncer_actor (self->syncer) : NULL, poller)
               != 0
        || keel_broker_quiet_set (&self->zap_q, self->zap ? keel_zap_actor (self->zap) : NULL,
                                  poller)
               != 0) {
        zpoller_destroy (&poller);
        return KEEL_ERR_NOMEM;
    }
    if (self->pair && keel_broker_pair_poll_on (self->pair, poller) != 0) {
        zpoller_destroy (&poller);
        return KEEL_ERR_NOMEM;
    }
    self->poller = poller;
    s_clock (self);
    keel_core_turn_begin (self->core); // the pause clock starts now
    if (self->pair)
        KEEL_INFO ("broker",
                   "listening name=%s endpoint=%s admin=%s PairRole=%s: serving once active",
                   keel_core_name (self->core), keel_broker_cfg_Endpoint (self->settings),
                   keel_broker_cfg_AdminEndpoint (self->settings),
                   keel_broker_cfg_PairRole (self->settings));
    else if (!keel_broker_serving (self))
        KEEL_INFO ("broker",
                   "listening name=%s endpoint=%s admin=%s: standing by, serving once the"
                   " member that serves the store is gone",
                   keel_core_name (self->core), keel_broker_cfg_Endpoint (self->settings),
                   keel_broker_cfg_AdminEndpoint (self->settings));
    else
        s_say_serving (self);
    while (s_turn (self, poller))
        ;
    zpoller_destroy (&poller);
    self->admin_q.sock = self->syncer_q.sock = self->zap_q.sock = NULL; // in no poller now
    if (self->fatal) {
        s_take_outbox (self);
        zlistx_purge (self->sendq);
        KEEL_INFO ("broker", "stopping after a store failure");
        return KEEL_ERR_STORE;
    }
    self->poller = NULL;
    // A clean stop leaves nothing uncommitted and nothing unsent.
    if (keel_broker_serving (self) && keel_core_uncommitted (self->core))
        s_commit (self);
    s_sync_now (self);
    s_flush (self);
    KEEL_INFO ("broker", "stopping");
    return self->fatal ? KEEL_ERR_STORE : KEEL_OK;
}

bool
keel_broker_serving (const keel_broker_t *self)
{
    return keel_broker_pair_serving (self->pair) && keel_broker_member_serving (self->member);
}

void
keel_broker_stop (keel_broker_t *self)
{
    self->stop = true;
}

// ---------------------------------------------------------------- lifecycle

static zsock_t *
s_bind_router (const keel_security_t *security, const char *domain, const char *endpoint,
               int64_t max_msg, keel_error_t *err, const char *key)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    if (!sock) {
        keel_error_set (err, KEEL_ERR_IO, "cannot create a ZeroMQ socket");
        return NULL;
    }
    keel_security_server (sock, security, domain);
    zsock_set_router_mandatory (sock, 1);
    zsock_set_router_handover (sock, 1);
    zsock_set_maxmsgsize (sock, (int) (max_msg > INT32_MAX ? INT32_MAX : max_msg));
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_linger (sock, 0);
    if (zsock_bind (sock, "%s", endpoint) < 0) {
        keel_error_set (err, KEEL_ERR_CONFIG, "%s: cannot bind '%s': %s", key, endpoint,
                        zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

// Rebuilds the core's state from the store and commits the new epoch.
static keel_err
s_recover (keel_broker_t *self, keel_error_t *err)
{
    uint64_t epoch = 0, seq = 0;
    keel_store_meta_get (self->store, "epoch", &epoch);
    keel_store_meta_get (self->store, "execution_seq", &seq);
    // A pair's broker never takes an epoch its peer has served with.
    if (keel_broker_pair_epoch_floor (self->pair) > epoch)
        epoch = keel_broker_pair_epoch_floor (self->pair);
    keel_core_recover_begin (self->core, epoch, seq);
    keel_err rc = keel_store_load (self->store, keel_core_loader (), self->core, err);
    if (rc != KEEL_OK)
        return rc;
    keel_core_recover_end (self->core);
    rc = keel_broker_commit_now (self, err);
    if (rc != KEEL_OK)
        return rc;
    keel_core_recover_done (self->core);
    return KEEL_OK;
}

static keel_err
s_start_syncer (keel_broker_t *self, keel_error_t *err)
{
    // A SQLite store writes on its own thread (store_writer.h): it flushes
    // too, and this broker then needs no syncer (sync_fd says -1).
    if (strcmp (keel_broker_cfg_StoreWriter (self->settings), "thread") == 0
        && keel_store_start_writer (self->store, keel_broker_cfg_StoreSyncInterval (self->settings),
                                    err)
               != KEEL_OK)
        return KEEL_ERR_STORE;
    if (keel_store_sync_fd (self->store) < 0)
        return KEEL_OK;
    self->syncer =
        keel_syncer_new (keel_store_sync_fd (self->store), keel_store_checkpoint_path (self->store),
                         keel_broker_cfg_StoreSyncInterval (self->settings));
    if (!self->syncer)
        return keel_error_set (err, KEEL_ERR_NOMEM, "cannot start the store sync thread");
    keel_store_checkpoints_elsewhere (self->store, true); // the syncer's from now on
    if (keel_broker_quiet_set (&self->syncer_q, keel_syncer_actor (self->syncer), self->poller)
        != 0)
        return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
    return KEEL_OK;
}

static void
s_stop_syncer (keel_broker_t *self)
{
    keel_broker_quiet_set (&self->syncer_q, NULL, self->poller);
    keel_syncer_destroy (&self->syncer);
    self->flushes_seen = 0; // a new writer counts from 0
    if (self->store) {
        keel_store_stop_writer (self->store);
        keel_store_checkpoints_elsewhere (self->store, false);
    }
}

// A fresh core with nothing in it (a pair's broker that does not serve).
static keel_err
s_empty_core (keel_broker_t *self, keel_error_t *err)
{
    keel_core_destroy (&self->core);
    self->core = keel_core_new (self->settings, zclock_mono (), zclock_time ());
    if (self->core) {
        keel_core_set_metrics (self->core, self->metrics); // NULL: off
        if (self->store) {
            keel_core_set_member (self->core, keel_store_member_id (self->store));
            keel_core_set_whole_rows (self->core, keel_store_whole_row_max (self->store));
        }
    }
    self->commit_seq = 0;
    self->local_synced = 0;
    if (!self->core)
        return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
    return KEEL_OK;
}

keel_err
keel_broker_activate (keel_broker_t *self, keel_error_t *err)
{
    keel_err rc = s_empty_core (self, err);
    if (rc == KEEL_OK)
        rc = s_recover (self, err);
    if (rc == KEEL_OK)
        rc = s_start_syncer (self, err);
    if (rc != KEEL_OK)
        return rc;
    keel_core_set_pair_peer (self->core, keel_broker_pair_peer_endpoint (self->pair));
    s_clock (self);
    keel_core_turn_begin (self->core);
    s_say_serving (self);
    return KEEL_OK;
}

void
keel_broker_deactivate (keel_broker_t *self)
{
    // The end of serving, for the checks (docs/reliability.md): the epoch
    // this broker served under, journaled before anything is dropped.
    char store[512];
    keel_store_safe_uri (keel_broker_cfg_Store (self->settings), store, sizeof store);
    KEEL_JOURNAL ("passive", .epoch = (int64_t) keel_core_epoch (self->core),
                  .text = keel_core_name (self->core), .output = store,
                  .output_len = strlen (store));
    // Nothing held for the mirror may leave: the peer that is active now
    // does not have it. Drivers and engines keep what was not acknowledged.
    s_take_outbox (self);
    zlistx_purge (self->sendq);
    zlistx_purge (self->held);
    self->nanswers = 0; // what they held is gone with it
    s_stop_syncer (self);
    keel_error_t err;
    if (s_empty_core (self, &err) != KEEL_OK) {
        KEEL_ERROR ("broker", "%s; stopping", err.text);
        self->stop = true;
    }
    KEEL_INFO ("broker", "not serving: %s", self->pair ? "passive" : "standing by");
}

const char *
keel_broker_store_path (const keel_broker_t *self)
{
    const char *uri = keel_broker_cfg_Store (self->settings);
    return strncmp (uri, "sqlite:", 7) == 0 ? uri + 7 : uri;
}

keel_broker_t *
keel_broker_new (keel_settings_t *settings, keel_error_t *err)
{
    keel_broker_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->settings = settings;
    self->hup_fd = -1;
    self->core = keel_core_new (settings, zclock_mono (), zclock_time ());
    self->store_fd = calloc (1, KEEL_FD_BOX);
    if (self->store_fd)
        *self->store_fd = -1;
    // Each allocated, whatever the others did: keel_broker_destroy frees all three.
    bool admin_q = keel_broker_quiet_new (&self->admin_q);
    bool syncer_q = keel_broker_quiet_new (&self->syncer_q);
    bool zap_q = keel_broker_quiet_new (&self->zap_q);
    self->sendq = zlistx_new ();
    self->held = zlistx_new ();
    self->admin_queue = zlistx_new ();
    if (!self->core || !self->sendq || !self->held || !self->admin_queue || !self->store_fd
        || !admin_q || !syncer_q || !zap_q) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        keel_broker_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->sendq, s_out_destroy);
    zlistx_set_destructor (self->held, s_out_destroy);

    keel_store_sync_t sync = strcmp (keel_broker_cfg_StoreSync (settings), "normal") == 0
                                 ? KEEL_STORE_SYNC_NORMAL
                                 : KEEL_STORE_SYNC_FULL;
    self->store = keel_store_open (keel_broker_cfg_Store (settings), sync, err);
    if (!self->store) {
        keel_error_prefix (err, "Store");
        keel_broker_destroy (&self);
        return NULL;
    }
    // The keys and the ZAP handler before any socket binds (the pair's too).
    if (keel_broker_security_start (self, err) != KEEL_OK) {
        keel_broker_destroy (&self);
        return NULL;
    }
    err->text[0] = 0;
    self->pair = keel_broker_pair_new (self, err);
    if (!self->pair && err->text[0]) {
        keel_broker_destroy (&self);
        return NULL;
    }
    self->member = keel_broker_member_new (self, err);
    if (!self->member && err->text[0]) {
        keel_broker_destroy (&self);
        return NULL;
    }
    // A pair's broker rebuilds its core from the store only when it
    // becomes active (keel_broker_activate).
    keel_core_set_member (self->core, keel_store_member_id (self->store));
    keel_core_set_whole_rows (self->core, keel_store_whole_row_max (self->store));
    if (keel_broker_serving (self)
        && (s_recover (self, err) != KEEL_OK || s_start_syncer (self, err) != KEEL_OK)) {
        keel_broker_destroy (&self);
        return NULL;
    }
    keel_broker_member_tell_core (self->member);
    self->router =
        s_bind_router (&self->security, KEEL_ZAP_DOMAIN_CLIENT, keel_broker_cfg_Endpoint (settings),
                       keel_broker_cfg_MaxMessageSize (settings), err, "Endpoint");
    if (!self->router) {
        keel_broker_destroy (&self);
        return NULL;
    }
    self->admin =
        s_bind_router (&self->security, KEEL_ZAP_DOMAIN_ADMIN,
                       keel_broker_cfg_AdminEndpoint (settings), 1024 * 1024, err, "AdminEndpoint");
    if (!self->admin) {
        keel_broker_destroy (&self);
        return NULL;
    }
    if (keel_broker_metrics_start (self, err) != KEEL_OK) {
        keel_broker_destroy (&self);
        return NULL;
    }
    KEEL_INFO ("broker", "store %s", keel_store_describe (self->store));
    if (!keel_store_durable (self->store))
        KEEL_WARN ("broker", "Store=memory: nothing survives a broker restart");
    return self;
}

void
keel_broker_destroy (keel_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_broker_t *self = *self_p;
    keel_broker_metrics_stop (self); // its thread stops before anything it shows goes
    if (self->router && self->core) {
        // Send what the last turn left, then close without lingering.
        s_flush (self);
    }
    keel_broker_pair_destroy (&self->pair);
    keel_broker_member_destroy (&self->member);
    zsock_destroy (&self->router);
    zsock_destroy (&self->admin);
    keel_broker_security_stop (self); // after every socket it answered for
    if (self->admin_queue) {
        zmsg_t *msg;
        while ((msg = zlistx_first (self->admin_queue))) {
            zlistx_detach_cur (self->admin_queue);
            zmsg_destroy (&msg);
        }
        zlistx_destroy (&self->admin_queue);
    }
    zlistx_destroy (&self->sendq);
    zlistx_destroy (&self->held);
    free (self->answers);
    free (self->store_fd);
    free (self->admin_q.fd);
    free (self->syncer_q.fd);
    free (self->zap_q.fd);
    keel_core_destroy (&self->core);
    keel_syncer_destroy (&self->syncer); // before the store: it syncs its WAL
    keel_store_destroy (&self->store);
    free (self);
    *self_p = NULL;
}
