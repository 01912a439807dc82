/* Every SIMD kernel table against the generic one, piece by piece: gemm over random
 * shapes (1..70 rows and columns, tails of every width), A strides (plain and
 * transposed), accumulate on/off, the exact form against NaN in B; the 16-bit
 * products (and AVX-512's bf16 pair-order, span and dot-product ones) against double
 * sums; the three
 * softmax steps, including -inf rows, fully masked rows and extreme scores.
 *
 * The generic table is itself checked against double-precision sums here, and the
 * whole suite runs once per ISA (SATTN_ISA) against the reference. A table this CPU
 * cannot run is reported as SKIPPED, loudly, and is not counted as a pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

static void fill(float *x, int n, tu_rng *r, double lo, double hi)
{
    for (int i = 0; i < n; i++) x[i] = (float)tu_unif(r, lo, hi);
}

/* |x - y| <= tol * scale, elementwise; NaN must match NaN. */
static double max_rel(const float *x, const float *y, int n, double scale)
{
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]) || isnan(y[i])) {
            if (!(isnan(x[i]) && isnan(y[i]))) return INFINITY;
            continue;
        }
        if (isinf(x[i]) || isinf(y[i])) {
            if (x[i] != y[i]) return INFINITY;
            continue;
        }
        double e = fabs((double)x[i] - y[i]) / scale;
        worst = e > worst ? e : worst;
    }
    return worst;
}

/* ---- gemm ---- */

static void check_gemm(const sattn__kernels *kt, tu_rng *r)
{
    const sattn__kernels *gen = &sattn__kernels_generic;
    double worst = 0;
    for (int t = 0; t < 400; t++) {
        int m = (int)tu_range(r, 1, 70), n = (int)tu_range(r, 1, 140), k = (int)tu_range(r, 1, 130);
        int trans = tu_chance(r, 0.5), acc = tu_chance(r, 0.5);
        int lda = trans ? m + (int)tu_range(r, 0, 5) : k + (int)tu_range(r, 0, 5);
        int ldb = n + (int)tu_range(r, 0, 20), ldc = n + (int)tu_range(r, 0, 9);
        int ars = trans ? 1 : lda, acs = trans ? lda : 1;
        float *A = malloc(sizeof(float) * (size_t)(trans ? k * lda : m * lda));
        float *B = malloc(sizeof(float) * (size_t)(k * ldb));
        float *C0 = malloc(sizeof(float) * (size_t)(m * ldc)), *C1 = malloc(sizeof(float) * (size_t)(m * ldc));
        double *ref = malloc(sizeof(double) * (size_t)(m * n));
        fill(A, trans ? k * lda : m * lda, r, -1, 1);
        fill(B, k * ldb, r, -1, 1);
        fill(C0, m * ldc, r, -1, 1);
        memcpy(C1, C0, sizeof(float) * (size_t)(m * ldc));
        /* zero some A entries and put NaN in the matching B rows for the exact form */
        int exact = tu_chance(r, 0.25);
        if (exact)
            for (int kk = 0; kk < k; kk += 3) {
                for (int i = 0; i < m; i++) A[i * ars + kk * acs] = 0.0f;
                B[kk * ldb + (int)tu_range(r, 0, n - 1)] = NAN;
            }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = acc ? C0[i * ldc + j] : 0;
                for (int kk = 0; kk < k; kk++) {
                    double a = A[i * ars + kk * acs];
                    if (a != 0) s += a * B[kk * ldb + j];
                }
                ref[i * n + j] = s;
            }
        gen->gemm(C0, ldc, A, ars, acs, B, ldb, m, n, k, acc, exact);
        kt->gemm(C1, ldc, A, ars, acs, B, ldb, m, n, k, acc, exact);
        /* f32 sums of k products of magnitude <= 1: the error is below k * 2^-24 * 2 */
        double tol = 2.0 * (k + 1) * 0x1p-24;
        double e_kt = 0, e_gen = 0;
        int cols_untouched = 1;
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double x = fabs(C1[i * ldc + j] - ref[i * n + j]), y = fabs(C0[i * ldc + j] - ref[i * n + j]);
                if (isnan(C1[i * ldc + j])) x = INFINITY;
                if (isnan(C0[i * ldc + j])) y = INFINITY;
                e_kt = x > e_kt ? x : e_kt;
                e_gen = y > e_gen ? y : e_gen;
            }
            for (int j = n; j < ldc; j++) cols_untouched &= C1[i * ldc + j] == C0[i * ldc + j];
        }
        tu_check(e_gen <= tol, "generic gemm m=%d n=%d k=%d trans=%d acc=%d exact=%d: err %.3g > %.3g", m, n,
                 k, trans, acc, exact, e_gen, tol);
        tu_check(e_kt <= tol, "%s gemm m=%d n=%d k=%d trans=%d acc=%d exact=%d: err %.3g > %.3g", kt->name, m,
                 n, k, trans, acc, exact, e_kt, tol);
        tu_check(cols_untouched, "%s gemm m=%d n=%d: wrote past column n", kt->name, m, n);
        worst = e_kt / tol > worst ? e_kt / tol : worst;
        free(A), free(B), free(C0), free(C1), free(ref);
    }
    printf("%-8s gemm: 400 shapes, worst error / tolerance %.3f\n", kt->name, worst);
}

