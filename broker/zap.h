/*  zap.h — the broker's ZAP handler (RFC 27): who may connect, in which role.

    A CZMQ actor bound at inproc://zeromq.zap.01, started before the broker
    binds any socket (libzmq lets every CURVE client in when no handler
    answers: notes/reliability.md §4.1). It answers each handshake from the
    client key and the socket's ZAP domain (security.h):
      keel-client  a key in AuthorizedDrivers (role "driver") or
                   AuthorizedEngines (role "engine")
      keel-admin   a key in AuthorizedAdmins (role "admin")
      keel-pair    the pair peer's key, PairPeerKey (role "pair")
    and sets the connection's ZAP user id to "ROLE:KEY" (e.g.
    "driver:<Z85 public key>"), which every message then carries
    (keel_security_role). Anything else is refused (400).

    Why not CZMQ's zauth: zauth takes one CURVE directory and answers with
    an empty user id and no metadata (CZMQ 4.2.1, s_authenticate_curve), so
    it cannot tell a driver's key from an engine's, and it does not report
    refusals. This handler uses CZMQ's zcertstore for the three directories
    (the same certificate files zauth reads).

    The directories are read at start and again on keel_zap_reload (the
    broker calls it on SIGHUP); zcertstore also rereads a directory whose
    files changed at the next handshake it checks. Each refusal is reported
    on the actor's pipe as one message, read with keel_zap_recv_refusal:
    "auth" (a key in no directory, or not CURVE at all) or "role" (a known
    key on a socket its role may not use).
*/
#ifndef KEEL_ZAP_H
#define KEEL_ZAP_H

#include <czmq.h>

#include "error.h"
#include "security.h"

typedef struct {
    const char *drivers, *engines, *admins; // directories (AuthorizedDrivers, ...)
    const char *pair_key;                   // Z85 public key of the pair's peer, or NULL
} keel_zap_config_t;

typedef struct _keel_zap_t keel_zap_t;

// Checks the directories and starts the handler. Returns NULL with err
// (KEEL_ERR_CONFIG naming the setting) when a directory cannot be read, or
// when the handler cannot bind (another one in this process).
keel_zap_t *keel_zap_new (const keel_zap_config_t *config, keel_error_t *err);

// Stops the handler and frees it (idempotent).
void keel_zap_destroy (keel_zap_t **self_p);

// The actor, for a poller: readable when a refusal report waits.
zsock_t *keel_zap_actor (keel_zap_t *self);

// Rereads the three directories now (waits until done).
void keel_zap_reload (keel_zap_t *self);

// Reads one refusal report waiting on the actor: *role_p true for a known
// key on a socket its role may not use (role_refused), false for anything
// else (auth_refused); text a description ("domain=keel-client
// address=127.0.0.1 key=... role=-"). Returns false when nothing was read.
bool keel_zap_recv_refusal (keel_zap_t *self, bool *role_p, char *text, size_t size);

#endif
