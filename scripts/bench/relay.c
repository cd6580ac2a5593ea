/*  relay.c — the raw ZeroMQ baseline Keel is measured against.

    One program, several roles, nothing but libzmq: no persistence, no
    protobuf, no bookkeeping beyond what routing needs.

      relay broker FRONT BACK          ROUTER for clients, ROUTER for workers
      relay worker BACK WINDOW         DEALER; does `double` in-process
      relay client-throughput FRONT N  pipelines N tasks, prints tasks/s
      relay client-latency FRONT N     N sequential round trips, prints µs
      relay direct-worker ENDPOINT     ROUTER; answers `double` itself
      relay direct-client ENDPOINT N   N sequential round trips to it

    Frames. A client sends one frame "<task id> <input>"; the broker receives
    [client][payload] and sends [worker][client][payload] to a worker, which
    answers [client]["<task id> <output>"]; the broker forwards [client][reply].
    A worker first sends one frame "READY <window>": the broker lends it
    <window> tasks at a time (a ring of credits, one per task it may hold)
    and reads clients only while some credit is left, like the zguide's
    load-balancing broker. WINDOW=1 is Keel's shape (an engine slot gets its
    next task only after its result); a large WINDOW is a plain pipelined
    relay — the ceiling.

    The work is Keel's built-in `double`: parse a decimal integer, answer
    twice it in decimal. The worker does it in its own thread, so the
    baseline has no process isolation (Keel runs it in a pool process).

    Results go to stdout as one line of key=value pairs; errors to stderr
    with exit 1 (2 for usage). Every loop is bounded by a count and a
    deadline (RELAY_DEADLINE_S, default 600 s).
*/
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define RELAY_HWM           200000
#define RELAY_MAX_WORKERS   64
#define RELAY_MAX_WINDOW    100000
#define RELAY_MAX_TASKS     100000000L
#define RELAY_PAYLOAD       64
#define RELAY_ID_MAX        256
// A throughput client keeps at most this many tasks in flight, so no queue
// reaches its high-water mark (which would drop or block).
#define RELAY_CLIENT_WINDOW 20000

static int64_t
s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
s_deadline_us (void)
{
    const char *env = getenv ("RELAY_DEADLINE_S");
    long seconds = env ? strtol (env, NULL, 10) : 600;
    if (seconds <= 0)
        seconds = 600;
    return s_now_us () + (int64_t) seconds * 1000000;
}

static void
s_die (const char *what)
{
    fprintf (stderr, "relay: %s: %s\n", what, zmq_strerror (zmq_errno ()));
    exit (1);
}

static void *
s_socket (void *ctx, int type)
{
    void *sock = zmq_socket (ctx, type);
    if (!sock)
        s_die ("zmq_socket");
    int hwm = RELAY_HWM, linger = 0;
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    return sock;
}

// Receives one frame into buf (truncated to cap); returns its size, or -1
// on error. *more says whether another frame follows.
static int
s_recv (void *sock, void *buf, size_t cap, bool *more)
{
    int size = zmq_recv (sock, buf, cap, 0);
    if (size < 0)
        return -1;
    int rcvmore = 0;
    size_t len = sizeof rcvmore;
    zmq_getsockopt (sock, ZMQ_RCVMORE, &rcvmore, &len);
    *more = rcvmore != 0;
    return size > (int) cap ? (int) cap : size;
}

static void
s_send (void *sock, const void *buf, size_t size, bool more)
{
    if (zmq_send (sock, buf, size, more ? ZMQ_SNDMORE : 0) < 0)
        s_die ("zmq_send");
}

// `double`: "<id> <n>" -> "<id> <2n>"; a bad input answers "<id> !".
static int
s_double (const char *in, int in_size, char *out, size_t cap)
{
    char text[RELAY_PAYLOAD];
    int n = in_size < (int) sizeof text - 1 ? in_size : (int) sizeof text - 1;
    memcpy (text, in, (size_t) n);
    text[n] = '\0';
    char *end = NULL;
    unsigned long long id = strtoull (text, &end, 10);
    if (*end != ' ')
        return snprintf (out, cap, "%llu !", id);
    char *arg = end + 1;
    errno = 0;
    long long value = strtoll (arg, &end, 10);
    if (errno || end == arg || *end != '\0')
        return snprintf (out, cap, "%llu !", id);
    return snprintf (out, cap, "%llu %lld", id, value * 2);
}

