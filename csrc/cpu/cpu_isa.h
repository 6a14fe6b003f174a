// CPU ISA levels pyrt has kernels for, detected with CPUID and XGETBV (the OS must save the
// wider registers), and the kernel table for each.
#pragma once
#include <string>

#include "cpu/kernels.h"

namespace pyrt::cpu {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);
bool cpu_supports(Isa isa);   // hardware + OS
bool build_has(Isa isa);      // compiled into this build
Isa active_isa();             // best supported, or PYRT_FORCE_CPU_ISA / set_cpu_isa
void set_active_isa(Isa isa);
MatmulKernel matmul_kernel(Isa isa);
// The avx512 level already requires AVX-512 VNNI (cpu_supports), so its int8 kernel may use vpdpbusd.
Int8MatmulKernel int8_matmul_kernel(Isa isa);
QuantizeActivationsKernel quantize_activations_kernel(Isa isa);  // AVX2 uses the scalar one

}  // namespace pyrt::cpu
