/*  config.c — keel-broker's settings table. See config.h. */

#include "config.h"

const keel_setting_def_t keel_broker_settings[] = {
    { "Name", KEEL_SETTING_STRING, NULL, "keel-broker", 0, 0, false, NULL,
      "Broker name, shown to drivers, engines and in keel-admin status" },
    { "Endpoint", KEEL_SETTING_STRING, NULL, "tcp://127.0.0.1:7070", 0, 0, false, NULL,
      "ZeroMQ endpoint bound for drivers and engines" },
    { "AdminEndpoint", KEEL_SETTING_STRING, NULL, "tcp://127.0.0.1:7071", 0, 0, false, NULL,
      "ZeroMQ endpoint bound for keel-admin" },
    { "Store", KEEL_SETTING_STRING, NULL, "sqlite:keel-broker.db", 0, 0, false, NULL,
      "Store URI: sqlite:PATH (durable) or memory: (nothing survives a restart)" },
    { "StoreSync", KEEL_SETTING_ENUM, NULL, "full", 0, 0, false, "full|normal",
      "full: an acknowledgement survives power loss; normal: survives kill -9 of the broker only" },
    { "HeartbeatInterval", KEEL_SETTING_DURATION, "s", "1s", 0.01, 60, false, NULL,
      "Heartbeat interval H; a peer silent for 3*H is lost (handed to engines and drivers)" },
    { "EngineTimeoutMinutes", KEEL_SETTING_DURATION, "min", "15", 0.001, 100000, true, NULL,
      "Engine Timeout: how long an engine that lost its broker keeps its tasks; must exceed drivers' DSBrokerTimeout" },
    { "EngineLoginWindow", KEEL_SETTING_DURATION, "s", "5s", 0, 3600, true, NULL,
      "After a restart, how long running tasks wait for their engines to claim them before they are queued again" },
    { "RescheduleDelay", KEEL_SETTING_DURATION, "s", "0", 0, 86400, true, NULL,
      "Delay before the tasks of a lost engine are queued again (per service override in SubmitService)" },
    { "MaxAttempts", KEEL_SETTING_INT, NULL, "3", 1, 1000, true, NULL,
      "Executions of a task that may fail before it is reported failed (per service override)" },
    { "CancelRedundant", KEEL_SETTING_BOOL, NULL, "true", 0, 0, true, NULL,
      "Cancel the other executions of a task once one result wins" },
    { "RetentionHours", KEEL_SETTING_DURATION, "h", "24", 0, 100000, true, NULL,
      "How long a closed service whose results are all acknowledged is kept before it is purged" },
    { "MaxMessageSize", KEEL_SETTING_INT, "bytes", "67108864", 1024, 2147483647.0, false, NULL,
      "Largest message accepted from a peer (ZMQ_MAXMSGSIZE); a larger one disconnects the peer" },
    { "MaxTasksPerService", KEEL_SETTING_INT, NULL, "10000000", 1, 1000000000, false, NULL,
      "Highest task id + 1 a service may use" },
    { "LogLevel", KEEL_SETTING_ENUM, NULL, "info", 0, 0, true, "error|warn|info|debug",
      "Log level" },
    KEEL_SETTINGS_END
};
