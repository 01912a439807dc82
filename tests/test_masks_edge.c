/* test_masks_edge: the corners of masking.
 *   - fully masked rows (by mask, by bias -inf, by bottom-right causal with
 *     seq_q > seq_kv, by seqlens_kv = 0, by an empty window): out exactly 0,
 *     lse == -INFINITY, dq exactly 0, no NaN anywhere, and the rest matches the reference;
 *   - NaN / Inf stored in masked-out and padding key / value rows, padding query and
 *     dout rows, and rows outside every cu_seqlens range never leak;
 *   - extreme logits (scores ~ +-1e4, from q.k and from the bias) without overflow;
 *   - seq_q = 0 and seq_kv = 0;
 *   - window bounds up to INT64_MAX mean "unbounded on that side", never "mask all".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- exact checks on fully masked rows ---- */

static int has_nonfinite(const void *data, const tu_tensor *t, const unsigned char *flags,
                         sattn_dtype dt)
{
    for (int64_t x = 0; x < t->count; x++)
        if (flags[x] == TU_DOMAIN && !isfinite(sattn_ref_load(dt, data, x)))
            return 1;
    return 0;
}

/* Runs the library forward and backward on c. For every (b, h, i) whose reference lse
   is -INFINITY (a fully masked or padding row): lib out row == 0 exactly, lse ==
   -INFINITY, dq row == 0 exactly. No NaN / Inf in out, dq, dk, dv, and no NaN in lse.
   Then the full comparison against the reference (tu_run_case). Returns the number
   of fully masked rows seen, so a caller can check its construction did mask some. */
static int64_t check_masked_rows(const tu_case *c, const char *label, const tu_tol *tol)
{
    const sattn_params *p = &c->p;
    sattn_dtype dt = p->dtype;
    size_t es = (size_t)sattn_ref_dtype_size(dt);
    void *out = tu_alloc_sentinel((size_t)(c->to.count + 1) * es);
    float *lse = tu_alloc_sentinel((size_t)(c->nlse + 1) * sizeof(float));
    void *dq = tu_alloc_sentinel((size_t)(c->tq.count + 1) * es);
    void *dk = tu_alloc_sentinel((size_t)(c->tk.count + 1) * es);
    void *dv = tu_alloc_sentinel((size_t)(c->tv.count + 1) * es);
    double *rout = tu_alloc_f64(c->to.count), *rlse = tu_alloc_f64(c->nlse);
    int64_t masked = 0, bad_rows = 0;

    sattn_status st = sattn_forward(p, c->q, c->k, c->v, out, lse);
    if (st == SATTN_OK)
        st = sattn_backward(p, c->q, c->k, c->v, out, lse, c->dout, dq, dk, dv);
    if (!tu_check(st == SATTN_OK, "%s: library returned %d (%s)", label, (int)st, sattn_last_error()))
        goto done;
    sattn_ref_forward(p, c->q, c->k, c->v, rout, rlse);

    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads_q; h++)
            for (int64_t i = 0; i < sattn_ref_rows_q(p, b); i++) {
                int64_t li = sattn_ref_lse_index(p, b, h, i);
                if (rlse[li] != -INFINITY)
                    continue;
                masked++;
                int ok = lse[li] == -INFINITY;
                int64_t oo = tu_offset(&c->to, b, i, h), qo = tu_offset(&c->tq, b, i, h);
                for (int64_t e = 0; e < c->to.dim; e++)
                    ok &= sattn_ref_load(dt, out, oo + e) == 0.0;
                for (int64_t e = 0; e < c->tq.dim; e++)
                    ok &= sattn_ref_load(dt, dq, qo + e) == 0.0;
                if (!ok && bad_rows++ < 3)
                    printf("    %s: masked row (b %lld, h %lld, i %lld): lse %g, out[0] %g, dq[0] %g"
                           " (want -inf, 0, 0)\n", label, (long long)b, (long long)h, (long long)i,
                           (double)lse[li], sattn_ref_load(dt, out, oo), sattn_ref_load(dt, dq, qo));
            }
    tu_check(bad_rows == 0, "%s: %lld of %lld fully masked rows are not exactly out 0, lse -inf, dq 0",
             label, (long long)bad_rows, (long long)masked);
    int lse_nan = 0;
    for (int64_t x = 0; x < c->nlse; x++)
        lse_nan |= c->flse[x] == TU_DOMAIN && isnan(lse[x]);
    tu_check(!has_nonfinite(out, &c->to, c->fo, dt), "%s: NaN or Inf in out", label);
    tu_check(!lse_nan, "%s: NaN in lse", label);
    tu_check(!has_nonfinite(dq, &c->tq, c->fq, dt), "%s: NaN or Inf in dq", label);
    tu_check(!has_nonfinite(dk, &c->tk, c->fk, dt), "%s: NaN or Inf in dk", label);
    tu_check(!has_nonfinite(dv, &c->tv, c->fv, dt), "%s: NaN or Inf in dv", label);
    tu_tol def = tu_tolerance(dt);
    tu_check(tu_run_case(c, 1, tol ? tol : &def, label, NULL), "%s: library vs reference", label);
