#include "config/yaml_json.h"

#include <yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

// How it works: libyaml's event parser reads the whole stream into a compact node tree
// (one flat vector of nodes, scalar text in one arena string), so that syntax errors anywhere
// in the stream, and a second document, are reported before any conversion error. Aliases
// share the anchored node, as in a YAML representation graph. The tree is then written out
// as JSON text directly; only maps with merge keys build their merged entries as separate
// JSON fragments.

namespace sluice::config {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxDepth = 256;
// Aliases may repeat a node any number of times, and nested aliases multiply ("billion
// laughs"): the conversion stops after writing this many nodes, or 16 times the nodes the
// document holds if that is more.
constexpr size_t kMinExpansionBudget = 1000000;
constexpr std::string_view kYamlTag = "tag:yaml.org,2002:";
constexpr std::string_view kMergeError = "a merge key ('<<') takes a map or a sequence of maps";

// A 0-based position in the input.
struct Mark {
  size_t line = 0;
  size_t column = 0;
};

// A conversion error at a node; turned into "yaml: line L, column C: message".
struct YamlError {
  Mark mark;
  std::string message;
};

std::string formatError(const Mark& mark, std::string_view message) {
  return "yaml: line " + std::to_string(mark.line + 1) + ", column " +
         std::to_string(mark.column + 1) + ": " + std::string(message);
}

// --- RAII around libyaml. ---------------------------------------------------------------------

class Parser {
 public:
  explicit Parser(std::string_view input) {
    ok_ = yaml_parser_initialize(&parser_) != 0;
    if (ok_) {
      yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char*>(input.data()),
                                   input.size());
    }
  }
  ~Parser() {
    if (ok_) {
      yaml_parser_delete(&parser_);
    }
  }
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  bool initialized() const { return ok_; }
  yaml_parser_t* get() { return &parser_; }

 private:
  yaml_parser_t parser_{};
  bool ok_ = false;
};

