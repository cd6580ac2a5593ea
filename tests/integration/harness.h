/*  harness.h — a small library for Keel integration tests.

    Integration tests start the real programs (keel-broker, keel-engine,
    keel-driver, keel-admin from KEEL_BIN_DIR) on free loopback ports, inject
    faults (kill -9, SIGSTOP/SIGCONT, garbage frames) and check what the
    programs print. Each test gets its own temporary directory; every process
    the test starts is recorded by PID and killed by PID at teardown (never by
    name). Every wait has a deadline; nothing here sleeps to synchronise:
    harness_poll_until re-checks a condition until it holds or time runs out.

    Use from Criterion:
        Test (batch, delivers_every_result_once,
              .init = harness_setup, .fini = harness_teardown, .timeout = 120)
    and HARNESS_ASSERT instead of cr_assert where the daemons' logs would help
    to explain a failure: it prints their tails before failing.

    The harness keeps one registry of processes and one temp dir per test
    process (Criterion runs each test in its own process), file-static in
    harness.c: that is the test's whole world, torn down at the end.
*/
#ifndef KEEL_HARNESS_H
#define KEEL_HARNESS_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <criterion/criterion.h>

#define HARNESS_MAX_PROCS 64

// Fails the test like cr_assert, printing the daemons' log tails first.
#define HARNESS_ASSERT(cond, ...)                                                                  \
    do {                                                                                           \
        bool harness_ok_ = (cond);                                                                 \
        if (!harness_ok_)                                                                          \
            harness_dump_logs ();                                                                  \
        cr_assert (harness_ok_, __VA_ARGS__);                                                      \
    } while (0)

// ------------------------------------------------------------ Security

// KEEL_TEST_SECURITY=curve runs every process the harness starts with
// Security=curve (harness_curve.c): harness_setup makes one certificate
// per role in the test's keys/ directory (broker.key, driver.key,
// engine.key, admin.key, and authorized-drivers/, -engines/, -admins/
// holding the public parts), each program gets its role's settings in its
// environment, the test process the driver's (KEEL_DSSecurity, ...).
// harness_curve: whether this run is in curve mode. harness_key: the path
// of keys/NAME. harness_curve_setup (called by harness_setup) and
// harness_curve_env (the environment for a program, built before a fork)
// are the harness's own.
bool harness_curve (void);
char *harness_key (char *buf, size_t size, const char *name);
void harness_curve_setup (const char *dir);
char **harness_curve_env (const char *program);

// ------------------------------------------------------------ lifecycle

// Creates the test's temp dir. Criterion .init.
void harness_setup (void);
// Stops every process the test started (SIGTERM, then SIGKILL after a
// deadline), then removes the temp dir (kept when KEEL_TEST_KEEP is set).
// When a daemon's stderr holds a sanitizer report (ASan build), prints it
// and aborts, which fails the run (Criterion ignores assertions in .fini).
// Criterion .fini; also safe to call twice.
void harness_teardown (void);

// The test's temp dir.
const char *harness_dir (void);
// Writes "<temp dir>/<name>" into buf and returns buf.
char *harness_path (char *buf, size_t size, const char *name);

// A free loopback TCP port (bind port 0, read it, close). Never returns the
// same port twice in one test process. Returns 0 on failure.
int harness_free_port (void);

// ------------------------------------------------------------ processes

// Starts a program in the background: program without a '/' is taken from
// KEEL_BIN_DIR; argv is NULL-terminated and does not include argv[0].
// stdout goes to <dir>/<name>.out and stderr to <dir>/<name>.err (appended,
// so a restart under the same name keeps the earlier log). The child dies
// with the test process (PR_SET_PDEATHSIG). Returns the pid, or -1.
pid_t harness_spawn (const char *name, const char *program, const char *const argv[]);

// Sends sig to a process the test started.
void harness_signal (pid_t pid, int sig);

// kill -9 and reap. Returns true when the process is gone.
bool harness_kill9 (pid_t pid);

// SIGTERM, wait up to timeout_ms, then SIGKILL. Returns the exit code as
// harness_wait_exit does, or -1 if it could not be reaped.
int harness_stop (pid_t pid, int timeout_ms);

// Waits up to timeout_ms for the process to exit. Returns true and sets
// *code (exit status, or 128 + signal) when it exited in time.
bool harness_wait_exit (pid_t pid, int timeout_ms, int *code);

// True while the process has not exited (reaps it if it has).
bool harness_alive (pid_t pid);

