/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11):
 * a counter-based generator, so dropout's keep decision is a pure function of
 * (seed, b, h, i, j) and the backward regenerates the forward's mask. The rule is
 * spelled out in sattn.h so other implementations can reproduce it. */
#ifndef SATTN_PHILOX_H
#define SATTN_PHILOX_H

#include <stdint.h>

static inline void sattn__philox4x32_10(const uint32_t ctr_in[4], uint64_t seed, uint32_t out[4])
{
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* kept iff (r >> 8) * 2^-24 >= p, i.e. (r >> 8) >= ceil(p * 2^24); exact for float p. */
static inline uint32_t sattn__dropout_threshold(float p)
{
    double t = (double)p * 16777216.0;
    uint32_t ti = (uint32_t)t;
    return (double)ti < t ? ti + 1 : ti;
}

#endif
