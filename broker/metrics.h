/*  metrics.h — the broker's Prometheus metrics: histograms it keeps, and
    the text exposition of them with everything `keel-admin status` shows.

    Pure data, no I/O, no clock: the core reports a task's run time and
    queue wait as it sees them, the loop reports how long each store commit
    took, and keel_metrics_render turns those and an admin view (admin.h:
    the same facts keel-admin status reads) into the text format
    (https://prometheus.io/docs/instrumenting/exposition_formats/). Owned
    by the loop (broker.c), it outlives the core, which a pair's broker
    rebuilds at each takeover: histograms keep counting across it, while
    the counters, which are the core's, start again (Prometheus treats a
    counter going down as a reset).

    Label cardinality is bounded: the first KEEL_METRICS_TYPES service
    types seen get their own type="..." label, every later type shares
    type="other". Names and meanings: docs/operations.md, "Metrics and the
    status page".
*/
#ifndef KEEL_METRICS_H
#define KEEL_METRICS_H

#include <stdint.h>

#include "admin.h"

#define KEEL_METRICS_TYPES 20

typedef struct _keel_metrics_t keel_metrics_t;

// Returns NULL when out of memory.
keel_metrics_t *keel_metrics_new (void);
void keel_metrics_destroy (keel_metrics_t **self_p);

// A task's execution ended with a result (ok or failed) after run_us
// microseconds on its engine (keel_task_run_seconds).
void keel_metrics_task_run (keel_metrics_t *self, const char *type, uint64_t run_us);

// A task waited wait_ms from its acceptance to the dispatch of an
// execution (keel_task_queue_wait_seconds).
void keel_metrics_queue_wait (keel_metrics_t *self, const char *type, uint64_t wait_ms);

// A store commit took commit_us (keel_store_commit_seconds).
void keel_metrics_store_commit (keel_metrics_t *self, uint64_t commit_us);

// The exposition of the histograms and of the view (its model is read,
// nothing changed). Returns a heap string (caller frees), or NULL when out
// of memory.
char *keel_metrics_render (keel_metrics_t *self, const keel_admin_view_t *view);

#endif
