/*  fuzz_wire.c — libFuzzer entry point for the frame decoder.

    Every input is one frame as a peer could send it. keel_wire_decode must
    never crash, leak or read out of bounds; when it accepts a frame, the
    result must validate again and survive a re-encode.

    Build with clang -fsanitize=fuzzer,address,undefined (KEEL_FUZZ).
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "wire.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    keel_error_t err;
    keel_env_t *env = keel_wire_decode (data, size, &err);
    if (env) {
        if (keel_wire_validate (env, &err) != KEEL_OK)
            abort ();
        zframe_t *frame = keel_wire_encode (env);
        zframe_destroy (&frame);
        keel_wire_free (&env);
    }
    return 0;
}
