/* Harness services: the guest side of protocol v1 (input block + UART lines, see harness.h), newlib
 * system calls (stdout/stderr to the UART, no files), SysTick instruction timing, stack painting. */
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------------------------------ UART */
/* The generated linker script names the UART of the emulated machine: kind and base address. */
extern const char __tm_uart_kind[], __tm_uart_base[];

enum { UART_CMSDK = 1, UART_STM32 = 2, UART_NRF52 = 3, UART_STM32F7 = 4 };
#define REG(off) (*(volatile uint32_t *)(uart_base + (off)))
#define SPIN_LIMIT 100000u

static uintptr_t uart_base;
static uint32_t uart_kind;

static void uart_init(void)
{
    uart_kind = (uint32_t)(uintptr_t)__tm_uart_kind;
    uart_base = (uintptr_t)__tm_uart_base;
    switch (uart_kind) {
    case UART_CMSDK: /* Arm CMSDK APB UART (MPS2): BAUDDIV, CTRL.TXEN */
        REG(0x10) = 16u;
        REG(0x08) = 1u;
        break;
    case UART_STM32: /* STM32F1/F2/F4 USART: CR1.UE | CR1.TE */
        REG(0x0C) = (1u << 13) | (1u << 3);
        break;
    case UART_STM32F7: /* STM32F7/H7 USART: CR1.TE | CR1.UE */
        REG(0x00) = (1u << 3) | 1u;
        break;
    case UART_NRF52: /* nRF52840 UARTE (EasyDMA): ENABLE = 8 */
        REG(0x500) = 8u;
        break;
    default:
        break;
    }
}

static void uart_putc(uint8_t c)
{
    uint32_t n = 0;
    switch (uart_kind) {
    case UART_CMSDK:
        while ((REG(0x04) & 1u) && ++n < SPIN_LIMIT) {
        }
        REG(0x00) = c;
        break;
    case UART_STM32:
        while (!(REG(0x00) & (1u << 7)) && ++n < SPIN_LIMIT) {
        }
        REG(0x04) = c;
        break;
    case UART_STM32F7:
        while (!(REG(0x1C) & (1u << 7)) && ++n < SPIN_LIMIT) {
        }
        REG(0x28) = c;
        break;
    default:
        break;
    }
}

/* UARTE transmits by DMA from RAM: TXD.PTR / TXD.MAXCNT, STARTTX, wait for EVENTS_ENDTX. */
static void uarte_write(const char *s, uint32_t n)
{
    static char dma[64]; /* in .bss, i.e. RAM, wherever s lives */
    while (n) {
        uint32_t k = n > sizeof dma ? (uint32_t)sizeof dma : n, spin = 0;
        memcpy(dma, s, k);
        REG(0x120) = 0u;                        /* EVENTS_ENDTX */
        REG(0x544) = (uint32_t)(uintptr_t)dma;  /* TXD.PTR */
        REG(0x548) = k;                         /* TXD.MAXCNT */
        REG(0x008) = 1u;                        /* TASKS_STARTTX */
        while (!REG(0x120) && ++spin < SPIN_LIMIT) {
        }
        REG(0x120) = 0u;
        s += k;
        n -= k;
    }
}

static void uart_write(const char *s, uint32_t n)
{
    uint32_t i;
    if (!uart_kind) uart_init();
    if (uart_kind == UART_NRF52) {
        uarte_write(s, n);
        return;
    }
    for (i = 0; i < n; ++i) uart_putc((uint8_t)s[i]);
}

/* ----------------------------------------------------------------------------------------- CRC-32 */
/* IEEE 802.3 CRC-32 (reflected, polynomial 0xEDB88320), the one Python's zlib.crc32 computes. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t tm_crc32(uint32_t crc, const void *data, uint32_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

/* ------------------------------------------------------------------------------------ line framing */
static const char HEX[] = "0123456789abcdef";

static void emit_framed(char *line, uint32_t n)
{
    /* line holds n bytes without '\n'; appends " *XXXXXXXX\n" (the buffer has room for 11 more). */
    uint32_t crc = tm_crc32(0, line, n), i;
    line[n++] = ' ';
    line[n++] = '*';
    for (i = 0; i < 8; ++i) line[n++] = HEX[(crc >> (28 - 4 * i)) & 15u];
    line[n++] = '\n';
    uart_write(line, n);
}

#define LINE_MAX 240u