// The output of a program run to completion.
typedef struct {
    int code;  // exit code, 128 + signal, or -1 when it timed out (then killed)
    char *out; // stdout (NUL-terminated, never NULL after a run)
    char *err; // stderr
    int64_t elapsed_ms;
} harness_result_t;

// Runs a program to completion (at most timeout_ms, then kill -9) and
// captures its stdout and stderr. Returns res->code.
int harness_run (harness_result_t *res, int timeout_ms, const char *program,
                 const char *const argv[]);
void harness_result_free (harness_result_t *res);

// ------------------------------------------------------------ files, polling

// Reads a whole file (NULL if it cannot be read). Caller frees.
char *harness_read_file (const char *path);
// Writes text to <dir>/<name>; returns the full path in buf.
char *harness_write_file (char *buf, size_t size, const char *name, const char *text);
// Number of complete lines in a file (0 when it does not exist).
long harness_count_lines (const char *path);

// Calls fn(arg) every 20 ms until it returns true or timeout_ms passes.
// Returns the last answer of fn.
typedef bool (harness_cond_fn) (void *arg);
bool harness_poll_until (harness_cond_fn *fn, void *arg, int timeout_ms);

// Polls (every 20 ms, up to timeout_ms) until <dir>/<name> (a process's
// log, "engine1.err") holds text at least `times` times (0 counts as 1).
// Returns whether it does; timeout_ms 0 looks once.
bool harness_wait_log (const char *name, const char *text, int times, int timeout_ms);

// Prints the last lines of every process's stdout/stderr to stderr.
void harness_dump_logs (void);

// ------------------------------------------------------------ Keel helpers

typedef struct {
    pid_t pid;
    char name[32];
    int port;
    int admin_port;
    char endpoint[64]; // tcp://127.0.0.1:PORT
    char admin_endpoint[64];
    char store[512]; // sqlite:<dir>/<name>.db, or the Store= of the extra settings
} harness_broker_t;

// Starts keel-broker on two free ports with Store=sqlite:<dir>/<name>.db plus
// the extra "KEY=VALUE" settings (NULL-terminated list, or NULL; a Store=
// there replaces the default, in b->store too), and waits
// (up to 15 s) until `keel-admin --json status` answers. Returns true when
// the broker is up.
bool harness_broker_start (harness_broker_t *b, const char *name, const char *const sets[]);

// Starts keel-broker again on b's ports, store and name (after a kill or a
// stop) with the extra settings, and waits (up to 15 s) until status
// answers. Its logs append to the first run's. Returns true when it is up.
bool harness_broker_restart (harness_broker_t *b, const char *const sets[]);

// Starts keel-engine connected to the broker, StateDir=<dir>/<name>.state,
// with the extra settings. Returns the pid or -1.
pid_t harness_engine_start (const harness_broker_t *b, const char *name, int slots,
                            const char *const sets[]);

// Runs keel-admin -e <admin endpoint> [--json] ARGS... (NULL-terminated) with
// a 3 s answer timeout. Returns the exit code.
int harness_admin (const harness_broker_t *b, harness_result_t *res, bool json, ...)
    __attribute__ ((sentinel));

// Reads an integer field from `keel-admin --json status` ("engines.online",
// "counters.malformed_messages"). Returns true and *value when it answered.
bool harness_status_int (const harness_broker_t *b, const char *path, long long *value);

// Waits until the integer at path of `keel-admin --json status`
// ("counters.auth_refused") is at least n.
bool harness_wait_status (const harness_broker_t *b, const char *path, long long n, int timeout_ms);

// Waits until status shows at least n engines online.
bool harness_wait_engines (const harness_broker_t *b, long long n, int timeout_ms);

// ------------------------------------------------------------ JSON

// Finds "key":value in a JSON object; path is dot-separated for nested
// objects ("counters.malformed_messages"). Copies the value into out: strings
// unquoted (common escapes decoded), anything else as its raw text. Returns
// false when the path is absent or the text is not a JSON object.
bool harness_json_get (const char *json, const char *path, char *out, size_t size);
bool harness_json_int (const char *json, const char *path, long long *value);

// ------------------------------------------------------------ results

// Asserts keel-driver's output in <dir>/<name>: one line per task
// 0..tasks-1, each exactly once, with status ok, and an output that is
// `output` (NULL: any; "2*id": twice the task id, as `double` gives).
// The failure names the first bad line, the duplicated or missing task.
void harness_assert_each_once (const char *name, long tasks, const char *output);

#endif
