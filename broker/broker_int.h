/*  broker_int.h — the loop's own state, shared by broker.c and
    broker_admin.c only (the loop's side of admin requests). The core's
    state is not here: the loop sees the core through core.h.
*/
#ifndef KEEL_BROKER_INT_H
#define KEEL_BROKER_INT_H

#include <stdbool.h>
#include <czmq.h>

#include "broker.h"
#include "broker_member.h"
#include "broker_pair.h"
#include "core.h"
#include "httpd.h"
#include "metrics.h"
#include "store.h"
#include "syncer.h"
#include "security.h"
#include "zap.h"

#define KEEL_FD_BOX 8192

// A rarely busy socket (the admin socket, the syncer's and the ZAP
// handler's pipes) that the loop polls by its ZMQ_FD instead of as a
// socket (broker_quiet.c): zmq_poll asks each socket item for
// ZMQ_EVENTS on every pass, a zero-timeout poll of its mailbox and a
// getpid each, and those were about half the loop's system calls in W2.
typedef struct {
    zsock_t *sock; // NULL: none
    int *fd;       // its ZMQ_FD, in a zeroed KEEL_FD_BOX block (see store_fd)
    bool touched;  // used or signalled since ZMQ_EVENTS last said "nothing"
} keel_quiet_t;

struct _keel_broker_t {
    keel_settings_t *settings;
    keel_core_t *core;
    zsock_t *router; // drivers and engines
    zsock_t *admin;  // keel-admin
    keel_store_t *store;
    // Group commit off the loop (StoreSync=full, syncer.h): messages that
    // promise durability wait in `held` until the syncer reports their
    // commit durable. NULL syncer: every commit is as durable as StoreSync
    // asks when it returns.
    keel_syncer_t *syncer;
    // A store whose commits are answered later (PostgreSQL, store.h): each
    // commit waits in `answers` (its store turn, its number) until
    // keel_store_collect says the turn is durable; the loop polls store_fd.
    struct {
        uint64_t turn, seq;
    } * answers;
    size_t nanswers, answers_cap;
    // keel_store_answer_fd as the poller has it (-1 none), in a zeroed
    // block of its own of KEEL_FD_BOX bytes: zpoller takes a pointer to an
    // fd, and CZMQ first probes that pointer as a libzmq socket, reading
    // its tag well past the int (valgrind caught the read landing in a
    // freed core next to the broker).
    int *store_fd;
    keel_quiet_t admin_q, syncer_q, zap_q;
    uint64_t commit_seq;          // the last commit's number (keel_core_committed)
    uint64_t local_synced;        // commits durable in this store (the syncer's word)
    uint64_t flushes_seen;        // the store writer's flushes counted in store_syncs
    uint64_t checkpoints_failed;  // the syncer's failed checkpoints already logged ...
    int64_t checkpoint_warned_at; // ... and when (zclock_mono), for a rate limit
    // Resilient pair (broker_pair.h), NULL when standalone. A commit's
    // messages leave when it is durable here AND (while a peer is
    // attached) in the peer's mirror.
    keel_broker_pair_t *pair;
    // Membership of a shared store (broker_member.h), NULL when the store
    // is not shared. A member that left serves nothing.
    keel_broker_member_t *member;
    zpoller_t *poller;     // the loop's, while it runs (the syncer joins it)
    zlistx_t *sendq;       // keel_core_out_t * ready to send, in order
    zlistx_t *held;        // keel_core_out_t * waiting for their commit, in order
    zlistx_t *admin_queue; // zmsg_t * admin requests, answered after the commit
    bool fatal;            // the store failed to sync: stop, acknowledge nothing
    // MetricsEndpoint (broker_metrics.c): NULL when off. The loop publishes
    // a snapshot to the HTTP thread every metrics_interval ms.
    keel_metrics_t *metrics;
    keel_httpd_t *httpd;
    int64_t metrics_due; // monotonic ms
    // Security=curve (security.h): the broker's keys, the pair peer's
    // public key, and the ZAP handler (zap.h; NULL with Security=none).
    keel_security_t security;
    char pair_peer_key[KEEL_CURVE_KEY_TXT];
    keel_zap_t *zap;
    int hup_fd; // signalfd for SIGHUP, -1 none
    bool stop;
};

