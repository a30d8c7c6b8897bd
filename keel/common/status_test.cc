#include "keel/common/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>

namespace keel {
namespace {

TEST(StatusTest, OkByDefaultAndErrorsCarryCodeAndMessage) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.ToString(), "OK");
  Status err = NotFoundError("no such job 'x'");
  EXPECT_FALSE(err.ok());
  EXPECT_EQ(err.code(), StatusCode::kNotFound);
  EXPECT_EQ(err.ToString(), "NOT_FOUND: no such job 'x'");
  EXPECT_EQ(Status(StatusCode::kOk, "ignored").message(), "");
}

TEST(StatusTest, CodesMatchGrpcNumbering) {
  EXPECT_EQ(static_cast<int>(StatusCode::kInvalidArgument), 3);
  EXPECT_EQ(static_cast<int>(StatusCode::kPermissionDenied), 7);
  EXPECT_EQ(static_cast<int>(StatusCode::kUnavailable), 14);
  EXPECT_EQ(static_cast<int>(StatusCode::kUnauthenticated), 16);
  EXPECT_EQ(StatusCodeName(static_cast<StatusCode>(99)), "UNKNOWN_CODE(99)");
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCode) {
  Status s = InvalidArgumentError("bad magic").WithContext("reading 'a.gguf'");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "reading 'a.gguf': bad magic");
  EXPECT_TRUE(OkStatus().WithContext("x").ok());
}

TEST(StatusTest, ErrnoErrorMapsCodeAndNamesTheInput) {
  Status s = ErrnoError(ENOENT, "open '/nope'");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "open '/nope': No such file or directory");
  EXPECT_EQ(ErrnoError(EACCES, "x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoError(ENOSPC, "x").code(), StatusCode::kResourceExhausted);
}

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgumentError(std::to_string(x) + " is odd");
  return x / 2;
}

StatusOr<int> Quarter(int x) {
  KEEL_ASSIGN_OR_RETURN(int h, Half(x));
  KEEL_ASSIGN_OR_RETURN(auto q, Half(h));
  return q;
}

Status CheckEven(int x, int* calls) {
  KEEL_RETURN_IF_ERROR(Half(x));
  ++*calls;
  KEEL_RETURN_IF_ERROR(OkStatus());
  return OkStatus();
}

TEST(StatusTest, MacrosPropagateErrorsAndAssignValues) {
  EXPECT_EQ(*Quarter(8), 2);
  StatusOr<int> r = Quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "3 is odd");
  int calls = 0;
  EXPECT_TRUE(CheckEven(4, &calls).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(CheckEven(5, &calls).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 1);  // returned before the increment
}

StatusOr<std::unique_ptr<int>> MakeBox(bool ok) {
  if (!ok) return UnavailableError("no box");
  return std::make_unique<int>(7);
}

TEST(StatusTest, StatusOrHoldsMoveOnlyValues) {
  StatusOr<std::unique_ptr<int>> box = MakeBox(true);
  ASSERT_TRUE(box.ok());
  std::unique_ptr<int> p = std::move(box).value();
  EXPECT_EQ(*p, 7);
  EXPECT_EQ(MakeBox(false).status().code(), StatusCode::kUnavailable);
  StatusOr<int> missing = NotFoundError("x");
  EXPECT_EQ(missing.value_or(3), 3);
}

TEST(StatusDeathTest, ValueOfErrorAborts) {
  StatusOr<int> r = InternalError("boom");
  EXPECT_DEATH((void)r.value(), "INTERNAL: boom");
}

TEST(StatusDeathTest, StatusOrFromOkStatusAborts) {
  EXPECT_DEATH((void)StatusOr<int>{OkStatus()}, "OK Status");
}

}  // namespace
}  // namespace keel
