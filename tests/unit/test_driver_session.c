/*  test_driver_session.c — the driver ↔ broker session state machine,
    driven with invented times (no sockets). */
#include <criterion/criterion.h>
#include <string.h>

#include "driver_session_fake.h"

//  Ticks every 100 ms from *now up to until; returns true at the first
//  step that emits `what` (out holds that step).
static bool
s_tick_until (keel_session_t *s, int64_t *now, int64_t until, keel_session_do_t what,
              keel_session_out_t *out)
{
    for (; *now <= until; *now += 100) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, *now, out);
        if (s_has (out, what))
            return true;
    }
    return false;
}

static keel_session_t *
s_ready (int nbrokers, int64_t *now)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (nbrokers, *now);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, *now, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 1000, *now, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    return s;
}

Test (driver_session, connects_to_the_primary_first)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert_eq (out.count, 2, "connect, and say so");
    cr_assert_eq (out.actions[0].what, KEEL_SESSION_DO_CONNECT);
    cr_assert_eq (out.actions[0].broker, 0);
    cr_assert_eq (out.actions[1].what, KEEL_SESSION_DO_STATUS);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_CONNECTING);
    keel_session_destroy (&s);
    cr_assert_null (s);
}

Test (driver_session, resyncs_and_reports_connected_on_welcome)
{
    keel_session_out_t out;
    keel_session_t *s = s_session (1, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 500, 10, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    cr_assert (s_has (&out, KEEL_SESSION_DO_RESYNC));
    int i = s_find (&out, KEEL_SESSION_DO_STATUS);
    cr_assert_eq (out.actions[i].status, KEEL_SESSION_STATUS_CONNECTED);
    cr_assert_eq (keel_session_heartbeat_ms (s), 500, "adopts the broker's heartbeat");
    keel_session_destroy (&s);
}

Test (driver_session, heartbeats_when_idle_for_one_interval)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (1, &now);
    keel_session_sent (s, 0);
    keel_session_received (s, 900);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 900, &out);
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_HEARTBEAT));
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 1000, &out);
    cr_assert (s_has (&out, KEEL_SESSION_DO_HEARTBEAT));
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    keel_session_destroy (&s);
}

Test (driver_session, retries_the_same_broker_with_a_fresh_socket_after_three_silent_intervals)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (2, &now);
    keel_session_received (s, 0);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 2900, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_CONNECTING);
    int i = s_find (&out, KEEL_SESSION_DO_CONNECT);
    cr_assert_geq (i, 0);
    cr_assert_eq (out.actions[i].broker, 0, "the same broker first");
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED),
                   "same broker keeps accepted flags");
    i = s_find (&out, KEEL_SESSION_DO_STATUS);
    cr_assert_eq (out.actions[i].status, KEEL_SESSION_STATUS_LOST);
    //  Keeps re-helloing it, not the backup, within DSBrokerTimeout.
    now = 3000;
    cr_assert (s_tick_until (s, &now, 12900, KEEL_SESSION_DO_CONNECT, &out));
    cr_assert_eq (out.actions[s_find (&out, KEEL_SESSION_DO_CONNECT)].broker, 0);
    keel_session_destroy (&s);
}

Test (driver_session, reports_reconnected_when_the_same_broker_answers)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (2, &now);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, 4000, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    cr_assert_eq (keel_session_broker (s), 0);
    cr_assert_eq (out.actions[s_find (&out, KEEL_SESSION_DO_STATUS)].status,
                  KEEL_SESSION_STATUS_RECONNECTED);
    keel_session_destroy (&s);
}

