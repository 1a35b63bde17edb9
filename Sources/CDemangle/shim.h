#include <stdlib.h>
#include <libiberty/demangle.h>

/* The readable name of a C++ (Itanium) or Rust (legacy or v0) symbol, with C++ parameter lists,
   malloc'ed; NULL when `symbol` is not mangled. */
static inline char *sonde_demangle(const char *symbol) {
    return cplus_demangle(symbol, DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO);
}
