/*  spool.c — results kept on disk until a broker acknowledges them. */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "wire.h"

struct _keel_spool_t {
    char *dir;
};

keel_spool_t *
keel_spool_new (const char *state_dir, keel_error_t *err)
{
    keel_spool_t *self = calloc (1, sizeof *self);
    size_t len = strlen (state_dir) + 8;
    if (!self || !(self->dir = malloc (len))) {
        free (self);
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    snprintf (self->dir, len, "%s/spool", state_dir);
    if (mkdir (self->dir, 0755) != 0 && errno != EEXIST) {
        keel_error_set (err, KEEL_ERR_IO, "%s: cannot create: %s", self->dir, strerror (errno));
        keel_spool_destroy (&self);
        return NULL;
    }
    return self;
}

void
keel_spool_destroy (keel_spool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->dir);
    free (*self_p);
    *self_p = NULL;
}

keel_err
keel_spool_write (keel_spool_t *self, const Keel__Result *result, keel_error_t *err)
{
    keel_msg_t msg;
    zframe_t *frame = keel_wire_encode (keel_msg_result (&msg, result));
    if (!frame)
        return keel_error_set (err, KEEL_ERR_NOMEM, "spool: cannot encode result");
    char path[4200], tmp[4300];
    snprintf (path, sizeof path, "%s/%" PRIu64, self->dir, result->execution_id);
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    keel_err rc = KEEL_OK;
    if (fd < 0)
        rc = keel_error_set (err, KEEL_ERR_IO, "%s: cannot create: %s", tmp, strerror (errno));
    else {
        const uint8_t *data = zframe_data (frame);
        size_t size = zframe_size (frame), done = 0;
        while (done < size) {
            ssize_t n = write (fd, data + done, size - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            done += (size_t) n;
        }
        // No fsync: the spool must survive a crash of the engine process,
        // which the page cache does; if the machine itself dies, the broker
        // runs the task again elsewhere (at-least-once execution), so a
        // disk sync per result would buy nothing the contract needs.
        if (done < size)
            rc = keel_error_set (err, KEEL_ERR_IO, "%s: cannot write: %s", tmp, strerror (errno));
        close (fd);
        if (rc == KEEL_OK && rename (tmp, path) != 0)
            rc = keel_error_set (err, KEEL_ERR_IO, "%s: cannot rename: %s", tmp, strerror (errno));
        if (rc != KEEL_OK)
            unlink (tmp);
    }
    zframe_destroy (&frame);
    return rc;
}

void
keel_spool_remove (keel_spool_t *self, uint64_t execution_id)
{
    char path[4200];
    snprintf (path, sizeof path, "%s/%" PRIu64, self->dir, execution_id);
    unlink (path);
}

//  True when name is a spool entry: decimal digits only.
static bool
s_is_entry (const char *name)
{
    if (!*name || strlen (name) > 20)
        return false;
    for (const char *p = name; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

int
keel_spool_clear (keel_spool_t *self)
{
    DIR *dir = opendir (self->dir);
    if (!dir)
        return 0;
    int removed = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        size_t len = strlen (entry->d_name);
        bool tmp = len > 4 && strcmp (entry->d_name + len - 4, ".tmp") == 0;
        if (!s_is_entry (entry->d_name) && !tmp)
            continue;
        char path[4200];
        snprintf (path, sizeof path, "%s/%s", self->dir, entry->d_name);
        if (unlink (path) == 0 && !tmp)
            removed++;
    }
    closedir (dir);
    return removed;
}

//  Reads a whole file of at most max_bytes. Returns NULL on failure.
static uint8_t *
s_read_file (const char *path, size_t max_bytes, size_t *size_p)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    uint8_t *data = NULL;
    if (fstat (fd, &st) == 0 && S_ISREG (st.st_mode) && (size_t) st.st_size <= max_bytes
        && (data = malloc ((size_t) st.st_size + 1))) {
        size_t done = 0, size = (size_t) st.st_size;
        while (done < size) {
            ssize_t n = read (fd, data + done, size - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            done += (size_t) n;
        }
        if (done != size) {
            free (data);
            data = NULL;
        }
        *size_p = size;
    }
    close (fd);
    return data;
}

int
keel_spool_load (keel_spool_t *self, size_t max_bytes, keel_spool_load_fn *fn, void *arg)
{
    DIR *dir = opendir (self->dir);
    if (!dir)
        return 0;
    int loaded = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (!s_is_entry (entry->d_name))
            continue;
        char path[4200];
        snprintf (path, sizeof path, "%s/%s", self->dir, entry->d_name);
        size_t size = 0;
        uint8_t *data = s_read_file (path, max_bytes, &size);
        keel_error_t err = { "cannot read or too large" };
        keel_env_t *env = data ? keel_wire_decode (data, size, &err) : NULL;
        free (data);
        uint64_t id = strtoull (entry->d_name, NULL, 10);
        if (env
            && (env->body_case != KEEL__ENVELOPE__BODY_RESULT || env->result->execution_id != id)) {
            snprintf (err.text, sizeof err.text, "not the result of execution %" PRIu64, id);
            keel_wire_free (&env);
        }
        if (!env) {
            char bad[4300];
            snprintf (bad, sizeof bad, "%s.bad", path);
            rename (path, bad);
            KEEL_WARN ("engine", "spooled result skipped file=%s reason=\"%s\"", bad, err.text);
            continue;
        }
        fn (env->result, arg);
        loaded++;
        keel_wire_free (&env);
    }
    closedir (dir);
    return loaded;
}
