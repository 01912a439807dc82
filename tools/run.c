/* sattn run: attention on .npy files.
 *
 * Reads q, k, v (and the optional mask, bias and key lengths), checks every shape
 * against the others, fills one sattn_params, calls sattn_forward, and writes out
 * (and lse) under temporary names that are renamed only once everything succeeded.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "npy.h"
#include "sattn.h"

static const char run_help[] =
    "usage: sattn run --q Q.npy --k K.npy --v V.npy -o OUT.npy [options]\n"
    "\n"
    "Self-attention on arrays in .npy files: out = softmax(scale * q k^T, masked) v,\n"
    "per head, with grouped-query heads when k and v have fewer heads than q.\n"
    "\n"
    "Inputs: float32, float16 or float64, either byte order (with --dtype bf16 also\n"
    "uint16 holding raw bfloat16 bits). With --layout bshd (the default)\n"
    "  --q FILE        queries  [batch, seq_q, heads_q, head_dim]\n"
    "  --k FILE        keys     [batch, seq_kv, heads_kv, head_dim]\n"
    "  --v FILE        values   [batch, seq_kv, heads_kv, head_dim_v]\n"
    "and with --layout bhsd the seq and heads axes swapped: [batch, heads, seq, dim].\n"
    "A 3-D array is one sequence (batch 1). heads_kv must divide heads_q.\n"
    "\n"
    "Outputs:\n"
    "  -o, --out FILE  the attention output in q's layout and rank, head_dim_v wide,\n"
    "                  stored as --dtype (bf16 as uint16 bits)\n"
    "  --lse FILE      the log-sum-exp of each row's scores, float32 [batch, heads_q, seq_q]\n"
    "                  (-inf for a row with every key masked, whose output is 0)\n"
    "\n"
    "Options:\n"
    "  --layout bshd|bhsd     axis order of q, k, v and out (default bshd)\n"
    "  --causal top-left|bottom-right|none\n"
    "                         top-left: query i sees keys j <= i; bottom-right: keys\n"
    "                         j <= i + seq_kv - seq_q (the diagonal in the last corner;\n"
    "                         with --seqlens-kv, the sequence's own key length)\n"
    "  --window L,R           sliding window around that diagonal d: keys d-L .. d+R;\n"
    "                         0 or less leaves that side unbounded\n"
    "  --mask FILE            bool, uint8 or int8; nonzero = may attend. Broadcast to\n"
    "                         [batch, heads_q, seq_q, seq_kv] as NumPy broadcasts: e.g.\n"
    "                         [seq_q, seq_kv], [heads_q, seq_q, seq_kv], [batch, 1, 1, seq_kv]\n"
    "  --bias FILE            float, added to the scores, broadcast as the mask; -inf masks\n"
    "  --seqlens-kv FILE      int32 or int64 [batch]: valid keys of each sequence (padding)\n"
    "  --softcap X            scores become X * tanh(score / X) (X > 0; 0 = off)\n"
    "  --scale X              score scale (default 1/sqrt(head_dim))\n"
    "  --dtype f32|f16|bf16   storage of q, k, v and out; float inputs are rounded to it\n"
    "                         (nearest even); the arithmetic is float32 (default f32)\n"
    "  --products f32|bf16    bf16: with --dtype bf16 on a CPU with bf16 dot products\n"
    "                         (AVX512-BF16), q k^T from the stored values and the weights\n"
    "                         rounded to bf16 for P v: out moves by at most 2^-8 of\n"
    "                         sum_j P |v_j| (sattn.h); elsewhere the f32 products run\n"
    "                         (default f32)\n"
    "  --threads N            threads (default: every core); results do not depend on it\n"
    "\n"
    "Example:\n"
    "  sattn run --q q.npy --k k.npy --v v.npy --causal bottom-right -o out.npy\n"
    "\n";

typedef struct {
    const char *q, *k, *v, *out, *lse, *mask, *bias, *seqlens_kv;
    int bhsd;
    sattn_causal causal;
    long long window_left, window_right;
    double softcap, scale;
    sattn_dtype dtype;
    sattn_products products;
    long long threads;
} run_options;

static const char CMD[] = "run";

/* 0 to go on, or an exit status (-1: help printed, exit 0) */
static int parse_args(int argc, char **argv, run_options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *val = NULL;
        int r;
        if (cli_is_help(argv[i])) {
            fputs(run_help, stdout);
            fputs(cli_exit_codes_help, stdout);
            return -1;
        }
#define PATH_OPT(name, alias, field)                                                                         \
    if ((r = cli_option(CMD, argc, argv, &i, name, alias, &val)) != 0) {                                       \
        if (r < 0) return CLI_ERR_USAGE;                                                                      \
        o->field = val;                                                                                       \
        continue;                                                                                             \
    }
        PATH_OPT("--q", NULL, q)
        PATH_OPT("--k", NULL, k)
        PATH_OPT("--v", NULL, v)
        PATH_OPT("--out", "-o", out)
        PATH_OPT("--lse", NULL, lse)
        PATH_OPT("--mask", NULL, mask)
        PATH_OPT("--bias", NULL, bias)
        PATH_OPT("--seqlens-kv", NULL, seqlens_kv)
#undef PATH_OPT
        if ((r = cli_option(CMD, argc, argv, &i, "--layout", NULL, &val)) != 0) {
            if (r < 0) return CLI_ERR_USAGE;
            if (!strcmp(val, "bshd")) o->bhsd = 0;
            else if (!strcmp(val, "bhsd")) o->bhsd = 1;
            else return cli_error(CMD, "--layout: '%s' is not bshd or bhsd", val), CLI_ERR_USAGE;
            continue;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--causal", NULL, &val)) != 0) {
            if (r < 0) return CLI_ERR_USAGE;
            if (!strcmp(val, "top-left")) o->causal = SATTN_CAUSAL_TOP_LEFT;
            else if (!strcmp(val, "bottom-right")) o->causal = SATTN_CAUSAL_BOTTOM_RIGHT;
            else if (!strcmp(val, "none")) o->causal = SATTN_CAUSAL_NONE;
            else return cli_error(CMD, "--causal: '%s' is not top-left, bottom-right or none", val), CLI_ERR_USAGE;
            continue;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--window", NULL, &val)) != 0) {
            if (r < 0) return CLI_ERR_USAGE;
            const char *comma = strchr(val, ',');
            char left[32];
            size_t n = comma ? (size_t)(comma - val) : 0;
            if (!comma || n >= sizeof left)
                return cli_error(CMD, "--window: '%s' is not L,R (two integers)", val), CLI_ERR_USAGE;
            memcpy(left, val, n), left[n] = '\0';
            if (cli_parse_int(CMD, "--window L", left, -(1LL << 62), 1LL << 62, &o->window_left) ||
                cli_parse_int(CMD, "--window R", comma + 1, -(1LL << 62), 1LL << 62, &o->window_right))
                return CLI_ERR_USAGE;
            continue;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--softcap", NULL, &val)) != 0) {
            if (r < 0 || cli_parse_float(CMD, "--softcap", val, 0, 3.4e38, &o->softcap)) return CLI_ERR_USAGE;
            continue;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--scale", NULL, &val)) != 0) {
            if (r < 0 || cli_parse_float(CMD, "--scale", val, -3.4e38, 3.4e38, &o->scale)) return CLI_ERR_USAGE;
            continue;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--dtype", NULL, &val)) != 0) {
            if (r < 0) return CLI_ERR_USAGE;
            if (!strcmp(val, "f32")) o->dtype = SATTN_F32;
            else if (!strcmp(val, "f16")) o->dtype = SATTN_F16;
            else if (!strcmp(val, "bf16")) o->dtype = SATTN_BF16;
            else return cli_error(CMD, "--dtype: '%s' is not f32, f16 or bf16", val), CLI_ERR_USAGE;
            continue;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--products", NULL, &val)) != 0) {
            if (r < 0) return CLI_ERR_USAGE;
            if (!strcmp(val, "f32")) o->products = SATTN_PRODUCTS_F32;
            else if (!strcmp(val, "bf16")) o->products = SATTN_PRODUCTS_BF16;
            else return cli_error(CMD, "--products: '%s' is not f32 or bf16", val), CLI_ERR_USAGE;
            continue;
        }
        if ((r = cli_option(CMD, argc, argv, &i, "--threads", NULL, &val)) != 0) {
            if (r < 0 || cli_parse_int(CMD, "--threads", val, 1, 4096, &o->threads)) return CLI_ERR_USAGE;
            continue;
        }
        return cli_unknown(CMD, argv[i]);
    }
    if (!o->q || !o->k || !o->v || !o->out) {
        cli_error(CMD, "needs --q, --k, --v and -o (see sattn run --help)");
        return CLI_ERR_USAGE;
    }
    return 0;
}

