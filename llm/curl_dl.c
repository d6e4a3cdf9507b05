/* curl_dl: see curl_dl.h. The handle is never dlclose'd: libcurl's global state (OpenSSL)
 * must outlive every easy handle, and the process exits soon after its last call anyway. */
#include "curl_dl.h"

#include <dlfcn.h>
#include <string.h>

#include "util.h"

static struct curl_api api;
static int loaded; /* 0 not tried, 1 loaded, -1 failed */
static char load_err[256];

#define RESOLVE(field, sym)                                                                        \
    do {                                                                                           \
        void *p_ = dlsym(h, sym);                                                                  \
        if (!p_) {                                                                                 \
            errf(load_err, sizeof(load_err), "%s: missing symbol %s", CURL_DL_SONAME, sym);        \
            return -1;                                                                             \
        }                                                                                          \
        memcpy(&api.field, &p_, sizeof(p_));                                                       \
    } while (0)

static int load(void)
{
    void *h = dlopen(CURL_DL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        errf(load_err, sizeof(load_err), "cannot load %s: %s (install libcurl4)", CURL_DL_SONAME,
             e ? e : "unknown error");
        return -1;
    }
    RESOLVE(global_init, "curl_global_init");
    RESOLVE(easy_init, "curl_easy_init");
    RESOLVE(easy_cleanup, "curl_easy_cleanup");
    RESOLVE(easy_reset, "curl_easy_reset");
    RESOLVE(easy_perform, "curl_easy_perform");
    RESOLVE(easy_setopt, "curl_easy_setopt");
    RESOLVE(easy_getinfo, "curl_easy_getinfo");
    RESOLVE(easy_strerror, "curl_easy_strerror");
    RESOLVE(multi_init, "curl_multi_init");
    RESOLVE(multi_cleanup, "curl_multi_cleanup");
    RESOLVE(multi_setopt, "curl_multi_setopt");
    RESOLVE(multi_add_handle, "curl_multi_add_handle");
    RESOLVE(multi_remove_handle, "curl_multi_remove_handle");
    RESOLVE(multi_socket_action, "curl_multi_socket_action");
    RESOLVE(multi_info_read, "curl_multi_info_read");
    RESOLVE(multi_strerror, "curl_multi_strerror");
    RESOLVE(slist_append, "curl_slist_append");
    RESOLVE(slist_free_all, "curl_slist_free_all");
    RESOLVE(version, "curl_version");
    if (api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        errf(load_err, sizeof(load_err), "curl_global_init failed");
        return -1;
    }
    return 0;
}

const struct curl_api *curl_dl_load(char *err, size_t errsz)
{
    if (loaded == 0)
        loaded = load() == 0 ? 1 : -1;
    if (loaded < 0) {
        errf(err, errsz, "%s", load_err);
        return NULL;
    }
    return &api;
}
