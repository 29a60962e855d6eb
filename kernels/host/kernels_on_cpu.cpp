// The C entry points through which Python (ctypes) runs cnnlite's CUDA kernels on the CPU.
//
// Every kernel template of kernels/*.cu gets four entry points: <kernel>_float and
// <kernel>_double launch it,
//
//     void <kernel>_<type>(unsigned blocks, unsigned threads_per_block, void** args)
//
// with args[i] pointing at the value of the kernel's i-th argument, as cudaLaunchKernel takes
// them; <kernel>_<type>_parameters(unsigned* sizes, unsigned* kinds) writes the byte size and
// the kind ('p' pointer, 'f' float, 'i' signed, 'u' unsigned) of each parameter and returns
// their number, so that the caller can check its arguments first. cnnlite/cuda/host.py builds
// this file and calls the entry points; the launchers in cnnlite/cuda then run unchanged on
// NumPy arrays.
//
// Build:  g++ -std=c++20 -O1 -shared -fPIC -pthread kernels_on_cpu.cpp -o kernels_on_cpu.so
// (cnnlite.cuda.host.build runs $CXX instead of g++ when it is set, e.g. CXX=clang++).
// To step through a kernel, build with -g -O0 instead, run Python under gdb and set a
// breakpoint on the kernel (e.g. `break col2im<float>`); `thread N` moves between the threads
// of the block.
#include "cuda_on_cpu.h"

#include "../activation.cu"
#include "../batchnorm.cu"
#include "../dropout.cu"
#include "../generalized_pool.cu"
#include "../im2col.cu"
#include "../lrn.cu"
#include "../optim.cu"
#include "../pool.cu"
#include "../softmax.cu"

#define ENTRY_POINTS_FOR_TYPE(kernel, T)                                                   \
    extern "C" void kernel##_##T(unsigned blocks, unsigned threads, void** args) {         \
        launch_with_argument_pointers(kernel<T>, dim3(blocks), dim3(threads), args);       \
    }                                                                                      \
    extern "C" unsigned kernel##_##T##_parameters(unsigned* sizes, unsigned* kinds) {      \
        return parameter_types(kernel<T>, sizes, kinds);                                   \
    }

#define ENTRY_POINTS(kernel)               \
    ENTRY_POINTS_FOR_TYPE(kernel, float)   \
    ENTRY_POINTS_FOR_TYPE(kernel, double)

// im2col.cu
ENTRY_POINTS(im2col)
ENTRY_POINTS(col2im)

// pool.cu
ENTRY_POINTS(max_pool2d_forward)
ENTRY_POINTS(max_pool2d_backward)
ENTRY_POINTS(avg_pool2d_forward)
ENTRY_POINTS(avg_pool2d_backward)
ENTRY_POINTS(stochastic_pool2d_sample)
ENTRY_POINTS(probability_weighted_pool2d_forward)
ENTRY_POINTS(probability_weighted_window_statistics)
ENTRY_POINTS(probability_weighted_pool2d_backward)

// lrn.cu
ENTRY_POINTS(lrn_forward)
ENTRY_POINTS(lrn_backward)

// batchnorm.cu
ENTRY_POINTS(batch_norm_statistics)
ENTRY_POINTS(batch_norm_forward)
ENTRY_POINTS(batch_norm_grad_statistics)
ENTRY_POINTS(batch_norm_backward)

// activation.cu
ENTRY_POINTS(relu_forward)
ENTRY_POINTS(relu_backward)
ENTRY_POINTS(leaky_relu_forward)
ENTRY_POINTS(leaky_relu_backward)
ENTRY_POINTS(elu_forward)
ENTRY_POINTS(elu_backward)
ENTRY_POINTS(sigmoid_forward)
ENTRY_POINTS(sigmoid_backward)
ENTRY_POINTS(tanh_forward)
ENTRY_POINTS(tanh_backward)

// dropout.cu
ENTRY_POINTS(dropout_forward)

// softmax.cu
ENTRY_POINTS(softmax_forward)
ENTRY_POINTS(log_softmax_forward)
ENTRY_POINTS(softmax_backward)
ENTRY_POINTS(log_softmax_backward)
ENTRY_POINTS(cross_entropy_forward)
ENTRY_POINTS(cross_entropy_backward)

// optim.cu
ENTRY_POINTS(sgd_momentum_update)
ENTRY_POINTS(adam_update)

// generalized_pool.cu
ENTRY_POINTS(gated_max_ave_pool2d_forward)
ENTRY_POINTS(gated_max_ave_window_coefficients)
ENTRY_POINTS(gated_max_ave_pool2d_backward)
ENTRY_POINTS(tree_pool2d_forward)
ENTRY_POINTS(tree_window_coefficients)
ENTRY_POINTS(tree_pool2d_backward)
ENTRY_POINTS(window_mask_gradients)
