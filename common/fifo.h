/*  fifo.h — a first-in first-out queue of fixed-size items, by value, in
    one ring that doubles when full (its entries moved to the front in
    order). No allocation per item: keel-driver hands every result through
    two of these (the actor's events for the application, the results kept
    for keel_driver_next_result), where a list node and an entry per result
    cost two allocations each.

    Zero-initialised after keel_fifo_init; not thread-safe (each queue is
    one thread's, or its lend holder's). Items are copied in and out with
    memcpy; keel_fifo_at points into the ring (valid until the next push).
*/
#ifndef KEEL_FIFO_H
#define KEEL_FIFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *items;
    size_t item_size;
    size_t head, len, cap; // cap: 0 or a power of two
} keel_fifo_t;

void keel_fifo_init (keel_fifo_t *self, size_t item_size);
// Frees the ring (not what the items point to).
void keel_fifo_free (keel_fifo_t *self);
// Appends a copy of *item. False when out of memory (nothing changed).
bool keel_fifo_push (keel_fifo_t *self, const void *item);
// Copies the oldest item into *item and removes it. False when empty.
bool keel_fifo_pop (keel_fifo_t *self, void *item);
// Removes the n oldest items (at most len). Once empty, a ring grown past
// keep items is freed: a backlog's memory goes back when it drains.
void keel_fifo_drop (keel_fifo_t *self, size_t n, size_t keep);

// The index-th item from the oldest (index < len).
static inline void *
keel_fifo_at (const keel_fifo_t *self, size_t index)
{
    return self->items + ((self->head + index) & (self->cap - 1)) * self->item_size;
}

static inline size_t
keel_fifo_len (const keel_fifo_t *self)
{
    return self->len;
}

#endif
