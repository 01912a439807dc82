/* npy: reading and writing NumPy .npy files (see npy.h). */
#define _POSIX_C_SOURCE 200809L
#include "npy.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAGIC "\x93NUMPY"
#define MAGIC_LEN 6
/* A header longer than this is not one NumPy wrote (its own limit is 10000 bytes
   for reading untrusted files); refusing it bounds what a bad file makes us allocate. */
#define MAX_HEADER_LEN (1u << 20)

/* ---- types ---- */

size_t npy_type_size(npy_type t)
{
    switch (t) {
    case NPY_F64: case NPY_I64: return 8;
    case NPY_F32: case NPY_I32: return 4;
    case NPY_F16: case NPY_U16: return 2;
    case NPY_BOOL: case NPY_U8: case NPY_I8: return 1;
    }
    return 0;
}

const char *npy_type_name(npy_type t)
{
    switch (t) {
    case NPY_F32: return "float32";
    case NPY_F16: return "float16";
    case NPY_F64: return "float64";
    case NPY_U16: return "uint16";
    case NPY_I32: return "int32";
    case NPY_I64: return "int64";
    case NPY_BOOL: return "bool";
    case NPY_U8: return "uint8";
    case NPY_I8: return "int8";
    }
    return "?";
}

int npy_is_float(npy_type t) { return t == NPY_F32 || t == NPY_F16 || t == NPY_F64; }

/* the descr code after the byte-order character */
static const char *type_code(npy_type t)
{
    switch (t) {
    case NPY_F32: return "f4";
    case NPY_F16: return "f2";
    case NPY_F64: return "f8";
    case NPY_U16: return "u2";
    case NPY_I32: return "i4";
    case NPY_I64: return "i8";
    case NPY_BOOL: return "b1";
    case NPY_U8: return "u1";
    case NPY_I8: return "i1";
    }
    return "";
}

static int native_big_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 0;
}

void npy_shape_str(const npy_array *a, char *buf, size_t len)
{
    char tmp[24 * NPY_MAX_DIMS + 8]; /* a dimension is at most 19 digits */
    int n = 0;
    tmp[n++] = '(';
    for (int d = 0; d < a->ndim && d < NPY_MAX_DIMS; d++)
        n += sprintf(tmp + n, "%s%lld", d ? ", " : "", (long long)a->shape[d]);
    if (a->ndim == 1) tmp[n++] = ',';
    tmp[n++] = ')';
    tmp[n] = '\0';
    snprintf(buf, len, "%s", tmp);
}

/* ---- element conversions ---- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float npy_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) { /* zero or subnormal: m * 2^-24, exact in f32 */
        float f = (float)m * 0x1p-24f;
        return sign ? -f : f;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13)); /* inf, NaN */
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t npy_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN stays NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* at or past 65520: infinity */
    if (a >= 0x38800000u) {                                   /* normal in f16 */
        a += 0xfffu + ((a >> 13) & 1u);                         /* round to nearest even */
        return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
    }
    /* subnormal or zero: adding 0.5 puts the value where one f32 ulp is 2^-24, so the
       addition itself rounds to nearest even, and the low bits are the f16 mantissa */
    float r = bits_f32(a) + 0.5f;
    return (uint16_t)(sign | (f32_bits(r) - 0x3f000000u));
}

float npy_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t npy_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float npy_get_f32(const npy_array *a, int64_t i)
{
    switch (a->type) {
    case NPY_F32: return ((const float *)a->data)[i];
    case NPY_F16: return npy_f16_to_f32(((const uint16_t *)a->data)[i]);
    case NPY_F64: return (float)((const double *)a->data)[i];
    default: return 0;
    }
}

/* ---- arrays ---- */

static int shape_count(int ndim, const int64_t *shape, npy_type type, int64_t *count, size_t *bytes)
{
    int64_t c = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] != 0 && c > INT64_MAX / shape[d])) return -1;
        c *= shape[d];
    }
    size_t es = npy_type_size(type);
    if ((uint64_t)c > SIZE_MAX / es) return -1;
    *count = c, *bytes = (size_t)c * es;
    return 0;
}

npy_status npy_alloc(npy_array *a, npy_type type, int ndim, const int64_t *shape)
{
    memset(a, 0, sizeof *a);
    size_t bytes;
    if (ndim < 0 || ndim > NPY_MAX_DIMS || shape_count(ndim, shape, type, &a->count, &bytes)) return NPY_ERR_NOMEM;
    a->type = type, a->ndim = ndim;
    for (int d = 0; d < ndim; d++) a->shape[d] = shape[d];
    a->data = calloc(bytes ? bytes : 1, 1);
    if (!a->data) {
        memset(a, 0, sizeof *a);
        return NPY_ERR_NOMEM;
    }
    return NPY_OK;
}

