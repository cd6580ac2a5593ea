/*  daemon.c — the keel-engine process: sockets, tasks and the main loop. */
#include "daemon.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builtin.h"
#include "log.h"
#include "runner.h"
#include "engine_session.h"
#include "spool.h"
#include "statedir.h"
#include "held.h"
#include "initdata.h"
#include "journal.h"
#include "wire.h"

#define S_MSGS_PER_TURN     256     // broker messages handled per loop turn
#define S_RESULTS_PER_TURN  256     // held results (re)sent per loop turn
#define S_POLL_MAX_MS       5000
#define S_HWM               100000
#define S_LOGOFF_LINGER_MS  1000
#define S_QUEUE_MAX         10000   // queued tasks beyond the slots (EnginePrefetch's limit)

//  Bytes of held results one EngineLogin may carry (well below the
//  broker's default MaxMessageSize of 64 MiB); the rest follow as Results.
#define S_LOGIN_RESULT_BYTES (8 * 1024 * 1024)

//  Results leave in ResultBatch messages of at most S_BATCH_RESULTS Results;
//  once one holds S_BATCH_BYTES of output and error text the next Result
//  starts a new message (far below MaxMessageSize). A larger Result goes
//  alone, as a plain Result.
#define S_BATCH_RESULTS     512
#define S_BATCH_BYTES       (1024 * 1024)

//  A task waiting for a free worker: what starting it needs beyond its held
//  entry (which has its service id, task id and type).
typedef struct {
    uint64_t execution_id;
    size_t input_size;
    size_t memory_size;
    bool has_memory;
    uint8_t data[];             // input, then memory
} s_queued_t;

//  A task that ended during this turn while ONLINE: its Result leaves at the
//  end of the turn with the others (s_flush_finished), then its "task
//  finished" line is written, from this copy (the task may be gone by then).
typedef struct {
    uint64_t execution_id;
    bool log;                   // write the "task finished" line
    bool ok;
    bool permanent;             // failed permanently (no retry can succeed)
    uint64_t run_ms;
    char *error;                // failed: a copy of the error text, or NULL
} s_finished_t;

struct _keel_daemon_t {
    const keel_engine_config_t *cfg;
    keel_statedir_t *statedir;
    keel_spool_t *spool;
    keel_runner_t *runner;
    keel_held_t *tasks;
    keel_initdata_t *init;      // session init data per service
    zlistx_t *queued;           // s_queued_t * tasks waiting for a free worker
    keel_engine_session_t *session;
    keel_engine_session_ops_t ops;
    zsock_t *dealer;            // to the current broker; NULL when offline
    zsock_t *probe;             // to the primary while probing
    unsigned dealer_gen;        // changes whenever dealer is replaced
    char session_id[37];
    uint64_t seq;
    int64_t now;
    uint64_t malformed_messages;
    uint64_t unexpected_messages;
    keel_ratelimit_t bad_log;
    keel_ratelimit_t task_log;      // lines a broker's message causes about one task it names
    keel_ratelimit_t peer_log;      // other lines a broker's valid message causes (its text, init data)
    s_finished_t *finished;     // tasks that ended this turn while ONLINE, in order
    size_t nfinished, finished_cap;
    //  The Results being collected for one message (s_batch_add, s_batch_send).
    keel_held_task_t *batch_tasks[S_BATCH_RESULTS];
    Keel__Result batch_results[S_BATCH_RESULTS];
    Keel__Result *batch_ptrs[S_BATCH_RESULTS];
    size_t nbatch;
    size_t batch_bytes;
    bool batch_failed;          // a send failed: the connection takes no more now
};

// ------------------------------------------------------------ sending

static keel_err
s_send (keel_daemon_t *self, zsock_t *sock, keel_env_t *env)
{
    if (!sock)
        return KEEL_ERR_STATE;
    env->has_seq = true;
    env->seq = ++self->seq;
    keel_err rc = keel_wire_send (sock, env);
    if (rc == KEEL_OK && sock == self->dealer)
        keel_engine_session_sent (self->session, self->now);
    return rc;
}

static zsock_t *
s_dealer_new (keel_daemon_t *self, const char *endpoint, bool immediate)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_immediate (sock, immediate ? 1 : 0);
    zsock_set_maxmsgsize (sock, self->cfg->max_message_bytes);
    zsock_set_sndhwm (sock, S_HWM);
    zsock_set_rcvhwm (sock, S_HWM);
    if (zsock_connect (sock, "%s", endpoint) != 0) {
        zsock_destroy (&sock);
        return NULL;
    }
    return sock;
}

//  Sends the Result of a done task on the current connection.
static void
s_send_result (keel_daemon_t *self, keel_held_task_t *task)
{
    Keel__Result result;
    keel_held_result_view (task, &result);
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    env.body_case = KEEL__ENVELOPE__BODY_RESULT;
    env.result = &result;
    if (s_send (self, self->dealer, &env) == KEEL_OK)
        keel_held_step (task, KEEL_HELD_EV_SENT);
}

//  Starts collecting Results for the current connection.
static void
s_batch_begin (keel_daemon_t *self)
{
    self->nbatch = 0;
    self->batch_bytes = 0;
    self->batch_failed = false;
}

