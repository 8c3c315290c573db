#include "tm_runtime.h"
#include "tm_prof.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Field ids of the TFLite schema tables that are read here. */
enum { MODEL_OPCODES = 1, MODEL_SUBGRAPHS = 2, MODEL_BUFFERS = 4 };
enum { OPCODE_DEPRECATED = 0, OPCODE_BUILTIN = 3 };
enum { SG_TENSORS = 0, SG_INPUTS = 1, SG_OUTPUTS = 2, SG_OPERATORS = 3 };
enum { T_SHAPE = 0, T_TYPE = 1, T_BUFFER = 2, T_QUANT = 4 };
enum { Q_SCALE = 2, Q_ZERO_POINT = 3 };
enum { OP_OPCODE = 0, OP_INPUTS = 1, OP_OUTPUTS = 2, OP_OPTIONS = 4 };
enum { BUF_DATA = 0, BUF_OFFSET = 1 };

const char *tm_op_name(int code)
{
    switch (code) {
    case TM_OP_ADD: return "ADD";
    case TM_OP_AVERAGE_POOL_2D: return "AVERAGE_POOL_2D";
    case TM_OP_CONCATENATION: return "CONCATENATION";
    case TM_OP_CONV_2D: return "CONV_2D";
    case TM_OP_DEPTHWISE_CONV_2D: return "DEPTHWISE_CONV_2D";
    case TM_OP_DEQUANTIZE: return "DEQUANTIZE";
    case TM_OP_FULLY_CONNECTED: return "FULLY_CONNECTED";
    case TM_OP_LOGISTIC: return "LOGISTIC";
    case TM_OP_MAX_POOL_2D: return "MAX_POOL_2D";
    case TM_OP_MUL: return "MUL";
    case TM_OP_RESHAPE: return "RESHAPE";
    case TM_OP_SOFTMAX: return "SOFTMAX";
    case TM_OP_PAD: return "PAD";
    case TM_OP_MEAN: return "MEAN";
    case TM_OP_SQUEEZE: return "SQUEEZE";
    case TM_OP_TRANSPOSE: return "TRANSPOSE";
    case TM_OP_EXPAND_DIMS: return "EXPAND_DIMS";
    case TM_OP_QUANTIZE: return "QUANTIZE";
    default: return "UNKNOWN";
    }
}

int tm_fail(tm_runtime *rt, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->err, sizeof rt->err, fmt, ap);
    va_end(ap);
    return code;
}

void *tm_persist(tm_runtime *rt, uint32_t bytes)
{
    uint32_t need = (bytes + 7u) & ~7u;
    if (need > rt->arena_size - rt->tail) return 0;
    rt->tail += need;
    return rt->arena + rt->arena_size - rt->tail;
}

static uint32_t type_size(uint8_t type)
{
    switch (type) {
    case TM_FLOAT32: case TM_INT32: return 4;
    case TM_INT64: return 8;
    case TM_INT16: return 2;
    case TM_INT8: case TM_UINT8: case TM_BOOL: return 1;
    default: return 0;
    }
}

uint32_t tm_elements(const tm_tensor *t)
{
    uint32_t n = 1, i;
    for (i = 0; i < t->ndims; ++i) n *= (uint32_t)t->dims[i];
    return n;
}

int32_t tm_op_input(tm_runtime *rt, const tm_op *op, uint32_t i)
{
    return i < op->n_in ? tm_fb_i32(&rt->fb, op->in_vec + 4 * i) : -1;
}

int32_t tm_op_output(tm_runtime *rt, const tm_op *op, uint32_t i)
{
    return i < op->n_out ? tm_fb_i32(&rt->fb, op->out_vec + 4 * i) : -1;
}

tm_tensor *tm_in(tm_runtime *rt, const tm_op *op, uint32_t i)
{
    int32_t idx = tm_op_input(rt, op, i);
    return (idx >= 0 && (uint32_t)idx < rt->n_tensors) ? &rt->tensors[idx] : 0;
}

tm_tensor *tm_out(tm_runtime *rt, const tm_op *op, uint32_t i)
{
    int32_t idx = tm_op_output(rt, op, i);
    return (idx >= 0 && (uint32_t)idx < rt->n_tensors) ? &rt->tensors[idx] : 0;
}

