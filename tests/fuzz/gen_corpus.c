/*  gen_corpus.c — writes the seed corpora of the fuzz targets:
        fuzz_gen_corpus DIR      (DIR is tests/fuzz/corpus)
    Each seed is made by the code that makes such bytes in real life: the
    message builders (wire_build.h), the invocation packer (keel/driver.h),
    the journal encoder (changes.h), the spool's frame of a Result, a real
    SQLite store written through keel_store_apply and read back row by row
    (fuzz_store_rows) and through keel_store_load (fuzz_store_load).
    Run it again when a format changes; scripts/fuzz/run.sh does not.
*/
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "changes.h"
#include "keel/driver.h"
#include "store.h"
#include "wire.h"

static const char *s_root;

static void
s_write (const char *target, const char *name, const void *data, size_t size)
{
    char path[1024];
    snprintf (path, sizeof path, "%s/%s", s_root, target);
    if (mkdir (path, 0755) != 0 && errno != EEXIST) {
        perror (path);
        exit (1);
    }
    snprintf (path, sizeof path, "%s/%s/%s", s_root, target, name);
    FILE *f = fopen (path, "wb");
    if (!f || (size && fwrite (data, 1, size, f) != size) || fclose (f) != 0) {
        perror (path);
        exit (1);
    }
}

static void
s_write_env (const char *target, const char *name, keel_env_t *env)
{
    zframe_t *frame = keel_wire_encode (env);
    keel_error_t err;
    keel_env_t *check = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
    if (!check) {
        fprintf (stderr, "gen_corpus: %s does not decode: %s\n", name, err.text);
        exit (1);
    }
    keel_wire_free (&check);
    s_write (target, name, zframe_data (frame), zframe_size (frame));
    zframe_destroy (&frame);
}

// ---------------------------------------------------------------- fuzz_wire

#define S_SVC "3f2a9c4e-0b1d-4e5f-8a7b-6c5d4e3f2a1b"

