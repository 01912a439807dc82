/* The sattn command-line program: what its subcommands share.
 *
 *   sattn.c   main: the subcommand table, --help, --version
 *   run.c     sattn run: attention on .npy files
 *   bench.c   sattn bench: runs the benchmark program built beside it
 *   show.c    sattn show: attention weights as a heatmap PNG (heatmap.c draws it)
 *   demo.c    sattn demo: trains a small Transformer (model.c) on sequence reversal
 *   npy.c     .npy files, png.c PNG files (libpng), util.c options and output files
 *
 * The program uses only the public API, include/sattn.h.
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

/* ---- output files: written under a temporary name beside the target, then renamed,
   so a failed run leaves nothing behind and a reader never sees half a file ---- */
typedef struct {
    FILE *f;          /* open for writing while the file is being written */
    char *tmp;        /* the temporary name */
    const char *path; /* the final name */
} cli_outfile;

/* Creates the temporary file. 0, or -1 with a message in err. */
int cli_outfile_open(cli_outfile *o, const char *path, char *err, size_t errlen);
/* Flushes and closes it; on a write error removes it. 0, or -1 with a message. */
int cli_outfile_close(cli_outfile *o, char *err, size_t errlen);
/* Renames a closed file to its final name. 0, or -1 with a message (and removes it). */
int cli_outfile_publish(cli_outfile *o, char *err, size_t errlen);
/* Closes (if open) and removes the temporary file; safe to call twice. */
void cli_outfile_abort(cli_outfile *o);

/* Seconds on a monotonic clock. */
double cli_seconds(void);

#endif /* SATTN_CLI_H */
