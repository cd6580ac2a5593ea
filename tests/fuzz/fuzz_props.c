/*  fuzz_props.c — libFuzzer target for properties files and the settings
    they carry: common/props.c, the value parsers and bounds of
    common/settings.c (durations, integers, doubles, booleans, enums,
    pattern keys) over every key of the broker, engine and driver tables,
    and the engine's configuration built from them (engine_config.c:
    Brokers list, service.*.exec / .library / .timeout).

    Two shapes of input, told apart by the first byte:
      < 0x80  the whole input is a properties file (-c FILE); it is applied
              to each program's settings as keel_settings_load_file does;
      >= 0x80 byte 1 picks one key of the three tables (in table order,
              patterns with a fixed wildcard) and the rest is its value, as
              --set KEY=VALUE or `keel-admin config set` would give it, so
              every value parser is reached without guessing key names.

    Invariants:
      - every entry the parser returns has a key, a value and a line >= 1,
        lines never go backwards, and keel_props_get finds the last value
        of each key;
      - keel_settings_check and keel_settings_set agree on every value;
        a value taken reads back with the origin it was set from;
      - a value that was set reads back (keel_settings_str) as text that
        is accepted again and leaves the typed value unchanged (what
        keel-admin config get shows, config set takes).
*/
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "engine_config.h"
#include "keel/driver.h"
#include "log.h"
#include "props.h"
#include "settings.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

static const keel_setting_def_t *
s_table (int which)
{
    return which == 0   ? keel_broker_settings
           : which == 1 ? keel_engine_settings_table ()
                        : keel_driver_settings ();
}

static int
s_which (const keel_setting_def_t *table)
{
    return table == s_table (0) ? 0 : table == s_table (1) ? 1 : 2;
}

// Per table, the settings a value read back is set on again (one key at a
// time: each check overwrites only the key it tests).
static keel_settings_t *s_again[3];

static void
s_cleanup (void)
{
    for (int i = 0; i < 3; i++)
        keel_settings_destroy (&s_again[i]);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    keel_log_init (KEEL_LOG_ERROR);
    keel_error_t err;
    for (int i = 0; i < 3; i++)
        if (!(s_again[i] = keel_settings_new (s_table (i), &err)))
            abort ();
    atexit (s_cleanup);
    return 0;
}

static size_t
s_count (const keel_setting_def_t *table)
{
    size_t n = 0;
    while (table[n].name)
        n++;
    return n;
}

//  The key to use for table entry def: a pattern gets a fixed wildcard.
static void
s_key_of (const keel_setting_def_t *def, char *key, size_t size)
{
    const char *star = strchr (def->name, '*');
    if (star)
        snprintf (key, size, "%.*sfz%s", (int) (star - def->name), def->name, star + 1);
    else
        snprintf (key, size, "%s", def->name);
}

//  Compares the typed value of key in a and b (both set from the same text).
static void
s_same_value (const keel_settings_t *a, const keel_settings_t *b, const keel_setting_def_t *def,
              const char *key)
{
    if (strchr (def->name, '*'))
        return; // patterns have no by-key reader
    switch (def->type) {
        case KEEL_SETTING_INT:
            if (keel_settings_int (a, key) != keel_settings_int (b, key))
                abort ();
            break;
        case KEEL_SETTING_DURATION:
            if (keel_settings_ms (a, key) != keel_settings_ms (b, key))
                abort ();
            break;
        case KEEL_SETTING_BOOL:
            if (keel_settings_bool (a, key) != keel_settings_bool (b, key))
                abort ();
            break;
        case KEEL_SETTING_DOUBLE: {
            double x = keel_settings_double (a, key), y = keel_settings_double (b, key);
            if (x != y && !(isnan (x) && isnan (y)))
                abort ();
            break;
        }
        default:
            if (strcmp (keel_settings_str (a, key), keel_settings_str (b, key)) != 0)
                abort ();
    }
}

//  Sets key = value in settings; checks the invariants above. True when
//  the value was taken.
static bool
s_set (keel_settings_t *settings, const keel_setting_def_t *table, const char *key,
       const char *value, const char *origin)
{
    keel_error_t err;
    keel_err checked = keel_settings_check (settings, key, value, &err);
    keel_err rc = keel_settings_set (settings, key, value, origin, &err);
    if ((checked == KEEL_OK) != (rc == KEEL_OK))
        abort ();
    if (rc != KEEL_OK)
        return false;
    const keel_setting_def_t *def = keel_settings_def (settings, key);
    if (!def)
        abort ();
    if (strchr (def->name, '*'))
        return true;
    // It says where it came from (keel-admin config get shows it).
    if (strcmp (keel_settings_origin (settings, key), origin) != 0)
        abort ();
    // Read back as text, set again on fresh settings: the same value.
    char *text = strdup (keel_settings_str (settings, key));
    keel_settings_t *again = s_again[s_which (table)];
    if (!text)
        abort ();
    if (keel_settings_set (again, key, text, "readback", &err) != KEEL_OK) {
        fprintf (stderr, "%s = '%s' reads back as '%s', refused: %s\n", key, value, text, err.text);
        abort ();
    }
    s_same_value (settings, again, def, key);
    free (text);
    return true;
}

