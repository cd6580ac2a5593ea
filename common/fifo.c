/*  fifo.c — a ring of fixed-size items. See fifo.h. */
#include "fifo.h"

#include <stdlib.h>
#include <string.h>

void
keel_fifo_init (keel_fifo_t *self, size_t item_size)
{
    memset (self, 0, sizeof *self);
    self->item_size = item_size;
}

void
keel_fifo_free (keel_fifo_t *self)
{
    free (self->items);
    keel_fifo_init (self, self->item_size);
}

bool
keel_fifo_push (keel_fifo_t *self, const void *item)
{
    if (self->len == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        if (cap > SIZE_MAX / self->item_size)
            return false;
        uint8_t *items = malloc (cap * self->item_size);
        if (!items)
            return false;
        for (size_t i = 0; i < self->len; i++)
            memcpy (items + i * self->item_size, keel_fifo_at (self, i), self->item_size);
        free (self->items);
        self->items = items;
        self->head = 0;
        self->cap = cap;
    }
    memcpy (keel_fifo_at (self, self->len), item, self->item_size);
    self->len++;
    return true;
}

bool
keel_fifo_pop (keel_fifo_t *self, void *item)
{
    if (self->len == 0)
        return false;
    memcpy (item, keel_fifo_at (self, 0), self->item_size);
    keel_fifo_drop (self, 1, SIZE_MAX);
    return true;
}

void
keel_fifo_drop (keel_fifo_t *self, size_t n, size_t keep)
{
    if (n > self->len)
        n = self->len;
    if (n) {
        self->head = (self->head + n) & (self->cap - 1);
        self->len -= n;
    }
    if (self->len == 0 && self->cap > keep)
        keel_fifo_free (self);
}
