/*  fuzz_wire.c — libFuzzer target for the frame decoder (every message kind).

    Every input is one frame as a peer could send it on any socket (client,
    admin, pair link). keel_wire_decode must never crash, leak or read out
    of bounds. When it accepts a frame:
      - the envelope validates again (keel_wire_validate);
      - it survives a re-encode, and the re-encoded frame decodes to an
        envelope that encodes to the very same bytes (a fixed point: what a
        broker forwards or spools reads back unchanged);
      - every task-range list it carries (DriverHello.delivered[].ranges,
        ResultAck.delivered) reads back as sorted, disjoint, non-empty
        ranges, which is what the broker's walk over them relies on.

    Build with clang -fsanitize=fuzzer,address,undefined (KEEL_FUZZ).
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ranges.h"
#include "wire.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  Walks a range list the validator accepted; aborts on a broken promise.
static void
s_walk_ranges (const uint64_t *v, size_t n)
{
    size_t at = 0;
    if (keel_ranges_problem (v, n, &at))
        abort (); // keel_wire_validate let a malformed list through
    keel_ranges_reader_t reader;
    keel_ranges_reader_init (&reader, v, n);
    uint64_t lo, hi, end = 0;
    size_t ranges = 0;
    bool first = true;
    while (keel_ranges_reader_next (&reader, &lo, &hi)) {
        if (lo >= hi || (!first && lo < end))
            abort ();
        end = hi;
        first = false;
        if (++ranges > n / 2)
            abort (); // more ranges than pairs
    }
    if (ranges != n / 2)
        abort ();
}

static void
s_check_ranges (const keel_env_t *env)
{
    if (env->body_case == KEEL__ENVELOPE__BODY_DRIVER_HELLO) {
        const Keel__DriverHello *m = env->driver_hello;
        for (size_t i = 0; i < m->n_delivered; i++)
            s_walk_ranges (m->delivered[i]->ranges, m->delivered[i]->n_ranges);
    }
    else if (env->body_case == KEEL__ENVELOPE__BODY_RESULT_ACK)
        s_walk_ranges (env->result_ack->delivered, env->result_ack->n_delivered);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    keel_error_t err;
    keel_env_t *env = keel_wire_decode (data, size, &err);
    if (!env)
        return 0;
    if (keel_wire_validate (env, &err) != KEEL_OK)
        abort ();
    s_check_ranges (env);
    zframe_t *frame = keel_wire_encode (env);
    if (!frame) {
        keel_wire_free (&env);
        return 0; // out of memory
    }
    keel_env_t *again = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
    if (!again) {
        fprintf (stderr, "fuzz_wire: %s re-encoded does not decode: %s\n",
                 keel_wire_body_name (env), err.text);
        abort (); // what we encode, we must read back
    }
    zframe_t *frame2 = keel_wire_encode (again);
    if (!frame2 || zframe_size (frame2) != zframe_size (frame)
        || memcmp (zframe_data (frame2), zframe_data (frame), zframe_size (frame)) != 0)
        abort ();
    zframe_destroy (&frame2);
    zframe_destroy (&frame);
    keel_wire_free (&again);
    keel_wire_free (&env);
    return 0;
}
