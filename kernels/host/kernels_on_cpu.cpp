// The C entry points through which Python (ctypes) runs cnnlite's CUDA kernels on the CPU.
//
// Every instantiation of a kernel template of kernels/*.cu (module.name_expressions in
// cnnlite/cuda/module.py: relu_forward<float>, im2col<double, long long>, ...) gets two entry
// points. The first launches it,
//
//     void <symbol>(unsigned blocks, unsigned threads_per_block, void** args)
//
// with args[i] pointing at the value of the kernel's i-th argument, as cudaLaunchKernel takes
// them; <symbol>_parameters(unsigned* sizes, unsigned* kinds) writes the byte size and the kind
// ('p' pointer, 'f' float, 'i' signed, 'u' unsigned) of each parameter and returns their
// number, so that the caller can check its arguments first. The symbol is the name expression
// spelled as a C name: relu_forward_float, im2col_double_long_long.
//
// The kernels are listed once, in cnnlite/cuda/module.py (KERNEL_SOURCES): cnnlite.cuda.host
// writes the file that is compiled, next to the library it builds and named like it
// (cnnlite_kernels_on_cpu.cpp), which includes this file, then every kernels/<topic>.cu and
// one ENTRY_POINT line per instantiation, e.g.
//
//     #include ".../kernels/im2col.cu"
//     ENTRY_POINT(im2col_float_int, im2col<float, int>)
//
// cnnlite.cuda.host.build compiles it with g++ (or $CXX). To step through a kernel, build it
// with debugging information, host.build(folder, ["g++", "-std=c++20", "-g", "-O0", "-shared",
// "-fPIC", "-pthread"]), run Python under gdb and set a breakpoint on the kernel (e.g.
// `break col2im<float, int>`); `thread N` moves between the threads of the block.
#include "cuda_on_cpu.h"

// The two entry points of one instantiation. The instantiation is the variadic argument: the
// comma of kernel<T, Index> would split it into two macro arguments.
#define ENTRY_POINT(symbol, ...)                                                           \
    extern "C" void symbol(unsigned blocks, unsigned threads, void** args) {               \
        launch_with_argument_pointers(__VA_ARGS__, dim3(blocks), dim3(threads), args);     \
    }                                                                                      \
    extern "C" unsigned symbol##_parameters(unsigned* sizes, unsigned* kinds) {            \
        return parameter_types(__VA_ARGS__, sizes, kinds);                                 \
    }
