/*  broker_admin.c — the loop's side of admin requests on the admin
    endpoint: decoding, the view (the core's, plus the store), the commands
    that need the store (config set, maintenance: committed before they
    answer), and the reply. What the commands do to the core is
    core_admin.c.
*/

#include "broker_int.h"
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

// Commands that change something run on the active broker of a pair only.
static keel_err
s_not_serving (keel_broker_t *self, keel_error_t *err)
{
    if (!keel_broker_member_serving (self->member)) {
        const char *next = keel_broker_member_peer (self->member);
        return keel_error_set (err, KEEL_ERR_STATE,
                               "this member of the cluster does not serve (it left, or it is"
                               " rejoining): run the command on another member%s%s",
                               *next ? " such as " : "", next);
    }
    if (keel_broker_pair_serving (self->pair))
        return KEEL_OK;
    const char *active = keel_broker_pair_peer_endpoint (self->pair);
    return keel_error_set (
        err, KEEL_ERR_STATE,
        "this broker is %s in its pair: run the command on the active broker%s%s",
        keel_broker_pair_role (self->pair), active ? " " : "", active ? active : "");
}

static keel_err
s_admin_cancel (void *broker, const char *service_id, keel_error_t *err)
{
    keel_broker_t *self = broker;
    if (s_not_serving (self, err) != KEEL_OK)
        return KEEL_ERR_STATE;
    return keel_core_cancel_service_by_id (self->core, service_id, err);
}

static keel_err
s_admin_config_set (void *broker, const char *key, const char *value, keel_error_t *err)
{
    keel_broker_t *self = broker;
    if (s_not_serving (self, err) != KEEL_OK)
        return KEEL_ERR_STATE;
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
                               "properties file and restart)",
                               key);
    if (rc != KEEL_OK)
        return rc;
    char was[256];
    snprintf (was, sizeof was, "%s", keel_settings_str (self->settings, key));
    rc = keel_settings_set (self->settings, key, value, "keel-admin", err);
    if (rc != KEEL_OK)
        return rc;
    keel_changes_add (
        keel_core_changes (self->core),
        &(keel_change_t) { .kind = KEEL_CHANGE_CONFIG_SET, .config = { key, value } });
    rc = keel_broker_commit_now (self, err);
    if (rc != KEEL_OK)
        return rc;
    keel_core_settings_changed (self->core, key, value, was);
    return KEEL_OK;
}

static keel_err
s_admin_drain (void *broker, const char *engine_id, keel_error_t *err)
{
    keel_broker_t *self = broker;
    if (s_not_serving (self, err) != KEEL_OK)
        return KEEL_ERR_STATE;
    return keel_core_drain (self->core, engine_id, err);
}

static keel_err
s_admin_unblacklist (void *broker, const char *engine_id, const char *service_id, size_t *cleared,
                     keel_error_t *err)
{
    keel_broker_t *self = broker;
    if (s_not_serving (self, err) != KEEL_OK)
        return KEEL_ERR_STATE;
    return keel_core_unblacklist (self->core, engine_id, service_id, cleared, err);
}

static keel_err
s_admin_takeover (void *broker, keel_error_t *err)
{
    keel_broker_t *self = broker;
    return keel_broker_pair_takeover (self->pair, err);
}

static keel_err
s_admin_leave (void *broker, keel_error_t *err)
{
    keel_broker_t *self = broker;
    return keel_broker_member_leave (self->member, err);
}

