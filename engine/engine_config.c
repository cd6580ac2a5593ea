/*  engine_config.c — the engine's settings table and the configuration built from it.
    See engine_config.h. */
#include "engine_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "builtin.h"
#include "cond.h"
#include "wire.h"

#define S_DEFAULT_ENGINE_TIMEOUT_MS (15 * 60 * 1000)

static const keel_setting_def_t s_table[] = { KEEL_ENGINE_SETTINGS (
    KEEL_SETTING_ROW, KEEL_SETTING_PATTERN_ROW) KEEL_SETTINGS_END };

const keel_setting_def_t *
keel_engine_settings_table (void)
{
    return s_table;
}

//  Collected while walking pattern keys; the first error wins.
typedef struct {
    keel_engine_config_t *cfg;
    keel_error_t *err;
    keel_err rc;
} s_walk_t;

static keel_service_def_t *
s_find (keel_engine_config_t *cfg, const char *name)
{
    for (int i = 0; i < cfg->n_services; i++)
        if (strcmp (cfg->services[i].name, name) == 0)
            return &cfg->services[i];
    return NULL;
}

static keel_service_def_t *
s_add (s_walk_t *walk, const char *key, const char *name)
{
    keel_engine_config_t *cfg = walk->cfg;
    if (!keel_type_name_valid (name)) {
        walk->rc = keel_error_set (walk->err, KEEL_ERR_CONFIG,
                                   "%s: '%s' is not a valid service name", key, name);
        return NULL;
    }
    keel_service_def_t *def = s_find (cfg, name);
    if (def)
        return def;
    if (cfg->n_services >= KEEL_ENGINE_MAX_SERVICES) {
        walk->rc = keel_error_set (walk->err, KEEL_ERR_CONFIG, "%s: more than %d services", key,
                                   KEEL_ENGINE_MAX_SERVICES);
        return NULL;
    }
    def = &cfg->services[cfg->n_services++];
    def->name = strdup (name);
    def->command = NULL;
    def->library = NULL;
    def->timeout_ms = 0;
    return def;
}

static void
s_on_exec (const char *key, const char *wildcard, const char *value, void *arg)
{
    s_walk_t *walk = arg;
    if (walk->rc != KEEL_OK)
        return;
    if (keel_builtin_known (wildcard)) {
        walk->rc =
            keel_error_set (walk->err, KEEL_ERR_CONFIG,
                            "%s: '%s' is a built-in service and cannot be replaced", key, wildcard);
        return;
    }
    if (!value || !*value) {
        walk->rc = keel_error_set (walk->err, KEEL_ERR_CONFIG, "%s: empty command", key);
        return;
    }
    keel_service_def_t *def = s_add (walk, key, wildcard);
    if (def && def->library) {
        walk->rc = keel_error_set (walk->err, KEEL_ERR_CONFIG,
                                   "%s: service '%s' already has service.%s.library", key, wildcard,
                                   wildcard);
        return;
    }
    if (def) {
        free (def->command);
        def->command = strdup (value);
    }
}

static void
s_on_library (const char *key, const char *wildcard, const char *value, void *arg)
{
    s_walk_t *walk = arg;
    if (walk->rc != KEEL_OK)
        return;
    if (keel_builtin_known (wildcard)) {
        walk->rc =
            keel_error_set (walk->err, KEEL_ERR_CONFIG,
                            "%s: '%s' is a built-in service and cannot be replaced", key, wildcard);
        return;
    }
    if (!value || !*value) {
        walk->rc = keel_error_set (walk->err, KEEL_ERR_CONFIG, "%s: empty library path", key);
        return;
    }
    keel_service_def_t *def = s_add (walk, key, wildcard);
    if (def) {
        free (def->library);
        def->library = strdup (value);
    }
}

static void
s_on_timeout (const char *key, const char *wildcard, const char *value, void *arg)
{
    s_walk_t *walk = arg;
    if (walk->rc != KEEL_OK)
        return;
    keel_service_def_t *def = s_find (walk->cfg, wildcard);
    if (!def) {
        walk->rc = keel_error_set (walk->err, KEEL_ERR_CONFIG,
                                   "%s: no service '%s' (define service.%s.exec or .library)", key,
                                   wildcard, wildcard);
        return;
    }
    int64_t ms = 0;
    keel_error_t perr;
    if (keel_duration_parse (value, "s", &ms, &perr) != KEEL_OK) {
        walk->rc = keel_error_set (walk->err, KEEL_ERR_CONFIG, "%s: %s", key, perr.text);
        return;
    }
    def->timeout_ms = ms;
}

