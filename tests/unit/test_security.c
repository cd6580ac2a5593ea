/*  test_security.c — key files (common/security.h) and the broker's ZAP
    handler (broker/zap.h): what is accepted, what is refused and why, and
    the role each key gets.
*/
#include <criterion/criterion.h>
#include <czmq.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "security.h"
#include "zap.h"

static char s_dir[256];

static void
s_setup (void)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/keel-unit-sec-XXXXXX");
    cr_assert_not_null (mkdtemp (s_dir));
}

static void
s_teardown (void)
{
    zdir_t *dir = zdir_new (s_dir, NULL);
    if (dir)
        zdir_remove (dir, true);
    zdir_destroy (&dir);
}

static char *
s_path (char *buf, size_t size, const char *name)
{
    snprintf (buf, size, "%s/%s", s_dir, name);
    return buf;
}

static mode_t
s_mode (const char *path)
{
    struct stat st;
    cr_assert_eq (stat (path, &st), 0, "%s missing", path);
    return st.st_mode & 07777;
}

Test (security, keygen_writes_a_public_0644_and_a_secret_0600_file, .init = s_setup,
      .fini = s_teardown)
{
    mode_t old = umask (0);
    char name[300], secret[320];
    keel_error_t err = { "" };
    cr_assert_eq (keel_security_keygen (s_path (name, sizeof name, "k"), &err), KEEL_OK, "%s",
                  err.text);
    umask (old);
    snprintf (secret, sizeof secret, "%s_secret", name);
    cr_expect_eq (s_mode (name), 0644);
    cr_expect_eq (s_mode (secret), 0600);
    char pub[KEEL_CURVE_KEY_TXT], pub2[KEEL_CURVE_KEY_TXT], sec[KEEL_CURVE_KEY_TXT];
    cr_assert_eq (keel_security_load_cert ("CurveKey", name, pub, sec, &err), KEEL_OK, "%s",
                  err.text);
    cr_assert_eq (keel_security_load_public ("BrokerKey", name, pub2, &err), KEEL_OK, "%s",
                  err.text);
    cr_expect_str_eq (pub, pub2);
    cr_expect_eq (strlen (sec), 40);
    // Never over an existing certificate.
    cr_expect_neq (keel_security_keygen (name, &err), KEEL_OK);
    cr_expect (strstr (err.text, "not overwritten"), "%s", err.text);
}

Test (security, a_secret_key_others_may_read_is_refused_naming_the_file, .init = s_setup,
      .fini = s_teardown)
{
    char name[300], secret[320];
    keel_error_t err = { "" };
    cr_assert_eq (keel_security_keygen (s_path (name, sizeof name, "k"), &err), KEEL_OK);
    snprintf (secret, sizeof secret, "%s_secret", name);
    const mode_t bad[] = { 0640, 0604, 0644, 0660 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq (chmod (secret, bad[i]), 0);
        cr_expect_eq (keel_security_load_cert ("CurveKey", name, NULL, NULL, &err),
                      KEEL_ERR_CONFIG);
        cr_expect (strstr (err.text, secret) && strstr (err.text, "readable by group or others"),
                   "%s", err.text);
    }
    cr_assert_eq (chmod (secret, 0400), 0);
    cr_expect_eq (keel_security_load_cert ("CurveKey", name, NULL, NULL, &err), KEEL_OK, "%s",
                  err.text);
}

