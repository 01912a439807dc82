/* test_errors: invalid arguments. For every entry of the table: the call returns
 * SATTN_ERR_INVALID, sattn_last_error() is non-empty and names the offending field
 * (as a whole word), and every output buffer still holds its sentinel bytes (inputs
 * passed to the backward, out and lse included, are unchanged too). After each
 * failure a valid call must succeed again.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define B 2
#define SQ 5
#define SKV 6
#define HQ 4
#define HKV 2
#define D 8
#define NBUF 4096   /* elements per buffer: room for any stride the table uses */

/* A valid call, which each table entry breaks in one place. */
typedef struct {
    sattn_params p;
    int null_params;
    int32_t seqlens_q[B], seqlens_kv[B], cu_q[B + 1], cu_kv[B + 1];
    float q[NBUF], k[NBUF], v[NBUF], dout[NBUF];
    float out[NBUF], lse[NBUF], dq[NBUF], dk[NBUF], dv[NBUF];   /* outputs */
    const void *pq, *pk, *pv, *pdout;
    void *pout, *pdq, *pdk, *pdv;
    float *plse;
} setup;

static void setup_init(setup *s)
{
    tu_rng r;
    memset(s, 0, sizeof *s);
    tu_seed(&r, 3);
    s->p.batch = B, s->p.seq_q = SQ, s->p.seq_kv = SKV, s->p.heads_q = HQ, s->p.heads_kv = HKV;
    s->p.head_dim = D, s->p.head_dim_v = D, s->p.dtype = SATTN_F32;
    for (int x = 0; x < NBUF; x++) {
        s->q[x] = (float)tu_unif(&r, -1, 1);
        s->k[x] = (float)tu_unif(&r, -1, 1);
        s->v[x] = (float)tu_unif(&r, -1, 1);
        s->dout[x] = (float)tu_unif(&r, -1, 1);
    }
    s->seqlens_q[0] = 3, s->seqlens_q[1] = 5;
    s->seqlens_kv[0] = 6, s->seqlens_kv[1] = 2;
    s->cu_q[0] = 0, s->cu_q[1] = 4, s->cu_q[2] = 9;
    s->cu_kv[0] = 0, s->cu_kv[1] = 6, s->cu_kv[2] = 8;
    s->pq = s->q, s->pk = s->k, s->pv = s->v, s->pdout = s->dout;
    s->pout = s->out, s->pdq = s->dq, s->pdk = s->dk, s->pdv = s->dv, s->plse = s->lse;
}

/* A valid forward, so the backward gets a real out and lse. */
static int valid_forward(setup *s)
{
    return sattn_forward(&s->p, s->q, s->k, s->v, s->out, s->lse) == SATTN_OK;
}

/* 1 if word occurs in msg delimited by non-identifier characters. */
static int has_word(const char *msg, const char *word)
{
    size_t n = strlen(word);
    for (const char *at = strstr(msg, word); at; at = strstr(at + 1, word)) {
        int left = at == msg || !(isalnum((unsigned char)at[-1]) || at[-1] == '_');
        int right = !(isalnum((unsigned char)at[n]) || at[n] == '_');
        if (left && right)
            return 1;
    }
    return 0;
}

enum { FWD = 1, BWD = 2, BOTH = 3 };

typedef struct {
    const char *name;
    int calls;            /* FWD, BWD or BOTH */
    const char *fields;   /* accepted field names, '|' separated */
} bad_case;