void npy_free(npy_array *a)
{
    free(a->data);
    memset(a, 0, sizeof *a);
}

static void byteswap(void *data, size_t count, size_t size)
{
    uint8_t *p = data;
    for (size_t i = 0; i < count; i++, p += size)
        for (size_t j = 0; j < size / 2; j++) {
            uint8_t t = p[j];
            p[j] = p[size - 1 - j], p[size - 1 - j] = t;
        }
}

/* ---- the header ---- */

typedef struct {
    npy_type type;
    int big_endian;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
} header;

typedef struct {
    const char *s, *end;
} cursor;

static void skip_space(cursor *c)
{
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\t' || *c->s == '\n' || *c->s == '\r')) c->s++;
}

static int eat(cursor *c, char ch)
{
    skip_space(c);
    if (c->s < c->end && *c->s == ch) return c->s++, 1;
    return 0;
}

/* a quoted Python string without escapes, into out (len bytes) */
static int parse_string(cursor *c, char *out, size_t len)
{
    skip_space(c);
    if (c->s >= c->end || (*c->s != '\'' && *c->s != '"')) return -1;
    char q = *c->s++;
    size_t n = 0;
    while (c->s < c->end && *c->s != q) {
        if (*c->s == '\\' || n + 1 >= len) return -1;
        out[n++] = *c->s++;
    }
    if (c->s >= c->end) return -1;
    c->s++;
    out[n] = '\0';
    return 0;
}

static int parse_word(cursor *c, const char *w)
{
    skip_space(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->s) < n || strncmp(c->s, w, n)) return 0;
    c->s += n;
    return 1;
}

/* a non-negative decimal integer (Python 2 files may end it with L) */
static int parse_int(cursor *c, int64_t *v)
{
    skip_space(c);
    if (c->s >= c->end || *c->s < '0' || *c->s > '9') return -1;
    int64_t x = 0;
    while (c->s < c->end && *c->s >= '0' && *c->s <= '9') {
        int dgt = *c->s++ - '0';
        if (x > (INT64_MAX - dgt) / 10) return -2;
        x = x * 10 + dgt;
    }
    if (c->s < c->end && *c->s == 'L') c->s++;
    *v = x;
    return 0;
}

static int parse_descr(const char *d, header *h)
{
    static const npy_type types[] = {NPY_F32, NPY_F16, NPY_F64, NPY_U16, NPY_I32, NPY_I64, NPY_BOOL, NPY_U8, NPY_I8};
    if (strlen(d) != 3) return -1;
    char order = d[0];
    if (order != '<' && order != '>' && order != '=' && order != '|') return -1;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        if (strcmp(d + 1, type_code(types[i]))) continue;
        size_t size = npy_type_size(types[i]);
        if (order == '|' && size > 1) return -1; /* a multi-byte type needs a byte order */
        h->type = types[i];
        h->big_endian = size > 1 && (order == '>' || (order == '=' && native_big_endian()));
        return 0;
    }
    return -1;
}

#define FAIL(...) (snprintf(err, errlen, __VA_ARGS__), NPY_ERR_FORMAT)

