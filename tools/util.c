/* util: option parsing, messages and output files for the sattn program. */
#define _XOPEN_SOURCE 700 /* realpath, with POSIX 2008 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

const char cli_exit_codes_help[] =
    "Exit status:\n"
    "  0  success\n"
    "  1  runtime error: the library refused the problem, out of memory, a failed run\n"
    "  2  usage error: unknown option, missing or invalid argument\n"
    "  3  bad input file: malformed, truncated, unsupported type, or a shape that does\n"
    "     not fit the other inputs (no output file is written)\n"
    "  4  I/O error: a file could not be opened, read or written\n";

/* ---- messages ---- */

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sattn %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- options ---- */

int cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

/* 1 if arg is name, or name followed by '=' (then *inline_value points past it) */
static int match_name(const char *arg, const char *name, const char **inline_value)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n)) return 0;
    if (arg[n] == '\0') return *inline_value = NULL, 1;
    if (arg[n] == '=' && name[1] == '-') return *inline_value = arg + n + 1, 1;
    return 0;
}

int cli_option(const char *cmd, int argc, char **argv, int *i, const char *name, const char *alias,
               const char **value)
{
    const char *arg = argv[*i], *inl = NULL;
    if (!match_name(arg, name, &inl) && !(alias && match_name(arg, alias, &inl))) return 0;
    if (inl) {
        *value = inl;
        return 1;
    }
    if (*i + 1 >= argc) {
        cli_error(cmd, "option %s needs a value (see sattn %s --help)", name, cmd);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int cli_parse_int(const char *cmd, const char *option, const char *s, long long lo, long long hi,
                  long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
        cli_error(cmd, "%s: '%s' is not an integer in [%lld, %lld]", option, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *option, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v) || v < lo || v > hi) {
        cli_error(cmd, "%s: '%s' is not a number in [%g, %g]", option, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_unknown(const char *cmd, const char *arg)
{
    if (arg[0] == '-') cli_error(cmd, "unknown option '%s' (see sattn %s --help)", arg, cmd);
    else cli_error(cmd, "unexpected argument '%s' (see sattn %s --help)", arg, cmd);
    return CLI_ERR_USAGE;
}

int cli_mul(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > INT64_MAX / a) return -1;
    *out = a * b;
    return 0;
}

/* ---- output files ---- */

/* The temporary files in being, for the signal handler. Slots hold malloc'd names set
   after the file exists and cleared before it is renamed or removed. */
#define CLI_MAX_TMP 16
static char *volatile cli__tmp[CLI_MAX_TMP];

static void cli__on_signal(int sig)
{
    for (int i = 0; i < CLI_MAX_TMP; i++)
        if (cli__tmp[i]) unlink(cli__tmp[i]); /* async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void cli__track(char *name, int on)
{
    static int installed;
    if (!installed) {
        static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = cli__on_signal;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
            struct sigaction old;
            /* a signal the caller ignores (nohup) stays ignored */
            if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(sigs[i], &sa, NULL);
        }
        installed = 1;
    }
    for (int i = 0; i < CLI_MAX_TMP; i++) {
        if (on && !cli__tmp[i]) {
            cli__tmp[i] = name;
            return;
        }
        if (!on && cli__tmp[i] == name) {
            cli__tmp[i] = NULL;
            return;
        }
    }
}

/* dir part of p ("." for none), as a new string */
static char *dir_of(const char *p)
{
    const char *slash = strrchr(p, '/');
    if (!slash) return strdup(".");
    if (slash == p) return strdup("/");
    return strndup(p, (size_t)(slash - p));
}

/* Follows the symbolic links of path (the last component, repeatedly) to the name of
   the file it stands for; a link into /proc or /dev/fd (such as /dev/stdout) is kept
   as given, since its target may be a pipe with no name. NULL on a loop or no memory. */
static char *follow_links(const char *path, char *err, size_t errlen)
{
    char *cur = strdup(path);
    for (int hops = 0; cur && hops < 40; hops++) {
        struct stat ls;
        if (lstat(cur, &ls) != 0 || !S_ISLNK(ls.st_mode)) return cur;
        if (!strncmp(cur, "/proc/", 6) || !strncmp(cur, "/dev/fd/", 8) || !strncmp(cur, "/dev/std", 8))
            return cur;
        char link[4096];
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0) return cur;
        link[n] = '\0';
        char *next;
        if (link[0] == '/') {
            next = strdup(link);
        } else { /* relative to the link's directory */
            char *d = dir_of(cur);
            next = d ? malloc(strlen(d) + (size_t)n + 2) : NULL;
            if (next) sprintf(next, "%s/%s", d, link);
            free(d);
        }
        free(cur);
        cur = next;
    }
    if (cur) snprintf(err, errlen, "cannot write %s: too many levels of symbolic links", path), free(cur);
    else snprintf(err, errlen, "out of memory");
    return NULL;
}

