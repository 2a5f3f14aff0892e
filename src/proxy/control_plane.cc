#include "proxy/control_plane.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "config/config_loader.h"

namespace switchyard::proxy {

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ControlPlane::ControlPlane(std::string config_path, std::shared_ptr<const Snapshot> initial,
                           std::vector<Worker*> workers, Publish publish)
    : config_path_(std::move(config_path)),
      file_config_(initial->config),
      snapshot_(std::move(initial)),
      workers_(std::move(workers)),
      publish_(std::move(publish)),
      started_ms_(unix_now_ms()),
      loaded_ms_(started_ms_) {}

void ControlPlane::add_event(std::string kind, std::string text) {
  events_.push_back({next_seq_++, unix_now_ms(), std::move(kind), std::move(text)});
  while (events_.size() > kMaxEvents) events_.pop_front();
}

ReloadResult ControlPlane::reload(const std::string& who) {
  ReloadResult r;
  auto refuse = [&](std::string why) {
    ++reloads_failed_;
    last_reload_ms_ = unix_now_ms();
    spdlog::error("reload refused: {}; still serving the previous configuration", why);
    add_event("reload", fmt::format("reload by {} refused: {}", who, why));
    return r;
  };
  if (config_path_.empty()) {
    spdlog::warn("{}: no configuration file to reload (demo mode)", who);
    r.errors.push_back("no configuration file to reload (demo mode)");
    return r;
  }
  spdlog::info("{}: reloading {}", who, config_path_);
  config::LoadResult loaded = config::load_file(config_path_);
  if (!loaded.ok()) {
    for (const auto& d : loaded.diagnostics) {
      spdlog::error("{}", d.to_string());
      r.errors.push_back(d.to_string());
    }
    return refuse(fmt::format("{} error(s)", loaded.diagnostics.size()));
  }
  if (admin_reload_) {
    if (std::string err = admin_reload_(*loaded.config, false); !err.empty()) {
      r.errors.push_back(err);
      return refuse(err);
    }
  }
  // The overrides that survive this file, applied on top of it.
  admin::Overrides next_overrides = overrides_;
  std::vector<admin::OverrideNote> notes = next_overrides.reconcile(*file_config_, *loaded.config);
  std::string err;
  std::shared_ptr<const Snapshot> next = publish_(next_overrides.apply(*loaded.config), err);
  if (!next) {
    r.errors.push_back(err);
    return refuse(err);
  }
  if (admin_reload_) admin_reload_(*loaded.config, true);
  snapshot_ = std::move(next);
  file_config_ = loaded.config;
  overrides_ = std::move(next_overrides);
  last_notes_ = notes;
  ++reloads_ok_;
  loaded_ms_ = last_reload_ms_ = unix_now_ms();
  for (const admin::OverrideNote& n : notes) {
    if (n.outcome == "adopted") continue;
    spdlog::warn("reload {} runtime change {}/{} {}={} (file: {})", n.outcome, n.pool, n.server,
                 n.setting, n.runtime, n.file);
  }
  std::string overridden;
  for (const admin::OverrideNote& n : notes) {
    if (n.outcome != "adopted")
      overridden += fmt::format("; {} {}/{} {}", n.outcome, n.pool, n.server, n.setting);
  }
  add_event("reload", fmt::format("configuration reloaded by {}{}", who, overridden));
  spdlog::info("configuration reloaded from {}", config_path_);
  r.ok = true;
  r.overrides = std::move(notes);
  return r;
}

ChangeResult ControlPlane::publish_overrides(const std::string& what, const std::string& who) {
  std::string err;
  std::shared_ptr<const Snapshot> next = publish_(overrides_.apply(*file_config_), err);
  if (!next) {
    spdlog::error("admin: {} by {} could not be applied: {}", what, who, err);
    return {500, err};
  }
  snapshot_ = std::move(next);
  ++changes_;
  spdlog::info("admin: {} by {}", what, who);
  add_event("admin", fmt::format("{} by {}", what, who));
  return {};
}

ChangeResult ControlPlane::patch_server(const std::string& pool, const std::string& address,
                                        const admin::ServerPatch& patch, const std::string& who) {
  admin::Overrides before = overrides_;
  if (std::string err = overrides_.patch(*file_config_, pool, address, patch); !err.empty()) {
    return {err.starts_with("no ") ? 404 : 400, err};
  }
  std::string what = fmt::format("server {}/{}", pool, address);
  if (patch.weight) what += fmt::format(" weight={}", *patch.weight);
  if (patch.drain) what += fmt::format(" drain={}", admin::setting_text(*patch.drain));
  if (patch.maintenance) {
    what += fmt::format(" maintenance={}", admin::setting_text(*patch.maintenance));
  }
  ChangeResult r = publish_overrides(what, who);
  if (r.status != 200) overrides_ = std::move(before);
  return r;
}

ChangeResult ControlPlane::add_server(const std::string& pool, const config::Server& server,
                                      const std::string& who) {
  admin::Overrides before = overrides_;
  if (std::string err = overrides_.add(*file_config_, pool, server); !err.empty()) {
    return {err.starts_with("no ")                     ? 404
            : err.find("already") != std::string::npos ? 409
                                                       : 400,
            err};
  }
  ChangeResult r = publish_overrides(
      fmt::format("server {}/{} added (weight={})", pool, server.address.text, server.weight), who);
  if (r.status != 200) {
    overrides_ = std::move(before);
    return r;
  }
  return {201, {}};
}

ChangeResult ControlPlane::remove_server(const std::string& pool, const std::string& address,
                                         const std::string& who) {
  admin::Overrides before = overrides_;
  if (std::string err = overrides_.remove(*file_config_, pool, address); !err.empty()) {
    return {err.starts_with("no ") ? 404 : 409, err};
  }
  ChangeResult r = publish_overrides(fmt::format("server {}/{} removed", pool, address), who);
  if (r.status != 200) overrides_ = std::move(before);
  return r;
}

ChangeResult ControlPlane::reset_server(const std::string& pool, const std::string& address,
                                        const std::string& who) {
  admin::Overrides before = overrides_;
  if (!overrides_.reset(pool, address)) {
    return {404, fmt::format("no runtime change to server {} of pool {}", address, pool)};
  }
  ChangeResult r = publish_overrides(
      fmt::format("server {}/{} back to the configuration file", pool, address), who);
  if (r.status != 200) overrides_ = std::move(before);
  return r;
}

void ControlPlane::poll_health() {
  const Snapshot& s = *snapshot_;
  std::map<std::string, std::string> seen;
  for (const auto& state : s.pool_states) {
    for (std::size_t i = 0; i < state->size(); ++i) {
      std::string key = state->name() + "/" + state->address(i);
      const upstream::ServerHealth& h = state->health(i);
      std::string now = upstream::health_name(h.state.load(std::memory_order_acquire));
      auto prev = health_seen_.find(key);
      bool changed = prev != health_seen_.end() ? prev->second != now : now == "down";
      if (changed && now != "unchecked") {
        std::string text = fmt::format("server {} {}", key, now == "up" ? "UP" : "DOWN");
        if (now == "down" && !h.last_reason.empty()) text += ": " + h.last_reason;
        add_event("health", std::move(text));
      }
      seen[key] = std::move(now);
    }
  }
  health_seen_ = std::move(seen);
}

}  // namespace switchyard::proxy
