// Declarations of the parts of wasmtime's C API (v39) that wharf calls
// directly, for the call paths where wasmtime-go's generic wrappers cost
// more than the work or that it does not wrap: host functions without
// per-call type lookups or allocations, async calls and the async
// poll_oneoff, epoch-deadline callbacks and raw memory access.
// The library itself is linked by github.com/bytecodealliance/wasmtime-go.
#ifndef WHARF_WASMTIME_SHIM_H
#define WHARF_WASMTIME_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wasmtime_linker wasmtime_linker_t;
typedef struct wasmtime_store wasmtime_store_t;
typedef struct wasmtime_context wasmtime_context_t;
typedef struct wasmtime_caller wasmtime_caller_t;
typedef struct wasm_trap_t wasm_trap_t;
typedef struct wasmtime_error wasmtime_error_t;
typedef struct wasm_functype_t wasm_functype_t;
typedef struct wasm_valtype_t wasm_valtype_t;
typedef struct wasm_frame_t wasm_frame_t;
typedef struct wasm_config_t wasm_config_t;
typedef struct wasmtime_module wasmtime_module_t;
typedef struct wasmtime_call_future wasmtime_call_future_t;

typedef struct wasm_byte_vec_t { size_t size; char *data; } wasm_byte_vec_t;
typedef struct wasm_valtype_vec_t { size_t size; wasm_valtype_t **data; } wasm_valtype_vec_t;
typedef struct wasm_frame_vec_t { size_t size; wasm_frame_t **data; } wasm_frame_vec_t;

typedef struct wasmtime_func { uint64_t store_id; void *private_; } wasmtime_func_t;
typedef struct wasmtime_memory { struct { uint64_t store_id; uint32_t private1; } inner; uint32_t private2; } wasmtime_memory_t;
// wasmtime_val_raw_t: 16 bytes, little-endian integers at offset 0.
typedef struct wasmtime_val_raw { uint64_t lo, hi; } wasmtime_val_raw_t;
typedef struct wasmtime_instance { uint64_t store_id; size_t private_; } wasmtime_instance_t;
// wasmtime_val_t: a kind byte, then a 24-byte union (i32 and i64 at its start).
typedef struct wasmtime_val { uint8_t kind; union { int32_t i32; int64_t i64; uint64_t words[3]; } of; } wasmtime_val_t;
typedef struct wasmtime_async_continuation {
  bool (*callback)(void *env);
  void *env;
  void (*finalizer)(void *);
} wasmtime_async_continuation_t;
typedef void (*wasmtime_func_async_callback_t)(void *env, wasmtime_caller_t *caller,
    const wasmtime_val_t *args, size_t nargs, wasmtime_val_t *results, size_t nresults,
    wasm_trap_t **trap_ret, wasmtime_async_continuation_t *continuation_ret);

typedef wasm_trap_t *(*wasmtime_func_unchecked_callback_t)(void *env, wasmtime_caller_t *caller,
    wasmtime_val_raw_t *args_and_results, size_t num_args_and_results);

wasm_valtype_t *wasm_valtype_new(uint8_t kind);
void wasm_valtype_vec_new(wasm_valtype_vec_t *out, size_t n, wasm_valtype_t *const data[]);
wasm_functype_t *wasm_functype_new(wasm_valtype_vec_t *params, wasm_valtype_vec_t *results);
void wasm_functype_delete(wasm_functype_t *);
wasmtime_error_t *wasmtime_linker_define_func_unchecked(wasmtime_linker_t *linker, const char *module,
    size_t module_len, const char *name, size_t name_len, const wasm_functype_t *ty,
    wasmtime_func_unchecked_callback_t cb, void *data, void (*finalizer)(void *));
wasmtime_context_t *wasmtime_caller_context(wasmtime_caller_t *caller);
wasmtime_error_t *wasmtime_func_call_unchecked(wasmtime_context_t *store, const wasmtime_func_t *func,
    wasmtime_val_raw_t *args_and_results, size_t args_and_results_len, wasm_trap_t **trap);
