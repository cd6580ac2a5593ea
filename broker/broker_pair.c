/*  broker_pair.c — the loop's side of a resilient pair. See broker_pair.h
    for the links, the stream and the durability rule; pair.h for who
    serves.
*/
#include "broker_pair.h"

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

#define S_CHUNK          (1024 * 1024)      // snapshot bytes per PairSnapshot
#define S_MAX_VOTES      256                // client messages kept while the peer is in doubt
#define S_RECENT_BYTES   (64 * 1024 * 1024) // updates kept for a returning peer's catch-up
#define S_RECENT_COUNT   100000
#define S_MAX_PAIR_READS 4096 // pair messages read per turn

typedef struct {
    uint64_t seq;        // pair update number
    uint64_t prev_epoch; // epoch of update seq - 1 (catch-up matches on it)
    uint64_t core_seq;   // the core's commit it carries
    zframe_t *frame;     // the encoded PairUpdate
} s_update_t;

struct _keel_broker_pair_t {
    keel_broker_t *broker;
    keel_pair_t *fsm;
    int nlinks;
    char *own[KEEL_PAIR_MAX_LINKS];    // PairEndpoint entries
    char *peers[KEEL_PAIR_MAX_LINKS];  // PairPeer entries
    zsock_t *in[KEEL_PAIR_MAX_LINKS];  // ROUTER bound on own[i]: the peer's messages
    zsock_t *out[KEEL_PAIR_MAX_LINKS]; // DEALER to peers[i]: ours
    zframe_t *peer_route[KEEL_PAIR_MAX_LINKS];
    const char *role;       // "primary" / "backup"
    const char *own_conf;   // PairEndpoint as configured
    const char *peer_conf;  // PairPeer as configured
    const char *advertised; // AdvertisedEndpoint (default Endpoint)
    char peer_advertised[256];
    char peer_name[128];
    char peer_admin[256];
    int64_t heartbeat_ms;
    int64_t timeout_ms;
    int64_t now;
    int64_t next_beat;
    int64_t last_turn;
    uint64_t applied_seq, applied_epoch;  // this store's last update
    uint64_t peer_epoch_max;              // highest epoch heard from the peer
    uint64_t incarnation;                 // this process, in its heartbeats
    uint64_t beats;                       // heartbeats sent (all links)
    uint64_t peer_incarnation, peer_beat; // the newest heartbeat heard
    // Active side.
    uint64_t stamped_seq; // the update number of the commit under way
    bool attached;        // the peer gets the stream; acknowledgements wait for it
    bool peer_synced;     // it acked everything up to attach_seq
    uint64_t attach_seq;
    uint64_t acked_seq;
    zlistx_t *unacked; // s_update_t *, in order: streamed, not acked by the attached peer
    // The updates before them, kept so that a peer that comes back (a
    // restart, a cut link) catches up from its store's last update instead
    // of taking a snapshot: up to S_RECENT_BYTES / S_RECENT_COUNT.
    zlistx_t *recent;
    size_t recent_bytes;
    s_update_t *pending; // encoded, numbered by keel_broker_pair_stream
    int data_link;       // link the stream goes on, -1: none up
    uint64_t snapshot_id;
    uint64_t last_request_seq, last_request_epoch; // the last PairSyncRequest answered
    bool last_request_full;
    int64_t last_request_at;
    // Passive side.
    keel_changes_t *incoming; // updates read this turn, applied in one transaction
    uint64_t incoming_seq, incoming_epoch;
    int64_t sync_asked_at;
    uint64_t snap_id; // snapshot being received, 0: none
    FILE *snap_file;
    char *snap_path;
    uint64_t snap_got, snap_seq, snap_epoch;
    int64_t snap_heard;
    // Client messages that reached this broker while it did not serve and
    // the peer was in doubt (silent for more than 1.5 H): kept, not
    // answered, and served if this broker takes over (PairTimeout at
    // most), else answered Passive once the peer is heard again.
    zlistx_t *votes; // s_vote_t *
    // Planned handover. Active: asked by the passive, stops serving,
    // waits until the passive acked every update, then hands over.
    // Passive: takes over once it holds update handover_go.
    bool handing_over;
    int64_t handover_at;
    uint64_t handover_go; // 0: none
    keel_pair_counters_t counters;
    keel_ratelimit_t strangers_rl;
    keel_ratelimit_t bad_rl;
    keel_ratelimit_t refused_rl;
};

// ---------------------------------------------------------------- helpers

typedef struct {
    zframe_t *route;
    zframe_t *body; // the message, encoded again
    int64_t at;
} s_vote_t;

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