class Event {
 public:
  Event() = default;
  ~Event() { yaml_event_delete(&event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Reads the next event, releasing the previous one. False on a parse error.
  bool next(Parser& parser) {
    yaml_event_delete(&event_);
    return yaml_parser_parse(parser.get(), &event_) != 0;
  }
  const yaml_event_t& operator*() const { return event_; }
  const yaml_event_t* operator->() const { return &event_; }

 private:
  // Zeroed: yaml_event_delete() on a zeroed (or failed) event frees nothing.
  yaml_event_t event_{};
};

// libyaml's error as "yaml: line L, column C: problem (context at line L, column C)".
std::string parserError(const yaml_parser_t& parser, std::string_view input) {
  const std::string problem = parser.problem != nullptr ? parser.problem : "unknown error";
  switch (parser.error) {
    case YAML_MEMORY_ERROR:
      return "yaml: out of memory";
    case YAML_READER_ERROR: {
      // Reader errors (bad encoding) come with a byte offset instead of a mark.
      Mark mark;
      const size_t end = std::min(parser.problem_offset, input.size());
      for (size_t i = 0; i < end; ++i) {
        if (input[i] == '\n') {
          ++mark.line;
          mark.column = 0;
        } else if ((static_cast<unsigned char>(input[i]) & 0xC0) != 0x80) {
          ++mark.column;  // counts characters, as libyaml's marks do
        }
      }
      return formatError(mark, problem);
    }
    default: {
      std::string message = problem;
      if (parser.context != nullptr) {
        message += std::string(" (") + parser.context + " at line " +
                   std::to_string(parser.context_mark.line + 1) + ", column " +
                   std::to_string(parser.context_mark.column + 1) + ")";
      }
      return formatError({parser.problem_mark.line, parser.problem_mark.column}, message);
    }
  }
}

// --- The node tree. ---------------------------------------------------------------------------

struct Node {
  enum class Kind : uint8_t { Null, Scalar, Sequence, Map };
  Kind kind = Kind::Null;
  // A scalar's tag: kPlain for an untagged plain scalar (typed by its text), kQuoted for an
  // untagged quoted or block scalar (always a string), otherwise 2 + an index into `tags`.
  static constexpr uint32_t kPlain = 0;
  static constexpr uint32_t kQuoted = 1;
  uint32_t tag = kPlain;
  Mark mark;
  // A scalar's text in `text`, or a collection's children in `children` (a map's as key,
  // value, key, value...).
  size_t begin = 0;
  size_t size = 0;
};

struct Tree {
  std::vector<Node> nodes;
  std::vector<uint32_t> children;
  std::string text;
  std::vector<std::string> tags;  // explicit tags, referred to by Node::tag - 2

  std::string_view scalar(const Node& node) const {
    return std::string_view(text).substr(node.begin, node.size);
  }
};

bool isNull(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// Parses the stream into `tree`. Sets `root` to the first document's root node (or -1 for an
// empty stream) and `documents` to the number of documents; `second_mark` is the position
// of the second document's root node.
bool parseTree(std::string_view input, Tree& tree, int64_t& root, size_t& documents,
               Mark& second_mark, std::string& error) {
  Parser parser(input);
  if (!parser.initialized()) {
    error = "yaml: out of memory";
    return false;
  }
  root = -1;
  documents = 0;
  // Anchors are per document, and a redefined anchor names the newer node from then on.
  std::unordered_map<std::string, uint32_t> anchors;
  // Open collections, and the children collected so far for each of them (a stack).
  struct Open {
    uint32_t node;
    size_t first_pending;
  };
  std::vector<Open> open;
  std::vector<uint32_t> pending;

  // Called for each complete node: a child of the innermost open collection, or a root.
  auto finish = [&](uint32_t index) {
    if (!open.empty()) {
      pending.push_back(index);
    } else if (documents == 1) {
      root = index;
    } else if (documents == 2) {
      second_mark = tree.nodes[index].mark;
    }
  };
  auto addNode = [&](Node::Kind kind, const yaml_event_t& event, const yaml_char_t* anchor) {
    Node node;
    node.kind = kind;
    node.mark = {event.start_mark.line, event.start_mark.column};
    const auto index = static_cast<uint32_t>(tree.nodes.size());
    tree.nodes.push_back(node);
    if (anchor != nullptr) {
      anchors[reinterpret_cast<const char*>(anchor)] = index;
    }
    return index;
  };

  Event event;
  for (;;) {
    if (!event.next(parser)) {
      error = parserError(*parser.get(), input);
      return false;
    }
    switch (event->type) {
      case YAML_STREAM_END_EVENT:
        return true;
      case YAML_DOCUMENT_START_EVENT:
        ++documents;
        anchors.clear();
        break;
      case YAML_ALIAS_EVENT: {
        const auto it = anchors.find(reinterpret_cast<const char*>(event->data.alias.anchor));
        if (it == anchors.end()) {
          error = formatError({event->start_mark.line, event->start_mark.column},
                              "the referenced anchor is not defined");
          return false;
        }
        finish(it->second);
        break;
      }
      case YAML_SCALAR_EVENT: {
        const auto& scalar = event->data.scalar;
        const auto text =
            std::string_view(reinterpret_cast<const char*>(scalar.value), scalar.length);
        const bool plain = scalar.style == YAML_PLAIN_SCALAR_STYLE;
        // An untagged plain null (or empty) scalar is a null node, not a scalar: it cannot be
        // a map key or a merge value.
        const bool null = scalar.tag == nullptr && plain && isNull(text);
        const uint32_t index =
            addNode(null ? Node::Kind::Null : Node::Kind::Scalar, *event, scalar.anchor);
        Node& node = tree.nodes[index];
        node.begin = tree.text.size();
        node.size = text.size();
        tree.text.append(text);
        if (scalar.tag != nullptr) {
          tree.tags.emplace_back(reinterpret_cast<const char*>(scalar.tag));
          node.tag = static_cast<uint32_t>(tree.tags.size() + 1);
        } else {
          node.tag = plain ? Node::kPlain : Node::kQuoted;
        }
        finish(index);
        break;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        const bool map = event->type == YAML_MAPPING_START_EVENT;
        const uint32_t index =
            addNode(map ? Node::Kind::Map : Node::Kind::Sequence, *event,
                    map ? event->data.mapping_start.anchor : event->data.sequence_start.anchor);
        open.push_back({index, pending.size()});
        break;
      }
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT: {
        const Open top = open.back();
        open.pop_back();
        Node& node = tree.nodes[top.node];
        node.begin = tree.children.size();
        node.size = pending.size() - top.first_pending;
        tree.children.insert(tree.children.end(),
                             pending.begin() + static_cast<ptrdiff_t>(top.first_pending),
                             pending.end());
        pending.resize(top.first_pending);
        finish(top.node);
        break;
      }
      default:
        break;
    }
  }
}

// --- Scalars. ---------------------------------------------------------------------------------

// Appends `s` as a JSON string: quotes, backslashes and control characters escaped,
// everything else (UTF-8 included) as is. libyaml only produces valid UTF-8.
void writeString(std::string_view s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t run = 0;  // start of the run of characters copied as they are
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') {
      continue;
    }
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        const char escape[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(escape, sizeof(escape));
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

// The spellings of booleans that yaml-cpp (and so Envoy) accepts: y, yes, true, on, n, no,
// false, off, each in lower case, upper case or capitalized.
bool parseBool(std::string_view s, bool& value) {
  static const char* const kTrue[] = {"y", "yes", "true", "on"};
  static const char* const kFalse[] = {"n", "no", "false", "off"};
  auto matches = [s](std::string_view word) {
    if (s.size() != word.size()) {
      return false;
    }
    // The first letter in either case; the rest all lower or all upper case.
    if ((s[0] | 0x20) != word[0]) {
      return false;
    }
    const std::string_view rest = s.substr(1);
    bool lower = true;
    bool upper = true;
    for (size_t i = 0; i < rest.size(); ++i) {
      lower = lower && rest[i] == word[i + 1];
      upper = upper && rest[i] == word[i + 1] - 'a' + 'A';
    }
    return lower || (upper && s[0] != word[0]);
  };
  for (const char* word : kTrue) {
    if (matches(word)) {
      value = true;
      return true;
    }
  }
  for (const char* word : kFalse) {
    if (matches(word)) {
      value = false;
      return true;
    }
  }
  return false;
}

bool allOf(std::string_view s, int (*pred)(int)) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!pred(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

int isOctalDigit(int c) {
  return c >= '0' && c <= '7';
}

// Writes a double as nlohmann::json does (shortest round trip, "1000.0" for 1e3).
void writeDouble(double value, std::string& out) {
  out += Json(value).dump();
}

// Decimal ([-+]?[0-9]+), hexadecimal (0x...) or octal (0o...) integers.
bool writeInteger(std::string_view s, std::string& out) {
  std::string_view digits = s;
  bool negative = false;
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'o')) {
    base = digits[1] == 'x' ? 16 : 8;
    digits.remove_prefix(2);
    if (base == 16 ? !allOf(digits, isxdigit) : !allOf(digits, isOctalDigit)) {
      return false;
    }
  } else if (!allOf(digits, isdigit)) {
    return false;
  }
  uint64_t magnitude = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec == std::errc::result_out_of_range) {
    // Too large for any integer: kept as text, which protobuf's JSON parser reads as a
    // number for a float field and reports as out of range for an integer one.
    writeString(s, out);
    return true;
  }
  if (ec != std::errc() || ptr != digits.data() + digits.size()) {
    return false;
  }
  char buffer[32];
  char* end = buffer;
  if (!negative) {
    end = std::to_chars(buffer, buffer + sizeof(buffer), magnitude).ptr;
  } else if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) {
    end = std::to_chars(buffer, buffer + sizeof(buffer), static_cast<int64_t>(0 - magnitude)).ptr;
  } else {
    writeDouble(-static_cast<double>(magnitude), out);
    return true;
  }
  out.append(buffer, end);
  return true;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, .inf, -.inf, .nan (any case variant
// that YAML 1.2 allows). Infinity and NaN become the strings protobuf's JSON parser reads.
bool writeFloat(std::string_view s, std::string& out) {
  for (std::string_view inf : {".inf", ".Inf", ".INF"}) {
    if (s == inf || (s.size() == 5 && s[0] == '+' && s.substr(1) == inf)) {
      out += "\"Infinity\"";
      return true;
    }
    if (s.size() == 5 && s[0] == '-' && s.substr(1) == inf) {
      out += "\"-Infinity\"";
      return true;
    }
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    out += "\"NaN\"";
    return true;
  }
  size_t i = 0;
  auto digits = [&s, &i] {
    size_t count = 0;
    while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
      ++count;
    }
    return count;
  };
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    ++i;
  }
  const size_t int_digits = digits();
  size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    frac_digits = digits();
  }
  if (int_digits == 0 && frac_digits == 0) {
    return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
      ++i;
    }
    if (digits() == 0) {
      return false;
    }
  }
  if (i != s.size()) {
    return false;
  }
  const std::string text(s);  // strtod needs a terminated string
  errno = 0;
  const double value = std::strtod(text.c_str(), nullptr);
  if (errno == ERANGE && (value == HUGE_VAL || value == -HUGE_VAL)) {
    out += value > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return true;
  }
  writeDouble(value, out);
  return true;
}

