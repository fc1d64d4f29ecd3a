#ifndef CYCLETIME_CZLIB_SHIM_H
#define CYCLETIME_CZLIB_SHIM_H
#include <zlib.h>
static inline int ct_inflate_init(z_streamp s) { return inflateInit(s); }
#endif
