/* model: a small Transformer encoder, trained in C with sattn's layer.
 *
 *     x      = tok[token] + pos[position]                       (embeddings, E wide)
 *     blocks: x = x + mha(layernorm(x))                           (sattn_mha, non-causal)
 *             x = x + W2 relu(W1 layernorm(x) + b1) + b2          (MLP, F wide)
 *     logits = layernorm(x) Wh + bh                               (V classes per position)
 *     loss   = mean cross-entropy over every position
 *
 * The attention is sattn's (sattn_mha_forward / backward); the rest, forward and
 * backward, is here in plain C: each op's backward sits under its forward.
 */
#ifndef SATTN_CLI_MODEL_H
#define SATTN_CLI_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define MODEL_MAX_BLOCKS 8

typedef struct {
    int vocab;  /* V: symbols in and out */
    int seq;    /* N: tokens per sequence */
    int embed;  /* E */
    int heads;  /* H, divides E */
    int blocks; /* L, 1 .. MODEL_MAX_BLOCKS */
    int hidden; /* F: the MLP's width */
} model_config;

typedef struct model model;

/* A model for batches of up to max_batch sequences, its weights drawn from seed.
   0, or -1 with a message in err. */
int model_create(model **m, const model_config *cfg, int max_batch, uint64_t seed, char *err, size_t errlen);
void model_free(model *m);

/* Forward over batch sequences of tokens (batch, seq). With targets (batch, seq):
   *loss = the mean cross-entropy and *correct = the positions whose largest logit is
   the target. predictions (batch, seq), if not NULL, receives the argmax. 0, or -1
   (sattn_last_error() says why). */
int model_forward(model *m, const int *tokens, const int *targets, int batch, float *loss, int *correct,
                  int *predictions);
/* Gradients of the last forward's loss (which must have had targets) into the
   gradient arrays, overwriting them. 0 or -1. */
int model_backward(model *m);
/* One Adam step (betas 0.9, 0.98) at learning rate lr, the gradient first clipped to
   a global norm of clip (0: no clipping). Returns the norm before clipping. */
float model_adam(model *m, float lr, float clip);

/* The attention weights of block b for sequence s of the last forward:
   w (heads, seq, seq). 0 or -1. */
int model_attention(model *m, int block, int s, float *w);

/* ---- parameters, for the gradient check: tensor i of model_tensors() ---- */
typedef struct {
    char name[32];
    float *w, *g; /* the weights and their gradient */
    int64_t n;
} model_tensor;
/* Number of tensors; fills up to max of them into t (t may be NULL). */
int model_tensors(model *m, model_tensor *t, int max);
/* Total parameter count. */
int64_t model_parameters(const model *m);

#endif /* SATTN_CLI_MODEL_H */
