/* libsattn_sp under mpiexec -n P: every method x shard x mask kind x GQA x dropout x
 * head dim, against sattn_forward / sattn_backward of the whole sequence (each rank
 * computes that itself from the same generated inputs and checks its shard's rows).
 *
 * Tolerances (f32 storage), each against the tensor's scale:
 *   out   5e-6 of max(1, max|out|): the ring merges partial outputs through f32 lse,
 *         a relative error of about |lse| 2^-24 per step (|lse| < 12 here: < 1e-6
 *         per merge, P merges), on top of the kernels' own f32 rounding (~1e-7);
 *   lse   1e-5 of max(1, |lse|);
 *   grads 2e-5 of max|grad| of the tensor: the shares of P blocks summed in f32.
 * 16-bit storage: outputs are rounded once at the end from f32 math, as sattn_forward
 * rounds its own, so the two may differ by one rounding: 2^-8 (bf16) / 2^-11 (f16)
 * relative, plus the f32 tolerance.
 * Also: two calls give the same bits; errors are collective (a bad argument on one
 * rank, parameters that differ between ranks, unsupported options) and leave every
 * output untouched. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sattn_ref.h"
#include "sattn_sp.h"

static int P, rank;
static long checks, failures;

static int check(int ok, const char *fmt, const char *what)
{
    checks++;
    if (!ok) {
        failures++;
        printf("rank %d FAIL: %s%s\n", rank, fmt, what ? what : "");
    }
    return ok;
}

/* ---- data ---- */

static uint64_t rng_state;
static double unif(void)
{
    rng_state += 0x9e3779b97f4a7c15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53;
}

/* stored values in and out: the reference's conversions (tests/ref) */
static float to_f(const void *b, int64_t e, sattn_dtype dt) { return (float)sattn_ref_load(dt, b, e); }
static void store_f(void *b, int64_t e, float x, sattn_dtype dt) { sattn_ref_store(dt, b, e, x); }
static size_t esize(sattn_dtype dt) { return (size_t)sattn_ref_dtype_size(dt); }

/* ---- shards ---- */

/* global row of local row i of rank x's shard */
static int64_t global_row(sattn_sp_shard sh, int64_t S, int x, int64_t i)
{
    if (sh == SATTN_SP_CONTIGUOUS) return x * (S / P) + i;
    int64_t c = S / (2 * P);
    return i < c ? x * c + i : (2 * (int64_t)P - 1 - x) * c + (i - c);
}

/* local (B, n, H, dim) with strides st[] <- rows of the global packed (B, S, H, dim) */
static void take_shard(void *loc, const int64_t st[3], const void *glob, sattn_sp_shard sh, int64_t B, int64_t S,
                       int64_t H, int64_t dim, sattn_dtype dt)
{
    const int64_t n = S / P;
    const size_t es = esize(dt);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t h = 0; h < H; h++)
                memcpy((char *)loc + (size_t)(b * st[0] + i * st[1] + h * st[2]) * es,
                       (const char *)glob + (size_t)(((b * S + global_row(sh, S, rank, i)) * H + h) * dim) * es,
                       (size_t)dim * es);
}

/* max |loc - ref| over the shard, and max |ref| over the whole tensor */
static void diff_shard(const void *loc, const int64_t st[3], const void *glob, sattn_sp_shard sh, int64_t B,
                       int64_t S, int64_t H, int64_t dim, sattn_dtype dt, double *err, double *scale)
{
    const int64_t n = S / P;
    *err = 0;
    *scale = 0;
    for (int64_t x = 0; x < B * S * H * dim; x++) *scale = fmax(*scale, fabs(to_f(glob, x, dt)));
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t e = 0; e < dim; e++) {
                    double a = to_f(loc, b * st[0] + i * st[1] + h * st[2] + e, dt);
                    double r = to_f(glob, ((b * S + global_row(sh, S, rank, i)) * H + h) * dim + e, dt);
                    double df = fabs(a - r);
                    if (!(df <= *err)) *err = isnan(df) ? INFINITY : df;
                }
}

