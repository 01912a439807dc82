/* sattn show: attention weights from a .npy file as a heatmap PNG, one panel per head. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "heatmap.h"
#include "npy.h"
#include "pngio.h"
#include "show.h"

static const char show_help[] =
    "usage: sattn show WEIGHTS.npy [-o OUT.png] [options]\n"
    "\n"
    "Draws attention weights as a heatmap PNG: a panel per head, rows are queries,\n"
    "columns keys, in the viridis colour map (dark purple 0, yellow the largest value,\n"
    "grey NaN). WEIGHTS.npy is float32, float16 or float64 of shape [seq_q, seq_kv],\n"
    "[heads, seq_q, seq_kv] or [batch, heads, seq_q, seq_kv], as sattn_attention_weights\n"
    "and sattn_mha_attention_weights return them.\n"
    "\n"
    "  -o, --out FILE    the PNG (default: WEIGHTS with .npy replaced by .png)\n"
    "  --labels FILE     token labels, one per line, one per key (column); the rows get\n"
    "                    the last seq_q of them (the same ones in self-attention)\n"
    "  --scale N         pixels per cell, 1 to 64 (default: about 256 pixels a panel)\n"
    "  --batch I         the sequence of a 4-D array to draw (default 0)\n"
    "  --cols N          panels per row (default: up to 4, more for many heads)\n"
    "  --vmax X          the value drawn brightest (default: the largest)\n"
    "  --per-panel       each panel coloured from 0 to its own largest value\n"
    "  --title TEXT      a title over the panels\n"
    "\n"
    "Labels and titles use a 5 x 7 pixel font; a label is drawn every ceil(8 / scale)\n"
    "cells so that they never overlap.\n"
    "\n"
    "Example:\n"
    "  sattn show sattn-demo/block1.npy --labels sattn-demo/tokens.txt --scale 8 -o b1.png\n"
    "\n";

static const char CMD[] = "show";

/* ---- labels ---- */

void show_labels_free(char **labels, int n)
{
    for (int i = 0; labels && i < n; i++) free(labels[i]);
    free(labels);
}

/* Lines of path (without their line ends) into *labels; *n their count. The file must
   be text: at most `most` lines of at most CLI_LABEL_MAX bytes and no NUL byte, so that
   a wrong path (/dev/zero, a binary file) is refused at once instead of read forever. */
#define CLI_LABEL_MAX 1024
static int read_labels(const char *path, int most, char ***labels, int *n)
{
    *labels = NULL, *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return cli_error(CMD, "cannot open %s: %s", path, strerror(errno)), CLI_ERR_IO;
    char line[CLI_LABEL_MAX + 1];
    int count = 0, status = CLI_OK, c = 0;
    size_t len = 0;
    *labels = calloc((size_t)most + 1, sizeof **labels);
    if (!*labels) status = CLI_ERR_RUNTIME, cli_error(CMD, "out of memory");
    /* a line ends at '\n' or, if it holds anything, at the end of the file */
    while (status == CLI_OK && ((c = getc(f)) != EOF || len > 0)) {
        if (c == '\0') {
            status = CLI_ERR_INPUT;
            cli_error(CMD, "%s: line %d holds a NUL byte: the labels must be text, one per line", path, count + 1);
        } else if (c != '\n' && c != EOF) {
            if (len == CLI_LABEL_MAX) {
                status = CLI_ERR_INPUT;
                cli_error(CMD, "%s: line %d is longer than %d bytes: the labels must be short text, one per line",
                          path, count + 1, CLI_LABEL_MAX);
            } else {
                line[len++] = (char)c;
            }
        } else if (count == most) {
            status = CLI_ERR_INPUT;
            cli_error(CMD, "%s has more than %d lines; the weights have %d keys (one label per key)", path, most,
                      most);
        } else {
            while (len > 0 && line[len - 1] == '\r') len--;
            line[len] = '\0', len = 0;
            if (!((*labels)[count] = strdup(line))) status = CLI_ERR_RUNTIME, cli_error(CMD, "out of memory");
            else count++;
            if (c == EOF) break;
        }
    }
    if (status == CLI_OK && ferror(f)) status = CLI_ERR_IO, cli_error(CMD, "cannot read %s", path);
    fclose(f);
    *n = count;
    if (status) show_labels_free(*labels, count), *labels = NULL, *n = 0;
    return status;
}

