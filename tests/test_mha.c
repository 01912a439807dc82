/* test_mha: the multi-head self-attention layer.
 *
 * The oracle is a layer written here in double precision from the header's
 * formulas (Q = x Wqᵀ + bq, ..., y = O Woᵀ + bo) around the double reference
 * attention of tests/ref; it shares nothing with src/mha.c. Checked:
 *   - forward and backward (dx and every parameter gradient) against it, for MHA,
 *     GQA, MQA, head_dim * heads != embed_dim, with and without biases, every mask
 *     kind the layer passes on, packed variable-length batches, f16 and bf16 storage;
 *   - the backward against central finite differences of the library's own forward
 *     (dropout on: the mask is a pure function of the seed);
 *   - PyTorch's parameter names and layouts, loading by name;
 *   - attention weights of the last forward against the oracle's softmax;
 *   - decoding token by token through a KV cache against one causal forward;
 *   - bit-identical results for 1, 2 and 3 threads; invalid arguments.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- the double-precision layer ---- */

typedef struct {
    int64_t E, H, Hkv, D, HD, C;
    int bias;
    int64_t off_bqkv, off_wout, off_bout, nparam;
} shape;

static shape shape_of(const sattn_mha_config *c)
{
    shape s;
    s.E = c->embed_dim, s.H = c->num_heads, s.Hkv = c->num_kv_heads ? c->num_kv_heads : c->num_heads;
    s.D = c->head_dim ? c->head_dim : c->embed_dim / c->num_heads;
    s.HD = s.H * s.D, s.C = s.HD + 2 * s.Hkv * s.D, s.bias = c->bias;
    s.off_bqkv = s.C * s.E;
    s.off_wout = s.off_bqkv + (s.bias ? s.C : 0);
    s.off_bout = s.off_wout + s.E * s.HD;
    s.nparam = s.off_bout + (s.bias ? s.E : 0);
    return s;
}

/* The attention params over a (T, C) QKV matrix, the same for the oracle (double
   arrays, the layouts of p) as for any implementation. */
static sattn_params ref_params(const shape *s, const sattn_params *opts, int64_t batch, int64_t seq)
{
    sattn_params p = *opts;
    p.batch = batch, p.seq_q = p.seq_kv = seq, p.heads_q = s->H, p.heads_kv = s->Hkv;
    p.head_dim = p.head_dim_v = s->D;
    p.q_stride[0] = p.k_stride[0] = p.v_stride[0] = seq * s->C;
    p.q_stride[1] = p.k_stride[1] = p.v_stride[1] = s->C;
    p.q_stride[2] = p.k_stride[2] = p.v_stride[2] = s->D;
    p.o_stride[0] = seq * s->HD, p.o_stride[1] = s->HD, p.o_stride[2] = s->D;
    return p;
}

/* Y (T, n) = X (T, k) Wᵀ (W: n x k) + b */
static void ref_linear(double *Y, const double *X, const double *W, const double *b, int64_t T, int64_t n,
                       int64_t k)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < n; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < k; i++) acc += X[t * k + i] * W[o * k + i];
            Y[t * n + o] = acc;
        }
}

/* y (T, E); qkv (T, C) and o (T, HD) are kept for the backward. */
static void ref_forward(const shape *s, const double *W, const sattn_params *opts, int64_t batch, int64_t seq,
                        int64_t T, const double *x, double *y, double *qkv, double *o, double *lse)
{
    sattn_params p = ref_params(s, opts, batch, seq);
    ref_linear(qkv, x, W, s->bias ? W + s->off_bqkv : NULL, T, s->C, s->E);
    memset(o, 0, sizeof(double) * (size_t)(T * s->HD));
    sattn_ref_forward_f64(&p, qkv, qkv + s->HD, qkv + s->HD + s->Hkv * s->D, o, lse);
    ref_linear(y, o, W + s->off_wout, s->bias ? W + s->off_bout : NULL, T, s->E, s->HD);
}

/* dx (T, E) and dW (nparam) of sum(y * dy). */
static void ref_backward(const shape *s, const double *W, const sattn_params *opts, int64_t batch, int64_t seq,
                         int64_t T, const double *x, const double *qkv, const double *o, const double *dy,
                         double *dx, double *dW)
{
    sattn_params p = ref_params(s, opts, batch, seq);
    double *dO = calloc((size_t)(T * s->HD) + 1, sizeof(double));
    double *dqkv = calloc((size_t)(T * s->C) + 1, sizeof(double));
    memset(dW, 0, sizeof(double) * (size_t)s->nparam);
    const double *Wo = W + s->off_wout;
    for (int64_t t = 0; t < T; t++)
        for (int64_t e = 0; e < s->E; e++) {
            double g = dy[t * s->E + e];
            if (s->bias) dW[s->off_bout + e] += g;
            for (int64_t c = 0; c < s->HD; c++) {
                dW[s->off_wout + e * s->HD + c] += g * o[t * s->HD + c];
                dO[t * s->HD + c] += g * Wo[e * s->HD + c];
            }
        }
    sattn_ref_backward_f64(&p, qkv, qkv + s->HD, qkv + s->HD + s->Hkv * s->D, dO, dqkv, dqkv + s->HD,
                           dqkv + s->HD + s->Hkv * s->D);
    memset(dx, 0, sizeof(double) * (size_t)(T * s->E));
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < s->C; c++) {
            double g = dqkv[t * s->C + c];
            if (s->bias) dW[s->off_bqkv + c] += g;
            for (int64_t e = 0; e < s->E; e++) {
                dW[c * s->E + e] += g * x[t * s->E + e];
                dx[t * s->E + e] += g * W[c * s->E + e];
            }
        }
    free(dO), free(dqkv);
}

