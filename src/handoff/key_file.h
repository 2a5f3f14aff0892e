// The shared secret of the handoff control channel (message.h), read by the front end's config
// loader and by `switchyard agent`.
#pragma once

#include <optional>
#include <string>

namespace switchyard::handoff {

// Reads the key file: at least 32 bytes of secret (e.g. `head -c 32 /dev/urandom | base64`);
// trailing newlines are not part of the key.
std::optional<std::string> read_key_file(const std::string& path, std::string& error);

}  // namespace switchyard::handoff
