/*  keel_admin.c — keel-admin, the operator's command line for a running broker.

    keel-admin [-e ENDPOINT | -c broker.properties] [--json] [--timeout DURATION]
               [--set Security=curve --set CurveKey=FILE --set BrokerKey=FILE]
               COMMAND [ARGS]
    keel-admin keygen NAME

    With Security=curve (--set, or KEEL_Security / KEEL_CurveKey /
    KEEL_BrokerKey in the environment) the request goes over CurveZMQ with
    the admin's certificate CurveKey to the broker whose public certificate
    is BrokerKey; the broker lets only AuthorizedAdmins keys in. `keygen NAME`
    writes a new certificate, NAME (0644) and NAME_secret (0600), and talks
    to no broker.

    -c broker.properties reads what the broker's own file says about
    reaching it: AdminEndpoint, Security, and its public key (the public
    file of the broker's CurveKey: what a client names as BrokerKey). The
    admin's own certificate is never taken from it: the file's CurveKey is
    the broker's, and an admin key is one listed in AuthorizedAdmins; it
    comes from --set CurveKey or KEEL_CurveKey. --set and the environment
    win over the file.

    `tasks SERVICE [--state STATE] [--limit N] [--offset N]` sends its options
    as the arguments "state=STATE", "limit=N", "offset=N" after SERVICE.

    Sends one AdminRequest{command, args} (Envelope sender = SENDER_ADMIN) on a
    DEALER socket to the broker's admin endpoint and waits for the AdminReply.
    The command and its argument count are checked here before anything is
    sent, so a typo never reaches the broker. Exit codes (DESIGN §10): 0 the
    broker answered ok, 1 the broker answered with an error, 2 usage or
    configuration error, 3 no answer within the timeout.
*/
#include <czmq.h>
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "props.h"
#include "security.h"
#include "settings.h"
#include "wire.h"

#define PROGRAM                "keel-admin"
#define DEFAULT_ADMIN_ENDPOINT "tcp://127.0.0.1:7071"
#define DEFAULT_TIMEOUT_MS     5000

// Security, CurveKey, BrokerKey: set once in main before any request.
static keel_security_t s_security;

typedef struct {
    const char *name;
    int min_args;
    int max_args;
    const char *usage;
    const char *summary;
} s_command_t;

static const s_command_t s_commands[] = {
    { "status", 0, 0, "status", "broker role, epoch, engines, services, tasks, counters" },
    { "engines", 0, 0, "engines", "engines known to the broker, online and offline" },
    { "services", 0, 0, "services",
      "services and their task counts; a service whose tasks wait for an engine says why" },
    { "why", 1, 1, "why SERVICE",
      "why a service's tasks wait: per online engine offering its type, whether it meets the "
      "service's condition (and which comparison failed), is draining or blacklisted" },
    { "tasks", 1, 8, "tasks SERVICE [--state STATE] [--limit N] [--offset N]",
      "tasks of one service: state, attempts, engines, error (STATE: queued|running|done|"
      "failed|cancelled; 10000 rows unless --limit)" },
    { "cancel", 1, 1, "cancel SERVICE", "cancel a service: drop queued tasks, stop running ones" },
    { "config", 1, 3, "config get [KEY] | config set KEY VALUE",
      "read a broker setting (every one without KEY) or change one" },
    { "events", 0, 0, "events", "recent broker events" },
    { "maintenance", 0, 1, "maintenance [--pair]",
      "compact the store; --pair: on both brokers of a resilient pair, passive first, handing "
      "over in between, so the pair keeps serving" },
    { "drain", 1, 1, "drain ENGINE", "stop giving new tasks to an engine" },
    { "unblacklist", 1, 2, "unblacklist ENGINE [SERVICE]",
      "give an engine tasks of a service (every service without SERVICE) it was blacklisted "
      "for (BlacklistAfter) again" },
    { "takeover", 0, 0, "takeover",
      "on the passive broker of a pair: planned handover, this broker becomes active" },
    { "keygen", 1, 1, "keygen NAME",
      "write a new CurveZMQ certificate: NAME (public, 0644) and NAME_secret (0600); no broker "
      "is asked" },
    { "leave", 0, 0, "leave",
      "a member of a shared store (Store=postgresql): send its drivers and engines to the "
      "next member, leave the store to it, and stop" },
    { NULL, 0, 0, NULL, NULL }
};

