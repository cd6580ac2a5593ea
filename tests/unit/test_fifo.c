/*  test_fifo.c — common/fifo.h: order kept through wrap-around and growth,
    drop and its giving the room back, pop from empty. */

#include <criterion/criterion.h>
#include <stdint.h>

#include "fifo.h"

typedef struct {
    uint64_t id;
    void *p;
    int kind;
} s_item_t;

Test (fifo, keeps_order_through_wrap_around_and_growth)
{
    keel_fifo_t f;
    keel_fifo_init (&f, sizeof (s_item_t));
    uint64_t next_in = 0, next_out = 0;
    // Uneven pushes and pops, so the ring wraps and then grows while wrapped.
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 7 + round; i++) {
            s_item_t it = { next_in, &f, (int) (next_in % 3) };
            cr_assert (keel_fifo_push (&f, &it));
            next_in++;
        }
        cr_assert_eq (keel_fifo_len (&f), next_in - next_out);
        for (size_t i = 0; i < keel_fifo_len (&f); i++)
            cr_assert_eq (((s_item_t *) keel_fifo_at (&f, i))->id, next_out + i);
        for (int i = 0; i < 5 + round / 2; i++) {
            s_item_t it;
            cr_assert (keel_fifo_pop (&f, &it));
            cr_assert_eq (it.id, next_out, "popped %llu, expected %llu", (unsigned long long) it.id,
                          (unsigned long long) next_out);
            cr_assert_eq (it.kind, (int) (next_out % 3));
            next_out++;
        }
    }
    while (next_out < next_in) {
        s_item_t it;
        cr_assert (keel_fifo_pop (&f, &it));
        cr_assert_eq (it.id, next_out++);
    }
    s_item_t none;
    cr_assert_not (keel_fifo_pop (&f, &none), "an empty queue has nothing to pop");
    keel_fifo_free (&f);
}

Test (fifo, drop_removes_the_oldest_and_gives_a_drained_backlogs_room_back)
{
    keel_fifo_t f;
    keel_fifo_init (&f, sizeof (uint64_t));
    for (uint64_t i = 0; i < 1000; i++)
        cr_assert (keel_fifo_push (&f, &i));
    keel_fifo_drop (&f, 10, 64);
    cr_assert_eq (keel_fifo_len (&f), 990);
    cr_assert_eq (*(uint64_t *) keel_fifo_at (&f, 0), 10);
    cr_assert_not_null (f.items, "not empty: the ring stays");
    keel_fifo_drop (&f, 5000, 64); // more than it holds: all
    cr_assert_eq (keel_fifo_len (&f), 0);
    cr_assert_null (f.items, "a ring grown past keep is freed once empty");
    uint64_t v = 7;
    cr_assert (keel_fifo_push (&f, &v), "usable again after");
    keel_fifo_drop (&f, 1, 64);
    cr_assert_not_null (f.items, "a ring within keep is kept");
    keel_fifo_free (&f);
}
