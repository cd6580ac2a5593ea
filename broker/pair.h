/*  pair.h — the resilient pair's state machine (DESIGN §6): who serves.

    Pure: no socket, no store, no clock. The loop (broker_pair.c) feeds it
    the peer's heartbeats (already checked to come from the configured
    peer), client requests and the time, and carries out what it returns.
    Tests drive it with invented times (tests/unit/test_pair.c).

    Roles are configured (PairRole=primary|backup); states are run-time. A
    broker starts in its role's state (PRIMARY or BACKUP: undecided), and
    becomes ACTIVE (serves drivers and engines, streams its commits) or
    PASSIVE (mirrors the active's store, answers clients with Passive).

    The peer is LOST when every link has been silent for PairTimeout (a
    link is up while it was heard within PairTimeout). Binary Star's rule
    against split brain: a passive takes over only when the peer is lost
    AND a client turned to it (a "vote": a driver or engine message reached
    it within the last PairTimeout), and only when its mirror was in sync
    when the peer was lost.

      state     event                                   result
      --------  --------------------------------------  -----------------------
      PRIMARY   peer ACTIVE                             PASSIVE, DO_SYNC
      BACKUP
      PRIMARY   peer PRIMARY/BACKUP/PASSIVE, and this    ACTIVE, DO_ACTIVATE
      BACKUP    broker's store is newer (epoch, seq),
                or equal and this is the primary
      PRIMARY   client, peer never heard or lost for     ACTIVE, DO_ACTIVATE
                PairTimeout since start (primary only:
                a backup never serves alone at start)
      ACTIVE    peer ACTIVE with a higher epoch (equal:  PASSIVE, DO_DEMOTE
                the backup yields)
      ACTIVE    peer lost                               ACTIVE (alone, event)
      ACTIVE    noticed its own pause >= PairTimeout    ACTIVE, unsure: serves
                                                        nothing until the peer
                                                        is heard or PairTimeout
                                                        passes (keel_pair_serving)
      PASSIVE   peer PRIMARY/BACKUP/PASSIVE (nobody      ACTIVE, DO_ACTIVATE
                serves), this store newer or equal and
                primary
      PASSIVE   client or tick: peer lost, a vote        ACTIVE, DO_ACTIVATE
                within PairTimeout, mirror in sync      (takeover)
      PASSIVE   client otherwise                        refuse (Passive)

    Events a person should hear of (peer lost/back, took over, demoted)
    queue in the machine; the loop drains them (keel_pair_next_event) to
    run NotifyCommand and tell drivers.
*/
#ifndef KEEL_PAIR_H
#define KEEL_PAIR_H

#include <stdbool.h>
#include <stdint.h>

#define KEEL_PAIR_MAX_LINKS 4

// Same numbers as proto PairState.
typedef enum {
    KEEL_PAIR_PRIMARY = 1,
    KEEL_PAIR_BACKUP = 2,
    KEEL_PAIR_ACTIVE = 3,
    KEEL_PAIR_PASSIVE = 4
} keel_pair_state_t;

typedef enum {
    KEEL_PAIR_DO_NOTHING = 0,
    KEEL_PAIR_DO_ACTIVATE, // rebuild the core from the store (epoch + 1) and serve
    KEEL_PAIR_DO_DEMOTE,   // stop serving, drop what waits for the mirror, resync
    KEEL_PAIR_DO_SYNC      // ask the active for its stream (PairSyncRequest)
} keel_pair_do_t;

typedef enum {
    KEEL_PAIR_EV_NONE = 0,
    KEEL_PAIR_EV_PEER_LOST,
    KEEL_PAIR_EV_PEER_BACK,
    KEEL_PAIR_EV_TOOK_OVER,
    KEEL_PAIR_EV_DEMOTED
} keel_pair_event_t;

typedef struct {
    bool primary;         // PairRole=primary
    int nlinks;           // 1..KEEL_PAIR_MAX_LINKS
    int64_t timeout_ms;   // PairTimeout
    int64_t heartbeat_ms; // HeartbeatInterval
} keel_pair_config_t;

