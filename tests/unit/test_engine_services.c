/*  Built-in services, the engine configuration, and the task runner
    (process pool): crash, timeout, cancel, command services. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "builtin.h"
#include "cli.h"
#include "engine_config.h"
#include "runner.h"

// ------------------------------------------------------------ built-ins

static keel_builtin_result_t
s_run (const char *type, const char *input)
{
    keel_builtin_result_t r;
    cr_assert (keel_builtin_run (type, (const uint8_t *) input, strlen (input), &r));
    return r;
}

Test (engine_builtin, double_doubles_a_decimal_integer)
{
    keel_builtin_result_t r = s_run ("double", "21");
    cr_assert (r.ok);
    cr_assert_str_eq ((char *) r.data, "42");
    free (r.data);
    r = s_run ("double", "  -7\n");
    cr_assert (r.ok);
    cr_assert_str_eq ((char *) r.data, "-14");
    free (r.data);
    r = s_run ("double", "+4611686018427387903");
    cr_assert (r.ok);
    cr_assert_str_eq ((char *) r.data, "9223372036854775806");
    free (r.data);
}

Test (engine_builtin, double_fails_on_input_that_is_not_an_integer)
{
    const char *bad[] = { "abc", "", "   ", "1.5", "12x", "- 3", "0x10", "99999999999999999999" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_builtin_result_t r = s_run ("double", bad[i]);
        cr_assert (!r.ok, "input '%s' should fail", bad[i]);
        cr_assert (strstr ((char *) r.data, "double:"), "error names the service: %s", r.data);
        free (r.data);
    }
}

Test (engine_builtin, double_fails_when_the_result_overflows)
{
    keel_builtin_result_t r = s_run ("double", "4611686018427387904");
    cr_assert (!r.ok);
    cr_assert (strstr ((char *) r.data, "overflow"), "%s", r.data);
    free (r.data);
    r = s_run ("double", "-4611686018427387905");
    cr_assert (!r.ok);
    free (r.data);
}

Test (engine_builtin, echo_returns_its_input_byte_for_byte)
{
    const uint8_t input[] = { 'a', 0, 'b', 0xff };
    keel_builtin_result_t r;
    cr_assert (keel_builtin_run ("echo", input, sizeof input, &r));
    cr_assert (r.ok);
    cr_assert_eq (r.size, sizeof input);
    cr_assert (memcmp (r.data, input, sizeof input) == 0);
    free (r.data);
}

Test (engine_builtin, fail_fails_with_its_input_as_the_error)
{
    keel_builtin_result_t r = s_run ("fail", "it broke");
    cr_assert (!r.ok);
    cr_assert_str_eq ((char *) r.data, "it broke");
    cr_assert (!r.permanent, "fail's failure is an ordinary one: it is retried");
    free (r.data);
}

Test (engine_builtin, bad_input_is_a_permanent_failure_and_good_input_is_not)
{
    const char *cases[][2] = { { "double", "abc" },
                               { "double", "" },
                               { "double", "4611686018427387904" },
                               { "sleep", "-1" },
                               { "count", "ten 5" } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        keel_builtin_result_t r = s_run (cases[i][0], cases[i][1]);
        cr_assert (!r.ok && r.permanent, "%s '%s' should fail permanently", cases[i][0],
                   cases[i][1]);
        free (r.data);
    }
    keel_builtin_result_t r = s_run ("double", "21");
    cr_assert (r.ok && !r.permanent);
    free (r.data);
}

Test (engine_builtin, sleep_returns_its_input_and_rejects_junk)
{
    keel_builtin_result_t r = s_run ("sleep", "5");
    cr_assert (r.ok);
    cr_assert_str_eq ((char *) r.data, "5");
    free (r.data);
    r = s_run ("sleep", "-1");
    cr_assert (!r.ok);
    free (r.data);
}

Test (engine_builtin, an_unknown_type_fails_and_is_not_listed)
{
    cr_assert (keel_builtin_known ("count"));
    cr_assert (keel_builtin_known ("double"));
    keel_builtin_result_t r = s_run ("nope", "");
    cr_assert (!r.ok);
    free (r.data);
}

Test (engine_builtin, only_echo_double_and_fail_run_inline)
{
    const char *inline_types[] = { "echo", "double", "fail" };
    for (size_t i = 0; i < sizeof inline_types / sizeof inline_types[0]; i++) {
        cr_assert (keel_builtin_known (inline_types[i]));
        cr_assert (keel_builtin_is_inline (inline_types[i]), "%s runs inline", inline_types[i]);
    }
    //  They block, checkpoint and must be cancellable: workers only.
    cr_assert_not (keel_builtin_is_inline ("sleep"));
    cr_assert_not (keel_builtin_is_inline ("count"));
    cr_assert_not (keel_builtin_is_inline ("render"));
    cr_assert_not (keel_builtin_is_inline (""));
}

Test (engine_builtin, the_output_cap_fails_only_a_too_large_output)
{
    keel_builtin_result_t r = s_run ("echo", "12345");
    cr_assert (keel_builtin_cap_output (&r, 5));
    cr_assert (r.ok);
    cr_assert_str_eq ((char *) r.data, "12345");
    cr_assert (keel_builtin_cap_output (&r, 4));
    cr_assert_not (r.ok);
    cr_assert_str_eq ((char *) r.data, "output too large (more than 4 bytes)");
    cr_assert_eq (r.size, strlen ((char *) r.data));
    free (r.data);
    //  An error text is not output: never capped.
    r = s_run ("fail", "a long error text");
    cr_assert (keel_builtin_cap_output (&r, 1));
    cr_assert_not (r.ok);
    cr_assert_str_eq ((char *) r.data, "a long error text");
    free (r.data);
}

// ------------------------------------------------------------ config

static keel_engine_config_t *
s_config (char **sets, int n, keel_error_t *err)
{
    keel_settings_t *settings = keel_cli_load (keel_engine_settings_table (), NULL, sets, n, err);
    if (!settings)
        return NULL;
    keel_engine_config_t *cfg = keel_engine_config_new (settings, err);
    keel_settings_destroy (&settings);
    return cfg;
}

Test (engine_config, defaults_offer_the_built_ins_and_the_local_broker)
{
    keel_error_t err = { "" };
    keel_engine_config_t *cfg = s_config (NULL, 0, &err);
    cr_assert (cfg, "%s", err.text);
    cr_assert_eq (cfg->n_brokers, 1);
    cr_assert_str_eq (cfg->brokers[0], "tcp://127.0.0.1:7070");
    cr_assert_gt (cfg->slots, 0);
    cr_assert_eq (cfg->timeout_action, KEEL_TIMEOUT_ACTION_RESTART);
    cr_assert_eq (cfg->primary_retry_ms, 60000);
    cr_assert (keel_engine_config_service (cfg, "echo"));
    cr_assert (keel_engine_config_service (cfg, "sleep"));
    cr_assert (keel_engine_config_service (cfg, "count"));
    keel_engine_config_destroy (&cfg);
    cr_assert_null (cfg);
}

Test (engine_config, command_services_and_timeouts_are_read)
{
    char *sets[] = { "Brokers=tcp://a:1, tcp://b:2", "service.upper.exec=tr a-z A-Z",
                     "service.upper.timeout=1.5", "service.sleep.timeout=250ms",
                     "EngineTimeoutAction=exit" };
    keel_error_t err = { "" };
    keel_engine_config_t *cfg = s_config (sets, 5, &err);
    cr_assert (cfg, "%s", err.text);
    cr_assert_eq (cfg->n_brokers, 2);
    cr_assert_str_eq (cfg->brokers[1], "tcp://b:2");
    const keel_service_def_t *upper = keel_engine_config_service (cfg, "upper");
    cr_assert (upper);
    cr_assert_str_eq (upper->command, "tr a-z A-Z");
    cr_assert_eq (upper->timeout_ms, 1500);
    cr_assert_eq (keel_engine_config_service (cfg, "sleep")->timeout_ms, 250);
    cr_assert_eq (cfg->timeout_action, KEEL_TIMEOUT_ACTION_EXIT);
    keel_engine_config_destroy (&cfg);
}

Test (engine_config, a_missing_library_is_read_and_left_to_the_start_check)
{
    //  Whether it loads is service_check.h's job (test_engine_service_check.c).
    char *sets[] = { "service.calc.library=/nonexistent/libcalc.so" };
    keel_error_t err = { "" };
    keel_engine_config_t *cfg = s_config (sets, 1, &err);
    cr_assert (cfg, "%s", err.text);
    cr_assert (keel_engine_config_service (cfg, "calc"));
    cr_assert (keel_engine_config_remove_service (cfg, "calc"));
    cr_assert_null (keel_engine_config_service (cfg, "calc"));
    cr_assert (!keel_engine_config_remove_service (cfg, "calc"));
    cr_assert (keel_engine_config_service (cfg, "count"), "the others stay");
    keel_engine_config_destroy (&cfg);
}

Test (engine_config, a_library_service_is_offered_and_cannot_also_be_a_command)
{
    char *sets[] = { "service.calc.library=/dev/null", "service.calc.timeout=2s" };
    keel_error_t err = { "" };
    keel_engine_config_t *cfg = s_config (sets, 2, &err);
    cr_assert (cfg, "%s", err.text);
    const keel_service_def_t *calc = keel_engine_config_service (cfg, "calc");
    cr_assert (calc);
    cr_assert_str_eq (calc->library, "/dev/null");
    cr_assert_null (calc->command);
    cr_assert_eq (calc->timeout_ms, 2000);
    keel_engine_config_destroy (&cfg);
    char *both[] = { "service.calc.library=/dev/null", "service.calc.exec=cat" };
    cr_assert_null (s_config (both, 2, &err));
    cr_assert (strstr (err.text, "service.calc.exec"), "%s", err.text);
}

Test (engine_config, a_command_cannot_replace_a_built_in)
{
    char *sets[] = { "service.echo.exec=cat" };
    keel_error_t err = { "" };
    cr_assert_null (s_config (sets, 1, &err));
    cr_assert (strstr (err.text, "service.echo.exec"), "%s", err.text);
}

// The value of property name in cfg, or NULL.
static const char *
s_prop (const keel_engine_config_t *cfg, const char *name)
{
    for (int i = 0; i < cfg->n_props; i++)
        if (strcmp (cfg->props[i].name, name) == 0)
            return cfg->props[i].value;
    return NULL;
}

Test (engine_config, properties_are_the_built_ins_then_the_property_keys)
{
    char *sets[] = { "Host=node-7", "Slots=3", "property.gpu=a100", "property.memory_mb=2048",
                     "property.rack=r 12" };
    keel_error_t err = { "" };
    keel_engine_config_t *cfg = s_config (sets, 5, &err);
    cr_assert (cfg, "%s", err.text);
    cr_assert_str_eq (s_prop (cfg, "host"), "node-7");
    cr_assert_str_eq (s_prop (cfg, "os"), "linux");
    cr_assert_gt (atoi (s_prop (cfg, "cores")), 0);
    cr_assert_str_eq (s_prop (cfg, "slots"), "3");
    cr_assert_str_eq (s_prop (cfg, "memory_mb"), "2048", "property.memory_mb replaces it");
    cr_assert_str_eq (s_prop (cfg, "gpu"), "a100");
    cr_assert_str_eq (s_prop (cfg, "rack"), "r 12");
    cr_assert_eq (cfg->n_props, 7);
    keel_engine_config_destroy (&cfg);

    keel_engine_config_t *plain = s_config (NULL, 0, &err);
    cr_assert (plain, "%s", err.text);
    cr_assert_gt (atoll (s_prop (plain, "memory_mb")), 0);
    cr_assert_null (s_prop (plain, "gpu"));
    keel_engine_config_destroy (&plain);
}

Test (engine_config, a_bad_property_is_refused_naming_its_key)
{
    keel_error_t err = { "" };
    char *dash[] = { "property.gpu-kind=a100" };
    cr_assert_null (s_config (dash, 1, &err));
    cr_assert (strstr (err.text, "property.gpu-kind: 'gpu-kind' is not a property name"), "%s",
               err.text);
    char value[300], set[320];
    memset (value, 'v', 257);
    value[257] = 0;
    snprintf (set, sizeof set, "property.big=%s", value);
    char *big[] = { set };
    cr_assert_null (s_config (big, 1, &err));
    cr_assert (strstr (err.text, "property.big: value longer than 256 bytes"), "%s", err.text);
    char *many[64];
    char keys[64][32];
    for (int i = 0; i < 64; i++) {
        snprintf (keys[i], sizeof keys[i], "property.p%d=x", i);
        many[i] = keys[i];
    }
    cr_assert_null (s_config (many, 64, &err), "5 built-ins + 64 are more than 64");
    cr_assert (strstr (err.text, "more than 64 properties"), "%s", err.text);
    keel_engine_config_t *cfg = s_config (many, 59, &err);
    cr_assert_not_null (cfg, "%s", err.text);
    keel_engine_config_destroy (&cfg);
}

// ------------------------------------------------------------ runner

typedef struct {
    int count;
    uint64_t execution_id;
    bool ok;
    bool permanent;
    char text[4096];
} s_seen_t;

static void
s_collect (const keel_runner_result_t *r, void *arg)
{
    s_seen_t *seen = arg;
    seen->count++;
    seen->execution_id = r->execution_id;
    seen->ok = r->ok;
    seen->permanent = r->permanent;
    size_t n = r->size < sizeof seen->text - 1 ? r->size : sizeof seen->text - 1;
    memcpy (seen->text, r->data, n);
    seen->text[n] = 0;
}

static int64_t
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Starts a built-in (command NULL) or command task without memory.
static keel_err
s_start (keel_runner_t *runner, uint64_t id, const char *type, const char *command,
         const uint8_t *input, size_t size, int64_t timeout_ms, int64_t now)
{
    keel_worker_request_t req = { .execution_id = id,
                                  .task_id = id,
                                  .kind = command ? KEEL_WORKER_COMMAND : KEEL_WORKER_BUILTIN,
                                  .type = type,
                                  .target = command,
                                  .service_id = "svc",
                                  .input = input,
                                  .input_size = size };
    return keel_runner_start (runner, &req, timeout_ms, now);
}

//  Drives the runner like the engine loop until `want` results arrived or
//  the deadline passed.
static void
s_drive (keel_runner_t *runner, s_seen_t *seen, int want, int64_t deadline_ms)
{
    int64_t until = s_now () + deadline_ms;
    while (seen->count < want && s_now () < until) {
        int fds[16];
        int n = keel_runner_fds (runner, fds, 16);
        struct pollfd pfd[16];
        for (int i = 0; i < n; i++)
            pfd[i] = (struct pollfd) { fds[i], POLLIN, 0 };
        int64_t wait = keel_runner_next_deadline (runner) - s_now ();
        if (wait > 50 || wait < 0)
            wait = wait < 0 ? 0 : 50;
        poll (pfd, (nfds_t) n, (int) wait);
        keel_runner_handlers_t h = { s_collect, NULL, seen };
        keel_runner_process (runner, s_now (), &h);
    }
}

//  Keeps the runner turning (it reaps the group's orphans: it is their
//  subreaper) until no process of the group is left or the deadline passed.
static bool
s_group_gone_within (keel_runner_t *runner, pid_t pgid, int64_t deadline_ms)
{
    int64_t until = s_now () + deadline_ms;
    do {
        keel_runner_handlers_t h = { NULL, NULL, NULL };
        keel_runner_process (runner, s_now (), &h);
        if (kill (-pgid, 0) != 0 && errno == ESRCH)
            return true;
        poll (NULL, 0, 5);
    } while (s_now () < until);
    return false;
}

Test (engine_runner, runs_a_built_in_task_in_a_worker)
{
    keel_runner_t *runner = keel_runner_new (2, 1 << 20, NULL);
    cr_assert (runner);
    cr_assert_eq (keel_runner_free_slots (runner), 2);
    cr_assert_eq (s_start (runner, 7, "double", NULL, (const uint8_t *) "21", 2, 0, s_now ()),
                  KEEL_OK);
    cr_assert (keel_runner_is_running (runner, 7));
    cr_assert_neq (keel_runner_pid_of (runner, 7), getpid ());
    s_seen_t seen = { 0 };
    s_drive (runner, &seen, 1, 5000);
    cr_assert_eq (seen.count, 1);
    cr_assert_eq (seen.execution_id, 7);
    cr_assert (seen.ok);
    cr_assert_str_eq (seen.text, "42");
    cr_assert_eq (keel_runner_free_slots (runner), 2);
    keel_runner_destroy (&runner);
    cr_assert_null (runner);
}

Test (engine_runner, refuses_a_task_when_every_slot_is_busy)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    cr_assert_eq (s_start (runner, 1, "sleep", NULL, (const uint8_t *) "10000", 5, 0, s_now ()),
                  KEEL_OK);
    cr_assert_eq (s_start (runner, 2, "echo", NULL, (const uint8_t *) "x", 1, 0, s_now ()),
                  KEEL_ERR_FULL);
    keel_runner_destroy (&runner);
}

//  True once pid no longer catches SIGSEGV (its SigCgt mask in /proc), i.e.
//  the worker has dropped any handler inherited from the engine (a
//  sanitizer's, in ASan builds). Polls until timeout_ms.
static bool
s_wait_segv_default (pid_t pid, int timeout_ms)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    int64_t deadline = s_now () + timeout_ms;
    while (s_now () < deadline) {
        FILE *f = fopen (path, "r");
        if (!f)
            return false;
        char line[256];
        unsigned long long caught = ~0ULL;
        while (fgets (line, sizeof line, f))
            if (sscanf (line, "SigCgt: %llx", &caught) == 1)
                break;
        fclose (f);
        if (!(caught & (1ULL << (SIGSEGV - 1))))
            return true;
        struct timespec ts = { 0, 2 * 1000 * 1000 };
        nanosleep (&ts, NULL);
    }
    return false;
}

Test (engine_runner, a_crashing_task_fails_and_its_worker_is_replaced)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    cr_assert_eq (s_start (runner, 3, "sleep", NULL, (const uint8_t *) "10000", 5, 0, s_now ()),
                  KEEL_OK);
    pid_t pid = keel_runner_pid_of (runner, 3);
    cr_assert_gt (pid, 0);
    cr_assert (s_wait_segv_default (pid, 5000), "worker never restored SIGSEGV's default action");
    kill (pid, SIGSEGV);
    s_seen_t seen = { 0 };
    s_drive (runner, &seen, 1, 5000);
    cr_assert_eq (seen.count, 1);
    cr_assert (!seen.ok);
    cr_assert_str_eq (seen.text, "task process crashed: signal 11");
    cr_assert_eq (keel_runner_free_slots (runner), 1);
    //  The replacement worker runs the next task.
    cr_assert_eq (s_start (runner, 4, "echo", NULL, (const uint8_t *) "hi", 2, 0, s_now ()),
                  KEEL_OK);
    cr_assert_neq (keel_runner_pid_of (runner, 4), pid);
    s_drive (runner, &seen, 2, 5000);
    cr_assert_eq (seen.count, 2);
    cr_assert (seen.ok);
    cr_assert_str_eq (seen.text, "hi");
    keel_runner_destroy (&runner);
}

Test (engine_runner, a_task_past_its_timeout_is_killed_with_its_process_group)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    //  The command leaves a grandchild behind in the same process group.
    cr_assert_eq (s_start (runner, 5, "slow", "sleep 30 & sleep 30", NULL, 0, 200, s_now ()),
                  KEEL_OK);
    pid_t pgid = keel_runner_pid_of (runner, 5);
    s_seen_t seen = { 0 };
    s_drive (runner, &seen, 1, 5000);
    cr_assert_eq (seen.count, 1);
    cr_assert (!seen.ok);
    cr_assert_str_eq (seen.text, "timed out after 200 ms");
    cr_assert (s_group_gone_within (runner, pgid, 3000), "process group %d still exists",
               (int) pgid);
    cr_assert_eq (keel_runner_free_slots (runner), 1);
    keel_runner_destroy (&runner);
}

Test (engine_runner, a_timeout_applies_to_built_ins_too)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    cr_assert_eq (s_start (runner, 6, "sleep", NULL, (const uint8_t *) "20000", 5, 100, s_now ()),
                  KEEL_OK);
    s_seen_t seen = { 0 };
    s_drive (runner, &seen, 1, 5000);
    cr_assert_eq (seen.count, 1);
    cr_assert_str_eq (seen.text, "timed out after 100 ms");
    keel_runner_destroy (&runner);
}

Test (engine_runner, a_command_service_reads_stdin_and_writes_stdout)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    cr_assert_eq (
        s_start (runner, 8, "upper", "tr a-z A-Z", (const uint8_t *) "hello", 5, 0, s_now ()),
        KEEL_OK);
    s_seen_t seen = { 0 };
    s_drive (runner, &seen, 1, 5000);
    cr_assert_eq (seen.count, 1);
    cr_assert (seen.ok, "%s", seen.text);
    cr_assert_str_eq (seen.text, "HELLO");
    keel_runner_destroy (&runner);
}

Test (engine_runner, a_failing_command_reports_exit_status_and_stderr_tail)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    s_seen_t seen = { 0 };
    cr_assert_eq (
        s_start (runner, 9, "bad", "echo partial; echo oops >&2; exit 3", NULL, 0, 0, s_now ()),
        KEEL_OK);
    s_drive (runner, &seen, 1, 5000);
    cr_assert (!seen.ok);
    cr_assert_str_eq (seen.text, "exit status 3: oops");
    cr_assert_eq (s_start (runner, 10, "bad", "kill -9 $$", NULL, 0, 0, s_now ()), KEEL_OK);
    s_drive (runner, &seen, 2, 5000);
    cr_assert (!seen.ok);
    cr_assert_str_eq (seen.text, "killed by signal 9");
    cr_assert (!seen.permanent);
    keel_runner_destroy (&runner);
}

Test (engine_runner, exit_126_and_127_are_permanent_failures_other_statuses_are_not)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    s_seen_t seen = { 0 };
    cr_assert_eq (s_start (runner, 20, "gone", "/nonexistent/keel-prog", NULL, 0, 0, s_now ()),
                  KEEL_OK);
    s_drive (runner, &seen, 1, 5000);
    cr_assert (!seen.ok);
    cr_assert (strstr (seen.text, "exit status 127"), "%s", seen.text);
    cr_assert (seen.permanent, "exit 127 (not found) cannot succeed on a retry");
    cr_assert_eq (s_start (runner, 21, "noexec", "exit 126", NULL, 0, 0, s_now ()), KEEL_OK);
    s_drive (runner, &seen, 2, 5000);
    cr_assert (!seen.ok && seen.permanent, "%s", seen.text);
    cr_assert_eq (s_start (runner, 22, "bad", "exit 3", NULL, 0, 0, s_now ()), KEEL_OK);
    s_drive (runner, &seen, 3, 5000);
    cr_assert (!seen.ok);
    cr_assert_str_eq (seen.text, "exit status 3");
    cr_assert (!seen.permanent, "an ordinary failure is retried");
    cr_assert_eq (s_start (runner, 23, "double", NULL, (const uint8_t *) "abc", 3, 0, s_now ()),
                  KEEL_OK);
    s_drive (runner, &seen, 4, 5000);
    cr_assert (!seen.ok && seen.permanent, "a built-in's bad input, in a worker too: %s",
               seen.text);
    keel_runner_destroy (&runner);
}

Test (engine_runner, too_much_output_fails_the_task)
{
    keel_runner_t *runner = keel_runner_new (1, 1000, NULL);
    s_seen_t seen = { 0 };
    cr_assert_eq (s_start (runner, 11, "big", "head -c 100000 /dev/zero", NULL, 0, 0, s_now ()),
                  KEEL_OK);
    s_drive (runner, &seen, 1, 5000);
    cr_assert (!seen.ok);
    cr_assert (strstr (seen.text, "output too large"), "%s", seen.text);
    keel_runner_destroy (&runner);
}

Test (engine_runner, a_cancelled_task_is_killed_and_reports_nothing)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    cr_assert_eq (s_start (runner, 12, "slow", "sleep 30", NULL, 0, 0, s_now ()), KEEL_OK);
    pid_t pgid = keel_runner_pid_of (runner, 12);
    cr_assert_eq (keel_runner_cancel (runner, 12), KEEL_OK);
    cr_assert (!keel_runner_is_running (runner, 12));
    cr_assert_eq (keel_runner_cancel (runner, 12), KEEL_ERR_NOTFOUND);
    cr_assert (s_group_gone_within (runner, pgid, 3000));
    //  The next result seen is the next task's: the cancelled one said nothing.
    cr_assert_eq (s_start (runner, 13, "echo", NULL, (const uint8_t *) "after", 5, 0, s_now ()),
                  KEEL_OK);
    s_seen_t seen = { 0 };
    s_drive (runner, &seen, 1, 5000);
    cr_assert_eq (seen.count, 1);
    cr_assert_eq (seen.execution_id, 13);
    cr_assert_str_eq (seen.text, "after");
    keel_runner_destroy (&runner);
}

Test (engine_runner, kill_all_leaves_no_process_group_behind)
{
    keel_runner_t *runner = keel_runner_new (2, 1 << 20, NULL);
    cr_assert_eq (s_start (runner, 14, "slow", "sleep 30 & sleep 30", NULL, 0, 0, s_now ()),
                  KEEL_OK);
    cr_assert_eq (s_start (runner, 15, "sleep", NULL, (const uint8_t *) "30000", 5, 0, s_now ()),
                  KEEL_OK);
    pid_t a = keel_runner_pid_of (runner, 14), b = keel_runner_pid_of (runner, 15);
    bool all_gone = false;
    cr_assert_eq (keel_runner_kill_all (runner, &all_gone), 2);
    cr_assert (all_gone);
    cr_assert (kill (-a, 0) != 0 && errno == ESRCH);
    cr_assert (kill (-b, 0) != 0 && errno == ESRCH);
    cr_assert_eq (keel_runner_free_slots (runner), 2);
    keel_runner_destroy (&runner);
}