//  Issue 12: DSBrokerTimeout counts from the broker's last message (here
//  the welcome at 0), not from the loss noticed 3·H later: the move comes
//  at 10 s, where it came at 13 s before.
Test (driver_session, fails_over_to_the_next_broker_after_the_broker_timeout)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (2, &now);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out); // lost at 3 s
    int64_t moved_at = -1;
    for (now = 3100; now <= 13000 && moved_at < 0; now += 100) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        int i = s_find (&out, KEEL_SESSION_DO_CONNECT);
        if (i >= 0 && out.actions[i].broker == 1)
            moved_at = now;
    }
    cr_assert_eq (moved_at, 10000,
                  "moved to the backup at %lld ms, not DSBrokerTimeout after "
                  "the broker's last message",
                  (long long) moved_at);
    cr_assert (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED), "a new broker accepted nothing yet");
    cr_assert_lt (s_find (&out, KEEL_SESSION_DO_FORGET_ACCEPTED),
                  s_find (&out, KEEL_SESSION_DO_CONNECT));
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_GIVE_UP), "the backup is still to try");
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, now, &out);
    cr_assert_eq (out.actions[s_find (&out, KEEL_SESSION_DO_STATUS)].status,
                  KEEL_SESSION_STATUS_FAILOVER);
    cr_assert (strstr (out.actions[s_find (&out, KEEL_SESSION_DO_STATUS)].text, "tcp://backup:1"));
    keel_session_destroy (&s);
}

Test (driver_session, gives_up_once_after_a_whole_pass_without_an_answer)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_session (2, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert_not (s_tick_until (s, &now, 9900, KEEL_SESSION_DO_GIVE_UP, &out));
    cr_assert (s_tick_until (s, &now, 20000, KEEL_SESSION_DO_GIVE_UP, &out));
    cr_assert_geq (now, 20000, "primary and backup had DSBrokerTimeout each");
    //  It keeps trying: the primary again.
    cr_assert_eq (out.actions[s_find (&out, KEEL_SESSION_DO_CONNECT)].broker, 0);
    now += 100;
    cr_assert_not (s_tick_until (s, &now, 29900, KEEL_SESSION_DO_GIVE_UP, &out));
    keel_session_destroy (&s);
}

Test (driver_session, with_one_broker_gives_up_after_the_broker_timeout)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_session (1, 0);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert (s_tick_until (s, &now, 10000, KEEL_SESSION_DO_GIVE_UP, &out));
    cr_assert_eq (now, 10000);
    keel_session_destroy (&s);
}

Test (driver_session, probes_the_primary_from_a_failover_broker_and_moves_back)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (2, &now);
    //  Lose the primary, fail over to the backup.
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    now = 13000;
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
    cr_assert_eq (keel_session_broker (s), 1);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, now, &out);
    //  Probe after DSPrimaryRetryInterval (5 s); keep the backup alive meanwhile.
    bool probed = false;
    for (now = 13100; now <= 18100 && !probed; now += 100) {
        keel_session_received (s, now);
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        probed = s_has (&out, KEEL_SESSION_DO_PROBE_OPEN);
    }
    cr_assert (probed);
    cr_assert_geq (now, 18000);
    keel_session_step (s, KEEL_SESSION_EV_PROBE_WELCOME, 0, now, &out);
    cr_assert_eq (keel_session_broker (s), 0);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    int adopt = s_find (&out, KEEL_SESSION_DO_ADOPT_PROBE);
    int forget = s_find (&out, KEEL_SESSION_DO_FORGET_ACCEPTED);
    int resync = s_find (&out, KEEL_SESSION_DO_RESYNC);
    int tell = s_find (&out, KEEL_SESSION_DO_TELL_DELIVERED);
    int detach = s_find (&out, KEEL_SESSION_DO_DETACH_OLD);
    cr_assert (adopt >= 0 && adopt < forget && forget < resync && resync < detach,
               "hello + resubmit on the primary, then Detach to the backup");
    cr_assert (resync < tell && tell < detach,
               "the primary hears which results the driver holds before the backup lets go");
    cr_assert_eq (out.actions[s_find (&out, KEEL_SESSION_DO_STATUS)].status,
                  KEEL_SESSION_STATUS_FAILBACK);
    keel_session_destroy (&s);
}

Test (driver_session, closes_an_unanswered_probe_and_tries_again_later)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (2, &now);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 13000, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, 13000, &out);
    int opened = 0, closed = 0;
    for (now = 13100; now <= 30000; now += 100) {
        keel_session_received (s, now);
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        opened += s_has (&out, KEEL_SESSION_DO_PROBE_OPEN);
        closed += s_has (&out, KEEL_SESSION_DO_PROBE_CLOSE);
    }
    cr_assert_eq (opened, 3, "a probe every 5 s");
    cr_assert_geq (closed, 2);
    cr_assert_eq (keel_session_broker (s), 1);
    keel_session_destroy (&s);
}