//  Sends the collected Results: one alone as a Result, more as one
//  ResultBatch, and marks them sent. When the connection does not take the
//  message they stay unsent (s_flush_results offers them again next turn)
//  and nothing more is sent until the next s_batch_begin.
static void
s_batch_send (keel_daemon_t *self)
{
    size_t n = self->nbatch;
    self->nbatch = 0;
    self->batch_bytes = 0;
    if (n == 0 || self->batch_failed)
        return;
    if (n == 1) {
        s_send_result (self, self->batch_tasks[0]);
        self->batch_failed = self->batch_tasks[0]->state != KEEL_HELD_SENT;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        keel_held_result_view (self->batch_tasks[i], &self->batch_results[i]);
        self->batch_ptrs[i] = &self->batch_results[i];
    }
    Keel__ResultBatch batch = KEEL__RESULT_BATCH__INIT;
    batch.n_results = n;
    batch.results = self->batch_ptrs;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    env.body_case = KEEL__ENVELOPE__BODY_RESULT_BATCH;
    env.result_batch = &batch;
    if (s_send (self, self->dealer, &env) == KEEL_OK) {
        for (size_t i = 0; i < n; i++)
            keel_held_step (self->batch_tasks[i], KEEL_HELD_EV_SENT);
    }
    else
        self->batch_failed = true;
}

//  Adds a done task's Result to the message being collected, sending that
//  message first when it is full or this Result would take it past
//  S_BATCH_BYTES. Returns false once a send failed.
static bool
s_batch_add (keel_daemon_t *self, keel_held_task_t *task)
{
    size_t bytes = task->output_size + (task->error ? strlen (task->error) : 0);
    if (self->nbatch
        && (self->nbatch == S_BATCH_RESULTS || self->batch_bytes + bytes > S_BATCH_BYTES))
        s_batch_send (self);
    if (self->batch_failed)
        return false;
    self->batch_tasks[self->nbatch++] = task;
    self->batch_bytes += bytes;
    return true;
}

//  A printable excerpt of data for the log ("37", "\x01..." as '?').
static void
s_excerpt (const uint8_t *data, size_t size, char *buf, size_t bufsize)
{
    size_t n = 0;
    for (size_t i = 0; i < size && n + 4 < bufsize; i++)
        buf[n++] = (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '"') ? (char) data[i] : '?';
    if (size > n && n + 3 < bufsize)
        n += (size_t) snprintf (buf + n, bufsize - n, "...");
    buf[n] = 0;
}

//  Sends the pending checkpoint of a running task on the current connection.
static void
s_send_checkpoint (keel_daemon_t *self, keel_held_task_t *task)
{
    Keel__Checkpoint cp = KEEL__CHECKPOINT__INIT;
    cp.service_id = task->service_id;
    cp.has_task_id = cp.has_execution_id = cp.has_data = true;
    cp.task_id = task->task_id;
    cp.execution_id = task->execution_id;
    cp.data.data = task->checkpoint;
    cp.data.len = task->checkpoint_size;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    env.body_case = KEEL__ENVELOPE__BODY_CHECKPOINT;
    env.checkpoint = &cp;
    if (s_send (self, self->dealer, &env) != KEEL_OK)
        return;     // still pending: sent again after the next login
    task->checkpoint_pending = false;
    char shown[40];
    s_excerpt (task->checkpoint, task->checkpoint_size, shown, sizeof shown);
    KEEL_DEBUG ("engine", "checkpoint sent exec=%" PRIu64 " task=%" PRIu64 " bytes=%zu data=\"%s\"",
                task->execution_id, task->task_id, task->checkpoint_size, shown);
}

//  Sends every pending checkpoint (after a login: the broker has only seen
//  what reached it before the connection was lost).
static void
s_flush_checkpoints (keel_daemon_t *self)
{
    if (keel_engine_session_state (self->session) != KEEL_ENGINE_SESSION_ONLINE)
        return;
    for (size_t i = 0; i < keel_held_size (self->tasks); i++) {
        keel_held_task_t *task = keel_held_at (self->tasks, i);
        if (task->state == KEEL_HELD_RUNNING && task->checkpoint_pending)
            s_send_checkpoint (self, task);
    }
}

//  (Re)sends up to S_RESULTS_PER_TURN unsent results, batched.
static void
s_flush_results (keel_daemon_t *self)
{
    if (keel_engine_session_state (self->session) != KEEL_ENGINE_SESSION_ONLINE)
        return;
    s_batch_begin (self);
    int taken = 0;
    for (size_t i = 0; i < keel_held_size (self->tasks) && taken < S_RESULTS_PER_TURN; i++) {
        keel_held_task_t *task = keel_held_at (self->tasks, i);
        if (task->state != KEEL_HELD_DONE)
            continue;
        if (!s_batch_add (self, task))
            break;      // the connection cannot take more now
        taken++;
    }
    s_batch_send (self);
}

static void
s_forget (keel_daemon_t *self, uint64_t execution_id)
{
    if (keel_runner_is_running (self->runner, execution_id))
        keel_runner_cancel (self->runner, execution_id);
    keel_held_task_t *task = keel_held_find (self->tasks, execution_id);
    if (task && task->spooled)
        keel_spool_remove (self->spool, execution_id);
    keel_held_remove (self->tasks, execution_id);
}

//  Writes a finished task's result to the spool unless it is there. Results
//  are spooled only when they may have to outlive this process while no
//  broker has them: finished while offline, unacknowledged when the
//  connection drops, or at stop. Online, the broker commits a result within
//  CommitDelay, and a result lost with a crashed engine only means the
//  broker runs that task again.
static void
s_spool (keel_daemon_t *self, keel_held_task_t *task)
{
    if (!keel_held_is_done (task) || task->spooled)
        return;
    Keel__Result result;
    keel_held_result_view (task, &result);
    keel_error_t err;
    if (keel_spool_write (self->spool, &result, &err) == KEEL_OK)
        keel_held_step (task, KEEL_HELD_EV_SPOOLED);
    else
        KEEL_ERROR ("engine", "result not spooled exec=%" PRIu64 " error=\"%s\"",
                    task->execution_id, err.text);
}

