/* model: a small Transformer encoder trained with sattn's layer (see model.h).
 *
 * Sections follow the data: weights, activations, the ops (each forward with its
 * backward under it), then the model's forward, backward and optimizer. Every loop
 * over tokens is split between threads by rows, and sums across rows (weight
 * gradients) run in a fixed order, so a run is reproducible for any thread count.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sattn.h"

/* ---- random numbers: splitmix64 ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_uniform(uint64_t *s, float lo, float hi) /* [lo, hi) */
{
    return lo + (hi - lo) * (float)(rng_next(s) >> 40) * 0x1p-24f;
}

/* ---- weights: one array, and the gradients and Adam moments in the same layout ---- */

typedef struct {
    float *ln1_w, *ln1_b; /* (E) */
    float *ln2_w, *ln2_b; /* (E) */
    float *w1;            /* (E, F) */
    float *b1;            /* (F) */
    float *w2;            /* (F, E) */
    float *b2;            /* (E) */
} block_weights;

typedef struct {
    float *tok;                                /* (V, E) */
    float *pos;                                /* (N, E) */
    block_weights blk[MODEL_MAX_BLOCKS];
    float *lnf_w, *lnf_b;                      /* (E) */
    float *wh;                                 /* (E, V) */
    float *bh;                                 /* (V) */
} weights;

/* The next n floats from base at *off (NULL when base is NULL: counting only). */
static float *take(float *base, size_t *off, size_t n)
{
    float *r = base ? base + *off : NULL;
    *off += n;
    return r;
}

/* Points w's fields into base; returns the float count. */
static size_t bind_weights(const model_config *c, weights *w, float *base)
{
    const size_t V = (size_t)c->vocab, N = (size_t)c->seq, E = (size_t)c->embed, F = (size_t)c->hidden;
    size_t off = 0;
    w->tok = take(base, &off, V * E);
    w->pos = take(base, &off, N * E);
    for (int l = 0; l < c->blocks; l++) {
        block_weights *b = &w->blk[l];
        b->ln1_w = take(base, &off, E), b->ln1_b = take(base, &off, E);
        b->ln2_w = take(base, &off, E), b->ln2_b = take(base, &off, E);
        b->w1 = take(base, &off, E * F), b->b1 = take(base, &off, F);
        b->w2 = take(base, &off, F * E), b->b2 = take(base, &off, E);
    }
    w->lnf_w = take(base, &off, E), w->lnf_b = take(base, &off, E);
    w->wh = take(base, &off, E * V), w->bh = take(base, &off, V);
    return off;
}

/* ---- activations of one batch, kept for the backward ---- */

typedef struct {
    float *x[MODEL_MAX_BLOCKS + 1]; /* (T, E) the residual stream into block l; x[L] leaves the last */
    float *mid[MODEL_MAX_BLOCKS];   /* (T, E) x + attention */
    float *ln1[MODEL_MAX_BLOCKS];   /* (T, E) layernorm(x), the attention's input */
    float *mean1[MODEL_MAX_BLOCKS], *rstd1[MODEL_MAX_BLOCKS]; /* (T) */
    float *att[MODEL_MAX_BLOCKS];   /* (T, E) the attention's output */
    float *ln2[MODEL_MAX_BLOCKS];   /* (T, E) layernorm(mid), the MLP's input */
    float *mean2[MODEL_MAX_BLOCKS], *rstd2[MODEL_MAX_BLOCKS];
    float *h[MODEL_MAX_BLOCKS];     /* (T, F) before the ReLU */
    float *a[MODEL_MAX_BLOCKS];     /* (T, F) after it */
    float *lnf, *meanf, *rstdf;     /* (T, E), (T), (T) */
    float *probs;                   /* (T, V) softmax of the logits */
    /* backward scratch */
    float *dx, *dln, *dtmp;         /* (T, E) */
    float *dh, *da;                 /* (T, F) */
    float *dlogits;                 /* (T, V) */
    float *wt;                      /* a transposed weight: max(E F, E V) */
    float *xt;                      /* a transposed input: T max(E, F) */
} activations;

