/* sattn_bert: BERT sentence embeddings on sattn (all-MiniLM-L6-v2 and its family).
 *
 * A component beside the core library (libsattn_bert, linked with libsattn,
 * libutf8proc and libcjson), so libsattn itself keeps needing only a C compiler.
 *
 * ---- what it computes ----
 *
 * A model folder in the sentence-transformers layout:
 *     config.json                 BertModel: hidden_size, num_attention_heads, ...
 *     model.safetensors           f32 weights, names with or without a "bert." prefix
 *     vocab.txt                   the WordPiece vocabulary, one token per line (id = line)
 *     tokenizer.json              optional: normalizer flags and the added tokens
 *     sentence_bert_config.json   optional: max_seq_length (else max_position_embeddings)
 *     1_Pooling/config.json       optional: must ask for mean pooling if present
 *     modules.json                optional: L2 normalisation iff it lists a Normalize
 *                                 module (without the file: normalised)
 *
 * text -> tokens (Hugging Face's BERT WordPiece tokenizer, byte for byte):
 *   special tokens ([CLS], [SEP], ... the added tokens of tokenizer.json) are matched
 *   in the raw text first; the text between them is normalised: invalid UTF-8 becomes
 *   U+FFFD; U+0000, U+FFFD and control / format / private-use characters are dropped
 *   (tab, newline and carriage return are whitespace); whitespace becomes a space;
 *   CJK ideographs get a space on each side; NFD and combining marks (Mn) removed;
 *   lowercase. Then it is split on whitespace and punctuation (each punctuation
 *   character a word of its own), and each word becomes its greedy longest-match word
 *   pieces ("##" marks a continuation), or [UNK] when it has more than 100 characters
 *   or a part matches no piece. [CLS] pieces [SEP], the pieces cut to max_seq_length - 2.
 *
 * tokens -> embedding (BERT encoder, token type 0, mean pooling):
 *     x = LayerNorm(word[id] + position[i] + token_type[0])
 *     per layer:  x = LayerNorm(x + MHA(x))            (sattn_mha, exact attention)
 *                 x = LayerNorm(x + W2 gelu(W1 x + b1) + b2)   gelu(t) = t/2 (1 + erf(t/√2))
 *     e = mean of x over the text's tokens; e / max(||e||, 1e-12) when normalised
 * A batch of texts runs as one packed variable-length batch (cu_seqlens): no padding
 * anywhere. Results do not depend on the thread count (same bits); a text alone and
 * within a batch agree to rounding (the GEMMs may block a larger batch differently).
 *
 * ---- errors ----
 * Every function returns a status; on failure sattn_bert_last_error() is a sentence
 * that names the file and what was wrong with it, and no output is written. Nothing
 * exits or aborts.
 */
#ifndef SATTN_BERT_H
#define SATTN_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "sattn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SATTN_BERT_OK = 0,
    SATTN_BERT_ERR_INVALID = -1,     /* a bad argument */
    SATTN_BERT_ERR_NOMEM = -2,       /* memory could not be allocated */
    SATTN_BERT_ERR_UNSUPPORTED = -3, /* a valid model this code does not run (another activation, ...) */
    SATTN_BERT_ERR_IO = -4,          /* a file is missing or unreadable */
    SATTN_BERT_ERR_FORMAT = -5,      /* a file is malformed: truncated, corrupt, wrong shape or dtype */
} sattn_bert_status;

typedef struct sattn_bert sattn_bert;

typedef struct sattn_bert_info {
    int64_t hidden;        /* embedding size (384 for all-MiniLM-L6-v2) */
    int64_t layers, heads, intermediate;
    int64_t vocab;         /* word pieces in vocab.txt */
    int64_t max_tokens;    /* tokens per text, [CLS] and [SEP] included (256) */
    int normalize;         /* embeddings are L2-normalised */
} sattn_bert_info;

/* Loads the model in folder dir. The weights are mapped from model.safetensors and
   used in place where their layout allows (the file must stay unchanged while the
   model lives). *model is NULL on failure. */
SATTN_API sattn_bert_status sattn_bert_load(sattn_bert **model, const char *dir);
SATTN_API void sattn_bert_free(sattn_bert *model);
SATTN_API sattn_bert_status sattn_bert_get_info(const sattn_bert *model, sattn_bert_info *info);

/* The token ids of text (len bytes of UTF-8; need not end in NUL; invalid bytes are
   replaced, never an error): [CLS] ... [SEP], at most max_tokens. Writes
   min(*n, cap) ids and sets *n to the full count (so cap = 0 asks for the count). */
SATTN_API sattn_bert_status sattn_bert_tokenize(const sattn_bert *model, const char *text, size_t len,
                                                int32_t *ids, int64_t cap, int64_t *n);

/* The word piece of id ("[CLS]", "hello", "##lo"), or NULL for an id out of range. */
SATTN_API const char *sattn_bert_token(const sattn_bert *model, int32_t id);

/* out (count, hidden) f32: the embeddings of texts[0..count-1] (texts[i] has lens[i]
   bytes; lens NULL means NUL-terminated strings), all in one packed batch. */
SATTN_API sattn_bert_status sattn_bert_embed(sattn_bert *model, int64_t count, const char *const *texts,
                                             const size_t *lens, float *out);

/* The same from token ids: sequence b is ids[cu_seqlens[b] .. cu_seqlens[b+1]-1]
   (cu_seqlens[0] = 0, each length in [1, max_tokens], every id < vocab rows).
   out (count, hidden) as above; hidden_states (cu_seqlens[count], hidden), the last
   layer's output per token, unless NULL. */
SATTN_API sattn_bert_status sattn_bert_encode(sattn_bert *model, int64_t count, const int32_t *ids,
                                              const int32_t *cu_seqlens, float *out, float *hidden_states);

/* The attention weights of layer l (0-based) in the last embed or encode, which must
   have had one text of n tokens: w (heads, n, n) f32, row i the softmax over keys. */
SATTN_API sattn_bert_status sattn_bert_attention(const sattn_bert *model, int64_t layer, float *w);

/* This thread's last failure message ("" if none). */
SATTN_API const char *sattn_bert_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* SATTN_BERT_H */
