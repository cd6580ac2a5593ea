/*  msgpack_bound.c — see msgpack_bound.h. */
#include "msgpack_bound.h"

//  Big-endian unsigned integer of n bytes at p.
static uint64_t
s_be (const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

keel_msgpack_bound_t
keel_msgpack_bounded (const uint8_t *data, size_t size, size_t *used)
{
    size_t at = 0;
    uint64_t need = 1; // values still to walk
    while (need > 0) {
        if (at >= size)
            return KEEL_MSGPACK_TRUNCATED;
        uint8_t b = data[at++];
        need--;
        uint64_t skip = 0;  // payload bytes after the header
        uint64_t items = 0; // elements the value contains
        int len_bytes = 0;  // bytes of a length field that follows the type byte
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            ;
        else if (b <= 0x8f)
            items = 2u * (b & 0x0f);
        else if (b <= 0x9f)
            items = b & 0x0f;
        else if (b <= 0xbf)
            skip = b & 0x1f;
        else if (b == 0xc1)
            return KEEL_MSGPACK_INVALID;
        else if (b >= 0xc4 && b <= 0xc6) // bin 8/16/32
            len_bytes = 1 << (b - 0xc4);
        else if (b >= 0xc7 && b <= 0xc9) { // ext 8/16/32: length, then a type byte
            len_bytes = 1 << (b - 0xc7);
            skip = 1;
        }
        else if (b == 0xca || b == 0xcb)
            skip = b == 0xca ? 4 : 8;
        else if (b >= 0xcc && b <= 0xd3) // uint, int 8..64
            skip = 1u << ((b - 0xcc) & 3);
        else if (b >= 0xd4 && b <= 0xd8) // fixext 1..16 and a type byte
            skip = 1 + (1u << (b - 0xd4));
        else if (b >= 0xd9 && b <= 0xdb) // str 8/16/32
            len_bytes = 1 << (b - 0xd9);
        else { // 0xdc..0xdf: array 16/32, map 16/32
            int n = (b == 0xdc || b == 0xde) ? 2 : 4;
            if (size - at < (size_t) n)
                return KEEL_MSGPACK_TRUNCATED;
            items = s_be (data + at, n) * (b >= 0xde ? 2 : 1);
            at += (size_t) n;
        }
        if (len_bytes) {
            if (size - at < (size_t) len_bytes)
                return KEEL_MSGPACK_TRUNCATED;
            skip += s_be (data + at, len_bytes);
            at += (size_t) len_bytes;
        }
        if (skip > size - at)
            return KEEL_MSGPACK_TRUNCATED;
        at += (size_t) skip;
        // Each element still to come needs a byte of its own.
        need += items;
        if (need > size - at)
            return KEEL_MSGPACK_TRUNCATED;
    }
    if (used)
        *used = at;
    return KEEL_MSGPACK_BOUNDED;
}
