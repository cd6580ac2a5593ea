/*  broker_pair_stream.c — the stream of a resilient pair: the active's
    updates (stamped, encoded, streamed, acknowledged, kept for a peer's
    catch-up), snapshots, the passive's mirror (updates applied a turn at a
    time, snapshots installed), and the planned handover. See broker_pair.h.
*/
#include "broker_pair_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

// ---------------------------------------------------------------- the stream (active)

static void
s_recent_trim (keel_broker_pair_t *self)
{
    s_update_t *u;
    while (
        (u = zlistx_first (self->recent))
        && (self->recent_bytes > S_RECENT_BYTES || zlistx_size (self->recent) > S_RECENT_COUNT)) {
        self->recent_bytes -= zframe_size (u->frame);
        zlistx_delete (self->recent, zlistx_cursor (self->recent));
    }
}

static void
s_recent_add (keel_broker_pair_t *self, s_update_t *u)
{
    zlistx_add_end (self->recent, u);
    self->recent_bytes += zframe_size (u->frame);
    s_recent_trim (self);
}

// Every update goes back to `recent` (in order): nobody is attached.
static void
s_unacked_to_recent (keel_broker_pair_t *self)
{
    s_update_t *u;
    while ((u = zlistx_first (self->unacked))) {
        zlistx_detach_cur (self->unacked);
        s_recent_add (self, u);
    }
}

// A new history (this broker became active, or stopped being): forget it.
void
keel_bp_forget_updates (keel_broker_pair_t *self)
{
    zlistx_purge (self->unacked);
    zlistx_purge (self->recent);
    self->recent_bytes = 0;
}

void
keel_bp_detach (keel_broker_pair_t *self, const char *why)
{
    if (!self->attached)
        return;
    if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE)
        keel_broker_mark_held_alone (self->broker, keel_broker_pair_mirrored (self));
    self->attached = false;
    self->peer_synced = false;
    s_unacked_to_recent (self);
    keel_bp_tell_core (self);
    if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE) {
        KEEL_WARN ("pair", "%s: acknowledging on this broker's store alone (no mirror)", why);
        keel_broker_release (self->broker);
    }
}

// The first link that is up carries the stream; when it changes, every
// unacknowledged update goes again on the new one.
void
keel_bp_choose_link (keel_broker_pair_t *self)
{
    int link = -1;
    for (int i = 0; i < self->nlinks && link < 0; i++)
        if (keel_pair_link_up (self->fsm, i, self->now))
            link = i;
    if (link == self->data_link)
        return;
    self->data_link = link;
    if (link >= 0 && self->attached)
        for (s_update_t *u = zlistx_first (self->unacked); u; u = zlistx_next (self->unacked))
            keel_bp_send_frame (self, link, u->frame);
}

void
keel_broker_pair_stamp (keel_broker_pair_t *self, keel_changes_t *changes)
{
    if (!self || keel_pair_state (self->fsm) != KEEL_PAIR_ACTIVE)
        return;
    self->stamped_seq = self->applied_seq + 1;
    uint64_t epoch = keel_core_epoch (self->broker->core);
    keel_changes_add (changes, &(keel_change_t) { .kind = KEEL_CHANGE_META_SET,
                                                  .meta = { "pair_seq", self->stamped_seq } });
    keel_changes_add (changes, &(keel_change_t) { .kind = KEEL_CHANGE_META_SET,
                                                  .meta = { "pair_epoch", epoch } });
}

void
keel_broker_pair_committed (keel_broker_pair_t *self, keel_changes_t *changes)
{
    if (!self || !self->stamped_seq)
        return;
    uint64_t seq = self->stamped_seq;
    uint64_t prev_epoch = self->applied_epoch;
    self->stamped_seq = 0;
    self->applied_seq = seq;
    self->applied_epoch = keel_core_epoch (self->broker->core);
    keel_pair_set_applied (self->fsm, self->applied_seq, self->applied_epoch);
    // Encoded even with no peer attached: a peer that comes back catches
    // up from `recent`.
    size_t size = 0;
    uint8_t *bytes = keel_changes_encode (changes, seq, &size);
    s_update_t *u = bytes ? calloc (1, sizeof *u) : NULL;
    if (u) {
        keel_msg_t msg;
        keel_env_t *env = keel_msg_pair_update (&msg, seq, self->applied_epoch, bytes, size);
        env->has_epoch = true;
        env->epoch = self->applied_epoch;
        u->frame = keel_wire_encode (env);
        u->seq = seq;
        u->prev_epoch = prev_epoch;
    }
    free (bytes);
    if (!u || !u->frame) {
        free (u);
        keel_bp_detach (self, "out of memory encoding an update for the peer");
        return;
    }
    self->pending = u;
}

