// libcurl's process-wide initialisation, done once before the first handle (the webhook and
// mail executors run on different worker threads). Internal to actions/.
#pragma once

#include <curl/curl.h>

#include <mutex>

#include "mxward/status.h"

namespace mxward {

inline Status EnsureCurlGlobalInit() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK) return Status::Internal("curl_global_init failed");
  return Status::Ok();
}

}  // namespace mxward