static const bad_case table[] = {
    {"NULL params", BOTH, "params|p"},
    {"q NULL", BOTH, "q"},
    {"k NULL", BOTH, "k"},
    {"v NULL", BOTH, "v"},
    {"out NULL", FWD, "out"},
    {"batch -1", BOTH, "batch"},
    {"batch 0", BOTH, "batch"},
    {"seq_q -1", BOTH, "seq_q"},
    {"seq_kv -1", BOTH, "seq_kv"},
    {"heads_q 0", BOTH, "heads_q"},
    {"heads_q -4", BOTH, "heads_q"},
    {"heads_kv -2", BOTH, "heads_kv"},
    {"head_dim 0", BOTH, "head_dim"},
    {"head_dim -8", BOTH, "head_dim"},
    {"head_dim_v -1", BOTH, "head_dim_v"},
    {"heads_q % heads_kv != 0 (4 / 3)", BOTH, "heads_kv|heads_q"},
    {"heads_kv > heads_q (4 / 8)", BOTH, "heads_kv|heads_q"},
    {"dtype 3", BOTH, "dtype"},
    {"dtype -1", BOTH, "dtype"},
    {"causal 3", BOTH, "causal"},
    {"causal -1", BOTH, "causal"},
    {"scale NaN", BOTH, "scale"},
    {"scale +inf", BOTH, "scale"},
    {"scale -inf", BOTH, "scale"},
    {"softcap -1", BOTH, "softcap"},
    {"softcap NaN", BOTH, "softcap"},
    {"softcap inf", BOTH, "softcap"},
    {"dropout_p -0.1", BOTH, "dropout_p"},
    {"dropout_p 1", BOTH, "dropout_p"},
    {"dropout_p 1.5", BOTH, "dropout_p"},
    {"dropout_p NaN", BOTH, "dropout_p"},
    {"seqlens_q entry -1", BOTH, "seqlens_q"},
    {"seqlens_q entry > seq_q", BOTH, "seqlens_q"},
    {"seqlens_kv entry -1", BOTH, "seqlens_kv"},
    {"seqlens_kv entry > seq_kv", BOTH, "seqlens_kv"},
    {"seqlens_q entry > its cu_seqlens_q length", BOTH, "seqlens_q"},
    {"seqlens_kv entry > its cu_seqlens_kv length", BOTH, "seqlens_kv"},
    {"cu_seqlens_q decreasing", BOTH, "cu_seqlens_q"},
    {"cu_seqlens_q[0] negative", BOTH, "cu_seqlens_q"},
    {"cu_seqlens_q length > seq_q", BOTH, "cu_seqlens_q"},
    {"cu_seqlens_kv decreasing", BOTH, "cu_seqlens_kv"},
    {"cu_seqlens_kv[0] negative", BOTH, "cu_seqlens_kv"},
    {"cu_seqlens_kv length > seq_kv", BOTH, "cu_seqlens_kv"},
    {"q_stride negative", BOTH, "q_stride"},
    {"k_stride negative", BOTH, "k_stride"},
    {"v_stride negative", BOTH, "v_stride"},
    {"o_stride negative", BOTH, "o_stride"},
    {"o_stride head stride < head_dim_v (out overlaps)", BOTH, "o_stride|out"},
    {"o_stride seq stride 0 (out overlaps)", BOTH, "o_stride|out"},
    {"o_stride batch stride inside a sequence (out overlaps)", BOTH, "o_stride|out"},
    {"q_stride head stride 0 in the backward (dq overlaps)", BWD, "q_stride|dq"},
    {"k_stride batch stride 0 in the backward (dk overlaps)", BWD, "k_stride|dk"},
    {"v_stride seq stride < head_dim_v in the backward (dv overlaps)", BWD, "v_stride|dv"},
    {"packed q of more than INT64_MAX elements per sequence", BOTH, "q_stride"},
    {"k_stride seq stride past int64 offsets", BOTH, "k_stride"},
    {"o_stride batch stride past int64 offsets", BOTH, "o_stride"},
    {"o_stride head stride INT64_MAX", BOTH, "o_stride"},
    {"bias_stride past int64 offsets", BOTH, "bias_stride"},
    {"mask_stride past int64 offsets", BOTH, "mask_stride"},
    {"lse NULL in the backward", BWD, "lse"},
    {"out NULL in the backward", BWD, "out"},
    {"dout NULL", BWD, "dout"},
    {"dq NULL", BWD, "dq"},
    {"dk NULL", BWD, "dk"},
    {"dv NULL", BWD, "dv"},
};