static size_t bind_activations(const model_config *c, int max_batch, activations *a, float *base)
{
    const size_t T = (size_t)max_batch * (size_t)c->seq, E = (size_t)c->embed, F = (size_t)c->hidden;
    const size_t V = (size_t)c->vocab;
    size_t off = 0;
    for (int l = 0; l <= c->blocks; l++) a->x[l] = take(base, &off, T * E);
    for (int l = 0; l < c->blocks; l++) {
        a->mid[l] = take(base, &off, T * E);
        a->ln1[l] = take(base, &off, T * E), a->mean1[l] = take(base, &off, T), a->rstd1[l] = take(base, &off, T);
        a->att[l] = take(base, &off, T * E);
        a->ln2[l] = take(base, &off, T * E), a->mean2[l] = take(base, &off, T), a->rstd2[l] = take(base, &off, T);
        a->h[l] = take(base, &off, T * F), a->a[l] = take(base, &off, T * F);
    }
    a->lnf = take(base, &off, T * E), a->meanf = take(base, &off, T), a->rstdf = take(base, &off, T);
    a->probs = take(base, &off, T * V);
    a->dx = take(base, &off, T * E), a->dln = take(base, &off, T * E), a->dtmp = take(base, &off, T * E);
    a->dh = take(base, &off, T * F), a->da = take(base, &off, T * F);
    a->dlogits = take(base, &off, T * V);
    a->wt = take(base, &off, E * (F > V ? F : V));
    a->xt = take(base, &off, T * (F > E ? F : E));
    return off;
}

struct model {
    model_config c;
    int max_batch, threads;
    float *params, *grads, *m1, *m2; /* own weights, their gradient, Adam's moments */
    size_t nparams;
    weights w, g;
    sattn_mha *attn[MODEL_MAX_BLOCKS];
    float *attn_m1[MODEL_MAX_BLOCKS], *attn_m2[MODEL_MAX_BLOCKS];
    int64_t attn_n; /* parameters of one attention layer */
    float *act_mem;
    activations act;
    int *tokens, *targets; /* (max_batch, N): the last forward's */
    int batch;             /* of the last forward, 0 before any */
    int has_targets;
    long step;             /* Adam steps taken */
};

/* ---- ops ---- */

/* c (m, n) = init + a (m, k) b (k, n), row-major; init is c itself (accumulate), the
   row vector bias (if not NULL), or zero. A row of c is built in 32 accumulators
   that stay in registers while the k products stream through. */
#define GEMM_NC 32
static void gemm(float *c, const float *a, const float *b, const float *bias, int accumulate, int m, int n, int k,
                 int nt)
{
    /* sattn's rule for the count: one thread for small products or on a busy machine */
    int want = sattn_suggest_threads(2.0 * m * n * k);
    if (want < nt) nt = want;
    (void)nt; /* unused when built without OpenMP */
    CLI_OMP(omp parallel for num_threads(nt) schedule(static) if (nt > 1))
    for (int i = 0; i < m; i++) {
        const float *ai = a + (size_t)i * (size_t)k;
        float *ci = c + (size_t)i * (size_t)n;
        for (int j0 = 0; j0 < n; j0 += GEMM_NC) {
            const int nc = n - j0 < GEMM_NC ? n - j0 : GEMM_NC;
            float acc[GEMM_NC];
            for (int j = 0; j < nc; j++) acc[j] = accumulate ? ci[j0 + j] : bias ? bias[j0 + j] : 0.0f;
            if (nc == GEMM_NC) {
                for (int p = 0; p < k; p++) {
                    const float av = ai[p], *bp = b + (size_t)p * (size_t)n + j0;
                    for (int j = 0; j < GEMM_NC; j++) acc[j] += av * bp[j];
                }
            } else {
                for (int p = 0; p < k; p++) {
                    const float av = ai[p], *bp = b + (size_t)p * (size_t)n + j0;
                    for (int j = 0; j < nc; j++) acc[j] += av * bp[j];
                }
            }
            memcpy(ci + j0, acc, (size_t)nc * sizeof(float));
        }
    }
}