//  Splits the comma list of endpoints (white space around items ignored).
static keel_err
s_parse_brokers (keel_engine_config_t *cfg, const char *text, keel_error_t *err)
{
    char *copy = strdup (text);
    char *save = NULL;
    for (char *item = strtok_r (copy, ",", &save); item; item = strtok_r (NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t')
            item++;
        size_t len = strlen (item);
        while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t'))
            item[--len] = 0;
        if (len == 0)
            continue;
        if (cfg->n_brokers >= KEEL_ENGINE_MAX_BROKERS) {
            free (copy);
            return keel_error_set (err, KEEL_ERR_CONFIG, "Brokers: more than %d endpoints",
                                   KEEL_ENGINE_MAX_BROKERS);
        }
        if (!strstr (item, "://")) {
            keel_error_set (err, KEEL_ERR_CONFIG,
                            "Brokers: '%s' is not an endpoint (e.g. tcp://host:7070)", item);
            free (copy);
            return KEEL_ERR_CONFIG;
        }
        cfg->brokers[cfg->n_brokers++] = strdup (item);
    }
    free (copy);
    if (cfg->n_brokers == 0)
        return keel_error_set (err, KEEL_ERR_CONFIG, "Brokers: no broker endpoint given");
    return KEEL_OK;
}

// ---------------------------------------------------------------- properties

// Sets property name to value (replacing one of that name).
static keel_err
s_prop_set (keel_engine_config_t *cfg, const char *name, const char *value, const char *key,
            keel_error_t *err)
{
    if (!keel_cond_name_ok (name))
        return keel_error_set (err, KEEL_ERR_CONFIG,
                               "%s: '%s' is not a property name ([A-Za-z_][A-Za-z0-9_]*, at most "
                               "%d bytes)",
                               key, name, KEEL_COND_NAME_MAX);
    if (strlen (value) > KEEL_COND_VALUE_MAX)
        return keel_error_set (err, KEEL_ERR_CONFIG, "%s: value longer than %d bytes", key,
                               KEEL_COND_VALUE_MAX);
    int i = 0;
    while (i < cfg->n_props && strcmp (cfg->props[i].name, name) != 0)
        i++;
    if (i == KEEL_PROPERTIES_MAX)
        return keel_error_set (err, KEEL_ERR_CONFIG, "%s: more than %d properties", key,
                               KEEL_PROPERTIES_MAX);
    char *copy = strdup (value);
    if (!copy || (i == cfg->n_props && !(cfg->props[i].name = strdup (name)))) {
        free (copy);
        return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
    }
    free (cfg->props[i].value);
    cfg->props[i].value = copy;
    if (i == cfg->n_props)
        cfg->n_props++;
    return KEEL_OK;
}

static void
s_on_property (const char *key, const char *wildcard, const char *value, void *arg)
{
    s_walk_t *walk = arg;
    if (walk->rc == KEEL_OK)
        walk->rc = s_prop_set (walk->cfg, wildcard, value, key, walk->err);
}

// The built-in properties: host, os (uname's system, lower case), cores
// (online), memory_mb (physical memory), slots.
static keel_err
s_builtin_props (keel_engine_config_t *cfg, keel_error_t *err)
{
    char os[64] = "unknown", num[32];
    struct utsname u;
    if (uname (&u) == 0) {
        snprintf (os, sizeof os, "%.60s", u.sysname);
        for (char *c = os; *c; c++)
            *c = (char) tolower ((unsigned char) *c);
    }
    char host[KEEL_COND_VALUE_MAX + 1];
    snprintf (host, sizeof host, "%.*s", KEEL_COND_VALUE_MAX, cfg->host);
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    long pages = sysconf (_SC_PHYS_PAGES), page = sysconf (_SC_PAGESIZE);
    uint64_t mb = pages > 0 && page > 0 ? (uint64_t) pages * (uint64_t) page / (1024 * 1024) : 0;
    keel_err rc = s_prop_set (cfg, "host", host, "host", err);
    if (!rc)
        rc = s_prop_set (cfg, "os", os, "os", err);
    snprintf (num, sizeof num, "%ld", cores > 0 ? cores : 1);
    if (!rc)
        rc = s_prop_set (cfg, "cores", num, "cores", err);
    snprintf (num, sizeof num, "%llu", (unsigned long long) mb);
    if (!rc)
        rc = s_prop_set (cfg, "memory_mb", num, "memory_mb", err);
    snprintf (num, sizeof num, "%d", cfg->slots);
    if (!rc)
        rc = s_prop_set (cfg, "slots", num, "slots", err);
    return rc;
}

keel_engine_config_t *
keel_engine_config_new (const keel_settings_t *settings, keel_error_t *err)
{
    keel_engine_config_t *cfg = calloc (1, sizeof *cfg);
    if (!cfg) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (s_parse_brokers (cfg, keel_engine_cfg_Brokers (settings), err) != KEEL_OK)
        goto fail;

    int64_t slots = keel_engine_cfg_Slots (settings);
    if (slots == 0) {
        long cores = sysconf (_SC_NPROCESSORS_ONLN);
        slots = cores > 0 ? cores : 1;
        if (slots > KEEL_ENGINE_MAX_SLOTS)
            slots = KEEL_ENGINE_MAX_SLOTS;
    }
    cfg->slots = (int) slots;

    const char *dir = keel_engine_cfg_StateDir (settings);
    if (!*dir) {
        keel_error_set (err, KEEL_ERR_CONFIG, "StateDir: must not be empty");
        goto fail;
    }
    cfg->state_dir = strdup (dir);
    cfg->timeout_action = strcmp (keel_engine_cfg_EngineTimeoutAction (settings), "exit") == 0
                              ? KEEL_TIMEOUT_ACTION_EXIT
                              : KEEL_TIMEOUT_ACTION_RESTART;
    cfg->primary_retry_ms = keel_engine_cfg_PrimaryRetryInterval (settings);
    cfg->heartbeat_ms = keel_engine_cfg_HeartbeatInterval (settings);
    cfg->default_engine_timeout_ms = S_DEFAULT_ENGINE_TIMEOUT_MS;
    cfg->max_output_bytes = keel_engine_cfg_MaxOutputBytes (settings);
    cfg->max_message_bytes = keel_engine_cfg_MaxMessageSize (settings);

    const char *metrics = keel_engine_cfg_MetricsEndpoint (settings);
    if (*metrics)
        cfg->metrics_endpoint = strdup (metrics);
    cfg->metrics_insecure = keel_engine_cfg_MetricsInsecure (settings);
    if (keel_security_init (&cfg->security, keel_engine_cfg_Security (settings), "CurveKey",
                            keel_engine_cfg_CurveKey (settings), "BrokerKey",
                            keel_engine_cfg_BrokerKey (settings), err)
        != KEEL_OK)
        goto fail;

    const char *host = keel_engine_cfg_Host (settings);
    if (*host)
        cfg->host = strdup (host);
    else {
        char name[256] = "";
        if (gethostname (name, sizeof name - 1) != 0 || !*name)
            strcpy (name, "localhost");
        cfg->host = strdup (name);
    }

    //  Built-ins first, then command services, then timeouts for either.
    s_walk_t walk = { cfg, err, KEEL_OK };
    for (int i = 0; keel_builtin_name (i); i++)
        s_add (&walk, "built-in", keel_builtin_name (i));
    keel_engine_cfg_match_service_library (settings, s_on_library, &walk);
    keel_engine_cfg_match_service_exec (settings, s_on_exec, &walk);
    keel_engine_cfg_match_service_timeout (settings, s_on_timeout, &walk);
    if (walk.rc == KEEL_OK)
        walk.rc = s_builtin_props (cfg, err);
    if (walk.rc == KEEL_OK)
        keel_engine_cfg_match_property (settings, s_on_property, &walk);
    if (walk.rc != KEEL_OK)
        goto fail;
    return cfg;

fail:
    keel_engine_config_destroy (&cfg);
    return NULL;
}

void
keel_engine_config_destroy (keel_engine_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_engine_config_t *cfg = *self_p;
    for (int i = 0; i < cfg->n_brokers; i++)
        free (cfg->brokers[i]);
    for (int i = 0; i < cfg->n_services; i++) {
        free (cfg->services[i].name);
        free (cfg->services[i].command);
        free (cfg->services[i].library);
    }
    for (int i = 0; i < cfg->n_props; i++) {
        free (cfg->props[i].name);
        free (cfg->props[i].value);
    }
    free (cfg->state_dir);
    free (cfg->host);
    free (cfg->metrics_endpoint);
    free (cfg);
    *self_p = NULL;
}

const keel_service_def_t *
keel_engine_config_service (const keel_engine_config_t *self, const char *name)
{
    for (int i = 0; i < self->n_services; i++)
        if (strcmp (self->services[i].name, name) == 0)
            return &self->services[i];
    return NULL;
}

bool
keel_engine_config_remove_service (keel_engine_config_t *self, const char *name)
{
    for (int i = 0; i < self->n_services; i++) {
        keel_service_def_t *def = &self->services[i];
        if (strcmp (def->name, name) != 0)
            continue;
        free (def->name);
        free (def->command);
        free (def->library);
        memmove (def, def + 1, (size_t) (self->n_services - i - 1) * sizeof *def);
        self->n_services--;
        return true;
    }
    return false;
}
