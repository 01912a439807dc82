/* BERT's uncased WordPiece tokenizer, as Hugging Face's `tokenizers` (the fast
 * tokenizer) runs it: added tokens, BertNormalizer, BertPreTokenizer, WordPiece,
 * then [CLS] ... [SEP].
 *
 * Unicode data (categories, canonical decompositions, lowercase) comes from
 * libutf8proc. The one place this file knows code points itself is hf_quirk(): where
 * `tokenizers` classifies by older Unicode tables than utf8proc's, the difference is
 * listed there, so that the ids stay those of the library people compare with.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "bert_internal.h"

/* ---- the vocabulary ---- */

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

int32_t tok_lookup(const bert_tokenizer *t, const char *s, size_t len)
{
    uint64_t mask = t->cap - 1;
    for (uint64_t i = hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        int32_t e = t->slot[i];
        if (e == 0) return -1;
        if (t->piece_len[e - 1] == len && memcmp(t->piece[e - 1], s, len) == 0) return e - 1;
    }
}

/* A later line with the same piece wins, as in a Python dict built line by line. */
static void insert(bert_tokenizer *t, int32_t id)
{
    uint64_t mask = t->cap - 1;
    for (uint64_t i = hash_bytes(t->piece[id], t->piece_len[id]) & mask;; i = (i + 1) & mask) {
        int32_t e = t->slot[i];
        if (e == 0 || (t->piece_len[e - 1] == t->piece_len[id] &&
                       memcmp(t->piece[e - 1], t->piece[id], t->piece_len[id]) == 0)) {
            t->slot[i] = id + 1;
            return;
        }
    }
}

void tok_free(bert_tokenizer *t)
{
    if (!t) return;
    free(t->piece);
    free(t->piece_len);
    free(t->slot);
    free(t->text);
    for (int i = 0; i < t->nadded; i++) free(t->added[i].s);
    free(t->added);
    memset(t, 0, sizeof *t);
}

static sattn_bert_status add_special(bert_tokenizer *t, const char *s, int32_t id)
{
    tok_added *a = realloc(t->added, (size_t)(t->nadded + 1) * sizeof *a);
    if (!a) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory for the added tokens");
    t->added = a;
    size_t len = strlen(s);
    char *copy = malloc(len + 1);
    if (!copy) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory for the added tokens");
    memcpy(copy, s, len + 1);
    a[t->nadded++] = (tok_added){copy, len, id};
    return SATTN_BERT_OK;
}

sattn_bert_status tok_init(bert_tokenizer *t, const char *buf, size_t len, const char *path)
{
    memset(t, 0, sizeof *t);
    if (len == 0) return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: the vocabulary is empty", path);
    /* one piece per line, the line's "\n" removed (and nothing else, as BertTokenizer
       reads it); a last line without "\n" counts */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    if (buf[len - 1] != '\n') lines++;
    if (lines > INT32_MAX - 1)
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: %zu lines: more pieces than an int32 id can number", path,
                          lines);
    t->text = malloc(len + 1);
    t->piece = malloc(lines * sizeof *t->piece);
    t->piece_len = malloc(lines * sizeof *t->piece_len);
    t->cap = 16;
    while (t->cap < 2 * (uint64_t)lines) t->cap *= 2;
    t->slot = calloc(t->cap, sizeof *t->slot);
    if (!t->text || !t->piece || !t->piece_len || !t->slot) {
        tok_free(t);
        return bert__fail(SATTN_BERT_ERR_NOMEM, "%s: out of memory for %zu pieces", path, lines);
    }
    memcpy(t->text, buf, len);
    t->text[len] = '\0';
    int32_t n = 0;
    for (size_t start = 0; start < len;) {
        char *nl = memchr(t->text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - t->text) : len;
        t->text[end] = '\0';
        t->piece[n] = t->text + start;
        t->piece_len[n] = end - start;
        insert(t, n);
        n++;
        start = end + 1;
    }
    t->n = n;
    t->unk = tok_lookup(t, "[UNK]", 5);
    t->cls = tok_lookup(t, "[CLS]", 5);
    t->sep = tok_lookup(t, "[SEP]", 5);
    if (t->unk < 0 || t->cls < 0 || t->sep < 0) {
        const char *missing = t->unk < 0 ? "[UNK]" : t->cls < 0 ? "[CLS]" : "[SEP]";
        tok_free(t);
        return bert__fail(SATTN_BERT_ERR_FORMAT, "%s: the vocabulary has no %s piece", path, missing);
    }
    t->clean_text = t->chinese = t->strip_accents = t->lowercase = 1;
    t->max_chars = 100;
    memcpy(t->prefix, "##", 3);
    t->prefix_len = 2;
    /* BertTokenizer never splits its special tokens: without a tokenizer.json, these */
    static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) {
        int32_t id = tok_lookup(t, specials[i], strlen(specials[i]));
        if (id >= 0) {
            sattn_bert_status st = add_special(t, specials[i], id);
            if (st != SATTN_BERT_OK) {
                tok_free(t);
                return st;
            }
        }
    }
    return SATTN_BERT_OK;
}

