// Picks the vector math table of an ISA; the tables themselves live in vector_math_<isa>.cc.
#include "cpu/vector_math.h"

namespace pyrt::cpu {

const VectorMath& vector_math(Isa isa) {
  switch (isa) {
#ifdef PYRT_HAVE_AVX512_KERNELS
    case Isa::avx512: return avx512::kVectorMath;
#endif
#ifdef PYRT_HAVE_AVX2_KERNELS
    case Isa::avx2: return avx2::kVectorMath;
#endif
    default: return scalar::kVectorMath;
  }
}

const VectorMath& vector_math() { return vector_math(active_isa()); }

}  // namespace pyrt::cpu
