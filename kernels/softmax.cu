// Softmax, log-softmax and cross-entropy along one axis.
//
// The launchers view the input as (outer, K, inner) with the K classes on the middle axis,
// so that any axis of any shape fits: a "row" is one (o, i) pair, and its K values lie
// `inner` apart, starting at o*K*inner + i. For logits (N, K) that is outer = N, inner = 1;
// for a segmentation map (N, K, H, W), outer = N and inner = H*W.
//
// Subtracting the row's maximum m before exponentiating changes nothing (e^-m cancels) and
// keeps every e^x finite:  log softmax(x)_k = (x_k - m) - log(sum_j e^(x_j - m)).
//
// Two ways to share out the rows; the launchers (cnnlite/cuda/softmax.py, one_thread_per_row)
// pick one by `inner` and the number of rows:
//
// * inner = 1 (the classes are the last axis): a row's K values are contiguous. One BLOCK per
//   row: its threads stride over k, so neighbouring threads read neighbouring values, and
//   they combine their partial maxima and sums with block_max / block_sum (common.cuh).
//   blockDim.x <= MAX_BLOCK_THREADS; the launchers pick the smallest power of two >= K (at
//   least a warp, at most MAX_BLOCK_THREADS), so small rows do not leave most threads idle.
// * inner > 1 (the classes on an earlier axis, e.g. axis 1 of (N, K, H, W)): a row's values
//   lie `inner` apart. The threads of a block-per-row kernel would then read addresses
//   inner*sizeof(T) bytes apart, each from its own 32-byte memory sector, of which it uses
//   4 or 8 bytes. So the `_strided` kernels give each row to one THREAD, which walks k = 0 ..
//   K-1 alone: at every step neighbouring threads (rows r, r+1: positions i, i+1) read
//   neighbouring addresses, and every byte fetched is used. That suits many rows of few
//   classes, as in segmentation (N*H*W rows of 20 to 150 classes). Fewer rows than classes
//   go to the block-per-row kernels after all: a handful of threads each walking a long row
//   alone would be slower than whole blocks reading strided values.
// The cross-entropy backward has no reduction: one thread per element whatever the axis, and
// neighbouring threads take neighbouring elements.
//
// Precision: the kernels compute and accumulate in their own type T, so a float kernel does
// no double arithmetic per element (double runs at 1/64 of the float rate on recent consumer
// GPUs). Double is left only where it costs nothing: the block reductions (block_max and
// block_sum of common.cuh: one value per thread) and each row's final loss in cross_entropy.
// A block's threads each add K/blockDim.x terms in T (118 for K = 30000), too few to drift;
// a thread that adds up a whole row alone (the _strided kernels) uses Kahan's compensated sum
// (CompensatedSum below). The largest relative error of the float softmax against the float64
// softmax of the same float32 logits (standard normal times 3; measured through the CPU
// harness, where tests/test_cuda_softmax_host.py holds it to 3 times these):
//                                        K = 10      1000     30000
//   float accumulation (either kernel)   1.0e-6    1.9e-6    2.3e-6
//   double accumulation                  0.5e-6    1.0e-6    1.0e-6
//   _strided with a plain float sum      0.9e-6    3.2e-6    4.0e-5
// Float accumulation costs one rounding of log y (down to -30 in these rows: 1.9e-6 in
// float) where double accumulation rounded to half of one; e^(log y) turns that absolute
// error into y's relative error, and log-softmax's absolute error is the same numbers.
//
// A row of K = 0 values has nothing to compute; the launchers launch nothing for it (on a
// GPU an empty array has a null pointer), and the softmax kernels read no value of an empty
// row. (A cross-entropy row cannot be empty: no target class lies in [0, 0).)
#include "common.cuh"

// Where row r's first value is; its k-th value is at row_start(...) + k*inner.
__device__ __forceinline__ long long row_start(long long r, long long K, long long inner) {
    return (r / inner) * K * inner + r % inner;
}