static void check_gemm_nt(const sattn__kernels *kt, tu_rng *r)
{
    double worst = 0;
    for (int t = 0; t < 200; t++) {
        int m = (int)tu_range(r, 1, 9), n = (int)tu_range(r, 1, 70), k = (int)tu_range(r, 1, 260);
        int lda = k + (int)tu_range(r, 0, 4), ldb = k + (int)tu_range(r, 0, 40), ldc = n + 2;
        float *A = malloc(sizeof(float) * (size_t)(m * lda)), *B = malloc(sizeof(float) * (size_t)(n * ldb));
        float *C = malloc(sizeof(float) * (size_t)(m * ldc));
        fill(A, m * lda, r, -1, 1), fill(B, n * ldb, r, -1, 1), fill(C, m * ldc, r, -1, 1);
        float guard = C[n]; /* the column after the last must stay as it was */
        kt->gemm_nt(C, ldc, A, lda, B, ldb, m, n, k);
        double tol = 2.0 * (k + 1) * 0x1p-24, e = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int c = 0; c < k; c++) s += (double)A[i * lda + c] * B[j * ldb + c];
                e = fmax(e, fabs(s - C[i * ldc + j]));
            }
        tu_check(e <= tol, "%s gemm_nt m=%d n=%d k=%d: err %.3g > %.3g", kt->name, m, n, k, e, tol);
        tu_check(C[n] == guard, "%s gemm_nt wrote past column n", kt->name);
        worst = fmax(worst, e / tol);
        free(A), free(B), free(C);
    }
    printf("%-8s gemm_nt: 200 shapes, worst error / tolerance %.3f\n", kt->name, worst);
}

/* The 16-bit-B products against double sums over the decoded B (widths with and
   without partial vectors, so both the in-kernel and the buffered forms run). */
static void check_gemm_h(const sattn__kernels *kt, tu_rng *r)
{
    double worst = 0;
    for (int t = 0; t < 120; t++) {
        int dtype = t % 2 ? SATTN_F16 : SATTN_BF16;
        int m = (int)tu_range(r, 1, 9), n = (int)tu_range(r, 1, 70), k = 16 * (int)tu_range(r, 1, 10);
        if (t % 3 == 0) k += (int)tu_range(r, 1, 15);
        if (t % 10 == 7) k = 16 * (int)tu_range(r, 33, 70) + (t % 20 == 7); /* wider than the 512-column buffer */
        int nt = t % 4 < 2; /* gemm_nt_h or gemm_h */
        int ldb = nt ? k + 8 : n + 8, lda = k + 3, ldc = n + 5, acc = t % 5 == 0;
        if (!nt && t % 3 == 0) n = 16 * (n / 16 + 1); /* full vectors for the in-kernel gemm_h */
        if (!nt && t % 10 == 9) n = (int)tu_range(r, 513, 1100); /* wider than the buffer */
        if (!nt) ldb = n + 8, ldc = n + 5;
        int brows = nt ? n : k;
        uint16_t *B = malloc(sizeof(uint16_t) * (size_t)(brows * ldb));
        float *A = malloc(sizeof(float) * (size_t)(m * lda)), *C = malloc(sizeof(float) * (size_t)(m * ldc));
        double *Bd = malloc(sizeof(double) * (size_t)(brows * ldb));
        for (int i = 0; i < brows * ldb; i++) {
            float x = (float)tu_unif(r, -1, 1);
            B[i] = dtype == SATTN_F16 ? sattn_ref_f32_to_f16(x) : sattn_ref_f32_to_bf16(x);
            Bd[i] = dtype == SATTN_F16 ? sattn_ref_f16_to_f64(B[i]) : sattn_ref_bf16_to_f64(B[i]);
        }
        fill(A, m * lda, r, -1, 1), fill(C, m * ldc, r, -1, 1);
        double *ref = malloc(sizeof(double) * (size_t)(m * n));
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double sum = nt || !acc ? 0 : C[i * ldc + j];
                for (int c = 0; c < k; c++)
                    sum += (double)A[i * lda + c] * (nt ? Bd[j * ldb + c] : Bd[c * ldb + j]);
                ref[i * n + j] = sum;
            }
        if (nt) kt->gemm_nt_h(C, ldc, A, lda, B, ldb, m, n, k, dtype);
        else kt->gemm_h(C, ldc, A, lda, 1, B, ldb, m, n, k, acc, dtype);
        double tol = 2.0 * (k + 1) * 0x1p-24, e = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) e = fmax(e, fabs(ref[i * n + j] - C[i * ldc + j]));
        tu_check(e <= tol, "%s %s %s m=%d n=%d k=%d: err %.3g > %.3g", kt->name, nt ? "gemm_nt_h" : "gemm_h",
                 dtype == SATTN_F16 ? "f16" : "bf16", m, n, k, e, tol);
        worst = fmax(worst, e / tol);
        free(A), free(B), free(Bd), free(C), free(ref);
    }
    printf("%-8s gemm_nt_h, gemm_h: 120 shapes, worst error / tolerance %.3f\n", kt->name, worst);
}

