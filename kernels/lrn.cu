// Local response normalisation across channels, forward and backward.
//
// x: (N, C, L), the (N, C, H, W) input viewed with L = H*W positions per channel. The window
// of channel c is c - size/2 .. c + (size-1)/2, clipped to 0 .. C-1 (channels outside are zero
// padding and add nothing); see cnnlite/reference/norm.py for the loops:
//
//   denom[n, c, l] = k + coefficient * sum_{j in window(c)} x[n, j, l]^2
//   factor = denom^(-beta),   y = x * factor
//
// Each thread sums its window directly (size reads) rather than keeping a running sum down the
// channels: the windows are short (5 in AlexNet), the reads are cached, and the result is the
// same sum in the same order as the reference, with no error creeping along the channels.
#include "common.cuh"

// Thread mapping: one thread per element t in [0, N*C*L) of (n, c, l); neighbouring threads
// take neighbouring positions l of one channel, so the reads of each window channel are
// coalesced. Grid-stride loop over t.
template <typename T>
__global__ void lrn_forward(const T* x, T* y, T* denom, T* factor, long long N, long long C,
                            long long L, long long size, T coefficient, T beta, T k) {
    for (long long t = first_index(); t < N * C * L; t += grid_stride()) {
        const long long n = t / (C * L), c = (t / L) % C, l = t % L;
        const long long first = larger(c - size / 2, 0);
        const long long last = smaller(c + (size - 1) / 2, C - 1);
        double sum_of_squares = 0;
        for (long long j = first; j <= last; ++j) {
            const double value = x[(n * C + j) * L + l];
            sum_of_squares += value * value;
        }
        const T d = k + coefficient * T(sum_of_squares);
        const T f = pow_of(d, -beta);
        denom[t] = d;
        factor[t] = f;
        y[t] = x[t] * f;
    }
}

// gx[j] = gy[j] * factor[j]
//         - 2 beta coefficient x[j] * sum_{c : j in window(c)} gy[c] x[c] factor[c] / denom[c]
//
// The output channels whose window holds channel j are c = j - (size-1)/2 .. j + size/2 (the
// forward window mirrored; the same one for odd size), clipped to 0 .. C-1.
//
// Thread mapping: one thread per element t in [0, N*C*L) of (n, j, l), as a gather over the
// channels that read it: every gx element is written once, by its own thread. Grid-stride
// loop over t.
template <typename T>
__global__ void lrn_backward(const T* gy, const T* x, const T* denom, const T* factor, T* gx,
                             long long N, long long C, long long L, long long size,
                             T coefficient, T beta) {
    for (long long t = first_index(); t < N * C * L; t += grid_stride()) {
        const long long n = t / (C * L), j = (t / L) % C, l = t % L;
        const long long first = larger(j - (size - 1) / 2, 0);
        const long long last = smaller(j + size / 2, C - 1);
        double through_denominators = 0;
        for (long long c = first; c <= last; ++c) {
            const long long u = (n * C + c) * L + l;
            through_denominators += double(gy[u]) * x[u] * factor[u] / denom[u];
        }
        gx[t] = T(gy[t] * factor[t] - 2.0 * beta * coefficient * x[t] * through_denominators);
    }
}
