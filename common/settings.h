/*  settings.h — one table of settings per program (Redis standardConfig).

    Each program declares a static table of keel_setting_def_t: every key
    once, with its type, unit, bounds, default, whether keel-admin may change
    it at run time, and a one-line description. The same table drives the
    parser (file, environment, --set), the defaults, --help, keel-admin
    config get/set and the generated key list in docs/configuration.md, so
    they cannot drift apart.

    Sources, lowest precedence first: defaults, the properties file (-c),
    environment variables, --set KEY=VALUE (in command-line order).
    The environment variable for key K is KEEL_K with K as written
    (KEEL_EngineTimeoutMinutes) or upper-cased (KEEL_ENGINETIMEOUTMINUTES);
    pattern keys (service.*.exec) have no environment variable.

    Pattern keys: a name with one '*' segment ("service.*.exec") matches any
    key with a non-empty segment of [A-Za-z0-9_-] in its place. Their values
    are listed with keel_settings_match.

    Durations: a number (fractional allowed) with an optional unit ms, s, m,
    min, h; a bare number is in the key's unit ("ms", "s", "min", "h").
    A duration key whose name carries its unit (…Minutes/Mins, …Hours,
    …Seconds/Secs, …Ms/Millis: EngineTimeoutMinutes) takes a number in
    that unit only, written bare or with that unit: "30s" for
    EngineTimeoutMinutes is refused ("expected a number of minutes (the name
    gives the unit; 30s is 0.5), got '30s'"), and such a table entry must
    have that unit (checked by keel_settings_new). Bounds and defaults are
    printed without exponents, with a unit ("1 GiB", "50 ms to 60 s").
    Durations are read back in milliseconds. Booleans: true/false, yes/no,
    on/off, 1/0. Errors name the origin: "broker.properties:12:
    EngineTimeoutMinutes: expected a duration (e.g. 30s, 5m), got 'ten'".
*/
#ifndef KEEL_SETTINGS_H
#define KEEL_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "error.h"

typedef enum {
    KEEL_SETTING_STRING,
    KEEL_SETTING_INT,        // int64; min/max apply
    KEEL_SETTING_DOUBLE,     // min/max apply
    KEEL_SETTING_BOOL,
    KEEL_SETTING_DURATION,   // stored in ms; min/max apply in the key's unit
    KEEL_SETTING_ENUM        // one of enum_values, "a|b|c"
} keel_setting_type_t;

typedef struct {
    const char *name;            // "EngineTimeoutMinutes", or a pattern "service.*.exec"
    keel_setting_type_t type;
    const char *unit;            // durations: unit of a bare number; others: shown in docs (may be NULL)
    const char *default_value;   // parsed like user input; NULL = no default (empty)
    double min, max;             // bounds for INT, DOUBLE, DURATION (in unit); min == max == 0: none
    bool runtime;                // keel-admin config set may change it while running
    const char *enum_values;     // ENUM only: "exit|restart"
    const char *description;     // one line
} keel_setting_def_t;

// A table ends with an entry whose name is NULL.
#define KEEL_SETTINGS_END { NULL, KEEL_SETTING_STRING, NULL, NULL, 0, 0, false, NULL, NULL }

typedef struct _keel_settings_t keel_settings_t;

// Creates settings holding every default of table (the table must outlive
// the object). Returns NULL if a default does not parse (a programmer error,
// reported in err).
keel_settings_t *keel_settings_new (const keel_setting_def_t *table, keel_error_t *err);
void keel_settings_destroy (keel_settings_t **self_p);

// Applies a properties file. Unknown keys and bad values are errors naming
// file and line. Returns KEEL_OK or KEEL_ERR_CONFIG/KEEL_ERR_IO.
keel_err keel_settings_load_file (keel_settings_t *self, const char *path, keel_error_t *err);

// Applies KEEL_<KEY> environment variables for every non-pattern key.
keel_err keel_settings_load_env (keel_settings_t *self, keel_error_t *err);

// Sets one key from text; origin names the source in messages ("--set",
// "keel-admin", "file.properties:3"). Unknown key → KEEL_ERR_NOTFOUND.
keel_err keel_settings_set (keel_settings_t *self, const char *key, const char *value,
                            const char *origin, keel_error_t *err);

// Parses "KEY=VALUE" (from --set) and applies it.
keel_err keel_settings_set_pair (keel_settings_t *self, const char *pair, keel_error_t *err);

// Checks a value for key without applying it.
keel_err keel_settings_check (const keel_settings_t *self, const char *key, const char *value,
                              keel_error_t *err);

// Readers. The key must exist in the table (asserted: a programmer error).
// keel_settings_str returns the value as text ("" when unset, never NULL).
const char *keel_settings_str (const keel_settings_t *self, const char *key);
int64_t keel_settings_int (const keel_settings_t *self, const char *key);
double keel_settings_double (const keel_settings_t *self, const char *key);
bool keel_settings_bool (const keel_settings_t *self, const char *key);
int64_t keel_settings_ms (const keel_settings_t *self, const char *key);

// Where the current value came from: "default", "FILE:LINE", "env", "--set", ...
const char *keel_settings_origin (const keel_settings_t *self, const char *key);

// The definition of key (or of the pattern that matches it), or NULL.
const keel_setting_def_t *keel_settings_def (const keel_settings_t *self, const char *key);

// Calls fn for every key set that matches pattern ("service.*.exec") with the
// '*' segment in wildcard. Returns the number of matches.
typedef void (keel_settings_match_fn) (const char *key, const char *wildcard,
                                       const char *value, void *arg);
int keel_settings_match (const keel_settings_t *self, const char *pattern,
                         keel_settings_match_fn *fn, void *arg);

// Parses a duration such as "500ms", "30s", "5m", "2h", "1.5" (in unit);
// unit is one of "ms", "s", "min", "h". Returns KEEL_OK and *ms_p, or
// KEEL_ERR_INVALID with a message.
keel_err keel_duration_parse (const char *text, const char *unit, int64_t *ms_p, keel_error_t *err);

// Parses a boolean as above.
keel_err keel_bool_parse (const char *text, bool *value_p);

// Prints the table for --help: one line per key with default and unit.
void keel_settings_print_help (const keel_setting_def_t *table, FILE *out);

// Prints the table as a Markdown table for docs/configuration.md.
void keel_settings_print_markdown (const keel_setting_def_t *table, FILE *out);

#endif
