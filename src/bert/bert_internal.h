/* Internal declarations of the BERT component (libsattn_bert).
 *
 * Data flow: sattn_bert_load (bert.c) reads the configs (cJSON), the vocabulary and
 * tokenizer settings (tokenizer.c) and the weights (safetensors.c, mmap); embed runs
 * tokenizer -> packed batch -> encoder (bert.c on sattn_mha and sattn_sgemm).
 */
#ifndef SATTN_BERT_INTERNAL_H
#define SATTN_BERT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sattn_bert.h"

/* ---- errors (bert.c) ---- */

/* Records a printf-style message for sattn_bert_last_error() and returns st. */
sattn_bert_status bert__fail(sattn_bert_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- files and JSON, shared by the readers (bert.c) ---- */

struct cJSON;

/* Opens path read-only and checks that it is a regular file: *fd and its *size, or a
   status with a message naming path. With optional set, a missing file is SATTN_BERT_OK
   with *fd = -1. */
sattn_bert_status bert__open_file(const char *path, int optional, int *fd, uint64_t *size);
/* Parses len bytes of JSON (any value) into *out; malformed JSON is SATTN_BERT_ERR_FORMAT
   with the byte where cJSON stopped, naming path. */
sattn_bert_status bert__parse_json(const char *buf, size_t len, const char *path, struct cJSON **out);
/* 1 and *out when v is a JSON number that is an integer in [lo, hi] (|lo|, |hi| <= 2^53). */
int bert__json_int(const struct cJSON *v, int64_t lo, int64_t hi, int64_t *out);

/* h = gelu(h + b) row by row, h (T, I), b (I): the encoder's activation (exported
   to the tests, which check it against erf in double). */
void bert__bias_gelu(float *h, const float *b, int64_t T, int64_t I);

/* ---- safetensors (safetensors.c) ----
 * File: u64 little-endian N, then N bytes of a JSON object
 *   { "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *     "__metadata__": {...} }
 * then the data; offsets are relative to the data's start. */

typedef enum { ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_OTHER } st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    st_dtype dtype;
    char dtype_name[16];
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end; /* byte offsets into the data, checked: begin <= end <= data_size */
} st_tensor;

typedef struct {
    const uint8_t *data; /* the data section (after the header) */
    uint64_t data_size;
    st_tensor *tensors;
    int64_t count;
    void *map;           /* the mapping of the whole file, or NULL */
    size_t map_size;
} st_file;

/* Parses a safetensors image of size bytes (f->data then points into buf).
   path names the file in messages. Every offset and size is checked against size. */
sattn_bert_status st_parse(st_file *f, const uint8_t *buf, size_t size, const char *path);
/* Maps path read-only and parses it. */
sattn_bert_status st_open(st_file *f, const char *path);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);

/* ---- the WordPiece tokenizer (tokenizer.c) ---- */

typedef struct {
    char *s;
    size_t len;
    int32_t id;
} tok_added;

typedef struct {
    /* vocabulary: id -> piece, and a hash of piece -> id */
    char **piece;         /* (n) NUL-terminated */
    size_t *piece_len;    /* (n) */
    int32_t n;
    int32_t *slot;        /* (cap) id + 1, or 0 = empty */
    uint64_t cap;         /* power of two */
    char *text;           /* the vocabulary file's bytes, which piece[] point into */
    int32_t unk, cls, sep;
    tok_added *added;     /* matched in the raw text before normalisation */
    int nadded;
    /* the BertNormalizer's switches (tokenizer.json; all on for an uncased BERT) */
    int clean_text, chinese, strip_accents, lowercase;
    int max_chars;        /* longer words are [UNK] (100) */
    char prefix[16];      /* continuation prefix, "##" */
    size_t prefix_len;
} bert_tokenizer;

/* Reads the vocabulary (one piece per line; id = line number) from buf; finds
   [UNK], [CLS], [SEP]; sets the uncased-BERT defaults. path names it in messages. */
sattn_bert_status tok_init(bert_tokenizer *t, const char *buf, size_t len, const char *path);
/* Applies a tokenizer.json (its normalizer switches, WordPiece settings and added
   tokens), which must describe this tokenizer's kind; json is len bytes. */
sattn_bert_status tok_configure(bert_tokenizer *t, const char *json, size_t len, const char *path);
void tok_free(bert_tokenizer *t);
/* id of a piece, or -1 */
int32_t tok_lookup(const bert_tokenizer *t, const char *s, size_t len);
/* [CLS] pieces [SEP] of text, pieces cut to max_tokens - 2; see sattn_bert_tokenize. */
sattn_bert_status tok_encode(const bert_tokenizer *t, const char *text, size_t len, int64_t max_tokens,
                             int32_t *ids, int64_t cap, int64_t *n);

#endif /* SATTN_BERT_INTERNAL_H */
