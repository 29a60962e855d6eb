// What every kernel file shares: index helpers, the accumulator type, math in T, block sums.
//
// Conventions of cnnlite's kernels (read these once, they hold in every .cu file):
//
// * Grids and blocks are 1-d. Every kernel walks its work with a grid-stride loop
//
//       for (long long t = first_index(); t < count; t += grid_stride()) { ... }
//
//   so that any grid gives the same result: the launchers in cnnlite/cuda pick one that fills
//   the GPU, the CPU harness (kernels/host) a tiny one that a student can step through.
// * Indices are long long: ResNet-50's first column matrix at batch 64 has 1.2e8 entries, and
//   products of sizes overflow a 32-bit int long before the arrays themselves do. (im2col.cu's
//   kernels, whose time goes into index divisions, also come with int indices, which their
//   launcher picks when every index of the call fits.)
// * Each thread sums in the kernel's own type T (float is 1/64 of double's speed on GeForce
//   and L4/L40 GPUs), kept accurate by how the sums are split: batchnorm.cu gives each thread
//   at most 256 values and uses Welford's update, softmax.cu's block kernels share a row among
//   a block's threads and its _strided ones use Kahan's compensation where one thread takes a
//   whole row. The threads' results are then combined in double (block_sum, block_max below).
//   Each file states the error it measured against float64.
// * Arrays are C-contiguous; the launchers make sure of it.
// * No #include: NVRTC (which cupy compiles with) has no standard headers. cnnlite/cuda pastes
//   this file in place of the `#include "common.cuh"` line before compiling a .cu file.
#ifndef CNNLITE_COMMON_CUH
#define CNNLITE_COMMON_CUH

// The largest block the kernels with block reductions are launched with (the size of their
// __shared__ arrays). cnnlite/cuda/module.py holds the same number.
#define MAX_BLOCK_THREADS 256

// This thread's first work item, and the distance to its next one (all threads of the grid).
__device__ __forceinline__ long long first_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long grid_stride() {
    return (long long)gridDim.x * blockDim.x;
}

__device__ __forceinline__ long long smaller(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ long long larger(long long a, long long b) { return a > b ? a : b; }

// Math in the kernel's type T: the float versions (expf, ...) are several times faster on a
// GPU than the double ones, so a float kernel must not call exp(double) by accident.
__device__ __forceinline__ float exp_of(float x) { return expf(x); }
__device__ __forceinline__ double exp_of(double x) { return exp(x); }
__device__ __forceinline__ float expm1_of(float x) { return expm1f(x); }
__device__ __forceinline__ double expm1_of(double x) { return expm1(x); }
__device__ __forceinline__ float log_of(float x) { return logf(x); }
__device__ __forceinline__ double log_of(double x) { return log(x); }
__device__ __forceinline__ float tanh_of(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_of(double x) { return tanh(x); }
__device__ __forceinline__ float sqrt_of(float x) { return sqrtf(x); }
__device__ __forceinline__ double sqrt_of(double x) { return sqrt(x); }
__device__ __forceinline__ float pow_of(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double pow_of(double x, double y) { return pow(x, y); }

// The sum of `value` over the threads of the block, returned to every thread of the block.
//
// Tree reduction in shared memory: every round, the first half of the still active slots add
// the second half to themselves, until one slot is left (about log2(blockDim.x) rounds; odd
// counts leave the middle slot alone for a round). Every thread of the block must call it,
// the same number of times, because of the __syncthreads() inside.
__device__ double block_sum(double value) {
    __shared__ double partial[MAX_BLOCK_THREADS];
    partial[threadIdx.x] = value;
    __syncthreads();
    for (unsigned active = blockDim.x; active > 1; active = (active + 1) / 2) {
        unsigned half = (active + 1) / 2;
        if (threadIdx.x < active - half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    double total = partial[0];
    __syncthreads();  // everyone has read partial[0] before the next call overwrites it
    return total;
}

// The maximum of `value` over the threads of the block, the same way. A NaN wins, as in the
// CPU kernels (it must reach the output rather than vanish).
__device__ double block_max(double value) {
    __shared__ double partial[MAX_BLOCK_THREADS];
    partial[threadIdx.x] = value;
    __syncthreads();
    for (unsigned active = blockDim.x; active > 1; active = (active + 1) / 2) {
        unsigned half = (active + 1) / 2;
        if (threadIdx.x < active - half) {
            double other = partial[threadIdx.x + half];
            if (other > partial[threadIdx.x] || other != other) partial[threadIdx.x] = other;
        }
        __syncthreads();
    }
    double best = partial[0];
    __syncthreads();
    return best;
}

#endif  // CNNLITE_COMMON_CUH
