/*  test_cond.c — the condition language (common/cond.h): precedence,
    literals, numbers against strings, missing properties, every parse error
    with its column, and hostile input (long, deeply nested). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cond.h"

// An engine's properties for the tests: NAME=VALUE pairs, NULL-terminated.
static const char *s_engine[] = { "host",      "node-1", "os",    "linux",      "cores", "16",
                                  "memory_mb", "8192",   "slots", "4",          "gpu",   "a100",
                                  "rack",      "10",     "label", "say \"hi\"", NULL };

static const char *
s_lookup (const char *name, void *arg)
{
    const char **props = arg;
    for (size_t i = 0; props[i]; i += 2)
        if (strcmp (props[i], name) == 0)
            return props[i + 1];
    return NULL;
}

static bool
s_eval_on (const char *text, const char **props)
{
    keel_error_t err = { "" };
    keel_cond_t *c = keel_cond_parse (text, &err);
    cr_assert_not_null (c, "'%s' did not parse: %s", text, err.text);
    cr_expect_str_eq (keel_cond_text (c), text);
    bool v = keel_cond_eval (c, s_lookup, (void *) props, NULL, 0);
    keel_cond_destroy (&c);
    cr_assert_null (c);
    return v;
}

static bool
s_eval (const char *text)
{
    return s_eval_on (text, s_engine);
}

static void
s_expect_error (const char *text, const char *message)
{
    keel_error_t err = { "" };
    keel_cond_t *c = keel_cond_parse (text, &err);
    cr_assert_null (c, "'%s' parsed", text);
    cr_expect_str_eq (err.text, message, "'%s'", text);
}

Test (cond, compares_numbers_numerically_and_strings_bytewise)
{
    cr_expect (s_eval ("memory_mb >= 4096"));
    cr_expect (s_eval ("memory_mb > 8191.5"));
    cr_expect (!s_eval ("memory_mb < 8192"));
    cr_expect (s_eval ("memory_mb <= 8192"));
    cr_expect (s_eval ("memory_mb == 8.192e3"));
    cr_expect (s_eval ("memory_mb != 4096"));
    cr_expect (s_eval ("rack > 9"));       // numbers: 10 > 9
    cr_expect (s_eval ("rack == \"10\"")); // a string literal that reads as a number
    cr_expect (s_eval ("gpu == \"a100\""));
    cr_expect (s_eval ("gpu > \"a099\"")); // strings: strcmp order
    cr_expect (s_eval ("os != \"windows\""));
    cr_expect (s_eval ("\"a100\" == gpu")); // a literal on the left
    cr_expect (s_eval ("host == \"node-1\""));
    cr_expect (s_eval ("label == \"say \\\"hi\\\"\""));
    cr_expect (s_eval ("-5 < 3"));
    cr_expect (!s_eval ("gpu == 100"));
}

Test (cond, a_missing_property_makes_any_comparison_false)
{
    cr_expect (!s_eval ("fpga == \"x\""));
    cr_expect (!s_eval ("fpga != \"x\""));
    cr_expect (!s_eval ("fpga < 1"));
    cr_expect (!s_eval ("1 >= fpga"));
    cr_expect (s_eval ("!(fpga == \"x\")"));
    cr_expect (s_eval ("!(fpga != \"x\")"));
    const char *bare[] = { NULL };
    cr_expect (!s_eval_on ("gpu == \"a100\"", bare));
    cr_expect (s_eval_on ("!(gpu == \"a100\")", bare));
}

Test (cond, not_binds_tighter_than_and_which_binds_tighter_than_or)
{
    // || below &&: true || (false && false)
    cr_expect (s_eval ("os == \"linux\" || gpu == \"x\" && cores > 100"));
    // (true || false) && false needs the parentheses
    cr_expect (!s_eval ("(os == \"linux\" || gpu == \"x\") && cores > 100"));
    // ! applies to the comparison that follows: !(gpu == "x") && cores > 1
    cr_expect (s_eval ("!gpu == \"x\" && cores > 1"));
    cr_expect (!s_eval ("!gpu == \"a100\" || cores > 100"));
}

Test (cond, negation_and_nesting)
{
    cr_expect (s_eval ("!(cores > 100)"));
    cr_expect (!s_eval ("!!(cores > 100)"));
    cr_expect (s_eval ("!!(cores > 1)"));
    cr_expect (s_eval ("((((cores > 1))))"));
    cr_expect (s_eval ("!(cores > 100 || gpu == \"v100\") && (os == \"linux\")"));
    cr_expect (s_eval ("  cores\t>\t1  "));
}

Test (cond, says_which_comparison_decided_a_false_condition)
{
    keel_error_t err;
    char why[300];
    keel_cond_t *c = keel_cond_parse ("os == \"linux\" && memory_mb >= 16384", &err);
    cr_assert_not_null (c);
    cr_expect (!keel_cond_eval (c, s_lookup, s_engine, why, sizeof why));
    cr_expect_str_eq (why, "memory_mb >= 16384 is false (memory_mb = \"8192\")");
    keel_cond_destroy (&c);

    c = keel_cond_parse ("gpu == \"v100\" || fpga == \"x\"", &err);
    cr_assert_not_null (c);
    cr_expect (!keel_cond_eval (c, s_lookup, s_engine, why, sizeof why));
    cr_expect_str_eq (why, "fpga == \"x\" is false (fpga is not set)");
    keel_cond_destroy (&c);

    c = keel_cond_parse ("!(gpu == \"a100\")", &err);
    cr_assert_not_null (c);
    cr_expect (!keel_cond_eval (c, s_lookup, s_engine, why, sizeof why));
    cr_expect_str_eq (why, "gpu == \"a100\" is true (gpu = \"a100\")");
    keel_cond_destroy (&c);
}

Test (cond, names_the_column_of_every_error)
{
    s_expect_error ("", "column 1: empty condition");
    s_expect_error ("   ", "column 4: empty condition");
    s_expect_error ("memory_mb >= 4096 && gpu >=", "column 28: expected a value after '>='");
    s_expect_error ("memory_mb >= ", "column 14: expected a value after '>='");
    s_expect_error ("memory_mb 4096", "column 11: expected a comparison operator (== != < <= > >=) "
                                      "after 'memory_mb'");
    s_expect_error ("gpu",
                    "column 4: expected a comparison operator (== != < <= > >=) after 'gpu'");
    s_expect_error ("gpu = \"a\"", "column 5: unknown operator '=' (did you mean '=='?)");
    s_expect_error ("a == 1 & b == 2", "column 8: unknown operator '&' (did you mean '&&'?)");
    s_expect_error ("a == 1 | b == 2", "column 8: unknown operator '|' (did you mean '||'?)");
    s_expect_error ("a == 1 &&", "column 10: expected a condition after '&&'");
    s_expect_error ("a == 1 || )", "column 11: expected a condition after '||'");
    s_expect_error ("!", "column 2: expected a condition after '!'");
    s_expect_error ("()", "column 2: expected a condition after '('");
    s_expect_error ("(a == 1", "column 8: expected ')' to close the '(' at column 1");
    s_expect_error ("a == 1)", "column 7: ')' without its '('");
    s_expect_error ("a == 1 b == 2", "column 8: expected '&&', '||' or the end, got 'b'");
    s_expect_error ("a == \"x", "column 6: unterminated string");
    s_expect_error ("a == \"x\\", "column 6: unterminated string");
    s_expect_error ("a == \"\\n\"", "column 7: unknown escape '\\n' (only \\\" and \\\\)");
    s_expect_error ("a == 12ab", "column 6: malformed number '12ab'");
    s_expect_error ("a == 1.", "column 6: malformed number '1.'");
    s_expect_error ("a == 1.2.3", "column 6: malformed number '1.2.3'");
    s_expect_error ("a == @", "column 6: unexpected character '@'");
    s_expect_error ("a == \x01", "column 6: unexpected byte 0x01");
    s_expect_error ("&& a == 1", "column 1: expected a property, a value, '!' or '(' to start a "
                                 "comparison");
    s_expect_error ("== 1", "column 1: expected a property, a value, '!' or '(' to start a "
                            "comparison");
}

Test (cond, bounds_length_nesting_and_names)
{
    // 64 levels nest; 65 do not.
    char text[KEEL_COND_MAX_LEN + 2];
    int n = 0;
    for (int i = 0; i < KEEL_COND_MAX_DEPTH; i++)
        text[n++] = '(';
    n += sprintf (text + n, "a == 1");
    for (int i = 0; i < KEEL_COND_MAX_DEPTH; i++)
        text[n++] = ')';
    text[n] = 0;
    keel_error_t err;
    keel_cond_t *c = keel_cond_parse (text, &err);
    cr_expect_not_null (c, "%s", err.text);
    keel_cond_destroy (&c);
    memmove (text + 1, text, strlen (text) + 1);
    text[0] = '!';
    s_expect_error (text, "column 66: nested deeper than 64 levels");
    memset (text, '!', 200);
    strcpy (text + 200, "a == 1");
    s_expect_error (text, "column 66: nested deeper than 64 levels");

    // 1024 bytes parse; 1025 do not.
    memset (text, ' ', KEEL_COND_MAX_LEN);
    memcpy (text, "a == 1", 6);
    text[KEEL_COND_MAX_LEN] = 0;
    c = keel_cond_parse (text, &err);
    cr_expect_not_null (c, "%s", err.text);
    keel_cond_destroy (&c);
    text[KEEL_COND_MAX_LEN] = ' ';
    text[KEEL_COND_MAX_LEN + 1] = 0;
    s_expect_error (text, "column 1025: condition longer than 1024 bytes");

    // The longest chain of comparisons the length allows evaluates.
    n = 0;
    while (n + 8 < KEEL_COND_MAX_LEN)
        n += sprintf (text + n, "%sa<b", n ? "||" : "");
    c = keel_cond_parse (text, &err);
    cr_assert_not_null (c, "%s", err.text);
    const char *ab[] = { "a", "2", "b", "1", NULL };
    cr_expect (!keel_cond_eval (c, s_lookup, ab, NULL, 0));
    keel_cond_destroy (&c);
    n = 0;
    while (n + 8 < KEEL_COND_MAX_LEN)
        n += sprintf (text + n, "%s!a<b", n ? "&&" : "");
    c = keel_cond_parse (text, &err);
    cr_assert_not_null (c, "%s", err.text);
    cr_expect (keel_cond_eval (c, s_lookup, ab, NULL, 0));
    keel_cond_destroy (&c);

    // Names: 64 bytes, not 65.
    memset (text, 'n', 65);
    strcpy (text + 65, " == 1");
    s_expect_error (text, "column 1: property name longer than 64 bytes");
    text[64] = 0;
    cr_expect (keel_cond_name_ok (text));
    cr_expect (!keel_cond_name_ok ("9gpu"));
    cr_expect (!keel_cond_name_ok ("gpu-kind"));
    cr_expect (!keel_cond_name_ok (""));
    cr_expect (keel_cond_name_ok ("_gpu2"));
    cr_expect_null (keel_cond_parse (NULL, &err));
}
