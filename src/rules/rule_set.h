// Content-based routing: route tables compiled once per configuration snapshot, matched per
// request. Pure code (request view in, decision out): no I/O, no allocation per request in steady
// state (callers pass a MatchScratch they reuse), no locks. A RuleSet is immutable after
// compile() and may be shared by all workers; MatchScratch is per worker.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "http/message_parser.h"

namespace switchyard::rules {

// What the matcher sees of a request: its parsed head (spans into `base`) and the client address.
struct RequestView {
  const char* base = nullptr;
  const http::Head* head = nullptr;
  const sockaddr* client = nullptr;  // AF_INET or AF_INET6
  bool tls = false;                  // arrived on a TLS listener ({scheme} is https)
};

// Reusable per-worker buffers; capacity grows to the largest request seen, then stays.
struct MatchScratch {
  std::string path;  // normalised path of the current request
  std::string work;  // temporary space for decoding
};

struct Decision {
  const config::Route* route = nullptr;  // the route that matched; null: no route matched
  int pool = -1;  // for pool and split routes: index into the config's pools in map order
};

class RuleSet {
 public:
  // Compiles every route table in `config`, which must outlive the RuleSet (it points into it).
  // The config has been validated by the loader; on a compile failure anyway (e.g. an RE2 the
  // loader accepted but RE2 rejects) returns null and sets `error`.
  static std::unique_ptr<RuleSet> compile(const config::Config& config, std::string& error);
  virtual ~RuleSet() = default;

  // Index of a route table by name, -1 if absent.
  virtual int table_index(std::string_view name) const = 0;

  // First matching route of `table`, following goto jumps; for splits, the pool is chosen here.
  virtual Decision decide(int table, const RequestView& req, MatchScratch& scratch) const = 0;

  // The Location of a redirect decision (absolute URL), appended to `out`.
  virtual void redirect_location(const Decision& d, const RequestView& req, MatchScratch& scratch,
                                 std::string& out) const = 0;

  // For a route with a path rewrite: appends the request-target to send upstream (rewritten path
  // plus the original query) to `out` and returns true; false (out untouched) if the route has no
  // rewrite or the rewrite does not apply to this path.
  virtual bool rewrite_target(const Decision& d, const RequestView& req, MatchScratch& scratch,
                              std::string& out) const = 0;
};

// Normalises the path part of a request-target for matching: percent-decodes unreserved
// characters (ALPHA DIGIT - . _ ~), upper-cases the hex of the remaining escapes, resolves "." and
// ".." segments (RFC 3986 §5.2.4; ".." never climbs above "/"), and merges repeated slashes.
// Returns false for a path that does not start with "/" or has a malformed escape.
bool normalize_path(std::string_view path, std::string& out);

}  // namespace switchyard::rules