void
keel_broker_pair_stream (keel_broker_pair_t *self, uint64_t core_seq)
{
    if (!self || !self->pending)
        return;
    s_update_t *u = self->pending;
    self->pending = NULL;
    u->core_seq = core_seq;
    if (!self->attached) {
        s_recent_add (self, u);
        return;
    }
    zlistx_add_end (self->unacked, u);
    self->counters.updates_sent++;
    keel_bp_send_frame (self, self->data_link, u->frame);
}

uint64_t
keel_broker_pair_mirrored (const keel_broker_pair_t *self)
{
    if (!self || !self->attached)
        return UINT64_MAX;
    s_update_t *first = zlistx_first (self->unacked);
    return !first ? UINT64_MAX : first->core_seq ? first->core_seq - 1 : 0;
}

void
keel_bp_on_ack (keel_broker_pair_t *self, uint64_t seq)
{
    if (!self->attached || seq <= self->acked_seq)
        return;
    self->acked_seq = seq;
    self->counters.acks++;
    s_update_t *u;
    while ((u = zlistx_first (self->unacked)) && u->seq <= seq) {
        zlistx_detach_cur (self->unacked);
        s_recent_add (self, u);
    }
    if (!self->peer_synced && seq >= self->attach_seq) {
        self->peer_synced = true;
        keel_bp_tell_core (self);
        KEEL_INFO ("pair", "peer in sync at update %" PRIu64, seq);
    }
    keel_broker_release (self->broker);
}

// Sends a snapshot of this store (as of the last commit) to the peer.
static bool
s_send_snapshot (keel_broker_pair_t *self)
{
    keel_error_t err = { "" };
    char path[1024];
    snprintf (path, sizeof path, "%s.pair-out", keel_broker_store_path (self->broker));
    if (keel_store_snapshot (self->broker->store, path, &err) != KEEL_OK) {
        KEEL_ERROR ("pair", "cannot snapshot the store for the peer: %s", err.text);
        return false;
    }
    FILE *file = fopen (path, "rb");
    if (!file) {
        KEEL_ERROR ("pair", "%s: %s", path, strerror (errno));
        return false;
    }
    fseek (file, 0, SEEK_END);
    long total = ftell (file);
    fseek (file, 0, SEEK_SET);
    uint8_t *chunk = malloc (S_CHUNK);
    self->snapshot_id++;
    uint64_t id = ((uint64_t) getpid () << 32) ^ (uint64_t) zclock_time () ^ self->snapshot_id;
    bool ok = chunk && total >= 0;
    for (long offset = 0; ok && (offset < total || offset == 0);) {
        size_t n = fread (chunk, 1, S_CHUNK, file);
        if (n == 0 && offset < total) {
            ok = false;
            break;
        }
        keel_msg_t msg;
        keel_env_t *env = keel_msg_pair_snapshot (&msg, id, self->applied_seq, self->applied_epoch,
                                                  (uint64_t) offset, (uint64_t) total, chunk, n);
        env->has_epoch = true;
        env->epoch = keel_bp_epoch (self);
        zframe_t *frame = keel_wire_encode (env);
        // A snapshot must arrive whole: wait for room (bounded by the
        // socket's send timeout) rather than drop a chunk.
        if (!frame || zframe_send (&frame, self->out[self->data_link], 0) != 0) {
            zframe_destroy (&frame);
            ok = false;
        }
        offset += (long) n;
        if (n == 0)
            break;
    }
    free (chunk);
    fclose (file);
    unlink (path);
    if (ok) {
        self->counters.snapshots_sent++;
        KEEL_INFO ("pair", "sent the peer a snapshot of %ld bytes at update %" PRIu64, total,
                   self->applied_seq);
    }
    else
        KEEL_ERROR ("pair", "sending the snapshot to the peer failed");
    return ok;
}

