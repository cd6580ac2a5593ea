/*  test_sdk_memory.c — task memory across engine loss: the built-in count
    checkpoints after every step; its engine is killed with SIGKILL midway;
    the engine that takes the task over continues after the last checkpoint
    the broker stored, repeating no finished step.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define S_STEPS 100

typedef struct {
    char path[512];
    int want;
} s_lines_t;

//  Checkpoint lines in engine X's log, in order: data="K".
static int
s_checkpoints (const char *path, int *steps, int max)
{
    char *text = harness_read_file (path);
    if (!text)
        return 0;
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line && n < max;
         line = strtok_r (NULL, "\n", &save)) {
        char *at = strstr (line, "checkpoint sent ");
        char *data = at ? strstr (at, "data=\"") : NULL;
        if (data)
            steps[n++] = atoi (data + 6);
    }
    free (text);
    return n;
}

static bool
s_enough_checkpoints (void *arg)
{
    s_lines_t *w = arg;
    int steps[S_STEPS + 8];
    return s_checkpoints (w->path, steps, S_STEPS + 8) >= w->want;
}

//  Copies the value after `key` up to white space from the first log line
//  holding `needle`.
static bool
s_log_field (const char *path, const char *needle, const char *key, char *out, size_t size)
{
    char *text = harness_read_file (path);
    if (!text)
        return false;
    bool found = false;
    char *line = strstr (text, needle);
    char *end = line ? strchr (line, '\n') : NULL;
    if (end)
        *end = 0;
    char *at = line ? strstr (line, key) : NULL;
    if (at) {
        at += strlen (key);
        size_t n = strcspn (at, " \n");
        if (n > 0 && n < size) {
            memcpy (out, at, n);
            out[n] = 0;
            found = true;
        }
    }
    free (text);
    return found;
}

typedef struct {
    const harness_broker_t *broker;
    const char *service;
} s_age_t;

//  The broker's stored checkpoint of task 0 is at least 1 s old: nothing
//  newer is on its way (the task is stopped) and the last one has arrived.
static bool
s_checkpoint_settled (void *arg)
{
    s_age_t *w = arg;
    harness_result_t res;
    bool settled = false;
    if (harness_admin (w->broker, &res, true, "tasks", w->service, NULL) == 0) {
        char *age = strstr (res.out, "\"checkpoint_age_s\":");
        settled = age && atoi (age + strlen ("\"checkpoint_age_s\":")) >= 1;
    }
    harness_result_free (&res);
    return settled;
}

Test (sdk_memory, count_continues_after_the_last_checkpoint_of_a_killed_engine,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    const char *broker_sets[] = { "HeartbeatInterval=200ms", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", broker_sets),
                    "keel-broker did not start");
    const char *debug[] = { "LogLevel=debug", NULL };
    pid_t x = harness_engine_start (&broker, "engineX", 1, debug);
    HARNESS_ASSERT (x > 0, "engine X did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine X not online in 15 s");

    const char *argv[] = { "--broker", broker.endpoint, "submit", "--service",
                           "count",    "--input",       "100 20", NULL };
    pid_t driver = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (driver > 0, "keel-driver did not start");

    //  Let X finish some steps, then freeze its task (the worker process):
    //  no checkpoint is produced after that, so X's last logged checkpoint is
    //  the last one the broker will ever get from X.
    s_lines_t lines = { "", 10 };
    harness_path (lines.path, sizeof lines.path, "engineX.err");
    HARNESS_ASSERT (harness_poll_until (s_enough_checkpoints, &lines, 20000),
                    "engine X logged no 10 checkpoints in 20 s");
    char pid_text[32], service[64];
    HARNESS_ASSERT (
        s_log_field (lines.path, "task started", "pid=", pid_text, sizeof pid_text)
            && s_log_field (lines.path, "task started", "service=", service, sizeof service),
        "no 'task started' line with pid and service");
    pid_t worker = (pid_t) atoi (pid_text);
    HARNESS_ASSERT (worker > 1 && kill (worker, SIGSTOP) == 0, "cannot stop worker %d",
                    (int) worker);
    s_age_t age = { &broker, service };
    HARNESS_ASSERT (harness_poll_until (s_checkpoint_settled, &age, 10000),
                    "the broker's checkpoint did not settle");
    int steps[S_STEPS + 8];
    int n = s_checkpoints (lines.path, steps, S_STEPS + 8);
    HARNESS_ASSERT (n >= 10 && n < S_STEPS, "engine X checkpointed %d steps", n);
    for (int i = 0; i < n; i++)
        HARNESS_ASSERT (steps[i] == i, "engine X checkpoint %d is step %d", i, steps[i]);
    int last = steps[n - 1];
    cr_log_info ("engine X ran steps 0-%d before it was killed", last);

    HARNESS_ASSERT (harness_kill9 (x), "engine X did not die on SIGKILL");
    pid_t y = harness_engine_start (&broker, "engineY", 1, NULL);
    HARNESS_ASSERT (y > 0, "engine Y did not start");

    int code = -1;
    HARNESS_ASSERT (harness_wait_exit (driver, 30000, &code), "keel-driver did not finish in 30 s");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    char path[512];
    char *out = harness_read_file (harness_path (path, sizeof path, "driver.out"));
    cr_assert_not_null (out);
    char output[64] = "";
    HARNESS_ASSERT (harness_json_get (out, "output", output, sizeof output), "no output in %s",
                    out);
    int first = -1, end = -1;
    HARNESS_ASSERT (sscanf (output, "%d-%d", &first, &end) == 2, "output '%s' is not first-last",
                    output);
    //  Y started right after X's last checkpoint and ran to the end: the
    //  union is exactly 0..99, and no step X had finished ran again.
    HARNESS_ASSERT (first == last + 1, "engine Y ran %s, X had checkpointed up to %d", output,
                    last);
    HARNESS_ASSERT (end == S_STEPS - 1, "engine Y ran %s", output);
    char y_log[512];
    harness_path (y_log, sizeof y_log, "engineY.err");
    char memory[32];
    HARNESS_ASSERT (s_log_field (y_log, "task started", "memory_bytes=", memory, sizeof memory)
                        && atoi (memory) > 0,
                    "engine Y did not get the task with its memory");
    free (out);
}

Test (sdk_memory, a_command_service_checkpoints_through_its_file_and_gets_it_back,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    //  Counts to 6, one step per checkpoint file (written by rename); exits 1
    //  after step 3 on its first run. The retry must resume at step 4.
    const char *script =
        "n=$(cat \"$KEEL_CHECKPOINT\" 2>/dev/null || echo 0); start=$n; "
        "while [ $n -lt 6 ]; do n=$((n+1)); echo $n > \"$KEEL_CHECKPOINT.tmp\"; "
        "mv \"$KEEL_CHECKPOINT.tmp\" \"$KEEL_CHECKPOINT\"; sleep 0.15; "
        "if [ $start = 0 ] && [ $n = 3 ]; then exit 1; fi; done; echo \"from $start\"";
    char exec[1024];
    snprintf (exec, sizeof exec, "service.steps.exec=%s", script);
    const char *sets[] = { exec, NULL };
    const char *broker_sets[] = { "HeartbeatInterval=200ms", NULL };
    harness_broker_t broker;
    HARNESS_ASSERT (harness_broker_start (&broker, "broker", broker_sets),
                    "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (&broker, "engine", 1, sets) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&broker, 1, 15000), "engine not online in 15 s");
    const char *argv[] = { "--broker", broker.endpoint,  "submit", "--service", "steps", "--input",
                           "go",       "--max-attempts", "2",      NULL };
    harness_result_t res;
    int code = harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (code == 0, "keel-driver exited %d: %s", code, res.err);
    char output[64] = "";
    HARNESS_ASSERT (harness_json_get (res.out, "output", output, sizeof output), "%s", res.out);
    HARNESS_ASSERT (strcmp (output, "from 3\n") == 0, "the retry printed '%s'", output);
    long long attempts = 0;
    HARNESS_ASSERT (harness_json_int (res.out, "attempts", &attempts) && attempts == 2,
                    "attempts %lld", attempts);
    harness_result_free (&res);
}
