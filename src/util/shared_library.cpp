#include "util/shared_library.h"

#include <dlfcn.h>

namespace nfm {

Result<SharedLibrary> SharedLibrary::open(const char* soname) {
  SharedLibrary library;
  library.soname_ = soname;
  library.handle_ = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!library.handle_) {
    const char* why = dlerror();
    return make_error(Errc::not_found, why ? why : std::string(soname) + ": cannot load");
  }
  return library;
}

Result<void*> SharedLibrary::symbol(const char* name) const {
  dlerror();  // clear a stale error: a symbol's address may legitimately be null
  void* address = dlsym(handle_, name);
  if (const char* why = dlerror())
    return make_error(Errc::not_found, soname_ + ": no " + name + " (" + why + ")");
  return address;
}

}  // namespace nfm
