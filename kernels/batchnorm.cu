// Batch normalisation: the batch statistics, the normalisation, and the backward pass.
//
// x: (N, C, L), the input viewed with L positions per channel (H*W for images, 1 for vectors).
// Every channel c has M = N*L values, which lie in N runs of L consecutive numbers:
// value m = n*L + l of channel c sits at x[(n*C + c)*L + l]. cnnlite/reference/norm.py has the
// formulas as loops:
//
//   mean[c] = sum(x[:, c, :]) / M,   var[c] = sum((x[:, c, :] - mean[c])^2) / M
//   y = (x - mean[c]) * inv_std[c] * weight[c] + bias[c]
//   grad_bias[c] = sum(gy[:, c, :]),   grad_weight[c] = sum(gy[:, c, :] * x_hat)
//   gx = weight[c] * inv_std[c] / M * (M * gy - grad_bias[c] - x_hat * grad_weight[c])
//
// The statistics are reductions: one block per channel, its threads striding over the
// channel's M values, then block_sum (common.cuh) adds the threads' partial sums in shared
// memory.
#include "common.cuh"

// Mean and biased variance per channel, in one pass over the data: with d = x - shift,
// mean = shift + sum(d) / M and var = sum(d^2) / M - (sum(d) / M)^2. The shift is one of the
// channel's own values, so d is of the size of the spread, not of the mean, and the
// subtraction does not cancel the variance away (as sum(x^2)/M - mean^2 would when
// |mean| >> std). The same formula as the CPU kernel.
//
// Thread mapping: block b handles channels c = b, b + gridDim.x, ... (grid-stride over
// channels); within it thread k handles values m = k, k + blockDim.x, ... of the channel.
// blockDim.x <= MAX_BLOCK_THREADS.
template <typename T>
__global__ void batch_norm_statistics(const T* x, T* mean, T* var, long long N, long long C,
                                      long long L) {
    const long long M = N * L;
    for (long long c = blockIdx.x; c < C; c += gridDim.x) {
        const double shift = x[c * L];
        double sum = 0, sum_of_squares = 0;
        for (long long m = threadIdx.x; m < M; m += blockDim.x) {
            const double d = x[((m / L) * C + c) * L + m % L] - shift;
            sum += d;
            sum_of_squares += d * d;
        }
        sum = block_sum(sum);
        sum_of_squares = block_sum(sum_of_squares);
        if (threadIdx.x == 0) {
            const double centred_mean = sum / M;
            const double variance = sum_of_squares / M - centred_mean * centred_mean;
            mean[c] = T(shift + centred_mean);
            var[c] = T(variance > 0 ? variance : 0);
        }
    }
}

// y = (x - mean[c]) * inv_std[c] * weight[c] + bias[c].
//
// Thread mapping: one thread per element t in [0, N*C*L), channel c = (t / L) % C.
// Grid-stride loop over t.
template <typename T>
__global__ void batch_norm_forward(const T* x, const T* mean, const T* inv_std, const T* weight,
                                   const T* bias, T* y, long long N, long long C, long long L) {
    for (long long t = first_index(); t < N * C * L; t += grid_stride()) {
        const long long c = (t / L) % C;
        y[t] = (x[t] - mean[c]) * (inv_std[c] * weight[c]) + bias[c];
    }
}

// grad_bias[c] = sum(gy) and grad_weight[c] = sum(gy * x_hat) = inv_std[c] * sum(gy * (x - mean))
// over the channel's M values.
//
// Thread mapping: as batch_norm_statistics, one block per channel (grid-stride over channels),
// the block's threads striding over the channel's values, then two block sums.
template <typename T>
__global__ void batch_norm_grad_statistics(const T* gy, const T* x, const T* mean,
                                           const T* inv_std, T* grad_bias, T* grad_weight,
                                           long long N, long long C, long long L) {
    const long long M = N * L;
    for (long long c = blockIdx.x; c < C; c += gridDim.x) {
        const double channel_mean = mean[c];
        double sum_gy = 0, sum_gy_centred = 0;
        for (long long m = threadIdx.x; m < M; m += blockDim.x) {
            const long long u = ((m / L) * C + c) * L + m % L;
            sum_gy += gy[u];
            sum_gy_centred += double(gy[u]) * (double(x[u]) - channel_mean);
        }
        sum_gy = block_sum(sum_gy);
        sum_gy_centred = block_sum(sum_gy_centred);
        if (threadIdx.x == 0) {
            grad_bias[c] = T(sum_gy);
            grad_weight[c] = T(sum_gy_centred * inv_std[c]);
        }
    }
}

// gx = weight * inv_std / M * (M * gy - grad_bias - x_hat * grad_weight), folded per channel
// into gx = a * gy - b * (x - mean) - d with a = weight * inv_std,
// b = a * inv_std * grad_weight / M and d = a * grad_bias / M.
//
// Thread mapping: one thread per element t in [0, N*C*L), channel c = (t / L) % C.
// Grid-stride loop over t.
template <typename T>
__global__ void batch_norm_backward(const T* gy, const T* x, const T* mean, const T* inv_std,
                                    const T* weight, const T* grad_weight, const T* grad_bias,
                                    T* gx, long long N, long long C, long long L) {
    const T M = T(N * L);
    for (long long t = first_index(); t < N * C * L; t += grid_stride()) {
        const long long c = (t / L) % C;
        const T a = weight[c] * inv_std[c];
        const T b = a * inv_std[c] * grad_weight[c] / M;
        const T d = a * grad_bias[c] / M;
        gx[t] = a * gy[t] - b * (x[t] - mean[c]) - d;
    }
}