float tm_channel_scale(tm_runtime *rt, const tm_tensor *t, uint32_t c)
{
    if (t->n_qscales <= 1) return t->scale;
    if (c >= t->n_qscales) c = t->n_qscales - 1;
    return tm_fb_f32(&rt->fb, t->qscales + 4 * c);
}

/* Quantized clamp bounds for a fused activation, computed like TFLite does:
 * zero_point + round(f / scale) in single precision. */
int tm_activation_range(tm_runtime *rt, int act, const tm_tensor *out, int32_t *lo, int32_t *hi)
{
    int32_t qmin = -128, qmax = 127;
    float s = out->scale;
    if (out->type != TM_INT8) return tm_fail(rt, TM_ERR_UNSUPPORTED, "activation on non-int8 output");
    *lo = qmin;
    *hi = qmax;
    switch (act) {
    case 0: break;
    case 1: { /* RELU */
        int32_t z = out->zp + (int32_t)__builtin_roundf(0.0f / s);
        *lo = z > qmin ? z : qmin;
        break;
    }
    case 2: { /* RELU_N1_TO_1 */
        int32_t a = out->zp + (int32_t)__builtin_roundf(-1.0f / s);
        int32_t b = out->zp + (int32_t)__builtin_roundf(1.0f / s);
        *lo = a > qmin ? a : qmin;
        *hi = b < qmax ? b : qmax;
        break;
    }
    case 3: { /* RELU6 */
        int32_t a = out->zp + (int32_t)__builtin_roundf(0.0f / s);
        int32_t b = out->zp + (int32_t)__builtin_roundf(6.0f / s);
        *lo = a > qmin ? a : qmin;
        *hi = b < qmax ? b : qmax;
        break;
    }
    default:
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "fused activation %d not supported", act);
    }
    return TM_OK;
}

static int parse_tensor(tm_runtime *rt, uint32_t table, uint32_t buffers, uint32_t n_buffers,
                        tm_tensor *t, uint32_t index)
{
    tm_fb *fb = &rt->fb;
    uint32_t n_dims, shape, q, i, buf_index, tsize;
    shape = tm_fb_field_vector(fb, table, T_SHAPE, 4, &n_dims);
    if (n_dims > TM_MAX_DIMS)
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "tensor %u has %u dims (max %d)", (unsigned)index,
                       (unsigned)n_dims, TM_MAX_DIMS);
    t->ndims = (uint8_t)n_dims;
    for (i = 0; i < n_dims; ++i) {
        int32_t d = tm_fb_i32(fb, shape + 4 * i);
        if (d < 0) d = 1; /* unknown (batch) dimension: run with batch 1 */
        t->dims[i] = d;
    }
    t->type = (uint8_t)tm_fb_field_i8(fb, table, T_TYPE, 0);
    tsize = type_size(t->type);
    if (tsize == 0)
        return tm_fail(rt, TM_ERR_UNSUPPORTED, "tensor %u has unsupported type %d", (unsigned)index,
                       t->type);
    {
        /* 64-bit so that a crafted shape cannot wrap the byte count to a small number (the kernels
         * index up to the real element count and would write past the tensor). Every later product of
         * dims fits in int32 once the whole tensor is below 2 GiB. */
        uint64_t elems = 1;
        for (i = 0; i < n_dims; ++i) {
            elems *= (uint64_t)(uint32_t)t->dims[i];
            if (elems * tsize > 0x7FFFFFFFull)
                return tm_fail(rt, TM_ERR_MODEL, "tensor %u: shape has more than 2^31 bytes (32-bit overflow)",
                               (unsigned)index);
        }
        t->bytes = (uint32_t)elems * tsize;
    }
    t->first = -1;
    t->last = -1;
    t->scale = 0.0f;
    t->zp = 0;
    q = tm_fb_field_table(fb, table, T_QUANT);
    if (q) {
        uint32_t nz, zpv;
        t->qscales = tm_fb_field_vector(fb, q, Q_SCALE, 4, &t->n_qscales);
        zpv = tm_fb_field_vector(fb, q, Q_ZERO_POINT, 8, &nz);
        if (t->n_qscales) t->scale = tm_fb_f32(fb, t->qscales);
        if (nz) t->zp = (int32_t)tm_fb_i64(fb, zpv);
    }
    buf_index = tm_fb_field_u32(fb, table, T_BUFFER, 0);
    if (buf_index >= n_buffers) return tm_fail(rt, TM_ERR_MODEL, "tensor %u: bad buffer index", (unsigned)index);
    if (buf_index > 0) {
        uint32_t btab = tm_fb_vector_table(fb, buffers, n_buffers, buf_index);
        uint32_t n_data;
        uint32_t data = tm_fb_field_vector(fb, btab, BUF_DATA, 1, &n_data);
        if (tm_fb_field(fb, btab, BUF_OFFSET, 8) && tm_fb_i64(fb, tm_fb_field(fb, btab, BUF_OFFSET, 8)) > 1)
            return tm_fail(rt, TM_ERR_UNSUPPORTED, "buffers stored outside the flatbuffer (>2 GB models)");
        if (n_data > 0) {
            if (n_data < t->bytes)
                return tm_fail(rt, TM_ERR_MODEL, "tensor %u: buffer holds %u of %u bytes", (unsigned)index,
                               (unsigned)n_data, (unsigned)t->bytes);
            t->data = (uint8_t *)(fb->p + data);
            t->is_const = 1;
            if (tsize > 1 && ((uintptr_t)t->data & (tsize > 4 ? 3u : tsize - 1u)))
                return tm_fail(rt, TM_ERR_MODEL, "tensor %u: misaligned constant data (embed the model 16-byte aligned)",
                               (unsigned)index);
        }
    }
    return fb->err ? tm_fail(rt, TM_ERR_MODEL, "tensor %u: corrupt table", (unsigned)index) : TM_OK;
}