// What a heartbeat says of its sender.
typedef struct {
    keel_pair_state_t state;
    uint64_t epoch;
    uint64_t applied_seq;   // last update in its store
    uint64_t applied_epoch; // epoch that made it
} keel_pair_peer_t;

typedef struct _keel_pair_t keel_pair_t;

// applied_seq/epoch: this broker's store (meta pair_seq, pair_epoch).
keel_pair_t *keel_pair_new (const keel_pair_config_t *config, uint64_t applied_seq,
                            uint64_t applied_epoch, int64_t now);
void keel_pair_destroy (keel_pair_t **self_p);

// Any message from the peer on link (liveness).
void keel_pair_link_heard (keel_pair_t *self, int link, int64_t now);

// A heartbeat from the peer on link.
keel_pair_do_t keel_pair_heard (keel_pair_t *self, int link, const keel_pair_peer_t *peer,
                                int64_t now);

// A driver or engine message reached this broker. DO_ACTIVATE: take over
// now, then serve it; NOTHING: serve it when ACTIVE and serving, refuse it
// (Passive) otherwise.
keel_pair_do_t keel_pair_client (keel_pair_t *self, int64_t now);

// Timers: peer loss, a takeover on an earlier vote.
keel_pair_do_t keel_pair_tick (keel_pair_t *self, int64_t now);

// Planned handover (keel-admin takeover on the passive). The active hands
// over once the passive holds every update: it becomes PASSIVE (its store
// is the peer's, so in sync) and does not claim the pair back on a passive
// peer's heartbeat for PairTimeout, the time the peer has to take over.
void keel_pair_hand_over (keel_pair_t *self, int64_t now);
// The passive takes over on the active's word (PairHandover): DO_ACTIVATE.
keel_pair_do_t keel_pair_take_handover (keel_pair_t *self);

// The loop noticed it did not run for gap_ms (SIGSTOP, a paused VM).
void keel_pair_paused (keel_pair_t *self, int64_t gap_ms, int64_t now);

// This broker's store after a commit or an applied update / snapshot.
void keel_pair_set_applied (keel_pair_t *self, uint64_t seq, uint64_t epoch);
// This broker's epoch while ACTIVE (its core's).
void keel_pair_set_epoch (keel_pair_t *self, uint64_t epoch);
// Passive: the mirror is complete (snapshot or catch-up installed, no gap).
void keel_pair_set_synced (keel_pair_t *self, bool synced);

keel_pair_state_t keel_pair_state (const keel_pair_t *self);
// ACTIVE and sure of it (not just back from a pause with the peer unheard).
bool keel_pair_serving (const keel_pair_t *self);
bool keel_pair_peer_up (const keel_pair_t *self, int64_t now);
// Milliseconds since the peer was last heard on any link (INT64_MAX: never).
int64_t keel_pair_silence_ms (const keel_pair_t *self, int64_t now);
int keel_pair_links_up (const keel_pair_t *self, int64_t now);
bool keel_pair_link_up (const keel_pair_t *self, int link, int64_t now);
// The peer as last heard (state 0: never).
const keel_pair_peer_t *keel_pair_peer (const keel_pair_t *self);
bool keel_pair_synced (const keel_pair_t *self);
uint64_t keel_pair_epoch (const keel_pair_t *self);
// Milliseconds until the next tick has something to do (>= 0).
int64_t keel_pair_wait_ms (const keel_pair_t *self, int64_t now);

// Next queued event, KEEL_PAIR_EV_NONE when none.
keel_pair_event_t keel_pair_next_event (keel_pair_t *self);

const char *keel_pair_state_name (keel_pair_state_t state);
// Why the last DO_ACTIVATE, for the log.
const char *keel_pair_why (const keel_pair_t *self);
const char *keel_pair_event_name (keel_pair_event_t event);

#endif
