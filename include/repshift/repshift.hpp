#pragma once
// Umbrella header for the CPU library: policies, the Host backend and the
// public entry points. <repshift/cuda.hpp> adds rs::Cuda on top.
//
//   #include <repshift/repshift.hpp>
//   namespace rs = repshift;
//   rs::shift_score<rs::policies::L2>(rs::Host{}, before, after, scores, B, N, C);
//   rs::select_top(rs::Host{}, scores, keep_idx, B, N, keep, /*protect=*/1);
//   rs::gather_tokens(rs::Host{}, x, keep_idx, out, B, N, keep, C);

#include "core/config.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/exec.hpp"
#include "core/tensor_view.hpp"
#include "params/gather_tokens.hpp"
#include "params/select_top.hpp"
#include "params/shift_score.hpp"
#include "policies/importance.hpp"
#include "policies/metric.hpp"
#include "policies/norm_placement.hpp"
#include "policies/select.hpp"
#include "policies/site.hpp"
#include "cpu/backend.hpp"
#include "cpu/line_prune.hpp"
#include "cpu/merge_tokens.hpp"
#include "api/entry_points.hpp"
#include "cpu/check_finite.hpp"
#include "api/dispatch.hpp"
#include "api/sweep.hpp"
