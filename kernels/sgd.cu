// sgd.cu: one step of stochastic gradient descent with momentum and weight decay, in place.
//
//   g        = grad + weight_decay * param
//   velocity = momentum * velocity + g
//   param    = param - lr * velocity
// This is PyTorch's torch.optim.SGD with dampening 0 and nesterov off (its first step sets velocity = g,
// the same as this update from a zero velocity).
//
// Kernel versions:
//   sgd_step_v1: one thread per parameter element; reads param, grad and velocity once, writes param and
//       velocity once (memory-bound; one launch per parameter tensor).
//
// Launched by its launcher, the function of the same name in minunet/ops/sgd.py, which writes its block
// (MINUNET_THREADS, read once through minunet/ops/launching.py) and grid. Checked by tests/test_sgd.py:
// several steps on the sim and cuda devices against the NumPy reference.
#include "common.cuh"

extern "C" __global__ void sgd_step_v1(real* param, const real* grad, real* velocity, int n,
                                       real lr, real momentum, real weight_decay) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    real g = grad[i] + weight_decay * param[i];
    real v = momentum * velocity[i] + g;
    velocity[i] = v;
    param[i] -= lr * v;
}
