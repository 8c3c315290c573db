/* tinyml-rt: a small int8 inference runtime for TFLite flatbuffers.
 *
 * The model bytes are used in place (weights are never copied).  All memory
 * the runtime needs comes from one caller-provided arena: per-tensor and
 * per-operator bookkeeping is taken from its top ("persistent"), and the
 * activation tensors are placed at its bottom by a greedy offset planner
 * driven by tensor lifetimes.
 */
#ifndef TM_RUNTIME_H
#define TM_RUNTIME_H

#include <stdint.h>

#include "tm_flatbuf.h"

#define TM_MAX_DIMS 6
#define TM_ALIGN 16u

/* TFLite TensorType values used here. */
enum {
    TM_FLOAT32 = 0,
    TM_INT32 = 2,
    TM_UINT8 = 3,
    TM_INT64 = 4,
    TM_BOOL = 6,
    TM_INT16 = 7,
    TM_INT8 = 9
};

/* TFLite BuiltinOperator values used here. */
enum {
    TM_OP_ADD = 0,
    TM_OP_AVERAGE_POOL_2D = 1,
    TM_OP_CONCATENATION = 2,
    TM_OP_CONV_2D = 3,
    TM_OP_DEPTHWISE_CONV_2D = 4,
    TM_OP_DEQUANTIZE = 6,
    TM_OP_FULLY_CONNECTED = 9,
    TM_OP_LOGISTIC = 14,
    TM_OP_MAX_POOL_2D = 17,
    TM_OP_MUL = 18,
    TM_OP_RESHAPE = 22,
    TM_OP_SOFTMAX = 25,
    TM_OP_PAD = 34,
    TM_OP_MEAN = 40,
    TM_OP_TRANSPOSE = 39,
    TM_OP_SQUEEZE = 43,
    TM_OP_EXPAND_DIMS = 70,
    TM_OP_QUANTIZE = 114
};

typedef struct {
    uint8_t *data;          /* constant data in the model, or arena slot */
    uint32_t bytes;
    int32_t dims[TM_MAX_DIMS];
    uint8_t ndims;
    uint8_t type;
    uint8_t is_const;
    uint8_t used;
    float scale;            /* first (or only) quantization scale */
    int32_t zp;
    uint32_t qscales;       /* flatbuffer position of the scale vector */
    uint32_t n_qscales;
    int32_t first, last;    /* op indices of first write and last read */
    uint32_t offset;        /* arena offset of planned tensors */
} tm_tensor;

typedef struct {
    int32_t act_min, act_max;
    int32_t in_zp, out_zp, w_zp;
    int32_t *mult;          /* one per output channel (or a single one) */
    int32_t *shift;
    int32_t n_mult;
    int16_t stride_w, stride_h, dil_w, dil_h, pad_w, pad_h, depth_mult;
    int16_t filter_w, filter_h;
} tm_conv_params;

typedef struct {
    int32_t in1_off, in2_off, out_off;
    int32_t m1, m2, mo;
    int32_t s1, s2, so;
    int32_t left_shift;
    int32_t act_min, act_max;
} tm_arith_params;

typedef struct {
    int32_t mult;
    int32_t shift;
    int32_t limit;          /* softmax: diff_min; logistic: input radius */
    int32_t in_zp;
} tm_table_params;

typedef struct {
    int32_t mult;
    int32_t shift;
    int32_t n_axes;
    int32_t axes[TM_MAX_DIMS];
} tm_mean_params;

typedef struct {
    int32_t before[TM_MAX_DIMS];
    int32_t after[TM_MAX_DIMS];
    int32_t value;
} tm_pad_params;

typedef struct {
    int32_t mult;
    int32_t shift;
    int32_t axis;
    int32_t act_min, act_max;
} tm_misc_params;

typedef struct {
    int32_t perm[TM_MAX_DIMS];
    int32_t elsize;         /* bytes per element */
} tm_transpose_params;

typedef union {
    tm_conv_params conv;
    tm_transpose_params transpose;
    tm_arith_params arith;
    tm_table_params table;
    tm_mean_params mean;
    tm_pad_params pad;
    tm_misc_params misc;
} tm_params;

typedef struct {
    uint16_t code;
    uint16_t n_in, n_out;
    uint32_t in_vec, out_vec; /* flatbuffer positions of the int32 index vectors */
    uint32_t options;         /* builtin options table (0 when absent) */
    tm_params *p;
} tm_op;

typedef struct {
    tm_fb fb;
    uint32_t model_pos, subgraph;
    tm_tensor *tensors;
    uint32_t n_tensors;
    tm_op *ops;
    uint32_t n_ops;
    int32_t inputs[8], outputs[8];
    uint32_t n_inputs, n_outputs;
    uint8_t *arena;
    uint32_t arena_size;
    uint32_t head;       /* activation bytes planned at the bottom */
    uint32_t tail;       /* persistent bytes taken from the top */
    int err_op;
    char err[128];
} tm_runtime;

/* Status codes. */
#define TM_OK 0
#define TM_ERR_MODEL 1
#define TM_ERR_UNSUPPORTED 2
#define TM_ERR_ARENA 3
#define TM_ERR_EVAL 4

int tm_init(tm_runtime *rt, const uint8_t *model, uint32_t len, uint8_t *arena,
            uint32_t arena_size);
int tm_invoke(tm_runtime *rt);
const char *tm_op_name(int code);

/* Helpers shared with the kernels. */
int tm_fail(tm_runtime *rt, int code, const char *fmt, ...);
void *tm_persist(tm_runtime *rt, uint32_t bytes);
int32_t tm_op_input(tm_runtime *rt, const tm_op *op, uint32_t i);
int32_t tm_op_output(tm_runtime *rt, const tm_op *op, uint32_t i);
tm_tensor *tm_in(tm_runtime *rt, const tm_op *op, uint32_t i);   /* NULL when absent */
tm_tensor *tm_out(tm_runtime *rt, const tm_op *op, uint32_t i);
uint32_t tm_elements(const tm_tensor *t);
float tm_channel_scale(tm_runtime *rt, const tm_tensor *t, uint32_t c);
int tm_activation_range(tm_runtime *rt, int act, const tm_tensor *out, int32_t *lo, int32_t *hi);

/* Kernel entry points: prepare (once, at init) and eval (per invoke). */
int tm_prepare_op(tm_runtime *rt, tm_op *op);
int tm_eval_op(tm_runtime *rt, tm_op *op);

#endif