Test (security, missing_and_malformed_key_files_are_refused, .init = s_setup, .fini = s_teardown)
{
    char path[300], secret[320], pub[KEEL_CURVE_KEY_TXT];
    keel_error_t err = { "" };
    s_path (path, sizeof path, "none");
    cr_expect_eq (keel_security_load_cert ("CurveKey", path, NULL, NULL, &err), KEEL_ERR_CONFIG);
    cr_expect (strstr (err.text, "CurveKey") && strstr (err.text, path), "%s", err.text);
    cr_expect_eq (keel_security_load_public ("BrokerKey", path, pub, &err), KEEL_ERR_CONFIG);
    cr_expect (strstr (err.text, "BrokerKey"), "%s", err.text);
    cr_expect_eq (keel_security_load_cert ("CurveKey", "", NULL, NULL, &err), KEEL_ERR_CONFIG);
    cr_expect (strstr (err.text, "required"), "%s", err.text);
    // Not a certificate; a certificate whose secret key is not its public key's.
    s_path (path, sizeof path, "junk");
    snprintf (secret, sizeof secret, "%s_secret", path);
    FILE *f = fopen (secret, "w");
    fprintf (f, "curve\n    public-key = \"short\"\n");
    fclose (f);
    chmod (secret, 0600);
    cr_expect_eq (keel_security_load_cert ("CurveKey", path, NULL, NULL, &err), KEEL_ERR_CONFIG);
    cr_expect (strstr (err.text, "no valid curve key pair"), "%s", err.text);
    zcert_t *a = zcert_new (), *b = zcert_new ();
    f = fopen (secret, "w");
    fprintf (f, "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", zcert_public_txt (a),
             zcert_secret_txt (b));
    fclose (f);
    zcert_destroy (&a);
    zcert_destroy (&b);
    cr_expect_eq (keel_security_load_cert ("CurveKey", path, NULL, NULL, &err), KEEL_ERR_CONFIG);
    cr_expect_eq (keel_security_check_dir ("AuthorizedDrivers", path, &err), KEEL_ERR_CONFIG);
    cr_expect (strstr (err.text, "AuthorizedDrivers"), "%s", err.text);
}

Test (security, security_none_needs_no_keys)
{
    keel_security_t sec;
    keel_error_t err = { "" };
    cr_expect_eq (keel_security_init (&sec, "none", "CurveKey", "", "BrokerKey", "", &err),
                  KEEL_OK);
    cr_expect (!sec.curve);
    cr_expect_eq (keel_security_init (&sec, "curve", "CurveKey", "", "BrokerKey", "", &err),
                  KEEL_ERR_CONFIG);
}

Test (security, role_of_a_user_id)
{
    cr_expect (keel_security_role_is ("driver:abc", KEEL_ROLE_DRIVER));
    cr_expect (!keel_security_role_is ("driver:abc", KEEL_ROLE_ENGINE));
    cr_expect (!keel_security_role_is ("drivers:abc", KEEL_ROLE_DRIVER));
    cr_expect (!keel_security_role_is ("driver", KEEL_ROLE_DRIVER));
    cr_expect (!keel_security_role_is ("", KEEL_ROLE_ADMIN));
    cr_expect (!keel_security_role_is (NULL, KEEL_ROLE_ADMIN));
}

// ---------------------------------------------------------------- ZAP

typedef struct {
    keel_security_t server;
    zsock_t *sock;
    int port;
} s_server_t;

static keel_security_t
s_keys (const char *name, const char *dir, const char *server_public)
{
    char path[300], pub[400];
    keel_error_t err = { "" };
    cr_assert_eq (keel_security_keygen (s_path (path, sizeof path, name), &err), KEEL_OK);
    if (dir) {
        zcert_t *cert = zcert_load (path);
        snprintf (pub, sizeof pub, "%s/%s/%s", s_dir, dir, name);
        cr_assert_eq (zcert_save_public (cert, pub), 0);
        zcert_destroy (&cert);
    }
    keel_security_t sec;
    cr_assert_eq (keel_security_init (&sec, "curve", "CurveKey", path, NULL, NULL, &err), KEEL_OK,
                  "%s", err.text);
    if (server_public)
        snprintf (sec.server_txt, sizeof sec.server_txt, "%s", server_public);
    return sec;
}

// Connects a client with keys to a new server socket of domain; returns the
// user id of the first message ("" when none arrived in 2 s).
static void
s_try (const keel_security_t *server, const char *domain, const keel_security_t *client,
       char *user_id, size_t size)
{
    zsock_t *srv = zsock_new (ZMQ_ROUTER);
    keel_security_server (srv, server, domain);
    int port = zsock_bind (srv, "tcp://127.0.0.1:*");
    cr_assert_gt (port, 0);
    zsock_t *cli = zsock_new (ZMQ_DEALER);
    keel_security_client (cli, client, NULL);
    zsock_set_linger (cli, 0);
    zsock_connect (cli, "tcp://127.0.0.1:%d", port);
    zstr_send (cli, "hello");
    zsock_set_rcvtimeo (srv, 2000);
    user_id[0] = 0;
    zmq_msg_t route, body;
    zmq_msg_init (&route);
    zmq_msg_init (&body);
    if (zmq_msg_recv (&route, zsock_resolve (srv), 0) >= 0
        && zmq_msg_recv (&body, zsock_resolve (srv), 0) >= 0)
        snprintf (user_id, size, "%s", keel_security_role (&body));
    zmq_msg_close (&route);
    zmq_msg_close (&body);
    zsock_destroy (&cli);
    zsock_destroy (&srv);
}

