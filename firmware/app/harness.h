/* Harness services shared by the tinyml-rt main (main.c) and the real-TFLM
 * main (tflm_main.cc): SysTick instruction timing, stack painting and the
 * "TM:" line protocol read by pytest_tinyml.emulate.run. */
#ifndef TM_HARNESS_H
#define TM_HARNESS_H

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

extern uint8_t __arena_start[], __arena_end[], __stack_limit[], __stack_top[];

void tm_ticks_start(void);
uint64_t tm_ticks(void);
/* Measures the timer-read overhead and a 200,000-instruction loop, prints the
 * TM:CAL line and returns the overhead in ticks. */
uint64_t tm_calibrate(void);
void tm_paint_stack(void);
uint32_t tm_stack_high_water(void);

/* Per-inference statistics. */
typedef struct {
    uint64_t overhead, total, tmin, tmax;
    uint32_t samples, stack;
} tm_stats;

void tm_stats_init(tm_stats *s, uint64_t overhead);
void tm_stats_add(tm_stats *s, uint64_t t0, uint64_t t1);
void tm_stats_print(const tm_stats *s);

#ifdef __cplusplus
}
#endif

#endif
