// Picks the attention head kernel of an ISA; the kernels live in attention_head_<isa>.cc.
#include "cpu/attention_head.h"

namespace pyrt::cpu {

int64_t attention_head_scratch_floats(int64_t L, int64_t head_dim) {
  const int64_t padded = (L + 15) / 16 * 16;
  constexpr int64_t kQueryBlock = 4;  // the most score rows any kernel keeps at once
  return (head_dim + kQueryBlock) * padded + head_dim + 16;
}

AttentionHeadKernel attention_head_kernel(Isa isa) {
  switch (isa) {
#ifdef PYRT_HAVE_AVX512_KERNELS
    case Isa::avx512: return avx512::attend_head;
#endif
#ifdef PYRT_HAVE_AVX2_KERNELS
    case Isa::avx2: return avx2::attend_head;
#endif
    default: return scalar::attend_head;
  }
}

AttentionHeadKernel attention_head_kernel() { return attention_head_kernel(active_isa()); }

}  // namespace pyrt::cpu
