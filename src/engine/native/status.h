// Statuses and error passing shared by the shim's translation units: every
// exported function returns DETC_OK, DETC_ERROR (message in
// detc_native_last_error()) or DETC_UNAVAILABLE, and runs its body through
// `guarded` so that no C++ exception unwinds into Rust.
#pragma once

#include <exception>
#include <string>

namespace detc {

constexpr int DETC_OK = 0;
constexpr int DETC_ERROR = 1;
constexpr int DETC_UNAVAILABLE = 2;

// Per thread, like autocast state and errno; defined in shim.cpp.
extern thread_local std::string last_error;

template <class F>
int guarded(F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return DETC_ERROR;
}

}  // namespace detc