int cli_outfile_open(cli_outfile *o, const char *path, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->path = path;
    size_t n = strlen(path);
    if (n == 0) return snprintf(err, errlen, "an empty output file name"), -1;
    if (path[n - 1] == '/') {
        struct stat ds;
        if (stat(path, &ds) == 0 && S_ISDIR(ds.st_mode))
            snprintf(err, errlen, "cannot write %s: it is a directory; give a file name", path);
        else
            snprintf(err, errlen, "cannot write %s: a file name cannot end in '/'", path);
        return -1;
    }
    if (!(o->target = follow_links(path, err, errlen))) return -1;
    struct stat st;
    if (stat(o->target, &st) == 0) {
        o->exists = 1, o->dev = (unsigned long long)st.st_dev, o->ino = (unsigned long long)st.st_ino;
        if (S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "cannot write %s: it is a directory", path);
            goto fail;
        }
        struct stat ls;
        int magic = lstat(o->target, &ls) == 0 && S_ISLNK(ls.st_mode); /* follow_links stopped */
        if (!S_ISREG(st.st_mode) || magic) {
            /* a device, a FIFO, or a link such as /dev/stdout: written in place */
            int fd = open(o->target, O_WRONLY | O_CLOEXEC | (S_ISREG(st.st_mode) ? O_TRUNC : 0));
            if (fd < 0 || !(o->f = fdopen(fd, "wb"))) {
                snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
                if (fd >= 0) close(fd);
                goto fail;
            }
            o->direct = 1;
            return 0;
        }
        /* a regular file: it must be writable as it stands, or it is not ours to replace
           (a file without write permission is refused even where root could write it) */
        if (!(st.st_mode & 0222)) {
            snprintf(err, errlen, "cannot write %s: it is read-only (mode %04o)", path, (unsigned)(st.st_mode & 07777));
            goto fail;
        }
        int fd = open(o->target, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) {
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            goto fail;
        }
        close(fd);
    } else if (errno == ENOTDIR) {
        char *d = dir_of(o->target);
        snprintf(err, errlen, "cannot write %s: %s is not a directory", path, d ? d : "its directory");
        free(d);
        goto fail;
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        goto fail;
    }

    /* beside the target, so the rename stays within one file system */
    size_t tn = strlen(o->target);
    if (!(o->tmp = malloc(tn + 16))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    memcpy(o->tmp, o->target, tn);
    memcpy(o->tmp + tn, ".tmp-XXXXXX", 12);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int e = errno;
        char *d = dir_of(o->target);
        struct stat ds;
        /* (a directory that is a file was found by the stat above) */
        if (e == ENOENT && d && stat(d, &ds) != 0)
            snprintf(err, errlen, "cannot write %s: the directory %s does not exist", path, d);
        else
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
        free(d);
        free(o->tmp), o->tmp = NULL;
        goto fail;
    }
    cli__track(o->tmp, 1);
    /* mkstemp makes the file 0600: give it the old file's mode, or a plain fopen's */
    mode_t mode;
    if (o->exists) {
        mode = st.st_mode & 07777;
    } else {
        mode_t mask = umask(0);
        umask(mask);
        mode = 0666 & ~mask;
    }
    if (fchmod(fd, mode) != 0 || !(o->f = fdopen(fd, "wb"))) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        cli_outfile_abort(o);
        return -1;
    }
    return 0;
fail:
    free(o->target), o->target = NULL;
    return -1;
}

int cli_outfile_is_stdout(const cli_outfile *o)
{
    struct stat so;
    return o->direct && o->exists && fstat(1, &so) == 0 && (unsigned long long)so.st_dev == o->dev &&
           (unsigned long long)so.st_ino == o->ino;
}

int cli_outfile_same(const cli_outfile *a, const cli_outfile *b)
{
    if (a->exists && b->exists) return a->dev == b->dev && a->ino == b->ino;
    if (a->exists != b->exists || !a->target || !b->target) return 0;
    /* neither exists yet: the same name once the directories are resolved */
    char *da = dir_of(a->target), *db = dir_of(b->target);
    char *ra = da ? realpath(da, NULL) : NULL, *rb = db ? realpath(db, NULL) : NULL;
    const char *ba = strrchr(a->target, '/'), *bb = strrchr(b->target, '/');
    ba = ba ? ba + 1 : a->target, bb = bb ? bb + 1 : b->target;
    int same = ra && rb && !strcmp(ra, rb) && !strcmp(ba, bb);
    free(da), free(db), free(ra), free(rb);
    return same;
}

int cli_outfile_close(cli_outfile *o, char *err, size_t errlen)
{
    int bad = ferror(o->f) != 0;
    int saved = errno;
    if (fclose(o->f) != 0 && !bad) bad = 1, saved = errno;
    o->f = NULL;
    if (bad) {
        snprintf(err, errlen, "cannot write %s: %s", o->path, strerror(saved ? saved : EIO));
        cli_outfile_abort(o);
        return -1;
    }
    return 0;
}

int cli_outfile_publish(cli_outfile *o, char *err, size_t errlen)
{
    if (o->direct) {
        free(o->target), o->target = NULL;
        return 0;
    }
    cli__track(o->tmp, 0);
    if (rename(o->tmp, o->target) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", o->path, strerror(errno));
        remove(o->tmp);
        free(o->tmp), o->tmp = NULL;
        free(o->target), o->target = NULL;
        return -1;
    }
    free(o->tmp), o->tmp = NULL;
    free(o->target), o->target = NULL;
    return 0;
}

void cli_outfile_abort(cli_outfile *o)
{
    if (o->f) fclose(o->f), o->f = NULL;
    if (o->tmp) {
        cli__track(o->tmp, 0);
        remove(o->tmp), free(o->tmp), o->tmp = NULL;
    }
    free(o->target), o->target = NULL;
}

double cli_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
