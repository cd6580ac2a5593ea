/*  test_props.c — the .properties parser against java.util.Properties.load. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "props.h"

//  Parses text named "t.properties"; the test fails if parsing fails.
static keel_props_t *
s_parse (const char *text)
{
    keel_error_t err = { "" };
    keel_props_t *props = keel_props_parse (text, strlen (text), "t.properties", &err);
    cr_assert_not_null (props, "parse failed: %s", err.text);
    return props;
}

//  Asserts that text holds exactly one entry key=value starting on line.
static void
s_expect_one (const char *text, const char *key, const char *value, int line)
{
    keel_props_t *props = s_parse (text);
    cr_assert_eq (keel_props_size (props), 1, "entries: %zu", keel_props_size (props));
    const keel_prop_t *p = keel_props_at (props, 0);
    cr_expect_str_eq (p->key, key);
    cr_expect_str_eq (p->value, value);
    cr_expect_eq (p->line, line);
    keel_props_destroy (&props);
}

//  Asserts that parsing text fails with exactly message.
static void
s_expect_error (const char *text, const char *message)
{
    keel_error_t err = { "" };
    keel_props_t *props = keel_props_parse (text, strlen (text), "t.properties", &err);
    cr_assert_null (props);
    cr_expect_str_eq (err.text, message);
}

Test (props, splits_at_an_equals_sign)
{
    s_expect_one ("key=value\n", "key", "value", 1);
}

Test (props, splits_at_a_colon)
{
    s_expect_one ("key:value\n", "key", "value", 1);
}

Test (props, splits_at_white_space)
{
    s_expect_one ("key value\n", "key", "value", 1);
    s_expect_one ("key\tvalue\n", "key", "value", 1);
    s_expect_one ("key\fvalue\n", "key", "value", 1);
}

Test (props, skips_white_space_around_the_separator)
{
    s_expect_one ("  key  =  value\n", "key", "value", 1);
    s_expect_one ("key \t: value\n", "key", "value", 1);
}

Test (props, takes_only_the_first_separator_after_white_space)
{
    s_expect_one ("key = = value\n", "key", "= value", 1);
    s_expect_one ("key :=value\n", "key", "=value", 1);
}

Test (props, keeps_later_separators_in_the_value)
{
    s_expect_one ("url=tcp://host:7070\n", "url", "tcp://host:7070", 1);
}

Test (props, keeps_trailing_white_space_of_the_value)
{
    s_expect_one ("key=value  \n", "key", "value  ", 1);
}

Test (props, reads_a_key_without_a_value_as_empty)
{
    s_expect_one ("key\n", "key", "", 1);
    s_expect_one ("key=\n", "key", "", 1);
    s_expect_one ("key   \n", "key", "", 1);
}

Test (props, reads_an_empty_key)
{
    s_expect_one ("=value\n", "", "value", 1);
}

Test (props, skips_comment_lines_starting_with_hash_or_bang)
{
    s_expect_one ("# a comment\n! another\n   # indented\nkey=value\n", "key", "value", 4);
}

Test (props, keeps_a_hash_that_is_not_the_first_character)
{
    s_expect_one ("key=value # not a comment\n", "key", "value # not a comment", 1);
}

Test (props, skips_blank_lines)
{
    s_expect_one ("\n   \n\t\f\nkey=value\n\n", "key", "value", 4);
}

Test (props, reads_a_last_line_without_a_newline)
{
    s_expect_one ("key=value", "key", "value", 1);
}

Test (props, accepts_cr_lf_and_bare_cr_line_ends)
{
    keel_props_t *props = s_parse ("a=1\r\nb=2\rc=3\n");
    cr_assert_eq (keel_props_size (props), 3);
    cr_expect_str_eq (keel_props_get (props, "a"), "1");
    cr_expect_str_eq (keel_props_get (props, "b"), "2");
    cr_expect_str_eq (keel_props_get (props, "c"), "3");
    cr_expect_eq (keel_props_at (props, 1)->line, 2);
    cr_expect_eq (keel_props_at (props, 2)->line, 3);
    keel_props_destroy (&props);
}

Test (props, continues_a_line_ending_in_one_backslash)
{
    s_expect_one ("key=one \\\n    two\n", "key", "one two", 1);
}

Test (props, continues_a_line_ending_in_three_backslashes)
{
    s_expect_one ("key=a\\\\\\\n  b\n", "key", "a\\b", 1);
}

Test (props, does_not_continue_a_line_ending_in_two_backslashes)
{
    keel_props_t *props = s_parse ("key=a\\\\\nnext=b\n");
    cr_assert_eq (keel_props_size (props), 2);
    cr_expect_str_eq (keel_props_get (props, "key"), "a\\");
    cr_expect_str_eq (keel_props_get (props, "next"), "b");
    keel_props_destroy (&props);
}

Test (props, continues_over_several_lines_and_numbers_the_next_entry)
{
    keel_props_t *props = s_parse ("list=a,\\\n  b,\\\n\t c\nafter=x\n");
    cr_assert_eq (keel_props_size (props), 2);
    cr_expect_str_eq (keel_props_get (props, "list"), "a,b,c");
    cr_expect_eq (keel_props_at (props, 0)->line, 1);
    cr_expect_eq (keel_props_at (props, 1)->line, 4);
    keel_props_destroy (&props);
}

Test (props, reads_a_continuation_line_starting_with_hash_as_content)
{
    s_expect_one ("key=a\\\n  #b\n", "key", "a#b", 1);
}

Test (props, does_not_continue_a_comment_ending_in_a_backslash)
{
    s_expect_one ("# comment \\\nkey=value\n", "key", "value", 2);
}

Test (props, drops_a_continuation_backslash_at_end_of_file)
{
    s_expect_one ("key=value\\", "key", "value", 1);
}

Test (props, continues_the_key_across_lines)
{
    s_expect_one ("long\\\n   key=v\n", "longkey", "v", 1);
}

Test (props, decodes_the_whitespace_escapes)
{
    s_expect_one ("key=a\\tb\\nc\\rd\\fe\n", "key", "a\tb\nc\rd\fe", 1);
}

Test (props, reads_any_other_escaped_character_as_itself)
{
    s_expect_one ("key=\\\\ \\= \\: \\# \\! \\q\n", "key", "\\ = : # ! q", 1);
}

Test (props, keeps_escaped_separators_in_the_key)
{
    s_expect_one ("a\\=b\\:c\\ d=value\n", "a=b:c d", "value", 1);
}

Test (props, keeps_leading_white_space_of_a_value_when_escaped)
{
    s_expect_one ("key=\\  two spaces\n", "key", "  two spaces", 1);
}

Test (props, decodes_unicode_escapes_as_utf8)
{
    s_expect_one ("key=\\u0041\\u00e9\\u20AC\n", "key", "A\xC3\xA9\xE2\x82\xAC", 1);
}

Test (props, decodes_a_surrogate_pair_as_one_utf8_character)
{
    s_expect_one ("key=\\uD83D\\uDE00\n", "key", "\xF0\x9F\x98\x80", 1);
}

Test (props, passes_utf8_bytes_through)
{
    s_expect_one ("cl\xC3\xA9=caf\xC3\xA9\n", "cl\xC3\xA9", "caf\xC3\xA9", 1);
}

Test (props, rejects_a_unicode_escape_with_a_bad_digit_naming_the_line)
{
    s_expect_error ("a=1\n\nkey=\\u12G4\n", "t.properties:3: malformed \\uXXXX escape");
}

Test (props, rejects_a_short_unicode_escape_at_end_of_input)
{
    s_expect_error ("key=\\u12", "t.properties:1: malformed \\uXXXX escape");
}

Test (props, rejects_a_malformed_unicode_escape_in_a_key)
{
    s_expect_error ("# c\nk\\uXYZW=v\n", "t.properties:2: malformed \\uXXXX escape");
}

Test (props, names_the_first_line_of_a_continued_entry_in_errors)
{
    s_expect_error ("x=1\nkey=a\\\n  \\u00\n", "t.properties:2: malformed \\uXXXX escape");
}

Test (props, lets_the_last_value_of_a_repeated_key_win)
{
    keel_props_t *props = s_parse ("k=1\nother=x\nk=2\n");
    cr_expect_str_eq (keel_props_get (props, "k"), "2");
    keel_props_destroy (&props);
}

Test (props, keeps_every_occurrence_in_file_order)
{
    keel_props_t *props = s_parse ("k=1\nother=x\nk=2\n");
    cr_assert_eq (keel_props_size (props), 3);
    cr_expect_str_eq (keel_props_at (props, 0)->value, "1");
    cr_expect_str_eq (keel_props_at (props, 1)->key, "other");
    cr_expect_str_eq (keel_props_at (props, 2)->value, "2");
    cr_expect_eq (keel_props_at (props, 2)->line, 3);
    cr_expect_null (keel_props_at (props, 3));
    keel_props_destroy (&props);
}

Test (props, returns_null_for_a_missing_key)
{
    keel_props_t *props = s_parse ("k=1\n");
    cr_expect_null (keel_props_get (props, "missing"));
    cr_expect_str_eq (keel_props_name (props), "t.properties");
    keel_props_destroy (&props);
    cr_expect_null (props);
    keel_props_destroy (&props);
}

Test (props, parses_empty_input)
{
    keel_props_t *props = s_parse ("");
    cr_expect_eq (keel_props_size (props), 0);
    keel_props_destroy (&props);
}

Test (props, loads_a_file_and_names_it)
{
    char path[] = "/tmp/keel-props-XXXXXX";
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    const char *text = "# broker\nName = alpha\nEndpoint: tcp://127.0.0.1:7070\n";
    cr_assert_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
    keel_error_t err = { "" };
    keel_props_t *props = keel_props_load_file (path, &err);
    unlink (path);
    cr_assert_not_null (props, "%s", err.text);
    cr_expect_str_eq (keel_props_name (props), path);
    cr_expect_str_eq (keel_props_get (props, "Name"), "alpha");
    cr_expect_str_eq (keel_props_get (props, "Endpoint"), "tcp://127.0.0.1:7070");
    cr_expect_eq (keel_props_at (props, 1)->line, 3);
    keel_props_destroy (&props);
}

Test (props, names_the_file_in_errors_from_a_file)
{
    char path[] = "/tmp/keel-props-XXXXXX";
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    const char *text = "a=1\nb=\\uZZZZ\n";
    cr_assert_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
    keel_error_t err = { "" };
    keel_props_t *props = keel_props_load_file (path, &err);
    unlink (path);
    cr_assert_null (props);
    char expected[128];
    snprintf (expected, sizeof expected, "%s:2: malformed \\uXXXX escape", path);
    cr_expect_str_eq (err.text, expected);
}

Test (props, reports_a_missing_file)
{
    keel_error_t err = { "" };
    keel_props_t *props = keel_props_load_file ("/tmp/keel-no-such-dir/x.properties", &err);
    cr_assert_null (props);
    cr_expect_str_eq (err.text,
                      "/tmp/keel-no-such-dir/x.properties: cannot open: No such file or directory");
}

Test (props, accepts_a_null_error_pointer)
{
    cr_expect_null (keel_props_load_file ("/tmp/keel-no-such-dir/x.properties", NULL));
    cr_expect_null (keel_props_parse ("k=\\u", 4, "x", NULL));
}
