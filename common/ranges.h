/*  ranges.h — sets of task ids as delta-coded ranges, the wire form of
    DriverHello.delivered[].ranges and ResultAck.delivered
    (docs/protocol.md, "Task ranges").

    A range list is an array of (gap, length) pairs: range k is
    [start_k, start_k + length_k) with start_0 = gap_0 and
    start_k = start_(k-1) + length_(k-1) + gap_k. Every length is at least
    1, so the ranges are sorted and disjoint by construction: a list cannot
    say "overlap". Drivers number tasks 0,1,2... and finish them mostly in
    order, so even a million ids usually take a few pairs of one-byte
    varints; a list that would be long is cut (the writer stops when full)
    and continued in another message.

    Nothing here allocates: the writer fills a caller's array, the reader
    walks one in place.
*/
#ifndef KEEL_RANGES_H
#define KEEL_RANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Describes what is wrong with the list v[0..n) — an odd count, a length
// of 0, an end past 2^64 — with the index of the entry at fault in *at, or
// returns NULL when the list is well formed. O(n).
const char *keel_ranges_problem (const uint64_t *v, size_t n, size_t *at);

// Reads a well formed list (keel_ranges_problem said NULL), range by range.
typedef struct {
    const uint64_t *v;
    size_t n;
    size_t i;     // next pair
    uint64_t end; // end of the range read last
} keel_ranges_reader_t;

void keel_ranges_reader_init (keel_ranges_reader_t *self, const uint64_t *v, size_t n);
// The next range as [*lo, *hi), or false when none is left.
bool keel_ranges_reader_next (keel_ranges_reader_t *self, uint64_t *lo, uint64_t *hi);

// Builds a list in buf[0..max) (max even), from ranges given in increasing
// order. Adjacent ranges are merged.
typedef struct {
    uint64_t *buf;
    size_t max;
    size_t n;     // entries written (2 per range)
    uint64_t end; // end of the last range written
    uint64_t ids; // ids covered so far
} keel_ranges_writer_t;

void keel_ranges_writer_init (keel_ranges_writer_t *self, uint64_t *buf, size_t max);
// Appends [lo, hi) (lo < hi, lo not below the end of the last range).
// Returns false, appending nothing, when the buffer is full.
bool keel_ranges_writer_add (keel_ranges_writer_t *self, uint64_t lo, uint64_t hi);

#endif
