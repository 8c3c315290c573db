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

void HardFault_Handler(void) { tm_fault("hardfault"); }
void MemManage_Handler(void) { tm_fault("memmanage"); }
void BusFault_Handler(void) { tm_fault("busfault"); }
void UsageFault_Handler(void) { tm_fault("usagefault"); }
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