Test (zap, gives_each_key_its_role_and_refuses_the_rest, .init = s_setup, .fini = s_teardown,
      .timeout = 60)
{
    char d[300], e[300], a[300];
    zsys_dir_create ("%s", s_path (d, sizeof d, "drivers"));
    zsys_dir_create ("%s", s_path (e, sizeof e, "engines"));
    zsys_dir_create ("%s", s_path (a, sizeof a, "admins"));
    keel_security_t server = s_keys ("broker", NULL, NULL);
    keel_security_t peer = s_keys ("peer", NULL, server.public_txt);
    keel_security_t drv = s_keys ("driver", "drivers", server.public_txt);
    keel_security_t eng = s_keys ("engine", "engines", server.public_txt);
    keel_security_t adm = s_keys ("admin", "admins", server.public_txt);
    keel_security_t stranger = s_keys ("stranger", NULL, server.public_txt);
    keel_zap_config_t zc = { d, e, a, peer.public_txt };
    keel_error_t err = { "" };
    keel_zap_t *zap = keel_zap_new (&zc, &err);
    cr_assert_not_null (zap, "%s", err.text);

    char uid[128], want[128];
    s_try (&server, KEEL_ZAP_DOMAIN_CLIENT, &drv, uid, sizeof uid);
    snprintf (want, sizeof want, "driver:%s", drv.public_txt);
    cr_expect_str_eq (uid, want);
    s_try (&server, KEEL_ZAP_DOMAIN_CLIENT, &eng, uid, sizeof uid);
    snprintf (want, sizeof want, "engine:%s", eng.public_txt);
    cr_expect_str_eq (uid, want);
    s_try (&server, KEEL_ZAP_DOMAIN_ADMIN, &adm, uid, sizeof uid);
    cr_expect (keel_security_role_is (uid, KEEL_ROLE_ADMIN), "%s", uid);
    s_try (&server, KEEL_ZAP_DOMAIN_PAIR, &peer, uid, sizeof uid);
    cr_expect (keel_security_role_is (uid, KEEL_ROLE_PAIR), "%s", uid);

    // Refused: a role on a socket it may not use, and an unknown key.
    struct {
        const char *domain;
        keel_security_t *client;
        bool role;
    } refused[] = {
        { KEEL_ZAP_DOMAIN_ADMIN, &drv, true },   { KEEL_ZAP_DOMAIN_ADMIN, &eng, true },
        { KEEL_ZAP_DOMAIN_CLIENT, &adm, true },  { KEEL_ZAP_DOMAIN_PAIR, &drv, true },
        { KEEL_ZAP_DOMAIN_CLIENT, &peer, true }, { KEEL_ZAP_DOMAIN_CLIENT, &stranger, false }
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        s_try (&server, refused[i].domain, refused[i].client, uid, sizeof uid);
        cr_expect_str_empty (uid, "case %zu let in as %s", i, uid);
        zsock_set_rcvtimeo (keel_zap_actor (zap), 2000);
        bool role = !refused[i].role;
        char text[256] = "";
        cr_expect (keel_zap_recv_refusal (zap, &role, text, sizeof text), "case %zu: no report", i);
        cr_expect_eq (role, refused[i].role, "case %zu: %s", i, text);
    }

    // A key removed from its directory is refused after a reload.
    char pub[400];
    snprintf (pub, sizeof pub, "%s/driver", d);
    cr_assert_eq (unlink (pub), 0);
    keel_zap_reload (zap);
    s_try (&server, KEEL_ZAP_DOMAIN_CLIENT, &drv, uid, sizeof uid);
    cr_expect_str_empty (uid);
    keel_zap_destroy (&zap);
    cr_expect_null (zap);
}

Test (zap, refuses_a_missing_directory, .init = s_setup, .fini = s_teardown)
{
    keel_zap_config_t zc = { "/nonexistent/d", s_dir, s_dir, NULL };
    keel_error_t err = { "" };
    cr_expect_null (keel_zap_new (&zc, &err));
    cr_expect (strstr (err.text, "AuthorizedDrivers") && strstr (err.text, "/nonexistent/d"), "%s",
               err.text);
}
