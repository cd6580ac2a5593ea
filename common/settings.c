/*  settings.c — the settings table: parsing, sources, readers, help.

    Values live in one slot per table entry (for a pattern entry the slot
    holds the pattern's default) plus a list of pattern instances
    ("service.myapp.exec") in the order they were first set. Tables are
    small, so lookups are linear scans.

    Values of non-string types are trimmed of surrounding white space. An
    empty value is accepted for a key without a default and means "unset"
    (numbers read as 0, booleans as false).
*/
#include "settings.h"
#include "props.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    char *value;  // text as applied; "" when unset
    char *origin; // "default", "FILE:LINE", "env KEEL_X", "--set", ...
    int64_t i;    // INT; DURATION in ms; BOOL as 0/1
    double d;     // DOUBLE (and INT, for convenience)
} s_value_t;

typedef struct {
    char *key;  // "service.myapp.exec"
    size_t def; // index of the pattern in the table
    s_value_t v;
} s_instance_t;

struct _keel_settings_t {
    const keel_setting_def_t *table;
    size_t count;
    s_value_t *values; // count slots
    s_instance_t *inst;
    size_t ninst, cap;
};

#define S_DURATION_HINT "expected a duration (e.g. 30s, 5m)"

static void
s_value_free (s_value_t *v)
{
    free (v->value);
    free (v->origin);
    v->value = v->origin = NULL;
}

static bool
s_is_pattern (const keel_setting_def_t *def)
{
    return strchr (def->name, '*') != NULL;
}

//  Matches key against pattern ("a.*.b"); the '*' segment must be a
//  non-empty run of [A-Za-z0-9_-]. On success sets *wild/*wild_len.
static bool
s_pattern_match (const char *pattern, const char *key, bool nocase, const char **wild,
                 size_t *wild_len)
{
    const char *star = strchr (pattern, '*');
    if (!star)
        return false;
    size_t pre = (size_t) (star - pattern), post = strlen (star + 1), len = strlen (key);
    if (len <= pre + post)
        return false;
    int (*cmp) (const char *, const char *, size_t) = nocase ? strncasecmp : strncmp;
    if (cmp (key, pattern, pre) != 0 || cmp (key + len - post, star + 1, post) != 0)
        return false;
    for (size_t i = pre; i < len - post; i++)
        if (!isalnum ((unsigned char) key[i]) && key[i] != '_' && key[i] != '-')
            return false;
    if (wild) {
        *wild = key + pre;
        *wild_len = len - pre - post;
    }
    return true;
}

//  Index of the definition for key, or -1.
static long
s_find_def (const keel_setting_def_t *table, const char *key, bool nocase)
{
    for (size_t i = 0; table[i].name; i++)
        if (!s_is_pattern (&table[i])
            && (nocase ? strcasecmp (table[i].name, key) : strcmp (table[i].name, key)) == 0)
            return (long) i;
    for (size_t i = 0; table[i].name; i++)
        if (s_is_pattern (&table[i]) && s_pattern_match (table[i].name, key, nocase, NULL, NULL))
            return (long) i;
    return -1;
}

