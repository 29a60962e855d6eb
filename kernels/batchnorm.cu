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
// The statistics and the backward's two sums are reductions over each channel. They take two
// passes, so that one channel is spread over many blocks (one block per channel would leave
// most of a large GPU idle when C is small, and run long when M is large):
//
//   1. batch_norm_partial_statistics and batch_norm_partial_sums cut every channel into
//      `pieces` pieces, one block each, and write a partial result per piece: its moments
//      (count, mean, M2) or its two gradient sums. A piece is read in one of two ways
//      (PieceReader): along the channel for rows of L >= 32 values, or, for shorter rows, where
//      a warp walking one channel would read one value out of every C*L, by columns across
//      the channels, giving `parts` = L partials per channel and piece instead of 1. The
//      partials of channel c lie at partial[(k*C + c)*parts + p], p < parts, for piece k.
//   2. batch_norm_statistics and batch_norm_grad_statistics: one block per channel combines
//      the channel's pieces*parts partials and writes the results.
//
// Every combination happens in an order fixed by the launch (the threads' strides and the
// trees of lane_total), never in the order in which blocks finish: the same input gives the
// same bits on every run, which atomicAdd between blocks would not.
//
// Precision. A thread of pass 1 accumulates its own values, at most a few hundred (the launcher
// gives a block of 256 threads at most 65536 values), in T, the kernel's type: that is where
// the work is, one step per value, and double arithmetic runs at 1/64 of the float rate on
// consumer GPUs. The trees and pass 2 combine in double: a few steps per thread, which cost
// nothing next to the loads and keep the digits of totals over millions of values. The
// statistics accumulate with Welford's update (a division per value more than a plain sum,
// cheap next to loading the value in this memory-bound loop) and combine with Chan's formula
// (below), where every term has the size of the spread: the shifted sums of the CPU kernel,
// sum(d^2)/M - (sum(d)/M)^2, would multiply the error of a float sum by
// 1 + ((shift - mean) / std)^2, which an outlying first value makes as large as M. Measured
// through the harness with blocks of 256 threads, as on a GPU, against float64 NumPy on the
// same float32 data (x ~ N(1, 2^2), gy ~ N(0.1, 1)); the errors of the mean in units of the
// std, of the variance relative to it, of the gradient's sums relative to the sum of their
// terms' magnitudes:
//   (8, 64, 112*112), (32, 64, 56*56):  mean 3.0e-8, var 6.0e-8, sums 6.3e-9
//   (256, 512, 1):                      mean 5.2e-8, var 9.6e-8, sums 2.9e-8
// where rounding the float64 results to float32 alone gives mean 3.1e-8 and var 5.9e-8: float
// accumulation adds little to float32's own rounding. With every channel's first value at 101
// (50 and 15 std away), var 5.9e-8 and 3.7e-7. tests/test_cuda_batchnorm_host.py bounds the
// error (with the harness's 32 threads, each accumulating 8 times as many values).
// Two limits of float accumulation, left as they are: a channel holding +inf gets mean NaN
// (Welford's next step computes inf - inf; the CPU kernel gives inf; the variance is NaN in
// both), and a thread's float M2 overflows where the variance passes ~1e36.
#include "common.cuh"

// The moments of some values: their count, mean and sum of squared deviations M2 =
// sum((x - mean)^2); their variance is M2 / count.
struct Moments {
    double count, mean, m2;
};

// The moments of two disjoint sets of values together (Chan, Golub and LeVeque): with
// delta = b.mean - a.mean and n = a.count + b.count,
//   mean = a.mean + delta * b.count / n,   M2 = a.M2 + b.M2 + delta^2 * a.count * b.count / n.
__device__ Moments combined(Moments a, Moments b) {
    if (b.count == 0) return a;
    if (a.count == 0) return b;
    const double count = a.count + b.count, delta = b.mean - a.mean;
    return {count, a.mean + delta * (b.count / count),
            a.m2 + b.m2 + delta * delta * (a.count * (b.count / count))};
}

// Welford's update, one value at a time, in the kernel's type T: the moments of the values
// added so far. Each step adds a term delta^2 * (1 - 1/count) >= 0 to M2, so nothing cancels.
template <typename T>
struct RunningMoments {
    long long count = 0;
    T mean = 0, m2 = 0;

    __device__ void add(T value) {
        ++count;
        const T delta = value - mean;
        mean += delta / T(count);
        m2 += delta * (value - mean);
    }

    __device__ Moments moments() const { return {double(count), double(mean), double(m2)}; }
};

// The backward's two sums over some values: sum(gy) and sum(gy * (x - mean)).
struct GradientSums {
    double gy, gy_centred;
};

__device__ GradientSums combined(GradientSums a, GradientSums b) {
    return {a.gy + b.gy, a.gy_centred + b.gy_centred};
}

// Value `k * count / pieces` without the product (which could overflow): the first index of
// piece k when `count` values are cut into `pieces` pieces of sizes differing by at most one.
__device__ __forceinline__ long long piece_start(long long k, long long count, long long pieces) {
    return k * (count / pieces) + smaller(k, count % pieces);
}