/* ---- inputs ---- */

static int load(const char *path, npy_array *a)
{
    char err[512];
    npy_status st = npy_read(path, a, err, sizeof err);
    if (st == NPY_OK) return 0;
    cli_error(CMD, "%s", err);
    return st == NPY_ERR_IO ? CLI_ERR_IO : st == NPY_ERR_NOMEM ? CLI_ERR_RUNTIME : CLI_ERR_INPUT;
}

static const char *shape_of(const npy_array *a, char *buf, size_t len)
{
    npy_shape_str(a, buf, len);
    return buf;
}

/* (batch, seq, heads, dim) of q, k or v in the layout; 3-D is batch 1 */
static int tensor_dims(const npy_array *a, const char *path, const char *what, int bhsd, int64_t d[4])
{
    char s[256];
    if (a->ndim != 3 && a->ndim != 4) {
        cli_error(CMD, "%s: %s must be 4-D %s (or 3-D without the batch), not %s", path, what,
                  bhsd ? "[batch, heads, seq, dim]" : "[batch, seq, heads, dim]", shape_of(a, s, sizeof s));
        return CLI_ERR_INPUT;
    }
    const int64_t *sh = a->shape + (a->ndim - 3);
    d[0] = a->ndim == 4 ? a->shape[0] : 1;
    d[1] = bhsd ? sh[1] : sh[0];
    d[2] = bhsd ? sh[0] : sh[1];
    d[3] = sh[2];
    if (d[0] < 1 || d[2] < 1 || d[3] < 1) {
        cli_error(CMD, "%s: %s has an empty batch, heads or dim axis: %s", path, what, shape_of(a, s, sizeof s));
        return CLI_ERR_INPUT;
    }
    return 0;
}

