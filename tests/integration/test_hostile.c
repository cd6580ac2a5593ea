/*  test_hostile.c — garbage on the broker's endpoint is counted and dropped;
    the broker keeps serving.
*/
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "keel.pb-c.h"

#define RANDOM_FRAMES        5000
#define TRUNCATED_FRAMES     5000
#define MULTI_FRAME_MESSAGES 10

static uint32_t
s_rand (uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

// A valid DriverHello envelope; its body is the last field, so every strict
// prefix of it is invalid (either a cut field or no body).
static size_t
s_valid_hello (uint8_t *buf, size_t size)
{
    Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
    hello.driver_id = "hostile-test-driver";
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    env.has_version = true;
    env.version = 1;
    env.has_sender = true;
    env.sender = KEEL__SENDER_KIND__SENDER_DRIVER;
    env.has_seq = true;
    env.seq = 1;
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
    env.driver_hello = &hello;
    size_t len = keel__envelope__get_packed_size (&env);
    cr_assert_leq (len, size);
    return keel__envelope__pack (&env, buf);
}

typedef struct {
    const harness_broker_t *broker;
    long long want;
    long long seen;
} s_counter_wait_t;

static bool
s_malformed_counted (void *arg)
{
    s_counter_wait_t *w = arg;
    return harness_status_int (w->broker, "counters.malformed_messages", &w->seen)
           && w->seen >= w->want;
}

static void
s_raw_tcp_garbage (int port, uint32_t *rng)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    cr_assert_geq (fd, 0);
    struct sockaddr_in addr;
    memset (&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    addr.sin_port = htons ((uint16_t) port);
    if (connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0) {
        uint8_t junk[4096];
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (uint8_t) s_rand (rng);
        ssize_t n = write (fd, junk, sizeof junk);
        (void) n;
    }
    close (fd);
}

Test (hostile, broker_counts_and_survives_ten_thousand_malformed_frames, .init = harness_setup,
      .fini = harness_teardown, .timeout = 120)
{
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", NULL), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 2, NULL) > 0,
                    "engine1 did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online within 15 s");

    long long before = 0;
    HARNESS_ASSERT (harness_status_int (&broker, "counters.malformed_messages", &before),
                    "status has no counters.malformed_messages");

    uint32_t seed = (uint32_t) getpid () * 2654435761u | 1u;
    uint32_t rng = seed;
    cr_log_info ("hostile frames seed %u", seed);

    // Plain libzmq: this test is a foreign client, not a Keel program.
    void *ctx = zmq_ctx_new ();
    cr_assert_not_null (ctx);
    void *dealer = zmq_socket (ctx, ZMQ_DEALER);
    cr_assert_not_null (dealer);
    int linger = 2000;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    int sndtimeo = 10000;
    zmq_setsockopt (dealer, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    cr_assert_eq (zmq_connect (dealer, broker.endpoint), 0);

    uint8_t frame[512];
    long sent = 0;
    for (int i = 0; i < RANDOM_FRAMES; i++) {
        size_t len = s_rand (&rng) % 200;
        for (size_t k = 0; k < len; k++)
            frame[k] = (uint8_t) s_rand (&rng);
        // Some frames start like an envelope (field 1 = version 1) to reach
        // deeper into the decoder.
        if (len >= 2 && i % 3 == 0) {
            frame[0] = 0x08;
            frame[1] = 0x01;
        }
        cr_assert_eq (zmq_send (dealer, frame, len, 0), (int) len, "send failed: %s",
                      zmq_strerror (zmq_errno ()));
        sent++;
    }
    uint8_t hello[256];
    size_t hello_len = s_valid_hello (hello, sizeof hello);
    for (int i = 0; i < TRUNCATED_FRAMES; i++) {
        size_t len = s_rand (&rng) % hello_len;
        cr_assert_eq (zmq_send (dealer, hello, len, 0), (int) len);
        sent++;
    }
    // Messages of more than one frame are malformed even when each frame is valid.
    for (int i = 0; i < MULTI_FRAME_MESSAGES; i++) {
        cr_assert_eq (zmq_send (dealer, hello, hello_len, ZMQ_SNDMORE), (int) hello_len);
        cr_assert_eq (zmq_send (dealer, hello, hello_len, 0), (int) hello_len);
    }
    s_raw_tcp_garbage (broker.port, &rng);
    s_raw_tcp_garbage (broker.admin_port, &rng);

    s_counter_wait_t w = { &broker, before + sent, 0 };
    HARNESS_ASSERT (harness_poll_until (s_malformed_counted, &w, 20000),
                    "malformed_messages is %lld, expected at least %lld", w.seen, w.want);
    zmq_close (dealer);
    zmq_ctx_term (ctx);

    HARNESS_ASSERT (harness_alive (broker.pid), "keel-broker died under malformed input");
    const char *argv[] = { "--broker", broker.endpoint, "submit", "--service",
                           "double",   "--range",       "0:100",  NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 0, "a batch after the garbage failed: exit %d; stderr:\n%s",
                    res.code, res.err);
    long lines = 0;
    for (const char *p = res.out; *p; p++)
        lines += *p == '\n';
    cr_assert_eq (lines, 100, "expected 100 results after the garbage, got %ld", lines);
    harness_result_free (&res);

    char err_path[512];
    long log_lines = harness_count_lines (harness_path (err_path, sizeof err_path, "broker.err"));
    cr_assert_lt (log_lines, 2000,
                  "broker logged %ld lines: malformed messages are not rate-limited", log_lines);
    HARNESS_ASSERT (harness_alive (broker.pid), "keel-broker died");
}
