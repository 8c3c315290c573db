/* Operator kernels: int8 arithmetic reproducing the TFLite Micro reference
 * kernels bit for bit (see docs in firmware/README.md for the rules each
 * kernel follows).  prepare_* runs once at init and precomputes multipliers;
 * eval_* runs per inference. */
#include <math.h>
#include <string.h>

#include "tm_fixed.h"
#include "tm_runtime.h"

#define CLAMP(v, lo, hi) ((v) < (lo) ? (lo) : ((v) > (hi) ? (hi) : (v)))

/* Option-table field ids (TFLite schema). */
enum { CONV_PADDING = 0, CONV_STRIDE_W = 1, CONV_STRIDE_H = 2, CONV_ACT = 3, CONV_DIL_W = 4, CONV_DIL_H = 5 };
enum { DW_PADDING = 0, DW_STRIDE_W = 1, DW_STRIDE_H = 2, DW_MULT = 3, DW_ACT = 4, DW_DIL_W = 5, DW_DIL_H = 6 };
enum { FC_ACT = 0, FC_WEIGHTS_FORMAT = 1 };
enum { POOL_PADDING = 0, POOL_STRIDE_W = 1, POOL_STRIDE_H = 2, POOL_FW = 3, POOL_FH = 4, POOL_ACT = 5 };

static int need_int8(tm_runtime *rt, const tm_tensor *t, const char *what)
{
    if (!t) return tm_fail(rt, TM_ERR_MODEL, "missing %s tensor", what);
    if (t->type != TM_INT8) return tm_fail(rt, TM_ERR_UNSUPPORTED, "%s tensor is not int8 (type %d)", what, t->type);
    return TM_OK;
}

static int alloc_mult(tm_runtime *rt, tm_conv_params *c, int32_t n)
{
    c->n_mult = n;
    c->mult = (int32_t *)tm_persist(rt, (uint32_t)n * 4u);
    c->shift = (int32_t *)tm_persist(rt, (uint32_t)n * 4u);
    if (!c->mult || !c->shift) return tm_fail(rt, TM_ERR_ARENA, "arena too small for per-channel multipliers");
    return TM_OK;
}

static tm_params *alloc_params(tm_runtime *rt, tm_op *op)
{
    op->p = (tm_params *)tm_persist(rt, (uint32_t)sizeof(tm_params));
    if (op->p) memset(op->p, 0, sizeof(tm_params));
    return op->p;
}

/* Output size and leading padding for SAME (0) / VALID (1) padding. */
static int conv_out_size(int same, int in, int filt, int stride, int dil)
{
    int eff = (filt - 1) * dil + 1;
    if (stride <= 0) return 0;
    return same ? (in + stride - 1) / stride : (in + stride - eff) / stride;
}

static int conv_pad(int stride, int dil, int in, int filt, int out)
{
    int eff = (filt - 1) * dil + 1;
    int total = (out - 1) * stride + eff - in;
    return total > 0 ? total / 2 : 0;
}

static int spatial_setup(tm_runtime *rt, tm_conv_params *c, int padding, const tm_tensor *in,
                         const tm_tensor *out)
{
    int oh, ow;
    if (in->ndims != 4 || out->ndims != 4) return tm_fail(rt, TM_ERR_UNSUPPORTED, "expected 4-D input and output");
    if (padding != 0 && padding != 1) return tm_fail(rt, TM_ERR_UNSUPPORTED, "unknown padding %d", padding);
    if (c->stride_w <= 0 || c->stride_h <= 0 || c->dil_w <= 0 || c->dil_h <= 0)
        return tm_fail(rt, TM_ERR_MODEL, "invalid stride or dilation");
    oh = conv_out_size(padding == 0, in->dims[1], c->filter_h, c->stride_h, c->dil_h);
    ow = conv_out_size(padding == 0, in->dims[2], c->filter_w, c->stride_w, c->dil_w);
    if (oh != out->dims[1] || ow != out->dims[2])
        return tm_fail(rt, TM_ERR_MODEL, "output %dx%d does not match computed %dx%d", (int)out->dims[1],
                       (int)out->dims[2], oh, ow);
    c->pad_h = (int16_t)conv_pad(c->stride_h, c->dil_h, in->dims[1], c->filter_h, oh);
    c->pad_w = (int16_t)conv_pad(c->stride_w, c->dil_w, in->dims[2], c->filter_w, ow);
    return TM_OK;
}

/* Per-channel multipliers as TFLite computes them for CONV/DEPTHWISE and
 * per-channel FULLY_CONNECTED: double(in_scale) * double(w_scale[c]) / double(out_scale). */
static int per_channel_mult(tm_runtime *rt, tm_conv_params *c, const tm_tensor *in, const tm_tensor *w,
                            const tm_tensor *out, int32_t channels)
{
    int32_t i;
    int rc;
    if (w->n_qscales != 1 && (int32_t)w->n_qscales != channels)
        return tm_fail(rt, TM_ERR_MODEL, "filter has %u scales for %d channels", (unsigned)w->n_qscales, (int)channels);
    rc = alloc_mult(rt, c, channels);
    if (rc) return rc;
    for (i = 0; i < channels; ++i) {
        double eff = (double)in->scale * (double)tm_channel_scale(rt, w, (uint32_t)i) / (double)out->scale;
        int sh;
        tm_quantize_multiplier(eff, &c->mult[i], &sh);
        c->shift[i] = sh;
    }
    return TM_OK;
}

static int check_bias(tm_runtime *rt, const tm_tensor *b, int32_t channels)
{
    if (!b) return TM_OK;
    if (b->type != TM_INT32) return tm_fail(rt, TM_ERR_UNSUPPORTED, "bias type %d (need int32)", b->type);
    if ((int32_t)tm_elements(b) != channels) return tm_fail(rt, TM_ERR_MODEL, "bias size mismatch");
    return TM_OK;
}