/* a's elements in the storage type: a->data itself when it is stored so already,
   else a new buffer (*owned set). */
static int to_storage(const npy_array *a, const char *path, sattn_dtype dt, void **out, void **owned)
{
    *owned = NULL;
    if (a->type == NPY_U16 && dt != SATTN_BF16) {
        cli_error(CMD, "%s: uint16 data is read only as raw bfloat16 bits, with --dtype bf16", path);
        return CLI_ERR_INPUT;
    }
    if (!npy_is_float(a->type) && a->type != NPY_U16) {
        cli_error(CMD, "%s: %s data; expected float32, float16 or float64", path, npy_type_name(a->type));
        return CLI_ERR_INPUT;
    }
    if ((dt == SATTN_F32 && a->type == NPY_F32) || (dt == SATTN_F16 && a->type == NPY_F16) ||
        (dt == SATTN_BF16 && a->type == NPY_U16)) {
        *out = a->data;
        return 0;
    }
    size_t es = dt == SATTN_F32 ? 4 : 2, n = (size_t)a->count;
    void *buf = malloc(n ? n * es : 1);
    if (!buf) return cli_error(CMD, "out of memory"), CLI_ERR_RUNTIME;
    for (size_t i = 0; i < n; i++) {
        float x = npy_get_f32(a, (int64_t)i);
        if (dt == SATTN_F32) ((float *)buf)[i] = x;
        else ((uint16_t *)buf)[i] = dt == SATTN_F16 ? npy_f32_to_f16(x) : npy_f32_to_bf16(x);
    }
    *out = *owned = buf;
    return 0;
}

