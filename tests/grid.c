/* The curated case grid shared by test_forward and test_backward: sizes, head dims,
 * every feature singly, layouts, storage types, and combinations.
 * Sizes keep the naive double reference fast: the 1000-long cases use one head and
 * head_dim 16. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    tu_named_spec *out;
    int n, max, backward;
} grid;

static void add(grid *g, const char *label, tu_spec s)
{
    if (g->n >= g->max)
        return;
    if (g->backward) {
        /* a 0 stride broadcasts an input, but dq/dk/dv reuse the input strides */
        if (s.lq == TU_BCAST_BATCH) s.lq = TU_DEFAULT;
        if (s.lk == TU_BCAST_BATCH) s.lk = TU_DEFAULT;
        if (s.lv == TU_BCAST_BATCH) s.lv = TU_DEFAULT;
    }
    s.data_seed = (uint64_t)g->n * 7919u + 17u;
    snprintf(g->out[g->n].label, sizeof g->out[g->n].label, "%s", label);
    g->out[g->n].s = s;
    g->n++;
}

/* B=2, Sq=37, Skv=45, Hq=4, D=32: small, with no size a multiple of a block */
static tu_spec base(void)
{
    tu_spec s = tu_spec_basic(37, 45, 32);
    s.batch = 2;
    s.heads_q = 4;
    return s;
}

static const char *causal_name(sattn_causal c)
{
    return c == SATTN_CAUSAL_TOP_LEFT ? "top-left" : c == SATTN_CAUSAL_BOTTOM_RIGHT ? "bottom-right" : "none";
}