Test (driver_session, ignores_a_probe_welcome_when_no_probe_is_open)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (2, &now);
    keel_session_step (s, KEEL_SESSION_EV_PROBE_WELCOME, 0, 100, &out);
    cr_assert_eq (out.count, 0);
    cr_assert_eq (keel_session_broker (s), 0);
    keel_session_destroy (&s);
}

Test (driver_session, says_hello_again_on_relogin)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (1, &now);
    keel_session_step (s, KEEL_SESSION_EV_RELOGIN, 0, 200, &out);
    cr_assert (s_has (&out, KEEL_SESSION_DO_HELLO));
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_CONNECT));
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_CONNECTING);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, 300, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_READY);
    keel_session_destroy (&s);
}

Test (driver_session, never_waits_past_its_next_deadline)
{
    int64_t now = 0;
    keel_session_t *s = s_ready (2, &now);
    keel_session_sent (s, 0);
    int64_t next = keel_session_next_deadline (s);
    cr_assert_leq (next, 1000, "heartbeat due after H");
    keel_session_destroy (&s);
}

//  Issue 10 item 11: after every welcome — first connect, reconnect,
//  failover, failback — the broker is told which results the driver holds
//  (TELL_DELIVERED) right after the resync, on the broker that welcomed.
Test (driver_session, tells_each_welcoming_broker_which_results_the_driver_holds)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_session (2, now);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, now, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 1000, now, &out);
    int resync = s_find (&out, KEEL_SESSION_DO_RESYNC);
    int tell = s_find (&out, KEEL_SESSION_DO_TELL_DELIVERED);
    cr_assert (resync >= 0 && tell == resync + 1, "no TELL_DELIVERED right after the first resync");
    cr_assert_eq (out.actions[tell].broker, 0);
    //  A welcome while READY (after a Relogin) resyncs and tells again.
    keel_session_step (s, KEEL_SESSION_EV_RELOGIN, 0, now, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, now, &out);
    cr_assert_eq (s_find (&out, KEEL_SESSION_DO_TELL_DELIVERED),
                  s_find (&out, KEEL_SESSION_DO_RESYNC) + 1);
    //  Failover: the backup is told too.
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 13000, &out);
    cr_assert_eq (keel_session_broker (s), 1);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, 13000, &out);
    tell = s_find (&out, KEEL_SESSION_DO_TELL_DELIVERED);
    cr_assert (tell >= 0, "the failover broker is not told");
    cr_assert_eq (out.actions[tell].broker, 1);
    //  Ticks and heartbeats tell nothing.
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 13500, &out);
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_TELL_DELIVERED));
    keel_session_destroy (&s);
}

//  The failover broker went quiet (it judged a paused driver lost) and the
//  session is retrying it when the primary answers the probe: the failover
//  broker still gets Detach (after the hello on that socket), or it keeps
//  the service and its engines keep the tasks there while the primary runs
//  them again.
Test (driver_session, a_failback_while_retrying_the_failover_broker_still_detaches_from_it)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (2, &now);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    now = 13000;
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, now, &out);
    cr_assert_eq (keel_session_broker (s), 1);
    //  The backup goes silent: the session retries it (CONNECTING) and
    //  probes the primary meanwhile.
    bool probed = false, lost = false;
    for (now = 13100; now <= 30000 && !probed; now += 100) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        lost = lost || s_has (&out, KEEL_SESSION_DO_CONNECT);
        probed = lost && s_has (&out, KEEL_SESSION_DO_PROBE_OPEN);
    }
    cr_assert (probed, "no probe of the primary while retrying the backup");
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_CONNECTING);
    cr_assert_eq (keel_session_broker (s), 1);
    keel_session_step (s, KEEL_SESSION_EV_PROBE_WELCOME, 0, now, &out);
    cr_assert_eq (keel_session_broker (s), 0);
    int detach = s_find (&out, KEEL_SESSION_DO_DETACH_OLD);
    int close = s_find (&out, KEEL_SESSION_DO_CLOSE_OLD);
    cr_assert (detach >= 0, "no Detach to the backup it was retrying");
    cr_assert_eq (out.actions[detach].broker, 1);
    cr_assert (detach < close, "Detach after the socket was closed");
    keel_session_destroy (&s);
}