/* The bf16 pair-order products against double sums: element c of a
   pair-ordered row of 32-blocks holds element pair_elem(c) of the row as stored. */
static int pair_elem(int c) { return (c & ~31) | ((c & 15) << 1) | ((c >> 4) & 1); }

static void check_gemm_bf16p(const sattn__kernels *kt, tu_rng *r)
{
    double worst = 0;
    for (int t = 0; t < 120; t++) {
        int nt = t % 2 == 0;
        int m = (int)tu_range(r, 1, 9), n = (int)tu_range(r, 1, 70), k = (int)tu_range(r, 1, 70);
        if (nt) k = 32 * (int)tu_range(r, 1, 9); /* 32 .. 256 */
        else n = 32 * (int)tu_range(r, 1, 9);
        if (t % 17 == 5) k = nt ? 4096 : k, n = nt ? n : 4096; /* the widest head the library takes */
        int lda = k + (int)tu_range(r, 0, 5), ldc = n + 1 + (int)tu_range(r, 0, 4);
        int brows = nt ? n : k, bcols = nt ? k : n, ldb = bcols + 32 * (int)tu_range(r, 0, 2);
        uint16_t *B = malloc(sizeof(uint16_t) * (size_t)brows * (size_t)ldb);
        double *Bd = malloc(sizeof(double) * (size_t)brows * (size_t)ldb);
        float *A = malloc(sizeof(float) * (size_t)m * (size_t)lda);
        float *C = malloc(sizeof(float) * (size_t)m * (size_t)ldc);
        double *ref = malloc(sizeof(double) * (size_t)m * (size_t)n);
        for (int i = 0; i < brows * ldb; i++) {
            B[i] = sattn_ref_f32_to_bf16((float)tu_unif(r, -1, 1));
            Bd[i] = sattn_ref_bf16_to_f64(B[i]);
        }
        fill(A, m * lda, r, -1, 1), fill(C, m * ldc, r, -1, 1);
        float guard = C[n]; /* the column after the last must stay as it was */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                /* gemm_nt_bf16p: A's column c pairs with B's element pair_elem(c);
                   gemm_bf16p: C's column j accumulates B's column pair_elem(j) */
                double sum = nt ? 0 : C[i * ldc + j];
                for (int c = 0; c < k; c++)
                    sum += (double)A[i * lda + c] * (nt ? Bd[j * ldb + pair_elem(c)] : Bd[c * ldb + pair_elem(j)]);
                ref[i * n + j] = sum;
            }
        if (nt) kt->gemm_nt_bf16p(C, ldc, A, lda, B, ldb, m, n, k);
        else kt->gemm_bf16p(C, ldc, A, lda, 1, B, ldb, m, n, k);
        double tol = 2.0 * (k + 2) * 0x1p-24, e = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) e = fmax(e, fabs(ref[i * n + j] - C[i * ldc + j]));
        tu_check(e <= tol, "%s %s m=%d n=%d k=%d: err %.3g > %.3g", kt->name, nt ? "gemm_nt_bf16p" : "gemm_bf16p", m,
                 n, k, e, tol);
        tu_check(C[n] == guard, "%s %s wrote past column n", kt->name, nt ? "gemm_nt_bf16p" : "gemm_bf16p");
        worst = fmax(worst, e / tol);
        free(A), free(B), free(Bd), free(C), free(ref);
    }
    printf("%-8s gemm_nt_bf16p, gemm_bf16p: 120 shapes, worst error / tolerance %.3f\n", kt->name, worst);
}

/* gemm_h_span: the decode path's P·V over a span of 16-bit values,
   against double sums: f16, bf16 and bf16 with C in pair order; 1 to 8 rows (one and two
   blocks of 4), spans from 1 value to 2100 (the odd sizes, 8-row groups cut anywhere),
   rows of B apart (ldb > n) as well as contiguous, a guard column after C's n. */
