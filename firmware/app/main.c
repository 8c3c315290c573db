/* Test harness for the tinyml-rt runtime: runs the embedded model on every
 * sample of a host file.
 *
 * Input : tm_input.bin  -- N samples, each the raw bytes of all model inputs
 * Output: tm_output.bin -- N samples, each the raw bytes of all model outputs
 * Stdout: "TM:" lines parsed by pytest_tinyml.emulate (see run.py).
 * Files and stdout go through semihosting (librdimon).
 *
 * Timing: SysTick counts core clock ticks; under QEMU with -icount shift=0 the
 * virtual clock advances 1 ns per instruction, so ticks convert exactly to
 * instructions once the (emulated) core clock frequency is known. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "tm_runtime.h"

extern const unsigned char g_tm_model[];
extern const unsigned int g_tm_model_len;

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
    uint32_t in_bytes, out_bytes, i;
    uint64_t t0, t1;
    tm_stats st;
    FILE *fi, *fo;
    int rc = tm_init(&rt, g_tm_model, g_tm_model_len, __arena_start, arena_size);
    if (rc) {
        printf("TM:ERROR stage=init code=%d op=%d opname=%s msg=%s\n", rc, rt.err_op,
               rt.err_op >= 0 && rt.ops ? tm_op_name(rt.ops[rt.err_op].code) : "-", rt.err);
        return 3;
    }
    in_bytes = io_bytes(rt.inputs, rt.n_inputs);
    out_bytes = io_bytes(rt.outputs, rt.n_outputs);
    printf("TM:INFO runtime=tinyml arena=%lu activations=%lu persistent=%lu arena_avail=%lu tensors=%lu ops=%lu "
           "in_bytes=%lu out_bytes=%lu\n",
           (unsigned long)(rt.head + rt.tail), (unsigned long)rt.head, (unsigned long)rt.tail,
           (unsigned long)arena_size, (unsigned long)rt.n_tensors, (unsigned long)rt.n_ops,
           (unsigned long)in_bytes, (unsigned long)out_bytes);
    fi = fopen("tm_input.bin", "rb");
    fo = fopen("tm_output.bin", "wb");
    if (!fi || !fo) {
        printf("TM:ERROR stage=io code=0 op=-1 opname=- msg=cannot open tm_input.bin/tm_output.bin\n");
        return 4;
    }
    tm_stats_init(&st, tm_calibrate());
    for (;;) {
        uint32_t got = 0;
        for (i = 0; i < rt.n_inputs; ++i) {
            tm_tensor *t = &rt.tensors[rt.inputs[i]];
            got += (uint32_t)fread(t->data, 1, t->bytes, fi);
        }
        if (got == 0) break;
        if (got != in_bytes) {
            printf("TM:ERROR stage=io code=0 op=-1 opname=- msg=truncated input sample %lu\n",
                   (unsigned long)st.samples);
            return 4;
        }
        tm_paint_stack();
        t0 = tm_ticks();
        rc = tm_invoke(&rt);
        t1 = tm_ticks();
        if (rc) {
            printf("TM:ERROR stage=invoke code=%d op=%d opname=%s msg=%s\n", rc, rt.err_op,
                   tm_op_name(rt.ops[rt.err_op].code), rt.err);
            return 5;
        }
        tm_stats_add(&st, t0, t1);
        for (i = 0; i < rt.n_outputs; ++i) {
            tm_tensor *t = &rt.tensors[rt.outputs[i]];
            fwrite(t->data, 1, t->bytes, fo);
        }
    }
    fclose(fi);
    fclose(fo);
    tm_stats_print(&st);
    return 0;
}