//  Case-insensitive edit distance, capped: returns cap + 1 when farther.
static size_t
s_distance (const char *a, const char *b, size_t cap)
{
    size_t la = strlen (a), lb = strlen (b);
    if (la > 64 || lb > 64 || (la > lb ? la - lb : lb - la) > cap)
        return cap + 1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower ((unsigned char) a[i - 1]) != tolower ((unsigned char) b[j - 1]);
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

//  Fills hint with " (did you mean 'X'?)" for a near miss, else "".
static void
s_suggest (const keel_setting_def_t *table, const char *key, char *hint, size_t size)
{
    hint[0] = '\0';
    long d = s_find_def (table, key, true);
    if (d >= 0 && !s_is_pattern (&table[d])) {
        snprintf (hint, size, " (did you mean '%s'?)", table[d].name);
        return;
    }
    if (d >= 0) {
        const char *name = table[d].name, *star = strchr (name, '*'), *wild;
        size_t wild_len;
        s_pattern_match (name, key, true, &wild, &wild_len);
        snprintf (hint, size, " (did you mean '%.*s%.*s%s'?)", (int) (star - name), name,
                  (int) wild_len, wild, star + 1);
        return;
    }
    // A typo or two in a long name; one in a short one.
    size_t len = strlen (key), cap = len >= 8 ? 2 : 1;
    if (len < 4)
        return;
    for (size_t i = 0; table[i].name; i++)
        if (!s_is_pattern (&table[i]) && s_distance (key, table[i].name, cap) <= cap) {
            snprintf (hint, size, " (did you mean '%s'?)", table[i].name);
            return;
        }
}

static int64_t
s_unit_ms (const char *unit)
{
    if (!unit || strcmp (unit, "ms") == 0)
        return 1;
    if (strcmp (unit, "s") == 0)
        return 1000;
    if (strcmp (unit, "m") == 0 || strcmp (unit, "min") == 0)
        return 60000;
    if (strcmp (unit, "h") == 0)
        return 3600000;
    return 0;
}

//  Full name of a duration unit, for messages ("minutes").
static const char *
s_unit_words (const char *unit)
{
    switch (s_unit_ms (unit)) {
        case 1:
            return "milliseconds";
        case 1000:
            return "seconds";
        case 60000:
            return "minutes";
        case 3600000:
            return "hours";
    }
    return unit ? unit : "";
}

//  The unit a duration key's name carries ("EngineTimeoutMinutes": "min"),
//  or NULL. Such a key takes a number in that unit only (settings.h).
static const char *
s_name_unit (const char *name)
{
    static const char *suffix[][2] = {
        { "Millis", "ms" },   { "Ms", "ms" },    { "Seconds", "s" }, { "Secs", "s" },
        { "Minutes", "min" }, { "Mins", "min" }, { "Hours", "h" },
    };
    size_t len = strlen (name);
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        size_t n = strlen (suffix[i][0]);
        if (len > n && strcmp (name + len - n, suffix[i][0]) == 0)
            return suffix[i][1];
    }
    return NULL;
}

//  Writes v without an exponent: integers as integers, fractions with at
//  most six decimals and no trailing zeros ("0.001").
static void
s_format_number (double v, char *buf, size_t size)
{
    if (v == floor (v) && fabs (v) < 1e18) {
        snprintf (buf, size, "%.0f", v);
        return;
    }
    snprintf (buf, size, "%.6f", v);
    char *end = buf + strlen (buf);
    while (end > buf && end[-1] == '0')
        *--end = '\0';
    if (end > buf && end[-1] == '.')
        *--end = '\0';
}

//  Parses a duration. fixed: the key's name carries its unit, so a suffix
//  other than that unit is refused (30s for EngineTimeoutMinutes would
//  otherwise be read one way by the parser and another by a person).
static keel_err
s_duration (const char *text, const char *unit, bool allow_negative, bool fixed, int64_t *ms_p,
            keel_error_t *err)
{
    int64_t scale = s_unit_ms (unit), key_scale = scale;
    if (!scale)
        return keel_error_set (err, KEEL_ERR_INVALID, "unknown duration unit '%s'", unit);
    const char *p = text;
    bool negative = *p == '-';
    if (*p == '-' || *p == '+')
        p++;
    double value = 0;
    int digits = 0;
    for (; isdigit ((unsigned char) *p) && digits < 18; p++, digits++)
        value = value * 10 + (*p - '0');
    if (*p == '.') {
        double frac = 0.1;
        for (p++; isdigit ((unsigned char) *p); p++, digits++, frac /= 10)
            value += (*p - '0') * frac;
    }
    while (*p == ' ')
        p++;
    if (*p)
        scale = s_unit_ms (p);
    if (!digits || !scale)
        return keel_error_set (err, KEEL_ERR_INVALID, S_DURATION_HINT ", got '%s'", text);
    if (fixed && scale != key_scale) {
        char same[48];
        s_format_number (value * (double) scale / (double) key_scale, same, sizeof same);
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "expected a number of %s (the name gives the unit; %s is %s%s), "
                               "got '%s'",
                               s_unit_words (unit), text, negative ? "-" : "", same, text);
    }
    if (negative && !allow_negative)
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "expected a duration that is not negative, got '%s'", text);
    double ms = round (value * (double) scale);
    if (ms > 9.2e15)
        return keel_error_set (err, KEEL_ERR_INVALID, "duration '%s' is too long", text);
    *ms_p = (int64_t) (negative ? -ms : ms);
    return KEEL_OK;
}

