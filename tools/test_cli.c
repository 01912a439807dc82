/* test_cli: the sattn program, run as a user runs it.
 *
 *   test_cli PATH/TO/sattn
 *
 *   npy      .npy round trips for every dtype and byte order; headers NumPy may write
 *            (versions 1-3, key order, quotes); f16/bf16 conversions against the
 *            reference's, around every f16 rounding boundary
 *   run      `sattn run` against the double-precision reference (tests/ref) on every
 *            option: layouts, 3-D inputs, GQA, head_dim_v, both causal alignments,
 *            windows, masks and biases in every broadcast shape, key lengths, softcap,
 *            scale, f16/bf16 storage from f32, f16, raw bf16, f64 and big-endian files,
 *            lse (with fully masked rows)
 *   broken   truncated, malformed and mismatched inputs: the documented exit status,
 *            a message on stderr that says what is wrong, and no output file (nor a
 *            temporary one) left behind; an existing output file is left untouched
 *   outputs  what -o names: a device is written in place (never replaced), a symbolic
 *            link is written through, a read-only file or a directory is refused before
 *            any work, -o and --lse naming one file by two spellings is refused, an
 *            interrupted run leaves no temporary file, a file keeps its mode; a label
 *            file that is not text is refused at once
 *   usage    exit status 2 and a message for bad command lines; --help for each command
 *   show     a valid PNG of the documented size whose cells have the colour map's colours
 *   gradcheck the demo model's gradients (model.c, with sattn's layer inside) against
 *            finite differences of its loss
 *   demo     a short `sattn demo --steps` run whose loss falls, and its maps
 *
 * Expected values come from tests/ref and from the documented layout, never from
 * the code under test.
 */
#define _XOPEN_SOURCE 700 /* usleep, with POSIX 2008 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#ifdef SATTN_HAVE_PNG
#include <png.h>
#endif

#include "model.h"
#include "npy.h"
#include "sattn.h"
#include "sattn_ref.h"

/* ---- checks ---- */

static long checks, failures;

static int check(int ok, const char *fmt, ...)
{
    checks++;
    if (!ok) {
        va_list ap;
        va_start(ap, fmt);
        failures++;
        printf("FAIL: ");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
    return ok;
}

/* ---- random numbers ---- */

static uint64_t rng_state = 12345;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float unif(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() >> 40) * 0x1p-24f; }

/* ---- files and the program ---- */

static const char *sattn_path;
static char dir[512];

static char *path_in(const char *name)
{
    static char buf[32][1024]; /* a run's arguments hold up to a dozen at once */
    static int next;
    char *p = buf[next++ % 32];
    snprintf(p, 1024, "%s/%s", dir, name);
    return p;
}

static char out_text[1 << 16], err_text[1 << 16];

static void slurp(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs sattn with args (NULL-terminated, args[0] its name); stdout and stderr land in
   out_text and err_text. Returns the exit status, or 128 + the signal that killed it. */
static int run_args(const char *const *args)
{
    char o[1024], e[1024];
    snprintf(o, sizeof o, "%s/stdout.txt", dir), snprintf(e, sizeof e, "%s/stderr.txt", dir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fi = open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0) _exit(126);
        dup2(fo, 1), dup2(fe, 2), dup2(fi, 0);
        execv(sattn_path, (char *const *)args);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    slurp(o, out_text, sizeof out_text), slurp(e, err_text, sizeof err_text);
    unlink(o), unlink(e);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

/* run_args with the arguments after "sattn", NULL-terminated. */
static int run_sattn(const char *arg, ...)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = "sattn";
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a && n < 63; a = va_arg(ap, const char *)) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return run_args(argv);
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Files in dir whose name starts with prefix (outputs and their temporary names). */
static int count_prefixed(const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    if (d) closedir(d);
    return n;
}

static void save(const char *name, npy_type type, int ndim, const int64_t *shape, const void *data, int big_endian)
{
    npy_array a;
    memset(&a, 0, sizeof a);
    a.type = type, a.ndim = ndim, a.count = 1;
    for (int d = 0; d < ndim; d++) a.shape[d] = shape[d], a.count *= shape[d];
    a.data = (void *)data;
    FILE *f = fopen(path_in(name), "wb");
    if (!f || npy_write(f, &a, big_endian) != NPY_OK) {
        printf("cannot write %s\n", path_in(name));
        exit(1);
    }
    fclose(f);
}

static void save_bytes(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(path_in(name), "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        printf("cannot write %s\n", path_in(name));
        exit(1);
    }
    fclose(f);
}

/* The whole file into a malloc'ed buffer. */
static uint8_t *load_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) free(b), b = NULL;
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ---- npy: round trips, headers, conversions ---- */

static void test_npy(void)
{
    static const npy_type types[] = {NPY_F32, NPY_F16, NPY_F64, NPY_U16, NPY_I32, NPY_I64, NPY_BOOL, NPY_U8, NPY_I8};
    static const int64_t shapes[4][3] = {{7, 0, 0}, {3, 5, 2}, {2, 0, 4}, {1, 1, 1}};
    static const int ndims[4] = {1, 3, 3, 0};
    char err[512];
    for (size_t t = 0; t < sizeof types / sizeof *types; t++)
        for (int big = 0; big < 2; big++)
            for (int s = 0; s < 4; s++) {
                npy_array a, b;
                npy_alloc(&a, types[t], ndims[s], shapes[s]);
                uint8_t *p = a.data;
                for (size_t i = 0; i < (size_t)a.count * npy_type_size(a.type); i++) p[i] = (uint8_t)rnd();
                if (types[t] == NPY_BOOL)
                    for (int64_t i = 0; i < a.count; i++) p[i] &= 1;
                save("rt.npy", a.type, a.ndim, a.shape, a.data, big);
                npy_status st = npy_read(path_in("rt.npy"), &b, err, sizeof err);
                int same = st == NPY_OK && b.type == a.type && b.ndim == a.ndim && b.count == a.count &&
                           !memcmp(b.shape, a.shape, sizeof(int64_t) * (size_t)a.ndim) &&
                           !memcmp(b.data, a.data, (size_t)a.count * npy_type_size(a.type));
                /* the file itself: NumPy's header, 64-byte aligned data */
                size_t len;
                uint8_t *raw = load_bytes(path_in("rt.npy"), &len);
                size_t hlen = raw && len >= 10 ? (size_t)raw[8] | (size_t)raw[9] << 8 : 0;
                char header[256] = "";
                if (hlen < sizeof header && 10 + hlen <= len) memcpy(header, raw + 10, hlen), header[hlen] = '\0';
                char descr[8];
                snprintf(descr, sizeof descr, "'%c%s'", npy_type_size(a.type) == 1 ? '|' : big ? '>' : '<',
                         (const char *[]){"f4", "f2", "f8", "u2", "i4", "i8", "b1", "u1", "i1"}[t]);
                int header_ok = raw && (10 + hlen) % 64 == 0 && raw[9 + hlen] == '\n' && strstr(header, descr) &&
                                strstr(header, "'fortran_order': False");
                check(same && header_ok, "npy round trip %s %s-endian ndim %d: %s", npy_type_name(a.type),
                      big ? "big" : "little", a.ndim, st ? err : same ? "header" : "data differs");
                /* the same bytes through npy_parse */
                npy_array c;
                st = raw ? npy_parse(raw, len, "buffer", &c, err, sizeof err) : NPY_ERR_IO;
                check(st == NPY_OK && c.count == a.count &&
                          !memcmp(c.data, a.data, (size_t)a.count * npy_type_size(a.type)),
                      "npy_parse of a written file (%s)", st ? err : "data differs");
                if (st == NPY_OK) npy_free(&c);
                free(raw);
                npy_free(&a), npy_free(&b);
            }

    /* headers written by other writers: versions 2.0 and 3.0, other key order, double
       quotes, Python 2 longs, no trailing comma or newline */
    static const struct {
        int major;
        const char *dict;
    } headers[] = {
        {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"},
        {3, "{\"shape\": (2, 3), \"fortran_order\": False, \"descr\": \"<f4\"}\n"},
        {1, "{'fortran_order': False, 'shape': (2L, 3L), 'descr': '<f4'}      \n"},
        {1, "{'descr':'=f4','fortran_order':False,'shape':(2,3)}"},
    };
    const float six[6] = {1, 2, 3, 4, 5, 6};
    for (size_t h = 0; h < sizeof headers / sizeof *headers; h++) {
        uint8_t buf[256];
        size_t dl = strlen(headers[h].dict), pre = headers[h].major == 1 ? 10 : 12;
        memcpy(buf, "\x93NUMPY", 6), buf[6] = (uint8_t)headers[h].major, buf[7] = 0;
        buf[8] = (uint8_t)dl, buf[9] = 0, buf[10] = 0, buf[11] = 0;
        memcpy(buf + pre, headers[h].dict, dl);
        memcpy(buf + pre + dl, six, sizeof six);
        npy_array a;
        npy_status st = npy_parse(buf, pre + dl + sizeof six, "header", &a, err, sizeof err);
        check(st == NPY_OK && a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3 && a.type == NPY_F32 &&
                  !memcmp(a.data, six, sizeof six),
              "npy header variant %zu parses (%s)", h, st ? err : "wrong array");
        if (st == NPY_OK) npy_free(&a);
    }

    /* f16: every bit pattern to f32, exactly as the reference decodes it */
    long bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        double want = sattn_ref_f16_to_f64((uint16_t)h);
        float got = npy_f16_to_f32((uint16_t)h);
        bad += isnan(want) ? !isnan(got) : (double)got != want || !signbit(got) != !signbit(want);
        bad += npy_bf16_to_f32((uint16_t)h) != (float)sattn_ref_bf16_to_f64((uint16_t)h) &&
               !isnan(sattn_ref_bf16_to_f64((uint16_t)h));
    }
    check(bad == 0, "f16/bf16 to f32 matches the reference for all 65536 patterns (%ld differ)", bad);
    /* f32 to f16/bf16: at every f16 value, the midpoints to its neighbours (ties) and one
       f32 ulp either side of them, plus random floats of every magnitude */
    bad = 0;
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float a = (float)sattn_ref_f16_to_f64((uint16_t)h), b = (float)sattn_ref_f16_to_f64((uint16_t)(h + 1));
        float mid = a + (b - a) / 2, xs[5] = {a, mid, nextafterf(mid, 0), nextafterf(mid, INFINITY), b};
        for (int i = 0; i < 5; i++)
            for (int sign = 0; sign < 2; sign++) {
                float x = sign ? -xs[i] : xs[i];
                bad += npy_f32_to_f16(x) != sattn_ref_f32_to_f16(x);
                bad += npy_f32_to_bf16(x) != sattn_ref_f32_to_bf16(x);
            }
    }
    for (int i = 0; i < 1000000; i++) {
        uint32_t u = (uint32_t)rnd();
        float x;
        memcpy(&x, &u, 4);
        if (isnan(x)) {
            bad += !isnan(npy_f16_to_f32(npy_f32_to_f16(x))) + !isnan(npy_bf16_to_f32(npy_f32_to_bf16(x)));
            continue;
        }
        bad += npy_f32_to_f16(x) != sattn_ref_f32_to_f16(x);
        bad += npy_f32_to_bf16(x) != sattn_ref_f32_to_bf16(x);
    }
    check(bad == 0, "f32 to f16/bf16 rounds as the reference at every boundary and 1e6 random floats (%ld differ)",
          bad);
}