static void
s_print_usage (FILE *out)
{
    fprintf (out,
             "Usage: " PROGRAM " [-e ENDPOINT | -c broker.properties] [--json] "
             "[--timeout DURATION] COMMAND [ARGS]\n"
             "Asks a running keel-broker on its admin endpoint.\n\n"
             "Options:\n"
             "  -e, --endpoint ENDPOINT  admin endpoint (default " DEFAULT_ADMIN_ENDPOINT ")\n"
             "  -c, --config FILE        the broker's properties file: its AdminEndpoint,\n"
             "                           Security and (as BrokerKey) the public file of its\n"
             "                           CurveKey; this admin's CurveKey comes from --set or\n"
             "                           the environment\n"
             "      --set KEY=VALUE      AdminEndpoint=ENDPOINT, Timeout=DURATION,\n"
             "                           Security=none|curve, CurveKey=FILE (this admin's\n"
             "                           certificate), BrokerKey=FILE (the broker's public one);\n"
             "                           also from KEEL_Security, KEEL_CurveKey, KEEL_BrokerKey\n"
             "      --json               print the reply as one JSON object\n"
             "      --timeout DURATION   how long to wait for the answer (default 5s)\n"
             "  -h, --help               this text\n"
             "      --version            print the version\n\n"
             "Commands:\n");
    for (const s_command_t *cmd = s_commands; cmd->name; cmd++)
        if (strlen (cmd->usage) > 38)
            fprintf (out, "  %s\n  %-38s %s\n", cmd->usage, "", cmd->summary);
        else
            fprintf (out, "  %-38s %s\n", cmd->usage, cmd->summary);
    fprintf (out, "\nExit codes: 0 ok, 1 the broker reported an error, 2 usage or "
                  "configuration error, 3 no answer in time.\n");
}

static void
s_command_list (char *buf, size_t size)
{
    buf[0] = '\0';
    for (const s_command_t *cmd = s_commands; cmd->name; cmd++) {
        if (cmd != s_commands)
            strncat (buf, ", ", size - strlen (buf) - 1);
        strncat (buf, cmd->name, size - strlen (buf) - 1);
    }
}

// Checks command and argument count. Returns the command, or NULL after
// printing what is wrong.
static const s_command_t *
s_command_check (const char *name, int nargs, char **args)
{
    const s_command_t *found = NULL;
    for (const s_command_t *cmd = s_commands; cmd->name; cmd++)
        if (strcmp (cmd->name, name) == 0)
            found = cmd;
    if (!found) {
        char list[256];
        s_command_list (list, sizeof list);
        fprintf (stderr, PROGRAM ": unknown command '%s' (commands: %s)\n", name, list);
        return NULL;
    }
    bool arity_ok = nargs >= found->min_args && nargs <= found->max_args;
    if (arity_ok && strcmp (found->name, "maintenance") == 0 && nargs == 1)
        arity_ok = strcmp (args[0], "--pair") == 0;
    if (arity_ok && strcmp (found->name, "config") == 0) {
        if (strcmp (args[0], "get") == 0)
            arity_ok = nargs <= 2; // no KEY: every key (docs/operations.md §5)
        else if (strcmp (args[0], "set") == 0)
            arity_ok = nargs == 3;
        else
            arity_ok = false;
    }
    if (!arity_ok) {
        fprintf (stderr, PROGRAM ": usage: " PROGRAM " [options] %s\n", found->usage);
        return NULL;
    }
    return found;
}

