/*  security.c — CurveZMQ keys and socket options (security.h).
*/

#include "security.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static const char s_zero_key[] = "0000000000000000000000000000000000000000";

// Reads the Z85 text of /curve/<name> from a zcert file into txt (41
// bytes). Returns true when it holds a valid 40-character key.
static bool
s_read_key (zconfig_t *root, const char *name, char *txt)
{
    char path[32];
    snprintf (path, sizeof path, "/curve/%s", name);
    const char *value = zconfig_get (root, path, NULL);
    uint8_t bin[32];
    if (!value || strlen (value) != 40 || !zmq_z85_decode (bin, value))
        return false;
    snprintf (txt, KEEL_CURVE_KEY_TXT, "%s", value);
    return strcmp (txt, s_zero_key) != 0;
}

// zconfig_load of path, after checking that it is a readable regular file.
static zconfig_t *
s_load (const char *key, const char *path, keel_error_t *err)
{
    struct stat st;
    if (stat (path, &st) != 0) {
        keel_error_set (err, KEEL_ERR_CONFIG, "%s: cannot read '%s': %s", key, path,
                        strerror (errno));
        return NULL;
    }
    if (!S_ISREG (st.st_mode)) {
        keel_error_set (err, KEEL_ERR_CONFIG, "%s: '%s' is not a file", key, path);
        return NULL;
    }
    if (access (path, R_OK) != 0) {
        keel_error_set (err, KEEL_ERR_CONFIG, "%s: cannot read '%s': %s", key, path,
                        strerror (errno));
        return NULL;
    }
    zconfig_t *root = zconfig_load (path);
    if (!root)
        keel_error_set (err, KEEL_ERR_CONFIG,
                        "%s: '%s' is not a certificate (keel-admin keygen writes one)", key, path);
    return root;
}

keel_err
keel_security_load_public (const char *key, const char *path, char *public_txt, keel_error_t *err)
{
    if (!path || !*path)
        return keel_error_set (err, KEEL_ERR_CONFIG, "%s: required with Security=curve", key);
    zconfig_t *root = s_load (key, path, err);
    if (!root)
        return KEEL_ERR_CONFIG;
    char txt[KEEL_CURVE_KEY_TXT];
    bool ok = s_read_key (root, "public-key", txt);
    zconfig_destroy (&root);
    if (!ok)
        return keel_error_set (err, KEEL_ERR_CONFIG,
                               "%s: '%s' holds no valid curve public-key (keel-admin keygen "
                               "writes one)",
                               key, path);
    snprintf (public_txt, KEEL_CURVE_KEY_TXT, "%s", txt);
    return KEEL_OK;
}

keel_err
keel_security_load_cert (const char *key, const char *path, char *public_txt, char *secret_txt,
                         keel_error_t *err)
{
    if (!path || !*path)
        return keel_error_set (err, KEEL_ERR_CONFIG, "%s: required with Security=curve", key);
    char secret_path[4096];
    if ((size_t) snprintf (secret_path, sizeof secret_path, "%s_secret", path)
        >= sizeof secret_path)
        return keel_error_set (err, KEEL_ERR_CONFIG, "%s: path too long", key);
    struct stat st;
    if (stat (secret_path, &st) == 0 && (st.st_mode & 077))
        return keel_error_set (err, KEEL_ERR_CONFIG,
                               "%s: secret key file '%s' is readable by group or others (mode "
                               "%04o); chmod 600 it",
                               key, secret_path, (unsigned) (st.st_mode & 07777));
    zconfig_t *root = s_load (key, secret_path, err);
    if (!root)
        return KEEL_ERR_CONFIG;
    char pub[KEEL_CURVE_KEY_TXT], sec[KEEL_CURVE_KEY_TXT];
    bool ok = s_read_key (root, "public-key", pub) && s_read_key (root, "secret-key", sec);
    zconfig_destroy (&root);
    // The secret key must be the public key's: a mismatch is a damaged file.
    char derived[KEEL_CURVE_KEY_TXT];
    if (ok && (zmq_curve_public (derived, sec) != 0 || strcmp (derived, pub) != 0))
        ok = false;
    if (!ok)
        return keel_error_set (err, KEEL_ERR_CONFIG,
                               "%s: '%s' holds no valid curve key pair (keel-admin keygen "
                               "writes one)",
                               key, secret_path);
    if (public_txt)
        snprintf (public_txt, KEEL_CURVE_KEY_TXT, "%s", pub);
    if (secret_txt)
        snprintf (secret_txt, KEEL_CURVE_KEY_TXT, "%s", sec);
    return KEEL_OK;
}