/* ---------------------------------------------------------------- CONV_2D */
static int prepare_conv(tm_runtime *rt, tm_op *op, int depthwise)
{
    tm_tensor *in = tm_in(rt, op, 0), *w = tm_in(rt, op, 1), *b = tm_in(rt, op, 2), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    tm_conv_params *c;
    tm_fb *fb = &rt->fb;
    int rc, padding, act;
    int32_t channels;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    c = &p->conv;
    if ((rc = need_int8(rt, in, "input")) || (rc = need_int8(rt, w, "filter")) || (rc = need_int8(rt, out, "output")))
        return rc;
    if (w->ndims != 4) return tm_fail(rt, TM_ERR_MODEL, "filter must be 4-D");
    if (!w->is_const) return tm_fail(rt, TM_ERR_UNSUPPORTED, "non-constant filter");
    if (depthwise) {
        padding = tm_fb_field_i8(fb, op->options, DW_PADDING, 0);
        c->stride_w = (int16_t)tm_fb_field_i32(fb, op->options, DW_STRIDE_W, 0);
        c->stride_h = (int16_t)tm_fb_field_i32(fb, op->options, DW_STRIDE_H, 0);
        c->depth_mult = (int16_t)tm_fb_field_i32(fb, op->options, DW_MULT, 0);
        act = tm_fb_field_i8(fb, op->options, DW_ACT, 0);
        c->dil_w = (int16_t)tm_fb_field_i32(fb, op->options, DW_DIL_W, 1);
        c->dil_h = (int16_t)tm_fb_field_i32(fb, op->options, DW_DIL_H, 1);
        channels = w->dims[3];
        if (c->depth_mult <= 0 || in->dims[3] * c->depth_mult != channels)
            c->depth_mult = (int16_t)(in->dims[3] ? channels / in->dims[3] : 0);
        if (c->depth_mult <= 0 || in->dims[3] * c->depth_mult != channels)
            return tm_fail(rt, TM_ERR_MODEL, "depthwise channel mismatch");
    } else {
        padding = tm_fb_field_i8(fb, op->options, CONV_PADDING, 0);
        c->stride_w = (int16_t)tm_fb_field_i32(fb, op->options, CONV_STRIDE_W, 0);
        c->stride_h = (int16_t)tm_fb_field_i32(fb, op->options, CONV_STRIDE_H, 0);
        act = tm_fb_field_i8(fb, op->options, CONV_ACT, 0);
        c->dil_w = (int16_t)tm_fb_field_i32(fb, op->options, CONV_DIL_W, 1);
        c->dil_h = (int16_t)tm_fb_field_i32(fb, op->options, CONV_DIL_H, 1);
        channels = w->dims[0];
        if (w->dims[3] <= 0 || in->dims[3] % w->dims[3] != 0 || channels % (in->dims[3] / w->dims[3]) != 0)
            return tm_fail(rt, TM_ERR_MODEL, "conv channel/group mismatch");
    }
    if (out->dims[3] != channels) return tm_fail(rt, TM_ERR_MODEL, "output channels mismatch");
    c->filter_h = (int16_t)w->dims[1];
    c->filter_w = (int16_t)w->dims[2];
    if ((rc = spatial_setup(rt, c, padding, in, out))) return rc;
    if ((rc = check_bias(rt, b, channels))) return rc;
    c->in_zp = in->zp;
    c->out_zp = out->zp;
    if ((rc = per_channel_mult(rt, c, in, w, out, channels))) return rc;
    return tm_activation_range(rt, act, out, &c->act_min, &c->act_max);
}

static int eval_conv(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0), *w = tm_in(rt, op, 1), *b = tm_in(rt, op, 2);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_conv_params *c = &op->p->conv;
    const int8_t *x = (const int8_t *)in->data, *f = (const int8_t *)w->data;
    const int32_t *bias = b ? (const int32_t *)b->data : 0;
    int8_t *y = (int8_t *)out->data;
    const int N = in->dims[0], H = in->dims[1], W = in->dims[2], C = in->dims[3];
    const int OH = out->dims[1], OW = out->dims[2], OC = out->dims[3];
    const int KH = w->dims[1], KW = w->dims[2], FC = w->dims[3];
    const int per_group = OC / (C / FC);
    const int32_t in_off = -c->in_zp;
    int n, oy, ox, oc, ky, kx, ic;
    for (n = 0; n < N; ++n) {
        for (oy = 0; oy < OH; ++oy) {
            const int iy0 = oy * c->stride_h - c->pad_h;
            for (ox = 0; ox < OW; ++ox) {
                const int ix0 = ox * c->stride_w - c->pad_w;
                for (oc = 0; oc < OC; ++oc) {
                    const int8_t *fo = f + (size_t)oc * KH * KW * FC;
                    const int cbase = (oc / per_group) * FC;
                    int32_t acc = 0;
                    for (ky = 0; ky < KH; ++ky) {
                        const int iy = iy0 + ky * c->dil_h;
                        if (iy < 0 || iy >= H) continue;
                        for (kx = 0; kx < KW; ++kx) {
                            const int ix = ix0 + kx * c->dil_w;
                            const int8_t *xp, *fp;
                            if (ix < 0 || ix >= W) continue;
                            xp = x + (((size_t)n * H + iy) * W + ix) * C + cbase;
                            fp = fo + ((size_t)ky * KW + kx) * FC;
                            for (ic = 0; ic < FC; ++ic) acc += (int32_t)fp[ic] * ((int32_t)xp[ic] + in_off);
                        }
                    }
                    if (bias) acc += bias[oc];
                    acc = tm_scale(acc, c->mult[oc], c->shift[oc]) + c->out_zp;
                    acc = CLAMP(acc, c->act_min, c->act_max);
                    y[(((size_t)n * OH + oy) * OW + ox) * OC + oc] = (int8_t)acc;
                }
            }
        }
    }
    return TM_OK;
}

