/*  test_config.c — configuration and usage errors end a program with exit
    code 2 and a message naming the file, the line and the key; keel-admin
    says when no broker answers (exit 3).
*/
#include <stdio.h>
#include <string.h>

#include "harness.h"

#define RUN_TIMEOUT_MS 10000

typedef enum { PROG_BROKER, PROG_ENGINE, PROG_DRIVER } s_prog_t;

static const char *s_names[] = { "keel-broker", "keel-engine", "keel-driver" };

// Lines that make a working configuration for each program, so that a program
// ignoring the bad line would start (and time out) instead of failing early.
static void
s_good_lines (s_prog_t prog, char *buf, size_t size)
{
    char state[512];
    switch (prog) {
        case PROG_BROKER:
            snprintf (buf, size,
                      "# a broker\nEndpoint=tcp://127.0.0.1:%d\nAdminEndpoint=tcp://127.0.0.1:%d\n"
                      "Store=sqlite:%s/config-test.db\n",
                      harness_free_port (), harness_free_port (), harness_dir ());
            break;
        case PROG_ENGINE:
            snprintf (buf, size, "# an engine\nBrokers=tcp://127.0.0.1:%d\nStateDir=%s\nSlots=1\n",
                      harness_free_port (), harness_path (state, sizeof state, ""));
            break;
        case PROG_DRIVER:
            snprintf (buf, size,
                      "# a driver\nDSPrimaryBroker=tcp://127.0.0.1:%d\n! another comment\n",
                      harness_free_port ());
            break;
    }
}

// Runs the program with its ordinary arguments plus extra ones (-c FILE or --set).
static int
s_run (s_prog_t prog, harness_result_t *res, const char *opt, const char *value)
{
    char broker[64];
    snprintf (broker, sizeof broker, "tcp://127.0.0.1:%d", harness_free_port ());
    const char *argv[16];
    int n = 0;
    if (prog == PROG_DRIVER) {
        argv[n++] = opt;
        argv[n++] = value;
        argv[n++] = "--broker";
        argv[n++] = broker;
        argv[n++] = "submit";
        argv[n++] = "--service";
        argv[n++] = "double";
        argv[n++] = "--range";
        argv[n++] = "0:1";
    }
    else {
        argv[n++] = opt;
        argv[n++] = value;
    }
    argv[n] = NULL;
    return harness_run (res, RUN_TIMEOUT_MS, s_names[prog], argv);
}

// Writes the good lines plus bad_line; the bad line's number goes to *line.
static void
s_write_config (s_prog_t prog, const char *file, const char *bad_line, char *path, size_t size,
                int *line)
{
    char text[2048];
    s_good_lines (prog, text, sizeof text);
    *line = 1;
    for (const char *p = text; *p; p++)
        *line += *p == '\n';
    strncat (text, bad_line, sizeof text - strlen (text) - 1);
    strncat (text, "\n", sizeof text - strlen (text) - 1);
    harness_write_file (path, size, file, text);
}

static void
s_check_unknown_key (s_prog_t prog)
{
    char path[512], where[600];
    int line = 0;
    s_write_config (prog, "bad-key.properties", "NoSuchKey=1", path, sizeof path, &line);
    harness_result_t res;
    s_run (prog, &res, "-c", path);
    snprintf (where, sizeof where, "bad-key.properties:%d", line);
    cr_assert_eq (res.code, 2, "%s exited %d (expected 2); stderr:\n%s", s_names[prog], res.code,
                  res.err);
    cr_assert (strstr (res.err, where), "%s: stderr does not name %s:\n%s", s_names[prog], where,
               res.err);
    cr_assert (strstr (res.err, "NoSuchKey"), "%s: stderr does not name the key:\n%s",
               s_names[prog], res.err);
    harness_result_free (&res);
}

static void
s_check_bad_duration (s_prog_t prog, const char *key)
{
    char path[512], where[600], bad[128];
    int line = 0;
    snprintf (bad, sizeof bad, "%s=ten", key);
    s_write_config (prog, "bad-duration.properties", bad, path, sizeof path, &line);
    harness_result_t res;
    s_run (prog, &res, "-c", path);
    snprintf (where, sizeof where, "bad-duration.properties:%d", line);
    cr_assert_eq (res.code, 2, "%s exited %d (expected 2); stderr:\n%s", s_names[prog], res.code,
                  res.err);
    cr_assert (strstr (res.err, where), "%s: stderr does not name %s:\n%s", s_names[prog], where,
               res.err);
    cr_assert (strstr (res.err, key), "%s: stderr does not name %s:\n%s", s_names[prog], key,
               res.err);
    harness_result_free (&res);
}

static void
s_check_missing_file (s_prog_t prog)
{
    char path[512];
    harness_path (path, sizeof path, "no-such-dir/missing.properties");
    harness_result_t res;
    s_run (prog, &res, "-c", path);
    cr_assert_eq (res.code, 2, "%s exited %d (expected 2); stderr:\n%s", s_names[prog], res.code,
                  res.err);
    cr_assert (strstr (res.err, path), "%s: stderr does not name %s:\n%s", s_names[prog], path,
               res.err);
    harness_result_free (&res);
}