static void
s_spool_all (keel_daemon_t *self)
{
    for (size_t i = 0; i < keel_held_size (self->tasks); i++)
        s_spool (self, keel_held_at (self->tasks, i));
}

static void
s_log_finished (uint64_t execution_id, bool ok, bool permanent, uint64_t run_ms,
                const char *error)
{
    KEEL_INFO ("engine", "task finished exec=%" PRIu64 " status=%s run_ms=%lld%s%s%s",
               execution_id, ok ? "ok" : permanent ? "failed-permanent" : "failed",
               (long long) run_ms, ok ? "" : " error=\"",
               ok ? "" : error ? error : "", ok ? "" : "\"");
}

//  Remembers a task that ended this turn while ONLINE. False when out of memory.
static bool
s_finished_push (keel_daemon_t *self, keel_held_task_t *task, bool log)
{
    if (self->nfinished == self->finished_cap) {
        size_t cap = self->finished_cap ? self->finished_cap * 2 : 256;
        s_finished_t *grown = realloc (self->finished, cap * sizeof *grown);
        if (!grown)
            return false;
        self->finished = grown;
        self->finished_cap = cap;
    }
    s_finished_t *f = &self->finished[self->nfinished++];
    f->execution_id = task->execution_id;
    f->log = log;
    f->ok = task->ok;
    f->permanent = task->permanent;
    f->run_ms = task->run_ms;
    f->error = log && !task->ok && task->error ? strdup (task->error) : NULL;
    return true;
}

//  Hands a task that just became done on. ONLINE, its Result leaves at the
//  end of this turn, batched with the others that ended in it
//  (s_flush_finished), which writes its "task finished" line (when log)
//  after the send: returns true. Not ONLINE, it is spooled now (and sent
//  after the next login): returns false, the caller logs.
static bool
s_deliver (keel_daemon_t *self, keel_held_task_t *task, bool log)
{
    if (keel_engine_session_state (self->session) != KEEL_ENGINE_SESSION_ONLINE) {
        s_spool (self, task);
        return false;
    }
    if (s_finished_push (self, task, log))
        return true;
    s_send_result (self, task);     // no memory to hold it back: alone, now
    return false;
}

//  The one way a task that ran ends, wherever it ran (a worker's result
//  through s_on_done, or an inline built-in): record, deliver, log. A task
//  no longer held (cancelled, dropped) or already done reports nothing.
static void
s_finish (keel_daemon_t *self, const keel_runner_result_t *r)
{
    keel_held_task_t *task = keel_held_find (self->tasks, r->execution_id);
    if (!task || task->state != KEEL_HELD_RUNNING)
        return;
    keel_held_finish (task, r->ok, r->data, r->size, r->run_ms);
    task->permanent = !r->ok && r->permanent;
    KEEL_JOURNAL ("exec_end", .service = task->service_id, .task = task->task_id,
                  .execution = task->execution_id, .status = r->ok ? "ok" : "failed");
    //  Deliver first, log after: whoever reads this line (an operator, a
    //  test about to kill the engine) may rely on the result being safe.
    //  ONLINE the line is written at the end of the turn, once the Result
    //  left in its batch (s_flush_finished); otherwise it is spooled now.
    if (!s_deliver (self, task, true))
        s_log_finished (task->execution_id, task->ok, task->permanent, task->run_ms,
                        task->error);
}

//  The end of a loop turn: the Results of the tasks that ended in it leave
//  together (one ResultBatch, or a plain Result for one), then their
//  "task finished" lines are written. A task cancelled or dropped since is
//  not sent; one already sent (a login in this turn re-sent it) is not sent
//  twice. If the session left ONLINE during the turn, the connection's
//  close spooled every result and the next login carries them.
static void
s_flush_finished (keel_daemon_t *self)
{
    if (self->nfinished == 0)
        return;
    bool online = keel_engine_session_state (self->session) == KEEL_ENGINE_SESSION_ONLINE;
    if (online) {
        s_batch_begin (self);
        for (size_t i = 0; i < self->nfinished; i++) {
            keel_held_task_t *task = keel_held_find (self->tasks, self->finished[i].execution_id);
            if (task && task->state == KEEL_HELD_DONE && !s_batch_add (self, task))
                break;      // the connection takes no more now: s_flush_results retries
        }
        s_batch_send (self);
    }
    for (size_t i = 0; i < self->nfinished; i++) {
        s_finished_t *f = &self->finished[i];
        if (!online) {
            keel_held_task_t *task = keel_held_find (self->tasks, f->execution_id);
            if (task)
                s_spool (self, task);
        }
        if (f->log)
            s_log_finished (f->execution_id, f->ok, f->permanent, f->run_ms, f->error);
        free (f->error);
    }
    self->nfinished = 0;
}

// ------------------------------------------------------------ session actions

static bool
s_op_connect (void *arg, int index)
{
    keel_daemon_t *self = arg;
    zsock_destroy (&self->dealer);
    self->dealer = s_dealer_new (self, self->cfg->brokers[index], true);
    self->dealer_gen++;
    return self->dealer != NULL;
}

static void
s_op_disconnect (void *arg)
{
    keel_daemon_t *self = arg;
    s_spool_all (self);     // no broker has acknowledged these yet
    for (size_t i = 0; i < keel_held_size (self->tasks); i++)
        keel_held_step (keel_held_at (self->tasks, i), KEEL_HELD_EV_DISCONNECTED);
    if (self->dealer) {
        zsock_destroy (&self->dealer);
        self->dealer_gen++;
    }
}

