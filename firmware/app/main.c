/* Test harness for the tinyml-rt runtime: runs the model of the input block on every sample in it.
 *
 * Input : the input block the emulator placed at __tm_input_start (model + N samples, see harness.h)
 * Output: "TM:" lines on the board's UART; the outputs of every sample as TM:D lines (protocol v1,
 *         parsed by pytest_tinyml.emulate.run).  No semihosting.
 *
 * Timing: SysTick counts core clock ticks; under QEMU with -icount shift=0 the virtual clock advances
 * 1 ns per instruction (under Renode 1 / MIPS us per instruction), so ticks convert exactly to
 * instructions once the emulated core clock is known. */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "tm_runtime.h"

static tm_runtime rt;

static uint32_t io_bytes(const int32_t *idx, uint32_t n)
{
    uint32_t i, total = 0;
    for (i = 0; i < n; ++i) total += rt.tensors[idx[i]].bytes;
    return total;
}

int main(void)
{
    uint32_t arena_size = (uint32_t)(__arena_end - __arena_start);
    uint32_t in_bytes, out_bytes, i, s, model_len;
    const uint8_t *model;
    uint64_t t0, t1;
    tm_stats st;
    int rc = tm_input_open();
    if (rc) return rc;
    model = tm_input_model(&model_len);
    rc = tm_init(&rt, model, model_len, __arena_start, arena_size);
    if (rc) {
        tm_report("ERROR stage=init code=%d op=%d opname=%s msg=%s", rc, rt.err_op,
                  rt.err_op >= 0 && rt.ops ? tm_op_name(rt.ops[rt.err_op].code) : "-", rt.err);
        return 3;
    }
    in_bytes = io_bytes(rt.inputs, rt.n_inputs);
    out_bytes = io_bytes(rt.outputs, rt.n_outputs);
    tm_report("INFO runtime=tinyml arena=%lu activations=%lu persistent=%lu arena_avail=%lu tensors=%lu ops=%lu "
              "in_bytes=%lu out_bytes=%lu",
              (unsigned long)(rt.head + rt.tail), (unsigned long)rt.head, (unsigned long)rt.tail,
              (unsigned long)arena_size, (unsigned long)rt.n_tensors, (unsigned long)rt.n_ops,
              (unsigned long)in_bytes, (unsigned long)out_bytes);
    if (tm_input_sample_bytes() != in_bytes) {
        tm_report("ERROR stage=io code=4 op=-1 opname=- msg=input block has %lu bytes per sample, the model takes %lu",
                  (unsigned long)tm_input_sample_bytes(), (unsigned long)in_bytes);
        return 4;
    }
    tm_stats_init(&st, tm_calibrate());
    for (s = 0; s < tm_input_count(); ++s) {
        const uint8_t *src = tm_input_sample(s);
        for (i = 0; i < rt.n_inputs; ++i) {
            tm_tensor *t = &rt.tensors[rt.inputs[i]];
            memcpy(t->data, src, t->bytes);
            src += t->bytes;
        }
        tm_paint_stack();
        t0 = tm_ticks();
        rc = tm_invoke(&rt);
        t1 = tm_ticks();
        if (rc) {
            tm_report("ERROR stage=invoke code=%d op=%d opname=%s msg=%s", rc, rt.err_op,
                      tm_op_name(rt.ops[rt.err_op].code), rt.err);
            return 5;
        }
        tm_stats_add(&st, t0, t1);
        for (i = 0; i < rt.n_outputs; ++i) {
            tm_tensor *t = &rt.tensors[rt.outputs[i]];
            tm_output_write(t->data, t->bytes);
        }
    }
    tm_stats_print(&st);
    return 0;
}