/* ---- one case ---- */

typedef struct {
    sattn_sp_method method;
    sattn_sp_shard shard;
    int64_t B, Sq, Skv, Hq, Hkv, d;
    sattn_causal causal;
    int64_t wl, wr;
    int seqlens, alibi, bhsd;
    float softcap, dropout;
    sattn_dtype dt;
} spec;

static const char *mname(sattn_sp_method m) { return m == SATTN_SP_RING ? "ring" : "ulysses"; }

static int run_case(const spec *s, int backward)
{
    char label[256];
    snprintf(label, sizeof label,
             " [%s %s B%lld Sq%lld Skv%lld H%lld/%lld d%lld causal%d win(%lld,%lld) seqlens%d alibi%d softcap%g "
             "dropout%g dtype%d bhsd%d]",
             mname(s->method), s->shard ? "zigzag" : "contiguous", (long long)s->B, (long long)s->Sq,
             (long long)s->Skv, (long long)s->Hq, (long long)s->Hkv, (long long)s->d, (int)s->causal,
             (long long)s->wl, (long long)s->wr, s->seqlens, s->alibi, (double)s->softcap, (double)s->dropout,
             (int)s->dt, s->bhsd);
    const sattn_dtype dt = s->dt;
    const size_t es = esize(dt);
    const int64_t B = s->B, Sq = s->Sq, Skv = s->Skv, Hq = s->Hq, Hkv = s->Hkv, d = s->d;
    const int64_t nq = Sq / P, nkv = Skv / P;
    int32_t lq[4], lk[4];
    float slopes[64];
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = B, p.seq_q = Sq, p.seq_kv = Skv, p.heads_q = Hq, p.heads_kv = Hkv, p.head_dim = d, p.dtype = dt;
    p.causal = s->causal, p.window_left = s->wl, p.window_right = s->wr, p.softcap = s->softcap;
    p.dropout_p = s->dropout, p.seed = 0x5eed0000u + (uint64_t)Sq;
    rng_state = 1234567 + (uint64_t)(Sq * 131 + Skv * 7 + Hq * 3 + d);
    if (s->seqlens)
        for (int64_t b = 0; b < B; b++) {
            lq[b] = (int32_t)(b == 0 ? Sq : unif() * (double)(Sq + 1));
            lk[b] = (int32_t)(b == 0 ? Skv - 1 : unif() * (double)(Skv + 1));
            p.seqlens_q = lq, p.seqlens_kv = lk;
        }
    if (s->alibi) {
        for (int64_t h = 0; h < Hq; h++) slopes[h] = 0.5f / (float)(h + 1);
        p.alibi_slopes = slopes;
    }
    /* the whole problem, packed, on every rank */
    const int64_t nQ = B * Sq * Hq * d, nK = B * Skv * Hkv * d, nO = B * Sq * Hq * d;
    void *Q = malloc(nQ * es), *K = malloc(nK * es), *V = malloc(nK * es), *DO = malloc(nO * es);
    void *O = malloc(nO * es), *DQ = malloc(nQ * es), *DK = malloc(nK * es), *DV = malloc(nK * es);
    float *L = malloc(sizeof(float) * (size_t)(B * Hq * Sq + 1));
    for (int64_t x = 0; x < nQ; x++) store_f(Q, x, (float)(unif() * 2 - 1), dt);
    for (int64_t x = 0; x < nK; x++) store_f(K, x, (float)(unif() * 2 - 1), dt);
    for (int64_t x = 0; x < nK; x++) store_f(V, x, (float)(unif() * 2 - 1), dt);
    for (int64_t x = 0; x < nO; x++) store_f(DO, x, (float)(unif() * 2 - 1), dt);
    int ok = 1;
    ok &= check(sattn_forward(&p, Q, K, V, O, L) == SATTN_OK, "reference forward failed", label);
    if (backward) ok &= check(sattn_backward(&p, Q, K, V, O, L, DO, DQ, DK, DV) == SATTN_OK, "reference backward", label);

    /* this rank's shards */
    sattn_params ps = p;
    if (s->bhsd) { /* (batch, head, seq, dim) shards */
        ps.q_stride[0] = Hq * nq * d, ps.q_stride[1] = d, ps.q_stride[2] = nq * d;
        ps.o_stride[0] = Hq * nq * d, ps.o_stride[1] = d, ps.o_stride[2] = nq * d;
        ps.k_stride[0] = Hkv * nkv * d, ps.k_stride[1] = d, ps.k_stride[2] = nkv * d;
        memcpy(ps.v_stride, ps.k_stride, sizeof ps.k_stride);
    }
    int64_t qs[3] = {nq * Hq * d, Hq * d, d}, ks[3] = {nkv * Hkv * d, Hkv * d, d};
    if (s->bhsd) memcpy(qs, ps.q_stride, sizeof qs), memcpy(ks, ps.k_stride, sizeof ks);
    const int64_t lq_n = B * nq * Hq * d, lk_n = B * nkv * Hkv * d;
    void *q = malloc(lq_n * es + 1), *k = malloc(lk_n * es + 1), *v = malloc(lk_n * es + 1),
         *dout = malloc(lq_n * es + 1), *out = malloc(lq_n * es + 1), *dq = malloc(lq_n * es + 1),
         *dk = malloc(lk_n * es + 1), *dv = malloc(lk_n * es + 1);
    float *lse = malloc(sizeof(float) * (size_t)(B * Hq * nq + 1));
    take_shard(q, qs, Q, s->shard, B, Sq, Hq, d, dt);
    take_shard(k, ks, K, s->shard, B, Skv, Hkv, d, dt);
    take_shard(v, ks, V, s->shard, B, Skv, Hkv, d, dt);
    take_shard(dout, qs, DO, s->shard, B, Sq, Hq, d, dt);

    sattn_status st = sattn_sp_forward(MPI_COMM_WORLD, s->method, s->shard, &ps, q, k, v, out, lse);
    ok &= check(st == SATTN_OK, "sattn_sp_forward failed: ", sattn_sp_last_error());
    const double rel = dt == SATTN_BF16 ? 0x1p-8 : dt == SATTN_F16 ? 0x1p-11 : 0;
    if (st == SATTN_OK) {
        double err, scale;
        diff_shard(out, qs, O, s->shard, B, Sq, Hq, d, dt, &err, &scale);
        char msg[512];
        snprintf(msg, sizeof msg, "out: max|err| %.3g over scale %.3g (tolerance %.3g)%s", err, scale,
                 (5e-6 + rel) * fmax(1, scale), label);
        ok &= check(err <= (5e-6 + rel) * fmax(1, scale), msg, NULL);
        double lerr = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t i = 0; i < nq; i++) {
                    float a = lse[(b * Hq + h) * nq + i], r = L[(b * Hq + h) * Sq + global_row(s->shard, Sq, rank, i)];
                    if (isinf(r) || isinf(a)) {
                        if (a != r) lerr = INFINITY;
                    } else {
                        lerr = fmax(lerr, fabs(a - r) / fmax(1, fabs(r)));
                    }
                }
        snprintf(msg, sizeof msg, "lse: max rel err %.3g (tolerance 1e-5)%s", lerr, label);
        ok &= check(lerr <= 1e-5, msg, NULL);
        /* deterministic: the same call, the same bits */
        void *out2 = malloc(lq_n * es + 1);
        float *lse2 = malloc(sizeof(float) * (size_t)(B * Hq * nq + 1));
        sattn_sp_forward(MPI_COMM_WORLD, s->method, s->shard, &ps, q, k, v, out2, lse2);
        ok &= check(!memcmp(out, out2, lq_n * es) && !memcmp(lse, lse2, sizeof(float) * (size_t)(B * Hq * nq)),
                    "two forwards differ", label);
        free(out2), free(lse2);
    }
    if (backward && st == SATTN_OK) {
        /* the backward takes this rank's rows of the reference's out and lse */
        take_shard(out, qs, O, s->shard, B, Sq, Hq, d, dt);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t i = 0; i < nq; i++)
                    lse[(b * Hq + h) * nq + i] = L[(b * Hq + h) * Sq + global_row(s->shard, Sq, rank, i)];
        st = sattn_sp_backward(MPI_COMM_WORLD, s->method, s->shard, &ps, q, k, v, out, lse, dout, dq, dk, dv);
        ok &= check(st == SATTN_OK, "sattn_sp_backward failed: ", sattn_sp_last_error());
        if (st == SATTN_OK) {
            const void *mine[3] = {dq, dk, dv}, *ref[3] = {DQ, DK, DV};
            const int64_t S3[3] = {Sq, Skv, Skv}, H3[3] = {Hq, Hkv, Hkv};
            const int64_t *st3[3] = {qs, ks, ks};
            static const char *nm[3] = {"dq", "dk", "dv"};
            for (int t = 0; t < 3; t++) {
                double err, scale;
                diff_shard(mine[t], st3[t], ref[t], s->shard, B, S3[t], H3[t], d, dt, &err, &scale);
                char msg[512];
                snprintf(msg, sizeof msg, "%s: max|err| %.3g over scale %.3g (tolerance %.3g)%s", nm[t], err, scale,
                         (2e-5 + 2 * rel) * scale, label);
                ok &= check(err <= (2e-5 + 2 * rel) * scale + 1e-30, msg, NULL);
            }
            void *dq2 = malloc(lq_n * es + 1);
            sattn_sp_backward(MPI_COMM_WORLD, s->method, s->shard, &ps, q, k, v, out, lse, dout, dq2, dk, dv);
            ok &= check(!memcmp(dq, dq2, lq_n * es), "two backwards differ", label);
            free(dq2);
        }
    }
    free(Q), free(K), free(V), free(DO), free(O), free(DQ), free(DK), free(DV), free(L);
    free(q), free(k), free(v), free(dout), free(out), free(dq), free(dk), free(dv), free(lse);
    return ok;
}