// The cross-entropy of one row from its log-probabilities: -(1 - eps) log p_target
// - eps/K sum_k log p_k. Without smoothing (eps = 0) the second term is left out, not
// multiplied by 0: a row with a logit of -inf has sum_k log p_k = -inf, and 0 * -inf is NaN
// (the CPU kernels leave it out too).
template <typename T>
__device__ __forceinline__ T row_loss(T log_p_target, double sum_log_p, double label_smoothing,
                                      long long K) {
    double loss = -(1 - label_smoothing) * log_p_target;
    if (label_smoothing != 0) loss -= label_smoothing / K * sum_log_p;
    return T(loss);
}

// --- one block per row (inner = 1) ------------------------------------------------------------

// The row's maximum m and log(sum_k e^(x_k - m)), for every thread of the block. Each thread
// starts its maximum from a value of the row: its own first one, or the row's last for a
// thread past the end of a row shorter than the block. An empty row reads nothing.
template <typename T>
__device__ void row_log_sum_exp(const T* x, long long K, long long inner, T* m, T* log_sum) {
    T local_max = K > 0 ? x[smaller(threadIdx.x, K - 1) * inner] : T(0);
    for (long long k = threadIdx.x; k < K; k += blockDim.x) {
        const T value = x[k * inner];
        if (value > local_max || value != value) local_max = value;
    }
    *m = T(block_max(local_max));
    T local_sum = 0;
    for (long long k = threadIdx.x; k < K; k += blockDim.x) local_sum += exp_of(x[k * inner] - *m);
    *log_sum = log_of(T(block_sum(local_sum)));
}

// y_k = e^(x_k - m) / sum_j e^(x_j - m), as e^((x_k - m) - log sum_j e^(x_j - m)).
//
// Thread mapping: one block per row (grid-stride over the outer*inner rows), threads over k.
template <typename T>
__global__ void softmax_forward(const T* x, T* y, long long rows, long long K, long long inner) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long start = row_start(r, K, inner);
        T m, log_sum;
        row_log_sum_exp(x + start, K, inner, &m, &log_sum);
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            y[u] = exp_of(x[u] - m - log_sum);
        }
    }
}

// y_k = (x_k - m) - log(sum_j e^(x_j - m)).
//
// Thread mapping: one block per row (grid-stride over rows), threads over k.
template <typename T>
__global__ void log_softmax_forward(const T* x, T* y, long long rows, long long K,
                                    long long inner) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long start = row_start(r, K, inner);
        T m, log_sum;
        row_log_sum_exp(x + start, K, inner, &m, &log_sum);
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            y[u] = x[u] - m - log_sum;
        }
    }
}

// dL/dx = y * (dL/dy - sum_j dL/dy_j y_j), from softmax's output y.
//
// Thread mapping: one block per row (grid-stride over rows), threads over k.
template <typename T>
__global__ void softmax_backward(const T* y, const T* gy, T* gx, long long rows, long long K,
                                 long long inner) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long start = row_start(r, K, inner);
        T local_dot = 0;
        for (long long k = threadIdx.x; k < K; k += blockDim.x)
            local_dot += gy[start + k * inner] * y[start + k * inner];
        const T dot = T(block_sum(local_dot));
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            gx[u] = y[u] * (gy[u] - dot);
        }
    }
}

// dL/dx = dL/dy - softmax(x) * sum_j dL/dy_j, from log-softmax's output y (softmax = e^y).
//
// Thread mapping: one block per row (grid-stride over rows), threads over k.
template <typename T>
__global__ void log_softmax_backward(const T* y, const T* gy, T* gx, long long rows,
                                     long long K, long long inner) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long start = row_start(r, K, inner);
        T local_sum = 0;
        for (long long k = threadIdx.x; k < K; k += blockDim.x) local_sum += gy[start + k * inner];
        const T sum = T(block_sum(local_sum));
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            gx[u] = gy[u] - exp_of(y[u]) * sum;
        }
    }
}

