// Test harness for real TensorFlow Lite Micro: the same protocol as main.c
// (tm_input.bin -> tm_output.bin, "TM:" lines), built from the files that
// pytest_tinyml.emulate.export() generates for a TFLM project:
//   model_data.h          g_model / g_model_len (16-byte aligned flatbuffer)
//   tinyml_op_resolver.h  TinyMLOpResolver + RegisterTinyMLOps()
//   tinyml_arena.h        TINYML_ARENA_SIZE (0: use all free RAM)
// Compiled by pytest_tinyml.emulate.tflm_build against TFLM sources it locates (never shipped).
// Before the samples run, the smallest arena that AllocateTensors() accepts is found by bisection
// (TM:ARENA line) and the samples run with that arena.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "harness.h"
#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tinyml_arena.h"

// tflm_resolver.cc: the model's MicroMutableOpResolver, with exactly its operators registered.
const tflite::MicroOpResolver* TinyMLCreateResolver();

#ifndef TINYML_ARENA_BISECT
#define TINYML_ARENA_BISECT 1
#endif

namespace {

// Placement-constructed, never destroyed: no static destructors to register (no __dso_handle needed
// without crtbegin.o).
alignas(tflite::MicroInterpreter) unsigned char g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

// Tears down the previous interpreter (if any) and builds a new one over the first ``size`` bytes of
// ``arena``; true when AllocateTensors() succeeds.
// Set in main() before the first allocate(): the op-boundary marker profiler (MarkerProfiler, below).
tflite::MicroProfilerInterface* g_profiler = nullptr;

bool allocate(const tflite::Model* model, const tflite::MicroOpResolver& resolver, uint8_t* arena, size_t size,
              tflite::MicroInterpreter** interp) {
  if (*interp != nullptr) (*interp)->~MicroInterpreter();
  *interp = new (g_interpreter_storage) tflite::MicroInterpreter(model, resolver, arena, size, nullptr, g_profiler);
  return (*interp)->AllocateTensors() == kTfLiteOk;
}

int fail(const char* stage, int code, const char* msg) {
  std::printf("TM:ERROR stage=%s code=%d op=-1 opname=- msg=%s\n", stage, code, msg);
  return code;
}

// Op boundaries for pytest-tinyml's QEMU instruction-class plugin (emulate/qemu_plugin/insn_classes.c):
// each marker is a 16-bit no-op move the plugin recognises by its encoding (see firmware/runtime/tm_prof.h,
// same encodings). TFLM calls BeginEvent/EndEvent around every operator's Invoke.
#define TM_PROF_INFER_BEGIN() __asm__ volatile("mov r9, r9" ::: "memory")
#define TM_PROF_OP_BEGIN() __asm__ volatile("mov r10, r10" ::: "memory")
#define TM_PROF_OP_END() __asm__ volatile("mov r11, r11" ::: "memory")
#define TM_PROF_INFER_END() __asm__ volatile("mov ip, ip" ::: "memory")

class MarkerProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    (void)tag;
    TM_PROF_OP_BEGIN();
    return 0;
  }
  void EndEvent(uint32_t event_handle) override {
    (void)event_handle;
    TM_PROF_OP_END();
  }
};

alignas(MarkerProfiler) unsigned char g_profiler_storage[sizeof(MarkerProfiler)];

}  // namespace

int main(void) {
  tflite::InitializeTarget();
  uintptr_t start = (reinterpret_cast<uintptr_t>(__arena_start) + 15u) & ~static_cast<uintptr_t>(15u);
  uint8_t* arena = reinterpret_cast<uint8_t*>(start);
  size_t avail = static_cast<size_t>(reinterpret_cast<uintptr_t>(__arena_end) - start);
  size_t arena_size = avail;
  if (TINYML_ARENA_SIZE > 0u) {
    if (TINYML_ARENA_SIZE > avail) return fail("init", 3, "TINYML_ARENA_SIZE exceeds the free RAM of this board");
    arena_size = TINYML_ARENA_SIZE;
  }

  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) return fail("init", 1, "model schema version mismatch");
  const tflite::MicroOpResolver* resolver = TinyMLCreateResolver();
  if (resolver == nullptr) return fail("init", 2, "op resolver registration failed");

  // The whole arena first: the model must allocate at all, and arena_used_bytes() there is a lower bound.
  tflite::MicroInterpreter* interp = nullptr;
  g_profiler = new (g_profiler_storage) MarkerProfiler();
  if (!allocate(model, *resolver, arena, arena_size, &interp))
    return fail("init", 3, "TFLM AllocateTensors() failed (see the TFLM log lines above)");
  size_t used_full = interp->arena_used_bytes();
