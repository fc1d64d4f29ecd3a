#ifndef CYCLETIME_CDNNL_SHIM_H
#define CYCLETIME_CDNNL_SHIM_H
// oneDNN (v2.x C API) as a system library (Debian: libdnnl-dev, which ships no pkg-config file).
#include <dnnl.h>
// DNNL_MEMORY_ALLOCATE is a pointer cast, which Swift does not import.
static inline void *cycletime_dnnl_memory_allocate(void) { return DNNL_MEMORY_ALLOCATE; }
#endif