keel_err
keel_security_check_dir (const char *key, const char *path, keel_error_t *err)
{
    struct stat st;
    if (!path || !*path)
        return keel_error_set (err, KEEL_ERR_CONFIG,
                               "%s: required with Security=curve (a directory of public "
                               "certificates)",
                               key);
    if (stat (path, &st) != 0)
        return keel_error_set (err, KEEL_ERR_CONFIG, "%s: cannot read '%s': %s", key, path,
                               strerror (errno));
    if (!S_ISDIR (st.st_mode))
        return keel_error_set (err, KEEL_ERR_CONFIG, "%s: '%s' is not a directory", key, path);
    if (access (path, R_OK | X_OK) != 0)
        return keel_error_set (err, KEEL_ERR_CONFIG, "%s: cannot read '%s': %s", key, path,
                               strerror (errno));
    return KEEL_OK;
}

keel_err
keel_security_init (keel_security_t *self, const char *mode, const char *cert_key,
                    const char *cert_path, const char *server_key, const char *server_path,
                    keel_error_t *err)
{
    memset (self, 0, sizeof *self);
    if (!mode || strcmp (mode, "curve") != 0)
        return KEEL_OK;
    self->curve = true;
    keel_err rc =
        keel_security_load_cert (cert_key, cert_path, self->public_txt, self->secret_txt, err);
    if (rc == KEEL_OK && server_key)
        rc = keel_security_load_public (server_key, server_path, self->server_txt, err);
    return rc;
}

void
keel_security_client (zsock_t *sock, const keel_security_t *self, const char *server_override)
{
    if (!self || !self->curve)
        return;
    zsock_set_curve_publickey (sock, self->public_txt);
    zsock_set_curve_secretkey (sock, self->secret_txt);
    zsock_set_curve_serverkey (sock, server_override ? server_override : self->server_txt);
}

void
keel_security_server (zsock_t *sock, const keel_security_t *self, const char *domain)
{
    if (!self || !self->curve)
        return;
    zsock_set_zap_domain (sock, domain);
    zsock_set_curve_server (sock, 1);
    zsock_set_curve_publickey (sock, self->public_txt);
    zsock_set_curve_secretkey (sock, self->secret_txt);
}

const char *
keel_security_role (zmq_msg_t *msg)
{
    const char *role = zmq_msg_gets (msg, "User-Id");
    return role ? role : "";
}

bool
keel_security_role_is (const char *user_id, const char *role)
{
    size_t n = strlen (role);
    return user_id && strncmp (user_id, role, n) == 0 && user_id[n] == ':';
}

void
keel_security_block_hup (void)
{
    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &set, NULL);
}

int
keel_security_hup_fd (void)
{
    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &set, NULL);
    return signalfd (-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

bool
keel_security_hup_taken (int fd)
{
    bool taken = false;
    struct signalfd_siginfo info;
    while (fd >= 0 && read (fd, &info, sizeof info) == (ssize_t) sizeof info)
        taken = true;
    return taken;
}

void
keel_security_warn_open (const char *component)
{
    KEEL_WARN (component, "Security=none: the grid is open, anyone who reaches its ports can "
                          "submit work, post results and run admin commands "
                          "(docs/security.md)");
}

keel_err
keel_security_keygen (const char *name, keel_error_t *err)
{
    char secret[4096];
    if (!name || !*name)
        return keel_error_set (err, KEEL_ERR_INVALID, "keygen: no file name given");
    if ((size_t) snprintf (secret, sizeof secret, "%s_secret", name) >= sizeof secret)
        return keel_error_set (err, KEEL_ERR_INVALID, "keygen: '%s': name too long", name);
    if (access (name, F_OK) == 0 || access (secret, F_OK) == 0)
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "keygen: '%s' or '%s' exists; not overwritten", name, secret);
    zcert_t *cert = zcert_new ();
    if (!cert)
        return keel_error_set (err, KEEL_ERR_NOMEM, "keygen: cannot make a key pair");
    char stamp[32];
    snprintf (stamp, sizeof stamp, "%lld", (long long) zclock_time () / 1000);
    zcert_set_meta (cert, "created-by", "keel-admin keygen");
    zcert_set_meta (cert, "created-unix", "%s", stamp);
    // The secret file is written under a private umask (zcert), then both
    // modes are set explicitly, whatever the umask.
    int rc = zcert_save (cert, name);
    zcert_destroy (&cert);
    if (rc != 0 || chmod (secret, 0600) != 0 || chmod (name, 0644) != 0)
        return keel_error_set (err, KEEL_ERR_IO, "keygen: cannot write '%s': %s", name,
                               strerror (errno));
    return KEEL_OK;
}
