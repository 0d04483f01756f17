#include "wasmtime_shim.h"
#include "_cgo_export.h"

static wasm_trap_t *wharf_host_trampoline(void *env, wasmtime_caller_t *caller,
    wasmtime_val_raw_t *args, size_t n) {
  return (wasm_trap_t *)wharfHostCall((uintptr_t)env, wasmtime_caller_context(caller), args);
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
