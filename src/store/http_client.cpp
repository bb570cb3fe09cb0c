#include "store/http_client.h"

#include <curl/curl.h>
#include <fmt/core.h>

#include <algorithm>

#include "util/shared_library.h"

namespace nfm {

namespace {

size_t append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// The part of libcurl we use, loaded on first use (util/shared_library.h).
// clang-format off
#define NFM_CURL_FUNCTIONS(X) \
  X(curl_global_init) X(curl_easy_init) X(curl_easy_cleanup) X(curl_easy_setopt) \
  X(curl_easy_perform) X(curl_easy_getinfo) X(curl_easy_strerror) X(curl_slist_append) \
  X(curl_slist_free_all)
// clang-format on
NFM_LIBRARY_API(Curl, NFM_CURL_FUNCTIONS);

Result<Curl> load_curl() {
  NFM_ASSIGN(SharedLibrary lib, SharedLibrary::open("libcurl.so.4"));
  NFM_ASSIGN(Curl c, Curl::bind(lib));
  if (c.curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return make_error(Errc::io, "libcurl: global initialisation failed");
  return c;
}

// Loaded and initialised once per process (thread-safe: a function-local static).
const Result<Curl>& curl() {
  static const Result<Curl> api = load_curl();
  return api;
}

}  // namespace

HttpClient::HttpClient() {
  if (const auto& api = curl()) curl_ = api->curl_easy_init();
}

HttpClient::~HttpClient() {
  if (curl_) curl()->curl_easy_cleanup(static_cast<CURL*>(curl_));
}

std::string HttpClient::escape(const std::string& text) {
  // RFC 3986: everything but the unreserved characters is percent-encoded.
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Result<std::string> HttpClient::post(const std::string& url, const std::string& body,
                                     long timeout_ms) {
  return perform(url, &body, timeout_ms);
}

Result<std::string> HttpClient::get(const std::string& url, long timeout_ms) {
  return perform(url, nullptr, timeout_ms);
}

Result<std::string> HttpClient::perform(const std::string& url, const std::string* body,
                                        long timeout_ms) {
  const Result<Curl>& api = curl();
  if (!api) return make_error(Errc::unsupported, "http needs libcurl: " + api.error().message);
  const Curl& lib = *api;
  CURL* c = static_cast<CURL*>(curl_);
  if (!c) return make_error(Errc::io, "http: cannot initialise libcurl");
  std::string response;
  char curl_error[CURL_ERROR_SIZE] = "";
  lib.curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  if (body) {
    lib.curl_easy_setopt(c, CURLOPT_POST, 1L);
    lib.curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
    lib.curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  } else {
    lib.curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
  lib.curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append);
  lib.curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  lib.curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_error);
  lib.curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  lib.curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 5000L));
  lib.curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  lib.curl_easy_setopt(c, CURLOPT_PROXY, "");  // a store is reached directly
  struct curl_slist* headers =
      lib.curl_slist_append(nullptr, "Content-Type: text/plain; charset=utf-8");
  headers = lib.curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  lib.curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  const CURLcode rc = lib.curl_easy_perform(c);
  lib.curl_slist_free_all(headers);
  lib.curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  if (rc != CURLE_OK)
    return make_error(Errc::io,
                      fmt::format("{}", curl_error[0] ? curl_error : lib.curl_easy_strerror(rc)));
  long status = 0;
  lib.curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status >= 300) {
    while (!response.empty() && (response.back() == '\n' || response.back() == '\r'))
      response.pop_back();
    if (response.size() > 500) response = response.substr(0, 500) + "...";
    return make_error(Errc::io, fmt::format("HTTP {}: {}", status, response));
  }
  return response;
}

}  // namespace nfm
