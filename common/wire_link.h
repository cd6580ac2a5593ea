/*  wire_link.h — the link: putting encoded envelopes on ZeroMQ sockets.

    Every send is ZMQ_DONTWAIT: a full or vanished peer never blocks the
    sender's loop. A send that fails returns KEEL_ERR_IO with errno kept
    from the failing call, for the caller to count:

      EHOSTUNREACH  a ROUTER with ZMQ_ROUTER_MANDATORY (every Keel ROUTER)
                    has no connection for that identity: the peer is gone
                    (keel_link_peer_gone). Not a reason to declare it dead:
                    what it sent before closing may still wait to be read,
                    its heartbeat clock decides.
      EAGAIN        the peer's high-water mark is reached (DEALER side).
      other         interrupted, or the context is terminating.

    DEALER side (engines, drivers): keel_link_send stamps each envelope with
    the sender's next sequence number (Envelope.seq: one counter per
    program, 1, 2, 3 ... across all its sockets) and sends one frame.
    ROUTER side (brokers, test brokers): [identity][payload], never left
    half sent (see keel_link_send_frames). Brokers send no seq.

    No state of its own: the caller owns the sockets and the counter.
*/
#ifndef KEEL_WIRE_LINK_H
#define KEEL_WIRE_LINK_H

#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>
#include "wire_codec.h"

// Encodes env and sends it on a DEALER as one frame. When seq is not NULL,
// env->seq is set to ++*seq first (the counter moves even if the send then
// fails: a gap in seq is harmless, a reuse is not). KEEL_ERR_NOMEM when it
// cannot be encoded.
keel_err keel_link_send (zsock_t *dealer, keel_env_t *env, uint64_t *seq);

// Encodes env and sends [identity][payload] on a ROUTER. The identity
// frame is not consumed.
keel_err keel_link_send_to (zsock_t *router, zframe_t *identity, keel_env_t *env);

// Sends an already encoded payload to identity on a ROUTER; neither frame
// is consumed. Used by outboxes that encode before a commit and send after.
// Once the identity frame is out the message must be ended: a payload that
// fails is retried once, then an empty frame ends the message (the peer
// drops it as malformed), so nothing is left open to swallow the next one.
keel_err keel_link_send_frames (zsock_t *router, zframe_t *identity, zframe_t *payload);

// True when a send's errno says the peer has no connection any more
// (ZMQ_ROUTER_MANDATORY: EHOSTUNREACH); false for every other failure.
bool keel_link_peer_gone (int err);

#endif