static uint64_t
s_epoch (const keel_broker_pair_t *self)
{
    if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE)
        return keel_core_epoch (self->broker->core);
    return self->applied_epoch;
}

static void
s_send (keel_broker_pair_t *self, int link, keel_env_t *env)
{
    env->has_epoch = true;
    env->epoch = s_epoch (self);
    if (link >= 0 && link < self->nlinks)
        keel_link_send (self->out[link], env, NULL);
}

// To every link (small control messages: acks, sync requests).
static void
s_send_all (keel_broker_pair_t *self, keel_env_t *env)
{
    for (int i = 0; i < self->nlinks; i++)
        s_send (self, i, env);
}

static void
s_send_frame (keel_broker_pair_t *self, int link, zframe_t *frame)
{
    if (link < 0 || link >= self->nlinks)
        return;
    zframe_t *copy = zframe_dup (frame);
    if (copy && zframe_send (&copy, self->out[link], ZFRAME_DONTWAIT) != 0)
        zframe_destroy (&copy);
}

// Acceptances say whether they are mirrored (Accepted.alone): a peer that
// is attached and in sync (acked up to the attach point) holds them.
static void
s_tell_core (keel_broker_pair_t *self)
{
    if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE)
        keel_core_set_pair_alone (self->broker->core, !(self->attached && self->peer_synced));
}

// ---------------------------------------------------------------- notify

// Runs NotifyCommand for a pair event, without waiting for it.
static void
s_notify (keel_broker_pair_t *self, const char *event, const char *detail)
{
    const char *command = keel_broker_cfg_NotifyCommand (self->broker->settings);
    KEEL_INFO ("pair", "event %s: %s", event, detail);
    if (!command || !*command)
        return;
    pid_t pid = fork ();
    if (pid == 0) {
        char epoch[32];
        snprintf (epoch, sizeof epoch, "%" PRIu64, s_epoch (self));
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
}

void
keel_broker_pair_notify (keel_broker_pair_t *self, const char *event, const char *detail)
{
    if (self)
        s_notify (self, event, detail);
}

static void
s_reap (void)
{
    for (int i = 0; i < 64 && waitpid (-1, NULL, WNOHANG) > 0; i++)
        ;
}

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
static void
s_forget_updates (keel_broker_pair_t *self)
{
    zlistx_purge (self->unacked);
    zlistx_purge (self->recent);
    self->recent_bytes = 0;
}

static void
s_detach (keel_broker_pair_t *self, const char *why)
{
    if (!self->attached)
        return;
    if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE)
        keel_broker_mark_held_alone (self->broker, keel_broker_pair_mirrored (self));
    self->attached = false;
    self->peer_synced = false;
    s_unacked_to_recent (self);
    s_tell_core (self);
    if (keel_pair_state (self->fsm) == KEEL_PAIR_ACTIVE) {
        KEEL_WARN ("pair", "%s: acknowledging on this broker's store alone (no mirror)", why);
        keel_broker_release (self->broker);
    }
}

// The first link that is up carries the stream; when it changes, every
// unacknowledged update goes again on the new one.
static void
s_choose_link (keel_broker_pair_t *self)
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
            s_send_frame (self, link, u->frame);
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
        s_detach (self, "out of memory encoding an update for the peer");
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
    s_send_frame (self, self->data_link, u->frame);
}

uint64_t
keel_broker_pair_mirrored (const keel_broker_pair_t *self)
{
    if (!self || !self->attached)
        return UINT64_MAX;
    s_update_t *first = zlistx_first (self->unacked);
    return !first ? UINT64_MAX : first->core_seq ? first->core_seq - 1 : 0;
}

static void
s_on_ack (keel_broker_pair_t *self, uint64_t seq)
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
        s_tell_core (self);
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
        env->epoch = s_epoch (self);
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
        s_send_frame (self, self->data_link, u->frame);
        self->counters.updates_sent++;
    }
    zlistx_destroy (&tail);
    return true;
}

static void
s_on_sync_request (keel_broker_pair_t *self, const Keel__PairSyncRequest *m)
{
    s_choose_link (self);
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

static void
s_ask_sync (keel_broker_pair_t *self, bool full)
{
    keel_msg_t msg;
    s_send_all (self,
                keel_msg_pair_sync_request (&msg, self->applied_seq, self->applied_epoch, full));
    self->sync_asked_at = self->now;
}

static void
s_snap_abandon (keel_broker_pair_t *self)
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
static void
s_apply_incoming (keel_broker_pair_t *self)
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
    s_send_all (self, keel_msg_pair_ack (&msg, last));
}

