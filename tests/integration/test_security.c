/*  test_security.c — Security=curve (docs/security.md): unknown keys and
    plaintext clients get nothing, each role violation is refused and
    counted while the broker keeps serving, a secret key others may read
    stops a program at start, SIGHUP rereads the authorized keys, the
    metrics endpoint stays off unless MetricsInsecure, keel-admin -c takes
    the broker's Security and public key from the broker's file, and
    Security=none says once that the grid is open.

    Every test but the last runs in the harness's curve mode
    (KEEL_TEST_SECURITY=curve, harness_curve.c): each process started gets
    its role's key; a test that needs another key makes it with zcert.
*/
#include "harness.h"

#include <czmq.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_ATTEMPTS 1000

static void
s_curve_setup (void)
{
    setenv ("KEEL_TEST_SECURITY", "curve", 1);
    harness_setup ();
    cr_assert (harness_curve (), "the harness is not in curve mode");
}

static void
s_plain_setup (void)
{
    unsetenv ("KEEL_TEST_SECURITY");
    unsetenv ("KEEL_DSSecurity");
    harness_setup ();
}

static long long
s_counter (const harness_broker_t *b, const char *name)
{
    char path[64];
    long long v = -1;
    snprintf (path, sizeof path, "counters.%s", name);
    harness_status_int (b, path, &v);
    return v;
}

static bool
s_wait_counter (const harness_broker_t *b, const char *name, long long at_least, int timeout_ms)
{
    char path[64];
    snprintf (path, sizeof path, "counters.%s", name);
    return harness_wait_status (b, path, at_least, timeout_ms);
}

// Runs keel-driver submit against b with the extra --set settings
// (NULL-terminated) and DSBrokerTimeout=2s. Returns the exit code; the
// output in *res (to free).
static int
s_driver (const harness_broker_t *b, harness_result_t *res, const char *const sets[],
          const char *const tail[])
{
    char primary[128];
    snprintf (primary, sizeof primary, "DSPrimaryBroker=%s", b->endpoint);
    const char *argv[32];
    int n = 0;
    argv[n++] = "--set";
    argv[n++] = primary;
    argv[n++] = "--set";
    argv[n++] = "DSBrokerTimeout=2s";
    for (int i = 0; sets && sets[i]; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    for (int i = 0; tail[i]; i++)
        argv[n++] = tail[i];
    argv[n] = NULL;
    return harness_run (res, 60000, "keel-driver", argv);
}

static const char *const s_submit10[] = {
    "submit", "--service", "double", "--range", "0:10", NULL
};

// Result lines with status ok in keel-driver's output.
static int
s_count_ok (const char *out)
{
    int n = 0;
    for (const char *p = out; (p = strstr (p, "\"status\":\"ok\"")); p++)
        n++;
    return n;
}

// A legitimate driver still gets every result.
static void
s_assert_serves (const harness_broker_t *b)
{
    harness_result_t res;
    int code = s_driver (b, &res, NULL, s_submit10);
    HARNESS_ASSERT (code == 0, "the legitimate driver exited %d:\n%s", code, res.err);
    HARNESS_ASSERT (s_count_ok (res.out) == 10, "not 10 results:\n%s", res.out);
    harness_result_free (&res);
}

// A new certificate keys/NAME, its public part also in keys/DIR/ (or not).
static void
s_new_cert (const char *name, const char *dir)
{
    char path[700], pub[800];
    zcert_t *cert = zcert_new ();
    cr_assert_eq (zcert_save (cert, harness_key (path, sizeof path, name)), 0);
    if (dir) {
        snprintf (pub, sizeof pub, "%s/%s/%s", harness_key (path, sizeof path, ""), dir, name);
        cr_assert_eq (zcert_save_public (cert, pub), 0);
    }
    zcert_destroy (&cert);
}

static void
s_grid (harness_broker_t *b)
{
    HARNESS_ASSERT (harness_broker_start (b, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (b, "engine1", 2, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (b, 1, 15000), "engine not online within 15 s");
}

// The first handshake event of a socket's monitor within timeout_ms, 0 for none.
static int
s_handshake_event (void *monitor, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        zmq_pollitem_t item = { monitor, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) (deadline - zclock_mono ())) <= 0)
            break;
        zmq_msg_t head, addr;
        zmq_msg_init (&head);
        zmq_msg_init (&addr);
        if (zmq_msg_recv (&head, monitor, 0) < 6 || zmq_msg_recv (&addr, monitor, 0) < 0) {
            zmq_msg_close (&head);
            zmq_msg_close (&addr);
            break;
        }
        uint16_t event;
        memcpy (&event, zmq_msg_data (&head), sizeof event);
        zmq_msg_close (&head);
        zmq_msg_close (&addr);
        if (event
            & (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
               | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))
            return event;
    }
    return 0;
}

