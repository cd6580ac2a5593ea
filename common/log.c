/*  log.c — the fixed log line shape and the rate limiter.

    Each line is formatted into one buffer and written with a single
    write(2), so lines from several processes sharing stderr do not
    interleave mid-line.
*/
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

keel_log_level_t keel_log_level_ = KEEL_LOG_INFO;

#define S_LINE_MAX 4096

void
keel_log_init (keel_log_level_t level)
{
    if (level < KEEL_LOG_ERROR)
        level = KEEL_LOG_ERROR;
    if (level > KEEL_LOG_DEBUG)
        level = KEEL_LOG_DEBUG;
    keel_log_level_ = level;
}

int
keel_log_level_parse (const char *text, keel_log_level_t *level)
{
    static const struct {
        const char *name;
        keel_log_level_t level;
    } names[] = {
        { "error", KEEL_LOG_ERROR }, { "warn", KEEL_LOG_WARN },   { "warning", KEEL_LOG_WARN },
        { "info", KEEL_LOG_INFO },   { "debug", KEEL_LOG_DEBUG },
    };
    if (!text)
        return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp (text, names[i].name) == 0) {
            if (level)
                *level = names[i].level;
            return 0;
        }
    }
    return -1;
}

static const char *
s_level_name (keel_log_level_t level)
{
    switch (level) {
        case KEEL_LOG_ERROR:
            return "ERROR";
        case KEEL_LOG_WARN:
            return "WARN";
        case KEEL_LOG_INFO:
            return "INFO";
        case KEEL_LOG_DEBUG:
            return "DEBUG";
    }
    return "?";
}

void
keel_log_write (keel_log_level_t level, const char *component, const char *fmt, ...)
{
    char line[S_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime (CLOCK_REALTIME, &ts);
    gmtime_r (&ts.tv_sec, &tm);

    int n = snprintf (line, sizeof line,
                      "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      ts.tv_nsec / 1000000L, s_level_name (level), component ? component : "keel");
    size_t used = n < 0 ? 0 : (size_t) n;
    if (used >= sizeof line - 1)
        used = sizeof line - 2;

    va_list args;
    va_start (args, fmt);
    n = vsnprintf (line + used, sizeof line - used - 1, fmt, args);
    va_end (args);
    if (n > 0)
        used += (size_t) n < sizeof line - used - 1 ? (size_t) n : sizeof line - used - 2;
    // One line per call: a message ending in its own newline does not get two.
    if (used == 0 || line[used - 1] != '\n')
        line[used++] = '\n';

    size_t off = 0;
    while (off < used) {
        ssize_t w = write (STDERR_FILENO, line + off, used - off);
        if (w <= 0)
            break;
        off += (size_t) w;
    }
}

bool
keel_ratelimit_allow (keel_ratelimit_t *rl, int64_t now_ms, int64_t *suppressed_p)
{
    if (suppressed_p)
        *suppressed_p = 0;
    if (now_ms - rl->window_start >= rl->window_ms || now_ms < rl->window_start) {
        // Report what the old window suppressed only when this event is
        // logged, so the count is never lost.
        if (rl->max_lines > 0) {
            if (suppressed_p)
                *suppressed_p = rl->suppressed;
            rl->suppressed = 0;
        }
        rl->window_start = now_ms;
        rl->lines = 0;
    }
    if (rl->lines < rl->max_lines) {
        rl->lines++;
        return true;
    }
    rl->suppressed++;
    return false;
}

void
keel_ratelimit_report (const keel_ratelimit_t *rl, int64_t suppressed, keel_log_level_t level,
                       const char *component)
{
    keel_log_write (level, component, "%lld %s lines suppressed in the last %lld s",
                    (long long) suppressed, rl->what ? rl->what : "similar",
                    (long long) (rl->window_ms / 1000));
}

void
keel_ratelimit_flush (keel_ratelimit_t *rl, int64_t now_ms, keel_log_level_t level,
                      const char *component)
{
    if (rl->suppressed == 0
        || (now_ms - rl->window_start < rl->window_ms && now_ms >= rl->window_start))
        return;
    int64_t suppressed = rl->suppressed;
    rl->suppressed = 0;
    rl->window_start = now_ms;
    rl->lines = 0;
    if (level <= keel_log_level_)
        keel_ratelimit_report (rl, suppressed, level, component);
}