// The partials of channel c, in the order pass 2 combines them: i = k*parts + p < pieces*parts.
__device__ __forceinline__ long long partial_index(long long i, long long c, long long C,
                                                  long long parts) {
    return ((i / parts) * C + c) * parts + i % parts;
}

// `value` combined (Moments or GradientSums) over the threads of the block that share its lane
// threadIdx.x % lanes: threads p, p + lanes, p + 2*lanes, ... of the first lanes*rows (the
// values of the others are ignored); with lanes = 1, over the first `rows` threads. The result
// goes to every thread. A tree in shared memory, as block_sum (common.cuh): every round the
// first half of the still active rows combine the second half into themselves. Every thread of
// the block must call it, the same number of times.
template <typename Value>
__device__ Value lane_total(Value value, unsigned lanes, unsigned rows) {
    __shared__ Value slot[MAX_BLOCK_THREADS];
    slot[threadIdx.x] = value;
    __syncthreads();
    const unsigned row = threadIdx.x / lanes;
    for (unsigned active = rows; active > 1; active = (active + 1) / 2) {
        const unsigned half = (active + 1) / 2;
        if (row < active - half)
            slot[threadIdx.x] = combined(slot[threadIdx.x], slot[threadIdx.x + half * lanes]);
        __syncthreads();
    }
    const Value total = slot[threadIdx.x % lanes];
    __syncthreads();  // everyone has read its total before the next call overwrites it
    return total;
}

// How a block of pass 1 reads its pieces, in one of two ways that the launcher chooses
// (cnnlite/cuda/norm.py, reduction_plan). Either way the block walks its work items q = b,
// b + gridDim.x, ... of pieces*units, piece k = q / units, reads that item with its threads
// (read), combines what they kept (total) and writes the combination (partial_index).
//
// Along the channel (by_columns = 0: rows of L >= 32 values; parts = 1). The units are the
// channels, q = k*C + c. Piece k of channel c holds its values m = n*L + l from
// piece_start(k, M, pieces) to piece_start(k + 1, M, pieces) - 1, M = N*L; thread t reads
// m = start + t, start + t + blockDim.x, ..., so that neighbouring threads read neighbouring
// positions of a row. The whole block adds up to one partial, at partial[q].
//
// By columns (by_columns = 1: rows of L < 32 values; parts = L). x is read as N rows of
// W = C*L columns, column j = c*L + l holding position l of channel c. A block reads `lanes` =
// min(W, blockDim.x) neighbouring columns (a tile; the units are the tiles of a row) in `rows`
// = blockDim.x / lanes rows at a time: thread t reads column j = tile*lanes + t % lanes in
// rows start + t / lanes, start + t / lanes + rows, ... of piece k (rows piece_start(k, N,
// pieces) to piece_start(k + 1, N, pieces) - 1). So the block reads rows*lanes neighbouring
// values at a time, whole rows when W <= blockDim.x. The threads of column j add up to one
// partial, at partial[k*W + j].
struct PieceReader {
    long long N, C, L, pieces;
    bool by_columns;
    unsigned lanes, rows, row;  // along the channel: 1 lane of blockDim.x rows, one per thread
    long long units;

    __device__ PieceReader(long long N, long long C, long long L, long long pieces,
                           bool by_columns)
        : N(N), C(C), L(L), pieces(pieces), by_columns(by_columns),
          lanes(by_columns ? unsigned(smaller(C * L, blockDim.x)) : 1),
          rows(blockDim.x / lanes), row(threadIdx.x / lanes),
          units(by_columns ? (C * L + lanes - 1) / lanes : C) {}

    __device__ long long work_items() const { return pieces * units; }

    // By columns: this thread's column j of item q.
    __device__ long long column(long long q) const {
        return (q % units) * lanes + threadIdx.x % lanes;
    }

    // Whether this thread reads anything of item q (by columns, the tiling leaves some out).
    __device__ bool reads(long long q) const {
        return !by_columns || (row < rows && column(q) < C * L);
    }

    // The channel of what this thread reads of item q (when it reads).
    __device__ long long channel(long long q) const { return by_columns ? column(q) / L : q % C; }

    // Calls visit(i) for the elements x[i] of item q that this thread reads.
    template <typename Visit>
    __device__ void read(long long q, Visit visit) const {
        const long long k = q / units;
        if (by_columns) {
            if (!reads(q)) return;
            const long long W = C * L, j = column(q), stop = piece_start(k + 1, N, pieces);
            for (long long n = piece_start(k, N, pieces) + row; n < stop; n += rows)
                visit(n * W + j);
            return;
        }
        const long long c = q % C, M = N * L;
        const long long start = piece_start(k, M, pieces), stop = piece_start(k + 1, M, pieces);
        // Moving m on by blockDim.x moves (n, l) on by (row_step, position_step), with a carry
        // into n when l passes L: no 64-bit division per value.
        const long long row_step = blockDim.x / L, position_step = blockDim.x % L;
        long long n = (start + threadIdx.x) / L, l = (start + threadIdx.x) % L;
        for (long long m = start + threadIdx.x; m < stop; m += blockDim.x) {
            visit((n * C + c) * L + l);
            n += row_step;
            l += position_step;
            if (l >= L) {
                l -= L;
                ++n;
            }
        }
    }