int tu_grid(tu_named_spec *out, int max, int backward)
{
    grid g = {out, 0, max, backward};
    char label[80];
    tu_spec s;

    /* ---- sequence lengths: 0, 1, odd, around block sizes, seq_q != seq_kv ---- */
    static const int64_t seqs[][2] = {
        {1, 1},    {7, 7},     {63, 65},  {65, 63},  {257, 257}, {1, 1000}, {1000, 1},
        {7, 257},  {257, 7},   {63, 1},   {1, 63},   {0, 5},     {5, 0},    {0, 0},
        {1000, 1000}, {257, 1000}, {1000, 257},
    };
    for (size_t t = 0; t < sizeof seqs / sizeof seqs[0]; t++) {
        for (int c = 0; c < 3; c++) {
            int big = seqs[t][0] >= 1000 || seqs[t][1] >= 1000;
            s = tu_spec_basic(seqs[t][0], seqs[t][1], 16);
            s.batch = big ? 1 : 2;
            s.heads_q = big ? 1 : 2;
            s.causal = (sattn_causal)c;
            snprintf(label, sizeof label, "seq %lldx%lld causal %s", (long long)seqs[t][0],
                     (long long)seqs[t][1], causal_name(s.causal));
            add(&g, label, s);
        }
    }

    /* ---- head dims, and head_dim_v != head_dim ---- */
    static const int64_t dims[] = {8, 16, 32, 40, 64, 80, 96, 128, 256};
    for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
        s = tu_spec_basic(33, 47, dims[t]);
        s.heads_q = 2;
        s.heads_kv = 1;
        s.causal = t % 2 ? SATTN_CAUSAL_BOTTOM_RIGHT : SATTN_CAUSAL_NONE;
        snprintf(label, sizeof label, "head_dim %lld", (long long)dims[t]);
        add(&g, label, s);
    }
    static const int64_t dimpairs[][2] = {{64, 32}, {32, 64}, {40, 8}, {256, 128}, {16, 80}, {8, 256}, {128, 96}};
    for (size_t t = 0; t < sizeof dimpairs / sizeof dimpairs[0]; t++) {
        s = tu_spec_basic(29, 31, dimpairs[t][0]);
        s.head_dim_v = dimpairs[t][1];
        s.heads_q = 2;
        s.causal = t % 2 ? SATTN_CAUSAL_TOP_LEFT : SATTN_CAUSAL_NONE;
        snprintf(label, sizeof label, "head_dim %lld head_dim_v %lld", (long long)dimpairs[t][0],
                 (long long)dimpairs[t][1]);
        add(&g, label, s);
    }

    /* ---- every feature on its own ---- */
    s = base(), s.heads_kv = 2;                                  add(&g, "gqa 4/2", s);
    s = base(), s.heads_kv = 1;                                  add(&g, "mqa 4/1", s);
    s = base(), s.heads_q = 6, s.heads_kv = 3;                   add(&g, "gqa 6/3", s);
    s = base(), s.causal = SATTN_CAUSAL_TOP_LEFT;                add(&g, "causal top-left", s);
    s = base(), s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;            add(&g, "causal bottom-right", s);
    s = base(), s.seq_q = 45, s.seq_kv = 37, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    add(&g, "causal bottom-right seq_q > seq_kv", s);
    s = base(), s.seq_q = 45, s.seq_kv = 37, s.causal = SATTN_CAUSAL_TOP_LEFT;
    add(&g, "causal top-left seq_q > seq_kv", s);
    s = base(), s.window_left = 5;                               add(&g, "window left 5", s);
    s = base(), s.window_right = 3;                              add(&g, "window right 3", s);
    s = base(), s.window_left = 4, s.window_right = 2;           add(&g, "window 4/2", s);
    s = base(), s.window_left = -3, s.window_right = -1;         add(&g, "window negative = unbounded", s);
    s = base(), s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.window_left = 8;
    add(&g, "local causal (bottom-right + window 8)", s);
    s = base(), s.causal = SATTN_CAUSAL_TOP_LEFT, s.window_left = 10;
    add(&g, "top-left + window 10", s);
    s = base(), s.seq_q = 60, s.seq_kv = 20, s.window_left = 3, s.window_right = 3;
    add(&g, "window, seq_q > seq_kv", s);
    s = base(), s.seqlens_q = 1;                                 add(&g, "seqlens_q", s);
    s = base(), s.seqlens_kv = 1;                                add(&g, "seqlens_kv", s);
    s = base(), s.seqlens_q = 1, s.seqlens_kv = 1, s.batch = 4;  add(&g, "seqlens_q + seqlens_kv", s);
    s = base(), s.seqlens_q = 1, s.seqlens_kv = 1, s.batch = 4, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    add(&g, "seqlens + bottom-right", s);
    s = base(), s.cu_q = 1, s.batch = 3;                         add(&g, "cu_seqlens_q", s);
    s = base(), s.cu_kv = 1, s.batch = 3;                        add(&g, "cu_seqlens_kv", s);
    s = base(), s.cu_q = 1, s.cu_kv = 1, s.batch = 4;            add(&g, "cu_seqlens q + kv", s);
    s = base(), s.cu_q = 1, s.cu_kv = 1, s.seqlens_q = 1, s.seqlens_kv = 1, s.batch = 4;
    add(&g, "cu_seqlens + seqlens", s);
    s = base(), s.cu_q = 1, s.cu_kv = 1, s.batch = 3, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
    add(&g, "cu_seqlens + bottom-right", s);
    s = base(), s.cu_q = 1, s.cu_kv = 1, s.batch = 3, s.lq = TU_BHSD, s.lk = TU_PADDED,
    s.lv = TU_PADDED, s.lo = TU_PADDED;
    add(&g, "cu_seqlens, padded layouts", s);
    s = base(), s.cu_q = 1, s.cu_kv = 1, s.batch = 3, s.lq = TU_BSHD, s.lk = TU_BHSD, s.lv = TU_BSHD,
    s.lo = TU_BHSD, s.cu_garbage_stride = 1;
    add(&g, "cu_seqlens, unused batch stride set", s);
    s = base(), s.bias = 1;                                      add(&g, "bias dense", s);
    s = base(), s.bias = 1, s.bias_neginf = 0.3;                 add(&g, "bias with -inf", s);
    s = base(), s.bias = 1, s.bias_scale = 20.0;                 add(&g, "bias spread 20", s);
    s = base(), s.bias = 3, s.bias_bcast = 0xf;                  add(&g, "bias scalar (all strides 0)", s);
    s = base(), s.bias = 3, s.bias_bcast = 0x7, s.bias_neginf = 0.2;
    add(&g, "bias per key (key padding)", s);
    s = base(), s.bias = 3, s.bias_bcast = 0x1;                  add(&g, "bias per head (batch broadcast)", s);
    s = base(), s.bias = 3, s.bias_bcast = 0x2;                  add(&g, "bias head broadcast", s);
    s = base(), s.bias = 3, s.bias_bcast = 0x8;                  add(&g, "bias key broadcast", s);
    for (int t = 0; t < 3; t++) {
        s = base(), s.bias = 2, s.bias_neginf = 0.1, s.seed = (uint64_t)t;
        snprintf(label, sizeof label, "bias random broadcast %d", t);
        add(&g, label, s);
    }
    s = base(), s.mask = 1, s.mask_zero = 0.3;                   add(&g, "mask dense", s);
    s = base(), s.mask = 1, s.mask_zero = 0.9;                   add(&g, "mask dense 90% off", s);
    s = base(), s.mask = 3, s.mask_bcast = 0x6, s.mask_zero = 0.3;
    add(&g, "mask key padding (head, query broadcast)", s);
    s = base(), s.mask = 3, s.mask_bcast = 0x3, s.mask_zero = 0.4;
    add(&g, "mask (q, kv) shared by batch and heads", s);
    for (int t = 0; t < 2; t++) {
        s = base(), s.mask = 2, s.mask_zero = 0.3;
        snprintf(label, sizeof label, "mask random broadcast %d", t);
        add(&g, label, s);
    }
    s = base(), s.alibi = 1;                                     add(&g, "alibi", s);
    s = base(), s.alibi = 1, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.seq_q = 20;
    add(&g, "alibi + bottom-right", s);
    s = base(), s.softcap = 5.0f;                                add(&g, "softcap 5", s);
    s = base(), s.softcap = 0.5f, s.qk_scale = 3.0;              add(&g, "softcap 0.5, large scores", s);
    s = base(), s.dropout_p = 0.1f, s.seed = 1;                  add(&g, "dropout 0.1", s);
    s = base(), s.dropout_p = 0.5f, s.seed = 0xdeadbeefcafef00dull; add(&g, "dropout 0.5", s);
    s = base(), s.dropout_p = 0.9f, s.seed = 3;                  add(&g, "dropout 0.9", s);
    s = base(), s.scale = 0.05f;                                 add(&g, "scale 0.05", s);
    s = base(), s.scale = 1.0f, s.qk_scale = 0.5;                add(&g, "scale 1", s);
    s = base(), s.qk_scale = 4.0;                                add(&g, "large scores (qk spread 4)", s);

    /* ---- layouts ---- */
    s = base(), s.lq = TU_BSHD, s.lk = TU_BSHD, s.lv = TU_BSHD, s.lo = TU_BSHD;
    add(&g, "layout bshd explicit", s);
    s = base(), s.lq = TU_BHSD, s.lk = TU_BHSD, s.lv = TU_BHSD, s.lo = TU_BHSD;
    add(&g, "layout bhsd", s);
    s = base(), s.lq = TU_PADDED, s.lk = TU_PADDED, s.lv = TU_PADDED, s.lo = TU_PADDED;
    add(&g, "layout padded", s);
    s = base(), s.lq = TU_BHSD, s.lk = TU_PADDED, s.lv = TU_BSHD, s.lo = TU_PADDED, s.heads_kv = 2;
    add(&g, "layout mixed, gqa", s);
    s = base(), s.lk = TU_BCAST_BATCH, s.lv = TU_BCAST_BATCH;
    add(&g, "k, v batch stride 0 (broadcast)", s);
    s = base(), s.lq = TU_BCAST_BATCH;
    add(&g, "q batch stride 0 (broadcast)", s);

    /* ---- storage types ---- */
    for (int dt = 1; dt <= 2; dt++) {
        const char *n = dt == 1 ? "f16" : "bf16";
        sattn_dtype d = (sattn_dtype)dt;
        s = base(), s.dtype = d;
        snprintf(label, sizeof label, "%s plain", n), add(&g, label, s);
        s = base(), s.dtype = d, s.heads_kv = 2, s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
        snprintf(label, sizeof label, "%s gqa bottom-right", n), add(&g, label, s);
        s = base(), s.dtype = d, s.lq = TU_PADDED, s.lk = TU_BHSD, s.lv = TU_PADDED, s.lo = TU_BHSD;
        snprintf(label, sizeof label, "%s layouts", n), add(&g, label, s);
        s = base(), s.dtype = d, s.dropout_p = 0.3f, s.seed = 5;
        snprintf(label, sizeof label, "%s dropout", n), add(&g, label, s);
        s = tu_spec_basic(65, 63, 128), s.dtype = d, s.heads_q = 2;
        snprintf(label, sizeof label, "%s head_dim 128", n), add(&g, label, s);
        s = tu_spec_basic(40, 50, 40), s.dtype = d, s.head_dim_v = 24, s.heads_q = 2;
        snprintf(label, sizeof label, "%s head_dim_v != head_dim", n), add(&g, label, s);
        s = base(), s.dtype = d, s.cu_q = 1, s.cu_kv = 1, s.seqlens_q = 1, s.seqlens_kv = 1, s.batch = 3;
        snprintf(label, sizeof label, "%s varlen", n), add(&g, label, s);
        s = base(), s.dtype = d, s.bias = 2, s.bias_neginf = 0.1, s.mask = 2, s.mask_zero = 0.2,
        s.alibi = 1, s.softcap = 8.0f;
        snprintf(label, sizeof label, "%s bias mask alibi softcap", n), add(&g, label, s);
        s = tu_spec_basic(257, 1000, 16), s.dtype = d;
        snprintf(label, sizeof label, "%s 257x1000", n), add(&g, label, s);
        /* head dims past the kernels' fixed buffers and vector widths (up to the 4096
           the library accepts): decode rows, a few rows, and a block's worth */
        s = tu_spec_basic(1, 130, 4096), s.dtype = d;
        snprintf(label, sizeof label, "%s decode head_dim 4096", n), add(&g, label, s);
        s = tu_spec_basic(1, 600, 1000), s.dtype = d;
        snprintf(label, sizeof label, "%s decode head_dim 1000", n), add(&g, label, s);
        s = tu_spec_basic(70, 70, 1000), s.dtype = d;
        snprintf(label, sizeof label, "%s 70x70 head_dim 1000", n), add(&g, label, s);
    }

    /* ---- decode (forward only: the backward has no split path) ---- */
    /* few query rows per kv head (group x seq_q <= 8): the split path, with K and V rows
       contiguous (BHSD) so that runs of fully visible tiles are read as spans, and bf16
       with head dims a multiple of 32 in pair order; then what breaks a run (window
       edges, padded keys, masks) or keeps the tile loop (score rules, dropout) */
    for (int dt = 0; dt <= 2 && !g.backward; dt++) {
        const char *n = dt == 0 ? "f32" : dt == 1 ? "f16" : "bf16";
        sattn_dtype d = (sattn_dtype)dt;
        s = tu_spec_basic(1, 5000, 128), s.dtype = d, s.heads_q = 8, s.heads_kv = 2;
        s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.lk = TU_BHSD, s.lv = TU_BHSD;
        snprintf(label, sizeof label, "%s decode 5000 keys gqa 8/2 bhsd", n), add(&g, label, s);
        s = tu_spec_basic(2, 3000, 64), s.dtype = d, s.heads_q = 4, s.heads_kv = 1, s.batch = 2;
        s.causal = SATTN_CAUSAL_BOTTOM_RIGHT, s.window_left = 1000, s.seqlens_kv = 1, s.nan_pad = 1;
        s.lk = TU_BHSD, s.lv = TU_BHSD;
        snprintf(label, sizeof label, "%s decode window, padded keys", n), add(&g, label, s);
        s = tu_spec_basic(1, 700, 96), s.dtype = d, s.heads_q = 4, s.heads_kv = 2, s.alibi = 1, s.softcap = 6.0f;
        s.lk = TU_BHSD, s.lv = TU_BHSD;
        snprintf(label, sizeof label, "%s decode alibi softcap d=96", n), add(&g, label, s);
        s = tu_spec_basic(1, 900, 64), s.dtype = d, s.heads_q = 4, s.heads_kv = 1, s.mask = 1, s.mask_zero = 0.3;
        s.nan_pad = 1, s.lk = TU_BHSD, s.lv = TU_BHSD;
        snprintf(label, sizeof label, "%s decode mask", n), add(&g, label, s);
        s = tu_spec_basic(1, 800, 64), s.dtype = d, s.heads_q = 2, s.head_dim_v = 32, s.dropout_p = 0.2f;
        s.seed = 11, s.lk = TU_BHSD, s.lv = TU_BHSD;
        snprintf(label, sizeof label, "%s decode dropout, head_dim_v 32", n), add(&g, label, s);
        s = tu_spec_basic(1, 2100, 160), s.dtype = d, s.heads_q = 3, s.heads_kv = 3, s.head_dim_v = 96;
        s.lk = TU_BHSD, s.lv = TU_PADDED;
        snprintf(label, sizeof label, "%s decode 2100 keys, v rows apart", n), add(&g, label, s);
    }

    /* ---- combinations ---- */
    for (int t = 0; t < 9; t++) {
        s = base();
        s.dtype = (sattn_dtype)(t % 3);
        s.batch = 3;
        s.heads_q = 4;
        s.heads_kv = t % 2 ? 2 : 1;
        s.head_dim = t % 2 ? 40 : 64;
        s.head_dim_v = t % 3 ? 24 : 0;
        s.causal = (sattn_causal)(t % 3);
        s.window_left = t % 4 ? 9 : 0;
        s.window_right = t % 4 == 1 ? 3 : 0;
        s.seqlens_q = t % 2, s.seqlens_kv = 1;
        s.cu_q = t % 3 == 0, s.cu_kv = t % 2 == 0;
        s.bias = 2, s.bias_neginf = 0.05;
        s.mask = t % 2 ? 2 : 0, s.mask_zero = 0.2;
        s.alibi = t % 2 == 0;
        s.softcap = t % 3 == 1 ? 10.0f : 0.0f;
        s.dropout_p = t % 3 == 2 ? 0.2f : 0.0f, s.seed = (uint64_t)t * 1000003u;
        s.scale = t % 4 == 3 ? 0.1f : 0.0f;
        s.lq = (tu_layout)(t % 4), s.lk = (tu_layout)((t + 1) % 4);
        s.lv = (tu_layout)((t + 2) % 4), s.lo = (tu_layout)((t + 3) % 4);
        s.nan_pad = 1;
        snprintf(label, sizeof label, "combination %d", t);
        add(&g, label, s);
    }
    return g.n;
}

