/*  config.h — keel-broker's settings: the list, the table and the accessors.

    KEEL_BROKER_SETTINGS is the one list of broker keys (settings.h,
    "Typed accessors"): it expands into keel_broker_settings, the table that
    drives parsing, --help, keel-admin config get/set and
    docs/configuration.md, and into one typed accessor per key,
    keel_broker_cfg_<Key> (settings): keel_broker_cfg_HeartbeatInterval (s)
    is the interval in ms, keel_broker_cfg_MaxAttempts (s) an int64_t.
    Read a known key through its accessor, never by string.

    Keys marked runtime may be changed with `keel-admin config set`; the
    broker stores such changes in its store so they survive restarts, and
    applies them at once (EngineTimeoutMinutes reaches engines at their next
    login).
*/
#ifndef KEEL_BROKER_CONFIG_H
#define KEEL_BROKER_CONFIG_H

#include "settings.h"

// KEY (Name, TYPE, unit, default, min, max, runtime, enum_values, description),
// in table order; the broker has no pattern keys.
#define KEEL_BROKER_SETTINGS(KEY, PATTERN)                                                         \
    KEY (Name, STRING, NULL, "keel-broker", 0, 0, false, NULL,                                     \
         "Broker name, shown to drivers, engines and in keel-admin status")                        \
    KEY (Endpoint, STRING, NULL, "tcp://127.0.0.1:7070", 0, 0, false, NULL,                        \
         "ZeroMQ endpoint bound for drivers and engines")                                          \
    KEY (AdminEndpoint, STRING, NULL, "tcp://127.0.0.1:7071", 0, 0, false, NULL,                   \
         "ZeroMQ endpoint bound for keel-admin")                                                   \
    KEY (Store, STRING, NULL, "sqlite:keel-broker.db", 0, 0, false, NULL,                          \
         "Store URI: sqlite:PATH (durable), postgresql://USER[:PASSWORD]@HOST[:PORT]/DB (a "       \
         "PostgreSQL database of its own, shared by the brokers of a cluster; the password is "    \
         "never logged) or memory: (nothing survives a restart)")                                  \
    KEY (StoreSync, ENUM, NULL, "full", 0, 0, false, "full|normal",                                \
         "full: an acknowledgement survives power loss (the WAL is fdatasynced, off the broker's " \
         "loop, before acceptances and result acknowledgements leave); normal: survives kill -9 "  \
         "of the broker only. SQLite only: on PostgreSQL the server's synchronous_commit decides") \
    KEY (StoreSyncInterval, DURATION, "ms", "2ms", 0, 1000, false, NULL,                           \
         "StoreSync=full: shortest time from the start of one flush of the store to the start of " \
         "the next; commits made meanwhile share the next flush (acceptances and result "          \
         "acknowledgements wait for it), so a busy broker flushes at most 1/StoreSyncInterval "    \
         "times a second and spends that CPU on work instead; 0 = flush as soon as one is asked")  \
    KEY (StoreWriter, ENUM, NULL, "thread", 0, 0, false, "thread|loop",                            \
         "SQLite: who writes each turn's changes. thread: a writer thread of the store's (the "    \
         "loop hands the turn over and goes on; the thread commits a group of turns, flushes, "    \
         "and answers; a write that fails is tried again every second while new submissions are "  \
         "refused); loop: the broker's loop, in its turn (a turn whose write fails is refused at " \
         "once). PostgreSQL and memory: ignore it")                                                \
    KEY (CommitDelay, DURATION, "ms", "100ms", 0, 10000, true, NULL,                               \
         "Longest time a change nobody waits for (dispatch state, acknowledgements to engines) "   \
         "stays uncommitted; acceptances always commit at once")                                   \
    KEY (HeartbeatInterval, DURATION, "s", "1s", 0.01, 60, false, NULL,                            \
         "Heartbeat interval H; a peer silent for 3*H is lost (handed to engines and drivers)")    \
    KEY (EngineTimeoutMinutes, DURATION, "min", "15", 0.001, 100000, true, NULL,                   \
         "Engine Timeout: how long an engine that lost its broker keeps its tasks; must exceed "   \
         "drivers' DSBrokerTimeout")                                                               \
    KEY (EngineLoginWindow, DURATION, "s", "5s", 0, 3600, true, NULL,                              \
         "After a restart or a noticed pause, how long running and queued tasks wait for "         \
         "returning engines to claim them before they are (re)queued; ends early when every "      \
         "engine online at the stop (or the pause) is back")                                       \
    KEY (RescheduleDelay, DURATION, "s", "0", 0, 86400, true, NULL,                                \
         "Delay before the tasks of a lost engine are queued again (per service override in "      \
         "SubmitService)")                                                                         \
    KEY (EnginePrefetch, INT, "tasks", "1000", 0, 10000, true, NULL,                               \
         "Most tasks sent to an engine beyond its free slots, queued there so a slot never waits " \
         "for the broker (how many within that: PrefetchWindow); 0 = exactly its slots")           \
    KEY (PrefetchWindow, DURATION, "ms", "20ms", 0, 60000, true, NULL,                             \
         "Work an engine may hold queued per slot beyond its running tasks, estimated from each "  \
         "service's measured task run times: short tasks are prefetched, a task that would wait "  \
         "longer is kept for the first free slot, a service with no result yet is never "          \
         "prefetched; 0 = no estimate, always EnginePrefetch tasks")                               \
    KEY (MaxAttempts, INT, NULL, "3", 1, 1000, true, NULL,                                         \
         "Executions of a task that may fail before it is reported failed (per service override)") \
    KEY (CancelRedundant, BOOL, NULL, "true", 0, 0, true, NULL,                                    \
         "Cancel the other executions of a task once one result wins")                             \
    KEY (BlacklistAfter, INT, "failures", "3", 0, 1000, true, NULL,                                \
         "An engine whose executions of a service fail this many times in a row gets no more "     \
         "tasks of that service for BlacklistFor (keel-admin engines shows it, keel-admin "        \
         "unblacklist ends it); 0 = no blacklisting")                                              \
    KEY (BlacklistFor, DURATION, "s", "10m", 0, 604800, true, NULL,                                \
         "How long a blacklisted engine gets no tasks of the service it failed")                   \
    KEY (DSNoEngineTimeout, DURATION, "s", "0", 0, 31536000, true, NULL,                           \
         "A service whose type no online engine offers: its queued tasks fail after this long "    \
         "(\"no engine offers service type 'X'\"); 0 = they wait for ever and the driver is "      \
         "told again every minute")                                                                \
    KEY (RetentionHours, DURATION, "h", "24", 0, 100000, true, NULL,                               \
         "How long a closed service whose results are all acknowledged, or a service its driver "  \
         "detached (moved back to its primary) once no execution of it is left, is kept before "   \
         "it is purged; a service no driver is attached to (submit --detach, a driver "            \
         "interrupted or killed) is purged this long after its last result, collected or not")     \
    KEY (MaxMessageSize, INT, "bytes", "67108864", 1024, 2147483647.0, false, NULL,                \
         "Largest message accepted from a peer (ZMQ_MAXMSGSIZE); a larger one disconnects the "    \
         "peer")                                                                                   \
    KEY (MaxTasksPerService, INT, NULL, "10000000", 1, 1000000000, false, NULL,                    \
         "Highest task id + 1 a service may use")                                                  \
    KEY (PairRole, ENUM, NULL, "none", 0, 0, false, "none|primary|backup",                         \
         "Resilient pair (docs/operations.md, \"Running a resilient pair\"): this broker's role; " \
         "none = standalone")                                                                      \
    KEY (PairEndpoint, STRING, NULL, "", 0, 0, false, NULL,                                        \
         "Pair links: endpoints bound for the peer, comma separated, one per link (up to 4)")      \
    KEY (PairPeer, STRING, NULL, "", 0, 0, false, NULL,                                            \
         "The peer's PairEndpoint, exactly as configured there, same order")                       \
    KEY (PairName, STRING, NULL, "", 0, 0, false, NULL,                                            \
         "The pair's name, the same on both brokers: when set, the peer is recognised by it "      \
         "(links through NAT, proxies or wildcard binds); empty = the peer's PairEndpoint must "   \
         "read exactly as this broker's PairPeer")                                                 \
    KEY (PairTimeout, DURATION, "ms", "0", 0, 600000, false, NULL,                                 \
         "Every pair link silent this long = peer lost; 0 = 3 * HeartbeatInterval")                \
    KEY (AdvertisedEndpoint, STRING, NULL, "", 0, 0, false, NULL,                                  \
         "The endpoint clients are told to use for this broker (pair peers and the members of a "  \
         "shared store name it in their welcome); empty = Endpoint")                               \
    KEY (MemberLease, DURATION, "ms", "5000", 500, 600000, false, NULL,                            \
         "Store=postgresql: each member renews its lease every quarter of this; its successor "    \
         "takes its work over once its lease has passed (paused, cut off)")                        \
    KEY (NotifyCommand, STRING, NULL, "", 0, 0, false, NULL,                                       \
         "Run with /bin/sh -c on every pair event, with KEEL_EVENT, KEEL_BROKER, KEEL_PEER, "      \
         "KEEL_EPOCH and KEEL_DETAIL in its environment; empty = none")                            \
    KEY (MetricsEndpoint, STRING, NULL, "", 0, 0, false, NULL,                                     \
         "HOST:PORT (or PORT: 127.0.0.1) serving GET /metrics (Prometheus), /status.json and "     \
         "the status page /; read-only, unauthenticated; empty = off")                             \
    KEY (MetricsInsecure, BOOL, NULL, "false", 0, 0, false, NULL,                                  \
         "With Security=curve, serve MetricsEndpoint anyway (plain HTTP, unauthenticated); "       \
         "false = Security=curve turns MetricsEndpoint off")                                       \
    KEY (Security, ENUM, NULL, "none", 0, 0, false, "none|curve",                                  \
         "none: every socket in the clear, anyone who reaches a port is trusted (a warning at "    \
         "start); curve: CurveZMQ on every socket, clients authenticated by their keys "           \
         "(docs/security.md)")                                                                     \
    KEY (CurveKey, STRING, NULL, "", 0, 0, false, NULL,                                            \
         "Security=curve: this broker's certificate (keel-admin keygen): FILE public, "            \
         "FILE_secret secret (mode 0600)")                                                         \
    KEY (AuthorizedDrivers, STRING, NULL, "", 0, 0, false, NULL,                                   \
         "Security=curve: directory of the public certificates of drivers allowed to connect "     \
         "(reread on SIGHUP)")                                                                     \
    KEY (AuthorizedEngines, STRING, NULL, "", 0, 0, false, NULL,                                   \
         "Security=curve: directory of the public certificates of engines allowed to connect "     \
         "(reread on SIGHUP)")                                                                     \
    KEY (AuthorizedAdmins, STRING, NULL, "", 0, 0, false, NULL,                                    \
         "Security=curve: directory of the public certificates allowed on AdminEndpoint "          \
         "(keel-admin; reread on SIGHUP)")                                                         \
    KEY (PairPeerKey, STRING, NULL, "", 0, 0, false, NULL,                                         \
         "Security=curve, resilient pair: the peer broker's public certificate (its CurveKey "     \
         "FILE); required with PairRole")                                                          \
    KEY (LogLevel, ENUM, NULL, "info", 0, 0, true, "error|warn|info|debug", "Log level")

// The table (ends with KEEL_SETTINGS_END).
extern const keel_setting_def_t keel_broker_settings[];

// keel_broker_cfg_<Key> (const keel_settings_t *settings) for every key.
#define KEEL_BROKER_CFG_ACCESSOR(name, type, ...)                                                  \
    KEEL_SETTING_ACCESSOR (keel_broker_cfg_, name, type)
KEEL_BROKER_SETTINGS (KEEL_BROKER_CFG_ACCESSOR, KEEL_SETTING_IGNORE)
#undef KEEL_BROKER_CFG_ACCESSOR

#endif