// Cross-entropy of softmax(logits) with the smoothed one-hot target
// q_k = (1 - eps) [k = target] + eps / K, per row:  loss = -sum_k q_k log p_k.
// Also writes log p (the log-softmax), which the backward needs.
// logits: (N, K, inner) as rows r = n*inner + i; target, loss: (N*inner).
//
// Thread mapping: one block per row (grid-stride over the N*inner rows), threads over k;
// thread 0 writes the row's loss.
template <typename T>
__global__ void cross_entropy_forward(const T* logits, const long long* target, T* log_probs,
                                      T* loss, long long rows, long long K, long long inner,
                                      double label_smoothing) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long start = row_start(r, K, inner);
        T m, log_sum;
        row_log_sum_exp(logits + start, K, inner, &m, &log_sum);
        T local_sum = 0;
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            const T log_p = logits[u] - m - log_sum;
            log_probs[u] = log_p;
            local_sum += log_p;
        }
        const double sum_log_p = block_sum(local_sum);
        if (threadIdx.x == 0) {
            const T log_p_target = logits[start + target[r] * inner] - m - log_sum;
            loss[r] = row_loss(log_p_target, sum_log_p, label_smoothing, K);
        }
    }
}

// --- one thread per row (inner > 1): the _strided kernels ---------------------------------------

// Kahan's compensated sum in T, for the sums that one thread adds up alone. A float sum of
// K terms added one after another drifts by up to K roundings (by 4e-5 of a softmax for
// K = 30000, measured); `lost` keeps the low-order bits that each addition rounds away and
// puts them back into the next one, so the sum stays within a couple of roundings of the
// exact one for any K, for three more float additions per term. The compiler must keep
// (next - sum) - corrected as written: no fast-math options (cupy's NVRTC and the harness
// use none).
template <typename T>
struct CompensatedSum {
    T sum = 0, lost = 0;
    __device__ void add(T value) {
        const T corrected = value - lost;
        const T next = sum + corrected;
        // Once the sum is infinite (a log-probability of -inf) there is nothing to compensate,
        // and (next - sum) would be inf - inf = NaN; next - next is 0 for finite values only.
        lost = next - next == 0 ? (next - sum) - corrected : T(0);
        sum = next;
    }
};

// The maximum m and log(sum_k e^(x_k - m)) of the row x[0], x[inner], ..., x[(K-1)*inner],
// which one thread walks alone. The maximum starts from the row's first value, inside the
// loop, so that an empty row reads nothing.
template <typename T>
__device__ void strided_log_sum_exp(const T* x, long long K, long long inner, T* m,
                                    T* log_sum) {
    T row_max = 0;
    for (long long k = 0; k < K; ++k) {
        const T value = x[k * inner];
        if (k == 0 || value > row_max || value != value) row_max = value;
    }
    CompensatedSum<T> sum;
    for (long long k = 0; k < K; ++k) sum.add(exp_of(x[k * inner] - row_max));
    *m = row_max;
    *log_sum = log_of(sum.sum);
}

// softmax_forward for rows of values `inner` apart.
//
// Thread mapping: one thread per row r in [0, outer*inner) (grid-stride loop over r), which
// walks the row's K values; neighbouring threads read neighbouring addresses at every k.
template <typename T>
__global__ void softmax_forward_strided(const T* x, T* y, long long rows, long long K,
                                        long long inner) {
    for (long long r = first_index(); r < rows; r += grid_stride()) {
        const long long start = row_start(r, K, inner);
        T m, log_sum;
        strided_log_sum_exp(x + start, K, inner, &m, &log_sum);
        for (long long k = 0; k < K; ++k) {
            const long long u = start + k * inner;
            y[u] = exp_of(x[u] - m - log_sum);
        }
    }
}

