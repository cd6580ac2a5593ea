/*  actor_acks.c — keel_driver_hold_acks on the actor's side: results
    handed to the application are kept, in hand-over order, until the
    application says it has kept the first N of them (ACKTAKEN); only then
    are they acknowledged to the broker. Until then no copy the broker sends
    again is acknowledged, and no hello tells a broker of them (a broker
    told would never send them again). Without hold_acks a result is
    acknowledged once handed over. keel_actor_ack_later and
    keel_actor_flush_acks (actor_broker.c) send the acknowledgements.
*/
#include "actor_int.h"

#include <stdlib.h>
#include <string.h>

#define S_DUPLICATE_SCAN 4096 // results waiting for the application searched for a duplicate

void
keel_actor_handed (keel_actor_t *self, keel_actor_service_t *svc, uint64_t task_id)
{
    if (!self->hold_acks) {
        if (svc)
            keel_actor_ack_later (svc, task_id);
        return;
    }
    uint64_t seq = self->handed++;
    if (self->nkept == self->kept_cap) {
        size_t cap = self->kept_cap ? self->kept_cap * 2 : 256;
        keel_actor_kept_t *kept = realloc (self->kept, cap * sizeof *kept);
        if (!kept) {
            //  Not held: acknowledged as without hold_acks (the sequence stays right).
            if (svc)
                keel_actor_ack_later (svc, task_id);
            return;
        }
        self->kept = kept;
        self->kept_cap = cap;
    }
    self->kept[self->nkept++] = (keel_actor_kept_t) { svc, task_id, seq };
}

void
keel_actor_ack_taken (keel_actor_t *self, uint64_t upto)
{
    size_t n = 0;
    while (n < self->nkept && self->kept[n].seq < upto) {
        if (self->kept[n].service)
            keel_actor_ack_later (self->kept[n].service, self->kept[n].task_id);
        n++;
    }
    if (n > 0) {
        memmove (self->kept, self->kept + n, (self->nkept - n) * sizeof *self->kept);
        self->nkept -= n;
    }
    keel_actor_flush_acks (self);
}

void
keel_actor_ack_duplicate (keel_actor_t *self, keel_actor_service_t *svc, uint64_t task_id)
{
    if (self->hold_acks) {
        for (size_t i = 0; i < self->nkept; i++)
            if (self->kept[i].service == svc && self->kept[i].task_id == task_id)
                return; // handed over, not kept yet: ACKTAKEN acknowledges it
        //  Not handed over yet: acknowledged once kept. A long queue is not
        //  searched: then the broker keeps the copy and sends it again after
        //  a reconnect, acknowledged then.
        if (keel_fifo_len (&self->to_app) > S_DUPLICATE_SCAN)
            return;
        for (size_t i = 0; i < keel_fifo_len (&self->to_app); i++) {
            const keel_actor_to_app_t *e = keel_fifo_at (&self->to_app, i);
            if (e->service == svc && e->task_id == task_id && e->kind == KEEL_ACTOR_TO_APP_RESULT)
                return;
        }
    }
    keel_actor_ack_later (svc, task_id);
}

static int
s_cmp_id (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

bool
keel_actor_not_kept (keel_actor_t *self, keel_actor_service_t *svc, uint64_t **ids_p, size_t *n_p)
{
    *ids_p = NULL;
    *n_p = 0;
    if (!self->hold_acks)
        return true;
    size_t max = self->nkept + keel_fifo_len (&self->to_app), n = 0;
    if (max == 0)
        return true;
    uint64_t *ids = malloc (max * sizeof *ids);
    if (!ids)
        return false; // say nothing of the service rather than too much
    for (size_t i = 0; i < self->nkept; i++)
        if (self->kept[i].service == svc)
            ids[n++] = self->kept[i].task_id;
    for (size_t i = 0; i < keel_fifo_len (&self->to_app) && n < max; i++) {
        const keel_actor_to_app_t *e = keel_fifo_at (&self->to_app, i);
        if (e->kind == KEEL_ACTOR_TO_APP_RESULT && e->service == svc)
            ids[n++] = e->task_id;
    }
    qsort (ids, n, sizeof *ids, s_cmp_id);
    *ids_p = ids;
    *n_p = n;
    return true;
}