keel_err
keel_duration_parse (const char *text, const char *unit, int64_t *ms_p, keel_error_t *err)
{
    assert (text && ms_p);
    return s_duration (text, unit, false, false, ms_p, err);
}

keel_err
keel_bool_parse (const char *text, bool *value_p)
{
    static const char *yes[] = { "true", "yes", "on", "1" };
    static const char *no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; text && i < 4; i++) {
        if (strcasecmp (text, yes[i]) == 0 || strcasecmp (text, no[i]) == 0) {
            *value_p = strcasecmp (text, yes[i]) == 0;
            return KEEL_OK;
        }
    }
    return KEEL_ERR_INVALID;
}

static bool
s_bounded (const keel_setting_def_t *def)
{
    return !(def->min == 0 && def->max == 0);
}

//  One amount of def's kind as a number and a unit, for bounds and
//  defaults in messages and docs: integers as integers, byte counts in
//  KiB/MiB/GiB when exact ("1 GiB"), durations in the key's unit or, for a
//  fraction of it, in a smaller unit where they are whole ("50 ms");
//  a key whose name carries its unit keeps that unit ("0.001 min").
static void
s_amount (const keel_setting_def_t *def, double v, char *num, size_t size, const char **unit_p)
{
    const char *unit = def->unit ? def->unit : "";
    if (def->type == KEEL_SETTING_DURATION && !s_name_unit (def->name) && v != floor (v)) {
        static const char *smaller[] = { "h", "min", "s", "ms" };
        double ms = v * (double) s_unit_ms (def->unit);
        for (size_t i = 0; i < 4; i++) {
            double scale = (double) s_unit_ms (smaller[i]);
            if (scale < (double) s_unit_ms (def->unit)
                && fabs (ms - round (ms / scale) * scale) < 1e-6) {
                v = round (ms / scale);
                unit = smaller[i];
                break;
            }
        }
    }
    else if (strcmp (unit, "bytes") == 0 && v == floor (v)) {
        static const char *binary[] = { "GiB", "MiB", "KiB" };
        for (int i = 0; i < 3; i++) {
            double scale = ldexp (1.0, 10 * (3 - i));
            if (v >= scale && fmod (v, scale) == 0) {
                v /= scale;
                unit = binary[i];
                break;
            }
        }
        if (v == 1 && strcmp (unit, "bytes") == 0)
            unit = "byte";
    }
    s_format_number (v, num, size);
    *unit_p = unit;
}

//  "1 to 100", "0 to 10000 tasks", "1 byte to 1 GiB", "50 ms to 60 s".
static void
s_format_range (const keel_setting_def_t *def, char *buf, size_t size)
{
    char lo[48], hi[48];
    const char *lo_unit, *hi_unit;
    s_amount (def, def->min, lo, sizeof lo, &lo_unit);
    s_amount (def, def->max, hi, sizeof hi, &hi_unit);
    if (strcmp (lo_unit, hi_unit) == 0 || def->min == 0)
        snprintf (buf, size, "%s to %s%s%s", lo, hi, *hi_unit ? " " : "", hi_unit);
    else
        snprintf (buf, size, "%s%s%s to %s%s%s", lo, *lo_unit ? " " : "", lo_unit, hi,
                  *hi_unit ? " " : "", hi_unit);
}

