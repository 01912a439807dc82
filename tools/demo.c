/* sattn demo: a small Transformer learns to reverse sequences, and shows where it looks.
 *
 * The task: 32 random symbols in, the same 32 reversed out, a prediction at every
 * position. The answer at position i is the symbol at position 31 - i, so the first
 * outputs need the last inputs: no local rule solves it, only attention that learned
 * to look across the whole sequence, and the learned maps show the anti-diagonal.
 *
 * Everything is C: sattn's multi-head layer for the attention, model.c for the
 * embeddings, layernorms, MLPs, head, loss and Adam.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "heatmap.h"
#include "model.h"
#include "npy.h"
#include "pngio.h"
#include "sattn.h"
#include "show.h"

enum {
    VOCAB = 16,       /* symbols A..P */
    SEQ = 32,         /* tokens per sequence */
    HELD_OUT = 512,   /* held-out sequences, never trained on */
    DEFAULT_STEPS = 300,
    DEFAULT_BATCH = 32,
};

static const char demo_help[] =
    "usage: sattn demo [--steps N] [--seed S] [--out DIR] [--batch B] [--threads N]\n"
    "\n"
    "Trains a small Transformer encoder to reverse sequences of 32 random symbols\n"
    "(16 kinds), entirely in C: token and position embeddings, 2 blocks of pre-norm\n"
    "multi-head self-attention (sattn's layer, 4 heads) and a ReLU MLP, a linear head\n"
    "with cross-entropy at every position, Adam with warmup and cosine decay.\n"
    "Output i is input 31 - i: only attention across the whole sequence solves it.\n"
    "\n"
    "A progress bar on stderr shows loss, accuracy and speed; every tenth of the run a\n"
    "line on stdout gives the step, training loss and accuracy, the accuracy on 512\n"
    "held-out sequences, and the training time so far (evaluation not counted). At the\n"
    "end the attention maps of one held-out sequence go to DIR: attention.png (every\n"
    "block and head), blockL.png and blockL.npy ([heads, 32, 32]) per block, and\n"
    "tokens.txt (its symbols, for sattn show --labels).\n"
    "\n"
    "  --steps N      training steps (default 300; 99% held-out accuracy comes after\n"
    "                 about 90, two seconds of training on two idle cores)\n"
    "  --seed S       weights, training data and held-out data (default 1)\n"
    "  --out DIR      where the maps go (default sattn-demo; created if missing)\n"
    "  --batch B      sequences per step (default 32)\n"
    "  --threads N    threads (default: every core)\n"
    "\n"
    "The timings assume idle cores: where other programs keep a core busy, OpenMP's\n"
    "threads wait on each other; --threads 1 (or OMP_WAIT_POLICY=passive) avoids it.\n"
    "\n";

static const char CMD[] = "demo";

/* ---- data: splitmix64 streams, one for training and one for held-out ---- */

static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* n sequences: tokens uniform in [0, VOCAB), targets the tokens reversed */
static void make_sequences(uint64_t *rng, int n, int *tokens, int *targets)
{
    for (int b = 0; b < n; b++) {
        int *t = tokens + b * SEQ, *y = targets + b * SEQ;
        for (int i = 0; i < SEQ; i++) t[i] = (int)(next_u64(rng) % VOCAB);
        for (int i = 0; i < SEQ; i++) y[i] = t[SEQ - 1 - i];
    }
}

/* Accuracy over the held-out set: of tokens, and of whole sequences. */
static int evaluate(model *m, int batch, const int *tokens, const int *targets, double *tok_acc, double *seq_acc,
                    float *loss)
{
    int *pred = malloc((size_t)batch * SEQ * sizeof *pred);
    if (!pred) return -1;
    long ok_tokens = 0, ok_seqs = 0;
    double L = 0;
    for (int b0 = 0; b0 < HELD_OUT; b0 += batch) {
        int nb = HELD_OUT - b0 < batch ? HELD_OUT - b0 : batch, correct;
        float l;
        if (model_forward(m, tokens + b0 * SEQ, targets + b0 * SEQ, nb, &l, &correct, pred)) {
            free(pred);
            return -1;
        }
        ok_tokens += correct, L += (double)l * nb;
        for (int b = 0; b < nb; b++) {
            int all = 1;
            for (int i = 0; i < SEQ; i++) all &= pred[b * SEQ + i] == targets[(b0 + b) * SEQ + i];
            ok_seqs += all;
        }
    }
    free(pred);
    *tok_acc = (double)ok_tokens / ((double)HELD_OUT * SEQ);
    *seq_acc = (double)ok_seqs / HELD_OUT;
    *loss = (float)(L / HELD_OUT);
    return 0;
}

