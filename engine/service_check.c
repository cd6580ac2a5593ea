/*  service_check.c — at engine start, is every configured service runnable here? */
#include "service_check.h"

#include <ctype.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keel/service.h"
#include "wire.h"

//  sh's search path when PATH is unset (dash, bash).
#define S_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define S_WORD_MAX     4096
#define S_WORDS_MAX    64 // assignments and `exec`s skipped at most

//  First words that are no program: sh keywords and POSIX special and
//  regular built-ins (found without PATH). `exec` is handled apart.
static const char *s_shell_words[] = {
    "!",      "{",      "}",     "case",     "do",      "done",    "elif",     "else", "esac",
    "fi",     "for",    "if",    "in",       "then",    "until",   "while",    ".",    ":",
    "[",      "alias",  "bg",    "break",    "cd",      "command", "continue", "echo", "eval",
    "exit",   "export", "false", "fg",       "getopts", "hash",    "jobs",     "kill", "local",
    "printf", "pwd",    "read",  "readonly", "return",  "set",     "shift",    "test", "times",
    "trap",   "true",   "type",  "ulimit",   "umask",   "unalias", "unset",    "wait", NULL
};

static bool
s_is_shell_word (const char *word)
{
    for (int i = 0; s_shell_words[i]; i++)
        if (strcmp (s_shell_words[i], word) == 0)
            return true;
    return false;
}

//  NAME=... with NAME a shell variable name.
static bool
s_is_assignment (const char *word)
{
    const char *eq = strchr (word, '=');
    if (!eq || eq == word || isdigit ((unsigned char) word[0]))
        return false;
    for (const char *p = word; p < eq; p++)
        if (!isalnum ((unsigned char) *p) && *p != '_')
            return false;
    return true;
}

//  Copies the next word of *p into word and moves *p past it. A word ends
//  at white space or a shell operator character. Returns false at the end
//  of the line or when the next character is an operator (no word).
static bool
s_next_word (const char **p, char *word, size_t size)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = 0;
    while (*s && !strchr (" \t\n;&|<>()", *s)) {
        if (n + 1 < size)
            word[n++] = *s;
        s++;
    }
    word[n] = 0;
    *p = s;
    return n > 0;
}

//  Checks the #! interpreter of the executable file at path, if it has one.
static bool
s_check_interpreter (const char *path, const char *shown, char *why, size_t why_size)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true; // unreadable: not a script we can look into
    char head[256];
    ssize_t n = read (fd, head, sizeof head - 1);
    close (fd);
    if (n < 3 || head[0] != '#' || head[1] != '!')
        return true;
    head[n] = 0;
    char *interp = head + 2;
    while (*interp == ' ' || *interp == '\t')
        interp++;
    size_t len = strcspn (interp, " \t\r\n");
    if (len == 0 || interp[len] == 0)
        return true; // no complete first line within 256 bytes: let exec decide
    interp[len] = 0;
    struct stat st;
    if (stat (interp, &st) != 0 || !S_ISREG (st.st_mode) || access (interp, X_OK) != 0) {
        snprintf (why, why_size, "interpreter '%s' of '%s' (its #! line) %s", interp, shown,
                  stat (interp, &st) != 0 ? "does not exist" : "is not an executable file");
        return false;
    }
    return true;
}

//  Checks a program word that holds a '/'.
static bool
s_check_path (const char *path, char *why, size_t why_size)
{
    struct stat st;
    if (stat (path, &st) != 0) {
        snprintf (why, why_size, "program '%s' does not exist (%s)", path, strerror (errno));
        return false;
    }
    if (!S_ISREG (st.st_mode)) {
        snprintf (why, why_size, "program '%s' is not a regular file", path);
        return false;
    }
    if (access (path, X_OK) != 0) {
        snprintf (why, why_size, "program '%s' is not executable (%s)", path, strerror (errno));
        return false;
    }
    return s_check_interpreter (path, path, why, why_size);
}

