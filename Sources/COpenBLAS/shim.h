#ifndef CYCLETIME_COPENBLAS_SHIM_H
#define CYCLETIME_COPENBLAS_SHIM_H
// OpenBLAS through pkg-config `openblas` (Debian: libopenblas-dev).
#include <cblas.h>
// Thread control is declared in openblas_config.h / cblas.h of OpenBLAS builds.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// DYNAMIC_ARCH builds: the kernel family chosen when the library loaded, and its re-selection
// (reads OPENBLAS_CORETYPE again); exported by libopenblas, not declared in its headers.
char *openblas_get_corename(void);
void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);
#endif