// log_softmax_forward for rows of values `inner` apart.
//
// Thread mapping: one thread per row (grid-stride loop over rows), which walks its K values.
template <typename T>
__global__ void log_softmax_forward_strided(const T* x, T* y, long long rows, long long K,
                                            long long inner) {
    for (long long r = first_index(); r < rows; r += grid_stride()) {
        const long long start = row_start(r, K, inner);
        T m, log_sum;
        strided_log_sum_exp(x + start, K, inner, &m, &log_sum);
        for (long long k = 0; k < K; ++k) {
            const long long u = start + k * inner;
            y[u] = x[u] - m - log_sum;
        }
    }
}

// softmax_backward for rows of values `inner` apart.
//
// Thread mapping: one thread per row (grid-stride loop over rows), which walks its K values.
template <typename T>
__global__ void softmax_backward_strided(const T* y, const T* gy, T* gx, long long rows,
                                         long long K, long long inner) {
    for (long long r = first_index(); r < rows; r += grid_stride()) {
        const long long start = row_start(r, K, inner);
        CompensatedSum<T> dot;
        for (long long k = 0; k < K; ++k) dot.add(gy[start + k * inner] * y[start + k * inner]);
        for (long long k = 0; k < K; ++k) {
            const long long u = start + k * inner;
            gx[u] = y[u] * (gy[u] - dot.sum);
        }
    }
}

// log_softmax_backward for rows of values `inner` apart.
//
// Thread mapping: one thread per row (grid-stride loop over rows), which walks its K values.
template <typename T>
__global__ void log_softmax_backward_strided(const T* y, const T* gy, T* gx, long long rows,
                                             long long K, long long inner) {
    for (long long r = first_index(); r < rows; r += grid_stride()) {
        const long long start = row_start(r, K, inner);
        CompensatedSum<T> sum;
        for (long long k = 0; k < K; ++k) sum.add(gy[start + k * inner]);
        for (long long k = 0; k < K; ++k) {
            const long long u = start + k * inner;
            gx[u] = gy[u] - exp_of(y[u]) * sum.sum;
        }
    }
}

// cross_entropy_forward for logits (N, K, inner > 1), e.g. a segmentation map.
//
// Thread mapping: one thread per row r = n*inner + i (grid-stride loop over the N*inner
// rows), which walks its K values and writes the row's loss.
template <typename T>
__global__ void cross_entropy_forward_strided(const T* logits, const long long* target,
                                              T* log_probs, T* loss, long long rows,
                                              long long K, long long inner,
                                              double label_smoothing) {
    for (long long r = first_index(); r < rows; r += grid_stride()) {
        const long long start = row_start(r, K, inner);
        T m, log_sum;
        strided_log_sum_exp(logits + start, K, inner, &m, &log_sum);
        CompensatedSum<T> sum_log_p;
        for (long long k = 0; k < K; ++k) {
            const long long u = start + k * inner;
            const T log_p = logits[u] - m - log_sum;
            log_probs[u] = log_p;
            sum_log_p.add(log_p);
        }
        const T log_p_target = logits[start + target[r] * inner] - m - log_sum;
        loss[r] = row_loss(log_p_target, double(sum_log_p.sum), label_smoothing, K);
    }
}

// --- cross-entropy backward, either axis ------------------------------------------------------

// dloss/dlogits_k = (p_k - q_k) * dL/dloss of the row, from log p.
//
// Thread mapping: one thread per element t in [0, N*K*inner) of (n, k, i) (no reduction
// here). Grid-stride loop over t.
template <typename T>
__global__ void cross_entropy_backward(const T* log_probs, const long long* target,
                                       const T* gloss, T* glogits, long long N, long long K,
                                       long long inner, double label_smoothing) {
    // q_k in T, worked out once: per element, only float arithmetic in a float kernel.
    const T q_other = T(label_smoothing / K);
    const T q_target = T(1 - label_smoothing + label_smoothing / K);
    for (long long t = first_index(); t < N * K * inner; t += grid_stride()) {
        const long long n = t / (K * inner), k = (t / inner) % K, i = t % inner;
        const long long r = n * inner + i;
        glogits[t] = (exp_of(log_probs[t]) - (k == target[r] ? q_target : q_other)) * gloss[r];
    }
}
