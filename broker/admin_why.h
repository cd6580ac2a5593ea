/*  admin_why.h — `keel-admin why SERVICE`: why a service's tasks wait.

    A service's queued tasks go to an online engine that is not draining,
    offers its type, meets its condition (docs/services.md, "Conditions on
    engines") and is not blacklisted for it (or is, while no other engine
    may take them). `why` lists every engine the broker knows that offers
    the type, with each of those facts, and for an engine that does not
    meet the condition the comparison that decided and the values it saw
    (keel_cond_eval's explanation). JSON: {service, type, condition,
    served, waiting, queued, engines: [{engine, host, state, draining,
    matches, mismatch, blacklisted}]}; docs/operations.md shows both forms.
*/
#ifndef KEEL_ADMIN_WHY_H
#define KEEL_ADMIN_WHY_H

#include "admin.h"

// Fills reply (ok) for svc, one of v's services.
void keel_admin_why (const keel_admin_view_t *v, keel_service_rec_t *svc,
                     keel_admin_reply_t *reply);

#endif