/* Breaks the valid setup the way entry t says. */
static void apply(int t, setup *s)
{
    sattn_params *p = &s->p;
    const char *n = table[t].name;
#define IS(str) (strcmp(n, str) == 0)
    if (IS("NULL params")) s->null_params = 1;
    else if (IS("q NULL")) s->pq = NULL;
    else if (IS("k NULL")) s->pk = NULL;
    else if (IS("v NULL")) s->pv = NULL;
    else if (IS("out NULL")) s->pout = NULL;
    else if (IS("batch -1")) p->batch = -1;
    else if (IS("batch 0")) p->batch = 0;
    else if (IS("seq_q -1")) p->seq_q = -1;
    else if (IS("seq_kv -1")) p->seq_kv = -1;
    else if (IS("heads_q 0")) p->heads_q = 0;
    else if (IS("heads_q -4")) p->heads_q = -4;
    else if (IS("heads_kv -2")) p->heads_kv = -2;
    else if (IS("head_dim 0")) p->head_dim = 0;
    else if (IS("head_dim -8")) p->head_dim = -8;
    else if (IS("head_dim_v -1")) p->head_dim_v = -1;
    else if (IS("heads_q % heads_kv != 0 (4 / 3)")) p->heads_kv = 3;
    else if (IS("heads_kv > heads_q (4 / 8)")) p->heads_kv = 8;
    else if (IS("dtype 3")) p->dtype = (sattn_dtype)3;
    else if (IS("dtype -1")) p->dtype = (sattn_dtype)-1;
    else if (IS("causal 3")) p->causal = (sattn_causal)3;
    else if (IS("causal -1")) p->causal = (sattn_causal)-1;
    else if (IS("scale NaN")) p->scale = NAN;
    else if (IS("scale +inf")) p->scale = INFINITY;
    else if (IS("scale -inf")) p->scale = -INFINITY;
    else if (IS("softcap -1")) p->softcap = -1.0f;
    else if (IS("softcap NaN")) p->softcap = NAN;
    else if (IS("softcap inf")) p->softcap = INFINITY;
    else if (IS("dropout_p -0.1")) p->dropout_p = -0.1f;
    else if (IS("dropout_p 1")) p->dropout_p = 1.0f;
    else if (IS("dropout_p 1.5")) p->dropout_p = 1.5f;
    else if (IS("dropout_p NaN")) p->dropout_p = NAN;
    else if (IS("seqlens_q entry -1")) s->seqlens_q[1] = -1, p->seqlens_q = s->seqlens_q;
    else if (IS("seqlens_q entry > seq_q")) s->seqlens_q[1] = SQ + 1, p->seqlens_q = s->seqlens_q;
    else if (IS("seqlens_kv entry -1")) s->seqlens_kv[0] = -1, p->seqlens_kv = s->seqlens_kv;
    else if (IS("seqlens_kv entry > seq_kv")) s->seqlens_kv[0] = SKV + 1, p->seqlens_kv = s->seqlens_kv;
    else if (IS("seqlens_q entry > its cu_seqlens_q length")) {
        p->cu_seqlens_q = s->cu_q;                       /* lengths 4, 5 */
        s->seqlens_q[0] = 5, p->seqlens_q = s->seqlens_q;
    } else if (IS("seqlens_kv entry > its cu_seqlens_kv length")) {
        p->cu_seqlens_kv = s->cu_kv;                     /* lengths 6, 2 */
        s->seqlens_kv[1] = 3, p->seqlens_kv = s->seqlens_kv;
    } else if (IS("cu_seqlens_q decreasing")) {
        s->cu_q[1] = 4, s->cu_q[2] = 2, p->cu_seqlens_q = s->cu_q;
    } else if (IS("cu_seqlens_q[0] negative")) {
        s->cu_q[0] = -1, p->cu_seqlens_q = s->cu_q;
    } else if (IS("cu_seqlens_q length > seq_q")) {
        s->cu_q[1] = SQ + 1, s->cu_q[2] = SQ + 2, p->cu_seqlens_q = s->cu_q;
    } else if (IS("cu_seqlens_kv decreasing")) {
        s->cu_kv[1] = 6, s->cu_kv[2] = 5, p->cu_seqlens_kv = s->cu_kv;
    } else if (IS("cu_seqlens_kv[0] negative")) {
        s->cu_kv[0] = -2, p->cu_seqlens_kv = s->cu_kv;
    } else if (IS("cu_seqlens_kv length > seq_kv")) {
        s->cu_kv[1] = 2, s->cu_kv[2] = 2 + SKV + 1, p->cu_seqlens_kv = s->cu_kv;
    } else if (IS("q_stride negative")) {
        p->q_stride[0] = SQ * HQ * D, p->q_stride[1] = -HQ * D, p->q_stride[2] = D;
    } else if (IS("k_stride negative")) {
        p->k_stride[0] = -1, p->k_stride[1] = HKV * D, p->k_stride[2] = D;
    } else if (IS("v_stride negative")) {
        p->v_stride[0] = SKV * HKV * D, p->v_stride[1] = HKV * D, p->v_stride[2] = -D;
    } else if (IS("o_stride negative")) {
        p->o_stride[0] = SQ * HQ * D, p->o_stride[1] = -1, p->o_stride[2] = D;
    } else if (IS("o_stride head stride < head_dim_v (out overlaps)")) {
        p->o_stride[0] = SQ * HQ * D, p->o_stride[1] = HQ * D, p->o_stride[2] = D / 2;
    } else if (IS("o_stride seq stride 0 (out overlaps)")) {
        p->o_stride[0] = SQ * HQ * D, p->o_stride[1] = 0, p->o_stride[2] = D;
    } else if (IS("o_stride batch stride inside a sequence (out overlaps)")) {
        p->o_stride[0] = 2 * HQ * D, p->o_stride[1] = HQ * D, p->o_stride[2] = D;
    } else if (IS("q_stride head stride 0 in the backward (dq overlaps)")) {
        p->q_stride[0] = SQ * D, p->q_stride[1] = D, p->q_stride[2] = 0;
    } else if (IS("k_stride batch stride 0 in the backward (dk overlaps)")) {
        p->k_stride[0] = 0, p->k_stride[1] = HKV * D, p->k_stride[2] = D;
    } else if (IS("v_stride seq stride < head_dim_v in the backward (dv overlaps)")) {
        p->v_stride[0] = SKV * HKV * D, p->v_stride[1] = 3, p->v_stride[2] = SKV * D;
    } else if (IS("packed q of more than INT64_MAX elements per sequence")) {
        /* 2^31 - 1 rows x 2^30 heads x 4096 dims: the packed strides overflow int64 */
        p->batch = 1, p->seq_q = INT32_MAX, p->heads_q = 1 << 30, p->heads_kv = 1, p->head_dim = 4096;
        p->head_dim_v = 0, p->seq_kv = SKV;
    } else if (IS("k_stride seq stride past int64 offsets")) {
        p->k_stride[0] = 0, p->k_stride[1] = INT64_MAX / 3, p->k_stride[2] = D;
    } else if (IS("o_stride batch stride past int64 offsets")) {
        p->o_stride[0] = INT64_MAX - 4, p->o_stride[1] = HQ * D, p->o_stride[2] = D;
    } else if (IS("o_stride head stride INT64_MAX")) {
        p->o_stride[0] = SQ * HQ * D, p->o_stride[1] = HQ * D, p->o_stride[2] = INT64_MAX;
    } else if (IS("bias_stride past int64 offsets")) {
        p->bias = s->q, p->bias_stride[2] = INT64_MAX / 3;
    } else if (IS("mask_stride past int64 offsets")) {
        static const uint8_t ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        p->mask = ones, p->mask_stride[3] = INT64_MAX / 4;
    } else if (IS("lse NULL in the backward")) s->plse = NULL;
    else if (IS("out NULL in the backward")) s->pout = NULL;
    else if (IS("dout NULL")) s->pdout = NULL;
    else if (IS("dq NULL")) s->pdq = NULL;
    else if (IS("dk NULL")) s->pdk = NULL;
    else if (IS("dv NULL")) s->pdv = NULL;
    else {
        printf("test_errors: no mutation for \"%s\"\n", n);
        abort();
    }
#undef IS
}