// The options of `tasks SERVICE` become the request's arguments
// "state=S", "limit=N", "offset=N" after SERVICE (docs/protocol.md);
// --json is also taken here, for `keel-admin tasks S --state failed --json`.
// Fills out (room for nargs entries, strings owned by the caller's buffer
// store) and *nout. Returns 0, or 2 after printing what is wrong.
static int
s_tasks_args (int nargs, char **args, char **out, char store[][64], int *nout, bool *json)
{
    static const char *names[] = { "state", "limit", "offset" };
    out[0] = args[0];
    int n = 1;
    for (int i = 1; i < nargs; i++) {
        const char *arg = args[i];
        if (strcmp (arg, "--json") == 0) {
            *json = true;
            continue;
        }
        int which = -1;
        const char *value = NULL;
        for (int k = 0; k < 3; k++) {
            size_t len = strlen (names[k]);
            if (strncmp (arg, "--", 2) != 0 || strncmp (arg + 2, names[k], len) != 0)
                continue;
            if (arg[2 + len] == '=')
                value = arg + 3 + len;
            else if (arg[2 + len] == '\0') {
                if (i + 1 >= nargs) {
                    fprintf (stderr, PROGRAM ": tasks: %s needs a value\n", arg);
                    return KEEL_EXIT_USAGE;
                }
                value = args[++i];
            }
            else
                continue;
            which = k;
        }
        if (which < 0) {
            fprintf (stderr,
                     PROGRAM ": tasks: unknown option '%s' (options: --state STATE, "
                             "--limit N, --offset N)\n",
                     arg);
            return KEEL_EXIT_USAGE;
        }
        bool ok = *value != '\0';
        if (which == 0)
            ok = strcmp (value, "queued") == 0 || strcmp (value, "running") == 0
                 || strcmp (value, "done") == 0 || strcmp (value, "failed") == 0
                 || strcmp (value, "cancelled") == 0 || strcmp (value, "delivered_elsewhere") == 0;
        else
            ok = ok && strlen (value) <= 18 && strspn (value, "0123456789") == strlen (value)
                 && (which == 2 || atoll (value) >= 1);
        if (!ok) {
            fprintf (stderr, PROGRAM ": tasks: --%s: expected %s, got '%s'\n", names[which],
                     which == 0 ? "queued, running, done, failed, cancelled or delivered_elsewhere"
                     : which == 1 ? "a number of rows, 1 or more"
                                  : "a number of rows, 0 or more",
                     value);
            return KEEL_EXIT_USAGE;
        }
        snprintf (store[n], 64, "%s=%s", names[which], value);
        out[n] = store[n];
        n++;
    }
    *nout = n;
    return 0;
}

// Formats a duration for messages: "5 s", "500 ms", "1.5 s".
static void
s_format_duration (int64_t ms, char *buf, size_t size)
{
    if (ms % 1000 == 0)
        snprintf (buf, size, "%lld s", (long long) (ms / 1000));
    else if (ms < 1000)
        snprintf (buf, size, "%lld ms", (long long) ms);
    else
        snprintf (buf, size, "%.1f s", (double) ms / 1000.0);
}

// The environment's KEEL_<key> (as written, or upper-cased), or NULL.
static const char *
s_env (const char *key)
{
    char name[64], upper[64];
    snprintf (name, sizeof name, "KEEL_%s", key);
    const char *value = getenv (name);
    if (value)
        return value;
    for (size_t i = 0; i < sizeof upper && (upper[i] = (char) toupper (name[i])); i++)
        ;
    upper[sizeof upper - 1] = 0;
    return getenv (upper);
}

// What -c takes from the broker's properties file (see the top of this
// file). Each is NULL when the file does not set it; the strings belong to
// props.
typedef struct {
    keel_props_t *props;
    const char *endpoint;          // AdminEndpoint
    const char *security;          // Security
    const char *broker_key;        // CurveKey: the broker's certificate
    const char *authorized_admins; // AuthorizedAdmins, for a hint
} s_file_t;

static const char *
s_file_get (keel_props_t *props, const char *key)
{
    const char *value = keel_props_get (props, key);
    return value && *value ? value : NULL;
}

// Reads the broker's properties file at path into *file (destroy its props
// with keel_props_destroy). Returns 0, or 2 after printing the error.
static int
s_file_read (const char *path, s_file_t *file)
{
    keel_error_t err = { "" };
    memset (file, 0, sizeof *file);
    file->props = keel_props_load_file (path, &err);
    if (!file->props) {
        fprintf (stderr, PROGRAM ": %s\n", err.text[0] ? err.text : path);
        return KEEL_EXIT_USAGE;
    }
    file->endpoint = s_file_get (file->props, "AdminEndpoint");
    file->security = s_file_get (file->props, "Security");
    file->broker_key = s_file_get (file->props, "CurveKey");
    file->authorized_admins = s_file_get (file->props, "AuthorizedAdmins");
    return 0;
}

// Sends the request and waits for the reply. Returns the exit code.
typedef struct {
    bool answered;
    bool ok;
    char *error; // heap
    char *json;  // heap
    char *text;  // heap
} s_reply_t;

