// JSON and text taken from files, with bounds: every reader of a file format
// parses through parse_file_json() and quotes file content in messages through
// excerpt(), so a hostile file can neither exhaust the stack (nesting is
// limited before anything recursive, such as dump(), comparison or
// destruction, runs on the value) nor make an error message as large as the
// file.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace fwp {

// Deepest nesting of arrays and objects a file's JSON may have. fwp's own
// headers and configs nest at most 4 levels; 32 leaves room for future
// formats while keeping every recursive walk far from the stack limit.
constexpr int kMaxFileJsonDepth = 32;

// Longest excerpt of file content that a message quotes.
constexpr size_t kMaxMessageExcerpt = 80;

// Parses `text` as JSON. Error(FWP_ERR_FORMAT) naming `what` (e.g. "the
// header") when it is not valid JSON, nests deeper than kMaxFileJsonDepth,
// or repeats a key within one object (a parser would silently keep one of
// the two values, so the file would not mean what it seems to say).
nlohmann::json parse_file_json(const std::string& text, const std::string& what);

// `text` made safe and short for a message: bytes outside printable ASCII
// become \xNN, and past `max_chars` output characters the rest is cut and
// replaced by "...(N bytes)". Quoting is the caller's.
std::string excerpt(const std::string& text, size_t max_chars = kMaxMessageExcerpt);

}  // namespace fwp
