/* Attention of one query over two keys through the installed library: prints the
   output, which check.cmake compares with the value worked out by hand. */
#include <sattn.h>
#include <stdio.h>

int main(void)
{
    /* q = (1, 0), k = (1, 0), (0, 0), v = 1, 3, scale 1: weights e/(e+1), 1/(e+1) */
    const float q[2] = {1, 0}, k[4] = {1, 0, 0, 0}, v[2] = {1, 3};
    float out[1], lse[1];
    sattn_params p = {0};
    p.batch = 1, p.seq_q = 1, p.seq_kv = 2, p.heads_q = 1, p.head_dim = 2, p.head_dim_v = 1, p.scale = 1.0f;
    if (sattn_forward(&p, q, k, v, out, lse) != SATTN_OK) {
        fprintf(stderr, "consumer: %s\n", sattn_last_error());
        return 1;
    }
    printf("sattn %s out %.6f\n", sattn_version(), out[0]); /* (e + 3) / (e + 1) = 1.537882 */
    return 0;
}
