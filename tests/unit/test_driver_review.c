/*  test_driver_review.c — keel-driver command-line cases found in review. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../driver/submit_args.h"

static keel_err
s_parse (keel_submit_args_t *args, keel_error_t *err, int argc, const char **argv)
{
    static char *copy[64];
    for (int i = 0; i < argc; i++)
        copy[i] = (char *) argv[i];
    copy[argc] = NULL;
    return keel_submit_args_parse (argc, copy, args, err);
}

#define PARSE(args, err, ...)                                                                      \
    s_parse (args, err, (int) (sizeof ((const char *[]) { __VA_ARGS__ }) / sizeof (char *)),       \
             (const char *[]) { __VA_ARGS__ })

//  B - A overflowed int64: keel-driver computed a negative task count, ran
//  nothing and exited 0 ("every task succeeded") for a job it never did.
Test (driver_review, rejects_a_range_whose_size_does_not_fit)
{
    keel_submit_args_t a;
    keel_error_t err = { "" };
    cr_assert_eq (PARSE (&a, &err, "kd", "submit", "--service", "echo", "--range",
                         "-9223372036854775808:9223372036854775807"),
                  KEEL_ERR_INVALID, "an int64-overflowing range was accepted");
    cr_assert (strstr (err.text, "--range"), "error does not name --range: %s", err.text);
    keel_submit_args_free (&a);
    cr_assert_eq (
        PARSE (&a, &err, "kd", "submit", "--service", "echo", "--range", "-1:9223372036854775807"),
        KEEL_ERR_INVALID);
    keel_submit_args_free (&a);
    //  The largest spans that fit are still fine, and so is an empty range.
    cr_assert_eq (
        PARSE (&a, &err, "kd", "submit", "--service", "echo", "--range", "0:9223372036854775807"),
        KEEL_OK, "%s", err.text);
    keel_submit_args_free (&a);
    cr_assert_eq (PARSE (&a, &err, "kd", "submit", "--service", "echo", "--range", "5:5"), KEEL_OK);
    keel_submit_args_free (&a);
}