/* ---- writing ---- */

int show_write_png_to(const char *cmd, const heatmap *hm, cli_outfile *o, int *width, int *height)
{
    char err[512];
    uint8_t *rgb = NULL;
    int status = CLI_ERR_RUNTIME;
    if (heatmap_render(hm, &rgb, width, height, err, sizeof err)) goto fail;
    status = CLI_ERR_IO;
    if (cli_png_write(o->f, *width, *height, rgb, err, sizeof err)) {
        status = cli_png_available() ? CLI_ERR_IO : CLI_ERR_RUNTIME;
        goto fail;
    }
    if (cli_outfile_close(o, err, sizeof err) || cli_outfile_publish(o, err, sizeof err)) goto fail;
    free(rgb);
    return CLI_OK;
fail:
    cli_error(cmd, "%s", err);
    cli_outfile_abort(o);
    free(rgb);
    return status;
}

int show_write_png(const char *cmd, const heatmap *hm, const char *path, int *width, int *height)
{
    char err[512];
    cli_outfile o;
    if (cli_outfile_open(&o, path, err, sizeof err)) {
        cli_error(cmd, "%s", err);
        return CLI_ERR_IO;
    }
    return show_write_png_to(cmd, hm, &o, width, height);
}

/* ---- the command ---- */

int cli_show(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *labels_path = NULL, *title = NULL, *val;
    long long scale = 0, batch = 0, cols = 0;
    double vmax = 0;
    int per_panel = 0, r;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(show_help, stdout);
            fputs(cli_exit_codes_help, stdout);
            return CLI_OK;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--out", "-o", &val))) {
            if (r < 0) return CLI_ERR_USAGE;
            out = val;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--labels", NULL, &val))) {
            if (r < 0) return CLI_ERR_USAGE;
            labels_path = val;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--title", NULL, &val))) {
            if (r < 0) return CLI_ERR_USAGE;
            title = val;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--scale", NULL, &val))) {
            if (r < 0 || cli_parse_int(CMD, "--scale", val, 1, 64, &scale)) return CLI_ERR_USAGE;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--batch", NULL, &val))) {
            if (r < 0 || cli_parse_int(CMD, "--batch", val, 0, INT64_MAX, &batch)) return CLI_ERR_USAGE;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--cols", NULL, &val))) {
            if (r < 0 || cli_parse_int(CMD, "--cols", val, 1, 1024, &cols)) return CLI_ERR_USAGE;
        } else if ((r = cli_option(CMD, argc, argv, &i, "--vmax", NULL, &val))) {
            if (r < 0 || cli_parse_float(CMD, "--vmax", val, 1e-30, 3.4e38, &vmax)) return CLI_ERR_USAGE;
        } else if (!strcmp(argv[i], "--per-panel")) {
            per_panel = 1;
        } else if (argv[i][0] != '-' && !in) {
            in = argv[i];
        } else {
            return cli_unknown(CMD, argv[i]);
        }
    }
    if (!in) {
        cli_error(CMD, "needs a .npy file of attention weights (see sattn show --help)");
        return CLI_ERR_USAGE;
    }
    if (!cli_png_available()) {
        char err[512];
        cli_png_write(NULL, 0, 0, NULL, err, sizeof err);
        cli_error(CMD, "%s", err);
        return CLI_ERR_RUNTIME;
    }

    char *default_out = NULL, **labels = NULL, **panel_titles = NULL, shape[256], err[512];
    int nlabels = 0, status;
    int64_t rows = 0, kcols = 0, heads = 0, nbatch = 0;
    float *w = NULL;
    if (!out) { /* WEIGHTS with .npy replaced by .png */
        size_t n = strlen(in);
        if (!(default_out = malloc(n + 5))) return cli_error(CMD, "out of memory"), CLI_ERR_RUNTIME;
        memcpy(default_out, in, n + 1);
        if (n > 4 && !strcmp(in + n - 4, ".npy")) default_out[n - 4] = '\0';
        strcat(default_out, ".png");
        out = default_out;
    }
    /* the output first: a path that cannot be written is refused before any work */
    cli_outfile of;
    if (cli_outfile_open(&of, out, err, sizeof err)) {
        cli_error(CMD, "%s", err);
        free(default_out);
        return CLI_ERR_IO;
    }
    npy_array a;
    npy_status st = npy_read(in, &a, err, sizeof err);
    if (st) {
        cli_error(CMD, "%s", err);
        cli_outfile_abort(&of);
        free(default_out);
        return st == NPY_ERR_IO ? CLI_ERR_IO : st == NPY_ERR_NOMEM ? CLI_ERR_RUNTIME : CLI_ERR_INPUT;
    }
    status = CLI_ERR_INPUT;
    npy_shape_str(&a, shape, sizeof shape);
    if (!npy_is_float(a.type) || a.ndim < 2 || a.ndim > 4) {
        cli_error(CMD, "%s: expected float weights [seq_q, seq_kv], [heads, seq_q, seq_kv] or [batch, heads, "
                  "seq_q, seq_kv], not %s %s", in, npy_type_name(a.type), shape);
        goto done;
    }
    rows = a.shape[a.ndim - 2], kcols = a.shape[a.ndim - 1];
    heads = a.ndim >= 3 ? a.shape[a.ndim - 3] : 1, nbatch = a.ndim == 4 ? a.shape[0] : 1;
    if (rows < 1 || kcols < 1 || heads < 1 || nbatch < 1) {
        cli_error(CMD, "%s: nothing to draw in shape %s", in, shape);
        goto done;
    }
    if (batch >= nbatch) {
        cli_error(CMD, "--batch %lld: %s has %lld sequences", batch, in, (long long)nbatch);
        status = CLI_ERR_USAGE;
        goto done;
    }
    if (heads > 4096 || rows > 65536 || kcols > 65536) {
        cli_error(CMD, "%s: %s is too large to draw", in, shape);
        goto done;
    }
    if (labels_path) {
        if ((status = read_labels(labels_path, (int)kcols, &labels, &nlabels))) goto done;
        if (nlabels != kcols) {
            cli_error(CMD, "%s has %d labels; the weights have %lld keys (one label per line, per key)",
                      labels_path, nlabels, (long long)kcols);
            status = CLI_ERR_INPUT;
            goto done;
        }
    }
    status = CLI_ERR_RUNTIME;
    const size_t cells = (size_t)(heads * rows * kcols);
    if (!(w = malloc(cells * sizeof *w)) || !(panel_titles = calloc((size_t)heads, sizeof *panel_titles))) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < cells; i++) w[i] = npy_get_f32(&a, (int64_t)((size_t)batch * cells + i));
    for (int64_t h = 0; a.ndim >= 3 && h < heads; h++) {
        if (!(panel_titles[h] = malloc(32))) {
            cli_error(CMD, "out of memory");
            goto done;
        }
        snprintf(panel_titles[h], 32, "head %lld", (long long)h);
    }
    heatmap hm;
    memset(&hm, 0, sizeof hm);
    hm.panels = (int)heads, hm.rows = (int)rows, hm.cols = (int)kcols, hm.w = w;
    hm.grid_cols = (int)cols, hm.per_panel = per_panel, hm.vmax = (float)vmax, hm.title = title;
    int64_t side = rows > kcols ? rows : kcols;
    hm.scale = scale ? (int)scale : side >= 256 ? 1 : side >= 32 ? (int)(256 / side) : 8;
    hm.panel_titles = a.ndim >= 3 ? (const char *const *)panel_titles : NULL;
    hm.col_labels = (const char *const *)labels;
    hm.row_labels = labels && rows <= kcols ? (const char *const *)labels + (kcols - rows) : NULL;
    int width, height;
    const int to_stdout = cli_outfile_is_stdout(&of);
    if ((status = show_write_png_to(CMD, &hm, &of, &width, &height))) goto done;
    fprintf(to_stdout ? stderr : stdout, "wrote %s: %lld panel%s of %lld x %lld cells, %d x %d pixels\n", out, (long long)heads,
           heads > 1 ? "s" : "", (long long)rows, (long long)kcols, width, height);
    status = CLI_OK;
done:
    cli_outfile_abort(&of);
    show_labels_free(labels, nlabels);
    show_labels_free(panel_titles, (int)heads);
    free(w);
    free(default_out);
    npy_free(&a);
    return status;
}
