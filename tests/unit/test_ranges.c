/*  test_ranges.c — task ids as delta-coded (gap, length) ranges: the
    writer merges and stops when full, the reader gives back what was
    written, and malformed lists from the wire are named. */
#include <criterion/criterion.h>
#include <stdint.h>

#include "ranges.h"

Test (ranges, reads_back_what_was_written_merging_adjacent_ranges)
{
    uint64_t buf[8];
    keel_ranges_writer_t w;
    keel_ranges_writer_init (&w, buf, 8);
    cr_assert (keel_ranges_writer_add (&w, 3, 5));
    cr_assert (keel_ranges_writer_add (&w, 5, 9)); // adjacent: merged
    cr_assert (keel_ranges_writer_add (&w, 100, 101));
    cr_assert_eq (w.n, 4);
    cr_assert_eq (w.ids, 7);
    cr_assert_eq (buf[0], 3);
    cr_assert_eq (buf[1], 6);
    cr_assert_eq (buf[2], 91);
    cr_assert_eq (buf[3], 1);
    keel_ranges_reader_t r;
    keel_ranges_reader_init (&r, buf, w.n);
    uint64_t lo, hi;
    cr_assert (keel_ranges_reader_next (&r, &lo, &hi));
    cr_assert (lo == 3 && hi == 9);
    cr_assert (keel_ranges_reader_next (&r, &lo, &hi));
    cr_assert (lo == 100 && hi == 101);
    cr_assert_not (keel_ranges_reader_next (&r, &lo, &hi));
}

Test (ranges, writer_stops_when_full_and_appends_nothing)
{
    uint64_t buf[5]; // odd room: two entries are one range
    keel_ranges_writer_t w;
    keel_ranges_writer_init (&w, buf, 5);
    cr_assert (keel_ranges_writer_add (&w, 0, 1));
    cr_assert (keel_ranges_writer_add (&w, 2, 3));
    cr_assert_not (keel_ranges_writer_add (&w, 4, 5));
    cr_assert_eq (w.n, 4);
    cr_assert (keel_ranges_writer_add (&w, 3, 4), "an adjacent range still fits (merged)");
    cr_assert_eq (w.ids, 3);
}

Test (ranges, names_what_is_wrong_with_a_list)
{
    size_t at = 99;
    cr_assert_null (keel_ranges_problem (NULL, 0, &at));
    uint64_t odd[] = { 1, 2, 3 };
    cr_assert_str_eq (keel_ranges_problem (odd, 3, &at),
                      "odd number of entries (gap, length pairs expected)");
    cr_assert_eq (at, 2);
    uint64_t empty[] = { 0, 5, 1, 0 };
    cr_assert_str_eq (keel_ranges_problem (empty, 4, &at), "empty range (length 0)");
    cr_assert_eq (at, 3);
    uint64_t far[] = { UINT64_MAX, 1 };
    cr_assert_str_eq (keel_ranges_problem (far, 2, &at), "range ends past the largest task id");
    uint64_t wrap[] = { 10, UINT64_MAX - 20, 11, 1 };
    cr_assert_str_eq (keel_ranges_problem (wrap, 4, &at), "range starts past the largest task id");
    cr_assert_eq (at, 2);
    uint64_t edge[] = { 0, UINT64_MAX };
    cr_assert_null (keel_ranges_problem (edge, 2, &at), "[0, 2^64-1) is a valid range");
}