// ---------------------------------------------------------------- saying what it does

static keel_session_t *
s_session_timeout (int nbrokers, int64_t broker_timeout_ms)
{
    keel_session_config_t config = { .nbrokers = nbrokers,
                                     .brokers = s_brokers,
                                     .broker_timeout_ms = broker_timeout_ms,
                                     .primary_retry_ms = 5000,
                                     .heartbeat_ms = 1000,
                                     .seed = 7 };
    return keel_session_new (&config, 0);
}

//  The STATUS action of kind `status` in out, or NULL.
static const keel_session_action_t *
s_status_of (const keel_session_out_t *out, keel_session_status_t status)
{
    for (int i = 0; i < out->count; i++)
        if (out->actions[i].what == KEEL_SESSION_DO_STATUS && out->actions[i].status == status)
            return &out->actions[i];
    return NULL;
}

Test (driver_session, says_at_once_which_broker_it_connects_to_and_for_how_long)
{
    keel_session_out_t out;
    keel_session_t *s = s_session_timeout (2, 300000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    const keel_session_action_t *a = s_status_of (&out, KEEL_SESSION_STATUS_CONNECTING);
    cr_assert_not_null (a, "no status at START");
    cr_assert_str_eq (a->text,
                      "connecting to tcp://primary:1, retrying for 5 min (DSBrokerTimeout), "
                      "then tcp://backup:1");
    keel_session_destroy (&s);
    s = s_session_timeout (1, 2000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    a = s_status_of (&out, KEEL_SESSION_STATUS_CONNECTING);
    cr_assert_str_eq (a->text, "connecting to tcp://primary:1, retrying for 2 s (DSBrokerTimeout)");
    keel_session_destroy (&s);
}

//  Ticks every 100 ms over [from, until) and counts "still connecting"
//  lines; *first and *last get the times of the first and last one.
static int
s_count_progress (keel_session_t *s, int64_t from, int64_t until, int64_t *first, int64_t *last,
                  int64_t *min_gap)
{
    keel_session_out_t out;
    int n = 0;
    *first = *last = -1;
    *min_gap = INT64_MAX;
    for (int64_t now = from; now < until; now += 100) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        if (s_status_of (&out, KEEL_SESSION_STATUS_STILL_CONNECTING)) {
            if (*last >= 0 && now - *last < *min_gap)
                *min_gap = now - *last;
            if (*first < 0)
                *first = now;
            *last = now;
            n++;
        }
    }
    return n;
}

Test (driver_session, repeats_what_it_does_every_30_s_while_no_broker_answers)
{
    keel_session_out_t out;
    keel_session_t *s = s_session_timeout (1, 300000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    int64_t first, last, gap;
    int n = s_count_progress (s, 100, 300000, &first, &last, &gap);
    cr_assert_eq (n, 9, "every 30 s within 5 min: %d lines", n);
    cr_assert_eq (first, 30000);
    cr_assert_eq (gap, 30000);
    keel_session_destroy (&s);
}

Test (driver_session, repeats_sooner_for_a_short_broker_timeout_but_not_more_than_once_a_second)
{
    keel_session_out_t out;
    int64_t first, last, gap;
    keel_session_t *s = s_session_timeout (1, 9000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert_eq (s_count_progress (s, 100, 9000, &first, &last, &gap), 2);
    cr_assert_eq (first, 3000, "DSBrokerTimeout/3");
    keel_session_destroy (&s);
    s = s_session_timeout (1, 2000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert_eq (s_count_progress (s, 100, 2000, &first, &last, &gap), 1);
    cr_assert_eq (first, 1000, "at least 1 s apart");
    keel_session_destroy (&s);
    s = s_session_timeout (1, 500);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    cr_assert_eq (s_count_progress (s, 100, 500, &first, &last, &gap), 0);
    keel_session_destroy (&s);
}

Test (driver_session, progress_line_says_how_long_so_far_and_how_long_more)
{
    keel_session_out_t out;
    keel_session_t *s = s_session_timeout (2, 300000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 30007, &out); // a tick that came late
    const keel_session_action_t *a = s_status_of (&out, KEEL_SESSION_STATUS_STILL_CONNECTING);
    cr_assert_not_null (a);
    cr_assert_str_eq (a->text,
                      "still connecting to tcp://primary:1 after 30 s; retrying for 4 min 30 s "
                      "more (DSBrokerTimeout 5 min), then tcp://backup:1");
    keel_session_destroy (&s);
}

Test (driver_session, the_first_poll_deadline_wakes_it_for_the_progress_line)
{
    keel_session_out_t out;
    keel_session_t *s = s_session_timeout (1, 300000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    //  Step only at the deadlines the actor would wait for.
    int64_t now = 0;
    bool said = false;
    for (int i = 0; i < 100 && !said && now < 30000; i++) {
        now = keel_session_next_deadline (s);
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        said = s_status_of (&out, KEEL_SESSION_STATUS_STILL_CONNECTING) != NULL;
    }
    cr_assert (said);
    cr_assert_eq (now, 30000, "the line came at %lld ms", (long long) now);
    keel_session_destroy (&s);
}

Test (driver_session, says_it_moves_to_the_failover_broker_then_reports_progress_there)
{
    keel_session_out_t out;
    keel_session_t *s = s_session_timeout (2, 9000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    int64_t now = 100;
    cr_assert (s_tick_until (s, &now, 9000, KEEL_SESSION_DO_FORGET_ACCEPTED, &out));
    const keel_session_action_t *a = s_status_of (&out, KEEL_SESSION_STATUS_TRYING);
    cr_assert_not_null (a);
    cr_assert_str_eq (a->text,
                      "tcp://primary:1 did not answer for 9 s; connecting to tcp://backup:1, "
                      "retrying for 9 s (DSBrokerTimeout)");
    cr_assert_null (s_status_of (&out, KEEL_SESSION_STATUS_STILL_CONNECTING),
                    "no progress line for the broker it just left");
    bool said = false;
    for (now += 100; now <= 12000 && !said; now += 100) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        a = s_status_of (&out, KEEL_SESSION_STATUS_STILL_CONNECTING);
        said = a != NULL;
    }
    cr_assert (said);
    cr_assert (strstr (a->text, "still connecting to tcp://backup:1 after 3 s"), "%s", a->text);
    keel_session_destroy (&s);
}

Test (driver_session, stops_reporting_progress_once_a_broker_answers)
{
    keel_session_out_t out;
    keel_session_t *s = s_session_timeout (1, 9000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 1000, 500, &out);
    int64_t first, last, gap;
    for (int64_t now = 600; now < 9000; now += 100) {
        keel_session_received (s, now);
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        cr_assert_null (s_status_of (&out, KEEL_SESSION_STATUS_STILL_CONNECTING));
    }
    //  Lost later: the retry says for how long more — DSBrokerTimeout
    //  counts from the last message, at 8.9 s — and progress resumes.
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 12000, &out);
    const keel_session_action_t *a = s_status_of (&out, KEEL_SESSION_STATUS_LOST);
    cr_assert_not_null (a);
    cr_assert_str_eq (
        a->text,
        "lost tcp://primary:1 (silent for 3.1 s); retrying for 5.9 s more (DSBrokerTimeout 9 s)");
    cr_assert_eq (s_count_progress (s, 12100, 17900, &first, &last, &gap), 1);
    cr_assert_eq (first, 15000);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 17900, &out);
    cr_assert (s_has (&out, KEEL_SESSION_DO_GIVE_UP), "not given up 9 s after its last message");
    keel_session_destroy (&s);
}

// ---------------------------------------------------------------- when it moves (issue 12)

static keel_session_t *
s_session_hb (int nbrokers, int64_t broker_timeout_ms, int64_t heartbeat_ms)
{
    keel_session_config_t config = { .nbrokers = nbrokers,
                                     .brokers = s_brokers,
                                     .broker_timeout_ms = broker_timeout_ms,
                                     .primary_retry_ms = 60000,
                                     .heartbeat_ms = heartbeat_ms,
                                     .seed = 7 };
    return keel_session_new (&config, 0);
}

//  Welcomed at 0, the broker's last message at last; ticks every 10 ms
//  until the session moves to broker 1 and returns that time (-1: not by
//  until). *lost_p gets the tick that noticed the loss; out holds the
//  step that moved.
static int64_t
s_move_time (keel_session_t *s, int64_t last, int64_t until, int64_t *lost_p,
             keel_session_out_t *out)
{
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, 0, out);
    keel_session_received (s, last);
    *lost_p = -1;
    for (int64_t now = last; now <= until; now += 10) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, out);
        if (*lost_p < 0 && s_status_of (out, KEEL_SESSION_STATUS_LOST))
            *lost_p = now;
        int i = s_find (out, KEEL_SESSION_DO_CONNECT);
        if (i >= 0 && out->actions[i].broker == 1)
            return now;
    }
    return -1;
}