static void check_gemm_h_span(const sattn__kernels *kt, tu_rng *r)
{
    static const int ks[] = {1, 7, 8, 9, 63, 65, 257, 2048, 2100};
    double worst = 0;
    for (int t = 0; t < 90; t++) {
        const int form = t % 3; /* f16, bf16, bf16 pairs */
        const int dtype = form == 0 ? SATTN_F16 : SATTN_BF16;
        int m = (int)tu_range(r, 1, 9), n = 64 * (int)tu_range(r, 1, 4), k = ks[(t / 3) % 9];
        int lda = k + (int)tu_range(r, 0, 5), ldc = n + 1 + (int)tu_range(r, 0, 4);
        int ldb = n + 32 * (int)tu_range(r, 0, 2);
        uint16_t *B = malloc(sizeof(uint16_t) * (size_t)k * (size_t)ldb);
        double *Bd = malloc(sizeof(double) * (size_t)k * (size_t)ldb);
        float *A = malloc(sizeof(float) * (size_t)m * (size_t)lda);
        float *C = malloc(sizeof(float) * (size_t)m * (size_t)ldc);
        double *ref = malloc(sizeof(double) * (size_t)m * (size_t)n);
        for (int i = 0; i < k * ldb; i++) {
            float x = (float)tu_unif(r, -1, 1);
            B[i] = dtype == SATTN_F16 ? sattn_ref_f32_to_f16(x) : sattn_ref_f32_to_bf16(x);
            Bd[i] = dtype == SATTN_F16 ? sattn_ref_f16_to_f64(B[i]) : sattn_ref_bf16_to_f64(B[i]);
        }
        fill(A, m * lda, r, 0, 1), fill(C, m * ldc, r, -1, 1);
        float guard = C[n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double sum = C[i * ldc + j];
                for (int c = 0; c < k; c++) sum += (double)A[i * lda + c] * Bd[c * ldb + (form == 2 ? pair_elem(j) : j)];
                ref[i * n + j] = sum;
            }
        kt->gemm_h_span(C, ldc, A, lda, B, ldb, m, n, k, dtype, form == 2);
        double tol = 2.0 * (k + 2) * 0x1p-24, e = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) e = fmax(e, fabs(ref[i * n + j] - C[i * ldc + j]));
        tu_check(e <= tol, "%s gemm_h_span %s m=%d n=%d k=%d ldb=%d: err %.3g > %.3g", kt->name,
                 form == 0 ? "f16" : form == 1 ? "bf16" : "bf16 pairs", m, n, k, ldb, e, tol);
        tu_check(C[n] == guard, "%s gemm_h_span wrote past column n", kt->name);
        worst = fmax(worst, e / tol);
        free(A), free(B), free(Bd), free(C), free(ref);
    }
    printf("%-8s gemm_h_span: 90 shapes, worst error / tolerance %.3f\n", kt->name, worst);
}

/* The bf16 dot-product form against double sums: both operands bf16, so every
   product is exact; the sums round twice per pair of products (vdpbf16ps) or once. */
static void check_gemm_bf16dp(const sattn__kernels *kt, tu_rng *r)
{
    double worst = 0;
    for (int t = 0; t < 100; t++) {
        int m = (int)tu_range(r, 1, 9), n = (int)tu_range(r, 1, 70), k = 32 * (int)tu_range(r, 1, 9);
        if (t % 17 == 5) k = 4096;
        int lda = k + (int)tu_range(r, 0, 40), ldb = k + (int)tu_range(r, 0, 40), ldc = n + 1 + (int)tu_range(r, 0, 4);
        float scale = (float)tu_unif(r, 0.05, 2.0);
        uint16_t *A = malloc(sizeof(uint16_t) * (size_t)m * (size_t)lda);
        uint16_t *B = malloc(sizeof(uint16_t) * (size_t)n * (size_t)ldb);
        float *C = malloc(sizeof(float) * (size_t)m * (size_t)ldc);
        for (int i = 0; i < m * lda; i++) A[i] = sattn_ref_f32_to_bf16((float)tu_unif(r, -1, 1));
        for (int i = 0; i < n * ldb; i++) B[i] = sattn_ref_f32_to_bf16((float)tu_unif(r, -1, 1));
        fill(C, m * ldc, r, -1, 1);
        float guard = C[n]; /* the column after the last must stay as it was */
        kt->gemm_nt_bf16dp(C, ldc, A, lda, B, ldb, m, n, k, scale);
        double tol = 2.0 * (k + 2) * 0x1p-24 * scale, e = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double sum = 0;
                for (int c = 0; c < k; c++)
                    sum += sattn_ref_bf16_to_f64(A[i * lda + c]) * sattn_ref_bf16_to_f64(B[j * ldb + c]);
                e = fmax(e, fabs(scale * sum - C[i * ldc + j]));
            }
        tu_check(e <= tol, "%s gemm_nt_bf16dp m=%d n=%d k=%d: err %.3g > %.3g", kt->name, m, n, k, e, tol);
        tu_check(C[n] == guard, "%s gemm_nt_bf16dp wrote past column n", kt->name);
        worst = fmax(worst, e / tol);
        free(A), free(B), free(C);
    }
    printf("%-8s gemm_nt_bf16dp: 100 shapes, worst error / tolerance %.3f\n", kt->name, worst);
}

/* gemm_dp (B in pairs) against double sums, both forms (accumulate or scale), odd n
   and column tails, a zero of A against NaN and Inf in B with exact set, and that
   nothing past column n of C is written. */