/* The dict of a header: exactly the keys descr, fortran_order and shape, any order. */
static npy_status parse_dict(const char *text, size_t len, const char *name, header *h, char *err, size_t errlen)
{
    cursor c = {text, text + len};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!eat(&c, '{')) return FAIL("%s: malformed header: expected a Python dict", name);
    while (!eat(&c, '}')) {
        char key[32], descr[64];
        if (parse_string(&c, key, sizeof key) || !eat(&c, ':'))
            return FAIL("%s: malformed header: expected 'key': value", name);
        if (!strcmp(key, "descr")) {
            if (have_descr++) return FAIL("%s: malformed header: descr given twice", name);
            skip_space(&c);
            if (c.s < c.end && *c.s == '[')
                return FAIL("%s: structured (record) dtypes are not supported", name);
            if (parse_string(&c, descr, sizeof descr)) return FAIL("%s: malformed header: bad descr", name);
            if (parse_descr(descr, h))
                return FAIL("%s: unsupported dtype '%s' (read here: float32, float16, float64, uint16 as "
                            "bfloat16, int32, int64, bool, uint8, int8, either byte order)",
                            name, descr);
        } else if (!strcmp(key, "fortran_order")) {
            if (have_order++) return FAIL("%s: malformed header: fortran_order given twice", name);
            if (parse_word(&c, "True"))
                return FAIL("%s: Fortran-order arrays are not supported: save a C-order array "
                            "(np.ascontiguousarray)", name);
            if (!parse_word(&c, "False")) return FAIL("%s: malformed header: fortran_order is not a bool", name);
        } else if (!strcmp(key, "shape")) {
            if (have_shape++) return FAIL("%s: malformed header: shape given twice", name);
            if (!eat(&c, '(')) return FAIL("%s: malformed header: shape is not a tuple", name);
            h->ndim = 0;
            while (!eat(&c, ')')) {
                if (h->ndim == NPY_MAX_DIMS)
                    return FAIL("%s: more than %d dimensions are not supported", name, NPY_MAX_DIMS);
                int r = parse_int(&c, &h->shape[h->ndim]);
                if (r == -2) return FAIL("%s: malformed header: a dimension overflows 64 bits", name);
                if (r) return FAIL("%s: malformed header: bad shape", name);
                h->ndim++;
                if (!eat(&c, ',')) {
                    if (!eat(&c, ')')) return FAIL("%s: malformed header: bad shape", name);
                    break;
                }
            }
        } else {
            return FAIL("%s: malformed header: unknown key '%s'", name, key);
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) return FAIL("%s: malformed header: expected ',' or '}'", name);
            break;
        }
    }
    skip_space(&c);
    if (c.s != c.end) return FAIL("%s: malformed header: text after the dict", name);
    if (!have_descr || !have_order || !have_shape)
        return FAIL("%s: malformed header: missing %s", name,
                    !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    return NPY_OK;
}

/* The fixed prefix: magic, version, header length. p holds n bytes (n >= 12 or the
   whole file). Sets the header's offset and length. */
static npy_status parse_prefix(const uint8_t *p, size_t n, const char *name, size_t *hoff, size_t *hlen,
                               char *err, size_t errlen)
{
    if (n < MAGIC_LEN + 2 || memcmp(p, MAGIC, MAGIC_LEN))
        return FAIL("%s: not a .npy file (no \\x93NUMPY magic at the start)", name);
    int major = p[6];
    if (major < 1 || major > 3)
        return FAIL("%s: unsupported .npy format version %d.%d (read here: 1.0, 2.0, 3.0)", name, major, p[7]);
    size_t lenbytes = major == 1 ? 2 : 4;
    if (n < 8 + lenbytes) return FAIL("%s: truncated: the file ends inside the header length", name);
    uint32_t len = major == 1 ? (uint32_t)p[8] | (uint32_t)p[9] << 8
                              : (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;
    if (len > MAX_HEADER_LEN)
        return FAIL("%s: malformed: header length %lu is past the %u bytes read here", name, (unsigned long)len,
                    MAX_HEADER_LEN);
    *hoff = 8 + lenbytes, *hlen = len;
    return NPY_OK;
}

/* After the header: the array's size, checked against the bytes the file holds
   (avail, or -1 when unknown). */
static npy_status check_size(const header *h, const char *name, int64_t avail, int64_t *count, size_t *bytes,
                             char *err, size_t errlen)
{
    if (shape_count(h->ndim, h->shape, h->type, count, bytes))
        return FAIL("%s: malformed: the shape's element count overflows", name);
    if (avail >= 0 && (uint64_t)avail < *bytes)
        return FAIL("%s: truncated: the shape needs %zu bytes of data, the file has %lld", name, *bytes,
                    (long long)avail);
    if (avail >= 0 && (uint64_t)avail > *bytes)
        return FAIL("%s: malformed: %lld bytes after the %zu bytes of data", name, (long long)(avail - (int64_t)*bytes),
                    *bytes);
    return NPY_OK;
}

static npy_status finish(npy_array *a, const header *h, int64_t count)
{
    a->type = h->type, a->ndim = h->ndim, a->count = count;
    for (int d = 0; d < h->ndim; d++) a->shape[d] = h->shape[d];
    size_t es = npy_type_size(h->type);
    if (es > 1 && h->big_endian != native_big_endian()) byteswap(a->data, (size_t)count, es);
    return NPY_OK;
}

npy_status npy_parse(const void *buf, size_t len, const char *name, npy_array *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    const uint8_t *p = buf;
    size_t hoff, hlen, bytes;
    int64_t count;
    header h;
    npy_status st = parse_prefix(p, len, name, &hoff, &hlen, err, errlen);
    if (st) return st;
    if (len - hoff < hlen) return FAIL("%s: truncated: the file ends inside the header", name);
    if ((st = parse_dict((const char *)p + hoff, hlen, name, &h, err, errlen))) return st;
    if ((st = check_size(&h, name, (int64_t)(len - hoff - hlen), &count, &bytes, err, errlen))) return st;
    a->data = malloc(bytes ? bytes : 1);
    if (!a->data) return snprintf(err, errlen, "%s: out of memory for %zu bytes", name, bytes), NPY_ERR_NOMEM;
    memcpy(a->data, p + hoff + hlen, bytes);
    return finish(a, &h, count);
}

npy_status npy_read(const char *path, npy_array *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno)), NPY_ERR_IO;
    uint8_t pre[12];
    char *text = NULL;
    size_t hoff, hlen, bytes;
    int64_t count, avail = -1;
    header h;
    npy_status st;
    size_t got = fread(pre, 1, sizeof pre, f);
    if (ferror(f)) {
        st = NPY_ERR_IO, snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    if ((st = parse_prefix(pre, got, path, &hoff, &hlen, err, errlen))) goto done;
    /* the header, after the prefix (hoff <= 12 bytes, some already read) */
    text = malloc(hlen + 1);
    if (!text) {
        st = NPY_ERR_NOMEM, snprintf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    size_t have = got - hoff; /* header bytes already in pre */
    if (have > hlen) have = hlen;
    memcpy(text, pre + hoff, have);
    size_t more = hlen - have;
    if (fread(text + have, 1, more, f) != more) {
        st = ferror(f) ? NPY_ERR_IO : FAIL("%s: truncated: the file ends inside the header", path);
        if (st == NPY_ERR_IO) snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    if ((st = parse_dict(text, hlen, path, &h, err, errlen))) goto done;
    /* the data: its size known from the file system when the file is a plain file */
    size_t consumed = hoff + hlen;
    size_t extra = got > consumed ? got - consumed : 0; /* data bytes already in pre */
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode)) avail = (int64_t)sb.st_size - (int64_t)consumed;
    if ((st = check_size(&h, path, avail, &count, &bytes, err, errlen))) goto done;
    if (extra > bytes) {
        st = FAIL("%s: malformed: bytes after the %zu bytes of data", path, bytes);
        goto done;
    }
    a->data = malloc(bytes ? bytes : 1);
    if (!a->data) {
        st = NPY_ERR_NOMEM, snprintf(err, errlen, "%s: out of memory for %zu bytes", path, bytes);
        goto done;
    }
    if (extra) memcpy(a->data, pre + consumed, extra);
    size_t rest = bytes - extra;
    if (fread((uint8_t *)a->data + extra, 1, rest, f) != rest) {
        if (ferror(f)) st = NPY_ERR_IO, snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        else st = FAIL("%s: truncated: the shape needs %zu bytes of data", path, bytes);
        goto done;
    }
    if (fgetc(f) != EOF) {
        st = FAIL("%s: malformed: bytes after the %zu bytes of data", path, bytes);
        goto done;
    }
    st = finish(a, &h, count);
done:
    free(text);
    fclose(f);
    if (st) npy_free(a);
    return st;
}