/* ---- run: against the reference ---- */

typedef struct {
    const char *name;
    int64_t B, Sq, Skv, Hq, Hkv, D, Dv;
    int bhsd, three_d;
    const char *causal; /* NULL, "top-left", "bottom-right" */
    int64_t wl, wr;     /* window; both 0: none */
    int mask;           /* 0 none, 1 [q,k], 2 [h,q,k], 3 [b,h,q,k], 4 [b,1,1,k] bool */
    int bias;           /* 0 none, 1 [b,h,q,k] f32, 2 [q,k] f64 with -inf, 3 [h,1,k] f16 */
    int seqlens;        /* 0 none, 1 int32, 2 int64 */
    float softcap, scale;
    const char *dtype;  /* NULL (f32), "f16", "bf16" */
    npy_type file_type; /* storage of the q, k, v files: F32, F64, F16, or U16 (raw bf16) */
    int big_endian;
    int lse;
    const char *products; /* NULL, or --products' value */
} run_case;

static sattn_dtype dtype_of(const char *d)
{
    return !d ? SATTN_F32 : !strcmp(d, "f16") ? SATTN_F16 : SATTN_BF16;
}

/* x rounded as a file of type t stores it */
static float file_round(npy_type t, float x)
{
    return t == NPY_F16 ? sattn_ref_round_f16(x) : t == NPY_U16 ? sattn_ref_round_bf16(x) : x;
}

/* n values in file type t (from floats already representable in it) */
static void *file_data(npy_type t, const float *x, size_t n)
{
    size_t es = npy_type_size(t);
    uint8_t *b = malloc(n * es + 1);
    for (size_t i = 0; i < n; i++) {
        if (t == NPY_F32) memcpy(b + 4 * i, &x[i], 4);
        else if (t == NPY_F64) {
            double d = x[i];
            memcpy(b + 8 * i, &d, 8);
        } else {
            uint16_t h = t == NPY_F16 ? sattn_ref_f32_to_f16(x[i]) : sattn_ref_f32_to_bf16(x[i]);
            memcpy(b + 2 * i, &h, 2);
        }
    }
    return b;
}

/* q, k or v file: shape in the layout, values uniform in [-1, 1] rounded to the file
   type; returns the floats (to be stored as the dtype for the reference) */
static float *make_tensor(const run_case *c, const char *file, int64_t S, int64_t H, int64_t D)
{
    size_t n = (size_t)(c->B * S * H * D);
    float *x = malloc(n * sizeof *x + 1);
    for (size_t i = 0; i < n; i++) x[i] = file_round(c->file_type, unif(-1, 1));
    int64_t shape[4] = {c->B, c->bhsd ? H : S, c->bhsd ? S : H, D};
    void *data = file_data(c->file_type, x, n);
    if (c->three_d) save(file, c->file_type, 3, shape + 1, data, c->big_endian);
    else save(file, c->file_type, 4, shape, data, c->big_endian);
    free(data);
    return x;
}

/* floats stored as dtype, as the reference reads them */
static void *as_dtype(sattn_dtype dt, const float *x, size_t n)
{
    if (dt == SATTN_F32) {
        float *r = malloc(n * 4 + 1);
        memcpy(r, x, n * 4);
        return r;
    }
    uint16_t *r = malloc(n * 2 + 1);
    for (size_t i = 0; i < n; i++) r[i] = dt == SATTN_F16 ? sattn_ref_f32_to_f16(x[i]) : sattn_ref_f32_to_bf16(x[i]);
    return r;
}

static double stored_value(const npy_array *a, int64_t i)
{
    switch (a->type) {
    case NPY_F32: return ((const float *)a->data)[i];
    case NPY_F16: return sattn_ref_f16_to_f64(((const uint16_t *)a->data)[i]);
    case NPY_U16: return sattn_ref_bf16_to_f64(((const uint16_t *)a->data)[i]);
    default: return NAN;
    }
}

