/*  harness_curve.c — KEEL_TEST_SECURITY=curve: every process the harness
    starts runs with Security=curve (harness.h, "Security").

    harness_setup makes the keys in the test's temp dir (keys/): one
    certificate per role (broker, driver, engine, admin), the public parts
    of the driver's, engine's and admin's in authorized-drivers/,
    authorized-engines/ and authorized-admins/. Each program started then
    gets the settings of its role as environment variables (KEEL_<Key>,
    below any -c file or --set), and the test process itself the driver's
    (KEEL_DS*), for drivers it runs in-process and keel-driver children.
*/

#include "harness.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static bool s_curve;
static char s_keys[600];
static char *s_env[512]; // environ plus the role's settings, for execve
static char s_extra[8][700];

bool
harness_curve (void)
{
    return s_curve;
}

char *
harness_key (char *buf, size_t size, const char *name)
{
    char rel[300];
    snprintf (rel, sizeof rel, "keys/%s", name);
    return harness_path (buf, size, rel);
}

// Writes a certificate keys/NAME (and NAME_secret); with dir, its public
// part also as keys/DIR/NAME.
static void
s_cert (const char *name, const char *dir)
{
    char path[700];
    zcert_t *cert = zcert_new ();
    cr_assert_not_null (cert);
    cr_assert_eq (zcert_save (cert, harness_key (path, sizeof path, name)), 0, "cannot write %s",
                  path);
    if (dir) {
        char sub[700];
        snprintf (sub, sizeof sub, "%s/%s/%s", s_keys, dir, name);
        cr_assert_eq (zcert_save_public (cert, sub), 0, "cannot write %s", sub);
    }
    zcert_destroy (&cert);
}

void
harness_curve_setup (const char *dir)
{
    const char *mode = getenv ("KEEL_TEST_SECURITY");
    s_curve = mode && strcmp (mode, "curve") == 0;
    if (!s_curve)
        return;
    snprintf (s_keys, sizeof s_keys, "%s/keys", dir);
    const char *dirs[] = { "", "/authorized-drivers", "/authorized-engines", "/authorized-admins" };
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char path[700];
        snprintf (path, sizeof path, "%s%s", s_keys, dirs[i]);
        cr_assert_eq (zsys_dir_create ("%s", path), 0, "cannot create %s", path);
    }
    s_cert ("broker.key", NULL);
    s_cert ("driver.key", "authorized-drivers");
    s_cert ("engine.key", "authorized-engines");
    s_cert ("admin.key", "authorized-admins");
    char path[700];
    setenv ("KEEL_DSSecurity", "curve", 1);
    setenv ("KEEL_DSCurveKey", harness_key (path, sizeof path, "driver.key"), 1);
    setenv ("KEEL_DSBrokerKey", harness_key (path, sizeof path, "broker.key"), 1);
}

char **
harness_curve_env (const char *program)
{
    if (!s_curve)
        return environ;
    const char *base = strrchr (program, '/') ? strrchr (program, '/') + 1 : program;
    int n = 0;
    if (strcmp (base, "keel-broker") == 0) {
        snprintf (s_extra[n++], sizeof s_extra[0], "KEEL_CurveKey=%s/broker.key", s_keys);
        snprintf (s_extra[n++], sizeof s_extra[0], "KEEL_PairPeerKey=%s/broker.key", s_keys);
        snprintf (s_extra[n++], sizeof s_extra[0], "KEEL_AuthorizedDrivers=%s/authorized-drivers",
                  s_keys);
        snprintf (s_extra[n++], sizeof s_extra[0], "KEEL_AuthorizedEngines=%s/authorized-engines",
                  s_keys);
        snprintf (s_extra[n++], sizeof s_extra[0], "KEEL_AuthorizedAdmins=%s/authorized-admins",
                  s_keys);
    }
    else if (strcmp (base, "keel-engine") == 0 || strcmp (base, "keel-admin") == 0) {
        snprintf (s_extra[n++], sizeof s_extra[0], "KEEL_CurveKey=%s/%s.key", s_keys,
                  strcmp (base, "keel-engine") == 0 ? "engine" : "admin");
        snprintf (s_extra[n++], sizeof s_extra[0], "KEEL_BrokerKey=%s/broker.key", s_keys);
    }
    if (n)
        snprintf (s_extra[n++], sizeof s_extra[0], "KEEL_Security=curve");
    int m = 0;
    for (int i = 0; i < n; i++)
        s_env[m++] = s_extra[i];
    for (char **e = environ; *e && m < (int) (sizeof s_env / sizeof *s_env) - 1; e++)
        s_env[m++] = *e;
    s_env[m] = NULL;
    return s_env;
}