static bool
s_op_send_login (void *arg)
{
    keel_daemon_t *self = arg;
    size_t n = keel_held_size (self->tasks);
    Keel__HeldTask *held = calloc (n ? n : 1, sizeof *held);
    Keel__HeldTask **held_p = calloc (n ? n : 1, sizeof *held_p);
    Keel__Result *results = calloc (n ? n : 1, sizeof *results);
    char *types[KEEL_ENGINE_MAX_SERVICES];
    bool sent = false;
    if (held && held_p && results) {
        size_t budget = S_LOGIN_RESULT_BYTES;
        for (size_t i = 0; i < n; i++) {
            keel_held_task_t *task = keel_held_at (self->tasks, i);
            keel__held_task__init (&held[i]);
            held[i].service_id = task->service_id;
            held[i].has_task_id = held[i].has_execution_id = held[i].has_state = true;
            held[i].task_id = task->task_id;
            held[i].execution_id = task->execution_id;
            //  Results ride in the login up to a byte budget, so a few large
            //  ones can never make the login too big for the broker; a done
            //  task past the budget is listed as running and its result
            //  follows as a Result once the verdicts are in (KEEP or HOLD).
            held[i].state = KEEL__HELD_STATE__HELD_RUNNING;
            if (keel_held_is_done (task)) {
                size_t size = keel_held_result_bytes (task);
                bool carried = size <= budget;
                keel_held_step (task, carried ? KEEL_HELD_EV_CARRIED : KEEL_HELD_EV_LEFT_OUT);
                if (carried) {
                    budget -= size;
                    held[i].state = KEEL__HELD_STATE__HELD_DONE;
                    keel_held_result_view (task, &results[i]);
                    held[i].result = &results[i];
                }
            }
            held_p[i] = &held[i];
        }
        for (int i = 0; i < self->cfg->n_services; i++)
            types[i] = self->cfg->services[i].name;
        Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
        login.engine_id = (char *) keel_statedir_engine_id (self->statedir);
        login.session = self->session_id;
        login.host = self->cfg->host;
        login.has_slots = login.has_pid = true;
        login.slots = (uint32_t) self->cfg->slots;
        login.pid = (uint32_t) getpid ();
        login.n_service_types = (size_t) self->cfg->n_services;
        login.service_types = types;
        login.n_held = n;
        login.held = held_p;
        keel_env_t env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
        env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
        env.engine_login = &login;
        sent = s_send (self, self->dealer, &env) == KEEL_OK;
    }
    free (held);
    free (held_p);
    free (results);
    return sent;
}

static bool
s_send_heartbeat (keel_daemon_t *self, zsock_t *sock)
{
    //  Every execution held and not finished (running in a worker or
    //  waiting for one): the broker requeues one it assigned here that
    //  heartbeats keep leaving out (its Assign never arrived).
    size_t held = keel_held_size (self->tasks);
    size_t cap = held < KEEL_LIST_MAX ? held : KEEL_LIST_MAX;
    uint64_t *running = cap ? malloc (cap * sizeof *running) : NULL;
    Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
    for (size_t i = 0; running && i < held && hb.n_running < cap; i++) {
        const keel_held_task_t *task = keel_held_at (self->tasks, i);
        if (task->state == KEEL_HELD_RUNNING)
            running[hb.n_running++] = task->execution_id;
    }
    hb.running = running;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    bool sent = s_send (self, sock, &env) == KEEL_OK;
    free (running);
    return sent;
}

static bool
s_op_send_heartbeat (void *arg)
{
    keel_daemon_t *self = arg;
    return s_send_heartbeat (self, self->dealer);
}

static void
s_op_send_logoff (void *arg, const char *reason)
{
    keel_daemon_t *self = arg;
    Keel__Logoff logoff = KEEL__LOGOFF__INIT;
    logoff.reason = (char *) reason;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    env.body_case = KEEL__ENVELOPE__BODY_LOGOFF;
    env.logoff = &logoff;
    if (self->dealer) {
        //  Give the Logoff a moment to leave before the socket goes away.
        zsock_set_linger (self->dealer, S_LOGOFF_LINGER_MS);
        s_send (self, self->dealer, &env);
    }
}

static void
s_op_logged_in (void *arg, const Keel__LoginReply *reply)
{
    keel_daemon_t *self = arg;
    size_t dropped = 0, held = 0;
    for (size_t i = 0; i < reply->n_verdicts; i++) {
        const Keel__TaskVerdict *v = reply->verdicts[i];
        keel_held_task_t *task = keel_held_find (self->tasks, v->execution_id);
        if (!task)
            continue;
        if (v->verdict == KEEL__VERDICT__VERDICT_DROP) {
            KEEL_LOG_LIMITED (&self->task_log, self->now, KEEL_LOG_INFO, "engine",
                              "task dropped by broker exec=%" PRIu64, v->execution_id);
            s_forget (self, v->execution_id);
            dropped++;
        }
        else if (v->verdict == KEEL__VERDICT__VERDICT_HOLD) {
            keel_held_step (task, KEEL_HELD_EV_HELD);
            held++;
        }
    }
    //  Every other result is offered again on this connection.
    for (size_t i = 0; i < keel_held_size (self->tasks); i++)
        keel_held_step (keel_held_at (self->tasks, i), KEEL_HELD_EV_LOGGED_IN);
    KEEL_DEBUG ("engine", "verdicts applied dropped=%zu held=%zu", dropped, held);
    KEEL_JOURNAL ("logged_in", .engine = keel_statedir_engine_id (self->statedir),
                  .epoch = reply->has_epoch ? (int64_t) reply->epoch : 0,
                  .n = (int64_t) reply->n_verdicts);
    s_flush_results (self);
    s_flush_checkpoints (self);
}