static void run_case_check(const run_case *c)
{
    const sattn_dtype dt = dtype_of(c->dtype);
    const int64_t B = c->B, Sq = c->Sq, Skv = c->Skv, Hq = c->Hq, Hkv = c->Hkv, D = c->D, Dv = c->Dv;
    unlink(path_in("out.npy")), unlink(path_in("lse.npy"));
    float *q = make_tensor(c, "q.npy", Sq, Hq, D), *k = make_tensor(c, "k.npy", Skv, Hkv, D);
    float *v = make_tensor(c, "v.npy", Skv, Hkv, Dv);

    sattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = B, p.seq_q = Sq, p.seq_kv = Skv, p.heads_q = Hq, p.heads_kv = Hkv, p.head_dim = D, p.head_dim_v = Dv;
    p.dtype = dt;
    if (c->bhsd) {
        int64_t qs[3] = {Hq * Sq * D, D, Sq * D}, ks[3] = {Hkv * Skv * D, D, Skv * D};
        int64_t vs[3] = {Hkv * Skv * Dv, Dv, Skv * Dv}, os[3] = {Hq * Sq * Dv, Dv, Sq * Dv};
        memcpy(p.q_stride, qs, sizeof qs), memcpy(p.k_stride, ks, sizeof ks);
        memcpy(p.v_stride, vs, sizeof vs), memcpy(p.o_stride, os, sizeof os);
    }
    p.causal = !c->causal ? SATTN_CAUSAL_NONE : !strcmp(c->causal, "top-left") ? SATTN_CAUSAL_TOP_LEFT
                                                                              : SATTN_CAUSAL_BOTTOM_RIGHT;
    p.window_left = c->wl, p.window_right = c->wr, p.softcap = c->softcap, p.scale = c->scale;

    const char *args[40];
    char num[4][64];
    int n = 0;
    args[n++] = "sattn", args[n++] = "run", args[n++] = "--q", args[n++] = path_in("q.npy"), args[n++] = "--k";
    args[n++] = path_in("k.npy"), args[n++] = "--v", args[n++] = path_in("v.npy"), args[n++] = "-o";
    args[n++] = path_in("out.npy");
    if (c->lse) args[n++] = "--lse", args[n++] = path_in("lse.npy");
    if (c->bhsd) args[n++] = "--layout", args[n++] = "bhsd";
    if (c->causal) args[n++] = "--causal", args[n++] = c->causal;
    if (c->wl || c->wr) {
        snprintf(num[0], sizeof num[0], "%lld,%lld", (long long)c->wl, (long long)c->wr);
        args[n++] = "--window", args[n++] = num[0];
    }
    if (c->softcap) snprintf(num[1], sizeof num[1], "%.9g", c->softcap), args[n++] = "--softcap", args[n++] = num[1];
    if (c->scale) snprintf(num[2], sizeof num[2], "%.9g", c->scale), args[n++] = "--scale", args[n++] = num[2];
    if (c->dtype) args[n++] = "--dtype", args[n++] = c->dtype;
    if (c->products) args[n++] = "--products", args[n++] = c->products;

    /* the mask: a small array for the program, its broadcast in full for the reference */
    const size_t full = (size_t)(B * Hq * Sq * Skv);
    uint8_t *mask_full = NULL;
    float *bias_full = NULL;
    int32_t *lens = NULL;
    if (c->mask) {
        int64_t shape[4], ndim;
        switch (c->mask) {
        case 1: ndim = 2, shape[0] = Sq, shape[1] = Skv; break;
        case 2: ndim = 3, shape[0] = Hq, shape[1] = Sq, shape[2] = Skv; break;
        case 3: ndim = 4, shape[0] = B, shape[1] = Hq, shape[2] = Sq, shape[3] = Skv; break;
        default: ndim = 4, shape[0] = B, shape[1] = 1, shape[2] = 1, shape[3] = Skv; break;
        }
        int64_t cnt = 1;
        for (int d = 0; d < ndim; d++) cnt *= shape[d];
        uint8_t *small = malloc((size_t)cnt);
        for (int64_t i = 0; i < cnt; i++) small[i] = rnd() % 10 < 7;
        save("mask.npy", NPY_BOOL, (int)ndim, shape, small, 0);
        mask_full = malloc(full);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t i = 0; i < Sq; i++)
                    for (int64_t j = 0; j < Skv; j++) {
                        int64_t idx = c->mask == 1 ? i * Skv + j
                                    : c->mask == 2 ? (h * Sq + i) * Skv + j
                                    : c->mask == 3 ? ((b * Hq + h) * Sq + i) * Skv + j
                                                   : b * Skv + j;
                        mask_full[((b * Hq + h) * Sq + i) * Skv + j] = small[idx];
                    }
        free(small);
        p.mask = mask_full;
        p.mask_stride[0] = Hq * Sq * Skv, p.mask_stride[1] = Sq * Skv, p.mask_stride[2] = Skv, p.mask_stride[3] = 1;
        args[n++] = "--mask", args[n++] = path_in("mask.npy");
    }
    if (c->bias) {
        int64_t shape[4], ndim;
        npy_type bt = c->bias == 1 ? NPY_F32 : c->bias == 2 ? NPY_F64 : NPY_F16;
        switch (c->bias) {
        case 1: ndim = 4, shape[0] = B, shape[1] = Hq, shape[2] = Sq, shape[3] = Skv; break;
        case 2: ndim = 2, shape[0] = Sq, shape[1] = Skv; break;
        default: ndim = 3, shape[0] = Hq, shape[1] = 1, shape[2] = Skv; break;
        }
        int64_t cnt = 1;
        for (int d = 0; d < ndim; d++) cnt *= shape[d];
        float *small = malloc((size_t)cnt * sizeof *small);
        for (int64_t i = 0; i < cnt; i++) {
            small[i] = file_round(bt, unif(-2, 2));
            if (c->bias == 2 && rnd() % 8 == 0) small[i] = -INFINITY;
        }
        void *data = file_data(bt, small, (size_t)cnt);
        save("bias.npy", bt, (int)ndim, shape, data, 0);
        free(data);
        bias_full = malloc(full * sizeof *bias_full);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < Hq; h++)
                for (int64_t i = 0; i < Sq; i++)
                    for (int64_t j = 0; j < Skv; j++) {
                        int64_t idx = c->bias == 1 ? ((b * Hq + h) * Sq + i) * Skv + j
                                    : c->bias == 2 ? i * Skv + j
                                                   : h * Skv + j;
                        bias_full[((b * Hq + h) * Sq + i) * Skv + j] = small[idx];
                    }
        free(small);
        p.bias = bias_full;
        p.bias_stride[0] = Hq * Sq * Skv, p.bias_stride[1] = Sq * Skv, p.bias_stride[2] = Skv, p.bias_stride[3] = 1;
        args[n++] = "--bias", args[n++] = path_in("bias.npy");
    }
    if (c->seqlens) {
        lens = malloc((size_t)B * sizeof *lens);
        int64_t *lens64 = malloc((size_t)B * sizeof *lens64);
        for (int64_t b = 0; b < B; b++) lens[b] = b == 1 ? 0 : (int32_t)(rnd() % (uint64_t)(Skv + 1)), lens64[b] = lens[b];
        if (c->seqlens == 1) save("lens.npy", NPY_I32, 1, &B, lens, 0);
        else save("lens.npy", NPY_I64, 1, &B, lens64, 1);
        free(lens64);
        p.seqlens_kv = lens;
        args[n++] = "--seqlens-kv", args[n++] = path_in("lens.npy");
    }
    args[n] = NULL;

    int rc = run_args(args);
    const size_t nq = (size_t)(B * Sq * Hq * D), nkv = (size_t)(B * Skv * Hkv * D), nv = (size_t)(B * Skv * Hkv * Dv);
    const size_t no = (size_t)(B * Sq * Hq * Dv), nl = (size_t)(B * Hq * Sq);
    void *qs = as_dtype(dt, q, nq), *ks = as_dtype(dt, k, nkv), *vs = as_dtype(dt, v, nv);
    double *ref = malloc(no * sizeof *ref + 8), *ref_lse = malloc(nl * sizeof *ref_lse + 8);
    int ref_ok = sattn_ref_forward(&p, qs, ks, vs, ref, ref_lse) == 0;
    if (check(rc == 0 && ref_ok, "run %s: exit %d (stderr: %s)", c->name, rc, err_text)) {
        char err[512];
        npy_array out, lse;
        memset(&lse, 0, sizeof lse);
        npy_status st = npy_read(path_in("out.npy"), &out, err, sizeof err);
        npy_type want_type = dt == SATTN_F32 ? NPY_F32 : dt == SATTN_F16 ? NPY_F16 : NPY_U16;
        int64_t want_shape[4] = {B, c->bhsd ? Hq : Sq, c->bhsd ? Sq : Hq, Dv};
        int shape_ok = st == NPY_OK && out.type == want_type && out.ndim == (c->three_d ? 3 : 4) &&
                       !memcmp(out.shape, want_shape + c->three_d, sizeof(int64_t) * (size_t)out.ndim);
        if (check(shape_ok, "run %s: output file type and shape (%s)", c->name, st ? err : "mismatch")) {
            /* f32 sums in the library against double; stored f16/bf16 rounds once more */
            const double rel = dt == SATTN_F32 ? 2e-5 : dt == SATTN_F16 ? 1.5e-3 : 1e-2;
            /* bf16 products: each weight rounded to bf16, 2^-8 of sum_j P |v_j| <= max |v| */
            double vmax = 0;
            for (size_t i = 0; c->products && i < nv; i++) vmax = fmax(vmax, fabs((double)v[i]));
            const double abs_tol = 2e-5 + 0x1p-8 * 1.05 * vmax;
            double worst = 0;
            size_t at = 0;
            for (size_t i = 0; i < no; i++) {
                double e = fabs(stored_value(&out, (int64_t)i) - ref[i]) / (abs_tol + rel * fabs(ref[i]));
                if (!(e <= worst)) worst = e, at = i;
            }
            check(worst <= 1, "run %s: out[%zu] = %.8g, reference %.8g (error %.2f of the tolerance)", c->name, at,
                  stored_value(&out, (int64_t)at), ref[at], worst);
        }
        if (c->lse) {
            st = npy_read(path_in("lse.npy"), &lse, err, sizeof err);
            int64_t ls[3] = {B, Hq, Sq};
            if (check(st == NPY_OK && lse.type == NPY_F32 && lse.ndim == 3 && !memcmp(lse.shape, ls, sizeof ls),
                      "run %s: lse file type and shape (%s)", c->name, st ? err : "mismatch")) {
                long bad = 0, masked = 0;
                for (size_t i = 0; i < nl; i++) {
                    double got = ((float *)lse.data)[i];
                    if (isinf(ref_lse[i])) bad += !(isinf(got) && got < 0), masked++;
                    else bad += !(fabs(got - ref_lse[i]) <= 1e-5 * (1 + fabs(ref_lse[i])));
                }
                check(bad == 0, "run %s: %ld of %zu lse values differ from the reference (%ld fully masked rows)",
                      c->name, bad, nl, masked);
            }
        }
        if (out.data) npy_free(&out);
        if (lse.data) npy_free(&lse);
    }
    free(q), free(k), free(v), free(qs), free(ks), free(vs), free(ref), free(ref_lse);
    free(mask_full), free(bias_full), free(lens);
}