//  " (64 MiB)" after a default byte count where that reads better, else "".
static void
s_default_hint (const keel_setting_def_t *def, char *buf, size_t size)
{
    buf[0] = '\0';
    if (!def->unit || strcmp (def->unit, "bytes") != 0 || !def->default_value)
        return;
    char *end = NULL;
    double v = strtod (def->default_value, &end);
    if (end == def->default_value || *end)
        return;
    char num[48];
    const char *unit;
    s_amount (def, v, num, sizeof num, &unit);
    if (strcmp (unit, "bytes") != 0 && strcmp (unit, "byte") != 0)
        snprintf (buf, size, " (%s %s)", num, unit);
}

//  Finds text among "a|b|c" case-insensitively; returns the canonical
//  spelling (allocated) or NULL.
static char *
s_enum_find (const char *values, const char *text)
{
    size_t len = strlen (text);
    for (const char *p = values; p && *p;) {
        const char *bar = strchr (p, '|');
        size_t n = bar ? (size_t) (bar - p) : strlen (p);
        if (n == len && len > 0 && strncasecmp (p, text, n) == 0)
            return strndup (p, n);
        p = bar ? bar + 1 : NULL;
    }
    return NULL;
}

//  Parses text for def into *out (value allocated; origin left NULL).
//  Errors read "KEY: what was expected, got 'text'".
static keel_err
s_parse (const keel_setting_def_t *def, const char *key, const char *text, s_value_t *out,
         keel_error_t *err)
{
    memset (out, 0, sizeof *out);
    if (!text)
        text = "";
    size_t start = 0, end = strlen (text);
    if (def->type != KEEL_SETTING_STRING) {
        while (text[start] == ' ' || text[start] == '\t')
            start++;
        while (end > start && (text[end - 1] == ' ' || text[end - 1] == '\t'))
            end--;
    }
    char *value = strndup (text + start, end - start);
    if (!value)
        return keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", key);
    keel_err rc = KEEL_OK;
    char *stop = NULL;
    if (*value == '\0' && def->type != KEEL_SETTING_STRING && !def->default_value)
        ; // unset
    else
        switch (def->type) {
            case KEEL_SETTING_STRING:
                break;
            case KEEL_SETTING_INT:
                errno = 0;
                out->i = strtoll (value, &stop, 10);
                out->d = (double) out->i;
                if (stop == value || *stop || errno == ERANGE)
                    rc = keel_error_set (err, KEEL_ERR_CONFIG, "%s: expected an integer, got '%s'",
                                         key, value);
                break;
            case KEEL_SETTING_DOUBLE:
                out->d = strtod (value, &stop);
                if (stop == value || *stop || !isfinite (out->d))
                    rc = keel_error_set (err, KEEL_ERR_CONFIG, "%s: expected a number, got '%s'",
                                         key, value);
                break;
            case KEEL_SETTING_BOOL: {
                bool b = false;
                if (keel_bool_parse (value, &b) != KEEL_OK)
                    rc =
                        keel_error_set (err, KEEL_ERR_CONFIG,
                                        "%s: expected a boolean (true/false, yes/no, on/off, 1/0), "
                                        "got '%s'",
                                        key, value);
                out->i = b;
                break;
            }
            case KEEL_SETTING_DURATION:
                if (s_duration (value, def->unit, def->min < 0, s_name_unit (def->name) != NULL,
                                &out->i, err)
                    != KEEL_OK) {
                    keel_error_prefix (err, "%s", key);
                    rc = KEEL_ERR_CONFIG;
                }
                out->d = (double) out->i / (double) s_unit_ms (def->unit);
                break;
            case KEEL_SETTING_ENUM: {
                char *canonical = s_enum_find (def->enum_values, value);
                if (!canonical)
                    rc = keel_error_set (err, KEEL_ERR_CONFIG, "%s: expected one of %s, got '%s'",
                                         key, def->enum_values ? def->enum_values : "", value);
                else {
                    free (value);
                    value = canonical;
                }
                break;
            }
        }
    if (rc == KEEL_OK && *value && s_bounded (def)
        && (def->type == KEEL_SETTING_INT || def->type == KEEL_SETTING_DOUBLE
            || def->type == KEEL_SETTING_DURATION)
        && (out->d < def->min || out->d > def->max)) {
        char range[128];
        s_format_range (def, range, sizeof range);
        rc = keel_error_set (err, KEEL_ERR_CONFIG, "%s: '%s' is out of range (%s)", key, value,
                             range);
    }
    if (rc != KEEL_OK) {
        free (value);
        return rc;
    }
    out->value = value;
    return KEEL_OK;
}

