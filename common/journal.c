/*  journal.c — one JSON line per record, one write(2) per line. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

int keel_journal_fd_ = -1;
static const char *s_who = "keel";
static char s_run[48]; // this process's incarnation: pids are reused

void
keel_journal_init (const char *who)
{
    if (keel_journal_fd_ >= 0)
        return;
    const char *path = getenv ("KEEL_JOURNAL");
    if (!path || !*path)
        return;
    s_who = who ? who : "keel";
    int fd = open (path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf (stderr, "%s: KEEL_JOURNAL=%s: cannot open: %s; journal off\n", s_who, path,
                 strerror (errno));
        return;
    }
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    snprintf (s_run, sizeof s_run, "%ld.%lld", (long) getpid (),
              (long long) ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    keel_journal_fd_ = fd;
}

void
keel_journal_write (const char *event, const keel_journal_rec_t *rec)
{
    //  The machine's clock, not the process's: a chaos run moves some
    //  processes' wall clocks (libfaketime intercepts clock_gettime in
    //  libc, not the system call), and the checker orders every journal
    //  on one time line.
    struct timespec ts;
    if (syscall (SYS_clock_gettime, CLOCK_REALTIME, &ts) != 0)
        clock_gettime (CLOCK_REALTIME, &ts);
    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_kv_int (&j, "t", (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    keel_json_kv_str (&j, "who", s_who);
    keel_json_kv_int (&j, "pid", (int64_t) getpid ());
    keel_json_kv_str (&j, "run", s_run);
    keel_json_kv_str (&j, "ev", event);
    if (rec->service)
        keel_json_kv_str (&j, "service", rec->service);
    if (rec->service || rec->task)
        keel_json_kv_uint (&j, "task", rec->task);
    if (rec->execution)
        keel_json_kv_uint (&j, "execution", rec->execution);
    if (rec->engine)
        keel_json_kv_str (&j, "engine", rec->engine);
    if (rec->epoch)
        keel_json_kv_int (&j, "epoch", rec->epoch);
    if (rec->status)
        keel_json_kv_str (&j, "status", rec->status);
    if (rec->output) {
        keel_json_key (&j, "output");
        keel_json_strn (&j, rec->output, rec->output_len);
    }
    if (rec->n)
        keel_json_kv_int (&j, "n", rec->n);
    if (rec->text)
        keel_json_kv_str (&j, "text", rec->text);
    keel_json_end_object (&j);
    size_t len = j.len;
    char *line = keel_json_take (&j);
    if (!line)
        return;
    line[len] = '\n'; // replaces the NUL: the record is one line
    ssize_t rc;
    do
        rc = write (keel_journal_fd_, line, len + 1);
    while (rc < 0 && errno == EINTR);
    free (line);
}
