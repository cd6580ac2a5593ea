/*  test_settings.c — the settings table: types, sources, precedence, docs. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "settings.h"

static const keel_setting_def_t s_table[] = {
    { "Name", KEEL_SETTING_STRING, NULL, "keel", 0, 0, false, NULL, "Broker name" },
    { "Endpoint", KEEL_SETTING_STRING, NULL, "tcp://127.0.0.1:7070", 0, 0, false, NULL,
      "Where drivers and engines connect" },
    { "MaxAttempts", KEEL_SETTING_INT, NULL, "3", 1, 100, true, NULL, "Attempts per task" },
    { "Offset", KEEL_SETTING_INT, NULL, "0", 0, 0, false, NULL, "Any integer" },
    { "Slots", KEEL_SETTING_INT, NULL, NULL, 0, 0, false, NULL, "Slots (default: cores)" },
    { "Ratio", KEEL_SETTING_DOUBLE, NULL, "0.5", 0, 1, true, NULL, "A fraction" },
    { "CancelRedundant", KEEL_SETTING_BOOL, NULL, "true", 0, 0, true, NULL, "Cancel copies" },
    { "HeartbeatInterval", KEEL_SETTING_DURATION, "s", "1", 0.05, 60, true, NULL,
      "Heartbeat period" },
    { "EngineTimeoutMinutes", KEEL_SETTING_DURATION, "min", "10", 0, 0, true, NULL,
      "Silence before an engine is lost" },
    { "RescheduleDelay", KEEL_SETTING_DURATION, "ms", "500", 0, 0, false, NULL, "Delay" },
    { "Lease", KEEL_SETTING_DURATION, "h", "2", 0, 0, false, NULL, "Lease" },
    { "ClockSkew", KEEL_SETTING_DURATION, "ms", "0", -1000, 1000, false, NULL, "Skew" },
    { "EngineTimeoutAction", KEEL_SETTING_ENUM, NULL, "exit", 0, 0, false, "exit|restart",
      "What to do when the broker is gone" },
    { "service.*.exec", KEEL_SETTING_STRING, NULL, NULL, 0, 0, false, NULL, "Command to run" },
    { "service.*.timeout", KEEL_SETTING_DURATION, "s", "0", 0, 0, false, NULL,
      "Task time limit (0: none)" },
    KEEL_SETTINGS_END
};

static keel_settings_t *
s_new (void)
{
    keel_error_t err = { "" };
    keel_settings_t *s = keel_settings_new (s_table, &err);
    cr_assert_not_null (s, "%s", err.text);
    return s;
}

//  Writes text to a new temporary file; path must hold 32 bytes.
static void
s_write_file (char *path, const char *text)
{
    strcpy (path, "/tmp/keel-settings-XXXXXX");
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    cr_assert_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
}

static int64_t
s_ms (const char *text, const char *unit)
{
    int64_t ms = -1;
    keel_error_t err = { "" };
    cr_assert_eq (keel_duration_parse (text, unit, &ms, &err), KEEL_OK, "'%s': %s", text, err.text);
    return ms;
}

//  Sets key=value from "--set" and expects failure with message.
static void
s_expect_set_error (const char *key, const char *value, const char *message)
{
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_neq (keel_settings_set (s, key, value, "--set", &err), KEEL_OK);
    cr_expect_str_eq (err.text, message);
    keel_settings_destroy (&s);
}

//  ---- durations

Test (duration, reads_every_unit)
{
    cr_expect_eq (s_ms ("500ms", "s"), 500);
    cr_expect_eq (s_ms ("30s", "ms"), 30000);
    cr_expect_eq (s_ms ("5m", "s"), 300000);
    cr_expect_eq (s_ms ("5min", "s"), 300000);
    cr_expect_eq (s_ms ("2h", "s"), 7200000);
}

Test (duration, reads_fractional_values)
{
    cr_expect_eq (s_ms ("1.5s", "ms"), 1500);
    cr_expect_eq (s_ms ("0.5h", "s"), 1800000);
    cr_expect_eq (s_ms (".25s", "ms"), 250);
    cr_expect_eq (s_ms ("0.05", "s"), 50);
}

Test (duration, reads_a_bare_number_in_the_key_unit)
{
    cr_expect_eq (s_ms ("250", "ms"), 250);
    cr_expect_eq (s_ms ("30", "s"), 30000);
    cr_expect_eq (s_ms ("10", "min"), 600000);
    cr_expect_eq (s_ms ("2", "h"), 7200000);
    cr_expect_eq (s_ms ("7", NULL), 7);
}

Test (duration, allows_a_space_before_the_unit)
{
    cr_expect_eq (s_ms ("30 s", "ms"), 30000);
}

Test (duration, rejects_text_that_is_not_a_duration)
{
    const char *bad[] = { "ten", "", "s", "5x", "5 mins", "1.2.3", "0x10", "1e3", "--5", "5s5" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 0;
        keel_error_t err = { "" };
        cr_expect_eq (keel_duration_parse (bad[i], "s", &ms, &err), KEEL_ERR_INVALID, "'%s'",
                      bad[i]);
        char expected[128];
        snprintf (expected, sizeof expected, "expected a duration (e.g. 30s, 5m), got '%s'",
                  bad[i]);
        cr_expect_str_eq (err.text, expected);
    }
}

Test (duration, rejects_a_negative_duration)
{
    int64_t ms = 0;
    keel_error_t err = { "" };
    cr_expect_eq (keel_duration_parse ("-5s", "s", &ms, &err), KEEL_ERR_INVALID);
    cr_expect_str_eq (err.text, "expected a duration that is not negative, got '-5s'");
}

Test (duration, rejects_an_unknown_key_unit)
{
    int64_t ms = 0;
    keel_error_t err = { "" };
    cr_expect_eq (keel_duration_parse ("5", "days", &ms, &err), KEEL_ERR_INVALID);
    cr_expect_str_eq (err.text, "unknown duration unit 'days'");
}

//  ---- booleans

Test (bool, reads_every_spelling)
{
    const char *yes[] = { "true", "yes", "on", "1", "TRUE", "Yes" };
    const char *no[] = { "false", "no", "off", "0", "FALSE", "Off" };
    for (size_t i = 0; i < 6; i++) {
        bool v = false;
        cr_expect_eq (keel_bool_parse (yes[i], &v), KEEL_OK);
        cr_expect (v, "%s", yes[i]);
        v = true;
        cr_expect_eq (keel_bool_parse (no[i], &v), KEEL_OK);
        cr_expect_not (v, "%s", no[i]);
    }
}

Test (bool, rejects_other_text)
{
    bool v = false;
    cr_expect_eq (keel_bool_parse ("maybe", &v), KEEL_ERR_INVALID);
    cr_expect_eq (keel_bool_parse ("", &v), KEEL_ERR_INVALID);
    cr_expect_eq (keel_bool_parse ("2", &v), KEEL_ERR_INVALID);
    s_expect_set_error ("CancelRedundant", "maybe",
                        "--set: CancelRedundant: expected a boolean (true/false, yes/no, on/off, "
                        "1/0), got 'maybe'");
}

//  ---- defaults and readers

Test (settings, holds_every_default)
{
    keel_settings_t *s = s_new ();
    cr_expect_str_eq (keel_settings_str (s, "Name"), "keel");
    cr_expect_eq (keel_settings_int (s, "MaxAttempts"), 3);
    cr_expect_float_eq (keel_settings_double (s, "Ratio"), 0.5, 1e-9);
    cr_expect (keel_settings_bool (s, "CancelRedundant"));
    cr_expect_eq (keel_settings_ms (s, "HeartbeatInterval"), 1000);
    cr_expect_eq (keel_settings_ms (s, "EngineTimeoutMinutes"), 600000);
    cr_expect_eq (keel_settings_ms (s, "RescheduleDelay"), 500);
    cr_expect_eq (keel_settings_ms (s, "Lease"), 7200000);
    cr_expect_str_eq (keel_settings_str (s, "EngineTimeoutAction"), "exit");
    cr_expect_str_eq (keel_settings_origin (s, "Name"), "default");
    keel_settings_destroy (&s);
    cr_expect_null (s);
    keel_settings_destroy (&s);
}

Test (settings, reads_a_key_without_default_as_empty)
{
    keel_settings_t *s = s_new ();
    cr_expect_str_eq (keel_settings_str (s, "Slots"), "");
    cr_expect_eq (keel_settings_int (s, "Slots"), 0);
    cr_expect_str_eq (keel_settings_str (s, "service.x.exec"), "");
    cr_expect_eq (keel_settings_ms (s, "service.x.timeout"), 0);
    keel_settings_destroy (&s);
}

Test (settings, rejects_a_table_whose_default_does_not_parse)
{
    static const keel_setting_def_t bad[] = {
        { "Wait", KEEL_SETTING_DURATION, "s", "soon", 0, 0, false, NULL, "x" }, KEEL_SETTINGS_END
    };
    keel_error_t err = { "" };
    cr_expect_null (keel_settings_new (bad, &err));
    cr_expect_str_eq (err.text,
                      "default of Wait: Wait: expected a duration (e.g. 30s, 5m), got 'soon'");
}

Test (settings, trims_white_space_around_non_string_values)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "MaxAttempts", "  7 ", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_int (s, "MaxAttempts"), 7);
    cr_expect_str_eq (keel_settings_str (s, "MaxAttempts"), "7");
    cr_expect_eq (keel_settings_set (s, "Name", " a b ", "t", NULL), KEEL_OK);
    cr_expect_str_eq (keel_settings_str (s, "Name"), " a b ");
    keel_settings_destroy (&s);
}

//  ---- types and bounds

Test (settings, reads_integers)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "Offset", "-42", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_int (s, "Offset"), -42);
    cr_expect_eq (keel_settings_set (s, "Offset", "9000000000", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_int (s, "Offset"), 9000000000LL);
    keel_settings_destroy (&s);
}

Test (settings, rejects_bad_integers)
{
    s_expect_set_error ("MaxAttempts", "three",
                        "--set: MaxAttempts: expected an integer, got 'three'");
    s_expect_set_error ("MaxAttempts", "3.5", "--set: MaxAttempts: expected an integer, got '3.5'");
    s_expect_set_error ("MaxAttempts", "", "--set: MaxAttempts: expected an integer, got ''");
    s_expect_set_error ("Offset", "99999999999999999999",
                        "--set: Offset: expected an integer, got '99999999999999999999'");
}

Test (settings, enforces_integer_bounds)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "MaxAttempts", "1", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_set (s, "MaxAttempts", "100", "t", NULL), KEEL_OK);
    keel_settings_destroy (&s);
    s_expect_set_error ("MaxAttempts", "0", "--set: MaxAttempts: '0' is out of range (1 to 100)");
    s_expect_set_error ("MaxAttempts", "101",
                        "--set: MaxAttempts: '101' is out of range (1 to 100)");
}

Test (settings, treats_zero_bounds_as_unbounded)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "Offset", "-1000000", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_set (s, "EngineTimeoutMinutes", "100000", "t", NULL), KEEL_OK);
    keel_settings_destroy (&s);
}

Test (settings, reads_doubles_within_bounds)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "Ratio", "0.25", "t", NULL), KEEL_OK);
    cr_expect_float_eq (keel_settings_double (s, "Ratio"), 0.25, 1e-9);
    keel_settings_destroy (&s);
    s_expect_set_error ("Ratio", "1.5", "--set: Ratio: '1.5' is out of range (0 to 1)");
    s_expect_set_error ("Ratio", "half", "--set: Ratio: expected a number, got 'half'");
    s_expect_set_error ("Ratio", "nan", "--set: Ratio: expected a number, got 'nan'");
}

Test (settings, enforces_duration_bounds_in_the_key_unit)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "HeartbeatInterval", "0.05", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_ms (s, "HeartbeatInterval"), 50);
    cr_expect_eq (keel_settings_set (s, "HeartbeatInterval", "1m", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_ms (s, "HeartbeatInterval"), 60000);
    keel_settings_destroy (&s);
    s_expect_set_error ("HeartbeatInterval", "10ms",
                        "--set: HeartbeatInterval: '10ms' is out of range (50 ms to 60 s)");
    s_expect_set_error ("HeartbeatInterval", "2m",
                        "--set: HeartbeatInterval: '2m' is out of range (50 ms to 60 s)");
}

Test (settings, names_key_and_origin_in_a_duration_error)
{
    s_expect_set_error ("EngineTimeoutMinutes", "ten",
                        "--set: EngineTimeoutMinutes: expected a duration (e.g. 30s, 5m), "
                        "got 'ten'");
    s_expect_set_error ("RescheduleDelay", "-5",
                        "--set: RescheduleDelay: expected a duration that is not negative, "
                        "got '-5'");
}

//  ---- keys whose name carries their unit (issue 10, item 9)

static const keel_setting_def_t s_named_table[] = {
    { "EngineTimeoutMinutes", KEEL_SETTING_DURATION, "min", "15", 0.001, 100000, true, NULL,
      "Engine Timeout" },
    { "RetentionHours", KEEL_SETTING_DURATION, "h", "24", 0, 100000, true, NULL, "Retention" },
    { "PollMs", KEEL_SETTING_DURATION, "ms", "100", 0, 0, false, NULL, "Poll" },
    { "HeartbeatInterval", KEEL_SETTING_DURATION, "s", "1s", 0.01, 60, false, NULL, "H" },
    KEEL_SETTINGS_END
};

//  Sets key=value in s_named_table; returns the code, message in err.
static keel_err
s_named_set (const char *key, const char *value, int64_t *ms_p, keel_error_t *err)
{
    keel_settings_t *s = keel_settings_new (s_named_table, err);
    cr_assert_not_null (s, "%s", err->text);
    keel_err rc = keel_settings_set (s, key, value, "--set", err);
    if (rc == KEEL_OK && ms_p)
        *ms_p = keel_settings_ms (s, key);
    keel_settings_destroy (&s);
    return rc;
}

Test (settings, refuses_another_unit_for_a_key_whose_name_carries_its_unit)
{
    keel_error_t err = { "" };
    int64_t ms = -1;
    cr_expect_eq (s_named_set ("EngineTimeoutMinutes", "30s", &ms, &err), KEEL_ERR_CONFIG,
                  "30s was taken as %lld ms", (long long) ms);
    cr_expect_str_eq (err.text, "--set: EngineTimeoutMinutes: expected a number of minutes (the "
                                "name gives the unit; 30s is 0.5), got '30s'");
    cr_expect_eq (s_named_set ("EngineTimeoutMinutes", "2h", NULL, &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text, "--set: EngineTimeoutMinutes: expected a number of minutes (the "
                                "name gives the unit; 2h is 120), got '2h'");
    cr_expect_eq (s_named_set ("EngineTimeoutMinutes", "500ms", NULL, &err), KEEL_ERR_CONFIG);
    cr_expect_eq (s_named_set ("RetentionHours", "30m", NULL, &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text, "--set: RetentionHours: expected a number of hours (the name "
                                "gives the unit; 30m is 0.5), got '30m'");
    cr_expect_eq (s_named_set ("PollMs", "1s", NULL, &err), KEEL_ERR_CONFIG);
}

Test (settings, takes_a_bare_number_or_the_named_unit_for_such_a_key)
{
    keel_error_t err = { "" };
    int64_t ms = -1;
    cr_expect_eq (s_named_set ("EngineTimeoutMinutes", "0.5", &ms, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (ms, 30000);
    cr_expect_eq (s_named_set ("EngineTimeoutMinutes", "30min", &ms, &err), KEEL_OK, "%s",
                  err.text);
    cr_expect_eq (ms, 30 * 60000);
    cr_expect_eq (s_named_set ("EngineTimeoutMinutes", "2 m", &ms, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (ms, 2 * 60000);
    cr_expect_eq (s_named_set ("RetentionHours", "24h", &ms, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (ms, 24 * 3600000LL);
    cr_expect_eq (s_named_set ("PollMs", "250ms", &ms, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (ms, 250);
    // A key without a unit in its name keeps taking any unit.
    cr_expect_eq (s_named_set ("HeartbeatInterval", "500ms", &ms, &err), KEEL_OK, "%s", err.text);
    cr_expect_eq (ms, 500);
}

Test (settings, rejects_a_table_whose_unit_contradicts_the_key_name)
{
    static const keel_setting_def_t bad[] = { { "WaitMinutes", KEEL_SETTING_DURATION, "s", "5", 0,
                                                0, false, NULL, "x" },
                                              KEEL_SETTINGS_END };
    keel_error_t err = { "" };
    cr_expect_null (keel_settings_new (bad, &err));
    cr_expect_str_eq (err.text, "default of WaitMinutes: WaitMinutes: the name says minutes, the "
                                "unit is 's'");
}

Test (settings, documents_the_unit_rule_of_a_key_whose_name_carries_its_unit)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream (&text, &len);
    cr_assert_not_null (out);
    keel_settings_print_markdown (s_named_table, out);
    fclose (out);
    cr_expect_not_null (strstr (text, "Engine Timeout (a number of minutes, as the name says; "
                                      "another unit is refused) (range 0.001 to 100000 min) |"),
                        "%s", text);
    cr_expect_not_null (strstr (text, "H (range 10 ms to 60 s) |"), "%s", text);
    free (text);
}

//  ---- bounds and defaults in messages and docs (issue 10, item 7)

static const keel_setting_def_t s_bytes_table[] = {
    { "MaxOutputBytes", KEEL_SETTING_INT, "bytes", "16777216", 1, 1073741824.0, false, NULL,
      "largest output" },
    { "MaxMessageSize", KEEL_SETTING_INT, "bytes", "67108864", 1024, 2147483647.0, false, NULL,
      "largest message" },
    { "MaxTasks", KEEL_SETTING_INT, NULL, "10", 1, 1000000000, false, NULL, "tasks" },
    { "Prefetch", KEEL_SETTING_INT, "tasks", "0", 0, 100000000, false, NULL, "prefetch" },
    KEEL_SETTINGS_END
};

static keel_err
s_bytes_set (const char *key, const char *value, keel_error_t *err)
{
    keel_settings_t *s = keel_settings_new (s_bytes_table, err);
    cr_assert_not_null (s, "%s", err->text);
    keel_err rc = keel_settings_set (s, key, value, "--set", err);
    keel_settings_destroy (&s);
    return rc;
}

Test (settings, prints_bounds_as_integers_with_units_in_errors)
{
    keel_error_t err = { "" };
    cr_expect_eq (s_bytes_set ("MaxOutputBytes", "0", &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text, "--set: MaxOutputBytes: '0' is out of range (1 byte to 1 GiB)");
    cr_expect_eq (s_bytes_set ("MaxMessageSize", "10", &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text,
                      "--set: MaxMessageSize: '10' is out of range (1 KiB to 2147483647 bytes)");
    cr_expect_eq (s_bytes_set ("MaxTasks", "0", &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text, "--set: MaxTasks: '0' is out of range (1 to 1000000000)");
    cr_expect_eq (s_bytes_set ("Prefetch", "-1", &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text, "--set: Prefetch: '-1' is out of range (0 to 100000000 tasks)");
}

Test (settings, prints_bounds_and_defaults_without_exponents_in_docs_and_help)
{
    void (*printers[]) (const keel_setting_def_t *, FILE *) = { keel_settings_print_markdown,
                                                                keel_settings_print_help };
    for (int i = 0; i < 2; i++) {
        char *text = NULL;
        size_t len = 0;
        FILE *out = open_memstream (&text, &len);
        cr_assert_not_null (out);
        printers[i](s_bytes_table, out);
        fclose (out);
        cr_expect_null (strstr (text, "e+"), "an exponent in:\n%s", text);
        cr_expect_not_null (strstr (text, "(range 1 byte to 1 GiB)"), "%s", text);
        cr_expect_not_null (strstr (text, "(range 1 KiB to 2147483647 bytes)"), "%s", text);
        cr_expect_not_null (strstr (text, "(range 1 to 1000000000)"), "%s", text);
        cr_expect_not_null (strstr (text, "(64 MiB)"), "%s", text);
        free (text);
    }
}

Test (settings, accepts_a_negative_duration_when_the_minimum_is_negative)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "ClockSkew", "-0.5s", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_ms (s, "ClockSkew"), -500);
    keel_settings_destroy (&s);
    s_expect_set_error ("ClockSkew", "-2s",
                        "--set: ClockSkew: '-2s' is out of range (-1000 to 1000 ms)");
}

Test (settings, reads_enums_case_insensitively_as_written_in_the_table)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "EngineTimeoutAction", "RESTART", "t", NULL), KEEL_OK);
    cr_expect_str_eq (keel_settings_str (s, "EngineTimeoutAction"), "restart");
    keel_settings_destroy (&s);
    s_expect_set_error ("EngineTimeoutAction", "reboot",
                        "--set: EngineTimeoutAction: expected one of exit|restart, got 'reboot'");
    s_expect_set_error ("EngineTimeoutAction", "exi",
                        "--set: EngineTimeoutAction: expected one of exit|restart, got 'exi'");
}

Test (settings, checks_a_value_without_applying_it)
{
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_check (s, "MaxAttempts", "5", &err), KEEL_OK);
    cr_expect_eq (keel_settings_int (s, "MaxAttempts"), 3);
    cr_expect_eq (keel_settings_check (s, "MaxAttempts", "x", &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text, "MaxAttempts: expected an integer, got 'x'");
    cr_expect_eq (keel_settings_check (s, "Nope", "x", &err), KEEL_ERR_NOTFOUND);
    cr_expect_str_eq (err.text, "unknown key 'Nope'");
    keel_settings_destroy (&s);
}

//  ---- unknown keys

Test (settings, rejects_an_unknown_key)
{
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_set (s, "Colour", "red", "--set", &err), KEEL_ERR_NOTFOUND);
    cr_expect_str_eq (err.text, "--set: unknown key 'Colour'");
    keel_settings_destroy (&s);
}

Test (settings, suggests_a_key_that_differs_in_case)
{
    s_expect_set_error ("maxattempts", "3",
                        "--set: unknown key 'maxattempts' (did you mean 'MaxAttempts'?)");
    s_expect_set_error ("Service.web.EXEC", "x",
                        "--set: unknown key 'Service.web.EXEC' (did you mean 'service.web.exec'?)");
}

Test (settings, suggests_a_key_with_a_small_typo)
{
    s_expect_set_error ("HeartbeatIntervl", "1",
                        "--set: unknown key 'HeartbeatIntervl' "
                        "(did you mean 'HeartbeatInterval'?)");
}

//  ---- files

Test (settings, applies_a_file_and_records_file_and_line)
{
    char path[32];
    s_write_file (path, "# broker\nName = alpha\n\nMaxAttempts: 5\nservice.web.exec=/bin/cat\n");
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_load_file (s, path, &err), KEEL_OK, "%s", err.text);
    cr_expect_str_eq (keel_settings_str (s, "Name"), "alpha");
    cr_expect_eq (keel_settings_int (s, "MaxAttempts"), 5);
    char origin[64];
    snprintf (origin, sizeof origin, "%s:4", path);
    cr_expect_str_eq (keel_settings_origin (s, "MaxAttempts"), origin);
    snprintf (origin, sizeof origin, "%s:5", path);
    cr_expect_str_eq (keel_settings_origin (s, "service.web.exec"), origin);
    cr_expect_str_eq (keel_settings_origin (s, "Endpoint"), "default");
    keel_settings_destroy (&s);
    unlink (path);
}

Test (settings, applies_repeated_keys_in_order)
{
    char path[32];
    s_write_file (path, "MaxAttempts=5\nMaxAttempts=6\n");
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_load_file (s, path, NULL), KEEL_OK);
    cr_expect_eq (keel_settings_int (s, "MaxAttempts"), 6);
    keel_settings_destroy (&s);
    unlink (path);
}

Test (settings, names_file_and_line_of_a_bad_value)
{
    char path[32];
    s_write_file (path, "Name=x\n\n# c\nEngineTimeoutMinutes = ten\n");
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_load_file (s, path, &err), KEEL_ERR_CONFIG);
    char expected[160];
    snprintf (expected, sizeof expected,
              "%s:4: EngineTimeoutMinutes: expected a duration (e.g. 30s, 5m), got 'ten'", path);
    cr_expect_str_eq (err.text, expected);
    keel_settings_destroy (&s);
    unlink (path);
}

Test (settings, names_file_and_line_of_an_unknown_key)
{
    char path[32];
    s_write_file (path, "Name=x\nFoo=1\n");
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_load_file (s, path, &err), KEEL_ERR_CONFIG);
    char expected[160];
    snprintf (expected, sizeof expected, "%s:2: unknown key 'Foo'", path);
    cr_expect_str_eq (err.text, expected);
    keel_settings_destroy (&s);
    unlink (path);
}

Test (settings, suggests_a_near_miss_in_a_file)
{
    char path[32];
    s_write_file (path, "\nname=x\n");
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_load_file (s, path, &err), KEEL_ERR_CONFIG);
    char expected[160];
    snprintf (expected, sizeof expected, "%s:2: unknown key 'name' (did you mean 'Name'?)", path);
    cr_expect_str_eq (err.text, expected);
    keel_settings_destroy (&s);
    unlink (path);
}

Test (settings, passes_on_a_props_syntax_error)
{
    char path[32];
    s_write_file (path, "Name=\\u00zz\n");
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_load_file (s, path, &err), KEEL_ERR_CONFIG);
    char expected[160];
    snprintf (expected, sizeof expected, "%s:1: malformed \\uXXXX escape", path);
    cr_expect_str_eq (err.text, expected);
    keel_settings_destroy (&s);
    unlink (path);
}

Test (settings, reports_a_missing_file_as_io_error)
{
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_load_file (s, "/tmp/keel-missing.properties", &err), KEEL_ERR_IO);
    cr_expect_str_eq (err.text,
                      "/tmp/keel-missing.properties: cannot open: No such file or directory");
    keel_settings_destroy (&s);
}

//  ---- environment and precedence

Test (settings, reads_the_environment_by_exact_name)
{
    setenv ("KEEL_MaxAttempts", "9", 1);
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_load_env (s, NULL), KEEL_OK);
    unsetenv ("KEEL_MaxAttempts");
    cr_expect_eq (keel_settings_int (s, "MaxAttempts"), 9);
    cr_expect_str_eq (keel_settings_origin (s, "MaxAttempts"), "env KEEL_MaxAttempts");
    keel_settings_destroy (&s);
}

Test (settings, reads_the_environment_by_upper_case_name)
{
    setenv ("KEEL_ENGINETIMEOUTMINUTES", "20", 1);
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_load_env (s, NULL), KEEL_OK);
    unsetenv ("KEEL_ENGINETIMEOUTMINUTES");
    cr_expect_eq (keel_settings_ms (s, "EngineTimeoutMinutes"), 20 * 60000);
    cr_expect_str_eq (keel_settings_origin (s, "EngineTimeoutMinutes"),
                      "env KEEL_ENGINETIMEOUTMINUTES");
    keel_settings_destroy (&s);
}

Test (settings, names_the_variable_in_an_environment_error)
{
    setenv ("KEEL_CancelRedundant", "perhaps", 1);
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_load_env (s, &err), KEEL_ERR_CONFIG);
    unsetenv ("KEEL_CancelRedundant");
    cr_expect_str_eq (err.text, "env KEEL_CancelRedundant: CancelRedundant: expected a boolean "
                                "(true/false, yes/no, on/off, 1/0), got 'perhaps'");
    keel_settings_destroy (&s);
}

Test (settings, gives_set_precedence_over_env_over_file)
{
    char path[32];
    s_write_file (path, "MaxAttempts=4\nName=file\nOffset=1\n");
    setenv ("KEEL_MaxAttempts", "5", 1);
    setenv ("KEEL_Name", "env", 1);
    char *sets[] = { "MaxAttempts=6", "MaxAttempts=7" };
    keel_error_t err = { "" };
    keel_settings_t *s = keel_cli_load (s_table, path, sets, 2, &err);
    unsetenv ("KEEL_MaxAttempts");
    unsetenv ("KEEL_Name");
    unlink (path);
    cr_assert_not_null (s, "%s", err.text);
    cr_expect_eq (keel_settings_int (s, "MaxAttempts"), 7);
    cr_expect_str_eq (keel_settings_origin (s, "MaxAttempts"), "--set");
    cr_expect_str_eq (keel_settings_str (s, "Name"), "env");
    cr_expect_str_eq (keel_settings_origin (s, "Name"), "env KEEL_Name");
    cr_expect_eq (keel_settings_int (s, "Offset"), 1);
    keel_settings_destroy (&s);
}

Test (settings, skips_pattern_keys_in_the_environment)
{
    setenv ("KEEL_service.*.exec", "/bin/false", 1);
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_load_env (s, NULL), KEEL_OK);
    unsetenv ("KEEL_service.*.exec");
    cr_expect_eq (keel_settings_match (s, "service.*.exec", NULL, NULL), 0);
    keel_settings_destroy (&s);
}

Test (settings, sets_a_pair_from_the_command_line)
{
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_set_pair (s, "Endpoint=tcp://*:9000", &err), KEEL_OK);
    cr_expect_str_eq (keel_settings_str (s, "Endpoint"), "tcp://*:9000");
    cr_expect_eq (keel_settings_set_pair (s, "Name==x", &err), KEEL_OK);
    cr_expect_str_eq (keel_settings_str (s, "Name"), "=x");
    cr_expect_eq (keel_settings_set_pair (s, "Name", &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text, "--set: expected KEY=VALUE, got 'Name'");
    cr_expect_eq (keel_settings_set_pair (s, "=x", &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text, "--set: expected KEY=VALUE, got '=x'");
    cr_expect_eq (keel_settings_set_pair (s, "Nope=1", &err), KEEL_ERR_CONFIG);
    cr_expect_str_eq (err.text, "--set: unknown key 'Nope'");
    keel_settings_destroy (&s);
}

Test (settings, keeps_the_given_origin)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "Ratio", "0.1", "keel-admin", NULL), KEEL_OK);
    cr_expect_str_eq (keel_settings_origin (s, "Ratio"), "keel-admin");
    keel_settings_destroy (&s);
}

//  ---- pattern keys

typedef struct {
    int calls;
    char seen[4][64];
} s_match_log_t;

static void
s_collect (const char *key, const char *wildcard, const char *value, void *arg)
{
    s_match_log_t *log = arg;
    if (log->calls < 4)
        snprintf (log->seen[log->calls], sizeof log->seen[0], "%s|%s|%s", key, wildcard, value);
    log->calls++;
}

Test (settings, lists_pattern_keys_in_the_order_first_set)
{
    keel_settings_t *s = s_new ();
    cr_expect_eq (keel_settings_set (s, "service.web.exec", "/bin/cat", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_set (s, "service.my-app_2.exec", "/bin/echo", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_set (s, "service.web.timeout", "30", "t", NULL), KEEL_OK);
    cr_expect_eq (keel_settings_set (s, "service.web.exec", "/bin/tac", "t", NULL), KEEL_OK);
    s_match_log_t log = { 0 };
    cr_expect_eq (keel_settings_match (s, "service.*.exec", s_collect, &log), 2);
    cr_expect_eq (log.calls, 2);
    cr_expect_str_eq (log.seen[0], "service.web.exec|web|/bin/tac");
    cr_expect_str_eq (log.seen[1], "service.my-app_2.exec|my-app_2|/bin/echo");
    cr_expect_eq (keel_settings_ms (s, "service.web.timeout"), 30000);
    cr_expect_eq (keel_settings_ms (s, "service.my-app_2.timeout"), 0);
    cr_expect_str_eq (keel_settings_origin (s, "service.my-app_2.timeout"), "default");
    cr_expect_str_eq (keel_settings_origin (s, "service.web.timeout"), "t");
    keel_settings_destroy (&s);
}

Test (settings, requires_a_plain_non_empty_wildcard_segment)
{
    keel_settings_t *s = s_new ();
    keel_error_t err = { "" };
    cr_expect_eq (keel_settings_set (s, "service..exec", "x", "t", &err), KEEL_ERR_NOTFOUND);
    cr_expect_eq (keel_settings_set (s, "service.a.b.exec", "x", "t", &err), KEEL_ERR_NOTFOUND);
    cr_expect_eq (keel_settings_set (s, "service.a b.exec", "x", "t", &err), KEEL_ERR_NOTFOUND);
    cr_expect_eq (keel_settings_set (s, "service.x.exe", "x", "t", &err), KEEL_ERR_NOTFOUND);
    cr_expect_eq (keel_settings_match (s, "service.*.exec", NULL, NULL), 0);
    keel_settings_destroy (&s);
}

Test (settings, validates_values_of_pattern_keys)
{
    s_expect_set_error ("service.web.timeout", "soon",
                        "--set: service.web.timeout: expected a duration (e.g. 30s, 5m), "
                        "got 'soon'");
}

Test (settings, finds_the_definition_of_a_key_or_its_pattern)
{
    keel_settings_t *s = s_new ();
    const keel_setting_def_t *def = keel_settings_def (s, "service.web.exec");
    cr_assert_not_null (def);
    cr_expect_str_eq (def->name, "service.*.exec");
    def = keel_settings_def (s, "Slots");
    cr_assert_not_null (def);
    cr_expect_eq (def->type, KEEL_SETTING_INT);
    cr_expect_null (keel_settings_def (s, "slots"));
    keel_settings_destroy (&s);
}

//  ---- documentation

//  Reads everything printed by fn into a string (caller frees).
static char *
s_capture (void (*fn) (const keel_setting_def_t *, FILE *))
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream (&text, &len);
    cr_assert_not_null (out);
    fn (s_table, out);
    fclose (out);
    return text;
}

Test (settings, prints_every_key_in_markdown)
{
    char *md = s_capture (keel_settings_print_markdown);
    cr_expect (strstr (md, "| key | type | default | unit | runtime | description |\n") == md);
    for (size_t i = 0; s_table[i].name; i++) {
        char cell[64];
        const char *star = strchr (s_table[i].name, '*');
        if (star)
            snprintf (cell, sizeof cell, "| `%.*s<name>%s` |", (int) (star - s_table[i].name),
                      s_table[i].name, star + 1);
        else
            snprintf (cell, sizeof cell, "| `%s` |", s_table[i].name);
        cr_expect_not_null (strstr (md, cell), "missing %s", cell);
    }
    cr_expect_not_null (strstr (md, "| `EngineTimeoutAction` | enum: exit\\|restart | `exit` |"));
    cr_expect_not_null (strstr (md, "| `HeartbeatInterval` | duration | `1` | s | yes |"));
    free (md);
}

Test (settings, prints_aligned_help_for_every_key)
{
    char *help = s_capture (keel_settings_print_help);
    for (size_t i = 0; s_table[i].name; i++)
        cr_expect_not_null (strstr (help, s_table[i].description), "missing %s", s_table[i].name);
    cr_expect_not_null (strstr (help, "service.<name>.exec"));
    // Every description starts in the same column.
    const char *a = strstr (help, "Broker name"), *b = strstr (help, "Attempts per task");
    const char *la = a, *lb = b;
    while (la > help && la[-1] != '\n')
        la--;
    while (lb > help && lb[-1] != '\n')
        lb--;
    cr_expect_eq (a - la, b - lb);
    free (help);
}

//  ---- command line

static const keel_cli_t s_cli = { "keel-test", "Runs tests.", s_table };

Test (cli, reads_config_and_sets, .init = cr_redirect_stderr)
{
    char path[32];
    s_write_file (path, "Name=fromfile\nMaxAttempts=4\n");
    char *argv[] = { "keel-test", "-c", path, "--set", "MaxAttempts=8", "--set=Offset=-3", NULL };
    int code = -1;
    keel_settings_t *s = keel_cli_parse (&s_cli, 6, argv, &code);
    unlink (path);
    cr_assert_not_null (s);
    cr_expect_eq (code, 0);
    cr_expect_str_eq (keel_settings_str (s, "Name"), "fromfile");
    cr_expect_eq (keel_settings_int (s, "MaxAttempts"), 8);
    cr_expect_eq (keel_settings_int (s, "Offset"), -3);
    keel_settings_destroy (&s);
}

Test (cli, exits_with_usage_for_a_missing_config_file, .init = cr_redirect_stderr)
{
    char *argv[] = { "keel-test", "-c", "/tmp/keel-nope.properties", NULL };
    int code = -1;
    cr_expect_null (keel_cli_parse (&s_cli, 3, argv, &code));
    cr_expect_eq (code, 2);
    fflush (stderr);
    cr_expect_stderr_eq_str (
        "keel-test: /tmp/keel-nope.properties: cannot open: No such file or directory\n");
}

Test (cli, exits_with_usage_for_an_unknown_option, .init = cr_redirect_stderr)
{
    char *argv[] = { "keel-test", "--frobnicate", NULL };
    int code = -1;
    cr_expect_null (keel_cli_parse (&s_cli, 2, argv, &code));
    cr_expect_eq (code, 2);
    fflush (stderr);
    cr_expect_stderr_eq_str ("keel-test: unknown option '--frobnicate' (try --help)\n");
}

Test (cli, exits_with_usage_for_a_stray_argument, .init = cr_redirect_stderr)
{
    char *argv[] = { "keel-test", "extra", NULL };
    int code = -1;
    cr_expect_null (keel_cli_parse (&s_cli, 2, argv, &code));
    cr_expect_eq (code, 2);
    fflush (stderr);
    cr_expect_stderr_eq_str ("keel-test: unexpected argument 'extra' (try --help)\n");
}

Test (cli, exits_with_usage_for_a_bad_set, .init = cr_redirect_stderr)
{
    char *argv[] = { "keel-test", "--set", "MaxAttempts=lots", NULL };
    int code = -1;
    cr_expect_null (keel_cli_parse (&s_cli, 3, argv, &code));
    cr_expect_eq (code, 2);
    fflush (stderr);
    cr_expect_stderr_eq_str ("keel-test: --set: MaxAttempts: expected an integer, got 'lots'\n");
}

Test (cli, exits_with_usage_for_a_missing_option_argument, .init = cr_redirect_stderr)
{
    char *argv[] = { "keel-test", "-c", NULL };
    int code = -1;
    cr_expect_null (keel_cli_parse (&s_cli, 2, argv, &code));
    cr_expect_eq (code, 2);
    fflush (stderr);
    cr_expect_stderr_eq_str ("keel-test: option '-c' needs an argument (try --help)\n");
}

Test (cli, prints_help_and_exits_zero, .init = cr_redirect_stdout)
{
    char *argv[] = { "keel-test", "--help", NULL };
    int code = -1;
    cr_expect_null (keel_cli_parse (&s_cli, 2, argv, &code));
    cr_expect_eq (code, 0);
    fflush (stdout);
    FILE *out = cr_get_redirected_stdout ();
    char line[128] = "";
    cr_assert_not_null (fgets (line, sizeof line, out));
    cr_expect_str_eq (line,
                      "Usage: keel-test [-c FILE] [--set KEY=VALUE]... [--log-level LEVEL]\n");
}

Test (cli, prints_the_version_and_exits_zero, .init = cr_redirect_stdout)
{
    char *argv[] = { "keel-test", "--version", NULL };
    int code = -1;
    cr_expect_null (keel_cli_parse (&s_cli, 2, argv, &code));
    cr_expect_eq (code, 0);
    fflush (stdout);
    char expected[64];
    snprintf (expected, sizeof expected, "keel-test %s\n", KEEL_VERSION);
    cr_expect_stdout_eq_str (expected);
}

Test (cli, prints_the_markdown_table_and_exits_zero, .init = cr_redirect_stdout)
{
    char *argv[] = { "keel-test", "--config-markdown", NULL };
    int code = -1;
    cr_expect_null (keel_cli_parse (&s_cli, 2, argv, &code));
    cr_expect_eq (code, 0);
    fflush (stdout);
    FILE *out = cr_get_redirected_stdout ();
    char line[128] = "";
    cr_assert_not_null (fgets (line, sizeof line, out));
    cr_expect_str_eq (line, "| key | type | default | unit | runtime | description |\n");
}

Test (cli, rejects_a_bad_log_level, .init = cr_redirect_stderr)
{
    char *argv[] = { "keel-test", "--log-level", "loud", NULL };
    int code = -1;
    cr_expect_null (keel_cli_parse (&s_cli, 3, argv, &code));
    cr_expect_eq (code, 2);
    fflush (stderr);
    cr_expect_stderr_eq_str (
        "keel-test: --log-level: expected error, warn, info or debug, got 'loud'\n");
}

static const keel_setting_def_t s_log_table[] = { { "LogLevel", KEEL_SETTING_ENUM, NULL, "info", 0,
                                                    0, true, "error|warn|info|debug", "Log" },
                                                  KEEL_SETTINGS_END };

Test (cli, copies_the_log_level_option_into_a_log_level_key)
{
    keel_cli_t cli = { "keel-test", NULL, s_log_table };
    char *argv[] = { "keel-test", "--set", "LogLevel=warn", "--log-level", "DEBUG", NULL };
    int code = -1;
    keel_settings_t *s = keel_cli_parse (&cli, 5, argv, &code);
    cr_assert_not_null (s);
    cr_expect_str_eq (keel_settings_str (s, "LogLevel"), "debug");
    cr_expect_str_eq (keel_settings_origin (s, "LogLevel"), "--log-level");
    keel_settings_destroy (&s);
    keel_log_init (KEEL_LOG_INFO);
}