static keel_err
s_admin_maintenance (void *broker, keel_store_maintenance_t *report, keel_error_t *err)
{
    keel_broker_t *self = broker;
    if (!keel_broker_member_serving (self->member))
        return s_not_serving (self, err); // a member that serves runs it
    if (!keel_broker_pair_serving (self->pair)) {
        // A passive's store is the active's mirror: compact it, change
        // nothing in it (purging is the active's, and reaches it as updates).
        if (strcmp (keel_broker_pair_role (self->pair), "passive") != 0)
            return s_not_serving (self, err);
        keel_broker_pair_notify (self->pair, "maintenance_started",
                                 "passive: compacting the mirror");
        keel_err rc =
            keel_store_maintenance (self->store, zclock_time (), INT64_MAX / 4, report, err);
        keel_broker_pair_notify (self->pair, "maintenance_done",
                                 rc == KEEL_OK ? "passive: mirror compacted" : err->text);
        return rc;
    }
    keel_broker_pair_notify (self->pair, "maintenance_started", "active: purging and compacting");
    int64_t retention = keel_broker_cfg_RetentionHours (self->settings);
    uint64_t n = keel_core_purge_now (self->core, retention);
    keel_err rc = keel_broker_commit_now (self, err);
    if (rc == KEEL_OK)
        rc = keel_store_maintenance (self->store, zclock_time (), retention, report, err);
    if (rc == KEEL_OK) {
        if (report->services_purged < n)
            report->services_purged = n;
        char text[200];
        snprintf (text, sizeof text, "purged=%llu bytes_before=%llu bytes_after=%llu",
                  (unsigned long long) report->services_purged,
                  (unsigned long long) report->bytes_before,
                  (unsigned long long) report->bytes_after);
        keel_core_note (self->core, "maintenance", text);
        keel_broker_commit_now (self, NULL);
    }
    keel_broker_pair_notify (self->pair, "maintenance_done",
                             rc == KEEL_OK ? "active: purged and compacted" : err->text);
    return rc;
}

void
keel_broker_admin_view (keel_broker_t *self, keel_admin_view_t *view, keel_admin_pair_t *pair,
                        keel_admin_cluster_t *cluster)
{
    *view = (keel_admin_view_t) { .store = self->store,
                                  .broker = self,
                                  .cancel = s_admin_cancel,
                                  .config_set = s_admin_config_set,
                                  .drain = s_admin_drain,
                                  .unblacklist = s_admin_unblacklist,
                                  .maintenance = s_admin_maintenance,
                                  .takeover = s_admin_takeover,
                                  .leave = s_admin_leave };
    keel_core_admin_view (self->core, view);
    if (self->pair) {
        keel_broker_pair_status (self->pair, pair);
        view->role = keel_broker_pair_role (self->pair);
        view->epoch = keel_broker_pair_epoch (self->pair);
        view->pair = pair;
    }
    if (self->member) {
        keel_broker_member_status (self->member, cluster);
        view->role = "cluster";
        view->cluster = cluster;
    }
}

void
keel_broker_admin (keel_broker_t *self, zmsg_t *msg)
{
    if (zmsg_size (msg) != 2) {
        keel_core_malformed (self->core, "admin: expected 2 frames, got %zu", zmsg_size (msg));
        return;
    }
    zframe_t *route = zmsg_first (msg);
    zframe_t *payload = zmsg_next (msg);
    keel_error_t err;
    keel_env_t *req = keel_wire_decode (zframe_data (payload), zframe_size (payload), &err);
    if (!req) {
        keel_core_malformed (self->core, "admin: %s", err.text);
        return;
    }
    if (req->body_case != KEEL__ENVELOPE__BODY_ADMIN_REQUEST) {
        keel_core_malformed (self->core, "admin: %s is not an admin request",
                             keel_wire_body_name (req));
        keel_wire_free (&req);
        return;
    }
    keel_admin_view_t view;
    keel_admin_pair_t pair;
    keel_admin_cluster_t cluster;
    keel_broker_admin_view (self, &view, &pair, &cluster);
    keel_admin_reply_t reply = { 0 };
    // Who asked, for the events the request causes: the connection's
    // routing id and the address it came from.
    char *hex = zframe_strhex (route);
    const char *from = zframe_meta (payload, "Peer-Address");
    char who[128];
    snprintf (who, sizeof who, "admin=%.32s from=%.64s", hex ? hex : "?",
              from && *from ? from : "?");
    free (hex);
    keel_core_admin_who (self->core, who);
    keel_admin_handle (&view, req->admin_request->command, req->admin_request->args,
                       req->admin_request->n_args, &reply);
    keel_core_admin_who (self->core, NULL);
    keel_msg_t out;
    keel_env_t *env = keel_msg_admin_reply (&out, reply.ok, reply.error, reply.json, reply.text);
    self->admin_q.touched = true; // a send may read the socket's commands
    if (keel_wire_send_to (self->admin, route, env) != KEEL_OK)
        keel_core_send_failed (self->core, errno); // keel-admin gave up waiting
    keel_admin_reply_clear (&reply);
    keel_wire_free (&req);
}
