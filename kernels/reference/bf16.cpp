// bf16 helpers are header-only; this unit keeps the reference library non-empty before any
// reference kernel exists.
#include "kernels/reference/bf16.hpp"
