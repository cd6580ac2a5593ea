/*  driver_config.c — the driver's settings table, built from its list.
    See driver_config.h. */
#include "driver_config.h"

#include "keel/driver.h"

static const keel_setting_def_t s_settings[] = { KEEL_DRIVER_SETTINGS (
    KEEL_SETTING_ROW, KEEL_SETTING_PATTERN_ROW) KEEL_SETTINGS_END };

const keel_setting_def_t *
keel_driver_settings (void)
{
    return s_settings;
}