static int eval_depthwise(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0), *w = tm_in(rt, op, 1), *b = tm_in(rt, op, 2);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_conv_params *c = &op->p->conv;
    const int8_t *x = (const int8_t *)in->data, *f = (const int8_t *)w->data;
    const int32_t *bias = b ? (const int32_t *)b->data : 0;
    int8_t *y = (int8_t *)out->data;
    const int N = in->dims[0], H = in->dims[1], W = in->dims[2], C = in->dims[3];
    const int OH = out->dims[1], OW = out->dims[2], OC = out->dims[3];
    const int KH = w->dims[1], KW = w->dims[2], DM = c->depth_mult;
    const int32_t in_off = -c->in_zp;
    int n, oy, ox, ic, m, ky, kx;
    for (n = 0; n < N; ++n) {
        for (oy = 0; oy < OH; ++oy) {
            const int iy0 = oy * c->stride_h - c->pad_h;
            for (ox = 0; ox < OW; ++ox) {
                const int ix0 = ox * c->stride_w - c->pad_w;
                for (ic = 0; ic < C; ++ic) {
                    for (m = 0; m < DM; ++m) {
                        const int oc = ic * DM + m;
                        int32_t acc = 0;
                        for (ky = 0; ky < KH; ++ky) {
                            const int iy = iy0 + ky * c->dil_h;
                            if (iy < 0 || iy >= H) continue;
                            for (kx = 0; kx < KW; ++kx) {
                                const int ix = ix0 + kx * c->dil_w;
                                if (ix < 0 || ix >= W) continue;
                                acc += (int32_t)f[((size_t)ky * KW + kx) * OC + oc] *
                                       ((int32_t)x[(((size_t)n * H + iy) * W + ix) * C + ic] + in_off);
                            }
                        }
                        if (bias) acc += bias[oc];
                        acc = tm_scale(acc, c->mult[oc], c->shift[oc]) + c->out_zp;
                        acc = CLAMP(acc, c->act_min, c->act_max);
                        y[(((size_t)n * OH + oy) * OW + ox) * OC + oc] = (int8_t)acc;
                    }
                }
            }
        }
    }
    return TM_OK;
}

/* -------------------------------------------------------- FULLY_CONNECTED */
static int prepare_fc(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *w = tm_in(rt, op, 1), *b = tm_in(rt, op, 2), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    tm_conv_params *c;
    int rc, act;
    int32_t units, depth;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    c = &p->conv;
    if ((rc = need_int8(rt, in, "input")) || (rc = need_int8(rt, w, "weights")) || (rc = need_int8(rt, out, "output")))
        return rc;
    if (w->ndims != 2) return tm_fail(rt, TM_ERR_MODEL, "weights must be 2-D");
    if (tm_fb_field_i8(&rt->fb, op->options, FC_WEIGHTS_FORMAT, 0) != 0)
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "shuffled weights format");
    act = tm_fb_field_i8(&rt->fb, op->options, FC_ACT, 0);
    units = w->dims[0];
    depth = w->dims[1];
    if (out->ndims < 1 || out->dims[out->ndims - 1] != units)
        return tm_fail(rt, TM_ERR_MODEL, "output depth mismatch");
    if (depth <= 0 || tm_elements(in) % (uint32_t)depth != 0 ||
        tm_elements(in) / (uint32_t)depth != tm_elements(out) / (uint32_t)units)
        return tm_fail(rt, TM_ERR_MODEL, "input size is not a multiple of the weight depth");
    if ((rc = check_bias(rt, b, units))) return rc;
    c->in_zp = in->zp;
    c->out_zp = out->zp;
    if (w->n_qscales > 1) {
        c->w_zp = 0;
        if ((rc = per_channel_mult(rt, c, in, w, out, units))) return rc;
    } else {
        /* per-tensor: the input*weight scale product is formed in float first */
        float prod = in->scale * w->scale;
        double real = (double)prod / (double)out->scale;
        int sh;
        c->w_zp = w->zp;
        if ((rc = alloc_mult(rt, c, 1))) return rc;
        tm_quantize_multiplier(real, &c->mult[0], &sh);
        c->shift[0] = sh;
    }
    return tm_activation_range(rt, act, out, &c->act_min, &c->act_max);
}

static int eval_fc(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0), *w = tm_in(rt, op, 1), *b = tm_in(rt, op, 2);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_conv_params *c = &op->p->conv;
    const int8_t *x = (const int8_t *)in->data, *f = (const int8_t *)w->data;
    const int32_t *bias = b ? (const int32_t *)b->data : 0;
    int8_t *y = (int8_t *)out->data;
    const int units = w->dims[0], depth = w->dims[1];
    const int batches = (int)(tm_elements(out) / (uint32_t)units);
    const int32_t in_off = -c->in_zp, w_off = -c->w_zp;
    const int per_ch = c->n_mult > 1;
    int bt, u, d;
    for (bt = 0; bt < batches; ++bt) {
        const int8_t *xb = x + (size_t)bt * depth;
        for (u = 0; u < units; ++u) {
            const int8_t *fu = f + (size_t)u * depth;
            int32_t acc = 0;
            for (d = 0; d < depth; ++d) acc += ((int32_t)fu[d] + w_off) * ((int32_t)xb[d] + in_off);
            if (bias) acc += bias[u];
            acc = per_ch ? tm_scale(acc, c->mult[u], c->shift[u]) : tm_scale(acc, c->mult[0], c->shift[0]);
            acc += c->out_zp;
            acc = CLAMP(acc, c->act_min, c->act_max);
            y[(size_t)bt * units + u] = (int8_t)acc;
        }
    }
    return TM_OK;
}

/* ---------------------------------------------------------------- POOLING */
static int prepare_pool(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    tm_conv_params *c;
    tm_fb *fb = &rt->fb;
    int rc, padding, act;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    c = &p->conv;
    if ((rc = need_int8(rt, in, "input")) || (rc = need_int8(rt, out, "output"))) return rc;
    padding = tm_fb_field_i8(fb, op->options, POOL_PADDING, 0);
    c->stride_w = (int16_t)tm_fb_field_i32(fb, op->options, POOL_STRIDE_W, 0);
    c->stride_h = (int16_t)tm_fb_field_i32(fb, op->options, POOL_STRIDE_H, 0);
    c->filter_w = (int16_t)tm_fb_field_i32(fb, op->options, POOL_FW, 0);
    c->filter_h = (int16_t)tm_fb_field_i32(fb, op->options, POOL_FH, 0);
    act = tm_fb_field_i8(fb, op->options, POOL_ACT, 0);
    c->dil_w = c->dil_h = 1;
    if (c->filter_w <= 0 || c->filter_h <= 0) return tm_fail(rt, TM_ERR_MODEL, "invalid pool size");
    if ((rc = spatial_setup(rt, c, padding, in, out))) return rc;
    if (in->dims[3] != out->dims[3]) return tm_fail(rt, TM_ERR_MODEL, "pool channel mismatch");
    return tm_activation_range(rt, act, out, &c->act_min, &c->act_max);
}