/* t (cols, rows) = xᵀ for x (rows, cols) */
static void transpose(float *t, const float *x, int rows, int cols)
{
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++) t[(size_t)j * (size_t)rows + (size_t)i] = x[(size_t)i * (size_t)cols + (size_t)j];
}

/* out (T, OC) = inp (T, C) w (C, OC) + b */
static void linear_forward(float *out, const float *inp, const float *w, const float *b, int T, int C, int OC, int nt)
{
    gemm(out, inp, w, b, 0, T, OC, C, nt);
}

/* from out = inp w + b:
   dinp (T, C) = dout wᵀ (overwritten), dw (C, OC) += inpᵀ dout, db (OC) += Σ_t dout.
   wt holds C OC floats, xt T C floats of scratch. */
static void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            int T, int C, int OC, float *wt, float *xt, int nt)
{
    transpose(wt, w, C, OC);
    gemm(dinp, dout, wt, NULL, 0, T, C, OC, nt);
    transpose(xt, inp, T, C);
    gemm(dw, xt, dout, NULL, 1, C, OC, T, nt);
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OC; o++) db[o] += dout[(size_t)t * (size_t)OC + (size_t)o];
}

/* out = (x - mean) * rstd * w + b per row of E, rstd = 1 / sqrt(var + 1e-5) */
static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                              int T, int E)
{
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * (size_t)E;
        float *o = out + (size_t)t * (size_t)E;
        float m = 0, v = 0;
        for (int e = 0; e < E; e++) m += x[e];
        m /= (float)E;
        for (int e = 0; e < E; e++) v += (x[e] - m) * (x[e] - m);
        float s = 1.0f / sqrtf(v / (float)E + 1e-5f);
        for (int e = 0; e < E; e++) o[e] = (x[e] - m) * s * w[e] + b[e];
        mean[t] = m, rstd[t] = s;
    }
}

/* from out = xhat * w + b, xhat = (x - mean) * rstd:
   dxhat = dout * w;  dinp += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
   dw += Σ_t dout * xhat;  db += Σ_t dout */
static void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                               const float *mean, const float *rstd, int T, int E)
{
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * (size_t)E, *dy = dout + (size_t)t * (size_t)E;
        float *dx = dinp + (size_t)t * (size_t)E;
        float m = mean[t], s = rstd[t], mg = 0, mgx = 0;
        for (int e = 0; e < E; e++) {
            float g = dy[e] * w[e];
            mg += g, mgx += g * (x[e] - m) * s;
        }
        mg /= (float)E, mgx /= (float)E;
        for (int e = 0; e < E; e++) {
            float xhat = (x[e] - m) * s;
            dx[e] += s * (dy[e] * w[e] - mg - xhat * mgx);
        }
    }
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * (size_t)E, *dy = dout + (size_t)t * (size_t)E;
        for (int e = 0; e < E; e++) dw[e] += dy[e] * (x[e] - mean[t]) * rstd[t], db[e] += dy[e];
    }
}

/* out = max(x, 0) */
static void relu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : 0.0f;
}

/* from out = max(x, 0): dinp = dout where x > 0, else 0 */
static void relu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] = inp[i] > 0 ? dout[i] : 0.0f;
}

/* x (B, N, E) = tok[tokens] + pos[position] */
static void embed_forward(float *x, const int *tokens, const float *tok, const float *pos, int B, int N, int E)
{
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++) {
            const float *te = tok + (size_t)tokens[b * N + i] * (size_t)E, *pe = pos + (size_t)i * (size_t)E;
            float *o = x + ((size_t)b * (size_t)N + (size_t)i) * (size_t)E;
            for (int e = 0; e < E; e++) o[e] = te[e] + pe[e];
        }
}