done:
    free(out), free(lse), free(dq), free(dk), free(dv), free(rout), free(rlse);
    return masked;
}

/* Stores x in every element of row (b, i, all heads) of a tensor. */
static void poison_row(const tu_case *c, const tu_tensor *t, void *data, int64_t b, int64_t i, float x)
{
    for (int64_t h = 0; h < t->heads; h++)
        for (int64_t e = 0; e < t->dim; e++)
            sattn_ref_store(c->p.dtype, data, tu_offset(t, b, i, h) + e, x);
}

static tu_spec edge_base(void)
{
    tu_spec s = tu_spec_basic(9, 11, 16);
    s.batch = 2;
    s.heads_q = 4;
    s.heads_kv = 2;
    return s;
}

static void test_fully_masked_rows(void)
{
    for (int dt = 0; dt < 3; dt++) {
        char label[96];
        tu_spec s;
        tu_case c;
        int64_t n;

        /* by mask: rows (b, h, 2) and (1, h, 0) of a dense mask set to 0 */
        s = edge_base(), s.dtype = (sattn_dtype)dt, s.mask = 1, s.mask_zero = 0.0;
        tu_case_init(&c, &s);
        for (int64_t h = 0; h < s.heads_q; h++)
            for (int64_t j = 0; j < s.seq_kv; j++) {
                const int64_t *ms = c.p.mask_stride;
                for (int64_t b = 0; b < s.batch; b++)
                    c.mask[b * ms[0] + h * ms[1] + 2 * ms[2] + j * ms[3]] = 0;
                c.mask[1 * ms[0] + h * ms[1] + 0 * ms[2] + j * ms[3]] = 0;
            }
        snprintf(label, sizeof label, "masked rows by mask (dtype %d)", dt);
        n = check_masked_rows(&c, label, NULL);
        tu_check(n == 3 * s.heads_q, "%s: %lld masked rows, constructed %lld", label, (long long)n,
                 (long long)(3 * s.heads_q));
        tu_case_free(&c);

        /* by bias -inf: row (0, 1, 4) and every row of head 3 in batch 1 */
        s = edge_base(), s.dtype = (sattn_dtype)dt, s.bias = 1;
        tu_case_init(&c, &s);
        {
            const int64_t *bs = c.p.bias_stride;
            for (int64_t j = 0; j < s.seq_kv; j++) {
                c.bias[0 * bs[0] + 1 * bs[1] + 4 * bs[2] + j * bs[3]] = -INFINITY;
                for (int64_t i = 0; i < s.seq_q; i++)
                    c.bias[1 * bs[0] + 3 * bs[1] + i * bs[2] + j * bs[3]] = -INFINITY;
            }
        }
        snprintf(label, sizeof label, "masked rows by bias -inf (dtype %d)", dt);
        n = check_masked_rows(&c, label, NULL);
        tu_check(n == 1 + s.seq_q, "%s: %lld masked rows, constructed %lld", label, (long long)n,
                 (long long)(1 + s.seq_q));
        tu_case_free(&c);

        /* by bottom-right causal with seq_q > seq_kv: the first seq_q - seq_kv rows */
        s = edge_base(), s.dtype = (sattn_dtype)dt, s.seq_q = 15, s.seq_kv = 6;
        s.causal = SATTN_CAUSAL_BOTTOM_RIGHT;
        tu_case_init(&c, &s);
        snprintf(label, sizeof label, "masked rows by bottom-right causal (dtype %d)", dt);
        n = check_masked_rows(&c, label, NULL);
        tu_check(n == s.batch * s.heads_q * 9, "%s: %lld masked rows, want %lld", label,
                 (long long)n, (long long)(s.batch * s.heads_q * 9));
        tu_case_free(&c);

        /* by seqlens_kv = 0 for one sequence */
        s = edge_base(), s.dtype = (sattn_dtype)dt, s.seqlens_kv = 1, s.batch = 3;
        tu_case_init(&c, &s);
        c.seqlens_kv[0] = 11, c.seqlens_kv[1] = 0, c.seqlens_kv[2] = 5;
        snprintf(label, sizeof label, "masked rows by seqlens_kv = 0 (dtype %d)", dt);
        n = check_masked_rows(&c, label, NULL);
        tu_check(n == s.heads_q * s.seq_q, "%s: %lld masked rows, want %lld", label, (long long)n,
                 (long long)(s.heads_q * s.seq_q));
        tu_case_free(&c);

        /* by window: with seq_kv - seq_q = 6 > window_left = 2, top-left causal leaves
           query i the keys j in [i + 4, i]: none */
        s = edge_base(), s.dtype = (sattn_dtype)dt, s.seq_q = 5, s.seq_kv = 11;
        s.causal = SATTN_CAUSAL_TOP_LEFT, s.window_left = 2;
        tu_case_init(&c, &s);
        snprintf(label, sizeof label, "masked rows by window (dtype %d)", dt);
        n = check_masked_rows(&c, label, NULL);
        tu_check(n == s.batch * s.heads_q * s.seq_q, "%s: %lld masked rows, want %lld", label,
                 (long long)n, (long long)(s.batch * s.heads_q * s.seq_q));
        tu_case_free(&c);

        /* by window alone, seq_q > seq_kv: d = i - 7, window_right 2 leaves j <= i - 5 */
        s = edge_base(), s.dtype = (sattn_dtype)dt, s.seq_q = 12, s.seq_kv = 5, s.window_right = 2;
        tu_case_init(&c, &s);
        snprintf(label, sizeof label, "masked rows by window_right (dtype %d)", dt);
        n = check_masked_rows(&c, label, NULL);
        tu_check(n == s.batch * s.heads_q * 5, "%s: %lld masked rows, want %lld", label,
                 (long long)n, (long long)(s.batch * s.heads_q * 5));
        tu_case_free(&c);
    }
}