static void s_start (keel_daemon_t *self, const Keel__Assign *assign, keel_held_task_t *task);

//  Starts queued tasks while workers are free. A queued task that was
//  cancelled, dropped or lost with its session meanwhile is skipped.
static void
s_start_queued (keel_daemon_t *self)
{
    s_queued_t *queued;
    while (keel_runner_free_slots (self->runner) > 0 && (queued = zlistx_first (self->queued))) {
        zlistx_detach_cur (self->queued);
        keel_held_task_t *task = keel_held_find (self->tasks, queued->execution_id);
        if (task && task->state == KEEL_HELD_RUNNING && task->type
            && !keel_runner_pid_of (self->runner, queued->execution_id)) {
            //  The Assign again, as a view of the held entry and the queued bytes.
            Keel__Assign assign = KEEL__ASSIGN__INIT;
            assign.service_id = task->service_id;
            assign.type = task->type;
            assign.has_task_id = assign.has_execution_id = assign.has_input = true;
            assign.task_id = task->task_id;
            assign.execution_id = queued->execution_id;
            assign.input.data = queued->data;
            assign.input.len = queued->input_size;
            assign.has_memory = queued->has_memory;
            assign.memory.data = queued->data + queued->input_size;
            assign.memory.len = queued->memory_size;
            s_start (self, &assign, task);
        }
        free (queued);
    }
}

static void
s_assign (keel_daemon_t *self, const Keel__Assign *assign)
{
    if (keel_held_find (self->tasks, assign->execution_id)) {
        KEEL_DEBUG ("engine", "duplicate assign ignored exec=%" PRIu64, assign->execution_id);
        return;
    }
    //  Init data comes once per service per engine session: keep it first,
    //  whatever happens to this task.
    if (assign->has_init_data) {
        bool evicted = false;
        if (!keel_initdata_put (self->init, assign->service_id, assign->init_data.data,
                                assign->init_data.len, &evicted))
            KEEL_ERROR ("engine", "service init data lost (out of memory) service=%s",
                        assign->service_id);
        else
            KEEL_LOG_LIMITED (&self->peer_log, self->now, KEEL_LOG_INFO, "engine",
                              "service init data received service=%s type=%s bytes=%zu",
                              assign->service_id, assign->type, assign->init_data.len);
        if (evicted)
            KEEL_LOG_LIMITED (&self->peer_log, self->now, KEEL_LOG_WARN, "engine",
                              "more than %d services with init data: the least recently "
                              "used one was forgotten", KEEL_INITDATA_MAX);
    }
    keel_held_task_t *task = keel_held_add (self->tasks, assign->execution_id, assign->service_id,
                                        assign->task_id, assign->type);
    if (!task)
        return;
    s_start (self, assign, task);
}

//  Runs an inline built-in (builtin.h: echo, double, fail) here, in the
//  engine process, and ends it through s_finish like a worker's result.
static void
s_run_inline (keel_daemon_t *self, const Keel__Assign *assign)
{
    KEEL_INFO ("engine", "task started exec=%" PRIu64 " service=%s task=%" PRIu64 " type=%s "
               "memory_bytes=%zu pid=%d", assign->execution_id, assign->service_id,
               assign->task_id, assign->type, assign->has_memory ? assign->memory.len : 0,
               (int) getpid ());
    KEEL_JOURNAL ("exec_start", .service = assign->service_id, .task = assign->task_id,
                  .execution = assign->execution_id, .engine = keel_statedir_engine_id (self->statedir));
    int64_t started = zclock_mono ();
    keel_builtin_result_t out;
    bool ran = keel_builtin_run (assign->type, assign->input.data, assign->input.len, &out)
               && keel_builtin_cap_output (&out, (size_t) self->cfg->max_output_bytes);
    static const char nomem[] = "out of memory";
    keel_runner_result_t r = {
        .execution_id = assign->execution_id,
        .ok = ran && out.ok,
        .data = ran ? out.data : (const uint8_t *) nomem,
        .size = ran ? out.size : sizeof nomem - 1,
        .run_ms = zclock_mono () - started,
        .permanent = ran && !out.ok && out.permanent,
    };
    s_finish (self, &r);
    if (ran)
        free (out.data);
}

