/*  log.h — one logging macro with a fixed line shape.

    Lines go to stderr as:
        2026-11-22T01:30:00.123Z INFO  broker: engine logged in engine=3f.. slots=2
    i.e. UTC wall time (logs only; timers use the monotonic clock), level,
    component, message (key=value pairs at the end by convention).
    The level is checked before anything is formatted. The level is set once
    by main (keel_log_init) — the one piece of process-wide state we allow.

    keel_ratelimit_t bounds how often a noisy event (a malformed message) is
    logged: at most N lines a window, then one "suppressed N" line.
    Every line a peer's message causes (malformed input, absurd values,
    unknown ids, a peer's own text, one line per peer or per task a peer
    names) goes through one (KEEL_LOG_LIMITED): a peer cannot flood the log.
    A timer calls keel_ratelimit_flush so the count of a burst's suppressed
    lines is logged once its window ends, even if nothing else comes.
*/
#ifndef KEEL_LOG_H
#define KEEL_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    KEEL_LOG_ERROR = 0,
    KEEL_LOG_WARN = 1,
    KEEL_LOG_INFO = 2,
    KEEL_LOG_DEBUG = 3
} keel_log_level_t;

extern keel_log_level_t keel_log_level_;

// Sets the level and the program name used at start of life. Safe to call
// again. Parses "error|warn|info|debug" in keel_log_level_parse.
void keel_log_init (keel_log_level_t level);
int keel_log_level_parse (const char *text, keel_log_level_t *level);

void keel_log_write (keel_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

#define KEEL_LOG(level, comp, ...)                                                                 \
    do {                                                                                           \
        if ((level) <= keel_log_level_)                                                            \
            keel_log_write ((level), (comp), __VA_ARGS__);                                         \
    } while (0)
#define KEEL_ERROR(comp, ...) KEEL_LOG (KEEL_LOG_ERROR, comp, __VA_ARGS__)
#define KEEL_WARN(comp, ...)  KEEL_LOG (KEEL_LOG_WARN, comp, __VA_ARGS__)
#define KEEL_INFO(comp, ...)  KEEL_LOG (KEEL_LOG_INFO, comp, __VA_ARGS__)
#define KEEL_DEBUG(comp, ...) KEEL_LOG (KEEL_LOG_DEBUG, comp, __VA_ARGS__)

typedef struct {
    int64_t window_start; // monotonic ms
    int64_t window_ms;    // e.g. 10000
    int max_lines;        // lines allowed per window, e.g. 5
    int lines;            // lines logged in this window
    int64_t suppressed;   // events not logged in this window
    const char *what;     // names the lines in the "suppressed" line (NULL: "similar")
} keel_ratelimit_t;

#define KEEL_RATELIMIT_INIT(window_ms_, max_)                                                      \
    {                                                                                              \
        0, (window_ms_), (max_), 0, 0, NULL                                                        \
    }
#define KEEL_RATELIMIT_NAMED(window_ms_, max_, what_)                                              \
    {                                                                                              \
        0, (window_ms_), (max_), 0, 0, (what_)                                                     \
    }

// Returns true when the caller may log this event now. When a new window
// starts and events were suppressed, *suppressed_p (if not NULL) gets their
// count so the caller can say so; otherwise it gets 0.
bool keel_ratelimit_allow (keel_ratelimit_t *rl, int64_t now_ms, int64_t *suppressed_p);

// Logs "N <what> lines suppressed in the last S s" at level.
void keel_ratelimit_report (const keel_ratelimit_t *rl, int64_t suppressed, keel_log_level_t level,
                            const char *component);

// When rl's window is over and it suppressed lines, logs how many
// (keel_ratelimit_report) and starts a new window. Call it from a timer.
void keel_ratelimit_flush (keel_ratelimit_t *rl, int64_t now_ms, keel_log_level_t level,
                           const char *component);

// Logs a line (as KEEL_LOG) only when rl allows it, preceded by the count of
// the lines rl suppressed in its last window. The level is checked first:
// a line below the log level neither formats nor uses rl's budget.
#define KEEL_LOG_LIMITED(rl, now_ms, level, comp, ...)                                             \
    do {                                                                                           \
        int64_t keel_suppressed_ = 0;                                                              \
        if ((level) <= keel_log_level_                                                             \
            && keel_ratelimit_allow ((rl), (now_ms), &keel_suppressed_)) {                         \
            if (keel_suppressed_ > 0)                                                              \
                keel_ratelimit_report ((rl), keel_suppressed_, (level), (comp));                   \
            keel_log_write ((level), (comp), __VA_ARGS__);                                         \
        }                                                                                          \
    } while (0)

#endif
