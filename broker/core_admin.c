/*  core_admin.c — the admin commands that change the core (cancel, drain,
    a runtime setting applied, purge) and the view keel-admin reads. The
    loop's side of them (decoding, the store, the reply) is broker_admin.c.
*/

#include "core_int.h"

#include <stdlib.h>
#include <string.h>

keel_err
keel_core_cancel_service_by_id (keel_core_t *self, const char *service_id, keel_error_t *err)
{
    keel_service_rec_t *svc = keel_model_service (self->model, service_id);
    if (!svc)
        return keel_error_set (err, KEEL_ERR_NOTFOUND, "no service '%s'", service_id);
    bool was_cancelled = svc->state == KEEL_SERVICE_CANCELLED;
    keel_err rc = keel_core_cancel_service (self, svc);
    keel_driver_rec_t *drv = keel_model_driver (self->model, svc->driver_id);
    if (rc != KEEL_OK || was_cancelled || !drv)
        return rc;
    // The driver would otherwise wait forever for results that will not
    // come: Refused{SERVICE_CLOSED} without task ids fails the whole service
    // there (docs/protocol.md). A driver that is away now learns it at its
    // next hello: the service is reported unknown and its tasks refused.
    keel_msg_t msg;
    keel_core_send_driver (self, drv,
                           keel_msg_refused (&msg, svc->id, NULL, 0,
                                             KEEL__REFUSE_CODE__REFUSE_SERVICE_CLOSED,
                                             "service cancelled by an administrator"));
    return KEEL_OK;
}

keel_err
keel_core_drain (keel_core_t *self, const char *engine_id, keel_error_t *err)
{
    keel_engine_t *engine = keel_model_engine (self->model, engine_id);
    if (!engine)
        return keel_error_set (err, KEEL_ERR_NOTFOUND, "no engine '%s'", engine_id);
    engine->draining = true;
    keel_core_event (self, "engine-drain", "engine=%s running=%zu", engine->id,
                     zlistx_size (engine->execs));
    return KEEL_OK;
}

void
keel_core_settings_changed (keel_core_t *self, const char *key, const char *value, const char *was)
{
    keel_core_apply_settings (self);
    keel_core_event (self, "config", "%s=%s was=%s", key, value, was[0] ? was : "(unset)");
}

uint64_t
keel_core_purge_now (keel_core_t *self, int64_t retention_ms)
{
    return keel_core_purge (self, self->wall, retention_ms);
}

void
keel_core_note (keel_core_t *self, const char *kind, const char *text)
{
    keel_core_event (self, kind, "%s", text);
}

void
keel_core_admin_who (keel_core_t *self, const char *who)
{
    snprintf (self->admin_who, sizeof self->admin_who, "%s", who ? who : "");
}

void
keel_core_admin_view (keel_core_t *self, keel_admin_view_t *view)
{
    view->name = self->name;
    view->role = "standalone";
    view->epoch = self->epoch;
    view->started_mono = self->started_mono;
    view->model = self->model;
    view->settings = self->settings;
    view->counters = &self->counters;
    view->pending_claims = self->npending;
    view->store_uncommitted = self->ndirty + self->nacks + self->nexec_puts + self->nexec_dels
                              + keel_changes_size (self->changes);
    view->store_unsynced = self->commit_seq - self->synced_seq;
}
