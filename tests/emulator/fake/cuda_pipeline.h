// Emulator stand-in for <cuda_pipeline.h> (tests/emulator/emu_cuda.h).
#pragma once
#include "emu_cuda.h"