Test (driver_session, moves_dsbrokertimeout_after_the_last_message_not_after_the_loss)
{
    struct {
        int64_t last, lost, timeout, heartbeat, move;
    } cases[] = {
        //  W3(b): H 200 ms, DSBrokerTimeout 2 s: noticed at 600 ms, moves at 2 s.
        { 0, 600, 2000, 200, 2000 },
        { 1000, 1600, 2000, 200, 3000 },
        //  Defaults: H 1 s, 5 min: 3 s sooner than before.
        { 0, 3000, 300000, 1000, 300000 },
        //  The floor: at least H + 0.6 s after the loss was noticed ...
        { 0, 3000, 2000, 1000, 4600 },
        { 0, 3000, 4000, 1000, 4600 },
        { 0, 3000, 5000, 1000, 5000 },
        //  ... unless DSBrokerTimeout itself is shorter (then as before).
        { 0, 3000, 500, 1000, 3500 },
        { 0, 600, 50, 200, 650 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t move = keel_session_move_at (cases[i].last, cases[i].lost, cases[i].timeout,
                                             cases[i].heartbeat);
        cr_assert_eq (move, cases[i].move, "case %zu: %lld ms", i, (long long) move);
    }
}

Test (driver_session, never_moves_later_than_the_broker_timeout_after_the_loss)
{
    //  The rule before issue 12 is the upper bound; the floor the lower one.
    for (int64_t h = 50; h <= 5000; h += 150)
        for (int64_t t = 50; t <= 20000; t += 250)
            for (int64_t last = 0; last <= 3 * h; last += h) {
                int64_t lost = last + 3 * h;
                int64_t move = keel_session_move_at (last, lost, t, h);
                cr_assert_leq (move, lost + t);
                cr_assert_geq (move, last + t);
                cr_assert_geq (move, lost + (t < h + 600 ? t : h + 600));
            }
}

Test (driver_session, w3_failover_moves_two_seconds_after_the_broker_went_silent)
{
    keel_session_out_t out;
    int64_t lost;
    keel_session_t *s = s_session_hb (2, 2000, 200);
    int64_t moved = s_move_time (s, 1000, 10000, &lost, &out);
    cr_assert_eq (lost, 1600, "3·H of silence");
    cr_assert_eq (moved, 3000, "moved at %lld ms, not last message + DSBrokerTimeout",
                  (long long) moved);
    const keel_session_action_t *a = s_status_of (&out, KEEL_SESSION_STATUS_TRYING);
    cr_assert_not_null (a);
    cr_assert_str_eq (a->text, "tcp://primary:1 did not answer for 2 s; connecting to "
                               "tcp://backup:1, retrying for 2 s (DSBrokerTimeout)");
    keel_session_destroy (&s);
}

Test (driver_session, says_how_long_it_retries_after_a_loss_counting_from_the_last_message)
{
    keel_session_out_t out;
    keel_session_t *s = s_session_hb (2, 2000, 200);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, 0, &out);
    keel_session_received (s, 1000);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 1600, &out);
    const keel_session_action_t *a = s_status_of (&out, KEEL_SESSION_STATUS_LOST);
    cr_assert_not_null (a);
    cr_assert_str_eq (a->text, "lost tcp://primary:1 (silent for 600 ms); retrying for 1.4 s "
                               "more (DSBrokerTimeout 2 s), then tcp://backup:1");
    //  The progress line (every DSBrokerTimeout/3, at least 1 s) agrees.
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 2600, &out);
    a = s_status_of (&out, KEEL_SESSION_STATUS_STILL_CONNECTING);
    cr_assert_not_null (a);
    cr_assert_str_eq (a->text, "still connecting to tcp://primary:1 after 1.6 s; retrying for "
                               "400 ms more (DSBrokerTimeout 2 s), then tcp://backup:1");
    cr_assert_eq (keel_session_next_deadline (s), 3000, "the poll wakes for the move");
    keel_session_destroy (&s);
}