/* ---- helpers ---- */

static double to_f64(const void *src, int64_t i, sattn_dtype dt)
{
    if (dt == SATTN_F32) return ((const float *)src)[i];
    uint16_t h = ((const uint16_t *)src)[i];
    return dt == SATTN_F16 ? sattn_ref_f16_to_f64(h) : sattn_ref_bf16_to_f64(h);
}

static void store_as(void *dst, int64_t i, double v, sattn_dtype dt)
{
    if (dt == SATTN_F32) ((float *)dst)[i] = (float)v;
    else if (dt == SATTN_F16) ((uint16_t *)dst)[i] = sattn_ref_f32_to_f16((float)v);
    else ((uint16_t *)dst)[i] = sattn_ref_f32_to_bf16((float)v);
}

static double max_abs(const double *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* Largest |lib - ref| over n elements, relative to max(1, max|ref|); -1 if NaN. */
static double rel_err(const void *lib, sattn_dtype dt, const double *ref, int64_t n)
{
    double scale = max_abs(ref, n), worst = 0;
    if (scale < 1) scale = 1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(to_f64(lib, i, dt) - ref[i]);
        if (d != d) return -1;
        worst = d > worst ? d : worst;
    }
    return worst / scale;
}

static double rel_err_f32(const float *lib, const double *ref, int64_t n)
{
    return rel_err(lib, SATTN_F32, ref, n);
}

/* ---- one case: forward and backward against the oracle ---- */

typedef struct {
    const char *name;
    sattn_mha_config cfg;
    int64_t batch, seq;
    int mask_kind; /* 0 none, 1 causal, 2 padding, 3 window, 4 bool mask, 5 bias+alibi+softcap, 6 packed */
} layer_case;

typedef struct {
    int32_t seqlens[4], cu[5];
    uint8_t *mask;
    float *bias, slopes[16];
} opt_store;

static sattn_params make_opts(const layer_case *lc, tu_rng *r, opt_store *o, int64_t *tokens)
{
    sattn_params p;
    memset(&p, 0, sizeof p);
    const int64_t B = lc->batch, N = lc->seq, H = lc->cfg.num_heads;
    *tokens = B * N;
    switch (lc->mask_kind) {
    case 1: p.causal = SATTN_CAUSAL_TOP_LEFT; break;
    case 2:
        for (int64_t b = 0; b < B; b++) o->seqlens[b] = (int32_t)tu_range(r, 0, N);
        o->seqlens[0] = (int32_t)N;
        p.seqlens_kv = o->seqlens, p.seqlens_q = o->seqlens;
        break;
    case 3: p.causal = SATTN_CAUSAL_BOTTOM_RIGHT, p.window_left = 3, p.window_right = 0; break;
    case 4:
        o->mask = malloc((size_t)(N * N) + 1);
        for (int64_t i = 0; i < N * N; i++) o->mask[i] = tu_chance(r, 0.7);
        p.mask = o->mask, p.mask_stride[2] = N, p.mask_stride[3] = 1; /* broadcast over batch, heads */
        break;
    case 5:
        o->bias = malloc(sizeof(float) * (size_t)(B * H * N * N) + 4);
        for (int64_t i = 0; i < B * H * N * N; i++) o->bias[i] = (float)tu_unif(r, -1, 1);
        o->bias[0] = -INFINITY;
        p.bias = o->bias, p.bias_stride[0] = H * N * N, p.bias_stride[1] = N * N, p.bias_stride[2] = N,
        p.bias_stride[3] = 1;
        for (int64_t h = 0; h < H; h++) o->slopes[h] = (float)(0.5 / (double)(h + 1));
        p.alibi_slopes = o->slopes, p.softcap = 5.0f, p.scale = 0.3f;
        break;
    case 6:
        o->cu[0] = 0;
        for (int64_t b = 0; b < B; b++) o->cu[b + 1] = o->cu[b] + (int32_t)tu_range(r, 0, N);
        p.cu_seqlens_q = p.cu_seqlens_kv = o->cu, p.causal = SATTN_CAUSAL_TOP_LEFT;
        *tokens = o->cu[B];
        break;
    }
    return p;
}