Test (security, unknown_key_is_refused_every_time, .init = s_curve_setup, .fini = harness_teardown,
      .timeout = 240)
{
    harness_broker_t b;
    s_grid (&b);
    char path[700], server[41];
    zcert_t *broker_cert = zcert_load (harness_key (path, sizeof path, "broker.key"));
    cr_assert_not_null (broker_cert);
    snprintf (server, sizeof server, "%s", zcert_public_txt (broker_cert));
    zcert_destroy (&broker_cert);
    long long before = s_counter (&b, "auth_refused");
    cr_assert_eq (before, 0);

    // One context, one fresh unknown key and socket per attempt, each
    // watched by a monitor until its handshake ends (at most 5 s each).
    void *ctx = zmq_ctx_new ();
    int refused = 0, accepted = 0, silent = 0;
    for (int i = 0; i < S_ATTEMPTS; i++) {
        zcert_t *stranger = zcert_new ();
        void *sock = zmq_socket (ctx, ZMQ_DEALER);
        int zero = 0;
        zmq_setsockopt (sock, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt (sock, ZMQ_CURVE_SERVERKEY, server, 40);
        zmq_setsockopt (sock, ZMQ_CURVE_PUBLICKEY, zcert_public_txt (stranger), 40);
        zmq_setsockopt (sock, ZMQ_CURVE_SECRETKEY, zcert_secret_txt (stranger), 40);
        char mon[64];
        snprintf (mon, sizeof mon, "inproc://mon-%d", i);
        cr_assert_eq (zmq_socket_monitor (sock, mon, ZMQ_EVENT_ALL), 0);
        void *monitor = zmq_socket (ctx, ZMQ_PAIR);
        cr_assert_eq (zmq_connect (monitor, mon), 0);
        cr_assert_eq (zmq_connect (sock, b.endpoint), 0);
        int event = s_handshake_event (monitor, 5000);
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            refused++;
        else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            accepted++;
        else
            silent++;
        zmq_socket_monitor (sock, NULL, 0);
        zmq_close (monitor);
        zmq_close (sock);
        zcert_destroy (&stranger);
    }
    zmq_ctx_term (ctx);
    cr_log_info ("unknown keys: %d refused, %d accepted, %d without an answer", refused, accepted,
                 silent);
    HARNESS_ASSERT (refused == S_ATTEMPTS, "%d of %d unknown keys refused (%d accepted, %d silent)",
                    refused, S_ATTEMPTS, accepted, silent);
    HARNESS_ASSERT (s_wait_counter (&b, "auth_refused", S_ATTEMPTS, 10000),
                    "auth_refused is %lld, not %d", s_counter (&b, "auth_refused"), S_ATTEMPTS);
    cr_expect_eq (s_counter (&b, "auth_refused"), S_ATTEMPTS);
    s_assert_serves (&b);
}

Test (security, plaintext_client_gets_nothing, .init = s_curve_setup, .fini = harness_teardown,
      .timeout = 120)
{
    harness_broker_t b;
    s_grid (&b);
    // keel-driver and keel-admin without Security=curve: no answer.
    harness_result_t res;
    const char *none[] = { "DSSecurity=none", NULL };
    int code = s_driver (&b, &res, none, s_submit10);
    HARNESS_ASSERT (code == 3, "a plaintext driver exited %d (not 3: no broker):\n%s", code,
                    res.err);
    cr_expect_eq (strlen (res.out), 0, "a plaintext driver got output: %s", res.out);
    harness_result_free (&res);
    const char *argv[] = { "-e", b.admin_endpoint, "--set", "Security=none", "--timeout",
                           "1s", "status",         NULL };
    code = harness_run (&res, 20000, "keel-admin", argv);
    HARNESS_ASSERT (code == 3, "a plaintext keel-admin exited %d:\n%s%s", code, res.out, res.err);
    harness_result_free (&res);
    // A raw plaintext DEALER: the handshake never succeeds, nothing arrives.
    void *ctx = zmq_ctx_new ();
    void *sock = zmq_socket (ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt (sock, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq (zmq_socket_monitor (sock, "inproc://plain-mon", ZMQ_EVENT_ALL), 0);
    void *monitor = zmq_socket (ctx, ZMQ_PAIR);
    zmq_connect (monitor, "inproc://plain-mon");
    zmq_connect (sock, b.endpoint);
    zmq_send (sock, "hello", 5, ZMQ_DONTWAIT);
    int event = s_handshake_event (monitor, 3000);
    cr_expect_neq (event, ZMQ_EVENT_HANDSHAKE_SUCCEEDED, "a plaintext handshake succeeded");
    zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
    cr_expect_eq (zmq_poll (&item, 1, 1000), 0, "a plaintext client got a message");
    zmq_socket_monitor (sock, NULL, 0);
    zmq_close (monitor);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    s_assert_serves (&b);
}

Test (security, each_role_violation_is_refused_and_counted, .init = s_curve_setup,
      .fini = harness_teardown, .timeout = 240)
{
    harness_broker_t b;
    s_grid (&b);
    char engine_key[700], driver_key[700], broker_key[700], set1[800], set2[800], set3[800];
    harness_key (engine_key, sizeof engine_key, "engine.key");
    harness_key (driver_key, sizeof driver_key, "driver.key");
    harness_key (broker_key, sizeof broker_key, "broker.key");
    long long roles = 0;

    // An engine key cannot submit (nor cancel, nor read results: every
    // driver message from it is dropped).
    harness_result_t res;
    snprintf (set1, sizeof set1, "DSCurveKey=%s", engine_key);
    const char *as_engine[] = { set1, NULL };
    int code = s_driver (&b, &res, as_engine, s_submit10);
    HARNESS_ASSERT (code == 3, "a driver with an engine key exited %d:\n%s", code, res.err);
    harness_result_free (&res);
    HARNESS_ASSERT (s_wait_counter (&b, "role_refused", roles + 1, 5000),
                    "role_refused did not grow for a driver with an engine key");
    roles = s_counter (&b, "role_refused");

    // A driver key cannot log in as an engine (nor post results).
    snprintf (set2, sizeof set2, "CurveKey=%s", driver_key);
    const char *as_driver[] = { set2, NULL };
    pid_t fake = harness_engine_start (&b, "fake-engine", 2, as_driver);
    HARNESS_ASSERT (fake > 0, "the engine did not start");
    HARNESS_ASSERT (s_wait_counter (&b, "role_refused", roles + 1, 10000),
                    "role_refused did not grow for an engine with a driver key");
    long long online = -1;
    harness_status_int (&b, "engines.online", &online);
    HARNESS_ASSERT (online == 1, "%lld engines online: the driver key logged in as one", online);
    harness_stop (fake, 5000);
    roles = s_counter (&b, "role_refused");

    // Another authorized engine key cannot log in as this engine (its id
    // copied into a fresh state directory).
    s_new_cert ("engine2.key", "authorized-engines");
    char id_src[700], id_dst[800], state[700], key2e[700], set5[800];
    harness_path (id_src, sizeof id_src, "engine1.state/engine-id");
    harness_path (state, sizeof state, "engine2.state");
    cr_assert_eq (mkdir (state, 0700), 0);
    snprintf (id_dst, sizeof id_dst, "%s/engine-id", state);
    char *id_text = harness_read_file (id_src);
    cr_assert_not_null (id_text, "no %s", id_src);
    FILE *idf = fopen (id_dst, "w");
    fputs (id_text, idf);
    fclose (idf);
    free (id_text);
    snprintf (set5, sizeof set5, "CurveKey=%s", harness_key (key2e, sizeof key2e, "engine2.key"));
    const char *as_engine2[] = { set5, NULL };
    pid_t twin = harness_engine_start (&b, "engine2", 2, as_engine2);
    HARNESS_ASSERT (twin > 0, "the second engine did not start");
    HARNESS_ASSERT (s_wait_counter (&b, "role_refused", roles + 1, 10000),
                    "role_refused did not grow for a login as another key's engine");
    harness_stop (twin, 5000);
    roles = s_counter (&b, "role_refused");

    // Only admin keys reach admin commands: a driver's and an engine's
    // keys get no answer.
    const char *keys[] = { driver_key, engine_key };
    for (int i = 0; i < 2; i++) {
        snprintf (set3, sizeof set3, "CurveKey=%s", keys[i]);
        const char *argv[] = { "-e", b.admin_endpoint, "--set", set3, "--timeout",
                               "1s", "status",         NULL };
        code = harness_run (&res, 20000, "keel-admin", argv);
        HARNESS_ASSERT (code == 3, "keel-admin with a %s key exited %d:\n%s%s",
                        i ? "engine" : "driver", code, res.out, res.err);
        harness_result_free (&res);
        HARNESS_ASSERT (s_wait_counter (&b, "role_refused", roles + 1, 5000),
                        "role_refused did not grow for keel-admin with a %s key",
                        i ? "engine" : "driver");
        roles = s_counter (&b, "role_refused");
    }

    // A driver sees and acknowledges only its own services: another
    // authorized driver key cannot attach this one's service.
    const char *detach[] = { "submit", "--service", "double", "--range", "0:10", "--detach", NULL };
    code = s_driver (&b, &res, NULL, detach);
    HARNESS_ASSERT (code == 0, "submit --detach exited %d:\n%s", code, res.err);
    char service[64] = ""; // submit --detach prints the service id alone
    sscanf (res.out, "%63s", service);
    harness_result_free (&res);
    HARNESS_ASSERT (*service, "no service id from submit --detach");
    s_new_cert ("driver2.key", "authorized-drivers");
    char set4[800], key2[700];
    snprintf (set4, sizeof set4, "DSCurveKey=%s", harness_key (key2, sizeof key2, "driver2.key"));
    const char *as_other[] = { set4, NULL };
    const char *attach[] = { "attach", service, "--all", NULL };
    code = s_driver (&b, &res, as_other, attach);
    HARNESS_ASSERT (code != 0, "another driver key attached the service:\n%s", res.out);
    cr_expect_eq (strlen (res.out), 0, "another driver key got results: %s", res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (s_wait_counter (&b, "role_refused", roles + 1, 5000),
                    "role_refused did not grow for another driver's attach");
    // Its own key may.
    code = s_driver (&b, &res, NULL, attach);
    HARNESS_ASSERT (code == 0, "the service's own key could not attach it (%d):\n%s", code,
                    res.err);
    HARNESS_ASSERT (s_count_ok (res.out) == 10, "not 10 results:\n%s", res.out);
    harness_result_free (&res);

    // Refusals are logged (at a rate limit) and the broker keeps serving.
    HARNESS_ASSERT (harness_wait_log ("broker.err", "role refused", 1, 0), "no refusal logged");
    s_assert_serves (&b);
    HARNESS_ASSERT (harness_alive (b.pid), "keel-broker died");
}

Test (security, readable_secret_key_is_refused_at_start, .init = s_curve_setup,
      .fini = harness_teardown, .timeout = 60)
{
    char key[700], secret[720];
    harness_key (key, sizeof key, "broker.key");
    snprintf (secret, sizeof secret, "%s_secret", key);
    cr_assert_eq (chmod (secret, 0644), 0);
    harness_result_t res;
    const char *argv[] = { "--set", "Store=memory:", "--set", "Endpoint=tcp://127.0.0.1:0", NULL };
    int code = harness_run (&res, 20000, "keel-broker", argv);
    cr_assert_eq (code, 2, "keel-broker exited %d with a readable secret key:\n%s", code, res.err);
    cr_assert (strstr (res.err, secret) && strstr (res.err, "readable by group or others"),
               "the error does not name the file:\n%s", res.err);
    harness_result_free (&res);
    cr_assert_eq (chmod (secret, 0600), 0);
    // The engine too.
    harness_key (key, sizeof key, "engine.key");
    snprintf (secret, sizeof secret, "%s_secret", key);
    cr_assert_eq (chmod (secret, 0640), 0);
    const char *eargv[] = { "--set", "Brokers=tcp://127.0.0.1:9", NULL };
    code = harness_run (&res, 20000, "keel-engine", eargv);
    cr_assert_eq (code, 2, "keel-engine exited %d with a readable secret key:\n%s", code, res.err);
    cr_assert (strstr (res.err, secret), "the error does not name the file:\n%s", res.err);
    harness_result_free (&res);
    cr_assert_eq (chmod (secret, 0600), 0);
    // Missing and malformed files, a missing directory: errors naming them.
    const char *bad[][2] = { { "CurveKey=/nonexistent/k", "/nonexistent/k" },
                             { "AuthorizedDrivers=/nonexistent/dir", "/nonexistent/dir" },
                             { "CurveKey=/etc/hostname", "/etc/hostname" } };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *bargv[] = { "--set", "Store=memory:", "--set", bad[i][0], NULL };
        code = harness_run (&res, 20000, "keel-broker", bargv);
        cr_expect_eq (code, 2, "keel-broker with %s exited %d:\n%s", bad[i][0], code, res.err);
        cr_expect (strstr (res.err, bad[i][1]), "the error does not name %s:\n%s", bad[i][1],
                   res.err);
        harness_result_free (&res);
    }
}

Test (security, sighup_rereads_the_authorized_keys, .init = s_curve_setup, .fini = harness_teardown,
      .timeout = 120)
{
    harness_broker_t b;
    s_grid (&b);
    s_assert_serves (&b);
    char dir[700], pub[800];
    snprintf (pub, sizeof pub, "%s/authorized-drivers/driver.key",
              harness_key (dir, sizeof dir, ""));
    cr_assert_eq (unlink (pub), 0, "cannot remove %s", pub);
    harness_signal (b.pid, SIGHUP);
    HARNESS_ASSERT (harness_wait_log ("broker.err", "SIGHUP: authorized keys reread", 1, 5000),
                    "no reread logged after SIGHUP");
    harness_result_t res;
    int code = s_driver (&b, &res, NULL, s_submit10);
    HARNESS_ASSERT (code == 3, "a removed driver key still connected (exit %d):\n%s", code,
                    res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (s_wait_counter (&b, "auth_refused", 1, 5000),
                    "auth_refused did not grow for the removed key");
    HARNESS_ASSERT (harness_alive (b.pid), "keel-broker died on SIGHUP");
}

// Whether something accepts TCP connections on 127.0.0.1:port.
static bool
s_listening (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    bool ok = connect (fd, (struct sockaddr *) &sa, sizeof sa) == 0;
    close (fd);
    return ok;
}

static bool
s_listening_cond (void *arg)
{
    return s_listening (*(int *) arg);
}

// keel-admin -c broker.properties takes Security and the broker's public
// key (the public file of the broker's CurveKey) from the broker's file,
// and the admin's own certificate from its environment. keel-admin runs
// through env(1) so that the harness's KEEL_Security and KEEL_BrokerKey
// for keel-admin (harness_curve.c) are not there: only the file says
// curve. --set still wins over the file, and without an admin certificate
// keel-admin says where one goes.
Test (security, keel_admin_takes_security_and_broker_key_from_the_broker_file,
      .init = s_curve_setup, .fini = harness_teardown, .timeout = 120)
{
    harness_broker_t b;
    HARNESS_ASSERT (harness_broker_start (&b, "broker", NULL), "keel-broker did not start");
    // The broker's file as an operator writes it, with the settings the
    // harness gave this broker.
    char file[700], keys[700], admin_key[700];
    harness_path (file, sizeof file, "broker.properties");
    harness_key (keys, sizeof keys, "");
    FILE *f = fopen (file, "w");
    cr_assert_not_null (f);
    fprintf (f,
             "Endpoint=%s\nAdminEndpoint=%s\nSecurity=curve\nCurveKey=%sbroker.key\n"
             "AuthorizedDrivers=%sauthorized-drivers\nAuthorizedEngines=%sauthorized-engines\n"
             "AuthorizedAdmins=%sauthorized-admins\n",
             b.endpoint, b.admin_endpoint, keys, keys, keys, keys);
    fclose (f);
    char admin[600], cert[800];
    snprintf (admin, sizeof admin, "%s/keel-admin", KEEL_BIN_DIR);
    snprintf (cert, sizeof cert, "KEEL_CurveKey=%s",
              harness_key (admin_key, sizeof admin_key, "admin.key"));

    // The file's Security and the broker's key, the admin's certificate.
    harness_result_t res;
    const char *with_cert[] = { "-u", "KEEL_Security", "-u", "KEEL_BrokerKey", cert, admin, "-c",
                                file, "--timeout",     "5s", "status",         NULL };
    int code = harness_run (&res, 20000, "/usr/bin/env", with_cert);
    HARNESS_ASSERT (code == 0, "keel-admin -c exited %d:\n%s%s", code, res.out, res.err);
    cr_expect (strstr (res.out, "# Broker") != NULL, "no status:\n%s", res.out);
    harness_result_free (&res);

    // --set wins over the file: a plaintext request gets nothing.
    const char *plain[] = { "-u",        "KEEL_Security",
                            "-u",        "KEEL_BrokerKey",
                            cert,        admin,
                            "-c",        file,
                            "--set",     "Security=none",
                            "--timeout", "1s",
                            "status",    NULL };
    code = harness_run (&res, 20000, "/usr/bin/env", plain);
    HARNESS_ASSERT (code == 3, "keel-admin -c --set Security=none exited %d:\n%s%s", code, res.out,
                    res.err);
    harness_result_free (&res);

    // No admin certificate: a usage error that says where one goes (never
    // the broker's own CurveKey).
    const char *no_cert[] = { "-u", "KEEL_Security", "-u",  "KEEL_BrokerKey",
                              "-u", "KEEL_CurveKey", admin, "-c",
                              file, "status",        NULL };
    code = harness_run (&res, 20000, "/usr/bin/env", no_cert);
    HARNESS_ASSERT (code == 2, "keel-admin -c without CurveKey exited %d:\n%s%s", code, res.out,
                    res.err);
    cr_expect (strstr (res.err, "CurveKey") && strstr (res.err, "authorized-admins"),
               "the error does not say where the admin's key goes: %s", res.err);
    harness_result_free (&res);
}

Test (security, metrics_endpoint_is_off_unless_metrics_insecure, .init = s_curve_setup,
      .fini = harness_teardown, .timeout = 120)
{
    int port = harness_free_port ();
    char set[64];
    snprintf (set, sizeof set, "MetricsEndpoint=127.0.0.1:%d", port);
    const char *sets[] = { set, NULL };
    harness_broker_t b;
    HARNESS_ASSERT (harness_broker_start (&b, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_wait_log ("broker.err", "not served: Security=curve", 1, 5000),
                    "no warning that MetricsEndpoint is off");
    cr_expect (!s_listening (port), "MetricsEndpoint listens with Security=curve");
    harness_stop (b.pid, 10000);
    const char *insecure[] = { set, "MetricsInsecure=true", NULL };
    HARNESS_ASSERT (harness_broker_restart (&b, insecure), "keel-broker did not restart");
    HARNESS_ASSERT (harness_poll_until (s_listening_cond, &port, 10000),
                    "MetricsEndpoint not served with MetricsInsecure=true");
}

Test (security, security_none_warns_once_that_the_grid_is_open, .init = s_plain_setup,
      .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t b;
    s_grid (&b);
    HARNESS_ASSERT (harness_wait_log ("broker.err", "Security=none: the grid is open", 1, 5000),
                    "the broker did not warn");
    HARNESS_ASSERT (harness_wait_log ("engine1.err", "Security=none: the grid is open", 1, 5000),
                    "the engine did not warn");
    cr_expect (!harness_wait_log ("broker.err", "Security=none: the grid is open", 2, 0),
               "the broker warned more than once");
    s_assert_serves (&b);
}