static void
s_check_unknown_set (s_prog_t prog)
{
    harness_result_t res;
    s_run (prog, &res, "--set", "NoSuchKey=1");
    cr_assert_eq (res.code, 2, "%s exited %d (expected 2); stderr:\n%s", s_names[prog], res.code,
                  res.err);
    cr_assert (strstr (res.err, "NoSuchKey"), "%s: stderr does not name the key:\n%s",
               s_names[prog], res.err);
    harness_result_free (&res);
}

#define CONFIG_TEST(name)                                                                          \
    Test (config, name, .init = harness_setup, .fini = harness_teardown, .timeout = 30)

CONFIG_TEST (broker_rejects_an_unknown_key_naming_file_and_line)
{
    s_check_unknown_key (PROG_BROKER);
}
CONFIG_TEST (engine_rejects_an_unknown_key_naming_file_and_line)
{
    s_check_unknown_key (PROG_ENGINE);
}
CONFIG_TEST (driver_rejects_an_unknown_key_naming_file_and_line)
{
    s_check_unknown_key (PROG_DRIVER);
}

CONFIG_TEST (broker_rejects_a_bad_duration_naming_file_and_line)
{
    s_check_bad_duration (PROG_BROKER, "HeartbeatInterval");
}
CONFIG_TEST (engine_rejects_a_bad_duration_naming_file_and_line)
{
    s_check_bad_duration (PROG_ENGINE, "PrimaryRetryInterval");
}
CONFIG_TEST (driver_rejects_a_bad_duration_naming_file_and_line)
{
    s_check_bad_duration (PROG_DRIVER, "DSBrokerTimeout");
}

CONFIG_TEST (broker_names_a_missing_config_file)
{
    s_check_missing_file (PROG_BROKER);
}
CONFIG_TEST (engine_names_a_missing_config_file)
{
    s_check_missing_file (PROG_ENGINE);
}
CONFIG_TEST (driver_names_a_missing_config_file)
{
    s_check_missing_file (PROG_DRIVER);
}

CONFIG_TEST (broker_rejects_set_of_an_unknown_key)
{
    s_check_unknown_set (PROG_BROKER);
}
CONFIG_TEST (engine_rejects_set_of_an_unknown_key)
{
    s_check_unknown_set (PROG_ENGINE);
}
CONFIG_TEST (driver_rejects_set_of_an_unknown_key)
{
    s_check_unknown_set (PROG_DRIVER);
}

CONFIG_TEST (admin_rejects_an_unknown_command_without_contacting_a_broker)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port ());
    const char *argv[] = { "-e", endpoint, "frobnicate", NULL };
    harness_result_t res;
    harness_run (&res, RUN_TIMEOUT_MS, "keel-admin", argv);
    cr_assert_eq (res.code, 2, "keel-admin exited %d (expected 2); stderr:\n%s", res.code, res.err);
    cr_assert (strstr (res.err, "frobnicate") && strstr (res.err, "status"),
               "stderr does not name the command and list the commands:\n%s", res.err);
    cr_assert_lt (res.elapsed_ms, 2000, "an unknown command waited for a broker");
    harness_result_free (&res);
}

CONFIG_TEST (admin_rejects_missing_command_arguments)
{
    const char *argv[] = { "config", "set", "HeartbeatInterval", NULL };
    harness_result_t res;
    harness_run (&res, RUN_TIMEOUT_MS, "keel-admin", argv);
    cr_assert_eq (res.code, 2, "keel-admin exited %d (expected 2); stderr:\n%s", res.code, res.err);
    harness_result_free (&res);
}

CONFIG_TEST (admin_gives_up_on_an_unreachable_broker_with_exit_3_within_its_timeout)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port ());
    const char *argv[] = { "-e", endpoint, "--timeout", "1s", "status", NULL };
    harness_result_t res;
    harness_run (&res, RUN_TIMEOUT_MS, "keel-admin", argv);
    cr_assert_eq (res.code, 3, "keel-admin exited %d (expected 3); stderr:\n%s", res.code, res.err);
    cr_assert (strstr (res.err, endpoint) && strstr (res.err, "no answer"),
               "stderr does not say who did not answer:\n%s", res.err);
    cr_assert (res.elapsed_ms >= 900 && res.elapsed_ms < 3000,
               "keel-admin took %lld ms for a 1 s timeout", (long long) res.elapsed_ms);
    harness_result_free (&res);
}

CONFIG_TEST (admin_reads_the_admin_endpoint_from_the_broker_properties_file)
{
    char text[256], path[512], endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port ());
    snprintf (text, sizeof text, "# broker\nEndpoint=tcp://127.0.0.1:1\nAdminEndpoint = %s\n",
              endpoint);
    harness_write_file (path, sizeof path, "broker.properties", text);
    const char *argv[] = { "-c", path, "--timeout", "500ms", "status", NULL };
    harness_result_t res;
    harness_run (&res, RUN_TIMEOUT_MS, "keel-admin", argv);
    cr_assert_eq (res.code, 3, "keel-admin exited %d (expected 3); stderr:\n%s", res.code, res.err);
    cr_assert (strstr (res.err, endpoint), "keel-admin did not use %s from the file:\n%s", endpoint,
               res.err);
    harness_result_free (&res);
}
