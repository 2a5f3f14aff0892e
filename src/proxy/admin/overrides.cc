#include "proxy/admin/overrides.h"

#include <fmt/format.h>

#include <algorithm>
#include <memory>

namespace switchyard::proxy::admin {
namespace {

std::vector<config::Server> servers_with(const config::Pool& file_pool,
                                         const Overrides::PoolOverrides* o) {
  std::vector<config::Server> out;
  for (const config::Server& s : file_pool.servers) {
    if (o && std::find(o->removed.begin(), o->removed.end(), s.address.text) != o->removed.end()) {
      continue;
    }
    config::Server copy = s;
    if (o) {
      if (auto it = o->patches.find(s.address.text); it != o->patches.end()) {
        const ServerPatch& p = it->second;
        if (p.weight) copy.weight = *p.weight;
        if (p.drain) copy.drain = *p.drain;
        if (p.maintenance) copy.maintenance = *p.maintenance;
      }
    }
    out.push_back(std::move(copy));
  }
  if (o) {
    for (const config::Server& s : o->added) {
      bool present = false;
      for (const config::Server& have : out)
        present = present || have.address.text == s.address.text;
      if (!present) out.push_back(s);
    }
  }
  return out;
}

const config::Server* find_server(const config::Pool* pool, const std::string& address) {
  if (!pool) return nullptr;
  for (const config::Server& s : pool->servers) {
    if (s.address.text == address) return &s;
  }
  return nullptr;
}

}  // namespace

std::string setting_text(bool v) {
  return v ? "true" : "false";
}

const config::Pool* Overrides::find_pool(const config::Config& file, const std::string& pool) {
  auto it = file.pools.find(pool);
  return it == file.pools.end() ? nullptr : &it->second;
}

std::vector<config::Server> Overrides::servers_of(const config::Pool& file_pool) const {
  auto it = pools_.find(file_pool.name);
  return servers_with(file_pool, it == pools_.end() ? nullptr : &it->second);
}

std::shared_ptr<const config::Config> Overrides::apply(const config::Config& file) const {
  auto out = std::make_shared<config::Config>(file);
  for (const auto& [name, o] : pools_) {
    auto it = out->pools.find(name);
    if (it == out->pools.end()) continue;
    it->second.servers = servers_of(file.pools.at(name));
  }
  return out;
}

std::string Overrides::check_pool(const config::Pool& file_pool,
                                  const PoolOverrides& candidate) const {
  std::vector<config::Server> servers = servers_with(file_pool, &candidate);
  if (servers.empty()) return fmt::format("pool {} would have no server left", file_pool.name);
  if (servers.size() > kMaxServersPerPool) {
    return fmt::format("pool {} would have {} servers; at most {} are supported", file_pool.name,
                       servers.size(), kMaxServersPerPool);
  }
  bool primary = false;
  for (const config::Server& s : servers) primary = primary || !s.backup;
  if (!primary) return fmt::format("pool {} would have only backup servers", file_pool.name);
  return {};
}

std::string Overrides::patch(const config::Config& file, const std::string& pool,
                             const std::string& address, const ServerPatch& patch) {
  const config::Pool* fp = find_pool(file, pool);
  if (!fp) return fmt::format("no pool {}", pool);
  if (patch.empty()) return "nothing to change: give weight, drain or maintenance";
  if (patch.weight && *patch.weight > kMaxWeight) {
    return fmt::format("weight {} is out of range 0..{}", *patch.weight, kMaxWeight);
  }
  PoolOverrides candidate = pools_[pool];
  // A server added at run time carries its settings in its definition.
  for (config::Server& s : candidate.added) {
    if (s.address.text != address || find_server(fp, address)) continue;
    if (patch.weight) s.weight = *patch.weight;
    if (patch.drain) s.drain = *patch.drain;
    if (patch.maintenance) s.maintenance = *patch.maintenance;
    pools_[pool] = std::move(candidate);
    return {};
  }
  const config::Server* fs = find_server(fp, address);
  if (!fs || std::find(candidate.removed.begin(), candidate.removed.end(), address) !=
                 candidate.removed.end()) {
    prune();
    return fmt::format("no server {} in pool {}", address, pool);
  }
  ServerPatch& p = candidate.patches[address];
  if (patch.weight) p.weight = *patch.weight;
  if (patch.drain) p.drain = *patch.drain;
  if (patch.maintenance) p.maintenance = *patch.maintenance;
  // A value equal to the file's is no override at all.
  if (p.weight && *p.weight == fs->weight) p.weight.reset();
  if (p.drain && *p.drain == fs->drain) p.drain.reset();
  if (p.maintenance && *p.maintenance == fs->maintenance) p.maintenance.reset();
  if (p.empty()) candidate.patches.erase(address);
  pools_[pool] = std::move(candidate);
  prune();
  return {};
}

std::string Overrides::add(const config::Config& file, const std::string& pool,
                           config::Server server) {
  const config::Pool* fp = find_pool(file, pool);
  if (!fp) return fmt::format("no pool {}", pool);
  if (server.weight > kMaxWeight) {
    return fmt::format("weight {} is out of range 0..{}", server.weight, kMaxWeight);
  }
  for (const config::Server& s : servers_of(*fp)) {
    if (s.address.text == server.address.text) {
      return fmt::format("pool {} already has server {}", pool, server.address.text);
    }
  }
  PoolOverrides candidate = pools_[pool];
  auto removed = std::find(candidate.removed.begin(), candidate.removed.end(), server.address.text);
  if (removed != candidate.removed.end()) {
    // Taken out earlier and back now: with the settings given here.
    candidate.removed.erase(removed);
    const config::Server* fs = find_server(fp, server.address.text);
    ServerPatch& p = candidate.patches[server.address.text];
    p = {};
    if (server.weight != fs->weight) p.weight = server.weight;
    if (server.drain != fs->drain) p.drain = server.drain;
    if (server.maintenance != fs->maintenance) p.maintenance = server.maintenance;
    if (p.empty()) candidate.patches.erase(server.address.text);
  } else {
    candidate.added.push_back(std::move(server));
  }
  if (std::string err = check_pool(*fp, candidate); !err.empty()) {
    prune();
    return err;
  }
  pools_[pool] = std::move(candidate);
  return {};
}

std::string Overrides::remove(const config::Config& file, const std::string& pool,
                              const std::string& address) {
  const config::Pool* fp = find_pool(file, pool);
  if (!fp) return fmt::format("no pool {}", pool);
  PoolOverrides candidate = pools_[pool];
  auto added = std::find_if(candidate.added.begin(), candidate.added.end(),
                            [&](const config::Server& s) { return s.address.text == address; });
  bool in_file = find_server(fp, address) != nullptr &&
                 std::find(candidate.removed.begin(), candidate.removed.end(), address) ==
                     candidate.removed.end();
  if (added != candidate.added.end() && !find_server(fp, address)) {
    candidate.added.erase(added);
  } else if (in_file) {
    candidate.removed.push_back(address);
    candidate.patches.erase(address);
  } else {
    prune();
    return fmt::format("no server {} in pool {}", address, pool);
  }
  if (std::string err = check_pool(*fp, candidate); !err.empty()) {
    prune();
    return err;
  }
  pools_[pool] = std::move(candidate);
  prune();
  return {};
}

bool Overrides::reset(const std::string& pool, const std::string& address) {
  auto it = pools_.find(pool);
  if (it == pools_.end()) return false;
  PoolOverrides& o = it->second;
  bool found = o.patches.erase(address) > 0;
  auto added = std::find_if(o.added.begin(), o.added.end(),
                            [&](const config::Server& s) { return s.address.text == address; });
  if (added != o.added.end()) {
    o.added.erase(added);
    found = true;
  }
  auto removed = std::find(o.removed.begin(), o.removed.end(), address);
  if (removed != o.removed.end()) {
    o.removed.erase(removed);
    found = true;
  }
  prune();
  return found;
}

std::vector<OverrideNote> Overrides::reconcile(const config::Config& old_file,
                                               const config::Config& new_file) {
  std::vector<OverrideNote> notes;
  for (auto& [pool, o] : pools_) {
    const config::Pool* old_pool = find_pool(old_file, pool);
    const config::Pool* new_pool = find_pool(new_file, pool);
    if (!new_pool) {
      for (const auto& [address, p] : o.patches) {
        notes.push_back({pool, address, "server", "changed", "-", "dropped"});
      }
      for (const config::Server& s : o.added) {
        notes.push_back({pool, s.address.text, "added", "true", "-", "dropped"});
      }
      for (const std::string& a : o.removed) {
        notes.push_back({pool, a, "removed", "true", "-", "dropped"});
      }
      o = {};
      continue;
    }
    // Patches of file servers: per setting, the new file wins only where it changed.
    for (auto it = o.patches.begin(); it != o.patches.end();) {
      const std::string& address = it->first;
      ServerPatch& p = it->second;
      const config::Server* was = find_server(old_pool, address);
      const config::Server* now = find_server(new_pool, address);
      if (!now) {
        notes.push_back({pool, address, "server", "changed", "-", "dropped"});
        it = o.patches.erase(it);
        continue;
      }
      auto settle = [&](auto& field, auto config::Server::*member, const char* name, auto to_text) {
        if (!field) return;
        auto file_now = now->*member;
        if (*field == file_now) {
          notes.push_back({pool, address, name, to_text(*field), to_text(file_now), "adopted"});
          field.reset();
        } else if (!was || was->*member != file_now) {
          notes.push_back({pool, address, name, to_text(*field), to_text(file_now), "overridden"});
          field.reset();
        }
      };
      auto num = [](std::uint32_t v) { return std::to_string(v); };
      auto flag = [](bool v) { return setting_text(v); };
      settle(p.weight, &config::Server::weight, "weight", num);
      settle(p.drain, &config::Server::drain, "drain", flag);
      settle(p.maintenance, &config::Server::maintenance, "maintenance", flag);
      it = p.empty() ? o.patches.erase(it) : std::next(it);
    }
    // Added servers the file now defines are the file's.
    for (auto it = o.added.begin(); it != o.added.end();) {
      const config::Server* now = find_server(new_pool, it->address.text);
      if (!now) {
        ++it;
        continue;
      }
      bool same = now->weight == it->weight && now->drain == it->drain &&
                  now->maintenance == it->maintenance && now->backup == it->backup &&
                  now->max_connections == it->max_connections;
      notes.push_back(
          {pool, it->address.text, "added", "true", "true", same ? "adopted" : "overridden"});
      it = o.added.erase(it);
    }
    // Removed servers: the file agrees when it no longer lists them; a file that newly lists one
    // again (it was not in the old file) wins.
    for (auto it = o.removed.begin(); it != o.removed.end();) {
      bool in_new = find_server(new_pool, *it) != nullptr;
      bool in_old = find_server(old_pool, *it) != nullptr;
      if (!in_new) {
        notes.push_back({pool, *it, "removed", "true", "true", "adopted"});
        it = o.removed.erase(it);
      } else if (!in_old) {
        notes.push_back({pool, *it, "removed", "true", "false", "overridden"});
        it = o.removed.erase(it);
      } else {
        ++it;
      }
    }
    if (!o.empty() && !check_pool(*new_pool, o).empty()) {
      // The new file and the overrides together make no valid pool: the file wins.
      for (const config::Server& s : o.added) {
        notes.push_back({pool, s.address.text, "added", "true", "-", "overridden"});
      }
      for (const std::string& a : o.removed) {
        notes.push_back({pool, a, "removed", "true", "false", "overridden"});
      }
      o.added.clear();
      o.removed.clear();
    }
  }
  prune();
  return notes;
}

void Overrides::prune() {
  for (auto it = pools_.begin(); it != pools_.end();) {
    it = it->second.empty() ? pools_.erase(it) : std::next(it);
  }
}

}  // namespace switchyard::proxy::admin