// Catch-up: the updates after the peer's store's last (seq, epoch), when
// `recent` still holds them and that last update is ours (the update after
// it followed an update of the same epoch). Moves them to `unacked` and
// sends them. False when the peer needs a snapshot.
static bool
s_catch_up (keel_broker_pair_t *self, uint64_t seq, uint64_t epoch)
{
    s_update_t *u = zlistx_first (self->recent);
    while (u && u->seq <= seq)
        u = zlistx_next (self->recent);
    if (!u || u->seq != seq + 1 || u->prev_epoch != epoch)
        return false;
    // Everything from there on goes back to the peer's unacked stream.
    zlistx_t *tail = zlistx_new ();
    if (!tail)
        return false;
    while ((u = zlistx_last (self->recent)) && u->seq > seq) {
        zlistx_detach_cur (self->recent);
        self->recent_bytes -= zframe_size (u->frame);
        zlistx_add_start (tail, u);
    }
    while ((u = zlistx_first (tail))) {
        zlistx_detach_cur (tail);
        zlistx_add_end (self->unacked, u);
        keel_bp_send_frame (self, self->data_link, u->frame);
        self->counters.updates_sent++;
    }
    zlistx_destroy (&tail);
    return true;
}

void
keel_bp_on_sync_request (keel_broker_pair_t *self, const Keel__PairSyncRequest *m)
{
    keel_bp_choose_link (self);
    if (keel_pair_state (self->fsm) != KEEL_PAIR_ACTIVE || self->data_link < 0)
        return;
    // The same request again within PairTimeout (it also came on another
    // path): the answer is on its way; a second snapshot would only cost.
    if (self->attached && m->applied_seq == self->last_request_seq
        && m->applied_epoch == self->last_request_epoch && m->full == self->last_request_full
        && self->now - self->last_request_at < self->timeout_ms) {
        KEEL_DEBUG ("pair", "sync request from update %" PRIu64 " again: answered already",
                    m->applied_seq);
        return;
    }
    self->last_request_seq = m->applied_seq;
    self->last_request_epoch = m->applied_epoch;
    self->last_request_full = m->full;
    self->last_request_at = self->now;
    self->attached = false;
    self->peer_synced = false;
    s_unacked_to_recent (self);
    const char *how;
    if (!m->full && m->applied_seq == self->applied_seq && m->applied_epoch == self->applied_epoch)
        how = "its store is ours";
    else if (!m->full && s_catch_up (self, m->applied_seq, m->applied_epoch)) {
        how = "catch-up";
        self->counters.catch_ups++;
    }
    else if (s_send_snapshot (self))
        how = "snapshot";
    else
        return;
    self->attached = true;
    self->attach_seq = self->applied_seq;
    self->acked_seq = strcmp (how, "snapshot") == 0 ? 0 : m->applied_seq;
    self->peer_synced = self->acked_seq >= self->attach_seq;
    KEEL_INFO ("pair", "peer attached at update %" PRIu64 " (%s from its update %" PRIu64 ")",
               self->applied_seq, how, m->applied_seq);
}

// ---------------------------------------------------------------- the mirror (passive)

void
keel_bp_ask_sync (keel_broker_pair_t *self, bool full)
{
    keel_msg_t msg;
    keel_bp_send_all (
        self, keel_msg_pair_sync_request (&msg, self->applied_seq, self->applied_epoch, full));
    self->sync_asked_at = self->now;
}

void
keel_bp_snap_abandon (keel_broker_pair_t *self)
{
    if (self->snap_file)
        fclose (self->snap_file);
    self->snap_file = NULL;
    if (self->snap_path)
        unlink (self->snap_path);
    self->snap_id = 0;
    self->snap_got = 0;
}

// Applies the updates read this turn in one durable transaction, then
// acknowledges the last.
void
keel_bp_apply_incoming (keel_broker_pair_t *self)
{
    if (!self->incoming_seq)
        return;
    keel_store_t *store = self->broker->store;
    keel_error_t err = { "" };
    keel_err rc = keel_store_apply_all (store, self->incoming);
    if (rc == KEEL_OK)
        rc = keel_store_commit (store, &err);
    else {
        snprintf (err.text, sizeof err.text, "%s", keel_store_last_error (store));
        keel_store_rollback (store);
    }
    keel_changes_clear (self->incoming);
    uint64_t last = self->incoming_seq;
    self->incoming_seq = 0;
    if (rc != KEEL_OK) {
        KEEL_ERROR ("pair", "cannot apply the peer's updates to the mirror: %s", err.text);
        keel_pair_set_synced (self->fsm, false);
        return;
    }
    self->applied_seq = last;
    self->applied_epoch = self->incoming_epoch;
    keel_pair_set_applied (self->fsm, self->applied_seq, self->applied_epoch);
    keel_msg_t msg;
    keel_bp_send_all (self, keel_msg_pair_ack (&msg, last));
}