/* 1 if msg names one of the '|' separated fields as a word. */
static int names_field(const char *msg, const char *fields)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", fields);
    for (char *f = buf, *bar; f; f = bar ? bar + 1 : NULL) {
        bar = strchr(f, '|');
        if (bar)
            *bar = '\0';
        if (has_word(msg, f))
            return 1;
    }
    return 0;
}

static void check_call(int t, int backward)
{
    static setup s, before;
    setup_init(&s);
    if (backward && !valid_forward(&s)) {
        tu_check(0, "test_errors: the valid forward before \"%s\" failed: %s", table[t].name,
                 sattn_last_error());
        return;
    }
    apply(t, &s);
    memset(s.dq, TU_SENTINEL, sizeof s.dq);
    memset(s.dk, TU_SENTINEL, sizeof s.dk);
    memset(s.dv, TU_SENTINEL, sizeof s.dv);
    if (!backward) {
        memset(s.out, TU_SENTINEL, sizeof s.out);
        memset(s.lse, TU_SENTINEL, sizeof s.lse);
    }
    before = s;
    const sattn_params *pp = s.null_params ? NULL : &s.p;
    sattn_status st = backward ? sattn_backward(pp, s.pq, s.pk, s.pv, s.pout, s.plse, s.pdout,
                                                s.pdq, s.pdk, s.pdv)
                               : sattn_forward(pp, s.pq, s.pk, s.pv, s.pout, s.plse);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", sattn_last_error() ? sattn_last_error() : "(NULL)");
    const char *call = backward ? "sattn_backward" : "sattn_forward";
    tu_check(st == SATTN_ERR_INVALID, "%s with %s: status %d, want SATTN_ERR_INVALID (%d); message \"%s\"",
             call, table[t].name, (int)st, (int)SATTN_ERR_INVALID, msg);
    tu_check(msg[0] != '\0', "%s with %s: sattn_last_error() is empty", call, table[t].name);
    tu_check(names_field(msg, table[t].fields), "%s with %s: message \"%s\" does not name %s", call,
             table[t].name, msg, table[t].fields);
    tu_check(memcmp(s.out, before.out, sizeof s.out) == 0 && memcmp(s.lse, before.lse, sizeof s.lse) == 0 &&
                 memcmp(s.dq, before.dq, sizeof s.dq) == 0 && memcmp(s.dk, before.dk, sizeof s.dk) == 0 &&
                 memcmp(s.dv, before.dv, sizeof s.dv) == 0,
             "%s with %s: an output buffer was written", call, table[t].name);
    tu_check(memcmp(s.q, before.q, sizeof s.q) == 0 && memcmp(s.k, before.k, sizeof s.k) == 0 &&
                 memcmp(s.v, before.v, sizeof s.v) == 0 && memcmp(s.dout, before.dout, sizeof s.dout) == 0,
             "%s with %s: an input buffer was written", call, table[t].name);

    /* a valid call right after the failure works */
    setup_init(&s);
    st = sattn_forward(&s.p, s.q, s.k, s.v, s.out, s.lse);
    if (st == SATTN_OK)
        st = sattn_backward(&s.p, s.q, s.k, s.v, s.out, s.lse, s.dout, s.dq, s.dk, s.dv);
    tu_check(st == SATTN_OK, "valid call after %s with %s failed: %d (%s)", call, table[t].name,
             (int)st, sattn_last_error());
}

