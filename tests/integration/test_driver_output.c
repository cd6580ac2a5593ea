/*  test_driver_output.c — what keel-driver writes, where people look at it
    (issue 17): on a terminal, the progress bar (with rate and ETA) and the
    JSON lines never share a line; with stdout and stderr redirected to one
    file, every JSON line is whole even when status lines come mid-run.
    keel-driver runs under a real pseudo-terminal (forkpty) or with both
    streams on one file, against a real broker and engine.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define TASKS 20000

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// The child's side of a fork: dies with the test, runs keel-driver.
static void
s_exec_driver (const harness_broker_t *b)
{
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    char range[32];
    snprintf (range, sizeof range, "0:%d", TASKS);
    execl (KEEL_BIN_DIR "/keel-driver", "keel-driver", "--broker", b->endpoint, "--set",
           "DSBrokerTimeout=60s", "submit", "--service", "double", "--range", range, (char *) NULL);
    _exit (127);
}

// Waits (bounded) for pid; its exit code, or -1 (then killed).
static int
s_reap (pid_t pid, int timeout_ms)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    int status = 0;
    while (s_now_ms () < deadline) {
        if (waitpid (pid, &status, WNOHANG) == pid)
            return WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
        usleep (20 * 1000);
    }
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
    return -1;
}

static void
s_grid (harness_broker_t *broker)
{
    // EnginePrefetch=0: one task per free slot, so the job lasts a few
    // seconds (the bar is drawn every 200 ms).
    const char *sets[] = { "HeartbeatInterval=200ms", "EnginePrefetch=0", NULL };
    HARNESS_ASSERT (harness_broker_start (broker, "broker", sets), "keel-broker did not start");
    HARNESS_ASSERT (harness_engine_start (broker, "engine", 2, NULL) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (broker, 1, 15000), "engine not online within 15 s");
}

Test (driver_output, on_one_terminal_the_bar_and_the_json_lines_never_share_a_line,
      .init = harness_setup, .fini = harness_teardown, .timeout = 180)
{
    harness_broker_t broker;
    s_grid (&broker);
    // A raw terminal: no \n -> \r\n translation, so the bytes read are the
    // bytes keel-driver wrote.
    struct termios raw;
    memset (&raw, 0, sizeof raw);
    cfmakeraw (&raw);
    struct winsize ws = { .ws_row = 40, .ws_col = 200 };
    int master = -1;
    pid_t pid = forkpty (&master, NULL, &raw, &ws);
    HARNESS_ASSERT (pid >= 0, "forkpty: %s", strerror (errno));
    if (pid == 0)
        s_exec_driver (&broker);

    size_t cap = 8 << 20, len = 0;
    char *out = malloc (cap + 1);
    cr_assert_not_null (out);
    int64_t deadline = s_now_ms () + 120000;
    while (s_now_ms () < deadline && len < cap) {
        struct pollfd pfd = { master, POLLIN, 0 };
        if (poll (&pfd, 1, 200) <= 0)
            continue;
        ssize_t n = read (master, out + len, cap - len);
        if (n <= 0)
            break; // EIO: the driver exited and the terminal closed
        len += (size_t) n;
    }
    out[len] = 0;
    close (master);
    int code = s_reap (pid, 10000);
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);

    long json = 0, bars = 0, rates = 0;
    char *save = NULL;
    for (char *line = strtok_r (out, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        if (strstr (line, "\r["))
            bars++;
        if (strstr (line, "/s") && strstr (line, "\r["))
            rates++;
        if (!strstr (line, "{\"service\""))
            continue;
        json++;
        // What the terminal shows of this line: the text after its last
        // carriage return (the bar erased with ESC [ K before it).
        const char *shown = strrchr (line, '\r');
        shown = shown ? shown + 1 : line;
        if (strncmp (shown, "\033[K", 3) == 0)
            shown += 3;
        cr_assert (strncmp (shown, "{\"service\"", 10) == 0 && line[strlen (line) - 1] == '}',
                   "a JSON line shares the terminal line with something else: '%.200s'", line);
    }
    cr_log_info ("%ld JSON lines, %ld with a bar drawn before them, %ld bars with a rate", json,
                 bars, rates);
    cr_assert_eq (json, TASKS, "JSON lines on the terminal: %ld", json);
    cr_assert_gt (bars, 0, "no progress bar was drawn");
    cr_assert_gt (rates, 0, "no progress bar showed a rate");
    free (out);
}

Test (driver_output, with_stdout_and_stderr_in_one_file_every_json_line_is_whole,
      .init = harness_setup, .fini = harness_teardown, .timeout = 180)
{
    harness_broker_t broker;
    s_grid (&broker);
    char path[512];
    harness_path (path, sizeof path, "both.log");
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    HARNESS_ASSERT (fd >= 0, "%s: %s", path, strerror (errno));
    pid_t pid = fork ();
    HARNESS_ASSERT (pid >= 0, "fork: %s", strerror (errno));
    if (pid == 0) {
        dup2 (fd, STDOUT_FILENO); // >both.log 2>&1
        dup2 (fd, STDERR_FILENO);
        s_exec_driver (&broker);
    }
    close (fd);
    // Status lines mid-run: the broker paused past three heartbeats, the
    // driver says it lost it, then that it is back.
    int64_t deadline = s_now_ms () + 60000;
    while (harness_count_lines (path) < 2000 && s_now_ms () < deadline)
        usleep (20 * 1000);
    HARNESS_ASSERT (harness_count_lines (path) >= 2000, "no results within 60 s");
    harness_signal (broker.pid, SIGSTOP);
    struct timespec pause = { 1, 500 * 1000 * 1000 }; // the fault: a 1.5 s freeze
    nanosleep (&pause, NULL);
    harness_signal (broker.pid, SIGCONT);
    int code = s_reap (pid, 120000);
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);

    char *text = harness_read_file (path);
    cr_assert_not_null (text);
    long json = 0, status = 0;
    unsigned char *seen = calloc (TASKS, 1);
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        if (strncmp (line, "keel-driver:", 12) == 0) {
            status++;
            continue;
        }
        long long task = -1;
        cr_assert (line[0] == '{' && line[strlen (line) - 1] == '}'
                       && harness_json_int (line, "task", &task) && task >= 0 && task < TASKS,
                   "a line is neither a whole JSON line nor a status line: '%.200s'", line);
        cr_assert (!seen[task], "task %lld twice", task);
        seen[task] = 1;
        json++;
    }
    cr_log_info ("%ld JSON lines, %ld status lines", json, status);
    cr_assert_eq (json, TASKS);
    cr_assert_geq (status, 2, "no status line came mid-run (only %ld in all)", status);
    free (seen);
    free (text);
}
