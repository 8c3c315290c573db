/* Minimal Cortex-M startup: vector table, reset handler, fault reporting over the UART (harness.c).
 * No semihosting: the guest has no channel to the host other than its UART.
 * Works on ARMv6-M, ARMv7-M and ARMv8-M mainline. */
#include <stdint.h>
#include <stdlib.h>

#include "harness.h"

extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern int main(void);
extern void __libc_init_array(void);
void SysTick_Handler(void);

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

/* A firmware that probes something which may fault (tflm_main.cc's arena bisection: TFLM can write through
 * a wild pointer when an arena is just too small) sets this: a fault then resumes at that function in
 * thread mode, once, instead of being reported. Null (the default): every fault is reported and ends the run. */
void (*volatile tm_fault_resume)(void) = 0;

#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)

/* frame: the exception stack frame (r0-r3, r12, lr, pc, xPSR); reached by a branch from the handlers below,
 * so returning from here is the exception return. */
void tm_fault_entry(uint32_t *frame, uint32_t code)
{
    static const char *const names[] = {"hardfault", "memmanage", "busfault", "usagefault"};
    void (*resume)(void) = tm_fault_resume;
    if (resume != 0) {
        tm_fault_resume = 0;
        frame[6] = (uint32_t)(uintptr_t)resume & ~1u;          /* return address: the resume function */
        frame[7] = (frame[7] & (1u << 9)) | 0x01000000u;        /* xPSR: Thumb, no IT state, keep stack pad */
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__) || \
    defined(__ARM_ARCH_8_1M_MAIN__)
        SCB_CFSR = 0xFFFFFFFFu; /* write-one-to-clear the fault status */
        SCB_HFSR = 0xFFFFFFFFu;
#endif
        return;
    }
    tm_fault(names[code & 3u]);
}

/* Thumb-1 only (ARMv6-M too): pass the active stack's frame and the fault kind to tm_fault_entry. */
#define TM_FAULT_HANDLER(name, code)                                                                   \
    __attribute__((naked)) void name(void)                                                             \
    {                                                                                                  \
        __asm__ volatile("movs r0, #4\n\tmov r1, lr\n\ttst r0, r1\n\tbeq 1f\n\tmrs r0, psp\n\tb 2f\n"          \
                         "1:\n\tmrs r0, msp\n2:\n\tmovs r1, #" #code "\n\tldr r2, =tm_fault_entry\n\tbx r2\n\t.ltorg"); \
    }

TM_FAULT_HANDLER(HardFault_Handler, 0)
TM_FAULT_HANDLER(MemManage_Handler, 1)
TM_FAULT_HANDLER(BusFault_Handler, 2)
TM_FAULT_HANDLER(UsageFault_Handler, 3)
void Default_Handler(void) { tm_fault("unexpected interrupt"); }

void Reset_Handler(void)
{
    uint32_t *src = __data_load, *dst = __data_start;
    while (dst < __data_end) *dst++ = *src++;
    for (dst = __bss_start; dst < __bss_end;) *dst++ = 0;
#if defined(__ARM_FP)
    SCB_CPACR |= (0xFu << 20); /* full access to CP10/CP11 (FPU) */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    __libc_init_array();
    exit(main());
}

/* newlib's __libc_init_array calls these; no crti/crtn are linked. */
void _init(void) {}
void _fini(void) {}

__attribute__((section(".vectors"), used)) static void (*const vectors[])(void) = {
    (void (*)(void))(uintptr_t)__stack_top,
    Reset_Handler,
    Default_Handler,   /* NMI */
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    Default_Handler,   /* SVCall */
    Default_Handler,   /* DebugMonitor */
    0,
    Default_Handler,   /* PendSV */
    SysTick_Handler,
};