//  Starts an assigned task: an inline built-in at once, anything else in a
//  worker, or queued when every worker is busy (the broker may send
//  EnginePrefetch tasks beyond the free slots, so the next task is here when
//  a worker frees up). Inline tasks take no slot, so they never queue.
static void
s_start (keel_daemon_t *self, const Keel__Assign *assign, keel_held_task_t *task)
{
    const keel_service_def_t *def = keel_engine_config_service (self->cfg, assign->type);
    if (def && !def->command && !def->library && keel_builtin_is_inline (def->name)) {
        s_run_inline (self, assign);
        return;
    }
    if (keel_runner_free_slots (self->runner) == 0) {
        //  Held running (this one included) = running + queued: a broker
        //  sending more than Slots + S_QUEUE_MAX gets the rest refused.
        bool room = keel_held_running (self->tasks)
                    <= (size_t) keel_runner_slots (self->runner) + S_QUEUE_MAX;
        size_t memory_size = assign->has_memory ? assign->memory.len : 0;
        s_queued_t *queued = room ? malloc (sizeof *queued + assign->input.len + memory_size)
                                  : NULL;
        if (queued) {
            queued->execution_id = assign->execution_id;
            queued->input_size = assign->input.len;
            queued->memory_size = memory_size;
            queued->has_memory = assign->has_memory;
            if (assign->input.len)
                memcpy (queued->data, assign->input.data, assign->input.len);
            if (memory_size)
                memcpy (queued->data + assign->input.len, assign->memory.data, memory_size);
            if (zlistx_add_end (self->queued, queued)) {
                KEEL_DEBUG ("engine", "task queued exec=%" PRIu64 " queued=%zu",
                            assign->execution_id, zlistx_size (self->queued));
                return;
            }
            free (queued);  // refused below like a task beyond the queue
        }
    }
    char error[200] = "";
    if (!def)
        snprintf (error, sizeof error, "service type '%s' is not offered by this engine",
                  assign->type);
    else {
        keel_worker_request_t req = {
            .execution_id = assign->execution_id,
            .task_id = assign->task_id,
            .kind = def->library   ? KEEL_WORKER_LIBRARY
                    : def->command ? KEEL_WORKER_COMMAND
                                   : KEEL_WORKER_BUILTIN,
            .type = assign->type,
            .target = def->library ? def->library : def->command,
            .service_id = assign->service_id,
            .input = assign->input.data,
            .input_size = assign->input.len,
            .memory = assign->memory.data,
            .memory_size = assign->memory.len,
            .has_memory = assign->has_memory,
        };
        req.init_data = keel_initdata_get (self->init, assign->service_id, &req.init_size);
        keel_err rc = keel_runner_start (self->runner, &req, def->timeout_ms, self->now);
        if (rc == KEEL_ERR_FULL)
            snprintf (error, sizeof error, "engine has no free slot and its queue is full");
        else if (rc != KEEL_OK)
            snprintf (error, sizeof error, "cannot start task: %s", keel_strerror (rc));
    }
    if (*error) {
        KEEL_LOG_LIMITED (&self->task_log, self->now, KEEL_LOG_WARN, "engine",
                          "task not started exec=%" PRIu64 " error=\"%s\"", assign->execution_id,
                          error);
        keel_held_finish (task, false, (const uint8_t *) error, strlen (error), 0);
        s_deliver (self, task, false);      // like any finished task
        return;
    }
    KEEL_INFO ("engine", "task started exec=%" PRIu64 " service=%s task=%" PRIu64 " type=%s "
               "memory_bytes=%zu pid=%d", assign->execution_id, assign->service_id,
               assign->task_id, assign->type, assign->has_memory ? assign->memory.len : 0,
               (int) keel_runner_pid_of (self->runner, assign->execution_id));
    KEEL_JOURNAL ("exec_start", .service = assign->service_id, .task = assign->task_id,
                  .execution = assign->execution_id, .engine = keel_statedir_engine_id (self->statedir));
}

static void
s_op_work (void *arg, const keel_env_t *env)
{
    keel_daemon_t *self = arg;
    switch (env->body_case) {
    case KEEL__ENVELOPE__BODY_ASSIGN:
        s_assign (self, env->assign);
        break;
    case KEEL__ENVELOPE__BODY_CANCEL:
        for (size_t i = 0; i < env->cancel->n_execution_ids; i++) {
            uint64_t id = env->cancel->execution_ids[i];
            if (keel_held_find (self->tasks, id)) {
                KEEL_LOG_LIMITED (&self->task_log, self->now, KEEL_LOG_INFO, "engine",
                                  "task cancelled exec=%" PRIu64 " reason=\"%s\"", id,
                                  env->cancel->reason ? env->cancel->reason : "");
                s_forget (self, id);
            }
        }
        break;
    case KEEL__ENVELOPE__BODY_RESULT_ACK:
        for (size_t i = 0; i < env->result_ack->n_execution_ids; i++) {
            uint64_t id = env->result_ack->execution_ids[i];
            keel_held_task_t *task = keel_held_find (self->tasks, id);
            if (task && keel_held_step (task, KEEL_HELD_EV_ACKED)) {
                if (task->spooled)
                    keel_spool_remove (self->spool, id);
                keel_held_remove (self->tasks, id);
            }
        }
        break;
    case KEEL__ENVELOPE__BODY_NOTICE:
        KEEL_LOG_LIMITED (&self->peer_log, self->now, KEEL_LOG_INFO, "engine", "broker notice: %s",
                          env->notice->text ? env->notice->text : "");
        break;
    default:
        break;      // Heartbeat: liveness only
    }
}

static bool
s_op_probe_open (void *arg)
{
    keel_daemon_t *self = arg;
    zsock_destroy (&self->probe);
    //  No ZMQ_IMMEDIATE here: the probe heartbeat waits for the connection.
    self->probe = s_dealer_new (self, self->cfg->brokers[0], false);
    if (self->probe && !s_send_heartbeat (self, self->probe))
        zsock_destroy (&self->probe);
    return self->probe != NULL;
}

static void
s_op_probe_close (void *arg)
{
    keel_daemon_t *self = arg;
    zsock_destroy (&self->probe);
}

static void
s_op_engine_timeout (void *arg)
{
    keel_daemon_t *self = arg;
    bool all_gone = true;
    int killed = keel_runner_kill_all (self->runner, &all_gone);
    size_t held = keel_held_size (self->tasks) - keel_held_running (self->tasks);
    keel_held_clear (self->tasks);
    keel_initdata_clear (self->init);
    int spooled = keel_spool_clear (self->spool);
    KEEL_WARN ("engine", "timeout: killed tasks=%d dropped results=%zu spool_files=%d "
               "process_groups_gone=%s", killed, held, spooled, all_gone ? "yes" : "no");
}

static void
s_op_new_session (void *arg)
{
    keel_daemon_t *self = arg;
    keel_uuid_new (self->session_id);
    keel_initdata_clear (self->init);
    KEEL_INFO ("engine", "starting over session=%s", self->session_id);
}

