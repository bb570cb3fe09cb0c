#include "store/http_client.h"

#include <curl/curl.h>
#include <fmt/core.h>

#include <mutex>

namespace nfm {

namespace {

size_t append(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

HttpClient::HttpClient() {
  global_init();
  curl_ = curl_easy_init();
}

HttpClient::~HttpClient() {
  if (curl_) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

std::string HttpClient::escape(const std::string& text) {
  global_init();
  char* e = curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size()));
  std::string out = e ? e : "";
  curl_free(e);
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
  CURL* c = static_cast<CURL*>(curl_);
  if (!c) return make_error(Errc::io, "http: cannot initialise libcurl");
  std::string response;
  char curl_error[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  if (body) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  } else {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_error);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 5000L));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROXY, "");  // a store is reached directly
  struct curl_slist* headers =
      curl_slist_append(nullptr, "Content-Type: text/plain; charset=utf-8");
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  if (rc != CURLE_OK)
    return make_error(Errc::io,
                      fmt::format("{}", curl_error[0] ? curl_error : curl_easy_strerror(rc)));
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status >= 300) {
    while (!response.empty() && (response.back() == '\n' || response.back() == '\r'))
      response.pop_back();
    if (response.size() > 500) response = response.substr(0, 500) + "...";
    return make_error(Errc::io, fmt::format("HTTP {}: {}", status, response));
  }
  return response;
}

}  // namespace nfm