Test (driver_session, retries_at_least_h_plus_600_ms_after_noticing_the_loss)
{
    //  H 1 s, DSBrokerTimeout 2 s: the loss is noticed at 3 s, after
    //  DSBrokerTimeout; the same broker still gets 1.6 s, and the engines
    //  (up to H later to notice, 0.5 s on the primary) reach the backup first.
    keel_session_out_t out;
    int64_t lost;
    keel_session_t *s = s_session_hb (2, 2000, 1000);
    int64_t moved = s_move_time (s, 0, 10000, &lost, &out);
    cr_assert_eq (lost, 3000);
    cr_assert_eq (moved, 4600, "moved at %lld ms", (long long) moved);
    const keel_session_action_t *a = s_status_of (&out, KEEL_SESSION_STATUS_TRYING);
    cr_assert_not_null (a);
    cr_assert (strstr (a->text, "did not answer for 4.6 s;"), "%s", a->text);
    keel_session_destroy (&s);
    //  A restarted broker that answers the fresh hello within the floor keeps the session.
    s = s_session_hb (2, 2000, 1000);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, 0, &out);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);
    cr_assert_eq (keel_session_state (s), KEEL_SESSION_CONNECTING);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 4500, &out);
    cr_assert_eq (keel_session_broker (s), 0);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, 4500, &out);
    cr_assert_eq (out.actions[s_find (&out, KEEL_SESSION_DO_STATUS)].status,
                  KEEL_SESSION_STATUS_RECONNECTED);
    keel_session_destroy (&s);
}