static void run_case(const layer_case *lc, uint64_t seed)
{
    tu_rng r;
    tu_seed(&r, seed);
    const shape s = shape_of(&lc->cfg);
    const sattn_dtype dt = lc->cfg.dtype;
    opt_store store;
    memset(&store, 0, sizeof store);
    int64_t T;
    sattn_params opts = make_opts(lc, &r, &store, &T);
    const int64_t TE = T * s.E;
    const size_t es = dt == SATTN_F32 ? 4 : 2;

    sattn_mha *m = NULL;
    if (!tu_check(sattn_mha_create(&m, &lc->cfg) == SATTN_OK, "%s: create: %s", lc->name, sattn_last_error()))
        return;
    int64_t np = 0;
    float *param = sattn_mha_param(m, NULL, &np);
    tu_check(np == s.nparam, "%s: %lld parameters, expected %lld", lc->name, (long long)np, (long long)s.nparam);
    double *W = malloc(sizeof(double) * (size_t)np);
    const double a = 1.0 / sqrt((double)s.E);
    for (int64_t i = 0; i < np; i++) param[i] = (float)tu_unif(&r, -a, a), W[i] = param[i];

    void *x = malloc((size_t)TE * es + 8), *y = malloc((size_t)TE * es + 8), *dy = malloc((size_t)TE * es + 8),
         *dx = malloc((size_t)TE * es + 8);
    double *xd = malloc(sizeof(double) * (size_t)TE + 8), *dyd = malloc(sizeof(double) * (size_t)TE + 8);
    for (int64_t i = 0; i < TE; i++) {
        store_as(x, i, tu_unif(&r, -1, 1), dt), xd[i] = to_f64(x, i, dt);
        store_as(dy, i, tu_unif(&r, -1, 1), dt), dyd[i] = to_f64(dy, i, dt);
    }
    double *yr = calloc((size_t)TE + 1, sizeof(double)), *qkv = calloc((size_t)(T * s.C) + 1, sizeof(double));
    double *o = calloc((size_t)(T * s.HD) + 1, sizeof(double)), *dxr = calloc((size_t)TE + 1, sizeof(double));
    double *dW = calloc((size_t)np, sizeof(double));
    double *lse = calloc((size_t)(lc->batch * s.H * (lc->seq + 1) + T * s.H) + 1, sizeof(double));
    ref_forward(&s, W, &opts, lc->batch, lc->seq, T, xd, yr, qkv, o, lse);
    ref_backward(&s, W, &opts, lc->batch, lc->seq, T, xd, qkv, o, dyd, dxr, dW);

    /* Tolerances. The math is f32: three chained products of length <= 64 and a
       softmax over <= 65 keys put ~1e-6 relative error on y (measured); 1e-5 of
       max(1, max|y|) leaves a 10x margin. Gradients pass through two more products:
       5e-5 of each tensor's max(1, max|g|). f16 / bf16 store y and dx rounded:
       add half an ulp at the largest magnitude (2^-11, 2^-8), and the inputs were
       rounded before both the library and the oracle saw them. */
    double tol_y = 1e-5, tol_g = 5e-5;
    if (dt == SATTN_F16) tol_y += 0x1p-11, tol_g += 0x1p-11;
    if (dt == SATTN_BF16) tol_y += 0x1p-8, tol_g += 0x1p-8;

    sattn_status st = sattn_mha_forward(m, &opts, lc->batch, lc->seq, x, y);
    if (tu_check(st == SATTN_OK, "%s: forward: %s", lc->name, sattn_last_error())) {
        double e = rel_err(y, dt, yr, TE);
        tu_check(e >= 0 && e <= tol_y, "%s: y error %.3g > %.3g", lc->name, e, tol_y);
        st = sattn_mha_backward(m, &opts, lc->batch, lc->seq, x, dy, dx);
        if (tu_check(st == SATTN_OK, "%s: backward: %s", lc->name, sattn_last_error())) {
            e = rel_err(dx, dt, dxr, TE);
            tu_check(e >= 0 && e <= tol_g, "%s: dx error %.3g > %.3g", lc->name, e, tol_g);
            static const char *names[] = {"in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"};
            const int64_t offs[] = {0, s.off_bqkv, s.off_wout, s.off_bout};
            for (int t = 0; t < 4; t++) {
                if (!s.bias && (t == 1 || t == 3)) continue;
                int64_t n = 0;
                const float *g = sattn_mha_grad(m, names[t], &n);
                if (!tu_check(g != NULL, "%s: no gradient %s", lc->name, names[t])) continue;
                e = rel_err_f32(g, dW + offs[t], n);
                tu_check(e >= 0 && e <= 5e-5, "%s: grad %s error %.3g > 5e-5", lc->name, names[t], e);
            }
        }
        /* attention weights of that forward: softmax rows from the oracle's q, k, lse */
        const int64_t N = lc->seq;
        if (N > 0 && N <= 65 && lc->mask_kind != 6) {
            float *w = malloc(sizeof(float) * (size_t)(lc->batch * s.H * N * N) + 4);
            st = sattn_mha_attention_weights(m, 0, N, 0, w);
            if (tu_check(st == SATTN_OK, "%s: weights: %s", lc->name, sattn_last_error())) {
                /* the oracle's weights: one-hot values give P as the output */
                sattn_params p = ref_params(&s, &opts, lc->batch, N);
                p.heads_kv = s.Hkv, p.head_dim_v = N;
                p.v_stride[0] = N * s.Hkv * N, p.v_stride[1] = s.Hkv * N, p.v_stride[2] = N;
                p.o_stride[0] = N * s.H * N, p.o_stride[1] = s.H * N, p.o_stride[2] = N;
                double *onehot = calloc((size_t)(lc->batch * N * s.Hkv * N), sizeof(double));
                for (int64_t b = 0; b < lc->batch; b++)
                    for (int64_t j = 0; j < N; j++)
                        for (int64_t h = 0; h < s.Hkv; h++) onehot[((b * N + j) * s.Hkv + h) * N + j] = 1;
                double *P = calloc((size_t)(lc->batch * N * s.H * N), sizeof(double));
                sattn_ref_forward_f64(&p, qkv, qkv + s.HD, onehot, P, NULL);
                double worst = 0;
                for (int64_t b = 0; b < lc->batch; b++)
                    for (int64_t h = 0; h < s.H; h++)
                        for (int64_t i = 0; i < N; i++)
                            for (int64_t j = 0; j < N; j++) {
                                double d = fabs(w[((b * s.H + h) * N + i) * N + j] - P[((b * N + i) * s.H + h) * N + j]);
                                worst = d > worst || d != d ? d : worst;
                            }
                /* weights are in [0, 1]; f32 scores carry ~1e-6 relative error */
                tu_check(worst <= 2e-5, "%s: attention weights error %.3g > 2e-5", lc->name, worst);
                free(onehot), free(P);
            }
            free(w);
        }
    }
    sattn_mha_free(m);
    free(W), free(x), free(y), free(dy), free(dx), free(xd), free(dyd), free(yr), free(qkv), free(o), free(dxr);
    free(dW), free(lse), free(store.mask), free(store.bias);
}

