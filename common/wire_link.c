/*  wire_link.c — putting encoded envelopes on ZeroMQ sockets. See wire_link.h. */
#include <errno.h>
#include "wire_link.h"

keel_err
keel_link_send (zsock_t *dealer, keel_env_t *env, uint64_t *seq)
{
    if (seq) {
        env->has_seq = true;
        env->seq = ++*seq;
    }
    zframe_t *frame = keel_wire_encode (env);
    if (!frame)
        return KEEL_ERR_NOMEM;
    if (zframe_send (&frame, dealer, ZFRAME_DONTWAIT) == 0)
        return KEEL_OK;
    int saved = errno;
    zframe_destroy (&frame);
    errno = saved;
    return KEEL_ERR_IO;
}

// Once the identity frame is out, the ROUTER is in the middle of a message
// for that peer: whatever is sent next is appended to it. So if the payload
// fails (ROUTER never refuses a later part for a full pipe, but a signal or
// a terminating context can interrupt any send) it is retried once, then the
// message is ended with an empty frame the peer drops as malformed. Nothing
// is left open to swallow the next message.
keel_err
keel_link_send_frames (zsock_t *router, zframe_t *identity, zframe_t *payload)
{
    if (zframe_send (&identity, router, ZFRAME_MORE | ZFRAME_REUSE | ZFRAME_DONTWAIT) != 0)
        return KEEL_ERR_IO;
    if (zframe_send (&payload, router, ZFRAME_REUSE | ZFRAME_DONTWAIT) == 0)
        return KEEL_OK;
    int saved = errno;
    if (zframe_send (&payload, router, ZFRAME_REUSE | ZFRAME_DONTWAIT) == 0)
        return KEEL_OK;
    zframe_t *end = zframe_new_empty ();
    if (end && zframe_send (&end, router, ZFRAME_DONTWAIT) != 0)
        zframe_destroy (&end);
    errno = saved;
    return KEEL_ERR_IO;
}

keel_err
keel_link_send_to (zsock_t *router, zframe_t *identity, keel_env_t *env)
{
    zframe_t *payload = keel_wire_encode (env);
    if (!payload)
        return KEEL_ERR_NOMEM;
    keel_err rc = keel_link_send_frames (router, identity, payload);
    int saved = errno;
    zframe_destroy (&payload);
    errno = saved;
    return rc;
}

bool
keel_link_peer_gone (int err)
{
    return err == EHOSTUNREACH;
}
