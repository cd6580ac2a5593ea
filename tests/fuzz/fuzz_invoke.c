/*  fuzz_invoke.c — libFuzzer target for the msgpack invocation convention
    ["method", [args...]] (keel/service.h, keel/driver.h).

    The input is a task's input or output as a peer sends it. Three readers
    take it:
      - the engine's, keel_library_parse_invocation (engine/library.c),
        which a worker runs on every task input of a library service;
      - the driver's, keel_invocation_parse (driver/invoke.c);
      - keel_result_unpack, which a driver runs on a result's output.
    None may crash, leak or read out of bounds; the two invocation readers
    must agree (both accept with the same method and arguments, or both
    refuse); an accepted invocation re-packed by keel_invocation_begin and
    msgpack_pack_object reads back as the same method and arguments.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keel/driver.h"
#include "library.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  The same value: packed to the same bytes (msgpack_object_equal says
//  NaN differs from itself).
static bool
s_same (const msgpack_object *a, const msgpack_object *b)
{
    msgpack_sbuffer x, y;
    msgpack_sbuffer_init (&x);
    msgpack_sbuffer_init (&y);
    msgpack_packer px, py;
    msgpack_packer_init (&px, &x, msgpack_sbuffer_write);
    msgpack_packer_init (&py, &y, msgpack_sbuffer_write);
    bool same = msgpack_pack_object (&px, *a) == 0 && msgpack_pack_object (&py, *b) == 0
                && x.size == y.size && (x.size == 0 || memcmp (x.data, y.data, x.size) == 0);
    msgpack_sbuffer_destroy (&x);
    msgpack_sbuffer_destroy (&y);
    return same;
}

//  Re-packs method(args) and parses it again: the same call.
static void
s_round_trip (const char *method, const msgpack_object *args)
{
    msgpack_sbuffer buf;
    msgpack_packer pk;
    keel_error_t err;
    if (keel_invocation_begin (&buf, &pk, method, args->via.array.size, &err) != KEEL_OK)
        abort (); // a method the reader took must be one the writer takes
    for (uint32_t i = 0; i < args->via.array.size; i++)
        if (msgpack_pack_object (&pk, args->via.array.ptr[i]) != 0)
            abort ();
    msgpack_unpacked unpacked;
    char again[KEEL_INVOCATION_METHOD_MAX + 1];
    msgpack_object args2;
    if (keel_invocation_parse (buf.data, buf.size, &unpacked, again, sizeof again, &args2, &err)
        != KEEL_OK)
        abort ();
    if (strcmp (again, method) != 0 || !s_same (args, &args2))
        abort ();
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&buf);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    // The engine's reader.
    msgpack_unpacked eng;
    msgpack_unpacked_init (&eng);
    char emethod[KEEL_INVOCATION_METHOD_MAX + 1];
    msgpack_object eargs;
    char why[160];
    bool eok = keel_library_parse_invocation (data, size, &eng, emethod, &eargs, why, sizeof why);

    // The driver's reader.
    msgpack_unpacked drv;
    char dmethod[KEEL_INVOCATION_METHOD_MAX + 1];
    msgpack_object dargs;
    keel_error_t err;
    bool dok =
        keel_invocation_parse (data, size, &drv, dmethod, sizeof dmethod, &dargs, &err) == KEEL_OK;

    if (eok != dok)
        abort ();
    if (eok) {
        if (strcmp (emethod, dmethod) != 0 || eargs.type != MSGPACK_OBJECT_ARRAY
            || !s_same (&eargs, &dargs))
            abort ();
        s_round_trip (emethod, &eargs);
    }
    msgpack_unpacked_destroy (&eng);
    msgpack_unpacked_destroy (&drv);

    // A result's output, as a driver reads it.
    keel_result_t result = { .status = KEEL_TASK_OK, .output = data, .output_size = size };
    msgpack_unpacked out;
    if (keel_result_unpack (&result, &out, &err) == KEEL_OK && eok
        && out.data.type != MSGPACK_OBJECT_ARRAY)
        abort (); // the same bytes were one array a moment ago
    msgpack_unpacked_destroy (&out);
    return 0;
}
