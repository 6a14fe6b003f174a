#include "cpu/scratch.h"

#include <cstdlib>
#include <new>

namespace pyrt::cpu {
namespace {

struct ScratchSet {
  void* data[kScratchSlots] = {};
  size_t size[kScratchSlots] = {};
  ~ScratchSet() {
    for (void* p : data) std::free(p);
  }
};

}  // namespace

void* thread_scratch(int slot, size_t bytes) {
  thread_local ScratchSet set;
  if (set.size[slot] < bytes) {
    std::free(set.data[slot]);
    const size_t rounded = (bytes + 63) / 64 * 64;
    set.data[slot] = std::aligned_alloc(64, rounded);
    if (!set.data[slot]) {
      set.size[slot] = 0;
      throw std::bad_alloc();
    }
    set.size[slot] = rounded;
  }
  return set.data[slot];
}

}  // namespace pyrt::cpu
