/* Harness services shared by the tinyml-rt main (main.c) and the real-TFLM main (tflm_main.cc).
 *
 * Guest <-> host protocol v1 (no semihosting: the guest has no path to the host):
 *
 *  Input.  Before reset the emulator writes an input block into guest memory at __tm_input_start
 *  (QEMU: -device loader,force-raw=on; Renode: sysbus LoadBinary).  The linker script reserves
 *  [__tm_input_start, __tm_input_end) in the board's flash, after the firmware image.  Layout
 *  (little endian, 64-byte header, see tm_input_header below): magic "TMIB", version 1, total size,
 *  the .tflite model (16-byte aligned) and the input samples back to back; a CRC-32 over the header and
 *  one over the payload.  tm_input_open() validates magic, version, bounds (64-bit arithmetic) and both
 *  CRCs before anything is used.
 *
 *  Output.  Everything goes to the board's UART as text lines.  Lines that start with "TM:" end with
 *  " *XXXXXXXX", the CRC-32 (hex) of the line before " *".  Output tensors travel as "TM:D <hex>" lines;
 *  the run ends with "TM:END status=N out_bytes=N out_crc=XXXXXXXX", after which the firmware sleeps and
 *  the host stops the emulator.  Any other line (e.g. TFLM's log) is free text.
 *
 *  App-facing API (both mains):
 *    tm_input_open()          validate the block; 0 on success, else reports TM:ERROR stage=input
 *    tm_input_model(&len)     the model flatbuffer inside the block (16-byte aligned)
 *    tm_input_count()         number of samples;  tm_input_sample_bytes(): bytes per sample
 *    tm_input_sample(i)       pointer to sample i (all model inputs back to back)
 *    tm_output_write(p, n)    append n bytes of output (TM:D lines)
 *    tm_report(fmt, ...)      one "TM:" line (fmt without the "TM:" prefix and without '\n')
 *    tm_finish(status)        TM:END and stop (also called by exit() and the fault handlers)
 *  printf() goes to the UART too (a stdout line starting with "TM:" is framed like tm_report; a stderr
 *  line starting with "TM:" is defused to "TM?", so logged model strings cannot forge protocol lines).
 *  There are no files: fopen() fails. */
#ifndef TM_HARNESS_H
#define TM_HARNESS_H

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

extern uint8_t __arena_start[], __arena_end[], __stack_limit[], __stack_top[];
extern uint8_t __tm_input_start[], __tm_input_end[];

#define TM_INPUT_MAGIC 0x42494D54u /* "TMIB" */
#define TM_INPUT_VERSION 1u
#define TM_INPUT_HEADER_BYTES 64u

typedef struct {
    uint32_t magic, version, header_bytes, total_bytes;
    uint32_t model_offset, model_bytes;
    uint32_t samples_offset, sample_count, sample_bytes;
    uint32_t payload_crc; /* CRC-32 of bytes [header_bytes, total_bytes) */
    uint32_t reserved[5];
    uint32_t header_crc; /* CRC-32 of the 60 bytes before it */
} tm_input_header;

uint32_t tm_crc32(uint32_t crc, const void *data, uint32_t n);

int tm_input_open(void);
const uint8_t *tm_input_model(uint32_t *len);
uint32_t tm_input_count(void);
uint32_t tm_input_sample_bytes(void);
const uint8_t *tm_input_sample(uint32_t i);
void tm_output_write(const void *data, uint32_t n);
void tm_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tm_finish(int status) __attribute__((noreturn));
void tm_fault(const char *what) __attribute__((noreturn));
/* Non-null: the next CPU fault resumes at this function in thread mode instead of being reported (once; the
 * handler clears it). For probing code that may fault; see startup.c. */
extern void (*volatile tm_fault_resume)(void);

void tm_ticks_start(void);
uint64_t tm_ticks(void);
/* Measures the timer-read overhead and a 200,000-instruction loop, reports the
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
