#include "wasmtime_shim.h"
#include "_cgo_export.h"
#include <stdlib.h>

// Guests run on a stack of wasmtime's own (async support: a guest waiting
// in poll_oneoff is suspended, not blocked). Go accepts a call from C only
// on the stack of the thread it entered C from, so host functions switch
// back to that stack, below the frames wasmtime_call_future_poll has on
// it, before they call Go.

// wharf_go_stack is where host functions call Go on this thread while
// wharf_future_poll runs; NULL otherwise.
static __thread char *wharf_go_stack;

// wharf_go_stack_gap leaves room below wharf_future_poll's frame for the
// frames of wasmtime_call_future_poll that stay live on the thread's stack
// while the guest's stack runs.
#define wharf_go_stack_gap (64 * 1024)

bool wharf_future_poll(wasmtime_call_future_t *future) {
  char *saved = wharf_go_stack;
  wharf_go_stack = (char *)__builtin_frame_address(0) - wharf_go_stack_gap;
  bool done = wasmtime_call_future_poll(future);
  wharf_go_stack = saved;
  return done;
}

// wharf_on_go_stack calls fn(arg) on the thread's own stack.
static void wharf_on_go_stack(void (*fn)(void *), void *arg) {
  char *sp = wharf_go_stack;
  if (sp == NULL) {
    fn(arg);
    return;
  }
  sp = (char *)((uintptr_t)sp & ~(uintptr_t)15);
#if defined(__x86_64__)
  __asm__ volatile(
      "movq %%rsp, %%r12\n\t"
      "movq %[sp], %%rsp\n\t"
      "movq %[arg], %%rdi\n\t"
      "callq *%[fn]\n\t"
      "movq %%r12, %%rsp\n\t"
      :
      : [sp] "r"(sp), [fn] "r"(fn), [arg] "r"(arg)
      : "r12", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "xmm0", "xmm1", "xmm2",
        "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
        "xmm14", "xmm15", "memory", "cc");
#elif defined(__aarch64__)
  __asm__ volatile(
      "mov x19, sp\n\t"
      "mov sp, %[sp]\n\t"
      "mov x0, %[arg]\n\t"
      "blr %[fn]\n\t"
      "mov sp, x19\n\t"
      :
      : [sp] "r"(sp), [fn] "r"(fn), [arg] "r"(arg)
      : "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
        "x14", "x15", "x16", "x17", "x19", "x30", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7",
        "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28",
        "v29", "v30", "v31", "memory", "cc");
#else
#error "wharf's wasmtime engine supports amd64 and arm64"
#endif
}

typedef struct {
  uintptr_t id;
  wasmtime_context_t *cx;
  wasmtime_val_raw_t *args;
  wasm_trap_t *trap;
} wharf_host_call_t;

static void wharf_run_host_call(void *p) {
  wharf_host_call_t *c = p;
  c->trap = (wasm_trap_t *)wharfHostCall(c->id, c->cx, c->args);
}

static wasm_trap_t *wharf_host_trampoline(void *env, wasmtime_caller_t *caller,
    wasmtime_val_raw_t *args, size_t n) {
  wharf_host_call_t c = {(uintptr_t)env, wasmtime_caller_context(caller), args, NULL};
  wharf_on_go_stack(wharf_run_host_call, &c);
  return c.trap;
}

static wasm_valtype_vec_t wharf_types(const uint8_t *kinds, size_t n) {
  wasm_valtype_t *types[16];
  for (size_t i = 0; i < n; i++) types[i] = wasm_valtype_new(kinds[i]);
  wasm_valtype_vec_t vec;
  wasm_valtype_vec_new(&vec, n, types);
  return vec;
}

wasmtime_error_t *wharf_define_func(wasmtime_linker_t *linker, const char *module, size_t module_len,
    const char *name, size_t name_len, const uint8_t *params, size_t nparams,
    const uint8_t *results, size_t nresults, uintptr_t id) {
  if (nparams > 16 || nresults > 16) return wasmtime_error_new("too many parameters");
  wasm_valtype_vec_t p = wharf_types(params, nparams), r = wharf_types(results, nresults);
  wasm_functype_t *ty = wasm_functype_new(&p, &r);
  wasmtime_error_t *err = wasmtime_linker_define_func_unchecked(linker, module, module_len, name, name_len,
      ty, wharf_host_trampoline, (void *)id, NULL);
  wasm_functype_delete(ty);
  return err;
}