/* Element strides of a (mask or bias) broadcast to target (batch, heads, q, kv), as
   NumPy broadcasts: axes aligned at the right, an axis of size 1 repeats. */
static int broadcast(const npy_array *a, const char *path, const char *what, const int64_t target[4],
                     int64_t stride[4])
{
    char s[256];
    if (a->ndim > 4) {
        cli_error(CMD, "%s: the %s has %d dimensions; at most 4: [batch, heads_q, seq_q, seq_kv]", path, what,
                  a->ndim);
        return CLI_ERR_INPUT;
    }
    int64_t st = 1;
    for (int t = 3; t >= 0; t--) {
        int d = t - (4 - a->ndim);
        if (d < 0) {
            stride[t] = 0;
            continue;
        }
        if (a->shape[d] == target[t]) stride[t] = target[t] == 1 ? 0 : st;
        else if (a->shape[d] == 1) stride[t] = 0;
        else {
            cli_error(CMD,
                      "%s: the %s's shape %s does not broadcast to [batch, heads_q, seq_q, seq_kv] = "
                      "[%lld, %lld, %lld, %lld]",
                      path, what, shape_of(a, s, sizeof s), (long long)target[0], (long long)target[1],
                      (long long)target[2], (long long)target[3]);
            return CLI_ERR_INPUT;
        }
        st *= a->shape[d];
    }
    return 0;
}

/* ---- outputs ---- */

/* Opens -o and --lse before any work: a path that cannot be written is refused first. */
static int open_outputs(const run_options *o, cli_outfile *fo, cli_outfile *fl)
{
    char err[512];
    if (cli_outfile_open(fo, o->out, err, sizeof err)) goto fail;
    if (o->lse) {
        if (cli_outfile_open(fl, o->lse, err, sizeof err)) goto fail;
        if (cli_outfile_same(fo, fl) && !fo->direct) {
            cli_error(CMD, "-o %s and --lse %s name the same file", o->out, o->lse);
            cli_outfile_abort(fo), cli_outfile_abort(fl);
            return CLI_ERR_USAGE;
        }
    }
    return 0;
fail:
    cli_error(CMD, "%s", err);
    cli_outfile_abort(fo), cli_outfile_abort(fl);
    return CLI_ERR_IO;
}

static int write_outputs(const run_options *o, cli_outfile *fo, cli_outfile *fl, const npy_array *out,
                         const npy_array *lse)
{
    char err[512];
    if (npy_write(fo->f, out, 0) != NPY_OK) {
        snprintf(err, sizeof err, "cannot write %s", o->out);
        goto fail;
    }
    if (cli_outfile_close(fo, err, sizeof err)) goto fail;
    if (o->lse) {
        if (npy_write(fl->f, lse, 0) != NPY_OK) {
            snprintf(err, sizeof err, "cannot write %s", o->lse);
            goto fail;
        }
        if (cli_outfile_close(fl, err, sizeof err)) goto fail;
    }
    /* both complete: now give them their names */
    if (cli_outfile_publish(fo, err, sizeof err)) goto fail;
    if (o->lse && cli_outfile_publish(fl, err, sizeof err)) goto fail;
    return 0;
fail:
    cli_error(CMD, "%s", err);
    cli_outfile_abort(fo);
    cli_outfile_abort(fl);
    return CLI_ERR_IO;
}

/* ---- the command ---- */