static void
s_reply_free (s_reply_t *r)
{
    free (r->error);
    free (r->json);
    free (r->text);
    memset (r, 0, sizeof *r);
}

// Sends one request and waits (up to timeout_ms) for its reply. Returns
// KEEL_EXIT_OK with *reply filled when the broker answered (ok or not),
// another exit code after printing why not.
static int
s_request (const char *endpoint, const char *command, int nargs, char **args, int64_t timeout_ms,
           s_reply_t *out)
{
    memset (out, 0, sizeof *out);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer) {
        fprintf (stderr, PROGRAM ": cannot create a socket: %s\n", zmq_strerror (zmq_errno ()));
        return KEEL_EXIT_FAILED;
    }
    zsock_set_linger (dealer, 0);
    zsock_set_maxmsgsize (dealer, KEEL_DEFAULT_MAX_MSG_SIZE);
    zsock_set_sndtimeo (dealer, (int) timeout_ms);
    keel_security_client (dealer, &s_security, NULL);
    if (zsock_connect (dealer, "%s", endpoint) != 0) {
        fprintf (stderr, PROGRAM ": cannot connect to '%s': %s\n", endpoint,
                 zmq_strerror (zmq_errno ()));
        zsock_destroy (&dealer);
        return KEEL_EXIT_USAGE;
    }

    keel_msg_t request;
    keel_env_t *env = keel_msg_admin_request (&request, command, args, (size_t) nargs);

    int64_t deadline = zclock_mono () + timeout_ms;
    zframe_t *frame = keel_wire_encode (env);
    if (!frame) {
        fprintf (stderr, PROGRAM ": cannot encode the request\n");
        zsock_destroy (&dealer);
        return KEEL_EXIT_FAILED;
    }
    if (zframe_send (&frame, dealer, 0) != 0)
        zframe_destroy (&frame);
    else {
        // Bounded by the deadline: frames that are not our reply are skipped.
        while (true) {
            int64_t left = deadline - zclock_mono ();
            if (left <= 0)
                break;
            zsock_set_rcvtimeo (dealer, (int) left);
            zframe_t *in = zframe_recv (dealer);
            if (!in)
                break;
            keel_error_t err = { "" };
            keel_env_t *reply = keel_wire_decode (zframe_data (in), zframe_size (in), &err);
            zframe_destroy (&in);
            if (!reply)
                continue;
            if (reply->body_case != KEEL__ENVELOPE__BODY_ADMIN_REPLY) {
                keel_wire_free (&reply);
                continue;
            }
            const Keel__AdminReply *ar = reply->admin_reply;
            out->answered = true;
            out->ok = ar->has_ok && ar->ok;
            out->error =
                strdup (ar->error && *ar->error ? ar->error : "the broker refused the request");
            out->json = strdup (ar->json ? ar->json : "");
            out->text = strdup (ar->text ? ar->text : "");
            keel_wire_free (&reply);
            zsock_destroy (&dealer);
            return KEEL_EXIT_OK;
        }
    }
    char took[32];
    s_format_duration (timeout_ms, took, sizeof took);
    fprintf (stderr, PROGRAM ": no answer from %s within %s (is keel-broker running?)\n", endpoint,
             took);
    zsock_destroy (&dealer);
    return KEEL_EXIT_NOBROKER;
}

static int
s_ask (const char *endpoint, const char *command, int nargs, char **args, bool json,
       int64_t timeout_ms)
{
    s_reply_t r;
    int rc = s_request (endpoint, command, nargs, args, timeout_ms, &r);
    if (rc != KEEL_EXIT_OK)
        return rc;
    if (r.ok) {
        const char *out = json ? r.json : (r.text && *r.text ? r.text : r.json);
        if (out && *out) {
            fputs (out, stdout);
            if (out[strlen (out) - 1] != '\n')
                fputc ('\n', stdout);
        }
    }
    else
        fprintf (stderr, PROGRAM ": %s\n", r.error);
    rc = r.ok ? KEEL_EXIT_OK : KEEL_EXIT_FAILED;
    s_reply_free (&r);
    return rc;
}

// ---------------------------------------------------------------- the pair