keel_settings_t *
keel_settings_new (const keel_setting_def_t *table, keel_error_t *err)
{
    assert (table);
    keel_settings_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "settings: out of memory");
        return NULL;
    }
    self->table = table;
    while (table[self->count].name)
        self->count++;
    self->values = calloc (self->count + 1, sizeof *self->values);
    if (!self->values) {
        keel_error_set (err, KEEL_ERR_NOMEM, "settings: out of memory");
        keel_settings_destroy (&self);
        return NULL;
    }
    for (size_t i = 0; i < self->count; i++) {
        const keel_setting_def_t *def = &table[i];
        const char *star = strchr (def->name, '*');
        keel_err rc = KEEL_OK;
        if (star && strchr (star + 1, '*'))
            rc = keel_error_set (err, KEEL_ERR_INVALID, "%s: more than one '*'", def->name);
        else if (def->type == KEEL_SETTING_DURATION && !s_unit_ms (def->unit))
            rc = keel_error_set (err, KEEL_ERR_INVALID, "%s: unknown duration unit '%s'", def->name,
                                 def->unit);
        else if (def->type == KEEL_SETTING_DURATION && s_name_unit (def->name)
                 && s_unit_ms (s_name_unit (def->name)) != s_unit_ms (def->unit))
            rc = keel_error_set (err, KEEL_ERR_INVALID, "%s: the name says %s, the unit is '%s'",
                                 def->name, s_unit_words (s_name_unit (def->name)), def->unit);
        else if (def->type == KEEL_SETTING_ENUM && !def->enum_values)
            rc = keel_error_set (err, KEEL_ERR_INVALID, "%s: enum without values", def->name);
        else
            rc = s_parse (def, def->name, def->default_value, &self->values[i], err);
        if (rc == KEEL_OK && !(self->values[i].origin = strdup ("default")))
            rc = keel_error_set (err, KEEL_ERR_NOMEM, "settings: out of memory");
        if (rc != KEEL_OK) {
            keel_error_prefix (err, "default of %s", def->name);
            keel_settings_destroy (&self);
            return NULL;
        }
    }
    return self;
}

void
keel_settings_destroy (keel_settings_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_settings_t *self = *self_p;
    for (size_t i = 0; self->values && i < self->count; i++)
        s_value_free (&self->values[i]);
    for (size_t i = 0; i < self->ninst; i++) {
        free (self->inst[i].key);
        s_value_free (&self->inst[i].v);
    }
    free (self->values);
    free (self->inst);
    free (self);
    *self_p = NULL;
}

static s_instance_t *
s_instance (const keel_settings_t *self, const char *key)
{
    for (size_t i = 0; i < self->ninst; i++)
        if (strcmp (self->inst[i].key, key) == 0)
            return &self->inst[i];
    return NULL;
}

//  Finds the definition and parses; unknown keys get a suggestion.
static keel_err
s_check (const keel_settings_t *self, const char *key, const char *value, long *def_p,
         s_value_t *out, keel_error_t *err)
{
    long d = key ? s_find_def (self->table, key, false) : -1;
    if (d < 0) {
        char hint[128];
        s_suggest (self->table, key ? key : "", hint, sizeof hint);
        return keel_error_set (err, KEEL_ERR_NOTFOUND, "unknown key '%s'%s", key ? key : "", hint);
    }
    *def_p = d;
    return s_parse (&self->table[d], key, value, out, err);
}

keel_err
keel_settings_check (const keel_settings_t *self, const char *key, const char *value,
                     keel_error_t *err)
{
    assert (self);
    long d = -1;
    s_value_t v;
    keel_err rc = s_check (self, key, value, &d, &v, err);
    if (rc == KEEL_OK)
        s_value_free (&v);
    return rc;
}

