/*  library.c — library services inside a task worker: loading, sessions, dispatch. */
#include "library.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "msgpack_bound.h"

typedef struct {
    char *path;
    void *handle;
    keel_svc_init_fn *init;
    keel_svc_fn *run;
    keel_svc_fn *invoke;
} s_lib_t;

typedef struct {
    char *service_id;
    s_lib_t *lib;
    bool ok; // the init hook succeeded (or there is none)
    keel_svc_session_t session;
    char *type;
    uint8_t *init_data;
    uint64_t used; // last use, for eviction
} s_session_t;

struct _keel_library_t {
    s_lib_t libs[KEEL_LIBRARY_MAX_LIBS];
    int n_libs;
    s_session_t sessions[KEEL_LIBRARY_MAX_SESSIONS];
    int n_sessions;
    uint64_t clock;
};

keel_library_t *
keel_library_new (void)
{
    return calloc (1, sizeof (keel_library_t));
}

static void
s_session_free (s_session_t *s)
{
    free (s->service_id);
    free (s->type);
    free (s->init_data);
    memset (s, 0, sizeof *s);
}

void
keel_library_destroy (keel_library_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_library_t *self = *self_p;
    for (int i = 0; i < self->n_sessions; i++)
        s_session_free (&self->sessions[i]);
    for (int i = 0; i < self->n_libs; i++)
        free (self->libs[i].path);
    free (self);
    *self_p = NULL;
}

//  The loaded library at path, loading it on first use.
static s_lib_t *
s_load (keel_library_t *self, const char *path, char *error, size_t error_size)
{
    for (int i = 0; i < self->n_libs; i++)
        if (strcmp (self->libs[i].path, path) == 0)
            return &self->libs[i];
    if (self->n_libs >= KEEL_LIBRARY_MAX_LIBS) {
        snprintf (error, error_size, "more than %d service libraries in one worker",
                  KEEL_LIBRARY_MAX_LIBS);
        return NULL;
    }
    void *handle = dlopen (path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror ();
        snprintf (error, error_size, "cannot load service library: %s", why ? why : path);
        return NULL;
    }
    const uint32_t *abi = dlsym (handle, "keel_service_abi");
    if (abi && *abi != KEEL_SERVICE_ABI) {
        snprintf (error, error_size, "service library %s was built for ABI %u, engine has %u", path,
                  *abi, KEEL_SERVICE_ABI);
        dlclose (handle);
        return NULL;
    }
    s_lib_t *lib = &self->libs[self->n_libs];
    //  POSIX: a function pointer may be read from dlsym's void * this way.
    *(void **) &lib->init = dlsym (handle, "keel_service_init");
    *(void **) &lib->run = dlsym (handle, "keel_service_run");
    *(void **) &lib->invoke = dlsym (handle, "keel_service_invoke");
    lib->path = strdup (path);
    lib->handle = handle;
    if (!lib->path) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    self->n_libs++;
    return lib;
}

