// cuda_on_cpu.h: just enough of CUDA to run cnnlite's kernels on the CPU.
//
// Why: without a GPU, a student can still run a kernel of kernels/*.cu on a small array and
// step through it in a debugger, one thread at a time; the tests run every kernel this way
// and compare it with the reference loops. The kernels compile unchanged: this header gives
// the CUDA words they use a meaning in ordinary C++.
//
// How a launch runs here (launch() below):
//   * the blocks of the grid run one after another (and one launch at a time: call the
//     harness from one thread);
//   * the threads of one block run at the same time, as std::threads, so that __syncthreads()
//     is a real barrier (a std::barrier) among them;
//   * __shared__ means `static`: one copy of the array per kernel, which the threads of the
//     running block share and the next block reuses, as on the GPU, where shared memory lives
//     as long as its block (blocks that run one at a time can share one copy);
//   * threadIdx, blockIdx, blockDim and gridDim are thread_local variables, which launch() sets
//     in each thread before calling the kernel;
//   * atomicAdd is an atomic read-modify-write (std::atomic_ref): the threads of a block do run
//     at the same time, so a plain += could lose an addition, as it would on the GPU.
// Not emulated: warps (no __shfl_*, no warp-synchronous code), streams, dynamic shared memory,
// texture memory, and speed. Nor blocks running at the same time: two blocks never race here,
// so a kernel whose blocks add into the same element gives the right sum with a plain += as
// well as with atomicAdd. These tests cannot show that an atomicAdd between blocks is needed
// (nor a missing __syncthreads(), whose race among one block's threads shows only by chance
// of scheduling); that takes reading the kernel, or a run on the GPU.
#pragma once

#include <math.h>  // expf, powf, ... and the float overloads of exp, pow, ... as on the GPU

#include <atomic>
#include <barrier>
#include <cstddef>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

// Function qualifiers: on the CPU every function is just a function.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x = 1, unsigned int y = 1, unsigned int z = 1) : x(x), y(y), z(z) {}
};
using uint3 = dim3;

// Where the running thread is; set by launch() in every thread it starts.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace cuda_on_cpu {
// The barrier of the block the running thread belongs to.
inline thread_local std::barrier<>* block_barrier = nullptr;
}  // namespace cuda_on_cpu

// Wait until every thread of the block has arrived here.
inline void __syncthreads() { cuda_on_cpu::block_barrier->arrive_and_wait(); }

// *address += value, atomically; returns the old value (as CUDA's atomicAdd does).
template <typename T>
T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}

// kernel<<<grid, block>>>(args...): the blocks one after another, the threads of each block
// as std::threads sharing one barrier.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args... args) {
    const unsigned threads_per_block = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::barrier<> block_barrier(threads_per_block);
                std::vector<std::thread> threads;
                for (unsigned tz = 0; tz < block.z; ++tz)
                    for (unsigned ty = 0; ty < block.y; ++ty)
                        for (unsigned tx = 0; tx < block.x; ++tx)
                            threads.emplace_back([=, &block_barrier] {
                                gridDim = grid;
                                blockDim = block;
                                blockIdx = uint3(bx, by, bz);
                                threadIdx = uint3(tx, ty, tz);
                                cuda_on_cpu::block_barrier = &block_barrier;
                                kernel(args...);
                            });
                for (std::thread& thread : threads) thread.join();
            }
}

// launch() with the arguments given as an array of pointers, args[i] pointing at the value of
// the kernel's i-th argument: the calling convention of cudaLaunchKernel (and of cupy, which
// calls it). The parameter types of `kernel` say how to read each value.
template <typename... Params, std::size_t... I>
void launch_unpacking(void (*kernel)(Params...), dim3 grid, dim3 block, void** args,
                      std::index_sequence<I...>) {
    launch(kernel, grid, block, *static_cast<Params*>(args[I])...);
}

template <typename... Params>
void launch_with_argument_pointers(void (*kernel)(Params...), dim3 grid, dim3 block,
                                   void** args) {
    launch_unpacking(kernel, grid, block, args, std::index_sequence_for<Params...>{});
}

// What kind of value a parameter of type P holds: 'p' a pointer, 'f' a floating-point number,
// 'i' a signed and 'u' an unsigned integer. A size alone would let a double through for a
// long long (8 bytes each), whose bits the kernel would then read as a huge integer.
template <typename P>
constexpr unsigned parameter_kind() {
    if constexpr (std::is_pointer_v<P>) return 'p';
    else if constexpr (std::is_floating_point_v<P>) return 'f';
    else if constexpr (std::is_signed_v<P>) return 'i';
    else return 'u';
}

// The byte size and the kind (parameter_kind) of each of the kernel's parameters, written to
// `sizes` and `kinds`; returns how many parameters it has. A GPU reads each argument as the
// bytes of its parameter's type whatever was passed, so a float given for a double, a double
// for a long long, or one argument too few, goes unnoticed there; the harness compares these
// with the caller's arguments before launching.
template <typename... Params>
unsigned parameter_types(void (*)(Params...), unsigned* sizes, unsigned* kinds) {
    const unsigned each_size[] = {unsigned(sizeof(Params))...};
    const unsigned each_kind[] = {parameter_kind<Params>()...};
    for (unsigned i = 0; i < sizeof...(Params); ++i) {
        sizes[i] = each_size[i];
        kinds[i] = each_kind[i];
    }
    return sizeof...(Params);
}
