/* test_train: a one-layer attention model learns a task that needs attention.
 *
 * The task: a sequence of N - 1 random symbols (of V) followed by a pointer token
 * naming a position p < N - 1; the answer at the last position is the symbol at p.
 * Nothing at the last position says what that symbol is, so the model can only
 * answer by attending to position p: a bag of embeddings or an MLP cannot.
 *
 * The model, all trained with Adam:
 *     x_i    = tok[token_i] + pos[i]                (embeddings, E wide)
 *     h      = x + mha(x)                           (sattn layer, causal, biases)
 *     logits = h_last Whᵀ + bh                      (V classes)
 *     loss   = cross-entropy of the logits against the symbol at p
 * The test passes when the training loss falls from ln(V) to near zero and the
 * held-out accuracy reaches 99%: that needs every gradient the layer returns
 * (dx, and each parameter's) to be right. It runs in a few seconds.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { V = 8, N = 8, E = 32, HEADS = 4, BATCH = 32, STEPS = 600, VOCAB = V + N };

typedef struct {
    float *w, *g, *m, *v;
    int64_t n;
} tensor;

static void tensor_init(tensor *t, int64_t n, float *w, float *g)
{
    t->n = n, t->w = w, t->g = g;
    t->m = calloc((size_t)n, sizeof(float)), t->v = calloc((size_t)n, sizeof(float));
}

/* Adam (Kingma & Ba) with bias correction. */
static void adam(tensor *t, int step, float lr)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    const float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
    for (int64_t i = 0; i < t->n; i++) {
        t->m[i] = b1 * t->m[i] + (1 - b1) * t->g[i];
        t->v[i] = b2 * t->v[i] + (1 - b2) * t->g[i] * t->g[i];
        t->w[i] -= lr * (t->m[i] / c1) / (sqrtf(t->v[i] / c2) + eps);
    }
}

static void make_batch(tu_rng *r, int tokens[BATCH][N], int answer[BATCH])
{
    for (int b = 0; b < BATCH; b++) {
        for (int i = 0; i < N - 1; i++) tokens[b][i] = (int)tu_range(r, 0, V - 1);
        int p = (int)tu_range(r, 0, N - 2);
        tokens[b][N - 1] = V + p; /* the pointer token for position p */
        answer[b] = tokens[b][p];
    }
}

