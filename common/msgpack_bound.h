/*  msgpack_bound.h — a check to run on msgpack bytes from outside before
    msgpack-c unpacks them.

    msgpack-c allocates an array's or map's elements as soon as it reads
    the count in its header, before it reads them: five bytes (0xdd and a
    count of 2^32-1) make it ask for 96 GiB. Every element takes at least
    one byte, so a container whose elements cannot all fit in the bytes
    that follow is not msgpack; keel_msgpack_bounded refuses it without
    allocating anything, which bounds what the unpacker may allocate by the
    size of its input. Such a value is reported as truncated: the input
    ends before the value could. Both readers of the invocation convention
    (the engine's, the driver's) call it first.

    No msgpack-c here: it walks the bytes by the format's headers.
*/
#ifndef KEEL_MSGPACK_BOUND_H
#define KEEL_MSGPACK_BOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    KEEL_MSGPACK_BOUNDED = 0, // the first value's containers fit in the input
    KEEL_MSGPACK_TRUNCATED,   // the input ends inside the first value, or a
                              // container counts more elements than bytes remain
    KEEL_MSGPACK_INVALID      // a byte that begins no msgpack value (0xc1)
} keel_msgpack_bound_t;

// Walks the first msgpack value of data[0..size). On KEEL_MSGPACK_BOUNDED
// *used (if not NULL) is its length in bytes.
keel_msgpack_bound_t keel_msgpack_bounded (const uint8_t *data, size_t size, size_t *used);

#endif