void
keel_bp_on_update (keel_broker_pair_t *self, const Keel__PairUpdate *m)
{
    if (keel_pair_state (self->fsm) != KEEL_PAIR_PASSIVE || self->snap_id)
        return;
    uint64_t have = self->incoming_seq ? self->incoming_seq : self->applied_seq;
    if (m->epoch < self->applied_epoch) {
        self->counters.stale_epoch++;
        return;
    }
    if (m->seq <= have) {
        keel_msg_t msg; // again: our ack may be lost
        keel_bp_send_all (self, keel_msg_pair_ack (&msg, self->applied_seq));
        return;
    }
    if (m->seq != have + 1) {
        // At most one request per PairTimeout: a mirror that cannot store
        // what it gets (a full disk) would otherwise ask for a snapshot at
        // every update.
        keel_bp_apply_incoming (self);
        if (self->now - self->sync_asked_at >= self->timeout_ms) {
            KEEL_WARN ("pair",
                       "update %" PRIu64 " after %" PRIu64 ": a gap; asking for the stream again",
                       m->seq, have);
            keel_bp_ask_sync (self, false);
        }
        return;
    }
    keel_error_t err = { "" };
    uint64_t batch_seq = 0;
    if (keel_changes_decode (self->incoming, m->batch.data, m->batch.len, &batch_seq, &err)
        != KEEL_OK) {
        self->counters.bad_messages++;
        KEEL_ERROR ("pair", "update %" PRIu64 " refused: %s; asking for a snapshot", m->seq,
                    err.text);
        keel_bp_apply_incoming (self);
        if (self->now - self->sync_asked_at >= self->timeout_ms)
            keel_bp_ask_sync (self, true);
        return;
    }
    self->incoming_seq = m->seq;
    self->incoming_epoch = m->epoch;
    self->counters.updates_applied++;
}

static void
s_install_snapshot (keel_broker_pair_t *self)
{
    keel_error_t err = { "" };
    fflush (self->snap_file);
    fsync (fileno (self->snap_file));
    fclose (self->snap_file);
    self->snap_file = NULL;
    keel_err rc = keel_store_check_file (self->snap_path, &err);
    if (rc == KEEL_OK)
        rc = keel_store_replace (self->broker->store, self->snap_path, &err);
    uint64_t seq = self->snap_seq, epoch = self->snap_epoch;
    keel_bp_snap_abandon (self);
    if (rc != KEEL_OK) {
        self->counters.bad_messages++;
        KEEL_ERROR ("pair", "the peer's snapshot cannot be used: %s", err.text);
        return;
    }
    self->applied_seq = seq;
    self->applied_epoch = epoch;
    keel_pair_set_applied (self->fsm, seq, epoch);
    self->counters.snapshots_installed++;
    keel_bp_notify (self, "resynced", "installed a snapshot of the active's store");
    keel_msg_t msg;
    keel_bp_send_all (self, keel_msg_pair_ack (&msg, seq));
}

void
keel_bp_on_snapshot (keel_broker_pair_t *self, const Keel__PairSnapshot *m)
{
    if (keel_pair_state (self->fsm) != KEEL_PAIR_PASSIVE)
        return;
    if (m->snapshot_id != self->snap_id) {
        if (m->offset != 0)
            return; // the rest of one we gave up
        keel_bp_snap_abandon (self);
        self->incoming_seq = 0;
        keel_changes_clear (self->incoming);
        self->snap_file = fopen (self->snap_path, "wb");
        if (!self->snap_file) {
            KEEL_ERROR ("pair", "%s: %s", self->snap_path, strerror (errno));
            return;
        }
        self->snap_id = m->snapshot_id;
        self->snap_seq = m->seq;
        self->snap_epoch = m->epoch;
        keel_pair_set_synced (self->fsm, false);
    }
    if (m->offset != self->snap_got) {
        KEEL_WARN ("pair", "snapshot chunk at %" PRIu64 ", expected %" PRIu64 ": starting again",
                   m->offset, self->snap_got);
        keel_bp_snap_abandon (self);
        keel_bp_ask_sync (self, true);
        return;
    }
    if (m->data.len && fwrite (m->data.data, 1, m->data.len, self->snap_file) != m->data.len) {
        KEEL_ERROR ("pair", "%s: %s", self->snap_path, strerror (errno));
        keel_bp_snap_abandon (self);
        return;
    }
    self->snap_got += m->data.len;
    self->snap_heard = self->now;
    if (self->snap_got == m->total)
        s_install_snapshot (self);
}

