#include <zlib.h>

/* deflateInit2 is a macro, which Swift cannot call: this is it as a function, for gzip
   (windowBits 15 + 16 writes the gzip header and trailer, RFC 1952) at the given level. */
static inline int sonde_deflate_init_gzip(z_streamp stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}

/* inflateInit is a macro too: this is it as a function, for the zlib format (RFC 1950) that
   compressed ELF sections hold. */
static inline int sonde_inflate_init(z_streamp stream) {
    return inflateInit(stream);
}