static int eval_pool(tm_runtime *rt, tm_op *op, int is_max)
{
    const tm_tensor *in = tm_in(rt, op, 0);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_conv_params *c = &op->p->conv;
    const int8_t *x = (const int8_t *)in->data;
    int8_t *y = (int8_t *)out->data;
    const int N = in->dims[0], H = in->dims[1], W = in->dims[2], C = in->dims[3];
    const int OH = out->dims[1], OW = out->dims[2];
    int n, oy, ox, ch, fy, fx;
    for (n = 0; n < N; ++n) {
        for (oy = 0; oy < OH; ++oy) {
            for (ox = 0; ox < OW; ++ox) {
                const int iy0 = oy * c->stride_h - c->pad_h, ix0 = ox * c->stride_w - c->pad_w;
                const int fy0 = iy0 < 0 ? -iy0 : 0, fx0 = ix0 < 0 ? -ix0 : 0;
                const int fy1 = (H - iy0) < c->filter_h ? (H - iy0) : c->filter_h;
                const int fx1 = (W - ix0) < c->filter_w ? (W - ix0) : c->filter_w;
                for (ch = 0; ch < C; ++ch) {
                    int32_t acc = is_max ? -128 : 0;
                    int32_t count = 0;
                    for (fy = fy0; fy < fy1; ++fy) {
                        for (fx = fx0; fx < fx1; ++fx) {
                            int32_t v = x[(((size_t)n * H + iy0 + fy) * W + ix0 + fx) * C + ch];
                            if (is_max) {
                                if (v > acc) acc = v;
                            } else {
                                acc += v;
                            }
                            ++count;
                        }
                    }
                    if (!is_max) {
                        if (count == 0) return tm_fail(rt, TM_ERR_EVAL, "empty pooling window");
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    acc = CLAMP(acc, c->act_min, c->act_max);
                    y[(((size_t)n * OH + oy) * OW + ox) * C + ch] = (int8_t)acc;
                }
            }
        }
    }
    return TM_OK;
}

/* ---------------------------------------------------------------- SOFTMAX */
static int prepare_softmax(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    float beta;
    double real, radius;
    int rc, sh;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    if ((rc = need_int8(rt, in, "input")) || (rc = need_int8(rt, out, "output"))) return rc;
    if (out->zp != -128 || out->scale != 1.0f / 256.0f)
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "int8 softmax output must have zero point -128 and scale 1/256");
    beta = tm_fb_field_f32(&rt->fb, op->options, 0, 0.0f);
    real = (double)beta * (double)in->scale * (double)(1 << 26);
    if (real > 2147483647.0) real = 2147483647.0;
    tm_quantize_multiplier(real, &p->table.mult, &sh);
    if (sh < 0) return tm_fail(rt, TM_ERR_UNSUPPORTED, "softmax input scale * beta too small");
    p->table.shift = sh;
    radius = floor(31.0 * (double)(1 << 26) / ldexp(1.0, sh));
    p->table.limit = (int32_t)(-radius);
    return TM_OK;
}

static int eval_softmax(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_table_params *t = &op->p->table;
    const int8_t *x = (const int8_t *)in->data;
    int8_t *y = (int8_t *)out->data;
    const int depth = in->ndims ? in->dims[in->ndims - 1] : 1;
    const int rows = depth ? (int)(tm_elements(in) / (uint32_t)depth) : 0;
    int r, i;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + (size_t)r * depth;
        int8_t *yr = y + (size_t)r * depth;
        int32_t mx = -128, sum = 0, recip;
        int bits, expo;
        for (i = 0; i < depth; ++i)
            if (xr[i] > mx) mx = xr[i];
        for (i = 0; i < depth; ++i) {
            int32_t diff = xr[i] - mx;
            if (diff >= t->limit) {
                int32_t z = tm_mul_hi(tm_wshl(diff, t->shift), t->mult);
                sum = tm_wadd(sum, tm_rescale(tm_exp_neg(z, 5), 0, 12));
            }
        }
        recip = tm_reciprocal(sum, 12, &bits);
        expo = bits + 31 - 8;
        if (expo < 0 || expo > 31) return tm_fail(rt, TM_ERR_EVAL, "softmax exponent out of range");
        for (i = 0; i < depth; ++i) {
            int32_t diff = xr[i] - mx;
            if (diff >= t->limit) {
                int32_t z = tm_mul_hi(tm_wshl(diff, t->shift), t->mult);
                int32_t v = tm_round_shift(tm_mul_hi(recip, tm_exp_neg(z, 5)), expo) - 128;
                yr[i] = (int8_t)CLAMP(v, -128, 127);
            } else {
                yr[i] = -128;
            }
        }
    }
    return TM_OK;
}

/* --------------------------------------------------------------- LOGISTIC */
static int prepare_logistic(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    double real, frac;
    int64_t q;
    int rc, sh = 0;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    if ((rc = need_int8(rt, in, "input")) || (rc = need_int8(rt, out, "output"))) return rc;
    if (out->zp != -128) return tm_fail(rt, TM_ERR_UNSUPPORTED, "int8 logistic output zero point must be -128");
    real = (double)in->scale * (double)(1 << 27);
    frac = frexp(real, &sh);
    q = (int64_t)round(frac * 2147483648.0);
    /* No renormalisation here (unlike the other multipliers); a mantissa
     * rounded up to 2^31 wraps like the x86 conversion of the host runtime. */
    p->table.mult = (int32_t)(uint32_t)q;
    p->table.shift = sh;
    p->table.limit = (int32_t)floor(15.0 * (double)(1 << 27) / ldexp(1.0, sh));
    p->table.in_zp = in->zp;
    return TM_OK;
}

static int eval_logistic(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_table_params *t = &op->p->table;
    const int8_t *x = (const int8_t *)in->data;
    int8_t *y = (int8_t *)out->data;
    uint32_t i, n = tm_elements(in);
    for (i = 0; i < n; ++i) {
        int32_t v = (int32_t)x[i] - t->in_zp;
        if (v <= -t->limit) {
            y[i] = -128;
        } else if (v >= t->limit) {
            y[i] = 127;
        } else {
            int32_t q4 = tm_scale(v, t->mult, t->shift);
            int32_t r = tm_round_shift(tm_logistic_q(q4, 4), 23) - 128;
            y[i] = (int8_t)CLAMP(r, -128, 127);
        }
    }
    return TM_OK;
}

