#include <curl/curl.h>
#include <dlfcn.h>
#include <stddef.h>

/* libcurl is loaded only for https:// endpoints (dlopen), so that a plain-HTTP exporter maps
   neither libcurl nor the TLS, LDAP and Kerberos libraries it pulls in. These are the entry
   points Sonde uses, found with dlsym. */
typedef struct sonde_curl {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *handle, CURLoption option, ...);
    CURLcode (*easy_perform)(CURL *handle);
    CURLcode (*easy_getinfo)(CURL *handle, CURLINFO info, ...);
    const char *(*easy_strerror)(CURLcode code);
    void (*easy_cleanup)(CURL *handle);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *text);
    void (*slist_free_all)(struct curl_slist *list);
} sonde_curl;

/* Fills `curl` from libcurl.so.4; returns 0, or -1 with dlerror()'s text in `error`. */
static inline int sonde_curl_load(sonde_curl *curl, const char **error) {
    void *library = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        *error = dlerror();
        return -1;
    }
#define SONDE_CURL_SYMBOL(field, name)                      \
    if (!(*(void **)&curl->field = dlsym(library, name))) { \
        *error = dlerror();                                 \
        return -1;                                          \
    }
    SONDE_CURL_SYMBOL(global_init, "curl_global_init")
    SONDE_CURL_SYMBOL(easy_init, "curl_easy_init")
    SONDE_CURL_SYMBOL(easy_setopt, "curl_easy_setopt")
    SONDE_CURL_SYMBOL(easy_perform, "curl_easy_perform")
    SONDE_CURL_SYMBOL(easy_getinfo, "curl_easy_getinfo")
    SONDE_CURL_SYMBOL(easy_strerror, "curl_easy_strerror")
    SONDE_CURL_SYMBOL(easy_cleanup, "curl_easy_cleanup")
    SONDE_CURL_SYMBOL(slist_append, "curl_slist_append")
    SONDE_CURL_SYMBOL(slist_free_all, "curl_slist_free_all")
#undef SONDE_CURL_SYMBOL
    return 0;
}

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: one typed
   wrapper per argument type. */
static inline CURLcode sonde_curl_set_long(const sonde_curl *curl, CURL *handle, CURLoption option, long value) {
    return curl->easy_setopt(handle, option, value);
}
static inline CURLcode sonde_curl_set_pointer(const sonde_curl *curl, CURL *handle, CURLoption option, const void *value) {
    return curl->easy_setopt(handle, option, value);
}
static inline CURLcode sonde_curl_set_size(const sonde_curl *curl, CURL *handle, CURLoption option, curl_off_t value) {
    return curl->easy_setopt(handle, option, value);
}
static inline CURLcode sonde_curl_set_callback(const sonde_curl *curl, CURL *handle, CURLoption option, curl_write_callback value) {
    return curl->easy_setopt(handle, option, value);
}
static inline long sonde_curl_response_code(const sonde_curl *curl, CURL *handle) {
    long code = 0;
    return curl->easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK ? code : 0;
}
