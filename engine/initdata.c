/*  initdata.c — the engine's copy of each service's session init data. */
#include "initdata.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *service_id;
    uint8_t *data;
    size_t size;
    uint64_t used;
} s_entry_t;

struct _keel_initdata_t {
    s_entry_t *items;
    size_t n, cap;
    uint64_t clock;
};

keel_initdata_t *
keel_initdata_new (void)
{
    return calloc (1, sizeof (keel_initdata_t));
}

void
keel_initdata_clear (keel_initdata_t *self)
{
    for (size_t i = 0; i < self->n; i++) {
        free (self->items[i].service_id);
        free (self->items[i].data);
    }
    self->n = 0;
}

void
keel_initdata_destroy (keel_initdata_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_initdata_clear (*self_p);
    free ((*self_p)->items);
    free (*self_p);
    *self_p = NULL;
}

static s_entry_t *
s_find (keel_initdata_t *self, const char *service_id)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp (self->items[i].service_id, service_id) == 0)
            return &self->items[i];
    return NULL;
}

bool
keel_initdata_put (keel_initdata_t *self, const char *service_id, const uint8_t *data, size_t size,
                   bool *evicted_p)
{
    if (evicted_p)
        *evicted_p = false;
    uint8_t *copy = malloc (size ? size : 1);
    if (!copy)
        return false;
    if (size)
        memcpy (copy, data, size);
    s_entry_t *e = s_find (self, service_id);
    if (!e) {
        if (self->n == KEEL_INITDATA_MAX) {
            size_t oldest = 0;
            for (size_t i = 1; i < self->n; i++)
                if (self->items[i].used < self->items[oldest].used)
                    oldest = i;
            free (self->items[oldest].service_id);
            free (self->items[oldest].data);
            self->items[oldest] = self->items[--self->n];
            if (evicted_p)
                *evicted_p = true;
        }
        if (self->n == self->cap) {
            size_t cap = self->cap ? self->cap * 2 : 16;
            s_entry_t *grown = realloc (self->items, cap * sizeof *grown);
            if (!grown) {
                free (copy);
                return false;
            }
            self->items = grown;
            self->cap = cap;
        }
        char *id = strdup (service_id);
        if (!id) {
            free (copy);
            return false;
        }
        e = &self->items[self->n++];
        e->service_id = id;
        e->data = NULL;
    }
    free (e->data);
    e->data = copy;
    e->size = size;
    e->used = ++self->clock;
    return true;
}

const uint8_t *
keel_initdata_get (keel_initdata_t *self, const char *service_id, size_t *size_p)
{
    s_entry_t *e = s_find (self, service_id);
    *size_p = e ? e->size : 0;
    if (!e)
        return NULL;
    e->used = ++self->clock;
    return e->data;
}

size_t
keel_initdata_size (const keel_initdata_t *self)
{
    return self->n;
}
