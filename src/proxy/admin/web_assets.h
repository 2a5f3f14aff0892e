// The dashboard's files (src/proxy/admin/web/), embedded into the binary at build time by
// cmake/embed_assets.cmake: the admin server needs nothing beside the executable and fetches
// nothing at run time.
#pragma once

#include <string_view>

namespace switchyard::proxy::admin {

struct WebAsset {
  std::string_view path;  // "/index.html"
  std::string_view content_type;
  std::string_view body;
};

// The asset served at `path`, or null.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace switchyard::proxy::admin
