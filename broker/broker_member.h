/*  broker_member.h — the loop's side of a shared store's membership
    (store.h "members"; docs/operations.md §4 "Several brokers on one
    database").

    When the store is shared (postgresql:), every broker on it is a member
    and every member serves: it owns the services its drivers submit and
    the engines logged in to it (docs/architecture.md "Members of a shared
    store"). This module runs the membership's step each few hundred ms
    (keel_store_tick) and carries out what it says:

      store says   the broker
      -----------  ------------------------------------------------------
      ADOPTED      it took over the work of a member that is gone: commits
                   and sends what it has, then loads its work again into a
                   fresh core (a new epoch, as after a restart): the
                   engines of the member that went claim their tasks here,
                   its drivers say hello here, and so do this member's own
                   clients (a restart's hiccup, nothing lost)
      FENCED       it lost its work while it was away (paused past its
                   lease, or cut off): drops its model unsent and
                   unacknowledged, counts the writes refused, and joins
                   again as a new member with no work

    A member that notices its own pause (a loop turn later than half a
    lease) checks its session before it serves anything: another member may
    have taken its work over meanwhile.

    Welcomes name this member's successor (the next live member by id, the
    one that takes its work over) as the pair peer (DriverWelcome/
    LoginReply.pair_peer) and list the live members: a client that loses
    this member turns to the successor at once. A standalone store
    (sqlite:, memory:) has no membership: keel_broker_member_new returns
    NULL and the functions taking NULL say "serving".
*/
#ifndef KEEL_BROKER_MEMBER_H
#define KEEL_BROKER_MEMBER_H

#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>

#include "admin.h"
#include "broker.h"
#include "error.h"

typedef struct _keel_broker_member_t keel_broker_member_t;

// NULL (and err untouched) when the broker's store is not shared. With a
// shared store: sets the member's endpoint and lease; the role is the
// store's after open (serving or standing by).
keel_broker_member_t *keel_broker_member_new (keel_broker_t *broker, keel_error_t *err);
void keel_broker_member_destroy (keel_broker_member_t **self_p);

bool keel_broker_member_serving (const keel_broker_member_t *self);

// The membership's step: due every KEEL_MEMBER_TICK_MS, and at once after
// a pause. Carries out a takeover or a fencing (see above).
void keel_broker_member_turn (keel_broker_member_t *self);
int64_t keel_broker_member_wait_ms (const keel_broker_member_t *self);

// keel-admin leave: at the end of this turn the member commits and sends
// everything, hands its work to its successor (waiting, bounded, until the
// successor has taken it), answers every driver and engine Passive naming
// the successor, keeps answering so for 2 s, and stops. Error when the
// store is not shared (NULL).
keel_err keel_broker_member_leave (keel_broker_member_t *self, keel_error_t *err);

// A client's message reached a member that does not serve (it left, or
// its rejoin failed): answered Passive naming its successor.
void keel_broker_member_refuse (keel_broker_member_t *self, zframe_t *route);

// A driver's hello names services this member does not hold: each must
// be new, or this member's. One that another live member owns is that
// member's work: the driver is answered Passive naming it (it moves there,
// keeping what was accepted: one store). One whose member is gone waits
// for the takeover (the hello is dropped; the driver says hello again).
// True when the hello may go to the core. NULL: true.
bool keel_broker_member_admit_hello (keel_broker_member_t *self, zframe_t *route,
                                     const Keel__DriverHello *hello);
// The same for an engine's login: the services of the tasks it holds
// (running, or with a result) must be new here or this member's; an
// engine whose tasks are another live member's work goes there, where its
// claims are kept.
bool keel_broker_member_admit_login (keel_broker_member_t *self, zframe_t *route,
                                     const Keel__EngineLogin *login);

// The successor's endpoint ("" when none), for welcomes.
const char *keel_broker_member_peer (const keel_broker_member_t *self);
// Points the core's welcomes at the member's peer and live members (after
// the core is made; the strings change in place at each tick). NULL: no-op.
void keel_broker_member_tell_core (keel_broker_member_t *self);

// keel-admin status: the cluster's part (pointers valid until the next turn).
void keel_broker_member_status (const keel_broker_member_t *self, keel_admin_cluster_t *status);

#endif