static void touch(tm_runtime *rt, int32_t idx, int32_t op_index, int is_output)
{
    tm_tensor *t;
    if (idx < 0 || (uint32_t)idx >= rt->n_tensors) return;
    t = &rt->tensors[idx];
    if (t->is_const) return;
    t->used = 1;
    if (t->first < 0 || (is_output && t->first > op_index)) t->first = op_index;
    if (!is_output && t->first < 0) t->first = 0;
    if (t->last < op_index) t->last = op_index;
}

static uint32_t align_up(uint32_t v) { return (v + TM_ALIGN - 1u) & ~(TM_ALIGN - 1u); }

/* Greedy offset planner: largest tensors first, each at the lowest offset
 * that does not overlap a placed tensor whose lifetime intersects its own. */
static int plan(tm_runtime *rt)
{
    uint32_t n = 0, i, j, k;
    uint32_t avail = rt->arena_size - rt->tail;
    uint32_t *order, *conf;
    uint32_t head = 0;
    for (i = 0; i < rt->n_tensors; ++i)
        if (rt->tensors[i].used) ++n;
    if ((uint64_t)n * 8u > avail)
        return tm_fail(rt, TM_ERR_ARENA, "arena too small for the planner scratch (%u bytes)", (unsigned)(n * 8u));
    order = (uint32_t *)(void *)rt->arena; /* temporary, below the persistent region */
    conf = order + n;
    for (i = 0, k = 0; i < rt->n_tensors; ++i)
        if (rt->tensors[i].used) order[k++] = i;
    for (i = 1; i < n; ++i) { /* insertion sort, size descending, stable */
        uint32_t v = order[i];
        uint32_t sz = align_up(rt->tensors[v].bytes);
        j = i;
        while (j > 0 && align_up(rt->tensors[order[j - 1]].bytes) < sz) {
            order[j] = order[j - 1];
            --j;
        }
        order[j] = v;
    }
    for (i = 0; i < n; ++i) {
        tm_tensor *t = &rt->tensors[order[i]];
        uint32_t size = align_up(t->bytes), off = 0, nc = 0;
        for (j = 0; j < i; ++j) { /* placed tensors alive at the same time, by offset */
            tm_tensor *o = &rt->tensors[order[j]];
            if (o->last < t->first || t->last < o->first) continue;
            k = nc++;
            while (k > 0 && rt->tensors[conf[k - 1]].offset > o->offset) {
                conf[k] = conf[k - 1];
                --k;
            }
            conf[k] = order[j];
        }
        for (j = 0; j < nc; ++j) {
            tm_tensor *o = &rt->tensors[conf[j]];
            uint32_t o_end = o->offset + align_up(o->bytes);
            if (off + size <= o->offset) break;
            if (o_end > off) off = o_end;
        }
        if (off > 0xFFFFFFFFu - size) /* off + size would wrap: more than 4 GiB of activations */
            return tm_fail(rt, TM_ERR_ARENA, "arena too small: activations need more than 4 GiB, have %u",
                           (unsigned)avail);
        t->offset = off;
        if (off + size > head) head = off + size;
    }
    rt->head = head;
    if (head > avail)
        return tm_fail(rt, TM_ERR_ARENA,
                       "arena too small: need %u bytes of activations + %u persistent, have %u (short by %u bytes)",
                       (unsigned)head, (unsigned)rt->tail, (unsigned)rt->arena_size, (unsigned)(head - avail));
    for (i = 0; i < rt->n_tensors; ++i)
        if (rt->tensors[i].used) rt->tensors[i].data = rt->arena + rt->tensors[i].offset;
    return TM_OK;
}