//  The session of task's service in this worker, running the init hook
//  the first time.
static s_session_t *
s_session (keel_library_t *self, s_lib_t *lib, const keel_svc_task_t *task, char *error,
           size_t error_size)
{
    self->clock++;
    for (int i = 0; i < self->n_sessions; i++) {
        s_session_t *s = &self->sessions[i];
        if (s->lib == lib && strcmp (s->service_id, task->service_id) == 0) {
            s->used = self->clock;
            return s;
        }
    }
    s_session_t *s = NULL;
    if (self->n_sessions < KEEL_LIBRARY_MAX_SESSIONS)
        s = &self->sessions[self->n_sessions++];
    else {
        s = &self->sessions[0];
        for (int i = 1; i < self->n_sessions; i++)
            if (self->sessions[i].used < s->used)
                s = &self->sessions[i];
        s_session_free (s);
    }
    s->lib = lib;
    s->used = self->clock;
    s->service_id = strdup (task->service_id);
    s->type = strdup (task->service_type);
    if (task->init_data_size) {
        s->init_data = malloc (task->init_data_size);
        if (s->init_data)
            memcpy (s->init_data, task->init_data, task->init_data_size);
    }
    if (!s->service_id || !s->type || (task->init_data_size && !s->init_data)) {
        s_session_free (s);
        self->n_sessions--;
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    s->session.abi = KEEL_SERVICE_ABI;
    s->session.service_type = s->type;
    s->session.service_id = s->service_id;
    s->session.init_data = s->init_data;
    s->session.init_data_size = task->init_data_size;
    s->ok = true;
    if (lib->init) {
        int rc = lib->init (&s->session);
        if (rc != 0) {
            s->ok = false;
            s->session.error[sizeof s->session.error - 1] = 0;
            if (!*s->session.error)
                snprintf (s->session.error, sizeof s->session.error, "init hook returned %d", rc);
        }
    }
    return s;
}

static bool
s_method_char (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool
keel_library_parse_invocation (const uint8_t *data, size_t size, msgpack_unpacked *unpacked,
                               char *method, msgpack_object *args, char *why, size_t why_size)
{
    // Before msgpack-c, which would allocate what a header claims.
    keel_msgpack_bound_t bound = keel_msgpack_bounded (data, size, NULL);
    if (bound != KEEL_MSGPACK_BOUNDED) {
        if (bound == KEEL_MSGPACK_TRUNCATED)
            snprintf (why, why_size, "truncated msgpack (%zu bytes)", size);
        else
            snprintf (why, why_size, "not msgpack (parse error)");
        return false;
    }
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (unpacked, (const char *) data, size, &off);
    if (rc == MSGPACK_UNPACK_CONTINUE || (rc != MSGPACK_UNPACK_SUCCESS && size == 0)) {
        snprintf (why, why_size, "truncated msgpack (%zu bytes)", size);
        return false;
    }
    if (rc != MSGPACK_UNPACK_SUCCESS) {
        snprintf (why, why_size, "not msgpack (%s)",
                  rc == MSGPACK_UNPACK_NOMEM_ERROR ? "too large to decode" : "parse error");
        return false;
    }
    if (off != size) {
        snprintf (why, why_size, "trailing bytes after the msgpack value (%zu of %zu used)", off,
                  size);
        return false;
    }
    const msgpack_object *root = &unpacked->data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 2) {
        snprintf (why, why_size, "expected an array [method, [args...]]");
        return false;
    }
    const msgpack_object *m = &root->via.array.ptr[0];
    if (m->type != MSGPACK_OBJECT_STR || m->via.str.size == 0
        || m->via.str.size > KEEL_INVOCATION_METHOD_MAX) {
        snprintf (why, why_size, "method must be a string of 1-%d characters",
                  KEEL_INVOCATION_METHOD_MAX);
        return false;
    }
    for (uint32_t i = 0; i < m->via.str.size; i++)
        if (!s_method_char (m->via.str.ptr[i])) {
            snprintf (why, why_size, "method name may hold only [A-Za-z0-9_]");
            return false;
        }
    if (root->via.array.ptr[1].type != MSGPACK_OBJECT_ARRAY) {
        snprintf (why, why_size, "arguments must be an array");
        return false;
    }
    memcpy (method, m->via.str.ptr, m->via.str.size);
    method[m->via.str.size] = 0;
    *args = root->via.array.ptr[1];
    return true;
}

int
keel_library_run (keel_library_t *self, const char *path, keel_svc_task_t *task, char *error,
                  size_t error_size)
{
    *error = 0;
    s_lib_t *lib = s_load (self, path, error, error_size);
    if (!lib)
        return -1;
    s_session_t *s = s_session (self, lib, task, error, error_size);
    if (!s)
        return -1;
    if (!s->ok) {
        snprintf (error, error_size, "service init failed: %s", s->session.error);
        return -1;
    }
    task->session = s->session.user;

    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    char method[KEEL_INVOCATION_METHOD_MAX + 1];
    char why[160];
    int rc = -1;
    if (keel_library_parse_invocation (task->input, task->input_size, &unpacked, method,
                                       &task->args, why, sizeof why)) {
        task->method = method;
        char symbol[KEEL_INVOCATION_METHOD_MAX + 16];
        snprintf (symbol, sizeof symbol, "keel_method_%s", method);
        keel_svc_fn *fn = NULL;
        *(void **) &fn = dlsym (lib->handle, symbol);
        if (!fn)
            fn = lib->invoke ? lib->invoke : lib->run;
        if (fn)
            rc = fn (task);
        else {
            snprintf (error, error_size, "no method '%s' in service library %s", method, path);
            rc = KEEL_TASK_PERMANENT; // the same input finds no method on any retry
        }
    }
    else if (lib->run) {
        task->method = NULL;
        task->args.type = MSGPACK_OBJECT_NIL;
        rc = lib->run (task);
    }
    else {
        snprintf (error, error_size, "input is not a msgpack invocation: %s", why);
        rc = KEEL_TASK_PERMANENT;
    }
    task->method = NULL;
    task->args.type = MSGPACK_OBJECT_NIL;
    msgpack_unpacked_destroy (&unpacked);
    return rc;
}
