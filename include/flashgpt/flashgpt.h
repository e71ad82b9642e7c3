/* flashgpt: a GPT-style transformer decoder in C with CUDA kernels.
 * The umbrella header: the whole public API. */
#ifndef FLASHGPT_H
#define FLASHGPT_H

#include "flashgpt/status.h"
#include "flashgpt/dtype.h"
#include "flashgpt/ops.h"
#include "flashgpt/decoder.h"
#include "flashgpt/cuda.h"
#include "flashgpt/session.h"
#include "flashgpt/sampler.h"
#include "flashgpt/loader.h"
#include "flashgpt/tokenizer.h"
#include "flashgpt/generate.h"
#include "flashgpt/scheduler.h"

#include "flashgpt/chat.h"

#endif /* FLASHGPT_H */