static void test_against_oracle(void)
{
    static const struct {
        const char *name;
        int64_t E, H, Hkv, D;
        int bias;
    } cfgs[] = {
        {"mha E16 H2", 16, 2, 0, 0, 1},
        {"gqa E24 H4/2", 24, 4, 2, 0, 1},
        {"mqa E20 H4/1 D7", 20, 4, 1, 7, 0},
        {"E1 H1", 1, 1, 0, 0, 1},
        {"E65 H5/5 D13", 65, 5, 5, 13, 1},
    };
    static const int64_t seqs[] = {1, 7, 63, 65};
    static const char *kinds[] = {"none", "causal", "padding", "window", "mask", "bias+alibi+softcap", "packed"};
    uint64_t seed = 100;
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
        for (int kind = 0; kind < 7; kind++)
            for (size_t si = 0; si < sizeof seqs / sizeof seqs[0]; si++) {
                if (cfgs[c].E == 65 && seqs[si] > 7) continue; /* keep the oracle's time down */
                layer_case lc;
                memset(&lc, 0, sizeof lc);
                char name[160];
                snprintf(name, sizeof name, "%s N%lld %s", cfgs[c].name, (long long)seqs[si], kinds[kind]);
                lc.name = name;
                lc.cfg.embed_dim = cfgs[c].E, lc.cfg.num_heads = cfgs[c].H, lc.cfg.num_kv_heads = cfgs[c].Hkv;
                lc.cfg.head_dim = cfgs[c].D, lc.cfg.bias = cfgs[c].bias;
                lc.batch = kind == 2 || kind == 6 ? 3 : 2, lc.seq = seqs[si], lc.mask_kind = kind;
                run_case(&lc, seed++);
            }
    /* storage types: x, y, dy, dx in f16 / bf16 */
    for (int dt = 1; dt <= 2; dt++)
        for (int kind = 0; kind < 3; kind++) {
            layer_case lc;
            memset(&lc, 0, sizeof lc);
            char name[96];
            snprintf(name, sizeof name, "gqa %s %s", dt == 1 ? "f16" : "bf16", kinds[kind]);
            lc.name = name;
            lc.cfg.embed_dim = 24, lc.cfg.num_heads = 4, lc.cfg.num_kv_heads = 2, lc.cfg.bias = 1;
            lc.cfg.dtype = (sattn_dtype)dt;
            lc.batch = 2, lc.seq = 33, lc.mask_kind = kind;
            run_case(&lc, seed++);
        }
}

/* ---- finite differences of the library's own forward ---- */

static double loss(sattn_mha *m, const sattn_params *o, int64_t B, int64_t N, int64_t E, const float *x,
                   const float *dy, float *y)
{
    if (sattn_mha_forward(m, o, B, N, x, y) != SATTN_OK) return NAN;
    double L = 0;
    for (int64_t i = 0; i < B * N * E; i++) L += (double)y[i] * dy[i];
    return L;
}

/* The worst relative error of grad against central differences of the loss in count
   random entries of v (n of them; v is a parameter array or x itself), each restored. */
static double fd_worst(sattn_mha *m, const sattn_params *o, int64_t B, int64_t N, int64_t E, const float *x,
                       const float *dy, float *y, float *v, int64_t n, const float *grad, int count, double h,
                       tu_rng *r)
{
    double worst = 0;
    for (int t = 0; t < count; t++) {
        int64_t i = tu_range(r, 0, n - 1);
        float keep = v[i];
        v[i] = keep + (float)h;
        double lp = loss(m, o, B, N, E, x, dy, y);
        v[i] = keep - (float)h;
        double lm = loss(m, o, B, N, E, x, dy, y);
        v[i] = keep;
        double fd = (lp - lm) / (2 * h), e = fabs(fd - grad[i]) / fmax(1.0, fabs(fd));
        worst = e > worst || e != e ? e : worst;
    }
    return worst;
}

