/*  broker_pair.h — the loop's side of a resilient pair (DESIGN §6): the
    pair links, the stream of committed journal batches to the passive,
    snapshots, takeover and demotion. Who serves is decided by the pure
    state machine in pair.h; this module carries out its decisions on the
    broker's sockets, store and core.

    Links: one per PairEndpoint entry. This broker binds a ROUTER on each of
    its PairEndpoints (it only reads there) and connects a DEALER
    (ZMQ_IMMEDIATE: nothing queues for a peer that is not connected) to the
    peer's PairEndpoint of the same index (it only sends there). Every
    HeartbeatInterval a PairHeartbeat goes out on every link; a heartbeat
    whose `endpoints` is not this broker's PairPeer, or whose role is this
    broker's own, is a stranger's (counted, logged, ignored), and so is any
    other pair message from a connection that has not sent the peer's
    heartbeat on that link.

    The stream (active → passive). Every commit of the active carries two
    META_SET records, pair_seq (1, 2, 3 ... across the pair's life) and
    pair_epoch (the active's epoch), so any store knows exactly which
    update it holds last. Once the passive has asked for the stream
    (PairSyncRequest with its store's pair_seq/pair_epoch), the active
    "attaches" it: if the passive's store is exactly the active's, at once;
    otherwise it sends a snapshot of its store (keel_store_snapshot, in
    chunks) and then every commit as a PairUpdate on the first link that is
    up (all unacknowledged ones again when that link changes). The passive
    applies the updates of one turn in one transaction, commits it durably
    and answers PairAck(last seq).

    Durability: while the peer is attached, a message held for commit N
    (Accepted, ResultAck to an engine, a LoginReply that drops a result)
    leaves only when commit N is durable here AND its update is acked by
    the passive (keel_broker_pair_mirrored). When the peer is lost, the
    active detaches it and acknowledges on its own store alone (status
    says `synced: false`). The active says `synced` in its heartbeats once
    the passive acked everything up to the attach point: only a passive
    whose active said so until it was lost may take over.

    Takeover: the core is rebuilt from the mirrored store exactly as after a
    restart (keel_core_recover_*, epoch + 1), engines log in and claim
    their tasks (KEEP), drivers hello and resubmit nothing the store knows.
    Demotion (a peer ACTIVE with a higher epoch): everything held for the
    mirror is dropped unsent, the core is emptied, and the broker asks the
    new active for its stream. Clients of a non-serving broker get Passive.
*/
#ifndef KEEL_BROKER_PAIR_H
#define KEEL_BROKER_PAIR_H

#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>

#include "broker.h"
#include "admin.h"
#include "changes.h"
#include "counters.h"
#include "error.h"
#include "pair.h"

typedef struct _keel_broker_pair_t keel_broker_pair_t;

// NULL (and err untouched) when PairRole is none; NULL with err set when
// the pair settings are wrong or a link cannot be bound.
keel_broker_pair_t *keel_broker_pair_new (keel_broker_t *broker, keel_error_t *err);
void keel_broker_pair_destroy (keel_broker_pair_t **self_p);

// Adds the pair's ROUTERs to the loop's poller.
int keel_broker_pair_poll_on (keel_broker_pair_t *self, zpoller_t *poller);

// Start of a loop turn: reads the pair links, applies updates (passive),
// runs the state machine's timers and decisions (may activate or demote
// the broker), sends heartbeats when due.
void keel_broker_pair_turn (keel_broker_pair_t *self);

// Serving drivers and engines now.
bool keel_broker_pair_serving (const keel_broker_pair_t *self);

// A driver or engine message while not serving: a vote. Returns true when
// the broker took over and the message is to be served; false when it was
// answered with Passive, or kept (the peer is in doubt: it is served if
// this broker takes over within PairTimeout, answered Passive if the peer
// is heard again), or dropped. principal: the message's authenticated
// principal (keel_core_principal; "" with Security=none), kept with a vote.
bool keel_broker_pair_client (keel_broker_pair_t *self, zframe_t *route, keel_env_t *env,
                              const char *principal);

// Before a commit of the active: stamps the journal with the next update
// number. After it succeeded: keel_broker_pair_committed encodes the
// journal (before it is cleared), keel_broker_pair_stream sends it once
// the core has numbered the commit (core_seq: the messages it holds). A
// failed commit is simply not streamed. All three do nothing when self is
// NULL or not active.
void keel_broker_pair_stamp (keel_broker_pair_t *self, keel_changes_t *changes);
void keel_broker_pair_committed (keel_broker_pair_t *self, keel_changes_t *changes);
void keel_broker_pair_stream (keel_broker_pair_t *self, uint64_t core_seq);

// The highest core commit number the passive holds durably; UINT64_MAX
// when nothing waits for the mirror (no peer attached).
uint64_t keel_broker_pair_mirrored (const keel_broker_pair_t *self);

// Runs NotifyCommand for event (maintenance_started, ...); nothing when
// self is NULL.
void keel_broker_pair_notify (keel_broker_pair_t *self, const char *event, const char *detail);

// keel-admin takeover on the passive: asks the active to hand over (it
// stops taking work, waits until this broker holds every update, then
// says so and this broker takes over with a new epoch). Errors name why
// not (not in a pair, already active, peer lost, mirror not in sync).
keel_err keel_broker_pair_takeover (keel_broker_pair_t *self, keel_error_t *err);

// Milliseconds until the pair needs the loop (heartbeats, timeouts).
int64_t keel_broker_pair_wait_ms (keel_broker_pair_t *self);

// keel-admin status: the role ("active", "passive", "starting"), the
// epoch, and the pair's part (pointers into self, valid until the next turn).
const char *keel_broker_pair_role (const keel_broker_pair_t *self);
uint64_t keel_broker_pair_epoch (const keel_broker_pair_t *self);
// The highest epoch heard from the peer: a broker that takes over serves
// above it (and above its store's), never on an epoch the peer used.
uint64_t keel_broker_pair_epoch_floor (const keel_broker_pair_t *self);
void keel_broker_pair_status (keel_broker_pair_t *self, keel_admin_pair_t *status);

// The peer's AdvertisedEndpoint, for DriverWelcome/LoginReply.pair_peer.
const char *keel_broker_pair_peer_endpoint (const keel_broker_pair_t *self);

const keel_pair_counters_t *keel_broker_pair_counters (const keel_broker_pair_t *self);

#endif
