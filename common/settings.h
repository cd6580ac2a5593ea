/*  settings.h — one table of settings per program (Redis standardConfig).

    Each program has one table of keel_setting_def_t, built from its list
    of settings (see "Typed accessors" below): every key once, with its
    type, unit, bounds, default, whether keel-admin may change it at run
    time, and a one-line description. The same table drives the
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

    Typed accessors. A program lists its keys once, as an X-macro
    PROGRAM_SETTINGS (KEY, PATTERN) in its config header, one entry per key
    in table order:
        KEY (HeartbeatInterval, DURATION, "s", "1s", 0.01, 60, false, NULL, "...")
        PATTERN (service_exec, "service.*.exec", STRING, NULL, NULL, 0, 0, false, NULL, "...")
    (the fields of keel_setting_def_t; a KEY's name is its key as written).
    The list expands into the table (KEEL_SETTING_ROW, KEEL_SETTING_PATTERN_ROW)
    and into one static inline accessor per key (KEEL_SETTING_ACCESSOR),
    named PREFIX + the key as written, returning the type the key's type reads as:
        int64_t keel_broker_cfg_HeartbeatInterval (const keel_settings_t *s);  // ms
    STRING and ENUM read as const char * ("" when unset), INT as int64_t,
    DOUBLE as double, BOOL as bool, DURATION as int64_t milliseconds. A
    pattern gets a keel_settings_match wrapper named PREFIX + "match_" + its
    identifier (the pattern's words joined by '_'):
        int keel_engine_cfg_match_service_exec (const keel_settings_t *s, fn, arg);
    Call sites read settings through these, so a misspelt key or a wrong
    type is a compile error; the by-string readers below remain for keys
    that come from outside (keel-admin config get/set, --set).
    Prefixes: keel_broker_cfg_ (broker/config.h), keel_engine_cfg_
    (engine/engine_config.h), keel_driver_cfg_ (driver/driver_config.h).
*/
#ifndef KEEL_SETTINGS_H
#define KEEL_SETTINGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "error.h"

typedef enum {
    KEEL_SETTING_STRING,
    KEEL_SETTING_INT,    // int64; min/max apply
    KEEL_SETTING_DOUBLE, // min/max apply
    KEEL_SETTING_BOOL,
    KEEL_SETTING_DURATION, // stored in ms; min/max apply in the key's unit
    KEEL_SETTING_ENUM      // one of enum_values, "a|b|c"
} keel_setting_type_t;

typedef struct {
    const char *name; // "EngineTimeoutMinutes", or a pattern "service.*.exec"
    keel_setting_type_t type;
    const char *unit; // durations: unit of a bare number; others: shown in docs (may be NULL)
    const char *default_value; // parsed like user input; NULL = no default (empty)
    double min, max;           // bounds for INT, DOUBLE, DURATION (in unit); min == max == 0: none
    bool runtime;              // keel-admin config set may change it while running
    const char *enum_values;   // ENUM only: "exit|restart"
    const char *description;   // one line
} keel_setting_def_t;

// A table ends with an entry whose name is NULL.
#define KEEL_SETTINGS_END                                                                          \
    {                                                                                              \
        NULL, KEEL_SETTING_STRING, NULL, NULL, 0, 0, false, NULL, NULL                             \
    }

typedef struct _keel_settings_t keel_settings_t;

// Expand a KEY or PATTERN entry of a settings list (see the top of this file)
// into a row of the table.
#define KEEL_SETTING_ROW(name, type, unit, default_value, min, max, runtime, enum_values,            \
                         description)                                                                \
    {                                                                                                \
        #name, KEEL_SETTING_##type, unit, default_value, min, max, runtime, enum_values, description \
    },
#define KEEL_SETTING_PATTERN_ROW(ident, pattern, type, unit, default_value, min, max, runtime,     \
                                 enum_values, description)                                         \
    {                                                                                              \
        pattern, KEEL_SETTING_##type, unit,       default_value, min, max,                         \
        runtime, enum_values,         description                                                  \
    },

// Define the typed accessor prefix##name of key name (type: a keel_setting_type_t
// without its KEEL_SETTING_ prefix), and the keel_settings_match wrapper
// prefix##match_##ident of a pattern.
#define KEEL_SETTING_ACCESSOR(prefix, name, type)                                                  \
    static inline KEEL_SETTING_CTYPE_##type prefix##name (const keel_settings_t *settings)         \
    {                                                                                              \
        return KEEL_SETTING_READ_##type (settings, #name);                                         \
    }
#define KEEL_SETTING_MATCHER(prefix, ident, pattern)                                               \
    static inline int prefix##match_##ident (const keel_settings_t *settings,                      \
                                             keel_settings_match_fn *fn, void *arg)                \
    {                                                                                              \
        return keel_settings_match (settings, pattern, fn, arg);                                   \
    }
// A KEY or PATTERN callback that expands to nothing.
#define KEEL_SETTING_IGNORE(...)

// The C type each setting type reads as, and the by-string reader behind it.
#define KEEL_SETTING_CTYPE_STRING   const char *
#define KEEL_SETTING_CTYPE_ENUM     const char *
#define KEEL_SETTING_CTYPE_INT      int64_t
#define KEEL_SETTING_CTYPE_DOUBLE   double
#define KEEL_SETTING_CTYPE_BOOL     bool
#define KEEL_SETTING_CTYPE_DURATION int64_t
#define KEEL_SETTING_READ_STRING    keel_settings_str
#define KEEL_SETTING_READ_ENUM      keel_settings_str
#define KEEL_SETTING_READ_INT       keel_settings_int
#define KEEL_SETTING_READ_DOUBLE    keel_settings_double
#define KEEL_SETTING_READ_BOOL      keel_settings_bool
#define KEEL_SETTING_READ_DURATION  keel_settings_ms

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

// Readers by key, for keys that come from outside (keel-admin, --set) and
// behind the typed accessors; code reads a known key through its accessor.
// The key must exist in the table (asserted: a programmer error).
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
typedef void (keel_settings_match_fn) (const char *key, const char *wildcard, const char *value,
                                       void *arg);
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
