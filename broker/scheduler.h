/*  scheduler.h — which queued task an engine gets next (DESIGN §5).

    Services with dispatchable tasks sit in one list sorted by priority
    (highest first) and, within a priority, by when they were last served
    (round-robin). keel_sched_next walks the list in that order and returns
    the first task of the first service whose type the engine offers (and
    whose condition, if it has one, the engine's properties meet), taken
    FIFO from that service; that service then moves behind the others of its
    priority. Services whose FIFO has emptied leave the list as they are met.

    The scheduler holds pointers to services owned by the model; the broker
    calls keel_sched_remove before it frees a service.
*/
#ifndef KEEL_SCHED_H
#define KEEL_SCHED_H

#include "model.h"

typedef struct _keel_sched_t keel_sched_t;

keel_sched_t *keel_sched_new (void);
void keel_sched_destroy (keel_sched_t **self_p);

// Puts svc in the list if it has dispatchable tasks and is not there yet.
void keel_sched_activate (keel_sched_t *self, keel_service_rec_t *svc);
// Takes svc out of the list (service removed, cancelled or detached).
void keel_sched_remove (keel_sched_t *self, keel_service_rec_t *svc);

// Filter for tasks: return false to leave a task queued for another engine.
typedef bool (keel_sched_accept_fn) (keel_service_rec_t *svc, keel_task_t *task,
                                     keel_engine_t *engine, void *arg);

// The next task for engine, taken out of its service's FIFO, or NULL when
// nothing the engine offers is queued. *svc_p and *task_id_p tell which.
keel_task_t *keel_sched_next (keel_sched_t *self, keel_engine_t *engine,
                              keel_sched_accept_fn *accept, void *arg, keel_service_rec_t **svc_p,
                              uint64_t *task_id_p);

// Services in the list (for status).
size_t keel_sched_size (keel_sched_t *self);

#endif
