/*  wire_codec.c — Envelope <-> bytes. See wire_codec.h.

    Decoding happens in three steps, each of which may refuse the frame:
    1. protobuf-c unpacks it through a capped allocator, so a frame of many
       empty submessages cannot make it allocate without bound;
    2. the raw bytes are walked once with the message descriptors to find
       strings holding a NUL (protobuf-c would silently cut them short);
    3. keel_wire_validate (wire_check.c) checks the envelope and its body
       against the table of bodies (who may send it, and what it must carry).
*/
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "wire_codec.h"

#define S_ALLOC_FACTOR     16 // bytes allocated per frame byte
#define S_ALLOC_SLACK      (64 * 1024)
#define S_MAX_DEPTH        8          // nesting the NUL scan follows
#define S_MAX_FIELD_NUMBER 536870911u // 2^29 - 1, protobuf's largest
// Fields a message of this build does not know, at most, in one message
// (a newer peer's few additions pass). protobuf-c keeps each one (a struct
// and a copy of its bytes), ~20 times its size on the wire: a frame of
// thousands of them, padded with fields a re-encode drops, decoded within
// its budget while its own re-encoding did not (fuzz_wire, 2026-12-08).
#define S_MAX_UNKNOWN      16

// ---------------------------------------------------------------- decoding

// A decoded message lives in an arena: protobuf-c's many small
// allocations (one per nested message, string and bytes field) come from a
// few chunks and go back in one free. The budget caps what one frame may
// make the decoder allocate (S_ALLOC_FACTOR per byte + S_ALLOC_SLACK).
typedef struct s_chunk_t {
    struct s_chunk_t *next;
    size_t size; // bytes of data
    size_t used;
    max_align_t data[];
} s_chunk_t;

typedef struct {
    s_chunk_t *chunks; // newest first
    size_t used;       // bytes handed out so far (frees are not subtracted)
    size_t cap;
    bool over_cap;
    bool no_memory;
} s_arena_t;

// What keel_wire_decode returns a pointer into: the envelope (a shallow
// copy of the one protobuf-c made; its pointers lead into the arena) and
// the arena it owns.
typedef struct {
    s_arena_t arena;
    keel_env_t env;
} s_decoded_t;

static void *
s_arena_alloc (void *data, size_t size)
{
    s_arena_t *arena = (s_arena_t *) data;
    size_t align = sizeof (max_align_t);
    size = size ? (size + align - 1) / align * align : align;
    if (size > arena->cap - arena->used) {
        arena->over_cap = true;
        return NULL;
    }
    s_chunk_t *chunk = arena->chunks;
    if (!chunk || chunk->size - chunk->used < size) {
        size_t want = chunk ? chunk->size * 2 : 4096;
        if (want < size)
            want = size;
        chunk = malloc (sizeof *chunk + want);
        if (!chunk) {
            arena->no_memory = true;
            return NULL;
        }
        chunk->next = arena->chunks;
        chunk->size = want;
        chunk->used = 0;
        arena->chunks = chunk;
    }
    void *block = (char *) chunk->data + chunk->used;
    chunk->used += size;
    arena->used += size;
    return block;
}

static void
s_arena_free (void *data, void *block)
{
    (void) data; // everything goes at once (s_arena_release)
    (void) block;
}

static void
s_arena_release (s_arena_t *arena)
{
    while (arena->chunks) {
        s_chunk_t *next = arena->chunks->next;
        free (arena->chunks);
        arena->chunks = next;
    }
}

static bool
s_read_varint (const uint8_t **p, const uint8_t *end, uint64_t *value)
{
    *value = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t byte = *(*p)++;
        *value |= (uint64_t) (byte & 0x7f) << shift;
        if (!(byte & 0x80))
            return true;
    }
    return false;
}

