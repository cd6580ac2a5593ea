/*  keel_driver.c — keel-driver, the batch-job CLI (DESIGN §10).

    Streams inputs into one service while printing results as they come:
    at most DSMaxUnaccepted tasks wait for their result at any time, so a
    job of any size runs in bounded memory. One JSON line per task on
    stdout (completion order); status, progress and the summary on stderr.

    Lines stay whole. stdout gets whole lines only, a batch of them per
    write(2) (~4 KiB, or what came within 100 ms; each line at once when
    stdout is a terminal), never a buffer cut mid-line: with stdout and stderr redirected to one file
    (`>log 2>&1`), what stderr writes (here, or the library's log from its
    own thread) lands between lines, never inside one. The progress bar
    (only when stderr is a terminal) is cleared before anything else is
    written to that terminal, a JSON line included when stdout is the same
    terminal, so the two never share a line.

    A result is acknowledged to the broker only once its line is written
    (keel_driver_hold_acks): killed -9 with lines still in its buffer,
    keel-driver leaves their results at the broker for `attach`.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <czmq.h>

#include "cli.h"
#include "driver_config.h"
#include "json.h"
#include "jsonl.h"
#include "keel/driver.h"
#include "log.h"
#include "submit_args.h"

#define S_PROGRAM     "keel-driver"
#define S_PROGRESS_MS 200
#define S_OUT_MAX     (64 * 1024) // stdout buffer (whole lines)
#define S_OUT_BATCH   4096        // stdout bytes gathered before a write
#define S_OUT_MS      100         // ... or this long after the last write

typedef struct {
    const keel_submit_args_t *args;
    FILE *file; // KEEL_INPUT_FILE
    char *line;
    size_t line_cap;
    int64_t produced; // inputs produced so far
    char number[32];
    int read_errno; // KEEL_INPUT_FILE: a read failed (not the end): errno
    bool ended;     // every input was produced (or the file could not be read further)
} s_inputs_t;

typedef struct {
    bool tty;        // stderr is a terminal: progress bar
    bool shared_tty; // ... and stdout is the same terminal
    bool out_tty;    // stdout is a terminal: each line written at once
    bool progress_shown;
    int64_t last_progress;
    int64_t started; // monotonic ms, for the rate
    char out[S_OUT_MAX];
    size_t out_len;
    int64_t out_at; // monotonic ms of the last stdout write
    int64_t total;  // -1 when unknown (input file)
    uint64_t ok;
    uint64_t failed;
    const char *output_dir;
    keel_jsonl_buf_t line;
    bool write_failed;
    keel_driver_t *driver; // told (keel_driver_ack_taken) once lines are written
    bool gave_up;          // NO_BROKER came: the job ends, later statuses are not news
    int64_t deadline;      // --timeout: monotonic ms; INT64_MAX: none
} s_job_t;

//  Why a run stopped before its work was done.
typedef enum { S_STOP_NONE = 0, S_STOP_INTERRUPT, S_STOP_TIMEOUT } s_stop_t;

//  SIGINTs received. The first asks the job to stop (detach or cancel);
//  the second ends the process at once.
static volatile sig_atomic_t s_interrupts;

static void
s_on_sigint (int sig)
{
    (void) sig;
    if (s_interrupts++ > 0)
        _exit (KEEL_EXIT_INTERRUPTED);
}

static void
s_catch_sigint (void)
{
    zsys_handler_set (NULL); // CZMQ's own handler would only set zsys_interrupted
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_sigint;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGINT, &sa, NULL); // no SA_RESTART: a wait ends with EINTR
}

static s_stop_t
s_stopping (const s_job_t *job)
{
    if (s_interrupts)
        return S_STOP_INTERRUPT;
    if (zclock_mono () >= job->deadline)
        return S_STOP_TIMEOUT;
    return S_STOP_NONE;
}

//  Next input; false at the end. *data stays valid until the next call.
static bool
s_inputs_next (s_inputs_t *in, const char **data, size_t *size)
{
    const keel_submit_args_t *args = in->args;
    if (in->ended)
        return false;
    switch (args->input) {
        case KEEL_INPUT_TEXT:
            if (in->produced >= args->count)
                return in->ended = true, false;
            *data = args->input_text;
            *size = strlen (args->input_text);
            break;
        case KEEL_INPUT_RANGE: {
            if (in->produced >= args->range_to - args->range_from)
                return in->ended = true, false;
            //  Not snprintf: one per task showed in W1's profile.
            char *end = in->number + sizeof in->number;
            char *p = keel_json_int_text ((int64_t) (args->range_from + in->produced), end);
            *data = p;
            *size = (size_t) (end - p);
            break;
        }
        case KEEL_INPUT_FILE: {
            errno = 0;
            ssize_t n = getline (&in->line, &in->line_cap, in->file);
            if (n < 0) {
                if (ferror (in->file))
                    in->read_errno = errno ? errno : EIO;
                return in->ended = true, false;
            }
            if (n > 0 && in->line[n - 1] == '\n')
                in->line[--n] = 0;
            if (n > 0 && in->line[n - 1] == '\r')
                in->line[--n] = 0;
            *data = in->line;
            *size = (size_t) n;
            break;
        }
        default:
            return in->ended = true, false;
    }
    in->produced++;
    return true;
}

static void
s_clear_progress (s_job_t *job)
{
    if (job->progress_shown) {
        fputs ("\r\033[K", stderr);
        job->progress_shown = false;
    }
}

//  The results taken so far are written: the broker may forget them. (A
//  line that could not be written leaves its result at the broker, for
//  attach.)
static void
s_ack_written (s_job_t *job)
{
    if (job->driver && !job->write_failed)
        keel_driver_ack_taken (job->driver, NULL);
}

//  Writes the gathered stdout lines (whole lines only), then acknowledges
//  their results: a driver killed -9 before the write leaves them at the
//  broker.
static void
s_out_flush (s_job_t *job)
{
    size_t off = 0;
    while (off < job->out_len) {
        ssize_t n = write (STDOUT_FILENO, job->out + off, job->out_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            job->write_failed = true;
            break;
        }
        off += (size_t) n;
    }
    job->out_len = 0;
    job->out_at = zclock_mono ();
    s_ack_written (job);
}

//  One line to stdout. A line longer than the buffer goes out alone.
static void
s_out_line (s_job_t *job, const char *line, size_t len)
{
    if (job->shared_tty)
        s_clear_progress (job);
    if (job->out_len + len > sizeof job->out)
        s_out_flush (job);
    if (len > sizeof job->out) {
        for (size_t off = 0; off < len;) {
            ssize_t n = write (STDOUT_FILENO, line + off, len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                job->write_failed = true;
                return;
            }
            off += (size_t) n;
        }
        s_ack_written (job);
        return;
    }
    memcpy (job->out + job->out_len, line, len);
    job->out_len += len;
    if (job->out_tty || job->out_len >= S_OUT_BATCH)
        s_out_flush (job);
}

//  Before a line on stderr: the bar goes, and the lines gathered for stdout
//  go first (so a log keeps the order things happened in).
static void
s_before_stderr (s_job_t *job)
{
    s_clear_progress (job);
    s_out_flush (job);
}

//  "1:05" or "2:03:04".
static void
s_duration (char *out, size_t size, double seconds)
{
    long s = seconds < 0 ? 0 : seconds > 359999 ? 359999 : (long) (seconds + 0.5);
    if (s >= 3600)
        snprintf (out, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf (out, size, "%ld:%02ld", s / 60, s % 60);
}

static void
s_progress (s_job_t *job, uint64_t submitted, bool force)
{
    if (!job->tty)
        return;
    int64_t now = zclock_mono ();
    if (!force && now - job->last_progress < S_PROGRESS_MS)
        return;
    job->last_progress = now;
    s_out_flush (job); // the bar after the lines it follows
    uint64_t done = job->ok + job->failed;
    double elapsed = (now - job->started) / 1000.0;
    double rate = elapsed > 0 ? done / elapsed : 0;
    char speed[64] = "";
    if (done > 0 && elapsed >= 0.5) {
        snprintf (speed, sizeof speed, " %.0f/s", rate);
        if (job->total > 0 && rate > 0 && (int64_t) done < job->total) {
            char eta[32];
            s_duration (eta, sizeof eta, (double) (job->total - (int64_t) done) / rate);
            size_t used = strlen (speed);
            snprintf (speed + used, sizeof speed - used, " ETA %s", eta);
        }
    }
    if (job->total > 0) {
        int width = 30;
        int filled = (int) ((double) done / (double) job->total * width);
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        fprintf (stderr, "\r[%s] %" PRIu64 "/%" PRId64 " ok %" PRIu64 " failed %" PRIu64 "%s\033[K",
                 bar, done, job->total, job->ok, job->failed, speed);
    }
    else
        fprintf (stderr,
                 "\r%" PRIu64 " done of %" PRIu64 " submitted, ok %" PRIu64 " failed %" PRIu64
                 "%s\033[K",
                 done, submitted, job->ok, job->failed, speed);
    job->progress_shown = true;
}

//  Every status on stderr as it comes: "connecting to ..." at once and while
//  no broker answers, "connected to ...", failovers, notices. NO_BROKER is
//  said by s_give_up, which ends the job; what the library tries after it
//  ("connecting to" the primary again) is not what keel-driver does.
static void
s_on_status (const keel_status_t *status, void *arg)
{
    s_job_t *job = (s_job_t *) arg;
    if (status->kind == KEEL_STATUS_NO_BROKER)
        job->gave_up = true;
    if (job->gave_up || status->kind == KEEL_STATUS_SERVICE_INFO)
        return; // wait says what it learnt itself
    s_before_stderr (job);
    if (status->kind == KEEL_STATUS_NOTICE)
        fprintf (stderr, S_PROGRAM ": notice (%s): %s\n",
                 status->level == KEEL_LEVEL_ERROR     ? "error"
                 : status->level == KEEL_LEVEL_WARNING ? "warning"
                                                       : "info",
                 status->text);
    else
        fprintf (stderr, S_PROGRAM ": %s\n", status->text);
}

//  The last line on stderr. It counts the tasks asked for, not only those
//  that answered: a job cut short says how many were not done.
static void
s_summary (const s_job_t *job, const s_inputs_t *inputs, double seconds)
{
    uint64_t done = job->ok + job->failed;
    uint64_t requested = job->total >= 0 ? (uint64_t) job->total : (uint64_t) inputs->produced;
    if (requested < done)
        requested = done;
    if (requested == done) {
        fprintf (stderr,
                 S_PROGRAM ": %" PRIu64 " tasks: %" PRIu64 " ok, %" PRIu64 " failed in %.1f s\n",
                 done, job->ok, job->failed, seconds);
        return;
    }
    bool partial_input = job->total < 0 && !inputs->ended;
    fprintf (stderr,
             S_PROGRAM ": %" PRIu64 " tasks%s: %" PRIu64 " ok, %" PRIu64 " failed, %" PRIu64
                       " not done in %.1f s%s\n",
             requested, partial_input ? " read" : "", job->ok, job->failed, requested - done,
             seconds, partial_input ? " (the rest of the input was not read)" : "");
}

static void
s_write_result (s_job_t *job, const keel_result_t *result)
{
    char path[4096];
    const char *output_path = NULL;
    if (job->output_dir && result->status == KEEL_TASK_OK) {
        snprintf (path, sizeof path, "%s/%" PRIu64 ".out", job->output_dir, result->task_id);
        FILE *out = fopen (path, "wb");
        bool written =
            out && fwrite (result->output, 1, result->output_size, out) == result->output_size;
        if (out && fclose (out) != 0)
            written = false;
        if (!written) {
            //  The line then carries the output itself: the result is not lost.
            s_before_stderr (job);
            fprintf (stderr, S_PROGRAM ": cannot write %s: %s\n", path, strerror (errno));
            job->write_failed = true;
        }
        else
            output_path = path;
    }
    keel_jsonl_format_result (&job->line, result, output_path);
    if (job->line.failed)
        job->write_failed = true;
    else
        s_out_line (job, job->line.data, job->line.len);
    if (result->status == KEEL_TASK_OK)
        job->ok++;
    else
        job->failed++;
}

static keel_settings_t *
s_load_settings (const keel_submit_args_t *args, keel_error_t *err)
{
    //  --set values, then --broker / --log-level, which name keys themselves.
    int nsets = 0;
    char **sets = calloc ((size_t) args->nsets + 2, sizeof (char *));
    char *broker = NULL, *level = NULL;
    if (!sets)
        return NULL;
    for (int i = 0; i < args->nsets; i++)
        sets[nsets++] = args->sets[i];
    if (args->broker && asprintf (&broker, "DSPrimaryBroker=%s", args->broker) > 0)
        sets[nsets++] = broker;
    if (args->log_level && asprintf (&level, "LogLevel=%s", args->log_level) > 0)
        sets[nsets++] = level;
    keel_settings_t *settings =
        keel_cli_load (keel_driver_settings (), args->config_path, sets, nsets, err);
    free (broker);
    free (level);
    free (sets);
    for (int i = 0; settings && i < args->nfailovers; i++) {
        const char *list = keel_driver_cfg_DSFailoverBrokers (settings);
        char *value = NULL;
        if (asprintf (&value, "%s%s%s", list, *list ? "," : "", args->failovers[i]) < 0
            || keel_settings_set (settings, "DSFailoverBrokers", value, "--failover", err)
                   != KEEL_OK)
            keel_settings_destroy (&settings);
        free (value);
    }
    return settings;
}

static int
s_usage_error (const char *message)
{
    fprintf (stderr, S_PROGRAM ": %s\n" S_PROGRAM ": try '" S_PROGRAM " --help'\n", message);
    return KEEL_EXIT_USAGE;
}

//  Submits while fewer than window tasks wait; prints results as they come.
//  Ends the job on an error from the library (no broker reachable: exit 3;
//  anything else: 1). Results the library already holds were acknowledged
//  to the broker, so they are printed first: the broker will not send them
//  again, and the application must see each result once.
static int
s_give_up (keel_driver_t *driver, s_job_t *job, keel_err rc, const char *text)
{
    char why[sizeof ((keel_error_t *) 0)->text];
    snprintf (why, sizeof why, "%s", text);
    keel_result_t *result = NULL;
    for (int k = 0; k < 10000000; k++) {
        if (keel_driver_next_result (driver, 0, &result, NULL) != KEEL_OK || !result)
            break;
        s_write_result (job, result);
        keel_result_destroy (&result);
    }
    s_before_stderr (job);
    fprintf (stderr, S_PROGRAM ": %s\n", why);
    return rc == KEEL_ERR_TIMEOUT ? KEEL_EXIT_NOBROKER : KEEL_EXIT_FAILED;
}

//  Takes every result the library already holds (acknowledged to the
//  broker: they must be written now).
static void
s_take_ready (keel_driver_t *driver, s_job_t *job)
{
    keel_result_t *result = NULL;
    for (int k = 0; k < 10000000; k++) {
        if (keel_driver_next_result (driver, 0, &result, NULL) != KEEL_OK || !result)
            break;
        s_write_result (job, result);
        keel_result_destroy (&result);
    }
}

static int
s_run (keel_driver_t *driver, keel_service_t *service, s_inputs_t *inputs, s_job_t *job,
       uint64_t window, s_stop_t *stop_p)
{
    bool more = true;
    keel_error_t err = { "" };
    *stop_p = S_STOP_NONE;
    //  Ends when inputs run out and every result is in, on an error, or
    //  when stopped (Ctrl-C, --timeout).
    for (uint64_t turn = 0; more || keel_driver_outstanding (driver) > 0; turn++) {
        if ((*stop_p = s_stopping (job)) != S_STOP_NONE) {
            s_take_ready (driver, job);
            return KEEL_EXIT_OK;
        }
        for (uint64_t i = 0; more && i < window && keel_driver_outstanding (driver) < window; i++) {
            const char *data;
            size_t size;
            more = s_inputs_next (inputs, &data, &size);
            if (more && keel_service_submit (service, data, size, NULL, &err) != KEEL_OK) {
                s_before_stderr (job);
                fprintf (stderr, S_PROGRAM ": %s\n", err.text);
                return KEEL_EXIT_FAILED;
            }
        }
        if (!more && !keel_service_submitted (service))
            break;
        if (!more)
            keel_service_close (service, NULL);
        keel_result_t *result = NULL;
        keel_err rc = keel_driver_next_result (driver, 100, &result, &err);
        if (rc == KEEL_ERR_INTERRUPTED)
            continue; // a signal: the next turn looks at it
        if (rc != KEEL_OK)
            return s_give_up (driver, job, rc, err.text);
        //  Take every result that is ready before submitting more.
        for (int k = 0; result && k < 100000; k++) {
            s_write_result (job, result);
            keel_result_destroy (&result);
            rc = keel_driver_next_result (driver, 0, &result, &err);
            if (rc == KEEL_ERR_INTERRUPTED)
                break;
            if (rc != KEEL_OK)
                return s_give_up (driver, job, rc, err.text);
        }
        //  Results trickling in reach stdout within S_OUT_MS.
        if (job->out_len && zclock_mono () - job->out_at >= S_OUT_MS)
            s_out_flush (job);
        s_progress (job, keel_service_submitted (service), false);
    }
    return KEEL_EXIT_OK;
}

//  The options that reach the same broker(s), for the commands printed
//  after a detach ("-c FILE --broker URL ...").
static void
s_broker_options (const keel_submit_args_t *args, char *out, size_t size)
{
    size_t used = 0;
    out[0] = 0;
    if (args->config_path)
        used += (size_t) snprintf (out + used, size - used, " -c %s", args->config_path);
    for (int i = 0; i < args->nsets && used < size; i++)
        if (strncmp (args->sets[i], "DS", 2) == 0)
            used += (size_t) snprintf (out + used, size - used, " --set %s", args->sets[i]);
    if (args->broker && used < size)
        used += (size_t) snprintf (out + used, size - used, " --broker %s", args->broker);
    for (int i = 0; i < args->nfailovers && used < size; i++)
        used += (size_t) snprintf (out + used, size - used, " --failover %s", args->failovers[i]);
}

//  Waits until keel_service_detach has finished (every task stored), taking
//  the results the library handed over meanwhile. Bounded by DSBrokerTimeout
//  through the library: no broker → KEEL_EXIT_NOBROKER.
static int
s_finish_detach (keel_driver_t *driver, keel_service_t *service, s_job_t *job)
{
    keel_error_t err = { "" };
    if (keel_service_detach (service, &err) != KEEL_OK
        || keel_service_close (service, &err) != KEEL_OK) {
        s_before_stderr (job);
        fprintf (stderr, S_PROGRAM ": %s\n", err.text);
        return KEEL_EXIT_FAILED;
    }
    //  Each turn waits up to 100 ms; the library ends the wait with "no
    //  broker reachable" after a whole pass over the broker list.
    for (uint64_t turn = 0; !keel_service_detached (service); turn++) {
        keel_result_t *result = NULL;
        keel_err rc = keel_driver_next_result (driver, 100, &result, &err);
        if (rc == KEEL_ERR_INTERRUPTED)
            continue;
        if (rc != KEEL_OK)
            return s_give_up (driver, job, rc, err.text);
        if (result) {
            s_write_result (job, result);
            keel_result_destroy (&result);
        }
    }
    s_take_ready (driver, job);
    return KEEL_EXIT_OK;
}

//  After a detach: where the service is and how to get at it.
static void
s_print_detached (const keel_submit_args_t *args, const char *service_id, const char *why)
{
    char options[1024];
    s_broker_options (args, options, sizeof options);
    fprintf (stderr,
             S_PROGRAM ": %s: service %s detached; it runs on at the broker and keeps its results "
                       "for RetentionHours after the last one\n" S_PROGRAM
                       ": collect its results: keel-driver%s attach %s\n" S_PROGRAM
                       ": or cancel it:        keel-admin cancel %s\n",
             why, service_id, options, service_id, service_id);
}

//  A run stopped by Ctrl-C or --timeout: detach (or cancel) the service,
//  say where it is. Returns the exit code.
static int
s_stop_run (keel_driver_t *driver, keel_service_t *service, s_job_t *job,
            const keel_submit_args_t *args, s_stop_t stop)
{
    const char *why = stop == S_STOP_INTERRUPT ? "interrupted" : "--timeout passed";
    int done = stop == S_STOP_INTERRUPT ? KEEL_EXIT_INTERRUPTED : KEEL_EXIT_FAILED;
    if (stop == S_STOP_INTERRUPT && args->cancel_on_interrupt) {
        keel_error_t err = { "" };
        keel_service_cancel (service, &err);
        //  The waiting tasks come back cancelled at once; CancelService
        //  leaves with the driver's last messages.
        keel_driver_wait_all (driver, 2000, NULL);
        s_take_ready (driver, job);
        s_before_stderr (job);
        fprintf (stderr, S_PROGRAM ": interrupted: service %s cancelled\n",
                 keel_service_id (service));
        return done;
    }
    s_before_stderr (job);
    fprintf (stderr, S_PROGRAM ": %s: detaching service %s (waiting until every task is stored)\n",
             why, keel_service_id (service));
    int code = s_finish_detach (driver, service, job);
    if (code != KEEL_EXIT_OK)
        return code;
    s_out_flush (job);
    s_before_stderr (job);
    s_print_detached (args, keel_service_id (service), why);
    return done;
}

//  submit --detach: every input submitted with the service detached from
//  the start (no result is taken here), then the service id on stdout once
//  every task is stored.
static int
s_run_detached (keel_driver_t *driver, keel_service_t *service, s_inputs_t *inputs, s_job_t *job,
                const keel_submit_args_t *args)
{
    keel_error_t err = { "" };
    if (keel_service_detach (service, &err) != KEEL_OK) {
        fprintf (stderr, S_PROGRAM ": %s\n", err.text);
        return KEEL_EXIT_FAILED;
    }
    const char *data;
    size_t size;
    for (uint64_t n = 0; s_inputs_next (inputs, &data, &size); n++) {
        if (keel_service_submit (service, data, size, NULL, &err) != KEEL_OK) {
            fprintf (stderr, S_PROGRAM ": %s\n", err.text);
            return KEEL_EXIT_FAILED;
        }
        if (n % 4096 == 4095 && keel_driver_poll (driver, 0, &err) == KEEL_ERR_TIMEOUT)
            return s_give_up (driver, job, KEEL_ERR_TIMEOUT, err.text);
        if (s_stopping (job) != S_STOP_NONE)
            break; // what was read is submitted and detached
    }
    s_stop_t stop = s_stopping (job);
    int code = s_finish_detach (driver, service, job);
    if (code != KEEL_EXIT_OK)
        return code;
    if (stop != S_STOP_NONE) {
        s_print_detached (args, keel_service_id (service),
                          stop == S_STOP_INTERRUPT ? "interrupted" : "--timeout passed");
        return stop == S_STOP_INTERRUPT ? KEEL_EXIT_INTERRUPTED : KEEL_EXIT_FAILED;
    }
    fprintf (stderr, S_PROGRAM ": %" PRIu64 " tasks stored; service %s runs on detached\n",
             keel_service_submitted (service), keel_service_id (service));
    printf ("%s\n", keel_service_id (service));
    fflush (stdout);
    return KEEL_EXIT_OK;
}

//  attach: every result not collected yet (--all: every one stored), in
//  the same lines as submit.
static int
s_run_attach (keel_driver_t *driver, s_job_t *job, const keel_submit_args_t *args)
{
    keel_error_t err = { "" };
    keel_service_t *service = keel_session_attach (driver, args->service_id, args->all, &err);
    if (!service) {
        fprintf (stderr, S_PROGRAM ": %s\n", err.text);
        return KEEL_EXIT_USAGE;
    }
    keel_service_info_t info;
    //  Each turn waits up to 100 ms; bounded by --timeout, and by the
    //  library's "no broker reachable".
    for (uint64_t turn = 0;; turn++) {
        keel_service_info (service, &info);
        if (info.answered && !info.known)
            return KEEL_EXIT_NO_SERVICE; // the status line said why
        if (info.answered && keel_driver_outstanding (driver) == 0)
            break;
        s_stop_t stop = s_stopping (job);
        if (stop != S_STOP_NONE) {
            s_take_ready (driver, job);
            s_out_flush (job);
            s_before_stderr (job);
            fprintf (stderr,
                     S_PROGRAM ": %s: %" PRIu64 " result(s) not collected; attach again to "
                               "collect them\n",
                     stop == S_STOP_INTERRUPT ? "interrupted" : "--timeout passed",
                     keel_driver_outstanding (driver));
            return stop == S_STOP_INTERRUPT ? KEEL_EXIT_INTERRUPTED : KEEL_EXIT_FAILED;
        }
        keel_result_t *result = NULL;
        keel_err rc = keel_driver_next_result (driver, 100, &result, &err);
        if (rc == KEEL_ERR_INTERRUPTED)
            continue;
        if (rc != KEEL_OK)
            return s_give_up (driver, job, rc, err.text);
        for (int k = 0; result && k < 100000; k++) {
            s_write_result (job, result);
            keel_result_destroy (&result);
            if (keel_driver_next_result (driver, 0, &result, NULL) != KEEL_OK)
                break;
        }
        if (job->out_len && zclock_mono () - job->out_at >= S_OUT_MS)
            s_out_flush (job);
        s_progress (job, (uint64_t) (job->ok + job->failed + keel_driver_outstanding (driver)),
                    false);
    }
    return KEEL_EXIT_OK;
}

//  wait: until the service is complete; 0 when every task succeeded.
static int
s_run_wait (keel_driver_t *driver, s_job_t *job, const keel_submit_args_t *args)
{
    keel_error_t err = { "" };
    keel_service_t *service = keel_session_watch (driver, args->service_id, &err);
    if (!service) {
        fprintf (stderr, S_PROGRAM ": %s\n", err.text);
        return KEEL_EXIT_USAGE;
    }
    keel_service_info_t info;
    //  Each turn waits up to 200 ms; bounded by --timeout and the library.
    for (uint64_t turn = 0;; turn++) {
        keel_service_info (service, &info);
        if (info.answered && !info.known) {
            fprintf (stderr,
                     S_PROGRAM ": no such service %s: never submitted to this broker, or purged "
                               "after RetentionHours\n",
                     args->service_id);
            return KEEL_EXIT_NO_SERVICE;
        }
        if (info.answered && info.complete)
            break;
        s_stop_t stop = s_stopping (job);
        if (stop != S_STOP_NONE) {
            fprintf (stderr,
                     S_PROGRAM ": %s: service %s is not complete (%s, %" PRIu64 " of %" PRIu64
                               " tasks done)\n",
                     stop == S_STOP_INTERRUPT ? "interrupted" : "--timeout passed",
                     args->service_id, info.answered ? info.state : "no answer yet", info.done,
                     info.tasks);
            return stop == S_STOP_INTERRUPT ? KEEL_EXIT_INTERRUPTED : KEEL_EXIT_FAILED;
        }
        keel_err rc = keel_driver_poll (driver, 200, &err);
        if (rc != KEEL_OK && rc != KEEL_ERR_INTERRUPTED)
            return s_give_up (driver, job, rc, err.text);
    }
    fprintf (stderr,
             S_PROGRAM ": service %s complete (%s): %" PRIu64 " tasks, %" PRIu64 " ok, %" PRIu64
                       " failed, %" PRIu64 " result(s) not collected\n",
             args->service_id, info.state, info.tasks, info.done - info.failed, info.failed,
             info.unacked);
    return info.failed > 0 || info.done < info.tasks ? KEEL_EXIT_FAILED : KEEL_EXIT_OK;
}

int
main (int argc, char **argv)
{
    keel_submit_args_t args;
    keel_error_t err = { "" };
    if (keel_submit_args_parse (argc, argv, &args, &err) != KEEL_OK) {
        keel_submit_args_free (&args);
        return s_usage_error (err.text);
    }
    if (args.help) {
        keel_submit_args_usage (stdout);
        printf ("\n");
        keel_settings_print_help (keel_driver_settings (), stdout);
        keel_submit_args_free (&args);
        return KEEL_EXIT_OK;
    }
    if (args.config_markdown) {
        keel_settings_print_markdown (keel_driver_settings (), stdout);
        keel_submit_args_free (&args);
        return KEEL_EXIT_OK;
    }
    if (args.version) {
        keel_cli_print_version (S_PROGRAM, stdout);
        keel_submit_args_free (&args);
        return KEEL_EXIT_OK;
    }
    keel_settings_t *settings = s_load_settings (&args, &err);
    if (!settings) {
        fprintf (stderr, S_PROGRAM ": %s\n", err.text);
        keel_submit_args_free (&args);
        return KEEL_EXIT_USAGE;
    }
    keel_log_level_t level = KEEL_LOG_WARN;
    keel_log_level_parse (keel_driver_cfg_LogLevel (settings), &level);
    keel_log_init (level);

    s_inputs_t inputs = { .args = &args };
    //  s_job_t holds the stdout buffer: static, not on the stack.
    static s_job_t job;
    memset (&job, 0, sizeof job);
    job.tty = isatty (STDERR_FILENO);
    job.out_tty = isatty (STDOUT_FILENO);
    struct stat out_st, err_st;
    job.shared_tty = job.tty && job.out_tty && fstat (STDOUT_FILENO, &out_st) == 0
                     && fstat (STDERR_FILENO, &err_st) == 0 && out_st.st_rdev == err_st.st_rdev;
    job.output_dir = args.output_dir;
    job.total = -1;
    job.deadline = args.timeout_ms > 0 ? zclock_mono () + args.timeout_ms : INT64_MAX;
    int code = KEEL_EXIT_USAGE;
    keel_driver_t *driver = NULL;
    if (args.command == KEEL_COMMAND_SUBMIT && args.input == KEEL_INPUT_FILE) {
        inputs.file = streq (args.input_file, "-") ? stdin : fopen (args.input_file, "r");
        if (!inputs.file) {
            fprintf (stderr, S_PROGRAM ": --input-file: cannot open '%s': %s\n", args.input_file,
                     strerror (errno));
            goto done;
        }
        struct stat st;
        if (fstat (fileno (inputs.file), &st) == 0 && S_ISDIR (st.st_mode)) {
            fprintf (stderr, S_PROGRAM ": --input-file: '%s' is a directory\n", args.input_file);
            goto done;
        }
    }
    else if (args.command == KEEL_COMMAND_SUBMIT)
        job.total = args.input == KEEL_INPUT_TEXT ? args.count : args.range_to - args.range_from;
    if (args.output_dir) {
        struct stat st;
        if (stat (args.output_dir, &st) != 0 && mkdir (args.output_dir, 0777) != 0) {
            fprintf (stderr, S_PROGRAM ": --output-dir: cannot create '%s': %s\n", args.output_dir,
                     strerror (errno));
            goto done;
        }
        if (stat (args.output_dir, &st) != 0 || !S_ISDIR (st.st_mode)) {
            fprintf (stderr, S_PROGRAM ": --output-dir: '%s' is not a directory\n",
                     args.output_dir);
            goto done;
        }
        //  Find out now, not after the whole job ran, that no output can be written there.
        char probe[4096];
        snprintf (probe, sizeof probe, "%s/.keel-driver-XXXXXX", args.output_dir);
        int fd = mkstemp (probe);
        if (fd < 0) {
            fprintf (stderr, S_PROGRAM ": --output-dir: cannot write in '%s': %s\n",
                     args.output_dir, strerror (errno));
            goto done;
        }
        close (fd);
        unlink (probe);
    }
    s_catch_sigint ();
    driver = keel_driver_new_from_settings (settings, &err);
    if (!driver) {
        fprintf (stderr, S_PROGRAM ": %s\n", err.text);
        goto done;
    }
    keel_driver_set_status_handler (driver, s_on_status, &job);
    //  A result is acknowledged once its line is written, not when taken.
    if (keel_driver_hold_acks (driver, &err) != KEEL_OK) {
        fprintf (stderr, S_PROGRAM ": %s\n", err.text);
        goto done;
    }
    job.driver = driver;
    if (args.command != KEEL_COMMAND_SUBMIT) {
        int64_t began = job.started = zclock_mono ();
        if (args.command == KEEL_COMMAND_WAIT)
            code = s_run_wait (driver, &job, &args);
        else {
            code = s_run_attach (driver, &job, &args);
            s_out_flush (&job);
            s_clear_progress (&job);
            if (code == KEEL_EXIT_OK || code == KEEL_EXIT_INTERRUPTED
                || (code == KEEL_EXIT_FAILED && job.ok + job.failed > 0))
                s_summary (&job, &inputs, (zclock_mono () - began) / 1000.0);
            if (code == KEEL_EXIT_OK && (job.failed > 0 || job.write_failed))
                code = KEEL_EXIT_FAILED;
        }
        goto done;
    }
    keel_service_options_t options;
    keel_service_options_init (&options, args.service);
    if (args.has_priority)
        options.priority = args.priority;
    options.condition = args.require;
    if (args.has_max_attempts)
        options.max_attempts = args.max_attempts;
    keel_service_t *service = keel_driver_open_service (driver, &options, &err);
    if (!service) {
        fprintf (stderr, S_PROGRAM ": %s\n", err.text);
        goto done;
    }
    int64_t started = job.started = zclock_mono ();
    if (args.detach) {
        code = s_run_detached (driver, service, &inputs, &job, &args);
        goto done;
    }
    int64_t window = keel_driver_cfg_DSMaxUnaccepted (settings);
    s_stop_t stop = S_STOP_NONE;
    code = s_run (driver, service, &inputs, &job, (uint64_t) (window > 0 ? window : 1), &stop);
    if (code == KEEL_EXIT_OK && stop != S_STOP_NONE)
        code = s_stop_run (driver, service, &job, &args, stop);
    s_out_flush (&job);
    s_progress (&job, keel_service_submitted (service), true);
    s_clear_progress (&job);
    s_summary (&job, &inputs, (zclock_mono () - started) / 1000.0);
    if (inputs.read_errno)
        fprintf (stderr,
                 S_PROGRAM
                 ": --input-file: cannot read '%s': %s (the tasks after it were not submitted)\n",
                 args.input_file, strerror (inputs.read_errno));
    if (code == KEEL_EXIT_OK && (job.failed > 0 || job.write_failed || inputs.read_errno))
        code = KEEL_EXIT_FAILED;
done:
    keel_driver_destroy (&driver);
    if (inputs.file && inputs.file != stdin)
        fclose (inputs.file);
    free (inputs.line);
    keel_jsonl_buf_free (&job.line);
    keel_settings_destroy (&settings);
    keel_submit_args_free (&args);
    return code;
}