keel_err
keel_settings_set (keel_settings_t *self, const char *key, const char *value, const char *origin,
                   keel_error_t *err)
{
    assert (self);
    if (!origin)
        origin = "set";
    long d = -1;
    s_value_t v;
    keel_err rc = s_check (self, key, value, &d, &v, err);
    if (rc != KEEL_OK) {
        keel_error_prefix (err, "%s", origin);
        return rc;
    }
    if (!(v.origin = strdup (origin))) {
        s_value_free (&v);
        return keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", origin);
    }
    if (!s_is_pattern (&self->table[d])) {
        s_value_free (&self->values[d]);
        self->values[d] = v;
        return KEEL_OK;
    }
    s_instance_t *inst = s_instance (self, key);
    if (!inst) {
        if (self->ninst == self->cap) {
            size_t cap = self->cap ? self->cap * 2 : 8;
            s_instance_t *grown = realloc (self->inst, cap * sizeof *grown);
            if (!grown) {
                s_value_free (&v);
                return keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", origin);
            }
            self->inst = grown;
            self->cap = cap;
        }
        char *copy = strdup (key);
        if (!copy) {
            s_value_free (&v);
            return keel_error_set (err, KEEL_ERR_NOMEM, "%s: out of memory", origin);
        }
        inst = &self->inst[self->ninst++];
        *inst = (s_instance_t) { copy, (size_t) d, { NULL, NULL, 0, 0 } };
    }
    s_value_free (&inst->v);
    inst->v = v;
    return KEEL_OK;
}

keel_err
keel_settings_set_pair (keel_settings_t *self, const char *pair, keel_error_t *err)
{
    assert (self);
    const char *eq = pair ? strchr (pair, '=') : NULL;
    if (!eq || eq == pair)
        return keel_error_set (err, KEEL_ERR_CONFIG, "--set: expected KEY=VALUE, got '%s'",
                               pair ? pair : "");
    char *key = strndup (pair, (size_t) (eq - pair));
    if (!key)
        return keel_error_set (err, KEEL_ERR_NOMEM, "--set: out of memory");
    keel_err rc = keel_settings_set (self, key, eq + 1, "--set", err);
    free (key);
    return rc == KEEL_ERR_NOTFOUND ? KEEL_ERR_CONFIG : rc;
}

keel_err
keel_settings_load_file (keel_settings_t *self, const char *path, keel_error_t *err)
{
    assert (self && path);
    keel_error_t local;
    keel_props_t *props = keel_props_load_file (path, &local);
    if (!props) {
        // The parser names I/O failures "PATH: cannot ..."; the rest are syntax.
        size_t n = strlen (path);
        bool io =
            strncmp (local.text, path, n) == 0 && strncmp (local.text + n, ": cannot ", 9) == 0;
        keel_error_set (err, io ? KEEL_ERR_IO : KEEL_ERR_CONFIG, "%s", local.text);
        return io ? KEEL_ERR_IO : KEEL_ERR_CONFIG;
    }
    keel_err rc = KEEL_OK;
    for (size_t i = 0; rc == KEEL_OK && i < keel_props_size (props); i++) {
        const keel_prop_t *prop = keel_props_at (props, i);
        char origin[512];
        snprintf (origin, sizeof origin, "%s:%d", path, prop->line);
        rc = keel_settings_set (self, prop->key, prop->value, origin, err);
    }
    keel_props_destroy (&props);
    return rc == KEEL_OK || rc == KEEL_ERR_NOMEM ? rc : KEEL_ERR_CONFIG;
}

keel_err
keel_settings_load_env (keel_settings_t *self, keel_error_t *err)
{
    assert (self);
    for (size_t i = 0; i < self->count; i++) {
        const keel_setting_def_t *def = &self->table[i];
        if (s_is_pattern (def))
            continue;
        char var[256];
        snprintf (var, sizeof var, "KEEL_%s", def->name);
        const char *value = getenv (var);
        if (!value) {
            for (char *p = var; *p; p++)
                *p = isalnum ((unsigned char) *p) ? (char) toupper ((unsigned char) *p) : '_';
            value = getenv (var);
        }
        if (!value)
            continue;
        char origin[300];
        snprintf (origin, sizeof origin, "env %s", var);
        keel_err rc = keel_settings_set (self, def->name, value, origin, err);
        if (rc != KEEL_OK)
            return rc == KEEL_ERR_NOMEM ? rc : KEEL_ERR_CONFIG;
    }
    return KEEL_OK;
}