static void test_finite_differences(void)
{
    const int64_t B = 2, N = 9, E = 12;
    sattn_mha_config cfg = {E, 4, 2, 5, 1, SATTN_F32};
    sattn_mha *m = NULL;
    if (!tu_check(sattn_mha_create(&m, &cfg) == SATTN_OK, "fd: create")) return;
    tu_rng r;
    tu_seed(&r, 7);
    int64_t np;
    float *param = sattn_mha_param(m, NULL, &np);
    for (int64_t i = 0; i < np; i++) param[i] = (float)tu_unif(&r, -0.5, 0.5);
    float x[2 * 9 * 12], dy[2 * 9 * 12], y[2 * 9 * 12], dx[2 * 9 * 12];
    for (int i = 0; i < B * N * E; i++) x[i] = (float)tu_unif(&r, -1, 1), dy[i] = (float)tu_unif(&r, -1, 1);
    sattn_params o;
    memset(&o, 0, sizeof o);
    o.causal = SATTN_CAUSAL_TOP_LEFT, o.dropout_p = 0.2f, o.seed = 99;
    sattn_mha_zero_grad(m);
    sattn_mha_forward(m, &o, B, N, x, y);
    tu_check(sattn_mha_backward(m, &o, B, N, x, dy, dx) == SATTN_OK, "fd: backward: %s", sattn_last_error());
    float *g = sattn_mha_grad(m, NULL, NULL);
    float *gcopy = malloc(sizeof(float) * (size_t)np);
    memcpy(gcopy, g, sizeof(float) * (size_t)np);
    /* central differences in f32 with h = 1e-2: truncation O(h^2 * f''') ~ 1e-4 and
       f32 noise ~ 1e-6 * |L| / h; 2e-3 of max(1, |g|) covers both. */
    const double h = 1e-2;
    double worst = fd_worst(m, &o, B, N, E, x, dy, y, param, np, gcopy, 40, h, &r);
    double wx = fd_worst(m, &o, B, N, E, x, dy, y, x, B * N * E, dx, 20, h, &r);
    worst = wx > worst || wx != wx ? wx : worst;
    printf("finite differences: worst relative error %.3g\n", worst);
    tu_check(worst <= 2e-3, "finite differences: %.3g > 2e-3", worst);
    free(gcopy);
    sattn_mha_free(m);
}

/* ---- names, loading, the torch layout ---- */

static void test_parameters(void)
{
    sattn_mha_config cfg = {8, 2, 1, 3, 1, SATTN_F32}; /* C = 6 + 2*3 = 12 */
    sattn_mha *m = NULL;
    if (!tu_check(sattn_mha_create(&m, &cfg) == SATTN_OK, "params: create")) return;
    int64_t n;
    float *all = sattn_mha_param(m, NULL, &n);
    tu_check(n == 12 * 8 + 12 + 8 * 6 + 8, "params: total %lld", (long long)n);
    int zeroed = 1;
    for (int64_t i = 0; i < n; i++) zeroed &= all[i] == 0.0f;
    tu_check(zeroed, "params: created zeroed");
    struct {
        const char *name;
        int64_t numel, offset;
    } want[] = {{"in_proj_weight", 96, 0}, {"q_proj_weight", 48, 0}, {"k_proj_weight", 24, 48},
                {"v_proj_weight", 24, 72}, {"in_proj_bias", 12, 96}, {"out_proj.weight", 48, 108},
                {"out_proj.bias", 8, 156}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        float *p = sattn_mha_param(m, want[i].name, &n);
        tu_check(p == all + want[i].offset && n == want[i].numel, "params: %s at %td size %lld", want[i].name,
                 p ? p - all : -1, (long long)n);
        tu_check(sattn_mha_grad(m, want[i].name, &n) == sattn_mha_grad(m, NULL, NULL) + want[i].offset,
                 "params: grad view of %s", want[i].name);
    }
    /* loading q, k, v separately equals loading the stacked in_proj_weight */
    float w[96];
    for (int i = 0; i < 96; i++) w[i] = (float)i;
    tu_check(sattn_mha_set(m, "q_proj_weight", w, 48) == SATTN_OK, "params: set q");
    tu_check(sattn_mha_set(m, "k_proj_weight", w + 48, 24) == SATTN_OK, "params: set k");
    tu_check(sattn_mha_set(m, "v_proj_weight", w + 72, 24) == SATTN_OK, "params: set v");
    tu_check(!memcmp(all, w, sizeof w), "params: q/k/v stack into in_proj_weight");
    float before[160];
    memcpy(before, all, sizeof before);
    tu_check(sattn_mha_set(m, "in_proj_weight", w, 95) == SATTN_ERR_INVALID && strstr(sattn_last_error(), "96"),
             "params: wrong size rejected: %s", sattn_last_error());
    tu_check(sattn_mha_param(m, "nonsense", &n) == NULL && strstr(sattn_last_error(), "nonsense"),
             "params: unknown name: %s", sattn_last_error());
    tu_check(sattn_mha_set(m, "in_proj_bias", NULL, 12) == SATTN_ERR_INVALID, "params: NULL src");
    tu_check(!memcmp(all, before, sizeof before), "params: failed sets change nothing");
    sattn_mha_free(m);
    sattn_mha_config nb = {8, 2, 0, 0, 0, SATTN_F32};
    tu_check(sattn_mha_create(&m, &nb) == SATTN_OK, "params: create without bias");
    tu_check(sattn_mha_param(m, "in_proj_bias", &n) == NULL && strstr(sattn_last_error(), "bias"),
             "params: no bias without biases: %s", sattn_last_error());
    sattn_mha_free(m);
}

/* ---- decoding through a KV cache == one causal forward ---- */

