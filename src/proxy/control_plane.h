// The control plane's record of what is served and how it got there: the configuration file's
// Config, the admin API's runtime overrides on top of it, the published snapshot, reloads, and a
// short log of events (reloads, admin changes, health transitions) for the admin API.
//
// Threads: everything here runs on the control-plane thread (the io_context thread of
// run_server): SIGHUP handling, the admin API and the health checker. No locks.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/admin/overrides.h"
#include "proxy/snapshot.h"

namespace switchyard::upstream {
class HealthChecker;
}

namespace switchyard::proxy {

class Worker;

struct ReloadResult {
  bool ok = false;
  std::vector<std::string> errors;             // why it was refused (file:line:column: ...)
  std::vector<admin::OverrideNote> overrides;  // what it did to runtime overrides
};

// Result of an admin change: `status` is an HTTP status (200, 201, 400, 404, 409, 500).
struct ChangeResult {
  int status = 200;
  std::string error;
};

struct Event {
  std::uint64_t seq = 0;
  std::int64_t unix_ms = 0;
  std::string kind;  // "reload", "admin", "health"
  std::string text;
};

class ControlPlane {
 public:
  // Makes `config` (already validated) the served configuration: the snapshot built for it, or
  // null with `error` set and nothing changed. Provided by run_server.
  using Publish = std::function<std::shared_ptr<const Snapshot>(
      std::shared_ptr<const config::Config> config, std::string& error)>;
  // Checks (commit = false) or takes over (commit = true) what the admin server needs of a new
  // configuration (token files). Returns an error message, empty on success.
  using AdminReload = std::function<std::string(const config::Config& config, bool commit)>;

  ControlPlane(std::string config_path, std::shared_ptr<const Snapshot> initial,
               std::vector<Worker*> workers, Publish publish);

  // SIGHUP and POST /api/v1/reload: re-read the file; publish it (with the runtime overrides that
  // survive, see admin/overrides.h) only if it is entirely valid. `who` names the requester in
  // logs ("SIGHUP", "admin token 'ops'").
  ReloadResult reload(const std::string& who);

  // Admin changes to one server of a pool, published at once. `who` goes to the log.
  ChangeResult patch_server(const std::string& pool, const std::string& address,
                            const admin::ServerPatch& patch, const std::string& who);
  ChangeResult add_server(const std::string& pool, const config::Server& server,
                          const std::string& who);
  ChangeResult remove_server(const std::string& pool, const std::string& address,
                             const std::string& who);
  ChangeResult reset_server(const std::string& pool, const std::string& address,
                            const std::string& who);

  // Compares the servers' active-check states with the last call and logs transitions as events.
  // The admin server calls it every second.
  void poll_health();

  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  const config::Config& config() const { return *snapshot_->config; }
  const config::Config& file_config() const { return *file_config_; }
  const admin::Overrides& overrides() const { return overrides_; }
  const std::vector<admin::OverrideNote>& last_reload_notes() const { return last_notes_; }
  const std::string& config_path() const { return config_path_; }
  const std::vector<Worker*>& workers() const { return workers_; }

  std::uint64_t reloads_ok() const { return reloads_ok_; }
  std::uint64_t reloads_failed() const { return reloads_failed_; }
  std::uint64_t changes() const { return changes_; }
  std::int64_t started_unix_ms() const { return started_ms_; }
  std::int64_t loaded_unix_ms() const { return loaded_ms_; }
  std::int64_t last_reload_unix_ms() const { return last_reload_ms_; }

  void set_health_checker(upstream::HealthChecker* h) { health_ = h; }
  upstream::HealthChecker* health_checker() const { return health_; }
  void set_admin_reload(AdminReload f) { admin_reload_ = std::move(f); }

  // Recent events, oldest first (at most kMaxEvents).
  const std::deque<Event>& events() const { return events_; }
  void add_event(std::string kind, std::string text);
  static constexpr std::size_t kMaxEvents = 200;

 private:
  ChangeResult publish_overrides(const std::string& what, const std::string& who);

  std::string config_path_;
  std::shared_ptr<const config::Config> file_config_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<Worker*> workers_;
  Publish publish_;
  AdminReload admin_reload_;
  upstream::HealthChecker* health_ = nullptr;
  admin::Overrides overrides_;
  std::vector<admin::OverrideNote> last_notes_;
  std::uint64_t reloads_ok_ = 0;
  std::uint64_t reloads_failed_ = 0;
  std::uint64_t changes_ = 0;
  std::int64_t started_ms_ = 0;
  std::int64_t loaded_ms_ = 0;
  std::int64_t last_reload_ms_ = 0;
  std::deque<Event> events_;
  std::uint64_t next_seq_ = 1;
  std::map<std::string, std::string> health_seen_;  // "pool/address" -> last state name
};

std::int64_t unix_now_ms();

}  // namespace switchyard::proxy
