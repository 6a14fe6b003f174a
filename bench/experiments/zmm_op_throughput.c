/* Throughput of single 512-bit instructions on this CPU, one thread: 12 independent copies per
 * iteration, so latency does not bound them. Used for docs/benchmarks.md ("Nibble groups"): which
 * operations of the exact 4-bit decode compete for the same pipes. Assumes the clock given below
 * (measure it with a dependent scalar add chain; this VM ran at 3.6 GHz).
 *
 *   gcc -O2 -mavx512f bench/experiments/zmm_op_throughput.c -o /tmp/zmm_op_throughput && /tmp/zmm_op_throughput 3.6
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec a; clock_gettime(CLOCK_MONOTONIC,&a); return a.tv_sec+a.tv_nsec*1e-9;}
#define BODY8(ins) ins(0) ins(1) ins(2) ins(3) ins(4) ins(5) ins(6) ins(7)
#define T(name, insfmt) { long n=20000000; double t0=now(); for(long i=0;i<n;++i){ __asm__ volatile( \
  insfmt("zmm0") insfmt("zmm1") insfmt("zmm2") insfmt("zmm3") insfmt("zmm4") insfmt("zmm5") insfmt("zmm6") insfmt("zmm7") \
  insfmt("zmm8") insfmt("zmm9") insfmt("zmm10") insfmt("zmm11") ::: "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm20","xmm21"); } \
  double t=now()-t0; printf("%-14s %.2f per cycle\n", name, 12.0*n/t/(ghz*1e9)); }
#define FMA(r) "vfmadd231ps %%zmm20, %%zmm21, %%" r "\n\t"
#define DP(r) "vdpbf16ps %%zmm20, %%zmm21, %%" r "\n\t"
#define PPS(r) "vpermps %%zmm20, %%zmm21, %%" r "\n\t"
#define PW(r) "vpermw %%zmm20, %%zmm21, %%" r "\n\t"
#define SH(r) "vpsrld $4, %%zmm20, %%" r "\n\t"
#define TL(r) "vpternlogd $0xea, %%zmm20, %%zmm21, %%" r "\n\t"
#define ADD(r) "vaddps %%zmm20, %%zmm21, %%" r "\n\t"
#define CVT(r) "vcvtph2ps %%ymm20, %%" r "\n\t"
#define PT2W(r) "vpermt2w %%zmm20, %%zmm21, %%" r "\n\t"
#define MIX(r) "vpsrld $4, %%zmm20, %%" r "\n\t vpermps %%zmm21, %%" r ", %%" r "\n\t"
int main(int argc, char** argv){
 double ghz = argc > 1 ? atof(argv[1]) : 3.6;
 __asm__ volatile("vxorps %%xmm20,%%xmm20,%%xmm20\n\tvxorps %%xmm21,%%xmm21,%%xmm21":::"xmm20","xmm21");
 T("fma",FMA) T("dpbf16",DP) T("vpermps",PPS) T("vpermw",PW) T("vpsrld",SH) T("ternlog",TL) T("addps",ADD) T("cvtph2ps",CVT) T("vpermt2w",PT2W) T("shift+perm(x2)",MIX)
}