/* ---- character classes ----
 *
 * `tokenizers` (0.13 to 0.23 at least) takes the categories of its control, mark
 * and punctuation tests from tables of Unicode 8.0, while its NFD and lowercase are
 * current; utf8proc 2.8 has Unicode 15.0. hf_quirk() returns, for the code points
 * where the two category answers differ (measured over every code point against
 * tokenizers 0.23 by tests/bert/unicode_quirks.py), the class `tokenizers` gives:
 * characters assigned since 8.0 are unassigned there (a letter-like "other"), and a
 * few changed category. */
enum { Q_NONE = 0, Q_OTHER, Q_PUNCT, Q_MARK, Q_CONTROL };

typedef struct {
    int32_t lo, hi;
    int cls;
} quirk_range;

#include "unicode_quirks.h"

static int hf_quirk(int32_t c)
{
    int lo = 0, hi = (int)(sizeof quirks / sizeof *quirks) - 1;
    if (c < quirks[0].lo) return Q_NONE;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < quirks[mid].lo) hi = mid - 1;
        else if (c > quirks[mid].hi) lo = mid + 1;
        else return quirks[mid].cls;
    }
    return Q_NONE;
}

/* White_Space: Zs, Zl, Zp and the C0/C1 spaces. */
static int is_whitespace(int32_t c)
{
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return 1;
    if ((c >= 0x0b && c <= 0x0c) || c == 0x85) return 1;
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

/* Cc, Cf, Co, except tab, newline and carriage return (whitespace) */
static int is_control(int32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    int q = hf_quirk(c);
    if (q) return q == Q_CONTROL;
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CO;
}

static int is_nonspacing_mark(int32_t c)
{
    int q = hf_quirk(c);
    if (q) return q == Q_MARK;
    return utf8proc_category(c) == UTF8PROC_CATEGORY_MN;
}

/* ASCII punctuation (symbols such as $ + < = > ^ ` | ~ included) and every P* */
static int is_punct(int32_t c)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return 1;
    int q = hf_quirk(c);
    if (q) return q == Q_PUNCT;
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* The CJK blocks of the original BERT (Unified Ideographs, Extensions A-E and the
   compatibility ideographs): by definition ranges, not Unicode data. */
static int is_cjk(int32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ---- encoding ---- */

typedef struct {
    const bert_tokenizer *t;
    int64_t limit;      /* pieces wanted: max_tokens - 2 */
    int64_t count;      /* pieces found so far */
    int32_t *ids;       /* ids[1 + k] receives piece k when within cap */
    int64_t cap;
    char *piece;        /* scratch: prefix + a part of one word, (prefix_len + 4 max_chars) */
    char *utf8;         /* scratch: one word's UTF-8, (4 max_chars) */
    int32_t *local;     /* scratch: one word's pieces, (max_chars) */
} encoder;

static void emit(encoder *e, int32_t id)
{
    if (e->count < e->limit) {
        if (1 + e->count < e->cap) e->ids[1 + e->count] = id;
        e->count++;
    }
}

/* The word pieces of one word (w: UTF-8 of nchars <= max_chars code points):
   greedy longest match from the left, later parts with the prefix; a word with a
   part that matches nothing is one [UNK]. */
static void wordpiece(encoder *e, const char *w, size_t len)
{
    const bert_tokenizer *t = e->t;
    int64_t nlocal = 0;
    memcpy(e->piece, t->prefix, t->prefix_len);
    for (size_t start = 0; start < len;) {
        size_t end = len;
        int32_t id = -1;
        while (end > start) {
            if (start == 0) {
                id = tok_lookup(t, w, end);
            } else {
                memcpy(e->piece + t->prefix_len, w + start, end - start);
                id = tok_lookup(t, e->piece, t->prefix_len + end - start);
            }
            if (id >= 0) break;
            do end--; /* back to the previous character boundary */
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
        }
        if (id < 0) {
            emit(e, t->unk);
            return;
        }
        e->local[nlocal++] = id; /* at most one piece per character */
        start = end;
    }
    for (int64_t i = 0; i < nlocal; i++) emit(e, e->local[i]);
}

/* Normalises a chunk of text between added tokens and emits its pieces. */
static sattn_bert_status encode_chunk(encoder *e, const uint8_t *s, size_t len)
{
    const bert_tokenizer *t = e->t;
    /* 1. clean (drop NUL, U+FFFD, controls; whitespace -> ' ') and space out CJK, to
       UTF-8 again for utf8proc's NFD, which orders the combining marks */
    uint8_t *clean = malloc(3 * len + 4 + 1); /* a 4-byte CJK char gains 2 bytes: at most 3x */
    if (!clean) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
    size_t m = 0;
    for (size_t i = 0; i < len;) {
        int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &c);
        if (k < 0) { /* an invalid byte: U+FFFD, which cleaning drops; kept without cleaning */
            c = 0xFFFD;
            k = 1;
        }
        i += (size_t)k;
        if (t->clean_text) {
            if (c == 0 || c == 0xFFFD || is_control(c)) continue;
            if (is_whitespace(c)) c = ' ';
        }
        if (t->chinese && is_cjk(c)) {
            clean[m++] = ' ';
            m += (size_t)utf8proc_encode_char(c, clean + m);
            clean[m++] = ' ';
        } else {
            m += (size_t)utf8proc_encode_char(c, clean + m);
        }
    }
    /* 2. NFD (when stripping accents), else the code points as they are */
    int32_t *cp = NULL;
    utf8proc_ssize_t ncp = 0;
    if (t->strip_accents) {
        utf8proc_ssize_t need = utf8proc_decompose(clean, (utf8proc_ssize_t)m, NULL, 0, UTF8PROC_DECOMPOSE);
        if (need >= 0) {
            cp = malloc(((size_t)need + 1) * sizeof *cp);
            if (cp) ncp = utf8proc_decompose(clean, (utf8proc_ssize_t)m, cp, need, UTF8PROC_DECOMPOSE);
        }
        if (need < 0 || ncp < 0) { /* cannot happen: the input is valid UTF-8 now */
            free(cp);
            free(clean);
            return bert__fail(SATTN_BERT_ERR_INVALID, "NFD failed: %s",
                              utf8proc_errmsg(need < 0 ? need : ncp));
        }
    } else {
        cp = malloc((m + 1) * sizeof *cp);
        if (cp)
            for (size_t i = 0; i < m;) i += (size_t)utf8proc_iterate(clean + i, (utf8proc_ssize_t)(m - i), &cp[ncp++]);
    }
    free(clean);
    if (!cp) return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
    /* 3. strip Mn, lowercase (char by char, as tokenizers does: no context rules) */
    utf8proc_ssize_t n = 0;
    for (utf8proc_ssize_t i = 0; i < ncp; i++) {
        int32_t c = cp[i];
        if (t->strip_accents && is_nonspacing_mark(c)) continue;
        if (t->lowercase) c = utf8proc_tolower(c);
        cp[n++] = c;
    }
    /* 4. words: split on whitespace (dropped) and punctuation (a word each) */
    for (utf8proc_ssize_t i = 0; i < n && e->count < e->limit;) {
        int32_t c = cp[i];
        if (is_whitespace(c)) {
            i++;
            continue;
        }
        utf8proc_ssize_t j = i + 1;
        if (!is_punct(c))
            while (j < n && !is_whitespace(cp[j]) && !is_punct(cp[j])) j++;
        if (j - i > t->max_chars) {
            emit(e, t->unk);
        } else {
            size_t blen = 0;
            for (utf8proc_ssize_t k = i; k < j; k++)
                blen += (size_t)utf8proc_encode_char(cp[k], (uint8_t *)e->utf8 + blen);
            wordpiece(e, e->utf8, blen);
        }
        i = j;
    }
    free(cp);
    return SATTN_BERT_OK;
}

/* A stretch between added tokens, in chunks of about CHUNK bytes, each cut just
   after an ASCII space or punctuation character: a word boundary, and a starter that
   NFD never reorders across, so the chunks give the pieces of the whole; memory
   stays O(CHUNK) unless a stretch has no such character. */
enum { CHUNK = 1 << 14 };

static sattn_bert_status encode_segment(encoder *e, const uint8_t *s, size_t len)
{
    size_t start = 0;
    while (start < len && e->count < e->limit) {
        size_t end = len;
        if (len - start > CHUNK) {
            end = start + CHUNK;
            while (end < len && !(s[end - 1] == ' ' || s[end - 1] == '\n' || s[end - 1] == '\t' ||
                                  (s[end - 1] < 128 && is_punct(s[end - 1]))))
                end++;
        }
        sattn_bert_status st = encode_chunk(e, s + start, end - start);
        if (st != SATTN_BERT_OK) return st;
        start = end;
    }
    return SATTN_BERT_OK;
}

sattn_bert_status tok_encode(const bert_tokenizer *t, const char *text, size_t len, int64_t max_tokens,
                             int32_t *ids, int64_t cap, int64_t *n)
{
    encoder e = {.t = t, .limit = max_tokens - 2, .ids = ids, .cap = cap};
    size_t mc = (size_t)t->max_chars;
    e.piece = malloc(t->prefix_len + 4 * mc);
    e.utf8 = malloc(4 * mc);
    e.local = malloc(mc * sizeof *e.local);
    if (!e.piece || !e.utf8 || !e.local) {
        free(e.piece), free(e.utf8), free(e.local);
        return bert__fail(SATTN_BERT_ERR_NOMEM, "out of memory tokenizing");
    }
    const uint8_t *s = (const uint8_t *)text;
    size_t seg = 0; /* start of the text not yet encoded */
    sattn_bert_status st = SATTN_BERT_OK;
    for (size_t i = 0; i < len && e.count < e.limit && st == SATTN_BERT_OK;) {
        /* leftmost-longest added token at i */
        int best = -1;
        for (int a = 0; a < t->nadded; a++)
            if (t->added[a].len <= len - i && memcmp(s + i, t->added[a].s, t->added[a].len) == 0 &&
                (best < 0 || t->added[a].len > t->added[best].len))
                best = a;
        if (best < 0 || t->added[best].len == 0) {
            i++;
            continue;
        }
        if (i > seg) st = encode_segment(&e, s + seg, i - seg);
        if (st == SATTN_BERT_OK) emit(&e, t->added[best].id);
        i += t->added[best].len;
        seg = i;
    }
    if (st == SATTN_BERT_OK && seg < len && e.count < e.limit) st = encode_segment(&e, s + seg, len - seg);
    free(e.piece), free(e.utf8), free(e.local);
    if (st != SATTN_BERT_OK) return st;
    if (cap > 0) ids[0] = t->cls;
    if (1 + e.count < cap) ids[1 + e.count] = t->sep;
    *n = e.count + 2;
    return SATTN_BERT_OK;
}

/* ---- tokenizer.json ---- */

#include <cjson/cJSON.h>

static const char *json_type_string(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* a JSON boolean (or, with allow_null, null = -1) as 0/1; -2 when absent or another type */
static int json_flag(const cJSON *obj, const char *key, int allow_null)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (allow_null && cJSON_IsNull(v)) return -1;
    return -2;
}

sattn_bert_status tok_configure(bert_tokenizer *t, const char *json, size_t len, const char *path)
{
    cJSON *root;
    sattn_bert_status st = bert__parse_json(json, len, path, &root);
    if (st != SATTN_BERT_OK) return st;
#define FAIL(code, ...)                                                                                          \
    do {                                                                                                         \
        st = bert__fail(code, __VA_ARGS__);                                                                      \
        goto done;                                                                                               \
    } while (0)
    if (!cJSON_IsObject(root)) FAIL(SATTN_BERT_ERR_FORMAT, "%s: the top level is not a JSON object", path);

    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const char *type = json_type_string(norm, "type");
    if (!type || strcmp(type, "BertNormalizer") != 0)
        FAIL(SATTN_BERT_ERR_UNSUPPORTED, "%s: normalizer \"%s\" is not supported (BertNormalizer only)", path,
             type ? type : "(none)");
    int clean = json_flag(norm, "clean_text", 0), chinese = json_flag(norm, "handle_chinese_chars", 0);
    int strip = json_flag(norm, "strip_accents", 1), lower = json_flag(norm, "lowercase", 0);
    if (clean < 0 || chinese < 0 || strip == -2 || lower < 0)
        FAIL(SATTN_BERT_ERR_FORMAT,
             "%s: the BertNormalizer needs booleans clean_text, handle_chinese_chars, lowercase and "
             "strip_accents (or null)", path);

    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    type = json_type_string(pre, "type");
    if (!type || strcmp(type, "BertPreTokenizer") != 0)
        FAIL(SATTN_BERT_ERR_UNSUPPORTED, "%s: pre_tokenizer \"%s\" is not supported (BertPreTokenizer only)",
             path, type ? type : "(none)");

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    type = json_type_string(model, "type");
    if (!type || strcmp(type, "WordPiece") != 0)
        FAIL(SATTN_BERT_ERR_UNSUPPORTED, "%s: model \"%s\" is not supported (WordPiece only)", path,
             type ? type : "(none)");
    const char *unk = json_type_string(model, "unk_token");
    const char *prefix = json_type_string(model, "continuing_subword_prefix");
    int64_t max_chars = 0;
    if (!unk || !prefix ||
        !bert__json_int(cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word"), 1, 1 << 16, &max_chars))
        FAIL(SATTN_BERT_ERR_FORMAT,
             "%s: the WordPiece model needs unk_token, continuing_subword_prefix and "
             "max_input_chars_per_word (1 to 65536)", path);
    int32_t unk_id = tok_lookup(t, unk, strlen(unk));
    if (unk_id < 0) FAIL(SATTN_BERT_ERR_FORMAT, "%s: unk_token \"%s\" is not in the vocabulary", path, unk);
    if (strlen(prefix) >= sizeof t->prefix)
        FAIL(SATTN_BERT_ERR_UNSUPPORTED, "%s: continuing_subword_prefix is longer than %zu bytes", path,
             sizeof t->prefix - 1);
    /* the vocabulary here must be vocab.txt's */
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (vocab) {
        if (!cJSON_IsObject(vocab)) FAIL(SATTN_BERT_ERR_FORMAT, "%s: model.vocab is not an object", path);
        int64_t count = 0;
        for (const cJSON *v = vocab->child; v; v = v->next, count++) {
            int64_t id;
            if (!bert__json_int(v, 0, INT32_MAX, &id) || v->string == NULL ||
                tok_lookup(t, v->string, strlen(v->string)) != (int32_t)id)
                FAIL(SATTN_BERT_ERR_FORMAT, "%s: model.vocab entry \"%s\" disagrees with vocab.txt", path,
                     v->string ? v->string : "");
        }
        if (count != t->n)
            FAIL(SATTN_BERT_ERR_FORMAT, "%s: model.vocab has %lld pieces, vocab.txt %lld", path, (long long)count,
                 (long long)t->n);
    }

    /* the added tokens replace the default special tokens */
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    tok_added *list = NULL;
    int nlist = 0;
    if (added) {
        if (!cJSON_IsArray(added)) FAIL(SATTN_BERT_ERR_FORMAT, "%s: added_tokens is not an array", path);
        int total = cJSON_GetArraySize(added);
        list = calloc((size_t)(total > 0 ? total : 1), sizeof *list);
        if (!list) FAIL(SATTN_BERT_ERR_NOMEM, "%s: out of memory for the added tokens", path);
        for (const cJSON *a = added->child; a; a = a->next) {
            const char *content = json_type_string(a, "content");
            int64_t id;
            if (!content || !content[0] || !bert__json_int(cJSON_GetObjectItemCaseSensitive(a, "id"), 0, INT32_MAX, &id)) {
                free(list);
                FAIL(SATTN_BERT_ERR_FORMAT, "%s: an added token without a content string or an id", path);
            }
            if (id >= t->n) {
                free(list);
                FAIL(SATTN_BERT_ERR_UNSUPPORTED, "%s: added token \"%s\" has id %lld, past the vocabulary", path,
                     content, (long long)id);
            }
            if (json_flag(a, "normalized", 0) == 1 || json_flag(a, "lstrip", 0) == 1 ||
                json_flag(a, "rstrip", 0) == 1 || json_flag(a, "single_word", 0) == 1) {
                free(list);
                FAIL(SATTN_BERT_ERR_UNSUPPORTED,
                     "%s: added token \"%s\": normalized, lstrip, rstrip and single_word are not supported", path,
                     content);
            }
            list[nlist++] = (tok_added){(char *)content, strlen(content), (int32_t)id};
        }
    }
    /* every check passed: apply */
    if (added) {
        for (int i = 0; i < nlist; i++) {
            char *copy = malloc(list[i].len + 1);
            if (!copy) {
                for (int k = 0; k < i; k++) free(list[k].s);
                free(list);
                FAIL(SATTN_BERT_ERR_NOMEM, "%s: out of memory for the added tokens", path);
            }
            memcpy(copy, list[i].s, list[i].len + 1);
            list[i].s = copy;
        }
        for (int i = 0; i < t->nadded; i++) free(t->added[i].s);
        free(t->added);
        t->added = list;
        t->nadded = nlist;
    }
    t->clean_text = clean, t->chinese = chinese, t->lowercase = lower;
    t->strip_accents = strip == -1 ? lower : strip; /* null: strip when lowercasing */
    t->max_chars = (int)max_chars;
    t->unk = unk_id;
    memcpy(t->prefix, prefix, strlen(prefix) + 1);
    t->prefix_len = strlen(prefix);
#undef FAIL
done:
    cJSON_Delete(root);
    return st;
}