//  Looks a bare program name up in the directories of path.
static bool
s_check_on_path (const char *name, const char *path, char *why, size_t why_size)
{
    const char *dir = path;
    for (;;) {
        size_t len = strcspn (dir, ":");
        char full[S_WORD_MAX + 512];
        //  An empty entry is the working directory, as for sh.
        if (len == 0)
            snprintf (full, sizeof full, "%s", name);
        else
            snprintf (full, sizeof full, "%.*s/%s", (int) len, dir, name);
        struct stat st;
        if (len < 512 && stat (full, &st) == 0 && S_ISREG (st.st_mode) && access (full, X_OK) == 0)
            return s_check_interpreter (full, full, why, why_size);
        if (dir[len] == 0)
            break;
        dir += len + 1;
    }
    snprintf (why, why_size, "program '%s' not found in PATH (%s)", name, path);
    return false;
}

bool
keel_service_check_command (const char *command, const char *path, char *why, size_t why_size)
{
    *why = 0;
    if (!path)
        path = S_DEFAULT_PATH;
    const char *p = command;
    char word[S_WORD_MAX];
    for (int i = 0; i < S_WORDS_MAX; i++) {
        if (!s_next_word (&p, word, sizeof word))
            return true; // empty, or starts with an operator: nothing to check
        if (strpbrk (word, "$`'\"\\*?[]~{}"))
            return true; // the shell expands it: unknown until it runs
        if (s_is_assignment (word) || strcmp (word, "exec") == 0)
            continue; // the program is the next word
        if (s_is_shell_word (word))
            return true;
        if (strchr (word, '/'))
            return s_check_path (word, why, why_size);
        return s_check_on_path (word, path, why, why_size);
    }
    return true;
}

// ---------------------------------------------------------------- libraries

//  True when the ELF64 shared object in memory defines a symbol keel_method_*
//  in its dynamic symbol table. Every offset is checked against size.
static bool
s_elf_has_method (const uint8_t *image, size_t size)
{
    if (size < sizeof (Elf64_Ehdr) || memcmp (image, ELFMAG, SELFMAG) != 0
        || image[EI_CLASS] != ELFCLASS64)
        return false;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *) image;
    if (eh->e_shentsize != sizeof (Elf64_Shdr) || eh->e_shoff > size
        || (size - eh->e_shoff) / sizeof (Elf64_Shdr) < eh->e_shnum)
        return false;
    const Elf64_Shdr *sh = (const Elf64_Shdr *) (image + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum)
            continue;
        const Elf64_Shdr *str = &sh[sh[i].sh_link];
        if (sh[i].sh_offset > size || size - sh[i].sh_offset < sh[i].sh_size
            || str->sh_offset > size || size - str->sh_offset < str->sh_size)
            return false;
        const Elf64_Sym *sym = (const Elf64_Sym *) (image + sh[i].sh_offset);
        size_t count = sh[i].sh_size / sizeof (Elf64_Sym);
        const char *names = (const char *) image + str->sh_offset;
        static const char prefix[] = "keel_method_";
        for (size_t k = 0; k < count; k++) {
            if (sym[k].st_shndx == SHN_UNDEF || ELF64_ST_TYPE (sym[k].st_info) != STT_FUNC
                || sym[k].st_name >= str->sh_size
                || str->sh_size - sym[k].st_name <= sizeof prefix - 1)
                continue;
            if (memcmp (names + sym[k].st_name, prefix, sizeof prefix - 1) == 0)
                return true;
        }
    }
    return false;
}

static bool
s_file_has_method (const char *path)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool found = false;
    if (fstat (fd, &st) == 0 && st.st_size > 0) {
        void *image = mmap (NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (image != MAP_FAILED) {
            found = s_elf_has_method (image, (size_t) st.st_size);
            munmap (image, (size_t) st.st_size);
        }
    }
    close (fd);
    return found;
}