// --- Conversion. ------------------------------------------------------------------------------

// A map entry converted on its own: the key and the value's JSON text.
using Entry = std::pair<std::string_view, std::string>;

// The keys of one map, for duplicate detection: a linear scan while small.
class KeySet {
 public:
  // Adds `key`; false if it was there already.
  bool insert(std::string_view key) {
    if (set_.empty()) {
      for (std::string_view k : small_) {
        if (k == key) {
          return false;
        }
      }
      if (small_.size() < 16) {
        small_.push_back(key);
        return true;
      }
      set_.insert(small_.begin(), small_.end());
    }
    return set_.insert(key).second;
  }

 private:
  std::vector<std::string_view> small_;
  std::unordered_set<std::string_view> set_;
};

class Converter {
 public:
  explicit Converter(const Tree& tree)
      : tree_(tree), budget_(std::max(kMinExpansionBudget, 16 * tree.nodes.size())) {}

  // Appends `node` as JSON; `depth` counts the levels above it.
  void convert(uint32_t index, int depth, std::string& out) {
    const Node& node = checkDepth(index, depth);
    if (++written_ > budget_) {
      throw YamlError{node.mark, "aliases expand the document to more than " +
                                     std::to_string(budget_) + " nodes"};
    }
    switch (node.kind) {
      case Node::Kind::Null:
        out += "null";
        return;
      case Node::Kind::Scalar:
        writeScalar(node, out);
        return;
      case Node::Kind::Sequence: {
        out += '[';
        for (size_t i = 0; i < node.size; ++i) {
          if (i > 0) {
            out += ',';
          }
          convert(tree_.children[node.begin + i], depth + 1, out);
        }
        out += ']';
        return;
      }
      case Node::Kind::Map:
        out += '{';
        convertMap(node, depth, &out, nullptr);
        out += '}';
        return;
    }
  }

