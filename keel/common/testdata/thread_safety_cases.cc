// Compiled by the ThreadSafetyAnnotations tests (keel/common/CMakeLists.txt) with clang
// -Wthread-safety -Werror: with KEEL_TSA_LOCKED it must compile; without, clang must reject
// the unlocked read of a KEEL_GUARDED_BY member. Not part of any library.
#include "keel/common/mutex.h"

class Account {
 public:
  int Read() {
#ifdef KEEL_TSA_LOCKED
    keel::MutexLock lock(&mu_);
#endif
    return balance_;
  }
  void Deposit(int n) KEEL_REQUIRES(mu_) { balance_ += n; }
  void DepositLocked(int n) {
    keel::MutexLock lock(&mu_);
    Deposit(n);
  }

 private:
  keel::Mutex mu_;
  int balance_ KEEL_GUARDED_BY(mu_) = 0;
};

int main() {
  Account a;
  a.DepositLocked(1);
  return a.Read() == 1 ? 0 : 1;
}
