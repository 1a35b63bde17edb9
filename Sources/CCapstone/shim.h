#include <capstone/capstone.h>
#include <dlfcn.h>

/* Capstone is loaded while binaries are analysed and unloaded after (dlopen, dlclose): Debian's
   build holds every architecture, and mapping it costs about 5 MiB that a running agent never
   uses. These are the entry points Sonde calls, found with dlsym. */
typedef struct sonde_capstone {
    void *library;
    cs_err (*open)(cs_arch arch, cs_mode mode, csh *handle);
    cs_err (*close)(csh *handle);
    cs_err (*option)(csh handle, cs_opt_type type, size_t value);
    const char *(*strerror)(cs_err code);
    const char *(*reg_name)(csh handle, unsigned int reg_id);
    cs_insn *(*malloc)(csh handle);
    void (*free)(cs_insn *insn, size_t count);
    bool (*disasm_iter)(csh handle, const uint8_t **code, size_t *size, uint64_t *address, cs_insn *insn);
    cs_err (*regs_access)(csh handle, const cs_insn *insn, cs_regs regs_read, uint8_t *regs_read_count,
                          cs_regs regs_write, uint8_t *regs_write_count);
} sonde_capstone;

/* Fills `capstone` from libcapstone.so.4; returns 0, or -1 with dlerror()'s text in `error`.
   sonde_capstone_unload releases it. */
static inline int sonde_capstone_load(sonde_capstone *capstone, const char **error) {
    capstone->library = dlopen("libcapstone.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!capstone->library) {
        *error = dlerror();
        return -1;
    }
#define SONDE_CAPSTONE_SYMBOL(field, name)                                   \
    if (!(*(void **)&capstone->field = dlsym(capstone->library, name))) { \
        *error = dlerror();                                                \
        dlclose(capstone->library);                                        \
        capstone->library = NULL;                                          \
        return -1;                                                         \
    }
    SONDE_CAPSTONE_SYMBOL(open, "cs_open")
    SONDE_CAPSTONE_SYMBOL(close, "cs_close")
    SONDE_CAPSTONE_SYMBOL(option, "cs_option")
    SONDE_CAPSTONE_SYMBOL(strerror, "cs_strerror")
    SONDE_CAPSTONE_SYMBOL(reg_name, "cs_reg_name")
    SONDE_CAPSTONE_SYMBOL(malloc, "cs_malloc")
    SONDE_CAPSTONE_SYMBOL(free, "cs_free")
    SONDE_CAPSTONE_SYMBOL(disasm_iter, "cs_disasm_iter")
    SONDE_CAPSTONE_SYMBOL(regs_access, "cs_regs_access")
#undef SONDE_CAPSTONE_SYMBOL
    return 0;
}

static inline void sonde_capstone_unload(sonde_capstone *capstone) {
    if (capstone->library)
        dlclose(capstone->library);
    capstone->library = NULL;
}
