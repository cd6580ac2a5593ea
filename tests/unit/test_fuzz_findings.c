/*  test_fuzz_findings.c — each input the fuzz targets (tests/fuzz/) found
    that broke a decoder, kept as a test so it stays fixed. docs/security.md
    ("Fuzzing") lists them.
*/
#include <criterion/criterion.h>
#include <string.h>

#include "admin.h"
#include "changes.h"
#include "config.h"
#include "core.h"
#include "keel/driver.h"
#include "library.h"
#include "log.h"
#include "model.h"
#include "msgpack_bound.h"
#include "wire.h"

// ---------------------------------------------------------------- wire

Test (fuzz_findings, a_frame_with_field_number_0_is_refused_not_kept_as_an_unknown_field)
{
    // A driver's Heartbeat, then key 0 written as a two-byte varint (field
    // 0, varint) and its value: protobuf-c kept it as an unknown field and
    // packed it back as a one-byte key 0, which nothing decodes.
    const uint8_t frame[] = { 0x08, 0x01, 0x10, 0x01, 0x52, 0x00, 0x80, 0x00, 0x00 };
    keel_error_t err = { "" };
    keel_env_t *env = keel_wire_decode (frame, sizeof frame, &err);
    cr_assert_null (env);
    cr_assert (strstr (err.text, "bad field number"), "%s", err.text);
    // Without the bad field the same frame is a Heartbeat.
    env = keel_wire_decode (frame, 6, &err);
    cr_assert_not_null (env, "%s", err.text);
    keel_wire_free (&env);
}

// A driver's Heartbeat (as above) with n unknown fields (field 6, varint 0)
// after it: a message may carry a few fields of a newer peer, not
// thousands. fuzz_wire found a ResultAck with 1,071 of them, padded with
// fields its re-encoding dropped: it decoded within its budget, and its own
// re-encoding did not ("message too large to decode").
static keel_env_t *
s_heartbeat_with_unknown (size_t n, keel_error_t *err)
{
    uint8_t frame[6 + 2 * 64] = { 0x08, 0x01, 0x10, 0x01, 0x52, 0x00 };
    cr_assert_leq (n, 64);
    for (size_t i = 0; i < n; i++) {
        frame[6 + 2 * i] = 0x30; // field 6, varint
        frame[7 + 2 * i] = 0x00;
    }
    return keel_wire_decode (frame, 6 + 2 * n, err);
}

Test (fuzz_findings, a_message_with_more_than_16_unknown_fields_is_refused)
{
    keel_error_t err = { "" };
    keel_env_t *env = s_heartbeat_with_unknown (16, &err);
    cr_assert_not_null (env, "16 unknown fields: %s", err.text);
    keel_wire_free (&env);
    env = s_heartbeat_with_unknown (17, &err);
    cr_assert_null (env);
    cr_assert (strstr (err.text, "more than 16 unknown fields"), "%s", err.text);
}

// ---------------------------------------------------------------- invocations

Test (fuzz_findings, a_method_name_with_a_nul_is_refused_by_driver_and_engine_alike)
{
    const char bytes[] = "\x92\xa5"
                         "run\0x"
                         "\x90";
    msgpack_unpacked u;
    char method[KEEL_INVOCATION_METHOD_MAX + 1];
    msgpack_object args;
    keel_error_t err = { "" };
    cr_assert_eq (keel_invocation_parse (bytes, 9, &u, method, sizeof method, &args, &err),
                  KEEL_ERR_INVALID, "the driver read the method as '%s'", method);
    msgpack_unpacked_destroy (&u);
    char why[160] = "";
    msgpack_unpacked_init (&u);
    cr_assert_not (keel_library_parse_invocation ((const uint8_t *) bytes, 9, &u, method, &args,
                                                  why, sizeof why));
    msgpack_unpacked_destroy (&u);
}

