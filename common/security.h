/*  security.h — CurveZMQ for every Keel program (docs/security.md, DESIGN §9).

    A program reads its Security, CurveKey and (clients) BrokerKey settings
    into one keel_security_t with keel_security_init, then applies it to
    each socket it makes: keel_security_client on a socket that connects to
    a broker (driver, engine, keel-admin, a pair's link to its peer),
    keel_security_server on a socket the broker binds (with a ZAP domain:
    the broker's ZAP handler, broker/zap.h, decides who may connect by the
    domain and the client's key). With Security=none both do nothing and
    the sockets are as before.

    Key files are CZMQ certificates (zcert_save): FILE holds the public
    key, FILE_secret the public and the secret key. A secret file that its
    group or others may read is refused, naming the file; a missing or
    malformed file is refused with the reason. Keys are kept as Z85 text
    (40 characters) so a keel_security_t can be copied to another thread.
    Nothing here allocates: no destructor.
*/
#ifndef KEEL_SECURITY_H
#define KEEL_SECURITY_H

#include <stdbool.h>
#include <czmq.h>

#include "error.h"

#define KEEL_CURVE_KEY_TXT 41 // Z85 text of a 32-byte key, with its NUL

// ZAP domains of the broker's sockets; the ZAP handler lets only the right
// roles through each.
#define KEEL_ZAP_DOMAIN_CLIENT "keel-client" // drivers and engines
#define KEEL_ZAP_DOMAIN_ADMIN  "keel-admin"  // keel-admin
#define KEEL_ZAP_DOMAIN_PAIR   "keel-pair"   // the pair's peer broker

// The authenticated roles, as the ZAP handler sets each connection's user
// id ("driver"), read back from every message with keel_security_role.
#define KEEL_ROLE_DRIVER "driver"
#define KEEL_ROLE_ENGINE "engine"
#define KEEL_ROLE_ADMIN  "admin"
#define KEEL_ROLE_PAIR   "pair"

typedef struct {
    bool curve;                          // Security=curve
    char public_txt[KEEL_CURVE_KEY_TXT]; // own certificate (CurveKey)
    char secret_txt[KEEL_CURVE_KEY_TXT]; //
    char server_txt[KEEL_CURVE_KEY_TXT]; // the broker's public key (BrokerKey); "" = none
} keel_security_t;

// Fills self from the settings' values: mode "none" or "curve"; with
// curve, loads the certificate cert_path (named cert_key in errors, e.g.
// "CurveKey") and, when server_key is not NULL, the public key server_path
// (named server_key, e.g. "BrokerKey"). Returns KEEL_OK, or KEEL_ERR_CONFIG
// with a message naming the key and the file.
keel_err keel_security_init (keel_security_t *self, const char *mode, const char *cert_key,
                             const char *cert_path, const char *server_key, const char *server_path,
                             keel_error_t *err);

// Loads the certificate at path: public_txt and secret_txt (either may be
// NULL). The secret file path_secret must exist, hold a key, and not be
// readable by group or others. key names the setting in errors.
keel_err keel_security_load_cert (const char *key, const char *path, char *public_txt,
                                  char *secret_txt, keel_error_t *err);

// Loads the public key of the certificate at path (FILE, as zcert_save
// writes it) into public_txt. key names the setting in errors.
keel_err keel_security_load_public (const char *key, const char *path, char *public_txt,
                                    keel_error_t *err);

// Checks that path names a readable directory (an Authorized* setting).
keel_err keel_security_check_dir (const char *key, const char *path, keel_error_t *err);

// Applies self to a socket before it connects: own keys and the server's
// key (server_txt, or server_override when not NULL: a pair's peer).
void keel_security_client (zsock_t *sock, const keel_security_t *self, const char *server_override);

// Applies self to a socket before it binds: CURVE server with the own
// certificate, ZAP domain (one of KEEL_ZAP_DOMAIN_*).
void keel_security_server (zsock_t *sock, const keel_security_t *self, const char *domain);

// The ZAP user id of the connection a received message came from (its
// "User-Id" property): "ROLE:KEY" as the broker's ZAP handler sets it,
// "" when none (Security=none).
const char *keel_security_role (zmq_msg_t *msg);

// Whether a user id as above is role's.
bool keel_security_role_is (const char *user_id, const char *role);

// Blocks SIGHUP in the calling thread (and the threads it creates later);
// a program that does so before it starts any thread takes SIGHUP from
// keel_security_hup_fd only.
void keel_security_block_hup (void);

// A non-blocking signalfd for SIGHUP (blocked first, in the calling
// thread), or -1. Read it with keel_security_hup_taken.
int keel_security_hup_fd (void);

// Whether a SIGHUP arrived on fd since the last call (reads them all).
bool keel_security_hup_taken (int fd);

// Logs, once at start, that Security=none leaves the grid open (component
// names the program in the log line).
void keel_security_warn_open (const char *component);

// Writes a new certificate: name (public, mode 0644) and name_secret
// (mode 0600); refuses to overwrite either. Returns KEEL_OK or an error.
keel_err keel_security_keygen (const char *name, keel_error_t *err);

#endif
