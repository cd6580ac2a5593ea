/*  httpd.c — the snapshot server of httpd.h over libmicrohttpd.
*/

#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

// Bounds on what clients may cost: connections at once, memory per
// connection (the request line and headers must fit: a bigger request
// is answered 431 and closed), seconds a silent connection is kept.
#define KEEL_HTTPD_CONNECTIONS  64
#define KEEL_HTTPD_CONN_MEMORY  (32 * 1024)
#define KEEL_HTTPD_CONN_TIMEOUT 10

typedef struct {
    char *path;
    char *content_type;
    char *body;
    size_t len;
} s_page_t;

struct _keel_httpd_t {
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t lock; // guards pages: published by the loop, read by MHD's thread
    s_page_t pages[KEEL_HTTPD_MAX_PATHS];
    size_t npages;
};

keel_err
keel_httpd_parse_endpoint (const char *endpoint, int *family, void *addr, int *port,
                           keel_error_t *err)
{
    if (!endpoint || !*endpoint)
        return keel_error_set (err, KEEL_ERR_CONFIG, "empty endpoint");
    char host[64] = "127.0.0.1";
    const char *port_text = endpoint;
    const char *colon = strrchr (endpoint, ':');
    if (colon) {
        size_t n = (size_t) (colon - endpoint);
        if (n == 0 || n >= sizeof host)
            return keel_error_set (err, KEEL_ERR_CONFIG,
                                   "'%s': expected HOST:PORT or PORT (HOST an IP address)",
                                   endpoint);
        memcpy (host, endpoint, n);
        host[n] = 0;
        port_text = colon + 1;
    }
    char *end = NULL;
    errno = 0;
    long p = strtol (port_text, &end, 10);
    if (!*port_text || *end || errno || p < 1 || p > 65535)
        return keel_error_set (err, KEEL_ERR_CONFIG,
                               "'%s': expected HOST:PORT or PORT, the port 1 to 65535", endpoint);
    size_t hl = strlen (host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        if (inet_pton (AF_INET6, host + 1, addr) != 1)
            return keel_error_set (err, KEEL_ERR_CONFIG, "'%s': '%s' is not an IPv6 address",
                                   endpoint, host + 1);
        *family = AF_INET6;
    }
    else if (inet_pton (AF_INET, host, addr) == 1)
        *family = AF_INET;
    else
        return keel_error_set (err, KEEL_ERR_CONFIG,
                               "'%s': '%s' is not an IPv4 address (or [IPv6])", endpoint, host);
    *port = (int) p;
    return KEEL_OK;
}

// ---------------------------------------------------------------- the HTTP thread

