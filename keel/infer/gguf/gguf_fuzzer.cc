// libFuzzer entry point for the GGUF reader: any byte string must parse or be rejected with a
// Status, never crash, hang or allocate without bound. Built with clang (`make fuzz`).
#include <cstddef>
#include <cstdint>

#include "keel/infer/gguf/gguf_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = keel::infer::GgufFile::Parse({data, size});
  if (file.ok()) {
    // Touch every tensor's first and last byte: they must lie inside the input.
    volatile uint8_t sink = 0;
    for (const auto& t : (*file)->tensors()) {
      sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
    }
    (void)sink;
  }
  return 0;
}