void tm_report(const char *fmt, ...)
{
    char line[LINE_MAX + 12];
    va_list ap;
    int n;
    memcpy(line, "TM:", 3);
    va_start(ap, fmt);
    n = vsnprintf(line + 3, LINE_MAX - 3, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((uint32_t)n > LINE_MAX - 4) n = (int)(LINE_MAX - 4);
    emit_framed(line, 3u + (uint32_t)n);
}

static uint32_t out_total, out_crc;

void tm_output_write(const void *data, uint32_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    char line[LINE_MAX + 12];
    out_crc = tm_crc32(out_crc, p, n);
    out_total += n;
    while (n) {
        uint32_t k = n > 48u ? 48u : n, i, len = 5;
        memcpy(line, "TM:D ", 5);
        for (i = 0; i < k; ++i) {
            line[len++] = HEX[p[i] >> 4];
            line[len++] = HEX[p[i] & 15u];
        }
        emit_framed(line, len);
        p += k;
        n -= k;
    }
}

/* stdout / stderr: whole lines only.  A stdout line starting with "TM:" is framed (the mains print their
 * TM: lines with printf); a stderr line (e.g. TFLM's log, which can quote strings from the model) that
 * starts with "TM:" is defused, so model-controlled text can never forge a protocol line. */
typedef struct {
    char buf[LINE_MAX + 12];
    uint32_t n;
} line_buf;

static line_buf out_line[2];

static void flush_line(int fd)
{
    line_buf *lb = &out_line[fd - 1];
    if (lb->n >= 3 && memcmp(lb->buf, "TM:", 3) == 0) {
        if (fd == 1) {
            emit_framed(lb->buf, lb->n);
            lb->n = 0;
            return;
        }
        lb->buf[2] = '?';
    }
    lb->buf[lb->n++] = '\n';
    uart_write(lb->buf, lb->n);
    lb->n = 0;
}

static void console_write(int fd, const char *s, uint32_t n)
{
    line_buf *lb = &out_line[fd - 1];
    uint32_t i;
    for (i = 0; i < n; ++i) {
        if (s[i] == '\n' || s[i] == '\r') {
            if (s[i] == '\n') flush_line(fd);
            continue;
        }
        lb->buf[lb->n++] = s[i];
        if (lb->n >= LINE_MAX) flush_line(fd);
    }
}

/* ------------------------------------------------------------------------------------- input block */
static const tm_input_header *input_hdr;

static int input_error(const char *msg)
{
    tm_report("ERROR stage=input code=6 op=-1 opname=- msg=%s", msg);
    return 6;
}

int tm_input_open(void)
{
    const tm_input_header *h = (const tm_input_header *)(const void *)__tm_input_start;
    uint64_t cap = (uint64_t)(uintptr_t)__tm_input_end - (uint64_t)(uintptr_t)__tm_input_start;
    uint64_t samples_end;
    if (cap < TM_INPUT_HEADER_BYTES) return input_error("no room for the input block on this board");
    if (h->magic != TM_INPUT_MAGIC) return input_error("no input block (magic TMIB missing)");
    if (tm_crc32(0, h, 60u) != h->header_crc) return input_error("input block header CRC mismatch");
    if (h->version != TM_INPUT_VERSION) return input_error("input block version is not 1");
    if (h->header_bytes != TM_INPUT_HEADER_BYTES || h->total_bytes < TM_INPUT_HEADER_BYTES ||
        (uint64_t)h->total_bytes > cap)
        return input_error("input block size out of bounds");
    if (h->model_offset < TM_INPUT_HEADER_BYTES || (h->model_offset & 15u) ||
        (uint64_t)h->model_offset + h->model_bytes > h->total_bytes)
        return input_error("model out of the input block's bounds");
    samples_end = (uint64_t)h->sample_count * h->sample_bytes + h->samples_offset;
    if (h->samples_offset < TM_INPUT_HEADER_BYTES || samples_end > h->total_bytes)
        return input_error("samples out of the input block's bounds");
    if (tm_crc32(0, (const uint8_t *)h + h->header_bytes, h->total_bytes - h->header_bytes) != h->payload_crc)
        return input_error("input block payload CRC mismatch");
    input_hdr = h;
    return 0;
}

const uint8_t *tm_input_model(uint32_t *len)
{
    if (!input_hdr) {
        *len = 0;
        return 0;
    }
    *len = input_hdr->model_bytes;
    return (const uint8_t *)input_hdr + input_hdr->model_offset;
}

uint32_t tm_input_count(void) { return input_hdr ? input_hdr->sample_count : 0u; }
uint32_t tm_input_sample_bytes(void) { return input_hdr ? input_hdr->sample_bytes : 0u; }

const uint8_t *tm_input_sample(uint32_t i)
{
    if (!input_hdr || i >= input_hdr->sample_count) return 0;
    return (const uint8_t *)input_hdr + input_hdr->samples_offset + i * input_hdr->sample_bytes;
}

/* --------------------------------------------------------------------------------- end of the run */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)