static enum MHD_Result
s_respond (struct MHD_Connection *conn, unsigned int status, const char *content_type,
           const char *body, size_t len, bool allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer (len, (void *) body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO; // out of memory: MHD closes the connection
    MHD_add_response_header (resp, "Content-Type", content_type);
    MHD_add_response_header (resp, "Cache-Control", "no-store");
    MHD_add_response_header (resp, "X-Content-Type-Options", "nosniff");
    if (allow)
        MHD_add_response_header (resp, "Allow", "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response (conn, status, resp);
    MHD_destroy_response (resp);
    return rc;
}

// Called by MHD once the request line and headers are in. Answers at once:
// nothing here reads a body (a request with one is answered 405 and the
// connection closed by MHD).
static enum MHD_Result
s_handle (void *cls, struct MHD_Connection *conn, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
    (void) version;
    (void) upload_data;
    (void) upload_data_size;
    (void) req_cls;
    keel_httpd_t *self = cls;
    if (strcmp (method, MHD_HTTP_METHOD_GET) != 0 && strcmp (method, MHD_HTTP_METHOD_HEAD) != 0) {
        static const char text[] = "405 method not allowed: this endpoint is read-only\n";
        return s_respond (conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", text,
                          sizeof text - 1, true);
    }
    enum MHD_Result rc = MHD_NO;
    bool found = false;
    pthread_mutex_lock (&self->lock);
    for (size_t i = 0; i < self->npages; i++) {
        s_page_t *page = &self->pages[i];
        if (strcmp (page->path, url) == 0) {
            rc = s_respond (conn, MHD_HTTP_OK, page->content_type, page->body, page->len, false);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock (&self->lock);
    if (!found) {
        static const char text[] = "404 not found\n";
        rc = s_respond (conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", text,
                        sizeof text - 1, false);
    }
    return rc;
}

// ---------------------------------------------------------------- the owner's side

keel_httpd_t *
keel_httpd_new (const char *endpoint, keel_error_t *err)
{
    int family = 0, port = 0;
    unsigned char addr[16];
    if (keel_httpd_parse_endpoint (endpoint, &family, addr, &port, err) != KEEL_OK)
        return NULL;
    keel_httpd_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    self->port = port;
    struct sockaddr_in sin = { 0 };
    struct sockaddr_in6 sin6 = { 0 };
    struct sockaddr *sa;
    // poll(), not epoll (MHD_USE_AUTO picks epoll on Linux): with epoll,
    // libmicrohttpd 0.9.75 (Debian 12) did not notice a client closing in
    // the middle of a request, and kept each such connection (CLOSE-WAIT)
    // until its timeout: a few dozen cut-off requests filled the connection
    // limit and shut everyone out for CONN_TIMEOUT seconds (test_metrics.c,
    // endpoint_survives_ten_thousand_bad_requests, found it).
    unsigned int flags = MHD_USE_POLL_INTERNAL_THREAD;
    if (family == AF_INET6) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons ((uint16_t) port);
        memcpy (&sin6.sin6_addr, addr, sizeof sin6.sin6_addr);
        sa = (struct sockaddr *) &sin6;
        flags |= MHD_USE_IPv6;
    }
    else {
        sin.sin_family = AF_INET;
        sin.sin_port = htons ((uint16_t) port);
        memcpy (&sin.sin_addr, addr, sizeof sin.sin_addr);
        sa = (struct sockaddr *) &sin;
    }
    self->daemon = MHD_start_daemon (
        flags, (uint16_t) port, NULL, NULL, s_handle, self, MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int) KEEL_HTTPD_CONNECTIONS,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) KEEL_HTTPD_CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) KEEL_HTTPD_CONN_TIMEOUT, MHD_OPTION_END);
    if (!self->daemon) {
        keel_error_set (err, KEEL_ERR_IO, "cannot listen on '%s' (in use, or not this host's)",
                        endpoint);
        keel_httpd_destroy (&self);
        return NULL;
    }
    return self;
}

void
keel_httpd_destroy (keel_httpd_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_httpd_t *self = *self_p;
    if (self->daemon)
        MHD_stop_daemon (self->daemon); // joins the thread: no handler runs after this
    for (size_t i = 0; i < self->npages; i++) {
        free (self->pages[i].path);
        free (self->pages[i].content_type);
        free (self->pages[i].body);
    }
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

keel_err
keel_httpd_publish (keel_httpd_t *self, const char *path, const char *content_type,
                    const char *body, size_t len)
{
    char *copy = malloc (len + 1);
    if (!copy)
        return KEEL_ERR_NOMEM;
    memcpy (copy, body, len);
    copy[len] = 0;
    keel_err rc = KEEL_OK;
    pthread_mutex_lock (&self->lock);
    s_page_t *page = NULL;
    for (size_t i = 0; i < self->npages && !page; i++)
        if (strcmp (self->pages[i].path, path) == 0)
            page = &self->pages[i];
    if (!page && self->npages < KEEL_HTTPD_MAX_PATHS) {
        char *p = strdup (path), *ct = strdup (content_type);
        if (p && ct) {
            page = &self->pages[self->npages++];
            *page = (s_page_t) { .path = p, .content_type = ct };
        }
        else {
            free (p);
            free (ct);
        }
    }
    if (page) {
        free (page->body);
        page->body = copy;
        page->len = len;
        copy = NULL;
    }
    else
        rc = KEEL_ERR_NOMEM;
    pthread_mutex_unlock (&self->lock);
    free (copy);
    return rc;
}

int
keel_httpd_port (const keel_httpd_t *self)
{
    return self->port;
}
