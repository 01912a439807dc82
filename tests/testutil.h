/* testutil: what every sattn test shares.
 *
 *   - a PASS/FAIL counter and failure printing (tu_check, tu_summary),
 *   - a deterministic RNG (splitmix64),
 *   - tensor layouts: packed BSHD (all-zero strides or explicit), BHSD, and random
 *     padded strides with gaps in a random axis order,
 *   - a case builder: a tu_spec (shape + features) becomes sattn_params plus inputs,
 *   - comparison of a library tensor against the reference, printing a few value
 *     pairs and the largest error against the stated tolerance,
 *   - tu_run_case: library forward (and backward) against the reference.
 *
 * Expected values always come from tests/ref (the double-precision reference),
 * never from the library under test.
 */
#ifndef SATTN_TESTUTIL_H
#define SATTN_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "sattn.h"
#include "sattn_ref.h"

/* ---- pass / fail ---- */

extern long tu_checks, tu_failures;
extern int tu_quiet;   /* nonzero: tu_run_case / tu_compare print no details */

/* Exit status of a test that could not run here (ctest reports it as skipped). */
#define TU_SKIP_STATUS 77

/* Call first in main: stdout line-buffered, so a crash keeps what was printed; exits
   with TU_SKIP_STATUS if SATTN_ISA names a kernel set the library does not run here. */
