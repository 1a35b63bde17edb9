#include <elfutils/libdw.h>
#include <dwarf.h>