/* ---------------------------------------------------------------- ADD/MUL */
static int prepare_add(tm_runtime *rt, tm_op *op)
{
    tm_tensor *a = tm_in(rt, op, 0), *b = tm_in(rt, op, 1), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    tm_arith_params *q;
    double twice_max, r1, r2, ro;
    int rc, s;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    q = &p->arith;
    if ((rc = need_int8(rt, a, "input1")) || (rc = need_int8(rt, b, "input2")) || (rc = need_int8(rt, out, "output")))
        return rc;
    q->in1_off = -a->zp;
    q->in2_off = -b->zp;
    q->out_off = out->zp;
    q->left_shift = 20;
    twice_max = 2.0 * (double)(a->scale > b->scale ? a->scale : b->scale);
    r1 = (double)a->scale / twice_max;
    r2 = (double)b->scale / twice_max;
    ro = twice_max / ((double)(1 << 20) * (double)out->scale);
    tm_quantize_multiplier(r1, &q->m1, &s);
    q->s1 = s;
    tm_quantize_multiplier(r2, &q->m2, &s);
    q->s2 = s;
    tm_quantize_multiplier(ro, &q->mo, &s);
    q->so = s;
    return tm_activation_range(rt, tm_fb_field_i8(&rt->fb, op->options, 0, 0), out, &q->act_min, &q->act_max);
}

static int prepare_mul(tm_runtime *rt, tm_op *op)
{
    tm_tensor *a = tm_in(rt, op, 0), *b = tm_in(rt, op, 1), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    tm_arith_params *q;
    int rc, s;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    q = &p->arith;
    if ((rc = need_int8(rt, a, "input1")) || (rc = need_int8(rt, b, "input2")) || (rc = need_int8(rt, out, "output")))
        return rc;
    q->in1_off = -a->zp;
    q->in2_off = -b->zp;
    q->out_off = out->zp;
    tm_quantize_multiplier((double)a->scale * (double)b->scale / (double)out->scale, &q->mo, &s);
    q->so = s;
    return tm_activation_range(rt, tm_fb_field_i8(&rt->fb, op->options, 0, 0), out, &q->act_min, &q->act_max);
}

/* Right-aligned 6-D shapes and element strides, 0 on broadcast dimensions. */
static int broadcast_strides(const tm_tensor *t, const tm_tensor *out, int32_t st[TM_MAX_DIMS])
{
    int32_t d[TM_MAX_DIMS];
    int i, shift = TM_MAX_DIMS - t->ndims;
    int32_t s = 1;
    for (i = 0; i < TM_MAX_DIMS; ++i) d[i] = i < shift ? 1 : t->dims[i - shift];
    for (i = TM_MAX_DIMS - 1; i >= 0; --i) {
        int oi = i - (TM_MAX_DIMS - out->ndims);
        int32_t od = oi >= 0 ? out->dims[oi] : 1;
        if (d[i] != od && d[i] != 1) return 0;
        st[i] = d[i] == 1 ? 0 : s;
        s *= d[i];
    }
    return 1;
}

static int32_t add_one(const tm_arith_params *q, int32_t a, int32_t b)
{
    int32_t x1 = tm_wshl(a + q->in1_off, q->left_shift);
    int32_t x2 = tm_wshl(b + q->in2_off, q->left_shift);
    int32_t s1 = tm_scale(x1, q->m1, q->s1);
    int32_t s2 = tm_scale(x2, q->m2, q->s2);
    int32_t r = tm_scale(tm_wadd(s1, s2), q->mo, q->so) + q->out_off;
    return CLAMP(r, q->act_min, q->act_max);
}

static int32_t mul_one(const tm_arith_params *q, int32_t a, int32_t b)
{
    int32_t r = q->out_off + tm_scale((a + q->in1_off) * (b + q->in2_off), q->mo, q->so);
    return CLAMP(r, q->act_min, q->act_max);
}

static int eval_binary(tm_runtime *rt, tm_op *op, int is_add)
{
    const tm_tensor *a = tm_in(rt, op, 0), *b = tm_in(rt, op, 1);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_arith_params *q = &op->p->arith;
    const int8_t *xa = (const int8_t *)a->data, *xb = (const int8_t *)b->data;
    int8_t *y = (int8_t *)out->data;
    uint32_t n = tm_elements(out), i;
    if (tm_elements(a) == n && tm_elements(b) == n) {
        for (i = 0; i < n; ++i) y[i] = (int8_t)(is_add ? add_one(q, xa[i], xb[i]) : mul_one(q, xa[i], xb[i]));
    } else {
        int32_t sa[TM_MAX_DIMS], sb[TM_MAX_DIMS], od[TM_MAX_DIMS], idx[TM_MAX_DIMS];
        int k;
        if (!broadcast_strides(a, out, sa) || !broadcast_strides(b, out, sb))
            return tm_fail(rt, TM_ERR_EVAL, "shapes do not broadcast");
        for (k = 0; k < TM_MAX_DIMS; ++k) {
            int oi = k - (TM_MAX_DIMS - out->ndims);
            od[k] = oi >= 0 ? out->dims[oi] : 1;
            idx[k] = 0;
        }
        for (i = 0; i < n; ++i) {
            int32_t ia = 0, ib = 0;
            for (k = 0; k < TM_MAX_DIMS; ++k) {
                ia += idx[k] * sa[k];
                ib += idx[k] * sb[k];
            }
            y[i] = (int8_t)(is_add ? add_one(q, xa[ia], xb[ib]) : mul_one(q, xa[ia], xb[ib]));
            for (k = TM_MAX_DIMS - 1; k >= 0; --k) {
                if (++idx[k] < od[k]) break;
                idx[k] = 0;
            }
        }
    }
    return TM_OK;
}

