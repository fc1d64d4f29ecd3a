#ifndef CYCLETIME_CMPI_SHIM_H
#define CYCLETIME_CMPI_SHIM_H
// MPI through pkg-config `ompi-c` (Debian: libopenmpi-dev; mpirun from openmpi-bin).
// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are macros over addresses of
// global objects, which Swift cannot import: these accessors return them.
#include <mpi.h>

static inline MPI_Comm ct_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype ct_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype ct_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype ct_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype ct_mpi_long_long(void) { return MPI_LONG_LONG; }
static inline MPI_Op ct_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op ct_mpi_max(void) { return MPI_MAX; }
static inline MPI_Status *ct_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler ct_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline void *ct_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline int ct_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int ct_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
#endif
