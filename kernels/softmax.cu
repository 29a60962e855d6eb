// Softmax, log-softmax and cross-entropy along one axis.
//
// The launchers view the input as (outer, K, inner) with the K classes on the middle axis,
// so that any axis of any shape fits: a "row" is one (o, i) pair, and its K values lie
// `inner` apart, starting at o*K*inner + i. For logits (N, K) that is outer = N, inner = 1;
// for a segmentation map (N, K, H, W), outer = N and inner = H*W.
//
// Each row is a reduction (its maximum, its sum of exponentials), so one block takes one row:
// block b handles rows r = b, b + gridDim.x, ... (grid-stride over rows) and its threads
// stride over the K values of the row, then combine with block_max / block_sum (common.cuh).
// blockDim.x <= MAX_BLOCK_THREADS; the launchers pick the smallest power of two >= K (at
// least a warp, at most MAX_BLOCK_THREADS), so small rows do not leave most threads idle.
//
// Subtracting the row's maximum m before exponentiating changes nothing (e^-m cancels) and
// keeps every e^x finite:  log softmax(x)_k = (x_k - m) - log(sum_j e^(x_j - m)).
#include "common.cuh"

// Where row r's first value is; its k-th value is at row_start(...) + k*inner.
__device__ __forceinline__ long long row_start(long long r, long long K, long long inner) {
    return (r / inner) * K * inner + r % inner;
}

// The row's maximum m and log(sum_k e^(x_k - m)), for every thread of the block.
template <typename T>
__device__ void row_log_sum_exp(const T* x, long long K, long long inner, double* m,
                                double* log_sum) {
    double local_max = x[0];
    for (long long k = threadIdx.x; k < K; k += blockDim.x) {
        const double value = x[k * inner];
        if (value > local_max || value != value) local_max = value;
    }
    *m = block_max(local_max);
    double local_sum = 0;
    for (long long k = threadIdx.x; k < K; k += blockDim.x)
        local_sum += exp_of(T(x[k * inner] - *m));
    *log_sum = log(block_sum(local_sum));
}

// y_k = e^(x_k - m) / sum_j e^(x_j - m).
//
// Thread mapping: one block per row (grid-stride over the outer*inner rows), threads over k.
template <typename T>
__global__ void softmax_forward(const T* x, T* y, long long rows, long long K, long long inner) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const long long start = row_start(r, K, inner);
        double m, log_sum;
        row_log_sum_exp(x + start, K, inner, &m, &log_sum);
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            y[u] = exp_of(T(x[u] - m - log_sum));
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
        double m, log_sum;
        row_log_sum_exp(x + start, K, inner, &m, &log_sum);
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            y[u] = T(x[u] - m - log_sum);
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
        double local_dot = 0;
        for (long long k = threadIdx.x; k < K; k += blockDim.x)
            local_dot += double(gy[start + k * inner]) * y[start + k * inner];
        const double dot = block_sum(local_dot);
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            gx[u] = T(y[u] * (gy[u] - dot));
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
        double local_sum = 0;
        for (long long k = threadIdx.x; k < K; k += blockDim.x) local_sum += gy[start + k * inner];
        const double sum = block_sum(local_sum);
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            gx[u] = T(gy[u] - exp_of(y[u]) * sum);
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
        double m, log_sum;
        row_log_sum_exp(logits + start, K, inner, &m, &log_sum);
        double local_sum = 0;
        for (long long k = threadIdx.x; k < K; k += blockDim.x) {
            const long long u = start + k * inner;
            const double log_p = logits[u] - m - log_sum;
            log_probs[u] = T(log_p);
            local_sum += log_p;
        }
        const double sum_log_p = block_sum(local_sum);
        if (threadIdx.x == 0) {
            const double log_p_target = logits[start + target[r] * inner] - m - log_sum;
            loss[r] = T(-(1 - label_smoothing) * log_p_target - label_smoothing / K * sum_log_p);
        }
    }
}

// dloss/dlogits_k = (p_k - q_k) * dL/dloss of the row, from log p.
//
// Thread mapping: one thread per element t in [0, N*K*inner) of (n, k, i) (no reduction
// here). Grid-stride loop over t.
template <typename T>
__global__ void cross_entropy_backward(const T* log_probs, const long long* target,
                                       const T* gloss, T* glogits, long long N, long long K,
                                       long long inner, double label_smoothing) {
    for (long long t = first_index(); t < N * K * inner; t += grid_stride()) {
        const long long n = t / (K * inner), k = (t / inner) % K, i = t % inner;
        const long long r = n * inner + i;
        const double q = (1 - label_smoothing) * (k == target[r]) + label_smoothing / K;
        glogits[t] = T((exp_of(log_probs[t]) - q) * gloss[r]);
    }
}