static void check_gemm_dp(const sattn__kernels *kt, tu_rng *r)
{
    double worst = 0;
    for (int t = 0; t < 120; t++) {
        int m = (int)tu_range(r, 1, 13), n = (int)tu_range(r, 1, 140), k2 = (int)tu_range(r, 1, 70);
        int acc = t % 2, exact = t % 3 == 0;
        int lda = 2 * k2 + (int)tu_range(r, 0, 9), ldb = n + (int)tu_range(r, 0, 5), ldc = n + 1 + (int)tu_range(r, 0, 4);
        float scale = acc ? 1.0f : (float)tu_unif(r, 0.05, 2.0);
        uint16_t *A = malloc(sizeof(uint16_t) * (size_t)m * (size_t)lda);
        uint16_t *B = malloc(sizeof(uint16_t) * 2 * (size_t)k2 * (size_t)ldb);
        float *C = malloc(sizeof(float) * (size_t)m * (size_t)ldc), *C0 = malloc(sizeof(float) * (size_t)m * (size_t)ldc);
        for (int i = 0; i < m * lda; i++) A[i] = sattn_ref_f32_to_bf16((float)tu_unif(r, -1, 1));
        for (int i = 0; i < 2 * k2 * ldb; i++) B[i] = sattn_ref_f32_to_bf16((float)tu_unif(r, -1, 1));
        if (exact) { /* column p of A zero (a masked key) against NaN and -Inf in its row of B */
            int p = (int)tu_range(r, 0, 2 * k2 - 1);
            for (int i = 0; i < m; i++) A[i * lda + p] = i % 2 ? 0x8000 : 0; /* -0 and +0 */
            for (int u = 0; u < 2; u++) B[2 * (p / 2 * ldb + (int)tu_range(r, 0, n - 1)) + p % 2] = u ? 0x7fc0 : 0xff80;
        }
        fill(C, m * ldc, r, -1, 1);
        memcpy(C0, C, sizeof(float) * (size_t)m * (size_t)ldc);
        kt->gemm_dp(C, ldc, A, lda, B, ldb, m, n, k2, acc, scale, exact);
        double tol = 2.0 * (2 * k2 + 2) * 0x1p-24 * scale, e = 0;
        int guards = 1;
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double sum = 0;
                for (int c = 0; c < 2 * k2; c++) {
                    double a = sattn_ref_bf16_to_f64(A[i * lda + c]);
                    if (a != 0) sum += a * sattn_ref_bf16_to_f64(B[2 * (c / 2 * ldb + j) + c % 2]);
                }
                double want = acc ? C0[i * ldc + j] + sum : scale * sum;
                double err = fabs(want - C[i * ldc + j]);
                e = isnan(err) ? INFINITY : fmax(e, err);
            }
            for (int j = n; j < ldc; j++) guards &= C[i * ldc + j] == C0[i * ldc + j];
        }
        tu_check(e <= tol, "%s gemm_dp m=%d n=%d k2=%d acc=%d exact=%d: err %.3g > %.3g", kt->name, m, n, k2, acc,
                 exact, e, tol);
        tu_check(guards, "%s gemm_dp wrote past column n", kt->name);
        worst = fmax(worst, e / tol);
        free(A), free(B), free(C), free(C0);
    }
    printf("%-8s gemm_dp: 120 shapes, worst error / tolerance %.3f\n", kt->name, worst);
}

/* The K-panel transpose must match the generic one bit for bit, in every dtype and at
   sizes with and without whole 16 x 16 blocks. */
static void check_transpose(const sattn__kernels *kt, tu_rng *r)
{
    int mismatches = 0;
    for (int t = 0; t < 60; t++) {
        int dtype = t % 3, rows = (int)tu_range(r, 1, 70), cols = (int)tu_range(r, 1, 140);
        int64_t rs = cols + tu_range(r, 0, 9);
        int ld = rows + (int)tu_range(r, 0, 5);
        size_t es = dtype == SATTN_F32 ? 4 : 2;
        unsigned char *src = malloc((size_t)(rows * rs) * es);
        float *d0 = malloc(sizeof(float) * (size_t)(cols * ld)), *d1 = malloc(sizeof(float) * (size_t)(cols * ld));
        for (int64_t i = 0; i < rows * rs; i++) {
            float x = (float)tu_unif(r, -100, 100);
            if (dtype == SATTN_F32) memcpy(src + i * 4, &x, 4);
            else {
                uint16_t h = dtype == SATTN_F16 ? sattn_ref_f32_to_f16(x) : sattn_ref_f32_to_bf16(x);
                memcpy(src + i * 2, &h, 2);
            }
        }
        for (int i = 0; i < cols * ld; i++) d0[i] = d1[i] = -7.0f; /* the gaps must stay */
        sattn__kernels_generic.load_rows_t(d0, ld, src, rs, rows, cols, dtype);
        kt->load_rows_t(d1, ld, src, rs, rows, cols, dtype);
        mismatches += memcmp(d0, d1, sizeof(float) * (size_t)(cols * ld)) != 0;
        free(src), free(d0), free(d1);
    }
    tu_check(mismatches == 0, "%s load_rows_t differs from generic in %d of 60 shapes", kt->name, mismatches);
    printf("%-8s load_rows_t: 60 shapes x f32/f16/bf16, %d mismatches\n", kt->name, mismatches);
}

