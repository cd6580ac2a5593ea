/*  zap.c — the broker's ZAP handler (zap.h).
*/

#include "zap.h"

#include <errno.h>
#include <string.h>

#include "thread.h"

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"

typedef struct {
    zsock_t *pipe;
    zsock_t *handler; // REP at S_ZAP_ENDPOINT
    char *dirs[3];    // drivers, engines, admins
    zcertstore_t *stores[3];
    char pair_key[KEEL_CURVE_KEY_TXT];
    bool bound; // set before the actor signals that it started
} s_self_t;

static const char *s_roles[3] = { KEEL_ROLE_DRIVER, KEEL_ROLE_ENGINE, KEEL_ROLE_ADMIN };

static void
s_load (s_self_t *self)
{
    for (int i = 0; i < 3; i++) {
        zcertstore_destroy (&self->stores[i]);
        self->stores[i] = zcertstore_new (self->dirs[i]);
    }
}

// The role of a client key, "" when it is in no directory.
static const char *
s_role_of (s_self_t *self, const char *domain, const char *key)
{
    if (self->pair_key[0] && strcmp (domain, KEEL_ZAP_DOMAIN_PAIR) == 0
        && strcmp (key, self->pair_key) == 0)
        return KEEL_ROLE_PAIR;
    // The socket's own roles first: a key in two directories gets the one
    // this socket serves.
    int order[3] = { 0, 1, 2 };
    if (strcmp (domain, KEEL_ZAP_DOMAIN_ADMIN) == 0) {
        order[0] = 2;
        order[2] = 0;
    }
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        if (self->stores[i] && zcertstore_lookup (self->stores[i], key))
            return s_roles[i];
    }
    if (self->pair_key[0] && strcmp (key, self->pair_key) == 0)
        return KEEL_ROLE_PAIR;
    return "";
}

static bool
s_role_fits (const char *domain, const char *role)
{
    if (strcmp (domain, KEEL_ZAP_DOMAIN_CLIENT) == 0)
        return strcmp (role, KEEL_ROLE_DRIVER) == 0 || strcmp (role, KEEL_ROLE_ENGINE) == 0;
    if (strcmp (domain, KEEL_ZAP_DOMAIN_ADMIN) == 0)
        return strcmp (role, KEEL_ROLE_ADMIN) == 0;
    if (strcmp (domain, KEEL_ZAP_DOMAIN_PAIR) == 0)
        return strcmp (role, KEEL_ROLE_PAIR) == 0;
    return false;
}

// One ZAP request: version, request id, domain, address, routing id,
// mechanism, credentials. Answers it and reports a refusal on the pipe.
static void
s_authenticate (s_self_t *self)
{
    zmsg_t *request = zmsg_recv (self->handler);
    if (!request)
        return;
    char *version = zmsg_popstr (request);
    char *sequence = zmsg_popstr (request);
    char *domain = zmsg_popstr (request);
    char *address = zmsg_popstr (request);
    char *identity = zmsg_popstr (request);
    char *mechanism = zmsg_popstr (request);
    zframe_t *credential = zmsg_pop (request);
    char key[KEEL_CURVE_KEY_TXT] = "";
    if (mechanism && strcmp (mechanism, "CURVE") == 0 && credential
        && zframe_size (credential) == 32)
        zmq_z85_encode (key, zframe_data (credential), 32);
    const char *role = key[0] && domain ? s_role_of (self, domain, key) : "";
    bool ok = *role && s_role_fits (domain, role);
    zstr_sendm (self->handler, version ? version : "1.0");
    zstr_sendm (self->handler, sequence ? sequence : "");
    zstr_sendm (self->handler, ok ? "200" : "400");
    zstr_sendm (self->handler, ok ? "OK" : "No access");
    // User id "ROLE:KEY": the role for the checks, the key for a driver's
    // services (keel_core_principal).
    char user_id[64];
    snprintf (user_id, sizeof user_id, "%s:%s", ok ? role : "", key);
    zstr_sendm (self->handler, ok ? user_id : "");
    zframe_t *meta = zframe_new_empty ();
    zframe_send (&meta, self->handler, 0);
    if (!ok)
        zstr_sendx (self->pipe, "REFUSED", *role ? "role" : "auth", domain ? domain : "",
                    address ? address : "", key[0] ? key : "-", *role ? role : "-", NULL);
    zframe_destroy (&credential);
    zstr_free (&version);
    zstr_free (&sequence);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&identity);
    zstr_free (&mechanism);
    zmsg_destroy (&request);
}

// Returns false on $TERM.
static bool
s_command (s_self_t *self)
{
    char *command = zstr_recv (self->pipe);
    if (!command)
        return false;
    bool go_on = true;
    if (strcmp (command, "$TERM") == 0)
        go_on = false;
    else if (strcmp (command, "RELOAD") == 0) {
        s_load (self);
        zsock_signal (self->pipe, 0);
    }
    zstr_free (&command);
    return go_on;
}