/* from x = tok[tokens] + pos: dtok[token] += dx, dpos[position] += dx */
static void embed_backward(float *dtok, float *dpos, const float *dx, const int *tokens, int B, int N, int E)
{
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++) {
            const float *d = dx + ((size_t)b * (size_t)N + (size_t)i) * (size_t)E;
            float *dt = dtok + (size_t)tokens[b * N + i] * (size_t)E, *dp = dpos + (size_t)i * (size_t)E;
            for (int e = 0; e < E; e++) dt[e] += d[e], dp[e] += d[e];
        }
}

/* probs = softmax(logits) per row, in place; with targets, the summed -log p[target]
   and the count of rows whose argmax is the target */
static void softmax_loss(float *probs, const int *targets, int *argmax, int T, int V, double *loss, int *correct)
{
    double L = 0;
    int ok = 0;
    for (int t = 0; t < T; t++) {
        float *p = probs + (size_t)t * (size_t)V, mx = p[0], sum = 0;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (p[v] > mx) mx = p[v], best = v;
        for (int v = 0; v < V; v++) sum += (p[v] = expf(p[v] - mx));
        for (int v = 0; v < V; v++) p[v] /= sum;
        if (argmax) argmax[t] = best;
        if (targets) {
            L -= log((double)p[targets[t]] > 1e-30 ? (double)p[targets[t]] : 1e-30);
            ok += best == targets[t];
        }
    }
    *loss = L, *correct = ok;
}

/* from loss = mean_t -log softmax(logits)[target]: dlogits = (probs - onehot) / T */
static void softmax_loss_backward(float *dlogits, const float *probs, const int *targets, int T, int V)
{
    for (int t = 0; t < T; t++)
        for (int v = 0; v < V; v++)
            dlogits[(size_t)t * (size_t)V + (size_t)v] =
                (probs[(size_t)t * (size_t)V + (size_t)v] - (v == targets[t] ? 1.0f : 0.0f)) / (float)T;
}

/* ---- the model ---- */