static void test_run(void)
{
    /* name, B, Sq, Skv, Hq, Hkv, D, Dv, bhsd, 3-D, causal, wl, wr, mask, bias, seqlens, softcap, scale, dtype,
       file type, big-endian, lse */
    static const run_case cases[] = {
        {"bshd", 2, 17, 23, 4, 4, 16, 16, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"3-D", 1, 9, 9, 2, 2, 8, 8, 0, 1, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"bhsd", 2, 13, 19, 4, 2, 8, 12, 1, 0, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"bhsd 3-D", 1, 11, 6, 3, 1, 4, 4, 1, 1, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F32, 0, 0, NULL},
        {"gqa head_dim_v", 1, 16, 16, 6, 2, 8, 4, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F32, 0, 0, NULL},
        {"causal top-left", 2, 20, 20, 2, 2, 8, 8, 0, 0, "top-left", 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"causal bottom-right", 2, 7, 20, 2, 1, 8, 8, 0, 0, "bottom-right", 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"bottom-right, seq_q > seq_kv", 1, 20, 7, 2, 2, 8, 8, 0, 0, "bottom-right", 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F32,
         0, 1, NULL},
        {"window", 2, 24, 24, 2, 2, 8, 8, 0, 0, NULL, 5, 2, 0, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"window left only, causal", 1, 24, 30, 2, 2, 8, 8, 0, 0, "bottom-right", 4, 0, 0, 0, 0, 0, 0, NULL, NPY_F32, 0,
         0, NULL},
        {"mask [q,k]", 2, 10, 12, 3, 3, 8, 8, 0, 0, NULL, 0, 0, 1, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"mask [h,q,k]", 2, 10, 12, 3, 3, 8, 8, 0, 0, NULL, 0, 0, 2, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"mask [b,h,q,k]", 2, 10, 12, 3, 3, 8, 8, 0, 0, NULL, 0, 0, 3, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"mask [b,1,1,k]", 3, 10, 12, 2, 1, 8, 8, 1, 0, NULL, 0, 0, 4, 0, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"bias [b,h,q,k] f32", 2, 9, 11, 2, 2, 8, 8, 0, 0, NULL, 0, 0, 0, 1, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"bias [q,k] f64 with -inf", 2, 9, 11, 2, 2, 8, 8, 0, 0, NULL, 0, 0, 0, 2, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"bias [h,1,k] f16", 2, 9, 11, 2, 2, 8, 8, 0, 0, NULL, 0, 0, 0, 3, 0, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"seqlens-kv int32", 3, 8, 15, 2, 2, 8, 8, 0, 0, NULL, 0, 0, 0, 0, 1, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"seqlens-kv int64 big-endian", 3, 8, 15, 2, 2, 8, 8, 0, 0, NULL, 0, 0, 0, 0, 2, 0, 0, NULL, NPY_F32, 0, 1, NULL},
        {"softcap", 1, 12, 12, 2, 2, 8, 8, 0, 0, NULL, 0, 0, 0, 0, 0, 0.5f, 0, NULL, NPY_F32, 0, 1, NULL},
        {"scale", 1, 12, 12, 2, 2, 8, 8, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 2.5f, NULL, NPY_F32, 0, 1, NULL},
        {"dtype f16 from f32", 2, 12, 14, 2, 2, 16, 16, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, "f16", NPY_F32, 0, 1, NULL},
        {"dtype f16 from big-endian f16", 2, 12, 14, 2, 2, 16, 16, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, "f16", NPY_F16, 1,
         1, NULL},
        {"dtype f32 from f16", 1, 12, 14, 2, 2, 16, 16, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F16, 0, 1, NULL},
        {"dtype bf16 from f32", 2, 12, 14, 2, 2, 16, 16, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, "bf16", NPY_F32, 0, 1, NULL},
        {"dtype bf16 from raw uint16", 2, 12, 14, 2, 2, 16, 16, 1, 0, NULL, 0, 0, 0, 0, 0, 0, 0, "bf16", NPY_U16, 0,
         1, NULL},
        {"f64 inputs", 1, 12, 14, 2, 2, 16, 16, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F64, 0, 1, NULL},
        {"big-endian f32 inputs", 1, 12, 14, 2, 2, 16, 16, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NPY_F32, 1, 1, NULL},
        {"everything at once", 2, 21, 33, 4, 2, 16, 8, 1, 0, "bottom-right", 9, 3, 2, 1, 1, 4.0f, 0.2f, "f16",
         NPY_F32, 1, 1, NULL},
        /* more than one query block per head, so that the bf16 products run where the CPU has them */
        {"products bf16", 1, 130, 140, 2, 1, 16, 16, 0, 0, "top-left", 0, 0, 0, 0, 1, 0, 0, "bf16", NPY_F32, 0, 1,
         "bf16"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case_check(&cases[i]);
}

/* ---- broken inputs ---- */

/* a good k and v for q [1, 4, 2, 8] in bshd */
static void write_good_kv(void)
{
    float x[1 * 5 * 2 * 8];
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = unif(-1, 1);
    int64_t shape[4] = {1, 5, 2, 8};
    save("k.npy", NPY_F32, 4, shape, x, 0);
    save("v.npy", NPY_F32, 4, shape, x, 0);
}

static uint8_t good_q[4096];
static size_t good_q_len;

/* a q file [1, 4, 2, 8] f32, as bytes */
static void make_good_q(void)
{
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = unif(-1, 1);
    int64_t shape[4] = {1, 4, 2, 8};
    save("q.npy", NPY_F32, 4, shape, x, 0);
    uint8_t *b = load_bytes(path_in("q.npy"), &good_q_len);
    memcpy(good_q, b, good_q_len);
    free(b);
}

/* bytes of a .npy file with that header dict and n data bytes */
static size_t make_npy(uint8_t *buf, const char *dict, size_t data_bytes)
{
    size_t dl = strlen(dict);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(dl & 0xff), buf[9] = (uint8_t)(dl >> 8);
    memcpy(buf + 10, dict, dl);
    memset(buf + 10 + dl, 0, data_bytes);
    return 10 + dl + data_bytes;
}

/* Runs `sattn run` with q (or another input) replaced; expects status and a message
   containing word, and no output left behind. */
static void expect_failure(const char *what, int status, const char *word, const char *extra1, const char *extra2)
{
    int rc = run_sattn("run", "--q", path_in("q.npy"), "--k", path_in("k.npy"), "--v", path_in("v.npy"), "-o",
                       path_in("out.npy"), "--lse", path_in("lse.npy"), extra1, extra2, NULL);
    check(rc == status, "broken input '%s': exit %d, expected %d (stderr: %s)", what, rc, status, err_text);
    check(strstr(err_text, "sattn run: ") && strstr(err_text, word),
          "broken input '%s': stderr says '%s' (it says: %s)", what, word, err_text);
    check(count_prefixed("out.npy") == 0 && count_prefixed("lse.npy") == 0,
          "broken input '%s': no output file or temporary file left", what);
}

static void test_broken(void)
{
    uint8_t buf[8192];
    size_t n;
    unlink(path_in("out.npy")), unlink(path_in("lse.npy"));
    write_good_kv();
    make_good_q();
    /* the good files work */
    int rc = run_sattn("run", "--q", path_in("q.npy"), "--k", path_in("k.npy"), "--v", path_in("v.npy"), "-o",
                       path_in("out.npy"), NULL);
    check(rc == 0 && exists(path_in("out.npy")), "the good inputs run (exit %d: %s)", rc, err_text);
    unlink(path_in("out.npy"));

    save_bytes("q.npy", good_q, good_q_len - 5);
    expect_failure("truncated data", 3, "truncated", NULL, NULL);
    save_bytes("q.npy", good_q, 40);
    expect_failure("truncated header", 3, "truncated", NULL, NULL);
    save_bytes("q.npy", good_q, 5);
    expect_failure("truncated magic", 3, "not a .npy file", NULL, NULL);
    save_bytes("q.npy", good_q, 0);
    expect_failure("empty file", 3, "not a .npy file", NULL, NULL);
    memcpy(buf, good_q, good_q_len), buf[1] = 'X';
    save_bytes("q.npy", buf, good_q_len);
    expect_failure("bad magic", 3, "not a .npy file", NULL, NULL);
    memcpy(buf, good_q, good_q_len), buf[6] = 9;
    save_bytes("q.npy", buf, good_q_len);
    expect_failure("unknown version", 3, "version", NULL, NULL);
    memcpy(buf, "\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr'", 20);
    save_bytes("q.npy", buf, 20);
    expect_failure("header length overflow", 3, "header length", NULL, NULL);
    n = make_npy(buf, "[1, 2, 3]", 0);
    save_bytes("q.npy", buf, n);
    expect_failure("header not a dict", 3, "malformed header", NULL, NULL);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, }", 16);
    save_bytes("q.npy", buf, n);
    expect_failure("header without shape", 3, "missing shape", NULL, NULL);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 2, 8), 'x': 1}", 256);
    save_bytes("q.npy", buf, n);
    expect_failure("unknown header key", 3, "unknown key", NULL, NULL);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 4, 2, 8), }", 256);
    save_bytes("q.npy", buf, n);
    expect_failure("Fortran order", 3, "Fortran", NULL, NULL);
    n = make_npy(buf, "{'descr': '<c8', 'fortran_order': False, 'shape': (1, 4, 2, 8), }", 512);
    save_bytes("q.npy", buf, n);
    expect_failure("complex dtype", 3, "unsupported dtype", NULL, NULL);
    n = make_npy(buf, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 4, 2, 8), }", 256);
    save_bytes("q.npy", buf, n);
    expect_failure("structured dtype", 3, "structured", NULL, NULL);
    n = make_npy(buf, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 4, 2, 8), }", 256);
    save_bytes("q.npy", buf, n);
    expect_failure("int32 q", 3, "int32", NULL, NULL);
    n = make_npy(buf, "{'descr': '<u2', 'fortran_order': False, 'shape': (1, 4, 2, 8), }", 128);
    save_bytes("q.npy", buf, n);
    expect_failure("uint16 q without --dtype bf16", 3, "bf16", NULL, NULL);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }", 16);
    save_bytes("q.npy", buf, n);
    expect_failure("shape product overflow", 3, "overflow", NULL, NULL);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2), }", 16);
    save_bytes("q.npy", buf, n);
    expect_failure("dimension past 64 bits", 3, "overflow", NULL, NULL);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 2, 8), }", 16);
    save_bytes("q.npy", buf, n);
    expect_failure("huge shape, small file", 3, "truncated", NULL, NULL);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2, 8), }", 64);
    save_bytes("q.npy", buf, n);
    expect_failure("negative dimension", 3, "bad shape", NULL, NULL);
    memcpy(buf, good_q, good_q_len), memcpy(buf + good_q_len, "junk", 4);
    save_bytes("q.npy", buf, good_q_len + 4);
    expect_failure("bytes after the data", 3, "after", NULL, NULL);

    /* well-formed files that do not fit together */
    float x[4096];
    for (int i = 0; i < 4096; i++) x[i] = unif(-1, 1);
    int64_t s2[2] = {4, 16}, s4[4] = {1, 4, 2, 4}, s4b[4] = {2, 4, 2, 8}, s4h[4] = {1, 4, 3, 8};
    save("q.npy", NPY_F32, 2, s2, x, 0);
    expect_failure("2-D q", 3, "4-D", NULL, NULL);
    save("q.npy", NPY_F32, 4, s4, x, 0);
    expect_failure("head_dim differs from k's", 3, "head_dim", NULL, NULL);
    save("q.npy", NPY_F32, 4, s4b, x, 0);
    expect_failure("batch differs", 3, "batch", NULL, NULL);
    save("q.npy", NPY_F32, 4, s4h, x, 0);
    expect_failure("heads not a multiple of k's", 3, "heads", NULL, NULL);
    make_good_q();
    int64_t sv[4] = {1, 6, 2, 8};
    save("v.npy", NPY_F32, 4, sv, x, 0);
    expect_failure("k and v lengths differ", 3, "seq_kv", NULL, NULL);
    write_good_kv();
    int64_t sm[2] = {4, 6}, sm5[5] = {1, 1, 1, 4, 5};
    uint8_t ones[256];
    memset(ones, 1, sizeof ones);
    save("mask.npy", NPY_BOOL, 2, sm, ones, 0);
    expect_failure("mask of the wrong shape", 3, "broadcast", "--mask", path_in("mask.npy"));
    save("mask.npy", NPY_BOOL, 5, sm5, ones, 0);
    expect_failure("mask of 5 dimensions", 3, "at most 4", "--mask", path_in("mask.npy"));
    int64_t sm2[2] = {4, 5};
    save("mask.npy", NPY_F32, 2, sm2, x, 0);
    expect_failure("float mask", 3, "bool", "--mask", path_in("mask.npy"));
    save("bias.npy", NPY_I32, 2, sm2, x, 0);
    expect_failure("int bias", 3, "float", "--bias", path_in("bias.npy"));
    int32_t lens2[2] = {3, 3}, lens_bad[1] = {6};
    int64_t one = 1, two = 2;
    save("lens.npy", NPY_I32, 1, &two, lens2, 0);
    expect_failure("seqlens of the wrong length", 3, "[batch]", "--seqlens-kv", path_in("lens.npy"));
    save("lens.npy", NPY_I32, 1, &one, lens_bad, 0);
    expect_failure("seqlens past seq_kv", 3, "outside", "--seqlens-kv", path_in("lens.npy"));
    save("lens.npy", NPY_F32, 1, &one, x, 0);
    expect_failure("float seqlens", 3, "int32", "--seqlens-kv", path_in("lens.npy"));
    unlink(path_in("mask.npy"));
    expect_failure("missing mask file", 4, "cannot open", "--mask", path_in("mask.npy"));
    /* valid files the library refuses: exit status 1 with its message */
    int64_t wide[4] = {1, 1, 1, 300000};
    float *big = calloc(300000, sizeof *big);
    save("q.npy", NPY_F32, 4, wide, big, 0), save("k.npy", NPY_F32, 4, wide, big, 0);
    save("v.npy", NPY_F32, 4, wide, big, 0);
    free(big);
    expect_failure("head_dim 300000", 1, "head_dim", NULL, NULL);
    write_good_kv();
    make_good_q();

    /* I/O: the output's directory does not exist; an existing output survives a failure */
    rc = run_sattn("run", "--q", path_in("q.npy"), "--k", path_in("k.npy"), "--v", path_in("v.npy"), "-o",
                   path_in("no-such-dir/out.npy"), NULL);
    check(rc == 4 && strstr(err_text, "does not exist"), "output in a missing directory: exit %d (%s)", rc, err_text);
    rc = run_sattn("run", "--q", path_in("q.npy"), "--k", path_in("k.npy"), "--v", path_in("v.npy"), "-o",
                   path_in("out.npy"), "--lse", path_in("no-such-dir/lse.npy"), NULL);
    check(rc == 4 && count_prefixed("out.npy") == 0, "lse in a missing directory: exit %d, no out.npy left (%s)", rc,
          err_text);
    save_bytes("out.npy", "old", 3);
    save_bytes("q.npy", good_q, good_q_len - 1);
    rc = run_sattn("run", "--q", path_in("q.npy"), "--k", path_in("k.npy"), "--v", path_in("v.npy"), "-o",
                   path_in("out.npy"), NULL);
    size_t len = 0;
    uint8_t *old = load_bytes(path_in("out.npy"), &len);
    check(rc == 3 && old && len == 3 && !memcmp(old, "old", 3) && count_prefixed("out.npy") == 1,
          "a failed run leaves an existing output file as it was (exit %d)", rc);
    free(old);
    unlink(path_in("out.npy"));
    make_good_q();
}


