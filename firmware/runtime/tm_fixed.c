#include "tm_fixed.h"

#include <math.h>

void tm_quantize_multiplier(double m, int32_t *mult, int *shift)
{
    int e = 0;
    double frac;
    int64_t q;
    if (m == 0.0) {
        *mult = 0;
        *shift = 0;
        return;
    }
    frac = frexp(m, &e);
    q = (int64_t)round(frac * 2147483648.0);
    if (q == ((int64_t)1 << 31)) { /* mantissa rounded up to 1.0 */
        q /= 2;
        e += 1;
    }
    if (e < -31) { /* too small to represent: flush to zero */
        e = 0;
        q = 0;
    }
    *mult = (int32_t)q;
    *shift = e;
}

/* exp(a) for a in [-1/4, 0), a and result in Q0.31.  Fourth-order Taylor
 * polynomial around -1/8. */
static int32_t exp_quarter(int32_t a)
{
    const int32_t e_m1_8 = 1895147668;   /* exp(-1/8) in Q0.31 */
    const int32_t third = 715827883;     /* 1/3 in Q0.31 */
    int32_t x = tm_wadd(a, 1 << 28);     /* a + 1/8 */
    int32_t x2 = tm_mul_hi(x, x);
    int32_t x3 = tm_mul_hi(x2, x);
    int32_t x4 = tm_mul_hi(x2, x2);
    int32_t x4_4 = tm_round_shift(x4, 2);
    int32_t poly = tm_round_shift(tm_wadd(tm_mul_hi(tm_wadd(x4_4, x3), third), x2), 1);
    return tm_wadd(e_m1_8, tm_mul_hi(e_m1_8, tm_wadd(x, poly)));
}

int32_t tm_exp_neg(int32_t a, int ib)
{
    /* exp(-2^k) in Q0.31 for k = -2 .. 4 */
    static const int32_t factors[7] = {1672461947, 1302514674, 790015084, 290630308,
                                       39332535,   720401,     242};
    const int fb = 31 - ib;
    const int32_t quarter = (int32_t)1 << (fb - 2);
    int32_t mod_q = tm_wsub(a & (quarter - 1), quarter);
    int32_t result = exp_quarter(tm_rescale(mod_q, ib, 0));
    int32_t rest = tm_wsub(mod_q, a);
    int k;
    for (k = -2; k <= 4; ++k) {
        if (ib > k) {
            int bit = fb + k;
            if (rest & ((int32_t)1 << bit)) result = tm_mul_hi(result, factors[k + 2]);
        }
    }
    if (ib > 5) {
        int32_t limit = -((int32_t)1 << (36 - ib)); /* -32.0 */
        if (a < limit) result = 0;
    }
    if (a == 0) result = TM_I32_MAX;
    return result;
}

int32_t tm_recip_one_plus(int32_t a)
{
    /* Newton-Raphson on the half denominator, iterate in Q2.29. */
    const int32_t c48_17 = 1515870810;
    const int32_t c_m32_17 = -1010580540;
    const int32_t one_q2 = (int32_t)1 << 29;
    int32_t half = tm_half_sum(a, TM_I32_MAX);
    int32_t x = tm_wadd(c48_17, tm_mul_hi(half, c_m32_17));
    int i;
    for (i = 0; i < 3; ++i) {
        int32_t hx = tm_mul_hi(half, x);
        int32_t err = tm_wsub(one_q2, hx);
        x = tm_wadd(x, tm_rescale(tm_mul_hi(x, err), 4, 2));
    }
    /* x is 2/(1+a) in Q2.29; reinterpret as Q1.30 (halves it), then to Q0.31 */
    return tm_rescale(x, 1, 0);
}

int32_t tm_logistic_q(int32_t a, int ib)
{
    int32_t mag = a > 0 ? a : tm_wsub(0, a);
    int32_t pos = tm_recip_one_plus(tm_exp_neg(tm_wsub(0, mag), ib));
    int32_t neg = tm_wsub(TM_I32_MAX, pos);
    if (a == 0) return (int32_t)1 << 30;
    return a > 0 ? pos : neg;
}

int32_t tm_reciprocal(int32_t x, int ib, int *bits_over_unit)
{
    uint32_t ux = (uint32_t)x;
    int lz = ux ? __builtin_clz(ux) : 32;
    int32_t shifted;
    *bits_over_unit = ib - lz;
    shifted = (int32_t)((lz < 32 ? (ux << lz) : 0u) - 0x80000000u);
    return tm_recip_one_plus(shifted);
}