// ------------------------------------------------------------ life cycle

static void
s_on_spooled (const Keel__Result *result, void *arg)
{
    keel_daemon_t *self = arg;
    keel_held_task_t *task = keel_held_add_done (self->tasks, result);
    if (task)
        keel_held_step (task, KEEL_HELD_EV_SPOOLED);
}

keel_daemon_t *
keel_daemon_new (const keel_engine_config_t *cfg, keel_error_t *err)
{
    keel_daemon_t *self = calloc (1, sizeof *self);
    if (!self) {
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->cfg = cfg;
    self->bad_log = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 5, "bad message");
    self->task_log = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "task");
    self->peer_log = (keel_ratelimit_t) KEEL_RATELIMIT_NAMED (10000, 20, "broker-triggered");
    self->ops = (keel_engine_session_ops_t) {
        s_op_connect, s_op_disconnect, s_op_send_login, s_op_send_heartbeat, s_op_send_logoff,
        s_op_logged_in, s_op_work, s_op_probe_open, s_op_probe_close, s_op_engine_timeout,
        s_op_new_session
    };
    keel_uuid_new (self->session_id);
    self->now = zclock_mono ();
    if (!(self->statedir = keel_statedir_open (cfg->state_dir, err))
        || !(self->spool = keel_spool_new (cfg->state_dir, err))
        || !(self->tasks = keel_held_new ())
        || !(self->init = keel_initdata_new ())
        || !(self->queued = zlistx_new ())
        || !(self->runner = keel_runner_new (cfg->slots, (size_t) cfg->max_output_bytes, err))
        || !(self->session = keel_engine_session_new (cfg, &self->ops, self, self->now))) {
        keel_daemon_destroy (&self);
        return NULL;
    }
    int loaded = keel_spool_load (self->spool, (size_t) cfg->max_message_bytes, s_on_spooled,
                                  self);
    KEEL_INFO ("engine", "started engine=%s session=%s slots=%d services=%d state_dir=%s "
               "spooled_results=%d",
               keel_statedir_engine_id (self->statedir), self->session_id, cfg->slots,
               cfg->n_services, cfg->state_dir, loaded);
    return self;
}

void
keel_daemon_destroy (keel_daemon_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_daemon_t *self = *self_p;
    zsock_destroy (&self->probe);
    zsock_destroy (&self->dealer);
    keel_runner_destroy (&self->runner);
    keel_engine_session_destroy (&self->session);
    keel_held_destroy (&self->tasks);
    keel_initdata_destroy (&self->init);
    if (self->queued) {
        s_queued_t *queued;
        while ((queued = zlistx_first (self->queued))) {
            zlistx_detach_cur (self->queued);
            free (queued);
        }
        zlistx_destroy (&self->queued);
    }
    keel_spool_destroy (&self->spool);
    keel_statedir_destroy (&self->statedir);
    for (size_t i = 0; i < self->nfinished; i++)
        free (self->finished[i].error);
    free (self->finished);
    free (self);
    *self_p = NULL;
}

const char *
keel_daemon_engine_id (const keel_daemon_t *self)
{
    return keel_statedir_engine_id (self->statedir);
}

const char *
keel_daemon_session_id (const keel_daemon_t *self)
{
    return self->session_id;
}

// ------------------------------------------------------------ the loop

static void
s_bad_message (keel_daemon_t *self, const char *what, const char *why)
{
    int64_t suppressed = 0;
    if (keel_ratelimit_allow (&self->bad_log, self->now, &suppressed))
        KEEL_WARN ("engine", "%s message dropped reason=\"%s\" suppressed=%" PRId64, what, why,
                   suppressed);
}

//  Receives one frame from sock; returns the validated envelope or NULL
//  (and *empty_p true when nothing was waiting).
static keel_env_t *
s_recv (keel_daemon_t *self, zsock_t *sock, bool *empty_p)
{
    *empty_p = false;
    zmsg_t *msg = zmsg_recv_nowait (sock);
    if (!msg) {
        *empty_p = true;
        return NULL;
    }
    keel_env_t *env = NULL;
    keel_error_t err = { "more than one frame" };
    if (zmsg_size (msg) == 1) {
        zframe_t *frame = zmsg_first (msg);
        env = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
        if (env && env->sender != KEEL__SENDER_KIND__SENDER_BROKER) {
            snprintf (err.text, sizeof err.text, "not from a broker");
            keel_wire_free (&env);
        }
        else if (env && !keel_engine_session_reply_usable (env, &err))
            keel_wire_free (&env);
    }
    zmsg_destroy (&msg);
    if (!env) {
        self->malformed_messages++;
        s_bad_message (self, "malformed", err.text);
    }
    return env;
}

//  An AssignBatch is its Assigns, in order: each goes to the session as an
//  Assign alone would (epoch fencing, state), in an envelope that is a view
//  of the batch's. False if any was not expected.
static bool
s_on_assign_batch (keel_daemon_t *self, const keel_env_t *env)
{
    keel_env_t one = *env;          // version, sender, seq, epoch
    one.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
    bool expected = true;
    for (size_t i = 0; i < env->assign_batch->n_assigns; i++) {
        one.assign = env->assign_batch->assigns[i];
        if (!keel_engine_session_on_message (self->session, &one, self->now))
            expected = false;
    }
    return expected;
}

