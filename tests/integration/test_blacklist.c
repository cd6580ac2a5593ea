/*  test_blacklist.c — real processes: an engine whose executions of a
    service keep failing is blacklisted for it (BlacklistAfter) while the
    tasks finish on another engine, and gets the service's tasks again after
    keel-admin unblacklist or once BlacklistFor passes; a service whose type
    no engine offers fails its tasks after DSNoEngineTimeout, or runs when an
    engine offering it joins in time.
*/
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

// Copies the string value that follows `key` (e.g. "\"id\":\"") at p into out.
static bool
s_value_at (const char *p, const char *key, char *out, size_t size)
{
    const char *v = p ? strstr (p, key) : NULL;
    if (!v)
        return false;
    v += strlen (key);
    const char *end = strchr (v, '"');
    if (!end || (size_t) (end - v) >= size)
        return false;
    memcpy (out, v, (size_t) (end - v));
    out[end - v] = 0;
    return true;
}

// The id of the engine whose Host is host, from `keel-admin --json engines`
// (each engine object starts with its id, then its host).
static bool
s_engine_id (const harness_broker_t *broker, const char *host, char *id, size_t size)
{
    harness_result_t res;
    bool found = false;
    if (harness_admin (broker, &res, true, "engines", NULL) == 0) {
        char needle[128];
        snprintf (needle, sizeof needle, "\"host\":\"%s\"", host);
        const char *at = strstr (res.out, needle);
        const char *p = at;
        while (p && p > res.out && strncmp (p, "{\"id\":\"", 7) != 0)
            p--;
        found = at && p && s_value_at (p, "{\"id\":\"", id, size);
    }
    harness_result_free (&res);
    return found;
}

typedef struct {
    const harness_broker_t *broker;
    const char *engine_id;
    char service[128]; // out: the service it is blacklisted for
} s_blacklisted_t;

// True when keel-admin engines shows the engine blacklisted for a service.
static bool
s_blacklisted (void *arg)
{
    s_blacklisted_t *b = arg;
    harness_result_t res;
    bool yes = false;
    if (harness_admin (b->broker, &res, true, "engines", NULL) == 0) {
        char needle[128];
        snprintf (needle, sizeof needle, "{\"id\":\"%s\"", b->engine_id);
        const char *e = strstr (res.out, needle);
        const char *next = e ? strstr (e + 1, "{\"id\":\"") : NULL;
        const char *list = e ? strstr (e, "\"blacklisted\":[{") : NULL;
        yes = list && (!next || list < next)
              && s_value_at (list, "\"service\":\"", b->service, sizeof b->service);
    }
    harness_result_free (&res);
    return yes;
}

// Lines of the driver's stdout whose "engine" is engine_id.
static int
s_lines_from (const char *out, const char *engine_id)
{
    char needle[128];
    snprintf (needle, sizeof needle, "\"engine\":\"%s\"", engine_id);
    int n = 0;
    for (const char *p = out ? strstr (out, needle) : NULL; p; p = strstr (p + 1, needle))
        n++;
    return n;
}

// A broker, engine "bad" (Host=bad: service work fails while the file
// BROKEN exists) and engine "good" (Host=good: work takes 300 ms), one
// slot each, and a driver submitting 30 tasks of work in the background.
typedef struct {
    harness_broker_t broker;
    char broken[512];
    char bad[64], good[64];
    pid_t driver;
} s_grid_t;

