/*  httpd.h — a read-only HTTP endpoint that serves published snapshots
    (MetricsEndpoint: /metrics, /status.json and the status page).

    Threads. libmicrohttpd answers on its own thread; the daemon's model
    (the broker's core, the engine's slots) belongs to its loop thread and
    is never read from here. The loop renders what there is to show and
    hands it over with keel_httpd_publish (every second or so); the HTTP
    thread serves copies of the latest snapshot, taken under a mutex. We
    chose this over asking the loop per request (an inproc pair with a
    timeout) because a scrape then never waits for a busy loop, a flood of
    requests costs the loop nothing, and the loop needs no new socket in
    its poller: the price is data up to one publish interval old, which
    Prometheus (15 s scrapes) and a page polling every second do not see.

    What it serves, for GET and HEAD only (anything else: 405 with Allow):
      every path published under that path, with its content type;
      any other path: 404.
    It never reads a request body, and malformed requests are
    libmicrohttpd's to refuse: requests are bounded (header memory,
    connections, a per-connection timeout), so bad clients cost memory and
    time only up to those bounds. Not thread-safe for the loop's own calls
    (one owner thread calls publish and destroy).
*/
#ifndef KEEL_HTTPD_H
#define KEEL_HTTPD_H

#include <stddef.h>

#include "error.h"

typedef struct _keel_httpd_t keel_httpd_t;

// Reads "HOST:PORT" or "PORT" (host 127.0.0.1): HOST an IPv4 address or
// [IPv6]; port 1..65535. Fills *family (AF_INET/AF_INET6), addr (at least
// 16 bytes: struct in_addr / in6_addr) and *port. Returns KEEL_OK or
// KEEL_ERR_CONFIG with the problem in err.
keel_err keel_httpd_parse_endpoint (const char *endpoint, int *family, void *addr, int *port,
                                    keel_error_t *err);

// Starts serving on endpoint (keel_httpd_parse_endpoint's form) with its
// own thread. Nothing is published yet: every path is 404 until then.
// Returns NULL with err filled when the endpoint is bad or cannot be bound.
keel_httpd_t *keel_httpd_new (const char *endpoint, keel_error_t *err);

// Stops the thread, closes every connection, frees everything; nulls
// *self_p. Idempotent.
void keel_httpd_destroy (keel_httpd_t **self_p);

// Serves body (len bytes, copied) at path ("/metrics") from now on,
// replacing what was there; the content type is the first publish's. Returns KEEL_OK, or
// KEEL_ERR_NOMEM (the previous body stays). At most KEEL_HTTPD_MAX_PATHS
// paths.
#define KEEL_HTTPD_MAX_PATHS 8
keel_err keel_httpd_publish (keel_httpd_t *self, const char *path, const char *content_type,
                             const char *body, size_t len);

// The port it listens on (useful after binding port 0 is ever allowed).
int keel_httpd_port (const keel_httpd_t *self);

#endif
