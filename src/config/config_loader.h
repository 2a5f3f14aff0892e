// Reads a YAML configuration file into a validated, immutable Config.
//
// Every problem found is reported, not just the first, each as a Diagnostic that prints as
// `file:line:column: message` (1-based, like compilers). A load either yields a complete Config
// and no diagnostics, or diagnostics and no Config: there is never a partially valid result.
// Pure code, callable from any thread; it reads only the named file.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace switchyard::config {

struct Diagnostic {
  std::string file;
  int line = 0;    // 1-based; 0 when the problem is about the file as a whole
  int column = 0;  // 1-based
  std::string message;

  // "file:line:column: message" (or "file: message" without a position).
  std::string to_string() const;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when diagnostics is non-empty
  std::vector<Diagnostic> diagnostics;

  bool ok() const { return config != nullptr; }
};

// Loads and validates `path`.
LoadResult load_file(const std::string& path);

// Loads and validates YAML text; `file_name` is used in diagnostics only.
LoadResult load_string(std::string_view yaml, const std::string& file_name = "<string>");

// Parses "127.0.0.1:80" / "[::1]:80" into `out`. Returns an error message, empty on success.
std::string parse_socket_address(std::string_view text, SocketAddress& out);

}  // namespace switchyard::config
