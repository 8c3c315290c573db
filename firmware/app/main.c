/* Test harness: runs the embedded model on every sample of a host file.
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

#include "tm_runtime.h"

extern const unsigned char g_tm_model[];
extern const unsigned int g_tm_model_len;
extern uint8_t __arena_start[], __arena_end[], __stack_limit[], __stack_top[];

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define STACK_PATTERN 0xA5A5A5A5u

static tm_runtime rt;
static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { systick_wraps++; }

static void ticks_start(void)
{
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 0x7u; /* enable, interrupt, core clock */
}

static uint64_t ticks(void)
{
    uint32_t hi, lo;
    do {
        hi = systick_wraps;
        lo = SYST_CVR;
        if (SCB_ICSR & (1u << 26)) { /* wrapped, interrupt not yet taken */
            hi += 1;
            lo = SYST_CVR;
        }
    } while (hi != systick_wraps && !(SCB_ICSR & (1u << 26)));
    return ((uint64_t)hi << 24) + (0x00FFFFFFu - (lo & 0x00FFFFFFu));
}

static uint32_t *current_sp(void)
{
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

static __attribute__((noinline)) void paint_stack(void)
{
    uint32_t *p = (uint32_t *)(void *)__stack_limit;
    uint32_t *end = current_sp() - 32; /* leave this frame alone */
    while (p < end) *p++ = STACK_PATTERN;
}

static uint32_t stack_high_water(void)
{
    const uint32_t *p = (const uint32_t *)(void *)__stack_limit;
    while (p < (const uint32_t *)(void *)__stack_top && *p == STACK_PATTERN) ++p;
    return (uint32_t)(__stack_top - (const uint8_t *)p);
}

static void calibration_loop(uint32_t n)
{
    /* two instructions per iteration */
    __asm__ volatile(".syntax unified\n1: subs %0, %0, #1\n\tbne 1b" : "+l"(n) : : "cc");
}

static uint32_t io_bytes(const int32_t *idx, uint32_t n)
{
    uint32_t i, total = 0;
    for (i = 0; i < n; ++i) total += rt.tensors[idx[i]].bytes;
    return total;
}

int main(void)
{
    uint32_t arena_size = (uint32_t)(__arena_end - __arena_start);
    uint32_t in_bytes, out_bytes, samples = 0, i, hwm = 0;
    uint64_t total = 0, t0, t1, overhead, tmin = ~(uint64_t)0, tmax = 0;
    FILE *fi, *fo;
    int rc = tm_init(&rt, g_tm_model, g_tm_model_len, __arena_start, arena_size);
    if (rc) {
        printf("TM:ERROR stage=init code=%d op=%d opname=%s msg=%s\n", rc, rt.err_op,
               rt.err_op >= 0 && rt.ops ? tm_op_name(rt.ops[rt.err_op].code) : "-", rt.err);
        return 3;
    }
    in_bytes = io_bytes(rt.inputs, rt.n_inputs);
    out_bytes = io_bytes(rt.outputs, rt.n_outputs);
    printf("TM:INFO arena=%lu activations=%lu persistent=%lu arena_avail=%lu tensors=%lu ops=%lu in_bytes=%lu out_bytes=%lu\n",
           (unsigned long)(rt.head + rt.tail), (unsigned long)rt.head, (unsigned long)rt.tail,
           (unsigned long)arena_size, (unsigned long)rt.n_tensors, (unsigned long)rt.n_ops,
           (unsigned long)in_bytes, (unsigned long)out_bytes);
    fi = fopen("tm_input.bin", "rb");
    fo = fopen("tm_output.bin", "wb");
    if (!fi || !fo) {
        printf("TM:ERROR stage=io code=0 op=-1 opname=- msg=cannot open tm_input.bin/tm_output.bin\n");
        return 4;
    }
    ticks_start();
    t0 = ticks();
    t1 = ticks();
    overhead = t1 - t0;
    t0 = ticks();
    calibration_loop(100000u);
    t1 = ticks();
    printf("TM:CAL loop_instructions=200000 ticks=%lu overhead=%lu\n", (unsigned long)(t1 - t0 - overhead),
           (unsigned long)overhead);
    for (;;) {
        uint64_t dt;
        uint32_t got = 0;
        for (i = 0; i < rt.n_inputs; ++i) {
            tm_tensor *t = &rt.tensors[rt.inputs[i]];
            got += (uint32_t)fread(t->data, 1, t->bytes, fi);
        }
        if (got == 0) break;
        if (got != in_bytes) {
            printf("TM:ERROR stage=io code=0 op=-1 opname=- msg=truncated input sample %lu\n", (unsigned long)samples);
            return 4;
        }
        paint_stack();
        t0 = ticks();
        rc = tm_invoke(&rt);
        t1 = ticks();
        {
            uint32_t h = stack_high_water();
            if (h > hwm) hwm = h;
        }
        if (rc) {
            printf("TM:ERROR stage=invoke code=%d op=%d opname=%s msg=%s\n", rc, rt.err_op,
                   tm_op_name(rt.ops[rt.err_op].code), rt.err);
            return 5;
        }
        dt = t1 - t0 - overhead;
        total += dt;
        if (dt < tmin) tmin = dt;
        if (dt > tmax) tmax = dt;
        for (i = 0; i < rt.n_outputs; ++i) {
            tm_tensor *t = &rt.tensors[rt.outputs[i]];
            fwrite(t->data, 1, t->bytes, fo);
        }
        ++samples;
    }
    fclose(fi);
    fclose(fo);
    printf("TM:RESULT samples=%lu ticks_total=%llu ticks_min=%llu ticks_max=%llu stack=%lu\n",
           (unsigned long)samples, (unsigned long long)total, (unsigned long long)(samples ? tmin : 0),
           (unsigned long long)tmax, (unsigned long)hwm);
    return 0;
}