static void test_decode(sattn_dtype cache_dt, int chunk)
{
    const int64_t B = 2, N = 37, E = 32;
    sattn_mha_config cfg = {E, 8, 2, 0, 1, SATTN_F32};
    sattn_mha *m = NULL;
    sattn_kvcache *c = NULL;
    tu_check(sattn_mha_create(&m, &cfg) == SATTN_OK, "decode: create");
    sattn_kvcache_config kc;
    memset(&kc, 0, sizeof kc);
    kc.batch = B, kc.heads_kv = 2, kc.head_dim = 4, kc.dtype = cache_dt, kc.capacity = 4;
    if (!tu_check(sattn_kvcache_create(&c, &kc) == SATTN_OK, "decode: cache: %s", sattn_last_error())) return;
    tu_rng r;
    tu_seed(&r, 11);
    int64_t np;
    float *param = sattn_mha_param(m, NULL, &np);
    for (int64_t i = 0; i < np; i++) param[i] = (float)tu_unif(&r, -0.4, 0.4);
    float *x = malloc(sizeof(float) * (size_t)(B * N * E)), *y = malloc(sizeof(float) * (size_t)(B * N * E));
    float *yd = malloc(sizeof(float) * (size_t)(B * N * E)), *xs = malloc(sizeof(float) * (size_t)(B * chunk * E));
    float *ys = malloc(sizeof(float) * (size_t)(B * chunk * E));
    for (int64_t i = 0; i < B * N * E; i++) x[i] = (float)tu_unif(&r, -1, 1);
    sattn_params o;
    memset(&o, 0, sizeof o);
    o.causal = SATTN_CAUSAL_TOP_LEFT;
    tu_check(sattn_mha_forward(m, &o, B, N, x, y) == SATTN_OK, "decode: forward");
    for (int64_t t0 = 0; t0 < N; t0 += chunk) {
        int64_t n = N - t0 < chunk ? N - t0 : chunk;
        for (int64_t b = 0; b < B; b++) memcpy(xs + b * n * E, x + (b * N + t0) * E, sizeof(float) * (size_t)(n * E));
        if (!tu_check(sattn_mha_decode(m, c, NULL, B, n, xs, ys) == SATTN_OK, "decode: step: %s", sattn_last_error()))
            break;
        for (int64_t b = 0; b < B; b++) memcpy(yd + (b * N + t0) * E, ys + b * n * E, sizeof(float) * (size_t)(n * E));
    }
    double worst = 0, scale = 1;
    for (int64_t i = 0; i < B * N * E; i++) {
        double d = fabs((double)yd[i] - y[i]);
        worst = d > worst || d != d ? d : worst;
        scale = fabs(y[i]) > scale ? fabs(y[i]) : scale;
    }
    /* f32 cache: the same f32 math in another order, 1e-5 of max(1, |y|). f16 / bf16
       cache: K and V rounded (2^-11, 2^-8 relative) move y by about that much. */
    double tol = cache_dt == SATTN_F32 ? 1e-5 : cache_dt == SATTN_F16 ? 2e-3 : 1.5e-2;
    printf("decode (%s cache, %d tokens a step): worst difference %.3g\n",
           cache_dt == SATTN_F32 ? "f32" : cache_dt == SATTN_F16 ? "f16" : "bf16", chunk, worst / scale);
    tu_check(worst / scale <= tol, "decode %d: token-by-token vs causal forward %.3g > %.3g", (int)cache_dt,
             worst / scale, tol);
    tu_check(sattn_kvcache_length(c) == N, "decode: cache length %lld", (long long)sattn_kvcache_length(c));
    /* a cache of the wrong shape is refused, and nothing is appended */
    sattn_kvcache *bad = NULL;
    kc.heads_kv = 4;
    sattn_kvcache_create(&bad, &kc);
    tu_check(sattn_mha_decode(m, bad, NULL, B, 1, xs, ys) == SATTN_ERR_INVALID && sattn_kvcache_length(bad) == 0,
             "decode: wrong cache shape refused");
    sattn_kvcache_free(bad);
    free(x), free(y), free(yd), free(xs), free(ys);
    sattn_kvcache_free(c);
    sattn_mha_free(m);
}

/* ---- a refused decode step leaves the cache as it was ---- */

/* Two caches take the same steps; one also gets each bad call, which must be refused
   without appending: the next good step then gives the same bits from both, and the
   same lengths. Window 0 and 3 (the append that slides the window), all dtypes. */
