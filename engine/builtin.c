/*  builtin.c — echo, double, sleep and fail. */
#include "builtin.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *s_names[] = { "echo", "double", "sleep", "fail", NULL };

bool
keel_builtin_known (const char *type)
{
    for (int i = 0; s_names[i]; i++)
        if (strcmp (s_names[i], type) == 0)
            return true;
    return false;
}

const char *
keel_builtin_name (int index)
{
    if (index < 0 || index >= (int) (sizeof s_names / sizeof s_names[0]))
        return NULL;
    return s_names[index];
}

bool
keel_builtin_parse_int (const uint8_t *input, size_t size, int64_t *value)
{
    size_t i = 0;
    while (i < size && isspace (input[i]))
        i++;
    while (size > i && isspace (input[size - 1]))
        size--;
    if (i == size || size - i > 24)
        return false;
    char buf[32];
    memcpy (buf, input + i, size - i);
    buf[size - i] = 0;
    const char *p = buf;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return false;
    for (const char *q = p; *q; q++)
        if (!isdigit ((unsigned char) *q))
            return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll (buf, &end, 10);
    if (errno == ERANGE || !end || *end)
        return false;
    *value = (int64_t) v;
    return true;
}

static bool
s_set (keel_builtin_result_t *r, bool ok, const uint8_t *data, size_t size)
{
    r->ok = ok;
    r->size = size;
    r->data = malloc (size + 1);
    if (!r->data)
        return false;
    if (size)
        memcpy (r->data, data, size);
    r->data[size] = 0;
    return true;
}

static bool
s_setf (keel_builtin_result_t *r, bool ok, const char *fmt, ...)
{
    char text[512];
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    if (n < 0)
        n = 0;
    if ((size_t) n >= sizeof text)
        n = sizeof text - 1;
    return s_set (r, ok, (const uint8_t *) text, (size_t) n);
}

//  A short printable excerpt of input for error messages.
static void
s_excerpt (const uint8_t *input, size_t size, char *buf, size_t bufsize)
{
    size_t n = 0;
    for (size_t i = 0; i < size && n + 5 < bufsize; i++)
        buf[n++] = isprint (input[i]) ? (char) input[i] : '?';
    if (size > n && n + 4 < bufsize) {
        memcpy (buf + n, "...", 3);
        n += 3;
    }
    buf[n] = 0;
}

static bool
s_double (const uint8_t *input, size_t size, keel_builtin_result_t *r)
{
    char shown[48];
    s_excerpt (input, size, shown, sizeof shown);
    int64_t v = 0;
    if (!keel_builtin_parse_int (input, size, &v)) {
        size_t i = 0;
        while (i < size && isspace (input[i]))
            i++;
        if (i == size)
            return s_setf (r, false, "double: input is empty (expected a decimal integer)");
        return s_setf (r, false, "double: '%s' is not a decimal integer (or out of range)", shown);
    }
    if (v > INT64_MAX / 2 || v < INT64_MIN / 2)
        return s_setf (r, false, "double: 2 x %lld overflows a 64-bit integer", (long long) v);
    return s_setf (r, true, "%lld", (long long) (2 * v));
}

static bool
s_sleep (const uint8_t *input, size_t size, keel_builtin_result_t *r)
{
    char shown[48];
    s_excerpt (input, size, shown, sizeof shown);
    int64_t ms = 0;
    if (!keel_builtin_parse_int (input, size, &ms) || ms < 0 || ms > KEEL_BUILTIN_SLEEP_MAX_MS)
        return s_setf (r, false, "sleep: '%s' is not a number of milliseconds (0..%lld)", shown,
                       (long long) KEEL_BUILTIN_SLEEP_MAX_MS);
    struct timespec left = { (time_t) (ms / 1000), (long) (ms % 1000) * 1000000L };
    //  Resumes after signals; bounded by the remaining time, which only shrinks.
    while (nanosleep (&left, &left) != 0 && errno == EINTR)
        ;
    return s_set (r, true, input, size);
}

bool
keel_builtin_run (const char *type, const uint8_t *input, size_t size,
                  keel_builtin_result_t *result)
{
    memset (result, 0, sizeof *result);
    if (strcmp (type, "echo") == 0)
        return s_set (result, true, input, size);
    if (strcmp (type, "double") == 0)
        return s_double (input, size, result);
    if (strcmp (type, "sleep") == 0)
        return s_sleep (input, size, result);
    if (strcmp (type, "fail") == 0)
        return s_set (result, false, input, size);
    return s_setf (result, false, "unknown built-in service '%s'", type);
}
