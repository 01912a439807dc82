/* Prints the offset and size of every field of the public structs, one per line:
 *     <struct> <field> <offset> <size>
 * and "<struct> sizeof <size> <align>": what the package's ctypes.Structure mirrors
 * must match (python/tests/test_package.py). */
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>

#include "sattn.h"

#define FIELD(T, f) printf("%s %s %zu %zu\n", #T, #f, offsetof(T, f), sizeof(((T *)0)->f))
#define STRUCT(T) printf("%s sizeof %zu %zu\n", #T, sizeof(T), alignof(T))

int main(void)
{
    STRUCT(sattn_params);
    FIELD(sattn_params, batch), FIELD(sattn_params, seq_q), FIELD(sattn_params, seq_kv);
    FIELD(sattn_params, heads_q), FIELD(sattn_params, heads_kv), FIELD(sattn_params, head_dim);
    FIELD(sattn_params, head_dim_v), FIELD(sattn_params, dtype);
    FIELD(sattn_params, q_stride), FIELD(sattn_params, k_stride), FIELD(sattn_params, v_stride);
    FIELD(sattn_params, o_stride), FIELD(sattn_params, scale), FIELD(sattn_params, causal);
    FIELD(sattn_params, window_left), FIELD(sattn_params, window_right);
    FIELD(sattn_params, seqlens_q), FIELD(sattn_params, seqlens_kv);
    FIELD(sattn_params, cu_seqlens_q), FIELD(sattn_params, cu_seqlens_kv);
    FIELD(sattn_params, bias), FIELD(sattn_params, bias_stride);
    FIELD(sattn_params, mask), FIELD(sattn_params, mask_stride);
    FIELD(sattn_params, alibi_slopes), FIELD(sattn_params, softcap);
    FIELD(sattn_params, dropout_p), FIELD(sattn_params, seed), FIELD(sattn_params, products);

    STRUCT(sattn_mha_config);
    FIELD(sattn_mha_config, embed_dim), FIELD(sattn_mha_config, num_heads);
    FIELD(sattn_mha_config, num_kv_heads), FIELD(sattn_mha_config, head_dim);
    FIELD(sattn_mha_config, bias), FIELD(sattn_mha_config, dtype);

    STRUCT(sattn_kvcache_config);
    FIELD(sattn_kvcache_config, batch), FIELD(sattn_kvcache_config, heads_kv);
    FIELD(sattn_kvcache_config, head_dim), FIELD(sattn_kvcache_config, head_dim_v);
    FIELD(sattn_kvcache_config, dtype), FIELD(sattn_kvcache_config, capacity);
    FIELD(sattn_kvcache_config, max_tokens), FIELD(sattn_kvcache_config, window);
    return 0;
}
