#pragma once
// ScoreOperands lives with the Sites that choose it (policies/site.hpp).

#include "policies/site.hpp"