static void
s_wire (void)
{
    const char *t = "fuzz_wire";
    keel_msg_t m;
    uint64_t ids[] = { 0, 5, 9 };
    uint64_t ranges[] = { 0, 3, 2, 1 };
    static const uint8_t in[] = { 'i', 'n', 0, 1 }, out[] = { 'o', 'u', 't' };
    char *svcs[] = { S_SVC, "s-2" };

    s_write_env (t, "heartbeat_driver",
                 keel_msg_heartbeat (&m, KEEL__SENDER_KIND__SENDER_DRIVER, NULL, 0));
    s_write_env (t, "heartbeat_engine",
                 keel_msg_heartbeat (&m, KEEL__SENDER_KIND__SENDER_ENGINE, ids, 3));
    s_write_env (t, "relogin", keel_msg_relogin (&m, "unknown peer"));
    s_write_env (t, "notice",
                 keel_msg_notice (&m, KEEL__NOTICE_LEVEL__NOTICE_WARNING, S_SVC, "engine lost"));
    s_write_env (t, "driver_welcome", keel_msg_driver_welcome (&m, "broker-a", 7, 1000, svcs, 2));
    s_write_env (t, "passive", keel_msg_passive (&m, "tcp://10.0.0.2:7070", "passive"));
    s_write_env (t, "accepted", keel_msg_accepted (&m, S_SVC, ids, 3));
    s_write_env (
        t, "refused",
        keel_msg_refused (&m, S_SVC, ids, 2, KEEL__REFUSE_CODE__REFUSE_STORE_FULL, "disk full"));

    keel_task_result_args_t tra = { .service_id = S_SVC,
                                    .task_id = 4,
                                    .status = KEEL__TASK_STATUS__STATUS_OK,
                                    .output = out,
                                    .output_size = sizeof out,
                                    .engine_id = "engine:7",
                                    .execution_id = 77,
                                    .attempts = 1,
                                    .queued_ms = 12,
                                    .run_ms = 340 };
    Keel__TaskResult tr;
    Keel__Timings timings;
    keel_item_task_result (&tr, &timings, &tra);
    Keel__TaskResult *trp[] = { &tr };
    s_write_env (t, "task_results", keel_msg_task_results (&m, trp, 1));
    s_write_env (t, "execution_ack", keel_msg_execution_ack (&m, ids, 3));

    Keel__TaskVerdict v;
    keel_item_verdict (&v, S_SVC, 1, 101, KEEL__VERDICT__VERDICT_HOLD);
    Keel__TaskVerdict *vp[] = { &v };
    keel_login_reply_args_t lr = { .broker_name = "broker-a",
                                   .epoch = 9,
                                   .engine_timeout_ms = 600000,
                                   .heartbeat_ms = 1000,
                                   .verdicts = vp,
                                   .n_verdicts = 1 };
    s_write_env (t, "login_reply", keel_msg_login_reply (&m, &lr));

    Keel__Assign a1, a2;
    keel_item_assign (&a1, &(keel_assign_args_t) { .service_id = S_SVC,
                                                   .type = "double",
                                                   .task_id = 1,
                                                   .execution_id = 88,
                                                   .input = in,
                                                   .input_size = sizeof in,
                                                   .attempt = 1,
                                                   .init_data = out,
                                                   .init_size = 3 });
    keel_item_assign (&a2, &(keel_assign_args_t) { .service_id = S_SVC,
                                                   .type = "double",
                                                   .task_id = 2,
                                                   .execution_id = 89,
                                                   .input = in,
                                                   .input_size = 2,
                                                   .memory = out,
                                                   .memory_size = 3,
                                                   .attempt = 2 });
    Keel__Assign *ap[] = { &a1, &a2 };
    s_write_env (t, "assign", keel_msg_assign (&m, &a1));
    s_write_env (t, "assign_batch", keel_msg_assigns (&m, ap, 2));
    s_write_env (t, "cancel", keel_msg_cancel (&m, ids, 2, "service cancelled"));
    s_write_env (t, "admin_reply", keel_msg_admin_reply (&m, true, NULL, "{\"ok\":true}", "ok\n"));

    keel_pair_heartbeat_args_t ph = { .state = KEEL__PAIR_STATE__PAIR_STATE_ACTIVE,
                                      .role = "primary",
                                      .endpoints = "tcp://127.0.0.1:7072",
                                      .link = 0,
                                      .advertised = "tcp://127.0.0.1:7070",
                                      .applied_seq = 5,
                                      .applied_epoch = 2,
                                      .synced = true,
                                      .name = "a",
                                      .pair_name = "pair",
                                      .admin = "tcp://127.0.0.1:7071",
                                      .incarnation = 1234,
                                      .beat = 7 };
    s_write_env (t, "pair_heartbeat", keel_msg_pair_heartbeat (&m, &ph));
    s_write_env (t, "pair_update", keel_msg_pair_update (&m, 6, 2, "\x08\x01", 2));
    s_write_env (t, "pair_ack", keel_msg_pair_ack (&m, 6));
    s_write_env (t, "pair_sync_request", keel_msg_pair_sync_request (&m, 5, 2, false));
    s_write_env (t, "pair_snapshot", keel_msg_pair_snapshot (&m, 99, 6, 2, 0, 4, "SQLi", 4));
    s_write_env (t, "pair_handover", keel_msg_pair_handover (&m, 6));

    Keel__DeliveredTasks d;
    keel_item_delivered (&d, S_SVC, ranges, 4);
    Keel__DeliveredTasks *dp[] = { &d };
    keel_driver_hello_args_t dh = { .driver_id = "d-1",
                                    .services = svcs,
                                    .n_services = 1,
                                    .delivered = dp,
                                    .n_delivered = 1,
                                    .broker_timeout_ms = 60000,
                                    .heartbeat_ms = 1000,
                                    .primary = true };
    s_write_env (t, "driver_hello", keel_msg_driver_hello (&m, &dh));
    keel_submit_service_args_t ss = { .service_id = S_SVC,
                                      .type = "double",
                                      .priority = 3,
                                      .max_attempts = 2,
                                      .reschedule_delay_ms = -1,
                                      .init_data = out,
                                      .init_size = 3 };
    s_write_env (t, "submit_service", keel_msg_submit_service (&m, &ss));
    Keel__TaskInput ti1, ti2;
    keel_item_task_input (&ti1, 0, in, sizeof in);
    keel_item_task_input (&ti2, 1, in, 0);
    Keel__TaskInput *tip[] = { &ti1, &ti2 };
    s_write_env (t, "submit_tasks", keel_msg_submit_tasks (&m, S_SVC, tip, 2));
    s_write_env (t, "result_ack", keel_msg_result_ack (&m, S_SVC, ids, 3, ranges, 4));
    s_write_env (t, "close_service", keel_msg_close_service (&m, S_SVC));
    s_write_env (t, "cancel_service", keel_msg_cancel_service (&m, S_SVC));
    s_write_env (t, "detach", keel_msg_detach (&m, svcs, 2));

    Keel__Result r1, r2;
    keel_item_result (&r1, &(keel_result_args_t) { .service_id = S_SVC,
                                                   .task_id = 1,
                                                   .execution_id = 88,
                                                   .status = KEEL__TASK_STATUS__STATUS_OK,
                                                   .output = out,
                                                   .output_size = 3,
                                                   .run_us = 1234 });
    keel_item_result (&r2, &(keel_result_args_t) { .service_id = S_SVC,
                                                   .task_id = 2,
                                                   .execution_id = 89,
                                                   .status = KEEL__TASK_STATUS__STATUS_FAILED,
                                                   .error = "exit code 3",
                                                   .permanent = true,
                                                   .run_us = 5 });
    Keel__Result *rp[] = { &r1, &r2 };
    Keel__HeldTask h1, h2;
    keel_item_held_task (&h1, S_SVC, 1, 88, &r1);
    keel_item_held_task (&h2, S_SVC, 3, 90, NULL);
    Keel__HeldTask *hp[] = { &h1, &h2 };
    char *types[] = { "double", "echo" };
    keel_engine_login_args_t el = { .engine_id = "e-1",
                                    .session = "s-1",
                                    .host = "node1",
                                    .slots = 4,
                                    .pid = 123,
                                    .service_types = types,
                                    .n_service_types = 2,
                                    .held = hp,
                                    .n_held = 2,
                                    .moved_from = "tcp://127.0.0.1:7070" };
    s_write_env (t, "engine_login", keel_msg_engine_login (&m, &el));
    s_write_env (t, "result", keel_msg_result (&m, &r1));
    s_write_env (t, "result_batch", keel_msg_results (&m, rp, 2));
    s_write_env (t, "checkpoint", keel_msg_checkpoint (&m, S_SVC, 1, 88, in, sizeof in));
    s_write_env (t, "logoff", keel_msg_logoff (&m, "stopping"));
    char *aargs[] = { S_SVC, "state=queued", "limit=5" };
    s_write_env (t, "admin_request", keel_msg_admin_request (&m, "tasks", aargs, 3));
}

