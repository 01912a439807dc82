/* f16 (IEEE binary16) and bf16 <-> f32, scalar and exact; stores round to nearest even. */
#ifndef SATTN_CONVERT_H
#define SATTN_CONVERT_H

#include <stdint.h>
#include <string.h>

static inline uint32_t sattn__f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float sattn__bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float sattn__bf16_to_f32(uint16_t h) { return sattn__bits_f32((uint32_t)h << 16); }

static inline uint16_t sattn__f32_to_bf16(float f)
{
    uint32_t u = sattn__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float sattn__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return sattn__bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    return sattn__bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t sattn__f32_to_f16(float f)
{
    uint32_t u = sattn__f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* below the smallest normal 2^-14: round |f| * 2^24 to an integer, nearest even.
           Adding 0.5 in f32 rounds at the right bit for every value in this range. */
        float m = sattn__bits_f32(a) * 0x1p24f; /* exact: a power-of-two scaling */
        uint32_t r = (uint32_t)m;
        float frac = m - (float)r;
        if (frac > 0.5f || (frac == 0.5f && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    /* normal: rebias the exponent, round the 13 dropped mantissa bits to nearest even */
    uint32_t h = (a - 0x38000000u) >> 13;
    uint32_t rest = a & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

#endif