static void
s_on_update (keel_broker_pair_t *self, const Keel__PairUpdate *m)
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
        s_send_all (self, keel_msg_pair_ack (&msg, self->applied_seq));
        return;
    }
    if (m->seq != have + 1) {
        // At most one request per PairTimeout: a mirror that cannot store
        // what it gets (a full disk) would otherwise ask for a snapshot at
        // every update.
        s_apply_incoming (self);
        if (self->now - self->sync_asked_at >= self->timeout_ms) {
            KEEL_WARN ("pair",
                       "update %" PRIu64 " after %" PRIu64 ": a gap; asking for the stream again",
                       m->seq, have);
            s_ask_sync (self, false);
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
        s_apply_incoming (self);
        if (self->now - self->sync_asked_at >= self->timeout_ms)
            s_ask_sync (self, true);
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
    s_snap_abandon (self);
    if (rc != KEEL_OK) {
        self->counters.bad_messages++;
        KEEL_ERROR ("pair", "the peer's snapshot cannot be used: %s", err.text);
        return;
    }
    self->applied_seq = seq;
    self->applied_epoch = epoch;
    keel_pair_set_applied (self->fsm, seq, epoch);
    self->counters.snapshots_installed++;
    s_notify (self, "resynced", "installed a snapshot of the active's store");
    keel_msg_t msg;
    s_send_all (self, keel_msg_pair_ack (&msg, seq));
}

static void
s_on_snapshot (keel_broker_pair_t *self, const Keel__PairSnapshot *m)
{
    if (keel_pair_state (self->fsm) != KEEL_PAIR_PASSIVE)
        return;
    if (m->snapshot_id != self->snap_id) {
        if (m->offset != 0)
            return; // the rest of one we gave up
        s_snap_abandon (self);
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
        s_snap_abandon (self);
        s_ask_sync (self, true);
        return;
    }
    if (m->data.len && fwrite (m->data.data, 1, m->data.len, self->snap_file) != m->data.len) {
        KEEL_ERROR ("pair", "%s: %s", self->snap_path, strerror (errno));
        s_snap_abandon (self);
        return;
    }
    self->snap_got += m->data.len;
    self->snap_heard = self->now;
    if (self->snap_got == m->total)
        s_install_snapshot (self);
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
    env->epoch = s_epoch (self);
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
            if (env)
                keel_core_message (self->broker->core, v->route, env);
            keel_wire_free (&env);
        }
        else if (self->now - v->at < self->timeout_ms)
            s_send_passive (self, v->route);
        void *item = v;
        s_vote_destroy (&item);
    }
}

// ---------------------------------------------------------------- handover

static void
s_send_handover (keel_broker_pair_t *self, uint64_t seq)
{
    keel_msg_t msg;
    keel_env_t *env = keel_msg_pair_handover (&msg, seq);
    s_choose_link (self);
    if (self->data_link >= 0)
        s_send (self, self->data_link, env);
    else
        s_send_all (self, env);
}

static void s_carry_out (keel_broker_pair_t *self, keel_pair_do_t what);

