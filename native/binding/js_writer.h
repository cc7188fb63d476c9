// js_writer.h — builds JS values with the plain Node-API C calls, checking every status.
// Binding files only (JS thread).
//
// Records reach JS from a thread-safe function call, and a worker being terminated stops JS
// from running at any moment (from another thread): node-addon-api turns the failed call into a
// C++ exception whose own construction then aborts the process (Error::Error calls
// napi_define_properties, which fails the same way). Here a failure just turns the writer off,
// and the caller skips the delivery: nothing is left to deliver to.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace ctmon_binding {

class JsWriter {
 public:
  explicit JsWriter(napi_env env) : env_(env) {}
  bool ok() const { return ok_; }

  napi_value object() {
    return make([&](napi_value* v) { return napi_create_object(env_, v); });
  }
  napi_value array(uint32_t n) {
    return make([&](napi_value* v) { return napi_create_array_with_length(env_, n, v); });
  }
  napi_value number(double x) {
    return make([&](napi_value* v) { return napi_create_double(env_, x, v); });
  }
  napi_value boolean(bool b) {
    return make([&](napi_value* v) { return napi_get_boolean(env_, b, v); });
  }
  napi_value null() {
    return make([&](napi_value* v) { return napi_get_null(env_, v); });
  }
  napi_value nullable(bool present, double x) { return present ? number(x) : null(); }
  napi_value string(const std::string& text) {
    return make(
        [&](napi_value* v) { return napi_create_string_utf8(env_, text.data(), text.size(), v); });
  }
  napi_value error(const std::string& message) {
    napi_value text = string(message);
    return make([&](napi_value* v) { return napi_create_error(env_, nullptr, text, v); });
  }
  void set(napi_value object, const char* key, napi_value value) {
    if (ok_ && napi_set_named_property(env_, object, key, value) != napi_ok) ok_ = false;
  }
  void set(napi_value array, uint32_t index, napi_value value) {
    if (ok_ && napi_set_element(env_, array, index, value) != napi_ok) ok_ = false;
  }
  napi_value uint_array(const uint32_t* values, uint32_t n) {
    napi_value out = array(n);
    for (uint32_t i = 0; i < n; ++i) set(out, i, number(values[i]));
    return out;
  }

 private:
  template <typename Create>
  napi_value make(Create&& create) {
    napi_value v = nullptr;
    if (ok_ && create(&v) != napi_ok) ok_ = false;
    return ok_ ? v : nullptr;
  }

  napi_env env_;
  bool ok_ = true;
};

}  // namespace ctmon_binding