/* ---- what -o names ---- */

static int is_npy_file(const char *path)
{
    npy_array a;
    char err[512];
    if (npy_read(path, &a, err, sizeof err) != NPY_OK) return 0;
    npy_free(&a);
    return 1;
}

static int run_to(const char *out, const char *lse)
{
    return lse ? run_sattn("run", "--q", path_in("q.npy"), "--k", path_in("k.npy"), "--v", path_in("v.npy"), "-o",
                           out, "--lse", lse, NULL)
               : run_sattn("run", "--q", path_in("q.npy"), "--k", path_in("k.npy"), "--v", path_in("v.npy"), "-o",
                           out, NULL);
}

static void test_outputs(void)
{
    make_good_q();
    write_good_kv();
    struct stat sb;
    int rc;

    /* A device is written in place, never replaced. The devices are made in the test's
       own directory (mknod: root), so that a regression replaces those, not /dev's. */
    const char *dnull = path_in("null.dev"), *dfull = path_in("full.dev");
    if (mknod(dnull, S_IFCHR | 0666, makedev(1, 3)) == 0 && mknod(dfull, S_IFCHR | 0666, makedev(1, 7)) == 0) {
        rc = run_to(dnull, NULL);
        check(rc == 0 && stat(dnull, &sb) == 0 && S_ISCHR(sb.st_mode), "-o NULL-DEVICE: exit %d, still a device", rc);
        rc = run_to(dfull, NULL);
        check(rc == 4 && stat(dfull, &sb) == 0 && S_ISCHR(sb.st_mode) && strstr(err_text, "full.dev"),
              "-o FULL-DEVICE: exit %d (want 4: no space), still a character device (%s)", rc, err_text);
    } else {
        printf("outputs: cannot make device nodes here (%s): the device cases are left to the FIFO\n",
               strerror(errno));
    }
    unlink(dnull), unlink(dfull);
    /* a FIFO is written, not replaced: a reader in a child process takes the bytes */
    const char *fifo = path_in("out.fifo");
    if (mkfifo(fifo, 0644) == 0) {
        pid_t reader = fork();
        if (reader == 0) {
            alarm(20); /* if the FIFO was replaced, nobody ever opens it for writing */
            int fd = open(fifo, O_RDONLY);
            char buf[4096];
            long total = 0;
            ssize_t n;
            while (fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0) total += n;
            _exit(total > 128 ? 0 : 1);
        }
        rc = run_to(fifo, NULL);
        int rs = 0;
        waitpid(reader, &rs, 0);
        check(rc == 0 && WIFEXITED(rs) && WEXITSTATUS(rs) == 0 && stat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode),
              "-o FIFO: exit %d, the reader got the file, and it is still a FIFO (%s)", rc, err_text);
        unlink(fifo);
    }

    /* a symbolic link is written through: the link stays, its target gets the file */
    save_bytes("real.npy", "old", 3);
    unlink(path_in("link.npy"));
    check(symlink("real.npy", path_in("link.npy")) == 0, "symlink");
    rc = run_to(path_in("link.npy"), NULL);
    check(rc == 0 && lstat(path_in("link.npy"), &sb) == 0 && S_ISLNK(sb.st_mode) && is_npy_file(path_in("real.npy")),
          "-o LINK: exit %d, the link is still a link and its target holds the output (%s)", rc, err_text);
    /* a dangling link: the file it names is created */
    unlink(path_in("dangling.npy")), unlink(path_in("made.npy"));
    check(symlink("made.npy", path_in("dangling.npy")) == 0, "symlink");
    rc = run_to(path_in("dangling.npy"), NULL);
    check(rc == 0 && lstat(path_in("dangling.npy"), &sb) == 0 && S_ISLNK(sb.st_mode) && is_npy_file(path_in("made.npy")),
          "-o DANGLING-LINK: exit %d, the link stays and made.npy is written (%s)", rc, err_text);
    /* an existing file keeps its mode */
    chmod(path_in("real.npy"), 0640);
    rc = run_to(path_in("real.npy"), NULL);
    check(rc == 0 && stat(path_in("real.npy"), &sb) == 0 && (sb.st_mode & 0777) == 0640,
          "-o FILE (mode 0640): exit %d, mode now %04o", rc, (unsigned)(sb.st_mode & 0777));

    /* a read-only file is refused, not replaced (even for root) */
    save_bytes("ro.npy", "keep", 4);
    chmod(path_in("ro.npy"), 0444);
    rc = run_to(path_in("ro.npy"), NULL);
    size_t len = 0;
    uint8_t *b = load_bytes(path_in("ro.npy"), &len);
    check(rc == 4 && b && len == 4 && !memcmp(b, "keep", 4) && strstr(err_text, "read-only") &&
              count_prefixed("ro.npy") == 1,
          "-o READ-ONLY: exit %d (want 4), the file unchanged, no temporary left (%s)", rc, err_text);
    free(b);
    chmod(path_in("ro.npy"), 0644);

    /* -o and --lse naming one file by two spellings, or through a link */
    unlink(path_in("x.npy"));
    char dotted[1100];
    snprintf(dotted, sizeof dotted, "%s/./x.npy", dir);
    rc = run_to(path_in("x.npy"), dotted);
    check(rc == 2 && strstr(err_text, "same file") && count_prefixed("x.npy") == 0,
          "-o x.npy --lse DIR/./x.npy: exit %d (want 2), nothing written (%s)", rc, err_text);
    rc = run_to(path_in("real.npy"), path_in("link.npy"));
    check(rc == 2 && strstr(err_text, "same file"), "-o FILE --lse LINK-TO-IT: exit %d (want 2) (%s)", rc, err_text);

    /* paths that cannot be written are refused first: with a broken q as well, the
       message is about the output (exit 4), so nothing was read or computed before */
    save_bytes("broken_q.npy", "\x93NUMPY", 6);
    static const char *const bad_outs[][2] = {
        {"adir/", "directory"}, {"real.npy/x.npy", "not a directory"}, {"nodir/x.npy", "does not exist"},
        {".", "directory"}};
    mkdir(path_in("adir"), 0755);
    for (size_t i = 0; i < sizeof bad_outs / sizeof bad_outs[0]; i++) {
        rc = run_sattn("run", "--q", path_in("broken_q.npy"), "--k", path_in("k.npy"), "--v", path_in("v.npy"), "-o",
                       path_in(bad_outs[i][0]), NULL);
        check(rc == 4 && strstr(err_text, bad_outs[i][1]) && strstr(err_text, "cannot write"),
              "-o %s with a broken q: exit %d (want 4), says '%s' (%s)", bad_outs[i][0], rc, bad_outs[i][1], err_text);
    }
    rc = run_sattn("show", path_in("broken_q.npy"), "-o", path_in("adir/"), NULL);
    check(rc == 4 && strstr(err_text, "directory"), "show -o DIR/ with a broken input: exit %d (want 4) (%s)", rc,
          err_text);

    /* interrupted: q is a FIFO nobody writes, so sattn waits in its read with the
       temporary output open; SIGTERM and SIGINT must remove it */
    const int sigs[2] = {SIGTERM, SIGINT};
    for (int k = 0; k < 2; k++) {
        const char *qf = path_in("q.fifo");
        unlink(qf);
        if (mkfifo(qf, 0644) != 0) break;
        pid_t pid = fork();
        if (pid == 0) {
            int fe = open("/dev/null", O_WRONLY);
            dup2(fe, 1), dup2(fe, 2);
            execl(sattn_path, "sattn", "run", "--q", qf, "--k", path_in("k.npy"), "--v", path_in("v.npy"), "-o",
                  path_in("sig.npy"), "--lse", path_in("siglse.npy"), (char *)NULL);
            _exit(127);
        }
        int had_tmp = 0;
        for (int t = 0; t < 500 && !had_tmp; t++) { /* until both temporary files exist */
            had_tmp = count_prefixed("sig.npy.tmp-") == 1 && count_prefixed("siglse.npy.tmp-") == 1;
            nanosleep(&(struct timespec){0, 10000000}, NULL);
        }
        kill(pid, sigs[k]);
        int ws = 0;
        waitpid(pid, &ws, 0);
        check(had_tmp && WIFSIGNALED(ws) && WTERMSIG(ws) == sigs[k] && count_prefixed("sig.npy") == 0 &&
                  count_prefixed("siglse.npy") == 0,
              "signal %d while reading: the run had its temporary files (%d), died of the signal, and left none",
              sigs[k], had_tmp);
        unlink(qf);
    }

    /* show --labels that is not text: refused at once with what is wrong */
    float w[2 * 3 * 3];
    for (int i = 0; i < 18; i++) w[i] = unif(0, 1);
    int64_t wshape[3] = {2, 3, 3};
    save("w.npy", NPY_F32, 3, wshape, w, 0);
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    rc = run_sattn("show", path_in("w.npy"), "--labels", "/dev/zero", "-o", path_in("w.png"), NULL);
    check(rc == 3 && strstr(err_text, "NUL") && count_prefixed("w.png") == 0,
          "show --labels /dev/zero: exit %d (want 3), says NUL, no output (%s)", rc, err_text);
    save_bytes("many.txt", "a\nb\nc\nd\n", 8);
    rc = run_sattn("show", path_in("w.npy"), "--labels", path_in("many.txt"), "-o", path_in("w.png"), NULL);
    check(rc == 3 && strstr(err_text, "more than 3 lines"), "show --labels with 4 lines for 3 keys: exit %d (%s)", rc,
          err_text);
    (void)t0;
}

