/*  test_help.c — every program the build puts in KEEL_BIN_DIR answers
    --help, -h and --version on stdout with exit 0, at once, contacting
    nothing and creating nothing (DESIGN §10), also when the help option
    follows other arguments ("keel-driver submit --help").

    The programs are found by listing KEEL_BIN_DIR, so a program added
    later is covered without editing this file. No broker listens: the
    broker endpoints point at free loopback ports, and each run is killed
    after RUN_TIMEOUT_MS, which fails the test (a program that goes on to
    connect waits far longer: keel-pi used to submit 8 tasks and wait 120 s).
*/
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define RUN_TIMEOUT_MS 5000
#define MAX_PROGRAMS   64

static const char *s_expected[] = { "keel-broker", "keel-engine", "keel-driver",
                                    "keel-admin",  "keel-pi",     NULL };

//  Points every broker setting at a port where nothing listens, and runs
//  the programs in the test's empty temp dir, so that whatever they would
//  create (a store, a state dir) shows up there.
static void
s_isolate (void)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port ());
    setenv ("KEEL_DSPrimaryBroker", endpoint, 1);
    setenv ("KEEL_Brokers", endpoint, 1);
    cr_assert_eq (chdir (harness_dir ()), 0, "chdir %s", harness_dir ());
}

//  Executables in KEEL_BIN_DIR, sorted; names are strdup'ed into names[].
static int
s_programs (char *names[], int max)
{
    DIR *dir = opendir (KEEL_BIN_DIR);
    cr_assert (dir, "cannot list %s", KEEL_BIN_DIR);
    int n = 0;
    struct dirent *entry;
    while (n < max && (entry = readdir (dir)) != NULL) {
        char path[1024];
        struct stat st;
        snprintf (path, sizeof path, "%s/%s", KEEL_BIN_DIR, entry->d_name);
        if (entry->d_name[0] != '.' && stat (path, &st) == 0 && S_ISREG (st.st_mode)
            && access (path, X_OK) == 0)
            names[n++] = strdup (entry->d_name);
    }
    closedir (dir);
    for (int i = 1; i < n; i++) // insertion sort: a handful of names
        for (int j = i; j > 0 && strcmp (names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    return n;
}

//  Runs program with argv and checks: exit 0 before the deadline, something
//  on stdout that contains `expect`, nothing on stderr.
static void
s_check (const char *program, const char *const argv[], const char *expect)
{
    char shown[256] = "";
    for (int i = 0; argv[i]; i++) {
        strncat (shown, " ", sizeof shown - strlen (shown) - 1);
        strncat (shown, argv[i], sizeof shown - strlen (shown) - 1);
    }
    harness_result_t res;
    int code = harness_run (&res, RUN_TIMEOUT_MS, program, argv);
    cr_assert_neq (code, -1, "%s%s still running after %d ms (killed): it must answer at once",
                   program, shown, RUN_TIMEOUT_MS);
    cr_assert_eq (code, 0, "%s%s: exit %d, stderr: %s", program, shown, code, res.err);
    cr_assert (res.out[0], "%s%s printed nothing on stdout", program, shown);
    cr_assert (strcasestr (res.out, expect), "%s%s: stdout lacks '%s': %s", program, shown, expect,
               res.out);
    cr_assert_str_empty (res.err, "%s%s wrote on stderr: %s", program, shown, res.err);
    harness_result_free (&res);
}

//  Fails when the temp dir (the programs' working directory) holds anything.
static void
s_assert_nothing_created (void)
{
    DIR *dir = opendir (harness_dir ());
    cr_assert (dir);
    struct dirent *entry;
    const char *found = NULL;
    while (!found && (entry = readdir (dir)) != NULL)
        if (strcmp (entry->d_name, ".") != 0 && strcmp (entry->d_name, "..") != 0)
            found = entry->d_name;
    char name[256];
    snprintf (name, sizeof name, "%s", found ? found : "");
    closedir (dir);
    cr_assert (!found, "a program asked for help created '%s' in its working directory", name);
}

Test (help, every_program_answers_help_and_version_at_once, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    s_isolate ();
    char *names[MAX_PROGRAMS];
    int n = s_programs (names, MAX_PROGRAMS);
    for (const char **want = s_expected; *want; want++) {
        bool seen = false;
        for (int i = 0; i < n; i++)
            seen = seen || strcmp (names[i], *want) == 0;
        cr_assert (seen, "%s is not in %s", *want, KEEL_BIN_DIR);
    }
    for (int i = 0; i < n; i++) {
        const char *help[] = { "--help", NULL };
        const char *h[] = { "-h", NULL };
        const char *version[] = { "--version", NULL };
        s_check (names[i], help, "usage");
        s_check (names[i], h, "usage");
        s_check (names[i], version, names[i]);
        free (names[i]);
    }
    s_assert_nothing_created ();
}

Test (help, help_after_other_arguments_still_only_prints_help, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    s_isolate ();
    const char *driver_submit[] = { "submit", "--help", NULL };
    const char *driver_full[] = { "submit",  "--service", "double", "--input", "1",
                                  "--count", "3",         "-h",     NULL };
    const char *pi[] = { "--tasks", "3", "--help", NULL };
    const char *admin_tasks[] = { "tasks", "--help", NULL };
    const char *admin_cancel[] = { "--json", "cancel", "-h", NULL };
    const char *admin_version[] = { "status", "--version", NULL };
    const char *broker[] = { "--set", "Name=x", "--help", NULL };
    const char *engine[] = { "--set", "Slots=1", "--help", NULL };
    s_check ("keel-driver", driver_submit, "usage");
    s_check ("keel-driver", driver_full, "usage");
    s_check ("keel-pi", pi, "usage");
    s_check ("keel-admin", admin_tasks, "usage");
    s_check ("keel-admin", admin_cancel, "usage");
    s_check ("keel-admin", admin_version, "keel-admin");
    s_check ("keel-broker", broker, "usage");
    s_check ("keel-engine", engine, "usage");
    s_assert_nothing_created ();
}
