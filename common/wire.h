/*  wire.h — the codec: Envelope <-> bytes, with validation.

    Nothing decoded from the wire is used before keel_wire_decode has
    validated it: protocol version, sender kind and every enum in range,
    exactly one body, required fields present, ids well formed
    (keel_id_valid), service type names well formed, repeated fields and
    bytes within the caps below. Unpacking uses a capped allocator so a
    hostile message cannot make protobuf-c allocate without bound.

    Sending: keel_wire_send (DEALER, one frame) and keel_wire_send_to
    (ROUTER: identity frame + payload, ZMQ_DONTWAIT so a full or vanished
    peer never blocks the sender; EHOSTUNREACH and EAGAIN are returned as
    KEEL_ERR_IO for the caller to count).
*/
#ifndef KEEL_WIRE_H
#define KEEL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <czmq.h>
#include "keel.pb-c.h"
#include "error.h"

#define KEEL_PROTOCOL_VERSION       1
#define KEEL_ID_MAX                 64          // service, driver, engine ids and sessions
#define KEEL_TYPE_MAX               64          // service type names
#define KEEL_TEXT_MAX               4096        // error texts, notices, reasons
#define KEEL_LIST_MAX               100000      // entries in any repeated field
#define KEEL_BATCH_MAX              4096        // Assigns in an AssignBatch, Results in a ResultBatch
#define KEEL_DEFAULT_MAX_MSG_SIZE   (64 * 1024 * 1024)

typedef Keel__Envelope keel_env_t;

// Decodes and validates one frame. Returns NULL and fills err with the
// reason when the frame is not a valid Keel message. Free with keel_wire_free.
keel_env_t *keel_wire_decode (const uint8_t *data, size_t size, keel_error_t *err);
void keel_wire_free (keel_env_t **env_p);

// Validates a decoded (or locally built) envelope. Returns KEEL_OK or
// KEEL_ERR_INVALID with a reason ("submit_tasks: task 3: input too large").
keel_err keel_wire_validate (const keel_env_t *env, keel_error_t *err);

// Encodes env into a new frame (NULL on allocation failure). Sets
// env->version to KEEL_PROTOCOL_VERSION if it is 0.
zframe_t *keel_wire_encode (keel_env_t *env);

// Encodes and sends on a DEALER socket (one frame, ZMQ_DONTWAIT).
keel_err keel_wire_send (zsock_t *dealer, keel_env_t *env);

// Encodes and sends [identity][payload] on a ROUTER socket, ZMQ_DONTWAIT.
keel_err keel_wire_send_to (zsock_t *router, zframe_t *identity, keel_env_t *env);

// Sends an already encoded payload to identity on a ROUTER (neither frame is
// consumed). Used by outboxes that encode before a commit and send after.
keel_err keel_wire_send_frames (zsock_t *router, zframe_t *identity, zframe_t *payload);

// Initialises an envelope for sending with the given sender kind.
void keel_env_init (keel_env_t *env, Keel__SenderKind sender);

// Ids: 1..KEEL_ID_MAX characters of [A-Za-z0-9_.:-].
bool keel_id_valid (const char *id);
// Service type names: 1..KEEL_TYPE_MAX characters of [A-Za-z0-9_.-].
bool keel_type_name_valid (const char *name);

// A new random UUID in canonical text form (36 chars + NUL) into buf.
void keel_uuid_new (char buf[37]);

// Name of the envelope's body ("submit_tasks"), for logs; "none" if unset.
const char *keel_wire_body_name (const keel_env_t *env);

#endif