static void halt(void) __attribute__((noreturn));
static void halt(void)
{
    SYST_CSR = 0;
    __asm__ volatile("cpsid i" ::: "memory");
    for (;;) __asm__ volatile("wfi");
}

void tm_finish(int status)
{
    fflush(stdout);
    fflush(stderr);
    if (out_line[0].n) flush_line(1);
    if (out_line[1].n) flush_line(2);
    tm_report("END status=%d out_bytes=%lu out_crc=%08lx", status, (unsigned long)out_total,
              (unsigned long)out_crc);
    halt();
}

void tm_fault(const char *what)
{
    /* no stdio here: the fault may have hit inside it */
    char line[64];
    uint32_t n = 0;
    const char *p;
    for (p = "TM:FAULT "; *p; ++p) line[n++] = *p;
    for (p = what; *p && n < 40; ++p) line[n++] = *p;
    emit_framed(line, n);
    n = 0;
    for (p = "TM:END status=99 out_bytes=0 out_crc=00000000"; *p; ++p) line[n++] = *p;
    emit_framed(line, n);
    halt();
}

/* ----------------------------------------------------------------- newlib system calls (nosys) */
extern uint8_t __heap_start[], __heap_limit[];

int _write(int fd, const char *buf, int len);
int _read(int fd, char *buf, int len);
int _open(const char *name, int flags, ...);
int _close(int fd);
int _lseek(int fd, int off, int whence);
int _fstat(int fd, struct stat *st);
int _isatty(int fd);
void *_sbrk(ptrdiff_t incr);
void _exit(int status);

int _write(int fd, const char *buf, int len)
{
    if (len < 0) return -1;
    if (fd == 1 || fd == 2) {
        console_write(fd, buf, (uint32_t)len);
        return len;
    }
    errno = EBADF;
    return -1;
}

/* No files: the guest's only input is the input block, its only output the UART. */
int _read(int fd, char *buf, int len)
{
    (void)fd;
    (void)buf;
    (void)len;
    errno = EBADF;
    return -1;
}

int _open(const char *name, int flags, ...)
{
    (void)name;
    (void)flags;
    errno = ENOENT;
    return -1;
}

int _close(int fd) { return (fd >= 0 && fd <= 2) ? 0 : -1; }
int _lseek(int fd, int off, int whence) { (void)fd; (void)off; (void)whence; errno = ESPIPE; return -1; }

int _fstat(int fd, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_mode = fd <= 2 ? S_IFCHR : S_IFREG;
    return 0;
}

int _isatty(int fd) { return fd >= 0 && fd <= 2; }

void *_sbrk(ptrdiff_t incr)
{
    static uint8_t *brk = __heap_start;
    uint8_t *old = brk;
    if (incr < 0 || (uintptr_t)(__heap_limit - brk) < (uintptr_t)incr) {
        errno = ENOMEM;
        return (void *)-1;
    }
    brk += incr;
    return old;
}

void _exit(int status) { tm_finish(status); }

/* ---------------------------------------------------------------------------------------- timing */
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

/* newlib-nano's printf has no 64-bit conversions: decimal text of a uint64_t. */
static const char *u64s(char *buf, uint64_t v)
{
    char *p = buf + 20;
    *p = 0;
    do {
        *--p = (char)('0' + (unsigned)(v % 10u));
        v /= 10u;
    } while (v);
    return p;
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
    tm_report("CAL loop_instructions=200000 ticks=%lu overhead=%lu", (unsigned long)(t1 - t0 - overhead),
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
    char a[21], b[21], c[21];
    tm_report("RESULT samples=%lu ticks_total=%s ticks_min=%s ticks_max=%s stack=%lu", (unsigned long)s->samples,
              u64s(a, s->total), u64s(b, s->samples ? s->tmin : 0), u64s(c, s->tmax), (unsigned long)s->stack);
}
