// Optimiser updates, in place, one parameter tensor per launch.
//
// Thread mapping (both kernels): one thread per element t in [0, count) of the flattened
// parameter, in a grid-stride loop. Each element's update reads and writes only its own
// element of the parameter and of the optimiser's state, so the whole step is one pass over
// memory instead of the half-dozen that separate array operations would make.
#include "common.cuh"

// SGD with momentum and weight decay, as in PyTorch:
//   g = grad + weight_decay * p
//   b = g on the first step, else momentum * b + (1 - dampening) * g
//   g = g + momentum * b (Nesterov) or b
//   p = p - lr * g
// With momentum = 0 this is plain SGD, p = p - lr * g, and the buffer is left alone.
// Thread mapping: one thread per element t of the parameter (grid-stride loop).
template <typename T>
__global__ void sgd_momentum_update(T* param, const T* grad, T* momentum_buffer,
                                    long long count, T lr, T momentum, T dampening,
                                    T weight_decay, long long nesterov, long long first_step) {
    for (long long t = first_index(); t < count; t += grid_stride()) {
        T g = grad[t] + weight_decay * param[t];
        if (momentum != T(0)) {
            const T b = first_step ? g : momentum * momentum_buffer[t] + (T(1) - dampening) * g;
            momentum_buffer[t] = b;
            g = nesterov ? g + momentum * b : b;
        }
        param[t] -= lr * g;
    }
}

// Adam, as in PyTorch (weight decay as an L2 term in the gradient), at step s:
//   g = grad + weight_decay * p
//   m = beta1 * m + (1 - beta1) * g,   v = beta2 * v + (1 - beta2) * g^2
//   p = p - step_size * m / (sqrt(v) / sqrt_correction2 + eps)
// with step_size = lr / (1 - beta1^s) and sqrt_correction2 = sqrt(1 - beta2^s), computed once
// per step by the launcher: the factors that undo the bias of m and v towards their zero start.
// Thread mapping: one thread per element t of the parameter (grid-stride loop).
template <typename T>
__global__ void adam_update(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, long long count,
                            T step_size, T beta1, T beta2, T eps, T weight_decay,
                            T sqrt_correction2) {
    for (long long t = first_index(); t < count; t += grid_stride()) {
        const T g = grad[t] + weight_decay * param[t];
        const T m = beta1 * exp_avg[t] + (T(1) - beta1) * g;
        const T v = beta2 * exp_avg_sq[t] + (T(1) - beta2) * g * g;
        exp_avg[t] = m;
        exp_avg_sq[t] = v;
        param[t] -= step_size * m / (sqrt_of(v) / sqrt_correction2 + eps);
    }
}