// wharf_epoch_deadline runs at every epoch tick while the store's guest
// runs: it stops the guest once the host has set the interrupt flag.
static wasmtime_error_t *wharf_epoch_deadline(wasmtime_context_t *context, void *data,
    uint64_t *delta, uint8_t *update_kind) {
  if (__atomic_load_n((int32_t *)data, __ATOMIC_RELAXED)) return wasmtime_error_new("interrupted by the host");
  *delta = 1;
  *update_kind = 0;
  return NULL;
}

void wharf_watch_epochs(wasmtime_store_t *store, int32_t *interrupt) {
  wasmtime_store_epoch_deadline_callback(store, wharf_epoch_deadline, interrupt, NULL);
}

// poll_oneoff is wharf's one async host function: when nothing it waits on
// is ready, wasmtime suspends the guest's stack and returns from
// wasmtime_call_future_poll, so the instance's goroutine waits in Go, not
// inside a cgo callback (where Go locks it to its thread, and every wait
// and wake-up hands the processor between threads).
static bool wharf_poll_done(void *env) { return true; }

typedef struct {
  wasmtime_context_t *cx;
  uint32_t args[4];
  int32_t *result;
  bool pending;
} wharf_poll_call_t;

static void wharf_run_poll_start(void *p) {
  wharf_poll_call_t *c = p;
  c->pending = wharfPollStart(c->cx, c->args[0], c->args[1], c->args[2], c->args[3], c->result);
}

static void wharf_run_poll_continue(void *p) {
  wharf_poll_call_t *c = p;
  c->pending = !wharfPollContinue(c->cx);
}

static bool wharf_poll_again(void *env) {
  wharf_poll_call_t c = {(wasmtime_context_t *)env};
  wharf_on_go_stack(wharf_run_poll_continue, &c);
  return !c.pending;
}

static void wharf_poll_trampoline(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args,
    size_t nargs, wasmtime_val_t *results, size_t nresults, wasm_trap_t **trap_ret,
    wasmtime_async_continuation_t *cont) {
  results[0].kind = 0; // i32
  results[0].of.i64 = 0;
  wharf_poll_call_t c = {wasmtime_caller_context(caller),
      {(uint32_t)args[0].of.i32, (uint32_t)args[1].of.i32, (uint32_t)args[2].of.i32, (uint32_t)args[3].of.i32},
      &results[0].of.i32};
  wharf_on_go_stack(wharf_run_poll_start, &c);
  cont->callback = c.pending ? wharf_poll_again : wharf_poll_done;
  cont->env = c.cx;
  cont->finalizer = NULL;
}

wasmtime_error_t *wharf_define_poll(wasmtime_linker_t *linker, const char *module, size_t module_len,
    const char *name, size_t name_len) {
  const uint8_t i32s[4] = {0, 0, 0, 0};
  wasm_valtype_vec_t p = wharf_types(i32s, 4), r = wharf_types(i32s, 1);
  wasm_functype_t *ty = wasm_functype_new(&p, &r);
  wasmtime_error_t *err = wasmtime_linker_define_async_func(linker, module, module_len, name, name_len,
      ty, wharf_poll_trampoline, NULL, NULL);
  wasm_functype_delete(ty);
  return err;
}

wharf_call_t *wharf_instantiate(const wasmtime_linker_t *linker, wasmtime_context_t *cx, const wasmtime_module_t *module) {
  wharf_call_t *c = calloc(1, sizeof(wharf_call_t));
  c->future = wasmtime_linker_instantiate_async(linker, cx, module, &c->instance, &c->trap, &c->error);
  return c;
}

wharf_call_t *wharf_call_new(void) { return calloc(1, sizeof(wharf_call_t)); }

void wharf_call_start(wharf_call_t *c, wasmtime_context_t *cx, size_t nargs, size_t nresults) {
  c->future = wasmtime_func_call_async(cx, &c->func, c->args, nargs, c->results, nresults, &c->trap, &c->error);
}

void wharf_call_free(wharf_call_t *c) {
  if (c->future) wasmtime_call_future_delete(c->future);
  free(c);
}