#if TINYML_ARENA_BISECT
  // Smallest arena (a multiple of 16 B, from the same 16-byte aligned start) that AllocateTensors()
  // accepts: bisection between a failing size (lo) and an allocating one (hi), re-constructing the
  // interpreter on the same buffer each time. Prepare-time temporaries can need more than
  // arena_used_bytes(), so lo starts below it and every size is tried for real.
  size_t lo = (used_full / 2u) & ~static_cast<size_t>(15u);
  size_t hi = (arena_size & ~static_cast<size_t>(15u));
  unsigned steps = 0;
  if (lo > 0u) {
    steps++;
    if (allocate(model, *resolver, arena, lo, &interp)) hi = lo, lo = 0;
  }
  while (hi - lo > 16u) {
    size_t mid = (lo + (hi - lo) / 2u) & ~static_cast<size_t>(15u);
    if (mid <= lo) mid = lo + 16u;
    steps++;
    if (allocate(model, *resolver, arena, mid, &interp)) hi = mid; else lo = mid;
  }
  // Run the samples with the smallest arena: Invoke() must work there too.
  if (!allocate(model, *resolver, arena, hi, &interp))
    return fail("init", 3, "TFLM AllocateTensors() failed at the arena size that allocated during bisection");
  arena_size = hi;
  std::printf("TM:ARENA min=%lu used=%lu used_at=%lu used_full=%lu avail=%lu steps=%u\n",
              static_cast<unsigned long>(hi), static_cast<unsigned long>(interp->arena_used_bytes()),
              static_cast<unsigned long>(hi), static_cast<unsigned long>(used_full),
              static_cast<unsigned long>(avail), steps);
#else
  (void)used_full;
#endif

  size_t in_bytes = 0, out_bytes = 0;
  for (size_t i = 0; i < interp->inputs_size(); ++i) in_bytes += interp->input(i)->bytes;
  for (size_t i = 0; i < interp->outputs_size(); ++i) out_bytes += interp->output(i)->bytes;
  std::printf("TM:INFO runtime=tflm arena=%lu arena_avail=%lu in_bytes=%lu out_bytes=%lu\n",
              static_cast<unsigned long>(interp->arena_used_bytes()), static_cast<unsigned long>(arena_size),
              static_cast<unsigned long>(in_bytes), static_cast<unsigned long>(out_bytes));

  FILE* fi = std::fopen("tm_input.bin", "rb");
  FILE* fo = std::fopen("tm_output.bin", "wb");
  if (!fi || !fo) return fail("io", 4, "cannot open tm_input.bin/tm_output.bin");
  tm_stats st;
  tm_stats_init(&st, tm_calibrate());
  for (;;) {
    size_t got = 0;
    for (size_t i = 0; i < interp->inputs_size(); ++i) {
      TfLiteTensor* t = interp->input(i);
      got += std::fread(t->data.raw, 1, t->bytes, fi);
    }
    if (got == 0) break;
    if (got != in_bytes) return fail("io", 4, "truncated input sample");
    tm_paint_stack();
    uint64_t t0 = tm_ticks();
    TM_PROF_INFER_BEGIN();
    TfLiteStatus status = interp->Invoke();
    TM_PROF_INFER_END();
    uint64_t t1 = tm_ticks();
    if (status != kTfLiteOk) return fail("invoke", 5, "TFLM Invoke() failed (see the TFLM log lines above)");
    tm_stats_add(&st, t0, t1);
    for (size_t i = 0; i < interp->outputs_size(); ++i) {
      TfLiteTensor* t = interp->output(i);
      std::fwrite(t->data.raw, 1, t->bytes, fo);
    }
  }
  std::fclose(fi);
  std::fclose(fo);
  tm_stats_print(&st);
  return 0;
}
