// Dropout masks drawn on the GPU.
//
// Inverted dropout keeps each element with probability 1 - p and scales the kept ones by
// 1 / (1 - p):  mask[t] = [u_t >= p] / (1 - p),  y = x * mask,  and backward gx = gy * mask.
//
// The uniform numbers u_t come from a counter-based generator: u_t is a hash of (seed, t), so
// any thread can draw its own number without a generator state to share, and the same seed
// gives the same mask on every GPU, for every launch shape, and in NumPy (the tests recompute
// it there). The hash is the finaliser of the SplitMix64 generator (Steele, Lea and Flood,
// 2014): three xor-shift-multiply rounds that turn consecutive counters into unrelated bits.
#include "common.cuh"

// A uniform number in [0, 1) with 24 random bits (float has 24 significant bits, so it is
// exact in both float and double), from the counter t of stream `seed`.
__device__ __forceinline__ double counter_uniform(unsigned long long seed, long long t) {
    unsigned long long z = seed + (unsigned long long)(t + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    return (double)(z >> 40) / 16777216.0;  // the top 24 bits / 2^24
}

// mask[t] = scale if u_t >= p else 0 (scale = 1 / (1 - p), or 0 when p = 1), y[t] = x[t] * mask[t].
//
// Thread mapping: one thread per element t in [0, count) of the flattened array; each thread
// draws its own u_t. Grid-stride loop over t.
template <typename T>
__global__ void dropout_forward(const T* x, T* y, T* mask, long long count, double p,
                                unsigned long long seed, T scale) {
    for (long long t = first_index(); t < count; t += grid_stride()) {
        const T keep = counter_uniform(seed, t) >= p ? scale : T(0);
        mask[t] = keep;
        y[t] = x[t] * keep;
    }
}
