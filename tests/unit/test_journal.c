/*  test_journal.c — the chaos journal (common/journal.c): off unless
    KEEL_JOURNAL names a file; then one whole JSON line per record, from any
    thread, with only the fields given. */

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"

static char s_path[64];

static void
s_setup (void)
{
    snprintf (s_path, sizeof s_path, "/tmp/keel-journal-test-%d.jsonl", (int) getpid ());
    unlink (s_path);
}

static void
s_teardown (void)
{
    unlink (s_path);
}

static char *
s_read (void)
{
    FILE *f = fopen (s_path, "r");
    if (!f)
        return NULL;
    static char text[1 << 20];
    size_t n = fread (text, 1, sizeof text - 1, f);
    fclose (f);
    text[n] = 0;
    return text;
}

TestSuite (journal, .init = s_setup, .fini = s_teardown);

Test (journal, is_off_and_writes_nothing_without_keel_journal)
{
    unsetenv ("KEEL_JOURNAL");
    keel_journal_init ("engine");
    cr_assert_eq (keel_journal_fd_, -1);
    KEEL_JOURNAL ("exec_start", .service = "s", .task = 1);
    cr_assert_null (s_read (), "a journal was written while off");
}

Test (journal, writes_one_json_line_per_record_with_the_fields_given)
{
    setenv ("KEEL_JOURNAL", s_path, 1);
    keel_journal_init ("driver");
    cr_assert_geq (keel_journal_fd_, 0);
    KEEL_JOURNAL ("delivered", .service = "svc", .task = 7, .execution = 9, .status = "ok",
                  .output = "a\"b\nc", .output_len = 5);
    KEEL_JOURNAL ("driver_closed");
    char *text = s_read ();
    cr_assert_not_null (text);
    char *second = strchr (text, '\n');
    cr_assert_not_null (second, "no newline after the first record: %s", text);
    *second++ = 0;
    cr_assert (strstr (text, "\"who\":\"driver\""), "%s", text);
    cr_assert (strstr (text, "\"ev\":\"delivered\",\"service\":\"svc\",\"task\":7,\"execution\":9,"
                             "\"status\":\"ok\",\"output\":\"a\\\"b\\nc\"}"),
               "%s", text);
    cr_assert (strstr (second, "\"ev\":\"driver_closed\"}\n"), "%s", second);
    cr_assert_null (strstr (second, "task"), "a field that was not given: %s", second);
}

static void *
s_writer (void *arg)
{
    (void) arg;
    for (int i = 0; i < 500; i++)
        KEEL_JOURNAL ("exec_end", .service = "0123456789abcdef0123456789abcdef",
                      .task = (uint64_t) i, .execution = 1000u + (uint64_t) i, .status = "ok");
    return NULL;
}

Test (journal, records_from_several_threads_never_interleave)
{
    setenv ("KEEL_JOURNAL", s_path, 1);
    keel_journal_init ("engine");
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        pthread_create (&threads[i], NULL, s_writer, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join (threads[i], NULL);
    char *text = s_read ();
    cr_assert_not_null (text);
    int lines = 0;
    for (char *line = strtok (text, "\n"); line; line = strtok (NULL, "\n"), lines++)
        cr_assert (line[0] == '{' && line[strlen (line) - 1] == '}'
                       && strstr (line, "\"ev\":\"exec_end\"") && !strstr (line + 1, "{\"t\""),
                   "a broken line: %s", line);
    cr_assert_eq (lines, 2000);
}
