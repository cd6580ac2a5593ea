/*  test_json.c — the JSON writer (common/json.c): escaping, UTF-8, layout. */

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static char *
s_escape (const char *text, size_t len)
{
    static char *last;
    free (last);
    keel_json_t j;
    keel_json_init (&j);
    keel_json_strn (&j, text, len);
    last = keel_json_take (&j);
    cr_assert_not_null (last);
    return last;
}

Test (json, escapes_quotes_backslashes_and_control_characters)
{
    cr_assert_str_eq (s_escape ("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
    cr_assert_str_eq (s_escape ("\n\r\t\b\f", 5), "\"\\n\\r\\t\\b\\f\"");
    cr_assert_str_eq (s_escape ("\x01\x1f\x7f", 3), "\"\\u0001\\u001f\\u007f\"");
    cr_assert_str_eq (s_escape ("", 0), "\"\"");
}

Test (json, copies_multibyte_utf8_unchanged)
{
    cr_assert_str_eq (s_escape ("h\xc3\xa9 \xe2\x82\xac", 7), "\"h\xc3\xa9 \xe2\x82\xac\"");
}

Test (json, escapes_bytes_that_are_not_utf8_and_nul)
{
    cr_assert_str_eq (s_escape ("a\xff", 2), "\"a\\u00ff\"");
    cr_assert_str_eq (s_escape ("a\0b", 3), "\"a\\u0000b\"");
    cr_assert_str_eq (s_escape ("\xe2\x82", 2), "\"\\u00e2\\u0082\"", "truncated sequence");
}

Test (json, validates_utf8_strictly)
{
    cr_assert (keel_utf8_valid ("plain", 5));
    cr_assert (keel_utf8_valid ("\xf0\x9f\x98\x80", 4));
    cr_assert_not (keel_utf8_valid ("\xff", 1));
    cr_assert_not (keel_utf8_valid ("\xc0\xaf", 2));         // overlong
    cr_assert_not (keel_utf8_valid ("\xed\xa0\x80", 3));     // surrogate
    cr_assert_not (keel_utf8_valid ("\xf4\x90\x80\x80", 4)); // above U+10FFFF
    cr_assert_not (keel_utf8_valid ("\xe2\x82", 2));         // truncated
    cr_assert_not (keel_utf8_valid ("a\0b", 3));             // NUL
}

Test (json, separates_members_and_nests_objects_and_arrays)
{
    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_kv_str (&j, "a", "x");
    keel_json_kv_int (&j, "b", -3);
    keel_json_key (&j, "c");
    keel_json_array (&j);
    keel_json_uint (&j, 1);
    keel_json_object (&j);
    keel_json_kv_bool (&j, "d", true);
    keel_json_end_object (&j);
    keel_json_null (&j);
    keel_json_end_array (&j);
    keel_json_key (&j, "e");
    keel_json_double (&j, 0.0 / 0.0);
    keel_json_end_object (&j);
    char *text = keel_json_take (&j);
    cr_assert_str_eq (text, "{\"a\":\"x\",\"b\":-3,\"c\":[1,{\"d\":true},null],\"e\":null}");
    free (text);
}

Test (json, fails_instead_of_nesting_without_bound)
{
    keel_json_t j;
    keel_json_init (&j);
    for (int i = 0; i < KEEL_JSON_DEPTH + 5; i++)
        keel_json_array (&j);
    cr_assert_null (keel_json_take (&j), "too deep: the writer reports failure");
}

Test (json, copies_runs_between_escapes)
{
    cr_assert_str_eq (s_escape ("ab\"cd\xc3\xa9"
                                "ef\n",
                                10),
                      "\"ab\\\"cd\xc3\xa9"
                      "ef\\n\"");
    cr_assert_str_eq (s_escape ("\"x\"", 3), "\"\\\"x\\\"\"");
    cr_assert_str_eq (s_escape ("abc\xff", 4), "\"abc\\u00ff\"");
}

// The escaping a byte at a time, as json.c did before its word-at-a-time
// scan (ASCII only: every byte >= 0x80 here is a lone one, not UTF-8).
static size_t
s_reference (const unsigned char *text, size_t len, char *out)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = text[i];
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (esc)
            o += (size_t) sprintf (out + o, "%s", esc);
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t) sprintf (out + o, "\\u%04x", c);
        else
            out[o++] = (char) c;
    }
    out[o++] = '"';
    out[o] = '\0';
    return o;
}