// ---------------------------------------------------------------- fuzz_spool

static void
s_spool (void)
{
    static const uint8_t out[] = { 0x92, 0x01, 0xa2, 'o', 'k' };
    keel_msg_t m;
    Keel__Result r;
    keel_item_result (&r, &(keel_result_args_t) { .service_id = S_SVC,
                                                  .task_id = 7,
                                                  .execution_id = 42,
                                                  .status = KEEL__TASK_STATUS__STATUS_OK,
                                                  .output = out,
                                                  .output_size = sizeof out,
                                                  .run_us = 1500 });
    s_write_env ("fuzz_spool", "ok", keel_msg_result (&m, &r));
    keel_item_result (&r, &(keel_result_args_t) { .service_id = S_SVC,
                                                  .task_id = 0,
                                                  .execution_id = 42,
                                                  .status = KEEL__TASK_STATUS__STATUS_OK,
                                                  .run_us = 0 });
    s_write_env ("fuzz_spool", "ok_empty", keel_msg_result (&m, &r));
    keel_item_result (&r, &(keel_result_args_t) { .service_id = "s-2",
                                                  .task_id = 9,
                                                  .execution_id = 42,
                                                  .status = KEEL__TASK_STATUS__STATUS_FAILED,
                                                  .error = "exit code 3",
                                                  .run_us = 99 });
    s_write_env ("fuzz_spool", "failed", keel_msg_result (&m, &r));
    keel_item_result (&r, &(keel_result_args_t) { .service_id = "s-2",
                                                  .task_id = 9,
                                                  .execution_id = 42,
                                                  .status = KEEL__TASK_STATUS__STATUS_FAILED,
                                                  .error = "bad input",
                                                  .permanent = true,
                                                  .run_us = 1 });
    s_write_env ("fuzz_spool", "failed_permanent", keel_msg_result (&m, &r));
}

// ---------------------------------------------------------------- fuzz_invoke