/* ---- the progress bar (stderr, redrawn in place when it is a terminal) ---- */

typedef struct {
    int tty;
    double t0, last_draw;
} progress;

static void progress_draw(progress *p, int step, int steps, float loss, float acc, double now, int force)
{
    if (!p->tty || (!force && now - p->last_draw < 0.1)) return;
    p->last_draw = now;
    const int width = 24, filled = (int)((long)width * step / steps);
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '-';
    bar[width] = '\0';
    double rate = step / (now - p->t0 > 1e-9 ? now - p->t0 : 1e-9);
    fprintf(stderr, "\r[%s] %d/%d  loss %.4f  acc %5.1f%%  %.1f steps/s  eta %.0fs\033[K", bar, step, steps, loss,
            100.0 * acc, rate, (steps - step) / (rate > 0 ? rate : 1));
    fflush(stderr);
}

static void progress_clear(const progress *p)
{
    if (p->tty) fprintf(stderr, "\r\033[K");
}

/* ---- attention maps ---- */

static int write_maps(model *m, const char *dir, const int *tokens, const model_config *c)
{
    const int H = c->heads, L = c->blocks, N = SEQ;
    char path[4096], err[4096 + 512], sym[SEQ][2];
    const char *labels[SEQ];
    char *titles_mem = NULL;
    const char **titles = NULL;
    float *w = malloc((size_t)L * H * N * N * sizeof *w);
    int status = CLI_ERR_RUNTIME, width, height;
    if (!w || !(titles = calloc((size_t)L * H, sizeof *titles)) || !(titles_mem = malloc((size_t)L * H * 48))) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    for (int i = 0; i < N; i++) sym[i][0] = (char)('A' + tokens[i]), sym[i][1] = '\0', labels[i] = sym[i];
    /* one sequence through the model; its weights per block: (heads, N, N) */
    int target[SEQ], correct;
    float loss;
    for (int i = 0; i < N; i++) target[i] = tokens[N - 1 - i];
    if (model_forward(m, tokens, target, 1, &loss, &correct, NULL)) {
        cli_error(CMD, "forward: %s", sattn_last_error());
        goto done;
    }
    for (int l = 0; l < L; l++)
        if (model_attention(m, l, 0, w + (size_t)l * H * N * N)) {
            cli_error(CMD, "attention weights: %s", sattn_last_error());
            goto done;
        }
    /* tokens.txt */
    snprintf(path, sizeof path, "%s/tokens.txt", dir);
    cli_outfile o = {0};
    status = CLI_ERR_IO;
    if (cli_outfile_open(&o, path, err, sizeof err)) goto io_fail;
    for (int i = 0; i < N; i++) fprintf(o.f, "%s\n", labels[i]);
    if (cli_outfile_close(&o, err, sizeof err) || cli_outfile_publish(&o, err, sizeof err)) goto io_fail;
    /* per block: blockL.npy and blockL.png */
    for (int l = 0; l < L; l++) {
        npy_array a = {NPY_F32, 3, {H, N, N}, (int64_t)H * N * N, w + (size_t)l * H * N * N};
        snprintf(path, sizeof path, "%s/block%d.npy", dir, l);
        if (cli_outfile_open(&o, path, err, sizeof err)) goto io_fail;
        if (npy_write(o.f, &a, 0) != NPY_OK) {
            snprintf(err, sizeof err, "cannot write %s", path);
            cli_outfile_abort(&o);
            goto io_fail;
        }
        if (cli_outfile_close(&o, err, sizeof err) || cli_outfile_publish(&o, err, sizeof err)) goto io_fail;
        for (int h = 0; h < H; h++) {
            titles[l * H + h] = titles_mem + (size_t)(l * H + h) * 48;
            snprintf(titles_mem + (size_t)(l * H + h) * 48, 48, "block %d head %d", l, h);
        }
        if (!cli_png_available()) continue;
        heatmap hm;
        memset(&hm, 0, sizeof hm);
        hm.panels = H, hm.rows = N, hm.cols = N, hm.w = a.data, hm.grid_cols = H, hm.scale = 8;
        hm.panel_titles = titles + l * H, hm.row_labels = labels, hm.col_labels = labels;
        snprintf(path, sizeof path, "%s/block%d.png", dir, l);
        if ((status = show_write_png(CMD, &hm, path, &width, &height))) goto done;
    }
    status = CLI_OK;
    if (!cli_png_available()) goto done;
    /* every block and head in one picture: a row per block */
    heatmap hm;
    memset(&hm, 0, sizeof hm);
    hm.title = "reversing 32 symbols: attention of a held-out sequence (rows: queries, columns: keys)";
    hm.panels = L * H, hm.rows = N, hm.cols = N, hm.w = w, hm.grid_cols = H, hm.scale = 6;
    hm.panel_titles = titles, hm.row_labels = labels, hm.col_labels = labels;
    snprintf(path, sizeof path, "%s/attention.png", dir);
    if ((status = show_write_png(CMD, &hm, path, &width, &height))) goto done;
    status = CLI_OK;
    goto done;
io_fail:
    cli_error(CMD, "%s", err);
    status = CLI_ERR_IO;
done:
    free(w), free(titles), free(titles_mem);
    return status;
}