int main(void)
{
    tu_begin();
    /* the base setup must be valid, or every entry below would pass for nothing */
    static setup s;
    setup_init(&s);
    sattn_status st = sattn_forward(&s.p, s.q, s.k, s.v, s.out, s.lse);
    tu_check(st == SATTN_OK, "the valid base forward failed: %d (%s)", (int)st, sattn_last_error());
    st = sattn_backward(&s.p, s.q, s.k, s.v, s.out, s.lse, s.dout, s.dq, s.dk, s.dv);
    tu_check(st == SATTN_OK, "the valid base backward failed: %d (%s)", (int)st, sattn_last_error());
    /* the valid variants the table breaks: seqlens, cu_seqlens, strides, lse NULL */
    s.p.seqlens_q = s.seqlens_q, s.p.seqlens_kv = s.seqlens_kv;
    st = sattn_forward(&s.p, s.q, s.k, s.v, s.out, NULL);
    tu_check(st == SATTN_OK, "valid forward with seqlens and lse NULL failed: %d (%s)", (int)st,
             sattn_last_error());
    setup_init(&s);
    s.p.cu_seqlens_q = s.cu_q, s.p.cu_seqlens_kv = s.cu_kv;
    s.p.q_stride[0] = 12345, s.p.q_stride[1] = HQ * D, s.p.q_stride[2] = D;
    st = sattn_forward(&s.p, s.q, s.k, s.v, s.out, s.lse);
    if (st == SATTN_OK)
        st = sattn_backward(&s.p, s.q, s.k, s.v, s.out, s.lse, s.dout, s.dq, s.dk, s.dv);
    tu_check(st == SATTN_OK, "valid call with cu_seqlens (and an unused q batch stride) failed: %d (%s)",
             (int)st, sattn_last_error());

    int n = (int)(sizeof table / sizeof table[0]);
    for (int t = 0; t < n; t++) {
        if (table[t].calls & FWD)
            check_call(t, 0);
        if (table[t].calls & BWD)
            check_call(t, 1);
    }
    printf("%d invalid-argument cases\n", n);
    return tu_summary("test_errors");
}