int model_create(model **out, const model_config *cfg, int max_batch, uint64_t seed, char *err, size_t errlen)
{
    *out = NULL;
    const model_config *c = cfg;
    if (c->vocab < 2 || c->seq < 1 || c->embed < 1 || c->heads < 1 || c->embed % c->heads || c->blocks < 1 ||
        c->blocks > MODEL_MAX_BLOCKS || c->hidden < 1 || max_batch < 1 || c->vocab > 1 << 16 || c->seq > 1 << 16 ||
        c->embed > 1 << 14 || c->hidden > 1 << 16 || (int64_t)max_batch * c->seq > 1 << 24) {
        snprintf(err, errlen, "unusable model configuration");
        return -1;
    }
    model *m = calloc(1, sizeof *m);
    if (!m) return snprintf(err, errlen, "out of memory"), -1;
    m->c = *c, m->max_batch = max_batch, m->threads = sattn_get_num_threads();
    m->nparams = bind_weights(c, &m->w, NULL);
    size_t nact = bind_activations(c, max_batch, &m->act, NULL), T = (size_t)max_batch * (size_t)c->seq;
    m->params = calloc(m->nparams, sizeof(float)), m->grads = calloc(m->nparams, sizeof(float));
    m->m1 = calloc(m->nparams, sizeof(float)), m->m2 = calloc(m->nparams, sizeof(float));
    m->act_mem = calloc(nact, sizeof(float));
    m->tokens = calloc(T, sizeof(int)), m->targets = calloc(T, sizeof(int));
    if (!m->params || !m->grads || !m->m1 || !m->m2 || !m->act_mem || !m->tokens || !m->targets) {
        model_free(m);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    bind_weights(c, &m->w, m->params), bind_weights(c, &m->g, m->grads);
    bind_activations(c, max_batch, &m->act, m->act_mem);

    /* initial weights, as PyTorch draws them: Linear U(±1/sqrt(fan_in)), the attention's
       in_proj Xavier-uniform, biases 0, layernorm 1 and 0; embeddings of variance about 1
       (nn.Embedding's N(0, 1), drawn uniform) */
    const int V = c->vocab, N = c->seq, E = c->embed, F = c->hidden;
    uint64_t s = seed;
    const float ie = 1.0f / sqrtf((float)E), iff = 1.0f / sqrtf((float)F);
    for (int i = 0; i < V * E; i++) m->w.tok[i] = rng_uniform(&s, -1.7f, 1.7f);
    for (int i = 0; i < N * E; i++) m->w.pos[i] = rng_uniform(&s, -1.7f, 1.7f);
    for (int l = 0; l < c->blocks; l++) {
        block_weights *b = &m->w.blk[l];
        for (int e = 0; e < E; e++) b->ln1_w[e] = b->ln2_w[e] = 1.0f;
        for (int i = 0; i < E * F; i++) b->w1[i] = rng_uniform(&s, -ie, ie);
        for (int i = 0; i < F * E; i++) b->w2[i] = rng_uniform(&s, -iff, iff);
        sattn_mha_config mc = {E, c->heads, 0, 0, 1, SATTN_F32};
        if (sattn_mha_create(&m->attn[l], &mc) != SATTN_OK) {
            snprintf(err, errlen, "attention layer: %s", sattn_last_error());
            model_free(m);
            return -1;
        }
        int64_t n;
        float *wi = sattn_mha_param(m->attn[l], "in_proj_weight", &n);
        const float xavier = sqrtf(6.0f / (float)(E + 3 * E));
        for (int64_t i = 0; i < n; i++) wi[i] = rng_uniform(&s, -xavier, xavier);
        float *wo = sattn_mha_param(m->attn[l], "out_proj.weight", &n);
        for (int64_t i = 0; i < n; i++) wo[i] = rng_uniform(&s, -ie, ie);
        sattn_mha_param(m->attn[l], NULL, &m->attn_n);
        m->attn_m1[l] = calloc((size_t)m->attn_n, sizeof(float));
        m->attn_m2[l] = calloc((size_t)m->attn_n, sizeof(float));
        if (!m->attn_m1[l] || !m->attn_m2[l]) {
            model_free(m);
            return snprintf(err, errlen, "out of memory"), -1;
        }
    }
    for (int e = 0; e < E; e++) m->w.lnf_w[e] = 1.0f;
    for (int i = 0; i < E * V; i++) m->w.wh[i] = rng_uniform(&s, -ie, ie);
    *out = m;
    return 0;
}

void model_free(model *m)
{
    if (!m) return;
    for (int l = 0; l < MODEL_MAX_BLOCKS; l++) {
        sattn_mha_free(m->attn[l]);
        free(m->attn_m1[l]), free(m->attn_m2[l]);
    }
    free(m->params), free(m->grads), free(m->m1), free(m->m2), free(m->act_mem), free(m->tokens), free(m->targets);
    free(m);
}

int model_forward(model *m, const int *tokens, const int *targets, int batch, float *loss, int *correct,
                  int *predictions)
{
    const model_config *c = &m->c;
    const int N = c->seq, E = c->embed, F = c->hidden, V = c->vocab, nt = m->threads;
    if (batch < 1 || batch > m->max_batch) return -1;
    const int T = batch * N;
    activations *a = &m->act;
    memcpy(m->tokens, tokens, (size_t)T * sizeof(int));
    m->has_targets = targets != NULL;
    if (targets) memcpy(m->targets, targets, (size_t)T * sizeof(int));
    m->batch = batch;

    embed_forward(a->x[0], tokens, m->w.tok, m->w.pos, batch, N, E);
    for (int l = 0; l < c->blocks; l++) {
        const block_weights *w = &m->w.blk[l];
        /* mid = x + attention(layernorm(x)) */
        layernorm_forward(a->ln1[l], a->mean1[l], a->rstd1[l], a->x[l], w->ln1_w, w->ln1_b, T, E);
        if (sattn_mha_forward(m->attn[l], NULL, batch, N, a->ln1[l], a->att[l]) != SATTN_OK) return -1;
        for (size_t i = 0; i < (size_t)T * (size_t)E; i++) a->mid[l][i] = a->x[l][i] + a->att[l][i];
        /* x' = mid + W2 relu(W1 layernorm(mid) + b1) + b2 */
        layernorm_forward(a->ln2[l], a->mean2[l], a->rstd2[l], a->mid[l], w->ln2_w, w->ln2_b, T, E);
        linear_forward(a->h[l], a->ln2[l], w->w1, w->b1, T, E, F, nt);
        relu_forward(a->a[l], a->h[l], (size_t)T * (size_t)F);
        linear_forward(a->x[l + 1], a->a[l], w->w2, w->b2, T, F, E, nt);
        for (size_t i = 0; i < (size_t)T * (size_t)E; i++) a->x[l + 1][i] += a->mid[l][i];
    }
    layernorm_forward(a->lnf, a->meanf, a->rstdf, a->x[c->blocks], m->w.lnf_w, m->w.lnf_b, T, E);
    linear_forward(a->probs, a->lnf, m->w.wh, m->w.bh, T, E, V, nt); /* the logits, then softmax in place */
    double L;
    int ok;
    softmax_loss(a->probs, targets, predictions, T, V, &L, &ok);
    if (loss) *loss = (float)(L / T);
    if (correct) *correct = ok;
    return 0;
}

int model_backward(model *m)
{
    const model_config *c = &m->c;
    const int N = c->seq, E = c->embed, F = c->hidden, V = c->vocab, nt = m->threads, batch = m->batch;
    if (!batch || !m->has_targets) return -1;
    const int T = batch * N;
    activations *a = &m->act;
    memset(m->grads, 0, m->nparams * sizeof(float));
    for (int l = 0; l < c->blocks; l++) sattn_mha_zero_grad(m->attn[l]);

    /* head: logits = lnf Wh + bh, lnf = layernorm(x[L]); dx = the stream's gradient */
    softmax_loss_backward(a->dlogits, a->probs, m->targets, T, V);
    linear_backward(a->dln, m->g.wh, m->g.bh, a->dlogits, a->lnf, m->w.wh, T, E, V, a->wt, a->xt, nt);
    memset(a->dx, 0, (size_t)T * (size_t)E * sizeof(float));
    layernorm_backward(a->dx, m->g.lnf_w, m->g.lnf_b, a->dln, a->x[c->blocks], m->w.lnf_w, a->meanf, a->rstdf, T, E);
    for (int l = c->blocks - 1; l >= 0; l--) {
        const block_weights *w = &m->w.blk[l];
        block_weights *g = &m->g.blk[l];
        /* x' = mid + W2 relu(W1 ln2 + b1) + b2: dx is dx' and becomes dmid */
        linear_backward(a->da, g->w2, g->b2, a->dx, a->a[l], w->w2, T, F, E, a->wt, a->xt, nt);
        relu_backward(a->dh, a->da, a->h[l], (size_t)T * (size_t)F);
        linear_backward(a->dln, g->w1, g->b1, a->dh, a->ln2[l], w->w1, T, E, F, a->wt, a->xt, nt);
        layernorm_backward(a->dx, g->ln2_w, g->ln2_b, a->dln, a->mid[l], w->ln2_w, a->mean2[l], a->rstd2[l], T, E);
        /* mid = x + attention(ln1): dx is dmid and becomes dx */
        if (sattn_mha_backward(m->attn[l], NULL, batch, N, a->ln1[l], a->dx, a->dln) != SATTN_OK) return -1;
        layernorm_backward(a->dx, g->ln1_w, g->ln1_b, a->dln, a->x[l], w->ln1_w, a->mean1[l], a->rstd1[l], T, E);
    }
    embed_backward(m->g.tok, m->g.pos, a->dx, m->tokens, batch, N, E);
    return 0;
}

static void adam_update(float *w, const float *g, float *m1, float *m2, size_t n, float lr, float scale, float c1,
                        float c2)
{
    const float b1 = 0.9f, b2 = 0.98f, eps = 1e-8f;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * scale;
        m1[i] = b1 * m1[i] + (1 - b1) * gi;
        m2[i] = b2 * m2[i] + (1 - b2) * gi * gi;
        w[i] -= lr * (m1[i] / c1) / (sqrtf(m2[i] / c2) + eps);
    }
}

