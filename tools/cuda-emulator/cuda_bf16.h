// Stands in for the CUDA toolkit's header when the kernels are compiled for the CPU emulation:
// __nv_bfloat16 and its conversions are in cuda_emulation.h.
#pragma once
#include "cuda_emulation.h"
