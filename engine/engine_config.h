/*  engine_config.h — the engine's settings and the configuration built from them.

    KEEL_ENGINE_SETTINGS is the one list of engine keys (DESIGN §10;
    settings.h, "Typed accessors"). It expands into the table,
    keel_engine_settings_table(), which drives keel_cli_parse, --help and
    docs/configuration.md, and into typed accessors: keel_engine_cfg_<Key>
    (settings) for every key (keel_engine_cfg_Slots (s) is an int64_t), and
    keel_engine_cfg_match_service_exec/_timeout/_library (settings, fn, arg)
    for the pattern keys. Read a known key through its accessor.
    keel_engine_config_new() turns parsed settings into a plain struct the
    rest of the engine reads: the broker list, slots, state dir, timers and
    the service types this engine offers (built-ins first, then every
    service.<name>.library and service.<name>.exec), and the properties it
    advertises (built-in host, os, cores, memory_mb, slots, then every
    property.<name>, which replaces a built-in of its name). It rejects what the
    engine cannot use (a service shadowing a built-in, one that is both a
    command and a library, an empty broker list) with a message naming the
    key. Whether a command's program or a library can actually run here is
    checked later, at engine start (service_check.h), which drops the ones
    that cannot.

    The config owns every string in it; free it with keel_engine_config_destroy.
*/
#ifndef KEEL_ENGINE_CONFIG_H
#define KEEL_ENGINE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "error.h"
#include "security.h"
#include "settings.h"
#include "wire_check.h"

#define KEEL_ENGINE_MAX_BROKERS  16
#define KEEL_ENGINE_MAX_SERVICES 256
#define KEEL_ENGINE_MAX_SLOTS    1024

// KEY (Name, TYPE, unit, default, min, max, runtime, enum_values, description) and
// PATTERN (ident, "pattern", TYPE, ...the same...), in table order.
#define KEEL_ENGINE_SETTINGS(KEY, PATTERN)                                                         \
    KEY (Brokers, STRING, NULL, "tcp://127.0.0.1:7070", 0, 0, false, NULL,                         \
         "comma-separated broker endpoints; the first is the primary. Offline, the engine tries "  \
         "them all in turn each round, primary first")                                             \
    KEY (Slots, INT, NULL, "0", 0, KEEL_ENGINE_MAX_SLOTS, false, NULL,                             \
         "tasks run at once; 0 = number of cores")                                                 \
    KEY (StateDir, STRING, NULL, "keel-engine-state", 0, 0, false, NULL,                           \
         "directory for the engine id, the lock file and the result spool (one per engine)")       \
    KEY (EngineTimeoutAction, ENUM, NULL, "restart", 0, 0, false, "exit|restart",                  \
         "after the Engine Timeout: exit (code 3) or start over as a fresh session")               \
    KEY (PrimaryRetryInterval, DURATION, "s", "60s", 0.1, 86400, false, NULL,                      \
         "how often an engine on a failover broker probes its primary")                            \
    KEY (HeartbeatInterval, DURATION, "s", "1s", 0.01, 3600, false, NULL,                          \
         "heartbeat interval until a broker's LoginReply sets it")                                 \
    KEY (Host, STRING, NULL, NULL, 0, 0, false, NULL,                                              \
         "host name reported at login; default: gethostname()")                                    \
    KEY (LogLevel, ENUM, NULL, "info", 0, 0, false, "error|warn|info|debug", "log level")          \
    KEY (MaxOutputBytes, INT, "bytes", "16777216", 1, 1073741824, false, NULL,                     \
         "largest task output; a larger one fails the task with 'output too large'")               \
    KEY (MaxMessageSize, INT, "bytes", "67108864", 65536, 1073741824, false, NULL,                 \
         "largest message accepted from a broker (ZMQ_MAXMSGSIZE)")                                \
    KEY (MetricsEndpoint, STRING, NULL, "", 0, 0, false, NULL,                                     \
         "HOST:PORT (or PORT: 127.0.0.1) serving GET /metrics (Prometheus: slots, running, held "  \
         "results, offline seconds); read-only, unauthenticated; empty = off")                     \
    KEY (MetricsInsecure, BOOL, NULL, "false", 0, 0, false, NULL,                                  \
         "with Security=curve, serve MetricsEndpoint anyway (plain HTTP, unauthenticated); "       \
         "false = Security=curve turns MetricsEndpoint off")                                       \
    KEY (Security, ENUM, NULL, "none", 0, 0, false, "none|curve",                                  \
         "none: talk to brokers in the clear (a warning at start); curve: CurveZMQ, the engine "   \
         "authenticates with CurveKey and checks the broker's BrokerKey")                          \
    KEY (CurveKey, STRING, NULL, "", 0, 0, false, NULL,                                            \
         "Security=curve: this engine's certificate (keel-admin keygen): FILE public, "            \
         "FILE_secret secret (mode 0600)")                                                         \
    KEY (BrokerKey, STRING, NULL, "", 0, 0, false, NULL,                                           \
         "Security=curve: the brokers' public certificate (their CurveKey FILE)")                  \
    PATTERN (                                                                                      \
        service_exec, "service.*.exec", STRING, NULL, NULL, 0, 0, false, NULL,                     \
        "command service: run with /bin/sh -c, input on stdin, output from stdout, exit 0 = ok")   \
    PATTERN (service_timeout, "service.*.timeout", DURATION, "s", "0", 0, 31536000, false, NULL,   \
             "kill a task of this service (the sleep and count built-ins too; echo, double and "   \
             "fail run inline and return at once) after this long; 0 = no limit")                  \
    PATTERN (service_library, "service.*.library", STRING, NULL, NULL, 0, 0, false, NULL,          \
             "library service: path of a shared object implementing keel/service.h")               \
    PATTERN (property, "property.*", STRING, NULL, NULL, 0, 0, false, NULL,                        \
             "a property this engine advertises, which service conditions (--require) test; "      \
             "names [A-Za-z_][A-Za-z0-9_]*, values up to 256 bytes; one named like a built-in "    \
             "(host, os, cores, memory_mb, slots) replaces it")