/* Conversions must match the generic ones bit for bit: both round to nearest even. */
static void check_convert(const sattn__kernels *kt, tu_rng *r)
{
    const sattn__kernels *gen = &sattn__kernels_generic;
    enum { N = 200 };
    static const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65520.0f, 65519.99f, 1e6f, -1e6f,
                                    0x1p-14f, 0x1p-24f, 0x1p-25f, 0x1.8p-24f, 3e-8f, 1e-40f, -1e-45f,
                                    1.00048828125f /* f16 tie */, 1.001953125f, 0x1.0081p0f /* bf16 tie-ish */,
                                    0x1.0180p0f, 3.4e38f, -3.4e38f, INFINITY, -INFINITY, NAN, -NAN};
    const int ns = (int)(sizeof special / sizeof special[0]);
    int mismatches = 0;
    for (int dtype = 0; dtype < 3; dtype++)
        for (int t = 0; t < 40; t++) {
            int n = (int)tu_range(r, 1, N);
            float x[N], y0[N], y1[N];
            uint16_t h0[N], h1[N];
            float scale = t % 3 ? 1.0f : (float)tu_unif(r, 0.1, 3);
            for (int i = 0; i < n; i++)
                x[i] = tu_chance(r, 0.3) ? special[tu_range(r, 0, ns - 1)] : (float)tu_unif(r, -70000, 70000) *
                                                                               (tu_chance(r, 0.5) ? 1e-6f : 1.0f);
            /* store: f32 -> dtype */
            float f0[N], f1[N];
            void *s0 = dtype == SATTN_F32 ? (void *)f0 : (void *)h0, *s1 = dtype == SATTN_F32 ? (void *)f1 : (void *)h1;
            gen->store_row(s0, x, n, dtype, scale);
            kt->store_row(s1, x, n, dtype, scale);
            mismatches += memcmp(s0, s1, (size_t)n * (dtype == SATTN_F32 ? 4 : 2)) != 0;
            /* load: dtype -> f32, from the stored values */
            gen->load_row(y0, s0, n, dtype, scale);
            kt->load_row(y1, s0, n, dtype, scale);
            for (int i = 0; i < n; i++) mismatches += memcmp(&y0[i], &y1[i], 4) != 0 && !(isnan(y0[i]) && isnan(y1[i]));
        }
    tu_check(mismatches == 0, "%s load_row/store_row differ from generic in %d places", kt->name, mismatches);
    printf("%-8s conversions: f32/f16/bf16 rows with NaN, Inf, subnormals, ties: %d mismatches\n", kt->name,
           mismatches);
}

/* ---- softmax ---- */

