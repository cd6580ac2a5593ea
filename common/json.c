/*  json.c — a small JSON writer. See json.h. */

#include "json.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
keel_json_init (keel_json_t *j)
{
    memset (j, 0, sizeof *j);
    j->first[0] = true;
}

void
keel_json_init_buf (keel_json_t *j, char *buf, size_t cap)
{
    keel_json_init (j);
    j->buf = buf;
    j->cap = buf ? cap : 0;
}

void
keel_json_reset (keel_json_t *j)
{
    free (j->buf);
    keel_json_init (j);
}

static void
s_put (keel_json_t *j, const char *s, size_t n)
{
    if (j->failed)
        return;
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (cap < j->len + n + 1)
            cap *= 2;
        char *b = realloc (j->buf, cap);
        if (!b) {
            j->failed = true;
            return;
        }
        j->buf = b;
        j->cap = cap;
    }
    memcpy (j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = 0;
}

void
keel_json_raw (keel_json_t *j, const char *text, size_t len)
{
    s_put (j, text, len);
}

static void
s_putf (keel_json_t *j, const char *fmt, ...)
{
    char tmp[64];
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (tmp, sizeof tmp, fmt, args);
    va_end (args);
    if (n > 0)
        s_put (j, tmp, (size_t) n < sizeof tmp ? (size_t) n : sizeof tmp - 1);
}

// Writes the comma before a value or key when needed.
static void
s_sep (keel_json_t *j)
{
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (!j->first[j->depth])
        s_put (j, ",", 1);
    j->first[j->depth] = false;
}

static void
s_open (keel_json_t *j, char c)
{
    s_sep (j);
    s_put (j, &c, 1);
    if (j->depth + 1 >= KEEL_JSON_DEPTH) {
        j->failed = true;
        return;
    }
    j->depth++;
    j->first[j->depth] = true;
}

static void
s_close (keel_json_t *j, char c)
{
    if (j->depth > 0)
        j->depth--;
    s_put (j, &c, 1);
}

void
keel_json_object (keel_json_t *j)
{
    s_open (j, '{');
}
void
keel_json_end_object (keel_json_t *j)
{
    s_close (j, '}');
}
void
keel_json_array (keel_json_t *j)
{
    s_open (j, '[');
}
void
keel_json_end_array (keel_json_t *j)
{
    s_close (j, ']');
}

// Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid.
static size_t
s_utf8_len (const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    else if ((c & 0xe0) == 0xc0) {
        len = 2;
        cp = c & 0x1f;
    }
    else if ((c & 0xf0) == 0xe0) {
        len = 3;
        cp = c & 0x0f;
    }
    else if ((c & 0xf8) == 0xf0) {
        len = 4;
        cp = c & 0x07;
    }
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    // Reject overlong forms, surrogates and out-of-range code points.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)
        || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

bool
keel_utf8_valid (const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *) s;
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t i = 0;
    while (i < n) {
        if (n - i >= 8) {
            // Eight ASCII bytes with no NUL at once (a task's output is
            // mostly that): no byte with its high bit, none equal to zero.
            uint64_t x;
            memcpy (&x, p + i, sizeof x);
            if (((x | ((x - ones) & ~x)) & highs) == 0) {
                i += 8;
                continue;
            }
        }
        if (p[i] == 0)
            return false;
        size_t l = s_utf8_len (p + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

// Whether the 8 bytes at p are all printable ASCII other than '"' and
// '\\' (copied as they are), tested a word at a time: keel-driver writes
// every result as a JSON line, and its byte-by-byte scan was a tenth of
// keel-driver's CPU in W1 (docs/benchmarks.md). The tests are the exact
// "has a byte less than n / more than n / equal to zero" word tricks
// (each true only when such a byte is there, for n <= 127).
static bool
s_plain8 (const unsigned char *p)
{
    uint64_t x;
    memcpy (&x, p, sizeof x);
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t below_space = (x - ones * 0x20) & ~x & highs;
    uint64_t above_tilde = ((x + ones) | x) & highs; // 0x7f + 1 = 0x80; >= 0x80 already
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t quote = (q - ones) & ~q & highs, backslash = (b - ones) & ~b & highs;
    return (below_space | above_tilde | quote | backslash) == 0;
}

void
keel_json_strn (keel_json_t *j, const char *s, size_t n)
{
    s_sep (j);
    s_put (j, "\"", 1);
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0, run = 0; // p[run..i) needs no escaping: copied in one go
    while (i < n) {
        if (n - i >= 8 && s_plain8 (p + i)) {
            i += 8;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            i++;
            continue;
        }
        size_t l = c < 0x80 ? 1 : s_utf8_len (p + i, n - i);
        if (l > 1) {
            i += l;
            continue;
        }
        if (i > run)
            s_put (j, s + run, i - run);
        switch (c) {
            case '"':
                s_put (j, "\\\"", 2);
                break;
            case '\\':
                s_put (j, "\\\\", 2);
                break;
            case '\n':
                s_put (j, "\\n", 2);
                break;
            case '\r':
                s_put (j, "\\r", 2);
                break;
            case '\t':
                s_put (j, "\\t", 2);
                break;
            case '\b':
                s_put (j, "\\b", 2);
                break;
            case '\f':
                s_put (j, "\\f", 2);
                break;
            default: // control characters, DEL, bytes that are not UTF-8
                s_putf (j, "\\u%04x", c);
        }
        i++;
        run = i;
    }
    if (i > run)
        s_put (j, s + run, i - run);
    s_put (j, "\"", 1);
}

void
keel_json_str (keel_json_t *j, const char *s)
{
    if (!s)
        keel_json_null (j);
    else
        keel_json_strn (j, s, strlen (s));
}

void
keel_json_key (keel_json_t *j, const char *key)
{
    keel_json_str (j, key);
    s_put (j, ":", 1);
    j->after_key = true;
}

// Decimal digits of v, written backwards from end; returns the first.
static char *
s_digits (uint64_t v, char *end)
{
    char *p = end;
    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

void
keel_json_uint (keel_json_t *j, uint64_t v)
{
    char tmp[24];
    char *p = s_digits (v, tmp + sizeof tmp);
    s_sep (j);
    s_put (j, p, (size_t) (tmp + sizeof tmp - p));
}

char *
keel_json_int_text (int64_t v, char *end)
{
    // The magnitude of INT64_MIN does not fit an int64_t: negate as uint64_t.
    uint64_t m = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;
    char *p = s_digits (m, end);
    if (v < 0)
        *--p = '-';
    return p;
}

void
keel_json_int (keel_json_t *j, int64_t v)
{
    char tmp[24];
    char *p = keel_json_int_text (v, tmp + sizeof tmp);
    s_sep (j);
    s_put (j, p, (size_t) (tmp + sizeof tmp - p));
}
void
keel_json_bool (keel_json_t *j, bool v)
{
    s_sep (j);
    s_put (j, v ? "true" : "false", v ? 4 : 5);
}
void
keel_json_null (keel_json_t *j)
{
    s_sep (j);
    s_put (j, "null", 4);
}

void
keel_json_double (keel_json_t *j, double v)
{
    s_sep (j);
    if (v != v || v > 1e300 || v < -1e300)
        s_put (j, "null", 4); // JSON has no NaN or infinity
    else
        s_putf (j, "%.6g", v);
}

void
keel_json_kv_str (keel_json_t *j, const char *k, const char *s)
{
    keel_json_key (j, k);
    keel_json_str (j, s);
}
void
keel_json_kv_int (keel_json_t *j, const char *k, int64_t v)
{
    keel_json_key (j, k);
    keel_json_int (j, v);
}
void
keel_json_kv_uint (keel_json_t *j, const char *k, uint64_t v)
{
    keel_json_key (j, k);
    keel_json_uint (j, v);
}
void
keel_json_kv_bool (keel_json_t *j, const char *k, bool v)
{
    keel_json_key (j, k);
    keel_json_bool (j, v);
}

char *
keel_json_take (keel_json_t *j)
{
    if (j->failed || !j->buf) {
        keel_json_reset (j);
        return NULL;
    }
    char *out = j->buf;
    keel_json_init (j);
    return out;
}