 private:
  const Node& checkDepth(uint32_t index, int depth) const {
    const Node& node = tree_.nodes[index];
    if (depth > kMaxDepth) {
      throw YamlError{node.mark, "nested deeper than " + std::to_string(kMaxDepth) + " levels"};
    }
    return node;
  }

  void writeScalar(const Node& node, std::string& out) const {
    const std::string_view text = tree_.scalar(node);
    if (node.tag == Node::kQuoted) {
      writeString(text, out);
      return;
    }
    if (node.tag == Node::kPlain) {
      // Nulls are Node::Kind::Null already.
      bool b = false;
      if (parseBool(text, b)) {
        out += b ? "true" : "false";
      } else if (!writeInteger(text, out) && !writeFloat(text, out)) {
        writeString(text, out);
      }
      return;
    }
    // An explicit tag: "!" (non-specific) or !!str is a string, !!null, !!bool, !!int and
    // !!float must fit, !!binary and local tags (!foo) leave a string.
    const std::string& tag = tree_.tags[node.tag - 2];
    const std::string_view type =
        tag.rfind(kYamlTag, 0) == 0 ? std::string_view(tag).substr(kYamlTag.size()) : "";
    bool b = false;
    if (tag == "!" || type == "str") {
      writeString(text, out);
    } else if (type == "null" && isNull(text) && !text.empty()) {
      out += "null";
    } else if (type == "bool" && parseBool(text, b)) {
      out += b ? "true" : "false";
    } else if ((type == "int" && writeInteger(text, out)) ||
               (type == "float" && writeFloat(text, out))) {
    } else if (!type.empty() && type != "binary") {
      throw YamlError{node.mark, "'" + std::string(text) + "' is not a valid " + std::string(type)};
    } else {
      writeString(text, out);
    }
  }

