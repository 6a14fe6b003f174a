// Element-wise sums and the dot product on the active ISA's vector math.
#include "cpu/ops_cpu.h"
#include "cpu/vector_math.h"

namespace pyrt::cpu {

void axpy(float a, const float* x, float* y, int64_t n) { vector_math().axpy(a, x, y, n); }

float dot(const float* a, const float* b, int64_t n) { return vector_math().dot(a, b, n); }

}  // namespace pyrt::cpu
