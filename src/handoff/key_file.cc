#include "handoff/key_file.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace switchyard::handoff {

std::optional<std::string> read_key_file(const std::string& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = fmt::format("{}: {}", path, std::strerror(errno));
    return std::nullopt;
  }
  std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (key.size() < 32) {
    error =
        fmt::format("{}: a handoff key needs at least 32 bytes (head -c 32 /dev/urandom)", path);
    return std::nullopt;
  }
  return key;
}

}  // namespace switchyard::handoff
