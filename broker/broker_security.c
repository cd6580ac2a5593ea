/*  broker_security.c — the loop's side of Security=curve (docs/security.md):
    the broker's keys, the ZAP handler (zap.h) started before any socket
    binds, its refusals counted, SIGHUP rereading the Authorized*
    directories (taken from a signalfd: main.c blocks SIGHUP before any
    thread starts), the admin role of every admin request, and the role
    check of every message on the client endpoint: the role the handshake authenticated (the connection's ZAP
    user id) must be the sender the message claims, so an engine key cannot
    send a driver's message and a driver key cannot send an engine's
    (wire_check.c allows each body from one sender kind only).
*/

#include "broker_int.h"

#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

keel_err
keel_broker_security_start (keel_broker_t *self, keel_error_t *err)
{
    keel_settings_t *s = self->settings;
    keel_err rc = keel_security_init (&self->security, keel_broker_cfg_Security (s), "CurveKey",
                                      keel_broker_cfg_CurveKey (s), NULL, NULL, err);
    if (rc != KEEL_OK)
        return rc;
    if (!self->security.curve) {
        keel_security_warn_open ("broker");
        return KEEL_OK;
    }
    const char *pair_role = keel_broker_cfg_PairRole (s);
    bool pair = pair_role && *pair_role && strcmp (pair_role, "none") != 0;
    if (pair) {
        rc = keel_security_load_public ("PairPeerKey", keel_broker_cfg_PairPeerKey (s),
                                        self->pair_peer_key, err);
        if (rc != KEEL_OK)
            return rc;
    }
    keel_zap_config_t zc = { .drivers = keel_broker_cfg_AuthorizedDrivers (s),
                             .engines = keel_broker_cfg_AuthorizedEngines (s),
                             .admins = keel_broker_cfg_AuthorizedAdmins (s),
                             .pair_key = pair ? self->pair_peer_key : NULL };
    self->zap = keel_zap_new (&zc, err);
    if (!self->zap)
        return KEEL_ERR_CONFIG;
    // SIGHUP is blocked (main.c, before any thread) and read here, once a
    // turn: the loop wakes at least every heartbeat interval.
    self->hup_fd = keel_security_hup_fd ();
    if (self->hup_fd < 0)
        KEEL_WARN ("broker", "no signalfd for SIGHUP: authorized keys are reread only as "
                             "their directories change");
    KEEL_INFO ("broker", "Security=curve: key %s, drivers from %s, engines from %s, admins from %s",
               self->security.public_txt, zc.drivers, zc.engines, zc.admins);
    return KEEL_OK;
}

void
keel_broker_security_stop (keel_broker_t *self)
{
    keel_zap_destroy (&self->zap);
    if (self->hup_fd >= 0)
        close (self->hup_fd);
    self->hup_fd = -1;
}

void
keel_broker_security_turn (keel_broker_t *self)
{
    if (!self->zap)
        return;
    if (keel_security_hup_taken (self->hup_fd)) {
        keel_zap_reload (self->zap);
        self->zap_q.touched = true; // a call on its pipe
        KEEL_INFO ("broker", "SIGHUP: authorized keys reread (AuthorizedDrivers, "
                             "AuthorizedEngines, AuthorizedAdmins); connections already made "
                             "stay until they close");
    }
    for (int i = 0; i < 4096 && keel_broker_quiet_readable (&self->zap_q); i++) {
        bool role = false;
        char text[256];
        if (keel_zap_recv_refusal (self->zap, &role, text, sizeof text))
            keel_core_refused (self->core, role, "handshake refused: %s", text);
    }
}

bool
keel_broker_security_admin_allows (keel_broker_t *self, zmsg_t *msg)
{
    if (!self->security.curve)
        return true;
    // The ZAP handler lets only admin keys on this socket; checked again
    // here so that nothing but an authenticated admin key reaches a
    // command even if the handler were gone (libzmq then lets any key in).
    zframe_t *last = zmsg_last (msg);
    const char *uid = last ? zframe_meta (last, "User-Id") : NULL;
    if (keel_security_role_is (uid, KEEL_ROLE_ADMIN))
        return true;
    keel_core_refused (self->core, true,
                       "admin request from a connection authenticated as %s "
                       "dropped",
                       uid && *uid ? uid : "nobody");
    return false;
}

bool
keel_broker_security_allows (keel_broker_t *self, zmq_msg_t *body, const keel_env_t *env,
                             const char **principal_p)
{
    *principal_p = "";
    if (!self->security.curve)
        return true;
    const char *uid = keel_security_role (body);
    bool ok = (env->sender == KEEL__SENDER_KIND__SENDER_DRIVER
               && keel_security_role_is (uid, KEEL_ROLE_DRIVER))
              || (env->sender == KEEL__SENDER_KIND__SENDER_ENGINE
                  && keel_security_role_is (uid, KEEL_ROLE_ENGINE));
    if (!ok) {
        keel_core_refused (self->core, true, "%s from a connection authenticated as %s dropped",
                           keel_wire_body_name (env), *uid ? uid : "nobody");
        return false;
    }
    *principal_p = uid;
    return true;
}
