/*  driver_config.h — the settings of libkeeldriver and keel-driver.

    KEEL_DRIVER_SETTINGS is the one list of driver keys (settings.h, "Typed
    accessors"). It expands into the table that keel_driver_settings()
    (keel/driver.h) returns, which drives keel_cli_load, --help and
    docs/configuration.md, and into one typed accessor per key,
    keel_driver_cfg_<Key> (settings): keel_driver_cfg_DSBrokerTimeout (s) is
    the timeout in ms, keel_driver_cfg_DSBatchSize (s) an int64_t. Read a
    known key through its accessor. This header is internal to the driver;
    applications see only the table.
*/
#ifndef KEEL_DRIVER_CONFIG_H
#define KEEL_DRIVER_CONFIG_H

#include "settings.h"

// KEY (Name, TYPE, unit, default, min, max, runtime, enum_values, description),
// in table order; the driver has no pattern keys.
#define KEEL_DRIVER_SETTINGS(KEY, PATTERN)                                                         \
    KEY (DSPrimaryBroker, STRING, NULL, "tcp://127.0.0.1:7070", 0, 0, false, NULL,                 \
         "endpoint of the primary broker")                                                         \
    KEY (DSFailoverBrokers, STRING, NULL, "", 0, 0, false, NULL,                                   \
         "comma-separated endpoints of failover brokers, tried in order")                          \
    KEY (DSBrokerTimeout, DURATION, "s", "300", 0.05, 86400, false, NULL,                          \
         "how long a broker is retried before moving to the next one (for a lost broker: "         \
         "from its last message, and at least min(this, H + 0.6 s) after the loss), also at the "  \
         "first connection (keel-driver exits 3 when none answered); keep it below the brokers' "  \
         "EngineTimeoutMinutes")                                                                   \
    KEY (DSPrimaryRetryInterval, DURATION, "s", "60", 0.05, 86400, false, NULL,                    \
         "how often a driver on a failover broker probes the primary")                             \
    KEY (DSHeartbeatInterval, DURATION, "s", "1", 0.01, 3600, false, NULL,                         \
         "heartbeat interval until the broker hands out its own")                                  \
    KEY (DSBatchSize, INT, "tasks", "256", 1, 100000, false, NULL,                                 \
         "tasks per SubmitTasks message")                                                          \
    KEY (DSMaxUnaccepted, INT, "tasks", "100000", 1, 100000000, false, NULL,                       \
         "tasks sent but not yet accepted by the broker before further tasks wait in the driver; " \
         "keel-driver also holds at most this many tasks without a result (bounded memory)")       \
    KEY (DSSecurity, ENUM, NULL, "none", 0, 0, false, "none|curve",                                \
         "none: talk to brokers in the clear; curve: CurveZMQ, the driver authenticates with "     \
         "DSCurveKey and checks the broker's DSBrokerKey")                                         \
    KEY (DSCurveKey, STRING, NULL, "", 0, 0, false, NULL,                                          \
         "DSSecurity=curve: this driver's certificate (keel-admin keygen): FILE public, "          \
         "FILE_secret secret (mode 0600)")                                                         \
    KEY (DSBrokerKey, STRING, NULL, "", 0, 0, false, NULL,                                         \
         "DSSecurity=curve: the brokers' public certificate (their CurveKey FILE)")                \
    KEY (LogLevel, ENUM, NULL, "warn", 0, 0, false, "error|warn|info|debug",                       \
         "log level of keel-driver (the library leaves process logging to the application)")

#define KEEL_DRIVER_CFG_ACCESSOR(name, type, ...)                                                  \
    KEEL_SETTING_ACCESSOR (keel_driver_cfg_, name, type)
KEEL_DRIVER_SETTINGS (KEEL_DRIVER_CFG_ACCESSOR, KEEL_SETTING_IGNORE)
#undef KEEL_DRIVER_CFG_ACCESSOR

#endif
