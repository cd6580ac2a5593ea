/*  wire_codec.h — the codec: one Envelope <-> the bytes of one frame.

    Decoding refuses, with a reason, any frame that is not a valid Keel
    message: protobuf-c unpacks it through a capped allocator (a hostile
    frame cannot make it allocate more than a fixed multiple of its size),
    strings holding an embedded NUL are refused (protobuf-c would cut them
    short silently), and the result must pass keel_wire_validate
    (wire_check.h). A decoded envelope owns all its memory in one arena:
    keel_wire_free releases it at once.

    Encoding packs an envelope built in place (wire_build.h); the frame
    belongs to the caller. No sockets here: sending is wire_link.h.
*/
#ifndef KEEL_WIRE_CODEC_H
#define KEEL_WIRE_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <czmq.h>
#include "wire_check.h"

// Decodes and validates one frame. Returns NULL and fills err with the
// reason when the frame is not a valid Keel message (KEEL_ERR_INVALID), or
// when decoding it would pass the allocation cap or memory ran out
// (KEEL_ERR_NOMEM). Free the envelope with keel_wire_free.
keel_env_t *keel_wire_decode (const uint8_t *data, size_t size, keel_error_t *err);

// Frees an envelope keel_wire_decode returned and nulls *env_p. Only for
// decoded envelopes; idempotent.
void keel_wire_free (keel_env_t **env_p);

// Encodes env into a new frame (NULL on allocation failure); the caller
// destroys it. Sets env->version to KEEL_PROTOCOL_VERSION if it is 0 and
// marks version (and sender, when known) present.
zframe_t *keel_wire_encode (keel_env_t *env);

#endif
