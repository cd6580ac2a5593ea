/*  test_metrics_page.c — the status page (GET / on MetricsEndpoint) in a
    real browser: headless Chromium (Debian's chromium, scripts/install-
    deps.sh) loads it while a small grid runs, lets its script fetch
    /status.json and render, and dumps the DOM, which must show the live
    data: both engines online, the running service with its progress bar.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define S_CHROMIUM "/usr/bin/chromium"

typedef struct {
    const harness_broker_t *broker;
} s_wait_t;

static bool
s_service_running (void *arg)
{
    long long running = 0;
    return harness_status_int (arg, "tasks.running", &running) && running > 0;
}

// True once the /status.json the broker publishes (once a second, see
// broker_metrics.c) shows both engines online and a task running: the page
// renders the copy published last, which can predate the engines' logins
// (seen: a page with "0" engines, loaded 0.2 s after the broker started).
static bool
s_published (void *arg)
{
    char code[512];
    snprintf (code, sizeof code,
              "import http.client, json, sys\n"
              "c = http.client.HTTPConnection('127.0.0.1', %d, timeout=5)\n"
              "c.request('GET', '/status.json')\n"
              "s = json.loads(c.getresponse().read())['status']\n"
              "sys.exit(0 if s['engines']['online'] == 2 and s['tasks']['running'] > 0 else 1)\n",
              *(const int *) arg);
    const char *argv[] = { "-c", code, NULL };
    harness_result_t res;
    harness_run (&res, 10000, "/usr/bin/python3", argv);
    bool ok = res.code == 0;
    harness_result_free (&res);
    return ok;
}

// The page as Chromium renders it after its script ran (--dump-dom waits
// for the virtual time budget: the fetch of /status.json and the render).
static int
s_dump_dom (const char *url, harness_result_t *res)
{
    char profile[512], profile_arg[600];
    harness_path (profile, sizeof profile, "chromium-profile");
    snprintf (profile_arg, sizeof profile_arg, "--user-data-dir=%s", profile);
    // As root, Chromium runs only without its sandbox (tests run as root in CI).
    const char *argv[] = { "--headless",
                           "--no-sandbox",
                           "--disable-gpu",
                           "--disable-dev-shm-usage",
                           "--no-first-run",
                           profile_arg,
                           "--virtual-time-budget=5000",
                           "--dump-dom",
                           url,
                           NULL };
    return harness_run (res, 90000, S_CHROMIUM, argv);
}

Test (status_page, shows_live_engines_and_services_in_chromium, .init = harness_setup,
      .fini = harness_teardown, .timeout = 180)
{
    cr_assert (access (S_CHROMIUM, X_OK) == 0,
               S_CHROMIUM " is not installed (scripts/install-deps.sh installs it)");
    int port = harness_free_port ();
    char set[64], url[64];
    snprintf (set, sizeof set, "MetricsEndpoint=127.0.0.1:%d", port);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/", port);
    const char *sets[] = { set, NULL };
    harness_broker_t b;
    HARNESS_ASSERT (harness_broker_start (&b, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&b, "engine1", 2, NULL) > 0, "engine1 did not start");
    HARNESS_ASSERT (harness_engine_start (&b, "engine2", 2, NULL) > 0, "engine2 did not start");
    HARNESS_ASSERT (harness_wait_engines (&b, 2, 15000), "engines not online within 15 s");
    // 200 tasks of 250 ms on 4 slots: the service runs for ~12 s, long
    // enough for the page to catch it running.
    const char *argv[] = { "--broker", b.endpoint, "submit",  "--service", "sleep",
                           "--input",  "250",      "--count", "200",       NULL };
    HARNESS_ASSERT (harness_spawn ("driver", "keel-driver", argv) > 0, "keel-driver did not start");
    HARNESS_ASSERT (harness_poll_until (s_service_running, &b, 15000),
                    "no task running within 15 s");
    HARNESS_ASSERT (harness_poll_until (s_published, &port, 15000),
                    "/status.json did not show 2 engines and a running task within 15 s");

    harness_result_t res;
    s_dump_dom (url, &res);
    HARNESS_ASSERT (res.code == 0, "chromium exited %d; stderr:\n%s", res.code, res.err);
    const char *dom = res.out;
    const char *expect[] = {
        "data-loaded=\"1\"",                          // the script rendered status.json
        "id=\"engines-online\">2<",                   // both engines, live
        "id=\"role\">standalone<",                    // the broker's role
        "<span class=\"badge online\">online</span>", // an engine row
        "<td>sleep</td>",                             // the service row, by type
        "<span class=\"bar\">",                       // with its progress bar
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        HARNESS_ASSERT (strstr (dom, expect[i]) != NULL, "the page has no %s; DOM:\n%.6000s",
                        expect[i], dom);
    // (The script's own text holds the error message: look for its mark.)
    cr_assert (strstr (dom, "class=\"meta stale\"") == NULL,
               "the page could not fetch status.json");
    harness_result_free (&res);
}