    // What this thread kept, combined with what the threads of the same partial kept, to every
    // thread. Every thread of the block must call it.
    template <typename Value>
    __device__ Value total(Value mine) const {
        return lane_total(mine, lanes, rows);
    }

    // Whether this thread writes item q's partial (one thread per partial), and where.
    __device__ bool writes(long long q) const { return row == 0 && reads(q); }
    __device__ long long partial_index(long long q) const {
        return by_columns ? (q / units) * C * L + column(q) : q;
    }
};

// Pass 1 of the statistics: the moments of every piece (by columns: of every column of every
// piece), partial[(k*C + c)*parts + p].
//
// Thread mapping: as PieceReader says, block b takes the work items q = b, b + gridDim.x, ...;
// each thread keeps the running moments of the values it reads, and the reader's total
// combines them.
template <typename T>
__global__ void batch_norm_partial_statistics(const T* x, Moments* partial, long long N,
                                              long long C, long long L, long long pieces,
                                              long long by_columns) {
    const PieceReader reader(N, C, L, pieces, by_columns != 0);
    for (long long q = blockIdx.x; q < reader.work_items(); q += gridDim.x) {
        RunningMoments<T> mine;
        reader.read(q, [&](long long i) { mine.add(x[i]); });
        const Moments total = reader.total(mine.moments());
        if (reader.writes(q)) partial[reader.partial_index(q)] = total;
    }
}

// Pass 2 of the statistics: mean[c] and the biased var[c] = M2 / M from the channel's
// partial moments.
//
// Thread mapping: block b takes channels c = b, b + gridDim.x, ...; thread t combines the
// channel's partials i = t, t + blockDim.x, ... (partial_index), lane_total the threads'.
template <typename T>
__global__ void batch_norm_statistics(const Moments* partial, T* mean, T* var, long long C,
                                      long long parts, long long pieces) {
    for (long long c = blockIdx.x; c < C; c += gridDim.x) {
        Moments mine = {0, 0, 0};
        for (long long i = threadIdx.x; i < pieces * parts; i += blockDim.x)
            mine = combined(mine, partial[partial_index(i, c, C, parts)]);
        const Moments channel = lane_total(mine, 1, blockDim.x);
        if (threadIdx.x == 0) {
            mean[c] = T(channel.mean);
            var[c] = T(channel.m2 / channel.count);
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

// Pass 1 of the backward's sums: sum(gy) and sum(gy * (x - mean[c])) over every piece (by
// columns: over every column of every piece), partial[(k*C + c)*parts + p].
//
// Thread mapping: as batch_norm_partial_statistics; each thread keeps its two sums in T.
template <typename T>
__global__ void batch_norm_partial_sums(const T* gy, const T* x, const T* mean,
                                        GradientSums* partial, long long N, long long C,
                                        long long L, long long pieces, long long by_columns) {
    const PieceReader reader(N, C, L, pieces, by_columns != 0);
    for (long long q = blockIdx.x; q < reader.work_items(); q += gridDim.x) {
        const T channel_mean = reader.reads(q) ? mean[reader.channel(q)] : T(0);
        T sum_gy = 0, sum_gy_centred = 0;
        reader.read(q, [&](long long i) {
            sum_gy += gy[i];
            sum_gy_centred += gy[i] * (x[i] - channel_mean);
        });
        const GradientSums total = reader.total(GradientSums{sum_gy, sum_gy_centred});
        if (reader.writes(q)) partial[reader.partial_index(q)] = total;
    }
}

// Pass 2 of the backward's sums: grad_bias[c] = sum(gy) and grad_weight[c] = sum(gy * x_hat)
// = inv_std[c] * sum(gy * (x - mean)) from the channel's partial sums.
//
// Thread mapping: as batch_norm_statistics, block b takes channels c = b, b + gridDim.x, ...;
// thread t adds the channel's partials i = t, t + blockDim.x, ..., lane_total the threads'.
template <typename T>
__global__ void batch_norm_grad_statistics(const GradientSums* partial, const T* inv_std,
                                           T* grad_bias, T* grad_weight, long long C,
                                           long long parts, long long pieces) {
    for (long long c = blockIdx.x; c < C; c += gridDim.x) {
        GradientSums mine = {0, 0};
        for (long long i = threadIdx.x; i < pieces * parts; i += blockDim.x)
            mine = combined(mine, partial[partial_index(i, c, C, parts)]);
        const GradientSums channel = lane_total(mine, 1, blockDim.x);
        if (threadIdx.x == 0) {
            grad_bias[c] = T(channel.gy);
            grad_weight[c] = T(channel.gy_centred * inv_std[c]);
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
