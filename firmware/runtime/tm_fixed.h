/* Integer fixed-point arithmetic with the rounding behaviour of the TFLite
 * reference kernels (double-rounding variant: a rounding doubling high
 * multiply followed by a rounding right shift).
 *
 * Q-format notation: a value "with IB integer bits" is an int32 whose real
 * value is raw / 2^(31 - IB).
 */
#ifndef TM_FIXED_H
#define TM_FIXED_H

#include <stdint.h>

#define TM_I32_MIN ((int32_t)0x80000000)
#define TM_I32_MAX ((int32_t)0x7fffffff)

/* Wrapping add/sub/shift: the reference code relies on two's complement wrap. */
static inline int32_t tm_wadd(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t tm_wsub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }
static inline int32_t tm_wshl(int32_t a, int s) { return (int32_t)((uint32_t)a << s); }

/* round(a * b / 2^31) with ties away from zero; saturates MIN*MIN. */
static inline int32_t tm_mul_hi(int32_t a, int32_t b)
{
    int64_t prod, biased;
    if (a == TM_I32_MIN && b == TM_I32_MIN) return TM_I32_MAX;
    prod = (int64_t)a * (int64_t)b;
    biased = prod + (prod >= 0 ? (int64_t)(1 << 30) : (int64_t)(1 - (1 << 30)));
    /* Division by 2^31 truncating toward zero, without a library call. */
    if (biased < 0) biased += (((int64_t)1) << 31) - 1;
    return (int32_t)(biased >> 31);
}

/* x / 2^e rounded to nearest, ties away from zero (0 <= e <= 31). */
static inline int32_t tm_round_shift(int32_t x, int e)
{
    int32_t mask, rem, thr;
    if (e <= 0) return x;
    mask = (int32_t)((((int64_t)1) << e) - 1);
    rem = x & mask;
    thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

/* x * multiplier * 2^shift, with multiplier a Q0.31 value in [0.5, 1). */
static inline int32_t tm_scale(int32_t x, int32_t mult, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return tm_round_shift(tm_mul_hi(tm_wshl(x, left), mult), right);
}

/* Multiply by 2^e with saturation (e > 0) or rounding (e < 0). */
static inline int32_t tm_mul_pot(int32_t x, int e)
{
    if (e > 0) {
        int32_t thr = (int32_t)((1u << (31 - e)) - 1u);
        if (x > thr) return TM_I32_MAX;
        if (x < -thr) return TM_I32_MIN;
        return tm_wshl(x, e);
    }
    if (e < 0) return tm_round_shift(x, -e);
    return x;
}

/* Change the integer-bit count of a fixed-point value from src to dst. */
static inline int32_t tm_rescale(int32_t x, int src_ib, int dst_ib)
{
    return tm_mul_pot(x, src_ib - dst_ib);
}

/* (a + b) / 2 rounded away from zero, computed in 64 bits. */
static inline int32_t tm_half_sum(int32_t a, int32_t b)
{
    int64_t s = (int64_t)a + (int64_t)b;
    return (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
}

int32_t tm_exp_neg(int32_t a, int ib);          /* exp(a) for a <= 0, result Q0.31 */
int32_t tm_recip_one_plus(int32_t a);           /* 1/(1+a) for a in [0,1), Q0.31 in/out */
int32_t tm_logistic_q(int32_t a, int ib);       /* 1/(1+exp(-a)), result Q0.31 */
int32_t tm_reciprocal(int32_t x, int ib, int *bits_over_unit);

/* Multiplier/shift pair for a positive real scale (frexp based). */
void tm_quantize_multiplier(double m, int32_t *mult, int *shift);

#endif
