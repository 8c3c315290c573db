/* Profiling markers for pytest-tinyml's QEMU instruction-class plugin
 * (pytest_tinyml/emulate/qemu_plugin/insn_classes.c).
 *
 * Each marker is one 16-bit no-op move between a high register and itself, which compilers do not emit.
 * The plugin recognises the encodings when it translates code, so it needs no register access (QEMU's
 * plugin API v1 has none). They cost one instruction each on the board and change no state. */
#ifndef TM_PROF_H
#define TM_PROF_H

#define TM_PROF_INFER_BEGIN() __asm__ volatile("mov r9, r9" ::: "memory")   /* 0x46c9 */
#define TM_PROF_OP_BEGIN() __asm__ volatile("mov r10, r10" ::: "memory")    /* 0x46d2 */
#define TM_PROF_OP_END() __asm__ volatile("mov r11, r11" ::: "memory")      /* 0x46db */
#define TM_PROF_INFER_END() __asm__ volatile("mov ip, ip" ::: "memory")     /* 0x46e4 */

#endif
