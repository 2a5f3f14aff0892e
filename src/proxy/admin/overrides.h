// Runtime overrides: server changes made through the admin API (weight, drain, maintenance, added
// and removed servers), kept apart from the configuration file and applied on top of it.
//
// The configuration model is immutable: a change never edits the served Config. The control plane
// keeps the file's Config and these overrides, and publishes a NEW Config = apply(file) exactly as
// a reload publishes one, so connections, health and persistence are reconciled the same way.
//
// Reloads (reconcile): an override survives a reload while the file leaves the same setting as it
// was; when the new file changes a setting that was overridden, the file wins and the override is
// dropped and reported ("overridden"); when the new file says what the override says, the override
// is no longer needed and is dropped quietly ("adopted"). Overrides of a server or pool that the
// new file no longer has are dropped and reported. A server added at run time that the file now
// defines is the file's from then on (reported as "adopted" or "overridden" when the file's
// settings differ).
//
// Pure code; the control plane calls it on its own thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"

namespace switchyard::proxy::admin {

// Settings of one server that the admin API may change.
struct ServerPatch {
  std::optional<std::uint32_t> weight;
  std::optional<bool> drain;
  std::optional<bool> maintenance;

  bool empty() const { return !weight && !drain && !maintenance; }
};

// What a reload did to one override.
struct OverrideNote {
  std::string pool;
  std::string server;   // address
  std::string setting;  // "weight", "drain", "maintenance", "added", "removed"
  std::string runtime;  // the runtime value ("5", "true", ...)
  std::string file;     // what the file says now ("-" when absent)
  std::string outcome;  // "overridden" (file wins), "adopted" (file agrees), "dropped" (gone)
};

class Overrides {
 public:
  struct PoolOverrides {
    std::map<std::string, ServerPatch> patches;  // by address, servers of the file
    std::vector<config::Server> added;           // in the order added
    std::vector<std::string> removed;            // addresses of file servers taken out
    bool empty() const { return patches.empty() && added.empty() && removed.empty(); }
  };

  // `file` with every override applied (pools or servers the file lacks are skipped).
  std::shared_ptr<const config::Config> apply(const config::Config& file) const;

  // Changes, each checked against `file` + the current overrides. An error message (empty on
  // success) and nothing changed on error. Callers publish apply(file) afterwards.
  std::string patch(const config::Config& file, const std::string& pool, const std::string& address,
                    const ServerPatch& patch);
  std::string add(const config::Config& file, const std::string& pool, config::Server server);
  std::string remove(const config::Config& file, const std::string& pool,
                     const std::string& address);
  // Forgets every override of one server (it returns to what the file says; an added server is
  // removed again). False when there was none.
  bool reset(const std::string& pool, const std::string& address);

  // A reload replaced `old_file` with `new_file`: keep, drop or adopt each override (see above).
  std::vector<OverrideNote> reconcile(const config::Config& old_file,
                                      const config::Config& new_file);

  const std::map<std::string, PoolOverrides>& pools() const { return pools_; }
  bool empty() const { return pools_.empty(); }

 private:
  // The pool's servers as apply() would produce them; null when the file has no such pool.
  static const config::Pool* find_pool(const config::Config& file, const std::string& pool);
  std::vector<config::Server> servers_of(const config::Pool& file_pool) const;
  std::string check_pool(const config::Pool& file_pool, const PoolOverrides& candidate) const;
  void prune();

  std::map<std::string, PoolOverrides> pools_;
};

// A server's settings as text, for notes and messages ("true", "3").
std::string setting_text(bool v);

// Validation shared with the loader's ranges.
constexpr std::uint32_t kMaxWeight = 256;
constexpr std::uint32_t kMaxServersPerPool = 64;

}  // namespace switchyard::proxy::admin