/* ------------------------------------------------------------------- MEAN */
static int prepare_mean(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *ax = tm_in(rt, op, 1), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    tm_mean_params *m;
    uint32_t i, n_ax;
    int64_t count = 1;
    int rc, sh, j, k;
    int32_t mult;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    m = &p->mean;
    if ((rc = need_int8(rt, in, "input")) || (rc = need_int8(rt, out, "output"))) return rc;
    if (!ax || !ax->is_const || ax->type != TM_INT32) return tm_fail(rt, TM_ERR_UNSUPPORTED, "MEAN axis must be a constant int32 tensor");
    n_ax = tm_elements(ax);
    for (i = 0; i < n_ax; ++i) {
        int32_t a = ((const int32_t *)ax->data)[i];
        int dup = 0;
        if (a < 0) a += in->ndims;
        if (a < 0 || a >= in->ndims) return tm_fail(rt, TM_ERR_MODEL, "MEAN axis out of range");
        for (j = 0; j < m->n_axes; ++j) dup |= m->axes[j] == a;
        if (!dup) m->axes[m->n_axes++] = a;
    }
    for (j = 0; j < m->n_axes; ++j) count *= in->dims[m->axes[j]];
    tm_quantize_multiplier((double)in->scale / (double)out->scale, &mult, &sh);
    if (count > 0) {
        int lg = 63 - __builtin_clzll((unsigned long long)count);
        if (lg > 32) lg = 32;
        if (lg > 31 + sh) lg = 31 + sh;
        mult = (int32_t)((((int64_t)mult) << lg) / count);
        sh -= lg;
    }
    m->mult = mult;
    m->shift = sh;
    /* keep the axes sorted for the reduction loop */
    for (j = 1; j < m->n_axes; ++j)
        for (k = j; k > 0 && m->axes[k - 1] > m->axes[k]; --k) {
            int32_t t = m->axes[k];
            m->axes[k] = m->axes[k - 1];
            m->axes[k - 1] = t;
        }
    return TM_OK;
}

static int eval_mean(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_mean_params *m = &op->p->mean;
    const int8_t *x = (const int8_t *)in->data;
    int8_t *y = (int8_t *)out->data;
    int32_t stride[TM_MAX_DIMS], kd[TM_MAX_DIMS], ks[TM_MAX_DIMS], rd[TM_MAX_DIMS], rs[TM_MAX_DIMS];
    int32_t ki[TM_MAX_DIMS], ri[TM_MAX_DIMS];
    int nk = 0, nr = 0, d, j;
    int32_t s = 1, count = 1;
    uint32_t n_out = 1, o;
    (void)rt;
    for (d = in->ndims - 1; d >= 0; --d) {
        stride[d] = s;
        s *= in->dims[d];
    }
    for (d = 0; d < in->ndims; ++d) {
        int reduced = 0;
        for (j = 0; j < m->n_axes; ++j) reduced |= m->axes[j] == d;
        if (reduced) {
            rd[nr] = in->dims[d];
            rs[nr++] = stride[d];
            count *= in->dims[d];
        } else {
            kd[nk] = in->dims[d];
            ks[nk++] = stride[d];
            n_out *= (uint32_t)in->dims[d];
        }
    }
    for (j = 0; j < nk; ++j) ki[j] = 0;
    for (o = 0; o < n_out; ++o) {
        int32_t base = 0, sum = 0, v;
        uint32_t e;
        for (j = 0; j < nk; ++j) base += ki[j] * ks[j];
        for (j = 0; j < nr; ++j) ri[j] = 0;
        for (e = 0; e < (uint32_t)count; ++e) {
            int32_t off = base;
            for (j = 0; j < nr; ++j) off += ri[j] * rs[j];
            sum = tm_wadd(sum, x[off]);
            for (j = nr - 1; j >= 0; --j) {
                if (++ri[j] < rd[j]) break;
                ri[j] = 0;
            }
        }
        v = tm_scale(tm_wsub(sum, in->zp * count), m->mult, m->shift) + out->zp;
        y[o] = (int8_t)CLAMP(v, -128, 127);
        for (j = nk - 1; j >= 0; --j) {
            if (++ki[j] < kd[j]) break;
            ki[j] = 0;
        }
    }
    return TM_OK;
}

/* -------------------------------------------------------------------- PAD */
static int prepare_pad(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *pads = tm_in(rt, op, 1), *cv = tm_in(rt, op, 2), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    int rc, d;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    if ((rc = need_int8(rt, in, "input")) || (rc = need_int8(rt, out, "output"))) return rc;
    if (!pads || !pads->is_const || (pads->type != TM_INT32 && pads->type != TM_INT64) ||
        tm_elements(pads) != 2u * in->ndims)
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "PAD paddings must be a constant [rank, 2] int32/int64 tensor");
    if (in->ndims != out->ndims) return tm_fail(rt, TM_ERR_MODEL, "PAD rank mismatch");
    for (d = 0; d < in->ndims; ++d) {
        int32_t lo, hi;
        if (pads->type == TM_INT32) {
            lo = ((const int32_t *)pads->data)[2 * d];
            hi = ((const int32_t *)pads->data)[2 * d + 1];
        } else {
            int64_t v[2];
            memcpy(v, pads->data + 16 * d, 16);
            lo = (int32_t)v[0];
            hi = (int32_t)v[1];
        }
        if (lo < 0 || hi < 0 || in->dims[d] + lo + hi != out->dims[d])
            return tm_fail(rt, TM_ERR_MODEL, "PAD output shape mismatch");
        p->pad.before[d] = lo;
        p->pad.after[d] = hi;
    }
    if (cv) {
        if (!cv->is_const || cv->type != TM_INT8) return tm_fail(rt, TM_ERR_UNSUPPORTED, "PAD constant value must be int8 constant");
        p->pad.value = ((const int8_t *)cv->data)[0];
    } else {
        p->pad.value = out->zp;
    }
    return TM_OK;
}

