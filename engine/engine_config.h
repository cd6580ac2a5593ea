/*  engine_config.h — the engine's settings table and the configuration built from it.

    keel_engine_settings_table() is the one table of every engine key (DESIGN
    §10): it drives keel_cli_parse, --help and docs/configuration.md.
    keel_engine_config_new() turns parsed settings into a plain struct the
    rest of the engine reads: the broker list, slots, state dir, timers and
    the service types this engine offers (built-ins first, then every
    service.<name>.library and service.<name>.exec). It rejects what the
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
#include "settings.h"

#define KEEL_ENGINE_MAX_BROKERS   16
#define KEEL_ENGINE_MAX_SERVICES  256
#define KEEL_ENGINE_MAX_SLOTS     1024

typedef enum {
    KEEL_TIMEOUT_ACTION_EXIT,       // Engine Timeout: exit with code 3
    KEEL_TIMEOUT_ACTION_RESTART     // Engine Timeout: start over as a fresh session
} keel_timeout_action_t;

typedef struct {
    char *name;             // service type, e.g. "double" or "render"
    char *command;          // /bin/sh -c command line; NULL for a built-in or library
    char *library;          // shared object path of a library service; else NULL
    int64_t timeout_ms;     // 0 = no timeout
} keel_service_def_t;

typedef struct {
    char *brokers[KEEL_ENGINE_MAX_BROKERS];  // [0] is the primary
    int n_brokers;
    int slots;
    char *state_dir;
    keel_timeout_action_t timeout_action;
    int64_t primary_retry_ms;
    int64_t heartbeat_ms;           // until a LoginReply says otherwise
    int64_t default_engine_timeout_ms;  // before any LoginReply
    int64_t max_output_bytes;
    int64_t max_message_bytes;
    char *host;
    keel_service_def_t services[KEEL_ENGINE_MAX_SERVICES];
    int n_services;
} keel_engine_config_t;

// The engine's settings table (static, ends with KEEL_SETTINGS_END).
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