Test (fuzz_findings, a_container_header_larger_than_the_input_allocates_nothing)
{
    // 0xdd: an array of 2^32-1 elements, in 5 bytes. msgpack-c asked for
    // 96 GiB before reading one of them.
    const uint8_t *cases[] = { (const uint8_t *) "\xdd\xff\xff\xff\xff",
                               (const uint8_t *) "\x92\xa3"
                                                 "add\xdf\xff\xff\xff\xff" };
    const size_t sizes[] = { 5, 10 };
    for (int i = 0; i < 2; i++) {
        cr_assert_eq (keel_msgpack_bounded (cases[i], sizes[i], NULL), KEEL_MSGPACK_TRUNCATED);
        msgpack_unpacked u;
        char method[KEEL_INVOCATION_METHOD_MAX + 1];
        msgpack_object args;
        keel_error_t err = { "" };
        cr_assert_eq (
            keel_invocation_parse (cases[i], sizes[i], &u, method, sizeof method, &args, &err),
            KEEL_ERR_INVALID);
        cr_assert (strstr (err.text, "truncated msgpack"), "%s", err.text);
        msgpack_unpacked_destroy (&u);
        keel_result_t result = { .status = KEEL_TASK_OK,
                                 .output = cases[i],
                                 .output_size = sizes[i] };
        cr_assert_eq (keel_result_unpack (&result, &u, &err), KEEL_ERR_INVALID);
        msgpack_unpacked_destroy (&u);
        char why[160] = "";
        msgpack_unpacked_init (&u);
        cr_assert_not (
            keel_library_parse_invocation (cases[i], sizes[i], &u, method, &args, why, sizeof why));
        cr_assert (strstr (why, "truncated msgpack"), "%s", why);
        msgpack_unpacked_destroy (&u);
    }
}

Test (fuzz_findings, the_bound_check_takes_every_kind_of_value_msgpack_writes)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 12);
    msgpack_pack_nil (&pk);
    msgpack_pack_true (&pk);
    msgpack_pack_int64 (&pk, -1234567890123);
    msgpack_pack_uint16 (&pk, 60000);
    msgpack_pack_float (&pk, 1.5f);
    msgpack_pack_double (&pk, 2.5);
    msgpack_pack_str_with_body (&pk, "a string longer than thirty-one bytes....", 41);
    msgpack_pack_bin_with_body (&pk, "\0\1\2", 3);
    msgpack_pack_ext_with_body (&pk, "12345678", 8, 7); // fixext 8
    msgpack_pack_ext_with_body (&pk, "123", 3, 7);      // ext 8
    msgpack_pack_map (&pk, 1);
    msgpack_pack_int (&pk, 1);
    msgpack_pack_array (&pk, 0);
    msgpack_pack_array (&pk, 20); // array 16
    for (int i = 0; i < 20; i++)
        msgpack_pack_int (&pk, -i);
    size_t used = 0;
    cr_assert_eq (keel_msgpack_bounded ((const uint8_t *) buf.data, buf.size, &used),
                  KEEL_MSGPACK_BOUNDED);
    cr_assert_eq (used, buf.size);
    for (size_t cut = 0; cut < buf.size; cut++)
        cr_assert_eq (keel_msgpack_bounded ((const uint8_t *) buf.data, cut, NULL),
                      KEEL_MSGPACK_TRUNCATED, "cut at %zu", cut);
    msgpack_sbuffer_destroy (&buf);
}

// ---------------------------------------------------------------- changes

Test (fuzz_findings, an_empty_journal_encodes_and_decodes)
{
    keel_changes_t *changes = keel_changes_new ();
    size_t size = 99;
    uint8_t *bytes = keel_changes_encode (changes, 5, &size);
    cr_assert_not_null (bytes, "an empty journal is not out of memory");
    uint64_t seq = 0;
    keel_error_t err = { "" };
    cr_assert_eq (keel_changes_decode (changes, bytes, size, &seq, &err), KEEL_OK, "%s", err.text);
    cr_assert_eq (seq, 5);
    cr_assert_eq (keel_changes_size (changes), 0);
    free (bytes);
    keel_changes_destroy (&changes);
}

// ---------------------------------------------------------------- store rows

static keel_settings_t *settings;
static keel_core_t *core;

static void
s_recover_begin (void)
{
    keel_error_t err;
    keel_log_init (KEEL_LOG_ERROR);
    settings = keel_settings_new (keel_broker_settings, &err);
    cr_assert_not_null (settings);
    core = keel_core_new (settings, 1000000, 1700000000000);
    cr_assert_not_null (core);
    keel_core_recover_begin (core, 0, 0);
}

static void
s_recover_end (void)
{
    keel_core_recover_end (core);
    keel_changes_clear (keel_core_changes (core));
    keel_core_recover_done (core);
}

static void
s_teardown (void)
{
    keel_core_destroy (&core);
    keel_settings_destroy (&settings);
}