static int eval_pad(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_pad_params *pp = &op->p->pad;
    const int8_t *x = (const int8_t *)in->data;
    int8_t *y = (int8_t *)out->data;
    int32_t ostride[TM_MAX_DIMS], idx[TM_MAX_DIMS];
    int nd = in->ndims, d;
    int32_t s = 1;
    uint32_t n = tm_elements(in), i;
    (void)rt;
    memset(y, (int8_t)pp->value, tm_elements(out));
    for (d = nd - 1; d >= 0; --d) {
        ostride[d] = s;
        s *= out->dims[d];
        idx[d] = 0;
    }
    for (i = 0; i < n; ++i) {
        int32_t off = 0;
        for (d = 0; d < nd; ++d) off += (idx[d] + pp->before[d]) * ostride[d];
        y[off] = x[i];
        for (d = nd - 1; d >= 0; --d) {
            if (++idx[d] < in->dims[d]) break;
            idx[d] = 0;
        }
    }
    return TM_OK;
}

/* ---------------------------------------------------------- CONCATENATION */
static int prepare_concat(tm_runtime *rt, tm_op *op)
{
    tm_tensor *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    uint32_t i;
    int rc, axis, d;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    if ((rc = need_int8(rt, out, "output"))) return rc;
    axis = tm_fb_field_i32(&rt->fb, op->options, 0, 0);
    if (axis < 0) axis += out->ndims;
    if (axis < 0 || axis >= out->ndims) return tm_fail(rt, TM_ERR_MODEL, "concatenation axis out of range");
    p->misc.axis = axis;
    for (i = 0; i < op->n_in; ++i) {
        tm_tensor *t = tm_in(rt, op, i);
        if ((rc = need_int8(rt, t, "input"))) return rc;
        if (t->ndims != out->ndims) return tm_fail(rt, TM_ERR_MODEL, "concatenation rank mismatch");
        for (d = 0; d < out->ndims; ++d)
            if (d != axis && t->dims[d] != out->dims[d]) return tm_fail(rt, TM_ERR_MODEL, "concatenation shape mismatch");
    }
    return tm_activation_range(rt, tm_fb_field_i8(&rt->fb, op->options, 1, 0), out, &p->misc.act_min, &p->misc.act_max);
}

static int eval_concat(tm_runtime *rt, tm_op *op)
{
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_misc_params *mp = &op->p->misc;
    int8_t *y = (int8_t *)out->data;
    uint32_t outer = 1, inner = 1, o, i, k, out_row;
    int d;
    for (d = 0; d < mp->axis; ++d) outer *= (uint32_t)out->dims[d];
    for (d = mp->axis + 1; d < out->ndims; ++d) inner *= (uint32_t)out->dims[d];
    out_row = inner * (uint32_t)out->dims[mp->axis];
    for (o = 0; o < outer; ++o) {
        int8_t *dst = y + (size_t)o * out_row;
        for (i = 0; i < op->n_in; ++i) {
            const tm_tensor *t = tm_in(rt, op, i);
            uint32_t chunk = inner * (uint32_t)t->dims[mp->axis];
            const int8_t *src = (const int8_t *)t->data + (size_t)o * chunk;
            if (t->zp == out->zp && t->scale == out->scale) {
                for (k = 0; k < chunk; ++k) dst[k] = (int8_t)CLAMP((int32_t)src[k], mp->act_min, mp->act_max);
            } else {
                /* requantize in single precision: round(q * s_in/s_out - zp_in * s_in/s_out) + zp_out */
                const float sc = t->scale * (1.0f / out->scale);
                const float bias = -(float)t->zp * sc;
                for (k = 0; k < chunk; ++k) {
                    float v = (float)src[k] * sc;
                    int32_t q = (int32_t)roundf(v + bias) + out->zp;
                    dst[k] = (int8_t)CLAMP(q, mp->act_min, mp->act_max);
                }
            }
            dst += chunk;
        }
    }
    return TM_OK;
}

/* ------------------------------------------------------ QUANTIZE/DEQUANTIZE */
static int prepare_quantize(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    int sh;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    if (!in || !out || out->type != TM_INT8 || (in->type != TM_FLOAT32 && in->type != TM_INT8))
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "QUANTIZE supports float32->int8 and int8->int8 only");
    if (out->n_qscales > 1) return tm_fail(rt, TM_ERR_UNSUPPORTED, "per-channel QUANTIZE output");
    if (in->type == TM_INT8) {
        tm_quantize_multiplier((double)in->scale / (double)out->scale, &p->misc.mult, &sh);
        p->misc.shift = sh;
    }
    return TM_OK;
}

static int eval_quantize(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0);
    tm_tensor *out = tm_out(rt, op, 0);
    int8_t *y = (int8_t *)out->data;
    uint32_t i, n = tm_elements(out);
    (void)rt;
    if (in->type == TM_FLOAT32) {
        const float *x = (const float *)in->data;
        const float s = out->scale;
        for (i = 0; i < n; ++i) {
            int32_t q = (int32_t)roundf(x[i] / s) + out->zp;
            y[i] = (int8_t)CLAMP(q, -128, 127);
        }
    } else {
        const int8_t *x = (const int8_t *)in->data;
        const tm_misc_params *mp = &op->p->misc;
        for (i = 0; i < n; ++i) {
            int32_t q = tm_scale((int32_t)x[i] - in->zp, mp->mult, mp->shift) + out->zp;
            y[i] = (int8_t)CLAMP(q, -128, 127);
        }
    }
    return TM_OK;
}

static int prepare_dequantize(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *out = tm_out(rt, op, 0);
    if (!in || !out || in->type != TM_INT8 || out->type != TM_FLOAT32)
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "DEQUANTIZE supports int8->float32 only");
    if (in->n_qscales > 1) return tm_fail(rt, TM_ERR_UNSUPPORTED, "per-channel DEQUANTIZE input");
    return TM_OK;
}

static int eval_dequantize(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0);
    tm_tensor *out = tm_out(rt, op, 0);
    const int8_t *x = (const int8_t *)in->data;
    float *y = (float *)out->data;
    const double s = (double)in->scale;
    uint32_t i, n = tm_elements(out);
    (void)rt;
    for (i = 0; i < n; ++i) y[i] = (float)(s * (double)((int32_t)x[i] - in->zp));
    return TM_OK;
}

/* ------------------------------------------------- RESHAPE and friends */
static int prepare_copy(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *out = tm_out(rt, op, 0);
    if (!in || !out) return tm_fail(rt, TM_ERR_MODEL, "missing tensor");
    if (in->bytes != out->bytes || in->type != out->type)
        return tm_fail(rt, TM_ERR_MODEL, "reshape changes the element count or type");
    return TM_OK;
}

