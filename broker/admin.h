/*  admin.h — keel-admin commands, answered by the broker (DESIGN §10).

    The broker's loop hands each AdminRequest to keel_admin_handle with a
    view of its state and callbacks for the commands that change something.
    Every reply carries the same facts twice: `json`, one object with stable
    field names for scripts, and `text` for people (aligned tables and
    Redis-INFO-style "# Section" / "name:value" lines).

    `tasks SERVICE [state=S] [limit=N] [offset=N]` pages through a service's
    tasks in id order (docs/protocol.md, docs/operations.md §5); its
    `attempts` is keel_task_attempts, the number drivers are told.
*/
#ifndef KEEL_ADMIN_H
#define KEEL_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "counters.h"
#include "model.h"
#include "settings.h"
#include "store.h"

// A resilient pair's part of `status` (DESIGN §6).
typedef struct {
    const char *pair_role;  // "primary" / "backup" (PairRole)
    const char *peer;       // PairPeer
    const char *peer_state; // "up" / "lost"
    int links_up, links;
    uint64_t mirror_lag; // updates the passive has yet to store
    bool synced;         // the mirror holds everything acknowledged
    uint64_t applied_seq;
    const char *peer_admin; // the peer's AdminEndpoint as it says ("" until heard)
    const keel_pair_counters_t *counters;
} keel_admin_pair_t;

// Several brokers on one shared store (store.h "members").
typedef struct {
    const char *state;    // "serving", "rejoining", "leaving", "left"
    uint64_t lease_epoch; // this member's id: a new one at every join
    const char *db;       // "up" / "lost"
    const keel_store_member_t *members;
    size_t nmembers;
    uint64_t takeovers;          // times this member took over the work of a member gone
    uint64_t fenced;             // times it found it had lost its work, and rejoined
    uint64_t fenced_writes;      // journal records refused then (never stored, never acknowledged)
    uint64_t clients_refused;    // client messages answered Passive while not serving (left)
    uint64_t clients_redirected; // driver hellos sent to the member that owns their services
    uint64_t engines_lent;       // idle engines sent to a member with queued work
} keel_admin_cluster_t;

typedef struct {
    const char *name;
    const char *role; // "standalone", "cluster", or a pair's "active" / "passive" / "starting"
    const keel_admin_pair_t *pair;       // NULL: not in a pair
    const keel_admin_cluster_t *cluster; // NULL: the store is not shared
    uint64_t epoch;
    int64_t started_mono;
    keel_model_t *model;
    keel_store_t *store;
    keel_settings_t *settings;
    const keel_counters_t *counters;
    size_t pending_claims;      // HOLD claims waiting for their service
    uint64_t store_uncommitted; // changes in memory not yet committed
    uint64_t store_unsynced;    // commits not yet durable (StoreSync=full)

    void *broker; // passed back to the callbacks
    keel_err (*cancel) (void *broker, const char *service_id, keel_error_t *err);
    keel_err (*config_set) (void *broker, const char *key, const char *value, keel_error_t *err);
    keel_err (*drain) (void *broker, const char *engine_id, keel_error_t *err);
    // service_id NULL: every service; *cleared: blacklistings ended.
    keel_err (*unblacklist) (void *broker, const char *engine_id, const char *service_id,
                             size_t *cleared, keel_error_t *err);
    keel_err (*maintenance) (void *broker, keel_store_maintenance_t *report, keel_error_t *err);
    keel_err (*takeover) (void *broker, keel_error_t *err);
    keel_err (*leave) (void *broker, keel_error_t *err);
} keel_admin_view_t;

typedef struct {
    bool ok;
    char *error; // heap, NULL when ok
    char *json;  // heap
    char *text;  // heap
} keel_admin_reply_t;

// Runs one command. Always fills reply (ok=false with an error naming the
// problem for unknown commands, missing arguments, unknown services...).
void keel_admin_handle (const keel_admin_view_t *view, const char *command, char **args,
                        size_t nargs, keel_admin_reply_t *reply);

// Frees the reply's strings.
void keel_admin_reply_clear (keel_admin_reply_t *reply);

#endif