Test (json, the_word_at_a_time_scan_escapes_every_byte_in_every_position)
{
    // Every byte value at every offset of a 19-byte run of plain text (two
    // whole words and a tail, at each alignment), so each word test meets
    // each byte in each of its lanes.
    unsigned char text[19];
    char want[19 * 6 + 3];
    for (int c = 0; c < 256; c++)
        for (size_t at = 0; at < sizeof text; at++) {
            memset (text, 'a' + (int) (at % 26), sizeof text);
            text[at] = (unsigned char) c;
            s_reference (text, sizeof text, want);
            cr_assert_str_eq (s_escape ((const char *) text, sizeof text), want,
                              "byte 0x%02x at %zu", c, at);
        }
}

Test (json, the_word_at_a_time_utf8_check_sees_every_byte_in_every_position)
{
    // keel_utf8_valid takes 8 ASCII bytes at once: every byte value at every
    // offset of a 19-byte run must get the answer of the byte-by-byte rule
    // (a lone byte is valid UTF-8 only below 0x80, and not NUL).
    char text[19];
    for (int c = 0; c < 256; c++)
        for (size_t at = 0; at < sizeof text; at++) {
            memset (text, 'a' + (int) (at % 26), sizeof text);
            text[at] = (char) c;
            bool want = c != 0 && c < 0x80;
            cr_assert_eq (keel_utf8_valid (text, sizeof text), want, "byte 0x%02x at %zu", c, at);
        }
    // A valid multi-byte sequence across a word's edge.
    memset (text, 'a', sizeof text);
    memcpy (text + 6, "\xf0\x9f\x98\x80", 4);
    cr_assert (keel_utf8_valid (text, sizeof text));
    text[9] = 'a'; // cut short
    cr_assert_not (keel_utf8_valid (text, sizeof text));
}

Test (json, writes_text_after_text_into_a_buffer_it_keeps)
{
    // keel-driver writes every result line into one buffer.
    char *buf = NULL;
    size_t cap = 0;
    // The second text outgrows the 256 bytes the first one made room for.
    char grow[300];
    memset (grow, 'g', sizeof grow - 1);
    grow[sizeof grow - 1] = 0;
    for (int i = 0; i < 3; i++) {
        const char *text = i == 1 ? grow : "";
        keel_json_t j;
        keel_json_init_buf (&j, buf, cap);
        keel_json_object (&j);
        keel_json_kv_int (&j, "n", i);
        keel_json_kv_str (&j, "long", text);
        keel_json_end_object (&j);
        keel_json_raw (&j, "\n", 1);
        cr_assert_not (j.failed);
        char want[512];
        snprintf (want, sizeof want, "{\"n\":%d,\"long\":\"%s\"}\n", i, text);
        cr_assert_eq (j.len, strlen (want));
        cr_assert_str_eq (j.buf, want);
        cr_assert_geq (j.cap, j.len + 1);
        buf = j.buf;
        cap = j.cap;
    }
    free (buf);
}

Test (json, writes_integers_at_their_limits)
{
    keel_json_t j;
    keel_json_init (&j);
    keel_json_array (&j);
    keel_json_int (&j, INT64_MIN);
    keel_json_int (&j, INT64_MAX);
    keel_json_int (&j, 0);
    keel_json_int (&j, -1);
    keel_json_uint (&j, UINT64_MAX);
    keel_json_uint (&j, 0);
    keel_json_end_array (&j);
    char *text = keel_json_take (&j);
    cr_assert_str_eq (text, "[-9223372036854775808,9223372036854775807,0,-1,"
                            "18446744073709551615,0]");
    free (text);
}
