/* sattn: the command-line program. One binary, one subcommand per job:
 *
 *   sattn run    attention on .npy files
 *   sattn bench  the benchmark against unfused attention on OpenBLAS
 *   sattn show   attention weights as a heatmap PNG
 *   sattn demo   a small Transformer that learns to reverse sequences
 *   sattn embed  sentence embeddings with a BERT model (libsattn_bert)
 *
 * Every subcommand has --help; errors go to stderr, with the exit status of cli.h.
 */
#include <stdio.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "cli.h"
#include "pngio.h"
#include "sattn.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", cli_run, "attention on .npy files: sattn run --q Q.npy --k K.npy --v V.npy -o OUT.npy"},
    {"bench", cli_bench, "time sattn against unfused attention on OpenBLAS, with a table at the end"},
    {"show", cli_show, "draw attention weights [heads, q, k] as a heatmap PNG, a panel per head"},
    {"demo", cli_demo, "train a small Transformer to reverse sequences; write its attention maps"},
    {"embed", cli_embed, "sentence embeddings of a file's lines with a BERT model (all-MiniLM-L6-v2)"},
};
enum { NCOMMANDS = sizeof commands / sizeof *commands };

static void usage(FILE *f)
{
    fprintf(f, "usage: sattn COMMAND [options]      (sattn COMMAND --help: the options of one)\n\n"
               "Fused self-attention on the CPU.\n\nCommands:\n");
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-6s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nOptions:\n  -h, --help   this help\n  --version    version, kernels, GEMM backend, PNG support\n\n%s",
            cli_exit_codes_help);
}

/* The library allocates its scratch (GEMM packs, K/V panels, activations) per call
   and frees it after. glibc serves blocks that large with mmap and gives them back at
   once, so every call faults its pages in again. A program that makes call after call
   keeps them instead: blocks up to 256 MiB from the heap, and up to 1 GiB of freed heap
   kept for the next call. Measured on `sattn embed` of 200 texts (Zen 5 guest): 340k
   page faults and 5.7 s of CPU time before, 166k and 4.6 s after (BENCHMARKS.md). The library itself never changes the process's
   allocator; a program embedding it may do the same. */
static void keep_freed_memory(void)
{
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

int main(int argc, char **argv)
{
    keep_freed_memory();
    if (argc < 2) {
        usage(stderr);
        return CLI_ERR_USAGE;
    }
    const char *name = argv[1];
    if (cli_is_help(name)) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(name, "--version")) {
        int threads = sattn_get_num_threads();
        printf("sattn %s (%s kernels, %d thread%s, projection GEMMs on %s, PNG %s)\n", sattn_version(), sattn_isa(),
               threads, threads == 1 ? "" : "s", sattn_gemm_backend(), cli_png_available() ? "via libpng" : "not built in");
        return CLI_OK;
    }
    /* "sattn help CMD" is "sattn CMD --help" */
    if (!strcmp(name, "help") && argc >= 3) {
        for (int i = 0; i < NCOMMANDS; i++)
            if (!strcmp(argv[2], commands[i].name)) {
                char help[] = "--help";
                char *args[] = {argv[2], help, NULL};
                return commands[i].run(2, args);
            }
    } else {
        for (int i = 0; i < NCOMMANDS; i++)
            if (!strcmp(name, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "sattn: unknown command '%s'\n\n", argc >= 3 && !strcmp(name, "help") ? argv[2] : name);
    usage(stderr);
    return CLI_ERR_USAGE;
}