/* ---- NaN / Inf in rows nobody may read ---- */

static void test_poisoned_padding(void)
{
    static const float poison[3] = {NAN, INFINITY, -INFINITY};
    for (int dt = 0; dt < 3; dt++) {
        char label[96];
        tu_spec s;
        tu_case c;

        /* padding rows of seqlens_q / seqlens_kv, and rows outside cu_seqlens ranges */
        for (int v = 0; v < 3; v++) {
            s = edge_base(), s.dtype = (sattn_dtype)dt, s.batch = 4, s.nan_pad = 1;
            s.seqlens_q = 1, s.seqlens_kv = 1;
            s.cu_q = v >= 1, s.cu_kv = v == 2;
            s.lq = TU_PADDED, s.lv = TU_BHSD;
            s.causal = (sattn_causal)v;
            s.data_seed = 100 + (uint64_t)v;
            tu_case_init(&c, &s);
            snprintf(label, sizeof label, "NaN/Inf padding rows, %s (dtype %d)",
                     v == 0 ? "seqlens" : v == 1 ? "cu_seqlens_q" : "cu_seqlens q+kv", dt);
            check_masked_rows(&c, label, NULL);
            tu_case_free(&c);
        }

        /* keys masked for every query by a per-(batch, key) mask hold NaN / Inf */
        s = edge_base(), s.dtype = (sattn_dtype)dt, s.mask = 3, s.mask_bcast = 0x6, s.mask_zero = 0.35;
        tu_case_init(&c, &s);
        for (int64_t b = 0; b < s.batch; b++)
            for (int64_t j = 0; j < s.seq_kv; j++)
                if (c.mask[b * c.p.mask_stride[0] + j * c.p.mask_stride[3]] == 0) {
                    poison_row(&c, &c.tk, c.k, b, j, poison[j % 3]);
                    poison_row(&c, &c.tv, c.v, b, j, poison[(j + 1) % 3]);
                }
        snprintf(label, sizeof label, "NaN/Inf in keys masked by the mask (dtype %d)", dt);
        check_masked_rows(&c, label, NULL);
        tu_case_free(&c);

        /* keys masked by a -inf bias hold NaN: the NaN score is masked all the same */
        s = edge_base(), s.dtype = (sattn_dtype)dt, s.bias = 3, s.bias_bcast = 0x6, s.bias_neginf = 0.35;
        tu_case_init(&c, &s);
        for (int64_t b = 0; b < s.batch; b++)
            for (int64_t j = 0; j < s.seq_kv; j++)
                if (c.bias[b * c.p.bias_stride[0] + j * c.p.bias_stride[3]] == -INFINITY) {
                    poison_row(&c, &c.tk, c.k, b, j, NAN);
                    poison_row(&c, &c.tv, c.v, b, j, poison[j % 3]);
                }
        snprintf(label, sizeof label, "NaN/Inf in keys masked by bias -inf (dtype %d)", dt);
        check_masked_rows(&c, label, NULL);
        tu_case_free(&c);

        /* causal: the keys past the last query's diagonal are masked for every query */
        s = edge_base(), s.dtype = (sattn_dtype)dt, s.seq_q = 6, s.seq_kv = 10,
        s.causal = SATTN_CAUSAL_TOP_LEFT;
        tu_case_init(&c, &s);
        snprintf(label, sizeof label, "top-left causal, keys past every diagonal hold NaN (dtype %d)", dt);
        for (int64_t b = 0; b < s.batch; b++)
            for (int64_t j = s.seq_q; j < s.seq_kv; j++) {
                poison_row(&c, &c.tk, c.k, b, j, NAN);
                poison_row(&c, &c.tv, c.v, b, j, poison[j % 3]);
            }
        check_masked_rows(&c, label, NULL);
        tu_case_free(&c);
    }
}