//  The file dlopen loaded for handle (a bare name is searched for).
static const char *
s_loaded_path (void *handle, const char *path)
{
    struct link_map *map = NULL;
    if (dlinfo (handle, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name && *map->l_name)
        return map->l_name;
    return path;
}

//  In the child: the reason the library cannot serve, or "" when it can.
static void
s_library_verdict (const char *path, char *why, size_t why_size)
{
    *why = 0;
    void *handle = dlopen (path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *err = dlerror ();
        snprintf (why, why_size, "cannot load library '%s': %s", path, err ? err : "dlopen failed");
        return;
    }
    const uint32_t *abi = dlsym (handle, "keel_service_abi");
    if (abi && *abi != KEEL_SERVICE_ABI)
        snprintf (why, why_size, "library '%s' was built for ABI %u, this engine has %u", path,
                  *abi, KEEL_SERVICE_ABI);
    else if (!dlsym (handle, "keel_service_run") && !dlsym (handle, "keel_service_invoke")
             && !s_file_has_method (s_loaded_path (handle, path)))
        snprintf (why, why_size,
                  "library '%s' has no entry point (keel_service_run, "
                  "keel_service_invoke or keel_method_NAME; see keel/service.h)",
                  path);
}

static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
keel_service_check_library (const char *path, char *why, size_t why_size)
{
    *why = 0;
    int fds[2];
    if (pipe2 (fds, O_CLOEXEC) != 0) {
        snprintf (why, why_size, "cannot check library '%s': pipe: %s", path, strerror (errno));
        return false;
    }
    pid_t pid = fork ();
    if (pid < 0) {
        snprintf (why, why_size, "cannot check library '%s': fork: %s", path, strerror (errno));
        close (fds[0]);
        close (fds[1]);
        return false;
    }
    if (pid == 0) {
        close (fds[0]);
        char text[512];
        s_library_verdict (path, text, sizeof text);
        ssize_t n = write (fds[1], text, strlen (text));
        _exit (n == (ssize_t) strlen (text) ? 0 : 1);
    }
    close (fds[1]);
    //  Reads the verdict until EOF or the deadline (a constructor may hang).
    char text[512];
    size_t have = 0;
    bool eof = false;
    int64_t deadline = s_mono_ms () + KEEL_SERVICE_CHECK_TIMEOUT_MS;
    while (!eof) {
        int64_t left = deadline - s_mono_ms ();
        if (left <= 0)
            break;
        struct pollfd pfd = { fds[0], POLLIN, 0 };
        int rc = poll (&pfd, 1, (int) left);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc <= 0)
            continue;
        ssize_t n = read (fds[0], text + have, sizeof text - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (have += (size_t) n) == sizeof text - 1)
            eof = true;
    }
    close (fds[0]);
    text[have] = 0;
    if (!eof)
        kill (pid, SIGKILL);
    int status = 0;
    while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!eof) {
        snprintf (why, why_size, "loading library '%s' did not finish within %d s", path,
                  KEEL_SERVICE_CHECK_TIMEOUT_MS / 1000);
        return false;
    }
    if (WIFSIGNALED (status)) {
        snprintf (why, why_size, "loading library '%s' crashed the checking process (signal %d)",
                  path, WTERMSIG (status));
        return false;
    }
    if (have) {
        snprintf (why, why_size, "%s", text);
        return false;
    }
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
        //  A library constructor may call exit() itself.
        snprintf (why, why_size, "loading library '%s' ended the checking process (exit %d)", path,
                  WIFEXITED (status) ? WEXITSTATUS (status) : -1);
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- all

keel_err
keel_service_check_all (keel_engine_config_t *cfg, keel_service_check_report_fn *report, void *arg,
                        int *dropped_p, keel_error_t *err)
{
    int configured = 0, dropped = 0;
    const char *path = getenv ("PATH");
    //  Walks by index: a removal moves the later services up one.
    for (int i = 0; i < cfg->n_services;) {
        const keel_service_def_t *def = &cfg->services[i];
        if (!def->command && !def->library) {
            i++;
            continue; // a built-in
        }
        configured++;
        char why[1024];
        bool ok = def->command ? keel_service_check_command (def->command, path, why, sizeof why)
                               : keel_service_check_library (def->library, why, sizeof why);
        if (ok) {
            i++;
            continue;
        }
        char message[1400];
        snprintf (message, sizeof message, "service.%s.%s: %s; service '%s' is not offered",
                  def->name, def->command ? "exec" : "library", why, def->name);
        if (report)
            report (def->name, message, arg);
        char name[KEEL_TYPE_MAX + 1];
        snprintf (name, sizeof name, "%s", def->name);
        keel_engine_config_remove_service (cfg, name);
        dropped++;
    }
    if (dropped_p)
        *dropped_p = dropped;
    if (configured > 0 && dropped == configured)
        return keel_error_set (err, KEEL_ERR_CONFIG,
                               "none of the %d configured service%s can run here (see the "
                               "errors above)",
                               configured, configured == 1 ? "" : "s");
    return KEEL_OK;
}