static void
s_grid_start (s_grid_t *g, const char *blacklist_for)
{
    char bad_script[512], good_script[512], text[1200];
    harness_path (g->broken, sizeof g->broken, "BROKEN");
    harness_write_file (text, sizeof text, "BROKEN", "");
    snprintf (text, sizeof text,
              "#!/bin/sh\nif [ -e '%s' ]; then echo broken >&2; exit 1; fi\ncat\n", g->broken);
    harness_write_file (bad_script, sizeof bad_script, "bad.sh", text);
    harness_write_file (good_script, sizeof good_script, "good.sh", "#!/bin/sh\nsleep 0.3\ncat\n");
    chmod (bad_script, 0755);
    chmod (good_script, 0755);

    char bl_for[64];
    snprintf (bl_for, sizeof bl_for, "BlacklistFor=%s", blacklist_for);
    const char *sets[] = { "BlacklistAfter=2", bl_for, "MaxAttempts=5", NULL };
    HARNESS_ASSERT (harness_broker_start (&g->broker, "broker", sets), "keel-broker did not start");
    char bad_exec[600], good_exec[600];
    snprintf (bad_exec, sizeof bad_exec, "service.work.exec=%s", bad_script);
    snprintf (good_exec, sizeof good_exec, "service.work.exec=%s", good_script);
    const char *bad_sets[] = { "Host=bad", bad_exec, NULL };
    const char *good_sets[] = { "Host=good", good_exec, NULL };
    HARNESS_ASSERT (harness_engine_start (&g->broker, "bad", 1, bad_sets) > 0, "bad did not start");
    HARNESS_ASSERT (harness_engine_start (&g->broker, "good", 1, good_sets) > 0,
                    "good did not start");
    HARNESS_ASSERT (harness_wait_engines (&g->broker, 2, 15000), "engines not online in 15 s");
    HARNESS_ASSERT (s_engine_id (&g->broker, "bad", g->bad, sizeof g->bad)
                        && s_engine_id (&g->broker, "good", g->good, sizeof g->good),
                    "no engine ids in keel-admin engines");

    const char *argv[] = { "--broker", g->broker.endpoint, "submit", "--service",
                           "work",     "--range",          "0:30",   NULL };
    g->driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (g->driver > 0, "keel-driver did not start");
}

// Waits for the blacklisting of bad, then repairs bad (no BROKEN file).
static void
s_wait_blacklisted_then_repair (s_grid_t *g, s_blacklisted_t *b)
{
    *b = (s_blacklisted_t) { &g->broker, g->bad, "" };
    HARNESS_ASSERT (harness_poll_until (s_blacklisted, b, 15000),
                    "engine bad was not blacklisted within 15 s");
    long long count = -1;
    HARNESS_ASSERT (harness_status_int (&g->broker, "counters.engines_blacklisted", &count)
                        && count == 1,
                    "counters.engines_blacklisted is %lld, expected 1", count);
    HARNESS_ASSERT (harness_wait_log ("driver.err", "blacklisted for this service", 1, 5000),
                    "the driver was not told of the blacklisting");
    HARNESS_ASSERT (unlink (g->broken) == 0, "cannot remove %s", g->broken);
}

// The driver ends with every task done, some of them on bad again.
static void
s_driver_ends_with_bad_used_again (s_grid_t *g)
{
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (g->driver, 60000, &code), "keel-driver did not end in 60 s");
    char path[512];
    char *out = harness_read_file (harness_path (path, sizeof path, "driver.out"));
    HARNESS_ASSERT (code == 0, "keel-driver exited %d (expected 0):\n%s", code, out ? out : "");
    HARNESS_ASSERT (harness_count_lines (path) == 30, "not 30 results:\n%s", out);
    int on_bad = s_lines_from (out, g->bad), on_good = s_lines_from (out, g->good);
    cr_expect_eq (on_bad + on_good, 30, "results from other engines:\n%s", out);
    cr_expect_gt (on_good, 0, "no task finished on good");
    cr_expect_gt (on_bad, 0, "bad was never used again after it was repaired:\n%s", out);
    free (out);
}