float model_adam(model *m, float lr, float clip)
{
    double sq = 0;
    for (size_t i = 0; i < m->nparams; i++) sq += (double)m->grads[i] * m->grads[i];
    for (int l = 0; l < m->c.blocks; l++) {
        const float *g = sattn_mha_grad(m->attn[l], NULL, NULL);
        for (int64_t i = 0; i < m->attn_n; i++) sq += (double)g[i] * g[i];
    }
    float norm = (float)sqrt(sq), scale = clip > 0 && norm > clip ? clip / norm : 1.0f;
    m->step++;
    const float c1 = 1.0f - powf(0.9f, (float)m->step), c2 = 1.0f - powf(0.98f, (float)m->step);
    adam_update(m->params, m->grads, m->m1, m->m2, m->nparams, lr, scale, c1, c2);
    for (int l = 0; l < m->c.blocks; l++)
        adam_update(sattn_mha_param(m->attn[l], NULL, NULL), sattn_mha_grad(m->attn[l], NULL, NULL), m->attn_m1[l],
                    m->attn_m2[l], (size_t)m->attn_n, lr, scale, c1, c2);
    return norm;
}

int model_attention(model *m, int block, int s, float *w)
{
    const int N = m->c.seq, H = m->c.heads;
    if (block < 0 || block >= m->c.blocks || s < 0 || s >= m->batch) return -1;
    const size_t per = (size_t)H * (size_t)N * (size_t)N;
    float *all = malloc(per * (size_t)m->batch * sizeof(float));
    if (!all) return -1;
    int r = sattn_mha_attention_weights(m->attn[block], 0, N, 0, all) == SATTN_OK ? 0 : -1;
    if (!r) memcpy(w, all + per * (size_t)s, per * sizeof(float));
    free(all);
    return r;
}

