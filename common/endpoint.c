/*  endpoint.c — endpoint texts compared after trimming. See endpoint.h. */
#include "endpoint.h"

#include <ctype.h>
#include <string.h>

//  The text without leading and trailing blanks: *len_p bytes from the
//  returned pointer.
static const char *
s_trim (const char *text, size_t *len_p)
{
    while (*text && isspace ((unsigned char) *text))
        text++;
    size_t len = strlen (text);
    while (len > 0 && isspace ((unsigned char) text[len - 1]))
        len--;
    *len_p = len;
    return text;
}

bool
keel_endpoint_named (const char *text)
{
    size_t len = 0;
    if (text)
        s_trim (text, &len);
    return len > 0;
}

int
keel_endpoint_find (const char *const *list, int n, const char *endpoint)
{
    if (!keel_endpoint_named (endpoint))
        return -1;
    size_t len, blen;
    const char *text = s_trim (endpoint, &len);
    for (int i = 0; i < n; i++) {
        if (!list[i])
            continue;
        const char *b = s_trim (list[i], &blen);
        if (blen == len && memcmp (b, text, len) == 0)
            return i;
    }
    return -1;
}
