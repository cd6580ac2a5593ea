/*  Each program's settings list against its table and its typed accessors
    (settings.h, "Typed accessors"): the table holds exactly the listed keys,
    in order, with their types; every key's accessor reads what the by-string
    reader reads, for the default and for a value set from outside (as
    keel-admin config set and --set do); pattern wrappers match what
    keel_settings_match matches. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../driver/driver_config.h"
#include "config.h"
#include "engine_config.h"
#include "keel/driver.h"

// ------------------------------------------------------------ the tables

//  Checks the next table row against one list entry.
static void
s_expect_row (const keel_setting_def_t *table, size_t *i, const char *name,
              keel_setting_type_t type)
{
    const keel_setting_def_t *def = &table[*i];
    cr_assert_not_null (def->name, "the table ends before the list's %s", name);
    cr_expect_str_eq (def->name, name, "row %zu is %s, the list says %s", *i, def->name, name);
    cr_expect_eq (def->type, type, "%s: the table's type differs from the list's", name);
    (*i)++;
}

#define S_ROW(name, type, ...) s_expect_row (table, &i, #name, KEEL_SETTING_##type);
#define S_PATTERN_ROW(ident, pattern, type, ...)                                                   \
    s_expect_row (table, &i, pattern, KEEL_SETTING_##type);

Test (settings_accessors, broker_table_holds_exactly_the_listed_keys_in_order)
{
    const keel_setting_def_t *table = keel_broker_settings;
    size_t i = 0;
    KEEL_BROKER_SETTINGS (S_ROW, S_PATTERN_ROW)
    cr_expect_null (table[i].name, "the table has %s beyond the list", table[i].name);
    cr_expect_eq (i, 39);
}

Test (settings_accessors, engine_table_holds_exactly_the_listed_keys_in_order)
{
    const keel_setting_def_t *table = keel_engine_settings_table ();
    size_t i = 0;
    KEEL_ENGINE_SETTINGS (S_ROW, S_PATTERN_ROW)
    cr_expect_null (table[i].name, "the table has %s beyond the list", table[i].name);
    cr_expect_eq (i, 19);
}

Test (settings_accessors, driver_table_holds_exactly_the_listed_keys_in_order)
{
    const keel_setting_def_t *table = keel_driver_settings ();
    size_t i = 0;
    KEEL_DRIVER_SETTINGS (S_ROW, S_PATTERN_ROW)
    cr_expect_null (table[i].name, "the table has %s beyond the list", table[i].name);
    cr_expect_eq (i, 11);
}

// ------------------------------------------------------------ the values

//  A valid value for key other than its default where the type allows one:
//  the top (else bottom) of its range, the other boolean, another enum value.
static const char *
s_other_value (const keel_settings_t *s, const char *key, char *buf, size_t size)
{
    const keel_setting_def_t *def = keel_settings_def (s, key);
    cr_assert_not_null (def, "%s is not in the table", key);
    const char *dflt = def->default_value ? def->default_value : "";
    switch (def->type) {
        case KEEL_SETTING_STRING:
            snprintf (buf, size, "accessor-test-%s", key);
            break;
        case KEEL_SETTING_BOOL: {
            bool value = false;
            cr_assert_eq (keel_bool_parse (dflt, &value), 0);
            snprintf (buf, size, "%s", value ? "false" : "true");
            break;
        }
        case KEEL_SETTING_ENUM: {
            const char *p = def->enum_values;
            size_t len = strcspn (p, "|");
            while (strlen (dflt) == len && strncmp (p, dflt, len) == 0 && p[len]) {
                p += len + 1;
                len = strcspn (p, "|");
            }
            snprintf (buf, size, "%.*s", (int) len, p);
            break;
        }
        default: {
            double value = def->max != 0 ? def->max : 7;
            snprintf (buf, size, "%.15g", value);
            if (strcmp (buf, dflt) == 0)
                snprintf (buf, size, "%.15g", def->min);
            break;
        }
    }
    return buf;
}

#define S_SAME_STRING(value, s, key)                                                               \
    cr_expect_str_eq (value, keel_settings_str (s, key), "%s: accessor and key differ", key)
#define S_SAME_ENUM(value, s, key) S_SAME_STRING (value, s, key)
#define S_SAME_INT(value, s, key)                                                                  \
    cr_expect_eq (value, keel_settings_int (s, key), "%s: accessor and key differ", key)
#define S_SAME_DOUBLE(value, s, key)                                                               \
    cr_expect_eq (value, keel_settings_double (s, key), "%s: accessor and key differ", key)
#define S_SAME_BOOL(value, s, key)                                                                 \
    cr_expect_eq (value, keel_settings_bool (s, key), "%s: accessor and key differ", key)
#define S_SAME_DURATION(value, s, key)                                                             \
    cr_expect_eq (value, keel_settings_ms (s, key), "%s: accessor and key differ", key)

//  Sets key from text as keel-admin does and checks the by-string reader
//  took it (the accessor is then compared with that reader).
static void
s_set (keel_settings_t *s, const char *key)
{
    char buf[128];
    const char *text = s_other_value (s, key, buf, sizeof buf);
    keel_error_t err;
    cr_assert_eq (keel_settings_set (s, key, text, "test", &err), KEEL_OK, "%s=%s: %s", key, text,
                  err.text);
    const keel_setting_def_t *def = keel_settings_def (s, key);
    if (def->type == KEEL_SETTING_STRING || def->type == KEEL_SETTING_ENUM)
        cr_expect_str_eq (keel_settings_str (s, key), text);
    else if (def->type == KEEL_SETTING_DURATION) {
        int64_t ms = 0;
        cr_assert_eq (keel_duration_parse (text, def->unit, &ms, &err), KEEL_OK, "%s", err.text);
        cr_expect_eq (keel_settings_ms (s, key), ms, "%s", key);
    }
}

static keel_settings_t *
s_settings (const keel_setting_def_t *table)
{
    keel_error_t err;
    keel_settings_t *s = keel_settings_new (table, &err);
    cr_assert_not_null (s, "%s", err.text);
    return s;
}

#define S_BROKER_SAME(name, type, ...) S_SAME_##type (keel_broker_cfg_##name (s), s, #name);
#define S_BROKER_SET(name, type, ...)  s_set (s, #name);

Test (settings_accessors, every_broker_accessor_reads_what_its_key_reads)
{
    keel_settings_t *s = s_settings (keel_broker_settings);
    KEEL_BROKER_SETTINGS (S_BROKER_SAME, KEEL_SETTING_IGNORE)
    KEEL_BROKER_SETTINGS (S_BROKER_SET, KEEL_SETTING_IGNORE)
    KEEL_BROKER_SETTINGS (S_BROKER_SAME, KEEL_SETTING_IGNORE)
    //  Spot checks of the types and units the accessors return.
    cr_expect_eq (keel_broker_cfg_HeartbeatInterval (s), 60 * 1000);
    cr_expect_eq (keel_broker_cfg_EngineTimeoutMinutes (s), 100000LL * 60 * 1000);
    cr_expect_eq (keel_broker_cfg_MaxAttempts (s), 1000);
    cr_expect_not (keel_broker_cfg_CancelRedundant (s));
    cr_expect_str_eq (keel_broker_cfg_StoreSync (s), "normal");
    cr_expect_str_eq (keel_broker_cfg_Name (s), "accessor-test-Name");
    keel_settings_destroy (&s);
}

#define S_ENGINE_SAME(name, type, ...) S_SAME_##type (keel_engine_cfg_##name (s), s, #name);
#define S_ENGINE_SET(name, type, ...)  s_set (s, #name);

Test (settings_accessors, every_engine_accessor_reads_what_its_key_reads)
{
    keel_settings_t *s = s_settings (keel_engine_settings_table ());
    KEEL_ENGINE_SETTINGS (S_ENGINE_SAME, KEEL_SETTING_IGNORE)
    cr_expect_str_eq (keel_engine_cfg_Host (s), "");
    KEEL_ENGINE_SETTINGS (S_ENGINE_SET, KEEL_SETTING_IGNORE)
    KEEL_ENGINE_SETTINGS (S_ENGINE_SAME, KEEL_SETTING_IGNORE)
    cr_expect_eq (keel_engine_cfg_Slots (s), KEEL_ENGINE_MAX_SLOTS);
    cr_expect_eq (keel_engine_cfg_PrimaryRetryInterval (s), 86400LL * 1000);
    cr_expect_str_eq (keel_engine_cfg_EngineTimeoutAction (s), "exit");
    keel_settings_destroy (&s);
}

#define S_DRIVER_SAME(name, type, ...) S_SAME_##type (keel_driver_cfg_##name (s), s, #name);
#define S_DRIVER_SET(name, type, ...)  s_set (s, #name);

Test (settings_accessors, every_driver_accessor_reads_what_its_key_reads)
{
    keel_settings_t *s = s_settings (keel_driver_settings ());
    KEEL_DRIVER_SETTINGS (S_DRIVER_SAME, KEEL_SETTING_IGNORE)
    cr_expect_eq (keel_driver_cfg_DSBrokerTimeout (s), 300 * 1000);
    KEEL_DRIVER_SETTINGS (S_DRIVER_SET, KEEL_SETTING_IGNORE)
    KEEL_DRIVER_SETTINGS (S_DRIVER_SAME, KEEL_SETTING_IGNORE)
    cr_expect_eq (keel_driver_cfg_DSBatchSize (s), 100000);
    keel_settings_destroy (&s);
}

// ------------------------------------------------------------ patterns

typedef struct {
    char seen[512];
} s_matches_t;

static void
s_collect (const char *key, const char *wildcard, const char *value, void *arg)
{
    s_matches_t *m = arg;
    size_t len = strlen (m->seen);
    snprintf (m->seen + len, sizeof m->seen - len, "%s|%s|%s;", key, wildcard, value);
}

#define S_ENGINE_MATCH_SAME(ident, pattern, ...)                                                   \
    {                                                                                              \
        s_matches_t a = { "" }, b = { "" };                                                        \
        int na = keel_engine_cfg_match_##ident (s, s_collect, &a);                                 \
        int nb = keel_settings_match (s, pattern, s_collect, &b);                                  \
        cr_expect_eq (na, nb, "%s", pattern);                                                      \
        cr_expect_gt (na, 0, "%s: nothing set", pattern);                                          \
        cr_expect_str_eq (a.seen, b.seen, "%s", pattern);                                          \
        patterns++;                                                                                \
    }

Test (settings_accessors, every_engine_pattern_wrapper_matches_what_its_pattern_matches)
{
    keel_settings_t *s = s_settings (keel_engine_settings_table ());
    keel_error_t err;
    const char *sets[] = { "service.web.exec=./web", "service.batch.exec=./batch",
                           "service.web.timeout=30s", "service.lib.library=./lib.so",
                           "property.gpu=a100" };
    for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++)
        cr_assert_eq (keel_settings_set_pair (s, sets[k], &err), KEEL_OK, "%s", err.text);
    int patterns = 0;
    KEEL_ENGINE_SETTINGS (KEEL_SETTING_IGNORE, S_ENGINE_MATCH_SAME)
    cr_expect_eq (patterns, 4);
    keel_settings_destroy (&s);
}