int tm_init(tm_runtime *rt, const uint8_t *model, uint32_t len, uint8_t *arena, uint32_t arena_size)
{
    tm_fb *fb = &rt->fb;
    uint32_t n_sub, subs, n_codes, codes, n_buf, bufs, n_t, tens, n_ops, opsv, i, j, v, nv;
    int rc;
    memset(rt, 0, sizeof *rt);
    rt->err_op = -1;
    rt->arena = arena;
    rt->arena_size = arena_size & ~(TM_ALIGN - 1u);
    if (((uintptr_t)model & 15u) != 0)
        return tm_fail(rt, TM_ERR_MODEL, "model array is not 16-byte aligned");
    tm_fb_init(fb, model, len);
    rt->model_pos = tm_fb_root(fb);
    if (fb->err || len < 8 || memcmp(model + 4, "TFL3", 4) != 0)
        return tm_fail(rt, TM_ERR_MODEL, "not a TFLite flatbuffer (identifier TFL3 missing)");
    subs = tm_fb_field_vector(fb, rt->model_pos, MODEL_SUBGRAPHS, 4, &n_sub);
    codes = tm_fb_field_vector(fb, rt->model_pos, MODEL_OPCODES, 4, &n_codes);
    bufs = tm_fb_field_vector(fb, rt->model_pos, MODEL_BUFFERS, 4, &n_buf);
    if (fb->err || n_sub < 1) return tm_fail(rt, TM_ERR_MODEL, "model has no subgraph");
    rt->subgraph = tm_fb_vector_table(fb, subs, n_sub, 0);
    tens = tm_fb_field_vector(fb, rt->subgraph, SG_TENSORS, 4, &n_t);
    opsv = tm_fb_field_vector(fb, rt->subgraph, SG_OPERATORS, 4, &n_ops);
    if (fb->err) return tm_fail(rt, TM_ERR_MODEL, "corrupt subgraph table");

    rt->n_tensors = n_t;
    rt->tensors = (tm_tensor *)tm_persist(rt, n_t * (uint32_t)sizeof(tm_tensor));
    rt->n_ops = n_ops;
    rt->ops = (tm_op *)tm_persist(rt, n_ops * (uint32_t)sizeof(tm_op));
    if ((n_t && !rt->tensors) || (n_ops && !rt->ops))
        return tm_fail(rt, TM_ERR_ARENA, "arena too small for %u tensors / %u ops", (unsigned)n_t, (unsigned)n_ops);
    memset(rt->tensors, 0, n_t * sizeof(tm_tensor));
    memset(rt->ops, 0, n_ops * sizeof(tm_op));
    for (i = 0; i < n_t; ++i) {
        uint32_t tt = tm_fb_vector_table(fb, tens, n_t, i);
        rc = parse_tensor(rt, tt, bufs, n_buf, &rt->tensors[i], i);
        if (rc) return rc;
    }

    v = tm_fb_field_vector(fb, rt->subgraph, SG_INPUTS, 4, &nv);
    if (nv > 8) return tm_fail(rt, TM_ERR_UNSUPPORTED, "more than 8 model inputs");
    rt->n_inputs = nv;
    for (i = 0; i < nv; ++i) rt->inputs[i] = tm_fb_i32(fb, v + 4 * i);
    v = tm_fb_field_vector(fb, rt->subgraph, SG_OUTPUTS, 4, &nv);
    if (nv > 8) return tm_fail(rt, TM_ERR_UNSUPPORTED, "more than 8 model outputs");
    rt->n_outputs = nv;
    for (i = 0; i < nv; ++i) rt->outputs[i] = tm_fb_i32(fb, v + 4 * i);
    for (i = 0; i < rt->n_inputs; ++i) {
        int32_t idx = rt->inputs[i];
        if (idx < 0 || (uint32_t)idx >= n_t) return tm_fail(rt, TM_ERR_MODEL, "bad input tensor index");
        rt->tensors[idx].used = 1;
        rt->tensors[idx].first = 0;
        if (rt->tensors[idx].last < 0) rt->tensors[idx].last = 0;
    }

    for (i = 0; i < n_ops; ++i) {
        tm_op *op = &rt->ops[i];
        uint32_t ot = tm_fb_vector_table(fb, opsv, n_ops, i);
        uint32_t ci = tm_fb_field_u32(fb, ot, OP_OPCODE, 0);
        uint32_t ct;
        int32_t dep, bc, code;
        uint32_t nin, nout;
        if (ci >= n_codes) return tm_fail(rt, TM_ERR_MODEL, "op %u: bad opcode index", (unsigned)i);
        ct = tm_fb_vector_table(fb, codes, n_codes, ci);
        dep = tm_fb_field_i8(fb, ct, OPCODE_DEPRECATED, 0);
        bc = tm_fb_field_i32(fb, ct, OPCODE_BUILTIN, 0);
        code = dep > bc ? dep : bc;
        op->code = (uint16_t)code;
        op->in_vec = tm_fb_field_vector(fb, ot, OP_INPUTS, 4, &nin);
        op->out_vec = tm_fb_field_vector(fb, ot, OP_OUTPUTS, 4, &nout);
        op->n_in = (uint16_t)nin;
        op->n_out = (uint16_t)nout;
        op->options = tm_fb_field_table(fb, ot, OP_OPTIONS);
        if (fb->err) return tm_fail(rt, TM_ERR_MODEL, "op %u: corrupt operator table", (unsigned)i);
        for (j = 0; j < nin; ++j) touch(rt, tm_op_input(rt, op, j), (int32_t)i, 0);
        for (j = 0; j < nout; ++j) touch(rt, tm_op_output(rt, op, j), (int32_t)i, 1);
    }
    for (i = 0; i < rt->n_outputs; ++i) {
        int32_t idx = rt->outputs[i];
        if (idx < 0 || (uint32_t)idx >= n_t) return tm_fail(rt, TM_ERR_MODEL, "bad output tensor index");
        if (!rt->tensors[idx].is_const) {
            rt->tensors[idx].used = 1;
            rt->tensors[idx].last = (int32_t)n_ops;
            if (rt->tensors[idx].first < 0) rt->tensors[idx].first = 0;
        }
    }

    for (i = 0; i < n_ops; ++i) {
        rt->err_op = (int)i;
        rc = tm_prepare_op(rt, &rt->ops[i]);
        if (rc) return rc;
        if (fb->err) return tm_fail(rt, TM_ERR_MODEL, "corrupt options of %s", tm_op_name(rt->ops[i].code));
    }
    rt->err_op = -1;
    return plan(rt);
}

int tm_invoke(tm_runtime *rt)
{
    uint32_t i;
    TM_PROF_INFER_BEGIN();
    for (i = 0; i < rt->n_ops; ++i) {
        int rc;
        TM_PROF_OP_BEGIN();
        rc = tm_eval_op(rt, &rt->ops[i]);
        TM_PROF_OP_END();
        if (rc) {
            rt->err_op = (int)i;
            TM_PROF_INFER_END();
            return rc;
        }
    }
    TM_PROF_INFER_END();
    return TM_OK;
}
