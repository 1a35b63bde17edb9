#include <libelf.h>
#include <gelf.h>
/* malloc_trim: the analysis hands back what libelf and libdw freed (BinaryAnalyzer). */
#include <malloc.h>