void tu_begin(void);
/* Counts one check; prints "FAIL: <message>" if !ok. Returns ok. */
int tu_check(int ok, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prints the totals; returns the process exit status (0 only if nothing failed
   and at least one check ran). */
int tu_summary(const char *test_name);

/* ---- rng ---- */

typedef struct {
    uint64_t s;
} tu_rng;

void tu_seed(tu_rng *r, uint64_t seed);
uint64_t tu_u64(tu_rng *r);
double tu_unif(tu_rng *r, double lo, double hi);     /* [lo, hi) */
int64_t tu_range(tu_rng *r, int64_t lo, int64_t hi); /* [lo, hi], inclusive */
int tu_chance(tu_rng *r, double prob);               /* 1 with probability prob */

/* ---- layouts ---- */

typedef enum {
    TU_DEFAULT = 0,   /* all three strides 0: the library's packed BSHD default */
    TU_BSHD,          /* the same layout with explicit strides */
    TU_BHSD,          /* {heads*seq*dim, dim, seq*dim} */
    TU_PADDED,        /* random axis order, random gaps between rows / heads / batches */
    TU_BCAST_BATCH,   /* batch stride 0 (inputs of a forward only; not with cu_seqlens) */
    TU_NLAYOUTS
} tu_layout;

const char *tu_layout_name(tu_layout l);

/* One (batch, seq, heads, dim) tensor: where each element lives. */
typedef struct {
    int64_t batch, seq, heads, dim;   /* seq: rows per sequence without cu */
    const int32_t *cu;                /* cu_seqlens of the seq axis, or NULL */
    int64_t stride[3];                /* the strides passed to the library */
    int64_t rstride[3];               /* the strides the layout resolves to */
    int64_t count;                    /* elements to allocate */
} tu_tensor;

/* Chooses strides for layout l and the allocation size. */
void tu_tensor_init(tu_tensor *t, tu_rng *r, tu_layout l, int64_t batch, int64_t seq,
                    int64_t heads, int64_t dim, const int32_t *cu);
/* Element offset of (b, i, h, 0), i counted within sequence b. */
int64_t tu_offset(const tu_tensor *t, int64_t b, int64_t i, int64_t h);
/* Rows of sequence b. */
int64_t tu_rows(const tu_tensor *t, int64_t b);

/* Flags per element: TU_GAP (belongs to no element: must stay untouched when
   written), TU_DOMAIN (an element (b, i, h, c)), TU_DONTCARE (rows outside every
   cu_seqlens range: neither read nor checked). */
enum { TU_GAP = 0, TU_DOMAIN = 1, TU_DONTCARE = 2 };
unsigned char *tu_domain_flags(const tu_tensor *t);

/* ---- cases ---- */

typedef struct {
    int64_t batch, seq_q, seq_kv, heads_q, heads_kv, head_dim, head_dim_v;
    sattn_dtype dtype;
    tu_layout lq, lk, lv, lo;
    float scale;
    sattn_causal causal;
    int64_t window_left, window_right;
    int seqlens_q, seqlens_kv;   /* 1: random valid lengths per sequence */
    int cu_q, cu_kv;             /* 1: packed variable length, random lengths */
    int cu_garbage_stride;       /* with cu: a random (unused) batch stride */
    int bias;                    /* 0 none, 1 dense, 2 random broadcast axes, 3 bias_bcast */
    unsigned bias_bcast;         /* mode 3: bit a set = axis a (b, h, i, j) broadcast */
    double bias_neginf;          /* fraction of -INFINITY bias entries */
    double bias_scale;           /* spread of the bias values (default 1) */
    int mask;                    /* 0 none, 1 dense, 2 random broadcast axes, 3 mask_bcast */
    unsigned mask_bcast;
    double mask_zero;            /* fraction of masked entries */
    int alibi;
    float softcap;
    float dropout_p;
    uint64_t seed;
    int nan_pad;                 /* NaN / Inf in every input element no valid row uses */
    double qk_scale;             /* spread of q and k (default 1) */
    uint64_t data_seed;          /* for lengths, strides, bias, mask, data */
} tu_spec;

typedef struct {
    tu_spec s;
    sattn_params p;
    int32_t *seqlens_q, *seqlens_kv, *cu_q, *cu_kv;
    float *bias;
    uint8_t *mask;
    float *alibi;
    tu_tensor tq, tk, tv, to;
    int64_t nlse;
    void *q, *k, *v, *dout;                 /* stored as dtype */
    unsigned char *fq, *fk, *fv, *fo, *flse;
} tu_case;

/* A spec with every feature off: batch 1, heads 1, f32, packed. */
tu_spec tu_spec_basic(int64_t seq_q, int64_t seq_kv, int64_t head_dim);
/* Builds params and inputs. Returns 0, or -1 (allocation failed). */
int tu_case_init(tu_case *c, const tu_spec *s);
/* The extreme-logit case (batch 2, 2 heads, seq_q 7, seq_kv 9, head_dim 8): scores of
   about sign * 1e4, from q.k (q and k hold small integers and +-100, scale 1) or from
   the bias (integers, scale 1/8); head 1's key 0 has the opposite sign. Every score is
   exact in f32, so the reference sees the same scores. */
void tu_extreme_case_init(tu_case *c, int via_bias, double sign, sattn_dtype dt);
/* Calls check(label, via_bias, sign, dtype) for every dtype, both sources of the
   scores (q.k and bias) and both signs, with a label that names them. */
void tu_for_each_extreme_case(void (*check)(const char *label, int via_bias, double sign, sattn_dtype dt));
void tu_case_free(tu_case *c);
/* A one-line description of the case (static buffer). */
const char *tu_case_str(const tu_case *c);

/* ---- comparison ---- */

enum {
    TU_NORM_TENSOR = 0,   /* norm_i = max(floor, max over the tensor |ref|) */
    TU_NORM_ELEM = 1,     /* norm_i = max(floor, |ref_i|) */
    TU_NORM_MAG = 2,      /* norm_i = mag_i, the element's error magnitude */
};

/* allowed_i = atol * norm_i + rtol * |ref_i| + abs */
typedef struct {
    double atol, rtol, abs, floor;
    int norm;
} tu_bound;

typedef struct {
    double max_abs;      /* largest |lib - ref| */
    double norm;         /* max(floor, max|ref|) over the tensor (max mag with TU_NORM_MAG) */
    double worst;        /* largest |lib - ref| / allowed, 1 = at the tolerance */
    long nbad;           /* elements over tolerance, wrong non-finite, or touched gaps */
} tu_cmp;

/* Compares lib (stored as dtype) with ref over the elements flagged TU_DOMAIN,
   allowing |lib_i - ref_i| <= allowed_i (see tu_bound; mag is used only with
   TU_NORM_MAG). Infinite reference values must match exactly; NaN never passes.
   Elements flagged TU_GAP must still hold the sentinel byte. Prints a few value
   pairs and the largest error on failure. Returns 1 if all is well. */
int tu_compare(const char *what, sattn_dtype dtype, const void *lib, const double *ref,
               const double *mag, const unsigned char *flags, int64_t n,
               const tu_bound *bound, tu_cmp *res);

#define TU_SENTINEL 0xA5
void *tu_alloc_sentinel(size_t bytes);   /* filled with TU_SENTINEL; never NULL */
double *tu_alloc_f64(int64_t n);          /* zeroed; never NULL */

/* ---- tolerances (derived in tu_tolerance, testutil.c) ---- */

typedef struct {
    tu_bound out, lse, grad;
    double grad_d_floor;   /* d_floor of sattn_ref_backward_mag */
} tu_tol;

tu_tol tu_tolerance(sattn_dtype dtype);

/* ---- running a case ---- */

typedef struct {
    double worst_out, worst_lse, worst_grad;   /* largest error / tolerance seen */
    double max_rel_out, max_rel_grad;          /* largest |error| / tensor scale seen: out
                                                  max(1, max|out|), grad max mag */
} tu_stats;

/* Library forward (and backward if bwd) against the reference, with tolerance tol.
   Prints label and the case on failure. Returns 1 if the case passed. */
int tu_run_case(const tu_case *c, int bwd, const tu_tol *tol, const char *label,
                tu_stats *stats);

/* ---- the curated grid of test_forward / test_backward (grid.c) ---- */

typedef struct {
    char label[80];
    tu_spec s;
} tu_named_spec;

/* Fills up to max cases: every feature singly and in combination, odd sizes, head
   dims, layouts, dtypes. With backward, inputs broadcast by a 0 stride are left out
   (dq/dk/dv are written with the input strides and must not overlap). Returns the
   number of cases. */
int tu_grid(tu_named_spec *out, int max, int backward);

/* The main of test_forward (backward = 0) and test_backward (1): runs the grid's cases
   argv[1] .. argv[2] (all by default), printing each case's errors against its
   tolerance; returns the process exit status. */
int tu_grid_main(int argc, char **argv, int backward, const char *test_name);

#endif /* SATTN_TESTUTIL_H */
