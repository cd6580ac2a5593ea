/*  scheduler.c — priority, FIFO and round-robin dispatch. See scheduler.h. */

#include "scheduler.h"

#include <stdlib.h>

// How deep into one service's FIFO we look for a task the filter accepts
// before trying the next service.
#define KEEL_SCHED_SCAN 16

struct _keel_sched_t {
    zlistx_t *active; // keel_service_rec_t *, sorted by s_compare
    uint64_t serve_seq;
};

// Higher priority first; within a priority, least recently served first.
static int
s_compare (const void *a, const void *b)
{
    const keel_service_rec_t *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    if (x->serve_seq != y->serve_seq)
        return x->serve_seq < y->serve_seq ? -1 : 1;
    return 0;
}

keel_sched_t *
keel_sched_new (void)
{
    keel_sched_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->active = zlistx_new ();
    if (!self->active) {
        free (self);
        return NULL;
    }
    zlistx_set_comparator (self->active, s_compare);
    return self;
}

void
keel_sched_destroy (keel_sched_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zlistx_destroy (&(*self_p)->active);
    free (*self_p);
    *self_p = NULL;
}

void
keel_sched_activate (keel_sched_t *self, keel_service_rec_t *svc)
{
    if (svc->sched_handle || svc->nready == 0)
        return;
    // A service that (re)joins goes behind those of its priority that are
    // already waiting.
    svc->serve_seq = ++self->serve_seq;
    svc->sched_handle = zlistx_insert (self->active, svc, false);
}

void
keel_sched_remove (keel_sched_t *self, keel_service_rec_t *svc)
{
    if (!svc->sched_handle)
        return;
    zlistx_delete (self->active, svc->sched_handle);
    svc->sched_handle = NULL;
}

typedef struct {
    keel_sched_accept_fn *accept;
    void *arg;
    keel_service_rec_t *svc;
    keel_engine_t *engine;
} s_filter_t;

static bool
s_filter (keel_task_t *task, void *arg)
{
    s_filter_t *f = arg;
    return f->accept (f->svc, task, f->engine, f->arg);
}

keel_task_t *
keel_sched_next (keel_sched_t *self, keel_engine_t *engine, keel_sched_accept_fn *accept, void *arg,
                 keel_service_rec_t **svc_p, uint64_t *task_id_p)
{
    void *handle = zlistx_first (self->active) ? zlistx_cursor (self->active) : NULL;
    while (handle) {
        keel_service_rec_t *svc = zlistx_handle_item (handle);
        void *next = zlistx_next (self->active) ? zlistx_cursor (self->active) : NULL;
        if (svc->nready == 0) {
            keel_sched_remove (self, svc);
        }
        else if (keel_engine_offers (engine, svc->type)
                 && (!svc->cond || keel_engine_matches (engine, svc))) {
            s_filter_t f = { accept, arg, svc, engine };
            keel_task_t *task = keel_service_queue_pop (svc, accept ? s_filter : NULL, &f,
                                                        KEEL_SCHED_SCAN, task_id_p);
            if (task) {
                svc->serve_seq = ++self->serve_seq;
                if (svc->nready == 0)
                    keel_sched_remove (self, svc);
                else
                    zlistx_reorder (self->active, svc->sched_handle, false);
                *svc_p = svc;
                return task;
            }
        }
        handle = next;
    }
    return NULL;
}

size_t
keel_sched_size (keel_sched_t *self)
{
    return zlistx_size (self->active);
}