/* ---- parameters by name ---- */

int model_tensors(model *m, model_tensor *t, int max)
{
    const model_config *c = &m->c;
    const int64_t V = c->vocab, N = c->seq, E = c->embed, F = c->hidden;
    int n = 0;
#define ADD(nm, wp, gp, cnt)                                                                                      \
    do {                                                                                                      \
        if (t && n < max) {                                                                                   \
            snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                                  \
            t[n].w = wp, t[n].g = gp, t[n].n = cnt;                                                           \
        }                                                                                                     \
        n++;                                                                                                  \
    } while (0)
    ADD("tok", m->w.tok, m->g.tok, V * E);
    ADD("pos", m->w.pos, m->g.pos, N * E);
    for (int l = 0; l < c->blocks; l++) {
        char nm[32];
        const block_weights *w = &m->w.blk[l];
        const block_weights *g = &m->g.blk[l];
#define BLK(field, cnt)                                                                                          \
    snprintf(nm, sizeof nm, "block%d.%s", l, #field);                                                         \
    ADD(nm, w->field, g->field, cnt);
        BLK(ln1_w, E) BLK(ln1_b, E) BLK(ln2_w, E) BLK(ln2_b, E) BLK(w1, E * F) BLK(b1, F) BLK(w2, F * E) BLK(b2, E)
#undef BLK
        int64_t na;
        snprintf(nm, sizeof nm, "block%d.attn", l);
        ADD(nm, sattn_mha_param(m->attn[l], NULL, &na), sattn_mha_grad(m->attn[l], NULL, NULL), na);
    }
    ADD("lnf_w", m->w.lnf_w, m->g.lnf_w, E);
    ADD("lnf_b", m->w.lnf_b, m->g.lnf_b, E);
    ADD("wh", m->w.wh, m->g.wh, E * V);
    ADD("bh", m->w.bh, m->g.bh, V);
#undef ADD
    return n;
}

int64_t model_parameters(const model *m) { return (int64_t)m->nparams + m->c.blocks * m->attn_n; }
