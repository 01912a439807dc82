/* The sattn command-line program: what its subcommands share.
 *
 *   sattn.c   main: the subcommand table, --help, --version
 *   run.c     sattn run: attention on .npy files
 *   bench.c   sattn bench: runs the benchmark program built beside it
 *   show.c    sattn show: attention weights as a heatmap PNG (heatmap.c draws it)
 *   demo.c    sattn demo: trains a small Transformer (model.c) on sequence reversal
 *   embed.c   sattn embed: sentence embeddings (libsattn_bert, include/sattn_bert.h)
 *   npy.c     .npy files, png.c PNG files (libpng), util.c options and output files
 *
 * The program uses only the public API, include/sattn.h (and sattn_bert.h).
 */
#ifndef SATTN_CLI_H
#define SATTN_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* OpenMP when built with it; the pragmas vanish otherwise. */
#ifdef _OPENMP
#define CLI_OMP(x) _Pragma(#x)
#else
#define CLI_OMP(x)
#endif

/* ---- exit status, the same for every subcommand ---- */
enum {
    CLI_OK = 0,
    CLI_ERR_RUNTIME = 1, /* the library refused the problem, out of memory, a failed run */
    CLI_ERR_USAGE = 2,   /* a bad command line */
    CLI_ERR_INPUT = 3,   /* an input file is malformed, truncated or does not fit the others */
    CLI_ERR_IO = 4,      /* a file could not be opened, read or written */
};

/* The exit-status table as printed by --help. */
extern const char cli_exit_codes_help[];

/* ---- subcommands: argv[0] is the subcommand's name ---- */
int cli_run(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_show(int argc, char **argv);
int cli_demo(int argc, char **argv);
int cli_embed(int argc, char **argv);

/* ---- messages ---- */

/* "sattn CMD: message" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* ---- options ----
   Options come as "--name value" or "--name=value". cli_option returns 1 when
   argv[*i] is the option name (or alias, may be NULL) and sets *value, moving *i to
   its value; 0 when it is another option; -1 when the value is missing (reported). */
int cli_option(const char *cmd, int argc, char **argv, int *i, const char *name, const char *alias,
               const char **value);
/* Whole-string conversions: 0 on success, -1 (reported as a usage error) otherwise. */
int cli_parse_int(const char *cmd, const char *option, const char *s, long long lo, long long hi,
                  long long *out);
int cli_parse_float(const char *cmd, const char *option, const char *s, double lo, double hi, double *out);
/* Reports an unknown option or argument and points to --help; returns CLI_ERR_USAGE. */
int cli_unknown(const char *cmd, const char *arg);
/* 1 if arg is -h or --help. */
int cli_is_help(const char *arg);

/* a * b (and a * b * c) into *out; -1 on overflow or a negative factor */
int cli_mul(int64_t a, int64_t b, int64_t *out);

/* ---- output files ----
   A path given for output is resolved before any work: symbolic links are followed to
   the file they name. A regular file (or a name not yet taken) is written under a
   temporary name beside it and renamed over it when complete, so a failed or
   interrupted run leaves the old file (or nothing) and a reader never sees half a file;
   the file keeps its mode. Anything else that can be written (a device such as
   /dev/null, a FIFO, /dev/stdout) is written directly. A directory, a file that cannot
   be written, or a missing directory is refused when it is opened, before the command
   computes anything. SIGINT, SIGTERM and SIGHUP remove the temporary files. */
typedef struct {
    FILE *f;          /* open for writing from cli_outfile_open until close */
    char *tmp;        /* the temporary name, NULL when written directly */
    char *target;     /* the file it becomes: the path with its links followed */
    const char *path; /* as given */
    int direct;       /* 1: a device or FIFO written in place */
    int exists;       /* the target existed: dev and ino identify it */
    unsigned long long dev, ino;
} cli_outfile;

/* Resolves path and opens it (the temporary file, or the device). 0, or -1 with a
   message in err that names the real problem. */
int cli_outfile_open(cli_outfile *o, const char *path, char *err, size_t errlen);
/* 1 if o writes to this process's standard output (then messages go to stderr). */
int cli_outfile_is_stdout(const cli_outfile *o);
/* 1 if a and b (both open) would write the same file. */
int cli_outfile_same(const cli_outfile *a, const cli_outfile *b);
/* Flushes and closes it; on a write error removes it. 0, or -1 with a message. */
int cli_outfile_close(cli_outfile *o, char *err, size_t errlen);
/* Renames a closed file to its final name. 0, or -1 with a message (and removes it). */
int cli_outfile_publish(cli_outfile *o, char *err, size_t errlen);
/* Closes (if open) and removes the temporary file; safe to call twice. */
void cli_outfile_abort(cli_outfile *o);

/* Seconds on a monotonic clock. */
double cli_seconds(void);

#endif /* SATTN_CLI_H */
