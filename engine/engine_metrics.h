/*  engine_metrics.h — an engine's own MetricsEndpoint (GET /metrics): its
    slots, what runs and what it holds, and how long it has been without a
    broker.

    The daemon's loop owns the engine's state: each second it fills a
    keel_engine_metrics_t with what it knows and publishes the rendered
    text to its HTTP thread (common/http/httpd.h: the same snapshot design
    as the broker's, docs/architecture.md "Metrics"). This module is the
    rendering only: pure, no I/O.
*/
#ifndef KEEL_ENGINE_METRICS_H
#define KEEL_ENGINE_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *engine_id;
    const char *session_id;
    const char *state;            // the session's: "offline", "logging-in", "online"
    const char *broker;           // the broker it is with, "" when none
    int slots;                    // Slots
    size_t running;               // executions running in a worker now
    size_t held_results;          // finished, waiting for a broker's acknowledgement
    double offline_seconds;       // the current stretch without a broker, 0 when online
    double offline_seconds_total; // every stretch since the process started
    double uptime_seconds;
    uint64_t malformed_messages; // from brokers, dropped
    uint64_t stale_messages;     // from a deposed broker of a pair, dropped
} keel_engine_metrics_t;

// The Prometheus text exposition of m. Returns a heap string (caller
// frees), NULL when out of memory.
char *keel_engine_metrics_render (const keel_engine_metrics_t *m);

#endif
