/*  fuzz_spool.c — libFuzzer target for the engine's result spool files
    (engine/spool.c), read back at engine start by keel_outbox_load into
    the held table (engine/held.c), exactly as engine/daemon.c does.

    Each input is the content of one spool file, StateDir/spool/42, in a
    private temporary state directory (the seeds are real spooled results
    of execution 42). Loading must never crash or leak; a file that does
    not decode must be set aside as 42.bad. Invariants when it loads:
      - exactly one execution is held, execution 42, DONE and spooled;
      - its Result, as the engine sends it at login, encodes and decodes
        (the broker's own decoder) with the same ids, status and output.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "held.h"
#include "log.h"
#include "outbox.h"
#include "spool.h"
#include "wire.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

#define S_MAX_BYTES (64 * 1024 * 1024) // MaxMessageSize's default order

static char s_state_dir[256];
static char s_file[300], s_bad[310];

static void
s_cleanup (void)
{
    char path[300];
    unlink (s_file);
    unlink (s_bad);
    snprintf (path, sizeof path, "%s/spool", s_state_dir);
    rmdir (path);
    rmdir (s_state_dir);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    keel_log_init (KEEL_LOG_ERROR);
    const char *tmp = getenv ("TMPDIR");
    if (access ("/dev/shm", W_OK) == 0)
        tmp = "/dev/shm"; // no disk writes per input
    snprintf (s_state_dir, sizeof s_state_dir, "%s/keel-fuzz-spool-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp (s_state_dir))
        abort ();
    snprintf (s_file, sizeof s_file, "%s/spool/42", s_state_dir);
    snprintf (s_bad, sizeof s_bad, "%s.bad", s_file);
    atexit (s_cleanup);
    return 0;
}

static bool
s_online (void *arg)
{
    (void) arg;
    return false;
}

static keel_err
s_send (void *arg, keel_env_t *env)
{
    (void) arg;
    (void) env;
    return KEEL_ERR_IO;
}

static void
s_stop (void *arg, uint64_t execution_id)
{
    (void) arg;
    (void) execution_id;
}

static const keel_outbox_ops_t s_ops = { s_online, s_send, s_stop };

//  The loaded execution's Result, as sent at login, through the broker's decoder.
static void
s_check_held (keel_held_t *held)
{
    if (keel_held_size (held) != 1)
        abort ();
    keel_held_task_t *task = keel_held_at (held, 0);
    if (task->execution_id != 42 || !keel_held_is_done (task) || !task->spooled)
        abort ();
    Keel__Result result;
    keel_held_result_view (task, &result);
    keel_msg_t msg;
    zframe_t *frame = keel_wire_encode (keel_msg_result (&msg, &result));
    if (!frame)
        abort ();
    keel_error_t err;
    keel_env_t *env = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
    if (!env) {
        fprintf (stderr, "a loaded spool file does not go out again: %s\n", err.text);
        abort ();
    }
    const Keel__Result *r = env->result;
    if (env->body_case != KEEL__ENVELOPE__BODY_RESULT || r->execution_id != 42
        || r->task_id != task->task_id || strcmp (r->service_id, task->service_id) != 0
        || (r->status == KEEL__TASK_STATUS__STATUS_OK) != task->ok)
        abort ();
    if (task->ok
        && (r->output.len != task->output_size
            || (r->output.len && memcmp (r->output.data, task->output, r->output.len) != 0)))
        abort ();
    keel_wire_free (&env);
    zframe_destroy (&frame);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    keel_error_t err;
    keel_spool_t *spool = keel_spool_new (s_state_dir, &err);
    if (!spool)
        abort ();
    FILE *f = fopen (s_file, "wb");
    if (!f || (size && fwrite (data, 1, size, f) != size) || fclose (f) != 0)
        abort ();
    keel_held_t *held = keel_held_new ();
    keel_ratelimit_t task_log = KEEL_RATELIMIT_INIT (1000, 10);
    keel_outbox_t *outbox = keel_outbox_new (held, spool, "fuzz-engine", &task_log, &s_ops, NULL);
    if (!held || !outbox)
        abort ();
    int loaded = keel_outbox_load (outbox, S_MAX_BYTES);
    if (loaded == 1)
        s_check_held (held);
    else if (loaded != 0 || keel_held_size (held) != 0 || access (s_bad, F_OK) != 0)
        abort (); // refused, but not set aside
    keel_outbox_destroy (&outbox);
    keel_held_destroy (&held);
    unlink (s_file);
    unlink (s_bad);
    keel_spool_destroy (&spool);
    return 0;
}