static void
s_invoke (void)
{
    msgpack_sbuffer buf;
    msgpack_packer pk;
    keel_invocation_begin (&buf, &pk, "estimate", 2, NULL);
    msgpack_pack_uint64 (&pk, 1000000);
    msgpack_pack_uint64 (&pk, 42);
    s_write ("fuzz_invoke", "estimate", buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);

    keel_invocation_begin (&buf, &pk, "noargs", 0, NULL);
    s_write ("fuzz_invoke", "noargs", buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);

    keel_invocation_begin (&buf, &pk, "mixed_types_1", 7, NULL);
    msgpack_pack_str_with_body (&pk, "text", 4);
    msgpack_pack_bin_with_body (&pk, "\x00\x01", 2);
    msgpack_pack_double (&pk, 3.25);
    msgpack_pack_int64 (&pk, -5);
    msgpack_pack_nil (&pk);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str_with_body (&pk, "k", 1);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_true (&pk);
    msgpack_pack_false (&pk);
    msgpack_pack_ext_with_body (&pk, "xyz", 3, 5);
    s_write ("fuzz_invoke", "mixed", buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);

    // A result's output: any single value.
    msgpack_sbuffer_init (&buf);
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "pi", 2);
    msgpack_pack_double (&pk, 3.14159);
    msgpack_pack_str_with_body (&pk, "n", 1);
    msgpack_pack_uint32 (&pk, 1000);
    s_write ("fuzz_invoke", "output", buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);
}

// ---------------------------------------------------------------- fuzz_props

static void
s_props (void)
{
    const char *broker = "# broker.properties\n"
                         "Name = broker-a\n"
                         "Endpoint=tcp://0.0.0.0:7070\n"
                         "Store: sqlite:/var/lib/keel/broker.db\n"
                         "StoreSync full\n"
                         "CommitDelay=100ms\n"
                         "HeartbeatInterval=1.5s\n"
                         "EngineTimeoutMinutes=15\n"
                         "EnginePrefetch=1000\n"
                         "RescheduleDelay=0\n"
                         "! a comment\n"
                         "Name=with\\\n    continuation \\u00e9\\t\\=\n";
    s_write ("fuzz_props", "broker.properties", broker, strlen (broker));
    const char *engine = "Brokers=tcp://127.0.0.1:7070, tcp://127.0.0.1:7080\n"
                         "Slots=4\n"
                         "StateDir=/var/lib/keel/engine\n"
                         "service.render.exec=/opt/render/bin/render-frame --fast\n"
                         "service.render.timeout=10m\n"
                         "service.pi.library=/usr/local/lib/keel/libmyservice.so\n";
    s_write ("fuzz_props", "engine.properties", engine, strlen (engine));
    const char *driver = "DSPrimaryBroker=tcp://127.0.0.1:7070\n"
                         "DSBrokerTimeout=60s\n"
                         "DSBatchSize=100\n"
                         "LogLevel=info\n";
    s_write ("fuzz_props", "driver.properties", driver, strlen (driver));
    // One key, picked by index (byte 1), with a value: see fuzz_props.c.
    const char *values[] = { "30s", "1.5", "yes", "full", "tcp://127.0.0.1:7070", "1e3ms", "-1" };
    for (int i = 0; i < 7; i++) {
        char seed[64], name[32];
        int n = snprintf (seed, sizeof seed, "\x80%c%s", (char) (i * 7 + 1), values[i]);
        snprintf (name, sizeof name, "key_%d", i);
        s_write ("fuzz_props", name, seed, (size_t) n);
    }
}

// ---------------------------------------------------------------- fuzz_cond

// Conditions as users write them (docs/services.md), and a few refused.
static void
s_cond (void)
{
    const char *seeds[] = { "memory_mb >= 4096 && gpu == \"a100\"",
                            "!(gpu == \"a100\") || (os != \"linux\" && cores > 8)",
                            "host == \"node-1\" || host == \"say \\\"hi\\\"\"",
                            "slots >= 2 && memory_mb / 2",
                            "((cores < -1.5e3))",
                            "memory_mb >= 4096 && gpu >=" };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char name[32];
        snprintf (name, sizeof name, "cond_%zu", i);
        s_write ("fuzz_cond", name, seeds[i], strlen (seeds[i]));
    }
}

// ---------------------------------------------------------------- fuzz_changes

