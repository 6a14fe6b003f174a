#include "cpu/cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <vector>

#include "pyrt/errors.h"
#include "pyrt/runtime.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define PYRT_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace pyrt::cpu {
namespace {

struct Features {
  bool avx2 = false, fma = false, f16c = false, avx512f = false, avx512bw = false, avx512vl = false,
       avx512dq = false, avx512vnni = false, avx512bf16 = false, avx512fp16 = false, os_ymm = false,
       os_zmm = false;
};

#ifdef PYRT_X86
void cpuid(int leaf, int sub, unsigned r[4]) {
#if defined(_MSC_VER)
  __cpuidex(reinterpret_cast<int*>(r), leaf, sub);
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}
unsigned long long xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}
#endif

Features detect() {
  Features f;
#ifdef PYRT_X86
  unsigned r[4];
  cpuid(0, 0, r);
  const unsigned max_leaf = r[0];
  cpuid(1, 0, r);
  const bool osxsave = r[2] & (1u << 27);
  f.fma = r[2] & (1u << 12);
  f.f16c = r[2] & (1u << 29);
  if (osxsave) {
    const unsigned long long xcr0 = xgetbv0();
    f.os_ymm = (xcr0 & 0x6) == 0x6;       // XMM and YMM state
    f.os_zmm = (xcr0 & 0xe6) == 0xe6;     // plus opmask, ZMM_Hi256, Hi16_ZMM
  }
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    f.avx2 = r[1] & (1u << 5);
    f.avx512f = r[1] & (1u << 16);
    f.avx512dq = r[1] & (1u << 17);
    f.avx512bw = r[1] & (1u << 30);
    f.avx512vl = r[1] & (1u << 31);
    f.avx512vnni = r[2] & (1u << 11);
    f.avx512fp16 = r[3] & (1u << 23);
    cpuid(7, 1, r);
    f.avx512bf16 = r[0] & (1u << 5);
  }
#endif
  return f;
}

const Features& features() {
  static const Features f = detect();
  return f;
}

Isa best_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2})
    if (cpu_supports(isa) && build_has(isa)) return isa;
  return Isa::scalar;
}

Isa initial_isa() {
  const char* forced = std::getenv("PYRT_FORCE_CPU_ISA");
  if (forced && *forced) {
    Isa isa;
    PYRT_CHECK(isa_from_name(forced, &isa), Unsupported, "PYRT_FORCE_CPU_ISA='", forced,
               "' is not one of avx512, avx2, scalar");
    PYRT_CHECK(cpu_supports(isa) && build_has(isa), Unsupported, "PYRT_FORCE_CPU_ISA='", forced,
               "' is not supported by this CPU or build");
    return isa;
  }
  return best_isa();
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "scalar";
  }
}

bool isa_from_name(const std::string& name, Isa* out) {
  for (Isa isa : {Isa::avx512, Isa::avx2, Isa::scalar})
    if (name == isa_name(isa)) return *out = isa, true;
  return false;
}

bool cpu_supports(Isa isa) {
  const Features& f = features();
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return f.os_ymm && f.avx2 && f.fma && f.f16c;
    case Isa::avx512:
      return f.os_zmm && f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl &&
             f.avx512dq && f.avx512vnni;
  }
  return false;
}

bool build_has(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
#ifdef PYRT_HAVE_AVX2_KERNELS
    case Isa::avx2: return true;
#endif
#ifdef PYRT_HAVE_AVX512_KERNELS
    case Isa::avx512: return true;
#endif
    default: return false;
  }
}

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }
void set_active_isa(Isa isa) { active_slot().store(static_cast<int>(isa)); }

MatmulKernel matmul_kernel(Isa isa) {
  switch (isa) {
#ifdef PYRT_HAVE_AVX512_KERNELS
    case Isa::avx512: return avx512::matmul;
#endif
#ifdef PYRT_HAVE_AVX2_KERNELS
    case Isa::avx2: return avx2::matmul;
#endif
    default: return scalar::matmul;
  }
}

Int8MatmulKernel int8_matmul_kernel(Isa isa) {
  switch (isa) {
#ifdef PYRT_HAVE_AVX512_KERNELS
    case Isa::avx512: return avx512::int8_matmul;
#endif
#ifdef PYRT_HAVE_AVX2_KERNELS
    case Isa::avx2: return avx2::int8_matmul;
#endif
    default: return scalar::int8_matmul;
  }
}

QuantizeActivationsKernel quantize_activations_kernel(Isa isa) {
#ifdef PYRT_HAVE_AVX512_KERNELS
  if (isa == Isa::avx512) return avx512::quantize_activations;
#endif
  (void)isa;
  return scalar::quantize_activations;
}

}  // namespace pyrt::cpu

namespace pyrt {

std::string cpu_isa() { return cpu::isa_name(cpu::active_isa()); }

void set_cpu_isa(const std::string& name) {
  cpu::Isa isa;
  PYRT_CHECK(cpu::isa_from_name(name, &isa), Unsupported, "unknown CPU ISA '", name,
             "' (expected avx512, avx2 or scalar)");
  PYRT_CHECK(cpu::cpu_supports(isa), Unsupported, "this CPU (or its OS) does not support ", name);
  PYRT_CHECK(cpu::build_has(isa), Unsupported, "this build of pyrt has no ", name, " kernels");
  cpu::set_active_isa(isa);
}

std::vector<std::string> cpu_isas_supported() {
  std::vector<std::string> out;
  for (cpu::Isa isa : {cpu::Isa::avx512, cpu::Isa::avx2, cpu::Isa::scalar})
    if (cpu::cpu_supports(isa) && cpu::build_has(isa)) out.emplace_back(cpu::isa_name(isa));
  return out;
}

std::vector<std::string> cpu_features() {
  const auto& f = cpu::features();
  std::vector<std::string> out;
  auto add = [&](bool on, const char* name) { if (on) out.emplace_back(name); };
  add(f.avx2 && f.os_ymm, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f && f.os_zmm, "avx512f");
  add(f.avx512bw && f.os_zmm, "avx512bw");
  add(f.avx512vl && f.os_zmm, "avx512vl");
  add(f.avx512dq && f.os_zmm, "avx512dq");
  add(f.avx512vnni && f.os_zmm, "avx512_vnni");
  add(f.avx512bf16 && f.os_zmm, "avx512_bf16");
  add(f.avx512fp16 && f.os_zmm, "avx512_fp16");
  return out;
}

}  // namespace pyrt