int main(void)
{
    tu_begin();
    tu_rng r;
    tu_seed(&r, 2024);

    sattn_mha *layer = NULL;
    sattn_mha_config cfg = {E, HEADS, 0, 0, 1, SATTN_F32};
    if (sattn_mha_create(&layer, &cfg) != SATTN_OK) {
        fprintf(stderr, "create: %s\n", sattn_last_error());
        return 1;
    }
    int64_t nl;
    float *lw = sattn_mha_param(layer, NULL, &nl);
    const float a = 1.0f / sqrtf((float)E);
    for (int64_t i = 0; i < nl; i++) lw[i] = (float)tu_unif(&r, -a, a);
    /* the biases start at 0, as torch starts them */
    int64_t nb;
    float *b_in = sattn_mha_param(layer, "in_proj_bias", &nb);
    memset(b_in, 0, sizeof(float) * (size_t)nb);
    float *b_out = sattn_mha_param(layer, "out_proj.bias", &nb);
    memset(b_out, 0, sizeof(float) * (size_t)nb);

    static float tok[VOCAB * E], pos[N * E], wh[V * E], bh[V];
    static float gtok[VOCAB * E], gpos[N * E], gwh[V * E], gbh[V];
    for (int i = 0; i < VOCAB * E; i++) tok[i] = (float)tu_unif(&r, -1, 1);
    for (int i = 0; i < N * E; i++) pos[i] = (float)tu_unif(&r, -1, 1);
    for (int i = 0; i < V * E; i++) wh[i] = (float)tu_unif(&r, -a, a);
    tensor ts[5];
    tensor_init(&ts[0], nl, lw, sattn_mha_grad(layer, NULL, NULL));
    tensor_init(&ts[1], VOCAB * E, tok, gtok);
    tensor_init(&ts[2], N * E, pos, gpos);
    tensor_init(&ts[3], V * E, wh, gwh);
    tensor_init(&ts[4], V, bh, gbh);

    sattn_params opts;
    memset(&opts, 0, sizeof opts);
    opts.causal = SATTN_CAUSAL_TOP_LEFT;
    static float x[BATCH * N * E], y[BATCH * N * E], dy[BATCH * N * E], dx[BATCH * N * E];
    int tokens[BATCH][N], answer[BATCH];
    double first = 0, last = 0;
    for (int step = 1; step <= STEPS; step++) {
        make_batch(&r, tokens, answer);
        for (int b = 0; b < BATCH; b++)
            for (int i = 0; i < N; i++)
                for (int e = 0; e < E; e++) x[(b * N + i) * E + e] = tok[tokens[b][i] * E + e] + pos[i * E + e];
        if (sattn_mha_forward(layer, &opts, BATCH, N, x, y) != SATTN_OK) {
            fprintf(stderr, "forward: %s\n", sattn_last_error());
            return 1;
        }
        /* head on h = x + y at the last position; loss and its gradient */
        double L = 0;
        memset(dy, 0, sizeof dy), memset(gwh, 0, sizeof gwh), memset(gbh, 0, sizeof gbh);
        for (int b = 0; b < BATCH; b++) {
            const float *xl = x + (b * N + N - 1) * E, *yl = y + (b * N + N - 1) * E;
            float h[E], logit[V], mx = -INFINITY, sum = 0;
            for (int e = 0; e < E; e++) h[e] = xl[e] + yl[e];
            for (int c = 0; c < V; c++) {
                logit[c] = bh[c];
                for (int e = 0; e < E; e++) logit[c] += wh[c * E + e] * h[e];
                mx = logit[c] > mx ? logit[c] : mx;
            }
            for (int c = 0; c < V; c++) sum += expf(logit[c] - mx);
            L -= (logit[answer[b]] - mx - logf(sum)) / BATCH;
            float *dyl = dy + (b * N + N - 1) * E;
            for (int c = 0; c < V; c++) {
                float d = (expf(logit[c] - mx) / sum - (c == answer[b])) / BATCH; /* dL/dlogit */
                gbh[c] += d;
                for (int e = 0; e < E; e++) gwh[c * E + e] += d * h[e], dyl[e] += d * wh[c * E + e];
            }
        }
        sattn_mha_zero_grad(layer);
        if (sattn_mha_backward(layer, &opts, BATCH, N, x, dy, dx) != SATTN_OK) {
            fprintf(stderr, "backward: %s\n", sattn_last_error());
            return 1;
        }
        /* h = x + mha(x): x's gradient is dy (the residual) + dx; then into the embeddings */
        memset(gtok, 0, sizeof gtok), memset(gpos, 0, sizeof gpos);
        for (int b = 0; b < BATCH; b++)
            for (int i = 0; i < N; i++)
                for (int e = 0; e < E; e++) {
                    float g = dx[(b * N + i) * E + e] + dy[(b * N + i) * E + e];
                    gtok[tokens[b][i] * E + e] += g, gpos[i * E + e] += g;
                }
        for (int t = 0; t < 5; t++) adam(&ts[t], step, 3e-3f);
        if (step <= 10) first += L / 10;
        if (step > STEPS - 20) last += L / 20;
        if (step % 100 == 0) printf("step %4d  loss %.4f\n", step, L);
    }

    /* held-out sequences */
    int correct = 0, total = 0;
    for (int rep = 0; rep < 20; rep++) {
        make_batch(&r, tokens, answer);
        for (int b = 0; b < BATCH; b++)
            for (int i = 0; i < N; i++)
                for (int e = 0; e < E; e++) x[(b * N + i) * E + e] = tok[tokens[b][i] * E + e] + pos[i * E + e];
        sattn_mha_forward(layer, &opts, BATCH, N, x, y);
        for (int b = 0; b < BATCH; b++) {
            const float *xl = x + (b * N + N - 1) * E, *yl = y + (b * N + N - 1) * E;
            int best = 0;
            float bestv = -INFINITY;
            for (int c = 0; c < V; c++) {
                float l = bh[c];
                for (int e = 0; e < E; e++) l += wh[c * E + e] * (xl[e] + yl[e]);
                if (l > bestv) bestv = l, best = c;
            }
            correct += best == answer[b], total++;
        }
    }
    double acc = (double)correct / total;
    printf("loss: first 10 steps %.3f (ln %d = %.3f), last 20 steps %.4f; held-out accuracy %.2f%%\n", first, V,
           log((double)V), last, 100 * acc);
    tu_check(first > 1.5, "the untrained loss %.3f should be near ln(V)", first);
    tu_check(last < 0.05, "the loss after %d steps is %.4f, not near zero", STEPS, last);
    tu_check(acc >= 0.99, "held-out accuracy %.2f%% < 99%%", 100 * acc);

    for (int t = 0; t < 5; t++) free(ts[t].m), free(ts[t].v);
    sattn_mha_free(layer);
    return tu_summary("train");
}