static void
s_on_match (const char *key, const char *wildcard, const char *value, void *arg)
{
    (void) arg;
    if (!key || !wildcard || !value || !*wildcard)
        abort ();
}

//  Builds what the programs build from their settings. (A key the input
//  did not set holds its default, the same for every input: s_set checks
//  what the input set, value and origin.)
static void
s_use (int which, keel_settings_t *settings)
{
    const keel_setting_def_t *table = s_table (which);
    for (size_t i = 0; table[i].name; i++)
        if (strchr (table[i].name, '*'))
            keel_settings_match (settings, table[i].name, s_on_match, NULL);
    if (which == 1) {
        keel_error_t err;
        keel_engine_config_t *cfg = keel_engine_config_new (settings, &err);
        if (cfg) {
            if (cfg->n_brokers < 1 || cfg->n_brokers > KEEL_ENGINE_MAX_BROKERS)
                abort ();
            for (int i = 0; i < cfg->n_services; i++)
                if (keel_engine_config_service (cfg, cfg->services[i].name) == NULL)
                    abort ();
        }
        keel_engine_config_destroy (&cfg);
    }
}

static void
s_props_file (const uint8_t *data, size_t size)
{
    keel_error_t err;
    keel_props_t *props = keel_props_parse ((const char *) data, size, "fuzz.properties", &err);
    if (!props)
        return;
    int line = 1;
    for (size_t i = 0; i < keel_props_size (props); i++) {
        const keel_prop_t *p = keel_props_at (props, i);
        if (!p || !p->key || !p->value || p->line < line)
            abort ();
        line = p->line;
        (void) strlen (p->key);
        (void) strlen (p->value);
        const char *last = keel_props_get (props, p->key);
        if (!last)
            abort ();
    }
    for (size_t i = keel_props_size (props); i-- > 0;) {
        const keel_prop_t *p = keel_props_at (props, i);
        bool later = false;
        for (size_t j = i + 1; j < keel_props_size (props) && !later; j++)
            later = strcmp (keel_props_at (props, j)->key, p->key) == 0;
        if (!later && strcmp (keel_props_get (props, p->key), p->value) != 0)
            abort (); // the last value of a key wins
    }
    // Each entry goes to the tables that know its key (one file can feed
    // all three programs); a key none knows is refused as the broker would
    // (with its "did you mean"), and ends the file. A program's settings
    // are made at the first key it knows: one the file never reaches would
    // hold its defaults, the same for every input.
    keel_settings_t *settings[3] = { NULL, NULL, NULL };
    bool ok[3] = { true, true, true };
    for (size_t i = 0; i < keel_props_size (props); i++) {
        const keel_prop_t *p = keel_props_at (props, i);
        char origin[64];
        snprintf (origin, sizeof origin, "fuzz.properties:%d", p->line);
        bool known = false;
        for (int which = 0; which < 3; which++) {
            if (!keel_settings_def (s_again[which], p->key))
                continue;
            known = true;
            if (!settings[which] && !(settings[which] = keel_settings_new (s_table (which), &err)))
                abort ();
            ok[which] =
                ok[which] && s_set (settings[which], s_table (which), p->key, p->value, origin);
        }
        if (!known) {
            // Refused without a change, so the broker's settings kept for
            // read-backs serve (were it taken, the run stops here anyway).
            if (keel_settings_set (s_again[0], p->key, p->value, origin, &err) == KEEL_OK)
                abort (); // an unknown key was taken
            break;
        }
    }
    for (int which = 0; which < 3; which++) {
        if (settings[which] && ok[which])
            s_use (which, settings[which]);
        keel_settings_destroy (&settings[which]);
    }
    keel_props_destroy (&props);
}

static void
s_one_key (const uint8_t *data, size_t size)
{
    if (size < 2)
        return;
    size_t total = 0, pick = data[1];
    for (int which = 0; which < 3; which++)
        total += s_count (s_table (which));
    pick %= total;
    int which = 0;
    while (pick >= s_count (s_table (which)))
        pick -= s_count (s_table (which++));
    const keel_setting_def_t *table = s_table (which);
    char key[256];
    s_key_of (&table[pick], key, sizeof key);
    char *value = malloc (size - 1);
    if (!value)
        return;
    memcpy (value, data + 2, size - 2);
    value[size - 2] = 0;
    keel_error_t err;
    keel_settings_t *settings = keel_settings_new (table, &err);
    if (!settings)
        abort ();
    s_set (settings, table, key, value, "--set");
    // The same through "KEY=VALUE" (--set), which splits at the first '='.
    char *pair = malloc (strlen (key) + strlen (value) + 2);
    if (pair) {
        sprintf (pair, "%s=%s", key, value);
        keel_settings_set_pair (settings, pair, &err);
        free (pair);
    }
    s_use (which, settings);
    keel_settings_destroy (&settings);
    free (value);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] >= 0x80)
        s_one_key (data, size);
    else
        s_props_file (data, size);
    return 0;
}
