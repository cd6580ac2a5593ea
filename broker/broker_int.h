/*  broker_int.h — the loop's own state, shared by broker.c and
    broker_admin.c only (the loop's side of admin requests). The core's
    state is not here: the loop sees the core through core.h.
*/
#ifndef KEEL_BROKER_INT_H
#define KEEL_BROKER_INT_H

#include <stdbool.h>
#include <czmq.h>

#include "broker.h"
#include "core.h"
#include "store.h"
#include "syncer.h"

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
    uint64_t commit_seq;   // the last commit's number (keel_core_committed)
    zlistx_t *sendq;       // keel_core_out_t * ready to send, in order
    zlistx_t *held;        // keel_core_out_t * waiting for their commit, in order
    zlistx_t *admin_queue; // zmsg_t * admin requests, answered after the commit
    bool fatal;            // the store failed to sync: stop, acknowledge nothing
    bool stop;
};

// Applies the core's journal so far and commits it at once (durable on
// return), outside the turn's group commit: for recovery and the admin
// commands that answer with the commit's outcome. The rows of changed
// tasks and executions are not part of it (the turn's commit writes them).
keel_err keel_broker_commit_now (keel_broker_t *self, keel_error_t *err);

// One admin request, answered on the admin endpoint (broker_admin.c).
void keel_broker_admin (keel_broker_t *self, zmsg_t *msg);

#endif
