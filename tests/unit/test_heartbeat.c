/*  test_heartbeat.c — peer liveness clock and reconnect backoff, with driven time. */
#include <criterion/criterion.h>

#include "heartbeat.h"

Test (peer_clock, owes_no_heartbeat_before_one_interval)
{
    keel_peer_clock_t pc;
    keel_peer_clock_init (&pc, 1000, 3, 5000);
    cr_expect_not (keel_peer_clock_heartbeat_due (&pc, 5000));
    cr_expect_not (keel_peer_clock_heartbeat_due (&pc, 5999));
    cr_expect (keel_peer_clock_heartbeat_due (&pc, 6000));
}

Test (peer_clock, restarts_the_heartbeat_interval_after_sending)
{
    keel_peer_clock_t pc;
    keel_peer_clock_init (&pc, 1000, 3, 0);
    keel_peer_clock_sent (&pc, 900);
    cr_expect_not (keel_peer_clock_heartbeat_due (&pc, 1000));
    cr_expect_not (keel_peer_clock_heartbeat_due (&pc, 1899));
    cr_expect (keel_peer_clock_heartbeat_due (&pc, 1900));
}

Test (peer_clock, does_not_count_received_traffic_as_sent)
{
    keel_peer_clock_t pc;
    keel_peer_clock_init (&pc, 1000, 3, 0);
    keel_peer_clock_received (&pc, 999);
    cr_expect (keel_peer_clock_heartbeat_due (&pc, 1000));
}

Test (peer_clock, loses_the_peer_after_liveness_silent_intervals)
{
    keel_peer_clock_t pc;
    keel_peer_clock_init (&pc, 1000, 3, 0);
    cr_expect_not (keel_peer_clock_lost (&pc, 2999));
    cr_expect (keel_peer_clock_lost (&pc, 3000));
}

Test (peer_clock, keeps_the_peer_alive_on_any_received_message)
{
    keel_peer_clock_t pc;
    keel_peer_clock_init (&pc, 1000, 3, 0);
    keel_peer_clock_received (&pc, 2500);
    cr_expect_not (keel_peer_clock_lost (&pc, 3000));
    cr_expect_not (keel_peer_clock_lost (&pc, 5499));
    cr_expect (keel_peer_clock_lost (&pc, 5500));
}

Test (peer_clock, does_not_count_sending_as_hearing_from_the_peer)
{
    keel_peer_clock_t pc;
    keel_peer_clock_init (&pc, 1000, 3, 0);
    keel_peer_clock_sent (&pc, 2900);
    cr_expect (keel_peer_clock_lost (&pc, 3000));
}

Test (peer_clock, honours_a_liveness_of_one)
{
    keel_peer_clock_t pc;
    keel_peer_clock_init (&pc, 250, 1, 100);
    cr_expect_not (keel_peer_clock_lost (&pc, 349));
    cr_expect (keel_peer_clock_lost (&pc, 350));
}

Test (peer_clock, reports_the_heartbeat_as_the_next_deadline)
{
    keel_peer_clock_t pc;
    keel_peer_clock_init (&pc, 1000, 3, 10000);
    cr_expect_eq (keel_peer_clock_next_deadline (&pc), 11000);
    keel_peer_clock_sent (&pc, 10400);
    cr_expect_eq (keel_peer_clock_next_deadline (&pc), 11400);
}

Test (peer_clock, reports_the_loss_when_it_comes_before_the_heartbeat)
{
    keel_peer_clock_t pc;
    keel_peer_clock_init (&pc, 1000, 3, 0);
    keel_peer_clock_sent (&pc, 2500);
    cr_expect_eq (keel_peer_clock_next_deadline (&pc), 3000);
}

Test (backoff, starts_near_the_initial_delay)
{
    keel_backoff_t b;
    keel_backoff_init (&b, 1000, 32000, 42);
    int64_t d = keel_backoff_next (&b);
    cr_expect_geq (d, 800);
    cr_expect_leq (d, 1200);
}

Test (backoff, doubles_each_attempt_up_to_the_cap)
{
    keel_backoff_t b;
    keel_backoff_init (&b, 1000, 32000, 7);
    int64_t expected[] = { 1000, 2000, 4000, 8000, 16000, 32000, 32000, 32000 };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        cr_expect_eq (b.current_ms, expected[i], "attempt %zu: current %lld", i,
                      (long long) b.current_ms);
        keel_backoff_next (&b);
    }
    cr_expect_eq (b.current_ms, 32000);
}

Test (backoff, stops_at_a_cap_that_is_not_a_power_of_two)
{
    keel_backoff_t b;
    keel_backoff_init (&b, 1000, 5000, 7);
    for (int i = 0; i < 10; i++)
        keel_backoff_next (&b);
    cr_expect_eq (b.current_ms, 5000);
}

Test (backoff, keeps_jitter_within_twenty_percent)
{
    keel_backoff_t b;
    keel_backoff_init (&b, 1000, 32000, 12345);
    for (int i = 0; i < 2000; i++) {
        int64_t base = b.current_ms;
        int64_t d = keel_backoff_next (&b);
        cr_assert_geq (d, base - base / 5, "delay %lld below base %lld", (long long) d,
                       (long long) base);
        cr_assert_leq (d, base + base / 5, "delay %lld above base %lld", (long long) d,
                       (long long) base);
    }
}

Test (backoff, actually_varies_the_delay)
{
    keel_backoff_t b;
    keel_backoff_init (&b, 10000, 10000, 99);
    int64_t first = keel_backoff_next (&b);
    bool varied = false;
    for (int i = 0; i < 50 && !varied; i++)
        varied = keel_backoff_next (&b) != first;
    cr_expect (varied);
}

Test (backoff, gives_different_sequences_for_different_seeds)
{
    keel_backoff_t a, b;
    keel_backoff_init (&a, 10000, 10000, 1);
    keel_backoff_init (&b, 10000, 10000, 2);
    bool differ = false;
    for (int i = 0; i < 20 && !differ; i++)
        differ = keel_backoff_next (&a) != keel_backoff_next (&b);
    cr_expect (differ);
}

Test (backoff, works_with_a_zero_seed)
{
    keel_backoff_t b;
    keel_backoff_init (&b, 1000, 4000, 0);
    cr_expect_neq (b.rng, 0);
    int64_t d = keel_backoff_next (&b);
    cr_expect_geq (d, 800);
    cr_expect_leq (d, 1200);
}

Test (backoff, returns_to_the_initial_delay_after_reset)
{
    keel_backoff_t b;
    keel_backoff_init (&b, 1000, 32000, 5);
    for (int i = 0; i < 6; i++)
        keel_backoff_next (&b);
    keel_backoff_reset (&b);
    cr_expect_eq (b.current_ms, 1000);
    int64_t d = keel_backoff_next (&b);
    cr_expect_geq (d, 800);
    cr_expect_leq (d, 1200);
    cr_expect_eq (b.current_ms, 2000);
}
