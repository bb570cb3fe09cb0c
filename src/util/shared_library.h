// C libraries loaded when first used instead of at program start. libvirt, libcurl and
// libmicrohttpd bring some sixty more shared objects (GnuTLS, GLib, ICU, Kerberos...)
// whose loading and constructors cost every nfm process about 11 ms, more than half
// of a one-shot `nfm ps` on a dump, though only the crawler's discovery and two of its
// sinks use them. Their headers still give every function its exact type.
#pragma once

#include <string>

#include "util/result.h"

namespace nfm {

class SharedLibrary {
 public:
  // dlopen() by ABI name (e.g. "libcurl.so.4"). The library is never unloaded:
  // some (libmicrohttpd, libvirt) start threads that would outlive it.
  static Result<SharedLibrary> open(const char* soname);

  // The library's function `name`, typed as F (a function type from its header).
  template <typename F>
  Result<F*> function(const char* name) const {
    NFM_ASSIGN(void* address, symbol(name));
    return reinterpret_cast<F*>(address);
  }

 private:
  Result<void*> symbol(const char* name) const;

  void* handle_ = nullptr;
  std::string soname_;
};

// A struct of typed pointers to a library's functions, declared from one list:
//   #define CURL_FUNCTIONS(X) X(curl_easy_init) X(curl_easy_cleanup)
//   NFM_LIBRARY_API(Curl, CURL_FUNCTIONS)
// declares struct Curl { decltype(&::curl_easy_init) curl_easy_init; ... } with
// Curl::bind(library), which fails naming the first function the library lacks.
#define NFM_LIBRARY_API(Name, LIST)                                        \
  struct Name {                                                            \
    LIST(NFM_LIBRARY_API_MEMBER_)                                          \
    static ::nfm::Result<Name> bind(const ::nfm::SharedLibrary& library) { \
      Name api;                                                            \
      LIST(NFM_LIBRARY_API_BIND_)                                          \
      return api;                                                          \
    }                                                                      \
  }
#define NFM_LIBRARY_API_MEMBER_(fn) decltype(&::fn) fn = nullptr;
#define NFM_LIBRARY_API_BIND_(fn)                                \
  if (auto bound = library.function<decltype(::fn)>(#fn); bound) \
    api.fn = *bound;                                             \
  else                                                           \
    return bound.error();

}  // namespace nfm
