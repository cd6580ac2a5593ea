/*  fake_broker.c — a scripted broker for integration tests. See fake_broker.h. */

#include "fake_broker.h"

#include <stdio.h>
#include <stdlib.h>

static void
s_env_destroy (void **item_p)
{
    keel_wire_free ((keel_env_t **) item_p);
}

fake_broker_t *
fake_broker_new (void)
{
    fake_broker_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    int port = harness_free_port ();
    self->router = zsock_new (ZMQ_ROUTER);
    self->backlog = zlistx_new ();
    if (self->backlog)
        zlistx_set_destructor (self->backlog, s_env_destroy);
    if (port <= 0 || !self->router || !self->backlog) {
        fake_broker_destroy (&self);
        return NULL;
    }
    zsock_set_router_mandatory (self->router, 1);
    zsock_set_sndhwm (self->router, 0);
    zsock_set_rcvhwm (self->router, 0);
    zsock_set_sndtimeo (self->router, 5000);
    zsock_set_linger (self->router, 0);
    self->b.port = port;
    snprintf (self->b.endpoint, sizeof self->b.endpoint, "tcp://127.0.0.1:%d", port);
    if (zsock_bind (self->router, "%s", self->b.endpoint) != port) {
        fprintf (stderr, "fake broker: cannot bind %s\n", self->b.endpoint);
        fake_broker_destroy (&self);
        return NULL;
    }
    self->keepalive_ms = 300;
    return self;
}

void
fake_broker_destroy (fake_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zframe_destroy (&(*self_p)->peer);
    zsock_destroy (&(*self_p)->router);
    zlistx_destroy (&(*self_p)->backlog);
    free (*self_p);
    *self_p = NULL;
}

bool
fake_broker_send_frames (fake_broker_t *self, int n, const void *const data[], const size_t size[])
{
    void *handle = zsock_resolve (self->router);
    bool ok =
        self->peer
        && zmq_send (handle, zframe_data (self->peer), zframe_size (self->peer), ZMQ_SNDMORE) >= 0;
    for (int i = 0; ok && i < n; i++)
        ok = zmq_send (handle, data[i], size[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0;
    if (!ok)
        self->send_failures++;
    self->last_sent = zclock_mono ();
    return ok;
}

bool
fake_broker_send_raw (fake_broker_t *self, const void *data, size_t size)
{
    const void *d[1] = { data };
    size_t s[1] = { size };
    return fake_broker_send_frames (self, 1, d, s);
}

zframe_t *
fake_broker_encode (fake_broker_t *self, keel_env_t *env)
{
    env->has_seq = true;
    env->seq = ++self->seq;
    zframe_t *frame = keel_wire_encode (env);
    if (!frame)
        abort (); // out of memory in a test: nothing sensible to do
    return frame;
}

bool
fake_broker_send (fake_broker_t *self, keel_env_t *env)
{
    zframe_t *frame = fake_broker_encode (self, env);
    bool ok = fake_broker_send_raw (self, zframe_data (frame), zframe_size (frame));
    zframe_destroy (&frame);
    return ok;
}

bool
fake_broker_send_heartbeat (fake_broker_t *self)
{
    Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    return fake_broker_send (self, &env);
}

//  Queues each Result of batch as a message of its own (the envelope's
//  header with a Result body, encoded and decoded again).
static void
s_expand (fake_broker_t *self, const keel_env_t *batch)
{
    for (size_t i = 0; i < batch->result_batch->n_results; i++) {
        keel_env_t one = *batch;
        one.body_case = KEEL__ENVELOPE__BODY_RESULT;
        one.result = batch->result_batch->results[i];
        zframe_t *frame = keel_wire_encode (&one);
        keel_error_t err = { "" };
        keel_env_t *env =
            frame ? keel_wire_decode (zframe_data (frame), zframe_size (frame), &err) : NULL;
        zframe_destroy (&frame);
        if (!env || !zlistx_add_end (self->backlog, env)) {
            fprintf (stderr, "fake broker: cannot expand a ResultBatch: %s\n", err.text);
            abort ();
        }
    }
}

keel_env_t *
fake_broker_recv (fake_broker_t *self, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        keel_env_t *queued = zlistx_first (self->backlog);
        if (queued) {
            zlistx_detach_cur (self->backlog);
            return queued;
        }
        int64_t now = zclock_mono ();
        if (self->keepalive_ms && self->peer && now - self->last_sent >= self->keepalive_ms)
            fake_broker_send_heartbeat (self);
        if (now >= deadline)
            return NULL;
        int64_t wait = deadline - now;
        if (self->keepalive_ms && wait > self->keepalive_ms / 2)
            wait = self->keepalive_ms / 2;
        zmq_pollitem_t item = { zsock_resolve (self->router), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) wait) <= 0)
            continue;
        zmsg_t *msg = zmsg_recv (self->router);
        if (!msg)
            continue;
        keel_env_t *env = NULL;
        if (zmsg_size (msg) == 2) {
            zframe_t *id = zmsg_first (msg);
            zframe_t *payload = zmsg_next (msg);
            keel_error_t err = { "" };
            env = keel_wire_decode (zframe_data (payload), zframe_size (payload), &err);
            if (!env)
                fprintf (stderr, "fake broker: unreadable message from the program: %s\n",
                         err.text);
            if (env
                && (env->body_case == KEEL__ENVELOPE__BODY_ENGINE_LOGIN
                    || env->body_case == KEEL__ENVELOPE__BODY_DRIVER_HELLO)) {
                zframe_destroy (&self->peer);
                self->peer = zframe_dup (id);
                self->logins++;
            }
        }
        zmsg_destroy (&msg);
        if (env && env->body_case == KEEL__ENVELOPE__BODY_RESULT_BATCH) {
            self->result_batches++;
            if (!self->keep_batches) {
                s_expand (self, env);
                keel_wire_free (&env);
                continue; // handed out from the backlog
            }
        }
        if (env)
            return env;
        self->unreadable++;
    }
}

keel_env_t *
fake_broker_expect (fake_broker_t *self, Keel__Envelope__BodyCase body, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    int64_t left;
    while ((left = deadline - zclock_mono ()) > 0) {
        keel_env_t *env = fake_broker_recv (self, (int) left);
        if (env && env->body_case == body)
            return env;
        keel_wire_free (&env);
    }
    return NULL;
}