//  The value slot that answers for key; asserts the key is in the table.
static const s_value_t *
s_lookup (const keel_settings_t *self, const char *key, keel_setting_type_t *type_p)
{
    assert (self && key);
    long d = s_find_def (self->table, key, false);
    assert (d >= 0 && "key not in the settings table");
    if (type_p)
        *type_p = self->table[d].type;
    const s_instance_t *inst = s_is_pattern (&self->table[d]) ? s_instance (self, key) : NULL;
    return inst ? &inst->v : &self->values[d];
}

const char *
keel_settings_str (const keel_settings_t *self, const char *key)
{
    const s_value_t *v = s_lookup (self, key, NULL);
    return v->value ? v->value : "";
}

int64_t
keel_settings_int (const keel_settings_t *self, const char *key)
{
    keel_setting_type_t type;
    const s_value_t *v = s_lookup (self, key, &type);
    assert (type == KEEL_SETTING_INT);
    return v->i;
}

double
keel_settings_double (const keel_settings_t *self, const char *key)
{
    keel_setting_type_t type;
    const s_value_t *v = s_lookup (self, key, &type);
    assert (type == KEEL_SETTING_DOUBLE || type == KEEL_SETTING_INT);
    return v->d;
}

bool
keel_settings_bool (const keel_settings_t *self, const char *key)
{
    keel_setting_type_t type;
    const s_value_t *v = s_lookup (self, key, &type);
    assert (type == KEEL_SETTING_BOOL);
    return v->i != 0;
}

int64_t
keel_settings_ms (const keel_settings_t *self, const char *key)
{
    keel_setting_type_t type;
    const s_value_t *v = s_lookup (self, key, &type);
    assert (type == KEEL_SETTING_DURATION);
    return v->i;
}

const char *
keel_settings_origin (const keel_settings_t *self, const char *key)
{
    const s_value_t *v = s_lookup (self, key, NULL);
    return v->origin ? v->origin : "default";
}

const keel_setting_def_t *
keel_settings_def (const keel_settings_t *self, const char *key)
{
    assert (self);
    long d = key ? s_find_def (self->table, key, false) : -1;
    return d >= 0 ? &self->table[d] : NULL;
}

int
keel_settings_match (const keel_settings_t *self, const char *pattern, keel_settings_match_fn *fn,
                     void *arg)
{
    assert (self && pattern);
    int matches = 0;
    for (size_t i = 0; i < self->ninst; i++) {
        const char *wild;
        size_t wild_len;
        if (!s_pattern_match (pattern, self->inst[i].key, false, &wild, &wild_len))
            continue;
        matches++;
        if (fn) {
            char buf[256];
            snprintf (buf, sizeof buf, "%.*s", (int) wild_len, wild);
            fn (self->inst[i].key, buf, self->inst[i].v.value, arg);
        }
    }
    return matches;
}

//  Writes name with '*' shown as "<name>" into buf.
static const char *
s_display_name (const char *name, char *buf, size_t size)
{
    const char *star = strchr (name, '*');
    if (!star)
        snprintf (buf, size, "%s", name);
    else
        snprintf (buf, size, "%.*s<name>%s", (int) (star - name), name, star + 1);
    return buf;
}

static const char *
s_type_name (keel_setting_type_t type)
{
    switch (type) {
        case KEEL_SETTING_STRING:
            return "string";
        case KEEL_SETTING_INT:
            return "integer";
        case KEEL_SETTING_DOUBLE:
            return "number";
        case KEEL_SETTING_BOOL:
            return "boolean";
        case KEEL_SETTING_DURATION:
            return "duration";
        case KEEL_SETTING_ENUM:
            return "enum";
    }
    return "?";
}