Test (fuzz_findings, a_stored_service_in_an_unknown_state_is_taken_as_open, .fini = s_teardown)
{
    s_recover_begin ();
    keel_store_service_t row = { .service_id = "s-1",
                                 .type = "double",
                                 .driver_id = "d-1",
                                 .state = (keel_service_state_t) 336860180 };
    cr_assert_eq (keel_core_loader ()->service (&row, core), 0);
    s_recover_end ();
    keel_service_rec_t *svc = keel_model_service (keel_core_model (core), "s-1");
    cr_assert_not_null (svc);
    cr_assert_eq (svc->state, KEEL_SERVICE_OPEN);
    // keel-admin services indexed its table of state names with it.
    keel_admin_view_t view = { 0 };
    keel_core_admin_view (core, &view);
    view.name = "test";
    view.role = "standalone";
    view.settings = settings;
    keel_admin_reply_t reply;
    keel_admin_handle (&view, "services", NULL, 0, &reply);
    cr_assert (reply.ok, "%s", reply.error);
    cr_assert (strstr (reply.text, "open"), "%s", reply.text);
    keel_admin_reply_clear (&reply);
}

Test (fuzz_findings, stored_rows_with_a_null_name_are_skipped, .fini = s_teardown)
{
    s_recover_begin ();
    const keel_store_loader_t *ld = keel_core_loader ();
    keel_store_service_t svc = { .service_id = NULL, .type = "double", .driver_id = "d-1" };
    cr_assert_eq (ld->service (&svc, core), 0);
    keel_store_task_t task = { .service_id = NULL, .task_id = 1 };
    cr_assert_eq (ld->task (&task, core), 0);
    keel_store_execution_t exec = { .execution_id = 5, .service_id = NULL };
    cr_assert_eq (ld->execution (&exec, core), 0);
    keel_store_pending_t pending = { .service_id = NULL, .task_id = 1, .execution_id = 6 };
    cr_assert_eq (ld->pending (&pending, core), 0);
    cr_assert_eq (ld->config (NULL, "20", core), 0);
    cr_assert_eq (ld->config ("EngineTimeoutMinutes", NULL, core), 0);
    keel_store_engine_t engine = { .engine_id = NULL, .host = "h", .session = "s" };
    cr_assert_eq (ld->engine (&engine, core), 0);
    engine = (keel_store_engine_t) { .engine_id = "e-1", .host = NULL, .session = "s" };
    cr_assert_eq (ld->engine (&engine, core), 0);
    s_recover_end ();
    cr_assert_null (keel_model_service_first (keel_core_model (core)));
    cr_assert_null (keel_model_engine (keel_core_model (core), "e-1"));
}

Test (fuzz_findings, a_stored_task_id_past_every_max_tasks_per_service_is_skipped,
      .fini = s_teardown)
{
    s_recover_begin ();
    const keel_store_loader_t *ld = keel_core_loader ();
    keel_store_service_t svc = { .service_id = "s-1", .type = "double", .driver_id = "d-1" };
    cr_assert_eq (ld->service (&svc, core), 0);
    // 2^57: the model would have made room for every id below it.
    keel_store_task_t task = { .service_id = "s-1", .task_id = 1ull << 57 };
    cr_assert_eq (ld->task (&task, core), 0);
    task.task_id = 3;
    cr_assert_eq (ld->task (&task, core), 0);
    s_recover_end ();
    keel_service_rec_t *rec = keel_model_service (keel_core_model (core), "s-1");
    cr_assert_not_null (keel_service_task (rec, 3));
    cr_assert_eq (rec->ntasks, 4);
}

Test (fuzz_findings, a_stored_execution_with_id_0_is_skipped, .fini = s_teardown)
{
    s_recover_begin ();
    const keel_store_loader_t *ld = keel_core_loader ();
    keel_store_service_t svc = { .service_id = "s-1", .type = "double", .driver_id = "d-1" };
    cr_assert_eq (ld->service (&svc, core), 0);
    keel_store_task_t task = { .service_id = "s-1",
                               .task_id = 1,
                               .state = KEEL_TASK_STATE_RUNNING };
    cr_assert_eq (ld->task (&task, core), 0);
    // Id 0 as a zhashx key is NULL: zhashx_lookup asserted (fuzz_store_load).
    keel_store_execution_t exec = { .execution_id = 0, .service_id = "s-1", .task_id = 1 };
    cr_assert_eq (ld->execution (&exec, core), 0);
    cr_assert_null (keel_model_exec (keel_core_model (core), 0));
    s_recover_end ();
    // The running task without its execution gets a placeholder, as any.
    keel_service_rec_t *rec = keel_model_service (keel_core_model (core), "s-1");
    cr_assert_not_null (keel_service_task (rec, 1)->execs);
    cr_assert_neq (keel_service_task (rec, 1)->execs->id, 0);
}
