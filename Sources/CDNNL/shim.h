#ifndef CYCLETIME_CDNNL_SHIM_H
#define CYCLETIME_CDNNL_SHIM_H
// oneDNN (v2.x C API) as a system library (Debian: libdnnl-dev, which ships no pkg-config file).
#include <dnnl.h>
#endif