// ---------------------------------------------------------------- broker

typedef struct {
    uint8_t id[RELAY_ID_MAX];
    size_t size;
} s_peer_t;

static int
s_broker (const char *front_ep, const char *back_ep)
{
    void *ctx = zmq_ctx_new ();
    void *front = s_socket (ctx, ZMQ_ROUTER);
    void *back = s_socket (ctx, ZMQ_ROUTER);
    if (zmq_bind (front, front_ep) || zmq_bind (back, back_ep))
        s_die ("zmq_bind");
    fprintf (stderr, "relay broker: clients %s, workers %s\n", front_ep, back_ep);

    static s_peer_t workers[RELAY_MAX_WORKERS];
    int nworkers = 0;
    // Ring of credits: each entry is a worker index that may take one task.
    size_t cap = (size_t) RELAY_MAX_WORKERS * RELAY_MAX_WINDOW;
    int *credits = malloc (cap * sizeof *credits);
    if (!credits)
        return 1;
    size_t head = 0, count = 0;

    uint8_t who[RELAY_ID_MAX], client[RELAY_ID_MAX], payload[RELAY_PAYLOAD];
    int64_t deadline = s_deadline_us ();
    while (s_now_us () < deadline) {
        zmq_pollitem_t items[] = { { back, 0, ZMQ_POLLIN, 0 }, { front, 0, ZMQ_POLLIN, 0 } };
        int rc = zmq_poll (items, count > 0 ? 2 : 1, 1000);
        if (rc < 0) {
            if (zmq_errno () == EINTR)
                break;
            s_die ("zmq_poll");
        }
        // Workers: READY announcements and replies, as many as are ready.
        for (int turn = 0; turn < 1000 && (items[0].revents & ZMQ_POLLIN); turn++) {
            bool more = false;
            int who_size = zmq_recv (back, who, sizeof who, ZMQ_DONTWAIT);
            if (who_size < 0)
                break;
            int size = s_recv (back, payload, sizeof payload, &more);
            if (size < 0 || who_size > RELAY_ID_MAX)
                s_die ("worker frame");
            int w;
            for (w = 0; w < nworkers; w++)
                if (workers[w].size == (size_t) who_size
                    && memcmp (workers[w].id, who, (size_t) who_size) == 0)
                    break;
            if (!more) {
                // "READY <window>": a new worker lends its window.
                long window = size > 6 ? strtol ((char *) payload + 6, NULL, 10) : 1;
                if (w < nworkers || nworkers == RELAY_MAX_WORKERS || window < 1
                    || window > RELAY_MAX_WINDOW) {
                    fprintf (stderr, "relay broker: worker refused\n");
                    continue;
                }
                memcpy (workers[w].id, who, (size_t) who_size);
                workers[w].size = (size_t) who_size;
                nworkers++;
                // Interleave: worker k's credits are spread over the ring as it arrives.
                for (long i = 0; i < window; i++)
                    credits[(head + count++) % cap] = w;
                continue;
            }
            // [client][reply]: forward, and the worker has one more credit.
            memcpy (client, payload, (size_t) size);
            int client_size = size;
            size = s_recv (back, payload, sizeof payload, &more);
            if (size < 0 || w == nworkers)
                s_die ("worker reply");
            s_send (front, client, (size_t) client_size, true);
            s_send (front, payload, (size_t) size, false);
            credits[(head + count++) % cap] = w;
        }
        // Clients: forward each request to the worker of the next credit.
        for (int turn = 0; turn < 1000 && count > 0 && (items[1].revents & ZMQ_POLLIN); turn++) {
            bool more = false;
            int client_size = zmq_recv (front, client, sizeof client, ZMQ_DONTWAIT);
            if (client_size < 0)
                break;
            int size = s_recv (front, payload, sizeof payload, &more);
            if (size < 0 || client_size > RELAY_ID_MAX)
                s_die ("client frame");
            int w = credits[head];
            head = (head + 1) % cap;
            count--;
            s_send (back, workers[w].id, workers[w].size, true);
            s_send (back, client, (size_t) client_size, true);
            s_send (back, payload, (size_t) size, false);
        }
    }
    free (credits);
    zmq_close (front);
    zmq_close (back);
    zmq_ctx_term (ctx);
    return 0;
}

