#include "io/bounded_json.h"

#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fwp {

namespace {

// Thrown from the parser callback to stop at the first problem; turned into a
// format error by parse_file_json (the callback cannot name `what` itself
// without building a string on every event).
struct Rejected {
  std::string reason;
};

}  // namespace

nlohmann::json parse_file_json(const std::string& text, const std::string& what) {
  // One set of keys per open object (arrays push nothing). The parser itself
  // is iterative; the callback sees every event before a value is nested
  // deeper, so no recursive code ever meets more than kMaxFileJsonDepth levels.
  std::vector<std::set<std::string>> open_objects;
  const nlohmann::json::parser_callback_t check = [&](int depth, nlohmann::json::parse_event_t event,
                                                      nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (depth > kMaxFileJsonDepth) {
      throw Rejected{"nests deeper than " + std::to_string(kMaxFileJsonDepth) + " levels"};
    }
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) throw Rejected{"has the key \"" + excerpt(key) + "\" twice"};
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text, check);
  } catch (const Rejected& r) {
    throw Error(FWP_ERR_FORMAT, what + " " + r.reason);
  } catch (const nlohmann::json::exception&) {
    throw Error(FWP_ERR_FORMAT, what + " is not valid JSON");
  }
}

std::string excerpt(const std::string& text, size_t max_chars) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  size_t i = 0;
  for (; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const bool printable = c >= 0x20 && c < 0x7f && c != '\\';
    const size_t width = printable ? 1 : 4;
    if (out.size() + width > max_chars) break;
    if (printable) {
      out += static_cast<char>(c);
    } else {
      out += '\\';
      out += 'x';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (i < text.size()) out += "...(" + std::to_string(text.size()) + " bytes)";
  return out;
}

}  // namespace fwp