static void check_softmax(const sattn__kernels *kt, tu_rng *r)
{
    const sattn__kernels *gen = &sattn__kernels_generic;
    double worst = 0;
    for (int t = 0; t < 300; t++) {
        int m = (int)tu_range(r, 1, 9), n = (int)tu_range(r, 1, 80), dv = (int)tu_range(r, 1, 40);
        int lds = n + 3, ldo = dv + 1;
        double spread = tu_chance(r, 0.2) ? 2e4 : 10.0; /* extreme logits now and then */
        float *S0 = malloc(sizeof(float) * (size_t)(m * lds)), *S1 = malloc(sizeof(float) * (size_t)(m * lds));
        float *O0 = malloc(sizeof(float) * (size_t)(m * ldo)), *O1 = malloc(sizeof(float) * (size_t)(m * ldo));
        float mx0[9], mx1[9], sum0[9], sum1[9], lse[9], D[9];
        fill(S0, m * lds, r, -spread, spread);
        fill(O0, m * ldo, r, -1, 1);
        for (int i = 0; i < m; i++) {
            int kind = (int)tu_range(r, 0, 3); /* 0: fresh row, 1: running state, 2: all -inf, 3: some -inf */
            mx0[i] = kind == 1 ? (float)tu_unif(r, -spread, spread) : -INFINITY;
            sum0[i] = kind == 1 ? (float)tu_unif(r, 0.5, 3) : 0.0f;
            for (int j = 0; j < n; j++)
                if (kind == 2 || (kind == 3 && tu_chance(r, 0.5))) S0[i * lds + j] = -INFINITY;
            lse[i] = kind == 2 ? -INFINITY : (float)tu_unif(r, -spread, spread) + 5.0f;
            D[i] = (float)tu_unif(r, -1, 1);
        }
        memcpy(S1, S0, sizeof(float) * (size_t)(m * lds));
        memcpy(O1, O0, sizeof(float) * (size_t)(m * ldo));
        memcpy(mx1, mx0, sizeof mx0), memcpy(sum1, sum0, sizeof sum0);
        gen->softmax_online(S0, lds, m, n, mx0, sum0, O0, ldo, dv);
        kt->softmax_online(S1, lds, m, n, mx1, sum1, O1, ldo, dv);
        /* exp to a few ulp: 8 ulp of headroom for the polynomial and the rescale */
        const double tol = 8 * 0x1p-24;
        double e = max_rel(S0, S1, m * lds, 1.0);
        e = fmax(e, max_rel(O0, O1, m * ldo, 1.0));
        for (int i = 0; i < m; i++) {
            /* the row sum adds n terms in another order: n ulp more */
            double esum = max_rel(&sum0[i], &sum1[i], 1, fmax(1.0, fabs(sum0[i])));
            tu_check(esum <= tol + n * 0x1p-24, "%s softmax_online row sum m=%d n=%d: err %.3g", kt->name, m, n,
                     esum);
            tu_check(mx0[i] == mx1[i] || (isnan(mx0[i]) && isnan(mx1[i])), "%s softmax_online: row max %g vs %g",
                     kt->name, mx0[i], mx1[i]);
            int all_zero = 1;
            for (int j = 0; j < n; j++) all_zero &= S1[i * lds + j] == 0.0f;
            if (mx1[i] == -INFINITY)
                tu_check(all_zero && sum1[i] == 0.0f, "%s softmax_online: a fully masked row must give P = 0, sum = 0",
                         kt->name);
        }
        tu_check(e <= tol, "%s softmax_online m=%d n=%d: err %.3g > %.3g", kt->name, m, n, e, tol);
        worst = fmax(worst, e / tol);

        /* the same step with the scores in units of log2 e: S log2 e in, exp2 inside; the
           weights and sums agree with the natural form up to the rounding of S log2 e
           (|s| 2^-24 in the exponent) and a few ulp of either polynomial */
        {
            /* one start, (S3, O3, mx3, sum3) in natural units and (S2, O2, mx2, sum2) the same
               in units of log2 e; each form's step on its own copy */
            float *S2 = malloc(sizeof(float) * (size_t)(m * lds)), *O2 = malloc(sizeof(float) * (size_t)(m * ldo));
            float *S3 = malloc(sizeof(float) * (size_t)(m * lds)), *O3 = malloc(sizeof(float) * (size_t)(m * ldo));
            float mx2[9], sum2[9], mx3[9], sum3[9];
            fill(S3, m * lds, r, -spread, spread);
            fill(O3, m * ldo, r, -1, 1);
            double smax = 0;
            for (int i = 0; i < m; i++) {
                mx3[i] = i % 3 == 1 ? (float)tu_unif(r, -spread, spread) : -INFINITY;
                sum3[i] = i % 3 == 1 ? (float)tu_unif(r, 0.5, 3) : 0.0f;
                if (i % 4 == 3)
                    for (int j = 0; j < n; j++) S3[i * lds + j] = -INFINITY;
                mx2[i] = mx3[i] * 1.44269504088896341f, sum2[i] = sum3[i];
                for (int j = 0; j < n; j++) {
                    S2[i * lds + j] = S3[i * lds + j] * 1.44269504088896341f;
                    smax = fmax(smax, fabs(S3[i * lds + j]) * !isinf(S3[i * lds + j]));
                }
                if (isfinite(mx3[i])) smax = fmax(smax, fabs(mx3[i]));
            }
            memcpy(O2, O3, sizeof(float) * (size_t)(m * ldo));
            kt->softmax_online(S3, lds, m, n, mx3, sum3, O3, ldo, dv);
            kt->softmax_online_log2(S2, lds, m, n, mx2, sum2, O2, ldo, dv);
            const double tol2 = (16 + 4 * smax) * 0x1p-24;
            double e2 = 0;
            for (int i = 0; i < m; i++) { /* the n weights and dv outputs of each row */
                e2 = fmax(e2, max_rel(S3 + i * lds, S2 + i * lds, n, 1.0));
                e2 = fmax(e2, max_rel(O3 + i * ldo, O2 + i * ldo, dv, 1.0));
            }
            for (int i = 0; i < m; i++) {
                e2 = fmax(e2, max_rel(&sum3[i], &sum2[i], 1, fmax(1.0, fabs(sum3[i]))) - n * 0x1p-24);
                tu_check(isinf(mx3[i]) ? mx2[i] == mx3[i] : fabs(mx2[i] * 0.6931471805599453 - mx3[i]) <= 4 * 0x1p-24 * fmax(1, fabs(mx3[i])),
                         "%s softmax_online_log2: row max %g (log2 units) vs %g", kt->name, mx2[i], mx3[i]);
            }
            tu_check(e2 <= tol2, "%s softmax_online_log2 m=%d n=%d: differs from softmax_online by %.3g > %.3g",
                     kt->name, m, n, e2, tol2);
            free(S2), free(O2), free(S3), free(O3);
        }

        /* recompute: P = exp(S - lse) */
        fill(S0, m * lds, r, -spread, spread);
        for (int j = 0; j < n; j += 4) S0[j] = -INFINITY;
        memcpy(S1, S0, sizeof(float) * (size_t)(m * lds));
        gen->softmax_recompute(S0, lds, m, n, lse);
        kt->softmax_recompute(S1, lds, m, n, lse);
        e = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float a = S0[i * lds + j], b = S1[i * lds + j];
                if (isinf(a) || isinf(b)) { /* exp overflow must agree */
                    e = a == b ? e : INFINITY;
                    continue;
                }
                e = fmax(e, fabs((double)a - b) / fmax(1e-30, fabs((double)a)) * (fabs(a) > 1e-37));
            }
        tu_check(e <= tol, "%s softmax_recompute m=%d n=%d: relative err %.3g > %.3g", kt->name, m, n, e, tol);
        /* a NaN score (NaN stored in a visible key) gives a NaN weight, never a silent 0 */
        {
            float sn[3] = {NAN, 0.5f, -INFINITY}, l1 = 1.0f;
            kt->softmax_recompute(sn, 3, 1, 3, &l1);
            tu_check(isnan(sn[0]) && sn[1] > 0 && sn[2] == 0.0f, "%s softmax_recompute: NaN score gave %g", kt->name,
                     sn[0]);
            float so[3] = {0.5f, NAN, 1.0f}, m1 = -INFINITY, s1 = 0.0f;
            kt->softmax_online(so, 3, 1, 3, &m1, &s1, NULL, 0, 0);
            tu_check(isnan(so[1]) && isnan(s1), "%s softmax_online: NaN score gave weight %g, sum %g", kt->name, so[1],
                     s1);
        }
        for (int i = 0; i < m; i++)
            if (lse[i] == -INFINITY)
                for (int j = 0; j < n; j++)
                    tu_check(S1[i * lds + j] == 0.0f, "%s softmax_recompute: lse = -inf must give 0", kt->name);

        /* grad: dS = P (dP - D), exactly 0 where P == 0 even if dP is NaN */
        fill(S0, m * lds, r, 0, 1);
        for (int j = 0; j < m * lds; j += 3) S0[j] = 0.0f;
        float *G0 = malloc(sizeof(float) * (size_t)(m * lds)), *G1 = malloc(sizeof(float) * (size_t)(m * lds));
        fill(G0, m * lds, r, -1, 1);
        for (int j = 0; j < m * lds; j += 6) G0[j] = NAN; /* where P is 0 */
        memcpy(G1, G0, sizeof(float) * (size_t)(m * lds));
        gen->softmax_grad(G0, lds, S0, lds, m, n, D);
        kt->softmax_grad(G1, lds, S0, lds, m, n, D);
        int nan_out = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) nan_out |= isnan(G1[i * lds + j]);
        tu_check(!nan_out, "%s softmax_grad: NaN in dP where P == 0 leaked", kt->name);
        tu_check(max_rel(G0, G1, m * lds, 1.0) <= 2 * 0x1p-24, "%s softmax_grad differs from generic", kt->name);
        free(G0), free(G1), free(S0), free(S1), free(O0), free(O1);
    }
    printf("%-8s softmax: 300 cases, worst error / tolerance %.3f\n", kt->name, worst);
}