static void
s_actor (zsock_t *pipe, void *arg)
{
    s_self_t *self = arg;
    self->pipe = pipe;
    self->handler = zsock_new (ZMQ_REP);
    if (!self->handler || zsock_bind (self->handler, S_ZAP_ENDPOINT) != 0) {
        zsock_destroy (&self->handler);
        zsock_signal (pipe, 1); // bound stays false: keel_zap_new fails
        return;
    }
    s_load (self);
    self->bound = true;
    zsock_signal (pipe, 0);
    // Only $TERM ends the handler: not SIGINT/SIGTERM (the broker stops
    // its sockets first), not an interrupted wait. Without a handler,
    // libzmq would let any CURVE key in.
    zpoller_t *poller = zpoller_new (pipe, self->handler, NULL);
    if (poller)
        zpoller_set_nonstop (poller, true);
    while (poller) {
        void *which = zpoller_wait (poller, -1);
        if (which == self->handler)
            s_authenticate (self);
        else if (which == pipe) {
            if (!s_command (self))
                break;
        }
        else if (zpoller_terminated (poller) && zmq_errno () == ETERM)
            break;
    }
    zpoller_destroy (&poller);
    for (int i = 0; i < 3; i++)
        zcertstore_destroy (&self->stores[i]);
    zsock_destroy (&self->handler);
}

static void
s_self_free (s_self_t *self)
{
    if (!self)
        return;
    for (int i = 0; i < 3; i++)
        free (self->dirs[i]);
    free (self);
}

struct _keel_zap_t {
    keel_thread_t *thread;
    zsock_t *actor;  // its pipe
    s_self_t *state; // the actor's, freed after it stops
};

keel_zap_t *
keel_zap_new (const keel_zap_config_t *config, keel_error_t *err)
{
    const char *keys[3] = { "AuthorizedDrivers", "AuthorizedEngines", "AuthorizedAdmins" };
    const char *dirs[3] = { config->drivers, config->engines, config->admins };
    for (int i = 0; i < 3; i++)
        if (keel_security_check_dir (keys[i], dirs[i], err) != KEEL_OK)
            return NULL;
    keel_zap_t *zap = calloc (1, sizeof *zap);
    s_self_t *self = calloc (1, sizeof *self);
    if (!zap || !self) {
        free (zap);
        free (self);
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    zap->state = self;
    for (int i = 0; i < 3; i++)
        if (!(self->dirs[i] = strdup (dirs[i]))) {
            keel_zap_destroy (&zap);
            keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
            return NULL;
        }
    if (config->pair_key)
        snprintf (self->pair_key, sizeof self->pair_key, "%s", config->pair_key);
    zap->thread = keel_thread_new (s_actor, self);
    zap->actor = zap->thread ? keel_thread_pipe (zap->thread) : NULL;
    if (!zap->actor || !self->bound) {
        keel_zap_destroy (&zap);
        keel_error_set (err, KEEL_ERR_IO, "cannot start the ZAP handler (%s)", S_ZAP_ENDPOINT);
        return NULL;
    }
    return zap;
}

void
keel_zap_destroy (keel_zap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_zap_t *self = *self_p;
    keel_thread_destroy (&self->thread); // joined: its sockets are closed
    self->actor = NULL;
    s_self_free (self->state);
    free (self);
    *self_p = NULL;
}

zsock_t *
keel_zap_actor (keel_zap_t *self)
{
    return self ? self->actor : NULL;
}

void
keel_zap_reload (keel_zap_t *self)
{
    if (!self || !self->actor)
        return;
    zstr_send (self->actor, "RELOAD");
    zsock_wait (self->actor);
}

bool
keel_zap_recv_refusal (keel_zap_t *self, bool *role_p, char *text, size_t size)
{
    zmsg_t *msg = zmsg_recv (self->actor);
    if (!msg)
        return false;
    char *what = zmsg_popstr (msg), *kind = zmsg_popstr (msg), *domain = zmsg_popstr (msg),
         *address = zmsg_popstr (msg), *key = zmsg_popstr (msg), *role = zmsg_popstr (msg);
    bool ok = what && strcmp (what, "REFUSED") == 0 && kind && domain && address && key && role;
    if (ok) {
        *role_p = strcmp (kind, "role") == 0;
        snprintf (text, size, "domain=%s address=%s key=%s role=%s", domain, address, key, role);
    }
    zstr_free (&what);
    zstr_free (&kind);
    zstr_free (&domain);
    zstr_free (&address);
    zstr_free (&key);
    zstr_free (&role);
    zmsg_destroy (&msg);
    return ok;
}
