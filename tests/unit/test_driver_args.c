/*  test_driver_args.c — keel-driver's command line and its usage errors. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../driver/submit_args.h"

static keel_err
s_parse (keel_submit_args_t *args, keel_error_t *err, int argc, const char **argv)
{
    //  getopt permutes argv: give it a copy.
    static char *copy[64];
    for (int i = 0; i < argc; i++)
        copy[i] = (char *) argv[i];
    copy[argc] = NULL;
    return keel_submit_args_parse (argc, copy, args, err);
}

#define PARSE(args, err, ...)                                                                      \
    s_parse (args, err, (int) (sizeof ((const char *[]) { __VA_ARGS__ }) / sizeof (char *)),       \
             (const char *[]) { __VA_ARGS__ })

Test (driver_args, accepts_the_documented_submit_form)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    cr_assert_eq (PARSE (&a, &err, "keel-driver", "-c", "d.properties", "--set", "DSBatchSize=10",
                         "submit", "--service", "double", "--range", "0:100", "--broker",
                         "tcp://a:1", "--failover", "tcp://b:1", "--failover", "tcp://c:1",
                         "--priority", "5", "--max-attempts", "2", "--output-dir", "out"),
                  KEEL_OK, "%s", err.text);
    cr_assert_str_eq (a.config_path, "d.properties");
    cr_assert_eq (a.nsets, 1);
    cr_assert_str_eq (a.sets[0], "DSBatchSize=10");
    cr_assert_str_eq (a.service, "double");
    cr_assert_eq (a.input, KEEL_INPUT_RANGE);
    cr_assert_eq (a.range_from, 0);
    cr_assert_eq (a.range_to, 100);
    cr_assert_str_eq (a.broker, "tcp://a:1");
    cr_assert_eq (a.nfailovers, 2);
    cr_assert_str_eq (a.failovers[1], "tcp://c:1");
    cr_assert (a.has_priority && a.priority == 5);
    cr_assert (a.has_max_attempts && a.max_attempts == 2);
    cr_assert_str_eq (a.output_dir, "out");
    keel_submit_args_free (&a);
}

Test (driver_args, repeats_input_text_count_times)
{
    keel_submit_args_t a;
    cr_assert_eq (
        PARSE (&a, NULL, "kd", "submit", "--service", "echo", "--input", "hi", "--count", "3"),
        KEEL_OK);
    cr_assert_eq (a.input, KEEL_INPUT_TEXT);
    cr_assert_str_eq (a.input_text, "hi");
    cr_assert_eq (a.count, 3);
    keel_submit_args_free (&a);
}

Test (driver_args, help_and_version_need_no_command)
{
    keel_submit_args_t a;
    cr_assert_eq (PARSE (&a, NULL, "kd", "--help"), KEEL_OK);
    cr_assert (a.help);
    keel_submit_args_free (&a);
    cr_assert_eq (PARSE (&a, NULL, "kd", "--version"), KEEL_OK);
    cr_assert (a.version);
    keel_submit_args_free (&a);
}

static void
s_expect_error (const char *fragment, keel_err rc, keel_submit_args_t *a, keel_error_t *err)
{
    cr_assert_eq (rc, KEEL_ERR_INVALID);
    cr_assert (strstr (err->text, fragment), "'%s' does not mention '%s'", err->text, fragment);
    keel_submit_args_free (a);
}

Test (driver_args, rejects_a_missing_service)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    s_expect_error ("--service", PARSE (&a, &err, "kd", "submit", "--input", "x"), &a, &err);
}

Test (driver_args, rejects_an_unknown_option_by_name)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    s_expect_error ("--frobnicate",
                    PARSE (&a, &err, "kd", "submit", "--service", "echo", "--frobnicate"), &a,
                    &err);
}

Test (driver_args, rejects_a_reversed_or_malformed_range)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    s_expect_error ("--range",
                    PARSE (&a, &err, "kd", "submit", "--service", "echo", "--range", "9:3"), &a,
                    &err);
    s_expect_error ("--range",
                    PARSE (&a, &err, "kd", "submit", "--service", "echo", "--range", "1-3"), &a,
                    &err);
    s_expect_error ("--range",
                    PARSE (&a, &err, "kd", "submit", "--service", "echo", "--range", "a:b"), &a,
                    &err);
}

Test (driver_args, rejects_no_input_and_two_inputs)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    s_expect_error ("one of", PARSE (&a, &err, "kd", "submit", "--service", "echo"), &a, &err);
    s_expect_error (
        "exclude",
        PARSE (&a, &err, "kd", "submit", "--service", "echo", "--input", "x", "--range", "0:2"), &a,
        &err);
}

Test (driver_args, rejects_count_without_input_and_negative_count)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    s_expect_error (
        "--count",
        PARSE (&a, &err, "kd", "submit", "--service", "echo", "--range", "0:2", "--count", "2"), &a,
        &err);
    s_expect_error (
        "--count",
        PARSE (&a, &err, "kd", "submit", "--service", "echo", "--input", "x", "--count", "-1"), &a,
        &err);
}

Test (driver_args, rejects_missing_or_unknown_command)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    s_expect_error ("missing command", PARSE (&a, &err, "kd", "--service", "echo"), &a, &err);
    s_expect_error ("unknown command", PARSE (&a, &err, "kd", "run", "--service", "echo"), &a,
                    &err);
}

Test (driver_args, rejects_bad_numbers_and_missing_values)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    s_expect_error (
        "--priority",
        PARSE (&a, &err, "kd", "submit", "--service", "e", "--input", "x", "--priority", "high"),
        &a, &err);
    s_expect_error (
        "--max-attempts",
        PARSE (&a, &err, "kd", "submit", "--service", "e", "--input", "x", "--max-attempts", "-2"),
        &a, &err);
    s_expect_error ("needs a value", PARSE (&a, &err, "kd", "submit", "--service"), &a, &err);
    s_expect_error (
        "--set",
        PARSE (&a, &err, "kd", "--set", "novalue", "submit", "--service", "e", "--input", "x"), &a,
        &err);
}

Test (driver_args, rejects_an_invalid_service_name)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    s_expect_error ("service name",
                    PARSE (&a, &err, "kd", "submit", "--service", "a b", "--input", "x"), &a, &err);
}

Test (driver_args, require_takes_a_condition_and_refuses_a_malformed_one_naming_its_column)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    cr_assert_eq (PARSE (&a, &err, "kd", "submit", "--service", "echo", "--input", "x", "--require",
                         "memory_mb >= 4096 && gpu == \"a100\""),
                  KEEL_OK, "%s", err.text);
    cr_assert_str_eq (a.require, "memory_mb >= 4096 && gpu == \"a100\"");
    keel_submit_args_free (&a);
    cr_assert_eq (PARSE (&a, &err, "kd", "submit", "--service", "echo", "--input", "x", "--require",
                         "memory_mb >= 4096 && gpu >="),
                  KEEL_ERR_INVALID);
    cr_assert_str_eq (err.text, "--require: column 28: expected a value after '>='");
    keel_submit_args_free (&a);
    cr_assert_eq (PARSE (&a, &err, "kd", "wait", "--require", "gpu == 1", "svc-1"),
                  KEEL_ERR_INVALID);
    cr_assert (strstr (err.text, "--require"), "%s", err.text);
    keel_submit_args_free (&a);
}
