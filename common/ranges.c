/*  ranges.c — task ids as delta-coded (gap, length) ranges. */
#include "ranges.h"

#include <assert.h>

const char *
keel_ranges_problem (const uint64_t *v, size_t n, size_t *at)
{
    *at = 0;
    if (n % 2) {
        *at = n - 1;
        return "odd number of entries (gap, length pairs expected)";
    }
    uint64_t end = 0;
    for (size_t i = 0; i < n; i += 2) {
        *at = i;
        if (v[i] > UINT64_MAX - end)
            return "range starts past the largest task id";
        uint64_t start = end + v[i];
        *at = i + 1;
        if (v[i + 1] == 0)
            return "empty range (length 0)";
        if (v[i + 1] > UINT64_MAX - start)
            return "range ends past the largest task id";
        end = start + v[i + 1];
    }
    return NULL;
}

void
keel_ranges_reader_init (keel_ranges_reader_t *self, const uint64_t *v, size_t n)
{
    assert (self);
    self->v = v;
    self->n = n - n % 2;
    self->i = 0;
    self->end = 0;
}

bool
keel_ranges_reader_next (keel_ranges_reader_t *self, uint64_t *lo, uint64_t *hi)
{
    assert (self && lo && hi);
    if (self->i >= self->n)
        return false;
    *lo = self->end + self->v[self->i];
    *hi = *lo + self->v[self->i + 1];
    self->end = *hi;
    self->i += 2;
    return true;
}

void
keel_ranges_writer_init (keel_ranges_writer_t *self, uint64_t *buf, size_t max)
{
    assert (self);
    self->buf = buf;
    self->max = max - max % 2;
    self->n = 0;
    self->end = 0;
    self->ids = 0;
}

bool
keel_ranges_writer_add (keel_ranges_writer_t *self, uint64_t lo, uint64_t hi)
{
    assert (self && lo < hi && (self->n == 0 || lo >= self->end));
    if (self->n > 0 && lo == self->end)
        self->buf[self->n - 1] += hi - lo;
    else {
        if (self->n + 2 > self->max)
            return false;
        self->buf[self->n++] = lo - self->end;
        self->buf[self->n++] = hi - lo;
    }
    self->end = hi;
    self->ids += hi - lo;
    return true;
}
