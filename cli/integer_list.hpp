#pragma once
// Comma-separated integers on the command line ("1,4,16,32"), with errors naming the flag.
#include <string>
#include <vector>

namespace specontext::cli {

// Every item must be an integer in [min_value, max_value]; an empty list is an error.
std::vector<long long> parse_integer_list(const std::string& text, const std::string& flag, long long min_value, long long max_value);
// Token ids: integers in [0, 2^31).
std::vector<int> parse_token_ids(const std::string& text, const std::string& flag);

}  // namespace specontext::cli
