// A small blocking HTTP client over libcurl, for talking to ClickHouse. One
// instance per thread (it keeps its connection alive between requests). libcurl is
// loaded on first use: without it, requests fail with a clear error.
#pragma once

#include <memory>
#include <string>

#include "util/result.h"

namespace nfm {

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // POSTs `body` to `url`; the response body on 2xx, else an error carrying the
  // HTTP status and the server's message (or curl's, when there was no answer).
  Result<std::string> post(const std::string& url, const std::string& body,
                           long timeout_ms = 30000);
  Result<std::string> get(const std::string& url, long timeout_ms = 30000);

  // "a b" -> "a%20b" (for query strings).
  static std::string escape(const std::string& text);

 private:
  Result<std::string> perform(const std::string& url, const std::string* body, long timeout_ms);
  void* curl_ = nullptr;
};

}  // namespace nfm
