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

// Sets api.fn to the library's function fn, typed by fn's declaration; returns the
// error from the enclosing function when the library lacks it.
#define NFM_BIND(library, api, fn) NFM_ASSIGN((api).fn, (library).function<decltype(::fn)>(#fn))

}  // namespace nfm
