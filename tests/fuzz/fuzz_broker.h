/*  fuzz_broker.h — what keel-broker does with a store's rows once they are
    loaded (broker.c at start), for the fuzz targets that feed it rows
    (fuzz_store_rows through SQLite, fuzz_store_load straight to the
    loader): the recovery's end and its commit, one turn past the login
    window (timers, results, dispatch, a commit) and the keel-admin views
    status, services and engines. Header-only: each target is one file.
*/
#ifndef KEEL_FUZZ_BROKER_H
#define KEEL_FUZZ_BROKER_H

#include <stdbool.h>

#include "admin.h"
#include "core.h"
#include "store.h"

//  Applies and commits the core's journal, as broker.c does.
static inline bool
fuzz_broker_commit (keel_core_t *core, keel_store_t *store)
{
    keel_error_t err;
    keel_changes_t *changes = keel_core_changes (core);
    keel_err rc = keel_store_apply_all (store, changes);
    if (rc == KEEL_OK)
        rc = keel_store_commit (store, &err);
    if (rc != KEEL_OK)
        keel_store_rollback (store);
    keel_changes_clear (changes);
    return rc == KEEL_OK;
}

static inline void
fuzz_broker_drain (keel_core_t *core)
{
    keel_core_out_t *out;
    while ((out = keel_core_out_next (core)))
        keel_core_out_destroy (&out);
}

//  keel-admin status, services and engines on the recovered model.
static inline void
fuzz_broker_status (keel_core_t *core, keel_store_t *store, keel_settings_t *settings)
{
    keel_admin_view_t view = { 0 };
    keel_core_admin_view (core, &view);
    view.name = "fuzz";
    view.role = "standalone";
    view.store = store;
    view.settings = settings;
    const char *commands[] = { "status", "services", "engines" };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        keel_admin_reply_t reply;
        keel_admin_handle (&view, commands[i], NULL, 0, &reply);
        keel_admin_reply_clear (&reply);
    }
}

//  After a load that was not stopped: the rest of the start, one turn
//  (now and wall: the core's clock at the load), the admin views; then
//  whatever is left of the journal and the outbox is dropped.
static inline void
fuzz_broker_start (keel_core_t *core, keel_store_t *store, keel_settings_t *settings, int64_t now,
                   int64_t wall)
{
    keel_core_recover_end (core);
    if (fuzz_broker_commit (core, store)) {
        keel_core_recover_done (core);
        // One turn once the login window is over.
        now += 60000;
        wall += 60000;
        keel_core_clock (core, now, wall);
        keel_core_turn_begin (core);
        keel_core_timers (core);
        keel_core_send_results (core);
        keel_core_dispatch (core);
        bool wrote = false;
        if (keel_core_prepare_commit (core, &wrote) == KEEL_OK && fuzz_broker_commit (core, store))
            keel_core_committed (core, wrote);
        fuzz_broker_drain (core);
        fuzz_broker_status (core, store, settings);
    }
}

#endif
