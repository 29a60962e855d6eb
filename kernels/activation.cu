// Element-wise activations, forward and backward.
//
// Every kernel here has the same thread mapping: one thread per element t in [0, count) of
// the flattened (contiguous) array, in a grid-stride loop; neighbouring threads touch
// neighbouring elements, so every load and store is coalesced. These kernels are limited by
// memory bandwidth, not arithmetic.
//
// A backward takes whichever of x and y its derivative is written in, as the CPU versions do
// (cnnlite/reference/activation.py): ReLU, leaky ReLU and ELU take x; sigmoid and tanh take y.
#include "common.cuh"

// y = x if x > 0 else 0
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void relu_forward(const T* x, T* y, long long count) {
    for (long long t = first_index(); t < count; t += grid_stride())
        y[t] = x[t] > 0 ? x[t] : T(0);
}

// dy/dx = [x > 0]
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void relu_backward(const T* x, const T* gy, T* gx, long long count) {
    for (long long t = first_index(); t < count; t += grid_stride())
        gx[t] = x[t] > 0 ? gy[t] : T(0);
}

// y = x if x > 0 else negative_slope * x
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void leaky_relu_forward(const T* x, T* y, long long count, T negative_slope) {
    for (long long t = first_index(); t < count; t += grid_stride())
        y[t] = x[t] > 0 ? x[t] : negative_slope * x[t];
}

// dy/dx = 1 if x > 0 else negative_slope
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void leaky_relu_backward(const T* x, const T* gy, T* gx, long long count,
                                    T negative_slope) {
    for (long long t = first_index(); t < count; t += grid_stride())
        gx[t] = x[t] > 0 ? gy[t] : negative_slope * gy[t];
}

// y = x if x > 0 else alpha * (e^x - 1); expm1 keeps the digits that e^x - 1 loses near 0.
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void elu_forward(const T* x, T* y, long long count, T alpha) {
    for (long long t = first_index(); t < count; t += grid_stride())
        y[t] = x[t] > 0 ? x[t] : alpha * expm1_of(x[t]);
}

// dy/dx = 1 if x > 0 else alpha * e^x
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void elu_backward(const T* x, const T* gy, T* gx, long long count, T alpha) {
    for (long long t = first_index(); t < count; t += grid_stride())
        gx[t] = x[t] > 0 ? gy[t] : gy[t] * alpha * exp_of(x[t]);
}

// y = 1 / (1 + e^-x), written e^x / (1 + e^x) for x < 0 so that the exponential never
// overflows: with e = e^-|x|, y = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0.
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void sigmoid_forward(const T* x, T* y, long long count) {
    for (long long t = first_index(); t < count; t += grid_stride()) {
        const T e = exp_of(x[t] >= 0 ? -x[t] : x[t]);
        y[t] = (x[t] >= 0 ? T(1) : e) / (T(1) + e);
    }
}

// dy/dx = y (1 - y)
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void sigmoid_backward(const T* y, const T* gy, T* gx, long long count) {
    for (long long t = first_index(); t < count; t += grid_stride())
        gx[t] = gy[t] * y[t] * (T(1) - y[t]);
}

// y = tanh(x)
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void tanh_forward(const T* x, T* y, long long count) {
    for (long long t = first_index(); t < count; t += grid_stride()) y[t] = tanh_of(x[t]);
}

// dy/dx = 1 - y^2
// Thread mapping: one thread per element t (grid-stride loop).
template <typename T>
__global__ void tanh_backward(const T* y, const T* gy, T* gx, long long count) {
    for (long long t = first_index(); t < count; t += grid_stride())
        gx[t] = gy[t] * (T(1) - y[t] * y[t]);
}
