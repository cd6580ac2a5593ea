/*  test_wire_link.c — the link: sequence numbers on DEALER sends, and a
    vanished peer on a ROUTER told apart from other send failures.
*/
#include <criterion/criterion.h>
#include <errno.h>
#include <unistd.h>
#include "wire.h"

static void
s_endpoint (char *buf, size_t size, const char *name)
{
    snprintf (buf, size, "inproc://wire-link-%s-%d", name, (int) getpid ());
}

static keel_env_t *
s_recv (zsock_t *router)
{
    zmsg_t *msg = zmsg_recv (router);
    cr_assert_not_null (msg);
    cr_assert_eq (zmsg_size (msg), 2);
    zframe_t *identity = zmsg_pop (msg);
    zframe_t *payload = zmsg_pop (msg);
    keel_error_t err = { "" };
    keel_env_t *env = keel_wire_decode (zframe_data (payload), zframe_size (payload), &err);
    cr_assert_not_null (env, "%s", err.text);
    zframe_destroy (&identity);
    zframe_destroy (&payload);
    zmsg_destroy (&msg);
    return env;
}

Test (wire_link, stamps_each_send_with_the_senders_next_sequence_number)
{
    char endpoint[80];
    s_endpoint (endpoint, sizeof endpoint, "seq");
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_rcvtimeo (router, 2000);
    cr_assert_eq (zsock_bind (router, "%s", endpoint), 0);
    zsock_t *a = zsock_new (ZMQ_DEALER);
    zsock_t *b = zsock_new (ZMQ_DEALER);
    cr_assert_eq (zsock_connect (a, "%s", endpoint), 0);
    cr_assert_eq (zsock_connect (b, "%s", endpoint), 0);

    // One counter per program, across its sockets: 1, 2, 3.
    uint64_t seq = 0;
    keel_msg_t msg;
    zsock_t *socks[] = { a, b, a };
    for (uint64_t i = 1; i <= 3; i++) {
        keel_env_t *env = keel_msg_heartbeat (&msg, KEEL__SENDER_KIND__SENDER_DRIVER, NULL, 0);
        cr_assert_eq (keel_link_send (socks[i - 1], env, &seq), KEEL_OK);
        cr_assert_eq (seq, i);
        keel_env_t *got = s_recv (router);
        cr_assert (got->has_seq);
        cr_assert_eq (got->seq, i);
        keel_wire_free (&got);
    }
    // Without a counter no seq is sent (keel_wire_send).
    cr_assert_eq (keel_wire_send (a, keel_msg_logoff (&msg, "bye")), KEEL_OK);
    keel_env_t *got = s_recv (router);
    cr_assert_not (got->has_seq);
    cr_assert_eq (got->body_case, KEEL__ENVELOPE__BODY_LOGOFF);
    keel_wire_free (&got);
    cr_assert_eq (seq, 3);

    zsock_destroy (&a);
    zsock_destroy (&b);
    zsock_destroy (&router);
}

Test (wire_link, a_failed_send_still_uses_up_its_sequence_number)
{
    // A DEALER with ZMQ_IMMEDIATE and no connection up refuses at once
    // (nothing listens on loopback port 1).
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_immediate (dealer, 1);
    zsock_set_linger (dealer, 0);
    zsock_connect (dealer, "tcp://127.0.0.1:1");
    uint64_t seq = 41;
    keel_msg_t msg;
    keel_env_t *env = keel_msg_heartbeat (&msg, KEEL__SENDER_KIND__SENDER_ENGINE, NULL, 0);
    errno = 0;
    cr_assert_eq (keel_link_send (dealer, env, &seq), KEEL_ERR_IO);
    cr_assert_eq (errno, EAGAIN);
    cr_assert_not (keel_link_peer_gone (errno));
    cr_assert_eq (seq, 42, "a number once stamped is never stamped again");
    cr_assert_eq (env->seq, 42);
    zsock_destroy (&dealer);
}

Test (wire_link, a_router_send_to_a_vanished_peer_says_the_peer_is_gone)
{
    char endpoint[80];
    s_endpoint (endpoint, sizeof endpoint, "gone");
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (router, 1);
    cr_assert_eq (zsock_bind (router, "%s", endpoint), 0);
    zframe_t *nobody = zframe_new ("nobody", 6);
    keel_msg_t msg;
    errno = 0;
    cr_assert_eq (keel_link_send_to (router, nobody, keel_msg_relogin (&msg, "who?")), KEEL_ERR_IO);
    cr_assert (keel_link_peer_gone (errno), "errno %d", errno);
    cr_assert_eq (zframe_size (nobody), 6, "the identity frame is not consumed");
    zframe_destroy (&nobody);
    zsock_destroy (&router);
}