// Answers [client id][input] with [client id][2*input] until the deadline:
// the work both the relay's worker and the direct worker do.
static void
s_serve (void *sock)
{
    uint8_t client[RELAY_ID_MAX];
    char payload[RELAY_PAYLOAD], out[RELAY_PAYLOAD];
    int64_t deadline = s_deadline_us ();
    while (s_now_us () < deadline) {
        zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 1000) < 0)
            break;
        for (int turn = 0; turn < 1000; turn++) {
            bool more = false;
            int client_size = zmq_recv (sock, client, sizeof client, ZMQ_DONTWAIT);
            if (client_size < 0)
                break;
            int size = s_recv (sock, payload, sizeof payload, &more);
            if (size < 0 || client_size > RELAY_ID_MAX)
                s_die ("task frame");
            int out_size = s_double (payload, size, out, sizeof out);
            s_send (sock, client, (size_t) client_size, true);
            s_send (sock, out, (size_t) out_size, false);
        }
    }
}

// ---------------------------------------------------------------- worker

static int
s_worker (const char *back_ep, long window)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_DEALER);
    if (zmq_connect (sock, back_ep))
        s_die ("zmq_connect");
    char ready[32];
    int n = snprintf (ready, sizeof ready, "READY %ld", window);
    s_send (sock, ready, (size_t) n, false);
    s_serve (sock);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return 0;
}

// A direct worker: ROUTER, answers clients itself (no broker in between).
static int
s_direct_worker (const char *endpoint)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_ROUTER);
    if (zmq_bind (sock, endpoint))
        s_die ("zmq_bind");
    s_serve (sock);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return 0;
}

// ---------------------------------------------------------------- clients

// Checks a reply "<id> <2*id>" (clients send input = task id).
static bool
s_reply_ok (const char *reply, int size, long *id_p)
{
    char text[RELAY_PAYLOAD];
    int n = size < (int) sizeof text - 1 ? size : (int) sizeof text - 1;
    memcpy (text, reply, (size_t) n);
    text[n] = '\0';
    long id = -1, out = -1;
    if (sscanf (text, "%ld %ld", &id, &out) != 2 || out != 2 * id)
        return false;
    *id_p = id;
    return true;
}

static int
s_client_throughput (const char *front_ep, long total)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_DEALER);
    if (zmq_connect (sock, front_ep))
        s_die ("zmq_connect");
    char payload[RELAY_PAYLOAD];
    long sent = 0, received = 0;
    int64_t start = s_now_us (), deadline = s_deadline_us ();
    while (received < total && s_now_us () < deadline) {
        // Send while the window has room, then take every reply that is ready.
        while (sent < total && sent - received < RELAY_CLIENT_WINDOW) {
            int n = snprintf (payload, sizeof payload, "%ld %ld", sent, sent);
            if (zmq_send (sock, payload, (size_t) n, ZMQ_DONTWAIT) < 0)
                break;
            sent++;
        }
        zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 1000) < 0)
            break;
        for (int turn = 0; turn < RELAY_CLIENT_WINDOW; turn++) {
            int size = zmq_recv (sock, payload, sizeof payload, ZMQ_DONTWAIT);
            if (size < 0)
                break;
            long id;
            if (!s_reply_ok (payload, size, &id)) {
                fprintf (stderr, "relay client: bad reply\n");
                return 1;
            }
            received++;
        }
    }
    int64_t elapsed = s_now_us () - start;
    zmq_close (sock);
    zmq_ctx_term (ctx);
    if (received < total) {
        fprintf (stderr, "relay client: %ld of %ld results before the deadline\n", received, total);
        return 1;
    }
    printf ("tasks=%ld seconds=%.6f tasks_per_s=%.1f\n", total, elapsed / 1e6,
            total / (elapsed / 1e6));
    return 0;
}

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

