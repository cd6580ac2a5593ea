/*  broker_admin.c — the glue between admin requests on the admin endpoint
    and admin.c: decoding, the view of the broker's state, and the commands
    that change something (cancel, config set, drain, maintenance).
*/

#include "broker_int.h"

#include <stdlib.h>
#include <string.h>

#include "admin.h"

// ---------------------------------------------------------------- admin

static keel_err
s_admin_cancel (void *broker, const char *service_id, keel_error_t *err)
{
    keel_broker_t *self = broker;
    keel_service_rec_t *svc = keel_model_service (self->model, service_id);
    if (!svc)
        return keel_error_set (err, KEEL_ERR_NOTFOUND, "no service '%s'", service_id);
    bool was_cancelled = svc->state == KEEL_SERVICE_CANCELLED;
    keel_err rc = keel_broker_cancel_service (self, svc);
    keel_driver_rec_t *drv = keel_model_driver (self->model, svc->driver_id);
    if (rc != KEEL_OK || was_cancelled || !drv)
        return rc;
    // The driver would otherwise wait forever for results that will not
    // come: Refused{SERVICE_CLOSED} without task ids fails the whole service
    // there (docs/protocol.md). A driver that is away now learns it at its
    // next hello: the service is reported unknown and its tasks refused.
    Keel__Envelope env;
    Keel__Refused refused = KEEL__REFUSED__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    refused.service_id = svc->id;
    refused.has_code = true;
    refused.code = KEEL__REFUSE_CODE__REFUSE_SERVICE_CLOSED;
    refused.error = "service cancelled by an administrator";
    env.body_case = KEEL__ENVELOPE__BODY_REFUSED;
    env.refused = &refused;
    keel_broker_send_driver (self, drv, &env);
    return KEEL_OK;
}

static keel_err
s_admin_config_set (void *broker, const char *key, const char *value, keel_error_t *err)
{
    keel_broker_t *self = broker;
    // Checked first, without an origin: keel_settings_set prefixes its
    // errors with the origin ("keel-admin: ..."), and keel-admin already
    // names itself and the command (issue 10: the text came out doubled).
    keel_err rc = keel_settings_check (self->settings, key, value, err);
    if (rc == KEEL_ERR_NOTFOUND)
        return rc;
    const keel_setting_def_t *def = keel_settings_def (self->settings, key);
    if (!def->runtime)
        return keel_error_set (err, KEEL_ERR_STATE,
                               "%s cannot be changed while the broker runs (set it in the "
                               "properties file and restart)", key);
    if (rc != KEEL_OK)
        return rc;
    char was[256];
    snprintf (was, sizeof was, "%s", keel_settings_str (self->settings, key));
    rc = keel_settings_set (self->settings, key, value, "keel-admin", err);
    if (rc != KEEL_OK)
        return rc;
    keel_broker_change (self, (keel_change_t) { .kind = KEEL_CHANGE_CONFIG_SET,
                                                .config = { key, value } });
    rc = keel_broker_commit_now (self, err);
    if (rc != KEEL_OK)
        return rc;
    keel_broker_apply_settings (self);
    keel_broker_event (self, "config", "%s=%s was=%s", key, value, was[0] ? was : "(unset)");
    return KEEL_OK;
}

static keel_err
s_admin_drain (void *broker, const char *engine_id, keel_error_t *err)
{
    keel_broker_t *self = broker;
    keel_engine_t *engine = keel_model_engine (self->model, engine_id);
    if (!engine)
        return keel_error_set (err, KEEL_ERR_NOTFOUND, "no engine '%s'", engine_id);
    engine->draining = true;
    keel_broker_event (self, "engine-drain", "engine=%s running=%zu", engine->id,
                       zlistx_size (engine->execs));
    return KEEL_OK;
}

static keel_err
s_admin_maintenance (void *broker, keel_store_maintenance_t *report, keel_error_t *err)
{
    keel_broker_t *self = broker;
    int64_t retention = keel_settings_ms (self->settings, "RetentionHours");
    uint64_t n = keel_broker_purge (self, self->wall, retention);
    keel_err rc = keel_broker_commit_now (self, err);
    if (rc == KEEL_OK)
        rc = keel_store_maintenance (self->store, zclock_time (), retention, report, err);
    if (rc == KEEL_OK) {
        if (report->services_purged < n)
            report->services_purged = n;
        keel_broker_event (self, "maintenance", "purged=%llu bytes_before=%llu bytes_after=%llu",
                           (unsigned long long) report->services_purged,
                           (unsigned long long) report->bytes_before,
                           (unsigned long long) report->bytes_after);
        keel_broker_commit_now (self, NULL);
    }
    return rc;
}

void
keel_broker_admin (keel_broker_t *self, zmsg_t *msg)
{
    if (zmsg_size (msg) != 2) {
        keel_broker_malformed (self, "admin: expected 2 frames, got %zu", zmsg_size (msg));
        return;
    }
    zframe_t *route = zmsg_first (msg);
    zframe_t *payload = zmsg_next (msg);
    keel_error_t err;
    keel_env_t *req = keel_wire_decode (zframe_data (payload), zframe_size (payload), &err);
    if (!req) {
        keel_broker_malformed (self, "admin: %s", err.text);
        return;
    }
    if (req->body_case != KEEL__ENVELOPE__BODY_ADMIN_REQUEST) {
        keel_broker_malformed (self, "admin: %s is not an admin request", keel_wire_body_name (req));
        keel_wire_free (&req);
        return;
    }
    keel_admin_view_t view = {
        .name = self->name, .role = "standalone", .epoch = self->epoch,
        .started_mono = self->started_mono, .model = self->model, .store = self->store,
        .settings = self->settings, .counters = &self->counters, .pending_claims = self->npending,
        .store_uncommitted = self->ndirty + self->nacks + self->nexec_puts + self->nexec_dels
                             + keel_changes_size (self->changes),
        .store_unsynced = self->commit_seq - self->synced_seq,
        .broker = self, .cancel = s_admin_cancel, .config_set = s_admin_config_set,
        .drain = s_admin_drain, .maintenance = s_admin_maintenance
    };
    keel_admin_reply_t reply = { 0 };
    // Who asked, for the events the request causes: the connection's
    // routing id and the address it came from.
    char *hex = zframe_strhex (route);
    const char *from = zframe_meta (payload, "Peer-Address");
    snprintf (self->admin_who, sizeof self->admin_who, "admin=%.32s from=%.64s", hex ? hex : "?",
              from && *from ? from : "?");
    free (hex);
    keel_admin_handle (&view, req->admin_request->command, req->admin_request->args,
                       req->admin_request->n_args, &reply);
    self->admin_who[0] = '\0';
    Keel__Envelope env;
    Keel__AdminReply ar = KEEL__ADMIN_REPLY__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    ar.has_ok = true;
    ar.ok = reply.ok;
    ar.error = reply.error;
    ar.json = reply.json;
    ar.text = reply.text;
    env.body_case = KEEL__ENVELOPE__BODY_ADMIN_REPLY;
    env.admin_reply = &ar;
    if (keel_wire_send_to (self->admin, route, &env) != KEEL_OK)
        keel_broker_send_failed (self, errno);      // keel-admin gave up waiting
    keel_admin_reply_clear (&reply);
    keel_wire_free (&req);
}
