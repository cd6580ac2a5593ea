/*  test_driver_session.c — the driver ↔ broker session state machine,
    driven with invented times (no sockets). */
#include <criterion/criterion.h>
#include <string.h>

#include "../../driver/session.h"

static const char *s_brokers[] = { "tcp://primary:1", "tcp://backup:1" };

static keel_session_t *
s_session (int nbrokers, int64_t now)
{
    keel_session_config_t config = {
        .nbrokers = nbrokers, .brokers = s_brokers, .broker_timeout_ms = 10000,
        .primary_retry_ms = 5000, .heartbeat_ms = 1000, .seed = 7 };
    return keel_session_new (&config, now);
}

static int
s_find (const keel_session_out_t *out, keel_session_do_t what)
{
    for (int i = 0; i < out->count; i++)
        if (out->actions[i].what == what)
            return i;
    return -1;
}

static bool
s_has (const keel_session_out_t *out, keel_session_do_t what)
{
    return s_find (out, what) >= 0;
}

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
    cr_assert_eq (out.count, 1);
    cr_assert_eq (out.actions[0].what, KEEL_SESSION_DO_CONNECT);
    cr_assert_eq (out.actions[0].broker, 0);
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
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED), "same broker keeps accepted flags");
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

Test (driver_session, fails_over_to_the_next_broker_after_the_broker_timeout)
{
    int64_t now = 0;
    keel_session_out_t out;
    keel_session_t *s = s_ready (2, &now);
    keel_session_step (s, KEEL_SESSION_EV_TICK, 0, 3000, &out);     // lost at 3 s
    now = 3100;
    bool moved = false;
    for (; now <= 13000 && !moved; now += 100) {
        keel_session_step (s, KEEL_SESSION_EV_TICK, 0, now, &out);
        int i = s_find (&out, KEEL_SESSION_DO_CONNECT);
        moved = i >= 0 && out.actions[i].broker == 1;
    }
    cr_assert (moved, "moved to the backup by 3 s + DSBrokerTimeout");
    cr_assert_geq (now, 13000);
    cr_assert (s_has (&out, KEEL_SESSION_DO_FORGET_ACCEPTED), "a new broker accepted nothing yet");
    cr_assert_lt (s_find (&out, KEEL_SESSION_DO_FORGET_ACCEPTED), s_find (&out, KEEL_SESSION_DO_CONNECT));
    cr_assert_not (s_has (&out, KEEL_SESSION_DO_GIVE_UP), "the backup is still to try");
    keel_session_step (s, KEEL_SESSION_EV_WELCOME, 0, now, &out);
    cr_assert_eq (out.actions[s_find (&out, KEEL_SESSION_DO_STATUS)].status, KEEL_SESSION_STATUS_FAILOVER);
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
    cr_assert_eq (out.actions[s_find (&out, KEEL_SESSION_DO_STATUS)].status, KEEL_SESSION_STATUS_FAILBACK);
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