/* ---- extreme logits ---- */

/* q and k hold small integers (and 100), scale is 1 or a power of two and the bias
   holds integers, so every score is exactly representable in f32 and the reference
   sees the same scores. A correct f32 implementation still may round s * log2(e)
   (exp2-based softmax) at |s| ~ 1e4, an absolute exponent error of ~|s| 2^-24 per
   rounding: the out / grad tolerances get 4 |s|max 2^-24 (2.4e-3 at 1e4) added. */
static void extreme_case(const char *label, int via_bias, double sign, sattn_dtype dt)
{
    tu_case c;
    tu_extreme_case_init(&c, via_bias, sign, dt);
    tu_tol tol = tu_tolerance(dt);
    double smax = 1.04e4;
    tol.out.atol += 4.0 * smax * 0x1p-24;
    tol.grad.atol += 4.0 * smax * 0x1p-24;
    check_masked_rows(&c, label, &tol);   /* no NaN / Inf anywhere, and vs the reference */
    tu_case_free(&c);
}

static void test_extreme_logits(void)
{
    tu_for_each_extreme_case(extreme_case);
}

/* ---- empty sequences ---- */

static void test_empty(void)
{
    for (int dt = 0; dt < 3; dt++) {
        sattn_dtype d = (sattn_dtype)dt;
        size_t es = (size_t)sattn_ref_dtype_size(d);
        sattn_params p;
        char label[96];

        /* seq_kv = 0: every row attends nothing: out 0, lse -inf, dq 0; k, v may be NULL */
        memset(&p, 0, sizeof p);
        p.batch = 2, p.seq_q = 5, p.seq_kv = 0, p.heads_q = 2, p.head_dim = 8, p.dtype = d;
        {
            int64_t nq = 2 * 5 * 2 * 8;
            void *q = tu_alloc_sentinel(nq * es), *out = tu_alloc_sentinel(nq * es);
            void *dout = tu_alloc_sentinel(nq * es), *dq = tu_alloc_sentinel(nq * es);
            float *lse = tu_alloc_sentinel(2 * 2 * 5 * sizeof(float));
            for (int64_t x = 0; x < nq; x++) {
                sattn_ref_store(d, q, x, 0.5f);
                sattn_ref_store(d, dout, x, 0.25f);
            }
            snprintf(label, sizeof label, "seq_kv = 0 (dtype %d)", dt);
            sattn_status st = sattn_forward(&p, q, NULL, NULL, out, lse);
            int ok = st == SATTN_OK;
            for (int64_t x = 0; ok && x < nq; x++)
                ok &= sattn_ref_load(d, out, x) == 0.0;
            for (int64_t x = 0; ok && x < 20; x++)
                ok &= lse[x] == -INFINITY;
            tu_check(ok, "%s forward: status %d (%s), want out 0 and lse -inf", label, (int)st,
                     st ? sattn_last_error() : "");
            void *dummy = tu_alloc_sentinel(64);
            st = sattn_backward(&p, q, dummy, dummy, out, lse, dout, dq, dummy, dummy);
            ok = st == SATTN_OK;
            for (int64_t x = 0; ok && x < nq; x++)
                ok &= sattn_ref_load(d, dq, x) == 0.0;
            tu_check(ok, "%s backward: status %d (%s), want dq 0", label, (int)st,
                     st ? sattn_last_error() : "");
            free(q), free(out), free(dout), free(dq), free(lse), free(dummy);
        }

        /* seq_q = 0: nothing to compute; the backward still overwrites dk, dv with 0.
           q and out are empty and may be NULL. */
        memset(&p, 0, sizeof p);
        p.batch = 2, p.seq_q = 0, p.seq_kv = 6, p.heads_q = 4, p.heads_kv = 2, p.head_dim = 8,
        p.dtype = d;
        {
            int64_t nk = 2 * 6 * 2 * 8;
            void *k = tu_alloc_sentinel(nk * es), *v = tu_alloc_sentinel(nk * es);
            void *dk = tu_alloc_sentinel(nk * es), *dv = tu_alloc_sentinel(nk * es);
            void *dummy = tu_alloc_sentinel(64);
            float *lse = tu_alloc_sentinel(64);
            for (int64_t x = 0; x < nk; x++) {
                sattn_ref_store(d, k, x, 0.5f);
                sattn_ref_store(d, v, x, -0.5f);
            }
            snprintf(label, sizeof label, "seq_q = 0 (dtype %d)", dt);
            sattn_status st = sattn_forward(&p, NULL, k, v, NULL, NULL);
            tu_check(st == SATTN_OK, "%s forward with q = out = NULL: status %d (%s)", label, (int)st,
                     st ? sattn_last_error() : "");
            st = sattn_forward(&p, dummy, k, v, dummy, lse);
            tu_check(st == SATTN_OK, "%s forward: status %d (%s)", label, (int)st,
                     st ? sattn_last_error() : "");
            /* the backward with every q-side pointer NULL (the contract allows it): no
               offset is ever applied to them (UBSan: "zero offset to null pointer") */
            st = sattn_backward(&p, NULL, k, v, NULL, NULL, NULL, NULL, dk, dv);
            tu_check(st == SATTN_OK, "%s backward with q, out, lse, dout, dq = NULL: status %d (%s)", label,
                     (int)st, st ? sattn_last_error() : "");
            /* a packed batch of empty query sequences, q = out = lse = NULL, both paths */
            {
                int32_t cu0[3] = {0, 0, 0};
                for (int64_t sq = 4; sq <= 200; sq += 196) {
                    sattn_params pc = p;
                    pc.seq_q = sq, pc.cu_seqlens_q = cu0;
                    st = sattn_forward(&pc, NULL, k, v, NULL, NULL);
                    if (st == SATTN_OK) st = sattn_backward(&pc, NULL, k, v, NULL, NULL, NULL, NULL, dk, dv);
                    tu_check(st == SATTN_OK, "%s: cu_seqlens_q all empty (seq_q %lld) with q, out, lse = NULL: "
                             "status %d (%s)", label, (long long)sq, (int)st, st ? sattn_last_error() : "");
                }
            }
            st = sattn_backward(&p, dummy, k, v, dummy, lse, dummy, dummy, dk, dv);
            int ok = st == SATTN_OK;
            for (int64_t x = 0; ok && x < nk; x++)
                ok &= sattn_ref_load(d, dk, x) == 0.0 && sattn_ref_load(d, dv, x) == 0.0;
            tu_check(ok, "%s backward: status %d (%s), want dk = dv = 0", label, (int)st,
                     st ? sattn_last_error() : "");
            free(k), free(v), free(dk), free(dv), free(dummy), free(lse);
        }

        /* both 0 */
        memset(&p, 0, sizeof p);
        p.batch = 1, p.heads_q = 1, p.head_dim = 4, p.dtype = d;
        {
            sattn_status st = sattn_forward(&p, NULL, NULL, NULL, NULL, NULL);
            tu_check(st == SATTN_OK, "seq_q = seq_kv = 0 (dtype %d): status %d (%s)", dt, (int)st,
                     st ? sattn_last_error() : "");
        }

        /* Empty tensors in BHSD layout: {heads*seq*dim, dim, seq*dim} is {0, dim, 0} with
           seq = 0. A tensor without elements cannot overlap itself, so this is valid. */
        memset(&p, 0, sizeof p);
        p.batch = 2, p.seq_q = 0, p.seq_kv = 3, p.heads_q = 2, p.head_dim = 4, p.dtype = d;
        p.q_stride[1] = 4, p.o_stride[1] = 4;   /* {0, 4, 0} */
        {
            void *kv = tu_alloc_sentinel(2 * 3 * 2 * 4 * es), *dkv = tu_alloc_sentinel(2 * 3 * 2 * 4 * es);
            void *dummy = tu_alloc_sentinel(64);
            float *lse = tu_alloc_sentinel(64);
            memset(kv, 0, 2 * 3 * 2 * 4 * es);
            sattn_status st = sattn_forward(&p, dummy, kv, kv, dummy, lse);
            tu_check(st == SATTN_OK, "seq_q = 0 with BHSD strides {0, 4, 0} for q and out (dtype %d):"
                     " status %d (%s)", dt, (int)st, st ? sattn_last_error() : "");
            st = sattn_backward(&p, dummy, kv, kv, dummy, lse, dummy, dummy, dkv, dkv);
            tu_check(st == SATTN_OK, "seq_q = 0 with BHSD strides {0, 4, 0} for dq and dout (dtype %d),"
                     " backward: status %d (%s)", dt, (int)st, st ? sattn_last_error() : "");
            p.seq_q = 3, p.seq_kv = 0;
            memset(p.q_stride, 0, sizeof p.q_stride), memset(p.o_stride, 0, sizeof p.o_stride);
            p.k_stride[1] = 4, p.v_stride[1] = 4;
            void *qo = tu_alloc_sentinel(2 * 3 * 2 * 4 * es), *o = tu_alloc_sentinel(2 * 3 * 2 * 4 * es);
            memset(qo, 0, 2 * 3 * 2 * 4 * es);
            st = sattn_forward(&p, qo, dummy, dummy, o, lse);
            tu_check(st == SATTN_OK, "seq_kv = 0 with BHSD strides {0, 4, 0} for k and v (dtype %d):"
                     " status %d (%s)", dt, (int)st, st ? sattn_last_error() : "");
            if (st == SATTN_OK) {
                st = sattn_backward(&p, qo, dummy, dummy, o, lse, qo, dkv, dummy, dummy);
                tu_check(st == SATTN_OK, "seq_kv = 0 with BHSD strides {0, 4, 0} for dk and dv (dtype %d),"
                         " backward: status %d (%s)", dt, (int)st, st ? sattn_last_error() : "");
            }
            free(kv), free(dkv), free(dummy), free(lse), free(qo), free(o);
        }

        /* cu_seqlens with every kv sequence empty, and an empty query sequence */
        tu_spec s = edge_base();
        s.dtype = d, s.batch = 3, s.cu_q = 1, s.cu_kv = 1, s.seq_kv = 0;   /* lengths <= 0 */
        tu_case c;
        tu_case_init(&c, &s);
        snprintf(label, sizeof label, "cu_seqlens_kv all empty (dtype %d)", dt);
        check_masked_rows(&c, label, NULL);
        tu_case_free(&c);
    }
}

