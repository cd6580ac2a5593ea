/*  test_admin_errors.c — what keel-admin prints when the broker refuses
    (issue 10): each error names keel-admin once, then the command, then the
    problem ("keel-admin: config set: EnginePrefetch: expected an integer,
    got '5x'", item 6); a duration key whose name carries its unit refuses
    another unit through keel-admin config set too, and config get shows the
    value in the unit of the name (item 9).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

// Occurrences of needle in text.
static int
s_count (const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr (p, needle)); p += strlen (needle))
        n++;
    return n;
}

Test (admin_errors, config_set_names_keel_admin_once, .init = harness_setup,
      .fini = harness_teardown, .timeout = 30)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    harness_result_t res;
    int code = harness_admin (&broker, &res, false, "config", "set", "EnginePrefetch", "5x", NULL);
    cr_expect_eq (code, 1, "exit %d", code);
    cr_expect_str_eq (res.err, "keel-admin: config set: EnginePrefetch: expected an integer, "
                               "got '5x'\n");
    harness_result_free (&res);
}

Test (admin_errors, every_refusal_names_keel_admin_once, .init = harness_setup,
      .fini = harness_teardown, .timeout = 30)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    const char *cases[][5] = {
        { "config", "set", "EnginePrefetch", "5x", "EnginePrefetch" },
        { "config", "set", "EnginePrefetch", "100000", "out of range (0 to 10000 tasks)" },
        { "config", "set", "EnginePrefech", "5", "did you mean 'EnginePrefetch'" },
        { "config", "set", "MaxMessageSize", "5", "cannot be changed while the broker runs" },
        { "config", "set", "CancelRedundant", "maybe", "expected a boolean" },
        { "config", "set", "LogLevel", "loud", "expected one of" },
        { "config", "get", "NoSuchKey", NULL, "unknown key 'NoSuchKey'" },
        { "tasks", "no-such-service", NULL, NULL, "no service 'no-such-service'" },
        { "cancel", "no-such-service", NULL, NULL, "cancel: no service 'no-such-service'" },
        { "drain", "no-such-engine", NULL, NULL, "drain: no engine 'no-such-engine'" },
        { "unblacklist", "no-such-engine", NULL, NULL, "unblacklist: no engine 'no-such-engine'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        harness_result_t res;
        int code = harness_admin (&broker, &res, false, cases[i][0], cases[i][1], cases[i][2],
                                  cases[i][3], NULL);
        cr_expect_eq (code, 1, "%s %s: exit %d", cases[i][0], cases[i][1], code);
        // Hints may name commands ("keel-admin services lists them"), not prefix again.
        cr_expect (strncmp (res.err, "keel-admin: ", 12) == 0
                       && s_count (res.err, "keel-admin: ") == 1,
                   "%s %s %s: keel-admin not named exactly once at the start: %s", cases[i][0],
                   cases[i][1], cases[i][2] ? cases[i][2] : "", res.err);
        cr_expect (strstr (res.err, cases[i][4]), "%s %s %s: '%s' not in: %s", cases[i][0],
                   cases[i][1], cases[i][2] ? cases[i][2] : "", cases[i][4], res.err);
        harness_result_free (&res);
    }
}

Test (admin_errors, a_key_named_in_minutes_refuses_seconds_through_keel_admin,
      .init = harness_setup, .fini = harness_teardown, .timeout = 30)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    harness_result_t res;
    int code =
        harness_admin (&broker, &res, false, "config", "set", "EngineTimeoutMinutes", "30s", NULL);
    cr_expect_eq (code, 1, "config set EngineTimeoutMinutes 30s exited %d", code);
    cr_expect_str_eq (res.err, "keel-admin: config set: EngineTimeoutMinutes: expected a number of "
                               "minutes (the name gives the unit; 30s is 0.5), got '30s'\n");
    harness_result_free (&res);

    char value[64], unit[16], origin[64];
    HARNESS_ASSERT (
        harness_admin (&broker, &res, true, "config", "get", "EngineTimeoutMinutes", NULL) == 0,
        "config get failed: %s", res.err);
    cr_expect (harness_json_get (res.out, "value", value, sizeof value)
                   && strcmp (value, "15") == 0,
               "the refused value was applied: %s", res.out);
    cr_expect (harness_json_get (res.out, "unit", unit, sizeof unit) && strcmp (unit, "min") == 0,
               "config get --json does not give the unit: %s", res.out);
    harness_result_free (&res);

    HARNESS_ASSERT (
        harness_admin (&broker, &res, false, "config", "set", "EngineTimeoutMinutes", "0.5", NULL)
            == 0,
        "config set 0.5 failed: %s", res.err);
    harness_result_free (&res);
    HARNESS_ASSERT (
        harness_admin (&broker, &res, false, "config", "set", "RetentionHours", "48h", NULL) == 0,
        "config set RetentionHours 48h failed: %s", res.err);
    harness_result_free (&res);
    HARNESS_ASSERT (
        harness_admin (&broker, &res, true, "config", "get", "EngineTimeoutMinutes", NULL) == 0,
        "config get failed: %s", res.err);
    cr_expect (harness_json_get (res.out, "value", value, sizeof value)
                   && strcmp (value, "0.5") == 0,
               "value after set 0.5: %s", res.out);
    cr_expect (harness_json_get (res.out, "origin", origin, sizeof origin)
                   && strcmp (origin, "keel-admin") == 0,
               "origin: %s", res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (
        harness_admin (&broker, &res, false, "config", "get", "EngineTimeoutMinutes", NULL) == 0,
        "config get failed: %s", res.err);
    cr_expect (strstr (res.out, "EngineTimeoutMinutes:0.5"), "config get: %s", res.out);
    harness_result_free (&res);
}