/* Every entry of every table exists (no caller tests for NULL), and the decode path's
   preferences name a form the table has. */
static void check_entries(const sattn__kernels *kt)
{
    const void *fns[] = {(const void *)kt->gemm, (const void *)kt->gemm_nt, (const void *)kt->gemm_nt_h,
                         (const void *)kt->gemm_h, (const void *)kt->gemm_nt_bf16p, (const void *)kt->gemm_bf16p,
                         (const void *)kt->gemm_h_span, (const void *)kt->gemm_nt_bf16dp, (const void *)kt->gemm_dp,
                         (const void *)kt->load_rows_t, (const void *)kt->load_row, (const void *)kt->store_row,
                         (const void *)kt->softmax_online, (const void *)kt->softmax_online_log2,
                         (const void *)kt->softmax_recompute,
                         (const void *)kt->softmax_grad};
    int missing = 0;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) missing += fns[i] == NULL;
    tu_check(missing == 0, "%s: %d table entries are NULL", kt->name, missing);
    tu_check(kt->decode_bf16 >= SATTN__BF16_PLAIN && kt->decode_bf16 <= SATTN__BF16_DOT && kt->span_values >= 0 &&
                 kt->span_values <= 1 && kt->bf16_products >= 0 && kt->bf16_products <= 1,
             "%s: decode preferences out of range", kt->name);
}

int main(void)
{
    tu_begin();
    const sattn__kernels *tables[] = {&sattn__kernels_generic,
#if defined(SATTN_HAVE_X86_KERNELS)
                                      &sattn__kernels_avx2, &sattn__kernels_avx512, &sattn__kernels_avx512bf16
#endif
    };
    int skipped = 0;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        const sattn__kernels *kt = tables[i];
        if (!sattn__cpu_runs(kt->name)) {
            printf("SKIPPED: %s kernels (this CPU cannot run them)\n", kt->name);
            skipped++;
            continue;
        }
        tu_rng r;
        tu_seed(&r, 1234 + i);
        check_entries(kt);
        check_gemm(kt, &r);
        check_gemm_nt(kt, &r);
        check_gemm_h(kt, &r);
        check_gemm_bf16p(kt, &r);
        check_gemm_h_span(kt, &r);
        check_gemm_bf16dp(kt, &r);
        check_gemm_dp(kt, &r);
        check_convert(kt, &r);
        check_transpose(kt, &r);
        check_softmax(kt, &r);
    }
    if (skipped) printf("%d kernel table(s) SKIPPED\n", skipped);
    return tu_summary("test_kernels");
}