uint8_t *wasmtime_memory_data(const wasmtime_context_t *store, const wasmtime_memory_t *memory);
size_t wasmtime_memory_data_size(const wasmtime_context_t *store, const wasmtime_memory_t *memory);
void wasmtime_context_set_epoch_deadline(wasmtime_context_t *context, uint64_t ticks_beyond_current);
void wasmtime_store_epoch_deadline_callback(wasmtime_store_t *store,
    wasmtime_error_t *(*func)(wasmtime_context_t *context, void *data, uint64_t *epoch_deadline_delta, uint8_t *update_kind),
    void *data, void (*finalizer)(void *));
void wasmtime_config_async_support_set(wasm_config_t *, bool);
void wasmtime_config_async_stack_size_set(wasm_config_t *, uint64_t);
wasmtime_call_future_t *wasmtime_linker_instantiate_async(const wasmtime_linker_t *linker,
    wasmtime_context_t *store, const wasmtime_module_t *module, wasmtime_instance_t *instance,
    wasm_trap_t **trap_ret, wasmtime_error_t **error_ret);
wasmtime_call_future_t *wasmtime_func_call_async(wasmtime_context_t *context, const wasmtime_func_t *func,
    const wasmtime_val_t *args, size_t nargs, wasmtime_val_t *results, size_t nresults,
    wasm_trap_t **trap_ret, wasmtime_error_t **error_ret);
bool wasmtime_call_future_poll(wasmtime_call_future_t *future);
void wasmtime_call_future_delete(wasmtime_call_future_t *future);
wasmtime_error_t *wasmtime_linker_define_async_func(wasmtime_linker_t *linker, const char *module,
    size_t module_len, const char *name, size_t name_len, const wasm_functype_t *ty,
    wasmtime_func_async_callback_t cb, void *data, void (*finalizer)(void *));
wasm_trap_t *wasmtime_trap_new(const char *msg, size_t msg_len);
void wasm_trap_message(const wasm_trap_t *, wasm_byte_vec_t *out);
void wasm_trap_delete(wasm_trap_t *);
void wasm_trap_trace(const wasm_trap_t *, wasm_frame_vec_t *out);
void wasm_byte_vec_delete(wasm_byte_vec_t *);
void wasm_frame_vec_delete(wasm_frame_vec_t *);
const wasm_byte_vec_t *wasmtime_frame_func_name(const wasm_frame_t *);
uint32_t wasm_frame_func_index(const wasm_frame_t *);
bool wasmtime_trap_code(const wasm_trap_t *, uint8_t *code);
wasmtime_error_t *wasmtime_error_new(const char *);
void wasmtime_error_message(const wasmtime_error_t *, wasm_byte_vec_t *out);
bool wasmtime_error_exit_status(const wasmtime_error_t *, int *status);
void wasmtime_error_wasm_trace(const wasmtime_error_t *, wasm_frame_vec_t *out);
void wasmtime_error_delete(wasmtime_error_t *);

// wharf's own helpers (wasmtime_shim.c).
wasmtime_error_t *wharf_define_func(wasmtime_linker_t *linker, const char *module, size_t module_len,
    const char *name, size_t name_len, const uint8_t *params, size_t nparams,
    const uint8_t *results, size_t nresults, uintptr_t id);
void wharf_watch_epochs(wasmtime_store_t *store, int32_t *interrupt);
wasmtime_error_t *wharf_define_poll(wasmtime_linker_t *linker, const char *module, size_t module_len,
    const char *name, size_t name_len);

// wharf_call is an async call into a store (instantiation or an export)
// and everything wasmtime reads or writes until its future is deleted: C
// memory, as wasmtime keeps the pointers between polls.
typedef struct wharf_call {
  wasmtime_call_future_t *future;
  wasm_trap_t *trap;
  wasmtime_error_t *error;
  wasmtime_instance_t instance;
  wasmtime_func_t func;
  wasmtime_val_t args[16], results[16];
} wharf_call_t;

wharf_call_t *wharf_instantiate(const wasmtime_linker_t *linker, wasmtime_context_t *cx, const wasmtime_module_t *module);
wharf_call_t *wharf_call_new(void);
bool wharf_future_poll(wasmtime_call_future_t *future);
void wharf_call_start(wharf_call_t *call, wasmtime_context_t *cx, size_t nargs, size_t nresults);
void wharf_call_free(wharf_call_t *call);

#endif