static void test_decode_refused(void)
{
    const int64_t B = 2, E = 32, H = 8;
    sattn_mha_config cfg = {E, H, 2, 0, 1, SATTN_F32};
    sattn_mha *m = NULL;
    if (!tu_check(sattn_mha_create(&m, &cfg) == SATTN_OK, "refused: create")) return;
    tu_rng r;
    tu_seed(&r, 12);
    int64_t np;
    float *param = sattn_mha_param(m, NULL, &np);
    for (int64_t i = 0; i < np; i++) param[i] = (float)tu_unif(&r, -0.4, 0.4);
    float x[2 * 3 * 32], ya[2 * 3 * 32], yb[2 * 3 * 32];
    float bad_slopes[8] = {0.1f, 0.2f, NAN, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f};
    for (int dt = 0; dt < 3; dt++)
        for (int w = 0; w <= 3; w += 3) {
            sattn_kvcache_config kc;
            memset(&kc, 0, sizeof kc);
            kc.batch = B, kc.heads_kv = 2, kc.head_dim = 4, kc.dtype = (sattn_dtype)dt, kc.capacity = 4;
            kc.window = w, kc.max_tokens = w ? 0 : 12;
            sattn_kvcache *a = NULL, *b = NULL;
            sattn_kvcache_create(&a, &kc), sattn_kvcache_create(&b, &kc);
            int fails = 0;
            for (int step = 0; step < 6; step++) {
                const int64_t n = 1 + step % 3; /* 1, 2, 3, ...: windows slide, buffers grow */
                for (int64_t i = 0; i < B * n * E; i++) x[i] = (float)tu_unif(&r, -1, 1);
                sattn_params o;
                for (int bad = 0; bad < 6; bad++) {
                    memset(&o, 0, sizeof o);
                    int64_t nn = n;
                    switch (bad) {
                    case 0: o.scale = NAN; break;
                    case 1: o.scale = INFINITY; break;
                    case 2: o.softcap = -1.0f; break;
                    case 3: o.alibi_slopes = bad_slopes; break;
                    case 4: o.softcap = NAN; break;
                    case 5: nn = w ? 0 : 13; break; /* n < 1; past max_tokens */
                    }
                    int64_t len = sattn_kvcache_length(b);
                    sattn_status st = sattn_mha_decode(m, b, &o, B, nn, x, yb);
                    fails += !tu_check(st == SATTN_ERR_INVALID && sattn_kvcache_length(b) == len,
                                       "refused (dtype %d, window %d, step %d, bad %d): status %d, length %lld -> %lld",
                                       dt, w, step, bad, (int)st, (long long)len, (long long)sattn_kvcache_length(b));
                }
                memset(&o, 0, sizeof o);
                sattn_status sa = sattn_mha_decode(m, a, &o, B, n, x, ya);
                sattn_status sb = sattn_mha_decode(m, b, &o, B, n, x, yb);
                fails += !tu_check(sa == SATTN_OK && sb == SATTN_OK && memcmp(ya, yb, sizeof(float) * (size_t)(B * n * E)) == 0 &&
                                       sattn_kvcache_length(a) == sattn_kvcache_length(b),
                                   "refused (dtype %d, window %d, step %d): the next step differs from a cache that "
                                   "never saw the refused calls", dt, w, step);
                if (fails) break;
            }
            sattn_kvcache_free(a), sattn_kvcache_free(b);
        }
    sattn_mha_free(m);
}

/* ---- thread count never changes a bit ---- */

static void test_threads(void)
{
    const int64_t B = 3, N = 70, E = 48;
    sattn_mha_config cfg = {E, 6, 3, 0, 1, SATTN_F32};
    float *x = malloc(sizeof(float) * (size_t)(B * N * E)), *dy = malloc(sizeof(float) * (size_t)(B * N * E));
    tu_rng r;
    tu_seed(&r, 5);
    for (int64_t i = 0; i < B * N * E; i++) x[i] = (float)tu_unif(&r, -1, 1), dy[i] = (float)tu_unif(&r, -1, 1);
    float *ref[3] = {NULL, NULL, NULL};
    int64_t np = 0;
    for (int t = 1; t <= 3; t++) {
        sattn_set_num_threads(t);
        sattn_mha *m = NULL;
        sattn_mha_create(&m, &cfg);
        float *param = sattn_mha_param(m, NULL, &np);
        tu_rng w;
        tu_seed(&w, 6);
        for (int64_t i = 0; i < np; i++) param[i] = (float)tu_unif(&w, -0.2, 0.2);
        float *out = malloc(sizeof(float) * (size_t)(2 * B * N * E + np));
        sattn_params o;
        memset(&o, 0, sizeof o);
        o.causal = SATTN_CAUSAL_TOP_LEFT;
        sattn_mha_forward(m, &o, B, N, x, out);
        sattn_mha_backward(m, &o, B, N, x, dy, out + B * N * E);
        memcpy(out + 2 * B * N * E, sattn_mha_grad(m, NULL, NULL), sizeof(float) * (size_t)np);
        ref[t - 1] = out;
        sattn_mha_free(m);
    }
    sattn_set_num_threads(0);
    size_t bytes = sizeof(float) * (size_t)(2 * B * N * E + np);
    tu_check(!memcmp(ref[0], ref[1], bytes) && !memcmp(ref[0], ref[2], bytes),
             "threads: y, dx and gradients differ between 1, 2 and 3 threads");
    free(ref[0]), free(ref[1]), free(ref[2]), free(x), free(dy);
}

/* ---- invalid arguments ---- */