#define KEEL_ENGINE_CFG_ACCESSOR(name, type, ...)                                                  \
    KEEL_SETTING_ACCESSOR (keel_engine_cfg_, name, type)
#define KEEL_ENGINE_CFG_MATCHER(ident, pattern, ...)                                               \
    KEEL_SETTING_MATCHER (keel_engine_cfg_, ident, pattern)
KEEL_ENGINE_SETTINGS (KEEL_ENGINE_CFG_ACCESSOR, KEEL_ENGINE_CFG_MATCHER)
#undef KEEL_ENGINE_CFG_ACCESSOR
#undef KEEL_ENGINE_CFG_MATCHER

typedef enum {
    KEEL_TIMEOUT_ACTION_EXIT,   // Engine Timeout: exit with code 3
    KEEL_TIMEOUT_ACTION_RESTART // Engine Timeout: start over as a fresh session
} keel_timeout_action_t;

typedef struct {
    char *name;         // service type, e.g. "double" or "render"
    char *command;      // /bin/sh -c command line; NULL for a built-in or library
    char *library;      // shared object path of a library service; else NULL
    int64_t timeout_ms; // 0 = no timeout
} keel_service_def_t;

// One property the engine advertises at login (EngineLogin.properties).
typedef struct {
    char *name;
    char *value;
} keel_engine_prop_t;

typedef struct {
    char *brokers[KEEL_ENGINE_MAX_BROKERS]; // [0] is the primary
    int n_brokers;
    int slots;
    char *state_dir;
    keel_timeout_action_t timeout_action;
    int64_t primary_retry_ms;
    int64_t heartbeat_ms;              // until a LoginReply says otherwise
    int64_t default_engine_timeout_ms; // before any LoginReply
    int64_t max_output_bytes;
    int64_t max_message_bytes;
    char *host;
    char *metrics_endpoint;   // MetricsEndpoint, NULL when off
    bool metrics_insecure;    // MetricsInsecure: serve it even with Security=curve
    keel_security_t security; // Security, CurveKey, BrokerKey (security.h)
    keel_service_def_t services[KEEL_ENGINE_MAX_SERVICES];
    int n_services;
    // Built-in host, os, cores, memory_mb, slots (computed here), then each
    // property.<name> key: a key named like a built-in replaces its value.
    keel_engine_prop_t props[KEEL_PROPERTIES_MAX];
    int n_props;
} keel_engine_config_t;

// The engine's settings table, built from KEEL_ENGINE_SETTINGS (static, ends
// with KEEL_SETTINGS_END).
const keel_setting_def_t *keel_engine_settings_table (void);

// Builds the configuration from settings. Returns NULL and fills err
// (naming the key) on a value the engine cannot use.
keel_engine_config_t *keel_engine_config_new (const keel_settings_t *settings, keel_error_t *err);

// Frees the config and nulls *self_p. Idempotent.
void keel_engine_config_destroy (keel_engine_config_t **self_p);

// Removes service name (frees its strings; later services move up one).
// Returns false if there is none.
bool keel_engine_config_remove_service (keel_engine_config_t *self, const char *name);

// The service definition for type name, or NULL if this engine does not offer it.
const keel_service_def_t *keel_engine_config_service (const keel_engine_config_t *self,
                                                      const char *name);

#endif