/* ---- collective errors ---- */

static void errors(void)
{
    const int64_t S = 8 * P, H = 2 * P, d = 8;
    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = 1, p.seq_q = S, p.seq_kv = S, p.heads_q = H, p.head_dim = d;
    const int64_t n = S / P * H * d;
    float *q = calloc(n, 4), *k = calloc(n, 4), *v = calloc(n, 4), *out = malloc(n * 4), *lse = malloc(4 * S / P * H);
    memset(out, 0x5a, n * 4);
    memset(lse, 0x5a, 4 * S / P * H);
    char msg[300];
    for (int m = 0; m < 2; m++) {
        /* a bad argument on the last rank only */
        sattn_status st = sattn_sp_forward(MPI_COMM_WORLD, (sattn_sp_method)m, SATTN_SP_ZIGZAG, &p,
                                           rank == P - 1 ? NULL : q, k, v, out, lse);
        snprintf(msg, sizeof msg, "%s, NULL q on rank %d: status %d, '%s'", mname((sattn_sp_method)m), P - 1, (int)st,
                 sattn_sp_last_error());
        check(st == SATTN_ERR_INVALID && (rank == P - 1 || strstr(sattn_sp_last_error(), "rank")), msg, NULL);
        /* parameters that differ between ranks */
        if (P > 1) {
            sattn_params pd = p;
            if (rank == 1) pd.scale = 0.5f;
            st = sattn_sp_forward(MPI_COMM_WORLD, (sattn_sp_method)m, SATTN_SP_CONTIGUOUS, &pd, q, k, v, out, lse);
            snprintf(msg, sizeof msg, "differing scale: status %d, '%s'", (int)st, sattn_sp_last_error());
            check(st == SATTN_ERR_INVALID && strstr(sattn_sp_last_error(), "scale"), msg, NULL);
            pd = p;
            pd.dropout_p = 0.1f;
            pd.seed = (uint64_t)rank;
            st = sattn_sp_forward(MPI_COMM_WORLD, (sattn_sp_method)m, SATTN_SP_CONTIGUOUS, &pd, q, k, v, out, lse);
            snprintf(msg, sizeof msg, "differing seed: status %d, '%s'", (int)st, sattn_sp_last_error());
            check(st == SATTN_ERR_INVALID && strstr(sattn_sp_last_error(), "dropout"), msg, NULL);
            /* a different method on one rank */
            st = sattn_sp_forward(MPI_COMM_WORLD, rank == 0 ? SATTN_SP_RING : SATTN_SP_ULYSSES, SATTN_SP_CONTIGUOUS, &p,
                                  q, k, v, out, lse);
            snprintf(msg, sizeof msg, "differing method: status %d, '%s'", (int)st, sattn_sp_last_error());
            check(st == SATTN_ERR_INVALID && strstr(sattn_sp_last_error(), "method"), msg, NULL);
        }
        /* unsupported everywhere */
        float bias = 0;
        sattn_params pb = p;
        pb.bias = &bias;
        st = sattn_sp_forward(MPI_COMM_WORLD, (sattn_sp_method)m, SATTN_SP_CONTIGUOUS, &pb, q, k, v, out, lse);
        snprintf(msg, sizeof msg, "bias: status %d, '%s'", (int)st, sattn_sp_last_error());
        check(st == SATTN_ERR_UNSUPPORTED, msg, NULL);
        /* a length that does not divide: by 2P for zigzag (every P), by P for contiguous */
        sattn_params ps = p;
        ps.seq_q = S + 1;
        st = sattn_sp_forward(MPI_COMM_WORLD, (sattn_sp_method)m, SATTN_SP_ZIGZAG, &ps, q, k, v, out, lse);
        snprintf(msg, sizeof msg, "seq_q %lld over %d ranks, zigzag: status %d, '%s'", (long long)ps.seq_q, P, (int)st,
                 sattn_sp_last_error());
        check(st == SATTN_ERR_INVALID && strstr(sattn_sp_last_error(), "divide"), msg, NULL);
        /* the backward without lse on rank 0 */
        st = sattn_sp_backward(MPI_COMM_WORLD, (sattn_sp_method)m, SATTN_SP_CONTIGUOUS, &p, q, k, v, q,
                               rank == 0 ? NULL : lse, q, out, out, out);
        snprintf(msg, sizeof msg, "backward without lse: status %d, '%s'", (int)st, sattn_sp_last_error());
        check(st == SATTN_ERR_INVALID, msg, NULL);
    }
    if (P > 1) { /* Ulysses needs heads_q to divide by P */
        sattn_params ph = p;
        ph.heads_q = ph.heads_kv = P + 1;
        sattn_status st = sattn_sp_forward(MPI_COMM_WORLD, SATTN_SP_ULYSSES, SATTN_SP_CONTIGUOUS, &ph, q, k, v, out, lse);
        snprintf(msg, sizeof msg, "Ulysses with heads_q %d over %d ranks: status %d", P + 1, P, (int)st);
        check(st == SATTN_ERR_INVALID, msg, NULL);
    }
    int untouched = 1;
    for (int64_t x = 0; x < n * 4; x++) untouched &= ((unsigned char *)out)[x] == 0x5a;
    check(untouched, "a refused call wrote out", NULL);
    free(q), free(k), free(v), free(out), free(lse);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    setvbuf(stdout, NULL, _IOLBF, 0);
    errors();

    /* head configurations (heads_q, heads_kv): MHA, GQA, MQA, and for Ulysses a group
       that straddles two ranks (its kv head goes to both) */
    int64_t heads[4][2] = {{2 * P, 2 * P}, {2 * P, P}, {2 * P, 1}, {0, 0}};
    int nheads = 3;
    if (P % 2 == 0) heads[3][0] = 3 * P, heads[3][1] = 3 * P / 2, nheads = 4;        /* 3 heads per rank, groups of 2 */
    else if (P % 3 == 0) heads[3][0] = 2 * P, heads[3][1] = 2 * P / 3, nheads = 4;   /* 2 per rank, groups of 3 */
    static const int64_t dims[] = {16, 64};
    struct {
        sattn_causal causal;
        int64_t wl, wr;
        int seqlens;
    } masks[] = {{SATTN_CAUSAL_NONE, 0, 0, 0},     {SATTN_CAUSAL_TOP_LEFT, 0, 0, 0}, {SATTN_CAUSAL_BOTTOM_RIGHT, 0, 0, 0},
                 {SATTN_CAUSAL_BOTTOM_RIGHT, 9, 0, 0}, {SATTN_CAUSAL_NONE, 5, 7, 0}, {SATTN_CAUSAL_TOP_LEFT, 0, 0, 1}};
    const int nmasks = sizeof masks / sizeof masks[0];
    int cases = 0, failed = 0;
    for (int m = 0; m < 2; m++)
        for (int sh = 0; sh < 2; sh++)
            for (int mk = 0; mk < nmasks; mk++)
                for (int hc = 0; hc < nheads; hc++)
                    for (int dr = 0; dr < 2; dr++)
                        for (int di = 0; di < 2; di++) {
                            /* oversubscribed (P > 2 on a 2-core machine) every transfer waits for a
                               time slice: a third of the grid there, still every value of every axis */
                            const int idx = ((((m * 2 + sh) * nmasks + mk) * nheads + hc) * 2 + dr) * 2 + di;
                            if (P > 2 && idx % 3 != 0) continue;
                            spec s;
                            memset(&s, 0, sizeof s);
                            s.method = (sattn_sp_method)m, s.shard = (sattn_sp_shard)sh;
                            s.B = 1 + (mk + hc) % 2;
                            /* chunks of 7 or 9 rows (odd, under a tile), seq_kv != seq_q at times */
                            s.Sq = 2 * P * (7 + 2 * ((mk + di) % 2));
                            s.Skv = (mk + hc + dr) % 3 == 0 ? 2 * P * 11 : s.Sq;
                            s.Hq = heads[hc][0], s.Hkv = heads[hc][1];
                            s.d = dims[di];
                            s.causal = masks[mk].causal, s.wl = masks[mk].wl, s.wr = masks[mk].wr;
                            s.seqlens = masks[mk].seqlens;
                            s.dropout = dr ? 0.15f : 0.0f;
                            s.alibi = (mk + di) % 4 == 1;
                            s.softcap = (mk + hc) % 5 == 2 ? 8.0f : 0.0f;
                            s.bhsd = (hc + dr + di) % 4 == 3;
                            s.dt = SATTN_F32;
                            cases++;
                            failed += !run_case(&s, 1);
                        }
    /* longer sequences (several tiles per chunk), and 16-bit storage */
    for (int m = 0; m < 2; m++)
        for (int sh = 0; sh < 2; sh++) {
            spec s;
            memset(&s, 0, sizeof s);
            s.method = (sattn_sp_method)m, s.shard = (sattn_sp_shard)sh;
            s.B = 1, s.Sq = s.Skv = 2 * P * 97, s.Hq = 2 * P, s.Hkv = P, s.d = 64;
            s.causal = SATTN_CAUSAL_TOP_LEFT, s.dt = SATTN_F32;
            s.dropout = sh ? 0.1f : 0.0f;
            cases++, failed += !run_case(&s, 1);
            s.Sq = s.Skv = 2 * P * 20, s.dropout = 0;
            s.dt = SATTN_BF16;
            cases++, failed += !run_case(&s, 1);
            s.dt = SATTN_F16, s.causal = SATTN_CAUSAL_NONE, s.wl = 13;
            cases++, failed += !run_case(&s, 1);
        }
    long tot[2] = {checks, failures}, all[2];
    MPI_Allreduce(tot, all, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("sp (P = %d): %d cases on each rank, %ld checks, %ld failed: %s\n", P, cases, all[0], all[1],
               all[1] ? "FAIL" : "PASS");
    (void)failed;
    MPI_Finalize();
    return all[1] ? 1 : 0;
}