// The string value of "key":"..." in our own status JSON (its keys are
// unique across the object). False when absent.
static bool
s_json_str (const char *json, const char *key, char *out, size_t size)
{
    char pattern[64];
    snprintf (pattern, sizeof pattern, "\"%s\":\"", key);
    const char *p = json ? strstr (json, pattern) : NULL;
    if (!p)
        return false;
    p += strlen (pattern);
    size_t n = 0;
    while (p[n] && p[n] != '"' && n + 1 < size)
        n++;
    memcpy (out, p, n);
    out[n] = 0;
    return true;
}

typedef struct {
    char role[32];
    char peer_admin[256];
    bool synced;
} s_pair_view_t;

static bool
s_pair_view (const char *endpoint, int64_t timeout_ms, s_pair_view_t *v)
{
    memset (v, 0, sizeof *v);
    s_reply_t r;
    if (s_request (endpoint, "status", 0, NULL, timeout_ms, &r) != KEEL_EXIT_OK)
        return false;
    bool ok = r.ok && s_json_str (r.json, "role", v->role, sizeof v->role);
    s_json_str (r.json, "peer_admin", v->peer_admin, sizeof v->peer_admin);
    v->synced = r.json && strstr (r.json, "\"synced\":true");
    s_reply_free (&r);
    return ok;
}

// Polls endpoint's status until its role is `role` (and, for a passive,
// its mirror is in sync), for up to wait_ms. True when it got there.
static bool
s_wait_role (const char *endpoint, const char *role, int64_t wait_ms, int64_t timeout_ms)
{
    int64_t deadline = zclock_mono () + wait_ms;
    for (int i = 0; i < 10000 && zclock_mono () < deadline; i++) {
        s_pair_view_t v;
        if (s_pair_view (endpoint, timeout_ms, &v) && strcmp (v.role, role) == 0
            && (strcmp (role, "passive") != 0 || v.synced))
            return true;
        zclock_sleep (100);
    }
    return false;
}

// keel-admin takeover: asks the passive to take over, then waits until it
// is active.
static int
s_takeover (const char *endpoint, int64_t timeout_ms)
{
    s_reply_t r;
    int rc = s_request (endpoint, "takeover", 0, NULL, timeout_ms, &r);
    if (rc != KEEL_EXIT_OK)
        return rc;
    if (!r.ok) {
        fprintf (stderr, PROGRAM ": takeover: %s\n", r.error);
        s_reply_free (&r);
        return KEEL_EXIT_FAILED;
    }
    s_reply_free (&r);
    int64_t wait = timeout_ms > 10000 ? timeout_ms : 10000;
    if (!s_wait_role (endpoint, "active", wait, timeout_ms)) {
        fprintf (stderr, PROGRAM ": takeover: %s did not become active within %lld s\n", endpoint,
                 (long long) (wait / 1000));
        return KEEL_EXIT_FAILED;
    }
    printf ("%s is active\n", endpoint);
    return KEEL_EXIT_OK;
}

// keel-admin maintenance --pair: maintenance on the passive, handover,
// maintenance on the other (passive now), handover back.
static int
s_pair_maintenance (const char *endpoint, bool json, int64_t timeout_ms)
{
    s_pair_view_t v;
    if (!s_pair_view (endpoint, timeout_ms, &v))
        return KEEL_EXIT_NOBROKER;
    if (strcmp (v.role, "active") != 0 && strcmp (v.role, "passive") != 0) {
        fprintf (stderr, PROGRAM ": maintenance --pair: %s is %s, not a broker of a running pair\n",
                 endpoint, v.role);
        return KEEL_EXIT_FAILED;
    }
    if (!v.peer_admin[0] || strchr (v.peer_admin, '*')) {
        fprintf (stderr,
                 PROGRAM ": maintenance --pair: the peer's AdminEndpoint is '%s': not one to "
                         "connect to (run maintenance and takeover on each broker by hand)\n",
                 v.peer_admin);
        return KEEL_EXIT_FAILED;
    }
    char first[256], second[256]; // passive first
    snprintf (first, sizeof first, "%s", strcmp (v.role, "passive") == 0 ? endpoint : v.peer_admin);
    snprintf (second, sizeof second, "%s",
              strcmp (v.role, "passive") == 0 ? v.peer_admin : endpoint);
    int64_t wait = timeout_ms > 20000 ? timeout_ms : 20000;
    const char *order[2] = { first, second };
    for (int round = 0; round < 2; round++) {
        const char *passive = order[round];
        if (!s_wait_role (passive, "passive", wait, timeout_ms)) {
            fprintf (stderr, PROGRAM ": maintenance --pair: %s is not a passive in sync\n",
                     passive);
            return KEEL_EXIT_FAILED;
        }
        printf ("maintenance on %s (passive)\n", passive);
        fflush (stdout);
        int rc = s_ask (passive, "maintenance", 0, NULL, json, timeout_ms);
        if (rc != KEEL_EXIT_OK)
            return rc;
        if (!s_wait_role (passive, "passive", wait, timeout_ms)) {
            fprintf (stderr, PROGRAM ": maintenance --pair: %s did not get back in sync\n",
                     passive);
            return KEEL_EXIT_FAILED;
        }
        printf ("handover to %s\n", passive);
        fflush (stdout);
        rc = s_takeover (passive, timeout_ms);
        if (rc != KEEL_EXIT_OK)
            return rc;
    }
    printf ("maintenance done on both brokers; %s is active again\n", second);
    return KEEL_EXIT_OK;
}

