/*  config.c — keel-broker's settings table, built from its list. See config.h. */

#include "config.h"

const keel_setting_def_t keel_broker_settings[] = { KEEL_BROKER_SETTINGS (
    KEEL_SETTING_ROW, KEEL_SETTING_PATTERN_ROW) KEEL_SETTINGS_END };
