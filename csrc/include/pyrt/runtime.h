// Process-wide settings: threads and the CPU ISA in use (from PYRT_NUM_THREADS / PYRT_FORCE_CPU_ISA
// at start, changeable at run time).
#pragma once
#include <string>
#include <vector>

namespace pyrt {

int num_threads();
void set_num_threads(int n);  // n <= 0 restores the default (PYRT_NUM_THREADS or all cores)

// "avx512", "avx2" or "scalar"
std::string cpu_isa();
void set_cpu_isa(const std::string& name);       // throws Unsupported if this CPU or build lacks it
std::vector<std::string> cpu_isas_supported();   // by CPU, OS and build, best first
std::vector<std::string> cpu_features();         // what CPUID reports (for bug reports)

}  // namespace pyrt