// Checks Security and loads the keys into s_security. Returns 0, or 2
// after printing what is wrong (with a hint when -c asked for curve and
// no admin certificate was given).
static int
s_security_setup (const char *security, const char *cert, const char *broker_key,
                  const char *config_path, const s_file_t *file)
{
    if (security && strcmp (security, "none") != 0 && strcmp (security, "curve") != 0) {
        fprintf (stderr, PROGRAM ": Security: expected one of none|curve, got '%s'\n", security);
        return KEEL_EXIT_USAGE;
    }
    keel_error_t err = { "" };
    if (keel_security_init (&s_security, security, "CurveKey", cert, "BrokerKey", broker_key, &err)
        == KEEL_OK)
        return 0;
    // security == file->security: Security=curve came from the file.
    if (config_path && security == file->security && (!cert || !*cert))
        fprintf (stderr,
                 PROGRAM ": CurveKey: %s says Security=curve: give this admin's own certificate "
                         "with --set CurveKey=FILE or KEEL_CurveKey (not the broker's CurveKey); "
                         "its public file belongs in %s%s\n",
                 config_path, file->authorized_admins ? file->authorized_admins : "",
                 file->authorized_admins ? ", the broker's AuthorizedAdmins"
                                         : "the broker's AuthorizedAdmins");
    else if (config_path && broker_key && broker_key == file->broker_key
             && strncmp (err.text, "BrokerKey", 9) == 0)
        fprintf (stderr, PROGRAM ": %s (BrokerKey: the CurveKey of %s)\n", err.text, config_path);
    else
        fprintf (stderr, PROGRAM ": %s\n", err.text);
    return KEEL_EXIT_USAGE;
}

//  --help or --version anywhere before "--", also after the command
//  ("keel-admin tasks --help"): answered at once, before any other argument
//  is checked and without contacting a broker. Returns 'h', 'V' or 0.
static int
s_help_or_version (int argc, char **argv)
{
    int found = 0;
    for (int i = 1; i < argc && strcmp (argv[i], "--") != 0; i++) {
        if (streq (argv[i], "--help") || streq (argv[i], "-h"))
            return 'h';
        if (streq (argv[i], "--version"))
            found = 'V';
    }
    return found;
}

