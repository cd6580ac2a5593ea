/*  fake_broker.h — a scripted broker for integration tests.

    A ROUTER on a free loopback port, driven by the test thread, so a test
    can put keel-engine or keel-driver into states the real broker makes hard
    to reach (a reply that crosses a finishing task, a flood of Assigns) or
    feed it what no broker should send. The program's latest EngineLogin or
    DriverHello makes its sender the peer everything is sent to.

    An engine sends the Results that end in one turn together, as one
    ResultBatch: unless keep_batches is set, fake_broker_recv hands such a
    batch out as its Results, one by one and in order, so a test sees the
    same Results whether or not they were batched.

    ROUTER_MANDATORY is on (a vanished peer counts as a send failure, not
    silence); high-water marks are unbounded so floods are delivered whole.
    The test owns the object: create it in the test, destroy it at teardown.
*/
#ifndef KEEL_FAKE_BROKER_H
#define KEEL_FAKE_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <czmq.h>

#include "harness.h"
#include "wire.h"

typedef struct {
    zsock_t *router;
    harness_broker_t b; // b.endpoint is where programs connect (harness_engine_start)
    zframe_t *peer;     // routing id of the program's latest login or hello
    int logins;         // EngineLogin / DriverHello received
    long unreadable;    // messages from the program that did not decode
    long send_failures; // sends the ROUTER refused (peer gone)
    uint64_t seq;
    int64_t keepalive_ms; // send a Heartbeat when idle this long; 0 = never
    int64_t last_sent;
    bool keep_batches;   // hand out a ResultBatch as it came (default: its Results)
    long result_batches; // ResultBatch messages received
    zlistx_t *backlog;   // Results of a ResultBatch not handed out yet
} fake_broker_t;

// A fake broker bound on a free loopback port, nobody connected yet;
// keepalive_ms starts at 300. NULL when no port could be bound.
fake_broker_t *fake_broker_new (void);
void fake_broker_destroy (fake_broker_t **self_p);

// Sends one message [peer][data[0]]...[data[n-1]]. False when there is no
// peer yet or the ROUTER refused it.
bool fake_broker_send_frames (fake_broker_t *self, int n, const void *const data[],
                              const size_t size[]);
bool fake_broker_send_raw (fake_broker_t *self, const void *data, size_t size);
// Encodes env (fills in seq) into a new frame; aborts when out of memory.
zframe_t *fake_broker_encode (fake_broker_t *self, keel_env_t *env);
bool fake_broker_send (fake_broker_t *self, keel_env_t *env);
bool fake_broker_send_heartbeat (fake_broker_t *self);

// The next message from the program within timeout_ms (keep-alive
// heartbeats meanwhile); free with keel_wire_free. NULL at the deadline.
// A ResultBatch comes out as its Results unless keep_batches is set.
keel_env_t *fake_broker_recv (fake_broker_t *self, int timeout_ms);
// Receives until a message with this body arrives (others are dropped).
keel_env_t *fake_broker_expect (fake_broker_t *self, Keel__Envelope__BodyCase body, int timeout_ms);

#endif
