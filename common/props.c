/*  props.c — Java .properties parser (java.util.Properties.load semantics).

    Two passes per entry, as in the JDK: first the natural lines are joined
    into one logical line (comments and blank lines skipped, continuation
    backslashes removed, leading white space of continuation lines dropped),
    then the logical line is split at the first unescaped separator and both
    halves are unescaped. Bytes other than escapes pass through unchanged,
    so UTF-8 files read as UTF-8.
*/
#include "props.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _keel_props_t {
    char *name;
    keel_prop_t *entries;
    size_t size;
    size_t cap;
};

//  A growable byte buffer for one logical line or one unescaped string.
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} s_buf_t;

static bool
s_buf_put (s_buf_t *b, const char *bytes, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *data = realloc (b->data, cap);
        if (!data)
            return false;
        b->data = data;
        b->cap = cap;
    }
    memcpy (b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

static bool
s_is_blank (char c)
{
    return c == ' ' || c == '\t' || c == '\f';
}

static int
s_hex (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

//  Reads 4 hex digits at s (n bytes available); returns the code unit or -1.
static long
s_hex4 (const char *s, size_t n)
{
    if (n < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = s_hex (s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static bool
s_put_utf8 (s_buf_t *b, unsigned long cp)
{
    char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (char) cp;
        n = 1;
    }
    else if (cp < 0x800) {
        out[0] = (char) (0xC0 | (cp >> 6));
        out[1] = (char) (0x80 | (cp & 0x3F));
        n = 2;
    }
    else if (cp < 0x10000) {
        out[0] = (char) (0xE0 | (cp >> 12));
        out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char) (0x80 | (cp & 0x3F));
        n = 3;
    }
    else {
        out[0] = (char) (0xF0 | (cp >> 18));
        out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char) (0x80 | (cp & 0x3F));
        n = 4;
    }
    return s_buf_put (b, out, n);
}

//  Unescapes s[0..n) into a new string. Returns NULL on a malformed \u
//  escape (*malformed set) or when out of memory.
static char *
s_unescape (const char *s, size_t n, bool *malformed)
{
    s_buf_t b = { NULL, 0, 0 };
    *malformed = false;
    if (!s_buf_put (&b, "", 0))
        return NULL;
    size_t i = 0;
    while (i < n) {
        char c = s[i++];
        bool ok;
        if (c != '\\' || i == n) {
            if (!s_buf_put (&b, &c, 1)) {
                free (b.data);
                return NULL;
            }
            continue;
        }
        c = s[i++];
        switch (c) {
            case 't':
                ok = s_buf_put (&b, "\t", 1);
                break;
            case 'n':
                ok = s_buf_put (&b, "\n", 1);
                break;
            case 'r':
                ok = s_buf_put (&b, "\r", 1);
                break;
            case 'f':
                ok = s_buf_put (&b, "\f", 1);
                break;
            case 'u': {
                long unit = s_hex4 (s + i, n - i);
                if (unit <= 0) { // malformed, or \u0000 (cannot live in a C string)
                    *malformed = true;
                    free (b.data);
                    return NULL;
                }
                i += 4;
                unsigned long cp = (unsigned long) unit;
                if (unit >= 0xD800 && unit <= 0xDBFF) {
                    // A UTF-16 surrogate pair written as two escapes.
                    long low = (n - i >= 6 && s[i] == '\\' && s[i + 1] == 'u')
                                   ? s_hex4 (s + i + 2, n - i - 2)
                                   : -1;
                    if (low >= 0xDC00 && low <= 0xDFFF) {
                        cp = 0x10000 + (((unsigned long) unit - 0xD800) << 10)
                             + ((unsigned long) low - 0xDC00);
                        i += 6;
                    }
                    else
                        cp = 0xFFFD;
                }
                else if (unit >= 0xDC00 && unit <= 0xDFFF)
                    cp = 0xFFFD;
                ok = s_put_utf8 (&b, cp);
                break;
            }
            default:
                ok = s_buf_put (&b, &c, 1);
                break;
        }
        if (!ok) {
            free (b.data);
            return NULL;
        }
    }
    return b.data;
}

static bool
s_add (keel_props_t *self, char *key, char *value, int line)
{
    if (self->size == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        keel_prop_t *entries = realloc (self->entries, cap * sizeof *entries);
        if (!entries)
            return false;
        self->entries = entries;
        self->cap = cap;
    }
    self->entries[self->size++] = (keel_prop_t) { key, value, line };
    return true;
}

//  Splits one logical line into key and value and stores the entry.
static keel_err
s_store_line (keel_props_t *self, const char *line, size_t len, int lineno, keel_error_t *err)
{
    size_t key_len = 0, value_start = len;
    bool has_sep = false, escaped = false;
    while (key_len < len) {
        char c = line[key_len];
        if ((c == '=' || c == ':') && !escaped) {
            value_start = key_len + 1;
            has_sep = true;
            break;
        }
        if (s_is_blank (c) && !escaped) {
            value_start = key_len + 1;
            break;
        }
        escaped = c == '\\' ? !escaped : false;
        key_len++;
    }
    while (value_start < len) {
        char c = line[value_start];
        if (!s_is_blank (c)) {
            if (!has_sep && (c == '=' || c == ':'))
                has_sep = true;
            else
                break;
        }
        value_start++;
    }
    bool bad_key = false, bad_value = false;
    char *key = s_unescape (line, key_len, &bad_key);
    char *value = s_unescape (line + value_start, len - value_start, &bad_value);
    if (!key || !value) {
        free (key);
        free (value);
        if (bad_key || bad_value)
            return keel_error_set (err, KEEL_ERR_CONFIG, "%s:%d: malformed \\uXXXX escape",
                                   self->name, lineno);
        return keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", self->name);
    }
    if (!s_add (self, key, value, lineno)) {
        free (key);
        free (value);
        return keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", self->name);
    }
    return KEEL_OK;
}

//  Returns the length of the natural line at text[pos..len) without its
//  terminator and sets *next past the terminator (\n, \r or \r\n).
static size_t
s_natural_line (const char *text, size_t len, size_t pos, size_t *next)
{
    size_t end = pos;
    while (end < len && text[end] != '\n' && text[end] != '\r')
        end++;
    *next = end;
    if (end < len) {
        *next = end + 1;
        if (text[end] == '\r' && end + 1 < len && text[end + 1] == '\n')
            *next = end + 2;
    }
    return end - pos;
}

//  True when s[0..n) ends in an odd number of backslashes.
static bool
s_continues (const char *s, size_t n)
{
    size_t count = 0;
    while (count < n && s[n - 1 - count] == '\\')
        count++;
    return count % 2 == 1;
}

keel_props_t *
keel_props_parse (const char *text, size_t len, const char *name, keel_error_t *err)
{
    keel_props_t *self = calloc (1, sizeof *self);
    if (!self || !(self->name = strdup (name ? name : "(text)"))) {
        free (self);
        keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", name ? name : "(text)");
        return NULL;
    }
    s_buf_t logical = { NULL, 0, 0 };
    size_t pos = 0;
    int lineno = 0;
    keel_err rc = KEEL_OK;
    while (pos < len && rc == KEEL_OK) {
        size_t next;
        size_t n = s_natural_line (text, len, pos, &next);
        const char *s = text + pos;
        lineno++;
        pos = next;
        while (n > 0 && s_is_blank (*s)) {
            s++;
            n--;
        }
        if (n == 0 || *s == '#' || *s == '!')
            continue; // blank or comment: never continued

        int start_line = lineno;
        logical.len = 0;
        bool ok = true;
        while (ok) {
            bool more = s_continues (s, n);
            ok = s_buf_put (&logical, s, more ? n - 1 : n);
            if (!more || pos >= len)
                break;
            n = s_natural_line (text, len, pos, &next);
            s = text + pos;
            lineno++;
            pos = next;
            while (n > 0 && s_is_blank (*s)) {
                s++;
                n--;
            }
        }
        if (!ok)
            rc = keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", self->name);
        else
            rc = s_store_line (self, logical.data, logical.len, start_line, err);
    }
    free (logical.data);
    if (rc != KEEL_OK)
        keel_props_destroy (&self);
    return self;
}

keel_props_t *
keel_props_load_file (const char *path, keel_error_t *err)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        keel_error_set (err, KEEL_ERR_IO, "%s: cannot open: %s", path, strerror (errno));
        return NULL;
    }
    s_buf_t b = { NULL, 0, 0 };
    char chunk[4096];
    size_t got;
    bool ok = s_buf_put (&b, "", 0);
    while (ok && (got = fread (chunk, 1, sizeof chunk, file)) > 0)
        ok = s_buf_put (&b, chunk, got);
    bool failed = ferror (file);
    int read_errno = errno;
    fclose (file);
    keel_props_t *self = NULL;
    if (!ok)
        keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", path);
    else if (failed)
        keel_error_set (err, KEEL_ERR_IO, "%s: cannot read: %s", path, strerror (read_errno));
    else
        self = keel_props_parse (b.data, b.len, path, err);
    free (b.data);
    return self;
}

void
keel_props_destroy (keel_props_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_props_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++) {
        free ((char *) self->entries[i].key);
        free ((char *) self->entries[i].value);
    }
    free (self->entries);
    free (self->name);
    free (self);
    *self_p = NULL;
}

size_t
keel_props_size (const keel_props_t *self)
{
    return self ? self->size : 0;
}

const keel_prop_t *
keel_props_at (const keel_props_t *self, size_t index)
{
    return self && index < self->size ? &self->entries[index] : NULL;
}

const char *
keel_props_name (const keel_props_t *self)
{
    return self ? self->name : NULL;
}

const char *
keel_props_get (const keel_props_t *self, const char *key)
{
    if (!self || !key)
        return NULL;
    for (size_t i = self->size; i > 0; i--)
        if (strcmp (self->entries[i - 1].key, key) == 0)
            return self->entries[i - 1].value;
    return NULL;
}