int
main (int argc, char **argv)
{
    static const struct option options[] = {
        { "endpoint", required_argument, NULL, 'e' }, { "config", required_argument, NULL, 'c' },
        { "set", required_argument, NULL, 's' },      { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },  { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },        { NULL, 0, NULL, 0 }
    };
    const char *endpoint_arg = NULL;
    const char *config_path = NULL;
    const char *timeout_arg = NULL;
    const char *security_arg = s_env ("Security");
    const char *cert_arg = s_env ("CurveKey");
    const char *broker_key_arg = s_env ("BrokerKey");
    bool json = false;
    int opt;

    switch (s_help_or_version (argc, argv)) {
        case 'h':
            s_print_usage (stdout);
            return KEEL_EXIT_OK;
        case 'V':
            keel_cli_print_version (PROGRAM, stdout);
            return KEEL_EXIT_OK;
        default:
            break;
    }
    // '+': stop at the command, so its arguments are never taken as options.
    while ((opt = getopt_long (argc, argv, "+e:c:h", options, NULL)) != -1) {
        switch (opt) {
            case 'e':
                endpoint_arg = optarg;
                break;
            case 'c':
                config_path = optarg;
                break;
            case 's':
                if (strncmp (optarg, "AdminEndpoint=", 14) == 0)
                    endpoint_arg = optarg + 14;
                else if (strncmp (optarg, "Timeout=", 8) == 0)
                    timeout_arg = optarg + 8;
                else if (strncmp (optarg, "Security=", 9) == 0)
                    security_arg = optarg + 9;
                else if (strncmp (optarg, "CurveKey=", 9) == 0)
                    cert_arg = optarg + 9;
                else if (strncmp (optarg, "BrokerKey=", 10) == 0)
                    broker_key_arg = optarg + 10;
                else {
                    fprintf (stderr,
                             PROGRAM ": --set %s: unknown key (keys: AdminEndpoint, Timeout, "
                                     "Security, CurveKey, BrokerKey)\n",
                             optarg);
                    return KEEL_EXIT_USAGE;
                }
                break;
            case 'j':
                json = true;
                break;
            case 't':
                timeout_arg = optarg;
                break;
            case 'h':
                s_print_usage (stdout);
                return KEEL_EXIT_OK;
            case 'V':
                keel_cli_print_version (PROGRAM, stdout);
                return KEEL_EXIT_OK;
            default:
                fprintf (stderr, "Try '" PROGRAM " --help'.\n");
                return KEEL_EXIT_USAGE;
        }
    }
    if (endpoint_arg && config_path) {
        fprintf (stderr, PROGRAM ": -e and -c both name the endpoint; give one\n");
        return KEEL_EXIT_USAGE;
    }
    if (optind >= argc) {
        fprintf (stderr, PROGRAM ": no command given\n");
        s_print_usage (stderr);
        return KEEL_EXIT_USAGE;
    }
    const char *command = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    if (!s_command_check (command, nargs, args))
        return KEEL_EXIT_USAGE;
    if (strcmp (command, "keygen") == 0) {
        keel_error_t err = { "" };
        if (keel_security_keygen (args[0], &err) != KEEL_OK) {
            fprintf (stderr, PROGRAM ": %s\n", err.text);
            return KEEL_EXIT_USAGE;
        }
        printf ("%s\n%s_secret\n", args[0], args[0]);
        return KEEL_EXIT_OK;
    }
    int64_t timeout_ms = DEFAULT_TIMEOUT_MS;
    if (timeout_arg) {
        keel_error_t err = { "" };
        if (keel_duration_parse (timeout_arg, "s", &timeout_ms, &err) != KEEL_OK || timeout_ms <= 0
            || timeout_ms > 24LL * 3600 * 1000) {
            fprintf (stderr,
                     PROGRAM ": --timeout: expected a duration such as 500ms or 5s, got '%s'\n",
                     timeout_arg);
            return KEEL_EXIT_USAGE;
        }
    }

    s_file_t file = { 0 };
    if (config_path) {
        int rc = s_file_read (config_path, &file);
        if (rc != 0)
            return rc;
        if (!security_arg)
            security_arg = file.security;
        if (!broker_key_arg)
            broker_key_arg = file.broker_key;
    }
    int rc = s_security_setup (security_arg, cert_arg, broker_key_arg, config_path, &file);
    char *endpoint = NULL;
    if (rc == 0) {
        endpoint = strdup (endpoint_arg    ? endpoint_arg
                           : file.endpoint ? file.endpoint
                                           : DEFAULT_ADMIN_ENDPOINT);
        if (!endpoint)
            rc = KEEL_EXIT_FAILED;
    }
    keel_props_destroy (&file.props);
    if (rc != 0)
        return rc;

    char *tasks_args[8];
    char tasks_store[8][64];
    if (strcmp (command, "tasks") == 0) {
        rc = s_tasks_args (nargs, args, tasks_args, tasks_store, &nargs, &json);
        if (rc != 0) {
            free (endpoint);
            return rc;
        }
        args = tasks_args;
    }

    // CZMQ would otherwise install its own SIGINT handler and print on exit.
    zsys_handler_set (NULL);
    if (strcmp (command, "takeover") == 0)
        rc = s_takeover (endpoint, timeout_ms);
    else if (strcmp (command, "maintenance") == 0 && nargs == 1)
        rc = s_pair_maintenance (endpoint, json, timeout_ms);
    else
        rc = s_ask (endpoint, command, nargs, args, json, timeout_ms);
    free (endpoint);
    return rc;
}
