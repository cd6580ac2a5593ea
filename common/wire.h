/*  wire.h — the whole wire layer in one include.

    The layer is four modules, each with its own header:

      wire_check.h   what a valid message is: limits, the per-body table of
                     senders and required fields, keel_wire_validate
      wire_codec.h   Envelope <-> frame: decoding through the capped
                     allocator (validated before anyone reads it), encoding
      wire_link.h    sending on DEALER and ROUTER sockets: sequence numbers,
                     ZMQ_DONTWAIT, ROUTER_MANDATORY (EHOSTUNREACH: peer gone)
      wire_build.h   typed builders, one per message a program sends

    The keel_wire_send* names below are the link's functions under their
    older names, kept for the call sites not yet moved to wire_link.h.
*/
#ifndef KEEL_WIRE_H
#define KEEL_WIRE_H

#include "wire_check.h"
#include "wire_codec.h"
#include "wire_link.h"
#include "wire_build.h"

// keel_link_send without a sequence number.
static inline keel_err
keel_wire_send (zsock_t *dealer, keel_env_t *env)
{
    return keel_link_send (dealer, env, NULL);
}

static inline keel_err
keel_wire_send_to (zsock_t *router, zframe_t *identity, keel_env_t *env)
{
    return keel_link_send_to (router, identity, env);
}

static inline keel_err
keel_wire_send_frames (zsock_t *router, zframe_t *identity, zframe_t *payload)
{
    return keel_link_send_frames (router, identity, payload);
}

#endif