static void test_errors(void)
{
    sattn_mha *m = (sattn_mha *)&m;
    sattn_mha_config bad[] = {
        {0, 1, 0, 0, 0, SATTN_F32},  {8, 0, 0, 0, 0, SATTN_F32}, {8, 4, 3, 0, 0, SATTN_F32},
        {10, 4, 0, 0, 0, SATTN_F32}, {8, 2, 0, -1, 0, SATTN_F32}, {8, 2, 0, 0, 0, (sattn_dtype)7},
    };
    static const char *words[] = {"embed_dim", "num_heads", "num_kv_heads", "head_dim", "head_dim", "dtype"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = (sattn_mha *)&m;
        tu_check(sattn_mha_create(&m, &bad[i]) == SATTN_ERR_INVALID && m == NULL &&
                     strstr(sattn_last_error(), words[i]),
                 "errors: config %zu: %s", i, sattn_last_error());
    }
    /* sizes whose products overflow int64 (2^52 heads of 4096 made a layer of 0 parameters) */
    sattn_mha_config huge[] = {
        {8, (int64_t)1 << 52, 0, 4096, 0, SATTN_F32},
        {(int64_t)1 << 40, (int64_t)1 << 20, 1, 4096, 0, SATTN_F32},
        {(int64_t)1 << 62, 1, 0, 1, 1, SATTN_F32},
        {INT64_MAX, 1, 0, 1, 0, SATTN_F32},
        {(int64_t)1 << 31, (int64_t)1 << 30, (int64_t)1 << 30, 4096, 1, SATTN_F32},
    };
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        m = (sattn_mha *)&m;
        sattn_status st = sattn_mha_create(&m, &huge[i]);
        tu_check(st != SATTN_OK && m == NULL, "errors: huge config %zu: status %d, layer %p: %s", i, (int)st,
                 (void *)m, sattn_last_error());
        if (st == SATTN_OK) sattn_mha_free(m);
    }
    tu_check(sattn_mha_create(NULL, &bad[0]) == SATTN_ERR_INVALID, "errors: NULL layer pointer");
    tu_check(sattn_mha_create(&m, NULL) == SATTN_ERR_INVALID, "errors: NULL config");
    sattn_mha_free(NULL);

    sattn_mha_config cfg = {8, 2, 0, 0, 1, SATTN_F32};
    sattn_mha_create(&m, &cfg);
    float x[3 * 5 * 8], y[3 * 5 * 8], dx[3 * 5 * 8];
    for (int i = 0; i < 120; i++) x[i] = 0.1f * (float)i, y[i] = dx[i] = 12345.0f;
    tu_check(sattn_mha_backward(m, NULL, 3, 5, x, x, dx) == SATTN_ERR_INVALID && strstr(sattn_last_error(), "forward"),
             "errors: backward before forward: %s", sattn_last_error());
    sattn_params o;
    memset(&o, 0, sizeof o);
    o.heads_q = 2;
    tu_check(sattn_mha_forward(m, &o, 3, 5, x, y) == SATTN_ERR_INVALID && strstr(sattn_last_error(), "heads_q"),
             "errors: opts shape field: %s", sattn_last_error());
    memset(&o, 0, sizeof o);
    o.dropout_p = 1.5f;
    tu_check(sattn_mha_forward(m, &o, 3, 5, x, y) == SATTN_ERR_INVALID && strstr(sattn_last_error(), "dropout_p"),
             "errors: bad dropout_p: %s", sattn_last_error());
    int32_t lens[3] = {5, 9, 1};
    memset(&o, 0, sizeof o);
    o.seqlens_kv = lens;
    tu_check(sattn_mha_forward(m, &o, 3, 5, x, y) == SATTN_ERR_INVALID && strstr(sattn_last_error(), "seqlens_kv"),
             "errors: seqlens over seq: %s", sattn_last_error());
    tu_check(sattn_mha_forward(m, NULL, 0, 5, x, y) == SATTN_ERR_INVALID && strstr(sattn_last_error(), "batch"),
             "errors: batch 0: %s", sattn_last_error());
    tu_check(sattn_mha_forward(m, NULL, 3, 5, NULL, y) == SATTN_ERR_INVALID && strstr(sattn_last_error(), "x"),
             "errors: NULL x: %s", sattn_last_error());
    int untouched = 1;
    for (int i = 0; i < 120; i++) untouched &= y[i] == 12345.0f;
    tu_check(untouched, "errors: y untouched by failed forwards");
    tu_check(sattn_mha_forward(m, NULL, 3, 5, x, y) == SATTN_OK, "errors: a valid forward after the failures");
    tu_check(sattn_mha_backward(m, NULL, 3, 4, x, x, dx) == SATTN_ERR_INVALID && strstr(sattn_last_error(), "seq"),
             "errors: backward with another shape: %s", sattn_last_error());
    o.causal = SATTN_CAUSAL_TOP_LEFT;
    o.seqlens_kv = NULL;
    tu_check(sattn_mha_backward(m, &o, 3, 5, x, x, dx) == SATTN_ERR_INVALID && strstr(sattn_last_error(), "opts"),
             "errors: backward with other opts: %s", sattn_last_error());
    float *g = sattn_mha_grad(m, NULL, NULL);
    int zero = 1;
    for (int i = 0; i < 4 * 8 * 8 + 4 * 8; i++) zero &= g[i] == 0.0f;
    untouched = 1;
    for (int i = 0; i < 120; i++) untouched &= dx[i] == 12345.0f;
    tu_check(zero && untouched, "errors: failed backwards leave gradients and dx alone");
    tu_check(sattn_mha_attention_weights(m, 0, 6, 0, y) == SATTN_ERR_INVALID, "errors: weights rows past seq");
    sattn_mha_free(m);
}

int main(void)
{
    tu_begin();
    printf("gemm backend: %s\n", sattn_gemm_backend());
    test_parameters();
    test_against_oracle();
    test_finite_differences();
    test_decode(SATTN_F32, 1);
    test_decode(SATTN_F32, 5);
    test_decode(SATTN_F16, 1);
    test_decode(SATTN_BF16, 3);
    test_decode_refused();
    test_threads();
    test_errors();
    return tu_summary("mha");
}