// N sequential round trips over a DEALER connected to endpoint; prints the
// median and p99 in microseconds. The first 1% (at least 10) are warm-up.
static int
s_client_latency (const char *endpoint, long total)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_DEALER);
    if (zmq_connect (sock, endpoint))
        s_die ("zmq_connect");
    long warmup = total / 100 > 10 ? total / 100 : 10;
    int64_t *lat = calloc ((size_t) total, sizeof *lat);
    if (!lat)
        return 1;
    char payload[RELAY_PAYLOAD];
    int64_t deadline = s_deadline_us ();
    for (long i = -warmup; i < total; i++) {
        int n = snprintf (payload, sizeof payload, "%ld %ld", i < 0 ? -i : i, i < 0 ? -i : i);
        int64_t t0 = s_now_us ();
        s_send (sock, payload, (size_t) n, false);
        zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
        int rc = 0;
        while (rc == 0 && s_now_us () < deadline)
            rc = zmq_poll (&item, 1, 1000);
        int size = rc > 0 ? zmq_recv (sock, payload, sizeof payload, 0) : -1;
        long id;
        if (size < 0 || !s_reply_ok (payload, size, &id)) {
            fprintf (stderr, "relay client: no or bad reply for task %ld\n", i);
            return 1;
        }
        if (i >= 0)
            lat[i] = s_now_us () - t0;
    }
    qsort (lat, (size_t) total, sizeof *lat, s_cmp_i64);
    printf ("round_trips=%ld median_us=%" PRId64 " p99_us=%" PRId64 " min_us=%" PRId64
            " max_us=%" PRId64 "\n",
            total, lat[total / 2], lat[(total * 99) / 100], lat[0], lat[total - 1]);
    free (lat);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return 0;
}

// ---------------------------------------------------------------- main

static long
s_count (const char *text, long max)
{
    char *end = NULL;
    long n = strtol (text, &end, 10);
    return (*end || n < 1 || n > max) ? -1 : n;
}

static int
s_usage (FILE *out, int code)
{
    fprintf (out, "usage: relay broker FRONT BACK | worker BACK WINDOW |\n"
                  "       client-throughput FRONT N | client-latency FRONT N |\n"
                  "       direct-worker ENDPOINT | direct-client ENDPOINT N\n"
                  "       relay --help | --version\n"
                  "The raw ZeroMQ baseline of the Keel benchmarks (scripts/bench/run.sh).\n");
    return code;
}

int
main (int argc, char **argv)
{
    if (argc == 2 && (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0))
        return s_usage (stdout, 0);
    if (argc == 2 && strcmp (argv[1], "--version") == 0) {
        printf ("relay (Keel benchmark baseline)\n");
        return 0;
    }
    if (argc == 4 && strcmp (argv[1], "broker") == 0)
        return s_broker (argv[2], argv[3]);
    if (argc == 4 && strcmp (argv[1], "worker") == 0) {
        long window = s_count (argv[3], RELAY_MAX_WINDOW);
        return window < 0 ? s_usage (stderr, 2) : s_worker (argv[2], window);
    }
    if (argc == 3 && strcmp (argv[1], "direct-worker") == 0)
        return s_direct_worker (argv[2]);
    if (argc == 4) {
        long n = s_count (argv[3], RELAY_MAX_TASKS);
        if (n < 0)
            return s_usage (stderr, 2);
        if (strcmp (argv[1], "client-throughput") == 0)
            return s_client_throughput (argv[2], n);
        if (strcmp (argv[1], "client-latency") == 0 || strcmp (argv[1], "direct-client") == 0)
            return s_client_latency (argv[2], n);
    }
    return s_usage (stderr, 2);
}
