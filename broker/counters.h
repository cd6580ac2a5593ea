/*  counters.h — the broker's counters, as keel-admin status shows them.
    Monotonic since the broker started; names are stable (scripts read them).

    send_failures counts messages a live peer did not get (its queue was
    full, or the send was interrupted): worth a look when it grows.
    engines_blacklisted counts blacklistings (an engine's executions of a
    service failed BlacklistAfter times in a row); tasks_failed_no_engine
    the tasks failed because no online engine offered their service's type
    for DSNoEngineTimeout.
    sends_to_departed_peers counts messages to a connection that had
    already closed (ZMQ_ROUTER_MANDATORY: EHOSTUNREACH), e.g. a heartbeat
    or admin reply racing a peer that just left: normal, harmless.
    auth_refused counts handshakes refused with Security=curve (a key in no
    Authorized* directory, or no CURVE at all); role_refused a known key
    on a socket its role may not use, a message whose sender is not the
    connection's authenticated role, or a driver key speaking for another
    key's driver or services (docs/security.md).
*/
#ifndef KEEL_COUNTERS_H
#define KEEL_COUNTERS_H

#include <stdint.h>

#define KEEL_COUNTERS(X)                                                                           \
    X (results_delivered)                                                                          \
    X (redundant_results_discarded)                                                                \
    X (tasks_rescheduled)                                                                          \
    X (executions_missing)                                                                         \
    X (claims_kept)                                                                                \
    X (claims_dropped)                                                                             \
    X (claims_held)                                                                                \
    X (malformed_messages)                                                                         \
    X (executions_cancelled)                                                                       \
    X (tasks_submitted)                                                                            \
    X (tasks_resubmitted)                                                                          \
    X (tasks_delivered_elsewhere)                                                                  \
    X (tasks_dispatched)                                                                           \
    X (task_failures)                                                                              \
    X (results_received)                                                                           \
    X (submissions_refused)                                                                        \
    X (send_failures)                                                                              \
    X (sends_to_departed_peers)                                                                    \
    X (store_commits)                                                                              \
    X (store_syncs)                                                                                \
    X (store_failures)                                                                             \
    X (engines_blacklisted)                                                                        \
    X (tasks_failed_no_engine)                                                                     \
    X (auth_refused)                                                                               \
    X (role_refused)

typedef struct {
#define KEEL_COUNTER_FIELD(name) uint64_t name;
    KEEL_COUNTERS (KEEL_COUNTER_FIELD)
#undef KEEL_COUNTER_FIELD
} keel_counters_t;

// A resilient pair's counters (keel-admin status "pair.counters"):
// updates sent (active) and applied (passive), snapshots, messages from a
// stranger on a pair link, a peer with the same PairRole, a stale epoch, a
// malformed pair message, warnings that the peer has not been heard
// (PairPeer unreachable, one each 30 s of silence), clients answered
// Passive, takeovers, demotions.
#define KEEL_PAIR_COUNTERS(X)                                                                      \
    X (updates_sent)                                                                               \
    X (updates_applied)                                                                            \
    X (acks)                                                                                       \
    X (snapshots_sent)                                                                             \
    X (snapshots_installed)                                                                        \
    X (catch_ups)                                                                                  \
    X (strangers)                                                                                  \
    X (misconfigured)                                                                              \
    X (stale_epoch)                                                                                \
    X (stale_heartbeats)                                                                           \
    X (peer_unheard)                                                                               \
    X (bad_messages)                                                                               \
    X (clients_refused)                                                                            \
    X (takeovers)                                                                                  \
    X (demotions)

typedef struct {
#define KEEL_PAIR_COUNTER_FIELD(name) uint64_t name;
    KEEL_PAIR_COUNTERS (KEEL_PAIR_COUNTER_FIELD)
#undef KEEL_PAIR_COUNTER_FIELD
} keel_pair_counters_t;

#endif