// Walks the encoded message and reports the first field with an invalid
// number, a message with more than S_MAX_UNKNOWN unknown fields, or the
// first string field holding a NUL byte (protobuf-c would hand it over cut
// short at the NUL). Returns
// false with err filled on a NUL or on bytes it cannot walk.
static bool
s_scan_strings (const uint8_t *data, size_t size, const ProtobufCMessageDescriptor *desc, int depth,
                keel_error_t *err)
{
    const uint8_t *p = data, *end = data + size;
    unsigned unknown = 0;
    while (p < end) {
        uint64_t key, length;
        if (!s_read_varint (&p, end, &key))
            return keel_error_set (err, KEEL_ERR_INVALID, "bad field key"), false;
        // Field numbers are 1..2^29-1. protobuf-c keeps a field 0 (written
        // in a long varint) as an unknown field and packs it back as a key
        // no decoder takes: what we read must be what we could send.
        if ((key >> 3) == 0 || (key >> 3) > S_MAX_FIELD_NUMBER)
            return keel_error_set (err, KEEL_ERR_INVALID, "bad field number"), false;
        const ProtobufCFieldDescriptor *field =
            protobuf_c_message_descriptor_get_field (desc, (unsigned) (key >> 3));
        if (!field && ++unknown > S_MAX_UNKNOWN)
            return keel_error_set (err, KEEL_ERR_INVALID, "%s: more than %d unknown fields",
                                   desc->short_name, S_MAX_UNKNOWN),
                   false;
        switch (key & 7) {
            case 0:
                if (!s_read_varint (&p, end, &length))
                    return keel_error_set (err, KEEL_ERR_INVALID, "bad varint"), false;
                continue;
            case 1:
                length = 8;
                break;
            case 5:
                length = 4;
                break;
            case 2:
                if (!s_read_varint (&p, end, &length))
                    return keel_error_set (err, KEEL_ERR_INVALID, "bad length"), false;
                break;
            default:
                return keel_error_set (err, KEEL_ERR_INVALID, "bad wire type"), false;
        }
        if (length > (uint64_t) (end - p))
            return keel_error_set (err, KEEL_ERR_INVALID, "field past the end"), false;
        if ((key & 7) != 2)
            field = NULL; // the checks below are for length-delimited fields
        if (field && field->type == PROTOBUF_C_TYPE_STRING && memchr (p, 0, length))
            return keel_error_set (err, KEEL_ERR_INVALID, "%s.%s: embedded NUL", desc->short_name,
                                   field->name),
                   false;
        if (field && field->type == PROTOBUF_C_TYPE_MESSAGE && depth < S_MAX_DEPTH
            && !s_scan_strings (p, length, field->descriptor, depth + 1, err))
            return false;
        p += length;
    }
    return true;
}

keel_env_t *
keel_wire_decode (const uint8_t *data, size_t size, keel_error_t *err)
{
    if (!data && size)
        return keel_error_set (err, KEEL_ERR_INVALID, "no data"), NULL;
    s_arena_t arena = { NULL, 0, size * S_ALLOC_FACTOR + S_ALLOC_SLACK, false, false };
    if (size > (SIZE_MAX - S_ALLOC_SLACK) / S_ALLOC_FACTOR)
        arena.cap = SIZE_MAX;
    ProtobufCAllocator allocator = { s_arena_alloc, s_arena_free, &arena };
    keel_env_t *unpacked = keel__envelope__unpack (&allocator, size, data);
    s_decoded_t *decoded = unpacked ? malloc (sizeof *decoded) : NULL;
    if (!decoded) {
        if (arena.over_cap)
            keel_error_set (err, KEEL_ERR_NOMEM, "message too large to decode");
        else if (arena.no_memory || unpacked)
            keel_error_set (err, KEEL_ERR_NOMEM, "out of memory decoding a message");
        else
            keel_error_set (err, KEEL_ERR_INVALID, "not a valid protobuf message");
        s_arena_release (&arena);
        return NULL;
    }
    decoded->arena = arena;
    decoded->env = *unpacked;
    keel_env_t *env = &decoded->env;
    if ((size && !s_scan_strings (data, size, &keel__envelope__descriptor, 0, err))
        || keel_wire_validate (env, err) != KEEL_OK) {
        keel_wire_free (&env);
        return NULL;
    }
    return env;
}

void
keel_wire_free (keel_env_t **env_p)
{
    if (env_p && *env_p) {
        // Everything keel_wire_decode made is in its arena.
        s_decoded_t *decoded = (s_decoded_t *) ((char *) *env_p - offsetof (s_decoded_t, env));
        s_arena_release (&decoded->arena);
        free (decoded);
        *env_p = NULL;
    }
}

// ---------------------------------------------------------------- encoding

zframe_t *
keel_wire_encode (keel_env_t *env)
{
    if (env->version == 0)
        env->version = KEEL_PROTOCOL_VERSION;
    env->has_version = true;
    if (env->sender != KEEL__SENDER_KIND__SENDER_UNKNOWN)
        env->has_sender = true;
    size_t size = keel__envelope__get_packed_size (env);
    zframe_t *frame = zframe_new (NULL, size);
    if (frame)
        keel__envelope__pack (env, zframe_data (frame));
    return frame;
}
