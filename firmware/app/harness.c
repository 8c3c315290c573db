#include "harness.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define STACK_PATTERN 0xA5A5A5A5u

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { systick_wraps++; }

void tm_ticks_start(void)
{
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 0x7u; /* enable, interrupt, core clock */
}

uint64_t tm_ticks(void)
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

__attribute__((noinline)) void tm_paint_stack(void)
{
    uint32_t *p = (uint32_t *)(void *)__stack_limit;
    uint32_t *end = current_sp() - 32; /* leave this frame alone */
    while (p < end) *p++ = STACK_PATTERN;
}

uint32_t tm_stack_high_water(void)
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

uint64_t tm_calibrate(void)
{
    uint64_t t0, t1, overhead;
    tm_ticks_start();
    t0 = tm_ticks();
    t1 = tm_ticks();
    overhead = t1 - t0;
    t0 = tm_ticks();
    calibration_loop(100000u);
    t1 = tm_ticks();
    printf("TM:CAL loop_instructions=200000 ticks=%lu overhead=%lu\n", (unsigned long)(t1 - t0 - overhead),
           (unsigned long)overhead);
    return overhead;
}

void tm_stats_init(tm_stats *s, uint64_t overhead)
{
    s->overhead = overhead;
    s->total = 0;
    s->tmin = ~(uint64_t)0;
    s->tmax = 0;
    s->samples = 0;
    s->stack = 0;
}

void tm_stats_add(tm_stats *s, uint64_t t0, uint64_t t1)
{
    uint64_t dt = t1 - t0 - s->overhead;
    uint32_t h = tm_stack_high_water();
    if (h > s->stack) s->stack = h;
    s->total += dt;
    if (dt < s->tmin) s->tmin = dt;
    if (dt > s->tmax) s->tmax = dt;
    s->samples++;
}

void tm_stats_print(const tm_stats *s)
{
    printf("TM:RESULT samples=%lu ticks_total=%llu ticks_min=%llu ticks_max=%llu stack=%lu\n",
           (unsigned long)s->samples, (unsigned long long)s->total,
           (unsigned long long)(s->samples ? s->tmin : 0), (unsigned long long)s->tmax, (unsigned long)s->stack);
}
