// ASSERT_OK / EXPECT_OK: assert that a Status or Result<T> is OK, and when it is not, print the
// expression and the status ("store.Open(path) is not OK: unavailable: cannot open ..."), which
// ASSERT_TRUE(x.ok()) does not. Header-only: include "support/status_matchers.h".
#pragma once

#include <gtest/gtest.h>

#include "mxward/status.h"

namespace mxward::testing {

inline ::testing::AssertionResult IsOk(const char* expression, const Status& status) {
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expression << " is not OK: " << status.ToString();
}

template <typename T>
::testing::AssertionResult IsOk(const char* expression, const Result<T>& result) {
  return IsOk(expression, result.status());
}

}  // namespace mxward::testing

#define EXPECT_OK(expr) EXPECT_PRED_FORMAT1(::mxward::testing::IsOk, expr)
#define ASSERT_OK(expr) ASSERT_PRED_FORMAT1(::mxward::testing::IsOk, expr)