#undef FAIL

/* ---- writing ---- */

npy_status npy_write(FILE *f, const npy_array *a, int big_endian)
{
    char dict[64 + 24 * NPY_MAX_DIMS], shape[24 * NPY_MAX_DIMS];
    npy_shape_str(a, shape, sizeof shape);
    size_t es = npy_type_size(a->type);
    int n = snprintf(dict, sizeof dict, "{'descr': '%c%s', 'fortran_order': False, 'shape': %s, }",
                     es == 1 ? '|' : big_endian ? '>' : '<', type_code(a->type), shape);
    /* pad with spaces and a newline so the data starts on a 64-byte boundary */
    size_t hlen = (size_t)n + 1, total = 10 + hlen;
    total = (total + 63) / 64 * 64;
    hlen = total - 10;
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xff), (uint8_t)(hlen >> 8)};
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)n, f) != (size_t)n) return NPY_ERR_IO;
    for (size_t i = (size_t)n; i + 1 < hlen; i++)
        if (fputc(' ', f) == EOF) return NPY_ERR_IO;
    if (fputc('\n', f) == EOF) return NPY_ERR_IO;
    size_t count = (size_t)a->count;
    if (es == 1 || big_endian == native_big_endian())
        return fwrite(a->data, es, count, f) == count ? NPY_OK : NPY_ERR_IO;
    uint8_t chunk[1 << 16];
    const uint8_t *src = a->data;
    for (size_t done = 0; done < count;) {
        size_t k = count - done < sizeof chunk / es ? count - done : sizeof chunk / es;
        memcpy(chunk, src + done * es, k * es);
        byteswap(chunk, k, es);
        if (fwrite(chunk, es, k, f) != k) return NPY_ERR_IO;
        done += k;
    }
    return NPY_OK;
}
