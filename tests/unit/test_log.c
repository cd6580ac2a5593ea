/*  test_log.c — the rate limiter for peer-triggered log lines, with driven
    time; stderr captured in a temporary file.
*/
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

// Runs the lines below with stderr going to a temporary file; returns what
// they wrote (caller frees).
typedef struct {
    FILE *file;
    int saved;
} s_capture_t;

static void
s_capture_start (s_capture_t *c)
{
    c->file = tmpfile ();
    cr_assert_not_null (c->file);
    fflush (stderr);
    c->saved = dup (STDERR_FILENO);
    cr_assert_geq (c->saved, 0);
    cr_assert_geq (dup2 (fileno (c->file), STDERR_FILENO), 0);
}

static char *
s_capture_end (s_capture_t *c)
{
    dup2 (c->saved, STDERR_FILENO);
    close (c->saved);
    long size = ftell (c->file);
    if (size < 0)
        size = 0;
    char *text = calloc (1, (size_t) size + 1);
    cr_assert_not_null (text);
    rewind (c->file);
    size_t got = fread (text, 1, (size_t) size, c->file);
    text[got] = '\0';
    fclose (c->file);
    return text;
}

static int
s_count (const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr (text, needle); p; p = strstr (p + 1, needle))
        n++;
    return n;
}

Test (ratelimit, logs_at_most_its_budget_a_window_then_says_how_many_it_dropped)
{
    keel_log_init (KEEL_LOG_INFO);
    keel_ratelimit_t rl = KEEL_RATELIMIT_NAMED (10000, 3, "hello");
    s_capture_t c;
    s_capture_start (&c);
    for (int i = 0; i < 1000; i++)
        KEEL_LOG_LIMITED (&rl, 1000 + i, KEEL_LOG_WARN, "test", "absurd value %d", i);
    keel_ratelimit_flush (&rl, 5000, KEEL_LOG_WARN, "test");  // window not over: nothing
    keel_ratelimit_flush (&rl, 11000, KEEL_LOG_WARN, "test"); // over: the count
    keel_ratelimit_flush (&rl, 30000, KEEL_LOG_WARN, "test"); // nothing more to say
    KEEL_LOG_LIMITED (&rl, 30001, KEEL_LOG_WARN, "test", "absurd value again");
    char *text = s_capture_end (&c);
    cr_expect_eq (s_count (text, "absurd value"), 4, "lines:\n%s", text);
    cr_expect_eq (s_count (text, "997 hello lines suppressed in the last 10 s"), 1, "lines:\n%s",
                  text);
    cr_expect_eq (s_count (text, "suppressed"), 1, "lines:\n%s", text);
    free (text);
}

Test (ratelimit, reports_the_count_before_the_next_line_when_no_timer_flushed_it)
{
    keel_log_init (KEEL_LOG_INFO);
    keel_ratelimit_t rl = KEEL_RATELIMIT_INIT (1000, 1);
    s_capture_t c;
    s_capture_start (&c);
    for (int i = 0; i < 5; i++)
        KEEL_LOG_LIMITED (&rl, 100 + i, KEEL_LOG_WARN, "test", "bad %d", i);
    KEEL_LOG_LIMITED (&rl, 2000, KEEL_LOG_WARN, "test", "bad later");
    char *text = s_capture_end (&c);
    cr_expect (strstr (text, "bad 0"), "lines:\n%s", text);
    cr_expect_not (strstr (text, "bad 1"), "lines:\n%s", text);
    const char *note = strstr (text, "4 similar lines suppressed");
    const char *later = strstr (text, "bad later");
    cr_expect (note && later && note < later, "lines:\n%s", text);
    free (text);
}

Test (ratelimit, spends_no_budget_on_lines_below_the_log_level)
{
    keel_log_init (KEEL_LOG_WARN);
    keel_ratelimit_t rl = KEEL_RATELIMIT_INIT (10000, 2);
    s_capture_t c;
    s_capture_start (&c);
    for (int i = 0; i < 10; i++)
        KEEL_LOG_LIMITED (&rl, 100, KEEL_LOG_INFO, "test", "quiet %d", i);
    KEEL_LOG_LIMITED (&rl, 100, KEEL_LOG_WARN, "test", "loud");
    char *text = s_capture_end (&c);
    cr_expect_not (strstr (text, "quiet"), "lines:\n%s", text);
    cr_expect (strstr (text, "loud"), "lines:\n%s", text);
    cr_expect_eq (rl.suppressed, 0);
    free (text);
    keel_log_init (KEEL_LOG_INFO);
}