/* A window side of INT64_MAX (or any bound past every key) masks nothing on its side:
   the library must match the reference (whose test d - j > left cannot overflow) and,
   independently, the same call without that side, bit for bit. seq_q > seq_kv makes the
   diagonal d negative for the first rows, where d - left overflowed before. */
static void test_huge_windows(void)
{
    static const int64_t huge[] = {INT64_MAX, INT64_MAX - 1, (int64_t)1 << 40, ((int64_t)1 << 33) + 5};
    static const int64_t sizes[][2] = {{9, 11}, {13, 5}, {65, 7}};
    for (size_t hx = 0; hx < sizeof huge / sizeof huge[0]; hx++)
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
            for (int side = 0; side < 3; side++) /* left, right, both */
                for (int causal = 0; causal < 3; causal++) {
                    tu_spec s = edge_base();
                    s.seq_q = sizes[z][0], s.seq_kv = sizes[z][1];
                    s.causal = (sattn_causal)causal;
                    /* the other side bounded where one side is huge, so the window still cuts */
                    s.window_left = side != 1 ? huge[hx] : 2;
                    s.window_right = side != 0 ? huge[hx] : 3;
                    tu_case c;
                    tu_case_init(&c, &s);
                    char label[128];
                    snprintf(label, sizeof label, "window (%lld, %lld), causal %d, seq %lld x %lld",
                             (long long)s.window_left, (long long)s.window_right, causal,
                             (long long)s.seq_q, (long long)s.seq_kv);
                    tu_tol tol = tu_tolerance(s.dtype);
                    tu_check(tu_run_case(&c, 1, &tol, label, NULL), "%s: against the reference", label);

                    size_t es = (size_t)sattn_ref_dtype_size(s.dtype);
                    void *o1 = tu_alloc_sentinel((size_t)c.to.count * es);
                    void *o2 = tu_alloc_sentinel((size_t)c.to.count * es);
                    float *l1 = tu_alloc_sentinel((size_t)(c.nlse + 1) * sizeof(float));
                    float *l2 = tu_alloc_sentinel((size_t)(c.nlse + 1) * sizeof(float));
                    sattn_params p = c.p;
                    sattn_status st1 = sattn_forward(&p, c.q, c.k, c.v, o1, l1);
                    if (side != 1) p.window_left = 0;
                    if (side != 0) p.window_right = 0;
                    sattn_status st2 = sattn_forward(&p, c.q, c.k, c.v, o2, l2);
                    tu_check(st1 == SATTN_OK && st2 == SATTN_OK &&
                             memcmp(o1, o2, (size_t)c.to.count * es) == 0 &&
                             memcmp(l1, l2, (size_t)c.nlse * sizeof(float)) == 0,
                             "%s: differs from the same call with that side unbounded (0)", label);
                    free(o1), free(o2), free(l1), free(l2);
                    tu_case_free(&c);
                }
}

int main(void)
{
    tu_begin();
    test_huge_windows();
    test_fully_masked_rows();
    test_poisoned_padding();
    test_extreme_logits();
    test_empty();
    return tu_summary("test_masks_edge");
}