Test (blacklist, a_failing_engine_is_blacklisted_and_used_again_after_unblacklist,
      .init = harness_setup, .fini = harness_teardown, .timeout = 180)
{
    s_grid_t g;
    s_grid_start (&g, "1h");
    s_blacklisted_t b;
    s_wait_blacklisted_then_repair (&g, &b);

    harness_result_t res;
    HARNESS_ASSERT (harness_admin (&g.broker, &res, false, "engines", NULL) == 0, "%s", res.err);
    cr_expect (strstr (res.out, "blacklisted for service") && strstr (res.out, b.service),
               "keel-admin engines does not show the blacklisting:\n%s", res.out);
    harness_result_free (&res);

    // Unknown names are refused; the blacklisting stands.
    cr_expect_eq (harness_admin (&g.broker, &res, false, "unblacklist", "no-such-engine", NULL), 1);
    cr_expect (strstr (res.err, "unblacklist: no engine 'no-such-engine'"), "%s", res.err);
    harness_result_free (&res);
    cr_expect_eq (
        harness_admin (&g.broker, &res, false, "unblacklist", g.bad, "no-such-service", NULL), 1);
    cr_expect (strstr (res.err, "no service 'no-such-service'"), "%s", res.err);
    harness_result_free (&res);
    HARNESS_ASSERT (s_blacklisted (&b), "a refused unblacklist ended the blacklisting");

    HARNESS_ASSERT (harness_admin (&g.broker, &res, true, "unblacklist", g.bad, b.service, NULL)
                        == 0,
                    "keel-admin unblacklist failed: %s", res.err);
    long long cleared = -1;
    cr_expect (harness_json_int (res.out, "cleared", &cleared) && cleared == 1, "%s", res.out);
    harness_result_free (&res);
    s_driver_ends_with_bad_used_again (&g);
}

Test (blacklist, a_blacklisted_engine_is_used_again_once_blacklist_for_passes,
      .init = harness_setup, .fini = harness_teardown, .timeout = 180)
{
    s_grid_t g;
    s_grid_start (&g, "2s");
    s_blacklisted_t b;
    s_wait_blacklisted_then_repair (&g, &b);
    s_driver_ends_with_bad_used_again (&g);
    HARNESS_ASSERT (harness_wait_log ("broker.err", "engine-unblacklisted", 1, 5000),
                    "no engine-unblacklisted event in the broker's log");
}

// ---------------------------------------------------------------- no engine

Test (blacklist, tasks_of_a_type_no_engine_offers_fail_after_ds_no_engine_timeout,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    const char *sets[] = { "DSNoEngineTimeout=2s", NULL };
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 1, NULL) > 0, "no engine");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online in 15 s");

    const char *argv[] = { "--broker",  broker.endpoint, "submit",
                           "--service", "nobody-serves", "--input",
                           "x",         "--count",       "3",
                           NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 1, "keel-driver exited %d (expected 1):\n%s\n%s", res.code, res.out,
                    res.err);
    const char *error = "no engine offers service type 'nobody-serves' (DSNoEngineTimeout=2s)";
    int n = 0;
    for (const char *p = strstr (res.out, error); p; p = strstr (p + 1, error))
        n++;
    cr_expect_eq (n, 3, "not 3 results with the error:\n%s", res.out);
    cr_expect (!strstr (res.out, "\"status\":\"ok\""), "%s", res.out);
    cr_expect (strstr (res.err, "no engine online offers service type 'nobody-serves'"),
               "the driver was not told: %s", res.err);
    cr_expect_geq (res.elapsed_ms, 2000, "failed before DSNoEngineTimeout");
    harness_result_free (&res);
    long long failed = -1;
    cr_expect (harness_status_int (&broker, "counters.tasks_failed_no_engine", &failed)
                   && failed == 3,
               "tasks_failed_no_engine is %lld", failed);
}

Test (blacklist, an_engine_offering_the_type_that_joins_before_the_timeout_runs_the_tasks,
      .init = harness_setup, .fini = harness_teardown, .timeout = 90)
{
    harness_broker_t broker;
    const char *sets[] = { "DSNoEngineTimeout=30s", NULL };
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", sets), "keel-broker did not start");
    const char *argv[] = { "--broker", broker.endpoint, "submit", "--service", "echo", "--input",
                           "hi",       "--count",       "3",      NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");
    HARNESS_ASSERT (
        harness_wait_log ("driver.err", "no engine online offers service type 'echo'", 1, 15000),
        "the driver was not told that no engine offers echo");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine1", 1, NULL) > 0, "no engine");
    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 30000, &code), "keel-driver did not end in 30 s");
    char path[512];
    char *out = harness_read_file (harness_path (path, sizeof path, "driver.out"));
    cr_expect_eq (code, 0, "keel-driver exited %d:\n%s", code, out ? out : "");
    cr_expect_eq (harness_count_lines (path), 3, "%s", out ? out : "");
    free (out);
}