Test (driver_session, a_broker_timeout_shorter_than_the_floor_moves_that_long_after_the_loss)
{
    keel_session_out_t out;
    int64_t lost;
    keel_session_t *s = s_session_hb (2, 500, 1000);
    int64_t moved = s_move_time (s, 0, 10000, &lost, &out);
    cr_assert_eq (lost, 3000);
    cr_assert_eq (moved, 3500, "moved at %lld ms", (long long) moved);
    keel_session_destroy (&s);
}

Test (driver_session, a_relogin_gets_the_whole_broker_timeout_from_the_relogin)
{
    keel_session_out_t out;
    keel_session_t *s = s_session_hb (2, 2000, 200);
    keel_session_step (s, KEEL_SESSION_EV_START, 0, 0, &out);
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, 0, &out);
    keel_session_received (s, 5000);
    keel_session_step (s, KEEL_SESSION_EV_RELOGIN, 0, 5000, &out);
    int64_t now = 5100;
    cr_assert_not (s_tick_until (s, &now, 6900, KEEL_SESSION_DO_FORGET_ACCEPTED, &out));
    cr_assert (s_tick_until (s, &now, 7000, KEEL_SESSION_DO_FORGET_ACCEPTED, &out));
    cr_assert_eq (keel_session_broker (s), 1);
    keel_session_destroy (&s);
}

Test (driver_session, writes_durations_as_a_person_reads_them)
{
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        { -5, "0 ms" },      { 0, "0 ms" },
        { 250, "250 ms" },   { 999, "999 ms" },
        { 1000, "1 s" },     { 1500, "1.5 s" },
        { 2000, "2 s" },     { 9949, "9.9 s" },
        { 9960, "10 s" },    { 59400, "59 s" },
        { 59600, "1 min" },  { 90000, "1 min 30 s" },
        { 300000, "5 min" }, { 3599000, "59 min 59 s" },
        { 3600000, "1 h" },  { 5400000, "1 h 30 min" },
        { 86400000, "1 d" }, { 93600000, "1 d 2 h" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        cr_assert_str_eq (keel_session_duration_text (cases[i].ms, buf, sizeof buf), cases[i].text,
                          "%lld ms", (long long) cases[i].ms);
    }
}
