/* util: option parsing, messages and output files for the sattn program. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
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

int cli_outfile_open(cli_outfile *o, const char *path, char *err, size_t errlen)
{
    o->f = NULL, o->path = path;
    size_t n = strlen(path);
    o->tmp = malloc(n + 16);
    if (!o->tmp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* beside the target, so the rename stays within one file system */
    memcpy(o->tmp, path, n);
    memcpy(o->tmp + n, ".tmp-XXXXXX", 12);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        free(o->tmp), o->tmp = NULL;
        return -1;
    }
    /* mkstemp makes the file 0600; give it the mode a plain fopen would */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(o->f = fdopen(fd, "wb"))) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        cli_outfile_abort(o);
        return -1;
    }
    return 0;
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
    if (rename(o->tmp, o->path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", o->path, strerror(errno));
        cli_outfile_abort(o);
        return -1;
    }
    free(o->tmp), o->tmp = NULL;
    return 0;
}

void cli_outfile_abort(cli_outfile *o)
{
    if (o->f) fclose(o->f), o->f = NULL;
    if (o->tmp) remove(o->tmp), free(o->tmp), o->tmp = NULL;
}

double cli_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