// ---------------------------------------------------------------- handover

static void
s_send_handover (keel_broker_pair_t *self, uint64_t seq)
{
    keel_msg_t msg;
    keel_env_t *env = keel_msg_pair_handover (&msg, seq);
    keel_bp_choose_link (self);
    if (self->data_link >= 0)
        keel_bp_send (self, self->data_link, env);
    else
        keel_bp_send_all (self, env);
}

void
keel_bp_on_handover (keel_broker_pair_t *self, const Keel__PairHandover *m)
{
    keel_pair_state_t state = keel_pair_state (self->fsm);
    if (state == KEEL_PAIR_ACTIVE && !self->handing_over) {
        if (!self->attached || !self->peer_synced) {
            KEEL_WARN ("pair", "the peer asked for the pair, but its mirror is not in sync: "
                               "not handing over");
            return;
        }
        // Everything in memory is committed and streamed first; from now on
        // this broker takes no more work.
        keel_broker_commit_pending (self->broker);
        self->handing_over = true;
        self->handover_at = self->now;
        KEEL_INFO ("pair", "handing over to the peer at update %" PRIu64, self->applied_seq);
    }
    else if (state == KEEL_PAIR_PASSIVE) {
        self->handover_go = m->seq ? m->seq : 1;
        KEEL_INFO ("pair", "the active hands over at update %" PRIu64, m->seq);
    }
}

// Active handing over: once the peer holds every update, the held
// acknowledgements leave and this broker becomes passive.
void
keel_bp_handover_step (keel_broker_pair_t *self)
{
    if (self->handing_over) {
        if (self->acked_seq >= self->applied_seq && !self->pending) {
            keel_broker_flush (self->broker); // what the mirror's acks released
            self->handing_over = false;
            uint64_t seq = self->applied_seq;
            keel_pair_hand_over (self->fsm, self->now);
            keel_bp_detach (self, "handed over");
            keel_bp_forget_updates (self);
            keel_broker_deactivate (self->broker);
            s_send_handover (self, seq);
            self->next_beat = 0;
        }
        else if (self->now - self->handover_at >= self->timeout_ms) {
            self->handing_over = false;
            KEEL_WARN ("pair",
                       "handover abandoned: the peer did not acknowledge update %" PRIu64
                       " within PairTimeout; serving again",
                       self->applied_seq);
        }
    }
    if (self->handover_go && keel_pair_state (self->fsm) == KEEL_PAIR_PASSIVE
        && self->applied_seq >= self->handover_go) {
        self->handover_go = 0;
        keel_bp_carry_out (self, keel_pair_take_handover (self->fsm));
    }
    if (self->handover_go && keel_pair_state (self->fsm) != KEEL_PAIR_PASSIVE)
        self->handover_go = 0;
}

keel_err
keel_broker_pair_takeover (keel_broker_pair_t *self, keel_error_t *err)
{
    if (!self)
        return keel_error_set (err, KEEL_ERR_STATE, "this broker is not in a pair (PairRole=none)");
    self->now = zclock_mono ();
    keel_pair_state_t state = keel_pair_state (self->fsm);
    if (state == KEEL_PAIR_ACTIVE)
        return keel_error_set (err, KEEL_ERR_STATE, "this broker is already the active one");
    if (state != KEEL_PAIR_PASSIVE)
        return keel_error_set (err, KEEL_ERR_STATE, "this broker is still starting");
    if (!keel_pair_peer_up (self->fsm, self->now))
        return keel_error_set (err, KEEL_ERR_STATE,
                               "the peer is lost: this broker takes over by itself when a driver "
                               "or engine turns to it");
    if (!keel_pair_synced (self->fsm))
        return keel_error_set (err, KEEL_ERR_STATE,
                               "this broker's mirror is not in sync with the active yet");
    s_send_handover (self, 0);
    KEEL_INFO ("pair", "asked the active to hand over (keel-admin takeover)");
    return KEEL_OK;
}