int cli_run(int argc, char **argv)
{
    run_options o;
    int status = parse_args(argc, argv, &o);
    if (status) return status < 0 ? CLI_OK : status;

    npy_array q = {0}, k = {0}, v = {0}, mask = {0}, bias = {0}, seqlens = {0}, out = {0}, lse = {0};
    void *qs = NULL, *ks = NULL, *vs = NULL, *q_own = NULL, *k_own = NULL, *v_own = NULL;
    float *bias32 = NULL;
    int32_t *lens32 = NULL;
    char s1[256], s2[256];
    int64_t qd[4], kd[4], vd[4];
    cli_outfile fo = {0}, fl = {0};

    if ((status = open_outputs(&o, &fo, &fl))) return status;
    if ((status = load(o.q, &q)) || (status = load(o.k, &k)) || (status = load(o.v, &v))) goto done;
    if ((status = tensor_dims(&q, o.q, "q", o.bhsd, qd)) || (status = tensor_dims(&k, o.k, "k", o.bhsd, kd)) ||
        (status = tensor_dims(&v, o.v, "v", o.bhsd, vd)))
        goto done;
    status = CLI_ERR_INPUT;
    if (qd[0] != kd[0] || qd[0] != vd[0]) {
        cli_error(CMD, "the batch sizes differ: q %lld, k %lld, v %lld (%s %s)", (long long)qd[0], (long long)kd[0],
                  (long long)vd[0], o.bhsd ? "bhsd" : "bshd", "layout");
        goto done;
    }
    if (kd[1] != vd[1] || kd[2] != vd[2]) {
        cli_error(CMD, "k %s and v %s must have the same seq_kv and heads_kv", shape_of(&k, s1, sizeof s1),
                  shape_of(&v, s2, sizeof s2));
        goto done;
    }
    if (qd[3] != kd[3]) {
        cli_error(CMD, "q and k must have the same head_dim: %lld and %lld", (long long)qd[3], (long long)kd[3]);
        goto done;
    }
    if (qd[2] % kd[2]) {
        cli_error(CMD, "k's %lld heads do not divide q's %lld heads (grouped-query attention needs "
                  "heads_q a multiple of heads_kv)", (long long)kd[2], (long long)qd[2]);
        goto done;
    }
    const int64_t B = qd[0], Sq = qd[1], Hq = qd[2], D = qd[3], Skv = kd[1], Hkv = kd[2], Dv = vd[3];

    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = B, p.seq_q = Sq, p.seq_kv = Skv, p.heads_q = Hq, p.heads_kv = Hkv, p.head_dim = D, p.head_dim_v = Dv;
    p.dtype = o.dtype;
    p.products = o.products;
    if (o.bhsd) { /* [batch][heads][seq][dim]: strides of (batch, seq, head) */
        int64_t qs3[3] = {Hq * Sq * D, D, Sq * D}, ks3[3] = {Hkv * Skv * D, D, Skv * D};
        int64_t vs3[3] = {Hkv * Skv * Dv, Dv, Skv * Dv}, os3[3] = {Hq * Sq * Dv, Dv, Sq * Dv};
        memcpy(p.q_stride, qs3, sizeof qs3), memcpy(p.k_stride, ks3, sizeof ks3);
        memcpy(p.v_stride, vs3, sizeof vs3), memcpy(p.o_stride, os3, sizeof os3);
    }
    p.scale = (float)o.scale;
    p.causal = o.causal;
    p.window_left = o.window_left, p.window_right = o.window_right;
    p.softcap = (float)o.softcap;

    const int64_t target[4] = {B, Hq, Sq, Skv};
    if (o.mask) {
        if ((status = load(o.mask, &mask))) goto done;
        status = CLI_ERR_INPUT;
        if (mask.type != NPY_BOOL && mask.type != NPY_U8 && mask.type != NPY_I8) {
            cli_error(CMD, "%s: the mask is %s; expected bool, uint8 or int8", o.mask, npy_type_name(mask.type));
            goto done;
        }
        if (broadcast(&mask, o.mask, "mask", target, p.mask_stride)) goto done;
        p.mask = mask.data;
    }
    if (o.bias) {
        if ((status = load(o.bias, &bias))) goto done;
        status = CLI_ERR_INPUT;
        if (!npy_is_float(bias.type)) {
            cli_error(CMD, "%s: the bias is %s; expected float32, float16 or float64", o.bias,
                      npy_type_name(bias.type));
            goto done;
        }
        if (broadcast(&bias, o.bias, "bias", target, p.bias_stride)) goto done;
        status = CLI_ERR_RUNTIME;
        if (!(bias32 = malloc(bias.count ? (size_t)bias.count * sizeof(float) : 1))) {
            cli_error(CMD, "out of memory");
            goto done;
        }
        for (int64_t i = 0; i < bias.count; i++) bias32[i] = npy_get_f32(&bias, i);
        p.bias = bias32;
    }
    if (o.seqlens_kv) {
        if ((status = load(o.seqlens_kv, &seqlens))) goto done;
        status = CLI_ERR_INPUT;
        if ((seqlens.type != NPY_I32 && seqlens.type != NPY_I64) || seqlens.ndim != 1 || seqlens.shape[0] != B) {
            cli_error(CMD, "%s: the key lengths must be int32 or int64 [batch] = [%lld], not %s %s", o.seqlens_kv,
                      (long long)B, npy_type_name(seqlens.type), shape_of(&seqlens, s1, sizeof s1));
            goto done;
        }
        status = CLI_ERR_RUNTIME;
        if (!(lens32 = malloc((size_t)B * sizeof(int32_t)))) {
            cli_error(CMD, "out of memory");
            goto done;
        }
        status = CLI_ERR_INPUT;
        for (int64_t b = 0; b < B; b++) {
            int64_t len = seqlens.type == NPY_I32 ? ((int32_t *)seqlens.data)[b] : ((int64_t *)seqlens.data)[b];
            if (len < 0 || len > Skv) {
                cli_error(CMD, "%s: key length %lld of sequence %lld is outside [0, seq_kv = %lld]", o.seqlens_kv,
                          (long long)len, (long long)b, (long long)Skv);
                goto done;
            }
            lens32[b] = (int32_t)len;
        }
        p.seqlens_kv = lens32;
    }

    /* q, k, v in the storage type */
    if ((status = to_storage(&q, o.q, o.dtype, &qs, &q_own)) || (status = to_storage(&k, o.k, o.dtype, &ks, &k_own)) ||
        (status = to_storage(&v, o.v, o.dtype, &vs, &v_own)))
        goto done;

    /* out: q's rank and layout, head_dim_v wide */
    status = CLI_ERR_RUNTIME;
    int64_t oshape[4];
    memcpy(oshape, q.shape, sizeof oshape);
    oshape[q.ndim - 1] = Dv;
    int64_t lshape[3] = {B, Hq, Sq};
    npy_type otype = o.dtype == SATTN_F32 ? NPY_F32 : o.dtype == SATTN_F16 ? NPY_F16 : NPY_U16;
    if (npy_alloc(&out, otype, q.ndim, oshape) ||
        (o.lse && npy_alloc(&lse, NPY_F32, 3, lshape))) {
        cli_error(CMD, "out of memory for the output");
        goto done;
    }

    if (o.threads) sattn_set_num_threads((int)o.threads);
    double t0 = cli_seconds();
    if (sattn_forward(&p, qs, ks, vs, out.data, o.lse ? (float *)lse.data : NULL) != SATTN_OK) {
        cli_error(CMD, "%s", sattn_last_error());
        goto done;
    }
    double t1 = cli_seconds();
    const int to_stdout = cli_outfile_is_stdout(&fo) || (o.lse && cli_outfile_is_stdout(&fl));
    if ((status = write_outputs(&o, &fo, &fl, &out, &lse))) goto done;
    fprintf(to_stdout ? stderr : stdout, "wrote %s: %s %s, %.3f ms with %d threads (%s kernels)\n", o.out, npy_type_name(otype),
           shape_of(&out, s1, sizeof s1), 1e3 * (t1 - t0), sattn_get_num_threads(), sattn_isa());
    status = CLI_OK;
done:
    cli_outfile_abort(&fo), cli_outfile_abort(&fl); /* nothing left behind on failure */
    free(q_own), free(k_own), free(v_own), free(bias32), free(lens32);
    npy_free(&q), npy_free(&k), npy_free(&v), npy_free(&mask), npy_free(&bias), npy_free(&seqlens);
    npy_free(&out), npy_free(&lse);
    return status;
}
