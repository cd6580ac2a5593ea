/*  config.h — keel-broker's settings table (one entry per key).

    The table drives parsing, --help, keel-admin config get/set and
    docs/configuration.md. Keys marked runtime may be changed with
    `keel-admin config set`; the broker stores such changes in its store so
    they survive restarts, and applies them at once (EngineTimeoutMinutes
    reaches engines at their next login).
*/
#ifndef KEEL_BROKER_CONFIG_H
#define KEEL_BROKER_CONFIG_H

#include "settings.h"

extern const keel_setting_def_t keel_broker_settings[];

#endif