// Whether a quiet socket has a message waiting. Asks ZMQ_EVENTS only when
// the socket was touched (keel_quiet_t); a false answer after asking
// clears touched.
bool keel_broker_quiet_readable (keel_quiet_t *q);
// broker_quiet.c: a quiet socket's descriptor box (false: out of memory);
// q pointed at sock (NULL: none), in the poller when there is one;
// before a wait, whether a quiet socket has a message (then no wait);
// after one, which descriptors were signalled.
bool keel_broker_quiet_new (keel_quiet_t *q);
int keel_broker_quiet_set (keel_quiet_t *q, zsock_t *sock, zpoller_t *poller);
bool keel_broker_quiet_pending (keel_broker_t *self);
void keel_broker_quiet_look (keel_broker_t *self);

// Applies the core's journal so far and commits it at once (durable on
// return), outside the turn's group commit: for recovery and the admin
// commands that answer with the commit's outcome. The rows of changed
// tasks and executions are not part of it (the turn's commit writes them).
keel_err keel_broker_commit_now (keel_broker_t *self, keel_error_t *err);

// Held messages whose commit is durable (here, and in the pair's mirror)
// move to the send queue; called when either advances.
void keel_broker_release (keel_broker_t *self);

// Commits whatever the core holds uncommitted now (a planned handover),
// and sends what is ready (keel_broker_commit_pending); makes every commit
// durable here at once and sends what that releases (keel_broker_flush).
void keel_broker_commit_pending (keel_broker_t *self);
void keel_broker_flush (keel_broker_t *self);

// A pair's peer is lost: the acceptances held for commits after mirrored
// (not acknowledged by the peer) will leave without the mirror: mark them
// Accepted.alone, so that their drivers send those tasks again after a move.
void keel_broker_mark_held_alone (keel_broker_t *self, uint64_t mirrored);

// Pair: the core is rebuilt from the store (a new epoch, as after a
// restart) and the broker serves (keel_broker_activate); or stops serving:
// everything held or queued is dropped unsent, the syncer stops, the core is
// emptied (keel_broker_deactivate).
keel_err keel_broker_activate (keel_broker_t *self, keel_error_t *err);
void keel_broker_deactivate (keel_broker_t *self);

// True when this broker serves: not a pair's passive, not a member that left.
bool keel_broker_serving (const keel_broker_t *self);

// The store's file (sqlite:PATH), for files kept beside it.
const char *keel_broker_store_path (const keel_broker_t *self);

// One admin request, answered on the admin endpoint (broker_admin.c).
void keel_broker_admin (keel_broker_t *self, zmsg_t *msg);

// The view keel-admin commands read (admin.h), with its callbacks; pair is
// filled and pointed to when the broker is in a pair, cluster when its
// store is shared (broker_admin.c).
void keel_broker_admin_view (keel_broker_t *self, keel_admin_view_t *view, keel_admin_pair_t *pair,
                             keel_admin_cluster_t *cluster);

// MetricsEndpoint (broker_metrics.c): start serving when the setting names
// an endpoint (KEEL_OK and nothing when empty); publish a fresh snapshot
// when one is due (each turn); milliseconds until the next is due (-1: none,
// for the poll timeout); stop serving and free (idempotent).
keel_err keel_broker_metrics_start (keel_broker_t *self, keel_error_t *err);
void keel_broker_metrics_turn (keel_broker_t *self);
int64_t keel_broker_metrics_wait_ms (keel_broker_t *self);
void keel_broker_metrics_stop (keel_broker_t *self);

// Security (broker_security.c): load the keys and, with Security=curve,
// start the ZAP handler before any socket binds (with Security=none: log
// that the grid is open); each turn, count the handler's refusals and
// reread the Authorized* directories after a SIGHUP; whether an admin
// request comes from an admin key; whether a message (its principal, the
// connection's user id, in *principal_p: valid while body is)
// from the client endpoint comes from a connection whose authenticated
// role is the sender it claims (a refusal is counted and logged); stop.
keel_err keel_broker_security_start (keel_broker_t *self, keel_error_t *err);
void keel_broker_security_turn (keel_broker_t *self);
bool keel_broker_security_admin_allows (keel_broker_t *self, zmsg_t *msg);
bool keel_broker_security_allows (keel_broker_t *self, zmq_msg_t *body, const keel_env_t *env,
                                  const char **principal_p);
void keel_broker_security_stop (keel_broker_t *self);

#endif