static int eval_copy(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0);
    tm_tensor *out = tm_out(rt, op, 0);
    (void)rt;
    if (out->data != in->data) memmove(out->data, in->data, out->bytes);
    return TM_OK;
}

/* -------------------------------------------------------------- TRANSPOSE */
static int prepare_transpose(tm_runtime *rt, tm_op *op)
{
    tm_tensor *in = tm_in(rt, op, 0), *perm = tm_in(rt, op, 1), *out = tm_out(rt, op, 0);
    tm_params *p = alloc_params(rt, op);
    int32_t used = 0;
    int d;
    if (!p) return tm_fail(rt, TM_ERR_ARENA, "arena too small");
    if (!in || !out) return tm_fail(rt, TM_ERR_MODEL, "missing tensor");
    if (in->type != out->type || in->ndims != out->ndims)
        return tm_fail(rt, TM_ERR_MODEL, "TRANSPOSE changes the type or rank");
    if (in->type != TM_INT8 && in->type != TM_INT16 && in->type != TM_INT32 && in->type != TM_FLOAT32)
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "TRANSPOSE of type %d", in->type);
    if (!perm || !perm->is_const || perm->type != TM_INT32 || tm_elements(perm) != in->ndims)
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "TRANSPOSE permutation must be a constant int32 vector of the input rank");
    for (d = 0; d < in->ndims; ++d) {
        int32_t a = ((const int32_t *)perm->data)[d];
        if (a < 0) a += in->ndims;
        if (a < 0 || a >= in->ndims || (used & (1 << a))) return tm_fail(rt, TM_ERR_MODEL, "invalid permutation");
        used |= 1 << a;
        if (out->dims[d] != in->dims[a]) return tm_fail(rt, TM_ERR_MODEL, "TRANSPOSE output shape mismatch");
        p->transpose.perm[d] = a;
    }
    p->transpose.elsize = (int32_t)(in->bytes / (tm_elements(in) ? tm_elements(in) : 1u));
    return TM_OK;
}

static int eval_transpose(tm_runtime *rt, tm_op *op)
{
    const tm_tensor *in = tm_in(rt, op, 0);
    tm_tensor *out = tm_out(rt, op, 0);
    const tm_transpose_params *tp = &op->p->transpose;
    int32_t in_stride[TM_MAX_DIMS], step[TM_MAX_DIMS], idx[TM_MAX_DIMS];
    const int nd = out->ndims, es = tp->elsize;
    uint32_t n = tm_elements(out), i;
    int32_t s = 1, src = 0;
    int d;
    (void)rt;
    for (d = nd - 1; d >= 0; --d) {
        in_stride[d] = s;
        s *= in->dims[d];
    }
    for (d = 0; d < nd; ++d) { /* input offset step when output index d advances */
        step[d] = in_stride[tp->perm[d]];
        idx[d] = 0;
    }
    for (i = 0; i < n; ++i) {
        if (es == 1) out->data[i] = in->data[src];
        else memcpy(out->data + (size_t)i * (size_t)es, in->data + (size_t)src * (size_t)es, (size_t)es);
        for (d = nd - 1; d >= 0; --d) {
            src += step[d];
            if (++idx[d] < out->dims[d]) break;
            src -= step[d] * out->dims[d];
            idx[d] = 0;
        }
    }
    return TM_OK;
}

int tm_prepare_op(tm_runtime *rt, tm_op *op)
{
    switch (op->code) {
    case TM_OP_CONV_2D: return prepare_conv(rt, op, 0);
    case TM_OP_DEPTHWISE_CONV_2D: return prepare_conv(rt, op, 1);
    case TM_OP_FULLY_CONNECTED: return prepare_fc(rt, op);
    case TM_OP_MAX_POOL_2D:
    case TM_OP_AVERAGE_POOL_2D: return prepare_pool(rt, op);
    case TM_OP_SOFTMAX: return prepare_softmax(rt, op);
    case TM_OP_LOGISTIC: return prepare_logistic(rt, op);
    case TM_OP_ADD: return prepare_add(rt, op);
    case TM_OP_MUL: return prepare_mul(rt, op);
    case TM_OP_MEAN: return prepare_mean(rt, op);
    case TM_OP_PAD: return prepare_pad(rt, op);
    case TM_OP_CONCATENATION: return prepare_concat(rt, op);
    case TM_OP_QUANTIZE: return prepare_quantize(rt, op);
    case TM_OP_DEQUANTIZE: return prepare_dequantize(rt, op);
    case TM_OP_TRANSPOSE: return prepare_transpose(rt, op);
    case TM_OP_RESHAPE:
    case TM_OP_SQUEEZE:
    case TM_OP_EXPAND_DIMS: return prepare_copy(rt, op);
    default: return tm_fail(rt, TM_ERR_UNSUPPORTED, "operator code %d is not implemented", (int)op->code);
    }
}

int tm_eval_op(tm_runtime *rt, tm_op *op)
{
    switch (op->code) {
    case TM_OP_CONV_2D: return eval_conv(rt, op);
    case TM_OP_DEPTHWISE_CONV_2D: return eval_depthwise(rt, op);
    case TM_OP_FULLY_CONNECTED: return eval_fc(rt, op);
    case TM_OP_MAX_POOL_2D: return eval_pool(rt, op, 1);
    case TM_OP_AVERAGE_POOL_2D: return eval_pool(rt, op, 0);
    case TM_OP_SOFTMAX: return eval_softmax(rt, op);
    case TM_OP_LOGISTIC: return eval_logistic(rt, op);
    case TM_OP_ADD: return eval_binary(rt, op, 1);
    case TM_OP_MUL: return eval_binary(rt, op, 0);
    case TM_OP_MEAN: return eval_mean(rt, op);
    case TM_OP_PAD: return eval_pad(rt, op);
    case TM_OP_CONCATENATION: return eval_concat(rt, op);
    case TM_OP_QUANTIZE: return eval_quantize(rt, op);
    case TM_OP_DEQUANTIZE: return eval_dequantize(rt, op);
    case TM_OP_TRANSPOSE: return eval_transpose(rt, op);
    default: return eval_copy(rt, op);
    }
}
