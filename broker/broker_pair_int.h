/*  broker_pair_int.h — the state of a pair's loop side, shared by its two
    files: broker_pair.c (links, heartbeats, who serves, votes, status,
    lifecycle) and broker_pair_stream.c (the active's stream of updates,
    catch-up and snapshots, the passive's mirror, the planned handover).
    See broker_pair.h for what the pair does.
*/
#ifndef KEEL_BROKER_PAIR_INT_H
#define KEEL_BROKER_PAIR_INT_H

#include <czmq.h>

#include "broker_int.h"
#include "broker_pair.h"
#include "log.h"
#include "pair.h"
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
    int64_t silent_since; // the peer not heard on any link since (0: it is up)
    int64_t silent_warned;
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

// ---------------------------------------------------------------- shared between the two files

// broker_pair.c
uint64_t keel_bp_epoch (const keel_broker_pair_t *self);
void keel_bp_send (keel_broker_pair_t *self, int link, keel_env_t *env);
void keel_bp_send_all (keel_broker_pair_t *self, keel_env_t *env);
void keel_bp_send_frame (keel_broker_pair_t *self, int link, zframe_t *frame);
void keel_bp_tell_core (keel_broker_pair_t *self);
void keel_bp_notify (keel_broker_pair_t *self, const char *event, const char *detail);
void keel_bp_carry_out (keel_broker_pair_t *self, keel_pair_do_t what);

// broker_pair_stream.c: the active's side
void keel_bp_detach (keel_broker_pair_t *self, const char *why);
void keel_bp_forget_updates (keel_broker_pair_t *self);
void keel_bp_choose_link (keel_broker_pair_t *self);
void keel_bp_on_ack (keel_broker_pair_t *self, uint64_t seq);
void keel_bp_on_sync_request (keel_broker_pair_t *self, const Keel__PairSyncRequest *m);
// the passive's side
void keel_bp_ask_sync (keel_broker_pair_t *self, bool full);
void keel_bp_snap_abandon (keel_broker_pair_t *self);
void keel_bp_apply_incoming (keel_broker_pair_t *self);
void keel_bp_on_update (keel_broker_pair_t *self, const Keel__PairUpdate *m);
void keel_bp_on_snapshot (keel_broker_pair_t *self, const Keel__PairSnapshot *m);
// the planned handover
void keel_bp_on_handover (keel_broker_pair_t *self, const Keel__PairHandover *m);
void keel_bp_handover_step (keel_broker_pair_t *self);

#endif