//  The default as shown by --help: "-" when none, "67108864 (64 MiB)".
static const char *
s_default_text (const keel_setting_def_t *def, char *buf, size_t size)
{
    char hint[64];
    s_default_hint (def, hint, sizeof hint);
    snprintf (buf, size, "%s%s",
              def->default_value && *def->default_value ? def->default_value : "-", hint);
    return buf;
}

//  What follows a key's description in --help and the docs: the rule of a
//  key whose name carries its unit, then the range ("" when neither).
static const char *
s_notes (const keel_setting_def_t *def, char *buf, size_t size)
{
    buf[0] = '\0';
    const char *fixed = def->type == KEEL_SETTING_DURATION ? s_name_unit (def->name) : NULL;
    if (fixed)
        snprintf (buf, size, " (a number of %s, as the name says; another unit is refused)",
                  s_unit_words (fixed));
    if (s_bounded (def)) {
        char range[128];
        s_format_range (def, range, sizeof range);
        size_t len = strlen (buf);
        snprintf (buf + len, size - len, " (range %s)", range);
    }
    return buf;
}

void
keel_settings_print_help (const keel_setting_def_t *table, FILE *out)
{
    int wkey = 3, wdef = 7, wunit = 4;
    char name[256], dflt[160], notes[320];
    for (size_t i = 0; table[i].name; i++) {
        int n = (int) strlen (s_display_name (table[i].name, name, sizeof name));
        int d = (int) strlen (s_default_text (&table[i], dflt, sizeof dflt));
        int u = table[i].unit ? (int) strlen (table[i].unit) : 0;
        wkey = n > wkey ? n : wkey;
        wdef = d > wdef ? d : wdef;
        wunit = u > wunit ? u : wunit;
    }
    fprintf (out, "Settings (-c FILE, environment KEEL_<KEY>, --set KEY=VALUE):\n");
    fprintf (out, "  %-*s  %-*s  %-*s  %s\n", wkey, "KEY", wdef, "DEFAULT", wunit, "UNIT",
             "DESCRIPTION");
    for (size_t i = 0; table[i].name; i++) {
        const keel_setting_def_t *def = &table[i];
        fprintf (out, "  %-*s  %-*s  %-*s  %s", wkey, s_display_name (def->name, name, sizeof name),
                 wdef, s_default_text (def, dflt, sizeof dflt), wunit, def->unit ? def->unit : "",
                 def->description ? def->description : "");
        if (def->type == KEEL_SETTING_ENUM)
            fprintf (out, " (%s)", def->enum_values ? def->enum_values : "");
        fprintf (out, "%s\n", s_notes (def, notes, sizeof notes));
    }
}

//  Prints text with '|' escaped for a Markdown table cell.
static void
s_md_cell (FILE *out, const char *text)
{
    for (const char *p = text ? text : ""; *p; p++) {
        if (*p == '|')
            fputc ('\\', out);
        fputc (*p == '\n' ? ' ' : *p, out);
    }
}

void
keel_settings_print_markdown (const keel_setting_def_t *table, FILE *out)
{
    char name[256];
    fprintf (out, "| key | type | default | unit | runtime | description |\n");
    fprintf (out, "|---|---|---|---|---|---|\n");
    for (size_t i = 0; table[i].name; i++) {
        const keel_setting_def_t *def = &table[i];
        fprintf (out, "| `%s` | %s", s_display_name (def->name, name, sizeof name),
                 s_type_name (def->type));
        if (def->type == KEEL_SETTING_ENUM) {
            fprintf (out, ": ");
            s_md_cell (out, def->enum_values);
        }
        fprintf (out, " | ");
        if (def->default_value && *def->default_value) {
            char hint[64];
            fprintf (out, "`");
            s_md_cell (out, def->default_value);
            fprintf (out, "`%s", (s_default_hint (def, hint, sizeof hint), hint));
        }
        fprintf (out, " | %s | %s | ", def->unit ? def->unit : "", def->runtime ? "yes" : "no");
        s_md_cell (out, def->description);
        char notes[320];
        s_md_cell (out, s_notes (def, notes, sizeof notes));
        fprintf (out, " |\n");
    }
}