static void
s_read_broker (keel_daemon_t *self)
{
    unsigned gen = self->dealer_gen;
    for (int i = 0; i < S_MSGS_PER_TURN && self->dealer && gen == self->dealer_gen; i++) {
        bool empty = false;
        keel_env_t *env = s_recv (self, self->dealer, &empty);
        if (empty)
            break;
        bool expected = !env
            || (env->body_case == KEEL__ENVELOPE__BODY_ASSIGN_BATCH
                    ? s_on_assign_batch (self, env)
                    : keel_engine_session_on_message (self->session, env, self->now));
        if (!expected) {
            self->unexpected_messages++;
            s_bad_message (self, keel_wire_body_name (env), "unexpected in this state");
        }
        keel_wire_free (&env);
    }
}

static void
s_read_probe (keel_daemon_t *self)
{
    for (int i = 0; i < S_MSGS_PER_TURN && self->probe; i++) {
        bool empty = false;
        keel_env_t *env = s_recv (self, self->probe, &empty);
        if (empty)
            break;
        if (env) {
            keel_wire_free (&env);
            keel_engine_session_on_probe_reply (self->session, self->now);
        }
    }
}

static void
s_on_checkpoint (uint64_t execution_id, const uint8_t *data, size_t size, void *arg)
{
    keel_daemon_t *self = arg;
    keel_held_task_t *task = keel_held_find (self->tasks, execution_id);
    if (!task || task->state != KEEL_HELD_RUNNING)
        return;
    if (!keel_held_set_checkpoint (task, data, size)) {
        KEEL_ERROR ("engine", "checkpoint lost (out of memory) exec=%" PRIu64, execution_id);
        return;
    }
    //  While not ONLINE only the latest is kept; it is sent after login.
    if (keel_engine_session_state (self->session) == KEEL_ENGINE_SESSION_ONLINE)
        s_send_checkpoint (self, task);
}

static void
s_on_done (const keel_runner_result_t *r, void *arg)
{
    s_finish (arg, r);
}

int
keel_daemon_run (keel_daemon_t *self, volatile sig_atomic_t *stop)
{
    zmq_pollitem_t items[2 + KEEL_ENGINE_MAX_SLOTS];
    keel_runner_handlers_t handlers = { s_on_done, s_on_checkpoint, self };
    int fds[KEEL_ENGINE_MAX_SLOTS];
    //  One turn per wake-up; the process runs until stopped.
    while (keel_engine_session_state (self->session) != KEEL_ENGINE_SESSION_STOPPED) {
        self->now = zclock_mono ();
        if (*stop) {
            KEEL_INFO ("engine", "stopping: logging off, killing tasks running=%zu",
                       keel_held_running (self->tasks));
            keel_engine_session_stop (self->session, self->now);
            break;
        }
        keel_engine_session_tick (self->session, self->now);
        keel_ratelimit_flush (&self->bad_log, self->now, KEEL_LOG_WARN, "engine");
        keel_ratelimit_flush (&self->task_log, self->now, KEEL_LOG_WARN, "engine");
        keel_ratelimit_flush (&self->peer_log, self->now, KEEL_LOG_WARN, "engine");
        if (keel_engine_session_state (self->session) == KEEL_ENGINE_SESSION_STOPPED)
            break;
        s_flush_results (self);

        int n = 0;
        int dealer_at = -1, probe_at = -1;
        if (self->dealer) {
            dealer_at = n;
            short events = ZMQ_POLLIN;
            if (keel_engine_session_wants_writable (self->session))
                events |= ZMQ_POLLOUT;
            items[n++] = (zmq_pollitem_t) { zsock_resolve (self->dealer), 0, events, 0 };
        }
        if (self->probe) {
            probe_at = n;
            items[n++] = (zmq_pollitem_t) { zsock_resolve (self->probe), 0, ZMQ_POLLIN, 0 };
        }
        int nfds = keel_runner_fds (self->runner, fds, KEEL_ENGINE_MAX_SLOTS);
        for (int i = 0; i < nfds; i++)
            items[n++] = (zmq_pollitem_t) { NULL, fds[i], ZMQ_POLLIN, 0 };

        int64_t next = keel_engine_session_next_deadline (self->session);
        int64_t runner_next = keel_runner_next_deadline (self->runner);
        if (runner_next < next)
            next = runner_next;
        int64_t wait = next - self->now;
        if (wait < 0)
            wait = 0;
        if (wait > S_POLL_MAX_MS)
            wait = S_POLL_MAX_MS;
        int rc = zmq_poll (items, n, (long) wait);
        self->now = zclock_mono ();
        if (rc < 0)
            continue;   // EINTR: a signal; the loop top looks at *stop
        if (dealer_at >= 0 && (items[dealer_at].revents & ZMQ_POLLIN))
            s_read_broker (self);
        if (probe_at >= 0 && (items[probe_at].revents & ZMQ_POLLIN))
            s_read_probe (self);
        keel_runner_process (self->runner, self->now, &handlers);
        s_start_queued (self);
        s_flush_finished (self);    // the Results of the tasks that ended in this turn
    }
    s_flush_finished (self);
    s_spool_all (self);     // unacknowledged results outlive this process
    bool all_gone = true;
    int killed = keel_runner_kill_all (self->runner, &all_gone);
    for (size_t i = keel_held_size (self->tasks); i > 0; i--) {
        keel_held_task_t *task = keel_held_at (self->tasks, i - 1);
        if (task->state == KEEL_HELD_RUNNING)
            keel_held_remove (self->tasks, task->execution_id);
    }
    int code = keel_engine_session_exit_code (self->session);
    KEEL_INFO ("engine", "stopped exit_code=%d killed_tasks=%d spooled_results=%zu "
               "malformed_messages=%" PRIu64, code, killed, keel_held_size (self->tasks),
               self->malformed_messages);
    return code;
}
