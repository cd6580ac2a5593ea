/*  endpoint.h — endpoint texts as operators write them: compared after
    trimming blanks. Used by drivers and engines to find the broker a pair
    names (DriverWelcome/LoginReply.pair_peer, Passive.active) among the
    brokers they are configured with.
*/
#ifndef KEEL_ENDPOINT_H
#define KEEL_ENDPOINT_H

#include <stdbool.h>

// True when text holds something besides blanks (NULL: false).
bool keel_endpoint_named (const char *text);

// The index in list[0..n) of the entry equal to endpoint once both are
// trimmed; -1 when none is (or endpoint names nothing). NULL entries never
// match.
int keel_endpoint_find (const char *const *list, int n, const char *endpoint);

#endif