static void
s_add_all (keel_changes_t *c)
{
    static const uint8_t blob[] = { 1, 2, 3, 0, 5 };
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_SERVICE_PUT,
                                            .service = { .service_id = S_SVC,
                                                         .type = "double",
                                                         .driver_id = "d-1",
                                                         .priority = 3,
                                                         .max_attempts = 2,
                                                         .reschedule_delay_ms = -1,
                                                         .init_data = blob,
                                                         .init_len = 5,
                                                         .created_wall_ms = 1700000000000 } });
    keel_changes_add (
        c, &(keel_change_t) {
               .kind = KEEL_CHANGE_TASK_PUT,
               .task = { .service_id = S_SVC, .task_id = 0, .input = blob, .input_len = 5 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_PUT,
                                            .task = { .service_id = S_SVC,
                                                      .task_id = 1,
                                                      .state = KEEL_TASK_STATE_RUNNING,
                                                      .attempts = 1,
                                                      .input = blob,
                                                      .input_len = 2,
                                                      .checkpoint = blob,
                                                      .checkpoint_len = 3,
                                                      .checkpoint_wall_ms = 1700000000100 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_PUT,
                                            .task = { .service_id = S_SVC,
                                                      .task_id = 2,
                                                      .state = KEEL_TASK_STATE_QUEUED,
                                                      .input = blob,
                                                      .input_len = 1 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_RESULT,
                                            .task = { .service_id = S_SVC,
                                                      .task_id = 0,
                                                      .state = KEEL_TASK_STATE_DONE,
                                                      .status = 1,
                                                      .output = blob,
                                                      .output_len = 4,
                                                      .engine_id = "e-1",
                                                      .execution_id = 5,
                                                      .run_ms = 30,
                                                      .queued_ms = 2 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_STATE,
                                            .task = { .service_id = S_SVC,
                                                      .task_id = 1,
                                                      .state = KEEL_TASK_STATE_RUNNING,
                                                      .attempts = 1 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_ACKED,
                                            .task = { .service_id = S_SVC, .task_id = 0 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_TASK_CHECKPOINT,
                                            .task = { .service_id = S_SVC,
                                                      .task_id = 1,
                                                      .checkpoint = blob,
                                                      .checkpoint_len = 5,
                                                      .checkpoint_wall_ms = 1700000000200 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_EXEC_PUT,
                                            .exec = { .execution_id = 6,
                                                      .service_id = S_SVC,
                                                      .task_id = 1,
                                                      .engine_id = "e-1",
                                                      .attempt = 2,
                                                      .started_wall_ms = 1700000000300 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_PENDING_PUT,
                                            .pending = { .service_id = "s-later",
                                                         .task_id = 3,
                                                         .execution_id = 7,
                                                         .engine_id = "e-2",
                                                         .has_result = true,
                                                         .status = 1,
                                                         .output = blob,
                                                         .output_len = 2,
                                                         .run_ms = 9,
                                                         .expires_wall_ms = 1700000900000 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_ENGINE_PUT,
                                            .engine = { .engine_id = "e-1",
                                                        .host = "node1",
                                                        .session = "sess-1",
                                                        .slots = 4,
                                                        .login_wall_ms = 1700000000000,
                                                        .seen_wall_ms = 1700000000000,
                                                        .online = true } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_CONFIG_SET,
                                            .config = { "EngineTimeoutMinutes", "20" } });
    keel_changes_add (c,
                      &(keel_change_t) { .kind = KEEL_CHANGE_EVENT,
                                         .event = { 1700000000000, "broker-started", "epoch=3" } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_META_SET, .meta = { "epoch", 3 } });
    keel_changes_add (
        c, &(keel_change_t) { .kind = KEEL_CHANGE_META_SET, .meta = { "execution_seq", 10000 } });
}

static void
s_changes (void)
{
    keel_changes_t *c = keel_changes_new ();
    s_add_all (c);
    size_t size = 0;
    uint8_t *bytes = keel_changes_encode (c, 17, &size);
    s_write ("fuzz_changes", "every_kind", bytes, size);
    free (bytes);
    keel_changes_clear (c);
    keel_changes_add (
        c, &(keel_change_t) { .kind = KEEL_CHANGE_EXEC_DELETE, .exec = { .execution_id = 6 } });
    keel_changes_add (
        c, &(keel_change_t) {
               .kind = KEEL_CHANGE_PENDING_DELETE,
               .pending = { .service_id = "s-later", .task_id = 3, .execution_id = 7 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_SERVICE_STATE,
                                            .service = { .service_id = S_SVC,
                                                         .state = KEEL_SERVICE_CLOSED,
                                                         .closed_wall_ms = 1700000001000 } });
    keel_changes_add (c, &(keel_change_t) { .kind = KEEL_CHANGE_SERVICE_DELETE,
                                            .service = { .service_id = S_SVC } });
    bytes = keel_changes_encode (c, 18, &size);
    s_write ("fuzz_changes", "deletes", bytes, size);
    free (bytes);
    keel_changes_destroy (&c);
}

// ---------------------------------------------------------------- fuzz_store_rows

// Appends one column value in fuzz_store_rows' input form.
static size_t
s_put_value (uint8_t *out, sqlite3_stmt *q, int col)
{
    size_t n = 0;
    switch (sqlite3_column_type (q, col)) {
        case SQLITE_NULL:
            out[n++] = 0;
            break;
        case SQLITE_INTEGER: {
            sqlite3_int64 v = sqlite3_column_int64 (q, col);
            if (v >= -128 && v <= 127) {
                out[n++] = 1;
                out[n++] = (uint8_t) (int8_t) v;
            }
            else {
                out[n++] = 2;
                for (int i = 0; i < 8; i++)
                    out[n++] = (uint8_t) ((uint64_t) v >> (8 * i));
            }
            break;
        }
        case SQLITE_FLOAT: {
            double d = sqlite3_column_double (q, col);
            out[n++] = 5;
            memcpy (out + n, &d, 8);
            n += 8;
            break;
        }
        default: {
            bool text = sqlite3_column_type (q, col) == SQLITE_TEXT;
            const void *p =
                text ? (const void *) sqlite3_column_text (q, col) : sqlite3_column_blob (q, col);
            size_t len = (size_t) sqlite3_column_bytes (q, col);
            out[n++] = text ? 3 : 4;
            if (len >= 255) {
                out[n++] = 255;
                out[n++] = (uint8_t) len;
                out[n++] = (uint8_t) (len >> 8);
            }
            else
                out[n++] = (uint8_t) len;
            memcpy (out + n, p, len);
            n += len;
        }
    }
    return n;
}

// ---------------------------------------------------------------- fuzz_store_load

// One record kind's seeds in fuzz_store_load's input form (see there).
typedef struct {
    uint8_t data[7][16384]; // by kind: service, task, execution, pending, config, engine, meta
    size_t len[7];
} s_records_t;

static void
s_rec_put (s_records_t *r, int kind, const void *bytes, size_t n)
{
    if (r->len[kind] + n > sizeof r->data[kind]) {
        fprintf (stderr, "gen_corpus: fuzz_store_load seed too big\n");
        exit (1);
    }
    memcpy (r->data[kind] + r->len[kind], bytes, n);
    r->len[kind] += n;
}

static void
s_rec_int (s_records_t *r, int kind, int64_t v)
{
    uint8_t b[9];
    size_t n;
    if (v >= -128 && v <= 127 && (uint8_t) (int8_t) v < 0xFD) {
        b[0] = (uint8_t) (int8_t) v;
        n = 0;
    }
    else if (v >= INT16_MIN && v <= INT16_MAX)
        b[0] = 0xFD, n = 2;
    else if (v >= INT32_MIN && v <= INT32_MAX)
        b[0] = 0xFE, n = 4;
    else
        b[0] = 0xFF, n = 8;
    for (size_t i = 0; i < n; i++)
        b[1 + i] = (uint8_t) ((uint64_t) v >> (8 * i));
    s_rec_put (r, kind, b, 1 + n);
}

static void
s_rec_bytes (s_records_t *r, int kind, const void *data, size_t len)
{
    uint8_t b[3];
    if (!data)
        s_rec_put (r, kind, (uint8_t[]) { 0 }, 1);
    else if (len < 254) {
        b[0] = (uint8_t) (len + 1);
        s_rec_put (r, kind, b, 1);
    }
    else {
        b[0] = 255, b[1] = (uint8_t) len, b[2] = (uint8_t) (len >> 8);
        s_rec_put (r, kind, b, 3);
    }
    if (len)
        s_rec_put (r, kind, data, len);
}

static void
s_rec_text (s_records_t *r, int kind, const char *text)
{
    s_rec_bytes (r, kind, text, text ? strlen (text) : 0);
}

static void
s_rec_kind (s_records_t *r, int kind)
{
    s_rec_put (r, kind, (uint8_t[]) { (uint8_t) kind }, 1);
}

static int
s_rec_service (const keel_store_service_t *row, void *arg)
{
    s_records_t *r = arg;
    s_rec_kind (r, 0);
    s_rec_text (r, 0, row->service_id);
    s_rec_text (r, 0, row->type);
    s_rec_text (r, 0, row->driver_id);
    s_rec_int (r, 0, row->priority);
    s_rec_int (r, 0, row->max_attempts);
    s_rec_int (r, 0, row->reschedule_delay_ms);
    s_rec_bytes (r, 0, row->init_data, row->init_len);
    s_rec_int (r, 0, row->state);
    s_rec_int (r, 0, row->created_wall_ms);
    s_rec_int (r, 0, row->closed_wall_ms);
    s_rec_text (r, 0, row->condition);
    return 0;
}

static int
s_rec_task (const keel_store_task_t *row, void *arg)
{
    s_records_t *r = arg;
    s_rec_kind (r, 1);
    s_rec_text (r, 1, row->service_id);
    s_rec_int (r, 1, (int64_t) row->task_id);
    s_rec_int (r, 1, row->state);
    s_rec_int (r, 1, row->attempts);
    s_rec_bytes (r, 1, row->input, row->input_len);
    s_rec_int (r, 1, row->status);
    s_rec_bytes (r, 1, row->output, row->output_len);
    s_rec_text (r, 1, row->error);
    s_rec_text (r, 1, row->engine_id);
    s_rec_int (r, 1, (int64_t) row->execution_id);
    s_rec_int (r, 1, (int64_t) row->run_ms);
    s_rec_int (r, 1, (int64_t) row->queued_ms);
    s_rec_int (r, 1, row->result_acked);
    s_rec_bytes (r, 1, row->checkpoint, row->checkpoint_len);
    s_rec_int (r, 1, row->checkpoint_wall_ms);
    return 0;
}

static int
s_rec_execution (const keel_store_execution_t *row, void *arg)
{
    s_records_t *r = arg;
    s_rec_kind (r, 2);
    s_rec_int (r, 2, (int64_t) row->execution_id);
    s_rec_text (r, 2, row->service_id);
    s_rec_int (r, 2, (int64_t) row->task_id);
    s_rec_text (r, 2, row->engine_id);
    s_rec_int (r, 2, row->attempt);
    s_rec_int (r, 2, row->started_wall_ms);
    return 0;
}

static int
s_rec_pending (const keel_store_pending_t *row, void *arg)
{
    s_records_t *r = arg;
    s_rec_kind (r, 3);
    s_rec_text (r, 3, row->service_id);
    s_rec_int (r, 3, (int64_t) row->task_id);
    s_rec_int (r, 3, (int64_t) row->execution_id);
    s_rec_text (r, 3, row->engine_id);
    s_rec_int (r, 3, row->has_result);
    s_rec_int (r, 3, row->status);
    s_rec_bytes (r, 3, row->output, row->output_len);
    s_rec_text (r, 3, row->error);
    s_rec_int (r, 3, (int64_t) row->run_ms);
    s_rec_int (r, 3, row->expires_wall_ms);
    return 0;
}

static int
s_rec_config (const char *key, const char *value, void *arg)
{
    s_records_t *r = arg;
    s_rec_kind (r, 4);
    s_rec_text (r, 4, key);
    s_rec_text (r, 4, value);
    return 0;
}

static int
s_rec_engine (const keel_store_engine_t *row, void *arg)
{
    s_records_t *r = arg;
    s_rec_kind (r, 5);
    s_rec_text (r, 5, row->engine_id);
    s_rec_text (r, 5, row->host);
    s_rec_text (r, 5, row->session);
    s_rec_int (r, 5, row->slots);
    s_rec_int (r, 5, row->login_wall_ms);
    s_rec_int (r, 5, row->seen_wall_ms);
    s_rec_int (r, 5, row->online);
    return 0;
}

//  fuzz_store_load's seeds: what keel_store_load hands the broker's loader
//  from the store s_store_rows wrote (one seed per record kind and one of
//  them all, the meta counters first).
static void
s_store_load (keel_store_t *store)
{
    static s_records_t r;
    static const keel_store_loader_t loader = { s_rec_service, s_rec_task,   s_rec_execution,
                                                s_rec_pending, s_rec_config, s_rec_engine };
    keel_error_t err;
    uint64_t epoch = 0, seq = 0;
    if (keel_store_load (store, &loader, &r, &err) != KEEL_OK
        || keel_store_meta_get (store, "epoch", &epoch) != KEEL_OK
        || keel_store_meta_get (store, "execution_seq", &seq) != KEEL_OK) {
        fprintf (stderr, "gen_corpus: store load: %s\n", err.text);
        exit (1);
    }
    s_rec_kind (&r, 6);
    s_rec_int (&r, 6, 0);
    s_rec_int (&r, 6, (int64_t) epoch);
    s_rec_kind (&r, 6);
    s_rec_int (&r, 6, 1);
    s_rec_int (&r, 6, (int64_t) seq);
    static const char *names[] = { "services", "tasks",   "executions", "pending",
                                   "config",   "engines", "meta" };
    static uint8_t all[7 * 16384];
    size_t all_n = 0;
    static const int order[] = { 6, 0, 1, 2, 3, 4, 5 };
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int k = order[i];
        if (!r.len[k])
            continue;
        s_write ("fuzz_store_load", names[k], r.data[k], r.len[k]);
        memcpy (all + all_n, r.data[k], r.len[k]);
        all_n += r.len[k];
    }
    s_write ("fuzz_store_load", "all_tables", all, all_n);
}

static void
s_store_rows (void)
{
    char dir[] = "/tmp/keel-gen-corpus-XXXXXX";
    if (!mkdtemp (dir))
        exit (1);
    char path[256], uri[300];
    snprintf (path, sizeof path, "%s/store.db", dir);
    snprintf (uri, sizeof uri, "sqlite:%s", path);
    keel_error_t err;
    keel_store_t *store = keel_store_open (uri, KEEL_STORE_SYNC_NORMAL, &err);
    keel_changes_t *c = keel_changes_new ();
    if (!store || !c) {
        fprintf (stderr, "gen_corpus: %s\n", err.text);
        exit (1);
    }
    s_add_all (c);
    // A big input: stored in task_blobs (spilled), not inline.
    static uint8_t big[600];
    memset (big, 'x', sizeof big);
    keel_changes_add (
        c,
        &(keel_change_t) {
            .kind = KEEL_CHANGE_TASK_PUT,
            .task = { .service_id = S_SVC, .task_id = 3, .input = big, .input_len = sizeof big } });
    if (keel_store_apply_all (store, c) != KEEL_OK || keel_store_commit (store, &err) != KEEL_OK) {
        fprintf (stderr, "gen_corpus: store: %s\n", keel_store_last_error (store));
        exit (1);
    }
    keel_changes_destroy (&c);
    s_store_load (store);
    keel_store_destroy (&store);

    // The rows, table by table in fuzz_store_rows' order, as its input.
    static const char *tables[] = { "services", "tasks",  "task_blobs", "executions",
                                    "pending",  "config", "engines",    "meta" };
    sqlite3 *db = NULL;
    if (sqlite3_open (path, &db) != SQLITE_OK)
        exit (1);
    static uint8_t all[65536];
    size_t all_n = 0;
    for (int t = 0; t < 8; t++) {
        char sql[128];
        snprintf (sql, sizeof sql, "SELECT * FROM %s", tables[t]);
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2 (db, sql, -1, &q, NULL) != SQLITE_OK)
            exit (1);
        static uint8_t one[65536];
        size_t one_n = 0;
        while (sqlite3_step (q) == SQLITE_ROW) {
            one[one_n++] = (uint8_t) t;
            all[all_n++] = (uint8_t) t;
            for (int col = 0; col < sqlite3_column_count (q); col++) {
                size_t k = s_put_value (one + one_n, q, col);
                memcpy (all + all_n, one + one_n, k);
                one_n += k;
                all_n += k;
            }
        }
        sqlite3_finalize (q);
        if (one_n)
            s_write ("fuzz_store_rows", tables[t], one, one_n);
    }
    s_write ("fuzz_store_rows", "all_tables", all, all_n);
    sqlite3_close (db);
    const char *suffix[] = { "", "-wal", "-shm", ".lock" };
    for (int i = 0; i < 4; i++) {
        snprintf (uri, sizeof uri, "%s%s", path, suffix[i]);
        unlink (uri);
    }
    rmdir (dir);
}

int
main (int argc, char **argv)
{
    if (argc != 2) {
        fprintf (stderr, "usage: fuzz_gen_corpus DIR (tests/fuzz/corpus)\n");
        return 2;
    }
    s_root = argv[1];
    mkdir (s_root, 0755);
    s_wire ();
    s_spool ();
    s_invoke ();
    s_props ();
    s_cond ();
    s_changes ();
    s_store_rows ();
    return 0;
}