/* ---- the command ---- */

int cli_demo(int argc, char **argv)
{
    long long steps = DEFAULT_STEPS, seed = 1, batch = DEFAULT_BATCH, threads = 0;
    const char *dir = "sattn-demo", *val;
    int r;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(demo_help, stdout);
            fputs(cli_exit_codes_help, stdout);
            return CLI_OK;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--steps", NULL, &val))) {
            if (r < 0 || cli_parse_int(CMD, "--steps", val, 1, 100000000, &steps)) return CLI_ERR_USAGE;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--seed", NULL, &val))) {
            if (r < 0 || cli_parse_int(CMD, "--seed", val, 0, INT64_MAX, &seed)) return CLI_ERR_USAGE;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--batch", NULL, &val))) {
            if (r < 0 || cli_parse_int(CMD, "--batch", val, 1, 4096, &batch)) return CLI_ERR_USAGE;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--threads", NULL, &val))) {
            if (r < 0 || cli_parse_int(CMD, "--threads", val, 1, 4096, &threads)) return CLI_ERR_USAGE;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--out", "-o", &val))) {
            if (r < 0) return CLI_ERR_USAGE;
            dir = val;
        } else {
            return cli_unknown(CMD, argv[i]);
        }
    }
    if (!cli_png_available())
        fprintf(stderr, "sattn demo: built without libpng: the attention maps are written as .npy only\n");
    if (strlen(dir) > 4000) {
        cli_error(CMD, "--out: the directory name is too long");
        return CLI_ERR_USAGE;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        cli_error(CMD, "cannot create %s: %s", dir, strerror(errno));
        return CLI_ERR_IO;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        cli_error(CMD, "%s is not a directory", dir);
        return CLI_ERR_IO;
    }
    /* checked before training, not found out after it */
    if (access(dir, W_OK | X_OK) != 0) {
        cli_error(CMD, "cannot write into %s: %s", dir, strerror(errno));
        return CLI_ERR_IO;
    }
    if (threads) sattn_set_num_threads((int)threads);

    const model_config cfg = {VOCAB, SEQ, 64, 4, 2, 256};
    const int B = (int)batch, evals = 10;
    char err[256];
    model *m = NULL;
    int *tokens = malloc((size_t)B * SEQ * sizeof(int)), *targets = malloc((size_t)B * SEQ * sizeof(int));
    int *ho_tokens = malloc((size_t)HELD_OUT * SEQ * sizeof(int)), *ho_targets = malloc((size_t)HELD_OUT * SEQ * sizeof(int));
    int status = CLI_ERR_RUNTIME;
    if (!tokens || !targets || !ho_tokens || !ho_targets) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    if (model_create(&m, &cfg, B > 64 ? B : 64, (uint64_t)seed, err, sizeof err)) {
        cli_error(CMD, "%s", err);
        goto done;
    }
    uint64_t train_rng = (uint64_t)seed * 2 + 1, held_rng = ~(uint64_t)seed;
    make_sequences(&held_rng, HELD_OUT, ho_tokens, ho_targets);

    printf("sattn demo: reverse 32 symbols (16 kinds); %d blocks, embed %d, %d heads, MLP %d, %lld parameters;\n"
           "batch %d, %lld steps, seed %lld, %d threads (%s kernels)\n",
           cfg.blocks, cfg.embed, cfg.heads, cfg.hidden, (long long)model_parameters(m), B, steps, seed,
           sattn_get_num_threads(), sattn_isa());
    printf("%6s %9s %10s %14s %8s\n", "step", "loss", "train acc", "held-out acc", "time");
    fflush(stdout);

    const float lr_max = 2e-3f;
    const long warmup = steps / 10 < 100 ? steps / 10 : 100;
    progress bar = {isatty(fileno(stderr)), cli_seconds(), 0};
    double train_time = 0, eval_time = 0, t99 = -1, tok_acc = 0, seq_acc = 0;
    long step99 = -1;
    float loss = 0, shown_loss = 0, shown_acc = 0;
    for (long step = 1; step <= steps; step++) {
        /* linear warmup, then cosine decay to a tenth */
        float lr = step <= warmup ? lr_max * (float)step / (float)(warmup + 1)
                                  : lr_max * (0.1f + 0.45f * (1.0f + cosf(3.14159265f * (float)(step - warmup) /
                                                                          (float)(steps - warmup + 1))));
        int correct;
        double t0 = cli_seconds();
        make_sequences(&train_rng, B, tokens, targets);
        if (model_forward(m, tokens, targets, B, &loss, &correct, NULL) || model_backward(m)) {
            progress_clear(&bar);
            cli_error(CMD, "training step %ld: %s", step, sattn_last_error());
            goto done;
        }
        model_adam(m, lr, 1.0f);
        double t1 = cli_seconds();
        train_time += t1 - t0;
        float acc = (float)correct / (float)(B * SEQ);
        shown_loss = step == 1 ? loss : 0.9f * shown_loss + 0.1f * loss;
        shown_acc = step == 1 ? acc : 0.9f * shown_acc + 0.1f * acc;
        /* held-out accuracy: at each report, and once the training batches are 90% right,
           every 10 steps until it first reaches 99% (its time is kept out of the training
           time) */
        int report = step % (steps / evals > 0 ? steps / evals : 1) == 0 || step == steps || step == 1;
        if (report || (step99 < 0 && step % 10 == 0 && acc >= 0.9f)) {
            float ho_loss;
            if (evaluate(m, B > 64 ? B : 64, ho_tokens, ho_targets, &tok_acc, &seq_acc, &ho_loss)) {
                progress_clear(&bar);
                cli_error(CMD, "evaluation: %s", sattn_last_error());
                goto done;
            }
            eval_time += cli_seconds() - t1;
            if (tok_acc >= 0.99 && step99 < 0) step99 = step, t99 = train_time;
        }
        if (report) {
            progress_clear(&bar);
            printf("%6ld %9.4f %9.1f%% %13.2f%% %7.1fs\n", step, loss, 100.0 * acc, 100.0 * tok_acc, train_time);
            fflush(stdout);
        }
        progress_draw(&bar, (int)step, (int)steps, shown_loss, shown_acc, cli_seconds(), report);
    }
    progress_clear(&bar);
    printf("held-out accuracy: %.2f%% of tokens, %.1f%% of whole sequences (%d sequences)\n", 100.0 * tok_acc,
           100.0 * seq_acc, HELD_OUT);
    if (step99 > 0) printf("99%% held-out token accuracy reached at step %ld, after %.1f s of training\n", step99, t99);
    else printf("99%% held-out token accuracy not reached in %lld steps\n", steps);
    printf("trained in %.1f s (%.1f steps/s), evaluated in %.1f s\n", train_time, (double)steps / train_time,
           eval_time);
    if ((status = write_maps(m, dir, ho_tokens, &cfg))) goto done;
    if (cli_png_available())
        printf("attention maps of a held-out sequence: %s/attention.png, %s/block*.png, %s/block*.npy\n", dir, dir,
               dir);
    else
        printf("attention maps of a held-out sequence: %s/block*.npy (no PNG: built without libpng)\n", dir);
    status = CLI_OK;
done:
    model_free(m);
    free(tokens), free(targets), free(ho_tokens), free(ho_targets);
    return status;
}
