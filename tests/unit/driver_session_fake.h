/*  driver_session_fake.h — what the driver-session tests share
    (test_driver_session.c, test_driver_session_pair.c): configured brokers
    and a session over them with fixed timings and seed, and lookups of the
    actions a step returned. Header-only: static functions, one copy per
    test program. */
#ifndef KEEL_TEST_DRIVER_SESSION_FAKE_H
#define KEEL_TEST_DRIVER_SESSION_FAKE_H

#include <stdbool.h>

#include "../../driver/session.h"

#define S_A "tcp://primary:1"
#define S_B "tcp://backup:1"

static const char *s_brokers[] = { S_A, S_B, "tcp://third:1" };

// A session over the first nbrokers of s_brokers: DSBrokerTimeout 10 s,
// primary retry 5 s, heartbeat 1 s.
static inline keel_session_t *
s_session (int nbrokers, int64_t now)
{
    keel_session_config_t config = { .nbrokers = nbrokers,
                                     .brokers = s_brokers,
                                     .broker_timeout_ms = 10000,
                                     .primary_retry_ms = 5000,
                                     .heartbeat_ms = 1000,
                                     .seed = 7 };
    return keel_session_new (&config, now);
}

// Index of the first action `what` in out, or -1.
static inline int
s_find (const keel_session_out_t *out, keel_session_do_t what)
{
    for (int i = 0; i < out->count; i++)
        if (out->actions[i].what == what)
            return i;
    return -1;
}

static inline bool
s_has (const keel_session_out_t *out, keel_session_do_t what)
{
    return s_find (out, what) >= 0;
}

#endif