static void
s_on_handover (keel_broker_pair_t *self, const Keel__PairHandover *m)
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
static void
s_handover_step (keel_broker_pair_t *self)
{
    if (self->handing_over) {
        if (self->acked_seq >= self->applied_seq && !self->pending) {
            keel_broker_flush (self->broker); // what the mirror's acks released
            self->handing_over = false;
            uint64_t seq = self->applied_seq;
            keel_pair_hand_over (self->fsm, self->now);
            s_detach (self, "handed over");
            s_forget_updates (self);
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
        s_carry_out (self, keel_pair_take_handover (self->fsm));
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

// ---------------------------------------------------------------- activation

static void
s_carry_out (keel_broker_pair_t *self, keel_pair_do_t what)
{
    switch (what) {
        case KEEL_PAIR_DO_NOTHING:
            return;
        case KEEL_PAIR_DO_ACTIVATE: {
            KEEL_INFO ("pair", "becoming active: %s", keel_pair_why (self->fsm));
            s_apply_incoming (self);
            s_snap_abandon (self);
            s_forget_updates (self);
            keel_error_t err = { "" };
            if (keel_broker_activate (self->broker, &err) != KEEL_OK) {
                KEEL_ERROR ("pair", "cannot take over: %s; stopping", err.text);
                keel_broker_stop (self->broker);
                return;
            }
            keel_pair_set_epoch (self->fsm, keel_core_epoch (self->broker->core));
            self->attached = false;
            self->peer_synced = false;
            s_tell_core (self);
            s_settle_votes (self);
            self->attached = false;
            self->data_link = -1;
            s_choose_link (self);
            self->next_beat = 0; // tell the peer at once
            return;
        }
        case KEEL_PAIR_DO_DEMOTE:
            self->counters.demotions++;
            s_detach (self, "demoted");
            s_forget_updates (self);
            keel_broker_deactivate (self->broker);
            self->next_beat = 0;
            s_ask_sync (self, false);
            return;
        case KEEL_PAIR_DO_SYNC:
            self->next_beat = 0;
            s_ask_sync (self, false);
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
                s_detach (self, "peer lost");
                break;
            case KEEL_PAIR_EV_PEER_BACK:
                snprintf (detail, sizeof detail, "peer %s heard", self->peer_conf);
                break;
            case KEEL_PAIR_EV_TOOK_OVER: {
                self->counters.takeovers++;
                snprintf (detail, sizeof detail, "took over as active at epoch %" PRIu64,
                          s_epoch (self));
                char notice[300];
                snprintf (notice, sizeof notice,
                          "failover broker %s active: took over from %s at epoch %" PRIu64,
                          keel_broker_cfg_Name (self->broker->settings),
                          self->peer_name[0] ? self->peer_name : self->peer_conf, s_epoch (self));
                keel_core_pair_notice (self->broker->core, notice);
                break;
            }
            case KEEL_PAIR_EV_DEMOTED:
                snprintf (detail, sizeof detail, "now passive: the peer is active");
                break;
            default:
                detail[0] = 0;
        }
        s_notify (self, keel_pair_event_name (ev), detail);
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
    s_carry_out (self, keel_pair_heard (self->fsm, link, &peer, self->now));
    if (was_passive && keel_pair_state (self->fsm) == KEEL_PAIR_PASSIVE
        && peer.state == KEEL_PAIR_ACTIVE) {
        // The active says whether it counts us in sync (acked up to the
        // point it attached us): only then may we take over.
        keel_pair_set_synced (self->fsm, m->synced && !self->snap_id);
        if (!m->synced && !self->snap_id && self->now - self->sync_asked_at >= self->timeout_ms)
            s_ask_sync (self, false);
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
                    s_on_update (self, env->pair_update);
                    break;
                case KEEL__ENVELOPE__BODY_PAIR_ACK:
                    s_on_ack (self, env->pair_ack->seq);
                    break;
                case KEEL__ENVELOPE__BODY_PAIR_SYNC_REQUEST:
                    s_on_sync_request (self, env->pair_sync_request);
                    break;
                case KEEL__ENVELOPE__BODY_PAIR_SNAPSHOT:
                    s_on_snapshot (self, env->pair_snapshot);
                    break;
                case KEEL__ENVELOPE__BODY_PAIR_HANDOVER:
                    s_on_handover (self, env->pair_handover);
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
        s_send (self, i, keel_msg_pair_heartbeat (&msg, &args));
    }
    self->next_beat = self->now + self->heartbeat_ms;
}

static void
s_read_all (keel_broker_pair_t *self)
{
    for (int i = 0; i < self->nlinks; i++)
        s_read_link (self, i);
    s_apply_incoming (self);
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
        s_carry_out (self, keel_pair_tick (self->fsm, self->now));
        if (self->now >= self->next_beat)
            s_beat (self);
    }
    s_carry_out (self, keel_pair_tick (self->fsm, self->now));
    s_handover_step (self);
    s_events (self);
    s_choose_link (self);
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
            s_snap_abandon (self);
        s_ask_sync (self, false);
    }
    if (self->now >= self->next_beat)
        s_beat (self);
    s_tell_core (self);
    s_reap ();
}

bool
keel_broker_pair_serving (const keel_broker_pair_t *self)
{
    return !self || (keel_pair_serving (self->fsm) && !self->handing_over);
}

bool
keel_broker_pair_client (keel_broker_pair_t *self, zframe_t *route, keel_env_t *env)
{
    self->now = zclock_mono ();
    keel_pair_do_t what = keel_pair_client (self->fsm, self->now);
    s_carry_out (self, what);
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
    return s_epoch (self);
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
s_bind (const char *endpoint, keel_error_t *err)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    if (!sock) {
        keel_error_set (err, KEEL_ERR_IO, "cannot create a ZeroMQ socket");
        return NULL;
    }
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
s_connect (const char *endpoint, keel_error_t *err)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock) {
        keel_error_set (err, KEEL_ERR_IO, "cannot create a ZeroMQ socket");
        return NULL;
    }
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
        self->in[i] = s_bind (self->own[i], err);
        self->out[i] = self->in[i] ? s_connect (self->peers[i], err) : NULL;
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
    s_snap_abandon (self);
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