  bool isMergeKey(const Node& key) const {
    return key.kind == Node::Kind::Scalar && key.tag == Node::kPlain && tree_.scalar(key) == "<<";
  }

  // Converts the entries of the map `node` (whose depth is checked): its own keys in order,
  // then those of its merge keys' maps that it lacks. Writes "k":v,... to `*out`, or adds
  // them to `*entries` when the map is itself being merged.
  void convertMap(const Node& node, int depth, std::string* out, std::vector<Entry>* entries) {
    KeySet keys;
    std::vector<uint32_t> merges;
    bool first = true;
    for (size_t i = 0; i < node.size; i += 2) {
      const Node& key = tree_.nodes[tree_.children[node.begin + i]];
      const uint32_t value = tree_.children[node.begin + i + 1];
      if (isMergeKey(key)) {
        merges.push_back(value);
        continue;
      }
      if (key.kind != Node::Kind::Scalar) {
        throw YamlError{key.mark, "map keys must be scalars"};
      }
      const std::string_view name = tree_.scalar(key);
      if (!keys.insert(name)) {
        throw YamlError{key.mark, "duplicate key '" + std::string(name) + "'"};
      }
      if (entries != nullptr) {
        convert(value, depth + 1, entries->emplace_back(name, std::string()).second);
        continue;
      }
      if (!first) {
        *out += ',';
      }
      first = false;
      writeString(name, *out);
      *out += ':';
      convert(value, depth + 1, *out);
    }
    if (merges.empty()) {
      return;
    }
    // Merge keys: a map, or a sequence of maps of which earlier ones take precedence. Each
    // merged map is converted (with its own merges) at one level deeper, as a whole.
    // (Keys are views of the tree's text, so they outlive the merged entries.)
    auto merge = [&](uint32_t index) {
      const Node& source = checkDepth(index, depth + 1);
      std::vector<Entry> merged;
      convertMap(source, depth + 1, nullptr, &merged);
      for (Entry& entry : merged) {
        if (!keys.insert(entry.first)) {
          continue;
        }
        if (entries != nullptr) {
          entries->emplace_back(entry.first, std::move(entry.second));
          continue;
        }
        if (!first) {
          *out += ',';
        }
        first = false;
        writeString(entry.first, *out);
        *out += ':';
        *out += entry.second;
      }
    };
    for (uint32_t index : merges) {
      const Node& value = tree_.nodes[index];
      if (value.kind == Node::Kind::Map) {
        merge(index);
      } else if (value.kind == Node::Kind::Sequence) {
        for (size_t i = 0; i < value.size; ++i) {
          const uint32_t item = tree_.children[value.begin + i];
          if (tree_.nodes[item].kind != Node::Kind::Map) {
            throw YamlError{tree_.nodes[item].mark, std::string(kMergeError)};
          }
          merge(item);
        }
      } else {
        throw YamlError{value.mark, std::string(kMergeError)};
      }
    }
  }

  const Tree& tree_;
  const size_t budget_;
  size_t written_{0};
};

}  // namespace

bool yamlToJson(std::string_view yaml, std::string& json, std::string& error) {
  Tree tree;
  int64_t root = -1;
  size_t documents = 0;
  Mark second_mark;
  if (!parseTree(yaml, tree, root, documents, second_mark, error)) {
    return false;
  }
  if (documents > 1) {
    error = formatError(second_mark, "expected one document, found " + std::to_string(documents));
    return false;
  }
  json.clear();
  if (root < 0) {
    json = "null";
    return true;
  }
  json.reserve(yaml.size());
  try {
    Converter(tree).convert(static_cast<uint32_t>(root), 0, json);
    return true;
  } catch (const YamlError& e) {
    error = formatError(e.mark, e.message);
  }
  return false;
}

bool checkJsonSyntax(std::string_view json, std::string& error) {
  try {
    const Json parsed = Json::parse(json);
    (void)parsed;
    return true;
  } catch (const nlohmann::json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..."
    std::string what = e.what();
    const std::string marker = "parse error at ";
    const auto at = what.find(marker);
    error = "json: " + (at == std::string::npos ? what : what.substr(at + marker.size()));
  } catch (const nlohmann::json::exception& e) {
    error = std::string("json: ") + e.what();
  }
  return false;
}

}  // namespace sluice::config