int tu_grid_main(int argc, char **argv, int backward, const char *test_name)
{
    enum { MAX_CASES = 512 };
    tu_begin();
    tu_named_spec *cases = malloc(sizeof(tu_named_spec) * MAX_CASES);
    tu_stats all = {0};
    if (!cases) return 1;
    int n = tu_grid(cases, MAX_CASES, backward);
    int first = argc > 1 ? atoi(argv[1]) : 0, last = argc > 2 ? atoi(argv[2]) : n - 1;
    for (int t = first; t <= last && t < n; t++) {
        tu_case c;
        tu_stats st = {0};
        tu_tol tol = tu_tolerance(cases[t].s.dtype);
        tu_case_init(&c, &cases[t].s);
        int ok = tu_run_case(&c, backward, &tol, cases[t].label, &st);
        tu_check(ok, "%s case %d: %s", backward ? "backward" : "forward", t, cases[t].label);
        printf("%-4s %3d %-44s err/tol out %.3f lse %.3f", ok ? "ok" : "FAIL", t, cases[t].label, st.worst_out,
               st.worst_lse);
        if (backward) printf(" grad %.3f", st.worst_grad);
        printf("\n");
        if (st.worst_out > all.worst_out) all.worst_out = st.worst_out;
        if (st.worst_lse > all.worst_lse) all.worst_lse = st.worst_lse;
        if (st.worst_grad > all.worst_grad) all.worst_grad = st.worst_grad;
        tu_case_free(&c);
    }
    printf("%d cases; worst error / tolerance: out %.3f, lse %.3f", n, all.worst_out, all.worst_lse);
    if (backward) printf(", grad %.3f", all.worst_grad);
    printf("\n");
    free(cases);
    return tu_summary(test_name);
}