/* ---- usage ---- */

static void test_usage(void)
{
    static const char *const cmds[] = {"run", "bench", "show", "demo"};
    int rc = run_sattn(NULL);
    check(rc == 2 && strstr(err_text, "usage:"), "no command: exit %d, usage on stderr", rc);
    rc = run_sattn("--help", NULL);
    check(rc == 0 && strstr(out_text, "usage:") && strstr(out_text, "Exit status"), "--help: exit %d", rc);
    rc = run_sattn("--version", NULL);
    check(rc == 0 && strstr(out_text, sattn_version()), "--version: exit %d (%s)", rc, out_text);
    rc = run_sattn("frobnicate", NULL);
    check(rc == 2 && strstr(err_text, "unknown command"), "unknown command: exit %d", rc);
    for (int i = 0; i < 4; i++) {
        rc = run_sattn(cmds[i], "--help", NULL);
        check(rc == 0 && strstr(out_text, "usage: sattn ") && strstr(out_text, "Exit status"),
              "sattn %s --help: exit %d", cmds[i], rc);
        rc = run_sattn("help", cmds[i], NULL);
        check(rc == 0 && strstr(out_text, "usage: sattn "), "sattn help %s: exit %d", cmds[i], rc);
        if (i == 1) continue; /* bench passes its arguments on */
        rc = run_sattn(cmds[i], "--no-such-option", NULL);
        check(rc == 2 && strstr(err_text, "unknown option"), "sattn %s --no-such-option: exit %d", cmds[i], rc);
    }
    const char *q = path_in("q.npy"), *k = path_in("k.npy"), *v = path_in("v.npy"), *o = path_in("out.npy");
    static const char *const bad[][2] = {{"--layout", "sbhd"}, {"--causal", "diagonal"}, {"--window", "5"},
                                          {"--window", "a,b"},   {"--dtype", "f64"},      {"--scale", "nan"},
                                          {"--softcap", "-1"},   {"--threads", "0"},      {"--scale", "1e99"},
                                          {"--products", "f16"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = run_sattn("run", "--q", q, "--k", k, "--v", v, "-o", o, bad[i][0], bad[i][1], NULL);
        check(rc == 2 && strstr(err_text, bad[i][0]) && !exists(o), "sattn run %s %s: exit %d (%s)", bad[i][0],
              bad[i][1], rc, err_text);
    }
    rc = run_sattn("run", "--q", q, "--k", k, NULL);
    check(rc == 2 && strstr(err_text, "needs"), "sattn run without --v and -o: exit %d", rc);
    rc = run_sattn("run", "--q", q, "--k", k, "--v", v, "-o", NULL);
    check(rc == 2 && strstr(err_text, "needs a value"), "sattn run -o without its value: exit %d", rc);
    rc = run_sattn("run", "--q", q, "--k", k, "--v", v, "-o", o, "--lse", o, NULL);
    check(rc == 2, "sattn run with --lse the same file as -o: exit %d", rc);
    rc = run_sattn("run", "--q=", q, NULL);
    check(rc == 2, "sattn run --q= (empty) and a stray argument: exit %d", rc);
    rc = run_sattn("demo", "--steps", "0", NULL);
    check(rc == 2 && strstr(err_text, "--steps"), "sattn demo --steps 0: exit %d", rc);
    rc = run_sattn("show", NULL);
    check(rc == 2 && strstr(err_text, "needs"), "sattn show without a file: exit %d", rc);
    /* bench: runs the benchmark program with the arguments, which refuses this group;
       without the program, says what to install */
    rc = run_sattn("bench", "--only", "nothing", NULL);
    check((rc == 2 && strstr(err_text, "sattn bench: --only nothing")) || (rc == 1 && strstr(err_text, "OpenBLAS")),
          "sattn bench --only nothing: exit %d, its message names 'sattn bench' (%s)", rc, err_text);
    static const char *const bad_reps[] = {"0", "-3", "65", "x", ""};
    for (size_t i = 0; i < sizeof bad_reps / sizeof bad_reps[0]; i++) {
        rc = run_sattn("bench", "--reps", bad_reps[i], NULL);
        check((rc == 2 && strstr(err_text, "sattn bench: --reps")) || (rc == 1 && strstr(err_text, "OpenBLAS")),
              "sattn bench --reps '%s': exit %d, refused (%s)", bad_reps[i], rc, err_text);
    }
}

/* ---- show ---- */

#ifdef SATTN_HAVE_PNG
/* Checks the file's signature and IHDR, then decodes it with libpng. */
static uint8_t *read_png(const char *path, int *w, int *h)
{
    size_t len = 0;
    uint8_t *b = load_bytes(path, &len);
    *w = *h = 0;
    if (!b || len < 33 || memcmp(b, "\x89PNG\r\n\x1a\n", 8) || memcmp(b + 12, "IHDR", 4)) {
        free(b);
        return NULL;
    }
    int iw = (int)((uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 | (uint32_t)b[18] << 8 | b[19]);
    int ih = (int)((uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 | (uint32_t)b[22] << 8 | b[23]);
    free(b);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) return NULL;
    img.format = PNG_FORMAT_RGB;
    uint8_t *px = malloc(PNG_IMAGE_SIZE(img));
    if (!px || !png_image_finish_read(&img, NULL, px, 0, NULL) || (int)img.width != iw || (int)img.height != ih) {
        free(px);
        png_image_free(&img);
        return NULL;
    }
    *w = iw, *h = ih;
    return px;
}
#endif

static void test_show(void)
{
    /* [2 heads, 5 queries, 7 keys]: zeros, one 1 per panel, one NaN */
    float w[2 * 5 * 7] = {0};
    w[0 * 35 + 2 * 7 + 3] = 1.0f, w[1 * 35 + 4 * 7 + 6] = 1.0f, w[1 * 35 + 0] = NAN, w[1 * 35 + 1] = 0.5f;
    int64_t shape[3] = {2, 5, 7};
    save("w.npy", NPY_F32, 3, shape, w, 0);
    FILE *f = fopen(path_in("labels.txt"), "w");
    fprintf(f, "a\nbb\nc\nd\ne\nf\ng\n");
    fclose(f);
    unlink(path_in("w.png"));
#ifndef SATTN_HAVE_PNG
    int rc = run_sattn("show", path_in("w.npy"), "-o", path_in("w.png"), NULL);
    check(rc == 1 && strstr(err_text, "libpng") && !exists(path_in("w.png")),
          "show without libpng: exit 1 and says so (exit %d: %s)", rc, err_text);
#else
    /* the documented layout: margin 8, panels 12 apart, a 12-pixel title line per panel,
       labels 6 pixels a character + 4 */
    static const struct {
        const char *labels;
        const char *scale;
        int w, h;
    } sizes[] = {{NULL, "4", 16 + 2 * 28 + 12, 16 + 12 + 20}, {"labels.txt", "4", 16 + 2 * (10 + 28) + 12, 16 + 12 + 16 + 20},
                 {NULL, "10", 16 + 2 * 70 + 12, 16 + 12 + 50}};
    for (int s = 0; s < 3; s++) {
        int rc = sizes[s].labels ? run_sattn("show", path_in("w.npy"), "-o", path_in("w.png"), "--scale", sizes[s].scale,
                                             "--labels", path_in(sizes[s].labels), NULL)
                                 : run_sattn("show", path_in("w.npy"), "-o", path_in("w.png"), "--scale", sizes[s].scale, NULL);
        int iw = 0, ih = 0;
        uint8_t *px = rc == 0 ? read_png(path_in("w.png"), &iw, &ih) : NULL;
        if (!check(px && iw == sizes[s].w && ih == sizes[s].h, "show (scale %s%s): exit %d, PNG %d x %d, expected %d x %d (%s)",
                   sizes[s].scale, sizes[s].labels ? ", labels" : "", rc, iw, ih, sizes[s].w, sizes[s].h, err_text)) {
            free(px);
            continue;
        }
        if (s == 0) {
            /* cell (i, j) of panel p at x = 8 + p * (28 + 12) + 4 j, y = 8 + 12 + 4 i: the
               largest value is viridis' yellow, 0 its purple, NaN grey */
            static const uint8_t yellow[3] = {0xfd, 0xe7, 0x25}, purple[3] = {0x44, 0x01, 0x54}, grey[3] = {160, 160, 160};
#define PX(p, i, j) (px + ((size_t)(8 + 12 + 4 * (i) + 1) * (size_t)iw + (size_t)(8 + (p) * 40 + 4 * (j) + 1)) * 3)
            check(!memcmp(PX(0, 2, 3), yellow, 3) && !memcmp(PX(1, 4, 6), yellow, 3) && !memcmp(PX(0, 0, 0), purple, 3) &&
                      !memcmp(PX(1, 3, 3), purple, 3) && !memcmp(PX(1, 0, 0), grey, 3),
                  "show: cells have the colour map's colours");
            const uint8_t *mid = PX(1, 0, 1);
            check(mid[1] > purple[1] && mid[1] < yellow[1], "show: 0.5 is drawn between the ends");
#undef PX
            check(strstr(out_text, "2 panels") != NULL, "show reports what it wrote (%s)", out_text);
        }
        free(px);
    }
    /* 2-D weights: one panel, no title; the default output name */
    int64_t s2[2] = {5, 7};
    save("w2.npy", NPY_F32, 2, s2, w, 0);
    int rc = run_sattn("show", path_in("w2.npy"), "--scale", "3", NULL);
    int iw = 0, ih = 0;
    uint8_t *px = rc == 0 ? read_png(path_in("w2.png"), &iw, &ih) : NULL;
    check(px && iw == 16 + 21 && ih == 16 + 15, "show 2-D: exit %d, w2.png %d x %d, expected 37 x 31", rc, iw, ih);
    free(px);
    /* 4-D, --batch */
    int64_t s4[4] = {2, 1, 5, 7};
    save("w4.npy", NPY_F32, 4, s4, w, 0);
    rc = run_sattn("show", path_in("w4.npy"), "--batch", "1", "--scale", "2", "-o", path_in("w4.png"), NULL);
    px = rc == 0 ? read_png(path_in("w4.png"), &iw, &ih) : NULL;
    check(px && iw == 16 + 14 && ih == 16 + 12 + 10, "show 4-D --batch 1: exit %d, %d x %d", rc, iw, ih);
    free(px);
    rc = run_sattn("show", path_in("w4.npy"), "--batch", "2", NULL);
    check(rc == 2, "show --batch past the batch: exit %d", rc);
#endif
    /* bad inputs: nothing written */
    unlink(path_in("w.png"));
    f = fopen(path_in("labels.txt"), "w");
    fprintf(f, "a\nb\n");
    fclose(f);
    int rcl = run_sattn("show", path_in("w.npy"), "-o", path_in("w.png"), "--labels", path_in("labels.txt"), NULL);
    check(rcl != 0 && !exists(path_in("w.png")) && err_text[0], "show with too few labels fails (exit %d)", rcl);
    int32_t iv[35] = {0};
    int64_t si[2] = {5, 7};
    save("wi.npy", NPY_I32, 2, si, iv, 0);
    rcl = run_sattn("show", path_in("wi.npy"), "-o", path_in("w.png"), NULL);
    check(rcl != 0 && !exists(path_in("w.png")) && err_text[0], "show of int32 weights fails (exit %d)", rcl);
    save_bytes("wt.npy", good_q, 30);
    rcl = run_sattn("show", path_in("wt.npy"), "-o", path_in("w.png"), NULL);
    check(rcl != 0 && !exists(path_in("w.png")) && err_text[0], "show of a truncated file fails (exit %d)", rcl);
}

/* ---- the demo model: gradients against finite differences ---- */

static void test_gradcheck(void)
{
    const model_config cfg = {5, 6, 8, 2, 2, 12};
    const int B = 3, T = B * cfg.seq;
    char err[256];
    model *m = NULL;
    if (!check(model_create(&m, &cfg, B, 7, err, sizeof err) == 0, "model_create: %s", err)) return;
    int tokens[3 * 6], targets[3 * 6];
    for (int i = 0; i < T; i++) tokens[i] = (int)(rnd() % 5), targets[i] = (int)(rnd() % 5);
    /* move every weight off its initial value (zero biases, unit layernorm) so each path
       carries gradient */
    model_tensor t[64];
    int nt = model_tensors(m, t, 64);
    for (int i = 0; i < nt; i++)
        for (int64_t j = 0; j < t[i].n; j++) t[i].w[j] += unif(-0.3f, 0.3f);
    float loss;
    int correct;
    if (!check(model_forward(m, tokens, targets, B, &loss, &correct, NULL) == 0 && model_backward(m) == 0,
               "model forward/backward: %s", sattn_last_error())) {
        model_free(m);
        return;
    }
    /* keep the analytic gradient: a forward for the differences leaves the gradient
       arrays alone, but copy anyway to compare against what the backward wrote */
    for (int i = 0; i < nt; i++) {
        double worst = 0;
        int64_t worst_j = 0;
        float worst_a = 0, worst_n = 0;
        int probes = t[i].n < 12 ? (int)t[i].n : 12;
        for (int r = 0; r < probes; r++) {
            int64_t j = t[i].n < 12 ? r : (int64_t)(rnd() % (uint64_t)t[i].n);
            const float w0 = t[i].w[j], eps = 1e-3f;
            float lp, lm;
            t[i].w[j] = w0 + eps;
            model_forward(m, tokens, targets, B, &lp, &correct, NULL);
            t[i].w[j] = w0 - eps;
            model_forward(m, tokens, targets, B, &lm, &correct, NULL);
            t[i].w[j] = w0;
            float num = (lp - lm) / (2 * eps), ana = t[i].g[j];
            /* central differences of an f32 loss: O(eps^2) curvature and ~1e-7/eps rounding */
            double e = fabs((double)num - ana) / (3e-3 + 2e-2 * fabs((double)ana));
            if (e > worst) worst = e, worst_j = j, worst_a = ana, worst_n = num;
        }
        check(worst <= 1, "gradcheck %s[%lld]: backward %.6g, finite difference %.6g", t[i].name, (long long)worst_j,
              worst_a, worst_n);
    }
    model_free(m);
}

/* ---- the demo: a short run whose loss falls ---- */

static void test_demo(void)
{
    char out_dir[600];
    snprintf(out_dir, sizeof out_dir, "%s/demo", dir);
    int rc = run_sattn("demo", "--steps", "80", "--seed", "3", "--threads", "1", "--out", out_dir, NULL);
    check(rc == 0, "demo --steps 80: exit %d (%s)", rc, err_text);
    /* its log: "  step  loss  train acc  held-out acc  time" lines */
    double first = -1, last = -1;
    long first_step = -1, last_step = -1;
    for (char *line = strtok(out_text, "\n"); line; line = strtok(NULL, "\n")) {
        long step;
        double loss;
        if (sscanf(line, " %ld %lf", &step, &loss) == 2) {
            if (first_step < 0) first_step = step, first = loss;
            last_step = step, last = loss;
        }
    }
    printf("demo: loss %.4f at step %ld, %.4f at step %ld\n", first, first_step, last, last_step);
    check(first_step == 1 && last_step == 80 && first > 2.0 && last < 0.9 * first,
          "demo: the loss falls (%.4f at step %ld, %.4f at step %ld)", first, first_step, last, last_step);
    char p[700];
    snprintf(p, sizeof p, "%s/block1.npy", out_dir);
    npy_array a;
    char err[512];
    if (check(npy_read(p, &a, err, sizeof err) == NPY_OK, "demo wrote %s (%s)", p, err)) {
        double worst = 0;
        int ok = a.type == NPY_F32 && a.ndim == 3 && a.shape[0] == 4 && a.shape[1] == 32 && a.shape[2] == 32;
        for (int64_t r = 0; ok && r < a.shape[0] * a.shape[1]; r++) {
            double s = 0;
            for (int64_t j = 0; j < 32; j++) s += ((float *)a.data)[r * 32 + j];
            worst = fabs(s - 1) > worst ? fabs(s - 1) : worst;
        }
        check(ok && worst < 1e-4, "demo: block1.npy is [4, 32, 32] with rows summing to 1 (%g)", worst);
        npy_free(&a);
    }
#ifdef SATTN_HAVE_PNG
    snprintf(p, sizeof p, "%s/attention.png", out_dir);
    int w, h;
    uint8_t *px = read_png(p, &w, &h);
    check(px && w > 4 * 32 && h > 2 * 32, "demo wrote attention.png (%d x %d)", w, h);
    free(px);
#endif
}

/* ---- main ---- */

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) remove_tree(p);
        else unlink(p);
    }
    if (d) closedir(d);
    rmdir(path);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: test_cli PATH/TO/sattn\n");
        return 2;
    }
    sattn_path = argv[1];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sattn-cli-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "test_cli: cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    test_npy();
    printf("npy: %ld checks\n", checks);
    test_run();
    printf("run: %ld checks so far\n", checks);
    test_broken();
    printf("broken inputs: %ld checks so far\n", checks);
    test_outputs();
    printf("outputs: %ld checks so far\n", checks);
    test_usage();
    test_show();
    printf("usage, show: %ld checks so far\n", checks);
    test_gradcheck();
    test_demo();
    remove_tree(dir);
    printf("test_cli: %ld checks, %ld failed\n", checks, failures);
    return failures || !checks ? 1 : 0;
}
